"""Syntax checks for email addresses and phone numbers, as strict as the providers are."""

from __future__ import annotations

import re
from collections.abc import Iterable

_EMAIL = re.compile(
    r"^[^@\s<>(),;:\"\[\]\\]+@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)
_MAILBOX = re.compile(r"^\s*(?:(?P<name>[^<>]*?)\s*<(?P<angle>[^<>]+)>|(?P<bare>[^<>]+?))\s*$")
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_SHORT_CODE = re.compile(r"^\d{5,6}$")
_ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")


def is_email(address: str) -> bool:
    """Whether ``address`` is a bare ``local@domain.tld`` address."""
    return bool(_EMAIL.match(address))


def mailbox_address(mailbox: str) -> str | None:
    """The address in ``email@example.com`` or ``Name <email@example.com>``, if valid."""
    match = _MAILBOX.match(mailbox)
    if match is None:
        return None
    address = (match.group("angle") or match.group("bare") or "").strip()
    return address if is_email(address) else None


def domain_of(address: str) -> str:
    """The lower-cased domain of an address already known to be valid."""
    return address.rsplit("@", 1)[1].lower()


def is_e164(number: str) -> bool:
    """Whether ``number`` is an E.164 phone number (``+`` and up to 15 digits)."""
    return bool(_E164.match(number))


def is_sms_sender(sender: str) -> bool:
    """Whether ``sender`` can be an SMS ``From``: E.164, a short code or an alphanumeric ID."""
    return is_e164(sender) or bool(_SHORT_CODE.match(sender) or _ALPHANUMERIC_SENDER.match(sender))


def listed(address: str, listing: Iterable[str]) -> bool:
    """Whether ``address`` is in ``listing``, ignoring case and surrounding spaces."""
    wanted = address.strip().lower()
    return any(wanted == item.strip().lower() for item in listing)
