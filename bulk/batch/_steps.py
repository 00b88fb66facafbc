"""The steps of a batch once its journal is open: plan or resume, send, finish.

Every journal call that reads or writes many rows runs in a worker thread
(anyio.to_thread): a count reads every row, half a second at a million, and
the event loop must stay free for signals and, while sending, for requests.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from .._core._exceptions import UsageError
from .._core._exit import ExitCode
from .._core._rates import AUTO, DOCUMENTED_RATE
from .._core._text import printable
from .._version import __version__
from ..input import Source, picked_by_name
from ..journal import REPORT_COLUMNS, Journal
from ..plan import ChangeSpec, plan_chunk
from ..report import (
    REPORT_SUFFIXES,
    audit_path,
    read_audit,
    report_frame,
    write_audit,
    write_page_quietly,
    write_report,
)
from ..send import Progress, RateController, Stats, TicketClient
from ._changes import comments_posted, plan_with_changes, post_in_flight, report_change_columns
from ._derived import claim_the_retry
from ._options import RunOptions
from ._prepare import Batch, check_written
from ._preview import preview_lines
from ._read import EXPECTED_CHANGES, EXPECTED_SINCE, Reading, expected_statuses, reverts
from ._send import send_all
from ._signals import Interrupts
from ._summary import INTERRUPTED, RunSummary, exit_code

__all__ = ["Start", "finish", "plan_or_resume", "recount", "send"]

log = logging.getLogger("bulk")


@dataclass
class Start:
    """The journal as this run found (or planned) it."""

    meta: dict[str, Any]
    counts: dict[str, Any]
    already_final: int = 0
    resent: int = 0  # in flight when an earlier run was interrupted: sent again
    reading: Reading | None = None  # what reading before writing did, if this run read
    verifying: Reading | None = None  # what --verify did
    confirmed: bool = True  # False: the terminal's answer was no, so nothing is sent


def confirm_first(
    batch: Batch, start: Start, interrupts: Interrupts, confirm: Callable[[int, str], bool] | None
) -> bool:
    """Ask (at a terminal, where the host or size calls for it) before the run's first request.

    Before the reads too: a read carries the credentials as a write does, so a
    host the user did not mean must not get one before the answer.
    """
    options, pending = batch.options, start.counts["pending"]
    if confirm is None or not pending or interrupts.requested.is_set():
        return True
    if options.dry_run:
        # A preview reads (rows 0: nothing will be changed); a plain dry run sends nothing.
        return not options.preview or _ask(confirm, interrupts, 0, batch.base_url)
    return _ask(confirm, interrupts, min(pending, options.limit or pending), batch.base_url)


async def recount(journal: Journal, start: Start) -> None:
    """The counts again, once reading has settled rows that need no write."""
    start.counts = await anyio.to_thread.run_sync(journal.counts)


async def plan_or_resume(batch: Batch, journal: Journal, interrupts: Interrupts) -> Start:
    """Plan the input into a fresh journal, or resume the one planned for this same batch."""
    meta = await anyio.to_thread.run_sync(journal.meta)
    _refuse_another_reports_journal(batch, journal, meta)
    resuming = False
    resent = 0
    if batch.options.fresh or not meta.get("planned"):
        meta = await _plan_afresh(batch, journal, interrupts, meta)
    elif meta.get("meaning") != batch.meaning and not _as_planned(batch, meta.get("meaning")):
        earlier = meta.get("meaning") or {}
        keys = dict.fromkeys([*batch.meaning, *earlier])
        changed = [k for k in keys if earlier.get(k) != batch.meaning.get(k)]
        posted = await anyio.to_thread.run_sync(comments_posted, journal.path)
        warning = (
            f" ({posted} comments were posted: --fresh reads each ticket before posting and"
            " records the comment it finds instead of posting the same text again)"
            if posted
            else ""
        )
        differs = f"that differs in {', '.join(changed) or 'its options'}"
        if meta.get("complete"):
            # Two inputs of the same name share a default report: the finished batch's
            # files are what undoing it needs, so keeping them is named first.
            raise UsageError(
                f"{journal.path} is the journal of a finished batch (its report is "
                f"{batch.report}, which `bulk undo` reads) {differs}; give this run its own "
                f"--report, or rerun with --fresh to discard that batch's journal and report"
                f"{warning}"
            )
        raise UsageError(
            f"{journal.path} belongs to an earlier run of {batch.report} {differs}; rerun with "
            f"--fresh to start over{warning}, or choose another --report"
        )
    else:
        resuming = True
        resent = await anyio.to_thread.run_sync(journal.reopen_in_flight)
        if batch.changes is not None:
            await anyio.to_thread.run_sync(journal.forget_assignees_read)
    # One count serves the resume message, the progress total and the dry run
    # (a count reads every row: half a second at a million).
    counts = await anyio.to_thread.run_sync(journal.counts)
    start = Start(meta, counts, resent=resent)
    log.info(batch.route)
    for warning in batch.route_warnings:
        log.warning(warning)
    if resuming:
        start.already_final = counts["rows"] - counts["pending"]
        _log_resume(start, batch.report)
    return start


def _refuse_another_reports_journal(batch: Batch, journal: Journal, meta: dict[str, Any]) -> None:
    """Refuses (exit 2) a report whose journal, lock, audit record and page are another's:
    `--report z.jsonl` beside a batch's `z.csv` resumed that batch as its own, or (--fresh)
    replaced its journal, audit record and page, which `bulk undo z.csv` needs (review).
    The journal names its report; one from before that, the report beside it of another
    format when this run's own is not there (`x.csv`, `x.jsonl` and `x.parquet` share
    `x.journal`, `x.lock`, `x.run.json` and `x.html`: `beside`)."""
    if not meta.get("planned"):
        return
    named = meta.get("report")
    report = batch.report
    if isinstance(named, str) and named not in ("", ".", "..") and Path(named).name == named:
        other = report.with_name(named) if named != report.name else None
    else:
        others = (report.with_suffix(s) for s in REPORT_SUFFIXES if s != report.suffix.lower())
        other = None if report.exists() else next((p for p in others if p.exists()), None)
    if other is not None and other.exists():
        raise UsageError(
            f"{journal.path} is the journal of {printable(other, 200)}, whose lock, audit "
            f"record and page are beside it too: --report {printable(report.name, 200)} would "
            "share them (a resume of that batch, or with --fresh its record lost); give this "
            "run a report of another name; nothing was sent"
        )


# What bulk derives from an input and its options by rules of its own (which of the input's
# columns it reads), not what the user chose; a later bulk may derive them otherwise.
_DERIVED = frozenset({"status_column", "changes"})


def _as_planned(batch: Batch, earlier: Any) -> bool:
    """Resume a journal an earlier bulk planned for this same input and options as it was
    planned, though this bulk reads the input's columns otherwise: its rows hold every change
    it planned (an interrupted job would otherwise be refused at every run, and --fresh would
    drop the record an undo needs). False when the user's own choices differ."""
    if not isinstance(earlier, dict):
        return False
    now, options = batch.meaning, batch.options
    if any(earlier.get(k) != now.get(k) for k in ({*earlier, *now} - _DERIVED)):
        return False
    picked = earlier.get("status_column")
    # A status column bulk found by its name, not one the user named (then or now).
    if picked != now.get("status_column") and (
        options.status_column is not None
        or not (not picked or (isinstance(picked, str) and picked_by_name(picked)))
    ):
        return False
    then = earlier.get("changes")
    asked = {k: getattr(options, k) for k in ("assignee", "type", "comment")}
    if then is None and any(v is not None for v in asked.values()):
        return False  # changes asked for now that the plan does not hold
    if then is not None and (
        not isinstance(then, dict) or any(then.get(k) != v for k, v in asked.items())
    ):
        return False
    columns = then.get("columns") if then else None
    log.info(
        "resuming %s as an earlier bulk planned it: its rows hold the changes it read from the "
        "input's columns, and they are sent as planned",
        batch.report,
    )
    batch.meaning = earlier
    batch.changes = (
        None
        if then is None
        else ChangeSpec(
            assignee=options.assignee,
            type=options.type,
            comment=options.comment_template,
            columns={c: c for c in columns if isinstance(c, str)}
            if isinstance(columns, list)
            else {},
        )
    )
    return True


async def _plan_afresh(
    batch: Batch, journal: Journal, interrupts: Interrupts, earlier: dict[str, Any]
) -> dict[str, Any]:
    src = batch.source
    since = in_flight = None
    if batch.changes is not None and earlier.get("planned"):
        # The journal --fresh replaces may have posted comments: the new batch
        # looks for them back to the earliest start and reads before posting.
        posted = await anyio.to_thread.run_sync(comments_posted, journal.path)
        since = earlier.get("comments_since") or (earlier.get("created_at") if posted else None)
        # A POST the replaced journal left at the server may land yet: the new batch's
        # first reads wait for it, as a rerun's do (send/_changes.py).
        in_flight = _later(
            await anyio.to_thread.run_sync(post_in_flight, journal.path),
            earlier.get("post_in_flight"),  # a --fresh run stopped while it waited for it
        )
    if earlier.get("planned") and (owed := await anyio.to_thread.run_sync(journal.put_backs_owed)):
        # Clearing the journal would forget whose status an interrupted undo overwrote.
        raise UsageError(
            f"{journal.path}: an interrupted undo still owes {len(owed)} agent's status(es) "
            "back (it overwrote them and was stopped before putting them back); rerun the "
            "same command without --fresh first, which puts them back; nothing was sent"
        )
    await anyio.to_thread.run_sync(journal.clear)
    if batch.changes is not None:
        await anyio.to_thread.run_sync(
            plan_with_changes,
            journal,
            src,
            batch.options,
            batch.changes,
            _check_interrupt,
            interrupts.requested,
        )
    else:
        await anyio.to_thread.run_sync(_plan, journal, src, batch.options, interrupts.requested)
    if batch.input_sha256 is not None:  # the file was read twice: hashed, then planned
        check_written(src, await anyio.to_thread.run_sync(src.fingerprint), batch.input_sha256)
    await anyio.to_thread.run_sync(
        lambda: journal.set_meta(
            planned=True,
            report=batch.report.name,
            meaning=batch.meaning,
            batch_id=uuid.uuid4().hex,
            created_at=batch.started_at.isoformat(),
            **({"comments_since": since} if since else {}),
            **({"post_in_flight": in_flight} if in_flight else {}),
            **({"post_timeout": earlier["post_timeout"]} if "post_timeout" in earlier else {}),
        )
    )
    return await anyio.to_thread.run_sync(journal.meta)


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


def _log_resume(start: Start, report: Path) -> None:
    counts = start.counts
    if counts["pending"]:
        log.info(
            "resuming: %d of %d rows already final%s",
            start.already_final,
            counts["rows"],
            f" ({start.resent} in flight at the interruption will be sent again)"
            if start.resent
            else "",
        )
    else:
        log.info(
            "nothing to send: every row of %s is already final "
            "(rerun with --fresh to send the batch again)",
            report,
        )


async def send(
    batch: Batch,
    journal: Journal,
    start: Start,
    interrupts: Interrupts,
    progress: Progress,
    controller: RateController | None = None,
    client: TicketClient | None = None,
) -> tuple[str | None, Stats]:
    """Send what is pending (unless a dry run, unconfirmed, or interrupted); why it stopped."""
    options, pending = batch.options, start.counts["pending"]
    stats = Stats(total=pending if options.limit is None else min(pending, options.limit))
    if interrupts.requested.is_set():
        return INTERRUPTED, stats  # after planning: nothing sent, the report is written
    if not start.confirmed:
        return "stopped: not confirmed", stats
    if start.reading is not None and start.reading.stopped:
        return f"stopped: {start.reading.stopped}", stats
    if options.dry_run:
        if not options.preview:
            _describe_dry_run(start.counts, options, batch.base_url, _kinds(batch))
        return None, stats
    if not pending:
        return None, stats
    assert batch.credentials is not None
    if options.force and reverts(batch):
        owed = await anyio.to_thread.run_sync(journal.put_backs_owed)
        if owed:
            log.warning(
                "--force: %d agent's status(es) an interrupted undo owed back are not put back",
                len(owed),
            )
    derived = batch.derived_from or {}
    if derived.get("kind") == "retry" and batch.source.frame is not None:
        # Before the first request, not before the checks: a refused retry claims nothing.
        frame, source = batch.source.frame, Path(str(derived.get("report")))
        await anyio.to_thread.run_sync(claim_the_retry, source, batch.report, frame)
    journal.start_writer()
    try:
        with interrupts.suspended():  # the engine's graceful stop takes over
            reason = await send_all(
                journal,
                options,
                batch.base_url,
                batch.credentials,
                stats,
                progress,
                interrupts.enabled,
                controller,
                _changes_since(batch, start),
                client,
                _guarded(batch),
            )
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(journal.close_writer)
            await anyio.to_thread.run_sync(journal.add_retries, stats.retries)
            began = batch.started_at.isoformat(timespec="milliseconds")
            await anyio.to_thread.run_sync(journal.credit_lost_answers, began)
    return reason, stats


def _guarded(batch: Batch) -> dict[str, str] | None:
    """An undo's tickets and the status their batch set (each PUT's answer must show it).

    None for any other run, and for `undo --force`, which reverts whatever it finds.
    """
    frame = batch.source.frame
    if batch.options.force or frame is None or not reverts(batch):
        return None
    ids = frame[batch.source.id_column].tolist()  # the column the input named, found by name
    # The first row of a ticket is the one sent (a later one is settled as its duplicate).
    first: dict[str, str] = {}
    for ticket, status in zip(ids, expected_statuses(batch), strict=True):
        first.setdefault(str(ticket).strip().lower(), status)
    return {ticket: status for ticket, status in first.items() if status}


def _later(*stamps: object) -> str | None:
    """The latest of these UTC ISO times that parse (the journal's meta is a file)."""
    found = []
    for stamp in stamps:
        if isinstance(stamp, str) and len(stamp) <= 40:
            try:
                when = datetime.fromisoformat(stamp)
            except ValueError:
                continue
            if when.tzinfo is not None:
                found.append((when, stamp))
    return max(found)[1] if found else None


def _changes_since(batch: Batch, start: Start) -> datetime | None:
    """For a batch of changes: when it began (a comment found on the ticket must be newer)."""
    if batch.changes is None:
        return None
    created = start.meta.get("comments_since") or start.meta.get("created_at")
    return datetime.fromisoformat(created) if isinstance(created, str) else batch.started_at


def _ask(
    confirm: Callable[[int, str], bool], interrupts: Interrupts, rows: int, base_url: str
) -> bool:
    with interrupts.suspended():  # a signal at the prompt acts at once, not after an answer
        return confirm(rows, base_url)


def _describe_dry_run(
    counts: Mapping[str, Any], options: RunOptions, base_url: str, changes: list[str]
) -> None:
    pending = counts["pending"]
    if options.limit is not None:
        pending = min(pending, options.limit)
    rate = DOCUMENTED_RATE if options.rate == AUTO else options.rate
    timing = ""
    if isinstance(rate, int | float):
        timing = f", about {pending / rate:.0f}s at {rate:g}/s"
        if options.rate == AUTO:
            timing += " (--rate auto starts there)"
    if changes:
        # Several calls a row (and reads for type and comments): the timing is a floor.
        log.info(
            "dry run: would send the changes of %d rows to %s (%s, then the status where asked)"
            "%s or more; nothing sent",
            pending,
            base_url,
            ", ".join(changes),
            timing,
        )
        return
    log.info(
        "dry run: would send %d request%s (PUT %s/support/tickets/v1/{id}/status)%s; nothing sent",
        pending,
        "" if pending == 1 else "s",
        base_url,
        timing,
    )


def _kinds(batch: Batch) -> list[str]:
    """The kinds of change a batch of several changes asks for (empty: status only)."""
    return [] if batch.changes is None else list(batch.changes.kinds)


def _pending_reason(options: RunOptions, stop_reason: str | None) -> str:
    if options.dry_run:
        return "dry run"
    if stop_reason:
        return stop_reason
    if options.limit is not None:
        return f"not sent: --limit {options.limit}"
    return "not sent"


async def finish(
    batch: Batch,
    journal: Journal,
    start: Start,
    sent: tuple[str | None, Stats],
    interrupts: Interrupts,
    collect: bool,
) -> RunSummary:
    """Write the report (and the audit record, unless a dry run); sum the run up."""
    options, (stop_reason, stats) = batch.options, sent
    counts = await anyio.to_thread.run_sync(journal.counts)
    counts |= await anyio.to_thread.run_sync(journal.read_counts)
    held_back = options.dry_run or (options.limit is not None and stop_reason is None)
    code = exit_code(counts, stop_reason, held_back)
    pending_reason = _pending_reason(options, stop_reason)
    columns = REPORT_COLUMNS + (("source_row",) if batch.source.derived else ())
    if batch.changes is not None:
        columns += await anyio.to_thread.run_sync(report_change_columns, journal)
    if reverts(batch):
        # The status each row's ticket had to keep: a retry of this report guards with it;
        # and an undo of changes, the assignee and type (batch/_read.py).
        columns += ("expected_status",)
        frame = batch.source.frame
        if frame is not None:
            columns += tuple(c for c, _ in EXPECTED_CHANGES.values() if c in frame.columns)
            if EXPECTED_SINCE in frame.columns:
                columns += (EXPECTED_SINCE,)
    await anyio.to_thread.run_sync(
        lambda: write_report(journal, batch.report, pending_reason=pending_reason, columns=columns)
    )
    if interrupts.requested.is_set():
        code = ExitCode.INTERRUPTED  # a signal while the report was written
    frame = None
    if collect:
        frame = await anyio.to_thread.run_sync(report_frame, journal, pending_reason, columns)
    summary = RunSummary(
        report=batch.report,
        audit=audit_path(batch.report),
        rows=counts["rows"],
        outcomes=counts["outcomes"],
        pending=counts["pending"],
        http_status=counts["http_status"],
        requests=counts["requests"],
        retries=counts["retries"],
        elapsed=time.monotonic() - batch.began,
        exit_code=code,
        dry_run=options.dry_run,
        stop_reason=stop_reason,
        already_final=start.already_final,
        resent=start.resent,
        sent_this_run=stats.requests,
        throttled=stats.throttled,
        concurrency=stats.concurrency,
        final_rate=stats.final_rate,
        frame=frame,
        reads_this_run=_reads(start),
        read_counts={
            k: counts[k] for k in ("read", "verified", "drifted", "left_alone", "unreadable")
        },
    )
    if options.preview and start.confirmed:
        summary.preview, summary.would_change = await preview_lines(journal, batch, start)
    record = _audit_record(batch, journal, start, summary, stats, counts)
    if not options.dry_run:
        if not counts["pending"]:
            await anyio.to_thread.run_sync(lambda: journal.set_meta(complete=True))
        await anyio.to_thread.run_sync(write_audit, summary.audit, record)
    summary.page = await anyio.to_thread.run_sync(_page, batch, journal, record, pending_reason)
    return summary


def _page(batch: Batch, journal: Journal, record: dict[str, Any], reason: str) -> Path | None:
    """The run's page; it reads the audit record as written (every invocation's times)."""
    if not batch.options.dry_run:
        record = read_audit(audit_path(batch.report)) or record
    else:  # a dry run writes no audit record: the page shows this one invocation
        record = {**record, "invocations": [record]}
    return write_page_quietly(batch.report, journal.path, record, reason)


def _audit_record(
    batch: Batch,
    journal: Journal,
    start: Start,
    summary: RunSummary,
    stats: Stats,
    counts: dict[str, Any],
) -> dict[str, Any]:
    options = batch.options
    resumed = {"already_final": start.already_final, "resent": start.resent}
    return {
        "run_id": uuid.uuid4().hex,
        "batch_id": start.meta.get("batch_id"),
        "tool": f"bulk {__version__}",
        "started_at": batch.started_at.isoformat(),
        "ended_at": datetime.now(UTC).isoformat(),
        "input": batch.source.name,
        "input_sha256": batch.fingerprint,
        "report": str(batch.report),
        "journal": str(journal.path),
        "base_url": batch.base_url,  # where retry and undo of this report send by default
        "options": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in asdict(options).items()
            if k != "named"  # how messages name options: not an option
        },
        "counts": counts,
        "requests_this_run": stats.requests,
        "reads_this_run": summary.reads_this_run,
        "left_alone": _left_alone(counts, start),
        "retries_this_run": stats.retries,
        "throttled_this_run": stats.throttled,
        "concurrency": stats.concurrency,
        "final_rate": stats.final_rate,
        "resumed": resumed if start.already_final or start.resent else None,
        "stop_reason": summary.stop_reason,
        "derived_from": batch.derived_from,
        "exit_code": summary.exit_code,
    }


def _reads(start: Start) -> int:
    return sum(r.requests for r in (start.reading, start.verifying) if r is not None)


def _left_alone(counts: dict[str, Any], start: Start) -> dict[str, Any] | None:
    """An undo's tickets not reverted, and why (the audit says so)."""
    settled = start.reading.settled if start.reading else {}
    if not counts.get("left_alone") and not settled.get("changed since the batch"):
        return None
    return {
        "rows": counts.get("left_alone", 0),
        "why": "changed since the batch (or unreadable): a status, assignee or type goes back "
        "only while the ticket still has what the batch set; --force overrides",
    }
