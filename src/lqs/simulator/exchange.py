"""One request to a provider endpoint, from arrival to answer, with its fault plan applied.

Every provider endpoint is built with :func:`provider_endpoint`: it reads the body, logs the
request, draws the fault plan, runs the provider's handler with an :class:`Exchange`, applies
the latency if the handler did not, and records the status it answered. Handlers call
:meth:`Exchange.injected_fault` (which waits the latency) before accepting anything and
:meth:`Exchange.deliver` on the response that accepts a message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from lqs.simulator.faults import DroppedResponse, FaultPlan
from lqs.simulator.records import RequestRecord
from lqs.simulator.state import SimulatorState, simulator_state

ErrorBuilder = Callable[[int], Response]
"""Builds a provider's own error response for an injected status."""


@dataclass
class Exchange:
    """The request being handled, its raw body, its fault plan and its log record."""

    provider: str
    request: Request
    body: bytes
    state: SimulatorState
    plan: FaultPlan
    record: RequestRecord
    _latency_applied: bool = False

    @property
    def bearer_token(self) -> str:
        """The token of an ``Authorization: Bearer …`` header (empty when there is none)."""
        scheme, _, token = self.request.headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""

    async def apply_latency(self) -> None:
        """Wait the planned latency (once per request, wherever the handler calls it)."""
        if self._latency_applied:
            return
        self._latency_applied = True
        if self.plan.latency > 0:
            await asyncio.sleep(self.plan.latency)

    async def injected_fault(self, error: ErrorBuilder) -> Response | None:
        """The injected error or timeout answer, or ``None`` when the request may proceed,
        after the planned latency (:meth:`apply_latency`).

        An error status is answered at once with the provider's body (a 429 carries
        ``Retry-After``); a timeout hangs ``hang_seconds`` and then answers 504, like a
        gateway whose upstream never replied. Nothing is recorded as accepted either way.
        """
        await self.apply_latency()
        status = self.plan.error_status
        if status is not None:
            self.record.outcome = "fault"
            response = error(status)
            if status == 429:
                retry_after = self.state.config.faults_for(self.provider).retry_after_seconds
                response.headers["Retry-After"] = str(retry_after)
            return response
        if self.plan.outcome == "timeout":
            self.record.outcome = "timeout"
            await asyncio.sleep(self.plan.hang_seconds)
            return error(504)
        return None

    async def deliver(self, response: Response) -> Response:
        """Answer an accepted request: normally, by dropping the connection, or after a hang."""
        self.record.outcome = "accepted"
        if self.plan.outcome == "drop":
            self.record.outcome = "dropped"
            return DroppedResponse(response)
        if self.plan.outcome == "hang":
            self.record.outcome = "hung"
            await asyncio.sleep(self.plan.hang_seconds)
        return response


Handler = Callable[[Exchange], Awaitable[Response]]


def provider_endpoint(provider: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap ``handler`` into a Starlette endpoint that logs and fault-plans each request."""

    async def endpoint(request: Request) -> Response:
        state = simulator_state(request)
        body = await request.body()
        record = state.record_request(provider, request, body)
        exchange = Exchange(
            provider=provider,
            request=request,
            body=body,
            state=state,
            plan=state.plan(provider),
            record=record,
        )
        response = await handler(exchange)
        await exchange.apply_latency()
        record.status = response.status_code
        if record.outcome == "pending":
            record.outcome = "accepted" if response.status_code < 400 else "refused"
        return response

    return endpoint
