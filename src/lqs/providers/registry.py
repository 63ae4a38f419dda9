"""Every provider LQS can send with or receive delivery webhooks from, by name.

:data:`PROVIDERS` maps a provider's name (the ``delivery`` settings key, the
``communications.provider`` value, the webhook path segment) to its
:class:`~lqs.providers.base.ProviderType`; :data:`INBOUND` maps the providers that send
delivery webhooks to their ``verify``/``parse`` module. Adding a provider adds one line
here (see ``docs/ADDING_PROVIDERS.md``); nothing outside ``lqs.providers`` names one.
"""

from __future__ import annotations

from collections.abc import Mapping

from lqs.providers import resend, sendgrid, twilio, webhook, webpush
from lqs.providers.base import InboundProvider, ProviderType

PROVIDERS: Mapping[str, type[ProviderType]] = {
    "resend": resend.ResendProvider,
    "sendgrid": sendgrid.SendGridProvider,
    "twilio": twilio.TwilioProvider,
    "webpush": webpush.WebPushProvider,
    "webhook": webhook.WebhookProvider,
}
"""Every provider, by name (each key is its provider's ``name``)."""

INBOUND: Mapping[str, InboundProvider] = {
    "resend": resend,
    "sendgrid": sendgrid,
    "twilio": twilio,
}
"""The providers that report delivery by webhook (``POST /webhooks/{name}``), by name."""


def idempotent(name: str) -> bool:
    """Whether provider ``name`` has no second effect for a repeated request (an unknown
    name is not: its attempts are recorded as started before sending)."""
    found = PROVIDERS.get(name)
    return found is not None and found.idempotent


def accepted_is_delivered(name: str) -> bool:
    """Whether an accepted message of provider ``name`` is delivered at once (its receiver
    is the recipient: outbound webhooks) rather than sent and awaiting delivery events."""
    found = PROVIDERS.get(name)
    return found is not None and found.accepted_is_delivered
