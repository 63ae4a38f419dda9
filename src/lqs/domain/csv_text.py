"""CSV files as text: which encoding the bytes are in, whether they are text at all, and how
a cell is written back so that a spreadsheet shows it instead of evaluating it.

Pure functions over bytes and strings; reading the file is :mod:`lqs.cli.csv_files`' job.

Detection, in order:

1. A byte-order mark names the encoding (UTF-8, UTF-16 LE/BE, UTF-32 LE/BE): Excel's
   "Unicode text" export writes UTF-16 LE with one.
2. The signature of a known binary format (zip, hence .xlsx and .ods; .xls; PDF; images;
   gzip) refuses the file, naming what it is.
3. UTF-16 without a byte-order mark shows as one NUL byte in every pair of mostly-ASCII text.
4. Otherwise the file is UTF-8 if all of it decodes as UTF-8, else Windows-1252 (cp1252):
   what Excel on a Western-European or American Windows writes as "CSV". cp1252, not
   Latin-1: the two agree except on 0x80-0x9F, where cp1252 has the characters such files
   really contain (``€``, curly quotes, dashes, ``Š``, ``Ÿ``) and Latin-1 has C1 control
   codes that no spreadsheet writes. Latin-1 would decode every file, so a mis-detected one
   would import silently garbled; cp1252 leaves five bytes undefined (0x81, 0x8D, 0x8F,
   0x90, 0x9D), and a file containing one is refused with its offset and a hint to pass
   ``--encoding``. Text in another 8-bit code page (cp1251, cp1250, ...) that avoids those
   bytes still decodes as cp1252, wrongly: the importer says which encoding it used so a
   user who sees mojibake knows to pass ``--encoding``.

Whatever the encoding, a file whose first 64 KiB hold many control characters (NUL and
the other C0 codes besides tab, line feed and carriage return) is binary: text exported
by a spreadsheet has none, random or compressed bytes have about one in ten. A few stray
ones (a NUL pasted into one cell) do not make a file binary: those rows are rejected.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass

_LABELS = {
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8",
    "utf-16": "UTF-16",
    "utf-16-le": "UTF-16 LE",
    "utf-16-be": "UTF-16 BE",
    "utf-32": "UTF-32",
    "utf-32-le": "UTF-32 LE",
    "utf-32-be": "UTF-32 BE",
    "cp1252": "Windows-1252",
    "iso8859-1": "Latin-1",
}


@dataclass(frozen=True)
class TextEncoding:
    """How to decode a file: a Python codec name, after skipping ``bom_length`` bytes."""

    codec: str
    bom_length: int = 0

    @property
    def label(self) -> str:
        """The encoding's usual name, for messages (``UTF-16 LE``, ``Windows-1252``)."""
        name = _LABELS.get(self.codec, self.codec)
        return f"{name} with byte-order mark" if self.bom_length else name


UTF8 = TextEncoding("utf-8")
CP1252 = TextEncoding("cp1252")

# Longest first: the UTF-32 LE mark begins with the UTF-16 LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

_SIGNATURES = (
    (b"PK\x03\x04", "a zip archive (an .xlsx or .ods workbook is one)"),
    (b"PK\x05\x06", "a zip archive (an .xlsx or .ods workbook is one)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 workbook (.xls)"),
    (b"%PDF-", "a PDF document"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
)

# C0 controls and DEL, except tab, line feed and carriage return.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_STRAY_CONTROLS = 8
_BINARY_SHARE = 0.01


def encoding_from_bom(head: bytes) -> TextEncoding | None:
    """The encoding a leading byte-order mark names, or None when ``head`` has none."""
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return TextEncoding(codec, len(bom))
    return None


def utf16_without_bom(head: bytes) -> TextEncoding | None:
    """UTF-16 LE or BE when one byte of most pairs is NUL and the other almost never is.

    That is mostly-ASCII text in UTF-16 written without a byte-order mark; None otherwise.
    """
    pairs = len(head) // 2
    if pairs < 2:
        return None
    even_nuls = head[0 : 2 * pairs : 2].count(0)
    odd_nuls = head[1 : 2 * pairs : 2].count(0)
    if odd_nuls * 2 >= pairs and even_nuls * 100 <= pairs:
        return TextEncoding("utf-16-le")
    if even_nuls * 2 >= pairs and odd_nuls * 100 <= pairs:
        return TextEncoding("utf-16-be")
    return None


def binary_format(head: bytes) -> str | None:
    """What ``head`` is when it starts like a known binary format (``a PNG image``), or None."""
    for signature, what in _SIGNATURES:
        if head.startswith(signature):
            return what
    return None


def control_characters(text: str) -> int:
    """How many characters of ``text`` are control codes no CSV text contains."""
    return len(_CONTROL.findall(text))


def looks_binary(text: str) -> bool:
    """True when more than a few, and more than 1 in 100, characters are control codes."""
    count = control_characters(text)
    return count > _STRAY_CONTROLS and count > len(text) * _BINARY_SHARE


FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "\0")
"""First characters that make a spreadsheet read a cell as a formula: OWASP's CSV-injection
list (``= + - @``, tab, carriage return), plus line feed and NUL (OWASP ASVS 1.2.10)."""


def neutralise_formula(cell: str) -> str:
    """The cell with a leading ``'`` when it starts like a formula, so it shows as text.

    Writers must also quote the field (OWASP): a separator inside it must not split it.
    """
    return "'" + cell if cell.startswith(FORMULA_TRIGGERS) else cell


DELIMITERS = (",", ";", "\t")
"""What spreadsheets separate cells with, and what is detected: comma; semicolon where the
decimal separator is a comma (most of continental Europe); tab in Excel's "Unicode text"
(UTF-16) export. A pipe is only used when asked for (``--delimiter '|'``)."""

DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
"""Each delimiter LQS reads, by its name in messages and in ``--delimiter``."""

_DELIMITER_SPELLINGS = {
    **{name: d for d, name in DELIMITER_NAMES.items()},
    **{d: d for d in DELIMITER_NAMES},
    "\\t": "\t",
}


def delimiter_named(value: str) -> str | None:
    """The delimiter ``--delimiter VALUE`` names, or None: the character itself (``,``
    ``;`` ``|``, a tab), ``\\t``, or its name (``comma``, ``semicolon``, ``tab``, ``pipe``,
    any case)."""
    return _DELIMITER_SPELLINGS.get(value if value in DELIMITER_NAMES else value.lower())


_SEPARATOR_LINE = re.compile(r"sep=(.)\r?\n?", re.IGNORECASE)


def separator_line(line: str) -> str | None:
    """The delimiter an Excel ``sep=;`` first line names (the line is not part of the
    data), or None when ``line`` is not one."""
    found = _SEPARATOR_LINE.fullmatch(line)
    if found is None or found.group(1) not in DELIMITER_NAMES:
        return None
    return found.group(1)


def detect_delimiter(sample: str) -> str:
    """The delimiter of the CSV text ``sample`` starts (the header row and, better, the
    rows after it), among :data:`DELIMITERS`.

    Each delimiter is tried as the csv module reads (quoted cells may hold any of the
    others, and line breaks): the winner splits the header into more than one column and
    the most complete rows into as many cells as the header, then splits the header into
    the most columns; a tie, or a single column, gives the comma.
    """
    lines = list(io.StringIO(sample, newline=""))  # split where the csv module would
    if len(lines) > 1 and not sample.endswith(("\n", "\r")):
        lines.pop()  # a row cut short by the sample's end would not count as complete

    def score(delimiter: str) -> tuple[bool, int, int, bool]:
        try:
            rows = [row for row in csv.reader(lines, delimiter=delimiter) if row]
        except csv.Error:
            return (False, 0, 0, False)
        if not rows:
            return (False, 0, 0, delimiter == ",")
        width = len(rows[0])
        fitting = sum(len(row) == width for row in rows[1:])
        return (width > 1, fitting, width, delimiter == ",")

    return max(DELIMITERS, key=score)
