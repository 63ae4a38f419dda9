"""The fixed vocabularies the schema's CHECK constraints enforce, as Python enums.

The seed's ``communications`` table and the ``leads`` table define these sets in SQL;
these enums must list exactly the same values (a test compares them with the live
constraints), so code never writes a value the database would reject.
"""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    """How a message travels. The seed's ``communications`` table calls this column
    ``type``; every other table, and the code, says ``channel``."""

    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"
    WEBHOOK = "webhook"


class CommunicationStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    BOUNCED = "bounced"
    REJECTED = "rejected"


class ConsentStatus(StrEnum):
    GRANTED = "granted"
    DENIED = "denied"
    UNKNOWN = "unknown"
    WITHDRAWN = "withdrawn"


class LeadStatus(StrEnum):
    QUEUED = "queued"
    QUALIFIED = "qualified"
    NURTURE = "nurture"
    DISQUALIFIED = "disqualified"
    ERROR = "error"


DEFAULT_PRIORITY = 5
