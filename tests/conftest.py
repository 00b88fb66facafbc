"""Shared fixtures: a real simulator on a free loopback port, and its credentials."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from bulk import Credentials
from bulk.simulator import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    SimConfig,
    Simulator,
    make_tickets,
    serve,
)

# Fast retries so fault tests take milliseconds, not seconds.
FAST = {"backoff_base": 0.001, "backoff_max": 0.01}


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
    ):
        monkeypatch.delenv(name, raising=False)


def write_csv(
    path: Path, rows: Iterable[Sequence[Any]], header: Sequence[str] = ("ticket_id", "status")
) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_report(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
