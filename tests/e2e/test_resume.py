"""Never lose a row, never send one twice: kill -9, Ctrl-C, resume, retry and undo.

These run the real `bulk` command in a subprocess against a simulator thread,
so signals, the journal on disk and the server's request log are all real.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bulk import Credentials, UsageError
from bulk import run as bulk_run
from bulk.batch import undo_frame
from bulk.journal import COMMIT_EVERY
from bulk.simulator import SimConfig, Simulator
from bulk.simulator import make_tickets as _make

from ..support import demo_vars, read_report, run_bulk, start_bulk, wait_for, write_csv

CONCURRENCY = 8
RATE = 1500


@pytest.fixture
def sim() -> Simulator:
    return Simulator(
        SimConfig(rate=None), _make(3000, seed=11, statuses=("new", "inProgress", "solved"))
    )


def start(url: str, *args: str) -> subprocess.Popen[str]:
    return start_bulk("run", *args, "--concurrency", str(CONCURRENCY), env=demo_vars(url))


def bulk(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_bulk(*args, env=demo_vars(url), timeout=120)


def wait_for_requests(sim: Simulator, n: int, proc: subprocess.Popen[str]) -> None:
    wait_for(lambda: len(sim.requests) >= n, proc, f"{n} requests")


def test_kill_9_at_several_points_loses_nothing(
    tmp_path: Path, sim_thread: tuple[Simulator, str]
) -> None:
    sim, url = sim_thread
    ids = list(sim.tickets)
    path = write_csv(tmp_path / "in.csv", [(t, "closed") for t in ids])
    args = (str(path), "--rate", str(RATE))
    kills = 0
    for point in (400, 1200, 2100):
        proc = start(url, *args)
        wait_for_requests(sim, point, proc)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        kills += 1
    final = bulk(url, "run", *args, "--concurrency", str(CONCURRENCY))
    assert final.returncode == 0, final.stderr
    assert "resuming:" in final.stderr
    report = read_report(tmp_path / "reports" / "in.report.csv")
    assert [r["row"] for r in report] == [str(i) for i in range(1, len(ids) + 1)]
    assert [r["ticket_id"] for r in report] == ids
    assert {r["outcome"] for r in report} <= {"updated", "unchanged"}
    assert all(sim.status_of(t) == "closed" for t in ids)
    sent = Counter(sim.sent_ids())
    assert set(sent) == set(ids)
    resent = sum(n - 1 for n in sent.values())
    # Only rows in flight at each kill go out again: at most CONCURRENCY requests,
    # plus the answers of the journal's last commit interval (two, for slack).
    per_kill = CONCURRENCY + math.ceil(RATE * 2 * COMMIT_EVERY)
    assert resent <= kills * per_kill, (resent, per_kill)
    # A re-sent row the server had already changed reads `unchanged`, never `failed`.
    assert sum(r["outcome"] == "unchanged" for r in report) <= resent


def test_sigint_stops_gracefully_then_rerun_finishes(
    tmp_path: Path, sim_thread: tuple[Simulator, str]
) -> None:
    sim, url = sim_thread
    ids = list(sim.tickets)[:600]
    path = write_csv(tmp_path / "in.csv", [(t, "solved") for t in ids])
    proc = start(url, str(path), "--rate", "300")
    wait_for_requests(sim, 100, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    report = read_report(tmp_path / "reports" / "in.report.csv")
    assert len(report) == len(ids)
    outcomes = Counter(r["outcome"] for r in report)
    assert outcomes["skipped"] > 0 and outcomes["updated"] + outcomes["unchanged"] >= 100
    assert {r["error"] for r in report if r["outcome"] == "skipped"} == {"interrupted"}
    # every request that reached the server is accounted for in the report
    done = {r["ticket_id"] for r in report if r["outcome"] in ("updated", "unchanged")}
    assert set(sim.sent_ids()) == done
    again = bulk(url, "run", str(path), "--rate", "unlimited")
    assert again.returncode == 0, again.stderr
    assert f"resuming: {len(done)} of {len(ids)} rows already final" in again.stderr
    assert Counter(sim.sent_ids()) == Counter(ids)
    final = read_report(tmp_path / "reports" / "in.report.csv")
    assert {r["outcome"] for r in final} == {"updated", "unchanged"}
    assert all(sim.status_of(t) == "solved" for t in ids)


@pytest.mark.parametrize("after", [0.1, 0.3, 0.5])
def test_a_sigint_before_the_run_handles_signals_exits_130(
    tmp_path: Path, sim_thread: tuple[Simulator, str], after: float
) -> None:
    """Early, while modules load or options are parsed, click turned Ctrl-C into "Aborted!"
    and exit 1, the code of a finished run with failed rows (or a traceback, earlier)."""
    sim, url = sim_thread
    path = write_csv(tmp_path / "in.csv", [(t, "solved") for t in list(sim.tickets)[:300]])
    proc = start(url, str(path), "--rate", "20")
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    if proc.returncode == -signal.SIGINT:
        # It landed while Python itself started (a slow machine), before any of bulk's code:
        # Python ends killed by SIGINT, which a shell sees as 130 too.
        assert "bulk/cli" not in stderr and "bulk/batch" not in stderr, stderr
        return
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "Aborted!" not in stderr


def test_an_undo_of_a_report_behind_its_journal_is_refused_until_it_is_rewritten(
    tmp_path: Path, sim_thread: tuple[Simulator, str], creds: Credentials
) -> None:
    """A resumed run killed before its report leaves the older report, which does not show
    what that run changed: an undo of it left those tickets changed, exit 0 (chaos review)."""
    sim, url = sim_thread
    ids = [t for t in sim.tickets if sim.status_of(t) != "solved"][:12]
    path = write_csv(tmp_path / "in.csv", [(t, "solved") for t in ids])
    report = tmp_path / "reports" / "in.report.csv"
    options: dict[str, Any] = {
        "base_url": url,
        "credentials": creds,
        "report": report,
        "rate": None,
    }
    bulk_run(path, limit=3, **options)
    older = report.read_bytes()
    bulk_run(path, limit=3, **options)
    report.write_bytes(older)  # as if the second run was killed before writing its report
    with pytest.raises(UsageError, match="3 rows its batch changed after this report was"):
        undo_frame(report)
    assert sum(sim.status_of(t) == "solved" for t in ids) == 6  # nothing was sent
    # The remedy it names: the batch's command with --limit 0 writes the report again.
    bulk_run(path, limit=0, **options)
    bulk_run(undo_frame(report), **{**options, "report": tmp_path / "reports" / "in.undo.csv"})
    assert not any(sim.status_of(t) == "solved" for t in ids)


def test_a_rerun_removes_the_partial_files_a_killed_run_left(
    tmp_path: Path, sim_thread: tuple[Simulator, str]
) -> None:
    """A run killed while writing its report left a partial copy beside it, for good."""
    sim, url = sim_thread
    path = write_csv(tmp_path / "in.csv", [(t, "solved") for t in list(sim.tickets)[:5]])
    reports = tmp_path / "reports"
    reports.mkdir()
    left = [
        reports / f".in.report.csv.{'a1' * 6}.tmp",
        reports / f".in.report.run.json.{'b2' * 6}.tmp",
    ]
    kept = [reports / ".in.report.csv.notours.tmp", reports / "notes.txt"]
    for leftover in left + kept:
        leftover.write_text("row,ticket_id\n1,partial\n")
    (reports / f".in.report.html.{'c3' * 6}.tmp").symlink_to(kept[1])  # a link is not removed
    assert bulk(url, "run", str(path)).returncode == 0
    assert not any(p.exists() for p in left)
    assert (
        all(p.exists() for p in kept) and (reports / f".in.report.html.{'c3' * 6}.tmp").is_symlink()
    )


def test_edited_input_is_refused_and_fresh_starts_over(
    tmp_path: Path, sim_thread: tuple[Simulator, str]
) -> None:
    sim, url = sim_thread
    ids = list(sim.tickets)[:10]
    path = write_csv(tmp_path / "in.csv", [(t, "closed") for t in ids])
    assert bulk(url, "run", str(path), "--rate", "unlimited").returncode == 0
    again = bulk(url, "run", str(path), "--rate", "unlimited")
    assert again.returncode == 0 and "nothing to send" in again.stderr
    assert len(sim.requests) == 10
    write_csv(path, [(t, "closed") for t in ids[:9]])
    edited = bulk(url, "run", str(path))
    assert edited.returncode == 2
    assert "input_sha256" in edited.stderr and "--fresh" in edited.stderr
    # A finished batch: keeping its files (what undoing it needs) is named first.
    assert "is the journal of a finished batch" in edited.stderr
    assert "give this run its own --report" in edited.stderr
    other = bulk(url, "run", str(path), "--status", "new")
    assert other.returncode == 2
    fresh = bulk(url, "run", str(path), "--fresh", "--rate", "unlimited")
    assert fresh.returncode == 0
    assert len(sim.requests) == 19


def test_retry_sends_only_the_failures(tmp_path: Path, sim_thread: tuple[Simulator, str]) -> None:
    sim, url = sim_thread
    ids = list(sim.tickets)[:200]
    sim.config.error_rate = 0.3
    sim.config.seed = 3
    path = write_csv(tmp_path / "in.csv", [(t, "closed") for t in ids])
    first = bulk(
        url,
        "run",
        str(path),
        "--rate",
        "unlimited",
        "--max-attempts",
        "1",
        "--max-failure-rate",
        "1",
    )
    assert first.returncode == 1
    report = read_report(tmp_path / "reports" / "in.report.csv")
    failed = [r for r in report if r["outcome"] == "failed"]
    assert 20 < len(failed) < 120
    sim.config.error_rate = 0.0
    before = len(sim.sent_ids())
    retried = bulk(url, "retry", str(tmp_path / "reports" / "in.report.csv"), "--rate", "unlimited")
    assert retried.returncode == 0, retried.stderr
    assert sorted(sim.sent_ids()[before:]) == sorted(r["ticket_id"] for r in failed)
    assert all(sim.status_of(t) == "closed" for t in ids)
    second = read_report(tmp_path / "reports" / "in.retry.csv")
    assert [r["source_row"] for r in second] == [r["row"] for r in failed]
    assert {r["outcome"] for r in second} == {"updated"}
    audit = json.loads((tmp_path / "reports" / "in.retry.run.json").read_text())
    assert audit["derived_from"]["kind"] == "retry"
    assert audit["derived_from"]["report"].endswith("in.report.csv")
    listing = bulk(url, "runs", str(tmp_path / "reports"))
    assert "retry" in listing.stdout and "in.report.csv" in listing.stdout


def test_undo_puts_changed_tickets_back(tmp_path: Path, sim_thread: tuple[Simulator, str]) -> None:
    sim, url = sim_thread
    ids = list(sim.tickets)[:90]
    original: dict[str, Any] = {t: sim.status_of(t) for t in ids}
    rows = [(t, "solved") for t in ids] + [("not-an-id", "solved")]
    path = write_csv(tmp_path / "in.csv", rows)
    assert bulk(url, "run", str(path), "--rate", "unlimited").returncode == 1  # one invalid row
    report_path = tmp_path / "reports" / "in.report.csv"
    outcomes = Counter(r["outcome"] for r in read_report(report_path))
    assert outcomes["unchanged"] == 30 and outcomes["updated"] == 60  # a third were solved

    preview = bulk(url, "undo", str(report_path), "--dry-run")
    assert preview.returncode == 0, preview.stderr
    assert "would send 60 requests" in preview.stderr
    assert all(sim.status_of(t) == "solved" for t in ids)
    assert (tmp_path / "reports" / "in.undo.dry-run.csv").is_file()
    # A dry run never writes over the report of a run that sent: undo reads it.
    kept = report_path.read_bytes()
    over = bulk(
        url, "run", str(path), "--status", "closed", "--dry-run", "--report", str(report_path)
    )
    assert over.returncode == 2 and "a dry run writes its own" in over.stderr
    assert report_path.read_bytes() == kept

    undone = bulk(url, "undo", str(report_path), "--rate", "unlimited")
    assert undone.returncode == 0, undone.stderr
    assert {t: sim.status_of(t) for t in ids} == original
    undo_report = read_report(tmp_path / "reports" / "in.undo.csv")
    assert len(undo_report) == len(rows)
    left = Counter(r["error"] for r in undo_report if r["outcome"] == "skipped")
    assert left == {"left alone: outcome was unchanged": 30, "left alone: outcome was invalid": 1}
    assert {r["outcome"] for r in undo_report} == {"updated", "skipped"}


def test_second_process_on_the_same_report_does_nothing(
    tmp_path: Path, sim_thread: tuple[Simulator, str]
) -> None:
    sim, url = sim_thread
    ids = list(sim.tickets)[:200]
    path = write_csv(tmp_path / "in.csv", [(t, "closed") for t in ids])
    first = start(url, str(path), "--rate", "50")
    try:
        wait_for_requests(sim, 5, first)
        second = bulk(url, "run", str(path), "--rate", "unlimited")
    finally:
        first.communicate(timeout=60)
    assert second.returncode == 75
    assert "already running" in second.stderr
    # Refused before planning: it never said it was sending.
    assert "sending to" not in second.stderr
    assert first.returncode == 0
    assert Counter(sim.sent_ids()) == Counter(ids)  # nothing sent twice
