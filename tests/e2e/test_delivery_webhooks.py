"""Delivery webhooks end to end: the simulator calls the real API back, signed, out of order
and repeated, while the worker sends; every communication ends where the provider said."""

from __future__ import annotations

import asyncio
import base64
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from lqs.api.app import create_app
from lqs.api.deps import WebhookConfig
from lqs.domain.delivery import RetryPolicy
from lqs.simulator import SimulatorConfig, SimulatorControl, running_simulator
from lqs.simulator.config import (
    CallbacksConfig,
    EmailOutcomeRule,
    EmailOutcomes,
    SmsOutcomeRule,
    SmsOutcomes,
)
from lqs.worker.dispatcher import DispatcherOptions
from lqs.worker.run import run_worker
from tests.configs import api_config, worker_config
from tests.e2e.conftest import free_port
from tests.pending_events import apply_events

CALLBACKS = CallbacksConfig(
    email=EmailOutcomes(
        rules=[
            EmailOutcomeRule(recipient="*@bounce.example", outcome="bounced"),
            EmailOutcomeRule(recipient="*@complain.example", outcome="complained"),
        ]
    ),
    sms=SmsOutcomes(rules=[SmsOutcomeRule(recipient="+1202555019*", outcome="undelivered")]),
    delay_seconds=0.02,
    jitter_seconds=0.05,
    out_of_order=True,
    duplicates=2,
    retry_backoff_seconds=0.05,
)


@pytest.fixture
def api(pipeline_db: str) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(pipeline_db, api_config(webhook=WebhookConfig(base))),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "the API stopped"
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.02)
    yield base
    server.should_exit = True
    thread.join(timeout=10)


def _sendgrid_keys() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, base64.b64encode(public).decode()


def _client(url: str, api: str, sim: str, email_provider: str) -> tuple[str, dict[str, Any]]:
    client_id = str(uuid.uuid4())
    slug = f"w-{client_id[:8]}"
    resend_key, sendgrid_key = f"re_test_{slug}", f"SG.test.{slug}"
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    pem, public = _sendgrid_keys()
    token = secrets.token_hex(16)
    delivery = {
        "email": {"primary": email_provider},
        "resend": {"api_key": resend_key, "from_address": "lqs@sender.example",
                   "base_url": sim, "webhook_secret": secret},
        "sendgrid": {"api_key": sendgrid_key, "from_address": "lqs@sender.example",
                     "base_url": sim, "webhook_public_key": public},
        "twilio": {"account_sid": "AC" + secrets.token_hex(16), "auth_token": token,
                   "from_number": "+12015550100", "base_url": sim,
                   "status_callback_url": f"{api}/webhooks/twilio/{client_id}"},
    }  # fmt: skip
    settings = {
        "notification_email": f"sales@{slug}.example",
        "notifications": {
            "qualified": [
                {"channel": "email", "to": "lead", "template": "lead_acknowledgement"},
                {"channel": "sms", "to": "lead", "template": "lead_qualified_sms"},
            ]
        },
        "delivery": delivery,
    }
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO public.clients (id, name, slug, settings) VALUES (%s, %s, %s, %s)",
            (client_id, slug, slug, Jsonb(settings)),
        )
    hooks = {
        "resend": {"api_key": resend_key, "secret": secret,
                   "url": f"{api}/webhooks/resend/{client_id}"},
        "sendgrid": {"api_key": sendgrid_key, "private_key": pem,
                     "url": f"{api}/webhooks/sendgrid/{client_id}"},
        "twilio": {"account": delivery["twilio"]["account_sid"], "token": token},
    }  # fmt: skip
    return client_id, hooks


def _leads(url: str, client_id: str, addresses: list[tuple[str, str | None]]) -> None:
    with psycopg.connect(url) as conn:
        for email, phone in addresses:
            conn.execute(
                "INSERT INTO public.leads (client_id, email, phone, job_title, company_size,"
                " company_domain, consent_status, dedupe_key)"
                " VALUES (%s, %s, %s, 'CEO', 500, 'bigco.example', 'granted', %s)",
                (client_id, email, phone, f"email:{email}"),
            )


def _statuses(url: str, client_id: str) -> dict[tuple[str, str], str]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        rows = conn.execute(
            "SELECT type, recipient, status FROM public.communications WHERE client_id = %s",
            (client_id,),
        ).fetchall()
    return {(r["type"], r["recipient"]): r["status"] for r in rows}


@pytest.mark.parametrize("email_provider", ["resend", "sendgrid"])
def test_out_of_order_repeated_callbacks_settle_every_communication_once(
    pipeline_db: str, api: str, email_provider: str
) -> None:
    with running_simulator(SimulatorConfig(seed=11, callbacks=CALLBACKS)) as sim:
        client_id, hooks = _client(pipeline_db, api, sim, email_provider)
        with SimulatorControl(sim) as control:
            hook = hooks[email_provider]
            control.register_webhook(
                email_provider,
                hook["api_key"],
                hook["url"],
                secret=hook.get("secret"),
                private_key=hook.get("private_key"),
            )
            addresses: list[tuple[str, str | None]] = [
                (f"ok{i}@bigco.example", f"+1415555{i:04d}") for i in range(8)
            ]
            addresses += [("gone@bounce.example", "+12025550190"), ("angry@complain.example", None)]
            _leads(pipeline_db, client_id, addresses)
            options = DispatcherOptions(policy=RetryPolicy(0.01, 0.05, 3600))
            config = worker_config(dispatcher=options, settle=2)
            asyncio.run(run_worker(pipeline_db, config, once=True))
            control.wait_for_callbacks(timeout=30)
            callbacks = control.callbacks()
            # The worker ran --once; what came back since waits for an applier.
            asyncio.run(apply_events(pipeline_db))

        assert all(c.status == 200 for c in callbacks), [c for c in callbacks if c.status != 200]
        statuses = _statuses(pipeline_db, client_id)
        for i in range(8):
            assert statuses[("email", f"ok{i}@bigco.example")] == "delivered"
            assert statuses[("sms", f"+1415555{i:04d}")] == "delivered"
        assert statuses[("email", "gone@bounce.example")] == "bounced"
        assert statuses[("sms", "+12025550190")] == "failed"
        # A complaint leaves the message delivered.
        assert statuses[("email", "angry@complain.example")] == "delivered"

        with psycopg.connect(pipeline_db) as conn:
            events = conn.execute(
                "SELECT count(*), count(DISTINCT (provider, event_id)),"
                " count(*) FILTER (WHERE communication_id IS NULL)"
                " FROM public.provider_events WHERE client_id = %s",
                (client_id,),
            ).fetchone()
            suppressed = conn.execute(
                "SELECT recipient, reason FROM public.suppressions WHERE client_id = %s"
                " ORDER BY recipient",
                (client_id,),
            ).fetchall()
            delivered_at = conn.execute(
                "SELECT count(*) FROM public.communications WHERE client_id = %s"
                " AND status = 'delivered' AND (delivered_at IS NULL OR sent_at IS NULL)",
                (client_id,),
            ).fetchone()
        # Every event is stored once although each came three times, and all were matched.
        sent_events = {(c.provider, c.event_id) for c in callbacks}
        assert events == (len(sent_events), len(sent_events), 0)
        assert suppressed == [
            ("angry@complain.example", "complaint"),
            ("gone@bounce.example", "bounce"),
        ]
        assert delivered_at == (0,)
