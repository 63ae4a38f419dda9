"""``POST /webhooks/{provider}[/{client_id}]`` in process, on a real database.

Every request is signed here the way the provider signs it (Svix HMAC-SHA256 for Resend,
ECDSA P-256 for SendGrid, HMAC-SHA1 over the public URL for Twilio), with secrets and keys
made up by the tests. A request that fails the check must get 401 and store nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from lqs.api.app import create_app
from lqs.api.deps import WebhookConfig
from tests.configs import api_config
from tests.integration.webhook_signing import (
    PUBLIC,
    SENDGRID_SIGNATURE,
    SENDGRID_TIMESTAMP,
    Signed,
    Tenant,
    new_svix_secret,
    new_tenant,
    resend_request,
    sendgrid_request,
    svix_signature,
    twilio_request,
    twilio_signature,
)
from tests.pending_events import apply_events


def test_the_test_signers_match_the_documented_vectors() -> None:
    assert (
        svix_signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            b'{"test": 2432232314}',
        )
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
              "From": "+12349013030", "To": "+18005551212"}  # fmt: skip
    assert (
        twilio_signature("https://mycompany.com/myapp.php?foo=1&bar=2", params, "12345")
        == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    )


# ---------------------------------------------------------------------------- tenants


async def _sent(url: str, tenant: Tenant, provider: str, external_id: str) -> UUID:
    """A communication the provider accepted under ``external_id``."""
    channel, recipient = (
        ("sms", "+12015550123") if provider == "twilio" else ("email", "a@b.example")
    )
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        cur = await conn.execute(
            "INSERT INTO public.communications (client_id, lead_id, type, recipient, status,"
            " provider, external_id, sent_at) VALUES (%s, %s, %s, %s, 'sent', %s, %s, now())"
            " RETURNING id",
            (tenant.id, tenant.lead_id, channel, recipient, provider, external_id),
        )
        row = await cur.fetchone()
    assert row is not None
    return UUID(str(row[0]))


async def _comm(url: str, comm_id: UUID) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("SELECT * FROM public.communications WHERE id = %s", (comm_id,))
        row = await cur.fetchone()
    assert row is not None
    return row


async def _stored(url: str, client_id: UUID | None = None) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "SELECT * FROM public.provider_events"
            " WHERE %(client)s::uuid IS NULL OR client_id = %(client)s::uuid ORDER BY id",
            {"client": client_id},
        )
        return await cur.fetchall()


# ---------------------------------------------------------------------------- fixtures


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


@pytest.fixture
async def tenant(migrated_db: str) -> Tenant:
    return await new_tenant(migrated_db)


async def _post(api: httpx.AsyncClient, request: Signed) -> httpx.Response:
    return await api.post(request.path, content=request.content, headers=request.headers)


def _assert_refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]


# ---------------------------------------------------------------------------- genuine requests


async def test_a_signed_resend_event_moves_the_status(
    api: httpx.AsyncClient, tenant: Tenant, migrated_db: str
) -> None:
    comm_id = await _sent(migrated_db, tenant, "resend", "re_genuine")

    response = await _post(api, resend_request(tenant, "re_genuine"))

    assert response.status_code == 200, response.text
    assert response.json() == {"received": 1, "duplicates": 0}
    # Only stored so far: the worker's applier applies it.
    [pending] = await _stored(migrated_db, tenant.id)
    assert (pending["attempted_at"], pending["communication_id"]) == (None, None)
    assert (await _comm(migrated_db, comm_id))["status"] == "sent"

    assert (await apply_events(migrated_db)).applied >= 1

    comm = await _comm(migrated_db, comm_id)
    assert comm["status"] == "delivered"
    assert comm["delivered_at"].isoformat() == "2026-05-04T09:30:00+00:00"
    [event] = await _stored(migrated_db, tenant.id)
    assert (event["provider"], event["communication_id"], event["effect"]) == (
        "resend", comm_id, "delivered",
    )  # fmt: skip


async def test_signed_sendgrid_events_move_the_status(
    api: httpx.AsyncClient, tenant: Tenant, migrated_db: str
) -> None:
    comm_id = await _sent(migrated_db, tenant, "sendgrid", "SGmsgGenuine")

    response = await _post(api, sendgrid_request(tenant, "SGmsgGenuine"))
    await apply_events(migrated_db)

    assert response.status_code == 200, response.text
    assert response.json() == {"received": 2, "duplicates": 0}
    assert (await _comm(migrated_db, comm_id))["status"] == "delivered"
    assert [e["event_type"] for e in await _stored(migrated_db, tenant.id)] == [
        "processed", "delivered",
    ]  # fmt: skip


async def test_a_twilio_callback_signed_over_the_public_url_fails_the_sms_with_its_code(
    api: httpx.AsyncClient, tenant: Tenant, migrated_db: str
) -> None:
    sid = "SM" + uuid.uuid4().hex
    comm_id = await _sent(migrated_db, tenant, "twilio", sid)

    response = await _post(api, twilio_request(tenant, sid))
    await apply_events(migrated_db)

    assert response.status_code == 200, response.text
    comm = await _comm(migrated_db, comm_id)
    assert comm["status"] == "failed"
    assert "30003" in comm["error_message"]


async def test_a_twilio_signature_over_the_url_with_the_default_port_is_accepted(
    api: httpx.AsyncClient, tenant: Tenant, migrated_db: str
) -> None:
    sid = "SM" + uuid.uuid4().hex
    comm_id = await _sent(migrated_db, tenant, "twilio", sid)

    response = await _post(
        api, twilio_request(tenant, sid, status="delivered", base="https://lqs.example:443")
    )
    await apply_events(migrated_db)

    assert response.status_code == 200, response.text
    assert (await _comm(migrated_db, comm_id))["status"] == "delivered"


async def test_a_replayed_webhook_is_acknowledged_and_has_one_effect(
    api: httpx.AsyncClient, tenant: Tenant, migrated_db: str
) -> None:
    await _sent(migrated_db, tenant, "resend", "re_replayed")
    request = resend_request(tenant, "re_replayed", event_type="email.complained")

    first = await _post(api, request)
    await apply_events(migrated_db)
    again = await _post(api, request)
    await apply_events(migrated_db)

    assert (first.status_code, again.status_code) == (200, 200)
    assert (first.json(), again.json()) == (
        {"received": 1, "duplicates": 0}, {"received": 1, "duplicates": 1},
    )  # fmt: skip
    assert len(await _stored(migrated_db, tenant.id)) == 1
    async with await psycopg.AsyncConnection.connect(migrated_db) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM public.consent_history WHERE client_id = %s", (tenant.id,)
        )
        assert await cur.fetchone() == (1,)


# ---------------------------------------------------------------------------- forged requests


def _drop(name: str) -> Callable[[Signed], Signed]:
    def without(request: Signed) -> Signed:
        headers = {k: v for k, v in request.headers.items() if k.lower() != name.lower()}
        return Signed(request.path, request.content, headers)

    return without


def _tamper(request: Signed) -> Signed:
    assert b"delivered" in request.content
    return Signed(request.path, request.content.replace(b"delivered", b"bounced"), request.headers)


def _reserialise(request: Signed) -> Signed:
    content = json.dumps(json.loads(request.content), indent=2).encode()
    return Signed(request.path, content, request.headers)


def _same(request: Signed) -> Signed:
    return request


def _forged_resend(how: str, tenant: Tenant) -> Signed:
    if how == "wrong secret":
        return resend_request(tenant, "re_forged", secret=new_svix_secret())
    if how == "301 s old":
        return resend_request(tenant, "re_forged", skew=-301)
    if how == "330 s ahead":
        # 30 s past the 300 s tolerance: a loaded machine may take seconds to check it.
        return resend_request(tenant, "re_forged", skew=330)
    change = {
        "tampered body": _tamper,
        "re-serialised body": _reserialise,
        "no svix-id": _drop("svix-id"),
        "no svix-timestamp": _drop("svix-timestamp"),
        "no svix-signature": _drop("svix-signature"),
    }[how]
    return change(resend_request(tenant, "re_forged"))


def _forged_sendgrid(how: str, tenant: Tenant) -> Signed:
    if how == "wrong secret":
        return sendgrid_request(tenant, "SGforged", key=ec.generate_private_key(ec.SECP256R1()))
    if how == "301 s old":
        return sendgrid_request(tenant, "SGforged", skew=-301)
    if how == "330 s ahead":
        return sendgrid_request(tenant, "SGforged", skew=330)
    change = {
        "tampered body": _tamper,
        "re-serialised body": _reserialise,
        "no signature": _drop(SENDGRID_SIGNATURE),
        "no timestamp": _drop(SENDGRID_TIMESTAMP),
    }[how]
    return change(sendgrid_request(tenant, "SGforged"))


def _forged_twilio(how: str, tenant: Tenant) -> Signed:
    sid = "SMforged"
    if how == "wrong secret":
        return twilio_request(tenant, sid, status="delivered", token="fake-other-token")
    if how == "signed over the URL the server saw":
        return twilio_request(tenant, sid, status="delivered", base="http://test")
    if how == "signed over another client's path":
        other = Tenant(uuid.uuid4(), *[getattr(tenant, f) for f in
                       ("lead_id", "svix_secret", "sendgrid_key", "twilio_token", "twilio_account")])  # fmt: skip
        forged = twilio_request(other, sid, status="delivered")
        return Signed(f"/webhooks/twilio/{tenant.id}", forged.content, forged.headers)
    change = {
        "tampered body": _tamper,
        "no signature": _drop("X-Twilio-Signature"),
        "extra parameter": lambda r: Signed(r.path, r.content + b"&Extra=1", r.headers),
    }[how]
    return change(twilio_request(tenant, sid, status="delivered"))


MISMATCH, TIMESTAMP, MISSING = "no signature matched", "timestamp", "missing header"
FORGERIES = [
    ("resend", "tampered body", MISMATCH),
    ("resend", "wrong secret", MISMATCH),
    ("resend", "no svix-id", MISSING),
    ("resend", "no svix-timestamp", MISSING),
    ("resend", "no svix-signature", MISSING),
    ("resend", "301 s old", TIMESTAMP),
    ("resend", "330 s ahead", TIMESTAMP),
    ("resend", "re-serialised body", MISMATCH),
    ("sendgrid", "tampered body", MISMATCH),
    ("sendgrid", "wrong secret", MISMATCH),
    ("sendgrid", "no signature", MISSING),
    ("sendgrid", "no timestamp", MISSING),
    ("sendgrid", "301 s old", TIMESTAMP),
    ("sendgrid", "330 s ahead", TIMESTAMP),
    ("sendgrid", "re-serialised body", MISMATCH),
    ("twilio", "tampered body", MISMATCH),
    ("twilio", "wrong secret", MISMATCH),
    ("twilio", "no signature", MISSING),
    ("twilio", "extra parameter", MISMATCH),
    ("twilio", "signed over the URL the server saw", MISMATCH),
    ("twilio", "signed over another client's path", MISMATCH),
]


@pytest.mark.parametrize(("provider", "how", "why"), FORGERIES)
async def test_a_forged_request_is_401_and_stores_nothing(
    api: httpx.AsyncClient, tenant: Tenant, migrated_db: str, provider: str, how: str, why: str
) -> None:
    external_id = {"resend": "re_forged", "sendgrid": "SGforged", "twilio": "SMforged"}[provider]
    comm_id = await _sent(migrated_db, tenant, provider, external_id)
    forge = {"resend": _forged_resend, "sendgrid": _forged_sendgrid, "twilio": _forged_twilio}
    stored_before = len(await _stored(migrated_db))

    response = await _post(api, forge[provider](how, tenant))

    _assert_refused(response, 401, "invalid_signature")
    assert why in response.json()["error"]["message"]
    assert len(await _stored(migrated_db)) == stored_before
    assert (await _comm(migrated_db, comm_id))["status"] == "sent"


async def test_a_valid_signature_among_rotated_ones_is_accepted(
    api: httpx.AsyncClient, tenant: Tenant, migrated_db: str
) -> None:
    comm_id = await _sent(migrated_db, tenant, "resend", "re_rotated")
    request = resend_request(tenant, "re_rotated")
    h = request.headers
    old = svix_signature(new_svix_secret(), h["svix-id"], h["svix-timestamp"], request.content)
    rotated = {**h, "svix-signature": f"{old} v2,bm90LWEtdjEtc2lnbmF0dXJl {h['svix-signature']}"}

    response = await api.post(request.path, content=request.content, headers=rotated)
    await apply_events(migrated_db)

    assert response.status_code == 200, response.text
    assert (await _comm(migrated_db, comm_id))["status"] == "delivered"


@pytest.mark.parametrize("provider", ["resend", "sendgrid", "twilio"])
async def test_a_client_without_webhook_credentials_is_401(
    api: httpx.AsyncClient, migrated_db: str, provider: str
) -> None:
    bare = await new_tenant(migrated_db, with_webhook_secrets=False)
    if provider == "twilio":
        async with await psycopg.AsyncConnection.connect(migrated_db) as conn:
            await conn.execute(
                "UPDATE public.clients SET settings = settings #- '{delivery,twilio}'"
                " WHERE id = %s",
                (bare.id,),
            )
    request = {
        "resend": lambda: resend_request(bare, "re_x"),
        "sendgrid": lambda: sendgrid_request(bare, "SGx"),
        "twilio": lambda: twilio_request(bare, "SMx"),
    }[provider]()

    response = await _post(api, request)

    _assert_refused(response, 401, "invalid_signature")
    assert await _stored(migrated_db, bare.id) == []


async def test_an_unknown_client_id_is_401(api: httpx.AsyncClient, tenant: Tenant) -> None:
    request = resend_request(tenant, "re_x")

    response = await api.post(
        f"/webhooks/resend/{uuid.uuid4()}", content=request.content, headers=request.headers
    )

    _assert_refused(response, 401, "invalid_signature")


async def test_a_client_id_that_is_not_a_uuid_is_404(api: httpx.AsyncClient) -> None:
    response = await api.post("/webhooks/resend/acme", content=b"{}")

    _assert_refused(response, 404, "unknown_client")


@pytest.mark.parametrize(
    "path", ["/webhooks/mailgun", "/webhooks/mailgun/0b1e5c1d-0000-4000-8000-000000000003"]
)
async def test_an_unknown_provider_is_404(api: httpx.AsyncClient, path: str) -> None:
    response = await api.post(path, content=b"{}")

    _assert_refused(response, 404, "unknown_provider")


# ---------------------------------------------------------------------------- which client


@pytest.mark.parametrize("provider", ["resend", "twilio"])
async def test_the_path_without_client_id_finds_the_client_that_signed(
    api: httpx.AsyncClient, migrated_db: str, provider: str
) -> None:
    first = await new_tenant(migrated_db)
    second = await new_tenant(migrated_db)
    external_id = ("SM" if provider == "twilio" else "re_") + uuid.uuid4().hex
    mine = await _sent(migrated_db, second, provider, external_id)
    request = (
        twilio_request(second, external_id, status="delivered", shared=True)
        if provider == "twilio"
        else resend_request(second, external_id, shared=True)
    )

    response = await _post(api, request)
    await apply_events(migrated_db)

    assert response.status_code == 200, response.text
    assert (await _comm(migrated_db, mine))["status"] == "delivered"
    assert await _stored(migrated_db, first.id) == []
    [event] = await _stored(migrated_db, second.id)
    assert event["communication_id"] == mine


async def test_an_event_signed_by_one_client_about_anothers_message_changes_nothing(
    api: httpx.AsyncClient, migrated_db: str
) -> None:
    attacker = await new_tenant(migrated_db)
    victim = await new_tenant(migrated_db)
    victims = await _sent(migrated_db, victim, "resend", "re_victim")
    victims_sg = await _sent(migrated_db, victim, "sendgrid", "SGvictim")
    before = await _comm(migrated_db, victims), await _comm(migrated_db, victims_sg)

    by_message_id = await _post(
        api, resend_request(attacker, "re_victim", event_type="email.complained")
    )
    by_our_id = await _post(
        api,
        sendgrid_request(attacker, "SGother", extra={"communication_id": str(victims_sg)}),
    )

    applied = await apply_events(migrated_db)

    assert by_message_id.status_code == by_our_id.status_code == 200
    assert (by_message_id.json()["received"], by_our_id.json()["received"]) == (1, 2)
    assert applied.waiting >= 3
    assert (await _comm(migrated_db, victims), await _comm(migrated_db, victims_sg)) == before
    assert await _stored(migrated_db, victim.id) == []
    assert {e["communication_id"] for e in await _stored(migrated_db, attacker.id)} == {None}
    async with await psycopg.AsyncConnection.connect(migrated_db) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM public.suppressions WHERE client_id = %s", (victim.id,)
        )
        assert await cur.fetchone() == (0,)


# ---------------------------------------------------------------------------- bad bodies


async def test_a_five_megabyte_body_is_413(api: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await api.post(
        f"/webhooks/resend/{tenant.id}",
        content=b"[" + b" " * (5 * 1024 * 1024) + b"]",
        headers={"content-type": "application/json"},
    )

    _assert_refused(response, 413, "body_too_large")


@pytest.mark.parametrize("provider", ["resend", "sendgrid", "twilio"])
async def test_a_signed_body_of_the_wrong_shape_is_400(
    api: httpx.AsyncClient, tenant: Tenant, migrated_db: str, provider: str
) -> None:
    request = {
        "resend": lambda: resend_request(tenant, "re_x", data={"to": ["a@b.example"]}),
        "sendgrid": lambda: sendgrid_request(tenant, "SGx", events=[{"event": "delivered"}]),
        "twilio": lambda: twilio_request(tenant, "SMx", params={"MessageStatus": "sent"}),
    }[provider]()

    response = await _post(api, request)

    _assert_refused(response, 400, "malformed_webhook")
    assert await _stored(migrated_db, tenant.id) == []


async def test_a_signed_event_id_over_255_characters_is_400(
    api: httpx.AsyncClient, tenant: Tenant, migrated_db: str
) -> None:
    event = {"event": "delivered", "sg_event_id": "e" * 256, "email": "a@b.example"}
    response = await _post(api, sendgrid_request(tenant, "SGx", events=[event]))

    _assert_refused(response, 400, "malformed_webhook")
    assert await _stored(migrated_db, tenant.id) == []


# ---------------------------------------------------------------------------- metrics


def _metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(wanted)}\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_metrics_count_stored_and_refused_webhooks(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    stored = ("lqs_webhook_events_total", {"provider": "resend", "result": "stored"})
    refused = ("lqs_webhook_requests_total", {"outcome": "invalid_signature", "provider": "resend"})
    before = (await api.get("/metrics")).text

    assert (await _post(api, resend_request(tenant, "re_nobody"))).status_code == 200
    forged = await _post(api, resend_request(tenant, "re_nobody", secret=new_svix_secret()))
    assert forged.status_code == 401
    after = await api.get("/metrics")

    assert after.status_code == 200
    assert after.headers["content-type"].startswith("text/plain")
    for name, labels in (stored, refused):
        assert _metric(after.text, name, **labels) == _metric(before, name, **labels) + 1


# ---------------------------------------------------------------------------- remembered credentials


async def _set_svix_secret(url: str, tenant: Tenant, secret: str) -> None:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await conn.execute(
            "UPDATE public.clients SET settings = jsonb_set(settings,"
            " '{delivery,resend,webhook_secret}', to_jsonb(%s::text)) WHERE id = %s",
            (secret, tenant.id),
        )


async def test_a_rotated_secret_is_honoured_at_once_and_the_old_one_refused_after_it(
    api: httpx.AsyncClient, tenant: Tenant, migrated_db: str
) -> None:
    # The first request makes the process remember the tenant's credentials.
    assert (await _post(api, resend_request(tenant, "re_before"))).status_code == 200
    rotated = new_svix_secret()
    await _set_svix_secret(migrated_db, tenant, rotated)

    # The remembered secret does not verify it: looked up again, accepted.
    with_new = await _post(api, resend_request(tenant, "re_after", secret=rotated))
    with_old = await _post(api, resend_request(tenant, "re_old"))

    assert with_new.status_code == 200, with_new.text
    _assert_refused(with_old, 401, "invalid_signature")
    assert [e["external_id"] for e in await _stored(migrated_db, tenant.id)] == [
        "re_before", "re_after",
    ]  # fmt: skip


async def test_a_client_added_after_the_shared_path_was_remembered_is_found(
    api: httpx.AsyncClient, migrated_db: str
) -> None:
    first = await new_tenant(migrated_db)
    assert (await _post(api, resend_request(first, "re_a", shared=True))).status_code == 200
    later = await new_tenant(migrated_db)

    response = await _post(api, resend_request(later, "re_b", shared=True))

    assert response.status_code == 200, response.text
    [event] = await _stored(migrated_db, later.id)
    assert event["external_id"] == "re_b"


# ---------------------------------------------------------------------------- round trips


class _CountingProxy:
    """A TCP proxy to the database that counts round trips: each time a client sends after
    the server spoke (or first), one more."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.round_trips = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        client_turn = [True]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            while data := await src.read(65536):
                if up and client_turn[0]:
                    self.round_trips += 1
                    client_turn[0] = False
                elif not up:
                    client_turn[0] = True
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(
            pump(reader, upstream_writer, True),
            pump(upstream_reader, writer, False),
            return_exceptions=True,
        )


async def test_a_webhook_is_two_round_trips_to_the_database_once_credentials_are_known(
    migrated_db: str,
) -> None:
    params = conninfo_to_dict(migrated_db)
    host = str(params.get("host") or "")
    if not host or host.startswith("/"):
        pytest.skip("needs a TCP database URL (LQS_TEST_DATABASE_URL)")
    proxy = _CountingProxy(host, int(params.get("port") or 5432))
    port = await proxy.start()
    through_proxy = make_conninfo(migrated_db, host="127.0.0.1", port=port)
    tenant = await new_tenant(migrated_db)
    config = api_config(pool_min_size=1, webhook=WebhookConfig(PUBLIC, tolerance=300.0))
    application = create_app(through_proxy, config, pooled=False)
    try:
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                first = await _post(http, resend_request(tenant, "re_rt1"))  # looks up
                before = proxy.round_trips
                second = await _post(http, resend_request(tenant, "re_rt2"))
                used = proxy.round_trips - before
    finally:
        await proxy.close()

    assert (first.status_code, second.status_code) == (200, 200)
    assert used <= 2, f"{used} round trips"
