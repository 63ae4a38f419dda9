"""``lqs leads list|show|reprocess`` and ``lqs comms list --lead/--template/--campaign`` on a
real database.

The commands run in process (typer's runner) for speed; the errors the entry point turns
into one line (an unknown client) run as real ``lqs`` processes.
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from click.testing import Result
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from typer.testing import CliRunner

from lqs.cli import app
from tests.integration.test_cli import assert_one_line_error, run_lqs

NOW = datetime.now(UTC)
BREAKDOWN = [
    {"rule_id": "corporate-email", "rule_version": 1, "field": "email",
     "value": "ann@bigco.example", "points": 25, "reason": "Email on a company domain"},
    {"rule_id": "senior-title", "rule_version": 1, "field": "job_title", "value": "CEO",
     "points": 20, "reason": "Senior decision-maker"},
]  # fmt: skip


def lqs(url: str, *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"LQS_DATABASE_URL": url, "COLUMNS": "300"})


def assert_refused(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def json_lines(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def _client(url: str, settings: dict[str, Any] | None = None) -> str:
    slug = f"lv-{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO public.clients (name, slug, settings) VALUES (%s, %s, %s)",
            (slug, slug, Jsonb(settings or {})),
        )
    return slug


@pytest.fixture
def slug(migrated_db: str) -> str:
    return _client(migrated_db)


def _lead(url: str, slug: str, email: str, **columns: Any) -> UUID:
    values: dict[str, Any] = {"email": email, "dedupe_key": f"email:{email.lower()}",
                              "status": "qualified", **columns}  # fmt: skip
    values = {k: Jsonb(v) if isinstance(v, dict | list) else v for k, v in values.items()}
    names = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    with psycopg.connect(url) as conn:
        row = conn.execute(
            f"INSERT INTO public.leads (client_id, {names})"
            f" SELECT id, {marks} FROM public.clients WHERE slug = %s RETURNING id".encode(),
            (*values.values(), slug),
        ).fetchone()
    assert row is not None
    return UUID(str(row[0]))


def _communication(url: str, lead_id: UUID, **columns: Any) -> UUID:
    values: dict[str, Any] = {"type": "email", "recipient": "sales@client.example",
                              "status": "sent", **columns}  # fmt: skip
    names = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    with psycopg.connect(url) as conn:
        row = conn.execute(
            f"INSERT INTO public.communications (client_id, lead_id, {names})"
            f" SELECT client_id, id, {marks} FROM public.leads WHERE id = %s RETURNING id".encode(),
            (*values.values(), lead_id),
        ).fetchone()
    assert row is not None
    return UUID(str(row[0]))


def _lead_row(url: str, lead_id: UUID) -> dict[str, Any]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        row = conn.execute("SELECT * FROM public.leads WHERE id = %s", (lead_id,)).fetchone()
    assert row is not None
    return row


# ------------------------------------------------------------------------------ leads list


def test_list_shows_the_newest_leads_first(migrated_db: str, slug: str) -> None:
    old = _lead(migrated_db, slug, "old@bigco.example", received_at=NOW - timedelta(days=3))
    new = _lead(migrated_db, slug, "new@bigco.example", first_name="Ann", last_name="Lee",
                company_name="BigCo", score=65, grade="B", received_at=NOW)  # fmt: skip
    mid = _lead(migrated_db, slug, "mid@bigco.example", status="queued",
                received_at=NOW - timedelta(hours=5))  # fmt: skip

    table = lqs(migrated_db, "leads", "list", "--client", slug)
    rows = json_lines(lqs(migrated_db, "leads", "list", "--client", slug, "--json"))

    assert table.exit_code == 0, table.output
    for text in ("created", "email", "name", "company", "status", "score", "grade", str(new),
                 "Ann Lee", "BigCo", "65", "3 lead(s)"):  # fmt: skip
        assert text in table.stdout
    assert [r["id"] for r in rows] == [str(new), str(mid), str(old)]
    assert rows[0] == {
        "id": str(new), "received_at": rows[0]["received_at"], "client_slug": slug,
        "email": "new@bigco.example", "name": "Ann Lee", "company": "BigCo",
        "status": "qualified", "score": 65, "grade": "B",
    }  # fmt: skip
    assert datetime.fromisoformat(rows[0]["received_at"]) == NOW


def test_list_filters_by_status_grade_since_search_and_limit(migrated_db: str, slug: str) -> None:
    ann = _lead(migrated_db, slug, "ann@bigco.example", grade="A", company_name="Acme Widgets",
                received_at=NOW - timedelta(minutes=10))  # fmt: skip
    bob = _lead(migrated_db, slug, "bob@other.example", grade="C", status="nurture",
                last_name="Widgetson", received_at=NOW - timedelta(days=2))  # fmt: skip
    cy = _lead(migrated_db, slug, "cy@third.example", grade="A", status="error",
               company_domain="widgets.example", received_at=NOW - timedelta(days=9))  # fmt: skip

    def ids(*args: str) -> list[str]:
        return [r["id"] for r in json_lines(lqs(migrated_db, "leads", "list", "--client", slug,
                                                "--json", *args))]  # fmt: skip

    assert ids("--status", "nurture") == [str(bob)]
    assert ids("--grade", "A") == [str(ann), str(cy)]
    assert ids("--grade", "a") == [str(ann), str(cy)]  # grades are matched case aside
    assert ids("--since", "1h") == [str(ann)]
    assert ids("--since", "3d") == [str(ann), str(bob)]
    since = (NOW - timedelta(days=3)).isoformat()
    assert ids("--since", since) == [str(ann), str(bob)]
    assert ids("--search", "WIDGET") == [str(ann), str(bob), str(cy)]  # company, name, domain
    assert ids("--search", "BOB@other") == [str(bob)]
    assert ids("--grade", "A", "--status", "error") == [str(cy)]
    assert ids("--limit", "2") == [str(ann), str(bob)]


def test_search_takes_wildcards_literally(migrated_db: str, slug: str) -> None:
    underscore = _lead(migrated_db, slug, "a_b@bigco.example")
    _lead(migrated_db, slug, "axb@bigco.example")
    percent = _lead(migrated_db, slug, "c@bigco.example", company_name="100% Pure")
    _lead(migrated_db, slug, "d@bigco.example", company_name="1000 Pure")

    def ids(text: str) -> list[str]:
        result = lqs(migrated_db, "leads", "list", "--client", slug, "--search", text, "--json")
        return [r["id"] for r in json_lines(result)]

    assert ids("a_b") == [str(underscore)]
    assert ids("100%") == [str(percent)]
    assert ids("%") == [str(percent)]
    assert ids("'; drop table x; --") == []


def test_grades_of_the_clients_own_rules_and_of_stored_leads_are_known(
    migrated_db: str,
) -> None:
    hot = _client(migrated_db, {"scoring_rules": {"grades": {"Hot": 70, "Warm": 30}}})
    lead = _lead(migrated_db, hot, "h@bigco.example", grade="Hot")
    legacy = _lead(migrated_db, hot, "l@bigco.example", grade="Tepid")  # from rules since changed

    assert [r["id"] for r in json_lines(lqs(migrated_db, "leads", "list", "--client", hot,
                                            "--grade", "hot", "--json"))] == [str(lead)]  # fmt: skip
    assert [r["id"] for r in json_lines(lqs(migrated_db, "leads", "list", "--client", hot,
                                            "--grade", "Tepid", "--json"))] == [str(legacy)]  # fmt: skip
    assert_refused(
        lqs(migrated_db, "leads", "list", "--client", hot, "--grade", "A"),
        "--grade must be one of Hot, Warm, D", f"{hot}'s rules", "not 'A'",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--status", "won"], ["--status must be one of queued, qualified, nurture, "
                               "disqualified, error, not 'won'"]),
        # The module's other clients' grades (Hot, Warm) may come first: clients go by slug.
        (["--grade", "Z"], ["--grade must be one of ", "A, B, C", "the clients' rules give",
                            "not 'Z'"]),
        (["--since", "yesterday"], ["--since 'yesterday': expected", "30m, 2h, 7d"]),
        (["--search", "a\udcffb"], ["--search holds a lone surrogate (U+DCFF) at character 2"]),
        (["--client", "x\udcff"], ["--client holds a lone surrogate"]),
    ],
    ids=["status", "grade", "since", "search surrogate", "slug surrogate"],
)  # fmt: skip
def test_bad_filters_are_refused_in_one_line(
    migrated_db: str, slug: str, args: list[str], fragments: list[str]
) -> None:
    assert_refused(lqs(migrated_db, "leads", "list", *args), *fragments)


def test_an_unknown_client_is_one_line_from_every_command(migrated_db: str) -> None:
    env = {"LQS_DATABASE_URL": migrated_db}
    commands = [
        ("leads", "list", "--client", "no-such-client"),
        ("leads", "show", "a@b.example", "--client", "no-such-client"),
        ("leads", "reprocess", "a@b.example", "--client", "no-such-client"),
        ("comms", "list", "--lead", "a@b.example", "--client", "no-such-client"),
    ]
    with ThreadPoolExecutor(len(commands)) as pool:
        results = list(pool.map(lambda args: run_lqs(*args, env=env), commands))

    for result in results:
        assert_one_line_error(result, "no client with slug 'no-such-client'")


# ------------------------------------------------------------------------------ leads show


def _shown_lead(url: str, slug: str) -> tuple[UUID, UUID]:
    lead_id = _lead(url, slug, "ann@bigco.example", first_name="Ann", job_title="CEO",
                    score=45, grade="C", score_breakdown=BREAKDOWN, consent_status="withdrawn",
                    custom={"plan": "pro"})  # fmt: skip
    comm_id = _communication(url, lead_id, template_id="lead_qualified@v2",
                             campaign_id="spring", status="failed",
                             error_message="mailbox full")  # fmt: skip
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO public.consent_history (client_id, lead_id, channel, recipient,"
            " consent_status, source, communication_id)"
            " SELECT client_id, id, 'email', 'ann@bigco.example', 'withdrawn',"
            "  'unsubscribe link', %s FROM public.leads WHERE id = %s",
            (comm_id, lead_id),
        )
        # A provider's unsubscribe, recorded for the address without the lead.
        conn.execute(
            "INSERT INTO public.consent_history (client_id, channel, recipient, consent_status,"
            " source) SELECT id, 'email', 'ann@bigco.example', 'withdrawn', 'sendgrid'"
            " FROM public.clients WHERE slug = %s",
            (slug,),
        )
    return lead_id, comm_id


def test_show_prints_fields_breakdown_communications_and_consent_history(
    migrated_db: str, slug: str
) -> None:
    lead_id, comm_id = _shown_lead(migrated_db, slug)

    result = lqs(migrated_db, "leads", "show", str(lead_id))

    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in (str(lead_id), slug, "qualified", "Ann", "CEO", '{"plan": "pro"}',
                 "Score breakdown", "corporate-email", "Email on a company domain",
                 "senior-title", "Senior decision-maker", "20",
                 str(comm_id), "lead_qualified@v2", "failed", "mailbox full",
                 "Consent history", "unsubscribe link", "sendgrid"):  # fmt: skip
        assert text in out, text
    assert out.index("Score breakdown") < out.index(str(comm_id)) < out.index("unsubscribe link")


def test_show_finds_a_lead_by_id_prefix_or_email_alike(migrated_db: str, slug: str) -> None:
    lead_id, _ = _shown_lead(migrated_db, slug)

    by_id = json_lines(lqs(migrated_db, "leads", "show", str(lead_id), "--json"))
    by_prefix = json_lines(lqs(migrated_db, "leads", "show", str(lead_id)[:13], "--json"))
    by_email = json_lines(lqs(migrated_db, "leads", "show", "ANN@bigco.example", "--client",
                              slug, "--json"))  # fmt: skip

    assert by_id == by_prefix == by_email
    [shown] = by_id
    assert shown["id"] == str(lead_id)
    assert shown["client_slug"] == slug
    assert shown["score_breakdown"] == BREAKDOWN
    assert shown["custom"] == {"plan": "pro"}
    [comm] = shown["communications"]
    assert comm["template_id"] == "lead_qualified@v2"
    assert comm["reason"] == "mailbox full"
    assert comm["campaign_id"] == "spring"
    assert [e["source"] for e in shown["consent_history"]] == ["unsubscribe link", "sendgrid"]
    assert shown["consent_history"][0]["communication_id"] == comm["id"]
    datetime.fromisoformat(shown["received_at"])  # times in ISO 8601, nested ones too
    datetime.fromisoformat(shown["consent_history"][0]["recorded_at"])


def test_show_of_an_email_several_clients_have_lists_them(migrated_db: str) -> None:
    email = f"twin{uuid.uuid4().hex[:6]}@bigco.example"
    first, second = _client(migrated_db), _client(migrated_db)
    _lead(migrated_db, first, email)
    chosen = _lead(migrated_db, second, email)

    assert_refused(
        lqs(migrated_db, "leads", "show", email),
        "leads of 2 clients have the email", ", ".join(sorted([first, second])),
        "--client SLUG",
    )  # fmt: skip
    [shown] = json_lines(lqs(migrated_db, "leads", "show", email, "--client", second, "--json"))
    assert shown["id"] == str(chosen)


def test_show_of_an_email_one_client_has_twice_is_the_newest_naming_the_other(
    migrated_db: str, slug: str
) -> None:
    older = _lead(migrated_db, slug, "re@bigco.example", status="disqualified",
                  received_at=NOW - timedelta(days=30))  # fmt: skip
    newer = _lead(migrated_db, slug, "re@bigco.example")

    result = lqs(migrated_db, "leads", "show", "re@bigco.example", "--client", slug)

    assert result.exit_code == 0, result.output
    assert str(newer) in result.stdout
    assert f"older leads, same email │ {older}" in result.stdout


def test_show_refuses_what_names_no_lead(migrated_db: str, slug: str) -> None:
    prefix = uuid.uuid4().hex[:8]
    for tail in ("0000-4000-8000-000000000001", "0000-4000-8000-000000000002"):
        _lead(migrated_db, slug, f"{tail[-1]}@{prefix}.example", id=f"{prefix}-{tail}")
    other = _client(migrated_db)

    assert_refused(lqs(migrated_db, "leads", "show", prefix), f"'{prefix}' starts")
    assert_refused(lqs(migrated_db, "leads", "show", "0000" + prefix), "no lead id starts with")
    assert_refused(lqs(migrated_db, "leads", "show", str(uuid.UUID(int=7))), "no lead with id")
    assert_refused(lqs(migrated_db, "leads", "show", "nobody@nowhere.example"),
                   "no lead has the email 'nobody@nowhere.example'")  # fmt: skip
    assert_refused(lqs(migrated_db, "leads", "show", f"1@{prefix}.example", "--client", other),
                   f"no lead of {other} has the email")  # fmt: skip
    assert_refused(lqs(migrated_db, "leads", "show", f"{prefix}-0000-4000-8000-000000000001",
                       "--client", other), f"no lead of {other} with id")  # fmt: skip
    assert_refused(lqs(migrated_db, "leads", "show", "abc"), "at least 4", "email")


# ------------------------------------------------------------------------------ reprocess


def test_reprocess_queues_parked_and_processed_leads_again(migrated_db: str, slug: str) -> None:
    parked = _lead(migrated_db, slug, "parked@bigco.example", status="error",
                   processing_failures=3, error_message="parked after 3 failed attempts: x",
                   processed_at=NOW)  # fmt: skip
    done = _lead(migrated_db, slug, "done@bigco.example", score=70, grade="B", processed_at=NOW)
    waiting = _lead(migrated_db, slug, "waiting@bigco.example", status="queued")

    result = lqs(migrated_db, "leads", "reprocess", str(parked), "done@bigco.example",
                 str(waiting)[:8], str(parked), "--client", slug)  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "queued 2 lead(s) again" in result.stdout
    assert f"already queued, left alone: {waiting}" in result.stderr
    again = _lead_row(migrated_db, parked)
    assert (again["status"], again["processing_failures"], again["error_message"]) == (
        "queued", 0, None,
    )  # fmt: skip
    assert _lead_row(migrated_db, done)["status"] == "queued"
    assert _lead_row(migrated_db, done)["score"] == 70  # until the worker scores it again


def test_reprocess_queues_nothing_when_any_lead_is_unknown(migrated_db: str, slug: str) -> None:
    parked = _lead(migrated_db, slug, "p2@bigco.example", status="error")

    result = lqs(migrated_db, "leads", "reprocess", str(parked), str(uuid.UUID(int=9)),
                 "ghost@bigco.example", "--client", slug)  # fmt: skip

    assert_refused(
        result, f"no lead of {slug} with id {uuid.UUID(int=9)}",
        f"no lead of {slug} has the email 'ghost@bigco.example'", "nothing was queued",
    )  # fmt: skip
    assert _lead_row(migrated_db, parked)["status"] == "error"


def test_reprocess_cannot_reopen_a_lead_whose_email_has_an_open_lead(
    migrated_db: str, slug: str
) -> None:
    closed = _lead(migrated_db, slug, "dup@bigco.example", status="disqualified",
                   received_at=NOW - timedelta(days=1))  # fmt: skip
    open_lead = _lead(migrated_db, slug, "dup@bigco.example", status="nurture")
    parked = _lead(migrated_db, slug, "p3@bigco.example", status="error")

    result = lqs(migrated_db, "leads", "reprocess", str(parked), str(closed))

    assert_refused(result, f"cannot reopen {closed} (open: {open_lead})", "nothing was queued")
    assert _lead_row(migrated_db, parked)["status"] == "error"
    assert _lead_row(migrated_db, closed)["status"] == "disqualified"


def test_reprocess_cannot_reopen_two_closed_leads_with_one_email(
    migrated_db: str, slug: str
) -> None:
    first = _lead(migrated_db, slug, "two@bigco.example", status="error",
                  received_at=NOW - timedelta(days=1))  # fmt: skip
    second = _lead(migrated_db, slug, "two@bigco.example", status="disqualified")

    result = lqs(migrated_db, "leads", "reprocess", str(first), str(second))

    assert_refused(result, "cannot reopen", "nothing was queued")
    assert _lead_row(migrated_db, first)["status"] == "error"
    assert _lead_row(migrated_db, second)["status"] == "disqualified"


# ------------------------------------------------------------------------------ comms list


def test_comms_list_filters_by_lead_template_and_campaign(migrated_db: str, slug: str) -> None:
    ann = _lead(migrated_db, slug, "ann2@bigco.example")
    bob = _lead(migrated_db, slug, "bob2@bigco.example")
    v1 = _communication(migrated_db, ann, template_id="lead_qualified@v1", campaign_id="spring")
    v2 = _communication(migrated_db, ann, template_id="lead_qualified@v2")
    ack = _communication(migrated_db, bob, template_id="lead_acknowledgement@default",
                         campaign_id="spring")  # fmt: skip

    def ids(*args: str) -> set[str]:
        result = lqs(migrated_db, "comms", "list", "--client", slug, "--json", *args)
        return {r["id"] for r in json_lines(result)}

    assert ids("--lead", str(ann)) == {str(v1), str(v2)}
    assert ids("--lead", "bob2@bigco.example") == {str(ack)}
    assert ids("--lead", str(bob)[:8]) == {str(ack)}
    assert ids("--template", "lead_qualified") == {str(v1), str(v2)}
    assert ids("--template", "lead_qualified@v2") == {str(v2)}
    assert ids("--campaign", "spring") == {str(v1), str(ack)}
    assert ids("--campaign", "spring", "--lead", str(ann)) == {str(v1)}
    assert ids("--template", "lead_qualified@v3") == set()
    assert_refused(lqs(migrated_db, "comms", "list", "--lead", "ghost@bigco.example"),
                   "no lead has the email 'ghost@bigco.example'")  # fmt: skip
    assert_refused(lqs(migrated_db, "comms", "list", "--campaign", "x\x00"),
                   "--campaign holds NUL (U+0000) at character 2")  # fmt: skip
