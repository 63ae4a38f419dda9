"""Explainable lead scoring with per-client rules (format and defaults: docs/SCORING.md).

:func:`parse_rules` turns a rule set as loaded from YAML into a validated :class:`RuleSet`,
reporting every problem at once. :func:`score_lead` is pure and deterministic: the same
lead and rules always give the same score, outcome and breakdown, whatever the order of
the rules in the file, and the breakdown always sums to the score.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, NamedTuple, TypeAlias, TypeGuard

import re2  # type: ignore[import-untyped]  # google-re2 ships no type hints

from lqs.domain.email_domains import EMAIL_DOMAIN_TYPES, EmailDomainType, classify_email_domain
from lqs.domain.leads import PROFILE_FIELDS
from lqs.domain.text import first_unstorable
from lqs.domain.vocabulary import LeadStatus
from lqs.errors import ConfigurationError

SCORABLE_FIELDS: tuple[str, ...] = PROFILE_FIELDS
"""The lead fields a rule may name (custom fields are named ``custom.<key>``)."""
CUSTOM_FIELD_PREFIX = "custom."
RULE_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
CONDITION_NAMES: tuple[str, ...] = (
    "equals", "in", "contains", "regex", "gte", "lte", "between", "exists",
    "email_domain_type", "country_in",
)  # fmt: skip
MAX_RULES = 1_000
# With at most MAX_RULES rules of at most MAX_POINTS each, a score fits the integer column.
MAX_POINTS = 1_000_000
MAX_REGEX_LENGTH = 200
MAX_REGEX_SUBJECT = 1_000
# RE2 matches in time linear in the subject, times the size of the compiled program when
# its DFA gives up. Capping the program of each regex and of the whole rule set bounds
# what one lead's rules may cost whatever the patterns: a hostile set at the caps was
# measured at about 60 ms per lead (1,000-character values), where Python's re could
# take forever on one 41-character value. (\pL alone compiles to 1,200 instructions.)
MAX_REGEX_PROGRAM = 2_000
MAX_REGEX_PROGRAM_TOTAL = 5_000
# RE2's memory budget per regex (program and DFA cache; the default is 8 MiB). Past it
# the DFA falls back to RE2's slower but still linear NFA.
REGEX_MAX_MEM = 256 * 1024
MAX_REASON_LENGTH = 200
MAX_VALUE_SHOWN = 200
MAX_GRADE_NAME = 20  # leads.grade is varchar(20)
LOWEST_GRADE = "D"

JsonScalar: TypeAlias = str | int | float | bool | None
Operand: TypeAlias = str | int | float | bool
Number: TypeAlias = int | float | Decimal


class RulesError(ConfigurationError, ValueError):
    """Raised by :func:`parse_rules` when a rule set is invalid.

    ``problems`` lists every problem found, one line each, naming the rule it concerns
    (``rule 'big-co' (rules[2]): regex does not compile: …``); ``str()`` joins them.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class GradeBand(NamedTuple):
    name: str
    minimum: int


DEFAULT_GRADES: tuple[GradeBand, ...] = (
    GradeBand("A", 80),
    GradeBand("B", 60),
    GradeBand("C", 40),
)


# ----------------------------------------------------------------------------- conditions
#
# Each condition says whether a field's value matches. A missing value (None, blank text,
# an empty list or object) matches nothing except ``exists: false``; a list or object
# value (possible in custom fields) matches only ``exists``.


@dataclass(frozen=True)
class Equals:
    """``equals: v`` or ``in: [v, …]``: text compared trimmed and case-insensitively,
    numbers as numbers (``"100"`` equals ``100``), true/false as such."""

    operator: Literal["equals", "in"]
    expected: tuple[Operand, ...]

    def matches(self, value: object) -> bool:
        return any(_same(value, expected) for expected in self.expected)

    def describe(self) -> str:
        if self.operator == "equals":
            return f"equals {_literal(self.expected[0])}"
        return f"in [{', '.join(_literal(v) for v in self.expected)}]"


@dataclass(frozen=True)
class Contains:
    """``contains: s``: the value's text holds ``s``, case-insensitively."""

    text: str

    def matches(self, value: object) -> bool:
        text = _text(value)
        return text is not None and self.text.casefold() in text.casefold()

    def describe(self) -> str:
        return f"contains {_literal(self.text)}"


@dataclass(frozen=True)
class Regex:
    """``regex: p``: an RE2 search (case-insensitive) over the first 1,000 characters.

    RE2 runs in time linear in the subject (no backtracking), so no pattern can make a
    match take long; see :func:`_parse_regex` for the limits on the pattern itself.
    """

    source: str
    compiled: Any = field(compare=False, repr=False)
    """The compiled ``re2`` pattern (compared by ``source``)."""

    def matches(self, value: object) -> bool:
        text = _text(value)
        if text is None:
            return False
        # Matched as UTF-8 bytes, which RE2 works on anyway; "surrogatepass" keeps a lone
        # surrogate (possible in custom fields) from raising: RE2 sees invalid UTF-8.
        subject = text[:MAX_REGEX_SUBJECT].encode("utf-8", "surrogatepass")
        return self.compiled.search(subject) is not None

    @property
    def program_size(self) -> int:
        """The size of RE2's compiled program (instructions): what a match costs at most."""
        return int(self.compiled.programsize)

    def describe(self) -> str:
        return f"matches /{self.source}/"


@dataclass(frozen=True)
class NumberRange:
    """``gte``, ``lte`` or ``between``: the value is a number (or numeric text) in range."""

    operator: Literal["gte", "lte", "between"]
    low: int | float | None
    high: int | float | None

    def matches(self, value: object) -> bool:
        number = _number(value)
        if number is None:
            return False
        return (self.low is None or number >= self.low) and (
            self.high is None or number <= self.high
        )

    def describe(self) -> str:
        if self.operator == "gte":
            return f"gte {self.low}"
        if self.operator == "lte":
            return f"lte {self.high}"
        return f"between {self.low} and {self.high}"


@dataclass(frozen=True)
class Exists:
    """``exists: true`` (present and non-empty) or ``exists: false`` (missing or empty)."""

    present: bool

    def matches(self, value: object) -> bool:
        return _is_present(value) is self.present

    def describe(self) -> str:
        return "exists" if self.present else "is missing or empty"


@dataclass(frozen=True)
class EmailDomainIs:
    """``email_domain_type``: the value is an address whose domain is of one of the types."""

    types: tuple[EmailDomainType, ...]

    def matches(self, value: object) -> bool:
        if not isinstance(value, str) or "@" not in value:
            return False
        try:
            return classify_email_domain(value) in self.types
        except ValueError:  # nothing after the @
            return False

    def describe(self) -> str:
        return f"domain is {' or '.join(self.types)}"


@dataclass(frozen=True)
class CountryIn:
    """``country_in``: the value is one of these ISO 3166 alpha-2 codes (any case)."""

    codes: tuple[str, ...]

    def matches(self, value: object) -> bool:
        return isinstance(value, str) and value.strip().upper() in self.codes

    def describe(self) -> str:
        return f"is one of {', '.join(self.codes)}"


Condition: TypeAlias = Equals | Contains | Regex | NumberRange | Exists | EmailDomainIs | CountryIn


def _is_present(value: object) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, Sized):
        return len(value) > 0
    return True


def _text(value: object) -> str | None:
    """The text a text condition looks at, or None (missing, blank, list or object)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int | float | Decimal):
        return str(value)
    return None


# Plain or thousands-grouped digits with an optional fraction: "250", "-1.5", "25,000".
_NUMERIC_TEXT = re.compile(r"[+-]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)", re.ASCII)


def _number(value: object) -> Number | None:
    """The value as a finite number, or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 100 or not _NUMERIC_TEXT.fullmatch(text):
            return None
        text = text.replace(",", "")
        if "." not in text:
            return int(text)
        parsed = float(text)
        return parsed if math.isfinite(parsed) else None
    return None


def _same(value: object, expected: Operand) -> bool:
    if isinstance(expected, int | float) and not isinstance(expected, bool):
        number = _number(value)
        return number is not None and number == expected
    text = _text(value)
    return text is not None and text.strip().casefold() == _fold(expected)


def _fold(operand: Operand) -> str:
    if isinstance(operand, bool):
        return "true" if operand else "false"
    return str(operand).strip().casefold()


def _literal(operand: Operand) -> str:
    if isinstance(operand, bool):
        return "true" if operand else "false"
    return repr(operand)


# ----------------------------------------------------------------------------- rule sets


@dataclass(frozen=True)
class Rule:
    """One validated rule. A disqualifying rule has ``points == 0``."""

    id: str
    version: int
    field: str
    condition: Condition
    points: int
    reason: str
    disqualify: bool


@dataclass(frozen=True)
class RuleSet:
    """A client's validated rules (kept sorted by id), thresholds and grade bands.

    ``grades`` runs from the highest minimum down; a score below the last is grade D.
    """

    rules: tuple[Rule, ...]
    qualified_at: int
    nurture_at: int
    grades: tuple[GradeBand, ...] = DEFAULT_GRADES

    def __post_init__(self) -> None:
        # Sorted here, not by callers, so two rule sets listing the same rules in a
        # different order are equal and score identically.
        object.__setattr__(self, "rules", tuple(sorted(self.rules, key=lambda r: r.id)))


def parse_rules(data: object) -> RuleSet:
    """Validate a rule set as loaded by ``yaml.safe_load`` (format: docs/SCORING.md).

    Returns the :class:`RuleSet`; the input is not modified.

    Raises:
        RulesError: the rule set is invalid. Every problem is collected before raising,
            each naming the rule it concerns, e.g.
            ``rule 'x' (rules[0]): unknown field 'emial' (did you mean 'email'?)``.
    """
    if not isinstance(data, Mapping):
        raise RulesError(["the rule set must be a mapping with thresholds and rules"])
    problems: list[str] = list(_unstorable_text(data, ""))
    unknown = _unknown_keys(data, ("thresholds", "grades", "rules"))
    if unknown:
        problems.append(f"unknown top-level key(s) {unknown} (allowed: thresholds, grades, rules)")
    qualified_at, nurture_at = _parse_thresholds(data.get("thresholds"), problems)
    grades = _parse_grades(data.get("grades"), problems)
    rules = _parse_rule_list(data.get("rules"), problems)
    if problems:
        raise RulesError(problems)
    return RuleSet(rules, qualified_at, nurture_at, grades)


# The rule set is stored as given, so text PostgreSQL cannot store anywhere in it would
# fail at the write.
def _unstorable_text(data: object, where: str) -> Iterator[str]:
    if isinstance(data, str):
        found = first_unstorable(data)
        if found is not None:
            char = found[1]
            what = "NUL (U+0000)" if char == "\x00" else f"a lone surrogate (U+{ord(char):04X})"
            yield f"{where or 'the rule set'}: text contains {what}, which cannot be stored"
    elif isinstance(data, Mapping):
        for key, value in data.items():
            label = str(key) if first_unstorable(str(key)) is None else ascii(str(key))
            path = f"{where}.{label}" if where else label
            yield from _unstorable_text(key, f"{path} (the key)")
            yield from _unstorable_text(value, path)
    elif isinstance(data, list | tuple):
        for index, item in enumerate(data):
            yield from _unstorable_text(item, f"{where}[{index}]")


def _is_whole(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite_number(value: object) -> TypeGuard[int | float]:
    return _is_whole(value) or (isinstance(value, float) and math.isfinite(value))


def _unknown_keys(spec: Mapping[object, object], allowed: tuple[str, ...]) -> str:
    return ", ".join(sorted(str(key) for key in spec if key not in allowed))


def _parse_thresholds(spec: object, problems: list[str]) -> tuple[int, int]:
    if spec is None:
        problems.append(
            "thresholds is required: thresholds.qualified and thresholds.nurture must be "
            "whole numbers"
        )
        return 0, 0
    if not isinstance(spec, Mapping):
        problems.append("thresholds must be a mapping such as {qualified: 60, nurture: 30}")
        return 0, 0
    unknown = _unknown_keys(spec, ("qualified", "nurture"))
    if unknown:
        problems.append(f"unknown key(s) in thresholds: {unknown} (allowed: qualified, nurture)")
    qualified, nurture = spec.get("qualified"), spec.get("nurture")
    for name, value in (("qualified", qualified), ("nurture", nurture)):
        if not _is_whole(value):
            problems.append(f"thresholds.{name} must be a whole number")
    if not (isinstance(qualified, int) and isinstance(nurture, int)):
        return 0, 0
    if qualified < nurture:
        problems.append(
            f"thresholds.qualified must be >= thresholds.nurture (got {qualified} < {nurture})"
        )
    return qualified, nurture


def _parse_grades(spec: object, problems: list[str]) -> tuple[GradeBand, ...]:
    if spec is None:
        return DEFAULT_GRADES
    if not isinstance(spec, Mapping) or not spec:
        problems.append("grades must map grade names to minimum scores, such as {A: 80, B: 60}")
        return DEFAULT_GRADES
    bands: list[GradeBand] = []
    for name, minimum in spec.items():
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_GRADE_NAME:
            problems.append(f"grade name {name!r} must be text of 1 to {MAX_GRADE_NAME} characters")
        elif not isinstance(minimum, int) or isinstance(minimum, bool):
            problems.append(f"grades.{name} must be a whole number")
        else:
            bands.append(GradeBand(name, minimum))
    bands.sort(key=lambda band: (-band.minimum, band.name))
    for higher, lower in itertools.pairwise(bands):
        if higher.minimum == lower.minimum:
            problems.append(
                f"grades {higher.name} and {lower.name} have the same minimum {lower.minimum}"
            )
    return tuple(bands)


def grade_names(spec: object) -> tuple[str, ...]:
    """The grades a client's stored rule set (``None``: the default rules) can give, best
    first and :data:`LOWEST_GRADE` last; no rule needs to compile for this."""
    grades = spec.get("grades") if isinstance(spec, Mapping) else None
    names = [band.name for band in _parse_grades(grades, [])]
    return (*names, LOWEST_GRADE) if LOWEST_GRADE not in names else tuple(names)


def _parse_rule_list(spec: object, problems: list[str]) -> tuple[Rule, ...]:
    if spec is None:
        problems.append("rules is required: a list of rules (it may be empty)")
        return ()
    if not isinstance(spec, list | tuple):
        problems.append("rules must be a list")
        return ()
    if len(spec) > MAX_RULES:
        problems.append(f"rules: at most {MAX_RULES} rules are allowed (got {len(spec)})")
        return ()
    first_use: dict[str, int] = {}
    rules: list[Rule] = []
    for index, item in enumerate(spec):
        rule = _parse_rule(index, item, problems)
        rule_id = item.get("id") if isinstance(item, Mapping) else None
        if isinstance(rule_id, str):
            if rule_id in first_use:
                problems.append(
                    f"{_where(rule_id, index)}: duplicate id (first used by "
                    f"rules[{first_use[rule_id]}])"
                )
                continue
            first_use[rule_id] = index
        if rule is not None:
            rules.append(rule)
    _check_regex_budget(rules, problems)
    return tuple(rules)


def _check_regex_budget(rules: list[Rule], problems: list[str]) -> None:
    sizes = [(r.condition.program_size, r.id) for r in rules if isinstance(r.condition, Regex)]
    total = sum(size for size, _ in sizes)
    if total > MAX_REGEX_PROGRAM_TOTAL:
        largest = ", ".join(f"{rule_id!r} {size}" for size, rule_id in sorted(sizes)[::-1][:3])
        problems.append(
            f"rules: the regexes compile to {total} RE2 instructions in all, over the limit "
            f"of {MAX_REGEX_PROGRAM_TOTAL}; simplify or remove some (largest: {largest})"
        )


def _where(rule_id: object, index: int) -> str:
    if isinstance(rule_id, str):
        return f"rule {rule_id[:70]!r} (rules[{index}])"
    return f"rules[{index}]"


_RULE_KEYS = ("id", "version", "field", "when", "points", "disqualify", "reason")


def _parse_rule(index: int, spec: object, problems: list[str]) -> Rule | None:
    if not isinstance(spec, Mapping):
        problems.append(f"rules[{index}]: must be a mapping with id, field, when and points")
        return None
    rule_id = spec.get("id")
    where = _where(rule_id, index)
    before = len(problems)

    def problem(text: str) -> None:
        problems.append(f"{where}: {text}")

    unknown = _unknown_keys(spec, _RULE_KEYS)
    if unknown:
        problem(f"unknown key(s) {unknown} (allowed: {', '.join(_RULE_KEYS)})")
    if rule_id is None:
        problem("id is required")
    elif not isinstance(rule_id, str) or not RULE_ID_PATTERN.fullmatch(rule_id):
        problem(f"id must match {RULE_ID_PATTERN.pattern} (lowercase letters, digits, - and _)")
    version = spec.get("version", 1)
    if not _is_whole(version) or version < 1:
        problem("version must be a whole number >= 1")
    field = spec.get("field")
    if field is None:
        problem("field is required (a lead field or custom.<key>)")
    elif not _is_scorable_field(field):
        problem(f"unknown field {field!r}{_field_hint(field)}")
    disqualify = spec.get("disqualify", False)
    if not isinstance(disqualify, bool):
        problem("disqualify must be true or false")
    points = spec.get("points")
    if disqualify is True:
        if points is not None:
            problem("a disqualify rule takes no points (remove points, or disqualify)")
    elif disqualify is False:  # (an invalid disqualify leaves unclear whether points are due)
        if points is None:
            problem("points is required (or disqualify: true)")
        elif not _is_whole(points):
            problem("points must be a whole number")
        elif abs(points) > MAX_POINTS:
            problem(f"points must be between -{MAX_POINTS} and {MAX_POINTS}")
    reason = spec.get("reason")
    if reason is not None and (
        not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON_LENGTH
    ):
        problem(f"reason must be text of 1 to {MAX_REASON_LENGTH} characters")
    condition = _parse_condition(spec.get("when"), problem)
    if len(problems) > before or condition is None:
        return None
    # Everything below was checked above; the isinstance tests only narrow the types.
    assert isinstance(rule_id, str)
    assert isinstance(field, str)
    assert isinstance(version, int)
    return Rule(
        id=rule_id,
        version=version,
        field=field,
        condition=condition,
        points=points if isinstance(points, int) and not disqualify else 0,
        reason=reason.strip() if isinstance(reason, str) else f"{field} {condition.describe()}",
        disqualify=disqualify is True,
    )


def _is_scorable_field(field: object) -> bool:
    if not isinstance(field, str):
        return False
    if field.startswith(CUSTOM_FIELD_PREFIX):
        return bool(field.removeprefix(CUSTOM_FIELD_PREFIX).strip())
    return field in SCORABLE_FIELDS


def _field_hint(field: object) -> str:
    close = difflib.get_close_matches(str(field), SCORABLE_FIELDS, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (one of {', '.join(SCORABLE_FIELDS)}, or custom.<key>)"


def _parse_condition(when: object, problem: Callable[[str], None]) -> Condition | None:
    names = ", ".join(CONDITION_NAMES)
    if when is None:
        problem(f"when is required: exactly one condition ({names})")
        return None
    if not isinstance(when, Mapping) or len(when) != 1:
        problem(f"`when` must hold exactly one condition ({names})")
        return None
    [(name, operand)] = when.items()
    parse = _CONDITION_PARSERS.get(name) if isinstance(name, str) else None
    if parse is None:
        problem(f"unknown condition {name!r} (one of {names})")
        return None
    parsed = parse(operand)
    if isinstance(parsed, str):
        problem(parsed)
        return None
    return parsed


def _is_operand(value: object) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    return isinstance(value, bool) or _is_finite_number(value)


def _parse_equals(operand: object) -> Condition | str:
    if not _is_operand(operand):
        return (
            "equals needs one non-empty value (text, a number or true/false); "
            "for a missing value use exists: false"
        )
    assert isinstance(operand, str | int | float | bool)
    return Equals("equals", (operand,))


def _parse_in(operand: object) -> Condition | str:
    if not (isinstance(operand, list) and operand and all(_is_operand(v) for v in operand)):
        return "in needs a non-empty list of values (text, numbers or true/false)"
    return Equals("in", tuple(v for v in operand if isinstance(v, str | int | float | bool)))


def _parse_contains(operand: object) -> Condition | str:
    if not isinstance(operand, str) or not operand:
        return "contains needs a non-empty string"
    return Contains(operand)


_RE2_HINT = "patterns use RE2 syntax: no backreferences or lookaround; see docs/SCORING.md"


def _re2_options() -> Any:
    options = re2.Options()
    options.case_sensitive = False
    options.max_mem = REGEX_MAX_MEM
    options.log_errors = False  # RE2 would print every refused pattern on stderr
    return options


def _parse_regex(operand: object) -> Condition | str:
    if not isinstance(operand, str) or not operand:
        return "regex needs a pattern"
    if len(operand) > MAX_REGEX_LENGTH:
        return f"regex is longer than {MAX_REGEX_LENGTH} characters ({len(operand)})"
    try:
        compiled = re2.compile(operand, _re2_options())
    except UnicodeEncodeError:
        return "regex contains a lone surrogate (not valid Unicode text)"
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        if reason == "pattern too large - compile failed":
            return (
                "regex is too complex: it compiles past RE2's memory limit "
                "(simplify it, e.g. smaller repetition counts)"
            )
        hint = "RE2 writes \\Z as \\z; " if "\\Z" in reason else ""
        return f"regex does not compile: {reason} ({hint}{_RE2_HINT})"
    regex = Regex(operand, compiled)
    if regex.program_size > MAX_REGEX_PROGRAM:
        return (
            f"regex is too complex: it compiles to {regex.program_size} RE2 instructions "
            f"(at most {MAX_REGEX_PROGRAM}; simplify it, e.g. smaller repetition counts)"
        )
    return regex


def _parse_bound(operator: Literal["gte", "lte"]) -> Callable[[object], Condition | str]:
    def parse(operand: object) -> Condition | str:
        if not _is_finite_number(operand):
            return f"{operator} needs a number"
        if operator == "gte":
            return NumberRange("gte", operand, None)
        return NumberRange("lte", None, operand)

    return parse


def _parse_between(operand: object) -> Condition | str:
    if isinstance(operand, list) and len(operand) == 2:
        low, high = operand
        if _is_finite_number(low) and _is_finite_number(high) and low <= high:
            return NumberRange("between", low, high)
    return "between needs [low, high] numbers with low <= high"


def _parse_exists(operand: object) -> Condition | str:
    if not isinstance(operand, bool):
        return "exists needs true or false"
    return Exists(operand)


def _parse_email_domain_type(operand: object) -> Condition | str:
    requested = operand if isinstance(operand, list) else [operand]
    if not requested or any(t not in EMAIL_DOMAIN_TYPES for t in requested):
        return f"email_domain_type must be one or more of {', '.join(EMAIL_DOMAIN_TYPES)}"
    return EmailDomainIs(tuple(t for t in EMAIL_DOMAIN_TYPES if t in requested))


def _parse_country_in(operand: object) -> Condition | str:
    if not (
        isinstance(operand, list)
        and operand
        and all(isinstance(c, str) and len(c) == 2 and c.isascii() and c.isalpha() for c in operand)
    ):
        hint = ""
        if isinstance(operand, list) and any(isinstance(c, bool) for c in operand):
            hint = " (quote codes like 'NO': YAML reads a bare NO as false)"
        return f"country_in needs a list of two-letter country codes such as [US, GB]{hint}"
    return CountryIn(tuple(sorted({c.upper() for c in operand})))


_CONDITION_PARSERS: dict[str, Callable[[object], Condition | str]] = {
    "equals": _parse_equals,
    "in": _parse_in,
    "contains": _parse_contains,
    "regex": _parse_regex,
    "gte": _parse_bound("gte"),
    "lte": _parse_bound("lte"),
    "between": _parse_between,
    "exists": _parse_exists,
    "email_domain_type": _parse_email_domain_type,
    "country_in": _parse_country_in,
}


# ----------------------------------------------------------------------------- scoring


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
        """The entry as a plain dict, as stored in ``leads.score_breakdown``."""
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
    """A lead's score, outcome (qualified, nurture or disqualified), grade and why."""

    score: int
    outcome: LeadStatus
    grade: str
    breakdown: tuple[BreakdownEntry, ...]
    reason: str


def breakdown_to_json(breakdown: Iterable[BreakdownEntry]) -> list[dict[str, JsonScalar]]:
    """The breakdown as a list of plain dicts (JSON-safe), in the order given."""
    return [entry.to_json() for entry in breakdown]


def score_lead(lead: Mapping[str, object], rules: RuleSet) -> ScoreResult:
    """Score one lead; pure, deterministic, and independent of the order of the rules.

    ``lead`` maps field names to values, with custom fields in a ``custom`` mapping.
    Disqualifying rules are checked first: if any matches, the outcome is disqualified,
    the score 0, the grade D, and the breakdown lists those rules (0 points each).
    Otherwise the breakdown lists every matching point rule, by rule id; the score is
    the sum of their points, the outcome follows the thresholds, the grade the bands.
    Never raises for any lead content.
    """
    disqualified_by = _matching(lead, rules, disqualify=True)
    if disqualified_by:
        names = ", ".join(entry.rule_id for entry in disqualified_by)
        return ScoreResult(
            score=0,
            outcome=LeadStatus.DISQUALIFIED,
            grade=LOWEST_GRADE,
            breakdown=disqualified_by,
            reason=f"disqualified by rule{'s' if len(disqualified_by) > 1 else ''} {names}",
        )
    breakdown = _matching(lead, rules, disqualify=False)
    score = sum(entry.points for entry in breakdown)
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


def _matching(
    lead: Mapping[str, object], rules: RuleSet, *, disqualify: bool
) -> tuple[BreakdownEntry, ...]:
    entries: list[BreakdownEntry] = []
    for rule in rules.rules:  # sorted by id
        if rule.disqualify is not disqualify:
            continue
        value = _field_value(lead, rule.field)
        if rule.condition.matches(value):
            entries.append(
                BreakdownEntry(
                    rule_id=rule.id,
                    rule_version=rule.version,
                    field=rule.field,
                    value=_json_safe(value),
                    points=rule.points,
                    reason=rule.reason,
                )
            )
    return tuple(entries)


def _field_value(lead: Mapping[str, object], field: str) -> object:
    if field.startswith(CUSTOM_FIELD_PREFIX):
        custom = lead.get("custom")
        if not isinstance(custom, Mapping):
            return None
        return custom.get(field.removeprefix(CUSTOM_FIELD_PREFIX))
    return lead.get(field)


def _json_safe(value: object) -> JsonScalar:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float) and math.isfinite(value):
        return value
    return str(value)[:MAX_VALUE_SHOWN]


def _grade(score: int, grades: tuple[GradeBand, ...]) -> str:
    for band in grades:
        if score >= band.minimum:
            return band.name
    return LOWEST_GRADE
