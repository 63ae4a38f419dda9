"""``lqs clients set-send-rules``: quiet hours and frequency caps stored, or every problem
listed and nothing stored."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.test_delivery_cli import lqs


@pytest.fixture
def slug(migrated_db: str) -> str:
    name = f"sr-{uuid.uuid4().hex[:10]}"
    with psycopg.connect(migrated_db) as conn:
        conn.execute(
            "INSERT INTO public.clients (name, slug, settings) VALUES (%s, %s, %s)",
            (name, name, '{"time_zone": "Europe/Berlin"}'),
        )
    return name


def _settings(url: str, slug: str) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT settings FROM public.clients WHERE slug = %s", (slug,))
        return row.fetchone()[0]  # type: ignore[index]


def test_send_rules_are_stored_beside_the_other_settings(
    migrated_db: str, slug: str, tmp_path: Path
) -> None:
    spec = tmp_path / "rules.yaml"
    spec.write_text(
        "send_window:\n  sms: {start: '08:00', end: '21:00'}\n  email: null\n"
        "frequency_cap:\n  sms: {max: 3, action: defer}\n"
    )

    result = lqs(migrated_db, "clients", "set-send-rules", slug, str(spec))

    assert result.exit_code == 0, result.output
    assert "windows: sms 08:00-21:00; caps: sms 3 per 24 h (defer)" in result.stdout
    assert _settings(migrated_db, slug) == {
        "time_zone": "Europe/Berlin",
        "send_window": {"sms": {"start": "08:00", "end": "21:00"}, "email": None},
        "frequency_cap": {"sms": {"max": 3, "action": "defer"}},
    }


def test_bad_send_rules_list_every_problem_and_store_nothing(
    migrated_db: str, slug: str, tmp_path: Path
) -> None:
    spec = tmp_path / "rules.yaml"
    spec.write_text(
        "send_window:\n  sms: {start: '8am', end: '21:00'}\n  push: {start: '22:00', end: '22:00'}\n"
        "frequency_cap:\n  fax: {max: 3}\n"
        "quiet_hours: {}\n"
    )

    result = lqs(migrated_db, "clients", "set-send-rules", slug, str(spec))

    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [
        "quiet_hours: unknown key; expected one of send_window, frequency_cap",
        "send_window.sms.start: '8am' is not a time of day: use HH:MM, 00:00 to 23:59",
        "send_window.push: start and end must differ (omit the window to send at any time)",
        "frequency_cap: unknown channel 'fax': the channels are email, push, sms, webhook",
        f"error: {spec}: 4 problem(s) listed above; nothing was stored",
    ]
    assert _settings(migrated_db, slug) == {"time_zone": "Europe/Berlin"}
