"""(a) no latency, no limit: rows/s (wall) and client CPU per row, beside the baseline.

bench/naive.py and `bulk run` (journal and report on) send 20,000 rows, three alternating runs
each, `xargs -P 64` + curl 1,000 (one process per row) once. First, naive runs against `bulk
simulate` (its own process) to see whether the simulator is the bottleneck; if it is, (a) uses
the bench's own minimal server (`python bench/perf.py --fast-server`) instead.

The CPU target is judged on each client's least CPU per row, as (d) is: the client is the
bottleneck here, and one run of each moved by +-15% on the bench machine: single runs gave
1.14x, 1.32x and 1.36x on code that an A/B of six alternating runs found no different.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

from _common.clients import (
    N_A,
    bulk_command,
    client_env,
    curl_command,
    naive_command,
    naive_counts,
    report_ok_rows,
)
from _common.metering import Measured, run_measured
from _common.results import Bench, Row, complete, log
from _common.servers import ServerProc

N_CURL = 1_000  # rows for xargs + curl: one process per row
BOTTLENECK_SHARE = 0.80  # server CPU over the client's sending time, of one core
BOTTLENECK_COST = 0.90  # or server CPU per request over the client's CPU per row
TOOLS = ("naive", "bulk", "curl")
A_RUNS = 3  # runs of naive and of bulk, alternating; curl (slow, far off the target) runs once


def bottleneck_check(bench: Bench, sim: ServerProc, a_in: Path) -> bool:
    """Run naive against the simulator; is the simulator the bottleneck?"""
    before = sim.cpu()
    m = run_measured(naive_command(a_in), env=client_env(sim.base_url), timeout=60)
    server_cpu = sim.cpu() - before
    ok, failed, sending = naive_counts(m.output)
    share = server_cpu / sending
    cost = server_cpu / m.cpu
    bench.raw["a_check"] = {
        "naive_rows_per_s": N_A / m.wall,
        "naive_sending_s": sending,
        "simulator_cpu_s": server_cpu,
        "simulator_share_of_core": share,
        "simulator_cpu_over_client_cpu": cost,
        "naive_cpu_s": m.cpu,
        "ok": ok,
        "failed": failed,
    }
    bottleneck = share >= BOTTLENECK_SHARE or cost >= BOTTLENECK_COST
    bench.note(
        f"(a) bottleneck check, naive against `bulk simulate` (its own process): "
        f"{N_A / m.wall:,.0f} rows/s wall; the simulator used {server_cpu:.2f} CPU-s in "
        f"naive's {sending:.2f} s of sending = {share:.0%} of one core "
        f"({server_cpu / N_A * 1e6:.0f} us/request, {cost:.2f}x the client's "
        f"{m.cpu / N_A * 1e6:.0f} us/row) -> the simulator "
        + (
            "IS the bottleneck (>= 80% of a core, or as costly per request as the client)"
            if bottleneck
            else "is not the bottleneck"
        )
    )
    return bottleneck


def _rows(tool: str) -> int:
    return N_CURL if tool == "curl" else N_A


def _send(
    bench: Bench, server: ServerProc, tool: str, a_in: Path, curl_in: Path
) -> tuple[Measured, int]:
    """One client's whole run, and how many of its rows were answered 200."""
    env = client_env(server.base_url)
    if tool == "naive":
        m = run_measured(naive_command(a_in), env=env, timeout=60)
        return m, naive_counts(m.output)[0]
    if tool == "bulk":
        report = bench.work / "a-report.csv"
        m = run_measured(bulk_command(a_in, report), env=env, timeout=120)
        return m, report_ok_rows(report) if report.exists() else 0
    m = run_measured(curl_command(server.base_url), timeout=120, stdin_path=curl_in)
    return m, m.output.split().count("200")


def run(bench: Bench, server: ServerProc, label: str, a_in: Path, curl_in: Path) -> None:
    results: dict[str, list[Measured]] = {}
    whole: dict[str, list[bool]] = {}
    server_share: dict[str, list[float]] = {}
    order = [*("naive", "bulk") * A_RUNS, *(("curl",) if bench.curl else ())]
    for tool in order:
        before = server.cpu()
        m, ok = _send(bench, server, tool, a_in, curl_in)
        rows = _rows(tool)
        share = (server.cpu() - before) / m.wall
        server_share.setdefault(tool, []).append(share)
        results.setdefault(tool, []).append(m)
        whole.setdefault(tool, []).append(ok == rows and m.code == 0)
        bench.raw.setdefault("a", {}).setdefault(tool, []).append(
            {
                "rows": rows,
                "ok_rows": ok,
                "exit": m.code,
                "wall_s": m.wall,
                "cpu_s": m.cpu,
                "maxrss_kib": m.maxrss_kib,
                "server_share_of_core": share,
            }
        )
        log(
            f"(a) {tool} run {len(results[tool])}: {rows} rows in {m.wall:.2f} s, "
            f"{m.cpu / rows * 1e6:.0f} us CPU/row, {ok} answered 200, exit {m.code}, "
            f"server {share:.0%} of a core"
        )
        if ok != rows:
            bench.note(f"(a) {tool}: only {ok} of {rows} rows answered 200 (exit {m.code})")
    bench.note(
        f"(a) server: {label}; its CPU during each client's whole run, most of any run: "
        + ", ".join(f"{k} {max(v):.0%}" for k, v in server_share.items())
        + " of one core"
    )
    _table(bench, results, whole)


def _table(bench: Bench, results: dict[str, list[Measured]], whole: dict[str, list[bool]]) -> None:
    # Each figure over the runs that answered every row (all, when none did).
    kept: dict[str, list[Measured]] = {}
    all_whole = True
    for tool, runs in results.items():
        kept[tool], any_whole = complete(runs, whole[tool])
        all_whole = all_whole and any_whole

    def figure(
        of: Callable[[str, Measured], float], pick: Callable[[list[float]], float]
    ) -> dict[str, float | None]:
        return {t: pick([of(t, m) for m in kept[t]]) if t in kept else None for t in TOOLS}

    rates = figure(lambda t, m: _rows(t) / m.wall, max)

    def cpu_per_row(tool: str, m: Measured) -> float:
        return m.cpu / _rows(tool) * 1e6

    cpus = figure(cpu_per_row, min)
    medians = figure(cpu_per_row, statistics.median)
    rss = figure(lambda t, m: m.maxrss_kib * 1024 / 1e6, max)
    scen = f"(a) no latency, {N_A:,} rows, {A_RUNS} runs each" + (
        f" (curl {N_CURL:,}, once)" if bench.curl else ""
    )
    bench.rows.append(
        Row(
            scen,
            "rows/s, whole process wall, fastest run",
            rates["naive"],
            rates["bulk"],
            rates["curl"],
            unit="/s",
        )
    )
    naive_cpu, bulk_cpu = cpus["naive"], cpus["bulk"]
    assert naive_cpu is not None and bulk_cpu is not None
    bench.rows.append(
        Row(
            scen,
            "client CPU us/row (user+sys), least",
            naive_cpu,
            bulk_cpu,
            cpus["curl"],
            target="<= 1.3x naive",
            met=all_whole and bulk_cpu <= 1.3 * naive_cpu,
        )
    )
    bench.rows.append(
        Row(scen, "client CPU us/row (user+sys), median", medians["naive"], medians["bulk"])
    )
    bench.rows.append(
        Row(
            scen,
            "client peak RSS MB, largest",
            rss["naive"],
            rss["bulk"],
            rss["curl"],
            fmt="{:,.1f}",
        )
    )
