"""The sending step: the client, the engine, and what may stop it (signals, the deadline)."""

from __future__ import annotations

import contextlib
import logging

import anyio

from .._core._config import Credentials
from .._core._rates import AUTO, DOCUMENTED_RATE, Rate
from ..journal import Journal
from ..send import (
    Engine,
    EngineSettings,
    Pacer,
    Progress,
    RateController,
    Stats,
    TicketClient,
)
from ._options import RunOptions
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


async def send_all(
    journal: Journal,
    options: RunOptions,
    base_url: str,
    credentials: Credentials,
    stats: Stats,
    progress: Progress,
    handle_signals: bool,
    controller: RateController | None = None,
    client: TicketClient | None = None,
) -> str | None:
    """Send every pending row (up to --limit); return why the run stopped early, if it did."""
    from ..send import Reader, resolving

    engine_settings = settings(options)
    own = client is None  # the run's session when it has one (reads and writes share it)
    if client is None:
        client = TicketClient(
            base_url, credentials, concurrency=engine_settings.workers, timeout=options.timeout
        )
    async with client if own else contextlib.nullcontext(client):
        pace = controller or rate_controller(options.rate)
        # A 400 is resolved by one read of the ticket, in the same budget.
        reader = Reader(client, pace, max_attempts=options.max_attempts)
        put = resolving(client.set_status, reader)
        engine = Engine(journal, put, pace, engine_settings, stats)
        progress.start(stats)
        try:
            with anyio.CancelScope() as hard_stop:
                async with anyio.create_task_group() as tg:
                    if handle_signals:
                        tg.start_soon(watch_signals, engine, hard_stop)
                    if options.deadline:
                        tg.start_soon(_deadline, engine, options.deadline)
                    tg.start_soon(_tick, progress, stats)
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
    return engine.stop_reason
