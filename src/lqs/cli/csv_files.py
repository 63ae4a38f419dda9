"""Opening a CSV file as text: its encoding detected (or the one forced) and checked over
the whole file before any row is imported, binary files refused; and writing the rows an
import rejects to a file of their own.

The rules are :mod:`lqs.domain.csv_text`'s; this module reads and writes the bytes.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, TextIO

from lqs.domain.csv_text import (
    CP1252,
    UTF8,
    TextEncoding,
    binary_format,
    control_characters,
    encoding_from_bom,
    looks_binary,
    neutralise_formula,
    utf16_without_bom,
)
from lqs.errors import InputError

HEAD_BYTES = 64 * 1024
"""How much of the file the byte-order mark, signature and control-character checks read."""

_CHUNK = 1024 * 1024


class CsvFileError(InputError):
    """The file cannot be read as CSV text; ``str()`` is one line saying why and what to do."""


@dataclass(frozen=True)
class ChosenEncoding:
    """The encoding to read a file with, and why, when it was detected rather than UTF-8."""

    encoding: TextEncoding
    note: str | None = None


def text_codec(name: str) -> str:
    """The codec ``--encoding NAME`` names, normalised (``UTF8`` -> ``utf-8``).

    Raises:
        CsvFileError: Python knows no such text encoding.
    """
    try:
        codec = codecs.lookup(name).name
        # TextIOWrapper refuses codecs that are not text encodings (base64, rot13, zlib).
        io.TextIOWrapper(io.BytesIO(), encoding=codec)
    except LookupError:
        raise CsvFileError(
            f"--encoding {name!r}: not a text encoding Python knows; "
            "try utf-8, cp1252, latin-1, utf-16 or another codec name from the codecs module"
        ) from None
    return codec


def choose_encoding(path: Path, forced: str | None = None) -> ChosenEncoding:
    """The encoding ``path`` decodes in, entirely; ``forced`` is a name from :func:`text_codec`.

    Without ``forced``: the byte-order mark's encoding, else UTF-16 without one, else UTF-8
    when the whole file is UTF-8, else Windows-1252 (see :mod:`lqs.domain.csv_text`).

    Raises:
        CsvFileError: the file cannot be read, is not a regular file, is binary, or does
            not decode (the message names the byte, its offset and its line).
    """
    head = _head(path)
    bom = encoding_from_bom(head)
    if forced is not None:
        # A byte-order mark of the forced encoding is not part of the header's first name.
        skip = bom.bom_length if bom is not None and bom.codec == forced else 0
        candidates = [TextEncoding(forced, skip)]
    elif bom is not None:
        candidates = [bom]
    else:
        candidates = [utf16_without_bom(head) or UTF8]
    _refuse_binary(path, head, candidates[0], forced=forced is not None)
    if forced is None and candidates[0] == UTF8:
        candidates.append(CP1252)

    first_problem: _Undecodable | None = None
    for candidate in candidates:
        problem = _first_undecodable(path, candidate)
        if problem is None:
            if candidate.codec == "utf-8" or forced is not None:
                return ChosenEncoding(candidate)
            why = f"not UTF-8: {first_problem}" if first_problem else "detected"
            return ChosenEncoding(
                candidate, f"encoding: {candidate.label} ({why}); override with --encoding"
            )
        first_problem = first_problem or problem
    assert first_problem is not None
    if forced is not None:
        raise CsvFileError(
            f"{path} is not valid {candidates[0].label}: {first_problem}; "
            "check the file's encoding and --encoding"
        )
    if bom is not None:
        raise CsvFileError(
            f"{path} starts with a {bom.label.removesuffix(' with byte-order mark')} "
            f"byte-order mark but is not valid {bom.codec}: {first_problem}"
        )
    if len(candidates) == 1:
        raise CsvFileError(f"{path} looks like {candidates[0].label} but {first_problem}")
    last = _first_undecodable(path, candidates[-1])
    raise CsvFileError(
        f"{path} is neither UTF-8 ({first_problem}) nor Windows-1252 ({last}); "
        "pass --encoding with the file's encoding, e.g. --encoding cp1251"
    )


def open_text(path: Path, encoding: TextEncoding) -> TextIO:
    """``path`` opened for the csv module (``newline=""``), past any byte-order mark.

    Raises:
        CsvFileError: the file cannot be opened.
    """
    raw = _open_binary(path)
    raw.seek(encoding.bom_length)
    return io.TextIOWrapper(raw, encoding=encoding.codec, newline="")


def _open_binary(path: Path) -> BinaryIO:
    if path.is_dir():
        raise CsvFileError(f"{path} is a directory; expected a CSV file")
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise CsvFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not path.is_file():
        # A pipe or device cannot be read twice (detection, then import): refuse it.
        handle.close()
        raise CsvFileError(f"{path} is not a regular file; save the data to a file first")
    return handle


def _head(path: Path) -> bytes:
    with _open_binary(path) as handle:
        try:
            return handle.read(HEAD_BYTES)
        except OSError as exc:
            raise CsvFileError(f"cannot read {path}: {exc.strerror or exc}") from None


def _refuse_binary(path: Path, head: bytes, encoding: TextEncoding, *, forced: bool) -> None:
    what = binary_format(head)
    if what is not None:
        raise CsvFileError(
            f"{path} is {what}, not CSV text; save it from the spreadsheet as CSV first"
        )
    try:
        text = head[encoding.bom_length :].decode(encoding.codec, "replace")
    except UnicodeError:
        return  # a codec that fails even with "replace": the full decode will say where
    if looks_binary(text):
        read_as = f" read as {encoding.label}" if forced else ""
        raise CsvFileError(
            f"{path} is not a text file{read_as}: {control_characters(text):,} of its first "
            f"{len(text):,} characters are control codes; expected CSV text"
        )


@dataclass(frozen=True)
class _Undecodable:
    offset: int
    line: int
    data: bytes
    reason: str

    def __str__(self) -> str:
        shown = " ".join(f"0x{b:02X}" for b in self.data[:4])
        return f"{self.reason} at byte offset {self.offset} ({shown}, line {self.line})"


class _LineCounter:
    """Counts line ends as the csv module sees them: LF, CRLF or a lone CR."""

    def __init__(self) -> None:
        self.ends = 0
        self._after_cr = False

    def feed(self, text: str) -> None:
        if not text:
            return
        crlf = text.count("\r\n") + (self._after_cr and text[0] == "\n")
        self.ends += text.count("\n") + text.count("\r") - crlf
        self._after_cr = text[-1] == "\r"


def _first_undecodable(path: Path, encoding: TextEncoding) -> _Undecodable | None:
    decoder = codecs.getincrementaldecoder(encoding.codec)()
    lines = _LineCounter()
    fed = encoding.bom_length
    with _open_binary(path) as handle:
        handle.seek(encoding.bom_length)
        while True:
            try:
                chunk = handle.read(_CHUNK)
            except OSError as exc:
                raise CsvFileError(f"cannot read {path}: {exc.strerror or exc}") from None
            # Bytes the decoder holds back (half a character) count before this chunk.
            pending = len(decoder.getstate()[0])
            try:
                lines.feed(decoder.decode(chunk, final=not chunk))
            except UnicodeDecodeError as exc:
                before = bytes(exc.object[: exc.start])
                with contextlib.suppress(UnicodeError):  # only the line number is lost
                    lines.feed(before.decode(encoding.codec, "replace"))
                return _Undecodable(
                    offset=fed - pending + exc.start,
                    line=lines.ends + 1,
                    data=bytes(exc.object[exc.start : exc.end]),
                    reason=exc.reason,
                )
            except UnicodeError as exc:
                raise CsvFileError(f"{path} cannot be decoded as {encoding.codec}: {exc}") from None
            if not chunk:
                return None
            fed += len(chunk)


MAX_REJECTS_FILES = 1000
"""How many numbered rejects files (``FILE.rejects-2.csv`` ...) one input may have."""


class RejectsFile:
    """``FILE.rejects.csv``, created on the first rejected row: line, reason, original cells.

    An earlier import's rejects file is kept: the next free ``FILE.rejects-N.csv`` is
    written instead (created exclusively, so two imports never share one), unless
    ``overwrite``. Written for a spreadsheet: UTF-8 with a byte-order mark (so Excel does
    not read it as its ANSI code page), the input's delimiter, every text field quoted and,
    following OWASP's CSV-injection advice, a cell that starts like a formula prefixed with
    ``'``. The leads themselves are stored as submitted.
    """

    def __init__(self, source: Path, header: list[str], delimiter: str, *, overwrite: bool) -> None:
        self.first_choice = source.with_name(source.name + ".rejects.csv")
        self.path: Path | None = None
        """The file written, once a row was rejected."""
        self._source = source
        self._header = header
        self._delimiter = delimiter
        self._overwrite = overwrite
        self._handle: IO[str] | None = None
        self._writer: Any = None

    def add(self, line: int, reason: str, cells: list[str]) -> None:
        """Write one rejected row.

        Raises:
            CsvFileError: the file cannot be created or written.
        """
        if self._writer is None:
            self._handle = self._create()
            self._writer = csv.writer(
                self._handle, delimiter=self._delimiter, quoting=csv.QUOTE_NONNUMERIC
            )
            self._write(["line", "reason", *map(neutralise_formula, self._header)])
        self._write([line, neutralise_formula(reason), *map(neutralise_formula, cells)])

    def _write(self, row: list[Any]) -> None:
        try:
            self._writer.writerow(row)
        except OSError as exc:
            raise CsvFileError(
                f"cannot write rejected rows to {self.path}: {exc.strerror or exc}"
            ) from None

    def _create(self) -> IO[str]:
        candidates = [self.first_choice] + [
            self._source.with_name(f"{self._source.name}.rejects-{n}.csv")
            for n in range(2, MAX_REJECTS_FILES + 1)
        ]
        for path in candidates[:1] if self._overwrite else candidates:
            self.path = path
            try:
                return path.open("w" if self._overwrite else "x", newline="", encoding="utf-8-sig")
            except FileExistsError:
                continue
            except OSError as exc:
                raise CsvFileError(
                    f"cannot write rejected rows to {path}: {exc.strerror or exc}"
                ) from None
        raise CsvFileError(
            f"{self._source} already has {MAX_REJECTS_FILES} rejects files; delete the old ones "
            "or pass --overwrite-rejects"
        )

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
