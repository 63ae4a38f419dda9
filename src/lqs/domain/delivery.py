"""Delivery rules, pure: a client's provider settings, and what happens after an attempt.

:class:`DeliverySettings` is the ``delivery`` key of a client's settings: which provider
sends each channel, the credentials and base URLs (so the same code talks to the real
provider or to the simulator), and email failover. :func:`after_attempt` turns a
provider's verdict into the communication's next state: sent, retried later (exponential
backoff with full jitter, never sooner than the provider's ``Retry-After``), or failed.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Annotated, Any, ClassVar, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from lqs.domain.text import unstorable_text
from lqs.errors import ConfigurationError

_URL = r"^https?://[^\s/?#]+(/[^\s]*)?$"
_MAX_HOST_NAME = 253
_MAX_LABEL = 63
_LABEL = re.compile(r"[a-z0-9_-]+")


def host_problem(host: str) -> str | None:
    """Why ``host`` (as an http URL carries it: ASCII, IDNA-encoded) can never be
    connected to, or None. An IP literal, or a DNS name of at most 253 characters (a
    final dot aside) whose labels are 1 to 63 letters, digits, ``-`` or ``_``.

    Python's resolver raises ``UnicodeError`` (not ``OSError``) for an empty or over-long
    label, and a name no resolver could look up is not worth retrying: both are refused.
    """
    if ":" in host:
        try:
            ipaddress.IPv6Address(host.replace("%25", "%", 1))
        except ValueError:
            return f"host {host!r} is not an IPv6 address"
        return None
    name = host.lower().removesuffix(".")
    if not name:
        return "the host name is empty"
    if len(name) > _MAX_HOST_NAME:
        return f"the host name is over {_MAX_HOST_NAME} characters"
    for label in name.split("."):
        if not label:
            return f"the host name {host!r} has an empty label (a leading dot or two in a row)"
        if len(label) > _MAX_LABEL:
            return f"the host name has a label over {_MAX_LABEL} characters"
        if not _LABEL.fullmatch(label):
            return (
                f"the host name {host[:80]!r} holds characters other than letters, digits, "
                "'-' and '_'"
            )
    return None


def http_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be the destination of an HTTP request, or None: it must parse
    as httpx parses it (IDNA included), be http or https, and have a :func:`host_problem`-free
    host. The settings refuse such URLs so the adapters never meet them."""
    # httpx, not urllib: the check must read the URL exactly as the adapters will send it.
    import httpx

    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        return f"is not a URL: {exc}"
    if parsed.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL"
    host = parsed.raw_host.decode("ascii", "replace")
    if not host:
        return "has no host"
    return host_problem(host)


def _checked_url(url: str) -> str:
    problem = http_url_problem(url)
    if problem is not None:
        raise ValueError(problem)
    return url


HttpUrl = Annotated[str, AfterValidator(_checked_url)]
"""A URL requests can be sent to (see :func:`http_url_problem`)."""
_WHSEC = re.compile(r"whsec_[A-Za-z0-9+/]+={0,2}")


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderSettings(_Settings):
    """One provider's settings: a :class:`DeliverySettings` key of the provider's name."""

    channel: ClassVar[str]
    """The channel the provider carries (``email``, ``sms``, ``push``, ``webhook``)."""


class ResendSettings(ProviderSettings):
    channel: ClassVar[str] = "email"
    api_key: SecretStr
    from_address: str = Field(min_length=3, max_length=320)
    base_url: HttpUrl = Field(default="https://api.resend.com", pattern=_URL)
    webhook_secret: SecretStr | None = None
    """The signing secret of the client's Resend webhook endpoint (``whsec_…``), used to
    check ``POST /webhooks/resend/{client_id}``."""

    @field_validator("webhook_secret")
    @classmethod
    def _whsec(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _WHSEC.fullmatch(value.get_secret_value()):
            raise ValueError("must be whsec_ followed by base64")
        return value


class SendGridSettings(ProviderSettings):
    channel: ClassVar[str] = "email"
    api_key: SecretStr
    from_address: str = Field(min_length=3, max_length=320)
    base_url: HttpUrl = Field(default="https://api.sendgrid.com", pattern=_URL)
    webhook_public_key: str | None = Field(default=None, pattern=r"^[A-Za-z0-9+/=\s]{40,400}$")
    """The Event Webhook's verification key as SendGrid shows it (base64 DER
    SubjectPublicKeyInfo, ECDSA P-256), used to check ``POST /webhooks/sendgrid/{client_id}``."""


class TwilioSettings(ProviderSettings):
    channel: ClassVar[str] = "sms"
    account_sid: str = Field(pattern=r"^AC[0-9a-zA-Z]{1,64}$")
    auth_token: SecretStr
    from_number: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{1,14}$")
    messaging_service_sid: str | None = Field(default=None, pattern=r"^MG[0-9a-zA-Z]{1,64}$")
    status_callback_url: HttpUrl | None = Field(default=None, pattern=_URL)
    base_url: HttpUrl = Field(default="https://api.twilio.com", pattern=_URL)

    @model_validator(mode="wrap")
    @classmethod
    def _sender(
        cls, data: Any, handler: ModelWrapValidatorHandler[TwilioSettings]
    ) -> TwilioSettings:
        # A wrap validator, not an "after" one: an "after" check runs only once every field
        # is valid, so a file with a bad account_sid and no sender would take two rounds.
        unclear = isinstance(data, Mapping) and (data.get("from_number") is None) == (
            data.get("messaging_service_sid") is None
        )
        problem = PydanticCustomError(
            "sender", "set exactly one of from_number and messaging_service_sid"
        )
        try:
            settings = handler(data)
        except ValidationError as exc:
            if not unclear:
                raise
            unclear_sender: InitErrorDetails = {"type": problem, "loc": (), "input": data}
            raise ValidationError.from_exception_data(
                exc.title, [*_init_errors(exc), unclear_sender]
            ) from None
        if unclear:
            raise problem
        return settings


def _init_errors(exc: ValidationError) -> list[InitErrorDetails]:
    """``exc``'s errors in the form :meth:`ValidationError.from_exception_data` takes."""
    return [
        {"type": err["type"], "loc": err["loc"], "input": err["input"], "ctx": err.get("ctx", {})}
        for err in exc.errors()
    ]


class WebPushSettings(ProviderSettings):
    channel: ClassVar[str] = "push"
    vapid_private_key: SecretStr
    """The VAPID private key: PEM, or the base64url raw key ``py_vapid`` accepts."""
    vapid_subject: str = Field(pattern=r"^(mailto:|https://)\S+$")
    ttl: int = Field(default=86_400, ge=0, le=2_419_200)


class WebhookSettings(ProviderSettings):
    channel: ClassVar[str] = "webhook"
    url: HttpUrl = Field(pattern=_URL, max_length=255)
    secret: SecretStr
    """``whsec_`` + base64 of 24 to 64 random bytes (Standard Webhooks)."""


class EmailRouting(_Settings):
    primary: str = "resend"
    secondary: str | None = None
    failover_after: int = Field(default=3, ge=1, le=100)
    """Consecutive transient failures of the primary after which email goes to the
    secondary (per worker process)."""

    @field_validator("primary", "secondary")
    @classmethod
    def _email_provider(cls, value: str | None) -> str | None:
        names = sorted(n for n, kind in provider_settings().items() if kind.channel == "email")
        if value is not None and value not in names:
            raise ValueError(f"must be one of {', '.join(names)}")
        return value

    @model_validator(mode="after")
    def _distinct(self) -> EmailRouting:
        if self.secondary == self.primary:
            raise ValueError("secondary must differ from primary")
        return self


class DeliverySettings(_Settings):
    """The ``delivery`` key of a client's settings."""

    email: EmailRouting = EmailRouting()
    resend: ResendSettings | None = None
    sendgrid: SendGridSettings | None = None
    twilio: TwilioSettings | None = None
    webpush: WebPushSettings | None = None
    webhook: WebhookSettings | None = None


@cache
def provider_settings() -> dict[str, type[ProviderSettings]]:
    """Each provider's settings model, by its :class:`DeliverySettings` key."""
    found: dict[str, type[ProviderSettings]] = {}
    for name, info in DeliverySettings.model_fields.items():
        for kind in get_args(info.annotation):
            if isinstance(kind, type) and issubclass(kind, ProviderSettings):
                found[name] = kind
    return found


class DeliverySettingsError(ConfigurationError, ValueError):
    """Raised by :func:`parse_delivery_settings` when a client's delivery settings are
    invalid.

    ``problems`` lists every problem found, one line each, naming its key
    (``delivery.twilio.auth_token: required``); ``str()`` joins them.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def parse_delivery_settings(data: Mapping[str, object] | None) -> DeliverySettings:
    """Validate the ``delivery`` settings of a client (None or absent: the defaults).

    Raises:
        DeliverySettingsError: listing every problem, each naming its key, e.g.
            ``delivery.resend.api_key: required``.
    """
    problems = list(_unstorable(data or {}, ("delivery",)))
    try:
        settings = DeliverySettings.model_validate(data or {})
    except ValidationError as exc:
        problems = [_problem(err) for err in exc.errors()] + problems
    if problems:
        raise DeliverySettingsError(problems)
    return settings


def _key_text(part: object) -> str:
    """A key as a problem shows it: as is, or quoted when it holds unprintable characters."""
    text = str(part)
    return text if text.isprintable() else repr(text)


def _unstorable(value: object, loc: tuple[str, ...]) -> Iterator[str]:
    """A problem for each key or text in ``value`` that PostgreSQL's jsonb cannot store."""
    if isinstance(value, str):
        why = unstorable_text(value)
        if why is not None:
            yield f"{'.'.join(loc)}: text contains {why}, which cannot be stored"
    elif isinstance(value, Mapping):
        for key, item in value.items():
            why = unstorable_text(key) if isinstance(key, str) else None
            if why is not None:
                yield f"{'.'.join(loc)}: the key {key!r} contains {why}, which cannot be stored"
            yield from _unstorable(item, (*loc, _key_text(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _unstorable(item, (*loc, str(index)))


def _problem(err: ErrorDetails) -> str:
    """One line for one validation error: the key, then what is wrong with it in words an
    operator editing a YAML file can act on."""
    loc = err["loc"]
    key = ".".join(("delivery", *(_key_text(part) for part in loc)))
    kind = err["type"]
    if kind == "missing":
        why = "required"
    elif kind == "extra_forbidden":
        known = _model_at(loc[:-1])
        why = "unknown key" + (
            f"; expected one of {', '.join(known.model_fields)}" if known else ""
        )
    elif kind == "string_pattern_mismatch":
        # Patterns guard identifiers, numbers and URLs, never secrets: the value may show.
        shown = str(err["input"])
        shown = shown if len(shown) <= _SHOWN else shown[: _SHOWN - 3] + "..."
        why = f"{shown!r} does not match the pattern {err.get('ctx', {}).get('pattern')}"
    elif kind in ("model_type", "dict_type"):
        why = "expected a mapping of settings"
    else:
        why = err["msg"].removeprefix("Value error, ")
    return f"{key}: {why}"


_SHOWN = 60
"""The longest value a problem quotes."""


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The settings model found at ``loc`` inside :class:`DeliverySettings`, if any."""
    model: type[BaseModel] = DeliverySettings
    for part in loc:
        info = model.model_fields.get(str(part))
        if info is None:
            return None
        found = [
            kind
            for kind in (info.annotation, *get_args(info.annotation))
            if isinstance(kind, type) and issubclass(kind, BaseModel)
        ]
        if not found:
            return None
        model = found[0]
    return model


def provider_for(
    channel: str, settings: DeliverySettings, *, primary_failing: bool = False
) -> str | None:
    """Which provider sends ``channel`` for this client, or None if none is configured.

    Email goes to the primary unless ``primary_failing`` and a secondary is configured.
    """
    if channel == "email":
        routing = settings.email
        chosen = routing.primary
        if primary_failing and routing.secondary is not None:
            chosen = routing.secondary
        return chosen if getattr(settings, chosen) is not None else None
    for name, kind in provider_settings().items():
        if kind.channel == channel and getattr(settings, name) is not None:
            return name
    return None


MASK = "••••"
"""What a masked secret shows instead of its characters."""
_FORMAT_PREFIXES = ("whsec_", "re_", "SG.")
"""Prefixes that say what kind of secret a value is, not part of the secret."""
_SHOWN_TAIL = 4
_TAIL_AFTER = 16
"""A secret shows its last characters only when at least this many more are hidden."""
_SHORTENED = frozenset({"webhook_public_key"})
"""Settings that are not secret but too long to read: shown by their ends."""


def mask_secret(value: object) -> str:
    """``value`` as a secret is shown: its format prefix (``re_``, ``SG.``, ``whsec_``),
    :data:`MASK`, then its last 4 characters when it is one word with at least 16 more
    hidden; anything else (short, PEM, not text) is the prefix and :data:`MASK` alone."""
    if not isinstance(value, str):
        return MASK
    prefix = next((p for p in _FORMAT_PREFIXES if value.startswith(p)), "")
    rest = value[len(prefix) :]
    one_word = rest and not any(c.isspace() for c in rest)
    tail = rest[-_SHOWN_TAIL:] if one_word and len(rest) >= _TAIL_AFTER + _SHOWN_TAIL else ""
    return f"{prefix}{MASK}{tail}"


def _shortened(value: object) -> object:
    if isinstance(value, str) and len(value) > 24:
        return f"{value[:8]}…{value[-8:]}"
    return value


def mask_unknown(value: object) -> object:
    """``value`` with every leaf masked and its shape kept: for settings whose meaning
    LQS does not know, so cannot tell secret from not."""
    if isinstance(value, Mapping):
        return {str(k): mask_unknown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_unknown(v) for v in value]
    if value is None or isinstance(value, bool):
        return value
    return mask_secret(value)


def _secret_fields(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(
        name
        for name, info in model.model_fields.items()
        if SecretStr in (info.annotation, *get_args(info.annotation))
    )


def masked_delivery(data: Mapping[str, object]) -> dict[str, object]:
    """Stored delivery settings (valid or not) as they may be shown: every secret setting
    (``SecretStr`` in its provider's model: API keys, auth tokens, signing secrets, VAPID
    private keys) through :func:`mask_secret`, long public keys shortened, the other known
    settings as they are, and anything unknown through :func:`mask_unknown`."""
    models: dict[str, type[BaseModel]] = {"email": EmailRouting, **provider_settings()}
    order = list(DeliverySettings.model_fields)
    shown: dict[str, object] = {}
    # The models' order (email routing, then each provider), unknown keys last: jsonb
    # keeps its keys by length, which reads as no order at all.
    for name, value in sorted(
        data.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order)
    ):
        model = models.get(name)
        if model is None or not isinstance(value, Mapping):
            shown[name] = mask_unknown(value)
            continue
        secret = _secret_fields(model)
        shown[name] = {
            str(key): (
                mask_secret(item)
                if key in secret
                else _shortened(item)
                if key in _SHORTENED
                else item
                if key in model.model_fields and not isinstance(item, Mapping | list)
                else mask_unknown(item)
            )
            for key, item in sorted(value.items(), key=lambda item: _field_order(model, item[0]))
        }
    return shown


def _field_order(model: type[BaseModel], key: object) -> int:
    fields = list(model.model_fields)
    return fields.index(key) if key in fields else len(fields)


class Verdict(StrEnum):
    """A provider's answer to one message, classified (see :mod:`lqs.providers.base`)."""

    ACCEPTED = "accepted"
    """The provider took the message."""
    TRANSIENT = "transient"
    """Worth retrying with the same idempotency key (timeouts, 408, 429, 5xx)."""
    PERMANENT = "permanent"
    """Retrying cannot help: the communication fails at once."""


class NextStep(StrEnum):
    """What happens to a claimed communication next: :func:`after_attempt` decides
    ``sent``, ``retried`` or ``failed``; the dispatcher ends a message it does not send
    as ``rejected`` or ``settled``, or holds it back as ``deferred``."""

    SENT = "sent"
    RETRIED = "retried"
    FAILED = "failed"
    REJECTED = "rejected"
    """Not sent: no longer allowed (consent withdrawn, recipient suppressed)."""
    SETTLED = "settled"
    """Not sent: a delivery event had already moved the communication on."""
    DEFERRED = "deferred"
    """Not sent yet: outside its send window or over a deferring frequency cap; due again
    later, its retry count untouched (:mod:`lqs.domain.send_rules`)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, inside a horizon.

    The n-th retry (n from 1) waits a uniformly random time in ``[0, min(max_delay,
    base_delay * 2**(n-1))]``, but never less than the provider's ``Retry-After``. No retry
    is scheduled past ``horizon`` seconds after the message's first request to a provider
    (not its creation: a message a send window or a frequency cap held back for hours has
    made none): the default (23 h) ends inside Resend's 24-hour idempotency window, which
    starts with that request, so every retry of a message is still deduplicated by the
    provider.
    """

    base_delay: float = 30.0
    max_delay: float = 3_600.0
    horizon: float = 23 * 3_600.0

    def __post_init__(self) -> None:
        if self.base_delay <= 0 or self.max_delay < self.base_delay or self.horizon <= 0:
            raise ValueError("need 0 < base_delay <= max_delay and a positive horizon")

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds before retry number ``retry`` (1 for the first retry)."""
        cap = min(self.max_delay, self.base_delay * 2 ** min(retry - 1, 60))
        wait = rng.uniform(0, cap)
        return max(wait, retry_after or 0.0)


@dataclass(frozen=True)
class AttemptDecision:
    """What to write after an attempt."""

    step: NextStep
    retry_count: int
    delay: float | None = None
    """Seconds until the next attempt (RETRIED only)."""
    error_message: str | None = None


def after_attempt(
    verdict: Verdict,
    *,
    retry_count: int,
    max_retries: int,
    age: float,
    error_message: str | None,
    retry_after: float | None,
    policy: RetryPolicy,
    rng: random.Random,
) -> AttemptDecision:
    """The next state of a communication after one attempt.

    ``verdict`` is the provider's classified answer; ``retry_count`` the
    retries already made; ``age`` seconds since the communication was created. A transient
    failure counts one retry (``retry_count + 1``) and is retried unless that reaches past
    ``max_retries`` or the next attempt would fall past the policy's horizon; then, as for
    a permanent failure, the communication fails with the provider's message.
    """
    if verdict is Verdict.ACCEPTED:
        return AttemptDecision(NextStep.SENT, retry_count)
    message = error_message or "provider refused the message"
    if verdict is Verdict.PERMANENT:
        return AttemptDecision(NextStep.FAILED, retry_count, error_message=message)
    retries = retry_count + 1
    if retries > max_retries:
        return AttemptDecision(
            NextStep.FAILED,
            retry_count,
            error_message=f"gave up after {retry_count + 1} attempts: {message}",
        )
    wait = policy.delay(retries, retry_after, rng)
    if age + wait > policy.horizon:
        return AttemptDecision(
            NextStep.FAILED,
            retry_count,
            error_message=(
                f"gave up: the next attempt would fall past the {policy.horizon:g} s "
                f"retry horizon: {message}"
            ),
        )
    return AttemptDecision(NextStep.RETRIED, retries, delay=wait, error_message=message)
