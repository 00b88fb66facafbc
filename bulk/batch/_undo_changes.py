"""Undo of a batch of changes: every change that was applied goes back, each on its own.

A row's `outcome` sums its changes up, so it cannot say what to undo: a row
that failed at its comment may still have had its assignee changed. Each
change column is judged alone: an `updated` assignee or type goes back to
the value recorded before it (`none`: unassigned again), an added comment is
deleted by its id, and the status goes back as a status-only undo does.
Like a status-only undo it reads first: a ticket whose status is no longer
the one the batch left is skipped as changed since the batch (`--force`
reverts it anyway). So is an assignee or type no longer the batch's: each
goes back only while the ticket still has the value the batch set
(`expected_assignee`, `expected_type`), else an agent's later edit was
overwritten (a review's undo of 2,000 rows overwrote 36 assignees and 51 types).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .._core._files import beside
from .._core._ids import UUID_PATTERN
from ..plan import checked_instant, normalise_status

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["UNDO_COLUMNS", "changes_undo_frame", "with_locations"]

UNDO_COLUMNS = (
    "assignee_outcome",
    "previous_assignee",
    "type_outcome",
    "previous_type",
    "comment_outcome",
    "comment_id",
)


def _back(frame: pd.DataFrame, outcome: str, previous: str) -> pd.Series:
    """The previous value where the change was applied and its previous value is known."""
    if outcome not in frame.columns or previous not in frame.columns:
        return frame["row"].map(lambda _: "")
    applied = (frame[outcome] == "updated") & (frame[previous] != "")
    return frame[previous].where(applied, "")


def finished_at(frame: pd.DataFrame) -> pd.Series:
    """When the batch finished each row (its report's `finished_at`), in UTC; "" where the
    report has none or an edited value is not a time with its zone (no time guard then)."""
    if "finished_at" not in frame.columns:
        return frame["ticket_id"].map(lambda _: "")
    return frame["finished_at"].map(lambda v: checked_instant(v) or "" if v else "")


def _set(frame: pd.DataFrame, column: str, back: pd.Series) -> pd.Series:
    """What the batch set in `column`, where that change goes back (it must still hold)."""
    if column not in frame.columns:
        return back.map(lambda _: "")
    return frame[column].where(back != "", "")


def changes_undo_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The reverse batch: per row, the changes that undo what the report says was applied."""
    previous = frame["previous_status"].map(lambda s: normalise_status(s) or "")
    target = frame["target_status"].map(lambda s: normalise_status(s) or "")
    # Status is last in a row: it was applied only if the whole row was.
    status = previous.where((frame["outcome"] == "updated") & (previous != target), "")
    assignee = _back(frame, "assignee_outcome", "previous_assignee")
    kind = _back(frame, "type_outcome", "previous_type")
    comment = _back(frame, "comment_outcome", "comment_id")
    nothing = (status == "") & (assignee == "") & (kind == "") & (comment == "")
    reason = (
        "left alone: nothing applied that can be undone (outcome " + frame["outcome"] + ")"
    ).where(nothing, "")
    # The status the batch left (a row not failed reached its status, last):
    # the undo reads first and reverts the row only while the ticket holds it.
    ended = frame["outcome"].isin(("updated", "unchanged")) & ~nothing
    expected = target.where(ended, "")
    return frame.assign(
        target_status=status,
        assignee=assignee,
        type=kind,
        delete_comment=comment,
        skip_reason=reason,
        expected_status=expected,
        # Only where the batch changed the status: one already at its target kept its
        # older statusUpdateDate, which says nothing of this batch's time.
        expected_since=finished_at(frame).where(ended & (status != ""), ""),
        expected_assignee=_set(frame, "assignee", assignee),
        expected_type=_set(frame, "type", kind),
    )[
        [
            "ticket_id",
            "target_status",
            "assignee",
            "type",
            "delete_comment",
            "row",
            "skip_reason",
            "expected_status",
            "expected_since",
            "expected_assignee",
            "expected_type",
        ]
    ].rename(columns={"row": "source_row"})


def with_locations(frame: pd.DataFrame, report: Path) -> pd.DataFrame:
    """The undo's rows with the location each ticket was read in (the batch's snapshot).

    With a `location_ref` column the undo reads by listing, 100 tickets a
    request, as the batch did, instead of one GET a ticket. The snapshot is
    only a hint: a cell that is not a UUID is dropped (that ticket is read
    alone), and one no longer right just leaves the ticket to a GET.
    """
    import pandas as pd

    snapshot = beside(report, ".snapshot.csv")
    if not snapshot.is_file():
        return frame
    try:
        seen = pd.read_csv(
            snapshot, dtype=str, keep_default_na=False, usecols=["row", "locationRef"]
        )
    except (ValueError, OSError):  # not a snapshot of bulk's: every ticket is read alone
        return frame
    valid = seen["locationRef"].map(lambda v: bool(UUID_PATTERN.fullmatch(v.strip().lower())))
    where = dict(zip(seen["row"][valid], seen["locationRef"][valid].str.strip(), strict=True))
    located = frame["source_row"].astype(str).map(where).fillna("")
    located = located.where(frame["skip_reason"] == "", "")  # a row left alone is not read
    return frame.assign(location_ref=located) if (located != "").any() else frame
