"""Where Resend and SendGrid delivery events go: one webhook per (provider, API key).

Registrations come from the configuration (``callbacks.webhooks``) and from
``POST /_sim/webhooks``; the latest one for a (provider, API key) wins. Replacing the
configuration replaces the registrations it made and keeps those made at run time.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from lqs.simulator.config import WebhookRegistration
from lqs.simulator.records import RegisteredWebhook
from lqs.simulator.signing import (
    load_sendgrid_key,
    new_sendgrid_key,
    new_svix_secret,
    sendgrid_public_key,
)


@dataclass(frozen=True)
class Webhook:
    """A registered webhook with its signing material (``secret`` or ``private_key``)."""

    spec: WebhookRegistration
    secret: str | None
    private_key: ec.EllipticCurvePrivateKey | None
    from_config: bool

    @property
    def provider(self) -> str:
        """``resend`` or ``sendgrid``."""
        return self.spec.provider

    @property
    def url(self) -> str:
        """Where the events are POSTed."""
        return self.spec.url

    def shown(self, *, with_secret: bool) -> RegisteredWebhook:
        """How ``/_sim/webhooks`` shows it; the secret only when ``with_secret``."""
        return RegisteredWebhook(
            provider=self.spec.provider,
            api_key=self.spec.api_key,
            url=self.spec.url,
            secret=self.secret if with_secret else None,
            public_key=None if self.private_key is None else sendgrid_public_key(self.private_key),
        )


class WebhookRegistry:
    """The registered webhooks, by (provider, API key)."""

    def __init__(self) -> None:
        self._webhooks: dict[tuple[str, str], Webhook] = {}

    def register(self, spec: WebhookRegistration, *, from_config: bool = False) -> Webhook:
        """Register ``spec`` (replacing any for its provider and key), generating its key."""
        secret: str | None = None
        private_key: ec.EllipticCurvePrivateKey | None = None
        if spec.provider == "resend":
            secret = spec.secret or new_svix_secret()
        else:
            private_key = (
                new_sendgrid_key()
                if spec.private_key is None
                else load_sendgrid_key(spec.private_key)
            )
        webhook = Webhook(spec, secret, private_key, from_config)
        self._webhooks[(spec.provider, spec.api_key)] = webhook
        return webhook

    def load_config(self, specs: list[WebhookRegistration]) -> None:
        """Replace the registrations the configuration made with ``specs``.

        A configured webhook that is unchanged keeps its generated key, so that re-applying
        the same configuration does not invalidate a public key already handed out.
        """
        previous = {key: webhook for key, webhook in self._webhooks.items() if webhook.from_config}
        for key in previous:
            del self._webhooks[key]
        for spec in specs:
            kept = previous.get((spec.provider, spec.api_key))
            if kept is not None and kept.spec == spec:
                self._webhooks[(spec.provider, spec.api_key)] = kept
            else:
                self.register(spec, from_config=True)

    def find(self, provider: str, api_key: str) -> Webhook | None:
        """The webhook registered for messages ``provider`` accepted with ``api_key``."""
        return self._webhooks.get((provider, api_key))

    def all(self) -> list[Webhook]:
        """Every registration, oldest first."""
        return list(self._webhooks.values())

    def clear(self) -> int:
        """Forget every registration; returns how many there were."""
        count = len(self._webhooks)
        self._webhooks.clear()
        return count
