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

__all__ = ["Pacer", "RateController"]

_TOLERANCE = 0.005  # seconds
HEADROOM = 0.01


class Pacer:
    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._clock = clock
        self.sleep = sleep  # replaceable: the engine's wait also ends when the run stops
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
        # A slot missed by at most `_TOLERANCE` (the event loop was busy) may
        # still be used, so hiccups do not lower the rate; anything older is
        # gone, so an idle pool never bursts.
        slot = max(now - _TOLERANCE, self._next, self._hold_until)
        self._next = slot + self._interval
        return max(0.0, slot - now)

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await self.sleep(delay)


class RateController:
    """Adapts a `Pacer` to what the server accepts: AIMD, shared by the whole pool.

    A 429 means the pool as a whole is too fast, so one 429 slows every
    worker. Several 429s from the same burst are one congestion event: the rate
    drops at most once per `cooldown`. Successes then raise the rate by a small
    step per second, back up to the ceiling (the user's `--rate`); with no
    ceiling it keeps probing upwards, which is how `--rate auto` finds the
    server's limit.
    """

    def __init__(
        self,
        pacer: Pacer,
        ceiling: float | None,
        *,
        start: float | None = None,
        decrease: float = 0.95,
        increase: float = 0.02,
        floor: float = 0.5,
        cooldown: float = 0.5,
        min_window: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pacer = pacer
        # Paced a hair under the ceiling: at exactly N/s, a millisecond of
        # jitter puts N+1 requests into some one-second span, and a strict
        # sliding-window limiter refuses it. 1% is 10 ms of slack per second.
        self.ceiling = ceiling * (1 - HEADROOM) if ceiling else None
        self._decrease = decrease
        self._increase = increase  # fraction of the reference rate gained per second
        self._floor = floor
        self._cooldown = cooldown
        self._min_window = min_window
        self._clock = clock
        self._began = clock()
        self._sent = 0
        self._accepted = 0  # successes since the last cut (or the start)
        self._throttled = 0  # 429s since the last cut
        self._window_start = self._began
        self._last_cut = -float("inf")
        self._reference = self.ceiling or 0.0
        self.throttle_events = 0
        pacer.set_rate(start or self.ceiling)

    @property
    def rate(self) -> float | None:
        return self._pacer.rate

    async def acquire(self) -> None:
        await self._pacer.acquire()
        self._sent += 1

    def set_sleep(self, sleep: Callable[[float], Awaitable[None]]) -> None:
        self._pacer.sleep = sleep

    def on_throttled(self, retry_after: float | None = None) -> None:
        now = self._clock()
        self._throttled += 1
        if retry_after:
            self._pacer.hold(retry_after)
        if now - self._last_cut < self._cooldown:
            return  # the same burst's 429s: one cut
        window = now - self._window_start
        accepted = self._accepted / window if window > 0 else 0.0
        # A stray 429 among thousands of successes (jitter against a strict
        # window) costs a small cut; a pool that is mostly refused cuts deep.
        refused = self._throttled / (self._throttled + self._accepted)
        factor = max(0.5, min(self._decrease, 1.0 - 2.0 * refused))
        # The next estimate counts from when sending may resume.
        self._last_cut, self._accepted, self._throttled = now, 0, 0
        self._window_start = now + (retry_after or 0.0)
        self.throttle_events += 1
        current = self._pacer.rate
        if current is None:
            current = max(self._sent / max(now - self._began, 1e-3), self._floor)
        cut = current * factor
        if window >= self._min_window:
            # What the server accepted since the last cut estimates its limit;
            # cutting towards it settles a pool that was far too fast in a few
            # steps instead of dozens, and the floor of half the current rate
            # bounds the harm of a poor estimate (an idle pool accepts little).
            cut = max(current * 0.5, min(cut, accepted))
        cut = max(self._floor, cut)
        self._reference = cut / factor
        self._pacer.set_rate(cut)

    def on_success(self) -> None:
        self._accepted += 1
        current = self._pacer.rate
        if current is None or (self.ceiling is not None and current >= self.ceiling):
            return
        if self.ceiling is None and not self.throttle_events:
            # Probing for an unknown limit: grow 10% per second until the first 429.
            step = 0.1
        else:
            # +increase*reference per second of successes: each success adds 1/current of it.
            step = self._increase * max(self._reference, self._floor) / current
        raised = current + step
        if self.ceiling is not None:
            raised = min(raised, self.ceiling)
        self._pacer.set_rate(raised)
