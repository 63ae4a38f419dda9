"""Deciding what goes wrong with a request, and the ASGI response that breaks a connection.

A :class:`FaultPlan` is drawn once per request, from the provider's seeded generator, before
the request is handled: the latency to apply and the outcome (``ok``, an error status,
``timeout``, ``drop`` or ``hang``). Handlers then apply it at the right moment: error and
timeout before accepting anything, drop and hang after the message is recorded.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from lqs.simulator.config import Faults, Latency
from lqs.simulator.numbers import ascii_number


@dataclass(frozen=True)
class FaultPlan:
    """What happens to one request: wait ``latency`` seconds, then ``outcome``.

    ``outcome`` is ``"ok"``, an error status as text (``"500"``), ``"timeout"``, ``"drop"``
    or ``"hang"``; ``hang_seconds`` is how long a timeout or a hang lasts.
    """

    latency: float
    outcome: str
    hang_seconds: float

    @property
    def error_status(self) -> int | None:
        """The injected error status, or ``None`` when the outcome is not an error."""
        return ascii_number(self.outcome)


def draw_plan(faults: Faults, rng: random.Random, scripted: str | None = None) -> FaultPlan:
    """Draw the plan for one request; ``scripted`` (from ``faults.script``) wins over chance.

    The generator is advanced the same way whether or not an outcome is scripted, so a
    script does not shift the random outcomes of the requests after it.
    """
    roll = rng.random()
    latency = _sample_latency(faults.latency, rng)
    outcome = scripted if scripted is not None else _pick_outcome(faults, roll)
    return FaultPlan(latency=latency, outcome=outcome, hang_seconds=faults.hang_seconds)


def _sample_latency(latency: Latency, rng: random.Random) -> float:
    if latency.distribution == "fixed":
        return latency.seconds
    if latency.distribution == "uniform":
        return rng.uniform(latency.min_seconds, latency.max_seconds)
    if latency.distribution == "normal":
        return max(0.0, rng.gauss(latency.mean_seconds, latency.sd_seconds))
    return 0.0


def _pick_outcome(faults: Faults, roll: float) -> str:
    candidates: list[tuple[str, float]] = [
        (str(status), rate) for status, rate in sorted(faults.error_rates.items())
    ]
    candidates += [
        ("timeout", faults.timeout_rate),
        ("drop", faults.drop_after_accept_rate),
        ("hang", faults.hang_after_accept_rate),
    ]
    threshold = 0.0
    for outcome, rate in candidates:
        threshold += rate
        if roll < threshold:
            return outcome
    return "ok"


class DroppedResponse(Response):
    """Starts ``response`` (status, headers, half its body) and never finishes it.

    The declared ``Content-Length`` is more than what is sent, and the ASGI callable returns
    without completing the response, so uvicorn closes the connection: the client has
    already been given the status line but fails reading the body (``httpx`` raises
    ``RemoteProtocolError``). An empty body is declared as one byte so that the break is
    visible even for a bodiless 202 or 201.
    """

    def __init__(self, response: Response) -> None:
        super().__init__(status_code=response.status_code)
        self._inner = response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = bytes(self._inner.body)
        declared = max(len(body), 1)
        headers = [
            (name, value) for name, value in self._inner.raw_headers if name != b"content-length"
        ]
        headers.append((b"content-length", str(declared).encode("ascii")))
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
        await send(
            {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
        )
