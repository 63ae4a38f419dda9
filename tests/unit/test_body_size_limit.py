"""The body size limit's refusal from the Content-Length header alone (lqs.api.limits)."""

from __future__ import annotations

from typing import Any

import pytest

from lqs.api.limits import BodySizeLimit


async def _status(content_length: bytes) -> int:
    """The status BodySizeLimit(max 100 bytes) answers a POST that declares
    ``content_length`` (the app behind it answers 200 without reading)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "headers": [(b"content-length", content_length)]}
    await BodySizeLimit(app, max_bytes=100)(scope, receive, send)
    return int(sent[0]["status"])


@pytest.mark.parametrize(
    ("content_length", "status"),
    [
        (b"100", 200),
        (b"101", 413),
        (b"9" * 19, 413),
        (b"9" * 5000, 413),  # past int()'s 4,300 digits: refused, not a crash
        (b"0" * 5000, 413),  # absurd, whatever its value
    ],
)
async def test_a_declared_length_over_the_limit_is_413_however_long(
    content_length: bytes, status: int
) -> None:
    assert await _status(content_length) == status
