"""A moment as an operator types it after ``--since``: a time, or an age (``2h``, ``7d``)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

_AGE = re.compile(r"(?P<amount>\d{1,6})\s*(?P<unit>s|m|min|h|d|w)", re.IGNORECASE)
_UNITS = {
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "min": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}

SINCE_FORMS = (
    "a time (2026-03-01, 2026-03-01T09:30, 2026-03-01T09:30+02:00) or an age (30m, 2h, 7d, 2w)"
)
"""What :func:`parse_since` accepts, as an error message lists it."""


def parse_since(value: str, now: datetime) -> datetime:
    """The moment ``value`` names, timezone-aware.

    An age (a whole number and a unit: ``s``, ``m`` or ``min``, ``h``, ``d``, ``w``) counts
    back from ``now``. An ISO 8601 date or date and time is taken as given; without an
    offset it is local time (``2026-03-01`` is local midnight).

    Raises:
        ValueError: ``value`` is neither (the message lists :data:`SINCE_FORMS`).
    """
    text = value.strip()
    age = _AGE.fullmatch(text)
    if age is not None:
        try:
            return now - int(age["amount"]) * _UNITS[age["unit"].lower()]
        except OverflowError:
            raise ValueError(f"--since {value!r} reaches back before the year 1") from None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since must be {SINCE_FORMS}, not {value!r}") from None
    return moment if moment.tzinfo is not None else moment.astimezone()
