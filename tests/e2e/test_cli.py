"""The command line as a user runs it: a real `bulk` process against a simulator thread."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulk.simulator import DEMO_CLIENT_ID, SimConfig, Simulator, make_tickets

from ..support import demo_vars, read_report, write_csv
from ..support import run_bulk as bulk

SECRET = "s3cr3t-Value-that-must-never-print"


@pytest.fixture
def sim() -> Simulator:
    return Simulator(SimConfig(rate=None, client_secret=SECRET), make_tickets(50, seed=9))


def creds(url: str, secret: str = SECRET) -> dict[str, str]:
    return demo_vars(url, secret)


def test_run_ok_then_rows_failed(tmp_path: Path, sim_thread: tuple[Simulator, str]) -> None:
    sim, url = sim_thread
    ids = list(sim.tickets)[:10]
    ok = bulk(
        "run", str(write_csv(tmp_path / "a.csv", [(t, "closed") for t in ids])), env=creds(url)
    )
    assert ok.returncode == 0, ok.stderr
    assert "updated" in ok.stdout and "report:" in ok.stdout
    assert len(read_report(tmp_path / "reports" / "a.report.csv")) == 10
    bad = write_csv(tmp_path / "b.csv", [(ids[0], "closed"), ("nope", "closed")])
    out = bulk("run", str(bad), "--rate", "unlimited", env=creds(url))
    assert out.returncode == 1


def test_stdin_and_status_option(tmp_path: Path, sim_thread: tuple[Simulator, str]) -> None:
    sim, url = sim_thread
    ids = list(sim.tickets)[:5]
    out = bulk("run", "-", "--status", "In Progress", env=creds(url), stdin="id\n" + "\n".join(ids))
    assert out.returncode == 0, out.stderr
    assert all(sim.status_of(t) == "inProgress" for t in ids)
    assert len(read_report(tmp_path / "reports" / "stdin.report.csv")) == 5
    # Errors name standard input, not the file it was spooled to.
    empty = bulk("run", "-", "--status", "closed", "--dry-run", env=creds(url), stdin="")
    assert empty.returncode == 2
    assert "bulk: error: standard input: the file is empty" in empty.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "missing.csv"], "missing.csv: no such file"),
        (["run", "in.csv", "--status", "archived"], "unknown status 'archived'"),
        (["run", "in.csv", "--report", "out.xml"], "unknown format"),
        (["run", "in.csv", "--base-url", "http://example.com"], "refusing plain http"),
        (["run", "empty.csv"], "empty.csv: the file is empty"),
        (["run", "in.csv", "--timeout", "inf"], "--timeout must be a positive number"),
        (["run", "in.csv", "--timeout", "nan"], "--timeout must be a positive number"),
        (["run", "in.csv", "--timeout", "601"], "at most 600"),
        (["run", "in.csv", "--rate", "1e-9"], "at least 0.01 requests a second"),
        (["run", "in.csv", "--status", "closed", "--status-column", "s"], "give one"),
        (["run", "in.csv", "--base-url", "http://127.0.0.1:99999"], "port that is not a number"),
        (["run", "in.csv", "--base-url", "http://[::1]:x/"], "port that is not a number"),
    ],
)
def test_usage_errors_exit_2_without_traceback(
    tmp_path: Path, sim_thread: tuple[Simulator, str], args: list[str], message: str
) -> None:
    sim, url = sim_thread
    write_csv(tmp_path / "in.csv", [(next(iter(sim.tickets)), "closed")])
    (tmp_path / "empty.csv").write_text("")
    out = bulk(*args, env=creds(url))
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert sim.requests == []


def test_missing_credentials_exit_2(tmp_path: Path, sim_thread: tuple[Simulator, str]) -> None:
    sim, url = sim_thread
    path = write_csv(tmp_path / "in.csv", [(next(iter(sim.tickets)), "closed")])
    out = bulk("run", str(path), env={"SPACEBRING_BASE_URL": url})
    assert out.returncode == 2 and "no credentials" in out.stderr
    assert sim.requests == []


def test_credentials_never_printed(tmp_path: Path, sim_thread: tuple[Simulator, str]) -> None:
    sim, url = sim_thread
    ids = list(sim.tickets)[:20]
    path = write_csv(tmp_path / "in.csv", [(t, "closed") for t in ids] + [("bad", "closed")])
    wrong = "wr0ng-" + SECRET
    outputs = []
    for secret in (SECRET, wrong):
        out = bulk("-vv", "run", str(path), "--fresh", env=creds(url, secret))
        outputs.append(out.stdout + out.stderr)
    assert "credentials rejected" in outputs[1]
    written = [p.read_bytes() for p in (tmp_path / "reports").iterdir() if p.is_file()]
    for blob in [o.encode() for o in outputs] + written:
        assert SECRET.encode() not in blob
        assert b"czNjcjN0" not in blob  # nor its base64 (in the Basic header)


def test_dotenv_supplies_credentials(tmp_path: Path, sim_thread: tuple[Simulator, str]) -> None:
    sim, url = sim_thread
    (tmp_path / ".env").write_text(
        f"SPACEBRING_CLIENT_ID={DEMO_CLIENT_ID}\nSPACEBRING_CLIENT_SECRET={SECRET}\n"
    )
    path = write_csv(tmp_path / "in.csv", [(next(iter(sim.tickets)), "solved")])
    out = bulk("run", str(path), env={"SPACEBRING_BASE_URL": url})
    assert out.returncode == 0, out.stderr


def test_dry_run_prints_plan(tmp_path: Path, sim_thread: tuple[Simulator, str]) -> None:
    sim, url = sim_thread
    ids = list(sim.tickets)[:30]
    path = write_csv(tmp_path / "in.csv", [(t, "closed") for t in ids])
    out = bulk("run", str(path), "--dry-run", env={"SPACEBRING_BASE_URL": url})
    assert out.returncode == 0, out.stderr
    assert "would send 30 requests" in out.stderr and "about 3s at 10/s" in out.stderr
    assert sim.requests == []


def test_version_and_help() -> None:
    assert bulk("--version").stdout.startswith("bulk, version")
    assert "run" in bulk("--help").stdout


def test_simulate_on_a_port_in_use_says_so(sim_thread: tuple[Simulator, str]) -> None:
    _sim, url = sim_thread
    out = bulk("simulate", "--port", url.rsplit(":", 1)[1], "--tickets", "3")
    assert out.returncode == 2
    assert "cannot listen on 127.0.0.1 port" in out.stderr and "--port" in out.stderr
    assert "Traceback" not in out.stderr
