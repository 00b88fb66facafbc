"""One send budget per run: slots spaced evenly, at a rate shaped around the server's limit.

`Pacer` (`_pacer.py`) spaces slots evenly, with no burst.

`RateController` owns the rate. Every call of a run (listing pages, status
changes, any later call type) takes its slot from the one controller, so
together they stay under the limit; `paced()` wraps a call for that.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple, TypeVar

from .._core._exceptions import RetriableError
from ._pacer import HEADROOM, Pacer

__all__ = ["HEADROOM", "Pacer", "RateController", "Tuning"]

log = logging.getLogger("bulk")

# 429s in an event's echo (without a hold) that tell overload from jitter: a
# moment of jitter against a strict window refuses one or two requests, a pool
# 3% too fast refuses three in the half second of an echo at 200/s.
_NOT_JITTER = 3

T = TypeVar("T")


class Tuning(NamedTuple):
    """The controller's constants, tuned against bench/rate.py (see RateController)."""

    margin: float = 0.01  # how far under a refused rate to settle
    search: float = 5.0  # seconds to try a rate while the limit is being found
    plateau: float = 15.0  # seconds at the limit before the first probe above it
    max_plateau: float = 120.0  # the longest wait between probes
    probe: float = 1e-3  # the convex probe's growth (cubic in seconds)
    growth: float = 0.2  # --rate auto, and after a limit rose: 20% a second
    burst: float = 0.1  # seconds of the limit a server's bucket may hold
    lag: float = 1.0  # seconds a refusal may trail the rate that caused it
    settle: float = 1.0  # seconds before a refusal says the rate is too high
    cooldown: float = 0.5  # 429s within this of an event are its echo
    stray: int = 200  # successes after which one 429 is jitter, not the limit
    floor: float = 0.5  # the lowest rate ever paced at


DEFAULT_TUNING = Tuning()


class RateController:
    """The run's rate: find where the server's limit is, stay just under it, probe rarely.

    Shaped like TCP CUBIC around its last maximum (concave approach, plateau,
    convex probe), in requests per second. Each 429 with a whole-second
    Retry-After holds the whole pool for a second, a second of the server's
    capacity lost; AIMD creeping back to --rate after every cut trips the limit
    again within seconds (measured: 74.6/s of a 100/s token bucket at --rate
    300). So this controller remembers:

    - `estimate`: the rate last refused (the limit is below it), and `_near`,
      where the limit likely is: a token bucket admits more than its limit
      until its burst is spent, so a 429 comes late; see `_cut`;
    - `safe`: the highest rate that held for a whole trial or plateau.

    After a 429 the rate steps straight to just under the likely limit (after
    a Retry-After hold the bucket is full again, so CUBIC's concave approach
    shrinks to a step) and tries it for a short `search`; between a rate that
    held and one refused it tries the likely limit, else the middle, until
    they agree. Found, it stays on the safe rate for `plateau` s, then probes:
    slowly at first (a cubic: +0.1% after a second, +2.7% after three), then,
    once past the old estimate for longer than a burst can hide, exponential
    growth (the limit rose: another client of the same credentials stopped).

    A probe that fails near the old estimate confirms it: back to the safe
    rate, and the next plateau lasts twice as long, up to `max_plateau`. That
    is the estimate's ageing: trusted longer each time it is confirmed, never
    for more than two minutes without a look above it.

    Time on the curve advances by successes, one interval per success, so a
    pool held back by its concurrency or by errors does not "hold" or "probe"
    rates it never sent at. 429s of requests sent before the pool resumed
    after the last event are that event's echo: one cut, and one hold of the
    whole pool for the longest Retry-After among them, counted from the first.

    With no --rate (`start`: --rate auto) it begins at `start` and grows 20% a
    second until the first 429. The constants were tuned against bench/rate.py
    (buckets whose burst is a tenth of a second, strict sliding windows) and a
    closed-loop model of it; `burst` is that assumption.
    """

    def __init__(
        self,
        pacer: Pacer,
        ceiling: float | None,
        *,
        start: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        tuning: Tuning = DEFAULT_TUNING,
    ) -> None:
        self._pacer = pacer
        # Paced a hair under the ceiling: at exactly N/s, a millisecond of
        # jitter puts N+1 requests into some one-second span, and a strict
        # sliding-window limiter refuses it. 1% is 10 ms of slack per second.
        self.ceiling = ceiling * (1 - HEADROOM) if ceiling else None
        self._clock = clock
        (
            self._margin,
            self._search,
            self._plateau0,
            self._max_plateau,
            self._probe,
            self._growth,
            self._burst,
            self._lag,
            self._settle,
            self._cooldown,
            self._stray,
            self._floor,
        ) = tuning
        self._near = 0.0  # the estimate, less what a token bucket's burst hid
        self._steady = False  # `_near` came from a refusal at a steady rate
        self._costly = False  # the last refusal held the pool (a Retry-After)
        self._pending = 0.0  # the cut a 429 called for, if more 429s confirm it
        self._echoes = 0  # 429s of the last event's echo
        self._began = clock()
        self._sent = 0
        self.throttle_events = 0
        self.estimate: float | None = None  # a rate refused: the limit is below it
        self.safe: float | None = None  # a rate held for a whole plateau since
        self._target = 0.0  # the current plateau's rate
        self._length = 0.0  # how long the current plateau lasts
        self._plateau = tuning.plateau  # how long to stay once the limit is found
        self._t = 0.0  # seconds on the curve since the phase began
        self._phase = _GROW if start else _WARM if ceiling else _STEADY
        self._resumed = self._began  # when sending (re)started: the start, or after an event
        self._event_at = -float("inf")
        self._since = self._began  # when the current plateau (or growth) began
        self._past: float | None = None  # when the probe passed the estimate
        self._admitted = 0  # successes since the last event
        self._rate = start or self.ceiling
        if self.ceiling is not None and self._phase is _WARM:
            # The first requests open connections and reach the server late,
            # the next ones on time: a strict window counting by arrival sees
            # the first second compressed. It goes a little slower.
            self._rate = self.ceiling * (1 - 2 * HEADROOM)
        pacer.set_rate(self._rate)

    @property
    def rate(self) -> float | None:
        return self._pacer.rate

    @property
    def sent(self) -> int:
        """Slots taken so far, by calls of every kind."""
        return self._sent

    async def acquire(self) -> float:
        """Wait for a send slot; return when it was granted (for `on_throttled`)."""
        self._sent += 1
        return await self._pacer.acquire()

    def set_sleep(self, sleep: Callable[[float], Awaitable[None]]) -> None:
        self._pacer.sleep = sleep

    async def paced(self, call: Callable[[], Awaitable[T]]) -> T:
        """One call in this budget: a slot first, then its answer fed back."""
        slot = await self.acquire()
        try:
            result = await call()
        except RetriableError as exc:
            if exc.http_status == 429:
                self.on_throttled(exc.retry_after, sent_at=slot)
            raise
        self.on_success()
        return result

    # -- feedback ----------------------------------------------------------------

    def on_throttled(
        self, retry_after: float | None = None, *, sent_at: float | None = None
    ) -> None:
        now = self._clock()
        sent = now if sent_at is None else sent_at
        if sent < self._resumed:
            # Sent before the pool resumed after the last event: that event's echo.
            self._echoes += 1
            if self._pending and self._echoes >= _NOT_JITTER:
                # Refused again and again: not jitter. The cut the first 429 called for.
                rate, self._pending = self._pending, 0.0
                self._plateau_at(rate, self._length)
            if retry_after:
                self._pacer.hold_until = max(self._pacer.hold_until, self._event_at + retry_after)
                self._resumed = max(self._resumed, self._pacer.hold_until)
            return
        self.throttle_events += 1
        self._event_at = now
        if retry_after:
            self._pacer.hold(retry_after)
        # How long the pool sent at this rate (from the later of the last resume
        # and the last change of plateau) before the server refused it.
        held = now - max(self._resumed, self._since)
        self._resumed = now + max(self._cooldown, retry_after or 0.0)
        self._costly = bool(retry_after)
        self._pending, self._echoes = 0.0, 0
        self._cut(self._rate_now(now), held)

    def on_success(self) -> None:
        self._admitted += 1
        rate = self._rate
        phase = self._phase
        if rate is None or phase is _STEADY:
            return
        self._t += 1.0 / rate
        if phase is _GROW:
            rate += self._growth  # d(rate)/dt = growth * rate, and one success is 1/rate s
        elif phase is _WARM:
            if self._t < 1.0:
                return
            rate = self.ceiling or rate
        elif phase is _PLATEAU:
            if self._t >= self._length:
                self._plateau_held()
            return
        else:  # _PROBE
            rate = self._target * (1.0 + self._probe * self._t**3)
            upper = self.estimate
            if upper is None or rate > upper * (1.0 + 2 * self._margin):
                if self._past is None:
                    self._past = self._t
                elif self._t - self._past >= self._lag:
                    # Clearly past where the limit was for longer than a bucket's
                    # burst hides, and still admitted: the limit rose.
                    self.estimate, self._phase, self._plateau = None, _GROW, self._plateau0
                    self._since = self._clock()
        ceiling = self.ceiling
        if ceiling is not None and rate >= ceiling:
            rate, self._phase = ceiling, _STEADY  # at the user's --rate: nothing more to find
        self._set(rate)

    # -- the shape ---------------------------------------------------------------

    def _set(self, rate: float) -> None:
        self._rate = rate
        self._pacer.set_rate(rate)

    def _plateau_at(self, rate: float, length: float) -> None:
        rate = max(self._floor, rate)
        log.debug(
            "pace %.1f/s for %.0f s (limit below %.1f/s; %s held)",
            rate,
            length,
            self.estimate or 0.0,
            f"{self.safe:.1f}/s" if self.safe else "nothing",
        )
        if rate != self._rate:
            self._since = self._clock()
        self._target = rate
        self._length, self._t, self._phase = length, 0.0, _PLATEAU
        self._set(rate)

    def _plateau_held(self) -> None:
        """The plateau held without a 429: it is safe; look closer, stay, or probe."""
        self.safe = safe = max(self.safe or 0.0, self._target)
        if self._length >= self._plateau0:
            self._t, self._phase, self._past = 0.0, _PROBE, None  # stayed long enough: probe
            return
        upper, near = self.estimate, self._near * (1 - self._margin)
        if upper is None or upper <= safe * (1 + 2 * self._margin):
            self._plateau_at(safe, self._plateau)  # found: stay
        elif near > safe * (1 + self._margin / 2):
            # The last refusal, corrected for a bucket's burst, leaves room.
            self._near = 0.0  # used: if this holds too, it is found
            self._plateau_at(near, self._trial(safe, upper))
        elif self._steady and self._costly and near >= safe * (1 - 2 * self._margin):
            # It agrees: found. (Without a Retry-After hold a refusal costs a
            # few 429s, not a second of sending, so the gap is narrowed further.)
            self._plateau_at(safe, self._plateau)
        else:
            # Between a rate that held and one refused: try the middle.
            self._plateau_at((safe + upper) / 2, self._trial(safe, upper))

    def _trial(self, low: float, high: float) -> float:
        """How long to try a rate between `low` (held) and `high` (refused).

        Long enough that a bucket's burst cannot hide an overshoot of half the
        gap; a wide gap is narrowed quickly, a narrow one carefully.
        """
        gap = max(high / low - 1.0, 1e-3)
        return min(self._search, max(1.0, 2 * self._burst / gap))

    def _rate_now(self, now: float) -> float:
        if self._rate is not None:
            return self._rate
        # Unpaced so far (--rate unlimited): what the pool actually sent.
        return max(self._sent / max(now - self._began, 1e-3), self._floor)

    def _cut(self, rate: float, held: float) -> None:
        """A new congestion event at `rate`, `held` s after sending resumed."""
        self._pacer.restart()
        phase, previous = self._phase, self.estimate
        admitted, self._admitted = self._admitted, 0
        near, safe, dated = self._overshoot(phase, rate, held, admitted)
        if safe is not None and safe >= rate:
            safe = None  # refused at a rate that held before: the limit fell
        self.safe = safe
        self._near = near
        self._steady = dated
        self.estimate = rate
        if (
            phase is _PROBE
            and safe is not None
            and (previous is None or near <= previous * (1 + self._margin))
        ):
            # The probe failed about where the limit was before: back to the
            # rate that held (or a little above, if the probe held there a
            # while), and trust it longer (the estimate ages slowly).
            self._plateau = min(self._plateau * 2, self._max_plateau)
            self.safe = safe = max(safe, near * (1 - 2 * self._margin))
            self._plateau_at(safe, self._plateau)
            return
        self._plateau = self._plateau0
        length = self._search
        if safe is not None and phase is not _GROW:
            length = self._trial(safe, rate)
            rate = max(safe, min(near * (1 - self._margin), (safe + rate) / 2))
        else:
            rate = self._after_cut(phase, rate, held, near, safe, previous)
        mild = self.estimate * (1 - self._margin)  # just under the rate refused
        if not self._costly and admitted >= self._stray // 2 and rate < mild:
            # No hold, and hundreds admitted at this rate: a lone 429 (jitter
            # against a strict window) or the first of many. Step just under
            # for now; more 429s while the pool goes on (the echo) make it
            # the full cut.
            self._pending = rate
            rate = mild
        self._plateau_at(rate, length)

    def _overshoot(
        self, phase: str, rate: float, held: float, admitted: int
    ) -> tuple[float, float | None, bool]:
        """Where the limit likely is after a refusal at `rate`: (near, safe, dated).

        Only a refusal at a steady rate, after a while, dates the overshoot well
        enough to call the limit found by its estimate (`dated`); else, bisect.
        """
        safe = self.safe
        if phase is _GROW:
            # The rate was climbing: what it was a moment ago (about when a
            # bucket's burst began to be spent) is the likely limit.
            return rate * math.exp(-self._growth * min(held, self._lag)), safe, False
        if phase is _PROBE:
            # Rising slowly, a bucket's burst hides the overshoot for longer.
            near = self._target * (1.0 + self._probe * max(0.0, self._t - 2 * self._lag) ** 3)
            return near, safe, False
        if held < 2 * self._burst and safe is not None:
            # Refused at once on leaving a rate that held: the bucket was spent
            # already (or a window full), so that rate was too high as well.
            return min(rate, safe), None, True
        # At a steady rate above a token bucket's limit L, its burst of
        # about `burst` s of L is spent in `held` s: rate - L = burst*L/held.
        near = rate / (1.0 + self._burst / max(held, 1e-3))
        if near < rate * 0.7:
            return rate * 0.7, safe, False  # refused at once: only a guess
        if admitted >= self._stray and held >= 2 * self._settle:
            # One 429 among hundreds admitted at this rate: a moment of
            # jitter against a strict window, or the limit just under.
            near = max(near, rate * (1 - self._margin))
        return near, safe, True

    def _after_cut(
        self,
        phase: str,
        rate: float,
        held: float,
        near: float,
        safe: float | None,
        previous: float | None,
    ) -> float:
        """The rate to step to after a cut, when no rate between is known to hold."""
        if safe is not None:
            return max(safe, near * (1 - self._margin))
        if previous is None and phase in (_STEADY, _WARM) and held < self._settle:
            # Refused soon after starting, with nothing known: far off, and no
            # telling how far. A deep cut; the search goes on from there.
            return rate * 0.7
        if previous is None and phase in (_STEADY, _WARM):
            # The first 429 after a while at a steady rate: the limit is just
            # under it, or a strict window saw a moment of jitter. Just under.
            return rate * (1 - self._margin)
        return near * (1 - self._margin)


# Phases of the curve, compared by identity on the hot path.
_STEADY = "steady"  # at the ceiling (or unpaced), nothing to find
_WARM = "warm"  # the first second, a little under the ceiling
_GROW = "grow"  # exponential growth: --rate auto before the first 429, or a limit that rose
_PLATEAU = "plateau"
_PROBE = "probe"
