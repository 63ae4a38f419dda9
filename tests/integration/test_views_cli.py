"""``lqs clients show``, ``lqs templates list|show|preview`` and ``lqs stats`` on a real
database: what the CLI shows of what it holds, and never a secret.

The commands run in process (typer's runner) for speed; errors the entry point turns into
one line (an unknown client) run as real ``lqs`` processes.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from click.testing import Result
from psycopg.types.json import Jsonb
from typer.testing import CliRunner

from lqs.cli import app
from tests.e2e.test_sending import _push_keys
from tests.integration.test_cli import assert_one_line_error, run_lqs
from tests.unit.test_delivery_masking import full_delivery, random_secrets, secrets_of

RULES = {
    "thresholds": {"qualified": 60, "nurture": 30},
    "grades": {"A": 80, "B": 60},
    "rules": [
        {"id": "big-company", "version": 2, "field": "company_size",
         "when": {"gte": 500}, "points": 40, "reason": "Large [enterprise] company"},
        {"id": "throwaway", "field": "email", "when": {"email_domain_type": "disposable"},
         "disqualify": True},
    ],
}  # fmt: skip


def lqs(url: str, *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"LQS_DATABASE_URL": url, "COLUMNS": "250"})


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def json_lines(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in ok(result).splitlines()]


def assert_refused(result: Result, fragment: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert fragment in lines[0], lines[0]


def _new_client(url: str, settings: dict[str, Any] | None = None) -> tuple[str, str]:
    slug = f"v-{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "INSERT INTO public.clients (name, slug, settings) VALUES (%s, %s, %s) RETURNING id",
            (f"Views {slug}", slug, Jsonb(settings or {})),
        ).fetchone()
    assert row is not None
    return slug, str(row[0])


def _lead(url: str, client_id: str, email: str, **fields: Any) -> str:
    columns = {"client_id": client_id, "email": email, **fields}
    with psycopg.connect(url) as conn:
        row = conn.execute(
            f"INSERT INTO public.leads ({', '.join(columns)})"
            f" VALUES ({', '.join(['%s'] * len(columns))}) RETURNING id",
            [Jsonb(v) if isinstance(v, list | dict) else v for v in columns.values()],
        ).fetchone()
    assert row is not None
    return str(row[0])


@pytest.fixture
def slug(migrated_db: str) -> str:
    return _new_client(migrated_db)[0]


# ---------------------------------------------------------------- clients show


def _configured_client(url: str, tmp_path: Path, delivery: dict[str, Any]) -> str:
    slug = ok_create(url)
    delivery_file, rules_file = tmp_path / "delivery.yaml", tmp_path / "rules.yaml"
    delivery_file.write_text(yaml.safe_dump(delivery), encoding="utf-8")
    rules_file.write_text(yaml.safe_dump(RULES), encoding="utf-8")
    ok(lqs(url, "clients", "set-delivery", slug, str(delivery_file)))
    ok(lqs(url, "clients", "set-rules", slug, str(rules_file)))
    ok(lqs(url, "clients", "configure", slug, "--acknowledge-leads",
           "--notification-phone", "+14155550100"))  # fmt: skip
    for _ in range(2):
        ok(lqs(url, "keys", "create", "--client", slug))
    prefix = json_lines(lqs(url, "keys", "list", "--client", slug, "--json"))[0]["prefix"]
    ok(lqs(url, "keys", "revoke", prefix, "--client", slug))
    _, p256dh, auth = _push_keys()
    ok(lqs(url, "push", "add", "--client", slug, "--endpoint", "https://push.example/1",
           "--p256dh", p256dh, "--auth", auth))  # fmt: skip
    return slug


def ok_create(url: str) -> str:
    slug = f"v-{uuid.uuid4().hex[:10]}"
    ok(lqs(url, "clients", "create", "Show Co", "--slug", slug,
           "--notification-email", "sales@show.example"))  # fmt: skip
    return slug


def test_clients_show_prints_settings_rules_delivery_and_counts(
    migrated_db: str, tmp_path: Path
) -> None:
    slug = _configured_client(migrated_db, tmp_path, full_delivery())
    with psycopg.connect(migrated_db) as conn:
        row = conn.execute("SELECT id FROM public.clients WHERE slug = %s", (slug,)).fetchone()
    assert row is not None
    for status in ("qualified", "qualified", "nurture"):
        _lead(migrated_db, str(row[0]), f"{uuid.uuid4().hex[:8]}@a.example", status=status)

    shown = ok(lqs(migrated_db, "clients", "show", slug))

    assert f"{slug} (Show Co)" in shown
    assert str(row[0]) in shown
    assert re.search(r"notification email +sales@show\.example", shown)
    assert re.search(r"notification phone +\+14155550100", shown)
    assert re.search(r"acknowledge leads +yes", shown)
    assert re.search(r"leads +1 nurture, 2 qualified", shown)
    assert re.search(r"API keys +1 live, 1 revoked", shown)
    assert re.search(r"push subscriptions +1\b", shown)
    assert "email: resend (then sendgrid after 3 transient failures), sms: twilio" in shown
    assert re.search(r"│ qualified +│ email +│ lead +│ lead_acknowledgement", shown)
    assert re.search(r"│ big-company +│ 2 +│ company_size +│ .*│ 40 +│ Large \[enterprise\]", shown)
    assert re.search(r"│ throwaway +│ 1 +│ email +│ .*│ disqualify", shown)
    assert re.search(r"│ resend +│ api_key +│ re_•••• ", shown)
    assert re.search(r"│ twilio +│ account_sid +│ AC0{32} ", shown)


def test_clients_show_json_is_one_object_with_the_rules_whole(
    migrated_db: str, tmp_path: Path
) -> None:
    slug = _configured_client(migrated_db, tmp_path, full_delivery())

    [view] = json_lines(lqs(migrated_db, "clients", "show", slug, "--json"))

    assert view["slug"] == slug
    assert view["name"] == "Show Co"
    assert datetime.fromisoformat(view["created_at"]) <= datetime.now(UTC)
    assert view["scoring_rules"] == RULES
    assert view["settings"]["acknowledge_leads"] is True
    assert view["settings"]["notification_email"] == "sales@show.example"
    assert view["settings"]["notifications"]["qualified"][0]["template"] == "lead_qualified"
    assert view["counts"] == {
        "leads": {}, "live_api_keys": 1, "revoked_api_keys": 1, "push_subscriptions": 1,
        "templates": 0, "suppressions": 0,
    }  # fmt: skip
    assert view["delivery"]["twilio"]["from_number"] == "+12015550100"
    assert view["delivery"]["resend"]["api_key"] == "re_••••"
    assert view["problems"] == []


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_clients_show_shows_no_secret_of_a_full_delivery_file(
    migrated_db: str, tmp_path: Path, as_json: bool
) -> None:
    example = full_delivery()
    random = random_secrets(full_delivery())
    pem, _, _ = _push_keys()
    random["webpush"]["vapid_private_key"] = pem
    shown = ""
    for delivery in (example, random):
        slug = _configured_client(migrated_db, tmp_path, delivery)
        shown += ok(lqs(migrated_db, "clients", "show", slug, *(["--json"] if as_json else [])))

    for secret in secrets_of(example):
        assert secret not in shown
    for secret in secrets_of(random):
        # The PEM key's base64 lines, or the key past its format prefix.
        body = re.sub(r"-----[A-Z ]+-----|\s|^(whsec_|re_|SG\.)", "", secret)
        assert len(body) >= 32
        for start in range(len(body) - 7):
            assert body[start : start + 8] not in shown, secret


def test_clients_show_masks_settings_it_does_not_know(migrated_db: str) -> None:
    slug, _ = _new_client(
        migrated_db,
        {"delivery": {"mailgun": {"api_key": "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"}},
         "crm": {"token": "crm-secret-token-value-0123456789"}},
    )  # fmt: skip

    shown = ok(lqs(migrated_db, "clients", "show", slug))
    [view] = json_lines(lqs(migrated_db, "clients", "show", slug, "--json"))

    for text in (shown, json.dumps(view)):
        assert "3ax6xnjp29jd6fds4gc373sg" not in text
        assert "crm-secret-token" not in text
    assert view["other_settings"] == {"crm": {"token": "••••6789"}}
    assert view["problems"] == ["delivery.mailgun: unknown key; expected one of email, resend,"
                                " sendgrid, twilio, webpush, webhook"]  # fmt: skip
    assert "problem: delivery.mailgun: unknown key" in shown


def test_clients_show_shows_settings_that_do_not_validate_and_why(migrated_db: str) -> None:
    slug, _ = _new_client(
        migrated_db, {"time_zone": "Mars/Olympus", "notifications": {"qualified": "everyone"}}
    )

    shown = lqs(migrated_db, "clients", "show", slug)
    [view] = json_lines(lqs(migrated_db, "clients", "show", slug, "--json"))

    assert re.search(r"time zone +Mars/Olympus", ok(shown))
    assert "problem: settings.time_zone: unknown time zone 'Mars/Olympus'" in shown.stdout
    assert re.search(r"│ qualified +│ +│ +│ \"everyone\"", shown.stdout)
    assert view["settings"]["notifications"] == {"qualified": "everyone"}
    assert len(view["problems"]) == 2


def test_clients_show_of_an_unknown_client_is_one_line(migrated_db: str) -> None:
    result = run_lqs("clients", "show", "no-such-client", env={"LQS_DATABASE_URL": migrated_db})

    assert_one_line_error(result, "no client with slug 'no-such-client'")
    assert result.returncode == 1


# ---------------------------------------------------------------- templates


def _put(url: str, slug: str, tmp_path: Path, body: str, *extra: str) -> None:
    body_file = tmp_path / f"{uuid.uuid4().hex}.txt"
    body_file.write_text(body, encoding="utf-8")
    ok(lqs(url, "templates", "put", "--client", slug, "--body-file", str(body_file), *extra))


def test_templates_list_shows_stored_versions_and_the_shipped_ones_left(
    migrated_db: str, slug: str, tmp_path: Path
) -> None:
    for body in ("Hi {{ lead.first_name }}", "Hello {{ lead.first_name }}"):
        _put(migrated_db, slug, tmp_path, body, "--id", "lead_qualified", "--subject", "New")

    listed = json_lines(lqs(migrated_db, "templates", "list", "--client", slug, "--json"))
    table = ok(lqs(migrated_db, "templates", "list", "--client", slug))

    by_id = {t["id"]: t for t in listed}
    assert sorted(by_id) == [
        "lead_acknowledgement", "lead_qualified", "lead_qualified_push", "lead_qualified_sms",
        "lead_webhook",
    ]  # fmt: skip
    assert by_id["lead_qualified"]["source"] == "stored"
    assert (by_id["lead_qualified"]["version"], by_id["lead_qualified"]["versions"]) == (2, 2)
    assert by_id["lead_qualified"]["subject"] == "New"
    assert datetime.fromisoformat(by_id["lead_qualified"]["updated_at"]) <= datetime.now(UTC)
    assert by_id["lead_qualified_sms"]["source"] == "shipped"
    assert by_id["lead_qualified_sms"]["updated_at"] is None
    assert all("body" not in t for t in listed)
    assert re.search(r"│ lead_qualified +│ stored +│ 2 of 2 +│ email +│ html +│ 20", table)
    assert re.search(r"│ lead_qualified_sms +│ shipped +│ - +│ sms +│ text", table)


def test_templates_show_prints_a_version_in_full(
    migrated_db: str, slug: str, tmp_path: Path
) -> None:
    for body in ("Hi {{ lead.first_name }}", "Hello {{ lead.first_name }}"):
        _put(migrated_db, slug, tmp_path, body, "--id", "lead_qualified", "--subject",
             "[New] {{ lead.email }}", "--format", "text")  # fmt: skip

    latest = ok(lqs(migrated_db, "templates", "show", "--client", slug, "--id", "lead_qualified"))
    [first] = json_lines(lqs(migrated_db, "templates", "show", "--client", slug,
                             "--id", "lead_qualified", "--version", "1", "--json"))  # fmt: skip
    shipped = ok(lqs(migrated_db, "templates", "show", "--client", slug, "--id",
                     "lead_qualified_sms"))  # fmt: skip

    assert "template: lead_qualified (version 2 of 2, stored 20" in latest
    assert "channel:  email (text)" in latest
    assert "subject:  [New] {{ lead.email }}" in latest
    assert latest.rstrip().endswith("Hello {{ lead.first_name }}")
    assert (first["version"], first["body"], first["channel"]) == (
        1, "Hi {{ lead.first_name }}", "email"
    )  # fmt: skip
    assert "template: lead_qualified_sms (shipped)" in shipped
    assert "{{ score }} pts" in shipped


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--id", "no_such"], "has no template 'no_such'; it has lead_acknowledgement,"),
        (["--id", "lead_qualified", "--version", "3"],
         "has no version 3 of template 'lead_qualified' (it stored none)"),
        (["--id", "Bad-Id"], "has no template 'Bad-Id'"),
    ],
    ids=["unknown id", "unknown version", "not an id"],
)  # fmt: skip
def test_templates_show_refuses_what_the_client_does_not_have(
    migrated_db: str, slug: str, args: list[str], fragment: str
) -> None:
    for command in ("show", "preview"):
        assert_refused(lqs(migrated_db, "templates", command, "--client", slug, *args), fragment)


def test_templates_preview_renders_a_sample_lead_as_the_processor_would(
    migrated_db: str, slug: str
) -> None:
    shown = ok(lqs(migrated_db, "templates", "preview", "--client", slug, "--id", "lead_qualified"))
    [sample] = json_lines(lqs(migrated_db, "templates", "preview", "--client", slug,
                              "--id", "lead_qualified_sms", "--sample", "--json"))  # fmt: skip

    assert "template: lead_qualified (shipped), email, for lead sample" in shown
    assert "subject:  New qualified lead: Ada Lovelace, Analytical Engines Ltd (65 points)" in shown
    assert "<p>" in shown
    assert sample["lead"] == "sample"
    assert sample["subject"] is None
    assert sample["content"].startswith("Qualified lead: Ada Lovelace, Analytical Engines Ltd")


def test_templates_preview_renders_one_of_the_clients_leads(
    migrated_db: str, tmp_path: Path
) -> None:
    slug, client_id = _new_client(migrated_db)
    breakdown = [{"rule_id": "big", "points": 70, "reason": "Big"}]
    lead_id = _lead(migrated_db, client_id, "grace@navy.example", first_name="Grace",
                    company_name="Navy", status="qualified", score=70, grade="B",
                    score_breakdown=breakdown)  # fmt: skip
    _put(migrated_db, slug, tmp_path,
         "{{ lead.first_name }}/{{ outcome }}/{{ score }}/{{ breakdown[0].reason }}/"
         "{{ client.slug }}", "--id", "lead_qualified_sms", "--channel", "sms", "--format", "text")  # fmt: skip

    by_email = ok(lqs(migrated_db, "templates", "preview", "--client", slug,
                      "--id", "lead_qualified_sms", "--lead", "GRACE@navy.example"))  # fmt: skip
    [by_id] = json_lines(lqs(migrated_db, "templates", "preview", "--client", slug,
                             "--id", "lead_qualified_sms", "--lead", lead_id, "--json"))  # fmt: skip

    assert f"template: lead_qualified_sms (v1), sms, for lead {lead_id}" in by_email
    assert f"Grace/qualified/70/Big/{slug}" in by_email
    assert by_id["lead"] == lead_id
    assert by_id["content"] == f"Grace/qualified/70/Big/{slug}"


def test_templates_preview_of_the_latest_lead_with_an_email(migrated_db: str) -> None:
    slug, client_id = _new_client(migrated_db)
    now = datetime.now(UTC)
    _lead(migrated_db, client_id, "ann@a.example", first_name="Old", status="disqualified",
          received_at=now - timedelta(days=2))  # fmt: skip
    _lead(migrated_db, client_id, "ann@a.example", first_name="New", received_at=now)

    [shown] = json_lines(lqs(migrated_db, "templates", "preview", "--client", slug, "--id",
                             "lead_acknowledgement", "--lead", "ann@a.example", "--json"))  # fmt: skip

    assert shown["subject"] == "Thanks for your interest, New"


def test_templates_preview_names_the_rendering_error(migrated_db: str, tmp_path: Path) -> None:
    slug, client_id = _new_client(migrated_db)
    # Passes the check (the sample lead has 250 people) and fails on a bigger company.
    _put(migrated_db, slug, tmp_path,
         "{% if lead.company_size > 1000 %}{{ 1 / 0 }}{% endif %}ok",
         "--id", "lead_qualified_sms", "--channel", "sms", "--format", "text")  # fmt: skip
    big = _lead(migrated_db, client_id, "big@corp.example", company_size=5000)

    fine = lqs(migrated_db, "templates", "preview", "--client", slug, "--id",
               "lead_qualified_sms", "--sample")  # fmt: skip
    failed = lqs(migrated_db, "templates", "preview", "--client", slug, "--id",
                 "lead_qualified_sms", "--lead", big)  # fmt: skip

    assert ok(fine).rstrip().endswith("ok")
    assert_refused(failed, "lead_qualified_sms v1")
    assert "division by zero" in failed.stderr
    assert "Traceback" not in failed.output


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--lead", "nobody@x.example"], "has no lead 'nobody@x.example'"),
        (["--lead", str(uuid.uuid4())], "has no lead '"),
        (["--lead", "not-an-id"], "--lead 'not-an-id': give the lead's id (a UUID) or its email"),
        (["--lead", "a@b.example", "--sample"], "give --lead or --sample, not both"),
    ],
    ids=["unknown email", "unknown id", "neither id nor email", "both"],
)
def test_templates_preview_refuses_a_lead_it_cannot_find(
    migrated_db: str, args: list[str], fragment: str
) -> None:
    slug, _ = _new_client(migrated_db)
    _, other_id = _new_client(migrated_db)
    _lead(migrated_db, other_id, "nobody@x.example")  # another client's lead is not found

    result = lqs(migrated_db, "templates", "preview", "--client", slug, "--id",
                 "lead_qualified", *args)  # fmt: skip

    assert_refused(result, fragment)


@pytest.mark.parametrize("command", ["list", "show", "preview"])
def test_templates_of_an_unknown_client_is_one_line(migrated_db: str, command: str) -> None:
    extra = [] if command == "list" else ["--id", "lead_qualified"]
    result = run_lqs("templates", command, "--client", "no-such-client", *extra,
                     env={"LQS_DATABASE_URL": migrated_db})  # fmt: skip

    assert result.returncode == 1
    assert_one_line_error(result, "no client with slug 'no-such-client'")


# ---------------------------------------------------------------- stats


def _scene(url: str) -> tuple[str, str]:
    """Two clients: each with a qualified lead and its delivered email, and a suppression;
    the first also with a lead and an email from last week."""
    slugs = []
    week_ago = datetime.now(UTC) - timedelta(days=7)
    for index in range(2):
        slug, client_id = _new_client(url)
        slugs.append(slug)
        lead = _lead(url, client_id, "q@a.example", status="qualified")
        rows: list[tuple[str | None, datetime | None]] = [(lead, None)]
        if index == 0:
            old = _lead(url, client_id, "old@a.example", status="nurture", created_at=week_ago)
            rows.append((old, week_ago))
        with psycopg.connect(url) as conn:
            for lead_id, created in rows:
                conn.execute(
                    "INSERT INTO public.communications (lead_id, client_id, type, recipient,"
                    " status, provider, sent_at, delivered_at, created_at)"
                    " SELECT %s, %s, 'email', 'q@a.example', 'delivered', 'resend',"
                    " l.created_at + interval '200 ms', l.created_at + interval '1 s',"
                    " coalesce(%s, now()) FROM public.leads l WHERE l.id = %s",
                    (lead_id, client_id, created, lead_id),
                )
            conn.execute(
                "INSERT INTO public.suppressions (client_id, channel, recipient, reason)"
                " VALUES (%s, 'email', 'gone@a.example', 'bounce')",
                (client_id,),
            )
    return slugs[0], slugs[1]


def test_stats_of_one_client_since_a_moment(migrated_db: str) -> None:
    first, second = _scene(migrated_db)

    every = json_lines(lqs(migrated_db, "stats", "--client", first, "--json"))
    recent = json_lines(lqs(migrated_db, "stats", "--client", first, "--since", "1d", "--json"))
    table = ok(lqs(migrated_db, "stats", "--client", first))

    def rows(found: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "table"} for r in found if r["table"] == name]

    assert rows(every, "leads") == [
        {"client_slug": first, "status": "nurture", "leads": 1},
        {"client_slug": first, "status": "qualified", "leads": 1},
    ]
    assert rows(recent, "leads") == [{"client_slug": first, "status": "qualified", "leads": 1}]
    assert rows(every, "communications") == [
        {"channel": "email", "provider": "resend", "status": "delivered", "communications": 2,
         "retries": 0}
    ]  # fmt: skip
    [accepted, delivered] = rows(recent, "latency")
    assert accepted["messages"] == delivered["messages"] == 1
    assert accepted["p50_ms"] == pytest.approx(200)
    assert delivered["p50_ms"] == pytest.approx(800)
    assert rows(every, "suppressions") == [{"reason": "bounce", "recipients": 1}]
    assert second not in json.dumps(every)
    assert f"client {first}" in table
    for title in ("Leads by outcome", "Communications by status and provider", "Latency",
                  "Suppressions", "Consent history"):  # fmt: skip
        assert title in table
    assert re.search(r"│ intake → provider accepted │ 2 +│ 200 ms", table)


def test_stats_of_every_client(migrated_db: str) -> None:
    first, second = _scene(migrated_db)

    found = json_lines(lqs(migrated_db, "stats", "--json"))
    future = json_lines(lqs(migrated_db, "stats", "--since", "2999-01-01", "--json"))

    slugs = {r["client_slug"] for r in found if r["table"] == "leads"}
    assert {first, second} <= slugs
    assert [r for r in future if r["table"] != "latency"] == []


@pytest.mark.parametrize("since", ["yesterday", "2y", "2026-02-30", "-1d"])
def test_stats_refuses_a_bad_since(migrated_db: str, since: str) -> None:
    assert_refused(lqs(migrated_db, "stats", "--since", since), f"--since {since!r}: expected")


def test_stats_of_an_unknown_client_is_one_line(migrated_db: str) -> None:
    result = run_lqs("stats", "--client", "no-such-client", env={"LQS_DATABASE_URL": migrated_db})

    assert result.returncode == 1
    assert_one_line_error(result, "no client with slug 'no-such-client'")
