"""`bulk simulate`: the built-in simulator served on this machine."""

from __future__ import annotations

import errno
import math
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from .._core._text import printable
from ._common import cli_rate
from ._console import fail_usage

__all__ = ["simulate"]


def _server_rate(value: str, hint: str) -> float | None:
    # A server's limit has nothing to find: no 'auto'.
    rate = cli_rate(value, hint, allow_auto=False)
    assert not isinstance(rate, str)
    return rate


def _schedule(
    rate_after: tuple[str, ...], revoke_after: float | None
) -> tuple[list[tuple[float, dict[str, Any]]], list[str]]:
    """The simulator's schedule from the options, or a usage error naming --rate-after."""
    from ..simulator import parse_schedule

    try:
        return parse_schedule(
            rate_after, revoke_after, lambda value: _server_rate(value, "'--rate-after'")
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--rate-after'") from None


_F = TypeVar("_F", bound=Callable[..., Any])


def _share(name: str, text: str) -> Callable[[_F], _F]:
    """A fault's share of requests, 0 to 1 (`--drop-after` is `drop_after_rate`)."""
    dest = name.removeprefix("--").replace("-", "_")
    dest = dest if dest.endswith("_rate") else f"{dest}_rate"
    return click.option(
        name, dest, type=click.FloatRange(0, 1), default=0.0, show_default=True, help=text
    )


def _seconds(name: str, text: str, default: float = 0.0) -> Callable[[_F], _F]:
    return click.option(
        name, type=click.FloatRange(min=0), default=default, show_default=True, help=text
    )


@click.command()
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
@click.option(
    "--background-rate",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Another client of the same credentials using this many requests/s of the limit.",
)
@_seconds("--latency", "Seconds added to every answer.")
@_seconds("--jitter", "Up to this many more seconds.")
@_share("--error-rate", "Fraction answered 5xx.")
@_share("--drop-rate", "Fraction of dropped connections.")
@_share("--slow-rate", "Fraction answered slowly (after --slow-seconds).")
@_share("--drop-after", "Fraction of writes applied, then dropped without an answer.")
@_share("--error-after", "Fraction of writes applied, then answered 5xx.")
@click.option(
    "--token-lifetime",
    type=click.FloatRange(min=0, min_open=True),
    default=3600.0,
    show_default=True,
    help="Seconds an OAuth access token from /oauth2/token lives.",
)
@click.option(
    "--rotate/--no-rotate",
    "rotate_refresh_tokens",
    default=True,
    show_default=True,
    help="Hand out a new refresh token at each refresh (the old one stops working).",
)
@_seconds("--slow-seconds", "How long a slow answer (--slow-rate) waits.", 5.0)
@click.option("--seed", type=int, help="Seed for repeatable faults.")
@click.option(
    "--same-status-400", is_flag=True, help="Answer a PUT of the status a ticket has with 400."
)
@click.option("--unknown-400", is_flag=True, help="Answer an unknown ticket with 400, not 404.")
@click.option(
    "--agent-reopen",
    metavar="SHARE@SECOND",
    help="An agent reopens SHARE of the tickets PUTs changed, SECOND s after the first "
    "request, e.g. 0.05@30.",
)
def simulate(
    host: str,
    port: int,
    tickets: str,
    write_tickets: Path | None,
    rate: str,
    rate_after: tuple[str, ...],
    revoke_after: float | None,
    agent_reopen: str | None,
    **faults: Any,
) -> None:
    """Serve the Spacebring ticket API from memory on this machine, for trying batches.

    --rate-after and --revoke-after reproduce trouble in the middle of a run: the limit
    changing, or the credentials being revoked, that long after the first request.
    """
    from .. import simulator as sim

    _check_finite({**faults, "revoke_after": revoke_after})
    schedule, shown = _schedule(rate_after, revoke_after)
    try:
        agent = None if agent_reopen is None else sim.parse_agent(agent_reopen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--agent-reopen'") from None
    if agent is not None:
        shown.append(f"after {agent[1]:g} s an agent reopens {agent[0]:.0%} of the changed tickets")
    if Path(tickets).is_file():
        loaded = sim.load_tickets(tickets)
    elif tickets.isdigit():
        loaded = sim.make_tickets(int(tickets), seed=faults["seed"] or 0)
    else:
        fail_usage(f"--tickets {tickets!r}: neither a number nor a file")
    if write_tickets:
        sim.write_tickets(loaded, write_tickets)
        click.echo(f"tickets written to {write_tickets}")
    config = sim.SimConfig(
        rate=_server_rate(rate, "'--rate'"), schedule=schedule, agent_reopen=agent, **faults
    )
    server = sim.Simulator(config, loaded)

    def ready(url: str) -> None:
        click.echo(f"simulator: {len(loaded)} tickets at {url} (Ctrl-C stops)")
        if active := _faults(faults):
            click.echo(f"  faults: {active}")
        for line in shown:
            click.echo(f"  {line} (counted from the first request)")
        # Listening on every address: bulk reaches it (over plain http) through loopback.
        local = url.replace("//0.0.0.0:", "//127.0.0.1:").replace("//[::]:", "//[::1]:")
        click.echo(
            f"try: SPACEBRING_BASE_URL={local} SPACEBRING_CLIENT_ID={sim.DEMO_CLIENT_ID} "
            f"SPACEBRING_CLIENT_SECRET={sim.DEMO_CLIENT_SECRET} bulk run FILE --status closed"
        )
        click.echo(
            f"  OAuth: add SPACEBRING_REFRESH_TOKEN={sim.DEMO_REFRESH_TOKEN} "
            f"SPACEBRING_NETWORK_ID={sim.DEMO_NETWORK_ID} SPACEBRING_TOKEN_FILE=FILE"
        )

    _serve(lambda: sim.run_forever(server, host, port, on_ready=ready), host, port)


def _check_finite(faults: dict[str, Any]) -> None:
    """click's ranges let nan through (every comparison with it is false)."""
    options = {"drop_after_rate": "drop-after", "error_after_rate": "error-after"}
    for name, value in faults.items():
        if isinstance(value, float) and not math.isfinite(value):
            option = options.get(name, name.replace("_", "-"))
            fail_usage(f"--{option}: {value} is not a finite number")


def _serve(run: Callable[[], None], host: str, port: int) -> None:
    try:
        run()
    except OSError as exc:
        where = f"cannot listen on {printable(host, 100)} port {port}: {exc.strerror or exc}"
        if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
            fail_usage(f"{where}; --host must be an address of this machine (e.g. 127.0.0.1)")
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):  # taken, or privileged
            fail_usage(f"{where}; choose another --port (0 picks a free one)")
        raise


def _faults(options: dict[str, Any]) -> str:
    """The fault options given, as the banner shows them (the schedule is listed apart)."""
    shown = {
        "error_rate": "5xx {:.0%}",
        "drop_rate": "dropped {:.0%}",
        "slow_rate": "slow {:.0%}",
        "drop_after_rate": "applied then dropped {:.0%}",
        "error_after_rate": "applied then 5xx {:.0%}",
        "latency": "latency {:g} s",
        "jitter": "jitter {:g} s",
        "background_rate": "background load {:g}/s",
    }
    parts = [form.format(options[k]) for k, form in shown.items() if options.get(k)]
    parts += [
        name.replace("_", "-")
        for name in ("same_status_400", "unknown_400", "retry_after")
        if options.get(name)
    ]
    return ", ".join(parts)
