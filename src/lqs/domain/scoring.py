"""Explainable lead scoring with per-client rules (format and defaults: docs/SCORING.md).

``parse_rules`` validates a rule set (as loaded from YAML) and reports every problem with
the rule it concerns; ``score_lead`` is pure and deterministic: the same lead and rules
always give the same score, outcome and breakdown, whatever the order of the rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lqs.domain.email_domains import classify_email_domain
from lqs.domain.leads import LEAD_FIELDS
from lqs.domain.vocabulary import LeadStatus

RULE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_REGEX_LENGTH = 200
MAX_REGEX_SUBJECT = 1_000
MAX_VALUE_SHOWN = 200
DEFAULT_GRADES: tuple[tuple[str, int], ...] = (("A", 80), ("B", 60), ("C", 40))
LOWEST_GRADE = "D"
CONDITIONS = (
    "equals", "in", "contains", "regex", "gte", "lte", "between", "exists",
    "email_domain_type", "country_in",
)  # fmt: skip
_EMAIL_TYPES = ("free", "disposable", "corporate")

JsonScalar = str | int | float | bool | None


class RulesError(ValueError):
    """Raised by :func:`parse_rules`; ``problems`` lists every problem, each naming its rule."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class Condition:
    kind: str
    operand: Any
    pattern: re.Pattern[str] | None = None

    def describe(self) -> str:
        return f"{self.kind} {self.operand!r}"


@dataclass(frozen=True)
class Rule:
    id: str
    version: int
    field: str
    condition: Condition
    points: int
    reason: str
    disqualify: bool


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    qualified_at: int
    nurture_at: int
    grades: tuple[tuple[str, int], ...] = DEFAULT_GRADES


@dataclass(frozen=True)
class BreakdownEntry:
    """One rule that matched: what it looked at, what it saw, what it gave, and why."""

    rule_id: str
    rule_version: int
    field: str
    value: JsonScalar
    points: int
    reason: str

    def to_json(self) -> dict[str, JsonScalar]:
        return {
            "rule_id": self.rule_id,
            "rule_version": self.rule_version,
            "field": self.field,
            "value": self.value,
            "points": self.points,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class ScoreResult:
    score: int
    outcome: LeadStatus
    grade: str
    breakdown: tuple[BreakdownEntry, ...]
    reason: str


# ----------------------------------------------------------------------------- parsing


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _parse_condition(when: object, problems: list[str], where: str) -> Condition | None:
    if not isinstance(when, Mapping) or len(when) != 1:
        problems.append(
            f"{where}: `when` must hold exactly one condition ({', '.join(CONDITIONS)})"
        )
        return None
    [(kind, operand)] = when.items()
    if kind not in CONDITIONS:
        problems.append(f"{where}: unknown condition {kind!r} (one of {', '.join(CONDITIONS)})")
        return None
    scalar = (str, int, float, bool)
    if kind == "equals" and not isinstance(operand, scalar):
        problems.append(f"{where}: equals needs a single value")
    elif kind == "in" and not (
        isinstance(operand, list) and operand and all(isinstance(v, scalar) for v in operand)
    ):
        problems.append(f"{where}: in needs a non-empty list of values")
    elif kind == "contains" and not (isinstance(operand, str) and operand):
        problems.append(f"{where}: contains needs a non-empty string")
    elif kind in ("gte", "lte") and not _is_number(operand):
        problems.append(f"{where}: {kind} needs a number")
    elif kind == "between" and not (
        isinstance(operand, list)
        and len(operand) == 2
        and all(_is_number(v) for v in operand)
        and operand[0] <= operand[1]
    ):
        problems.append(f"{where}: between needs [low, high] numbers with low <= high")
    elif kind == "exists" and not isinstance(operand, bool):
        problems.append(f"{where}: exists needs true or false")
    elif kind == "email_domain_type":
        types = operand if isinstance(operand, list) else [operand]
        if not types or any(t not in _EMAIL_TYPES for t in types):
            problems.append(
                f"{where}: email_domain_type must be one or more of {', '.join(_EMAIL_TYPES)}"
            )
        else:
            operand = tuple(types)
    elif kind == "country_in":
        if not (
            isinstance(operand, list)
            and operand
            and all(isinstance(c, str) and len(c) == 2 and c.isalpha() for c in operand)
        ):
            problems.append(f"{where}: country_in needs a list of two-letter country codes")
        else:
            operand = tuple(c.upper() for c in operand)
    elif kind == "regex":
        if not isinstance(operand, str) or not operand:
            problems.append(f"{where}: regex needs a pattern")
        elif len(operand) > MAX_REGEX_LENGTH:
            problems.append(f"{where}: regex is longer than {MAX_REGEX_LENGTH} characters")
        else:
            try:
                return Condition(kind, operand, re.compile(operand, re.IGNORECASE))
            except re.error as exc:
                problems.append(f"{where}: regex does not compile: {exc}")
        return None
    if len(problems) and problems[-1].startswith(where):
        return None
    if isinstance(operand, list):
        operand = tuple(operand)
    return Condition(kind, operand)


def _parse_rule(index: int, spec: object, problems: list[str]) -> Rule | None:
    if not isinstance(spec, Mapping):
        problems.append(f"rules[{index}]: must be a mapping with id, field, when and points")
        return None
    rule_id = spec.get("id")
    where = f"rule {rule_id!r} (rules[{index}])"
    before = len(problems)
    unknown = set(spec) - {"id", "version", "field", "when", "points", "reason", "disqualify"}
    if unknown:
        problems.append(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    if not isinstance(rule_id, str) or not RULE_ID.match(rule_id):
        problems.append(f"{where}: id must match {RULE_ID.pattern}")
    version = spec.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        problems.append(f"{where}: version must be a whole number >= 1")
    field = spec.get("field")
    if not isinstance(field, str) or not (
        field in LEAD_FIELDS or (field.startswith("custom.") and len(field) > len("custom."))
    ):
        problems.append(f"{where}: unknown field {field!r} (a lead field or custom.<key>)")
    disqualify = spec.get("disqualify", False)
    if not isinstance(disqualify, bool):
        problems.append(f"{where}: disqualify must be true or false")
    points = spec.get("points", 0 if disqualify is True else None)
    if points is None:
        problems.append(f"{where}: points is required (or disqualify: true)")
    elif not isinstance(points, int) or isinstance(points, bool):
        problems.append(f"{where}: points must be a whole number")
    reason = spec.get("reason")
    if reason is not None and not isinstance(reason, str):
        problems.append(f"{where}: reason must be text")
    condition = _parse_condition(spec.get("when"), problems, where)
    if len(problems) > before or condition is None:
        return None
    assert isinstance(rule_id, str)
    assert isinstance(field, str)
    assert isinstance(points, int)
    return Rule(
        id=rule_id,
        version=int(version),
        field=field,
        condition=condition,
        points=0 if disqualify else points,
        reason=reason or f"{field} {condition.describe()}",
        disqualify=bool(disqualify),
    )


def _parse_grades(spec: object, problems: list[str]) -> tuple[tuple[str, int], ...]:
    if spec is None:
        return DEFAULT_GRADES
    if (
        not isinstance(spec, Mapping)
        or not spec
        or not all(
            isinstance(k, str) and k and isinstance(v, int) and not isinstance(v, bool)
            for k, v in spec.items()
        )
    ):
        problems.append("grades must map grade names to whole-number minimum scores")
        return DEFAULT_GRADES
    return tuple(sorted(((str(k), int(v)) for k, v in spec.items()), key=lambda g: -g[1]))


def parse_rules(data: object) -> RuleSet:
    """Validate a rule set (``thresholds``, optional ``grades``, ``rules``).

    Raises:
        RulesError: listing every problem found, each naming the rule it concerns.
    """
    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise RulesError(["the rule set must be a mapping with thresholds and rules"])
    unknown = set(data) - {"thresholds", "grades", "rules"}
    if unknown:
        problems.append(f"unknown top-level key(s) {', '.join(sorted(map(str, unknown)))}")
    thresholds = data.get("thresholds")
    qualified_at = nurture_at = 0
    if not isinstance(thresholds, Mapping) or not all(
        isinstance(thresholds.get(k), int) and not isinstance(thresholds.get(k), bool)
        for k in ("qualified", "nurture")
    ):
        problems.append("thresholds.qualified and thresholds.nurture must be whole numbers")
    else:
        qualified_at, nurture_at = int(thresholds["qualified"]), int(thresholds["nurture"])
        if qualified_at < nurture_at:
            problems.append("thresholds.qualified must be >= thresholds.nurture")
    grades = _parse_grades(data.get("grades"), problems)
    specs = data.get("rules")
    rules: list[Rule] = []
    if not isinstance(specs, Sequence) or isinstance(specs, str | bytes):
        problems.append("rules must be a list")
    else:
        seen: set[str] = set()
        for index, spec in enumerate(specs):
            rule = _parse_rule(index, spec, problems)
            if rule is None:
                continue
            if rule.id in seen:
                problems.append(f"rule {rule.id!r} (rules[{index}]): duplicate id")
                continue
            seen.add(rule.id)
            rules.append(rule)
    if problems:
        raise RulesError(problems)
    return RuleSet(tuple(rules), qualified_at, nurture_at, grades)


# ----------------------------------------------------------------------------- scoring


def _lookup(lead: Mapping[str, object], field: str) -> object:
    if field.startswith("custom."):
        custom = lead.get("custom")
        return custom.get(field.removeprefix("custom.")) if isinstance(custom, Mapping) else None
    return lead.get(field)


def _number(value: object) -> float | None:
    if _is_number(value):
        return float(value)  # type: ignore[arg-type]
    if isinstance(value, str):
        try:
            return float(value.strip().replace(",", ""))
        except ValueError:
            return None
    return None


def _text(value: object) -> str:
    return str(value).strip().casefold()


def _same(value: object, operand: object) -> bool:
    if _is_number(operand) or _is_number(value):
        a, b = _number(value), _number(operand)
        return a is not None and b is not None and a == b
    return _text(value) == _text(operand)


def _present(value: object) -> bool:
    if value is None:
        return False
    if isinstance(value, str | list | dict | tuple):
        return len(value) > 0
    return True


def _matches(condition: Condition, value: object) -> bool:
    kind, operand = condition.kind, condition.operand
    if kind == "exists":
        return _present(value) is operand
    if not _present(value):
        return False
    if kind == "equals":
        return _same(value, operand)
    if kind == "in":
        return any(_same(value, o) for o in operand)
    if kind == "contains":
        return _text(operand) in _text(value)
    if kind == "regex":
        assert condition.pattern is not None
        return condition.pattern.search(str(value)[:MAX_REGEX_SUBJECT]) is not None
    if kind in ("gte", "lte", "between"):
        number = _number(value)
        if number is None:
            return False
        if kind == "gte":
            return bool(number >= operand)
        if kind == "lte":
            return bool(number <= operand)
        return bool(operand[0] <= number <= operand[1])
    if kind == "email_domain_type":
        return isinstance(value, str) and classify_email_domain(value) in operand
    if kind == "country_in":
        return isinstance(value, str) and value.strip().upper() in operand
    raise AssertionError(f"unhandled condition {kind}")


def _shown(value: object) -> JsonScalar:
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)[:MAX_VALUE_SHOWN]


def _entry(rule: Rule, value: object) -> BreakdownEntry:
    return BreakdownEntry(
        rule.id, rule.version, rule.field, _shown(value), rule.points, rule.reason
    )


def _grade(score: int, grades: tuple[tuple[str, int], ...]) -> str:
    for name, minimum in grades:
        if score >= minimum:
            return name
    return LOWEST_GRADE


def score_lead(lead: Mapping[str, object], rules: RuleSet) -> ScoreResult:
    """Score one lead (pure, deterministic, independent of rule order).

    Disqualifying rules are checked first: if any matches, the lead is disqualified with
    score 0 and the breakdown lists those rules. Otherwise every point rule that matches
    adds its points; the breakdown lists them by rule id and sums to the score.
    """
    ordered = sorted(rules.rules, key=lambda r: r.id)
    disqualifiers = [
        _entry(r, _lookup(lead, r.field))
        for r in ordered
        if r.disqualify and _matches(r.condition, _lookup(lead, r.field))
    ]
    if disqualifiers:
        names = ", ".join(e.rule_id for e in disqualifiers)
        return ScoreResult(
            score=0,
            outcome=LeadStatus.DISQUALIFIED,
            grade=LOWEST_GRADE,
            breakdown=tuple(disqualifiers),
            reason=f"disqualified by rule {names}",
        )
    breakdown = tuple(
        _entry(r, _lookup(lead, r.field))
        for r in ordered
        if not r.disqualify and _matches(r.condition, _lookup(lead, r.field))
    )
    score = sum(e.points for e in breakdown)
    if score >= rules.qualified_at:
        outcome = LeadStatus.QUALIFIED
        reason = f"score {score} reached the qualified threshold {rules.qualified_at}"
    elif score >= rules.nurture_at:
        outcome = LeadStatus.NURTURE
        reason = (
            f"score {score} reached the nurture threshold {rules.nurture_at} "
            f"but not the qualified threshold {rules.qualified_at}"
        )
    else:
        outcome = LeadStatus.DISQUALIFIED
        reason = f"score {score} is below the nurture threshold {rules.nurture_at}"
    return ScoreResult(score, outcome, _grade(score, rules.grades), breakdown, reason)
