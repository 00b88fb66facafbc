"""The one reading of a rate: `--rate`, `RunOptions.rate`, a job's `run.rate`, a server limit.

A rate is requests per second (a positive, finite number), `None` for no
limit, or `"auto"` (start at `DOCUMENTED_RATE` and find the server's limit).
Words mean the same wherever a rate is given, so a job, the command line and
the library cannot drift apart.
"""

from __future__ import annotations

import math
from typing import Literal

__all__ = ["AUTO", "DOCUMENTED_RATE", "Rate", "parse_rate"]

# The API's published limit per client: where `auto` starts and what the dry run assumes.
DOCUMENTED_RATE = 10.0
AUTO: Literal["auto"] = "auto"
# The slowest pace taken: one request every 100 s. Slower is a typo (`--rate 1e-9` waited
# 31 years for its first slot, silently: review), not a pace anyone means.
MIN_RATE = 0.01
# As words, "0" and "inf" mean no limit too (the command line always took them so).
_UNLIMITED = frozenset({"none", "unlimited", "0", "inf"})

Rate = float | Literal["auto"] | None


def parse_rate(value: object, *, allow_auto: bool = True) -> Rate:
    """`value` as a rate, or ValueError saying what a rate may be.

    `allow_auto=False` for a server's limit, which has nothing to find.
    """
    words = (
        "a positive number, 'auto' or 'unlimited'"
        if allow_auto
        else ("a positive number or 'unlimited'")
    )
    if value is None:
        return None
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _UNLIMITED:
            return None
        if word == AUTO and allow_auto:
            return AUTO
        try:
            value = float(word)
        except ValueError:
            raise ValueError(f"{value!r} is not {words}") from None
    # bool is an int to Python, never a rate to a person.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not {words}")
    if not 0 < value < math.inf:  # also refuses nan
        raise ValueError(f"{value!r}: must be {words}")
    if value < MIN_RATE:
        raise ValueError(
            f"{value!r}: at least {MIN_RATE} requests a second (one every "
            f"{1 / MIN_RATE:.0f} s), or 'unlimited'"
        )
    return float(value)
