"""Render the per-row report from the journal, in input order, streaming.

The report is rewritten whole at the end of every run (including a stopped
one) into a temporary file that replaces the old one, so a reader never sees
half a report.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import UsageError
from ._journal import REPORT_COLUMNS, Journal

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "REPORT_COLUMNS",
    "REPORT_SUFFIXES",
    "beside",
    "check_report_path",
    "report_frame",
    "write_report",
]

REPORT_SUFFIXES = (".csv", ".jsonl", ".parquet")


def beside(report: Path, suffix: str) -> Path:
    """A file that belongs to a report: `x.csv` -> `x.journal`, `x.run.json`, ..."""
    return report.with_name(report.name.rsplit(".", 1)[0] + suffix)


def check_report_path(path: Path) -> None:
    if path.suffix.lower() not in REPORT_SUFFIXES:
        raise UsageError(
            f"report {path}: unknown format {path.suffix!r}; use {', '.join(REPORT_SUFFIXES)}"
        )


Batches = Iterator[list[tuple[Any, ...]]]


def _write_csv(path: Path, columns: tuple[str, ...], batches: Batches) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for batch in batches:
            writer.writerows(batch)


def _write_jsonl(path: Path, columns: tuple[str, ...], batches: Batches) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for batch in batches:
            handle.writelines(
                json.dumps(dict(zip(columns, row, strict=True))) + "\n" for row in batch
            )


_INTEGER_COLUMNS = frozenset({"row", "http_status", "attempts", "elapsed_ms", "source_row"})


def _write_parquet(path: Path, columns: tuple[str, ...], batches: Batches) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(c, pa.int64() if c in _INTEGER_COLUMNS else pa.string()) for c in columns])
    with pq.ParquetWriter(path, schema) as writer:
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    suffix = path.suffix.lower()
    writer = {".csv": _write_csv, ".jsonl": _write_jsonl, ".parquet": _write_parquet}[suffix]
    # A spreadsheet would run a cell starting with =, +, -, @ as a formula (CSV
    # injection, e.g. through a server's error text): CSV cells are neutralised.
    rows = journal.report_rows(columns, pending_reason=pending_reason, neutralise=suffix == ".csv")
    with contextlib.closing(rows):  # a failed write must not leave the journal locked
        writer(tmp, columns, rows)
    os.replace(tmp, path)
    return path


def report_frame(
    journal: Journal, pending_reason: str, columns: tuple[str, ...] = REPORT_COLUMNS
) -> pd.DataFrame:
    import pandas as pd

    rows = journal.report_rows(columns, pending_reason=pending_reason)
    with contextlib.closing(rows):
        frames = [pd.DataFrame.from_records(batch, columns=list(columns)) for batch in rows]
    return pd.concat(frames, ignore_index=True)
