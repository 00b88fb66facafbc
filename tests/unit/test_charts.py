"""The run page's charts: SVG that is safe inline in the page, and shows what the seconds hold."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence

import pytest

from bulk.journal import Second
from bulk.report._charts import MIN_SECONDS, Chart, charts

_SVG = "{http://www.w3.org/2000/svg}"


def _second(
    at: float,
    *,
    invocation: str = "a",
    ok: int = 30,
    throttled: int = 0,
    server_error: int = 0,
    client_error: int = 0,
    network: int = 0,
    unexpected: int = 0,
    rate: float | None = 40.0,
    p50: float | None = 20.0,
    p90: float | None = 35.0,
    p99: float | None = 60.0,
) -> Second:
    return Second(
        invocation,
        at,
        ok,
        throttled,
        server_error,
        client_error,
        network,
        unexpected,
        rate,
        p50,
        p90,
        p99,
    )


def _busy(invocation: str, start: float, n: int) -> list[Second]:
    """Seconds with every answer class, 429s, a rate and latency gaps."""
    return [
        _second(
            start + i,
            invocation=invocation,
            throttled=i % 3,
            server_error=i % 2,
            client_error=1,
            network=i % 4 == 0,
            unexpected=i == 2,
            rate=None if i == 0 else 40.0,
            p90=None if i == 3 else 35.0,
        )
        for i in range(n)
    ]


def _root(chart: Chart) -> ET.Element:
    return ET.fromstring(chart.svg)


def _legend(chart: Chart) -> list[str]:
    legends = next(g for g in _root(chart).iter(f"{_SVG}g") if g.get("class") == "legends")
    return [t.text or "" for t in legends.iter(f"{_SVG}text")]


def _drawn(chart: Chart, label: str, tag: str) -> list[ET.Element]:
    """The `tag` elements drawing the series named `label` in the legend.

    pygal numbers legend entries and series alike, and draws a series in two
    groups of that number: its lines and areas, and an overlay with its dots.
    """
    index = _legend(chart).index(label)
    groups = [
        g
        for g in _root(chart).iter(f"{_SVG}g")
        if (g.get("class") or "").startswith(f"series serie-{index} ")
    ]
    return [el for g in groups for el in g.iter(f"{_SVG}{tag}")]


def _page_charts() -> list[Chart]:
    # A resumed run: two invocations, four charts in one page.
    return charts(_busy("a", 1_780_000_000, 8) + _busy("b", 1_780_000_100, 5))


def test_each_chart_is_svg_the_page_can_inline() -> None:
    drawn = _page_charts()
    assert [c.title.split(" ")[0] for c in drawn] == ["Throughput", "Latency"] * 2
    for chart in drawn:
        assert chart.svg.startswith("<svg ") and "<?xml" not in chart.svg
        root = _root(chart)  # parses as XML
        assert root.tag == f"{_SVG}svg" and root.get("viewBox")
        # The page's CSP runs no script but its own; nothing may load from anywhere.
        assert "<script" not in chart.svg.lower()
        assert not any(el.tag in (f"{_SVG}script", "script") for el in root.iter())
        # Namespace declarations name a URL but fetch nothing (pygal with lxml adds xlink's).
        assert "http" not in re.sub(r'xmlns(:\w+)?="[^"]*"', "", chart.svg)
        assert "href" not in chart.svg and "@import" not in chart.svg
        assert root.findtext(f"{_SVG}title") == chart.title


def test_two_charts_in_one_page_share_no_id_and_no_style_rule() -> None:
    ids: list[str] = []
    for chart in _page_charts():
        root = _root(chart)
        ids += [el.get("id") or "" for el in root.iter() if el.get("id")]
        own = f"#{root.get('id')}"
        style = root.findtext(f"{_SVG}defs/{_SVG}style") or ""
        selectors = [
            s.strip()
            for rule in style.split("}")
            if "{" in rule
            for s in rule.split("{")[0].split(",")
        ]
        assert selectors and all(s.startswith(own) for s in selectors)
    assert len(ids) == 4 and len(set(ids)) == 4


def test_throughput_shows_the_classes_that_occurred_and_the_429s() -> None:
    seconds = _busy("a", 1_780_000_000, 8)
    throughput = charts(seconds)[0]
    total = sum(s.throttled for s in seconds)
    assert _legend(throughput) == [
        "unexpected answer",
        "no answer",
        "5xx",
        "4xx",
        "answered ok",
        f"429 ({total})",
        "pacer's rate",
    ]
    # One mark per second that had a 429 (every third second had none).
    marks = _drawn(throughput, f"429 ({total})", "circle")
    assert len(marks) == sum(1 for s in seconds if s.throttled)


def test_throughput_of_a_clean_unpaced_run_shows_ok_only() -> None:
    seconds = [_second(1_780_000_000 + i, ok=0, rate=None) for i in range(MIN_SECONDS)]
    assert _legend(charts(seconds)[0]) == ["answered ok"]


def test_throughput_is_a_step_per_second() -> None:
    # 10 then 30 requests/s: the area's top holds each value flat over its
    # second and jumps straight up at the boundary (no ramp between them).
    seconds = [_second(1_780_000_000 + i, ok=10 if i < 2 else 30) for i in range(4)]
    [area] = _drawn(charts(seconds)[0], "answered ok", "path")
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", area.get("d") or "")]
    points = list(zip(numbers[::2], numbers[1::2], strict=True))[1:-1]  # without the fill's feet
    assert len(points) == 2 * 4
    for i in range(0, len(points), 2):
        assert points[i][1] == points[i + 1][1]  # flat over the second
    assert points[3][0] == points[4][0] and points[3][1] > points[4][1]  # straight up at 2 s


def test_latency_with_gaps_renders_each_stretch() -> None:
    p90: Sequence[float | None] = [30.0, 31.0, None, 33.0, 34.0, None, 36.0, 37.0]
    seconds = [_second(1_780_000_000 + i, p90=v) for i, v in enumerate(p90)]
    latency = charts(seconds)[1]
    assert _legend(latency) == ["p50", "p90", "p99"]
    lines = _drawn(latency, "p90", "path")
    # Three stretches, and no dot: every point has a neighbour to draw a line to.
    assert len(lines) == 3 and _drawn(latency, "p90", "circle") == []
    assert len(_drawn(latency, "p50", "path")) == 1


def test_a_lone_latency_point_is_still_visible() -> None:
    seconds = [_second(1_780_000_000 + i, p99=60.0 if i == 1 else None) for i in range(4)]
    latency = charts(seconds)[1]
    # 60 ms at 1 s between two gaps: no line can show it, a dot does.
    assert len(_drawn(latency, "p99", "circle")) == 1
    assert _drawn(latency, "p50", "circle") == []


def test_a_run_of_min_seconds_draws_and_a_shorter_one_does_not() -> None:
    seconds = [_second(1_780_000_000 + i) for i in range(MIN_SECONDS)]
    drawn = charts(seconds)
    assert len(drawn) == 2 and all(_root(c).iter(f"{_SVG}path") for c in drawn)
    assert charts(seconds[:-1]) == []


def test_drawing_leaves_no_import_hook_that_warns() -> None:
    charts([_second(1_780_000_000 + i) for i in range(MIN_SECONDS)])
    # pytest turns warnings into errors here: a finder with only the legacy
    # find_module, consulted for a module no one has, would raise ImportWarning.
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("bulk_charts_no_such_module")


def test_help_does_not_import_the_chart_library() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "bulk", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "bulk.cli" in imported  # the log is the one asked for
    assert not {"pygal", "matplotlib", "jinja2"} & {name.split(".")[0] for name in imported}
