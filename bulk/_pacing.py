"""Send slots spaced evenly at a rate that may change while the run goes on.

Written here rather than taken from aiolimiter because aiolimiter's leaky
bucket starts full (a burst of `max_rate` requests at t=0, which trips a
server-side limit at once) and its rate is fixed at construction, while the
adaptive controller needs to lower and raise it mid-run. This is the GCRA
with zero burst tolerance: each caller reserves the next free slot, and a
pool that falls behind never "catches up" with a burst.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio

__all__ = ["Pacer"]


class Pacer:
    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._next = clock()
        self._interval = 0.0
        self._hold_until = 0.0
        self.set_rate(rate)

    @property
    def rate(self) -> float | None:
        return 1.0 / self._interval if self._interval else None

    def set_rate(self, rate: float | None) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive (or None for no limit)")
        self._interval = 1.0 / rate if rate else 0.0

    def hold(self, seconds: float) -> None:
        """Send nothing for `seconds` (a server's Retry-After applies to the whole pool)."""
        self._hold_until = max(self._hold_until, self._clock() + seconds)

    def reserve(self) -> float:
        """Claim the next slot; return how long the caller must wait for it."""
        now = self._clock()
        slot = max(now, self._next, self._hold_until)
        self._next = slot + self._interval
        return slot - now

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await self._sleep(delay)
