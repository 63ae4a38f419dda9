"""One tenant's poisoned template or scoring rule cannot stop the processor for another.

Each tenant A below stores (directly, as an older LQS or a hand edit could) a template
whose output PostgreSQL refuses, or a regex that backtracks for ever in Python's ``re``.
Its leads are claimed in the same batch as tenant B's. Before the fixes, the batch's
write failed (DataError, UnicodeEncodeError) and every restart failed the same way, or
the worker sat at 100% CPU; now A's one message fails and B's go out.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import pytest
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from lqs.db.clients import create_client
from lqs.db.leads import insert_or_merge_leads
from lqs.db.templates import store_template
from lqs.domain.leads import parse_lead
from lqs.worker.processor import LeadProcessor

pytestmark = pytest.mark.asyncio(loop_scope="module")

QUALIFYING = {"email": "ceo@bigco.example", "job_title": "CEO", "company_size": 500,
              "company_domain": "bigco.example", "phone": "+12015550123",
              "consent_status": "granted", "first_name": "Ada"}  # fmt: skip


@pytest.fixture(scope="module")
async def worker_pool(migrated_db: str) -> AsyncIterator[AsyncConnectionPool]:
    from lqs.db.pool import open_pool

    pool = await open_pool(migrated_db, min_size=1, max_size=4, worker=True)
    yield pool
    await pool.close()


async def _client(pool: AsyncConnectionPool, **settings: Any) -> UUID:
    slug = f"p-{uuid.uuid4().hex[:10]}"
    async with pool.connection() as conn:
        client = await create_client(
            conn, slug, slug, {"notification_email": f"sales@{slug}.example", **settings}
        )
    return client.id


async def _queue(pool: AsyncConnectionPool, client_id: UUID, *leads: dict[str, Any]) -> None:
    async with pool.connection() as conn:
        await insert_or_merge_leads(conn, client_id, [parse_lead(lead) for lead in leads])


async def _rows(pool: AsyncConnectionPool, sql: str, *params: Any) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(sql.encode(), params)
        return await cur.fetchall()


async def _comms(pool: AsyncConnectionPool, client_id: UUID) -> list[dict[str, Any]]:
    return await _rows(
        pool,
        "SELECT m.*, q.communication_id IS NOT NULL AS queued FROM public.communications m"
        " LEFT JOIN public.delivery_queue q ON q.communication_id = m.id"
        " WHERE m.client_id = %s ORDER BY m.created_at, m.id",
        client_id,
    )


async def _drain_everything(pool: AsyncConnectionPool) -> int:
    # One batch large enough for both tenants' leads: they share its transaction.
    return await LeadProcessor(pool, batch_size=1000, in_flight=1, park_after=3).drain()


POISONED_BODIES = {
    "NUL literal": "{{ '\\x00' }}",
    "NUL from %c": "Hello {{ '%c' % 0 }}",
    "lone surrogate": "{{ '\\ud800' }}",
    "surrogate from concatenation": "{{ lead.first_name ~ '\\udfff' }}",
    "NUL from the format filter": "{{ '%c' | format(0) }}",
}


@pytest.mark.parametrize("body", POISONED_BODIES.values(), ids=POISONED_BODIES.keys())
async def test_a_poisoned_template_fails_one_message_and_the_batch_goes_on(
    worker_pool: AsyncConnectionPool, body: str
) -> None:
    poisoned = await _client(worker_pool)
    healthy = await _client(worker_pool)
    async with worker_pool.connection() as conn:
        await store_template(conn, poisoned, "lead_qualified", "email", "New lead", body, "html")
    await _queue(worker_pool, poisoned, QUALIFYING)
    await _queue(
        worker_pool, healthy, *({**QUALIFYING, "email": f"ceo{i}@bigco.example"} for i in range(3))
    )

    await _drain_everything(worker_pool)

    [failed] = await _comms(worker_pool, poisoned)
    assert failed["status"] == "failed"
    assert failed["queued"] is False
    assert failed["template_id"] == "lead_qualified@v1"
    assert failed["error_message"].startswith(
        "template lead_qualified v1 body: the output contains"
    )
    assert failed["content"] is None
    sent = await _comms(worker_pool, healthy)
    assert [(c["status"], c["queued"]) for c in sent] == [("pending", True)] * 3
    leads = await _rows(
        worker_pool,
        "SELECT status FROM public.leads WHERE client_id = ANY(%s)",
        [poisoned, healthy],
    )
    assert {lead["status"] for lead in leads} == {"qualified"}


async def test_the_lead_s_own_data_can_poison_only_its_own_message(
    worker_pool: AsyncConnectionPool,
) -> None:
    # '%c' of a custom field: harmless for most leads, a NUL for the one that sent 0.
    client_id = await _client(worker_pool)
    async with worker_pool.connection() as conn:
        await store_template(
            conn, client_id, "lead_qualified", "email", "Code {{ '%c' % (lead.custom.code | int) }}",
            "<p>{{ lead.first_name }}</p>", "html",
        )  # fmt: skip
    await _queue(
        worker_pool,
        client_id,
        {**QUALIFYING, "email": "a@bigco.example", "code": 65},
        {**QUALIFYING, "email": "b@bigco.example", "code": 0},
        {**QUALIFYING, "email": "c@bigco.example", "code": 66},
    )

    await _drain_everything(worker_pool)

    comms = await _rows(
        worker_pool,
        "SELECT m.status, m.subject, m.error_message FROM public.communications m"
        " JOIN public.leads l ON l.id = m.lead_id WHERE m.client_id = %s ORDER BY l.email",
        client_id,
    )
    assert [(c["status"], c["subject"]) for c in comms] == [
        ("pending", "Code A"),
        ("failed", None),
        ("pending", "Code B"),
    ]
    assert comms[1]["error_message"] == (
        "template lead_qualified v1 subject: the output contains NUL (U+0000) at character 6,"
        " which PostgreSQL cannot store"
    )


async def test_a_catastrophic_regex_cannot_hold_the_worker(
    worker_pool: AsyncConnectionPool,
) -> None:
    # With Python's re, (a+)+$ on 41 'a's and a '!' backtracks for hours. RE2 does not.
    rules = {
        "thresholds": {"qualified": 10, "nurture": 5},
        "rules": [{"id": "evil", "field": "job_title", "when": {"regex": "(a+)+$"}, "points": 10}],
    }
    hostile = await _client(worker_pool, scoring_rules=rules)
    healthy = await _client(worker_pool)
    await _queue(
        worker_pool,
        hostile,
        {**QUALIFYING, "email": "x@bigco.example", "job_title": "a" * 41 + "!"},
        {**QUALIFYING, "email": "y@bigco.example", "job_title": "a" * 41},
    )
    await _queue(worker_pool, healthy, QUALIFYING)

    await _drain_everything(worker_pool)

    scored = await _rows(
        worker_pool,
        "SELECT email, status, score FROM public.leads WHERE client_id = ANY(%s) ORDER BY email",
        [hostile, healthy],
    )
    assert [(s["email"], s["status"], s["score"]) for s in scored] == [
        ("ceo@bigco.example", "qualified", 90),
        ("x@bigco.example", "disqualified", 0),
        ("y@bigco.example", "qualified", 10),
    ]
    [sent] = await _comms(worker_pool, healthy)
    assert sent["status"] == "pending"
