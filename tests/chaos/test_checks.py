"""The harness's own judges, on made-up evidence: the message audit and the orchestrator."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.chaos.checks import Communication, audit_callbacks, audit_messages
from tests.chaos.fleet import Fleet
from tests.chaos.postgres import free_port

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CLIENT = "11111111-1111-1111-1111-111111111111"


def _comm(cid: str, provider: str, status: str, **extra: Any) -> Communication:
    fields: dict[str, Any] = {
        "id": cid,
        "client_id": CLIENT,
        "type": "sms" if provider == "twilio" else "email",
        "provider": provider,
        "recipient": extra.pop("recipient", f"{cid}@x.example"),
        "content": extra.pop("content", f"body {cid}"),
        "status": status,
        "external_id": extra.pop("external_id", None),
        "created_at": T0,
    }
    return Communication(**fields)


def _msg(provider: str, seconds: float = 1, **fields: Any) -> dict[str, Any]:
    return {
        "provider": provider,
        "provider_message_id": fields.pop("sid", "m"),
        "received_at": (T0 + timedelta(seconds=seconds)).isoformat(),
        **fields,
    }


def test_messages_are_traced_to_their_communications_and_duplicates_counted() -> None:
    comms = [
        _comm("r1", "resend", "delivered"),
        _comm("r2", "resend", "sent"),
        _comm("s1", "sendgrid", "delivered"),
        _comm("t1", "twilio", "delivered", external_id="SM1", recipient="+1650", content="hi"),
        _comm("t2", "twilio", "failed", recipient="+1651", content="yo"),
    ]
    callback = f"http://api/webhooks/twilio/{CLIENT}"
    messages = [
        _msg("resend", tags={"communication_id": "r1"}, idempotency_key="batch-x"),
        _msg("resend", tags={"communication_id": "r1"}, idempotency_key="r1"),
        _msg("sendgrid", custom_args={"communication_id": "s1"}),
        _msg("sendgrid", custom_args={"communication_id": "s1"}),
        _msg("sendgrid", custom_args={"communication_id": "s1"}),
        _msg("twilio", sid="SM1", recipients=["+1650"], body="hi"),
        # The answer was lost: matched by client, recipient and body, not by sid.
        _msg("twilio", sid="SM9", recipients=["+1650"], body="hi",
             details={"status_callback": callback}),
        _msg("twilio", sid="SM8", recipients=["+1651"], body="yo",
             details={"status_callback": callback}),
        _msg("sendgrid", custom_args={"communication_id": "nobody"}),
        _msg("sendgrid", seconds=-1, custom_args={"communication_id": "s1"}),
    ]  # fmt: skip
    audit = audit_messages(messages, comms)
    assert audit.accepted == {"resend": 2, "sendgrid": 5, "twilio": 3}
    assert audit.more_than_once("resend") == ["r1"]
    assert audit.duplicates("sendgrid") == 3
    assert audit.duplicates("twilio") == 1
    assert len(audit.orphans) == 2  # no such communication; accepted before it existed
    assert audit.sent_but_never_accepted == ["resend r2 (sent)"]
    assert audit.accepted_but_not_sent == {"failed": 1}


def test_a_webhook_event_is_given_up_only_when_no_attempt_was_accepted() -> None:
    attempts = [
        {"event_id": "e1", "duplicate": 0, "status": 500},
        {"event_id": "e1", "duplicate": 0, "status": 204},
        {"event_id": "e2", "duplicate": 0, "status": None},
        {"event_id": "e2", "duplicate": 1, "status": 200},
    ]
    audit = audit_callbacks(attempts, pending=0)
    assert (audit.events, audit.refused_attempts, audit.given_up) == (3, 2, 1)


def test_the_orchestrator_counts_self_exits_and_hung_workers(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there: no database activity at all
    fleet = Fleet(
        tmp_path,
        {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)},
        lambda name: f"postgresql://nobody@127.0.0.1:{closed}/none?application_name={name}",
    )
    try:
        # A worker that exits by itself (here: refused options, exit code 2).
        fleet.start("worker", 1, "worker", "--batch-size", "0")
        # Something alive that makes no progress at all: a worker slot running a simulator.
        fleet.start("worker", 2, "simulate", "--port", str(free_port()))
        deadline = time.monotonic() + 60
        while not (fleet.tally.self_exits and fleet.tally.hung) and time.monotonic() < deadline:
            fleet.observe({})
            fleet.supervise(hang_after=3.0)
            time.sleep(0.5)
        tally = fleet.tally
        assert tally.self_exits[0].startswith("worker-1.1 exited by itself with 2"), tally
        assert tally.hung[0].startswith("worker-2.1: alive, no progress"), tally
        assert tally.restarts_by_hand == 1
        assert tally.orchestrator_restarts >= 1
        assert fleet.current["worker", 2].name == "worker-2.2"
    finally:
        fleet.stop()
