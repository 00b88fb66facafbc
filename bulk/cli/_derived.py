"""`bulk retry`, `bulk undo` (batches made from an earlier report) and `bulk runs`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .._core._exceptions import UsageError
from .._core._exit import ExitCode
from ._common import execute_batch, run_options
from ._console import fail_usage

__all__ = ["retry", "runs", "undo"]


def _derived_run(
    kind: str,
    report: Path,
    make_frame: Any,
    status: str | None,
    yes: bool,
    options_given: dict[str, Any],
) -> None:
    """A batch made from an earlier report (retry, undo), run like any other."""
    from ..batch import RunOptions, derived_report_path
    from ..report import batch_of

    if status:
        fail_usage(f"{kind} sends each row's own target status; --status does not apply")
    try:
        frame = make_frame()
    except UsageError as exc:
        fail_usage(str(exc))
    options = RunOptions(**options_given)
    if frame.empty:
        click.echo(f"{report}: no rows to {kind}; nothing to do")
        sys.exit(ExitCode.OK)
    if options.report is None:
        options.report = derived_report_path(report, kind)
    derived = {"kind": kind, "report": str(report), "batch_id": batch_of(report)}
    sys.exit(execute_batch(frame, options, yes, derived_from=derived))


@click.command()
@click.argument("earlier", metavar="REPORT", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--only",
    default="failed",
    show_default=True,
    help="Which outcomes to send again: failed, skipped, or both (failed,skipped).",
)
@run_options
def retry(earlier: Path, only: str, status: str | None, yes: bool, **kwargs: Any) -> None:
    """Send again the rows of REPORT that failed (or were skipped), into a new report."""
    from ..batch import retry_frame

    outcomes = frozenset(p.strip() for p in only.split(",") if p.strip())
    _derived_run("retry", earlier, lambda: retry_frame(earlier, outcomes), status, yes, kwargs)


@click.command()
@click.argument("earlier", metavar="REPORT", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--force",
    is_flag=True,
    help="Revert tickets even if they changed since the batch (their later status is lost).",
)
@run_options
def undo(earlier: Path, status: str | None, yes: bool, **kwargs: Any) -> None:
    """Put every ticket that REPORT changed back to its previous status.

    Each ticket is read first: only those still at the status the batch set
    are reverted; the others are skipped (changed since the batch), unless
    --force. Rows that were unchanged, failed, invalid or skipped are left
    alone and listed as such. Try it with --dry-run first.
    """
    from ..batch import undo_frame

    _derived_run("undo", earlier, lambda: undo_frame(earlier), status, yes, kwargs)


@click.command()
@click.argument("folder", default="reports", type=click.Path(path_type=Path, file_okay=False))
@click.option("--limit", default=20, show_default=True)
def runs(folder: Path, limit: int) -> None:
    """List recent runs from their audit records under FOLDER."""
    from ..report import list_runs

    records = list_runs(folder, limit)
    if not records:
        click.echo(f"no runs recorded under {folder}")
        return
    for line in records:  # every field made printable by the audit module
        click.echo(
            f"{line.ended_at:<19}  exit {line.exit_code:>3}  {line.kind:<5}  "
            f"{line.counts}  {line.report}"
        )
