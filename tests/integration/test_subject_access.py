"""Subject access (issue 16, GDPR Art. 15): everything a client holds on one person, as one
JSON document, from the CLI and from GET /v1/subjects (admins, under row-level security),
on a real database."""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import jsonschema
import psycopg
import pytest
from fastapi import FastAPI
from psycopg.types.json import Jsonb

from lqs.api.app import create_app
from lqs.api.tokens import TokenVerifier
from tests.configs import api_config
from tests.integration.test_cli import assert_one_line_error, run_lqs

pytestmark = pytest.mark.asyncio(loop_scope="module")

SECRET = secrets.token_urlsafe(48)
VERIFIER = TokenVerifier(secret=SECRET)
SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "subject-access.schema.json").read_text())
LISTS = (
    "leads", "communications", "delivery_attempts", "provider_events", "consent_history",
    "suppressions", "audit_log", "idempotency_records", "lead_import_rows", "recipient_sends",
)  # fmt: skip


async def _one(conn: psycopg.AsyncConnection[Any], query: str, *params: Any) -> Any:
    cur = await conn.execute(query.encode(), params)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


@dataclass(frozen=True)
class Tenant:
    client: UUID
    slug: str
    admin: UUID
    member: UUID


@dataclass(frozen=True)
class Person:
    email: str
    phone: str
    lead: UUID
    communication: UUID
    ids: dict[str, list[Any]]
    """The ids the document must list, by list."""


async def _tenant(conn: psycopg.AsyncConnection[Any]) -> Tenant:
    slug = f"sa-{uuid.uuid4().hex[:10]}"
    client = await _one(
        conn,
        "INSERT INTO public.clients (name, slug) VALUES (%s, %s) RETURNING id",
        f"Subject {slug}", slug,
    )  # fmt: skip
    admin, member = uuid.uuid4(), uuid.uuid4()
    await conn.execute(
        "INSERT INTO public.profiles (id, client_id, email, role) VALUES"
        " (%s, %s, %s, 'admin'), (%s, %s, %s, 'member')",
        (admin, client, f"admin@{slug}.example", member, client, f"member@{slug}.example"),
    )
    return Tenant(client, slug, admin, member)


async def _person(conn: psycopg.AsyncConnection[Any], tenant: Tenant) -> Person:
    """A person with a row in every table the document covers."""
    tag = uuid.uuid4().hex[:8]
    email, phone = f"Ada.{tag}@Example.com", f"+1415555{int(tag[:4], 16) % 10000:04d}"
    normal = email.lower()
    c = tenant.client
    lead = await _one(
        conn,
        "INSERT INTO public.leads (client_id, email, phone, first_name, dedupe_key, status,"
        " custom, history, score, score_breakdown)"
        " VALUES (%s, %s, %s, 'Ada', %s, 'qualified', %s, %s, 70, %s) RETURNING id",
        c, email, phone, f"email:{normal}", Jsonb({"budget": "high"}),
        Jsonb([{"event": "received"}]), Jsonb([{"rule_id": "r1", "points": 70}]),
    )  # fmt: skip
    comm = await _one(
        conn,
        "INSERT INTO public.communications (lead_id, client_id, type, recipient, subject,"
        " content, status, provider, external_id, external_reference, template_variables)"
        " VALUES (%s, %s, 'email', %s, 'Welcome Ada', 'Dear Ada', 'delivered', 'resend',"
        " %s, %s, %s) RETURNING id",
        lead, c, normal, f"re_{tag}", Jsonb({"id": f"re_{tag}"}), Jsonb({"first_name": "Ada"}),
    )  # fmt: skip
    attempt = await _one(
        conn,
        "INSERT INTO public.delivery_attempts (communication_id, client_id, attempt, provider,"
        " started_at, finished_at, latency_ms, outcome, recorded)"
        " VALUES (%s, %s, 1, 'resend', now(), now(), 3, 'accepted', true) RETURNING id",
        comm, c,
    )  # fmt: skip
    events = [
        await _one(
            conn,
            "INSERT INTO public.provider_events (client_id, provider, event_id,"
            " communication_id, event_type, kind, recipient, payload)"
            " VALUES (%s, 'resend', %s, %s, 'email.delivered', 'delivered', %s, %s)"
            " RETURNING id",
            c,
            f"ev-{tag}-{n}",
            matched,
            normal,
            Jsonb({"to": normal, "n": n}),
        )
        for n, matched in ((1, comm), (2, None))
    ]
    consent = await _one(
        conn,
        "INSERT INTO public.consent_history (client_id, lead_id, channel, recipient,"
        " consent_status, source, text_version, captured_at, ip, user_agent, evidence)"
        " VALUES (%s, %s, 'email', %s, 'granted', 'api', 'v3', now(), '203.0.113.9',"
        " 'Firefox', %s) RETURNING id",
        c, lead, normal, Jsonb({"form": "signup"}),
    )  # fmt: skip
    suppression = await _one(
        conn,
        "INSERT INTO public.suppressions (client_id, channel, recipient, reason)"
        " VALUES (%s, 'email', %s, 'unsubscribe') RETURNING id",
        c, normal,
    )  # fmt: skip
    audit = await _one(
        conn,
        "INSERT INTO public.audit_log (client_id, user_id, action, target_id)"
        " VALUES (%s, %s, 'communication.retry', %s) RETURNING id",
        c, tenant.admin, comm,
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO public.idempotency_keys (client_id, key, request_hash, status_code,"
        " response) VALUES (%s, %s, %s, 202, %s)",
        (c, f"idem-{tag}", b"h", Jsonb({"id": str(lead), "status": "queued"})),
    )
    row_hash = hashlib.sha256(tag.encode()).digest()
    await conn.execute(
        "INSERT INTO public.lead_import_rows (client_id, row_hash, lead_id) VALUES (%s, %s, %s)",
        (c, row_hash, lead),
    )
    await conn.execute(
        "INSERT INTO public.recipient_sends (communication_id, client_id, channel, recipient,"
        " sent_at) VALUES (%s, %s, 'email', %s, now())",
        (comm, c, normal),
    )
    ids = {
        "leads": [str(lead)],
        "communications": [str(comm)],
        "delivery_attempts": [attempt],
        "provider_events": events,
        "consent_history": [consent],
        "suppressions": [str(suppression)],
        "audit_log": [audit],
        "idempotency_records": [f"idem-{tag}"],
        "lead_import_rows": [row_hash.hex()],
        "recipient_sends": [str(comm)],
    }
    return Person(email, phone, lead, comm, ids)


@dataclass(frozen=True)
class World:
    a: Tenant
    b: Tenant
    ada: Person
    """A's person, with a row everywhere."""
    bystander: Person
    """Another person of A's."""
    ada_at_b: Person
    """The same email address at client B."""


@pytest.fixture(scope="module")
async def world(migrated_db: str) -> World:
    async with await psycopg.AsyncConnection.connect(migrated_db, autocommit=True) as conn:
        a, b = await _tenant(conn), await _tenant(conn)
        ada = await _person(conn, a)
        bystander = await _person(conn, a)
        ada_at_b = await _person(conn, b)
        # The same address at B, so that only row-level security keeps B's rows out.
        await conn.execute(
            "UPDATE public.leads SET email = %s, dedupe_key = %s WHERE id = %s",
            (ada.email, f"email:{ada.email.lower()}", ada_at_b.lead),
        )
    return World(a, b, ada, bystander, ada_at_b)


def _key(name: str, row: dict[str, Any]) -> Any:
    if name == "idempotency_records":
        return row["key"]
    if name == "lead_import_rows":
        return row["row_hash"]
    if name == "recipient_sends":
        return row["communication_id"]
    return row["id"]


def _listed(document: dict[str, Any]) -> dict[str, list[Any]]:
    return {name: [_key(name, row) for row in document[name]] for name in LISTS}


def _assert_is_adas(document: dict[str, Any], world: World) -> None:
    jsonschema.validate(document, SCHEMA)
    assert document["schema_version"] == 1
    assert document["client"]["slug"] == world.a.slug
    assert _listed(document) == world.ada.ids
    lead, comm = document["leads"][0], document["communications"][0]
    assert (lead["custom"], lead["history"], lead["score_breakdown"]) == (
        {"budget": "high"}, [{"event": "received"}], [{"rule_id": "r1", "points": 70}]
    )  # fmt: skip
    assert (comm["subject"], comm["content"], comm["template_variables"]) == (
        "Welcome Ada", "Dear Ada", {"first_name": "Ada"}
    )  # fmt: skip
    assert comm["external_reference"] == {"id": comm["external_id"]}
    consent = document["consent_history"][0]
    assert (consent["text_version"], consent["ip"], consent["evidence"]) == (
        "v3", "203.0.113.9", {"form": "signup"}
    )  # fmt: skip
    assert document["provider_events"][0]["payload"]["to"] == world.ada.email.lower()
    text = json.dumps(document)
    assert world.bystander.email.lower() not in text
    assert str(world.ada_at_b.lead) not in text


# ---------------------------------------------------------------- the command


def _env(url: str) -> dict[str, str]:
    return {"LQS_DATABASE_URL": url}


async def test_export_subject_prints_every_record_held_on_the_person(
    migrated_db: str, world: World
) -> None:
    result = run_lqs(
        "leads", "export-subject", "--client", world.a.slug, "--email", world.ada.email,
        env=_env(migrated_db),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    _assert_is_adas(json.loads(result.stdout), world)


async def test_export_subject_by_phone_alone_finds_the_same_person(
    migrated_db: str, world: World
) -> None:
    result = run_lqs(
        "leads", "export-subject", "--client", world.a.slug, "--phone", world.ada.phone,
        env=_env(migrated_db),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert _listed(document)["leads"] == world.ada.ids["leads"]
    assert document["subject"] == {"email": None, "phone": world.ada.phone}


async def test_a_person_with_no_records_gets_empty_lists(migrated_db: str, world: World) -> None:
    result = run_lqs(
        "leads", "export-subject", "--client", world.a.slug, "--email", "nobody@example.com",
        env=_env(migrated_db),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    jsonschema.validate(document, SCHEMA)
    assert all(document[name] == [] for name in LISTS)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--client", "no-such-client", "--email", "a@example.com"), "no-such-client"),
        (("--email", "not an address"), "--email not a valid email address"),
        (("--phone", "4155550100"), "--phone must be in E.164 form"),
        (("--phone", "+1"), "--phone"),
        ((), "--email give an email address or a phone number"),
    ],
)
async def test_export_subject_refuses_bad_input_in_one_line(
    migrated_db: str, world: World, args: tuple[str, ...], fragment: str
) -> None:
    if "--client" not in args:
        args = ("--client", world.a.slug, *args)
    result = run_lqs("leads", "export-subject", *args, env=_env(migrated_db))
    assert_one_line_error(result, fragment)


# ---------------------------------------------------------------- the API


@pytest.fixture(scope="module")
async def api(migrated_db: str) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(migrated_db, api_config(pool_max_size=4, tokens=VERIFIER))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lqs.test") as http:
            yield http


def _as(user: UUID) -> dict[str, str]:
    token, _ = VERIFIER.issue(user)
    return {"Authorization": f"Bearer {token}"}


async def test_an_admin_gets_the_document_and_the_export_is_audited(
    api: httpx.AsyncClient, world: World, migrated_db: str
) -> None:
    response = await api.get(
        "/v1/subjects", params={"email": world.ada.email}, headers=_as(world.a.admin)
    )
    assert response.status_code == 200, response.text
    _assert_is_adas(response.json(), world)
    async with await psycopg.AsyncConnection.connect(migrated_db) as conn:
        detail = await _one(
            conn,
            "SELECT detail FROM public.audit_log WHERE client_id = %s"
            " AND action = 'subject.export' ORDER BY id DESC LIMIT 1",
            world.a.client,
        )
    assert detail["leads"] == 1
    assert world.ada.email.lower() not in json.dumps(detail)


async def test_another_clients_admin_gets_nothing_of_a_s(
    api: httpx.AsyncClient, world: World
) -> None:
    response = await api.get(
        "/v1/subjects", params={"email": world.ada.email}, headers=_as(world.b.admin)
    )
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["client"]["slug"] == world.b.slug
    assert _listed(document)["leads"] == [str(world.ada_at_b.lead)]
    text = response.text
    for ids in world.ada.ids.values():
        assert not [i for i in ids if isinstance(i, str) and i in text]


async def test_a_member_is_refused(api: httpx.AsyncClient, world: World) -> None:
    response = await api.get(
        "/v1/subjects", params={"email": world.ada.email}, headers=_as(world.a.member)
    )
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "admin_only"


@pytest.mark.parametrize(
    ("params", "field"),
    [({"email": "not an address"}, "email"), ({"phone": "12"}, "phone"), ({}, "email")],
)
async def test_bad_input_is_400_naming_the_field(
    api: httpx.AsyncClient, world: World, params: dict[str, str], field: str
) -> None:
    response = await api.get("/v1/subjects", params=params, headers=_as(world.a.admin))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["fields"][0]["field"] == field


async def test_no_records_is_a_document_with_empty_lists(
    api: httpx.AsyncClient, world: World
) -> None:
    response = await api.get(
        "/v1/subjects", params={"email": "nobody@example.com"}, headers=_as(world.a.admin)
    )
    assert response.status_code == 200, response.text
    assert all(response.json()[name] == [] for name in LISTS)
