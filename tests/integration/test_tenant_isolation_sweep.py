"""One client's users never see another client's data, on every route: a sweep.

Two clients, A and B, each with an admin and a member, leads, communications (some
failed), suppressions, API keys and audit entries. The routes are read from the app
itself (every route under ``/v1`` and ``/app`` but the intake POSTs), and each must be
listed in :data:`ROUTES` with the kind of id each path parameter takes: a route added
later fails :func:`test_every_route_under_v1_and_app_is_classified` until it is, and is
then swept like the others:

- user A with B's ids in the path: 404 (403 for a member on an admin's route), and the
  body names nothing of B's (ids, emails, names);
- listings as A: nothing of B's; as the service role: both clients' rows;
- a signed-in user with no profile (no client): 403 ``no_profile`` (404 for an id), nothing
  of A's or B's;
- no token, or a forged, expired, other-audience or ``anon`` token: 401 for the API, a
  redirect to the sign-in form for the dashboard's pages.

The last tests call every read function of :mod:`lqs.db.tenant_reads` and
:mod:`lqs.db.tenant_stats` in A's ``tenant_session`` with no client of A's in the SQL:
row-level security alone keeps B's rows out.
"""

from __future__ import annotations

import inspect
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args
from uuid import UUID

import httpx
import jwt
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from lqs.api.app import create_app
from lqs.api.browser_session import CSRF_HEADER, SESSION_COOKIE, CsrfTokens
from lqs.api.pages.layout import PAGES_PREFIX
from lqs.api.tokens import TokenVerifier
from lqs.db import tenant_reads, tenant_stats
from lqs.db.audit import record_audit
from lqs.db.clients import create_api_key, create_client
from lqs.db.pool import tenant_session
from lqs.db.stats_rollup import refresh_rollup
from lqs.domain.subject_access import SUBJECT_TABLES, Subject
from tests.configs import api_config

pytestmark = pytest.mark.asyncio(loop_scope="module")

SECRET = secrets.token_urlsafe(32)
VERIFIER = TokenVerifier(secret=SECRET)
CSRF_KEY = secrets.token_bytes(32)
CSRF = CsrfTokens(CSRF_KEY)
NOW = datetime.now(UTC).replace(microsecond=0)

# ---------------------------------------------------------------- the routes

Kind = Literal["lead", "communication", "suppression", "key"]


@dataclass(frozen=True)
class Route:
    """What the sweep needs to know of a route."""

    params: dict[str, Kind] = field(default_factory=dict)
    """The kind of id each path parameter takes."""
    admin_only: bool = False
    """Members are refused (403) whatever the id."""
    shows: tuple[Kind, ...] = ()
    """The rows a listing shows (the service role must see both clients' there)."""
    service: Literal["both"] | int | None = None
    """What a service-role token gets (API routes without path parameters): both
    clients' rows, or this status."""
    body: dict[str, Any] | None = None
    public: bool = False
    """Answered without signing in (the sign-in form itself)."""


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/v1/me"): Route(service=404),
    ("GET", "/v1/leads"): Route(shows=("lead",), service="both"),
    ("GET", "/v1/leads.csv"): Route(shows=("lead",), service="both"),
    ("GET", "/v1/leads/{lead_id}"): Route(params={"lead_id": "lead"}),
    ("GET", "/v1/leads/{lead_id}/consent"): Route(params={"lead_id": "lead"}),
    ("DELETE", "/v1/leads/{lead_id}"): Route(params={"lead_id": "lead"}, admin_only=True),
    ("GET", "/v1/communications"): Route(shows=("communication",), service="both"),
    ("GET", "/v1/communications.csv"): Route(shows=("communication",), service="both"),
    ("GET", "/v1/communications/{communication_id}"): Route(
        params={"communication_id": "communication"}
    ),
    ("POST", "/v1/communications/{communication_id}/retry"): Route(
        params={"communication_id": "communication"}, admin_only=True
    ),
    ("GET", "/v1/stats"): Route(service=403),
    ("GET", "/v1/suppressions"): Route(shows=("suppression",), service=403),
    ("DELETE", "/v1/suppressions/{suppression_id}"): Route(
        params={"suppression_id": "suppression"}, admin_only=True
    ),
    ("GET", "/v1/keys"): Route(shows=("key",), service=403),
    ("POST", "/v1/keys"): Route(admin_only=True, body={"name": "sweep"}),
    ("DELETE", "/v1/keys/{key_id}"): Route(params={"key_id": "key"}, admin_only=True),
    ("POST", "/v1/rules/test"): Route(body={"email": "someone@corp.example"}),
    ("GET", "/v1/subjects"): Route(admin_only=True, service=403),
    ("GET", f"{PAGES_PREFIX}/"): Route(),
    ("GET", f"{PAGES_PREFIX}/leads"): Route(shows=("lead",)),
    ("GET", f"{PAGES_PREFIX}/leads/{{lead_id}}"): Route(params={"lead_id": "lead"}),
    ("GET", f"{PAGES_PREFIX}/communications"): Route(shows=("communication",)),
    ("GET", f"{PAGES_PREFIX}/communications/{{communication_id}}"): Route(
        params={"communication_id": "communication"}
    ),
    ("GET", f"{PAGES_PREFIX}/communications/{{communication_id}}/content"): Route(
        params={"communication_id": "communication"}
    ),
    ("GET", f"{PAGES_PREFIX}/suppressions"): Route(shows=("suppression",)),
    ("POST", f"{PAGES_PREFIX}/suppressions/{{suppression_id}}/remove"): Route(
        params={"suppression_id": "suppression"}, admin_only=True
    ),
    # Only the failed communications: checked for leaks, not for all of A's rows.
    ("GET", f"{PAGES_PREFIX}/dead-letters"): Route(admin_only=True),
    ("POST", f"{PAGES_PREFIX}/dead-letters/{{communication_id}}/retry"): Route(
        params={"communication_id": "communication"}, admin_only=True
    ),
    ("GET", f"{PAGES_PREFIX}/keys"): Route(shows=("key",), admin_only=True),
    ("POST", f"{PAGES_PREFIX}/keys"): Route(admin_only=True, body={"name": "sweep"}),
    ("GET", f"{PAGES_PREFIX}/keys/{{key_id}}/revoke"): Route(
        params={"key_id": "key"}, admin_only=True
    ),
    ("POST", f"{PAGES_PREFIX}/keys/{{key_id}}/revoke"): Route(
        params={"key_id": "key"}, admin_only=True
    ),
    ("GET", f"{PAGES_PREFIX}/rules-test"): Route(),
    ("POST", f"{PAGES_PREFIX}/rules-test"): Route(body={"email": "someone@corp.example"}),
    ("GET", f"{PAGES_PREFIX}/login"): Route(public=True),
    ("POST", f"{PAGES_PREFIX}/login"): Route(public=True),
    ("POST", f"{PAGES_PREFIX}/logout"): Route(public=True),
}
"""Every route under /v1 and /app the sweep checks, with what it needs to know."""

NOT_SWEPT = {
    ("POST", "/v1/leads"): "intake: an API key, not a user, posts leads",
    ("POST", "/v1/leads/batch"): "intake: an API key, not a user, posts leads",
}
SWEPT_METHODS = ("GET", "POST", "DELETE")


def _app_routes() -> list[tuple[str, str]]:
    """(method, path) of every route of the app under /v1 and /app (static files aside)."""
    app = create_app("postgresql://sweep.invalid/lqs", api_config())
    found = set()
    for context in iter_route_contexts(app.routes):
        path = context.path or ""
        methods = getattr(context.original_route, "methods", None) or set()
        if not (path.startswith("/v1/") or path.startswith(f"{PAGES_PREFIX}/")):
            continue
        found |= {(method, path) for method in methods if method in SWEPT_METHODS}
    return sorted(found - NOT_SWEPT.keys())


APP_ROUTES = _app_routes()


def _route(method: str, path: str) -> Route:
    route = ROUTES.get((method, path))
    if route is None:
        pytest.fail(
            f"{method} {path} is not classified: add it to ROUTES in"
            " tests/integration/test_tenant_isolation_sweep.py with the kind of id each"
            " path parameter takes (or to NOT_SWEPT, saying why)"
        )
    return route


def _is_page(path: str) -> bool:
    return path.startswith(f"{PAGES_PREFIX}/")


def _route_ids(routes: list[tuple[str, str]]) -> list[str]:
    return [f"{method} {path}" for method, path in routes]


# ---------------------------------------------------------------- the two clients


@dataclass(frozen=True)
class Tenant:
    client: UUID
    name: str
    admin: UUID
    member: UUID
    ids: dict[Kind, list[UUID]]
    """Its rows' ids, by kind."""
    words: list[str]
    """Everything of its own another client must never read: emails, names, ids."""

    def bearer(self, role: Literal["admin", "member"] = "admin") -> dict[str, str]:
        token, _ = VERIFIER.issue(self.admin if role == "admin" else self.member)
        return {"Authorization": f"Bearer {token}"}

    def cookies(self, role: Literal["admin", "member"] = "admin") -> dict[str, str]:
        token, _ = VERIFIER.issue(self.admin if role == "admin" else self.member)
        return {SESSION_COOKIE: token}


@dataclass(frozen=True)
class World:
    a: Tenant
    b: Tenant


async def _one(conn: AsyncConnection, query: str, *params: Any) -> Any:
    cur = await conn.execute(query.encode(), params)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


async def _tenant(conn: AsyncConnection, tag: str) -> Tenant:
    slug = f"{tag}-{uuid.uuid4().hex[:10]}"
    name = f"{tag.title()} Holdings {slug[-6:]}"
    client = await create_client(conn, name, slug, {})
    admin, member = uuid.uuid4(), uuid.uuid4()
    people = [f"admin.{slug}@{tag}.example", f"member.{slug}@{tag}.example"]
    await conn.execute(
        "INSERT INTO public.profiles (id, client_id, email, role) VALUES"
        " (%s, %s, %s, 'admin'), (%s, %s, %s, 'member')",
        (admin, client.id, people[0], member, client.id, people[1]),
    )
    ids: dict[Kind, list[UUID]] = {"lead": [], "communication": [], "suppression": [], "key": []}
    words = [str(client.id), name, slug, str(admin), str(member), *people]
    for i in range(3):
        email = f"lead{i}.{slug}@{tag}-mail.example"
        first, last = f"{tag.title()}first{i}", f"{tag.title()}last{i}"
        lead = await _one(
            conn,
            "INSERT INTO public.leads (client_id, email, dedupe_key, first_name, last_name,"
            " status, score, grade, received_at, processed_at)"
            " VALUES (%s, %s, %s, %s, %s, 'qualified', 80, 'A', %s, %s) RETURNING id",
            client.id, email, f"email:{email}", first, last,
            NOW - timedelta(hours=i + 1), NOW - timedelta(hours=i),
        )  # fmt: skip
        status = "failed" if i == 0 else "delivered"
        communication = await _one(
            conn,
            "INSERT INTO public.communications (lead_id, client_id, type, recipient, subject,"
            " content, status, provider, error_message, created_at)"
            " VALUES (%s, %s, 'email', %s, %s, %s, %s, 'resend', %s, %s) RETURNING id",
            lead, client.id, email, f"Hello {first}", f"<p>Dear {first} {last}</p>", status,
            "mailbox unavailable" if status == "failed" else None, NOW - timedelta(hours=i),
        )  # fmt: skip
        ids["lead"].append(lead)
        ids["communication"].append(communication)
        words += [str(lead), str(communication), email, first, last]
    suppressed = f"suppressed.{slug}@{tag}-mail.example"
    suppression = await _one(
        conn,
        "INSERT INTO public.suppressions (client_id, channel, recipient, reason)"
        " VALUES (%s, 'email', %s, 'bounce') RETURNING id",
        client.id, suppressed,
    )  # fmt: skip
    ids["suppression"].append(suppression)
    key, _ = await create_api_key(conn, client.id, f"{tag}-key-{slug[-6:]}", 60)
    ids["key"].append(key.id)
    await record_audit(conn, client.id, admin, "keys.create", key.id, {"slug": slug})
    words += [str(suppression), suppressed, str(key.id), key.name, key.prefix]
    return Tenant(client.id, name, admin, member, ids, words)


@pytest.fixture(scope="module")
async def world(migrated_db: str) -> World:
    async with await psycopg.AsyncConnection.connect(migrated_db) as conn:
        async with conn.transaction():
            world = World(await _tenant(conn, "alpha"), await _tenant(conn, "bravo"))
        # The statistics' whole hours come from the rollup (swept under RLS too), the
        # range's edges from the rows.
        await refresh_rollup(conn, 10_000)
    return world


@pytest.fixture(scope="module")
async def app(migrated_db: str, world: World) -> AsyncIterator[FastAPI]:
    application = create_app(
        migrated_db, api_config(pool_max_size=4, tokens=VERIFIER, csrf_key=CSRF_KEY)
    )
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="module")
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://lqs.test") as http:
        yield http


def _path(path: str, route: Route, tenant: Tenant | None) -> str:
    """The path with every parameter set to one of ``tenant``'s ids of its kind (None: a
    random id)."""
    values = {
        name: str(tenant.ids[kind][0] if tenant is not None else uuid.uuid4())
        for name, kind in route.params.items()
    }
    return path.format(**values)


async def _call(
    api: httpx.AsyncClient,
    method: str,
    path: str,
    route: Route,
    *,
    headers: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
) -> httpx.Response:
    api.cookies.clear()
    for name, value in (cookies or {}).items():
        api.cookies.set(name, value, domain="lqs.test", path=PAGES_PREFIX)
    try:
        if not _is_page(path):
            return await api.request(method, path, headers=headers, json=route.body)
        # A page's form: its fields, and the CSRF token a signed-in browser's page carries
        # (else every POST would stop at the CSRF check, before the check that matters).
        session = (cookies or {}).get(SESSION_COOKIE)
        form_headers = dict(headers or {})
        if method == "POST" and session:
            form_headers[CSRF_HEADER] = CSRF.issue(session)
        return await api.request(method, path, headers=form_headers, data=route.body)
    finally:
        api.cookies.clear()


def _as(tenant: Tenant, path: str, role: Literal["admin", "member"] = "admin") -> dict[str, Any]:
    """How ``tenant``'s user signs a request: a bearer token, or the dashboard's cookie."""
    if _is_page(path):
        return {"cookies": tenant.cookies(role)}
    return {"headers": tenant.bearer(role)}


def _leaks(response: httpx.Response, tenant: Tenant) -> list[str]:
    text = response.text.lower()
    return [word for word in tenant.words if word.lower() in text]


# ---------------------------------------------------------------- classification


async def test_every_route_under_v1_and_app_is_classified() -> None:
    unknown = [f"{m} {p}" for m, p in APP_ROUTES if (m, p) not in ROUTES]
    assert not unknown, (
        f"not classified: {unknown}; add each to ROUTES in"
        " tests/integration/test_tenant_isolation_sweep.py with the kind of id each path"
        " parameter takes (or to NOT_SWEPT, saying why)"
    )


async def test_every_classified_route_still_exists() -> None:
    assert not ROUTES.keys() - set(APP_ROUTES), "ROUTES names routes the app no longer has"


async def test_every_path_parameter_has_a_kind() -> None:
    for (method, path), route in ROUTES.items():
        assert set(re.findall(r"{(\w+)}", path)) == route.params.keys(), f"{method} {path}"


# ---------------------------------------------------------------- user A, B's ids

WITH_IDS = [(m, p) for m, p in APP_ROUTES if "{" in p]
LISTINGS = [(m, p) for m, p in APP_ROUTES if "{" not in p]


@pytest.mark.parametrize(("method", "path"), WITH_IDS, ids=_route_ids(WITH_IDS))
async def test_user_of_a_gets_404_for_b_ids_and_nothing_of_b(
    api: httpx.AsyncClient, world: World, method: str, path: str
) -> None:
    route = _route(method, path)
    target = _path(path, route, world.b)

    as_admin = await _call(api, method, target, route, **_as(world.a, path))
    as_member = await _call(api, method, target, route, **_as(world.a, path, "member"))

    assert as_admin.status_code == 404, as_admin.text
    assert as_member.status_code == (403 if route.admin_only else 404), as_member.text
    assert _leaks(as_admin, world.b) == []
    assert _leaks(as_member, world.b) == []


@pytest.mark.parametrize(
    ("method", "path"),
    [(m, p) for m, p in WITH_IDS if m == "GET"],
    ids=_route_ids([(m, p) for m, p in WITH_IDS if m == "GET"]),
)
async def test_user_of_b_reads_the_same_ids(
    api: httpx.AsyncClient, world: World, method: str, path: str
) -> None:
    # The 404s above are about whose rows they are, not a broken route.
    route = _route(method, path)
    response = await _call(api, method, _path(path, route, world.b), route, **_as(world.b, path))
    assert response.status_code == 200, response.text


async def test_b_rows_are_untouched_by_a_s_attempts(
    api: httpx.AsyncClient, world: World, migrated_db: str
) -> None:
    for method, path in WITH_IDS:
        if method != "GET":
            route = _route(method, path)
            await _call(api, method, _path(path, route, world.b), route, **_as(world.a, path))
    async with await psycopg.AsyncConnection.connect(migrated_db) as conn:
        suppressions = await _one(
            conn,
            "SELECT count(*) FROM public.suppressions WHERE id = ANY(%s)",
            world.b.ids["suppression"],
        )
        revoked = await _one(
            conn,
            "SELECT count(*) FROM public.api_keys WHERE id = ANY(%s) AND revoked_at IS NOT NULL",
            world.b.ids["key"],
        )
        failed = await _one(
            conn,
            "SELECT status FROM public.communications WHERE id = %s",
            world.b.ids["communication"][0],
        )
        erased = await _one(
            conn,
            "SELECT count(*) FROM public.leads WHERE id = ANY(%s) AND email LIKE '%%.invalid'",
            world.b.ids["lead"],
        )
    assert (suppressions, revoked, failed, erased) == (
        len(world.b.ids["suppression"]), 0, "failed", 0,
    )  # fmt: skip


# ---------------------------------------------------------------- listings


@pytest.mark.parametrize(("method", "path"), LISTINGS, ids=_route_ids(LISTINGS))
async def test_listings_as_a_show_nothing_of_b(
    api: httpx.AsyncClient, world: World, method: str, path: str
) -> None:
    route = _route(method, path)
    for role in ("admin", "member"):
        response = await _call(api, method, path, route, **_as(world.a, path, role))
        assert response.status_code < 500, response.text
        assert _leaks(response, world.b) == [], f"{role}: {response.text[:500]}"
        if route.shows and role == "admin":
            assert response.status_code == 200, response.text
            shown = [str(i) for kind in route.shows for i in world.a.ids[kind]]
            assert all(i in response.text for i in shown), "A's own rows are missing"


async def _everything(api: httpx.AsyncClient, path: str, headers: dict[str, str]) -> str:
    """Every page of a listing (a CSV comes whole), as one text."""
    texts, params = [], {} if path.endswith(".csv") else {"limit": "200"}
    for _ in range(100):
        response = await api.get(path, headers=headers, params=params)
        assert response.status_code == 200, response.text
        texts.append(response.text)
        cursor = None if path.endswith(".csv") else response.json()["next_cursor"]
        if cursor is None:
            return "\n".join(texts)
        params = {**params, "cursor": cursor}
    pytest.fail(f"{path} has more than 100 pages")


def _service_role() -> dict[str, str]:
    now = int(time.time())
    token = jwt.encode({"role": "service_role", "iat": now, "exp": now + 600}, SECRET, "HS256")
    return {"Authorization": f"Bearer {token}"}


API_GETS = [(m, p) for m, p in LISTINGS if m == "GET" and not _is_page(p)]


@pytest.mark.parametrize(("method", "path"), API_GETS, ids=_route_ids(API_GETS))
async def test_the_service_role_sees_both_clients_or_is_refused(
    api: httpx.AsyncClient, world: World, method: str, path: str
) -> None:
    route = _route(method, path)
    assert route.service is not None, f"say in ROUTES what the service role gets at {path}"
    if route.service != "both":
        response = await api.get(path, headers=_service_role())
        assert response.status_code == route.service, response.text
        return
    text = await _everything(api, path, _service_role())
    for tenant in (world.a, world.b):
        for kind in route.shows:
            assert all(str(i) in text for i in tenant.ids[kind]), f"{kind} of {tenant.name}"


API_ROUTES = [(m, p) for m, p in APP_ROUTES if not _is_page(p)]


@pytest.mark.parametrize(("method", "path"), API_ROUTES, ids=_route_ids(API_ROUTES))
async def test_a_signed_in_user_without_a_profile_is_refused_and_reads_nothing(
    api: httpx.AsyncClient, world: World, method: str, path: str
) -> None:
    # A sign-up with no LQS profile belongs to no client: a listing is refused outright
    # (row-level security would show nothing, after reading every client's rows).
    route = _route(method, path)
    token, _ = VERIFIER.issue(uuid.uuid4())
    headers = {"Authorization": f"Bearer {token}"}
    response = await _call(api, method, _path(path, route, world.a), route, headers=headers)
    assert response.status_code in (403, 404), response.text
    assert _leaks(response, world.a) == _leaks(response, world.b) == []
    if route.shows:
        assert response.json()["error"]["code"] == "no_profile"


# ---------------------------------------------------------------- no token, bad tokens

SIGNED_IN = [(m, p) for m, p in APP_ROUTES if not ROUTES.get((m, p), Route()).public]


def _assert_refused(response: httpx.Response, path: str) -> None:
    if _is_page(path):
        assert response.status_code == 303, response.text
        assert response.headers["location"] == f"{PAGES_PREFIX}/login"
    else:
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path"), SIGNED_IN, ids=_route_ids(SIGNED_IN))
async def test_without_a_token_the_api_is_401_and_pages_go_to_sign_in(
    api: httpx.AsyncClient, world: World, method: str, path: str
) -> None:
    route = _route(method, path)
    response = await _call(api, method, _path(path, route, world.a), route)
    _assert_refused(response, path)


def _token(kind: str, user: UUID) -> str:
    now = int(time.time())
    claims = {"sub": str(user), "role": "authenticated", "aud": "authenticated"}
    claims |= {"iat": now, "exp": now + 600}
    if kind == "forged":
        return jwt.encode(claims, secrets.token_urlsafe(32), "HS256")
    if kind == "expired":
        claims |= {"iat": now - 7200, "exp": now - 3600}
    elif kind == "other_audience":
        claims["aud"] = "another-service"
    elif kind == "anon_role":
        claims = {"role": "anon", "iss": "supabase", "iat": now, "exp": now + 600}
    return jwt.encode(claims, SECRET, "HS256")


BAD_TOKENS = ("forged", "expired", "other_audience", "anon_role")


@pytest.mark.parametrize("kind", BAD_TOKENS)
@pytest.mark.parametrize(("method", "path"), SIGNED_IN, ids=_route_ids(SIGNED_IN))
async def test_a_forged_expired_other_audience_or_anon_token_is_refused(
    api: httpx.AsyncClient, world: World, method: str, path: str, kind: str
) -> None:
    route = _route(method, path)
    token = _token(kind, world.a.admin)
    sent: dict[str, Any] = (
        {"cookies": {SESSION_COOKIE: token}}
        if _is_page(path)
        else {"headers": {"Authorization": f"Bearer {token}"}}
    )
    response = await _call(api, method, _path(path, route, world.a), route, **sent)
    _assert_refused(response, path)


async def test_each_bad_token_is_good_but_for_its_one_flaw() -> None:
    # The refusals above are for the flaw named, not a token malformed some other way.
    for kind in ("expired", "other_audience"):
        claims = jwt.decode(
            _token(kind, uuid.uuid4()),
            SECRET,
            algorithms=["HS256"],
            options={"verify_exp": False, "verify_aud": False},
        )
        assert claims["role"] == "authenticated"
    assert jwt.decode(_token("anon_role", uuid.uuid4()), SECRET, algorithms=["HS256"])


# ---------------------------------------------------------------- row-level security alone

Read = Callable[[AsyncConnection, World], Awaitable[list[UUID | str]]]
"""Call one read function as A; answer the ids (or client ids) of what it returned."""


async def _leads_page(conn: AsyncConnection, world: World) -> list[UUID | str]:
    page = await tenant_reads.leads_page(conn, tenant_reads.TenantLeadFilter(), limit=200)
    return [*(row.id for row in page.rows), *(row.client_id for row in page.rows)]


async def _communications_page(conn: AsyncConnection, world: World) -> list[UUID | str]:
    wanted = tenant_reads.TenantCommunicationFilter()
    page = await tenant_reads.communications_page(conn, wanted, limit=200)
    return [*(row.id for row in page.rows), *(row.client_id for row in page.rows)]


async def _lead_detail(conn: AsyncConnection, world: World) -> list[UUID | str]:
    found = [
        await tenant_reads.lead_detail(conn, i) for i in world.a.ids["lead"] + world.b.ids["lead"]
    ]
    return [detail.lead["id"] for detail in found if detail is not None]


async def _lead_consent(conn: AsyncConnection, world: World) -> list[UUID | str]:
    every = world.a.ids["lead"] + world.b.ids["lead"]
    found = [(i, await tenant_reads.lead_consent(conn, i)) for i in every]
    return [i for i, entries in found if entries is not None]


async def _communication_detail(conn: AsyncConnection, world: World) -> list[UUID | str]:
    every = world.a.ids["communication"] + world.b.ids["communication"]
    found = [await tenant_reads.communication_detail(conn, i) for i in every]
    return [detail.communication["id"] for detail in found if detail is not None]


async def _subject_records(conn: AsyncConnection, world: World) -> list[UUID | str]:
    # Every lead's address of both clients, each asked of both clients: A sees only its own.
    emails = [w for t in (world.a, world.b) for w in t.words if w.startswith("lead")]
    seen: list[UUID | str] = []
    for email in emails:
        for client in (world.a.client, world.b.client):
            found = await tenant_reads.subject_records(conn, client, Subject(email, None))
            seen += [row["id"] for name in SUBJECT_TABLES for row in getattr(found, name)]
            seen += [row["client_id"] for row in found.leads + found.communications]
    return [UUID(str(i)) if len(str(i)) == 36 else str(i) for i in seen]


_DAY = (NOW - timedelta(days=1), NOW + timedelta(hours=1))


async def _leads_by_outcome(conn: AsyncConnection, world: World) -> list[UUID | str]:
    # The SQL is told B's client: row-level security still gives A nothing of B's.
    counts = await tenant_stats.leads_by_outcome(conn, world.b.client, *_DAY, "day")
    own = await tenant_stats.leads_by_outcome(conn, world.a.client, *_DAY, "day")
    assert sum(c.leads for c in own) == len(world.a.ids["lead"])
    return [f"b:{c.status}" for c in counts if c.leads]


async def _lead_funnel(conn: AsyncConnection, world: World) -> list[UUID | str]:
    funnel = await tenant_stats.lead_funnel(conn, world.b.client, *_DAY)
    own = await tenant_stats.lead_funnel(conn, world.a.client, *_DAY)
    assert own.received == len(world.a.ids["lead"])
    return [f"b:{funnel}"] if funnel.received or funnel.contacted else []


async def _delivery_counts(conn: AsyncConnection, world: World) -> list[UUID | str]:
    counts: list[tenant_stats.DeliveryCounts] = []
    of_b = await tenant_stats.delivery_counts(conn, world.b.client, *_DAY)
    of_a = await tenant_stats.delivery_counts(conn, world.a.client, *_DAY)
    for by in get_args(tenant_stats.RateDimension):
        counts += of_b[by]
        assert sum(c.total for c in of_a[by]) == len(world.a.ids["communication"])
    return [f"b:{c.key}" for c in counts if c.total]


READS: dict[str, Read] = {
    "tenant_reads.leads_page": _leads_page,
    "tenant_reads.communications_page": _communications_page,
    "tenant_reads.lead_detail": _lead_detail,
    "tenant_reads.lead_consent": _lead_consent,
    "tenant_reads.communication_detail": _communication_detail,
    "tenant_reads.subject_records": _subject_records,
    "tenant_stats.leads_by_outcome": _leads_by_outcome,
    "tenant_stats.lead_funnel": _lead_funnel,
    "tenant_stats.delivery_counts": _delivery_counts,
}


def _read_functions() -> list[str]:
    return sorted(
        f"{module.__name__.rsplit('.', 1)[1]}.{name}"
        for module in (tenant_reads, tenant_stats)
        for name, function in inspect.getmembers(module, inspect.iscoroutinefunction)
        if not name.startswith("_") and function.__module__ == module.__name__
    )


@pytest.mark.parametrize("name", _read_functions())
async def test_rls_alone_keeps_b_out_of_every_read_function(
    pool: AsyncConnectionPool, world: World, name: str
) -> None:
    read = READS.get(name)
    if read is None:
        pytest.fail(
            f"{name} is not swept: add a call of it as user A (with no client of A's in"
            " its SQL) to READS in tests/integration/test_tenant_isolation_sweep.py"
        )
    async with tenant_session(pool, world.a.admin) as conn:
        seen = await read(conn, world)
    b_values = {*(i for ids in world.b.ids.values() for i in ids), world.b.client}
    assert not [value for value in seen if value in b_values or str(value).startswith("b:")]
    if name.startswith("tenant_reads."):  # the stats functions check A's counts themselves
        assert set(seen) & {*world.a.ids["lead"], *world.a.ids["communication"]}, "A's rows?"
