"""SQL for erasure (GDPR Art. 17): anonymise a person's records everywhere LQS keeps them.

An erasure is recorded in ``erasures`` (who, when, which client, why, rows per table; no
personal data) and done in batches of leads, one short transaction per batch, so no lock
on ``communications`` is held for long. In each batch: the leads are locked; a lead with
a message a dispatcher holds the live lease of (claimed, its request perhaps on its way
to the provider) is left for a later pass, so a provider never receives a message whose
row was erased first; for the others, the addresses are suppressed by their keyed hash,
pending messages are rejected and leave the queue, and every record naming the person
is anonymised (see :mod:`lqs.domain.erasure` for what remains).

The consent history and the audit log are append-only for the service role: their
personal columns are cleared by ``public.lqs_erase_history``, the one function allowed to.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from lqs.db.pacing import Pacer
from lqs.domain.erasure import ERASED_RECIPIENT, IDLE_RATIO, Subject, compliance_note
from lqs.domain.vocabulary import Channel

BATCH_LEADS = 200
"""Leads erased per transaction: a few thousand rows changed at most, in well under a
second on a loaded database."""

# Keys of a provider's answer (communications.external_reference) that identify the
# message, not the person; everything else (a Twilio "to", "body") is dropped.
_REFERENCE_KEYS = ["id", "sid", "message_id", "messageId", "http_status", "status", "batch_key"]


@dataclass
class ErasureTally:
    """What an erasure changed so far: rows per table, and the leads still held by a send."""

    counts: Counter[str] = field(default_factory=Counter)
    in_flight: list[UUID] = field(default_factory=list)
    """Leads left un-erased because a message of theirs was still being sent."""
    longest_batch: float = 0.0
    """Seconds of the longest batch transaction (its locks are held that long at most)."""


async def start_erasure(
    conn: AsyncConnection, client_id: UUID, requested_by: str, reason: str
) -> UUID:
    """Record a new erasure request; its id."""
    cur = await conn.execute(
        "INSERT INTO public.erasures (client_id, requested_by, reason) VALUES (%s, %s, %s)"
        " RETURNING id",
        (client_id, requested_by[:200], reason),
    )
    row = await cur.fetchone()
    assert row is not None
    return UUID(str(row[0]))


async def finish_erasure(conn: AsyncConnection, erasure_id: UUID, tally: ErasureTally) -> None:
    """Store the final counts; mark it finished unless leads were left in flight."""
    await conn.execute(
        "UPDATE public.erasures SET counts = %s,"
        " finished_at = CASE WHEN %s THEN now() ELSE NULL END WHERE id = %s",
        (Jsonb(_counts_json(tally)), not tally.in_flight, erasure_id),
    )


def _counts_json(tally: ErasureTally) -> dict[str, int]:
    return {table: tally.counts[table] for table in sorted(tally.counts)}


# One indexed lookup per kind of name (a single OR of the three was planned as a scan
# of the client's leads).
_LOCK_LEADS = """
SELECT l.id, lower(l.email), l.phone
FROM public.leads AS l
WHERE l.id IN (
        SELECT i.id FROM public.leads AS i
        WHERE i.id = ANY(%(ids)s::uuid[]) AND i.client_id = %(client)s
        UNION ALL
        SELECT e.id FROM public.leads AS e
        WHERE e.client_id = %(client)s AND lower(e.email) = ANY(%(emails)s::text[])
          AND e.email IS NOT NULL
        UNION ALL
        SELECT p.id FROM public.leads AS p
        WHERE p.client_id = %(client)s AND p.phone = ANY(%(phones)s::text[])
          AND p.phone IS NOT NULL)
  AND (l.email IS NULL OR l.email NOT LIKE 'erased-%%@erased.invalid')
ORDER BY l.id
FOR UPDATE
"""

# The queue rows of the leads' messages, locked: a dispatcher's claim (FOR UPDATE SKIP
# LOCKED) then skips them until this transaction ends, and one that claimed first holds a
# live lease here, so its lead waits for a later pass.
_IN_FLIGHT = """
SELECT DISTINCT c.lead_id
FROM public.communications AS c
JOIN public.delivery_queue AS q ON q.communication_id = c.id
WHERE c.lead_id = ANY(%s::uuid[])
  AND q.lease_owner IS NOT NULL AND q.lease_expires_at > now()
"""
_LOCK_QUEUE = """
SELECT q.communication_id
FROM public.communications AS c
JOIN public.delivery_queue AS q ON q.communication_id = c.id
WHERE c.lead_id = ANY(%s::uuid[])
ORDER BY q.communication_id
FOR UPDATE OF q
"""

_HIDE_SUPPRESSED = """
UPDATE public.suppressions AS t SET recipient = NULL
FROM unnest(%(channels)s::text[], %(addresses)s::text[]) AS s(channel, address)
WHERE t.client_id = %(client)s AND t.channel = s.channel AND t.recipient IS NOT NULL
  AND t.recipient_hash = public.lqs_recipient_hash(s.channel, s.address)
"""
_SUPPRESS = """
INSERT INTO public.suppressions (client_id, channel, recipient, recipient_hash, reason, source)
SELECT %(client)s, s.channel, NULL, public.lqs_recipient_hash(s.channel, s.address),
       'erasure', %(source)s
FROM unnest(%(channels)s::text[], %(addresses)s::text[]) AS s(channel, address)
ON CONFLICT (client_id, channel, recipient_hash) DO NOTHING
"""

_CANCEL_PENDING = """
UPDATE public.communications AS c
SET status = 'rejected', error_message = %(why)s
WHERE c.lead_id = ANY(%(leads)s::uuid[]) AND c.status = 'pending'
"""
_UNQUEUE = """
DELETE FROM public.delivery_queue AS q
WHERE q.communication_id = ANY(%s::uuid[])
"""

_ERASE_COMMUNICATIONS = """
UPDATE public.communications AS c
SET recipient = %(erased)s, subject = NULL, content = NULL, template_variables = NULL,
    external_reference = CASE
        WHEN jsonb_typeof(c.external_reference) = 'object' THEN (
            SELECT coalesce(jsonb_object_agg(e.key, e.value), '{}'::jsonb)
            FROM jsonb_each(c.external_reference) AS e
            WHERE e.key = ANY(%(keys)s::text[]) AND jsonb_typeof(e.value) <> 'object'
              AND jsonb_typeof(e.value) <> 'array')
        ELSE NULL END,
    error_message = CASE
        WHEN c.error_message IS NOT NULL AND EXISTS (
            SELECT 1 FROM unnest(%(addresses)s::text[]) AS a
            WHERE strpos(lower(c.error_message), lower(a)) > 0) THEN 'erased'
        ELSE c.error_message END,
    compliance_notes = %(note)s
WHERE c.lead_id = ANY(%(leads)s::uuid[])
RETURNING c.id
"""

_ERASE_EVENTS = """
UPDATE public.provider_events AS e
SET payload = jsonb_build_object('erased', true, 'event_type', e.event_type),
    recipient = NULL,
    reason = CASE
        WHEN e.reason IS NOT NULL AND EXISTS (
            SELECT 1 FROM unnest(%(addresses)s::text[]) AS a
            WHERE strpos(lower(e.reason), lower(a)) > 0) THEN 'erased'
        ELSE e.reason END
WHERE (e.communication_id = ANY(%(comms)s::uuid[])
       OR (e.client_id = %(client)s AND e.communication_id IS NULL
           AND (lower(e.recipient) = ANY(%(addresses)s::text[])
                -- Not applied yet (pending, or waiting for the send's record): naming
                -- one of the messages by our id or by the provider's.
                OR e.named_communication_id = ANY(%(comms)s::uuid[])
                OR (e.provider, e.external_id) IN (
                    SELECT c.provider, c.external_id FROM public.communications AS c
                    WHERE c.id = ANY(%(comms)s::uuid[]) AND c.external_id IS NOT NULL))))
  AND NOT (e.payload ? 'erased')
"""

_ERASE_ATTEMPTS = """
UPDATE public.delivery_attempts SET error_message = NULL
WHERE communication_id = ANY(%s::uuid[]) AND error_message IS NOT NULL
"""

# A stored batch request holds every member's address and text. It is dropped once no
# member can be replayed any more (none is queued); until then it stays (documented).
_DROP_BATCHES = """
DELETE FROM public.provider_batches AS b
WHERE b.client_id = %(client)s AND b.members && %(comms)s::uuid[]
  AND NOT EXISTS (SELECT 1 FROM public.delivery_queue AS q
                  WHERE q.communication_id = ANY(b.members))
"""

_DROP_SENDS = "DELETE FROM public.recipient_sends WHERE communication_id = ANY(%s::uuid[])"

_DROP_IMPORT_ROWS = "DELETE FROM public.lead_import_rows WHERE lead_id = ANY(%s::uuid[])"

# Stored intake answers naming one of the leads (``{"id": ...}``, or a batch's
# ``{"leads": [{"id": ...}, ...]}``): a replay would answer them again. The table holds a
# day of keys (IDEMPOTENCY_WINDOW); a replay after this is a new request.
_DROP_IDEMPOTENCY = """
DELETE FROM public.idempotency_keys AS k
WHERE k.client_id = %(client)s
  AND (k.response->>'id' = ANY(%(leads)s::text[])
       OR (jsonb_typeof(k.response->'leads') = 'array' AND EXISTS (
           SELECT 1 FROM jsonb_array_elements(k.response->'leads') AS e
           WHERE e->>'id' = ANY(%(leads)s::text[]))))
"""

# Rejected webhook bodies quoting one of the addresses, as sent (bytes).
_DROP_WEBHOOK_REJECTS = """
DELETE FROM public.webhook_rejects AS w
WHERE (w.client_id = %(client)s OR w.client_id IS NULL)
  AND EXISTS (SELECT 1 FROM unnest(%(addresses)s::text[]) AS a
              WHERE position(convert_to(a, 'UTF8') IN w.body) > 0)
"""

_ERASE_HISTORY = "SELECT public.lqs_erase_history(%s, %s::uuid[], %s::text[])"

_ERASE_LEADS = """
UPDATE public.leads AS l
SET email = 'erased-' || l.id || '@erased.invalid', phone = NULL,
    first_name = NULL, last_name = NULL, job_title = NULL,
    company_name = NULL, company_domain = NULL, company_size = NULL, industry = NULL,
    utm_source = NULL, utm_medium = NULL, utm_campaign = NULL, utm_term = NULL,
    utm_content = NULL, custom = '{}'::jsonb, history = '[]'::jsonb, dedupe_key = NULL,
    score_breakdown = CASE
        WHEN jsonb_typeof(l.score_breakdown) = 'array' THEN (
            SELECT coalesce(jsonb_agg(CASE WHEN jsonb_typeof(b.entry) = 'object'
                                           THEN b.entry || '{"value": null, "reason": "erased"}'
                                           ELSE 'null'::jsonb END ORDER BY b.n), '[]'::jsonb)
            FROM jsonb_array_elements(l.score_breakdown) WITH ORDINALITY AS b(entry, n))
        ELSE NULL END,
    -- A lead erased before it was processed never will be: nothing is left to score.
    status = CASE WHEN l.status = 'queued' THEN 'error' ELSE l.status END,
    error_message = CASE WHEN l.status = 'queued' THEN 'erased before processing' END
WHERE l.id = ANY(%s::uuid[])
"""


async def erase_batch(
    conn: AsyncConnection,
    client_id: UUID,
    reason: str,
    *,
    lead_ids: Sequence[UUID] = (),
    subjects: Sequence[Subject] = (),
    source: str,
) -> tuple[Counter[str], list[UUID], list[UUID]]:
    """Erase, in the caller's transaction, the client's leads named by id or holding one
    of the addresses, and suppress the addresses (and the leads' own) by their hash.

    Returns the rows changed per table, the leads erased, and the leads left in flight
    (a message of theirs held by a live dispatch lease: call again later). The addresses
    are suppressed even when no lead holds them any more (a rerun is harmless).
    """
    counts: Counter[str] = Counter()
    emails = [s.address for s in subjects if s.channel == Channel.EMAIL]
    phones = [s.address for s in subjects if s.channel == Channel.SMS]
    cur = await conn.execute(
        _LOCK_LEADS,
        {"client": client_id, "ids": list(lead_ids), "emails": emails, "phones": phones},
    )
    found = await cur.fetchall()
    await conn.execute(_LOCK_QUEUE, ([row[0] for row in found],))
    cur = await conn.execute(_IN_FLIGHT, ([row[0] for row in found],))
    in_flight = {row[0] for row in await cur.fetchall()}
    ready = [row for row in found if row[0] not in in_flight]
    leads = [row[0] for row in ready]
    addressed: dict[tuple[str, str], None] = {(s.channel.value, s.address): None for s in subjects}
    for _, email, phone in ready:
        if email:
            addressed[(Channel.EMAIL.value, email)] = None
        if phone:
            addressed[(Channel.SMS.value, phone)] = None
    # Addresses of leads still in flight are suppressed on their pass, with their leads.
    held = {a for row in found if row[0] in in_flight for a in row[1:] if a}
    pairs = [p for p in addressed if p[1] not in held]
    suppress = {
        "client": client_id,
        "channels": [p[0] for p in pairs],
        "addresses": [p[1] for p in pairs],
        "source": source,
    }
    counts["suppressions_hidden"] += (await conn.execute(_HIDE_SUPPRESSED, suppress)).rowcount
    counts["suppressions_added"] += (await conn.execute(_SUPPRESS, suppress)).rowcount
    if not leads:
        return counts, [], sorted(in_flight)
    addresses = sorted({p[1] for p in pairs})
    today = datetime.now(UTC).date()
    cur = await conn.execute(
        _CANCEL_PENDING, {"leads": leads, "why": f"cancelled by an erasure: {reason}"}
    )
    counts["communications_cancelled"] += cur.rowcount
    cur = await conn.execute(
        _ERASE_COMMUNICATIONS,
        {
            "erased": ERASED_RECIPIENT,
            "keys": _REFERENCE_KEYS,
            "addresses": addresses,
            "note": compliance_note(today, reason),
            "leads": leads,
        },
    )
    comms = [row[0] for row in await cur.fetchall()]
    counts["communications"] += len(comms)
    counts["delivery_queue"] += (await conn.execute(_UNQUEUE, (comms,))).rowcount
    cur = await conn.execute(
        _ERASE_EVENTS, {"comms": comms, "client": client_id, "addresses": addresses}
    )
    counts["provider_events"] += cur.rowcount
    counts["delivery_attempts"] += (await conn.execute(_ERASE_ATTEMPTS, (comms,))).rowcount
    cur = await conn.execute(_DROP_BATCHES, {"client": client_id, "comms": comms})
    counts["provider_batches"] += cur.rowcount
    counts["recipient_sends"] += (await conn.execute(_DROP_SENDS, (comms,))).rowcount
    counts["lead_import_rows"] += (await conn.execute(_DROP_IMPORT_ROWS, (leads,))).rowcount
    cur = await conn.execute(
        _DROP_IDEMPOTENCY, {"client": client_id, "leads": [str(i) for i in leads]}
    )
    counts["idempotency_keys"] += cur.rowcount
    cur = await conn.execute(_DROP_WEBHOOK_REJECTS, {"client": client_id, "addresses": addresses})
    counts["webhook_rejects"] += cur.rowcount
    cur = await conn.execute(_ERASE_HISTORY, (client_id, leads, addresses))
    row = await cur.fetchone()
    assert row is not None
    counts["consent_history"] += row[0][0]
    counts["audit_log"] += row[0][1]
    counts["leads"] += (await conn.execute(_ERASE_LEADS, (leads,))).rowcount
    return counts, leads, sorted(in_flight)


Progress = Callable[[int, int], None]
"""Called after each batch with (subjects or leads done, total)."""


async def erase(
    pool: AsyncConnectionPool,
    client_id: UUID,
    requested_by: str,
    reason: str,
    *,
    lead_ids: Sequence[UUID] = (),
    subjects: Sequence[Subject] = (),
    batch_size: int = BATCH_LEADS,
    wait_seconds: float = 120.0,
    idle_ratio: float = IDLE_RATIO,
    on_progress: Progress | None = None,
) -> tuple[UUID, ErasureTally]:
    """Erase the people named (lead ids, addresses) for the client, in batches of
    ``batch_size`` names, each batch its own transaction followed by a wait of
    ``idle_ratio`` times its duration before the next, and record it in ``erasures``.

    Leads with a message in flight are retried until ``wait_seconds`` pass (a lease lasts
    a minute by default); any still in flight then are listed in the tally's
    ``in_flight`` and the erasure is left unfinished (rerunning it finishes them).
    Rerunning a finished erasure changes nothing but records a request.
    """
    async with pool.connection() as conn:
        erasure_id = await start_erasure(conn, client_id, requested_by, reason)
    source = f"erasure {erasure_id}"
    tally = ErasureTally()
    names: list[UUID | Subject] = [*lead_ids, *subjects]
    total = len(names)
    pacer = Pacer(idle_ratio)
    for start in range(0, total, batch_size):
        if start:
            await pacer.batch_done()
        chunk = names[start : start + batch_size]
        await _erase_chunk(pool, erasure_id, client_id, reason, chunk, source, tally)
        if on_progress is not None:
            on_progress(min(start + batch_size, total), total)
    deadline = time.monotonic() + wait_seconds
    while tally.in_flight and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        waiting, tally.in_flight = tally.in_flight, []
        for start in range(0, len(waiting), batch_size):
            chunk = list(waiting[start : start + batch_size])
            await _erase_chunk(pool, erasure_id, client_id, reason, chunk, source, tally)
    async with pool.connection() as conn:
        await finish_erasure(conn, erasure_id, tally)
    return erasure_id, tally


async def _erase_chunk(
    pool: AsyncConnectionPool,
    erasure_id: UUID,
    client_id: UUID,
    reason: str,
    chunk: Sequence[UUID | Subject],
    source: str,
    tally: ErasureTally,
) -> None:
    async with pool.connection() as conn:
        began = time.perf_counter()
        async with conn.transaction():
            counts, in_flight = await _erase_in(
                conn, erasure_id, client_id, reason, chunk, source, tally
            )
        tally.longest_batch = max(tally.longest_batch, time.perf_counter() - began)
    tally.counts.update(counts)
    tally.in_flight.extend(in_flight)


async def _erase_in(
    conn: AsyncConnection,
    erasure_id: UUID,
    client_id: UUID,
    reason: str,
    chunk: Sequence[UUID | Subject],
    source: str,
    tally: ErasureTally,
) -> tuple[Counter[str], list[UUID]]:
    """One batch and the erasure's running counts, in the caller's transaction."""
    counts, _, in_flight = await erase_batch(
        conn,
        client_id,
        reason,
        lead_ids=[n for n in chunk if isinstance(n, UUID)],
        subjects=[n for n in chunk if isinstance(n, Subject)],
        source=source,
    )
    running = ErasureTally(tally.counts + counts)
    await conn.execute(
        "UPDATE public.erasures SET counts = %s WHERE id = %s",
        (Jsonb(_counts_json(running)), erasure_id),
    )
    return counts, in_flight


async def lead_exists(conn: AsyncConnection, lead_id: UUID) -> bool:
    """Whether the lead exists and the session may see it (row-level security)."""
    cur = await conn.execute("SELECT 1 FROM public.leads WHERE id = %s", (lead_id,))
    return await cur.fetchone() is not None
