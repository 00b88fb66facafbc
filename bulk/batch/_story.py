"""One batch from input to report: open, plan, journal, send, report, audit.

`execute()` is what the CLI calls; `run()`/`run_async()` are the library
face and return the report as a DataFrame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from ._core._config import Credentials, resolve_target
from ._core._exceptions import JobLocked, UsageError
from ._core._exit import ExitCode
from ._core._files import JobLock, beside
from ._engine import Engine, EngineSettings, Stats
from ._pacing import Pacer, RateController
from ._progress import NoProgress, Progress
from ._version import __version__
from .input import Source, open_source
from .journal import REPORT_COLUMNS, Journal
from .plan import checked_map, checked_status, plan_chunk
from .report import check_outputs, check_report_path, report_frame, write_audit, write_report

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RunOptions", "RunSummary", "execute", "run", "run_async"]

log = logging.getLogger("bulk")

INTERRUPTED = "interrupted"
DOCUMENTED_RATE = 10.0


@dataclass
class RunOptions:
    status: str | None = None
    id_column: str | None = None
    status_column: str | None = None
    report: Path | None = None
    base_url: str | None = None
    rate: float | str | None = 10.0  # None: no pacing; "auto": start at 10/s, find the limit
    concurrency: int | None = None  # None: 8 at first, then from latency (Little's law), <= 64
    max_attempts: int = 6
    timeout: float = 30.0
    dry_run: bool = False
    fresh: bool = False
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_failure_rate: float = 0.2
    limit: int | None = None
    deadline: float | None = None  # seconds from the start of sending
    # Migration: target status by legacy value of the status column (never guessed).
    status_map: dict[str, str] | None = None

    def check(self) -> None:
        if self.rate == "unlimited":
            self.rate = None
        if isinstance(self.rate, str) and self.rate != "auto":
            raise UsageError(f"--rate {self.rate!r}: a number, 'auto' or 'unlimited'")
        if isinstance(self.rate, (int, float)) and not 0 < self.rate < float("inf"):
            raise UsageError("--rate must be a positive number")
        if self.concurrency is not None and self.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        if not 0 <= self.max_failure_rate <= 1:
            raise UsageError("--max-failure-rate must be between 0 and 1")
        if self.limit is not None and self.limit < 0:
            raise UsageError("--limit must not be negative")
        if self.deadline is not None and self.deadline <= 0:
            raise UsageError("--deadline must be positive")
        if self.max_attempts < 1:
            raise UsageError("--max-attempts must be at least 1")
        if self.timeout <= 0:
            raise UsageError("--timeout must be positive")
        if self.status is not None:
            self.status = checked_status(self.status)
        if self.status_map is not None:
            if self.status is not None:
                raise UsageError("give either a status or a status map, not both")
            self.status_map = checked_map(self.status_map)
        if self.report is not None:
            self.report = Path(self.report)
            check_report_path(self.report)


@dataclass
class RunSummary:
    report: Path
    audit: Path
    rows: int
    outcomes: dict[str, int]
    pending: int
    http_status: dict[str, int]
    requests: int
    retries: int
    elapsed: float
    exit_code: int
    dry_run: bool = False
    stop_reason: str | None = None
    already_final: int = 0
    resent: int = 0
    sent_this_run: int = 0
    throttled: int = 0
    concurrency: int | None = None
    final_rate: float | None = None
    frame: Any = field(default=None, repr=False)

    @property
    def effective_rate(self) -> float:
        return self.sent_this_run / self.elapsed if self.elapsed > 0 else 0.0

    def lines(self) -> list[str]:
        order = ("updated", "unchanged", "failed", "invalid", "skipped")
        counts = {k: self.outcomes.get(k, 0) for k in order}
        if self.pending:
            counts["skipped"] += self.pending
        out = [
            f"rows: {self.rows}  " + "  ".join(f"{k}: {v}" for k, v in counts.items()),
        ]
        if self.http_status:
            out.append(
                "last http status (rows): "
                + "  ".join(f"{k}: {v}" for k, v in self.http_status.items())
            )
        out.append(
            f"requests: {self.requests}  retries: {self.retries}  "
            f"elapsed: {self.elapsed:.1f}s  effective rate: {self.effective_rate:.1f}/s"
        )
        if self.throttled:
            rate = f"{self.final_rate:.1f}/s" if self.final_rate else "unpaced"
            out.append(f"throttled (429): {self.throttled}  pace at the end: {rate}")
        if self.already_final:
            out.append(f"resumed: {self.already_final} rows were already final")
        if self.stop_reason:
            out.append(f"stopped early: {self.stop_reason}")
        out.append(f"report: {self.report.resolve()}")
        return out


def default_report(source: Source, fingerprint: str, dry_run: bool) -> Path:
    stem = source.path.stem if source.path is not None else f"dataframe-{fingerprint[:12]}"
    return Path("reports") / f"{stem}.{'dry-run' if dry_run else 'report'}.csv"


def _exit_code(counts: Mapping[str, Any], stop_reason: str | None, held_back: bool) -> ExitCode:
    """`held_back`: rows left unsent on purpose (dry run, --limit) do not count as unsent."""
    if not counts["pending"]:
        stop_reason = None  # stopped as the last rows finished: nothing was left undone
    if stop_reason == INTERRUPTED:
        return ExitCode.INTERRUPTED
    if stop_reason:
        return ExitCode.STOPPED
    bad = counts["outcomes"].get("failed", 0) + counts["outcomes"].get("invalid", 0)
    if bad or (counts["pending"] and not held_back):
        return ExitCode.ROWS
    return ExitCode.OK


def _plan(
    journal: Journal, source: Source, options: RunOptions, stop: threading.Event | None = None
) -> int:
    rows = 0
    for chunk in source.chunks():
        _check_interrupt(stop)
        planned = list(
            plan_chunk(
                chunk, source.id_column, source.status_column, options.status, options.status_map
            )
        )
        journal.add_planned(planned)
        rows += len(planned)
    if rows == 0:
        raise UsageError(f"{source.name}: no data rows (only a header, or an empty file)")
    _check_interrupt(stop)
    journal.settle_duplicates()
    return rows


def _check_interrupt(stop: threading.Event | None) -> None:
    # The plan counts only once `planned` is set in the journal's meta, so
    # stopping here leaves a journal the next run plans afresh.
    if stop is not None and stop.is_set():
        raise UsageError(
            "interrupted while checking the input: nothing was sent "
            "(run the same command again to start)",
            exit_code=ExitCode.INTERRUPTED,
        )


class _Interrupts:
    """SIGINT and SIGTERM while planning or writing the report: noted, acted on when safe.

    Both are blocking work in a worker thread, where a signal's default action
    would end the process halfway (a scheduler's stop leaving no report). While
    `deferred`, the first signal only sets `requested`: planning checks it
    between chunks, the report is finished and the run then exits 130. A second
    one ends the process at once (the journal is SQLite in WAL mode: safe to
    kill). While `suspended` (the confirmation prompt, sending) the usual
    handlers act: Ctrl-C at the prompt, the engine's graceful stop.
    """

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.requested = threading.Event()
        self.then = "stopping before anything is sent"
        self._outer: dict[int, Any] = {}

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.requested.is_set():
            log.warning("second interrupt: stopping now")
            os._exit(ExitCode.INTERRUPTED)
        self.requested.set()
        log.warning("interrupt: %s (interrupt again to stop at once)", self.then)

    def _install(self, handlers: Mapping[int, Any]) -> None:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        self._outer = {sig: signal.getsignal(sig) for sig in self._SIGNALS}
        self._install(dict.fromkeys(self._SIGNALS, self._on_signal))
        try:
            yield
        finally:
            self._install(self._outer)

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        self._install(self._outer)
        try:
            yield
        finally:
            self._install(dict.fromkeys(self._SIGNALS, self._on_signal))


async def _watch_signals(engine: Engine, scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            if engine.stopping:
                log.warning("second interrupt: stopping now")
                scope.cancel()
                return
            log.warning(
                "interrupt: finishing requests in flight, then writing the report "
                "(interrupt again to stop at once)"
            )
            engine.stop(INTERRUPTED)


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


def rate_controller(rate: float | str | None) -> RateController:
    if rate == "auto":
        # The documented limit is the starting point; the ceiling is found by probing.
        return RateController(Pacer(None), None, start=DOCUMENTED_RATE)
    return RateController(Pacer(None), rate if isinstance(rate, (int, float)) else None)


async def _send_all(
    journal: Journal,
    options: RunOptions,
    base_url: str,
    credentials: Credentials,
    stats: Stats,
    progress: Progress,
    handle_signals: bool,
) -> str | None:
    from .send import TicketClient

    settings = EngineSettings(
        concurrency=options.concurrency,
        max_attempts=options.max_attempts,
        backoff_base=options.backoff_base,
        backoff_max=options.backoff_max,
        max_failure_rate=options.max_failure_rate,
        limit=options.limit,
    )
    client = TicketClient(
        base_url, credentials, concurrency=settings.workers, timeout=options.timeout
    )
    async with client:
        engine = Engine(journal, client.set_status, rate_controller(options.rate), settings, stats)
        progress.start(stats)
        try:
            with anyio.CancelScope() as hard_stop:
                async with anyio.create_task_group() as tg:
                    if handle_signals:
                        tg.start_soon(_watch_signals, engine, hard_stop)
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


async def execute(
    source: str | Path | pd.DataFrame,
    options: RunOptions,
    *,
    credentials: Credentials | None = None,
    progress: Progress | None = None,
    handle_signals: bool = False,
    collect: bool = False,
    derived_from: dict[str, Any] | None = None,
    confirm: Callable[[int, str], bool] | None = None,
    input_sha256: str | None = None,
) -> RunSummary:
    """Run one batch; raise `UsageError` (exit 2) before anything is sent if the input is bad.

    `handle_signals` (the CLI, in the main thread): SIGINT/SIGTERM end the run
    with exit 130 and a consistent journal whenever they come. `input_sha256`:
    the input file must hold exactly these bytes (a job's batch input, as
    bulk wrote it), before and after it is read.
    """
    interrupts = _Interrupts(handle_signals)
    with interrupts.deferred():
        return await _execute(
            source,
            options,
            interrupts,
            credentials,
            progress,
            collect,
            derived_from,
            confirm,
            input_sha256,
        )


async def _execute(
    source: str | Path | pd.DataFrame,
    options: RunOptions,
    interrupts: _Interrupts,
    credentials: Credentials | None,
    progress: Progress | None,
    collect: bool,
    derived_from: dict[str, Any] | None,
    confirm: Callable[[int, str], bool] | None,
    input_sha256: str | None,
) -> RunSummary:
    """Run one batch; raise `UsageError` (exit 2) before anything is sent if the input is bad."""
    handle_signals = interrupts.enabled
    began, started_at = time.monotonic(), datetime.now(UTC)
    options.check()
    progress = progress or NoProgress()
    src = await anyio.to_thread.run_sync(
        lambda: open_source(
            source,
            id_column=options.id_column,
            status_column=options.status_column,
            need_status=options.status is None,
        )
    )
    fingerprint = await anyio.to_thread.run_sync(src.fingerprint)
    _check_written(src, fingerprint, input_sha256)
    target = resolve_target(options.base_url, credentials, need_credentials=not options.dry_run)
    log.info(target.describe(dry_run=options.dry_run))
    for warning in target.warnings:
        log.warning(warning)
    base_url, credentials = target.base_url, target.credentials
    report = options.report or default_report(src, fingerprint, options.dry_run)
    # A batch made from a report (retry, undo) must not overwrite that report.
    earlier = Path(derived_from["report"]) if derived_from and derived_from.get("report") else None
    check_outputs(report, src.path or earlier, options.dry_run)
    meaning = {
        "input_sha256": fingerprint,
        "id_column": src.id_column,
        "status_column": src.status_column,
        "status": options.status,
        "status_map": options.status_map,
        "base_url": base_url,
    }
    scratch = tempfile.TemporaryDirectory(prefix="bulk-dry-") if options.dry_run else None
    journal_path = Path(scratch.name) / "journal" if scratch else beside(report, ".journal")
    # Two processes on one journal would send the same pending rows twice.
    lock = None if scratch else JobLock(beside(report, ".lock"), "a run of this report")
    if lock is not None:
        try:
            lock.acquire()
        except JobLocked as exc:
            raise UsageError(str(exc), exit_code=JobLocked.exit_code) from None
    journal = Journal(journal_path)
    try:
        meta = journal.meta()
        already_final = resent = 0
        resuming = False
        if options.fresh or not meta.get("planned"):
            journal.clear()
            await anyio.to_thread.run_sync(_plan, journal, src, options, interrupts.requested)
            if input_sha256 is not None:  # the file was read twice: hashed, then planned
                _check_written(src, await anyio.to_thread.run_sync(src.fingerprint), input_sha256)
            journal.set_meta(
                planned=True,
                meaning=meaning,
                batch_id=uuid.uuid4().hex,
                created_at=started_at.isoformat(),
            )
            meta = journal.meta()
        elif meta.get("meaning") != meaning:
            changed = [k for k, v in meaning.items() if meta.get("meaning", {}).get(k) != v]
            raise UsageError(
                f"{journal_path} belongs to an earlier run of {report} with a different "
                f"{', '.join(changed)}; rerun with --fresh to start over, "
                "or choose another --report"
            )
        else:
            resuming = True
            resent = journal.reopen_in_flight()
        # One count serves the resume message, the progress total and the dry run
        # (a count reads every row: half a second at a million).
        counts = await anyio.to_thread.run_sync(journal.counts)
        if resuming:
            already_final = counts["rows"] - counts["pending"]
            if counts["pending"]:
                log.info(
                    "resuming: %d of %d rows already final%s",
                    already_final,
                    counts["rows"],
                    f" ({resent} in flight at the interruption will be sent again)"
                    if resent
                    else "",
                )
            else:
                log.info(
                    "nothing to send: every row of %s is already final "
                    "(rerun with --fresh to send the batch again)",
                    report,
                )
        to_send = counts["pending"]
        if options.limit is not None:
            to_send = min(to_send, options.limit)
        stats = Stats(total=to_send)
        stop_reason: str | None = None
        if interrupts.requested.is_set():
            stop_reason = INTERRUPTED  # after planning: nothing sent, the report is written
        elif options.dry_run:
            _describe_dry_run(counts, options, base_url)
        elif (
            counts["pending"]
            and confirm is not None
            and not _ask(
                confirm,
                interrupts,
                min(counts["pending"], options.limit or counts["pending"]),
                base_url,
            )
        ):
            stop_reason = "stopped: not confirmed"
        elif counts["pending"]:
            assert credentials is not None
            journal.start_writer()
            try:
                with interrupts.suspended():  # the engine's graceful stop takes over
                    stop_reason = await _send_all(
                        journal, options, base_url, credentials, stats, progress, handle_signals
                    )
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(journal.close_writer)
        interrupts.then = "finishing the report, then stopping"
        counts = journal.counts()
        held_back = options.dry_run or (options.limit is not None and stop_reason is None)
        exit_code = _exit_code(counts, stop_reason, held_back)
        if options.dry_run:
            pending_reason = "dry run"
        elif stop_reason:
            pending_reason = stop_reason
        elif options.limit is not None:
            pending_reason = f"not sent: --limit {options.limit}"
        else:
            pending_reason = "not sent"
        columns = REPORT_COLUMNS + (("source_row",) if src.derived else ())
        await anyio.to_thread.run_sync(
            lambda: write_report(journal, report, pending_reason=pending_reason, columns=columns)
        )
        if interrupts.requested.is_set():
            exit_code = ExitCode.INTERRUPTED  # a signal while the report was written
        frame = report_frame(journal, pending_reason, columns) if collect else None
        summary = RunSummary(
            report=report,
            audit=beside(report, ".run.json"),
            rows=counts["rows"],
            outcomes=counts["outcomes"],
            pending=counts["pending"],
            http_status=counts["http_status"],
            requests=counts["requests"],
            retries=counts["retries"],
            elapsed=time.monotonic() - began,
            exit_code=exit_code,
            dry_run=options.dry_run,
            stop_reason=stop_reason,
            already_final=already_final,
            resent=resent,
            sent_this_run=stats.requests,
            throttled=stats.throttled,
            concurrency=stats.concurrency,
            final_rate=stats.final_rate,
            frame=frame,
        )
        if not options.dry_run:
            if not counts["pending"]:
                journal.set_meta(complete=True)
            write_audit(
                summary.audit,
                {
                    "run_id": uuid.uuid4().hex,
                    "batch_id": meta.get("batch_id"),
                    "tool": f"bulk {__version__}",
                    "started_at": started_at.isoformat(),
                    "ended_at": datetime.now(UTC).isoformat(),
                    "input": src.name,
                    "input_sha256": fingerprint,
                    "report": str(report),
                    "journal": str(journal_path),
                    "options": {
                        k: (str(v) if isinstance(v, Path) else v)
                        for k, v in asdict(options).items()
                    },
                    "counts": counts,
                    "requests_this_run": stats.requests,
                    "retries_this_run": stats.retries,
                    "throttled_this_run": stats.throttled,
                    "concurrency": stats.concurrency,
                    "final_rate": stats.final_rate,
                    "resumed": {"already_final": already_final, "resent": resent}
                    if already_final or resent
                    else None,
                    "stop_reason": stop_reason,
                    "derived_from": derived_from,
                    "exit_code": exit_code,
                },
            )
        return summary
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(journal.close)
        if lock is not None:
            lock.release()
        if scratch:
            scratch.cleanup()


def _check_written(src: Source, fingerprint: str, expected: str | None) -> None:
    if expected is not None and fingerprint != expected:
        raise UsageError(
            f"{src.name}: not the file bulk wrote (its SHA-256 differs): changed or replaced "
            "since; nothing sent"
        )


def _ask(
    confirm: Callable[[int, str], bool], interrupts: _Interrupts, rows: int, base_url: str
) -> bool:
    with interrupts.suspended():  # a signal at the prompt acts at once, not after an answer
        return confirm(rows, base_url)


def _describe_dry_run(counts: Mapping[str, Any], options: RunOptions, base_url: str) -> None:
    pending = counts["pending"]
    if options.limit is not None:
        pending = min(pending, options.limit)
    rate = DOCUMENTED_RATE if options.rate == "auto" else options.rate
    timing = ""
    if isinstance(rate, (int, float)):
        timing = f", about {pending / rate:.0f}s at {rate:g}/s"
        if options.rate == "auto":
            timing += " (--rate auto starts there)"
    log.info(
        "dry run: would send %d requests (PUT %s/support/tickets/v1/{id}/status)%s; nothing sent",
        pending,
        base_url,
        timing,
    )


async def run_async(
    source: str | Path | pd.DataFrame,
    *,
    credentials: Credentials | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Run a batch and return its report as a DataFrame (one row per input row, in order)."""
    summary = await execute(source, RunOptions(**options), credentials=credentials, collect=True)
    frame: pd.DataFrame = summary.frame
    summary.frame = None  # pandas deep-copies attrs; a cycle back to the frame would recurse
    frame.attrs["summary"] = summary
    return frame


def run(
    source: str | Path | pd.DataFrame,
    *,
    credentials: Credentials | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Blocking twin of `run_async`; works inside a notebook whose event loop is running."""

    async def main() -> pd.DataFrame:
        return await run_async(source, credentials=credentials, **options)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return anyio.run(main)
    # A loop is already running in this thread (Jupyter): run ours in another thread.
    result: list[pd.DataFrame] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(anyio.run(main))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name="bulk-run")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]
