"""How each kind of input file is read at the byte level, and what a cell becomes.

Encodings (a BOM decides; the offset and line of a byte that does not
decode), the CSV delimiter, JSONL objects, Arrow columns, the kind of file by
its suffix, the fingerprint of a file, and `clean_cell`, which every kept cell
passes. `_source.Source` puts them together.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

from .._core._exceptions import UsageError
from .._core._text import KEEP, LongText, cut_text, printable

__all__ = [
    "ENCODING_NAMES",
    "SNIFF_CHARS",
    "SUFFIXES",
    "arrow_cells",
    "bad_byte",
    "clean_cell",
    "describe_error",
    "encoding_of",
    "file_fingerprint",
    "header_cells",
    "json_object",
    "kind_of",
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
    """Clean cells of an Arrow column; a long string is cut in Arrow, never copied whole."""
    import pyarrow as pa
    import pyarrow.compute as pc

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
