"""`bulk retry`, `bulk undo` (batches made from an earlier report) and `bulk runs`."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .._core._exceptions import JobLocked, LockUnwritable, UsageError
from .._core._exit import ExitCode
from .._core._text import printable
from ._common import derived_options, execute_batch
from ._console import fail_usage

if TYPE_CHECKING:
    from ..batch import RunOptions

__all__ = ["retry", "runs", "undo"]


def _derived_run(
    kind: str, report: Path, make_frame: Any, yes: bool, options_given: dict[str, Any]
) -> None:
    """A batch made from an earlier report (retry, undo), run like any other."""
    from .._core._files import JobLock, beside
    from ..batch import RunOptions

    options = RunOptions(**options_given)
    # The batch of REPORT may be running (or resumed meanwhile): what a retry takes from
    # its report, it would send as well. Its lock is held from reading the report to the end.
    lock = JobLock(beside(report, ".lock"), "the batch of this report")
    try:
        if report.is_file():  # else reading it says so, and no lock file is left behind
            lock.acquire()
    except LockUnwritable as exc:
        # A folder (or lock file) this user cannot write: a batch of its own could not have
        # run there since either; another user's could, which this cannot see.
        logging.getLogger("bulk").warning("%s; going on without the batch's lock", exc)
    except (JobLocked, UsageError) as exc:
        fail_usage(str(exc), exc.exit_code)
    try:
        _derive(kind, report, make_frame, yes, options)
    finally:
        lock.release()


def _derive(kind: str, report: Path, make_frame: Any, yes: bool, options: RunOptions) -> None:
    from ..batch import derived_report_path, derived_target, refuse_a_second_retry
    from ..report import batch_of

    try:
        frame = make_frame()
        # Every row left alone (a dry run's report, say: nothing it lists was sent) leaves
        # nothing to send, and no reason to ask where to send it.
        if frame.empty or ("skip_reason" in frame.columns and (frame["skip_reason"] != "").all()):
            click.echo(f"{printable(report, 200)}: no rows to {kind}; nothing to do")
            sys.exit(ExitCode.OK)
        target = derived_target(report, options.base_url, kind, dry_run=options.dry_run)
    except UsageError as exc:
        fail_usage(str(exc))
    options.base_url = target.base_url
    if options.report is None:
        options.report = derived_report_path(report, kind, options.dry_run)
    if kind == "retry":
        try:
            refuse_a_second_retry(report, options.report, frame)
        except UsageError as exc:
            fail_usage(str(exc))
    derived = {
        "kind": kind,
        "report": str(report),
        "batch_id": batch_of(report),
        "base_url": target.batch_url,
    }
    elsewhere = target.batch_url if target.elsewhere else None
    sys.exit(execute_batch(frame, options, yes, elsewhere, derived_from=derived))


@click.command()
@click.argument("earlier", metavar="REPORT", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--only",
    default="failed",
    show_default=True,
    help="Which rows to send again: failed, skipped, drifted (--verify found the ticket "
    "changed again since), or several (failed,skipped).",
)
@click.option(
    "--force",
    is_flag=True,
    help="With an undo's report: revert tickets even if they changed since the batch.",
)
@derived_options
def retry(earlier: Path, only: str, yes: bool, **kwargs: Any) -> None:
    """Send again the rows of REPORT that failed (or were skipped), into a new report.

    They go to the API the batch went to, unless --base-url names another. A retry
    of an undo's report reads each ticket first and reverts only those still as
    the batch left it, like the undo, unless --force.
    """
    from ..batch import retry_frame

    outcomes = frozenset(p.strip() for p in only.split(",") if p.strip())
    force = bool(kwargs.get("force"))
    _derived_run("retry", earlier, lambda: retry_frame(earlier, outcomes, force=force), yes, kwargs)


@click.command()
@click.argument("earlier", metavar="REPORT", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--force",
    is_flag=True,
    help="Revert tickets even if they changed since the batch (their later status is lost).",
)
@derived_options
def undo(earlier: Path, yes: bool, **kwargs: Any) -> None:
    """Put back what REPORT changed: statuses, assignees and types; delete its comments.

    Each ticket is read first: only those still at the status the batch set
    are reverted; the others are skipped (changed since the batch), unless
    --force. The changes go to the API the batch went to, unless --base-url
    names another. Rows that were unchanged, failed, invalid or skipped are left
    alone and listed as such. Try it with --dry-run first.
    """
    from ..batch import undo_frame

    _derived_run("undo", earlier, lambda: undo_frame(earlier), yes, kwargs)


@click.command()
@click.argument("folder", default="reports", type=click.Path(path_type=Path, file_okay=False))
@click.option("--limit", default=20, show_default=True, help="How many runs to list, newest first.")
def runs(folder: Path, limit: int) -> None:
    """List recent runs from their audit records under FOLDER."""
    from ..report import list_runs

    if not folder.is_dir():
        fail_usage(f"{printable(folder, 200)}: no such folder")
    records = list_runs(folder, limit)
    if not records:
        click.echo(f"no runs recorded under {folder}")
        return
    for line in records:  # every field made printable by the audit module
        page = f"  page: {line.page}" if line.page else ""
        click.echo(
            f"{line.ended_at:<19}  exit {line.exit_code:>3}  {line.verdict:<18}  {line.kind:<5}  "
            f"{line.counts}  {line.report}{page}"
        )
