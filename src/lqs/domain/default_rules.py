"""The rule set a client gets until it stores its own (each rule is explained in
docs/SCORING.md, which also shows this set as YAML a client can copy and edit)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from lqs.domain.scoring import RuleSet, parse_rules

# Plain data in the YAML format, so it can be dumped as a starting point for a client.
DEFAULT_RULES_SPEC: dict[str, Any] = {
    "thresholds": {"qualified": 50, "nurture": 20},
    "grades": {"A": 80, "B": 60, "C": 40},
    "rules": [
        {
            "id": "disposable-email",
            "field": "email",
            "when": {"email_domain_type": "disposable"},
            "disqualify": True,
            "reason": "Disposable (throwaway) email address",
        },
        {
            "id": "corporate-email",
            "field": "email",
            "when": {"email_domain_type": "corporate"},
            "points": 25,
            "reason": "Email on a company domain",
        },
        {
            "id": "free-email",
            "field": "email",
            "when": {"email_domain_type": "free"},
            "points": -5,
            "reason": "Webmail address rather than a company one",
        },
        {
            "id": "senior-title",
            "field": "job_title",
            "when": {
                "regex": r"\b(ceo|cto|cfo|coo|cmo|cio|cro|cpo|chief|founder|president"
                r"|[se]?vp|vice president|head|director)\b"
            },
            "points": 20,
            "reason": "Senior decision-maker",
        },
        {
            "id": "company-size",
            "field": "company_size",
            "when": {"between": [50, 10000]},
            "points": 20,
            "reason": "Company of 50 to 10,000 people",
        },
        {
            "id": "company-domain",
            "field": "company_domain",
            "when": {"exists": True},
            "points": 10,
            "reason": "Company website given",
        },
        {
            "id": "phone-given",
            "field": "phone",
            "when": {"exists": True},
            "points": 10,
            "reason": "Phone number given",
        },
        {
            "id": "consent-granted",
            "field": "consent_status",
            "when": {"equals": "granted"},
            "points": 5,
            "reason": "Agreed to be contacted",
        },
    ],
}


@cache
def default_rules() -> RuleSet:
    """The parsed default rule set (parsed once; the spec is known to be valid).

    Raises:
        RulesError: only if ``DEFAULT_RULES_SPEC`` was edited into an invalid state,
            which the unit tests catch.
    """
    return parse_rules(DEFAULT_RULES_SPEC)


def client_rules(scoring_rules: Mapping[str, Any] | None) -> RuleSet:
    """The rule set a client's stored ``scoring_rules`` setting gives: the default set when
    it stores none.

    Raises:
        RulesError: the stored rules no longer parse (the processor marks such a client's
            leads ``error``).
    """
    return default_rules() if scoring_rules is None else parse_rules(scoring_rules)
