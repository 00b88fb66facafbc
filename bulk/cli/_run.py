"""`bulk run`: one batch from a file or standard input."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import click

from ._common import execute_batch, run_options
from ._console import fail_usage

__all__ = ["run"]


def read_options(f: Any) -> Any:
    """Reading before (and after) writing: README "Seeing before changing"."""
    options = [
        click.option(
            "--preview",
            is_flag=True,
            help="A dry run that reads: what would change, per row and in sum; no write.",
        ),
        click.option(
            "--read/--no-read",
            default=None,
            help="Read the tickets first and skip those already at the target "
            "(default: when the locations are known).",
        ),
        click.option(
            "--verify", is_flag=True, help="Re-read what the run changed; a drift exits 1."
        ),
        click.option(
            "--location",
            "locations",
            multiple=True,
            metavar="ID",
            help="A location of the batch's tickets (repeatable): read by listing, 100 a request.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _real_command() -> str:
    """This command line without --preview: what runs the previewed batch for real."""
    return shlex.join(["bulk", *(a for a in sys.argv[1:] if a != "--preview")])


@click.command()
@click.argument("input", metavar="INPUT")
@run_options
@click.option(
    "--assignee", help="One assignee for every row: a user id (UUID), or 'none' to unassign."
)
@click.option("--type", "type", help="One ticket type for every row (the API's list).")
@click.option(
    "--comment",
    help="A comment for every row; {column} fills in the row's value, e.g. "
    "'Closed after the move: {legacy_id}'. Needs OAuth2 (Bearer) credentials.",
)
@read_options
def run(input: str, yes: bool, **kwargs: Any) -> None:
    """Change every ticket in INPUT (.csv .tsv .xlsx .parquet .jsonl, or - for stdin).

    Each row may set status, assignee, type and add a comment (columns or options),
    sent in that order: assignee, type, comment, status last.

    Running the same command again after an interruption resumes it.
    """
    from ..batch import RunOptions
    from ..input import spool_stdin

    options = RunOptions(**kwargs)
    if options.status is not None and options.status_column is not None:
        # One would be ignored, silently: which the user meant cannot be told.
        fail_usage(
            "--status sets one status for every row and --status-column names a column of "
            "them: give one"
        )
    spooled = None
    if input == "-":
        spooled = spool_stdin(Path("reports"))
        source: Any = spooled
        if options.report is None:
            kind = "dry-run" if options.dry_run else "report"
            options.report = Path("reports") / f"stdin.{kind}.csv"
    else:
        source = input
    try:
        hint = _real_command() if options.preview and input != "-" else None
        code = execute_batch(source, options, yes, run_hint=hint)
    finally:
        if spooled is not None:
            spooled.unlink(missing_ok=True)
    sys.exit(code)
