"""Issue #13's "Done when": a 3,000-row batch of changes through faults, kill -9s and expiring
OAuth tokens, then its undo.

Every row closes its ticket with a templated comment; a third are reassigned (an `assignee`
column), a third re-typed (a `type` column). The simulator (a thread of this process) answers
5% of calls with a 5xx, drops 2% of the writes' answers after applying them, and issues OAuth
access tokens that expire after 20 s (real seconds, not scaled); its strict sliding window
allows R requests a second and bulk runs at `--rate R`. The real `bulk run` (a subprocess)
is killed with SIGKILL three times, at about 25%, 50% and 75% of the changes journaled, and
rerun until it exits 0. Then the simulator's state, the report and `bulk undo` are checked.
About 3 min at R=100; not part of `make bench`.

    python bench/changes.py [--rows 3000] [--rate 100]
"""

from __future__ import annotations

import argparse
import csv
import gc
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulk.simulator import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_NETWORK_ID,
    DEMO_REFRESH_TOKEN,
    TOKEN_PATH,
    SimConfig,
    Simulator,
    SimulatorThread,
    make_tickets,
)

REAL_RATE = 10.0
USER = "0b6f1c2e-3d4a-4b5c-8d6e-7f8091a2b3c4"
TEMPLATE = "Closed after the move: {legacy_id}"
KILLS = (0.25, 0.50, 0.75)  # shares of the batch's changes journaled when bulk is killed
FINAL = ("updated", "unchanged", "failed", "not sent")


def batch(tickets: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Every row closed with a comment; rows 0, 3, 6... reassigned, 1, 4, 7... re-typed."""
    rows = []
    for i, t in enumerate(tickets):
        retype = "cleaning" if t["type"] != "cleaning" else "internet"
        rows.append(
            {
                "ticket_id": t["id"],
                "status": "closed",
                "assignee": USER if i % 3 == 0 else "",
                "type": retype if i % 3 == 1 else "",
                "legacy_id": f"L-{i}",
                # With the location the run reads first, by listing (README "Seeing
                # before changing"): what it read lets a lost answer be credited.
                "locationRef": t["locationRef"],
            }
        )
    return rows


def environment(base_url: str, folder: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("SPACEBRING_", "LOCATIONS"))}
    return keep | {
        "SPACEBRING_BASE_URL": base_url,
        "SPACEBRING_CLIENT_ID": DEMO_CLIENT_ID,
        "SPACEBRING_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        "SPACEBRING_NETWORK_ID": DEMO_NETWORK_ID,
        "SPACEBRING_REFRESH_TOKEN": DEMO_REFRESH_TOKEN,
        "SPACEBRING_TOKEN_FILE": str(folder / "secrets" / "spacebring.token"),
    }


def finished_changes(journal: Path) -> int:
    """Changes with a final state in the journal; read-only, so it never creates the file."""
    if not journal.exists():
        return 0
    try:
        # closing(): sqlite3's own `with` commits but never closes (10,000 polls
        # left 20,000 open files and the simulator could accept no connection).
        with closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=0.2)) as conn:
            marks = ",".join("?" * len(FINAL))
            sql = f"SELECT COUNT(*) FROM changes WHERE state IN ({marks})"
            return int(conn.execute(sql, FINAL).fetchone()[0])
    except sqlite3.Error:
        return 0


class Runner:
    """Runs `bulk` as a child of this process, keeps each invocation's exit, wall and stderr."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env, self.folder = env, folder
        self.runs: list[tuple[str, int, float]] = []
        self.problems: list[str] = []

    def run(self, name: str, *args: str, kill_at: int | None = None) -> int:
        command = [sys.executable, "-m", "bulk", *args]
        err = self.folder / f"output-{len(self.runs)}.txt"
        began = time.monotonic()
        with open(err, "w") as handle:
            child = subprocess.Popen(
                command, env=self.env, cwd=self.folder, stdout=handle, stderr=handle
            )
            if kill_at is not None:
                journal = self.folder / "out.journal"
                while child.poll() is None and finished_changes(journal) < kill_at:
                    time.sleep(0.01)
                if child.poll() is None:
                    child.send_signal(signal.SIGKILL)
            code = child.wait()
        self.runs.append((name, code, time.monotonic() - began))
        text = err.read_text(errors="replace")
        if "Traceback" in text or code not in (0, -signal.SIGKILL):
            self.problems.append(f"{name} (exit {code}): {text[-1500:]}")
        return code


def write_input(rows: list[dict[str, str]], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def check_applied(sim: Simulator, rows: list[dict[str, str]]) -> dict[str, int]:
    """Tickets whose final state misses a requested change, and comments not exactly once."""
    wrong: Counter[str] = Counter()
    for row in rows:
        ticket = sim.tickets[row["ticket_id"].lower()]
        wrong["status"] += ticket["status"] != "closed"
        wrong["assignee"] += bool(row["assignee"]) and ticket.get("userRefAssignee") != USER
        wrong["type"] += bool(row["type"]) and ticket["type"] != row["type"]
        texts = [c["data"]["text"] for c in sim.comments(row["ticket_id"])]
        wrong["comment"] += texts != [TEMPLATE.format(legacy_id=row["legacy_id"])]
    return dict(wrong)


def check_report(sim: Simulator, rows: list[dict[str, str]], path: Path) -> dict[str, int]:
    """What the report says against what the simulator did."""
    report = read_csv(path)
    bad: Counter[str] = Counter(rows_in_report=len(report))
    for row, line in zip(rows, report, strict=False):
        bad["outcome not updated"] += line["outcome"] != "updated"
        # Every ticket was new or inProgress: a status reported unchanged was changed by us.
        bad["status previous not recorded"] += line["previous_status"] in ("", "closed")
        if row["assignee"]:
            bad["assignee outcome not updated"] += line["assignee_outcome"] != "updated"
        if row["type"]:
            bad["type outcome not updated"] += line["type_outcome"] != "updated"
        ids = [c["id"] for c in sim.comments(row["ticket_id"])]
        bad["comment_id not the posted one"] += [line["comment_id"]] != ids
        bad["comment outcome not updated"] += line["comment_outcome"] != "updated"
    return dict(bad)


def check_undo(sim: Simulator, before: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Tickets not back to their state before the batch, per field; comments left."""
    left: Counter[str] = Counter(comments_left=sim.comment_count())
    for key, old in before.items():
        now = sim.tickets[key]
        left["status not restored"] += now["status"] != old["status"]
        left["assignee not restored"] += now.get("userRefAssignee") != old.get("userRefAssignee")
        left["type not restored"] += now["type"] != old["type"]
    return dict(left)


def requests_by_kind(sim: Simulator, since: int = 0) -> Counter[str]:
    return Counter(
        "token" if r.path == TOKEN_PATH else f"{r.method} {r.status or 'dropped'}"
        for r in sim.requests[since:]
    )


@dataclass
class Results:
    runs: list[tuple[str, int, float]]
    api: int  # the batch's API requests (token requests not counted)
    kinds: Counter[str]
    refreshes: int
    refused: int
    duplicates: int
    applied: dict[str, int]
    accounted: dict[str, int]
    undo_code: int
    undo_report: Counter[str]
    undo_kinds: Counter[str]
    undone: dict[str, int]
    problems: list[str]


def measure(n: int, rate: float, reruns: int) -> Results:
    tickets = make_tickets(n, seed=13, statuses=("new", "inProgress"))
    rows = batch(tickets)
    before = {t["id"].lower(): dict(t) for t in tickets}
    total = sum(2 + bool(r["assignee"]) + bool(r["type"]) for r in rows)
    config = SimConfig(rate=rate, window="sliding", error_rate=0.05, drop_after_rate=0.02)
    config.token_lifetime, config.seed = 20.0, 13
    sim = Simulator(config, tickets)
    with tempfile.TemporaryDirectory() as tmp, SimulatorThread(sim) as server:
        folder = Path(tmp)
        write_input(rows, folder / "in.csv")
        runner = Runner(environment(server.base_url, folder), folder)
        run = ["run", "in.csv", "--comment", TEMPLATE, "--rate", f"{rate:g}", "--report", "out.csv"]
        for i, share in enumerate(KILLS):
            runner.run(f"run {i + 1} (kill -9)", *run, kill_at=int(total * share))
        for i in range(reruns):
            if runner.run(f"rerun {i + 1}", *run) == 0:
                break
        since = len(sim.requests)
        kinds = requests_by_kind(sim)
        refreshes, refused = sim.oauth.refreshes, sim.oauth.refused
        applied, duplicates = check_applied(sim, rows), sim.duplicate_comments()
        accounted = check_report(sim, rows, folder / "out.csv")
        undo_code = runner.run("undo", "undo", "out.csv", "--rate", f"{rate:g}", "--yes")
        undo_report = Counter(line["outcome"] for line in read_csv(folder / "out.undo.csv"))
    return Results(
        runner.runs, since - kinds["token"], kinds, refreshes, refused, duplicates, applied,
        accounted, undo_code, undo_report, requests_by_kind(sim, since), check_undo(sim, before),
        runner.problems,
    )  # fmt: skip


def show(r: Results, n: int, rate: float) -> None:
    total = sum(wall for name, _, wall in r.runs if name != "undo")
    batch_runs = len(r.runs) - 1
    scale = rate / REAL_RATE
    print(
        f"{n:,} rows; limit {rate:g}/s sliding, --rate {rate:g}: scale factor {scale:g} (R/10); "
        f"5% 5xx, 2% answers dropped after applying, tokens live 20 s (unscaled)"
    )
    for name, code, wall in r.runs:
        print(f"  {name:<20} exit {code:>3}  {wall:6.1f} s")
    print(f"requests (API)       {r.api:,} = {r.api / n:.2f} per row  {dict(r.kinds)}")
    print(
        f"wall (batch)         {total:.1f} s over {batch_runs} runs; at 10/s: "
        f"{total * scale / 60:.1f} min (wall x R/10), {r.api / REAL_RATE / 60:.1f} min (req/10)"
    )
    print(
        f"token refreshes      {r.refreshes} (refused {r.refused}) in {total:.0f} s: one per "
        f"{total / max(1, r.refreshes):.1f} s; each of the {batch_runs} runs starts with one"
    )
    print(f"duplicate comments   {r.duplicates}")
    print(f"changes not applied  {r.applied}")
    print(f"report               {r.accounted}")
    print(f"undo                 exit {r.undo_code}, {dict(r.undo_report)}, {dict(r.undo_kinds)}")
    print(f"after undo           {r.undone}")
    for problem in r.problems:
        print(f"PROBLEM: {problem}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--reruns", type=int, default=5, help="most reruns after the kills")
    args = parser.parse_args()
    gc.disable()  # the simulator's log is large; a collection would stall it (see rate.py)
    show(measure(args.rows, args.rate, args.reruns), args.rows, args.rate)


if __name__ == "__main__":
    main()
