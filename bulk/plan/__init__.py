"""Per-row validation before anything is sent: ids, statuses, status maps.

One `PlannedRow` per input row; checks across rows (duplicates) are the
journal's, in SQL.
"""

from ._changes import (
    CHANGE_COLUMNS,
    KINDS,
    TYPES,
    ChangeSpec,
    PlannedChange,
    Template,
    checked_assignee,
    checked_changes,
    checked_type,
    plan_changes,
)
from ._checks import (
    STATUSES,
    PlannedRow,
    checked_instant,
    checked_map,
    checked_status,
    normalise_status,
    plan_chunk,
)

__all__ = [
    "CHANGE_COLUMNS",
    "KINDS",
    "STATUSES",
    "TYPES",
    "ChangeSpec",
    "PlannedChange",
    "PlannedRow",
    "Template",
    "checked_assignee",
    "checked_changes",
    "checked_instant",
    "checked_map",
    "checked_status",
    "checked_type",
    "normalise_status",
    "plan_changes",
    "plan_chunk",
]
