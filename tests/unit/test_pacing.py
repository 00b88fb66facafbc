"""Pacing and the rate controller, on a fake clock: no sleeping.

The controller's shape is checked in a closed loop against a fake server (a
token bucket on the same fake clock, answering 429 with a whole-second
Retry-After): this stage's edge, faked; the real server is in bench/rate.py.
"""

from __future__ import annotations

import itertools
import math

import pytest

from bulk import RetriableError
from bulk.send._pacing import HEADROOM, Pacer, RateController

from ..support import FakeClock

PACED = 100.0 * (1 - HEADROOM)  # what --rate 100 paces at


async def test_no_initial_burst_and_even_spacing() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, clock=clock, sleep=clock.sleep)
    sent = []
    for _ in range(21):
        await pacer.acquire()
        sent.append(clock.now)
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert sent[0] == 100.0
    assert gaps == pytest.approx([0.1] * 20)
    assert sent[-1] - sent[0] == pytest.approx(2.0)


async def test_idle_pool_does_not_catch_up_with_a_burst() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, clock=clock, sleep=clock.sleep)
    await pacer.acquire()
    clock.now += 5.0  # nothing sent for 5 s
    assert pacer.reserve() == 0.0
    # nothing of the 5 s is made up: the schedule starts again now
    assert pacer.reserve() == pytest.approx(0.1)
    assert pacer.reserve() == pytest.approx(0.2)


async def test_a_slot_missed_by_a_busy_loop_is_still_used() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, clock=clock, sleep=clock.sleep)
    pacer.reserve()
    clock.now += 0.103  # the loop was busy: the next slot (at +0.1) is 3 ms late
    assert pacer.reserve() == 0.0
    assert pacer.reserve() == pytest.approx(0.097)  # the schedule keeps its pace


async def test_rate_change_and_hold() -> None:
    clock = FakeClock()
    pacer = Pacer(None, clock=clock, sleep=clock.sleep)
    assert pacer.reserve() == 0.0 and pacer.reserve() == 0.0
    pacer.set_rate(4.0)
    pacer.hold(2.0)
    assert pacer.reserve() == pytest.approx(2.0)
    assert pacer.reserve() == pytest.approx(2.25)
    with pytest.raises(ValueError):
        pacer.set_rate(0)


async def test_a_slot_reserved_before_a_hold_is_reserved_again_after_it() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, clock=clock)
    for _ in range(5):
        pacer.reserve()  # five callers already wait for the next half second

    async def sleep(seconds: float) -> None:
        clock.now += seconds
        if not pacer.hold_until:
            pacer.hold(2.0)  # a 429 with Retry-After: 2 is answered meanwhile

    pacer.sleep = sleep
    granted = await pacer.acquire()
    # Not the old slot at +0.5 s, and not all waiters at the hold's end at once:
    # a new slot, spaced after the hold.
    assert granted >= pacer.hold_until == pytest.approx(100.5 + 2.0)


# -- the controller ------------------------------------------------------------


class Bucket:
    """A token bucket on the fake clock; a refusal names whole seconds to wait."""

    def __init__(self, clock: FakeClock, rate: float, burst: float) -> None:
        self.clock, self.rate, self.burst = clock, rate, burst
        self.tokens, self.last = burst, clock.now

    def admit(self) -> float | None:
        """None if admitted, else the Retry-After."""
        now = self.clock.now
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        return float(max(1, math.ceil((1 - self.tokens) / self.rate)))


class Run:
    """The controller in a closed loop with a `Bucket`: every slot sends one request."""

    def __init__(self, ceiling: float | None, limit: float, start: float | None = None) -> None:
        self.clock = FakeClock()
        self.start = self.clock.now
        self.pacer = Pacer(None, clock=self.clock, sleep=self.clock.sleep)
        self.ctl = RateController(self.pacer, ceiling, clock=self.clock, start=start)
        self.server = Bucket(self.clock, limit, max(2.0, limit / 10))
        self.admitted: list[float] = []  # seconds since the start
        self.refused: list[float] = []
        self.paces: list[tuple[float, float]] = []

    async def until(self, second: float) -> None:
        while self.clock.now - self.start < second:
            sent = await self.ctl.acquire()
            wait = self.server.admit()
            if wait is None:
                self.admitted.append(sent - self.start)
                self.ctl.on_success()
            else:
                self.refused.append(sent - self.start)
                self.ctl.on_throttled(wait, sent_at=sent)
            self.paces.append((sent - self.start, self.ctl.rate or 0.0))

    def share(self, begin: float, end: float, limit: float) -> float:
        return sum(begin <= t < end for t in self.admitted) / (end - begin) / limit

    def pace_at(self, second: float) -> float:
        return next(p for t, p in reversed(self.paces) if t <= second)


async def test_three_times_too_fast_settles_under_the_limit_and_stays() -> None:
    run = Run(300.0, limit=100.0)
    await run.until(60)
    # A handful of 429s to find the limit, then none for a long plateau.
    assert len(run.refused) <= 8
    assert run.share(10, 60, 100.0) >= 0.95
    settled = [p for t, p in run.paces if 15 <= t < 25]
    assert max(settled) == min(settled)  # a plateau: not creeping back towards --rate
    assert 0.96 * 100.0 <= settled[0] < 100.0


async def test_probes_rarely_and_ever_more_rarely_while_the_limit_holds() -> None:
    run = Run(300.0, limit=100.0)
    await run.until(400)
    late = [t for t in run.refused if t > 30]
    gaps = [b - a for a, b in itertools.pairwise(late)]
    assert len(late) >= 3
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps[:3]))
    # Never trusted for more than the longest plateau (2 min) plus a probe.
    assert max(gaps) <= 120 + 30
    assert run.share(30, 400, 100.0) >= 0.97


async def test_a_limit_that_rises_is_found_again() -> None:
    run = Run(200.0, limit=50.0)
    await run.until(20)
    assert run.pace_at(20) < 50.0
    run.server.rate = 100.0  # the other client of the same credentials stopped
    await run.until(60)
    assert run.share(50, 60, 100.0) >= 0.9


async def test_auto_starts_at_the_documented_rate_and_finds_an_unannounced_limit() -> None:
    run = Run(None, limit=40.0, start=10.0)
    assert run.ctl.rate == 10.0
    await run.until(45)
    assert run.paces[0][1] == pytest.approx(10.0, rel=0.05)
    assert len(run.refused) <= 4
    assert sum(t >= 20 for t in run.refused) <= 1  # one probe at most, once settled
    assert 0.95 * 40.0 <= run.pace_at(30) < 40.0
    assert run.share(20, 45, 40.0) >= 0.93


async def test_a_stray_429_at_the_limit_costs_one_percent_not_a_cut() -> None:
    run = Run(100.0, limit=1000.0)  # the server never refuses by itself ...
    await run.until(5)
    run.ctl.on_throttled(sent_at=run.clock.now)  # ... but jitter against a strict window did
    await run.until(60)
    after = [p for t, p in run.paces if t >= 5]
    assert min(after) >= PACED * 0.98
    assert run.pace_at(60) == pytest.approx(PACED)  # back at --rate by probing


def test_several_429s_of_one_burst_are_one_event_and_one_hold() -> None:
    clock = FakeClock()
    pacer = Pacer(None, clock=clock)
    ctl = RateController(pacer, 100.0, clock=clock)
    clock.now += 5.0
    sent = clock.now - 0.01
    ctl.on_throttled(1.0, sent_at=sent)
    first = clock.now
    clock.now += 0.02
    ctl.on_throttled(3.0, sent_at=sent)  # same burst, longer Retry-After
    clock.now += 0.02
    ctl.on_throttled(2.0, sent_at=sent)
    assert ctl.throttle_events == 1
    # Held once, for the longest Retry-After, counted from the first 429: not 1 + 3 + 2 s.
    assert pacer.hold_until == pytest.approx(first + 3.0)
    cut = ctl.rate
    clock.now = pacer.hold_until + 0.5
    ctl.on_throttled(1.0, sent_at=clock.now - 0.001)  # sent after the pool resumed: new event
    assert ctl.throttle_events == 2
    assert cut is not None and ctl.rate is not None and ctl.rate < cut


def test_the_curve_moves_with_successes_not_with_idle_time() -> None:
    clock = FakeClock()
    ctl = RateController(Pacer(None, clock=clock), 300.0, clock=clock)
    clock.now += 0.05
    ctl.on_throttled(1.0)
    pace = ctl.rate
    clock.now += 300.0  # a pool that sent nothing (held back by errors, say)
    ctl.on_success()
    assert ctl.rate == pace  # did not "hold" or "probe" a rate it never sent at


async def test_paced_takes_a_slot_and_feeds_the_answer_back() -> None:
    clock = FakeClock()
    pacer = Pacer(None, clock=clock, sleep=clock.sleep)
    ctl = RateController(pacer, 50.0, clock=clock)
    clock.now += 10.0

    async def refused() -> str:
        raise RetriableError("HTTP 429", 429, retry_after=2.0)

    async def listed() -> str:
        return "page"

    with pytest.raises(RetriableError):
        await ctl.paced(refused)
    assert ctl.throttle_events == 1
    assert pacer.hold_until == pytest.approx(clock.now + 2.0)
    assert await ctl.paced(listed) == "page"
    assert clock.now >= pacer.hold_until  # the next call of any kind waited out the hold
