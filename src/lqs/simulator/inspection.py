"""``/_sim/…``: what tests read and change on a running simulator.

- ``GET /_sim/messages`` (``?provider=``, ``?idempotency_key=``, ``?recipient=``): accepted
  messages, plus ``idempotency_counts``, the number of accepted messages per key.
- ``GET /_sim/idempotency``: ``{"counts": {key: messages}}``.
- ``GET /_sim/requests`` (``?provider=``, ``?outcome=``): every request, refused ones too,
  with the status answered.
- ``GET /_sim/hooks`` (``?name=``): webhook deliveries the sink answered.
- ``GET /_sim/config``, ``PUT /_sim/config``: read or replace the configuration.
- ``POST /_sim/reset``: forget everything recorded (the configuration stays).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lqs.simulator.config import SimulatorConfig
from lqs.simulator.state import simulator_state


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


async def replace_config(request: Request) -> Response:
    """Replace the configuration (400 on bad JSON, 422 naming the bad setting)."""
    try:
        raw = json.loads(await request.body())
    except ValueError:
        return _error(400, "invalid_json", "The body must be a JSON object.")
    try:
        config = SimulatorConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(root)"
        return _error(
            422,
            "invalid_config",
            f"{where}: {first['msg']}",
            json.loads(exc.json(include_url=False)),
        )
    simulator_state(request).configure(config)
    return JSONResponse(config.model_dump(mode="json"))


async def reset(request: Request) -> Response:
    """Forget every record, idempotency key and rate window."""
    simulator_state(request).reset()
    return JSONResponse({"reset": True})


ROUTES = [
    Route("/_sim/messages", list_messages, methods=["GET"]),
    Route("/_sim/idempotency", idempotency_counts, methods=["GET"]),
    Route("/_sim/requests", list_requests, methods=["GET"]),
    Route("/_sim/hooks", list_hook_deliveries, methods=["GET"]),
    Route("/_sim/config", read_config, methods=["GET"]),
    Route("/_sim/config", replace_config, methods=["PUT"]),
    Route("/_sim/reset", reset, methods=["POST"]),
]
