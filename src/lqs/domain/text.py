"""Text that PostgreSQL can store: no NUL character, nothing that is not valid UTF-8."""

from __future__ import annotations


def storable(text: str) -> str:
    """``text`` with NUL written as ``\\x00`` and lone surrogates as ``\\udXXX`` escapes,
    so that a ``text`` column accepts it; other characters are kept."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def describe_error(exc: BaseException, limit: int = 500) -> str:
    """One storable line naming ``exc``: its type and the first line of its message."""
    lines = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return storable(lines[0] if lines else type(exc).__name__)[:limit]
