"""`bulk report REPORT [--open]`: the run's page again, from its journal and audit record."""

from __future__ import annotations

from pathlib import Path

import click

from .._core._exceptions import UsageError
from ._console import fail_usage

__all__ = ["report"]


@click.command()
@click.argument("report_path", metavar="REPORT", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--open", "open_it", is_flag=True, help="Open the page in the default browser.")
def report(report_path: Path, open_it: bool) -> None:
    """Render REPORT's page (<report>.html) again from the journal and audit record beside it."""
    from ..report import check_report_path, render_again

    try:
        check_report_path(report_path)
        page = render_again(report_path)
    except UsageError as exc:
        fail_usage(str(exc))
    click.echo(f"page: {page.resolve()}")
    if open_it:
        import webbrowser

        webbrowser.open(page.resolve().as_uri())
