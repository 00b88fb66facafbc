"""`--preview`'s summary: the real change set, from what was read, and how long it would take."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import anyio

from .._core._rates import AUTO, DOCUMENTED_RATE
from ..journal import Journal

if TYPE_CHECKING:
    from ._prepare import Batch
    from ._steps import Start

__all__ = ["duration_text", "preview_lines"]


def duration_text(seconds: float) -> str:
    """`2m 10s`, `1h 05m`, `40s`: rounded to the second, as a person says it."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


async def preview_lines(journal: Journal, batch: Batch, start: Start) -> tuple[list[str], int]:
    """The preview's line, and how many rows the real run may change.

    Those are the rows that would change and the rows that could not be read (the real run
    reads them again); an unread row of an interrupted preview counts too.
    """
    groups = await anyio.to_thread.run_sync(journal.would_counts)
    changes: Counter[str] = Counter()
    already: Counter[str] = Counter()
    other: Counter[str] = Counter()
    unread = 0
    for would, current, target, rows in groups:
        if would == "would update":
            changes[f"{current}→{target}"] += rows
        elif would == "would update (status already at target)":
            changes[f"other changes, already {target}"] += rows
        elif would == "already at target":
            already[target] += rows
        elif would is None:
            unread += rows
        else:
            other["could not be read" if would.startswith("not read") else would] += rows
    change = sum(changes.values())
    parts = [f"{change:,} will change"]
    if changes:
        parts[0] += " (" + ", ".join(f"{k} {n:,}" for k, n in changes.most_common()) + ")"
    if already:
        at = f"already {next(iter(already))}" if len(already) == 1 else "already at target"
        parts.append(f"{sum(already.values()):,} {at}")
    parts += [f"{n:,} {what}" for what, n in sorted(other.items())]
    timing = _timing(batch, start, change)
    line = "; ".join(parts) + (f"; {timing}" if timing else "")
    return [line], change + other["could not be read"] + unread


def _timing(batch: Batch, start: Start, writes: int) -> str:
    rate = batch.options.rate
    rate = DOCUMENTED_RATE if rate == AUTO else rate
    if not isinstance(rate, int | float):
        return ""
    # The real run reads again first when it lists (a page per 100 tickets).
    pages = start.reading.pages if start.reading else 0
    return f"about {duration_text((writes + pages) / rate)} at {rate:g}/s"
