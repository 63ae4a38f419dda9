"""What every provider adapter shares: the message it is given, the verdict it returns.

A provider module builds the provider's request from an :class:`OutboundMessage`, sends it
on the pooled :class:`httpx.AsyncClient` it was given, and classifies the answer into a
:class:`SendResult`:

- ``accepted``: the provider took the message (2xx); ``external_id`` is its message id.
- ``transient``: worth retrying with the same idempotency key: timeouts, connection
  errors, 408, 429, 5xx (and whatever else the provider documents as "try again").
- ``permanent``: retrying cannot help (other 4xx): the communication fails at once.

Adapters never raise for anything the network or the provider does; they raise
:class:`ProviderConfigError` only when the client's settings cannot be used at all.

The inbound half is pure too: a provider that receives delivery webhooks exports
``verify(request, settings)``, which checks an :class:`InboundRequest`'s signature with one
client's settings (raising :class:`WebhookRejected`), and ``parse(request)``, which turns the
verified request into :class:`~lqs.domain.events.DeliveryEvent` values (raising
:class:`WebhookMalformed`); the helpers below keep their checks identical.

The protocols say what :mod:`lqs.providers.registry` holds: a :class:`ProviderType` per
provider name (its channel, whether it is idempotent, where its settings are, how to build
its :class:`Provider`), and an :class:`InboundProvider` per provider that has webhooks. A
provider with a batch API is also a :class:`BatchProvider`. Every adapter class is an
:class:`HttpProvider`, which gives it what they all did alike (the pooled client, its
settings by name, ``build``, a POST whose failures are a :class:`SendResult`).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import json
import time
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Self, runtime_checkable
from uuid import UUID

import httpx

from lqs.domain.delivery import DeliverySettings, Verdict
from lqs.domain.events import DeliveryEvent, EventKind
from lqs.errors import ConfigurationError, InputError

SECRET_KEYS = frozenset(
    {"api_key", "apikey", "auth_token", "authorization", "password", "secret", "token"}
)
"""Keys whose values are replaced by ``"[redacted]"`` before a response body is stored."""


@dataclass(frozen=True)
class OutboundMessage:
    """One communication as the dispatcher hands it to a provider.

    ``recipient`` is an email address, an E.164 number, a push subscription's endpoint or
    a webhook URL, by channel. ``headers`` are extra message headers (email only, e.g.
    ``List-Unsubscribe``). ``metadata`` travels with the message where the provider allows
    (SendGrid ``custom_args``, Resend tags) so that delivery events can be matched.
    """

    communication_id: UUID
    client_id: UUID
    lead_id: UUID
    channel: str
    recipient: str
    subject: str | None
    content: str | None
    headers: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SendResult:
    """A provider's answer to one message, classified."""

    verdict: Verdict
    http_status: int | None = None
    external_id: str | None = None
    response: Any = None
    """The provider's response body (JSON when it is JSON), secrets stripped."""
    error_code: str | None = None
    error_message: str | None = None
    retry_after: float | None = None
    """Seconds the provider asked us to wait (``Retry-After``), if it said."""
    rate_limited: bool = False
    """The provider said its limit is used up (429, or ``ratelimit-remaining: 0``)."""
    recipient_gone: bool = False
    """The destination no longer exists (push 404/410, webhook 410): stop using it."""

    @property
    def accepted(self) -> bool:
        return self.verdict is Verdict.ACCEPTED


class ProviderConfigError(ConfigurationError, ValueError):
    """The client's settings for this provider are missing or unusable."""


class WebhookRejected(InputError):
    """The request is not a genuine webhook from this provider: answer 401, change nothing.

    ``reason`` is short text safe to return to the caller (``"no signature matched"``,
    ``"missing header svix-signature"``); it never contains a secret or an expected value.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WebhookMalformed(InputError):
    """Signed correctly but not the documented shape: answer 400.

    ``reason`` says what is wrong (``"event 2 has no sg_event_id"``), safe to return.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class InboundRequest:
    """A delivery webhook as received, before anything in it is trusted.

    ``url`` is the path and query as received (``/webhooks/twilio?lqs_id=…``);
    ``public_base_url`` the service's public address, which the provider called
    (:attr:`public_url` is the two joined). ``tolerance`` is how far a signed timestamp may
    be from the clock, in seconds.
    """

    body: bytes
    headers: Mapping[str, str]
    query: Mapping[str, str]
    url: str
    public_base_url: str
    tolerance: float = 300.0

    @property
    def public_url(self) -> str:
        """The URL the provider called, as it signed it."""
        return self.public_base_url.rstrip("/") + self.url


@dataclass(frozen=True)
class AdapterOptions:
    """What the dispatcher's settings say about every provider adapter."""

    timeout: float = 15.0
    allow_private: bool = False
    """Let tenant-given URLs (webhooks, push endpoints) reach loopback and private addresses
    (the local simulator)."""


class ClientFactory(Protocol):
    """Makes the pooled HTTP client a provider sends on (one per provider).

    ``trust_env=False``: no proxy from the environment (for providers that connect to an
    address they checked, which a proxy would check the certificate against instead).
    """

    def __call__(self, *, trust_env: bool = True) -> httpx.AsyncClient: ...


class Provider(Protocol):
    """A provider adapter: one instance per provider per process, shared by all clients."""

    name: ClassVar[str]
    channel: ClassVar[str]

    async def send(self, settings: Any, message: OutboundMessage) -> SendResult:
        """Send ``message`` with the client's ``settings`` for this provider; never raises
        for network or provider failures."""
        ...


@runtime_checkable
class BatchProvider(Protocol):
    """A provider with a batch API: several messages of one client in one request.

    The request is built once (:meth:`batch_body`) and stored before it is sent, so that
    every retry sends the same bytes under the same key (see
    :func:`lqs.db.dispatch.store_claimed_batches`).
    """

    max_batch: ClassVar[int]

    def batch_body(self, settings: Any, messages: list[OutboundMessage]) -> str:
        """The batch request's body for ``messages`` (2 to :attr:`max_batch`).

        Raises:
            ProviderConfigError: a message or the settings cannot be used.
        """
        ...

    async def send_batch(self, settings: Any, body: str, count: int, key: str) -> list[SendResult]:
        """POST ``body`` (``count`` messages) under the idempotency key ``key``; one result
        per message, in order. Never raises for network or provider failures."""
        ...


class ProviderType(Protocol):
    """What the registry knows of a provider before any client is built."""

    name: ClassVar[str]
    channel: ClassVar[str]
    idempotent: ClassVar[bool]
    """A repeated request (same key) has no second effect. Attempts of providers without
    it are recorded as started before the request is made."""
    accepted_is_delivered: ClassVar[bool]
    """The provider's acceptance is the recipient's own answer (an outbound webhook: the
    receiver answered 2xx), so an accepted message is ``delivered`` at once; no delivery
    event will ever follow. Otherwise accepted means ``sent``."""

    @staticmethod
    def settings_of(delivery: DeliverySettings) -> Any | None:
        """This provider's settings in a client's delivery settings, None if not set."""
        ...

    @classmethod
    def build(cls, clients: ClientFactory, options: AdapterOptions) -> Provider:
        """The adapter the dispatcher sends with."""
        ...


class InboundProvider(Protocol):
    """A provider's delivery webhooks: the same two functions for every provider."""

    def verify(self, request: InboundRequest, settings: DeliverySettings) -> None:
        """Check ``request``'s signature with one client's delivery settings.

        Raises:
            WebhookRejected: not signed by the provider for this client (or the client has
                no webhook credentials for it).
            ProviderConfigError: the client's credentials cannot be used at all.
        """
        ...

    def parse(self, request: InboundRequest) -> list[DeliveryEvent]:
        """The events of a verified request.

        Raises:
            WebhookMalformed: the body is not the provider's documented shape.
        """
        ...


class SignatureCheck(Protocol):
    """A provider's ``verify_webhook``: body and headers signed, with a timestamp, by one key."""

    def __call__(
        self, body: bytes, headers: Mapping[str, str], key: str, /, *, tolerance: float
    ) -> None: ...


def key_verifier(
    key_of: Callable[[DeliverySettings], str | None], missing: str, check: SignatureCheck
) -> Callable[[InboundRequest, DeliverySettings], None]:
    """``verify`` for a provider that signs each webhook's body and timestamp with one key
    per client (Resend, SendGrid): the key ``key_of`` finds in the client's settings, or
    :class:`WebhookRejected` saying ``missing`` when the client has none.

    Raises:
        WebhookRejected: the client has no key, or the signature does not match it.
        ProviderConfigError: the key cannot be used.
    """

    def verify(request: InboundRequest, settings: DeliverySettings) -> None:
        key = key_of(settings)
        if key is None:
            raise WebhookRejected(missing)
        check(request.body, request.headers, key, tolerance=request.tolerance)

    return verify


class HttpProvider:
    """What every adapter class does alike: it sends on the one pooled client it is built
    with, and finds its settings under its own name in a client's delivery settings (the
    registry's key). Subclasses declare ``name``, ``channel`` and ``idempotent``
    (:class:`ProviderType`; ``accepted_is_delivered`` is False unless they say so) and
    ``send`` (:class:`Provider`)."""

    name: ClassVar[str]
    accepted_is_delivered: ClassVar[bool] = False

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    @classmethod
    def settings_of(cls, delivery: DeliverySettings) -> Any | None:
        return getattr(delivery, cls.name)

    @classmethod
    def build(cls, clients: ClientFactory, options: AdapterOptions) -> Self:
        return cls(clients())

    async def _post(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
        data: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> httpx.Response | SendResult:
        """POST on the pooled client: the answer, or the result of a request that got none
        (:func:`transport_failure`)."""
        try:
            return await self._http.post(
                url,
                headers=headers,
                json=json,
                content=content,
                data=data,
                auth=httpx.USE_CLIENT_DEFAULT if auth is None else auth,
            )
        except httpx.HTTPError as exc:
            return transport_failure(exc)


def redact(value: Any) -> Any:
    """A copy of a JSON value with the values of :data:`SECRET_KEYS` replaced."""
    if isinstance(value, Mapping):
        return {
            k: "[redacted]" if str(k).lower() in SECRET_KEYS else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    Returns None for a missing or unreadable header; never a negative number.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def body_of(response: httpx.Response) -> Any:
    """The response body as JSON if it is JSON, else as text (None if empty), redacted."""
    if not response.content:
        return None
    try:
        return redact(response.json())
    except ValueError:
        return response.text[:2000]


def classify_status(
    response: httpx.Response,
    *,
    error_code: str | None = None,
    error_message: str | None = None,
    external_id: str | None = None,
    transient_codes: frozenset[str] = frozenset(),
) -> SendResult:
    """The common HTTP classification: 2xx accepted; 408, 429 and 5xx transient (or an
    ``error_code`` in ``transient_codes``); any other status permanent."""
    status = response.status_code
    body = body_of(response)
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    exhausted = response.headers.get("ratelimit-remaining", "").strip() == "0"
    if 200 <= status < 300:
        return SendResult(
            Verdict.ACCEPTED,
            status,
            external_id=external_id,
            response=body,
            rate_limited=exhausted,
            retry_after=retry_after if exhausted else None,
        )
    transient = status in (408, 429) or status >= 500 or error_code in transient_codes
    return SendResult(
        Verdict.TRANSIENT if transient else Verdict.PERMANENT,
        status,
        response=body,
        error_code=error_code or str(status),
        error_message=error_message or f"HTTP {status}",
        retry_after=retry_after,
        rate_limited=status == 429 or exhausted,
    )


def transport_failure(exc: httpx.HTTPError) -> SendResult:
    """A request that got no usable answer: timeouts and connection errors are transient;
    a request we could not even build (a malformed header, say) is permanent."""
    if isinstance(exc, httpx.LocalProtocolError | httpx.UnsupportedProtocol):
        detail = str(exc) or type(exc).__name__
        return SendResult(
            Verdict.PERMANENT, None, error_code="invalid_request", error_message=detail
        )
    if isinstance(exc, httpx.TimeoutException):
        code = "timeout"
    elif isinstance(exc, httpx.RemoteProtocolError):
        code = "connection_dropped"
    else:
        code = "connection_error"
    detail = str(exc) or type(exc).__name__
    return SendResult(Verdict.TRANSIENT, None, error_code=code, error_message=f"{code}: {detail}")


def refused(code: str, reason: str) -> SendResult:
    """A message refused before any request was made (it could never be sent as it is)."""
    return SendResult(Verdict.PERMANENT, None, error_code=code, error_message=reason)


def bearer(api_key: str, setting: str) -> str:
    """The ``Authorization: Bearer`` value for an API key from the setting ``setting``.

    Raises:
        ProviderConfigError: the key is empty or holds characters a header cannot carry
            (httpx would refuse the header before sending, which would look like a
            network error and be retried, though no retry can ever succeed).
    """
    key = api_key.strip()
    if not key or not (key.isascii() and key.isprintable()):
        raise ProviderConfigError(
            f"{setting}: the API key is empty or holds control or non-ASCII characters"
        )
    return f"Bearer {key}"


def answer_fields(
    response: httpx.Response, provider: str, *, id_key: str, code_key: str
) -> tuple[str | None, str | None, str | None]:
    """From a JSON answer: (error code, error message, external id).

    On success only the id (``body[id_key]``) is set; on failure the provider's code
    (``body[code_key]``) and ``"<provider> <status> <code>: <message>"``. A body that is
    not a JSON object gives nothing, and the caller falls back to the HTTP status.
    """
    try:
        data = response.json()
    except ValueError:
        return None, None, None
    if not isinstance(data, dict):
        return None, None, None
    if response.is_success:
        found = data.get(id_key)
        return None, None, str(found) if found else None
    code = data.get(code_key)
    code = None if code in (None, "") else str(code)
    message = data.get("message")
    text = f"{provider} {response.status_code} {code}: {message}" if code or message else None
    return code, text, None


def lowercase_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` with lower-case names (HTTP header names are case-insensitive)."""
    return {str(name).lower(): value for name, value in headers.items()}


def required_header(headers: Mapping[str, str], name: str) -> str:
    """The value of header ``name`` in ``headers`` (see :func:`lowercase_headers`).

    Raises:
        WebhookRejected: the header is missing or empty.
    """
    value = headers.get(name.lower())
    if not isinstance(value, str) or not value.strip():
        raise WebhookRejected(f"missing header {name}")
    return value.strip()


def check_timestamp(
    value: str, header: str, *, now: float | None = None, tolerance: float = 300.0
) -> None:
    """Check a signed Unix timestamp (whole seconds) against the clock: at most
    ``tolerance`` seconds old or ahead (exactly ``tolerance`` is accepted).

    Raises:
        WebhookRejected: ``value`` is not a number of seconds, or is out of tolerance.
    """
    if not (value.isascii() and value.isdigit() and len(value) <= 15):
        raise WebhookRejected(f"header {header} is not a Unix timestamp")
    current = time.time() if now is None else now
    if abs(current - int(value)) > tolerance:
        raise WebhookRejected(f"timestamp outside the {tolerance:g} s tolerance")


def webhook_json(body: bytes) -> Any:
    """The JSON value of a webhook's body.

    Raises:
        WebhookMalformed: the body is not UTF-8 JSON (or nests too deeply to read).
    """
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise WebhookMalformed("the body is not JSON") from None


def optional_text(container: Mapping[str, Any], key: str, where: str) -> str | None:
    """``container[key]`` as text: None if absent or null; a number becomes its decimal text.

    Raises:
        WebhookMalformed: the value is something else (an object, a list, a boolean).
    """
    value = container.get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise WebhookMalformed(f"{where}{key} is not a string")


def communication_id_in(value: Any) -> UUID | None:
    """Our communication id carried by an event, if ``value`` is one; None otherwise (an
    event with a mangled id is still an event: it is matched by message id instead)."""
    if not isinstance(value, str):
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


def unpadded_base64(text: str) -> bytes:
    """The bytes of standard base64 ``text`` whose ``=`` padding may be left out (webhook
    secrets are copied without it); empty if ``text`` is not base64."""
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return b""


def lenient_event(
    parse: Callable[[], DeliveryEvent],
    *,
    provider: str,
    event_id: str,
    raw_type: str,
    payload: dict[str, Any],
    known: Container[str],
) -> DeliveryEvent:
    """The event ``parse()`` makes; or, if it finds the event malformed and ``raw_type`` is
    not one of the ``known`` types (a type added after the provider's module was written),
    an ``OTHER`` event that keeps ``payload`` whatever its shape.

    Raises:
        WebhookMalformed: an event of a known type is malformed.
    """
    try:
        return parse()
    except WebhookMalformed:
        if raw_type in known:
            raise
        return DeliveryEvent(provider, event_id, EventKind.OTHER, raw_type, None, payload=payload)
