"""``parse_lead`` against hostile submissions: text PostgreSQL cannot store, and shapes
that would make later steps fail (deep nesting, numbers jsonb or Python cannot carry).

Every refusal must be a ``LeadValidationError`` naming the field, with messages that are
themselves safe to store and to send as JSON (they must never quote the bad text).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lqs.domain.leads import (
    LEAD_FIELDS,
    MAX_CUSTOM_NESTING,
    MAX_NUMBER_DIGITS,
    FieldError,
    LeadValidationError,
    NewLead,
    escaped,
    parse_lead,
    unstorable_text,
    unstorable_values,
)

GOOD = {"email": "ann@corp.example"}
TEXT_FIELDS = [f for f in LEAD_FIELDS if f not in ("company_size", "consent_status", "consent_at")]
NUL = "\x00"
SURROGATE = "\ud800"


def _refusal(data: dict[str, Any]) -> list[FieldError]:
    with pytest.raises(LeadValidationError) as caught:
        parse_lead(data)
    return caught.value.errors


def _assert_safe(errors: list[FieldError]) -> None:
    """Every field name and message can be stored and sent as UTF-8 JSON."""
    for error in errors:
        for text in (error.field, error.message):
            assert unstorable_text(text) is None, text


# ------------------------------------------------------------------ the text check


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("plain", None),
        ("naïve café – 東京 😀", None),
        ("a\x00b", "NUL"),
        ("\x00", "NUL"),
        ("x\ud800", "lone surrogate (\\ud800)"),
        ("\udfff", "lone surrogate (\\udfff)"),
        ("ok\udc80tail", "lone surrogate (\\udc80)"),
    ],
)
def test_unstorable_text_names_nul_and_lone_surrogates(text: str, problem: str | None) -> None:
    found = unstorable_text(text)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def test_escaped_text_is_always_printable_utf8() -> None:
    shown = escaped("a\x00b\ud800c\nd")
    assert shown == "a\\u0000b\\ud800c\\u000ad"
    shown.encode("utf-8")


# ------------------------------------------------------------------ lead fields


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
@pytest.mark.parametrize("field", TEXT_FIELDS)
def test_bad_text_in_any_lead_field_is_refused_naming_it(field: str, bad: str) -> None:
    data = {**GOOD, field: f"x{bad}y"}

    errors = _refusal(data)

    assert [e.field for e in errors] == [field]
    _assert_safe(errors)


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
@pytest.mark.parametrize("field", ["consent_status", "consent_at", "company_size"])
def test_bad_text_in_typed_fields_is_refused_naming_it(field: str, bad: str) -> None:
    errors = _refusal({**GOOD, field: f"1{bad}"})

    assert field in [e.field for e in errors]
    _assert_safe(errors)


def test_a_bad_email_is_not_also_reported_as_missing_and_is_not_quoted() -> None:
    errors = _refusal({"email": f"ann{SURROGATE}@corp.example"})

    assert [e.field for e in errors] == ["email"]
    assert "lone surrogate" in errors[0].message
    _assert_safe(errors)


def test_other_problems_are_still_reported_alongside() -> None:
    errors = _refusal({**GOOD, "first_name": f"A{NUL}", "country": "USA", "company_size": -1})

    assert {e.field for e in errors} == {"first_name", "country", "company_size"}


# ------------------------------------------------------------------ custom fields


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
def test_bad_text_in_a_custom_value_names_the_custom_field(bad: str) -> None:
    for data in ({**GOOD, "custom": {"plan": f"pro{bad}"}}, {**GOOD, "plan": f"pro{bad}"}):
        errors = _refusal(data)
        assert [e.field for e in errors] == ["custom.plan"]
        _assert_safe(errors)


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
def test_bad_text_in_a_custom_key_is_refused_with_the_key_escaped(bad: str) -> None:
    shown = "custom.pl" + escaped(bad) + "an"
    for data in ({**GOOD, "custom": {f"pl{bad}an": "pro"}}, {**GOOD, f"pl{bad}an": "pro"}):
        errors = _refusal(data)
        assert [e.field for e in errors] == [shown]
        assert errors[0].message.startswith("the field name contains")
        _assert_safe(errors)


def test_bad_text_deep_in_a_custom_value_is_named_by_its_path() -> None:
    errors = _refusal({**GOOD, "answers": [{"q": "why", "a": ["ok", f"no{NUL}"]}]})

    assert [e.field for e in errors] == ["custom.answers[0].a[1]"]


def test_every_bad_custom_field_is_reported_and_good_ones_are_not() -> None:
    errors = _refusal({**GOOD, "custom": {"a": NUL, "b": "fine", "c": [SURROGATE]}})

    assert [e.field for e in errors] == ["custom.a", "custom.c[0]"]


def test_custom_values_nest_at_most_the_limit() -> None:
    shallow: Any = "leaf"
    for _ in range(MAX_CUSTOM_NESTING):
        shallow = [shallow]
    lead = parse_lead({**GOOD, "custom": {"tree": shallow}})
    assert lead.custom == {"tree": shallow}

    errors = _refusal({**GOOD, "custom": {"tree": [shallow]}})
    assert errors[0].field.startswith("custom.tree")
    assert f"nests deeper than {MAX_CUSTOM_NESTING} levels" in errors[0].message


def test_a_custom_value_nested_far_beyond_the_recursion_limit_is_refused_not_crashed() -> None:
    deep: Any = {}
    for _ in range(100_000):
        deep = {"d": deep}

    errors = _refusal({**GOOD, "custom": {"bomb": deep}, "extra": [deep]})

    assert {e.field.split("[")[0].split(".d")[0] for e in errors} == {
        "custom.bomb",
        "custom.extra",
    }


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        (float("-inf"), "finite"),
        (10**MAX_NUMBER_DIGITS, f"at most {MAX_NUMBER_DIGITS} digits"),
        (-(10**5000), f"at most {MAX_NUMBER_DIGITS} digits"),
    ],
    ids=["nan", "inf", "-inf", "101-digits", "5001-digits"],
)
def test_numbers_jsonb_or_python_cannot_carry_are_refused(value: object, problem: str) -> None:
    errors = _refusal({**GOOD, "custom": {"n": value}})

    assert [e.field for e in errors] == ["custom.n"]
    assert problem in errors[0].message


def test_the_largest_number_kept_is_kept() -> None:
    largest = 10**MAX_NUMBER_DIGITS - 1
    assert parse_lead({**GOOD, "n": largest, "f": 1.5e308}).custom == {"n": largest, "f": 1.5e308}


def test_a_csv_row_with_bad_text_is_refused_like_the_api() -> None:
    # The shape ``lqs leads import`` builds from a row: lead columns, the rest in custom.
    row = {"email": "ann@corp.example", "first_name": "Ann", "custom": {"notes": f"x{NUL}"}}

    errors = _refusal(row)

    assert [e.field for e in errors] == ["custom.notes"]


def test_unstorable_values_walks_keys_values_and_lists() -> None:
    found = unstorable_values({"a": [1, NUL], f"k{NUL}": "v"}, "body", max_nesting=5)

    assert [e.field for e in found] == ["body.a[1]", "body.k\\u0000"]


# ------------------------------------------------------------------ any text at all

_ANY_TEXT = st.text(st.characters(codec=None), max_size=20) | st.sampled_from(
    ["\x00", "\ud800", "a\udfffb", "\x00\ud83d", "😀", ""]
)
_JSON_LIKE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _ANY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_ANY_TEXT, inner, max_size=3),
    max_leaves=8,
)


def _outcome(data: dict[str, Any]) -> NewLead | LeadValidationError:
    try:
        return parse_lead(data)
    except LeadValidationError as exc:
        return exc


def _storable(value: object) -> bool:
    return not unstorable_values(value, "x", max_nesting=50)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    fields=st.dictionaries(st.sampled_from([*LEAD_FIELDS, "custom"]) | _ANY_TEXT, _JSON_LIKE),
    email=st.sampled_from(["ann@corp.example", "", None]),
)
def test_any_submission_is_a_lead_or_a_refusal_that_names_safe_fields(
    fields: dict[str, Any], email: str | None
) -> None:
    data = {"email": email, **fields} if email is not None else fields
    lead = _outcome(data)
    if isinstance(lead, LeadValidationError):
        assert lead.errors
        _assert_safe(lead.errors)
        str(lead).encode("utf-8")
        return
    for name in LEAD_FIELDS:
        value = getattr(lead, name)
        if isinstance(value, str):
            assert unstorable_text(value) is None
    assert _storable(dict(lead.custom))
    json.dumps(dict(lead.custom), default=str).encode("utf-8")
    lead.content_hash()


def test_consent_times_with_offsets_postgresql_refuses_are_stored_as_utc() -> None:
    from datetime import UTC, datetime

    lead = parse_lead({"email": "a@b.example", "consent_at": "2024-05-01T09:00:00+20:00"})
    assert lead.consent_at == datetime(2024, 4, 30, 13, 0, tzinfo=UTC)
    assert lead.consent_at.utcoffset() is not None


def test_a_blank_consent_status_means_unknown() -> None:
    assert parse_lead({"email": "a@b.example", "consent_status": " "}).consent_status == "unknown"
