"""``lqs clients notify``: which channels tell a client's staff of an outcome, on a real
database. The commands run in process (typer's runner) for speed; the unknown-client and
bad-option errors, which the entry point turns into one line, also run as real processes.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import Result
from psycopg.types.json import Jsonb
from typer.testing import CliRunner

from lqs.cli import app
from tests.integration.test_cli import assert_one_line_error, run_lqs

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "delivery.yaml"
ACK = {"channel": "email", "to": "lead", "template": "lead_acknowledgement", "priority": 3}


def lqs(url: str, *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"LQS_DATABASE_URL": url, "COLUMNS": "250"})


def _settings(url: str, slug: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT settings FROM public.clients WHERE slug = %s", (slug,)
        ).fetchone()
    assert row is not None
    return dict(row[0])


def _rules(url: str, slug: str, *args: str) -> list[dict[str, Any]]:
    """Run ``notify`` with ``--json`` and return the rules it shows."""
    result = lqs(url, "clients", "notify", slug, *args, "--json")
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def _brief(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["outcome"], r["to"], r["channel"], r["template"], r["priority"]) for r in rows]


@pytest.fixture
def bare(migrated_db: str) -> str:
    """A client with a notification email and nothing else configured."""
    slug = f"n-{uuid.uuid4().hex[:10]}"
    created = lqs(migrated_db, "clients", "create", slug, "--slug", slug,
                  "--notification-email", f"sales@{slug}.example")  # fmt: skip
    assert created.exit_code == 0, created.output
    return slug


@pytest.fixture
def ready(migrated_db: str, bare: str) -> str:
    """A client with every channel's recipient and provider (the documented example)."""
    assert lqs(migrated_db, "clients", "set-delivery", bare, str(EXAMPLE)).exit_code == 0
    phone = lqs(migrated_db, "clients", "configure", bare, "--notification-phone", "+12015550123")
    assert phone.exit_code == 0, phone.output
    return bare


def test_without_on_it_shows_every_rule_and_where_it_goes(migrated_db: str, ready: str) -> None:
    assert lqs(migrated_db, "clients", "configure", ready, "--acknowledge-leads").exit_code == 0

    rows = _rules(migrated_db, ready)

    assert [(r["to"], r["channel"], r["template"], r["recipient"]) for r in rows] == [
        ("client", "email", "lead_qualified", f"sales@{ready}.example"),
        ("lead", "email", "lead_acknowledgement", "the lead's email"),
    ]
    table = lqs(migrated_db, "clients", "notify", ready)
    assert table.exit_code == 0
    assert f"Notifications of {ready}" in table.stdout
    assert "lead_acknowledgement" in table.stdout


def test_via_replaces_the_staff_rules_and_keeps_the_rules_to_the_lead(
    migrated_db: str, ready: str
) -> None:
    assert lqs(migrated_db, "clients", "configure", ready, "--acknowledge-leads").exit_code == 0

    rows = _rules(migrated_db, ready, "--on", "qualified", "--via", "sms,webhook,email")

    assert _brief(rows) == [
        ("qualified", "client", "sms", "lead_qualified_sms", 2),
        ("qualified", "client", "webhook", "lead_webhook", 2),
        ("qualified", "client", "email", "lead_qualified", 2),
        ("qualified", "lead", "email", "lead_acknowledgement", 5),
    ]
    recipients = {r["channel"]: r["recipient"] for r in rows if r["to"] == "client"}
    assert recipients == {"sms": "+12015550123", "webhook": "http://127.0.0.1:8025/hooks/acme",
                          "email": f"sales@{ready}.example"}  # fmt: skip
    stored = _settings(migrated_db, ready)["notifications"]["qualified"]
    assert [r["channel"] for r in stored] == ["sms", "webhook", "email", "email"]


def test_a_kept_channel_keeps_its_template_and_priority_unless_told(
    migrated_db: str, ready: str
) -> None:
    _rules(migrated_db, ready, "--on", "qualified", "--via", "sms", "--priority", "1")

    kept = _rules(migrated_db, ready, "--on", "qualified", "--via", "sms,push")
    told = _rules(migrated_db, ready, "--on", "qualified", "--via", "sms",
                  "--template", "sms=lead_qualified_sms", "--priority", "9")  # fmt: skip

    assert _brief(kept) == [
        ("qualified", "client", "sms", "lead_qualified_sms", 1),
        ("qualified", "client", "push", "lead_qualified_push", 2),
    ]
    assert _brief(told) == [("qualified", "client", "sms", "lead_qualified_sms", 9)]


def test_off_removes_the_staff_rules_only(migrated_db: str, ready: str) -> None:
    assert lqs(migrated_db, "clients", "configure", ready, "--acknowledge-leads").exit_code == 0

    result = lqs(migrated_db, "clients", "notify", ready, "--on", "qualified", "--off")

    assert result.exit_code == 0, result.output
    assert f"qualified leads now reach {ready}'s staff by nothing" in result.stdout
    assert _settings(migrated_db, ready)["notifications"]["qualified"] == [ACK | {"priority": 5}]
    assert lqs(migrated_db, "clients", "configure", ready, "--no-acknowledge-leads").exit_code == 0
    empty = lqs(migrated_db, "clients", "notify", ready)
    assert empty.exit_code == 0
    assert f"{ready} has no notification rules: no outcome sends anything" in empty.stdout


def test_every_missing_recipient_and_provider_is_listed_and_nothing_is_stored(
    migrated_db: str, bare: str
) -> None:
    before = _settings(migrated_db, bare)

    result = lqs(migrated_db, "clients", "notify", bare, "--on", "qualified",
                 "--via", "email,sms,push,webhook")  # fmt: skip

    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert [line.split(":", 2)[:2] for line in lines[:-1]] == [
        ["email", " no email provider"], ["sms", " no notification_phone to send to"],
        ["sms", " no SMS provider"], ["push", " no VAPID key"], ["webhook", " no webhook URL"],
    ]  # fmt: skip
    assert f"`lqs clients configure {bare} --notification-phone +NUMBER`" in lines[1]
    assert f"`lqs clients set-delivery {bare} FILE.yaml`" in lines[4]
    assert lines[-1] == "error: 5 problem(s) listed above; nothing was stored"
    assert _settings(migrated_db, bare) == before


def test_templates_must_exist_for_the_client_and_its_channel(
    migrated_db: str, ready: str, tmp_path: Path
) -> None:
    body = tmp_path / "sms.txt"
    body.write_text("Nurture: {{ lead.email }}")
    stored = lqs(migrated_db, "templates", "put", "--client", ready, "--id", "nurture_sms",
                 "--channel", "sms", "--body-file", str(body), "--format", "text")  # fmt: skip
    assert stored.exit_code == 0, stored.output

    shipped_missing = lqs(migrated_db, "clients", "notify", ready, "--on", "nurture",
                          "--via", "sms")  # fmt: skip
    wrong = lqs(migrated_db, "clients", "notify", ready, "--on", "nurture", "--via", "email",
                "--template", "nurture_sms")  # fmt: skip
    unknown = lqs(migrated_db, "clients", "notify", ready, "--on", "nurture", "--via", "push",
                  "--template", "push=nowhere")  # fmt: skip
    own = _rules(migrated_db, ready, "--on", "nurture", "--via", "sms,webhook",
                 "--template", "sms=nurture_sms")  # fmt: skip

    assert shipped_missing.exit_code == 1
    assert "no shipped sms template for nurture leads" in shipped_missing.stderr
    assert wrong.exit_code == 1
    assert "template 'nurture_sms' is for the sms channel" in wrong.stderr
    assert unknown.exit_code == 1
    assert f"no template 'nowhere' for {ready}" in unknown.stderr
    assert _brief([r for r in own if r["outcome"] == "nurture"]) == [
        ("nurture", "client", "sms", "nurture_sms", 2),
        ("nurture", "client", "webhook", "lead_webhook", 2),
    ]


def test_push_without_a_live_subscription_is_stored_with_a_warning(
    migrated_db: str, ready: str
) -> None:
    result = lqs(migrated_db, "clients", "notify", ready, "--on", "qualified", "--via", "push")

    assert result.exit_code == 0, result.output
    assert f"warning: push: {ready} has no live push subscription yet" in result.stderr
    assert "0 live push subscription(s)" in result.stdout


def test_unusable_stored_delivery_settings_are_named(migrated_db: str, bare: str) -> None:
    with psycopg.connect(migrated_db) as conn:
        conn.execute(
            "UPDATE public.clients SET settings = settings || %s WHERE slug = %s",
            (Jsonb({"delivery": {"twilio": {"account_sid": "nope"}}}), bare),
        )

    result = lqs(migrated_db, "clients", "notify", bare, "--on", "qualified", "--via", "email")

    assert result.exit_code == 1, result.output
    assert "stored delivery.twilio.auth_token: required" in result.stderr
    assert "nothing was stored" in result.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--via", "sms"], "--on OUTCOME is needed"),
        (["--on", "won"], "--on 'won': use one of qualified, nurture, disqualified"),
        (["--on", "qualified"], "--on needs --via CHANNELS"),
        (["--on", "qualified", "--via", "fax"], "--via: unknown channel 'fax'"),
        (["--on", "qualified", "--via", ""], "--via: unknown channel ''"),
        (["--on", "qualified", "--via", "sms,sms"], "--via: sms is named twice"),
        (["--on", "qualified", "--via", "sms", "--off"], "--via and --off: give one"),
        (["--on", "qualified", "--off", "--priority", "3"], "--off sends nothing"),
        (["--on", "qualified", "--via", "sms", "--priority", "11"], "--priority 11: use 1"),
        (["--on", "qualified", "--via", "sms,email", "--template", "x"], "write CHANNEL=x"),
        (["--on", "qualified", "--via", "sms", "--template", "push=x"], "not one of the --via"),
        (["--on", "qualified", "--via", "sms", "--template", "sms=X!"], "a template id is"),
        (["--on", "qualified", "--via", "sms", "--template", "a", "--template", "sms=b"],
         "two templates for sms"),
    ],
)  # fmt: skip
def test_bad_options_are_one_line_errors(
    migrated_db: str, bare: str, args: list[str], fragment: str
) -> None:
    result = lqs(migrated_db, "clients", "notify", bare, *args)
    assert result.exit_code == 1, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    assert fragment in line


def test_an_unknown_client_is_one_line_from_the_real_command(migrated_db: str) -> None:
    env = {"LQS_DATABASE_URL": migrated_db}
    result = run_lqs("clients", "notify", "nobody", "--on", "qualified", "--via", "sms", env=env)
    assert_one_line_error(result, "no client with slug 'nobody'")
    bad = run_lqs("clients", "notify", "nobody", "--via", "sms", env=env)
    assert_one_line_error(bad, "--on OUTCOME is needed")
