"""Throughput, CPU, correctness under faults, memory and start-up: `bulk run` beside the baseline.

Every client is a real subprocess; its CPU time (user + sys, its children included) and peak
RSS are the rusage of that one process (`os.wait4` in a small middle process: see `_MEASURE`).
Servers run apart from the client:

  (a) no latency, no limit, 20,000 rows: rows/s (wall) and client CPU per row, for
      bench/naive.py, `bulk run` (journal and report on) and `xargs -P 64` + curl (fewer rows).
      The simulator (`bulk simulate`, its own process) is first checked for being the
      bottleneck; if it is, (a) uses a minimal server of this file's own (`--fast-server`).
  (b) 50 ms server latency, concurrency 64: rows/s as a share of Little's bound 64/0.05 s.
  (c) 5% 5xx and 2% dropped connections: tickets whose final server status is the target.
  memory: peak RSS of `bulk run` on 10k, 100k and 1M rows (100k and 1M with --deadline 40s:
      `--memory-deadline 30s` saves ~10 s if `make bench` must be shorter).
  start-up: `bulk --help` and `bulk --version`.

(b) and (c) serve the simulator from a thread of this process (`SimulatorThread`), so the
server's request log and final ticket states can be read; the clients stay subprocesses.
CPU taken meanwhile by other processes on the machine is measured per phase, and a phase that
shared the machine is flagged: its figures are not to be trusted.

    python bench/perf.py [--json bench/results/perf.json] [--memory-deadline 40s]
    python bench/perf.py --fast-server --port 8999 [--latency 0.05]   # the minimal server alone
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
BULK = [PYTHON, "-m", "bulk"]
BULK_SCRIPT = Path(PYTHON).with_name("bulk")
HOST = "127.0.0.1"
CLIENT_ID, CLIENT_SECRET = "demo-client", "demo-secret"  # the simulator's demo account
TARGET = "closed"
CONCURRENCY = 64

N_A = 20_000  # (a) rows for naive and bulk
N_CURL = 1_000  # (a) rows for xargs + curl: one process per row
N_B = 5_000  # (b)
N_C = 5_000  # (c)
PLAIN_RUNS = 3  # (d) runs of each client, alternating
MEMORY_SIZES = (10_000, 100_000, 1_000_000)
MEMORY_DEADLINE = "40s"  # for the inputs above 10k
MEMORY_KNOWN = 100_000  # tickets the memory simulator knows: the 100k input, the 1M input's start
LATENCY_B = 0.05
BOTTLENECK_SHARE = 0.80  # server CPU over the client's sending time, of one core
BOTTLENECK_COST = 0.90  # or server CPU per request over the client's CPU per row
OTHER_LOAD_WARN = 0.15  # cores used by processes that are not the bench's


def log(message: str) -> None:
    print(f"perf: {message}", file=sys.stderr, flush=True)


# -- running a client --------------------------------------------------------------------------


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


def client_env(base_url: str) -> dict[str, str]:
    from bulk.simulator import demo_env

    return demo_env(base_url)


def naive_command(path: Path) -> list[str]:
    return [
        PYTHON,
        str(HERE / "naive.py"),
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


# -- servers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {HOST}:{port} after {timeout:g} s")


@contextlib.contextmanager
def server_process(command: list[str], port: int, log_path: Path) -> Iterator[ServerProc]:
    """Start a server subprocess and always stop it; call `ready()` before using it."""
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
        _LIVE_SERVERS.add(proc)
        try:
            yield ServerProc(proc, port, f"http://{HOST}:{port}")
        finally:
            try:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
                    try:
                        proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(timeout=5)
            finally:
                _LIVE_SERVERS.discard(proc)


@dataclass
class ServerProc:
    proc: subprocess.Popen[bytes]
    port: int
    base_url: str

    def ready(self) -> ServerProc:
        wait_for_port(self.port, self.proc)
        return self

    def cpu(self) -> float:
        """CPU seconds the server process has used so far."""
        return process_cpu(self.proc.pid)


# -- other load on the machine -----------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_LIVE_SERVERS: set[subprocess.Popen[bytes]] = set()  # started here and not reaped yet


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
    for proc in list(_LIVE_SERVERS):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += process_cpu(proc.pid)
    return total


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


# -- the bench's own minimal server ------------------------------------------------------------


_DATE = "2024-05-01T09:00:00.000Z"
_LOCATION = "0f1e2d3c-4b5a-4697-8877-665544332211"


def _fast_answer(head: bytes, body: bytes) -> bytes:
    parts = head.split(b" ", 2)
    path = parts[1].split(b"/") if len(parts) > 2 else []
    if parts[0] != b"PUT" or len(path) != 6 or path[1:4] != [b"support", b"tickets", b"v1"]:
        status, payload = b"404 Not Found", b'{"message":"not found","type":"notFound"}'
    else:
        try:
            new = json.dumps(json.loads(body)["ticket"]["status"])
        except (ValueError, KeyError, TypeError):
            new = None
        if new is None:
            status, payload = b"400 Bad Request", b'{"message":"bad body","type":"badRequest"}'
        else:
            # The spec's required fields, the ticket id from the path and the status from
            # the body: an answer that proves the change, as a real server's would.
            ticket = path[4].decode()
            status = b"200 OK"
            payload = (
                f'{{"activity":{{"id":"{uuid.uuid4()}","createDate":"{_DATE}",'
                f'"ticketRef":"{ticket}","type":"statusUpdated","data":'
                f'{{"status":{new},"previousAttributes":{{"status":"new"}}}}}},'
                f'"ticket":{{"id":"{ticket}","status":{new},"number":1,"type":"other",'
                f'"description":"bench","locationRef":"{_LOCATION}",'
                f'"createDate":"{_DATE}","updateDate":"{_DATE}"}}}}'
            ).encode()
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(payload)).encode()
        + b"\r\n\r\n"
        + payload
    )


class _FastHTTP(asyncio.Protocol):
    """HTTP/1.1 keep-alive, Content-Length bodies only: enough for the PUT of the bench."""

    latency = 0.0  # seconds before each answer is written

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        answers = []
        while (end_of_head := buffer.find(b"\r\n\r\n")) >= 0:
            head = buffer[:end_of_head]
            length = 0
            at = head.lower().find(b"\r\ncontent-length:")
            if at >= 0:
                eol = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : eol if eol >= 0 else len(head)])
            end = end_of_head + 4 + length
            if len(buffer) < end:
                break
            answers.append(_fast_answer(head[: head.find(b"\r\n")], buffer[end_of_head + 4 : end]))
            buffer = buffer[end:]
        self.buffer = buffer
        if answers:
            if self.latency > 0:
                asyncio.get_running_loop().call_later(self.latency, self._write, answers)
            else:
                self._write(answers)

    def _write(self, answers: list[bytes]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(answers))


def fast_server_main(port: int, latency: float) -> None:
    _FastHTTP.latency = latency

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        server = await loop.create_server(_FastHTTP, HOST, port, backlog=1024)
        async with server:
            await stop.wait()

    asyncio.run(main())


# -- a plain asyncio server: what a new user would write to test against -----------------------


async def _plain_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """HTTP/1.1 keep-alive with asyncio streams, one request at a time per connection.

    The answer is the spec's shape and proves the change: the ticket id from the
    path, the status from the body.
    """
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length) if length else b""
            writer.write(_fast_answer(head[: head.find(b"\r\n")], body))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def plain_server_main(port: int) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        server = await asyncio.start_server(_plain_client, HOST, port, backlog=1024)
        async with server:
            await stop.wait()

    asyncio.run(main())


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


# -- the scenarios -----------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    metric: str
    naive: float | None = None
    bulk: float | None = None
    curl: float | None = None
    unit: str = ""
    target: str = ""
    met: bool | None = None
    ratio: bool = True  # show bulk/baseline
    fmt: str = "{:,.0f}"


class Bench:
    def __init__(self, work: Path, memory_deadline: str = MEMORY_DEADLINE) -> None:
        self.work = work
        self.memory_deadline = memory_deadline
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.raw: dict[str, Any] = {}
        self.curl = shutil.which("curl") is not None and shutil.which("xargs") is not None

    def note(self, text: str) -> None:
        self.notes.append(text)
        log(text)

    # (a) and memory share one `bulk simulate` process (no latency, no limit).
    def simulator_tickets(self) -> None:
        """The tickets of the (a)-check and memory simulator; its first N_A are (a)'s input."""
        from bulk.simulator import make_tickets, write_tickets

        known = make_tickets(MEMORY_KNOWN, seed=1)  # starts with make_tickets(N_A, seed=1)
        self.known_ids = [t["id"] for t in known]
        self.sim_tickets = self.work / "sim-tickets.csv"
        write_tickets(known, self.sim_tickets)

    def inputs(self) -> None:
        self.fast_a_in = self.work / "a.csv"
        write_ids(self.fast_a_in, self.known_ids[:N_A])
        self.curl_in = self.work / "curl-ids.txt"
        write_ids(self.curl_in, self.known_ids[:N_CURL], header=False)
        filler = random_ids(MEMORY_SIZES[-1] - MEMORY_KNOWN, seed=7)
        self.memory_in = {}
        for n in MEMORY_SIZES:
            path = self.work / f"mem-{n}.csv"
            ids = self.known_ids[:n] if n <= MEMORY_KNOWN else self.known_ids + filler
            write_ids(path, ids[:n])
            self.memory_in[n] = path

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a phase, and how much CPU other processes on the machine took meanwhile."""
        started, machine, own = time.perf_counter(), machine_cpu(), own_cpu()
        try:
            yield
        finally:
            seconds = time.perf_counter() - started
            other = max(0.0, (machine_cpu() - machine) - (own_cpu() - own)) / max(seconds, 1e-9)
            self.raw.setdefault("phases", {})[name] = {
                "seconds": round(seconds, 2),
                "other_load_cores": round(other, 3),
            }
            log(f"[{name}: {seconds:.1f} s; other processes used {other:.0%} of a core]")
            if other > OTHER_LOAD_WARN:
                self.note(
                    f"WARNING: other processes on this machine used {other:.0%} of a core "
                    f"during {name}: its figures are disturbed; rerun on a quiet machine"
                )

    def scenario_a_check(self, sim: ServerProc) -> bool:
        """Run naive against the simulator; is the simulator the bottleneck?"""
        before = sim.cpu()
        m = run_measured(naive_command(self.fast_a_in), env=client_env(sim.base_url), timeout=60)
        server_cpu = sim.cpu() - before
        ok, failed, sending = naive_counts(m.output)
        share = server_cpu / sending
        cost = server_cpu / m.cpu
        self.raw["a_check"] = {
            "naive_rows_per_s": N_A / m.wall,
            "naive_sending_s": sending,
            "simulator_cpu_s": server_cpu,
            "simulator_share_of_core": share,
            "simulator_cpu_over_client_cpu": cost,
            "naive_cpu_s": m.cpu,
            "ok": ok,
            "failed": failed,
        }
        bottleneck = share >= BOTTLENECK_SHARE or cost >= BOTTLENECK_COST
        self.note(
            f"(a) bottleneck check, naive against `bulk simulate` (its own process): "
            f"{N_A / m.wall:,.0f} rows/s wall; the simulator used {server_cpu:.2f} CPU-s in "
            f"naive's {sending:.2f} s of sending = {share:.0%} of one core "
            f"({server_cpu / N_A * 1e6:.0f} us/request, {cost:.2f}x the client's "
            f"{m.cpu / N_A * 1e6:.0f} us/row) -> the simulator "
            + (
                "IS the bottleneck (>= 80% of a core, or as costly per request as the client)"
                if bottleneck
                else "is not the bottleneck"
            )
        )
        return bottleneck

    def scenario_a(self, server: ServerProc, label: str) -> None:
        env = client_env(server.base_url)
        results: dict[str, Measured] = {}
        server_share = {}
        for tool in ("naive", "bulk", "curl"):
            if tool == "curl" and not self.curl:
                continue
            before = server.cpu()
            if tool == "naive":
                m = run_measured(naive_command(self.fast_a_in), env=env, timeout=60)
                ok = naive_counts(m.output)[0]
            elif tool == "bulk":
                report = self.work / "a-report.csv"
                m = run_measured(bulk_command(self.fast_a_in, report), env=env, timeout=120)
                ok = report_ok_rows(report) if report.exists() else 0
            else:
                m = run_measured(
                    curl_command(server.base_url), timeout=120, stdin_path=self.curl_in
                )
                ok = m.output.split().count("200")
            rows = N_CURL if tool == "curl" else N_A
            server_share[tool] = (server.cpu() - before) / m.wall
            results[tool] = m
            self.raw.setdefault("a", {})[tool] = {
                "rows": rows,
                "ok_rows": ok,
                "exit": m.code,
                "wall_s": m.wall,
                "cpu_s": m.cpu,
                "maxrss_kib": m.maxrss_kib,
                "server_share_of_core": server_share[tool],
            }
            log(
                f"(a) {tool}: {rows} rows in {m.wall:.2f} s, {m.cpu:.2f} CPU-s, "
                f"{ok} answered 200, exit {m.code}, server {server_share[tool]:.0%} of a core"
            )
            if ok != rows:
                self.note(f"(a) {tool}: only {ok} of {rows} rows answered 200 (exit {m.code})")
        self.note(
            f"(a) server: {label}; its CPU during each client's whole run: "
            + ", ".join(f"{k} {v:.0%}" for k, v in server_share.items())
            + " of one core"
        )

        def per(tool: str, fn: Any) -> float | None:
            return fn(results[tool]) if tool in results else None

        def rows_of(tool: str) -> int:
            return N_CURL if tool == "curl" else N_A

        rates = {t: per(t, lambda m, t=t: rows_of(t) / m.wall) for t in ("naive", "bulk", "curl")}
        cpus = {
            t: per(t, lambda m, t=t: m.cpu / rows_of(t) * 1e6) for t in ("naive", "bulk", "curl")
        }
        rss = {t: per(t, lambda m: m.maxrss_kib * 1024 / 1e6) for t in ("naive", "bulk", "curl")}
        scen = f"(a) no latency, {N_A:,} rows" + (f" (curl {N_CURL:,})" if self.curl else "")
        self.rows.append(Row(scen, "rows/s, whole process wall", *rates.values(), unit="/s"))
        assert cpus["naive"] is not None and cpus["bulk"] is not None
        self.rows.append(
            Row(
                scen,
                "client CPU us/row (user+sys)",
                *cpus.values(),
                target="<= 1.3x naive",
                met=cpus["bulk"] <= 1.3 * cpus["naive"],
            )
        )
        self.rows.append(Row(scen, "client peak RSS MB", *rss.values(), fmt="{:,.1f}"))

    def scenario_b(self) -> None:
        from bulk.simulator import SimConfig, Simulator, SimulatorThread, make_tickets

        tickets = make_tickets(N_B, seed=1)
        path = self.work / "b.csv"
        write_ids(path, [t["id"] for t in tickets])
        bound = CONCURRENCY / LATENCY_B
        shares: dict[str, float] = {}
        walls: dict[str, float] = {}
        for tool in ("naive", "bulk"):
            sim = Simulator(SimConfig(rate=None, latency=LATENCY_B), tickets)
            with SimulatorThread(sim, HOST) as server:
                env = client_env(server.base_url)
                if tool == "naive":
                    m = run_measured(naive_command(path), env=env, timeout=60)
                else:
                    m = run_measured(
                        bulk_command(path, self.work / "b.csv.report.csv"), env=env, timeout=60
                    )
            puts = sorted(r.at for r in sim.requests if r.method == "PUT")
            answered = sum(r.status == 200 for r in sim.requests if r.method == "PUT")
            span = puts[-1] - puts[0] + LATENCY_B
            shares[tool] = answered / span / bound
            walls[tool] = N_B / m.wall
            self.raw.setdefault("b", {})[tool] = {
                "rows": N_B,
                "answered_200": answered,
                "sending_span_s": span,
                "rows_per_s_sending": answered / span,
                "share_of_littles_bound": shares[tool],
                "wall_s": m.wall,
                "cpu_s": m.cpu,
                "exit": m.code,
            }
            log(
                f"(b) {tool}: {answered}/{N_B} answered 200 over {span:.2f} s of sending "
                f"= {answered / span:,.0f}/s ({shares[tool]:.1%} of {bound:.0f}/s); "
                f"whole process {m.wall:.2f} s, exit {m.code}"
            )
        scen = f"(b) latency 50 ms, c=64, {N_B:,} rows"
        self.rows.append(
            Row(
                scen,
                f"sending rate, % of Little's {bound:.0f}/s",
                shares["naive"] * 100,
                shares["bulk"] * 100,
                target=">= 90%",
                met=shares["bulk"] >= 0.90,
                fmt="{:.1f}%",
            )
        )
        self.rows.append(Row(scen, "rows/s, whole process wall", walls["naive"], walls["bulk"]))

    def scenario_plain(self, server: ServerProc) -> None:
        """(d) the server is the bottleneck: a plain asyncio server, as a new user would test.

        bulk and naive alternate, three runs each; each keeps its least CPU per row
        (the machine's noise only ever adds CPU). The server's ~2,700 answers/s on
        these cores means the client waits on most requests: what it spends per wait
        and per wake-up shows here, where the fast server of (a) hides it.
        """
        env = client_env(server.base_url)
        cpus: dict[str, list[float]] = {"naive": [], "bulk": []}
        for run in range(PLAIN_RUNS):
            for tool in ("naive", "bulk"):
                if tool == "naive":
                    m = run_measured(naive_command(self.fast_a_in), env=env, timeout=120)
                    ok = naive_counts(m.output)[0]
                else:
                    report = self.work / "plain-report.csv"
                    m = run_measured(bulk_command(self.fast_a_in, report), env=env, timeout=180)
                    ok = report_ok_rows(report) if report.exists() else 0
                cpus[tool].append(m.cpu / N_A * 1e6)
                self.raw.setdefault("plain", {}).setdefault(tool, []).append(
                    {"rows": N_A, "ok_rows": ok, "wall_s": m.wall, "cpu_s": m.cpu, "exit": m.code}
                )
                log(
                    f"(d) {tool} run {run + 1}: {N_A} rows in {m.wall:.2f} s "
                    f"({N_A / m.wall:,.0f}/s), {m.cpu / N_A * 1e6:.0f} us CPU/row, {ok} answered 200"
                )
                if ok != N_A:
                    self.note(f"(d) {tool}: only {ok} of {N_A} rows answered 200 (exit {m.code})")
        naive, bulk = min(cpus["naive"]), min(cpus["bulk"])
        self.rows.append(
            Row(
                f"(d) plain asyncio server, c={CONCURRENCY}, {N_A:,} rows, min of {PLAIN_RUNS}",
                "client CPU per row, us",
                naive,
                bulk,
                target="<= 1.2x baseline",
                met=bulk <= 1.2 * naive,
            )
        )

    def scenario_c(self) -> None:
        from bulk.simulator import SimConfig, Simulator, SimulatorThread, make_tickets

        tickets = make_tickets(N_C, seed=1, statuses=("new", "inProgress", "solved"))
        ids = [t["id"] for t in tickets]
        path = self.work / "c.csv"
        write_ids(path, ids)
        right: dict[str, int] = {}
        for tool in ("naive", "bulk"):
            config = SimConfig(rate=None, error_rate=0.05, drop_rate=0.02, seed=1)
            sim = Simulator(config, tickets)
            with SimulatorThread(sim, HOST) as server:
                env = client_env(server.base_url)
                if tool == "naive":
                    m = run_measured(naive_command(path), env=env, timeout=90)
                else:
                    m = run_measured(
                        bulk_command(path, self.work / "c.report.csv"), env=env, timeout=120
                    )
            right[tool] = sum(sim.status_of(i) == TARGET for i in ids)
            requests = sum(r.method == "PUT" for r in sim.requests)
            self.raw.setdefault("c", {})[tool] = {
                "rows": N_C,
                "rows_right": right[tool],
                "requests": requests,
                "server_status_counts": {str(k): v for k, v in sim.status_counts().items()},
                "wall_s": m.wall,
                "cpu_s": m.cpu,
                "exit": m.code,
            }
            log(
                f"(c) {tool}: {right[tool]}/{N_C} tickets end {TARGET!r}; {requests} PUTs in "
                f"{m.wall:.2f} s, exit {m.code}"
            )
        scen = f"(c) 5% 5xx + 2% drops, {N_C:,} rows"
        self.rows.append(
            Row(
                scen,
                "rows that end right, %",
                right["naive"] / N_C * 100,
                right["bulk"] / N_C * 100,
                target="100%",
                met=right["bulk"] == N_C,
                fmt="{:.2f}%",
            )
        )

    def memory(self, sim: ServerProc) -> None:
        env = client_env(sim.base_url)
        deadline = self.memory_deadline
        peaks: dict[int, float] = {}
        stopped: dict[int, str] = {}
        for n in MEMORY_SIZES:
            extra = ["--deadline", deadline] if n > MEMORY_SIZES[0] else []
            report = self.work / f"mem-{n}.report.csv"
            m = run_measured(bulk_command(self.memory_in[n], report, *extra), env=env, timeout=200)
            peaks[n] = m.maxrss_kib * 1024 / 1e6
            summary = [line for line in m.output.splitlines() if not line.startswith("bulk:")]
            report_rows = 0
            if report.exists():
                with open(report, "rb") as handle:
                    report_rows = sum(1 for _ in handle) - 1
            sent = re.search(r"requests: (\d+)", m.output)
            stopped[n] = (
                f"{n:,} rows: {'stopped by the deadline' if m.code == 3 else 'all sent'}"
                f" after {sent.group(1) if sent else '?'} requests, {m.wall:.0f} s in all"
            )
            self.raw.setdefault("memory", {})[str(n)] = {
                "peak_rss_mb": peaks[n],
                "wall_s": m.wall,
                "cpu_s": m.cpu,
                "exit": m.code,
                "report_rows": report_rows,
                "deadline": extra[1] if extra else None,
                "summary": summary,
            }
            log(
                f"memory {n:,}: peak RSS {peaks[n]:.1f} MB, {m.wall:.1f} s, exit {m.code}, "
                f"report rows {report_rows:,}; " + " | ".join(summary[:3])
            )
            if report_rows != n:
                self.note(f"memory {n:,}: the report has {report_rows:,} rows, not {n:,}")
            # 3: the deadline stopped it; 0: every row went before the deadline.
            expected = (3,) if n > MEMORY_KNOWN else (0, 3) if extra else (0,)
            if m.code not in expected:
                self.note(f"memory {n:,}: bulk run exited {m.code}, expected {expected}")
            report.unlink(missing_ok=True)
            for side in (".journal", ".run.json"):
                report.with_name(report.name.rsplit(".", 1)[0] + side).unlink(missing_ok=True)
        for n in MEMORY_SIZES:
            label = f"{n:,} rows" + (f", --deadline {deadline}" if n > MEMORY_SIZES[0] else "")
            is_top = n == MEMORY_SIZES[-1]
            self.rows.append(
                Row(
                    "memory: bulk run, real",
                    f"peak RSS MB, {label}",
                    bulk=peaks[n],
                    target="< 250" if is_top else "",
                    met=(peaks[n] < 250) if is_top else None,
                    fmt="{:,.1f}",
                )
            )
        growth = peaks[MEMORY_SIZES[-1]] - peaks[MEMORY_SIZES[-2]]
        self.rows.append(
            Row(
                "memory: bulk run, real",
                "peak RSS growth 100k -> 1M, MB",
                bulk=growth,
                target="< 80",
                met=growth < 80,
                fmt="{:,.1f}",
            )
        )
        self.note(
            f"memory: the 100k and 1M runs get --deadline {deadline}: bulk stops taking new "
            "rows after that long of sending, finishes those in flight and writes the full "
            "report from the journal (exit 3), so the peak covers reading + validating every "
            "row into the journal, a steady sending phase and rendering the whole report, not "
            "sending every row ("
            + "; ".join(stopped[n] for n in MEMORY_SIZES)
            + f"). The simulator knows the first {MEMORY_KNOWN:,} ids (answered 200); the "
            "rest are random UUIDs (404 if reached). MB = 10^6 bytes (ru_maxrss)."
        )

    def startup(self) -> None:
        def best(command: list[str]) -> float:
            times = []
            for _ in range(5):
                m = run_measured(command, timeout=30)
                if m.code != 0:
                    raise RuntimeError(f"{' '.join(command)} exited {m.code}:\n{m.output}")
                times.append(m.wall)
            return min(times)

        bulk = str(BULK_SCRIPT) if BULK_SCRIPT.exists() else None
        base = [bulk] if bulk else BULK
        naive_help = best([PYTHON, str(HERE / "naive.py"), "--help"])
        for flag in ("--help", "--version"):
            seconds = best([*base, flag])
            self.raw.setdefault("startup", {})[flag] = seconds
            self.rows.append(
                Row(
                    "start-up, best of 5",
                    f"`bulk {flag}` s (baseline: naive.py --help)",
                    naive_help,
                    seconds,
                    target="< 0.5 s",
                    met=seconds < 0.5,
                    fmt="{:.3f}",
                )
            )
        self.raw["startup"]["naive --help"] = naive_help


# -- output ------------------------------------------------------------------------------------


def render(rows: list[Row], curl: bool) -> str:
    head = [
        "scenario",
        "metric",
        "naive (baseline)",
        "bulk",
        "xargs+curl",
        "bulk/baseline",
        "target",
        "met?",
    ]
    if not curl:
        head[4] = "xargs+curl (no curl)"

    def cell(value: float | None, fmt: str) -> str:
        return "-" if value is None else fmt.format(value)

    body = []
    for r in rows:
        ratio = (
            f"{r.bulk / r.naive:.2f}x"
            if r.ratio and r.bulk is not None and r.naive not in (None, 0)
            else "-"
        )
        met = "-" if r.met is None else ("met" if r.met else "MISSED")
        body.append(
            [
                r.scenario,
                r.metric,
                cell(r.naive, r.fmt),
                cell(r.bulk, r.fmt),
                cell(r.curl, r.fmt),
                ratio,
                r.target or "-",
                met,
            ]
        )
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]
    right = {2, 3, 4, 5}

    def line(cells: list[str]) -> str:
        return " | ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([line(head), rule, *(line(b) for b in body)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--json", type=Path, default=HERE / "results" / "perf.json")
    parser.add_argument(
        "--memory-deadline",
        default=MEMORY_DEADLINE,
        help=f"bulk run --deadline for the 100k and 1M memory runs (default {MEMORY_DEADLINE})",
    )
    parser.add_argument("--fast-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--latency", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--plain-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--only", help="run only these parts: e.g. 'plain' (the plain-server CPU comparison)"
    )
    args = parser.parse_args()
    if args.fast_server:
        fast_server_main(args.port, args.latency)
        return 0
    if args.plain_server:
        plain_server_main(args.port)
        return 0

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bulk-perf-") as tmp:
        bench = Bench(Path(tmp), args.memory_deadline)
        if not bench.curl:
            bench.note("curl or xargs not found: the xargs+curl column is skipped")
        with bench.phase("simulator tickets"):
            bench.simulator_tickets()
        if args.only == "plain":
            bench.fast_a_in = bench.work / "a.csv"
            write_ids(bench.fast_a_in, bench.known_ids[:N_A])
            plain_port = free_port()
            plain_cmd = [PYTHON, str(Path(__file__).resolve()), "--plain-server",
                         "--port", str(plain_port)]  # fmt: skip
            with (
                bench.phase("(d) plain asyncio server"),
                server_process(plain_cmd, plain_port, bench.work / "plain.log") as plain,
            ):
                bench.scenario_plain(plain.ready())
            print(render(bench.rows, bench.curl))
            return 0
        port = free_port()
        sim_cmd = simulator_command(port, bench.sim_tickets)
        with server_process(sim_cmd, port, bench.work / "sim.log") as sim:
            with bench.phase("inputs, while the simulator starts"):
                bench.inputs()
                sim.ready()
            log(f"simulator ({MEMORY_KNOWN:,} tickets) at {sim.base_url}")
            with bench.phase("(a) bottleneck check"):
                bottleneck = bench.scenario_a_check(sim)
            with bench.phase("(a)"):
                if bottleneck:
                    fast_port = free_port()
                    fast_cmd = [PYTHON, str(Path(__file__).resolve()), "--fast-server",
                                "--port", str(fast_port)]  # fmt: skip
                    with server_process(fast_cmd, fast_port, bench.work / "fast.log") as fast:
                        bench.scenario_a(
                            fast.ready(),
                            "the bench's own minimal asyncio server (the simulator was the "
                            "bottleneck), its own process",
                        )
                else:
                    bench.scenario_a(sim, "`bulk simulate`, its own process")
            with bench.phase("(d) plain asyncio server"):
                plain_port = free_port()
                plain_cmd = [PYTHON, str(Path(__file__).resolve()), "--plain-server",
                             "--port", str(plain_port)]  # fmt: skip
                with server_process(plain_cmd, plain_port, bench.work / "plain.log") as plain:
                    bench.scenario_plain(plain.ready())
            with bench.phase("(b)"):
                bench.scenario_b()
            with bench.phase("(c)"):
                bench.scenario_c()
            with bench.phase("memory"):
                bench.memory(sim)
        with bench.phase("start-up"):
            bench.startup()
    elapsed = time.perf_counter() - started
    table = render(bench.rows, bench.curl)
    print(table)
    print()
    for text in bench.notes:
        print(f"- {text}")
    print(f"- perf.py ran {elapsed:.0f} s on {os.cpu_count()} cores")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "rows": [r.__dict__ for r in bench.rows],
                "notes": bench.notes,
                "raw": bench.raw,
                "elapsed_s": elapsed,
                "cpus": os.cpu_count(),
                "python": sys.version.split()[0],
            },
            indent=2,
        )
    )
    print(f"- results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
