"""Resend: ``POST /emails`` and ``POST /emails/batch``, answered as api.resend.com does.

Order of checks: API key (401/403), rate limit (429, when enforced), ``Idempotency-Key``
shape (400), JSON body (400), idempotency (replay, or 409), latency and injected faults,
field validation (422), verified domain (403), configured invalid recipients (422); then the
message is recorded and answered 200 ``{"id": …}``. Every answer carries the
``ratelimit-*`` headers. Only accepted requests keep their idempotency key, so a refused
request can be corrected and retried with the same key, as Resend documents. Each
recorded email has its delivery events scheduled (:mod:`lqs.simulator.events`); a replay
sends none.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple
from uuid import uuid4

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lqs.simulator.addresses import domain_of, listed, mailbox_address
from lqs.simulator.config import ResendConfig
from lqs.simulator.events import schedule_delivery_events
from lqs.simulator.exchange import Exchange, provider_endpoint
from lqs.simulator.records import MessageRecord
from lqs.simulator.state import IdempotencyEntry, RateStatus, StoredResponse

MAX_RECIPIENTS = 50
MAX_BATCH = 100
_ADDRESS_FORMAT = (
    "The email address needs to follow the `email@example.com` or "
    "`Name <email@example.com>` format."
)
_TAG = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_FAULT_ERRORS: dict[int, tuple[str, str]] = {
    400: ("validation_error", "We found an error with one or more fields in the request."),
    401: ("missing_api_key", "Missing API key in the authorization header."),
    403: ("invalid_api_key", "API key is invalid"),
    404: ("not_found", "The requested endpoint does not exist."),
    405: ("method_not_allowed", "Method is not allowed for the requested path."),
    409: (
        "concurrent_idempotent_requests",
        "Same idempotency key used while original request is still in progress.",
    ),
    422: ("validation_error", "We found an error with one or more fields in the request."),
    500: ("application_error", "An unexpected error occurred, please try again."),
}


class _Refusal(NamedTuple):
    status: int
    name: str
    message: str


@dataclass(frozen=True)
class _Email:
    sender: str
    from_field: str
    to: list[str]
    subject: str
    html: str | None
    text: str | None
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    reply_to: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    scheduled_at: str | None = None


def error_response(status: int, name: str, message: str) -> JSONResponse:
    """Resend's error body: ``{"statusCode", "message", "name"}``."""
    return JSONResponse({"statusCode": status, "message": message, "name": name}, status)


def fault_error(status: int) -> Response:
    """Resend's answer for an injected error ``status``."""
    if status == 429:
        return error_response(429, "rate_limit_exceeded", _rate_message(None))
    if status in _FAULT_ERRORS:
        return error_response(status, *_FAULT_ERRORS[status])
    if status >= 500:
        return error_response(status, "internal_server_error", "An unexpected error occurred.")
    return error_response(status, "validation_error", "The request could not be processed.")


def _rate_message(limit: int | None) -> str:
    allowance = f"You can only make {limit} requests per second. " if limit else ""
    return (
        f"Too many requests. {allowance}See rate limit response headers for more "
        "information. Or contact support to increase rate limit."
    )


async def send_email(exchange: Exchange) -> Response:
    """``POST /emails``: one email, answered ``{"id": …}``."""
    return await _send(exchange, batch=False)


async def send_batch(exchange: Exchange) -> Response:
    """``POST /emails/batch``: up to 100 emails, answered ``{"data": [{"id": …}, …]}``."""
    return await _send(exchange, batch=True)


async def _send(exchange: Exchange, *, batch: bool) -> Response:
    config = exchange.state.config.resend
    rate = exchange.state.rate_window("resend").hit(config.rate_limit_per_second)
    return _with_rate_headers(await _answer(exchange, config, rate, batch=batch), rate)


def _with_rate_headers(response: Response, rate: RateStatus) -> Response:
    response.headers["ratelimit-limit"] = str(rate.limit)
    response.headers["ratelimit-remaining"] = str(rate.remaining)
    response.headers["ratelimit-reset"] = str(rate.reset_seconds)
    return response


async def _answer(
    exchange: Exchange, config: ResendConfig, rate: RateStatus, *, batch: bool
) -> Response:
    request = exchange.request
    refusal = _check_api_key(request.headers.get("authorization"), config)
    if refusal is not None:
        return error_response(*refusal)
    if rate.exceeded and config.enforce_rate_limit:
        limited = error_response(429, "rate_limit_exceeded", _rate_message(rate.limit))
        limited.headers["retry-after"] = str(rate.reset_seconds)
        return limited
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= 256:
        return error_response(
            400, "invalid_idempotency_key", "The key must be between 1-256 chars."
        )
    try:
        payload: Any = json.loads(exchange.body)
    except ValueError:
        return error_response(400, "validation_error", "The request body is not valid JSON.")
    mode = request.headers.get("x-batch-validation", "strict").lower() if batch else "strict"
    if mode not in ("strict", "permissive"):
        return error_response(
            422,
            "invalid_parameter",
            "The `x-batch-validation` header must be `strict` or `permissive`.",
        )

    entry: IdempotencyEntry | None = None
    if key is not None:
        verdict = exchange.state.idempotency.begin(
            key, _fingerprint(request.url.path, mode, payload), config.idempotency_ttl_seconds
        )
        if verdict.kind == "replay" and verdict.entry.response is not None:
            exchange.record.outcome = "replayed"
            stored = verdict.entry.response
            return Response(stored.body, stored.status, media_type="application/json")
        if verdict.kind == "mismatch":
            return error_response(
                409,
                "invalid_idempotent_request",
                "Same idempotency key used with a different request payload.",
            )
        if verdict.kind == "in_flight":
            return error_response(409, *_FAULT_ERRORS[409])
        entry = verdict.entry

    accepted: StoredResponse | None = None
    try:
        response = await _accept(exchange, config, payload, key, batch=batch, mode=mode)
        if response.status_code != 200:
            return response
        response = _with_rate_headers(response, rate)
        accepted = StoredResponse(response.status_code, bytes(response.body))
        return await exchange.deliver(response)
    finally:
        if entry is not None:
            if accepted is not None:
                exchange.state.idempotency.complete(entry, accepted)
            else:
                exchange.state.idempotency.release(entry)


def _check_api_key(authorization: str | None, config: ResendConfig) -> _Refusal | None:
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return _Refusal(401, "missing_api_key", "Missing API key in the authorization header.")
    if not token.startswith("re_") or (config.api_keys and token not in config.api_keys):
        return _Refusal(403, "invalid_api_key", "API key is invalid")
    return None


def _fingerprint(path: str, mode: str, payload: Any) -> str:
    canonical = json.dumps([path, mode, payload], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


async def _accept(
    exchange: Exchange,
    config: ResendConfig,
    payload: Any,
    key: str | None,
    *,
    batch: bool,
    mode: str,
) -> Response:
    fault = await exchange.injected_fault(fault_error)
    if fault is not None:
        return fault
    if batch:
        return _accept_batch(exchange, config, payload, key, mode)
    parsed = _parse_email(payload, config, in_batch=False)
    if isinstance(parsed, _Refusal):
        return error_response(*parsed)
    return JSONResponse({"id": _record(exchange, parsed, key, batch_index=None)})


def _accept_batch(
    exchange: Exchange, config: ResendConfig, payload: Any, key: str | None, mode: str
) -> Response:
    if not isinstance(payload, list):
        return error_response(422, "validation_error", "The request body must be an array.")
    if not payload:
        return error_response(422, "validation_error", "The batch must contain at least one email.")
    if len(payload) > MAX_BATCH:
        return error_response(
            422, "validation_error", f"The batch must not contain more than {MAX_BATCH} emails."
        )
    parsed = [_parse_email(item, config, in_batch=True) for item in payload]
    refusals = [(index, item) for index, item in enumerate(parsed) if isinstance(item, _Refusal)]
    if mode == "strict" and refusals:
        return error_response(*refusals[0][1])
    data = [
        {"id": _record(exchange, item, key, batch_index=index)}
        for index, item in enumerate(parsed)
        if isinstance(item, _Email)
    ]
    body: dict[str, Any] = {"data": data}
    if mode == "permissive":
        body["errors"] = [{"index": index, "message": item.message} for index, item in refusals]
    return JSONResponse(body)


def _record(exchange: Exchange, email: _Email, key: str | None, batch_index: int | None) -> str:
    message_id = str(uuid4())
    state = exchange.state
    message = MessageRecord(
        id=state.next_id("msg"),
        provider="resend",
        provider_message_id=message_id,
        sender=email.sender,
        recipients=email.to,
        subject=email.subject,
        text=email.text,
        html=email.html,
        headers=email.headers,
        tags=email.tags,
        idempotency_key=key,
        received_at=datetime.now(UTC),
        details={
            "from": email.from_field,
            "cc": email.cc,
            "bcc": email.bcc,
            "reply_to": email.reply_to,
            "scheduled_at": email.scheduled_at,
            "batch_index": batch_index,
        },
        request=exchange.record,
    )
    state.messages.append(message)
    schedule_delivery_events(state, message, exchange.bearer_token)
    return message_id


def _parse_email(item: Any, config: ResendConfig, *, in_batch: bool) -> _Email | _Refusal:
    if not isinstance(item, dict):
        return _Refusal(422, "validation_error", "Each email must be a JSON object.")
    for name in ("from", "to", "subject"):
        if item.get(name) in (None, "", []):
            return _Refusal(422, "missing_required_field", f"Missing `{name}` field.")
    if in_batch:
        for name in ("attachments", "scheduled_at"):
            if name in item:
                return _Refusal(
                    422,
                    "validation_error",
                    f"The `{name}` field is not supported for batch emails.",
                )

    sender = item["from"]
    if not isinstance(sender, str):
        return _Refusal(422, "invalid_parameter", "The `from` field must be a string.")
    sender_address = mailbox_address(sender)
    if sender_address is None:
        return _Refusal(422, "validation_error", f"Invalid `from` field. {_ADDRESS_FORMAT}")

    lists: dict[str, list[str]] = {}
    for name in ("to", "cc", "bcc", "reply_to"):
        addresses = _address_list(item, name)
        if isinstance(addresses, _Refusal):
            return addresses
        lists[name] = addresses
    if len(lists["to"]) > MAX_RECIPIENTS:
        return _Refusal(
            422,
            "validation_error",
            f"Too many recipients in the `to` field: the maximum is {MAX_RECIPIENTS}.",
        )

    strings: dict[str, str | None] = {}
    for name in ("subject", "html", "text", "scheduled_at"):
        value = item.get(name)
        if value is not None and not isinstance(value, str):
            return _Refusal(422, "invalid_parameter", f"The `{name}` field must be a string.")
        strings[name] = value

    headers = item.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(value, str) for value in headers.values()
    ):
        return _Refusal(
            422, "invalid_parameter", "The `headers` field must be an object of strings."
        )
    tags = _tags(item.get("tags", []))
    if isinstance(tags, _Refusal):
        return tags

    domain = domain_of(sender_address)
    if config.verified_domains and domain not in {d.lower() for d in config.verified_domains}:
        return _Refusal(
            403,
            "validation_error",
            f"The {domain} domain is not verified. Please, add and verify your domain on "
            "https://resend.com/domains",
        )
    for name in ("to", "cc", "bcc"):
        for address in lists[name]:
            if listed(address, config.invalid_recipients):
                return _Refusal(
                    422,
                    "validation_error",
                    f"Invalid `{name}` field. {address} is configured in the simulator as an "
                    "invalid recipient.",
                )
    return _Email(
        sender=sender_address,
        from_field=sender,
        to=lists["to"],
        subject=strings["subject"] or "",
        html=strings["html"],
        text=strings["text"],
        cc=lists["cc"],
        bcc=lists["bcc"],
        reply_to=lists["reply_to"],
        headers=dict(headers),
        tags=tags,
        scheduled_at=strings["scheduled_at"],
    )


def _address_list(item: dict[str, Any], name: str) -> list[str] | _Refusal:
    value = item.get(name)
    if value is None:
        return []
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        return _Refusal(
            422,
            "invalid_parameter",
            f"The `{name}` field must be a string or an array of strings.",
        )
    addresses: list[str] = []
    for mailbox in values:
        address = mailbox_address(mailbox)
        if address is None:
            return _Refusal(422, "validation_error", f"Invalid `{name}` field. {_ADDRESS_FORMAT}")
        addresses.append(address)
    return addresses


def _tags(value: Any) -> dict[str, str] | _Refusal:
    wrong_shape = _Refusal(
        422, "invalid_parameter", "The `tags` field must be an array of {name, value} objects."
    )
    if not isinstance(value, list):
        return wrong_shape
    tags: dict[str, str] = {}
    for tag in value:
        if not isinstance(tag, dict) or not isinstance(tag.get("name"), str):
            return wrong_shape
        tag_value = tag.get("value", "")
        if not isinstance(tag_value, str):
            return wrong_shape
        if not _TAG.match(tag["name"]) or (tag_value and not _TAG.match(tag_value)):
            return _Refusal(
                422,
                "validation_error",
                "Invalid `tags` field. Tag names and values must only contain ASCII letters, "
                "numbers, underscores, or dashes.",
            )
        tags[tag["name"]] = tag_value
    return tags


ROUTES = [
    Route("/emails", provider_endpoint("resend", send_email), methods=["POST"]),
    Route("/emails/batch", provider_endpoint("resend", send_batch), methods=["POST"]),
]
