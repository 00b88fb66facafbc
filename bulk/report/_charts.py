"""The page's charts: throughput and latency over time, as static SVG drawn by matplotlib.

Why matplotlib: static SVG needs no script, so the page stays one small
file that opens offline and prints as it shows (a 50,000-row run's charts
are tens of KB; vega-lite or plotly inlined would add 0.8-3.5 MB of
JavaScript to every page). It is imported here only, when a page is
rendered, so `bulk --help` never pays for it.

A run of any length is drawn from at most `MAX_POINTS` points per chart:
longer runs are averaged into wider bins (a 1,000,000-row run at 10/s has
100,000 seconds), so a page's size does not grow with the run.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from ..journal import Second

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["MAX_INVOCATIONS", "Chart", "charts"]

MAX_POINTS = 300
MAX_INVOCATIONS = 10  # a run resumed more often shows its latest ten
# An invocation with fewer seconds of counters gets no chart: one or two bars
# say nothing the tiles do not, and drawing them costs more than the run did
# (importing matplotlib and drawing: ~1.3 s of CPU, against ~0.6 s for a
# one-row run; measured with `bulk run` of one row on loopback).
MIN_SECONDS = 3
# Answer classes stacked in the throughput chart (429s are marked apart), with colours.
_STACKED = (
    ("ok", "answered ok", "#2e7d32"),
    ("client_error", "4xx", "#f9a825"),
    ("server_error", "5xx", "#ef6c00"),
    ("network", "no answer", "#6d4c41"),
    ("unexpected", "unexpected answer", "#8e24aa"),
)
_STYLE: dict[str, Any] = {
    "svg.fonttype": "none",  # text stays text: smaller, searchable, crisp in print
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e0e0e0",
    "legend.frameon": False,
}


class Chart(NamedTuple):
    title: str
    svg: str  # an <svg> element, ready to be placed in the page


class _Binned(NamedTuple):
    x: list[float]  # seconds since the invocation's first second (bin start)
    per_second: dict[str, list[float]]  # requests/s by class over each bin
    rate: list[float | None]
    p50: list[float | None]
    p90: list[float | None]
    p99: list[float | None]
    width: int  # seconds per bin


def charts(seconds: Sequence[Second]) -> list[Chart]:
    """Throughput and latency charts for each invocation (a resumed run has several)."""
    invocations: dict[str, list[Second]] = {}
    for second in seconds:
        invocations.setdefault(second.invocation, []).append(second)
    chosen = list(invocations.values())[-MAX_INVOCATIONS:]
    out: list[Chart] = []
    for number, run in enumerate(chosen, start=len(invocations) - len(chosen) + 1):
        if len(run) < MIN_SECONDS:
            continue
        began = datetime.fromtimestamp(run[0].at - 1, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        label = f"invocation {number}, from {began}" if len(invocations) > 1 else f"from {began}"
        binned = _bin(run)
        out.append(Chart(f"Throughput ({label})", _throughput(binned, f"t{number}")))
        out.append(Chart(f"Latency ({label})", _latency(binned, f"l{number}")))
    return out


def _bin(run: Sequence[Second]) -> _Binned:
    width = max(1, math.ceil(len(run) / MAX_POINTS))
    start = run[0].at
    classes: dict[str, list[float]] = {name: [] for name, _, _ in _STACKED}
    binned = _Binned([], classes | {"throttled": []}, [], [], [], [], width)
    for i in range(0, len(run), width):
        part = run[i : i + width]
        binned.x.append(part[0].at - start)
        for name, values in binned.per_second.items():
            values.append(sum(getattr(s, name) for s in part) / len(part))
        rates = [s.rate for s in part if s.rate is not None]
        binned.rate.append(sum(rates) / len(rates) if rates else None)
        # Percentiles of a bin: the mean of its seconds' p50 and p90, the worst p99.
        binned.p50.append(_mean([s.p50 for s in part]))
        binned.p90.append(_mean([s.p90 for s in part]))
        binned.p99.append(max((s.p99 for s in part if s.p99 is not None), default=None))
    # The last bin's right edge: a step drawn "post" needs it, or a run of one
    # second would draw nothing at all.
    binned.x.append(binned.x[-1] + width)
    for counts in binned.per_second.values():
        counts.append(counts[-1])
    for series in (binned.rate, binned.p50, binned.p90, binned.p99):
        series.append(series[-1])
    return binned


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _figure(salt: str) -> tuple[Any, Axes]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 2.8))
    # Fixed margins (room for the legend on the right): matplotlib's constrained
    # layout measured half of a chart's render time (0.35 of 0.7 s).
    figure.subplots_adjust(left=0.07, right=0.8, bottom=0.16, top=0.96)
    return figure, figure.add_subplot()


def _svg(figure: Any, salt: str) -> str:
    import matplotlib

    # A salt of its own per chart: matplotlib names clip paths and markers by a
    # hash, and two charts inline in one page must not share an id.
    with matplotlib.rc_context({"svg.hashsalt": salt}):
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _styled(draw: Any) -> Any:
    import matplotlib

    with matplotlib.rc_context(_STYLE):  # type: ignore[arg-type]
        return draw()


def _throughput(b: _Binned, salt: str) -> str:
    def draw() -> str:
        figure, ax = _figure(salt)
        # Classes that never occurred stay out of the legend; "ok" is always shown.
        shown = [s for s in _STACKED if s[0] == "ok" or any(b.per_second[s[0]])]
        ax.stackplot(
            b.x,
            *[b.per_second[name] for name, _, _ in shown],
            labels=[label for _, label, _ in shown],
            colors=[colour for _, _, colour in shown],
            step="post",
            alpha=0.85,
        )
        throttled = b.per_second["throttled"][:-1]  # without the closing edge
        marked = [(x, y) for x, y in zip(b.x, throttled, strict=False) if y > 0]
        if marked:
            total = round(sum(y for _, y in marked) * b.width)
            ax.scatter(
                [x for x, _ in marked],
                [y for _, y in marked],
                marker="v",
                color="#c62828",
                zorder=3,
                label=f"429 ({total})",
            )
        if any(r is not None for r in b.rate):
            rates = [math.nan if r is None else r for r in b.rate]
            ax.step(b.x, rates, where="post", color="#1565c0", linestyle="--", label="pacer's rate")
        per = "requests/s" if b.width == 1 else f"requests/s (mean of {b.width} s)"
        ax.set(xlabel="seconds since start", ylabel=per, ylim=(0, None))
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
        return _svg(figure, salt)

    return str(_styled(draw))


def _latency(b: _Binned, salt: str) -> str:
    def draw() -> str:
        figure, ax = _figure(salt)
        for name, values, colour in (
            ("p50", b.p50, "#2e7d32"),
            ("p90", b.p90, "#ef6c00"),
            ("p99", b.p99, "#c62828"),
        ):
            ax.plot(
                b.x,
                [math.nan if v is None else v for v in values],
                color=colour,
                label=name,
                marker="o" if len(b.x) <= 3 else None,  # a line of one point is invisible
            )
        ax.set(xlabel="seconds since start", ylabel="latency (ms)", ylim=(0, None))
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
        return _svg(figure, salt)

    return str(_styled(draw))
