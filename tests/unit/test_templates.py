"""Tenant templates: personalised, escaped, and unable to escape the sandbox or its limits."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import pytest

from lqs.domain.default_templates import DEFAULT_TEMPLATES
from lqs.domain.templates import (
    MAX_SOURCE_CHARS,
    MAX_SUBJECT_CHARS,
    MessageTemplate,
    TemplateError,
    TemplateRenderer,
    unstorable_text,
)
from lqs.domain.vocabulary import Channel

LEAD_FIELDS = ("id", "email", "phone", "first_name", "last_name", "job_title", "company_name",
               "company_domain", "company_size", "industry", "country", "source", "utm_source",
               "utm_medium", "utm_campaign", "utm_term", "utm_content", "custom",
               "consent_status", "received_at")  # fmt: skip


def _template(
    body: str,
    subject: str | None = "Hi",
    body_format: Literal["html", "text"] = "html",
    version: int = 1,
) -> MessageTemplate:
    return MessageTemplate("t", version, Channel.EMAIL, subject, body, body_format)


def _variables(breakdown: list[dict[str, Any]] | None = None, **lead: Any) -> dict[str, Any]:
    """What the processor passes: every lead field (None unless given), client, score..."""
    return {
        "lead": {**dict.fromkeys(LEAD_FIELDS), **lead},
        "client": {"name": "Acme", "slug": "acme"},
        "score": 70,
        "grade": "B",
        "outcome": "qualified",
        "breakdown": breakdown if breakdown is not None else [],
    }


def _render(body: str, renderer: TemplateRenderer | None = None, **lead: Any) -> str:
    return (renderer or TemplateRenderer()).render(_template(body), _variables(**lead)).content


# ---------------------------------------------------------------- personalisation


def test_variables_personalise_the_subject_and_the_body() -> None:
    rendered = TemplateRenderer().render(
        _template("Dear {{ lead.first_name }} from {{ client.name }}", "Lead {{ score }}"),
        _variables(first_name="Ann"),
    )
    assert rendered.subject == "Lead 70"
    assert rendered.content == "Dear Ann from Acme"


def test_html_bodies_escape_variables_and_text_bodies_do_not() -> None:
    renderer = TemplateRenderer()
    evil = _variables(first_name="<script>alert(1)</script>")
    html = renderer.render(_template("{{ lead.first_name }}"), evil)
    text = renderer.render(_template("{{ lead.first_name }}", body_format="text"), evil)
    assert html.content == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert text.content == "<script>alert(1)</script>"


def test_concatenation_in_an_html_body_is_escaped_too() -> None:
    assert _render("{{ '<b>' ~ lead.first_name }}", first_name="<i>") == "&lt;b&gt;&lt;i&gt;"


def test_subjects_are_plain_text_even_for_html_bodies() -> None:
    rendered = TemplateRenderer().render(
        _template("x", "{{ lead.company_name }}"), _variables(company_name="Lee & Sons <UK>")
    )
    assert rendered.subject == "Lee & Sons <UK>"


@pytest.mark.parametrize("line_break", ["\r\n", "\n", "\r", "\u2028", "\x0b"])
def test_a_line_break_in_a_subject_cannot_inject_a_header(line_break: str) -> None:
    rendered = TemplateRenderer().render(
        _template("x", "  Hi {{ lead.first_name }}\n"),
        _variables(first_name=f"Ann{line_break}Bcc: victim@example.com"),
    )
    assert rendered.subject == "Hi Ann Bcc: victim@example.com"


def test_a_long_subject_is_cut_to_the_mail_line_limit() -> None:
    rendered = TemplateRenderer().render(_template("x", "{{ 'y' * 5000 }}"), _variables())
    assert rendered.subject == "y" * MAX_SUBJECT_CHARS


def test_a_template_without_a_subject_renders_none() -> None:
    assert TemplateRenderer().render(_template("x", subject=None), _variables()).subject is None


def test_rendering_does_not_modify_the_variables() -> None:
    variables = _variables(email="a@acme.example")
    with pytest.raises(TemplateError, match="SecurityError"):
        TemplateRenderer().render(_template("{{ lead.update({'email': 'x'}) }}"), variables)
    assert variables == _variables(email="a@acme.example")


def test_ordinary_template_code_works_inside_the_limits() -> None:
    body = (
        "{{ 3 * 4 }} {{ 2 ** 10 }} {{ '-' * 3 }} {{ 'a' + 'b' }} {{ 'a' ~ 1 }} {{ 7 % 4 }} "
        "{{ '%05.1f' % 3.14159 }} {{ '{:>4}'.format('x') }} {{ 'a-b'.replace('-', '+') }} "
        "{{ [1, 2, 3] | join(', ') }} {{ ('%s!' | format('hey')) | upper }} "
        "{{ range(3) | list }} {{ range(4) | length }} {{ [1, 2] | sum }} "
        "{% for x in 'ab' %}{{ loop.index }}/{{ loop.length }}{% endfor %} "
        "{% set ns = namespace(total=0) %}{% for n in range(5) %}{% set ns.total = ns.total + n %}"
        "{% endfor %}{{ ns.total }} "
        "{% macro greet(name) %}hello {{ name }}{% endmacro %}{{ greet('Ann') | title }} "
        "{% set captured %}[{{ lead.first_name }}]{% endset %}{{ captured }}"
    )
    assert _render(body, first_name="Ann") == (
        "12 1024 --- ab a1 3 003.1    x a+b 1, 2, 3 HEY! [0, 1, 2] 4 3 1/22/2 10 Hello Ann [Ann]"
    )


# ---------------------------------------------------------------- errors name the template


def test_a_mapping_key_named_like_a_method_reads_the_method_as_jinja_does() -> None:
    # Attribute lookups on plain dicts skip Jinja's AttributeError round; the result
    # must stay Jinja's: the attribute first (a dict's own methods), then the key.
    body = (
        "{{ lead.custom.colour }} {{ lead.custom['items'] }} {{ lead.custom.items() | length }}"
        " {{ lead.custom.get('colour') }}"
    )
    custom = {"colour": "red", "items": "three"}
    assert _render(body, custom=custom) == "red three 2 red"


def test_a_mapping_subclass_is_looked_up_as_jinja_does() -> None:
    class Custom(dict[str, str]):
        pass

    assert _render("{{ lead.custom.colour }}", custom=Custom(colour="blue")) == "blue"


def test_output_past_the_limit_in_many_small_chunks_is_stopped_within_a_batch() -> None:
    # One printed value per iteration: the cap is checked after each batch of chunks.
    renderer = TemplateRenderer(max_output_chars=1000, time_limit=60)
    with pytest.raises(TemplateError, match="output exceeds 1000 characters"):
        _render("{% for i in range(100000) %}{{ i }}{% endfor %}", renderer)


def test_a_missing_variable_is_an_error_naming_the_template_and_the_variable() -> None:
    with pytest.raises(TemplateError, match=r"template t v1 body: UndefinedError: 'nickname' is"):
        _render("Hi {{ nickname }}")


def test_a_missing_attribute_is_an_error_naming_the_attribute() -> None:
    with pytest.raises(TemplateError, match=r"template t v3 subject: .*'middle_name'"):
        TemplateRenderer().render(_template("x", "{{ lead.middle_name }}", version=3), _variables())


def test_check_reports_a_syntax_error_with_the_template_part_and_line() -> None:
    with pytest.raises(TemplateError, match=r"^template t v1 body line 2: "):
        TemplateRenderer().check(_template("ok\n{% if %}"))


def test_check_reports_a_syntax_error_in_the_subject() -> None:
    with pytest.raises(TemplateError, match=r"^template t v1 subject line 1: "):
        TemplateRenderer().check(_template("ok", "{{ lead.first_name "))


def test_check_reports_an_unknown_filter() -> None:
    with pytest.raises(TemplateError, match="No filter named 'shout'"):
        TemplateRenderer().check(_template("{{ lead.first_name | shout }}"))


def test_check_accepts_a_valid_template() -> None:
    TemplateRenderer().check(_template("{% for e in breakdown %}{{ e.reason }}{% endfor %}"))


def test_a_source_too_deeply_nested_to_compile_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match=r"template t v1 body: does not compile"):
        TemplateRenderer().check(_template("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}"))


def test_an_oversized_source_is_refused() -> None:
    with pytest.raises(TemplateError, match=f"source over {MAX_SOURCE_CHARS} characters"):
        TemplateRenderer().check(_template("x" * (MAX_SOURCE_CHARS + 1)))


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{{ 1 + 'a' }}", "TypeError"),
        ("{{ 'a' < 1 }}", "TypeError"),
        ("{{ lead.email.split('@')[5] }}", "UndefinedError"),
        ("{{ '{0}'.format() }}", "IndexError"),
        ("{{ '%d' % 'x' }}", "TypeError"),
        ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "RecursionError"),
        ("{{ lead | dictsort(by='size') }}", "FilterArgumentError"),
    ],
)
def test_any_exception_while_rendering_becomes_a_template_error(body: str, error: str) -> None:
    with pytest.raises(TemplateError, match=rf"^template t v1 body: ({error})"):
        _render(body, email="a@acme.example")


# ---------------------------------------------------------------- the sandbox


@pytest.mark.parametrize(
    "body",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ ().__class__.__base__.__subclasses__() }}",
        "{{ lead.__dict__ }}",
        "{{ lead.__class__ }}",
        "{{ lead['__class__'] }}",
        "{{ lead | attr('__class__') }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ self._TemplateReference__context }}",
        "{{ namespace.__init__.__globals__['os'] }}",
        "{{ '{0.__class__}'.format(lead) }}",
        "{{ lipsum(100000, false, 100000, 100000) }}",
        "{% include 'other.html' %}",
        "{{ 'x'.encode() }}",
    ],
)
def test_sandbox_escapes_are_refused(body: str) -> None:
    with pytest.raises(TemplateError) as refused:
        _render(body)
    assert "<class" not in str(refused.value)
    assert "<function" not in str(refused.value)


def test_a_refused_attribute_is_reported_as_a_security_error() -> None:
    with pytest.raises(TemplateError, match=r"SecurityError: .*'__class__'.* is unsafe"):
        _render("{{ ''.__class__ }}")


# ---------------------------------------------------------------- output and time limits


def test_output_over_the_limit_stops_rendering_before_the_time_limit() -> None:
    renderer = TemplateRenderer(max_output_chars=1000, time_limit=60)
    forever = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
    with pytest.raises(TemplateError, match=r"^template t v1 body: output exceeds 1000 characters"):
        _render(forever, renderer)


def test_output_exactly_at_the_limit_is_accepted() -> None:
    renderer = TemplateRenderer(max_output_chars=1000)
    assert len(_render("{% for i in range(1000) %}x{% endfor %}", renderer)) == 1000


def test_a_container_too_big_to_print_is_refused_before_it_is_printed() -> None:
    with pytest.raises(TemplateError, match="output exceeds 100000 characters"):
        _render("{{ {}.fromkeys(range(100000), 'x' * 100000) }}")


PATHOLOGICAL_LOOPS = {
    "nested empty loops": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    ),
    "nested loops with a body": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ '' }}{% endfor %}{% endfor %}"
    ),
    "a long loop, then a nested one": (
        "{% for i in range(100000) %}{{ lead.custom | length }}{% endfor %}"
        "{% for i in range(100000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}"
    ),
    "nested loops over a string": (
        "{% set s = 'x' * 100000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}"
    ),
    "exponential macro recursion": (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"
    ),
    "a filter applied to every item of a long list": (
        "{% set r = range(100000) | list %}"
        "{% for i in range(100000) %}{{ [r] | map('sum') | first }}{% endfor %}"
    ),
}


@pytest.mark.parametrize("body", PATHOLOGICAL_LOOPS.values(), ids=PATHOLOGICAL_LOOPS.keys())
def test_a_template_that_runs_too_long_is_stopped_at_the_time_limit(body: str) -> None:
    renderer = TemplateRenderer(time_limit=0.2)
    started = time.monotonic()
    with pytest.raises(
        TemplateError, match=r"^template t v1 body: rendering took longer than 0\.2 s"
    ):
        _render(body, renderer, custom={})
    assert time.monotonic() - started < 2.0


def test_huge_ranges_are_refused() -> None:
    with pytest.raises(TemplateError, match="range of 1000000000 items is over the limit"):
        _render("{{ range(10**9) | list }}")


def test_a_slow_render_in_one_thread_does_not_lift_the_limit_of_another() -> None:
    renderer = TemplateRenderer(time_limit=0.2)
    slow = _template(PATHOLOGICAL_LOOPS["nested empty loops"])
    quick = _template("Hi {{ lead.first_name }}")
    started = threading.Event()

    def render_slow() -> str:
        started.set()
        try:
            renderer.render(slow, _variables())
        except TemplateError as exc:
            return str(exc)
        return "finished"

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcome = pool.submit(render_slow)
        assert started.wait(timeout=5)
        quick_results = [renderer.render(quick, _variables(first_name="Ann")) for _ in range(200)]
        assert "longer than 0.2 s" in outcome.result(timeout=5)
    assert {result.content for result in quick_results} == {"Hi Ann"}


# ---------------------------------------------------------------- memory limits

MEMORY_BOMBS = {
    "repeat a string": ("{{ 'x' * 10**9 }}", "sequences over 100000"),
    "repeat a string just over the limit": ("{{ 'x' * 100001 }}", "sequences over 100000"),
    "repeat a list": ("{{ [1, 2] * 60000 }}", "sequences over 100000"),
    "repeat a list of big strings": ("{{ ['x' * 100000] * 100000 }}", "sequences over 100000"),
    "huge power": ("{{ 2 ** 100000000 }}", "exponents above 100"),
    "nested powers": ("{{ ((2 ** 99) ** 99) ** 99 }}", "powers over 10,000 bits"),
    "squaring in a loop": (
        "{% set ns = namespace(n=3) %}{% for i in range(64) %}{% set ns.n = ns.n * ns.n %}"
        "{% endfor %}",
        "products over 10,000 bits",
    ),
    "doubling with ~": (
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}",
        "sequences over 100000",
    ),
    "doubling with +": (
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
        "{% endfor %}",
        "sequences over 100000",
    ),
    "printf width": ("{{ '%0999999999d' % 1 }}", "sequences over 100000"),
    "printf star width": ("{{ '%*d' % (999999999, 1) }}", "'\\*' widths are not allowed"),
    "format filter width": ("{{ '%999999999s' | format('x') }}", "sequences over 100000"),
    "str.format width": ("{{ '{:>999999999}'.format(1) }}", "sequences over 100000"),
    "str.format nested width": ("{{ '{:>{w}}'.format(1, w=10**9) }}", "nested format fields"),
    "center filter": ("{{ 'x' | center(10**9) }}", "sequences over 100000"),
    "str.ljust": ("{{ 'x'.ljust(10**9) }}", "sequences over 100000"),
    "indent filter": ("{{ ('x\\n' * 50000) | indent(10**6) }}", "sequences over 100000"),
    "wordwrap filter": (
        "{{ ('x' * 100000) | wordwrap(1, wrapstring='y' * 1000) }}",
        "sequences over 100000",
    ),
    "replace filter": ("{{ ('x' * 100000) | replace('x', 'x' * 100000) }}", "sequences over"),
    "str.replace": ("{{ ('x' * 100000).replace('x', 'y' * 100000) }}", "sequences over"),
    "join filter": ("{{ ('x' * 100000) | join('y' * 100000) }}", "sequences over 100000"),
    "join of a generator": (
        "{{ range(100000) | map('string') | join('y' * 1000) }}",
        "sequences over 100000",
    ),
    "str.join": ("{{ ('y' * 100000).join('x' * 100000) }}", "sequences over 100000"),
    "batch filter": ("{{ [1] | batch(10**9, 'x') | list }}", "sequences over 100000"),
    "slice filter": ("{{ range(10) | slice(10**9) | list }}", "sequences over 100000"),
    "string of a huge mapping": (
        "{{ {}.fromkeys(range(100000), 'x' * 100000) | string | length }}",
        "sequences over 100000",
    ),
    "sum of lists": ("{{ [[1]] * 100000 | sum(start=[]) }}", "only adds numbers"),
    "int.to_bytes": ("{{ (1).to_bytes(10**9, 'big') }}", "'to_bytes' of 'int' object is unsafe"),
    "many big strings": (
        "{{ range(100000) | map('center', 100000) | list | length }}",
        "over 10000000 characters or items in all",
    ),
    "a big capture": (
        "{% set s = 'x' * 100000 %}{% set b %}{% for i in range(100000) %}{{ s }}{% endfor %}"
        "{% endset %}{{ b | length }}",
        "in all",
    ),
    "a big macro": (
        "{% macro m() %}{% for i in range(100000) %}" + "x" * 1000 + "{% endfor %}{% endmacro %}"
        "{{ m() | length }}",
        "in all",
    ),
}


@pytest.mark.parametrize(("body", "message"), MEMORY_BOMBS.values(), ids=MEMORY_BOMBS.keys())
def test_memory_bombs_are_refused_before_they_allocate(body: str, message: str) -> None:
    renderer = TemplateRenderer(time_limit=30)  # refused by a memory limit, not by the clock
    with pytest.raises(TemplateError, match=message):
        _render(body, renderer)


# ---------------------------------------------------------------- compiled once


def test_a_template_is_compiled_once_for_many_leads() -> None:
    renderer = TemplateRenderer()
    template = _template("Hello {{ lead.first_name }}", "Lead {{ score }}")
    for i in range(1000):
        renderer.render(template, _variables(first_name=f"N{i}"))
    assert renderer.compiled_count == 2


def test_check_fills_the_cache_that_render_uses() -> None:
    renderer = TemplateRenderer()
    template = _template("Hello {{ lead.first_name }}", "Lead {{ score }}")
    renderer.check(template)
    renderer.render(template, _variables(first_name="Ann"))
    assert renderer.compiled_count == 2


def test_a_new_version_or_a_changed_source_is_compiled_afresh() -> None:
    renderer = TemplateRenderer()
    renderer.render(_template("a", subject=None), _variables())
    renderer.render(_template("a", subject=None, version=2), _variables())
    renderer.render(_template("b", subject=None, version=2), _variables())
    assert renderer.compiled_count == 3


def test_html_and_text_compilations_of_one_source_are_kept_apart() -> None:
    renderer = TemplateRenderer()
    variables = _variables(first_name="<b>")
    html = renderer.render(_template("{{ lead.first_name }}", "{{ lead.first_name }}"), variables)
    text = renderer.render(
        _template("{{ lead.first_name }}", "{{ lead.first_name }}", body_format="text"),
        variables,
    )
    assert (html.subject, html.content) == ("<b>", "&lt;b&gt;")
    assert (text.subject, text.content) == ("<b>", "<b>")


def test_the_cache_is_bounded_and_drops_the_least_recently_used() -> None:
    renderer = TemplateRenderer(cache_size=2)
    first, second, third = (_template(body, subject=None) for body in ("1", "2", "3"))
    for template in (first, second, first, third, first, second):
        renderer.render(template, _variables())
    # first and second fill the cache; third evicts second (first was used since); second
    # is then compiled again.
    assert renderer.compiled_count == 4


# ---------------------------------------------------------------- construction


@pytest.mark.parametrize("template_id", ["", "Lead", "lead-qualified", "x" * 101, "lead qualified"])
def test_a_template_id_is_lowercase_letters_digits_and_underscores(template_id: str) -> None:
    with pytest.raises(ValueError, match="template id"):
        MessageTemplate(template_id, 1, Channel.EMAIL, None, "x", "text")


def test_a_template_version_starts_at_one() -> None:
    with pytest.raises(ValueError, match="version must be 1 or more"):
        MessageTemplate("t", 0, Channel.EMAIL, None, "x", "text")


@pytest.mark.parametrize("limits", [{"max_output_chars": 0}, {"time_limit": 0}, {"cache_size": 0}])
def test_renderer_limits_must_be_positive(limits: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        TemplateRenderer(**limits)


# ---------------------------------------------------------------- the shipped templates

BREAKDOWN = [
    {"rule_id": "big_company", "rule_version": 1, "field": "company_size", "value": 250,
     "points": 40, "reason": "Company has 200+ employees"},
    {"rule_id": "free_mail", "rule_version": 2, "field": "email", "value": "ann@gmail.example",
     "points": -10, "reason": "Free email provider"},
]  # fmt: skip

FULL_LEAD = {
    "email": "ann.lee@acme.example", "phone": "+12015550123", "first_name": "Ann",
    "last_name": "Lee", "job_title": "CTO", "company_name": "Acme", "company_domain":
    "acme.example", "company_size": 250, "industry": "Software", "country": "US",
    "source": "webinar", "utm_campaign": "spring", "custom": {"budget": "50k"},
    "received_at": "2025-01-02T03:04:05+00:00",
}  # fmt: skip


def test_the_shipped_templates_are_keyed_by_their_ids() -> None:
    assert set(DEFAULT_TEMPLATES) == {
        "lead_qualified",
        "lead_acknowledgement",
        "lead_qualified_push",
        "lead_qualified_sms",
        "lead_webhook",
    }
    assert all(key == template.template_id for key, template in DEFAULT_TEMPLATES.items())


@pytest.mark.parametrize("template_id", sorted(DEFAULT_TEMPLATES))
@pytest.mark.parametrize(
    "variables",
    [
        pytest.param(_variables(email="a@acme.example"), id="fields-none-but-email"),
        pytest.param({**_variables(), "lead": {"email": "a@acme.example"}}, id="only-email-key"),
        pytest.param(_variables(BREAKDOWN, **FULL_LEAD), id="full-lead"),
    ],
)
def test_the_shipped_templates_render_for_minimal_and_full_leads(
    template_id: str, variables: dict[str, Any]
) -> None:
    renderer = TemplateRenderer()
    template = DEFAULT_TEMPLATES[template_id]
    renderer.check(template)
    rendered = renderer.render(template, variables)
    assert rendered.content.strip()
    assert "None" not in rendered.content
    assert "None" not in (rendered.subject or "")
    if template.channel is Channel.SMS:
        assert rendered.subject is None
        assert len(rendered.content) <= 160
    else:
        assert rendered.subject


def test_lead_qualified_tells_the_client_who_the_lead_is_and_why_it_scored() -> None:
    rendered = TemplateRenderer().render(
        DEFAULT_TEMPLATES["lead_qualified"], _variables(BREAKDOWN, **FULL_LEAD)
    )
    assert rendered.subject == "New qualified lead: Ann Lee, Acme (70 points)"
    for expected in ("Ann Lee", "CTO", "ann.lee@acme.example", "+12015550123", "250",
                     "webinar", "budget", "50k", "grade <strong>B</strong>",
                     "Company has 200+ employees", "+40", "Free email provider", "-10"):  # fmt: skip
        assert expected in rendered.content


def test_lead_qualified_names_a_lead_without_a_name_by_email() -> None:
    rendered = TemplateRenderer().render(
        DEFAULT_TEMPLATES["lead_qualified"], _variables(email="a@acme.example")
    )
    assert rendered.subject == "New qualified lead: a@acme.example (70 points)"
    assert "No scoring rule matched." in rendered.content


def test_lead_qualified_escapes_what_the_lead_typed() -> None:
    rendered = TemplateRenderer().render(
        DEFAULT_TEMPLATES["lead_qualified"],
        _variables(email="a@acme.example", first_name="<script>x</script>"),
    )
    assert "<script>" not in rendered.content
    assert "&lt;script&gt;x&lt;/script&gt;" in rendered.content


@pytest.mark.parametrize(
    ("first_name", "greeting"), [("Ann", "Ann"), (None, "there"), ("", "there")]
)
def test_the_acknowledgement_greets_the_lead_by_first_name(
    first_name: str | None, greeting: str
) -> None:
    rendered = TemplateRenderer().render(
        DEFAULT_TEMPLATES["lead_acknowledgement"],
        _variables(email="a@acme.example", first_name=first_name),
    )
    assert rendered.subject == f"Thanks for your interest, {greeting}"
    assert f"Hello {greeting}," in rendered.content
    assert "Acme" in rendered.content


def test_the_webhook_carries_every_variable_as_json_whatever_the_lead_typed() -> None:
    typed = {**FULL_LEAD, "first_name": "</script>\"'&\u2028", "custom": {"k": [1, None]}}
    variables = _variables(BREAKDOWN, **typed)
    variables["outcome"] = "nurture"

    rendered = TemplateRenderer().render(DEFAULT_TEMPLATES["lead_webhook"], variables)

    assert json.loads(rendered.content) == variables
    assert rendered.subject == "Nurture lead: </script>\"'& Lee, Acme (70 points)"  # one line


def test_the_sms_fits_one_message_even_for_long_values() -> None:
    rendered = TemplateRenderer().render(
        DEFAULT_TEMPLATES["lead_qualified_sms"],
        _variables(
            first_name="A" * 200,
            last_name="B" * 200,
            company_name="C" * 200,
            email="d" * 200 + "@acme.example",
        ),
    )
    assert len(rendered.content) <= 160
    assert rendered.content.isascii()  # no "…": it would force a 70-character UCS-2 segment
    assert "\n" not in rendered.content


def test_the_push_notification_stays_short_for_long_values() -> None:
    rendered = TemplateRenderer().render(
        DEFAULT_TEMPLATES["lead_qualified_push"],
        _variables(first_name="A" * 200, last_name="B" * 200, company_name="C" * 200),
    )
    assert rendered.subject is not None
    assert rendered.subject.startswith("New ")
    assert len(rendered.content) <= 150


def test_the_push_notification_names_the_lead() -> None:
    rendered = TemplateRenderer().render(
        DEFAULT_TEMPLATES["lead_qualified_push"], _variables(**FULL_LEAD)
    )
    assert rendered.content == "Ann Lee, Acme (grade B)"


def test_the_sms_gives_the_sales_team_a_way_to_call_back() -> None:
    rendered = TemplateRenderer().render(
        DEFAULT_TEMPLATES["lead_qualified_sms"], _variables(**FULL_LEAD)
    )
    assert rendered.content == "Qualified lead: Ann Lee, Acme (70 pts, grade B). +12015550123"


# ---------------------------------------------------------------- output PostgreSQL cannot store

# Each renders a NUL or a lone surrogate, which the database refuses: before the check, the
# processor's write failed and took the whole batch (every tenant's leads) with it, again
# on every restart.
UNSTORABLE_OUTPUTS = {
    "NUL literal": ("{{ '\\x00' }}", "NUL (U+0000) at character 1"),
    "NUL from %c": ("x{{ '%c' % 0 }}", "NUL (U+0000) at character 2"),
    "NUL from the format filter": ("{{ '%c' | format(0) }}", "NUL (U+0000)"),
    "NUL from str.format": ("{{ '{:c}'.format(0) }}", "NUL (U+0000)"),
    "NUL from replace": ("{{ 'a-b' | replace('-', '\\x00') }}", "NUL (U+0000) at character 2"),
    "NUL from concatenation": ("{{ 'ab' ~ '\\0' }}", "NUL (U+0000) at character 3"),
    "NUL in a captured block": ("{% set x %}{{ '\\x00' }}{% endset %}{{ x }}", "NUL (U+0000)"),
    "NUL from a macro": ("{% macro m() %}{{ '\\0' }}{% endmacro %}{{ m() }}", "NUL (U+0000)"),
    "lone surrogate literal": ("{{ '\\ud800' }}", "a lone surrogate (U+D800) at character 1"),
    "low surrogate from %c": ("{{ '%c' % 57343 }}", "a lone surrogate (U+DFFF)"),
    "surrogate from concatenation": ("é{{ 'a' ~ '\\udc80' }}", "a lone surrogate (U+DC80) at character 3"),
    "NUL from the lead's data": ("{{ '%c' % lead.company_size }}", "NUL (U+0000)"),
}  # fmt: skip


@pytest.mark.parametrize(
    ("body", "found"), UNSTORABLE_OUTPUTS.values(), ids=UNSTORABLE_OUTPUTS.keys()
)
@pytest.mark.parametrize("body_format", ["html", "text"])
def test_output_postgresql_cannot_store_is_a_template_error(
    body: str, found: str, body_format: Literal["html", "text"]
) -> None:
    with pytest.raises(TemplateError) as caught:
        TemplateRenderer().render(
            _template(body, body_format=body_format), _variables(company_size=0)
        )

    message = str(caught.value)
    assert message.startswith("template t v1 body: the output contains ")
    assert found in message
    assert message.endswith("which PostgreSQL cannot store")
    message.encode("utf-8")  # the message itself is storable: it becomes error_message


def test_a_subject_postgresql_cannot_store_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match=r"^template t v1 subject: the output contains NUL"):
        TemplateRenderer().render(_template("fine", "Hi {{ lead.first_name }}"),
                                  _variables(first_name="A\x00"))  # fmt: skip


def test_unstorable_text_from_the_lead_is_refused_too() -> None:
    with pytest.raises(TemplateError, match=r"a lone surrogate \(U\+D83D\) at character 4"):
        _render("Hi {{ lead.first_name }}", first_name="\ud83d")


def test_the_same_text_when_storable_renders_unchanged() -> None:
    assert _render("{{ '%c' % 65 }}{{ '\\u00e9' }}{{ '\\U0001F600' }}") == "Aé😀"


def test_unstorable_text_names_the_first_bad_character() -> None:
    assert unstorable_text("") is None
    assert unstorable_text("plain ascii") is None
    assert unstorable_text("Grüße, 東京 😀") is None
    assert unstorable_text("ab\x00c\x00") == "NUL (U+0000) at character 3"
    assert unstorable_text("é\ud800") == "a lone surrogate (U+D800) at character 2"
    assert unstorable_text("\udfff\x00") == "NUL (U+0000) at character 2"  # NUL found first


def test_check_refuses_a_source_postgresql_cannot_store() -> None:
    with pytest.raises(TemplateError, match=r"^template t v1 subject: the source contains NUL"):
        TemplateRenderer().check(_template("fine", "a\x00"))
    with pytest.raises(TemplateError, match=r"^template t v1 body: the source contains a lone"):
        TemplateRenderer().check(_template("\ud800"))


def test_a_template_error_message_is_always_storable() -> None:
    # Messages quote templates and data; the processor stores them as error_message.
    error = TemplateError("quoted 'a\x00b' and '\ud800'")

    assert str(error) == "quoted 'a\\x00b' and '\\ud800'"
    assert unstorable_text(str(error)) is None
