"""The hot path's shortcuts give what the long way gave (issue 11: CPU per row)."""

from __future__ import annotations

import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from bulk import Credentials
from bulk.send import TicketClient
from bulk.send._clock import utc_stamp
from bulk.simulator import Simulator

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _long_way(ns: int) -> str:
    # datetime.now(UTC) floors the clock to microseconds; isoformat cuts to milliseconds.
    moment = _EPOCH + timedelta(microseconds=ns // 1000)
    return moment.isoformat(timespec="milliseconds")


def test_finished_at_is_what_datetime_formatted() -> None:
    pick = random.Random(11)
    base = 1_780_000_000 * 10**9
    # Within one second (the cached prefix), across seconds, minutes, days and
    # years, and at the edges of a millisecond and of a second.
    moments = [base + pick.randrange(10**9) for _ in range(200)]
    moments += [base + pick.randrange(400 * 86_400 * 10**9) for _ in range(200)]
    moments += [base - 1, base, base + 999_999, base + 1_000_000, base + 10**9 - 1]
    moments += [1_798_761_599_999_999_999, 1_798_761_600_000_000_000]  # New Year 2027
    for ns in moments:
        assert utc_stamp(ns) == _long_way(ns), ns


def test_finished_at_now_reads_the_clock() -> None:
    before = datetime.now(UTC)
    stamp = datetime.fromisoformat(utc_stamp())
    after = datetime.now(UTC)
    assert before - timedelta(milliseconds=1) <= stamp <= after
    assert stamp.tzinfo is not None and stamp.utcoffset() == timedelta(0)


async def test_the_status_put_sends_the_same_headers_as_before(
    server: str, creds: Credentials, sim: Simulator
) -> None:
    # The body now carries its own Content-Type instead of a per-request
    # `headers=`; what reaches the server must not change.
    ticket = next(t for t, v in sim.tickets.items() if v["status"] == "new")
    async with TicketClient(server, creds) as client:
        answer = await client.set_status(ticket, "closed")
    assert answer.http_status == 200 and sim.status_of(ticket) == "closed"
    (request,) = sim.requests
    assert request.body == b'{"ticket":{"status":"closed"}}'
    assert request.headers["content-type"] == "application/json"
    assert request.headers["content-length"] == str(len(request.body))
    assert request.headers["accept"] == "application/json"
    assert request.headers["accept-encoding"] == "identity"
    assert request.headers["authorization"] == "Basic [redacted]"
    assert "transfer-encoding" not in request.headers


def test_the_command_tunes_the_collector_and_the_library_does_not() -> None:
    # In a process of its own: the collector's settings are the process's. A subcommand's
    # --help, so the group runs its own code first (--version would exit before it).
    code = """
import gc, sys
from bulk.cli import console, main
sys.argv = ["bulk", "runs", "--help"]
before = gc.get_threshold()[0]
for entry in (main, console):
    try:
        entry()
    except SystemExit:
        pass
    print("threshold", gc.get_threshold()[0])
print("threshold", before)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    in_process, as_command, before = (
        line.split()[1] for line in done.stdout.splitlines() if line.startswith("threshold")
    )
    assert in_process == before != as_command == "50000"
