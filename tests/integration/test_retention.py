"""Retention (issue 16): a client's old content cleared, old communications and leads
deleted, in batches, on a real database; the CLI and the worker's daily turn."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.types.json import Jsonb

from lqs.db.retention import apply_retention, run_retention
from lqs.domain.retention import RetentionSettings, cutoffs
from lqs.worker.run import run_worker
from tests.configs import worker_config
from tests.integration.test_cli import assert_one_line_error, run_lqs

pytestmark = pytest.mark.asyncio(loop_scope="module")

NOW = datetime.now(UTC)


async def _connect(url: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(url, autocommit=True, prepare_threshold=None)


async def _one(conn: psycopg.AsyncConnection[Any], query: str, *params: Any) -> Any:
    cur = await conn.execute(query.encode(), params)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


@dataclass(frozen=True)
class Message:
    lead: UUID
    communication: UUID


async def _client(url: str, retention: dict[str, Any] | None = None) -> tuple[UUID, str]:
    slug = f"ret-{uuid.uuid4().hex[:10]}"
    settings = {} if retention is None else {"retention": retention}
    async with await _connect(url) as conn:
        client = await _one(
            conn,
            "INSERT INTO public.clients (name, slug, settings) VALUES (%s, %s, %s) RETURNING id",
            slug, slug, Jsonb(settings),
        )  # fmt: skip
    return client, slug


async def _lead(url: str, client: UUID, received_days: float) -> UUID:
    email = f"{uuid.uuid4().hex[:10]}@lead.example"
    async with await _connect(url) as conn:
        lead: UUID = await _one(
            conn,
            "INSERT INTO public.leads (client_id, email, dedupe_key, status, received_at)"
            " VALUES (%s, %s, %s, 'qualified', now() - make_interval(secs => %s))"
            " RETURNING id",
            client, email, f"email:{email}", received_days * 86_400,
        )  # fmt: skip
    return lead


async def _message(
    url: str, client: UUID, age_days: float, *, status: str = "sent", lead: UUID | None = None
) -> Message:
    lead = lead or await _lead(url, client, age_days)
    async with await _connect(url) as conn:
        comm: UUID = await _one(
            conn,
            "INSERT INTO public.communications (lead_id, client_id, type, recipient, subject,"
            " content, status, template_variables, created_at, compliance_notes)"
            " VALUES (%s, %s, 'email', 'someone@lead.example', 'Hello', 'Dear someone', %s,"
            " %s, now() - make_interval(secs => %s), 'consent: entry 1') RETURNING id",
            lead, client, status, Jsonb({"first_name": "Someone"}), age_days * 86_400,
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO public.delivery_attempts (communication_id, client_id, attempt,"
            " provider, started_at, finished_at, error_code, error_message, latency_ms,"
            " outcome, recorded) VALUES (%s, %s, 1, 'resend', now(), now(), 'x',"
            " 'mailbox someone@lead.example full', 1, 'transient', true)",
            (comm, client),
        )
        await conn.execute(
            "INSERT INTO public.provider_events (client_id, provider, event_id,"
            " communication_id, event_type, kind, recipient, payload)"
            " VALUES (%s, 'resend', %s, %s, 'email.delivered', 'delivered',"
            " 'someone@lead.example', %s)",
            (client, uuid.uuid4().hex, comm, Jsonb({"to": "someone@lead.example"})),
        )
    return Message(lead, comm)


async def _state(url: str, comm: UUID) -> tuple[Any, ...] | None:
    """(subject, content, template_variables, compliance_notes, payloads, error texts)."""
    async with await _connect(url) as conn:
        cur = await conn.execute(
            "SELECT c.subject, c.content, c.template_variables, c.compliance_notes,"
            " (SELECT array_agg(e.payload::text) FROM public.provider_events e"
            "   WHERE e.communication_id = c.id),"
            " (SELECT array_agg(a.error_message) FROM public.delivery_attempts a"
            "   WHERE a.communication_id = c.id)"
            " FROM public.communications c WHERE c.id = %s",
            (comm,),
        )
        row = await cur.fetchone()
    return None if row is None else tuple(row)


async def _exists(url: str, table: str, row_id: UUID) -> bool:
    async with await _connect(url) as conn:
        return bool(await _one(conn, f"SELECT count(*) FROM public.{table} WHERE id = %s", row_id))


async def _apply(url: str, client: UUID, batch: int = 10_000, **days: int) -> Any:
    async with await _connect(url) as conn:
        return await apply_retention(
            conn, client, cutoffs(RetentionSettings(**days), datetime.now(UTC)), batch=batch
        )


KEPT = ("Hello", "Dear someone", {"first_name": "Someone"}, "consent: entry 1")


# ---------------------------------------------------------------- the rules


async def test_content_days_clears_old_content_and_keeps_the_row(migrated_db: str) -> None:
    client, _ = await _client(migrated_db)
    old = await _message(migrated_db, client, 40)
    young = await _message(migrated_db, client, 10)
    pending = await _message(migrated_db, client, 40, status="pending")

    counts = await _apply(migrated_db, client, content_days=30)

    assert await _state(migrated_db, old.communication) == (
        None, None, None, "consent: entry 1", ["{}"], [None]
    )  # fmt: skip
    young_state = await _state(migrated_db, young.communication)
    pending_state = await _state(migrated_db, pending.communication)
    assert young_state is not None
    assert young_state[:4] == KEPT
    assert pending_state is not None
    assert pending_state[:4] == KEPT
    assert (counts.content_cleared, counts.events_stripped, counts.attempts_stripped) == (1, 1, 1)


async def test_content_days_deletes_old_batch_requests_once_no_member_is_queued(
    migrated_db: str,
) -> None:
    client, _ = await _client(migrated_db)
    sent = await _message(migrated_db, client, 40)
    queued = await _message(migrated_db, client, 40, status="pending")
    async with await _connect(migrated_db) as conn:
        await conn.execute(
            "INSERT INTO public.delivery_queue (communication_id, client_id) VALUES (%s, %s)",
            (queued.communication, client),
        )
        for key, members, age in (
            ("old-sent", [sent.communication], 40),
            ("old-queued", [queued.communication], 40),
            ("young", [sent.communication], 1),
        ):
            await conn.execute(
                "INSERT INTO public.provider_batches (batch_key, client_id, provider, payload,"
                " members, created_at) VALUES (%s, %s, 'resend', '[{\"html\": \"Dear\"}]',"
                " %s, now() - make_interval(days => %s))",
                (f"{key}-{client}", client, members, age),
            )

    counts = await _apply(migrated_db, client, content_days=30)

    async with await _connect(migrated_db) as conn:
        cur = await conn.execute(
            "SELECT batch_key FROM public.provider_batches WHERE client_id = %s ORDER BY 1",
            (client,),
        )
        left = [row[0] for row in await cur.fetchall()]
    assert left == [f"old-queued-{client}", f"young-{client}"]
    assert counts.batches_deleted == 1


async def test_rows_days_deletes_old_communications_with_attempts_and_events(
    migrated_db: str,
) -> None:
    client, _ = await _client(migrated_db)
    old = await _message(migrated_db, client, 100)
    young = await _message(migrated_db, client, 10)
    pending = await _message(migrated_db, client, 100, status="pending")

    counts = await _apply(migrated_db, client, rows_days=90)

    assert await _state(migrated_db, old.communication) is None
    assert await _exists(migrated_db, "leads", old.lead)  # the lead is leads_days' business
    async with await _connect(migrated_db) as conn:
        left = await _one(
            conn,
            "SELECT count(*) FROM public.delivery_attempts WHERE communication_id = %s",
            old.communication,
        )
    assert left == 0
    assert await _exists(migrated_db, "communications", young.communication)
    assert await _exists(migrated_db, "communications", pending.communication)
    assert (counts.communications_deleted, counts.attempts_deleted, counts.events_deleted) == (
        1, 1, 1
    )  # fmt: skip


async def test_leads_days_deletes_old_leads_but_not_those_still_written_to(
    migrated_db: str,
) -> None:
    client, _ = await _client(migrated_db)
    old = await _message(migrated_db, client, 400)
    still_written = await _lead(migrated_db, client, 400)
    await _message(migrated_db, client, 5, lead=still_written)
    still_pending = await _lead(migrated_db, client, 400)
    await _message(migrated_db, client, 400, lead=still_pending, status="pending")
    young = await _lead(migrated_db, client, 10)
    async with await _connect(migrated_db) as conn:
        await conn.execute(  # append-only, but a deleted lead's history goes with it
            "INSERT INTO public.consent_history (client_id, lead_id, channel, recipient,"
            " consent_status, source) VALUES (%s, %s, 'email', 'x@lead.example', 'granted',"
            " 'api')",
            (client, old.lead),
        )

    counts = await _apply(migrated_db, client, leads_days=365)

    assert not await _exists(migrated_db, "leads", old.lead)
    assert not await _exists(migrated_db, "communications", old.communication)
    for kept in (still_written, still_pending, young):
        assert await _exists(migrated_db, "leads", kept)
    assert (counts.leads_deleted, counts.lead_communications_deleted) == (1, 1)


async def test_a_dry_run_counts_and_changes_nothing(migrated_db: str) -> None:
    client, _ = await _client(migrated_db)
    old = await _message(migrated_db, client, 400)
    await _message(migrated_db, client, 40)
    settings = RetentionSettings(content_days=30, rows_days=90, leads_days=365)

    async with await _connect(migrated_db) as conn:
        counts = await apply_retention(
            conn, client, cutoffs(settings, datetime.now(UTC)), dry_run=True
        )

    assert (counts.leads_deleted, counts.communications_deleted, counts.content_cleared) == (
        1, 1, 1
    )  # fmt: skip
    assert await _state(migrated_db, old.communication) is not None
    state = await _state(migrated_db, old.communication)
    assert state is not None
    assert state[:4] == KEPT


async def test_batches_stop_at_their_size_and_finish_the_work(migrated_db: str) -> None:
    client, _ = await _client(migrated_db)
    five = [await _message(migrated_db, client, 40 + i) for i in range(5)]

    counts = await _apply(migrated_db, client, batch=2, content_days=30)

    assert (counts.content_cleared, counts.batches) == (5, 3 + 1)  # + the provider batches
    for message in five:
        state = await _state(migrated_db, message.communication)
        assert state is not None
        assert state[:3] == (None, None, None)


async def test_lead_batches_count_the_messages_deleted_with_them(migrated_db: str) -> None:
    """Six old leads of four messages each, batches of 10 rows: one lead first (a tenth),
    then two leads (with their eight messages) per batch, until a short batch."""
    client, _ = await _client(migrated_db)
    for i in range(6):
        lead = await _lead(migrated_db, client, 400 + i)
        for _ in range(4):
            await _message(migrated_db, client, 400 + i, lead=lead)

    counts = await _apply(migrated_db, client, batch=10, leads_days=365)

    assert (counts.leads_deleted, counts.lead_communications_deleted) == (6, 24)
    assert counts.batches == 1 + 2 + 1  # 1 lead, 2, 2, then the last one (short)


async def test_an_exact_multiple_of_the_batch_ends_with_an_empty_batch(migrated_db: str) -> None:
    client, _ = await _client(migrated_db)
    for i in range(4):
        await _message(migrated_db, client, 100 + i)

    counts = await _apply(migrated_db, client, batch=2, rows_days=90)

    assert (counts.communications_deleted, counts.batches) == (4, 3)


async def test_a_killed_run_keeps_its_finished_batches_and_a_rerun_continues(
    migrated_db: str,
) -> None:
    client, _ = await _client(migrated_db)
    messages = [await _message(migrated_db, client, 40 + i) for i in range(5)]
    due = cutoffs(RetentionSettings(content_days=30), datetime.now(UTC))

    def killed() -> None:
        raise KeyboardInterrupt

    async with await _connect(migrated_db) as conn:
        with pytest.raises(KeyboardInterrupt):
            await apply_retention(conn, client, due, batch=2, after_batch=killed)
    states = [await _state(migrated_db, m.communication) for m in messages]
    cleared = [s for s in states if s is not None and s[:3] == (None, None, None)]
    whole = [s for s in states if s is not None and s[:4] == KEPT]
    assert (len(cleared), len(whole)) == (2, 3)  # one whole batch, nothing half-done

    async with await _connect(migrated_db) as conn:
        counts = await apply_retention(conn, client, due, batch=2)

    assert counts.content_cleared == 3
    for m in messages:
        state = await _state(migrated_db, m.communication)
        assert state is not None
        assert state[:3] == (None, None, None)


async def test_a_stop_ends_the_run_after_its_current_batch(migrated_db: str) -> None:
    client, _ = await _client(migrated_db)
    for i in range(5):
        await _message(migrated_db, client, 40 + i)
    stop = asyncio.Event()
    due = cutoffs(RetentionSettings(content_days=30), datetime.now(UTC))

    async with await _connect(migrated_db) as conn:
        counts = await apply_retention(conn, client, due, batch=2, after_batch=stop.set, stop=stop)

    assert (counts.content_cleared, counts.batches) == (2, 1)


async def test_another_clients_rows_are_untouched(migrated_db: str) -> None:
    mine, mine_slug = await _client(migrated_db, {"content_days": 1, "rows_days": 2})
    other, _ = await _client(migrated_db)
    theirs = [await _message(migrated_db, other, 40), await _message(migrated_db, other, 400)]
    await _message(migrated_db, mine, 400)

    async with await _connect(migrated_db) as conn:
        done = await run_retention(conn, datetime.now(UTC), slug=mine_slug)

    assert [(d.slug, d.counts is not None and d.counts.communications_deleted) for d in done] == [
        (mine_slug, 1)
    ]
    for message in theirs:
        state = await _state(migrated_db, message.communication)
        assert state is not None
        assert state[:4] == KEPT


async def test_a_stored_bad_setting_is_reported_and_skipped(migrated_db: str) -> None:
    _, slug = await _client(migrated_db, {"content_days": 0})

    async with await _connect(migrated_db) as conn:
        done = await run_retention(conn, datetime.now(UTC), slug=slug)

    assert len(done) == 1
    assert done[0].counts is None
    assert done[0].problem is not None
    assert "retention.content_days" in done[0].problem


# ---------------------------------------------------------------- the worker's daily turn


async def test_the_worker_applies_retention_when_it_starts_and_each_turn(
    migrated_db: str,
) -> None:
    client, _ = await _client(migrated_db, {"content_days": 30})
    first = await _message(migrated_db, client, 40)
    stop = asyncio.Event()
    worker = asyncio.create_task(
        run_worker(
            migrated_db,
            worker_config(poll_interval=0.2),
            stop=stop,
            heartbeat_interval=0.05,
            retention_interval=0.5,
        )
    )
    try:
        for message in (first, None):
            if message is None:  # the next turn, half a second later
                message = await _message(migrated_db, client, 40)
            deadline = time.monotonic() + 20
            while (state := await _state(migrated_db, message.communication)) and state[1]:
                assert time.monotonic() < deadline, "the old content is still there"
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(worker, timeout=30)


# ---------------------------------------------------------------- the command


def _env(url: str) -> dict[str, str]:
    return {"LQS_DATABASE_URL": url}


async def test_lqs_retention_set_refuses_bad_values_naming_the_option(migrated_db: str) -> None:
    _, slug = await _client(migrated_db)
    env = _env(migrated_db)

    zero = run_lqs("retention", "set", slug, "--content-days", "0", env=env)
    inverted = run_lqs(
        "retention", "set", slug, "--content-days", "30", "--rows-days", "7", env=env
    )
    unknown = run_lqs("retention", "set", "no-such-client", "--rows-days", "7", env=env)

    assert_one_line_error(zero, "--content-days")
    assert_one_line_error(inverted, "rows_days (7) must be at least content_days (30)")
    assert_one_line_error(unknown, "no-such-client")


async def test_lqs_retention_run_dry_then_for_real(migrated_db: str) -> None:
    client, slug = await _client(migrated_db)
    old = await _message(migrated_db, client, 100)
    env = _env(migrated_db)
    stored = run_lqs("retention", "set", slug, "--content-days", "30", "--rows-days", "90", env=env)
    assert stored.returncode == 0, stored.stderr

    dry = run_lqs("retention", "run", "--client", slug, "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "dry run" in dry.stdout
    assert slug in dry.stdout
    assert await _exists(migrated_db, "communications", old.communication)

    real = run_lqs("retention", "run", "--client", slug, env=env)
    assert real.returncode == 0, real.stderr
    assert not await _exists(migrated_db, "communications", old.communication)
    assert '"communications_deleted": 1' in real.stderr or "communications_deleted=1" in (
        real.stderr + real.stdout
    )


async def test_lqs_retention_run_for_an_unknown_client_is_one_line(migrated_db: str) -> None:
    result = run_lqs("retention", "run", "--client", "no-such-client", env=_env(migrated_db))
    assert_one_line_error(result, "no-such-client")
