"""The sending step: the client, the engine, and what may stop it (signals, the deadline)."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import uuid
from collections.abc import Mapping
from datetime import datetime

import anyio

from .._core._config import Credentials
from .._core._rates import AUTO, DOCUMENTED_RATE, Rate
from ..journal import ChangeLog, Journal
from ..send import (
    ChangeRunner,
    Engine,
    EngineSettings,
    Pacer,
    PerSecond,
    Progress,
    RateController,
    Stats,
    TicketClient,
)
from ._options import MAX_TIMEOUT, RunOptions
from ._signals import watch_signals
from ._summary import INTERRUPTED

__all__ = ["rate_controller", "send_all", "settings"]

log = logging.getLogger("bulk")


def rate_controller(rate: Rate | str) -> RateController:
    """The pace for `rate` as `parse_rate` returns it (a float, 'auto', or None: unpaced)."""
    if rate == AUTO:
        # The documented limit is the starting point; the ceiling is found by probing.
        return RateController(Pacer(None), None, start=DOCUMENTED_RATE)
    return RateController(Pacer(None), rate if isinstance(rate, int | float) else None)


async def _tick(progress: Progress, stats: Stats) -> None:
    while True:
        await anyio.sleep(0.25)
        progress.update(stats)


async def _deadline(engine: Engine, seconds: float) -> None:
    await anyio.sleep(seconds)
    engine.stop(f"stopped: deadline reached (--deadline {_duration_text(seconds)})")


def _duration_text(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def settings(options: RunOptions) -> EngineSettings:
    return EngineSettings(
        concurrency=options.concurrency,
        max_attempts=options.max_attempts,
        backoff_base=options.backoff_base,
        backoff_max=options.backoff_max,
        max_failure_rate=options.max_failure_rate,
        limit=options.limit,
    )


def _engine(
    journal: Journal,
    client: TicketClient,
    pace: RateController,
    options: RunOptions,
    engine_settings: EngineSettings,
    stats: Stats,
    seconds: PerSecond,
    expected: Mapping[str, str] | None = None,
    owed: Mapping[str, str] | None = None,
) -> Engine:
    from ..send import Reader, guarding, resolving

    # A 400 is resolved by one read of the ticket, in the same budget.
    reader = Reader(client, pace, max_attempts=options.max_attempts)
    put = resolving(client.set_status, reader)
    if expected:  # an undo: a PUT that overwrote a later change puts it back

        async def owe(ticket_id: str, status: str) -> None:
            try:
                await anyio.to_thread.run_sync(journal.owe_put_back, ticket_id, status)
            except sqlite3.Error as exc:  # the put-back goes out anyway, unrecorded
                log.warning("the journal could not record a put-back owed (%s)", exc)

        put = guarding(put, expected, pace, options.max_attempts, owe=owe, owed=owed)
    return Engine(journal, put, pace, engine_settings, stats, seconds)


async def _guard(
    journal: Journal, expected: Mapping[str, str] | None, changes_since: datetime | None
) -> tuple[Mapping[str, str] | None, Mapping[str, str] | None]:
    """What an undo's PUTs are checked against, and the put-backs a killed run owes."""
    # Not in an undo of a batch of changes: there the status goes last, after the
    # assignee and type were put back, so a put-back would leave the row half undone.
    if not expected or changes_since is not None:
        return None, None
    return expected, await anyio.to_thread.run_sync(journal.put_backs_owed)


def _run_changes(
    engine: Engine,
    client: TicketClient,
    journal: Journal,
    changes_since: datetime | None,
    force: bool = False,
) -> ChangeLog | None:
    """For a batch of changes, hand the engine's rows to a change runner; its log to close."""
    from ..send import ChangeClient

    if changes_since is None:
        return None
    assert isinstance(client, ChangeClient)
    change_log = ChangeLog(journal.path)
    # Planned with --fresh over a journal that had posted comments: read before each POST.
    meta = journal.meta()
    check_first = meta.get("comments_since") is not None
    # The longest --timeout any run of this journal sent with: a POST a killed run left at
    # the server may land that long after (a rerun with a shorter one posted 10 of 10 again).
    earlier = meta.get("post_timeout")
    if not isinstance(earlier, int | float) or not 0 < earlier <= MAX_TIMEOUT:
        earlier = 0.0  # the journal is a file: a value no run could have set is ignored
    longest = max(client.timeout, earlier)
    journal.set_meta(post_timeout=longest)
    in_flight = meta.get("post_in_flight")  # --fresh over a journal killed mid-POST
    ChangeRunner(
        engine,
        client,
        change_log,
        changes_since,
        check_first,
        guard=not force,
        timeout=longest,
        in_flight_at=in_flight if isinstance(in_flight, str) else None,
    )
    return change_log


async def send_all(
    journal: Journal,
    options: RunOptions,
    base_url: str,
    credentials: Credentials,
    stats: Stats,
    progress: Progress,
    handle_signals: bool,
    controller: RateController | None = None,
    changes_since: datetime | None = None,
    client: TicketClient | None = None,
    expected: Mapping[str, str] | None = None,
) -> str | None:
    """Send every pending row (up to --limit); return why the run stopped early, if it did.

    A batch of changes (`changes_since` set) sends through the change runner. `expected`
    (an undo): ticket -> the status its batch set, which each PUT's answer must show.
    """
    from ..send import ChangeClient

    engine_settings = settings(options)
    pace = controller or rate_controller(options.rate)
    own = client is None  # the run's session when it has one (reads and writes share it)
    if client is None:
        client = ChangeClient(
            base_url,
            credentials,
            concurrency=engine_settings.workers,
            timeout=options.timeout,
            budget=pace,
        )
    async with client if own else contextlib.nullcontext(client):
        seconds = PerSecond(uuid.uuid4().hex, lambda: pace.rate)
        guarded, owed = await _guard(journal, expected, changes_since)
        engine = _engine(
            journal, client, pace, options, engine_settings, stats, seconds, guarded, owed
        )
        change_log = _run_changes(engine, client, journal, changes_since, options.force)
        progress.start(stats)
        try:
            with anyio.CancelScope() as hard_stop:
                async with anyio.create_task_group() as tg:
                    if handle_signals:
                        tg.start_soon(watch_signals, engine, hard_stop)
                    if options.deadline:
                        tg.start_soon(_deadline, engine, options.deadline)
                    tg.start_soon(_tick, progress, stats)
                    tg.start_soon(seconds.run, journal)
                    await engine.run()
                    tg.cancel_scope.cancel()
            if hard_stop.cancelled_caught:
                engine.stop(INTERRUPTED)
        except BaseException:
            engine.stop(INTERRUPTED)
            raise
        finally:
            stats.concurrency = engine.concurrency
            stats.final_rate = engine.rate
            progress.stop(stats)
            if change_log is not None:
                change_log.close()
    return engine.stop_reason
