"""OAuth that outlives the hour: tokens fetched and renewed by bulk, against the simulator.

Lifetimes here are a second or two (the simulator's tokens expire on its clock), so a run
of a few seconds sees several refreshes; nothing asserts timings.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from bulk import Credentials, RunOptions, UsageError, execute
from bulk._core._config import credentials_from_env, resolve_target, save_refresh_token
from bulk.batch import rate_controller
from bulk.send import TicketClient
from bulk.simulator import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_NETWORK_ID,
    DEMO_REFRESH_TOKEN,
    SimConfig,
    Simulator,
    SimulatorThread,
    make_tickets,
    serve,
)

from ..support import FAST, read_report, run_bulk, write_csv


def oauth_vars(
    token_file: Path | None, refresh_token: str | None = DEMO_REFRESH_TOKEN
) -> dict[str, str]:
    variables = {
        "SPACEBRING_CLIENT_ID": DEMO_CLIENT_ID,
        "SPACEBRING_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        "SPACEBRING_NETWORK_ID": DEMO_NETWORK_ID,
    }
    if refresh_token is not None:
        variables["SPACEBRING_REFRESH_TOKEN"] = refresh_token
    if token_file is not None:
        variables["SPACEBRING_TOKEN_FILE"] = str(token_file)
    return variables


def closing(sim: Simulator, path: Path, n: int | None = None) -> Path:
    return write_csv(path, [(t, "closed") for t in list(sim.tickets)[:n]])


@pytest.fixture
def short_lived() -> Iterator[tuple[Simulator, str]]:
    sim = Simulator(
        SimConfig(rate=None, token_lifetime=1.0, latency=0.002, seed=1),
        make_tickets(300, seed=5, statuses=("new", "inProgress")),
    )
    with SimulatorThread(sim) as thread:
        yield sim, thread.base_url


def test_a_run_outlives_its_tokens_and_keeps_the_rotated_one(
    tmp_path: Path, short_lived: tuple[Simulator, str]
) -> None:
    sim, url = short_lived
    token_file = tmp_path / "secrets" / "spacebring.token"
    source = closing(sim, tmp_path / "in.csv")
    env = {**oauth_vars(token_file), "SPACEBRING_BASE_URL": url}
    # 300 rows at 100/s: about 3 s, three lifetimes of a token.
    out = run_bulk("-v", "run", str(source), "--rate", "100", env=env, cwd=tmp_path)

    assert out.returncode == 0, out.stderr
    assert "OAuth credentials from the environment" in out.stderr
    report = read_report(tmp_path / "reports" / "in.report.csv")
    assert {r["outcome"] for r in report} == {"updated"}
    assert sim.oauth.refreshes >= 3
    assert 401 not in sim.status_counts()
    # The rotated refresh token is in the file, private, and it is the one that works now;
    # the file names the API that issued it.
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    kept = json.loads(token_file.read_text())
    assert kept["refresh_token"] in sim.oauth.refresh_tokens()
    assert kept["api"] == url
    # No token, secret or refresh token in anything the run showed or wrote.
    secrets = [DEMO_CLIENT_SECRET, DEMO_REFRESH_TOKEN, *sim.oauth.issued]
    written = [p for p in (tmp_path / "reports").iterdir() if p.is_file()]
    assert {p.suffix for p in written} >= {".csv", ".journal", ".json"}
    for where, content in [
        ("stdout", out.stdout.encode()),
        ("stderr", out.stderr.encode()),
        *((p.name, p.read_bytes()) for p in written),
    ]:
        leaked = [i for i, secret in enumerate(secrets) if secret.encode() in content]
        assert not leaked, f"{where} holds secret number(s) {leaked}"

    # The next run starts from the file, not from the (spent) variable.
    again = run_bulk(
        "run", str(source), "--fresh", "--limit", "10", "--rate", "100", env=env, cwd=tmp_path
    )
    assert again.returncode == 0, again.stderr


async def test_a_failing_refresh_stops_with_exit_3_and_a_rerun_resumes(tmp_path: Path) -> None:
    sim = Simulator(
        SimConfig(rate=None, token_lifetime=0.5, latency=0.003),
        make_tickets(400, seed=6, statuses=("new",)),
    )
    token_file = tmp_path / "token"
    source = closing(sim, tmp_path / "in.csv")
    async with serve(sim) as url:
        options = RunOptions(base_url=url, rate=200, concurrency=4, **FAST)

        async def refuse_after_the_second_refresh() -> None:
            with anyio.fail_after(30):
                while sim.oauth.refreshes < 2:  # noqa: ASYNC110 - polling another task's state
                    await anyio.sleep(0.005)
            sim.config.refresh_fails = True

        async with anyio.create_task_group() as tg:
            tg.start_soon(refuse_after_the_second_refresh)
            creds = credentials_from_env(oauth_vars(token_file))
            stopped = await execute(source, options, credentials=creds)
        assert stopped.exit_code == 3
        report = read_report(stopped.report)
        skipped = [r for r in report if r["outcome"] == "skipped"]
        assert skipped
        assert all("token refresh refused: HTTP 400 invalid_grant" in r["error"] for r in skipped)
        assert not [r for r in report if r["outcome"] == "failed"]

        # The refresh works again: the same run, from the kept token, sends just the rest.
        sim.config.refresh_fails = False
        before = len(sim.requests)
        creds = credentials_from_env(oauth_vars(token_file, refresh_token=None))
        resumed = await execute(source, options, credentials=creds)
    assert resumed.exit_code == 0
    assert {r["outcome"] for r in read_report(resumed.report)} == {"updated"}
    # Each skipped row changed exactly once more; no finished row was sent again.
    changed = [
        str(r.ticket_id) for r in sim.requests[before:] if r.method == "PUT" and r.status == 200
    ]
    assert sorted(changed) == sorted(r["ticket_id"] for r in skipped)
    assert {sim.status_of(t) for t in sim.tickets} == {"closed"}


async def test_a_401_refreshes_once_for_everyone_and_resends(tmp_path: Path) -> None:
    sim = Simulator(
        SimConfig(rate=None, latency=0.002), make_tickets(200, seed=7, statuses=("new",))
    )
    source = closing(sim, tmp_path / "in.csv")
    creds = Credentials.oauth(
        DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_REFRESH_TOKEN, DEMO_NETWORK_ID
    )
    async with serve(sim) as url:

        async def end_tokens_early() -> None:
            # The server ends the tokens long before their hour: requests in flight get 401.
            for seen in (50, 120):
                with anyio.fail_after(30):
                    while len(sim.requests) < seen:  # noqa: ASYNC110 - polling the log
                        await anyio.sleep(0.001)
                sim.oauth.end_access_tokens()

        budget = rate_controller(None)
        async with anyio.create_task_group() as tg:
            tg.start_soon(end_tokens_early)
            summary = await execute(
                source,
                RunOptions(base_url=url, rate=None, concurrency=8),
                credentials=creds,
                controller=budget,
            )
    assert summary.exit_code == 0
    assert 401 in sim.status_counts()
    # One refresh at the start and one per ending, however many requests were refused.
    assert sim.oauth.refreshes == 3
    # Every ticket request took a slot of the run's one budget, the resends after a 401 too.
    tickets = [r for r in sim.requests if r.path.startswith("/support/")]
    assert len(tickets) > 200
    assert budget.sent == len(tickets)
    assert {r["outcome"] for r in read_report(summary.report)} == {"updated"}


async def test_one_refresh_in_flight_for_many_requests() -> None:
    sim = Simulator(SimConfig(rate=None, latency=0.01), make_tickets(20, seed=8))
    creds = Credentials.oauth(
        DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_REFRESH_TOKEN, DEMO_NETWORK_ID
    )
    async with serve(sim) as url, TicketClient(url, creds, concurrency=20) as client:
        async with anyio.create_task_group() as tg:
            for ticket_id in sim.tickets:
                tg.start_soon(client.set_status, ticket_id, "closed")
        assert client.auth is not None
        assert (client.auth.refreshes, sim.oauth.refreshes) == (1, 1)
        assert "Bearer" not in repr(client.auth)
    assert {sim.status_of(t) for t in sim.tickets} == {"closed"}


# -- the token file is configuration: untrusted ----------------------------------------------


def private(path: Path, content: str, mode: int = 0o600) -> Path:
    path.write_text(content)
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize(
    ("prepare", "needle"),
    [
        (lambda p: private(p, "tok en\n"), "one refresh token of printable ASCII"),
        (lambda p: private(p, "x" * 9000), "one refresh token"),
        (lambda p: private(p, '{"refresh_token": "good-token"}'), "one refresh token"),
        (lambda p: private(p, '{"api": "ftp://h", "refresh_token": "good-token"}'), "one refresh"),
        (lambda p: private(p, '{"api": "https://h", "refresh_token": "tok en"}'), "one refresh"),
        (lambda p: private(p, '{"api": "https://h", "refresh_token": 1}'), "one refresh token"),
        (lambda p: private(p, '["https://h", "good-token"]'), "one refresh token"),
        (lambda p: private(p, '{"a":' + "[" * 3000 + "]" * 3000 + "}"), "one refresh token"),
        (lambda p: private(p, "good-token\n", 0o640), "may be read by other users"),
        (lambda p: private(p, "good-token\n", 0o620), "may be changed by other users"),
        (lambda p: p.symlink_to(private(p.with_name("real"), "good-token")), "symbolic link"),
        (lambda p: p.mkdir(), "not a regular file"),
    ],
)
def test_a_token_file_bulk_cannot_trust_is_refused(
    tmp_path: Path, prepare: object, needle: str
) -> None:
    token_file = tmp_path / "token"
    assert callable(prepare)
    prepare(token_file)
    with pytest.raises(UsageError) as caught:
        credentials_from_env(oauth_vars(token_file), dotenv=tmp_path / "none.env")
    assert needle in str(caught.value)
    assert "good-token" not in str(caught.value) and "tok en" not in str(caught.value)


def test_token_file_rules(tmp_path: Path) -> None:
    token_file = private(tmp_path / "token", "kept-token\n")
    env = oauth_vars(token_file, refresh_token="older-token")
    creds = credentials_from_env(env, dotenv=tmp_path / "none.env")
    assert creds.scheme == "oauth" and creds.refresh_grant is not None
    # The file holds the latest token: it wins over the variable.
    assert creds.refresh_grant.refresh_token == "kept-token"
    assert "kept-token" not in repr(creds) and "older-token" not in repr(creds)
    # No file yet and no variable: nothing to start from.
    with pytest.raises(UsageError, match="does not exist yet"):
        credentials_from_env(oauth_vars(tmp_path / "missing", None), dotenv=tmp_path / "none.env")
    # A refresh token without the client or the network: named, exit 2.
    with pytest.raises(UsageError, match="SPACEBRING_NETWORK_ID"):
        env = {k: v for k, v in oauth_vars(None).items() if k != "SPACEBRING_NETWORK_ID"}
        credentials_from_env(env, dotenv=tmp_path / "none.env")


def test_a_token_file_sends_its_token_only_to_the_api_it_names(tmp_path: Path) -> None:
    kept = {"api": "https://API.example.com:443/", "refresh_token": "kept-token"}
    token_file = private(tmp_path / "token", json.dumps(kept))
    env = {**oauth_vars(token_file, refresh_token=None), "SPACEBRING_BASE_URL": ""}
    none = tmp_path / "none.env"
    # The same API, however its root is written: the token is used.
    target = resolve_target("https://api.example.com", env=env, dotenv=none)
    assert target.credentials is not None and target.credentials.refresh_grant is not None
    assert target.credentials.refresh_grant.refresh_token == "kept-token"
    # Another host, port or root: refused before anything is sent, naming both APIs.
    for other in ("https://staging.example.com", "https://api.example.com:8443", "http://[::1]:9"):
        with pytest.raises(UsageError) as caught:
            resolve_target(other, env=env, dotenv=none)
        message = str(caught.value)
        assert "keeps the refresh token of https://API.example.com:443/" in message
        assert other in message and "kept-token" not in message
    # A file of one token alone (bulk's before it named the API) is for any API, even a
    # token that starts like JSON.
    for alone in ("kept-token\n", "{kept-token}"):
        private(token_file, alone)
        target = resolve_target("https://staging.example.com", env=env, dotenv=none)
        assert target.credentials is not None and target.credentials.refresh_grant is not None
        assert target.credentials.refresh_grant.refresh_token == alone.strip()


def test_a_token_file_is_never_taken_by_another_api(tmp_path: Path) -> None:
    """Saving checks the file again (another run may have bound it meanwhile), a caller's
    own Credentials are held to the file too, and what bulk saves it can read back."""
    token_file = tmp_path / "token"
    save_refresh_token(token_file, "a-token", "https://a.example.com")
    with pytest.raises(UsageError, match=r"keeps the refresh token of https://a\.example\.com"):
        save_refresh_token(token_file, "b-token", "https://b.example.com")
    assert json.loads(token_file.read_text())["refresh_token"] == "a-token"
    # Not read through the environment: the caller's Credentials name the file.
    creds = Credentials.oauth(
        DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, "a-token", DEMO_NETWORK_ID, token_file
    )
    for base in ("https://b.example.com", "http://127.0.0.1:99999", "http://[::1"):
        with pytest.raises(UsageError) as caught:
            TicketClient(base, creds)
        assert "a-token" not in str(caught.value)
    # The longest token and base URL bulk accepts, escaped as JSON writes them, read back.
    longest = '"' * 8000
    root = "https://a.example.com/" + "b" * 1978
    save_refresh_token(tmp_path / "long", longest, root)
    env = oauth_vars(tmp_path / "long")
    assert credentials_from_env(env, dotenv=tmp_path / "none").refresh_grant
    with pytest.raises(UsageError, match="longer than 2000 characters"):
        resolve_target(root + "c", creds)


def test_a_token_kept_by_one_api_is_never_sent_to_another(tmp_path: Path) -> None:
    """A run against the simulator keeps its rotated token; a run against a second one
    (another port) is refused with exit 2 before any request, and the file is left alone."""
    token_file = tmp_path / "token"
    first, second = (
        Simulator(SimConfig(rate=None), make_tickets(5, seed=s, statuses=("new",))) for s in (1, 2)
    )
    with SimulatorThread(first) as one, SimulatorThread(second) as other:
        runs = [
            run_bulk(
                "run",
                str(closing(sim, tmp_path / f"in{n}.csv")),
                env={**oauth_vars(token_file), "SPACEBRING_BASE_URL": thread.base_url},
                cwd=tmp_path,
            )
            for n, (sim, thread) in enumerate([(first, one), (second, other)])
        ]
        kept_for = one.base_url
    assert runs[0].returncode == 0, runs[0].stderr
    kept = token_file.read_text()
    assert runs[1].returncode == 2, runs[1].stderr
    assert f"keeps the refresh token of {kept_for}" in runs[1].stderr
    assert "Traceback" not in runs[1].stderr
    assert second.oauth.refreshes == 0 and not second.status_counts()
    # Still the first API's token, the one that works there now.
    data = json.loads(kept)
    assert data["api"] == kept_for and data["refresh_token"] in first.oauth.refresh_tokens()


def test_a_dotenv_cannot_name_the_token_file_of_the_environments_client(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"SPACEBRING_TOKEN_FILE={tmp_path / 'theirs'}\n")
    creds = credentials_from_env(oauth_vars(None), dotenv=dotenv)
    assert creds.refresh_grant is not None
    assert creds.refresh_grant.token_file is None
