"""TOML jobs: the schema (pydantic), the API listing as a source, and preparing a run.

Preparing decides what one invocation sends: finish the run a crash or a stop
left unfinished (the resume pointer), or list or read afresh into new,
timestamped files. The run itself is an ordinary batch (`bulk.batch`).
"""

from .._core._exceptions import ListingUnreadable
from ._listing import MAX_PAGES, Listing, list_and_select
from ._prepare import PreparedRun, prepare_job
from ._schema import ApiSource, FileSource, Job, Select, load_job

__all__ = [
    "MAX_PAGES",
    "ApiSource",
    "FileSource",
    "Job",
    "Listing",
    "ListingUnreadable",
    "PreparedRun",
    "Select",
    "list_and_select",
    "load_job",
    "prepare_job",
]
