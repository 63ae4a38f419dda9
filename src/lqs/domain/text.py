"""Text that PostgreSQL can store: no NUL character, nothing that is not valid UTF-8.

PostgreSQL's ``text`` and ``jsonb`` refuse NUL (U+0000), and a lone surrogate (U+D800 to
U+DFFF, e.g. ``"\\ud800"`` in JSON) has no UTF-8 form to send at all. Tenant input, tenant
templates and error messages quoting them all go through these functions.
"""

from __future__ import annotations

import re

MAX_WHOLE_NUMBER_DIGITS = 12
"""The most digits :func:`whole_number` reads: enough for any limit LQS takes (a rate
limit of a billion is 10), and far below ``int()``'s 4,300-digit refusal."""
_WHOLE_NUMBER = re.compile(f"[0-9]{{1,{MAX_WHOLE_NUMBER_DIGITS}}}")


def first_unstorable(text: str) -> tuple[int, str] | None:
    """The 0-based position and the character of the first thing in ``text`` PostgreSQL
    cannot store (a NUL is looked for first), or None. One pass over the text (two if it is
    not ASCII)."""
    position = text.find("\x00")
    if position >= 0:
        return position, "\x00"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            return exc.start, text[exc.start]
    return None


def unstorable_text(text: str) -> str | None:
    """Describe the first character of ``text`` that PostgreSQL cannot store, or None:
    its name and 1-based position, e.g. ``NUL (U+0000) at character 12``."""
    found = first_unstorable(text)
    if found is None:
        return None
    position, char = found
    what = "NUL (U+0000)" if char == "\x00" else f"a lone surrogate (U+{ord(char):04X})"
    return f"{what} at character {position + 1}"


def storable(text: str) -> str:
    """``text`` with NUL written as ``\\x00`` and lone surrogates as ``\\ud800``-style escapes,
    so that a ``text`` column accepts it; other characters are kept."""
    if first_unstorable(text) is None:
        return text
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def describe_error(exc: BaseException, limit: int = 500) -> str:
    """One storable line naming ``exc``: its type and the first line of its message."""
    lines = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return storable(lines[0] if lines else type(exc).__name__)[:limit]


def whole_number(text: str) -> int | None:
    """``text`` as a whole number written in ASCII digits only, at most
    :data:`MAX_WHOLE_NUMBER_DIGITS` of them; None for anything else. Not ``str.isdigit()``:
    it accepts digits ``int()`` refuses (``"²"``), and ``int()`` refuses over 4,300 digits.
    The caller checks the range."""
    return int(text) if _WHOLE_NUMBER.fullmatch(text) else None


def blank_is_missing(value: object) -> object:
    """A blank string as None, other values as they are: CSV cells and sloppy forms send
    "" for "not given" (the intake models' before-validators)."""
    if isinstance(value, str) and not value.strip():
        return None
    return value
