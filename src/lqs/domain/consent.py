"""Proof of consent (GDPR Art. 7(1)): the consent record a submission may carry, and how a
communication names the consent history entry it relied on.

A submission's ``consent`` object (:class:`ConsentRecord`) says what the person agreed to
(``text_version`` or the ``text`` itself, exactly one), when (``captured_at``) and from
where (``ip``, ``user_agent``). It is validated here and travels as a
:class:`ConsentProof` into the append-only consent history (``lqs.db.consent``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from lqs.domain.text import blank_is_missing
from lqs.domain.vocabulary import ConsentStatus

MAX_TEXT_VERSION = 100
MAX_CONSENT_TEXT = 10_000
MAX_USER_AGENT = 1000
MAX_SOURCE = 100
"""The history's ``source`` column holds at most this many characters."""
CLOCK_SKEW = timedelta(minutes=5)
"""How far in the future ``captured_at`` may be: the submitter's clock may run ahead."""

_Text = Annotated[str, StringConstraints(strip_whitespace=True)]


class ConsentRecord(BaseModel):
    """The ``consent`` object of a submitted lead (every field named in a 422 as
    ``consent.<field>``)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    status: ConsentStatus
    source: _Text | None = Field(default=None, max_length=MAX_SOURCE)
    text_version: _Text | None = Field(default=None, max_length=MAX_TEXT_VERSION)
    text: _Text | None = Field(default=None, max_length=MAX_CONSENT_TEXT)
    captured_at: datetime | None = None
    ip: str | None = None
    user_agent: _Text | None = Field(default=None, max_length=MAX_USER_AGENT)

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_missing(cls, value: object) -> object:
        return blank_is_missing(value)

    @field_validator("status", mode="before")
    @classmethod
    def _status_lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("status")
    @classmethod
    def _status_states_something(cls, value: ConsentStatus) -> ConsentStatus:
        if value is ConsentStatus.UNKNOWN:
            raise ValueError("a consent record states granted, denied or withdrawn")
        return value

    @field_validator("ip")
    @classmethod
    def _ip_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(ipaddress.ip_address(value.strip()))
        except ValueError:
            raise ValueError("must be an IPv4 or IPv6 address, such as 203.0.113.7") from None


@dataclass(frozen=True)
class ConsentProof:
    """The evidence of a consent record, validated: what the history stores beside the
    status."""

    source: str | None
    text_version: str | None
    text: str | None
    captured_at: datetime | None
    ip: str | None
    user_agent: str | None


def record_problems(record: ConsentRecord, now: datetime) -> list[tuple[str, str]]:
    """(field, message) for what the model alone cannot check: exactly one of
    ``text_version`` and ``text``; ``captured_at`` no later than ``now`` plus
    :data:`CLOCK_SKEW`."""
    problems = []
    if (record.text_version is None) == (record.text is None):
        problems.append(
            ("consent.text_version", "give exactly one of consent.text_version and consent.text")
        )
    captured = utc(record.captured_at)
    if captured is not None and captured > now + CLOCK_SKEW:
        problems.append(("consent.captured_at", "is in the future"))
    return problems


def utc(at: datetime | None) -> datetime | None:
    """``at`` in UTC; a time without an offset is taken as UTC. (PostgreSQL refuses the
    offsets beyond ±15:59 that ISO 8601 allows.)"""
    if at is None:
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def proof_of(record: ConsentRecord) -> ConsentProof:
    """The record's evidence, times in UTC."""
    return ConsentProof(
        source=record.source,
        text_version=record.text_version,
        text=record.text,
        captured_at=utc(record.captured_at),
        ip=record.ip,
        user_agent=record.user_agent,
    )


@dataclass(frozen=True)
class ReliedEntry:
    """The consent history entry a send relied on: the lead's latest."""

    id: int
    consent_status: str
    source: str
    recorded_at: datetime
    api_key_name: str | None
    api_key_prefix: str | None


def consent_note(entry: ReliedEntry | None) -> str:
    """What a communication's ``compliance_notes`` says of the consent it relied on:
    ``consent: history #12 (granted via api key "forms" lqs_ab12 2026-12-07T03:00Z)``, or
    ``consent: lead record (no history entry)`` for a lead whose consent predates the
    history (or whose latest entry no longer says what the lead's record says)."""
    if entry is None:
        return "consent: lead record (no history entry)"
    if entry.api_key_prefix is not None:
        via = f'api key "{entry.api_key_name}" {entry.api_key_prefix}'
    else:
        via = entry.source
    at = entry.recorded_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
    return f"consent: history #{entry.id} ({entry.consent_status} via {via} {at})"


def evidence_json(proof: ConsentProof | None) -> dict[str, Any]:
    """The proof's columns by name (the history's column names), for a set-based insert."""
    if proof is None:
        return {}
    return {
        "text_version": proof.text_version,
        "consent_text": proof.text,
        "captured_at": proof.captured_at.isoformat() if proof.captured_at else None,
        "ip": proof.ip,
        "user_agent": proof.user_agent,
    }
