"""The pure rules for CSV files: byte-order marks, binary formats, delimiters, formula cells."""

from __future__ import annotations

import codecs
import random

import pytest

from lqs.domain.csv_text import (
    FORMULA_TRIGGERS,
    TextEncoding,
    binary_format,
    delimiter_named,
    detect_delimiter,
    encoding_from_bom,
    looks_binary,
    neutralise_formula,
    separator_line,
    utf16_without_bom,
)


@pytest.mark.parametrize(
    ("bom", "codec"),
    [
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
        (codecs.BOM_UTF32_LE, "utf-32-le"),  # starts with the UTF-16 LE mark
        (codecs.BOM_UTF32_BE, "utf-32-be"),
    ],
)
def test_a_byte_order_mark_names_the_encoding(bom: bytes, codec: str) -> None:
    assert encoding_from_bom(bom + "email\n".encode(codec)) == TextEncoding(codec, len(bom))


def test_text_without_a_byte_order_mark_has_no_encoding_from_it() -> None:
    assert encoding_from_bom(b"email,name\n") is None
    assert encoding_from_bom(b"") is None


def test_utf16_without_a_byte_order_mark_is_recognised_by_its_nul_bytes() -> None:
    text = "email\tname\na@b.example\tMüller\n"
    assert utf16_without_bom(text.encode("utf-16-le")) == TextEncoding("utf-16-le")
    assert utf16_without_bom(text.encode("utf-16-be")) == TextEncoding("utf-16-be")
    assert utf16_without_bom(text.encode("utf-8")) is None
    assert utf16_without_bom(b"\x00") is None


@pytest.mark.parametrize(
    ("head", "what"),
    [
        (b"PK\x03\x04\x14\x00\x06\x00", "zip archive"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00", ".xls"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "PNG"),
        (b"%PDF-1.7\n", "PDF"),
        (b"\x1f\x8b\x08\x00", "gzip"),
    ],
)
def test_binary_formats_are_named(head: bytes, what: str) -> None:
    found = binary_format(head)
    assert found is not None
    assert what in found


def test_csv_text_is_no_binary_format() -> None:
    assert binary_format(b"email,name\n") is None
    assert binary_format(b"") is None


def test_random_bytes_look_binary_and_a_stray_nul_does_not() -> None:
    noise = random.Random(11).randbytes(4096).decode("latin-1")
    assert looks_binary(noise)
    rows = "email,name\n" + "".join(f"p{i}@corp.example,Name {i}\n" for i in range(20))
    assert not looks_binary(rows.replace("Name 3", "Na\0me 3"))
    assert not looks_binary("a,b\n\0\n")  # a few stray controls in a tiny file
    assert looks_binary("\0" * 10)


@pytest.mark.parametrize(
    ("header", "delimiter"),
    [
        ("email,first name,phone\r\n", ","),
        ("E-Mail;Vorname;Telefon\r\n", ";"),
        ("email\tname\tcompany\n", "\t"),
        ("email\n", ","),
        ("", ","),
        ("a;b,c\n", ","),  # a tie goes to the comma
    ],
)
def test_the_header_row_decides_the_delimiter(header: str, delimiter: str) -> None:
    assert detect_delimiter(header) == delimiter


@pytest.mark.parametrize(
    ("sample", "delimiter"),
    [
        # Excel's semicolon export: a quoted name holds a comma, a quoted cell holds commas.
        (
            '"Name, First";E-Mail;Firma\r\nAnn;ann@corp.example;"Acme, Inc, Berlin"\r\n',
            ";",
        ),
        # Comma-separated, with semicolons and a line break inside quoted cells.
        (
            'email,company,notes\r\na@corp.example,"Acme; Inc","one; two\r\nthree"\r\n'
            'b@corp.example,Beta,"x;y;z"\r\n',
            ",",
        ),
        # A header as ambiguous as "a;b,c": the rows decide.
        ("a;b,c\n1;x,y,z\n2;p,q,r\n", ";"),
        ("email\tname,first\nann@corp.example\tLee, Ann, Jr\n", "\t"),
        # A sample cut inside its last row: that row does not count.
        ("a;b\n1;2\n3,4,5", ";"),
    ],
    ids=["semicolon-quoted-commas", "comma-quoted-semicolons", "rows-decide", "tab", "cut"],
)
def test_the_first_rows_decide_the_delimiter_as_the_csv_module_reads_them(
    sample: str, delimiter: str
) -> None:
    assert detect_delimiter(sample) == delimiter


@pytest.mark.parametrize(
    ("value", "delimiter"),
    [
        (",", ","),
        (";", ";"),
        ("|", "|"),
        ("\t", "\t"),
        ("\\t", "\t"),
        ("tab", "\t"),
        ("TAB", "\t"),
        ("semicolon", ";"),
        ("x", None),
        ("", None),
        (",,", None),
    ],
)
def test_delimiter_option_values(value: str, delimiter: str | None) -> None:
    assert delimiter_named(value) == delimiter


@pytest.mark.parametrize(
    ("line", "delimiter"),
    [("sep=;\r\n", ";"), ("sep=,\n", ","), ("SEP=\t", "\t"), ("sep=:\n", None), ("email\n", None)],
)
def test_excel_separator_lines_name_the_delimiter(line: str, delimiter: str | None) -> None:
    assert separator_line(line) == delimiter


@pytest.mark.parametrize("trigger", FORMULA_TRIGGERS)
def test_every_formula_trigger_is_neutralised(trigger: str) -> None:
    assert neutralise_formula(trigger + "SUM(A1:A9)") == "'" + trigger + "SUM(A1:A9)"


def test_the_owasp_triggers_are_all_covered() -> None:
    assert {"=", "+", "-", "@", "\t", "\r"} <= set(FORMULA_TRIGGERS)


@pytest.mark.parametrize("cell", ["", "Müller", "a=b", " =1+1", "'=already", "10k", "€5"])
def test_other_cells_are_left_as_they_are(cell: str) -> None:
    assert neutralise_formula(cell) == cell
