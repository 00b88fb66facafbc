"""start-up: `bulk --help` and `bulk --version`, best of 5, beside `naive.py --help`."""

from __future__ import annotations

from _common.clients import BENCH, BULK, BULK_SCRIPT
from _common.metering import PYTHON, run_measured
from _common.results import Bench, Row


def _best(command: list[str]) -> float:
    times = []
    for _ in range(5):
        m = run_measured(command, timeout=30)
        if m.code != 0:
            raise RuntimeError(f"{' '.join(command)} exited {m.code}:\n{m.output}")
        times.append(m.wall)
    return min(times)


def run(bench: Bench) -> None:
    # The console script when installed: what a user types, without `python -m`'s extra work.
    base = [str(BULK_SCRIPT)] if BULK_SCRIPT.exists() else BULK
    naive_help = _best([PYTHON, str(BENCH / "naive.py"), "--help"])
    for flag in ("--help", "--version"):
        seconds = _best([*base, flag])
        bench.raw.setdefault("startup", {})[flag] = seconds
        bench.rows.append(
            Row(
                "start-up, best of 5",
                f"`bulk {flag}` s (baseline: naive.py --help)",
                naive_help,
                seconds,
                target="< 0.5 s",
                met=seconds < 0.5,
                fmt="{:.3f}",
            )
        )
    bench.raw["startup"]["naive --help"] = naive_help
