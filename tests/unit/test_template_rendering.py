"""Sandboxed rendering: personalisation, escaping, and limits a tenant cannot escape."""

from __future__ import annotations

import time
from typing import Any, Literal

import pytest

from lqs.domain.default_templates import DEFAULT_TEMPLATES
from lqs.domain.templates import MessageTemplate, TemplateError, TemplateRenderer
from lqs.domain.vocabulary import CommunicationType

ALL_LEAD_FIELDS = ("id", "email", "phone", "first_name", "last_name", "job_title", "company_name",
                   "company_domain", "company_size", "industry", "country", "source",
                   "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content",
                   "custom", "consent_status", "received_at")  # fmt: skip


def _template(
    body: str, subject: str | None = "Hi", body_format: Literal["html", "text"] = "html"
) -> MessageTemplate:
    return MessageTemplate("t", 1, CommunicationType.EMAIL, subject, body, body_format)


def _variables(**lead: Any) -> dict[str, Any]:
    full = dict.fromkeys(ALL_LEAD_FIELDS)
    full.update(lead)
    return {"lead": full, "client": {"name": "Acme", "slug": "acme"}, "score": 70,
            "grade": "B", "outcome": "qualified",
            "breakdown": [{"rule_id": "r", "rule_version": 1, "field": "email",
                           "value": "x", "points": 70, "reason": "Because"}]}  # fmt: skip


def test_personalises_subject_and_body() -> None:
    rendered = TemplateRenderer().render(
        _template("Dear {{ lead.first_name }} from {{ client.name }}", "Lead {{ score }}"),
        _variables(first_name="Ann"),
    )
    assert rendered.subject == "Lead 70"
    assert rendered.content == "Dear Ann from Acme"


def test_html_bodies_are_escaped_and_text_bodies_are_not() -> None:
    renderer = TemplateRenderer()
    evil = _variables(first_name="<script>alert(1)</script>")
    html = renderer.render(_template("{{ lead.first_name }}"), evil)
    text = renderer.render(_template("{{ lead.first_name }}", body_format="text"), evil)
    assert html.content == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert text.content == "<script>alert(1)</script>"


def test_subject_line_breaks_cannot_inject_headers() -> None:
    rendered = TemplateRenderer().render(
        _template("x", "Hi {{ lead.first_name }}"), _variables(first_name="Ann\r\nBcc: a@b.example")
    )
    assert rendered.subject == "Hi Ann Bcc: a@b.example"


def test_missing_variable_names_it() -> None:
    with pytest.raises(TemplateError, match=r"t v1 body: .*'nickname'"):
        TemplateRenderer().render(_template("{{ lead.nickname.first }}"), _variables())


def test_syntax_error_is_reported_by_check_with_the_line() -> None:
    with pytest.raises(TemplateError, match=r"template t v1 body line 2"):
        TemplateRenderer().check(_template("ok\n{% if %}"))


def test_output_is_capped() -> None:
    renderer = TemplateRenderer(max_output_chars=1000)
    with pytest.raises(TemplateError, match="output exceeds 1000 characters"):
        renderer.render(
            _template("{% for i in range(10000) %}{{ lead.email }}{% endfor %}"),
            _variables(email="someone@acme.example"),
        )


@pytest.mark.parametrize(
    "body",
    [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ '' }}{% endfor %}{% endfor %}",
        "{% for i in range(100000) %}{{ lead.custom | length }}{% endfor %}"
        "{% for i in range(100000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
    ],
)
def test_a_template_that_runs_too_long_is_stopped(body: str) -> None:
    renderer = TemplateRenderer(time_limit=0.2)
    started = time.monotonic()
    with pytest.raises(TemplateError, match=r"longer than 0\.2 s"):
        renderer.render(_template(body), _variables(custom={}))
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{{ 'x' * 10**9 }}", "sequences over 100000"),
        ("{{ 2 ** 100000000 }}", "exponents above 100"),
        ("{{ ((2 ** 99) ** 99) ** 99 }}", "powers over 10,000 bits"),
        ("{{ 'x' * 1000000 }}", "sequences over 100000"),
        ("{{ [1, 2] * 60000 }}", "sequences over 100000"),
    ],
)
def test_memory_bombs_are_refused(body: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        TemplateRenderer().render(_template(body), _variables())


def test_ordinary_arithmetic_still_works() -> None:
    rendered = TemplateRenderer().render(
        _template("{{ 3 * 4 }} {{ 2 ** 10 }} {{ '-' * 3 }}"), _variables()
    )
    assert rendered.content == "12 1024 ---"


def test_huge_ranges_are_refused() -> None:
    with pytest.raises(TemplateError, match="over the limit"):
        TemplateRenderer().render(_template("{{ range(10**9) | list }}"), _variables())


@pytest.mark.parametrize(
    "body",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ lead.__class__ }}",
        "{{ ().__class__.__base__.__subclasses__() }}",
        "{{ lead.update({'email': 'x'}) }}",
        "{{ cycler.__init__.__globals__ }}",
    ],
)
def test_sandbox_escapes_are_refused(body: str) -> None:
    with pytest.raises(TemplateError):
        TemplateRenderer().render(_template(body), _variables())


def test_any_error_inside_a_template_becomes_a_template_error() -> None:
    with pytest.raises(TemplateError, match="ZeroDivisionError"):
        TemplateRenderer().render(_template("{{ 1 / 0 }}"), _variables())


def test_a_template_is_compiled_once_for_many_leads() -> None:
    renderer = TemplateRenderer()
    template = _template("Hello {{ lead.first_name }}", "Lead {{ score }}")
    for i in range(1000):
        renderer.render(template, _variables(first_name=f"N{i}"))
    assert renderer.compiled_count == 2


def test_a_new_version_is_compiled_afresh() -> None:
    renderer = TemplateRenderer()
    renderer.render(_template("a"), _variables())
    renderer.render(
        MessageTemplate("t", 2, CommunicationType.EMAIL, "Hi", "b", "html"), _variables()
    )
    assert renderer.compiled_count == 4


@pytest.mark.parametrize("template_id", sorted(DEFAULT_TEMPLATES))
def test_default_templates_render_for_a_minimal_and_a_full_lead(template_id: str) -> None:
    renderer = TemplateRenderer()
    template = DEFAULT_TEMPLATES[template_id]
    renderer.check(template)
    minimal = renderer.render(template, _variables(email="a@acme.example"))
    full = renderer.render(
        template,
        _variables(email="a@acme.example", first_name="Ann", last_name="Lee",
                   company_name="Acme", phone="+12015550123", company_size=50),
    )  # fmt: skip
    assert minimal.content
    assert "Ann" in full.content or "Ann" in (full.subject or "")
    if template.channel is CommunicationType.SMS:
        assert full.subject is None
        assert len(full.content) <= 160
