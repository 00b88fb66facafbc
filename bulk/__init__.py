"""bulk: change thousands of Spacebring support tickets at once, safely.

    import bulk
    report = bulk.run("tickets.csv", status="closed", rate=10)

The public surface is re-exported here; the modules behind it are private.
Heavy modules (pandas, aiohttp) load on first use, so importing `bulk` (and
starting the CLI) stays fast: only the errors and exit codes, which import
nothing, are loaded at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._core._exceptions import (
    BulkError,
    CredentialsRejected,
    FatalRequestError,
    JobLocked,
    ListingUnreadable,
    NotFound,
    RequestError,
    RetriableError,
    UnexpectedAnswer,
    UsageError,
)
from ._core._exit import ExitCode
from ._version import __version__

if TYPE_CHECKING:
    from ._core._config import Credentials
    from .batch import RunOptions, RunSummary, execute, preview, run, run_async

__all__ = [
    "BulkError",
    "Credentials",
    "CredentialsRejected",
    "ExitCode",
    "FatalRequestError",
    "JobLocked",
    "ListingUnreadable",
    "NotFound",
    "RequestError",
    "RetriableError",
    "RunOptions",
    "RunSummary",
    "UnexpectedAnswer",
    "UsageError",
    "__version__",
    "execute",
    "preview",
    "run",
    "run_async",
]

_LAZY = {
    "Credentials": "._core._config",
    "RunOptions": ".batch",
    "RunSummary": ".batch",
    "execute": ".batch",
    "preview": ".batch",
    "run": ".batch",
    "run_async": ".batch",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'bulk' has no attribute {name!r}")
