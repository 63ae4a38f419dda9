"""SQL lives in ``lqs.db``: the command line and the HTTP handlers only call it.

Every string literal (f-strings' literal parts included) in the packages below is
searched for the start of a SQL statement.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import lqs

SRC = Path(lqs.__file__).resolve().parent

WITHOUT_SQL = ("api", "cli")
"""Packages of ``lqs`` that must hold no SQL."""

_SQL = re.compile(
    r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\S+\s+SET|DELETE\s+FROM|WITH\s+\w+\s+AS\s*\("
    r"|CREATE\s+(TABLE|INDEX|POLICY|ROLE)|ALTER\s+(TABLE|ROLE|POLICY)|DROP\s+(TABLE|INDEX)"
    r"|GRANT\s.+\sTO|LISTEN\s|NOTIFY\s|pg_notify\s*\()",
    re.DOTALL,
)


def sql_in(path: Path) -> list[tuple[int, str]]:
    """(line, text) of each string literal in the file that reads as SQL, in line order."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    literals = [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]
    return sorted((line, text) for line, text in literals if _SQL.search(text))


@pytest.mark.parametrize("package", WITHOUT_SQL)
def test_package_has_no_sql_strings(package: str) -> None:
    files = sorted((SRC / package).rglob("*.py"))
    assert files, f"no Python files under lqs/{package}"

    found = [
        f"{path.relative_to(SRC.parent)}:{line}: {text.strip()[:80]!r}"
        for path in files
        for line, text in sql_in(path)
    ]

    assert found == [], "SQL belongs in lqs.db:\n" + "\n".join(found)


def test_the_scan_finds_sql_in_plain_and_formatted_strings_only(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "A = 'SELECT id FROM public.clients WHERE slug = %s'\n"
        "B = f'DELETE FROM public.leads WHERE id = {1}'\n"
        "C = 'Select the client to show'\n"
        "D = 'update the settings, then set them'\n"
        "E = 'one-click unsubscribe, with consent'\n",
        encoding="utf-8",
    )

    found = sql_in(sample)

    assert found == [
        (1, "SELECT id FROM public.clients WHERE slug = %s"),
        (2, "DELETE FROM public.leads WHERE id = "),
    ]
