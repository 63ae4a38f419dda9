"""Tenant isolation in the database: every table × operation × actor, as PostgREST runs it.

Actors: ``anon``; ``authenticated`` users of client A (an admin and a member) and of client
B; a user with no profile; and ``service_role``. Each attempt runs in ``tenant_session`` and
is rolled back, so attempts never see each other's effects. A denial is either no rows or
SQLSTATE 42501; every denial is asserted next to the same statement succeeding for an actor
allowed to run it, so no test passes merely because the data is missing.

The whole module runs twice: on a database migrated on plain PostgreSQL, and on one set up as
a new Supabase project is (its ``ALTER DEFAULT PRIVILEGES ... GRANT ALL ... TO anon,
authenticated, service_role`` in ``public`` applied before migrating), where every LQS object
is born with ALL for every role and only the migrations' REVOKEs keep these answers true.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from lqs.db.connection import connect
from lqs.db.migrate import migrate
from lqs.db.pool import DatabaseRole, tenant_session
from tests.conftest import _create_database, _drop_database, apply_supabase_defaults

pytestmark = pytest.mark.asyncio(loop_scope="module")

DENIED = "42501"


@dataclass(frozen=True)
class Tenant:
    client: UUID
    admin: UUID
    member: UUID
    lead: UUID
    communication: UUID
    api_key: UUID
    template: UUID
    suppression: UUID
    push_subscription: UUID
    batch_key: str
    provider_event: int
    consent_entry: int
    webhook_reject: int
    worker: str


@dataclass(frozen=True)
class World:
    a: Tenant
    b: Tenant


def _seed_tenant(conn: psycopg.Connection[Any], slug: str) -> Tenant:
    def one(sql: str, *params: Any) -> UUID:
        row = conn.execute(sql.encode(), params).fetchone()
        assert row is not None
        return UUID(str(row[0]))

    client = one("INSERT INTO public.clients (name, slug) VALUES (%s, %s) RETURNING id", slug, slug)
    admin, member = uuid.uuid4(), uuid.uuid4()
    conn.execute(
        "INSERT INTO public.profiles (id, client_id, email, role) VALUES"
        " (%s, %s, 'admin@x.example', 'admin'), (%s, %s, 'member@x.example', 'member')",
        (admin, client, member, client),
    )
    lead = one(
        "INSERT INTO public.leads (client_id, email, dedupe_key) VALUES (%s, %s, %s) RETURNING id",
        client, f"lead@{slug}.example", f"email:lead@{slug}.example",
    )  # fmt: skip
    communication = one(
        "INSERT INTO public.communications (lead_id, client_id, type, recipient)"
        " VALUES (%s, %s, 'email', 'sales@x.example') RETURNING id",
        lead, client,
    )  # fmt: skip
    conn.execute(
        "INSERT INTO public.delivery_queue (communication_id, client_id) VALUES (%s, %s)",
        (communication, client),
    )
    api_key = one(
        "INSERT INTO public.api_keys (client_id, name, prefix, key_hash)"
        " VALUES (%s, 'k', 'lqs_x', %s) RETURNING id",
        client, uuid.uuid4().bytes * 2,
    )  # fmt: skip
    template = one(
        "INSERT INTO public.templates (client_id, name, version, channel, body, body_format)"
        " VALUES (%s, 'welcome', 1, 'email', 'hi', 'text') RETURNING id",
        client,
    )
    suppression = one(
        "INSERT INTO public.suppressions (client_id, channel, recipient, reason)"
        " VALUES (%s, 'email', 'gone@x.example', 'bounce') RETURNING id",
        client,
    )
    conn.execute(
        "INSERT INTO public.idempotency_keys (client_id, key, request_hash, status_code, response)"
        " VALUES (%s, 'k', '\\x00', 201, '{}')",
        (client,),
    )
    conn.execute(
        "INSERT INTO public.lead_import_rows (client_id, row_hash, lead_id) VALUES (%s, %s, %s)",
        (client, uuid.uuid4().bytes * 2, lead),
    )
    conn.execute(
        "INSERT INTO public.delivery_attempts (communication_id, client_id, attempt, provider,"
        " started_at, finished_at, latency_ms, outcome, recorded)"
        " VALUES (%s, %s, 1, 'resend', now(), now(), 1, 'accepted', true)",
        (communication, client),
    )
    push_subscription = one(
        "INSERT INTO public.push_subscriptions (client_id, endpoint, p256dh, auth)"
        " VALUES (%s, %s, %s, %s) RETURNING id",
        client, f"https://push.example/{slug}", "B" * 87, "A" * 22,
    )  # fmt: skip
    batch_key = f"batch-{slug}"
    conn.execute(
        "INSERT INTO public.provider_batches (batch_key, client_id, provider, payload, members)"
        " VALUES (%s, %s, 'resend', '[]', %s)",
        (batch_key, client, [communication]),
    )
    event = conn.execute(
        "INSERT INTO public.provider_events (client_id, provider, event_id, communication_id,"
        " event_type, kind, payload) VALUES (%s, 'resend', %s, %s, 'email.delivered',"
        " 'delivered', '{}') RETURNING id",
        (client, f"msg_{slug}", communication),
    ).fetchone()
    consent = conn.execute(
        "INSERT INTO public.consent_history (client_id, lead_id, channel, recipient,"
        " consent_status, source) VALUES (%s, %s, 'email', %s, 'withdrawn', 'test') RETURNING id",
        (client, lead, f"lead@{slug}.example"),
    ).fetchone()
    reject = conn.execute(
        "INSERT INTO public.webhook_rejects (client_id, provider, reason, body)"
        " VALUES (%s, 'resend', 'test', '\\x00') RETURNING id",
        (client,),
    ).fetchone()
    # Not a tenant's row: workers belong to the installation (no client_id).
    worker = f"worker-{slug}"
    conn.execute(
        "INSERT INTO public.worker_heartbeats (owner, host, pid, started_at, beat_at)"
        " VALUES (%s, 'host', 1, now(), now())",
        (worker,),
    )
    assert event is not None
    assert consent is not None
    assert reject is not None
    return Tenant(client, admin, member, lead, communication, api_key, template, suppression,
                  push_subscription, batch_key, event[0], consent[0], reject[0],
                  worker)  # fmt: skip


@pytest.fixture(scope="module", params=["plain", "supabase-defaults"])
def migrated_db(request: pytest.FixtureRequest, admin_url: str) -> Iterator[str]:
    """This module's database: plain, or with Supabase's default privileges before migrating."""
    name, url = _create_database(admin_url)
    if request.param == "supabase-defaults":
        apply_supabase_defaults(url)
    with connect(url) as conn:
        migrate(conn)
    yield url
    _drop_database(admin_url, name)


@pytest.fixture(scope="module")
def world(migrated_db: str) -> Iterator[World]:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        yield World(_seed_tenant(conn, "tenant-a"), _seed_tenant(conn, "tenant-b"))


class _Rollback(Exception):
    def __init__(self, result: int) -> None:
        self.result = result


async def attempt(
    pool: AsyncConnectionPool,
    actor: tuple[DatabaseRole, UUID | None],
    sql: str,
    *params: Any,
) -> int | str:
    """Rows seen or affected by ``sql`` as ``actor`` (rolled back), or ``DENIED``."""
    role, user = actor
    try:
        async with tenant_session(pool, user, role=role) as conn:
            cur = await conn.execute(sql.encode(), params)
            result = len(await cur.fetchall()) if cur.description else cur.rowcount
            raise _Rollback(result)
    except _Rollback as done:
        return done.result
    except psycopg.errors.InsufficientPrivilege:
        return DENIED


def anon() -> tuple[DatabaseRole, None]:
    return ("anon", None)


def service() -> tuple[DatabaseRole, None]:
    return ("service_role", None)


def user(uid: UUID) -> tuple[DatabaseRole, UUID]:
    return ("authenticated", uid)


# (table, key column, attribute of Tenant holding that row's key)
TABLES = [
    ("clients", "id", "client"),
    ("profiles", "id", "admin"),
    ("leads", "id", "lead"),
    ("communications", "id", "communication"),
    ("api_keys", "id", "api_key"),
    ("templates", "id", "template"),
    ("suppressions", "id", "suppression"),
    ("delivery_queue", "communication_id", "communication"),
    ("idempotency_keys", "client_id", "client"),
    ("lead_import_rows", "client_id", "client"),
    ("delivery_attempts", "communication_id", "communication"),
    ("push_subscriptions", "id", "push_subscription"),
    ("provider_batches", "batch_key", "batch_key"),
    ("provider_events", "id", "provider_event"),
    ("consent_history", "id", "consent_entry"),
    ("webhook_rejects", "id", "webhook_reject"),
    ("worker_heartbeats", "owner", "worker"),
]
APPEND_ONLY = {"consent_history"}
# Tables whose rows a tenant's users may read (the rest are the service's bookkeeping).
USER_READABLE = {"clients", "profiles", "leads", "communications", "api_keys", "templates",
                 "suppressions", "delivery_queue", "delivery_attempts",
                 "push_subscriptions", "provider_events", "consent_history",
                 "webhook_rejects"}  # fmt: skip


async def test_every_table_is_covered(migrated_db: str) -> None:
    with psycopg.connect(migrated_db) as conn:
        rows = conn.execute(
            "SELECT c.relname, c.relrowsecurity FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind = 'r'"
        ).fetchall()
    assert {name for name, _ in rows} == {table for table, _, _ in TABLES}
    assert all(enabled for _, enabled in rows)


@pytest.mark.parametrize(("table", "key", "attr"), TABLES)
async def test_select_shows_users_only_their_own_clients_rows(
    pool: AsyncConnectionPool, world: World, table: str, key: str, attr: str
) -> None:
    sql = f"SELECT 1 FROM public.{table} WHERE {key} = %s"
    row_a, row_b = getattr(world.a, attr), getattr(world.b, attr)

    # The service role sees both rows: the data is there.
    assert await attempt(pool, service(), sql, row_a) >= 1
    assert await attempt(pool, service(), sql, row_b) >= 1
    # anon has no privileges at all.
    assert await attempt(pool, anon(), sql, row_a) == DENIED
    if table in USER_READABLE:
        assert await attempt(pool, user(world.a.admin), sql, row_a) == 1
        assert await attempt(pool, user(world.a.admin), sql, row_b) == 0
        assert await attempt(pool, user(world.b.admin), sql, row_b) == 1
        assert await attempt(pool, user(world.b.admin), sql, row_a) == 0
    else:
        assert await attempt(pool, user(world.a.admin), sql, row_a) == DENIED


async def test_profiles_show_a_user_only_their_own_row(
    pool: AsyncConnectionPool, world: World
) -> None:
    sql = "SELECT 1 FROM public.profiles WHERE id = %s"
    assert await attempt(pool, user(world.a.member), sql, world.a.member) == 1
    assert await attempt(pool, user(world.a.member), sql, world.a.admin) == 0
    assert await attempt(pool, service(), sql, world.a.admin) == 1


async def test_a_user_without_a_profile_sees_nothing(
    pool: AsyncConnectionPool, world: World
) -> None:
    stranger = uuid.uuid4()
    for table, key, attr in TABLES:
        if table not in USER_READABLE:
            continue
        sql = f"SELECT 1 FROM public.{table} WHERE {key} = %s"
        assert await attempt(pool, service(), sql, getattr(world.a, attr)) >= 1
        assert await attempt(pool, user(stranger), sql, getattr(world.a, attr)) == 0, table


# ---------------------------------------------------------------- insert


async def test_users_add_leads_to_their_own_client_only(
    pool: AsyncConnectionPool, world: World
) -> None:
    sql = "INSERT INTO public.leads (client_id, email) VALUES (%s, 'new@x.example')"
    assert await attempt(pool, user(world.a.member), sql, world.a.client) == 1
    assert await attempt(pool, user(world.a.member), sql, world.b.client) == DENIED
    assert await attempt(pool, service(), sql, world.b.client) == 1
    assert await attempt(pool, anon(), sql, world.a.client) == DENIED


INSERTS = {
    "clients": "INSERT INTO public.clients (name, slug) SELECT 'n', 'new-' || %s::text",
    "profiles": "INSERT INTO public.profiles (id, client_id) VALUES (gen_random_uuid(), %s)",
    "communications": "INSERT INTO public.communications (lead_id, client_id, type, recipient)"
    " SELECT id, client_id, 'sms', '+1' FROM public.leads WHERE client_id = %s LIMIT 1",
    "api_keys": "INSERT INTO public.api_keys (client_id, name, prefix, key_hash)"
    " VALUES (%s, 'k', 'p', decode(repeat('ab', 32), 'hex'))",
    "templates": "INSERT INTO public.templates (client_id, name, version, channel, body,"
    " body_format) VALUES (%s, 'other', 1, 'email', 'b', 'text')",
    "suppressions": "INSERT INTO public.suppressions (client_id, channel, recipient, reason)"
    " VALUES (%s, 'sms', '+1555', 'manual')",
    "idempotency_keys": "INSERT INTO public.idempotency_keys"
    " (client_id, key, request_hash, status_code, response) VALUES (%s, 'new', '\\x01', 200, '{}')",
}


@pytest.mark.parametrize("table", sorted(INSERTS))
async def test_only_the_service_role_inserts_into_the_other_tables(
    pool: AsyncConnectionPool, world: World, table: str
) -> None:
    sql = INSERTS[table]
    assert await attempt(pool, service(), sql, world.a.client) == 1
    assert await attempt(pool, user(world.a.admin), sql, world.a.client) == DENIED
    assert await attempt(pool, anon(), sql, world.a.client) == DENIED


# ---------------------------------------------------------------- update


async def test_users_update_their_own_clients_leads_only(
    pool: AsyncConnectionPool, world: World
) -> None:
    sql = "UPDATE public.leads SET first_name = 'Changed' WHERE id = %s"
    assert await attempt(pool, user(world.a.member), sql, world.a.lead) == 1
    assert await attempt(pool, user(world.a.member), sql, world.b.lead) == 0
    assert await attempt(pool, user(world.b.admin), sql, world.b.lead) == 1
    assert await attempt(pool, service(), sql, world.b.lead) == 1
    assert await attempt(pool, anon(), sql, world.a.lead) == DENIED


async def test_user_cannot_move_a_lead_to_another_client(
    pool: AsyncConnectionPool, world: World
) -> None:
    move = "UPDATE public.leads SET client_id = %s WHERE id = %s"
    assert await attempt(pool, user(world.a.admin), move, world.b.client, world.a.lead) == DENIED
    # The same statement is fine for the service role, and keeping the client is fine for A.
    assert await attempt(pool, service(), move, world.b.client, world.a.lead) == 1
    assert await attempt(pool, user(world.a.admin), move, world.a.client, world.a.lead) == 1


async def test_admins_update_their_own_client_and_members_cannot(
    pool: AsyncConnectionPool, world: World
) -> None:
    sql = "UPDATE public.clients SET name = 'Renamed' WHERE id = %s"
    assert await attempt(pool, user(world.a.admin), sql, world.a.client) == 1
    assert await attempt(pool, user(world.a.member), sql, world.a.client) == 0
    assert await attempt(pool, user(world.a.admin), sql, world.b.client) == 0
    assert await attempt(pool, service(), sql, world.b.client) == 1


async def test_admin_cannot_turn_their_client_into_another(
    pool: AsyncConnectionPool, world: World
) -> None:
    sql = "UPDATE public.clients SET id = %s WHERE id = %s"
    assert await attempt(pool, user(world.a.admin), sql, uuid.uuid4(), world.a.client) == DENIED


UPDATES = {
    "profiles": "UPDATE public.profiles SET role = 'owner' WHERE client_id = %s",
    "communications": "UPDATE public.communications SET status = 'sent' WHERE client_id = %s",
    "api_keys": "UPDATE public.api_keys SET revoked_at = now() WHERE client_id = %s",
    "templates": "UPDATE public.templates SET body = 'x' WHERE client_id = %s",
    "suppressions": "UPDATE public.suppressions SET reason = 'manual' WHERE client_id = %s",
    "delivery_queue": "UPDATE public.delivery_queue SET priority = 1 WHERE client_id = %s",
    "idempotency_keys": "UPDATE public.idempotency_keys SET status_code = 500 WHERE client_id = %s",
    "lead_import_rows": "UPDATE public.lead_import_rows SET lead_id = NULL WHERE client_id = %s",
    "provider_events": "UPDATE public.provider_events SET effect = 'x' WHERE client_id = %s",
    "webhook_rejects": "UPDATE public.webhook_rejects SET reason = 'x' WHERE client_id = %s",
}


@pytest.mark.parametrize("table", sorted(UPDATES))
async def test_only_the_service_role_updates_the_other_tables(
    pool: AsyncConnectionPool, world: World, table: str
) -> None:
    sql = UPDATES[table]
    assert await attempt(pool, service(), sql, world.a.client) >= 1
    assert await attempt(pool, user(world.a.admin), sql, world.a.client) == DENIED
    assert await attempt(pool, anon(), sql, world.a.client) == DENIED


# ---------------------------------------------------------------- delete


@pytest.mark.parametrize(("table", "key", "attr"), TABLES)
async def test_only_the_service_role_deletes(
    pool: AsyncConnectionPool, world: World, table: str, key: str, attr: str
) -> None:
    sql = f"DELETE FROM public.{table} WHERE {key} = %s"
    row = getattr(world.a, attr)
    if table in APPEND_ONLY:
        assert await attempt(pool, service(), sql, row) == DENIED
    else:
        assert await attempt(pool, service(), sql, row) >= 1
    assert await attempt(pool, user(world.a.admin), sql, row) == DENIED
    assert await attempt(pool, anon(), sql, row) == DENIED


async def test_consent_history_is_append_only_even_for_the_owner(
    migrated_db: str, world: World
) -> None:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        for sql in (
            "UPDATE public.consent_history SET source = 'x' WHERE id = %s",
            "DELETE FROM public.consent_history WHERE id = %s",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(sql.encode(), (world.a.consent_entry,))
        # Deleting the lead (erasure) still cascades to its history.
        client = conn.execute(
            "INSERT INTO public.clients (name, slug) VALUES ('c', 'erasure') RETURNING id"
        ).fetchone()
        assert client is not None
        lead = conn.execute(
            "INSERT INTO public.leads (client_id, email) VALUES (%s, 'gone@x.example') RETURNING id",
            (client[0],),
        ).fetchone()
        assert lead is not None
        conn.execute(
            "INSERT INTO public.consent_history (client_id, lead_id, channel, recipient,"
            " consent_status, source) VALUES (%s, %s, 'email', 'gone@x.example', 'withdrawn', 't')",
            (client[0], lead[0]),
        )
        conn.execute("DELETE FROM public.leads WHERE id = %s", (lead[0],))
        left = conn.execute(
            "SELECT count(*) FROM public.consent_history WHERE client_id = %s", (client[0],)
        ).fetchone()
        conn.execute("DELETE FROM public.clients WHERE id = %s", (client[0],))
    assert left == (0,)


# ---------------------------------------------------------------- sessions


async def test_claims_and_role_do_not_leak_to_the_next_user_of_a_connection(
    migrated_db: str, world: World
) -> None:
    from lqs.db.pool import open_pool

    single = await open_pool(migrated_db, min_size=1, max_size=1)
    try:
        async with tenant_session(single, world.a.admin) as conn:
            cur = await conn.execute("SELECT current_user, auth.uid()")
            assert await cur.fetchone() == ("authenticated", world.a.admin)
        async with single.connection() as conn:
            cur = await conn.execute(
                "SELECT current_user <> 'authenticated', auth.uid(),"
                " coalesce(current_setting('request.jwt.claims', true), '')"
            )
            assert await cur.fetchone() == (True, None, "")
    finally:
        await single.close()


async def test_a_failed_statement_rolls_back_and_resets_the_session(
    pool: AsyncConnectionPool, world: World
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        async with tenant_session(pool, world.a.admin) as conn:
            await conn.execute("DELETE FROM public.leads")
    assert (
        await attempt(pool, service(), "SELECT 1 FROM public.leads WHERE id = %s", world.a.lead)
        == 1
    )


@pytest.mark.parametrize(
    "assignment",
    ["status = 'qualified'", "score = 100", "score_breakdown = '[]'", "history = '[]'",
     "dedupe_key = 'x'", "processed_at = now()"],
)  # fmt: skip
async def test_users_cannot_write_the_qualification_columns(
    pool: AsyncConnectionPool, world: World, assignment: str
) -> None:
    sql = f"UPDATE public.leads SET {assignment} WHERE id = %s"
    assert await attempt(pool, user(world.a.admin), sql, world.a.lead) == DENIED
    assert await attempt(pool, service(), sql, world.a.lead) == 1
    editable = "UPDATE public.leads SET job_title = 'CTO' WHERE id = %s"
    assert await attempt(pool, user(world.a.admin), editable, world.a.lead) == 1


async def test_a_session_cannot_claim_a_role_it_does_not_run_as(
    pool: AsyncConnectionPool, world: World
) -> None:
    with pytest.raises(ValueError, match="may not set 'role'"):
        async with tenant_session(pool, world.a.admin, extra_claims={"role": "service_role"}):
            pass


ROLES: list[tuple[DatabaseRole, str]] = [
    ("anon", "anon"), ("authenticated", "admin"), ("authenticated", "member"),
    ("service_role", "service"),
]  # fmt: skip


def _actor(world: World, who: str) -> tuple[DatabaseRole, UUID | None]:
    if who == "anon":
        return anon()
    if who == "service":
        return service()
    return user(getattr(world.a, who))


@pytest.mark.parametrize(("table", "key", "attr"), TABLES)
@pytest.mark.parametrize(("role", "who"), ROLES)
async def test_truncate_is_refused_for_every_role(
    pool: AsyncConnectionPool,
    world: World,
    table: str,
    key: str,
    attr: str,
    role: DatabaseRole,
    who: str,
) -> None:
    # TRUNCATE ignores row-level security: holding it would empty every tenant's rows.
    assert await attempt(pool, _actor(world, who), f"TRUNCATE public.{table} CASCADE") == DENIED
    # The rows are still there, so the refusal is not an empty table's.
    sql = f"SELECT 1 FROM public.{table} WHERE {key} = %s"
    assert await attempt(pool, service(), sql, getattr(world.a, attr)) >= 1


@pytest.mark.parametrize(
    "assignment", ["slug = 'taken-over'", "id = gen_random_uuid()", "created_at = now()"]
)
async def test_admins_cannot_change_their_clients_identity(
    pool: AsyncConnectionPool, world: World, assignment: str
) -> None:
    sql = f"UPDATE public.clients SET {assignment} WHERE id = %s"
    assert await attempt(pool, user(world.a.admin), sql, world.a.client) == DENIED
    allowed = "UPDATE public.clients SET name = 'Renamed' WHERE id = %s"
    assert await attempt(pool, user(world.a.admin), allowed, world.a.client) == 1


@pytest.mark.parametrize(("role", "who"), ROLES)
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT nextval('public.provider_events_id_seq')",
        "SELECT setval('public.consent_history_id_seq', 1)",
        "SELECT last_value FROM public.delivery_attempts_id_seq",
        "SELECT public.lqs_set_updated_at()",
        "SELECT public.update_communications_updated_at()",
        "SELECT public.consent_history_append_only()",
    ],
)
async def test_no_role_touches_lqs_sequences_or_functions(
    pool: AsyncConnectionPool, world: World, sql: str, role: DatabaseRole, who: str
) -> None:
    assert await attempt(pool, _actor(world, who), sql) == DENIED


@pytest.mark.parametrize(("role", "who"), ROLES)
async def test_consent_history_stays_append_only_by_privilege(
    pool: AsyncConnectionPool, world: World, role: DatabaseRole, who: str
) -> None:
    # Refused by privileges before the append-only trigger is even reached.
    for sql in (
        "UPDATE public.consent_history SET source = source WHERE id = %s",
        "DELETE FROM public.consent_history WHERE id = %s",
    ):
        assert await attempt(pool, _actor(world, who), sql, world.a.consent_entry) == DENIED
