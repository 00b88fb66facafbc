"""Running a job: one at a time, resumable, each run with its own timestamped files.

Under cron a job may still be running when the next one starts, or may have
been killed. A lock file (`flock`, released by the kernel if the process
dies) keeps two runs of one job from overlapping; a pointer to the current
run lets the next invocation finish an interrupted batch before starting a
new one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ._core._config import parse_duration, resolve_target
from ._core._exceptions import JobLocked, UsageError
from ._core._exit import ExitCode
from ._core._files import JobLock, beside
from ._jobs import ApiSource, FileSource, Job
from ._listing import Listing, list_and_select
from ._runner import RunOptions, rate_controller
from .input import file_fingerprint
from .journal import planned_fingerprint
from .report import read_audit

__all__ = ["EXIT_LOCKED", "JobLock", "JobLocked", "PreparedRun", "prepare_job"]

log = logging.getLogger("bulk")

EXIT_LOCKED = JobLocked.exit_code
# A run that exited so is over; any other exit (3, 130, none) is finished by the next one.
_ENDED = (ExitCode.OK, ExitCode.ROWS, ExitCode.USAGE)


@dataclass
class PreparedRun:
    input: Path | None  # None: the listing selected nothing
    options: RunOptions
    listing: Listing | None = None
    snapshot: Path | None = None
    resumed: bool = False


def _options(job: Job, report: Path, dry_run: bool) -> RunOptions:
    run = job.run
    rate: float | str | None = None if run.rate == "unlimited" else run.rate
    options = RunOptions(
        report=report,
        rate=rate,
        concurrency=run.concurrency,
        max_attempts=run.max_attempts,
        timeout=run.timeout,
        max_failure_rate=run.max_failure_rate,
        limit=run.limit,
        deadline=parse_duration(run.deadline) if run.deadline else None,
        dry_run=dry_run,
    )
    if isinstance(job.source, FileSource):
        options.id_column = job.source.id_column
        options.status_column = job.source.status_column
        options.status = job.action.status
        options.status_map = job.action.map
    else:
        # The batch input written from the listing holds each row's target.
        options.id_column, options.status_column = "ticket_id", "target_status"
    return options


def _unfinished(pointer: Path) -> dict[str, str] | None:
    """The run this job left unfinished (killed, interrupted, stopped), if any."""
    try:
        current = json.loads(pointer.read_text())
        audit = beside(Path(current["report"]), ".run.json")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if audit.is_file():
        if (read_audit(audit) or {}).get("exit_code") in _ENDED:
            return None
    elif not beside(Path(current["report"]), ".journal").is_file():
        return None
    if not _same_input(Path(current["report"]), Path(current["input"])):
        log.warning(
            "the interrupted run %s cannot be resumed: its input %s changed or is gone; "
            "starting a new run",
            current["report"],
            current["input"],
        )
        return None
    return {"report": current["report"], "input": current["input"]}


def _same_input(report: Path, batch_input: Path) -> bool:
    """Whether `batch_input` is still the file the interrupted run planned."""
    planned = planned_fingerprint(beside(report, ".journal"))
    try:
        return planned is not None and planned == file_fingerprint(batch_input)
    except OSError:
        return False


async def prepare_job(job: Job, *, dry_run: bool, now: datetime | None = None) -> PreparedRun:
    """Decide this invocation's input and report: resume, or list/read afresh."""
    folder = job.report_folder()
    pointer = folder / f".{job.name}.current"
    previous = None if dry_run else _unfinished(pointer)
    if previous is not None:
        log.info("job %s: finishing the interrupted run %s first", job.name, previous["report"])
        report = Path(previous["report"])
        return PreparedRun(Path(previous["input"]), _options(job, report, dry_run), resumed=True)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    stem = f"{job.name}-{stamp}" + (".dry-run" if dry_run else "")
    # Two runs within one second (a dry run, then the run) keep separate files.
    base, n = stem, 1
    while any((folder / f"{stem}{end}").exists() for end in (".run.json", ".snapshot.csv")):
        n += 1
        stem = f"{base}-{n}"
    report = folder / f"{stem}.{job.report.format}"
    options = _options(job, report, dry_run)
    prepared = PreparedRun(None, options)
    if isinstance(job.source, FileSource):
        if not job.source.path.is_file():
            raise UsageError(f"{job.source.path}: no such file (source.path of job {job.name})")
        prepared.input = job.source.path
    else:
        prepared.snapshot = folder / f"{stem}.snapshot.csv"
        batch_input = folder / f"{stem}.input.csv"
        prepared.listing = await _list(job, job.source, prepared.snapshot, batch_input)
        if prepared.listing.selected:
            prepared.input = batch_input
    if prepared.input is not None and not dry_run:
        pointer.parent.mkdir(parents=True, exist_ok=True)
        pointer.write_text(json.dumps({"report": str(report), "input": str(prepared.input)}))
    return prepared


async def _list(job: Job, source: ApiSource, snapshot: Path, batch_input: Path) -> Listing:
    from .send import TicketClient

    rate: float | str | None = None if job.run.rate == "unlimited" else job.run.rate
    target = resolve_target(None)
    log.info("job %s: listing from %s", job.name, target.route())
    for warning in target.warnings:
        log.warning(warning)
    assert target.credentials is not None
    client = TicketClient(
        target.base_url, target.credentials, concurrency=1, timeout=job.run.timeout
    )
    async with client:
        listing = await list_and_select(job, client, rate_controller(rate), snapshot, batch_input)
    log.info(
        "job %s: %d pages, %d tickets listed in %d locations, %d matched the selection, "
        "%d already at the target, %d to change; snapshot %s",
        job.name,
        listing.pages,
        listing.listed,
        len(source.locations),
        listing.matched,
        listing.already,
        listing.selected,
        snapshot,
    )
    return listing
