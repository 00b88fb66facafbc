"""Render the per-row report from the journal, in input order, streaming.

The report is rewritten whole at the end of every run (including a stopped
one) into a temporary file that replaces the old one, so a reader never sees
half a report. Before a run starts, `check_outputs` makes sure that none of
the run's files is the input, a link, or a file bulk did not write.
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .._core._exceptions import UsageError
from .._core._files import beside, refuse_link, replacing, same_file
from .._core._text import printable
from ..journal import REPORT_COLUMNS, Journal
from ._audit import audit_path, is_audit
from ._page import is_page, page_path

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "REPORT_SUFFIXES",
    "check_outputs",
    "check_report_path",
    "report_frame",
    "write_report",
]

REPORT_SUFFIXES = (".csv", ".jsonl", ".parquet")


def check_report_path(path: Path) -> None:
    if path.suffix.lower() not in REPORT_SUFFIXES:
        raise UsageError(
            f"report {path}: unknown format {path.suffix!r}; use {', '.join(REPORT_SUFFIXES)}"
        )


def check_outputs(report: Path, input_path: Path | None, dry_run: bool) -> None:
    """Refuse (exit 2, before anything is sent) a run whose files would harm other files.

    None of the report, journal, lock and audit record may be the input (a
    report written over its input lost it), a symbolic link, or anything but a
    regular file; an existing report or audit record must be bulk's own.
    """
    journal = beside(report, ".journal")
    outputs = {"report": report, "page": page_path(report)}
    if not dry_run:  # a dry run keeps its journal in a private folder, and no lock or audit
        outputs |= {
            "journal": journal,
            "journal's log": Path(f"{journal}-wal"),
            "journal's index": Path(f"{journal}-shm"),
            "lock file": beside(report, ".lock"),
            "audit record": audit_path(report),
        }
    for what, path in outputs.items():
        shown = printable(path, 200)
        refuse_link(path, what)
        if input_path is not None and same_file(path, input_path):
            raise UsageError(
                f"{shown}: the {what} would overwrite the input {printable(input_path, 200)}; "
                "choose another --report"
            )
        if path.exists() and not path.is_file():
            raise UsageError(f"{shown}: the {what} path exists and is not a regular file")
    if dry_run and audit_path(report).is_file():
        # Only a real run leaves an audit record: its report is what undo and retry read.
        raise UsageError(
            f"{printable(report, 200)}: the report of a real run, not a dry run (its audit "
            "record is beside it, and undo and retry read both); a dry run writes its own: "
            "choose another --report"
        )
    for what, path, ours in (
        ("a report", report, _is_report),
        ("an audit record", audit_path(report), is_audit),
        ("a page", page_path(report), is_page),
    ):
        if path.is_file() and path.stat().st_size and not ours(path):
            raise UsageError(
                f"{printable(path, 200)}: exists and is not {what} bulk wrote; bulk will not "
                "overwrite it (move it, or choose another --report)"
            )


_SNIFF_BYTES = 64 * 1024


def _is_report(path: Path) -> bool:
    """Whether an existing file looks like a report of bulk's (its first columns)."""
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            names = set(pq.read_schema(path).names)
        else:
            with open(path, "rb") as handle:
                first = handle.read(_SNIFF_BYTES).split(b"\n", 1)[0].decode("utf-8", "replace")
            if path.suffix.lower() == ".jsonl":
                names = set(json.loads(first))
            else:
                names = set(next(csv.reader([first]), []))
    except Exception:  # unreadable, not JSON, not Parquet: not a report of ours
        return False
    return {"row", "ticket_id", "outcome"} <= names


Batches = Iterator[list[tuple[Any, ...]]]


def _write_csv(handle: IO[Any], columns: tuple[str, ...], batches: Batches) -> None:
    writer = csv.writer(handle)
    writer.writerow(columns)
    for batch in batches:
        writer.writerows(batch)


def _write_jsonl(handle: IO[Any], columns: tuple[str, ...], batches: Batches) -> None:
    for batch in batches:
        handle.writelines(json.dumps(dict(zip(columns, row, strict=True))) + "\n" for row in batch)


_INTEGER_COLUMNS = frozenset({"row", "http_status", "attempts", "elapsed_ms", "source_row"})


def _write_parquet(handle: IO[Any], columns: tuple[str, ...], batches: Batches) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(c, pa.int64() if c in _INTEGER_COLUMNS else pa.string()) for c in columns])
    with pq.ParquetWriter(handle, schema) as writer:
        for batch in batches:
            arrays = [list(c) for c in zip(*batch, strict=True)]
            writer.write_batch(pa.record_batch(arrays, schema=schema))


def write_report(
    journal: Journal,
    path: Path,
    *,
    pending_reason: str = "not sent",
    columns: tuple[str, ...] = REPORT_COLUMNS,
) -> Path:
    check_report_path(path)
    suffix = path.suffix.lower()
    writer = {".csv": _write_csv, ".jsonl": _write_jsonl, ".parquet": _write_parquet}[suffix]
    # A spreadsheet would run a cell starting with =, +, -, @ as a formula (CSV
    # injection, e.g. through a server's error text): CSV cells are neutralised.
    rows = journal.report_rows(columns, pending_reason=pending_reason, neutralise=suffix == ".csv")
    if suffix == ".parquet":
        opened = replacing(path, "wb")
    else:
        opened = replacing(path, "w", newline="", encoding="utf-8")
    with contextlib.closing(rows), opened as handle:  # a failed write must not lock the journal
        writer(handle, columns, rows)
    return path


def report_frame(
    journal: Journal, pending_reason: str, columns: tuple[str, ...] = REPORT_COLUMNS
) -> pd.DataFrame:
    import pandas as pd

    rows = journal.report_rows(columns, pending_reason=pending_reason)
    with contextlib.closing(rows):
        frames = [pd.DataFrame.from_records(batch, columns=list(columns)) for batch in rows]
    return pd.concat(frames, ignore_index=True)
