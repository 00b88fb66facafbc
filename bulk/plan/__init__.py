"""Per-row validation before anything is sent: ids, statuses, status maps.

One `PlannedRow` per input row; checks across rows (duplicates) are the
journal's, in SQL.
"""

from ._checks import (
    STATUSES,
    PlannedRow,
    checked_map,
    checked_status,
    normalise_status,
    plan_chunk,
)

__all__ = [
    "STATUSES",
    "PlannedRow",
    "checked_map",
    "checked_status",
    "normalise_status",
    "plan_chunk",
]
