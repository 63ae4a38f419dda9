"""The simulator's settings: accepted credentials, refused recipients and faults, per provider.

One :class:`SimulatorConfig` drives the whole server. It is read from a JSON or YAML file
(``lqs simulate --config FILE``) and can be replaced while the server runs with
``PUT /_sim/config`` (a JSON body of the same shape), which is how tests inject faults and
choose delivery outcomes. Every model forbids unknown keys, so a misspelt setting fails
loudly instead of being ignored.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lqs.simulator.numbers import ascii_number
from lqs.simulator.signing import load_sendgrid_key, svix_key

FAULT_OUTCOMES = frozenset({"ok", "timeout", "drop", "hang"})
"""Words allowed in :attr:`Faults.script`, besides an HTTP status code such as ``"500"``."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Latency(_Model):
    """How long the simulator waits before answering.

    ``fixed`` waits ``seconds``; ``uniform`` draws between ``min_seconds`` and
    ``max_seconds``; ``normal`` draws from N(``mean_seconds``, ``sd_seconds``), clipped at 0.
    """

    distribution: Literal["none", "fixed", "uniform", "normal"] = "none"
    seconds: float = Field(default=0.0, ge=0)
    min_seconds: float = Field(default=0.0, ge=0)
    max_seconds: float = Field(default=0.0, ge=0)
    mean_seconds: float = Field(default=0.0, ge=0)
    sd_seconds: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _bounds_ordered(self) -> Latency:
        if self.distribution == "uniform" and self.min_seconds > self.max_seconds:
            raise ValueError("min_seconds must not exceed max_seconds")
        return self


class Faults(_Model):
    """What goes wrong, and how often, for one provider.

    Every request draws one outcome: an error status from ``error_rates`` (``{"500": 0.3}``
    answers 30% of requests with the provider's own 500 body; ``"429"`` carries
    ``Retry-After: retry_after_seconds``), a ``timeout`` (hang ``hang_seconds`` without
    accepting, then answer 504), a ``drop`` (accept and record the message, then close the
    connection mid-response) or a ``hang`` (accept and record, then hang ``hang_seconds``
    before answering). The rates together must not exceed 1. ``script`` lists outcomes to
    use first, one per request, before any random draw: ``["500", "drop", "ok"]``.
    """

    error_rates: dict[int, float] = Field(default_factory=dict)
    retry_after_seconds: int = Field(default=1, ge=0)
    latency: Latency = Field(default_factory=Latency)
    timeout_rate: float = Field(default=0.0, ge=0, le=1)
    hang_seconds: float = Field(default=30.0, ge=0)
    drop_after_accept_rate: float = Field(default=0.0, ge=0, le=1)
    hang_after_accept_rate: float = Field(default=0.0, ge=0, le=1)
    script: list[str] = Field(default_factory=list)

    @field_validator("error_rates")
    @classmethod
    def _error_statuses(cls, rates: dict[int, float]) -> dict[int, float]:
        for status, rate in rates.items():
            if not 400 <= status <= 599:
                raise ValueError(f"error_rates: {status} is not a 4xx or 5xx status")
            if not 0 <= rate <= 1:
                raise ValueError(f"error_rates: the rate for {status} must be within 0..1")
        return rates

    @field_validator("script")
    @classmethod
    def _script_words(cls, script: list[str]) -> list[str]:
        for word in script:
            status = ascii_number(word)
            if word not in FAULT_OUTCOMES and not (status is not None and 400 <= status <= 599):
                raise ValueError(
                    f"script: {word!r} is neither a 4xx/5xx status nor one of "
                    f"{sorted(FAULT_OUTCOMES)}"
                )
        return script

    @model_validator(mode="after")
    def _rates_sum_to_at_most_one(self) -> Faults:
        total = (
            sum(self.error_rates.values())
            + self.timeout_rate
            + self.drop_after_accept_rate
            + self.hang_after_accept_rate
        )
        if total > 1 + 1e-9:
            raise ValueError(f"fault rates add up to {total:.3f}, more than 1")
        return self


class ResendConfig(_Model):
    """Resend: ``POST /emails`` and ``POST /emails/batch``.

    ``api_keys`` empty accepts any ``re_`` key; ``verified_domains`` empty accepts any
    sender domain. The rate limit is always reported in the ``ratelimit-*`` headers and
    answered with 429 only when ``enforce_rate_limit`` is set.
    """

    api_keys: list[str] = Field(default_factory=list)
    verified_domains: list[str] = Field(default_factory=list)
    invalid_recipients: list[str] = Field(default_factory=list)
    rate_limit_per_second: int = Field(default=5, ge=1)
    enforce_rate_limit: bool = False
    idempotency_ttl_seconds: float = Field(default=24 * 3600, gt=0)
    faults: Faults = Field(default_factory=Faults)


class SendGridConfig(_Model):
    """SendGrid: ``POST /v3/mail/send``.

    ``api_keys`` empty accepts any ``SG.`` key; keys in ``forbidden_keys`` lack the
    ``mail.send`` scope (403). ``verified_senders`` (addresses or bare domains) empty
    accepts any sender.
    """

    api_keys: list[str] = Field(default_factory=list)
    forbidden_keys: list[str] = Field(default_factory=list)
    verified_senders: list[str] = Field(default_factory=list)
    invalid_recipients: list[str] = Field(default_factory=list)
    faults: Faults = Field(default_factory=Faults)


class TwilioConfig(_Model):
    """Twilio: ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``.

    ``accounts`` maps Account SIDs to auth tokens; empty accepts any well-formed SID with
    any non-empty token. ``invalid_recipients`` are ``To`` numbers refused with 21211,
    ``invalid_senders`` ``From`` values refused with 21212.
    """

    accounts: dict[str, str] = Field(default_factory=dict)
    invalid_recipients: list[str] = Field(default_factory=list)
    invalid_senders: list[str] = Field(default_factory=list)
    faults: Faults = Field(default_factory=Faults)


class PushConfig(_Model):
    """Web push: ``POST /push/{subscription_id}``, as a browser push service answers it.

    ``gone_subscriptions`` answer 410 and ``unknown_subscriptions`` 404. With
    ``verify_vapid`` the VAPID JWT's signature, ``aud`` and ``exp`` are checked, not only
    the header's shape; ``vapid_public_keys`` (base64url), if set, are the only keys allowed.
    """

    gone_subscriptions: list[str] = Field(default_factory=list)
    unknown_subscriptions: list[str] = Field(default_factory=list)
    max_payload_bytes: int = Field(default=4096, ge=1)
    verify_vapid: bool = True
    vapid_public_keys: list[str] = Field(default_factory=list)
    faults: Faults = Field(default_factory=Faults)


class HookConfig(_Model):
    """One named webhook receiver: the status it answers and, optionally, its secret.

    With ``secret`` (``whsec_…``) each delivery's Standard Webhooks signature is checked
    and the verdict recorded. A 3xx status carries a ``Location`` header.
    """

    status: int = Field(default=200, ge=200, le=599)
    retry_after_seconds: int | None = Field(default=None, ge=0)
    secret: str | None = None


class SinkConfig(_Model):
    """Webhook sink: ``POST /hooks/{name}`` records and answers per name."""

    default_status: int = Field(default=200, ge=200, le=599)
    hooks: dict[str, HookConfig] = Field(default_factory=dict)
    faults: Faults = Field(default_factory=Faults)

    def hook(self, name: str) -> HookConfig:
        """The settings for ``name``, or the defaults when it is not configured."""
        return self.hooks.get(name) or HookConfig(status=self.default_status)


EmailOutcome = Literal["delivered", "bounced", "soft_bounced", "complained", "failed", "suppressed"]
"""What happens to an email after it is accepted (see :class:`CallbacksConfig` for the events)."""

SmsOutcome = Literal["delivered", "undelivered", "failed"]
"""What happens to an SMS after it is accepted (see :class:`CallbacksConfig` for the events)."""


def _matches(pattern: str, recipients: Sequence[str]) -> bool:
    wanted = pattern.lower()
    return any(fnmatchcase(recipient.strip().lower(), wanted) for recipient in recipients)


class EmailOutcomeRule(_Model):
    """Recipients matching ``recipient`` get ``outcome``.

    ``recipient`` is an ``fnmatch`` pattern (``*``, ``?``, ``[…]``) compared, ignoring case,
    with the whole address: ``"*@bounce.example"``, ``"complainer+*@example.com"``.
    """

    recipient: str = Field(min_length=1)
    outcome: EmailOutcome


class SmsOutcomeRule(_Model):
    """Numbers matching ``recipient`` (an ``fnmatch`` pattern: ``"+1415555*"``) get ``outcome``."""

    recipient: str = Field(min_length=1)
    outcome: SmsOutcome


class EmailOutcomes(_Model):
    """The outcome of each email: the first rule that matches, else ``default``."""

    default: EmailOutcome = "delivered"
    rules: list[EmailOutcomeRule] = Field(default_factory=list)

    def outcome_for(self, recipients: Sequence[str]) -> EmailOutcome:
        """The outcome of a message to ``recipients``: the first rule matching any of them."""
        for rule in self.rules:
            if _matches(rule.recipient, recipients):
                return rule.outcome
        return self.default


class SmsOutcomes(_Model):
    """The outcome of each SMS: the first rule that matches its ``To``, else ``default``."""

    default: SmsOutcome = "delivered"
    rules: list[SmsOutcomeRule] = Field(default_factory=list)

    def outcome_for(self, recipients: Sequence[str]) -> SmsOutcome:
        """The outcome of a message to ``recipients``: the first rule matching any of them."""
        for rule in self.rules:
            if _matches(rule.recipient, recipients):
                return rule.outcome
        return self.default


class WebhookRegistration(_Model):
    """Where the delivery events of one provider account go (``POST /_sim/webhooks``).

    Messages sent with ``api_key`` have their events POSTed to ``url``. Resend's are signed
    with ``secret`` (``whsec_…``; generated when absent, and then only the registration's
    answer tells it), SendGrid's with ``private_key`` (PEM of an EC P-256 key; generated when
    absent, the answer and the listing show its public key). Twilio needs no registration:
    its callbacks go to each message's ``StatusCallback``, signed with the auth token.
    """

    provider: Literal["resend", "sendgrid"]
    api_key: str = Field(min_length=1)
    url: str
    secret: str | None = None
    private_key: str | None = None

    @field_validator("provider", mode="before")
    @classmethod
    def _twilio_needs_none(cls, provider: object) -> object:
        if provider == "twilio":
            raise ValueError(
                "twilio needs no registration: its callbacks go to each message's "
                "StatusCallback, signed with the account's auth token"
            )
        return provider

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{url!r} is not an http(s) URL")
        return url

    @field_validator("secret")
    @classmethod
    def _svix_secret(cls, secret: str | None) -> str | None:
        if secret is not None:
            if not secret.startswith("whsec_"):
                raise ValueError("a Svix secret starts with whsec_")
            svix_key(secret)
        return secret

    @field_validator("private_key")
    @classmethod
    def _p256_key(cls, private_key: str | None) -> str | None:
        if private_key is not None:
            load_sendgrid_key(private_key)
        return private_key

    @model_validator(mode="after")
    def _key_fits_provider(self) -> WebhookRegistration:
        if self.provider == "resend" and self.private_key is not None:
            raise ValueError("private_key is for sendgrid; resend signs with a secret")
        if self.provider == "sendgrid" and self.secret is not None:
            raise ValueError("secret is for resend; sendgrid signs with a private_key")
        return self


class CallbacksConfig(_Model):
    """Delivery events the simulator sends back about each accepted message, and when.

    **Where.** Resend and SendGrid events go to the webhook registered for the API key the
    message was sent with (``webhooks`` here, or ``POST /_sim/webhooks`` at run time);
    Twilio's go to the message's ``StatusCallback``. Without either, nothing is sent.

    **What.** ``email`` (Resend, SendGrid) and ``sms`` (Twilio) pick each message's outcome
    from its recipients (``rules`` in order, first match wins, else ``default``). Resend
    rules are matched against all the ``to`` addresses of the email; SendGrid ones against
    each ``to`` address of each personalization, which gets events of its own. The events:

    - ``delivered``: Resend ``email.sent``, ``email.delivered``; SendGrid ``processed``,
      ``delivered``.
    - ``bounced``: ``email.sent``, ``email.bounced`` (bounce type ``Permanent``);
      ``processed``, ``bounce`` (status 5.1.1).
    - ``soft_bounced``: ``email.sent``, ``email.delivery_delayed``; ``processed``,
      ``deferred``; then nothing (Resend's ``email.bounced`` is for permanent rejections).
    - ``complained``: ``email.sent``, ``email.delivered``, ``email.complained``;
      ``processed``, ``delivered``, ``spamreport``.
    - ``failed``: ``email.failed``; ``dropped`` (reason ``Bounced Address``).
    - ``suppressed``: ``email.suppressed``; ``dropped`` (reason ``Unsubscribed Address``).

    Twilio: ``delivered`` is ``sent`` then ``delivered``; ``undelivered`` is ``sent`` then
    ``undelivered`` (ErrorCode 30003); ``failed`` is ``failed`` alone (ErrorCode 30008): a
    failed message was never sent.

    **When.** Each event happens ``delay_seconds`` (plus a uniform draw up to
    ``jitter_seconds``) after the previous one, the first after the send; its timestamps say
    so. ``out_of_order`` POSTs a message's events in reverse order at those same moments (the
    timestamps still tell the true order). ``duplicates`` POSTs each event that many extra
    times right after the first, with the same id and body bytes.

    **Retries.** A delivery answered other than 2xx (redirects are not followed), or not
    answered within ``timeout_seconds``, is tried again, up to ``max_attempts`` tries in all,
    waiting ``retry_backoff_seconds`` and doubling each time. Retries and duplicates are
    re-signed at the moment they are sent (fresh ``svix-timestamp`` / SendGrid timestamp), as
    Svix's retries are; Twilio's signature has no timestamp and is the same every time.
    """

    email: EmailOutcomes = Field(default_factory=EmailOutcomes)
    sms: SmsOutcomes = Field(default_factory=SmsOutcomes)
    delay_seconds: float = Field(default=0.05, ge=0)
    jitter_seconds: float = Field(default=0.0, ge=0)
    out_of_order: bool = False
    duplicates: int = Field(default=0, ge=0, le=10)
    max_attempts: int = Field(default=3, ge=1, le=20)
    retry_backoff_seconds: float = Field(default=0.5, ge=0)
    timeout_seconds: float = Field(default=5.0, gt=0)
    webhooks: list[WebhookRegistration] = Field(default_factory=list)

    @model_validator(mode="after")
    def _configured_resend_webhooks_have_secrets(self) -> CallbacksConfig:
        # A secret generated for a configured webhook could be learnt from nowhere: the
        # listing never shows secrets, and a configuration has no answer to carry it.
        for index, webhook in enumerate(self.webhooks):
            if webhook.provider == "resend" and webhook.secret is None:
                raise ValueError(
                    f"webhooks.{index}: a resend webhook in the configuration needs its "
                    "secret (whsec_…)"
                )
        return self


class SimulatorConfig(_Model):
    """Everything the simulator does; ``seed`` makes every random draw repeatable."""

    seed: int | None = None
    resend: ResendConfig = Field(default_factory=ResendConfig)
    sendgrid: SendGridConfig = Field(default_factory=SendGridConfig)
    twilio: TwilioConfig = Field(default_factory=TwilioConfig)
    push: PushConfig = Field(default_factory=PushConfig)
    sink: SinkConfig = Field(default_factory=SinkConfig)
    callbacks: CallbacksConfig = Field(default_factory=CallbacksConfig)

    @classmethod
    def served(cls) -> tuple[str, ...]:
        """The sections of the providers the simulator serves: those with ``faults``."""
        return tuple(
            name
            for name, field in cls.model_fields.items()
            if isinstance(field.annotation, type)
            and issubclass(field.annotation, BaseModel)
            and "faults" in field.annotation.model_fields
        )

    def faults_for(self, provider: str) -> Faults:
        """The fault settings of ``provider`` (``resend``, ``sendgrid``, ``twilio``, …).

        Raises:
            KeyError: ``provider`` is not one the simulator serves.
        """
        if provider not in self.served():
            raise KeyError(provider)
        faults: Faults = getattr(self, provider).faults
        return faults


def load_config(path: Path) -> SimulatorConfig:
    """Read a :class:`SimulatorConfig` from a ``.json``, ``.yaml`` or ``.yml`` file.

    Raises:
        OSError: the file cannot be read.
        ValueError: the file is not valid JSON/YAML (``json.JSONDecodeError``,
            ``yaml.YAMLError`` is re-raised as ``ValueError``) or its extension is unknown.
        pydantic.ValidationError: the content does not describe a valid configuration.
    """
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    raw: Any
    if suffix == ".json":
        raw = json.loads(text)
    elif suffix in {".yaml", ".yml"}:
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML ({exc})") from exc
    else:
        raise ValueError(f"{path}: use a .json, .yaml or .yml file")
    return SimulatorConfig.model_validate(raw or {})
