"""``lqs clients create|configure`` and ``lqs keys create`` refuse bad input: one line per
problem, every problem at once, exit 1, nothing stored; never a database traceback."""

from __future__ import annotations

import subprocess
from typing import Any

import psycopg
import pytest

from tests.integration.test_cli import run_lqs


def _lqs(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_lqs(*args, env={"LQS_DATABASE_URL": url})


def _refused(result: subprocess.CompletedProcess[str], *fragments: str) -> list[str]:
    """The error lines, after checking the command failed cleanly naming each fragment."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ")
    assert lines[-1].endswith("nothing was stored")
    for fragment in fragments:
        assert fragment in result.stderr
    return lines


def _client_settings(url: str, slug: str) -> dict[str, Any] | None:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT settings FROM public.clients WHERE slug = %s", (slug,)
        ).fetchone()
    return None if row is None else dict(row[0])


def _key_count(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM public.api_keys").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--notification-email", "not-an-email"], "--notification-email 'not-an-email'"),
        (["--notification-email", "sales@"], "--notification-email"),
        (["--region", "XX"], "--region 'XX': not an ISO 3166 country code"),
        (["--region", "usa"], "--region 'usa'"),
    ],
)
def test_create_refuses_a_bad_option_in_one_line(
    migrated_db: str, options: list[str], fragment: str
) -> None:
    result = _lqs(migrated_db, "clients", "create", "Bad Input", "--slug", "bad-in", *options)

    lines = _refused(result, fragment)
    assert len(lines) == 1
    assert _client_settings(migrated_db, "bad-in") is None


def test_create_refuses_an_oversize_name_naming_the_limit(migrated_db: str) -> None:
    result = _lqs(migrated_db, "clients", "create", "N" * 201, "--slug", "long-name")

    assert len(_refused(result, "NAME", "201 characters long: at most 200")) == 1
    assert _client_settings(migrated_db, "long-name") is None


def test_create_refuses_an_oversize_slug_naming_the_limit(migrated_db: str) -> None:
    result = _lqs(migrated_db, "clients", "create", "Long slug", "--slug", "s" * 64)

    assert len(_refused(result, "--slug", "64 characters long: at most 63")) == 1


def test_create_refuses_a_blank_name(migrated_db: str) -> None:
    result = _lqs(migrated_db, "clients", "create", "   ", "--slug", "blank-name")

    assert len(_refused(result, "NAME", "must not be empty")) == 1
    assert _client_settings(migrated_db, "blank-name") is None


def test_create_lists_every_problem_at_once(migrated_db: str) -> None:
    result = _lqs(
        migrated_db, "clients", "create", "x" * 300, "--slug", "Bad Slug",
        "--notification-email", "nobody", "--region", "XX",
    )  # fmt: skip

    lines = _refused(result, "NAME", "--slug 'Bad Slug'", "--notification-email", "--region")
    assert len(lines) == 5
    assert lines[-1] == "error: 4 problems listed above; nothing was stored"
    assert _client_settings(migrated_db, "bad-slug") is None


def test_create_stores_a_normalised_address_and_region(migrated_db: str) -> None:
    result = _lqs(
        migrated_db, "clients", "create", "Good Input", "--slug", "good-in",
        "--notification-email", " Ada.Lovelace@ACME.Example ", "--region", "de",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    settings = _client_settings(migrated_db, "good-in")
    assert settings == {"default_region": "DE", "notification_email": "Ada.Lovelace@acme.example"}


@pytest.fixture(scope="module")
def configured(migrated_db: str) -> str:
    created = _lqs(
        migrated_db, "clients", "create", "Configured", "--slug", "configured",
        "--notification-email", "sales@configured.example",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    return "configured"


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--notification-email", "a b@c"], "--notification-email 'a b@c'"),
        (["--notification-phone", "12345"], "--notification-phone '12345'"),
        (["--notification-phone", "call me"], "write it in E.164"),
        (["--region", "XX"], "--region 'XX'"),
        (["--time-zone", "Mars/Base"], "--time-zone: Value error, unknown time zone"),
    ],
)
def test_configure_refuses_a_bad_option_and_changes_nothing(
    migrated_db: str, configured: str, options: list[str], fragment: str
) -> None:
    before = _client_settings(migrated_db, configured)

    result = _lqs(migrated_db, "clients", "configure", configured, *options)

    assert len(_refused(result, fragment)) == 1
    assert _client_settings(migrated_db, configured) == before


def test_configure_lists_every_problem_at_once(migrated_db: str, configured: str) -> None:
    before = _client_settings(migrated_db, configured)

    result = _lqs(
        migrated_db, "clients", "configure", configured, "--notification-email", "x@",
        "--notification-phone", "0", "--region", "ZZ", "--time-zone", "Nowhere/City",
        "--acknowledge-leads",
    )  # fmt: skip

    lines = _refused(
        result, "--notification-email", "--notification-phone", "--region", "--time-zone"
    )
    assert len(lines) == 5
    assert _client_settings(migrated_db, configured) == before


def test_configure_stores_the_phone_in_e164_read_in_the_clients_region(
    migrated_db: str, configured: str
) -> None:
    result = _lqs(
        migrated_db, "clients", "configure", configured,
        "--notification-phone", "030 1234567", "--region", "DE",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    settings = _client_settings(migrated_db, configured)
    assert settings is not None
    assert (settings["notification_phone"], settings["default_region"]) == ("+49301234567", "DE")


@pytest.mark.parametrize("rate", ["0", "-5", "1000000001", "99999999999999999999"])
def test_keys_create_refuses_a_rate_limit_out_of_range(
    migrated_db: str, configured: str, rate: str
) -> None:
    before = _key_count(migrated_db)

    result = _lqs(migrated_db, "keys", "create", "--client", configured, "--rate-limit", rate)

    lines = _refused(result, f"--rate-limit {rate}: must be 1 to 1,000,000,000 requests")
    assert len(lines) == 1
    assert _key_count(migrated_db) == before


def test_keys_create_refuses_an_oversize_name_and_lists_both_problems(
    migrated_db: str, configured: str
) -> None:
    before = _key_count(migrated_db)

    result = _lqs(
        migrated_db, "keys", "create", "--client", configured, "--name", "k" * 101,
        "--rate-limit", "0",
    )  # fmt: skip

    lines = _refused(result, "--name", "at most 100", "--rate-limit 0")
    assert len(lines) == 3
    assert _key_count(migrated_db) == before
