"""Before anything is sent: the batch's input read and hashed, its target and files settled.

`prepare` checks everything a run needs that does not touch its journal;
`opened` then takes the report's lock and opens the journal (a scratch one
for a dry run), and gives both back however the run ends.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from .._core._config import Credentials, resolve_target
from .._core._exceptions import JobLocked, UsageError
from .._core._files import JobLock, beside, remove_leftovers
from .._core._text import printable
from ..input import Source, open_source
from ..journal import Journal
from ..plan import (
    STATUSES,
    ChangeSpec,
    checked_assignee,
    checked_instant,
    checked_type,
    normalise_status,
)
from ..report import audit_path, check_outputs, page_path
from ._changes import change_spec, check_comment_credentials, extra_columns
from ._options import RunOptions, default_report

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Batch", "check_written", "opened", "prepare"]

log = logging.getLogger("bulk")


@dataclass
class Batch:
    """A batch ready to run: checked options, its input, where it goes and what it means."""

    options: RunOptions
    source: Source
    fingerprint: str
    input_sha256: str | None  # the bytes bulk wrote (a job's batch input), if it wrote them
    base_url: str
    credentials: Credentials | None
    report: Path
    # What a journal must have been planned for to be resumed by this run.
    meaning: dict[str, Any]
    derived_from: dict[str, Any] | None
    began: float
    started_at: datetime
    changes: ChangeSpec | None = None  # None: status only
    # Where the batch goes, logged once the journal is locked and planned or resumed: a run
    # that is then refused (a locked or foreign journal) has sent nothing, nor said it would.
    route: str = ""
    route_warnings: tuple[str, ...] = ()


async def prepare(
    source: str | Path | pd.DataFrame,
    options: RunOptions,
    credentials: Credentials | None,
    derived_from: dict[str, Any] | None,
    input_sha256: str | None,
) -> Batch:
    """Raise `UsageError` (exit 2) for bad options, input or outputs; nothing is sent."""
    began, started_at = time.monotonic(), datetime.now(UTC)
    options.check()
    # With one assignee or type for every row, the input is a list of tickets: an export's
    # status column (maybe stale) is no change asked for, unless named with --status-column.
    listed = options.assignee is not None or options.type is not None
    src = await anyio.to_thread.run_sync(
        lambda: open_source(
            source,
            id_column=options.id_column,
            status_column=options.status_column,
            need_status=options.status is None
            and (not listed or options.status_column is not None),
            extra_columns=extra_columns(options),
            status_optional=any(
                v is not None for v in (options.assignee, options.type, options.comment)
            ),
        )
    )
    changes = change_spec(options, src)
    _check_expected(src)
    fingerprint = await anyio.to_thread.run_sync(src.fingerprint)
    check_written(src, fingerprint, input_sha256)
    reads = options.preview or not options.dry_run
    target = resolve_target(options.base_url, credentials, need_credentials=reads)
    if options.preview:
        route = f"preview: reading from {target.route()}; no change will be sent"
    else:
        route = target.describe(dry_run=options.dry_run)
    check_comment_credentials(changes, target.credentials)
    report = options.report or default_report(src, fingerprint, options.dry_run)
    # A batch made from a report (retry, undo) must not overwrite that report.
    earlier = Path(derived_from["report"]) if derived_from and derived_from.get("report") else None
    check_outputs(report, src.path or earlier, options.dry_run)
    meaning: dict[str, Any] = {
        "input_sha256": fingerprint,
        "id_column": src.id_column,
        "status_column": src.status_column,
        "status": options.status,
        "status_map": options.status_map,
        "base_url": target.base_url,
    }
    if changes is not None:  # a status-only batch's meaning stays as it was
        meaning["changes"] = {
            "assignee": options.assignee,
            "type": options.type,
            "comment": options.comment,
            "columns": sorted(src.extras),
        }
    return Batch(
        options,
        src,
        fingerprint,
        input_sha256,
        target.base_url,
        target.credentials,
        report,
        meaning,
        derived_from,
        began,
        started_at,
        changes,
        route,
        target.warnings,
    )


def check_written(src: Source, fingerprint: str, expected: str | None) -> None:
    if expected is not None and fingerprint != expected:
        raise UsageError(
            f"{src.name}: not the file bulk wrote (its SHA-256 differs): changed or replaced "
            "since; nothing sent"
        )


@contextlib.asynccontextmanager
async def opened(batch: Batch) -> AsyncIterator[Journal]:
    """The batch's journal, under the report's lock; a dry run's lives in a scratch folder."""
    dry_run = batch.options.dry_run
    scratch = tempfile.TemporaryDirectory(prefix="bulk-dry-") if dry_run else None
    journal_path = Path(scratch.name) / "journal" if scratch else beside(batch.report, ".journal")
    # Two processes on one journal would send the same pending rows twice.
    lock = None if scratch else JobLock(beside(batch.report, ".lock"), "another run of this report")
    if lock is not None:
        try:
            lock.acquire()
        except JobLocked as exc:
            raise UsageError(str(exc), exit_code=JobLocked.exit_code) from None
        report = batch.report
        for written in (
            report,
            page_path(report),
            audit_path(report),
            beside(report, ".snapshot.csv"),
        ):
            remove_leftovers(written)  # of a run killed while it wrote them; under the lock
    try:
        journal = await anyio.to_thread.run_sync(Journal, journal_path)
        try:
            yield journal
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(journal.close)
    finally:
        if lock is not None:
            lock.release()
        if scratch:
            scratch.cleanup()


def _check_expected(src: Source) -> None:
    """A DataFrame's `expected_status` cells are statuses or empty, its `expected_assignee`
    user ids (or `none`) and its `expected_type` types; or exit 2 naming the row."""
    frame = src.frame
    if frame is None:
        return
    import pandas as pd

    rules = (
        ("expected_status", normalise_status, f"a status ({', '.join(STATUSES)})"),
        ("expected_assignee", checked_assignee, "a user id (a UUID) or none"),
        ("expected_type", checked_type, "a ticket type"),
        ("expected_since", checked_instant, "a time with its zone (ISO 8601)"),
    )
    for column, check, what in rules:
        if column not in frame.columns:
            continue
        for row, value in enumerate(frame[column].tolist(), 1):
            if value is None or value is pd.NA or (isinstance(value, float) and value != value):
                continue
            if value == "":
                continue
            if not isinstance(value, str) or check(value.strip()) is None:
                raise UsageError(
                    f"{src.name}, row {row}, column {column!r}: {printable(value, 60)} is "
                    f"not {what}"
                )
