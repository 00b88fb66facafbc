"""Read an input (file, stdin or DataFrame) as chunks of (id, status) strings.

Large inputs are never held whole: CSV/TSV/JSONL are read with pandas'
`chunksize`, Parquet by record batch, and only the two columns needed are
kept. (XLSX is the exception: a sheet holds at most ~1M rows and openpyxl
offers no chunked read through pandas.)
"""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DERIVED_COLUMNS", "ID_NAMES", "STATUS_NAMES", "Chunk", "Source", "open_source"]

CHUNK_ROWS = 50_000
SUFFIXES = (".csv", ".tsv", ".txt", ".xlsx", ".parquet", ".jsonl", ".ndjson")
ID_NAMES = ("ticket_id", "ticketid", "ticket", "ticket_ref", "ticketref", "id", "uuid")
STATUS_NAMES = ("target_status", "targetstatus", "new_status", "status")
DERIVED_COLUMNS = ("source_row", "skip_reason")


@dataclass(frozen=True, slots=True)
class Chunk:
    first_row: int  # 1-based input position of the chunk's first row
    ids: list[str]
    statuses: list[str] | None  # None when the input has no status column
    # Only for batches derived from a report (retry, undo):
    source_rows: list[int] | None = None  # the row in the report it came from
    skips: list[str] | None = None  # non-empty: decided not to send, with this reason


def _norm(name: object) -> str:
    return str(name).strip().lower().replace(" ", "_").replace("-", "_")


def _pick(columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str) -> str:
    if wanted is not None:
        for column in columns:
            if column == wanted or _norm(column) == _norm(wanted):
                return column
        raise UsageError(f"no column {wanted!r} ({what}); columns are: {', '.join(columns)}")
    by_norm = {_norm(c): c for c in columns}
    for candidate in candidates:
        if candidate in by_norm:
            return by_norm[candidate]
    return ""


def _as_strings(values: Any) -> list[str]:
    # Missing cells (NaN/None) become "" so the plan reports them as empty.
    return ["" if v is None or v != v else str(v) for v in values]


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
    ) -> None:
        self.name = name
        self.path = path
        self.frame = frame
        self._wanted_id = id_column
        self._wanted_status = status_column
        self._need_status = need_status
        self.id_column = ""
        self.status_column = ""
        self._sep = ","
        self._kind = "frame" if frame is not None else _kind_of(path)
        self.derived = frame is not None and "source_row" in frame.columns

    # -- columns -------------------------------------------------------------
    def _columns(self) -> list[str]:
        if self.frame is not None:
            return [str(c) for c in self.frame.columns]
        assert self.path is not None
        if self._kind == "csv":
            return self._csv_header()
        if self._kind == "parquet":
            import pyarrow.parquet as pq

            return list(pq.ParquetFile(self.path).schema_arrow.names)
        if self._kind == "xlsx":
            import pandas as pd

            return [str(c) for c in pd.read_excel(self.path, nrows=0).columns]
        import pandas as pd

        first = pd.read_json(self.path, lines=True, nrows=1, dtype=False)
        return [str(c) for c in first.columns]

    def _csv_header(self) -> list[str]:
        assert self.path is not None
        with open(self.path, encoding="utf-8-sig", newline="") as handle:
            sample = handle.read(64 * 1024)
        if not sample.strip():
            raise UsageError(f"{self.name}: the file is empty")
        if self.path.suffix.lower() == ".tsv":
            self._sep = "\t"
        else:
            try:
                self._sep = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
            except csv.Error:
                self._sep = ","  # one column, or too irregular to sniff: plain CSV
        header = next(csv.reader(io.StringIO(sample), delimiter=self._sep))
        return [h.strip() for h in header]

    def resolve_columns(self) -> None:
        try:
            columns = self._columns()
        except UsageError:
            raise
        except UnicodeDecodeError as exc:
            raise UsageError(
                f"{self.name}: not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
        except Exception as exc:
            raise UsageError(f"{self.name}: cannot read ({type(exc).__name__}: {exc})") from None
        if not columns:
            raise UsageError(f"{self.name}: no columns found")
        self.id_column = _pick(columns, self._wanted_id, ID_NAMES, "--id-column")
        if not self.id_column:
            raise UsageError(
                f"{self.name}: no ticket id column (looked for {', '.join(ID_NAMES)}; "
                f"found {', '.join(columns)}); name it with --id-column"
            )
        if self._need_status:
            self.status_column = _pick(
                columns, self._wanted_status, STATUS_NAMES, "--status-column"
            )
            if not self.status_column:
                raise UsageError(
                    f"{self.name}: no status column (looked for {', '.join(STATUS_NAMES)}; "
                    f"found {', '.join(columns)}); name it with --status-column or give --status"
                )

    # -- fingerprint ---------------------------------------------------------
    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        if self.frame is not None:
            import pandas as pd

            cols = [c for c in (self.id_column, self.status_column) if c]
            hashed = pd.util.hash_pandas_object(self.frame[cols].astype(str), index=False)
            digest.update(hashed.to_numpy().tobytes())
        else:
            assert self.path is not None
            with open(self.path, "rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
        return digest.hexdigest()

    # -- chunks ----------------------------------------------------------------
    def chunks(self) -> Iterator[Chunk]:
        try:
            yield from self._chunks()
        except UsageError:
            raise
        except UnicodeDecodeError as exc:
            raise UsageError(
                f"{self.name}: not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
        except Exception as exc:
            raise UsageError(f"{self.name}: cannot read ({type(exc).__name__}: {exc})") from None

    def _frames(self) -> Iterator[pd.DataFrame]:
        import pandas as pd

        cols = [c for c in (self.id_column, self.status_column) if c]
        if self.frame is not None:
            cols += [c for c in DERIVED_COLUMNS if c in self.frame.columns]
            for start in range(0, len(self.frame), CHUNK_ROWS):
                yield self.frame.iloc[start : start + CHUNK_ROWS][cols]
            return
        assert self.path is not None
        if self._kind == "csv":
            reader = pd.read_csv(
                self.path,
                sep=self._sep,
                dtype=str,
                keep_default_na=False,
                encoding="utf-8-sig",
                chunksize=CHUNK_ROWS,
                skipinitialspace=True,
                usecols=lambda c: str(c).strip() in cols,
            )
            with reader:
                for frame in reader:
                    frame.columns = [str(c).strip() for c in frame.columns]
                    yield frame
        elif self._kind == "parquet":
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(self.path).iter_batches(CHUNK_ROWS, columns=cols):
                yield batch.to_pandas()
        elif self._kind == "xlsx":
            frame = pd.read_excel(self.path, dtype=str, keep_default_na=False, usecols=cols)
            for start in range(0, len(frame), CHUNK_ROWS):
                yield frame.iloc[start : start + CHUNK_ROWS]
        else:
            with pd.read_json(
                self.path, lines=True, dtype=False, chunksize=CHUNK_ROWS
            ) as json_reader:
                for frame in json_reader:
                    yield frame.reindex(columns=cols)

    def _chunks(self) -> Iterator[Chunk]:
        row = 1
        for frame in self._frames():
            ids = _as_strings(frame[self.id_column].tolist())
            statuses = (
                _as_strings(frame[self.status_column].tolist()) if self.status_column else None
            )
            if self.derived:
                skips = (
                    _as_strings(frame["skip_reason"].tolist()) if "skip_reason" in frame else None
                )
                sources = [int(v) for v in frame["source_row"].tolist()]
                yield Chunk(row, ids, statuses, sources, skips)
            else:
                yield Chunk(row, ids, statuses)
            row += len(ids)


def _kind_of(path: Path | None) -> str:
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
    raise UsageError(f"{path}: unsupported input type {suffix!r} (use {', '.join(SUFFIXES)})")


def spool_stdin(folder: Path) -> Path:
    """Copy standard input to a file so it can be hashed, sniffed and re-read on resume."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("wb", dir=folder, suffix=".csv", delete=False) as out:
        shutil.copyfileobj(sys.stdin.buffer, out)
    return Path(out.name)


def open_source(
    source: str | Path | pd.DataFrame,
    *,
    id_column: str | None = None,
    status_column: str | None = None,
    need_status: bool = True,
) -> Source:
    """Check the input exists and find its columns; raise `UsageError` naming the problem."""
    columns = (id_column, status_column, need_status)
    if not isinstance(source, (str, Path)):
        result = Source("DataFrame", None, source, *columns)
    else:
        path = Path(source)
        if not path.exists():
            raise UsageError(f"{path}: no such file")
        if not path.is_file():
            raise UsageError(f"{path}: not a file")
        result = Source(str(path), path, None, *columns)
    result.resolve_columns()
    return result
