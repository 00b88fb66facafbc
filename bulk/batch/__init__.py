"""One batch end to end: options, the story (`execute`), its steps, the summary, the library face.

Also the batches made from an earlier report (retry, undo), which run
through the same story.
"""

from ._derived import (
    claim_the_retry,
    derived_report_path,
    read_report,
    refuse_a_second_retry,
    retry_frame,
    undo_frame,
)
from ._library import preview, run, run_async
from ._options import RunOptions, default_report
from ._send import rate_controller
from ._story import execute
from ._summary import INTERRUPTED, RunSummary, exit_code
from ._target import DerivedTarget, batch_base_url, derived_target

__all__ = [
    "INTERRUPTED",
    "DerivedTarget",
    "RunOptions",
    "RunSummary",
    "batch_base_url",
    "claim_the_retry",
    "default_report",
    "derived_report_path",
    "derived_target",
    "execute",
    "exit_code",
    "preview",
    "rate_controller",
    "read_report",
    "refuse_a_second_retry",
    "retry_frame",
    "run",
    "run_async",
    "undo_frame",
]
