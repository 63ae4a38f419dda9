"""What the live schema looks like, read from PostgreSQL's catalogs as plain data.

``read_schema`` describes every table in ``public``: columns (in order, with types,
defaults, NOT NULL and comments), constraints, indexes, row-level security, policies and
triggers, each in PostgreSQL's own canonical text (``pg_get_indexdef`` and friends), and
what ``anon``, ``authenticated``, ``service_role`` and ``PUBLIC`` may do to each table,
column, sequence and function (from the objects' ACLs, so an extra grant is drift too).
``lqs db verify`` compares that with ``schema.json``, the same description taken from a
freshly migrated database and shipped with the package.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, cast

import psycopg

SchemaDescription = dict[str, Any]

_TABLES = """
SELECT c.oid, c.relname, c.relrowsecurity, c.relforcerowsecurity,
       obj_description(c.oid, 'pg_class')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
ORDER BY c.relname
"""

_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), col_description(a.attrelid, a.attnum)
FROM pg_attribute a
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

_CONSTRAINTS = """
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s ORDER BY conname
"""

_INDEXES = """
SELECT ic.relname, pg_get_indexdef(i.indexrelid)
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE i.indrelid = %s ORDER BY ic.relname
"""

_POLICIES = """
SELECT polname,
       CASE polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                   WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
       polpermissive,
       ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r) END
             FROM unnest(polroles) AS r ORDER BY 1),
       pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid)
FROM pg_policy WHERE polrelid = %s ORDER BY polname
"""

_TRIGGERS = """
SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger
WHERE tgrelid = %s AND NOT tgisinternal ORDER BY tgname
"""

_FUNCTIONS = """
SELECT n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname IN ('public', 'auth') AND p.prokind = 'f'
ORDER BY 1
"""

# Privileges of the three API roles and PUBLIC on the tables and sequences in ``public``
# and ``lqs``, and on the functions in ``public``; a NULL ACL means the kind's default.
_RELATION_PRIVILEGES = """
SELECT CASE c.relkind WHEN 'S' THEN 'sequence' ELSE 'table' END || ' ' || n.nspname || '.'
       || c.relname,
       g.grantee, g.privilege_type, g.is_grantable
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN LATERAL (
    SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END AS grantee,
           a.privilege_type, a.is_grantable
    FROM aclexplode(coalesce(
        c.relacl, acldefault((CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END)::"char", c.relowner)
    )) a
    WHERE a.grantee = 0 OR pg_get_userbyid(a.grantee) IN ('anon', 'authenticated', 'service_role')
) g ON true
WHERE n.nspname IN ('public', 'lqs') AND c.relkind IN ('r', 'p', 'S')
"""

_COLUMN_PRIVILEGES = """
SELECT 'column ' || n.nspname || '.' || c.relname || '.' || a.attname,
       CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(g.grantee) END,
       g.privilege_type, g.is_grantable
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL aclexplode(a.attacl) g
WHERE n.nspname IN ('public', 'lqs') AND c.relkind IN ('r', 'p')
  AND a.attnum > 0 AND NOT a.attisdropped AND a.attacl IS NOT NULL
  AND (g.grantee = 0 OR pg_get_userbyid(g.grantee) IN ('anon', 'authenticated', 'service_role'))
"""

_FUNCTION_PRIVILEGES = """
SELECT 'function ' || n.nspname || '.' || p.proname || '('
       || pg_get_function_identity_arguments(p.oid) || ')',
       g.grantee, g.privilege_type, g.is_grantable
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
LEFT JOIN LATERAL (
    SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END AS grantee,
           a.privilege_type, a.is_grantable
    FROM aclexplode(coalesce(p.proacl, acldefault('f'::"char", p.proowner))) a
    WHERE a.grantee = 0 OR pg_get_userbyid(a.grantee) IN ('anon', 'authenticated', 'service_role')
) g ON true
WHERE n.nspname = 'public' AND p.prokind = 'f'
"""

_ROLES = """
SELECT rolname, rolbypassrls FROM pg_roles
WHERE rolname IN ('anon', 'authenticated', 'service_role') ORDER BY rolname
"""


def _describe_table(cur: psycopg.Cursor[Any], oid: int) -> dict[str, Any]:
    columns = [
        {"name": n, "type": t, "not_null": nn, "default": d, "comment": c}
        for n, t, nn, d, c in cur.execute(_COLUMNS, (oid,)).fetchall()
    ]
    constraints = dict(cur.execute(_CONSTRAINTS, (oid,)).fetchall())
    indexes = dict(cur.execute(_INDEXES, (oid,)).fetchall())
    policies = {
        name: {"command": cmd, "permissive": perm, "roles": roles, "using": q, "with_check": wc}
        for name, cmd, perm, roles, q, wc in cur.execute(_POLICIES, (oid,)).fetchall()
    }
    triggers = dict(cur.execute(_TRIGGERS, (oid,)).fetchall())
    return {
        "columns": columns,
        "constraints": constraints,
        "indexes": indexes,
        "policies": policies,
        "triggers": triggers,
    }


def read_schema(conn: psycopg.Connection) -> SchemaDescription:
    """Describe the ``public`` tables, the ``public``/``auth`` functions and Supabase's roles."""
    with conn.transaction(), conn.cursor() as cur:
        # Canonical texts qualify names outside the search path: fix it so that
        # descriptions compare equal whatever the connecting role's default is.
        cur.execute("SET LOCAL search_path TO public, pg_catalog")
        tables: dict[str, Any] = {}
        for oid, name, rls, force_rls, comment in cur.execute(_TABLES).fetchall():
            tables[name] = {
                "row_level_security": rls,
                "force_row_level_security": force_rls,
                "comment": comment,
                **_describe_table(cur, oid),
            }
        functions = [row[0] for row in cur.execute(_FUNCTIONS).fetchall()]
        roles: dict[str, bool] = dict(cur.execute(_ROLES).fetchall())
        privileges = _read_privileges(cur)
    return {"tables": tables, "functions": functions, "roles": roles, "privileges": privileges}


def _read_privileges(cur: psycopg.Cursor[Any]) -> dict[str, dict[str, list[str]]]:
    """Object -> grantee -> privileges, e.g. ``{"table public.leads": {"authenticated":
    ["SELECT"]}}``; every table, sequence and function appears, with ``{}`` when none of
    the API roles holds anything on it; columns appear only where a column grant exists."""
    found: dict[str, dict[str, set[str]]] = {}
    for query in (_RELATION_PRIVILEGES, _COLUMN_PRIVILEGES, _FUNCTION_PRIVILEGES):
        for name, grantee, privilege, grantable in cur.execute(query).fetchall():
            held = found.setdefault(name, {})
            if grantee is not None:
                suffix = " WITH GRANT OPTION" if grantable else ""
                held.setdefault(grantee, set()).add(privilege + suffix)
    return {
        name: {grantee: sorted(privs) for grantee, privs in sorted(held.items())}
        for name, held in sorted(found.items())
    }


def _lqs_object(name: str, expected: SchemaDescription) -> bool:
    """Whether a privilege-bearing object (``table public.x``, ``column public.x.c``...)
    belongs to LQS: one the expected description lists, or a column of one of its tables."""
    if name in expected["privileges"]:
        return True
    kind, _, qualified = name.partition(" ")
    if kind != "column":
        return False
    schema, table, _column = qualified.split(".", 2)
    return f"table {schema}.{table}" in expected["privileges"]


def compare_privileges(expected: SchemaDescription, actual: SchemaDescription) -> list[str]:
    """Name every privilege an API role holds on an LQS object beyond what the migrations
    grant, and every one they grant that is missing (pure)."""
    problems: list[str] = []
    wanted: dict[str, dict[str, list[str]]] = expected.get("privileges", {})
    live: dict[str, dict[str, list[str]]] = actual.get("privileges", {})
    if not wanted:
        return problems
    names = sorted(set(wanted) | {n for n in live if _lqs_object(n, expected)})
    for name in names:
        if not name.startswith("column ") and name not in live:
            continue  # a missing object is reported with the schema's other problems
        want, have = wanted.get(name, {}), live.get(name, {})
        for grantee in sorted(set(want) | set(have)):
            extra = sorted(set(have.get(grantee, [])) - set(want.get(grantee, [])))
            missing = sorted(set(want.get(grantee, [])) - set(have.get(grantee, [])))
            if extra:
                problems.append(
                    f"{name}: {grantee} holds {', '.join(extra)}, which LQS does not grant "
                    f"(to take it back: {_revoke_statement(name, extra, grantee)})"
                )
            if missing:
                problems.append(f"{name}: {grantee} lacks {', '.join(missing)}")
    return problems


def _revoke_statement(name: str, privileges: list[str], grantee: str) -> str:
    kind, _, qualified = name.partition(" ")
    privs = sorted({p.split()[0] for p in privileges})
    if kind == "column":
        schema, table, column = qualified.split(".", 2)
        listed = ", ".join(f'{p} ("{column}")' for p in privs)
        return f"REVOKE {listed} ON {schema}.{table} FROM {grantee}"
    return f"REVOKE {', '.join(privs)} ON {kind.upper()} {qualified} FROM {grantee}"


def load_expected_schema() -> SchemaDescription:
    """The description shipped with the package (``lqs/db/schema.json``)."""
    text = (resources.files("lqs.db") / "schema.json").read_text(encoding="utf-8")
    return cast(SchemaDescription, json.loads(text))


def dump_schema(description: SchemaDescription) -> str:
    """Serialise a description the way ``schema.json`` is stored (stable, diffable)."""
    return json.dumps(description, indent=2, sort_keys=True) + "\n"


def _compare_keyed(
    where: str, kind: str, expected: dict[str, Any], actual: dict[str, Any]
) -> list[str]:
    problems = []
    for name, definition in expected.items():
        if name not in actual:
            problems.append(f"{where}: {kind} {name} is missing")
        elif actual[name] != definition:
            problems.append(
                f"{where}: {kind} {name} changed: expected {definition}, found {actual[name]}"
            )
    return problems


def _compare_columns(
    table: str, expected: list[dict[str, Any]], actual: list[dict[str, Any]]
) -> list[str]:
    problems = []
    actual_by_name = {c["name"]: c for c in actual}
    for column in expected:
        name = column["name"]
        found = actual_by_name.get(name)
        if found is None:
            problems.append(f"{table}.{name}: column is missing")
            continue
        for attribute in ("type", "not_null", "default", "comment"):
            if found[attribute] != column[attribute]:
                problems.append(
                    f"{table}.{name}: {attribute.replace('_', ' ')} changed: "
                    f"expected {column[attribute]!r}, found {found[attribute]!r}"
                )
    expected_names = [c["name"] for c in expected]
    extra = [c["name"] for c in actual if c["name"] not in expected_names]
    problems.extend(f"{table}.{name}: unexpected column" for name in extra)
    present = [c["name"] for c in actual if c["name"] in expected_names]
    if not extra and len(present) == len(expected_names) and present != expected_names:
        problems.append(f"{table}: columns are out of order: expected {', '.join(expected_names)}")
    return problems


def compare_schemas(expected: SchemaDescription, actual: SchemaDescription) -> list[str]:
    """Name every difference that matters, one sentence each (pure).

    Tables and functions the database has beyond the expected ones are ignored (a
    Supabase project has many); everything LQS promises must be there, as promised.
    """
    problems: list[str] = []
    for table, spec in expected["tables"].items():
        live = actual["tables"].get(table)
        if live is None:
            problems.append(f"{table}: table is missing")
            continue
        if spec["row_level_security"] and not live["row_level_security"]:
            problems.append(f"{table}: row level security is disabled")
        if spec["comment"] != live["comment"]:
            problems.append(f"{table}: table comment changed")
        problems += _compare_columns(table, spec["columns"], live["columns"])
        for kind, key in (
            ("constraint", "constraints"),
            ("index", "indexes"),
            ("policy", "policies"),
            ("trigger", "triggers"),
        ):
            problems += _compare_keyed(table, kind, spec[key], live[key])
        # An extra permissive policy widens access: as much drift as a missing one.
        problems += [
            f"{table}: unexpected policy {name}"
            for name in live["policies"]
            if name not in spec["policies"]
        ]
    problems += [
        f"function {fn} is missing" for fn in expected["functions"] if fn not in actual["functions"]
    ]
    for role, bypass in expected["roles"].items():
        if role not in actual["roles"]:
            problems.append(f"role {role} is missing")
        elif bypass and not actual["roles"][role]:
            problems.append(f"role {role} lost BYPASSRLS")
    return problems + compare_privileges(expected, actual)
