"""What a client's signed-in users may do, once for the tenant API and the dashboard.

Each function runs on a connection in the user's transaction
(:func:`~lqs.db.pool.tenant_session`), so row-level security decides what exists: another
client's id is a 404, never a 403. Who the user is in their client comes from their own
profile, read the same way (:func:`member`, :func:`admin`). Admin actions write to tables
whose users' policies allow SELECT alone: they read the row as the user first, then write
as the service role in the same transaction (:func:`~lqs.db.pool.as_service_role`), with
an audit entry (:mod:`lqs.db.audit`).

A refusal is an :class:`~lqs.api.errors.ApiError` (its status, code, message and fields):
the API answers it as JSON, a page shows it as HTML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from pydantic import ValidationError

from lqs.api.errors import ApiError, invalid_parameter
from lqs.db.audit import record_audit
from lqs.db.clients import ApiKey, create_api_key, get_clients_by_id, list_api_keys, revoke_api_key
from lqs.db.communications import communication_state, redrive_failed
from lqs.db.erasure import (
    ErasureTally,
    erase_batch,
    finish_erasure,
    lead_exists,
    start_erasure,
)
from lqs.db.pool import as_service_role
from lqs.db.subject_access import subject_bookkeeping
from lqs.db.suppressions import (
    StoredSuppression,
    delete_suppression,
    suppression_by_id,
    suppressions_page,
)
from lqs.db.tenant_reads import subject_records
from lqs.db.users import Profile, own_profile
from lqs.domain.clients import (
    MAX_KEY_NAME,
    ClientSettings,
    name_problem,
    parse_client_settings,
    rate_limit_problem,
)
from lqs.domain.cursor import Cursor, InvalidCursor, decode_cursor, encode_cursor
from lqs.domain.default_rules import client_rules
from lqs.domain.erasure import ErasureRequestError, checked_reason
from lqs.domain.leads import FieldError, LeadValidationError, parse_lead
from lqs.domain.scoring import RulesError, ScoreResult, score_lead
from lqs.domain.subject_access import (
    SUBJECT_TABLES,
    SubjectQueryError,
    subject_document,
    subject_of,
)

DEFAULT_KEY_NAME = "default"
DEFAULT_KEY_RATE = 600
RETRIED_STATUS = "pending"
"""A retried communication's status: queued for the dispatcher again."""


# ---------------------------------------------------------------- who the user is


async def member(conn: AsyncConnection) -> Profile:
    """The user's profile.

    Raises:
        ApiError: 403 ``no_profile``, the user belongs to no client.
    """
    profile = await own_profile(conn)
    if profile is None:
        raise ApiError(403, "no_profile", "this user belongs to no client (no profile)")
    return profile


async def admin(conn: AsyncConnection) -> Profile:
    """The user's profile, when they are an owner or admin of their client.

    Raises:
        ApiError: 403 ``no_profile`` or ``admin_only``.
    """
    return require_admin(await member(conn))


def require_admin(profile: Profile) -> Profile:
    """``profile``, when it is an owner's or admin's.

    Raises:
        ApiError: 403 ``admin_only``.
    """
    if not profile.is_admin:
        raise ApiError(403, "admin_only", "only the client's owners and admins may do this")
    return profile


def not_found(what: str) -> ApiError:
    """404 ``not_found``: no such ``what`` for the user's client."""
    return ApiError(404, "not_found", f"no such {what} for this client")


def path_id(value: str, what: str) -> UUID:
    """A path's id; one that is not a UUID names nothing (404).

    Raises:
        ApiError: 404, not a UUID.
    """
    try:
        return UUID(value)
    except ValueError:
        raise not_found(what) from None


# ---------------------------------------------------------------- suppressions

_SUPPRESSIONS_SORT = "suppressions"


@dataclass(frozen=True)
class SuppressionPage:
    """One page of the client's suppressions, and the cursor of the next (None: the last)."""

    rows: list[StoredSuppression]
    next_cursor: str | None


async def suppression_list(
    conn: AsyncConnection, profile: Profile, cursor: str | None, size: int
) -> SuppressionPage:
    """The client's suppressions, newest first, ``size`` at a time after ``cursor`` (a
    previous page's ``next_cursor``).

    Raises:
        ApiError: 400 naming ``cursor``, one this service did not make.
    """
    after: tuple[datetime, UUID] | None = None
    if cursor is not None:
        try:
            decoded = decode_cursor(cursor, _SUPPRESSIONS_SORT, datetime)
        except InvalidCursor as exc:
            raise invalid_parameter("cursor", str(exc)) from None
        assert isinstance(decoded.key, datetime)
        after = decoded.key, decoded.last_id
    rows = await suppressions_page(conn, profile.client_id, after=after, limit=size + 1)
    if len(rows) <= size:
        return SuppressionPage(rows, None)
    last = rows[size - 1]
    return SuppressionPage(
        rows[:size], encode_cursor(Cursor(_SUPPRESSIONS_SORT, last.created_at, last.id))
    )


async def lift_suppression(
    conn: AsyncConnection, profile: Profile, suppression_id: str
) -> StoredSuppression:
    """Delete one of the client's suppressions (``profile`` an admin's), audited.

    Raises:
        ApiError: 404, no such suppression for this client (or lifted meanwhile).
    """
    found = await suppression_by_id(conn, path_id(suppression_id, "suppression"))
    if found is None:
        raise not_found("suppression")
    async with as_service_role(conn):
        if not await delete_suppression(conn, found.id):
            raise not_found("suppression")  # lifted by a concurrent request
        await record_audit(
            conn,
            found.client_id,
            profile.user_id,
            "suppression.delete",
            found.id,
            {"channel": found.channel, "recipient": found.recipient, "reason": found.reason},
        )
    return found


# ---------------------------------------------------------------- communications


async def retry_communication(
    conn: AsyncConnection, profile: Profile, communication_id: str
) -> UUID:
    """Queue one failed communication again (status :data:`RETRIED_STATUS`, retry count
    0, due now), as ``lqs comms retry ID`` does; ``profile`` an admin's; audited.

    Raises:
        ApiError: 404, no such communication for this client; 409 ``not_retryable``, it
            is not failed, or failed without content (its template failed).
    """
    wanted = path_id(communication_id, "communication")
    state = await communication_state(conn, wanted)
    if state is None:
        raise not_found("communication")
    if not state.retryable:
        problem = (
            f"it is {state.status}; only failed communications are retried"
            if state.status != "failed"
            else "its template failed, so it has no content: render it again with"
            " `lqs comms retry --rerender`"
        )
        raise ApiError(409, "not_retryable", f"communication {wanted} cannot be retried: {problem}")
    async with as_service_role(conn):
        if not await redrive_failed(conn, [wanted], None):
            raise ApiError(409, "not_retryable", f"communication {wanted} is no longer failed")
        await record_audit(
            conn, state.client_id, profile.user_id, "communication.retry", wanted,
            {"previous_status": state.status},
        )  # fmt: skip
    return wanted


# ---------------------------------------------------------------- erasure


@dataclass(frozen=True)
class LeadErasure:
    """What erasing one lead did: the erasures record's id and the rows per table."""

    erasure_id: UUID
    lead_id: UUID
    counts: dict[str, int]


ERASURE_RETRY_AFTER = 60
"""Seconds to wait before asking again when a message of the lead is being sent (a
dispatch lease lasts a minute by default)."""


async def erase_lead(
    conn: AsyncConnection, profile: Profile, lead_id: str, reason: str | None
) -> LeadErasure:
    """Erase one of the client's leads (``profile`` an admin's) as ``lqs leads erase
    --lead`` does, in the request's transaction; recorded in ``erasures`` and audited.

    Raises:
        ApiError: 404, no such lead for this client (or erased already); 400
            ``invalid_parameter`` (field ``reason``), no usable reason; 409 ``sending``, a
            message of the lead is being sent right now (Retry-After: ask again later).
    """
    wanted = path_id(lead_id, "lead")
    if not await lead_exists(conn, wanted):
        raise not_found("lead")
    try:
        why = checked_reason(reason or "")
    except ErasureRequestError as exc:
        raise invalid_parameter("reason", str(exc)) from None
    async with as_service_role(conn):
        erasure_id = await start_erasure(conn, profile.client_id, f"user:{profile.user_id}", why)
        counts, erased, in_flight = await erase_batch(
            conn, profile.client_id, why, lead_ids=[wanted], source=f"erasure {erasure_id}"
        )
        if in_flight:
            raise ApiError(
                409,
                "sending",
                f"a message to lead {wanted} is being sent right now; ask again in a minute",
                headers={"Retry-After": str(ERASURE_RETRY_AFTER)},
            )
        if not erased:
            raise not_found("lead")  # erased already, by a concurrent request or before
        tally = ErasureTally(counts)
        await finish_erasure(conn, erasure_id, tally)
        await record_audit(
            conn, profile.client_id, profile.user_id, "lead.erase", wanted,
            {"erasure_id": str(erasure_id), "reason": why},
        )  # fmt: skip
    return LeadErasure(erasure_id, wanted, {k: counts[k] for k in sorted(counts)})


# ---------------------------------------------------------------- API keys


def new_key_problems(name: Any, rate: Any) -> list[FieldError]:
    """What is wrong with a new key's ``name`` and ``rate_limit_per_minute`` (empty: nothing)."""
    problems: list[FieldError] = []
    if not isinstance(name, str):
        problems.append(FieldError("name", "must be a string"))
    elif (problem := name_problem(name.strip(), limit=MAX_KEY_NAME)) is not None:
        problems.append(FieldError("name", problem))
    if not isinstance(rate, int) or isinstance(rate, bool):
        problems.append(FieldError("rate_limit_per_minute", "must be a whole number"))
    elif (problem := rate_limit_problem(rate)) is not None:
        problems.append(FieldError("rate_limit_per_minute", problem))
    return problems


def invalid_body(problems: list[FieldError]) -> ApiError:
    """400 ``invalid_body`` naming every bad field."""
    return ApiError(
        400,
        "invalid_body",
        "; ".join(f"{p.field}: {p.message}" for p in problems),
        fields=problems,
    )


async def create_key(
    conn: AsyncConnection, profile: Profile, name: str, rate: int
) -> tuple[ApiKey, str]:
    """A new API key for the client (``profile`` an admin's), audited; the key and its
    plaintext, which is shown once and never stored.

    Raises:
        ApiError: 400 naming the bad field (see :func:`new_key_problems`).
    """
    if problems := new_key_problems(name, rate):
        raise invalid_body(problems)
    async with as_service_role(conn):
        key, plaintext = await create_api_key(conn, profile.client_id, name.strip(), rate)
        await record_audit(
            conn, profile.client_id, profile.user_id, "api_key.create", key.id,
            {"name": key.name, "prefix": key.prefix, "rate_limit_per_minute": rate},
        )  # fmt: skip
    return key, plaintext


async def client_key(conn: AsyncConnection, profile: Profile, key_id: str) -> ApiKey:
    """One of the client's API keys.

    Raises:
        ApiError: 404, no such key for this client.
    """
    wanted = path_id(key_id, "API key")
    found = next((k for k in await list_api_keys(conn, profile.client_id) if k.id == wanted), None)
    if found is None:
        raise not_found("API key")
    return found


async def revoke_key(conn: AsyncConnection, profile: Profile, key_id: str) -> ApiKey:
    """Revoke one of the client's API keys (``profile`` an admin's), audited.

    Raises:
        ApiError: 404, no such key for this client; 409 ``already_revoked``.
    """
    found = await client_key(conn, profile, key_id)
    already = ApiError(409, "already_revoked", f"API key {found.prefix}... is already revoked")
    if found.revoked_at is not None:
        raise already
    async with as_service_role(conn):
        if not await revoke_api_key(conn, found.client_id, found.prefix, key_id=found.id):
            raise already
        await record_audit(
            conn, found.client_id, profile.user_id, "api_key.revoke", found.id,
            {"name": found.name, "prefix": found.prefix},
        )  # fmt: skip
    return found


# ---------------------------------------------------------------- rules tester


@dataclass(frozen=True)
class RulesTest:
    """What the processor would decide for a lead now; ``rules`` is ``default`` or ``client``."""

    result: ScoreResult
    rules: str


async def _settings(conn: AsyncConnection, client_id: UUID) -> ClientSettings:
    """The client's settings, read as the user.

    Raises:
        ApiError: 403 ``no_profile``, the client is not visible; 409, the stored
            settings no longer validate.
    """
    clients = await get_clients_by_id(conn, [client_id])
    client = clients.get(client_id)
    if client is None:
        raise ApiError(403, "no_profile", "this user's client is not visible to them")
    try:
        return parse_client_settings(client.settings)
    except ValidationError as exc:
        raise ApiError(
            409, "invalid_client_settings", f"the client's stored settings are invalid: {exc}"
        ) from None


async def try_rules(conn: AsyncConnection, profile: Profile, lead: Mapping[str, Any]) -> RulesTest:
    """Score ``lead`` (as ``POST /v1/leads`` takes it) under the client's current rules;
    nothing is stored.

    Raises:
        ApiError: 400 ``invalid_lead`` naming every bad field; 409, the client's stored
            settings or rules do not parse.
    """
    settings = await _settings(conn, profile.client_id)
    try:
        parsed = parse_lead(dict(lead), default_region=settings.default_region)
    except LeadValidationError as exc:
        raise ApiError(400, "invalid_lead", str(exc), fields=exc.errors) from None
    try:
        rules = client_rules(settings.scoring_rules)
    except RulesError as exc:
        raise ApiError(
            409, "invalid_scoring_rules", f"the client's rules are invalid: {exc}"
        ) from None
    return RulesTest(
        score_lead(parsed.as_mapping(), rules),
        "default" if settings.scoring_rules is None else "client",
    )


# ---------------------------------------------------------------- subject access


async def export_subject(
    conn: AsyncConnection, profile: Profile, email: str | None, phone: str | None
) -> dict[str, Any]:
    """Everything the admin's client holds on the person with this email address and/or
    phone number, as one document (:func:`~lqs.domain.subject_access.subject_document`),
    audited (``subject.export``: the counts, no address). The tenant's tables are read as
    the user (row-level security), the service's bookkeeping as the service role for the
    user's own client.

    Raises:
        ApiError: 400 naming ``email`` or ``phone`` (as every bad query parameter).
    """
    try:
        subject = subject_of(email, phone)
    except SubjectQueryError as exc:
        raise invalid_parameter(exc.error.field, exc.error.message) from None
    records = await subject_records(conn, profile.client_id, subject)
    async with as_service_role(conn):
        records = await subject_bookkeeping(conn, profile.client_id, subject, records)
        counts = {name: len(getattr(records, name)) for name in SUBJECT_TABLES}
        await record_audit(conn, profile.client_id, profile.user_id, "subject.export", None, counts)
    about = {"id": profile.client_id, "slug": profile.client_slug, "name": profile.client_name}
    return subject_document(about, subject, datetime.now(UTC), records)
