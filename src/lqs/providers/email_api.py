"""What the email providers' adapters share: one JSON body per email, POSTed with a bearer
API key, the answer classified by the provider.

:class:`EmailProvider` sends; a provider fills in :meth:`~EmailProvider.fields` (its body
for one email), :meth:`~EmailProvider.classify` (its answer as a :class:`SendResult`) and,
if it needs them, :meth:`~EmailProvider.message_headers` (headers of the request for one
email).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import httpx

from lqs.providers.base import (
    HttpProvider,
    OutboundMessage,
    ProviderConfigError,
    SendResult,
    bearer,
    refused,
)


class _Secret(Protocol):
    def get_secret_value(self) -> str: ...


class EmailSettings(Protocol):
    """What an email provider's settings hold (``ResendSettings``, ``SendGridSettings``)."""

    @property
    def api_key(self) -> _Secret: ...

    @property
    def base_url(self) -> str: ...


S = TypeVar("S", bound=EmailSettings)


class EmailProvider(HttpProvider, ABC, Generic[S]):
    """An email API adapter: ``POST`` :attr:`send_path` with one email's JSON body."""

    send_path: ClassVar[str]
    """Where one email is POSTed, after the settings' ``base_url``."""

    @abstractmethod
    def fields(self, settings: S, message: OutboundMessage) -> dict[str, Any]:
        """The provider's body for ``message``, which has a subject and content."""

    def message_headers(self, message: OutboundMessage) -> dict[str, str]:
        """Headers of the request that sends ``message``, beside ``Authorization``."""
        return {}

    @abstractmethod
    def classify(self, response: httpx.Response) -> SendResult:
        """The provider's answer to one email, classified."""

    def request_body(self, settings: S, message: OutboundMessage) -> dict[str, Any]:
        """The JSON the provider receives for ``message`` (:meth:`fields`, and the message's
        ``headers`` if it has any).

        Raises:
            ProviderConfigError: the message has no subject or content.
        """
        if message.content is None or message.subject is None:
            raise ProviderConfigError("an email needs a subject and content")
        body = self.fields(settings, message)
        if message.headers:
            body["headers"] = dict(message.headers)
        return body

    async def send(self, settings: S, message: OutboundMessage) -> SendResult:
        """POST the email (:meth:`request_body`, :meth:`message_headers`) and classify the
        answer (:meth:`classify`).

        Raises:
            ProviderConfigError: the API key cannot be used.
        """
        authorization = bearer(settings.api_key.get_secret_value(), f"{self.name}.api_key")
        if not message.subject or not message.content:
            # The providers refuse an empty subject or body anyway (Resend 422, SendGrid 400).
            return refused("invalid_message", "an email needs a subject and content")
        try:
            body = self.request_body(settings, message)
        except ProviderConfigError as exc:
            return refused("invalid_message", str(exc))
        response = await self._post(
            settings.base_url.rstrip("/") + self.send_path,
            json=body,
            headers={"Authorization": authorization, **self.message_headers(message)},
        )
        return response if isinstance(response, SendResult) else self.classify(response)
