"""(d) the server is the bottleneck: client CPU per row against a plain asyncio server.

The server (`python bench/perf.py --plain-server --port P`) is what a new user would write to
test against: `asyncio.start_server`, HTTP/1.1 keep-alive, one process (~2,000-2,700 answers
a second on two cores). bulk and naive alternate, five runs each; each keeps its least CPU per
row over the runs that answered every row (the machine's noise only ever adds CPU; a run
that died early would spend less), and the medians are shown beside it (no target:
they say how far a typical run is from the least). As the client waits on most requests, what
it spends per wait and per wake-up shows here, where the fast server of (a) hides it.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from _common.clients import (
    CONCURRENCY,
    N_A,
    bulk_command,
    client_env,
    naive_command,
    naive_counts,
    report_ok_rows,
)
from _common.metering import Measured, run_measured
from _common.results import Bench, Row, complete, log
from _common.servers import ServerProc

# Runs of each client, alternating. Even the least of five moved between 1.08x and 1.44x the
# baseline's over nine measurements in one day on the bench machine (the script's least ran
# from 281 to 419 us a row); fewer runs move more.
PLAIN_RUNS = 5


def _send(bench: Bench, server: ServerProc, tool: str, a_in: Path) -> tuple[Measured, int]:
    """One client's whole run, and how many of its rows were answered 200."""
    env = client_env(server.base_url)
    if tool == "naive":
        m = run_measured(naive_command(a_in), env=env, timeout=120)
        return m, naive_counts(m.output)[0]
    report = bench.work / "plain-report.csv"
    m = run_measured(bulk_command(a_in, report), env=env, timeout=180)
    return m, report_ok_rows(report) if report.exists() else 0


def run(bench: Bench, server: ServerProc, a_in: Path) -> None:
    cpus: dict[str, list[float]] = {"naive": [], "bulk": []}
    whole: dict[str, list[bool]] = {"naive": [], "bulk": []}
    for run in range(PLAIN_RUNS):
        for tool in ("naive", "bulk"):
            m, ok = _send(bench, server, tool, a_in)
            cpus[tool].append(m.cpu / N_A * 1e6)
            whole[tool].append(ok == N_A and m.code == 0)
            bench.raw.setdefault("plain", {}).setdefault(tool, []).append(
                {"rows": N_A, "ok_rows": ok, "wall_s": m.wall, "cpu_s": m.cpu, "exit": m.code}
            )
            log(
                f"(d) {tool} run {run + 1}: {N_A} rows in {m.wall:.2f} s "
                f"({N_A / m.wall:,.0f}/s), {m.cpu / N_A * 1e6:.0f} us CPU/row, {ok} answered 200"
            )
            if ok != N_A:
                bench.note(f"(d) {tool}: only {ok} of {N_A} rows answered 200 (exit {m.code})")
    (naive_runs, naive_whole), (bulk_runs, bulk_whole) = (
        complete(cpus[tool], whole[tool]) for tool in ("naive", "bulk")
    )
    naive, bulk = min(naive_runs), min(bulk_runs)
    bench.rows.append(
        Row(
            f"(d) plain asyncio server, c={CONCURRENCY}, {N_A:,} rows, min of {PLAIN_RUNS}",
            "client CPU per row, us",
            naive,
            bulk,
            target="<= 1.2x baseline",
            met=naive_whole and bulk_whole and bulk <= 1.2 * naive,
        )
    )
    bench.rows.append(
        Row(
            f"(d) the same runs, median of {PLAIN_RUNS}",
            "client CPU per row, us",
            statistics.median(naive_runs),
            statistics.median(bulk_runs),
        )
    )
