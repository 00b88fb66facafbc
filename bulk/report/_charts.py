"""The page's charts: throughput and latency over time, as static SVG drawn by pygal.

Why static SVG: it needs no script, so the page stays one small file that
opens offline and prints as it shows (vega-lite or plotly inlined would add
0.8-3.5 MB of JavaScript to every page). Why pygal, not matplotlib: both draw
such SVG, but matplotlib cost ~1.0 s of CPU to import and ~0.2 s to draw a
run's two charts: `bulk report` of a 20,000-row run took 1.82 s, 0.57 s with
pygal (~60 us of a row's ~330 us budget saved). pygal is pure Python (its one
dependency is importlib-metadata); it imports in ~0.07-0.1 s and draws both
charts in ~0.03 s (a few seconds of counters) to ~0.13 s (`MAX_POINTS`),
measured with `time.process_time` around `charts()`. It is imported here
only, when a page is rendered, so `bulk --help` never pays for it.

pygal's SVG is made for the browser's script: it carries an inline config
script and, by default, a tooltip script loaded from kozea.github.io. The
page's Content Security Policy would refuse both, and the charts need
neither, so `_inline` strips every script (and pygal's comments, which name
its web site and the day of rendering) before the SVG reaches the page.

A run of any length is drawn from at most `MAX_POINTS` points per chart:
longer runs are averaged into wider bins (a 1,000,000-row run at 10/s has
100,000 seconds), so a page's size does not grow with the run.
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from ..journal import Second

__all__ = ["MAX_INVOCATIONS", "Chart", "charts"]

MAX_POINTS = 300
MAX_INVOCATIONS = 10  # a run resumed more often shows its latest ten
# An invocation with fewer seconds of counters gets no chart: one or two steps
# say nothing the tiles do not. The rule is about meaning, no longer cost:
# importing pygal and drawing a 3-second invocation's two charts take ~0.1 s
# of CPU (matplotlib's ~1.3 s once weighed more than a one-row run's ~0.6 s).
MIN_SECONDS = 3
# Answer classes stacked in the throughput chart (429s are marked apart), with colours.
_STACKED = (
    ("ok", "answered ok", "#2e7d32"),
    ("client_error", "4xx", "#f9a825"),
    ("server_error", "5xx", "#ef6c00"),
    ("network", "no answer", "#6d4c41"),
    ("unexpected", "unexpected answer", "#8e24aa"),
)
_THROTTLED = "#c62828"
_RATE = "#1565c0"
_LATENCY = (("p50", "#2e7d32"), ("p90", "#ef6c00"), ("p99", "#c62828"))
# The size drawn at: the page scales it to its column (CSS width 100%), so
# this fixes the proportions and the fonts' size relative to the plot.
_WIDTH, _HEIGHT = 900, 300
# A series as drawn: its legend label, colour, (x, y) points and pygal's options for it.
_Series = tuple[str, str, Sequence[tuple[float, float | None]], dict[str, Any]]


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
        for title, draw, salt in (
            (f"Throughput ({label})", _throughput, f"t{number}"),
            (f"Latency ({label})", _latency, f"l{number}"),
        ):
            out.append(Chart(title, draw(binned, salt, title)))
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
    # The last bin's right edge: a step needs it, or a run of one second
    # would draw nothing at all.
    binned.x.append(binned.x[-1] + width)
    for counts in binned.per_second.values():
        counts.append(counts[-1])
    for series in (binned.rate, binned.p50, binned.p90, binned.p99):
        series.append(series[-1])
    return binned


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _steps(x: Sequence[float], values: Sequence[float | None]) -> list[tuple[float, float | None]]:
    """A step function as XY points: each bin's value held flat from its start to its end.

    The counters are per second, so a line from one bin's value to the next
    would draw a ramp that never happened. pygal has no step interpolation;
    its XY chart draws one when each x is given twice (old value, new value).
    A None breaks the line (allow_interruptions).
    """
    points: list[tuple[float, float | None]] = []
    for i, value in enumerate(values[:-1]):
        points += [(x[i], value), (x[i + 1], value)]
    return points


def _throughput(b: _Binned, salt: str, title: str) -> str:
    # Stacked by hand: pygal stacks only its Line and Bar charts, whose x is
    # a category (no step, and no room for the pacer's line beside bars). The
    # areas are cumulative sums, each filled down to zero, the tallest drawn
    # first so each class below covers it; the legend reads top to bottom.
    shown = [s for s in _STACKED if s[0] == "ok" or any(b.per_second[s[0]])]
    tops = [0.0] * len(b.x)
    stacked = []
    for name, label, colour in shown:
        tops = [t + v for t, v in zip(tops, b.per_second[name], strict=True)]
        stacked.append((label, colour, tops))
    per = "requests/s" if b.width == 1 else f"requests/s (mean of {b.width} s)"
    series: list[_Series] = [
        (label, colour, _steps(b.x, top), {"fill": True}) for label, colour, top in stacked[::-1]
    ]
    throttled = b.per_second["throttled"][:-1]  # without the closing edge
    # Each bin's 429s per second, marked at the bin's middle.
    marked = [(x + b.width / 2, y) for x, y in zip(b.x, throttled, strict=False) if y > 0]
    if marked:
        total = round(sum(y for _, y in marked) * b.width)
        dots = {"stroke": False, "show_dots": True, "dots_size": 3.5}
        series.append((f"429 ({total})", _THROTTLED, marked, dots))
    if any(r is not None for r in b.rate):
        dashed = {"stroke_style": {"width": 2, "dasharray": "6, 4"}}
        series.append(("pacer's rate", _RATE, _steps(b.x, b.rate), dashed))
    return _draw(series, per, b, salt, title)


def _latency(b: _Binned, salt: str, title: str) -> str:
    series: list[_Series] = []
    for name, colour in _LATENCY:
        values: list[float | None] = getattr(b, name)
        # A point between two gaps is no line at all: dots show it.
        dots = {"show_dots": _isolated(values), "dots_size": 2.5, "stroke_style": {"width": 2}}
        series.append((name, colour, list(zip(b.x, values, strict=True)), dots))
    return _draw(series, "latency (ms)", b, salt, title)


def _isolated(values: Sequence[float | None]) -> bool:
    """Whether some value has no present neighbour, so a line through it draws nothing."""
    padded = [None, *values, None]
    return any(
        padded[i] is not None and padded[i - 1] is None and padded[i + 1] is None
        for i in range(1, len(padded) - 1)
    )


def _whole_seconds(end: float, most: int = 8) -> list[int]:
    """The x axis's labels: whole seconds, 1, 2 or 5 times a power of ten apart.

    pygal's own scale divides a short run into fractions (0, 0.8, 1.6 s),
    which the per-second counters never have; it takes positions instead.
    """
    steps = (m * 10**p for p in itertools.count() for m in (1, 2, 5))
    step = next(s for s in steps if end / s <= most)
    return list(range(0, int(end) + 1, step))


def _draw(
    series: Sequence[_Series],
    y_title: str,
    b: _Binned,
    salt: str,
    title: str,
) -> str:
    pygal = _pygal()
    from pygal.style import Style

    style = Style(
        background="white",
        plot_background="white",
        foreground="#222",
        foreground_strong="#222",
        foreground_subtle="#e0e0e0",
        guide_stroke_color="#e0e0e0",  # the grid: light and solid, as in print
        major_guide_stroke_color="#e0e0e0",
        guide_stroke_dasharray="none",
        major_guide_stroke_dasharray="none",
        font_family="sans-serif",
        label_font_size=10,
        major_label_font_size=10,
        legend_font_size=11,
        title_font_size=12,
        opacity="1",  # opaque areas: a stacked class must hide the one below it
        opacity_hover="1",
        stroke_opacity="1",
        stroke_opacity_hover="1",
        transition="0ms",
        colors=tuple(colour for _, colour, _, _ in series),
    )
    chart = pygal.XY(
        style=style,
        width=_WIDTH,
        height=_HEIGHT,
        js=[],  # pygal's default loads its tooltip script from the web
        disable_xml_declaration=True,  # the SVG goes inside the page, not into a file
        show_dots=False,
        allow_interruptions=True,  # a None is a gap, not a drop to zero
        include_x_axis=True,  # the y axis starts at 0
        xrange=(b.x[0], b.x[-1]),
        x_labels=_whole_seconds(b.x[-1]),
        x_title="seconds since start",
        y_title=y_title,
        x_value_formatter=lambda x: f"{x:g}",
        value_formatter=lambda y: f"{y:g}",
        truncate_legend=-1,
        max_scale=8,  # at most ~8 labels on y (pygal's 16 crowd a 30-high axis: 0, 2, ... 30)
        # The legend in one row under the plot: on the left (pygal's other
        # place) its width would shift each chart's plot by its longest label.
        legend_at_bottom=True,
        legend_at_bottom_columns=len(series),
        margin=8,
        spacing=8,
        legend_box_size=10,
    )
    # pygal names its root id "chart-<uuid4>" and prefixes its style rules with
    # it, so two charts inline in one page never share a rule or an id; a
    # fixed name per chart keeps a page the same when rendered again.
    chart.uuid = f"bulk-{salt}"
    for label, _, points, options in series:
        chart.add(label, points, **options)
    chart.add_xml_filter(lambda root: _inline(root, title))
    svg: str = chart.render()
    return svg


# What only pygal's script reads: the script itself, and the tooltips' data.
_SCRIPTED = {"script", "desc"}


def _pygal() -> Any:
    ours = "pygal" not in sys.modules
    import pygal

    # pygal appends to sys.meta_path a finder for its map plugins (which the
    # page does not use) that has only the legacy find_module: on Python
    # 3.10-3.11 every later import that reaches it, such as any optional
    # import that fails, warns (ImportWarning; Kozea/pygal#532, open since
    # 2023). A library must not leave that in its host process; a host that
    # imported pygal itself (and may use its maps) keeps it.
    fixer = getattr(pygal, "PluginImportFixer", None)  # gone once #532 is fixed
    if ours and fixer is not None:
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, fixer)]
    return pygal


def _inline(root: Any, title: str) -> Any:
    """The SVG as the page may show it: no script, no comment, one id; its title the chart's."""
    from pygal.etree import etree

    for parent in list(root.iter()):
        for child in list(parent):
            tag = child.tag.rsplit("}", 1)[-1] if isinstance(child.tag, str) else ""
            if child.tag is etree.Comment or tag in _SCRIPTED:
                parent.remove(child)
                continue
            if tag == "title" and parent is root:  # the others name an axis label
                child.text = title
            # The legend's ids (activate-serie-0, ...) are the same in every
            # chart and only the script used them: two charts in a page would clash.
            child.attrib.pop("id", None)
    return root
