"""Listings for scripts: ``--json`` prints one JSON object per line instead of a table."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import typer

JsonOption = Annotated[
    bool, typer.Option("--json", help="One JSON object per line (for scripts), not a table")
]

QuietOption = Annotated[
    bool,
    typer.Option(
        "--quiet", "-q", help="Only the id, one a line (for scripts: id=$(lqs ... --quiet))"
    ),
]


def _value(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _value(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {k: _value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_value(v) for v in value]
    return value


def print_json_lines(rows: Iterable[Any]) -> None:
    """Each row (a dataclass or a mapping) as one JSON object on its own line: ids as
    strings, times in ISO 8601, at any depth; nothing else changed."""
    for row in rows:
        typer.echo(json.dumps(_value(row), ensure_ascii=False, default=str))
