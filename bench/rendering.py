"""Rendering alone: LQS's sandboxed renderer against a plain ``jinja2.Environment``.

Both render every shipped template (src/lqs/domain/default_templates.py), subject and
body, with the same variables, the ones the processor passes for a bench lead, and no
database. The plain environment is what a service without tenant templates would use:
``StrictUndefined`` like LQS, autoescaping for HTML bodies, no sandbox, no limits. LQS's
renderer also folds the subject onto one line and checks the output is storable text;
that is part of its cost.
"""

from __future__ import annotations

import time
from typing import Any

import jinja2

from lqs.domain.default_templates import DEFAULT_TEMPLATES
from lqs.domain.templates import MessageTemplate, TemplateRenderer

RENDERS = 5_000
"""Renders per measurement (of every template in turn)."""

_LEAD = {
    "id": "6f1c0a4e-0000-4000-8000-000000000000", "email": "lead6@company6.example",
    "phone": None, "first_name": "First6", "last_name": "Last6", "job_title": "VP Sales",
    "company_name": "Company 6", "company_domain": "company6.example", "company_size": 42,
    "industry": None, "country": "DE", "source": None, "time_zone": None,
    "utm_source": None, "utm_medium": None, "utm_campaign": None, "utm_term": None,
    "utm_content": None, "custom": {}, "consent_status": "granted",
    "received_at": "2026-12-07T06:26:46.760634+00:00",
}  # fmt: skip
_BREAKDOWN = [
    {"field": field, "value": value, "points": points, "reason": reason, "rule_id": rule,
     "rule_version": 1}
    for field, value, points, reason, rule in (
        ("company_domain", "company6.example", 10, "Company website given", "company-domain"),
        ("consent_status", "granted", 5, "Agreed to be contacted", "consent-granted"),
        ("email", "lead6@company6.example", 25, "Email on a company domain", "corporate-email"),
        ("job_title", "VP Sales", 20, "Senior decision-maker", "senior-title"),
    )
]  # fmt: skip
VARIABLES: dict[str, Any] = {
    "lead": _LEAD, "client": {"name": "Bench", "slug": "bench"}, "score": 60, "grade": "B",
    "outcome": "qualified", "breakdown": _BREAKDOWN,
}  # fmt: skip
"""What the processor passes for a qualified bench lead (bench/processor.py's leads)."""


def _templates() -> list[MessageTemplate]:
    return sorted(DEFAULT_TEMPLATES.values(), key=lambda t: t.template_id)


def lqs_render_us(n: int = RENDERS) -> float:
    """Microseconds per render (subject and body) of LQS's ``TemplateRenderer``, compiled
    once beforehand as the processor's renderer is."""
    renderer = TemplateRenderer()
    templates = _templates()
    for template in templates:
        renderer.render(template, VARIABLES)
    started = time.perf_counter()
    for i in range(n):
        renderer.render(templates[i % len(templates)], VARIABLES)
    return (time.perf_counter() - started) / n * 1e6


def plain_render_us(n: int = RENDERS) -> float:
    """Microseconds per render (subject and body) of the same templates compiled once by
    plain ``jinja2.Environment`` objects (HTML bodies autoescaped)."""
    html = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    # Subjects and text bodies are not HTML: LQS's text sandbox does not escape them either.
    text = jinja2.Environment(autoescape=False, undefined=jinja2.StrictUndefined)  # noqa: S701
    compiled = [
        (
            None if t.subject is None else text.from_string(t.subject),
            (html if t.body_format == "html" else text).from_string(t.body),
        )
        for t in _templates()
    ]
    started = time.perf_counter()
    for i in range(n):
        subject, body = compiled[i % len(compiled)]
        if subject is not None:
            subject.render(VARIABLES)
        body.render(VARIABLES)
    return (time.perf_counter() - started) / n * 1e6
