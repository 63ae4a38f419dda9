"""``lqs users ...`` as an operator runs it: the real entry point, real PostgreSQL."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from lqs.domain.passwords import verify_password
from tests.integration.test_cli import assert_one_line_error, run_lqs

PASSWORD = "correct horse battery staple"


@pytest.fixture
def env(migrated_db: str) -> dict[str, str]:
    return {"LQS_DATABASE_URL": migrated_db}


@pytest.fixture
def slug(migrated_db: str) -> str:
    """A new client's slug."""
    name = f"c-{uuid.uuid4().hex[:12]}"
    with psycopg.connect(migrated_db) as conn:
        conn.execute("INSERT INTO public.clients (name, slug) VALUES (%s, %s)", (name, name))
    return name


def _email() -> str:
    return f"ann-{uuid.uuid4().hex[:8]}@acme.example"


def _user(url: str, email: str) -> dict[str, Any]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        row = conn.execute(
            "SELECT p.id, p.email, p.role, c.slug, u.password_hash, u.disabled_at,"
            " u.failed_attempts, u.locked_until"
            " FROM public.profiles p JOIN public.clients c ON c.id = p.client_id"
            " JOIN public.user_credentials u ON u.user_id = p.id"
            " WHERE lower(p.email) = lower(%s)",
            (email,),
        ).fetchone()
    assert row is not None, email
    return row


def test_add_without_a_password_prints_a_generated_one_once(
    env: dict[str, str], slug: str, migrated_db: str
) -> None:
    email = _email()

    result = run_lqs("users", "add", "--client", slug, "--email", email, env=env)

    assert result.returncode == 0, result.stderr
    password = result.stdout.strip()
    assert len(password) == 20
    assert password.isalnum()
    assert f"added {email} to {slug} as member" in result.stderr
    assert "Store this password now: it cannot be shown again." in result.stderr
    stored = _user(migrated_db, email)
    assert (stored["role"], stored["slug"]) == ("member", slug)
    assert stored["password_hash"].startswith("$argon2id$")
    assert verify_password(stored["password_hash"], password)


def test_add_an_admin_with_a_password_from_stdin(
    env: dict[str, str], slug: str, migrated_db: str
) -> None:
    email = _email()

    result = run_lqs(
        "users", "add", "--client", slug, "--email", email, "--admin", "--password-stdin",
        env=env, stdin=PASSWORD + "\n",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # nothing to show: the operator chose the password
    stored = _user(migrated_db, email)
    assert stored["role"] == "admin"
    assert verify_password(stored["password_hash"], PASSWORD)


def test_list_shows_users_per_client_without_their_hashes(
    env: dict[str, str], slug: str, migrated_db: str
) -> None:
    emails = sorted([_email(), _email()])
    for email in emails:
        assert run_lqs("users", "add", "--client", slug, "--email", email, env=env).returncode == 0
    other = run_lqs("users", "add", "--client", slug, "--email", _email(), env=env)
    assert other.returncode == 0

    mine = run_lqs("users", "list", "--client", slug, "--json", env=env)
    everyone = run_lqs("users", "list", "--json", env=env)
    table = run_lqs("users", "list", "--client", slug, env=env)

    assert mine.returncode == 0, mine.stderr
    rows = [json.loads(line) for line in mine.stdout.splitlines()]
    assert len(rows) == 3
    assert {row["client_slug"] for row in rows} == {slug}
    assert all("password_hash" not in row and "$argon2" not in json.dumps(row) for row in rows)
    assert set(emails) <= {row["email"] for row in rows}
    assert len(everyone.stdout.splitlines()) >= 3
    assert table.returncode == 0
    assert emails[0] in table.stdout
    assert "active" in table.stdout


def test_disable_then_enable(env: dict[str, str], slug: str, migrated_db: str) -> None:
    email = _email()
    assert run_lqs("users", "add", "--client", slug, "--email", email, env=env).returncode == 0

    disabled = run_lqs("users", "disable", email.upper(), env=env)
    after_disable = _user(migrated_db, email)
    listed = run_lqs("users", "list", "--client", slug, env=env)
    enabled = run_lqs("users", "enable", email, env=env)

    assert disabled.returncode == 0, disabled.stderr
    assert disabled.stdout.strip() == f"disabled {email}"
    assert after_disable["disabled_at"] is not None
    assert "disabled" in listed.stdout
    assert enabled.returncode == 0
    assert _user(migrated_db, email)["disabled_at"] is None


def test_reset_password_replaces_the_hash_and_lifts_a_lockout(
    env: dict[str, str], slug: str, migrated_db: str
) -> None:
    email = _email()
    assert run_lqs("users", "add", "--client", slug, "--email", email, env=env).returncode == 0
    with psycopg.connect(migrated_db) as conn:
        conn.execute(
            "UPDATE public.user_credentials SET failed_attempts = 3,"
            " locked_until = now() + interval '10 minutes'"
            " WHERE user_id = (SELECT id FROM public.profiles WHERE email = %s)",
            (email,),
        )

    chosen = run_lqs("users", "reset-password", email, "--password-stdin", env=env, stdin=PASSWORD)
    stored = _user(migrated_db, email)
    generated = run_lqs("users", "reset-password", email, env=env)

    assert chosen.returncode == 0, chosen.stderr
    assert verify_password(stored["password_hash"], PASSWORD)
    assert (stored["failed_attempts"], stored["locked_until"]) == (0, None)
    assert generated.returncode == 0
    assert verify_password(_user(migrated_db, email)["password_hash"], generated.stdout.strip())
    assert not verify_password(_user(migrated_db, email)["password_hash"], PASSWORD)


def test_a_bad_email_is_one_line(env: dict[str, str], slug: str) -> None:
    result = run_lqs("users", "add", "--client", slug, "--email", "not-an-address", env=env)
    assert_one_line_error(result, "--email 'not-an-address' is not a valid email address")


def test_an_unknown_client_is_one_line(env: dict[str, str]) -> None:
    result = run_lqs("users", "add", "--client", "no-such-client", "--email", _email(), env=env)
    assert_one_line_error(result, "no client with slug 'no-such-client'")


def test_a_duplicate_email_in_any_case_is_one_line(
    env: dict[str, str], slug: str, migrated_db: str
) -> None:
    email = _email()
    assert run_lqs("users", "add", "--client", slug, "--email", email, env=env).returncode == 0

    again = run_lqs("users", "add", "--client", slug, "--email", email.upper(), env=env)

    assert_one_line_error(again, "already exists")
    assert again.stdout == ""  # no password printed for a user that was not added


def test_a_short_password_is_one_line_and_stores_nothing(
    env: dict[str, str], slug: str, migrated_db: str
) -> None:
    email = _email()
    result = run_lqs(
        "users", "add", "--client", slug, "--email", email, "--password-stdin",
        env=env, stdin="short\n",
    )  # fmt: skip

    assert_one_line_error(result, "a password needs at least 12 characters (this one has 5)")
    with psycopg.connect(migrated_db) as conn:
        found = conn.execute("SELECT 1 FROM public.profiles WHERE email = %s", (email,)).fetchone()
    assert found is None


def test_reset_password_with_a_short_password_is_one_line(env: dict[str, str], slug: str) -> None:
    email = _email()
    assert run_lqs("users", "add", "--client", slug, "--email", email, env=env).returncode == 0
    result = run_lqs("users", "reset-password", email, "--password-stdin", env=env, stdin="\n")
    assert_one_line_error(result, "at least 12 characters")


@pytest.mark.parametrize("command", ["disable", "enable", "reset-password"])
def test_an_unknown_user_is_one_line(env: dict[str, str], command: str) -> None:
    result = run_lqs("users", command, "nobody@acme.example", env=env)
    assert_one_line_error(result, "no user signs in with 'nobody@acme.example'", "lqs users list")


def test_list_of_an_unknown_client_is_one_line(env: dict[str, str]) -> None:
    result = run_lqs("users", "list", "--client", "no-such-client", env=env)
    assert_one_line_error(result, "no client with slug 'no-such-client'")
