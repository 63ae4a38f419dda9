"""SQL for users who sign in to LQS itself: their profile, credentials and sign-in state.

A user is a ``profiles`` row (their id is the token's ``sub``; their client and role) with
a ``user_credentials`` row beside it (migration 0012). Everything here but :func:`own_profile`
runs on the service's own connection: nobody else may read a password hash.
:func:`own_profile` runs inside the user's own session, where row-level security decides.

Lockout: every attempt is counted before its password is checked
(:func:`count_sign_in_attempt`), so :data:`MAX_FAILED_SIGN_INS` wrong passwords in a row,
even sent all at once, lock the user out for :data:`LOCKOUT`; locking starts the count
again, and a successful sign-in (or a new password) clears both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, LiteralString
from uuid import UUID

from psycopg import AsyncConnection, errors, sql

from lqs.db.errors import DatabaseError

MAX_FAILED_SIGN_INS = 5
LOCKOUT = timedelta(minutes=15)
ProfileRole = Literal["owner", "admin", "member", "viewer"]


class UserNotFound(DatabaseError):
    """Raised when no user who signs in to LQS has the given email."""


class UserExists(DatabaseError):
    """Raised when adding a user whose email (in any case) another profile has."""


@dataclass(frozen=True)
class UserAccount:
    """A user as ``lqs users list`` shows them: never their password hash."""

    id: UUID
    email: str
    client_id: UUID
    client_slug: str
    role: str
    disabled_at: datetime | None
    locked_until: datetime | None
    failed_attempts: int
    password_changed_at: datetime
    created_at: datetime


@dataclass(frozen=True)
class Credentials:
    """What sign-in needs to decide: the hash, and whether the user may try at all."""

    user_id: UUID
    email: str
    client_id: UUID
    role: str
    password_hash: str
    disabled: bool
    locked_for_seconds: int
    """Seconds until the lockout ends (0: not locked), by the database's clock."""


@dataclass(frozen=True)
class Profile:
    """A user and their client, as their own session reads them."""

    id: UUID
    email: str | None
    role: str
    client_id: UUID
    client_name: str
    client_slug: str

    @property
    def user_id(self) -> UUID:
        """The user's id (the JWT's ``sub``), which is the profile's."""
        return self.id

    @property
    def is_admin(self) -> bool:
        """Whether the role may change the client's things (owners and admins)."""
        return self.role in ("owner", "admin")


_ACCOUNT = (
    "SELECT p.id, p.email, p.client_id, c.slug, p.role, u.disabled_at, u.locked_until,"
    " u.failed_attempts, u.password_changed_at, u.created_at"
    " FROM public.user_credentials u"
    " JOIN public.profiles p ON p.id = u.user_id"
    " JOIN public.clients c ON c.id = p.client_id"
)


async def add_user(
    conn: AsyncConnection, client_id: UUID, email: str, password_hash: str, role: ProfileRole
) -> UserAccount:
    """Create the user's profile and credentials, in one statement.

    Raises:
        UserExists: a profile already has this email (compared case-insensitively).
    """
    try:
        cur = await conn.execute(
            "WITH profile AS ("
            "   INSERT INTO public.profiles (id, client_id, email, role)"
            "   VALUES (gen_random_uuid(), %s, %s, %s) RETURNING id"
            " )"
            " INSERT INTO public.user_credentials (user_id, password_hash)"
            " SELECT id, %s FROM profile RETURNING user_id",
            (client_id, email, role, password_hash),
        )
    except errors.UniqueViolation as exc:
        raise UserExists(f"a user with email {email!r} already exists") from exc
    row = await cur.fetchone()
    assert row is not None
    return await _account(conn, row[0])


async def _account(conn: AsyncConnection, user_id: UUID) -> UserAccount:
    cur = await conn.execute(_ACCOUNT + " WHERE u.user_id = %s", (user_id,))
    row = await cur.fetchone()
    assert row is not None
    return UserAccount(*row)


async def list_users(conn: AsyncConnection, client_id: UUID | None = None) -> list[UserAccount]:
    """The users who sign in to LQS (only ``client_id``'s if given), by client then email."""
    cur = await conn.execute(
        _ACCOUNT + " WHERE (%(client)s::uuid IS NULL OR p.client_id = %(client)s::uuid)"
        " ORDER BY c.slug, lower(p.email)",
        {"client": client_id},
    )
    return [UserAccount(*row) for row in await cur.fetchall()]


async def _update_by_email(
    conn: AsyncConnection, email: str, assignments: LiteralString, *params: object
) -> UserAccount:
    query = sql.SQL(
        "UPDATE public.user_credentials u SET {}"
        " FROM public.profiles p"
        " WHERE p.id = u.user_id AND lower(p.email) = lower(%s)"
        " RETURNING u.user_id"
    ).format(sql.SQL(assignments))
    cur = await conn.execute(query, (*params, email))
    row = await cur.fetchone()
    if row is None:
        raise UserNotFound(f"no user signs in with {email!r}; list them with `lqs users list`")
    return await _account(conn, row[0])


async def set_disabled(conn: AsyncConnection, email: str, disabled: bool) -> UserAccount:
    """Disable the user (they can no longer sign in, and tokens already issued are refused
    from their next request) or enable them again.

    Raises:
        UserNotFound: no user signs in with this email.
    """
    if disabled:
        return await _update_by_email(conn, email, "disabled_at = coalesce(u.disabled_at, now())")
    return await _update_by_email(conn, email, "disabled_at = NULL")


async def set_password(conn: AsyncConnection, email: str, password_hash: str) -> UserAccount:
    """Replace the user's password hash; clears failed sign-ins and any lockout. Tokens
    issued before the change are refused from their next request.

    Raises:
        UserNotFound: no user signs in with this email.
    """
    return await _update_by_email(
        conn,
        email,
        "password_hash = %s, password_changed_at = now(), failed_attempts = 0, locked_until = NULL",
        password_hash,
    )


async def find_credentials(conn: AsyncConnection, email: str) -> Credentials | None:
    """The credentials of the user who signs in with ``email`` (any case), or None."""
    cur = await conn.execute(
        "SELECT u.user_id, p.email, p.client_id, p.role, u.password_hash,"
        "  u.disabled_at IS NOT NULL,"
        "  coalesce(ceil(extract(epoch FROM u.locked_until - now())), 0)::int"
        " FROM public.user_credentials u JOIN public.profiles p ON p.id = u.user_id"
        " WHERE lower(p.email) = lower(%s)",
        (email,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    user_id, found_email, client_id, role, password_hash, disabled, locked = row
    return Credentials(
        user_id, found_email, client_id, role, password_hash, disabled, max(0, locked)
    )


async def count_sign_in_attempt(conn: AsyncConnection, user_id: UUID) -> int:
    """Count a sign-in attempt before its password is checked, unless the user is locked
    out. The :data:`MAX_FAILED_SIGN_INS`-th attempt in a row locks the user out for
    :data:`LOCKOUT` (and starts the count again); a right password then clears both
    (:func:`record_successful_sign_in`).

    One ``UPDATE`` counts and tests the lock together, so concurrent attempts queue on the
    row and at most :data:`MAX_FAILED_SIGN_INS` of a burst get their password checked.

    Returns 0 when the attempt was counted (check the password), else the seconds the
    user stays locked out (at least 1; nothing was counted).
    """
    cur = await conn.execute(
        "UPDATE public.user_credentials SET"
        "  failed_attempts = CASE WHEN failed_attempts + 1 >= %(max)s THEN 0"
        "                    ELSE failed_attempts + 1 END,"
        "  locked_until = CASE WHEN failed_attempts + 1 >= %(max)s THEN now() + %(lockout)s"
        "                 END"
        " WHERE user_id = %(user)s AND (locked_until IS NULL OR locked_until <= now())"
        " RETURNING user_id",
        {"max": MAX_FAILED_SIGN_INS, "lockout": LOCKOUT, "user": user_id},
    )
    if await cur.fetchone() is not None:
        return 0
    # A new statement, so it sees the lock of an attempt that committed while this one
    # waited for the row.
    cur = await conn.execute(
        "SELECT coalesce(ceil(extract(epoch FROM locked_until - now())), 0)::int"
        " FROM public.user_credentials WHERE user_id = %s",
        (user_id,),
    )
    row = await cur.fetchone()
    return max(1, row[0]) if row else 1


async def record_successful_sign_in(
    conn: AsyncConnection, user_id: UUID, new_hash: str | None = None
) -> None:
    """Clear failed sign-ins and any lockout; store ``new_hash`` when the stored hash was
    made with weaker parameters than today's."""
    await conn.execute(
        "UPDATE public.user_credentials SET failed_attempts = 0, locked_until = NULL,"
        "  password_hash = coalesce(%s, password_hash)"
        " WHERE user_id = %s AND (failed_attempts <> 0 OR locked_until IS NOT NULL"
        "   OR %s::text IS NOT NULL)",
        (new_hash, user_id, new_hash),
    )


async def session_is_current(conn: AsyncConnection, issued_at: datetime | None) -> bool:
    """Whether the session's user's token, issued at ``issued_at``, is still current: false
    once a user with LQS credentials is disabled or has changed their password since (by
    the second); true for users without credentials (Supabase Auth's). Run it in
    :func:`~lqs.db.pool.tenant_session` as ``authenticated`` (migration 0017's function)."""
    cur = await conn.execute("SELECT public.lqs_session_is_current(%s)", (issued_at,))
    row = await cur.fetchone()
    return bool(row and row[0])


async def own_profile(conn: AsyncConnection) -> Profile | None:
    """The session's user's own profile and client (``auth.uid()``), or None when they have
    none. Run it in :func:`~lqs.db.pool.tenant_session`: the profiles policy lets a user
    read their own row only."""
    cur = await conn.execute(
        "SELECT p.id, p.email, p.role, c.id, c.name, c.slug"
        " FROM public.profiles p JOIN public.clients c ON c.id = p.client_id"
        " WHERE p.id = (SELECT auth.uid())"
    )
    row = await cur.fetchone()
    return Profile(*row) if row else None
