"""``--since WHEN`` as an operator types it: a moment (ISO 8601) or an age (``2h``, ``7d``)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

_AGE = re.compile(r"(?P<amount>[0-9]{1,7})\s*(?P<unit>s|m|min|h|d|w)")
_UNIT = {
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "min": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}

SINCE_FORMS = "an ISO date or time (2026-03-01, 2026-03-01T09:30+02:00) or an age (30m, 2h, 7d, 2w)"
"""What :func:`parse_since` accepts, in the words its error uses."""


def parse_since(value: str, now: datetime) -> datetime:
    """The moment ``value`` names, with a time zone.

    An age, a whole number and a unit (``s``, ``m`` or ``min``, ``h``, ``d``, ``w``; case
    and a space between them do not matter), counts back from ``now``. Otherwise ``value``
    is read as an ISO 8601 date or date and time; one without an offset is local time
    (``2026-03-01`` is local midnight), as an operator at a terminal means it.

    Raises:
        ValueError: ``value`` is neither, or reaches back before the year 1; the message
            quotes it and lists :data:`SINCE_FORMS`.
    """
    text = value.strip()
    age = _AGE.fullmatch(text.lower())
    if age is not None:
        try:
            return now - int(age["amount"]) * _UNIT[age["unit"]]
        except OverflowError:
            raise ValueError(f"--since {value!r} reaches back before the year 1") from None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since {value!r}: expected {SINCE_FORMS}") from None
    return moment if moment.tzinfo is not None else moment.astimezone()
