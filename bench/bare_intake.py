"""The baseline for ``POST /v1/leads`` over HTTP: a bare Starlette endpoint.

It parses the JSON and inserts the same columns into ``public.leads`` with psycopg: no
authentication, validation, normalisation or deduplication. bench/http_intake.py serves
it with uvicorn (one worker, like ``lqs serve``):

    BARE_INTAKE_DATABASE_URL=... BARE_INTAKE_CLIENT_ID=... \\
        python -m uvicorn bench.bare_intake:app --port 8001
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

COLUMNS = ("email", "first_name", "last_name", "job_title", "company_name", "company_size",
           "country", "source", "consent_status")  # fmt: skip

_INSERT = """
INSERT INTO public.leads (client_id, dedupe_key, email, first_name, last_name, job_title,
                          company_name, company_size, country, source, consent_status)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
RETURNING id
"""


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    # The same pool sizes as `lqs serve` with default settings (LQS_POOL_MIN/MAX_SIZE).
    pool = AsyncConnectionPool(
        os.environ["BARE_INTAKE_DATABASE_URL"], min_size=1, max_size=10, open=False
    )
    await pool.open(wait=True)
    app.state.pool = pool
    app.state.client_id = os.environ["BARE_INTAKE_CLIENT_ID"]
    try:
        yield
    finally:
        await pool.close()


async def create_lead(request: Request) -> JSONResponse:
    lead = json.loads(await request.body())
    pool: AsyncConnectionPool = request.app.state.pool
    async with pool.connection() as conn:
        cur = await conn.execute(
            _INSERT,
            (
                request.app.state.client_id,
                "email:" + lead["email"],
                *(lead.get(column) for column in COLUMNS),
            ),
        )
        row = await cur.fetchone()
    assert row is not None
    return JSONResponse({"id": str(row[0])}, status_code=201)


async def health(request: Request) -> JSONResponse:
    async with request.app.state.pool.connection() as conn:
        await conn.execute("SELECT 1")
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/v1/leads", create_lead, methods=["POST"]),
        Route("/healthz", health, methods=["GET"]),
    ],
    lifespan=_lifespan,
)
