"""``lqs leads reprocess`` then ``lqs worker --once``: the leads are qualified again and the
simulator receives nothing it had received already."""

from __future__ import annotations

from lqs.simulator import SimulatorControl
from tests.e2e.conftest import run_lqs
from tests.e2e.test_sending import _client, _comms, _delivery, _leads, _rows


def test_reprocessed_leads_send_nothing_twice(
    pipeline_db: str, simulator: str, control: SimulatorControl
) -> None:
    rules = [{"channel": "email", "to": "client", "template": "lead_qualified"},
             {"channel": "sms", "to": "client", "template": "lead_qualified_sms"},
             {"channel": "email", "to": "lead", "template": "lead_acknowledgement"}]  # fmt: skip
    client_id = _client(pipeline_db, _delivery(simulator), notification_phone="+12015550123",
                        notifications={"qualified": rules})  # fmt: skip
    [slug] = [r["slug"] for r in _rows(pipeline_db, "SELECT slug FROM public.clients")]
    _leads(pipeline_db, client_id, 3)
    first = run_lqs(pipeline_db, "worker", "--once")
    assert first.returncode == 0, first.stderr
    sent = _comms(pipeline_db, client_id)
    assert len(sent) == 9
    assert {c["status"] for c in sent} == {"sent"}
    received = sorted(m.provider_message_id for m in control.messages())
    assert len(received) == 9
    emails = [r["email"] for r in _rows(pipeline_db, "SELECT email FROM public.leads")]

    reprocessed = run_lqs(pipeline_db, "leads", "reprocess", *emails, "--client", slug)
    again = run_lqs(pipeline_db, "worker", "--once")

    assert reprocessed.returncode == 0, reprocessed.stderr
    assert "queued 3 lead(s) again" in reprocessed.stdout
    assert again.returncode == 0, again.stderr
    assert "processed 3 lead(s)" in again.stdout
    assert sorted(m.provider_message_id for m in control.messages()) == received
    after = _comms(pipeline_db, client_id)
    assert [(c["id"], c["status"]) for c in after] == [(c["id"], "sent") for c in sent]
    statuses = {r["status"] for r in _rows(pipeline_db, "SELECT status FROM public.leads")}
    assert statuses == {"qualified"}
