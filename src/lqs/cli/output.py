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
    return value


def print_json_lines(rows: Iterable[Any]) -> None:
    """Each row (a dataclass or a mapping) as one JSON object on its own line: ids as
    strings, times in ISO 8601, nothing else changed."""
    for row in rows:
        fields: Mapping[str, Any] = (
            dataclasses.asdict(row) if dataclasses.is_dataclass(row) else row  # type: ignore[arg-type]
        )
        typer.echo(
            json.dumps({k: _value(v) for k, v in fields.items()}, ensure_ascii=False, default=str)
        )
