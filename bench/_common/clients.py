"""The commands the benchmarks run (bulk, the baseline, xargs + curl, the simulator), what
their output says, and their input files.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Sequence
from pathlib import Path

from _common.metering import PYTHON
from _common.servers import HOST

BENCH = Path(__file__).resolve().parent.parent
BULK = [PYTHON, "-m", "bulk"]
BULK_SCRIPT = Path(PYTHON).with_name("bulk")
CLIENT_ID, CLIENT_SECRET = "demo-client", "demo-secret"  # the simulator's demo account
TARGET = "closed"
CONCURRENCY = 64
N_A = 20_000  # rows for naive and bulk in (a), its bottleneck check and (d)


def compile_bulk() -> None:
    """Byte-compile the package, as `pip install` does for a regular install.

    The editable install of `make setup` writes no .pyc files, and a process
    with PYTHONDONTWRITEBYTECODE set (this machine and its CI set it) never
    writes them: every `bulk` start compiled its ~100 modules from source,
    ~0.2 s of CPU a run (measured: `import bulk.cli, bulk.batch` 0.41 s with
    them, 0.65 s without). The baseline, one small file, pays ~3 ms for that.
    """
    import compileall

    compileall.compile_dir(str(BENCH.parent / "bulk"), quiet=1)


def client_env(base_url: str) -> dict[str, str]:
    from bulk.simulator import demo_env

    return demo_env(base_url)


def naive_command(path: Path) -> list[str]:
    return [
        PYTHON,
        str(BENCH / "naive.py"),
        str(path),
        "--status",
        TARGET,
        "--concurrency",
        str(CONCURRENCY),
    ]


def bulk_command(path: Path, report: Path, *extra: str) -> list[str]:
    return [
        *BULK,
        "run",
        str(path),
        "--status",
        TARGET,
        "--rate",
        "unlimited",
        "--concurrency",
        str(CONCURRENCY),
        "--max-failure-rate",
        "1",
        "--report",
        str(report),
        "--fresh",
        *extra,
    ]


def curl_command(base_url: str) -> list[str]:
    url = f"{base_url}/support/tickets/v1/@ID@/status"
    return [
        "xargs",
        "-P",
        str(CONCURRENCY),
        "-I",
        "@ID@",
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}\\n",
        "-X",
        "PUT",
        "-u",
        f"{CLIENT_ID}:{CLIENT_SECRET}",
        "-H",
        "Content-Type: application/json",
        "-d",
        json.dumps({"ticket": {"status": TARGET}}, separators=(",", ":")),
        url,
    ]


def simulator_command(port: int, tickets: Path, *extra: str) -> list[str]:
    return [
        *BULK,
        "simulate",
        "--host",
        HOST,
        "--port",
        str(port),
        "--tickets",
        str(tickets),
        "--rate",
        "unlimited",
        *extra,
    ]


def naive_counts(output: str) -> tuple[int, int, float]:
    """ok, failed and sending seconds from naive.py's last line."""
    for line in reversed(output.splitlines()):
        if line.startswith("ok="):
            fields = dict(part.split("=", 1) for part in line.split())
            return int(fields["ok"]), int(fields["failed"]), float(fields["elapsed"])
    raise RuntimeError(f"naive.py printed no result:\n{output[-2000:]}")


def report_ok_rows(report: Path) -> int:
    with open(report, newline="", encoding="utf-8") as handle:
        return sum(row["outcome"] in ("updated", "unchanged") for row in csv.DictReader(handle))


# -- inputs ------------------------------------------------------------------------------------


def write_ids(path: Path, ids: Sequence[str], header: bool = True) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        if header:
            handle.write("ticket_id\n")
        handle.write("\n".join(ids))
        handle.write("\n")


def random_ids(n: int, seed: int) -> list[str]:
    """Version-4-shaped UUID strings, fast; no ticket on any server has them."""
    bits = random.Random(seed).getrandbits
    out = []
    for _ in range(n):
        h = f"{bits(128):032x}"
        out.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}")
    return out
