"""The run's memory in SQLite: planned rows, duplicates, outcomes, meta.

`Journal` is the one way to write and read a journal; `read_meta` and
`planned_fingerprint` read a journal file without opening it for writing.
"""

from ._journal import Journal
from ._reads import SNAPSHOT_COLUMNS, ReadRecord
from ._schema import REPORT_COLUMNS, Outcome, planned_fingerprint, read_meta

__all__ = [
    "REPORT_COLUMNS",
    "SNAPSHOT_COLUMNS",
    "Journal",
    "Outcome",
    "ReadRecord",
    "planned_fingerprint",
    "read_meta",
]
