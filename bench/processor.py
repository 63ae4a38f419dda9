"""The processor stage (claim, score, render, outbox) against a hand-written SQL loop."""

from __future__ import annotations

import asyncio
import time

import psycopg
from psycopg.types.json import Jsonb

from bench.common import Row, interleave
from lqs.db.pool import open_pool
from lqs.domain.default_templates import DEFAULT_TEMPLATES
from lqs.domain.templates import TemplateRenderer
from lqs.worker.processor import LeadProcessor

# Every outcome sends one email, so LQS writes one outbox row per lead like the baseline.
SETTINGS = {
    "notification_email": "sales@bench.example",
    "notifications": {
        outcome: [{"channel": "email", "to": "client", "template": "lead_qualified"}]
        for outcome in ("qualified", "nurture", "disqualified")
    },
}

QUEUE_LEADS = """
INSERT INTO public.leads (client_id, email, first_name, last_name, job_title, company_name,
                          company_domain, company_size, country, consent_status, dedupe_key)
SELECT %(client)s, 'lead' || i || '@company' || (i %% 997) || '.example', 'First' || i,
       'Last' || i, (ARRAY['CEO', 'Engineer', 'VP Sales', 'Analyst'])[1 + i %% 4],
       'Company ' || (i %% 997), 'company' || (i %% 997) || '.example', (i * 7) %% 5000,
       (ARRAY['US', 'GB', 'DE', 'FR'])[1 + i %% 4], (ARRAY['granted', 'unknown'])[1 + i %% 2],
       'email:lead' || i || '@company' || (i %% 997) || '.example'
FROM generate_series(1, %(n)s) AS i
"""


def _prepare(url: str, n: int) -> str:
    with psycopg.connect(url) as conn:
        conn.execute("TRUNCATE public.leads, public.clients CASCADE")
        row = conn.execute(
            "INSERT INTO public.clients (name, slug, settings) VALUES ('Bench', 'bench', %s)"
            " RETURNING id",
            (Jsonb(SETTINGS),),
        ).fetchone()
        assert row is not None
        conn.execute(QUEUE_LEADS, {"client": row[0], "n": n})
        conn.execute("ANALYZE public.leads")
    return str(row[0])


async def _lqs(url: str, batch_size: int, n: int, in_flight: int = 1) -> float:
    pool = await open_pool(url, min_size=1, max_size=in_flight + 1, worker=True)
    try:
        started = time.perf_counter()
        processor = LeadProcessor(pool, batch_size=batch_size, in_flight=in_flight)
        processed = await processor.drain()
        elapsed = time.perf_counter() - started
    finally:
        await pool.close()
    assert processed == n, processed
    return n / elapsed


BASELINE_CLAIM = """
SELECT id, client_id FROM public.leads WHERE status = 'queued'
ORDER BY received_at, id LIMIT %s FOR UPDATE SKIP LOCKED
"""


async def _baseline(url: str, batch_size: int, n: int) -> float:
    """Claim a batch, mark it processed, insert one outbox row per lead, commit."""
    pool = await open_pool(url, min_size=1, max_size=2, worker=True)
    processed = 0
    try:
        started = time.perf_counter()
        while True:
            async with pool.connection() as conn, conn.transaction():
                cur = await conn.execute(BASELINE_CLAIM, (batch_size,))
                rows = await cur.fetchall()
                if not rows:
                    break
                ids = [r[0] for r in rows]
                await conn.execute(
                    "UPDATE public.leads SET status = 'qualified', score = 0,"
                    " processed_at = now() WHERE id = ANY(%s)",
                    (ids,),
                )
                await conn.execute(
                    "INSERT INTO public.communications (lead_id, client_id, type, recipient)"
                    " SELECT id, %s, 'email', 'sales@bench.example' FROM unnest(%s::uuid[]) AS id",
                    (rows[0][1], ids),
                )
                processed += len(rows)
        elapsed = time.perf_counter() - started
    finally:
        await pool.close()
    assert processed == n, processed
    return n / elapsed


def _render_only(n: int) -> float:
    """Renders per second of the default notification, as the processor renders it, with
    no database at all: what rendering alone costs next to the whole SQL loop."""
    renderer = TemplateRenderer()
    template = DEFAULT_TEMPLATES["lead_qualified"]
    lead = {
        "id": "6f1c0a4e-0000-4000-8000-000000000000", "email": "lead1@company1.example",
        "phone": None, "first_name": "First1", "last_name": "Last1", "job_title": "CEO",
        "company_name": "Company 1", "company_domain": "company1.example",
        "company_size": 7, "industry": None, "country": "US", "source": None,
        "utm_source": None, "utm_medium": None, "utm_campaign": None, "utm_term": None,
        "utm_content": None, "custom": {}, "consent_status": "granted",
        "received_at": "2026-11-25T08:00:00+00:00",
    }  # fmt: skip
    breakdown = [
        {"rule_id": f"rule_{i}", "rule_version": 1, "field": "job_title", "value": "CEO",
         "points": 10, "reason": "senior job title"}
        for i in range(3)
    ]  # fmt: skip
    variables = {"lead": lead, "client": {"name": "Bench", "slug": "bench"}, "score": 30,
                 "grade": "B", "outcome": "nurture", "breakdown": breakdown}  # fmt: skip
    started = time.perf_counter()
    for _ in range(n):
        renderer.render(template, variables)
    return n / (time.perf_counter() - started)


def run(url: str, n: int, repeats: int, batch_sizes: tuple[int, ...] = (100,)) -> list[Row]:
    rows = []
    for batch_size in batch_sizes:
        print(f"processor: {n:,} leads, batch {batch_size}, {repeats} interleaved repeats")

        def lqs(bs: int = batch_size, in_flight: int = 1) -> float:
            _prepare(url, n)
            return asyncio.run(_lqs(url, bs, n, in_flight))

        def baseline(bs: int = batch_size) -> float:
            _prepare(url, n)
            return asyncio.run(_baseline(url, bs, n))

        configs = {"SQL loop": baseline, "LQS processor": lqs}
        if batch_size == 100:
            configs["LQS, 2 batches in flight"] = lambda: lqs(100, 2)
            configs["rendering only"] = lambda: _render_only(min(n, 5_000))
        series = interleave(repeats, configs)
        rows.append(
            Row(
                f"processor: claim, score, render, outbox (batch {batch_size})",
                series["LQS processor"],
                series["SQL loop"],
                "leads/s",
                0.60 if batch_size == 100 else None,
            )
        )
        if batch_size == 100:
            rows.append(
                Row(
                    "processor, 2 batches in flight (the worker's default; batch 100)",
                    series["LQS, 2 batches in flight"],
                    series["SQL loop"],
                    "leads/s",
                    0.60,
                )
            )
            rows.append(
                Row(
                    "rendering alone: default notification, no database (context)",
                    series["rendering only"],
                    series["SQL loop"],
                    "per s",
                )
            )
    return rows
