"""Reading before writing, end to end against the simulator on loopback: preview, skipping
what is already done, verify, undo of only what is still ours, and ambiguous 400s."""

from __future__ import annotations

import contextlib
import math
import signal
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import bulk
from bulk import Credentials, run_async
from bulk.batch import retry_frame
from bulk.simulator import LOCATIONS, SimConfig, Simulator, SimulatorThread, make_tickets, serve

from ..support import (
    FAST,
    demo_vars,
    forget_journal,
    read_report,
    run_bulk,
    start_bulk,
    wait_for,
    write_csv,
)

MIXED = ("new", "inProgress", "solved", "closed")
UNKNOWN = "0badc0de-0000-4000-8000-000000000000"


@pytest.fixture
def tickets() -> list[dict[str, Any]]:
    return make_tickets(600, seed=7, statuses=MIXED)


def _ids(tickets: list[dict[str, Any]]) -> list[str]:
    return [t["id"] for t in tickets]


def _methods(sim: Simulator) -> Counter[str]:
    return Counter(r.method for r in sim.requests)


def _input(tmp_path: Path, tickets: list[dict[str, Any]], extra: tuple[str, ...] = ()) -> Path:
    return write_csv(tmp_path / "in.csv", [(t,) for t in [*_ids(tickets), *extra]], ("ticket_id",))


def test_preview_reads_by_listing_and_matches_the_truth(
    tmp_path: Path,
    sim_thread: tuple[Simulator, str],
    creds: Credentials,
    tickets: list[dict[str, Any]],
) -> None:
    sim, server = sim_thread
    path = _input(tmp_path, tickets, (UNKNOWN,))
    report = bulk.preview(
        path, status="closed", base_url=server, credentials=creds, locations=list(LOCATIONS)
    )
    summary = report.attrs["summary"]
    assert _methods(sim)["PUT"] == 0  # nothing written
    per_location = Counter(t["locationRef"] for t in tickets)
    listed = [r for r in sim.requests if r.method == "GET" and r.ticket_id is None]
    assert len(listed) <= sum(math.ceil(n / 100) for n in per_location.values()) + len(LOCATIONS)
    gets = [r.ticket_id for r in sim.requests if r.ticket_id]
    assert gets == [UNKNOWN]  # only the ticket no location held was read alone
    truth = Counter(t["status"] for t in tickets)
    would = Counter(report["would"])
    assert would["already at target"] == truth["closed"]
    assert would["would update"] == len(tickets) - truth["closed"]
    assert would["not found"] == 1
    assert list(report["current_status"][: len(tickets)]) == [t["status"] for t in tickets]
    line = summary.preview[0]
    assert f"{len(tickets) - truth['closed']:,} will change (" in line
    assert f"new→closed {truth['new']}" in line
    assert f"{truth['closed']} already closed; 1 not found" in line
    assert "at 10/s" in line
    snapshot = read_report(Path(str(summary.report).replace(".csv", ".snapshot.csv")))
    assert len(snapshot) == len(tickets) + 1


def test_a_few_tickets_in_big_locations_are_not_read_by_listing_them_whole(
    tmp_path: Path,
    sim_thread: tuple[Simulator, str],
    creds: Credentials,
    tickets: list[dict[str, Any]],
) -> None:
    """Listing costs a request per 100 tickets of a location, the batch's or not: it goes on
    only while it has cost fewer requests than the rows left would cost one GET each."""
    sim, server = sim_thread
    few = tickets[-3:]  # late in the listing's order: listed whole, 7 pages would find them
    report = bulk.preview(
        _input(tmp_path, few),
        status="closed",
        base_url=server,
        credentials=creds,
        locations=list(LOCATIONS),
    )
    listed = [r for r in sim.requests if r.method == "GET" and r.ticket_id is None]
    gets = [r for r in sim.requests if r.ticket_id]
    assert len(listed) <= 3 and len(listed) + len(gets) <= 6
    assert list(report["current_status"]) == [t["status"] for t in few]


async def test_a_run_that_reads_sends_only_what_is_not_done(
    tmp_path: Path, sim: Simulator, server: str, creds: Credentials, tickets: list[dict[str, Any]]
) -> None:
    path = _input(tmp_path, tickets)
    done = {t["id"] for t in tickets if t["status"] == "closed"}
    report = await run_async(
        path,
        status="closed",
        base_url=server,
        credentials=creds,
        rate=None,
        locations=LOCATIONS,
        verify=True,
    )
    assert set(sim.sent_ids()) == {t["id"] for t in tickets} - done
    skipped = report[report["ticket_id"].isin(done)]
    assert set(skipped["outcome"]) == {"unchanged"}
    assert set(skipped["attempts"]) == {0}
    assert skipped["read_at"].str.len().min() > 0
    assert set(report["verified"]) == {"yes"}
    assert report.attrs["summary"].exit_code == 0


async def test_verify_finds_the_agents_changes_and_exits_1(
    tmp_path: Path, sim: Simulator, server: str, creds: Credentials, tickets: list[dict[str, Any]]
) -> None:
    path = _input(tmp_path, tickets)
    options: dict[str, Any] = {"status": "closed", "base_url": server, "credentials": creds}
    first = await run_async(path, rate=None, read=False, **options)
    assert first.attrs["summary"].exit_code == 0
    reopened = set(sim.reopen(0.05))
    assert reopened
    # Resumable: the same report, now verified (by GET: no location is known).
    again = await run_async(path, rate=None, verify=True, **options)
    drifted = again[again["verified"].str.startswith("drifted")]
    assert set(drifted["ticket_id"]) == reopened
    assert set(drifted["verified"]) == {"drifted: now new"}
    assert again.attrs["summary"].exit_code == 1
    assert again.attrs["summary"].read_counts["drifted"] == len(reopened)
    # The page says so too: its banner, and each drifted row among those to look at.
    page = again.attrs["summary"].page.read_text()
    assert f"{len(reopened)} drifted after the run" in page
    assert page.count("changed after the run: drifted: now new") == len(reopened)
    assert "--only drifted" in page and "some rows failed, are invalid, drifted" in page
    # The way forward: the drifted tickets' status, set again (and nothing else).
    report = again.attrs["summary"].report
    frame = retry_frame(report, frozenset({"drifted"}))
    assert set(frame["ticket_id"]) == reopened and set(frame["target_status"]) == {"closed"}
    sent = len(sim.sent_ids())
    retried = await run_async(frame, rate=None, report=tmp_path / "drift.csv", **options)
    assert retried.attrs["summary"].exit_code == 0
    assert sorted(sim.sent_ids()[sent:]) == sorted(reopened)
    assert all(sim.status_of(t) == "closed" for t in reopened)
    assert retry_frame(tmp_path / "drift.csv", frozenset({"drifted"})).empty


@contextlib.contextmanager
def _closed_by_a_batch(
    tmp_path: Path, sim: Simulator, tickets: list[dict[str, Any]]
) -> Iterator[dict[str, str]]:
    """`sim` served, its tickets closed by a batch (report: reports/in.report.csv); bulk's env."""
    with SimulatorThread(sim) as thread:
        env = demo_vars(thread.base_url)
        path = _input(tmp_path, tickets)
        done = run_bulk("run", str(path), "--status", "closed", "--rate", "unlimited", env=env)
        assert done.returncode == 0, done.stderr
        yield env


@pytest.mark.parametrize("force", [False, True])
def test_undo_reverts_only_what_is_still_ours(
    tmp_path: Path, tickets: list[dict[str, Any]], force: bool
) -> None:
    tickets = tickets[:200]
    sim = Simulator(SimConfig(rate=None, seed=3), tickets)
    before = {t["id"]: t["status"] for t in tickets}
    with _closed_by_a_batch(tmp_path, sim, tickets) as env:
        reopened = set(sim.reopen(0.05))
        report = tmp_path / "reports" / "in.report.csv"
        args = ["undo", str(report), "--rate", "unlimited"] + (["--force"] if force else [])
        undone = run_bulk(*args, env=env)
    assert undone.returncode == 0, undone.stderr
    rows = {r["ticket_id"]: r for r in read_report(tmp_path / "reports" / "in.undo.csv")}
    changed = {k for k, v in before.items() if v != "closed"}
    # Reopened to the status the undo would set: already back, nobody's change to keep.
    back = {t for t in reopened if before[t] == "new"}
    assert back and reopened - back
    for ticket_id in changed:
        if ticket_id in reopened and not force:
            assert sim.status_of(ticket_id) == "new"  # the agent's work stands
            if ticket_id in back:
                assert rows[ticket_id]["outcome"] == "unchanged"
                assert rows[ticket_id]["error"] == ""
            else:
                assert rows[ticket_id]["outcome"] == "skipped"
                assert rows[ticket_id]["error"].startswith("changed since the batch (now new, at ")
        else:
            assert sim.status_of(ticket_id) == before[ticket_id]
    if force:
        assert "--force" in undone.stderr
    else:
        assert f"left alone: {len(reopened - back)} changed since the batch" in undone.stdout
        audit = (tmp_path / "reports" / "in.undo.run.json").read_text()
        assert '"left_alone"' in audit


@pytest.mark.parametrize("unknown_400", [False, True])
async def test_ambiguous_400s_are_resolved_by_reading(
    tmp_path: Path, tickets: list[dict[str, Any]], creds: Credentials, unknown_400: bool
) -> None:
    sim = Simulator(SimConfig(rate=None, same_status_400=True, unknown_400=unknown_400), tickets)
    path = _input(tmp_path, tickets[:40], (UNKNOWN,))
    async with serve(sim) as url:
        report = await run_async(
            path, status="closed", base_url=url, credentials=creds, rate=None, read=False, **FAST
        )
    by_id = {r.ticket_id: r for r in report.itertuples()}
    for ticket in tickets[:40]:
        row = by_id[ticket["id"]]
        expected = "unchanged" if ticket["status"] == "closed" else "updated"
        assert row.outcome == expected
        if expected == "unchanged":
            assert row.http_status == 400  # the read, not the 400, decided
    missing = by_id[UNKNOWN]
    assert missing.outcome == "failed"
    assert "not found" in str(missing.error)
    assert missing.http_status == (400 if unknown_400 else 404)


def test_a_killed_run_resumed_against_400s_ends_without_failures(
    tmp_path: Path, tickets: list[dict[str, Any]]
) -> None:
    tickets = tickets[:400]
    sim = Simulator(SimConfig(rate=400.0, same_status_400=True), tickets)
    path = write_csv(tmp_path / "in.csv", [(t,) for t in _ids(tickets)], ("ticket_id",))
    args = ("run", str(path), "--status", "closed", "--rate", "400", "--no-read")
    with SimulatorThread(sim) as thread:
        env = demo_vars(thread.base_url)
        child = start_bulk(*args, env=env)
        wait_for(lambda: len(sim.sent_ids()) > 150, child, "150 PUTs")
        child.send_signal(signal.SIGKILL)
        child.communicate()
        resumed = run_bulk(*args, env=env)
    assert resumed.returncode == 0, resumed.stderr
    rows = read_report(tmp_path / "reports" / "in.report.csv")
    assert not [r for r in rows if r["outcome"] == "failed"]
    assert {sim.status_of(t) for t in _ids(tickets)} == {"closed"}


def test_preview_on_the_command_line_prints_the_command_and_keeps_the_pace(
    tmp_path: Path, tickets: list[dict[str, Any]]
) -> None:
    sim = Simulator(SimConfig(rate=100.0, window="sliding"), tickets[:80])
    path = _input(tmp_path, tickets[:80])
    with SimulatorThread(sim) as thread:
        env = demo_vars(thread.base_url)
        shown = run_bulk(
            "run", str(path), "--status", "closed", "--preview", "--rate", "100", env=env
        )
        assert shown.returncode == 0, shown.stderr
        assert "will change" in shown.stdout
        assert "read first: 80 tickets (" in shown.stdout  # its requests: reads, no write
        assert f"to run it: bulk run {path} --status closed --rate 100" in shown.stdout
        previewed = len(sim.requests)
        real = run_bulk("run", str(path), "--status", "closed", "--read", "--rate", "100", env=env)
        done = len(sim.requests)
        again = run_bulk(
            "run", str(path), "--status", "closed", "--preview", "--rate", "unlimited", env=env
        )
    assert real.returncode == 0, real.stderr
    # Once every ticket is closed, the preview offers nothing to run.
    assert again.returncode == 0, again.stderr
    assert "0 will change; 80 already closed" in again.stdout
    assert "nothing to run: no row would change" in again.stdout
    assert "to run it" not in again.stdout
    # The real run's GETs and PUTs, in one budget: never a 429, never past the limit.
    own = sim.requests[previewed:done]
    assert {r.method for r in own} == {"GET", "PUT"}
    assert not [r for r in own if r.status == 429]
    times = sorted(r.at for r in own)
    assert max(sum(1 for t in times[i:] if t - s < 1.0) for i, s in enumerate(times)) <= 100


def test_undo_puts_back_a_change_made_after_it_read(
    tmp_path: Path, tickets: list[dict[str, Any]]
) -> None:
    """An agent changes tickets after the undo read them and before their PUT: each PUT's
    answer shows it overwrote that change, and the undo puts it back at once."""
    tickets = tickets[:200]
    sim = Simulator(SimConfig(rate=None, seed=3), tickets)
    before = {t["id"]: t["status"] for t in tickets}
    with _closed_by_a_batch(tmp_path, sim, tickets) as env:
        batch_puts = len(sim.sent_ids())
        reverted = [t for t in _ids(tickets) if before[t] != "closed"]
        # The last tickets the undo will revert, each to a status other than the agent's.
        late = [t for t in reverted if before[t] in ("new", "inProgress")][-10:]
        report = tmp_path / "reports" / "in.report.csv"
        undo = start_bulk("undo", str(report), "--rate", "100", "--concurrency", "2", env=env)
        wait_for(lambda: len(sim.sent_ids()) >= batch_puts + 20, undo, "the undo's first PUTs")
        for ticket_id in late:
            sim.agent_sets(ticket_id, "solved")
        _out, err = undo.communicate(timeout=60)
        undo_puts = len(sim.sent_ids()) - batch_puts
    assert undo.returncode == 0, err
    rows = {r["ticket_id"]: r for r in read_report(tmp_path / "reports" / "in.undo.csv")}
    # Every PUT the server saw is in the report, the put-backs too.
    assert undo_puts == len(reverted) + len(late)
    assert sum(int(r["attempts"]) for r in rows.values()) == undo_puts
    for ticket_id in reverted:
        if ticket_id in late:
            assert sim.status_of(ticket_id) == "solved"  # the agent's change stands
            assert rows[ticket_id]["outcome"] == "skipped"
            assert rows[ticket_id]["error"] == (
                "changed since the batch (was solved when the undo wrote; put back)"
            )
        else:
            assert sim.status_of(ticket_id) == before[ticket_id]
            assert rows[ticket_id]["outcome"] == "updated"


def _undo_in_trouble(
    tmp_path: Path, sim: Simulator, env: dict[str, str], errors: float, lost: float = 0.0
) -> tuple[Any, Path]:
    """The batch's undo, each request tried once, against 5xx (`errors`, reads too) and
    PUTs applied whose answer is lost (`lost`); the server is well again after it."""
    sim.config.error_rate, sim.config.error_after_rate = errors, lost
    args = ("--rate", "unlimited", "--max-attempts", "1", "--max-failure-rate", "1")
    try:
        undone = run_bulk("undo", str(tmp_path / "reports" / "in.report.csv"), *args, env=env)
    finally:
        sim.config.error_rate = sim.config.error_after_rate = 0.0
    return undone, tmp_path / "reports" / "in.undo.csv"


def test_a_retry_of_an_undo_reverts_only_what_is_still_ours(
    tmp_path: Path, tickets: list[dict[str, Any]]
) -> None:
    """Reverts that failed are retried later: a ticket an agent changed meanwhile keeps the
    agent's status, as in the undo itself; one whose revert was applied though its answer
    was lost is `unchanged`; the others go back."""
    tickets = tickets[:200]
    sim = Simulator(SimConfig(rate=None, seed=3), tickets)
    before = {t["id"]: t["status"] for t in tickets}
    with _closed_by_a_batch(tmp_path, sim, tickets) as env:
        # Reads pass; a PUT fails unapplied, or is applied and its answer lost.
        undone, undo_report = _undo_in_trouble(tmp_path, sim, env, 0.15, 0.25)
        assert undone.returncode == 1, undone.stderr
        rows = {r["ticket_id"]: r for r in read_report(undo_report)}
        failed = [t for t, r in rows.items() if r["outcome"] == "failed"]
        assert {rows[t]["expected_status"] for t in failed} == {"closed"}
        applied = {t for t in failed if sim.status_of(t) == before[t]}
        moved = {t: "inProgress" if before[t] != "inProgress" else "new" for t in failed[::3]}
        moved = {t: status for t, status in moved.items() if t not in applied}
        assert len(applied) >= 5 and len(moved) >= 5 and set(failed) - applied - set(moved)
        for ticket_id, status in moved.items():
            sim.agent_sets(ticket_id, status)
        puts, seen = len(sim.sent_ids()), len(sim.requests)
        retried = run_bulk("retry", str(undo_report), "--rate", "unlimited", env=env)
        retry_puts = sim.sent_ids()[puts:]
        # The undo read one ticket at a time (its batch listed nothing): so does its retry.
        assert [r for r in sim.requests[seen:] if r.method == "GET" and not r.ticket_id] == []
    assert retried.returncode == 0, retried.stderr
    assert f"left alone: {len(moved)} changed since the batch" in retried.stdout
    # Neither the agent's tickets nor those already back are written.
    assert sorted(retry_puts) == sorted(set(failed) - applied - set(moved))
    again = {r["ticket_id"]: r for r in read_report(tmp_path / "reports" / "in.undo.retry.csv")}
    assert set(again) == set(failed)
    _retried_as_guarded(sim, again, before, applied, moved)


def _retried_as_guarded(
    sim: Simulator,
    again: dict[str, dict[str, str]],
    before: dict[str, str],
    applied: set[str],
    moved: dict[str, str],
) -> None:
    """Each retried revert: back if still as the batch left it, the agent's change kept."""
    for ticket_id, row in again.items():
        assert row["expected_status"] == "closed"
        if ticket_id not in moved:
            assert sim.status_of(ticket_id) == before[ticket_id]
            assert row["outcome"] == ("unchanged" if ticket_id in applied else "updated")
            continue
        assert sim.status_of(ticket_id) == moved[ticket_id]
        assert row["outcome"] + ": " + row["error"].split(", at ")[0] == (
            f"skipped: changed since the batch (now {moved[ticket_id]}"
        )


def test_tickets_an_undo_could_not_read_are_retried_and_counted_apart(
    tmp_path: Path, tickets: list[dict[str, Any]]
) -> None:
    tickets = tickets[:200]
    sim = Simulator(SimConfig(rate=None, seed=5), tickets)
    before = {t["id"]: t["status"] for t in tickets}
    with _closed_by_a_batch(tmp_path, sim, tickets) as env:
        undone, undo_report = _undo_in_trouble(tmp_path, sim, env, 0.3)  # reads and PUTs alike
        rows = read_report(undo_report)
        unread = {r["ticket_id"] for r in rows if r["error"].startswith("left alone: could not")}
        assert unread
        changed = sum(r["error"].startswith("changed since") for r in rows)
        assert changed == 0
        assert f"left alone: {len(unread)} could not be read to check" in undone.stdout
        retried = run_bulk(
            "retry", str(undo_report), "--only", "failed,skipped", "--rate", "unlimited", env=env
        )
    assert retried.returncode == 0, retried.stderr
    again = {r["ticket_id"]: r for r in read_report(tmp_path / "reports" / "in.undo.retry.csv")}
    assert unread <= set(again)
    for ticket_id in unread:
        assert again[ticket_id]["outcome"] == "updated"
        assert sim.status_of(ticket_id) == before[ticket_id]


async def test_a_dataframe_with_expected_statuses_changes_only_what_still_has_them(
    sim: Simulator, server: str, creds: Credentials, tickets: list[dict[str, Any]]
) -> None:
    """A library caller's `expected_status` column works as an undo's does; its values are
    checked as statuses before anything is sent."""
    import pandas as pd

    chosen = tickets[:20]
    expected: list[str | None] = ["New" if t["status"] == "new" else "Solved" for t in chosen]
    expected[-1] = None  # missing: no condition (pd.NA in the string column below)
    # The id column under another name, and a string column's missing value.
    column = pd.array(expected, dtype="string")
    frame = pd.DataFrame({"id": _ids(chosen), "expected_status": column})
    options: dict[str, Any] = {"base_url": server, "credentials": creds, "rate": None}
    report = await run_async(frame, status="closed", **options)
    rows = report.set_index("ticket_id")
    for ticket, wanted in zip(chosen, expected, strict=True):
        held = wanted is None or ticket["status"] == wanted.lower()
        assert sim.status_of(ticket["id"]) == ("closed" if held else ticket["status"])
        shown = rows.loc[ticket["id"], "expected_status"]
        assert pd.isna(shown) if wanted is None else shown == wanted.lower()
    assert {"new", "solved"} & {t["status"] for t in chosen}
    assert {"inProgress", "closed"} & {t["status"] for t in chosen}
    hostile = frame.assign(expected_status=["=HYPERLINK(1)\x1b[31m"] * len(chosen))
    sent = len(sim.requests)
    with pytest.raises(bulk.UsageError, match=r"row 1, column 'expected_status': .* not a status"):
        await run_async(hostile, status="closed", report=Path("h.csv"), **options)
    assert len(sim.requests) == sent


def test_a_retry_of_an_undo_that_listed_lists_too(
    tmp_path: Path, tickets: list[dict[str, Any]]
) -> None:
    """The undo read by listing its locations; so does its retry (one GET a ticket would
    double its requests)."""
    sim = Simulator(SimConfig(rate=None, seed=3), tickets)
    where = [a for location in LOCATIONS for a in ("--location", location)]
    with SimulatorThread(sim) as thread:
        env = demo_vars(thread.base_url)
        path = _input(tmp_path, tickets)
        done = run_bulk(
            "run", str(path), "--status", "closed", "--rate", "unlimited", *where, env=env
        )
        assert done.returncode == 0, done.stderr
        report = tmp_path / "reports" / "in.report.csv"
        undone = run_bulk("undo", str(report), "--rate", "unlimited", "--limit", "20", env=env)
        assert undone.returncode == 0, undone.stderr
        assert (tmp_path / "reports" / "in.undo.snapshot.csv").is_file()
        seen = len(sim.requests)
        undo_report = tmp_path / "reports" / "in.undo.csv"
        forget_journal(undo_report)  # else its held-back rows are the undo's to resume
        args = ("--only", "skipped", "--rate", "unlimited")
        retried = run_bulk("retry", str(undo_report), *args, env=env)
        requests = sim.requests[seen:]
    assert retried.returncode == 0, retried.stderr
    puts = [r for r in requests if r.method == "PUT"]
    assert len(puts) > 100
    assert [r for r in requests if r.method == "GET" and r.ticket_id] == []


def _killed_owing(sim: Simulator, journal: Path, ticket: str, undid: str, owed: str) -> None:
    """What an undo killed between a PUT that overwrote `owed` and its put-back leaves: the
    ticket at the undo's status, the agent's status owed in the journal."""
    sim.agent_sets(ticket, undid)
    opened = bulk.journal.Journal(journal)
    opened.owe_put_back(ticket, owed)
    opened.close()


@pytest.mark.parametrize("how", ["resume", "retry"])
def test_a_put_back_a_killed_undo_owed_is_paid(
    tmp_path: Path, tickets: list[dict[str, Any]], how: str
) -> None:
    """Killed after an undo's PUT overwrote an agent's status and before the put-back: the
    journal holds the debt (written before the put-back is sent). `--fresh` would forget it
    and is refused; the resumed undo, whose resent PUT then replaces only its own write,
    puts the agent's status back, and so does a retry of the interrupted undo's report."""
    tickets = tickets[:40]
    sim = Simulator(SimConfig(rate=None, seed=3), tickets)
    before = {t["id"]: t["status"] for t in tickets}
    with _closed_by_a_batch(tmp_path, sim, tickets) as env:
        report = tmp_path / "reports" / "in.report.csv"
        args = ("undo", str(report), "--rate", "unlimited")
        planned = run_bulk(*args, "--limit", "0", env=env)  # read and planned, nothing sent
        assert planned.returncode == 0, planned.stderr
        victim = next(t for t in _ids(tickets) if before[t] == "new")
        _killed_owing(sim, tmp_path / "reports" / "in.undo.journal", victim, "new", "solved")
        sent = len(sim.requests)
        fresh = run_bulk(*args, "--fresh", env=env)
        assert fresh.returncode == 2 and "still owes 1 agent's status(es) back" in fresh.stderr
        assert len(sim.requests) == sent
        if how == "resume":
            done = run_bulk(*args, env=env)
            paid = "changed since the batch (was solved when the undo wrote; put back)"
            undo_report = tmp_path / "reports" / "in.undo.csv"
        else:
            assert run_bulk(*args, "--limit", "0", env=env).returncode == 0  # its report again
            undo_report = tmp_path / "reports" / "in.undo.csv"
            owed = {r["ticket_id"]: r for r in read_report(undo_report)}[victim]["error"]
            assert owed.startswith("changed since the batch (was solved when the undo wrote new)")
            # While the undo can resume, its unsent rows are its own; once it cannot, the
            # report's words carry the debt.
            forget_journal(undo_report)
            retry = ("retry", str(undo_report), "--only", "skipped", "--rate", "unlimited")
            done = run_bulk(*retry, env=env)
            paid = ""
            undo_report = tmp_path / "reports" / "in.undo.retry.csv"
    assert done.returncode == 0, done.stderr
    assert sim.status_of(victim) == "solved"  # the agent's status, back
    rows = {r["ticket_id"]: r for r in read_report(undo_report)}
    assert (rows[victim]["outcome"], rows[victim]["error"]) == (
        "skipped" if paid else "updated",
        paid,
    )
    others = [t for t in _ids(tickets) if t != victim and before[t] != "closed"]
    assert all(sim.status_of(t) == before[t] for t in others)


def test_retry_force_reverts_what_changed_since_with_a_warning(
    tmp_path: Path, tickets: list[dict[str, Any]]
) -> None:
    tickets = tickets[:100]
    sim = Simulator(SimConfig(rate=None, seed=3), tickets)
    before = {t["id"]: t["status"] for t in tickets}
    with _closed_by_a_batch(tmp_path, sim, tickets) as env:
        _, undo_report = _undo_in_trouble(tmp_path, sim, env, 0.3)
        failed = [r["ticket_id"] for r in read_report(undo_report) if r["outcome"] == "failed"]
        assert failed
        moved = failed[0]
        sim.agent_sets(moved, "inProgress" if before[moved] != "inProgress" else "new")
        forced = run_bulk("retry", str(undo_report), "--force", "--rate", "unlimited", env=env)
    assert forced.returncode == 0, forced.stderr
    assert "--force: reverting every ticket, even those changed since the batch" in forced.stderr
    assert all(sim.status_of(t) == before[t] for t in failed)  # the agent's change too


async def test_a_ticket_twice_in_a_dataframe_is_guarded_by_its_first_row(
    sim: Simulator, server: str, creds: Credentials, tickets: list[dict[str, Any]]
) -> None:
    """The first row of a ticket is the one sent; the guard checks its answer against that
    row's condition, not a later duplicate's (which put the batch's own write back)."""
    import pandas as pd

    ticket = next(t for t in tickets if t["status"] == "new")
    frame = pd.DataFrame({"ticket_id": [ticket["id"]] * 2, "expected_status": ["new", "solved"]})
    report = await run_async(frame, status="closed", base_url=server, credentials=creds, rate=None)
    assert sim.status_of(ticket["id"]) == "closed"
    assert list(report["outcome"]) == ["updated", "skipped"]


def test_an_interrupt_while_reading_stops_the_reads(
    tmp_path: Path, tickets: list[dict[str, Any]]
) -> None:
    """Ctrl-C while reading one GET a ticket: no read starts after it (the walkthrough saw
    every remaining ticket read first: 80 minutes of GETs at 10/s for 50,000), nothing is
    sent, and the rerun reads only the tickets not read yet."""
    tickets = tickets[:300]
    sim = Simulator(SimConfig(rate=400.0, window="sliding"), tickets)
    path = _input(tmp_path, tickets)
    args = ("run", str(path), "--status", "closed", "--read", "--rate")
    with SimulatorThread(sim) as thread:
        env = demo_vars(thread.base_url)
        child = start_bulk(*args, "40", env=env)
        wait_for(lambda: len(sim.requests) >= 40, child, "40 GETs")
        child.send_signal(signal.SIGINT)
        _out, err = child.communicate(timeout=60)
        read = len(sim.requests)
        # What was read is settled as it was read (a rerun must not settle on old reads).
        first = read_report(tmp_path / "reports" / "in.report.csv")
        settled = {r["ticket_id"] for r in first if r["outcome"] == "unchanged"}
        resumed = run_bulk(*args, "400", env=env)
    assert child.returncode == 130, err
    assert "read before writing: interrupted after" in err
    # The reads in flight when it came end; 260 were left to start.
    assert read < 40 + 30, read
    assert {r.method for r in sim.requests[:read]} == {"GET"}
    closed = {t["id"] for t in tickets if t["status"] == "closed"}
    assert settled and settled <= closed
    assert resumed.returncode == 0, resumed.stderr
    gets = Counter(
        r.ticket_id for r in sim.requests if r.method == "GET" and r.status == 200 and r.ticket_id
    )
    assert sorted(gets) == sorted(_ids(tickets)) and set(gets.values()) == {1}
    assert {sim.status_of(t) for t in _ids(tickets)} == {"closed"}


def test_a_listing_that_cannot_be_read_stops_the_run_with_its_report(
    tmp_path: Path, tickets: list[dict[str, Any]]
) -> None:
    """Every listing page failing (the server down, a wrong base URL) ended the run with a
    traceback, exit 1 and no report (review). It stops as any stop does: nothing sent, the
    report written, exit 3; the rerun reads again and finishes."""
    tickets = tickets[:100]
    sim = Simulator(SimConfig(rate=None, seed=5, error_rate=1.0), tickets)
    where = [a for location in LOCATIONS for a in ("--location", location)]
    args = ("run", str(_input(tmp_path, tickets)), "--status", "closed", *where, "--rate", "0")
    with SimulatorThread(sim) as server:
        stopped = run_bulk(*args, "--max-attempts", "1", env=demo_vars(server.base_url))
        assert _methods(sim).keys() == {"GET"}
        rows = read_report(tmp_path / "reports" / "in.report.csv")
        sim.config.error_rate = 0.0
        again = run_bulk(*args, env=demo_vars(server.base_url))
    assert stopped.returncode == 3, stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert "stopped early: the tickets could not be read (HTTP 5" in stopped.stdout
    assert len(rows) == len(tickets) and {r["outcome"] for r in rows} == {"skipped"}
    assert again.returncode == 0, again.stderr
    assert all(sim.status_of(t["id"]) == "closed" for t in tickets)


async def test_a_resume_does_not_credit_a_lost_answer_from_an_earlier_invocations_read(
    tmp_path: Path, sim: Simulator, server: str, creds: Credentials, tickets: list[dict[str, Any]]
) -> None:
    """A canary read every ticket; agents then solved the rest by hand; the resume's PUTs
    landed but half their answers were lost. The canary's read was taken as each ticket's
    previous status, and the undo put those back over the agents' (review). Now such a row
    stays `unchanged`; none claims a status the ticket no longer had."""
    chosen = [t for t in tickets if t["status"] == "new"][:40]
    path = _input(tmp_path, chosen)
    options: dict[str, Any] = {"base_url": server, "credentials": creds, "rate": None, **FAST}
    await run_async(path, status="closed", locations=LOCATIONS, limit=1, **options)
    with sim._lock:
        for ticket in chosen[1:]:
            sim.tickets[ticket["id"]]["status"] = "solved"
    sim.config.error_after_rate = 0.5
    try:
        report = await run_async(path, status="closed", locations=LOCATIONS, **options)
    finally:
        sim.config.error_after_rate = 0.0
    rows = report.set_index("ticket_id")
    lost = rows.loc[[t["id"] for t in chosen[1:]]]
    assert set(lost["outcome"]) <= {"updated", "unchanged"}
    assert "unchanged" in set(lost["outcome"])  # some answers were lost
    assert set(lost.loc[lost["outcome"] == "updated", "previous_status"]) == {"solved"}
    assert all(sim.status_of(t["id"]) == "closed" for t in chosen)


@pytest.mark.parametrize("dropped", ["drop_rate", "drop_after_rate"])
async def test_every_put_the_server_saw_is_counted_in_attempts(
    tmp_path: Path,
    sim: Simulator,
    server: str,
    creds: Credentials,
    tickets: list[dict[str, Any]],
    dropped: str,
) -> None:
    """aiohttp resent a PUT once, unseen, when a kept-open connection dropped: outside the
    pace, and not in the row's `attempts` (a review: 60 PUTs at the server, 43 reported)."""
    chosen = [t for t in tickets if t["status"] != "closed"][:80]
    setattr(sim.config, dropped, 0.3)
    report = await run_async(
        _input(tmp_path, chosen),
        status="closed",
        base_url=server,
        credentials=creds,
        rate=None,
        concurrency=4,
        max_attempts=10,
        **FAST,
    )
    puts = Counter(r.ticket_id for r in sim.requests if r.method == "PUT")
    attempts = dict(zip(report["ticket_id"], report["attempts"].astype(int), strict=True))
    assert sum(puts.values()) > len(chosen)  # connections did drop
    assert dict(puts) == attempts
    assert set(report["outcome"]) <= {"updated", "unchanged"}


async def test_a_report_of_another_format_beside_a_batchs_report_is_refused(
    tmp_path: Path, sim: Simulator, server: str, creds: Credentials, tickets: list[dict[str, Any]]
) -> None:
    """`z.csv` and `z.jsonl` share `z.journal`, `z.lock`, `z.run.json` and `z.html`: the
    second resumed the first's batch as its own, or with --fresh replaced its record (review)."""
    options: dict[str, Any] = {"base_url": server, "credentials": creds, "rate": None}
    first = _input(tmp_path, tickets[:5])
    await run_async(first, status="closed", report=tmp_path / "z.csv", **options)
    record = (tmp_path / "z.run.json").read_bytes()
    other = write_csv(tmp_path / "other.csv", [(t,) for t in _ids(tickets[5:9])], ("ticket_id",))
    sent = len(sim.requests)
    for fresh in (False, True):
        with pytest.raises(bulk.UsageError, match=r"z.journal is the journal of .*z\.csv"):
            await run_async(
                other, status="new", report=tmp_path / "z.jsonl", fresh=fresh, **options
            )
    assert len(sim.requests) == sent
    assert (tmp_path / "z.run.json").read_bytes() == record
    # A journal from before it named its report: the report of another format beside it.
    with sqlite3.connect(tmp_path / "z.journal") as conn:
        conn.execute("DELETE FROM meta WHERE key = 'report'")
    conn.close()
    with pytest.raises(bulk.UsageError, match="is the journal of"):
        await run_async(other, status="new", report=tmp_path / "z.parquet", **options)
    # Its own report resumes as before.
    again = await run_async(first, status="closed", report=tmp_path / "z.csv", **options)
    assert len(again) == 5


def test_an_undo_that_could_read_no_ticket_does_not_exit_0(
    tmp_path: Path, tickets: list[dict[str, Any]]
) -> None:
    """Every read failing (a server down behind a proxy that answers 5xx): each ticket is
    left alone as unreadable, final and `skipped`; the undo exited 0, as if it had undone
    all (review). Those rows are not done: exit 1, and a retry of the report reads them."""
    tickets = tickets[:40]
    sim = Simulator(SimConfig(rate=None, seed=5), tickets)
    with _closed_by_a_batch(tmp_path, sim, tickets) as env:
        before = len(sim.requests)
        undone, _ = _undo_in_trouble(tmp_path, sim, env, 1.0)
    assert undone.returncode == 1, undone.stderr
    assert "could not be read to check" in undone.stdout
    assert "--only failed,skipped" in undone.stdout  # a plain retry takes failed rows only
    assert not [r for r in sim.requests[before:] if r.method != "GET"]
    page = (tmp_path / "reports" / "in.undo.html").read_text()
    assert "could not be read to check" in page
