"""Sending end to end: processor, dispatcher and provider adapters against the simulator.

Every fault here is injected by the simulator (lqs.simulator), which speaks each provider's
wire format; the database is real. The checks compare our rows with what the simulator
recorded: one accepted message per communication, exact retry counts, true final statuses.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from lqs.db.connection import connect
from lqs.domain.delivery import RetryPolicy
from lqs.simulator import Faults, SimulatorConfig, SimulatorControl
from lqs.simulator.config import HookConfig, PushConfig, ResendConfig, SinkConfig, TwilioConfig
from lqs.worker.dispatcher import DispatcherOptions
from lqs.worker.run import run_worker
from tests.configs import worker_config
from tests.e2e.conftest import lqs_env, run_lqs

ROOT = Path(__file__).parents[2]
FAST = RetryPolicy(base_delay=0.01, max_delay=0.05, horizon=3600)


def _delivery(simulator: str, **overrides: Any) -> dict[str, Any]:
    delivery: dict[str, Any] = {
        "email": {"primary": "resend"},
        "resend": {"api_key": "re_test_fake", "from_address": "lqs@sender.example",
                   "base_url": simulator},
        "sendgrid": {"api_key": "SG.fake_key", "from_address": "lqs@sender.example",
                     "base_url": simulator},
        "twilio": {"account_sid": "AC" + "0" * 32, "auth_token": "fake_token",
                   "from_number": "+12015550100", "base_url": simulator},
    }  # fmt: skip
    delivery.update(overrides)
    return delivery


def _client(url: str, delivery: dict[str, Any], **settings: Any) -> str:
    slug = f"s-{uuid.uuid4().hex[:8]}"
    client_settings = {"notification_email": f"sales@{slug}.example", "delivery": delivery}
    client_settings.update(settings)
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "INSERT INTO public.clients (name, slug, settings) VALUES (%s, %s, %s) RETURNING id",
            (slug, slug, Jsonb(client_settings)),
        ).fetchone()
    assert row is not None
    return str(row[0])


def _leads(url: str, client_id: str, n: int, **fields: Any) -> None:
    # LQS's connect: through a transaction pooler it prepares nothing (n inserts would).
    with connect(url, autocommit=False) as conn:
        for i in range(n):
            email = f"lead{i}.{uuid.uuid4().hex[:6]}@bigco.example"
            conn.execute(
                "INSERT INTO public.leads (client_id, email, job_title, company_size,"
                " consent_status, dedupe_key) VALUES (%s, %s, 'CEO', 500, %s, %s)",
                (client_id, email, fields.get("consent", "granted"), f"email:{email}"),
            )


def _rows(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(sql.encode(), params).fetchall()


def _comms(url: str, client_id: str) -> list[dict[str, Any]]:
    return _rows(
        url, "SELECT * FROM public.communications WHERE client_id = %s ORDER BY id", client_id
    )


def _work(url: str, settle: float = 5.0, **options: Any) -> Any:
    opts = DispatcherOptions(policy=options.pop("policy", FAST), **options)
    return asyncio.run(run_worker(url, worker_config(dispatcher=opts, settle=settle), once=True))


def _requests_per_communication(control: SimulatorControl, provider: str) -> dict[str, int]:
    """How many requests carried each communication (alone, or in a batch)."""
    counts: dict[str, int] = {}
    for request in control.requests(provider):
        body = json.loads(request.body or "null")
        emails = body if isinstance(body, list) else [body]
        for email in emails:
            tags = {t["name"]: t["value"] for t in (email or {}).get("tags", [])}
            comm_id = tags.get("communication_id")
            if comm_id:
                counts[comm_id] = counts.get(comm_id, 0) + 1
    return counts


def _accepted_per_communication(control: SimulatorControl, provider: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for message in control.messages(provider):
        comm_id = message.tags.get("communication_id") or message.custom_args.get(
            "communication_id"
        )
        if comm_id:
            counts[comm_id] = counts.get(comm_id, 0) + 1
    return counts


def _attempt_counts(url: str, client_id: str) -> dict[str, int]:
    rows = _rows(
        url,
        "SELECT a.communication_id, count(*) AS n FROM public.delivery_attempts a"
        " JOIN public.communications c ON c.id = a.communication_id WHERE c.client_id = %s"
        " GROUP BY a.communication_id",
        client_id,
    )
    return {str(r["communication_id"]): r["n"] for r in rows}


def test_worker_once_sends_every_pending_communication_through_the_simulator(
    pipeline_db: str, simulator: str, control: SimulatorControl
) -> None:
    rules = [{"channel": "email", "to": "client", "template": "lead_qualified"},
             {"channel": "sms", "to": "client", "template": "lead_qualified_sms"}]  # fmt: skip
    resend_client = _client(pipeline_db, _delivery(simulator),
                            notification_phone="+12015550123",
                            notifications={"qualified": rules, "nurture": rules,
                                           "disqualified": rules})  # fmt: skip
    sendgrid_client = _client(pipeline_db, _delivery(simulator, email={"primary": "sendgrid"}))
    _leads(pipeline_db, resend_client, 3)
    _leads(pipeline_db, sendgrid_client, 2)

    worker = run_lqs(pipeline_db, "worker", "--once")

    assert worker.returncode == 0, worker.stderr
    assert "processed 5 lead(s)" in worker.stdout
    assert "dispatched" in worker.stdout
    resend_comms = _comms(pipeline_db, resend_client)
    sendgrid_comms = _comms(pipeline_db, sendgrid_client)
    assert len(resend_comms) == 6  # an email and an SMS per lead
    assert len(sendgrid_comms) == 2
    for comm in resend_comms + sendgrid_comms:
        assert comm["status"] == "sent", comm
        assert comm["sent_at"] is not None
        assert comm["retry_count"] == 0
        assert comm["external_id"]
        assert comm["external_reference"] is not None
    by_provider = {m.provider_message_id: m for m in control.messages()}
    for comm in resend_comms + sendgrid_comms:
        message = by_provider[comm["external_id"]]
        expected = {"email": {"resend", "sendgrid"}, "sms": {"twilio"}}[comm["type"]]
        assert message.provider in expected
        assert comm["provider"] == message.provider
        assert comm["recipient"] in message.recipients
        if message.provider == "resend":
            # Sent alone (the key is the communication id) or in a batch (the batch's key,
            # stored with its members so that a retry replays it).
            assert message.tags["communication_id"] == str(comm["id"])
            assert message.idempotency_key is not None
            if message.idempotency_key != str(comm["id"]):
                [batch] = _rows(
                    pipeline_db,
                    "SELECT members FROM public.provider_batches WHERE batch_key = %s",
                    message.idempotency_key,
                )
                assert comm["id"] in batch["members"]
            assert message.subject == comm["subject"]
            assert message.html == comm["content"]
        if message.provider == "sendgrid":
            assert message.custom_args["communication_id"] == str(comm["id"])
        if message.provider == "twilio":
            assert message.body == comm["content"]
    assert _rows(pipeline_db, "SELECT count(*) AS n FROM public.delivery_queue")[0]["n"] == 0


@pytest.mark.parametrize("batches", [False, True], ids=["alone", "in-batches-of-2"])
def test_30_percent_server_errors_end_sent_or_failed_with_exact_retry_counts(
    pipeline_db: str, simulator: str, control: SimulatorControl, batches: bool
) -> None:
    control.configure(SimulatorConfig(seed=11, resend=ResendConfig(
        faults=Faults(error_rates={500: 0.3}))))  # fmt: skip
    client_id = _client(pipeline_db, _delivery(simulator))
    _leads(pipeline_db, client_id, 40)

    _work(pipeline_db, batches=batches, batch_size=2 if batches else 100)

    comms = _comms(pipeline_db, client_id)
    assert len(comms) == 40
    attempts = _attempt_counts(pipeline_db, client_id)
    carried = _requests_per_communication(control, "resend")
    accepted = _accepted_per_communication(control, "resend")
    assert {c["status"] for c in comms} <= {"sent", "failed"}
    for comm in comms:
        key = str(comm["id"])
        assert carried[key] >= attempts[key]
        if comm["status"] == "sent":
            assert comm["retry_count"] == attempts[key] - 1
            assert accepted[key] == 1
        else:
            assert (comm["retry_count"], attempts[key]) == (3, 4)
            assert comm["error_message"].startswith("gave up after 4 attempts")
            assert accepted.get(key, 0) == 0
    assert any(c["retry_count"] > 0 for c in comms)


def test_a_failed_batch_is_replayed_verbatim_under_its_key(
    pipeline_db: str, simulator: str, control: SimulatorControl
) -> None:
    control.configure(SimulatorConfig(seed=1, resend=ResendConfig(
        faults=Faults(script=["500", "drop", "hang", "ok"], hang_seconds=1))))  # fmt: skip
    client_id = _client(pipeline_db, _delivery(simulator))
    _leads(pipeline_db, client_id, 5)

    _work(pipeline_db, timeout=0.3)

    comms = _comms(pipeline_db, client_id)
    assert {c["status"] for c in comms} == {"sent"}
    batch_requests = [r for r in control.requests("resend") if r.path == "/emails/batch"]
    assert len({r.headers["idempotency-key"] for r in batch_requests}) == 1
    assert len({r.body for r in batch_requests}) == 1
    assert len(control.messages("resend")) == 5
    accepted = _accepted_per_communication(control, "resend")
    assert all(accepted[str(c["id"])] == 1 for c in comms)
    # Every member counts its own attempts: retries replay the batch for whoever is due.
    attempts = _attempt_counts(pipeline_db, client_id)
    assert all(c["retry_count"] == attempts[str(c["id"])] - 1 for c in comms)


def test_a_bad_address_in_a_batch_fails_alone(
    pipeline_db: str, simulator: str, control: SimulatorControl
) -> None:
    rules = [{"channel": "email", "to": "client", "template": "lead_qualified"},
             {"channel": "email", "to": "lead", "template": "lead_acknowledgement"}]  # fmt: skip
    client_id = _client(pipeline_db, _delivery(simulator),
                        notifications={"qualified": rules, "nurture": rules,
                                       "disqualified": rules})  # fmt: skip
    _leads(pipeline_db, client_id, 3)
    [bad] = _rows(pipeline_db, "SELECT email FROM public.leads WHERE client_id = %s LIMIT 1",
                  client_id)  # fmt: skip
    control.configure(SimulatorConfig(seed=1, resend=ResendConfig(
        invalid_recipients=[bad["email"]])))  # fmt: skip

    _work(pipeline_db)

    comms = _comms(pipeline_db, client_id)
    failed = [c for c in comms if c["status"] == "failed"]
    assert [c["recipient"] for c in failed] == [bad["email"]]
    assert failed[0]["error_message"].startswith("resend batch email ")
    assert {c["status"] for c in comms if c["recipient"] != bad["email"]} == {"sent"}


def test_429_with_retry_after_is_honoured(
    pipeline_db: str, simulator: str, control: SimulatorControl
) -> None:
    control.configure(SimulatorConfig(seed=1, resend=ResendConfig(
        faults=Faults(script=["429", "ok"], retry_after_seconds=1))))  # fmt: skip
    client_id = _client(pipeline_db, _delivery(simulator))
    _leads(pipeline_db, client_id, 1)

    _work(pipeline_db)

    [comm] = _comms(pipeline_db, client_id)
    assert (comm["status"], comm["retry_count"]) == ("sent", 1)
    first, second = sorted(r.received_at for r in control.requests("resend"))
    assert (second - first).total_seconds() >= 1.0
    attempts = _rows(
        pipeline_db,
        "SELECT http_status, outcome FROM public.delivery_attempts WHERE communication_id = %s"
        " ORDER BY attempt",
        comm["id"],
    )
    assert [(a["http_status"], a["outcome"]) for a in attempts] == [
        (429, "transient"), (200, "accepted"),
    ]  # fmt: skip


def test_a_provider_hanging_past_the_timeout_is_retried(
    pipeline_db: str, simulator: str, control: SimulatorControl
) -> None:
    control.configure(SimulatorConfig(seed=1, twilio=TwilioConfig(
        faults=Faults(script=["timeout", "ok"], hang_seconds=3))))  # fmt: skip
    rules = [{"channel": "sms", "to": "client", "template": "lead_qualified_sms"}]
    client_id = _client(pipeline_db, _delivery(simulator), notification_phone="+12015550123",
                        notifications={"qualified": rules, "nurture": rules,
                                       "disqualified": rules})  # fmt: skip
    _leads(pipeline_db, client_id, 1)

    _work(pipeline_db, timeout=0.5)

    [comm] = _comms(pipeline_db, client_id)
    assert (comm["status"], comm["retry_count"]) == ("sent", 1)
    codes = _rows(
        pipeline_db,
        "SELECT error_code FROM public.delivery_attempts WHERE communication_id = %s"
        " ORDER BY attempt",
        comm["id"],
    )
    assert [c["error_code"] for c in codes] == ["timeout", None]


def test_accept_then_timeout_and_drop_never_send_twice_through_resend(
    pipeline_db: str, simulator: str, control: SimulatorControl
) -> None:
    control.configure(SimulatorConfig(seed=3, resend=ResendConfig(faults=Faults(
        hang_after_accept_rate=0.05, drop_after_accept_rate=0.05, hang_seconds=2))))  # fmt: skip
    client_id = _client(pipeline_db, _delivery(simulator))
    _leads(pipeline_db, client_id, 60)

    # One request per message, so that 5% of calls means several faults (batches: below).
    _work(pipeline_db, timeout=0.5, batches=False)

    comms = _comms(pipeline_db, client_id)
    assert {c["status"] for c in comms} == {"sent"}, [
        (c["status"], c["retry_count"], c["error_message"]) for c in comms if c["status"] != "sent"
    ]
    accepted = _accepted_per_communication(control, "resend")
    assert [accepted.get(str(c["id"])) for c in comms] == [1] * 60
    assert len(control.messages("resend")) == 60
    retried = [c for c in comms if c["retry_count"] > 0]
    assert retried, "the seed should inject at least one fault"


def test_invalid_recipient_fails_at_once_with_the_providers_message(
    pipeline_db: str, simulator: str, control: SimulatorControl
) -> None:
    client_id = _client(pipeline_db, _delivery(simulator))
    [settings] = _rows(pipeline_db, "SELECT settings FROM public.clients WHERE id = %s", client_id)
    control.configure(SimulatorConfig(seed=1, resend=ResendConfig(
        invalid_recipients=[settings["settings"]["notification_email"]])))  # fmt: skip
    _leads(pipeline_db, client_id, 1)

    _work(pipeline_db)

    [comm] = _comms(pipeline_db, client_id)
    assert (comm["status"], comm["retry_count"]) == ("failed", 0)
    assert comm["error_message"].startswith("resend 422 ")
    assert len(control.requests("resend")) == 1


def test_twilio_invalid_number_fails_with_its_error_code(
    pipeline_db: str, simulator: str, control: SimulatorControl
) -> None:
    control.configure(SimulatorConfig(seed=1, twilio=TwilioConfig(
        invalid_recipients=["+12015550123"])))  # fmt: skip
    rules = [{"channel": "sms", "to": "client", "template": "lead_qualified_sms"}]
    client_id = _client(pipeline_db, _delivery(simulator), notification_phone="+12015550123",
                        notifications={"qualified": rules, "nurture": rules,
                                       "disqualified": rules})  # fmt: skip
    _leads(pipeline_db, client_id, 1)

    _work(pipeline_db)

    [comm] = _comms(pipeline_db, client_id)
    assert comm["status"] == "failed"
    assert "21211" in comm["error_message"]


def test_worker_killed_after_the_provider_accepted_retries_with_the_same_key(
    pipeline_db: str, simulator: str, control: SimulatorControl
) -> None:
    control.configure(SimulatorConfig(seed=1, resend=ResendConfig(
        faults=Faults(script=["hang"], hang_seconds=3))))  # fmt: skip
    client_id = _client(pipeline_db, _delivery(simulator))
    _leads(pipeline_db, client_id, 1)
    env = lqs_env(pipeline_db, LQS_DISPATCH_LEASE_SECONDS="1", LQS_DISPATCH_TIMEOUT="60")
    worker = subprocess.Popen(
        [sys.executable, "-m", "lqs", "worker"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not control.messages("resend"):
            assert time.monotonic() < deadline, "the worker never reached the provider"
            time.sleep(0.05)
        # Resend accepted the message; the worker is waiting for the answer. Kill it.
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    [comm] = _comms(pipeline_db, client_id)
    assert comm["status"] == "pending"

    # The lease expires after 1 s; Resend finishes the first request after 3 s (until then
    # a retry with its key is answered 409 concurrent_idempotent_requests).
    time.sleep(3.2)
    _work(pipeline_db)

    [comm] = _comms(pipeline_db, client_id)
    assert comm["status"] == "sent"
    assert control.idempotency_counts()[str(comm["id"])] == 1
    assert len(control.messages("resend")) == 1
    attempts = _rows(
        pipeline_db,
        "SELECT attempt FROM public.delivery_attempts WHERE communication_id = %s",
        comm["id"],
    )
    assert [a["attempt"] for a in attempts] == [2]  # attempt 1 died with its worker


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/hooks/tenant",
        "http://10.0.0.1/hooks/tenant",
        "http://169.254.169.254/latest/meta-data",
        "http://[::ffff:127.0.0.1]:{port}/hooks/tenant",
    ],
)
def test_tenant_webhook_urls_on_private_addresses_are_refused_without_connecting(
    pipeline_db: str, simulator: str, control: SimulatorControl, url: str
) -> None:
    port = simulator.rsplit(":", 1)[1]
    target = url.format(port=port)
    rules = [{"channel": "webhook", "to": "client", "template": "lead_qualified"}]
    client_id = _client(
        pipeline_db,
        _delivery(simulator, webhook={"url": target, "secret": "whsec_" + "A" * 32}),
        notifications={"qualified": rules, "nurture": rules, "disqualified": rules},
    )
    control.configure(SimulatorConfig(seed=1, sink=SinkConfig()))
    _leads(pipeline_db, client_id, 1)

    _work(pipeline_db)

    [comm] = _comms(pipeline_db, client_id)
    assert comm["type"] == "webhook"
    assert comm["status"] == "failed"
    assert comm["error_message"].startswith("refusing to connect to ")
    [attempt] = _rows(
        pipeline_db,
        "SELECT error_code, http_status FROM public.delivery_attempts WHERE communication_id = %s",
        comm["id"],
    )
    assert (attempt["error_code"], attempt["http_status"]) == ("ssrf_refused", None)
    assert control.hook_deliveries() == []
    assert control.requests() == []


def test_comms_list_and_retry_redrive_the_dead_letters(
    pipeline_db: str, simulator: str, control: SimulatorControl
) -> None:
    client_id = _client(pipeline_db, _delivery(simulator))
    [settings] = _rows(pipeline_db, "SELECT settings FROM public.clients WHERE id = %s", client_id)
    address = settings["settings"]["notification_email"]
    control.configure(SimulatorConfig(seed=1, resend=ResendConfig(invalid_recipients=[address])))
    _leads(pipeline_db, client_id, 2)
    _work(pipeline_db)

    listed = run_lqs(pipeline_db, "comms", "list", "--status", "failed")
    assert listed.returncode == 0, listed.stderr
    assert "2 communication(s)" in listed.stdout

    control.configure(SimulatorConfig(seed=1))
    slug = _rows(pipeline_db, "SELECT slug FROM public.clients WHERE id = %s", client_id)[0]
    retried = run_lqs(pipeline_db, "comms", "retry", "--client", slug["slug"])
    assert retried.returncode == 0, retried.stderr
    assert "queued 2 communication(s) again" in retried.stdout
    _work(pipeline_db)
    assert {c["status"] for c in _comms(pipeline_db, client_id)} == {"sent"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["comms", "list", "--status", "lost"], "--status must be one of"),
        (["comms", "retry"], "name communication ids"),
        (["comms", "retry", "not-a-uuid"], "must be UUIDs"),
    ],
)
def test_comms_commands_refuse_bad_input(pipeline_db: str, args: list[str], message: str) -> None:
    result = run_lqs(pipeline_db, *args)
    assert result.returncode != 0
    assert message in result.stderr


def test_set_delivery_validates_before_storing(pipeline_db: str, tmp_path: Any) -> None:
    assert run_lqs(pipeline_db, "clients", "create", "Acme", "--slug", "acme").returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps({"resend": {"api_key": "re_x"}}))
    result = run_lqs(pipeline_db, "clients", "set-delivery", "acme", str(bad))
    assert result.returncode == 1
    assert "delivery.resend.from_address" in result.stderr
    [row] = _rows(pipeline_db, "SELECT settings FROM public.clients WHERE slug = 'acme'")
    assert "delivery" not in row["settings"]

    good = tmp_path / "good.yaml"
    good.write_text(json.dumps({"resend": {"api_key": "re_x", "from_address": "a@b.example"}}))
    result = run_lqs(pipeline_db, "clients", "set-delivery", "acme", str(good))
    assert result.returncode == 0, result.stderr
    assert "email" in result.stdout


def _push_keys() -> tuple[str, str, str]:
    """A VAPID private key (PEM), and a browser subscription's p256dh and auth."""
    import base64
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    vapid = ec.generate_private_key(ec.SECP256R1())
    pem = vapid.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    browser = ec.generate_private_key(ec.SECP256R1()).public_key()
    p256dh = b64(
        browser.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    )
    return pem, p256dh, b64(os.urandom(16))


def test_push_reaches_the_clients_subscriptions_and_a_410_marks_one_gone(
    pipeline_db: str, simulator: str, control: SimulatorControl
) -> None:
    pem, p256dh, auth = _push_keys()
    rules = [{"channel": "push", "to": "client", "template": "lead_qualified_push"}]
    client_id = _client(
        pipeline_db,
        _delivery(simulator, webpush={"vapid_private_key": pem,
                                      "vapid_subject": "mailto:ops@lqs.example"}),
        notifications={"qualified": rules, "nurture": rules, "disqualified": rules},
    )  # fmt: skip
    [slug] = _rows(pipeline_db, "SELECT slug FROM public.clients WHERE id = %s", client_id)
    endpoints = [f"{simulator}/push/browser-{n}" for n in (1, 2)]
    for endpoint in endpoints:
        added = run_lqs(pipeline_db, "push", "add", "--client", slug["slug"],
                        "--endpoint", endpoint, "--p256dh", p256dh, "--auth", auth)  # fmt: skip
        assert added.returncode == 0, added.stderr
    control.configure(SimulatorConfig(seed=1, push=PushConfig(gone_subscriptions=["browser-2"])))
    _leads(pipeline_db, client_id, 1)

    _work(pipeline_db, allow_private_webhooks=True)

    comms = {c["recipient"]: c for c in _comms(pipeline_db, client_id)}
    subscriptions = {
        s["endpoint"]: s
        for s in _rows(pipeline_db, "SELECT * FROM public.push_subscriptions WHERE client_id = %s",
                       client_id)
    }  # fmt: skip
    first, second = (subscriptions[e] for e in endpoints)
    assert comms[str(first["id"])]["status"] == "sent"
    assert comms[str(first["id"])]["subject"].startswith("New ")
    assert comms[str(second["id"])]["status"] == "failed"
    assert first["gone_at"] is None
    assert second["gone_at"] is not None
    [pushed] = control.messages("push")
    assert pushed.recipients == [endpoints[0]] or endpoints[0].endswith(pushed.recipients[0])

    # The next lead's push goes to the live subscription only.
    _leads(pipeline_db, client_id, 1)
    _work(pipeline_db, allow_private_webhooks=True)
    assert len(_comms(pipeline_db, client_id)) == 3


def test_the_documented_delivery_example_sends_on_every_channel(
    pipeline_db: str, simulator: str, control: SimulatorControl, tmp_path: Any
) -> None:
    # The README's file, with only the simulator's address changed.
    shipped = (ROOT / "docs" / "examples" / "delivery.yaml").read_text(encoding="utf-8")
    assert "http://127.0.0.1:8025" in shipped
    example = tmp_path / "delivery.yaml"
    example.write_text(shipped.replace("http://127.0.0.1:8025", simulator))
    assert run_lqs(pipeline_db, "clients", "create", "Acme", "--slug", "acme").returncode == 0
    stored = run_lqs(pipeline_db, "clients", "set-delivery", "acme", str(example))
    assert stored.returncode == 0, stored.stderr
    rules = [{"channel": "email", "to": "client", "template": "lead_qualified"},
             {"channel": "sms", "to": "client", "template": "lead_qualified_sms"},
             {"channel": "push", "to": "client", "template": "lead_qualified_push"},
             {"channel": "webhook", "to": "client", "template": "lead_qualified"}]  # fmt: skip
    with psycopg.connect(pipeline_db) as conn:
        conn.execute(
            "UPDATE public.clients SET settings = settings || %s WHERE slug = 'acme'",
            (Jsonb({"notification_email": "sales@acme.example",
                    "notification_phone": "+12015550123",
                    "notifications": {"qualified": rules, "nurture": rules,
                                      "disqualified": rules}}),),
        )  # fmt: skip
    _, p256dh, auth = _push_keys()
    added = run_lqs(pipeline_db, "push", "add", "--client", "acme", "--endpoint",
                    f"{simulator}/push/browser-1", "--p256dh", p256dh, "--auth", auth)  # fmt: skip
    assert added.returncode == 0, added.stderr
    secret = yaml.safe_load(shipped)["webhook"]["secret"]
    hooks = {"acme": HookConfig(secret=secret)}
    control.configure(SimulatorConfig(seed=1, sink=SinkConfig(hooks=hooks)))
    [client] = _rows(pipeline_db, "SELECT id FROM public.clients WHERE slug = 'acme'")
    _leads(pipeline_db, str(client["id"]), 1)

    _work(pipeline_db, allow_private_webhooks=True)

    comms = _comms(pipeline_db, str(client["id"]))
    assert sorted((c["type"], c["provider"], c["status"]) for c in comms) == [
        ("email", "resend", "sent"), ("push", "webpush", "sent"),
        ("sms", "twilio", "sent"), ("webhook", "webhook", "delivered"),
    ]  # fmt: skip
    [hook] = control.hook_deliveries()
    assert (hook.name, hook.signature_valid) == ("acme", True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--endpoint", "ftp://x"], "--endpoint must be an http(s) URL"),
        (["--p256dh", "abc"], "--p256dh must be a 65-byte"),
        (["--auth", "abc"], "--auth must be a 16-byte secret"),
    ],
)
def test_push_add_refuses_bad_subscriptions(
    pipeline_db: str, args: list[str], message: str
) -> None:
    _, p256dh, auth = _push_keys()
    assert run_lqs(pipeline_db, "clients", "create", "Acme", "--slug", "acme").returncode == 0
    base = {"--endpoint": "https://push.example/x", "--p256dh": p256dh, "--auth": auth}
    base[args[0]] = args[1]
    flat = [part for pair in base.items() for part in pair]
    result = run_lqs(pipeline_db, "push", "add", "--client", "acme", *flat)
    assert result.returncode == 1
    assert message in result.stderr
