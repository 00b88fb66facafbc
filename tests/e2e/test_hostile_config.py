"""Hostile configuration, secrets and lifecycle: each class of hole, proved with the real CLI.

A planted .env, malformed credentials, job files that reach for secrets, text a
spreadsheet would run, and a scheduler's SIGTERM at the worst moment. Every
run goes to a simulator on loopback (or sends nothing at all).
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bulk import UsageError
from bulk._core._config import (
    DEFAULT_BASE_URL,
    Credentials,
    credentials_from_env,
    needs_confirmation,
    resolve_target,
)
from bulk._core._text import clean_text
from bulk.jobs import load_job
from bulk.simulator import (
    DEMO_CLIENT_ID,
    DEMO_NETWORK_ID,
    LOCATIONS,
    SimConfig,
    Simulator,
    SimulatorThread,
    make_tickets,
)

from ..support import (
    child_env,
    decline_at_terminal,
    demo_vars,
    read_report,
    start_bulk,
    wait_for,
    write_csv,
)
from ..support import run_bulk as bulk

SECRET = "Sup3r-s3cret-value-7f1c"


def basic_env(url: str | None = None, secret: str = SECRET) -> dict[str, str]:
    return demo_vars(url, secret)


@pytest.fixture
def sim() -> Simulator:
    return Simulator(SimConfig(rate=None, client_secret=SECRET), make_tickets(20, seed=3))


@pytest.fixture
def bystander() -> Iterator[tuple[Simulator, str]]:
    """A second server that a planted .env points at: it must never hear from bulk."""
    server = Simulator(SimConfig(rate=None, client_secret=SECRET), make_tickets(20, seed=3))
    with SimulatorThread(server) as thread:
        yield server, thread.base_url


def first_line(stderr: str) -> str:
    return stderr.splitlines()[0] if stderr else ""


# -- a .env file may not redirect credentials it does not hold ------------------------------


def test_planted_dotenv_base_url_is_ignored(
    tmp_path: Path, bystander: tuple[Simulator, str]
) -> None:
    planted, planted_url = bystander
    (tmp_path / ".env").write_text(f"SPACEBRING_BASE_URL={planted_url}\n")
    # Only an invalid row: the run resolves its target and writes a report, yet
    # has nothing to send, so no request can go to the production host either.
    path = write_csv(tmp_path / "in.csv", [("not-a-ticket", "closed")])
    out = bulk("run", str(path), env=basic_env())
    assert out.returncode == 1, out.stderr
    assert first_line(out.stderr) == (
        "bulk: sending to api.spacebring.com (https, Basic credentials from the environment)"
    )
    assert "ignoring SPACEBRING_BASE_URL in .env" in out.stderr
    assert planted_url not in out.stderr and SECRET not in out.stdout + out.stderr
    dry = bulk("run", str(path), "--dry-run", env=basic_env())
    assert first_line(dry.stderr).startswith(
        "bulk: dry run: nothing will be sent to api.spacebring.com"
    )
    assert planted.requests == []


def test_dotenv_with_its_own_credentials_is_honoured(
    tmp_path: Path, sim_thread: tuple[Simulator, str]
) -> None:
    server, url = sim_thread
    (tmp_path / ".env").write_text(
        f"SPACEBRING_CLIENT_ID={DEMO_CLIENT_ID}\nSPACEBRING_CLIENT_SECRET={SECRET}\n"
        f"SPACEBRING_BASE_URL={url}\n"
    )
    ids = list(server.tickets)[:3]
    out = bulk("run", str(write_csv(tmp_path / "in.csv", [(t, "closed") for t in ids])))
    assert out.returncode == 0, out.stderr
    host = url.removeprefix("http://")
    assert first_line(out.stderr) == f"bulk: sending to {host} (http, Basic credentials from .env)"
    assert sorted(server.sent_ids()) == sorted(ids)


@pytest.mark.parametrize(
    ("environment", "dotenv", "credentials", "expected", "warned"),
    [
        # the credentials from the environment, the URL from the file: the file is ignored
        ({"SPACEBRING_CLIENT_ID": "a", "SPACEBRING_CLIENT_SECRET": "b"}, "URL", None, None, True),
        # both from the file: the file's URL
        ({}, "ID SECRET URL", None, "https://other.example", False),
        # the environment's own URL is always trusted
        (
            {"SPACEBRING_CLIENT_ID": "a", "SPACEBRING_CLIENT_SECRET": "b"}
            | {"SPACEBRING_BASE_URL": "https://env.example"},
            "URL",
            None,
            "https://env.example",
            False,
        ),
        # half the pair from each: see tests/test_hostile_jobs.py (the .env pair is ignored)
        # credentials handed over by a library caller, URL from the file
        ({}, "URL", Credentials.basic("a", "b"), None, True),
        # a Bearer pair from the file with its URL
        ({}, "TOKEN NETWORK URL", None, "https://other.example", False),
    ],
)
def test_dotenv_base_url_rule(
    tmp_path: Path,
    environment: dict[str, str],
    dotenv: str,
    credentials: Credentials | None,
    expected: str | None,
    warned: bool,
) -> None:
    lines = {
        "ID": "SPACEBRING_CLIENT_ID=file-id",
        "SECRET": "SPACEBRING_CLIENT_SECRET=file-secret",
        "TOKEN": "SPACEBRING_ACCESS_TOKEN=file-token",
        "NETWORK": f"SPACEBRING_NETWORK_ID={DEMO_NETWORK_ID}",
        "URL": "SPACEBRING_BASE_URL=https://other.example",
    }
    path = tmp_path / "planted.env"
    path.write_text("\n".join(lines[k] for k in dotenv.split()) + "\n")
    target = resolve_target(None, credentials, env=environment, dotenv=path)
    assert target.base_url == (expected or DEFAULT_BASE_URL)
    assert bool(target.warnings) == warned
    assert all(str(path) in w for w in target.warnings)
    assert all("file-" not in w for w in target.warnings)  # no value is ever shown


# -- credentials that cannot be a header are refused, by name, before anything is sent ----


@pytest.mark.parametrize(
    ("variables", "dotenv", "named", "value"),
    [
        (
            {"SPACEBRING_ACCESS_TOKEN": "tok3n-part\r\nX-Evil: 1"}
            | {"SPACEBRING_NETWORK_ID": DEMO_NETWORK_ID},
            "",
            "SPACEBRING_ACCESS_TOKEN",
            "tok3n-part",
        ),
        # A NUL cannot pass through a process environment, but it can through .env.
        (
            {"SPACEBRING_CLIENT_ID": DEMO_CLIENT_ID},
            "SPACEBRING_CLIENT_SECRET=nul\x00-s3cret-tail\n",
            "SPACEBRING_CLIENT_SECRET",
            "s3cret-tail",
        ),
    ],
)
def test_malformed_credentials_exit_2_naming_the_variable(
    tmp_path: Path,
    sim_thread: tuple[Simulator, str],
    variables: dict[str, str],
    dotenv: str,
    named: str,
    value: str,
) -> None:
    server, url = sim_thread
    if dotenv:
        (tmp_path / ".env").write_bytes(dotenv.encode())
    path = write_csv(tmp_path / "in.csv", [(t, "closed") for t in list(server.tickets)[:3]])
    out = bulk("run", str(path), env={**variables, "SPACEBRING_BASE_URL": url})
    assert out.returncode == 2, out.stderr
    assert named in out.stderr and "Traceback" not in out.stderr
    assert value not in out.stdout + out.stderr
    assert server.requests == []


BASIC = {"SPACEBRING_CLIENT_ID": "id", "SPACEBRING_CLIENT_SECRET": "s"}


@pytest.mark.parametrize(
    ("variables", "named", "value"),
    [
        (BASIC | {"SPACEBRING_CLIENT_SECRET": "tab\tq1"}, "SPACEBRING_CLIENT_SECRET", "q1"),
        (BASIC | {"SPACEBRING_CLIENT_SECRET": "caf\u00e9-q2"}, "SPACEBRING_CLIENT_SECRET", "q2"),
        (BASIC | {"SPACEBRING_CLIENT_ID": "id:colon-q3"}, "SPACEBRING_CLIENT_ID", "q3"),
        (BASIC | {"SPACEBRING_CLIENT_SECRET": "x" * 9000}, "SPACEBRING_CLIENT_SECRET", "xxx"),
        (BASIC | {"SPACEBRING_NETWORK_ID": "not-a-uuid-q4"}, "SPACEBRING_NETWORK_ID", "q4"),
        (
            {"SPACEBRING_ACCESS_TOKEN": "t", "SPACEBRING_NETWORK_ID": "net-xyzzy-q5"},
            "SPACEBRING_NETWORK_ID",
            "q5",
        ),
    ],
)
def test_credential_shapes(
    tmp_path: Path, variables: dict[str, str], named: str, value: str
) -> None:
    with pytest.raises(UsageError) as caught:
        credentials_from_env(variables, dotenv=tmp_path / "none.env")
    assert named in str(caught.value) and value not in str(caught.value)


def test_base_url_with_userinfo_is_refused_unshown(
    tmp_path: Path, sim_thread: tuple[Simulator, str]
) -> None:
    server, url = sim_thread
    path = write_csv(tmp_path / "in.csv", [(next(iter(server.tickets)), "closed")])
    hidden = url.replace("http://", "http://someone:pa55-w0rd-9@")
    out = bulk("run", str(path), env=basic_env(hidden))
    assert out.returncode == 2 and "SPACEBRING_BASE_URL must not contain credentials" in out.stderr
    assert "pa55-w0rd-9" not in out.stdout + out.stderr
    assert server.requests == []


# -- job files may not reach for secrets, and never echo a variable's value -------------------

JOB = """name = "{name}"
[source]
kind = "file"
path = "{path}"
[action]
status = "{status}"
"""


@pytest.mark.parametrize(
    ("key", "fields", "command"),
    [
        ("name", {"name": "${SPACEBRING_CLIENT_SECRET}"}, "run"),
        ("action.status", {"status": "${SPACEBRING_CLIENT_SECRET}"}, "validate"),
        ("source.path", {"path": "${SPACEBRING_CLIENT_SECRET}.csv"}, "run"),
    ],
)
def test_job_may_not_use_credential_variables(
    tmp_path: Path,
    sim_thread: tuple[Simulator, str],
    key: str,
    fields: dict[str, str],
    command: str,
) -> None:
    server, url = sim_thread
    write_csv(tmp_path / "in.csv", [(next(iter(server.tickets)), "closed")])
    job = tmp_path / "leak.toml"
    job.write_text(JOB.format(**{"name": "leak", "path": "in.csv", "status": "closed", **fields}))
    out = bulk("job", command, str(job), env=basic_env(url))
    assert out.returncode == 2, out.stderr
    message = f"{job}: {key}: ${{SPACEBRING_CLIENT_SECRET}} is not allowed in a job file"
    assert message in out.stderr, out.stderr
    assert SECRET not in out.stdout + out.stderr
    assert not any(SECRET in str(p) for p in tmp_path.rglob("*"))
    assert server.requests == []


@pytest.mark.parametrize("variable", ["DEPLOY_TOKEN", "db_password", "AWS_SECRET_ACCESS_KEY"])
def test_job_may_not_use_secret_looking_variables(tmp_path: Path, variable: str) -> None:
    job = tmp_path / "leak.toml"
    job.write_text(JOB.format(name="leak", path="in.csv", status=f"${{{variable}}}"))
    with pytest.raises(UsageError, match=f"action.status: \\${{{variable}}} is not allowed"):
        load_job(job, {variable: SECRET})


def test_job_errors_name_the_variable_not_its_value(tmp_path: Path) -> None:
    job = tmp_path / "vars.toml"
    job.write_text(
        'name = "v"\n[source]\nkind = "api"\nlocations = ["${LOCATIONS}"]\n'
        '[action]\nstatus = "${TARGET}"\n'
    )
    env = {"LOCATIONS": f"{LOCATIONS[0]},internal-site-k9", "TARGET": "archived-zq"}
    out = bulk("job", "validate", str(job), env=env)
    assert out.returncode == 2, out.stderr
    assert "action.status: the value of ${TARGET} is not valid" in out.stderr
    assert "the value of ${LOCATIONS} is not valid" in out.stderr
    assert "archived-zq" not in out.stderr and "internal-site-k9" not in out.stderr
    assert "input_value" not in out.stderr


# -- every CSV bulk writes follows one neutralisation rule (the rule itself: unit/test_report.py)


def test_job_snapshot_input_and_report_are_neutralised(tmp_path: Path) -> None:
    tickets = make_tickets(6, seed=4, statuses=("new",))
    hostile = [" =1+1", "\t=cmd", "@SUM(1)"]
    for ticket, text in zip(tickets, hostile, strict=False):
        ticket["type"] = text
    tickets[0]["status"] = " =HYPERLINK(1)"
    server = Simulator(SimConfig(rate=None, client_secret=SECRET), tickets)
    job = tmp_path / "close.toml"
    job.write_text(
        f'name = "close"\n[source]\nkind = "api"\nlocations = ["{",".join(LOCATIONS)}"]\n'
        '[action]\nstatus = "closed"\n'
    )
    with SimulatorThread(server) as thread:
        out = bulk("job", "run", str(job), "--rate", "unlimited", env=basic_env(thread.base_url))
    assert out.returncode == 0, out.stderr
    folder = tmp_path / "reports" / "close"
    (snapshot,) = folder.glob("*.snapshot.csv")
    types = {r["id"]: r["type"] for r in read_report(snapshot)}
    # Server text is cleaned of controls first (the tab becomes nothing at the edge),
    # then neutralised: what remains starting with "=" is still prefixed.
    assert sorted(v for v in types.values() if v.startswith("'")) == sorted(
        "'" + clean_text(h) for h in hostile
    )
    (batch,) = folder.glob("*.input.csv")
    rows = {r["ticket_id"]: r for r in read_report(batch)}
    assert rows[tickets[0]["id"]]["current_status"] == "' =HYPERLINK(1)"
    assert len(rows) == 6  # every neutralised row was read back with its own id and target
    (report,) = (p for p in folder.glob("close-*.csv") if p.name.count(".") == 1)
    previous = {r["ticket_id"]: r["previous_status"] for r in read_report(report)}
    # A previous status that is no status at all is not believed, so not reported.
    assert previous[tickets[0]["id"]] == ""
    assert server.status_of(tickets[0]["id"]) == "closed"


# -- SIGTERM from a scheduler: a consistent journal, whenever it comes -----------------------

# Two chunks of planning (one check between them, one before settling duplicates);
# planning takes about a second here, writing the report half of one.
BIG = 60_000


@pytest.fixture(scope="module")
def big_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.csv"
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("ticket_id\n")
        handle.writelines(f"{i:08x}-0000-4000-8000-{i:012x}\n" for i in range(BIG))
    return path


def test_sigterm_while_planning_then_while_reporting(tmp_path: Path, big_input: Path) -> None:
    tickets = make_tickets(6, seed=5, statuses=("new",))
    for i, ticket in enumerate(tickets):
        ticket["id"] = f"{i:08x}-0000-4000-8000-{i:012x}"
    server = Simulator(SimConfig(rate=None, client_secret=SECRET), tickets)
    reports = tmp_path / "reports"
    args = ("run", str(big_input), "--status", "closed", "--limit", "3")
    with SimulatorThread(server) as thread:
        env = basic_env(thread.base_url)
        # 1. While the input is checked: the journal exists once planning begins.
        planning = start_bulk(*args, env=env)
        wait_for(lambda: (reports / "big.report.journal").exists(), planning, "journal")
        planning.send_signal(signal.SIGTERM)
        _, stderr = planning.communicate(timeout=60)
        assert planning.returncode == 130, stderr
        assert "interrupted while checking the input: nothing was sent" in stderr
        assert server.requests == []
        # 2. While the report is written (its temporary file exists): finished, then 130.
        reporting = start_bulk(*args, env=env)

        # Reports are written to a randomly named hidden file, then moved into place.
        def writing() -> bool:
            return any(reports.glob(".big.report.csv.*.tmp"))

        wait_for(writing, reporting, "report")
        reporting.send_signal(signal.SIGTERM)
        _, stderr = reporting.communicate(timeout=60)
        assert reporting.returncode == 130, stderr
        assert "finishing the report" in stderr
        report = read_report(reports / "big.report.csv")
        assert len(report) == BIG and [r["outcome"] for r in report[:3]] == ["updated"] * 3
        assert not writing()
        # 3. The next run resumes from that journal and succeeds.
        again = bulk(*args, env=env)
    assert again.returncode == 0, again.stderr
    assert f"resuming: 3 of {BIG} rows already final" in again.stderr
    assert len(server.sent_ids()) == 6


# -- a terminal asks before sending anywhere but the production API ---------------------------


@pytest.mark.parametrize(
    ("url", "rows", "asks"),
    [
        ("https://api.spacebring.com", 500, False),
        ("https://api.spacebring.com", 501, True),
        ("https://api.spacebring.com:443/v2", 1, False),
        ("https://staging.spacebring.com", 1, True),
        ("https://api.spacebring.com.evil.example", 1, True),
        ("https://0.0.0.0:8443", 1, True),
        ("http://127.0.0.1:8900", 100_000, False),
        ("http://localhost:8900", 100_000, False),
        ("http://[::1]:8900", 100_000, False),
    ],
)
def test_which_hosts_need_confirmation(url: str, rows: int, asks: bool) -> None:
    assert needs_confirmation(url, rows) is asks


@pytest.mark.parametrize(
    ("extra", "question"),
    [((), "change 1 tickets at"), (("--preview",), "read the batch's tickets from")],
)
def test_terminal_prompt_for_another_host_declined_sends_nothing(
    tmp_path: Path, sim_thread: tuple[Simulator, str], extra: tuple[str, ...], question: str
) -> None:
    # A preview only reads, but a read carries the credentials as a write does.
    server, _ = sim_thread
    # A non-default host that stays on this machine: Linux delivers 0.0.0.0 to
    # loopback, where this listener would count any connection bulk made.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[object] = []
    listener.settimeout(0.2)

    def count() -> None:
        while listener.fileno() != -1:
            try:
                accepted.append(listener.accept())
            except OSError:
                continue

    threading.Thread(target=count, daemon=True).start()
    path = write_csv(tmp_path / "in.csv", [(next(iter(server.tickets)), "closed")])
    env = child_env(basic_env(f"https://0.0.0.0:{port}") | {"COLUMNS": "200"})
    try:
        code, text = decline_at_terminal(["run", str(path), *extra], env, question)
    finally:
        listener.close()
    assert f"{question} 0.0.0.0:{port}, not api.spacebring.com?" in text
    assert code == 3, text
    assert "not confirmed" in text
    assert accepted == [] and server.requests == []


def test_dotenv_values_are_not_interpolated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME_SECRET", "from-the-environment")
    path = tmp_path / "x.env"
    path.write_text(
        "SPACEBRING_CLIENT_ID=file-id\nSPACEBRING_CLIENT_SECRET=file-secret\n"
        "SPACEBRING_BASE_URL=https://collector.example/${HOME_SECRET}\n"
    )
    target = resolve_target(None, dotenv=path)
    assert target.base_url == "https://collector.example/${HOME_SECRET}"


def test_a_bad_dotenv_line_is_named_once(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "SPACEBRING_CLIENT_ID=file-id\nnot a setting\nSPACEBRING_CLIENT_SECRET=file-secret\n"
    )
    source = write_csv(tmp_path / "in.csv", [("0b4e7f7c-2430-4a6d-970b-534d5e63af16",)], ("id",))
    out = bulk("run", str(source), "--status", "closed", "--dry-run", env={}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count(".env: line 2 not NAME=value; ignored") == 1
    assert "python-dotenv" not in out.stderr
