"""What reading first saves: 50,000 tickets in 3 locations, 30% already closed, `--status closed`.

The real `bulk run` (a subprocess) against a simulator thread in this process whose strict
sliding window allows R requests a second, at `--rate R`: once with `--no-read`, once reading
first by listing (`--location` x 3). Counts come from the simulator's request log; the wall
time at the real 10/s is requests / 10 (the pace bounds both runs), and the measured wall is
also shown scaled by R/10. Both runs must leave every ticket closed. The simulator's
listing scans every ticket per page (~0.1 s a page at 50,000), so at high R its listing
phase, not bulk's pace, bounds the reading run's wall: `reads end` shows it. About 3.5 min at R=500;
not part of `make bench`.

    python bench/read_first.py [--tickets 50000] [--rate 500]
"""

from __future__ import annotations

import argparse
import csv
import gc
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from _common.metering import machine_cpu, own_cpu

from bulk.simulator import LOCATIONS, SimConfig, Simulator, SimulatorThread, demo_env, make_tickets

REAL_RATE = 10.0
# 3 of every 10 tickets closed already, the rest spread over the other statuses.
STATUS_CYCLE: tuple[str, ...] = ("new", "inProgress", "closed", "new", "solved")
STATUS_CYCLE += ("closed", "inProgress", "new", "closed", "solved")
LISTING = "/support/tickets/v1"


@dataclass
class Figures:
    mode: str
    code: int
    wall: float
    kinds: Counter[str]
    all_closed: bool
    outcomes: Counter[str]
    phases: tuple[float, float, float]  # last read, first and last write, s after the start
    other_load: float  # cores used by other processes on the machine meanwhile

    @property
    def requests(self) -> int:
        return sum(self.kinds.values())


def kind(method: str, path: str, status: int) -> str:
    if status == 429:
        return "429"
    if method == "GET":
        return "listing pages" if path.rstrip("/") == LISTING else "ticket GETs"
    return f"{method}s"


def measure(mode: str, n: int, rate: float, folder: Path) -> Figures:
    tickets = make_tickets(n, seed=11, statuses=STATUS_CYCLE)
    source = folder / "tickets.csv"
    source.write_text("ticket_id\n" + "".join(t["id"] + "\n" for t in tickets))
    sim = Simulator(SimConfig(rate=rate, window="sliding"), tickets)
    report = folder / f"{mode}.report.csv"
    read = (
        ["--no-read"] if mode == "--no-read" else [a for x in LOCATIONS for a in ("--location", x)]
    )
    command = [sys.executable, "-m", "bulk", "run", str(source), "--status", "closed"]
    command += ["--rate", f"{rate:g}", "--report", str(report), "--fresh", *read]
    with SimulatorThread(sim) as server:
        began, machine, own = time.monotonic(), machine_cpu(), own_cpu()
        done = subprocess.run(
            command, env=demo_env(server.base_url), capture_output=True, text=True, check=False
        )
        wall = time.monotonic() - began
        other = max(0.0, machine_cpu() - machine - (own_cpu() - own)) / wall
    if done.returncode != 0 or "Traceback" in done.stderr:
        print(f"{mode}: exit {done.returncode}\n{done.stderr[-3000:]}", file=sys.stderr)
    with open(report, newline="", encoding="utf-8") as handle:
        outcomes = Counter(row["outcome"] for row in csv.DictReader(handle))
    kinds = Counter(kind(r.method, r.path, r.status) for r in sim.requests)
    closed = all(t["status"] == "closed" for t in sim.tickets.values())
    reads = [r.at - began for r in sim.requests if r.method == "GET"] or [0.0]
    writes = [r.at - began for r in sim.requests if r.method == "PUT"] or [0.0]
    phases = (max(reads), min(writes), max(writes))
    return Figures(mode, done.returncode, wall, kinds, closed, outcomes, phases, other)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=500.0)
    args = parser.parse_args()
    gc.disable()  # the simulator's log is large; a collection would stall it (see rate.py)
    scale = args.rate / REAL_RATE
    with tempfile.TemporaryDirectory() as tmp:
        runs = [measure(m, args.tickets, args.rate, Path(tmp)) for m in ("--no-read", "--location")]
    print(
        f"{args.tickets:,} tickets in {len(LOCATIONS)} locations, 30% already closed; simulator "
        f"limit {args.rate:g}/s (sliding), --rate {args.rate:g}: scale factor {scale:g} (R/10)"
    )
    head = ["run", "exit", "listing", "GETs", "PUTs", "429", "requests", "wall", "wall x R/10"]
    head += ["at 10/s (req/10)", "reads end", "PUTs from-to", "other load", "all closed"]
    print(" | ".join(head))
    for f in runs:
        cells = [
            f.mode,
            str(f.code),
            f"{f.kinds['listing pages']:,}",
            f"{f.kinds['ticket GETs']:,}",
        ]
        cells += [
            f"{f.kinds['PUTs']:,}",
            f"{f.kinds['429']:,}",
            f"{f.requests:,}",
            f"{f.wall:.1f} s",
        ]
        cells += [f"{f.wall * scale / 60:.1f} min", f"{f.requests / REAL_RATE / 60:.1f} min"]
        cells += [f"{f.phases[0]:.1f} s", f"{f.phases[1]:.1f}-{f.phases[2]:.1f} s"]
        cells += [f"{f.other_load:.2f} cores", "yes" if f.all_closed else "NO"]
        print(" | ".join(cells), dict(sorted(f.outcomes.items())))
    plain, read = runs
    print(
        f"reading first: {1 - read.requests / plain.requests:.1%} fewer requests, "
        f"{plain.requests / read.requests:.2f}x less time at any rate the pace bounds "
        f"(measured walls: {plain.wall / read.wall:.2f}x)"
    )


if __name__ == "__main__":
    main()
