"""The tenant read API (``GET /v1/leads``, ``/v1/communications``, their details and CSV
exports) in process, on a real database, with users' tokens.

Two clients, A and B, each with a user (a profile), leads and communications. What user A
may see is decided by row-level security alone: the last tests call the read functions
directly in A's ``tenant_session`` with no client in the query and still see only A's rows.
"""

from __future__ import annotations

import asyncio
import csv
import io
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import jwt
import psycopg
import pytest
from fastapi import FastAPI
from openapi_spec_validator import validate
from psycopg_pool import AsyncConnectionPool

from lqs.api.app import create_app
from lqs.api.tokens import TokenVerifier
from lqs.db.clients import create_api_key, create_client
from lqs.db.communications import NewCommunication, record_communications
from lqs.db.consent import withdraw_consent
from lqs.db.leads import LeadOutcome, insert_or_merge_leads, record_lead_outcomes
from lqs.db.pool import tenant_session
from lqs.db.tenant_reads import (
    TenantCommunicationFilter,
    TenantLeadFilter,
    communication_detail,
    communications_page,
    lead_detail,
    leads_page,
)
from lqs.db.users import own_profile
from lqs.domain.cursor import Cursor, encode_cursor
from lqs.domain.leads import parse_lead
from lqs.domain.vocabulary import LeadStatus
from tests.configs import api_config

pytestmark = pytest.mark.asyncio(loop_scope="module")

SECRET = secrets.token_urlsafe(32)
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Tenant:
    client: UUID
    user: UUID
    leads: list[UUID]
    """In the order made: the first is the newest received."""
    communications: list[UUID]
    """One per lead, in the same order: also newest first."""
    api_key: str


@dataclass(frozen=True)
class World:
    a: Tenant
    b: Tenant
    tokens: TokenVerifier


_BREAKDOWN = [
    {"rule_id": "work_email", "field": "email", "value": "x", "points": 20, "reason": "work"}
]


async def _tenant(conn: psycopg.AsyncConnection, slug: str, specs: list[dict[str, Any]]) -> Tenant:
    client = await create_client(conn, slug.title(), slug, {})
    _, key = await create_api_key(conn, client.id, "test", 600)
    user = uuid.uuid4()
    await conn.execute(
        "INSERT INTO public.profiles (id, client_id, email, role) VALUES (%s, %s, %s, 'member')",
        (user, client.id, f"user@{slug}.example"),
    )
    submitted = [parse_lead(spec["lead"]) for spec in specs]
    stored = await insert_or_merge_leads(conn, client.id, submitted)
    lead_ids = [s.id for s in stored]
    again = [parse_lead(spec["lead"]) for spec in specs if spec.get("again")]
    assert all(s.duplicate for s in await insert_or_merge_leads(conn, client.id, again))
    outcomes = [
        LeadOutcome(lead_id, spec["status"], spec["score"], spec["grade"], _BREAKDOWN, None)
        for lead_id, spec in zip(lead_ids, specs, strict=True)
        if spec.get("status") is not None
    ]
    await record_lead_outcomes(conn, outcomes)
    for i, lead_id in enumerate(lead_ids):
        # One apart, newest first; the last two share a moment (the id breaks the tie).
        at = T0 - timedelta(hours=min(i, len(lead_ids) - 2))
        await conn.execute(
            "UPDATE public.leads SET received_at = %s, processed_at = %s + interval '1 second'"
            " WHERE id = %s AND processed_at IS NOT NULL",
            (at, at, lead_id),
        )
        await conn.execute("UPDATE public.leads SET received_at = %s WHERE id = %s", (at, lead_id))
    await record_communications(
        conn,
        [
            NewCommunication(
                lead_id=lead_id,
                client_id=client.id,
                type="email" if i % 2 == 0 else "sms",
                recipient=f"sales{i}@{slug}.example" if i % 2 == 0 else "+12015550123",
                subject=f"Lead {i}",
                content=f"<p>lead {i}</p>",
                status="pending",
                template_id="lead_qualified@v2" if i % 2 == 0 else "lead_sms@default",
                template_variables={},
                priority=5,
                campaign_id="spring" if i == 0 else None,
                consent_status="granted",
                compliance_notes=None,
                error_message=None,
            )
            for i, lead_id in enumerate(lead_ids)
        ],
    )
    communications = []
    for i, lead_id in enumerate(lead_ids):
        cur = await conn.execute(
            "UPDATE public.communications SET created_at = %s WHERE lead_id = %s RETURNING id",
            (T0 - timedelta(minutes=i), lead_id),
        )
        [(communication,)] = await cur.fetchall()
        communications.append(communication)
    return Tenant(client.id, user, lead_ids, communications, key)


_A_LEADS: list[dict[str, Any]] = [
    {
        "lead": {
            "email": "ann@corp.example",
            "first_name": "Ann",
            "last_name": "Lee",
            "company_name": "Corp 100%",
            "source": "website",
            "utm_campaign": "spring",
        },
        "status": LeadStatus.QUALIFIED,
        "score": 80,
        "grade": "A",
    },
    {
        "lead": {"email": "bo@firm.example", "first_name": "=cmd()", "source": "import"},
        "status": LeadStatus.NURTURE,
        "score": 40,
        "grade": "C",
    },
    {
        "lead": {"email": "cy@shop.example", "company_name": "Shop_1", "source": "website"},
        "status": LeadStatus.DISQUALIFIED,
        "score": 0,
        "grade": "D",
    },
    {"lead": {"email": "di@corp.example", "source": "website"}, "again": True},
    {
        "lead": {"email": "ed@corp.example", "source": "website", "utm_campaign": "spring"},
        "status": LeadStatus.QUALIFIED,
        "score": 65,
        "grade": "B",
    },
    {"lead": {"email": "fay@corp.example", "source": "import"}},
    {
        "lead": {"email": "gus@corp.example", "source": "import"},
        "status": LeadStatus.QUALIFIED,
        "score": 65,
        "grade": "B",
    },
]
_B_LEADS: list[dict[str, Any]] = [
    {
        "lead": {"email": "zed@other.example", "first_name": "Ann", "source": "website"},
        "status": LeadStatus.QUALIFIED,
        "score": 90,
        "grade": "A",
    },
    {"lead": {"email": "yu@other.example", "source": "website"}},
]


@pytest.fixture(scope="module")
async def world(migrated_db: str) -> World:
    suffix = uuid.uuid4().hex[:8]
    async with await psycopg.AsyncConnection.connect(migrated_db) as conn, conn.transaction():
        a = await _tenant(conn, f"a-{suffix}", _A_LEADS)
        b = await _tenant(conn, f"b-{suffix}", _B_LEADS)
        # A's newest communication: two attempts and a provider event; its lead withdrew.
        first = a.communications[0]
        await conn.execute(
            "INSERT INTO public.delivery_attempts (communication_id, client_id, attempt,"
            " provider, started_at, finished_at, http_status, error_code, error_message,"
            " latency_ms, outcome, recorded) VALUES"
            " (%s, %s, 1, 'resend', %s, %s, 503, 'unavailable', 'try later', 120.5,"
            "  'transient', true),"
            " (%s, %s, 2, 'sendgrid', %s, %s, 202, NULL, NULL, 80, 'accepted', true)",
            (
                first, a.client, T0 + timedelta(seconds=2), T0 + timedelta(seconds=3),
                first, a.client, T0 + timedelta(seconds=60), T0 + timedelta(seconds=61),
            ),
        )  # fmt: skip
        await conn.execute(
            "UPDATE public.communications SET status = 'delivered', provider = 'sendgrid',"
            " sent_at = %s, delivered_at = %s WHERE id = %s",
            (T0 + timedelta(seconds=61), T0 + timedelta(seconds=90), first),
        )
        await conn.execute(
            "INSERT INTO public.provider_events (client_id, provider, event_id,"
            " communication_id, external_id, event_type, kind, recipient, occurred_at, payload,"
            " applied_at, effect) VALUES (%s, 'sendgrid', 'evt-1', %s, 'm-1', 'delivered',"
            " 'delivered', 'sales0@x.example', %s, '{}', now(), 'delivered')",
            (a.client, first, T0 + timedelta(seconds=90)),
        )
        await withdraw_consent(
            conn, a.client, a.leads[0], "email", "ann@corp.example", source="unsubscribe link"
        )
    return World(a, b, TokenVerifier(secret=SECRET))


@pytest.fixture(scope="module")
async def app(migrated_db: str, world: World) -> AsyncIterator[FastAPI]:
    application = create_app(migrated_db, api_config(pool_max_size=4, tokens=world.tokens))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="module")
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://lqs.test") as http:
        yield http


def _as(world: World, tenant: Tenant) -> dict[str, str]:
    token, _ = world.tokens.issue(tenant.user)
    return {"Authorization": f"Bearer {token}"}


def _service() -> dict[str, str]:
    now = int(time.time())
    token = jwt.encode({"role": "service_role", "iat": now, "exp": now + 600}, SECRET, "HS256")
    return {"Authorization": f"Bearer {token}"}


def _ids(response: httpx.Response) -> list[UUID]:
    assert response.status_code == 200, response.text
    return [UUID(row["id"]) for row in response.json()["data"]]


async def _all_pages(
    api: httpx.AsyncClient, path: str, headers: dict[str, str], **params: Any
) -> tuple[list[UUID], int]:
    seen: list[UUID] = []
    pages = 0
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await api.get(path, headers=headers, params=query)
        seen += _ids(response)
        pages += 1
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return seen, pages


# ---------------------------------------------------------------- isolation over HTTP


async def test_user_of_a_lists_only_a_leads_newest_first(
    api: httpx.AsyncClient, world: World
) -> None:
    response = await api.get("/v1/leads", headers=_as(world, world.a))
    body = response.json()
    assert set(_ids(response)) == set(world.a.leads)
    assert body["next_cursor"] is None
    received = [row["received_at"] for row in body["data"]]
    assert received == sorted(received, reverse=True)


async def test_user_of_b_lists_only_b_leads(api: httpx.AsyncClient, world: World) -> None:
    response = await api.get("/v1/leads", headers=_as(world, world.b))
    assert set(_ids(response)) == set(world.b.leads)


async def test_user_of_a_lists_only_a_communications(api: httpx.AsyncClient, world: World) -> None:
    response = await api.get("/v1/communications", headers=_as(world, world.a))
    assert _ids(response) == world.a.communications  # newest first


async def test_user_of_a_cannot_read_b_lead_by_id(api: httpx.AsyncClient, world: World) -> None:
    response = await api.get(f"/v1/leads/{world.b.leads[0]}", headers=_as(world, world.a))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    allowed = await api.get(f"/v1/leads/{world.b.leads[0]}", headers=_as(world, world.b))
    assert allowed.status_code == 200


async def test_user_of_a_cannot_read_b_communication_by_id(
    api: httpx.AsyncClient, world: World
) -> None:
    path = f"/v1/communications/{world.b.communications[0]}"
    response = await api.get(path, headers=_as(world, world.a))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert (await api.get(path, headers=_as(world, world.b))).status_code == 200


@pytest.mark.parametrize("path", ["/v1/leads/{}", "/v1/communications/{}"])
@pytest.mark.parametrize("given", ["unknown", "not-a-uuid", "batch"])
async def test_unknown_or_malformed_id_is_404(
    api: httpx.AsyncClient, world: World, path: str, given: str
) -> None:
    wanted = str(uuid.uuid4()) if given == "unknown" else given
    response = await api.get(path.format(wanted), headers=_as(world, world.a))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_service_role_token_sees_both_clients(api: httpx.AsyncClient, world: World) -> None:
    leads = await api.get("/v1/leads", headers=_service(), params={"limit": 200})
    communications = await api.get("/v1/communications", headers=_service())
    assert set(world.a.leads + world.b.leads) <= set(_ids(leads))
    assert set(world.a.communications + world.b.communications) <= set(_ids(communications))
    detail = await api.get(f"/v1/leads/{world.b.leads[0]}", headers=_service())
    assert detail.status_code == 200


# ---------------------------------------------------------------- authentication


@pytest.mark.parametrize(
    "path", ["/v1/leads", "/v1/communications", "/v1/leads.csv", "/v1/communications.csv"]
)
async def test_no_token_is_401(api: httpx.AsyncClient, path: str) -> None:
    response = await api.get(path)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_token"
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_forged_token_is_401(api: httpx.AsyncClient, world: World) -> None:
    forged = TokenVerifier(secret=secrets.token_urlsafe(32)).issue(world.a.user)[0]
    response = await api.get("/v1/leads", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"


async def test_expired_token_is_401(api: httpx.AsyncClient, world: World) -> None:
    expired, _ = world.tokens.issue(world.a.user, now=time.time() - 7200)
    response = await api.get("/v1/leads", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


async def test_anon_role_token_is_401(api: httpx.AsyncClient) -> None:
    now = int(time.time())
    anon = jwt.encode({"role": "anon", "iat": now, "exp": now + 600}, SECRET, "HS256")
    response = await api.get("/v1/leads", headers={"Authorization": f"Bearer {anon}"})
    assert response.status_code == 401


async def test_api_key_cannot_read(api: httpx.AsyncClient, world: World) -> None:
    response = await api.get("/v1/leads", headers={"Authorization": f"Bearer {world.a.api_key}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_not_accepted"


async def test_post_v1_leads_still_takes_the_api_key(
    api: httpx.AsyncClient, migrated_db: str
) -> None:
    async with await psycopg.AsyncConnection.connect(migrated_db) as conn, conn.transaction():
        client = await create_client(conn, "Intake", f"intake-{uuid.uuid4().hex[:8]}", {})
        _, key = await create_api_key(conn, client.id, "test", 600)
    response = await api.post(
        "/v1/leads", headers={"Authorization": f"Bearer {key}"}, json={"email": "x@corp.example"}
    )
    assert response.status_code == 201, response.text


# ---------------------------------------------------------------- pages


@pytest.mark.parametrize("limit", [1, 2, 3, 7])
async def test_lead_pages_have_no_duplicates_and_no_gaps(
    api: httpx.AsyncClient, world: World, limit: int
) -> None:
    seen, pages = await _all_pages(api, "/v1/leads", _as(world, world.a), limit=limit)
    assert seen == _ids(await api.get("/v1/leads", headers=_as(world, world.a)))
    assert len(seen) == len(set(seen)) == len(world.a.leads)
    assert pages == -(-len(world.a.leads) // limit)


async def test_score_pages_go_highest_first_unscored_last(
    api: httpx.AsyncClient, world: World
) -> None:
    headers = _as(world, world.a)
    seen, _ = await _all_pages(api, "/v1/leads", headers, limit=2, sort="score")
    assert len(seen) == len(set(seen)) == len(world.a.leads)
    one_page = await api.get("/v1/leads", headers=headers, params={"sort": "score"})
    assert _ids(one_page) == seen
    scores = [row["score"] for row in one_page.json()["data"]]
    assert scores == [80, 65, 65, 40, 0, None, None]


async def test_communication_pages_have_no_duplicates_and_no_gaps(
    api: httpx.AsyncClient, world: World
) -> None:
    seen, pages = await _all_pages(api, "/v1/communications", _as(world, world.a), limit=3)
    assert seen == world.a.communications
    assert pages == 3


async def test_a_lead_arriving_between_pages_does_not_shift_them(
    api: httpx.AsyncClient, world: World, migrated_db: str
) -> None:
    headers = _as(world, world.b)
    before = _ids(await api.get("/v1/leads", headers=headers))
    first = await api.get("/v1/leads", headers=headers, params={"limit": 1})
    async with await psycopg.AsyncConnection.connect(migrated_db) as conn, conn.transaction():
        [stored] = await insert_or_merge_leads(
            conn, world.b.client, [parse_lead({"email": "late@other.example"})]
        )
    try:
        rest, _ = await _all_pages(
            api, "/v1/leads", headers, limit=1, cursor=first.json()["next_cursor"]
        )
        assert _ids(first) + rest == before
    finally:
        async with await psycopg.AsyncConnection.connect(migrated_db) as conn:
            await conn.execute("DELETE FROM public.leads WHERE id = %s", (stored.id,))


# ---------------------------------------------------------------- filters


def _a(world: World, *indexes: int) -> set[UUID]:
    return {world.a.leads[i] for i in indexes}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "qualified"}, (0, 4, 6)),
        ({"status": "queued"}, (3, 5)),
        ({"grade": "B"}, (4, 6)),
        ({"min_score": 40}, (0, 1, 4, 6)),
        ({"max_score": 40}, (1, 2)),
        ({"min_score": 41, "max_score": 79}, (4, 6)),
        ({"source": "import"}, (1, 5, 6)),
        ({"campaign": "spring"}, (0, 4)),
        ({"q": "ANN"}, (0,)),
        ({"q": "corp.example"}, (0, 3, 4, 5, 6)),
        ({"q": "100%"}, (0,)),
        ({"q": "%"}, (0,)),
        ({"q": "p_1"}, (2,)),
        ({"q": "p_"}, (2,)),
        ({"received_from": "2026-11-01T10:00:00+00:00"}, (0, 1, 2)),
        ({"received_to": "2026-11-01T10:00:00+00:00"}, (3, 4, 5, 6)),
        (
            {"received_from": "2026-11-01T09:00:00Z", "received_to": "2026-11-01T11:00:00Z"},
            (2, 3),
        ),
        ({"status": "qualified", "source": "website"}, (0, 4)),
    ],
)
async def test_lead_filters(
    api: httpx.AsyncClient, world: World, params: dict[str, Any], expected: tuple[int, ...]
) -> None:
    response = await api.get("/v1/leads", headers=_as(world, world.a), params=params)
    assert set(_ids(response)) == _a(world, *expected)


def _c(world: World, *indexes: int) -> list[UUID]:
    return [world.a.communications[i] for i in indexes]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"type": "sms"}, (1, 3, 5)),
        ({"status": "delivered"}, (0,)),
        ({"status": "pending"}, (1, 2, 3, 4, 5, 6)),
        ({"provider": "sendgrid"}, (0,)),
        ({"campaign_id": "spring"}, (0,)),
        ({"template_id": "lead_sms"}, (1, 3, 5)),
        ({"template_id": "lead_qualified@v2"}, (0, 2, 4, 6)),
        ({"template_id": "lead_qualified@v1"}, ()),
        ({"created_from": "2026-11-01T11:57:00+00:00"}, (0, 1, 2, 3)),
        ({"created_to": "2026-11-01T11:57:00+00:00"}, (4, 5, 6)),
    ],
)
async def test_communication_filters(
    api: httpx.AsyncClient, world: World, params: dict[str, Any], expected: tuple[int, ...]
) -> None:
    response = await api.get("/v1/communications", headers=_as(world, world.a), params=params)
    assert _ids(response) == _c(world, *expected)


async def test_communication_recipient_filter_ignores_case(
    api: httpx.AsyncClient, world: World
) -> None:
    response = await api.get("/v1/communications", headers=_as(world, world.a))
    recipient = response.json()["data"][2]["recipient"]
    found = await api.get(
        "/v1/communications",
        headers=_as(world, world.a),
        params={"recipient": recipient.upper()},
    )
    assert _ids(found) == _c(world, 2)


# ---------------------------------------------------------------- details


async def test_lead_detail_has_breakdown_communications_consent_and_a_timeline(
    api: httpx.AsyncClient, world: World
) -> None:
    response = await api.get(f"/v1/leads/{world.a.leads[0]}", headers=_as(world, world.a))
    assert response.status_code == 200, response.text
    lead = response.json()["data"]
    assert lead["email"] == "ann@corp.example"
    assert lead["score"] == 80
    assert lead["grade"] == "A"
    assert lead["status"] == "qualified"
    assert lead["campaign"] == "spring"
    assert lead["breakdown"] == _BREAKDOWN
    assert "dedupe_key" not in lead
    assert [c["id"] for c in lead["communications"]] == [str(world.a.communications[0])]
    assert [(h["channel"], h["consent_status"]) for h in lead["consent_history"]] == [
        ("email", "withdrawn")
    ]
    timeline = lead["timeline"]
    assert [e["at"] for e in timeline] == sorted(e["at"] for e in timeline)
    assert [e["kind"] for e in timeline] == [
        "received", "communication", "scored", "attempt", "attempt", "event", "consent",
    ]  # fmt: skip
    assert "sendgrid delivered" in timeline[5]["summary"]
    assert timeline[5]["communication_id"] == str(world.a.communications[0])


async def test_a_resubmitted_lead_shows_the_merge_in_its_timeline(
    api: httpx.AsyncClient, world: World
) -> None:
    response = await api.get(f"/v1/leads/{world.a.leads[3]}", headers=_as(world, world.a))
    timeline = response.json()["data"]["timeline"]
    assert [e["kind"] for e in timeline] == ["received", "communication", "merged"]
    assert timeline[2]["summary"] == "submitted again from website"


async def test_communication_detail_has_content_attempts_events_and_lead(
    api: httpx.AsyncClient, world: World
) -> None:
    path = f"/v1/communications/{world.a.communications[0]}"
    response = await api.get(path, headers=_as(world, world.a))
    assert response.status_code == 200, response.text
    found = response.json()["data"]
    assert found["subject"] == "Lead 0"
    assert found["content"] == "<p>lead 0</p>"
    assert found["status"] == "delivered"
    assert found["lead"] == {
        "id": str(world.a.leads[0]),
        "name": "Ann Lee",
        "email": "ann@corp.example",
    }
    assert [(a["attempt"], a["outcome"], a["latency_ms"]) for a in found["attempts"]] == [
        (1, "transient", 120.5),
        (2, "accepted", 80.0),
    ]
    assert found["attempts"][0]["error_message"] == "try later"
    assert [(e["event_type"], e["effect"]) for e in found["events"]] == [("delivered", "delivered")]


# ---------------------------------------------------------------- CSV


def _csv(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


async def test_leads_csv_has_only_the_users_leads_and_neutralises_formulas(
    api: httpx.AsyncClient, world: World
) -> None:
    rows = _csv(await api.get("/v1/leads.csv", headers=_as(world, world.a)))
    assert [UUID(r["id"]) for r in rows] == _ids(
        await api.get("/v1/leads", headers=_as(world, world.a))
    )
    [formula] = [r for r in rows if r["email"] == "bo@firm.example"]
    assert formula["first_name"] == "'=cmd()"


async def test_leads_csv_follows_the_filters(api: httpx.AsyncClient, world: World) -> None:
    response = await api.get(
        "/v1/leads.csv", headers=_as(world, world.a), params={"source": "import", "sort": "score"}
    )
    assert [UUID(r["id"]) for r in _csv(response)] == [
        world.a.leads[6], world.a.leads[1], world.a.leads[5],
    ]  # fmt: skip


async def test_leads_csv_streams_more_than_one_page(
    api: httpx.AsyncClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("lqs.api.tenant.EXPORT_PAGE", 2)
    rows = _csv(await api.get("/v1/leads.csv", headers=_as(world, world.a)))
    assert len({r["id"] for r in rows}) == len(rows) == len(world.a.leads)


def _connections_in_use(pool: AsyncConnectionPool) -> int:
    stats = pool.get_stats()
    return stats["pool_size"] - stats["pool_available"]


async def test_a_paused_csv_export_holds_no_connection_and_still_sends_every_row_once(
    app: FastAPI, api: httpx.AsyncClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Driven at the ASGI level, so the client can stop reading mid-download: the app
    # waits in send() as it would on a slow reader's full socket.
    monkeypatch.setattr("lqs.api.tenant.EXPORT_PAGE", 2)
    token, _ = world.tokens.issue(world.a.user)
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/v1/leads.csv", "raw_path": b"/v1/leads.csv",
        "root_path": "", "query_string": b"", "client": ("127.0.0.1", 50000),
        "server": ("lqs.test", 80),
        "headers": [(b"host", b"lqs.test"), (b"authorization", f"Bearer {token}".encode())],
    }  # fmt: skip
    requested, paused, resume, finished = False, asyncio.Event(), asyncio.Event(), asyncio.Event()
    bodies: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] != "http.response.body":
            assert message["status"] == 200
            return
        bodies.append(message.get("body", b""))
        if len(bodies) == 2:  # the header line, then the first page of rows
            paused.set()
            await resume.wait()

    download = asyncio.create_task(app(scope, receive, send))
    await asyncio.wait_for(paused.wait(), timeout=10)
    in_use_while_paused = _connections_in_use(app.state.pool)
    resume.set()
    await asyncio.wait_for(download, timeout=10)
    finished.set()

    assert in_use_while_paused == 0
    rows = list(csv.DictReader(io.StringIO(b"".join(bodies).decode())))
    assert len(bodies) > 3  # more than one page
    assert [UUID(r["id"]) for r in rows] == _ids(
        await api.get("/v1/leads", headers=_as(world, world.a))
    )


@pytest.mark.parametrize(
    "path", ["/v1/leads", "/v1/communications", "/v1/leads.csv", "/v1/communications.csv"]
)
async def test_a_signed_in_user_without_a_profile_is_403_no_profile(
    api: httpx.AsyncClient, world: World, path: str
) -> None:
    # A sign-up with no LQS profile: row-level security would show nothing, after
    # reading every client's rows.
    token, _ = world.tokens.issue(uuid.uuid4())

    response = await api.get(path, headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "no_profile"


async def test_the_service_role_exports_every_client(api: httpx.AsyncClient, world: World) -> None:
    leads = _csv(await api.get("/v1/leads.csv", headers=_service()))
    communications = _csv(await api.get("/v1/communications.csv", headers=_service()))
    assert {*world.a.leads, *world.b.leads} <= {UUID(r["id"]) for r in leads}
    assert {*world.a.communications, *world.b.communications} <= {
        UUID(r["id"]) for r in communications
    }


async def test_communications_csv_has_only_the_users_communications(
    api: httpx.AsyncClient, world: World
) -> None:
    rows = _csv(await api.get("/v1/communications.csv", headers=_as(world, world.b)))
    assert [UUID(r["id"]) for r in rows] == world.b.communications
    assert rows[1]["recipient"] == "'+12015550123"  # a leading + is a formula to a spreadsheet


# ---------------------------------------------------------------- refused parameters


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/leads", {"limit": "0"}, "limit"),
        ("/v1/leads", {"limit": "201"}, "limit"),
        ("/v1/leads", {"limit": "many"}, "limit"),
        ("/v1/leads", {"status": "hot"}, "status"),
        ("/v1/leads", {"sort": "name"}, "sort"),
        ("/v1/leads", {"min_score": "high"}, "min_score"),
        ("/v1/leads", {"received_from": "yesterday"}, "received_from"),
        ("/v1/leads", {"received_from": "2026-11-01T10:00:00"}, "received_from"),
        ("/v1/leads", {"q": ""}, "q"),
        ("/v1/leads", {"q": "x" * 201}, "q"),
        ("/v1/communications", {"type": "fax"}, "type"),
        ("/v1/communications", {"status": "lost"}, "status"),
        ("/v1/communications.csv", {"created_to": "soon"}, "created_to"),
    ],
)
async def test_a_parameter_of_the_wrong_kind_is_422_naming_it(
    api: httpx.AsyncClient, world: World, path: str, params: dict[str, str], field: str
) -> None:
    response = await api.get(path, headers=_as(world, world.a), params=params)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_parameter"
    assert error["field"] == field


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/leads", {"min_score": "50", "max_score": "10"}, "min_score"),
        (
            "/v1/leads",
            {"received_from": "2026-11-02T00:00:00Z", "received_to": "2026-11-01T00:00:00Z"},
            "received_from",
        ),
        ("/v1/leads", {"q": "a\x00b"}, "q"),
        ("/v1/communications", {"recipient": "a\x00b"}, "recipient"),
    ],
)
async def test_contradictory_or_unstorable_filters_are_400_naming_the_field(
    api: httpx.AsyncClient, world: World, path: str, params: dict[str, str], field: str
) -> None:
    response = await api.get(path, headers=_as(world, world.a), params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/leads", {"cursor": "garbage"}),
        ("/v1/leads", {"cursor": "eyJ2IjoxfQ"}),  # {"v":1}
        # A page of the score order, given to the default order:
        (
            "/v1/leads",
            {"cursor": encode_cursor(Cursor("score", 65, UUID(int=1)))},
        ),
        ("/v1/communications", {"cursor": encode_cursor(Cursor("received", T0, UUID(int=1)))}),
    ],
)
async def test_a_cursor_this_service_did_not_make_is_400(
    api: httpx.AsyncClient, world: World, path: str, params: dict[str, str]
) -> None:
    response = await api.get(path, headers=_as(world, world.a), params=params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_cursor", "cursor")


async def test_without_a_token_verifier_the_read_api_is_503(migrated_db: str) -> None:
    application = create_app(migrated_db, api_config(pool_max_size=1, tokens=None))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://lqs.test") as http:
            response = await http.get("/v1/leads", headers={"Authorization": "Bearer x.y.z"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "auth_not_configured"


async def test_openapi_documents_the_read_routes_with_the_user_token(app: FastAPI) -> None:
    document = app.openapi()
    validate(document)
    assert document["components"]["securitySchemes"]["userToken"]["scheme"] == "bearer"
    for path in ("/v1/leads", "/v1/leads/{lead_id}", "/v1/communications", "/v1/leads.csv"):
        assert document["paths"][path]["get"]["security"] == [{"userToken": []}]
    assert document["paths"]["/v1/leads"]["post"]["security"] == [{"apiKey": []}]
    example = document["paths"]["/v1/leads"]["get"]["responses"]["200"]["content"]
    assert example["application/json"]["example"]["data"][0]["grade"] == "B"


# ---------------------------------------------------------------- row-level security alone


async def test_rls_not_sql_isolates_lead_and_communication_pages(
    pool: AsyncConnectionPool, world: World
) -> None:
    # No client in the filter: the queries name no client at all.
    async with tenant_session(pool, world.a.user) as conn:
        leads = await leads_page(conn, TenantLeadFilter(), limit=200)
        communications = await communications_page(conn, TenantCommunicationFilter(), limit=200)
    assert {lead.id for lead in leads.rows} == set(world.a.leads)
    assert {lead.client_id for lead in leads.rows} == {world.a.client}
    assert [c.id for c in communications.rows] == world.a.communications


async def test_rls_not_sql_hides_another_clients_details(
    pool: AsyncConnectionPool, world: World
) -> None:
    async with tenant_session(pool, world.a.user) as conn:
        assert await lead_detail(conn, world.b.leads[0]) is None
        assert await communication_detail(conn, world.b.communications[0]) is None
        assert await lead_detail(conn, world.a.leads[0]) is not None


async def test_a_client_filter_for_another_client_finds_nothing(
    pool: AsyncConnectionPool, world: World
) -> None:
    async with tenant_session(pool, world.a.user) as conn:
        leads = await leads_page(conn, TenantLeadFilter(client_id=world.b.client))
        communications = await communications_page(
            conn, TenantCommunicationFilter(client_id=world.b.client)
        )
    assert leads.rows == []
    assert communications.rows == []


async def test_the_service_role_reads_every_client_and_may_pick_one(
    pool: AsyncConnectionPool, world: World
) -> None:
    async with tenant_session(pool, None, role="service_role") as conn:
        everyone = await leads_page(conn, TenantLeadFilter(), limit=200)
        only_b = await leads_page(conn, TenantLeadFilter(client_id=world.b.client), limit=200)
    assert set(world.a.leads + world.b.leads) <= {lead.id for lead in everyone.rows}
    assert {lead.id for lead in only_b.rows} == set(world.b.leads)


async def test_own_profile_names_the_users_client_and_no_one_elses(
    pool: AsyncConnectionPool, world: World
) -> None:
    async with tenant_session(pool, world.a.user) as conn:
        profile = await own_profile(conn)
        assert profile is not None
        assert profile.client_id == world.a.client
    async with tenant_session(pool, uuid.uuid4()) as conn:
        assert await own_profile(conn) is None
    async with tenant_session(pool, None, role="service_role") as conn:
        assert await own_profile(conn) is None
