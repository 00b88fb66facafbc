"""Reading state, one stage at a time: the answer checks, the journal's read rules and its
migration, the simulator's agent and 400 modes' options."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bulk.journal import Journal
from bulk.send import ticket_state
from bulk.simulator import parse_agent

from ..support import plan, to_send

ID = "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"
OTHER = "0badc0de-0000-4000-8000-000000000000"
GOOD = {"id": ID, "status": "closed", "statusUpdateDate": "2024-05-01T10:00:00.000Z"}


def test_a_ticket_answer_is_checked_not_trusted() -> None:
    state = ticket_state(GOOD, ID)
    assert (state.status, state.status_update_date) == ("closed", "2024-05-01T10:00:00.000Z")
    bad = [
        ({**GOOD, "id": OTHER}, "not the one asked for"),
        ({**GOOD, "status": "open"}, "is not a status"),
        ({**GOOD, "statusUpdateDate": "2024-05-01T10:00:00"}, "time zone"),
        ({**GOOD, "locationRef": "../x"}, "not a UUID"),
        ("[]", "no ticket object"),
    ]
    for answer, why in bad:
        with pytest.raises(ValueError, match=why):
            ticket_state(answer, ID)


def test_a_listed_ticket_of_another_location_is_left_out() -> None:
    from bulk.send._read import _checked_page

    here, elsewhere = OTHER, "1badc0de-0000-4000-8000-000000000000"
    page = {
        "tickets": [
            {**GOOD, "locationRef": elsewhere},
            {**GOOD, "id": OTHER, "locationRef": here.upper()},
            {**GOOD, "id": "2badc0de-0000-4000-8000-000000000000"},  # no location: kept
        ]
    }
    states, token = _checked_page(page, here)
    assert [s.ticket_id for s in states] == [OTHER, "2badc0de-0000-4000-8000-000000000000"]
    assert token is None


def test_reads_settle_rows_that_need_no_write(journal: Journal) -> None:
    ids = [f"{n:08x}-0000-4000-8000-000000000000" for n in range(4)]
    plan(journal, [to_send(i + 1, t) for i, t in enumerate(ids)])
    journal.set_expected([(3, "closed", None), (4, "closed", None)])
    journal.record_reads(
        [
            (ids[0], "closed", None, None, None, None),  # already at target
            (ids[1], None, None, None, None, None),  # not found
            (ids[2], "new", None, "2024-05-01T10:00:00Z", None, None),  # an agent reopened it
        ],
        "2024-05-02T00:00:00Z",
    )
    settled = journal.settle_reads("now")
    assert settled == {
        "not found": 1,
        "changed since the batch": 1,
        "unreadable": 0,
        "already at target": 1,
        "status already at target": 0,  # a row of several changes: its status change alone
    }
    rows = {r[0]: r for batch in journal.report_rows() for r in batch}
    assert rows[1][3] == "unchanged"
    assert rows[2][3] == "failed" and "not found" in rows[2][7]
    assert rows[3][7] == "changed since the batch (now new, at 2024-05-01T10:00:00Z)"
    assert rows[4][3:8:4] == ("skipped", "not sent")  # unread: still to send
    assert journal.to_read(0, 10) == [(4, ids[3])]


def test_an_older_journal_gains_the_read_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.journal"
    conn = sqlite3.connect(path)
    conn.executescript(
        "PRAGMA application_id = 1651862635;"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE rows (row INTEGER PRIMARY KEY, ticket_id TEXT NOT NULL, ticket_key TEXT,"
        " target_status TEXT NOT NULL, outcome TEXT, previous_status TEXT, http_status INTEGER,"
        " attempts INTEGER NOT NULL DEFAULT 0, error TEXT, activity_id TEXT, elapsed_ms INTEGER,"
        " finished_at TEXT, started INTEGER NOT NULL DEFAULT 0, source_row INTEGER);"
        f"INSERT INTO rows (row, ticket_id, ticket_key, target_status) VALUES (1, '{ID}',"
        f" '{ID}', 'closed');"
    )
    conn.commit()
    conn.close()
    opened = Journal(path)
    try:
        rows = [r for batch in opened.report_rows() for r in batch]
        assert rows[0][1] == ID and rows[0][-2:] == (None, None)  # would, verified
        assert opened.read_counts()["read"] == 0
    finally:
        opened.close()


def test_the_agent_option_is_read_strictly() -> None:
    assert parse_agent("0.05@30") == (0.05, 30.0)
    for spec in ("5%@30", "0.05", "2@1", "0.1@-1"):
        with pytest.raises(ValueError, match="SHARE@SECOND"):
            parse_agent(spec)


def test_a_ticket_already_back_at_an_undos_target_is_unchanged_not_someones_change(
    journal: Journal,
) -> None:
    """Its preview (`would`) and its settling agree: back where the undo would put it is
    nobody's change to keep; anywhere else is."""
    ids = [f"{n:08x}-0000-4000-8000-000000000000" for n in range(2)]
    plan(journal, [to_send(i + 1, t, "new") for i, t in enumerate(ids)])
    journal.set_expected([(1, "closed", None), (2, "closed", None)])
    journal.record_reads(
        [(ids[0], "new", None, None, None, None), (ids[1], "solved", None, None, None, None)],
        "2024-05-02T00:00:00Z",
    )
    would = [r[0] for batch in journal.report_rows(("would",)) for r in batch]
    assert would == ["already at target", "changed since the batch"]
    settled = journal.settle_reads("now")
    assert (settled["already at target"], settled["changed since the batch"]) == (1, 1)
    outcomes = [r[0] for batch in journal.report_rows(("outcome",)) for r in batch]
    assert outcomes == ["unchanged", "skipped"]
