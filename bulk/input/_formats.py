"""How each kind of input file is read at the byte level, and what a cell becomes.

Encodings (a BOM decides; the offset and line of a byte that does not
decode), the CSV delimiter and the CSV lines (at most MAX_FIELDS cells a
row), JSONL objects, Arrow columns, the kind of file by its suffix, the
fingerprint of a file, what a compressed part may unpack to
(`refuse_bomb`), and `clean_cell`, which every kept cell passes.
`_source.Source` puts them together.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .._core._exceptions import UsageError
from .._core._text import KEEP, LongText, cut_text, printable

__all__ = [
    "ENCODING_NAMES",
    "MAX_FIELDS",
    "SNIFF_CHARS",
    "SUFFIXES",
    "CsvLines",
    "arrow_cells",
    "bad_byte",
    "clean_cell",
    "describe_error",
    "encoding_of",
    "file_fingerprint",
    "header_cells",
    "json_object",
    "kind_of",
    "refuse_bomb",
    "sniff_delimiter",
]

SUFFIXES = (".csv", ".tsv", ".txt", ".xlsx", ".parquet", ".jsonl", ".ndjson")
_DELIMITERS = ",;\t|"
SNIFF_CHARS = 64 * 1024


def clean_cell(value: Any) -> str:
    """A cell as the text the plan checks: missing is "", anything else `cut_text`."""
    if type(value) is str:  # nearly every cell: a short, printable id or status
        text = value.strip()
        return text if len(text) <= KEEP and text.isprintable() else cut_text(text)
    if isinstance(value, LongText):
        return value  # already cut where it was read
    if _missing(value):
        return ""
    return cut_text(value if isinstance(value, str) else str(value))


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN
    except TypeError:  # pandas.NA refuses to be a bool: it is missing
        return True


def header_cells(record: list[Any]) -> list[str]:
    return [clean_cell(h) for h in record]


def describe_error(exc: Exception) -> str:
    # A library's message may quote the file's bytes: made printable and short.
    return printable(f"{type(exc).__name__}: {exc}", 300)


def arrow_cells(column: Any) -> list[str]:
    """Clean cells of an Arrow column; a long string is cut in Arrow, never copied whole.

    A dictionary column (how bulk reads Parquet strings) is cleaned once per
    distinct value: a long value repeated on every row is held, and cut, once.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(column.type):
        distinct = arrow_cells(column.dictionary)
        return [distinct[i] if i is not None else "" for i in column.indices.to_pylist()]
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        lengths = pc.utf8_length(column)
        longest = pc.max(lengths).as_py()
        if longest is not None and longest > KEEP:
            heads = pc.utf8_slice_codeunits(column, 0, KEEP).to_pylist()
            return [
                cut_text(h, n) if n is not None and n > KEEP else clean_cell(h)
                for h, n in zip(heads, lengths.to_pylist(), strict=True)
            ]
    return [clean_cell(v) for v in column.to_pylist()]


# What a compressed part (an .xlsx part, a Parquet column chunk) may unpack
# to: more than UNPACK_FLOOR bytes only at a ratio real files have. Sheets
# and columns compress about 5-20 times; 40 million empty shared strings in
# 293 KB unpacked at 680 times, 3 GB of one repeated Parquet string at 21,000.
UNPACK_FLOOR = 100 * 1024 * 1024
UNPACK_RATIO = 100


def refuse_bomb(where: str, unpacked: int, packed: int) -> None:
    """Refuse (exit 2) a part that unpacks past the floor at a ratio no real file has."""
    if unpacked > UNPACK_FLOOR and unpacked > UNPACK_RATIO * max(packed, 1):
        raise UsageError(
            f"{where} would unpack to {unpacked:,} bytes from {packed:,} "
            f"({unpacked // max(packed, 1):,} times), more than any real file; "
            "refused as a compression bomb"
        )


# Excel's own limit (columns A to XFD). The csv module bounds each cell
# (field_size_limit) but not how many a row has: a 30 MB line of commas was
# 30 million cells, 330 MB (measured).
MAX_FIELDS = 16_384
_SPACES = re.compile(" *")


class CsvLines:
    """A CSV file's lines for `csv.reader`: each bounded, and each row at most MAX_FIELDS cells.

    The reader pulls one line at a time, and only the lines of the row it is
    parsing; the caller calls `row_done()` after each row it gets, so a new
    count starts with the next line. A row's delimiters are counted first
    (str.count, in C); only a row with at least MAX_FIELDS of them, which
    quoted text may hold, is scanned by `_Cells` for the cells they really
    make, and refused (exit 2, naming the line) before the reader builds them.
    A generator with locals: this runs once per line of every CSV (measured:
    +0.1-0.4 s of CPU per million lines over the csv module reading the file).
    """

    def __init__(self, handle: IO[str], delimiter: str, name: str, max_line: int) -> None:
        self._name = name
        self._row: list[str] = []  # the lines of the row being read
        self.row_done = self._row.clear
        self._lines = self._read(handle, delimiter, max_line)

    def __iter__(self) -> Iterator[str]:
        return self._lines

    def _read(self, handle: IO[str], delimiter: str, max_line: int) -> Iterator[str]:
        readline, row = handle.readline, self._row
        number = delimiters = 0
        cells: _Cells | None = None
        while line := readline(max_line + 1):
            number += 1
            if len(line) > max_line:
                raise UsageError(
                    f"{self._name}: line {number} is longer than {max_line:,} characters; "
                    "bulk reads lines up to that size"
                )
            if not row:  # the reader finished a row since the last line
                delimiters, cells = 0, None
            row.append(line)
            delimiters += line.count(delimiter)
            if delimiters >= MAX_FIELDS:
                fed = row if cells is None else row[-1:]
                cells = cells or _Cells(delimiter)
                if not all(cells.feed(part) for part in fed):
                    raise UsageError(
                        f"{self._name}: line {number}: more than {MAX_FIELDS:,} cells in one "
                        "row; bulk reads rows up to that many (Excel's limit)"
                    )
            yield line


class _Cells:
    """Counts the cells of one CSV row as the csv module splits it (dialect `excel`,
    skipinitialspace), without building them.

    Hand-written because the csv module has no limit on cells per row and
    no way to count them without making them. Quoted text is skipped with
    str.find, so the cost is one step per real cell (at most MAX_FIELDS) and
    per quote.
    """

    def __init__(self, delimiter: str) -> None:
        self.delimiter = delimiter
        self.ended = 0  # cells ended by a delimiter
        self.quoted = False  # inside a quoted cell (which may go on over lines)
        self.at_start = True  # at the start of a cell, where a quote opens one

    def feed(self, line: str) -> bool:
        """Take the row's next line; False once the row has more than MAX_FIELDS cells."""
        i, end = 0, len(line)
        while i < end:
            if self.quoted:
                j = line.find('"', i)
                if j < 0:
                    return True  # the quoted cell goes on in the next line
                if line.startswith('"', j + 1):
                    i = j + 2  # a doubled quote stands for one quote
                    continue
                self.quoted, i = False, j + 1
                continue
            if self.at_start:
                spaces = _SPACES.match(line, i)
                i = spaces.end() if spaces else i
                self.at_start = False
                if line.startswith('"', i):
                    self.quoted, i = True, i + 1
                    continue
            # The rest of the cell, quotes and all, runs to the next delimiter.
            j = line.find(self.delimiter, i)
            if j < 0:
                return True
            self.ended += 1
            if self.ended >= MAX_FIELDS:
                return False
            self.at_start, i = True, j + 1
        return True


def json_object(line: str, where: str) -> dict[str, Any]:
    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        record = dict(pairs)
        if len(record) < len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise UsageError(
                        f"{where}: the key {printable(key, 40)!r} appears twice in one object; "
                        "which value is meant is unclear"
                    )
                seen.add(key)
        return record

    try:
        record = json.loads(line, object_pairs_hook=unique)
    except ValueError as exc:
        raise UsageError(f"{where} is not JSON ({exc})") from None
    if not isinstance(record, dict):
        raise UsageError(f"{where} is not a JSON object")
    return record


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
ENCODING_NAMES = {"utf-8-sig": "UTF-8", "utf-16": "UTF-16", "utf-32": "UTF-32"}


def encoding_of(path: Path) -> str:
    """UTF-8 (with or without a BOM), or UTF-16/32 when a BOM says so (Excel's "Unicode text")."""
    with open(path, "rb") as handle:
        start = handle.read(4)
    return next((name for bom, name in _BOMS if start.startswith(bom)), "utf-8-sig")


def bad_byte(path: Path, encoding: str) -> tuple[int, int | None]:
    """The file offset of the first byte that does not decode, and its line (UTF-8 only)."""
    utf8 = encoding == "utf-8-sig"
    # Plain UTF-8 past the BOM: the -sig decoder counts its offsets from after the BOM.
    decoder = codecs.getincrementaldecoder("utf-8" if utf8 else encoding)()
    lines = 1
    with open(path, "rb") as handle:
        if not (utf8 and handle.read(3) == codecs.BOM_UTF8):
            handle.seek(0)
        offset = handle.tell()
        while block := handle.read(1 << 16):
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                at = offset - pending + exc.start
                lines += exc.object[: exc.start].count(b"\n")
                return at, lines if utf8 else None
            offset += len(block)
            lines += block.count(b"\n")
    return offset, None


def sniff_delimiter(sample: str) -> str:
    """The delimiter that splits the header into the most columns, consistently.

    csv.Sniffer's regular expressions are quadratic: 66 KB of `,"x` took 64 s
    of CPU. This parses the sample once per candidate with the csv module, in
    linear time, and keeps the candidate whose rows most often have as many
    cells as the header (then: more columns; then: the order of _DELIMITERS).
    """
    best, best_score = ",", (0.0, 1)
    for delimiter in _DELIMITERS:
        try:
            records = [r for r in csv.reader(io.StringIO(sample), delimiter=delimiter) if r]
        except csv.Error:
            continue
        if len(sample) == SNIFF_CHARS and len(records) > 1:
            records.pop()  # cut off by the sample's end
        if not records or len(records[0]) < 2:
            continue
        width = len(records[0])
        score = (sum(len(r) == width for r in records) / len(records), width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def kind_of(path: Path | None) -> str:
    assert path is not None
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".txt", ""):
        return "csv"
    if suffix == ".parquet":
        return "parquet"
    if suffix == ".xlsx":
        return "xlsx"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise UsageError(
        f"{printable(path, 200)}: unsupported input type {printable(suffix, 20)!r} "
        f"(use {', '.join(SUFFIXES)})"
    )


def file_fingerprint(path: Path) -> str:
    """The SHA-256 of a file's bytes: what the journal records as `input_sha256`."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
