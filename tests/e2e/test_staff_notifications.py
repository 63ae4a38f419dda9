"""Telling a client's staff of a qualified lead, on each channel, as an operator sets it up:
``lqs clients create``, ``set-delivery`` with the documented example, ``configure``,
``push add``, ``clients notify``, a CSV import, then ``lqs worker --once``; the simulator
must have received the message, with the right content, at the right address.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import http_ece  # type: ignore[import-untyped]
import psycopg
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from psycopg.rows import dict_row

from lqs.simulator import SimulatorConfig, SimulatorControl
from lqs.simulator.config import HookConfig, SinkConfig
from tests.e2e.conftest import run_lqs

ROOT = Path(__file__).parents[2]
STAFF_PHONE = "+12015550123"
LEAD = {
    "email": "ada.lovelace@analytical.example", "first_name": "Ada", "last_name": "Lovelace",
    "job_title": "CEO", "company_name": "Analytical Engines", "company_size": "500",
    "consent_status": "granted",
}  # fmt: skip


def _ok(url: str, *args: str) -> str:
    result = run_lqs(url, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def acme(pipeline_db: str, simulator: str, tmp_path: Path) -> str:
    """Client ``acme``: the documented delivery example pointed at the test's simulator, a
    notification email and phone, and one queued qualified lead (imported from a CSV)."""
    shipped = (ROOT / "docs" / "examples" / "delivery.yaml").read_text(encoding="utf-8")
    delivery = tmp_path / "delivery.yaml"
    delivery.write_text(shipped.replace("http://127.0.0.1:8025", simulator))
    _ok(pipeline_db, "clients", "create", "Acme", "--slug", "acme",
        "--notification-email", "sales@acme.example")  # fmt: skip
    _ok(pipeline_db, "clients", "set-delivery", "acme", str(delivery))
    _ok(pipeline_db, "clients", "configure", "acme", "--notification-phone", STAFF_PHONE)
    leads = tmp_path / "leads.csv"
    leads.write_text(",".join(LEAD) + "\n" + ",".join(LEAD.values()) + "\n")
    _ok(pipeline_db, "leads", "import", str(leads), "--client", "acme")
    return "acme"


def _work(url: str) -> None:
    result = run_lqs(url, "worker", "--once", LQS_ALLOW_PRIVATE_WEBHOOKS="true")
    assert result.returncode == 0, result.stderr
    assert "processed 1 lead(s)" in result.stdout


def _staff_messages(url: str, channel: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT c.* FROM public.communications c JOIN public.leads l ON l.id = c.lead_id"
            " WHERE l.email = %s AND c.type = %s ORDER BY c.recipient",
            (LEAD["email"], channel),
        ).fetchall()


def test_a_qualified_lead_texts_the_staffs_phone(
    pipeline_db: str, acme: str, control: SimulatorControl
) -> None:
    _ok(pipeline_db, "clients", "notify", acme, "--on", "qualified", "--via", "email,sms")

    _work(pipeline_db)

    [sms] = _staff_messages(pipeline_db, "sms")
    assert (sms["recipient"], sms["status"], sms["provider"]) == (STAFF_PHONE, "sent", "twilio")
    [texted] = control.messages("twilio")
    assert texted.recipients == [STAFF_PHONE]
    assert texted.sender == "+12015550100"  # the example's from_number
    assert texted.body == sms["content"]
    assert texted.body is not None
    assert texted.body.startswith("Qualified lead: Ada Lovelace, Analytical Engines (")
    assert texted.body.endswith(f"). {LEAD['email']}")
    assert len(texted.body) <= 160
    [emailed] = control.messages("resend")  # the staff's email still goes too
    assert emailed.recipients == ["sales@acme.example"]


@dataclass(frozen=True)
class Browser:
    """A staff browser's push subscription: only it can read what is pushed to it."""

    key: ec.EllipticCurvePrivateKey
    auth: bytes

    @classmethod
    def new(cls) -> Browser:
        return cls(ec.generate_private_key(ec.SECP256R1()), os.urandom(16))

    def keys(self) -> tuple[str, str]:
        point = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return _b64url(point), _b64url(self.auth)

    def read(self, body: bytes) -> Any:
        plain = http_ece.decrypt(body, private_key=self.key, auth_secret=self.auth,
                                 version="aes128gcm")  # fmt: skip
        return json.loads(plain)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_qualified_lead_is_pushed_to_every_live_subscription(
    pipeline_db: str, simulator: str, acme: str, control: SimulatorControl
) -> None:
    browsers = {f"browser-{n}": Browser.new() for n in (1, 2, 3)}
    ids = {}
    for name, browser in browsers.items():
        p256dh, auth = browser.keys()
        added = _ok(pipeline_db, "push", "add", "--client", acme, "--endpoint",
                    f"{simulator}/push/{name}", "--p256dh", p256dh, "--auth", auth)  # fmt: skip
        ids[name] = added.split()[2]
    _ok(pipeline_db, "push", "remove", ids["browser-3"])  # not live any more
    _ok(pipeline_db, "clients", "notify", acme, "--on", "qualified", "--via", "push")

    _work(pipeline_db)

    pushes = _staff_messages(pipeline_db, "push")
    assert sorted(p["recipient"] for p in pushes) == sorted([ids["browser-1"], ids["browser-2"]])
    assert {p["status"] for p in pushes} == {"sent"}
    received = control.requests("push")
    assert sorted(r.path for r in received) == ["/push/browser-1", "/push/browser-2"]
    for request in received:
        browser = browsers[request.path.rsplit("/", 1)[1]]
        shown = browser.read(base64.b64decode(request.body_base64))
        [pushed] = [p for p in pushes if str(p["id"]) == shown["communication_id"]]
        assert shown["title"] == pushed["subject"]
        assert shown["title"].startswith("New qualified lead (")
        assert shown["body"] == pushed["content"]
        assert shown["body"].startswith("Ada Lovelace, Analytical Engines (grade ")


def test_a_qualified_lead_posts_a_signed_webhook_that_counts_as_delivered(
    pipeline_db: str, acme: str, control: SimulatorControl
) -> None:
    secret = yaml.safe_load((ROOT / "docs" / "examples" / "delivery.yaml").read_text())
    hooks = {"acme": HookConfig(secret=secret["webhook"]["secret"])}
    control.configure(SimulatorConfig(seed=1, sink=SinkConfig(hooks=hooks)))
    _ok(pipeline_db, "clients", "notify", acme, "--on", "qualified", "--via", "webhook")

    _work(pipeline_db)

    [hooked] = _staff_messages(pipeline_db, "webhook")
    assert hooked["recipient"].endswith("/hooks/acme")
    assert hooked["status"] == "delivered"
    assert hooked["delivered_at"] == hooked["sent_at"] is not None
    [delivery] = control.hook_deliveries("acme")
    assert (delivery.signature_valid, delivery.signature_error) == (True, None)
    assert delivery.headers["webhook-id"] == str(hooked["id"])
    assert delivery.body is not None
    event = json.loads(delivery.body)
    assert event["type"] == "communication"
    assert event["data"]["communication_id"] == str(hooked["id"])
    assert event["data"]["subject"].startswith("Qualified lead: Ada Lovelace, Analytical Engines")
    lead = json.loads(event["data"]["content"])
    assert lead["outcome"] == "qualified"
    assert lead["grade"] in ("A", "B")
    assert lead["client"] == {"name": "Acme", "slug": "acme"}
    assert {k: lead["lead"][k] for k in LEAD if k != "company_size"} == {
        k: v for k, v in LEAD.items() if k != "company_size"
    }
    assert lead["lead"]["company_size"] == 500
    assert lead["breakdown"]


def test_a_channel_turned_off_sends_nothing_more(
    pipeline_db: str, acme: str, control: SimulatorControl
) -> None:
    _ok(pipeline_db, "clients", "notify", acme, "--on", "qualified", "--via", "sms,webhook")
    _ok(pipeline_db, "clients", "notify", acme, "--on", "qualified", "--off")

    _work(pipeline_db)

    assert _staff_messages(pipeline_db, "sms") == []
    assert _staff_messages(pipeline_db, "webhook") == []
    assert control.messages() == []
    assert control.hook_deliveries() == []
