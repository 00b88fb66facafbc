"""`bulk simulate`'s options that are more than a SimConfig field, read without click: the
command line (bulk/cli/_simulate.py) turns a ValueError here into its usage error."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["parse_agent", "parse_schedule"]

# (seconds after the first request, {SimConfig field: value}), in time order.
_Changes = list[tuple[float, dict[str, Any]]]
_REVOKED = {"client_secret": "revoked", "access_token": "revoked"}


def parse_schedule(
    rate_after: Sequence[str],
    revoke_after: float | None,
    read_rate: Callable[[str], float | None],
) -> tuple[_Changes, list[str]]:
    """The changes in the middle of a run, by seconds after the first request, and their lines.

    `rate_after` holds SECONDS:RATE texts; ValueError if one is not. `read_rate` reads a RATE
    (None: no limit) and its errors pass through: it is the caller's, so that a server's limit
    is read by the same rule as a client's without the simulator importing the client side.
    """
    schedule: _Changes = []
    shown: list[str] = []
    for spec in rate_after:
        seconds, value = _seconds_and_rate(spec)
        new_rate = read_rate(value)
        schedule.append((seconds, {"rate": new_rate}))
        limit = "unlimited" if new_rate is None else f"{new_rate:g}/s"
        shown.append(f"after {seconds:g} s the limit becomes {limit}")
    if revoke_after is not None:
        schedule.append((revoke_after, dict(_REVOKED)))
        shown.append(f"after {revoke_after:g} s the credentials are revoked")
    schedule.sort(key=lambda change: change[0])
    return schedule, shown


def _seconds_and_rate(spec: str) -> tuple[float, str]:
    when, sep, value = spec.partition(":")
    try:
        seconds = float(when)
    except ValueError:
        seconds = math.nan
    if not sep or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{spec!r}: expected SECONDS:RATE, e.g. 30:5")
    return seconds, value


def parse_agent(spec: str) -> tuple[float, float]:
    """`--agent-reopen SHARE@SECOND` (e.g. `0.05@30`) as (share, second); ValueError if not."""
    share_text, sep, when = spec.partition("@")
    try:
        share, seconds = float(share_text), float(when)
    except ValueError:
        share = seconds = math.nan
    if not sep or not 0 <= share <= 1 or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{spec!r}: expected SHARE@SECOND, a share from 0 to 1, e.g. 0.05@30")
    return share, seconds
