"""A client's settings: where its notifications go, what each outcome sends, its rules.

Stored as the ``clients.settings`` jsonb object; validated here on every write and read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, field_validator

from lqs.domain.retention import RetentionSettings
from lqs.domain.send_rules import FrequencyCap, SendWindow, known_channels
from lqs.domain.text import unstorable_text
from lqs.domain.vocabulary import DEFAULT_PRIORITY, Channel, LeadStatus

SLUG_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
MAX_SLUG = 63
"""The longest slug (``clients.slug`` is ``varchar(63)``, as SLUG_PATTERN allows)."""
MAX_NAME = 200
"""The longest client name (``clients.name`` is ``varchar(200)``)."""
MAX_KEY_NAME = 100
"""The longest API key name (``api_keys.name`` is ``varchar(100)``)."""
MAX_RATE_LIMIT = 1_000_000_000
"""The highest per-key rate limit, in requests per minute: far above what one API serves,
and well inside ``api_keys.rate_limit_per_minute`` (an ``integer``)."""

Outcome = Literal["qualified", "nurture", "disqualified"]
OUTCOMES: tuple[Outcome, ...] = ("qualified", "nurture", "disqualified")

STAFF_PRIORITY = 2
"""The priority of a message to the client's staff unless a rule says otherwise (ahead of
:data:`~lqs.domain.vocabulary.DEFAULT_PRIORITY`: someone is waiting to call the lead)."""


class NotificationRule(BaseModel):
    """One message an outcome sends: on which channel, to whom, with which template."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: Channel
    to: Literal["client", "lead"]
    template: str = Field(pattern=r"^[a-z0-9_]{1,100}$")
    priority: int = Field(default=DEFAULT_PRIORITY, ge=1, le=10)
    campaign_id: str | None = Field(default=None, max_length=100)


def _default_notifications() -> dict[Outcome, list[NotificationRule]]:
    return {
        "qualified": [
            NotificationRule(
                channel=Channel.EMAIL,
                to="client",
                template="lead_qualified",
                priority=STAFF_PRIORITY,
            )
        ],
        "nurture": [],
        "disqualified": [],
    }


class ClientSettings(BaseModel):
    """Everything a client configures; unknown keys are kept for later features."""

    model_config = ConfigDict(extra="allow")

    time_zone: str = "UTC"
    default_region: str = Field(default="US", pattern=r"^[A-Z]{2}$")
    notification_email: str | None = Field(default=None, max_length=255)
    notification_phone: str | None = Field(default=None, max_length=20)
    notifications: dict[Outcome, list[NotificationRule]] = Field(
        default_factory=_default_notifications
    )
    scoring_rules: dict[str, Any] | None = None
    send_window: dict[Channel, SendWindow | None] = Field(default_factory=dict)
    """Quiet hours: when each channel may send to a lead (domain/send_rules.py)."""
    frequency_cap: dict[Channel, FrequencyCap | None] = Field(default_factory=dict)
    """At most N messages per lead's address and channel in 24 h (domain/send_rules.py)."""
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    """How long content, communications and leads are kept (domain/retention.py)."""

    @field_validator("send_window", "frequency_cap", mode="before")
    @classmethod
    def _known_channels(cls, value: object) -> object:
        return known_channels(value)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @property
    def webhook_url(self) -> str | None:
        """The client's outbound webhook URL (``delivery.webhook.url``), if it set one.

        Read from the raw ``delivery`` settings: they are validated when stored and again
        by the dispatcher, which fails the message if they are not usable.
        """
        delivery = (self.model_extra or {}).get("delivery")
        webhook = delivery.get("webhook") if isinstance(delivery, Mapping) else None
        url = webhook.get("url") if isinstance(webhook, Mapping) else None
        return url if isinstance(url, str) and url else None

    def with_staff_rules(
        self, outcome: Outcome, rules: Sequence[NotificationRule]
    ) -> dict[str, list[dict[str, Any]]]:
        """The ``notifications`` setting, as stored, with ``outcome``'s rules to the client
        (its staff) replaced by ``rules``; rules to the lead stay as they are, after them.

        Raises:
            ValueError: one of ``rules`` is addressed to the lead.
        """
        if any(rule.to != "client" for rule in rules):
            raise ValueError("only rules to the client's staff are replaced")
        to_lead = [rule for rule in self.notifications.get(outcome, []) if rule.to == "lead"]
        replaced = {**self.notifications, outcome: [*rules, *to_lead]}
        return {
            key: [rule.model_dump(mode="json", exclude_none=True) for rule in kept]
            for key, kept in replaced.items()
        }

    def rules_for(self, outcome: LeadStatus) -> list[NotificationRule]:
        """The messages an outcome sends (none for ``queued`` or ``error``)."""
        key = str(outcome)
        if key in ("qualified", "nurture", "disqualified"):
            return list(self.notifications.get(key, []))  # type: ignore[call-overload]
        return []


def name_problem(name: str, *, limit: int = MAX_NAME) -> str | None:
    """Why ``name`` (already stripped) cannot be stored as a name, or None: empty, over
    ``limit`` characters, or holding a character PostgreSQL cannot store."""
    if not name:
        return "must not be empty"
    if len(name) > limit:
        return f"is {len(name)} characters long: at most {limit}"
    unstorable = unstorable_text(name)
    return None if unstorable is None else f"holds {unstorable}"


def slug_problem(slug: str) -> str | None:
    """Why ``slug`` cannot be a client's slug, or None."""
    if len(slug) > MAX_SLUG:
        return f"is {len(slug)} characters long: at most {MAX_SLUG}"
    if not SLUG_PATTERN.match(slug):
        return f"use 1-{MAX_SLUG} lowercase letters, digits and dashes, not at the ends"
    return None


def region_problem(region: str) -> str | None:
    """Why ``region`` (upper case) cannot be a client's default phone region, or None: it
    must be an ISO 3166 country code with a phone numbering plan (``US``, ``GB``, ``DE``)."""
    if region in phonenumbers.SUPPORTED_REGIONS:
        return None
    return "not an ISO 3166 country code with a phone numbering plan (such as US, GB or DE)"


def rate_limit_problem(rate_limit: int) -> str | None:
    """Why ``rate_limit`` (requests per minute) cannot be an API key's rate limit, or None."""
    if 1 <= rate_limit <= MAX_RATE_LIMIT:
        return None
    return f"must be 1 to {MAX_RATE_LIMIT:,} requests per minute"


def parse_client_settings(data: Mapping[str, object] | None) -> ClientSettings:
    """Validate stored or submitted settings.

    Raises:
        pydantic.ValidationError: naming each bad key.
    """
    return ClientSettings.model_validate(dict(data or {}))
