"""Explainable scoring: every condition, every validation error, and the invariants."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lqs.domain.default_rules import DEFAULT_RULES_SPEC, default_rules
from lqs.domain.email_domains import classify_email_domain
from lqs.domain.scoring import RulesError, RuleSet, parse_rules, score_lead
from lqs.domain.vocabulary import LeadStatus


def _rules(*rules: dict[str, Any], qualified: int = 50, nurture: int = 20) -> RuleSet:
    return parse_rules(
        {"thresholds": {"qualified": qualified, "nurture": nurture}, "rules": list(rules)}
    )


def _one(field: str, when: dict[str, Any], points: int = 10) -> RuleSet:
    return _rules({"id": "r", "field": field, "when": when, "points": points})


@pytest.mark.parametrize(
    ("field", "when", "value", "matches"),
    [
        ("industry", {"equals": "SaaS"}, " saas ", True),
        ("industry", {"equals": "SaaS"}, "fintech", False),
        ("company_size", {"equals": 100}, "100", True),
        ("country", {"in": ["US", "CA"]}, "ca", True),
        ("country", {"in": ["US", "CA"]}, "DE", False),
        ("job_title", {"contains": "sales"}, "Head of Sales", True),
        ("job_title", {"contains": "sales"}, "Engineer", False),
        ("job_title", {"regex": r"\b(vp|chief)\b"}, "Chief of Staff", True),
        ("job_title", {"regex": r"\b(vp|chief)\b"}, "mischief maker", False),
        ("company_size", {"gte": 50}, 50, True),
        ("company_size", {"gte": 50}, 49, False),
        ("company_size", {"lte": 50}, "12", True),
        ("company_size", {"between": [10, 20]}, 20, True),
        ("company_size", {"between": [10, 20]}, 21, False),
        ("company_size", {"between": [10, 20]}, "lots", False),
        ("phone", {"exists": True}, "+12015550123", True),
        ("phone", {"exists": True}, None, False),
        ("phone", {"exists": False}, None, True),
        ("phone", {"exists": False}, "", True),
        ("email", {"email_domain_type": "corporate"}, "a@acme.example", True),
        ("email", {"email_domain_type": ["free", "disposable"]}, "a@gmail.com", True),
        ("email", {"email_domain_type": "free"}, "a@acme.example", False),
        ("country", {"country_in": ["us", "gb"]}, "GB", True),
        ("country", {"country_in": ["us", "gb"]}, "FR", False),
        ("custom.budget", {"gte": 10000}, {"budget": "25,000"}, True),
        ("custom.budget", {"gte": 10000}, {}, False),
    ],
)
def test_each_condition_matches_what_it_says(
    field: str, when: dict[str, Any], value: object, matches: bool
) -> None:
    lead: dict[str, Any] = {"custom": value} if field.startswith("custom.") else {field: value}
    result = score_lead(lead, _one(field, when))
    assert (result.score == 10) is matches
    if matches:
        [entry] = result.breakdown
        assert entry.rule_id == "r"
        assert entry.field == field


def test_breakdown_answers_why_a_lead_qualified() -> None:
    rules = _rules(
        {"id": "corp", "field": "email", "when": {"email_domain_type": "corporate"}, "points": 30,
         "reason": "Company email"},
        {"id": "size", "version": 3, "field": "company_size", "when": {"gte": 100}, "points": 25},
        {"id": "fr", "field": "country", "when": {"equals": "FR"}, "points": 5},
    )  # fmt: skip
    result = score_lead({"email": "ann@acme.example", "company_size": 250, "country": "US"}, rules)
    assert result.outcome is LeadStatus.QUALIFIED
    assert result.score == 55
    assert [e.to_json() for e in result.breakdown] == [
        {"rule_id": "corp", "rule_version": 1, "field": "email", "value": "ann@acme.example",
         "points": 30, "reason": "Company email"},
        {"rule_id": "size", "rule_version": 3, "field": "company_size", "value": 250,
         "points": 25, "reason": "company_size gte 100"},
    ]  # fmt: skip
    assert result.reason == "score 55 reached the qualified threshold 50"


def test_thresholds_and_grades_at_their_boundaries() -> None:
    def outcome(points: int) -> tuple[LeadStatus, str]:
        result = score_lead({"phone": "+1"}, _one("phone", {"exists": True}, points))
        return result.outcome, result.grade

    assert outcome(50) == (LeadStatus.QUALIFIED, "C")
    assert outcome(49) == (LeadStatus.NURTURE, "C")
    assert outcome(20) == (LeadStatus.NURTURE, "D")
    assert outcome(19) == (LeadStatus.DISQUALIFIED, "D")
    assert outcome(80)[1] == "A"
    assert outcome(-5) == (LeadStatus.DISQUALIFIED, "D")


def test_custom_grade_bands() -> None:
    rules = parse_rules(
        {"thresholds": {"qualified": 1, "nurture": 0}, "grades": {"hot": 10, "warm": 5},
         "rules": [{"id": "p", "field": "phone", "when": {"exists": True}, "points": 7}]}
    )  # fmt: skip
    assert score_lead({"phone": "+1"}, rules).grade == "warm"


def test_a_hard_disqualifier_ends_scoring() -> None:
    rules = _rules(
        {"id": "corp", "field": "job_title", "when": {"exists": True}, "points": 90},
        {"id": "throwaway", "field": "email", "when": {"email_domain_type": "disposable"},
         "disqualify": True},
    )  # fmt: skip
    result = score_lead({"email": "x@mailinator.com", "job_title": "CEO"}, rules)
    assert result.outcome is LeadStatus.DISQUALIFIED
    assert result.score == 0
    assert [e.rule_id for e in result.breakdown] == ["throwaway"]
    assert result.reason == "disqualified by rule throwaway"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"rules": []}, "thresholds.qualified and thresholds.nurture must be whole numbers"),
        (
            {"thresholds": {"qualified": 1, "nurture": 5}, "rules": []},
            "must be >= thresholds.nurture",
        ),
        ({"thresholds": {"qualified": 1, "nurture": 0}, "rules": {}}, "rules must be a list"),
        (
            {"thresholds": {"qualified": 1, "nurture": 0}, "rules": [], "extra": 1},
            "unknown top-level",
        ),
    ],
)
def test_rule_set_errors(spec: dict[str, Any], expected: str) -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(spec)
    assert any(expected in p for p in caught.value.problems), caught.value.problems


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"id": "Bad Id", "field": "email", "when": {"exists": True}, "points": 1}, "id must match"),
        ({"id": "r", "field": "emial", "when": {"exists": True}, "points": 1}, "unknown field 'emial'"),
        ({"id": "r", "field": "email", "when": {"exists": True}}, "points is required"),
        ({"id": "r", "field": "email", "when": {"exists": True}, "points": 1.5}, "whole number"),
        ({"id": "r", "field": "email", "when": {"like": "x"}, "points": 1}, "unknown condition 'like'"),
        ({"id": "r", "field": "email", "when": {"exists": True, "equals": 1}, "points": 1},
         "exactly one condition"),
        ({"id": "r", "field": "email", "when": {"regex": "(unclosed"}, "points": 1},
         "regex does not compile"),
        ({"id": "r", "field": "email", "when": {"regex": "a" * 201}, "points": 1},
         "longer than 200"),
        ({"id": "r", "field": "company_size", "when": {"between": [9, 1]}, "points": 1},
         "low <= high"),
        ({"id": "r", "field": "company_size", "when": {"gte": "ten"}, "points": 1},
         "gte needs a number"),
        ({"id": "r", "field": "email", "when": {"email_domain_type": "fancy"}, "points": 1},
         "email_domain_type must be"),
        ({"id": "r", "field": "country", "when": {"country_in": ["USA"]}, "points": 1},
         "two-letter"),
        ({"id": "r", "field": "email", "when": {"in": []}, "points": 1}, "non-empty list"),
        ({"id": "r", "field": "email", "when": {"exists": "yes"}, "points": 1}, "true or false"),
        ({"id": "r", "field": "email", "when": {"exists": True}, "points": 1, "colour": "red"},
         "unknown key(s) colour"),
        ("not a mapping", "must be a mapping"),
    ],
)  # fmt: skip
def test_rule_errors_name_the_rule(rule: Any, expected: str) -> None:
    with pytest.raises(RulesError) as caught:
        _rules(rule)
    [problem] = caught.value.problems
    assert expected in problem
    assert "rules[0]" in problem


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(RulesError) as caught:
        _rules(
            {"id": "a", "field": "nope", "when": {"exists": True}, "points": 1},
            {"id": "a", "field": "email", "when": {"exists": True}, "points": 1},
            {"id": "a", "field": "email", "when": {"exists": True}, "points": 1},
            {"id": "b", "field": "email", "when": {"regex": "("}, "points": 1},
        )
    problems = caught.value.problems
    assert len(problems) == 3
    assert "rule 'a' (rules[0]): unknown field 'nope'" in problems[0]
    assert "rule 'a' (rules[2]): duplicate id" in problems[1]
    assert "rule 'b' (rules[3]): regex does not compile" in problems[2]


def test_default_rules_parse_and_qualify_a_strong_b2b_lead() -> None:
    assert len(default_rules().rules) == len(DEFAULT_RULES_SPEC["rules"])
    strong = {"email": "ceo@bigco.example", "job_title": "CEO", "company_size": 400,
              "company_domain": "bigco.example", "phone": "+12015550123",
              "consent_status": "granted"}  # fmt: skip
    assert score_lead(strong, default_rules()).outcome is LeadStatus.QUALIFIED
    assert score_lead({"email": "x@mailinator.com"}, default_rules()).outcome is (
        LeadStatus.DISQUALIFIED
    )
    assert score_lead({"email": "someone@gmail.com"}, default_rules()).outcome is (
        LeadStatus.DISQUALIFIED
    )


def test_email_domains_are_classified() -> None:
    assert classify_email_domain("a@mailinator.com") == "disposable"
    assert classify_email_domain("a@inbox.mailinator.com") == "disposable"
    assert classify_email_domain("A@GMAIL.COM") == "free"
    assert classify_email_domain("hotmail.co.uk") == "free"
    assert classify_email_domain("a@acme.example") == "corporate"


# ------------------------------------------------------------------- properties

_FIELDS = ["email", "job_title", "company_size", "country", "phone", "industry"]
_CONDITIONS = st.one_of(
    st.builds(lambda v: {"equals": v}, st.sampled_from(["CEO", "US", 100, "saas"])),
    st.builds(lambda v: {"contains": v}, st.sampled_from(["e", "o", "sales"])),
    st.builds(lambda v: {"gte": v}, st.integers(-10, 1000)),
    st.builds(lambda lo, d: {"between": [lo, lo + d]}, st.integers(0, 500), st.integers(0, 500)),
    st.builds(lambda v: {"exists": v}, st.booleans()),
    st.builds(
        lambda v: {"email_domain_type": v}, st.sampled_from(["free", "disposable", "corporate"])
    ),
    st.builds(
        lambda v: {"country_in": v}, st.lists(st.sampled_from(["US", "GB", "DE"]), min_size=1)
    ),
)


@st.composite
def rule_sets(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(0, 8))
    rules = []
    for i in range(count):
        rule: dict[str, Any] = {
            "id": f"rule-{i}",
            "field": draw(st.sampled_from(_FIELDS)),
            "when": draw(_CONDITIONS),
        }
        if draw(st.integers(0, 5)) == 0:
            rule["disqualify"] = True
        else:
            rule["points"] = draw(st.integers(-50, 50))
        rules.append(rule)
    nurture = draw(st.integers(-20, 40))
    return {"thresholds": {"qualified": nurture + draw(st.integers(0, 60)), "nurture": nurture},
            "rules": rules}  # fmt: skip


LEADS = st.fixed_dictionaries(
    {},
    optional={
        "email": st.sampled_from(["a@acme.example", "b@gmail.com", "c@mailinator.com"]),
        "job_title": st.sampled_from(["CEO", "Sales lead", "engineer", ""]),
        "company_size": st.one_of(st.integers(0, 2000), st.just("300"), st.just("n/a")),
        "country": st.sampled_from(["US", "GB", "FR", None]),
        "phone": st.sampled_from(["+12015550123", None]),
        "industry": st.sampled_from(["SaaS", "retail"]),
    },
)


@settings(max_examples=200, deadline=None)
@given(spec=rule_sets(), lead=LEADS)
def test_score_equals_the_sum_of_the_breakdown(spec: dict[str, Any], lead: dict[str, Any]) -> None:
    result = score_lead(lead, parse_rules(spec))
    assert result.score == sum(e.points for e in result.breakdown)
    if result.outcome is LeadStatus.DISQUALIFIED and result.reason.startswith("disqualified by"):
        assert result.score == 0


@settings(max_examples=200, deadline=None)
@given(spec=rule_sets(), lead=LEADS, seed=st.integers())
def test_rule_order_does_not_change_the_result(
    spec: dict[str, Any], lead: dict[str, Any], seed: int
) -> None:
    shuffled = {**spec, "rules": list(spec["rules"])}
    random.Random(seed).shuffle(shuffled["rules"])
    assert score_lead(lead, parse_rules(spec)) == score_lead(lead, parse_rules(shuffled))


@settings(max_examples=100, deadline=None)
@given(spec=rule_sets(), lead=LEADS)
def test_scoring_is_deterministic(spec: dict[str, Any], lead: dict[str, Any]) -> None:
    rules = parse_rules(spec)
    assert score_lead(lead, rules) == score_lead(dict(lead), rules)
