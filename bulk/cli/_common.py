"""What the commands that send share: the run options, the confirmation, running a batch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .._core._exceptions import UsageError
from .._core._exit import ExitCode
from .._core._rates import Rate, parse_rate
from ._console import fail_usage, terminal

if TYPE_CHECKING:
    from ..batch import RunOptions, RunSummary

__all__ = ["cli_rate", "derived_options", "execute_batch", "run_options"]


def cli_rate(value: str, hint: str | None = None, *, allow_auto: bool = True) -> Rate:
    """`parse_rate` with the command line's error (exit 2, naming the option)."""
    try:
        return parse_rate(value, allow_auto=allow_auto)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from None


def _print_summary(summary: RunSummary) -> None:
    for line in summary.lines():
        click.echo(line)


def _duration(value: str | None) -> float | None:
    from .._core._config import parse_duration

    try:
        return None if value is None else parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _confirmer(yes: bool, batch_url: str | None = None) -> Any:
    """Ask at a terminal before sending; `batch_url`: the run goes elsewhere than that batch did."""

    def confirm(rows: int, base_url: str) -> bool:
        """`rows` 0: a preview, which only reads (the credentials go to the host all the same)."""
        import signal
        from urllib.parse import urlsplit

        from .._core._config import DEFAULT_HOST, needs_confirmation

        # Without a terminal (cron) nobody can answer: the first log line names the host.
        asks = batch_url is not None or needs_confirmation(base_url, rows)
        if yes or not sys.stdin.isatty() or not asks:
            return True
        host = urlsplit(base_url).netloc
        other = "" if urlsplit(base_url).hostname == DEFAULT_HOST else f", not {DEFAULT_HOST}"
        if batch_url is not None:  # even loopback: not where the batch went
            other = f", not {urlsplit(batch_url).netloc} where the batch went"
        # asyncio's own SIGINT handler would only cancel the run at its next await,
        # leaving the prompt waiting: at the prompt, Ctrl-C answers at once.
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            what = f"change {rows} tickets at" if rows else "read the batch's tickets from"
            return click.confirm(f"bulk: {what} {host}{other}?", default=False, err=True)
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


def execute_batch(
    source: Any,
    options: RunOptions,
    yes: bool = True,
    batch_url: str | None = None,
    run_hint: str | None = None,
    **kwargs: Any,
) -> int:
    """Run one batch with a progress display and signal handling; its exit code.

    `batch_url`: the earlier batch's API, when this one (a retry, an undo) goes elsewhere.
    `run_hint`: a preview's command line that runs it for real, shown if a row may change.
    """
    import gc

    import anyio

    from ..batch import execute
    from ._progress import LogProgress, RichProgress

    if sys.stderr.isatty():
        progress: Any = RichProgress(terminal())
    else:
        progress = LogProgress()
    # Everything imported so far lives as long as the run: frozen, the collector
    # stops walking it (a 20,000-row run's two full collections took 0.06 s of
    # CPU, 0.005 s frozen). Not in the library, thawed after (tests run this
    # in-process), and not at all in a process that froze objects itself: a
    # host's collector is not ours to change.
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    try:
        summary = anyio.run(
            lambda: execute(
                source,
                options,
                progress=progress,
                handle_signals=True,
                confirm=_confirmer(yes, batch_url),
                **kwargs,
            ),
            backend_options=_loop_options(),
        )
    except UsageError as exc:
        fail_usage(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        click.echo(
            "bulk: interrupted; the journal keeps every outcome recorded so far "
            "(run the same command again to resume)",
            err=True,
        )
        return ExitCode.INTERRUPTED
    finally:
        if freeze:
            gc.unfreeze()
    _print_summary(summary)
    if run_hint is not None and summary.would_change is not None:
        click.echo(
            f"to run it: {run_hint}"
            if summary.would_change
            else "nothing to run: no row would change"
        )
    return summary.exit_code


_YES_HELP = (
    "Do not ask before sending (a terminal asks above 500 rows, or for any rows to a host "
    "other than the production API; loopback never asks)."
)


def yes_option(f: Any) -> Any:
    return click.option("--yes", "-y", is_flag=True, help=_YES_HELP)(f)


def _report_option() -> Any:
    return click.option(
        "--report",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Report path (.csv, .jsonl, .parquet). Default: reports/<input>.report.csv",
    )


def _input_options() -> list[Any]:
    """What to read from an input file: only `bulk run` reads one."""
    return [
        click.option("--status", help="One target status for every row (input needs only ids)."),
        click.option("--id-column", help="Column holding the ticket id."),
        click.option("--status-column", help="Column holding the target status."),
    ]


def _sending_options() -> list[Any]:
    """How a batch is sent and stopped: every command that sends one."""
    return [
        click.option(
            "--rate",
            default="10",
            show_default=True,
            callback=lambda _ctx, _param, value: cli_rate(value),
            help="Most requests per second; 'auto' starts at 10 and finds the server's limit; "
            "'unlimited' (or 0) for no pace.",
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
            help="Stop (exit 3) when more of the last 100 finished rows than this failed "
            "(judged from the 20th finished row on).",
        ),
        click.option(
            "--limit",
            type=click.IntRange(min=0),
            help="Send at most N more valid rows in this run (a canary); rerun for the rest.",
        ),
        click.option(
            "--deadline",
            callback=lambda _ctx, _param, value: _duration(value),
            help="Stop taking new rows after this long, e.g. 90m or 2h (exit 3, resumable).",
        ),
        yes_option,
    ]


def _apply(f: Any, options: list[Any]) -> Any:
    for option in reversed(options):
        f = option(f)
    return f


def run_options(f: Any) -> Any:
    """The options of `bulk run`: what to read from the input, where and how to send."""
    base_url = click.option(
        "--base-url", help="API root (default SPACEBRING_BASE_URL or production)."
    )
    return _apply(f, [*_input_options(), _report_option(), base_url, *_sending_options()])


def derived_options(f: Any) -> Any:
    """The options of `bulk retry` and `bulk undo`: the earlier report says what and where."""
    base_url = click.option(
        "--base-url",
        help="API root. Default: the one the batch went to, as its journal and audit record "
        "say; another must be given here, and is named before sending.",
    )
    report = click.option(
        "--report",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Report path (.csv, .jsonl, .parquet). Default: beside REPORT, e.g. "
        "x.report.csv -> x.retry.csv or x.undo.csv (a dry run: x.undo.dry-run.csv)",
    )
    return _apply(f, [report, base_url, *_sending_options()])
