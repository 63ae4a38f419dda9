"""The check a template must pass before it is stored (``lqs templates put``).

Names are checked on the syntax tree, so a typo in a branch a sample lead never takes is
found too; then a sample lead, with every variable the processor passes, is rendered.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

import pytest

from lqs.cli.templates import _sample_variables
from lqs.db.clients import Client
from lqs.domain.default_templates import DEFAULT_TEMPLATES
from lqs.domain.templates import MessageTemplate, TemplateError, TemplateRenderer
from lqs.domain.vocabulary import Channel
from lqs.worker.processor import _TEMPLATE_LEAD_FIELDS

CLIENT = Client(uuid.UUID(int=1), "Acme Ltd", "acme", {})
SAMPLE = _sample_variables(CLIENT)


def _template(
    body: str, subject: str | None = None, body_format: Literal["html", "text"] = "html"
) -> MessageTemplate:
    return MessageTemplate("t", 1, Channel.EMAIL, subject, body, body_format)


def _unknown(body: str, subject: str | None = None) -> list[str]:
    return TemplateRenderer().unknown_names(_template(body, subject), SAMPLE)


def _vet_error(body: str, subject: str | None = None) -> str:
    with pytest.raises(TemplateError) as caught:
        TemplateRenderer().vet(_template(body, subject), SAMPLE)
    return str(caught.value)


# ---------------------------------------------------------------- the sample


def test_the_sample_has_every_variable_and_lead_field_the_processor_passes() -> None:
    assert set(SAMPLE) == {"lead", "client", "score", "grade", "outcome", "breakdown"}
    assert set(SAMPLE["lead"]) == set(_TEMPLATE_LEAD_FIELDS)
    assert all(value is not None for key, value in SAMPLE["lead"].items() if key != "custom"), (
        "every lead field gets a plausible value"
    )
    assert SAMPLE["lead"]["custom"] == {}, "no custom field: many leads have none"
    assert SAMPLE["client"] == {"name": "Acme Ltd", "slug": "acme"}
    assert SAMPLE["score"] == sum(entry["points"] for entry in SAMPLE["breakdown"])


@pytest.mark.parametrize("template_id", sorted(DEFAULT_TEMPLATES))
def test_every_shipped_template_passes_the_check(template_id: str) -> None:
    TemplateRenderer().vet(DEFAULT_TEMPLATES[template_id], SAMPLE)


# ---------------------------------------------------------------- names


def test_known_names_and_fields_pass() -> None:
    body = (
        "{{ lead.first_name }} {{ lead['email'] }} {{ client.name }} {{ client.slug }}"
        " {{ score }} {{ grade }} {{ outcome }} {% for e in breakdown %}{{ e.reason }}"
        "{{ loop.index }}{% endfor %} {{ lead.get('phone') }} {{ lead.custom.anything }}"
        " {{ lead.custom['any-key'].deeper }} {{ range(2) | list }} {{ dict(a=1) }}"
        " {% set ns = namespace(n=1) %}{{ ns.n }} {% for key in ['email'] %}{{ lead[key] }}"
        "{% endfor %}"
    )

    assert _unknown(body, "New lead: {{ lead.company_name }}") == []


def test_an_unknown_top_level_name_is_reported_with_its_line_and_a_suggestion() -> None:
    [problem] = _unknown("line one\n{{ leed.email }}")

    assert problem == (
        "template t v1 body line 2: unknown variable 'leed' (did you mean 'lead'?)"
        " (known: breakdown, client, grade, lead, outcome, score)"
    )


def test_an_unknown_lead_field_is_reported_by_attribute_and_by_key() -> None:
    problems = _unknown("{{ lead.emial }}\n{{ lead['frist_name'] }}")

    assert problems[0].startswith(
        "template t v1 body line 1: lead has no field 'emial' (did you mean 'email'?)"
        " (lead has: company_domain, company_name,"
    )
    assert problems[1].startswith(
        "template t v1 body line 2: lead has no field 'frist_name' (did you mean 'first_name'?)"
    )


def test_an_unknown_client_field_is_reported() -> None:
    [problem] = _unknown("{{ client.title }}")

    assert (
        problem == "template t v1 body line 1: client has no field 'title' (client has: name, slug)"
    )


def test_a_name_in_a_branch_no_sample_takes_is_still_found() -> None:
    [problem] = _unknown("{% if false %}{{ lead.compnay_name }}{% endif %}")

    assert "lead has no field 'compnay_name' (did you mean 'company_name'?)" in problem


def test_names_set_by_the_template_are_its_own() -> None:
    body = (
        "{% set lead = {'x': 1} %}{{ lead.x }}"
        "{% for client in [{'y': 1}] %}{{ client.y }}{% endfor %}"
        "{% macro m(score) %}{{ score.z }}{% endmacro %}{{ m({'z': 1}) }}"
    )

    assert _unknown(body) == []


def test_globals_the_sandbox_removed_are_unknown() -> None:
    [problem] = _unknown("{{ lipsum(1) }}")

    assert "unknown variable 'lipsum'" in problem


def test_every_problem_in_both_parts_is_reported_at_once() -> None:
    problems = _unknown("{{ nope }} {{ lead.nope }}", "{{ client.nope }} {{ lead.emali }}")

    assert [p.split(":")[0] for p in problems] == [
        "template t v1 subject line 1",
        "template t v1 subject line 1",
        "template t v1 body line 1",
        "template t v1 body line 1",
    ]
    assert "client has no field 'nope'" in problems[0]
    assert "lead has no field 'emali'" in problems[1]
    assert "unknown variable 'nope'" in problems[2]


def test_vet_reports_names_before_rendering() -> None:
    message = _vet_error("{{ lead.emial }} {{ nope }}")

    assert message.startswith("template t v1 body line 1: unknown variable 'nope'")
    assert "; template t v1 body line 1: lead has no field 'emial'" in message


def test_vet_reports_a_syntax_error() -> None:
    assert _vet_error("{% if %}").startswith("template t v1 body line 1: ")


# ---------------------------------------------------------------- the sample render


@pytest.mark.parametrize(
    ("body", "found"),
    [
        ("{{ '\\x00' }}", "NUL (U+0000)"),
        ("{{ '%c' % 0 }}", "NUL (U+0000)"),
        ("{{ '\\ud800' }}", "a lone surrogate (U+D800)"),
        ("{{ lead.first_name ~ '%c' % 0 }}", "NUL (U+0000) at character 4"),
    ],
)
def test_vet_refuses_output_postgresql_cannot_store(body: str, found: str) -> None:
    message = _vet_error(body)

    assert message.startswith("template t v1 body: the output contains ")
    assert found in message
    assert message.endswith(", rendering a sample lead")


def test_vet_refuses_a_template_that_fails_on_the_sample() -> None:
    message = _vet_error("{{ score + 'x' }}")

    assert message.startswith("template t v1 body: TypeError: ")
    assert message.endswith(", rendering a sample lead")


def test_an_unguarded_custom_field_is_refused_with_how_to_guard_it() -> None:
    message = _vet_error("Plan: {{ lead.custom.plan }}")

    assert "has no attribute 'plan', rendering a sample lead" in message
    assert message.endswith(
        "(it has no custom field 'plan', as some leads will not: read one as"
        " lead.custom.get('plan') or lead.custom['plan'] | default(''))"
    )


@pytest.mark.parametrize(
    "body",
    [
        "{{ lead.custom.get('plan') }}",
        "{{ lead.custom.get('plan', 'free') | upper }}",
        "{{ lead.custom.plan | default('') }}",
        "{{ lead.custom['plan-name'] | default('none', true) }}",
        "{% if lead.custom.plan is defined %}{{ lead.custom.plan }}{% endif %}",
        "{% if 'plan' in lead.custom %}{{ lead.custom.plan }}{% endif %}",
    ],
)
def test_a_guarded_custom_field_passes(body: str) -> None:
    TemplateRenderer().vet(_template(body), SAMPLE)


def test_vet_does_not_modify_the_sample() -> None:
    before = repr(SAMPLE)

    TemplateRenderer().vet(_template("{{ lead.first_name }}"), SAMPLE)

    assert repr(SAMPLE) == before


def _with_custom(**custom: Any) -> dict[str, Any]:
    return {**SAMPLE, "lead": {**SAMPLE["lead"], "custom": custom}}


def test_the_custom_hint_is_only_given_for_missing_custom_fields() -> None:
    with pytest.raises(TemplateError) as caught:
        TemplateRenderer().vet(_template("{{ lead.custom.plan + 1 }}"), _with_custom(plan="x"))

    assert "custom field" not in str(caught.value)
