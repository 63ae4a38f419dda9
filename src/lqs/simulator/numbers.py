"""Whole numbers in the simulator's inputs (headers, configuration).

``str.isdigit()`` accepts digits ``int()`` refuses (``"²"``) and others it reads (``"٣"``),
and ``int()`` refuses more than 4,300 digits: a header such as ``TTL: ²`` passed the check
and then raised, a 500 where the provider answers 400. The simulator imports nothing else
from LQS (it checks LQS's adapters independently), so it reads numbers here.
"""

from __future__ import annotations

import re

MAX_DIGITS = 18
"""Enough for unix seconds, a TTL or an HTTP status; a longer number is not one of them."""

_DIGITS = re.compile(f"[0-9]{{1,{MAX_DIGITS}}}")


def ascii_number(text: str) -> int | None:
    """``text`` as a whole number in ASCII digits only, at most :data:`MAX_DIGITS` of them;
    None for anything else (a sign, a space, another script's digits, an empty string)."""
    return int(text) if _DIGITS.fullmatch(text) else None
