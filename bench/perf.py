"""Throughput, CPU, correctness under faults, memory and start-up: `bulk run` beside the baseline.

Every client is a real subprocess; its CPU time (user + sys, its children included) and peak
RSS are the rusage of that one process (_common/metering.py). Servers run apart from the
client. The scenarios, one module each, in the order they run:

  (a) perf_speed.py: no latency, no limit, 20,000 rows: rows/s (wall) and client CPU per row,
      for bench/naive.py, `bulk run` (journal and report on) and `xargs -P 64` + curl (fewer
      rows). The simulator (`bulk simulate`, its own process) is first checked for being the
      bottleneck; if it is, (a) uses the bench's own minimal server (`--fast-server`).
  (d) perf_cpu.py: client CPU per row against a plain asyncio server (`--plain-server`).
  (b) perf_latency.py: 50 ms server latency, concurrency 64: rows/s as a share of Little's
      bound 64/0.05 s.
  (c) perf_faults.py: 5% 5xx and 2% dropped connections: tickets whose final server status
      is the target.
  memory, perf_memory.py: peak RSS of `bulk run` on 10k, 100k and 1M rows (100k and 1M with
      --deadline 40s: `--memory-deadline 30s` saves ~10 s if `make bench` must be shorter).
  start-up, perf_startup.py: `bulk --help` and `bulk --version`.

(b) and (c) serve the simulator from a thread of this process (`SimulatorThread`), so the
server's request log and final ticket states can be read; the clients stay subprocesses.
CPU taken meanwhile by other processes on the machine is measured per phase, and a phase that
shared the machine is flagged: its figures are not to be trusted.

    python bench/perf.py [--json bench/results/perf.json] [--memory-deadline 40s]
    python bench/perf.py --only plain                                  # (d) alone
    python bench/perf.py --only speed                                  # (a) alone
    python bench/perf.py --fast-server --port 8999 [--latency 0.05]   # the minimal server alone
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import perf_cpu
import perf_faults
import perf_latency
import perf_memory
import perf_speed
import perf_startup
from _common.clients import N_A, compile_bulk, simulator_command, write_ids
from _common.metering import PYTHON
from _common.results import Bench, finish, log, show
from _common.servers import (
    ServerProc,
    fast_server_main,
    free_port,
    plain_server_main,
    server_process,
)
from perf_memory import MEMORY_DEADLINE, MEMORY_KNOWN

HERE = Path(__file__).resolve().parent


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--json", type=Path, default=HERE / "results" / "perf.json")
    parser.add_argument(
        "--memory-deadline",
        default=MEMORY_DEADLINE,
        help=f"bulk run --deadline for the 100k and 1M memory runs (default {MEMORY_DEADLINE})",
    )
    parser.add_argument("--fast-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--latency", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--plain-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--only",
        choices=("plain", "speed"),
        help="run only (d), the plain-server CPU comparison, or (a), the speed comparison",
    )
    return parser.parse_args()


def _own_server(flag: str, port: int) -> list[str]:
    """This script serving one of the bench's minimal servers, in a process of its own."""
    return [PYTHON, str(Path(__file__).resolve()), flag, "--port", str(port)]


def simulator_tickets(work: Path) -> tuple[list[str], Path]:
    """The tickets of the (a)-check and memory simulator; its first N_A are (a)'s input."""
    from bulk.simulator import make_tickets, write_tickets

    known = make_tickets(MEMORY_KNOWN, seed=1)  # starts with make_tickets(N_A, seed=1)
    path = work / "sim-tickets.csv"
    write_tickets(known, path)
    return [t["id"] for t in known], path


def run_speed(bench: Bench, sim: ServerProc, a_in: Path, curl_in: Path) -> None:
    with bench.phase("(a) bottleneck check"):
        bottleneck = perf_speed.bottleneck_check(bench, sim, a_in)
    with bench.phase("(a)"):
        if not bottleneck:
            perf_speed.run(bench, sim, "`bulk simulate`, its own process", a_in, curl_in)
            return
        port = free_port()
        with server_process(
            _own_server("--fast-server", port), port, bench.work / "fast.log"
        ) as fast:
            perf_speed.run(
                bench,
                fast.ready(),
                "the bench's own minimal asyncio server (the simulator was the "
                "bottleneck), its own process",
                a_in,
                curl_in,
            )


def run_plain(bench: Bench, a_in: Path) -> None:
    port = free_port()
    with (
        bench.phase("(d) plain asyncio server"),
        server_process(
            _own_server("--plain-server", port), port, bench.work / "plain.log"
        ) as plain,
    ):
        perf_cpu.run(bench, plain.ready(), a_in)


def run_all(
    bench: Bench, known_ids: list[str], sim_tickets: Path, memory_deadline: str, only: str | None
) -> None:
    port = free_port()
    with server_process(simulator_command(port, sim_tickets), port, bench.work / "sim.log") as sim:
        with bench.phase("inputs, while the simulator starts"):
            a_in, curl_in = bench.work / "a.csv", bench.work / "curl-ids.txt"
            write_ids(a_in, known_ids[:N_A])
            write_ids(curl_in, known_ids[: perf_speed.N_CURL], header=False)
            # (a) alone needs none of the memory runs' inputs (1,000,000 rows the largest).
            memory_in = None if only == "speed" else perf_memory.write_inputs(bench.work, known_ids)
            sim.ready()
        log(f"simulator ({MEMORY_KNOWN:,} tickets) at {sim.base_url}")
        run_speed(bench, sim, a_in, curl_in)
        if memory_in is None:
            return
        run_plain(bench, a_in)
        with bench.phase("(b)"):
            perf_latency.run(bench)
        with bench.phase("(c)"):
            perf_faults.run(bench)
        with bench.phase("memory"):
            perf_memory.run(bench, sim, memory_in, memory_deadline)
    with bench.phase("start-up"):
        perf_startup.run(bench)


def main() -> int:
    args = _parse_args()
    if args.fast_server:
        fast_server_main(args.port, args.latency)
        return 0
    if args.plain_server:
        plain_server_main(args.port)
        return 0
    started = time.perf_counter()
    compile_bulk()
    with tempfile.TemporaryDirectory(prefix="bulk-perf-") as tmp:
        bench = Bench(Path(tmp))
        if not bench.curl:
            bench.note("curl or xargs not found: the xargs+curl column is skipped")
        with bench.phase("simulator tickets"):
            known_ids, sim_tickets = simulator_tickets(bench.work)
        if args.only == "plain":
            a_in = bench.work / "a.csv"
            write_ids(a_in, known_ids[:N_A])
            run_plain(bench, a_in)
            show(bench)
            return 0
        run_all(bench, known_ids, sim_tickets, args.memory_deadline, args.only)
        if args.only == "speed":
            show(bench)
            return 0
    finish(bench, args.json, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
