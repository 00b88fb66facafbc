"""Runs that go wrong end quickly: credentials revoked, wholesale failure, deadline, limit."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest

from bulk import Credentials, RunOptions, execute
from bulk.simulator import SimConfig, Simulator, make_tickets, serve

from ..support import FAST, read_report, write_csv


def rows(sim: Simulator, n: int, status: str = "closed") -> list[tuple[str, str]]:
    return [(t, status) for t in list(sim.tickets)[:n]]


async def test_revoked_credentials_mid_run_stop_within_concurrency(
    tmp_path: Path, creds: Credentials
) -> None:
    sim = Simulator(SimConfig(rate=None, latency=0.005), make_tickets(400, seed=2))
    concurrency = 6
    path = write_csv(tmp_path / "in.csv", rows(sim, 400))
    async with serve(sim) as url:

        async def revoke_after_100() -> None:
            with anyio.fail_after(30):
                while len(sim.requests) < 100:  # noqa: ASYNC110 - polling another task's log
                    await anyio.sleep(0.001)
            sim.config.client_secret = "rotated"

        async with anyio.create_task_group() as tg:
            tg.start_soon(revoke_after_100)
            summary = await execute(
                path,
                RunOptions(base_url=url, rate=None, concurrency=concurrency),
                credentials=creds,
            )
        assert summary.exit_code == 3
        statuses = [r.status for r in sim.requests]
        first_401 = statuses.index(401)
        assert len(statuses) - first_401 <= concurrency
        report = read_report(summary.report)
        skipped = [r for r in report if r["outcome"] == "skipped"]
        assert len(skipped) >= 400 - len(statuses)
        assert all("credentials rejected" in r["error"] for r in skipped)
        # Fixing the credentials and rerunning sends exactly the rest.
        sim.config.client_secret = "fixed"
        fixed = Credentials.basic(sim.config.client_id, "fixed")
        again = await execute(path, RunOptions(base_url=url, rate=None), credentials=fixed)
    assert again.exit_code == 0
    assert set(sim.sent_ids()) == set(sim.tickets)


async def test_wholesale_failure_stops_the_run(tmp_path: Path, creds: Credentials) -> None:
    sim = Simulator(SimConfig(rate=None, error_rate=1.0, seed=1), make_tickets(300, seed=2))
    async with serve(sim) as url:
        summary = await execute(
            write_csv(tmp_path / "in.csv", rows(sim, 300)),
            RunOptions(base_url=url, rate=None, concurrency=4, max_attempts=2, **FAST),
            credentials=creds,
        )
    assert summary.exit_code == 3
    assert "--max-failure-rate" in (summary.stop_reason or "")
    outcomes = [r["outcome"] for r in read_report(summary.report)]
    assert 20 <= outcomes.count("failed") <= 20 + 4
    assert outcomes.count("skipped") == 300 - outcomes.count("failed")


async def test_limit_sends_a_canary_then_resumes(
    tmp_path: Path, server: str, sim: Simulator, creds: Credentials
) -> None:
    path = write_csv(tmp_path / "in.csv", [("bad", "closed"), *rows(sim, 50)])
    summary = await execute(
        path, RunOptions(base_url=server, rate=None, limit=10), credentials=creds
    )
    assert len(sim.requests) == 10
    report = read_report(summary.report)
    assert [r["outcome"] for r in report[1:11]] == ["updated"] * 10
    assert {r["error"] for r in report[11:]} == {"not sent: --limit 10"}
    assert summary.exit_code == 1  # the invalid row; the held-back rows do not count
    rest = await execute(path, RunOptions(base_url=server, rate=None), credentials=creds)
    assert len(sim.requests) == 50 and len(set(sim.sent_ids())) == 50
    assert rest.already_final == 11


async def test_deadline_stops_taking_rows(
    tmp_path: Path, server: str, sim: Simulator, creds: Credentials
) -> None:
    summary = await execute(
        write_csv(tmp_path / "in.csv", rows(sim, 200)),
        RunOptions(base_url=server, rate=40.0, deadline=0.5),
        credentials=creds,
    )
    assert summary.exit_code == 3
    assert "deadline" in (summary.stop_reason or "")
    sent = len(sim.requests)
    assert 10 <= sent <= 30
    report = read_report(summary.report)
    assert sum(r["outcome"] == "skipped" for r in report) == 200 - sent


async def test_automatic_concurrency_follows_latency(tmp_path: Path, creds: Credentials) -> None:
    sim = Simulator(SimConfig(rate=None, latency=0.05), make_tickets(150, seed=4))
    async with serve(sim) as url:
        summary = await execute(
            write_csv(tmp_path / "in.csv", rows(sim, 150)),
            RunOptions(base_url=url, rate=200.0, concurrency=None),
            credentials=creds,
        )
    # Little's law: 200/s x 0.05 s = 10 in flight; with headroom, well above the first 8
    assert summary.concurrency is not None and 12 <= summary.concurrency <= 30
    assert summary.exit_code == 0


def test_no_confirmation_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import click

    from bulk.cli import _common as cli

    asked: list[str] = []

    def decline(text: str, **_: object) -> bool:
        asked.append(text)
        return False

    monkeypatch.setattr(click, "confirm", decline)
    confirm = cli._confirmer(yes=False)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    assert confirm(10_000, "https://api.spacebring.com") is True
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    assert confirm(100, "https://api.spacebring.com") is True  # small batch
    assert confirm(10_000, "http://127.0.0.1:8900") is True  # the simulator
    assert confirm(10_000, "https://api.spacebring.com") is False
    assert asked and "10000" in asked[0]
    assert cli._confirmer(yes=True)(10_000, "https://api.spacebring.com") is True
