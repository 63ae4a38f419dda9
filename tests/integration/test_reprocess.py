"""``lqs leads reprocess`` and the processor: a lead processed again is scored again, but
never records (so never sends) a message it already has."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from lqs.db.clients import create_client
from lqs.db.leads import insert_or_merge_leads
from lqs.domain.leads import parse_lead
from lqs.worker.processor import LeadProcessor
from tests.integration.test_cli import run_lqs

pytestmark = pytest.mark.asyncio(loop_scope="module")

QUALIFYING = {"email": "ceo@bigco.example", "job_title": "CEO", "company_size": 500,
              "company_domain": "bigco.example", "phone": "+12015550123",
              "consent_status": "granted", "first_name": "Ada"}  # fmt: skip
NOTIFY = {
    "notification_phone": "+12015550100",
    "notifications": {
        "qualified": [
            {"channel": "email", "to": "client", "template": "lead_qualified"},
            {"channel": "sms", "to": "client", "template": "lead_qualified_sms"},
            {"channel": "email", "to": "lead", "template": "lead_acknowledgement"},
        ],
    },
}


@pytest.fixture(scope="module")
async def worker_pool(migrated_db: str) -> AsyncIterator[AsyncConnectionPool]:
    from lqs.db.pool import open_pool

    pool = await open_pool(migrated_db, min_size=1, max_size=4, worker=True)
    yield pool
    await pool.close()


async def _client(pool: AsyncConnectionPool, **settings: Any) -> tuple[UUID, str]:
    slug = f"rp-{uuid.uuid4().hex[:10]}"
    async with pool.connection() as conn:
        client = await create_client(
            conn, slug, slug, {"notification_email": f"sales@{slug}.example", **settings}
        )
    return client.id, slug


async def _queue(pool: AsyncConnectionPool, client_id: UUID, lead: dict[str, Any]) -> UUID:
    async with pool.connection() as conn:
        [stored] = await insert_or_merge_leads(conn, client_id, [parse_lead(lead)])
    return stored.id


async def _fetch(pool: AsyncConnectionPool, sql: str, *params: Any) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(sql.encode(), params)
        return await cur.fetchall()


async def _drain(pool: AsyncConnectionPool) -> int:
    return await LeadProcessor(pool, batch_size=50, in_flight=1, park_after=3).drain()


async def _messages(pool: AsyncConnectionPool, lead_id: UUID) -> list[tuple[Any, ...]]:
    """(id, channel, template, status, queued) of the lead's communications, by template."""
    rows = await _fetch(
        pool,
        "SELECT c.id, c.type, c.template_id, c.status,"
        " (SELECT count(*) FROM public.delivery_queue q WHERE q.communication_id = c.id) AS q"
        " FROM public.communications c WHERE c.lead_id = %s ORDER BY c.template_id, c.type, c.status",
        lead_id,
    )
    return [(r["id"], r["type"], r["template_id"], r["status"], r["q"]) for r in rows]


def _reprocess(url: str, *refs: str) -> str:
    result = run_lqs("leads", "reprocess", *refs, env={"LQS_DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_reprocessing_a_processed_lead_records_and_queues_nothing_twice(
    worker_pool: AsyncConnectionPool, migrated_db: str
) -> None:
    client_id, _ = await _client(worker_pool, **NOTIFY)
    lead_id = await _queue(worker_pool, client_id, QUALIFYING)
    await _drain(worker_pool)
    first = await _messages(worker_pool, lead_id)
    assert [(m[1], m[2], m[3], m[4]) for m in first] == [
        ("email", "lead_acknowledgement@default", "pending", 1),
        ("email", "lead_qualified@default", "pending", 1),
        ("sms", "lead_qualified_sms@default", "pending", 1),
    ]
    # The dispatcher has sent one of them meanwhile: its queue row is gone.
    async with worker_pool.connection() as conn:
        await conn.execute(
            "UPDATE public.communications SET status = 'sent' WHERE id = %s", (first[0][0],)
        )
        await conn.execute(
            "DELETE FROM public.delivery_queue WHERE communication_id = %s", (first[0][0],)
        )

    assert "queued 1 lead(s) again" in _reprocess(migrated_db, str(lead_id))
    assert await _drain(worker_pool) >= 1

    [lead] = await _fetch(worker_pool, "SELECT * FROM public.leads WHERE id = %s", lead_id)
    assert lead["status"] == "qualified"
    assert lead["score"] == sum(e["points"] for e in lead["score_breakdown"])
    again = await _messages(worker_pool, lead_id)
    assert [m[0] for m in again] == [m[0] for m in first]  # the same rows, no new one
    assert [m[4] for m in again] == [0, 1, 1]  # the sent one is not queued again


async def test_a_message_rejected_before_is_recorded_once_consent_is_granted(
    worker_pool: AsyncConnectionPool, migrated_db: str
) -> None:
    client_id, slug = await _client(worker_pool, **NOTIFY)
    lead_id = await _queue(worker_pool, client_id, {**QUALIFYING, "consent_status": "unknown"})
    await _drain(worker_pool)
    assert [(m[2], m[3]) for m in await _messages(worker_pool, lead_id)] == [
        ("lead_acknowledgement@default", "rejected"),
        ("lead_qualified@default", "pending"),
        ("lead_qualified_sms@default", "pending"),
    ]

    # Reprocessed while still without consent: the rejection is not recorded again.
    _reprocess(migrated_db, str(lead_id))
    await _drain(worker_pool)
    assert len(await _messages(worker_pool, lead_id)) == 3

    # The lead submits the form again, agreeing this time (merged into the open lead).
    await _queue(worker_pool, client_id, {**QUALIFYING, "consent_status": "granted"})
    _reprocess(migrated_db, "ceo@bigco.example", "--client", slug)
    await _drain(worker_pool)

    assert [(m[2], m[3], m[4]) for m in await _messages(worker_pool, lead_id)] == [
        ("lead_acknowledgement@default", "pending", 1),
        ("lead_acknowledgement@default", "rejected", 0),
        ("lead_qualified@default", "pending", 1),
        ("lead_qualified_sms@default", "pending", 1),
    ]


async def test_a_parked_lead_is_qualified_once_its_clients_rules_are_fixed(
    worker_pool: AsyncConnectionPool, migrated_db: str
) -> None:
    client_id, _ = await _client(worker_pool, scoring_rules={"thresholds": {"qualified": 1}})
    lead_id = await _queue(worker_pool, client_id, {**QUALIFYING, "email": "p@bigco.example"})
    await _drain(worker_pool)
    [parked] = await _fetch(worker_pool, "SELECT * FROM public.leads WHERE id = %s", lead_id)
    assert parked["status"] == "error"
    assert "invalid scoring rules" in parked["error_message"]
    assert await _messages(worker_pool, lead_id) == []
    async with worker_pool.connection() as conn:
        await conn.execute(
            "UPDATE public.clients SET settings = settings - 'scoring_rules' || %s WHERE id = %s",
            (Jsonb({}), client_id),
        )

    _reprocess(migrated_db, str(lead_id)[:8])
    await _drain(worker_pool)

    [lead] = await _fetch(worker_pool, "SELECT * FROM public.leads WHERE id = %s", lead_id)
    assert (lead["status"], lead["error_message"]) == ("qualified", None)
    assert [(m[2], m[3]) for m in await _messages(worker_pool, lead_id)] == [
        ("lead_qualified@default", "pending")
    ]
