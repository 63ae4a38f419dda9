"""SQL for sending: claim due communications with a lease, record what came of them.

A claim is its own short transaction: it takes due rows of ``delivery_queue`` with ``FOR
UPDATE SKIP LOCKED``, counts an attempt, sets the lease and moves ``next_attempt_at`` to
the lease's end (so an abandoned row is due again when its lease expires), and commits
before any provider is called. An outcome is applied only while the worker still holds
that attempt's lease (same owner, same attempt number): a worker whose lease expired
cannot overwrite a newer attempt. Every attempt is kept in ``delivery_attempts``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from lqs.db.events import apply_waiting_events, lock_messages, message_lock_key
from lqs.db.suppressions import suppressed_recipients
from lqs.domain.consent import ReliedEntry
from lqs.domain.delivery import NextStep
from lqs.domain.notifications import normalise_recipient


@dataclass(frozen=True)
class ClaimedMessage:
    """A communication this worker holds the lease of, with what sending it needs."""

    communication_id: UUID
    attempt: int
    client_id: UUID
    lead_id: UUID
    channel: str
    recipient: str
    subject: str | None
    content: str | None
    retry_count: int
    max_retries: int
    age_seconds: float
    """Seconds since the first request to a provider (0 before any: deferrals by a send
    window or a frequency cap made none): what the retry horizon is measured from."""
    to_lead: bool
    lead_consent: str | None
    suppressed: bool
    campaign_id: str | None
    push_endpoint: str | None
    push_p256dh: str | None
    push_auth: str | None
    push_gone: bool
    batch_key: str | None
    status: str
    """The communication's status now: a delivery event may have settled it already."""
    created_at: datetime
    in_doubt: int | None = None
    """An earlier attempt that was started and never answered (the worker stopped): the
    provider may have accepted it."""
    lead_time_zone: str | None = None
    lead_phone: str | None = None
    lead_country: str | None = None
    """The lead's own time zone, phone and country: where its send window is read."""
    consent_entry_id: int | None = None
    """The lead's latest consent history entry on its own address (messages to the lead)."""
    consent_entry_status: str | None = None
    consent_entry_source: str | None = None
    consent_entry_at: datetime | None = None
    consent_entry_key_name: str | None = None
    consent_entry_key_prefix: str | None = None

    @property
    def relied_entry(self) -> ReliedEntry | None:
        """The consent history entry a send to the lead relies on: its latest entry, when
        it says what the lead's record says (else None: the record alone)."""
        if (
            self.consent_entry_id is None
            or self.consent_entry_status is None
            or self.consent_entry_status != self.lead_consent
            or self.consent_entry_source is None
            or self.consent_entry_at is None
        ):
            return None
        return ReliedEntry(
            self.consent_entry_id,
            self.consent_entry_status,
            self.consent_entry_source,
            self.consent_entry_at,
            self.consent_entry_key_name,
            self.consent_entry_key_prefix,
        )


_CLAIM = """
WITH claimed AS (
    UPDATE public.delivery_queue AS q
    SET attempts = q.attempts + 1,
        lease_owner = %(owner)s,
        lease_expires_at = now() + make_interval(secs => %(lease)s),
        next_attempt_at = now() + make_interval(secs => %(lease)s)
    -- An array, not a join: the update then looks each row up by its key instead of
    -- scanning the whole queue.
    WHERE q.communication_id = ANY(ARRAY(
        SELECT d.communication_id
        FROM public.delivery_queue AS d
        WHERE d.next_attempt_at <= now()
        ORDER BY d.priority, d.next_attempt_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ))
    RETURNING q.communication_id, q.attempts, q.to_lead, q.priority, q.batch_key
)
SELECT c.id AS communication_id, claimed.attempts AS attempt, c.client_id, c.lead_id,
       c.type AS channel, c.recipient, c.subject, c.content,
       coalesce(c.retry_count, 0) AS retry_count, coalesce(c.max_retries, 3) AS max_retries,
       -- The retry horizon counts from the first request to a provider (its idempotency
       -- window starts then), not from a deferral for a send window or a cap.
       extract(epoch FROM now() - coalesce(tried.first_request_at, now()))::float8
           AS age_seconds,
       claimed.to_lead, l.consent_status AS lead_consent, c.campaign_id,
       p.endpoint AS push_endpoint, p.p256dh AS push_p256dh, p.auth AS push_auth,
       coalesce(p.gone_at IS NOT NULL, false) AS push_gone, claimed.batch_key,
       c.status, c.created_at,
       tried.in_doubt,
       h.id AS consent_entry_id, h.consent_status AS consent_entry_status,
       h.source AS consent_entry_source, h.recorded_at AS consent_entry_at,
       h.key_name AS consent_entry_key_name, h.key_prefix AS consent_entry_key_prefix,
       l.time_zone AS lead_time_zone, l.phone AS lead_phone, l.country AS lead_country
FROM claimed
JOIN public.communications AS c ON c.id = claimed.communication_id
JOIN public.leads AS l ON l.id = c.lead_id
CROSS JOIN LATERAL (
    SELECT max(a.attempt) FILTER (WHERE a.outcome = 'started') AS in_doubt,
           min(a.started_at) FILTER (WHERE a.outcome <> 'deferred') AS first_request_at
    FROM public.delivery_attempts AS a WHERE a.communication_id = c.id
) AS tried
-- The consent a message to the lead relies on: the lead's latest entry on its own address
-- (an entry on a client's address, a complaint about a notification, is not the lead's).
LEFT JOIN LATERAL (
    SELECT e.id, e.consent_status, e.source, e.recorded_at, k.name AS key_name,
           k.prefix AS key_prefix
    FROM public.consent_history AS e
    LEFT JOIN public.api_keys AS k ON k.id = e.api_key_id
    WHERE claimed.to_lead AND e.lead_id = l.id AND e.recipient IN (lower(l.email), l.phone)
    ORDER BY e.id DESC LIMIT 1
) AS h ON true
LEFT JOIN public.push_subscriptions AS p
    ON c.type = 'push' AND p.client_id = c.client_id AND p.id::text = c.recipient
ORDER BY claimed.priority, c.created_at
"""


async def claim_due(
    conn: AsyncConnection, owner: str, limit: int, lease_seconds: float
) -> list[ClaimedMessage]:
    """Claim up to ``limit`` due communications for ``owner`` and commit the claim.

    Must be called outside a transaction (the connection commits here). Highest priority
    (1) first, then the longest due.
    """
    async with conn.transaction():
        return await claim_due_in(conn, owner, limit, lease_seconds)


async def claim_due_in(
    conn: AsyncConnection, owner: str, limit: int, lease_seconds: float
) -> list[ClaimedMessage]:
    """:func:`claim_due` inside the caller's transaction: the claim holds when it commits
    (the dispatcher stores its batch requests in the same transaction).

    Each message's ``suppressed`` compares its recipient as
    :func:`~lqs.domain.notifications.normalise_recipient` normalises it, the one form the
    suppression list is stored in.
    """
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_CLAIM, {"limit": limit, "owner": owner, "lease": lease_seconds})
        rows = await cur.fetchall()
    addresses = [
        (row["client_id"], row["channel"], normalise_recipient(row["channel"], row["recipient"]))
        for row in rows
    ]
    suppressed = await suppressed_recipients(conn, addresses)
    return [
        ClaimedMessage(**row, suppressed=address in suppressed)
        for row, address in zip(rows, addresses, strict=True)
    ]


_RECENT_SENDS = """
SELECT s.client_id, s.channel, s.recipient, array_agg(s.sent_at ORDER BY s.sent_at)
FROM unnest(%s::uuid[], %s::text[], %s::text[]) AS k(client_id, channel, recipient)
JOIN public.recipient_sends AS s
    ON s.client_id = k.client_id AND s.channel = k.channel AND s.recipient = k.recipient
WHERE s.sent_at > %s AND NOT (s.communication_id = ANY(%s::uuid[]))
GROUP BY s.client_id, s.channel, s.recipient
"""

# A frequency cap's count is read and added to under an advisory lock per recipient, held
# until the claim commits: another worker's claim of a message to the same recipient waits,
# then counts this one (a cap is not passed by one claim per worker).
_LOCK_RECIPIENTS = """
SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) FROM unnest(%s::text[]) AS k
"""

# A send decided at claim time counts at once (its time is the claim's); the answer then
# sets the time it was accepted, or releases it (:data:`_RELEASE_SENDS`).
_RESERVE_SENDS = """
INSERT INTO public.recipient_sends (communication_id, client_id, channel, recipient, sent_at)
SELECT s.communication_id, s.client_id, s.channel, s.recipient, %s
FROM unnest(%s::uuid[], %s::uuid[], %s::text[], %s::text[])
    AS s(communication_id, client_id, channel, recipient)
ON CONFLICT (communication_id) DO UPDATE SET sent_at = excluded.sent_at
"""

RecipientKey = tuple[UUID, str, str]
"""A frequency cap's count key: client, channel and normalised recipient."""


async def recent_sends(
    conn: AsyncConnection,
    keys: Iterable[RecipientKey],
    since: datetime,
    *,
    excluding: Sequence[UUID] = (),
) -> dict[RecipientKey, list[datetime]]:
    """The times of the messages accepted (or reserved by a claim) for each (client,
    channel, normalised recipient) after ``since``, oldest first, leaving out the
    messages ``excluding`` (the ones being decided: a claim whose lease expired reserved
    them already). One indexed range scan per key, in one statement; keys without any
    are left out.

    In a claim's transaction, call :func:`lock_recipients` first: the count is then
    every committed send and reservation, and stays so until the claim commits."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    cur = await conn.execute(
        _RECENT_SENDS,
        (
            [k[0] for k in wanted],
            [k[1] for k in wanted],
            [k[2] for k in wanted],
            since,
            list(excluding),
        ),
    )
    return {(row[0], row[1], row[2]): list(row[3]) for row in await cur.fetchall()}


async def lock_recipients(conn: AsyncConnection, keys: Iterable[RecipientKey]) -> None:
    """Take the frequency caps' advisory locks of these recipients until the transaction
    ends, in one order everywhere (sorted)."""
    ordered = sorted({f"cap:{k[0]}:{k[1]}:{k[2]}" for k in keys})
    if ordered:
        await conn.execute(_LOCK_RECIPIENTS, (ordered,))


async def reserve_sends(
    conn: AsyncConnection, sends: Sequence[tuple[UUID, RecipientKey]], at: datetime
) -> None:
    """Count these (communication, recipient) sends for the caps from ``at``, before their
    requests: in the claim's transaction, under :func:`lock_recipients`."""
    if not sends:
        return
    await conn.execute(
        _RESERVE_SENDS,
        (
            at,
            [s[0] for s in sends],
            [s[1][0] for s in sends],
            [s[1][1] for s in sends],
            [s[1][2] for s in sends],
        ),
    )


async def purge_recipient_sends(conn: AsyncConnection, older_than: datetime) -> int:
    """Delete the ``recipient_sends`` rows no frequency cap counts any more; how many."""
    cur = await conn.execute("DELETE FROM public.recipient_sends WHERE sent_at < %s", (older_than,))
    return cur.rowcount


@dataclass(frozen=True)
class Attempt:
    """One call to a provider, as the attempts history keeps it."""

    provider: str
    started_at: datetime
    finished_at: datetime
    http_status: int | None
    error_code: str | None
    error_message: str | None
    outcome: str
    """``accepted``, ``transient``, ``permanent``, or ``deferred`` (no request: a send
    window or a frequency cap holds the message back)."""


@dataclass(frozen=True)
class Ack:
    """What to record for one claimed communication.

    ``attempt`` is None when no provider was called (rejected at the consent check, no
    provider configured, settled by a delivery event).
    """

    communication_id: UUID
    claim: int
    step: NextStep
    retry_count: int
    provider: str | None = None
    external_id: str | None = None
    external_reference: Any = None
    error_message: str | None = None
    compliance_notes: str | None = None
    consent_status: str | None = None
    """The lead's consent in force when the message was sent (or refused): the
    communication's ``consent_status`` becomes it."""
    delay: float | None = None
    sent_at: datetime | None = None
    delivered: bool = False
    """A ``sent`` ack whose acceptance was the delivery itself (an outbound webhook): the
    communication becomes ``delivered``, with ``delivered_at = sent_at``."""
    attempt: Attempt | None = None
    push_gone: bool = False
    client_id: UUID | None = None
    """Set on a ``sent`` ack: with ``provider`` and ``external_id`` it finds the delivery
    events that arrived before the send was recorded."""
    defer_until: datetime | None = None
    """A ``deferred`` ack: when the message is due again."""
    counted_as: tuple[str, str] | None = None
    """A ``sent`` ack of a message to a lead: the channel and normalised recipient its
    send is counted under for frequency caps (``recipient_sends``)."""


_RECORD = """
WITH acks AS (
    SELECT * FROM jsonb_to_recordset(%(acks)s) AS a(
        communication_id uuid, claim integer, step text, retry_count integer,
        provider text, external_id text, external_reference jsonb, error_message text,
        compliance_notes text, consent_status text, delay float8, sent_at timestamptz,
        delivered boolean, defer_until timestamptz
    )
), held AS (
    -- One primary-key lookup per ack: a join here was planned as a scan over every row
    -- the worker holds (lease_owner is rarely set, so its statistics say "one row").
    SELECT h.communication_id
    FROM acks AS a, LATERAL (
        SELECT q.communication_id FROM public.delivery_queue AS q
        WHERE q.communication_id = a.communication_id
          AND q.lease_owner = %(owner)s AND q.attempts = a.claim
        FOR UPDATE
    ) AS h
), updated AS (
    UPDATE public.communications AS c
    SET status = CASE
            -- A delivery event may have moved the row on already: never move it back.
            WHEN a.step = 'sent' THEN CASE WHEN c.status <> 'pending' THEN c.status
                                           WHEN a.delivered THEN 'delivered' ELSE 'sent' END
            WHEN c.status <> 'pending' THEN c.status
            WHEN a.step = 'failed' THEN 'failed'
            WHEN a.step = 'rejected' THEN 'rejected'
            ELSE c.status
        END,
        sent_at = CASE WHEN a.step = 'sent' THEN coalesce(c.sent_at, a.sent_at) ELSE c.sent_at END,
        delivered_at = CASE WHEN a.step = 'sent' AND a.delivered AND c.status = 'pending'
                            THEN a.sent_at ELSE c.delivered_at END,
        provider = coalesce(a.provider, c.provider),
        external_id = CASE WHEN a.step = 'sent' THEN a.external_id ELSE c.external_id END,
        external_reference = CASE WHEN a.step = 'sent' THEN a.external_reference
                                  ELSE c.external_reference END,
        retry_count = a.retry_count,
        error_message = CASE WHEN c.status NOT IN ('pending', 'sent') THEN c.error_message
                             WHEN a.step = 'sent' THEN NULL
                             WHEN a.step = 'deferred' THEN c.error_message
                             ELSE a.error_message END,
        compliance_notes = coalesce(a.compliance_notes, c.compliance_notes),
        consent_status = coalesce(a.consent_status, c.consent_status)
    FROM acks AS a
    WHERE c.id = a.communication_id AND c.id IN (SELECT communication_id FROM held)
    RETURNING c.id
), finished AS (
    DELETE FROM public.delivery_queue AS q
    USING acks AS a
    WHERE q.communication_id = a.communication_id AND a.step NOT IN ('retried', 'deferred')
      AND q.communication_id IN (SELECT communication_id FROM held)
    RETURNING q.communication_id
), rescheduled AS (
    -- A deferral waits for its moment (no backoff) and keeps the last error it had.
    UPDATE public.delivery_queue AS q
    SET next_attempt_at = coalesce(a.defer_until, now() + make_interval(secs => a.delay)),
        lease_owner = NULL, lease_expires_at = NULL,
        last_error = CASE WHEN a.step = 'retried' THEN a.error_message ELSE q.last_error END
    FROM acks AS a
    WHERE q.communication_id = a.communication_id AND a.step IN ('retried', 'deferred')
      AND q.communication_id IN (SELECT communication_id FROM held)
    RETURNING q.communication_id
)
SELECT communication_id FROM held
"""

_RECORD_ATTEMPTS = """
INSERT INTO public.delivery_attempts (
    communication_id, client_id, attempt, provider, started_at, finished_at, http_status,
    error_code, error_message, latency_ms, outcome, recorded
)
SELECT a.communication_id, c.client_id, a.attempt, a.provider, a.started_at, a.finished_at,
       a.http_status, a.error_code, a.error_message,
       greatest(0, extract(epoch FROM a.finished_at - a.started_at) * 1000),
       a.outcome, a.communication_id = ANY(%(held)s::uuid[])
FROM jsonb_to_recordset(%(attempts)s) AS a(
    communication_id uuid, attempt integer, provider text, started_at timestamptz,
    finished_at timestamptz, http_status integer, error_code text, error_message text,
    outcome text
)
JOIN public.communications AS c ON c.id = a.communication_id
-- An attempt recorded as started before its request gets its answer now.
ON CONFLICT (communication_id, attempt) DO UPDATE
SET provider = excluded.provider, started_at = excluded.started_at,
    finished_at = excluded.finished_at, http_status = excluded.http_status,
    error_code = excluded.error_code, error_message = excluded.error_message,
    latency_ms = excluded.latency_ms, outcome = excluded.outcome, recorded = excluded.recorded
WHERE delivery_attempts.outcome = 'started'
"""

_RECORD_STARTED = """
INSERT INTO public.delivery_attempts (
    communication_id, client_id, attempt, provider, started_at, outcome, recorded
)
SELECT s.communication_id, s.client_id, s.attempt, s.provider, now(), 'started', false
FROM unnest(%s::uuid[], %s::uuid[], %s::int[], %s::text[])
    AS s(communication_id, client_id, attempt, provider)
ON CONFLICT (communication_id, attempt) DO NOTHING
"""


_RECORD_SENDS = """
INSERT INTO public.recipient_sends (communication_id, client_id, channel, recipient, sent_at)
SELECT s.communication_id, c.client_id, s.channel, s.recipient, s.sent_at
FROM jsonb_to_recordset(%(sends)s) AS s(
    communication_id uuid, channel text, recipient text, sent_at timestamptz
)
JOIN public.communications AS c ON c.id = s.communication_id
WHERE s.communication_id = ANY(%(held)s::uuid[])
ON CONFLICT (communication_id) DO UPDATE SET sent_at = excluded.sent_at
"""

# A claim's reservation of a message that was not sent (it is retried, failed or was held
# back) no longer counts.
_RELEASE_SENDS = """
DELETE FROM public.recipient_sends
WHERE communication_id = ANY(%(released)s::uuid[]) AND communication_id = ANY(%(held)s::uuid[])
"""


async def record_started_attempts(
    conn: AsyncConnection, started: Sequence[tuple[UUID, UUID, int, str]]
) -> None:
    """Record (communication, client, attempt, provider) as started, before the request.

    For providers that cannot deduplicate a repeated request: if the worker stops before
    the answer is recorded, the retry and the audit trail know this attempt may have
    reached the provider. Call it in the claim's transaction.
    """
    if not started:
        return
    await conn.execute(
        _RECORD_STARTED,
        (
            [s[0] for s in started],
            [s[1] for s in started],
            [s[2] for s in started],
            [s[3] for s in started],
        ),
    )


async def record_acks(conn: AsyncConnection, owner: str, acks: Sequence[Ack]) -> set[UUID]:
    """Apply the outcomes this worker still holds leases for; keep every attempt.

    One transaction for the whole list (the connection commits here). Returns the ids
    whose outcome was applied; the others had lost their lease (their attempts are kept
    with ``recorded = false``).
    """
    if not acks:
        return set()
    payload = [
        {
            "communication_id": str(a.communication_id),
            "claim": a.claim,
            "step": a.step.value,
            "retry_count": a.retry_count,
            "provider": a.provider,
            "external_id": a.external_id,
            "external_reference": a.external_reference,
            "error_message": a.error_message,
            "compliance_notes": a.compliance_notes,
            "consent_status": a.consent_status,
            "delay": a.delay,
            "sent_at": a.sent_at.isoformat() if a.sent_at else None,
            "delivered": a.delivered,
            "defer_until": a.defer_until.isoformat() if a.defer_until else None,
        }
        for a in acks
    ]
    attempts = [
        {
            "communication_id": str(a.communication_id),
            "attempt": a.claim,
            "provider": a.attempt.provider,
            "started_at": a.attempt.started_at.isoformat(),
            "finished_at": a.attempt.finished_at.isoformat(),
            "http_status": a.attempt.http_status,
            "error_code": a.attempt.error_code,
            "error_message": a.attempt.error_message,
            "outcome": a.attempt.outcome,
        }
        for a in acks
        if a.attempt is not None
    ]
    counted = [
        {
            "communication_id": str(a.communication_id),
            "channel": a.counted_as[0],
            "recipient": a.counted_as[1],
            "sent_at": a.sent_at.isoformat() if a.sent_at else None,
        }
        for a in acks
        if a.step is NextStep.SENT and a.counted_as is not None and a.sent_at is not None
    ]
    released = [str(a.communication_id) for a in acks if a.step is not NextStep.SENT]
    gone = [a.communication_id for a in acks if a.push_gone]
    sends = [
        (a.client_id, a.provider, a.external_id, a.communication_id)
        for a in acks
        if a.step is NextStep.SENT and a.client_id and a.provider and a.external_id
    ]
    async with conn.transaction():
        # Before recording the sends: a delivery event for one of them either committed
        # already (and is applied below) or waits for this transaction (and finds it).
        await lock_messages(conn, (message_lock_key(c, p, m) for c, p, m, _ in sends))
        cur = await conn.execute(_RECORD, {"acks": Jsonb(payload), "owner": owner})
        held = [row[0] for row in await cur.fetchall()]
        if sends:
            kept = set(held)
            await apply_waiting_events(conn, [s for s in sends if s[3] in kept])
        if attempts:
            await conn.execute(_RECORD_ATTEMPTS, {"attempts": Jsonb(attempts), "held": held})
        if counted:
            await conn.execute(_RECORD_SENDS, {"sends": Jsonb(counted), "held": held})
        if released:
            await conn.execute(_RELEASE_SENDS, {"released": released, "held": held})
        if gone:
            await conn.execute(
                "UPDATE public.push_subscriptions AS p SET gone_at = coalesce(p.gone_at, now())"
                " FROM public.communications AS c"
                " WHERE c.id = ANY(%s) AND c.type = 'push' AND p.client_id = c.client_id"
                " AND p.id::text = c.recipient",
                (gone,),
            )
    return set(held)


async def next_due_in(conn: AsyncConnection) -> float | None:
    """Seconds until the earliest queued communication is due (0 if one is due now);
    None when the queue is empty."""
    cur = await conn.execute(
        # min() of no rows is NULL, and greatest() would turn NULL into 0: test it first.
        "SELECT CASE WHEN min(next_attempt_at) IS NOT NULL"
        " THEN greatest(0, extract(epoch FROM min(next_attempt_at) - now()))::float8 END"
        " FROM public.delivery_queue"
    )
    row = await cur.fetchone()
    return None if row is None or row[0] is None else float(row[0])


@dataclass(frozen=True)
class StoredBatch:
    """A batch request as first sent: replayed verbatim by the retries of its members."""

    batch_key: str
    provider: str
    body: str
    """The request body exactly as first sent (JSON text)."""
    members: list[UUID]


async def store_claimed_batches(
    conn: AsyncConnection, batches: Sequence[tuple[StoredBatch, UUID]]
) -> None:
    """Record batches (with their client) and mark their members, inside the transaction
    that claimed the members: their leases hold exactly when this commits."""
    if not batches:
        return
    await conn.execute(
        "WITH b AS (SELECT * FROM jsonb_to_recordset(%s) AS b(batch_key text, members uuid[]))"
        " UPDATE public.delivery_queue AS q SET batch_key = b.batch_key"
        " FROM b WHERE q.communication_id = ANY(b.members)",
        (Jsonb([{"batch_key": b.batch_key, "members": [str(m) for m in b.members]}
                for b, _ in batches]),),
    )  # fmt: skip
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO public.provider_batches"
            " (batch_key, client_id, provider, payload, members) VALUES (%s, %s, %s, %s, %s)",
            [(b.batch_key, client, b.provider, b.body, b.members) for b, client in batches],
        )


async def load_batches(conn: AsyncConnection, keys: Iterable[str]) -> dict[str, StoredBatch]:
    """The stored batches with these keys."""
    cur = await conn.execute(
        "SELECT batch_key, provider, payload::text, members FROM public.provider_batches"
        " WHERE batch_key = ANY(%s)",
        (list(keys),),
    )
    return {
        row[0]: StoredBatch(row[0], row[1], row[2], list(row[3])) for row in await cur.fetchall()
    }
