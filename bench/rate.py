"""How close to the server's limit does `bulk run` keep, and how many 429s does it cost?

Each scenario runs the real `bulk run` command (a subprocess) against a
simulator thread in this process, and reads the simulator's request log:

  (a) --rate equal to the limit
  (b) --rate three times the limit
  (c) --rate equal to the limit, and the limit halves mid-run
  (d) the real API's 10/s, at --rate 10
  (e) a 100/s token bucket answering 429 with a whole-second Retry-After, --rate 300
  (f) the 10/s limit shared with another client using 3/s of it, --rate 10
  (g) the limit rises from 50/s to 100/s at 20 s, --rate 200 (measured 30-40 s after)
  (h) --rate auto against an unannounced 40/s limit

(a)-(d) use a strict sliding window (BENCH_WINDOW changes it) and no
Retry-After, like the real API; (e)-(h) a token bucket whose burst is a tenth
of a second of the limit, (e), (g) and (h) with `Retry-After: 1`-style whole
seconds, (f) without (the production case it stands for).

Beside each, the baseline a user would write: the same fixed pace (10/s for
auto), and a 429 simply retried after a second (bench/naive.py --rate); the
two run at the same time, each against its own simulator. Figures are
measured over the settled part of each run (after `settle` seconds), against
the limit left for the client (the limit less any background load).

    python bench/rate.py [--limit 200] [--json out.json] [--only e,f]
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bulk.simulator import (
    SimConfig,
    Simulator,
    SimulatorThread,
    demo_env,
    make_tickets,
)

HERE = Path(__file__).parent
WINDOW = os.environ.get("BENCH_WINDOW", "sliding")


@dataclass
class Scenario:
    name: str
    limit: float
    rate: float | str  # a number, or "auto"
    seconds: float
    settle: float
    schedule: list[tuple[float, dict[str, Any]]]
    target_share: float
    max_429: float
    window: str = field(default_factory=lambda: WINDOW)
    retry_after: bool = False
    background: float = 0.0

    def limit_at(self, t: float) -> float:
        """The limit left for the client at `t` s: the server's, less the background load."""
        limit = self.limit
        for when, change in self.schedule:
            if t >= when:
                limit = change["rate"]
        return limit - self.background

    @property
    def letter(self) -> str:
        return self.name[1]

    def rate_for(self, tool: str) -> str:
        if self.rate == "auto":
            return "auto" if tool == "bulk" else "10"  # the documented limit
        return f"{self.rate:g}"


def scenarios(limit: float) -> list[Scenario]:
    # Durations are the shortest that show a settled figure: (b) and (c) are
    # measured over the seconds after a 10 s settling period.
    return [
        Scenario("(a) rate = limit", limit, limit, 10, 0, [], 0.98, 0.005),
        Scenario("(b) rate = 3 x limit", limit, 3 * limit, 18, 10, [], 0.90, 0.05),
        Scenario(
            "(c) limit halves at 5 s",
            limit,
            limit,
            23,
            15,
            [(5.0, {"rate": limit / 2})],
            0.90,
            0.05,
        ),
        Scenario("(d) real 10/s", 10, 10, 12, 0, [], 0.98, 0.005),
        Scenario("(e) bucket + Retry-After, 3 x", 100, 300, 40, 10, [], 0.95, 0.01, "bucket", True),
        Scenario("(f) 10/s shared with 3/s", 10, 10, 45, 20, [], 0.95, 0.02, "bucket", False, 3),
        Scenario(
            "(g) limit 50 -> 100 at 20 s",
            50,
            200,
            60,
            50,
            [(20.0, {"rate": 100})],
            0.90,
            0.02,
            "bucket",
            True,
        ),
        Scenario("(h) --rate auto, 40/s", 40, "auto", 45, 20, [], 0.95, 0.02, "bucket", True),
    ]


def env(url: str) -> dict[str, str]:
    return demo_env(url)


def _write_input(scenario: Scenario, tool: str, folder: Path) -> tuple[list[dict[str, Any]], Path]:
    """Enough tickets that the client never runs out before the scenario's deadline."""
    top = max([scenario.limit, *(change["rate"] for _, change in scenario.schedule)])
    pace = top if scenario.rate == "auto" else float(scenario.rate)
    rows = int(3 * max(pace, top) * scenario.seconds) + 100
    tickets = make_tickets(rows, seed=1)
    path = folder / f"in-{tool}.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ticket_id"])
        writer.writerows([t["id"]] for t in tickets)
    return tickets, path


def _config(scenario: Scenario) -> SimConfig:
    # Bursts of a tenth of a second: strict enough that a burst is punished.
    burst = max(2, int(scenario.limit / 10))
    return SimConfig(
        rate=scenario.limit,
        burst=burst,
        window=scenario.window,
        retry_after=scenario.retry_after,
        background_rate=scenario.background,
        schedule=[(when, dict(change)) for when, change in scenario.schedule],
    )


def _command(scenario: Scenario, tool: str, path: Path, folder: Path) -> list[str]:
    if tool == "bulk":
        return [
            sys.executable, "-m", "bulk", *(["-v"] if os.environ.get("BENCH_TRACE") else []),
            "run", str(path), "--status", "closed",
            "--rate", scenario.rate_for(tool), "--deadline", f"{scenario.seconds:g}s",
            "--max-failure-rate", "1", "--report", str(folder / "report.csv"), "--fresh",
        ]  # fmt: skip
    return [
        sys.executable, str(HERE / "naive.py"), str(path), "--status", "closed",
        "--rate", scenario.rate_for(tool), "--seconds", f"{scenario.seconds:g}",
        "--retry-429",
    ]  # fmt: skip


def measure(scenario: Scenario, tool: str, folder: Path) -> dict[str, Any]:
    tickets, path = _write_input(scenario, tool, folder)
    sim = Simulator(_config(scenario), tickets)
    with SimulatorThread(sim) as server:
        done = subprocess.run(
            _command(scenario, tool, path, folder),
            env=env(server.base_url),
            capture_output=True,
            check=False,
            text=True,
        )
        if os.environ.get("BENCH_TRACE") and tool == "bulk":
            print(done.stderr[-20000:], file=sys.stderr)
    return _figures(scenario, tool, sim)


def _figures(scenario: Scenario, tool: str, sim: Simulator) -> dict[str, Any]:
    """What the server's request log says of the settled part of the run."""
    log = sorted(sim.requests, key=lambda r: r.at)
    start = log[0].at
    window = [r for r in log if scenario.settle <= r.at - start <= scenario.seconds]
    span = (window[-1].at - window[0].at) if len(window) > 1 else 1.0
    ok = sum(r.status == 200 for r in window)
    limited = sum(r.status == 429 for r in window)
    # The limit may change inside the window; compare with its average over the window.
    steps = 200
    mean_limit = (
        sum(scenario.limit_at(window[0].at - start + span * i / steps) for i in range(steps))
        / steps
    )
    per_second = [0] * (int(scenario.seconds) + 1)
    for r in log:
        second = int(r.at - start)
        if r.status == 200 and second < len(per_second):
            per_second[second] += 1
    return {
        "scenario": scenario.name,
        "tool": tool,
        "accepted_each_second": per_second,
        "accepted_per_s": ok / span,
        "share_of_limit": ok / span / mean_limit,
        "share_429": limited / max(1, len(window)),
        "requests": len(window),
        "window_s": [scenario.settle, scenario.seconds],
        "refused_at_s": [round(r.at - start, 3) for r in log if r.status == 429][:200],
        **(
            {
                "around_429": [
                    [round(r.at - start, 4), r.status]
                    for r in log
                    if any(abs(r.at - q.at) < 0.08 for q in log if q.status == 429)
                ]
            }
            if os.environ.get("BENCH_TRACE")
            else {}
        ),
        "background": dict(sim.background),
    }


def measure_pair(scenario: Scenario, folder: Path) -> list[dict[str, Any]]:
    """bulk and the baseline, each against its own simulator.

    The long scenarios (e)-(h) run both at once, to keep `make bench` short;
    the short ones, whose targets are strict (98%), one after the other: at
    the limit exactly, ten milliseconds of scheduling jitter from the other
    client is a 429 in a strict sliding window.
    """
    if scenario.seconds < 30:
        return [measure(scenario, tool, folder) for tool in ("bulk", "naive")]
    results: dict[str, dict[str, Any]] = {}

    def one(tool: str) -> None:
        workdir = folder / tool
        workdir.mkdir(exist_ok=True)
        results[tool] = measure(scenario, tool, workdir)

    threads = [threading.Thread(target=one, args=(tool,)) for tool in ("bulk", "naive")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [results["bulk"], results["naive"]]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=float, default=200.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--only", help="run only these scenarios, by letter: e.g. 'e,f' (also BENCH_ONLY)"
    )
    args = parser.parse_args()
    only = args.only or os.environ.get("BENCH_ONLY")
    chosen = {letter.strip() for letter in only.split(",")} if only else None
    results = []
    # The simulators run in this process, and their request logs grow to tens of
    # thousands of objects: a full collection then stalls a server for tens of
    # milliseconds, and the requests it queued meanwhile reach its limiter as one
    # burst. The logs hold no cycles worth collecting, so the collector waits.
    gc.disable()
    with tempfile.TemporaryDirectory() as tmp:
        for scenario in scenarios(args.limit):
            if chosen is not None and scenario.letter not in chosen:
                continue
            pair = measure_pair(scenario, Path(tmp))
            results.extend(pair)
            b, n = pair
            ok = b["share_of_limit"] >= scenario.target_share and b["share_429"] <= scenario.max_429
            print(
                f"{scenario.name:<26} bulk {b['share_of_limit']:6.1%} of limit, "
                f"{b['share_429']:6.2%} 429 | baseline {n['share_of_limit']:6.1%}, "
                f"{n['share_429']:6.2%} 429 | target >= {scenario.target_share:.0%}, "
                f"<= {scenario.max_429:.1%} 429: {'met' if ok else 'MISSED'}",
                flush=True,
            )
            if os.environ.get("BENCH_TRACE"):
                print("  bulk each second:", *b["accepted_each_second"], flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
