"""What the simulator remembers, in the shape ``GET /_sim/…`` returns it.

These are the bodies of the inspection API: tests may parse them back with
``MessageRecord.model_validate(item)``. Request bodies are kept twice: as text when they are
UTF-8 (``body``) and always as base64 (``body_base64``), so binary web-push payloads and
exact webhook bytes survive the trip through JSON.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


def text_or_none(raw: bytes) -> str | None:
    """``raw`` decoded as UTF-8, or ``None`` when it is not valid UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def base64_text(raw: bytes) -> str:
    """``raw`` as standard base64 text."""
    return base64.b64encode(raw).decode("ascii")


class RequestRecord(BaseModel):
    """One request as it arrived, and what the simulator did with it.

    ``outcome`` is ``pending`` until answered, then one of ``accepted``, ``refused``
    (a validation or authentication error), ``replayed`` (an idempotent replay),
    ``fault`` (an injected error status), ``timeout``, ``dropped`` or ``hung``.
    """

    id: str
    provider: str
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: str | None
    body_base64: str
    received_at: datetime
    status: int | None = None
    outcome: str = "pending"


class MessageRecord(BaseModel):
    """One message a provider endpoint accepted.

    ``id`` is the simulator's own; ``provider_message_id`` is what the provider answered
    (Resend's id, SendGrid's ``X-Message-Id``, Twilio's ``SM…`` sid, the push message id).
    ``details`` holds what only one provider has (cc, bcc, ``StatusCallback``, TTL, …).
    """

    id: str
    provider: str
    provider_message_id: str
    sender: str | None = None
    recipients: list[str]
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    body: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    custom_args: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    idempotency_key: str | None = None
    received_at: datetime
    details: dict[str, Any] = Field(default_factory=dict)
    request: RequestRecord


class HookDelivery(BaseModel):
    """One webhook delivery the sink answered, with its exact bytes and headers.

    ``signature_valid`` is ``None`` when the hook has no secret configured; otherwise it
    says whether the Standard Webhooks signature checked out, and ``signature_error`` why not.
    """

    id: str
    name: str
    headers: dict[str, str]
    body: str | None
    body_base64: str
    received_at: datetime
    status: int
    signature_valid: bool | None = None
    signature_error: str | None = None
    request_id: str


class RegisteredWebhook(BaseModel):
    """A webhook registration as ``/_sim/webhooks`` shows it.

    ``secret`` (Resend) appears only in the answer to the registration; ``public_key``
    (SendGrid, base64 DER SubjectPublicKeyInfo, as SendGrid's console shows it) always.
    """

    provider: str
    api_key: str
    url: str
    secret: str | None = None
    public_key: str | None = None


class CallbackEvent(BaseModel):
    """Which delivery event a callback carries, and where it goes.

    ``message_id`` is the provider's id of the message (Resend's email id, SendGrid's
    ``X-Message-Id``, Twilio's ``SM…`` sid); ``event_id`` is the event's own (``svix-id``,
    ``sg_event_id``, or ``{MessageSid}:{MessageStatus}`` for Twilio, which has none).
    """

    provider: str
    url: str
    event_type: str
    event_id: str
    message_id: str
    recipient: str


class CallbackAttempt(CallbackEvent):
    """One POST of a delivery event to its webhook or ``StatusCallback``, and its answer.

    ``attempt`` counts the tries of one delivery from 1; ``duplicate`` is 0 for the event's
    first delivery and n for its n-th deliberate re-delivery. ``status`` is the HTTP status
    answered, or ``None`` when ``error`` says why no answer came. ``headers`` and ``body``
    are exactly what was sent.
    """

    id: str
    attempt: int
    duplicate: int
    status: int | None = None
    error: str | None = None
    sent_at: datetime
    headers: dict[str, str]
    body: str
