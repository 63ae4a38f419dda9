"""Proof of consent (issue 16) on a real database: the consent record intake accepts, the
append-only history entries every change of consent appends (API, CSV import,
unsubscribe, complaint) with who made it, ``lqs leads consent`` and
``GET /v1/leads/{id}/consent`` showing them, and the entry a send relied on named in the
communication's ``compliance_notes``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from click.testing import Result
from fastapi import FastAPI
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from typer.testing import CliRunner

from lqs.api.app import create_app
from lqs.api.tokens import TokenVerifier
from lqs.cli import app as cli_app
from lqs.db.clients import create_api_key, create_client
from lqs.db.consent import withdraw_consent
from lqs.db.pool import open_pool
from lqs.domain.delivery import RetryPolicy, Verdict
from lqs.domain.events import DeliveryEvent, EventKind
from lqs.providers.base import OutboundMessage, SendResult
from lqs.worker.dispatcher import Dispatcher, DispatcherOptions
from lqs.worker.processor import LeadProcessor
from tests.configs import api_config
from tests.integration.test_cli import assert_one_line_error, run_lqs
from tests.pending_events import ingest

SECRET = secrets.token_urlsafe(32)
TOKENS = TokenVerifier(secret=SECRET)
CAPTURED = datetime(2026, 12, 1, 9, 29, 41, tzinfo=UTC)
RECORD = {
    "status": "granted",
    "source": "pricing page form",
    "text_version": "newsletter-v3",
    "captured_at": CAPTURED.isoformat(),
    "ip": "203.0.113.7",
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
}
DELIVERY = {
    "email": {"primary": "resend"},
    "resend": {"api_key": "re_fake_key", "from_address": "lqs@sender.example",
               "base_url": "http://127.0.0.1:9"},
}  # fmt: skip
TO_LEAD = [{"channel": "email", "to": "lead", "template": "lead_acknowledgement"}]


@dataclass(frozen=True)
class Tenant:
    client_id: UUID
    slug: str
    key: str
    key_id: UUID
    key_prefix: str
    user: UUID


@pytest.fixture
async def pool(migrated_db: str) -> AsyncIterator[AsyncConnectionPool]:
    opened = await open_pool(migrated_db, min_size=1, max_size=6, worker=True)
    yield opened
    await opened.close()


@pytest.fixture(scope="module")
async def api(migrated_db: str) -> AsyncIterator[httpx.AsyncClient]:
    application: FastAPI = create_app(migrated_db, api_config(pool_max_size=4, tokens=TOKENS))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://lqs.test") as http:
            yield http


async def _tenant(pool: AsyncConnectionPool, **settings: Any) -> Tenant:
    slug = f"cp-{uuid.uuid4().hex[:10]}"
    async with pool.connection() as conn:
        client = await create_client(conn, slug, slug, settings)
        stored, key = await create_api_key(conn, client.id, "website forms", 600)
        user = uuid.uuid4()
        await conn.execute(
            "INSERT INTO public.profiles (id, client_id, email, role)"
            " VALUES (%s, %s, %s, 'member')",
            (user, client.id, f"user@{slug}.example"),
        )
    return Tenant(client.id, slug, key, stored.id, stored.prefix, user)


@pytest.fixture
async def tenant(pool: AsyncConnectionPool) -> Tenant:
    return await _tenant(pool)


def _key(tenant: Tenant) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.key}"}


def _user(tenant: Tenant) -> dict[str, str]:
    token, _ = TOKENS.issue(tenant.user)
    return {"Authorization": f"Bearer {token}"}


async def _rows(pool: AsyncConnectionPool, sql: str, *params: Any) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(sql.encode(), params)
        return await cur.fetchall()


async def _history(pool: AsyncConnectionPool, client_id: UUID) -> list[dict[str, Any]]:
    return await _rows(
        pool, "SELECT * FROM public.consent_history WHERE client_id = %s ORDER BY id", client_id
    )


async def _submit(
    api: httpx.AsyncClient, tenant: Tenant, lead: dict[str, Any], status: int = 201
) -> httpx.Response:
    response = await api.post("/v1/leads", headers=_key(tenant), json=lead)
    assert response.status_code == status, response.text
    return response


# ---------------------------------------------------------------- intake


async def test_a_consent_record_goes_into_the_history_with_the_key_that_sent_it(
    api: httpx.AsyncClient, pool: AsyncConnectionPool, tenant: Tenant
) -> None:
    response = await _submit(api, tenant, {"email": "Ann@Corp.example", "consent": RECORD})

    [entry] = await _history(pool, tenant.client_id)
    assert str(entry["lead_id"]) == response.json()["id"]
    assert (entry["channel"], entry["recipient"]) == ("email", "ann@corp.example")
    assert (entry["consent_status"], entry["source"]) == ("granted", "pricing page form")
    assert (entry["text_version"], entry["consent_text"]) == ("newsletter-v3", None)
    assert entry["captured_at"] == CAPTURED
    assert str(entry["ip"]) == "203.0.113.7"
    assert entry["user_agent"] == RECORD["user_agent"]
    assert entry["api_key_id"] == tenant.key_id
    [lead] = await _rows(pool, "SELECT * FROM public.leads WHERE id = %s", entry["lead_id"])
    assert (lead["consent_status"], lead["consent_source"], lead["consent_at"]) == (
        "granted", "pricing page form", CAPTURED,
    )  # fmt: skip


async def test_the_wording_itself_and_an_ipv6_address_are_kept(
    api: httpx.AsyncClient, pool: AsyncConnectionPool, tenant: Tenant
) -> None:
    record = {"status": "granted", "text": "Yes, send me the newsletter.", "ip": "2001:DB8::1"}
    await _submit(api, tenant, {"phone": "+12015550123", "consent": record})

    [entry] = await _history(pool, tenant.client_id)
    assert (entry["channel"], entry["recipient"]) == ("sms", "+12015550123")
    assert (entry["consent_text"], str(entry["ip"])) == (record["text"], "2001:db8::1")


@pytest.mark.parametrize(
    ("consent", "field"),
    [
        ({**RECORD, "ip": "203.0.113.999"}, "consent.ip"),
        ({**RECORD, "user_agent": "x" * 1001}, "consent.user_agent"),
        ({**RECORD, "captured_at": "2999-01-01T00:00:00Z"}, "consent.captured_at"),
        ({**RECORD, "captured_at": "yesterday"}, "consent.captured_at"),
        ({**RECORD, "text": "I agree"}, "consent.text_version"),
        ({k: v for k, v in RECORD.items() if k != "text_version"}, "consent.text_version"),
        ({**RECORD, "status": "unknown"}, "consent.status"),
        ({**RECORD, "status": "maybe"}, "consent.status"),
        ({k: v for k, v in RECORD.items() if k != "status"}, "consent.status"),
        ({**RECORD, "signed": True}, "consent.signed"),
        ({**RECORD, "source": "s" * 101}, "consent.source"),
        ({**RECORD, "text_version": "v\x00"}, "consent.text_version"),
        ("granted", "consent"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
async def test_a_bad_consent_field_is_422_naming_it_and_nothing_is_stored(
    api: httpx.AsyncClient, pool: AsyncConnectionPool, tenant: Tenant, consent: Any, field: str
) -> None:
    response = await _submit(api, tenant, {"email": "bo@corp.example", "consent": consent}, 422)

    assert field in [f["field"] for f in response.json()["error"]["fields"]], response.text
    assert await _history(pool, tenant.client_id) == []
    assert (
        await _rows(pool, "SELECT id FROM public.leads WHERE client_id = %s", tenant.client_id)
        == []
    )


@pytest.mark.parametrize(
    ("flat", "field"),
    [
        ({"consent_status": "denied"}, "consent_status"),
        ({"consent_source": "a fair"}, "consent_source"),
        ({"consent_at": "2026-11-30T10:00:00Z"}, "consent_at"),
    ],
)
async def test_flat_consent_fields_that_disagree_with_the_record_are_422(
    api: httpx.AsyncClient, tenant: Tenant, flat: dict[str, str], field: str
) -> None:
    lead = {"email": "cy@corp.example", "consent": RECORD, **flat}

    response = await _submit(api, tenant, lead, 422)

    assert [f["field"] for f in response.json()["error"]["fields"]] == [field]


async def test_flat_consent_fields_that_agree_with_the_record_are_accepted(
    api: httpx.AsyncClient, pool: AsyncConnectionPool, tenant: Tenant
) -> None:
    lead = {"email": "di@corp.example", "consent": RECORD, "consent_status": "granted",
            "consent_at": "2026-12-01T10:29:41+01:00"}  # fmt: skip

    await _submit(api, tenant, lead)

    assert [e["consent_status"] for e in await _history(pool, tenant.client_id)] == ["granted"]


async def test_a_resubmission_appends_only_when_consent_changes(
    api: httpx.AsyncClient, pool: AsyncConnectionPool, tenant: Tenant
) -> None:
    email = "ed@corp.example"
    await _submit(api, tenant, {"email": email, "consent": RECORD})
    await _submit(api, tenant, {"email": email, "consent": RECORD}, 200)  # the same proof
    await _submit(api, tenant, {"email": email, "consent_status": "granted"}, 200)
    await _submit(api, tenant, {"email": email}, 200)  # unknown: says nothing
    await _submit(api, tenant, {"email": email, "consent_status": "withdrawn"}, 200)
    later = {**RECORD, "captured_at": (CAPTURED + timedelta(days=1)).isoformat()}
    await _submit(api, tenant, {"email": email, "consent": later}, 200)  # new evidence
    await _submit(api, tenant, {"email": email, "consent": later}, 200)

    history = await _history(pool, tenant.client_id)
    assert [(e["consent_status"], e["captured_at"]) for e in history] == [
        ("granted", CAPTURED),
        ("withdrawn", None),
        ("granted", CAPTURED + timedelta(days=1)),
    ]
    assert {e["api_key_id"] for e in history} == {tenant.key_id}
    assert history[1]["source"] == "api"


async def test_a_batch_appends_one_entry_per_lead_whose_consent_changed(
    api: httpx.AsyncClient, pool: AsyncConnectionPool, tenant: Tenant
) -> None:
    leads = [
        {"email": "fay@corp.example", "consent": RECORD},
        {"email": "gus@corp.example"},
        {"email": "FAY@corp.example", "consent_status": "denied"},
    ]

    response = await api.post("/v1/leads/batch", headers=_key(tenant), json={"leads": leads})

    assert response.status_code == 200, response.text
    history = await _history(pool, tenant.client_id)
    assert [(e["recipient"], e["consent_status"], e["text_version"]) for e in history] == [
        ("fay@corp.example", "denied", None)
    ]


async def test_a_bad_consent_field_in_a_batch_names_the_lead(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    leads = [{"email": "a@corp.example"}, {"email": "b@corp.example", "consent": {"status": "x"}}]

    response = await api.post("/v1/leads/batch", headers=_key(tenant), json={"leads": leads})

    assert response.status_code == 422
    fields = [f["field"] for f in response.json()["error"]["fields"]]
    assert "leads[1].consent.status" in fields


# ---------------------------------------------------------------- other changes


async def test_a_csv_import_appends_with_the_file_and_the_operator(
    migrated_db: str, pool: AsyncConnectionPool, tenant: Tenant, tmp_path: Path
) -> None:
    csv_file = tmp_path / "fair-2026.csv"
    csv_file.write_text(
        "Email,Consent,Consent Given Via\nhal@corp.example,yes,booth sign-up\nivy@corp.example,,\n"
    )

    result = await _lqs(migrated_db, "leads", "import", str(csv_file), "--client", tenant.slug)
    again = await _lqs(migrated_db, "leads", "import", str(csv_file), "--client", tenant.slug)

    assert result.exit_code == 0, result.output
    assert again.exit_code == 0, again.output
    [entry] = await _history(pool, tenant.client_id)
    assert (entry["recipient"], entry["consent_status"]) == ("hal@corp.example", "granted")
    assert entry["source"] == "booth sign-up"
    assert entry["api_key_id"] is None
    assert entry["evidence"]["import"] == "fair-2026.csv"
    assert entry["evidence"]["operator"]


async def test_an_unsubscribe_and_a_complaint_append_and_a_new_grant_appends_again(
    api: httpx.AsyncClient, pool: AsyncConnectionPool, tenant: Tenant
) -> None:
    response = await _submit(api, tenant, {"email": "jo@corp.example", "consent": RECORD})
    lead_id = UUID(response.json()["id"])
    async with pool.connection() as conn, conn.transaction():
        await withdraw_consent(
            conn, tenant.client_id, lead_id, "email", "jo@corp.example", source="unsubscribe link"
        )
    await _submit(api, tenant, {"email": "jo@corp.example", "consent": RECORD}, 200)
    comm_id = await _sent_to_lead(pool, tenant.client_id, lead_id, "jo@corp.example", "re_jo")
    complaint = DeliveryEvent("resend", "evt-jo-1", EventKind.COMPLAINED, "email.complained",
                              "re_jo", recipient="jo@corp.example")  # fmt: skip
    await ingest(pool, tenant.client_id, "resend", [complaint])

    history = await _history(pool, tenant.client_id)
    assert [(e["consent_status"], e["source"]) for e in history] == [
        ("granted", "pricing page form"),
        ("withdrawn", "unsubscribe link"),
        ("granted", "pricing page form"),
        ("withdrawn", "resend complaint"),
    ]
    assert history[3]["communication_id"] == comm_id
    assert history[3]["evidence"]["event_id"] == "evt-jo-1"
    assert history[3]["evidence"]["event_type"] == "email.complained"
    [lead] = await _rows(pool, "SELECT consent_status FROM public.leads WHERE id = %s", lead_id)
    assert lead["consent_status"] == "withdrawn"


async def _sent_to_lead(
    pool: AsyncConnectionPool, client_id: UUID, lead_id: UUID, recipient: str, external_id: str
) -> UUID:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO public.communications (client_id, lead_id, type, recipient, subject,"
            " content, status, provider, external_id)"
            " VALUES (%s, %s, 'email', %s, 'Hi', 'Hello', 'delivered', 'resend', %s)"
            " RETURNING id",
            (client_id, lead_id, recipient, external_id),
        )
        row = await cur.fetchone()
    assert row is not None
    return UUID(str(row[0]))


async def test_the_history_stays_append_only_for_the_new_columns(
    api: httpx.AsyncClient, pool: AsyncConnectionPool, tenant: Tenant
) -> None:
    await _submit(api, tenant, {"email": "kay@corp.example", "consent": RECORD})
    [entry] = await _history(pool, tenant.client_id)

    for statement in (
        "UPDATE public.consent_history SET ip = '198.51.100.1' WHERE id = %s",
        "UPDATE public.consent_history SET text_version = 'v4' WHERE id = %s",
        "DELETE FROM public.consent_history WHERE id = %s",
    ):
        async with pool.connection() as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                await conn.execute(statement.encode(), (entry["id"],))

    assert await _history(pool, tenant.client_id) == [entry]


# ---------------------------------------------------------------- showing it


async def _lqs(url: str, *args: str) -> Result:
    """The CLI in process, in a thread: its own ``asyncio.run`` cannot run in this loop."""
    env = {"LQS_DATABASE_URL": url, "COLUMNS": "300"}
    return await asyncio.to_thread(CliRunner().invoke, cli_app, list(args), env=env)


async def test_lqs_leads_consent_shows_the_history_oldest_first_with_its_proof(
    migrated_db: str, api: httpx.AsyncClient, tenant: Tenant
) -> None:
    await _submit(api, tenant, {"email": "lee@corp.example", "consent": RECORD})
    await _submit(api, tenant, {"email": "lee@corp.example", "consent_status": "denied"}, 200)

    result = await _lqs(migrated_db, "leads", "consent", "--client", tenant.slug,
                  "--email", "LEE@corp.example", "--json")  # fmt: skip
    table = await _lqs(migrated_db, "leads", "consent", "--client", tenant.slug,
                 "--email", "lee@corp.example")  # fmt: skip

    assert result.exit_code == 0, result.output
    entries = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["consent_status"] for e in entries] == ["granted", "denied"]
    assert entries[0]["ip"] == "203.0.113.7"
    assert entries[0]["text_version"] == "newsletter-v3"
    assert entries[0]["api_key_id"] == str(tenant.key_id)
    assert entries[0]["api_key_name"] == "website forms"
    assert datetime.fromisoformat(entries[0]["captured_at"]) == CAPTURED
    assert table.exit_code == 0, table.output
    assert "newsletter-v3" in table.stdout
    assert "api key website forms" in table.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--email", "nobody@corp.example"), "no lead of"),
        (("--email", "not-an-email"), "is not an email address"),
    ],
)
async def test_lqs_leads_consent_refuses_in_one_line(
    migrated_db: str, tenant: Tenant, args: tuple[str, ...], fragment: str
) -> None:
    result = await _lqs(migrated_db, "leads", "consent", "--client", tenant.slug, *args)

    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    assert fragment in line


async def test_lqs_leads_consent_refuses_an_unknown_client_in_one_line(migrated_db: str) -> None:
    result = await asyncio.to_thread(
        run_lqs, "leads", "consent", "--client", "no-such-client", "--email", "a@b.example",
        env={"LQS_DATABASE_URL": migrated_db},
    )  # fmt: skip

    assert_one_line_error(result, "no-such-client")


async def test_the_api_shows_the_history_to_the_clients_users_only(
    api: httpx.AsyncClient, pool: AsyncConnectionPool, tenant: Tenant
) -> None:
    other = await _tenant(pool)
    response = await _submit(api, tenant, {"email": "mo@corp.example", "consent": RECORD})
    lead_id = response.json()["id"]

    own = await api.get(f"/v1/leads/{lead_id}/consent", headers=_user(tenant))
    theirs = await api.get(f"/v1/leads/{lead_id}/consent", headers=_user(other))
    missing = await api.get(f"/v1/leads/{uuid.uuid4()}/consent", headers=_user(tenant))
    malformed = await api.get("/v1/leads/not-a-uuid/consent", headers=_user(tenant))

    assert own.status_code == 200, own.text
    [entry] = own.json()["data"]
    assert (entry["consent_status"], entry["ip"], entry["api_key_name"]) == (
        "granted", "203.0.113.7", "website forms",
    )  # fmt: skip
    assert theirs.status_code == 404
    assert missing.status_code == 404
    assert malformed.status_code in (404, 422)


# ---------------------------------------------------------------- at send time


class Recording:
    """A provider that accepts every message and remembers it."""

    def __init__(self) -> None:
        self.name = "resend"
        self.channel = "email"
        self.calls: list[OutboundMessage] = []

    async def send(self, settings: Any, message: OutboundMessage) -> SendResult:
        self.calls.append(message)
        external_id = f"re-{message.communication_id}"
        return SendResult(Verdict.ACCEPTED, 200, external_id=external_id, response={})


async def _dispatch(pool: AsyncConnectionPool) -> Recording:
    provider = Recording()
    options = DispatcherOptions(
        batches=False,
        policy=RetryPolicy(base_delay=0.001, max_delay=0.01, horizon=3600),
        concurrency=4,
        batch_size=10,
    )
    async with Dispatcher(pool, options, providers={"resend": provider}) as dispatcher:
        await dispatcher.drain()
    return provider


async def _lead_message(
    api: httpx.AsyncClient, pool: AsyncConnectionPool, lead: dict[str, Any] | None
) -> tuple[Tenant, UUID, UUID]:
    """A client whose lead was processed into one pending message to the lead; with no
    ``lead``, one stored as before proof of consent (granted, on its record alone)."""
    tenant = await _tenant(
        pool,
        delivery=DELIVERY,
        notifications={"qualified": TO_LEAD, "nurture": TO_LEAD, "disqualified": []},
    )
    if lead is not None:
        lead_id = UUID((await _submit(api, tenant, lead)).json()["id"])
    else:
        [row] = await _rows(
            pool,
            "INSERT INTO public.leads (client_id, email, job_title, company_size,"
            " company_domain, consent_status, dedupe_key) VALUES (%s, 'ola@bigco.example',"
            " 'CEO', 500, 'bigco.example', 'granted', 'email:ola@bigco.example') RETURNING id",
            tenant.client_id,
        )
        lead_id = row["id"]
    await LeadProcessor(pool, batch_size=100, in_flight=1, park_after=3).drain()
    [comm] = await _rows(
        pool, "SELECT id FROM public.communications WHERE client_id = %s", tenant.client_id
    )
    return tenant, lead_id, comm["id"]


async def _comm(pool: AsyncConnectionPool, comm_id: UUID) -> dict[str, Any]:
    [row] = await _rows(pool, "SELECT * FROM public.communications WHERE id = %s", comm_id)
    return row


async def test_a_sent_message_names_the_history_entry_it_relied_on(
    api: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    lead = {"email": "ned@bigco.example", "job_title": "CEO", "company_size": 500,
            "company_domain": "bigco.example", "consent": RECORD}  # fmt: skip
    tenant, _, comm_id = await _lead_message(api, pool, lead)
    [entry] = await _history(pool, tenant.client_id)

    await _dispatch(pool)

    comm = await _comm(pool, comm_id)
    assert comm["status"] == "sent"
    assert comm["consent_status"] == "granted"
    recorded = entry["recorded_at"].astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
    assert comm["compliance_notes"] == (
        f'consent: history #{entry["id"]} (granted via api key "website forms"'
        f" {tenant.key_prefix} {recorded})"
    )


async def test_a_lead_without_a_history_entry_is_named_as_the_record(
    api: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    tenant, _, comm_id = await _lead_message(api, pool, None)
    assert await _history(pool, tenant.client_id) == []

    await _dispatch(pool)

    comm = await _comm(pool, comm_id)
    assert comm["status"] == "sent"
    assert comm["compliance_notes"] == "consent: lead record (no history entry)"


async def test_consent_withdrawn_before_sending_is_the_status_in_force_and_its_entry(
    api: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    lead = {"email": "pia@bigco.example", "job_title": "CEO", "company_size": 500,
            "company_domain": "bigco.example", "consent": RECORD}  # fmt: skip
    tenant, lead_id, comm_id = await _lead_message(api, pool, lead)
    assert (await _comm(pool, comm_id))["consent_status"] == "granted"
    async with pool.connection() as conn, conn.transaction():
        await withdraw_consent(
            conn, tenant.client_id, lead_id, "email", "pia@bigco.example",
            source="unsubscribe link",
        )  # fmt: skip
    entry = (await _history(pool, tenant.client_id))[-1]

    provider = await _dispatch(pool)

    comm = await _comm(pool, comm_id)
    assert provider.calls == []
    assert (comm["status"], comm["consent_status"]) == ("rejected", "withdrawn")
    assert "consent is now withdrawn" in comm["compliance_notes"]
    assert (
        f"consent: history #{entry['id']} (withdrawn via unsubscribe link"
        in (comm["compliance_notes"])
    )


async def test_a_message_refused_at_planning_names_the_entry_of_the_refusal(
    api: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    lead = {"email": "quin@bigco.example", "job_title": "CEO", "company_size": 500,
            "company_domain": "bigco.example", "consent": {**RECORD, "status": "denied"}}  # fmt: skip

    tenant, _, comm_id = await _lead_message(api, pool, lead)

    [entry] = await _history(pool, tenant.client_id)
    comm = await _comm(pool, comm_id)
    assert (comm["status"], comm["consent_status"]) == ("rejected", "denied")
    assert comm["compliance_notes"].startswith("lead consent is denied")
    assert f"; consent: history #{entry['id']} (denied via api key" in comm["compliance_notes"]
