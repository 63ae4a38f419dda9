"""The dashboard's suppressions, dead letters, API keys and rules tester pages, in process,
on a real database, for two clients that each have an admin and a member.

A browser's session is its cookie (a user's token signed with a generated secret); its
forms carry the CSRF token the page gave. The actions are the tenant API's own
(:mod:`lqs.api.tenant_actions`); the assertions read what is stored as the superuser.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from psycopg.types.json import Jsonb

from lqs.api.app import create_app
from lqs.api.browser_session import SESSION_COOKIE
from lqs.api.tokens import TokenVerifier
from lqs.db.clients import hash_api_key
from tests.configs import api_config

pytestmark = pytest.mark.asyncio(loop_scope="module")

SECRET = secrets.token_urlsafe(48)
VERIFIER = TokenVerifier(secret=SECRET)


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


@pytest.fixture(autouse=True)
def no_cookies_kept(http: httpx.AsyncClient) -> None:
    http.cookies.clear()


# ---------------------------------------------------------------- tenants and their data


@dataclass(frozen=True)
class Tenant:
    client: UUID
    admin: UUID
    member: UUID


@functools.cache
def session(user: UUID) -> dict[str, str]:
    """The user's browser session: one token per user, as a browser keeps its cookie (a
    token issued a second later is another session, and the page's CSRF token is bound
    to the first)."""
    token, _ = VERIFIER.issue(user)
    return {"cookie": f"{SESSION_COOKIE}={token}"}


def form_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


async def _superuser(url: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(url, autocommit=True)


async def _one(url: str, query: str, *params: Any) -> Any:
    async with await _superuser(url) as conn:
        cur = await conn.execute(query.encode(), params)
        row = await cur.fetchone()
    assert row is not None
    return row[0]


async def _rows(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await _superuser(url) as conn:
        cur = await conn.execute(query.encode(), params)
        return await cur.fetchall()


async def _new_tenant(url: str, settings: dict[str, Any] | None = None) -> Tenant:
    slug = f"t-{uuid4().hex[:12]}"
    client = await _one(
        url,
        "INSERT INTO public.clients (name, slug, settings) VALUES (%s, %s, %s) RETURNING id",
        slug, slug, Jsonb(settings or {}),
    )  # fmt: skip
    admin, member = uuid4(), uuid4()
    async with await _superuser(url) as conn:
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


async def _suppression(url: str, tenant: Tenant, recipient: str) -> UUID:
    suppression: UUID = await _one(
        url,
        "INSERT INTO public.suppressions (client_id, channel, recipient, reason)"
        " VALUES (%s, 'email', %s, 'bounce') RETURNING id",
        tenant.client, recipient,
    )  # fmt: skip
    return suppression


async def _failed_communication(url: str, tenant: Tenant, error: str = "mailbox full") -> UUID:
    email = f"{uuid4().hex[:10]}@lead.example"
    lead = await _one(
        url,
        "INSERT INTO public.leads (client_id, email, dedupe_key, status)"
        " VALUES (%s, %s, %s, 'qualified') RETURNING id",
        tenant.client, email, f"email:{email}",
    )  # fmt: skip
    communication: UUID = await _one(
        url,
        "INSERT INTO public.communications"
        " (lead_id, client_id, type, recipient, status, content, error_message)"
        " VALUES (%s, %s, 'email', %s, 'failed', 'Hello', %s) RETURNING id",
        lead, tenant.client, email, error,
    )  # fmt: skip
    return communication


async def _key(url: str, tenant: Tenant) -> UUID:
    key: UUID = await _one(
        url,
        "INSERT INTO public.api_keys (client_id, name, prefix, key_hash)"
        " VALUES (%s, 'old form', %s, %s) RETURNING id",
        tenant.client, f"lqs_{uuid4().hex[:8]}", secrets.token_bytes(32),
    )  # fmt: skip
    return key


async def _audit(url: str, tenant: Tenant) -> list[tuple[Any, ...]]:
    return await _rows(
        url,
        "SELECT user_id, action, target_id FROM public.audit_log WHERE client_id = %s ORDER BY id",
        tenant.client,
    )


async def _post(
    http: httpx.AsyncClient, user: UUID, page: str, action: str, **fields: str
) -> httpx.Response:
    """Open ``page`` as ``user``, then post ``fields`` to ``action`` with the page's token."""
    opened = await http.get(page, headers=session(user))
    token = form_token(opened.text)
    return await http.post(action, data={"csrf_token": token, **fields}, headers=session(user))


# ---------------------------------------------------------------- who may see what

# A fixed id (no such key): parallel workers must collect the same test names.
ADMIN_PAGES = [
    "/app/dead-letters",
    "/app/keys",
    "/app/keys/0b1e5c1d-0000-4000-8000-000000000002/revoke",
]


@pytest.mark.parametrize("path", ADMIN_PAGES)
async def test_a_member_opening_an_admin_page_gets_a_403_page(
    http: httpx.AsyncClient, a: Tenant, path: str
) -> None:
    response = await http.get(path, headers=session(a.member))

    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert "Only your organisation&#39;s owners and admins" in response.text


async def test_admins_see_the_admin_links_and_members_do_not(
    http: httpx.AsyncClient, a: Tenant
) -> None:
    as_admin = await http.get("/app/suppressions", headers=session(a.admin))
    as_member = await http.get("/app/suppressions", headers=session(a.member))

    for link in ('href="/app/dead-letters"', 'href="/app/keys"'):
        assert link in as_admin.text
        assert link not in as_member.text
    assert 'href="/app/rules-test"' in as_member.text


async def test_without_a_session_an_admin_page_redirects_to_sign_in(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get("/app/dead-letters")

    assert response.status_code == 303
    assert response.headers["location"] == "/app/login"


# ---------------------------------------------------------------- suppressions


async def test_suppressions_list_the_clients_own_with_remove_for_admins_only(
    http: httpx.AsyncClient, migrated_db: str, a: Tenant, b: Tenant
) -> None:
    await _suppression(migrated_db, a, "ann@a.example")
    await _suppression(migrated_db, b, "bob@b.example")

    as_admin = await http.get("/app/suppressions", headers=session(a.admin))
    as_member = await http.get("/app/suppressions", headers=session(a.member))

    assert as_admin.status_code == as_member.status_code == 200
    assert "ann@a.example" in as_admin.text
    assert "ann@a.example" in as_member.text
    assert "bob@b.example" not in as_admin.text
    assert ">Remove</button>" in as_admin.text
    assert ">Remove</button>" not in as_member.text


async def test_suppressions_empty_state(http: httpx.AsyncClient, a: Tenant) -> None:
    response = await http.get("/app/suppressions", headers=session(a.member))

    assert response.status_code == 200
    assert "No suppressions" in response.text


async def test_suppressions_are_paged_by_cursor(
    http: httpx.AsyncClient, migrated_db: str, a: Tenant
) -> None:
    for n in range(51):
        await _suppression(migrated_db, a, f"r{n}@a.example")

    first = await http.get("/app/suppressions", headers=session(a.member))
    found = re.search(r'href="/app/suppressions\?cursor=([^"]+)" rel="next"', first.text)
    assert found
    second = await http.get(f"/app/suppressions?cursor={found.group(1)}", headers=session(a.member))

    assert first.text.count("@a.example</td>") == 50
    assert second.text.count("@a.example</td>") == 1
    assert 'rel="next"' not in second.text


async def test_a_cursor_this_service_did_not_make_is_a_400_page(
    http: httpx.AsyncClient, a: Tenant
) -> None:
    response = await http.get("/app/suppressions?cursor=forged", headers=session(a.member))

    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")


async def test_an_admin_removes_a_suppression_and_it_is_audited(
    http: httpx.AsyncClient, migrated_db: str, a: Tenant
) -> None:
    suppression = await _suppression(migrated_db, a, "ann@a.example")

    response = await _post(
        http, a.admin, "/app/suppressions", f"/app/suppressions/{suppression}/remove"
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/app/suppressions?done=removed"
    assert await _rows(migrated_db, "SELECT 1 FROM suppressions WHERE id = %s", suppression) == []
    assert await _audit(migrated_db, a) == [(a.admin, "suppression.delete", suppression)]
    after = await http.get(response.headers["location"], headers=session(a.admin))
    assert "The suppression was removed" in after.text


async def test_removing_without_the_csrf_token_is_403_and_changes_nothing(
    http: httpx.AsyncClient, migrated_db: str, a: Tenant
) -> None:
    suppression = await _suppression(migrated_db, a, "ann@a.example")

    response = await http.post(f"/app/suppressions/{suppression}/remove", headers=session(a.admin))

    assert response.status_code == 403
    assert len(await _rows(migrated_db, "SELECT 1 FROM suppressions WHERE id = %s", suppression))
    assert await _audit(migrated_db, a) == []


async def test_a_csrf_token_of_another_session_is_403(
    http: httpx.AsyncClient, migrated_db: str, a: Tenant
) -> None:
    suppression = await _suppression(migrated_db, a, "ann@a.example")
    others = form_token((await http.get("/app/suppressions", headers=session(a.member))).text)

    response = await http.post(
        f"/app/suppressions/{suppression}/remove",
        data={"csrf_token": others},
        headers=session(a.admin),
    )

    assert response.status_code == 403
    assert len(await _rows(migrated_db, "SELECT 1 FROM suppressions WHERE id = %s", suppression))


async def test_a_members_forged_remove_is_403_and_changes_nothing(
    http: httpx.AsyncClient, migrated_db: str, a: Tenant
) -> None:
    suppression = await _suppression(migrated_db, a, "ann@a.example")

    response = await _post(
        http, a.member, "/app/suppressions", f"/app/suppressions/{suppression}/remove"
    )

    assert response.status_code == 403
    assert len(await _rows(migrated_db, "SELECT 1 FROM suppressions WHERE id = %s", suppression))
    assert await _audit(migrated_db, a) == []


async def test_an_admin_of_a_removing_bs_suppression_gets_404(
    http: httpx.AsyncClient, migrated_db: str, a: Tenant, b: Tenant
) -> None:
    suppression = await _suppression(migrated_db, b, "bob@b.example")

    response = await _post(
        http, a.admin, "/app/suppressions", f"/app/suppressions/{suppression}/remove"
    )

    assert response.status_code == 404
    assert len(await _rows(migrated_db, "SELECT 1 FROM suppressions WHERE id = %s", suppression))
    assert await _audit(migrated_db, b) == []


# ---------------------------------------------------------------- dead letters


async def test_dead_letters_list_failed_communications_with_their_reason(
    http: httpx.AsyncClient, migrated_db: str, a: Tenant, b: Tenant
) -> None:
    await _failed_communication(migrated_db, a, "mailbox full")
    await _failed_communication(migrated_db, b, "b's secret failure")

    response = await http.get("/app/dead-letters", headers=session(a.admin))

    assert response.status_code == 200
    assert "mailbox full" in response.text
    assert "b&#39;s secret failure" not in response.text
    assert ">Retry</button>" in response.text


async def test_dead_letters_empty_state(http: httpx.AsyncClient, a: Tenant) -> None:
    response = await http.get("/app/dead-letters", headers=session(a.admin))

    assert "No failed communications" in response.text


async def test_retry_from_htmx_answers_the_row_queued_again_and_is_audited(
    http: httpx.AsyncClient, migrated_db: str, a: Tenant
) -> None:
    communication = await _failed_communication(migrated_db, a)
    token = form_token((await http.get("/app/dead-letters", headers=session(a.admin))).text)

    response = await http.post(
        f"/app/dead-letters/{communication}/retry",
        headers={**session(a.admin), "HX-Request": "true", "X-CSRF-Token": token},
    )

    assert response.status_code == 200
    assert response.text.strip().startswith(f'<tr id="communication-{communication}">')
    assert "<strong>pending</strong>" in response.text
    stored = await _one(
        migrated_db, "SELECT status FROM communications WHERE id = %s", communication
    )
    assert stored == "pending"
    assert await _audit(migrated_db, a) == [(a.admin, "communication.retry", communication)]


async def test_retry_from_a_plain_form_redirects_with_a_notice(
    http: httpx.AsyncClient, migrated_db: str, a: Tenant
) -> None:
    communication = await _failed_communication(migrated_db, a)

    response = await _post(
        http, a.admin, "/app/dead-letters", f"/app/dead-letters/{communication}/retry"
    )

    assert response.status_code == 303
    after = await http.get(response.headers["location"], headers=session(a.admin))
    assert "queued again" in after.text
    assert str(communication) not in after.text


async def test_retrying_twice_from_htmx_says_why_not_in_the_row(
    http: httpx.AsyncClient, migrated_db: str, a: Tenant
) -> None:
    communication = await _failed_communication(migrated_db, a)
    token = form_token((await http.get("/app/dead-letters", headers=session(a.admin))).text)
    headers = {**session(a.admin), "HX-Request": "true", "X-CSRF-Token": token}
    await http.post(f"/app/dead-letters/{communication}/retry", headers=headers)

    again = await http.post(f"/app/dead-letters/{communication}/retry", headers=headers)

    assert again.status_code == 200
    assert "Not retried" in again.text
    assert len(await _audit(migrated_db, a)) == 1


async def test_retry_without_the_csrf_token_is_403(
    http: httpx.AsyncClient, migrated_db: str, a: Tenant
) -> None:
    communication = await _failed_communication(migrated_db, a)

    response = await http.post(
        f"/app/dead-letters/{communication}/retry",
        headers={**session(a.admin), "HX-Request": "true"},
    )

    assert response.status_code == 403
    stored = await _one(
        migrated_db, "SELECT status FROM communications WHERE id = %s", communication
    )
    assert stored == "failed"


async def test_a_members_forged_retry_is_403(
    http: httpx.AsyncClient, migrated_db: str, a: Tenant
) -> None:
    communication = await _failed_communication(migrated_db, a)

    response = await _post(
        http, a.member, "/app/suppressions", f"/app/dead-letters/{communication}/retry"
    )

    assert response.status_code == 403
    assert await _audit(migrated_db, a) == []


async def test_an_admin_of_a_retrying_bs_communication_gets_404(
    http: httpx.AsyncClient, migrated_db: str, a: Tenant, b: Tenant
) -> None:
    communication = await _failed_communication(migrated_db, b)

    response = await _post(
        http, a.admin, "/app/dead-letters", f"/app/dead-letters/{communication}/retry"
    )

    assert response.status_code == 404
    stored = await _one(
        migrated_db, "SELECT status FROM communications WHERE id = %s", communication
    )
    assert stored == "failed"


# ---------------------------------------------------------------- API keys


async def test_creating_a_key_shows_it_once_uncached_and_audits(
    http: httpx.AsyncClient, migrated_db: str, a: Tenant
) -> None:
    response = await _post(
        http, a.admin, "/app/keys", "/app/keys", name="website form", rate_limit_per_minute="120"
    )

    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"
    shown = re.search(r'id="new-key"[^>]* value="(lqs_[^"]+)"', response.text)
    assert shown
    listing = await http.get("/app/keys", headers=session(a.admin))
    assert "website form" in listing.text
    assert shown.group(1) not in listing.text
    [(user, action, key)] = await _audit(migrated_db, a)
    assert (user, action) == (a.admin, "api_key.create")
    assert (
        await _one(migrated_db, "SELECT rate_limit_per_minute FROM api_keys WHERE id = %s", key)
        == 120
    )


async def test_a_key_without_a_name_shows_the_error_next_to_the_field(
    http: httpx.AsyncClient, migrated_db: str, a: Tenant
) -> None:
    response = await _post(
        http, a.admin, "/app/keys", "/app/keys", name=" ", rate_limit_per_minute="many"
    )

    assert response.status_code == 422
    assert 'id="key-name-error"' in response.text
    assert 'id="key-rate-error"' in response.text
    assert "must be a whole number" in response.text
    assert await _audit(migrated_db, a) == []


@pytest.mark.parametrize("rate", ["\u00b2", "9" * 5000, "\u0661\u0662"])
async def test_a_rate_int_cannot_read_shows_the_error_next_to_the_field(
    http: httpx.AsyncClient, migrated_db: str, a: Tenant, rate: str
) -> None:
    response = await _post(
        http, a.admin, "/app/keys", "/app/keys", name="web form", rate_limit_per_minute=rate
    )

    assert response.status_code == 422
    assert 'id="key-rate-error"' in response.text
    assert "must be a whole number" in response.text
    assert await _audit(migrated_db, a) == []


async def test_a_members_forged_key_creation_is_403(
    http: httpx.AsyncClient, migrated_db: str, a: Tenant
) -> None:
    response = await _post(
        http, a.member, "/app/suppressions", "/app/keys", name="mine", rate_limit_per_minute="60"
    )

    assert response.status_code == 403
    assert await _rows(migrated_db, "SELECT 1 FROM api_keys WHERE client_id = %s", a.client) == []


async def test_revoking_asks_first_then_revokes_and_audits(
    http: httpx.AsyncClient, migrated_db: str, a: Tenant
) -> None:
    key = await _key(migrated_db, a)

    confirm = await http.get(f"/app/keys/{key}/revoke", headers=session(a.admin))
    response = await _post(http, a.admin, f"/app/keys/{key}/revoke", f"/app/keys/{key}/revoke")

    assert confirm.status_code == 200
    assert "Revoke the key" in confirm.text
    assert response.status_code == 303
    assert response.headers["location"] == "/app/keys?done=revoked"
    assert await _one(migrated_db, "SELECT revoked_at IS NOT NULL FROM api_keys WHERE id = %s", key)
    assert await _audit(migrated_db, a) == [(a.admin, "api_key.revoke", key)]


async def test_a_key_revoked_on_the_page_is_refused_by_intake_at_once(
    http: httpx.AsyncClient, migrated_db: str, a: Tenant
) -> None:
    plaintext = "lqs_" + secrets.token_urlsafe(32)
    key: UUID = await _one(
        migrated_db,
        "INSERT INTO public.api_keys (client_id, name, prefix, key_hash)"
        " VALUES (%s, 'page', %s, %s) RETURNING id",
        a.client, plaintext[:12], hash_api_key(plaintext),
    )  # fmt: skip
    bearer = {"Authorization": f"Bearer {plaintext}"}
    accepted = await http.post("/v1/leads", headers=bearer, json={"email": "p1@lead.example"})

    await _post(http, a.admin, f"/app/keys/{key}/revoke", f"/app/keys/{key}/revoke")
    refused = await http.post("/v1/leads", headers=bearer, json={"email": "p2@lead.example"})

    assert (accepted.status_code, refused.status_code) == (201, 401)


async def test_revoking_without_the_csrf_token_is_403(
    http: httpx.AsyncClient, migrated_db: str, a: Tenant
) -> None:
    key = await _key(migrated_db, a)

    response = await http.post(f"/app/keys/{key}/revoke", headers=session(a.admin))

    assert response.status_code == 403
    assert not await _one(
        migrated_db, "SELECT revoked_at IS NOT NULL FROM api_keys WHERE id = %s", key
    )


async def test_an_admin_of_a_revoking_bs_key_gets_404(
    http: httpx.AsyncClient, migrated_db: str, a: Tenant, b: Tenant
) -> None:
    key = await _key(migrated_db, b)

    confirm = await http.get(f"/app/keys/{key}/revoke", headers=session(a.admin))
    response = await _post(http, a.admin, "/app/keys", f"/app/keys/{key}/revoke")

    assert confirm.status_code == 404
    assert response.status_code == 404
    assert not await _one(
        migrated_db, "SELECT revoked_at IS NOT NULL FROM api_keys WHERE id = %s", key
    )


async def test_revoking_a_revoked_key_is_409(
    http: httpx.AsyncClient, migrated_db: str, a: Tenant
) -> None:
    key = await _key(migrated_db, a)
    await _post(http, a.admin, "/app/keys", f"/app/keys/{key}/revoke")

    again = await _post(http, a.admin, "/app/keys", f"/app/keys/{key}/revoke")

    assert again.status_code == 409
    assert len(await _audit(migrated_db, a)) == 1


# ---------------------------------------------------------------- rules tester


async def test_the_rules_tester_scores_with_a_breakdown_and_stores_nothing(
    http: httpx.AsyncClient, migrated_db: str, a: Tenant
) -> None:
    response = await _post(
        http, a.member, "/app/rules-test", "/app/rules-test",
        email="ann@acme.example", job_title="CTO", country="US", company_name="Acme",
    )  # fmt: skip

    assert response.status_code == 200, response.text
    assert re.search(r'id="result-score">\d+<', response.text)
    assert 'id="breakdown"' in response.text
    assert 'value="ann@acme.example"' in response.text
    assert await _rows(migrated_db, "SELECT 1 FROM leads WHERE client_id = %s", a.client) == []


async def test_the_rules_tester_shows_bad_fields_next_to_them(
    http: httpx.AsyncClient, a: Tenant
) -> None:
    response = await _post(
        http,
        a.member,
        "/app/rules-test",
        "/app/rules-test",
        email="ann@acme.example",
        country="ZZZ",
    )

    assert response.status_code == 422
    assert 'id="lead-country-error"' in response.text
    assert 'aria-invalid="true" aria-describedby="lead-country-error"' in response.text
    assert 'id="result"' not in response.text


async def test_the_rules_tester_without_email_or_phone_says_so_at_the_top(
    http: httpx.AsyncClient, a: Tenant
) -> None:
    response = await _post(http, a.member, "/app/rules-test", "/app/rules-test", job_title="CTO")

    assert response.status_code == 422
    assert "a lead needs an email or a phone" in response.text


async def test_the_rules_tester_without_the_csrf_token_is_403(
    http: httpx.AsyncClient, a: Tenant
) -> None:
    response = await http.post(
        "/app/rules-test", data={"email": "ann@acme.example"}, headers=session(a.member)
    )

    assert response.status_code == 403
