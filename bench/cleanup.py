"""The nightly cleanup job over 5,000 listed tickets in 3 locations, at the real 10/s.

Prints pages fetched, tickets selected and wall time against the ideal
(requests / rate). Takes about a minute and a half; not part of `make bench`.

    python bench/cleanup.py [--tickets 5000] [--rate 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bulk.simulator import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    LOCATIONS,
    SimConfig,
    Simulator,
    SimulatorThread,
    make_tickets,
)

JOB = Path(__file__).parent.parent / "jobs" / "nightly_cleanup.toml"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=10.0)
    args = parser.parse_args()
    sim = Simulator(
        SimConfig(rate=args.rate, window="sliding", latency=0.02, jitter=0.02),
        make_tickets(args.tickets, seed=3),
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPACEBRING_")}
    with tempfile.TemporaryDirectory() as folder, SimulatorThread(sim) as server:
        env.update(
            SPACEBRING_BASE_URL=server.base_url,
            SPACEBRING_CLIENT_ID=DEMO_CLIENT_ID,
            SPACEBRING_CLIENT_SECRET=DEMO_CLIENT_SECRET,
            LOCATIONS=",".join(LOCATIONS),
        )
        began = time.monotonic()
        out = subprocess.run(
            [sys.executable, "-m", "bulk", "job", "run", str(JOB)],
            env=env,
            cwd=folder,
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.monotonic() - began
    pages = sum(r.method == "GET" for r in sim.requests)
    puts = len(sim.sent_ids("PUT"))
    answered = sim.status_counts()
    ideal = (pages + puts) / args.rate
    print(out.stderr.strip().splitlines()[0] if out.stderr.strip() else "")
    print(
        f"exit {out.returncode}; {args.tickets} tickets in {len(LOCATIONS)} locations; "
        f"{pages} pages fetched; {puts} tickets changed; answers {answered}"
    )
    print(
        f"wall {wall:.1f}s (process start to exit) vs ideal {ideal:.1f}s "
        f"= ({pages} + {puts}) requests / {args.rate:g}/s; ratio {wall / ideal:.3f}"
    )


if __name__ == "__main__":
    main()
