"""Retention (GDPR Art. 5(1)(e)): a client's old content cleared, old communications and
leads deleted, in small batches.

Every batch is one statement in its own short transaction, at most ``batch`` rows of
``communications`` or ``leads`` (:data:`~lqs.domain.retention.MAX_BATCH`), picked with
``FOR UPDATE SKIP LOCKED``: a row the dispatcher or a webhook holds is left for the next
run, and nothing waits on the run. What a batch does it does whole; what is left is found
again by the same conditions, so a run killed half-way is simply run again (no progress is
stored: the rows themselves say what is done). After each batch the run idles
:data:`~lqs.domain.retention.IDLE_RATIO` times the batch's duration, so that the pipeline
beside it keeps its pace, and a ``stop`` ends it between batches.

The rules (decided in docs/COMPLIANCE.md):

- ``pending`` communications are never touched, whatever their age: they are still to be
  sent. Once final (sent, delivered, failed, bounced, rejected) their age is still their
  ``created_at``, and the next run takes them.
- content: subject, content and template variables set to NULL (the row, its recipient,
  status, timestamps, ``consent_status`` and ``compliance_notes`` stay); its provider
  events' payloads become ``{}`` and its attempts' ``error_message`` NULL (the error code,
  HTTP status, outcome and times stay); the client's provider batch requests (which hold
  their members' content) older than the cutoff are deleted once no member is queued.
- rows: the communication deleted with its attempts and provider events (its queue row and
  frequency-cap count cascade).
- leads: a lead received before the cutoff is deleted when none of its communications is
  pending or younger than the cutoff (a lead still being written to is kept); the seed's
  ``ON DELETE CASCADE`` takes its communications, consent history and the rest.

Communications are read through the seed's ``idx_communications_client_created
(client_id, created_at DESC)``, leads through ``idx_leads_client_received``; no index is
added.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection, sql
from psycopg.rows import args_row
from pydantic import ValidationError

from lqs.db.pacing import Pacer, stoppable
from lqs.domain.retention import (
    IDLE_RATIO,
    MAX_BATCH,
    Cutoffs,
    RetentionSettings,
    cutoffs,
    leads_per_batch,
)

NEVER = datetime.min.replace(tzinfo=UTC)
"""A lower bound older than any row (a batch's ``created_at >=`` starts there)."""


@dataclass(frozen=True)
class RetentionClient:
    """A client with a ``retention`` setting, as stored (validated by the caller)."""

    id: UUID
    slug: str
    retention: dict[str, Any]


async def clients_with_retention(
    conn: AsyncConnection, slug: str | None = None
) -> list[RetentionClient]:
    """The clients (the one with ``slug``, when given) whose settings hold ``retention``."""
    async with conn.cursor(row_factory=args_row(RetentionClient)) as cur:
        await cur.execute(
            "SELECT id, slug, settings->'retention' FROM public.clients"
            " WHERE jsonb_typeof(settings->'retention') = 'object'"
            "   AND (%(slug)s::text IS NULL OR slug = %(slug)s::text) ORDER BY slug",
            {"slug": slug},
        )
        return await cur.fetchall()


@dataclass
class RetentionCounts:
    """What a run did (or, dry, would do) to one client's rows, per table."""

    content_cleared: int = 0
    """Communications whose subject, content and template variables were cleared."""
    events_stripped: int = 0
    """Provider events whose payload was emptied (with the content)."""
    attempts_stripped: int = 0
    """Delivery attempts whose error text was cleared (with the content)."""
    batches_deleted: int = 0
    """Provider batch requests (their members' content) deleted with the content."""
    communications_deleted: int = 0
    attempts_deleted: int = 0
    events_deleted: int = 0
    leads_deleted: int = 0
    lead_communications_deleted: int = 0
    """Communications deleted with their lead (the seed's cascade)."""
    batches: int = 0

    def as_log(self) -> dict[str, int]:
        """The counts by table and action, for one log line."""
        return {
            "communications_content_cleared": self.content_cleared,
            "provider_events_payload_cleared": self.events_stripped,
            "delivery_attempts_text_cleared": self.attempts_stripped,
            "provider_batches_deleted": self.batches_deleted,
            "communications_deleted": self.communications_deleted
            + self.lead_communications_deleted,
            "delivery_attempts_deleted": self.attempts_deleted,
            "provider_events_deleted": self.events_deleted,
            "leads_deleted": self.leads_deleted,
            "batches": self.batches,
        }


# ---------------------------------------------------------------- the batches

# Each picks at most %(limit)s rows in created_at order from the seed's (client_id,
# created_at DESC) index, SKIP LOCKED so that the run never waits on a sender; `picked`
# is referenced by every part, so PostgreSQL evaluates it once.
_CLEAR_CONTENT = """
WITH picked AS (
    SELECT id, created_at FROM public.communications
    WHERE client_id = %(client)s AND created_at < %(before)s AND created_at >= %(after)s
      AND status <> 'pending'
      AND (subject IS NOT NULL OR content IS NOT NULL OR template_variables IS NOT NULL)
    ORDER BY created_at LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), cleared AS (
    UPDATE public.communications AS c
    SET subject = NULL, content = NULL, template_variables = NULL
    FROM picked WHERE c.id = picked.id
    RETURNING c.id
), events AS (
    UPDATE public.provider_events AS e SET payload = '{}'::jsonb
    FROM picked WHERE e.communication_id = picked.id AND e.payload <> '{}'::jsonb
    RETURNING e.id
), attempts AS (
    UPDATE public.delivery_attempts AS a SET error_message = NULL
    FROM picked WHERE a.communication_id = picked.id AND a.error_message IS NOT NULL
    RETURNING a.id
)
SELECT (SELECT count(*) FROM cleared), (SELECT count(*) FROM events),
       (SELECT count(*) FROM attempts), (SELECT max(created_at) FROM picked)
"""

_DELETE_COMMUNICATIONS = """
WITH picked AS (
    SELECT id FROM public.communications
    WHERE client_id = %(client)s AND created_at < %(before)s AND status <> 'pending'
    ORDER BY created_at LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), attempts AS (
    DELETE FROM public.delivery_attempts AS a USING picked
    WHERE a.communication_id = picked.id RETURNING a.id
), events AS (
    DELETE FROM public.provider_events AS e USING picked
    WHERE e.communication_id = picked.id RETURNING e.id
), gone AS (
    DELETE FROM public.communications AS c USING picked WHERE c.id = picked.id RETURNING c.id
)
SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM attempts),
       (SELECT count(*) FROM events)
"""

# A lead with a pending or recent communication is kept; `after` (the last batch's
# newest lead) keeps a run from reading the kept ones again for every batch.
_LEADS_DUE = sql.SQL("""
    SELECT l.id, l.received_at FROM public.leads AS l
    WHERE l.client_id = %(client)s AND l.received_at < %(before)s
      AND l.received_at >= %(after)s
      AND NOT EXISTS (
          SELECT 1 FROM public.communications AS c
          WHERE c.lead_id = l.id AND (c.created_at >= %(before)s OR c.status = 'pending'))
""")

_DELETE_LEADS = sql.SQL("""
WITH picked AS (
    {due}
    ORDER BY l.received_at LIMIT %(limit)s
    FOR UPDATE OF l SKIP LOCKED
), messages AS (
    SELECT count(*) AS n FROM public.communications AS c JOIN picked ON c.lead_id = picked.id
), gone AS (
    DELETE FROM public.leads AS l USING picked WHERE l.id = picked.id RETURNING l.id
)
SELECT (SELECT count(*) FROM gone), (SELECT n FROM messages),
       (SELECT max(received_at) FROM picked)
""").format(due=_LEADS_DUE)

# A batch request as first sent (Resend's batch endpoint) holds its members' subjects and
# bodies; it is replayed only by a retry, so once none of its members is queued it goes
# with the content.
_DELETE_BATCHES = """
DELETE FROM public.provider_batches WHERE batch_key IN (
    SELECT b.batch_key FROM public.provider_batches AS b
    WHERE b.client_id = %(client)s AND b.created_at < %(before)s
      AND NOT EXISTS (
          SELECT 1 FROM public.delivery_queue AS q WHERE q.communication_id = ANY(b.members))
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED)
RETURNING 1
"""

_COUNT_CONTENT = """
SELECT count(*) FROM public.communications
WHERE client_id = %(client)s AND created_at < %(before)s AND created_at >= %(after)s
  AND status <> 'pending'
  AND (subject IS NOT NULL OR content IS NOT NULL OR template_variables IS NOT NULL)
"""
_COUNT_COMMUNICATIONS = """
SELECT count(*) FROM public.communications
WHERE client_id = %(client)s AND created_at < %(before)s AND status <> 'pending'
"""
_COUNT_LEADS = sql.SQL("SELECT count(*) FROM ({due}) AS due").format(due=_LEADS_DUE)


async def _one_row(
    conn: AsyncConnection, query: str | sql.Composed, params: dict[str, Any]
) -> tuple[Any, ...]:
    async with conn.transaction():
        cur = await conn.execute(query.encode() if isinstance(query, str) else query, params)
        row = await cur.fetchone()
    assert row is not None
    return tuple(row)


async def apply_retention(
    conn: AsyncConnection,
    client_id: UUID,
    due: Cutoffs,
    *,
    batch: int = MAX_BATCH,
    dry_run: bool = False,
    idle_ratio: float = IDLE_RATIO,
    after_batch: Callable[[], None] = lambda: None,
    stop: asyncio.Event | None = None,
) -> RetentionCounts:
    """Apply one client's retention rules: leads first (their cascade shrinks the rest),
    then communications' rows, then their content; each batch its own transaction on
    ``conn`` (``after_batch`` is called after each), followed by a wait of ``idle_ratio``
    times its duration; once ``stop`` is set, the run ends after its current batch (the
    counts say what was done). ``dry_run``: count what is due (each rule alone, as if the
    others had not run) and change nothing.

    Raises:
        ValueError: ``batch`` is not 1 to :data:`MAX_BATCH`.
    """
    if not 1 <= batch <= MAX_BATCH:
        raise ValueError(f"batch must be 1 to {MAX_BATCH}")
    counts = RetentionCounts()
    pacer = Pacer(idle_ratio, after_batch, stop)
    base = {"client": client_id, "limit": batch}
    # Rows older than the rows' cutoff are deleted (or about to be): no content to clear.
    content_after = due.rows_before or NEVER
    if dry_run:
        if due.leads_before is not None:
            params = {**base, "before": due.leads_before, "after": NEVER}
            (counts.leads_deleted,) = await _one_row(conn, _COUNT_LEADS, params)
        if due.rows_before is not None:
            params = {**base, "before": due.rows_before}
            (counts.communications_deleted,) = await _one_row(conn, _COUNT_COMMUNICATIONS, params)
        if due.content_before is not None:
            params = {**base, "before": due.content_before, "after": content_after}
            (counts.content_cleared,) = await _one_row(conn, _COUNT_CONTENT, params)
        return counts

    with stoppable():
        await _apply_rules(conn, due, base, content_after, counts, pacer, batch)
    return counts


async def _apply_rules(
    conn: AsyncConnection,
    due: Cutoffs,
    base: dict[str, Any],
    content_after: datetime,
    counts: RetentionCounts,
    pacer: Pacer,
    batch: int,
) -> None:
    """The rules in order, each in batches until one comes back short (see above)."""
    if due.leads_before is not None:
        after = NEVER
        # A lead's messages go with it (the seed's cascade): the first batch takes a tenth
        # of the leads, the next ones as many as keep leads and messages near ``batch``.
        limit = max(1, batch // 10)
        while True:
            params = {**base, "limit": limit, "before": due.leads_before, "after": after}
            leads, messages, newest = await _one_row(conn, _DELETE_LEADS, params)
            counts.leads_deleted += leads
            counts.lead_communications_deleted += messages
            counts.batches += 1
            await pacer.batch_done()
            if leads < limit or newest is None:
                break
            after = newest
            limit = leads_per_batch(batch, leads, messages)
    if due.rows_before is not None:
        while True:
            params = {**base, "before": due.rows_before}
            gone, attempts, events = await _one_row(conn, _DELETE_COMMUNICATIONS, params)
            counts.communications_deleted += gone
            counts.attempts_deleted += attempts
            counts.events_deleted += events
            counts.batches += 1
            await pacer.batch_done()
            if gone < batch:
                break
    if due.content_before is not None:
        after = content_after
        while True:
            params = {**base, "before": due.content_before, "after": after}
            cleared, events, attempts, newest = await _one_row(conn, _CLEAR_CONTENT, params)
            counts.content_cleared += cleared
            counts.events_stripped += events
            counts.attempts_stripped += attempts
            counts.batches += 1
            await pacer.batch_done()
            if cleared < batch or newest is None:
                break
            after = newest
        while True:
            params = {**base, "before": due.content_before}
            async with conn.transaction():
                cur = await conn.execute(_DELETE_BATCHES.encode(), params)
                deleted = cur.rowcount
            counts.batches_deleted += deleted
            counts.batches += 1
            await pacer.batch_done()
            if deleted < batch:
                break


@dataclass(frozen=True)
class ClientRetention:
    """One client's part of a run: its counts, or why its setting could not be used."""

    slug: str
    counts: RetentionCounts | None
    problem: str | None = None


async def run_retention(
    conn: AsyncConnection,
    now: datetime,
    *,
    slug: str | None = None,
    batch: int = MAX_BATCH,
    dry_run: bool = False,
    idle_ratio: float = IDLE_RATIO,
    after_batch: Callable[[], None] = lambda: None,
    stop: asyncio.Event | None = None,
) -> list[ClientRetention]:
    """Apply every client's retention setting (only ``slug``'s, when given) as of ``now``,
    client after client (see :func:`apply_retention`). A client whose stored setting is
    not valid is reported with its problem and skipped, not applied in part."""
    done = []
    async with conn.transaction():
        found = await clients_with_retention(conn, slug)
    for client in found:
        if stop is not None and stop.is_set():
            break
        try:
            settings = RetentionSettings.model_validate(client.retention)
        except ValidationError as exc:
            problem = "; ".join(
                f"retention.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}".replace(
                    "retention.: ", "retention: "
                )
                for e in exc.errors()
            )
            done.append(ClientRetention(client.slug, None, problem))
            continue
        if settings.is_empty:
            continue
        counts = await apply_retention(
            conn,
            client.id,
            cutoffs(settings, now),
            batch=batch,
            dry_run=dry_run,
            idle_ratio=idle_ratio,
            after_batch=after_batch,
            stop=stop,
        )
        done.append(ClientRetention(client.slug, counts))
    return done
