"""Prometheus metrics of the API process, served at ``GET /metrics``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

router = APIRouter()

WEBHOOK_REQUESTS = Counter(
    "lqs_webhook_requests",
    "Delivery webhook requests by provider and outcome "
    "(accepted, invalid_signature, malformed_webhook)",
    ["provider", "outcome"],
)
WEBHOOK_EVENTS = Counter(
    "lqs_webhook_events",
    "Delivery events in verified webhooks: stored (first time; the worker applies it), "
    "duplicate (already stored, no effect)",
    ["provider", "result"],
)
UNSUBSCRIBES = Counter("lqs_unsubscribes", "One-click unsubscribe requests by outcome", ["outcome"])


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
