"""`bulk` on the command line: a thin layer over the library.

Only click is imported at start-up; pandas, aiohttp and the engine load when
a command that needs them runs, so `bulk --help` stays fast.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from ._core._exceptions import CredentialsRejected, RequestError, UsageError
from ._core._exit import ExitCode
from ._version import __version__

if TYPE_CHECKING:
    from ._runner import RunOptions, RunSummary

log = logging.getLogger("bulk")


class _JsonLines(logging.Formatter):
    """One JSON object per line, for log collectors (`--log-format json`)."""

    def format(self, record: logging.LogRecord) -> str:
        import json
        from datetime import UTC, datetime

        return json.dumps(
            {
                "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
                "level": record.levelname.lower(),
                "message": record.getMessage(),
            }
        )


_console: Any = None


def _terminal() -> Any:
    """The one rich console on standard error, shared by log lines and the progress bar."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(stderr=True)
    return _console


def _setup_logging(verbose: int, log_format: str = "text") -> None:
    level = logging.DEBUG if verbose else logging.INFO
    handler: logging.Handler
    if log_format == "text" and sys.stderr.isatty():
        # Through rich, so a log line prints above the progress bar, not through it.
        from rich.logging import RichHandler

        handler = RichHandler(
            console=_terminal(), show_time=False, show_path=False, show_level=False
        )
        handler.setFormatter(logging.Formatter("bulk: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            _JsonLines() if log_format == "json" else logging.Formatter("bulk: %(message)s")
        )
    root = logging.getLogger("bulk")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _fail_usage(message: str, code: int = ExitCode.USAGE) -> NoReturn:
    click.echo(f"bulk: error: {message}", err=True)
    sys.exit(code)


def _rate(value: str) -> float | str | None:
    if value.lower() in ("none", "unlimited", "0", "inf"):
        return None
    if value.lower() == "auto":
        return "auto"
    try:
        rate = float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number, 'auto' or 'unlimited'") from None
    if not 0 < rate < float("inf"):  # also refuses nan
        raise click.BadParameter("must be a positive number, 'auto' or 'unlimited'")
    return rate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bulk")
@click.option("-v", "--verbose", count=True, help="More detail on standard error.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines on standard error as text or JSON lines.",
)
def main(verbose: int, log_format: str) -> None:
    """Change thousands of Spacebring support tickets at once, safely."""
    _setup_logging(verbose, log_format)


def _print_summary(summary: RunSummary) -> None:
    for line in summary.lines():
        click.echo(line)


def _duration(value: str | None) -> float | None:
    from ._core._config import parse_duration

    try:
        return None if value is None else parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _confirmer(yes: bool) -> Any:
    def confirm(rows: int, base_url: str) -> bool:
        import signal
        from urllib.parse import urlsplit

        from ._core._config import DEFAULT_HOST, needs_confirmation

        # Without a terminal (cron) nobody can answer: the first log line names the host.
        if yes or not sys.stdin.isatty() or not needs_confirmation(base_url, rows):
            return True
        host = urlsplit(base_url).netloc
        other = "" if urlsplit(base_url).hostname == DEFAULT_HOST else f", not {DEFAULT_HOST}"
        # asyncio's own SIGINT handler would only cancel the run at its next await,
        # leaving the prompt waiting: at the prompt, Ctrl-C answers at once.
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            return click.confirm(
                f"bulk: send {rows} status changes to {host}{other}?", default=False, err=True
            )
        except click.Abort:  # Ctrl-C or end of input at the prompt: no
            click.echo("", err=True)
            return False
        finally:
            signal.signal(signal.SIGINT, previous)

    return confirm


def _loop_options() -> dict[str, Any]:
    # uvloop where installed: the profile of a fast run is mostly event loop and
    # aiohttp internals, which uvloop's C loop makes markedly cheaper per request.
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


def _execute(source: Any, options: RunOptions, yes: bool = True, **kwargs: Any) -> int:
    import anyio

    from ._progress import LogProgress, RichProgress
    from ._runner import execute

    if sys.stderr.isatty():
        progress: Any = RichProgress(_terminal())
    else:
        progress = LogProgress()
    try:
        summary = anyio.run(
            lambda: execute(
                source,
                options,
                progress=progress,
                handle_signals=True,
                confirm=_confirmer(yes),
                **kwargs,
            ),
            backend_options=_loop_options(),
        )
    except UsageError as exc:
        _fail_usage(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        click.echo(
            "bulk: interrupted; the journal keeps every outcome recorded so far "
            "(run the same command again to resume)",
            err=True,
        )
        return ExitCode.INTERRUPTED
    _print_summary(summary)
    return summary.exit_code


def _run_options(f: Any) -> Any:
    options = [
        click.option("--status", help="One target status for every row (input needs only ids)."),
        click.option("--id-column", help="Column holding the ticket id."),
        click.option("--status-column", help="Column holding the target status."),
        click.option(
            "--report",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Report path (.csv, .jsonl, .parquet). Default: reports/<input>.report.csv",
        ),
        click.option("--base-url", help="API root (default SPACEBRING_BASE_URL or production)."),
        click.option(
            "--rate",
            default="10",
            show_default=True,
            help="Most requests per second; 'auto' starts at 10 and finds the server's limit; "
            "'unlimited'.",
        ),
        click.option(
            "--concurrency",
            type=click.IntRange(min=1),
            default=None,
            help="Most requests in flight. Unset: 8 at first, then from the observed "
            "latency (Little's law), at most 64.",
        ),
        click.option("--max-attempts", default=6, show_default=True, help="Attempts per row."),
        click.option("--timeout", default=30.0, show_default=True, help="Seconds per request."),
        click.option("--dry-run", is_flag=True, help="Validate and report; send nothing."),
        click.option(
            "--fresh", is_flag=True, help="Ignore an earlier interrupted run; start over."
        ),
        click.option(
            "--max-failure-rate",
            default=0.2,
            show_default=True,
            type=click.FloatRange(0, 1),
            help="Stop (exit 3) when more of the last 100 finished rows than this failed.",
        ),
        click.option(
            "--limit", type=click.IntRange(min=0), help="Send only the first N valid rows."
        ),
        click.option(
            "--deadline",
            callback=lambda _ctx, _param, value: _duration(value),
            help="Stop taking new rows after this long, e.g. 90m or 2h (exit 3, resumable).",
        ),
        click.option(
            "--yes",
            "-y",
            is_flag=True,
            help="Do not ask before sending (a terminal asks above 500 rows, or for any host but the production API).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@main.command()
@click.argument("input", metavar="INPUT")
@_run_options
def run(input: str, rate: str, yes: bool, **kwargs: Any) -> None:
    """Set the status of every ticket in INPUT (.csv .tsv .xlsx .parquet .jsonl, or - for stdin).

    Running the same command again after an interruption resumes it.
    """
    from ._runner import RunOptions
    from .input import spool_stdin

    options = RunOptions(rate=_rate(rate), **kwargs)
    spooled = None
    if input == "-":
        spooled = spool_stdin(Path("reports") / ".stdin")
        source: Any = spooled
        if options.report is None:
            kind = "dry-run" if options.dry_run else "report"
            options.report = Path("reports") / f"stdin.{kind}.csv"
    else:
        source = input
    try:
        code = _execute(source, options, yes)
    finally:
        if spooled is not None:
            spooled.unlink(missing_ok=True)
    sys.exit(code)


def _derived_run(
    kind: str,
    report: Path,
    make_frame: Any,
    status: str | None,
    rate: str,
    yes: bool,
    options_given: dict[str, Any],
) -> None:
    """A batch made from an earlier report (retry, undo), run like any other."""
    from ._runner import RunOptions

    if status:
        _fail_usage(f"{kind} sends each row's own target status; --status does not apply")
    try:
        frame = make_frame()
    except UsageError as exc:
        _fail_usage(str(exc))
    options = RunOptions(rate=_rate(rate), **options_given)
    if frame.empty:
        click.echo(f"{report}: no rows to {kind}; nothing to do")
        sys.exit(ExitCode.OK)
    from ._derived import derived_report_path

    if options.report is None:
        options.report = derived_report_path(report, kind)
    from .report import batch_of

    derived = {"kind": kind, "report": str(report), "batch_id": batch_of(report)}
    sys.exit(_execute(frame, options, yes, derived_from=derived))


@main.command()
@click.argument("earlier", metavar="REPORT", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--only",
    default="failed",
    show_default=True,
    help="Which outcomes to send again: failed, skipped, or both (failed,skipped).",
)
@_run_options
def retry(
    earlier: Path, only: str, rate: str, status: str | None, yes: bool, **kwargs: Any
) -> None:
    """Send again the rows of REPORT that failed (or were skipped), into a new report."""
    from ._derived import retry_frame

    outcomes = frozenset(p.strip() for p in only.split(",") if p.strip())
    _derived_run(
        "retry", earlier, lambda: retry_frame(earlier, outcomes), status, rate, yes, kwargs
    )


@main.command()
@click.argument("earlier", metavar="REPORT", type=click.Path(path_type=Path, dir_okay=False))
@_run_options
def undo(earlier: Path, rate: str, status: str | None, yes: bool, **kwargs: Any) -> None:
    """Put every ticket that REPORT changed back to its previous status.

    Rows that were unchanged, failed, invalid or skipped are left alone and
    listed as such. Try it with --dry-run first.
    """
    from ._derived import undo_frame

    _derived_run("undo", earlier, lambda: undo_frame(earlier), status, rate, yes, kwargs)


@main.command()
@click.argument("folder", default="reports", type=click.Path(path_type=Path, file_okay=False))
@click.option("--limit", default=20, show_default=True)
def runs(folder: Path, limit: int) -> None:
    """List recent runs from their audit records under FOLDER."""
    from .report import list_runs

    records = list_runs(folder, limit)
    if not records:
        click.echo(f"no runs recorded under {folder}")
        return
    for line in records:  # every field made printable by the audit module
        click.echo(
            f"{line.ended_at:<19}  exit {line.exit_code:>3}  {line.kind:<5}  "
            f"{line.counts}  {line.report}"
        )


@main.group()
def job() -> None:
    """Run job files (jobs/*.toml): mass closures, migrations, scheduled cleanups."""


@job.command("validate")
@click.argument("path", metavar="JOB", type=click.Path(path_type=Path, dir_okay=False))
def job_validate(path: Path) -> None:
    """Check a job file (and its source file's columns) without sending anything."""
    import os

    from ._jobs import FileSource, load_job
    from .input import open_source

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
        _fail_usage(str(exc))
    kind = "file " + str(loaded.source.path) if isinstance(loaded.source, FileSource) else "API"
    click.echo(
        f"{path}: job {loaded.name!r} is valid ({kind} source, reports in {loaded.report_folder()})"
    )


@job.command("run")
@click.argument("path", metavar="JOB", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="List and validate; report what would change.")
@click.option(
    "--yes",
    "-y",
    is_flag=True,
    help="Do not ask before sending (a terminal asks above 500 rows, or for any host but the production API).",
)
@click.option("--rate", "rate_override", help="Override the job's rate (e.g. for a test).")
def job_run(path: Path, dry_run: bool, yes: bool, rate_override: str | None) -> None:
    """Run a job: safe under cron (one at a time; an interrupted run is finished first)."""
    import os

    import anyio

    from ._jobrun import JobLock, JobLocked, prepare_job
    from ._jobs import load_job

    try:
        loaded = load_job(path, os.environ)
        if rate_override is not None:
            settings = loaded.run.model_copy(update={"rate": _rate(rate_override) or "unlimited"})
            loaded = loaded.model_copy(update={"run": settings})
    except UsageError as exc:
        _fail_usage(str(exc))
    lock = JobLock(loaded.report_folder() / f".{loaded.name}.lock")
    try:
        with lock:
            try:
                prepared = anyio.run(lambda: prepare_job(loaded, dry_run=dry_run))
            except UsageError as exc:
                _fail_usage(str(exc))
            except CredentialsRejected as exc:
                click.echo(f"bulk: {loaded.name}: listing stopped: {exc.message}", err=True)
                sys.exit(exc.exit_code)
            except RequestError as exc:
                click.echo(f"bulk: {loaded.name}: listing failed: {exc.message}", err=True)
                sys.exit(exc.exit_code)
            except KeyboardInterrupt:
                click.echo(
                    f"bulk: {loaded.name}: interrupted while listing; nothing sent", err=True
                )
                sys.exit(ExitCode.INTERRUPTED)
            if prepared.input is None:
                click.echo(f"job {loaded.name}: nothing selected; nothing to send")
                sys.exit(ExitCode.OK)
            code = _execute(
                prepared.input, prepared.options, yes, input_sha256=prepared.input_sha256
            )
    except JobLocked as exc:
        click.echo(f"bulk: {loaded.name}: {exc}", err=True)
        sys.exit(exc.exit_code)
    except UsageError as exc:  # the lock file is a link, or not bulk's
        _fail_usage(str(exc))
    sys.exit(code)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8900, show_default=True, help="0 picks a free port.")
@click.option("--tickets", default="1000", show_default=True, help="How many tickets, or a CSV.")
@click.option(
    "--write-tickets", type=click.Path(path_type=Path), help="Write the tickets to a CSV."
)
@click.option("--rate", default="10", show_default=True, help="Limit per client, or 'unlimited'.")
@click.option(
    "--window",
    type=click.Choice(["bucket", "fixed", "sliding"]),
    default="bucket",
    show_default=True,
    help="Rate limit as a token bucket, per fixed second, or over any trailing second.",
)
@click.option("--burst", type=int, help="Token-bucket size (default: the rate).")
@click.option(
    "--rate-after",
    "rate_after",
    multiple=True,
    metavar="SECONDS:RATE",
    help="Change the limit this long after the first request (repeatable), e.g. 30:5.",
)
@click.option(
    "--revoke-after",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Reject the credentials (401) from this long after the first request.",
)
@click.option("--retry-after", is_flag=True, help="Send Retry-After with 429 answers.")
@click.option("--latency", default=0.0, show_default=True, help="Seconds added to every answer.")
@click.option("--jitter", default=0.0, show_default=True, help="Up to this many more seconds.")
@click.option("--error-rate", default=0.0, show_default=True, help="Fraction answered 5xx.")
@click.option(
    "--drop-rate", default=0.0, show_default=True, help="Fraction of dropped connections."
)
@click.option("--slow-rate", default=0.0, show_default=True, help="Fraction answered slowly.")
@click.option("--slow-seconds", default=5.0, show_default=True)
@click.option("--seed", type=int, help="Seed for repeatable faults.")
def simulate(
    host: str,
    port: int,
    tickets: str,
    write_tickets: Path | None,
    rate: str,
    rate_after: tuple[str, ...],
    revoke_after: float | None,
    **faults: Any,
) -> None:
    """Serve the Spacebring ticket API from memory on this machine, for trying batches.

    --rate-after and --revoke-after reproduce trouble in the middle of a run: the limit
    changing, or the credentials being revoked, that long after the first request.
    """
    import math

    from . import simulator as sim

    def server_rate(value: str, hint: str) -> float | None:
        # Not the shared _rate: a server limit has no 'auto'.
        if value.lower() in ("none", "unlimited", "0", "inf"):
            return None
        try:
            limit = float(value)
        except ValueError:
            limit = math.nan
        if not math.isfinite(limit) or limit <= 0:
            raise click.BadParameter(
                f"{value!r} is not a positive number or 'unlimited'", param_hint=hint
            )
        return limit

    schedule: list[tuple[float, dict[str, Any]]] = []
    shown: list[str] = []
    for spec in rate_after:
        when, sep, value = spec.partition(":")
        try:
            seconds = float(when)
        except ValueError:
            seconds = math.nan
        if not sep or not math.isfinite(seconds) or seconds < 0:
            raise click.BadParameter(
                f"{spec!r}: expected SECONDS:RATE, e.g. 30:5", param_hint="'--rate-after'"
            )
        new_rate = server_rate(value, "'--rate-after'")
        schedule.append((seconds, {"rate": new_rate}))
        limit = "unlimited" if new_rate is None else f"{new_rate:g}/s"
        shown.append(f"after {seconds:g} s the limit becomes {limit}")
    if revoke_after is not None:
        schedule.append((revoke_after, {"client_secret": "revoked", "access_token": "revoked"}))
        shown.append(f"after {revoke_after:g} s the credentials are revoked")
    schedule.sort(key=lambda change: change[0])

    if Path(tickets).is_file():
        loaded = sim.load_tickets(tickets)
    elif tickets.isdigit():
        loaded = sim.make_tickets(int(tickets), seed=faults["seed"] or 0)
    else:
        _fail_usage(f"--tickets {tickets!r}: neither a number nor a file")
    if write_tickets:
        sim.write_tickets(loaded, write_tickets)
        click.echo(f"tickets written to {write_tickets}")
    config = sim.SimConfig(rate=server_rate(rate, "'--rate'"), schedule=schedule, **faults)
    server = sim.Simulator(config, loaded)

    def ready(url: str) -> None:
        click.echo(f"simulator: {len(loaded)} tickets at {url} (Ctrl-C stops)")
        for line in shown:
            click.echo(f"  {line} (counted from the first request)")
        click.echo(
            f"try: SPACEBRING_BASE_URL={url} SPACEBRING_CLIENT_ID={sim.DEMO_CLIENT_ID} "
            f"SPACEBRING_CLIENT_SECRET={sim.DEMO_CLIENT_SECRET} bulk run FILE --status closed"
        )

    sim.run_forever(server, host, port, on_ready=ready)


@main.command()
@click.option("--rate", default=40.0, show_default=True, help="Requests per second for the demo.")
def demo(rate: float) -> None:
    """Run the sample mass closure against a simulator started here, and show the report."""
    from ._demo import run_demo

    sys.exit(run_demo(rate, _execute))


if __name__ == "__main__":  # pragma: no cover
    main()
