"""Erasure (issue 16, GDPR Art. 17) on a real database: what ``lqs leads erase`` leaves of
a person, the keyed-hash suppression that keeps them from being messaged again until they
consent anew, pending messages cancelled, the append-only consent history opened to the
erasure alone, and the CLI's answers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from lqs.api.app import create_app
from lqs.api.tokens import TokenVerifier
from lqs.db.clients import create_api_key, create_client
from lqs.db.erasure import erase
from lqs.db.pool import open_pool
from lqs.db.suppressions import list_suppressions, suppress, suppressed_recipients
from lqs.domain.delivery import RetryPolicy, Verdict
from lqs.domain.erasure import email_subject, phone_subject
from lqs.providers.base import OutboundMessage, SendResult
from lqs.worker.dispatcher import Dispatcher, DispatcherOptions
from lqs.worker.processor import LeadProcessor
from tests.configs import api_config
from tests.integration.test_cli import assert_one_line_error, run_lqs

SECRET = secrets.token_urlsafe(32)
TOKENS = TokenVerifier(secret=SECRET)
CONSENT = {
    "status": "granted",
    "source": "pricing page form",
    "text": "Yes, send me the newsletter.",
    "ip": "203.0.113.7",
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
}
DELIVERY = {
    "email": {"primary": "resend"},
    "resend": {"api_key": "re_fake_key", "from_address": "lqs@sender.example",
               "base_url": "http://127.0.0.1:9"},
}  # fmt: skip
TO_LEAD = [{"channel": "email", "to": "lead", "template": "lead_acknowledgement"}]
PERSON = {
    "email": "Erin.Moss@Corp.example",
    "phone": "+12015550123",
    "first_name": "Erin",
    "last_name": "Moss",
    "job_title": "CEO",
    "company_name": "Corp",
    "company_domain": "corp.example",
    "company_size": 500,
    "utm_source": "erin-newsletter",
    "custom": {"favourite": "Erin's pick"},
}


@dataclass(frozen=True)
class Tenant:
    client_id: UUID
    slug: str
    key: str


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


@pytest.fixture
async def tenant(pool: AsyncConnectionPool) -> Tenant:
    slug = f"er-{uuid.uuid4().hex[:10]}"
    async with pool.connection() as conn:
        client = await create_client(
            conn,
            slug,
            slug,
            {
                "delivery": DELIVERY,
                "notifications": {"qualified": TO_LEAD, "nurture": TO_LEAD, "disqualified": []},
            },
        )
        _, key = await create_api_key(conn, client.id, "website forms", 600)
    return Tenant(client.id, slug, key)


async def _rows(pool: AsyncConnectionPool, sql: str, *params: Any) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(sql.encode(), params)
        return await cur.fetchall()


async def _submit(
    api: httpx.AsyncClient, tenant: Tenant, lead: dict[str, Any], key: str | None = None
) -> UUID:
    headers = {"Authorization": f"Bearer {tenant.key}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    response = await api.post("/v1/leads", headers=headers, json=lead)
    assert response.status_code == 201, response.text
    return UUID(response.json()["id"])


class Recording:
    """A provider that accepts every message and remembers it."""

    def __init__(self) -> None:
        self.name = "resend"
        self.channel = "email"
        self.calls: list[OutboundMessage] = []

    async def send(self, settings: Any, message: OutboundMessage) -> SendResult:
        self.calls.append(message)
        response = {"id": f"re-{message.communication_id}", "to": message.recipient}
        return SendResult(Verdict.ACCEPTED, 200, external_id=response["id"], response=response)


async def _process(pool: AsyncConnectionPool) -> None:
    await LeadProcessor(pool, batch_size=100, in_flight=1, park_after=3).drain()


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


async def _comms(pool: AsyncConnectionPool, lead_id: UUID) -> list[dict[str, Any]]:
    return await _rows(
        pool, "SELECT * FROM public.communications WHERE lead_id = %s ORDER BY created_at", lead_id
    )


# ---------------------------------------------------------------- the keyed hash


async def test_the_sql_hash_is_hmac_sha256_under_the_installation_key(
    pool: AsyncConnectionPool, tenant: Tenant
) -> None:
    async with pool.connection() as conn:
        await suppress(conn, tenant.client_id, "email", " Ann@Corp.example ", "manual", "t")
        cur = await conn.execute("SELECT hmac_key FROM public.installation_secrets")
        [(key,)] = await cur.fetchall()
        cur = await conn.execute(
            "SELECT recipient, recipient_hash FROM public.suppressions WHERE client_id = %s",
            (tenant.client_id,),
        )
        [(recipient, stored)] = await cur.fetchall()

    expected = hmac.new(bytes(key), b"email:ann@corp.example", hashlib.sha256).digest()
    assert recipient == "ann@corp.example"
    assert bytes(stored) == expected


async def test_users_cannot_read_the_installation_key(migrated_db: str) -> None:
    reads = ("SELECT * FROM public.installation_secrets",
             "SELECT public.lqs_recipient_hash('email', 'a@b.example')")  # fmt: skip
    with psycopg.connect(migrated_db, autocommit=True, prepare_threshold=None) as conn:
        for role in ("authenticated", "anon"):
            for read in reads:
                with conn.transaction():
                    conn.execute(f"SET LOCAL ROLE {role}")
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        conn.execute(read.encode())


# ---------------------------------------------------------------- what erasure leaves


async def _erased_person(
    api: httpx.AsyncClient, pool: AsyncConnectionPool, tenant: Tenant
) -> tuple[UUID, UUID]:
    """Erin, with a sent message and a pending one, an event, an attempt's error, an audit
    entry, a stored intake answer and a rejected webhook naming her; erased by email.
    Returns her lead and another client's lead with the same address."""
    lead_id = await _submit(api, tenant, {**PERSON, "consent": CONSENT}, key="form-erin")
    await _process(pool)
    await _dispatch(pool)
    other = await _submit(api, tenant, {"email": "ola@corp.example", "job_title": "CEO"})
    async with pool.connection() as conn:
        [sent] = await _comms(pool, lead_id)
        await conn.execute(
            "INSERT INTO public.provider_events (client_id, provider, event_id, communication_id,"
            " external_id, event_type, kind, recipient, payload)"
            " VALUES (%s, 'resend', %s, %s, %s, 'email.delivered', 'delivered', %s, %s)",
            (tenant.client_id, f"ev-{uuid.uuid4()}", sent["id"], sent["external_id"],
             "erin.moss@corp.example", Jsonb({"data": {"to": ["erin.moss@corp.example"]}})),
        )  # fmt: skip
        await conn.execute(
            "UPDATE public.delivery_attempts SET error_message = 'mailbox erin.moss@corp.example'"
            " WHERE communication_id = %s",
            (sent["id"],),
        )
        await conn.execute(
            "INSERT INTO public.audit_log (client_id, action, detail)"
            " VALUES (%s, 'suppression.delete', %s)",
            (tenant.client_id, Jsonb({"channel": "email", "recipient": "erin.moss@corp.example"})),
        )
        await conn.execute(
            "INSERT INTO public.webhook_rejects (client_id, provider, reason, body)"
            " VALUES (%s, 'resend', 'not json', %s)",
            (tenant.client_id, b'{"to": "erin.moss@corp.example", \x00}'),
        )
        # A second message to her, still pending (queued again by hand).
        await conn.execute(
            "INSERT INTO public.communications (lead_id, client_id, type, recipient, subject,"
            " content, status, template_variables, consent_status)"
            " VALUES (%s, %s, 'email', 'erin.moss@corp.example', 'Hi Erin', 'Dear Erin',"
            " 'pending', '{\"first_name\": \"Erin\"}', 'granted')",
            (lead_id, tenant.client_id),
        )
        await conn.execute(
            "INSERT INTO public.delivery_queue (communication_id, client_id, to_lead)"
            " SELECT id, client_id, true FROM public.communications"
            " WHERE lead_id = %s AND status = 'pending'",
            (lead_id,),
        )
    await erase(
        pool, tenant.client_id, "operator:test", "data subject request #12",
        subjects=[email_subject("ERIN.MOSS@corp.example")],
    )  # fmt: skip
    return lead_id, other


async def test_erasure_leaves_only_a_non_identifying_trail(
    api: httpx.AsyncClient, pool: AsyncConnectionPool, tenant: Tenant
) -> None:
    lead_id, other = await _erased_person(api, pool, tenant)

    [lead] = await _rows(pool, "SELECT * FROM public.leads WHERE id = %s", lead_id)
    assert lead["email"] == f"erased-{lead_id}@erased.invalid"
    for column in ("phone", "first_name", "last_name", "job_title", "company_name",
                   "company_domain", "company_size", "utm_source", "dedupe_key"):  # fmt: skip
        assert lead[column] is None, column
    assert (lead["custom"], lead["history"]) == ({}, [])
    assert all(e["value"] is None for e in lead["score_breakdown"])
    assert lead["consent_status"] == "granted"  # the audit fact stays
    comms = await _comms(pool, lead_id)
    assert [c["status"] for c in comms] == ["sent", "rejected"]
    for comm in comms:
        assert (comm["recipient"], comm["subject"], comm["content"]) == ("erased", None, None)
        assert comm["template_variables"] is None
        assert comm["compliance_notes"].endswith(": data subject request #12")
        assert comm["compliance_notes"].startswith("erased on 20")
        assert comm["consent_status"] == "granted"
    assert comms[0]["external_reference"] == {"id": comms[0]["external_id"]}
    assert (
        await _rows(
            pool, "SELECT 1 FROM public.delivery_queue WHERE client_id = %s", tenant.client_id
        )
        == []
    )
    tables = ("leads", "communications", "provider_events", "delivery_attempts",
              "consent_history", "audit_log", "suppressions", "erasures", "idempotency_keys",
              "recipient_sends", "webhook_rejects")  # fmt: skip
    held = {
        table: await _rows(pool, f"SELECT * FROM public.{table} WHERE client_id = %s",
                           tenant.client_id)
        for table in tables
    }  # fmt: skip
    everything = json.dumps(held, default=str).lower()
    for trace in ("erin", "moss", "2015550123", "203.0.113.7", "mozilla", "newsletter"):
        assert trace not in everything, trace
    [ola] = await _rows(pool, "SELECT email FROM public.leads WHERE id = %s", other)
    assert ola["email"] == "ola@corp.example"


async def test_the_erasure_record_counts_rows_and_holds_no_personal_data(
    api: httpx.AsyncClient, pool: AsyncConnectionPool, tenant: Tenant
) -> None:
    await _erased_person(api, pool, tenant)

    [record] = await _rows(
        pool, "SELECT * FROM public.erasures WHERE client_id = %s", tenant.client_id
    )
    assert record["requested_by"] == "operator:test"
    assert record["reason"] == "data subject request #12"
    assert record["finished_at"] is not None
    counts = record["counts"]
    assert counts["leads"] == 1
    assert counts["communications"] == 2
    assert counts["communications_cancelled"] == 1
    assert counts["provider_events"] == 1
    assert counts["consent_history"] == 1
    assert counts["audit_log"] == 1
    assert counts["webhook_rejects"] == 1
    assert counts["idempotency_keys"] == 1
    assert counts["suppressions_added"] == 2  # her email and her phone
    assert "erin" not in json.dumps(record, default=str).lower()


async def test_a_pending_message_is_cancelled_and_never_sent(
    api: httpx.AsyncClient, pool: AsyncConnectionPool, tenant: Tenant
) -> None:
    lead_id = await _submit(api, tenant, {**PERSON, "consent": CONSENT})
    await _process(pool)
    [pending] = await _comms(pool, lead_id)
    assert pending["status"] == "pending"

    await erase(pool, tenant.client_id, "operator:test", "asked", lead_ids=[lead_id])
    provider = await _dispatch(pool)

    assert provider.calls == []
    [comm] = await _comms(pool, lead_id)
    assert comm["status"] == "rejected"
    assert comm["error_message"] == "cancelled by an erasure: asked"
    assert (
        await _rows(
            pool, "SELECT 1 FROM public.delivery_queue WHERE communication_id = %s", comm["id"]
        )
        == []
    )


async def test_a_queued_lead_erased_before_processing_is_never_processed(
    api: httpx.AsyncClient, pool: AsyncConnectionPool, tenant: Tenant
) -> None:
    lead_id = await _submit(api, tenant, {**PERSON, "consent": CONSENT})

    await erase(pool, tenant.client_id, "operator:test", "asked", lead_ids=[lead_id])
    await _process(pool)

    [lead] = await _rows(pool, "SELECT status, error_message FROM public.leads WHERE id = %s",
                         lead_id)  # fmt: skip
    assert (lead["status"], lead["error_message"]) == ("error", "erased before processing")
    assert await _comms(pool, lead_id) == []


async def test_every_lead_of_the_client_with_the_phone_is_erased(
    api: httpx.AsyncClient, pool: AsyncConnectionPool, tenant: Tenant
) -> None:
    first = await _submit(api, tenant, {"email": "a@corp.example", "phone": "+12015550123"})
    second = await _submit(api, tenant, {"phone": "+1 201 555 0123"})

    _, tally = await erase(
        pool, tenant.client_id, "operator:test", "asked",
        subjects=[phone_subject("+1 (201) 555-0123")],
    )  # fmt: skip

    assert tally.counts["leads"] == 2
    rows = await _rows(pool, "SELECT phone FROM public.leads WHERE id IN (%s, %s)", first, second)
    assert [r["phone"] for r in rows] == [None, None]


# ---------------------------------------------------------------- staying suppressed


async def test_an_erased_address_that_comes_back_is_suppressed_until_new_consent(
    api: httpx.AsyncClient, pool: AsyncConnectionPool, tenant: Tenant
) -> None:
    await _erased_person(api, pool, tenant)

    # Back on a record that says "granted" without a new consent entry (a lead stored
    # as before proof of consent): consent does not stop it, the suppression does.
    [row] = await _rows(
        pool,
        "INSERT INTO public.leads (client_id, email, job_title, company_size, consent_status)"
        " VALUES (%s, 'erin.moss@corp.example', 'CEO', 500, 'granted') RETURNING id",
        tenant.client_id,
    )
    await _process(pool)
    [refused] = await _comms(pool, row["id"])
    assert refused["status"] == "rejected"
    assert "suppression list" in f"{refused['compliance_notes']} {refused['error_message']}"
    async with pool.connection() as conn:
        assert await suppressed_recipients(
            conn, [(tenant.client_id, "email", "erin.moss@corp.example")]
        )

    consented = await _submit(
        api, tenant, {"email": "erin.moss@corp.example", "job_title": "CEO", "consent": CONSENT}
    )
    await _process(pool)
    provider = await _dispatch(pool)

    assert [c["status"] for c in await _comms(pool, consented)] == ["sent"]
    assert [m.recipient for m in provider.calls] == ["erin.moss@corp.example"]
    reasons = {s.reason for s in await _suppressions(pool, tenant)}
    assert reasons == {"erasure"}  # the phone's stays: no new consent for it


async def test_the_dispatcher_refuses_an_erased_address_queued_before_the_erasure(
    pool: AsyncConnectionPool, tenant: Tenant
) -> None:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO public.leads (client_id, email, consent_status, status)"
            " VALUES (%s, 'zed@corp.example', 'granted', 'qualified') RETURNING id",
            (tenant.client_id,),
        )
        [(lead_id,)] = await cur.fetchall()
    # Erased by address while another lead's message to it (a colleague's record) waits.
    async with pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO public.leads (client_id, email, status) VALUES (%s, 'x@corp.example',"
            " 'qualified') RETURNING id",
            (tenant.client_id,),
        )
        [(colleague,)] = await cur.fetchall()
        await conn.execute(
            "INSERT INTO public.communications (lead_id, client_id, type, recipient, content,"
            " status, consent_status) VALUES (%s, %s, 'email', 'Zed@Corp.example', 'hi',"
            " 'pending', 'granted')",
            (colleague, tenant.client_id),
        )
        await conn.execute(
            "INSERT INTO public.delivery_queue (communication_id, client_id)"
            " SELECT id, client_id FROM public.communications WHERE lead_id = %s",
            (colleague,),
        )
    await erase(pool, tenant.client_id, "operator:test", "asked", lead_ids=[lead_id])

    provider = await _dispatch(pool)

    assert provider.calls == []
    [comm] = await _comms(pool, colleague)
    assert comm["status"] == "rejected"


async def _suppressions(pool: AsyncConnectionPool, tenant: Tenant) -> list[Any]:
    async with pool.connection() as conn:
        return await list_suppressions(conn, tenant.client_id)


async def test_an_earlier_suppression_loses_its_address_and_keeps_its_reason(
    pool: AsyncConnectionPool, tenant: Tenant
) -> None:
    async with pool.connection() as conn:
        await suppress(conn, tenant.client_id, "email", "gus@corp.example", "bounce", "event")

    await erase(
        pool, tenant.client_id, "operator:test", "asked",
        subjects=[email_subject("gus@corp.example")],
    )  # fmt: skip

    [only] = await _suppressions(pool, tenant)
    assert (only.recipient, only.reason) == (None, "bounce")
    async with pool.connection() as conn:
        assert await suppressed_recipients(conn, [(tenant.client_id, "email", "gus@corp.example")])


# ---------------------------------------------------------------- the append-only history


async def test_a_plain_update_of_the_consent_history_is_still_refused(
    api: httpx.AsyncClient, pool: AsyncConnectionPool, tenant: Tenant
) -> None:
    await _submit(api, tenant, {**PERSON, "consent": CONSENT})

    async with pool.connection() as conn:
        await conn.execute("SELECT set_config('lqs.erasing', 'off', false)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            async with conn.transaction():
                await conn.execute(
                    "UPDATE public.consent_history SET ip = NULL WHERE client_id = %s",
                    (tenant.client_id,),
                )


async def test_the_service_role_may_not_update_the_history_itself(
    migrated_db: str,
) -> None:
    with (
        psycopg.connect(migrated_db, autocommit=True, prepare_threshold=None) as conn,
        conn.transaction(),
    ):
        conn.execute("SET LOCAL ROLE service_role")
        conn.execute("SELECT set_config('lqs.erasing', 'on', true)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE public.consent_history SET ip = NULL")


# ---------------------------------------------------------------- lqs leads erase


def _lqs(migrated_db: str, *args: str) -> Any:
    return run_lqs("leads", "erase", *args, env={"LQS_DATABASE_URL": migrated_db})


async def test_the_cli_erases_by_email_and_prints_counts(
    api: httpx.AsyncClient, pool: AsyncConnectionPool, tenant: Tenant, migrated_db: str
) -> None:
    lead_id = await _submit(api, tenant, {**PERSON, "consent": CONSENT})

    result = _lqs(migrated_db, "--client", tenant.slug, "--email", "erin.moss@corp.example",
                  "--reason", "ticket 7")  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "1 lead(s) erased" in result.stdout
    assert "consent_history: 1" in result.stdout
    [lead] = await _rows(pool, "SELECT email FROM public.leads WHERE id = %s", lead_id)
    assert lead["email"].endswith("@erased.invalid")
    again = _lqs(migrated_db, "--client", tenant.slug, "--email", "erin.moss@corp.example",
                 "--reason", "ticket 7")  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "nothing to erase" in again.stdout


async def test_an_erased_lead_is_never_reprocessed(
    api: httpx.AsyncClient, pool: AsyncConnectionPool, tenant: Tenant, migrated_db: str
) -> None:
    erased = await _submit(api, tenant, {**PERSON, "consent": CONSENT})
    other = await _submit(api, tenant, {"email": "someone.else@corp.example"})
    assert _lqs(migrated_db, "--client", tenant.slug, "--lead", str(erased),
                "--reason", "ticket 9").returncode == 0  # fmt: skip
    before = await _rows(pool, "SELECT status FROM public.leads WHERE id = %s", erased)
    other_before = await _rows(pool, "SELECT status FROM public.leads WHERE id = %s", other)

    result = run_lqs("leads", "reprocess", str(erased), str(other), "--client", tenant.slug,
                     env={"LQS_DATABASE_URL": migrated_db})  # fmt: skip

    assert_one_line_error(result, f"{erased}: erased (lqs leads erase), never processed again")
    assert "nothing was queued" in result.stderr
    assert await _rows(pool, "SELECT status FROM public.leads WHERE id = %s", erased) == before
    assert await _rows(pool, "SELECT status FROM public.leads WHERE id = %s", other) == (
        other_before
    )


async def test_the_cli_erases_a_file_of_addresses_in_batches_and_reruns_harmlessly(
    api: httpx.AsyncClient, pool: AsyncConnectionPool, tenant: Tenant, migrated_db: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    for n in range(5):
        await _submit(api, tenant, {"email": f"p{n}@corp.example"})
    listing = tmp_path / "people.txt"
    listing.write_text(
        "# erasure requests\n" + "".join(f"P{n}@corp.example\n" for n in range(5)) + "\n"
    )

    result = _lqs(migrated_db, "--client", tenant.slug, "--from-file", str(listing),
                  "--reason", "bulk")  # fmt: skip
    again = _lqs(migrated_db, "--client", tenant.slug, "--from-file", str(listing),
                 "--reason", "bulk")  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "5 lead(s) erased" in result.stdout
    assert "erased 5/5" in result.stderr
    assert again.returncode == 0
    assert "nothing to erase" in again.stdout
    left = await _rows(pool, "SELECT 1 FROM public.leads WHERE client_id = %s AND email NOT"
                             " LIKE '%%@erased.invalid'", tenant.client_id)  # fmt: skip
    assert left == []


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--email", "a@b.example"], "--reason"),
        (["--reason", "x"], "exactly one of"),
        (["--email", "a@b.example", "--phone", "+12015550123", "--reason", "x"], "exactly one"),
        (["--email", "not-an-address", "--reason", "x"], "not an email address"),
        (["--phone", "2015550123", "--reason", "x"], "international form"),
        (["--lead", "nope", "--reason", "x"], "--lead"),
        (["--email", "a@b.example", "--reason", "   "], "needs a reason"),
    ],
)
async def test_a_bad_request_is_one_line(
    tenant: Tenant, migrated_db: str, args: list[str], fragment: str
) -> None:
    result = _lqs(migrated_db, "--client", tenant.slug, *args)
    if fragment == "--reason" and "Missing option" in result.stderr:
        return  # typer's own usage error for a missing required option
    assert_one_line_error(result, fragment)


async def test_a_negative_pause_is_a_usage_error_naming_the_option(
    tenant: Tenant, migrated_db: str
) -> None:
    result = _lqs(migrated_db, "--client", tenant.slug, "--email", "a@b.example",
                  "--reason", "x", "--idle-ratio", "-1")  # fmt: skip

    assert result.returncode == 2  # typer's usage error
    assert "Invalid value for '--idle-ratio'" in result.stderr
    assert "Traceback" not in result.stderr


async def test_an_unknown_client_or_lead_is_one_line(tenant: Tenant, migrated_db: str) -> None:
    assert_one_line_error(
        _lqs(migrated_db, "--client", "no-such-client", "--email", "a@b.example",
             "--reason", "x"),
        "no-such-client",
    )  # fmt: skip
    assert_one_line_error(
        _lqs(migrated_db, "--client", tenant.slug, "--lead", str(uuid.uuid4()), "--reason", "x"),
        "left to erase",
    )


async def test_a_bad_line_in_the_file_is_named(
    tenant: Tenant, migrated_db: str, tmp_path: Path
) -> None:
    listing = tmp_path / "people.txt"
    listing.write_text("a@corp.example\nnobody\n")

    result = _lqs(migrated_db, "--client", tenant.slug, "--from-file", str(listing),
                  "--reason", "x")  # fmt: skip

    assert_one_line_error(result, "line 2", "nobody")


# ---------------------------------------------------------------- DELETE /v1/leads/{id}


async def _user(pool: AsyncConnectionPool, tenant: Tenant, role: str) -> dict[str, str]:
    user = uuid.uuid4()
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO public.profiles (id, client_id, email, role) VALUES (%s, %s, %s, %s)",
            (user, tenant.client_id, f"{role}-{user.hex[:6]}@{tenant.slug}.example", role),
        )
    token, _ = TOKENS.issue(user)
    return {"Authorization": f"Bearer {token}"}


async def test_an_admin_erases_a_lead_through_the_api_and_gets_the_counts(
    api: httpx.AsyncClient, pool: AsyncConnectionPool, tenant: Tenant
) -> None:
    lead_id = await _submit(api, tenant, {**PERSON, "consent": CONSENT})
    await _process(pool)
    admin = await _user(pool, tenant, "admin")

    response = await api.delete(
        f"/v1/leads/{lead_id}", headers=admin, params={"reason": "ticket 9"}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["lead_id"] == str(lead_id)
    assert body["counts"]["leads"] == 1
    assert body["counts"]["communications_cancelled"] == 1
    [record] = await _rows(
        pool, "SELECT * FROM public.erasures WHERE id = %s", UUID(body["erasure_id"])
    )
    assert record["requested_by"].startswith("user:")
    assert record["counts"] == body["counts"]
    [audit] = await _rows(pool, "SELECT * FROM public.audit_log WHERE target_id = %s", lead_id)
    assert (audit["action"], audit["detail"]["reason"]) == ("lead.erase", "ticket 9")
    again = await api.delete(f"/v1/leads/{lead_id}", headers=admin, params={"reason": "x"})
    assert again.status_code == 404, again.text


async def test_the_api_refuses_members_and_a_missing_reason(
    api: httpx.AsyncClient, pool: AsyncConnectionPool, tenant: Tenant
) -> None:
    lead_id = await _submit(api, tenant, {"email": "kim@corp.example"})
    member = await _user(pool, tenant, "member")
    admin = await _user(pool, tenant, "admin")

    refused = await api.delete(f"/v1/leads/{lead_id}", headers=member, params={"reason": "x"})
    unexplained = await api.delete(f"/v1/leads/{lead_id}", headers=admin)

    assert refused.status_code == 403, refused.text
    assert unexplained.status_code == 400, unexplained.text
    assert unexplained.json()["error"]["field"] == "reason"
    [lead] = await _rows(pool, "SELECT email FROM public.leads WHERE id = %s", lead_id)
    assert lead["email"] == "kim@corp.example"


async def test_the_api_answers_409_while_a_message_of_the_lead_is_being_sent(
    api: httpx.AsyncClient, pool: AsyncConnectionPool, tenant: Tenant
) -> None:
    lead_id = await _submit(api, tenant, {**PERSON, "consent": CONSENT})
    await _process(pool)
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE public.delivery_queue SET lease_owner = 'busy-worker',"
            " lease_expires_at = now() + interval '1 minute' WHERE client_id = %s",
            (tenant.client_id,),
        )
    admin = await _user(pool, tenant, "admin")

    response = await api.delete(f"/v1/leads/{lead_id}", headers=admin, params={"reason": "x"})

    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "sending"
    assert response.headers["Retry-After"] == "60"
    assert await _rows(pool, "SELECT 1 FROM public.erasures WHERE client_id = %s",
                       tenant.client_id) == []  # fmt: skip
    [lead] = await _rows(pool, "SELECT email FROM public.leads WHERE id = %s", lead_id)
    assert lead["email"] == "Erin.Moss@corp.example"


async def test_listings_show_an_erased_suppression_as_erased(
    api: httpx.AsyncClient, pool: AsyncConnectionPool, tenant: Tenant, migrated_db: str
) -> None:
    await erase(
        pool, tenant.client_id, "operator:test", "asked",
        subjects=[email_subject("nia@corp.example")],
    )  # fmt: skip
    admin = await _user(pool, tenant, "admin")

    listed = await api.get("/v1/suppressions", headers=admin)
    shown = run_lqs("suppressions", "list", "--client", tenant.slug,
                    env={"LQS_DATABASE_URL": migrated_db, "COLUMNS": "200"})  # fmt: skip

    assert listed.status_code == 200, listed.text
    [row] = listed.json()["data"]
    assert (row["recipient"], row["reason"]) == ("(erased)", "erasure")
    assert shown.returncode == 0, shown.stderr
    assert "(erased)" in shown.stdout
    assert "nia" not in listed.text + shown.stdout
