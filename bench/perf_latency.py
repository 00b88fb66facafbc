"""(b) 50 ms server latency, concurrency 64: the sending rate as a share of Little's bound.

64 requests in flight, each answered after 50 ms, allow at most 64 / 0.05 s = 1280 rows/s.
The simulator serves from a thread of the bench, so its request log gives the sending span;
the clients stay subprocesses.
"""

from __future__ import annotations

from typing import Any

from _common.clients import CONCURRENCY, bulk_command, client_env, naive_command, write_ids
from _common.metering import run_measured
from _common.results import Bench, Row, log
from _common.servers import HOST

N_B = 5_000
LATENCY_B = 0.05


def _send(bench: Bench, tool: str, tickets: list[dict[str, Any]]) -> dict[str, float]:
    """One client against its own simulator; its figures for the raw results."""
    from bulk.simulator import SimConfig, Simulator, SimulatorThread

    path = bench.work / "b.csv"
    sim = Simulator(SimConfig(rate=None, latency=LATENCY_B), tickets)
    with SimulatorThread(sim, HOST) as server:
        env = client_env(server.base_url)
        if tool == "naive":
            m = run_measured(naive_command(path), env=env, timeout=60)
        else:
            m = run_measured(
                bulk_command(path, bench.work / "b.csv.report.csv"), env=env, timeout=60
            )
    puts = sorted(r.at for r in sim.requests if r.method == "PUT")
    answered = sum(r.status == 200 for r in sim.requests if r.method == "PUT")
    span = puts[-1] - puts[0] + LATENCY_B
    return {
        "rows": N_B,
        "answered_200": answered,
        "sending_span_s": span,
        "rows_per_s_sending": answered / span,
        "share_of_littles_bound": answered / span / (CONCURRENCY / LATENCY_B),
        "wall_s": m.wall,
        "cpu_s": m.cpu,
        "exit": m.code,
    }


def run(bench: Bench) -> None:
    from bulk.simulator import make_tickets

    tickets = make_tickets(N_B, seed=1)
    write_ids(bench.work / "b.csv", [t["id"] for t in tickets])
    bound = CONCURRENCY / LATENCY_B
    shares: dict[str, float] = {}
    walls: dict[str, float] = {}
    for tool in ("naive", "bulk"):
        got = _send(bench, tool, tickets)
        bench.raw.setdefault("b", {})[tool] = got
        shares[tool] = got["share_of_littles_bound"]
        walls[tool] = N_B / got["wall_s"]
        answered, span = got["answered_200"], got["sending_span_s"]
        log(
            f"(b) {tool}: {answered}/{N_B} answered 200 over {span:.2f} s of sending "
            f"= {answered / span:,.0f}/s ({shares[tool]:.1%} of {bound:.0f}/s); "
            f"whole process {got['wall_s']:.2f} s, exit {got['exit']}"
        )
    scen = f"(b) latency 50 ms, c={CONCURRENCY}, {N_B:,} rows"
    bench.rows.append(
        Row(
            scen,
            f"sending rate, % of Little's {bound:.0f}/s",
            shares["naive"] * 100,
            shares["bulk"] * 100,
            target=">= 90%",
            met=shares["bulk"] >= 0.90,
            fmt="{:.1f}%",
        )
    )
    bench.rows.append(Row(scen, "rows/s, whole process wall", walls["naive"], walls["bulk"]))
