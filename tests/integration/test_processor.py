"""The lead processor on a real database: one transaction per batch, set-based writes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from lqs.db.clients import create_client
from lqs.db.leads import insert_or_merge_leads
from lqs.db.templates import store_template
from lqs.domain.leads import parse_lead
from lqs.worker.processor import LeadProcessor
from tests.conftest import direct_url

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
async def worker_pool(migrated_db: str) -> AsyncIterator[AsyncConnectionPool]:
    from lqs.db.pool import open_pool

    pool = await open_pool(migrated_db, min_size=1, max_size=6, worker=True)
    yield pool
    await pool.close()


async def _client(pool: AsyncConnectionPool, **settings: Any) -> UUID:
    slug = f"c-{uuid.uuid4().hex[:10]}"
    async with pool.connection() as conn:
        client = await create_client(
            conn, slug, slug, {"notification_email": f"sales@{slug}.example", **settings}
        )
    return client.id


async def _queue(pool: AsyncConnectionPool, client_id: UUID, *leads: dict[str, Any]) -> list[UUID]:
    async with pool.connection() as conn:
        stored = await insert_or_merge_leads(conn, client_id, [parse_lead(lead) for lead in leads])
    return [s.id for s in stored]


async def _fetch(pool: AsyncConnectionPool, sql: str, *params: Any) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(sql.encode(), params)
        return await cur.fetchall()


async def _drain(pool: AsyncConnectionPool, batch_size: int = 100) -> int:
    return await LeadProcessor(pool, batch_size=batch_size, in_flight=1, park_after=3).drain()


async def _comms(pool: AsyncConnectionPool, client_id: UUID) -> list[dict[str, Any]]:
    return await _fetch(
        pool,
        "SELECT m.*, q.communication_id IS NOT NULL AS queued FROM public.communications m"
        " LEFT JOIN public.delivery_queue q ON q.communication_id = m.id"
        " WHERE m.client_id = %s ORDER BY m.created_at",
        client_id,
    )


QUALIFYING = {"email": "ceo@bigco.example", "job_title": "CEO", "company_size": 500,
              "company_domain": "bigco.example", "phone": "+12015550123",
              "consent_status": "granted", "first_name": "Ada"}  # fmt: skip


async def test_qualified_lead_gets_a_pending_rendered_notification_and_queue_row(
    worker_pool: AsyncConnectionPool,
) -> None:
    client_id = await _client(worker_pool)
    [lead_id] = await _queue(worker_pool, client_id, QUALIFYING)

    assert await _drain(worker_pool) >= 1

    [lead] = await _fetch(worker_pool, "SELECT * FROM public.leads WHERE id = %s", lead_id)
    assert lead["status"] == "qualified"
    assert lead["score"] == sum(e["points"] for e in lead["score_breakdown"])
    assert lead["grade"]
    [comm] = await _comms(worker_pool, client_id)
    assert comm["status"] == "pending"
    assert comm["queued"] is True
    assert "Ada" in comm["subject"]
    assert comm["consent_status"] == "granted"
    assert comm["template_variables"]["lead"]["email"] == "ceo@bigco.example"


async def test_suppressed_notification_address_is_rejected_not_queued(
    worker_pool: AsyncConnectionPool,
) -> None:
    client_id = await _client(worker_pool)
    [settings] = await _fetch(
        worker_pool, "SELECT settings FROM public.clients WHERE id = %s", client_id
    )
    async with worker_pool.connection() as conn:
        await conn.execute(
            "INSERT INTO public.suppressions (client_id, channel, recipient, reason)"
            " VALUES (%s, 'email', lower(%s), 'bounce')",
            (client_id, settings["settings"]["notification_email"]),
        )
    await _queue(worker_pool, client_id, QUALIFYING)

    await _drain(worker_pool)

    [comm] = await _comms(worker_pool, client_id)
    assert comm["status"] == "rejected"
    assert "suppression" in comm["compliance_notes"]
    assert comm["queued"] is False


async def test_template_error_fails_the_communication_but_the_lead_is_still_qualified(
    worker_pool: AsyncConnectionPool,
) -> None:
    client_id = await _client(worker_pool)
    async with worker_pool.connection() as conn:
        await store_template(
            conn, client_id, "lead_qualified", "email", "Hi {{ lead.first_name }}",
            "{{ lead.no_such_field.deeper }}", "html",
        )  # fmt: skip
    [lead_id] = await _queue(worker_pool, client_id, QUALIFYING)

    await _drain(worker_pool)

    [lead] = await _fetch(worker_pool, "SELECT status FROM public.leads WHERE id = %s", lead_id)
    [comm] = await _comms(worker_pool, client_id)
    assert lead["status"] == "qualified"
    assert comm["status"] == "failed"
    assert comm["template_id"] == "lead_qualified@v1"
    assert "no_such_field" in comm["error_message"]
    assert comm["queued"] is False


async def test_client_template_version_is_used_and_recorded(
    worker_pool: AsyncConnectionPool,
) -> None:
    client_id = await _client(worker_pool)
    async with worker_pool.connection() as conn:
        for body in ("v1 {{ lead.first_name }}", "v2 <b>{{ lead.first_name }}</b>"):
            await store_template(
                conn, client_id, "lead_qualified", "email", "New: {{ score }}", body, "html"
            )
    await _queue(worker_pool, client_id, {**QUALIFYING, "first_name": "<script>x</script>"})

    await _drain(worker_pool)

    [comm] = await _comms(worker_pool, client_id)
    assert comm["template_id"] == "lead_qualified@v2"
    assert comm["content"].startswith("v2 <b>&lt;script&gt;")


async def test_concurrent_processors_claim_each_lead_exactly_once(
    worker_pool: AsyncConnectionPool,
) -> None:
    client_id = await _client(worker_pool)
    await _queue(
        worker_pool,
        client_id,
        *({**QUALIFYING, "email": f"ceo{i}@bigco.example"} for i in range(300)),
    )

    counts = await asyncio.gather(*(_drain(worker_pool, batch_size=25) for _ in range(4)))

    assert sum(counts) >= 300
    comms = await _comms(worker_pool, client_id)
    assert len(comms) == 300
    assert len({c["lead_id"] for c in comms}) == 300
    [left] = await _fetch(
        worker_pool,
        "SELECT count(*) AS n FROM public.leads WHERE client_id = %s AND status = 'queued'",
        client_id,
    )
    assert left["n"] == 0


async def test_batches_in_flight_process_each_lead_exactly_once(
    worker_pool: AsyncConnectionPool,
) -> None:
    client_id = await _client(worker_pool)
    await _queue(
        worker_pool,
        client_id,
        *({**QUALIFYING, "email": f"lane{i}@bigco.example"} for i in range(230)),
    )

    processed = await LeadProcessor(worker_pool, batch_size=20, in_flight=3, park_after=3).drain()

    assert processed == 230
    comms = await _comms(worker_pool, client_id)
    assert len(comms) == 230
    assert len({c["lead_id"] for c in comms}) == 230
    [left] = await _fetch(
        worker_pool,
        "SELECT count(*) AS n FROM public.leads WHERE client_id = %s AND status = 'queued'",
        client_id,
    )
    assert left["n"] == 0


async def test_drain_stops_after_the_current_batch_when_asked(
    worker_pool: AsyncConnectionPool,
) -> None:
    client_id = await _client(worker_pool)
    await _queue(
        worker_pool,
        client_id,
        *({**QUALIFYING, "email": f"stop{i}@bigco.example"} for i in range(50)),
    )
    processor = LeadProcessor(worker_pool, batch_size=10, in_flight=1, park_after=3)
    stop = asyncio.Event()
    original = processor.process_batch

    async def then_stop() -> Any:
        result = await original()
        stop.set()
        return result

    processor.process_batch = then_stop  # type: ignore[method-assign]

    assert await processor.drain(stop) == 10
    [left] = await _fetch(
        worker_pool,
        "SELECT count(*) AS n FROM public.leads WHERE client_id = %s AND status = 'queued'",
        client_id,
    )
    assert left["n"] == 40


@pytest.mark.parametrize("arguments", [{"batch_size": 0}, {"in_flight": 0}])
async def test_processor_refuses_empty_batches_or_lanes(
    worker_pool: AsyncConnectionPool, arguments: dict[str, int]
) -> None:
    with pytest.raises(ValueError, match="must be 1 or more"):
        LeadProcessor(
            worker_pool, **{"batch_size": 1, "in_flight": 1, "park_after": 3, **arguments}
        )


async def test_a_failed_batch_rolls_back_and_the_leads_are_claimed_again(
    worker_pool: AsyncConnectionPool, migrated_db: str
) -> None:
    client_id = await _client(worker_pool)
    [lead_id] = await _queue(worker_pool, client_id, QUALIFYING)
    # Break the outbox insert for this one run: the batch rolls back, then the lead alone
    # fails too, and that failure is counted; the lead stays queued.
    async with await psycopg.AsyncConnection.connect(migrated_db, autocommit=True) as admin:
        await admin.execute(
            "ALTER TABLE public.delivery_queue"
            " ADD CONSTRAINT lqs_test_block CHECK (priority < 0) NOT VALID"
        )
        try:
            await LeadProcessor(
                worker_pool, batch_size=100, in_flight=1, park_after=3
            ).process_batch()
        finally:
            await admin.execute("ALTER TABLE public.delivery_queue DROP CONSTRAINT lqs_test_block")

    [lead] = await _fetch(
        worker_pool,
        "SELECT status, processing_failures, error_message FROM public.leads WHERE id = %s",
        lead_id,
    )
    assert lead["status"] == "queued"
    assert lead["processing_failures"] == 1
    assert "lqs_test_block" in lead["error_message"]
    assert await _comms(worker_pool, client_id) == []

    await _drain(worker_pool)
    [lead] = await _fetch(worker_pool, "SELECT status FROM public.leads WHERE id = %s", lead_id)
    assert lead["status"] == "qualified"
    assert len(await _comms(worker_pool, client_id)) == 1


async def test_client_with_invalid_stored_rules_marks_its_leads_error(
    worker_pool: AsyncConnectionPool,
) -> None:
    client_id = await _client(worker_pool, scoring_rules={"rules": "not a list"})
    [lead_id] = await _queue(worker_pool, client_id, QUALIFYING)

    await _drain(worker_pool)

    [lead] = await _fetch(
        worker_pool, "SELECT status, error_message FROM public.leads WHERE id = %s", lead_id
    )
    assert lead["status"] == "error"
    assert "invalid scoring rules" in lead["error_message"]
    assert await _comms(worker_pool, client_id) == []


async def test_processing_notifies_the_dispatcher(
    worker_pool: AsyncConnectionPool, migrated_db: str
) -> None:
    client_id = await _client(worker_pool)
    await _queue(worker_pool, client_id, QUALIFYING)
    # LISTEN on the direct URL: through a transaction pooler it would hear nothing.
    listening = direct_url(migrated_db)
    async with await psycopg.AsyncConnection.connect(listening, autocommit=True) as listener:
        await listener.execute("LISTEN lqs_communications_pending")
        await _drain(worker_pool)
        received = [n async for n in listener.notifies(timeout=5, stop_after=1)]
    assert [n.channel for n in received] == ["lqs_communications_pending"]
