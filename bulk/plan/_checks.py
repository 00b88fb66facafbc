"""Validation before anything is sent: one verdict per input row.

Row-level checks (id shape, status spelling) happen here, chunk by chunk;
checks across rows (duplicates, conflicts) need every row and are done by the
journal in SQL, so a million ids never sit in a Python dict.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import NamedTuple

from .._core._exceptions import UsageError
from .._core._ids import UUID_PATTERN
from .._core._text import KEEP, LongText
from ..input import Chunk

__all__ = [
    "STATUSES",
    "PlannedRow",
    "checked_instant",
    "checked_map",
    "checked_status",
    "normalise_status",
    "plan_chunk",
]

STATUSES = ("new", "inProgress", "solved", "closed")
_ALIASES = {s.lower(): s for s in STATUSES}
_SEPARATORS = re.compile(r"[\s_\-]+")
_UUID = UUID_PATTERN  # the canonical ticket id: the only shape ever put into a URL


class PlannedRow(NamedTuple):
    """One row's verdict, in the order of the journal's INSERT (a tuple, so it goes straight in)."""

    row: int  # 1-based input position
    ticket_id: str  # as given, trimmed
    ticket_key: str | None  # canonical id; None when invalid
    target_status: str
    outcome: str | None  # None: to send; else "invalid" or "skipped"
    error: str | None
    source_row: int | None  # retry/undo: the row of the report it came from


def checked_instant(value: str) -> str | None:
    """An ISO 8601 time with its zone (a report's `finished_at`), in UTC; None when not one."""
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return when.astimezone(UTC).isoformat(timespec="milliseconds")


@functools.lru_cache(maxsize=1024)  # a column holds a handful of spellings, a million times
def normalise_status(value: str) -> str | None:
    """`Closed`, `CLOSED`, `in progress`, `in_progress`, `in-progress` ... to the API's spelling."""
    return _ALIASES.get(_SEPARATORS.sub("", value).lower())


def checked_status(value: str) -> str:
    """A `--status` option value, normalised, or a usage error listing the allowed values."""
    status = normalise_status(value)
    if status is None:
        raise UsageError(f"unknown status {value!r}; allowed: {', '.join(STATUSES)}")
    return status


def _quote(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")


def _too_long(cell: LongText) -> str:
    return f"too long ({cell.size:,} characters; the report keeps the first {KEEP})"


def checked_map(mapping: dict[str, str]) -> dict[str, str]:
    """A migration map, keyed by the trimmed, lower-cased legacy value; targets normalised."""
    checked = {}
    for legacy, target in mapping.items():
        status = normalise_status(target)
        if status is None:
            raise UsageError(
                f"status map: {legacy!r} maps to {target!r}, not a status; "
                f"allowed: {', '.join(STATUSES)}"
            )
        checked[legacy.strip().lower()] = status
    return checked


def plan_chunk(
    chunk: Chunk,
    id_column: str,
    status_column: str,
    fixed_status: str | None,
    status_map: dict[str, str] | None = None,
    *,
    allow_empty_status: bool = False,
) -> Iterator[PlannedRow]:
    """`allow_empty_status`: an empty status is no status change (a row of other changes)."""
    statuses = chunk.statuses
    for offset, raw_id in enumerate(chunk.ids):
        row = chunk.first_row + offset
        source = chunk.source_rows[offset] if chunk.source_rows else None
        ticket_id = raw_id.strip()
        raw_status = (
            fixed_status if fixed_status is not None else (statuses[offset] if statuses else "")
        )
        long_status = raw_status if isinstance(raw_status, LongText) else None
        raw_status = raw_status.strip()
        key: str | None = ticket_id.lower()
        if not _UUID.fullmatch(key or ""):
            key = None
        if status_map is not None:
            status = status_map.get(raw_status.lower())
        else:
            status = normalise_status(raw_status)
        # An empty status with other changes on the row: no status change.
        status = "" if allow_empty_status and not raw_status else status
        verdict, error = None, None
        if chunk.skips and chunk.skips[offset]:
            verdict, error = "skipped", chunk.skips[offset]
        elif not ticket_id:
            verdict, error = "invalid", f"{id_column}: empty"
        elif isinstance(raw_id, LongText):
            verdict, error = "invalid", f"{id_column}: {_too_long(raw_id)}; a ticket id is a UUID"
        elif key is None:
            verdict, error = (
                "invalid",
                f"{id_column}: {_quote(ticket_id)} is not a ticket id (a UUID)",
            )
        elif long_status is not None:
            verdict, error = "invalid", f"{status_column}: {_too_long(long_status)}"
        elif status is None and status_map is not None:
            what = f"no mapping for {_quote(raw_status)}" if raw_status else "empty"
            known = ", ".join(repr(k) for k in sorted(status_map))
            verdict, error = "invalid", f"{status_column}: {what}; the map has {known}"
        elif status is None:
            what = f"{_quote(raw_status)} is not a status" if raw_status else "empty"
            verdict, error = "invalid", f"{status_column}: {what}; allowed: {', '.join(STATUSES)}"
        yield PlannedRow(
            row, ticket_id, key, raw_status if status is None else status, verdict, error, source
        )
