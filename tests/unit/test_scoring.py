"""Explainable lead scoring: every condition, every validation error, and the invariants."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from lqs.domain.default_rules import DEFAULT_RULES_SPEC, default_rules
from lqs.domain.leads import LEAD_FIELDS
from lqs.domain.scoring import (
    DEFAULT_GRADES,
    SCORABLE_FIELDS,
    BreakdownEntry,
    GradeBand,
    Regex,
    RulesError,
    RuleSet,
    breakdown_to_json,
    parse_rules,
    score_lead,
)
from lqs.domain.vocabulary import ConsentStatus, LeadStatus

SCORING_DOC = Path(__file__).resolve().parents[2] / "docs" / "SCORING.md"


def _spec(*rules: Any, qualified: int = 50, nurture: int = 20, **extra: Any) -> dict[str, Any]:
    return {
        "thresholds": {"qualified": qualified, "nurture": nurture},
        "rules": list(rules),
        **extra,
    }


def _rules(*rules: Any, qualified: int = 50, nurture: int = 20, **extra: Any) -> RuleSet:
    return parse_rules(_spec(*rules, qualified=qualified, nurture=nurture, **extra))


def _one(field: str, when: dict[str, Any], points: int = 10) -> RuleSet:
    return _rules({"id": "r", "field": field, "when": when, "points": points})


def _problems(spec: object) -> list[str]:
    with pytest.raises(RulesError) as caught:
        parse_rules(spec)
    return caught.value.problems


# ------------------------------------------------------------------- conditions


@pytest.mark.parametrize(
    ("field", "when", "value", "matches"),
    [
        # equals: text trimmed and case-insensitive; numbers as numbers; booleans as such
        ("industry", {"equals": "SaaS"}, " saas ", True),
        ("industry", {"equals": "SaaS"}, "saas platform", False),
        ("company_size", {"equals": 100}, 100, True),
        ("company_size", {"equals": 100}, "100", True),
        ("company_size", {"equals": 100}, "100.0", True),
        ("company_size", {"equals": 100}, 101, False),
        ("company_size", {"equals": "100"}, 100, True),
        ("custom.trial", {"equals": True}, True, True),
        ("custom.trial", {"equals": True}, "TRUE", True),
        ("custom.trial", {"equals": True}, False, False),
        ("custom.trial", {"equals": True}, 1, False),
        ("consent_status", {"equals": "granted"}, ConsentStatus.GRANTED, True),
        # in: the same comparison against each value
        ("country", {"in": ["US", "CA"]}, " ca", True),
        ("country", {"in": ["US", "CA"]}, "DE", False),
        ("company_size", {"in": [10, 20]}, "20", True),
        ("company_size", {"in": [10, 20]}, 15, False),
        # contains: case-insensitive substring
        ("job_title", {"contains": "sales"}, "Head of SALES", True),
        ("job_title", {"contains": "sales"}, "Engineer", False),
        # regex: an RE2 search, case-insensitive (Unicode case folding too)
        ("job_title", {"regex": r"\b(vp|chief)\b"}, "Chief of Staff", True),
        ("job_title", {"regex": r"\b(vp|chief)\b"}, "mischief maker", False),
        ("job_title", {"regex": "^cto$"}, "CTO", True),
        ("company_size", {"regex": "^[0-9]{3}$"}, 250, True),
        ("job_title", {"regex": "^directeur général$"}, "DIRECTEUR GÉNÉRAL", True),
        ("job_title", {"regex": r"^\pL+$"}, "Geschäftsführer", True),
        ("job_title", {"regex": r"^\w+$"}, "Geschäftsführer", False),  # RE2's \w is ASCII
        # gte / lte / between: numbers or numeric text, bounds inclusive
        ("company_size", {"gte": 50}, 50, True),
        ("company_size", {"gte": 50}, 49, False),
        ("company_size", {"gte": 50}, " 75 ", True),
        ("company_size", {"gte": 50}, 50.5, True),
        ("company_size", {"lte": 50}, "12", True),
        ("company_size", {"lte": 50}, "-3.5", True),
        ("company_size", {"lte": 50}, 51, False),
        ("company_size", {"between": [10, 20]}, 10, True),
        ("company_size", {"between": [10, 20]}, 20, True),
        ("company_size", {"between": [10, 20]}, 9, False),
        ("company_size", {"between": [10, 20]}, 21, False),
        ("company_size", {"between": [0.5, 1.5]}, "1.0", True),
        # exists: present and non-empty
        ("phone", {"exists": True}, "+12015550123", True),
        ("phone", {"exists": True}, None, False),
        ("phone", {"exists": True}, "   ", False),
        ("company_size", {"exists": True}, 0, True),
        ("phone", {"exists": False}, None, True),
        ("phone", {"exists": False}, "", True),
        ("phone", {"exists": False}, "+12015550123", False),
        # email_domain_type: one type or a list of them
        ("email", {"email_domain_type": "corporate"}, "ann@acme.example", True),
        ("email", {"email_domain_type": "corporate"}, "ann@gmail.com", False),
        ("email", {"email_domain_type": "free"}, "ANN@GMAIL.COM", True),
        ("email", {"email_domain_type": "disposable"}, "x@mailinator.com", True),
        ("email", {"email_domain_type": ["free", "disposable"]}, "x@mailinator.com", True),
        ("email", {"email_domain_type": ["free", "disposable"]}, "ann@acme.example", False),
        ("email", {"email_domain_type": "corporate"}, "acme.example", False),
        ("email", {"email_domain_type": "corporate"}, "ann@", False),
        # country_in: alpha-2 codes, any case on either side
        ("country", {"country_in": ["us", "GB"]}, "gb", True),
        ("country", {"country_in": ["us", "GB"]}, "US", True),
        ("country", {"country_in": ["us", "GB"]}, "FR", False),
        ("country", {"country_in": ["us", "GB"]}, "USA", False),
    ],
)
def test_each_condition_matches_what_it_says(
    field: str, when: dict[str, Any], value: object, matches: bool
) -> None:
    if field.startswith("custom."):
        lead: dict[str, Any] = {"custom": {field.removeprefix("custom."): value}}
    else:
        lead = {field: value}

    result = score_lead(lead, _one(field, when))

    assert [e.rule_id for e in result.breakdown] == (["r"] if matches else [])
    assert result.score == (10 if matches else 0)


@pytest.mark.parametrize(
    "when",
    [
        {"equals": "x"}, {"equals": 0}, {"in": ["x", 0]}, {"contains": "x"}, {"regex": ".*"},
        {"gte": -100}, {"lte": 100}, {"between": [-100, 100]}, {"exists": True},
        {"email_domain_type": ["free", "disposable", "corporate"]}, {"country_in": ["US"]},
    ],
)  # fmt: skip
@pytest.mark.parametrize(
    "lead",
    [{}, {"custom": {}}, {"custom": {"x": None}}, {"custom": {"x": ""}}, {"custom": {"x": "  "}}],
)
def test_a_missing_field_matches_nothing_but_exists_false(
    when: dict[str, Any], lead: dict[str, Any]
) -> None:
    assert score_lead(lead, _one("custom.x", when)).breakdown == ()
    assert len(score_lead(lead, _one("custom.x", {"exists": False})).breakdown) == 1


@pytest.mark.parametrize(
    "value", ["lots", "n/a", "1,5", "12abc", "1e3", "inf", "nan", True, [100], float("nan")]
)
@pytest.mark.parametrize("when", [{"gte": 0}, {"lte": 10_000}, {"between": [0, 10_000]}])
def test_a_non_numeric_value_never_matches_a_numeric_condition(
    value: object, when: dict[str, Any]
) -> None:
    assert score_lead({"custom": {"n": value}}, _one("custom.n", when)).breakdown == ()


@pytest.mark.parametrize(
    ("text", "number"), [("25,000", 25_000), ("1,234,567.5", 1_234_567.5), ("+7", 7), (".5", 0.5)]
)
def test_numeric_text_with_thousands_separators_counts_as_a_number(
    text: str, number: float
) -> None:
    assert (
        len(score_lead({"custom": {"n": text}}, _one("custom.n", {"equals": number})).breakdown)
        == 1
    )


@pytest.mark.parametrize(
    "when", [{"equals": "a"}, {"contains": "a"}, {"regex": "a"}, {"in": ["a"]}, {"gte": 0}]
)
@pytest.mark.parametrize("value", [["a", 1], {"a": 1}])
def test_a_list_or_object_value_matches_only_exists(when: dict[str, Any], value: object) -> None:
    lead = {"custom": {"tags": value}}

    assert score_lead(lead, _one("custom.tags", when)).breakdown == ()
    assert len(score_lead(lead, _one("custom.tags", {"exists": True})).breakdown) == 1


def test_custom_fields_are_read_from_the_custom_mapping() -> None:
    rules = _one("custom.budget", {"gte": 10_000}, points=30)

    assert score_lead({"custom": {"budget": "25,000"}}, rules).score == 30
    assert score_lead({"custom": {"budget": 500}}, rules).score == 0
    assert score_lead({"budget": 50_000}, rules).score == 0  # not a custom field
    assert score_lead({"custom": None}, rules).score == 0
    assert score_lead({"custom": "budget"}, rules).score == 0


def test_a_custom_key_may_contain_dots() -> None:
    rules = _one("custom.utm.partner", {"equals": "acme"})

    assert score_lead({"custom": {"utm.partner": "ACME"}}, rules).score == 10


def test_regex_sees_only_the_first_1000_characters() -> None:
    rules = _one("custom.note", {"regex": "needle"})

    assert score_lead({"custom": {"note": "x" * 994 + "needle"}}, rules).score == 10
    assert score_lead({"custom": {"note": "x" * 995 + "needle"}}, rules).score == 0


def test_a_catastrophic_regex_is_accepted_and_matches_in_linear_time() -> None:
    # (a+)+$ backtracks exponentially in Python's re: a 41-character title held the
    # worker at 100% CPU. RE2 has no backtracking: these calls return at once.
    rules = _one("job_title", {"regex": "(a+)+$"})
    [rule] = rules.rules
    assert isinstance(rule.condition, Regex)

    assert score_lead({"job_title": "a" * 40 + "!"}, rules).score == 0
    assert score_lead({"job_title": "a" * 41}, rules).score == 10
    assert score_lead({"job_title": "a" * 999 + "!"}, rules).score == 0
    # The engine itself, past the 1,000 characters scoring looks at:
    assert rule.condition.compiled.search("a" * 100_000 + "!") is None
    assert rule.condition.compiled.search("a" * 100_000) is not None


@pytest.mark.parametrize("pattern", [r"(a|aa)+$", r"(.*a){12}$", r"^(\w+\s?)*$", r"^(a|a?)+$"])
def test_other_backtracking_patterns_are_linear_too(pattern: str) -> None:
    rules = _one("custom.note", {"regex": pattern})

    assert score_lead({"custom": {"note": "a" * 999 + "!"}}, rules).score == 0


def test_a_lone_surrogate_in_a_value_does_not_break_a_regex() -> None:
    rules = _one("custom.note", {"regex": "^x.y$"})

    assert score_lead({"custom": {"note": "x\ud800y"}}, rules).score == 10
    assert score_lead({"custom": {"note": "\ud800"}}, rules).score == 0


def test_the_regexes_of_a_rule_set_have_a_total_budget() -> None:
    # Each compiles to about 1,000 instructions: under the cap for one regex, but six
    # of them pass the rule set's total, which bounds what scoring one lead may cost.
    rule = {"field": "job_title", "points": 1}
    regexes = [
        {**rule, "id": f"r{i}", "when": {"regex": f"{'abcdef'[i]}(x|\\w){{99}}"}} for i in range(6)
    ]

    five = parse_rules(_spec(*regexes[:5]))
    [problem] = _problems(_spec(*regexes))

    assert (
        sum(r.condition.program_size for r in five.rules if isinstance(r.condition, Regex)) <= 5_000
    )
    assert problem.startswith("rules: the regexes compile to ")
    assert "over the limit of 5000" in problem
    assert "largest: 'r" in problem


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (_spec({"id": "r", "field": "email", "when": {"exists": True}, "points": 1, "reason": "a\x00b"}),
         "rules[0].reason: text contains NUL (U+0000), which cannot be stored"),
        (_spec({"id": "r", "field": "email", "when": {"contains": "\ud83d"}, "points": 1}),
         "rules[0].when.contains: text contains a lone surrogate (U+D83D), which cannot be stored"),
        (_spec(notes={"\x00": 1}), "notes.'\\x00' (the key): text contains NUL (U+0000)"),
    ],
)  # fmt: skip
def test_text_postgresql_cannot_store_is_refused(spec: dict[str, Any], expected: str) -> None:
    problems = _problems(spec)

    assert any(p.startswith(expected) for p in problems), problems


def test_a_regex_of_200_characters_is_accepted_and_201_rejected() -> None:
    accepted = _one("job_title", {"regex": "a" * 200})
    [problem] = _problems(
        _spec({"id": "long", "field": "job_title", "when": {"regex": "a" * 201}, "points": 1})
    )

    assert score_lead({"job_title": "a" * 200}, accepted).score == 10
    assert problem.startswith("rule 'long' (rules[0]): regex is longer than 200 characters")


# ------------------------------------------------------------------- breakdown


def test_breakdown_answers_why_a_lead_qualified() -> None:
    rules = _rules(
        {"id": "size", "version": 3, "field": "company_size", "when": {"gte": 100}, "points": 25},
        {"id": "corp", "field": "email", "when": {"email_domain_type": "corporate"}, "points": 30,
         "reason": "Company email"},
        {"id": "fr", "field": "country", "when": {"equals": "FR"}, "points": 5},
    )  # fmt: skip

    result = score_lead({"email": "ann@acme.example", "company_size": 250, "country": "US"}, rules)

    assert result.outcome is LeadStatus.QUALIFIED
    assert result.score == 55
    assert result.reason == "score 55 reached the qualified threshold 50"
    assert breakdown_to_json(result.breakdown) == [
        {"rule_id": "corp", "rule_version": 1, "field": "email", "value": "ann@acme.example",
         "points": 30, "reason": "Company email"},
        {"rule_id": "size", "rule_version": 3, "field": "company_size", "value": 250,
         "points": 25, "reason": "company_size gte 100"},
    ]  # fmt: skip


def test_total_equals_sum_of_breakdown_with_negative_points() -> None:
    rules = _rules(
        {"id": "a", "field": "phone", "when": {"exists": True}, "points": 40},
        {"id": "b", "field": "email", "when": {"email_domain_type": "free"}, "points": -15},
    )

    result = score_lead({"phone": "+1", "email": "ann@gmail.com"}, rules)

    assert result.score == 25 == sum(e.points for e in result.breakdown)
    assert result.outcome is LeadStatus.NURTURE


@pytest.mark.parametrize(
    ("field", "when", "reason"),
    [
        ("industry", {"equals": "SaaS"}, "industry equals 'SaaS'"),
        ("custom.trial", {"equals": True}, "custom.trial equals true"),
        ("country", {"in": ["US", "CA"]}, "country in ['US', 'CA']"),
        ("job_title", {"contains": "sales"}, "job_title contains 'sales'"),
        ("job_title", {"regex": "^vp"}, "job_title matches /^vp/"),
        ("company_size", {"gte": 50}, "company_size gte 50"),
        ("company_size", {"lte": 50}, "company_size lte 50"),
        ("company_size", {"between": [50, 500]}, "company_size between 50 and 500"),
        ("phone", {"exists": True}, "phone exists"),
        ("phone", {"exists": False}, "phone is missing or empty"),
        (
            "email",
            {"email_domain_type": ["free", "disposable"]},
            "email domain is free or disposable",
        ),
        ("country", {"country_in": ["gb", "US"]}, "country is one of GB, US"),
    ],
)
def test_a_rule_without_reason_gets_one_describing_its_condition(
    field: str, when: dict[str, Any], reason: str
) -> None:
    [rule] = _one(field, when).rules

    assert rule.reason == reason


def test_breakdown_values_are_json_safe_and_long_text_is_cut_at_200() -> None:
    rules = _rules(
        {"id": "note", "field": "custom.note", "when": {"exists": True}, "points": 1},
        {"id": "ratio", "field": "custom.ratio", "when": {"exists": True}, "points": 1},
        {"id": "tags", "field": "custom.tags", "when": {"exists": True}, "points": 1},
        {"id": "consent", "field": "consent_status", "when": {"exists": True}, "points": 1},
    )
    lead = {"consent_status": ConsentStatus.GRANTED,
            "custom": {"note": "é" * 500, "ratio": float("inf"), "tags": ["a", "b"]}}  # fmt: skip

    values = {e.rule_id: e.value for e in score_lead(lead, rules).breakdown}

    assert values == {"note": "é" * 200, "ratio": "inf", "tags": "['a', 'b']", "consent": "granted"}
    assert type(values["consent"]) is str
    json.dumps(breakdown_to_json(score_lead(lead, rules).breakdown), allow_nan=False)


def test_breakdown_entry_to_json_is_a_plain_dict_of_every_field() -> None:
    entry = BreakdownEntry("r", 2, "phone", "+1", 10, "Phone number given")

    assert entry.to_json() == {"rule_id": "r", "rule_version": 2, "field": "phone",
                               "value": "+1", "points": 10, "reason": "Phone number given"}  # fmt: skip


# ------------------------------------------------------------------- disqualifiers


def test_a_hard_disqualifier_ends_scoring() -> None:
    rules = _rules(
        {"id": "aaa-title", "field": "job_title", "when": {"exists": True}, "points": 90},
        {"id": "throwaway", "field": "email", "when": {"email_domain_type": "disposable"},
         "disqualify": True, "reason": "Throwaway inbox"},
    )  # fmt: skip

    result = score_lead({"email": "x@mailinator.com", "job_title": "CEO"}, rules)

    assert result.outcome is LeadStatus.DISQUALIFIED
    assert (result.score, result.grade) == (0, "D")
    assert breakdown_to_json(result.breakdown) == [
        {"rule_id": "throwaway", "rule_version": 1, "field": "email",
         "value": "x@mailinator.com", "points": 0, "reason": "Throwaway inbox"},
    ]  # fmt: skip
    assert result.reason == "disqualified by rule throwaway"


def test_every_matching_disqualifier_is_listed_by_id() -> None:
    rules = _rules(
        {"id": "zz-no-phone", "field": "phone", "when": {"exists": False}, "disqualify": True},
        {"id": "aa-competitor", "field": "company_domain", "when": {"equals": "rival.example"},
         "disqualify": True},
        {"id": "mm-student", "field": "job_title", "when": {"contains": "student"},
         "disqualify": True},
    )  # fmt: skip

    result = score_lead({"company_domain": "RIVAL.example"}, rules)

    assert [(e.rule_id, e.points) for e in result.breakdown] == [
        ("aa-competitor", 0),
        ("zz-no-phone", 0),
    ]
    assert result.reason == "disqualified by rules aa-competitor, zz-no-phone"


def test_a_disqualifier_that_does_not_match_leaves_scoring_alone() -> None:
    rules = _rules(
        {"id": "throwaway", "field": "email", "when": {"email_domain_type": "disposable"},
         "disqualify": True},
        {"id": "corp", "field": "email", "when": {"email_domain_type": "corporate"}, "points": 60},
    )  # fmt: skip

    result = score_lead({"email": "ann@acme.example"}, rules)

    assert (result.outcome, result.score) == (LeadStatus.QUALIFIED, 60)
    assert [e.rule_id for e in result.breakdown] == ["corp"]


# ------------------------------------------------------------------- thresholds and grades


@pytest.mark.parametrize(
    ("points", "outcome", "grade"),
    [
        (80, LeadStatus.QUALIFIED, "A"), (79, LeadStatus.QUALIFIED, "B"),
        (60, LeadStatus.QUALIFIED, "B"), (59, LeadStatus.QUALIFIED, "C"),
        (50, LeadStatus.QUALIFIED, "C"), (49, LeadStatus.NURTURE, "C"),
        (40, LeadStatus.NURTURE, "C"), (39, LeadStatus.NURTURE, "D"),
        (20, LeadStatus.NURTURE, "D"), (19, LeadStatus.DISQUALIFIED, "D"),
        (-5, LeadStatus.DISQUALIFIED, "D"),
    ],
)  # fmt: skip
def test_thresholds_and_grades_at_their_boundaries(
    points: int, outcome: LeadStatus, grade: str
) -> None:
    result = score_lead({"phone": "+1"}, _one("phone", {"exists": True}, points))

    assert (result.outcome, result.grade) == (outcome, grade)


@pytest.mark.parametrize(
    ("points", "reason"),
    [
        (50, "score 50 reached the qualified threshold 50"),
        (49, "score 49 reached the nurture threshold 20 but not the qualified threshold 50"),
        (19, "score 19 is below the nurture threshold 20"),
    ],
)
def test_the_reason_names_the_threshold_reached(points: int, reason: str) -> None:
    assert score_lead({"phone": "+1"}, _one("phone", {"exists": True}, points)).reason == reason


def test_equal_thresholds_leave_no_nurture_band() -> None:
    rules = _rules({"id": "p", "field": "phone", "when": {"exists": True}, "points": 29},
                   qualified=30, nurture=30)  # fmt: skip

    assert score_lead({"phone": "+1"}, rules).outcome is LeadStatus.DISQUALIFIED
    assert score_lead({}, rules).outcome is LeadStatus.DISQUALIFIED


def test_custom_grade_bands_and_d_below_the_lowest() -> None:
    rules = _rules({"id": "p", "field": "phone", "when": {"exists": True}, "points": 7},
                   qualified=1, nurture=0, grades={"warm": 5, "hot": 10})  # fmt: skip

    assert rules.grades == (GradeBand("hot", 10), GradeBand("warm", 5))
    assert score_lead({"phone": "+1"}, rules).grade == "warm"
    assert score_lead({}, rules).grade == "D"


def test_grades_default_to_a_b_c_then_d() -> None:
    assert (
        _rules().grades
        == DEFAULT_GRADES
        == (GradeBand("A", 80), GradeBand("B", 60), GradeBand("C", 40))
    )


# ------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("a string", "the rule set must be a mapping with thresholds and rules"),
        (None, "the rule set must be a mapping with thresholds and rules"),
        ({"rules": []}, "thresholds is required"),
        ({"thresholds": [60, 30], "rules": []}, "thresholds must be a mapping"),
        ({"thresholds": {"qualified": 60}, "rules": []}, "thresholds.nurture must be a whole number"),
        ({"thresholds": {"qualified": "60", "nurture": 30}, "rules": []},
         "thresholds.qualified must be a whole number"),
        ({"thresholds": {"qualified": True, "nurture": 30}, "rules": []},
         "thresholds.qualified must be a whole number"),
        ({"thresholds": {"qualified": 1, "nurture": 5}, "rules": []},
         "thresholds.qualified must be >= thresholds.nurture (got 1 < 5)"),
        ({"thresholds": {"qualified": 60, "nurture": 30, "hot": 90}, "rules": []},
         "unknown key(s) in thresholds: hot"),
        ({"thresholds": {"qualified": 60, "nurture": 30}}, "rules is required"),
        ({"thresholds": {"qualified": 60, "nurture": 30}, "rules": {}}, "rules must be a list"),
        (_spec(extra=1), "unknown top-level key(s) extra"),
        (_spec(grades={}), "grades must map grade names to minimum scores"),
        (_spec(grades=["A"]), "grades must map grade names to minimum scores"),
        (_spec(grades={"A": "80"}), "grades.A must be a whole number"),
        (_spec(grades={"A": 80, "B": 80}), "grades A and B have the same minimum 80"),
        (_spec(grades={"x" * 21: 80}), "must be text of 1 to 20 characters"),
        (_spec(grades={1: 80}), "grade name 1 must be text"),
        (_spec(*[{"id": f"r{i}", "field": "phone", "when": {"exists": True}, "points": 1}
                 for i in range(1001)]), "at most 1000 rules"),
    ],
)  # fmt: skip
def test_rule_set_errors_say_what_is_wrong(spec: object, expected: str) -> None:
    problems = _problems(spec)

    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"id": "Bad Id", "field": "email", "when": {"exists": True}, "points": 1}, "id must match"),
        ({"id": "trailing\n", "field": "email", "when": {"exists": True}, "points": 1}, "id must match"),
        ({"id": "x" * 65, "field": "email", "when": {"exists": True}, "points": 1}, "id must match"),
        ({"id": "r", "version": 0, "field": "email", "when": {"exists": True}, "points": 1}, "version must be a whole number >= 1"),
        ({"id": "r", "version": "2", "field": "email", "when": {"exists": True}, "points": 1}, "version must be a whole number >= 1"),
        ({"id": "r", "when": {"exists": True}, "points": 1}, "field is required"),
        ({"id": "r", "field": "emial", "when": {"exists": True}, "points": 1}, "unknown field 'emial' (did you mean 'email'?)"),
        ({"id": "r", "field": "custom.", "when": {"exists": True}, "points": 1}, "unknown field 'custom.'"),
        ({"id": "r", "field": "consent_at", "when": {"exists": True}, "points": 1}, "unknown field 'consent_at'"),
        ({"id": "r", "field": "email", "when": {"exists": True}}, "points is required (or disqualify: true)"),
        ({"id": "r", "field": "email", "when": {"exists": True}, "points": 1.5}, "points must be a whole number"),
        ({"id": "r", "field": "email", "when": {"exists": True}, "points": True}, "points must be a whole number"),
        ({"id": "r", "field": "email", "when": {"exists": True}, "points": 1_000_001}, "points must be between"),
        ({"id": "r", "field": "email", "when": {"exists": True}, "disqualify": True, "points": -50}, "a disqualify rule takes no points"),
        ({"id": "r", "field": "email", "when": {"exists": True}, "disqualify": "yes"}, "disqualify must be true or false"),
        ({"id": "r", "field": "email", "when": {"exists": True}, "points": 1, "reason": ""}, "reason must be text"),
        ({"id": "r", "field": "email", "when": {"exists": True}, "points": 1, "reason": "x" * 201}, "reason must be text"),
        ({"id": "r", "field": "email", "when": {"exists": True}, "points": 1, "colour": "red"}, "unknown key(s) colour"),
        ({"id": "r", "field": "email", "points": 1}, "when is required"),
        ({"id": "r", "field": "email", "when": {}, "points": 1}, "exactly one condition"),
        ({"id": "r", "field": "email", "when": {"exists": True, "equals": 1}, "points": 1}, "exactly one condition"),
        ({"id": "r", "field": "email", "when": "exists", "points": 1}, "exactly one condition"),
        ({"id": "r", "field": "email", "when": {"like": "x"}, "points": 1}, "unknown condition 'like'"),
        ({"id": "r", "field": "email", "when": {"equals": None}, "points": 1}, "equals needs one non-empty value"),
        ({"id": "r", "field": "email", "when": {"equals": ["a"]}, "points": 1}, "equals needs one non-empty value"),
        ({"id": "r", "field": "email", "when": {"equals": float("nan")}, "points": 1}, "equals needs one non-empty value"),
        ({"id": "r", "field": "email", "when": {"in": []}, "points": 1}, "in needs a non-empty list"),
        ({"id": "r", "field": "email", "when": {"in": "a"}, "points": 1}, "in needs a non-empty list"),
        ({"id": "r", "field": "email", "when": {"in": ["a", None]}, "points": 1}, "in needs a non-empty list"),
        ({"id": "r", "field": "email", "when": {"contains": ""}, "points": 1}, "contains needs a non-empty string"),
        ({"id": "r", "field": "email", "when": {"contains": 5}, "points": 1}, "contains needs a non-empty string"),
        ({"id": "r", "field": "email", "when": {"regex": "(unclosed"}, "points": 1}, "regex does not compile: missing )"),
        ({"id": "r", "field": "email", "when": {"regex": "a{1001}"}, "points": 1}, "regex does not compile: invalid repetition size"),
        ({"id": "r", "field": "email", "when": {"regex": r"(a)\1"}, "points": 1}, "regex does not compile: invalid escape sequence: \\1 (patterns use RE2 syntax: no backreferences or lookaround"),
        ({"id": "r", "field": "email", "when": {"regex": "(?=a)b"}, "points": 1}, "regex does not compile: invalid perl operator: (?="),
        ({"id": "r", "field": "email", "when": {"regex": "(?<!a)b"}, "points": 1}, "regex does not compile: invalid perl operator: (?<!"),
        ({"id": "r", "field": "email", "when": {"regex": "(?>a+)b"}, "points": 1}, "regex does not compile"),
        ({"id": "r", "field": "email", "when": {"regex": r"com\Z"}, "points": 1}, "RE2 writes \\Z as \\z"),
        ({"id": "r", "field": "email", "when": {"regex": r"(x|\w){250}"}, "points": 1}, "regex is too complex: it compiles to 2504 RE2 instructions (at most 2000"),
        ({"id": "r", "field": "email", "when": {"regex": r"\pL{100}z"}, "points": 1}, "regex is too complex: it compiles past RE2's memory limit"),
        ({"id": "r", "field": "email", "when": {"regex": ""}, "points": 1}, "regex needs a pattern"),
        ({"id": "r", "field": "email", "when": {"regex": "a" * 201}, "points": 1}, "regex is longer than 200 characters"),
        ({"id": "r", "field": "company_size", "when": {"gte": "ten"}, "points": 1}, "gte needs a number"),
        ({"id": "r", "field": "company_size", "when": {"lte": float("inf")}, "points": 1}, "lte needs a number"),
        ({"id": "r", "field": "company_size", "when": {"gte": True}, "points": 1}, "gte needs a number"),
        ({"id": "r", "field": "company_size", "when": {"between": [9, 1]}, "points": 1}, "low <= high"),
        ({"id": "r", "field": "company_size", "when": {"between": [1]}, "points": 1}, "between needs [low, high]"),
        ({"id": "r", "field": "company_size", "when": {"between": [1, "9"]}, "points": 1}, "between needs [low, high]"),
        ({"id": "r", "field": "email", "when": {"exists": "yes"}, "points": 1}, "exists needs true or false"),
        ({"id": "r", "field": "email", "when": {"email_domain_type": "fancy"}, "points": 1}, "email_domain_type must be one or more of free, disposable, corporate"),
        ({"id": "r", "field": "email", "when": {"email_domain_type": []}, "points": 1}, "email_domain_type must be"),
        ({"id": "r", "field": "country", "when": {"country_in": ["USA"]}, "points": 1}, "two-letter country codes"),
        ({"id": "r", "field": "country", "when": {"country_in": "US"}, "points": 1}, "two-letter country codes"),
        ({"id": "r", "field": "country", "when": {"country_in": ["ÄÖ"]}, "points": 1}, "two-letter country codes"),
        ({"id": "r", "field": "country", "when": {"country_in": ["SE", False]}, "points": 1}, "YAML reads a bare NO as false"),
    ],
)  # fmt: skip
def test_each_rule_error_names_the_rule(rule: dict[str, Any], expected: str) -> None:
    [problem] = _problems(_spec(rule))

    assert problem.startswith(f"rule {rule['id']!r} (rules[0]): ")
    assert expected in problem


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("not a mapping", "rules[0]: must be a mapping with id, field, when and points"),
        ({"field": "email", "when": {"exists": True}, "points": 1}, "rules[0]: id is required"),
        (
            {"id": 7, "field": "email", "when": {"exists": True}, "points": 1},
            "rules[0]: id must match",
        ),
    ],
)
def test_a_rule_without_a_usable_id_is_named_by_position(rule: object, expected: str) -> None:
    [problem] = _problems(_spec(rule))

    assert problem.startswith(expected)


def test_every_problem_is_reported_at_once() -> None:
    spec = _spec(
        {"id": "a", "field": "nope", "when": {"exists": True}, "points": 1},
        {"id": "a", "field": "email", "when": {"exists": True}, "points": 1},
        {"id": "b", "field": "email", "when": {"regex": "("}},
        qualified=0,
        nurture=10,
    )

    with pytest.raises(RulesError) as caught:
        parse_rules(spec)

    assert caught.value.problems == [
        "thresholds.qualified must be >= thresholds.nurture (got 0 < 10)",
        "rule 'a' (rules[0]): unknown field 'nope' (one of email, phone, first_name, last_name,"
        " job_title, company_name, company_domain, company_size, industry, country, time_zone,"
        " source, utm_source, utm_medium, utm_campaign, utm_term, utm_content, consent_status,"
        " or custom.<key>)",
        "rule 'a' (rules[1]): duplicate id (first used by rules[0])",
        "rule 'b' (rules[2]): points is required (or disqualify: true)",
        "rule 'b' (rules[2]): regex does not compile: missing ): ( (patterns use RE2 syntax:"
        " no backreferences or lookaround; see docs/SCORING.md)",
    ]
    assert str(caught.value) == "; ".join(caught.value.problems)
    assert isinstance(caught.value, ValueError)


def test_parsing_leaves_the_spec_unchanged() -> None:
    spec = _spec({"id": "c", "field": "country", "when": {"country_in": ["us"]}, "points": 1})
    before = copy.deepcopy(spec)

    parse_rules(spec)

    assert spec == before


def test_every_scorable_field_is_a_lead_field() -> None:
    assert set(SCORABLE_FIELDS) <= set(LEAD_FIELDS)


# ------------------------------------------------------------------- default rules


def test_default_rules_qualify_a_senior_person_at_a_mid_size_company() -> None:
    lead = {"email": "ceo@bigco.example", "job_title": "Co-Founder & CEO", "company_size": 400,
            "company_domain": "bigco.example", "phone": "+12015550123",
            "consent_status": "granted"}  # fmt: skip

    result = score_lead(lead, default_rules())

    assert (result.outcome, result.score, result.grade) == (LeadStatus.QUALIFIED, 90, "A")
    assert [e.rule_id for e in result.breakdown] == [
        "company-domain", "company-size", "consent-granted", "corporate-email", "phone-given",
        "senior-title",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("lead", "outcome", "score"),
    [
        ({"email": "x@mailinator.com", "job_title": "CEO", "company_size": 400}, LeadStatus.DISQUALIFIED, 0),
        ({"email": "someone@gmail.com"}, LeadStatus.DISQUALIFIED, -5),
        ({"email": "ann@acme.example"}, LeadStatus.NURTURE, 25),
        ({"email": "ann@gmail.com", "job_title": "VP Sales", "company_size": 200, "phone": "+1"},
         LeadStatus.NURTURE, -5 + 20 + 20 + 10),
        ({"email": "ann@gmail.com", "job_title": "VP Sales", "company_size": 200, "phone": "+1",
          "company_domain": "acme.example"}, LeadStatus.QUALIFIED, -5 + 20 + 20 + 10 + 10),
        ({"email": "ann@acme.example", "job_title": "Product Owner"}, LeadStatus.NURTURE, 25),
    ],
)  # fmt: skip
def test_default_rules_on_typical_leads(
    lead: dict[str, Any], outcome: LeadStatus, score: int
) -> None:
    result = score_lead(lead, default_rules())

    assert (result.outcome, result.score) == (outcome, score)


def test_default_rules_spec_is_valid_and_complete() -> None:
    assert len(default_rules().rules) == len(DEFAULT_RULES_SPEC["rules"])
    assert default_rules() == parse_rules(DEFAULT_RULES_SPEC)


def test_docs_show_the_default_rules_exactly() -> None:
    text = SCORING_DOC.read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(# The default rule set.*?)```", text, re.DOTALL)

    assert block is not None, "docs/SCORING.md lost its default rules YAML block"
    assert yaml.safe_load(block.group(1)) == DEFAULT_RULES_SPEC


# ------------------------------------------------------------------- properties

_PROPERTY_FIELDS = ["email", "job_title", "company_size", "country", "phone", "custom.budget"]


def _conditions(*, valid: bool) -> st.SearchStrategy[dict[str, Any]]:
    def one(name: str, operand: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries({name: operand})

    patterns = [r"^c", r"\d+", r"(a|e)@"] + ([] if valid else ["[", "x" * 201])
    low = st.integers(0, 500)
    return st.one_of(
        one("equals", st.sampled_from(["CEO", "us", 100, "100", True])),
        one("in", st.lists(st.sampled_from(["CEO", "US", 300, "saas"]), min_size=1)),
        one("contains", st.sampled_from(["e", "o", "sales", "@"])),
        one("regex", st.sampled_from(patterns)),
        one("gte", st.integers(-10, 1000)),
        one("lte", st.floats(-10, 1000)),
        one("between", st.lists(low, min_size=2, max_size=2).map(sorted if valid else list)),
        one("exists", st.booleans()),
        one("email_domain_type", st.sampled_from(["free", "disposable", "corporate", ["free", "disposable"]])),
        one("country_in", st.lists(st.sampled_from(["US", "gb", "DE"]), min_size=1)),
    )  # fmt: skip


_VALID_CONDITIONS = _conditions(valid=True)
_ANY_CONDITIONS = _conditions(valid=False)


@st.composite
def rule_set_specs(draw: st.DrawFn, *, valid: bool = True) -> dict[str, Any]:
    """Rule sets; with ``valid=False`` some are invalid (bad regexes, duplicate ids …)."""
    ids = draw(st.lists(st.sampled_from("abcdefghij"), max_size=10, unique=valid))
    rules: list[dict[str, Any]] = []
    for rule_id in ids:
        rule: dict[str, Any] = {
            "id": rule_id,
            "field": draw(st.sampled_from(_PROPERTY_FIELDS)),
            "when": draw(_VALID_CONDITIONS if valid else _ANY_CONDITIONS),
        }
        if draw(st.integers(0, 3)) == 0:
            rule["disqualify"] = True
        else:
            rule["points"] = draw(st.integers(-50, 50))
        rules.append(rule)
    nurture = draw(st.integers(-20, 40))
    return _spec(*rules, qualified=nurture + draw(st.integers(0, 60)), nurture=nurture)


_VALUES = st.one_of(st.none(), st.just(""), st.integers(-10, 2000), st.floats(allow_nan=True),
                    st.text(max_size=20), st.sampled_from(["300", "n/a", "25,000", "CEO", "US"]))  # fmt: skip
LEADS = st.fixed_dictionaries(
    {},
    optional={
        "email": st.sampled_from(["a@acme.example", "b@gmail.com", "c@mailinator.com", "x", ""]),
        "job_title": st.one_of(st.sampled_from(["CEO", "Sales lead", "engineer"]), _VALUES),
        "company_size": _VALUES,
        "country": st.sampled_from(["US", "gb", "FR", None]),
        "phone": st.sampled_from(["+12015550123", None, ""]),
        "custom": st.one_of(st.none(), st.dictionaries(st.just("budget"), _VALUES)),
    },
)


@given(spec=rule_set_specs(), lead=LEADS)
def test_total_equals_sum_of_breakdown(spec: dict[str, Any], lead: dict[str, Any]) -> None:
    result = score_lead(lead, parse_rules(spec))

    assert result.score == sum(e.points for e in result.breakdown)


@given(spec=rule_set_specs(), lead=LEADS)
def test_scoring_is_deterministic(spec: dict[str, Any], lead: dict[str, Any]) -> None:
    first = score_lead(lead, parse_rules(spec))
    again = score_lead(copy.deepcopy(lead), parse_rules(copy.deepcopy(spec)))

    assert first == again
    assert breakdown_to_json(first.breakdown) == breakdown_to_json(again.breakdown)


@given(spec=rule_set_specs(), lead=LEADS, data=st.data())
def test_rule_order_does_not_change_the_result(
    spec: dict[str, Any], lead: dict[str, Any], data: st.DataObject
) -> None:
    shuffled = {**spec, "rules": data.draw(st.permutations(spec["rules"]))}

    assert parse_rules(shuffled) == parse_rules(spec)
    assert score_lead(lead, parse_rules(shuffled)) == score_lead(lead, parse_rules(spec))


@given(spec=rule_set_specs(), lead=LEADS)
def test_disqualified_by_a_rule_always_scores_zero(
    spec: dict[str, Any], lead: dict[str, Any]
) -> None:
    rules = parse_rules(spec)
    disqualifiers = {r.id for r in rules.rules if r.disqualify}

    result = score_lead(lead, rules)

    if any(e.rule_id in disqualifiers for e in result.breakdown):
        assert (result.outcome, result.score, result.grade) == (LeadStatus.DISQUALIFIED, 0, "D")
        assert {e.rule_id for e in result.breakdown} <= disqualifiers
        assert all(e.points == 0 for e in result.breakdown)


@given(spec=rule_set_specs(), lead=LEADS)
def test_breakdown_is_sorted_by_rule_id_and_json_safe(
    spec: dict[str, Any], lead: dict[str, Any]
) -> None:
    result = score_lead(lead, parse_rules(spec))
    ids = [e.rule_id for e in result.breakdown]

    assert ids == sorted(set(ids))
    json.dumps(breakdown_to_json(result.breakdown), allow_nan=False)


@given(spec=rule_set_specs(), lead=LEADS)
def test_outcome_follows_the_thresholds(spec: dict[str, Any], lead: dict[str, Any]) -> None:
    rules = parse_rules(spec)

    result = score_lead(lead, rules)

    if result.outcome is LeadStatus.QUALIFIED:
        assert result.score >= rules.qualified_at
    elif result.outcome is LeadStatus.NURTURE:
        assert rules.nurture_at <= result.score < rules.qualified_at
    else:
        assert result.outcome is LeadStatus.DISQUALIFIED


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=10,
)  # fmt: skip


@given(spec=st.one_of(_JSONISH, rule_set_specs(valid=False)))
def test_parse_rules_rejects_anything_invalid_only_with_rules_error(spec: object) -> None:
    try:
        parse_rules(spec)
    except RulesError as exc:
        problems = exc.problems
    else:
        return  # valid, and parsed

    assert problems
    assert all(isinstance(p, str) and p for p in problems)
