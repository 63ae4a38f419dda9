"""How a command reaches the database (``lqs.cli._common``): one transaction on the configured
database, and for a client's commands, the client its slug names, found in that transaction."""

from __future__ import annotations

import os
import uuid

import psycopg
import pytest

from lqs.cli._common import for_client, in_transaction
from lqs.db.clients import Client, ClientNotFound, create_client, update_client_settings
from tests.conftest import pooler_env


@pytest.fixture
def configured(migrated_db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``migrated_db`` as the commands' LQS_DATABASE_URL, and no other LQS_* setting."""
    pooler = pooler_env(migrated_db)  # read before the LQS_* variables go
    for name in [n for n in os.environ if n.startswith("LQS_")]:
        monkeypatch.delenv(name)
    for name, value in {"LQS_DATABASE_URL": migrated_db, **pooler}.items():
        monkeypatch.setenv(name, value)
    return migrated_db


def _new_client() -> Client:
    slug = f"cli-{uuid.uuid4().hex[:12]}"
    return in_transaction(lambda conn: create_client(conn, "Acme", slug, {}))


def test_the_work_gets_the_client_its_slug_names(configured: str) -> None:
    created = _new_client()

    async def work(conn: psycopg.AsyncConnection, client: Client) -> Client:
        return client

    assert for_client(created.slug, work) == created


def test_an_unknown_slug_runs_no_work_and_names_how_to_find_one(configured: str) -> None:
    ran: list[Client] = []

    async def work(conn: psycopg.AsyncConnection, client: Client) -> None:
        ran.append(client)

    with pytest.raises(ClientNotFound, match="lqs clients list"):
        for_client("no-such-client", work)
    assert ran == []


def test_work_that_fails_leaves_nothing_behind(configured: str) -> None:
    created = _new_client()

    async def work(conn: psycopg.AsyncConnection, client: Client) -> None:
        await update_client_settings(conn, client.id, {"time_zone": "Europe/Paris"})
        raise RuntimeError("after the update, in the same transaction")

    with pytest.raises(RuntimeError):
        for_client(created.slug, work)

    after = for_client(created.slug, lambda conn, client: _settings(client))
    assert "time_zone" not in after


async def _settings(client: Client) -> dict[str, object]:
    return dict(client.settings)
