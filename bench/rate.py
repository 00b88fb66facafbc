"""How close to the server's limit does `bulk run` keep, and how many 429s does it cost?

Each scenario runs the real `bulk run` command (a subprocess) against a
simulator thread in this process, and reads the simulator's request log:

  (a) --rate equal to the limit
  (b) --rate three times the limit
  (c) --rate equal to the limit, and the limit halves mid-run
  (d) the real API's 10/s, at --rate 10

Beside each, the baseline a user would write: the same fixed pace, and a 429
simply retried after a second (bench/naive.py --rate). Figures are measured
over the settled part of each run (after `settle` seconds).

    python bench/rate.py [--limit 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
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
    rate: float
    seconds: float
    settle: float
    schedule: list[tuple[float, dict[str, Any]]]
    target_share: float
    max_429: float

    def limit_at(self, t: float) -> float:
        limit = self.limit
        for when, change in self.schedule:
            if t >= when:
                limit = change["rate"]
        return limit


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
    ]


def env(url: str) -> dict[str, str]:
    return demo_env(url)


def measure(scenario: Scenario, tool: str, folder: Path) -> dict[str, Any]:
    rows = int(3 * scenario.rate * scenario.seconds) + 100
    tickets = make_tickets(rows, seed=1)
    path = folder / f"in-{tool}.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ticket_id"])
        writer.writerows([t["id"]] for t in tickets)
    # Bursts of a tenth of a second: strict enough that a burst is punished.
    burst = max(2, int(scenario.limit / 10))
    config = SimConfig(
        rate=scenario.limit, burst=burst, window=WINDOW, schedule=list(scenario.schedule)
    )
    sim = Simulator(config, tickets)
    with SimulatorThread(sim) as server:
        if tool == "bulk":
            command = [
                sys.executable, "-m", "bulk", "run", str(path), "--status", "closed",
                "--rate", f"{scenario.rate:g}", "--deadline", f"{scenario.seconds:g}s",
                "--max-failure-rate", "1", "--report", str(folder / "report.csv"), "--fresh",
            ]  # fmt: skip
        else:
            command = [
                sys.executable, str(HERE / "naive.py"), str(path), "--status", "closed",
                "--rate", f"{scenario.rate:g}", "--seconds", f"{scenario.seconds:g}",
                "--retry-429",
            ]  # fmt: skip
        subprocess.run(command, env=env(server.base_url), capture_output=True, check=False)
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
    return {
        "scenario": scenario.name,
        "tool": tool,
        "accepted_per_s": ok / span,
        "share_of_limit": ok / span / mean_limit,
        "share_429": limited / max(1, len(window)),
        "requests": len(window),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=float, default=200.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--only", help="run only scenarios whose name contains this")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for scenario in scenarios(args.limit):
            if args.only and args.only not in scenario.name:
                continue
            pair = [measure(scenario, tool, Path(tmp)) for tool in ("bulk", "naive")]
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
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
