"""SendGrid: ``POST /v3/mail/send``, answered as api.sendgrid.com does.

Order of checks: API key (401/403), body size (413), JSON (400), latency and injected
faults, field validation (400, every error found, each naming its ``field``), verified
sender (403), configured invalid recipients (400); then one message per personalization
is recorded and the answer is 202 with an empty body and an ``X-Message-Id`` header.
SendGrid has no idempotency key: a retry is a second send. Each recorded personalization
has its delivery events scheduled (:mod:`lqs.simulator.events`).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from uuid import uuid4

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lqs.simulator.addresses import domain_of, is_email, listed
from lqs.simulator.config import SendGridConfig
from lqs.simulator.events import schedule_delivery_events
from lqs.simulator.exchange import Exchange, provider_endpoint
from lqs.simulator.records import MessageRecord

MAX_BODY_BYTES = 30 * 1024 * 1024
MAX_PERSONALIZATIONS = 1000
_HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
_FAULT_MESSAGES = {
    400: "Bad Request",
    401: "The provided authorization grant is invalid, expired, or revoked",
    403: "access forbidden",
    413: "request entity too large",
    429: "too many requests",
    500: "internal error",
}
_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", dict: "object", list: "array"}

ErrorItem = dict[str, str | None]


def _item(message: str, field: str | None = None, anchor: str | None = None) -> ErrorItem:
    return {"message": message, "field": field, "help": f"{_HELP}#{anchor}" if anchor else None}


def error_response(status: int, errors: list[ErrorItem]) -> JSONResponse:
    """SendGrid's error body: ``{"errors": [{"message", "field", "help"}, …]}``."""
    return JSONResponse({"errors": errors}, status)


def fault_error(status: int) -> Response:
    """SendGrid's answer for an injected error ``status``."""
    message = _FAULT_MESSAGES.get(status) or HTTPStatus(status).phrase.lower()
    return error_response(status, [_item(message)])


def new_message_id() -> str:
    """A random id shaped like SendGrid's ``X-Message-Id`` (22 URL-safe base64 characters)."""
    return base64.urlsafe_b64encode(uuid4().bytes).decode("ascii").rstrip("=")


async def send_mail(exchange: Exchange) -> Response:
    """``POST /v3/mail/send``: validate, record each personalization, answer 202."""
    config = exchange.state.config.sendgrid
    refusal = _check_api_key(exchange.request.headers.get("authorization"), config)
    if refusal is not None:
        return refusal
    if len(exchange.body) > MAX_BODY_BYTES:
        return fault_error(413)
    try:
        payload: Any = json.loads(exchange.body)
    except ValueError:
        return error_response(400, [_item("Bad Request")])

    fault = await exchange.injected_fault(fault_error)
    if fault is not None:
        return fault
    errors = _validate(payload)
    if errors:
        return error_response(400, errors)
    sender = str(payload["from"]["email"])
    if config.verified_senders and not (
        listed(sender, config.verified_senders)
        or listed(domain_of(sender), config.verified_senders)
    ):
        return error_response(
            403,
            [
                _item(
                    "The from address does not match a verified Sender Identity. Mail cannot "
                    "be sent until this error is resolved. Visit "
                    "https://sendgrid.com/docs/for-developers/sending-email/sender-identity/ "
                    "to see the Sender Identity requirements",
                    "from",
                )
            ],
        )
    refused = _invalid_recipients(payload, config)
    if refused:
        return error_response(400, refused)

    message_id = new_message_id()
    _record(exchange, payload, message_id)
    return await exchange.deliver(Response(status_code=202, headers={"X-Message-Id": message_id}))


def _check_api_key(authorization: str | None, config: SendGridConfig) -> Response | None:
    if not authorization:
        return error_response(401, [_item("authorization required")])
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if (
        scheme.lower() != "bearer"
        or not token.startswith("SG.")
        or (config.api_keys and token not in config.api_keys and token not in config.forbidden_keys)
    ):
        return error_response(401, [_item(_FAULT_MESSAGES[401])])
    if token in config.forbidden_keys:
        return error_response(403, [_item(_FAULT_MESSAGES[403])])
    return None


def _type_name(value: Any) -> str:
    return "null" if value is None else _JSON_TYPES.get(type(value), "string")


def _string_map_errors(value: Any, field: str) -> list[ErrorItem]:
    if value is None:
        return []
    if not isinstance(value, dict):
        return [_item(f"Invalid type. Expected: object, given: {_type_name(value)}.", field)]
    return [
        _item(f"Invalid type. Expected: string, given: {_type_name(v)}.", f"{field}.{k}")
        for k, v in value.items()
        if not isinstance(v, str)
    ]


def _validate(payload: Any) -> list[ErrorItem]:
    if not isinstance(payload, dict):
        return [_item("Bad Request")]
    errors: list[ErrorItem] = []
    personalizations = payload.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        errors.append(
            _item(
                "The personalizations field is required and must have at least one "
                "personalization.",
                "personalizations",
                "-Personalizations-Errors",
            )
        )
        personalizations = []
    elif len(personalizations) > MAX_PERSONALIZATIONS:
        errors.append(
            _item(
                f"The personalization block is limited to {MAX_PERSONALIZATIONS} "
                "personalizations per API request. You have provided "
                f"{len(personalizations)} personalizations. Please consider splitting this "
                "into multiple requests and resending your request.",
                "personalizations",
                "-Personalizations-Errors",
            )
        )
    for index, personalization in enumerate(personalizations):
        errors += _personalization_errors(index, personalization)

    sender = payload.get("from")
    if not isinstance(sender, dict) or not sender.get("email"):
        errors.append(
            _item(
                "The from object must be provided for every email send. It is an object that "
                "requires the email parameter, but may also contain a name parameter.  e.g. "
                '{"email" : "example@example.com"}  or {"email" : "example@example.com", '
                '"name" : "Example Recipient"}.',
                "from.email",
                "message.from",
            )
        )
    elif not isinstance(sender["email"], str) or not is_email(sender["email"]):
        errors.append(
            _item("The from email does not contain a valid address.", "from.email", "message.from")
        )

    template_id = payload.get("template_id")
    top_subject = payload.get("subject")
    every_personalization_has_subject = bool(personalizations) and all(
        isinstance(p, dict) and isinstance(p.get("subject"), str) and p["subject"]
        for p in personalizations
    )
    if not template_id and not (
        (isinstance(top_subject, str) and top_subject) or every_personalization_has_subject
    ):
        errors.append(
            _item(
                "The subject is required. You can get around this requirement if you use a "
                "template with a subject defined or if every personalization has a subject "
                "defined.",
                "subject",
                "message.subject",
            )
        )
    if not template_id:
        errors += _content_errors(payload.get("content"))
    errors += _string_map_errors(payload.get("custom_args"), "custom_args")
    errors += _string_map_errors(payload.get("headers"), "headers")
    return errors


def _personalization_errors(index: int, personalization: Any) -> list[ErrorItem]:
    prefix = f"personalizations.{index}"
    if not isinstance(personalization, dict):
        return [_item("Invalid type. Expected: object.", prefix, "-Personalizations-Errors")]
    errors: list[ErrorItem] = []
    to = personalization.get("to")
    if not isinstance(to, list) or not to:
        errors.append(
            _item(
                "The to array is required for all personalization objects, and must have at "
                "least one email object with a valid email address.",
                f"{prefix}.to",
                "message.personalizations.to",
            )
        )
    for kind in ("to", "cc", "bcc"):
        recipients = personalization.get(kind) or []
        for position, recipient in enumerate(recipients if isinstance(recipients, list) else []):
            email = recipient.get("email") if isinstance(recipient, dict) else None
            if not isinstance(email, str) or not is_email(email):
                errors.append(
                    _item(
                        "Does not contain a valid address.",
                        f"{prefix}.{kind}.{position}.email",
                        f"message.personalizations.{kind}",
                    )
                )
    errors += _string_map_errors(personalization.get("custom_args"), f"{prefix}.custom_args")
    errors += _string_map_errors(personalization.get("headers"), f"{prefix}.headers")
    return errors


def _content_errors(content: Any) -> list[ErrorItem]:
    if not isinstance(content, list) or not content:
        return [
            _item(
                "Unless a valid template_id is provided, the content parameter is required. "
                "There must be at least one defined content block. We typically suggest both "
                "text/plain and text/html blocks are included, but only one block is required.",
                "content",
                "message.content",
            )
        ]
    errors: list[ErrorItem] = []
    types: list[str] = []
    for index, block in enumerate(content):
        block_type = block.get("type") if isinstance(block, dict) else None
        value = block.get("value") if isinstance(block, dict) else None
        if not isinstance(block_type, str) or not block_type:
            errors.append(
                _item(
                    "The content type must be a string at least one character in length.",
                    f"content.{index}.type",
                    "message.content.type",
                )
            )
        else:
            types.append(block_type)
        if not isinstance(value, str) or not value:
            errors.append(
                _item(
                    "The content value must be a string at least one character in length.",
                    f"content.{index}.value",
                    "message.content.value",
                )
            )
    if "text/plain" in types and types[0] != "text/plain":
        errors.append(
            _item(
                "If present, text/plain must be first, followed by text/html, followed by any "
                "other content.",
                "content",
                "message.content",
            )
        )
    return errors


def _invalid_recipients(payload: dict[str, Any], config: SendGridConfig) -> list[ErrorItem]:
    refused: list[ErrorItem] = []
    for index, personalization in enumerate(payload["personalizations"]):
        for kind in ("to", "cc", "bcc"):
            for position, recipient in enumerate(personalization.get(kind) or []):
                if listed(recipient["email"], config.invalid_recipients):
                    refused.append(
                        _item(
                            "Does not contain a valid address.",
                            f"personalizations.{index}.{kind}.{position}.email",
                            f"message.personalizations.{kind}",
                        )
                    )
    return refused


def _record(exchange: Exchange, payload: dict[str, Any], message_id: str) -> None:
    state = exchange.state
    content = {block["type"]: block["value"] for block in payload.get("content") or []}
    for index, personalization in enumerate(payload["personalizations"]):
        message = MessageRecord(
            id=state.next_id("msg"),
            provider="sendgrid",
            provider_message_id=message_id,
            sender=payload["from"]["email"],
            recipients=[r["email"] for r in personalization["to"]],
            subject=personalization.get("subject") or payload.get("subject"),
            text=content.get("text/plain"),
            html=content.get("text/html"),
            headers={
                **(payload.get("headers") or {}),
                **(personalization.get("headers") or {}),
            },
            custom_args={
                **(payload.get("custom_args") or {}),
                **(personalization.get("custom_args") or {}),
            },
            received_at=datetime.now(UTC),
            details={
                "personalization_index": index,
                "from_name": payload["from"].get("name"),
                "cc": [r["email"] for r in personalization.get("cc") or []],
                "bcc": [r["email"] for r in personalization.get("bcc") or []],
                "categories": payload.get("categories") or [],
                "template_id": payload.get("template_id"),
                "dynamic_template_data": personalization.get("dynamic_template_data"),
            },
            request=exchange.record,
        )
        state.messages.append(message)
        schedule_delivery_events(state, message, exchange.bearer_token)


ROUTES = [Route("/v3/mail/send", provider_endpoint("sendgrid", send_mail), methods=["POST"])]
