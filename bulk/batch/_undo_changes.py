"""Undo of a batch of changes: every change that was applied goes back, each on its own.

A row's `outcome` sums its changes up, so it cannot say what to undo: a row
that failed at its comment may still have had its assignee changed. Each
change column is judged alone: an `updated` assignee or type goes back to
the value recorded before it (`none`: unassigned again), an added comment is
deleted by its id, and the status goes back as a status-only undo does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..plan import normalise_status

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["UNDO_COLUMNS", "changes_undo_frame"]

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
    return frame.assign(
        target_status=status,
        assignee=assignee,
        type=kind,
        delete_comment=comment,
        skip_reason=reason,
    )[
        ["ticket_id", "target_status", "assignee", "type", "delete_comment", "row", "skip_reason"]
    ].rename(columns={"row": "source_row"})
