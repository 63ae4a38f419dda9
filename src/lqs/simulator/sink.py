"""Webhook sink: ``POST /hooks/{name}`` records each delivery byte for byte and answers per name.

A hook with a ``secret`` has each delivery's Standard Webhooks signature checked
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature``: ``v1,<base64 HMAC-SHA256>``
over ``{id}.{timestamp}.{body}``, timestamps within 5 minutes), and the verdict recorded.
Faults apply as for providers: a ``drop`` records the delivery, then breaks the connection.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from datetime import UTC, datetime
from http import HTTPStatus

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from lqs.simulator.exchange import Exchange, provider_endpoint
from lqs.simulator.numbers import ascii_number
from lqs.simulator.records import HookDelivery, base64_text, text_or_none

TIMESTAMP_TOLERANCE_SECONDS = 5 * 60


def fault_error(status: int) -> Response:
    """A plain-text error, as a tenant's web server would answer."""
    return PlainTextResponse(HTTPStatus(status).phrase, status)


def signature_problem(
    secret: str, headers: Headers, body: bytes, *, now: float | None = None
) -> str | None:
    """Why the Standard Webhooks signature of a delivery is wrong, or ``None`` if it is right.

    ``secret`` is ``whsec_`` followed by the base64 key (the prefix is optional); ``now``
    (unix seconds, default the current time) is what the timestamp is checked against.
    """
    webhook_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not webhook_id or not timestamp or not signatures:
        return "missing webhook-id, webhook-timestamp or webhook-signature"
    sent_at = ascii_number(timestamp)
    if sent_at is None:
        return "webhook-timestamp is not unix seconds"
    if abs((time.time() if now is None else now) - sent_at) > TIMESTAMP_TOLERANCE_SECONDS:
        return "webhook-timestamp is more than 5 minutes away from now"
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        return "the configured secret is not base64 after whsec_"
    signed = webhook_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return None
    return "no v1 signature matches"


async def receive_hook(exchange: Exchange) -> Response:
    """``POST /hooks/{name}``: record the delivery and answer the hook's configured status."""
    config = exchange.state.config.sink
    name = exchange.request.path_params["name"]
    hook = config.hook(name)
    fault = await exchange.injected_fault(fault_error)
    if fault is not None:
        return fault

    problem = (
        signature_problem(hook.secret, exchange.request.headers, exchange.body)
        if hook.secret
        else None
    )
    state = exchange.state
    state.hook_deliveries.append(
        HookDelivery(
            id=state.next_id("hook"),
            name=name,
            headers=exchange.record.headers,
            body=text_or_none(exchange.body),
            body_base64=base64_text(exchange.body),
            received_at=datetime.now(UTC),
            status=hook.status,
            signature_valid=None if hook.secret is None else problem is None,
            signature_error=problem,
            request_id=exchange.record.id,
        )
    )
    # 204 and 304 must not carry a body.
    text = "" if hook.status in (204, 304) else HTTPStatus(hook.status).phrase
    response: Response = PlainTextResponse(text, hook.status)
    if 300 <= hook.status < 400:
        response.headers["Location"] = f"/hooks/{name}/moved"
    if hook.retry_after_seconds is not None:
        response.headers["Retry-After"] = str(hook.retry_after_seconds)
    if hook.status >= 300:
        exchange.record.outcome = "refused"
        return response
    return await exchange.deliver(response)


ROUTES = [Route("/hooks/{name}", provider_endpoint("sink", receive_hook), methods=["POST"])]
