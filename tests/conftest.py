"""Fixtures for a real PostgreSQL: the embedded server, or LQS_TEST_DATABASE_URL's.

Each test module (or test, where it needs one) gets a database of its own, created
fresh and dropped afterwards, so tests never see each other's rows or schema changes.

Through a transaction pooler (CI's third pass: LQS_TEST_DATABASE_URL is PgBouncer's URL,
LQS_TEST_DIRECT_DATABASE_URL the server's own, LQS_DATABASE_POOLER=transaction), tests get
pooled URLs, while databases are created, dropped and migrated on the direct URL, as a
deployment migrates with LQS_DIRECT_DATABASE_URL; :func:`direct_url` gives a test the
same database reached directly when it needs a session (a backend to follow, LISTEN).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from psycopg import conninfo
from psycopg_pool import AsyncConnectionPool

from lqs.db.connection import connect
from lqs.db.embedded import start_embedded
from lqs.db.migrate import migrate
from lqs.db.pool import open_pool
from tests.pgbouncer import INSTALL_HINT, PgBouncer, pgbouncer_binary, start_pgbouncer

# Hypothesis's timing checks (a per-example deadline, "input generation is slow") measure
# the machine, not the code: on a shared machine running the suite in parallel workers they
# failed tests whose properties held. What it checks stays as it was.
settings.register_profile(
    "lqs", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("lqs")

DatabaseFactory = Callable[[], str]

DIRECT_URL_VARIABLE = "LQS_TEST_DIRECT_DATABASE_URL"


def _through_test_pooler(url: str) -> bool:
    """Whether ``url`` goes to LQS_TEST_DATABASE_URL's pooler (with a direct URL beside it)."""
    pooled = os.environ.get("LQS_TEST_DATABASE_URL")
    if not pooled or not os.environ.get(DIRECT_URL_VARIABLE):
        return False
    try:
        ours, theirs = conninfo.conninfo_to_dict(url), conninfo.conninfo_to_dict(pooled)
    except psycopg.ProgrammingError:
        return False
    return (ours.get("host"), ours.get("port")) == (theirs.get("host"), theirs.get("port"))


def direct_url(url: str) -> str:
    """``url``'s database on LQS_TEST_DIRECT_DATABASE_URL's server (not through the
    pooler); ``url`` itself when it does not go through the tests' pooler."""
    if not _through_test_pooler(url):
        return url
    dbname = conninfo.conninfo_to_dict(url).get("dbname")
    return conninfo.make_conninfo(os.environ[DIRECT_URL_VARIABLE], dbname=dbname)


def pooler_env(database_url: str | None) -> dict[str, str]:
    """What an ``lqs`` process given ``database_url`` must be told of the tests' pooler, as a
    deployment on Supabase's pooled URL is: its mode and the direct URL. Empty otherwise."""
    if database_url is None or not _through_test_pooler(database_url):
        return {}
    return {
        "LQS_DATABASE_POOLER": os.environ.get("LQS_DATABASE_POOLER") or "transaction",
        "LQS_DIRECT_DATABASE_URL": direct_url(database_url),
    }


@pytest.fixture(scope="session")
def admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A superuser URL on the server under test (embedded unless LQS_TEST_DATABASE_URL)."""
    configured = os.environ.get("LQS_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    server = start_embedded(tmp_path_factory.mktemp("embedded-pg"))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def direct_admin_url(admin_url: str) -> str:
    """``admin_url`` without the pooler (the same URL when the tests do not use one)."""
    return direct_url(admin_url)


def _create_database(admin: str, template: str | None = None) -> tuple[str, str]:
    """A new database (a copy of ``template``'s when given): its name and URL."""
    name = f"lqs_test_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(direct_url(admin), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copy}'.encode())
    return name, conninfo.make_conninfo(admin, dbname=name)


def migrate_directly(url: str) -> None:
    """Migrate ``url``'s database on its direct URL (migrations need a session)."""
    with connect(direct_url(url)) as conn:
        migrate(conn)


def _drop_database(admin: str, name: str) -> None:
    with psycopg.connect(direct_url(admin), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


@pytest.fixture
def make_database(admin_url: str) -> Iterator[DatabaseFactory]:
    """A factory of fresh, empty databases, all dropped when the test ends."""
    created: list[str] = []

    def factory() -> str:
        name, url = _create_database(admin_url)
        created.append(name)
        return url

    yield factory
    for name in created:
        _drop_database(admin_url, name)


@pytest.fixture
def empty_db(make_database: DatabaseFactory) -> str:
    """The URL of one fresh, never-migrated database."""
    return make_database()


# What a new Supabase project has before anything of LQS's runs (supabase/postgres's init
# scripts): its API roles, the auth service's admin role and the default privileges that
# hand every new table, sequence and function in ``public`` to all three API roles.
SUPABASE_DEFAULTS = """
DO $defaults$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        CREATE ROLE anon NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        CREATE ROLE authenticated NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'supabase_auth_admin') THEN
        CREATE ROLE supabase_auth_admin NOLOGIN NOINHERIT CREATEROLE;
    END IF;
END
$defaults$;
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;
"""


def apply_supabase_defaults(url: str) -> None:
    """Give a fresh database Supabase's roles and default privileges (before migrating)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SUPABASE_DEFAULTS.encode())


@pytest.fixture
def supabase_empty_db(make_database: DatabaseFactory) -> str:
    """A fresh database set up as a new Supabase project is, not yet migrated."""
    url = make_database()
    apply_supabase_defaults(url)
    return url


# Migrating a database from scratch takes the better part of a second; copying a migrated
# one (CREATE DATABASE ... TEMPLATE) a tenth of that. So each session migrates one database
# per shape, never connected to again (a template must have no sessions), and the fixtures
# below hand out copies of it. Tests of migrating itself use make_database and migrate.


def _migrated_template(admin: str, *, supabase: bool) -> Iterator[str]:
    name, url = _create_database(admin)
    try:
        if supabase:
            apply_supabase_defaults(direct_url(url))
        migrate_directly(url)
        yield name
    finally:
        _drop_database(admin, name)


@pytest.fixture(scope="session")
def migrated_template(admin_url: str) -> Iterator[str]:
    """The name of a database migrated once per session, only ever copied."""
    yield from _migrated_template(admin_url, supabase=False)


@pytest.fixture(scope="session")
def supabase_migrated_template(admin_url: str) -> Iterator[str]:
    """As :func:`migrated_template`, with Supabase's default privileges applied first."""
    yield from _migrated_template(admin_url, supabase=True)


@pytest.fixture
def make_migrated_database(admin_url: str, migrated_template: str) -> Iterator[DatabaseFactory]:
    """A factory of fresh, migrated databases (copies of the session's migrated one), all
    dropped when the test ends."""
    created: list[str] = []

    def factory() -> str:
        name, url = _create_database(admin_url, migrated_template)
        created.append(name)
        return url

    yield factory
    for name in created:
        _drop_database(admin_url, name)


@pytest.fixture(scope="module")
def supabase_migrated_db(admin_url: str, supabase_migrated_template: str) -> Iterator[str]:
    """A Supabase-shaped database (default privileges applied first), migrated once."""
    name, url = _create_database(admin_url, supabase_migrated_template)
    yield url
    _drop_database(admin_url, name)


@pytest.fixture(scope="module")
def migrated_db(admin_url: str, migrated_template: str) -> Iterator[str]:
    """The URL of a database migrated once for the whole module (treat its schema as read-only)."""
    name, url = _create_database(admin_url, migrated_template)
    yield url
    _drop_database(admin_url, name)


@pytest.fixture(scope="module")
async def pool(migrated_db: str) -> AsyncIterator[AsyncConnectionPool]:
    """The service's async pool on the module's migrated database."""
    opened = await open_pool(migrated_db, min_size=1, max_size=4)
    yield opened
    await opened.close()


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def pgbouncer(direct_admin_url: str) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode (two server connections per database) in front of the
    server under test; skipped, saying how to install it, when the binary is missing."""
    binary = pgbouncer_binary()
    if binary is None:
        pytest.skip(INSTALL_HINT)
    # Not under pytest's temporary directory: as root, pgbouncer runs as another user, who
    # must reach its files, and pytest's directories are private to root.
    workdir = Path(tempfile.mkdtemp(prefix="lqs-pgbouncer-"))
    bouncer = start_pgbouncer(binary, direct_admin_url, workdir)
    yield bouncer
    bouncer.stop()
    shutil.rmtree(workdir, ignore_errors=True)
