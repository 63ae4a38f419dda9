"""``lqs comms retry --rerender``: failed communications rendered again, then queued again.

A communication whose template failed has no content: retrying it as it is could only
fail again. Once the template is fixed, a re-render takes the client's current template
and the lead's current data, exactly as the processor would.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from uuid import UUID

import psycopg
import pytest
from click.testing import Result
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from typer.testing import CliRunner

from lqs.cli import app
from lqs.db.clients import create_client
from lqs.db.communications import redrive_failed
from lqs.db.leads import insert_or_merge_leads
from lqs.db.templates import store_template
from lqs.domain.leads import parse_lead
from lqs.worker.processor import LeadProcessor
from lqs.worker.rerender import rerender_failed
from tests.integration.test_cli import run_lqs

QUALIFYING = {"email": "ceo@bigco.example", "job_title": "CEO", "company_size": 500,
              "company_domain": "bigco.example", "phone": "+12015550123",
              "consent_status": "granted", "first_name": "Ada"}  # fmt: skip
POISONED = "Hello {{ '%c' % 0 }}"
FIXED = "<p>Hello {{ lead.first_name }}, score {{ score }}</p>"


async def _client(pool: AsyncConnectionPool) -> tuple[UUID, str]:
    slug = f"r-{uuid.uuid4().hex[:10]}"
    async with pool.connection() as conn:
        client = await create_client(conn, slug, slug, {"notification_email": f"s@{slug}.example"})
    return client.id, slug


async def _template(pool: AsyncConnectionPool, client_id: UUID, body: str) -> None:
    async with pool.connection() as conn:
        await store_template(
            conn, client_id, "lead_qualified", "email", "Lead {{ lead.first_name }}", body, "html"
        )


async def _processed_lead(pool: AsyncConnectionPool, client_id: UUID) -> UUID:
    """Queue a qualifying lead and process it; return its one communication's id."""
    async with pool.connection() as conn:
        await insert_or_merge_leads(conn, client_id, [parse_lead(QUALIFYING)])
    await LeadProcessor(pool, batch_size=1000, in_flight=1, park_after=3).drain()
    [comm] = await _rows(
        pool, "SELECT id FROM public.communications WHERE client_id = %s", client_id
    )
    return UUID(str(comm["id"]))


async def _failed_by_template(pool: AsyncConnectionPool) -> tuple[UUID, str, UUID]:
    client_id, slug = await _client(pool)
    await _template(pool, client_id, POISONED)
    comm_id = await _processed_lead(pool, client_id)
    return client_id, slug, comm_id


async def _rows(pool: AsyncConnectionPool, sql: str, *params: Any) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(sql.encode(), params)
        return await cur.fetchall()


async def _comm(pool: AsyncConnectionPool, comm_id: UUID) -> dict[str, Any]:
    [row] = await _rows(
        pool,
        "SELECT m.*, q.communication_id IS NOT NULL AS queued FROM public.communications m"
        " LEFT JOIN public.delivery_queue q ON q.communication_id = m.id WHERE m.id = %s",
        comm_id,
    )
    return row


async def _execute(pool: AsyncConnectionPool, sql: str, *params: Any) -> None:
    async with pool.connection() as conn:
        await conn.execute(sql.encode(), params)


async def _rerender(pool: AsyncConnectionPool, ids: list[UUID] | None, slug: str | None) -> Any:
    async with pool.connection() as conn, conn.transaction():
        return await rerender_failed(conn, ids, slug)


# ---------------------------------------------------------------- the worker function


async def test_a_communication_whose_template_failed_is_failed_without_content(
    pool: AsyncConnectionPool,
) -> None:
    _, _, comm_id = await _failed_by_template(pool)

    comm = await _comm(pool, comm_id)
    assert (comm["status"], comm["content"], comm["queued"]) == ("failed", None, False)
    assert "the output contains NUL" in comm["error_message"]


async def test_a_plain_redrive_leaves_a_never_rendered_communication_alone(
    pool: AsyncConnectionPool,
) -> None:
    _, _, comm_id = await _failed_by_template(pool)
    before = await _comm(pool, comm_id)

    async with pool.connection() as conn, conn.transaction():
        assert await redrive_failed(conn, [comm_id], None) == []

    assert await _comm(pool, comm_id) == before


async def test_after_the_template_is_fixed_a_rerender_queues_the_new_text(
    pool: AsyncConnectionPool,
) -> None:
    client_id, _, comm_id = await _failed_by_template(pool)
    await _template(pool, client_id, FIXED)
    # The lead's current data is what the new render uses.
    await _execute(
        pool, "UPDATE public.leads SET first_name = 'Grace' WHERE client_id = %s", client_id
    )

    report = await _rerender(pool, [comm_id], None)

    assert (report.requeued, report.still_failed) == ([comm_id], [])
    comm = await _comm(pool, comm_id)
    assert (comm["status"], comm["queued"], comm["error_message"]) == ("pending", True, None)
    assert comm["subject"] == "Lead Grace"
    assert comm["content"] == "<p>Hello Grace, score 90</p>"
    assert comm["template_id"] == "lead_qualified@v2"
    assert comm["template_variables"]["lead"]["first_name"] == "Grace"
    assert comm["template_variables"]["score"] == 90
    assert comm["retry_count"] == 0


async def test_a_communication_that_still_cannot_render_stays_failed_with_the_new_reason(
    pool: AsyncConnectionPool,
) -> None:
    client_id, _, comm_id = await _failed_by_template(pool)
    await _template(pool, client_id, "{{ lead.nothing.here }}")

    report = await _rerender(pool, [comm_id], None)

    assert report.requeued == []
    [(still, reason)] = report.still_failed
    assert still == comm_id
    assert reason.startswith("template lead_qualified v2 body: UndefinedError")
    comm = await _comm(pool, comm_id)
    assert (comm["status"], comm["queued"], comm["content"]) == ("failed", False, None)
    assert comm["error_message"] == reason
    assert comm["template_id"] == "lead_qualified@v1"  # what it was last rendered from


async def test_a_communication_that_failed_at_the_provider_is_rendered_again_too(
    pool: AsyncConnectionPool,
) -> None:
    client_id, _ = await _client(pool)
    comm_id = await _processed_lead(pool, client_id)  # the shipped template: pending
    await _execute(
        pool,
        "UPDATE public.communications SET status = 'failed', error_message = 'gave up'"
        " WHERE id = %s",
        comm_id,
    )
    await _execute(pool, "DELETE FROM public.delivery_queue WHERE communication_id = %s", comm_id)
    assert (await _comm(pool, comm_id))["template_id"] == "lead_qualified@default"
    await _template(pool, client_id, FIXED)

    report = await _rerender(pool, [comm_id], None)

    assert report.requeued == [comm_id]
    comm = await _comm(pool, comm_id)
    assert (comm["status"], comm["queued"]) == ("pending", True)
    assert (comm["template_id"], comm["content"]) == (
        "lead_qualified@v1",
        "<p>Hello Ada, score 90</p>",
    )


async def test_a_client_without_its_own_template_gets_the_shipped_one(
    pool: AsyncConnectionPool,
) -> None:
    client_id, _ = await _client(pool)
    comm_id = await _processed_lead(pool, client_id)
    await _execute(
        pool,
        "UPDATE public.communications SET status = 'failed', subject = NULL, content = NULL,"
        " error_message = 'broken' WHERE id = %s",
        comm_id,
    )
    await _execute(pool, "DELETE FROM public.delivery_queue WHERE communication_id = %s", comm_id)

    report = await _rerender(pool, [comm_id], None)

    assert report.requeued == [comm_id]
    comm = await _comm(pool, comm_id)
    assert comm["template_id"] == "lead_qualified@default"
    assert comm["subject"].startswith("New qualified lead: Ada")
    assert "<h1>New qualified lead for " in comm["content"]


async def test_only_failed_communications_are_rerendered(pool: AsyncConnectionPool) -> None:
    client_id, _ = await _client(pool)
    pending_id = await _processed_lead(pool, client_id)
    before = await _comm(pool, pending_id)
    await _template(pool, client_id, FIXED)

    report = await _rerender(pool, [pending_id, uuid.UUID(int=5)], None)

    assert (report.requeued, report.still_failed) == ([], [])
    assert await _comm(pool, pending_id) == before


async def test_a_communication_without_a_recorded_template_stays_failed(
    pool: AsyncConnectionPool,
) -> None:
    _, _, comm_id = await _failed_by_template(pool)
    await _execute(
        pool, "UPDATE public.communications SET template_id = NULL WHERE id = %s", comm_id
    )

    report = await _rerender(pool, [comm_id], None)

    assert report.still_failed == [
        (comm_id, "cannot re-render: no template was recorded for this communication")
    ]
    assert (await _comm(pool, comm_id))["status"] == "failed"


async def test_a_client_slug_picks_only_that_client_s_communications(
    pool: AsyncConnectionPool,
) -> None:
    mine_client, mine_slug, mine = await _failed_by_template(pool)
    other_client, _, other = await _failed_by_template(pool)
    for client_id in (mine_client, other_client):
        await _template(pool, client_id, FIXED)

    report = await _rerender(pool, None, mine_slug)

    assert report.requeued == [mine]
    assert (await _comm(pool, other))["status"] == "failed"


# ---------------------------------------------------------------- the command


def lqs(url: str, *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"LQS_DATABASE_URL": url, "COLUMNS": "250"})


def _setup(url: str, *bodies: str) -> tuple[str, UUID]:
    """A client whose one communication failed with the poisoned template, and the ids;
    ``bodies`` are stored afterwards as the template's next versions."""

    async def main() -> tuple[str, UUID]:
        from lqs.db.pool import open_pool

        pool = await open_pool(url, min_size=1, max_size=2)
        try:
            client_id, slug, comm_id = await _failed_by_template(pool)
            for body in bodies:
                await _template(pool, client_id, body)
        finally:
            await pool.close()
        return slug, comm_id

    return asyncio.run(main())


def _status(url: str, comm_id: UUID) -> tuple[str, str | None, str | None]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT status, content, error_message FROM public.communications WHERE id = %s",
            (comm_id,),
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def test_retry_without_rerender_says_a_never_rendered_one_needs_it(migrated_db: str) -> None:
    slug, comm_id = _setup(migrated_db, FIXED)

    by_client = lqs(migrated_db, "comms", "retry", "--client", slug)
    by_id = lqs(migrated_db, "comms", "retry", str(comm_id))

    for result in (by_client, by_id):
        assert result.exit_code == 0, result.output
        assert "queued 0 communication(s) again" in result.stdout
        assert (
            "left alone 1 failed communication(s) that were never rendered (their template"
            f" failed): fix the template, then retry them with --rerender: {comm_id}"
        ) in result.stderr
    assert "not failed" not in by_id.stderr
    assert _status(migrated_db, comm_id)[0] == "failed"


def test_retry_with_rerender_queues_the_fixed_message(migrated_db: str) -> None:
    slug, comm_id = _setup(migrated_db, FIXED)

    result = lqs(migrated_db, "comms", "retry", "--client", slug, "--rerender")

    assert result.exit_code == 0, result.output
    assert "re-rendered and queued 1 communication(s) again" in result.stdout
    assert _status(migrated_db, comm_id) == ("pending", "<p>Hello Ada, score 90</p>", None)


def test_retry_with_rerender_lists_what_still_fails_and_exits_1(migrated_db: str) -> None:
    _, comm_id = _setup(migrated_db, "{{ '\\ud800' }}")

    result = lqs(migrated_db, "comms", "retry", str(comm_id), "--rerender")

    assert result.exit_code == 1, result.output
    assert "re-rendered and queued 0 communication(s) again" in result.stdout
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"still failed: {comm_id}: template lead_qualified v2 body: the output contains a lone"
        " surrogate (U+D800) at character 1, which PostgreSQL cannot store",
        "error: 1 communication(s) could not be re-rendered: still failed",
    ]
    status, content, error = _status(migrated_db, comm_id)
    assert (status, content) == ("failed", None)
    assert error is not None
    assert "lead_qualified v2" in error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["comms", "retry", "--rerender"], "name communication ids"),
        (["comms", "retry", "nope", "--rerender"], "must be UUIDs"),
    ],
)
def test_retry_with_rerender_refuses_bad_input(
    migrated_db: str, args: list[str], message: str
) -> None:
    result = lqs(migrated_db, *args)

    assert result.exit_code == 1
    assert message in result.stderr


@pytest.mark.parametrize("rerender", [[], ["--rerender"]])
def test_retry_refuses_an_unknown_id_or_slug_before_queueing_anything(
    migrated_db: str, rerender: list[str]
) -> None:
    _, comm_id = _setup(migrated_db, FIXED)
    missing = uuid.UUID(int=9)

    # Through the real entry point: it prints an LqsError as one line.
    by_id = run_lqs(
        "comms",
        "retry",
        str(comm_id),
        str(missing),
        *rerender,
        env={"LQS_DATABASE_URL": migrated_db},
    )
    by_slug = run_lqs(
        "comms",
        "retry",
        "--client",
        "no-such-client",
        *rerender,
        env={"LQS_DATABASE_URL": migrated_db},
    )

    assert by_id.returncode == 1, by_id.stderr
    assert by_id.stderr.strip().splitlines() == [
        f"error: no communication with id {missing}; nothing was queued"
    ]
    assert by_slug.returncode == 1, by_slug.stderr
    assert by_slug.stderr.strip().splitlines() == [
        "error: no client with slug 'no-such-client'; create it with `lqs clients create`"
        " or list clients with `lqs clients list`"
    ]
    assert _status(migrated_db, comm_id)[0] == "failed"  # the real one was not touched


def test_comms_list_refuses_an_unknown_client_slug(migrated_db: str) -> None:
    result = run_lqs(
        "comms", "list", "--client", "no-such-client", env={"LQS_DATABASE_URL": migrated_db}
    )
    assert result.returncode == 1, result.stdout
    assert result.stderr.strip().startswith("error: no client with slug 'no-such-client'")
