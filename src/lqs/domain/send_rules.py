"""Quiet hours (send windows) and frequency caps: may a message to a lead go now?

A client sets, per channel, a send window (``send_window: {sms: {start: "08:00", end:
"21:00"}}``, null or absent: any time) and a frequency cap (``frequency_cap: {sms: {max: 3,
action: "reject"}}``, absent: no cap). :func:`decide` turns them, the recipient's time
zone, the clock and the recipient's recent sends into :class:`Send`, :class:`Defer` or
:class:`Reject`. Pure: the dispatcher reads the settings and the recent sends, and
applies the decision (docs/COMPLIANCE.md).

A window is read on the recipient's wall clock: ``start`` inclusive, ``end`` exclusive,
and a window whose end is before its start wraps midnight (``22:00``-``06:00``). On the
days the clocks change, "inside" still means "the wall clock shows a time in the
window", which decides both edge cases:

- an opening that does not exist (02:30 on a spring-forward day) opens at the first
  instant after the gap (03:00 new time), the first moment the clock shows a later time;
- an opening that exists twice (01:30 in New York, 02:30 in Berlin on a fall-back day)
  opens at its first occurrence; the wall clock passing it again later opens it again.

The recipient's zone (:func:`recipient_zone`) is the lead's own ``time_zone``, else the
zone of its phone number, else of its country, else the client's ``time_zone``. Where
phonenumbers gives several zones for a number (a UK mobile: Guernsey, Isle of Man, Jersey,
London), the first is used; a country's zone is the first zone of the country's example
fixed-line number in the same data (US: America/New_York, CA: America/Halifax).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_zones
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lqs.domain.vocabulary import Channel

CAP_PERIOD = timedelta(hours=24)
"""A frequency cap counts the sends of this rolling period."""
MAX_CAP = 1000
"""The highest cap a client may set (messages per recipient, channel and 24 h)."""
MAX_ZONE_NAME = 64
"""The longest time zone name kept (``leads.time_zone`` is ``varchar(64)``)."""

_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


class SendWindow(BaseModel):
    """When messages of one channel may go, on the recipient's wall clock (HH:MM)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        if not _CLOCK.match(value):
            raise ValueError(f"{value!r} is not a time of day: use HH:MM, 00:00 to 23:59")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> SendWindow:
        if self.start == self.end:
            raise ValueError("start and end must differ (omit the window to send at any time)")
        return self

    @property
    def opens(self) -> time:
        return time.fromisoformat(self.start)

    @property
    def closes(self) -> time:
        return time.fromisoformat(self.end)

    def contains(self, wall: time) -> bool:
        """Whether a wall-clock time is inside the window (start in, end out)."""
        if self.opens < self.closes:
            return self.opens <= wall < self.closes
        return wall >= self.opens or wall < self.closes


class FrequencyCap(BaseModel):
    """At most ``max`` messages of one channel to one recipient in 24 h; over it, the
    message is rejected, or deferred until a counted send leaves the 24 h."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max: int = Field(ge=1, le=MAX_CAP)
    action: Literal["reject", "defer"] = "reject"


def known_channels(value: object) -> object:
    """A ``send_window`` or ``frequency_cap`` setting with only known channel keys (null:
    none); a pydantic ``before`` validator, so an unknown key is refused with its name
    rather than by the enum's error.

    Raises:
        ValueError: naming the unknown channel.
    """
    if isinstance(value, dict):
        known = {c.value for c in Channel}
        unknown = [str(k) for k in value if k not in known]
        if unknown:
            raise ValueError(
                f"unknown channel {unknown[0]!r}: the channels are {', '.join(sorted(known))}"
            )
    return {} if value is None else value


class SendRules(BaseModel):
    """The send windows and frequency caps of a client, by channel (client settings)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    send_window: dict[Channel, SendWindow | None] = Field(default_factory=dict)
    frequency_cap: dict[Channel, FrequencyCap | None] = Field(default_factory=dict)

    @field_validator("send_window", "frequency_cap", mode="before")
    @classmethod
    def _known_channels(cls, value: object) -> object:
        return known_channels(value)

    def window(self, channel: str) -> SendWindow | None:
        """The channel's window; None: the channel may send at any time."""
        return self.send_window.get(Channel(channel))

    def cap(self, channel: str) -> FrequencyCap | None:
        """The channel's cap; None: no cap."""
        return self.frequency_cap.get(Channel(channel))

    @property
    def capped_channels(self) -> frozenset[str]:
        return frozenset(c.value for c, cap in self.frequency_cap.items() if cap is not None)


@dataclass(frozen=True)
class Send:
    """The message may go now."""


@dataclass(frozen=True)
class Defer:
    """Not now: the message is due again at ``until`` (the earliest moment it may go)."""

    until: datetime
    reason: str
    rule: Literal["quiet_hours", "frequency_cap"]
    """Which rule holds the message back (a cap first, when both do)."""


@dataclass(frozen=True)
class Reject:
    """Never: the message is rejected with ``reason`` as its compliance note."""

    reason: str


SendDecision = Send | Defer | Reject


def decide(
    channel: str,
    window: SendWindow | None,
    zone: ZoneInfo,
    now: datetime,
    recent: Sequence[datetime],
    cap: FrequencyCap | None,
) -> SendDecision:
    """May a message on ``channel`` go at ``now`` (aware)?

    ``recent`` are the times of the sends to the same recipient on the same channel for
    the same client in the 24 h before ``now`` (any order); one stamped after ``now``
    counts too (another worker's clock, or a send recorded while this decision waited
    for the recipient's lock: leaving it out would let the cap be passed). Over the cap,
    the message is
    rejected, or deferred to when enough of them leave the 24 h (and then to the window's
    next opening from there). Outside the window, it is deferred to the window's next
    opening (:func:`next_inside`). A deferral is always later than ``now`` and inside the
    window.
    """
    start = now
    cap_note = None
    if cap is not None:
        counted = sorted(t for t in recent if now - CAP_PERIOD < t)
        if len(counted) >= cap.max:
            cap_note = (
                f"frequency cap: {len(counted)} {channel} messages to this recipient in 24 h"
                f" (max {cap.max})"
            )
            if cap.action == "reject":
                return Reject(cap_note)
            # The moment the count drops below the cap: the oldest sends that must leave.
            start = counted[len(counted) - cap.max] + CAP_PERIOD
    if window is not None:
        opening = next_inside(window, zone, start)
        if opening != start:
            local = opening.astimezone(zone)
            note = (
                f"quiet hours: {channel} window {window.start}-{window.end} {zone.key};"
                f" deferred to {local.isoformat(timespec='minutes')}"
            )
            if cap_note is None:
                return Defer(opening, note, "quiet_hours")
            return Defer(opening, f"{cap_note}; {note}", "frequency_cap")
    if cap_note is not None:
        local = start.astimezone(zone)
        note = f"{cap_note}; deferred to {local.isoformat(timespec='minutes')}"
        return Defer(start, note, "frequency_cap")
    return Send()


def inside(window: SendWindow, zone: ZoneInfo, moment: datetime) -> bool:
    """Whether the recipient's wall clock shows a time inside ``window`` at ``moment``."""
    return window.contains(moment.astimezone(zone).time().replace(tzinfo=None))


def next_inside(window: SendWindow, zone: ZoneInfo, now: datetime) -> datetime:
    """The earliest moment at or after ``now`` when the wall clock in ``zone`` is inside
    ``window`` (``now`` itself when it is inside).

    The wall clock enters the window either by passing its start (once, or twice on a
    fall-back day) or by jumping into it when the clocks change; the answer is the
    earliest of those moments (within the next three days, always enough).
    """
    if inside(window, zone, now):
        return now
    today = now.astimezone(zone).date()
    candidates: list[datetime] = []
    for offset in range(-1, 3):
        day = today + timedelta(days=offset)
        candidates += _openings(window.opens, zone, day)
        candidates += _transitions(zone, day)
    found = [c for c in candidates if c > now and inside(window, zone, c)]
    if not found:  # pragma: no cover - a non-empty window always opens within a day
        raise ValueError(f"window {window.start}-{window.end} never opens in {zone.key}")
    return min(found)


def _openings(opens: time, zone: ZoneInfo, day: date) -> list[datetime]:
    """The moments the wall clock shows ``opens`` on ``day`` (none in a gap: the jump
    over it is one of :func:`_transitions`)."""
    found = []
    for fold in (0, 1):
        wall = datetime.combine(day, opens, tzinfo=zone).replace(fold=fold)
        moment = wall.astimezone(UTC)
        back = moment.astimezone(zone)
        if (back.date(), back.time()) == (day, opens):
            found.append(moment)
    return found


def _transitions(zone: ZoneInfo, day: date) -> list[datetime]:
    """The moment the zone's offset changes during ``day`` (UTC), if it does."""
    low = datetime.combine(day, time(), tzinfo=UTC) - timedelta(hours=14)
    high = low + timedelta(hours=52)
    if low.astimezone(zone).utcoffset() == high.astimezone(zone).utcoffset():
        return []
    # Changes are days apart: one change between low and high; find its first second.
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        middle = middle.replace(microsecond=0)
        if middle.astimezone(zone).utcoffset() == low.astimezone(zone).utcoffset():
            low = middle
        else:
            high = middle
    return [high]


# ------------------------------------------------------------------ the recipient's zone


def zone_problem(name: str) -> str | None:
    """Why ``name`` is not an IANA time zone name (``America/New_York``), or None."""
    if len(name) > MAX_ZONE_NAME:
        return f"is {len(name)} characters long: at most {MAX_ZONE_NAME}"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {name!r}: use an IANA name such as America/New_York"
    return None


@lru_cache(maxsize=4096)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@lru_cache(maxsize=16384)
def phone_zone(phone: str) -> str | None:
    """The first zone phonenumbers gives for an E.164 number, or None (unknown)."""
    try:
        number = phonenumbers.parse(phone)
    except phonenumbers.NumberParseException:
        return None
    zones = phone_zones.time_zones_for_number(number)
    first = zones[0] if zones else None
    return None if first is None or first == phone_zones.UNKNOWN_TIMEZONE else first


@lru_cache(maxsize=512)
def country_zone(country: str) -> str | None:
    """The zone of a country (ISO 3166 code): the first zone of its example fixed-line
    number in phonenumbers' data; None when phonenumbers has none."""
    number = phonenumbers.example_number(country.upper())
    if number is None:
        return None
    zones = phone_zones.time_zones_for_number(number)
    first = zones[0] if zones else None
    return None if first is None or first == phone_zones.UNKNOWN_TIMEZONE else first


def recipient_zone(
    lead_zone: str | None, phone: str | None, country: str | None, client_zone: str
) -> ZoneInfo:
    """The lead's time zone: its own ``time_zone``, else its phone number's, else its
    country's, else the client's (UTC if even that is unusable)."""
    for name in (
        lead_zone,
        phone_zone(phone) if phone else None,
        country_zone(country) if country else None,
        client_zone,
    ):
        zone = _zone(name) if name else None
        if zone is not None:
            return zone
    return ZoneInfo("UTC")
