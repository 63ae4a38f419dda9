"""A small synchronous client for a running simulator's ``/_sim`` API."""

from __future__ import annotations

from types import TracebackType

import httpx

from lqs.simulator.config import SimulatorConfig
from lqs.simulator.records import HookDelivery, MessageRecord, RequestRecord


class SimulatorControl:
    """Configure, reset and inspect the simulator at ``base_url``.

    Every method raises ``httpx.HTTPError`` when the simulator cannot be reached or
    answers with an error status (``httpx.HTTPStatusError``).
    """

    def __init__(self, base_url: str, *, timeout: float = 5.0) -> None:
        self._client = httpx.Client(base_url=base_url, timeout=timeout)

    def __enter__(self) -> SimulatorControl:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying HTTP connection pool."""
        self._client.close()

    def configure(self, config: SimulatorConfig) -> None:
        """Replace the simulator's configuration (faults, keys, refused recipients, …)."""
        self._client.put("/_sim/config", json=config.model_dump(mode="json")).raise_for_status()

    def reset(self) -> None:
        """Forget every record, idempotency key and rate window."""
        self._client.post("/_sim/reset").raise_for_status()

    def messages(
        self, provider: str | None = None, *, idempotency_key: str | None = None
    ) -> list[MessageRecord]:
        """Accepted messages, optionally of one provider or one idempotency key."""
        params = {"provider": provider, "idempotency_key": idempotency_key}
        response = self._client.get("/_sim/messages", params=_present(params))
        response.raise_for_status()
        return [MessageRecord.model_validate(item) for item in response.json()["messages"]]

    def requests(
        self, provider: str | None = None, *, outcome: str | None = None
    ) -> list[RequestRecord]:
        """Every request the providers received, with the status answered."""
        params = {"provider": provider, "outcome": outcome}
        response = self._client.get("/_sim/requests", params=_present(params))
        response.raise_for_status()
        return [RequestRecord.model_validate(item) for item in response.json()["requests"]]

    def idempotency_counts(self) -> dict[str, int]:
        """How many accepted messages each idempotency key produced."""
        response = self._client.get("/_sim/idempotency")
        response.raise_for_status()
        counts: dict[str, int] = response.json()["counts"]
        return counts

    def hook_deliveries(self, name: str | None = None) -> list[HookDelivery]:
        """Webhook deliveries the sink answered, optionally for one hook."""
        response = self._client.get("/_sim/hooks", params=_present({"name": name}))
        response.raise_for_status()
        return [HookDelivery.model_validate(item) for item in response.json()["deliveries"]]


def _present(params: dict[str, str | None]) -> dict[str, str]:
    return {name: value for name, value in params.items() if value is not None}
