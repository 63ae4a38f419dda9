"""The API against what a managed PostgreSQL does to it, and its health and readiness probes.

Backends are killed for real (``pg_terminate_backend``, from an admin connection or, to hit
one exact moment, by the backend itself from a trigger), the database is made unreachable
with ``ALLOW_CONNECTIONS false``, and locks are held by other connections. No request may
get a 500: a request is retried on a fresh connection when that is safe, and what remains
is a 503 with ``Retry-After`` and the JSON error shape.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from psycopg import conninfo
from structlog.testing import capture_logs

from lqs.api.app import create_app
from lqs.api.deps import WebhookConfig
from lqs.api.readiness import ReadinessOptions
from lqs.db.clients import create_api_key, create_client
from lqs.db.migrate import load_migrations
from tests.configs import api_config
from tests.conftest import DatabaseFactory, direct_url

PUBLIC = "https://lqs.example"
"""The public base URL Twilio signs; the test client calls http://test instead."""


# ---------------------------------------------------------------------------- the server


def _dbname(url: str) -> str:
    return str(conninfo.conninfo_to_dict(url)["dbname"])


def _terminate_backends(admin_url: str, url: str) -> None:
    """Terminate every backend of ``url``'s database and wait until they are gone."""
    name = _dbname(url)
    others = "FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
    with psycopg.connect(direct_url(admin_url), autocommit=True) as conn:
        conn.execute(f"SELECT pg_terminate_backend(pid) {others}", (name,))
        while True:
            row = conn.execute(f"SELECT count(*) {others}", (name,)).fetchone()
            if row is None or row[0] == 0:
                return
            time.sleep(0.01)


@contextmanager
def _unreachable(admin_url: str, url: str) -> Iterator[None]:
    """The database refuses every connection (existing ones are terminated) inside the block."""
    with psycopg.connect(direct_url(admin_url), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{_dbname(url)}" ALLOW_CONNECTIONS false'.encode())
    try:
        _terminate_backends(admin_url, url)
        yield
    finally:
        with psycopg.connect(direct_url(admin_url), autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{_dbname(url)}" ALLOW_CONNECTIONS true'.encode())


async def _lock_waiters(url: str, at_least: int) -> None:
    """Wait until ``at_least`` backends of the database wait for a lock."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for _ in range(600):
            cur = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            row = await cur.fetchone()
            if row and row[0] >= at_least:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} backends ever waited for a lock")


# Makes an insert of a lead whose email matches the trigger's pattern kill its own backend,
# once (the sequence is not transactional, so the retry finds it spent): in the INSERT
# statement itself, or at COMMIT, where deferred constraint triggers run.
_KILL_ONCE = """
CREATE SEQUENCE public.test_kills;
CREATE FUNCTION public.test_kill_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.email LIKE TG_ARGV[0] THEN
        IF nextval('public.test_kills') = 1 THEN
            PERFORM pg_terminate_backend(pg_backend_pid());
        END IF;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER test_kill_in_statement AFTER INSERT ON public.leads
    FOR EACH ROW EXECUTE FUNCTION public.test_kill_once('die-in-statement%');
CREATE CONSTRAINT TRIGGER test_kill_at_commit AFTER INSERT ON public.leads
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION public.test_kill_once('die-at-commit%');
"""


# ---------------------------------------------------------------------------- tenants


async def _intake_key(url: str) -> str:
    slug = f"r-{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        client = await create_client(conn, slug, slug, {"default_region": "US"})
        _, key = await create_api_key(conn, client.id, "test", 1_000_000)
    return key


def _auth(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


async def _lead_count(url: str, email: str) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SELECT count(*) FROM public.leads WHERE email = %s", (email,))
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


@dataclass(frozen=True)
class SmsTenant:
    """A client with Twilio configured and SMS messages Twilio accepted (one sid each)."""

    id: UUID
    token: str
    account: str
    sids: list[str]

    def callback(self, sid: str, status: str = "delivered") -> dict[str, Any]:
        """A status callback for ``sid``, signed as Twilio signs it: request arguments."""
        path = f"/webhooks/twilio/{self.id}"
        params = {"MessageSid": sid, "MessageStatus": status, "AccountSid": self.account,
                  "From": "+15005550006", "To": "+12015550123"}  # fmt: skip
        signed = PUBLIC + path + "".join(k + v for k, v in sorted(params.items()))
        digest = hmac.new(self.token.encode(), signed.encode(), hashlib.sha1).digest()
        return {
            "url": path,
            "content": urlencode(params).encode(),
            "headers": {
                "content-type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": base64.b64encode(digest).decode(),
            },
        }


async def _sms_tenant(url: str, messages: int = 1) -> SmsTenant:
    token = f"fake-twilio-token-{uuid.uuid4().hex}"
    account = "AC" + uuid.uuid4().hex
    twilio = {"account_sid": account, "auth_token": token, "from_number": "+15005550006"}
    slug = f"sms-{uuid.uuid4().hex[:10]}"
    sids = [f"SM{uuid.uuid4().hex}" for _ in range(messages)]
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        client = await create_client(conn, slug, slug, {"delivery": {"twilio": twilio}})
        cur = await conn.execute(
            "INSERT INTO public.leads (client_id, email, phone, consent_status, status)"
            " VALUES (%s, %s, '+12015550123', 'granted', 'qualified') RETURNING id",
            (client.id, f"lead@{slug}.example"),
        )
        row = await cur.fetchone()
        assert row is not None
        for sid in sids:
            await conn.execute(
                "INSERT INTO public.communications (client_id, lead_id, type, recipient,"
                " status, provider, external_id, sent_at)"
                " VALUES (%s, %s, 'sms', '+12015550123', 'sent', 'twilio', %s, now())",
                (client.id, row[0], sid),
            )
    return SmsTenant(client.id, token, account, sids)


# ---------------------------------------------------------------------------- the app


@asynccontextmanager
async def _serve(
    app: FastAPI, *, raise_app_exceptions: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", timeout=120
        ) as http:
            yield http


def _app(url: str, **fields: Any) -> FastAPI:
    fields.setdefault("webhook", WebhookConfig(PUBLIC))
    fields.setdefault("readiness", ReadinessOptions(cache_seconds=0))
    return create_app(url, api_config(**fields))


@pytest.fixture(scope="module")
async def api(migrated_db: str) -> AsyncIterator[httpx.AsyncClient]:
    # Eight connections, all open from the start: psycopg_pool's own check alone would
    # spend 0 + 1 + 2 + 4 s of backoff on eight dead ones, past the 5 s pool timeout.
    async with _serve(
        _app(migrated_db, pool_min_size=8, pool_max_size=8, webhook_pool_max_size=2)
    ) as http:
        yield http


async def _until_answered(
    send: Callable[[], Awaitable[httpx.Response]], status: int, within: float = 30
) -> None:
    """Repeat the request until it gets ``status``; every other answer must be a 503."""
    deadline = time.monotonic() + within
    while (response := await send()).status_code != status:
        _assert_unavailable(response)
        assert time.monotonic() < deadline, "the API did not come back"
        await asyncio.sleep(0.2)


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["error"]["code"] == "database_unavailable"


# ---------------------------------------------------------------------------- dead connections


async def test_after_every_backend_is_terminated_the_next_requests_all_succeed(
    api: httpx.AsyncClient, migrated_db: str, admin_url: str
) -> None:
    key = await _intake_key(migrated_db)
    sms = await _sms_tenant(migrated_db)
    run = uuid.uuid4().hex[:8]

    _terminate_backends(admin_url, migrated_db)
    one_by_one = [
        await api.post("/v1/leads", headers=_auth(key), json={"email": f"seq-{run}-{i}@x.example"})
        for i in range(15)
    ]
    assert [r.status_code for r in one_by_one] == [201] * 15, [r.text for r in one_by_one]

    _terminate_backends(admin_url, migrated_db)
    together = await asyncio.gather(
        *(
            api.post("/v1/leads", headers=_auth(key), json={"email": f"par-{run}-{i}@x.example"})
            for i in range(15)
        ),
        api.post(**sms.callback(sms.sids[0])),
    )
    assert [r.status_code for r in together] == [201] * 15 + [200], [r.text for r in together]


async def test_under_connection_churn_no_request_gets_a_500(
    api: httpx.AsyncClient, migrated_db: str, admin_url: str
) -> None:
    key = await _intake_key(migrated_db)
    run = uuid.uuid4().hex[:8]
    churning = True
    answers: list[tuple[str, httpx.Response]] = []

    async def churn() -> None:
        nonlocal churning
        admin_direct = direct_url(admin_url)
        async with await psycopg.AsyncConnection.connect(admin_direct, autocommit=True) as admin:
            for _ in range(30):
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (_dbname(migrated_db),),
                )
                await asyncio.sleep(0.05)
        churning = False

    async def client(n: int) -> None:
        i = 0
        while churning:
            email = f"churn-{run}-{n}-{i}@x.example"
            headers = _auth(key, **{"Idempotency-Key": email})
            answers.append(
                (email, await api.post("/v1/leads", headers=headers, json={"email": email}))
            )
            i += 1

    await asyncio.gather(churn(), *(client(n) for n in range(6)))

    assert len(answers) > 20
    assert not [r.text for _, r in answers if r.status_code >= 500 and r.status_code != 503]
    retried = []
    for email, response in answers:
        if response.status_code == 503:
            _assert_unavailable(response)
            # The client does what Retry-After says, with the same Idempotency-Key.
            headers = _auth(key, **{"Idempotency-Key": email})
            response = await api.post("/v1/leads", headers=headers, json={"email": email})
            retried.append(email)
        assert response.status_code in (200, 201), response.text
    for email, _ in answers:
        assert await _lead_count(migrated_db, email) == 1, email


async def test_a_connection_lost_inside_the_transaction_is_retried_on_a_fresh_one(
    make_migrated_database: DatabaseFactory,
) -> None:
    url = make_migrated_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_KILL_ONCE.encode())
    key = await _intake_key(url)
    async with _serve(_app(url, pool_max_size=2)) as api:
        response = await api.post(
            "/v1/leads", headers=_auth(key), json={"email": "die-in-statement@x.example"}
        )
    assert response.status_code == 201, response.text
    assert await _lead_count(url, "die-in-statement@x.example") == 1
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT last_value FROM public.test_kills").fetchone() == (2,)


async def test_a_commit_that_lost_its_answer_is_retried_only_with_an_idempotency_key(
    make_migrated_database: DatabaseFactory,
) -> None:
    url = make_migrated_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_KILL_ONCE.encode())
    key = await _intake_key(url)
    async with _serve(_app(url, pool_max_size=2)) as api:
        # Without a key the first COMMIT may have happened: repeating it could store twice.
        response = await api.post(
            "/v1/leads", headers=_auth(key), json={"email": "die-at-commit-1@x.example"}
        )
        _assert_unavailable(response)
        assert await _lead_count(url, "die-at-commit-1@x.example") == 0

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT setval('public.test_kills', 1, false)")
        body = {"email": "die-at-commit-2@x.example"}
        headers = _auth(key, **{"Idempotency-Key": "commit-lost"})
        response = await api.post("/v1/leads", headers=headers, json=body)
        assert response.status_code == 201, response.text
        assert await _lead_count(url, "die-at-commit-2@x.example") == 1
        replay = await api.post("/v1/leads", headers=headers, json=body)
        assert replay.status_code == 200
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json() == response.json()


# ---------------------------------------------------------------------------- unavailable


async def test_an_unreachable_database_is_a_503_and_the_api_comes_back_on_its_own(
    make_migrated_database: DatabaseFactory, admin_url: str
) -> None:
    url = make_migrated_database()
    key = await _intake_key(url)
    sms = await _sms_tenant(url)
    app = _app(
        url,
        pool_max_size=3,
        pool_timeout=1.0,
        readiness=ReadinessOptions(require_worker=False, cache_seconds=0, timeout=0.5),
    )
    async with _serve(app) as api:
        with _unreachable(admin_url, url):
            _assert_unavailable(
                await api.post("/v1/leads", headers=_auth(key), json={"email": "a@x.example"})
            )
            _assert_unavailable(await api.post(**sms.callback(sms.sids[0])))
            health = await api.get("/healthz")
            assert (health.status_code, health.json()) == (200, {"status": "ok"})
            ready = await api.get("/readyz")
            assert ready.status_code == 503
            assert int(ready.headers["Retry-After"]) >= 1
            assert ready.json()["checks"]["database"].startswith("unreachable")
            assert [f["field"] for f in ready.json()["error"]["fields"]] == ["database"]

        # Back: both pools reconnect on their own; until they have, answers are 503s.
        await _until_answered(
            lambda: api.post("/v1/leads", headers=_auth(key), json={"email": "b@x.example"}), 201
        )
        await _until_answered(lambda: api.post(**sms.callback(sms.sids[0])), 200)
        await _until_answered(lambda: api.get("/readyz"), 200)


async def test_a_statement_timeout_is_a_503(migrated_db: str) -> None:
    key = await _intake_key(migrated_db)
    sms = await _sms_tenant(migrated_db)
    app = _app(migrated_db, pool_max_size=2, webhook_pool_max_size=1, statement_timeout=0.3)
    async with _serve(app) as api:
        async with await psycopg.AsyncConnection.connect(migrated_db) as holder:
            await holder.execute("LOCK TABLE public.leads IN EXCLUSIVE MODE")
            # A webhook only inserts its events: held up by a lock on their table.
            await holder.execute("LOCK TABLE public.provider_events IN EXCLUSIVE MODE")
            # Bounded here so that, without a statement timeout, this fails rather than hangs.
            blocked = await asyncio.wait_for(
                asyncio.gather(
                    api.post("/v1/leads", headers=_auth(key), json={"email": "t@x.example"}),
                    api.post(**sms.callback(sms.sids[0])),
                ),
                timeout=30,
            )
            for response in blocked:
                _assert_unavailable(response)
            await holder.rollback()
        ok = await api.post("/v1/leads", headers=_auth(key), json={"email": "t@x.example"})
        assert ok.status_code == 201, ok.text
        assert (await api.post(**sms.callback(sms.sids[0]))).status_code == 200


async def test_webhooks_stuck_on_a_lock_do_not_delay_intake(migrated_db: str) -> None:
    key = await _intake_key(migrated_db)
    sms = await _sms_tenant(migrated_db, messages=4)
    # Webhooks wait (no statement timeout worth speaking of) and fill their pool.
    app = _app(
        migrated_db,
        pool_max_size=2,
        webhook_pool_max_size=2,
        pool_timeout=60,
        statement_timeout=60,
    )
    async with _serve(app) as api:
        async with await psycopg.AsyncConnection.connect(migrated_db) as holder:
            # A webhook only inserts its events: held up by a lock on their table.
            await holder.execute("LOCK TABLE public.provider_events IN EXCLUSIVE MODE")
            webhooks = [asyncio.create_task(api.post(**sms.callback(sid))) for sid in sms.sids]
            await _lock_waiters(migrated_db, at_least=2)

            run = uuid.uuid4().hex[:8]
            leads = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        api.post(
                            "/v1/leads",
                            headers=_auth(key),
                            json={"email": f"lk-{run}-{i}@x.example"},
                        )
                        for i in range(5)
                    )
                ),
                timeout=30,
            )
            assert [r.status_code for r in leads] == [201] * 5
            assert not any(task.done() for task in webhooks)
            await holder.commit()
        assert [(await task).status_code for task in webhooks] == [200] * 4


# ---------------------------------------------------------------------------- errors


async def test_an_unexpected_error_is_a_json_500_without_its_details(migrated_db: str) -> None:
    app = _app(migrated_db, pool_max_size=1)

    @app.get("/test/bug")
    async def bug() -> None:
        raise RuntimeError("internal detail 7f3a")

    @app.get("/test/bad-sql")
    async def bad_sql() -> None:
        async with app.state.pool.connection() as conn:
            await conn.execute("SELECT 1 / 0 AS internal_detail_7f3a")

    async with _serve(app, raise_app_exceptions=False) as api:
        with capture_logs() as logs:
            answers = [await api.get("/test/bug"), await api.get("/test/bad-sql")]
    for response in answers:
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "internal_error"
        assert "7f3a" not in response.text
        assert "Traceback" not in response.text
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["unhandled_exception"] * 2


# ---------------------------------------------------------------------------- readiness


@pytest.mark.parametrize(
    ("beats", "problem"),
    [
        ([], "no running worker has reported a heartbeat"),
        (["now() - interval '5 minutes'"], "stale: the newest worker heartbeat is 300 s old"),
        (["now()", "stopped"], "no running worker has reported a heartbeat"),
    ],
    ids=["none", "stale", "stopped"],
)
async def test_readyz_is_503_without_a_live_worker(
    api: httpx.AsyncClient, migrated_db: str, beats: list[str], problem: str
) -> None:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("DELETE FROM public.worker_heartbeats")
        if beats:
            stopped = "now()" if "stopped" in beats else "NULL"
            conn.execute(
                "INSERT INTO public.worker_heartbeats"
                " (owner, host, pid, started_at, beat_at, stopped_at)"
                f" VALUES ('w1', 'h', 1, now() - interval '1 hour', {beats[0]}, {stopped})".encode()
            )
    response = await api.get("/readyz")
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["migrations"] == "ok"
    assert body["checks"]["worker"].startswith(problem)
    assert body["error"]["code"] == "not_ready"
    assert [f["field"] for f in body["error"]["fields"]] == ["worker"]


async def test_readyz_is_200_with_a_fresh_heartbeat_and_current_migrations(
    api: httpx.AsyncClient, migrated_db: str
) -> None:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("DELETE FROM public.worker_heartbeats")
        conn.execute(
            "INSERT INTO public.worker_heartbeats (owner, host, pid, started_at, beat_at)"
            " VALUES ('stale', 'h', 1, now(), now() - interval '1 hour'),"
            "        ('fresh', 'h', 2, now(), now() - interval '2 seconds')"
        )
    response = await api.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "migrations": "ok", "worker": "ok"},
    }


async def test_readyz_names_pending_migrations_on_an_unmigrated_database(empty_db: str) -> None:
    async with _serve(_app(empty_db, pool_max_size=1)) as api:
        response = await api.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == "ok"
    shipped = load_migrations()
    assert checks["migrations"].startswith(f"{len(shipped)} pending (0001_supabase_compat, ")
    assert checks["worker"] == "public.worker_heartbeats does not exist (migrations pending)"
    fields = [f["field"] for f in response.json()["error"]["fields"]]
    assert fields == ["migrations", "worker"]


async def test_readyz_names_edited_and_unknown_migrations(
    make_migrated_database: DatabaseFactory,
) -> None:
    url = make_migrated_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE lqs.schema_migrations SET checksum = 'edited' WHERE version = 2")
        # A newer release's migration (a rolling deploy) is fine; an unknown older one is not.
        conn.execute(
            "INSERT INTO lqs.schema_migrations (version, name, checksum, duration_ms)"
            " VALUES (9999, 'from_a_newer_release', 'x', 0), (0, 'not_shipped', 'x', 0)"
        )
    readiness = ReadinessOptions(require_worker=False, cache_seconds=0)
    async with _serve(_app(url, pool_max_size=1, readiness=readiness)) as api:
        response = await api.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {
        "database": "ok",
        "migrations": "edited after they were applied: 0002_tenants_and_leads; "
        "applied but unknown to this release: 0000_not_shipped",
        "worker": "not required",
    }


async def test_readyz_without_a_required_worker_and_its_cache(migrated_db: str) -> None:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("DELETE FROM public.worker_heartbeats")
    apart = ReadinessOptions(require_worker=False)
    async with _serve(_app(migrated_db, pool_max_size=1, readiness=apart)) as api:
        response = await api.get("/readyz")
        assert response.status_code == 200
        assert response.json()["checks"]["worker"] == "not required"

    cached = ReadinessOptions(cache_seconds=3_600)
    async with _serve(_app(migrated_db, pool_max_size=1, readiness=cached)) as api:
        assert (await api.get("/readyz")).status_code == 503
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO public.worker_heartbeats (owner, host, pid, started_at, beat_at)"
                " VALUES ('cache', 'h', 1, now(), now())"
            )
        assert (await api.get("/readyz")).status_code == 503  # the cached answer
