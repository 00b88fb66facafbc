"""When a row finished, as the report shows it: UTC, to the millisecond, ISO 8601.

`datetime.now(UTC).isoformat(timespec="milliseconds")` built a datetime and
formatted all of it for every row (measured 2.5 us a call on the bench
machine, against 0.4 us here). Rows finish many to the second, so the date and
time up to the second are formatted once per second, and the rest is one of a
thousand ready-made endings; the text is the same (tests/unit/test_cpu_paths.py).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

__all__ = ["utc_stamp"]

_ENDINGS = tuple(f".{milli:03d}+00:00" for milli in range(1000))
_last = [-1, ""]  # the last second seen, and its text up to the second


def utc_stamp(ns: int | None = None) -> str:
    """Now (or `ns`, nanoseconds since the epoch) as datetime.now(UTC).isoformat shows it.

    datetime.now floors the clock to microseconds and isoformat(timespec=
    "milliseconds") cuts those to milliseconds: together, milliseconds rounded down.
    """
    ms = (time.time_ns() if ns is None else ns) // 1_000_000
    second = ms // 1000
    if second != _last[0]:
        moment = datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")
        _last[0], _last[1] = second, moment[:-6]  # without "+00:00"
    return str(_last[1]) + _ENDINGS[ms - second * 1000]
