"""What each provider POSTs back about a message it accepted: events, bodies, ids, headers.

- Resend: one Svix-signed JSON event per POST, ``{"type", "created_at", "data"}`` with
  ``data.email_id`` the id the send answered; each event has its own ``svix-id``.
- SendGrid: a JSON array of one event per POST, the raw body ending in ``\\r\\n``, signed
  with ECDSA; one sequence per ``to`` recipient, each event with its ``sg_event_id``,
  ``sg_message_id`` = ``<X-Message-Id>.<suffix>`` and the message's ``custom_args`` as
  top-level keys.
- Twilio: a form POST to the ``StatusCallback`` per status, signed with the auth token.

The outcome, and so the events, comes from ``callbacks.email`` / ``callbacks.sms``
(:class:`lqs.simulator.config.CallbacksConfig` lists the sequences). Bodies are built once,
when the message is accepted, with the moment each event happens; retries and duplicates
re-send the same bytes.
"""

from __future__ import annotations

import base64
import json
import random
import secrets
import string
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from lqs.simulator.callbacks import Callback, Signer
from lqs.simulator.config import CallbacksConfig, EmailOutcome, SmsOutcome
from lqs.simulator.records import CallbackEvent, MessageRecord
from lqs.simulator.registrations import Webhook
from lqs.simulator.signing import sendgrid_signature, svix_signature, twilio_signature
from lqs.simulator.state import SimulatorState

_SVIX_ID_ALPHABET = string.ascii_letters + string.digits

_RESEND_EVENTS: dict[EmailOutcome, tuple[str, ...]] = {
    "delivered": ("email.sent", "email.delivered"),
    "bounced": ("email.sent", "email.bounced"),
    "soft_bounced": ("email.sent", "email.delivery_delayed"),
    "complained": ("email.sent", "email.delivered", "email.complained"),
    "failed": ("email.failed",),
    "suppressed": ("email.suppressed",),
}
_RESEND_DETAILS: dict[str, dict[str, Any]] = {
    "email.bounced": {
        "bounce": {
            "message": (
                "The recipient's email provider sent a hard bounce message: the address "
                "does not exist."
            ),
            "subType": "General",
            "type": "Permanent",
        }
    },
    "email.failed": {"failed": {"reason": "reached_daily_quota"}},
    "email.suppressed": {
        "suppressed": {
            "message": (
                "Resend has suppressed sending to this address because it is on the "
                "account-level suppression list."
            ),
            "type": "OnAccountSuppressionList",
        }
    },
}

_SENDGRID_EVENTS: dict[EmailOutcome, tuple[str, ...]] = {
    "delivered": ("processed", "delivered"),
    "bounced": ("processed", "bounce"),
    "soft_bounced": ("processed", "deferred"),
    "complained": ("processed", "delivered", "spamreport"),
    "failed": ("dropped",),
    "suppressed": ("dropped",),
}
_SENDGRID_DETAILS: dict[str, dict[str, Any]] = {
    "delivered": {"response": "250 2.0.0 OK", "tls": 1},
    "bounce": {
        "type": "bounce",
        "bounce_classification": "Invalid Address",
        "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
        "status": "5.1.1",
    },
    "deferred": {"response": "421 4.7.0 Try again later", "attempt": "1"},
}
_SENDGRID_DROP_REASONS: dict[EmailOutcome, str] = {
    "failed": "Bounced Address",
    "suppressed": "Unsubscribed Address",
}

_TWILIO_STATUSES: dict[SmsOutcome, tuple[tuple[str, str | None], ...]] = {
    "delivered": (("sent", None), ("delivered", None)),
    "undelivered": (("sent", None), ("undelivered", "30003")),
    "failed": (("failed", "30008"),),
}


class _Clock:
    """The moments of one message's events: each ``delay`` (+ jitter) after the previous."""

    def __init__(self, config: CallbacksConfig, rng: random.Random) -> None:
        self._config = config
        self._rng = rng
        self._start = datetime.now(UTC)
        self._offset = 0.0

    def tick(self) -> tuple[float, datetime]:
        """The next event's offset (seconds after acceptance) and its wall-clock time."""
        jitter = self._rng.uniform(0, self._config.jitter_seconds)
        self._offset += self._config.delay_seconds + jitter
        return self._offset, self._start + timedelta(seconds=self._offset)


def schedule_delivery_events(
    state: SimulatorState, message: MessageRecord, credential: str
) -> None:
    """Schedule the events the provider would send about ``message``, if it has a target.

    ``credential`` is what the message was sent with: the API key for Resend and SendGrid
    (the events go to the webhook registered for it, if any), the auth token for Twilio (it
    signs the callbacks to the message's ``StatusCallback``, if it had one).
    """
    config = state.config.callbacks
    sequences: list[list[Callback]] = []
    if message.provider == "twilio":
        url = message.details.get("status_callback")
        if url:
            sms_outcome = config.sms.outcome_for(message.recipients)
            clock = _Clock(config, state.callback_rng)
            sequences.append(_twilio(message, url, credential, sms_outcome, clock))
    elif (webhook := state.webhooks.find(message.provider, credential)) is not None:
        if message.provider == "resend":
            outcome = config.email.outcome_for(message.recipients)
            clock = _Clock(config, state.callback_rng)
            sequences.append(_resend(message, webhook, outcome, clock))
        else:
            for index, recipient in enumerate(message.recipients):
                outcome = config.email.outcome_for([recipient])
                clock = _Clock(config, state.callback_rng)
                sequences.append(_sendgrid(message, webhook, recipient, index, outcome, clock))
    for sequence in sequences:
        state.callbacks.schedule(sequence, config)


def _iso_millis(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _svix_signer(secret: str, event_id: str, body: bytes) -> Signer:
    def sign(unix_time: int) -> dict[str, str]:
        return {
            "svix-timestamp": str(unix_time),
            "svix-signature": svix_signature(secret, event_id, unix_time, body),
        }

    return sign


def _resend(
    message: MessageRecord, webhook: Webhook, outcome: EmailOutcome, clock: _Clock
) -> list[Callback]:
    assert webhook.secret is not None  # a Resend registration always has one
    data: dict[str, Any] = {
        "created_at": message.received_at.isoformat(),
        "email_id": message.provider_message_id,
        "from": message.details.get("from", message.sender),
        "to": message.recipients,
        "subject": message.subject,
    }
    if message.tags:
        data["tags"] = message.tags
    callbacks: list[Callback] = []
    for event_type in _RESEND_EVENTS[outcome]:
        due, moment = clock.tick()
        payload = {
            "type": event_type,
            "created_at": _iso_millis(moment),
            "data": {**data, **_RESEND_DETAILS.get(event_type, {})},
        }
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        event_id = "msg_" + "".join(secrets.choice(_SVIX_ID_ALPHABET) for _ in range(27))
        callbacks.append(
            Callback(
                event=CallbackEvent(
                    provider="resend",
                    url=webhook.url,
                    event_type=event_type,
                    event_id=event_id,
                    message_id=message.provider_message_id,
                    recipient=", ".join(message.recipients),
                ),
                due=due,
                body=body,
                headers={
                    "content-type": "application/json",
                    "user-agent": "Svix-Webhooks/1.0 (lqs-simulator)",
                    "svix-id": event_id,
                },
                sign=_svix_signer(webhook.secret, event_id, body),
            )
        )
    return callbacks


def _sendgrid_signer(webhook: Webhook, body: bytes) -> Signer:
    key = webhook.private_key
    assert key is not None  # a SendGrid registration always has one

    def sign(unix_time: int) -> dict[str, str]:
        return {
            "X-Twilio-Email-Event-Webhook-Timestamp": str(unix_time),
            "X-Twilio-Email-Event-Webhook-Signature": sendgrid_signature(key, unix_time, body),
        }

    return sign


def _sendgrid(
    message: MessageRecord,
    webhook: Webhook,
    recipient: str,
    index: int,
    outcome: EmailOutcome,
    clock: _Clock,
) -> list[Callback]:
    x_message_id = message.provider_message_id
    personalization = message.details.get("personalization_index", 0)
    common: dict[str, Any] = {
        "email": recipient,
        "sg_message_id": (
            f"{x_message_id}.filterdrecv-simulator-{secrets.token_hex(4)}"
            f"-{personalization}-{index}.0"
        ),
        "smtp-id": f"<{x_message_id}@ismtpd-simulator.sendgrid.net>",
    }
    categories = message.details.get("categories")
    if categories:
        common["category"] = categories
    callbacks: list[Callback] = []
    for event in _SENDGRID_EVENTS[outcome]:
        due, moment = clock.tick()
        event_id = (
            base64.urlsafe_b64encode(
                f"{event}-{secrets.token_hex(6)}-{x_message_id}-{index}".encode()
            )
            .decode("ascii")
            .rstrip("=")
        )
        details = _SENDGRID_DETAILS.get(event, {})
        if event == "dropped":
            details = {"reason": _SENDGRID_DROP_REASONS[outcome]}
        # Custom arguments first: SendGrid's own keys win a clash.
        payload = {
            **message.custom_args,
            **common,
            **details,
            "event": event,
            "sg_event_id": event_id,
            "timestamp": int(moment.timestamp()),
        }
        body = json.dumps([payload], separators=(",", ":"), sort_keys=True).encode() + b"\r\n"
        callbacks.append(
            Callback(
                event=CallbackEvent(
                    provider="sendgrid",
                    url=webhook.url,
                    event_type=event,
                    event_id=event_id,
                    message_id=x_message_id,
                    recipient=recipient,
                ),
                due=due,
                body=body,
                headers={"content-type": "application/json", "user-agent": "SendGrid Event API"},
                sign=_sendgrid_signer(webhook, body),
            )
        )
    return callbacks


def _twilio(
    message: MessageRecord, url: str, auth_token: str, outcome: SmsOutcome, clock: _Clock
) -> list[Callback]:
    sid = message.provider_message_id
    callbacks: list[Callback] = []
    for status, error_code in _TWILIO_STATUSES[outcome]:
        due, _ = clock.tick()
        params = [("SmsSid", sid), ("SmsStatus", status), ("MessageStatus", status)]
        params.append(("To", message.recipients[0]))
        service = message.details.get("messaging_service_sid")
        if service:
            params.append(("MessagingServiceSid", service))
        params += [("MessageSid", sid), ("AccountSid", message.details["account_sid"])]
        if message.sender:
            params.append(("From", message.sender))
        params.append(("ApiVersion", "2010-04-01"))
        if error_code is not None:
            params.append(("ErrorCode", error_code))
        signature = twilio_signature(auth_token, url, params)
        callbacks.append(
            Callback(
                event=CallbackEvent(
                    provider="twilio",
                    url=url,
                    event_type=status,
                    event_id=f"{sid}:{status}",
                    message_id=sid,
                    recipient=message.recipients[0],
                ),
                due=due,
                body=urlencode(params).encode("ascii"),
                headers={
                    "content-type": "application/x-www-form-urlencoded",
                    "user-agent": "TwilioProxy/1.1",
                    "x-twilio-signature": signature,
                },
                sign=lambda _unix_time: {},
            )
        )
    return callbacks
