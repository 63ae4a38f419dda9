"""What the README captures in shell variables (``x=$(lqs ...)``) is all a command prints on
stdout: ``keys create``'s key, ``push add --quiet``'s id, ``comms list --quiet``'s ids."""

from __future__ import annotations

import uuid
from uuid import UUID

import psycopg

from tests.e2e.test_sending import _push_keys
from tests.integration.test_cli import assert_one_line_error, run_lqs


def _client(url: str) -> str:
    slug = f"quiet-{uuid.uuid4().hex[:8]}"
    created = run_lqs("clients", "create", "Quiet Co", "--slug", slug,
                      env={"LQS_DATABASE_URL": url})  # fmt: skip
    assert created.returncode == 0, created.stderr
    return slug


def test_keys_create_prints_only_the_key_on_stdout(migrated_db: str) -> None:
    env = {"LQS_DATABASE_URL": migrated_db}
    slug = _client(migrated_db)

    created = run_lqs("keys", "create", "--client", slug, env=env)

    assert created.returncode == 0, created.stderr
    [key] = created.stdout.splitlines()
    assert key.startswith("lqs_")
    assert "cannot be shown again" in created.stderr
    assert run_lqs("keys", "revoke", key[:12], "--client", slug, env=env).returncode == 0


def test_push_add_quiet_prints_only_the_new_subscription_id(migrated_db: str) -> None:
    env = {"LQS_DATABASE_URL": migrated_db}
    slug = _client(migrated_db)
    _, p256dh, auth = _push_keys()

    added = run_lqs("push", "add", "--client", slug, "--endpoint", "https://push.example/b-1",
                    "--p256dh", p256dh, "--auth", auth, "--quiet", env=env)  # fmt: skip

    assert added.returncode == 0, added.stderr
    subscription = UUID(added.stdout.strip())
    assert added.stdout == f"{subscription}\n"
    removed = run_lqs("push", "remove", str(subscription), env=env)
    assert removed.returncode == 0, removed.stderr
    assert f"removed push subscription {subscription}" in removed.stdout


def test_push_add_quiet_still_refuses_a_bad_key_in_one_line(migrated_db: str) -> None:
    slug = _client(migrated_db)

    refused = run_lqs("push", "add", "--client", slug, "--endpoint", "https://push.example/b",
                      "--p256dh", "c2hvcnQ", "--auth", "BTBZMqHH6r4Tts7J_aSIgg", "-q",
                      env={"LQS_DATABASE_URL": migrated_db})  # fmt: skip

    assert refused.stdout == ""
    assert_one_line_error(refused, "--p256dh must be a 65-byte")


def test_comms_list_quiet_prints_only_ids_newest_first(migrated_db: str) -> None:
    env = {"LQS_DATABASE_URL": migrated_db}
    slug = _client(migrated_db)
    assert run_lqs("comms", "list", "--client", slug, "--quiet", env=env).stdout == ""
    with psycopg.connect(migrated_db) as conn:
        [(client_id,)] = conn.execute(
            "SELECT id FROM public.clients WHERE slug = %s", (slug,)
        ).fetchall()
        [(lead_id,)] = conn.execute(
            "INSERT INTO public.leads (client_id, email) VALUES (%s, 'q@buyer.example')"
            " RETURNING id",
            (client_id,),
        ).fetchall()
        ids = [
            conn.execute(
                "INSERT INTO public.communications (client_id, lead_id, type, recipient,"
                " status, created_at) VALUES (%s, %s, 'email', 'q@buyer.example', 'sent',"
                " now() - make_interval(mins => %s)) RETURNING id",
                (client_id, lead_id, minutes),
            ).fetchall()[0][0]
            for minutes in (3, 2, 1)
        ]

    listed = run_lqs("comms", "list", "--client", slug, "--quiet", env=env)
    newest = run_lqs("comms", "list", "--client", slug, "--limit", "1", "-q", env=env)

    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [str(i) for i in reversed(ids)]
    assert newest.stdout == f"{ids[-1]}\n"


def test_comms_list_quiet_refuses_an_unknown_client_in_one_line(migrated_db: str) -> None:
    refused = run_lqs("comms", "list", "--client", "no-such-client", "--quiet",
                      env={"LQS_DATABASE_URL": migrated_db})  # fmt: skip

    assert refused.stdout == ""
    assert_one_line_error(refused, "no-such-client")
