"""The ready jobs in jobs/ against the simulator, as cron would run them."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest

from bulk.simulator import SimConfig, Simulator, SimulatorThread, make_tickets

from ..support import JOBS, SAMPLES, demo_vars, read_report, run_bulk, start_bulk, wait_for


def sample_ids(name: str, column: str) -> list[tuple[str, ...]]:
    with open(SAMPLES / name, newline="", encoding="utf-8-sig") as handle:
        return [tuple(row.values()) for row in csv.DictReader(handle)]


def simulator_for(ids: list[str], **config: object) -> Simulator:
    tickets = make_tickets(len(ids), seed=5, statuses=("new", "inProgress", "solved"))
    for ticket, ticket_id in zip(tickets, ids, strict=True):
        ticket["id"] = ticket_id
    return Simulator(SimConfig(**{"rate": None, **config}), tickets)  # type: ignore[arg-type]


@pytest.fixture
def env() -> dict[str, str]:
    """The variables a test's `bulk` sees besides this process's own (see `child_env`)."""
    return demo_vars()


def bulk(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_bulk(*args, env=env, timeout=120)


def only_report(folder: Path, pattern: str = "*.csv") -> Path:
    found = [
        p for p in folder.glob(pattern) if not p.name.endswith((".snapshot.csv", ".input.csv"))
    ]
    assert len(found) == 1, found
    return found[0]


def test_mass_close_job(tmp_path: Path, env: dict[str, str]) -> None:
    ids = [row[0] for row in sample_ids("mass_close.csv", "ticket_id")]
    sim = simulator_for(ids)
    with SimulatorThread(sim) as server:
        env["SPACEBRING_BASE_URL"] = server.base_url
        out = bulk(env, "job", "run", str(JOBS / "mass_close.toml"), "--rate", "unlimited")
    assert out.returncode == 0, out.stderr
    assert all(sim.status_of(t) == "closed" for t in ids)
    report = only_report(tmp_path / "reports" / "mass-close")
    assert report.name.startswith("mass-close-") and len(read_report(report)) == len(ids)
    assert report.with_name(report.stem + ".run.json").is_file()


def test_status_migration_job_maps_legacy_values(tmp_path: Path, env: dict[str, str]) -> None:
    rows = sample_ids("migration.csv", "Ticket ID")
    legacy = {"Open": "new", "Working": "inProgress", "Resolved": "solved", "Archived": "closed"}
    sim = simulator_for([r[0] for r in rows])
    with SimulatorThread(sim) as server:
        env["SPACEBRING_BASE_URL"] = server.base_url
        out = bulk(env, "job", "run", str(JOBS / "status_migration.toml"), "--rate", "unlimited")
    assert out.returncode == 0, out.stderr
    for ticket_id, _target, old in rows:
        assert sim.status_of(ticket_id) == legacy[old]


def test_unmapped_legacy_value_is_invalid_never_guessed(
    tmp_path: Path, env: dict[str, str]
) -> None:
    ids = [r[0] for r in sample_ids("mass_close.csv", "ticket_id")][:3]
    data = tmp_path / "export.csv"
    data.write_text(f"id,old\n{ids[0]},Resolved\n{ids[1]},Spam\n{ids[2]},resolved\n")
    job = tmp_path / "migrate.toml"
    job.write_text(
        'name = "m"\n[source]\nkind = "file"\npath = "export.csv"\nstatus_column = "old"\n'
        '[action.map]\n"Resolved" = "solved"\n"Archived" = "closed"\n'
    )
    sim = simulator_for(ids)
    with SimulatorThread(sim) as server:
        env["SPACEBRING_BASE_URL"] = server.base_url
        out = bulk(env, "job", "run", str(job), "--rate", "unlimited")
    assert out.returncode == 1
    report = read_report(only_report(tmp_path / "reports" / "m"))
    assert [r["outcome"] for r in report] == ["updated", "invalid", "unchanged"]  # 3rd was solved
    assert "no mapping for 'Spam'" in report[1]["error"]
    # Which were sent, not in which order: two workers race to the server.
    assert sorted(sim.sent_ids()) == sorted([ids[0], ids[2]])


def test_same_job_twice_at_once_one_waits_out(tmp_path: Path, env: dict[str, str]) -> None:
    ids = [row[0] for row in sample_ids("mass_close.csv", "ticket_id")]
    sim = simulator_for(ids)
    with SimulatorThread(sim) as server:
        env["SPACEBRING_BASE_URL"] = server.base_url
        first = start_bulk("job", "run", str(JOBS / "mass_close.toml"), "--rate", "40", env=env)
        try:
            wait_for(lambda: sim.requests, first, "a request", timeout=30)
            second = bulk(env, "job", "run", str(JOBS / "mass_close.toml"))
        finally:
            first.communicate(timeout=60)
    assert second.returncode == 75
    assert "already running" in second.stderr and "pid" in second.stderr
    assert first.returncode == 0
    assert len(sim.sent_ids()) == len(ids)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'name = "x"\n[source]\nkind = "file"\npath = "a.csv"\n[action]\nstatus = "closed"\n'
            "[run]\nratee = 5\n",
            "run.ratee: Extra inputs are not permitted",
        ),
        (
            'name = "x"\n[source]\nkind = "file"\npath = "a.csv"\n[action]\nstatus = "closed"\n'
            '[run]\nrate = "fast"\n',
            "run.rate",
        ),
        ('name = "x"\n[action]\nstatus = "closed"\n', "source: Field required"),
        ('name = "x"\n[source]\nkind = "ftp"\n[action]\nstatus = "closed"\n', "source"),
        (
            'name = "x"\n[source]\nkind = "file"\npath = "a.csv"\n[action]\nstatus = "done"\n',
            "action.status: Value error, unknown status 'done'",
        ),
        (
            'name = "x"\n[source]\nkind = "api"\nlocations = ["nope"]\n[action]\nstatus = "closed"\n',
            "source.api.locations",
        ),
        ("name = \n", "not valid TOML"),
    ],
)
def test_bad_job_files_name_the_key(
    tmp_path: Path, env: dict[str, str], text: str, message: str
) -> None:
    job = tmp_path / "bad.toml"
    job.write_text(text)
    for command in ("validate", "run"):
        out = bulk(env, "job", command, str(job))
        assert out.returncode == 2, out.stderr
        assert str(job) in out.stderr and message in out.stderr, out.stderr
        assert "Traceback" not in out.stderr


def test_a_listing_that_fails_stops_the_job_with_exit_3(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """A server answering 5xx to every page: exit 3 (stopped, nothing sent), not 1, which
    says a batch finished with failed rows (review)."""
    from bulk.simulator import LOCATIONS

    sim = Simulator(SimConfig(rate=None, error_rate=1.0), make_tickets(50, seed=21))
    with SimulatorThread(sim) as server:
        env["SPACEBRING_BASE_URL"] = server.base_url
        env["LOCATIONS"] = ",".join(LOCATIONS)
        job = tmp_path / "nightly.toml"
        job.write_text(
            'name = "n"\n[source]\nkind = "api"\nlocations = ["${LOCATIONS}"]\n'
            '[action]\nstatus = "closed"\n[run]\nmax_attempts = 1\n'
        )
        out = bulk(env, "job", "run", str(job), "--rate", "unlimited")
    assert out.returncode == 3, out.stderr
    assert "listing failed: HTTP 5" in out.stderr and "nothing sent" in out.stderr
    assert "Traceback" not in out.stderr
    assert not sim.sent_ids("PUT")


def test_nightly_cleanup_job_closes_exactly_the_selected(
    tmp_path: Path, env: dict[str, str]
) -> None:
    from datetime import UTC, datetime, timedelta

    from bulk.simulator import LOCATIONS

    sim = Simulator(SimConfig(rate=None), make_tickets(900, seed=21))
    before = {t: dict(v) for t, v in sim.tickets.items()}
    cutoff = datetime.now(UTC) - timedelta(days=14)

    def old(ticket: dict[str, str]) -> bool:
        return datetime.fromisoformat(ticket["statusUpdateDate"].replace("Z", "+00:00")) < cutoff

    chosen = {t for t, v in before.items() if v["status"] == "solved" and old(v)}
    assert 50 < len(chosen) < len(before) / 3
    assert {v["locationRef"] for v in before.values()} == set(LOCATIONS)
    with SimulatorThread(sim) as server:
        env["SPACEBRING_BASE_URL"] = server.base_url
        env["LOCATIONS"] = ",".join(LOCATIONS)
        job = str(JOBS / "nightly_cleanup.toml")
        preview = bulk(env, "job", "run", job, "--dry-run", "--rate", "unlimited")
        assert preview.returncode == 0, preview.stderr
        assert not sim.sent_ids("PUT")
        out = bulk(env, "job", "run", job, "--rate", "unlimited")
        assert out.returncode == 0, out.stderr
        again = bulk(env, "job", "run", job, "--rate", "unlimited")
    assert again.returncode == 0 and "nothing selected" in again.stdout
    assert f"{len(chosen)} to change" in out.stderr
    for ticket_id, ticket in before.items():
        expected = "closed" if ticket_id in chosen else ticket["status"]
        assert sim.status_of(ticket_id) == expected
    assert sorted(sim.sent_ids("PUT")) == sorted(chosen)
    folder = tmp_path / "reports" / "nightly-cleanup"
    assert len(list(folder.glob("*.snapshot.csv"))) == 3  # dry run, run, run that found nothing
    report_path = only_report(folder, "nightly-cleanup-*Z.csv")
    snapshot = read_report(report_path.with_name(report_path.stem + ".snapshot.csv"))
    assert len(snapshot) == len(before)
    assert {r["id"] for r in snapshot if r["selected"] == "1"} == chosen
    report = read_report(report_path)
    assert {r["ticket_id"] for r in report} == chosen
    assert {r["outcome"] for r in report} == {"updated"}
    assert {r["previous_status"] for r in report} == {"solved"}


def test_a_jobs_one_status_is_named_as_the_job_file_names_it(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """The warning about the input's unread columns names the job's key, not a CLI option."""
    ids = [row[0] for row in sample_ids("mass_close.csv", "ticket_id")][:3]
    with open(tmp_path / "a.csv", "w", encoding="utf-8") as handle:
        handle.write("ticket_id,type\n" + "".join(f"{t},cleaning\n" for t in ids))
    job = tmp_path / "j.toml"
    job.write_text(
        'name = "x"\n[source]\nkind = "file"\npath = "a.csv"\n[action]\nstatus = "closed"\n'
    )
    out = bulk(env, "job", "run", str(job), "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "column(s) 'type' not used: [action] status gives every row's change" in out.stderr
    assert "--status" not in out.stderr
