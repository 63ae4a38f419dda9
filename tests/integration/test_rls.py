"""Row-level security: who may read and write which tenant's rows, through tenant_session.

Every test builds two fresh tenants, A and B (a client each, an admin and a member
profile, two leads and a communication per lead), as the superuser, which bypasses RLS.
Each denial is checked next to a positive control: the same statement succeeding for
an actor that is allowed, so no test passes merely because a row is missing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg import sql
from psycopg.errors import InsufficientPrivilege
from psycopg_pool import AsyncConnectionPool

from lqs.db.pool import DatabaseRole, open_pool, tenant_session

Table = Literal["clients", "profiles", "leads", "communications"]
Operation = Literal["select", "insert", "update", "delete"]
Statement = tuple[sql.Composable, tuple[Any, ...]]

TABLES: tuple[Table, ...] = ("clients", "profiles", "leads", "communications")
OPERATIONS: tuple[Operation, ...] = ("select", "insert", "update", "delete")

# A text column per table that any update below rewrites.
UPDATED_COLUMN: dict[Table, str] = {
    "clients": "name",
    "profiles": "email",
    "leads": "first_name",
    "communications": "subject",
}

RLS_VIOLATION = "new row violates row-level security policy"


def no_privilege(table: Table) -> str:
    return f"permission denied for table {table}"


# ---------------------------------------------------------------- actors and data


@dataclass(frozen=True)
class Actor:
    user_id: UUID | None
    role: DatabaseRole


ANON = Actor(None, "anon")
SERVICE = Actor(None, "service_role")


def user(user_id: UUID) -> Actor:
    return Actor(user_id, "authenticated")


@dataclass(frozen=True)
class Tenant:
    client_id: UUID
    admin_id: UUID
    member_id: UUID
    lead_id: UUID
    communication_id: UUID

    @property
    def admin(self) -> Actor:
        return user(self.admin_id)

    @property
    def member(self) -> Actor:
        return user(self.member_id)

    def row_id(self, table: Table) -> UUID:
        """This tenant's row of ``table`` that the statements below target."""
        return {
            "clients": self.client_id,
            "profiles": self.admin_id,
            "leads": self.lead_id,
            "communications": self.communication_id,
        }[table]


@dataclass(frozen=True)
class World:
    a: Tenant
    b: Tenant

    def tenant(self, name: str) -> Tenant:
        return self.a if name == "a" else self.b


def _create_tenant(db: psycopg.Connection[Any], label: str) -> Tenant:
    t = Tenant(uuid4(), uuid4(), uuid4(), uuid4(), uuid4())
    phone_lead, phone_communication = uuid4(), uuid4()
    with db.transaction():
        db.execute(
            "INSERT INTO public.clients (id, name, slug) VALUES (%s, %s, %s)",
            (t.client_id, f"Client {label.upper()}", f"client-{label}-{t.client_id.hex[:8]}"),
        )
        db.execute(
            "INSERT INTO public.profiles (id, client_id, email, role)"
            " VALUES (%s, %s, %s, 'admin'), (%s, %s, %s, 'member')",
            (
                t.admin_id,
                t.client_id,
                f"admin@{label}.example",
                t.member_id,
                t.client_id,
                f"member@{label}.example",
            ),
        )
        db.execute(
            "INSERT INTO public.leads (id, client_id, email, phone, first_name)"
            " VALUES (%s, %s, %s, NULL, 'Ada'), (%s, %s, NULL, '+15550100', 'Bob')",
            (t.lead_id, t.client_id, f"ada@{label}.example", phone_lead, t.client_id),
        )
        db.execute(
            "INSERT INTO public.communications (id, lead_id, client_id, type, recipient)"
            " VALUES (%s, %s, %s, 'email', %s), (%s, %s, %s, 'sms', '+15550100')",
            (
                t.communication_id,
                t.lead_id,
                t.client_id,
                f"ada@{label}.example",
                phone_communication,
                phone_lead,
                t.client_id,
            ),
        )
    return t


@pytest.fixture(scope="module")
def superuser(migrated_db: str) -> Iterator[psycopg.Connection[Any]]:
    """The migrating login role: a superuser, so it sees and writes past every policy."""
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        yield conn


@pytest.fixture
def world(superuser: psycopg.Connection[Any]) -> World:
    return World(_create_tenant(superuser, "a"), _create_tenant(superuser, "b"))


# ---------------------------------------------------------------- statements


def _select(table: Table, row_id: UUID) -> Statement:
    query = sql.SQL("SELECT id FROM public.{} WHERE id = %s").format(sql.Identifier(table))
    return query, (row_id,)


def _insert(table: Table, tenant: Tenant, new_id: UUID) -> Statement:
    """A new row of ``table`` belonging to ``tenant``'s client."""
    if table == "clients":
        return (
            sql.SQL("INSERT INTO public.clients (id, name, slug) VALUES (%s, 'New', %s)"),
            (new_id, f"new-{new_id.hex[:12]}"),
        )
    if table == "profiles":
        return (
            sql.SQL("INSERT INTO public.profiles (id, client_id) VALUES (%s, %s)"),
            (new_id, tenant.client_id),
        )
    if table == "leads":
        return (
            sql.SQL("INSERT INTO public.leads (id, client_id, email) VALUES (%s, %s, %s)"),
            (new_id, tenant.client_id, f"{new_id.hex[:12]}@example.com"),
        )
    return (
        sql.SQL(
            "INSERT INTO public.communications (id, lead_id, client_id, type, recipient)"
            " VALUES (%s, %s, %s, 'email', 'new@example.com')"
        ),
        (new_id, tenant.lead_id, tenant.client_id),
    )


def _update(table: Table, row_id: UUID, value: str) -> Statement:
    query = sql.SQL("UPDATE public.{} SET {} = %s WHERE id = %s").format(
        sql.Identifier(table), sql.Identifier(UPDATED_COLUMN[table])
    )
    return query, (value, row_id)


def _delete(table: Table, row_id: UUID) -> Statement:
    query = sql.SQL("DELETE FROM public.{} WHERE id = %s").format(sql.Identifier(table))
    return query, (row_id,)


def _statement(operation: Operation, table: Table, tenant: Tenant) -> Statement:
    """``operation`` on ``tenant``'s row of ``table`` (a new row of it, for an insert)."""
    if operation == "select":
        return _select(table, tenant.row_id(table))
    if operation == "insert":
        return _insert(table, tenant, uuid4())
    if operation == "update":
        return _update(table, tenant.row_id(table), "changed")
    return _delete(table, tenant.row_id(table))


# An UPDATE by id reads the row, so the new row must pass the SELECT policy as well as
# the UPDATE policy's WITH CHECK; one without a WHERE clause meets the WITH CHECK alone.
SCOPES = ("by-id", "without-where-clause")


def _where(scope: str, row_id: UUID) -> tuple[sql.SQL, tuple[Any, ...]]:
    if scope == "by-id":
        return sql.SQL(" WHERE id = %s"), (row_id,)
    return sql.SQL(""), ()


# ---------------------------------------------------------------- running and checking


async def _run(pool: AsyncConnectionPool, actor: Actor, statement: Statement) -> int:
    """Run one statement in a committed tenant session; the rows it returned or changed."""
    async with tenant_session(pool, actor.user_id, role=actor.role) as conn:
        cur = await conn.execute(*statement)
        return cur.rowcount


async def _visible(pool: AsyncConnectionPool, actor: Actor, table: Table) -> set[UUID]:
    query = sql.SQL("SELECT id FROM public.{}").format(sql.Identifier(table))
    async with tenant_session(pool, actor.user_id, role=actor.role) as conn:
        cur = await conn.execute(query)
        return {row[0] for row in await cur.fetchall()}


def _stored(db: psycopg.Connection[Any], table: Table, column: str, row_id: UUID) -> Any:
    """``column`` of the row as stored (read past RLS), or the string "<missing>"."""
    query = sql.SQL("SELECT {} FROM public.{} WHERE id = %s").format(
        sql.Identifier(column), sql.Identifier(table)
    )
    row = db.execute(query, (row_id,)).fetchone()
    return "<missing>" if row is None else row[0]


def _ids_of_client(db: psycopg.Connection[Any], table: Table, client_id: UUID) -> set[UUID]:
    column = "id" if table == "clients" else "client_id"
    query = sql.SQL("SELECT id FROM public.{} WHERE {} = %s").format(
        sql.Identifier(table), sql.Identifier(column)
    )
    return {row[0] for row in db.execute(query, (client_id,)).fetchall()}


# ---------------------------------------------------------------- anon


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("table", TABLES)
async def test_anon_has_no_privilege_on_any_table(
    pool: AsyncConnectionPool, world: World, table: Table, operation: Operation
) -> None:
    statement = _statement(operation, table, world.a)

    with pytest.raises(InsufficientPrivilege, match=no_privilege(table)):
        await _run(pool, ANON, statement)

    # The very same statement, on a row that exists, works for the service role.
    assert await _run(pool, SERVICE, statement) == 1


# ---------------------------------------------------------------- clients


@pytest.mark.parametrize("profile", ["admin", "member"])
async def test_user_sees_only_their_own_client(
    pool: AsyncConnectionPool, world: World, profile: str
) -> None:
    for own, other in ((world.a, world.b), (world.b, world.a)):
        actor = own.admin if profile == "admin" else own.member
        assert await _visible(pool, actor, "clients") == {own.client_id}
        assert other.client_id in await _visible(pool, SERVICE, "clients")


async def test_client_admin_can_update_their_client(
    pool: AsyncConnectionPool, world: World, superuser: psycopg.Connection[Any]
) -> None:
    assert await _run(pool, world.a.admin, _update("clients", world.a.client_id, "A renamed")) == 1
    assert _stored(superuser, "clients", "name", world.a.client_id) == "A renamed"


async def test_client_member_cannot_update_their_client(
    pool: AsyncConnectionPool, world: World, superuser: psycopg.Connection[Any]
) -> None:
    by_member = _update("clients", world.a.client_id, "renamed by member")
    assert await _run(pool, world.a.member, by_member) == 0
    assert _stored(superuser, "clients", "name", world.a.client_id) == "Client A"

    by_admin = _update("clients", world.a.client_id, "renamed by admin")
    assert await _run(pool, world.a.admin, by_admin) == 1
    assert _stored(superuser, "clients", "name", world.a.client_id) == "renamed by admin"


@pytest.mark.parametrize(("actor_tenant", "victim_tenant"), [("a", "b"), ("b", "a")])
async def test_client_admin_cannot_update_another_client(
    pool: AsyncConnectionPool,
    world: World,
    superuser: psycopg.Connection[Any],
    actor_tenant: str,
    victim_tenant: str,
) -> None:
    intruder, victim = world.tenant(actor_tenant), world.tenant(victim_tenant)
    original = _stored(superuser, "clients", "name", victim.client_id)

    assert await _run(pool, intruder.admin, _update("clients", victim.client_id, "hijacked")) == 0
    assert _stored(superuser, "clients", "name", victim.client_id) == original

    assert await _run(pool, victim.admin, _update("clients", victim.client_id, "renamed")) == 1
    assert _stored(superuser, "clients", "name", victim.client_id) == "renamed"


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("target", ["another-clients-id", "a-fresh-id"])
async def test_client_admin_cannot_change_their_clients_id(
    pool: AsyncConnectionPool,
    world: World,
    superuser: psycopg.Connection[Any],
    target: str,
    scope: str,
) -> None:
    new_id = world.b.client_id if target == "another-clients-id" else uuid4()
    where, params = _where(scope, world.a.client_id)
    change_id = (sql.SQL("UPDATE public.clients SET id = %s") + where, (new_id, *params))
    rename = (sql.SQL("UPDATE public.clients SET name = 'renamed'") + where, params)

    # Refused by the column grant (admins may change only name and settings) or, where
    # the planner checks policies first, by WITH CHECK: a denial either way.
    with pytest.raises(InsufficientPrivilege, match=f"{RLS_VIOLATION}|permission denied"):
        await _run(pool, world.a.admin, change_id)
    assert _stored(superuser, "clients", "id", world.a.client_id) == world.a.client_id

    # The same statement without the new id reaches the admin's client, and only it.
    assert await _run(pool, world.a.admin, rename) == 1
    assert _stored(superuser, "clients", "name", world.a.client_id) == "renamed"
    assert _stored(superuser, "clients", "name", world.b.client_id) == "Client B"


@pytest.mark.parametrize("operation", ["insert", "delete"])
async def test_user_cannot_insert_or_delete_clients(
    pool: AsyncConnectionPool,
    world: World,
    superuser: psycopg.Connection[Any],
    operation: Operation,
) -> None:
    statement = _statement(operation, "clients", world.a)

    with pytest.raises(InsufficientPrivilege, match=no_privilege("clients")):
        await _run(pool, world.a.admin, statement)
    assert _stored(superuser, "clients", "id", world.a.client_id) == world.a.client_id

    assert await _run(pool, SERVICE, statement) == 1


# ---------------------------------------------------------------- profiles


async def test_user_sees_only_their_own_profile_not_their_teammates(
    pool: AsyncConnectionPool, world: World
) -> None:
    for tenant in (world.a, world.b):
        for actor in (tenant.admin, tenant.member):
            assert actor.user_id is not None
            assert await _visible(pool, actor, "profiles") == {actor.user_id}

    everyone = {world.a.admin_id, world.a.member_id, world.b.admin_id, world.b.member_id}
    assert everyone <= await _visible(pool, SERVICE, "profiles")


@pytest.mark.parametrize("operation", ["insert", "update", "delete"])
async def test_user_cannot_write_profiles_not_even_their_own(
    pool: AsyncConnectionPool,
    world: World,
    superuser: psycopg.Connection[Any],
    operation: Operation,
) -> None:
    statement = _statement(operation, "profiles", world.a)  # targets A-admin's own profile

    with pytest.raises(InsufficientPrivilege, match=no_privilege("profiles")):
        await _run(pool, world.a.admin, statement)
    assert _stored(superuser, "profiles", "email", world.a.admin_id) == "admin@a.example"

    assert await _run(pool, SERVICE, statement) == 1


# ---------------------------------------------------------------- leads


@pytest.mark.parametrize("profile", ["admin", "member"])
async def test_user_sees_only_their_clients_leads(
    pool: AsyncConnectionPool, world: World, superuser: psycopg.Connection[Any], profile: str
) -> None:
    for own, other in ((world.a, world.b), (world.b, world.a)):
        actor = own.admin if profile == "admin" else own.member
        visible = await _visible(pool, actor, "leads")
        assert visible == _ids_of_client(superuser, "leads", own.client_id)
        assert len(visible) == 2
        assert other.lead_id not in visible
        assert other.lead_id in await _visible(pool, SERVICE, "leads")


@pytest.mark.parametrize("profile", ["admin", "member"])
async def test_user_can_add_a_lead_for_their_client(
    pool: AsyncConnectionPool, world: World, superuser: psycopg.Connection[Any], profile: str
) -> None:
    actor = world.a.admin if profile == "admin" else world.a.member
    new_id = uuid4()

    assert await _run(pool, actor, _insert("leads", world.a, new_id)) == 1
    assert _stored(superuser, "leads", "client_id", new_id) == world.a.client_id
    assert new_id in await _visible(pool, actor, "leads")


@pytest.mark.parametrize(("actor_tenant", "victim_tenant"), [("a", "b"), ("b", "a")])
async def test_user_cannot_add_a_lead_for_another_client(
    pool: AsyncConnectionPool,
    world: World,
    superuser: psycopg.Connection[Any],
    actor_tenant: str,
    victim_tenant: str,
) -> None:
    intruder, victim = world.tenant(actor_tenant), world.tenant(victim_tenant)
    planted = uuid4()

    with pytest.raises(InsufficientPrivilege, match=RLS_VIOLATION):
        await _run(pool, intruder.admin, _insert("leads", victim, planted))
    assert _stored(superuser, "leads", "id", planted) == "<missing>"

    # The victim's own user may add exactly that row.
    assert await _run(pool, victim.admin, _insert("leads", victim, planted)) == 1
    assert _stored(superuser, "leads", "client_id", planted) == victim.client_id


@pytest.mark.parametrize("profile", ["admin", "member"])
async def test_user_can_update_their_clients_leads(
    pool: AsyncConnectionPool, world: World, superuser: psycopg.Connection[Any], profile: str
) -> None:
    actor = world.a.admin if profile == "admin" else world.a.member

    assert await _run(pool, actor, _update("leads", world.a.lead_id, "Grace")) == 1
    assert _stored(superuser, "leads", "first_name", world.a.lead_id) == "Grace"


@pytest.mark.parametrize(("actor_tenant", "victim_tenant"), [("a", "b"), ("b", "a")])
async def test_user_cannot_update_another_clients_leads(
    pool: AsyncConnectionPool,
    world: World,
    superuser: psycopg.Connection[Any],
    actor_tenant: str,
    victim_tenant: str,
) -> None:
    intruder, victim = world.tenant(actor_tenant), world.tenant(victim_tenant)

    assert await _run(pool, intruder.admin, _update("leads", victim.lead_id, "Mallory")) == 0
    assert _stored(superuser, "leads", "first_name", victim.lead_id) == "Ada"

    assert await _run(pool, victim.member, _update("leads", victim.lead_id, "Grace")) == 1
    assert _stored(superuser, "leads", "first_name", victim.lead_id) == "Grace"


@pytest.mark.parametrize("scope", SCOPES)
async def test_user_cannot_move_lead_to_another_client(
    pool: AsyncConnectionPool, world: World, superuser: psycopg.Connection[Any], scope: str
) -> None:
    where, params = _where(scope, world.a.lead_id)
    move = (
        sql.SQL("UPDATE public.leads SET client_id = %s, first_name = 'Moved'") + where,
        (world.b.client_id, *params),
    )
    rename = (sql.SQL("UPDATE public.leads SET first_name = 'Grace'") + where, params)

    with pytest.raises(InsufficientPrivilege, match=RLS_VIOLATION):
        await _run(pool, world.a.admin, move)
    assert _stored(superuser, "leads", "client_id", world.a.lead_id) == world.a.client_id
    assert _stored(superuser, "leads", "first_name", world.a.lead_id) == "Ada"

    # The same statement without the move reaches A's leads (both, unfiltered), only them.
    assert await _run(pool, world.a.admin, rename) == (1 if scope == "by-id" else 2)
    assert _stored(superuser, "leads", "first_name", world.a.lead_id) == "Grace"
    assert _stored(superuser, "leads", "first_name", world.b.lead_id) == "Ada"

    # And the service role may move it.
    move_one = (
        sql.SQL("UPDATE public.leads SET client_id = %s WHERE id = %s"),
        (world.b.client_id, world.a.lead_id),
    )
    assert await _run(pool, SERVICE, move_one) == 1
    assert _stored(superuser, "leads", "client_id", world.a.lead_id) == world.b.client_id


async def test_user_cannot_delete_leads_not_even_their_clients(
    pool: AsyncConnectionPool, world: World, superuser: psycopg.Connection[Any]
) -> None:
    delete = _delete("leads", world.a.lead_id)

    with pytest.raises(InsufficientPrivilege, match=no_privilege("leads")):
        await _run(pool, world.a.admin, delete)
    assert _stored(superuser, "leads", "id", world.a.lead_id) == world.a.lead_id

    assert await _run(pool, SERVICE, delete) == 1
    assert _stored(superuser, "leads", "id", world.a.lead_id) == "<missing>"


# ---------------------------------------------------------------- communications


@pytest.mark.parametrize("profile", ["admin", "member"])
async def test_user_sees_only_their_clients_communications(
    pool: AsyncConnectionPool, world: World, superuser: psycopg.Connection[Any], profile: str
) -> None:
    for own, other in ((world.a, world.b), (world.b, world.a)):
        actor = own.admin if profile == "admin" else own.member
        visible = await _visible(pool, actor, "communications")
        assert visible == _ids_of_client(superuser, "communications", own.client_id)
        assert len(visible) == 2
        assert other.communication_id not in visible
        assert other.communication_id in await _visible(pool, SERVICE, "communications")


@pytest.mark.parametrize("operation", ["insert", "update", "delete"])
async def test_user_cannot_write_communications_not_even_their_clients(
    pool: AsyncConnectionPool,
    world: World,
    superuser: psycopg.Connection[Any],
    operation: Operation,
) -> None:
    statement = _statement(operation, "communications", world.a)

    with pytest.raises(InsufficientPrivilege, match=no_privilege("communications")):
        await _run(pool, world.a.admin, statement)
    assert _stored(superuser, "communications", "subject", world.a.communication_id) is None

    assert await _run(pool, SERVICE, statement) == 1


# ---------------------------------------------------------------- service role


@pytest.mark.parametrize("table", TABLES)
async def test_service_role_sees_every_clients_rows(
    pool: AsyncConnectionPool, world: World, table: Table
) -> None:
    visible = await _visible(pool, SERVICE, table)
    assert {world.a.row_id(table), world.b.row_id(table)} <= visible
    # Where a user of A sees at most A's row.
    assert world.b.row_id(table) not in await _visible(pool, world.a.admin, table)


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("tenant_name", ["a", "b"])
async def test_service_role_can_insert_update_and_delete_for_any_client(
    pool: AsyncConnectionPool,
    world: World,
    superuser: psycopg.Connection[Any],
    table: Table,
    tenant_name: str,
) -> None:
    tenant, new_id = world.tenant(tenant_name), uuid4()
    column = UPDATED_COLUMN[table]

    assert await _run(pool, SERVICE, _insert(table, tenant, new_id)) == 1
    assert _stored(superuser, table, "id", new_id) == new_id

    assert await _run(pool, SERVICE, _update(table, new_id, "by service")) == 1
    assert _stored(superuser, table, column, new_id) == "by service"

    assert await _run(pool, SERVICE, _delete(table, new_id)) == 1
    assert _stored(superuser, table, "id", new_id) == "<missing>"


# ---------------------------------------------------------------- users without a profile


async def test_user_without_a_profile_sees_nothing(pool: AsyncConnectionPool, world: World) -> None:
    stranger = user(uuid4())
    for table in TABLES:
        assert await _visible(pool, stranger, table) == set()
        assert world.a.row_id(table) in await _visible(pool, SERVICE, table)


async def test_user_without_a_profile_cannot_add_or_change_leads(
    pool: AsyncConnectionPool, world: World, superuser: psycopg.Connection[Any]
) -> None:
    stranger = user(uuid4())

    with pytest.raises(InsufficientPrivilege, match=RLS_VIOLATION):
        await _run(pool, stranger, _insert("leads", world.a, uuid4()))
    assert await _run(pool, stranger, _update("leads", world.a.lead_id, "Mallory")) == 0
    assert await _run(pool, stranger, _update("clients", world.a.client_id, "hijacked")) == 0

    assert _stored(superuser, "leads", "first_name", world.a.lead_id) == "Ada"
    assert _stored(superuser, "clients", "name", world.a.client_id) == "Client A"
    assert await _run(pool, world.a.member, _update("leads", world.a.lead_id, "Grace")) == 1


# ---------------------------------------------------------------- nothing leaks between sessions


@pytest.fixture
async def single_connection_pool(migrated_db: str) -> AsyncIterator[AsyncConnectionPool]:
    """A pool of one connection, so every session below reuses the same backend."""
    opened = await open_pool(migrated_db, min_size=1, max_size=1)
    yield opened
    await opened.close()


class _Abort(Exception):
    pass


SESSION_STATE = (
    "SELECT pg_backend_pid(), current_user::text, session_user::text,"
    " current_setting('request.jwt.claims', true), auth.uid()"
)


@pytest.mark.parametrize("ending", ["commit", "rollback"])
async def test_claims_and_role_do_not_outlive_the_tenant_session(
    single_connection_pool: AsyncConnectionPool, world: World, ending: str
) -> None:
    pool = single_connection_pool

    async def session_state() -> tuple[Any, ...]:
        async with pool.connection() as conn:
            cur = await conn.execute(SESSION_STATE)
            row = await cur.fetchone()
            assert row is not None
            return tuple(row)

    async def as_user_a() -> tuple[Any, ...]:
        async with tenant_session(pool, world.a.admin_id) as conn:
            cur = await conn.execute(SESSION_STATE)
            row = await cur.fetchone()
            assert row is not None
            if ending == "rollback":
                raise _Abort(tuple(row))
            return tuple(row)

    if ending == "rollback":
        with pytest.raises(_Abort) as aborted:
            await as_user_a()
        inside = aborted.value.args[0]
    else:
        inside = await as_user_a()

    pid, current, login, claims, uid = inside
    assert (current, uid) == ("authenticated", world.a.admin_id)
    assert claims is not None
    assert str(world.a.admin_id) in claims
    assert login != "authenticated"

    after = await session_state()
    assert after[0] == pid  # the very connection the session used
    assert after[1] == after[2] == login
    assert after[3] in (None, "")
    assert after[4] is None


async def test_next_user_of_a_pooled_connection_sees_only_their_own_rows(
    single_connection_pool: AsyncConnectionPool, world: World
) -> None:
    pool = single_connection_pool
    assert await _visible(pool, world.a.admin, "leads") == await _visible(
        pool, world.a.member, "leads"
    )
    assert world.a.lead_id in await _visible(pool, world.a.admin, "leads")

    seen_by_b = await _visible(pool, world.b.admin, "leads")
    assert world.b.lead_id in seen_by_b
    assert world.a.lead_id not in seen_by_b

    # Plain pool use afterwards runs as the login role again, past RLS.
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM public.leads WHERE client_id IN (%s, %s)",
            (world.a.client_id, world.b.client_id),
        )
        assert await cur.fetchone() == (4,)
