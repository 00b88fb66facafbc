"""Running a job: one at a time, resumable, each run with its own timestamped files.

Under cron a job may still be running when the next one starts, or may have
been killed. A lock file (`flock`, released by the kernel if the process
dies) keeps two runs of one job from overlapping; a pointer to the current
run lets the next invocation finish an interrupted batch before starting a
new one.

The pointer decides what the next run sends, so it is trusted only as far as
it can be: it must be bulk's own file (this user's, writable by nobody else),
and it names files in the job's folder only (by name, no links). A pointer
or journal planted in a shared folder stops the job (exit 2) instead of
sending someone else's batch with this user's credentials.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .._core._config import parse_duration, resolve_target
from .._core._exceptions import UsageError
from .._core._exit import ExitCode
from .._core._files import beside, read_file, refuse_foreign, replacing
from .._core._rates import parse_rate
from .._core._text import printable
from ..batch import RunOptions, rate_controller
from ..input import file_fingerprint
from ..journal import planned_fingerprint
from ..report import audit_path, read_audit
from ..send import RateController
from ._listing import Listing, list_and_select
from ._schema import ApiSource, FileSource, Job

__all__ = ["PreparedRun", "prepare_job"]

log = logging.getLogger("bulk")

# A run that exited so is over; any other exit (3, 130, none) is finished by the next one.
_ENDED = (ExitCode.OK, ExitCode.ROWS, ExitCode.USAGE)


@dataclass
class PreparedRun:
    input: Path | None  # None: the listing selected nothing
    options: RunOptions
    listing: Listing | None = None
    snapshot: Path | None = None
    resumed: bool = False
    # The batch input's SHA-256 as bulk wrote or planned it: the run refuses any other file.
    input_sha256: str | None = None
    # One budget for the whole run: the listing's pages and the batch's changes
    # take their slots from it, and what the listing learnt of the limit stays.
    controller: RateController | None = None


def _options(job: Job, report: Path, dry_run: bool) -> RunOptions:
    run = job.run
    options = RunOptions(
        report=report,
        rate=parse_rate(run.rate),
        concurrency=run.concurrency,
        max_attempts=run.max_attempts,
        timeout=run.timeout,
        max_failure_rate=run.max_failure_rate,
        limit=run.limit,
        deadline=parse_duration(run.deadline) if run.deadline else None,
        dry_run=dry_run,
        assignee=job.action.assignee,
        type=job.action.type,
        comment=job.action.comment,
        named="[action] {}",
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


# A pointer is two file names; anything longer is not one of bulk's.
_POINTER_BYTES = 64 * 1024


def _unfinished(job: Job, pointer: Path, folder: Path) -> tuple[Path, Path, str] | None:
    """The run this job left unfinished (killed, interrupted, stopped), if any.

    Its report, its batch input and the input's planned SHA-256. A pointer,
    or a journal it leads to, that bulk cannot trust is an error (exit 2).
    """
    raw = read_file(pointer, _POINTER_BYTES, own="job's pointer")
    if raw is None:
        return None
    try:
        current = json.loads(raw)
        report = _in_folder(folder, current["report"], pointer)
        if isinstance(job.source, FileSource):
            batch_input = job.source.path  # the job names it; the pointer need not
        else:
            batch_input = _in_folder(folder, current["input"], pointer)
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring %s: not a pointer bulk wrote", printable(pointer, 200))
        return None
    audit = audit_path(report)
    journal = beside(report, ".journal")
    try:
        journal_info = journal.lstat()
    except FileNotFoundError:
        return None  # planned nothing yet: nothing to finish
    refuse_foreign(journal_info, journal, "journal")
    if (read_audit(audit) or {}).get("exit_code") in _ENDED:
        return None
    planned = _same_input(journal, batch_input)
    if planned is None:
        log.warning(
            "the interrupted run %s cannot be resumed: its input %s changed or is gone; "
            "starting a new run",
            report,
            batch_input,
        )
        return None
    return report, batch_input, planned


def _in_folder(folder: Path, value: object, pointer: Path) -> Path:
    """`value` from the pointer as a file directly in the job's folder, or an error (exit 2).

    bulk writes bare names; a path (from earlier versions) must lead to the
    folder itself. `..`, a link, or any other folder means the pointer was
    not written by bulk for this job.
    """
    if not isinstance(value, str):
        raise TypeError(value)
    given = Path(value)
    inside = ".." not in given.parts and given.name not in ("", ".")
    if inside and given.parent != Path("."):
        try:
            inside = given.parent.resolve() == folder.resolve()
        except (OSError, RuntimeError):  # a link loop
            inside = False
    path = folder / given.name
    if not inside or path.is_symlink():
        raise UsageError(
            f"{printable(pointer, 200)}: the job's pointer names {printable(value, 200)!r}, "
            f"not a file of its own in {printable(folder, 200)}; bulk resumes only this job's "
            f"runs (remove {printable(pointer, 200)} to start afresh)"
        )
    return path


def _same_input(journal: Path, batch_input: Path) -> str | None:
    """The planned SHA-256, if `batch_input` is still the file the interrupted run planned."""
    planned = planned_fingerprint(journal)
    try:
        same = planned is not None and planned == file_fingerprint(batch_input)
    except OSError:
        return None
    return planned if same else None


def _free_stem(folder: Path, stem: str, report_format: str) -> str:
    """`stem`, or `stem-2`, `stem-3`...: the first whose files are all still free.

    Two runs within one second (a dry run, then the run) keep separate files.
    lexists: a dangling link at a name counts as taken.
    """
    ends = (f".{report_format}", ".run.json", ".journal", ".lock", ".snapshot.csv", ".input.csv")
    base, n = stem, 1
    while any(os.path.lexists(folder / f"{stem}{end}") for end in ends):
        n += 1
        stem = f"{base}-{n}"
    return stem


def _write_pointer(pointer: Path, report: Path, batch_input: Path) -> None:
    # Bare names: the reader looks for them in the job's folder only. Mode
    # 0600: the reader refuses a pointer that others could change.
    with replacing(pointer, perms=0o600, encoding="utf-8") as handle:
        handle.write(json.dumps({"report": report.name, "input": batch_input.name}))


async def prepare_job(job: Job, *, dry_run: bool, now: datetime | None = None) -> PreparedRun:
    """Decide this invocation's input and report: resume, or list/read afresh."""
    folder = job.report_folder()
    pointer = folder / f".{job.name}.current"
    previous = None if dry_run else _unfinished(job, pointer, folder)
    if previous is not None:
        report, batch_input, planned = previous
        log.info("job %s: finishing the interrupted run %s first", job.name, report)
        options = _options(job, report, dry_run)
        return PreparedRun(batch_input, options, resumed=True, input_sha256=planned)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    stem = f"{job.name}-{stamp}" + (".dry-run" if dry_run else "")
    stem = _free_stem(folder, stem, job.report.format)
    report = folder / f"{stem}.{job.report.format}"
    options = _options(job, report, dry_run)
    controller = rate_controller(options.rate)
    prepared = PreparedRun(None, options, controller=controller)
    if isinstance(job.source, FileSource):
        if not job.source.path.is_file():
            raise UsageError(f"{job.source.path}: no such file (source.path of job {job.name})")
        prepared.input = job.source.path
    else:
        prepared.snapshot = folder / f"{stem}.snapshot.csv"
        batch_input = folder / f"{stem}.input.csv"
        prepared.listing = await _list(job, job.source, prepared.snapshot, batch_input, controller)
        if prepared.listing.selected:
            prepared.input = batch_input
            prepared.input_sha256 = prepared.listing.input_sha256
    if prepared.input is not None and not dry_run:
        _write_pointer(pointer, report, prepared.input)
    return prepared


async def _list(
    job: Job, source: ApiSource, snapshot: Path, batch_input: Path, controller: RateController
) -> Listing:
    from ..send import TicketClient

    target = resolve_target(None)
    log.info("job %s: listing from %s", job.name, target.route())
    for warning in target.warnings:
        log.warning(warning)
    assert target.credentials is not None
    client = TicketClient(
        target.base_url,
        target.credentials,
        concurrency=1,
        timeout=job.run.timeout,
        budget=controller,
    )
    async with client:
        listing = await list_and_select(job, client, controller, snapshot, batch_input)
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
