"""The report, rendered from a journal: CSV, JSONL and Parquet, in input order, neutralised.

The journal is filled as a run fills it (planned rows, then outcomes through
the writer, in the order answers arrive); no request is made.
"""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bulk import UsageError
from bulk._core._csvsafe import csv_cell, neutralise, neutralise_sql
from bulk.journal import REPORT_COLUMNS, Journal, Outcome
from bulk.plan import PlannedRow
from bulk.report import list_runs, report_frame, write_report

from ..support import plan, read_report, to_send

IDS = [str(uuid.UUID(int=n + 1)) for n in range(6)]
AT = "2025-01-01T00:00:00.000+00:00"
ACTIVITY = str(uuid.UUID(int=77))


def run_a_batch(journal: Journal) -> None:
    """Six rows: answers arrive out of order; one invalid, one failed, one never sent."""
    plan(
        journal,
        [
            to_send(1, IDS[0]),
            PlannedRow(
                2, "=HYPERLINK(1)", None, "closed", "invalid", "ticket_id: not a ticket id", None
            ),
            to_send(3, IDS[2], "solved"),
            to_send(4, IDS[3]),
            to_send(5, IDS[4]),
            to_send(6, IDS[5]),
        ],
    )
    journal.start_writer()
    for outcome in (
        Outcome("failed", None, 404, 1, "-HTTP 404 notFound", None, 9, AT, 5),
        Outcome("unchanged", "solved", 200, 1, None, None, 4, AT, 3),
        Outcome("updated", "new", 200, 2, None, ACTIVITY, 30, AT, 1),
        Outcome("updated", "inProgress", 200, 1, None, ACTIVITY, 5, AT, 4),
    ):
        journal.record(outcome)
    journal.close_writer()


EXPECTED = [  # (row, ticket_id, outcome, http_status, error) of each report row
    (1, IDS[0], "updated", 200, None),
    (2, "=HYPERLINK(1)", "invalid", None, "ticket_id: not a ticket id"),
    (3, IDS[2], "unchanged", 200, None),
    (4, IDS[3], "updated", 200, None),
    (5, IDS[4], "failed", 404, "-HTTP 404 notFound"),
    (6, IDS[5], "skipped", None, "stopped: deadline reached"),
]


def read_back(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]]
    if path.suffix == ".parquet":
        rows = pq.read_table(path).to_pylist()
    else:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return rows


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_jsonl_and_parquet_keep_input_order_types_and_text(
    journal: Journal, tmp_path: Path, suffix: str
) -> None:
    run_a_batch(journal)
    path = write_report(journal, tmp_path / f"out{suffix}", pending_reason=EXPECTED[-1][-1] or "")
    rows = read_back(path)
    assert [
        tuple(r[c] for c in ("row", "ticket_id", "outcome", "http_status", "error")) for r in rows
    ] == EXPECTED
    assert list(rows[0]) == list(REPORT_COLUMNS)
    # Numbers stay numbers and a missing value stays missing; text is not neutralised
    # outside CSV (no spreadsheet runs it), so the server's text is as it came.
    assert (rows[0]["attempts"], rows[0]["elapsed_ms"], rows[0]["activity_id"]) == (2, 30, ACTIVITY)
    assert rows[5]["attempts"] == 0 and rows[5]["previous_status"] is None
    assert rows[4]["error"] == "-HTTP 404 notFound"
    if suffix == ".parquet":
        schema = pq.read_schema(path)
        assert schema.field("http_status").type == pa.int64()
        assert schema.field("ticket_id").type == pa.string()


def test_csv_keeps_input_order_and_neutralises_text(journal: Journal, tmp_path: Path) -> None:
    run_a_batch(journal)
    path = write_report(journal, tmp_path / "out.csv", pending_reason="stopped: deadline reached")
    rows = read_report(path)
    assert list(rows[0]) == list(REPORT_COLUMNS)
    assert [r["row"] for r in rows] == ["1", "2", "3", "4", "5", "6"]
    assert [r["outcome"] for r in rows] == [e[2] for e in EXPECTED]
    assert rows[0]["ticket_id"] == IDS[0] and rows[0]["previous_status"] == "new"
    assert rows[1]["ticket_id"] == "'=HYPERLINK(1)"
    assert rows[4]["error"] == "'-HTTP 404 notFound"
    assert (rows[5]["http_status"], rows[5]["error"]) == ("", "stopped: deadline reached")


def test_the_frame_holds_what_the_report_holds(journal: Journal, tmp_path: Path) -> None:
    run_a_batch(journal)
    frame = report_frame(journal, "stopped: deadline reached")
    jsonl = read_back(
        write_report(journal, tmp_path / "out.jsonl", pending_reason="stopped: deadline reached")
    )
    assert list(frame.columns) == list(REPORT_COLUMNS)
    assert frame.astype(object).where(frame.notna(), None).to_dict("records") == jsonl


def test_a_derived_batch_reports_its_source_rows(journal: Journal, tmp_path: Path) -> None:
    plan(journal, [PlannedRow(1, IDS[0], IDS[0], "new", None, None, 41)])
    columns = (*REPORT_COLUMNS, "source_row")
    rows = read_report(write_report(journal, tmp_path / "undo.csv", columns=columns))
    assert [(r["row"], r["source_row"], r["error"]) for r in rows] == [("1", "41", "not sent")]


def test_the_report_replaces_the_last_one_whole(journal: Journal, tmp_path: Path) -> None:
    plan(journal, [to_send(1, IDS[0])])
    path = tmp_path / "out.csv"
    write_report(journal, path)
    journal.start_writer()
    journal.record(Outcome("updated", "new", 200, 1, None, None, 3, AT, 1))
    journal.close_writer()
    write_report(journal, path)
    assert [r["outcome"] for r in read_report(path)] == ["updated"]
    assert sorted(p.name for p in tmp_path.iterdir() if "out" in p.name) == ["out.csv"]


def test_an_unknown_report_format_is_refused(journal: Journal, tmp_path: Path) -> None:
    plan(journal, [to_send(1, IDS[0])])
    with pytest.raises(UsageError, match=r"unknown format '\.xml'; use \.csv, \.jsonl, \.parquet"):
        write_report(journal, tmp_path / "out.xml")
    assert not (tmp_path / "out.xml").exists()


# -- every CSV bulk writes follows one neutralisation rule ------------------------------------

HOSTILE = [
    "=1+1",
    " =1+1",
    "\t=cmd|' /C calc'!A0",
    "\r=x",
    "\n =x",
    "  \t@SUM(1)",
    "@SUM(1)",
    "+1",
    "-5",
    "\tplain",
    "\rplain",
]
HARMLESS = [
    "plain",
    "",
    " plain",
    "\nplain",
    "a=b",
    "'=already",
    "3fa85f64-5717-4562-b3fc-2c963f66afa6",
]


def test_python_and_sql_rules_agree() -> None:
    with contextlib.closing(sqlite3.connect(":memory:")) as conn:
        for cell in HOSTILE + HARMLESS:
            query = f"SELECT {neutralise_sql(':cell')}"
            (from_sql,) = conn.execute(query, {"cell": cell}).fetchone()
            assert from_sql == neutralise(cell), repr(cell)
            assert (neutralise(cell) == "'" + cell) == (cell in HOSTILE), repr(cell)
        assert conn.execute(f"SELECT {neutralise_sql('NULL')}").fetchone() == (None,)
    assert [csv_cell(v) for v in (5, -5, 1.5, None, "-5")] == [5, -5, 1.5, "", "'-5"]


def test_python_and_sql_rules_agree_on_random_cells() -> None:
    # The SQL rule first sorts cells by their first character (a GLOB class):
    # cells made of the characters either rule looks at, and of ones it must not.
    pick = random.Random(7)
    alphabet = "=+-@ \t\r\n'a5[]^*?\u00a0\u2028"
    cells = ["".join(pick.choices(alphabet, k=pick.randrange(5))) for _ in range(3000)]
    with contextlib.closing(sqlite3.connect(":memory:")) as conn:
        query = f"SELECT {neutralise_sql(':cell')}"
        for cell in cells:
            assert conn.execute(query, {"cell": cell}).fetchone() == (neutralise(cell),), repr(cell)


def test_report_cells_are_neutralised(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "r.journal")
    journal.clear()
    journal.add_planned(
        PlannedRow(i, cell, None, cell, "invalid", cell, None) for i, cell in enumerate(HOSTILE, 1)
    )
    write_report(journal, tmp_path / "r.csv")
    journal.close()
    for row, cell in zip(read_report(tmp_path / "r.csv"), HOSTILE, strict=True):
        for column in ("ticket_id", "target_status", "error"):
            assert row[column] == "'" + cell, (column, row[column])


@pytest.mark.parametrize(
    ("options", "stop_reason", "shown"),
    [
        ({"limit": 3}, None, "rows=11 failed=1 updated=2 held-back=8"),  # a canary, exit 1
        ({"limit": None}, "stopped: too many failures", "rows=11 failed=1 updated=2 not-sent=8"),
        ({"dry_run": True}, None, "rows=11 failed=1 updated=2 held-back=8"),
    ],
)
def test_bulk_runs_counts_add_up_to_the_rows(
    tmp_path: Path, options: dict[str, Any], stop_reason: str | None, shown: str
) -> None:
    record = {
        "ended_at": "2026-11-28T10:00:00+00:00",
        "exit_code": 1,
        "options": options,
        "stop_reason": stop_reason,
        "counts": {"rows": 11, "pending": 8, "outcomes": {"updated": 2, "failed": 1}},
    }
    (tmp_path / "x.run.json").write_text(json.dumps(record))
    (line,) = list_runs(tmp_path)
    assert line.counts == shown
