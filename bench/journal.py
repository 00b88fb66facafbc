"""What the journal costs: one 20,000-row batch at unlimited rate, sent twice in one run.

Once with the real journal (every dispatch and outcome committed, WAL,
synchronous=FULL) and once with a journal that drops the outcomes instead of
writing them; the same simulator process answers both. Prints wall time and
this process's CPU time (the journal's writer thread included) per row.

    python bench/journal.py [--rows 20000] [--concurrency 64] [--per-second]

`--per-second` adds a third run: the real journal with the engine's
per-second counters (bulk.send.PerSecond, one `seconds` row a second), as
`bulk run` sends.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from _common.servers import free_port

from bulk import Credentials
from bulk.input import open_source
from bulk.journal import Journal, Outcome
from bulk.plan import plan_chunk
from bulk.send import Engine, EngineSettings, Pacer, PerSecond, RateController, TicketClient
from bulk.simulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, make_tickets, write_tickets


class NoCommitJournal(Journal):
    """Feeds rows like the real one but never writes an outcome."""

    def mark_started(self, row: int) -> None:
        pass

    def record(self, outcome: Outcome) -> None:
        pass


class PerSecondJournal(Journal):
    """The real journal, sent to with the per-second counters on (see send_all)."""


async def send_all(journal: Journal, url: str, concurrency: int) -> None:
    creds = Credentials.basic(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    settings = EngineSettings(concurrency=concurrency)
    async with TicketClient(url, creds, concurrency=concurrency) as client:
        pace = RateController(Pacer(None), None)
        seconds = PerSecond("bench", lambda: pace.rate)
        counted = isinstance(journal, PerSecondJournal)
        engine = Engine(
            journal, client.set_status, pace, settings, None, seconds if counted else None
        )
        journal.start_writer()
        async with anyio.create_task_group() as tg:
            if isinstance(journal, PerSecondJournal):
                tg.start_soon(seconds.run, journal)
            await engine.run()
            tg.cancel_scope.cancel()
        await anyio.to_thread.run_sync(journal.close_writer)


def measure(
    kind: type[Journal], folder: Path, tickets: Path, url: str, conc: int
) -> tuple[float, float]:
    journal = kind(folder / f"{kind.__name__}.journal")
    source = open_source(tickets, need_status=False)
    for chunk in source.chunks():
        journal.add_planned(plan_chunk(chunk, source.id_column, "", "closed"))
    journal.settle_duplicates()
    wall, cpu = time.perf_counter(), time.process_time()
    anyio.run(send_all, journal, url, conc)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    journal.close()
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--url", help="an API (or bench/perf.py --fast-server) already running")
    parser.add_argument("--per-second", action="store_true", help="also with per-second counters")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tickets = folder / "tickets.csv"
        write_tickets(make_tickets(args.rows, seed=1), tickets)
        if args.url:
            results = {
                "journal": measure(Journal, folder, tickets, args.url, args.concurrency),
                "no commits": measure(NoCommitJournal, folder, tickets, args.url, args.concurrency),
            }
            report(results, args.rows)
            return
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "bulk", "simulate", "--port", str(port),
             "--tickets", str(tickets), "--rate", "unlimited"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        try:
            assert server.stdout is not None
            server.stdout.readline()
            url = f"http://127.0.0.1:{port}"
            results = {
                "journal": measure(Journal, folder, tickets, url, args.concurrency),
                "no commits": measure(NoCommitJournal, folder, tickets, url, args.concurrency),
            }
            if args.per_second:
                results["per-second"] = measure(
                    PerSecondJournal, folder, tickets, url, args.concurrency
                )
        finally:
            server.terminate()
            server.wait(timeout=10)
    report(results, args.rows)


def report(results: dict[str, tuple[float, float]], rows: int) -> None:
    base_wall, base_cpu = results["no commits"]
    for name, (wall, cpu) in results.items():
        print(
            f"{name:<11} {rows} rows: wall {wall:6.2f}s ({rows / wall:7.0f} rows/s), "
            f"CPU {cpu * 1e6 / rows:6.0f} us/row; "
            f"x{wall / base_wall:.2f} wall, x{cpu / base_cpu:.2f} CPU vs no commits"
        )


if __name__ == "__main__":
    main()
