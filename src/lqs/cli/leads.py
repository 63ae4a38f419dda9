"""``lqs leads import``: stream a CSV file into a client's leads, COPY-based."""

from __future__ import annotations

import asyncio
import csv
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from lqs.cli._common import console, database_url, fail, settings
from lqs.db.clients import get_client
from lqs.db.connection import connect_async
from lqs.db.leads import import_leads
from lqs.domain.leads import LEAD_FIELDS, LeadValidationError, NewLead, parse_lead

app = typer.Typer(help="Work with leads.", no_args_is_help=True)


def _column_key(name: str) -> str:
    return "_".join(name.strip().lower().replace("-", " ").split())


def _mapping(header: list[str], overrides: list[str]) -> dict[str, str]:
    """CSV column -> lead field. Columns named like a field map to it; others go to custom."""
    explicit: dict[str, str] = {}
    for item in overrides:
        column, sep, target = item.partition("=")
        if not sep or not column or not target:
            fail(f"--map {item!r}: expected COLUMN=FIELD, e.g. --map 'E-mail=email'")
        if target not in LEAD_FIELDS and not target.startswith("custom."):
            fail(f"--map {item!r}: {target!r} is not a lead field ({', '.join(LEAD_FIELDS)})")
        if column not in header:
            fail(f"--map {item!r}: the file has no column {column!r}")
        explicit[column] = target
    mapping = {}
    for column in header:
        key = _column_key(column)
        mapping[column] = explicit.get(column) or (key if key in LEAD_FIELDS else f"custom.{key}")
    return mapping


def _lead_data(row: dict[str, str], mapping: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {"custom": {}}
    for column, value in row.items():
        target = mapping[column]
        if target.startswith("custom."):
            if value:
                data["custom"][target.removeprefix("custom.")] = value
        else:
            data[target] = value
    return data


@dataclass
class _Counts:
    read: int = 0
    created: int = 0
    merged: int = 0
    already: int = 0
    rejected: int = 0


class _ByteCounter:
    """Wraps the file so progress can follow bytes read while csv streams lines."""

    def __init__(self, handle: IO[str]) -> None:
        self.handle = handle
        self.read = 0

    def __iter__(self) -> Iterator[str]:
        for line in self.handle:
            self.read += len(line)
            yield line


@app.command("import")
def leads_import(
    file: Annotated[Path, typer.Argument(help="CSV file with a header row")],
    client: Annotated[str, typer.Option("--client", help="The client's slug")],
    map_: Annotated[
        list[str] | None,
        typer.Option("--map", help="COLUMN=FIELD, repeatable; FIELD may be custom.<key>"),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000)] = 1000,
) -> None:
    """Import leads; rejected rows go to FILE.rejects.csv with their reason.

    Re-importing a file imports nothing twice: each row's content hash is remembered.
    """
    try:
        handle = file.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}")
    size = max(file.stat().st_size, 1)
    rejects_path = file.with_name(file.name + ".rejects.csv")
    counts = _Counts()
    started = time.monotonic()
    with handle, database_url(settings()) as url:
        counter = _ByteCounter(handle)
        reader = csv.DictReader(counter, restkey="\0extra")
        header = reader.fieldnames
        if not header:
            fail(f"{file} is empty: expected a header row")
        mapping = _mapping(list(header), map_ or [])
        counts = _import(url, client, reader, mapping, counter, size, rejects_path, batch_size)
    elapsed = max(time.monotonic() - started, 1e-9)
    _summary(file, counts, elapsed, rejects_path)
    if counts.read and counts.rejected == counts.read:
        fail(f"every row of {file} was rejected; see {rejects_path}")


def _import(
    url: str,
    client_slug: str,
    reader: csv.DictReader[str],
    mapping: dict[str, str],
    counter: _ByteCounter,
    size: int,
    rejects_path: Path,
    batch_size: int,
) -> _Counts:
    counts = _Counts()

    async def run() -> None:
        async with await connect_async(url) as conn:
            async with conn.transaction():
                found = await get_client(conn, client_slug)
            region = found.settings.get("default_region") or "US"
            rejects = _Rejects(rejects_path, list(reader.fieldnames or []))
            batch: list[tuple[bytes, NewLead]] = []

            async def flush() -> None:
                if not batch:
                    return
                async with conn.transaction():
                    outcome = await import_leads(conn, found.id, batch)
                counts.created += outcome.created
                counts.merged += outcome.merged
                counts.already += outcome.already_imported
                batch.clear()

            progress = Progress(
                TextColumn("[bold]importing"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TextColumn("{task.fields[rows]} rows, {task.fields[rate]} rows/s"),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            )
            started = time.monotonic()
            with progress:
                task = progress.add_task("import", total=size, rows=0, rate=0)
                while True:
                    try:
                        row = next(reader)
                    except StopIteration:
                        break
                    except csv.Error as exc:
                        counts.read += 1
                        counts.rejected += 1
                        rejects.add(reader.line_num, f"malformed CSV: {exc}", {})
                        continue
                    counts.read += 1
                    problem = _shape_problem(row, len(reader.fieldnames or []))
                    if problem is None:
                        try:
                            lead = parse_lead(_lead_data(row, mapping), default_region=str(region))
                        except LeadValidationError as exc:
                            problem = str(exc)
                    if problem is not None:
                        counts.rejected += 1
                        rejects.add(reader.line_num, problem, row)
                    else:
                        batch.append((lead.content_hash(), lead))
                        if len(batch) >= batch_size:
                            await flush()
                    if counts.read % 500 == 0:
                        elapsed = max(time.monotonic() - started, 1e-9)
                        progress.update(
                            task,
                            completed=counter.read,
                            rows=counts.read,
                            rate=int(counts.read / elapsed),
                        )
                await flush()
                elapsed = max(time.monotonic() - started, 1e-9)
                progress.update(
                    task, completed=size, rows=counts.read, rate=int(counts.read / elapsed)
                )
            rejects.close()

    asyncio.run(run())
    return counts


def _shape_problem(row: dict[str, Any], width: int) -> str | None:
    if "\0extra" in row:
        extra = row.pop("\0extra")
        return f"row has {width + len(extra)} fields, the header has {width}"
    if any(value is None for value in row.values()):
        present = sum(value is not None for value in row.values())
        return f"row has {present} fields, the header has {width}"
    return None


class _Rejects:
    """FILE.rejects.csv, created on the first rejected row: line, reason, original cells."""

    def __init__(self, path: Path, header: list[str]) -> None:
        self.path = path
        self.header = header
        self._handle: IO[str] | None = None
        self._writer: Any = None

    def add(self, line: int, reason: str, row: dict[str, Any]) -> None:
        if self._writer is None:
            try:
                self._handle = self.path.open("w", newline="", encoding="utf-8")
            except OSError as exc:
                fail(f"cannot write rejected rows to {self.path}: {exc.strerror or exc}")
            self._writer = csv.writer(self._handle)
            self._writer.writerow(["line", "reason", *self.header])
        self._writer.writerow([line, reason, *(row.get(c) or "" for c in self.header)])

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


def _summary(file: Path, counts: _Counts, elapsed: float, rejects_path: Path) -> None:
    table = Table(title=f"Import of {file.name}")
    table.add_column("rows")
    table.add_column("count", justify="right")
    for label, value in (
        ("read", counts.read),
        ("new leads", counts.created),
        ("merged into open leads", counts.merged),
        ("already imported", counts.already),
        ("rejected", counts.rejected),
    ):
        table.add_row(label, str(value))
    table.caption = f"{counts.read / elapsed:,.0f} rows/s in {elapsed:.1f} s"
    console.print(table)
    if counts.rejected:
        console.print(f"rejected rows and reasons: {rejects_path}")
