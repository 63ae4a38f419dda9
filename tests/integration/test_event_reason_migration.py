"""Migration 0010 on a database that already holds provider events: each event's reason is
read from its payload once, in SQL, exactly as the application read it at apply time until
then, and ``provider_events.message_id`` becomes ``external_id``."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from lqs.db.connection import connect
from lqs.db.migrate import load_migrations, migrate


def _reason_as_read_before_0010(payload: Any) -> str | None:
    """What ``db/events.py:_reason`` returned for a stored payload (deleted with 0010)."""
    if not isinstance(payload, dict):
        return None
    data = payload.get("data")
    if isinstance(data, dict):
        for key in ("bounce", "failed"):
            inner = data.get(key)
            if isinstance(inner, dict):
                text = inner.get("message") or inner.get("reason")
                if isinstance(text, str):
                    return text
    for key in ("reason", "ErrorCode"):
        value = payload.get(key)
        if isinstance(value, str | int):
            return str(value)
    return None


PAYLOADS: list[Any] = [
    # Resend
    {"type": "email.bounced", "data": {"email_id": "e1", "bounce": {"type": "Permanent",
     "message": "550 5.1.1 mailbox unknown", "subType": "General"}}},
    {"type": "email.failed", "data": {"email_id": "e2", "failed": {"reason": "quota reached"}}},
    {"type": "email.bounced", "data": {"bounce": {"message": "", "reason": "empty message"}}},
    {"type": "email.bounced", "data": {"bounce": {"message": 7}, "failed": {"reason": "next"}}},
    {"type": "email.bounced", "data": {"bounce": {"message": None, "reason": 3}}},
    {"type": "email.delivered", "data": {"email_id": "e3"}},
    {"type": "email.bounced", "data": ["not", "an", "object"], "reason": "top level"},
    {"type": "email.bounced", "data": {"bounce": "a string"}},
    # SendGrid
    {"event": "bounce", "reason": "550 no such user", "status": "5.1.1"},
    {"event": "dropped", "reason": "Bounced Address"},
    {"event": "deferred", "response": "try later"},
    {"event": "delivered"},
    # Twilio
    {"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "30003"},
    {"MessageSid": "SM2", "MessageStatus": "failed", "ErrorCode": 30005},
    {"MessageSid": "SM3", "MessageStatus": "delivered"},
    # Odd values the old reader took as they came
    {"reason": 12},
    {"reason": 1.5, "ErrorCode": "after a float"},
    {"reason": True},
    {"reason": ["a list"]},
    {"reason": "x" * 2500},
    [],
    "a string payload",
]  # fmt: skip


def _insert_events(conn: psycopg.Connection) -> None:
    row = conn.execute(
        "INSERT INTO public.clients (name, slug) VALUES ('Acme', 'acme') RETURNING id"
    ).fetchone()
    assert row is not None
    for index, payload in enumerate(PAYLOADS):
        conn.execute(
            "INSERT INTO public.provider_events (client_id, provider, event_id, message_id,"
            " event_type, kind, payload) VALUES (%s, 'resend', %s, %s, 'raw', 'other', %s)",
            (row[0], f"event-{index}", f"message-{index}", Jsonb(payload)),
        )


def test_reasons_are_backfilled_as_they_were_read_and_message_id_is_external_id(
    empty_db: str,
) -> None:
    before_0010 = [m for m in load_migrations() if m.version < 10]
    with connect(empty_db) as conn:
        migrate(conn, before_0010)
        _insert_events(conn)

        applied = migrate(conn)

        rows = conn.execute(
            "SELECT event_id, external_id, reason FROM public.provider_events"
        ).fetchall()
        columns = {
            name
            for (name,) in conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = 'public' AND table_name = 'provider_events'"
            ).fetchall()
        }
    assert [m.version for m in applied][:1] == [10]
    found = {event_id: (external_id, reason) for event_id, external_id, reason in rows}
    expected = {
        f"event-{i}": (f"message-{i}", (r[:2000] if (r := _reason_as_read_before_0010(p)) else r))
        for i, p in enumerate(PAYLOADS)
    }
    assert found == expected
    assert "external_id" in columns
    assert "message_id" not in columns
