"""One definition of a lead's fields (``LeadSubmission``), and every list derived from it.

Where a list must differ from the definition (scoring, template variables), the difference
is pinned here, so a field added to the model reaches intake, scoring and templates, or
a test names the list it is missing from.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from uuid import uuid4

from lqs.db.catalog import load_expected_schema
from lqs.db.leads import _COLUMNS, _MERGE_ON_CONFLICT, ClaimedLead, merge_within_batch
from lqs.domain.leads import (
    CONSENT_FIELDS,
    CONTACT_FIELDS,
    LEAD_FIELDS,
    NOT_LEAD_FIELDS,
    PROFILE_FIELDS,
    LeadSubmission,
    NewLead,
    parse_lead,
)
from lqs.domain.scoring import SCORABLE_FIELDS
from lqs.domain.vocabulary import ConsentStatus
from lqs.worker.processor import _TEMPLATE_LEAD_FIELDS


def test_lead_fields_are_the_submission_model_fields_but_custom_and_the_consent_record() -> None:
    assert NOT_LEAD_FIELDS == ("consent", "custom")
    assert tuple(n for n in LeadSubmission.model_fields if n not in NOT_LEAD_FIELDS) == LEAD_FIELDS
    assert set(CONTACT_FIELDS) | set(CONSENT_FIELDS) <= set(LEAD_FIELDS)


def test_a_new_lead_has_every_lead_field_and_its_custom_fields() -> None:
    assert tuple(f.name for f in fields(NewLead)) == (*LEAD_FIELDS, "custom", "consent_proof")


def test_parse_lead_fills_every_field_of_the_submission() -> None:
    submitted = {
        name: "x" for name in LEAD_FIELDS if name not in {*CONTACT_FIELDS, *CONSENT_FIELDS}
    }
    submitted |= {
        "email": "ann@example.com",
        "phone": "+12015550123",
        "company_size": 12,
        "country": "de",
        "time_zone": "Europe/Berlin",
        "consent_status": "granted",
        "consent_source": "form",
        "consent_at": "2026-03-02T10:00:00+00:00",
    }

    lead = parse_lead(submitted)

    assert all(getattr(lead, name) is not None for name in LEAD_FIELDS)


def test_intake_writes_every_lead_field_to_a_column_of_the_leads_table() -> None:
    columns = {c["name"] for c in load_expected_schema()["tables"]["leads"]["columns"]}

    assert (*LEAD_FIELDS, "custom", "dedupe_key") == _COLUMNS
    assert set(_COLUMNS) <= columns


def test_a_merge_sets_every_lead_field() -> None:
    merge = _MERGE_ON_CONFLICT.as_string(None)

    for name in (*LEAD_FIELDS, "custom"):
        assert f'"{name}" = ' in merge, name


def test_rules_score_and_templates_show_every_field_but_the_consent_record() -> None:
    assert set(LEAD_FIELDS) - set(PROFILE_FIELDS) == {"consent_source", "consent_at"}
    assert SCORABLE_FIELDS == PROFILE_FIELDS
    assert set(_TEMPLATE_LEAD_FIELDS) == {"id", "received_at", "custom", *PROFILE_FIELDS}


def test_a_claimed_lead_reads_every_lead_field_from_its_row() -> None:
    row: dict[str, object] = {name: f"value of {name}" for name in LEAD_FIELDS}
    row |= {
        "id": uuid4(),
        "client_id": uuid4(),
        "received_at": datetime(2026, 3, 2, tzinfo=UTC),
        "consent_status": "denied",
        "custom": {"plan": "pro"},
        "status": "queued",  # bookkeeping columns are left out
        "score": None,
    }

    lead = ClaimedLead.from_row(row)

    assert lead.submitted.consent_status is ConsentStatus.DENIED
    assert lead.as_mapping() == {
        **{name: row[name] for name in LEAD_FIELDS},
        "custom": {"plan": "pro"},
    }


def test_an_unknown_consent_keeps_the_earlier_consent_whole_as_the_database_does() -> None:
    first = parse_lead(
        {"email": "a@example.com", "consent_status": "granted", "consent_source": "form"}
    )
    again = parse_lead(
        {"email": "a@example.com", "consent_status": "unknown", "consent_source": "csv"}
    )

    (merged,), _ = merge_within_batch([first, again])

    assert (merged.consent_status, merged.consent_source) == (ConsentStatus.GRANTED, "form")
