"""Twilio: ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``, as api.twilio.com does.

HTTP Basic ``AccountSid:AuthToken`` (401, code 20003), form-encoded parameters, latency and
injected faults, then validation with Twilio's error codes (21604 no ``To``, 21603 no
``From``, 21602 no ``Body``, 21617 body too long, 21211 invalid ``To``, 21212 invalid
``From``, …). An accepted message is recorded and answered 201 with the Message resource:
``status`` is ``queued``, or ``accepted`` when only a Messaging Service was given. With a
``StatusCallback``, its status callbacks are scheduled (:mod:`lqs.simulator.events`).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import math
import re
from datetime import UTC, datetime
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit
from uuid import uuid4

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lqs.simulator.addresses import is_e164, is_sms_sender, listed
from lqs.simulator.config import TwilioConfig
from lqs.simulator.events import schedule_delivery_events
from lqs.simulator.exchange import Exchange, provider_endpoint
from lqs.simulator.records import MessageRecord

API_VERSION = "2010-04-01"
MAX_BODY_CHARS = 1600
_ACCOUNT_SID = re.compile(r"^AC[0-9a-f]{32}$")
_SERVICE_SID = re.compile(r"^MG[0-9a-f]{32}$")
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


def error_response(status: int, code: int, message: str) -> JSONResponse:
    """Twilio's error body: ``{"code", "message", "more_info", "status"}``."""
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status,
    )


def fault_error(status: int) -> Response:
    """Twilio's answer for an injected error ``status`` (code ``20000 + status``)."""
    return error_response(status, 20000 + status, HTTPStatus(status).phrase)


def _unauthenticated() -> Response:
    response = error_response(401, 20003, "Authenticate")
    response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
    return response


def segment_count(body: str) -> int:
    """How many SMS segments ``body`` takes: GSM-7 (160, or 153 per part) or UCS-2 (70/67)."""
    if not body:
        return 1
    if all(char in _GSM7_BASIC or char in _GSM7_EXTENDED for char in body):
        septets = sum(2 if char in _GSM7_EXTENDED else 1 for char in body)
        return 1 if septets <= 160 else math.ceil(septets / 153)
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)


async def create_message(exchange: Exchange) -> Response:
    """``POST …/Messages.json``: authenticate, validate, record, answer 201."""
    config = exchange.state.config.twilio
    account_sid = exchange.request.path_params["account_sid"]
    credentials = _basic_credentials(exchange.request.headers.get("authorization"))
    if credentials is None or not _authenticated(credentials, account_sid, config):
        return _unauthenticated()
    params = {
        name: values[0]
        for name, values in parse_qs(
            exchange.body.decode("utf-8", errors="replace"), keep_blank_values=True
        ).items()
    }
    fault = await exchange.injected_fault(fault_error)
    if fault is not None:
        return fault
    refusal = _validate(params, config)
    if refusal is not None:
        return refusal
    resource = _message_resource(account_sid, params)
    # The auth token the message was sent with signs its status callbacks.
    _record(exchange, params, resource, auth_token=credentials[1])
    return await exchange.deliver(JSONResponse(resource, 201))


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return username, password


def _authenticated(credentials: tuple[str, str], account_sid: str, config: TwilioConfig) -> bool:
    username, password = credentials
    if username != account_sid or not password:
        return False
    if config.accounts:
        return config.accounts.get(username) == password
    return bool(_ACCOUNT_SID.match(username))


def _validate(params: dict[str, str], config: TwilioConfig) -> Response | None:
    to = params.get("To", "")
    sender = params.get("From", "")
    service = params.get("MessagingServiceSid", "")
    body = params.get("Body", "")
    if not to:
        return error_response(400, 21604, "A 'To' phone number is required.")
    if not sender and not service:
        return error_response(400, 21603, "A 'From' phone number is required.")
    if not body and not params.get("MediaUrl") and not params.get("ContentSid"):
        return error_response(400, 21602, "Message body is required.")
    if len(body) > MAX_BODY_CHARS:
        return error_response(
            400,
            21617,
            f"The concatenated message body exceeds the {MAX_BODY_CHARS} character limit.",
        )
    if not is_e164(to) or listed(to, config.invalid_recipients):
        return error_response(400, 21211, f"The 'To' number {to} is not a valid phone number.")
    if sender and (not is_sms_sender(sender) or listed(sender, config.invalid_senders)):
        return error_response(
            400,
            21212,
            f"The 'From' number {sender} is not a valid phone number, shortcode, or "
            "alphanumeric sender ID.",
        )
    if service and not _SERVICE_SID.match(service):
        return error_response(400, 21701, f"The Messaging Service Sid {service} is invalid.")
    if sender and sender == to:
        return error_response(400, 21266, "'To' and 'From' number cannot be the same")
    callback = params.get("StatusCallback")
    if callback is not None and not _is_http_url(callback):
        return error_response(400, 21609, f"The StatusCallback URL {callback} is not a valid URL.")
    return None


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _message_resource(account_sid: str, params: dict[str, str]) -> dict[str, object]:
    sid = "SM" + uuid4().hex
    now = email.utils.format_datetime(datetime.now(UTC).replace(microsecond=0))
    uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}.json"
    sender = params.get("From") or None
    body = params.get("Body", "")
    return {
        "account_sid": account_sid,
        "api_version": API_VERSION,
        "body": body,
        "date_created": now,
        "date_sent": None,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": sender,
        "messaging_service_sid": params.get("MessagingServiceSid") or None,
        "num_media": "1" if params.get("MediaUrl") else "0",
        "num_segments": str(segment_count(body)),
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued" if sender else "accepted",
        "subresource_uris": {
            "media": f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}/Media.json"
        },
        "to": params["To"],
        "uri": uri,
    }


def _record(
    exchange: Exchange, params: dict[str, str], resource: dict[str, object], *, auth_token: str
) -> None:
    state = exchange.state
    message = MessageRecord(
        id=state.next_id("msg"),
        provider="twilio",
        provider_message_id=str(resource["sid"]),
        sender=params.get("From") or None,
        recipients=[params["To"]],
        body=params.get("Body", ""),
        received_at=datetime.now(UTC),
        details={
            "account_sid": resource["account_sid"],
            "messaging_service_sid": resource["messaging_service_sid"],
            "status_callback": params.get("StatusCallback"),
            "status": resource["status"],
            "num_segments": resource["num_segments"],
            "params": params,
        },
        request=exchange.record,
    )
    state.messages.append(message)
    schedule_delivery_events(state, message, auth_token)


ROUTES = [
    Route(
        f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json",
        provider_endpoint("twilio", create_message),
        methods=["POST"],
    )
]
