"""Shared fixtures: a real simulator on a free loopback port, and its credentials.

`sim` is the simulator a test talks to: `server` serves it on this test's event
loop (for the library in process), `sim_thread` from a thread of its own (for
a `bulk` child process). A module that needs other tickets or settings
overrides `tickets` or `sim`. Helpers that are not fixtures are in support.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bulk import Credentials
from bulk.journal import Journal
from bulk.simulator import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    SimConfig,
    Simulator,
    SimulatorThread,
    make_tickets,
    serve,
)


@pytest.fixture
def creds() -> Credentials:
    return Credentials.basic(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)


@pytest.fixture
def tickets() -> list[dict[str, Any]]:
    return make_tickets(300, seed=1, statuses=("new", "inProgress", "solved"))


@pytest.fixture
def sim(tickets: list[dict[str, Any]]) -> Simulator:
    return Simulator(SimConfig(rate=None, seed=1), tickets)


@pytest.fixture
async def server(sim: Simulator) -> AsyncIterator[str]:
    async with serve(sim) as url:
        yield url


@pytest.fixture
def sim_thread(sim: Simulator) -> Iterator[tuple[Simulator, str]]:
    with SimulatorThread(sim) as thread:
        yield sim, thread.base_url


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    """An open journal in this test's folder, closed (its writer flushed) at the end."""
    opened = Journal(tmp_path / "run.journal")
    yield opened
    opened.close()


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Reports default to ./reports; keep every test's files in its own folder,
    # and keep a developer's real credentials out of the tests.
    monkeypatch.chdir(tmp_path)
    for name in (
        "SPACEBRING_CLIENT_ID",
        "SPACEBRING_CLIENT_SECRET",
        "SPACEBRING_ACCESS_TOKEN",
        "SPACEBRING_NETWORK_ID",
        "SPACEBRING_BASE_URL",
        "SPACEBRING_REFRESH_TOKEN",
        "SPACEBRING_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
