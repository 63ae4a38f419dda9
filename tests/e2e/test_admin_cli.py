"""Client, key and template administration from the command line, bad input included."""

from __future__ import annotations

from pathlib import Path

import psycopg

from tests.e2e.conftest import run_lqs


def _settings(url: str, slug: str) -> dict[str, object]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT settings FROM public.clients WHERE slug = %s", (slug,)
        ).fetchone()
    assert row is not None
    return dict(row[0])


def _one_line_error(result: object, fragment: str) -> None:
    assert result.returncode == 1  # type: ignore[attr-defined]
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("error: ")
    assert fragment in stderr


def test_bad_rules_file_is_refused_naming_each_rule_and_storing_nothing(
    pipeline_db: str, tmp_path: Path
) -> None:
    assert run_lqs(pipeline_db, "clients", "create", "Acme", "--slug", "acme").returncode == 0
    good = tmp_path / "good.yaml"
    good.write_text(
        "thresholds: {qualified: 10, nurture: 5}\n"
        "rules:\n  - {id: corp, field: email, when: {email_domain_type: corporate}, points: 10}\n"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "thresholds: {qualified: 10, nurture: 5}\n"
        "rules:\n"
        "  - {id: one, field: emial, when: {exists: true}, points: 1}\n"
        "  - {id: two, field: job_title, when: {regex: '('}, points: 1}\n"
    )
    assert run_lqs(pipeline_db, "clients", "set-rules", "acme", str(good)).returncode == 0

    result = run_lqs(pipeline_db, "clients", "set-rules", "acme", str(bad))

    _one_line_error(result, "2 problem(s) listed above; nothing was stored")
    assert "rules: rule 'one' (rules[0]): unknown field 'emial'" in result.stderr
    assert "rules: rule 'two' (rules[1]): regex does not compile" in result.stderr
    rules = _settings(pipeline_db, "acme")["scoring_rules"]
    assert isinstance(rules, dict)
    assert rules["rules"][0]["id"] == "corp"


def test_unreadable_or_malformed_rules_files_are_refused(pipeline_db: str, tmp_path: Path) -> None:
    assert run_lqs(pipeline_db, "clients", "create", "Acme", "--slug", "acme").returncode == 0
    broken = tmp_path / "broken.yaml"
    broken.write_text("thresholds: [unclosed\n")
    _one_line_error(
        run_lqs(pipeline_db, "clients", "set-rules", "acme", str(broken)), "not valid YAML"
    )
    _one_line_error(
        run_lqs(pipeline_db, "clients", "set-rules", "acme", str(tmp_path / "missing.yaml")),
        "cannot read",
    )
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("thresholds: {qualified: 60}\n# Müller\n".encode("latin-1"))
    for command in ("set-rules", "set-delivery"):
        _one_line_error(
            run_lqs(pipeline_db, "clients", command, "acme", str(latin1)), "not UTF-8 text"
        )


def test_client_creation_refuses_bad_slugs_and_duplicates(pipeline_db: str) -> None:
    _one_line_error(run_lqs(pipeline_db, "clients", "create", "X", "--slug", "Bad Slug"), "--slug")
    assert run_lqs(pipeline_db, "clients", "create", "X", "--slug", "x1").returncode == 0
    _one_line_error(
        run_lqs(pipeline_db, "clients", "create", "X", "--slug", "x1"), "already exists"
    )
    _one_line_error(
        run_lqs(pipeline_db, "clients", "create", "Y", "--slug", "y1", "--region", "usa"),
        "--region 'usa'",
    )


def test_keys_are_shown_once_listed_by_prefix_and_revoked(pipeline_db: str) -> None:
    assert run_lqs(pipeline_db, "clients", "create", "Acme", "--slug", "acme").returncode == 0
    created = run_lqs(pipeline_db, "keys", "create", "--client", "acme", "--name", "web form")
    key = created.stdout.strip()
    assert key.startswith("lqs_")
    assert len(key) > 40
    with psycopg.connect(pipeline_db) as conn:
        stored = conn.execute("SELECT prefix, key_hash FROM public.api_keys").fetchall()
    assert [p for p, _ in stored] == [key[:12]]
    assert all(key.encode() not in bytes(h) for _, h in stored)

    listed = run_lqs(pipeline_db, "keys", "list", "--client", "acme")
    assert key[:12] in listed.stdout
    assert key not in listed.stdout

    assert run_lqs(pipeline_db, "keys", "revoke", key[:12], "--client", "acme").returncode == 0
    _one_line_error(
        run_lqs(pipeline_db, "keys", "revoke", key[:12], "--client", "acme"), "no live key"
    )
    _one_line_error(run_lqs(pipeline_db, "keys", "create", "--client", "nobody"), "no client")


def test_templates_are_versioned_and_checked_before_storing(
    pipeline_db: str, tmp_path: Path
) -> None:
    assert run_lqs(pipeline_db, "clients", "create", "Acme", "--slug", "acme").returncode == 0
    body = tmp_path / "body.html"
    body.write_text("<p>{{ lead.first_name }}</p>")
    for expected in (1, 2):
        result = run_lqs(
            pipeline_db, "templates", "put", "--client", "acme", "--id", "lead_qualified",
            "--body-file", str(body), "--subject", "New: {{ score }}",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert f"version {expected}" in result.stdout
    body.write_text("{% if %}")
    broken = run_lqs(
        pipeline_db, "templates", "put", "--client", "acme", "--id", "lead_qualified",
        "--body-file", str(body),
    )  # fmt: skip
    _one_line_error(broken, "line 1")
    with psycopg.connect(pipeline_db) as conn:
        row = conn.execute("SELECT max(version) FROM public.templates").fetchone()
    assert row == (2,)


def test_configure_turns_lead_acknowledgements_on_and_off(pipeline_db: str) -> None:
    assert run_lqs(pipeline_db, "clients", "create", "Acme", "--slug", "acme").returncode == 0
    on = run_lqs(pipeline_db, "clients", "configure", "acme", "--acknowledge-leads",
                 "--notification-email", "sales@acme.example")  # fmt: skip
    assert on.returncode == 0, on.stderr
    settings = _settings(pipeline_db, "acme")
    assert settings["notification_email"] == "sales@acme.example"
    qualified = settings["notifications"]["qualified"]  # type: ignore[index]
    assert [r["to"] for r in qualified] == ["client", "lead"]
    assert (
        run_lqs(pipeline_db, "clients", "configure", "acme", "--no-acknowledge-leads").returncode
        == 0
    )
    qualified = _settings(pipeline_db, "acme")["notifications"]["qualified"]  # type: ignore[index]
    assert [r["to"] for r in qualified] == ["client"]
    _one_line_error(
        run_lqs(pipeline_db, "clients", "configure", "acme", "--time-zone", "Mars/Base"),
        "unknown time zone",
    )
