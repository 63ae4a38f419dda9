"""Parsing and normalising submitted leads; folding duplicates inside one batch."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from lqs.db.leads import merge_within_batch
from lqs.domain.leads import LeadValidationError, normalise_email, normalise_phone, parse_lead
from lqs.domain.vocabulary import ConsentStatus


def test_email_domain_is_lowercased_and_dedupe_key_ignores_case() -> None:
    lead = parse_lead({"email": "Ann.Lee@Example.COM"})
    assert lead.email == "Ann.Lee@example.com"
    assert lead.dedupe_key == "email:ann.lee@example.com"


def test_phone_only_lead_is_keyed_by_e164_phone() -> None:
    lead = parse_lead({"phone": "030 1234567"}, default_region="DE")
    assert lead.phone == "+49301234567"
    assert lead.dedupe_key == "phone:+49301234567"


def test_phone_with_plus_ignores_the_default_region() -> None:
    assert normalise_phone("+44 20 7946 0958", "US") == "+442079460958"


@pytest.mark.parametrize("raw", ["12", "not a number", "+1 555"])
def test_impossible_phone_numbers_are_refused(raw: str) -> None:
    with pytest.raises(LeadValidationError) as caught:
        parse_lead({"phone": raw})
    assert [e.field for e in caught.value.errors] == ["phone"]


def test_blank_strings_count_as_missing() -> None:
    lead = parse_lead({"email": "a@b.example", "first_name": "  ", "company_size": ""})
    assert lead.first_name is None
    assert lead.company_size is None


def test_unknown_fields_go_to_custom_and_merge_with_explicit_custom() -> None:
    lead = parse_lead({"email": "a@b.example", "budget": 5000, "custom": {"plan": "pro"}})
    assert lead.custom == {"plan": "pro", "budget": 5000}


def test_naive_consent_time_is_taken_as_utc() -> None:
    lead = parse_lead(
        {"email": "a@b.example", "consent_status": "GRANTED", "consent_at": "2026-01-02T03:04:05"}
    )
    assert lead.consent_status is ConsentStatus.GRANTED
    assert lead.consent_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_every_bad_field_is_reported_at_once() -> None:
    with pytest.raises(LeadValidationError) as caught:
        parse_lead({"email": "nope", "country": "USA", "company_size": "many", "phone": "1"})
    assert {e.field for e in caught.value.errors} == {"email", "country", "company_size", "phone"}


def test_a_lead_needs_an_email_or_a_phone() -> None:
    with pytest.raises(LeadValidationError, match="needs an email or a phone"):
        parse_lead({"first_name": "Ann"})


def test_oversized_custom_data_is_refused() -> None:
    with pytest.raises(LeadValidationError, match="custom"):
        parse_lead({"email": "a@b.example", "notes": "x" * 20_000})


def test_reserved_domains_are_refused() -> None:
    with pytest.raises(LeadValidationError, match="email"):
        parse_lead({"email": "someone@localhost"})


def test_batch_duplicates_fold_later_values_over_earlier_ones() -> None:
    first = parse_lead({"email": "a@b.example", "first_name": "A", "custom": {"x": 1}})
    other = parse_lead({"email": "c@d.example"})
    again = parse_lead(
        {
            "email": "A@b.example",
            "job_title": "CTO",
            "custom": {"y": 2},
            "consent_status": "unknown",
        }
    )
    distinct, positions = merge_within_batch([first, other, again])
    assert positions == [0, 1, 0]
    assert len(distinct) == 2
    merged = distinct[0]
    assert merged.first_name == "A"
    assert merged.job_title == "CTO"
    assert merged.custom == {"x": 1, "y": 2}


_LOCAL = st.text(alphabet="aZ09._%+-!#'\"()@ \\é", min_size=0, max_size=70)
_DOMAIN = st.one_of(
    st.text(alphabet="abcXYZ019.-_é", min_size=0, max_size=30),
    st.sampled_from(["Example.COM", "corp.example", "localhost", "x.test", "a..b.com", "-a.com",
                     "xn--bcher-kva.example", "b\u00fccher.example", "[127.0.0.1]", "gmail.com"]),
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(local=_LOCAL, domain=_DOMAIN)
def test_fast_email_path_agrees_with_email_validator(local: str, domain: str) -> None:
    raw = f"{local}@{domain}"
    try:
        expected: str | None = validate_email(raw, check_deliverability=False).normalized
    except EmailNotValidError:
        expected = None
    try:
        found: str | None = normalise_email(raw)
    except ValueError:
        found = None
    assert found == expected


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Ann@Example.COM", "Ann@example.com"),
        ("POSTMASTER@corp.example", "postmaster@corp.example"),
        ("Sales@Corp.Example", "sales@corp.example"),
        ("a@xn--bcher-kva.example", "a@bücher.example"),
    ],
)
def test_email_normalisation_examples(raw: str, normalised: str) -> None:
    assert normalise_email(raw) == normalised


def test_equal_leads_have_equal_content_hashes() -> None:
    a = parse_lead({"email": "a@b.example", "custom": {"x": 1, "y": 2}})
    b = parse_lead({"email": "a@b.example", "custom": {"y": 2, "x": 1}})
    c = parse_lead({"email": "a@b.example", "custom": {"x": 2}})
    assert a.content_hash() == b.content_hash()
    assert a.content_hash() != c.content_hash()
