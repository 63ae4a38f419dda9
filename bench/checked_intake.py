"""A second baseline for ``POST /v1/leads``: a bare Starlette endpoint that checks and stores
a lead as LQS does.

It validates and normalises the body with LQS's own :func:`lqs.domain.leads.parse_lead`
(the pydantic lead model, email-validator, phonenumbers) and stores it with the statement
of :func:`lqs.db.leads.insert_or_merge_leads` (insert, or merge into the open lead with the
same dedupe key) plus its consent history, in one transaction. It leaves out what LQS adds
around that: FastAPI, the API key lookup, Idempotency-Key and the NOTIFY to processors.
bench/http_intake.py serves it with uvicorn (one worker, like ``lqs serve``):

    BARE_INTAKE_DATABASE_URL=... BARE_INTAKE_CLIENT_ID=... \\
        python -m uvicorn bench.checked_intake:app --port 8002
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lqs.db.consent import record_consent_changes
from lqs.db.leads import (
    _INSERT_OR_MERGE_JSON,
    StoredLead,
    _consent_changes,
    _row,
    merge_within_batch,
)
from lqs.domain.leads import LeadValidationError, NewLead, parse_lead


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    # The same pool sizes as `lqs serve` with default settings (LQS_POOL_MIN/MAX_SIZE).
    pool = AsyncConnectionPool(
        os.environ["BARE_INTAKE_DATABASE_URL"], min_size=1, max_size=10, open=False
    )
    await pool.open(wait=True)
    app.state.pool = pool
    app.state.client_id = UUID(os.environ["BARE_INTAKE_CLIENT_ID"])
    try:
        yield
    finally:
        await pool.close()


async def _store(conn: AsyncConnection, client_id: UUID, lead: NewLead) -> StoredLead:
    """insert_or_merge_leads for one lead, without its NOTIFY."""
    distinct, _ = merge_within_batch([lead])
    cur = await conn.execute(
        _INSERT_OR_MERGE_JSON, {"client_id": client_id, "rows": Jsonb([_row(distinct[0])])}
    )
    row = await cur.fetchone()
    assert row is not None
    _, lead_id, status, inserted = row
    stored = StoredLead(lead_id, status, duplicate=not inserted)
    await record_consent_changes(conn, client_id, _consent_changes(distinct, [stored], "api"))
    return stored


async def create_lead(request: Request) -> JSONResponse:
    payload = json.loads(await request.body())
    if not isinstance(payload, dict):
        return JSONResponse({"error": "the body must be a JSON object"}, status_code=422)
    try:
        lead = parse_lead(payload, default_region="US")
    except LeadValidationError as exc:
        return JSONResponse({"error": str(exc)}, status_code=422)
    pool: AsyncConnectionPool = request.app.state.pool
    async with pool.connection() as conn, conn.transaction():
        stored = await _store(conn, request.app.state.client_id, lead)
    answer = {"id": str(stored.id), "status": stored.status, "duplicate": stored.duplicate}
    return JSONResponse(answer, status_code=200 if stored.duplicate else 201)


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
