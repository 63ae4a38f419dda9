"""``lqs suppressions list|add|remove``, ``lqs comms show``, and the checks of ``lqs templates
put`` and ``lqs clients set-rules``, on a real database.

The commands run in process (typer's runner) for speed; the unknown-client errors, which
the entry point turns into one line, run as real ``lqs`` processes.
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from click.testing import Result
from psycopg.types.json import Jsonb
from typer.testing import CliRunner

from lqs.cli import app
from tests.integration.test_cli import assert_one_line_error, run_lqs

CREATED = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def lqs(url: str, *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"LQS_DATABASE_URL": url, "COLUMNS": "250"})


def assert_refused(result: Result, fragment: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert fragment in lines[0]


@pytest.fixture
def slug(migrated_db: str) -> str:
    name = f"cli-{uuid.uuid4().hex[:10]}"
    with psycopg.connect(migrated_db) as conn:
        conn.execute(
            "INSERT INTO public.clients (name, slug, settings) VALUES (%s, %s, '{}')", (name, name)
        )
    return name


def _suppressions(url: str, slug: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT s.channel, s.recipient, s.reason, s.source FROM public.suppressions AS s"
            " JOIN public.clients AS c ON c.id = s.client_id WHERE c.slug = %s"
            " ORDER BY s.recipient",
            (slug,),
        ).fetchall()


# ---------------------------------------------------------------------------- suppressions


def test_a_suppression_is_added_listed_and_removed(migrated_db: str, slug: str) -> None:
    added = lqs(migrated_db, "suppressions", "add", " Ann@Buyer.Example ", "--client", slug,
                "--note", "asked by phone")  # fmt: skip
    again = lqs(migrated_db, "suppressions", "add", "ann@buyer.example", "--client", slug)
    listed = lqs(migrated_db, "suppressions", "list", "--client", slug)

    assert added.exit_code == 0, added.output
    assert "suppressed: email ann@buyer.example" in added.stdout
    assert "already suppressed" in again.stdout
    assert listed.exit_code == 0, listed.output
    assert "ann@buyer.example" in listed.stdout
    assert "manual" in listed.stdout
    assert "1 suppressed recipient(s)" in listed.stdout
    assert _suppressions(migrated_db, slug) == [
        ("email", "ann@buyer.example", "manual", "asked by phone")
    ]

    removed = lqs(migrated_db, "suppressions", "remove", "ANN@buyer.example", "--client", slug)

    assert removed.exit_code == 0, removed.output
    assert "removed: email ann@buyer.example" in removed.stdout
    assert _suppressions(migrated_db, slug) == []
    empty = lqs(migrated_db, "suppressions", "list", "--client", slug)
    assert "0 suppressed recipient(s)" in empty.stdout


def test_list_can_show_one_channel(migrated_db: str, slug: str) -> None:
    for recipient, channel in (("+12015550123", "sms"), ("bo@buyer.example", "email")):
        added = lqs(migrated_db, "suppressions", "add", recipient, "--channel", channel,
                    "--client", slug)  # fmt: skip
        assert added.exit_code == 0, added.output

    sms = lqs(migrated_db, "suppressions", "list", "--client", slug, "--channel", "sms")

    assert "+12015550123" in sms.stdout
    assert "bo@buyer.example" not in sms.stdout
    assert "1 suppressed recipient(s)" in sms.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["add", "a@b.example", "--channel", "fax"], "--channel must be one of"),
        (["list", "--channel", "fax"], "--channel must be one of"),
        (["remove", "a@b.example", "--channel", "pigeon"], "--channel must be one of"),
        (["add", "not-an-address"], "RECIPIENT is not a valid email address"),
        (["add", "555-0123", "--channel", "sms"], "E.164"),
        (["add", "+1555²0123", "--channel", "sms"], "E.164"),
    ],
    ids=[
        "add bad channel",
        "list bad channel",
        "remove bad channel",
        "bad email",
        "bad number",
        "superscript digit",
    ],
)
def test_bad_input_is_refused_in_one_line_and_stores_nothing(
    migrated_db: str, slug: str, args: list[str], fragment: str
) -> None:
    result = lqs(migrated_db, "suppressions", *args, "--client", slug)

    assert_refused(result, fragment)
    assert _suppressions(migrated_db, slug) == []


def test_removing_a_recipient_that_is_not_suppressed_fails(migrated_db: str, slug: str) -> None:
    result = lqs(migrated_db, "suppressions", "remove", "nobody@buyer.example", "--client", slug)

    assert_refused(result, f"email nobody@buyer.example is not on {slug}'s suppression list")


def test_an_unknown_client_is_one_line_naming_how_to_find_one(migrated_db: str) -> None:
    env = {"LQS_DATABASE_URL": migrated_db}
    commands = [
        ("suppressions", "list", "--client", "no-such-client"),
        ("suppressions", "add", "a@b.example", "--client", "no-such-client"),
        ("suppressions", "remove", "a@b.example", "--client", "no-such-client"),
    ]
    with ThreadPoolExecutor(len(commands)) as pool:
        results = list(pool.map(lambda args: run_lqs(*args, env=env), commands))

    for result in results:
        assert_one_line_error(result, "no client with slug 'no-such-client'", "lqs clients list")


# ---------------------------------------------------------------------------- comms show


def _one(conn: psycopg.Connection[Any], sql: str, *params: Any) -> Any:
    row = conn.execute(sql.encode(), params).fetchone()
    assert row is not None
    return row[0]


def _communication_with_history(url: str, slug: str) -> UUID:
    with psycopg.connect(url) as conn:
        client_id = _one(conn, "SELECT id FROM public.clients WHERE slug = %s", slug)
        lead_id = _one(
            conn,
            "INSERT INTO public.leads (client_id, email, consent_status)"
            " VALUES (%s, 'cy@buyer.example', 'granted') RETURNING id",
            client_id,
        )
        comm_id = _one(
            conn,
            "INSERT INTO public.communications (client_id, lead_id, type, recipient, status,"
            " provider, external_id, created_at, sent_at, delivered_at)"
            " VALUES (%s, %s, 'email', 'cy@buyer.example', 'delivered', 'resend', 're_shown',"
            "  %s, %s, %s) RETURNING id",
            client_id, lead_id, CREATED, CREATED + timedelta(seconds=2),
            CREATED + timedelta(seconds=9),
        )  # fmt: skip
        for attempt, outcome, status, error in ((1, "transient", 503, "busy"),
                                                (2, "accepted", 200, None)):  # fmt: skip
            started = CREATED + timedelta(seconds=attempt)
            conn.execute(
                "INSERT INTO public.delivery_attempts (communication_id, client_id, attempt,"
                " provider, started_at, finished_at, http_status, error_message, latency_ms,"
                " outcome, recorded) VALUES (%s, %s, %s, 'resend', %s, %s, %s, %s, 25, %s, true)",
                (comm_id, client_id, attempt, started, started, status, error, outcome),
            )
        conn.execute(
            "INSERT INTO public.provider_events (client_id, provider, event_id, communication_id,"
            " external_id, event_type, kind, occurred_at, payload, applied_at, effect)"
            " VALUES (%s, 'resend', 'msg_shown', %s, 're_shown', 'email.delivered', 'delivered',"
            "  %s, %s, now(), 'delivered')",
            (client_id, comm_id, CREATED + timedelta(seconds=9), Jsonb({"type": "x"})),
        )
    return UUID(str(comm_id))


def test_show_prints_the_communication_and_its_timeline_in_order(
    migrated_db: str, slug: str
) -> None:
    comm_id = _communication_with_history(migrated_db, slug)

    result = lqs(migrated_db, "comms", "show", str(comm_id))

    assert result.exit_code == 0, result.output
    out = result.stdout
    for field in (str(comm_id), slug, "re_shown", "delivered"):
        assert field in out
    timeline = [
        "2026-03-02 10:00:00.000",
        "attempt 1 via resend: transient (HTTP 503) busy",
        "attempt 2 via resend: accepted (HTTP 200)",
        "resend email.delivered → delivered (event msg_shown)",
    ]
    positions = [out.find(text) for text in timeline]
    assert -1 not in positions, out
    assert positions == sorted(positions)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("not-a-uuid", "must be a UUID"), (str(uuid.UUID(int=7)), "no communication")],
    ids=["not a uuid", "unknown"],
)
def test_show_refuses_what_is_not_a_communication(
    migrated_db: str, value: str, fragment: str
) -> None:
    assert_refused(lqs(migrated_db, "comms", "show", value), fragment)


def test_show_accepts_a_unique_prefix_and_prints_lead_template_subject_and_content(
    migrated_db: str, slug: str
) -> None:
    comm_id = _communication_with_history(migrated_db, slug)
    with psycopg.connect(migrated_db) as conn:
        conn.execute(
            "UPDATE public.communications SET template_id = 'lead_qualified@v3',"
            " subject = 'New lead: Cy', content = '<p>Hello Cy</p>' WHERE id = %s",
            (comm_id,),
        )
        lead_id = _one(conn, "SELECT lead_id FROM public.communications WHERE id = %s", comm_id)

    result = lqs(migrated_db, "comms", "show", str(comm_id)[:13])

    assert result.exit_code == 0, result.output
    for text in (str(comm_id), str(lead_id), "lead_qualified@v3", "New lead: Cy",
                 "<p>Hello Cy</p>"):  # fmt: skip
        assert text in result.stdout


def test_show_refuses_an_ambiguous_or_unknown_prefix(migrated_db: str, slug: str) -> None:
    with psycopg.connect(migrated_db) as conn:
        client_id = _one(conn, "SELECT id FROM public.clients WHERE slug = %s", slug)
        lead_id = _one(
            conn,
            "INSERT INTO public.leads (client_id, email) VALUES (%s, 'ab@buyer.example')"
            " RETURNING id",
            client_id,
        )
        for tail in ("0000-4000-8000-000000000001", "0000-4000-8000-000000000002"):
            conn.execute(
                "INSERT INTO public.communications (id, client_id, lead_id, type, recipient,"
                " status) VALUES (%s, %s, %s, 'email', 'ab@buyer.example', 'pending')",
                (f"abcdef01-{tail}", client_id, lead_id),
            )

    assert_refused(lqs(migrated_db, "comms", "show", "abcdef01"), "'abcdef01' starts")
    assert_refused(lqs(migrated_db, "comms", "show", "fedc"), "no communication id starts")
    assert_refused(lqs(migrated_db, "comms", "show", "abc"), "at least 4")


def test_list_gives_the_reason_a_message_failed_or_was_rejected(
    migrated_db: str, slug: str
) -> None:
    with psycopg.connect(migrated_db) as conn:
        client_id = _one(conn, "SELECT id FROM public.clients WHERE slug = %s", slug)
        lead_id = _one(
            conn,
            "INSERT INTO public.leads (client_id, email) VALUES (%s, 'rj@buyer.example')"
            " RETURNING id",
            client_id,
        )
        for status, column, why in (("rejected", "compliance_notes", "consent withdrawn"),
                                    ("failed", "error_message", "mailbox full")):  # fmt: skip
            conn.execute(
                f"INSERT INTO public.communications (client_id, lead_id, type, recipient,"
                f" status, {column}) VALUES (%s, %s, 'email', 'rj@buyer.example', %s, %s)".encode(),
                (client_id, lead_id, status, why),
            )

    result = lqs(migrated_db, "comms", "list", "--client", slug, "--json")

    assert result.exit_code == 0, result.output
    reasons = {row["status"]: row["reason"] for row in map(json.loads, result.stdout.splitlines())}
    assert reasons == {"rejected": "consent withdrawn", "failed": "mailbox full"}


# ---------------------------------------------------------------------------- set-delivery


@pytest.mark.parametrize("url", ["http://..../", "https://hooks..example.com/lqs"])
def test_set_delivery_refuses_a_webhook_url_that_can_never_resolve(
    migrated_db: str, slug: str, tmp_path: Path, url: str
) -> None:
    spec = tmp_path / "delivery.yaml"
    spec.write_text(f"webhook:\n  url: '{url}'\n  secret: whsec_{'A' * 32}\n")

    result = lqs(migrated_db, "clients", "set-delivery", slug, str(spec))

    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("delivery.webhook.url: the host name")
    assert _settings(migrated_db, slug) == {}


def _settings(url: str, slug: str) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT settings FROM public.clients WHERE slug = %s", (slug,))
        return row.fetchone()[0]  # type: ignore[index]


def test_set_delivery_lists_every_problem_one_line_each_and_stores_nothing(
    migrated_db: str, slug: str, tmp_path: Path
) -> None:
    spec = tmp_path / "delivery.yaml"
    spec.write_text(
        "email: {primary: mailgun}\n"
        "resend: {api_key: re_x, from_adress: leads@acme.example}\n"
        "twilio: {account_sid: AC..., auth_token: t}\n"
        "webhook: https://hooks.acme.example/lqs\n"
        "twillio: {}\n"
    )

    result = lqs(migrated_db, "clients", "set-delivery", slug, str(spec))

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.stderr.splitlines() == [
        "delivery.email.primary: must be one of resend, sendgrid",
        "delivery.resend.from_address: required",
        "delivery.resend.from_adress: unknown key; expected one of api_key, from_address,"
        " base_url, webhook_secret",
        "delivery.twilio.account_sid: 'AC...' does not match the pattern ^AC[0-9a-zA-Z]{1,64}$",
        "delivery.twilio: set exactly one of from_number and messaging_service_sid",
        "delivery.webhook: expected a mapping of settings",
        "delivery.twillio: unknown key; expected one of email, resend, sendgrid, twilio,"
        " webpush, webhook",
        f"error: {spec}: 7 problem(s) listed above; nothing was stored",
    ]
    assert _settings(migrated_db, slug) == {}


def test_set_delivery_keeps_the_stored_settings_when_the_new_file_is_bad(
    migrated_db: str, slug: str, tmp_path: Path
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("resend: {api_key: re_x, from_address: leads@acme.example}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("resend: {api_key: re_y}\n")

    stored = lqs(migrated_db, "clients", "set-delivery", slug, str(good))
    refused = lqs(migrated_db, "clients", "set-delivery", slug, str(bad))

    assert stored.exit_code == 0, stored.output
    assert refused.exit_code == 1, refused.output
    assert refused.stderr.splitlines()[0] == "delivery.resend.from_address: required"
    assert _settings(migrated_db, slug)["delivery"]["resend"]["api_key"] == "re_x"


def test_set_delivery_refuses_text_postgresql_cannot_store(
    migrated_db: str, slug: str, tmp_path: Path
) -> None:
    spec = tmp_path / "delivery.yaml"
    spec.write_text('resend: {api_key: re_x, from_address: "a\\0b@acme.example"}\n')

    result = lqs(migrated_db, "clients", "set-delivery", slug, str(spec))

    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[0] == (
        "delivery.resend.from_address: text contains NUL (U+0000) at character 2,"
        " which cannot be stored"
    )
    assert _settings(migrated_db, slug) == {}


@pytest.mark.parametrize(
    "text", ["", "- resend\n", "just words\n"], ids=["empty", "list", "scalar"]
)
def test_set_delivery_refuses_a_file_that_is_not_a_mapping(
    migrated_db: str, slug: str, tmp_path: Path, text: str
) -> None:
    spec = tmp_path / "delivery.yaml"
    spec.write_text(text)

    assert_refused(
        lqs(migrated_db, "clients", "set-delivery", slug, str(spec)),
        "expected a mapping of delivery settings",
    )
    assert _settings(migrated_db, slug) == {}


def test_the_documented_example_is_stored_with_every_channel(migrated_db: str, slug: str) -> None:
    example = Path(__file__).parents[2] / "docs" / "examples" / "delivery.yaml"

    result = lqs(migrated_db, "clients", "set-delivery", slug, str(example))

    assert result.exit_code == 0, result.output
    assert f"stored delivery settings for {slug}: email, sms, push, webhook" in result.stdout
    delivery = _settings(migrated_db, slug)["delivery"]
    assert sorted(delivery) == ["email", "resend", "sendgrid", "twilio", "webhook", "webpush"]


# ---------------------------------------------------------------- templates put: the check


def _templates(url: str, slug: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT t.name, t.version, t.body FROM public.templates AS t"
            " JOIN public.clients AS c ON c.id = t.client_id WHERE c.slug = %s ORDER BY version",
            (slug,),
        ).fetchall()


def _put(url: str, slug: str, body_file: Any, *extra: str) -> Result:
    return lqs(url, "templates", "put", "--client", slug, "--id", "lead_qualified",
               "--body-file", str(body_file), *extra)  # fmt: skip


def test_a_template_that_passes_the_check_is_stored(
    migrated_db: str, slug: str, tmp_path: Any
) -> None:
    body = tmp_path / "body.html"
    body.write_text(
        "<p>{{ lead.first_name }} at {{ lead.company_name }} ({{ score }}, {{ grade }})</p>"
        "{% for e in breakdown %}{{ e.reason }}{% endfor %}"
        " Plan: {{ lead.custom.get('plan', 'none') }} {{ client.name }}",
        encoding="utf-8",
    )

    result = _put(migrated_db, slug, body, "--subject", "New: {{ lead.email }}")

    assert result.exit_code == 0, result.output
    assert "stored lead_qualified version 1" in result.stdout
    assert [(t[0], t[1]) for t in _templates(migrated_db, slug)] == [("lead_qualified", 1)]


@pytest.mark.parametrize(
    ("body", "subject", "fragment"),
    [
        ("{{ leed.first_name }}", None, "body line 1: unknown variable 'leed' (did you mean 'lead'?)"),
        ("x", "Hi {{ lead.frist_name }}", "subject line 1: lead has no field 'frist_name' (did you mean 'first_name'?)"),
        ("{{ client.title }}", None, "client has no field 'title' (client has: name, slug)"),
        ("{{ '\\x00' }}", None, "the output contains NUL (U+0000) at character 1, which PostgreSQL cannot store"),
        ("{{ '%c' % 0 }}", None, "the output contains NUL (U+0000)"),
        ("{{ '\\ud800' }}", None, "the output contains a lone surrogate (U+D800)"),
        ("{{ lead.first_name ~ '%c' | format(0) }}", None, "the output contains NUL (U+0000) at character 4"),
        ("{{ lead.custom.plan }}", None, "as some leads will not: read one as lead.custom.get('plan')"),
        ("{{ score + 'x' }}", None, "TypeError"),
        ("{% if %}", None, "body line 1: "),
        ("a\x00b", None, "the source contains NUL (U+0000) at character 2"),
    ],
    ids=["unknown variable", "unknown lead field", "unknown client field", "NUL", "NUL via %c",
         "surrogate", "NUL via format", "unguarded custom field", "render error", "syntax error",
         "NUL in the source"],
)  # fmt: skip
def test_templates_put_refuses_a_template_that_would_fail_and_stores_nothing(
    migrated_db: str, slug: str, tmp_path: Any, body: str, subject: str | None, fragment: str
) -> None:
    body_file = tmp_path / "body.html"
    body_file.write_text(body, encoding="utf-8")

    result = _put(migrated_db, slug, body_file, *(["--subject", subject] if subject else []))

    assert_refused(result, fragment)
    assert result.stderr.rstrip().endswith("; nothing was stored")
    assert _templates(migrated_db, slug) == []


def test_templates_put_refuses_a_body_that_is_not_utf8(
    migrated_db: str, slug: str, tmp_path: Any
) -> None:
    body_file = tmp_path / "body.html"
    body_file.write_bytes(b"caf\xe9")

    assert_refused(_put(migrated_db, slug, body_file), "not UTF-8 text")
    assert _templates(migrated_db, slug) == []


# ---------------------------------------------------------------- set-rules: RE2 regexes


def _rules(url: str, slug: str) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT settings FROM public.clients WHERE slug = %s", (slug,)
        ).fetchone()
    assert row is not None
    return row[0].get("scoring_rules")


def test_a_backtracking_regex_is_accepted_since_re2_matches_it_in_linear_time(
    migrated_db: str, slug: str, tmp_path: Any
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "thresholds: {qualified: 10, nurture: 5}\n"
        "rules:\n  - {id: evil, field: job_title, when: {regex: '(a+)+$'}, points: 10}\n"
    )

    result = lqs(migrated_db, "clients", "set-rules", slug, str(rules))

    assert result.exit_code == 0, result.output
    assert _rules(migrated_db, slug)["rules"][0]["when"] == {"regex": "(a+)+$"}


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ("{id: back, field: email, when: {regex: '(a)\\1'}, points: 1}",
         "rules: rule 'back' (rules[0]): regex does not compile: invalid escape sequence: \\1"
         " (patterns use RE2 syntax: no backreferences or lookaround; see docs/SCORING.md)"),
        ("{id: look, field: email, when: {regex: 'a(?!b)'}, points: 1}",
         "rules: rule 'look' (rules[0]): regex does not compile: invalid perl operator: (?!"),
        ("{id: big, field: email, when: {regex: '(x|\\w){250}'}, points: 1}",
         "rules: rule 'big' (rules[0]): regex is too complex: it compiles to 2504 RE2 instructions"),
        ('{id: nul, field: email, when: {exists: true}, points: 1, reason: "a\\0b"}',
         "rules: rules[0].reason: text contains NUL (U+0000), which cannot be stored"),
    ],
    ids=["backreference", "lookahead", "too complex", "NUL"],
)  # fmt: skip
def test_set_rules_refuses_what_re2_or_postgresql_cannot_take(
    migrated_db: str, slug: str, tmp_path: Any, rule: str, problem: str
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"thresholds: {{qualified: 10, nurture: 5}}\nrules:\n  - {rule}\n")

    result = lqs(migrated_db, "clients", "set-rules", slug, str(rules))

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert any(line.startswith(problem) for line in lines), lines
    assert lines[-1].startswith("error: ")
    assert lines[-1].endswith("problem(s) listed above; nothing was stored")
    assert _rules(migrated_db, slug) is None
