"""The consent record a submission may carry (``lqs.domain.consent``), through
``parse_lead``; and the compliance note naming the consent a send relied on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lqs.domain.consent import CLOCK_SKEW, ConsentProof, ReliedEntry, consent_note
from lqs.domain.leads import LeadValidationError, parse_lead
from lqs.domain.vocabulary import ConsentStatus

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
RECORD = {"status": "Granted", "text_version": "v3", "captured_at": "2026-12-07T02:59:00Z",
          "ip": " 203.0.113.7 ", "user_agent": "curl/8", "source": "form"}  # fmt: skip


def _fields(data: dict[str, object]) -> list[str]:
    with pytest.raises(LeadValidationError) as raised:
        parse_lead(data, now=NOW)
    return [e.field for e in raised.value.errors]


def test_a_consent_record_fills_the_leads_consent_and_carries_its_proof() -> None:
    lead = parse_lead({"email": "a@corp.example", "consent": RECORD}, now=NOW)

    assert lead.consent_status is ConsentStatus.GRANTED
    assert (lead.consent_source, lead.consent_at) == (
        "form",
        datetime(2026, 12, 7, 2, 59, tzinfo=UTC),
    )
    assert lead.consent_proof == ConsentProof(
        "form", "v3", None, datetime(2026, 12, 7, 2, 59, tzinfo=UTC), "203.0.113.7", "curl/8"
    )


def test_a_lead_without_a_record_has_no_proof() -> None:
    assert (
        parse_lead({"email": "a@corp.example", "consent_status": "granted"}).consent_proof is None
    )


def test_captured_at_may_be_ahead_by_the_clock_skew_but_no_more() -> None:
    ahead = {**RECORD, "captured_at": (NOW + CLOCK_SKEW).isoformat()}
    too_far = {**RECORD, "captured_at": (NOW + CLOCK_SKEW + timedelta(seconds=1)).isoformat()}

    assert parse_lead({"email": "a@corp.example", "consent": ahead}, now=NOW).consent_proof
    assert _fields({"email": "a@corp.example", "consent": too_far}) == ["consent.captured_at"]


def test_every_bad_consent_field_is_named_in_one_error() -> None:
    bad = {"status": "unknown", "text_version": "v3", "text": "I agree", "ip": "localhost",
           "user_agent": "u" * 1001, "extra": 1}  # fmt: skip

    assert sorted(_fields({"email": "a@corp.example", "consent": bad})) == [
        "consent.extra", "consent.ip", "consent.status", "consent.user_agent",
    ]  # fmt: skip


def test_a_record_without_wording_names_text_version() -> None:
    record = {"status": "denied", "captured_at": "2026-12-07T02:00:00Z"}

    assert _fields({"email": "a@corp.example", "consent": record}) == ["consent.text_version"]


def test_a_record_holding_a_nul_is_refused_naming_the_field() -> None:
    record = {**RECORD, "user_agent": "curl\x00"}

    assert _fields({"email": "a@corp.example", "consent": record}) == ["consent.user_agent"]


def test_the_note_names_the_entry_its_key_and_when() -> None:
    at = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)
    by_key = ReliedEntry(1234, "granted", "form", at, "website forms", "lqs_abcd1234")
    by_link = ReliedEntry(7, "withdrawn", "unsubscribe link", at, None, None)

    assert consent_note(by_key) == (
        'consent: history #1234 (granted via api key "website forms" lqs_abcd1234'
        " 2026-12-07T04:00Z)"
    )
    assert consent_note(by_link) == (
        "consent: history #7 (withdrawn via unsubscribe link 2026-12-07T04:00Z)"
    )
    assert consent_note(None) == "consent: lead record (no history entry)"


def test_a_csv_rows_content_hash_is_what_it_was_before_consent_records() -> None:
    # The hash of this row before migration 0019: a file imported then is not imported
    # again (lead_import_rows remembers these hashes).
    lead = parse_lead({"email": "a@b.example", "consent_status": "granted", "custom": {"x": 1}})

    assert lead.content_hash().hex() == (
        "e13a2e36db6e6a8ccb32f565af8b07c58e7ca26299dd4873b94054ccfea060b9"
    )
