"""Supabase's security advisor has nothing to say about LQS's objects.

The advisor's lints are in ``tests/supabase_lints/``: LQS's own SQL for each check that
Supabase's database linter runs, one plain ``SELECT`` per file, with the lint's name, level,
categories and output columns (see its README). They run here against a database set up as
a new Supabase project is (its roles and default privileges applied before
``lqs db migrate``), in the setting the advisor runs them in, and every finding must be one
of the exceptions listed below, each a lint and one object. Every exception must also still
be found, so the lists stay exact: the seed's own objects keep the shape the seed gave them.

A second database holds one deliberately bad object per lint, and every lint must report
its object there, so a lint that cannot fire (a broken file, a setting the harness forgot)
fails instead of passing in silence.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.conftest import _create_database, _drop_database, apply_supabase_defaults

LINTS_DIR = Path(__file__).resolve().parents[1] / "supabase_lints"

# The schemas a new Supabase project exposes through its Data API (PostgREST's db_schemas).
EXPOSED_SCHEMAS = "public, graphql_public"

# Every lint file opens with this line, naming the file's own number and lint.
_HEADER = re.compile(
    r"-- LQS's implementation of Supabase advisor lint (\d{4}) (\w+) \(same check, our SQL\)\n"
)

# The columns of the advisor's rows, in its order.
OUTPUT_COLUMNS = (
    "name",
    "title",
    "level",
    "facing",
    "categories",
    "description",
    "detail",
    "remediation",
    "metadata",
    "cache_key",
)


class Lint(NamedTuple):
    """One lint: its name (the file name without its number) and its query."""

    name: str
    query: str


class Finding(NamedTuple):
    """One row a lint returned: which lint, about what, how the advisor rates it, its words."""

    lint: str
    subject: str
    level: str
    facing: str
    categories: tuple[str, ...]
    detail: str


class Expected(NamedTuple):
    """A finding the advisor is expected to report, and why it is accepted."""

    lint: str
    subject: str
    reason: str


# The seed's communications table keeps the seed's two policies and its trigger function
# exactly as the seed wrote them (migration 0003): they are the contract. Neither policy
# names a role (TO), so both apply to every role and both answer SELECT, and both call
# auth.uid() / auth.role() once per row; the function sets no search_path.
_SEED_POLICIES = '"Service role can manage all communications", ' + (
    '"Users can view communications for their client"'
)
SEED_EXCEPTIONS = (
    Expected(
        "multiple_permissive_policies",
        f"public.communications policies {_SEED_POLICIES}",
        "the seed's two policies, both without TO, both answer SELECT",
    ),
    Expected(
        "auth_rls_initplan",
        'public.communications policy "Users can view communications for their client"',
        "the seed's policy calls auth.uid() per row",
    ),
    Expected(
        "auth_rls_initplan",
        'public.communications policy "Service role can manage all communications"',
        "the seed's policy calls auth.role() per row",
    ),
    Expected(
        "function_search_path_mutable",
        "public.update_communications_updated_at()",
        "the seed's trigger function sets no search_path",
    ),
)

# Signed-in users read their own client's rows through Supabase's Data API: the policies
# pick the rows, and each of these tables is readable by `authenticated` by design. With
# pg_graphql installed (every Supabase project), the advisor warns that these tables are
# visible in the GraphQL schema to signed-in users. Any other table that `authenticated`
# can read is a finding.
TENANT_READABLE_TABLES = (
    "api_keys",
    "audit_log",
    "clients",
    "communications",
    "consent_history",
    "delivery_attempts",
    "delivery_queue",
    "erasures",
    "leads",
    "profiles",
    "provider_events",
    "push_subscriptions",
    "stats_lead_hours",
    "stats_message_hours",
    "stats_stale_hours",
    "suppressions",
    "templates",
    "webhook_rejects",
)
TENANT_READS = tuple(
    Expected(
        "pg_graphql_authenticated_table_exposed",
        f"public.{table}",
        "signed-in users read their client's rows through the Data API",
    )
    for table in TENANT_READABLE_TABLES
)

# Signed-in users may ask whether their own token is still current (migration 0017): the
# function reads the caller's own user_credentials row only and answers one boolean, and
# the API calls it as the user once per request. anon may not execute it.
SESSION_CHECK = (
    Expected(
        "authenticated_security_definer_function_executable",
        "public.lqs_session_is_current(issued_at timestamp with time zone)",
        "a user may ask whether their own token is current (revocation, migration 0017)",
    ),
)

EXPECTED = SEED_EXCEPTIONS + TENANT_READS + SESSION_CHECK


# ---------------------------------------------------------------- running the lints


def load_lints(directory: Path = LINTS_DIR) -> list[Lint]:
    """Every ``NNNN_<name>.sql`` in ``directory``: one ``SELECT`` each, final ``;`` optional.

    Raises:
        ValueError: a file does not open with the header naming its own number and lint, or
            the folder has no lint file.
    """
    lints: list[Lint] = []
    for path in sorted(directory.glob("[0-9][0-9][0-9][0-9]_*.sql")):
        text = path.read_text(encoding="utf-8")
        number, name = path.stem.split("_", 1)
        header = _HEADER.match(text)
        if not header or header.groups() != (number, name):
            raise ValueError(
                f"{path.name}: the first line must be \"-- LQS's implementation of Supabase "
                f'advisor lint {number} {name} (same check, our SQL)"'
            )
        lints.append(Lint(name, text.rstrip().removesuffix(";")))
    if not lints:
        raise ValueError(f"{directory}: no NNNN_<name>.sql lint files")
    return lints


def run_lints(url: str, lints: list[Lint]) -> list[Finding]:
    """Run each lint in its own transaction, as the advisor does; return every row.

    Raises:
        ValueError: a lint's columns are not the advisor's, or a row names another lint.
    """
    findings: list[Finding] = []
    # No prepared statements: the harness also runs through a transaction-mode pooler.
    with psycopg.connect(url, row_factory=dict_row, prepare_threshold=None) as conn:
        for lint in lints:
            with conn.transaction():
                # Every lint is schema-qualified; the exposed schemas are PostgREST's setting.
                conn.execute("SET LOCAL search_path = ''")
                conn.execute("SELECT set_config('pgrst.db_schemas', %s, true)", (EXPOSED_SCHEMAS,))
                cursor = conn.execute(lint.query.encode())
                rows = cursor.fetchall()
            columns = tuple(column.name for column in cursor.description or ())
            if columns != OUTPUT_COLUMNS:
                raise ValueError(
                    f"lint {lint.name}: columns {', '.join(columns)}; "
                    f"the advisor's are {', '.join(OUTPUT_COLUMNS)}"
                )
            for row in rows:
                if row["name"] != lint.name:
                    raise ValueError(f"lint {lint.name}: a row names lint {row['name']}")
                findings.append(
                    Finding(
                        lint.name,
                        _subject(row["metadata"]),
                        row["level"],
                        row["facing"],
                        tuple(row["categories"]),
                        row["detail"],
                    )
                )
    return findings


def _subject(metadata: dict[str, Any]) -> str:
    """What a finding is about, as narrowly as the lint's metadata says it."""
    subject = f"{metadata['schema']}.{metadata['name']}"
    if "arguments" in metadata:
        subject += f"({metadata['arguments']})"
    if "column" in metadata:
        subject += f" column {metadata['column']}"
    if "indexes" in metadata:
        subject += " indexes " + ", ".join(metadata["indexes"])
    foreign_key = metadata.get("fkey_name") or metadata.get("foreign_key")
    if foreign_key:
        subject += f" foreign key {foreign_key}"
    if "policy_name" in metadata:
        subject += f' policy "{metadata["policy_name"]}"'
    if "policies" in metadata:
        subject += " policies " + ", ".join(f'"{name}"' for name in metadata["policies"])
    return subject


def _report(findings: list[Finding] | set[Finding]) -> str:
    return "\n".join(f"  {f.lint}: {f.subject}: {f.detail}" for f in sorted(findings))


# ---------------------------------------------------------------- LQS under the advisor


@pytest.fixture(scope="module")
def lint_findings(supabase_migrated_db: str) -> list[Finding]:
    return run_lints(supabase_migrated_db, load_lints())


def test_the_advisor_finds_nothing_on_lqs_objects(lint_findings: list[Finding]) -> None:
    expected = {(e.lint, e.subject) for e in EXPECTED}

    unexpected = {f for f in lint_findings if (f.lint, f.subject) not in expected}

    assert not unexpected, (
        f"The advisor's lints report {len(unexpected)} finding(s) on LQS's objects:\n"
        + _report(unexpected)
    )


@pytest.mark.parametrize("expected", EXPECTED, ids=lambda e: f"{e.lint}:{e.subject}")
def test_every_accepted_finding_is_still_reported(
    lint_findings: list[Finding], expected: Expected
) -> None:
    found = {(f.lint, f.subject) for f in lint_findings}

    assert (expected.lint, expected.subject) in found, (
        f"{expected.lint} no longer reports {expected.subject} ({expected.reason}): "
        "restore the object (the seed's stay as the seed wrote them) or drop the entry"
    )


# ---------------------------------------------------------------- the lints can fire

# One object per lint that the lint must report, all in one database given Supabase's
# roles and default privileges (so anon and authenticated can read every new relation and
# run every new function in public) and a minimal auth schema.
BAD_OBJECTS = """
CREATE SCHEMA auth;
CREATE TABLE auth.users (id uuid PRIMARY KEY, username text UNIQUE);
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$ SELECT NULL::uuid $$;
CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $$ SELECT '{}'::jsonb $$;

CREATE TABLE public.bad_parent (id int PRIMARY KEY);
CREATE TABLE public.bad_unindexed_fk (id int PRIMARY KEY, parent_id int REFERENCES public.bad_parent);
CREATE TABLE public.bad_no_pk (id int);
CREATE TABLE public.bad_duplicate_index (id int PRIMARY KEY, code text);
CREATE INDEX bad_code_a ON public.bad_duplicate_index (code);
CREATE INDEX bad_code_b ON public.bad_duplicate_index (code);
CREATE TABLE public.bad_policy_rls_off (id int PRIMARY KEY);
CREATE POLICY "bad policy" ON public.bad_policy_rls_off USING (true);
CREATE TABLE public.bad_rls_no_policy (id int PRIMARY KEY);
ALTER TABLE public.bad_rls_no_policy ENABLE ROW LEVEL SECURITY;

CREATE TABLE public.bad_policies (id int PRIMARY KEY, owner_id uuid);
ALTER TABLE public.bad_policies ENABLE ROW LEVEL SECURITY;
CREATE POLICY "bad per-row uid" ON public.bad_policies
    FOR SELECT TO authenticated USING (owner_id = auth.uid());
CREATE POLICY "bad second read" ON public.bad_policies
    FOR SELECT TO authenticated USING (owner_id IS NULL);
CREATE POLICY "bad user_metadata" ON public.bad_policies
    FOR SELECT TO service_role USING (((SELECT auth.jwt()) -> 'user_metadata') ? 'admin');
CREATE POLICY "bad always true" ON public.bad_policies
    FOR UPDATE TO authenticated USING (true);

CREATE VIEW public.bad_definer_view AS SELECT id FROM public.bad_parent;
CREATE VIEW public.bad_users_view AS SELECT id FROM auth.users;
CREATE MATERIALIZED VIEW public.bad_matview AS SELECT 1 AS one;
CREATE FOREIGN DATA WRAPPER bad_fdw;
CREATE SERVER bad_server FOREIGN DATA WRAPPER bad_fdw;
CREATE FOREIGN TABLE public.bad_foreign (id int) SERVER bad_server;
CREATE TABLE public.bad_reg_type (id int PRIMARY KEY, handler regproc);
CREATE TABLE public.bad_auth_fkey (
    id int PRIMARY KEY,
    username text CONSTRAINT bad_auth_fkey_username REFERENCES auth.users (username)
);
CREATE TABLE public.bad_sensitive (id int PRIMARY KEY, password text);

CREATE FUNCTION public.bad_mutable_search_path() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
CREATE FUNCTION public.bad_definer(n int) RETURNS int
    LANGUAGE sql SECURITY DEFINER SET search_path = '' AS $$ SELECT n $$;
"""

# Extensions that can go in public, the first one the server has is used (0014).
_RELOCATABLE_EXTENSIONS = ("pg_trgm", "citext", "hstore", "cube", "vector")

BAD_SUBJECTS = {
    "unindexed_foreign_keys": "public.bad_unindexed_fk foreign key bad_unindexed_fk_parent_id_fkey",
    "auth_users_exposed": "public.bad_users_view",
    "auth_rls_initplan": 'public.bad_policies policy "bad per-row uid"',
    "no_primary_key": "public.bad_no_pk",
    "multiple_permissive_policies": 'public.bad_policies policies "bad per-row uid", '
    '"bad second read"',
    "policy_exists_rls_disabled": 'public.bad_policy_rls_off policies "bad policy"',
    "rls_enabled_no_policy": "public.bad_rls_no_policy",
    "duplicate_index": "public.bad_duplicate_index indexes bad_code_a, bad_code_b",
    "security_definer_view": "public.bad_definer_view",
    "function_search_path_mutable": "public.bad_mutable_search_path()",
    "rls_disabled_in_public": "public.bad_parent",
    "extension_in_public": "public.{extension}",
    "rls_references_user_metadata": 'public.bad_policies policy "bad user_metadata"',
    "materialized_view_in_api": "public.bad_matview",
    "foreign_table_in_api": "public.bad_foreign",
    "unsupported_reg_types": "public.bad_reg_type column handler",
    "fkey_to_auth_unique": "public.bad_auth_fkey foreign key bad_auth_fkey_username",
    "sensitive_columns_exposed": "public.bad_sensitive",
    "rls_policy_always_true": 'public.bad_policies policy "bad always true"',
    "pg_graphql_anon_table_exposed": "public.bad_parent",
    "pg_graphql_authenticated_table_exposed": "public.bad_parent",
    "anon_security_definer_function_executable": "public.bad_definer(n integer)",
    "authenticated_security_definer_function_executable": "public.bad_definer(n integer)",
}


# How Supabase's advisor rates each lint: its level and category (every lint faces EXTERNAL).
ADVISOR_RATINGS = {
    "unindexed_foreign_keys": ("INFO", "PERFORMANCE"),
    "auth_users_exposed": ("ERROR", "SECURITY"),
    "auth_rls_initplan": ("WARN", "PERFORMANCE"),
    "no_primary_key": ("INFO", "PERFORMANCE"),
    "multiple_permissive_policies": ("WARN", "PERFORMANCE"),
    "policy_exists_rls_disabled": ("ERROR", "SECURITY"),
    "rls_enabled_no_policy": ("INFO", "SECURITY"),
    "duplicate_index": ("WARN", "PERFORMANCE"),
    "security_definer_view": ("ERROR", "SECURITY"),
    "function_search_path_mutable": ("WARN", "SECURITY"),
    "rls_disabled_in_public": ("ERROR", "SECURITY"),
    "extension_in_public": ("WARN", "SECURITY"),
    "rls_references_user_metadata": ("ERROR", "SECURITY"),
    "materialized_view_in_api": ("WARN", "SECURITY"),
    "foreign_table_in_api": ("WARN", "SECURITY"),
    "unsupported_reg_types": ("WARN", "SECURITY"),
    "fkey_to_auth_unique": ("ERROR", "SECURITY"),
    "sensitive_columns_exposed": ("ERROR", "SECURITY"),
    "rls_policy_always_true": ("WARN", "SECURITY"),
    "pg_graphql_anon_table_exposed": ("WARN", "SECURITY"),
    "pg_graphql_authenticated_table_exposed": ("WARN", "SECURITY"),
    "anon_security_definer_function_executable": ("WARN", "SECURITY"),
    "authenticated_security_definer_function_executable": ("WARN", "SECURITY"),
}


class BadDatabase(NamedTuple):
    findings: list[Finding]
    extension: str


@pytest.fixture(scope="module")
def bad_database(admin_url: str) -> Iterator[BadDatabase]:
    name, url = _create_database(admin_url)
    try:
        apply_supabase_defaults(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(BAD_OBJECTS.encode())
            row = conn.execute(
                "SELECT name FROM pg_available_extensions WHERE name = ANY(%s) "
                "ORDER BY array_position(%s, name::text) LIMIT 1",
                (list(_RELOCATABLE_EXTENSIONS), list(_RELOCATABLE_EXTENSIONS)),
            ).fetchone()
            assert row, f"the server has none of {_RELOCATABLE_EXTENSIONS} for extension_in_public"
            extension = str(row[0])
            conn.execute(f'CREATE EXTENSION "{extension}" SCHEMA public'.encode())
        yield BadDatabase(run_lints(url, load_lints()), extension)
    finally:
        _drop_database(admin_url, name)


def test_every_lint_has_a_bad_object_and_the_advisors_rating() -> None:
    names = sorted(lint.name for lint in load_lints())

    assert names == sorted(BAD_SUBJECTS)
    assert names == sorted(ADVISOR_RATINGS)


@pytest.mark.parametrize("lint", sorted(ADVISOR_RATINGS))
def test_the_lint_rates_its_findings_as_the_advisor_does(
    bad_database: BadDatabase, lint: str
) -> None:
    level, category = ADVISOR_RATINGS[lint]

    ratings = {(f.level, f.facing, f.categories) for f in bad_database.findings if f.lint == lint}

    assert ratings == {(level, "EXTERNAL", (category,))}


@pytest.mark.parametrize("lint", sorted(BAD_SUBJECTS))
def test_the_lint_reports_its_bad_object(bad_database: BadDatabase, lint: str) -> None:
    subject = BAD_SUBJECTS[lint].format(extension=bad_database.extension)

    reported = {f.subject for f in bad_database.findings if f.lint == lint}

    assert subject in reported, f"{lint} did not report {subject}; it reported {sorted(reported)}"


def test_an_exception_excuses_one_object_not_its_lint(bad_database: BadDatabase) -> None:
    # The exceptions name objects, not lints: the same lint on another table still fails.
    expected = {(e.lint, e.subject) for e in EXPECTED}
    same_lints = {e.lint for e in EXPECTED}

    on_other_objects = [
        f
        for f in bad_database.findings
        if f.lint in same_lints and (f.lint, f.subject) not in expected
    ]

    assert {f.lint for f in on_other_objects} == same_lints


# ---------------------------------------------------------------- the loader


def test_a_lint_file_without_its_header_is_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_broken.sql").write_text("SELECT 1 AS name;\n", encoding="utf-8")

    with pytest.raises(
        ValueError, match=r"0001_broken\.sql: the first line must be .*lint 0001 broken"
    ):
        load_lints(tmp_path)


def test_a_lint_file_whose_header_names_another_lint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "0002_example.sql").write_text(
        "-- LQS's implementation of Supabase advisor lint 0001 example (same check, our SQL)\n"
        "SELECT 1 AS name\n",
        encoding="utf-8",
    )

    with pytest.raises(ValueError, match=r"0002_example\.sql: the first line must be"):
        load_lints(tmp_path)


def test_an_empty_lint_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no NNNN_<name>\.sql lint files"):
        load_lints(tmp_path)


def test_the_loader_keeps_the_query_and_drops_a_final_semicolon(tmp_path: Path) -> None:
    text = (
        "-- LQS's implementation of Supabase advisor lint 0042 example (same check, our SQL)\n"
        "SELECT 'a;b' AS name"
    )
    (tmp_path / "0042_example.sql").write_text(text + ";\n", encoding="utf-8")

    [lint] = load_lints(tmp_path)

    assert lint == Lint("example", text)


def test_a_lint_without_the_advisors_columns_is_refused(supabase_migrated_db: str) -> None:
    lint = Lint("example", "SELECT 'example' AS name, 1 AS level")

    with pytest.raises(ValueError, match=r"lint example: columns name, level; the advisor's are"):
        run_lints(supabase_migrated_db, [lint])


def test_a_lint_row_naming_another_lint_is_refused(supabase_migrated_db: str) -> None:
    columns = ", ".join(f"NULL AS {column}" for column in OUTPUT_COLUMNS[1:])
    lint = Lint("example", f"SELECT 'other' AS name, {columns}")

    with pytest.raises(ValueError, match=r"lint example: a row names lint other"):
        run_lints(supabase_migrated_db, [lint])
