"""The access log: one structured line per HTTP request, as an ASGI middleware.

Each line (structlog event ``request``) has the method, the path, the status, the time to
the last byte of the answer in milliseconds, a request id, and the client's id once its
API key was accepted (:mod:`lqs.api.deps` puts it in the request's state). The query
string and headers are never logged: an ``Authorization`` header or a token in a query
would end up in log files. A path parameter that is a secret (the unsubscribe token of
``/u/{token}``) is logged as its route's template.

The request id is the caller's ``X-Request-ID`` when it is a short plain token, else a new
one; the answer carries it back in ``X-Request-ID`` so a caller can quote it.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CLIENT_ID_STATE = "client_id"
"""The key of the request's state (``request.state.client_id``) naming the client whose
API key the request carried."""
SECRET_PATH_PARAMS = frozenset({"token"})
"""Path parameters never logged: a path holding one is logged as its route's template."""
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")
_MAX_PATH = 200

log = structlog.get_logger("lqs.access")


class AccessLog:
    """Log one line per HTTP request after its answer is sent (or fails)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        scope.setdefault("state", {})  # so that what the app stores there is seen here
        status = 500  # if the app raises before answering, the server answers 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            fields: dict[str, Any] = {
                "method": scope["method"],
                "path": _logged_path(scope),
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                "request_id": request_id.decode("ascii"),
            }
            client_id = scope["state"].get(CLIENT_ID_STATE)
            if client_id is not None:
                fields["client_id"] = str(client_id)
            log.info("request", **fields)


def _request_id(scope: Scope) -> bytes:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            if _REQUEST_ID.fullmatch(value):
                return bytes(value)
            break
    return secrets.token_hex(8).encode("ascii")


def _logged_path(scope: Scope) -> str:
    """The path without its query string; a route's template if the path holds a secret;
    printable and at most 200 characters however odd the request."""
    route = scope.get("route")
    if SECRET_PATH_PARAMS & scope.get("path_params", {}).keys() and route is not None:
        return str(getattr(route, "path", "(secret)"))
    raw = scope.get("raw_path")
    path: str = raw.decode("ascii", "backslashreplace") if raw else scope["path"]
    path = path.partition("?")[0]  # raw_path excludes the query; some servers include it
    if not path.isprintable():
        path = path.encode("unicode_escape").decode("ascii")
    return path if len(path) <= _MAX_PATH else path[:_MAX_PATH] + "..."
