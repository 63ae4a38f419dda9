"""One lead, or one tenant's data, cannot fail the batch it is in.

A lead whose processing raises fails alone; a lead whose rows the database refuses makes
the batch roll back and then fails alone while the others are processed one by one; a
lead that keeps failing is parked after ``park_after`` attempts instead of forever; a
lost connection is not the lead's fault and counts nothing.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

import lqs.worker.processor as processor_module
from lqs.worker.processor import LeadProcessor
from tests.integration.test_processor import QUALIFYING, _client, _comms, _fetch, _queue

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
async def worker_pool(migrated_db: str) -> Any:
    from lqs.db.pool import open_pool

    pool = await open_pool(migrated_db, min_size=1, max_size=6, worker=True)
    yield pool
    await pool.close()


async def _lead(pool: AsyncConnectionPool, lead_id: UUID) -> dict[str, Any]:
    [row] = await _fetch(
        pool,
        "SELECT status, processing_failures, error_message FROM public.leads WHERE id = %s",
        lead_id,
    )
    return row


async def test_a_lead_that_raises_fails_alone_and_is_parked_after_three_attempts(
    worker_pool: AsyncConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant_a = await _client(worker_pool)
    tenant_b = await _client(worker_pool)
    [poison] = await _queue(worker_pool, tenant_a, {**QUALIFYING, "first_name": "Boom"})
    good = await _queue(
        worker_pool, tenant_b, *({**QUALIFYING, "email": f"ok{i}@b.example"} for i in range(3))
    )
    real_score = processor_module.score_lead

    def score(lead: Any, rules: Any) -> Any:
        if lead.get("first_name") == "Boom":
            raise RuntimeError("boom\x00 with a NUL and \ud800 a surrogate")
        return real_score(lead, rules)

    monkeypatch.setattr(processor_module, "score_lead", score)
    processor = LeadProcessor(worker_pool, batch_size=100, park_after=3, in_flight=1)

    first = await processor.process_batch()
    assert first.failed == 1
    for lead_id in good:
        assert (await _lead(worker_pool, lead_id))["status"] == "qualified"
    assert len(await _comms(worker_pool, tenant_b)) == 3
    row = await _lead(worker_pool, poison)
    assert (row["status"], row["processing_failures"]) == ("queued", 1)
    assert row["error_message"].startswith("processing attempt 1 failed: RuntimeError: boom")
    assert "\x00" not in row["error_message"]

    # A drain ends at its first short batch: each later drain (the daemon's next wake)
    # tries the lead once more, and the third failure parks it.
    await processor.drain()
    assert (await _lead(worker_pool, poison))["status"] == "queued"
    await processor.drain()
    row = await _lead(worker_pool, poison)
    assert (row["status"], row["processing_failures"]) == ("error", 3)
    assert row["error_message"].startswith("parked after 3 failed attempts: RuntimeError: boom")
    assert await _comms(worker_pool, tenant_a) == []
    assert (await processor.process_batch()).leads == 0  # never claimed again


async def test_a_lead_the_database_refuses_fails_alone_after_the_batch_rolls_back(
    worker_pool: AsyncConnectionPool, migrated_db: str
) -> None:
    tenant_a = await _client(worker_pool)
    tenant_b = await _client(worker_pool)
    [poison] = await _queue(worker_pool, tenant_a, {**QUALIFYING, "first_name": "Poison"})
    good = await _queue(
        worker_pool, tenant_b, *({**QUALIFYING, "email": f"db{i}@b.example"} for i in range(4))
    )
    async with await psycopg.AsyncConnection.connect(migrated_db, autocommit=True) as admin:
        # The database refuses this one lead's outcome (as it would refuse a NUL byte).
        await admin.execute(
            "ALTER TABLE public.leads ADD CONSTRAINT lqs_test_poison CHECK"
            " (status IN ('queued', 'error') OR first_name IS DISTINCT FROM 'Poison') NOT VALID"
        )
        try:
            result = await LeadProcessor(
                worker_pool, batch_size=100, in_flight=1, park_after=3
            ).process_batch()
        finally:
            await admin.execute("ALTER TABLE public.leads DROP CONSTRAINT lqs_test_poison")

    assert (result.leads, result.failed) == (5, 1)
    for lead_id in good:
        assert (await _lead(worker_pool, lead_id))["status"] == "qualified"
    assert len(await _comms(worker_pool, tenant_b)) == 4
    row = await _lead(worker_pool, poison)
    assert (row["status"], row["processing_failures"]) == ("queued", 1)
    assert "lqs_test_poison" in row["error_message"]


async def test_a_cancelled_statement_is_not_the_leads_fault(
    worker_pool: AsyncConnectionPool, migrated_db: str
) -> None:
    from lqs.db.pool import open_pool

    tenant = await _client(worker_pool)
    [lead_id] = await _queue(worker_pool, tenant, {**QUALIFYING, "email": "lost@c.example"})
    # One connection whose statements are cancelled after 100 ms, and an outcome update
    # that takes 500 ms: the batch's statement is cancelled, a transient error.
    slow = await open_pool(migrated_db, min_size=1, max_size=1, worker=True)
    async with await psycopg.AsyncConnection.connect(migrated_db, autocommit=True) as admin:
        await admin.execute(
            "ALTER TABLE public.leads ADD CONSTRAINT lqs_test_slow CHECK"
            " (status = 'queued' OR pg_sleep(0.5) IS NOT NULL) NOT VALID"
        )
        try:
            async with slow.connection() as conn:
                await conn.execute("SET statement_timeout = 100")
            with pytest.raises(psycopg.errors.QueryCanceled):
                await LeadProcessor(slow, batch_size=100, in_flight=1, park_after=3).drain()
        finally:
            await admin.execute("ALTER TABLE public.leads DROP CONSTRAINT lqs_test_slow")
            await slow.close()

    row = await _lead(worker_pool, lead_id)
    assert (row["status"], row["processing_failures"]) == ("queued", 0)
    await LeadProcessor(worker_pool, batch_size=100, in_flight=1, park_after=3).drain()
    assert (await _lead(worker_pool, lead_id))["status"] == "qualified"
