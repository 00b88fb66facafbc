"""The journal on its own: planned rows, duplicates, outcomes, counts, meaning, resume.

Outcomes go through the writer thread exactly as the engine sends them
(`mark_started`, `record`, `close_writer`); no request is made.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import bulk
from bulk import UsageError
from bulk.journal import Journal, Outcome, planned_fingerprint, read_meta
from bulk.plan import PlannedRow

from ..support import plan, to_send

IDS = [str(uuid.UUID(int=n + 1)) for n in range(8)]
NOW = "2025-01-01T00:00:00.000+00:00"


def updated(row: int, attempts: int = 1, previous: str = "new") -> Outcome:
    return Outcome("updated", previous, 200, attempts, None, str(uuid.UUID(int=row)), 12, NOW, row)


def invalid(row: int, given: str, error: str) -> PlannedRow:
    return PlannedRow(row, given, None, "closed", "invalid", error, None)


def test_pending_rows_come_in_input_order_a_page_at_a_time(journal: Journal) -> None:
    plan(journal, [to_send(1, IDS[0]), invalid(2, "nope", "not a ticket id")])
    # Planning comes in chunks: a later chunk adds later rows.
    journal.add_planned([to_send(3, IDS[1].upper(), "solved"), to_send(4, IDS[2])])
    assert journal.pending(0, 10) == [
        (1, IDS[0], "closed"),
        (3, IDS[1], "solved"),
        (4, IDS[2], "closed"),
    ]
    assert journal.pending(0, 2) == [(1, IDS[0], "closed"), (3, IDS[1], "solved")]
    assert journal.pending(3, 2) == [(4, IDS[2], "closed")]
    assert journal.pending(4, 2) == []
    counts = journal.counts()
    assert (counts["rows"], counts["pending"], counts["outcomes"]) == (4, 3, {"invalid": 1})


def test_planned_rows_go_in_whole_whatever_the_chunk_size(journal: Journal) -> None:
    # Rows go in 64 to a statement and the rest one by one: chunk sizes on each side.
    given: list[PlannedRow] = []
    for size in (1, 63, 64, 65, 129):
        start = len(given) + 1
        chunk = [
            PlannedRow(row, f"id {row}", None if row % 3 else f"key {row}", "closed",
                       "invalid" if row % 2 else None, f"error {row}" if row % 5 else None,
                       row * 10 if row % 7 else None)
            for row in range(start, start + size)
        ]  # fmt: skip
        journal.add_planned(iter(chunk))
        given += chunk
    with sqlite3.connect(journal.path) as conn:
        stored = conn.execute(
            "SELECT row, ticket_id, ticket_key, target_status, outcome, error, source_row"
            " FROM rows ORDER BY row"
        ).fetchall()
    assert [PlannedRow(*r) for r in stored] == given


def test_a_chunk_that_fails_leaves_none_of_its_rows(journal: Journal) -> None:
    journal.add_planned([to_send(1, IDS[0])])
    long_row = (*to_send(3, IDS[2]), None)  # a value too many beside one too few
    short_row = to_send(4, IDS[3])[:-1]
    bad: list[Any] = [to_send(2, IDS[1]), long_row, short_row]
    with pytest.raises(ValueError, match="7 values"):
        journal.add_planned(bad * 22)  # 66 rows: the 64-row statement's path

    def failing() -> Iterator[PlannedRow]:
        yield to_send(2, IDS[1])
        raise UsageError("the input's reader failed mid-chunk")

    with pytest.raises(UsageError):
        journal.add_planned(failing())
    journal.add_planned([to_send(2, IDS[1])])  # no transaction was left open
    assert [row for row, _, _ in journal.pending(0, 10)] == [1, 2]


def test_duplicates_skip_the_later_rows_and_conflicts_void_them_all(journal: Journal) -> None:
    a, b = IDS[0], IDS[1]
    rows = [
        to_send(1, a),
        to_send(2, b, "solved"),
        to_send(3, a.upper()),  # the same ticket and status: a duplicate
        to_send(4, b, "new"),  # the same ticket, another status: a conflict
        invalid(5, "x", "not a ticket id"),
        invalid(6, "x", "not a ticket id"),  # invalid rows have no key: never duplicates
        to_send(7, a),
    ]
    plan(journal, rows)
    assert journal.pending(0, 10) == [(1, a, "closed")]
    report = [dict(zip(("row", "outcome", "error"), r, strict=True)) for r in rows_of(journal)]
    assert [r["outcome"] for r in report] == [
        "skipped",  # pending: the report's word for a row not sent (yet)
        "invalid",
        "skipped",
        "invalid",
        "invalid",
        "invalid",
        "skipped",
    ]
    assert report[0]["error"] == "pending"
    assert report[2]["error"] == report[6]["error"] == "duplicate of row 1"
    conflict = report[1]["error"]
    assert conflict == report[3]["error"]
    assert conflict.startswith("conflicting duplicate: this ticket is in 2 rows (first row 2)")
    assert "new" in conflict and "solved" in conflict
    assert journal.counts()["duplicates"] == 2


def rows_of(journal: Journal) -> list[tuple[Any, ...]]:
    """(row, outcome, error) as the report has them; a pending row's error reads "pending"."""
    rows = journal.report_rows(("row", "outcome", "error"), pending_reason="pending")
    return [r for batch in rows for r in batch]


def test_outcomes_go_through_the_writer_and_are_counted(journal: Journal) -> None:
    plan(journal, [to_send(i, t) for i, t in enumerate(IDS[:5], 1)])
    journal.start_writer()
    for row in (1, 2, 3, 4):
        journal.mark_started(row)
    journal.record(updated(1))
    journal.record(updated(2, attempts=3, previous="closed"))
    journal.record(Outcome("unchanged", "closed", 200, 1, None, None, 5, NOW, 3))
    journal.record(
        Outcome("failed", None, 404, 1, "HTTP 404 notFound: Ticket not found", None, 7, NOW, 4)
    )
    journal.close_writer()
    counts = journal.counts()
    assert counts["outcomes"] == {"updated": 2, "unchanged": 1, "failed": 1}
    assert counts["pending"] == 1 and counts["rows"] == 5
    assert counts["http_status"] == {"200": 3, "404": 1}
    assert (counts["requests"], counts["retries"]) == (6, 2)
    assert journal.pending(0, 10) == [(5, IDS[4], "closed")]
    columns = ("row", "outcome", "previous_status", "http_status", "attempts", "activity_id")
    batch = next(journal.report_rows(columns))
    assert batch[:2] == [
        (1, "updated", "new", 200, 1, str(uuid.UUID(int=1))),
        (2, "updated", "closed", 200, 3, str(uuid.UUID(int=2))),
    ]


def test_outcomes_are_committed_while_the_writer_runs(journal: Journal) -> None:
    plan(journal, [to_send(1, IDS[0]), to_send(2, IDS[1])])
    journal.start_writer()
    journal.record(updated(1))
    # Committed within the writer's next look at its inbox, not only at close: a
    # reader (here the journal's own connection) sees it while the run goes on.
    deadline = time.monotonic() + 10
    while journal.counts()["pending"] != 1:
        assert time.monotonic() < deadline, "the outcome was never committed"
        time.sleep(0.005)
    journal.close_writer()
    journal.close_writer()  # a second close is harmless (close() calls it again)


def test_a_row_not_final_stays_pending_but_its_requests_count(journal: Journal) -> None:
    plan(journal, [to_send(1, IDS[0])])
    journal.start_writer()
    journal.mark_started(1)
    # The run stopped (credentials rejected) while this row was out: not final.
    journal.record(Outcome(None, None, 401, 2, "HTTP 401 unauthorized", None, None, None, 1))
    journal.close_writer()
    assert journal.pending(0, 10) == [(1, IDS[0], "closed")]
    assert journal.reopen_in_flight() == 0  # an outcome arrived: nothing is in flight
    (row,) = next(
        journal.report_rows(("outcome", "error", "attempts"), pending_reason="stopped: x")
    )
    assert row == ("skipped", "stopped: x", 2)
    # Sent again later, its attempts add up.
    journal.start_writer()
    journal.record(updated(1))
    journal.close_writer()
    counts = journal.counts()
    assert counts["outcomes"] == {"updated": 1} and counts["requests"] == 3


def test_rows_in_flight_when_the_process_died_are_reopened(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    journal = plan(Journal(path), [to_send(i, t) for i, t in enumerate(IDS[:4], 1)])
    journal.start_writer()
    for row in (1, 2, 3):
        journal.mark_started(row)
    journal.record(updated(2))
    journal.close_writer()
    journal.close()  # what a kill leaves on disk: start marks, one outcome
    again = Journal(path)
    try:
        assert again.meta() == {"planned": True}
        assert again.reopen_in_flight() == 2  # rows 1 and 3: sent, never answered
        assert again.reopen_in_flight() == 0
        assert [r[0] for r in again.pending(0, 10)] == [1, 3, 4]
    finally:
        again.close()


def test_the_meaning_is_read_back_without_opening_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    meaning = {"input_sha256": "ab" * 32, "status": "closed"}
    plan(Journal(path), [], meaning=meaning).close()
    assert read_meta(path) == {"planned": True, "meaning": meaning}
    assert planned_fingerprint(path) == "ab" * 32
    assert read_meta(tmp_path / "missing.journal") == {}
    assert planned_fingerprint(tmp_path / "missing.journal") is None
    (tmp_path / "notes.journal").write_text("someone else's notes\n")
    assert read_meta(tmp_path / "notes.journal") == {}


def test_a_journal_from_before_the_application_id_is_still_ours(tmp_path: Path) -> None:
    path = tmp_path / "old.journal"
    journal = Journal(path)
    journal.set_meta(planned=True)
    journal.close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA application_id = 0")
    conn.close()
    again = Journal(path)  # bulk's two tables: accepted
    assert again.meta() == {"planned": True}
    again.close()
    with sqlite3.connect(tmp_path / "other.journal") as conn:
        conn.execute("CREATE TABLE rows (n INTEGER)")
    conn.close()
    with pytest.raises(bulk.UsageError, match="not a journal of bulk's"):
        Journal(tmp_path / "other.journal")
