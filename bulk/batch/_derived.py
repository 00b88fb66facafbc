"""Batches made from an earlier report: retry the failures, or undo the changes.

Both produce an ordinary input (a DataFrame with `source_row` pointing back
into the earlier report) that runs through the same plan, journal and
engine, with its own report and audit record.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .._core._exceptions import UsageError
from ..plan import normalise_status
from ._undo_changes import UNDO_COLUMNS, changes_undo_frame, with_locations

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["derived_report_path", "read_report", "retry_frame", "undo_frame"]

_NEEDED = ("row", "ticket_id", "target_status", "outcome", "previous_status", "error")
RETRYABLE = frozenset({"failed", "skipped"})


def read_report(path: Path) -> pd.DataFrame:
    import pandas as pd

    if not path.is_file():
        raise UsageError(f"{path}: no such report")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        elif suffix == ".jsonl":
            frame = pd.read_json(path, lines=True, dtype=False)
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            raise UsageError(f"{path}: not a report (.csv, .jsonl or .parquet)")
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
    missing = [c for c in _NEEDED if c not in frame.columns]
    if missing:
        raise UsageError(f"{path}: not a bulk report (no column {', '.join(missing)})")
    kept = list(_NEEDED) + [c for c in UNDO_COLUMNS if c in frame.columns]
    frame = frame[kept].copy()
    for column in kept[1:]:
        frame[column] = frame[column].fillna("").astype(str)
    frame["row"] = frame["row"].astype(int)
    return frame


def derived_report_path(report: Path, kind: str) -> Path:
    base = report.name.rsplit(".", 1)[0].removesuffix(".report")
    return report.with_name(f"{base}.{kind}{report.suffix}")


def retry_frame(report: Path, only: frozenset[str]) -> pd.DataFrame:
    """The rows whose outcome is in `only`, to send again with the same target status."""
    unknown = only - RETRYABLE
    if unknown:
        raise UsageError(
            f"--only {','.join(sorted(unknown))}: retry takes {', '.join(sorted(RETRYABLE))}"
        )
    frame = read_report(report)
    chosen = frame["outcome"].isin(only)
    # A skipped duplicate's first row was (or will be) sent; sending it again adds nothing.
    chosen &= ~frame["error"].str.startswith(("duplicate of row", "left alone:"))
    picked = frame.loc[chosen, ["ticket_id", "target_status", "row"]]
    return picked.rename(columns={"row": "source_row"}).reset_index(drop=True)


def undo_frame(report: Path) -> pd.DataFrame:
    """Every row of the report: changed tickets go back, the rest are listed as left alone."""
    return with_locations(_undo_frame(report), report)


def _undo_frame(report: Path) -> pd.DataFrame:
    frame = read_report(report)
    if any(c in frame.columns for c in UNDO_COLUMNS):
        return changes_undo_frame(frame)
    previous = frame["previous_status"].map(lambda s: normalise_status(s) or "")
    changed = (frame["outcome"] == "updated") & (previous != "")
    reason = ("left alone: outcome was " + frame["outcome"]).where(~changed, "")
    no_previous = (frame["outcome"] == "updated") & (previous == "")
    reason = reason.mask(no_previous, "left alone: the report has no previous status")
    # The status the batch set: the undo reverts a ticket only while it still holds it.
    expected = frame["target_status"].where(changed, "")
    return frame.assign(
        target_status=previous.where(changed, ""), skip_reason=reason, expected_status=expected
    )[["ticket_id", "target_status", "row", "skip_reason", "expected_status"]].rename(
        columns={"row": "source_row"}
    )
