"""`bulk demo`: the sample mass closure against a simulator started in-process."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .._core._exit import ExitCode

__all__ = ["demo", "run_demo"]

SAMPLE = Path("samples") / "mass_close.csv"


def _sample_ids() -> list[str]:
    with open(SAMPLE, encoding="utf-8-sig", newline="") as handle:
        return [row["ticket_id"].strip() for row in csv.DictReader(handle)]


def run_demo(rate: float, execute: Callable[..., int]) -> int:
    from .. import simulator as sim
    from .._core._config import Credentials
    from ..batch import RunOptions

    if not SAMPLE.is_file():
        click.echo(f"bulk demo: {SAMPLE} not found; run it from the repository's top folder")
        return ExitCode.USAGE
    ids = _sample_ids()
    # The simulator holds exactly the sample's tickets, in mixed states, so the
    # run shows both `updated` and `unchanged` rows.
    tickets = sim.make_tickets(len(ids), seed=7)
    for ticket, ticket_id in zip(tickets, ids, strict=True):
        ticket["id"] = ticket_id
    config = sim.SimConfig(rate=rate, latency=0.02, jitter=0.03, error_rate=0.04, seed=7)
    report = Path("reports") / "demo" / "mass_close.report.csv"
    click.echo(
        f"demo: {len(ids)} tickets from {SAMPLE} -> closed, against a local simulator "
        f"({rate:g} req/s limit, 20-50 ms latency, 4% server errors to show retries)"
    )
    with sim.SimulatorThread(sim.Simulator(config, tickets)) as server:
        options = RunOptions(
            status="closed", report=report, base_url=server.base_url, rate=rate, fresh=True
        )
        credentials: Any = Credentials.basic(sim.DEMO_CLIENT_ID, sim.DEMO_CLIENT_SECRET)
        code = execute(str(SAMPLE), options, credentials=credentials)
    return code


@click.command()
@click.option("--rate", default=40.0, show_default=True, help="Requests per second for the demo.")
def demo(rate: float) -> None:
    """Run the sample mass closure against a simulator started here, and show the report."""
    import sys

    from ._common import execute_batch

    sys.exit(run_demo(rate, execute_batch))
