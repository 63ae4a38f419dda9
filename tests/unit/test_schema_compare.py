"""Pure comparisons behind ``lqs db verify``."""

from __future__ import annotations

import copy

from lqs.db.catalog import compare_schemas, load_expected_schema
from lqs.db.verify import SEED_EXPECTED_COLUMNS, seed_problems


def test_identical_descriptions_have_no_problems() -> None:
    expected = load_expected_schema()
    assert compare_schemas(expected, copy.deepcopy(expected)) == []


def test_extra_tables_and_functions_in_the_database_are_ignored() -> None:
    expected = load_expected_schema()
    actual = copy.deepcopy(expected)
    actual["tables"]["someone_elses"] = copy.deepcopy(expected["tables"]["clients"])
    actual["functions"].append("public.someone_elses()")
    assert compare_schemas(expected, actual) == []


def test_reordered_columns_are_drift() -> None:
    expected = load_expected_schema()
    actual = copy.deepcopy(expected)
    columns = actual["tables"]["communications"]["columns"]
    columns[0], columns[1] = columns[1], columns[0]
    problems = compare_schemas(expected, actual)
    assert problems == [
        "communications: columns are out of order: expected "
        + ", ".join(c["name"] for c in expected["tables"]["communications"]["columns"])
    ]


def test_changed_policy_expression_is_drift() -> None:
    expected = load_expected_schema()
    actual = copy.deepcopy(expected)
    policy = actual["tables"]["leads"]["policies"]["Users can update leads for their client"]
    policy["with_check"] = None
    problems = compare_schemas(expected, actual)
    assert len(problems) == 1
    assert problems[0].startswith("leads: policy Users can update leads for their client changed")


def test_service_role_losing_bypassrls_is_drift() -> None:
    expected = load_expected_schema()
    actual = copy.deepcopy(expected)
    actual["roles"]["service_role"] = False
    assert compare_schemas(expected, actual) == ["role service_role lost BYPASSRLS"]


def test_seed_rows_match_exactly_or_are_named() -> None:
    good = [("communications", c, d, n) for c, d, n in SEED_EXPECTED_COLUMNS]
    assert seed_problems(good) == []
    changed = list(good)
    changed[21] = ("communications", "priority", "bigint", "YES")
    assert seed_problems(changed) == [
        "seed verification row 22: expected ('priority', 'integer', 'YES'), "
        "found ('priority', 'bigint', 'YES')"
    ]
    assert seed_problems(good[:23]) == [
        "seed verification query returned 23 rows for communications, expected 24"
    ]
