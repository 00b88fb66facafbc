"""memory: peak RSS of a real `bulk run` on 10k, 100k and 1M rows.

The 100k and 1M runs get `--deadline 40s` (perf.py's `--memory-deadline` changes it): bulk
stops taking new rows after that long of sending, so the peak covers reading and validating
every row, a steady sending phase and rendering the full report, not sending every row.
"""

from __future__ import annotations

import re
from pathlib import Path

from _common.clients import bulk_command, client_env, random_ids, write_ids
from _common.metering import run_measured
from _common.results import Bench, Row, log
from _common.servers import ServerProc

MEMORY_SIZES = (10_000, 100_000, 1_000_000)
MEMORY_DEADLINE = "40s"  # for the inputs above 10k
MEMORY_KNOWN = 100_000  # tickets the memory simulator knows: the 100k input, the 1M input's start


def write_inputs(work: Path, known_ids: list[str]) -> dict[int, Path]:
    """One input a size: the simulator's known ids, then random ones it does not know."""
    filler = random_ids(MEMORY_SIZES[-1] - MEMORY_KNOWN, seed=7)
    paths = {}
    for n in MEMORY_SIZES:
        path = work / f"mem-{n}.csv"
        ids = known_ids[:n] if n <= MEMORY_KNOWN else known_ids + filler
        write_ids(path, ids[:n])
        paths[n] = path
    return paths


def _one(bench: Bench, sim: ServerProc, n: int, path: Path, deadline: str) -> tuple[float, str]:
    """One run of `n` rows: its peak RSS in MB, and how it ended."""
    extra = ["--deadline", deadline] if n > MEMORY_SIZES[0] else []
    report = bench.work / f"mem-{n}.report.csv"
    m = run_measured(bulk_command(path, report, *extra), env=client_env(sim.base_url), timeout=200)
    peak = m.maxrss_kib * 1024 / 1e6
    summary = [line for line in m.output.splitlines() if not line.startswith("bulk:")]
    report_rows = 0
    if report.exists():
        with open(report, "rb") as handle:
            report_rows = sum(1 for _ in handle) - 1
    sent = re.search(r"requests: (\d+)", m.output)
    stopped = (
        f"{n:,} rows: {'stopped by the deadline' if m.code == 3 else 'all sent'}"
        f" after {sent.group(1) if sent else '?'} requests, {m.wall:.0f} s in all"
    )
    bench.raw.setdefault("memory", {})[str(n)] = {
        "peak_rss_mb": peak,
        "wall_s": m.wall,
        "cpu_s": m.cpu,
        "exit": m.code,
        "report_rows": report_rows,
        "deadline": extra[1] if extra else None,
        "summary": summary,
    }
    log(
        f"memory {n:,}: peak RSS {peak:.1f} MB, {m.wall:.1f} s, exit {m.code}, "
        f"report rows {report_rows:,}; " + " | ".join(summary[:3])
    )
    if report_rows != n:
        bench.note(f"memory {n:,}: the report has {report_rows:,} rows, not {n:,}")
    # 3: the deadline stopped it; 0: every row went before the deadline.
    expected = (3,) if n > MEMORY_KNOWN else (0, 3) if extra else (0,)
    if m.code not in expected:
        bench.note(f"memory {n:,}: bulk run exited {m.code}, expected {expected}")
    report.unlink(missing_ok=True)
    for side in (".journal", ".run.json"):
        report.with_name(report.name.rsplit(".", 1)[0] + side).unlink(missing_ok=True)
    return peak, stopped


def run(bench: Bench, sim: ServerProc, inputs: dict[int, Path], deadline: str) -> None:
    peaks: dict[int, float] = {}
    stopped: dict[int, str] = {}
    for n in MEMORY_SIZES:
        peaks[n], stopped[n] = _one(bench, sim, n, inputs[n], deadline)
    for n in MEMORY_SIZES:
        label = f"{n:,} rows" + (f", --deadline {deadline}" if n > MEMORY_SIZES[0] else "")
        is_top = n == MEMORY_SIZES[-1]
        bench.rows.append(
            Row(
                "memory: bulk run, real",
                f"peak RSS MB, {label}",
                bulk=peaks[n],
                target="< 250" if is_top else "",
                met=(peaks[n] < 250) if is_top else None,
                fmt="{:,.1f}",
            )
        )
    growth = peaks[MEMORY_SIZES[-1]] - peaks[MEMORY_SIZES[-2]]
    bench.rows.append(
        Row(
            "memory: bulk run, real",
            "peak RSS growth 100k -> 1M, MB",
            bulk=growth,
            target="< 80",
            met=growth < 80,
            fmt="{:,.1f}",
        )
    )
    bench.note(
        f"memory: the 100k and 1M runs get --deadline {deadline}: bulk stops taking new "
        "rows after that long of sending, finishes those in flight and writes the full "
        "report from the journal (exit 3), so the peak covers reading + validating every "
        "row into the journal, a steady sending phase and rendering the whole report, not "
        "sending every row ("
        + "; ".join(stopped[n] for n in MEMORY_SIZES)
        + f"). The simulator knows the first {MEMORY_KNOWN:,} ids (answered 200); the "
        "rest are random UUIDs (404 if reached). MB = 10^6 bytes (ru_maxrss)."
    )
