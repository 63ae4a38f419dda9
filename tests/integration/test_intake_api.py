"""``POST /v1/leads`` and ``/v1/leads/batch`` in process, on a real database."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from openapi_spec_validator import validate

from lqs.api.app import create_app
from lqs.api.key_cache import ApiKeyCache
from lqs.db.clients import create_api_key, create_client, revoke_api_key
from tests.configs import api_config
from tests.conftest import direct_url

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
async def app(migrated_db: str) -> AsyncIterator[FastAPI]:
    application = create_app(migrated_db, api_config(pool_max_size=4))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="module")
async def client_api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://lqs.test") as http:
        yield http


async def _new_client(url: str, slug: str, rate: int = 600, region: str = "US") -> tuple[UUID, str]:
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        client = await create_client(conn, slug.title(), slug, {"default_region": region})
        _, key = await create_api_key(conn, client.id, "test", rate)
    return client.id, key


@pytest.fixture
async def tenant(migrated_db: str) -> tuple[UUID, str]:
    return await _new_client(migrated_db, f"t-{uuid.uuid4().hex[:12]}")


def _auth(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


async def _lead_rows(url: str, client_id: UUID) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        await cur.execute(
            "SELECT * FROM public.leads WHERE client_id = %s ORDER BY created_at", (client_id,)
        )
        return await cur.fetchall()


async def test_valid_lead_is_queued_normalised_and_extra_fields_kept(
    client_api: httpx.AsyncClient, tenant: tuple[UUID, str], migrated_db: str
) -> None:
    client_id, key = tenant
    response = await client_api.post(
        "/v1/leads",
        headers=_auth(key),
        json={
            "email": " Ann.Lee@Example.COM ",
            "phone": "(201) 555-0123",
            "first_name": "Ann",
            "country": "us",
            "consent_status": "granted",
            "consent_source": "signup form",
            "budget": "50k",
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "queued"
    assert body["duplicate"] is False
    [row] = await _lead_rows(migrated_db, client_id)
    assert str(row["id"]) == body["id"]
    assert row["email"] == "Ann.Lee@example.com"
    assert row["phone"] == "+12015550123"
    assert row["country"] == "US"
    assert row["custom"] == {"budget": "50k"}
    assert row["consent_status"] == "granted"
    assert row["status"] == "queued"


async def test_same_email_merges_into_the_open_lead_with_history(
    client_api: httpx.AsyncClient, tenant: tuple[UUID, str], migrated_db: str
) -> None:
    client_id, key = tenant
    first = await client_api.post(
        "/v1/leads", headers=_auth(key), json={"email": "bo@corp.example", "job_title": "Engineer"}
    )
    second = await client_api.post(
        "/v1/leads",
        headers=_auth(key),
        json={"email": "BO@corp.example", "job_title": "CTO", "company_name": "Corp"},
    )
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json() == {"id": first.json()["id"], "status": "queued", "duplicate": True}
    [row] = await _lead_rows(migrated_db, client_id)
    assert row["job_title"] == "CTO"
    assert row["company_name"] == "Corp"
    assert len(row["history"]) == 1
    # The newest spelling wins; the trail keeps what it replaced.
    assert row["email"] == "BO@corp.example"
    assert row["history"][0]["previous"] == {"email": "bo@corp.example", "job_title": "Engineer"}


async def test_closed_lead_does_not_absorb_a_new_submission(
    client_api: httpx.AsyncClient, tenant: tuple[UUID, str], migrated_db: str
) -> None:
    client_id, key = tenant
    first = await client_api.post("/v1/leads", headers=_auth(key), json={"email": "cy@x.example"})
    async with await psycopg.AsyncConnection.connect(migrated_db) as conn:
        await conn.execute(
            "UPDATE public.leads SET status = 'disqualified' WHERE id = %s", (first.json()["id"],)
        )
        await conn.commit()
    second = await client_api.post("/v1/leads", headers=_auth(key), json={"email": "cy@x.example"})
    assert second.status_code == 201
    assert second.json()["id"] != first.json()["id"]
    assert len(await _lead_rows(migrated_db, client_id)) == 2


async def test_idempotency_key_replays_the_first_response_and_creates_nothing(
    client_api: httpx.AsyncClient, tenant: tuple[UUID, str], migrated_db: str
) -> None:
    client_id, key = tenant
    body = {"email": "dee@corp.example", "first_name": "Dee"}
    headers = _auth(key, **{"Idempotency-Key": "form-123"})
    first = await client_api.post("/v1/leads", headers=headers, json=body)
    # Same body, serialised differently: still the same request.
    replay = await client_api.post(
        "/v1/leads",
        headers={**headers, "Content-Type": "application/json"},
        content=json.dumps(body, indent=2).encode(),
    )
    assert first.status_code == 201
    assert replay.status_code == 200
    assert replay.json() == first.json()
    assert replay.headers["Idempotent-Replayed"] == "true"
    rows = await _lead_rows(migrated_db, client_id)
    assert len(rows) == 1
    assert rows[0]["history"] == []


async def test_idempotency_key_with_a_different_body_is_409(
    client_api: httpx.AsyncClient, tenant: tuple[UUID, str], migrated_db: str
) -> None:
    client_id, key = tenant
    headers = _auth(key, **{"Idempotency-Key": "k1"})
    await client_api.post("/v1/leads", headers=headers, json={"email": "e1@corp.example"})
    conflict = await client_api.post(
        "/v1/leads", headers=headers, json={"email": "e2@corp.example"}
    )
    assert conflict.status_code == 409
    assert conflict.json()["error"]["field"] == "Idempotency-Key"
    assert [r["email"] for r in await _lead_rows(migrated_db, client_id)] == ["e1@corp.example"]


async def test_concurrent_requests_with_one_idempotency_key_create_one_lead(
    client_api: httpx.AsyncClient, tenant: tuple[UUID, str], migrated_db: str
) -> None:
    client_id, key = tenant
    headers = _auth(key, **{"Idempotency-Key": "burst"})
    responses = await asyncio.gather(
        *(
            client_api.post("/v1/leads", headers=headers, json={"email": "f@corp.example"})
            for _ in range(5)
        )
    )
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(await _lead_rows(migrated_db, client_id)) == 1


async def test_invalid_lead_is_422_naming_every_bad_field(
    client_api: httpx.AsyncClient, tenant: tuple[UUID, str], migrated_db: str
) -> None:
    client_id, key = tenant
    response = await client_api.post(
        "/v1/leads",
        headers=_auth(key),
        json={"email": "not-an-email", "company_size": -3, "country": "Germany", "phone": "12"},
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_lead"
    assert {f["field"] for f in error["fields"]} == {"email", "company_size", "country", "phone"}
    assert await _lead_rows(migrated_db, client_id) == []


async def test_a_lead_time_zone_is_stored_and_one_not_in_the_iana_list_is_422_naming_it(
    client_api: httpx.AsyncClient, tenant: tuple[UUID, str], migrated_db: str
) -> None:
    client_id, key = tenant
    refused = await client_api.post(
        "/v1/leads",
        headers=_auth(key),
        json={"email": "tz@example.com", "time_zone": "Mars/Olympus_Mons"},
    )
    assert refused.status_code == 422
    [field] = refused.json()["error"]["fields"]
    assert field["field"] == "time_zone"
    assert "unknown time zone 'Mars/Olympus_Mons'" in field["message"]
    assert await _lead_rows(migrated_db, client_id) == []

    accepted = await client_api.post(
        "/v1/leads",
        headers=_auth(key),
        json={"email": "tz@example.com", "time_zone": "America/Chicago"},
    )
    assert accepted.status_code == 201, accepted.text
    [row] = await _lead_rows(migrated_db, client_id)
    assert row["time_zone"] == "America/Chicago"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "email"),
        ({"first_name": "x" * 101, "email": "a@b.example"}, "first_name"),
        ({"email": "a@b.example", "consent_status": "maybe"}, "consent_status"),
        ({"email": "a@b.example", "consent_at": "yesterday"}, "consent_at"),
        ({"email": "a@b.example", "custom": {f"k{i}": i for i in range(51)}}, "custom"),
        ([{"email": "a@b.example"}], "body"),
    ],
)
async def test_each_kind_of_bad_field_is_named(
    client_api: httpx.AsyncClient, tenant: tuple[UUID, str], body: Any, field: str
) -> None:
    _, key = tenant
    response = await client_api.post("/v1/leads", headers=_auth(key), json=body)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == field


async def test_checks_run_in_order_key_then_json_then_lead_then_idempotency_key(
    client_api: httpx.AsyncClient, tenant: tuple[UUID, str]
) -> None:
    _, key = tenant
    bad_key = {"Idempotency-Key": ""}
    bad_json = {"content": b"{nope", "headers": {**_auth(key, **bad_key),
                                                 "Content-Type": "application/json"}}  # fmt: skip

    unauthenticated = await client_api.post("/v1/leads", content=b"{nope", headers=bad_key)
    malformed = await client_api.post("/v1/leads", **bad_json)
    invalid = await client_api.post("/v1/leads", headers=_auth(key, **bad_key), json={})
    invalid_batch = await client_api.post(
        "/v1/leads/batch", headers=_auth(key, **bad_key), json={"leads": [{}]}
    )
    valid = await client_api.post(
        "/v1/leads", headers=_auth(key, **bad_key), json={"email": "i@corp.example"}
    )

    codes = [
        r.json()["error"]["code"]
        for r in (unauthenticated, malformed, invalid, invalid_batch, valid)
    ]
    assert codes == [
        "missing_api_key",
        "invalid_json",
        "invalid_lead",
        "invalid_leads",
        "invalid_idempotency_key",
    ]


async def test_malformed_json_is_400(
    client_api: httpx.AsyncClient, tenant: tuple[UUID, str]
) -> None:
    _, key = tenant
    response = await client_api.post(
        "/v1/leads", headers={**_auth(key), "Content-Type": "application/json"}, content=b"{nope"
    )
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "body"


async def test_missing_and_unknown_keys_are_401(client_api: httpx.AsyncClient) -> None:
    missing = await client_api.post("/v1/leads", json={"email": "a@b.example"})
    unknown = await client_api.post(
        "/v1/leads", headers=_auth("lqs_" + "x" * 43), json={"email": "a@b.example"}
    )
    wrong_scheme = await client_api.post(
        "/v1/leads", headers={"Authorization": "Basic abc"}, json={"email": "a@b.example"}
    )
    assert [r.status_code for r in (missing, unknown, wrong_scheme)] == [401, 401, 401]
    assert missing.json()["error"]["code"] == "missing_api_key"
    assert unknown.json()["error"]["code"] == "invalid_api_key"


async def test_a_key_revoked_elsewhere_is_401_within_the_cache_time_and_earlier_leads_stay(
    app: FastAPI, client_api: httpx.AsyncClient, tenant: tuple[UUID, str], migrated_db: str
) -> None:
    """Revoked outside this process (SQL here; the CLI, another API process): the process
    remembers the key's lookup for up to LQS_API_KEY_CACHE_SECONDS (5 s), then refuses it."""
    client_id, key = tenant
    now = [1000.0]
    remembered, app.state.api_keys = app.state.api_keys, ApiKeyCache(5.0, clock=lambda: now[0])
    try:
        accepted = await client_api.post(
            "/v1/leads", headers=_auth(key), json={"email": "g@c.example"}
        )
        async with await psycopg.AsyncConnection.connect(migrated_db) as conn:
            assert await revoke_api_key(conn, client_id, key) == 1
            await conn.commit()
        now[0] += 4.9
        still = await client_api.post(
            "/v1/leads", headers=_auth(key), json={"email": "h@c.example"}
        )
        now[0] += 0.2
        refused = await client_api.post(
            "/v1/leads", headers=_auth(key), json={"email": "i@c.example"}
        )
    finally:
        app.state.api_keys = remembered
    assert (accepted.status_code, still.status_code, refused.status_code) == (201, 201, 401)
    assert refused.json()["error"]["code"] == "invalid_api_key"
    emails = [r["email"] for r in await _lead_rows(migrated_db, client_id)]
    assert sorted(emails) == ["g@c.example", "h@c.example"]


async def test_with_the_cache_off_a_revoked_key_is_refused_at_once(
    app: FastAPI, client_api: httpx.AsyncClient, tenant: tuple[UUID, str], migrated_db: str
) -> None:
    client_id, key = tenant
    remembered, app.state.api_keys = app.state.api_keys, ApiKeyCache(0)
    try:
        accepted = await client_api.post(
            "/v1/leads", headers=_auth(key), json={"email": "g@c.example"}
        )
        async with await psycopg.AsyncConnection.connect(migrated_db) as conn:
            assert await revoke_api_key(conn, client_id, key) == 1
            await conn.commit()
        refused = await client_api.post(
            "/v1/leads", headers=_auth(key), json={"email": "h@c.example"}
        )
    finally:
        app.state.api_keys = remembered
    assert (accepted.status_code, refused.status_code) == (201, 401)


async def test_the_key_decides_the_client_not_the_body(
    client_api: httpx.AsyncClient, tenant: tuple[UUID, str], migrated_db: str
) -> None:
    client_id, key = tenant
    other_id, _ = await _new_client(migrated_db, "someone-else")
    response = await client_api.post(
        "/v1/leads", headers=_auth(key), json={"email": "i@c.example", "client_id": str(other_id)}
    )
    assert response.status_code == 201
    [row] = await _lead_rows(migrated_db, client_id)
    assert row["custom"] == {"client_id": str(other_id)}
    assert await _lead_rows(migrated_db, other_id) == []


async def test_flood_from_one_key_is_429_with_retry_after(
    client_api: httpx.AsyncClient, migrated_db: str
) -> None:
    client_id, key = await _new_client(migrated_db, "slow-client", rate=3)
    statuses = [
        (await client_api.post("/v1/leads", headers=_auth(key), json={"email": f"r{i}@c.example"}))
        for i in range(5)
    ]
    assert [r.status_code for r in statuses] == [201, 201, 201, 429, 429]
    assert int(statuses[3].headers["Retry-After"]) >= 1
    assert statuses[3].json()["error"]["code"] == "rate_limited"
    assert len(await _lead_rows(migrated_db, client_id)) == 3


async def test_body_over_one_mebibyte_is_413(
    client_api: httpx.AsyncClient, tenant: tuple[UUID, str], migrated_db: str
) -> None:
    client_id, key = tenant
    big = {"email": "j@c.example", "notes": "x" * (1024 * 1024)}
    response = await client_api.post("/v1/leads", headers=_auth(key), json=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert await _lead_rows(migrated_db, client_id) == []


async def test_chunked_body_over_the_limit_is_413(
    client_api: httpx.AsyncClient, tenant: tuple[UUID, str]
) -> None:
    _, key = tenant

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"email": "k@c.example", "notes": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}'

    response = await client_api.post(
        "/v1/leads", headers={**_auth(key), "Content-Type": "application/json"}, content=chunks()
    )
    assert response.status_code == 413


async def test_batch_stores_all_in_order_with_in_batch_duplicates(
    client_api: httpx.AsyncClient, tenant: tuple[UUID, str], migrated_db: str
) -> None:
    client_id, key = tenant
    leads = [{"email": f"b{i}@corp.example", "first_name": f"N{i}"} for i in range(300)]
    leads.append({"email": "B0@corp.example", "job_title": "VP Sales"})
    response = await client_api.post("/v1/leads/batch", headers=_auth(key), json={"leads": leads})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["created"] == 300
    assert body["duplicates"] == 1
    assert body["leads"][300]["id"] == body["leads"][0]["id"]
    assert body["leads"][300]["duplicate"] is True
    rows = await _lead_rows(migrated_db, client_id)
    assert len(rows) == 300
    by_email = {r["email"].lower(): r for r in rows}
    assert by_email["b0@corp.example"]["job_title"] == "VP Sales"
    assert str(by_email["b7@corp.example"]["id"]) == body["leads"][7]["id"]


async def test_batch_with_one_bad_lead_stores_nothing_and_names_it(
    client_api: httpx.AsyncClient, tenant: tuple[UUID, str], migrated_db: str
) -> None:
    client_id, key = tenant
    leads = [{"email": "ok@corp.example"}, {"email": "bad"}, "nope"]
    response = await client_api.post("/v1/leads/batch", headers=_auth(key), json={"leads": leads})
    assert response.status_code == 422
    fields = [f["field"] for f in response.json()["error"]["fields"]]
    assert fields == ["leads[1].email", "leads[2]"]
    assert await _lead_rows(migrated_db, client_id) == []


@pytest.mark.parametrize("payload", [{"leads": []}, {"leads": "x"}, {}, [1]])
async def test_batch_shape_errors_are_422(
    client_api: httpx.AsyncClient, tenant: tuple[UUID, str], payload: Any
) -> None:
    _, key = tenant
    response = await client_api.post("/v1/leads/batch", headers=_auth(key), json=payload)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "leads"


async def test_batch_over_1000_leads_is_422(
    client_api: httpx.AsyncClient, tenant: tuple[UUID, str]
) -> None:
    _, key = tenant
    leads = [{"phone": f"+1201555{i:04d}"} for i in range(1001)]
    response = await client_api.post("/v1/leads/batch", headers=_auth(key), json={"leads": leads})
    assert response.status_code == 422


async def test_insert_notifies_waiting_processors(
    client_api: httpx.AsyncClient, tenant: tuple[UUID, str], migrated_db: str
) -> None:
    _, key = tenant
    # LISTEN on the direct URL: through a transaction pooler it would hear nothing.
    listening = direct_url(migrated_db)
    async with await psycopg.AsyncConnection.connect(listening, autocommit=True) as listener:
        await listener.execute("LISTEN lqs_leads_queued")
        await client_api.post("/v1/leads", headers=_auth(key), json={"email": "n@c.example"})
        received = [n async for n in listener.notifies(timeout=5, stop_after=1)]
    assert [n.channel for n in received] == ["lqs_leads_queued"]


def _resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        found: Any = spec
        for part in ref[2:].split("/"):
            found = found[part]
        node = found
    return node


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


async def test_openapi_documents_the_lead_body(client_api: httpx.AsyncClient) -> None:
    spec = (await client_api.get("/openapi.json")).json()
    body = spec["paths"]["/v1/leads"]["post"]["requestBody"]["content"]["application/json"]
    lead = _resolve(spec, body["schema"])
    assert "email" in lead["properties"]
    assert _resolve(spec, lead["properties"]["consent_status"])["enum"] == [
        "granted",
        "denied",
        "unknown",
        "withdrawn",
    ]
    batch = spec["paths"]["/v1/leads/batch"]["post"]["requestBody"]["content"]
    items = batch["application/json"]["schema"]["properties"]["leads"]["items"]
    assert _resolve(spec, items) == lead


async def test_openapi_document_is_valid_and_every_ref_resolves(
    client_api: httpx.AsyncClient,
) -> None:
    spec = (await client_api.get("/openapi.json")).json()
    validate(spec)  # raises on any departure from the OpenAPI 3.1 specification
    refs = set(_refs(spec))
    assert refs, "the document refers to its components"
    for ref in refs:
        _resolve(spec, {"$ref": ref})  # KeyError names a reference that does not resolve


async def test_openapi_names_the_api_key_scheme_on_intake(client_api: httpx.AsyncClient) -> None:
    spec = (await client_api.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A client's API key (`lqs_...`, from `lqs keys create`).",
    }
    for path in ("/v1/leads", "/v1/leads/batch"):
        assert spec["paths"][path]["post"]["security"] == [{"apiKey": []}]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_api_docs_load_every_asset_from_the_server(
    client_api: httpx.AsyncClient, page: str
) -> None:
    # No CDN: every script, stylesheet and icon the page names is served by LQS itself,
    # so the page renders on a machine with no internet access.
    response = await client_api.get(page)
    assert response.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', response.text)
    assets += re.findall(r"url: '([^']+)'", response.text)  # Swagger UI's openapi URL
    assert assets
    for asset in assets:
        assert asset.startswith("/"), f"{page} loads {asset} from elsewhere"
        loaded = await client_api.get(asset)
        assert loaded.status_code == 200, asset
        assert loaded.content, asset
