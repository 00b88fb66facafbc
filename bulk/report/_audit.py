"""The audit record beside each report (`<report>.run.json`): written, read and listed here only.

One JSON object per report: the latest run's options (no secrets), counts,
requests, exit code and what it was derived from, plus `invocations`, one
line per run of that report (a resumed batch has several). Readers elsewhere
(the job runner deciding whether to resume, `bulk retry`/`undo` naming the
batch, `bulk runs`) ask this module, so a malformed or planted file is judged
by one rule: a JSON object of at most MAX_BYTES, read without following a
link or waiting on a FIFO, or nothing (never a traceback). What `bulk runs`
shows of a record is made printable here (`RunLine`): a planted record's
escape sequences never reach a terminal.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._core._files import beside, read_file, replacing
from .._core._text import printable

__all__ = [
    "AUDIT_SUFFIX",
    "RunLine",
    "audit_path",
    "batch_of",
    "is_audit",
    "list_runs",
    "read_audit",
    "recorded_base_url",
    "write_audit",
]

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
        raw = read_file(path, MAX_BYTES)
        record = json.loads(raw) if raw is not None else None
    except (OSError, ValueError, RecursionError):  # RecursionError: `[[[[...` nested deep
        return None
    return record if isinstance(record, dict) else None


_BATCH_ID = re.compile(r"[0-9a-f]{32}")


def batch_of(report: Path) -> str | None:
    """The batch id in `report`'s audit record, if there is one of bulk's shape."""
    batch = (read_audit(audit_path(report)) or {}).get("batch_id")
    return batch if isinstance(batch, str) and _BATCH_ID.fullmatch(batch) else None


def recorded_base_url(report: Path) -> str | None:
    """The API root the batch of `report` went to, as its audit record says, if it says.

    `retry` and `undo` send there, credentials and all, so only a record of
    this user's that nobody else may write counts: a link, another user's
    file or a group-writable one is refused (exit 2), as the journal is.
    """
    raw = read_file(audit_path(report), MAX_BYTES, own="audit record")
    try:
        record = json.loads(raw) if raw is not None else None
    except (ValueError, RecursionError):
        return None
    url = record.get("base_url") if isinstance(record, dict) else None
    return url if isinstance(url, str) and url else None


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
    # Not group-writable whatever the umask: `recorded_base_url` trusts it later.
    with replacing(path, perms=0o644) as handle:
        handle.write(json.dumps({**record, "invocations": history}, indent=2, default=str) + "\n")


@dataclass(frozen=True)
class RunLine:
    """What `bulk runs` shows of one record: every field printable, whatever the file held."""

    ended_at: str
    exit_code: str
    kind: str
    counts: str  # `failed=1 updated=4`
    report: str
    verdict: str = "?"  # `done`, `done with failures`, `stopped`, ...
    page: str = ""  # the run's page beside the record, when there is one


def _run_line(record: dict[str, Any], path: Path) -> RunLine:
    def text(value: object, keep: int) -> str:
        return printable(value, keep) if isinstance(value, str) and value else "?"

    counts = record.get("counts")
    outcomes = counts.get("outcomes") if isinstance(counts, dict) else None
    shown = " ".join(
        f"{printable(k, 20)}={v}"
        for k, v in sorted((outcomes if isinstance(outcomes, dict) else {}).items())
        if isinstance(v, int)
    )
    derived = record.get("derived_from")
    kind = derived.get("kind") if isinstance(derived, dict) else None
    code = record.get("exit_code")
    from ._page import PAGE_SUFFIX, is_page  # the page module imports this one
    from ._verdict import verdict

    clean = {
        str(k): v
        for k, v in (outcomes if isinstance(outcomes, dict) else {}).items()
        if isinstance(v, int)
    }
    pending = counts.get("pending") if isinstance(counts, dict) else None
    rows = counts.get("rows") if isinstance(counts, dict) else None
    # Rows never sent are in no outcome: shown, the counts add up to the rows. Held back
    # on purpose (--limit, a dry run) they are not unsent (CONTRACT).
    if isinstance(pending, int) and not isinstance(pending, bool) and pending > 0:
        options = record.get("options")
        held = isinstance(options, dict) and (
            options.get("dry_run") is True
            or (options.get("limit") is not None and record.get("stop_reason") is None)
        )
        shown += f" {'held-back' if held else 'not-sent'}={pending}"
    if isinstance(rows, int) and not isinstance(rows, bool):
        shown = f"rows={rows} {shown}"
    judged = verdict(record, clean, pending if isinstance(pending, int) else 0)
    page = path.with_name(path.name.removesuffix(AUDIT_SUFFIX) + PAGE_SUFFIX)
    return RunLine(
        ended_at=text(str(record.get("ended_at") or "")[:19], 19),
        exit_code=str(code) if isinstance(code, int) else "?",
        kind=text(kind, 10) if kind is not None else "run",
        counts=shown,
        report=text(record.get("report"), 200) if record.get("report") else printable(path, 200),
        verdict=judged.title,
        page=printable(page, 200) if is_page(page) else "",
    )


def list_runs(folder: Path, limit: int = 20) -> list[RunLine]:
    """The latest `limit` records under `folder`, newest first, made printable."""
    records = []
    for path in folder.rglob(f"*{AUDIT_SUFFIX}"):
        record = read_audit(path)
        if record is not None:
            records.append((str(record.get("ended_at", "")), _run_line(record, path)))
    records.sort(key=lambda pair: pair[0], reverse=True)
    return [line for _, line in records[:limit]]
