"""Four real runs and their pages, for tests/e2e/test_page.py and test_page_browser.py.

Each run is the real `bulk` command against a simulator thread: clean, with
failures (unknown tickets and invalid rows), stopped by the failure-rate
stop, and interrupted by SIGINT then resumed. What a page shows is read back
by `PageView` (the page's own markup, from the template's fixed ids).
"""

from __future__ import annotations

import re
import shutil
import signal
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulk.simulator import SimConfig, Simulator, SimulatorThread, make_tickets

from ..support import demo_vars, run_bulk, start_bulk, wait_for, write_csv

__all__ = ["PageView", "Run", "journal_facts", "make_runs"]


@dataclass
class Run:
    name: str
    report: Path
    exit_code: int

    @property
    def page(self) -> Path:
        return self.report.with_name(self.report.name.rsplit(".", 1)[0] + ".html")

    @property
    def journal(self) -> Path:
        return self.report.with_name(self.report.name.rsplit(".", 1)[0] + ".journal")


def _unknown(n: int) -> list[tuple[str, str]]:
    return [(str(uuid.UUID(int=i + 1)), "closed") for i in range(n)]


def _run(folder: Path, url: str, name: str, rows: list[tuple[str, str]], *args: str) -> Run:
    path = write_csv(folder / f"{name}.csv", rows)
    report = folder / "reports" / f"{name}.report.csv"
    out = run_bulk("run", str(path), "--report", str(report), *args, env=demo_vars(url), cwd=folder)
    assert "Traceback" not in out.stderr, out.stderr
    return Run(name, report, out.returncode)


def make_runs(folder: Path) -> dict[str, Run]:
    """The four runs (and `interrupted`: the page as it was before the resume)."""
    sim = Simulator(
        SimConfig(rate=None, latency=0.002), make_tickets(700, seed=5, statuses=("new", "solved"))
    )
    ids = list(sim.tickets)
    runs: dict[str, Run] = {}
    with SimulatorThread(sim) as server:
        url = server.base_url
        fast = ("--rate", "unlimited", "--max-attempts", "2")
        # Paced to last over 3 s: a shorter invocation gets no chart (report/_charts.py).
        clean = [(t, "closed") for t in ids[:150]]
        runs["clean"] = _run(folder, url, "clean", clean, "--rate", "40", "--max-attempts", "2")
        mixed = [(t, "closed") for t in ids[150:250]] + _unknown(6)
        mixed += [("not-an-id", "closed"), (ids[250], "bogus")]
        runs["failures"] = _run(folder, url, "failures", mixed, *fast)
        # Every other row unknown: half fail, more than --max-failure-rate 0.2.
        bad = [
            r
            for pair in zip([(t, "closed") for t in ids[260:360]], _unknown(100), strict=True)
            for r in pair
        ]
        runs["stopped"] = _run(folder, url, "stopped", bad, *fast, "--concurrency", "2")
        runs["interrupted"], runs["resumed"] = _interrupt_and_resume(folder, url, sim, ids[400:700])
    return runs


def _interrupt_and_resume(
    folder: Path, url: str, sim: Simulator, ids: list[str]
) -> tuple[Run, Run]:
    path = write_csv(folder / "resumed.csv", [(t, "closed") for t in ids])
    report = folder / "reports" / "resumed.report.csv"
    # Both invocations last over 3 s, so each gets its charts (report/_charts.py).
    args = ("run", str(path), "--report", str(report), "--rate", "60", "--concurrency", "4")
    proc = start_bulk(*args, env=demo_vars(url), cwd=folder)
    before = len(sim.requests)
    wait_for(lambda: len(sim.requests) - before >= 200, proc, "200 requests")
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    first = Run("interrupted", report, proc.returncode)
    # Keep the interrupted run's page: the resume replaces it.
    kept = folder / "interrupted"
    kept.mkdir()
    shutil.copy(first.page, kept / first.page.name)
    first = Run("interrupted", kept / report.name, proc.returncode)
    out = run_bulk(*args[:-4], "--rate", "30", env=demo_vars(url), cwd=folder)
    assert "resuming:" in out.stderr, out.stderr
    return first, Run("resumed", report, out.returncode)


def journal_facts(path: Path) -> dict[str, Any]:
    """What the journal says, computed here with SQL of the test's own."""
    with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as conn:
        outcomes = dict(
            conn.execute("SELECT COALESCE(outcome, 'skipped'), COUNT(*) FROM rows GROUP BY 1")
        )
        requests, retries = conn.execute(
            "SELECT SUM(attempts), SUM(MAX(attempts - 1, 0)) FROM rows"
        ).fetchone()
        failed = conn.execute(
            "SELECT error, http_status, row FROM rows WHERE outcome = 'failed' ORDER BY row"
        ).fetchall()
        transitions = conn.execute(
            "SELECT previous_status, target_status, COUNT(*) FROM rows WHERE outcome = 'updated'"
            " GROUP BY 1, 2"
        ).fetchall()
        seconds = conn.execute(
            "SELECT invocation, SUM(ok + throttled + server_error + client_error + network"
            " + unexpected), SUM(throttled) FROM seconds GROUP BY 1"
        ).fetchall()
        (matter,) = conn.execute(
            "SELECT COUNT(*) FROM rows WHERE outcome IS NULL"
            " OR outcome NOT IN ('updated', 'unchanged')"
        ).fetchone()
    return {
        "rows": sum(outcomes.values()),
        "outcomes": outcomes,
        "requests": requests,
        "retries": retries,
        "failures": _grouped(failed),
        "transitions": transitions,
        "seconds": seconds,
        "matter": matter,
    }


def _grouped(failed: list[tuple[str, int, int]]) -> list[tuple[str, int, int, int]]:
    """(message with ticket ids as {id}, status, rows, first row), most rows first."""
    groups: dict[tuple[str, int], list[int]] = {}
    for error, status, row in failed:
        shape = re.sub(
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "{id}", error
        )
        groups.setdefault((shape, status), []).append(row)
    ordered = sorted(groups.items(), key=lambda g: (-len(g[1]), g[1][0]))
    return [(shape, status, len(rows), rows[0]) for (shape, status), rows in ordered]


_TILE = re.compile(
    r'data-tile="([^"]*)"><div class="label">[^<]*</div><div class="value">([^<]*)</div>'
)


class PageView:
    """The figures a page shows, read from its markup."""

    def __init__(self, path: Path) -> None:
        self.html = path.read_text(encoding="utf-8")

    @property
    def verdict(self) -> tuple[str, str]:
        found = re.search(
            r'<section class="verdict ([a-z-]+)"[^>]*>\s*<strong>([^<]*)</strong>', self.html
        )
        assert found, "no verdict banner"
        return found.group(1), found.group(2)

    @property
    def tiles(self) -> dict[str, int | str]:
        out: dict[str, int | str] = {}
        for label, value in _TILE.findall(self.html):
            plain = value.replace(",", "")
            out[label] = int(plain) if plain.isdigit() else value
        return out

    @property
    def charts(self) -> list[str]:
        return re.findall(r'<figure class="chart" role="img" aria-label="([^"]*)">', self.html)

    @property
    def table_rows(self) -> list[str]:
        return re.findall(r'<tr data-outcome="([^"]*)">', self.html)

    def section(self, ident: str) -> str:
        found = re.search(rf'<section [^>]*id="{ident}"[^>]*>(.*?)</section>', self.html, re.S)
        assert found, ident
        return found.group(1)
