"""Provider delivery events and the monotonic status transitions they cause, pure.

A provider module turns a verified webhook into :class:`DeliveryEvent` values (one per
event: Resend and Twilio send one per request, SendGrid an array). :func:`transition`
decides what one event does to a communication, given its current status:

- ``pending → sent → delivered``; ``sent | delivered → bounced``; ``pending | sent → failed``;
  ``pending | sent → rejected`` (the provider refused the address).
- Out of order is normal: a ``delivered`` (or a hard bounce) that arrives before our own
  record of the send (status still ``pending``) is applied, and a late ``sent`` never
  downgrades ``delivered``. ``delivered_at`` comes from the provider's time.
- ``failed``, ``bounced`` and ``rejected`` are final: nothing moves them.
- A complaint or unsubscribe leaves the status alone and suppresses the recipient; a
  hard bounce suppresses too. ``email.suppressed`` (the provider refused to send to a
  suppressed address) is ``rejected`` with a compliance note.

Every event, whether it changes the status or not, is kept in the communication's
timeline by the caller; :class:`Transition` only says what changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from lqs.domain.vocabulary import CommunicationStatus as Status


class EventKind(StrEnum):
    """What a provider event means for the message, whatever the provider calls it."""

    ACCEPTED = "accepted"
    """The provider handed the message on (Resend ``email.sent``, SendGrid ``processed``,
    Twilio ``queued|sending|sent``)."""
    DELIVERED = "delivered"
    DELAYED = "delayed"
    """Temporarily not delivered; the provider keeps trying (no status change)."""
    BOUNCED = "bounced"
    """Permanently rejected by the recipient's server (hard bounce)."""
    SOFT_BOUNCED = "soft_bounced"
    """A temporary bounce: recorded, no status change, no suppression."""
    FAILED = "failed"
    """The provider could not send it (Resend ``email.failed``, Twilio ``failed`` or
    ``undelivered``)."""
    DROPPED = "dropped"
    """The provider refused to send to this address (Resend ``email.suppressed``,
    SendGrid ``dropped``): rejected, with the reason as a compliance note."""
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    ENGAGED = "engaged"
    """Opened, clicked, read: kept in the timeline only."""
    OTHER = "other"


@dataclass(frozen=True)
class DeliveryEvent:
    """One provider event, verified and parsed; nothing here is trusted to pick the client
    (the webhook's own client does that)."""

    provider: str
    event_id: str
    """The provider's id for this event, the deduplication key: Resend ``svix-id``,
    SendGrid ``sg_event_id``, Twilio ``MessageSid:MessageStatus``."""
    kind: EventKind
    raw_type: str
    """The provider's own name for the event (``email.bounced``, ``bounce``, ``undelivered``)."""
    external_id: str | None
    """The provider's message id as returned by the send: Resend ``email_id``, SendGrid
    ``X-Message-Id`` (the part of ``sg_message_id`` before the first dot), Twilio
    ``MessageSid``."""
    occurred_at: datetime | None = None
    communication_id: UUID | None = None
    """Our communication id when the event carries it (SendGrid ``custom_args``)."""
    recipient: str | None = None
    reason: str | None = None
    error_code: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    """This event's own fields, as the provider sent them."""


@dataclass(frozen=True)
class Transition:
    """What one event changes. ``status`` None: the status stays as it is."""

    status: Status | None = None
    delivered_at: datetime | None = None
    error_message: str | None = None
    compliance_note: str | None = None
    suppress: str | None = None
    """Suppress the recipient, for this reason (``bounce``, ``complaint``, ``unsubscribe``)."""

    @property
    def changes_status(self) -> bool:
        return self.status is not None


FINAL = frozenset({Status.FAILED, Status.BOUNCED, Status.REJECTED})
_RANK = {Status.PENDING: 0, Status.SENT: 1, Status.DELIVERED: 2}


def _forward(current: Status, target: Status) -> bool:
    """May ``current`` move to ``target`` (pending < sent < delivered; final stays)?"""
    if current in FINAL:
        return False
    if target in FINAL:
        return True
    return _RANK[target] > _RANK[current]


def _why(event: DeliveryEvent, default: str) -> str:
    parts = [event.reason or default]
    if event.error_code:
        parts.append(f"(code {event.error_code})")
    return f"{event.provider} {event.raw_type}: {' '.join(parts)}"[:2000]


def transition(current: Status, event: DeliveryEvent) -> Transition:
    """What ``event`` does to a communication whose status is ``current``."""
    kind = event.kind
    if kind is EventKind.ACCEPTED:
        return Transition(Status.SENT) if _forward(current, Status.SENT) else Transition()
    if kind is EventKind.DELIVERED:
        if not _forward(current, Status.DELIVERED):
            return Transition()
        return Transition(Status.DELIVERED, delivered_at=event.occurred_at)
    if kind is EventKind.BOUNCED:
        note = _why(event, "bounced")
        if current in FINAL:
            return Transition(suppress="bounce")
        return Transition(Status.BOUNCED, error_message=note, suppress="bounce")
    if kind is EventKind.FAILED:
        # A message the recipient already received cannot fail afterwards.
        if current in FINAL or current is Status.DELIVERED:
            return Transition()
        return Transition(Status.FAILED, error_message=_why(event, "failed"))
    if kind is EventKind.DROPPED:
        if current in FINAL or current is Status.DELIVERED:
            return Transition()
        note = _why(event, "the provider refused to send to this address")
        return Transition(Status.REJECTED, compliance_note=note, error_message=note)
    if kind is EventKind.COMPLAINED:
        # The status stays: the complaint's time is not the delivery's, and the delivered
        # event that precedes a complaint sets the status with the right delivered_at.
        return Transition(suppress="complaint")
    if kind is EventKind.UNSUBSCRIBED:
        return Transition(suppress="unsubscribe")
    return Transition()
