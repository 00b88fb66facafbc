"""Per-second counters of a sending run: answers by class, the pacer's rate, latency percentiles.

The engine notes every request it sends (a status PUT, a read, any other
change) with `answered` or `refused`, so all calls of a run are counted
alike; `run(journal)` hands
the counters of each second to the journal's writer thread (one row a
second). Per request this costs two clock reads, a list append and an
integer add (no lock: everything happens on the event loop's thread).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from .._core._exceptions import RequestError
from ..journal import Second

if TYPE_CHECKING:
    from ..journal import Journal

__all__ = ["PerSecond"]

_OK, _THROTTLED, _SERVER, _CLIENT, _NETWORK, _UNEXPECTED = range(6)


def answer_class(error: RequestError) -> int:
    """Which column a failed request counts in, by the HTTP status it carried (if any)."""
    status = error.http_status
    if status is None:
        return _NETWORK
    if status == 429:
        return _THROTTLED
    if status >= 500:
        return _SERVER
    if status >= 400:
        return _CLIENT
    return _UNEXPECTED


class PerSecond:
    """The counters of the second under way; `take()` closes it and starts the next."""

    def __init__(
        self,
        invocation: str,
        rate: Callable[[], float | None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.invocation = invocation
        self._rate = rate
        self._clock = clock
        self._counts = [0] * 6
        self._latencies: list[float] = []

    def answered(self, seconds: float) -> None:
        self._counts[_OK] += 1
        self._latencies.append(seconds)

    def refused(self, error: RequestError, seconds: float) -> None:
        self._counts[answer_class(error)] += 1
        self._latencies.append(seconds)

    def take(self) -> Second | None:
        """The second just ended (None when nothing was answered in it)."""
        counts, latencies = self._counts, self._latencies
        self._counts, self._latencies = [0] * 6, []
        if not latencies:
            return None
        if len(latencies) == 1:
            p50 = p90 = p99 = latencies[0]
        else:
            cuts = statistics.quantiles(latencies, n=100, method="inclusive")
            p50, p90, p99 = cuts[49], cuts[89], cuts[98]
        rate = self._rate()
        ok, throttled, server, client, network, unexpected = counts
        return Second(
            self.invocation,
            round(self._clock(), 3),
            ok,
            throttled,
            server,
            client,
            network,
            unexpected,
            rate,
            round(p50 * 1000, 2),
            round(p90 * 1000, 2),
            round(p99 * 1000, 2),
        )

    async def run(self, journal: Journal, every: float = 1.0) -> None:
        """Hand a second's counters to the journal every `every` seconds, until cancelled."""
        try:
            while True:
                await anyio.sleep(every)
                second = self.take()
                if second is not None:
                    journal.record_second(second)
        finally:
            # The part-second at the end (a cancel): recorded before the writer's last flush.
            last = self.take()
            if last is not None:
                journal.record_second(last)
