"""``--json`` on every listing: one JSON object per line, through the real entry point."""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.test_sending import _push_keys
from tests.integration.test_cli import run_lqs


def _lines(url: str, *args: str) -> list[dict[str, Any]]:
    result = run_lqs(*args, "--json", env={"LQS_DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_every_listing_prints_one_json_object_per_line(migrated_db: str) -> None:
    env = {"LQS_DATABASE_URL": migrated_db}
    for command in (
        ["clients", "create", "Json Co", "--slug", "json-co",
         "--notification-email", "ops@json.example"],
        ["keys", "create", "--client", "json-co"],
        ["suppressions", "add", "gone@json.example", "--client", "json-co", "--note", "asked"],
    ):  # fmt: skip
        assert run_lqs(*command, env=env).returncode == 0
    _, p256dh, auth = _push_keys()
    added = run_lqs("push", "add", "--client", "json-co", "--endpoint",
                    "https://push.example/browser-1", "--p256dh", p256dh, "--auth", auth,
                    "--label", "desk", env=env)  # fmt: skip
    assert added.returncode == 0, added.stderr

    [client] = [c for c in _lines(migrated_db, "clients", "list") if c["slug"] == "json-co"]
    assert client["name"] == "Json Co"
    assert client["notification_email"] == "ops@json.example"
    assert set(client) == {"slug", "name", "id", "notification_email"}  # never the settings

    [key] = _lines(migrated_db, "keys", "list", "--client", "json-co")
    assert key["prefix"].startswith("lqs_")
    assert key["revoked_at"] is None
    assert "hash" not in json.dumps(key)

    [subscription] = _lines(migrated_db, "push", "list", "--client", "json-co")
    assert subscription["endpoint"] == "https://push.example/browser-1"
    assert subscription["label"] == "desk"
    assert p256dh not in json.dumps(subscription)
    assert auth not in json.dumps(subscription)

    [suppressed] = _lines(migrated_db, "suppressions", "list", "--client", "json-co")
    assert suppressed["recipient"] == "gone@json.example"
    assert suppressed["channel"] == "email"

    assert _lines(migrated_db, "comms", "list", "--client", "json-co") == []
