"""Even slots for the run's requests: the GCRA with zero burst tolerance.

Written here rather than taken from aiolimiter because aiolimiter's leaky
bucket starts full (a burst of `max_rate` requests at t=0, which trips a
server-side limit at once) and its rate is fixed at construction, while the
rate controller (`_pacing.py`) must lower and raise it mid-run. Each caller
reserves the next free slot, and a pool that falls behind never "catches up"
with a burst.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio

__all__ = ["HEADROOM", "Pacer"]

_TOLERANCE = 0.005  # seconds
_RESERVATIONS = 4  # most reservations by one caller for one slot
# A caller woken this much after its slot lost it to a stalled event loop. Less
# lateness is ordinary on a busy machine, and voiding the slot would lower the
# pace; a burst of 50 ms of slots is within what a limiter's burst allows.
_STALL = 0.05
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
        self.hold_until = 0.0
        self.epoch = 0  # bumped when reserved slots become void
        self.now = self._next  # the clock at the last reservation
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
        self.hold_until = max(self.hold_until, self._clock() + seconds)
        self.restart()

    def restart(self) -> None:
        """Forget slots reserved at the old rate: callers waiting for them reserve again.

        After a cut (or during a hold) the slots already handed out are spaced
        for the old, faster rate; a pool of 8 at 7/s holds a second of them.
        """
        self.epoch += 1
        self._next = self._clock()

    def reserve(self) -> float:
        """Claim the next slot; return how long the caller must wait for it."""
        self.now = now = self._clock()
        # A slot missed by at most `_TOLERANCE` (the event loop was busy) may
        # still be used, so hiccups do not lower the rate; anything older is
        # gone, and after an idle gap the schedule starts now, so an idle (or
        # new) pool never bursts.
        slot = self._next if self._next >= now - _TOLERANCE else now
        slot = max(slot, self.hold_until)
        self._next = slot + self._interval
        return max(0.0, slot - now)

    async def acquire(self) -> float:
        """Wait for a slot; return the time it was granted (this pacer's clock)."""
        epoch = self.epoch
        delay = self.reserve()
        if delay <= 0:
            return self.now  # unpaced, or a slot free now: no sleep, no second clock read
        for _ in range(_RESERVATIONS):
            slot = self.now + delay
            await self.sleep(delay)
            late = self._clock() - slot
            if epoch == self.epoch and late <= _STALL:
                break
            # The rate was cut or the pool held while this caller waited, or
            # the event loop stalled well past its slot (the callers it woke
            # would all go at once, a burst): the slot is void; reserve again (a
            # bounded number of times: a stopping run's sleep returns at once).
            epoch = self.epoch
            delay = self.reserve()
            if delay <= 0:
                break
        return self._clock()
