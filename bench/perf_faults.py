"""(c) 5% 5xx and 2% dropped connections: the share of tickets whose final status is right.

The simulator serves from a thread of the bench, so each ticket's final state on the server
can be read; the clients stay subprocesses.
"""

from __future__ import annotations

from typing import Any

from _common.clients import TARGET, bulk_command, client_env, naive_command, write_ids
from _common.metering import run_measured
from _common.results import Bench, Row, log
from _common.servers import HOST

N_C = 5_000


def _send(bench: Bench, tool: str, tickets: list[dict[str, Any]]) -> dict[str, Any]:
    """One client against its own faulty simulator; its figures for the raw results."""
    from bulk.simulator import SimConfig, Simulator, SimulatorThread

    path = bench.work / "c.csv"
    sim = Simulator(SimConfig(rate=None, error_rate=0.05, drop_rate=0.02, seed=1), tickets)
    with SimulatorThread(sim, HOST) as server:
        env = client_env(server.base_url)
        if tool == "naive":
            m = run_measured(naive_command(path), env=env, timeout=90)
        else:
            m = run_measured(bulk_command(path, bench.work / "c.report.csv"), env=env, timeout=120)
    return {
        "rows": N_C,
        "rows_right": sum(sim.status_of(t["id"]) == TARGET for t in tickets),
        "requests": sum(r.method == "PUT" for r in sim.requests),
        "server_status_counts": {str(k): v for k, v in sim.status_counts().items()},
        "wall_s": m.wall,
        "cpu_s": m.cpu,
        "exit": m.code,
    }


def run(bench: Bench) -> None:
    from bulk.simulator import make_tickets

    tickets = make_tickets(N_C, seed=1, statuses=("new", "inProgress", "solved"))
    write_ids(bench.work / "c.csv", [t["id"] for t in tickets])
    right: dict[str, int] = {}
    for tool in ("naive", "bulk"):
        got = _send(bench, tool, tickets)
        bench.raw.setdefault("c", {})[tool] = got
        right[tool] = got["rows_right"]
        log(
            f"(c) {tool}: {right[tool]}/{N_C} tickets end {TARGET!r}; {got['requests']} PUTs in "
            f"{got['wall_s']:.2f} s, exit {got['exit']}"
        )
    bench.rows.append(
        Row(
            f"(c) 5% 5xx + 2% drops, {N_C:,} rows",
            "rows that end right, %",
            right["naive"] / N_C * 100,
            right["bulk"] / N_C * 100,
            target="100%",
            met=right["bulk"] == N_C,
            fmt="{:.2f}%",
        )
    )
