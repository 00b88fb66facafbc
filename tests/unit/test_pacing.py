"""Pacing and the rate controller, on a fake clock: no sleeping."""

from __future__ import annotations

import itertools

import pytest

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
    # at most the small tolerance for a busy event loop (5 ms) is made up, not 5 s
    assert pacer.reserve() == pytest.approx(0.095)
    assert pacer.reserve() == pytest.approx(0.195)


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


def controller(ceiling: float | None) -> tuple[RateController, FakeClock]:
    clock = FakeClock()
    pacer = Pacer(None, clock=clock, sleep=clock.sleep)
    return RateController(pacer, ceiling, clock=clock), clock


def test_one_burst_of_429s_is_one_cut() -> None:
    ctl, clock = controller(100.0)
    clock.now += 1.0
    for _ in range(100):
        ctl.on_success()
    for _ in range(8):
        ctl.on_throttled()
    assert ctl.throttle_events == 1
    assert ctl.rate == pytest.approx(PACED * 0.95)  # a stray 429 among successes: small cut
    clock.now += 0.6  # past the cooldown: a second event cuts again, deeper
    ctl.on_throttled()  # since the first cut: 8 refused, nothing accepted
    assert ctl.throttle_events == 2
    assert ctl.rate == pytest.approx(PACED * 0.95 * 0.5)


def test_cut_follows_what_the_server_accepted() -> None:
    ctl, clock = controller(300.0)  # a client three times too fast for a 100/s server
    clock.now += 1.0
    for _ in range(100):
        ctl.on_success()
    ctl.on_throttled()
    # never below half the current rate in one step, never above what was accepted
    assert ctl.rate == pytest.approx(300.0 * (1 - HEADROOM) / 2)


def test_additive_increase_back_to_the_ceiling() -> None:
    ctl, clock = controller(100.0)
    clock.now += 1.0
    for _ in range(100):
        ctl.on_success()
    ctl.on_throttled()
    assert ctl.rate == pytest.approx(PACED * 0.95)
    for _ in range(94):  # a second of successes at ~94/s: about +2/s
        ctl.on_success()
    assert ctl.rate == pytest.approx(PACED * 0.95 + 2.0, abs=0.1)
    for _ in range(10_000):
        ctl.on_success()
    assert ctl.rate == pytest.approx(PACED)  # never above the user's --rate


def test_retry_after_holds_the_whole_pool() -> None:
    ctl, _ = controller(50.0)
    ctl.on_throttled(retry_after=3.0)
    pacer = ctl._pacer
    assert pacer.reserve() == pytest.approx(3.0)


def test_auto_rate_probes_upwards_until_throttled() -> None:
    clock = FakeClock()
    pacer = Pacer(None, clock=clock, sleep=clock.sleep)
    ctl = RateController(pacer, None, start=10.0, clock=clock)
    assert ctl.rate == 10.0
    for _ in range(100):
        ctl.on_success()
    grown = ctl.rate
    assert grown is not None and grown > 15.0
    clock.now += 1.0
    ctl.on_throttled()
    assert ctl.rate is not None and ctl.rate < grown
    before = ctl.rate
    for _ in range(100):
        ctl.on_success()
    assert ctl.rate is not None and ctl.rate - before < grown - 10.0  # additive after a 429
