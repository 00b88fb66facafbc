"""One batch from input to report: prepare, lock, open or resume the journal, send, finish.

`execute()` is what the command line and jobs call; `run()`/`run_async()`
(in `_library`) are the library face and return the report as a DataFrame.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._core._config import Credentials
from ..send import NoProgress, Progress, RateController
from ._options import RunOptions
from ._prepare import opened, prepare
from ._read import locations_of, read_before, session, verify_after
from ._send import rate_controller, settings
from ._signals import Interrupts
from ._steps import confirm_first, finish, plan_or_resume, recount, send
from ._summary import RunSummary

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["execute"]


async def execute(
    source: str | Path | pd.DataFrame,
    options: RunOptions,
    *,
    credentials: Credentials | None = None,
    progress: Progress | None = None,
    handle_signals: bool = False,
    collect: bool = False,
    derived_from: dict[str, Any] | None = None,
    confirm: Callable[[int, str], bool] | None = None,
    input_sha256: str | None = None,
    controller: RateController | None = None,
) -> RunSummary:
    """Run one batch; raise `UsageError` (exit 2) before anything is sent if the input is bad.

    `handle_signals` (the CLI, in the main thread): SIGINT/SIGTERM end the run
    with exit 130 and a consistent journal whenever they come. `input_sha256`:
    the input file must hold exactly these bytes (a job's batch input, as
    bulk wrote it), before and after it is read. `controller`: the run's one send
    budget when calls made before the batch (a job's listing) already took slots
    from it and learnt the limit; by default, a new one.
    """
    interrupts = Interrupts(handle_signals)
    with interrupts.deferred():
        batch = await prepare(source, options, credentials, derived_from, input_sha256)
        async with opened(batch) as journal:
            start = await plan_or_resume(batch, journal, interrupts)
            # One budget for the reads and the writes of this run.
            controller = controller or rate_controller(options.rate)
            start.confirmed = confirm_first(batch, start, interrupts, confirm)
            opening = session(batch, settings(options).workers, controller)
            async with opening if start.confirmed else contextlib.nullcontext(None) as client:
                start.reading = await read_before(
                    batch, journal, controller, client, interrupts.requested
                )
                if start.reading is not None:
                    await recount(journal, start)
                progress = progress or NoProgress()
                sent = await send(batch, journal, start, interrupts, progress, controller, client)
                verify = options.verify and sent[0] is None and not interrupts.requested.is_set()
                if verify and client is not None:
                    interrupts.then = "finishing the report, then stopping"
                    start.verifying = await verify_after(
                        batch,
                        journal,
                        controller,
                        client,
                        locations_of(batch),
                        interrupts.requested,
                    )
            interrupts.then = "finishing the report, then stopping"
            return await finish(batch, journal, start, sent, interrupts, collect)
