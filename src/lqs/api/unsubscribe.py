"""One-click unsubscribe (RFC 8058): ``POST /u/{token}``; ``GET /u/{token}`` asks first.

A mail client's one-click POST (body ``List-Unsubscribe=One-Click``) or the page's button
withdraws the lead's consent, appends to the consent history and suppresses the address,
in one transaction. Doing it twice is harmless. A GET never unsubscribes: link scanners
fetch every URL in a message.
"""

from __future__ import annotations

import html

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from psycopg_pool import AsyncConnectionPool

from lqs.api.errors import error_response
from lqs.api.metrics import UNSUBSCRIBES
from lqs.db.consent import withdraw_consent
from lqs.db.suppressions import suppress
from lqs.domain.leads import FieldError
from lqs.domain.notifications import normalise_recipient
from lqs.domain.unsubscribe import InvalidUnsubscribeToken, Unsubscribe, UnsubscribeLinks

router = APIRouter()


def _read(request: Request, token: str) -> Unsubscribe | JSONResponse:
    links: UnsubscribeLinks | None = request.app.state.unsubscribe_links
    if links is None:
        UNSUBSCRIBES.labels(outcome="not_configured").inc()
        return error_response(
            503, "unsubscribe_not_configured", "unsubscribe links are not configured here"
        )
    try:
        return links.read(token)
    except InvalidUnsubscribeToken as exc:
        UNSUBSCRIBES.labels(outcome="invalid_token").inc()
        return error_response(
            400, "invalid_unsubscribe_token", str(exc), fields=[FieldError("token", str(exc))]
        )


@router.get("/u/{token}", include_in_schema=False)
async def confirm_page(request: Request, token: str) -> Response:
    found = _read(request, token)
    if isinstance(found, JSONResponse):
        return found
    address = html.escape(found.recipient)
    return HTMLResponse(
        "<!doctype html><meta charset=utf-8><title>Unsubscribe</title>"
        f"<p>Stop all messages to <b>{address}</b>?</p>"
        '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>'
    )


@router.post("/u/{token}")
async def unsubscribe(request: Request, token: str) -> JSONResponse:
    """Withdraw consent and suppress the address the token names."""
    found = _read(request, token)
    if isinstance(found, JSONResponse):
        return found
    # The webhook pool: this transaction locks a lead and a suppression like webhooks do.
    pool: AsyncConnectionPool = request.app.state.webhook_pool
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "SELECT 1 FROM public.clients WHERE id = %s FOR KEY SHARE", (found.client_id,)
        )
        if await cur.fetchone() is None:
            UNSUBSCRIBES.labels(outcome="unknown_client").inc()
            return error_response(
                410,
                "unknown_client",
                "the sender of this message no longer exists",
                fields=[FieldError("token", "client not found")],
            )
        added = await suppress(
            conn,
            found.client_id,
            found.channel,
            found.recipient,
            "unsubscribe",
            f"one-click unsubscribe (communication {found.communication_id})",
        )
        # The address may be suppressed already (a bounce, by hand) while the lead's
        # consent still stands: the click must withdraw it all the same.
        address = normalise_recipient(found.channel, found.recipient)
        cur = await conn.execute(
            "SELECT id, consent_status <> 'withdrawn' AND (lower(email) = %s OR phone = %s)"
            " FROM public.leads WHERE id = %s AND client_id = %s FOR UPDATE",
            (address, address, found.lead_id, found.client_id),
        )
        lead = await cur.fetchone()
        consent_stands = lead is not None and lead[1] is True
        changed = added or consent_stands
        if changed:
            await withdraw_consent(
                conn,
                found.client_id,
                lead[0] if lead else None,
                found.channel,
                found.recipient,
                source="unsubscribe link",
                communication_id=found.communication_id,
            )
    UNSUBSCRIBES.labels(outcome="unsubscribed" if changed else "already").inc()
    return JSONResponse(
        {"status": "unsubscribed", "already": not changed, "channel": found.channel}
    )
