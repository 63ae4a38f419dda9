"""``GET|POST /u/{token}`` in process, on a real database: one-click unsubscribe (RFC 8058)
and the append-only consent history it writes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from psycopg.rows import dict_row

from lqs.api.app import create_app
from lqs.db import consent
from lqs.db.clients import create_client
from lqs.db.consent import UnsubscribeOutcome
from lqs.db.pool import open_pool
from lqs.domain.unsubscribe import UnsubscribeLinks
from tests.configs import api_config

LINKS = UnsubscribeLinks(
    "fake-unsubscribe-secret-for-api-tests-000001", "https://lqs.example", timedelta(days=60)
)
ONE_CLICK = {"content": b"List-Unsubscribe=One-Click",
             "headers": {"content-type": "application/x-www-form-urlencoded"}}  # fmt: skip


async def _serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


@pytest.fixture(scope="module")
async def api(migrated_db: str) -> AsyncIterator[httpx.AsyncClient]:
    async for http in _serve(
        create_app(migrated_db, api_config(pool_max_size=2, unsubscribe_links=LINKS))
    ):
        yield http


@pytest.fixture(scope="module")
async def unconfigured_api(migrated_db: str) -> AsyncIterator[httpx.AsyncClient]:
    async for http in _serve(create_app(migrated_db, api_config(pool_max_size=2))):
        yield http


@dataclass(frozen=True)
class Recipient:
    """A client's lead with an email that was sent to them, and the link in it."""

    client_id: UUID
    lead_id: UUID
    comm_id: UUID
    email: str

    def token(self, *, created_at: datetime | None = None, links: UnsubscribeLinks = LINKS) -> str:
        return links.token(
            client_id=self.client_id,
            lead_id=self.lead_id,
            communication_id=self.comm_id,
            channel="email",
            recipient=self.email,
            created_at=created_at or datetime.now(UTC),
        )


@pytest.fixture
async def recipient(migrated_db: str) -> Recipient:
    slug = f"un-{uuid.uuid4().hex[:10]}"
    email = f"Ann@{slug}.example"
    async with await psycopg.AsyncConnection.connect(migrated_db) as conn, conn.transaction():
        client = await create_client(conn, slug, slug, {})
        cur = await conn.execute(
            "WITH lead AS ("
            "  INSERT INTO public.leads (client_id, email, consent_status, status)"
            "  VALUES (%(client)s, %(email)s, 'granted', 'qualified') RETURNING id)"
            " INSERT INTO public.communications (client_id, lead_id, type, recipient, status)"
            " SELECT %(client)s, lead.id, 'email', %(email)s, 'delivered' FROM lead"
            " RETURNING lead_id, id",
            {"client": client.id, "email": email},
        )
        row = await cur.fetchone()
    assert row is not None
    return Recipient(client.id, row[0], row[1], email)


async def _rows(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(sql.encode(), params)
        return await cur.fetchall()


async def _state(url: str, who: Recipient) -> tuple[str, list[dict[str, Any]], list[Any]]:
    """The lead's consent, its consent history and the client's suppressions."""
    [lead] = await _rows(url, "SELECT consent_status FROM public.leads WHERE id = %s", who.lead_id)
    history = await _rows(
        url, "SELECT * FROM public.consent_history WHERE client_id = %s ORDER BY id", who.client_id
    )
    suppressions = await _rows(
        url,
        "SELECT channel, recipient, reason FROM public.suppressions WHERE client_id = %s",
        who.client_id,
    )
    return lead["consent_status"], history, [tuple(s.values()) for s in suppressions]


async def test_one_click_unsubscribe_withdraws_consent_records_it_and_suppresses(
    api: httpx.AsyncClient, recipient: Recipient, migrated_db: str
) -> None:
    response = await api.post(f"/u/{recipient.token()}", **ONE_CLICK)

    assert response.status_code == 200, response.text
    assert response.json() == {"status": "unsubscribed", "already": False, "channel": "email"}
    consent, history, suppressions = await _state(migrated_db, recipient)
    assert consent == "withdrawn"
    [entry] = history
    assert (entry["lead_id"], entry["communication_id"]) == (recipient.lead_id, recipient.comm_id)
    assert (entry["channel"], entry["recipient"], entry["consent_status"]) == (
        "email", recipient.email.lower(), "withdrawn",
    )  # fmt: skip
    assert suppressions == [("email", recipient.email.lower(), "unsubscribe")]


async def test_unsubscribing_twice_is_harmless_and_recorded_once(
    api: httpx.AsyncClient, recipient: Recipient, migrated_db: str
) -> None:
    token = recipient.token()

    first = await api.post(f"/u/{token}", **ONE_CLICK)
    again = await api.post(f"/u/{token}", **ONE_CLICK)

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json()["already"] is True
    consent, history, suppressions = await _state(migrated_db, recipient)
    assert (consent, len(history), len(suppressions)) == ("withdrawn", 1, 1)


async def test_two_clicks_at_once_are_recorded_once(
    api: httpx.AsyncClient, recipient: Recipient, migrated_db: str
) -> None:
    token = recipient.token()

    responses = await asyncio.gather(*(api.post(f"/u/{token}", **ONE_CLICK) for _ in range(2)))

    assert [r.status_code for r in responses] == [200, 200]
    assert sorted(r.json()["already"] for r in responses) == [False, True]
    consent, history, suppressions = await _state(migrated_db, recipient)
    assert (consent, len(history), len(suppressions)) == ("withdrawn", 1, 1)


async def test_unsubscribing_an_address_suppressed_for_a_bounce_still_withdraws_consent(
    api: httpx.AsyncClient, recipient: Recipient, migrated_db: str
) -> None:
    async with await psycopg.AsyncConnection.connect(migrated_db) as conn:
        await conn.execute(
            "INSERT INTO public.suppressions (client_id, channel, recipient, reason)"
            " VALUES (%s, 'email', %s, 'bounce')",
            (recipient.client_id, recipient.email.lower()),
        )
        await conn.commit()

    response = await api.post(f"/u/{recipient.token()}", **ONE_CLICK)

    assert response.status_code == 200, response.text
    assert response.json()["already"] is False
    consent, history, suppressions = await _state(migrated_db, recipient)
    assert (consent, len(history)) == ("withdrawn", 1)
    assert suppressions == [("email", recipient.email.lower(), "bounce")]


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda r: "not-a-token", "not valid"),
        (lambda r: r.token()[:-4] + "AAAA", "not valid"),
        (
            lambda r: r.token(links=UnsubscribeLinks("another-fake-secret-0123456789-abcdef",
                                                     "https://lqs.example", timedelta(days=1))),
            "not valid",
        ),
        (lambda r: r.token(created_at=datetime.now(UTC) - timedelta(days=61)), "expired"),
    ],
    ids=["malformed", "tampered", "other secret", "expired"],
)  # fmt: skip
async def test_a_bad_or_expired_token_is_400_naming_the_token_and_changes_nothing(
    api: httpx.AsyncClient, recipient: Recipient, migrated_db: str, make: Any, fragment: str
) -> None:
    response = await api.post(f"/u/{make(recipient)}", **ONE_CLICK)

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_unsubscribe_token", "token")
    assert fragment in error["message"]
    assert await _state(migrated_db, recipient) == ("granted", [], [])


async def test_without_unsubscribe_links_configured_it_is_503(
    unconfigured_api: httpx.AsyncClient, recipient: Recipient, migrated_db: str
) -> None:
    posted = await unconfigured_api.post(f"/u/{recipient.token()}", **ONE_CLICK)
    shown = await unconfigured_api.get(f"/u/{recipient.token()}")

    assert (posted.status_code, shown.status_code) == (503, 503)
    assert posted.json()["error"]["code"] == "unsubscribe_not_configured"
    assert await _state(migrated_db, recipient) == ("granted", [], [])


async def test_get_shows_a_confirmation_page_and_changes_nothing(
    api: httpx.AsyncClient, recipient: Recipient, migrated_db: str
) -> None:
    response = await api.get(f"/u/{recipient.token()}")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert recipient.email in response.text
    assert '<form method="post">' in response.text
    assert await _state(migrated_db, recipient) == ("granted", [], [])


async def test_get_with_a_bad_token_is_400(api: httpx.AsyncClient) -> None:
    response = await api.get("/u/not-a-token")

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "token"


async def test_a_token_for_a_deleted_client_is_410(
    api: httpx.AsyncClient, recipient: Recipient, migrated_db: str
) -> None:
    token = recipient.token()
    async with await psycopg.AsyncConnection.connect(migrated_db) as conn:
        await conn.execute("DELETE FROM public.clients WHERE id = %s", (recipient.client_id,))
        await conn.commit()

    response = await api.post(f"/u/{token}", **ONE_CLICK)

    assert response.status_code == 410
    assert response.json()["error"]["code"] == "unknown_client"


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE public.consent_history SET consent_status = 'granted' WHERE client_id = %s",
        "DELETE FROM public.consent_history WHERE client_id = %s",
    ],
    ids=["update", "delete"],
)
async def test_consent_history_refuses_update_and_delete(
    api: httpx.AsyncClient, recipient: Recipient, migrated_db: str, statement: str
) -> None:
    assert (await api.post(f"/u/{recipient.token()}", **ONE_CLICK)).status_code == 200

    async with await psycopg.AsyncConnection.connect(migrated_db) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            await conn.execute(statement.encode(), (recipient.client_id,))

    _, history, _ = await _state(migrated_db, recipient)
    assert [h["consent_status"] for h in history] == ["withdrawn"]


async def test_deleting_the_lead_still_cascades_to_its_consent_history(
    api: httpx.AsyncClient, recipient: Recipient, migrated_db: str
) -> None:
    assert (await api.post(f"/u/{recipient.token()}", **ONE_CLICK)).status_code == 200

    async with await psycopg.AsyncConnection.connect(migrated_db) as conn:
        await conn.execute("DELETE FROM public.leads WHERE id = %s", (recipient.lead_id,))
        await conn.commit()

    history = "SELECT 1 FROM public.consent_history WHERE lead_id = %s"
    assert await _rows(migrated_db, history, recipient.lead_id) == []


async def test_unsubscribe_in_the_database_answers_what_it_did(
    recipient: Recipient, migrated_db: str
) -> None:
    found = LINKS.read(recipient.token())
    gone = LINKS.read(
        LINKS.token(
            client_id=uuid.uuid4(),
            lead_id=recipient.lead_id,
            communication_id=recipient.comm_id,
            channel="email",
            recipient=recipient.email,
            created_at=datetime.now(UTC),
        )
    )
    pool = await open_pool(migrated_db, min_size=1, max_size=1)
    try:
        outcomes = [await consent.unsubscribe(pool, who) for who in (found, found, gone)]
    finally:
        await pool.close()

    assert outcomes == [
        UnsubscribeOutcome.UNSUBSCRIBED,
        UnsubscribeOutcome.ALREADY,
        UnsubscribeOutcome.UNKNOWN_CLIENT,
    ]
    consent_status, history, suppressions = await _state(migrated_db, recipient)
    assert (consent_status, len(history), len(suppressions)) == ("withdrawn", 1, 1)
