"""What the tests share: input files, reports, `bulk` as a child process, a fake clock.

The one place a test writes an input CSV, reads a report, builds the
environment of a child `bulk` (the demo credentials, never a developer's own
settings) or starts one. Fixtures (a simulator, its credentials, a folder of
one's own) are in conftest.py.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypedDict

import bulk
from bulk.journal import Journal
from bulk.plan import PlannedRow
from bulk.simulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BULK",
    "FAST",
    "JOBS",
    "ROOT",
    "SAMPLES",
    "Backoff",
    "FakeClock",
    "Measured",
    "child_env",
    "demo_vars",
    "dry",
    "plan",
    "read_report",
    "run_bulk",
    "run_bulk_measured",
    "start_bulk",
    "to_send",
    "wait_for",
    "write_csv",
]

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
JOBS = ROOT / "jobs"
BULK = (sys.executable, "-m", "bulk")


class Backoff(TypedDict):
    backoff_base: float
    backoff_max: float


# Fast retries so fault tests take milliseconds, not seconds.
FAST: Final[Backoff] = {"backoff_base": 0.001, "backoff_max": 0.01}


# -- files ------------------------------------------------------------------------------


def write_csv(
    path: Path, rows: Iterable[Sequence[Any]], header: Sequence[str] = ("ticket_id", "status")
) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_report(path: Path) -> list[dict[str, str]]:
    """A CSV file bulk wrote (report, snapshot, batch input), one dict a row."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def dry(source: Path | pd.DataFrame, **options: Any) -> pd.DataFrame:
    """The report of a dry run: every row checked and planned, nothing sent."""
    return bulk.run(source, dry_run=True, **options)


# -- a journal, as a run plans it ----------------------------------------------------------


def to_send(row: int, ticket_id: str, status: str = "closed") -> PlannedRow:
    """A valid row, planned to be sent (its key is the canonical, lower-case id)."""
    return PlannedRow(row, ticket_id, ticket_id.lower(), status, None, None, None)


def plan(journal: Journal, rows: Iterable[PlannedRow], **meta: Any) -> Journal:
    """Plan `rows` into an empty `journal` as a run does: add, settle duplicates, mark planned."""
    journal.clear()
    journal.add_planned(rows)
    journal.settle_duplicates()
    journal.set_meta(planned=True, **meta)
    return journal


# -- bulk in a child process ----------------------------------------------------------------


def demo_vars(base_url: str | None = None, secret: str = DEMO_CLIENT_SECRET) -> dict[str, str]:
    """The demo client's credentials (and a base URL), as variables for `child_env`."""
    variables = {"SPACEBRING_CLIENT_ID": DEMO_CLIENT_ID, "SPACEBRING_CLIENT_SECRET": secret}
    if base_url:
        variables["SPACEBRING_BASE_URL"] = base_url
    return variables


def forget_journal(report: Path) -> None:
    """The batch's journal removed: it cannot resume, so its unsent rows are a retry's."""
    for suffix in (".journal", ".journal-wal", ".journal-shm"):
        report.with_name(report.name.removesuffix(".csv") + suffix).unlink(missing_ok=True)


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment and `extra`, without what a developer may have set for
    real work (SPACEBRING_* credentials, a job's LOCATIONS): a test never uses a real account."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("SPACEBRING_", "LOCATIONS"))}
    return keep | dict(extra or {})


def run_bulk(
    *args: str,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
    errors: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """`bulk *args` to the end; `env` holds only the variables the test sets."""
    return subprocess.run(
        [*BULK, *args],
        env=child_env(env),
        input=stdin,
        cwd=cwd,
        capture_output=True,
        text=True,
        errors=errors,
        timeout=timeout,
    )


def start_bulk(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[str]:
    """`bulk *args`, running: for a test that signals it or runs another beside it."""
    return subprocess.Popen(
        [*BULK, *args],
        env=child_env(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def decline_at_terminal(
    args: Sequence[str], env: Mapping[str, str], question: str, timeout: float = 30
) -> tuple[int, str]:
    """`bulk *args` on a pseudo-terminal, answering "n" once `question` shows: (exit, output).

    `env` is passed as is (build it with `child_env`).
    """
    import pty
    import select

    def available(fd: int) -> bytes:
        try:
            return os.read(fd, 4096) if select.select([fd], [], [], 0.1)[0] else b""
        except OSError:  # the other side closed: the child has exited
            return b""

    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [*BULK, *args], env=dict(env), stdin=secondary, stdout=secondary, stderr=secondary
    )
    os.close(secondary)
    seen = b""
    try:
        deadline = time.monotonic() + timeout
        while question.encode() not in seen and time.monotonic() < deadline:
            seen += available(primary)
        os.write(primary, b"n\n")
        process.wait(timeout=timeout)
        seen += available(primary)
    finally:
        os.close(primary)
    return process.returncode, seen.decode(errors="replace")


def wait_for(
    found: Callable[[], object], process: subprocess.Popen[str], what: str, timeout: float = 60
) -> None:
    """Poll until `found()` is true; fail if `process` ends first or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while not found():
        assert process.poll() is None, f"bulk ended before {what}: {process.communicate()}"
        assert time.monotonic() < deadline, f"no {what} within {timeout:g} s"
        time.sleep(0.005)


@dataclass
class Measured:
    code: int
    stdout: str
    stderr: str
    peak_mb: float  # the child's own peak resident memory
    seconds: float


# The child's peak RSS must be its own: Linux carries the RSS of the process
# that forks it into its ru_maxrss (kept across exec), and this pytest process
# is large. So a small middle Python (-I -S, ~10 MB) forks bulk and reports
# wait4's figure for that one child.
_MEASURE = """
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status) % 256)
"""


def run_bulk_measured(
    *args: str, env: Mapping[str, str], cwd: Path, timeout: float = 90
) -> Measured:
    """`bulk *args` to the end, with its peak RSS in MiB (Linux reports KiB) and wall time."""
    figures = cwd / "child.maxrss"
    began = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _MEASURE, str(figures), *BULK, *args],
        env=child_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    seconds = time.monotonic() - began
    peak = int(figures.read_text()) / 1024
    return Measured(out.returncode, out.stdout, out.stderr, peak, seconds)


# -- time ---------------------------------------------------------------------------------


@dataclass
class FakeClock:
    """Monotonic seconds that move only when a test (or `sleep`) says so.

    Start at a value that stays exact in binary, so sums of test steps compare equal.
    """

    now: float = 100.0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
