"""Twilio (SMS): form-encoded ``POST /2010-04-01/Accounts/{sid}/Messages.json``.

Twilio documents no idempotency key, so a crash between Twilio's 201 and our record can
send an SMS twice; the window is one HTTP answer long (``docs/ARCHITECTURE.md``). The
status callback URL, if configured, makes Twilio report delivery to our webhook; it
carries our communication id (``?lqs_id=…``, covered by Twilio's signature), so a
callback for a send we did not get to record still finds its communication, and the
retry after the crash finds it settled and sends nothing.

Status callbacks are signed with the account's auth token: :func:`verify` checks
``X-Twilio-Signature`` (:func:`verify_webhook`), and :func:`parse` turns the form into a
:class:`DeliveryEvent`. Nothing in the signature is a time, so a replay cannot be told from
a retry: the event id ``MessageSid:MessageStatus`` makes both harmless.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

from lqs.domain.delivery import DeliverySettings, TwilioSettings
from lqs.domain.events import DeliveryEvent, EventKind
from lqs.providers.base import (
    HttpProvider,
    InboundRequest,
    OutboundMessage,
    ProviderConfigError,
    SendResult,
    WebhookMalformed,
    WebhookRejected,
    answer_fields,
    classify_status,
    refused,
)

SIGNATURE_HEADER = "X-Twilio-Signature"

COMMUNICATION_ID_PARAM = "lqs_id"
"""The status callback URL's query parameter carrying our communication id."""

MAX_BODY = 1600
"""Twilio's limit on a message body, in characters."""

# Twilio error codes that mean "try again later" although the status is a 4xx.
_TRANSIENT_CODES = frozenset({"20429", "14107", "30001"})


class TwilioProvider(HttpProvider):
    """Sends SMS through Twilio's Messages API (or the simulator)."""

    name: ClassVar[str] = "twilio"
    channel: ClassVar[str] = TwilioSettings.channel
    idempotent: ClassVar[bool] = False

    def form(self, settings: TwilioSettings, message: OutboundMessage) -> dict[str, str]:
        """The form fields Twilio receives for ``message``."""
        form = {"To": message.recipient, "Body": message.content or ""}
        if settings.messaging_service_sid is not None:
            form["MessagingServiceSid"] = settings.messaging_service_sid
        else:
            assert settings.from_number is not None  # the settings model requires one
            form["From"] = settings.from_number
        if settings.status_callback_url is not None:
            form["StatusCallback"] = callback_url(
                settings.status_callback_url, message.communication_id
            )
        return form

    async def send(self, settings: TwilioSettings, message: OutboundMessage) -> SendResult:
        """POST the message; the external id is the message ``sid`` (``SM…``)."""
        if not message.content:
            return refused("invalid_message", "an SMS needs a body")
        if len(message.content) > MAX_BODY:
            return refused("invalid_message", f"an SMS body is at most {MAX_BODY} characters")
        url = (
            f"{settings.base_url.rstrip('/')}/2010-04-01/Accounts/"
            f"{settings.account_sid}/Messages.json"
        )
        response = await self._post(
            url,
            data=self.form(settings, message),
            auth=(settings.account_sid, settings.auth_token.get_secret_value()),
        )
        if isinstance(response, SendResult):
            return response
        code, text, sid = answer_fields(response, "twilio", id_key="sid", code_key="code")
        return classify_status(
            response,
            error_code=code,
            error_message=text,
            external_id=sid,
            transient_codes=_TRANSIENT_CODES,
        )


_KINDS = {
    "queued": EventKind.ACCEPTED,
    "accepted": EventKind.ACCEPTED,
    "sending": EventKind.ACCEPTED,
    "sent": EventKind.ACCEPTED,
    "delivered": EventKind.DELIVERED,
    "undelivered": EventKind.FAILED,
    "failed": EventKind.FAILED,
    "read": EventKind.ENGAGED,
}
"""The documented message statuses; any other is ``OTHER``."""

_DEFAULT_PORTS = {"https": 443, "http": 80}


def verify(request: InboundRequest, settings: DeliverySettings) -> None:
    """Check a status callback with the client's auth token (:func:`verify_webhook`), over
    the public URL Twilio called; its ``AccountSid``, if any, must be the client's.

    Raises:
        WebhookRejected: Twilio is not configured for the client, the account differs, or
            the signature does not match.
        ProviderConfigError: the auth token is empty.
    """
    if settings.twilio is None:
        raise WebhookRejected("Twilio is not configured for this client")
    params = form_fields(request.body)
    account = dict(params).get("AccountSid")
    if account is not None and account != settings.twilio.account_sid:
        raise WebhookRejected("AccountSid does not match this client's account")
    verify_webhook(
        request.public_url,
        params,
        request.headers.get(SIGNATURE_HEADER),
        settings.twilio.auth_token.get_secret_value(),
    )


def parse(request: InboundRequest) -> list[DeliveryEvent]:
    """The event of a verified status callback (:func:`parse_webhook`); our communication
    id comes from the callback URL's query, which the signature covers."""
    return parse_webhook(dict(form_fields(request.body)), communication_id_in_query(request.query))


def form_fields(body: bytes) -> list[tuple[str, str]]:
    """The fields of a form-encoded body, in order (none if it is not UTF-8)."""
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        return []


def verify_webhook(
    url: str, params: Sequence[tuple[str, str]], signature: str | None, auth_token: str
) -> None:
    """Check a status callback's ``X-Twilio-Signature`` (``signature``).

    The signature is base64 HMAC-SHA1, keyed with ``auth_token``, of ``url`` (the public URL
    Twilio called, query included) followed by every POST parameter's name and value,
    sorted by name and then value. Like Twilio's own ``RequestValidator``, the URL is also
    tried with its scheme's default port added (if it has none) or removed (if it has it).

    Raises:
        WebhookRejected: the signature is missing or matches none of those URLs.
        ProviderConfigError: ``auth_token`` is empty.
    """
    if not auth_token:
        raise ProviderConfigError("twilio.auth_token is empty")
    if not signature or not signature.strip():
        raise WebhookRejected(f"missing header {SIGNATURE_HEADER}")
    given = signature.strip().encode("utf-8", "surrogatepass")
    key = auth_token.encode("utf-8", "surrogatepass")
    signed_params = "".join(name + value for name, value in sorted(params))
    matched = False
    for candidate in _url_variants(url):
        text = (candidate + signed_params).encode("utf-8", "surrogatepass")
        expected = base64.b64encode(hmac.new(key, text, hashlib.sha1).digest())
        matched |= hmac.compare_digest(expected, given)
    if not matched:
        raise WebhookRejected("no signature matched")


def parse_webhook(
    params: Mapping[str, str], communication_id: UUID | None = None
) -> list[DeliveryEvent]:
    """The event of a verified status callback (see :func:`verify_webhook`), as a list of
    one: ``event_id`` ``MessageSid:MessageStatus``, ``external_id`` ``MessageSid``,
    ``recipient`` ``To``, ``communication_id`` the one the callback URL carried
    (:func:`communication_id_in_query`). ``undelivered`` and ``failed`` carry
    ``ErrorCode``. Twilio sends no event time, so ``occurred_at`` is None. A status this
    module does not know is ``OTHER``, never an error.

    Raises:
        WebhookMalformed: ``MessageSid`` or ``MessageStatus`` is missing.
    """
    sid = _required(params, "MessageSid")
    status = _required(params, "MessageStatus")
    kind = _KINDS.get(status.lower(), EventKind.OTHER)
    error_code = reason = None
    if kind is EventKind.FAILED:
        code = params.get("ErrorCode")
        error_code = code if isinstance(code, str) and code.strip() else None
        reason = f"{status} (ErrorCode {error_code})" if error_code else status
    to = params.get("To")
    return [
        DeliveryEvent(
            provider="twilio",
            event_id=f"{sid}:{status}",
            kind=kind,
            raw_type=status,
            external_id=sid,
            recipient=to if isinstance(to, str) and to else None,
            reason=reason,
            error_code=error_code,
            communication_id=communication_id,
            payload=dict(params),
        )
    ]


def callback_url(base: str, communication_id: UUID) -> str:
    """``base`` with our communication id added to its query (any earlier one replaced)."""
    parts = urlsplit(base)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != COMMUNICATION_ID_PARAM]
    query.append((COMMUNICATION_ID_PARAM, str(communication_id)))
    return urlunsplit(parts._replace(query=urlencode(query)))


def communication_id_in_query(query: Mapping[str, str]) -> UUID | None:
    """Our communication id from a status callback URL's (signed) query, if it has one."""
    value = query.get(COMMUNICATION_ID_PARAM)
    try:
        return UUID(value) if value else None
    except ValueError:
        return None


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value.strip():
        raise WebhookMalformed(f"{name} is missing")
    return value


def _url_variants(url: str) -> list[str]:
    """``url``, and ``url`` with its scheme's default port added or removed."""
    variants = [url]
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return variants
    default = _DEFAULT_PORTS.get(parts.scheme.lower())
    if default is None or not parts.hostname:
        return variants
    if port is None:
        netloc = f"{parts.netloc.removesuffix(':')}:{default}"
    elif port == default:
        netloc = parts.netloc.rsplit(":", 1)[0]
    else:
        return variants
    # Only the authority changes: the rest of the URL stays byte for byte as signed.
    variants.append(url.replace(f"//{parts.netloc}", f"//{netloc}", 1))
    return variants
