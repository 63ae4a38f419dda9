"""``lqs db verify``: does the live schema still hold what the migrations promise?"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from lqs.db.catalog import compare_schemas, load_expected_schema, read_schema
from lqs.db.migrate import (
    MigrationState,
    drift_problems,
    load_migrations,
    migration_status,
    read_history,
)

# The verification query of the hand-off note that defined the communications table, verbatim.
SEED_VERIFICATION_QUERY = """
SELECT
    table_name,
    column_name,
    data_type,
    is_nullable
FROM information_schema.columns
WHERE table_name = 'communications'
    AND table_schema = 'public'
ORDER BY ordinal_position;
"""

# What the seed says that query must return: its 24 columns, in order.
SEED_EXPECTED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("id", "uuid", "NO"),
    ("lead_id", "uuid", "NO"),
    ("client_id", "uuid", "NO"),
    ("type", "character varying", "NO"),
    ("recipient", "character varying", "NO"),
    ("subject", "text", "YES"),
    ("content", "text", "YES"),
    ("status", "character varying", "NO"),
    ("provider", "character varying", "YES"),
    ("external_id", "character varying", "YES"),
    ("external_reference", "jsonb", "YES"),
    ("error_message", "text", "YES"),
    ("retry_count", "integer", "YES"),
    ("max_retries", "integer", "YES"),
    ("created_at", "timestamp with time zone", "YES"),
    ("sent_at", "timestamp with time zone", "YES"),
    ("delivered_at", "timestamp with time zone", "YES"),
    ("updated_at", "timestamp with time zone", "YES"),
    ("template_id", "character varying", "YES"),
    ("template_variables", "jsonb", "YES"),
    ("campaign_id", "character varying", "YES"),
    ("priority", "integer", "YES"),
    ("consent_status", "character varying", "YES"),
    ("compliance_notes", "text", "YES"),
)

SeedRow = tuple[str, str, str, str]


@dataclass(frozen=True)
class VerifyReport:
    """The seed query's rows and every problem found; ``ok`` when there is none."""

    seed_rows: list[SeedRow]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def run_seed_query(conn: psycopg.Connection) -> list[SeedRow]:
    """Run the seed's verification query as the seed wrote it."""
    rows = conn.execute(SEED_VERIFICATION_QUERY.encode()).fetchall()
    return [(str(t), str(c), str(d), str(n)) for t, c, d, n in rows]


def seed_problems(rows: list[SeedRow]) -> list[str]:
    """Compare the seed query's rows with the 24 the seed expects (pure)."""
    found = [(c, d, n) for _, c, d, n in rows]
    if found == list(SEED_EXPECTED_COLUMNS):
        return []
    if len(found) != len(SEED_EXPECTED_COLUMNS):
        return [
            f"seed verification query returned {len(found)} rows for communications, "
            f"expected {len(SEED_EXPECTED_COLUMNS)}"
        ]
    return [
        f"seed verification row {i}: expected {exp}, found {got}"
        for i, (exp, got) in enumerate(zip(SEED_EXPECTED_COLUMNS, found, strict=True), start=1)
        if exp != got
    ]


def verify(conn: psycopg.Connection) -> VerifyReport:
    """Check migrations (none pending, none edited or missing), the seed query and the schema."""
    # LQS's record and the Supabase CLI's (`lqs db export-supabase` files pushed), merged.
    applied = read_history(conn)
    statuses = migration_status(load_migrations(), applied)
    problems = drift_problems(statuses)
    problems += [
        f"migration {s.version:04d}_{s.name}.sql is not applied: run `lqs db migrate`"
        for s in statuses
        if s.state is MigrationState.PENDING
    ]
    rows = run_seed_query(conn)
    problems += seed_problems(rows)
    problems += compare_schemas(load_expected_schema(), read_schema(conn))
    return VerifyReport(seed_rows=rows, problems=problems)
