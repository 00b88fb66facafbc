"""The run's memory: every planned row and every outcome, in SQLite.

One file per report (`<report>.journal`). The engine never waits on the
disk: outcomes go into an in-memory inbox that a writer thread looks at every
50 ms and commits in one transaction (one statement per batch). Commits use
WAL with synchronous=NORMAL, so a commit survives the process being killed;
the writer syncs the log to disk once a second (and when it stops), so a power
cut takes back at most that second. Rows whose outcome was lost are sent again
on resume (a status PUT is idempotent) and read `unchanged`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Generator, Iterable
from itertools import chain, islice
from pathlib import Path
from typing import Any

from .._core._csvsafe import neutralise_sql
from .._core._exceptions import UsageError
from .._core._text import printable
from ..plan import PlannedRow
from ._changes import CHANGE_REPORT_SQL, CHANGE_SCHEMA, CHANGE_TEXT_COLUMNS, migrate_changes
from ._reads import Reads
from ._schema import (
    REPORT_COLUMNS,
    SCHEMA,
    TEXT_COLUMNS,
    WOULD_SQL,
    Outcome,
    connect,
    migrate,
    outcomes_sql,
    refuse_unless_ours,
)
from ._seconds import INSERT_SECOND, Second

__all__ = ["COMMIT_EVERY", "Journal"]

# The changes table too, even for a status-only batch (then empty): the read
# rules and the report's `would` ask whether a row changes more than status.
_SCHEMA = SCHEMA + CHANGE_SCHEMA

_BATCH = 2000  # rows per statement (2,016 padded): 9 parameters each, under SQLite's 32,766
# Seconds between the writer's looks at the inbox (and commits). Each commit
# costs the writer ~0.2 ms besides its rows, and its thread takes the GIL from
# the event loop for each statement: at 2,500 rows/s (20,000 rows, the plain
# server of bench/perf_cpu.py) the writer took 0.71 s of CPU at 10 ms, 0.32 s at
# 50 ms, 0.28 s at 100 ms. 50 ms is what a kill -9 may take back: at 10/s, none
# or one row's outcome, sent again on resume.
COMMIT_EVERY = 0.05
# A batch's statements are padded to a multiple of this many rows (with row 0,
# which no row has), so that the writer prepares a handful of statement shapes
# once and then reuses them from sqlite3's cache. Unpadded, each batch's size
# made a new statement, and preparing one of ~200 rows' placeholders cost
# ~1.2 ms. 20,000 rows at 2,500/s beside a busy event loop: the writer took
# 0.39-0.43 s of CPU unpadded, 0.34-0.37 s padded (three runs each).
_PAD = 32
# Planned rows go in this many to a statement: executemany steps one row at a
# time. Journal.add_planned of 20,000 rows took 85-154 ms so, 53-98 ms 64 to a
# statement (least and median of 10, alternating; in a bare table, 256 and 1,024
# a statement measured no better than 64).
_PLANNED = 64
_PLANNED_WIDTH = len(PlannedRow._fields)
_PLANNED_VALUES = f"({', '.join('?' * _PLANNED_WIDTH)})"
_INSERT_PLANNED = (
    "INSERT INTO rows (row, ticket_id, ticket_key, target_status, outcome, error, source_row)"
    " VALUES "
)
_INSERT_PLANNED_ONE = _INSERT_PLANNED + _PLANNED_VALUES
_INSERT_PLANNED_MANY = _INSERT_PLANNED + ", ".join([_PLANNED_VALUES] * _PLANNED)
_SYNC_EVERY = 1.0  # seconds between syncs of the log to disk
_NO_ROW = (None,) * (len(Outcome._fields) - 1) + (0,)  # an outcome for row 0: pads, changes nothing


class Journal(Reads):
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        refuse_unless_ours(path)
        try:
            self._conn = connect(path)
            self._conn.executescript(_SCHEMA)
            migrate(self._conn)
            migrate_changes(self._conn)
        except sqlite3.Error as exc:
            raise UsageError(f"{printable(path, 200)}: cannot open the journal ({exc})") from None
        self._lock = threading.Lock()
        # deque.append/popleft are atomic: the loop appends, the writer pops.
        self._inbox: deque[int | Outcome] = deque()
        self._seconds: deque[Second] = deque()  # one a second: see record_second
        self._stopping = threading.Event()
        self._writer: threading.Thread | None = None
        self._failure: BaseException | None = None

    # -- meta ------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        with self._lock:
            rows = self._conn.execute("SELECT key, value FROM meta").fetchall()
        return {k: json.loads(v) for k, v in rows}

    def add_retries(self, retries: int) -> None:
        """Add one run's retries to the batch's count (kept across resumes)."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO meta VALUES ('retries', ?) ON CONFLICT(key) DO UPDATE"
                " SET value = CAST(value AS INTEGER) + excluded.value",
                (retries,),
            )

    def set_meta(self, **values: Any) -> None:
        with self._lock:
            self._conn.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in values.items()],
            )

    # -- planning --------------------------------------------------------------
    def clear(self) -> None:
        """Start empty, ready for planning (a new file: faster than deleting a million rows)."""
        with self._lock:
            self._conn.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            self._conn = connect(self.path)
            self._conn.executescript(_SCHEMA)
            # Planning needs no durability: the plan counts only once `planned`
            # is set in meta, after settle_duplicates(); a crash before that
            # plans again. Skipping the fsyncs makes a million rows several
            # times faster to load.
            self._conn.execute("PRAGMA synchronous=OFF")

    def add_planned(self, rows: Iterable[PlannedRow]) -> None:
        rows = iter(rows)
        with self._lock:
            c = self._conn
            c.execute("BEGIN")
            try:
                while batch := list(islice(rows, _PLANNED)):
                    # One statement's values are flattened: a row one value short beside
                    # one a value long would shift columns where executemany refused it.
                    if any(len(row) != _PLANNED_WIDTH for row in batch):
                        raise ValueError(
                            f"a planned row does not have the journal's {_PLANNED_WIDTH} values"
                        )
                    if len(batch) == _PLANNED:
                        c.execute(_INSERT_PLANNED_MANY, list(chain.from_iterable(batch)))
                    else:  # the chunk's last few rows
                        c.executemany(_INSERT_PLANNED_ONE, batch)
            except BaseException:
                # None of the chunk, and no transaction left open (the input's reader
                # may raise mid-chunk: a line too long, a bad encoding).
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

    def settle_duplicates(self) -> None:
        """Same ticket twice: same status skips the later rows, different statuses void all."""
        with self._lock:
            c = self._conn
            c.execute("BEGIN")
            c.execute("CREATE INDEX IF NOT EXISTS rows_key ON rows (ticket_key)")
            # Candidates from the index alone (fast), details only for them: a
            # filter on `outcome` over every row would read all million rows. (CROSS
            # JOIN makes SQLite loop over the few candidates, not over the rows.)
            c.execute(
                """CREATE TEMP TABLE candidate AS
                   SELECT ticket_key FROM rows WHERE ticket_key IS NOT NULL
                   GROUP BY ticket_key HAVING COUNT(*) > 1"""
            )
            c.execute(
                """CREATE TEMP TABLE dup AS
                   SELECT rows.ticket_key, MIN(row) AS first, COUNT(*) AS n,
                          COUNT(DISTINCT target_status) AS kinds,
                          group_concat(DISTINCT target_status) AS statuses
                   FROM candidate CROSS JOIN rows ON rows.ticket_key = candidate.ticket_key
                   WHERE outcome IS NULL GROUP BY rows.ticket_key HAVING COUNT(*) > 1"""
            )
            c.execute(
                """UPDATE rows SET outcome = 'invalid',
                          error = 'conflicting duplicate: this ticket is in ' || dup.n ||
                                  ' rows (first row ' || dup.first || ') asking for ' ||
                                  dup.statuses || '; fix the input so each ticket has one status'
                   FROM dup WHERE rows.ticket_key = dup.ticket_key AND dup.kinds > 1
                     AND rows.outcome IS NULL"""
            )
            c.execute(
                """UPDATE rows SET outcome = 'skipped',
                          error = 'duplicate of row ' || dup.first
                   FROM dup WHERE rows.ticket_key = dup.ticket_key AND dup.kinds = 1
                     AND rows.row > dup.first AND rows.outcome IS NULL"""
            )
            c.execute("DROP TABLE dup")
            c.execute("DROP TABLE candidate")
            c.execute("COMMIT")
            c.execute("PRAGMA synchronous=NORMAL")

    # -- resume ----------------------------------------------------------------
    def reopen_in_flight(self) -> int:
        """Rows dispatched but not final when the last run died: they will be sent again."""
        with self._lock:
            c = self._conn
            c.execute("BEGIN")
            (n,) = c.execute(
                "SELECT COUNT(*) FROM rows WHERE started = 1 AND outcome IS NULL"
            ).fetchone()
            c.execute("UPDATE rows SET started = 0 WHERE started = 1")
            c.execute("COMMIT")
        return int(n)

    def pending(self, after_row: int, limit: int) -> list[tuple[int, str, str]]:
        with self._lock:
            return self._conn.execute(
                "SELECT row, ticket_key, target_status FROM rows"
                " WHERE row > ? AND outcome IS NULL ORDER BY row LIMIT ?",
                (after_row, limit),
            ).fetchall()

    # -- outcomes (from the event loop, never blocking it) --------------------
    def start_writer(self) -> None:
        self._writer = threading.Thread(target=self._write_loop, name="bulk-journal", daemon=True)
        self._writer.start()

    def mark_started(self, row: int) -> None:
        self._check()
        self._inbox.append(row)

    def record(self, outcome: Outcome) -> None:
        self._check()
        self._inbox.append(outcome)

    def record_second(self, second: Second) -> None:
        """The engine's counters of one second, inserted by the writer at its next look."""
        self._check()
        self._seconds.append(second)

    def _check(self) -> None:
        if self._failure is not None:
            raise RuntimeError(f"journal write failed: {self._failure}") from self._failure

    def _write_loop(self) -> None:
        # The writer polls the inbox instead of blocking on a queue: waking a
        # blocked thread on every row costs the event loop a GIL hand-off
        # (measured: ~27 us per row), while a poll every few ms costs nothing
        # per row and bounds the delay before a commit.
        conn = connect(self.path)
        inbox = self._inbox
        synced = time.monotonic()
        try:
            while True:
                stopping = self._stopping.wait(COMMIT_EVERY)
                # What has arrived since the last look, and no more: draining
                # until empty would chase a busy loop's every new row with a
                # tiny transaction of its own.
                waiting = len(inbox)
                while waiting > 0:
                    batch = [inbox.popleft() for _ in range(min(waiting, _BATCH))]
                    waiting -= len(batch)
                    outcomes = [i for i in batch if isinstance(i, tuple)]
                    # A row that starts and ends within one batch needs no start mark.
                    ended = {o[-1] for o in outcomes}
                    started = [i for i in batch if isinstance(i, int) and i not in ended]
                    conn.execute("BEGIN")
                    if started:
                        started += [0] * (-len(started) % _PAD)
                        marks = ",".join("?" * len(started))
                        conn.execute(f"UPDATE rows SET started = 1 WHERE row IN ({marks})", started)
                    if outcomes:
                        values = list(chain(*outcomes, _NO_ROW * (-len(outcomes) % _PAD)))
                        conn.execute(outcomes_sql(len(values) // len(_NO_ROW)), values)
                    conn.execute("COMMIT")
                while self._seconds:  # one row a second, on its own (autocommit)
                    conn.execute(INSERT_SECOND, self._seconds.popleft())
                if time.monotonic() - synced >= _SYNC_EVERY or stopping:
                    # In WAL mode with synchronous=NORMAL a checkpoint syncs the
                    # log: this bounds what a power cut can take back.
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    synced = time.monotonic()
                if stopping:
                    return
        except BaseException as exc:  # surfaced to the event loop by _check/close
            self._failure = exc
        finally:
            conn.close()

    def close_writer(self) -> None:
        """Flush every outcome recorded so far (blocking: call from a worker thread)."""
        if self._writer is not None:
            self._stopping.set()
            self._writer.join()
            self._writer = None
            self._stopping.clear()
        self._check()

    # -- reading back ------------------------------------------------------------
    def counts(self) -> dict[str, Any]:
        with self._lock:
            c = self._conn
            outcomes = dict(c.execute("SELECT outcome, COUNT(*) FROM rows GROUP BY outcome"))
            statuses = dict(
                c.execute(
                    "SELECT http_status, COUNT(*) FROM rows WHERE http_status IS NOT NULL"
                    " GROUP BY http_status ORDER BY http_status"
                )
            )
            requests, retries, dups = c.execute(
                "SELECT COALESCE(SUM(attempts), 0), COALESCE(SUM(MAX(attempts - 1, 0)), 0),"
                " COALESCE(SUM(outcome = 'skipped' AND error LIKE 'duplicate of row %'), 0)"
                " FROM rows"
            ).fetchone()
        pending = outcomes.pop(None, 0)
        counted = self.meta().get("retries")
        if isinstance(counted, int):
            # Counted by the engine: a row of several changes sends several calls,
            # and only a repeat of the same call is a retry (attempts - 1 is not).
            retries = counted
        return {
            "rows": sum(outcomes.values()) + pending,
            "outcomes": outcomes,
            "pending": pending,
            "duplicates": dups,
            "http_status": {str(k): v for k, v in statuses.items()},
            "requests": requests,
            "retries": retries,
        }

    def report_rows(
        self,
        columns: tuple[str, ...] = REPORT_COLUMNS,
        *,
        pending_reason: str = "not sent",
        neutralise: bool = False,
        batch: int = 10_000,
    ) -> Generator[list[tuple[Any, ...]], None, None]:
        """Rows in input order; a row not final reads `skipped` with `pending_reason`.

        `neutralise` prefixes text a spreadsheet would run as a formula with `'`
        (the rule of `bulk._core._csvsafe`).
        Both are done by SQLite, in C: a Python pass over each cell of a
        million-row report cost more than writing it.
        """
        expressions = []
        for column in columns:
            value = CHANGE_REPORT_SQL.get(column, column)
            if column == "outcome":
                value = "COALESCE(outcome, 'skipped')"
            elif column == "would":
                value = f"({WOULD_SQL})"
            elif column == "error":
                # A row an interrupted undo owes a put-back for: the guard's words for a
                # failed put-back, so `bulk retry` of this report sends it (batch/_derived).
                value = (
                    "CASE WHEN outcome IS NULL AND put_back IS NOT NULL THEN"
                    " 'changed since the batch (was ' || put_back || ' when the undo wrote '"
                    " || target_status || '); putting ' || put_back || ' back failed: ' || :reason"
                    " WHEN outcome IS NULL THEN :reason ELSE error END"
                )
            if neutralise and (column in TEXT_COLUMNS or column in CHANGE_TEXT_COLUMNS):
                value = neutralise_sql(value)
            expressions.append(f"{value} AS {column}")
        query = f"SELECT {', '.join(expressions)} FROM rows ORDER BY row"
        with self._lock:
            cursor = self._conn.execute(query, {"reason": pending_reason})
            while rows := cursor.fetchmany(batch):
                yield rows

    def close(self) -> None:
        self.close_writer()
        with self._lock:
            self._conn.close()
