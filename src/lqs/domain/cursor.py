"""Opaque keyset cursors: where the next page of a listing starts.

A cursor is the URL-safe base64 (no padding) of a small JSON object: the format's version
``v``, the sort order it belongs to ``s``, the last row's sort key ``k`` (a moment as ISO
8601 text, or an integer) and the last row's id ``i``. Clients treat it as opaque; the
server takes the rows strictly after ``(k, i)`` in the listing's order, so pages neither
repeat nor skip rows however many arrive in between.

:func:`decode_cursor` refuses anything it did not make, in a form a person can act on:
:class:`InvalidCursor`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from lqs.errors import InputError

CURSOR_VERSION = 1
MAX_CURSOR_LENGTH = 512
"""Longer than any cursor :func:`encode_cursor` makes (about 150 characters)."""

INT_KEY_MIN, INT_KEY_MAX = -(2**31), 2**31 - 1
"""An integer key is a PostgreSQL ``integer``: one outside it is not a cursor made here."""

SortKey = datetime | int


class InvalidCursor(InputError, ValueError):
    """Raised when a cursor is not one this service made for this listing's order."""


@dataclass(frozen=True)
class Cursor:
    """The position after which a page starts."""

    sort: str
    key: SortKey
    last_id: UUID


def encode_cursor(cursor: Cursor) -> str:
    """The cursor as opaque URL-safe text."""
    key: str | int = cursor.key.isoformat() if isinstance(cursor.key, datetime) else cursor.key
    document = {"v": CURSOR_VERSION, "s": cursor.sort, "k": key, "i": str(cursor.last_id)}
    raw = json.dumps(document, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _document(text: str) -> dict[str, object]:
    if not text or len(text) > MAX_CURSOR_LENGTH:
        raise InvalidCursor("the cursor is empty or too long: pass next_cursor as given")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        document = json.loads(raw)
    except (binascii.Error, ValueError):  # UnicodeDecodeError and JSONDecodeError too
        raise InvalidCursor("the cursor is not one this service made") from None
    if not isinstance(document, dict):
        raise InvalidCursor("the cursor is not one this service made")
    return document


def decode_cursor(text: str, sort: str, key_type: type[datetime] | type[int]) -> Cursor:
    """The position ``text`` (from :func:`encode_cursor`) names, for a listing in ``sort``
    order whose sort key is a ``key_type``.

    Raises:
        InvalidCursor: garbage, another version, another sort order, or a key or id of
            the wrong kind.
    """
    document = _document(text)
    if document.get("v") != CURSOR_VERSION:
        raise InvalidCursor("the cursor is from another version: start again without it")
    if document.get("s") != sort:
        raise InvalidCursor("the cursor is for another sort order: start again without it")
    raw_key, raw_id = document.get("k"), document.get("i")
    if not isinstance(raw_id, str):
        raise InvalidCursor("the cursor is not one this service made")
    try:
        last_id = UUID(raw_id)
    except ValueError:
        raise InvalidCursor("the cursor is not one this service made") from None
    key: SortKey
    if key_type is int:
        if type(raw_key) is not int or not INT_KEY_MIN <= raw_key <= INT_KEY_MAX:
            raise InvalidCursor("the cursor is not one this service made")
        key = raw_key
    else:
        if not isinstance(raw_key, str):
            raise InvalidCursor("the cursor is not one this service made")
        try:
            key = datetime.fromisoformat(raw_key)
        except ValueError:
            raise InvalidCursor("the cursor is not one this service made") from None
        if key.tzinfo is None:
            raise InvalidCursor("the cursor is not one this service made")
    return Cursor(sort, key, last_id)
