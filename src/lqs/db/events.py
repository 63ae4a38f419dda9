"""SQL for delivery events: an inbox. The webhook stores; the worker applies in batches.

**Store** (:func:`store_events`, the webhook receiver): all of one verified request's
events go into ``provider_events`` in one statement, under the provider's own event id
(unique per client and provider), which also wakes the worker (``pg_notify`` on
:data:`EVENTS_PENDING_CHANNEL`, delivered at commit). A re-delivered event inserts nothing
and has no second effect, even when the copies arrive at the same time (the unique index
makes the second insert wait for the first to commit, then do nothing). A stored event is
*pending* (``attempted_at`` and ``communication_id`` NULL) until something applies it.

**Apply** (:func:`apply_pending_events`, the worker's applier): a batch of pending
events, oldest first, is matched to *its own client's* communications (by our id when the
provider echoed it, else by the provider's message id) in one query; each
communication's events are folded in order (``occurred_at``, then id) through
:func:`lqs.domain.events.transition`, the communications written in one statement and the
events marked (``attempted_at``, ``communication_id``, ``applied_at``, ``effect``) in one
more. An event that suppresses the recipient does so through :mod:`lqs.db.suppressions`
and, for an unsubscribe or a complaint, withdraws consent through :mod:`lqs.db.consent`,
one event at a time (they are rare). A batch is one transaction: a worker killed in the
middle applies nothing, and the batch is claimed again.

An event can arrive before our own record of the send (the provider answered, our
acknowledgement is not committed yet). The applier then marks it attempted and leaves
``communication_id`` NULL, and the acknowledgement applies it
(:func:`apply_waiting_events`). Both take the transaction-scoped advisory lock on
(client, provider, message id) first (sorted, one order everywhere: advisory locks, then
event rows, then communications), so one of them always sees the other's committed row;
whichever applies an event marks it, and neither applies a marked event again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from lqs.db.consent import withdraw_consent
from lqs.db.pool import worth_retrying
from lqs.db.suppressions import suppress
from lqs.domain.events import DeliveryEvent, EventKind, Transition, transition
from lqs.domain.vocabulary import CommunicationStatus

MAX_REASON = 2000
"""``provider_events.reason``'s limit: a longer reason is stored cut to it (the error code
too)."""

EVENTS_PENDING_CHANNEL = "lqs_provider_events_pending"
"""Where storing events NOTIFYs the worker's applier."""

APPLY_BATCH = 500
"""Pending events the applier claims per transaction."""


def message_lock_key(client_id: UUID, provider: str, external_id: str) -> str:
    """The advisory-lock key shared by the event applier and the send's acknowledgement."""
    return f"{client_id}:{provider}:{external_id}"


async def lock_messages(conn: AsyncConnection, keys: Iterable[str]) -> None:
    """Take the advisory locks for these keys, in one order everywhere (sorted)."""
    ordered = sorted(set(keys))
    if ordered:
        await conn.execute(
            "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0)))"
            " FROM unnest(%s::text[]) AS k",
            (ordered,),
        )


# ---------------------------------------------------------------------------- store


@dataclass(frozen=True)
class StoreOutcome:
    """What storing one webhook request's events did."""

    stored: int
    duplicates: int
    """Events already stored (a re-delivery): no second effect."""


_STORE = """
WITH stored AS (
    INSERT INTO public.provider_events (client_id, provider, event_id, external_id,
        event_type, kind, recipient, occurred_at, reason, error_code,
        named_communication_id, payload)
    SELECT %(client)s::uuid, %(provider)s::text, e.* FROM unnest(
        %(event_ids)s::text[], %(external_ids)s::text[], %(types)s::text[],
        %(kinds)s::text[], %(recipients)s::text[], %(times)s::timestamptz[],
        %(reasons)s::text[], %(codes)s::text[], %(named)s::uuid[], %(payloads)s::jsonb[]
    ) AS e
    ON CONFLICT (client_id, provider, event_id) DO NOTHING
    RETURNING 1
), woken AS (
    SELECT pg_notify(%(channel)s, '') FROM (SELECT 1 FROM stored LIMIT 1) AS any_stored
)
SELECT (SELECT count(*) FROM stored), (SELECT count(*) FROM woken)
"""


def _cut(text: str | None) -> str | None:
    return None if text is None else text[:MAX_REASON]


async def store_events(
    conn: AsyncConnection, client_id: UUID, provider: str, events: Sequence[DeliveryEvent]
) -> StoreOutcome:
    """Store one verified webhook's events for ``client_id`` in ONE statement (its own
    transaction in autocommit, or the caller's) and wake the applier if any is new.

    Nothing is matched or applied here: the worker does that (:func:`apply_pending_events`).
    """
    if not events:
        return StoreOutcome(0, 0)
    cur = await conn.execute(
        _STORE,
        {
            "client": client_id,
            "provider": provider,
            "event_ids": [e.event_id for e in events],
            "external_ids": [e.external_id for e in events],
            "types": [e.raw_type for e in events],
            "kinds": [e.kind.value for e in events],
            "recipients": [e.recipient for e in events],
            "times": [e.occurred_at for e in events],
            "reasons": [_cut(e.reason) for e in events],
            "codes": [_cut(e.error_code) for e in events],
            "named": [e.communication_id for e in events],
            "payloads": [Jsonb(e.payload) for e in events],
            "channel": EVENTS_PENDING_CHANNEL,
        },
    )
    row = await cur.fetchone()
    stored = 0 if row is None else int(row[0])
    return StoreOutcome(stored, len(events) - stored)


async def store_webhook_events(
    pool: AsyncConnectionPool, client_id: UUID, provider: str, events: Sequence[DeliveryEvent]
) -> StoreOutcome:
    """:func:`store_events` in one round trip after the pool's check: the statement runs
    in autocommit (its own transaction, no BEGIN or COMMIT to wait for). Through a
    transaction pooler the checkout is already a transaction, committed at check-in.

    A lost connection, even at commit, is retried once on a fresh one: the events are
    deduplicated by their ids, so storing them twice has no second effect.
    """
    attempt = 1
    while True:
        try:
            async with pool.connection() as conn:
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    return await store_events(conn, client_id, provider, events)
                await conn.set_autocommit(True)
                try:
                    return await store_events(conn, client_id, provider, events)
                finally:
                    if not conn.broken:
                        await conn.set_autocommit(False)
        except Exception as exc:
            if attempt > 1 or not worth_retrying(exc):
                raise
            attempt += 1


# ---------------------------------------------------------------------------- apply


@dataclass(frozen=True)
class _Stored:
    """A stored event as the applier reads it back (``provider_events`` row)."""

    row: int
    client_id: UUID
    provider: str
    event: DeliveryEvent


@dataclass(frozen=True)
class _Target:
    id: UUID
    status: str
    channel: str
    recipient: str
    lead_id: UUID
    external_id: str | None


@dataclass
class AppliedEvents:
    """What one batch of the applier did."""

    candidates: int = 0
    """Pending events read (at most the batch size: fewer means the queue is drained)."""
    applied: int = 0
    """Events matched to their communication and applied."""
    waiting: int = 0
    """Events whose communication is not recorded yet: left for the acknowledgement."""
    changed: int = 0
    """Communications whose status changed."""
    held: int = 0
    """Events left pending because another transaction held their communication."""

    def add(self, other: AppliedEvents) -> None:
        """Count ``other`` (another batch) in these totals."""
        for name in ("candidates", "applied", "waiting", "changed", "held"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


_PENDING = (
    "SELECT id, client_id, provider, external_id FROM public.provider_events"
    " WHERE attempted_at IS NULL AND communication_id IS NULL ORDER BY id LIMIT %s"
)

# Re-checked under the row lock: another applier, or an acknowledgement, may have
# applied some of them since they were read.
_LOCK_PENDING = (
    "SELECT e.id, e.client_id, e.provider, e.event_id, e.external_id, e.event_type, e.kind,"
    " e.recipient, e.occurred_at, e.reason, e.error_code, e.named_communication_id"
    " FROM public.provider_events AS e"
    " WHERE e.id = ANY(%s) AND e.attempted_at IS NULL AND e.communication_id IS NULL"
    " ORDER BY e.id FOR UPDATE SKIP LOCKED"
)

# Each event's communication, only among its own client's: our id when the provider
# echoed it, else the provider's message id (the first recorded under it).
_MATCH = """
SELECT e.event_row, coalesce(
    (SELECT c.id FROM public.communications AS c
     WHERE c.id = e.named AND c.client_id = e.client_id),
    (SELECT c.id FROM public.communications AS c
     WHERE c.client_id = e.client_id AND c.provider = e.provider
       AND c.external_id = e.external_id
     ORDER BY c.created_at LIMIT 1))
FROM unnest(%s::bigint[], %s::uuid[], %s::text[], %s::text[], %s::uuid[])
    AS e(event_row, client_id, provider, external_id, named)
"""

_LOCK_TARGETS = (
    "SELECT id, status, type AS channel, recipient, lead_id, external_id"
    " FROM public.communications WHERE id = ANY(%s) ORDER BY id FOR UPDATE"
)
# The applier's: a communication another transaction holds (an erasure, a dispatcher's
# acknowledgement) is skipped, not waited for, so the applier never waits while holding
# event rows that transaction may want next (a deadlock); its events stay pending.
_LOCK_FREE_TARGETS = _LOCK_TARGETS + " SKIP LOCKED"
_EXISTING = "SELECT id FROM public.communications WHERE id = ANY(%s)"

# One row per communication that changes. The external id, provider and send time are
# recorded only where none was (matched by our own id: the worker stopped between the
# provider's acceptance and recording it; the event proves the send). A provider's
# refusal is appended to the compliance note, which may name the consent entry the send
# relied on. Every SET expression reads the row as it was.
_WRITE_COMMUNICATIONS = """
UPDATE public.communications AS c SET
    external_id = coalesce(c.external_id, u.external_id),
    provider = CASE WHEN c.external_id IS NULL AND u.external_id IS NOT NULL
                    THEN coalesce(c.provider, u.provider) ELSE c.provider END,
    sent_at = CASE WHEN c.external_id IS NULL AND u.external_id IS NOT NULL
                   THEN coalesce(c.sent_at, u.sent_at, now()) ELSE c.sent_at END,
    status = coalesce(u.status, c.status),
    delivered_at = CASE WHEN u.delivered THEN coalesce(c.delivered_at, u.delivered_at, now())
                        ELSE c.delivered_at END,
    error_message = coalesce(u.error_message, c.error_message),
    compliance_notes = CASE WHEN u.note IS NULL THEN c.compliance_notes
                            WHEN c.compliance_notes IS NULL THEN u.note
                            ELSE c.compliance_notes || '; ' || u.note END
FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::timestamptz[], %s::text[],
            %s::boolean[], %s::timestamptz[], %s::text[], %s::text[])
    AS u(id, external_id, provider, sent_at, status, delivered, delivered_at,
         error_message, note)
WHERE c.id = u.id
"""

_MARK_EVENTS = """
UPDATE public.provider_events AS e SET
    attempted_at = now(),
    communication_id = u.communication_id,
    applied_at = CASE WHEN u.communication_id IS NULL THEN e.applied_at ELSE now() END,
    effect = u.effect
FROM unnest(%s::bigint[], %s::uuid[], %s::text[]) AS u(id, communication_id, effect)
WHERE e.id = u.id
"""


def _stored(row: dict[str, Any]) -> _Stored:
    return _Stored(
        row=row["id"],
        client_id=row["client_id"],
        provider=row["provider"],
        event=stored_event(row),
    )


def stored_event(row: dict[str, Any]) -> DeliveryEvent:
    """A ``provider_events`` row back as the event it was (its payload only if read)."""
    return DeliveryEvent(
        provider=row["provider"],
        event_id=row["event_id"],
        kind=EventKind(row["kind"]),
        raw_type=row["event_type"],
        external_id=row["external_id"],
        occurred_at=row["occurred_at"],
        communication_id=row.get("named_communication_id"),
        recipient=row["recipient"],
        reason=row["reason"],
        error_code=row.get("error_code"),
        payload=row.get("payload") or {},
    )


def _effect(change: Transition) -> str:
    parts = [change.status.value] if change.status else []
    if change.suppress:
        parts.append(f"suppressed ({change.suppress})")
    return ", ".join(parts) or "no change"


def _order(item: _Stored) -> tuple[bool, datetime | None, int]:
    at = item.event.occurred_at
    return (at is None, at, item.row)


@dataclass
class _Fold:
    """One communication's events folded through :func:`transition`: what to write."""

    target: _Target
    status: CommunicationStatus
    external_id: str | None = None
    provider: str | None = None
    sent_at: datetime | None = None
    status_changed: bool = False
    delivered: bool = False
    delivered_at: datetime | None = None
    error_message: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def writes(self) -> bool:
        return self.status_changed or self.external_id is not None or bool(self.notes)


async def _apply(
    conn: AsyncConnection, matched: Sequence[tuple[_Stored, _Target | None]]
) -> AppliedEvents:
    """Apply these locked events to their locked communications (None: not recorded yet,
    the event is marked attempted and waits); three statements plus one or two per
    suppressing event."""
    outcome = AppliedEvents()
    folds: dict[UUID, _Fold] = {}
    by_target: dict[UUID, list[_Stored]] = {}
    marks: list[tuple[int, UUID | None, str | None]] = []
    for item, target in matched:
        if target is None:
            marks.append((item.row, None, None))
            outcome.waiting += 1
            continue
        if target.id not in folds:
            folds[target.id] = _Fold(target, CommunicationStatus(target.status))
        by_target.setdefault(target.id, []).append(item)
    suppressions: list[tuple[_Stored, _Target, str]] = []
    for target_id, items in by_target.items():
        fold = folds[target_id]
        known_external_id = fold.target.external_id
        for item in sorted(items, key=_order):
            event = item.event
            change = transition(fold.status, event)
            if known_external_id is None and event.external_id is not None:
                known_external_id = fold.external_id = event.external_id
                fold.provider, fold.sent_at = item.provider, event.occurred_at
            if change.status is not None:
                if change.status is CommunicationStatus.DELIVERED and not fold.delivered:
                    fold.delivered, fold.delivered_at = True, change.delivered_at
                fold.status, fold.status_changed = change.status, True
                fold.error_message = change.error_message or fold.error_message
                if change.compliance_note is not None:
                    fold.notes.append(change.compliance_note)
            if change.suppress is not None:
                suppressions.append((item, fold.target, change.suppress))
            marks.append((item.row, target_id, _effect(change)))
            outcome.applied += 1
    written = [fold for fold in folds.values() if fold.writes]
    if written:
        await conn.execute(
            _WRITE_COMMUNICATIONS,
            (
                [f.target.id for f in written],
                [f.external_id for f in written],
                [f.provider for f in written],
                [f.sent_at for f in written],
                [f.status.value if f.status_changed else None for f in written],
                [f.delivered for f in written],
                [f.delivered_at for f in written],
                [f.error_message for f in written],
                ["; ".join(f.notes) if f.notes else None for f in written],
            ),
        )
    outcome.changed = sum(1 for fold in written if fold.status_changed)
    for item, target, reason in suppressions:
        await _suppress(conn, item, target, reason)
    if marks:
        await conn.execute(
            _MARK_EVENTS,
            ([m[0] for m in marks], [m[1] for m in marks], [m[2] for m in marks]),
        )
    return outcome


async def _suppress(conn: AsyncConnection, item: _Stored, target: _Target, reason: str) -> None:
    """Suppress the recipient for this event; an unsubscribe or complaint also withdraws
    the lead's consent, with the event as evidence."""
    event, provider = item.event, item.provider
    source = f"{provider} {event.raw_type} event {event.event_id}"
    await suppress(conn, item.client_id, target.channel, target.recipient, reason, source)
    if reason in ("unsubscribe", "complaint"):
        await withdraw_consent(
            conn,
            item.client_id,
            target.lead_id,
            target.channel,
            target.recipient,
            source=f"{provider} {reason}",
            communication_id=target.id,
            evidence={
                "provider": provider,
                "event_id": event.event_id,
                "event_type": event.raw_type,
                "provider_events_row": str(item.row),
            },
        )


async def _targets(
    conn: AsyncConnection, ids: Iterable[UUID], *, skip_locked: bool = False
) -> dict[UUID, _Target]:
    """Lock these communications (in id order) and read what applying needs; with
    ``skip_locked``, those another transaction holds are left out."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_LOCK_FREE_TARGETS if skip_locked else _LOCK_TARGETS, (wanted,))
        return {row["id"]: _Target(**row) for row in await cur.fetchall()}


async def _held(conn: AsyncConnection, ids: Iterable[UUID]) -> set[UUID]:
    """Which of these communications exist (those :func:`_targets` skipped: held by
    another transaction, not deleted); a plain read, it waits for no lock."""
    wanted = list(ids)
    if not wanted:
        return set()
    cur = await conn.execute(_EXISTING, (wanted,))
    return {row[0] for row in await cur.fetchall()}


async def apply_pending_events(conn: AsyncConnection, limit: int = APPLY_BATCH) -> AppliedEvents:
    """Apply up to ``limit`` pending events, oldest first, in one transaction.

    Lock order, as everywhere: the advisory locks of the batch's messages (sorted), then
    the event rows (``SKIP LOCKED``: another applier's are left to it; each re-checked as
    still pending), then the communications (``SKIP LOCKED`` too: an event whose
    communication another transaction holds, an erasure say, stays pending for a later
    batch, so the applier never waits while holding event rows). Several appliers may
    run at once: each event is applied by exactly one. ``candidates`` below ``limit``
    means the queue was drained.
    """
    async with conn.transaction():
        cur = await conn.execute(_PENDING, (limit,))
        candidates = await cur.fetchall()
        if not candidates:
            return AppliedEvents()
        await lock_messages(
            conn,
            (message_lock_key(c, p, m) for _, c, p, m in candidates if m is not None),
        )
        async with conn.cursor(row_factory=dict_row) as rows:
            await rows.execute(_LOCK_PENDING, ([c[0] for c in candidates],))
            events = [_stored(row) for row in await rows.fetchall()]
        outcome = AppliedEvents()
        if events:
            cur = await conn.execute(
                _MATCH,
                (
                    [e.row for e in events],
                    [e.client_id for e in events],
                    [e.provider for e in events],
                    [e.event.external_id for e in events],
                    [e.event.communication_id for e in events],
                ),
            )
            match: dict[int, UUID | None] = dict(await cur.fetchall())
            found = {c for c in match.values() if c is not None}
            targets = await _targets(conn, found, skip_locked=True)
            # Skipped because another transaction holds them: left pending for a later
            # batch. (Gone since the match, deleted by retention or a client's removal:
            # marked like an event with no communication.)
            held = await _held(conn, found - targets.keys())
            matched = []
            for e in events:
                comm = match.get(e.row)
                if comm in held:
                    continue
                matched.append((e, None if comm is None else targets.get(comm)))
            outcome = await _apply(conn, matched)
            outcome.held = len(events) - len(matched)
    outcome.candidates = len(candidates)
    return outcome


async def apply_waiting_events(
    conn: AsyncConnection, sent: Sequence[tuple[UUID, str, str, UUID]]
) -> int:
    """Apply the events that arrived before these sends were recorded.

    ``sent`` holds (client id, provider, provider message id, communication id) of sends
    just recorded in this transaction, whose advisory locks the caller took *before*
    recording them. An event waits here whether the applier looked at it already (and
    found no such message) or not yet. Returns how many events were applied.
    """
    if not sent:
        return 0
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT e.id, e.client_id, e.provider, e.event_id, e.external_id, e.event_type,"
            " e.kind, e.recipient, e.occurred_at, e.reason, e.error_code,"
            " e.named_communication_id, s.communication_id AS sent_as"
            " FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::uuid[])"
            "   AS s(client_id, provider, external_id, communication_id)"
            " JOIN public.provider_events AS e ON e.client_id = s.client_id"
            "   AND e.provider = s.provider AND e.external_id = s.external_id"
            "   AND e.communication_id IS NULL"
            " ORDER BY e.id FOR UPDATE OF e",
            (
                [s[0] for s in sent],
                [s[1] for s in sent],
                [s[2] for s in sent],
                [s[3] for s in sent],
            ),
        )
        waiting = await cur.fetchall()
    if not waiting:
        return 0
    targets = await _targets(conn, (row["sent_as"] for row in waiting))
    matched = [
        (_stored(row), targets[row["sent_as"]]) for row in waiting if row["sent_as"] in targets
    ]
    return (await _apply(conn, matched)).applied
