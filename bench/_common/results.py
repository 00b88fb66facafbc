"""What a perf run collects (table rows, notes, raw figures, timed phases) and how it is shown:
one table on stdout, one JSON file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from _common.metering import machine_cpu, own_cpu

OTHER_LOAD_WARN = 0.15  # cores used by processes that are not the bench's

T = TypeVar("T")


def log(message: str) -> None:
    print(f"perf: {message}", file=sys.stderr, flush=True)


@dataclass
class Row:
    scenario: str
    metric: str
    naive: float | None = None
    bulk: float | None = None
    curl: float | None = None
    unit: str = ""
    target: str = ""
    met: bool | None = None
    ratio: bool = True  # show bulk/baseline
    fmt: str = "{:,.0f}"


class Bench:
    """One perf run: its scratch folder, and the rows, notes and raw figures it gathers."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.raw: dict[str, Any] = {}
        self.curl = shutil.which("curl") is not None and shutil.which("xargs") is not None

    def note(self, text: str) -> None:
        self.notes.append(text)
        log(text)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a phase, and how much CPU other processes on the machine took meanwhile."""
        started, machine, own = time.perf_counter(), machine_cpu(), own_cpu()
        try:
            yield
        finally:
            seconds = time.perf_counter() - started
            other = max(0.0, (machine_cpu() - machine) - (own_cpu() - own)) / max(seconds, 1e-9)
            self.raw.setdefault("phases", {})[name] = {
                "seconds": round(seconds, 2),
                "other_load_cores": round(other, 3),
            }
            log(f"[{name}: {seconds:.1f} s; other processes used {other:.0%} of a core]")
            if other > OTHER_LOAD_WARN:
                self.note(
                    f"WARNING: other processes on this machine used {other:.0%} of a core "
                    f"during {name}: its figures are disturbed; rerun on a quiet machine"
                )


def _cells(r: Row) -> list[str]:
    def cell(value: float | None) -> str:
        return "-" if value is None else r.fmt.format(value)

    ratio = f"{r.bulk / r.naive:.2f}x" if r.ratio and r.bulk is not None and r.naive else "-"
    met = "-" if r.met is None else ("met" if r.met else "MISSED")
    return [
        r.scenario,
        r.metric,
        cell(r.naive),
        cell(r.bulk),
        cell(r.curl),
        ratio,
        r.target or "-",
        met,
    ]


def render(rows: list[Row], curl: bool) -> str:
    head = [
        "scenario",
        "metric",
        "naive (baseline)",
        "bulk",
        "xargs+curl" if curl else "xargs+curl (no curl)",
        "bulk/baseline",
        "target",
        "met?",
    ]
    body = [_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]
    right = {2, 3, 4, 5}

    def line(cells: list[str]) -> str:
        return " | ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([line(head), rule, *(line(b) for b in body)])


def complete(figures: list[T], whole: list[bool]) -> tuple[list[T], bool]:
    """The figures of the runs that ended with every row answered, and whether any did.

    A run that died early spent less CPU on the rows it was charged for: taken with
    the others, its least would read as met. When no run ended whole, all are shown.
    """
    kept = [f for f, w in zip(figures, whole, strict=True) if w]
    return (kept, True) if kept else (figures, False)


def show(bench: Bench) -> None:
    """Print the table and the notes."""
    print(render(bench.rows, bench.curl))
    print()
    for text in bench.notes:
        print(f"- {text}")


def finish(bench: Bench, path: Path, elapsed: float) -> None:
    """Print the table and the notes, and write every figure to `path` as JSON."""
    show(bench)
    print(f"- perf.py ran {elapsed:.0f} s on {os.cpu_count()} cores")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "rows": [r.__dict__ for r in bench.rows],
                "notes": bench.notes,
                "raw": bench.raw,
                "elapsed_s": elapsed,
                "cpus": os.cpu_count(),
                "python": sys.version.split()[0],
            },
            indent=2,
        )
    )
    print(f"- results: {path}")
