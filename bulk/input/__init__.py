"""Reading an input (a file, standard input or a DataFrame) in chunks of clean cells.

Finds the id and status columns, fingerprints the input for the journal, and
never holds a large file whole. Cells are cleaned by `clean_cell` (the rule
of `bulk._core._text`) before anything else sees them.
"""

from ._formats import SUFFIXES, clean_cell, file_fingerprint
from ._source import (
    CHUNK_ROWS,
    DERIVED_COLUMNS,
    ID_NAMES,
    STATUS_NAMES,
    Chunk,
    Source,
    open_source,
    picked_by_name,
    spool_stdin,
)

__all__ = [
    "CHUNK_ROWS",
    "DERIVED_COLUMNS",
    "ID_NAMES",
    "STATUS_NAMES",
    "SUFFIXES",
    "Chunk",
    "Source",
    "clean_cell",
    "file_fingerprint",
    "open_source",
    "picked_by_name",
    "spool_stdin",
]
