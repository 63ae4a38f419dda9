"""The tenant API's stats, suppressions, admin actions and rules tester, in process, on a
real database, for two clients that each have an admin and a member.

Requests carry users' tokens signed with a generated secret; what they may see and change
is decided by row-level security, and the assertions read what is stored as the
superuser, which bypasses it.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from openapi_spec_validator import validate
from psycopg.types.json import Jsonb

from lqs.api.app import create_app
from lqs.api.tokens import TokenVerifier
from lqs.db.pool import as_service_role, tenant_session
from tests.configs import api_config

pytestmark = pytest.mark.asyncio(loop_scope="module")

SECRET = secrets.token_urlsafe(48)
VERIFIER = TokenVerifier(secret=SECRET)
WINDOW = {"from": "2026-01-01", "to": "2026-01-03"}


@pytest.fixture(scope="module")
async def app(migrated_db: str) -> AsyncIterator[FastAPI]:
    application = create_app(migrated_db, api_config(pool_max_size=4, tokens=VERIFIER))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="module")
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://lqs.test") as client:
        yield client


# ---------------------------------------------------------------- tenants and their data


@dataclass(frozen=True)
class Tenant:
    client: UUID
    admin: UUID
    member: UUID

    @property
    def as_admin(self) -> dict[str, str]:
        return bearer(self.admin)

    @property
    def as_member(self) -> dict[str, str]:
        return bearer(self.member)


def bearer(user: UUID) -> dict[str, str]:
    token, _ = VERIFIER.issue(user)
    return {"Authorization": f"Bearer {token}"}


async def _superuser(url: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(url, autocommit=True)


async def _one(conn: psycopg.AsyncConnection[Any], query: str, *params: Any) -> Any:
    cur = await conn.execute(query.encode(), params)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


async def _new_tenant(url: str, settings: dict[str, Any] | None = None) -> Tenant:
    slug = f"t-{uuid4().hex[:12]}"
    async with await _superuser(url) as conn:
        client = await _one(
            conn,
            "INSERT INTO public.clients (name, slug, settings) VALUES (%s, %s, %s) RETURNING id",
            slug, slug, Jsonb(settings or {}),
        )  # fmt: skip
        admin, member = uuid4(), uuid4()
        await conn.execute(
            "INSERT INTO public.profiles (id, client_id, email, role) VALUES"
            " (%s, %s, %s, 'admin'), (%s, %s, %s, 'member')",
            (admin, client, f"admin@{slug}.example", member, client, f"member@{slug}.example"),
        )
    return Tenant(client, admin, member)


@pytest.fixture
async def a(migrated_db: str) -> Tenant:
    return await _new_tenant(migrated_db)


@pytest.fixture
async def b(migrated_db: str) -> Tenant:
    return await _new_tenant(migrated_db)


async def _lead(url: str, tenant: Tenant, status: str, received_at: str) -> UUID:
    email = f"{uuid4().hex[:10]}@lead.example"
    async with await _superuser(url) as conn:
        lead: UUID = await _one(
            conn,
            "INSERT INTO public.leads (client_id, email, dedupe_key, status, received_at)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING id",
            tenant.client, email, f"email:{email}", status, received_at,
        )  # fmt: skip
    return lead


async def _communication(
    url: str,
    tenant: Tenant,
    lead: UUID,
    *,
    channel: str = "email",
    status: str = "pending",
    provider: str | None = None,
    created_at: str = "2026-01-01T12:00:00Z",
    content: str | None = "Hello",
) -> UUID:
    async with await _superuser(url) as conn:
        communication: UUID = await _one(
            conn,
            "INSERT INTO public.communications"
            " (lead_id, client_id, type, recipient, status, provider, created_at, content)"
            " VALUES (%s, %s, %s, 'ann@x.example', %s, %s, %s, %s) RETURNING id",
            lead, tenant.client, channel, status, provider, created_at, content,
        )  # fmt: skip
    return communication


async def _complaint(url: str, tenant: Tenant, communication: UUID) -> None:
    async with await _superuser(url) as conn:
        await conn.execute(
            "INSERT INTO public.provider_events"
            " (client_id, provider, event_id, communication_id, event_type, kind, payload)"
            " VALUES (%s, 'resend', %s, %s, 'email.complained', 'complained', '{}')",
            (tenant.client, uuid4().hex, communication),
        )


async def _suppression(url: str, tenant: Tenant, recipient: str, created_at: str) -> UUID:
    async with await _superuser(url) as conn:
        suppression: UUID = await _one(
            conn,
            "INSERT INTO public.suppressions (client_id, channel, recipient, reason, created_at)"
            " VALUES (%s, 'email', %s, 'bounce', %s) RETURNING id",
            tenant.client, recipient, created_at,
        )  # fmt: skip
    return suppression


async def _rows(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await _superuser(url) as conn:
        cur = await conn.execute(query.encode(), params)
        return await cur.fetchall()


async def _audit(url: str, tenant: Tenant) -> list[tuple[Any, ...]]:
    return await _rows(
        url,
        "SELECT user_id, action, target_id, detail FROM public.audit_log"
        " WHERE client_id = %s ORDER BY id",
        tenant.client,
    )


# ---------------------------------------------------------------- who may call


# Fixed ids (none exists): parallel workers must collect the same test names.
NO_SUCH_ID = "0b1e5c1d-0000-4000-8000-000000000001"
ENDPOINTS = [
    ("GET", "/v1/stats"),
    ("GET", "/v1/suppressions"),
    ("DELETE", f"/v1/suppressions/{NO_SUCH_ID}"),
    ("POST", f"/v1/communications/{NO_SUCH_ID}/retry"),
    ("GET", "/v1/keys"),
    ("POST", "/v1/keys"),
    ("DELETE", f"/v1/keys/{NO_SUCH_ID}"),
    ("POST", "/v1/rules/test"),
]
ADMIN_ACTIONS = [
    ("DELETE", f"/v1/suppressions/{NO_SUCH_ID}"),
    ("POST", f"/v1/communications/{NO_SUCH_ID}/retry"),
    ("POST", "/v1/keys"),
    ("DELETE", f"/v1/keys/{NO_SUCH_ID}"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_anonymous_requests_are_refused_with_401(
    http: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await http.request(method, path)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_token"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_an_api_key_is_not_a_users_token(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/stats", headers={"Authorization": "Bearer lqs_abc"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_not_accepted"


@pytest.mark.parametrize(("method", "path"), ADMIN_ACTIONS)
async def test_members_are_refused_admin_actions_with_403(
    http: httpx.AsyncClient, a: Tenant, method: str, path: str
) -> None:
    response = await http.request(method, path, headers=a.as_member, json={"name": "x"})
    assert response.status_code == 403
    assert response.json() == {
        "error": {
            "code": "admin_only",
            "message": "only the client's owners and admins may do this",
        }
    }


async def test_a_user_without_a_profile_is_refused_with_403(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/stats", headers=bearer(uuid4()))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "no_profile"


# ---------------------------------------------------------------- stats


async def _stats_data(url: str, a: Tenant, b: Tenant) -> None:
    """Client A's known data in 2026-01-01..2026-01-03, some outside it, and B's."""
    l1 = await _lead(url, a, "qualified", "2026-01-01T10:00:00Z")
    l2 = await _lead(url, a, "qualified", "2026-01-01T11:00:00Z")
    l3 = await _lead(url, a, "nurture", "2026-01-01T12:00:00Z")
    l4 = await _lead(url, a, "qualified", "2026-01-02T09:00:00Z")
    l5 = await _lead(url, a, "disqualified", "2026-01-02T10:00:00Z")
    await _lead(url, a, "queued", "2026-01-02T11:00:00Z")
    before = await _lead(url, a, "qualified", "2025-12-31T23:59:59Z")
    await _lead(url, a, "qualified", "2026-01-03T00:00:00Z")  # `to` is excluded
    c1 = await _communication(url, a, l1, status="delivered", provider="resend")
    await _complaint(url, a, c1)
    await _communication(url, a, l1, channel="sms", status="failed", provider="twilio")
    await _communication(url, a, l2, status="bounced", provider="resend")
    await _communication(url, a, l3, status="delivered", provider="sendgrid")
    await _communication(url, a, l4, status="pending", created_at="2026-01-02T09:00:01Z")
    await _communication(url, a, l5, status="rejected", created_at="2026-01-02T10:00:01Z")
    await _communication(
        url, a, before, status="delivered", provider="resend", created_at="2025-12-31T23:59:59Z"
    )
    other = await _lead(url, b, "qualified", "2026-01-01T10:00:00Z")
    await _communication(url, b, other, status="delivered", provider="resend")


def _rates(delivery: float | None, bounce: float | None, complaint: float | None,
           failure: float | None) -> dict[str, float | None]:  # fmt: skip
    return {"delivery": delivery, "bounce": bounce, "complaint": complaint, "failure": failure}


async def test_stats_count_the_clients_own_leads_and_messages_in_the_range(
    http: httpx.AsyncClient, a: Tenant, b: Tenant, migrated_db: str
) -> None:
    await _stats_data(migrated_db, a, b)

    response = await http.get("/v1/stats", params=WINDOW, headers=a.as_member)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["from"] == "2026-01-01T00:00:00+00:00"
    assert body["to"] == "2026-01-03T00:00:00+00:00"
    zero = {"queued": 0, "qualified": 0, "nurture": 0, "disqualified": 0, "error": 0}
    assert body["leads"] == [
        {"start": "2026-01-01T00:00:00+00:00", "counts": {**zero, "qualified": 2, "nurture": 1}},
        {
            "start": "2026-01-02T00:00:00+00:00",
            "counts": {**zero, "qualified": 1, "disqualified": 1, "queued": 1},
        },
    ]
    assert body["funnel"] == {"received": 6, "qualified": 3, "contacted": 3, "delivered": 1}
    by_provider = {row.pop("provider"): row for row in body["delivery"]["by_provider"]}
    assert by_provider == {
        "resend": {
            "total": 2, "attempted": 2, "delivered": 1, "bounced": 1, "complained": 1,
            "failed": 0, "rates": _rates(0.5, 0.5, 0.5, 0.0),
        },
        "sendgrid": {
            "total": 1, "attempted": 1, "delivered": 1, "bounced": 0, "complained": 0,
            "failed": 0, "rates": _rates(1.0, 0.0, 0.0, 0.0),
        },
        "twilio": {
            "total": 1, "attempted": 1, "delivered": 0, "bounced": 0, "complained": 0,
            "failed": 1, "rates": _rates(0.0, 0.0, 0.0, 1.0),
        },
        None: {
            "total": 2, "attempted": 0, "delivered": 0, "bounced": 0, "complained": 0,
            "failed": 0, "rates": _rates(None, None, None, None),
        },
    }  # fmt: skip
    by_channel = {row.pop("channel"): row for row in body["delivery"]["by_channel"]}
    assert by_channel == {
        "email": {
            "total": 5, "attempted": 3, "delivered": 2, "bounced": 1, "complained": 1,
            "failed": 0, "rates": _rates(0.6667, 0.3333, 0.3333, 0.0),
        },
        "sms": {
            "total": 1, "attempted": 1, "delivered": 0, "bounced": 0, "complained": 0,
            "failed": 1, "rates": _rates(0.0, 0.0, 0.0, 1.0),
        },
    }  # fmt: skip


async def test_stats_by_hour_bucket_each_hour(
    http: httpx.AsyncClient, a: Tenant, b: Tenant, migrated_db: str
) -> None:
    await _stats_data(migrated_db, a, b)

    response = await http.get("/v1/stats", params={**WINDOW, "bucket": "hour"}, headers=a.as_admin)

    assert response.status_code == 200
    starts = [entry["start"][:16] for entry in response.json()["leads"]]
    assert starts == [
        "2026-01-01T10:00", "2026-01-01T11:00", "2026-01-01T12:00",
        "2026-01-02T09:00", "2026-01-02T10:00", "2026-01-02T11:00",
    ]  # fmt: skip


async def test_stats_default_to_the_last_30_days(http: httpx.AsyncClient, a: Tenant) -> None:
    response = await http.get("/v1/stats", headers=a.as_member)
    assert response.status_code == 200
    body = response.json()
    span = datetime.fromisoformat(body["to"]) - datetime.fromisoformat(body["from"])
    assert span.days == 30
    assert body["bucket"] == "day"
    assert body["funnel"] == {"received": 0, "qualified": 0, "contacted": 0, "delivered": 0}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-01-03", "to": "2026-01-01"}, "from"),
        ({"from": "2025-01-01", "to": "2026-02-06"}, "from"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"to": "0001-01-01"}, "to"),  # the default from, 30 days before, is no datetime
        ({"to": "0001-01-01T00:00:00+05:00"}, "to"),
        ({"from": "9999-12-31"}, "from"),
        ({"from": "9999-12-31T23:00:00-05:00", "to": "9999-12-31T23:59:59"}, "to"),
        ({"from": "1999-12-31", "to": "2000-01-02"}, "from"),
        ({"from": "2999-12-31", "to": "3000-01-01"}, "to"),
        ({"bucket": "week"}, "bucket"),
    ],
)
async def test_bad_stats_parameters_are_400_naming_the_field(
    http: httpx.AsyncClient, a: Tenant, params: dict[str, str], field: str
) -> None:
    response = await http.get("/v1/stats", params=params, headers=a.as_member)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == field


async def test_a_range_of_exactly_400_days_is_accepted(http: httpx.AsyncClient, a: Tenant) -> None:
    response = await http.get(
        "/v1/stats", params={"from": "2025-01-01", "to": "2026-02-05"}, headers=a.as_member
    )
    assert response.status_code == 200


# ---------------------------------------------------------------- suppressions


async def test_suppressions_are_paged_newest_first_by_cursor(
    http: httpx.AsyncClient, a: Tenant, b: Tenant, migrated_db: str
) -> None:
    old = await _suppression(migrated_db, a, "old@x.example", "2026-01-01T00:00:00Z")
    mid = await _suppression(migrated_db, a, "mid@x.example", "2026-01-02T00:00:00Z")
    new = await _suppression(migrated_db, a, "new@x.example", "2026-01-03T00:00:00Z")
    await _suppression(migrated_db, b, "b@x.example", "2026-01-04T00:00:00Z")

    first = await http.get("/v1/suppressions", params={"limit": 2}, headers=a.as_member)
    assert first.status_code == 200
    page = first.json()
    assert [row["id"] for row in page["data"]] == [str(new), str(mid)]
    assert page["data"][0] == {
        "id": str(new),
        "channel": "email",
        "recipient": "new@x.example",
        "reason": "bounce",
        "source": None,
        "created_at": "2026-01-03T00:00:00+00:00",
    }
    second = await http.get(
        "/v1/suppressions",
        params={"limit": 2, "cursor": page["next_cursor"]},
        headers=a.as_member,
    )
    assert second.json() == {"data": [second.json()["data"][0]], "next_cursor": None}
    assert second.json()["data"][0]["id"] == str(old)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "\u00b2"}, "limit"),  # a digit to str.isdigit(), not to int()
        ({"limit": "\u0661"}, "limit"),  # ARABIC-INDIC ONE: int() reads it, we do not
        ({"limit": "9" * 5000}, "limit"),  # past int()'s 4,300 digits
        ({"limit": " 5"}, "limit"),
        ({"limit": "+5"}, "limit"),
    ],
)
async def test_bad_suppression_paging_is_400_naming_the_field(
    http: httpx.AsyncClient, a: Tenant, params: dict[str, str], field: str
) -> None:
    response = await http.get("/v1/suppressions", params=params, headers=a.as_member)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == field


async def test_an_admin_lifts_a_suppression_and_it_is_audited(
    http: httpx.AsyncClient, a: Tenant, migrated_db: str
) -> None:
    lifted = await _suppression(migrated_db, a, "ann@x.example", "2026-01-01T00:00:00Z")

    response = await http.delete(f"/v1/suppressions/{lifted}", headers=a.as_admin)

    assert response.status_code == 204
    assert await _rows(migrated_db, "SELECT 1 FROM public.suppressions WHERE id = %s", lifted) == []
    assert await _audit(migrated_db, a) == [
        (
            a.admin,
            "suppression.delete",
            lifted,
            {"channel": "email", "recipient": "ann@x.example", "reason": "bounce"},
        )
    ]


async def test_an_admin_of_a_cannot_lift_bs_suppression(
    http: httpx.AsyncClient, a: Tenant, b: Tenant, migrated_db: str
) -> None:
    kept = await _suppression(migrated_db, b, "bob@x.example", "2026-01-01T00:00:00Z")

    response = await http.delete(f"/v1/suppressions/{kept}", headers=a.as_admin)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert (
        len(await _rows(migrated_db, "SELECT 1 FROM public.suppressions WHERE id = %s", kept)) == 1
    )
    assert await _audit(migrated_db, a) == []


async def test_a_malformed_id_is_404(http: httpx.AsyncClient, a: Tenant) -> None:
    response = await http.delete("/v1/suppressions/not-a-uuid", headers=a.as_admin)
    assert response.status_code == 404


# ---------------------------------------------------------------- retry


async def test_an_admin_retries_a_failed_communication_and_it_is_audited(
    http: httpx.AsyncClient, a: Tenant, migrated_db: str
) -> None:
    lead = await _lead(migrated_db, a, "qualified", "2026-01-01T10:00:00Z")
    failed = await _communication(migrated_db, a, lead, status="failed", provider="resend")

    response = await http.post(f"/v1/communications/{failed}/retry", headers=a.as_admin)

    assert response.status_code == 200, response.text
    assert response.json() == {"id": str(failed), "status": "pending"}
    assert await _rows(
        migrated_db, "SELECT status, retry_count FROM public.communications WHERE id = %s", failed
    ) == [("pending", 0)]
    queued = "SELECT client_id FROM public.delivery_queue WHERE communication_id = %s"
    assert await _rows(migrated_db, queued, failed) == [(a.client,)]
    assert await _audit(migrated_db, a) == [
        (a.admin, "communication.retry", failed, {"previous_status": "failed"})
    ]


async def test_two_concurrent_retries_queue_the_message_once(
    http: httpx.AsyncClient, a: Tenant, migrated_db: str
) -> None:
    lead = await _lead(migrated_db, a, "qualified", "2026-01-01T10:00:00Z")
    failed = await _communication(migrated_db, a, lead, status="failed", provider="resend")
    path = f"/v1/communications/{failed}/retry"

    answers = await asyncio.gather(
        http.post(path, headers=a.as_admin), http.post(path, headers=a.as_admin)
    )

    assert sorted(r.status_code for r in answers) == [200, 409]
    queued = "SELECT 1 FROM public.delivery_queue WHERE communication_id = %s"
    assert len(await _rows(migrated_db, queued, failed)) == 1
    assert [action for _, action, _, _ in await _audit(migrated_db, a)] == ["communication.retry"]


async def test_two_concurrent_revocations_revoke_and_audit_once(
    http: httpx.AsyncClient, a: Tenant, migrated_db: str
) -> None:
    created = await http.post("/v1/keys", headers=a.as_admin, json={})
    path = f"/v1/keys/{created.json()['id']}"

    answers = await asyncio.gather(
        http.delete(path, headers=a.as_admin), http.delete(path, headers=a.as_admin)
    )

    assert sorted(r.status_code for r in answers) == [204, 409]
    actions = [action for _, action, _, _ in await _audit(migrated_db, a)]
    assert actions == ["api_key.create", "api_key.revoke"]


@pytest.mark.parametrize(("status", "content"), [("delivered", "Hello"), ("failed", None)])
async def test_a_communication_that_is_not_retryable_is_409(
    http: httpx.AsyncClient, a: Tenant, migrated_db: str, status: str, content: str | None
) -> None:
    lead = await _lead(migrated_db, a, "qualified", "2026-01-01T10:00:00Z")
    left = await _communication(migrated_db, a, lead, status=status, content=content)

    response = await http.post(f"/v1/communications/{left}/retry", headers=a.as_admin)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_retryable"
    stored = "SELECT status FROM public.communications WHERE id = %s"
    assert await _rows(migrated_db, stored, left) == [(status,)]
    assert await _audit(migrated_db, a) == []


async def test_an_admin_of_a_cannot_retry_bs_communication(
    http: httpx.AsyncClient, a: Tenant, b: Tenant, migrated_db: str
) -> None:
    lead = await _lead(migrated_db, b, "qualified", "2026-01-01T10:00:00Z")
    failed = await _communication(migrated_db, b, lead, status="failed")

    response = await http.post(f"/v1/communications/{failed}/retry", headers=a.as_admin)

    assert response.status_code == 404
    stored = "SELECT status FROM public.communications WHERE id = %s"
    assert await _rows(migrated_db, stored, failed) == [("failed",)]


# ---------------------------------------------------------------- API keys


async def test_a_new_key_is_shown_once_and_sends_leads_until_revoked(
    http: httpx.AsyncClient, a: Tenant, migrated_db: str
) -> None:
    created = await http.post(
        "/v1/keys", headers=a.as_admin, json={"name": "web form", "rate_limit_per_minute": 60}
    )
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    body = created.json()
    key, key_id = body["key"], body["id"]
    assert key.startswith("lqs_")
    assert body["prefix"] == key[:12]
    assert (body["name"], body["rate_limit_per_minute"]) == ("web form", 60)

    listed = await http.get("/v1/keys", headers=a.as_member)
    assert listed.status_code == 200
    [shown] = listed.json()["data"]
    assert shown["id"] == key_id
    assert "key" not in shown
    assert key not in listed.text

    lead = await http.post(
        "/v1/leads", headers={"Authorization": f"Bearer {key}"}, json={"email": "k@lead.example"}
    )
    assert lead.status_code == 201
    assert await _rows(
        migrated_db, "SELECT client_id FROM public.leads WHERE id = %s", UUID(lead.json()["id"])
    ) == [(a.client,)]

    revoked = await http.delete(f"/v1/keys/{key_id}", headers=a.as_admin)
    assert revoked.status_code == 204
    refused = await http.post(
        "/v1/leads", headers={"Authorization": f"Bearer {key}"}, json={"email": "k@lead.example"}
    )
    assert refused.status_code == 401
    again = await http.delete(f"/v1/keys/{key_id}", headers=a.as_admin)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_revoked"

    audit = await _audit(migrated_db, a)
    assert [(user, action, str(target)) for user, action, target, _ in audit] == [
        (a.admin, "api_key.create", key_id),
        (a.admin, "api_key.revoke", key_id),
    ]
    assert all(key not in str(detail) for *_, detail in audit)


async def test_an_admin_of_a_cannot_revoke_bs_key(
    http: httpx.AsyncClient, a: Tenant, b: Tenant, migrated_db: str
) -> None:
    created = await http.post("/v1/keys", headers=b.as_admin, json={})
    assert created.status_code == 201
    b_key = created.json()["id"]

    response = await http.delete(f"/v1/keys/{b_key}", headers=a.as_admin)

    assert response.status_code == 404
    stored = "SELECT revoked_at FROM public.api_keys WHERE id = %s"
    assert await _rows(migrated_db, stored, UUID(b_key)) == [(None,)]
    listed = await http.get("/v1/keys", headers=a.as_admin)
    assert listed.json() == {"data": []}


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"name": ""}, ["name"]),
        ({"name": 5, "rate_limit_per_minute": 0}, ["name", "rate_limit_per_minute"]),
        ({"rate_limit_per_minute": True}, ["rate_limit_per_minute"]),
        ({"scope": "all"}, ["scope"]),
        ([], ["body"]),
    ],
)
async def test_a_bad_key_request_is_400_naming_each_field(
    http: httpx.AsyncClient, a: Tenant, migrated_db: str, body: Any, fields: list[str]
) -> None:
    response = await http.post("/v1/keys", headers=a.as_admin, json=body)
    assert response.status_code == 400
    assert [f["field"] for f in response.json()["error"]["fields"]] == fields
    assert (
        await _rows(migrated_db, "SELECT 1 FROM public.api_keys WHERE client_id = %s", a.client)
        == []
    )


# ---------------------------------------------------------------- rules tester


async def _counts(url: str, tenant: Tenant) -> list[tuple[Any, ...]]:
    return await _rows(
        url,
        "SELECT (SELECT count(*) FROM public.leads WHERE client_id = %s),"
        " (SELECT count(*) FROM public.communications WHERE client_id = %s)",
        tenant.client, tenant.client,
    )  # fmt: skip


async def test_the_rules_tester_scores_a_lead_under_the_default_rules_and_stores_nothing(
    http: httpx.AsyncClient, a: Tenant, migrated_db: str
) -> None:
    before = await _counts(migrated_db, a)

    response = await http.post(
        "/v1/rules/test", headers=a.as_member, json={"email": "ann@mailinator.com"}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["outcome"], body["score"], body["grade"], body["rules"]) == (
        "disqualified", 0, "D", "default",
    )  # fmt: skip
    assert [entry["rule_id"] for entry in body["breakdown"]] == ["disposable-email"]
    assert await _counts(migrated_db, a) == before


async def test_the_rules_tester_uses_the_clients_own_rules(
    http: httpx.AsyncClient, migrated_db: str
) -> None:
    rules = {
        "thresholds": {"qualified": 10, "nurture": 5},
        "rules": [{"id": "cto", "field": "job_title", "when": {"contains": "CTO"}, "points": 10,
                   "reason": "Decision maker"}],
    }  # fmt: skip
    tenant = await _new_tenant(migrated_db, {"scoring_rules": rules})

    response = await http.post(
        "/v1/rules/test",
        headers=tenant.as_member,
        json={"phone": "+12015550123", "job_title": "CTO"},
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["outcome"], body["score"], body["rules"]) == ("qualified", 10, "client")
    assert body["breakdown"] == [
        {"rule_id": "cto", "rule_version": 1, "field": "job_title", "value": "CTO",
         "points": 10, "reason": "Decision maker"},
    ]  # fmt: skip


async def test_a_bad_lead_is_400_naming_its_fields(http: httpx.AsyncClient, a: Tenant) -> None:
    response = await http.post(
        "/v1/rules/test", headers=a.as_member, json={"email": "nope", "country": "USA"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_lead"
    assert {f["field"] for f in error["fields"]} == {"email", "country"}


async def test_broken_stored_rules_are_409(http: httpx.AsyncClient, migrated_db: str) -> None:
    tenant = await _new_tenant(migrated_db, {"scoring_rules": {"rules": "not a list"}})
    response = await http.post(
        "/v1/rules/test", headers=tenant.as_member, json={"email": "a@b.example"}
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_scoring_rules"


# ---------------------------------------------------------------- the pieces underneath


async def test_as_service_role_returns_to_the_user_within_the_transaction(
    pool: Any, a: Tenant, b: Tenant, migrated_db: str
) -> None:
    b_lead = await _lead(migrated_db, b, "qualified", "2026-01-01T10:00:00Z")
    seen = "SELECT count(*) FROM public.leads WHERE id = %s"
    async with tenant_session(pool, a.admin) as conn:
        async with as_service_role(conn):
            assert await _one(conn, "SELECT current_user") == "service_role"
            assert await _one(conn, seen, b_lead) == 1
        assert await _one(conn, "SELECT current_user") == "authenticated"
        assert await _one(conn, "SELECT auth.uid()") == a.admin
        assert await _one(conn, seen, b_lead) == 0


async def test_the_openapi_document_is_valid_and_declares_the_user_token(
    http: httpx.AsyncClient,
) -> None:
    document = (await http.get("/openapi.json")).json()
    validate(document)
    assert document["components"]["securitySchemes"]["userToken"]["bearerFormat"] == "JWT"
    for path, method in [
        ("/v1/stats", "get"), ("/v1/suppressions", "get"),
        ("/v1/suppressions/{suppression_id}", "delete"),
        ("/v1/communications/{communication_id}/retry", "post"), ("/v1/keys", "get"),
        ("/v1/keys", "post"), ("/v1/keys/{key_id}", "delete"), ("/v1/rules/test", "post"),
    ]:  # fmt: skip
        operation = document["paths"][path][method]
        assert operation["security"] == [{"userToken": []}], path
        assert any("example" in c for r in operation["responses"].values()
                   for c in r.get("content", {}).values()), path  # fmt: skip
