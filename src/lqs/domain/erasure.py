"""Erasure (GDPR Art. 17): who is to be erased, and what their records become.

Pure: the addresses an erasure request names, the placeholders and notes that replace
the person's data, and the request's checks. :mod:`lqs.db.erasure` applies them.

What remains of an erased person is a non-identifying audit trail: the lead's id with a
placeholder address (``erased-<lead id>@erased.invalid``: the ``leads_reachable`` check
wants an email or a phone, and ``.invalid`` can never be delivered to), the
communications' ids, client, type, status, provider, timestamps, retry counts and
``consent_status``, with ``compliance_notes = 'erased on <date>: <reason>'``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from uuid import UUID

from lqs.domain.leads import normalise_email, normalise_phone
from lqs.domain.notifications import normalise_recipient
from lqs.domain.vocabulary import Channel
from lqs.errors import InputError

ERASED_RECIPIENT = "erased"
"""What an erased communication's ``recipient`` (NOT NULL in the seed) becomes."""

ERASED_LABEL = "(erased)"
"""How listings show a suppression whose address was erased (its hash alone is kept)."""

MAX_REASON = 500

IDLE_RATIO = 2.0
"""Between two batches, an erasure of many people waits this many times as long as the
batch took, so that sending and processing beside it keep their pace (bench/erasure.py
measures it); erasing one person is one batch, and does not wait."""


class ErasureRequestError(InputError, ValueError):
    """An erasure request is unusable: no reason, or an address that is not one."""


@dataclass(frozen=True)
class Subject:
    """One address of a person to erase, in the form the suppression list stores."""

    channel: Channel
    """``email`` for an email address, ``sms`` for a phone number."""
    address: str


def placeholder_email(lead_id: UUID) -> str:
    """The non-identifying address an erased lead keeps (its table requires one)."""
    return f"erased-{lead_id}@erased.invalid"


def compliance_note(day: date, reason: str) -> str:
    """What an erased communication's ``compliance_notes`` says."""
    return f"erased on {day:%Y-%m-%d}: {reason}"


def checked_reason(reason: str) -> str:
    """The reason, trimmed to one line.

    Raises:
        ErasureRequestError: empty or longer than 500 characters.
    """
    text = " ".join(reason.split())
    if not text:
        raise ErasureRequestError("the erasure needs a reason (--reason)")
    if len(text) > MAX_REASON:
        raise ErasureRequestError(f"the reason is longer than {MAX_REASON} characters")
    return text


def email_subject(raw: str) -> Subject:
    """An email address to erase, normalised as the suppression list stores it.

    Raises:
        ErasureRequestError: not an email address.
    """
    try:
        address = normalise_email(raw.strip())
    except ValueError as exc:
        raise ErasureRequestError(f"not an email address: {raw.strip()!r} ({exc})") from exc
    return Subject(Channel.EMAIL, normalise_recipient(Channel.EMAIL, address))


def phone_subject(raw: str) -> Subject:
    """A phone number to erase, in E.164 (it must start with ``+``).

    Raises:
        ErasureRequestError: not a phone number in international form.
    """
    text = raw.strip()
    try:
        if not text.startswith("+"):
            raise ValueError("give it in international form, starting with +")
        number = normalise_phone(text, "US")
    except ValueError as exc:
        raise ErasureRequestError(f"not a phone number: {text!r} ({exc})") from exc
    return Subject(Channel.SMS, normalise_recipient(Channel.SMS, number))


def subject_of_line(line: str) -> Subject:
    """One line of a bulk erasure file: an email address (it has an ``@``), else a phone
    number.

    Raises:
        ErasureRequestError: neither.
    """
    return email_subject(line) if "@" in line else phone_subject(line)


def subjects_of_lines(lines: Iterable[str]) -> list[Subject]:
    """Every address of a bulk erasure file, once each, in file order; blank lines and
    lines starting with ``#`` are skipped.

    Raises:
        ErasureRequestError: a line is neither an email address nor a phone number (the
            message names the line).
    """
    seen: dict[Subject, None] = {}
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            seen.setdefault(subject_of_line(text), None)
        except ErasureRequestError as exc:
            raise ErasureRequestError(f"line {number}: {exc}") from exc
    return list(seen)
