"""SQL for delivery events: store each verified event once and apply it.

An event is stored in ``provider_events`` under the provider's own event id (unique per
client and provider): a re-delivered event inserts nothing and has no second effect, even
when the copies arrive at the same time (the unique index makes the second insert wait
for the first to commit, then do nothing). The event is then matched to one of *this
client's* communications (by our id when the provider echoes it, else by the provider's
message id) and applied as :func:`lqs.domain.events.transition` says; an event that
suppresses the recipient does so through :mod:`lqs.db.suppressions` and, for an
unsubscribe or a complaint, withdraws consent through :mod:`lqs.db.consent`.

An event can arrive before our own record of the send (the provider answered, our
acknowledgement is not committed yet). It is then kept unmatched, and the acknowledgement
applies it (:func:`apply_waiting_events`). Both sides take the same transaction-scoped
advisory lock on (client, provider, message id) first, so one of them always sees the
other's committed row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from lqs.db.consent import withdraw_consent
from lqs.db.suppressions import suppress
from lqs.domain.events import DeliveryEvent, EventKind, Transition, transition
from lqs.domain.vocabulary import CommunicationStatus

MAX_REASON = 2000
"""``provider_events.reason``'s limit: a longer reason is stored cut to it."""


def message_lock_key(client_id: UUID, provider: str, external_id: str) -> str:
    """The advisory-lock key shared by event ingestion and the send's acknowledgement."""
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


@dataclass
class IngestOutcome:
    """What one webhook request's events did."""

    stored: int = 0
    duplicates: int = 0
    unmatched: int = 0
    changed: int = 0


@dataclass(frozen=True)
class _Target:
    id: UUID
    status: str
    channel: str
    recipient: str
    lead_id: UUID
    external_id: str | None


_TARGET = (
    "SELECT id, status, type AS channel, recipient, lead_id, external_id FROM public.communications"
)
_TARGET_BY_ID = _TARGET + " WHERE id = %s AND client_id = %s FOR UPDATE"
_TARGET_BY_MESSAGE = (
    _TARGET + " WHERE client_id = %s AND provider = %s AND external_id = %s"
    " ORDER BY created_at LIMIT 1 FOR UPDATE"
)


async def ingest_events(
    conn: AsyncConnection, client_id: UUID, provider: str, events: Sequence[DeliveryEvent]
) -> IngestOutcome:
    """Store and apply one verified webhook's events for ``client_id``, in one transaction.

    Only ``client_id``'s communications can be matched: an event naming another client's
    message is stored as unmatched and changes nothing.
    """
    outcome = IngestOutcome()
    async with conn.transaction():
        await lock_messages(
            conn,
            (message_lock_key(client_id, provider, e.external_id) for e in events if e.external_id),
        )
        for event in events:
            cur = await conn.execute(
                "INSERT INTO public.provider_events (client_id, provider, event_id, external_id,"
                " event_type, kind, recipient, occurred_at, reason, payload)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (client_id, provider, event_id) DO NOTHING RETURNING id",
                (
                    client_id,
                    provider,
                    event.event_id,
                    event.external_id,
                    event.raw_type,
                    event.kind.value,
                    event.recipient,
                    event.occurred_at,
                    None if event.reason is None else event.reason[:MAX_REASON],
                    Jsonb(event.payload),
                ),
            )
            row = await cur.fetchone()
            if row is None:
                outcome.duplicates += 1
                continue
            outcome.stored += 1
            target = await _match(conn, client_id, provider, event)
            if target is None:
                outcome.unmatched += 1
                continue
            if await _apply(conn, client_id, provider, row[0], event, target):
                outcome.changed += 1
    return outcome


async def _match(
    conn: AsyncConnection, client_id: UUID, provider: str, event: DeliveryEvent
) -> _Target | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        if event.communication_id is not None:
            await cur.execute(_TARGET_BY_ID, (event.communication_id, client_id))
            found = await cur.fetchone()
            if found is not None:
                return _Target(**found)
        if event.external_id is None:
            return None
        await cur.execute(_TARGET_BY_MESSAGE, (client_id, provider, event.external_id))
        found = await cur.fetchone()
    return None if found is None else _Target(**found)


def _effect(change: Transition) -> str:
    parts = [change.status.value] if change.status else []
    if change.suppress:
        parts.append(f"suppressed ({change.suppress})")
    return ", ".join(parts) or "no change"


async def _apply(
    conn: AsyncConnection,
    client_id: UUID,
    provider: str,
    event_row: int,
    event: DeliveryEvent,
    target: _Target,
) -> bool:
    """Apply one stored event to its (locked) communication; True if the status changed.

    An event for a communication with no ``external_id`` (matched by our own id: the
    worker stopped between the provider's acceptance and recording it) also records the
    provider, its message id and the send time, which the event proves.
    """
    change = transition(CommunicationStatus(target.status), event)
    if target.external_id is None and event.external_id is not None:
        await conn.execute(
            "UPDATE public.communications SET external_id = %s,"
            " provider = coalesce(provider, %s), sent_at = coalesce(sent_at, %s, now())"
            " WHERE id = %s",
            (event.external_id, provider, event.occurred_at, target.id),
        )
    if change.status is not None:
        await conn.execute(
            # One type for the parameter: it is both assigned (varchar) and compared.
            "UPDATE public.communications SET status = %(status)s::text,"
            " delivered_at = CASE WHEN %(status)s::text = 'delivered'"
            "   THEN coalesce(delivered_at, %(at)s, now()) ELSE delivered_at END,"
            " error_message = coalesce(%(error)s, error_message),"
            # A provider's refusal is added to the note, which may name the consent
            # entry the send relied on.
            " compliance_notes = CASE WHEN %(note)s::text IS NULL THEN compliance_notes"
            "   WHEN compliance_notes IS NULL THEN %(note)s::text"
            "   ELSE compliance_notes || '; ' || %(note)s::text END"
            " WHERE id = %(id)s",
            {
                "status": change.status.value,
                "at": change.delivered_at,
                "error": change.error_message,
                "note": change.compliance_note,
                "id": target.id,
            },
        )
    if change.suppress is not None:
        source = f"{provider} {event.raw_type} event {event.event_id}"
        await suppress(conn, client_id, target.channel, target.recipient, change.suppress, source)
        if change.suppress in ("unsubscribe", "complaint"):
            await withdraw_consent(
                conn,
                client_id,
                target.lead_id,
                target.channel,
                target.recipient,
                source=f"{provider} {change.suppress}",
                communication_id=target.id,
                evidence={
                    "provider": provider,
                    "event_id": event.event_id,
                    "event_type": event.raw_type,
                    "provider_events_row": str(event_row),
                },
            )
    await conn.execute(
        "UPDATE public.provider_events SET communication_id = %s, applied_at = now(), effect = %s"
        " WHERE id = %s",
        (target.id, _effect(change), event_row),
    )
    return change.status is not None


async def apply_waiting_events(
    conn: AsyncConnection, sent: Sequence[tuple[UUID, str, str, UUID]]
) -> int:
    """Apply the events that arrived before these sends were recorded.

    ``sent`` holds (client id, provider, provider message id, communication id) of sends
    just recorded in this transaction, whose advisory locks the caller took *before*
    recording them. Returns how many events were applied.
    """
    if not sent:
        return 0
    applied = 0
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT e.id, e.client_id, e.provider, e.event_id, e.external_id, e.event_type,"
            " e.kind, e.recipient, e.occurred_at, e.reason, e.payload, s.communication_id"
            " FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::uuid[])"
            "   AS s(client_id, provider, external_id, communication_id)"
            " JOIN public.provider_events AS e ON e.client_id = s.client_id"
            "   AND e.provider = s.provider AND e.external_id = s.external_id"
            "   AND e.communication_id IS NULL"
            " ORDER BY e.occurred_at NULLS LAST, e.id FOR UPDATE OF e",
            (
                [s[0] for s in sent],
                [s[1] for s in sent],
                [s[2] for s in sent],
                [s[3] for s in sent],
            ),
        )
        waiting = await cur.fetchall()
    for row in waiting:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(_TARGET_BY_ID, (row["communication_id"], row["client_id"]))
            found = await cur.fetchone()
        if found is None:
            continue
        await _apply(
            conn, row["client_id"], row["provider"], row["id"], stored_event(row), _Target(**found)
        )
        applied += 1
    return applied


def stored_event(row: dict[str, Any]) -> DeliveryEvent:
    """A ``provider_events`` row back as the event it was."""
    return DeliveryEvent(
        provider=row["provider"],
        event_id=row["event_id"],
        kind=EventKind(row["kind"]),
        raw_type=row["event_type"],
        external_id=row["external_id"],
        occurred_at=row["occurred_at"],
        recipient=row["recipient"],
        reason=row["reason"],
        payload=row["payload"],
    )
