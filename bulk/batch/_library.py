"""The library face: `run` and `run_async` return the report as a DataFrame."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from .._core._config import Credentials
from ._options import RunOptions
from ._story import execute

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["preview", "run", "run_async"]


async def run_async(
    source: str | Path | pd.DataFrame,
    *,
    credentials: Credentials | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Run a batch and return its report as a DataFrame (one row per input row, in order)."""
    summary = await execute(source, RunOptions(**options), credentials=credentials, collect=True)
    frame: pd.DataFrame = summary.frame
    summary.frame = None  # pandas deep-copies attrs; a cycle back to the frame would recurse
    frame.attrs["summary"] = summary
    return frame


def run(
    source: str | Path | pd.DataFrame,
    *,
    credentials: Credentials | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Blocking twin of `run_async`; works inside a notebook whose event loop is running."""

    async def main() -> pd.DataFrame:
        return await run_async(source, credentials=credentials, **options)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return anyio.run(main)
    # A loop is already running in this thread (Jupyter): run ours in another thread.
    result: list[pd.DataFrame] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(anyio.run(main))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name="bulk-run")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def preview(
    source: str | Path | pd.DataFrame,
    *,
    credentials: Credentials | None = None,
    **options: Any,
) -> pd.DataFrame:
    """A dry run that reads: the report with `current_status` and `would` per row; no write.

    `report.attrs["summary"].preview` holds the change set's summary line.
    """
    return run(source, credentials=credentials, preview=True, **options)
