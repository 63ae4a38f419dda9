"""Choosing a CSV file's encoding from its bytes, and refusing what is not CSV text."""

from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path

import pytest

from lqs.cli.csv_files import CsvFileError, choose_encoding, open_text, text_codec
from lqs.domain.csv_text import CP1252, UTF8, TextEncoding

ROWS = "email,name,city\na@corp.example,Müller,Köln\nb@corp.example,Café € Ltd,Zürich\n"


def _file(tmp_path: Path, data: bytes, name: str = "leads.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _read(path: Path, encoding: TextEncoding) -> str:
    with open_text(path, encoding) as handle:
        return handle.read()


def test_utf8_is_read_as_utf8_without_a_note(tmp_path: Path) -> None:
    path = _file(tmp_path, ROWS.encode())
    chosen = choose_encoding(path)
    assert chosen.encoding == UTF8
    assert chosen.note is None
    assert _read(path, chosen.encoding) == ROWS


def test_the_utf8_byte_order_mark_is_skipped(tmp_path: Path) -> None:
    path = _file(tmp_path, b"\xef\xbb\xbf" + ROWS.encode())
    chosen = choose_encoding(path)
    assert chosen.encoding == TextEncoding("utf-8", 3)
    assert chosen.note is None
    assert _read(path, chosen.encoding) == ROWS


def test_a_file_that_is_not_utf8_is_read_as_windows_1252_and_says_so(tmp_path: Path) -> None:
    path = _file(tmp_path, ROWS.encode("cp1252"))
    chosen = choose_encoding(path)
    assert chosen.encoding == CP1252
    assert chosen.note is not None
    assert "Windows-1252" in chosen.note
    assert "byte offset 32" in chosen.note
    assert "line 2" in chosen.note
    assert "--encoding" in chosen.note
    assert _read(path, chosen.encoding) == ROWS


def test_a_non_utf8_byte_after_the_first_chunk_is_found(tmp_path: Path) -> None:
    # Two mebibytes of UTF-8 (over two read chunks), then one Windows-1252 "é".
    body = "".join(f"p{i}@corp.example,Name {i}\n" for i in range(80_000))
    path = _file(tmp_path, ("email,name\n" + body).encode() + "Tür,é\n".encode("cp1252"))
    chosen = choose_encoding(path)
    assert chosen.encoding == CP1252
    assert chosen.note is not None
    assert "line 80002" in chosen.note


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_with_a_byte_order_mark(tmp_path: Path, codec: str) -> None:
    text = ROWS.replace(",", "\t")
    bom = b"\xff\xfe" if codec.endswith("le") else b"\xfe\xff"
    path = _file(tmp_path, bom + text.encode(codec))
    chosen = choose_encoding(path)
    assert chosen.encoding == TextEncoding(codec, 2)
    assert chosen.note is not None
    assert "UTF-16" in chosen.note
    assert _read(path, chosen.encoding) == text


def test_utf16_without_a_byte_order_mark(tmp_path: Path) -> None:
    path = _file(tmp_path, ROWS.encode("utf-16-le"))
    assert choose_encoding(path).encoding == TextEncoding("utf-16-le")


def test_utf16_that_does_not_decode_names_the_offset(tmp_path: Path) -> None:
    # A lone high surrogate, then ASCII: not UTF-16.
    data = b"\xff\xfe" + "email\na@b.example\n".encode("utf-16-le") + b"\x00\xd8a\x00"
    path = _file(tmp_path, data)
    with pytest.raises(CsvFileError, match=r"UTF-16 LE byte-order mark .* offset 38 .*line 3"):
        choose_encoding(path)


def test_bytes_undefined_in_windows_1252_are_refused_with_a_hint(tmp_path: Path) -> None:
    path = _file(tmp_path, b"email,name\na@b.example,\x81\n")
    with pytest.raises(CsvFileError) as caught:
        choose_encoding(path)
    message = str(caught.value)
    assert "neither UTF-8" in message
    assert "nor Windows-1252" in message
    assert "0x81" in message
    assert "offset 23" in message
    assert "--encoding" in message


def test_a_forced_encoding_is_used(tmp_path: Path) -> None:
    path = _file(tmp_path, ROWS.encode("cp1252"))
    chosen = choose_encoding(path, text_codec("latin-1"))
    assert chosen.encoding == TextEncoding("iso8859-1")
    assert chosen.note is None


def test_a_forced_encoding_skips_its_own_byte_order_mark(tmp_path: Path) -> None:
    path = _file(tmp_path, b"\xef\xbb\xbf" + ROWS.encode())
    chosen = choose_encoding(path, text_codec("UTF8"))
    assert chosen.encoding == TextEncoding("utf-8", 3)


def test_a_file_that_does_not_decode_in_the_forced_encoding_names_line_and_offset(
    tmp_path: Path,
) -> None:
    path = _file(tmp_path, ROWS.encode("cp1252"))
    with pytest.raises(CsvFileError) as caught:
        choose_encoding(path, text_codec("utf-8"))
    message = str(caught.value)
    assert "not valid UTF-8" in message
    assert "byte offset 32 (0xFC, line 2)" in message


@pytest.mark.parametrize("name", ["klingon", "base64", "rot13", ""])
def test_unknown_or_non_text_encodings_are_refused(name: str) -> None:
    with pytest.raises(CsvFileError, match="not a text encoding"):
        text_codec(name)


def test_known_encodings_are_normalised() -> None:
    assert text_codec("UTF8") == "utf-8"
    assert text_codec("windows-1252") == "cp1252"
    assert text_codec("latin-1") == "iso8859-1"


def _xlsx() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as book:
        book.writestr("xl/workbook.xml", "<workbook/>" * 50)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200), "is a PNG image"),
        (_xlsx(), "is a zip archive (an .xlsx"),
        (random.Random(3).randbytes(20_000), "is not a text file"),
        (bytes(1000), "is not a text file"),
    ],
)
def test_binary_files_are_refused(tmp_path: Path, data: bytes, expected: str) -> None:
    with pytest.raises(CsvFileError, match=expected.replace("(", r"\(").replace(".", r"\.")):
        choose_encoding(_file(tmp_path, data))


def test_binary_files_are_refused_even_with_a_forced_encoding(tmp_path: Path) -> None:
    path = _file(tmp_path, random.Random(4).randbytes(20_000))
    with pytest.raises(CsvFileError, match="read as Latin-1"):
        choose_encoding(path, text_codec("latin-1"))


def test_one_nul_in_a_cell_does_not_make_a_file_binary(tmp_path: Path) -> None:
    path = _file(tmp_path, ROWS.replace("Müller", "Mül\0ler").encode())
    assert choose_encoding(path).encoding == UTF8


def test_an_empty_file_is_utf8(tmp_path: Path) -> None:
    assert choose_encoding(_file(tmp_path, b"")).encoding == UTF8


def test_a_directory_a_missing_file_and_a_device_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CsvFileError, match="is a directory"):
        choose_encoding(tmp_path)
    with pytest.raises(CsvFileError, match=r"cannot read .*No such file"):
        choose_encoding(tmp_path / "missing.csv")
    with pytest.raises(CsvFileError, match="not a regular file"):
        choose_encoding(Path("/dev/null"))
