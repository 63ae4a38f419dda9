"""``lqs simulate --client SLUG``: the simulator calls a client's API back with signed
delivery events, so that with ``lqs serve`` and ``lqs worker`` messages end delivered or
bounced locally; what cannot be wired is said in one line."""

from __future__ import annotations

import asyncio
import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tests.e2e.conftest import free_port, lqs_env, run_lqs
from tests.pending_events import apply_events

RULES = [
    {"channel": "email", "to": "lead", "template": "lead_acknowledgement"},
    {"channel": "sms", "to": "lead", "template": "lead_qualified_sms"},
]
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@contextmanager
def _process(args: list[str], env: dict[str, str], ready: str) -> Iterator[list[str]]:
    """Run ``lqs ARGS`` until the block ends; yield its output lines (stdout and stderr), up
    to and including the first that contains ``ready`` (waited for up to 60 s)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "lqs", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    stdout = process.stdout
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while not any(ready in line for line in seen):
            assert process.poll() is None, "\n".join(seen)
            try:
                seen.append(lines.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                pytest.fail(f"lqs {args[0]} printed no {ready!r}: {seen}")
        yield seen
    finally:
        process.terminate()
        process.wait(timeout=30)


def _client_id(url: str, slug: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT id FROM public.clients WHERE slug = %s", (slug,)).fetchone()
    assert row is not None
    return str(row[0])


def _create(url: str, tmp_path: Path, slug: str, delivery: dict[str, Any]) -> str:
    """A client with these delivery settings (stored by the CLI), whose every outcome emails
    and texts the lead; returns its API key."""
    assert run_lqs(url, "clients", "create", slug.title(), "--slug", slug).returncode == 0
    path = tmp_path / f"{slug}.yaml"
    path.write_text(yaml.safe_dump(delivery))
    stored = run_lqs(url, "clients", "set-delivery", slug, str(path))
    assert stored.returncode == 0, stored.stderr
    rules = {"qualified": RULES, "nurture": RULES, "disqualified": RULES}
    with psycopg.connect(url) as conn:
        conn.execute(
            "UPDATE public.clients SET settings = settings || %s WHERE slug = %s",
            (Jsonb({"notifications": rules}), slug),
        )
    key = run_lqs(url, "keys", "create", "--client", slug)
    assert key.returncode == 0, key.stderr
    return key.stdout.strip()


def _final(url: str, slug: str, within: float = 30.0) -> dict[tuple[str, str], str]:
    """(channel, recipient) -> status of the client's communications, once none is
    pending or queued (or after ``within`` seconds), applying the events received."""
    deadline = time.monotonic() + within
    while True:
        # The worker ran --once: the events that came back since wait for an applier.
        asyncio.run(apply_events(url))
        with psycopg.connect(url, row_factory=dict_row) as conn:
            rows = conn.execute(
                "SELECT c.type, c.recipient, c.status FROM public.communications c"
                " JOIN public.clients k ON k.id = c.client_id WHERE k.slug = %s",
                (slug,),
            ).fetchall()
        found = {(r["type"], r["recipient"]): r["status"] for r in rows}
        settled = found and all(s in ("delivered", "bounced") for s in found.values())
        if settled or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_simulate_client_sends_delivery_events_back_to_the_api(
    pipeline_db: str, tmp_path: Path
) -> None:
    api_port, sim_port = free_port(), free_port()
    api, sim = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{sim_port}"
    env = lqs_env(pipeline_db, LQS_PUBLIC_BASE_URL=api, LQS_DISPATCH_RETRY_BASE_DELAY="0.2")
    twilio = {"account_sid": "AC" + "1" * 32, "auth_token": "sim-token",
              "from_number": "+12015550100", "base_url": sim}  # fmt: skip
    acme_key = _create(pipeline_db, tmp_path, "acme", {
        "email": {"primary": "resend"},
        "resend": {"api_key": "re_acme_key", "from_address": "leads@acme.example",
                   "base_url": sim, "webhook_secret": SECRET},
        "twilio": twilio,
    })  # fmt: skip
    acme = _client_id(pipeline_db, "acme")
    with psycopg.connect(pipeline_db) as conn:  # Twilio calls each message's StatusCallback
        conn.execute(
            "UPDATE public.clients SET settings = jsonb_set(settings,"
            " '{delivery,twilio,status_callback_url}', to_jsonb(%s::text)) WHERE slug = 'acme'",
            (f"{api}/webhooks/twilio/{acme}",),
        )
    globex_key = _create(pipeline_db, tmp_path, "globex", {
        "email": {"primary": "sendgrid"},
        "sendgrid": {"api_key": "SG.globex.key", "from_address": "leads@globex.example",
                     "base_url": sim},
        "twilio": twilio,
    })  # fmt: skip
    globex = _client_id(pipeline_db, "globex")
    bounces = tmp_path / "simulator.json"
    bounces.write_text(
        json.dumps(
            {"callbacks": {"email": {"rules": [
                {"recipient": "*@bounce.example", "outcome": "bounced"}]}}}
        )
    )  # fmt: skip

    simulate = ["simulate", "--port", str(sim_port), "--config", str(bounces),
                "--client", "acme", "--client", "globex"]  # fmt: skip
    with (
        _process(simulate, env, "Provider simulator on") as said,
        _process(["serve", "--port", str(api_port)], env, "listening on"),
    ):
        for key, local in ((acme_key, "ann"), (acme_key, "bob"), (globex_key, "cat")):
            domain = "bounce.example" if local == "bob" else "corp.example"
            posted = httpx.post(
                f"{api}/v1/leads",
                json={"email": f"{local}@{domain}", "phone": "+14155550101",
                      "consent_status": "granted"},
                headers={"Authorization": f"Bearer {key}"},
            )  # fmt: skip
            assert posted.status_code == 201, posted.text
        worked = subprocess.run(
            [sys.executable, "-m", "lqs", "worker", "--once", "--settle", "2"],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert worked.returncode == 0, worked.stderr
        acme_final, globex_final = _final(pipeline_db, "acme"), _final(pipeline_db, "globex", 3)

    assert f"acme: resend events to {api}/webhooks/resend/{acme}" in said
    assert f"acme: twilio events to {api}/webhooks/twilio/{acme}" in said
    assert f"globex: sendgrid events to {api}/webhooks/sendgrid/{globex}" in said
    assert (
        "warning: globex: twilio: its delivery settings have no twilio.status_callback_url:"
        f" no SMS events (set it to {api}/webhooks/twilio/{globex})"
    ) in said
    assert acme_final == {
        ("email", "ann@corp.example"): "delivered",
        ("email", "bob@bounce.example"): "bounced",
        ("sms", "+14155550101"): "delivered",
    }
    # SendGrid's events are signed with a key made for this simulator, whose public half
    # the client's settings now hold; its SMS has no callback URL, so it stays sent.
    assert globex_final == {
        ("email", "cat@corp.example"): "delivered",
        ("sms", "+14155550101"): "sent",
    }
    with psycopg.connect(pipeline_db) as conn:
        rejected = conn.execute("SELECT count(*) FROM public.webhook_rejects").fetchone()
    assert rejected == (0,)


def test_a_client_without_webhook_secrets_is_served_saying_what_is_missing(
    pipeline_db: str, tmp_path: Path
) -> None:
    sim_port = free_port()
    sim = f"http://127.0.0.1:{sim_port}"
    _create(pipeline_db, tmp_path, "plain", {
        "resend": {"api_key": "re_plain", "from_address": "a@plain.example", "base_url": sim},
        "twilio": {"account_sid": "AC" + "2" * 32, "auth_token": "t",
                   "from_number": "+12015550100"},
    })  # fmt: skip
    env = lqs_env(pipeline_db)

    with _process(["simulate", "--port", str(sim_port), "--client", "plain"], env,
                  "Provider simulator on") as said:  # fmt: skip
        registered = httpx.get(f"{sim}/_sim/webhooks").json()

    assert (
        "warning: plain: resend: its delivery settings have no resend.webhook_secret"
        " (whsec_...): no email events"
    ) in said
    assert "warning: plain: twilio sends to https://api.twilio.com, not to a simulator" in said
    assert not registered.get("webhooks")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--client", "nobody"], "nobody"),
        (["--client", "acme", "--api", "ftp://x"], "--api 'ftp://x'"),
        (["--api", "http://127.0.0.1:8000"], "--api is for --client"),
    ],
)
def test_simulate_refuses_what_it_cannot_wire(
    pipeline_db: str, args: list[str], message: str
) -> None:
    assert run_lqs(pipeline_db, "clients", "create", "Acme", "--slug", "acme").returncode == 0

    result = run_lqs(pipeline_db, "simulate", "--port", "0", *args)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    assert message in line
