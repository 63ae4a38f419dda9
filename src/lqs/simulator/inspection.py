"""``/_sim/…``: what tests read and change on a running simulator.

- ``GET /_sim/messages`` (``?provider=``, ``?idempotency_key=``, ``?recipient=``): accepted
  messages, plus ``idempotency_counts``, the number of accepted messages per key.
- ``GET /_sim/idempotency``: ``{"counts": {key: messages}}``.
- ``GET /_sim/requests`` (``?provider=``, ``?outcome=``): every request, refused ones too,
  with the status answered.
- ``GET /_sim/hooks`` (``?name=``): webhook deliveries the sink answered.
- ``GET /_sim/config``, ``PUT /_sim/config``: read or replace the configuration (outcomes
  and timing of delivery callbacks included: ``callbacks``).
- ``POST /_sim/reset``: forget everything recorded and cancel callbacks still due (the
  configuration and the registered webhooks stay).
- ``POST /_sim/webhooks``: register where a Resend or SendGrid API key's delivery events go
  (201 with the Resend ``secret`` or the SendGrid ``public_key``); ``GET`` lists the
  registrations (no secrets), ``DELETE`` forgets them all.
- ``GET /_sim/callbacks`` (``?provider=``, ``?message_id=``, ``?event_type=``, ``?wait=``
  seconds to first wait, at most 60, for every callback due to be done): every callback
  attempt, and ``pending``, the messages whose callbacks are not done; ``DELETE`` forgets
  the attempts (callbacks still due go out all the same).
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lqs.simulator.config import SimulatorConfig, WebhookRegistration
from lqs.simulator.state import simulator_state

MAX_WAIT_SECONDS = 60.0

_Body = TypeVar("_Body", bound=BaseModel)


def _error(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return JSONResponse({"error": error}, status)


async def list_messages(request: Request) -> Response:
    """Accepted messages, optionally filtered, with the per-key message counts."""
    state = simulator_state(request)
    query = request.query_params
    messages = [
        message
        for message in state.messages
        if query.get("provider") in (None, message.provider)
        and query.get("idempotency_key") in (None, message.idempotency_key)
        and (query.get("recipient") is None or query["recipient"] in message.recipients)
    ]
    return JSONResponse(
        {
            "messages": [message.model_dump(mode="json") for message in messages],
            "idempotency_counts": state.idempotency_counts(),
        }
    )


async def idempotency_counts(request: Request) -> Response:
    """How many accepted messages each idempotency key produced."""
    return JSONResponse({"counts": simulator_state(request).idempotency_counts()})


async def list_requests(request: Request) -> Response:
    """Every provider request, refused ones included, with the status answered."""
    query = request.query_params
    records = [
        record
        for record in simulator_state(request).requests
        if query.get("provider") in (None, record.provider)
        and query.get("outcome") in (None, record.outcome)
    ]
    return JSONResponse({"requests": [record.model_dump(mode="json") for record in records]})


async def list_hook_deliveries(request: Request) -> Response:
    """Webhook deliveries the sink answered, optionally for one hook name."""
    name = request.query_params.get("name")
    deliveries = [
        delivery
        for delivery in simulator_state(request).hook_deliveries
        if name in (None, delivery.name)
    ]
    return JSONResponse(
        {"deliveries": [delivery.model_dump(mode="json") for delivery in deliveries]}
    )


async def read_config(request: Request) -> Response:
    """The configuration in force."""
    return JSONResponse(simulator_state(request).config.model_dump(mode="json"))


async def _read_body(request: Request, model: type[_Body], code: str) -> _Body | JSONResponse:
    """The request's JSON body as ``model``, or the answer refusing it: 400 when it is not
    JSON, 422 (error ``code``) naming the first bad field, with every error in ``details``."""
    try:
        raw = json.loads(await request.body())
    except ValueError:
        return _error(400, "invalid_json", "The body must be a JSON object.")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(root)"
        details = json.loads(exc.json(include_url=False))
        return _error(422, code, f"{where}: {first['msg']}", details)


async def replace_config(request: Request) -> Response:
    """Replace the configuration (400 on bad JSON, 422 naming the bad setting)."""
    config = await _read_body(request, SimulatorConfig, "invalid_config")
    if isinstance(config, JSONResponse):
        return config
    simulator_state(request).configure(config)
    return JSONResponse(config.model_dump(mode="json"))


async def reset(request: Request) -> Response:
    """Forget every record, idempotency key and rate window."""
    simulator_state(request).reset()
    return JSONResponse({"reset": True})


async def register_webhook(request: Request) -> Response:
    """Register a webhook (400 on bad JSON, 422 naming the bad field); 201 with its key."""
    spec = await _read_body(request, WebhookRegistration, "invalid_webhook")
    if isinstance(spec, JSONResponse):
        return spec
    webhook = simulator_state(request).webhooks.register(spec)
    return JSONResponse(webhook.shown(with_secret=True).model_dump(exclude_none=True), 201)


async def list_webhooks(request: Request) -> Response:
    """The registered webhooks, without their secrets."""
    webhooks = simulator_state(request).webhooks.all()
    return JSONResponse(
        {
            "webhooks": [
                webhook.shown(with_secret=False).model_dump(exclude_none=True)
                for webhook in webhooks
            ]
        }
    )


async def clear_webhooks(request: Request) -> Response:
    """Forget every registered webhook."""
    return JSONResponse({"cleared": simulator_state(request).webhooks.clear()})


async def list_callbacks(request: Request) -> Response:
    """Every callback attempt, optionally filtered, after waiting for those due if asked."""
    query = request.query_params
    dispatcher = simulator_state(request).callbacks
    if "wait" in query:
        try:
            seconds = float(query["wait"])
        except ValueError:
            seconds = -1.0
        if not 0 <= seconds <= MAX_WAIT_SECONDS:
            return _error(
                400,
                "invalid_parameter",
                f"wait must be a number of seconds within 0..{MAX_WAIT_SECONDS:g}.",
            )
        await dispatcher.wait(seconds)
    attempts = [
        attempt
        for attempt in dispatcher.attempts
        if query.get("provider") in (None, attempt.provider)
        and query.get("message_id") in (None, attempt.message_id)
        and query.get("event_type") in (None, attempt.event_type)
    ]
    return JSONResponse(
        {
            "callbacks": [attempt.model_dump(mode="json") for attempt in attempts],
            "pending": dispatcher.pending,
        }
    )


async def clear_callbacks(request: Request) -> Response:
    """Forget every callback attempt recorded so far."""
    attempts = simulator_state(request).callbacks.attempts
    cleared = len(attempts)
    attempts.clear()
    return JSONResponse({"cleared": cleared})


ROUTES = [
    Route("/_sim/messages", list_messages, methods=["GET"]),
    Route("/_sim/idempotency", idempotency_counts, methods=["GET"]),
    Route("/_sim/requests", list_requests, methods=["GET"]),
    Route("/_sim/hooks", list_hook_deliveries, methods=["GET"]),
    Route("/_sim/config", read_config, methods=["GET"]),
    Route("/_sim/config", replace_config, methods=["PUT"]),
    Route("/_sim/reset", reset, methods=["POST"]),
    Route("/_sim/webhooks", register_webhook, methods=["POST"]),
    Route("/_sim/webhooks", list_webhooks, methods=["GET"]),
    Route("/_sim/webhooks", clear_webhooks, methods=["DELETE"]),
    Route("/_sim/callbacks", list_callbacks, methods=["GET"]),
    Route("/_sim/callbacks", clear_callbacks, methods=["DELETE"]),
]
