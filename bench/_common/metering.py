"""Process metering: a client's own wall, CPU and peak RSS, and the CPU of everything else.

Every client of a benchmark is a real subprocess; its CPU time (user + sys, its children
included) and peak RSS are the rusage of that one process (`os.wait4` in a small middle
process: see `_MEASURE`). The machine's other load is read from /proc, so a phase that shared
the machine can be flagged.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PYTHON = sys.executable


@dataclass
class Measured:
    command: list[str]
    code: int
    wall: float
    cpu: float  # user + sys seconds of the child and its waited-for children
    maxrss_kib: int
    output: str


# A small middle process forks (a real fork, from a small process) and execs the command, then
# reports the command's own rusage. Spawning straight from this process would not do: Python
# spawns with vfork, and Linux then charges the parent's RSS to the child's ru_maxrss at exec.
_MEASURE = """
import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - start
with open(sys.argv[1], "w") as out:
    out.write(f"{wall} {ru.ru_utime + ru.ru_stime} {ru.ru_maxrss}")
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_measured(
    command: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float,
    stdin_path: Path | None = None,
) -> Measured:
    """Run `command` to its end (killed after `timeout` s); its wall, CPU and peak RSS."""
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(tempfile.TemporaryFile())
        stdin = stack.enter_context(open(stdin_path, "rb")) if stdin_path else subprocess.DEVNULL
        figures = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "rusage"
        proc = subprocess.Popen(
            [PYTHON, "-I", "-S", "-c", _MEASURE, str(figures), *command],
            env=env,
            stdin=stdin,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a timeout ends the command too
        )
        try:
            code = proc.wait(timeout=timeout)
        except BaseException:  # timeout or interrupt: end the command and its children
            _kill_group(proc)  # the group's leader is not reaped yet, so the id is still ours
            proc.wait(timeout=10)
            raise
        out.seek(0)
        text = out.read().decode(errors="replace")
        if not figures.exists():
            raise RuntimeError(f"could not run {' '.join(command)} (exit {code}):\n{text[-2000:]}")
        wall, cpu, maxrss = figures.read_text().split()
    return Measured(list(command), code, float(wall), float(cpu), int(maxrss), text)


# -- other load on the machine -----------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LIVE_SERVERS: set[subprocess.Popen[bytes]] = set()  # started by the bench and not reaped yet


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_cpu() -> float:
    """CPU seconds spent in user and system mode by every process on the machine."""
    user, nice, system = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:4]
    return (int(user) + int(nice) + int(system)) / CLOCK_TICKS


def own_cpu() -> float:
    """CPU seconds of this process, its reaped children and the servers it still runs."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    for proc in list(LIVE_SERVERS):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += process_cpu(proc.pid)
    return total
