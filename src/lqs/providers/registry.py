"""Every provider LQS can send with or receive delivery webhooks from, by name.

:data:`PROVIDERS` maps a provider's name (the ``delivery`` settings key, the
``communications.provider`` value, the webhook path segment) to its
:class:`~lqs.providers.base.ProviderType`; :data:`INBOUND` maps the providers that send
delivery webhooks to their ``verify``/``parse`` module. Adding a provider adds one line
here (see ``docs/ADDING_PROVIDERS.md``); nothing outside ``lqs.providers`` names one.
"""

from __future__ import annotations

from collections.abc import Mapping

from lqs.providers import resend, sendgrid, twilio
from lqs.providers.base import InboundProvider, ProviderType
from lqs.providers.resend import ResendProvider
from lqs.providers.sendgrid import SendGridProvider
from lqs.providers.twilio import TwilioProvider
from lqs.providers.webhook import WebhookProvider
from lqs.providers.webpush import WebPushProvider

PROVIDERS: Mapping[str, type[ProviderType]] = {
    ResendProvider.name: ResendProvider,
    SendGridProvider.name: SendGridProvider,
    TwilioProvider.name: TwilioProvider,
    WebPushProvider.name: WebPushProvider,
    WebhookProvider.name: WebhookProvider,
}
"""Every provider, by name."""

INBOUND: Mapping[str, InboundProvider] = {
    ResendProvider.name: resend,
    SendGridProvider.name: sendgrid,
    TwilioProvider.name: twilio,
}
"""The providers that report delivery by webhook (``POST /webhooks/{name}``)."""


def idempotent(name: str) -> bool:
    """Whether provider ``name`` has no second effect for a repeated request (an unknown
    name is not: its attempts are recorded as started before sending)."""
    found = PROVIDERS.get(name)
    return found is not None and found.idempotent
