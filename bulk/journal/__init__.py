"""The run's memory in SQLite: planned rows, duplicates, outcomes, meta.

`Journal` is the one way to write and read a journal; `read_meta`,
`planned_fingerprint`, `held_rows` and `changed_rows` read a journal file without opening it for writing.
"""

from ._changes import FINAL_STATES, ChangeLog, ChangeState, change_columns
from ._facts import JournalFacts, read_facts
from ._journal import COMMIT_EVERY, Journal
from ._reads import CLOCK_SKEW, GUARD_OFF, SNAPSHOT_COLUMNS, ReadRecord
from ._schema import (
    REPORT_COLUMNS,
    Outcome,
    changed_rows,
    held_rows,
    planned_fingerprint,
    read_meta,
)
from ._seconds import ANSWER_CLASSES, Second

__all__ = [
    "ANSWER_CLASSES",
    "CLOCK_SKEW",
    "COMMIT_EVERY",
    "FINAL_STATES",
    "GUARD_OFF",
    "REPORT_COLUMNS",
    "SNAPSHOT_COLUMNS",
    "ChangeLog",
    "ChangeState",
    "Journal",
    "JournalFacts",
    "Outcome",
    "ReadRecord",
    "Second",
    "change_columns",
    "changed_rows",
    "held_rows",
    "planned_fingerprint",
    "read_facts",
    "read_meta",
]
