"""What a run's page shows, read from its journal: counts, groups, the rows that matter.

Read-only (a second connection, `mode=ro`), so a page can be rendered again
at any time, also beside a journal another process holds open. Every query
is bounded: a million-row journal gives the same few hundred lines of facts
as a small one (the page names how many more there were).
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._core._exceptions import UsageError
from .._core._text import printable
from ._schema import refuse_unless_ours
from ._seconds import Second, read_seconds

__all__ = ["MAX_GROUPS", "MAX_ROWS", "JournalFacts", "read_facts"]

MAX_ROWS = 2000  # rows listed in the page's table; the report has them all
MAX_GROUPS = 30  # error messages (and reasons, and transitions) listed
_EXAMPLES = 5  # example rows per error message
# Rows that matter first: what went wrong before what was only held back.
_ORDER = "CASE COALESCE(outcome, 'skipped') WHEN 'failed' THEN 0 WHEN 'invalid' THEN 1 ELSE 2 END"


@dataclass
class Group:
    """Rows that share an error (or reason): how many, an HTTP status, a few row numbers."""

    message: str
    http_status: int | None
    count: int
    examples: list[int]


@dataclass
class JournalFacts:
    outcomes: dict[str, int]  # final outcomes; rows not final are in `pending`
    pending: int
    requests: int
    retries: int
    http_status: dict[int, int]
    failures: list[Group]
    invalid: list[Group]
    transitions: list[tuple[str, str, int]]  # previous -> target, rows (updated only)
    rows: list[dict[str, Any]]  # the rows that matter, at most MAX_ROWS
    rows_total: int  # how many rows matter in all
    seconds: list[Second]
    meta: dict[str, Any] = field(default_factory=dict)
    # Changes besides status that were made: (kind, before, after, how many); a comment's
    # text is not shown, only that it was posted (or deleted).
    other_changes: list[tuple[str, str, str, int]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.outcomes.values()) + self.pending


def read_facts(path: Path, pending_reason: str = "not sent") -> JournalFacts:
    """The facts of the journal at `path` (exit 2 when it is missing or not bulk's)."""
    refuse_unless_ours(path)
    if not path.is_file():
        raise UsageError(f"{printable(path, 200)}: no journal here; nothing to render")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise UsageError(f"{printable(path, 200)}: cannot open the journal ({exc})") from None
    try:
        return _read(conn, pending_reason)
    except sqlite3.Error as exc:
        raise UsageError(f"{printable(path, 200)}: cannot read the journal ({exc})") from None
    finally:
        conn.close()


_OTHER_CHANGES = """
SELECT kind,
       CASE WHEN kind IN ('comment', 'delete_comment') THEN '' ELSE COALESCE(previous_value, '?') END,
       CASE kind WHEN 'comment' THEN 'posted' WHEN 'delete_comment' THEN 'deleted' ELSE value END,
       COUNT(*)
FROM changes WHERE state = 'updated' AND kind != 'status'
GROUP BY 1, 2, 3 ORDER BY 4 DESC LIMIT ?
"""


def _other_changes(conn: sqlite3.Connection) -> list[tuple[str, str, str, int]]:
    """Assignees, types and comments changed, grouped; none in a status-only journal."""
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'changes'"
    ).fetchone()
    if found is None:
        return []
    return [
        (printable(kind, 20), printable(before, 40), printable(after, 40), n)
        for kind, before, after, n in conn.execute(_OTHER_CHANGES, (MAX_GROUPS,))
    ]


def _read(conn: sqlite3.Connection, pending_reason: str) -> JournalFacts:
    outcomes = {k: v for k, v in conn.execute("SELECT outcome, COUNT(*) FROM rows GROUP BY 1")}
    pending = outcomes.pop(None, 0)
    requests, retries = conn.execute(
        "SELECT COALESCE(SUM(attempts), 0), COALESCE(SUM(MAX(attempts - 1, 0)), 0) FROM rows"
    ).fetchone()
    counted = conn.execute("SELECT value FROM meta WHERE key = 'retries'").fetchone()
    if counted is not None:  # the engine's count (Journal.counts says why)
        retries = int(counted[0])
    statuses = dict(
        conn.execute(
            "SELECT http_status, COUNT(*) FROM rows WHERE http_status IS NOT NULL GROUP BY 1"
        )
    )
    matter = _matter(conn)
    (rows_total,) = conn.execute(f"SELECT COUNT(*) FROM rows WHERE {matter}").fetchone()
    return JournalFacts(
        outcomes=outcomes,
        pending=pending,
        requests=requests,
        retries=retries,
        http_status=statuses,
        # Each group query reads every row: none for an outcome no row has.
        failures=_groups(conn, "failed") if outcomes.get("failed") else [],
        invalid=_groups(conn, "invalid") if outcomes.get("invalid") else [],
        transitions=[
            (printable(a, 40), printable(b, 40), n)
            for a, b, n in conn.execute(
                "SELECT COALESCE(previous_status, '?'), target_status, COUNT(*) FROM rows"
                # A row that changed no status (assignee or type only) is no transition.
                " WHERE outcome = 'updated' AND target_status != ''"
                " GROUP BY 1, 2 ORDER BY 3 DESC LIMIT ?",
                (MAX_GROUPS,),
            )
        ],
        rows=_rows(conn, matter, pending_reason) if rows_total else [],
        rows_total=rows_total,
        other_changes=_other_changes(conn),
        seconds=read_seconds(conn),
        meta=_meta(conn),
    )


def _meta(conn: sqlite3.Connection) -> dict[str, Any]:
    meta = {}
    for key, value in conn.execute("SELECT key, value FROM meta"):
        try:
            meta[key] = json.loads(value)
        except ValueError:
            continue  # not bulk's shape: the page shows what it can without it
    return meta


def _verifies(conn: sqlite3.Connection) -> bool:
    """Whether the journal has the `verified` column (one of an older bulk may not)."""
    return "verified" in {r[1] for r in conn.execute("PRAGMA table_info(rows)")}


def _matter(conn: sqlite3.Connection) -> str:
    """The rows a person must look at: not final, or neither updated nor unchanged, or drifted."""
    drifted = " OR verified LIKE 'drifted%'" if _verifies(conn) else ""
    return f"(outcome IS NULL OR outcome NOT IN ('updated', 'unchanged'){drifted})"


# A ticket id (any UUID) in a message: `ticket 1b2c... not found` is one kind of
# failure however many tickets it names.
_UUID = re.compile(r"[0-9a-fA-F]{8}-?(?:[0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}")


def _shape(error: str | None) -> str:
    return _UUID.sub("{id}", error or "")


def _groups(conn: sqlite3.Connection, outcome: str) -> list[Group]:
    conn.create_function("shape", 1, _shape, deterministic=True)
    found = conn.execute(
        """SELECT shape, http_status, row FROM (
               SELECT shape(error) AS shape, http_status, row,
                      ROW_NUMBER() OVER (PARTITION BY shape(error), http_status ORDER BY row) AS k
               FROM rows WHERE outcome = ?)
           WHERE k <= ? ORDER BY row""",
        (outcome, _EXAMPLES),
    ).fetchall()
    counts = dict(
        ((e, s), n)
        for e, s, n in conn.execute(
            "SELECT shape(error), http_status, COUNT(*) FROM rows WHERE outcome = ? GROUP BY 1, 2",
            (outcome,),
        )
    )
    groups: dict[tuple[str, int | None], Group] = {}
    for error, status, row in found:
        key = (error, status)
        if key not in groups:
            groups[key] = Group(printable(error, 300), status, counts[key], [])
        groups[key].examples.append(row)
    ordered = sorted(groups.values(), key=lambda g: (-g.count, g.examples[0]))
    return ordered[:MAX_GROUPS]


def _rows(conn: sqlite3.Connection, matter: str, pending_reason: str) -> list[dict[str, Any]]:
    # A drifted row (--verify) is `updated` with no error: the table says why it is there.
    drifted = (
        " WHEN verified LIKE 'drifted%' THEN 'changed after the run: ' || verified"
        if _verifies(conn)
        else ""
    )
    cursor = conn.execute(
        "SELECT row, ticket_id, target_status, COALESCE(outcome, 'skipped') AS outcome,"
        " previous_status, http_status, attempts,"
        f" CASE WHEN outcome IS NULL THEN ?{drifted} ELSE error END AS error"
        f" FROM rows WHERE {matter} ORDER BY {_ORDER}, row LIMIT ?",
        (pending_reason, MAX_ROWS),
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, values, strict=True)) for values in cursor]
