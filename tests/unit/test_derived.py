"""Batches made from a report: what a retry of an undo's report carries over."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bulk._core._exceptions import UsageError
from bulk.batch import claim_the_retry, refuse_a_second_retry, retry_frame

from ..support import write_csv

_HEAD = ("row", "ticket_id", "target_status", "outcome", "previous_status", "error")
_IDS = [f"{n:08x}-0000-4000-8000-000000000000" for n in range(4)]


def _report(tmp_path: Path, rows: list[tuple[str, ...]], extra: tuple[str, ...] = ()) -> Path:
    return write_csv(tmp_path / "x.undo.csv", rows, (*_HEAD, *extra))


def test_a_retry_of_an_undo_keeps_the_status_each_ticket_must_still_have(tmp_path: Path) -> None:
    report = _report(
        tmp_path,
        [
            ("1", _IDS[0], "new", "failed", "", "HTTP 503", "closed"),
            ("2", _IDS[1], "solved", "updated", "closed", "", "closed"),
            ("3", _IDS[2], "inProgress", "failed", "", "HTTP 503", "In Progress"),
            ("4", _IDS[3], "new", "failed", "", "HTTP 503", "=1+1"),
        ],
        ("expected_status",),
    )
    frame = retry_frame(report, frozenset({"failed"}))
    assert list(frame["ticket_id"]) == [_IDS[0], _IDS[2], _IDS[3]]
    assert list(frame["source_row"]) == [1, 3, 4]
    assert list(frame["expected_status"]) == ["closed", "inProgress", ""]
    # An edited report's value that is no status: the row is left alone, not sent blind.
    assert list(frame["skip_reason"]) == [
        "",
        "",
        "left alone: the report's expected_status is not a status",
    ]


def test_a_retry_of_any_other_report_sends_without_expectations(tmp_path: Path) -> None:
    report = _report(tmp_path, [("1", _IDS[0], "closed", "failed", "", "HTTP 503")])
    frame = retry_frame(report, frozenset({"failed"}))
    assert list(frame.columns) == ["ticket_id", "target_status", "source_row"]


def test_a_retry_of_an_undo_of_changes_keeps_them_too(tmp_path: Path) -> None:
    report = _report(
        tmp_path,
        [
            ("1", _IDS[0], "new", "failed", "", "HTTP 503", "", "", "failed", "closed"),
            ("2", _IDS[1], "", "failed", "", "HTTP 503", "u", "failed", "", ""),
        ],
        ("assignee", "assignee_outcome", "status_outcome", "expected_status"),
    )
    frame = retry_frame(report, frozenset({"failed"}))
    assert list(frame["expected_status"]) == ["closed", ""]
    assert list(frame["assignee"]) == ["", "u"]
    assert list(frame["skip_reason"]) == ["", ""]


def test_a_row_whose_every_change_finished_is_left_alone_not_made_invalid(
    tmp_path: Path,
) -> None:
    # An undo's row of which nothing went back (its assignee changed since the batch): it
    # was sent as a row with no change asked for, and ended `invalid` (review).
    left = "assignee: changed since the batch (now x); left as it is"
    report = _report(
        tmp_path,
        [
            ("1", _IDS[0], "", "skipped", "", left, "u", "unchanged", "", ""),
            ("2", _IDS[1], "", "failed", "", "HTTP 503", "u", "failed", "", ""),
        ],
        ("assignee", "assignee_outcome", "status_outcome", "expected_status"),
    )
    frame = retry_frame(report, frozenset({"failed", "skipped"}))
    assert list(frame["skip_reason"]) == [
        "left alone: each of its changes finished; nothing to send",
        "",
    ]


def test_a_failed_put_back_is_retried_as_that_put_back(tmp_path: Path) -> None:
    error = (
        "changed since the batch (was solved when the undo wrote new); "
        "putting solved back failed: HTTP 503"
    )
    report = _report(
        tmp_path,
        [
            ("1", _IDS[0], "new", "failed", "", error, "closed"),
            ("2", _IDS[1], "new", "failed", "", "HTTP 503", ""),
        ],
        ("expected_status",),
    )
    frame = retry_frame(report, frozenset({"failed"}))
    # The agent's status goes back only while the ticket still has the undo's.
    assert list(frame["target_status"]) == ["solved", "new"]
    assert list(frame["expected_status"]) == ["new", ""]
    # Not an undo's report (a library run's DataFrame): a row may have no condition.
    assert frame["skip_reason"][1] == ""
    audit = {"derived_from": {"kind": "undo", "report": str(tmp_path / "x.csv")}}
    (tmp_path / "x.undo.run.json").write_text(json.dumps(audit))
    frame = retry_frame(report, frozenset({"failed"}))
    # A status-only undo's row always had one: an empty cell is an edit.
    assert frame["skip_reason"][1] == "left alone: the report's expected_status is not a status"


def test_an_older_undos_report_is_not_retried_blind(tmp_path: Path) -> None:
    report = _report(tmp_path, [("1", _IDS[0], "new", "failed", "", "HTTP 503")])
    audit = {"derived_from": {"kind": "undo", "report": "x.csv"}}
    (tmp_path / "x.undo.run.json").write_text(json.dumps(audit))
    with pytest.raises(UsageError, match="without the expected_status column"):
        retry_frame(report, frozenset({"failed"}))
    frame = retry_frame(report, frozenset({"failed"}), force=True)
    assert list(frame["target_status"]) == ["new"]


def test_the_record_of_retries_names_the_first_and_lets_it_resume(tmp_path: Path) -> None:
    """`claim_the_retry` writes beside the report; `refuse_a_second_retry` reads it."""
    report = _report(tmp_path, [("1", _IDS[0], "closed", "failed", "", "HTTP 503")])
    (tmp_path / "x.undo.run.json").write_text(json.dumps({"batch_id": "a" * 32}))
    comments = pd.DataFrame({"ticket_id": [_IDS[0]], "comment": ["Moved"]})
    first, second = tmp_path / "elsewhere" / "first.csv", tmp_path / "second.csv"
    claim_the_retry(report, first, comments)
    claim_the_retry(report, first, comments)  # its own resume: recorded once
    record = json.loads((tmp_path / "x.undo.retries.json").read_text())
    # Kept relative to the report's folder: moving the folder keeps the first's rerun its own.
    assert [c["report"] for c in record["retries"]] == ["elsewhere/first.csv"]
    refuse_a_second_retry(report, first, comments)  # the first's own rerun goes on
    with pytest.raises(UsageError, match=r"was retried already, into .*first\.csv"):
        refuse_a_second_retry(report, second, comments)
    refuse_a_second_retry(report, second, comments.drop(columns="comment"))  # no comments
    # A new batch wrote the report since: the older batch's retries do not count.
    (tmp_path / "x.undo.run.json").write_text(json.dumps({"batch_id": "b" * 32}))
    refuse_a_second_retry(report, second, comments)


@pytest.mark.parametrize("text", ["{", "[]", '{"retries": 1}', '{"retries": [1]}'])
def test_a_record_of_retries_bulk_did_not_write_refuses(tmp_path: Path, text: str) -> None:
    report = _report(tmp_path, [("1", _IDS[0], "closed", "failed", "", "HTTP 503")])
    (tmp_path / "x.undo.run.json").write_text(json.dumps({"batch_id": "a" * 32}))
    (tmp_path / "x.undo.retries.json").write_text(text)
    comments = pd.DataFrame({"ticket_id": [_IDS[0]], "comment": ["Moved"]})
    with pytest.raises(UsageError, match="not a record of this report's retries"):
        refuse_a_second_retry(report, tmp_path / "r.csv", comments)


def test_a_retry_moved_with_its_reports_folder_is_still_its_own(tmp_path: Path) -> None:
    folder = tmp_path / "a"
    folder.mkdir()
    report = _report(folder, [("1", _IDS[0], "closed", "failed", "", "HTTP 503")])
    (folder / "x.undo.run.json").write_text(json.dumps({"batch_id": "a" * 32}))
    comments = pd.DataFrame({"ticket_id": [_IDS[0]], "comment": ["Moved"]})
    claim_the_retry(report, folder / "x.retry.csv", comments)
    moved = folder.rename(tmp_path / "b")
    refuse_a_second_retry(moved / "x.undo.csv", moved / "x.retry.csv", comments)
    with pytest.raises(UsageError, match=r"into .*b/x\.retry\.csv"):
        refuse_a_second_retry(moved / "x.undo.csv", moved / "other.csv", comments)


def test_a_retry_into_another_folder_is_its_own_after_the_reports_folder_moved(
    tmp_path: Path,
) -> None:
    folder, other = tmp_path / "a", tmp_path / "b"
    folder.mkdir()
    report = _report(folder, [("1", _IDS[0], "closed", "failed", "", "HTTP 503")])
    (folder / "x.undo.run.json").write_text(json.dumps({"batch_id": "a" * 32}))
    comments = pd.DataFrame({"ticket_id": [_IDS[0]], "comment": ["Moved"]})
    claim_the_retry(report, other / "r.csv", comments)
    (tmp_path / "moved").mkdir()
    moved = folder.rename(tmp_path / "moved" / "a")
    refuse_a_second_retry(moved / "x.undo.csv", other / "r.csv", comments)  # its own rerun
    with pytest.raises(UsageError, match="was retried already"):
        refuse_a_second_retry(moved / "x.undo.csv", other / "r2.csv", comments)
