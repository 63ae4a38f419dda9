"""What the run left behind, read from the database and the simulator, and judged.

The audit of accepted messages is pure (:func:`audit_messages`), so it is tested on its own
(``test_checks.py``). Each message the simulator accepted is traced to the communication it
carries:

- Resend: the ``communication_id`` tag on every email (the ``Idempotency-Key`` is the
  communication id for a single send, ``batch-…`` for a batch, so the tag is what both share);
- SendGrid: ``custom_args.communication_id``;
- Twilio: nothing in the request names it. The answer's sid is the communication's
  ``external_id`` when our acknowledgement was recorded; otherwise (the answer was lost: a
  crash, a timeout) the message is matched by client (the ``StatusCallback`` URL ends with
  the client id), recipient and body, which the harness makes unique per lead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PROVIDERS = ("resend", "sendgrid", "twilio")
SENT_STATUSES = ("sent", "delivered", "bounced")
FINAL_STATUSES = ("delivered", "bounced", "failed", "rejected")

DUPLICATE_BOUND: Mapping[str, int | None] = {"sendgrid": 0, "twilio": 0}
"""Messages a provider without idempotency keys may accept twice, at most (None: not decided).

SendGrid and Twilio have no idempotency key. In this harness every client has delivery
webhooks, whose events carry our communication id (SendGrid ``custom_args``, Twilio's
``?lqs_id=`` in the status callback URL): a crash between the provider's acceptance and
our record is settled by the event long before the lease expires, and the retry sends
nothing (docs/RELIABILITY.md). The window that remains (no webhooks configured, a request
accepted but timed out, events slower than the lease) is not produced by these faults.
"""


@dataclass(frozen=True)
class Communication:
    """The columns of ``public.communications`` the audit needs."""

    id: str
    client_id: str
    type: str
    provider: str | None
    recipient: str
    content: str | None
    status: str
    external_id: str | None
    created_at: datetime


@dataclass
class MessageAudit:
    """Accepted messages traced to communications."""

    accepted: Counter[str] = field(default_factory=Counter)
    orphans: list[str] = field(default_factory=list)
    per_communication: dict[str, Counter[str]] = field(default_factory=dict)
    sent_but_never_accepted: list[str] = field(default_factory=list)
    accepted_but_not_sent: Counter[str] = field(default_factory=Counter)

    def more_than_once(self, provider: str) -> list[str]:
        """Communications ``provider`` accepted more than once."""
        counts = self.per_communication.get(provider, Counter())
        return sorted(cid for cid, n in counts.items() if n > 1)

    def duplicates(self, provider: str) -> int:
        """Extra messages ``provider`` accepted: the sum over communications of count - 1."""
        counts = self.per_communication.get(provider, Counter())
        return sum(n - 1 for n in counts.values() if n > 1)


def _communication_id(message: Mapping[str, Any]) -> str | None:
    provider = message.get("provider")
    if provider == "resend":
        found = (message.get("tags") or {}).get("communication_id")
        key = message.get("idempotency_key")
        if found is None and key and not str(key).startswith("batch-"):
            found = key
        return str(found) if found else None
    if provider == "sendgrid":
        found = (message.get("custom_args") or {}).get("communication_id")
        return str(found) if found else None
    return None


def _twilio_client(message: Mapping[str, Any]) -> str | None:
    callback = (message.get("details") or {}).get("status_callback") or ""
    return callback.rstrip("/").rsplit("/", 1)[-1] or None


def audit_messages(
    messages: Sequence[Mapping[str, Any]], communications: Sequence[Communication]
) -> MessageAudit:
    """Trace each accepted message (``GET /_sim/messages``) to its communication.

    A message with no communication, or accepted before its communication was created, is
    an orphan. A communication recorded as sent (or delivered, bounced) with no message
    accepted by its provider was never sent.
    """
    audit = MessageAudit(per_communication={p: Counter() for p in PROVIDERS})
    by_id = {c.id: c for c in communications}
    by_sid = {c.external_id: c for c in communications if c.provider == "twilio"}
    by_sms: dict[tuple[str, str, str], list[Communication]] = {}
    for c in communications:
        if c.type == "sms":
            by_sms.setdefault((c.client_id, c.recipient, c.content or ""), []).append(c)
    for message in messages:
        provider = str(message.get("provider"))
        if provider not in PROVIDERS:
            continue
        audit.accepted[provider] += 1
        found: Communication | None
        if provider == "twilio":
            found = by_sid.get(message.get("provider_message_id"))
            if found is None:
                key = (
                    _twilio_client(message) or "",
                    (message.get("recipients") or [""])[0],
                    message.get("body") or "",
                )
                candidates = by_sms.get(key, [])
                found = candidates[0] if len(candidates) == 1 else None
        else:
            cid = _communication_id(message)
            found = by_id.get(cid) if cid else None
        received = datetime.fromisoformat(str(message["received_at"]))
        if found is None:
            audit.orphans.append(
                f"{provider} {message.get('provider_message_id')} to "
                f"{message.get('recipients')}: no communications row"
            )
            continue
        if found.created_at > received:
            audit.orphans.append(
                f"{provider} {message.get('provider_message_id')}: accepted at {received} "
                f"before communication {found.id} was created ({found.created_at})"
            )
        audit.per_communication[provider][found.id] += 1
        if found.status not in SENT_STATUSES:
            audit.accepted_but_not_sent[found.status] += 1
    for c in communications:
        if (
            c.status in SENT_STATUSES
            and c.provider in PROVIDERS
            and audit.per_communication[c.provider][c.id] == 0
        ):
            audit.sent_but_never_accepted.append(f"{c.provider} {c.id} ({c.status})")
    return audit


@dataclass
class CallbackAudit:
    """Delivery events the simulator POSTed back, by their fate."""

    events: int = 0
    attempts: int = 0
    refused_attempts: int = 0
    given_up: int = 0
    pending: int = 0


def audit_callbacks(attempts: Sequence[Mapping[str, Any]], pending: int) -> CallbackAudit:
    """Group callback attempts by event (and deliberate duplicate): an event whose every
    attempt was answered other than 2xx, or not at all, was given up."""
    audit = CallbackAudit(attempts=len(attempts), pending=pending)
    delivered: dict[tuple[str, int], bool] = {}
    for attempt in attempts:
        status = attempt.get("status")
        ok = status is not None and 200 <= int(status) < 300
        audit.refused_attempts += not ok
        key = (str(attempt.get("event_id")), int(attempt.get("duplicate") or 0))
        delivered[key] = delivered.get(key, False) or ok
    audit.events = len(delivered)
    audit.given_up = sum(not ok for ok in delivered.values())
    return audit
