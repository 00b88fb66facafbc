"""One send budget per run: a job's listing pages and its changes share one controller."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulk import Credentials, execute
from bulk.jobs import load_job, prepare_job
from bulk.simulator import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    LOCATIONS,
    SimConfig,
    Simulator,
    make_tickets,
    serve,
)


async def test_a_jobs_listing_and_its_changes_take_slots_from_one_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 40/s limit the job's --rate 100 knows nothing of.
    sim = Simulator(SimConfig(rate=40, burst=4), make_tickets(150, seed=21))
    solved = sum(t["status"] == "solved" for t in sim.tickets.values())
    job_file = tmp_path / "close.toml"
    job_file.write_text(
        'name = "close-solved"\n[source]\nkind = "api"\n'
        f'locations = {list(LOCATIONS)!r}\npage_size = 10\norder = "createDate:asc"\n'
        '[select]\nstatus = ["solved"]\n[action]\nstatus = "closed"\n[run]\nrate = 100\n'
    )
    monkeypatch.chdir(tmp_path)
    async with serve(sim) as base_url:
        monkeypatch.setenv("SPACEBRING_BASE_URL", base_url)
        monkeypatch.setenv("SPACEBRING_CLIENT_ID", DEMO_CLIENT_ID)
        monkeypatch.setenv("SPACEBRING_CLIENT_SECRET", DEMO_CLIENT_SECRET)
        job = load_job(job_file, {})
        prepared = await prepare_job(job, dry_run=False)
        budget = prepared.controller
        assert budget is not None and prepared.input is not None
        learnt = budget.rate
        summary = await execute(
            prepared.input,
            prepared.options,
            credentials=Credentials.basic(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET),
            input_sha256=prepared.input_sha256,
            controller=budget,
        )
    gets = [r for r in sim.requests if r.method == "GET"]
    puts = [r for r in sim.requests if r.method == "PUT"]
    assert summary.exit_code == 0 and len(puts) >= solved
    # Every page and every change took its slot from the same controller ...
    assert budget.sent == len(gets) + len(puts)
    # ... so the changes began at the pace the listing had learnt, not at --rate 100.
    assert budget.throttle_events >= 1 and learnt is not None and learnt < 80
