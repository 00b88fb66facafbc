"""`bulk job validate` and `bulk job run`: job files, safe under cron."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .._core._exceptions import CredentialsRejected, JobLocked, RequestError, UsageError
from .._core._exit import ExitCode
from .._core._text import printable
from ._common import cli_rate, execute_batch, yes_option
from ._console import fail_usage

if TYPE_CHECKING:
    from ..jobs import Job

__all__ = ["job"]


@click.group()
def job() -> None:
    """Run job files (jobs/*.toml): mass closures, migrations, scheduled cleanups."""


@job.command("validate")
@click.argument("path", metavar="JOB", type=click.Path(path_type=Path, dir_okay=False))
def job_validate(path: Path) -> None:
    """Check a job file (and its source file's columns) without sending anything."""
    import os

    from ..input import open_source
    from ..jobs import FileSource, load_job

    try:
        loaded = load_job(path, os.environ)
        if isinstance(loaded.source, FileSource):
            open_source(
                loaded.source.path,
                id_column=loaded.source.id_column,
                status_column=loaded.source.status_column,
                need_status=loaded.action.status is None,
            )
    except UsageError as exc:
        fail_usage(str(exc))
    kind = "file " + str(loaded.source.path) if isinstance(loaded.source, FileSource) else "API"
    click.echo(
        f"{path}: job {loaded.name!r} is valid ({kind} source, reports in {loaded.report_folder()})"
    )


@job.command("run")
@click.argument("path", metavar="JOB", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="List and validate; report what would change.")
@yes_option
@click.option("--rate", "rate_override", help="Override the job's rate (e.g. for a test).")
def job_run(path: Path, dry_run: bool, yes: bool, rate_override: str | None) -> None:
    """Run a job: safe under cron (one at a time; an interrupted run is finished first)."""
    import os

    from .._core._files import JobLock
    from ..jobs import load_job

    try:
        loaded = load_job(path, os.environ)
        if rate_override is not None:
            rate = cli_rate(rate_override, "'--rate'") or "unlimited"
            settings = loaded.run.model_copy(update={"rate": rate})
            loaded = loaded.model_copy(update={"run": settings})
    except UsageError as exc:
        fail_usage(str(exc))
    try:
        with JobLock(loaded.report_folder() / f".{loaded.name}.lock"):
            code = _prepare_and_run(loaded, dry_run, yes)
    except JobLocked as exc:
        click.echo(f"bulk: {loaded.name}: {exc}", err=True)
        sys.exit(exc.exit_code)
    except UsageError as exc:  # the lock file is a link, or not bulk's
        fail_usage(str(exc))
    sys.exit(code)


def _prepare_and_run(loaded: Job, dry_run: bool, yes: bool) -> int:
    """Under the job's lock: finish or list, then run the batch; its exit code."""
    import anyio

    from ..jobs import prepare_job

    try:
        prepared = anyio.run(lambda: prepare_job(loaded, dry_run=dry_run))
    except UsageError as exc:
        fail_usage(str(exc))
    except CredentialsRejected as exc:
        click.echo(f"bulk: {loaded.name}: listing stopped: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    except RequestError as exc:
        # Exit 3, as a run whose reads fail: 1 says a batch finished with failed rows.
        click.echo(
            f"bulk: {loaded.name}: listing failed: {printable(exc.message, 300)}; nothing "
            "sent (the next run lists again)",
            err=True,
        )
        sys.exit(ExitCode.STOPPED)
    except KeyboardInterrupt:
        click.echo(f"bulk: {loaded.name}: interrupted while listing; nothing sent", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    if prepared.input is None:
        click.echo(f"job {loaded.name}: nothing selected; nothing to send")
        sys.exit(ExitCode.OK)
    return execute_batch(
        prepared.input,
        prepared.options,
        yes,
        input_sha256=prepared.input_sha256,
        controller=prepared.controller,
    )
