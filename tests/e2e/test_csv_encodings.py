"""``lqs leads import`` on files as spreadsheets write them: Excel's encodings and delimiters,
and files that are not CSV text at all."""

from __future__ import annotations

import codecs
import csv
import errno
import io
import random
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import psycopg
import pytest

from tests.e2e.conftest import run_lqs

PEOPLE = [
    ("muller@corp.example", "Jürgen", "Müller", "Café € Ltd"),
    ("oconnor@corp.example", "Siobhán", "O’Connor", "Œuvre — Paris"),
    ("zoe@corp.example", "Zoë", "Ångström", "Façade “Quotes” Inc"),
]
HEADER = ("Email", "First Name", "Last Name", "Company Name")


def _client(url: str) -> None:
    result = run_lqs(url, "clients", "create", "Importer", "--slug", "importer", "--region", "DE")
    assert result.returncode == 0, result.stderr


def _text(delimiter: str) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter)
    writer.writerow(HEADER)
    writer.writerows(PEOPLE)
    return buffer.getvalue()


def _stored(url: str) -> list[tuple[str, str, str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            b"SELECT email, first_name, last_name, company_name FROM public.leads ORDER BY email"
        ).fetchall()
    return [tuple(row) for row in rows]


def _import(url: str, path: Path, *extra: str) -> tuple[int, str, str]:
    result = run_lqs(url, "leads", "import", str(path), "--client", "importer", *extra)
    assert "Traceback" not in result.stderr
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("data", "says"),
    [
        # Excel's "CSV" on a Western-European Windows: Windows-1252, comma.
        (_text(",").encode("cp1252"), ["encoding: Windows-1252"]),
        # Excel's "CSV UTF-8": a byte-order mark; nothing to say.
        (codecs.BOM_UTF8 + _text(",").encode(), []),
        # Excel's "Unicode text": UTF-16 LE with a byte-order mark, tab-separated.
        (
            codecs.BOM_UTF16_LE + _text("\t").encode("utf-16-le"),
            ["encoding: UTF-16 LE with byte-order mark", "delimiter: tab"],
        ),
        (
            codecs.BOM_UTF16_BE + _text("\t").encode("utf-16-be"),
            ["encoding: UTF-16 BE with byte-order mark", "delimiter: tab"],
        ),
        # Excel's "CSV" where the decimal separator is a comma (German, French): semicolons.
        (_text(";").encode("cp1252"), ["encoding: Windows-1252", "delimiter: semicolon"]),
    ],
    ids=["cp1252", "utf-8-bom", "utf-16-le", "utf-16-be", "cp1252-semicolon"],
)
def test_spreadsheet_exports_import_with_every_character_intact(
    pipeline_db: str, tmp_path: Path, data: bytes, says: list[str]
) -> None:
    _client(pipeline_db)
    source = tmp_path / "export.csv"
    source.write_bytes(data)

    code, out, err = _import(pipeline_db, source)

    assert code == 0, err
    for line in says:
        assert line in out
    if not says:
        assert "encoding:" not in out
    assert _stored(pipeline_db) == sorted(PEOPLE)


def test_rejected_rows_of_a_windows_1252_file_are_written_as_utf8_for_excel(
    pipeline_db: str, tmp_path: Path
) -> None:
    _client(pipeline_db)
    source = tmp_path / "export.csv"
    source.write_bytes("Email,Last Name\nnot-an-email,Müller €\n".encode("cp1252"))

    code, _, err = _import(pipeline_db, source)

    assert code == 1  # every row was rejected
    assert "every row" in err
    written = (tmp_path / "export.csv.rejects.csv").read_bytes()
    assert written.startswith(codecs.BOM_UTF8)
    assert "Müller €" in written.decode("utf-8-sig")


def _xlsx() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as book:
        book.writestr("[Content_Types].xml", "<Types/>")
        book.writestr("xl/worksheets/sheet1.xml", "<row><c>a@b.example</c></row>" * 40)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_xlsx(), "is a zip archive (an .xlsx or .ods workbook is one), not CSV text"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64), "is a PNG image, not CSV text"),
        (random.Random(7).randbytes(8192), "is not a text file"),
    ],
    ids=["xlsx", "png", "random-bytes"],
)
def test_binary_files_are_refused_before_anything_is_imported(
    pipeline_db: str, tmp_path: Path, data: bytes, message: str
) -> None:
    _client(pipeline_db)
    source = tmp_path / "leads.csv"
    source.write_bytes(data)

    code, _, err = _import(pipeline_db, source)

    assert code == 1
    assert err.startswith(f"error: {source} ")
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert _stored(pipeline_db) == []
    assert not (tmp_path / "leads.csv.rejects.csv").exists()


def test_a_file_in_another_code_page_asks_for_encoding_and_imports_with_it(
    pipeline_db: str, tmp_path: Path
) -> None:
    _client(pipeline_db)
    source = tmp_path / "leads.csv"
    # 0x8D is undefined in Windows-1252 (it is "Ќ" in Windows-1251, Cyrillic).
    source.write_bytes(b"Email,Last Name\na@b.example,\x8d\xee\xeb\n")

    code, _, err = _import(pipeline_db, source)

    assert code == 1
    assert "neither UTF-8" in err
    assert "line 2" in err
    assert "--encoding" in err

    code, out, err = _import(pipeline_db, source, "--encoding", "cp1251")

    assert code == 0, err
    assert "encoding:" not in out  # forced, not detected
    with psycopg.connect(pipeline_db) as conn:
        row = conn.execute(b"SELECT last_name FROM public.leads").fetchone()
    assert row == ("Ќол",)


def test_an_unknown_encoding_is_a_cli_error(pipeline_db: str, tmp_path: Path) -> None:
    source = tmp_path / "leads.csv"
    source.write_text("email\na@b.example\n")

    code, _, err = _import(pipeline_db, source, "--encoding", "klingon")

    assert code == 1
    assert err.strip() == (
        "error: --encoding 'klingon': not a text encoding Python knows; try utf-8, cp1252, "
        "latin-1, utf-16 or another codec name from the codecs module"
    )


def test_a_file_that_does_not_decode_in_the_forced_encoding_names_line_and_offset(
    pipeline_db: str, tmp_path: Path
) -> None:
    _client(pipeline_db)
    source = tmp_path / "leads.csv"
    source.write_bytes(b"email,name\r\na@b.example,Ann\r\nc@d.example,M\xfcller\r\n")

    code, _, err = _import(pipeline_db, source, "--encoding", "utf-8")

    assert code == 1
    assert err.strip() == (
        f"error: {source} is not valid UTF-8: invalid start byte at byte offset 42 "
        "(0xFC, line 3); check the file's encoding and --encoding"
    )
    assert _stored(pipeline_db) == []


class _FailingRead(io.RawIOBase):
    """A file whose disk fails after ``good`` bytes."""

    def __init__(self, data: bytes, good: int) -> None:
        self.data = data
        self.good = good
        self.position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.position >= self.good:
            raise OSError(errno.EIO, "Input/output error")
        chunk = self.data[self.position : min(self.good, self.position + len(buffer))]
        buffer[: len(chunk)] = chunk
        self.position += len(chunk)
        return len(chunk)


def _rows(count: int) -> bytes:
    return ("email\n" + "".join(f"p{i}@corp.example\n" for i in range(count))).encode()


@pytest.mark.parametrize(
    ("opened", "message"),
    [
        # The file was rewritten in another encoding after its encoding was checked.
        (
            lambda path: io.TextIOWrapper(
                io.BytesIO(_rows(3000) + "Müller@corp.example\n".encode("cp1252")),
                encoding="utf-8",
                newline="",
            ),
            "changed while it was imported: it is no longer UTF-8 (invalid start byte)",
        ),
        (
            lambda path: io.TextIOWrapper(
                io.BufferedReader(_FailingRead(_rows(5000), 60_000), 8192),
                encoding="utf-8",
                newline="",
            ),
            "cannot read",
        ),
    ],
    ids=["re-encoded", "read-error"],
)
def test_a_file_that_fails_while_it_is_read_stops_the_import_cleanly(
    pipeline_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    opened: Callable[[Path], TextIO],
    message: str,
) -> None:
    from typer.testing import CliRunner

    from lqs.cli import app
    from lqs.cli import leads as leads_cli

    _client(pipeline_db)
    source = tmp_path / "leads.csv"
    source.write_bytes(_rows(5000))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(leads_cli, "open_text", lambda path, encoding: opened(path))

    result = CliRunner().invoke(
        app,
        ["leads", "import", str(source), "--client", "importer", "--batch-size", "10"],
        env={"LQS_DATABASE_URL": pipeline_db},
    )

    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert message in result.output
    assert "rows up to line" in result.output
