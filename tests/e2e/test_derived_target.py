"""`bulk retry` and `bulk undo` send to the API their batch went to, and take only their options.

Two simulators with the same tickets: A, where the batch went, and B, another
API (a stand-in for production, or a SPACEBRING_BASE_URL left over from other
work). A request to B would succeed, so only the request logs prove where a
run went. The batch runs through the library and the commands through click's
runner, in this process (a child `bulk` costs seconds on a busy machine); only
the terminal prompt needs a child on a pseudo-terminal.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner, Result

import bulk
from bulk import Credentials
from bulk._core._files import JobLock
from bulk.cli import main
from bulk.simulator import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    SimConfig,
    Simulator,
    SimulatorThread,
    make_tickets,
)

from ..support import (
    child_env,
    decline_at_terminal,
    demo_vars,
    forget_journal,
    read_report,
    write_csv,
)

TICKETS = 24
BASIC = Credentials.basic(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)


class Api(NamedTuple):
    sim: Simulator
    url: str

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc


@pytest.fixture
def apis() -> Iterator[tuple[Api, Api]]:
    tickets = make_tickets(TICKETS, seed=5, statuses=("new", "inProgress"))
    first = Simulator(SimConfig(rate=None), [dict(t) for t in tickets])
    second = Simulator(SimConfig(rate=None), [dict(t) for t in tickets])
    with SimulatorThread(first) as a, SimulatorThread(second) as b:
        yield Api(first, a.base_url), Api(second, b.base_url)


def batch_on(a: Api, tmp_path: Path, limit: int | None = None) -> Path:
    """Every ticket to `solved` on A; the report's path."""
    path = write_csv(tmp_path / "in.csv", [(t, "solved") for t in a.sim.tickets])
    done = bulk.run(path, base_url=a.url, credentials=BASIC, rate=None, limit=limit)
    assert done.attrs["summary"].exit_code == 0
    return tmp_path / "reports" / "in.report.csv"


def cli(*args: str, env: dict[str, str]) -> Result:
    """`bulk *args` in this process, with only `env`'s SPACEBRING_* variables set."""
    return CliRunner().invoke(main, list(args), env=env)


def test_retry_and_undo_go_where_the_batch_went(tmp_path: Path, apis: tuple[Api, Api]) -> None:
    a, b = apis
    original = {t: a.sim.status_of(t) for t in a.sim.tickets}
    report = batch_on(a, tmp_path, limit=10)
    audit = json.loads((tmp_path / "reports" / "in.report.run.json").read_text())
    assert audit["base_url"] == a.url
    forget_journal(report)
    # No SPACEBRING_BASE_URL now: the default would be production.
    retried = cli("retry", str(report), "--only", "skipped", "--rate", "unlimited", env=demo_vars())
    assert retried.exit_code == 0, retried.output
    assert f"sending to {a.host} (http" in retried.output
    assert sorted(a.sim.sent_ids()) == sorted(a.sim.tickets)  # 10, then the other 14
    retry_audit = json.loads((tmp_path / "reports" / "in.retry.run.json").read_text())
    assert retry_audit["base_url"] == retry_audit["derived_from"]["base_url"] == a.url

    undone = cli(
        "undo", str(tmp_path / "reports" / "in.retry.csv"), "--rate", "unlimited", env=demo_vars()
    )
    assert undone.exit_code == 0, undone.output
    undo_report = read_report(tmp_path / "reports" / "in.retry.undo.csv")
    assert {r["outcome"] for r in undo_report} == {"updated"} and len(undo_report) == 14
    back = {r["ticket_id"] for r in undo_report}
    assert all(a.sim.status_of(t) == original[t] for t in back)
    assert len(a.sim.sent_ids()) == TICKETS + 14
    assert b.sim.requests == []


@pytest.mark.parametrize("kind", ["undo", "retry"])
@pytest.mark.parametrize("where", ["environment", ".env"])
def test_a_configured_base_url_elsewhere_is_refused(
    tmp_path: Path, apis: tuple[Api, Api], kind: str, where: str
) -> None:
    a, b = apis
    report = batch_on(a, tmp_path, limit=10)  # 10 to undo, 14 to retry
    forget_journal(report)
    sent = len(a.sim.requests)
    env = demo_vars(b.url)
    if where == ".env":
        (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        env = {}
    out = (
        cli(kind, str(report), "--only", "failed,skipped", env=env)
        if kind == "retry"
        else cli(kind, str(report), env=env)
    )
    assert out.exit_code == 2, out.output
    shown = "the environment" if where == "environment" else ".env"
    assert f"SPACEBRING_BASE_URL in {shown} points to {b.host}" in out.output
    assert f"went to {a.host}" in out.output and "--base-url" in out.output
    assert "Traceback" not in out.output and DEMO_CLIENT_SECRET not in out.output
    assert len(a.sim.requests) == sent and b.sim.requests == []


def test_a_retry_leaves_the_rows_a_resumable_batch_has_not_sent_to_it(
    tmp_path: Path, apis: tuple[Api, Api]
) -> None:
    """Retrying the unsent rows of a batch that can resume, then resuming it, sent them twice
    (a comment twice on 75 of 100 tickets, in a walkthrough): the retry leaves them alone,
    and those the batch sent after its report was written (a run killed before writing it),
    and it does not run beside the batch."""
    a, _ = apis
    report = batch_on(a, tmp_path, limit=10)
    page = report.with_name("in.report.html").read_text()
    assert "--only failed,skipped" not in page  # the page offers resuming instead
    # The batch sends 5 more, then is killed before its report: the report is the old one.
    older = report.read_bytes()
    bulk.run(tmp_path / "in.csv", base_url=a.url, credentials=BASIC, rate=None, limit=5)
    report.write_bytes(older)
    retried = cli("retry", str(report), "--only", "failed,skipped", env=demo_vars())
    assert retried.exit_code == 0, retried.output
    assert "14 skipped rows are its own batch's to send (it can resume)" in retried.output
    assert "no rows to retry; nothing to do" in retried.output
    assert len(a.sim.sent_ids()) == 15
    with JobLock(report.with_name("in.report.lock"), "a batch"):  # the batch, running
        running = cli("retry", str(report), env=demo_vars())
    assert running.exit_code == 75 and "already running" in running.output
    resumed = bulk.run(tmp_path / "in.csv", base_url=a.url, credentials=BASIC, rate=None)
    assert resumed.attrs["summary"].exit_code == 0
    assert sorted(a.sim.sent_ids()) == sorted(a.sim.tickets)  # each ticket once


def test_an_undo_of_a_report_whose_lock_cannot_be_written_goes_on(
    tmp_path: Path, apis: tuple[Api, Api], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report in a folder this user cannot write (a read-only mount): no lock, said so."""
    import errno
    import os

    a, _ = apis
    report = batch_on(a, tmp_path)
    real_open = os.open

    def read_only(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith("in.report.lock"):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    out = cli("undo", str(report), "--dry-run", env=demo_vars())
    assert out.exit_code == 0, (out.output, repr(out.exception))
    assert "cannot open (Read-only file system); going on without the batch's lock" in out.output


def test_a_retry_of_a_report_whose_journal_cannot_be_read_is_refused(
    tmp_path: Path, apis: tuple[Api, Api]
) -> None:
    a, _ = apis
    report = batch_on(a, tmp_path, limit=10)
    journal = report.with_name("in.report.journal")
    # A --fresh run killed before its report: the journal beside it is another batch's.
    with sqlite3.connect(journal) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'batch_id'", ('"' + "0" * 32 + '"',))
    conn.close()
    out = cli("retry", str(report), "--only", "skipped", env=demo_vars())
    assert out.exit_code == 2 and "is another batch's journal" in out.output
    journal.write_bytes(b"not a journal")
    out = cli("retry", str(report), "--only", "skipped", env=demo_vars())
    assert out.exit_code == 2 and "cannot tell which of its skipped rows" in out.output
    assert len(a.sim.sent_ids()) == 10


def test_an_explicit_other_base_url_is_named_then_used(
    tmp_path: Path, apis: tuple[Api, Api]
) -> None:
    a, b = apis
    report = batch_on(a, tmp_path)
    sent = len(a.sim.requests)
    # B holds what the batch left on A, so the undo (which reads first) finds them still ours.
    for key, ticket in a.sim.tickets.items():
        b.sim.tickets[key]["status"] = ticket["status"]
    # SPACEBRING_BASE_URL may even point to A: the flag is the explicit choice.
    out = cli(
        "undo",
        str(report),
        "--base-url",
        b.url,
        "--yes",
        "--rate",
        "unlimited",
        env=demo_vars(a.url),
    )
    assert out.exit_code == 0, out.output
    assert f"undo goes to {b.host} (--base-url), not to {a.host} where the batch of" in out.output
    assert len(a.sim.requests) == sent
    assert sorted(b.sim.sent_ids()) == sorted(b.sim.tickets)
    assert DEMO_CLIENT_SECRET not in out.output


def test_an_explicit_other_base_url_is_asked_at_a_terminal(
    tmp_path: Path, apis: tuple[Api, Api]
) -> None:
    a, b = apis
    report = batch_on(a, tmp_path)
    sent = len(a.sim.requests)
    # Both are loopback, which never asks for `bulk run`: going elsewhere than the batch does.
    code, text = decline_at_terminal(
        ["undo", str(report), "--base-url", b.url],
        child_env(demo_vars()),
        "where the batch went?",
    )
    question = f"change {TICKETS} tickets at {b.host}, not {a.host} where the batch went?"
    assert question in text
    assert code == 3, text
    assert len(a.sim.requests) == sent and b.sim.requests == []


@pytest.mark.parametrize("command", ["undo", "retry"])
def test_help_offers_only_the_options_that_apply(command: str) -> None:
    runner = CliRunner()
    shown = runner.invoke(main, [command, "--help"]).output
    for absent in ("--status", "--id-column", "--status-column"):
        assert f"{absent} " not in shown and f"{absent}\n" not in shown
    for present in (
        "--base-url",
        "--rate",
        "--concurrency",
        "--timeout",
        "--report",
        "--dry-run",
        "--fresh",
        "--limit",
        "--deadline",
        "--yes",
    ):
        assert present in shown
    refused = runner.invoke(main, [command, "x.csv", "--status", "closed"])
    assert refused.exit_code == 2 and "No such option '--status'" in refused.output
    assert "--id-column" in runner.invoke(main, ["run", "--help"]).output


def strip_record(report: Path, base_url: str | None) -> None:
    """As an older bulk left it: an audit record without (or with another) base URL."""
    audit = report.with_name("in.report.run.json")
    record = json.loads(audit.read_text())
    record.pop("base_url")
    if base_url is not None:
        record["base_url"] = base_url
    else:  # and no journal either (a record from before either held it)
        for journal in report.parent.glob("in.report.journal*"):
            journal.unlink()
    audit.write_text(json.dumps(record))


def test_a_record_without_base_url_needs_an_explicit_one(
    tmp_path: Path, apis: tuple[Api, Api]
) -> None:
    a, b = apis
    report = batch_on(a, tmp_path)
    strip_record(report, None)
    sent = len(a.sim.requests)
    refused = cli("undo", str(report), env=demo_vars(a.url))
    assert refused.exit_code == 2, refused.output
    assert "do not say which API the batch went to" in refused.output
    assert "name it explicitly with --base-url URL" in refused.output
    assert len(a.sim.requests) == sent
    dry = cli("undo", str(report), "--dry-run", env=demo_vars(a.url))
    assert dry.exit_code == 0 and "a real undo will need --base-url" in dry.output
    undone = cli("undo", str(report), "--base-url", a.url, "--rate", "unlimited", env=demo_vars())
    assert undone.exit_code == 0, undone.output
    # The undo reads each ticket, then puts back every one.
    assert len(a.sim.sent_ids("PUT")) == 2 * TICKETS and b.sim.requests == []


def test_a_record_that_contradicts_its_journal_or_others_could_write_is_refused(
    tmp_path: Path, apis: tuple[Api, Api]
) -> None:
    a, b = apis
    report = batch_on(a, tmp_path, limit=10)  # 10 to undo, 14 to retry
    sent = len(a.sim.requests)
    strip_record(report, b.url)
    out = cli("undo", str(report), env=demo_vars())
    assert out.exit_code == 2
    assert f"journal says the batch went to {a.host} but its audit record says {b.host}" in (
        out.output
    )
    strip_record(report, a.url)
    report.with_name("in.report.run.json").chmod(0o666)
    forget_journal(report)
    out = cli("retry", str(report), "--only", "failed,skipped", env=demo_vars())
    assert out.exit_code == 2 and "may be changed by other users" in out.output
    assert len(a.sim.requests) == sent and b.sim.requests == []


def test_an_undo_of_a_dry_runs_report_has_nothing_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dry run sent nothing: its undo says so, without asking where the batch went."""
    monkeypatch.chdir(tmp_path)
    source = write_csv(tmp_path / "in.csv", [("0b4e7f7c-2430-4a6d-970b-534d5e63af16",)], ("id",))
    dry = cli("run", str(source), "--status", "closed", "--dry-run", env=demo_vars())
    assert dry.exit_code == 0, dry.output
    undone = cli("undo", str(tmp_path / "reports" / "in.dry-run.csv"), env=demo_vars())
    assert undone.exit_code == 0, undone.output
    assert "no rows to undo; nothing to do" in undone.output and "--base-url" not in undone.output
