"""A row as a set of changes, against the simulator on loopback: order, exactly-once, resume, undo."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pandas as pd
import pytest

import bulk
from bulk import Credentials
from bulk.batch import undo_frame
from bulk.journal import REPORT_COLUMNS
from bulk.simulator import (
    DEMO_ACCESS_TOKEN,
    DEMO_NETWORK_ID,
    LoggedRequest,
    SimConfig,
    Simulator,
    SimulatorThread,
    make_tickets,
)
from tests.support import demo_vars, read_report, run_bulk, start_bulk, wait_for, write_csv

USER = "0b6f1c2e-3d4a-4b5c-8d6e-7f8091a2b3c4"


@pytest.fixture
def tickets() -> list[dict[str, Any]]:
    return make_tickets(120, seed=3, statuses=("new", "inProgress"))


@pytest.fixture
def bearer() -> Credentials:
    return Credentials.bearer(DEMO_ACCESS_TOKEN, DEMO_NETWORK_ID)


def _frame(tickets: list[dict[str, Any]], n: int) -> pd.DataFrame:
    """Every row closed with a templated comment; a third reassigned, a third re-typed."""
    rows = []
    for i, t in enumerate(tickets[:n]):
        rows.append(
            {
                "ticket_id": t["id"],
                "status": "closed",
                "assignee": USER if i % 3 == 0 else "",
                "type": ("cleaning" if t["type"] != "cleaning" else "internet")
                if i % 3 == 1
                else "",
                "legacy_id": f"L-{i}",
            }
        )
    return pd.DataFrame(rows)


def _at_least(count: Callable[[], int], n: int) -> bool:
    return count() >= n


def _about(entry: LoggedRequest, ticket_id: str) -> bool:
    return entry.ticket_id == ticket_id.lower() or ticket_id.encode() in entry.body


def _comments_ok(sim: Simulator, frame: pd.DataFrame) -> None:
    """Each row's comment exactly once, with its own text; no duplicate anywhere."""
    assert sim.duplicate_comments() == 0
    for i, ticket_id in enumerate(frame["ticket_id"]):
        texts = [c["data"]["text"] for c in sim.comments(ticket_id)]
        assert texts == [f"Closed after the move: L-{i}"], (i, texts)


def _applied(sim: Simulator, frame: pd.DataFrame) -> None:
    for _, row in frame.iterrows():
        ticket = sim.tickets[row["ticket_id"].lower()]
        assert ticket["status"] == "closed"
        if row["assignee"]:
            assert ticket.get("userRefAssignee") == USER
        if row["type"]:
            assert ticket["type"] == row["type"]


async def test_a_mixed_batch_applies_every_change_in_order(
    sim: Simulator, server: str, tickets: list[dict[str, Any]], bearer: Credentials
) -> None:
    frame = _frame(tickets, 30)
    report = await bulk.run_async(
        frame,
        credentials=bearer,
        base_url=server,
        rate=None,
        comment="Closed after the move: {legacy_id}",
        report=Path("mixed.csv"),
    )
    assert set(report["outcome"]) == {"updated"}
    _applied(sim, frame)
    _comments_ok(sim, frame)
    # Status last: every ticket's comment came before its status change.
    for ticket_id in frame["ticket_id"]:
        sent = [e for e in sim.requests if _about(e, ticket_id)]
        assert sent[-1].method == "PUT" and sent[-1].path.endswith("/status")
    assigned = report[frame["assignee"] != ""]
    assert set(assigned["assignee_outcome"]) == {"updated"}
    assert set(assigned["previous_assignee"]) <= {"none"} | {
        str(t.get("userRefAssignee")) for t in tickets
    }
    assert report["comment_id"].str.len().eq(36).all()
    assert list(report.columns[: len(REPORT_COLUMNS)]) == list(REPORT_COLUMNS)
    # No fault: several calls a row, and not one of them a retry.
    audit = json.loads(await anyio.Path("mixed.run.json").read_text())
    assert audit["counts"]["retries"] == 0 and audit["counts"]["requests"] > 2 * len(frame)


@pytest.fixture
def faulty(tickets: list[dict[str, Any]]) -> Simulator:
    # Writes applied and then their answer lost (dropped or a 5xx), plus plain 5xx.
    config = SimConfig(rate=None, seed=7, drop_after_rate=0.15, error_after_rate=0.1)
    return Simulator(config, tickets)


async def test_answers_lost_after_the_post_applied_never_duplicate_a_comment(
    faulty: Simulator, tickets: list[dict[str, Any]], bearer: Credentials
) -> None:
    from bulk.simulator import serve

    frame = _frame(tickets, 60)
    async with serve(faulty) as url:
        report = await bulk.run_async(
            frame,
            credentials=bearer,
            base_url=url,
            rate=None,
            backoff_base=0.001,
            max_attempts=10,
            timeout=0.5,  # the read after a lost answer waits one timeout (the settle delay)
            comment="Closed after the move: {legacy_id}",
            report=Path("faults.csv"),
        )
    posts = [e for e in faulty.requests if e.method == "POST"]
    lost = [e for e in posts if e.status != 201]
    assert len(lost) >= 3, [e.status for e in posts]  # the faults did hit POSTs
    assert set(report["outcome"]) == {"updated"}, report[report["outcome"] != "updated"]
    _applied(faulty, frame)
    _comments_ok(faulty, frame)


def test_kill_9_mid_run_then_resume_leaves_no_duplicate_and_every_row_complete(
    tickets: list[dict[str, Any]], tmp_path: Path
) -> None:
    frame = _frame(tickets, 90)
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)
    config = SimConfig(rate=None, seed=5, latency=0.005, drop_after_rate=0.05)
    sim = Simulator(config, tickets)
    env = {"SPACEBRING_ACCESS_TOKEN": DEMO_ACCESS_TOKEN, "SPACEBRING_NETWORK_ID": DEMO_NETWORK_ID}
    args = ["run", str(source), "--comment", "Closed after the move: {legacy_id}"]
    args += ["--rate", "200", "--report", "out.csv", "--timeout", "1"]  # a lost answer waits 1 s
    journal = tmp_path / "out.journal"

    def done_changes() -> int:
        try:
            with sqlite3.connect(journal) as conn:
                (n,) = conn.execute(
                    "SELECT COUNT(*) FROM changes WHERE state = 'updated'"
                ).fetchone()
            return int(n)
        except sqlite3.Error:
            return 0

    with SimulatorThread(sim) as thread:
        env["SPACEBRING_BASE_URL"] = thread.base_url
        for at in (20, 90):
            child = start_bulk(*args, env=env)
            wait_for(partial(_at_least, done_changes, at), child, f"{at} changes journaled")
            child.send_signal(signal.SIGKILL)
            child.communicate()
        finished = {
            (r[0], r[1])
            for r in sqlite3.connect(journal).execute(
                "SELECT row, seq FROM changes WHERE state = 'updated'"
            )
        }
        before = len(sim.requests)
        result = run_bulk(*args, env=env)
        assert result.returncode == 0, result.stderr
        # Resume never redid a finished change: no PUT/PATCH/POST for one of them.
        resumed = sim.requests[before:]
    _applied(sim, frame)
    _comments_ok(sim, frame)
    rows = read_report(tmp_path / "out.csv")
    assert [r["outcome"] for r in rows] == ["updated"] * len(frame)
    done_rows = {row for row, seq in finished if seq == 4}  # status done: the row is done
    for entry in resumed:
        for row in done_rows:
            assert not _about(entry, frame["ticket_id"][row - 1])


async def test_undo_restores_assignee_and_type_and_deletes_comments(
    sim: Simulator, server: str, tickets: list[dict[str, Any]], bearer: Credentials
) -> None:
    frame = _frame(tickets, 12)
    before = {t["id"]: dict(t) for t in tickets[:12]}
    await bulk.run_async(
        frame,
        credentials=bearer,
        base_url=server,
        rate=None,
        comment="Closed after the move: {legacy_id}",
        report=Path("x.report.csv"),
    )
    undo = undo_frame(Path("x.report.csv"))
    report = await bulk.run_async(
        undo, credentials=bearer, base_url=server, rate=None, report=Path("x.undo.csv")
    )
    assert set(report["outcome"]) == {"updated"}
    assert sim.comment_count() == 0
    for ticket_id, old in before.items():
        now = sim.tickets[ticket_id.lower()]
        assert now["status"] == old["status"]
        assert now["type"] == old["type"]
        assert now.get("userRefAssignee") == old.get("userRefAssignee")


@pytest.mark.parametrize(
    ("comment", "extra", "said"),
    [
        ("hello", (), ("OAuth2", "POST /support/tickets/v1/comment", "SPACEBRING_REFRESH_TOKEN")),
        # A dry run needs no credentials, but says what the real run would meet.
        ("hello", ("--dry-run",), ("comments need OAuth2",)),
        ("moved: {legacy}", (), ("in.csv: --comment fills {legacy} from a column",)),
    ],
)
def test_a_batch_of_comments_that_cannot_go_exits_2_before_sending(
    sim_thread: tuple[Simulator, str],
    tickets: list[dict[str, Any]],
    comment: str,
    extra: tuple[str, ...],
    said: tuple[str, ...],
) -> None:
    """Basic credentials (the API takes comments only with OAuth2), or a placeholder the
    input cannot fill: refused before anything is sent."""
    sim, url = sim_thread
    source = write_csv(Path("in.csv"), [[t["id"]] for t in tickets[:3]], ["ticket_id"])
    result = run_bulk("run", str(source), "--comment", comment, *extra, env=demo_vars(url))
    assert result.returncode == 2
    assert all(words in result.stderr for words in said), result.stderr
    assert sim.requests == []


def _on_export(
    tmp_path: Path, sim: Simulator, rows: Sequence[Sequence[Any]], header: Sequence[str], *args: str
) -> Any:
    """`bulk run export.csv ARGS` against `sim`: a ticket export, its columns maybe stale."""
    export = write_csv(tmp_path / "export.csv", rows, header)
    with SimulatorThread(sim) as thread:
        done = run_bulk(
            "run", str(export), *args, "--rate", "unlimited", env=demo_vars(thread.base_url)
        )
    assert done.returncode == 0, done.stderr
    return done


def test_one_status_for_every_row_does_not_read_an_exports_other_columns(
    tmp_path: Path, tickets: list[dict[str, Any]]
) -> None:
    """`--status closed` on a ticket export whose `type` and `assignee` columns are stale
    closes the tickets and changes nothing else (it used to re-type them all)."""
    sim = Simulator(SimConfig(rate=None), tickets)
    stale = [
        (t["id"], "cleaning" if t["type"] != "cleaning" else "internet", USER) for t in tickets
    ]
    done = _on_export(tmp_path, sim, stale, ("id", "type", "assignee"), "--status", "closed")
    assert "column(s) 'assignee', 'type' not used: --status gives every row's change" in (
        done.stderr
    )
    assert {r.method for r in sim.requests} == {"PUT"}
    assert all(r.path.endswith("/status") for r in sim.requests)
    for ticket in tickets:
        now = sim.tickets[ticket["id"]]
        assert (now["status"], now["type"]) == ("closed", ticket["type"])
        assert now.get("userRefAssignee") == ticket.get("userRefAssignee")


def test_one_type_for_every_row_does_not_read_an_exports_status_column(
    tmp_path: Path, tickets: list[dict[str, Any]]
) -> None:
    """`--type` on an export whose status column is stale re-types and changes no status."""
    sim = Simulator(SimConfig(rate=None), tickets)
    stale = [(t["id"], "solved") for t in tickets]
    # --verify: a row that changed no status has none to verify (all had read `drifted`).
    done = _on_export(tmp_path, sim, stale, ("id", "status"), "--type", "cleaning", "--verify")
    assert "column(s) 'status' not used: --type gives every row's change" in done.stderr
    assert "drifted" not in done.stdout
    assert not [r for r in sim.requests if r.path.endswith("/status")]
    for ticket in tickets:
        now = sim.tickets[ticket["id"]]
        assert (now["status"], now["type"]) == (ticket["status"], "cleaning")
    # The page's "What changed" shows the types, and no status row of '?' to nothing.
    page = (tmp_path / "reports" / "export.report.html").read_text()
    changed = page.split('<section id="changes">')[1].split("</section>")[0]
    retyped = sum(t["type"] != "cleaning" for t in tickets)
    shown = re.findall(
        r"<td>type</td><td>(\w+)</td><td>cleaning</td><td class=\"num\">(\d+)", changed
    )
    assert sum(int(n) for _, n in shown) == retyped and shown
    assert "<td>?</td>" not in changed and "No ticket was changed" not in changed


def test_a_batch_an_earlier_bulk_planned_resumes_as_planned(
    tmp_path: Path, tickets: list[dict[str, Any]]
) -> None:
    """Planned by a bulk that read an export's `type` column beside `--status` (the journal
    says so), interrupted, and resumed by this one: it finishes as planned, not refused."""
    sim = Simulator(SimConfig(rate=None), tickets)
    rows = [(t["id"], "closed", "cleaning" if t["type"] != "cleaning" else "internet")
            for t in tickets]  # fmt: skip
    source = write_csv(tmp_path / "in.csv", rows, ("id", "status", "type"))
    with SimulatorThread(sim) as thread:
        env = demo_vars(thread.base_url)
        first = run_bulk("run", str(source), "--limit", "10", "--rate", "unlimited", env=env)
        assert first.returncode == 0, first.stderr
        # What an earlier bulk wrote for `--status closed` on this input: it read `type` too.
        path = tmp_path / "reports" / "in.report.journal"
        with sqlite3.connect(path) as conn:
            meaning = json.loads(
                conn.execute("SELECT value FROM meta WHERE key = 'meaning'").fetchone()[0]
            )
            assert meaning["changes"]["columns"] == ["type"]
            meaning |= {"status": "closed", "status_column": None}
            conn.execute("UPDATE meta SET value = ? WHERE key = 'meaning'", (json.dumps(meaning),))
        resumed = run_bulk("run", str(source), "--status", "closed", "--rate", "unlimited", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "as an earlier bulk planned it" in resumed.stderr
    for ticket, (_, _, kind) in zip(tickets, rows, strict=True):
        now = sim.tickets[ticket["id"]]
        assert (now["status"], now["type"]) == ("closed", kind)


@pytest.mark.parametrize(
    ("first", "then"),
    [
        ((), ("--assignee", USER)),  # a change the plan does not hold
        (("--status-column", "desired"), ()),  # a status column the user named, then not
    ],
)
def test_a_journal_planned_otherwise_is_not_resumed_as_planned(
    tmp_path: Path, tickets: list[dict[str, Any]], first: tuple[str, ...], then: tuple[str, ...]
) -> None:
    sim = Simulator(SimConfig(rate=None), tickets)
    rows = [(t["id"], "solved", "closed") for t in tickets]
    source = write_csv(tmp_path / "in.csv", rows, ("id", "status", "desired"))
    with SimulatorThread(sim) as thread:
        env = demo_vars(thread.base_url)
        args = ("run", str(source), "--rate", "unlimited")
        assert run_bulk(*args, *first, "--limit", "3", env=env).returncode == 0
        sent = len(sim.requests)
        again = run_bulk(*args, *then, env=env)
    assert again.returncode == 2, again.stderr
    assert "differs in" in again.stderr and len(sim.requests) == sent
