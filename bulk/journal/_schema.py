"""The journal's file: its schema, the shape of an outcome, and who may open it.

A journal is a SQLite file that carries bulk's application id, owned by the
user running bulk and writable by nobody else: bulk opens, and `--fresh`
deletes, only such files (a journal planted in a shared folder would
otherwise send its rows with the user's credentials). Anyone else who needs to know what a
journal planned (a job deciding whether to resume) reads it through
`read_meta`, never with SQL of its own.
"""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path
from typing import Any, NamedTuple

from .._core._exceptions import UsageError
from .._core._files import refuse_foreign
from .._core._text import printable
from ._seconds import SECONDS_TABLE

__all__ = [
    "ADDED_COLUMNS",
    "REPORT_COLUMNS",
    "TEXT_COLUMNS",
    "WOULD_SQL",
    "Outcome",
    "changed_rows",
    "connect",
    "held_rows",
    "migrate",
    "outcomes_sql",
    "planned_fingerprint",
    "read_meta",
    "refuse_unless_ours",
]

# Marks a SQLite file as a journal of bulk's ("bulk" in ASCII), in the file's
# header: bulk opens, and `--fresh` deletes, only files that carry it.
_APPLICATION_ID = 0x62756C6B
_SQLITE_MAGIC = b"SQLite format 3\x00"
SCHEMA = (
    f"""
PRAGMA application_id = {_APPLICATION_ID};
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    row INTEGER PRIMARY KEY,        -- 1-based input position
    ticket_id TEXT NOT NULL,        -- as given, trimmed
    ticket_key TEXT,                -- canonical id; NULL when invalid
    target_status TEXT NOT NULL,
    outcome TEXT,                   -- NULL until final
    previous_status TEXT,
    http_status INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    activity_id TEXT,
    elapsed_ms INTEGER,
    finished_at TEXT,
    started INTEGER NOT NULL DEFAULT 0, -- dispatched and not yet final
    source_row INTEGER,             -- retry/undo: the row of the report it came from
    -- Reading before writing (NULL until read): what the ticket was, and when.
    current_status TEXT,            -- NULL after a read: not found (or read_error)
    update_date TEXT,
    status_update_date TEXT,
    location_ref TEXT,
    read_at TEXT,
    read_error TEXT,                -- the read failed: why
    expected_status TEXT,           -- undo: the status the batch set, which must still hold
    expected_since TEXT,            -- undo: when the batch set it (its report's finished_at)
    verified TEXT,                  -- --verify: 'yes' or 'drifted: now X'
    put_back TEXT                   -- undo: an agent's status overwritten, owed back (journaled
                                    -- before the put-back is sent, so a resume still owes it)
);
"""
    + SECONDS_TABLE
)
# Columns added after the first release, with their types: a journal written
# before them gains them on opening (ALTER TABLE ADD COLUMN keeps every row).
ADDED_COLUMNS = (
    ("current_status", "TEXT"),
    ("update_date", "TEXT"),
    ("status_update_date", "TEXT"),
    ("location_ref", "TEXT"),
    ("read_at", "TEXT"),
    ("read_error", "TEXT"),
    ("expected_status", "TEXT"),
    ("verified", "TEXT"),
    ("put_back", "TEXT"),
    ("expected_since", "TEXT"),
)


class Outcome(NamedTuple):
    """One row's result from the engine, in the order of `outcomes_sql`'s VALUES.

    A tuple, so a batch of them is flattened straight into one statement's
    parameters (`bench/journal.py` measures that path).
    """

    outcome: str | None  # None: not final (the run stopped before an answer)
    previous_status: str | None
    http_status: int | None
    attempts: int  # requests sent for this row in this run
    error: str | None
    activity_id: str | None
    elapsed_ms: int | None
    finished_at: str | None
    row: int


# Columns holding text from the input or the server (candidates for CSV injection).
TEXT_COLUMNS = frozenset(
    {"ticket_id", "target_status", "previous_status", "error", "activity_id"}
    | {"current_status", "status_update_date", "read_at", "would", "verified", "expected_status"}
    | {"expected_since"}
)
# A row that changes more than its status (assignee, type, comment): a status
# already at its target settles that change alone, not the row.
OTHER_CHANGES_SQL = "EXISTS (SELECT 1 FROM changes c WHERE c.row = rows.row AND c.kind != 'status')"
# An undo's ticket whose status was set after its batch set it (to the batch's status again,
# say: an agent reopened it, then closed it): its statusUpdateDate is later than the batch's
# row finished, by more than the server's clock runs from this machine's (`clock_skew` in
# the meta, the median over the batch's tickets: Reads.estimate_clock_skew) and a minute.
TOUCHED_SINCE_SQL = (
    "(expected_since IS NOT NULL AND julianday(status_update_date) > julianday(expected_since)"
    " + (COALESCE((SELECT CAST(value AS REAL) FROM meta WHERE key = 'clock_skew'), 0) + 60.0)"
    " / 86400)"
)
# What a read says would happen to a row (the report's `would`; NULL: not read).
WOULD_SQL = (
    """CASE WHEN outcome = 'invalid' THEN 'invalid'
    WHEN read_at IS NULL THEN NULL
    WHEN read_error IS NOT NULL THEN 'not read: ' || read_error
    WHEN current_status IS NULL THEN 'not found'
    WHEN expected_status IS NOT NULL AND (current_status != expected_status OR """
    + TOUCHED_SINCE_SQL
    + """)
        AND NOT (current_status = target_status AND NOT """
    + OTHER_CHANGES_SQL
    + """)
        THEN 'changed since the batch'
    WHEN current_status = target_status AND NOT """
    + OTHER_CHANGES_SQL
    + """
        THEN 'already at target'
    WHEN current_status = target_status THEN 'would update (status already at target)'
    ELSE 'would update' END"""
)
# The report's columns; those after `finished_at` came with reading before
# writing (CONTRACT: new columns are added after the existing ones).
REPORT_COLUMNS = (
    "row",
    "ticket_id",
    "target_status",
    "outcome",
    "previous_status",
    "http_status",
    "attempts",
    "error",
    "activity_id",
    "elapsed_ms",
    "finished_at",
    "current_status",
    "status_update_date",
    "read_at",
    "would",
    "verified",
)


def outcomes_sql(n: int) -> str:
    """One UPDATE for a whole batch of outcomes.

    One statement, not `executemany`: sqlite3 releases the GIL around every
    step, and with one step per row the event loop thread lost the GIL to the
    writer twice per row (measured: ~100 us of CPU per row, more than SQLite's
    own work). One step per batch costs one hand-off per batch.
    """
    values = ",".join(["(?,?,?,?,?,?,?,?,?)"] * n)
    return (
        "UPDATE rows SET outcome = v.column1, previous_status = v.column2,"
        " http_status = v.column3, attempts = rows.attempts + v.column4, error = v.column5,"
        " activity_id = v.column6, elapsed_ms = v.column7, finished_at = v.column8, started = 0"
        f" FROM (VALUES {values}) AS v WHERE rows.row = v.column9"
    )


def migrate(conn: sqlite3.Connection) -> None:
    """Give a journal from an earlier version the columns added since (all nullable)."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(rows)")}
    for name, kind in ADDED_COLUMNS:
        if name not in have:
            conn.execute(f"ALTER TABLE rows ADD COLUMN {name} {kind}")


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL: a commit survives the process dying (kill -9) at once; against a
    # power cut the WAL is synced by the writer's checkpoint every second.
    # FULL (an fsync per commit) measured ~25% more CPU per row at 3,000 rows/s.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def refuse_unless_ours(path: Path) -> None:
    """Refuse (exit 2) an existing file at `path` that is not a journal bulk created."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    shown = printable(path, 200)
    if stat.S_ISLNK(info.st_mode):
        raise UsageError(
            f"{shown}: the journal is a symbolic link; bulk does not write through links"
        )
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{shown}: the journal path is not a regular file")
    refuse_foreign(info, path, "journal")
    if info.st_size == 0:
        return  # nothing to lose (and what a crash right after creating it leaves)
    with open(path, "rb") as handle:
        header = handle.read(len(_SQLITE_MAGIC))
    if header != _SQLITE_MAGIC or not _is_ours(path):
        raise UsageError(
            f"{shown}: exists and is not a journal of bulk's; bulk will not open, change or "
            "delete it (move it, or choose another --report)"
        )


def _is_ours(path: Path) -> bool:
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            (application_id,) = conn.execute("PRAGMA application_id").fetchone()
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    # Journals from before the application id carry bulk's two tables.
    return bool(
        application_id == _APPLICATION_ID or (application_id == 0 and {"meta", "rows"} <= tables)
    )


def _read_only(path: Path, sql: str) -> list[Any] | None:
    """`sql`'s rows from the journal file at `path`, opened read-only; None if unreadable."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return None


def read_meta(path: Path) -> dict[str, Any]:
    """A journal's meta, read-only; empty when there is no such file or it is not bulk's."""
    try:
        refuse_unless_ours(path)
    except UsageError:
        return {}
    return _meta(path) if path.is_file() else {}


def _meta(path: Path) -> dict[str, Any]:
    """The meta of a journal already judged to be bulk's; empty when unreadable."""
    rows = _read_only(path, "SELECT key, value FROM meta") or []
    try:
        return {key: json.loads(value) for key, value in rows}
    except ValueError:
        return {}


def held_rows(path: Path, batch_id: str | None) -> frozenset[int]:
    """The rows the unfinished batch `batch_id` (its journal at `path`) still answers for:
    those it has not sent, and those it finished after its report was last written could
    say so (a run killed before its report). Empty when there is no journal or its batch
    is complete.

    Raises `UsageError` when a journal is there but cannot say: unreadable, still planning
    (a run killed then), or another batch's (a `--fresh` run killed before its report).
    """
    return _batch_rows(path, batch_id, "outcome IS NULL OR outcome IN ('updated', 'unchanged')")


def changed_rows(path: Path, batch_id: str | None) -> frozenset[int]:
    """The rows the unfinished batch `batch_id` has sent and seen applied, for an undo to
    compare with the report (whose rows a run killed before its report cannot show); the
    same refusals as `held_rows`."""
    return _batch_rows(path, batch_id, "outcome IN ('updated', 'unchanged')")


def _batch_rows(path: Path, batch_id: str | None, where: str) -> frozenset[int]:
    if not path.exists():
        return frozenset()
    refuse_unless_ours(path)
    meta = _meta(path)
    shown = printable(path, 200)
    if batch_id is not None and meta.get("batch_id") not in (None, batch_id):
        raise UsageError(
            f"{shown} is another batch's journal (a --fresh run that did not finish?); "
            "finish that run with its own command first"
        )
    if meta.get("complete"):
        return frozenset()
    if meta and not meta.get("planned"):
        raise UsageError(f"{shown}: its run was stopped while planning; rerun its command")
    found = _read_only(path, f"SELECT row FROM rows WHERE {where}")
    if found is None or not meta:
        raise UsageError(f"{shown}: cannot read this journal")
    return frozenset(row for (row,) in found)


def planned_fingerprint(path: Path) -> str | None:
    """The input SHA-256 that the journal at `path` planned, if it planned one."""
    meaning = read_meta(path).get("meaning")
    found = meaning.get("input_sha256") if isinstance(meaning, dict) else None
    return found if isinstance(found, str) else None
