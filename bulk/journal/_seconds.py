"""Per-second counters in the journal: the table, one row's shape, and reading them back.

The engine's counters (`bulk.send._seconds`) hand one `Second` a second to
the journal's writer thread, which inserts it beside the outcomes; the page
(`bulk.report`) reads them back to draw throughput and latency over time.
"""

from __future__ import annotations

import sqlite3
from typing import NamedTuple

__all__ = ["ANSWER_CLASSES", "INSERT_SECOND", "SECONDS_TABLE", "Second", "read_seconds"]

# Answer classes, in the order of the table's columns and of `Second`.
ANSWER_CLASSES = ("ok", "throttled", "server_error", "client_error", "network", "unexpected")

SECONDS_TABLE = """
CREATE TABLE IF NOT EXISTS seconds (
    invocation TEXT NOT NULL,       -- one id per sending run of this journal (a resume adds one)
    at REAL NOT NULL,               -- Unix time at the end of the second
    ok INTEGER NOT NULL,            -- answers that proved success
    throttled INTEGER NOT NULL,     -- 429
    server_error INTEGER NOT NULL,  -- 5xx
    client_error INTEGER NOT NULL,  -- other 4xx (401/403 included)
    network INTEGER NOT NULL,       -- no answer: timeout, dropped connection
    unexpected INTEGER NOT NULL,    -- a 2xx/3xx that did not prove success
    rate REAL,                      -- the pacer's rate then; NULL when unpaced
    p50 REAL, p90 REAL, p99 REAL,   -- latency of that second's answers, ms
    PRIMARY KEY (invocation, at)
);
"""

INSERT_SECOND = "INSERT OR REPLACE INTO seconds VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"


class Second(NamedTuple):
    """One second of one invocation, in the order of the table's columns."""

    invocation: str
    at: float
    ok: int
    throttled: int
    server_error: int
    client_error: int
    network: int
    unexpected: int
    rate: float | None
    p50: float | None
    p90: float | None
    p99: float | None


def read_seconds(conn: sqlite3.Connection) -> list[Second]:
    """Every recorded second, by invocation and time; none from a journal older than the table."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "seconds" not in tables:
        return []
    rows = conn.execute(
        "SELECT * FROM seconds ORDER BY (SELECT MIN(at) FROM seconds s"
        " WHERE s.invocation = seconds.invocation), at"
    ).fetchall()
    return [Second(*row) for row in rows]
