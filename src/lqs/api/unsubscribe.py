"""One-click unsubscribe (RFC 8058): ``POST /u/{token}``; ``GET /u/{token}`` asks first.

A mail client's one-click POST (body ``List-Unsubscribe=One-Click``) or the page's button
withdraws the lead's consent, appends to the consent history and suppresses the address,
in one transaction (:func:`lqs.db.consent.unsubscribe`). Doing it twice is harmless. A
GET never unsubscribes: link scanners fetch every URL in a message.
"""

from __future__ import annotations

import html

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse

from lqs.api.deps import UnsubscribeToken, WebhookPool
from lqs.api.errors import ApiError
from lqs.api.metrics import UNSUBSCRIBES
from lqs.db import consent
from lqs.db.consent import UnsubscribeOutcome
from lqs.domain.leads import FieldError

router = APIRouter()


@router.get("/u/{token}", include_in_schema=False)
async def confirm_page(found: UnsubscribeToken) -> HTMLResponse:
    address = html.escape(found.recipient)
    return HTMLResponse(
        "<!doctype html><meta charset=utf-8><title>Unsubscribe</title>"
        f"<p>Stop all messages to <b>{address}</b>?</p>"
        '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>'
    )


@router.post("/u/{token}")
async def unsubscribe(found: UnsubscribeToken, pool: WebhookPool) -> JSONResponse:
    """Withdraw consent and suppress the address the token names."""
    # The webhook pool: this transaction locks a lead and a suppression like webhooks do.
    outcome = await consent.unsubscribe(pool, found)
    UNSUBSCRIBES.labels(outcome=outcome).inc()
    if outcome is UnsubscribeOutcome.UNKNOWN_CLIENT:
        raise ApiError(
            410,
            "unknown_client",
            "the sender of this message no longer exists",
            fields=[FieldError("token", "client not found")],
        )
    already = outcome is UnsubscribeOutcome.ALREADY
    return JSONResponse({"status": "unsubscribed", "already": already, "channel": found.channel})
