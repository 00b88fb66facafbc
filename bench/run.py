"""Every benchmark, one after the other: bench/rate.py, then bench/perf.py (`make bench`).

Each runs as a subprocess of this interpreter with its output streaming through; JSON results
go to bench/results/ (git-ignored). Exits non-zero if any benchmark failed or timed out.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
# (name, script and arguments, seconds before it is stopped)
STEPS: list[tuple[str, list[Path | str], float]] = [
    ("rate", [HERE / "rate.py", "--json", RESULTS / "rate.json"], 480.0),
    ("perf", [HERE / "perf.py", "--json", RESULTS / "perf.json"], 420.0),
]


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Interrupt the benchmark (it stops its own servers), then kill what is left."""
    _signal_group(proc, signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait(timeout=10)


def run_step(name: str, args: list[Path | str], timeout: float) -> int:
    print(f"== bench/{Path(args[0]).name}", flush=True)
    started = time.monotonic()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Its own process group, so stopping it reaches the servers and clients it started.
    proc = subprocess.Popen([sys.executable, *map(str, args)], env=env, start_new_session=True)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        print(f"== {name}: stopped after {timeout:.0f} s (time limit)", flush=True)
        return 124
    except BaseException:
        _stop(proc)
        raise
    print(f"== {name}: {time.monotonic() - started:.0f} s, exit {code}\n", flush=True)
    return code


def main() -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    codes = {}
    try:
        for name, args, timeout in STEPS:
            codes[name] = run_step(name, args, timeout)
    except KeyboardInterrupt:
        print("== interrupted", flush=True)
        return 130
    failed = [name for name, code in codes.items() if code != 0]
    print(
        f"== bench: {time.monotonic() - started:.0f} s in all"
        + (f"; FAILED: {', '.join(failed)}" if failed else "; results in bench/results/"),
        flush=True,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
