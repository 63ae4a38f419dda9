"""Hostile bodies at the HTTP edge: every one gets a clear 4xx in the API's error shape.

Lead intake: text PostgreSQL cannot store (NUL, lone surrogates) is a 422 naming the
field; JSON a database cannot keep (nesting past 32 levels or past Python's recursion
limit, integers of thousands of digits, NaN, numbers past a float) is a 400. Delivery
webhooks: a correctly signed body that cannot be stored is a 400 and is kept raw in
``webhook_rejects``; an unsigned one stays a 401 and is not kept.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from lqs.api.app import create_app
from lqs.api.deps import MAX_JSON_DEPTH, WebhookConfig
from lqs.domain.leads import LEAD_FIELDS, MAX_NUMBER_DIGITS
from tests.configs import api_config
from tests.integration.test_intake_api import _auth, _lead_rows, _new_client
from tests.integration.webhook_signing import (
    PUBLIC,
    SENDGRID_SIGNATURE,
    Signed,
    Tenant,
    new_svix_secret,
    new_tenant,
    resend_request,
    sendgrid_request,
    signed_body,
    twilio_request,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

NUL = "\x00"
SURROGATE = "\ud800"


@pytest.fixture(scope="module")
async def app(migrated_db: str) -> AsyncIterator[FastAPI]:
    application = create_app(
        migrated_db, api_config(pool_max_size=4, webhook=WebhookConfig(PUBLIC, tolerance=300.0))
    )
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="module")
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.fixture(scope="module")
async def shared_tenant(migrated_db: str) -> tuple[UUID, str]:
    """One client for the property test (hypothesis wants no function-scoped fixtures)."""
    return await _new_client(migrated_db, f"h-{uuid.uuid4().hex[:12]}", rate=1_000_000)


@pytest.fixture
async def tenant(migrated_db: str) -> tuple[UUID, str]:
    return await _new_client(migrated_db, f"h-{uuid.uuid4().hex[:12]}")


def _escaped_json(value: Any) -> bytes:
    """JSON with every non-ASCII character escaped: NUL as \\u0000, a lone surrogate as
    \\ud800, exactly as a hostile client would send them."""
    return json.dumps(value).encode("ascii")


def _fill(value: Any, bad: str) -> Any:
    """``value`` with ``{bad}`` replaced by ``bad`` in every key and string."""
    if isinstance(value, str):
        return value.replace("{bad}", bad)
    if isinstance(value, list):
        return [_fill(v, bad) for v in value]
    if isinstance(value, dict):
        return {_fill(k, bad): _fill(v, bad) for k, v in value.items()}
    return value


async def _post(api: httpx.AsyncClient, path: str, key: str, body: bytes) -> httpx.Response:
    return await api.post(
        path, headers={**_auth(key), "Content-Type": "application/json"}, content=body
    )


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    return error


# ---------------------------------------------------------------------------- lead fields


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
@pytest.mark.parametrize(
    ("lead", "field"),
    [
        ({"email": "a@corp.example", "first_name": "A{bad}"}, "first_name"),
        ({"email": "a{bad}@corp.example"}, "email"),
        ({"email": "a@corp.example", "phone": "+1201555{bad}0123"}, "phone"),
        ({"email": "a@corp.example", "consent_at": "2026-01-01{bad}"}, "consent_at"),
        ({"email": "a@corp.example", "custom": {"foo": "x{bad}"}}, "custom.foo"),
        ({"email": "a@corp.example", "foo": ["x", "y{bad}"]}, "custom.foo[1]"),
        ({"email": "a@corp.example", "custom": {"f{bad}o": "x"}}, "custom.f\\u{code}o"),
    ],
)
async def test_bad_text_in_a_lead_is_422_naming_the_field(
    api: httpx.AsyncClient,
    tenant: tuple[UUID, str],
    migrated_db: str,
    lead: dict[str, Any],
    field: str,
    bad: str,
) -> None:
    client_id, key = tenant
    field = field.replace("{code}", f"{ord(bad):04x}")

    response = await _post(api, "/v1/leads", key, _escaped_json(_fill(lead, bad)))

    error = _error(response, 422, "invalid_lead")
    assert error["field"] == field
    assert await _lead_rows(migrated_db, client_id) == []


async def test_a_surrogate_sent_as_raw_bytes_is_422_too(
    api: httpx.AsyncClient, tenant: tuple[UUID, str]
) -> None:
    _, key = tenant
    # CESU-8 / "UTF-8" of a lone surrogate: Python's JSON decoder lets it through.
    body = b'{"email": "a@corp.example", "custom": {"foo": "x\xed\xa0\x80"}}'

    response = await _post(api, "/v1/leads", key, body)

    assert _error(response, 422, "invalid_lead")["field"] == "custom.foo"


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
async def test_bad_text_in_a_batch_names_the_lead_and_stores_nothing(
    api: httpx.AsyncClient, tenant: tuple[UUID, str], migrated_db: str, bad: str
) -> None:
    client_id, key = tenant
    leads: list[dict[str, Any]] = [{"email": f"b{i}@corp.example"} for i in range(5)]
    leads[3]["first_name"] = f"Bo{bad}"
    leads[4]["custom"] = {"plan": bad}

    response = await _post(api, "/v1/leads/batch", key, _escaped_json({"leads": leads}))

    error = _error(response, 422, "invalid_leads")
    assert [f["field"] for f in error["fields"]] == ["leads[3].first_name", "leads[4].custom.plan"]
    assert await _lead_rows(migrated_db, client_id) == []


async def test_a_surrogate_beside_the_leads_of_a_batch_does_not_break_the_request(
    api: httpx.AsyncClient, tenant: tuple[UUID, str], migrated_db: str
) -> None:
    client_id, key = tenant
    body = {"leads": [{"email": "ok@corp.example"}], "note": SURROGATE}
    headers = {**_auth(key), "Idempotency-Key": "hostile-1", "Content-Type": "application/json"}

    response = await api.post("/v1/leads/batch", headers=headers, content=_escaped_json(body))

    assert response.status_code == 200, response.text
    assert len(await _lead_rows(migrated_db, client_id)) == 1


async def test_custom_fields_nested_past_the_limit_are_422(
    api: httpx.AsyncClient, tenant: tuple[UUID, str]
) -> None:
    _, key = tenant
    deep: Any = 1
    for _ in range(5):
        deep = [deep]

    response = await _post(
        api, "/v1/leads", key, _escaped_json({"email": "a@b.example", "x": deep})
    )

    error = _error(response, 422, "invalid_lead")
    assert error["field"].startswith("custom.x")
    assert "nests deeper than" in error["message"]


# ---------------------------------------------------------------------------- JSON shape


def _nested(depth: int) -> bytes:
    return b'{"email": "a@b.example", "x": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        pytest.param(_nested(MAX_JSON_DEPTH), "nests more than", id="depth-33"),
        pytest.param(_nested(1_000), "nests more than", id="depth-1001"),
        pytest.param(_nested(100_000), "nests more than", id="depth-100001"),
        pytest.param(b'{"email": "a@b.example", "n": ' + b"9" * 5000 + b"}", "digits",
                     id="5000-digit-integer"),
        pytest.param(b'{"email": "a@b.example", "n": -' + b"9" * (MAX_NUMBER_DIGITS + 1) + b"}",
                     "digits", id="101-digit-integer"),
        pytest.param(b'{"email": "a@b.example", "n": 1e400}', "too large", id="float-overflow"),
        pytest.param(b'{"email": "a@b.example", "n": NaN}', "NaN", id="nan"),
        pytest.param(b'{"email": "a@b.example", "n": -Infinity}', "-Infinity", id="infinity"),
        pytest.param(b'{"email": "a@b.example", "n": "\xff"}', "utf-8", id="not-utf-8"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("path", ["/v1/leads", "/v1/leads/batch"])
async def test_json_a_database_cannot_keep_is_400(
    api: httpx.AsyncClient, tenant: tuple[UUID, str], path: str, body: bytes, why: str
) -> None:
    _, key = tenant
    if path.endswith("batch"):
        body = b'{"leads": [' + body + b"]}"

    response = await _post(api, path, key, body)

    error = _error(response, 400, "invalid_json")
    assert error["field"] == "body"
    assert why in error["message"]


async def test_json_nested_to_the_limit_reaches_validation(
    api: httpx.AsyncClient, tenant: tuple[UUID, str]
) -> None:
    _, key = tenant
    # 32 levels in all: the lead object, then 31 of arrays.
    response = await _post(api, "/v1/leads", key, _nested(MAX_JSON_DEPTH - 1))

    assert _error(response, 422, "invalid_lead")["field"].startswith("custom.x")


async def test_the_largest_integer_is_stored(
    api: httpx.AsyncClient, tenant: tuple[UUID, str], migrated_db: str
) -> None:
    client_id, key = tenant
    body = b'{"email": "a@b.example", "n": ' + b"9" * MAX_NUMBER_DIGITS + b"}"

    response = await _post(api, "/v1/leads", key, body)

    assert response.status_code == 201, response.text
    [row] = await _lead_rows(migrated_db, client_id)
    assert row["custom"] == {"n": int("9" * MAX_NUMBER_DIGITS)}


_ANY_TEXT = st.text(st.characters(codec=None), max_size=12) | st.sampled_from(
    ["\x00", "\ud800", "x\udfff", "\x00\ud83d", "😀", " "]
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    field=st.sampled_from([*LEAD_FIELDS, "custom", "anything"]) | _ANY_TEXT,
    value=_ANY_TEXT | st.lists(_ANY_TEXT, max_size=2) | st.dictionaries(_ANY_TEXT, _ANY_TEXT),
    batch=st.booleans(),
)
async def test_any_text_in_any_field_is_never_a_server_error(
    api: httpx.AsyncClient, shared_tenant: tuple[UUID, str], field: str, value: Any, batch: bool
) -> None:
    _, key = shared_tenant
    lead = {"email": f"p{uuid.uuid4().hex[:8]}@corp.example", field: value}
    body = _escaped_json({"leads": [lead]} if batch else lead)

    response = await _post(api, "/v1/leads/batch" if batch else "/v1/leads", key, body)

    assert response.status_code in (200, 201, 422), response.text
    response.content.decode("utf-8")
    if response.status_code == 422:
        error = response.json()["error"]
        assert error["fields"], error
        for item in error["fields"]:
            assert "\x00" not in item["field"] + item["message"]


# ---------------------------------------------------------------------------- webhooks


@pytest.fixture
async def hook_tenant(migrated_db: str) -> Tenant:
    return await new_tenant(migrated_db)


async def _rejects(url: str, client_id: UUID) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "SELECT * FROM public.webhook_rejects WHERE client_id = %s ORDER BY id", (client_id,)
        )
        return await cur.fetchall()


async def _events(url: str, client_id: UUID) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM public.provider_events WHERE client_id = %s", (client_id,)
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def _send(api: httpx.AsyncClient, request: Signed) -> httpx.Response:
    return await api.post(request.path, content=request.content, headers=request.headers)


def _resend_with(tenant: Tenant, subject: str) -> Signed:
    data = {"email_id": "re_hostile", "to": ["a@b.example"], "subject": subject}
    return resend_request(tenant, "re_hostile", data=data)


def _sendgrid_with(tenant: Tenant, email: str) -> Signed:
    event = {"event": "delivered", "sg_event_id": f"sg-{uuid.uuid4().hex}", "email": email,
             "sg_message_id": "SGhostile.filter", "timestamp": 1_700_000_000}  # fmt: skip
    return sendgrid_request(tenant, "SGhostile", events=[event])


def _twilio_with(tenant: Tenant, to: str) -> Signed:
    params = {"MessageSid": "SMhostile", "MessageStatus": "delivered",
              "AccountSid": tenant.twilio_account, "To": to}  # fmt: skip
    return twilio_request(tenant, "SMhostile", params=params)


_HOSTILE_WEBHOOKS = {
    "resend NUL": (lambda t: _resend_with(t, f"Hi{NUL}"), "data.subject contains the NUL"),
    "resend surrogate": (lambda t: _resend_with(t, SURROGATE), "data.subject contains a lone"),
    "resend NaN": (
        lambda t: signed_body(
            t, "resend", b'{"type":"email.delivered","data":{"email_id":"re_x","n":NaN}}'
        ),
        "data.n must be a finite number",
    ),
    "resend not UTF-8": (
        lambda t: signed_body(t, "resend", b'{"type":"email.delivered","data":"\xff"}'),
        "not valid UTF-8",
    ),
    "sendgrid NUL": (lambda t: _sendgrid_with(t, f"a{NUL}@b.example"), "email contains the NUL"),
    "sendgrid surrogate": (lambda t: _sendgrid_with(t, f"a{SURROGATE}@b.example"), "surrogate"),
    "sendgrid not UTF-8": (
        lambda t: signed_body(t, "sendgrid", b'[{"event":"\xc3\x28"}]'),
        "not valid UTF-8",
    ),
    "twilio NUL": (lambda t: _twilio_with(t, f"+1201{NUL}5550123"), "To contains the NUL"),
}


@pytest.mark.parametrize("case", sorted(_HOSTILE_WEBHOOKS))
async def test_a_signed_webhook_that_cannot_be_stored_is_400_and_kept_raw(
    api: httpx.AsyncClient, hook_tenant: Tenant, migrated_db: str, case: str
) -> None:
    build, why = _HOSTILE_WEBHOOKS[case]
    request = build(hook_tenant)

    response = await _send(api, request)

    error = _error(response, 400, "malformed_webhook")
    assert why in error["message"]
    assert await _events(migrated_db, hook_tenant.id) == 0
    [kept] = await _rejects(migrated_db, hook_tenant.id)
    assert kept["provider"] == case.split()[0]
    assert bytes(kept["body"]) == request.content
    assert why in kept["reason"]
    assert kept["headers"]["content-type"] == request.headers["content-type"]
    names = {name.lower() for name in kept["headers"]}
    assert not names & {"svix-signature", SENDGRID_SIGNATURE.lower(), "x-twilio-signature"}
    if case.startswith("resend"):
        assert kept["headers"]["svix-id"] == request.headers["svix-id"]


async def test_a_signed_body_of_the_wrong_shape_is_kept_too(
    api: httpx.AsyncClient, hook_tenant: Tenant, migrated_db: str
) -> None:
    request = resend_request(hook_tenant, "re_x", data={"to": ["a@b.example"]})

    _error(await _send(api, request), 400, "malformed_webhook")

    [kept] = await _rejects(migrated_db, hook_tenant.id)
    assert kept["reason"] == "data.email_id is missing"


@pytest.mark.parametrize("provider", ["resend", "sendgrid"])
async def test_an_unsigned_hostile_body_is_401_and_kept_nowhere(
    api: httpx.AsyncClient, hook_tenant: Tenant, migrated_db: str, provider: str
) -> None:
    genuine = (
        _resend_with(hook_tenant, NUL) if provider == "resend" else _sendgrid_with(hook_tenant, NUL)
    )
    if provider == "resend":
        forged = resend_request(hook_tenant, "re_x", secret=new_svix_secret())
        headers = {**genuine.headers, "svix-signature": forged.headers["svix-signature"]}
    else:
        headers = {**genuine.headers, SENDGRID_SIGNATURE: "MEUCIQ" + "A" * 90}

    response = await api.post(genuine.path, content=genuine.content, headers=headers)

    _error(response, 401, "invalid_signature")
    assert await _rejects(migrated_db, hook_tenant.id) == []
    assert await _events(migrated_db, hook_tenant.id) == 0


async def test_a_genuine_webhook_is_still_stored_as_an_event(
    api: httpx.AsyncClient, hook_tenant: Tenant, migrated_db: str
) -> None:
    response = await _send(api, _resend_with(hook_tenant, "Hello, naïve 😀"))

    assert response.status_code == 200, response.text
    assert await _events(migrated_db, hook_tenant.id) == 1
    assert await _rejects(migrated_db, hook_tenant.id) == []
