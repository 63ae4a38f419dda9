"""``lqs serve`` logs one line per request (method, path, status, ms, request and client
id), never the query string or the API key; ``--no-access-log`` turns it off."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import psycopg
import pytest

from tests.conftest import pooler_env
from tests.integration.test_cli import run_lqs

FIELD = re.compile(r"(\w+)=(\S+)")


@dataclass
class Served:
    base_url: str
    lines: queue.Queue[str] = field(default_factory=queue.Queue)

    def requests_logged(self, count: int, within: float = 10.0) -> list[dict[str, str]]:
        """The next ``count`` access log lines, as their key=value fields."""
        found: list[dict[str, str]] = []
        deadline = time.monotonic() + within
        while len(found) < count:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if " request " in line:
                found.append(dict(FIELD.findall(line)) | {"_line": line})
        return found

    def quiet(self, within: float = 1.0) -> list[str]:
        """Lines printed in the next ``within`` seconds."""
        seen = []
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            try:
                seen.append(self.lines.get(timeout=left))
            except queue.Empty:
                break
        return seen


@contextmanager
def _serving(url: str, *options: str) -> Iterator[Served]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LQS_")}
    env.update({"LQS_DATABASE_URL": url, **pooler_env(url)})
    process = subprocess.Popen(
        [sys.executable, "-m", "lqs", "serve", "--port", "0", *options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    stdout = process.stdout

    def pump() -> None:
        # Read everything it prints, as it prints it: a full pipe would stall the server.
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        first = lines.get(timeout=60)
        assert first.startswith("listening on "), first
        yield Served(first.split()[2], lines)
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def api_key(migrated_db: str) -> tuple[str, str]:
    """A key of a fresh client, and the client's id."""
    env = {"LQS_DATABASE_URL": migrated_db}
    assert run_lqs("clients", "create", "Logged", "--slug", "logged", env=env).returncode == 0
    key = run_lqs("keys", "create", "--client", "logged", env=env).stdout.strip()
    with psycopg.connect(migrated_db) as conn:
        row = conn.execute("SELECT id FROM public.clients WHERE slug = 'logged'").fetchone()
    assert row is not None
    return key, str(row[0])


def test_each_request_is_one_line_without_query_string_or_key(
    migrated_db: str, api_key: tuple[str, str]
) -> None:
    key, client_id = api_key
    with _serving(migrated_db) as served:
        created = httpx.post(
            f"{served.base_url}/v1/leads?utm=secret-in-query",
            json={"email": "ann@logged.example"},
            headers={"Authorization": f"Bearer {key}"},
        )
        refused = httpx.post(
            f"{served.base_url}/v1/leads", json={}, headers={"Authorization": "Bearer lqs_nope"}
        )
        health = httpx.get(f"{served.base_url}/healthz", headers={"X-Request-ID": "probe-7"})

        logged = served.requests_logged(3)

    assert created.status_code == 201, created.text
    first, second, third = logged
    assert {k: first[k] for k in ("method", "path", "status", "client_id")} == {
        "method": "POST", "path": "/v1/leads", "status": "201", "client_id": client_id,
    }  # fmt: skip
    assert float(first["duration_ms"]) > 0
    assert first["request_id"] == created.headers["x-request-id"]
    assert (second["status"], second.get("client_id")) == ("401", None)
    assert second["request_id"] == refused.headers["x-request-id"] != first["request_id"]
    assert (third["path"], third["status"], third["request_id"]) == ("/healthz", "200", "probe-7")
    assert health.headers["x-request-id"] == "probe-7"
    everything = "\n".join(line["_line"] for line in logged)
    assert "secret-in-query" not in everything
    assert key not in everything
    assert key[:12] not in everything
    assert "\x1b[" not in everything  # no colour codes in a pipe


def test_secret_path_parameters_are_logged_as_the_route(migrated_db: str) -> None:
    with _serving(migrated_db) as served:
        httpx.get(f"{served.base_url}/u/eyJsecret.token.value")
        odd = httpx.get(f"{served.base_url}/nothing%0Ahere", headers={"X-Request-ID": "a b"})

        unsubscribe, unknown = served.requests_logged(2)

    assert unsubscribe["path"] == "/u/{token}"
    assert "eyJsecret" not in unsubscribe["_line"]
    assert unknown["path"] == "/nothing%0Ahere"  # as sent: no line break reaches the log
    assert unknown["request_id"] != "a"
    assert odd.headers["x-request-id"] == unknown["request_id"]


def test_no_access_log_turns_it_off(migrated_db: str) -> None:
    with _serving(migrated_db, "--no-access-log") as served:
        answer = httpx.get(f"{served.base_url}/healthz")
        printed = served.quiet(1.0)

    assert answer.status_code == 200
    assert "x-request-id" not in answer.headers
    assert printed == []
