"""The audit record beside each report (`<report>.run.json`): written, read and listed here only.

One JSON object per report: the latest run's options (no secrets), counts,
requests, exit code and what it was derived from, plus `invocations`, one
line per run of that report (a resumed batch has several). Readers elsewhere
(the job runner deciding whether to resume, `bulk retry`/`undo` naming the
batch, `bulk runs`) ask this module, so a malformed or planted file is judged
by one rule: a JSON object of at most MAX_BYTES, or nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._core._files import beside, replacing

__all__ = ["AUDIT_SUFFIX", "audit_path", "is_audit", "list_runs", "read_audit", "write_audit"]

AUDIT_SUFFIX = ".run.json"
# Real records are a few KB; a larger file is not one of ours and is not read whole.
MAX_BYTES = 16 * 1024 * 1024
_INVOCATION_KEYS = ("run_id", "started_at", "ended_at", "exit_code")


def audit_path(report: Path) -> Path:
    """Where the audit record of `report` lives: `x.csv` -> `x.run.json`."""
    return beside(report, AUDIT_SUFFIX)


def read_audit(path: Path) -> dict[str, Any] | None:
    """The record at `path`, or None when it is missing, unreadable or not a JSON object."""
    try:
        with open(path, "rb") as handle:
            record = json.loads(handle.read(MAX_BYTES))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def is_audit(path: Path) -> bool:
    """Whether the file at `path` is an audit record that bulk wrote (it may be overwritten)."""
    record = read_audit(path)
    return record is not None and str(record.get("tool", "")).startswith("bulk ")


def write_audit(path: Path, record: dict[str, Any]) -> None:
    """Replace the record at `path` with `record`, keeping the earlier runs' `invocations`."""
    history = (read_audit(path) or {}).get("invocations", [])
    if not isinstance(history, list):
        history = []
    history.append({k: record[k] for k in _INVOCATION_KEYS})
    with replacing(path) as handle:
        handle.write(json.dumps({**record, "invocations": history}, indent=2, default=str) + "\n")


def list_runs(folder: Path, limit: int = 20) -> list[dict[str, Any]]:
    """The latest `limit` records under `folder`, newest first, each with its `audit` path."""
    records = []
    for path in folder.rglob(f"*{AUDIT_SUFFIX}"):
        record = read_audit(path)
        if record is not None:
            records.append({**record, "audit": str(path)})
    records.sort(key=lambda r: str(r.get("ended_at", "")), reverse=True)
    return records[:limit]
