"""Progress while a batch runs: a rich bar on a terminal, plain log lines elsewhere."""

from __future__ import annotations

import logging
import time
from typing import Any

from ..send import Stats

__all__ = ["LogProgress", "RichProgress"]

log = logging.getLogger("bulk")


def _rate(stats: Stats) -> float:
    elapsed = time.monotonic() - stats.started_at
    return stats.requests / elapsed if elapsed > 0 else 0.0


class LogProgress:
    """One line every `every` seconds, for cron, CI and files."""

    def __init__(self, every: float = 10.0) -> None:
        self._every = every
        self._last = 0.0

    def start(self, stats: Stats) -> None:
        self._last = time.monotonic()

    def update(self, stats: Stats) -> None:
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self.line(stats)

    def line(self, stats: Stats) -> None:
        rate = _rate(stats)
        left = stats.total - stats.done
        eta = f", eta {left / rate:.0f}s" if rate > 0 else ""
        log.info(
            "progress: %d/%d done, %d failed, %d in flight, %.1f req/s%s",
            stats.done,
            stats.total,
            stats.failed,
            stats.in_flight,
            rate,
            eta,
        )

    def stop(self, stats: Stats) -> None:
        self.line(stats)


class RichProgress:
    def __init__(self, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar

        self._bar = Bar(
            TextColumn("[bold]sending"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task: Any = None

    def _detail(self, stats: Stats) -> str:
        return f"failed {stats.failed}  in flight {stats.in_flight}  {_rate(stats):.1f}/s"

    def start(self, stats: Stats) -> None:
        self._bar.start()
        self._task = self._bar.add_task("rows", total=stats.total, detail=self._detail(stats))

    def update(self, stats: Stats) -> None:
        self._bar.update(self._task, completed=stats.done, detail=self._detail(stats))

    def stop(self, stats: Stats) -> None:
        self.update(stats)
        self._bar.stop()
