"""Read an input (file, stdin or DataFrame) as chunks of (id, status) strings.

Large inputs are never held whole: CSV/TSV (the csv module), JSONL (line by
line), XLSX (expat, see _xlsx.py) and Parquet (pyarrow record batches) are
streamed CHUNK_ROWS rows at a time (byte-level reading: _formats.py), keeping only the columns needed.
pandas is not needed to read files: importing it alone costs ~0.75 s of CPU
and ~100 MB, more than reading a 100,000-row CSV.

Files are untrusted. Every cell that is kept is trimmed, has non-printable
characters shown as escapes and is cut to KEEP characters (`clean_cell`), so a
huge or hostile cell never reaches the journal, a report or a terminal whole.
"""

from __future__ import annotations

import csv
import hashlib
import secrets
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._core._exceptions import UsageError
from .._core._files import replacing
from .._core._text import KEEP, cut_text, printable
from ._formats import (
    ENCODING_NAMES,
    MAX_FIELDS,
    SNIFF_CHARS,
    CsvLines,
    bad_byte,
    clean_cell,
    describe_error,
    encoding_of,
    file_fingerprint,
    header_cells,
    json_object,
    kind_of,
    sniff_delimiter,
)
from ._parquet import parquet_chunks

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CHUNK_ROWS",
    "DERIVED_COLUMNS",
    "ID_NAMES",
    "STATUS_NAMES",
    "Chunk",
    "Source",
    "open_source",
    "picked_by_name",
    "spool_stdin",
]

CHUNK_ROWS = 50_000
ID_NAMES = ("ticket_id", "ticketid", "ticket", "ticket_ref", "ticketref", "id", "uuid")
STATUS_NAMES = ("target_status", "targetstatus", "new_status", "status")
DERIVED_COLUMNS = ("source_row", "skip_reason")
# Longest CSV cell or JSONL line read. The csv module holds a cell as 4 bytes a
# character while parsing it: a 100 MB cell cost 627 MB (measured), a 16 MiB
# one 125 MB. Past this, the file is
# refused (after a too-long cell the csv module cannot tell where the next row
# starts, and a guess could send a line of someone's description).
LINE_LIMIT = 16 * 1024 * 1024
# Longest line of a CSV file: room for a cell of LINE_LIMIT and others beside
# it. The file object reads a whole line before the csv module sees a cell,
# so without this one line could take any amount of memory.
CSV_LINE_LIMIT = 2 * LINE_LIMIT
_LISTED = 20  # column names shown in a message


@dataclass(frozen=True, slots=True)
class Chunk:
    first_row: int  # 1-based input position of the chunk's first row
    ids: list[str]
    statuses: list[str] | None  # None when the input has no status column
    # Only for batches derived from a report (retry, undo):
    source_rows: list[int] | None = None  # the row in the report it came from
    skips: list[str] | None = None  # non-empty: decided not to send, with this reason
    # Changes besides status (assignee, type, comment, template columns): by wanted name.
    extras: dict[str, list[str]] | None = None


def _norm(name: object) -> str:
    return str(name).strip().lower().replace(" ", "_").replace("-", "_")


def picked_by_name(column: str) -> bool:
    """Whether bulk would take `column` as the status column by its name alone."""
    return _norm(column) in STATUS_NAMES


def _listing(columns: list[str]) -> str:
    shown = ", ".join(printable(c, 40) for c in columns[:_LISTED])
    return shown + (f", ... ({len(columns) - _LISTED} more)" if len(columns) > _LISTED else "")


def _pick(
    columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, name: str
) -> str:
    """The one column named `wanted` (or the first candidate name present).

    The same name twice (compared trimmed, case-insensitively) is refused: which
    of the two holds the ids is a guess, and a wrong guess updates wrong tickets.
    """
    names = [_norm(wanted)] if wanted is not None else list(candidates)
    for wanted_norm in names:
        found = [i for i, column in enumerate(columns) if _norm(column) == wanted_norm]
        if len(found) > 1:
            where = " and ".join(str(i + 1) for i in found)
            raise UsageError(
                f"{name}: {len(found)} columns are named {printable(columns[found[0]], 40)!r} "
                f"(columns {where}); which one is the {what} is ambiguous: rename one of them"
            )
        if found:
            return columns[found[0]]
    if wanted is not None:
        raise UsageError(
            f"{name}: no column {printable(wanted, 40)!r} (--{what.replace(' ', '-')}); "
            f"columns are: {_listing(columns)}"
        )
    return ""


class Source:
    """One input: knows its name for messages, its fingerprint and its chunks."""

    def __init__(
        self,
        name: str,
        path: Path | None = None,
        frame: pd.DataFrame | None = None,
        id_column: str | None = None,
        status_column: str | None = None,
        need_status: bool = True,
        extra_columns: tuple[str, ...] = (),
        status_optional: bool = False,
    ) -> None:
        self.name = printable(name, 200)
        self.path = path
        self.frame = frame
        self._wanted_id = id_column
        self._wanted_status = status_column
        self._need_status = need_status
        self.id_column = ""
        self.status_column = ""
        self._extra_wanted = extra_columns
        self._status_optional = status_optional  # other changes were asked for on their own
        # Wanted name -> the input's column, for the extra columns the input has.
        self.extras: dict[str, str] = {}
        self.unread_status: list[str] = []
        self._sep = ","
        self._sniffed = False  # the delimiter is sniffed once: the file is read more than once
        self._keys: list[str] | None = None  # a JSONL file's keys, all lines', read once
        self._encoding = "utf-8-sig"
        self._kind = "frame" if frame is not None else kind_of(path)
        self.derived = frame is not None and "source_row" in frame.columns

    # -- columns -------------------------------------------------------------
    def _columns(self) -> list[str]:
        if self.frame is not None:
            return [str(c) for c in self.frame.columns]
        assert self.path is not None
        if self._kind == "parquet":
            import pyarrow.parquet as pq

            return list(pq.ParquetFile(self.path).schema_arrow.names)
        for header in self._records():
            return header_cells(header)
        raise UsageError(f"{self.name}: the file is empty")

    def _records(self) -> Iterator[list[Any]]:
        """The header, then each non-empty row, as lists (files other than Parquet).

        Once the header is taken (the columns are known by then), an .xlsx row
        holds only the wanted cells: a cell at column XFD does not make every
        row 16,384 cells wide.
        """
        assert self.path is not None
        if self._kind == "csv":
            yield from self._csv_records()
        elif self._kind == "xlsx":
            from ._xlsx import SheetRows

            rows = SheetRows(self.path, self.name, cut_text, KEEP)
            for values in rows:
                yield values
                if rows.kept is None:  # the header: the next row is asked for by chunks()
                    rows.keep_only(self._wanted(values))
        else:
            yield from self._jsonl_records()

    def _wanted(self, header: list[Any]) -> list[int]:
        """Where the id and status columns are in `header`."""
        cells = header_cells(header)
        return [cells.index(c) for c in self._kept()]

    def _kept(self) -> list[str]:
        """The input's columns that are read: id, status, then the extras (a column once)."""
        kept = [c for c in (self.id_column, self.status_column) if c]
        return kept + [c for c in dict.fromkeys(self.extras.values()) if c not in kept]

    def _csv_records(self) -> Iterator[list[Any]]:
        assert self.path is not None
        self._encoding = encoding_of(self.path)
        # Process-wide, as the csv module has it; raised from 128 KiB, which refused
        # a whole helpdesk export for one long description.
        csv.field_size_limit(LINE_LIMIT)
        with open(self.path, encoding=self._encoding, newline="") as handle:
            if self.path.suffix.lower() == ".tsv":
                self._sep = "\t"
            elif not self._sniffed:
                # Parsing the sample once per candidate took ~0.03 s a time.
                self._sep = sniff_delimiter(handle.read(SNIFF_CHARS))
                self._sniffed = True
                handle.seek(0)
            lines = CsvLines(handle, self._sep, self.name, CSV_LINE_LIMIT)
            reader = csv.reader(lines, delimiter=self._sep, skipinitialspace=True)
            try:
                for record in reader:
                    lines.row_done()
                    # Blank lines are skipped (and not counted as rows); so are lines of
                    # empty cells only (`;;`), as Excel saves rows that were touched and
                    # emptied, and as an .xlsx's empty rows are skipped.
                    if any(cell.strip() for cell in record):
                        yield record
            except csv.Error as exc:
                if "field limit" in str(exc):
                    raise UsageError(
                        f"{self.name}: line {reader.line_num}: a cell longer than "
                        f"{LINE_LIMIT:,} characters; bulk reads cells up to that size"
                    ) from None
                raise UsageError(f"{self.name}: line {reader.line_num}: {exc}") from None

    def _jsonl_records(self) -> Iterator[list[Any]]:
        keys = self._jsonl_keys()
        if keys is None:
            return  # no object at all: the file is empty
        yield [printable(k, KEEP) for k in keys]
        for _, record in self._jsonl_objects():
            yield [record.get(k) for k in keys]

    def _jsonl_keys(self) -> list[str] | None:
        """Every key of the file, in order of first appearance (read once per source).

        The columns are the keys of all lines, not of the first: a key only
        later lines carry (a `comment` on some rows) would otherwise be dropped
        without a word.
        """
        if self._keys is None:
            found: dict[str, None] = {}
            lines = 0
            for number, record in self._jsonl_objects():
                lines += 1
                for key in record:
                    if key not in found and len(found) == MAX_FIELDS:
                        raise UsageError(
                            f"{self.name}: line {number}: more than {MAX_FIELDS:,} distinct "
                            "keys; bulk reads up to that many columns (Excel's limit)"
                        )
                    found.setdefault(key)
            self._keys = list(found) if lines else None
        return self._keys

    def _jsonl_objects(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(line number, object) for each non-blank line."""
        assert self.path is not None
        self._encoding = encoding_of(self.path)
        with open(self.path, encoding=self._encoding) as handle:
            number = 0
            while line := handle.readline(LINE_LIMIT + 1):
                number += 1
                if len(line) > LINE_LIMIT:
                    raise UsageError(
                        f"{self.name}: line {number} is longer than {LINE_LIMIT:,} characters; "
                        "bulk reads lines up to that size"
                    )
                if line.strip():
                    yield number, json_object(line, f"{self.name}: line {number}")

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Any failure to read the file as a `UsageError` naming it (never a traceback)."""
        try:
            yield
        except UsageError:
            raise
        except UnicodeDecodeError as exc:
            raise self._not_text(exc) from None
        except Exception as exc:
            raise UsageError(f"{self.name}: cannot read ({describe_error(exc)})") from None

    def resolve_columns(self) -> None:
        with self._reading():
            columns = self._columns()
        if not columns:
            raise UsageError(f"{self.name}: no columns found")
        self.id_column = _pick(columns, self._wanted_id, ID_NAMES, "id column", self.name)
        if not self.id_column:
            raise UsageError(
                f"{self.name}: no ticket id column (looked for {', '.join(ID_NAMES)}; "
                f"found {_listing(columns)}); name it with {self._option('id_column')}"
            )
        self._pick_extras(columns)
        # Status-like columns a run that gives the status (or changes none) leaves unread.
        self.unread_status = [c for c in columns if _norm(c) in STATUS_NAMES]
        if self._need_status:
            self.status_column = _pick(
                columns, self._wanted_status, STATUS_NAMES, "status column", self.name
            )
            if not self.status_column and not self.extras and not self._status_optional:
                raise UsageError(
                    f"{self.name}: no status column (looked for {', '.join(STATUS_NAMES)}; "
                    f"found {_listing(columns)}); name it with {self._option('status_column')} "
                    f"or give {self._option('status')}"
                )
            if self.status_column == self.id_column:
                raise UsageError(
                    f"{self.name}: column {printable(self.id_column, 40)!r} cannot hold both "
                    "the ticket id and the status"
                )

    def _option(self, name: str) -> str:
        """How the caller names an option: a DataFrame's caller is the library's."""
        return f"{name}=" if self.frame is not None else f"--{name.replace('_', '-')}"

    def _pick_extras(self, columns: list[str]) -> None:
        """The change columns (and a comment template's) that the input has; absent ones are not."""
        for wanted in self._extra_wanted:
            found = _pick(columns, None, (_norm(wanted),), f"{wanted} column", self.name)
            if found:
                self.extras[wanted] = found

    def _not_text(self, exc: UnicodeDecodeError) -> UsageError:
        # The decoder's own offset counts from the start of its last block, not the file.
        assert self.path is not None
        offset, line = bad_byte(self.path, self._encoding)
        where = f"byte {offset:,}" + (f", line {line}" if line else "")
        return UsageError(
            f"{self.name}: not {ENCODING_NAMES.get(self._encoding, self._encoding)} text "
            f"({exc.reason} at {where}); save it as UTF-8"
        )

    # -- fingerprint ---------------------------------------------------------
    def fingerprint(self) -> str:
        if self.frame is None:
            assert self.path is not None
            return file_fingerprint(self.path)
        import pandas as pd

        cols = self._kept()
        hashed = pd.util.hash_pandas_object(self.frame[cols].astype(str), index=False)
        return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()

    # -- one more column's distinct values (a location column) -------------------
    def distinct(self, names: tuple[str, ...], most: int) -> tuple[str, dict[str, int]] | None:
        """The first column named one of `names` and its distinct non-empty cells, each with
        the first row holding it (None: no such column); at most `most` values are kept.
        An .xlsx is streamed with only the id and status cells, so it has none."""
        columns = [str(c) for c in self._columns()] if self._kind != "xlsx" else []
        found = [c for n in names for c in columns if _norm(c) == n]
        if not found:
            return None
        column, values = found[0], dict[str, int]()
        with self._reading():
            for row, cell in enumerate(self._cells(column), 1):
                value = clean_cell(cell).strip()
                if value and value not in values and len(values) < most:
                    values[value] = row
        return column, values

    def _cells(self, column: str) -> Iterator[Any]:
        if self.frame is not None:
            yield from self.frame[column].tolist()
        elif self._kind == "parquet":
            import pyarrow.parquet as pq

            assert self.path is not None
            yield from pq.read_table(self.path, columns=[column]).column(0).to_pylist()
        else:
            records = self._records()
            where = header_cells(next(records)).index(column)
            for record in records:
                yield record[where] if where < len(record) else ""

    # -- chunks ----------------------------------------------------------------
    def chunks(self) -> Iterator[Chunk]:
        with self._reading():
            yield from self._chunks()

    def _columns_in_chunks(self) -> Iterator[dict[str, list[Any]]]:
        """Chunks of the wanted columns as clean cells (`clean_cell`), CHUNK_ROWS rows at a time.

        Only the wanted cells of a row are kept, already cut: a 50,000-row chunk
        of an export with long descriptions holds ids and statuses, not the text.
        """
        wanted = self._kept()
        if self.frame is not None:
            derived = [c for c in DERIVED_COLUMNS if c in self.frame.columns]
            for start in range(0, len(self.frame), CHUNK_ROWS):
                part = self.frame.iloc[start : start + CHUNK_ROWS]
                chunk = {c: [clean_cell(v) for v in part[c].tolist()] for c in wanted}
                yield chunk | {c: part[c].tolist() for c in derived}
        elif self._kind == "parquet":
            assert self.path is not None
            yield from parquet_chunks(self.path, self.name, wanted, CHUNK_ROWS)
        else:
            records = self._records()
            where = self._wanted(next(records))
            columns: list[list[str]] = [[] for _ in wanted]
            for record in records:
                width = len(record)
                for cells, i in zip(columns, where, strict=True):
                    # A short row (fewer cells than the header) reads as empty cells.
                    cells.append(clean_cell(record[i]) if i < width else "")
                if len(columns[0]) == CHUNK_ROWS:
                    yield dict(zip(wanted, columns, strict=True))
                    columns = [[] for _ in wanted]
            if columns[0]:
                yield dict(zip(wanted, columns, strict=True))

    def _chunks(self) -> Iterator[Chunk]:
        row = 1
        for columns in self._columns_in_chunks():
            ids = columns[self.id_column]
            statuses = columns[self.status_column] if self.status_column else None
            extras = {w: columns[c] for w, c in self.extras.items()} or None
            if self.derived:
                skips = (
                    [clean_cell(v) for v in columns["skip_reason"]]
                    if "skip_reason" in columns
                    else None
                )
                sources = [int(v) for v in columns["source_row"]]
                yield Chunk(row, ids, statuses, sources, skips, extras)
            else:
                yield Chunk(row, ids, statuses, extras=extras)
            row += len(ids)


# Where standard input is spooled, under the reports folder; its files are named for what
# they hold in every message ("standard input"), not by their made-up names.
STDIN_FOLDER = ".stdin"


def spool_stdin(reports: Path) -> Path:
    """Copy standard input to a file so it can be hashed, sniffed and re-read on resume."""
    path = reports / STDIN_FOLDER / f"{secrets.token_hex(8)}.csv"
    with replacing(path, "wb", new=True) as out:
        shutil.copyfileobj(sys.stdin.buffer, out)
    return path


def open_source(
    source: str | Path | pd.DataFrame,
    *,
    id_column: str | None = None,
    status_column: str | None = None,
    need_status: bool = True,
    extra_columns: tuple[str, ...] = (),
    status_optional: bool = False,
) -> Source:
    """Check the input exists and find its columns; raise `UsageError` naming the problem.

    `extra_columns`: columns read when present (changes besides status, template fields).
    """
    columns = (id_column, status_column, need_status, extra_columns, status_optional)
    if not isinstance(source, (str, Path)):
        result = Source("DataFrame", None, source, *columns)
    else:
        path = Path(source)
        if not path.exists():
            raise UsageError(f"{printable(path, 200)}: no such file")
        if not path.is_file():
            # A directory, a FIFO (reading it could wait forever), a device.
            raise UsageError(f"{printable(path, 200)}: not a regular file")
        shown = "standard input" if path.parent.name == STDIN_FOLDER else str(path)
        result = Source(shown, path, None, *columns)
    result.resolve_columns()
    return result
