"""The simulator's rate-limit models: background load sharing the limit (and its
`bulk simulate --background-rate`), and Retry-After.

Real loopback sockets and a real aiohttp client; the simulator's clock is fake,
so "ten seconds of traffic" takes milliseconds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from click.testing import CliRunner

from bulk import simulator as simulator_module
from bulk.cli import main as cli_main
from bulk.simulator import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    SimConfig,
    Simulator,
    make_tickets,
    serve,
)

from ..support import FakeClock

BASIC = {"Authorization": aiohttp.encode_basic_auth(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)}


@asynccontextmanager
async def clocked(
    config: SimConfig,
) -> AsyncIterator[tuple[Simulator, aiohttp.ClientSession, FakeClock]]:
    clock = FakeClock()
    sim = Simulator(config, make_tickets(2, seed=1), clock=clock)
    async with serve(sim) as base_url, aiohttp.ClientSession(base_url, headers=BASIC) as session:
        yield sim, session, clock


async def get(sim: Simulator, session: aiohttp.ClientSession) -> tuple[int, str | None]:
    ticket_id = next(iter(sim.tickets))
    async with session.get(f"/support/tickets/v1/{ticket_id}") as resp:
        await resp.read()
        return resp.status, resp.headers.get("Retry-After")


async def admitted_at(
    rate: float, sim: Simulator, session: aiohttp.ClientSession, clock: FakeClock, seconds: int
) -> int:
    """Send evenly at `rate` for `seconds`; how many were admitted."""
    admitted = 0
    for _ in range(round(rate * seconds)):
        admitted += (await get(sim, session))[0] == 200
        clock.now += 1 / rate
    return admitted


@pytest.mark.parametrize("window", ["bucket", "fixed", "sliding"])
async def test_background_load_takes_slots_of_the_same_limit(window: str) -> None:
    config = SimConfig(rate=10, burst=1, window=window, background_rate=4)
    async with clocked(config) as (sim, session, clock):
        ours = await admitted_at(8, sim, session, clock, 10)
    background = sim.background["admitted"]
    # 8/s alone would all pass; with the other client's 4/s, together they never
    # pass the limit, and both lose some.
    assert ours + background <= 10 * 10 + 1
    assert ours < 80 and background > 0
    assert sum(sim.background.values()) == pytest.approx(40, abs=1)  # 4/s for 10 s


async def test_without_background_load_the_whole_limit_is_ours() -> None:
    # 8/s: steps of 1/8 s are exact in binary, so a request sent exactly one refill after
    # the last finds a whole token (0.1 s steps sum to a hair under it from some start times).
    async with clocked(SimConfig(rate=8, burst=1)) as (sim, session, clock):
        assert await admitted_at(8, sim, session, clock, 10) == 80
    assert not sim.background


async def test_background_load_that_stops_on_schedule_frees_its_share() -> None:
    config = SimConfig(
        rate=10, burst=1, background_rate=5, schedule=[(5.0, {"background_rate": 0})]
    )
    async with clocked(config) as (sim, session, clock):
        first = await admitted_at(8, sim, session, clock, 5)
        later = await admitted_at(8, sim, session, clock, 5)
    assert first < 40
    assert later >= 39  # all 40, give or take the one at the change


async def test_retry_after_is_whole_seconds_when_on_and_absent_when_off() -> None:
    async with clocked(SimConfig(rate=5, burst=1, retry_after=True)) as (sim, session, clock):
        assert await get(sim, session) == (200, None)
        clock.now += 0.01
        # 0.19 s until a token: still "1", whole seconds as HTTP allows, never "0.19".
        assert await get(sim, session) == (429, "1")
        sim.config.rate = 0.4
        clock.now += 0.01
        assert await get(sim, session) == (429, "3")  # 2.4 s, rounded up
        sim.config.retry_after = False
        assert await get(sim, session) == (429, None)


def test_simulate_cli_passes_the_background_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[Simulator] = []
    monkeypatch.setattr(simulator_module, "run_forever", lambda sim, *_, **__: served.append(sim))
    runner = CliRunner()
    result = runner.invoke(cli_main, ["simulate", "--tickets", "3", "--background-rate", "2.5"])
    assert result.exit_code == 0, result.output
    assert [sim.config.background_rate for sim in served] == [2.5]
    refused = runner.invoke(cli_main, ["simulate", "--tickets", "3", "--background-rate", "-1"])
    assert refused.exit_code == 2 and "--background-rate" in refused.output
    assert len(served) == 1
