"""A small synchronous client for a running simulator's ``/_sim`` API."""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

import httpx
from pydantic import BaseModel

from lqs.simulator.config import SimulatorConfig
from lqs.simulator.records import (
    CallbackAttempt,
    HookDelivery,
    MessageRecord,
    RegisteredWebhook,
    RequestRecord,
)

_Record = TypeVar("_Record", bound=BaseModel)


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
        return self._listed(MessageRecord, "/_sim/messages", "messages", params)

    def requests(
        self, provider: str | None = None, *, outcome: str | None = None
    ) -> list[RequestRecord]:
        """Every request the providers received, with the status answered."""
        params = {"provider": provider, "outcome": outcome}
        return self._listed(RequestRecord, "/_sim/requests", "requests", params)

    def idempotency_counts(self) -> dict[str, int]:
        """How many accepted messages each idempotency key produced."""
        response = self._client.get("/_sim/idempotency")
        response.raise_for_status()
        counts: dict[str, int] = response.json()["counts"]
        return counts

    def hook_deliveries(self, name: str | None = None) -> list[HookDelivery]:
        """Webhook deliveries the sink answered, optionally for one hook."""
        return self._listed(HookDelivery, "/_sim/hooks", "deliveries", {"name": name})

    def register_webhook(
        self,
        provider: str,
        api_key: str,
        url: str,
        *,
        secret: str | None = None,
        private_key: str | None = None,
    ) -> RegisteredWebhook:
        """Send ``provider``'s delivery events for messages sent with ``api_key`` to ``url``.

        Returns the registration with its Resend ``secret`` (``secret`` or a generated one)
        or its SendGrid ``public_key`` (of ``private_key``, a PEM, or of a generated key).
        A bad argument is answered 422 (``httpx.HTTPStatusError``).
        """
        body = {"provider": provider, "api_key": api_key, "url": url}
        body |= _present({"secret": secret, "private_key": private_key})
        response = self._client.post("/_sim/webhooks", json=body)
        response.raise_for_status()
        return RegisteredWebhook.model_validate(response.json())

    def webhooks(self) -> list[RegisteredWebhook]:
        """The registered webhooks (secrets left out, SendGrid public keys shown)."""
        return self._listed(RegisteredWebhook, "/_sim/webhooks", "webhooks", {})

    def clear_webhooks(self) -> None:
        """Forget every registered webhook, configured ones included."""
        self._client.delete("/_sim/webhooks").raise_for_status()

    def callbacks(
        self,
        provider: str | None = None,
        *,
        message_id: str | None = None,
        event_type: str | None = None,
    ) -> list[CallbackAttempt]:
        """Every callback attempt so far, in the order they were answered."""
        params = {"provider": provider, "message_id": message_id, "event_type": event_type}
        return self._listed(CallbackAttempt, "/_sim/callbacks", "callbacks", params)

    def wait_for_callbacks(
        self, timeout: float = 5.0, *, provider: str | None = None
    ) -> list[CallbackAttempt]:
        """Wait until every callback due has been delivered (or given up), then list them.

        Raises:
            TimeoutError: callbacks were still due after ``timeout`` seconds (at most 60).
        """
        params = _present({"provider": provider}) | {"wait": str(timeout)}
        # The answer comes only after the wait: give the read that much more time.
        read = self._client.timeout.read
        response = self._client.get(
            "/_sim/callbacks", params=params, timeout=None if read is None else read + timeout
        )
        response.raise_for_status()
        body = response.json()
        if body["pending"]:
            raise TimeoutError(
                f"{body['pending']} message(s) still had callbacks due after {timeout} s"
            )
        return [CallbackAttempt.model_validate(item) for item in body["callbacks"]]

    def clear_callbacks(self) -> None:
        """Forget the callback attempts recorded so far (callbacks still due go out)."""
        self._client.delete("/_sim/callbacks").raise_for_status()

    def _listed(
        self, record: type[_Record], path: str, key: str, params: dict[str, str | None]
    ) -> list[_Record]:
        """GET ``path`` (the parameters that are not None in the query) and parse each item
        of the answer's ``key`` list as ``record``."""
        response = self._client.get(path, params=_present(params))
        response.raise_for_status()
        return [record.model_validate(item) for item in response.json()[key]]


def _present(params: dict[str, str | None]) -> dict[str, str]:
    return {name: value for name, value in params.items() if value is not None}
