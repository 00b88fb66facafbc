"""Whole batches against the simulator over loopback: outcomes, retries, report, exit codes."""

from __future__ import annotations

import bisect
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from bulk import Credentials, RunOptions, execute, run_async
from bulk.simulator import SimConfig, Simulator, make_tickets, serve

from ..support import FAST, SAMPLES, Backoff, read_report, write_csv

UNKNOWN = "0badc0de-0000-4000-8000-000000000000"


def ids_of(tickets: list[dict[str, Any]]) -> list[str]:
    return [t["id"] for t in tickets]


async def test_every_row_once_in_input_order(
    tmp_path: Path, sim: Simulator, server: str, creds: Credentials, tickets: list[dict[str, Any]]
) -> None:
    ids = ids_of(tickets)
    statuses = ["closed", "solved", "inProgress"]
    rows = [(t, statuses[i % 3]) for i, t in enumerate(ids)]
    path = write_csv(tmp_path / "in.csv", rows)
    report = await run_async(path, base_url=server, rate=None, concurrency=16, credentials=creds)
    assert list(report["row"]) == list(range(1, len(ids) + 1))
    assert list(report["ticket_id"]) == ids
    assert set(report["outcome"]) <= {"updated", "unchanged"}
    for ticket_id, status in rows:
        assert sim.status_of(ticket_id) == status
    # each ticket was sent exactly once
    assert Counter(sim.sent_ids()) == Counter(ids)
    # previous_status comes from the API's answer
    first = tickets[0]
    assert report["previous_status"][0] == first["status"]
    assert report.attrs["summary"].exit_code == 0


async def test_unchanged_rows(
    tmp_path: Path, server: str, creds: Credentials, sim: Simulator
) -> None:
    ticket_id = next(iter(sim.tickets))
    status = sim.status_of(ticket_id)
    report = await run_async(
        write_csv(tmp_path / "in.csv", [(ticket_id, status)]), base_url=server, credentials=creds
    )
    assert report["outcome"][0] == "unchanged"
    assert report["previous_status"][0] == status


@pytest.mark.parametrize(
    "faults",
    [
        {"error_rate": 0.3},
        {"drop_rate": 0.3},
        {"rate": 100.0, "burst": 2, "client_rate": 300.0},  # too fast a client sees 429s
        {"rate": 100.0, "burst": 2, "client_rate": 300.0, "retry_after": True},
    ],
)
async def test_retried_faults_end_updated(
    tmp_path: Path, creds: Credentials, faults: dict[str, Any]
) -> None:
    tickets = make_tickets(60, seed=3, statuses=("new",))
    client_rate = faults.pop("client_rate", None)
    sim = Simulator(SimConfig(seed=5, **{"rate": None, **faults}), tickets)
    async with serve(sim) as url:
        summary = await execute(
            write_csv(tmp_path / "in.csv", [(t, "closed") for t in ids_of(tickets)]),
            # 429 needs real backoff (the server refills at its own pace); others retry at once
            RunOptions(
                base_url=url,
                rate=client_rate,
                concurrency=8,
                max_attempts=30,
                **(Backoff(backoff_base=0.02, backoff_max=0.3) if "burst" in faults else FAST),
            ),
            credentials=creds,
        )
    report = read_report(summary.report)
    assert {r["outcome"] for r in report} == {"updated"}, Counter(r["error"] for r in report)
    assert all(sim.status_of(t) == "closed" for t in ids_of(tickets))
    assert summary.retries > 0
    assert summary.exit_code == 0
    answered = Counter(r.status for r in sim.requests)
    if "error_rate" in faults:
        assert answered[500] + answered[502] + answered[503] > 0
    elif "drop_rate" in faults:
        assert answered[0] > 0
    else:
        assert answered[429] > 0


async def test_fatal_answers_fail_after_one_attempt(
    tmp_path: Path, server: str, creds: Credentials, sim: Simulator
) -> None:
    known = next(iter(sim.tickets))
    path = write_csv(tmp_path / "in.csv", [(UNKNOWN, "closed"), (known, "closed")])
    summary = await execute(path, RunOptions(base_url=server, **FAST), credentials=creds)
    report = read_report(summary.report)
    assert report[0]["outcome"] == "failed"
    assert report[0]["attempts"] == "1"
    assert report[0]["http_status"] == "404"
    assert "not found" in report[0]["error"].lower() and UNKNOWN in report[0]["error"]
    assert report[1]["outcome"] == "updated"
    assert summary.exit_code == 1


async def test_invalid_rows_never_reach_the_server(
    tmp_path: Path, server: str, creds: Credentials, sim: Simulator
) -> None:
    messy = SAMPLES / "messy.csv"
    summary = await execute(messy, RunOptions(base_url=server, **FAST), credentials=creds)
    report = read_report(summary.report)
    sent = Counter(sim.sent_ids())
    for row in report:
        if row["outcome"] in ("invalid", "skipped"):
            assert row["attempts"] == "0"
    # every request that was made is for a valid, first-occurrence row
    valid = {r["ticket_id"].lower() for r in report if r["outcome"] not in ("invalid", "skipped")}
    assert set(sent) == valid
    assert all(n == 1 for n in sent.values())
    assert not any(".." in r.path for r in sim.requests)
    assert summary.exit_code == 1


async def test_dry_run_sends_nothing(tmp_path: Path, server: str, sim: Simulator) -> None:
    ids = list(sim.tickets)[:20]
    summary = await execute(
        write_csv(tmp_path / "in.csv", [(t, "closed") for t in ids]),
        RunOptions(base_url=server, dry_run=True),
    )
    assert sim.requests == []
    report = read_report(summary.report)
    assert {(r["outcome"], r["error"]) for r in report} == {("skipped", "dry run")}
    assert summary.exit_code == 0
    assert not summary.report.with_name("in.dry-run.journal").exists()


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
async def test_report_formats(
    tmp_path: Path, server: str, creds: Credentials, sim: Simulator, suffix: str
) -> None:
    ids = list(sim.tickets)[:5]
    path = write_csv(tmp_path / "in.csv", [(t, "closed") for t in ids] + [("nope", "closed")])
    out = tmp_path / f"out{suffix}"
    await execute(path, RunOptions(base_url=server, report=out), credentials=creds)
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        frame = pd.DataFrame(rows)
    else:
        frame = pq.read_table(out).to_pandas()
    assert list(frame["row"]) == [1, 2, 3, 4, 5, 6]
    assert list(frame["outcome"]) == ["updated"] * 5 + ["invalid"]
    assert frame["activity_id"].notna().sum() == 5


async def test_formula_text_is_neutralised_in_csv(
    tmp_path: Path, server: str, creds: Credentials
) -> None:
    path = write_csv(tmp_path / "in.csv", [("=cmd|' /C calc'!A0", "closed"), ("@SUM(1)", "+1")])
    summary = await execute(path, RunOptions(base_url=server), credentials=creds)
    text = summary.report.read_text()
    for line in text.splitlines()[1:]:
        for cell in line.split(","):
            assert not cell.lstrip('"').startswith(("=", "+", "@", "-"))


async def test_credentials_rejected_stops_the_run(
    tmp_path: Path, server: str, sim: Simulator
) -> None:
    wrong = Credentials.basic("demo-client", "not-the-secret")
    ids = list(sim.tickets)[:100]
    summary = await execute(
        write_csv(tmp_path / "in.csv", [(t, "closed") for t in ids]),
        RunOptions(base_url=server, rate=None, concurrency=4),
        credentials=wrong,
    )
    assert summary.exit_code == 3
    assert len(sim.requests) <= 4  # at most the requests already in flight
    report = read_report(summary.report)
    assert {r["outcome"] for r in report} == {"skipped"}
    assert all("credentials rejected" in r["error"] for r in report)
    assert "not-the-secret" not in summary.report.read_text()


async def test_pacing_keeps_to_rate(
    tmp_path: Path, server: str, creds: Credentials, sim: Simulator
) -> None:
    ids = list(sim.tickets)[:240]
    path = write_csv(tmp_path / "in.csv", [(t, "closed") for t in ids])
    began = time.monotonic()
    summary = await execute(
        path, RunOptions(base_url=server, rate=200.0, concurrency=8), credentials=creds
    )
    arrivals = [r.at for r in sim.requests]
    assert len(arrivals) == len(ids), summary.lines()
    # Only what load cannot fake: never faster than the rate, on the wire and in
    # total. (Even spacing and no initial burst are proved on a fake clock in
    # tests/unit/test_pacing.py; a loaded machine may stall any sender.)
    assert time.monotonic() - began >= (len(ids) - 1) / 200.0
    busiest = max(bisect.bisect_left(arrivals, at + 1.0) - i for i, at in enumerate(arrivals))
    assert busiest <= 200 + 2, busiest  # +2: the server's own clock jitter


def test_sync_run_inside_a_running_loop(creds: Credentials) -> None:
    """A notebook cell calls the blocking `bulk.run` while the notebook's loop is running."""
    import asyncio

    import bulk
    from bulk.simulator import SimulatorThread

    sim = Simulator(SimConfig(rate=None), make_tickets(5, seed=8, statuses=("new",)))
    with SimulatorThread(sim) as server:

        async def cell() -> pd.DataFrame:
            asyncio.get_running_loop()  # as in Jupyter: a loop is running in this thread
            return bulk.run(
                pd.DataFrame({"ticket_id": list(sim.tickets)}),
                status="closed",
                base_url=server.base_url,
                credentials=creds,
            )

        report = asyncio.run(cell())
    assert list(report["outcome"]) == ["updated"] * 5
    assert report.attrs["summary"].exit_code == 0
