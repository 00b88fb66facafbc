"""The terminal: log lines (text, rich or JSON) on standard error, and usage errors."""

from __future__ import annotations

import logging
import sys
from typing import Any, NoReturn

import click

from .._core._exit import ExitCode

__all__ = ["fail_usage", "setup_logging", "terminal"]


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


def terminal() -> Any:
    """The one rich console on standard error, shared by log lines and the progress bar."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(stderr=True)
    return _console


def setup_logging(verbose: int, log_format: str = "text") -> None:
    level = logging.DEBUG if verbose else logging.INFO
    handler: logging.Handler
    if log_format == "text" and sys.stderr.isatty():
        # Through rich, so a log line prints above the progress bar, not through it.
        from rich.logging import RichHandler

        handler = RichHandler(
            console=terminal(), show_time=False, show_path=False, show_level=False
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


def fail_usage(message: str, code: int = ExitCode.USAGE) -> NoReturn:
    click.echo(f"bulk: error: {message}", err=True)
    sys.exit(code)
