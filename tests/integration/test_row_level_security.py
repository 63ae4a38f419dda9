"""Tenant isolation in the database: every table × operation × actor, as PostgREST runs it.

Actors: ``anon``; ``authenticated`` users of client A (an admin and a member) and of client
B; a user with no profile; and ``service_role``. Every denial is asserted next to the same
statement succeeding for an actor allowed to run it, so no test passes merely because the
data is missing. A denial is either no rows or SQLSTATE 42501 (with its message where the
kind of refusal matters: a missing privilege, or a row-level security policy's WITH CHECK).

Two kinds of test. The matrix runs every statement on one seeded pair of tenants (a row in
every table each) in ``tenant_session`` and rolls it back, so attempts never see each
other's effects. The scenarios below it build two fresh tenants per test (a client each, an
admin and a member profile, two leads and a communication per lead), commit their
statements, and read what is stored afterwards as the superuser, which bypasses RLS.

The whole module runs twice: on a database migrated on plain PostgreSQL, and on one set up as
a new Supabase project is (its ``ALTER DEFAULT PRIVILEGES ... GRANT ALL ... TO anon,
authenticated, service_role`` in ``public`` applied before migrating), where every LQS object
is born with ALL for every role and only the migrations' REVOKEs keep these answers true.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg.errors import InsufficientPrivilege
from psycopg.sql import SQL, Composable, Identifier
from psycopg_pool import AsyncConnectionPool

from lqs.db.pool import DatabaseRole, open_pool, tenant_session
from tests.conftest import _create_database, _drop_database

pytestmark = pytest.mark.asyncio(loop_scope="module")

DENIED = "42501"
RLS_VIOLATION = "new row violates row-level security policy"


def no_privilege(table: str) -> str:
    return f"permission denied for table {table}"


# ---------------------------------------------------------------- actors


Actor = tuple[DatabaseRole, UUID | None]
"""Who runs a statement: the database role, and the user id of the JWT's ``sub``."""


def anon() -> Actor:
    return ("anon", None)


def service() -> Actor:
    return ("service_role", None)


def user(uid: UUID) -> Actor:
    return ("authenticated", uid)


# ---------------------------------------------------------------- the seeded tenants


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
    audit_entry: int
    erasure: UUID
    installation: bool = True
    """The key of installation_secrets' one row (not a tenant's)."""


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
    admin, member = uuid4(), uuid4()
    conn.execute(
        "INSERT INTO public.profiles (id, client_id, email, role) VALUES"
        " (%s, %s, %s, 'admin'), (%s, %s, %s, 'member')",
        (admin, client, f"admin@{slug}.example", member, client, f"member@{slug}.example"),
    )
    conn.execute(
        "INSERT INTO public.user_credentials (user_id, password_hash) VALUES (%s, %s)",
        (admin, "$argon2id$v=19$m=65536,t=3,p=4$not-a-real-hash"),
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
    conn.execute(
        "INSERT INTO public.recipient_sends (communication_id, client_id, channel, recipient,"
        " sent_at) VALUES (%s, %s, 'email', 'sales@x.example', now())",
        (communication, client),
    )
    api_key = one(
        "INSERT INTO public.api_keys (client_id, name, prefix, key_hash)"
        " VALUES (%s, 'k', 'lqs_x', %s) RETURNING id",
        client, uuid4().bytes * 2,
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
        (client, uuid4().bytes * 2, lead),
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
    audit = conn.execute(
        "INSERT INTO public.audit_log (client_id, user_id, action, target_id)"
        " VALUES (%s, %s, 'api_key.create', %s) RETURNING id",
        (client, admin, api_key),
    ).fetchone()
    assert event is not None
    assert consent is not None
    assert reject is not None
    assert audit is not None
    erasure = one(
        "INSERT INTO public.erasures (client_id, requested_by, reason)"
        " VALUES (%s, 'operator:test', 'asked') RETURNING id",
        client,
    )
    return Tenant(client, admin, member, lead, communication, api_key, template, suppression,
                  push_subscription, batch_key, event[0], consent[0], reject[0],
                  worker, audit[0], erasure)  # fmt: skip


@pytest.fixture(scope="module", params=["plain", "supabase-defaults"])
def migrated_db(request: pytest.FixtureRequest, admin_url: str) -> Iterator[str]:
    """This module's database: plain, or with Supabase's default privileges before migrating
    (a copy of the session's database migrated so)."""
    template = request.getfixturevalue(
        "supabase_migrated_template"
        if request.param == "supabase-defaults"
        else "migrated_template"
    )
    name, url = _create_database(admin_url, template)
    yield url
    _drop_database(admin_url, name)


@pytest.fixture(scope="module")
def world(migrated_db: str) -> Iterator[World]:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        world = World(_seed_tenant(conn, "tenant-a"), _seed_tenant(conn, "tenant-b"))
        # Both tenants' statistics rolled up, and an hour of each logged as changed since.
        conn.execute("SELECT public.lqs_stats_refresh(100000)")
        conn.execute(
            "UPDATE public.leads SET updated_at = now() WHERE client_id IN (%s, %s)",
            (world.a.client, world.b.client),
        )
        yield world


class _Rollback(Exception):
    def __init__(self, result: int) -> None:
        self.result = result


async def attempt(
    pool: AsyncConnectionPool,
    actor: Actor,
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
    ("user_credentials", "user_id", "admin"),
    ("audit_log", "id", "audit_entry"),
    ("stats_lead_hours", "client_id", "client"),
    ("stats_message_hours", "client_id", "client"),
    ("stats_stale_hours", "client_id", "client"),
    ("recipient_sends", "communication_id", "communication"),
    ("erasures", "id", "erasure"),
    ("installation_secrets", "id", "installation"),
]
APPEND_ONLY = {"consent_history", "audit_log"}
# Kept for good: the record of an erasure, and the installation's secret.
NEVER_DELETED = {"erasures", "installation_secrets"}
# The statistics rollup (migration 0018): written by its triggers and by the worker's
# refresh (the owner); the service role and users may only read it.
ROLLUP = {"stats_lead_hours", "stats_message_hours", "stats_stale_hours"}
# Tables whose rows a tenant's users may read (the rest are the service's bookkeeping).
USER_READABLE = {"clients", "profiles", "leads", "communications", "api_keys", "templates",
                 "suppressions", "delivery_queue", "delivery_attempts",
                 "push_subscriptions", "provider_events", "consent_history",
                 "webhook_rejects", "audit_log", "erasures", *ROLLUP}  # fmt: skip


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


async def test_only_admins_see_their_clients_erasures(
    pool: AsyncConnectionPool, world: World
) -> None:
    sql = "SELECT 1 FROM public.erasures WHERE id = %s"
    assert await attempt(pool, user(world.a.admin), sql, world.a.erasure) == 1
    assert await attempt(pool, user(world.a.member), sql, world.a.erasure) == 0


async def test_no_user_computes_or_reads_the_suppression_hash_key(
    pool: AsyncConnectionPool, world: World
) -> None:
    for sql in ("SELECT 1 FROM public.installation_secrets",
                "SELECT public.lqs_recipient_hash('email', 'a@b.example')",
                "SELECT public.lqs_erase_history(gen_random_uuid(), '{}', '{}')"):  # fmt: skip
        assert await attempt(pool, user(world.a.admin), sql) == DENIED
        assert await attempt(pool, anon(), sql) == DENIED
    assert await attempt(pool, service(), "SELECT 1 FROM public.installation_secrets") == 1


async def test_a_user_without_a_profile_sees_nothing(
    pool: AsyncConnectionPool, world: World
) -> None:
    stranger = uuid4()
    for table, key, attr in TABLES:
        if table not in USER_READABLE:
            continue
        sql = f"SELECT 1 FROM public.{table} WHERE {key} = %s"
        assert await attempt(pool, service(), sql, getattr(world.a, attr)) >= 1
        assert await attempt(pool, user(stranger), f"SELECT 1 FROM public.{table}") == 0, table


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
    "user_credentials": "INSERT INTO public.user_credentials (user_id, password_hash)"
    " SELECT id, '$argon2id$fake' FROM public.profiles WHERE client_id = %s AND role = 'member'",
    "audit_log": "INSERT INTO public.audit_log (client_id, action) VALUES (%s, 'test.insert')",
    "erasures": "INSERT INTO public.erasures (client_id, requested_by, reason)"
    " VALUES (%s, 'user:x', 'asked')",
    # With a communication of its own: the world's already has its row.
    "recipient_sends": "WITH c AS (INSERT INTO public.communications"
    " (lead_id, client_id, type, recipient) SELECT id, client_id, 'sms', '+1'"
    " FROM public.leads WHERE client_id = %s LIMIT 1 RETURNING id, client_id)"
    " INSERT INTO public.recipient_sends (communication_id, client_id, channel, recipient,"
    " sent_at) SELECT id, client_id, 'sms', '+1', now() FROM c",
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


async def test_admins_update_their_own_client_and_members_cannot(
    pool: AsyncConnectionPool, world: World
) -> None:
    sql = "UPDATE public.clients SET name = 'Renamed' WHERE id = %s"
    assert await attempt(pool, user(world.a.admin), sql, world.a.client) == 1
    assert await attempt(pool, user(world.a.member), sql, world.a.client) == 0
    assert await attempt(pool, user(world.a.admin), sql, world.b.client) == 0
    assert await attempt(pool, service(), sql, world.b.client) == 1


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
    "user_credentials": "UPDATE public.user_credentials SET failed_attempts = 1"
    " WHERE user_id IN (SELECT id FROM public.profiles WHERE client_id = %s)",
    "recipient_sends": "UPDATE public.recipient_sends SET sent_at = now() WHERE client_id = %s",
    "erasures": "UPDATE public.erasures SET finished_at = now() WHERE client_id = %s",
}


@pytest.mark.parametrize("table", sorted(UPDATES))
async def test_only_the_service_role_updates_the_other_tables(
    pool: AsyncConnectionPool, world: World, table: str
) -> None:
    sql = UPDATES[table]
    assert await attempt(pool, service(), sql, world.a.client) >= 1
    assert await attempt(pool, user(world.a.admin), sql, world.a.client) == DENIED
    assert await attempt(pool, anon(), sql, world.a.client) == DENIED


async def test_the_audit_log_is_append_only_for_the_service_role_too(
    pool: AsyncConnectionPool, world: World
) -> None:
    sql = "UPDATE public.audit_log SET action = 'forged' WHERE client_id = %s"
    assert await attempt(pool, service(), sql, world.a.client) == DENIED
    assert await attempt(pool, user(world.a.admin), sql, world.a.client) == DENIED


# ---------------------------------------------------------------- delete


@pytest.mark.parametrize(("table", "key", "attr"), TABLES)
async def test_only_the_service_role_deletes(
    pool: AsyncConnectionPool, world: World, table: str, key: str, attr: str
) -> None:
    sql = f"DELETE FROM public.{table} WHERE {key} = %s"
    row = getattr(world.a, attr)
    if table in APPEND_ONLY | ROLLUP | NEVER_DELETED:
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


def _actor(world: World, who: str) -> Actor:
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


# ================================================================ committed, on fresh tenants


CoreTable = Literal["clients", "profiles", "leads", "communications"]
Operation = Literal["select", "insert", "update", "delete"]
Statement = tuple[Composable, tuple[Any, ...]]

CORE_TABLES: tuple[CoreTable, ...] = ("clients", "profiles", "leads", "communications")
OPERATIONS: tuple[Operation, ...] = ("select", "insert", "update", "delete")

# A text column per table that any update below rewrites.
UPDATED_COLUMN: dict[CoreTable, str] = {
    "clients": "name",
    "profiles": "email",
    "leads": "first_name",
    "communications": "subject",
}


@dataclass(frozen=True)
class FreshTenant:
    client_id: UUID
    admin_id: UUID
    member_id: UUID
    lead_id: UUID
    communication_id: UUID

    @property
    def admin(self) -> Actor:
        return user(self.admin_id)

    @property
    def member(self) -> Actor:
        return user(self.member_id)

    @property
    def admin_email(self) -> str:
        """A-admin's address: one per profile, as sign-in needs (migration 0012)."""
        return f"admin-{self.client_id.hex}@x.example"

    def row_id(self, table: CoreTable) -> UUID:
        """This tenant's row of ``table`` that the statements below target."""
        return {
            "clients": self.client_id,
            "profiles": self.admin_id,
            "leads": self.lead_id,
            "communications": self.communication_id,
        }[table]


@dataclass(frozen=True)
class FreshWorld:
    a: FreshTenant
    b: FreshTenant

    def tenant(self, name: str) -> FreshTenant:
        return self.a if name == "a" else self.b


def _create_tenant(db: psycopg.Connection[Any], label: str) -> FreshTenant:
    t = FreshTenant(uuid4(), uuid4(), uuid4(), uuid4(), uuid4())
    phone_lead, phone_communication = uuid4(), uuid4()
    with db.transaction():
        db.execute(
            "INSERT INTO public.clients (id, name, slug) VALUES (%s, %s, %s)",
            (t.client_id, f"Client {label.upper()}", f"client-{label}-{t.client_id.hex[:8]}"),
        )
        db.execute(
            "INSERT INTO public.profiles (id, client_id, email, role)"
            " VALUES (%s, %s, %s, 'admin'), (%s, %s, %s, 'member')",
            (
                t.admin_id,
                t.client_id,
                t.admin_email,
                t.member_id,
                t.client_id,
                f"member-{t.client_id.hex}@x.example",
            ),
        )
        db.execute(
            "INSERT INTO public.leads (id, client_id, email, phone, first_name)"
            " VALUES (%s, %s, %s, NULL, 'Ada'), (%s, %s, NULL, '+15550100', 'Bob')",
            (t.lead_id, t.client_id, f"ada@{label}.example", phone_lead, t.client_id),
        )
        db.execute(
            "INSERT INTO public.communications (id, lead_id, client_id, type, recipient)"
            " VALUES (%s, %s, %s, 'email', %s), (%s, %s, %s, 'sms', '+15550100')",
            (
                t.communication_id,
                t.lead_id,
                t.client_id,
                f"ada@{label}.example",
                phone_communication,
                phone_lead,
                t.client_id,
            ),
        )
    return t


@pytest.fixture(scope="module")
def superuser(migrated_db: str) -> Iterator[psycopg.Connection[Any]]:
    """The migrating login role: a superuser, so it sees and writes past every policy."""
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        yield conn


@pytest.fixture
def fresh(superuser: psycopg.Connection[Any]) -> FreshWorld:
    """Two new tenants for one test, committed: its statements commit too."""
    return FreshWorld(_create_tenant(superuser, "a"), _create_tenant(superuser, "b"))


# ---------------------------------------------------------------- statements


def _select(table: CoreTable, row_id: UUID) -> Statement:
    query = SQL("SELECT id FROM public.{} WHERE id = %s").format(Identifier(table))
    return query, (row_id,)


def _insert(table: CoreTable, tenant: FreshTenant, new_id: UUID) -> Statement:
    """A new row of ``table`` belonging to ``tenant``'s client."""
    if table == "clients":
        return (
            SQL("INSERT INTO public.clients (id, name, slug) VALUES (%s, 'New', %s)"),
            (new_id, f"new-{new_id.hex[:12]}"),
        )
    if table == "profiles":
        return (
            SQL("INSERT INTO public.profiles (id, client_id) VALUES (%s, %s)"),
            (new_id, tenant.client_id),
        )
    if table == "leads":
        return (
            SQL("INSERT INTO public.leads (id, client_id, email) VALUES (%s, %s, %s)"),
            (new_id, tenant.client_id, f"{new_id.hex[:12]}@example.com"),
        )
    return (
        SQL(
            "INSERT INTO public.communications (id, lead_id, client_id, type, recipient)"
            " VALUES (%s, %s, %s, 'email', 'new@example.com')"
        ),
        (new_id, tenant.lead_id, tenant.client_id),
    )


def _update(table: CoreTable, row_id: UUID, value: str) -> Statement:
    query = SQL("UPDATE public.{} SET {} = %s WHERE id = %s").format(
        Identifier(table), Identifier(UPDATED_COLUMN[table])
    )
    return query, (value, row_id)


def _delete(table: CoreTable, row_id: UUID) -> Statement:
    query = SQL("DELETE FROM public.{} WHERE id = %s").format(Identifier(table))
    return query, (row_id,)


def _statement(operation: Operation, table: CoreTable, tenant: FreshTenant) -> Statement:
    """``operation`` on ``tenant``'s row of ``table`` (a new row of it, for an insert)."""
    if operation == "select":
        return _select(table, tenant.row_id(table))
    if operation == "insert":
        return _insert(table, tenant, uuid4())
    if operation == "update":
        # Unique: an update that commits must not give two profiles one email (0012).
        return _update(table, tenant.row_id(table), f"changed-{uuid4().hex}")
    return _delete(table, tenant.row_id(table))


# An UPDATE by id reads the row, so the new row must pass the SELECT policy as well as
# the UPDATE policy's WITH CHECK; one without a WHERE clause meets the WITH CHECK alone.
SCOPES = ("by-id", "without-where-clause")


def _where(scope: str, row_id: UUID) -> tuple[SQL, tuple[Any, ...]]:
    if scope == "by-id":
        return SQL(" WHERE id = %s"), (row_id,)
    return SQL(""), ()


# ---------------------------------------------------------------- running and checking


async def _run(pool: AsyncConnectionPool, actor: Actor, statement: Statement) -> int:
    """Run one statement in a committed tenant session; the rows it returned or changed."""
    role, user_id = actor
    async with tenant_session(pool, user_id, role=role) as conn:
        cur = await conn.execute(*statement)
        return cur.rowcount


async def _visible(pool: AsyncConnectionPool, actor: Actor, table: CoreTable) -> set[UUID]:
    query = SQL("SELECT id FROM public.{}").format(Identifier(table))
    role, user_id = actor
    async with tenant_session(pool, user_id, role=role) as conn:
        cur = await conn.execute(query)
        return {row[0] for row in await cur.fetchall()}


def _stored(db: psycopg.Connection[Any], table: CoreTable, column: str, row_id: UUID) -> Any:
    """``column`` of the row as stored (read past RLS), or the string "<missing>"."""
    query = SQL("SELECT {} FROM public.{} WHERE id = %s").format(
        Identifier(column), Identifier(table)
    )
    row = db.execute(query, (row_id,)).fetchone()
    return "<missing>" if row is None else row[0]


def _ids_of_client(db: psycopg.Connection[Any], table: CoreTable, client_id: UUID) -> set[UUID]:
    column = "id" if table == "clients" else "client_id"
    query = SQL("SELECT id FROM public.{} WHERE {} = %s").format(
        Identifier(table), Identifier(column)
    )
    return {row[0] for row in db.execute(query, (client_id,)).fetchall()}


# ---------------------------------------------------------------- anon


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("table", CORE_TABLES)
async def test_anon_has_no_privilege_on_any_table(
    pool: AsyncConnectionPool, fresh: FreshWorld, table: CoreTable, operation: Operation
) -> None:
    statement = _statement(operation, table, fresh.a)

    with pytest.raises(InsufficientPrivilege, match=no_privilege(table)):
        await _run(pool, anon(), statement)

    # The very same statement, on a row that exists, works for the service role.
    assert await _run(pool, service(), statement) == 1


# ---------------------------------------------------------------- clients


@pytest.mark.parametrize("profile", ["admin", "member"])
async def test_user_sees_only_their_own_client(
    pool: AsyncConnectionPool, fresh: FreshWorld, profile: str
) -> None:
    for own, other in ((fresh.a, fresh.b), (fresh.b, fresh.a)):
        actor = own.admin if profile == "admin" else own.member
        assert await _visible(pool, actor, "clients") == {own.client_id}
        assert other.client_id in await _visible(pool, service(), "clients")


async def test_client_member_cannot_update_their_client(
    pool: AsyncConnectionPool, fresh: FreshWorld, superuser: psycopg.Connection[Any]
) -> None:
    by_member = _update("clients", fresh.a.client_id, "renamed by member")
    assert await _run(pool, fresh.a.member, by_member) == 0
    assert _stored(superuser, "clients", "name", fresh.a.client_id) == "Client A"

    by_admin = _update("clients", fresh.a.client_id, "renamed by admin")
    assert await _run(pool, fresh.a.admin, by_admin) == 1
    assert _stored(superuser, "clients", "name", fresh.a.client_id) == "renamed by admin"


@pytest.mark.parametrize(("actor_tenant", "victim_tenant"), [("a", "b"), ("b", "a")])
async def test_client_admin_cannot_update_another_client(
    pool: AsyncConnectionPool,
    fresh: FreshWorld,
    superuser: psycopg.Connection[Any],
    actor_tenant: str,
    victim_tenant: str,
) -> None:
    intruder, victim = fresh.tenant(actor_tenant), fresh.tenant(victim_tenant)
    original = _stored(superuser, "clients", "name", victim.client_id)

    assert await _run(pool, intruder.admin, _update("clients", victim.client_id, "hijacked")) == 0
    assert _stored(superuser, "clients", "name", victim.client_id) == original

    assert await _run(pool, victim.admin, _update("clients", victim.client_id, "renamed")) == 1
    assert _stored(superuser, "clients", "name", victim.client_id) == "renamed"


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("target", ["another-clients-id", "a-fresh-id"])
async def test_client_admin_cannot_change_their_clients_id(
    pool: AsyncConnectionPool,
    fresh: FreshWorld,
    superuser: psycopg.Connection[Any],
    target: str,
    scope: str,
) -> None:
    new_id = fresh.b.client_id if target == "another-clients-id" else uuid4()
    where, params = _where(scope, fresh.a.client_id)
    change_id = (SQL("UPDATE public.clients SET id = %s") + where, (new_id, *params))
    rename = (SQL("UPDATE public.clients SET name = 'renamed'") + where, params)

    # Refused by the column grant (admins may change only name and settings) or, where
    # the planner checks policies first, by WITH CHECK: a denial either way.
    with pytest.raises(InsufficientPrivilege, match=f"{RLS_VIOLATION}|permission denied"):
        await _run(pool, fresh.a.admin, change_id)
    assert _stored(superuser, "clients", "id", fresh.a.client_id) == fresh.a.client_id

    # The same statement without the new id reaches the admin's client, and only it.
    assert await _run(pool, fresh.a.admin, rename) == 1
    assert _stored(superuser, "clients", "name", fresh.a.client_id) == "renamed"
    assert _stored(superuser, "clients", "name", fresh.b.client_id) == "Client B"


@pytest.mark.parametrize("operation", ["insert", "delete"])
async def test_user_cannot_insert_or_delete_clients(
    pool: AsyncConnectionPool,
    fresh: FreshWorld,
    superuser: psycopg.Connection[Any],
    operation: Operation,
) -> None:
    statement = _statement(operation, "clients", fresh.a)

    with pytest.raises(InsufficientPrivilege, match=no_privilege("clients")):
        await _run(pool, fresh.a.admin, statement)
    assert _stored(superuser, "clients", "id", fresh.a.client_id) == fresh.a.client_id

    assert await _run(pool, service(), statement) == 1


# ---------------------------------------------------------------- profiles


async def test_user_sees_only_their_own_profile_not_their_teammates(
    pool: AsyncConnectionPool, fresh: FreshWorld
) -> None:
    for tenant in (fresh.a, fresh.b):
        for actor in (tenant.admin, tenant.member):
            assert await _visible(pool, actor, "profiles") == {actor[1]}

    everyone = {fresh.a.admin_id, fresh.a.member_id, fresh.b.admin_id, fresh.b.member_id}
    assert everyone <= await _visible(pool, service(), "profiles")


@pytest.mark.parametrize("operation", ["insert", "update", "delete"])
async def test_user_cannot_write_profiles_not_even_their_own(
    pool: AsyncConnectionPool,
    fresh: FreshWorld,
    superuser: psycopg.Connection[Any],
    operation: Operation,
) -> None:
    statement = _statement(operation, "profiles", fresh.a)  # targets A-admin's own profile

    with pytest.raises(InsufficientPrivilege, match=no_privilege("profiles")):
        await _run(pool, fresh.a.admin, statement)
    assert _stored(superuser, "profiles", "email", fresh.a.admin_id) == fresh.a.admin_email

    assert await _run(pool, service(), statement) == 1


# ---------------------------------------------------------------- leads


@pytest.mark.parametrize("profile", ["admin", "member"])
async def test_user_sees_only_their_clients_leads(
    pool: AsyncConnectionPool, fresh: FreshWorld, superuser: psycopg.Connection[Any], profile: str
) -> None:
    for own, other in ((fresh.a, fresh.b), (fresh.b, fresh.a)):
        actor = own.admin if profile == "admin" else own.member
        visible = await _visible(pool, actor, "leads")
        assert visible == _ids_of_client(superuser, "leads", own.client_id)
        assert len(visible) == 2
        assert other.lead_id not in visible
        assert other.lead_id in await _visible(pool, service(), "leads")


@pytest.mark.parametrize("profile", ["admin", "member"])
async def test_user_can_add_a_lead_for_their_client(
    pool: AsyncConnectionPool, fresh: FreshWorld, superuser: psycopg.Connection[Any], profile: str
) -> None:
    actor = fresh.a.admin if profile == "admin" else fresh.a.member
    new_id = uuid4()

    assert await _run(pool, actor, _insert("leads", fresh.a, new_id)) == 1
    assert _stored(superuser, "leads", "client_id", new_id) == fresh.a.client_id
    assert new_id in await _visible(pool, actor, "leads")


@pytest.mark.parametrize(("actor_tenant", "victim_tenant"), [("a", "b"), ("b", "a")])
async def test_user_cannot_add_a_lead_for_another_client(
    pool: AsyncConnectionPool,
    fresh: FreshWorld,
    superuser: psycopg.Connection[Any],
    actor_tenant: str,
    victim_tenant: str,
) -> None:
    intruder, victim = fresh.tenant(actor_tenant), fresh.tenant(victim_tenant)
    planted = uuid4()

    with pytest.raises(InsufficientPrivilege, match=RLS_VIOLATION):
        await _run(pool, intruder.admin, _insert("leads", victim, planted))
    assert _stored(superuser, "leads", "id", planted) == "<missing>"

    # The victim's own user may add exactly that row.
    assert await _run(pool, victim.admin, _insert("leads", victim, planted)) == 1
    assert _stored(superuser, "leads", "client_id", planted) == victim.client_id


@pytest.mark.parametrize("profile", ["admin", "member"])
async def test_user_can_update_their_clients_leads(
    pool: AsyncConnectionPool, fresh: FreshWorld, superuser: psycopg.Connection[Any], profile: str
) -> None:
    actor = fresh.a.admin if profile == "admin" else fresh.a.member

    assert await _run(pool, actor, _update("leads", fresh.a.lead_id, "Grace")) == 1
    assert _stored(superuser, "leads", "first_name", fresh.a.lead_id) == "Grace"


@pytest.mark.parametrize(("actor_tenant", "victim_tenant"), [("a", "b"), ("b", "a")])
async def test_user_cannot_update_another_clients_leads(
    pool: AsyncConnectionPool,
    fresh: FreshWorld,
    superuser: psycopg.Connection[Any],
    actor_tenant: str,
    victim_tenant: str,
) -> None:
    intruder, victim = fresh.tenant(actor_tenant), fresh.tenant(victim_tenant)

    assert await _run(pool, intruder.admin, _update("leads", victim.lead_id, "Mallory")) == 0
    assert _stored(superuser, "leads", "first_name", victim.lead_id) == "Ada"

    assert await _run(pool, victim.member, _update("leads", victim.lead_id, "Grace")) == 1
    assert _stored(superuser, "leads", "first_name", victim.lead_id) == "Grace"


@pytest.mark.parametrize("scope", SCOPES)
async def test_user_cannot_move_lead_to_another_client(
    pool: AsyncConnectionPool, fresh: FreshWorld, superuser: psycopg.Connection[Any], scope: str
) -> None:
    where, params = _where(scope, fresh.a.lead_id)
    move = (
        SQL("UPDATE public.leads SET client_id = %s, first_name = 'Moved'") + where,
        (fresh.b.client_id, *params),
    )
    rename = (SQL("UPDATE public.leads SET first_name = 'Grace'") + where, params)

    with pytest.raises(InsufficientPrivilege, match=RLS_VIOLATION):
        await _run(pool, fresh.a.admin, move)
    assert _stored(superuser, "leads", "client_id", fresh.a.lead_id) == fresh.a.client_id
    assert _stored(superuser, "leads", "first_name", fresh.a.lead_id) == "Ada"

    # The same statement without the move reaches A's leads (both, unfiltered), only them.
    assert await _run(pool, fresh.a.admin, rename) == (1 if scope == "by-id" else 2)
    assert _stored(superuser, "leads", "first_name", fresh.a.lead_id) == "Grace"
    assert _stored(superuser, "leads", "first_name", fresh.b.lead_id) == "Ada"

    # And the service role may move it.
    move_one = (
        SQL("UPDATE public.leads SET client_id = %s WHERE id = %s"),
        (fresh.b.client_id, fresh.a.lead_id),
    )
    assert await _run(pool, service(), move_one) == 1
    assert _stored(superuser, "leads", "client_id", fresh.a.lead_id) == fresh.b.client_id

    # Setting the client a lead already has is no move: B's admin may.
    keep = (move_one[0], (fresh.b.client_id, fresh.a.lead_id))
    assert await _run(pool, fresh.b.admin, keep) == 1


async def test_user_cannot_delete_leads_not_even_their_clients(
    pool: AsyncConnectionPool, fresh: FreshWorld, superuser: psycopg.Connection[Any]
) -> None:
    delete = _delete("leads", fresh.a.lead_id)

    with pytest.raises(InsufficientPrivilege, match=no_privilege("leads")):
        await _run(pool, fresh.a.admin, delete)
    assert _stored(superuser, "leads", "id", fresh.a.lead_id) == fresh.a.lead_id

    assert await _run(pool, service(), delete) == 1
    assert _stored(superuser, "leads", "id", fresh.a.lead_id) == "<missing>"


# ---------------------------------------------------------------- communications


@pytest.mark.parametrize("profile", ["admin", "member"])
async def test_user_sees_only_their_clients_communications(
    pool: AsyncConnectionPool, fresh: FreshWorld, superuser: psycopg.Connection[Any], profile: str
) -> None:
    for own, other in ((fresh.a, fresh.b), (fresh.b, fresh.a)):
        actor = own.admin if profile == "admin" else own.member
        visible = await _visible(pool, actor, "communications")
        assert visible == _ids_of_client(superuser, "communications", own.client_id)
        assert len(visible) == 2
        assert other.communication_id not in visible
        assert other.communication_id in await _visible(pool, service(), "communications")


@pytest.mark.parametrize("operation", ["insert", "update", "delete"])
async def test_user_cannot_write_communications_not_even_their_clients(
    pool: AsyncConnectionPool,
    fresh: FreshWorld,
    superuser: psycopg.Connection[Any],
    operation: Operation,
) -> None:
    statement = _statement(operation, "communications", fresh.a)

    with pytest.raises(InsufficientPrivilege, match=no_privilege("communications")):
        await _run(pool, fresh.a.admin, statement)
    assert _stored(superuser, "communications", "subject", fresh.a.communication_id) is None

    assert await _run(pool, service(), statement) == 1


# ---------------------------------------------------------------- service role


@pytest.mark.parametrize("table", CORE_TABLES)
@pytest.mark.parametrize("tenant_name", ["a", "b"])
async def test_service_role_can_insert_update_and_delete_for_any_client(
    pool: AsyncConnectionPool,
    fresh: FreshWorld,
    superuser: psycopg.Connection[Any],
    table: CoreTable,
    tenant_name: str,
) -> None:
    tenant, new_id = fresh.tenant(tenant_name), uuid4()
    column = UPDATED_COLUMN[table]

    assert await _run(pool, service(), _insert(table, tenant, new_id)) == 1
    assert _stored(superuser, table, "id", new_id) == new_id

    assert await _run(pool, service(), _update(table, new_id, "by service")) == 1
    assert _stored(superuser, table, column, new_id) == "by service"

    assert await _run(pool, service(), _delete(table, new_id)) == 1
    assert _stored(superuser, table, "id", new_id) == "<missing>"


# ---------------------------------------------------------------- users without a profile


async def test_user_without_a_profile_cannot_add_or_change_leads(
    pool: AsyncConnectionPool, fresh: FreshWorld, superuser: psycopg.Connection[Any]
) -> None:
    stranger = user(uuid4())

    with pytest.raises(InsufficientPrivilege, match=RLS_VIOLATION):
        await _run(pool, stranger, _insert("leads", fresh.a, uuid4()))
    assert await _run(pool, stranger, _update("leads", fresh.a.lead_id, "Mallory")) == 0
    assert await _run(pool, stranger, _update("clients", fresh.a.client_id, "hijacked")) == 0

    assert _stored(superuser, "leads", "first_name", fresh.a.lead_id) == "Ada"
    assert _stored(superuser, "clients", "name", fresh.a.client_id) == "Client A"
    assert await _run(pool, fresh.a.member, _update("leads", fresh.a.lead_id, "Grace")) == 1


# ---------------------------------------------------------------- nothing leaks between sessions


@pytest.fixture
async def single_connection_pool(migrated_db: str) -> AsyncIterator[AsyncConnectionPool]:
    """A pool of one connection, so every session below reuses the same backend."""
    opened = await open_pool(migrated_db, min_size=1, max_size=1)
    yield opened
    await opened.close()


class _Abort(Exception):
    pass


SESSION_STATE = (
    "SELECT pg_backend_pid(), current_user::text, session_user::text,"
    " current_setting('request.jwt.claims', true), auth.uid()"
)


@pytest.mark.parametrize("ending", ["commit", "rollback"])
async def test_claims_and_role_do_not_outlive_the_tenant_session(
    single_connection_pool: AsyncConnectionPool, fresh: FreshWorld, ending: str
) -> None:
    pool = single_connection_pool

    async def session_state() -> tuple[Any, ...]:
        async with pool.connection() as conn:
            cur = await conn.execute(SESSION_STATE)
            row = await cur.fetchone()
            assert row is not None
            return tuple(row)

    async def as_user_a() -> tuple[Any, ...]:
        async with tenant_session(pool, fresh.a.admin_id) as conn:
            cur = await conn.execute(SESSION_STATE)
            row = await cur.fetchone()
            assert row is not None
            if ending == "rollback":
                raise _Abort(tuple(row))
            return tuple(row)

    if ending == "rollback":
        with pytest.raises(_Abort) as aborted:
            await as_user_a()
        inside = aborted.value.args[0]
    else:
        inside = await as_user_a()

    pid, current, login, claims, uid = inside
    assert (current, uid) == ("authenticated", fresh.a.admin_id)
    assert claims is not None
    assert str(fresh.a.admin_id) in claims
    assert login != "authenticated"

    after = await session_state()
    assert after[0] == pid  # the very connection the session used
    assert after[1] == after[2] == login
    assert after[3] in (None, "")
    assert after[4] is None


async def test_next_user_of_a_pooled_connection_sees_only_their_own_rows(
    single_connection_pool: AsyncConnectionPool, fresh: FreshWorld
) -> None:
    pool = single_connection_pool
    assert await _visible(pool, fresh.a.admin, "leads") == await _visible(
        pool, fresh.a.member, "leads"
    )
    assert fresh.a.lead_id in await _visible(pool, fresh.a.admin, "leads")

    seen_by_b = await _visible(pool, fresh.b.admin, "leads")
    assert fresh.b.lead_id in seen_by_b
    assert fresh.a.lead_id not in seen_by_b

    # Plain pool use afterwards runs as the login role again, past RLS.
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM public.leads WHERE client_id IN (%s, %s)",
            (fresh.a.client_id, fresh.b.client_id),
        )
        assert await cur.fetchone() == (4,)
