"""What reading before (and after) writing keeps in the journal, and the rules it settles.

Reads are recorded by ticket (a listing brings tickets, not rows) on the rows
still to be decided, so a rerun reads only what was not read yet. The rules
that turn a read into an outcome, without a request, live here in SQL:
not found fails the row, a ticket an undo no longer owns is left alone, and
one already at its target is `unchanged`.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import threading
from collections.abc import Iterable
from typing import Any

from ._schema import OTHER_CHANGES_SQL, TOUCHED_SINCE_SQL, WOULD_SQL

__all__ = ["CLOCK_SKEW", "GUARD_OFF", "SNAPSHOT_COLUMNS", "ReadRecord", "Reads"]

# (ticket_key, status or None, updateDate, statusUpdateDate, locationRef, read error)
ReadRecord = tuple[str, str | None, str | None, str | None, str | None, str | None]

SNAPSHOT_COLUMNS = (
    "row",
    "ticket_id",
    "locationRef",
    "status",
    "updateDate",
    "statusUpdateDate",
    "read_at",
    "read_error",
    "target_status",
)

_TO_READ = "outcome IS NULL AND ticket_key IS NOT NULL AND read_at IS NULL"
# A row that changed no status (assignee or type only) has no status to verify.
_TO_VERIFY = "outcome IN ('updated', 'unchanged') AND verified IS NULL AND target_status != ''"
# A ticket already back at the undo's target (an undo's revert whose answer was lost, retried;
# or someone put it back by hand) is not someone else's change to keep: it is settled as
# already at target. A row of several changes keeps the stricter rule (README).
_BACK = f"(current_status = target_status AND NOT {OTHER_CHANGES_SQL})"
_SKEW_SAMPLE = 3  # tickets, at least, to estimate the clocks' difference from
# Seconds: the middle half of the tickets' differences spread wider than this, and the
# time guard is off (`GUARD_OFF`, a "difference" no statusUpdateDate exceeds). A batch's
# own changes differ from its finish times by the clocks' difference and a request's time.
_SPREAD = 120.0
GUARD_OFF = 1e9
CLOCK_SKEW = "clock_skew"  # the meta's key (TOUCHED_SINCE_SQL reads it)
_CHANGED_SINCE = (
    "changed since the batch (' || CASE WHEN current_status = expected_status"
    " THEN 'set to ' || current_status || ' again at ' || status_update_date"
    " ELSE 'now ' || current_status || ', at ' || COALESCE(status_update_date, 'an unknown time')"
    " END || ')"
)


# A row with other changes whose ticket already has the target status: only
# its status change is settled (`unchanged`, the status read as its previous);
# the row stays to send its assignee, type and comment.
_STATUS_AT_TARGET = f"""UPDATE changes SET state = 'unchanged', attempted_at = ?,
    previous_value = (SELECT current_status FROM rows WHERE rows.row = changes.row)
    WHERE kind = 'status' AND state IS NULL AND row IN (SELECT row FROM rows
        WHERE outcome IS NULL AND read_at IS NOT NULL AND read_error IS NULL
        AND current_status = target_status AND {OTHER_CHANGES_SQL})"""


class Reads:
    """The journal's reading part; `Journal` holds the connection and its lock."""

    _conn: sqlite3.Connection
    _lock: threading.Lock

    def to_read(self, after_row: int, limit: int, *, verify: bool = False) -> list[tuple[int, str]]:
        """(row, ticket key) of rows still to read (before sending), or to verify (after)."""
        where = _TO_VERIFY if verify else _TO_READ
        with self._lock:
            return self._conn.execute(
                f"SELECT row, ticket_key FROM rows WHERE row > ? AND {where} ORDER BY row LIMIT ?",
                (after_row, limit),
            ).fetchall()

    def count_to_read(self, *, verify: bool = False) -> int:
        """How many rows `to_read` has left."""
        where = _TO_VERIFY if verify else _TO_READ
        with self._lock:
            (count,) = self._conn.execute(f"SELECT COUNT(*) FROM rows WHERE {where}").fetchone()
        return int(count)

    def read_again(self, ticket_keys: Iterable[str], *, verify: bool = False) -> None:
        """Forget what was read (or verified) of these tickets, on rows still to settle: a
        listing brought them twice, and only a read of each alone says which is current."""
        done = "verified = NULL" if verify else "read_at = NULL, read_error = NULL"
        where = "outcome IN ('updated', 'unchanged')" if verify else "outcome IS NULL"
        with self._lock:
            self._conn.executemany(
                f"UPDATE rows SET {done} WHERE ticket_key = ? AND {where}",
                [(key,) for key in ticket_keys],
            )

    def record_reads(self, reads: Iterable[ReadRecord], at: str) -> int:
        """Keep what was read of these tickets on their rows not yet decided nor read; how
        many rows that read."""
        with self._lock:
            return self._conn.executemany(
                "UPDATE rows SET current_status = ?, update_date = ?, status_update_date = ?,"
                " location_ref = ?, read_error = ?, read_at = ?"
                f" WHERE ticket_key = ? AND {_TO_READ}",
                [(s, u, su, loc, err, at, key) for key, s, u, su, loc, err in reads],
            ).rowcount

    def note_assignees(self, pairs: Iterable[tuple[str, str]]) -> None:
        """The assignee read before sending, kept as the previous value of the row's
        assignee change: if that change's answer is lost, its resend answers "already
        so", and only this says what to put back."""
        with self._lock:
            self._conn.executemany(
                "UPDATE changes SET previous_value = ? WHERE kind = 'assignee'"
                " AND state IS NULL AND previous_value IS NULL"
                " AND row IN (SELECT row FROM rows WHERE ticket_key = ?)",
                [(assignee, key) for key, assignee in pairs],
            )

    def forget_assignees_read(self) -> None:
        """A resume's: the assignees an earlier invocation read before sending are no
        previous value to credit a lost answer with (an agent may have changed them since:
        a review's undo unassigned 11 agents' tickets so), as `credit_lost_answers` says."""
        with self._lock:
            self._conn.execute(
                "UPDATE changes SET previous_value = NULL WHERE kind = 'assignee'"
                " AND state IS NULL AND previous_value IS NOT NULL"
            )

    def set_expected_changes(self, triples: Iterable[tuple[int, str, str]]) -> None:
        """(row, kind, value): an undo sends the row's change of `kind` only while its ticket
        still has `value`, what the batch set (an agent's later edit is left alone)."""
        with self._lock:
            self._conn.executemany(
                "UPDATE changes SET expected = ? WHERE row = ? AND kind = ?",
                [(value, row, kind) for row, kind, value in triples],
            )

    def record_verified(self, reads: Iterable[ReadRecord]) -> int:
        """`yes` where the ticket holds the row's target, else `drifted: now X`; how many
        rows that verified."""
        with self._lock:
            return self._conn.executemany(
                "UPDATE rows SET verified = CASE WHEN ?1 = target_status THEN 'yes'"
                " WHEN ?1 IS NULL THEN 'drifted: not found' ELSE 'drifted: now ' || ?1 END"
                f" WHERE ticket_key = ?2 AND {_TO_VERIFY}",
                [(status, key) for key, status, *_, err in reads if err is None],
            ).rowcount

    def set_expected(self, triples: Iterable[tuple[int, str, str | None]]) -> None:
        """(row, status, since): an undo reverts the row only while its ticket still has
        `status`, set no later than `since` (when the batch set it; None: not known)."""
        with self._lock:
            self._conn.executemany(
                "UPDATE rows SET expected_status = ?, expected_since = ? WHERE row = ?",
                [(s, since, r) for r, s, since in triples],
            )

    def owe_put_back(self, ticket_key: str, status: str) -> None:
        """An undo's PUT overwrote `status`, an agent's: committed before the put-back is sent.

        Out of the writer's batches (a commit of its own, ~1 ms): an overwrite is rare,
        and a run killed before the put-back must find it owed when resumed.
        """
        with self._lock:
            self._conn.execute(
                "UPDATE rows SET put_back = ? WHERE ticket_key = ? AND outcome IS NULL",
                (status, ticket_key),
            )

    def put_backs_owed(self) -> dict[str, str]:
        """Ticket -> the agent's status an interrupted undo owes back (rows not yet final)."""
        with self._lock:
            return dict(
                self._conn.execute(
                    "SELECT ticket_key, put_back FROM rows"
                    " WHERE put_back IS NOT NULL AND outcome IS NULL"
                ).fetchall()
            )

    def estimate_clock_skew(self, known: float | None = None) -> float:
        """Seconds the server's clock runs ahead of this machine's, as the batch's tickets
        show it; kept in the meta for `TOUCHED_SINCE_SQL`, and returned.

        A ticket the batch set, untouched since, has the statusUpdateDate of the batch's
        own PUT: by the server's clock, a moment before the row finished by this
        machine's. The median over the tickets still at the batch's status is that
        difference (those an agent set again since, a minority, lie far above it). Taken
        as `known` (an undo's, for a retry of it) or 0 under three tickets. A review's
        server 120 s ahead had every row left alone.
        """
        with self._lock:
            deltas = [
                d
                for (d,) in self._conn.execute(
                    "SELECT (julianday(status_update_date) - julianday(expected_since)) * 86400"
                    " FROM rows WHERE read_at IS NOT NULL AND read_error IS NULL"
                    " AND expected_since IS NOT NULL AND current_status = expected_status"
                )
                if isinstance(d, float)
            ]
            few = known if known is not None else 0.0
            skew = statistics.median(deltas) if len(deltas) >= _SKEW_SAMPLE else few
            if len(deltas) >= _SKEW_SAMPLE:
                low, _, high = statistics.quantiles(deltas, n=4)
                if high - low > _SPREAD:
                    # The times do not follow the batch's finish times: not this batch's
                    # changes (a report from elsewhere, most tickets set again since). The
                    # time tells nothing then; the status alone is checked, as before it.
                    skew = GUARD_OFF
            self._conn.execute(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)", (CLOCK_SKEW, json.dumps(skew))
            )
        return skew

    def settle_reads(self, at: str, *, force: bool = False) -> dict[str, int]:
        """Decide, without a request, the read rows a write cannot help; how many by rule."""
        rules = {
            "not found": (
                "outcome = 'failed', error = 'not found (read before writing)'",
                "read_error IS NULL AND current_status IS NULL",
            ),
            "changed since the batch": (
                f"outcome = 'skipped', error = '{_CHANGED_SINCE}'",
                "expected_status IS NOT NULL"
                f" AND (current_status != expected_status OR {TOUCHED_SINCE_SQL}) AND NOT {_BACK}",
            ),
            "unreadable": (
                "outcome = 'skipped', error = 'left alone: could not read the ticket to "
                "check it is unchanged since the batch (' || read_error || ')'",
                "expected_status IS NOT NULL AND read_error IS NOT NULL",
            ),
            "already at target": (
                "outcome = 'unchanged', previous_status = current_status, error = NULL",
                f"read_error IS NULL AND current_status = target_status AND NOT {OTHER_CHANGES_SQL}",
            ),
        }
        if force:  # --force: an undo reverts whatever the ticket holds now
            del rules["changed since the batch"], rules["unreadable"]
        settled: dict[str, int] = {}
        with self._lock:
            c = self._conn
            c.execute("BEGIN")
            for name, (assign, condition) in rules.items():
                cursor = c.execute(
                    f"UPDATE rows SET {assign}, finished_at = ?"
                    " WHERE outcome IS NULL AND read_at IS NOT NULL AND " + condition,
                    (at,),
                )
                settled[name] = cursor.rowcount
            settled["status already at target"] = c.execute(_STATUS_AT_TARGET, (at,)).rowcount
            c.execute("COMMIT")
        return settled

    def credit_lost_answers(self, since: str) -> int:
        """Rows whose PUT was applied but whose answer was lost: `updated`, from what was read.

        A retry after a lost answer (a dropped connection, a timeout, a 5xx after the
        server applied it) finds the ticket already at the target and would record the
        row `unchanged`, with the target as its previous status, so an undo could not
        put it back. When the status read before sending differs, the change is taken
        as this run's. Someone else setting
        the same status between the read and the PUT is counted as ours too: an undo
        then puts back what was read. Measured with `bench/changes.py` (2% of answers
        dropped after applying): 60 of 3,000 rows were recorded `unchanged` that way.

        Only reads this invocation took (`since`: when it began) are trusted so: a resume
        sends on the reads of the invocation that began the batch, and an agent's status
        set in between (a canary, then 40 tickets solved by hand, then the resume: review)
        was recorded as the previous status, which an undo then put back over theirs.
        Such a row stays `unchanged`, its previous status unknown (undo leaves it).
        """
        ours = (
            "read_at IS NOT NULL AND read_error IS NULL AND current_status IS NOT NULL"
            " AND current_status != target_status AND julianday(read_at) >= julianday(?)"
        )
        with self._lock:
            c = self._conn
            c.execute("BEGIN")
            # A row of several changes: its status change, then the row (below).
            c.execute(
                "UPDATE changes SET state = 'updated', previous_value ="
                " (SELECT current_status FROM rows WHERE rows.row = changes.row)"
                " WHERE kind = 'status' AND state = 'unchanged'"
                f" AND row IN (SELECT row FROM rows WHERE {ours})",
                (since,),
            )
            credited = c.execute(
                "UPDATE rows SET outcome = 'updated', previous_status = current_status"
                " WHERE outcome IN ('unchanged', 'updated') AND previous_status = target_status"
                f" AND {ours}",
                (since,),
            ).rowcount
            c.execute("COMMIT")
        return credited

    def would_counts(self) -> list[tuple[str | None, str | None, str, int]]:
        """(would, current status, target, rows) of the rows not yet decided."""
        with self._lock:
            return self._conn.execute(
                f"SELECT ({WOULD_SQL}) AS would, current_status, target_status, COUNT(*)"
                " FROM rows WHERE outcome IS NULL OR outcome = 'invalid'"
                " GROUP BY would, current_status, target_status"
            ).fetchall()

    def read_counts(self) -> dict[str, Any]:
        """Rows read, drifted, verified and left alone (for the summary and the audit)."""
        with self._lock:
            read, verified, drifted, changed, unreadable = self._conn.execute(
                "SELECT COALESCE(SUM(read_at IS NOT NULL), 0),"
                " COALESCE(SUM(verified IS NOT NULL), 0),"
                " COALESCE(SUM(verified LIKE 'drifted%'), 0),"
                " COALESCE(SUM(outcome = 'skipped' AND error LIKE 'changed since the batch%'"
                # An undo's row of several changes with one or more left alone (send/_changes).
                " OR outcome IN ('skipped', 'updated', 'unchanged')"
                " AND error LIKE '%: changed since the batch (now %; left as it is%'), 0),"
                " COALESCE(SUM(outcome = 'skipped' AND error LIKE 'left alone: could not read%'), 0)"
                " FROM rows"
            ).fetchone()
        return {
            "read": read,
            "verified": verified,
            "drifted": drifted,
            "left_alone": changed + unreadable,
            "unreadable": unreadable,
        }

    def snapshot_rows(self, batch: int = 10_000) -> Iterable[list[tuple[Any, ...]]]:
        """The read rows, in input order, in `SNAPSHOT_COLUMNS`."""
        with self._lock:
            cursor = self._conn.execute(
                "SELECT row, ticket_id, location_ref, current_status, update_date,"
                " status_update_date, read_at, read_error, target_status"
                " FROM rows WHERE read_at IS NOT NULL ORDER BY row"
            )
            while rows := cursor.fetchmany(batch):
                yield rows
