"""``lqs leads import``: stream a CSV file into a client's leads, COPY-based.

Before any row is read the file's encoding is detected (or ``--encoding`` is checked) over
the whole file and binary files are refused (:mod:`lqs.cli.csv_files`); the delimiter is
detected from the first rows (or forced with ``--delimiter``), and the header's columns
are matched to lead fields (:mod:`lqs.domain.csv_columns`). Each row goes through
``parse_lead``; batches are stored by ``import_leads``, which isolates the rows the
database refuses. Rejected rows, with their line and reason, go to a rejects file next to
the input (:class:`~lqs.cli.csv_files.RejectsFile`). ``--dry-run`` reads and checks the
whole file the same way and stores nothing.
"""

from __future__ import annotations

import asyncio
import csv
import getpass
import itertools
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import psycopg
import typer
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from lqs.cli import lead_views, subject
from lqs.cli._common import ClientSlugOption, console, database_url, fail, settings
from lqs.cli.csv_files import CsvFileError, RejectsFile, choose_encoding, open_text, text_codec
from lqs.cli.erasure import leads_erase
from lqs.db.clients import get_client
from lqs.db.connection import connect_async
from lqs.db.leads import import_leads
from lqs.domain.csv_columns import (
    ColumnMapping,
    CsvHeaderError,
    is_blank_row,
    lead_data,
    map_columns,
    parse_override,
    rejection_reason,
    row_shape_problem,
)
from lqs.domain.csv_text import (
    DELIMITER_NAMES,
    control_characters,
    delimiter_named,
    detect_delimiter,
    separator_line,
)
from lqs.domain.leads import LEAD_FIELDS, LeadValidationError, NewLead, parse_lead

if TYPE_CHECKING:
    import _csv

app = typer.Typer(help="Work with leads.", no_args_is_help=True)
app.command("erase")(leads_erase)

_INTERRUPTED = 130  # the shell's code for a process ended by SIGINT
_SAMPLE_LINES = 50  # lines the delimiter is detected from
_SAMPLE_CHARS = 64 * 1024
_SHOWN_ROWS = 5  # rows --dry-run shows parsed
_SHOWN_REASONS = 10  # reasons the summaries list one by one
_PROGRESS_EVERY = 500  # rows between progress updates


def _operator() -> str:
    """Who runs the import, for the consent history's evidence: the login name."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (a bare container)
        return f"uid {os.getuid()}"


@dataclass
class _Counts:
    read: int = 0  # data rows, blank ones included
    blank: int = 0
    created: int = 0
    merged: int = 0
    already: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    first_line: dict[str, int] = field(default_factory=dict)  # each reason's first line
    line: int = 0  # the last line read
    committed_through: int = 0  # the last line of the last batch committed

    def reject(self, line: int, reason: str) -> None:
        self.rejected[reason] += 1
        self.first_line.setdefault(reason, line)

    @property
    def rejected_total(self) -> int:
        return self.rejected.total()

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
        typer.Option(
            "--map",
            help="COLUMN=FIELD, repeatable: the column holds this lead field, or custom.<key>",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Show the column mapping, the first rows parsed and the rejects by reason; "
            "store nothing",
        ),
    ] = False,
    delimiter: Annotated[
        str | None,
        typer.Option(
            "--delimiter",
            help="The cell delimiter: , ; | or tab; detected when not given",
            show_default=False,
        ),
    ] = None,
    overwrite_rejects: Annotated[
        bool,
        typer.Option(
            "--overwrite-rejects",
            help="Replace FILE.rejects.csv instead of writing FILE.rejects-2.csv beside it",
        ),
    ] = False,
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

    Columns are matched to lead fields by name, ignoring case, spaces and punctuation, or
    by a common alias (Company, Website, Employees, Consent, Lead Source, Title, Mobile,
    E-mail, ...); other columns go to custom fields, with a warning. Blank cells are values
    not given; yes/no, true/false, 1/0, y/n and opt-in/opt-out are consent statuses.

    The encoding is detected: UTF-8 (with or without byte-order mark), UTF-16 or UTF-32
    (byte-order mark), else Windows-1252. The delimiter (comma, semicolon or tab) is
    detected from the first rows. Re-importing a file imports nothing twice: each row's
    content hash is remembered. Ctrl-C keeps the batches already stored; run the import
    again to finish it.
    """
    try:
        overrides = [parse_override(item) for item in map_ or []]
    except CsvHeaderError as exc:
        fail(str(exc))
    forced_delimiter = None
    if delimiter is not None:
        forced_delimiter = delimiter_named(delimiter)
        if forced_delimiter is None:
            fail(f"--delimiter {delimiter!r}: expected one of , ; | tab")
    counts = _Counts()
    try:
        try:
            forced = text_codec(encoding) if encoding is not None else None
            chosen = choose_encoding(file, forced)
            handle = open_text(file, chosen.encoding)
        except CsvFileError as exc:
            fail(str(exc))
        if chosen.note:
            console().print(chosen.note, soft_wrap=True)
        with handle:
            rows = _Rows.open(file, handle, forced_delimiter)
            try:
                mapping = map_columns(rows.header, overrides)
            except CsvHeaderError as exc:
                fail(f"{file}: {exc}")
            _warn_about_custom(mapping)
            if dry_run:
                _print_mapping(mapping)
            rejects = RejectsFile(file, rows.header, rows.delimiter, overwrite=overwrite_rejects)
            started = time.monotonic()
            with database_url(settings()) as url:
                try:
                    asyncio.run(
                        _read_all(
                            url,
                            client,
                            rows,
                            mapping,
                            rejects,
                            batch_size,
                            counts,
                            dry_run,
                            evidence={"import": file.name[:255], "operator": _operator()},
                        )
                    )
                finally:
                    rejects.close()
            elapsed = max(time.monotonic() - started, 1e-9)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: {counts.kept()}", err=True)
        raise typer.Exit(code=_INTERRUPTED) from None
    except psycopg.Error as exc:  # not a row's data (import_leads isolates those): stop
        detail = str(exc).strip().partition("\n")[0] or type(exc).__name__
        fail(f"the database refused the import: {detail}; {counts.kept()}")
    except CsvFileError as exc:
        fail(f"{exc}; {counts.kept()}")
    except UnicodeDecodeError as exc:  # the file changed after its encoding was checked
        fail(
            f"{file} changed while it was imported: it is no longer "
            f"{chosen.encoding.label} ({exc.reason}); {counts.kept()}"
        )
    except OSError as exc:
        fail(f"cannot read {file} after line {counts.line}: {exc.strerror or exc}; {counts.kept()}")
    _summary(file, counts, elapsed, rejects, dry_run=dry_run)
    if counts.read == counts.blank:
        console().print(
            f"{file} has a header row but no data rows: nothing to import", soft_wrap=True
        )
    elif counts.rejected_total == counts.read - counts.blank:
        where = "" if dry_run else f"; see {rejects.path}"
        fail(f"every row of {file} {'would be' if dry_run else 'was'} rejected{where}")


@dataclass
class _Rows:
    """The file's rows after its header: each with its line number, blank rows included."""

    header: list[str]
    delimiter: str
    reader: _csv.Reader
    handle: TextIO
    skipped_lines: int  # lines before the header (Excel's "sep=" line)
    size: int  # the file's bytes

    @classmethod
    def open(cls, file: Path, handle: TextIO, forced: str | None) -> _Rows:
        """The header read and checked; the delimiter forced, named or detected."""
        first = handle.readline()
        skipped = 0
        named = separator_line(first)
        if named is not None:
            skipped, first = 1, handle.readline()
        sample = [first] if first else []
        while len(sample) < _SAMPLE_LINES and sum(map(len, sample)) < _SAMPLE_CHARS:
            line = handle.readline()
            if not line:
                break
            sample.append(line)
        delimiter = forced or named or detect_delimiter("".join(sample))
        if forced is None and delimiter != ",":
            why = "the file's sep= line" if named else "detected"
            console().print(f"delimiter: {DELIMITER_NAMES[delimiter]} ({why})")
        reader = csv.reader(itertools.chain(sample, handle), delimiter=delimiter)
        try:
            header = next(reader, None)
        except csv.Error as exc:
            fail(f"{file}: the header row is not valid CSV: {exc}")
        if header is None:
            fail(f"{file} is empty: expected a header row")
        if not header:
            fail(f"{file}: the first line is blank; expected a header row naming the columns")
        for number, name in enumerate(header, 1):
            if control_characters(name):
                fail(f"{file}: the header's column {number} contains a control character")
        return cls(header, delimiter, reader, handle, skipped, file.stat().st_size)

    def __iter__(self) -> Iterator[tuple[int, list[str] | str]]:
        """(line, cells), or (line, why the row is not CSV); blank lines are skipped."""
        while True:
            try:
                cells: list[str] | str = next(self.reader)
            except StopIteration:
                return
            except csv.Error as exc:
                cells = f"malformed CSV: {exc}"
            if cells != []:
                yield self.reader.line_num + self.skipped_lines, cells

    def position(self) -> int:
        """How many bytes of the file are read."""
        return self.handle.buffer.tell()


def _warn_about_custom(mapping: ColumnMapping) -> None:
    custom = mapping.to_custom
    if not custom:
        return
    listed = ", ".join(f'"{c.name}" -> {c.target}' for c in custom)
    noun = "column goes" if len(custom) == 1 else "columns go"
    typer.echo(
        f"warning: {len(custom)} {noun} to custom fields, not lead fields: {listed}; "
        "if one is a lead field, say which with --map 'COLUMN=FIELD'",
        err=True,
    )


_HOW = {
    "name": "its name",
    "alias": "alias",
    "--map": "--map",
    "custom": "no lead field: custom",
}


def _print_mapping(mapping: ColumnMapping) -> None:
    table = Table(title="Columns")
    table.add_column("#", justify="right")
    table.add_column("column")
    table.add_column("field")
    table.add_column("by")
    for column in mapping.columns:
        table.add_row(str(column.number), column.name, column.target, _HOW[column.how])
    unnamed = mapping.width - mapping.named_width
    if unnamed:
        first = mapping.named_width + 1
        which = f"column {first} has" if unnamed == 1 else f"columns {first}-{mapping.width} have"
        table.caption = f"{which} no name: ignored (a row with a value there is rejected)"
    console().print(table)


@dataclass
class _Batch:
    """Rows waiting to be stored, with where they came from, and the rows rejected meanwhile."""

    leads: list[tuple[bytes, NewLead]] = field(default_factory=list)
    sources: list[tuple[int, list[str]]] = field(default_factory=list)
    rejected: list[tuple[int, str, list[str]]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.leads) + len(self.rejected)

    def clear(self) -> None:
        self.leads.clear()
        self.sources.clear()
        self.rejected.clear()


async def _read_all(
    url: str,
    client_slug: str,
    rows: _Rows,
    mapping: ColumnMapping,
    rejects: RejectsFile,
    batch_size: int,
    counts: _Counts,
    dry_run: bool,
    *,
    evidence: dict[str, str],
) -> None:
    """Read and check every row; store them in batches (not with ``dry_run``), updating
    ``counts`` as batches are committed. The consent rows change is recorded with
    ``evidence`` (the file and the operator)."""
    async with await connect_async(url) as conn:
        async with conn.transaction():
            found = await get_client(conn, client_slug)
        region = str(found.settings.get("default_region") or "US")
        batch = _Batch()
        shown: list[tuple[int, NewLead | str]] = []

        async def flush() -> None:
            if dry_run:
                for line, reason, _ in batch.rejected:
                    counts.reject(line, reason)
                batch.clear()
                return
            # The rejected rows are written before the batch commits: a rejects file that
            # cannot be written stops the import with this batch not stored.
            outcome = None
            async with conn.transaction():
                if batch.leads:
                    outcome = await import_leads(conn, found.id, batch.leads, evidence=evidence)
                    for refused in outcome.refused:
                        line, cells = batch.sources[refused.index]
                        batch.rejected.append((line, refused.reason, cells))
                for line, reason, cells in sorted(batch.rejected, key=lambda r: r[0]):
                    rejects.add(line, reason, cells)
            if outcome is not None:
                counts.created += outcome.created
                counts.merged += outcome.merged
                counts.already += outcome.already_imported
            for line, reason, _ in batch.rejected:
                counts.reject(line, reason)
            batch.clear()
            counts.committed_through = counts.line

        size = max(rows.size, 1)
        with _progress(dry_run) as progress:
            task = progress.add_task("rows", total=size, rows=0, rate=0)
            started = time.monotonic()

            def report(done: int) -> None:
                rate = int(counts.read / max(time.monotonic() - started, 1e-9))
                progress.update(task, completed=done, rows=counts.read, rate=rate)

            for line, cells in rows:
                counts.read += 1
                counts.line = line
                if not isinstance(cells, str) and is_blank_row(cells):
                    counts.blank += 1
                    continue
                verdict = cells if isinstance(cells, str) else _verdict(cells, mapping, region)
                if len(shown) < _SHOWN_ROWS:
                    shown.append((line, verdict))
                if isinstance(verdict, str):
                    batch.rejected.append((line, verdict, [] if isinstance(cells, str) else cells))
                else:
                    assert not isinstance(cells, str)
                    batch.leads.append((verdict.content_hash(), verdict))
                    batch.sources.append((line, cells))
                # Rejected rows count too: they are held until the batch is written.
                if len(batch) >= batch_size:
                    await flush()
                if counts.read % _PROGRESS_EVERY == 0:
                    report(rows.position())
            await flush()
            report(size)
        if dry_run:
            _print_parsed(shown, mapping)


def _progress(dry_run: bool) -> Progress:
    return Progress(
        TextColumn("[bold]checking" if dry_run else "[bold]importing"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[rows]:,} rows, {task.fields[rate]:,} rows/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console(),
        transient=False,
    )


def _verdict(cells: list[str], mapping: ColumnMapping, region: str) -> NewLead | str:
    """The row's lead, or why it is rejected."""
    problem = row_shape_problem(cells, mapping)
    if problem is not None:
        return problem
    try:
        return parse_lead(lead_data(cells, mapping), default_region=region)
    except LeadValidationError as exc:
        return rejection_reason(exc)


def _print_parsed(shown: list[tuple[int, NewLead | str]], mapping: ColumnMapping) -> None:
    """The first rows as they would be stored: one column per row, one line per field."""
    if not shown:
        return
    leads = [v for _, v in shown if not isinstance(v, str)]
    names = [n for n in LEAD_FIELDS if any(getattr(lead, n) is not None for lead in leads)]
    custom = [c.target.removeprefix("custom.") for c in mapping.columns if c.how != "name"]
    custom = [key for key in custom if any(key in lead.custom for lead in leads)]
    table = Table(title=f"The first {len(shown)} rows, parsed")
    table.add_column("field", no_wrap=True)
    for line, _ in shown:
        table.add_column(f"line {line}", overflow="fold")
    rejected = [v if isinstance(v, str) else "" for _, v in shown]
    if any(rejected):
        table.add_row("[bold]rejected", *rejected)
    for name in names:
        table.add_row(name, *(_shown(v, name) for _, v in shown))
    for key in custom:
        table.add_row(
            f"custom.{key}",
            *("" if isinstance(v, str) else str(v.custom.get(key, "")) for _, v in shown),
        )
    console().print(table)


def _shown(verdict: NewLead | str, name: str) -> str:
    if isinstance(verdict, str):
        return ""
    value = getattr(verdict, name)
    return "" if value is None else str(value)


def _summary(
    file: Path, counts: _Counts, elapsed: float, rejects: RejectsFile, *, dry_run: bool
) -> None:
    table = Table(title=f"{'Dry run' if dry_run else 'Import'} of {file.name}")
    table.add_column("rows")
    table.add_column("count", justify="right")
    stored = counts.read - counts.blank - counts.rejected_total
    if dry_run:
        outcomes = [("read", counts.read), ("would be imported", stored)]
    else:
        outcomes = [
            ("read", counts.read),
            ("new leads", counts.created),
            ("merged into existing leads", counts.merged),
            ("already imported", counts.already),
        ]
    if counts.blank:
        outcomes.append(("blank, skipped", counts.blank))
    outcomes.append(("rejected", counts.rejected_total))
    for label, value in outcomes:
        table.add_row(label, f"{value:,}")
    table.caption = f"{counts.read / elapsed:,.0f} rows/s in {elapsed:.1f} s"
    console().print(table)
    if counts.rejected:
        _print_reasons(counts)
    if dry_run:
        console().print(
            "dry run: nothing was stored and no rejects file was written; rows the database "
            "itself refuses show only in a real import",
            soft_wrap=True,
        )
    elif rejects.path is not None:
        console().print(f"rejected rows and reasons: {rejects.path}", soft_wrap=True)
        if rejects.path != rejects.first_choice:
            console().print(
                f"({rejects.first_choice.name}, from an earlier import, is kept; "
                "--overwrite-rejects replaces it)",
                soft_wrap=True,
            )


def _print_reasons(counts: _Counts) -> None:
    table = Table(title="Rejected rows by reason")
    table.add_column("rows", justify="right")
    table.add_column("reason", overflow="fold")
    table.add_column("first line", justify="right")
    ranked = counts.rejected.most_common()
    for reason, number in ranked[:_SHOWN_REASONS]:
        table.add_row(f"{number:,}", reason, str(counts.first_line[reason]))
    others = ranked[_SHOWN_REASONS:]
    if others:
        table.add_row(f"{sum(n for _, n in others):,}", f"{len(others):,} other reasons", "")
    console().print(table)


# list, show, consent and reprocess: lead_views.py; export-subject: subject.py
app.command("list")(lead_views.leads_list)
app.command("show")(lead_views.leads_show)
app.command("consent")(lead_views.leads_consent)
app.command("reprocess")(lead_views.leads_reprocess)
app.command("export-subject")(subject.leads_export_subject)
