"""Every migration from 0009 on takes back what Supabase's default privileges hand out.

On Supabase, each table, view, sequence and function created in ``public`` is born with ALL
for ``anon``, ``authenticated`` and ``service_role``; a migration that creates one must
``REVOKE ALL`` on it from those roles before granting what it means. ``lqs db verify`` on a
Supabase-shaped database catches a forgotten revoke too (tests/integration/test_verify.py);
this check names the migration and the object before any database is involved.
"""

from __future__ import annotations

import re

import pytest

from lqs.db.migrate import Migration, load_migrations

FIRST_WITH_REVOKES = 9

_CREATED = re.compile(
    r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(?P<kind>TABLE|VIEW|SEQUENCE|FUNCTION)\s+"
    r"(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>(?:public\.)?[a-z_][a-z0-9_]*)",
    re.IGNORECASE,
)
_IDENTITY = re.compile(r"\bGENERATED\s+(?:ALWAYS|BY\s+DEFAULT)\s+AS\s+IDENTITY", re.IGNORECASE)


def created_objects(sql: str) -> list[tuple[str, str]]:
    """(kind, qualified name) of every table, view, sequence and function ``sql`` creates."""
    found = []
    for match in _CREATED.finditer(sql):
        name = match["name"].lower()
        found.append((match["kind"].upper(), name if "." in name else f"public.{name}"))
    return found


def revoked_from_api_roles(sql: str, kind: str, name: str) -> bool:
    """Whether ``sql`` has a ``REVOKE ALL ON <kind> ... <name> ... FROM ... anon,
    authenticated, service_role`` statement (functions: and PUBLIC)."""
    roles = ["anon", "authenticated", "service_role"] + (["public"] if kind == "FUNCTION" else [])
    short = name.removeprefix("public.")
    uncommented = re.sub(r"--[^\n]*", "", sql)  # a statement may follow a comment line
    for statement in uncommented.split(";"):
        text = " ".join(statement.lower().split())
        if not text.startswith(f"revoke all on {kind.lower()}"):
            continue
        on, _, grantees = text.partition(" from ")
        if not re.search(rf"(?<![a-z0-9_.])(public\.)?{re.escape(short)}\b", on):
            continue
        if all(re.search(rf"\b{role}\b", grantees) for role in roles):
            return True
    return False


def problems(migration: Migration) -> list[str]:
    """One sentence per object the migration creates without revoking Supabase's grants."""
    found = [
        f"{migration.filename} creates {kind.lower()} {name} but does not REVOKE ALL on it "
        "from anon, authenticated, service_role" + (" and PUBLIC" if kind == "FUNCTION" else "")
        for kind, name in created_objects(migration.sql)
        if not revoked_from_api_roles(migration.sql, kind, name)
    ]
    if _IDENTITY.search(migration.sql) and "revoke all on sequence" not in migration.sql.lower():
        found.append(
            f"{migration.filename} creates an identity column but revokes nothing on its sequence"
        )
    return found


@pytest.mark.parametrize(
    "migration",
    [m for m in load_migrations() if m.version >= FIRST_WITH_REVOKES],
    ids=lambda m: m.filename,
)
def test_each_migration_revokes_what_supabase_grants_by_default(migration: Migration) -> None:
    assert problems(migration) == []


def test_the_check_catches_a_forgotten_revoke() -> None:
    bad = Migration(
        99,
        "careless",
        "CREATE TABLE public.notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);\n"
        "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1';\n"
        "REVOKE ALL ON TABLE public.notes FROM anon, authenticated;\n"
        "REVOKE ALL ON FUNCTION public.f() FROM anon, authenticated, service_role;\n"
        "GRANT SELECT ON public.notes TO authenticated;\n",
    )
    assert problems(bad) == [
        "0099_careless.sql creates table public.notes but does not REVOKE ALL on it from "
        "anon, authenticated, service_role",
        "0099_careless.sql creates function public.f but does not REVOKE ALL on it from "
        "anon, authenticated, service_role and PUBLIC",
        "0099_careless.sql creates an identity column but revokes nothing on its sequence",
    ]


def test_the_check_accepts_a_careful_migration() -> None:
    good = Migration(
        99,
        "careful",
        "CREATE TABLE public.notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);\n"
        "CREATE OR REPLACE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1';\n"
        "REVOKE ALL ON TABLE public.notes, public.other\n"
        "    FROM PUBLIC, anon, authenticated, service_role;\n"
        "REVOKE ALL ON SEQUENCE public.notes_id_seq FROM anon, authenticated, service_role;\n"
        "REVOKE ALL ON FUNCTION public.f() FROM PUBLIC, anon, authenticated, service_role;\n",
    )
    assert problems(good) == []
