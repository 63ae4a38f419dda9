"""``lqs leads import``: stream a CSV file into a client's leads, COPY-based.

Before any row is read the file's encoding is detected (or ``--encoding`` is checked) over
the whole file and binary files are refused (:mod:`lqs.cli.csv_files`); the delimiter is
the one the header row uses. Each row goes through ``parse_lead``; batches are stored by
``import_leads``, which isolates the rows the database refuses. Rejected rows, with their
line and reason, go to ``FILE.rejects.csv`` with formula cells neutralised.
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Annotated, Any, TextIO

import psycopg
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from lqs.cli._common import ClientSlugOption, console, database_url, fail, settings
from lqs.cli.csv_files import CsvFileError, choose_encoding, open_text, text_codec
from lqs.db.clients import get_client
from lqs.db.connection import connect_async
from lqs.db.leads import import_leads
from lqs.domain.csv_text import control_characters, detect_delimiter, neutralise_formula
from lqs.domain.leads import LEAD_FIELDS, LeadValidationError, NewLead, parse_lead

app = typer.Typer(help="Work with leads.", no_args_is_help=True)

_EXTRA = "\0extra"  # DictReader's key for cells beyond the header's width
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}
_INTERRUPTED = 130  # the shell's code for a process ended by SIGINT


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
    mapping: dict[str, str] = {}
    first_for: dict[str, str] = {}
    for column in header:
        key = _column_key(column)
        target = explicit.get(column) or (key if key in LEAD_FIELDS else f"custom.{key}")
        # csv.DictReader keeps one cell per name: a second column would silently win.
        earlier = first_for.get(target) if key else None
        if earlier == column:
            fail(f"the header names the column {column!r} twice; rename one of them")
        if earlier is not None:
            fail(
                f"the header's columns {earlier!r} and {column!r} both map to {target}; "
                "rename one, or send one elsewhere with --map COLUMN=custom.<key>"
            )
        first_for[target] = column
        mapping[column] = target
    return mapping


def _lead_data(row: dict[str, str], mapping: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {"custom": {}}
    for column, value in row.items():
        target = mapping[column]
        if target.startswith("custom."):
            if value:
                data["custom"][target.removeprefix("custom.")] = value
        elif value and not value.isspace():
            # A blank cell is a value not given: "" is no consent status, for one.
            data[target] = value
    return data


@dataclass
class _Counts:
    read: int = 0
    created: int = 0
    merged: int = 0
    already: int = 0
    rejected: int = 0
    line: int = 0  # the last line read
    committed_through: int = 0  # the last line of the last batch committed

    def kept(self) -> str:
        """What an import that stops now leaves behind, and what to do about it."""
        if not self.committed_through:
            return "nothing was imported"
        return (
            f"rows up to line {self.committed_through} are imported; run the same command "
            "again to import the rest (rows already imported are skipped)"
        )


@app.command("import")
def leads_import(
    file: Annotated[Path, typer.Argument(help="CSV file with a header row")],
    client: ClientSlugOption,
    map_: Annotated[
        list[str] | None,
        typer.Option("--map", help="COLUMN=FIELD, repeatable; FIELD may be custom.<key>"),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000)] = 1000,
    encoding: Annotated[
        str | None,
        typer.Option(
            "--encoding",
            help="The file's encoding (utf-8, cp1252, utf-16, ...); detected when not given",
        ),
    ] = None,
) -> None:
    """Import leads; rejected rows go to FILE.rejects.csv with their reason.

    The encoding is detected: UTF-8 (with or without byte-order mark), UTF-16 or UTF-32
    (byte-order mark), else Windows-1252. The delimiter (comma, semicolon or tab) is the
    one the header row uses. Re-importing a file imports nothing twice: each row's content
    hash is remembered. Ctrl-C keeps the batches already stored; run the import again to
    finish it.
    """
    counts = _Counts()
    rejects_path = file.with_name(file.name + ".rejects.csv")
    started = time.monotonic()
    try:
        try:
            forced = text_codec(encoding) if encoding is not None else None
            chosen = choose_encoding(file, forced)
            handle = open_text(file, chosen.encoding)
        except CsvFileError as exc:
            fail(str(exc))
        if chosen.note:
            console.print(chosen.note, soft_wrap=True)
        size = max(file.stat().st_size, 1)
        with handle, database_url(settings()) as url:
            reader = _reader(file, handle)
            header = list(reader.fieldnames or [])
            mapping = _mapping(header, map_ or [])
            _import(url, client, reader, mapping, handle, size, rejects_path, batch_size, counts)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: {counts.kept()}", err=True)
        raise typer.Exit(code=_INTERRUPTED) from None
    except psycopg.Error as exc:  # not a row's data (import_leads isolates those): stop
        detail = str(exc).strip().partition("\n")[0] or type(exc).__name__
        fail(f"the database refused the import: {detail}; {counts.kept()}")
    except UnicodeDecodeError as exc:  # the file changed after its encoding was checked
        fail(
            f"{file} changed while it was imported: it is no longer "
            f"{chosen.encoding.label} ({exc.reason}); {counts.kept()}"
        )
    except OSError as exc:
        fail(f"cannot read {file} after line {counts.line}: {exc.strerror or exc}; {counts.kept()}")
    elapsed = max(time.monotonic() - started, 1e-9)
    _summary(file, counts, elapsed, rejects_path)
    if not counts.read:
        console.print(
            f"{file} has a header row but no data rows: nothing to import", soft_wrap=True
        )
    elif counts.rejected == counts.read:
        fail(f"every row of {file} was rejected; see {rejects_path}")


def _reader(file: Path, handle: TextIO) -> csv.DictReader[str]:
    """A DictReader over the file in the delimiter its header row uses; the header checked."""
    first = handle.readline()
    delimiter = detect_delimiter(first)
    if delimiter != ",":
        console.print(f"delimiter: {_DELIMITER_NAMES[delimiter]} (detected from the header row)")
    lines = itertools.chain([first] if first else [], handle)
    reader = csv.DictReader(lines, restkey=_EXTRA, delimiter=delimiter)
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        fail(f"{file}: the header row is not valid CSV: {exc}")
    if header is None:
        fail(f"{file} is empty: expected a header row")
    if not header:
        fail(f"{file}: the first line is blank; expected a header row naming the columns")
    for number, name in enumerate(header, 1):
        if control_characters(name):
            fail(f"{file}: the header's column {number} contains a control character")
    return reader


@dataclass
class _Batch:
    """Rows waiting to be stored, with where they came from, and the rows rejected meanwhile."""

    leads: list[tuple[bytes, NewLead]] = field(default_factory=list)
    sources: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    rejected: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)

    def clear(self) -> None:
        self.leads.clear()
        self.sources.clear()
        self.rejected.clear()


def _import(
    url: str,
    client_slug: str,
    reader: csv.DictReader[str],
    mapping: dict[str, str],
    handle: TextIO,
    size: int,
    rejects_path: Path,
    batch_size: int,
    counts: _Counts,
) -> None:
    """Read, validate and store every row, updating ``counts`` as batches are committed."""
    header = list(reader.fieldnames or [])
    width = len(header)

    async def run() -> None:
        async with await connect_async(url) as conn:
            async with conn.transaction():
                found = await get_client(conn, client_slug)
            region = found.settings.get("default_region") or "US"
            rejects = _Rejects(rejects_path, header, reader.reader.dialect.delimiter)
            batch = _Batch()

            async def flush() -> None:
                if batch.leads:
                    async with conn.transaction():
                        outcome = await import_leads(conn, found.id, batch.leads)
                    counts.created += outcome.created
                    counts.merged += outcome.merged
                    counts.already += outcome.already_imported
                    for refused in outcome.refused:
                        line, row = batch.sources[refused.index]
                        batch.rejected.append((line, refused.reason, row))
                counts.rejected += len(batch.rejected)
                for line, reason, row in sorted(batch.rejected, key=lambda r: r[0]):
                    rejects.add(line, reason, row)
                batch.clear()
                counts.committed_through = counts.line

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
            try:
                with progress:
                    task = progress.add_task("import", total=size, rows=0, rate=0)
                    while True:
                        verdict: NewLead | str
                        try:
                            row = next(reader)
                        except StopIteration:
                            break
                        except csv.Error as exc:
                            row, verdict = {}, f"malformed CSV: {exc}"
                        else:
                            verdict = _verdict(row, width, mapping, str(region))
                        counts.read += 1
                        counts.line = reader.line_num
                        if isinstance(verdict, str):
                            batch.rejected.append((counts.line, verdict, row))
                        else:
                            batch.leads.append((verdict.content_hash(), verdict))
                            batch.sources.append((counts.line, row))
                        # Rejected rows count too: they are held until the batch is written.
                        if len(batch.leads) + len(batch.rejected) >= batch_size:
                            await flush()
                        if counts.read % 500 == 0:
                            elapsed = max(time.monotonic() - started, 1e-9)
                            progress.update(
                                task,
                                completed=handle.buffer.tell(),
                                rows=counts.read,
                                rate=int(counts.read / elapsed),
                            )
                    await flush()
                    elapsed = max(time.monotonic() - started, 1e-9)
                    progress.update(
                        task, completed=size, rows=counts.read, rate=int(counts.read / elapsed)
                    )
            finally:
                rejects.close()

    asyncio.run(run())


def _verdict(
    row: dict[str, Any], width: int, mapping: dict[str, str], region: str
) -> NewLead | str:
    """The row's lead, or why it is rejected."""
    problem = _shape_problem(row, width)
    if problem is not None:
        return problem
    try:
        return parse_lead(_lead_data(row, mapping), default_region=region)
    except LeadValidationError as exc:
        return str(exc)


def _shape_problem(row: dict[str, Any], width: int) -> str | None:
    if _EXTRA in row:
        extra = row.pop(_EXTRA)
        return f"row has {width + len(extra)} fields, the header has {width}"
    if any(value is None for value in row.values()):
        present = sum(value is not None for value in row.values())
        return f"row has {present} fields, the header has {width}"
    return None


class _Rejects:
    """FILE.rejects.csv, created on the first rejected row: line, reason, original cells.

    Written for a spreadsheet: UTF-8 with a byte-order mark (so Excel does not read it as
    its ANSI code page), the input's delimiter, every text field quoted and, following
    OWASP's CSV-injection advice, a cell that starts like a formula prefixed with ``'``.
    The leads themselves are stored as submitted.
    """

    def __init__(self, path: Path, header: list[str], delimiter: str) -> None:
        self.path = path
        self.header = header
        self.delimiter = delimiter
        self._handle: IO[str] | None = None
        self._writer: Any = None

    def add(self, line: int, reason: str, row: dict[str, Any]) -> None:
        if self._writer is None:
            try:
                self._handle = self.path.open("w", newline="", encoding="utf-8-sig")
            except OSError as exc:
                fail(f"cannot write rejected rows to {self.path}: {exc.strerror or exc}")
            self._writer = csv.writer(
                self._handle, delimiter=self.delimiter, quoting=csv.QUOTE_NONNUMERIC
            )
            self._writer.writerow(["line", "reason", *map(neutralise_formula, self.header)])
        cells = (neutralise_formula(row.get(c) or "") for c in self.header)
        self._writer.writerow([line, neutralise_formula(reason), *cells])

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
        console.print(f"rejected rows and reasons: {rejects_path}", soft_wrap=True)
