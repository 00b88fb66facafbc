"""Live counters of a sending run, and what may watch them (the command line's progress)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["NoProgress", "Progress", "Stats"]


@dataclass
class Stats:
    """Live counters for progress display; the journal holds the truth."""

    total: int = 0
    done: int = 0
    failed: int = 0
    in_flight: int = 0
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    concurrency: int | None = None  # the pool's size at the end (chosen, when automatic)
    final_rate: float | None = None
    started_at: float = field(default_factory=time.monotonic)


class Progress(Protocol):
    """Shown while sending; the command line's bar and log lines implement it."""

    def start(self, stats: Stats) -> None: ...
    def update(self, stats: Stats) -> None: ...
    def stop(self, stats: Stats) -> None: ...


class NoProgress:
    def start(self, stats: Stats) -> None:
        pass

    def update(self, stats: Stats) -> None:
        pass

    def stop(self, stats: Stats) -> None:
        pass
