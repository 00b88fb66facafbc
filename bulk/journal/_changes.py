"""Each change of a row (assignee, type, comment, status) and its state, in the journal's file.

A batch that changes more than status keeps one `changes` row per change.
A change is final once its `state` is set; a resume sends only the changes
of a row that are not, in their order, so a finished change is never sent
again. A comment's POST is not idempotent, so its attempt is committed as
`started` BEFORE the request goes out (`begin`, which waits for the commit):
a crash between sending and journaling leaves `started`, which a resume
resolves by reading the ticket rather than posting again.

Writes here are few (a handful per row, at the API's 10/s) and each must be
durable before the next request, so they commit at once on their own
connection (called through a worker thread), not through the outcome inbox.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from ..plan import PlannedChange
from ._schema import connect

__all__ = [
    "CHANGE_REPORT_SQL",
    "CHANGE_TEXT_COLUMNS",
    "FINAL_STATES",
    "ChangeLog",
    "ChangeState",
    "change_columns",
    "migrate_changes",
]

CHANGE_SCHEMA = """
CREATE TABLE IF NOT EXISTS changes (
    row INTEGER NOT NULL,
    seq INTEGER NOT NULL,           -- the order of sending (bulk.plan.KINDS)
    kind TEXT NOT NULL,             -- assignee, type, comment, delete_comment, status
    value TEXT NOT NULL,            -- the target (a user id or 'none', a type, the text, ...)
    state TEXT,                     -- NULL: to send; started (a comment may be out); or final
    previous_value TEXT,            -- for undo ('none': it had no assignee)
    http_status INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    activity_id TEXT,               -- a comment's id (what undo deletes)
    attempted_at TEXT,              -- when its latest attempt went out
    expected TEXT,                  -- undo: the value the batch set, which must still hold
    PRIMARY KEY (row, seq)
) WITHOUT ROWID;
"""

# Final states of a change; `not sent`: an earlier change of its row failed.
FINAL_STATES = frozenset({"updated", "unchanged", "failed", "not sent"})
STARTED = "started"


class ChangeState(NamedTuple):
    seq: int
    kind: str
    value: str
    state: str | None
    previous_value: str | None
    activity_id: str | None
    attempted_at: str | None
    http_status: int | None
    error: str | None
    # An undo's: the value its batch set; the change is sent only while the ticket has it.
    expected: str | None = None


def _change(kind: str, field: str) -> str:
    return f"(SELECT {field} FROM changes c WHERE c.row = rows.row AND c.kind = '{kind}')"


def _state(kind: str) -> str:
    # A comment left `started` by a crash is checked against the ticket on resume.
    return (
        f"(SELECT CASE WHEN c.state IS NULL THEN 'not sent' WHEN c.state = 'started' THEN"
        f" 'unknown: checked on resume' ELSE c.state END FROM changes c"
        f" WHERE c.row = rows.row AND c.kind = '{kind}')"
    )


# Report columns of a batch with changes, after the contract's columns; each
# is SQL over `rows` (the journal's report query selects them by name).
CHANGE_REPORT_SQL = {
    "assignee": _change("assignee", "value"),
    "assignee_outcome": _state("assignee"),
    "previous_assignee": _change("assignee", "previous_value"),
    "type": _change("type", "value"),
    "type_outcome": _state("type"),
    "previous_type": _change("type", "previous_value"),
    "comment_outcome": _state("comment"),
    "comment_id": _change("comment", "activity_id"),
    "delete_comment": _change("delete_comment", "value"),
    "delete_comment_outcome": _state("delete_comment"),
    # What `bulk retry` needs to send a row's unfinished changes again.
    "comment": _change("comment", "value"),
    "status_outcome": _state("status"),
    # An undo's: what its batch set, which a retry of the undo's report guards with too.
    "expected_assignee": _change("assignee", "expected"),
    "expected_type": _change("type", "expected"),
}
CHANGE_TEXT_COLUMNS = frozenset(CHANGE_REPORT_SQL)
_BY_KIND = {
    "assignee": ("assignee", "assignee_outcome", "previous_assignee"),
    "type": ("type", "type_outcome", "previous_type"),
    "comment": ("comment_outcome", "comment_id"),
    "delete_comment": ("delete_comment", "delete_comment_outcome"),
}

_RETRY_COLUMNS = (("comment", "comment"), ("status", "status_outcome"))


def change_columns(kinds: Iterable[str]) -> tuple[str, ...]:
    """The report's change columns for a batch that asked for `kinds`, in a fixed order."""
    asked = set(kinds)
    columns = tuple(c for kind, cols in _BY_KIND.items() if kind in asked for c in cols)
    # After the columns earlier reports had, so none of theirs moves.
    return columns + tuple(c for kind, c in _RETRY_COLUMNS if kind in asked)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def migrate_changes(conn: sqlite3.Connection) -> None:
    """Give the changes table of a journal from an earlier version the columns added since."""
    have = {r[1] for r in conn.execute("PRAGMA table_info(changes)")}
    if "expected" not in have:  # before an undo guarded each change
        conn.execute("ALTER TABLE changes ADD COLUMN expected TEXT")


class ChangeLog:
    """The `changes` table of the journal at `path` (its own connection; thread-safe)."""

    def __init__(self, path: Path) -> None:
        self._conn = connect(path)
        self._conn.executescript(CHANGE_SCHEMA)
        migrate_changes(self._conn)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def add(self, changes: Iterable[PlannedChange]) -> None:
        with self._lock:
            self._conn.execute("BEGIN")
            self._conn.executemany(
                "INSERT INTO changes (row, seq, kind, value) VALUES (?, ?, ?, ?)", changes
            )
            self._conn.execute("COMMIT")

    def kinds(self) -> list[str]:
        with self._lock:
            return [k for (k,) in self._conn.execute("SELECT DISTINCT kind FROM changes")]

    def settle_duplicates(self) -> None:
        """Same ticket twice: the same changes skip the later rows, different ones void them all.

        Runs before the journal's own check (which compares statuses only), so
        two rows asking the same status with different comments are a conflict.
        """
        with self._lock:
            c = self._conn
            c.execute("BEGIN")
            c.execute(
                """CREATE TEMP TABLE sig AS
                   SELECT rows.row, rows.ticket_key,
                          (SELECT group_concat(kind || '=' || value, char(31)) FROM
                             (SELECT kind, value FROM changes WHERE changes.row = rows.row
                              ORDER BY seq)) AS s
                   FROM rows WHERE rows.outcome IS NULL AND rows.ticket_key IN
                     (SELECT ticket_key FROM rows WHERE ticket_key IS NOT NULL
                      GROUP BY ticket_key HAVING COUNT(*) > 1)"""
            )
            c.execute(
                """CREATE TEMP TABLE dup AS SELECT ticket_key, MIN(row) AS first, COUNT(*) AS n,
                          COUNT(DISTINCT s) AS kinds FROM sig GROUP BY ticket_key
                   HAVING COUNT(*) > 1"""
            )
            c.execute(
                """UPDATE rows SET outcome = 'invalid',
                          error = 'conflicting duplicate: this ticket is in ' || dup.n ||
                                  ' rows (first row ' || dup.first || ') asking for different '
                                  || 'changes; fix the input so each ticket has one row'
                   FROM dup WHERE rows.ticket_key = dup.ticket_key AND dup.kinds > 1
                     AND rows.outcome IS NULL"""
            )
            c.execute(
                """UPDATE rows SET outcome = 'skipped', error = 'duplicate of row ' || dup.first
                   FROM dup WHERE rows.ticket_key = dup.ticket_key AND dup.kinds = 1
                     AND rows.row > dup.first AND rows.outcome IS NULL"""
            )
            c.execute("DROP TABLE sig")
            c.execute("DROP TABLE dup")
            c.execute("COMMIT")

    def for_row(self, row: int) -> list[ChangeState]:
        with self._lock:
            found = self._conn.execute(
                "SELECT seq, kind, value, state, previous_value, activity_id, attempted_at,"
                " http_status, error, expected FROM changes WHERE row = ? ORDER BY seq",
                (row,),
            ).fetchall()
        return [ChangeState(*r) for r in found]

    def begin(self, row: int, seq: int) -> str:
        """Commit that a non-idempotent attempt is about to go out; its time (UTC, ISO).

        The latest attempt's time is kept: a resume waits until that POST can no longer
        land before it reads for it (send/_changes.py, `_earlier_lands_by`).
        """
        at = _now()
        with self._lock:
            self._conn.execute(
                "UPDATE changes SET state = ?, attempted_at = ? WHERE row = ? AND seq = ?",
                (STARTED, at, row, seq),
            )
        return at

    def refused(self, row: int, seq: int) -> None:
        """A non-idempotent attempt answered 401 or 403: not applied, so not `started` (a
        resume need not wait for it, nor look for it)."""
        with self._lock:
            self._conn.execute(
                "UPDATE changes SET state = NULL WHERE row = ? AND seq = ? AND state = ?",
                (row, seq, STARTED),
            )

    def note_previous(self, row: int, seq: int, previous: str) -> None:
        """The value read before a change whose answer will not say it (a type's 204)."""
        with self._lock:
            self._conn.execute(
                "UPDATE changes SET previous_value = ? WHERE row = ? AND seq = ?",
                (previous, row, seq),
            )

    def finish(
        self,
        row: int,
        seq: int,
        state: str,
        *,
        previous: str | None = None,
        http_status: int | None = None,
        attempts: int = 0,
        error: str | None = None,
        activity_id: str | None = None,
    ) -> None:
        with self._lock:
            self._conn.execute(
                "UPDATE changes SET state = ?, previous_value = COALESCE(?, previous_value),"
                " http_status = ?, attempts = attempts + ?, error = ?,"
                " activity_id = COALESCE(?, activity_id),"
                " attempted_at = COALESCE(attempted_at, ?) WHERE row = ? AND seq = ?",
                (state, previous, http_status, attempts, error, activity_id, _now(), row, seq),
            )

    def last_post_in_flight(self) -> str | None:
        """When the latest comment POST still `started` went out (UTC, ISO), if one is."""
        with self._lock:
            (at,) = self._conn.execute(
                "SELECT MAX(attempted_at) FROM changes WHERE kind = 'comment' AND state = ?",
                (STARTED,),
            ).fetchone()
        return at if isinstance(at, str) else None

    def counts(self) -> dict[str, dict[str, int]]:
        """Per kind, how many changes ended in each state (the audit record's tally)."""
        with self._lock:
            found = self._conn.execute(
                "SELECT kind, COALESCE(state, 'pending'), COUNT(*) FROM changes GROUP BY 1, 2"
            ).fetchall()
        tally: dict[str, dict[str, int]] = {}
        for kind, state, n in found:
            tally.setdefault(kind, {})[state] = n
        return tally
