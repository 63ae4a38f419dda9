"""The baseline for Resend's delivery webhooks: a bare Starlette endpoint.

``POST /webhooks/resend/{client_id}`` checks the Svix signature by hand as LQS does
(HMAC-SHA256 over ``{svix-id}.{svix-timestamp}.{body}``, the timestamp within five
minutes), reads the event's type, ``data.email_id`` and time, and in one transaction
inserts its ``provider_events`` row (once per ``svix-id``, matched to the communication)
and updates that communication's status. It leaves out what LQS adds: FastAPI, looking up
the client's secret, the checks that every field is storable, the advisory lock shared
with the dispatcher's acknowledgements, and the transition rules. bench/webhooks.py serves
it with uvicorn (one worker, like ``lqs serve``):

    BARE_WEBHOOKS_DATABASE_URL=... BARE_WEBHOOKS_SECRET=whsec_... \\
        python -m uvicorn bench.bare_webhooks:app --port 8003
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

TOLERANCE = 300.0
"""Seconds ``svix-timestamp`` may be from the clock, as LQS allows by default."""

# Stored once per event id, already matched to the communication the provider's message id
# names, and marked applied.
_INSERT_EVENT = """
INSERT INTO public.provider_events (client_id, provider, event_id, external_id, event_type,
                                    kind, recipient, occurred_at, payload, communication_id,
                                    applied_at, effect)
SELECT %(client)s, 'resend', %(event_id)s, %(external_id)s, %(type)s, %(kind)s,
       %(recipient)s, %(at)s, %(payload)s,
       (SELECT c.id FROM public.communications AS c
        WHERE c.client_id = %(client)s AND c.provider = 'resend'
          AND c.external_id = %(external_id)s),
       now(), %(kind)s
ON CONFLICT (client_id, provider, event_id) DO NOTHING
RETURNING communication_id
"""

_DELIVERED = """
UPDATE public.communications
SET status = 'delivered', delivered_at = coalesce(delivered_at, %(at)s, now())
WHERE id = %(id)s
"""

_KINDS = {"email.delivered": "delivered"}


def _signed(body: bytes, headers: dict[str, str], key: bytes) -> bool:
    """Svix's check: one ``v1`` signature matches, and the timestamp is recent."""
    try:
        message_id = headers["svix-id"]
        timestamp = headers["svix-timestamp"]
        signatures = headers["svix-signature"]
        if abs(time.time() - int(timestamp)) > TOLERANCE:
            return False
    except (KeyError, ValueError):
        return False
    expected = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256)
    for entry in signatures.split():
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(expected.digest(), candidate):
            return True
    return False


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    # The size of `lqs serve`'s webhook pool with default settings (LQS_WEBHOOK_POOL_MAX_SIZE).
    pool = AsyncConnectionPool(
        os.environ["BARE_WEBHOOKS_DATABASE_URL"], min_size=1, max_size=5, open=False
    )
    await pool.open(wait=True)
    app.state.pool = pool
    secret = os.environ["BARE_WEBHOOKS_SECRET"]
    app.state.key = base64.b64decode(secret.removeprefix("whsec_"))
    try:
        yield
    finally:
        await pool.close()


async def resend_webhook(request: Request) -> JSONResponse:
    body = await request.body()
    if not _signed(body, dict(request.headers), request.app.state.key):
        return JSONResponse({"error": "invalid_signature"}, status_code=401)
    event = json.loads(body)
    data = event["data"]
    at = event.get("created_at")
    kind = _KINDS.get(event["type"], "other")
    pool: AsyncConnectionPool = request.app.state.pool
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            _INSERT_EVENT,
            {
                "client": request.path_params["client_id"],
                "event_id": request.headers["svix-id"],
                "external_id": data["email_id"],
                "type": event["type"],
                "kind": kind,
                "recipient": (data.get("to") or [None])[0],
                "at": at,
                "payload": Jsonb(event),
            },
        )
        row = await cur.fetchone()
        changed = row is not None and row[0] is not None and kind == "delivered"
        if changed:
            assert row is not None
            await conn.execute(_DELIVERED, {"at": at, "id": row[0]})
    return JSONResponse({"received": 1, "duplicates": int(row is None), "changed": int(changed)})


async def health(request: Request) -> JSONResponse:
    async with request.app.state.pool.connection() as conn:
        await conn.execute("SELECT 1")
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/webhooks/resend/{client_id}", resend_webhook, methods=["POST"]),
        Route("/healthz", health, methods=["GET"]),
    ],
    lifespan=_lifespan,
)
