"""Batches made from an earlier report: retry the failures, or undo the changes.

Both produce an ordinary input (a DataFrame with `source_row` pointing back
into the earlier report) that runs through the same plan, journal and
engine, with its own report and audit record.
"""

from __future__ import annotations

import json
import logging
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from .._core._csvsafe import neutralise
from .._core._exceptions import UsageError
from .._core._files import beside, read_file, replacing
from .._core._text import printable
from ..journal import CLOCK_SKEW, changed_rows, held_rows, read_meta
from ..plan import normalise_status
from ..report import AUDIT_SUFFIX, audit_path, batch_of, read_audit
from ._read import EXPECTED_CHANGES, EXPECTED_SINCE
from ._undo_changes import UNDO_COLUMNS, changes_undo_frame, finished_at, with_locations

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "derived_report_path",
    "read_report",
    "refuse_a_second_retry",
    "retry_frame",
    "undo_frame",
]

log = logging.getLogger("bulk")

_NEEDED = ("row", "ticket_id", "target_status", "outcome", "previous_status", "error")
RETRYABLE = frozenset({"drifted", "failed", "skipped"})
_VERIFIED = "verified"  # --verify's column: `yes`, or `drifted: now X`
# A batch of changes: per kind, the value asked for and its outcome column.
_CHANGE_KINDS = (
    ("assignee", "assignee_outcome"),
    ("type", "type_outcome"),
    ("comment", "comment_outcome"),
    ("delete_comment", "delete_comment_outcome"),
)
_RETRY_COLUMNS = (*(c for pair in _CHANGE_KINDS for c in pair), "status_outcome")
# An undo's report (and a retry's of one) says, per row, the status the batch set, which
# the ticket must still have: a retry of it reads and guards like the undo (README).
_EXPECTED = "expected_status"
_SINCE = EXPECTED_SINCE
_AT = "finished_at"  # an undo's rows: when the batch set what must still hold (`_SINCE`)
# And an undo of changes, per change: what its batch set (a retry guards with it too).
_EXPECTED_CHANGES = tuple(column for column, _ in EXPECTED_CHANGES.values())
_UNREAD = "left alone: could not read the ticket"
# The guard's message when it could not put an agent's status back (bulk/send/_guard.py).
_PUT_BACK_FAILED = (
    r"^changed since the batch \(was (\w+) when the undo wrote (\w+)\); putting \w+ back failed"
)
_DONE = frozenset({"updated", "unchanged"})


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
    extra = dict.fromkeys(
        (*UNDO_COLUMNS, *_RETRY_COLUMNS, _EXPECTED, _SINCE, *_EXPECTED_CHANGES, _VERIFIED, _AT)
    )
    kept = list(_NEEDED) + [c for c in extra if c in frame.columns]
    frame = frame[kept].copy()
    for column in kept[1:]:
        frame[column] = frame[column].fillna("").astype(str)
    frame["row"] = frame["row"].astype(int)
    return frame


def derived_report_path(report: Path, kind: str, dry_run: bool = False) -> Path:
    """`x.report.csv` -> `x.undo.csv`; a dry run's `x.undo.dry-run.csv` (as `bulk run`'s
    dry runs have their own name: the real undo's report is what undoing the undo reads)."""
    base = report.name.rsplit(".", 1)[0].removesuffix(".report")
    return report.with_name(f"{base}.{kind}{'.dry-run' if dry_run else ''}{report.suffix}")


# Beside a report: the retries of it that took its comments (`claim_the_retry`).
RETRIES_SUFFIX = ".retries.json"


def refuse_a_second_retry(report: Path, into: Path, retry: pd.DataFrame) -> None:
    """Refuses (exit 2) a retry of a report with comments that an earlier retry took, into
    another report: each retry is a batch of its own, so the second posted every comment
    the first had posted (chaos review). Its status, assignee and type PUTs would only land
    twice; a comment POST lands twice. Looking for the comment first cannot tell this
    client's from an agent's with the same text, so the earlier retry is named instead.
    `retry`: the retry's rows (`retry_frame`), whose columns say whether it has comments.

    The earlier retries are those `claim_the_retry` recorded beside the report (wherever
    their own report went, killed or not), and any whose audit record is beside it (a
    retry by a bulk from before the record).
    """
    if "comment" not in retry.columns:
        return
    batch, mine = batch_of(report), into.resolve()
    if batch is None:
        return
    for claim in _claims(report):
        if claim.get("batch_id") == batch and not _is_claimed_by(report, claim, mine):
            _refuse_a_second(report, str(_claimed(report, claim)))
    for record_path in sorted(report.parent.glob(f"*{AUDIT_SUFFIX}")):
        record = read_audit(record_path) or {}
        derived, written = record.get("derived_from"), record.get("report")
        if (
            isinstance(derived, dict)
            and derived.get("kind") == "retry"
            and derived.get("batch_id") == batch
            and record_path.resolve() != audit_path(mine)
        ):
            _refuse_a_second(report, written if isinstance(written, str) else str(record_path))


def _refuse_a_second(report: Path, earlier: str) -> NoReturn:
    shown = printable(earlier, 200)
    raise UsageError(
        f"{printable(report, 200)} was retried already, into {shown}: a second "
        "retry of it would post its comments again. Retry that report instead "
        f"(bulk retry {shown}), or rerun that retry's command; nothing sent"
    )


def _claimed(report: Path, claim: dict[str, object]) -> Path:
    """A claim's report: kept relative to the report's folder, so moving the folder (reports
    and all) keeps the first retry's own rerun its own (review)."""
    return (report.parent / str(claim.get("report"))).resolve()


def _is_claimed_by(report: Path, claim: dict[str, object], into: Path) -> bool:
    """`into` is the claim's retry: its report where the claim says, relative to the report's
    folder or as it was (a retry into another folder, the report's folder moved since)."""
    mine = into.resolve()
    return mine in (_claimed(report, claim), Path(str(claim.get("absolute", ""))))


def _claims(report: Path) -> list[dict[str, object]]:
    """The retries recorded beside `report`; one that cannot be read refuses (exit 2)."""
    path = beside(report, RETRIES_SUFFIX)
    raw = read_file(path, _CLAIMS_BYTES, own="record of this report's retries")
    if raw is None:
        return []
    try:
        record = json.loads(raw)
        claims = record["retries"]
        if not isinstance(claims, list) or not all(isinstance(c, dict) for c in claims):
            raise TypeError
    except (ValueError, RecursionError, TypeError, KeyError):
        raise UsageError(
            f"{printable(path, 200)}: not a record of this report's retries as bulk writes "
            "it; a retry of the report cannot tell whether an earlier one posted its "
            "comments (remove the file if none did); nothing sent"
        ) from None
    return claims


# A record of ~10,000 retries; one of bulk's holds a few.
_CLAIMS_BYTES = 4 * 1024 * 1024


def claim_the_retry(report: Path, into: Path, retry: pd.DataFrame) -> None:
    """Records beside `report`, just before its first request, that the retry into `into`
    takes its comments, so `refuse_a_second_retry` sees it wherever `into` is, and even when
    it was killed before its audit record. Called by the batch once it is about to send
    (a retry refused before, for a bad --report or a declined prompt, claims nothing), under
    the report's lock (cli/_derived). A folder this user cannot write: a warning, and a
    second retry goes unseen."""
    batch = batch_of(report)
    if "comment" not in retry.columns or batch is None:
        return
    claims = [c for c in _claims(report) if c.get("batch_id") == batch]
    if any(_is_claimed_by(report, c, into) for c in claims):
        return
    mine = os.path.relpath(into.resolve(), report.parent.resolve())
    claims.append(
        {
            "batch_id": batch,
            "report": mine,
            "absolute": str(into.resolve()),
            "at": datetime.now(UTC).isoformat(),
        }
    )
    path = beside(report, RETRIES_SUFFIX)
    try:
        with replacing(path, "w", encoding="utf-8", perms=0o600) as handle:
            json.dump({"retries": claims}, handle, indent=1)
    except OSError as exc:
        log.warning(
            "%s: could not record this retry (%s); a second retry of the report into "
            "another --report would not be refused",
            printable(path, 200),
            printable(exc.strerror or type(exc).__name__, 200),
        )


def retry_frame(report: Path, only: frozenset[str], *, force: bool = False) -> pd.DataFrame:
    """The rows whose outcome is in `only`, to send again with the same target status.

    A retry of an undo's report keeps each row's `expected_status`, so it reads and
    guards as an undo does (unless `force`, as `undo --force`).
    """
    unknown = only - RETRYABLE
    if unknown:
        raise UsageError(
            f"--only {','.join(sorted(unknown))}: retry takes {', '.join(sorted(RETRYABLE))}"
        )
    frame = read_report(report)
    guarded = _EXPECTED in frame.columns
    undone = _undone(report)  # the audit record, read once
    if not guarded and undone is not None:
        if not force:
            _refuse_an_older_undo(report, undone)
        log.warning("%s: --force: these reverts are sent unchecked", printable(report, 200))
    chosen = frame["outcome"].isin(only)
    # Drifted (--verify): the change landed, then the ticket changed again; sent again, its
    # status goes back to the target (its other changes are done).
    drifted = _drifted(report, frame, only)
    chosen |= drifted
    # A skipped duplicate's first row was (or will be) sent; sending it again adds nothing.
    # A ticket an undo could not read is retried: its retry reads it, as the undo meant to.
    left_alone = frame["error"].str.startswith(("duplicate of row", "left alone:"))
    if guarded:
        left_alone &= ~frame["error"].str.startswith(_UNREAD)
    chosen &= ~left_alone
    if "skipped" in only:
        chosen &= ~_left_to_its_batch(report, frame, chosen)
    changes = any(outcome in frame.columns for _, outcome in _CHANGE_KINDS)
    if changes:
        out = _retry_changes(report, frame.loc[chosen], drifted.loc[chosen])
    else:
        out = frame.loc[chosen, ["ticket_id", "target_status", "row"]]
        out = out.rename(columns={"row": "source_row"}).reset_index(drop=True)
    if not guarded:
        return out
    # A status-only undo's rows each had one: an empty cell there is an edit. Any other
    # report's (a library run's DataFrame) may leave a row without a condition.
    strict = not changes and undone is not None
    _keep_expected(out, frame.loc[chosen].reset_index(drop=True), strict=strict)
    # Listing reads 100 tickets a request, but a whole location: only where the undo listed,
    # that is where its batch left a snapshot to list from.
    if undone and beside(Path(undone), ".snapshot.csv").is_file():
        out = with_locations(out, report)
    # The clocks' difference the undo measured over all its tickets, for a retry of too few
    # to measure it (Reads.estimate_clock_skew): a review's two retried rows, the server
    # 120 s ahead, were both left alone as set again since.
    skew = read_meta(beside(report, ".journal")).get(CLOCK_SKEW)
    if isinstance(skew, int | float) and not isinstance(skew, bool) and math.isfinite(skew):
        out.attrs[CLOCK_SKEW] = float(skew)
    return out


def _left_to_its_batch(report: Path, frame: pd.DataFrame, chosen: pd.Series) -> pd.Series:
    """Which rows the report says were skipped but its own unfinished batch answers for.

    Rerunning that batch's command sends those it has not sent; those it sent after the
    report was written (a run killed before writing it) are done. A retry sending them too
    would send each change twice, a comment above all (found by a walkthrough: 75 of 100
    tickets got theirs twice). They are left to the batch.
    """
    journal = beside(report, ".journal")
    try:
        owned = held_rows(journal, batch_of(report))
    except UsageError as exc:
        raise UsageError(
            f"{exc}; so a retry of {printable(report, 200)} cannot tell which of its skipped "
            "rows its batch still sends: nothing sent"
        ) from None
    held = frame["row"].isin(owned) & (frame["outcome"] == "skipped")
    if count := int((held & chosen).sum()):
        log.warning(
            "%s: %d skipped rows are its own batch's to send (it can resume), or were sent "
            "after this report was written: they are left to it (run that batch's command "
            "again; a retry would send them twice)",
            printable(report, 200),
            count,
        )
    return held


def _refuse_a_report_behind_its_journal(report: Path, frame: pd.DataFrame) -> None:
    """Refuses (exit 2) to undo a report that says `skipped` of rows its batch changed after
    it was written (a resumed run killed before its report): the undo would leave them
    changed, and say nothing (a review's undo left 504 of 600 tickets closed, exit 0)."""
    try:
        sent = changed_rows(beside(report, ".journal"), batch_of(report))
    except UsageError as exc:
        raise UsageError(
            f"{exc}; so an undo of {printable(report, 200)} cannot tell whether the report "
            "lists every change its batch made: nothing sent"
        ) from None
    behind = int((frame["row"].isin(sent) & (frame["outcome"] == "skipped")).sum())
    if behind:
        raise UsageError(
            f"{printable(report, 200)}: {behind} rows its batch changed after this report was "
            "written (a run killed before its report) are not in it, so an undo of it would "
            "leave them changed. Rerun the batch's command with --limit 0 (it sends nothing "
            "and writes the report again; a job's batch takes no --limit: rerun the job, "
            "which finishes it), then undo; nothing sent"
        )


def _undone(report: Path) -> str | None:
    """When `report`'s audit record says it is an undo's: the batch report it undid ("" when
    the record does not name it); None otherwise."""
    derived = (read_audit(audit_path(report)) or {}).get("derived_from")
    if not isinstance(derived, dict) or derived.get("kind") != "undo":
        return None
    batch = derived.get("report")
    return batch if isinstance(batch, str) else ""


def _refuse_an_older_undo(report: Path, batch: str) -> NoReturn:
    """An undo's report without `expected_status` (an older bulk's): a retry would send blind."""
    shown = printable(batch, 200) if batch else "the batch's report"
    raise UsageError(
        f"{printable(report, 200)}: an undo's report without the expected_status column "
        "(an older bulk wrote it), so a retry cannot check that each ticket is still as "
        f"the batch left it; undo the batch afresh instead, into a new report (`bulk undo "
        f"{shown} --report NEW.csv`: it reads every ticket first, and those already "
        "reverted end unchanged), or pass --force to send these reverts unchecked; nothing "
        "was sent"
    )


def _keep_expected(out: pd.DataFrame, rows: pd.DataFrame, *, strict: bool) -> None:
    """Carry an undo's `expected_status` into its retry, which then reads and guards as it did.

    Without it a retry would send the undo's statuses blind: a failed revert retried
    hours later would overwrite whatever an agent has set since. A revert whose
    put-back failed is retried as that put-back: the agent's status, while the
    ticket still has the undo's. The report is a file anyone may have edited: a
    value that is not a status, or a status-only undo's row without one, leaves its
    row alone.
    """
    expected = rows[_EXPECTED].map(lambda s: normalise_status(s) or "")
    owed = rows["error"].str.extract(_PUT_BACK_FAILED)
    put_back = owed[0].map(lambda s: normalise_status(s) if isinstance(s, str) else None)
    undid = owed[1].map(lambda s: normalise_status(s) if isinstance(s, str) else None)
    again = put_back.notna() & undid.notna() & (out["target_status"] != "")
    out["target_status"] = out["target_status"].mask(again, put_back)
    expected = expected.mask(again, undid)
    unusable = (rows[_EXPECTED] != "") & (expected == "")
    if strict:
        unusable |= expected == ""
    reason = expected.map(lambda _: "").mask(
        unusable, "left alone: the report's expected_status is not a status"
    )
    if "skip_reason" in out.columns:
        reason = out["skip_reason"].where(out["skip_reason"] != "", reason)
    out["skip_reason"] = reason
    out[_EXPECTED] = expected
    # An undo of changes' assignee and type guards: carried as they are (prepare refuses a
    # value that is not a user id or a type, naming the row, before anything is sent).
    for column in (_SINCE, *_EXPECTED_CHANGES):
        if column in rows.columns:
            out[column] = rows[column].to_numpy()


def _drifted(report: Path, frame: pd.DataFrame, only: frozenset[str]) -> pd.Series:
    """The rows --verify found drifted, when `only` asks for them."""
    if "drifted" not in only:
        return frame["row"] != frame["row"]
    if _VERIFIED not in frame.columns:
        raise UsageError(
            f"{printable(report, 200)}: --only drifted, but the report has no `verified` "
            "column (its run did not --verify); nothing was sent"
        )
    drifted = frame[_VERIFIED].str.startswith("drifted") & frame["outcome"].isin(_DONE)
    return drifted & (frame["target_status"] != "")  # (older reports verified type-only rows)


def _retry_changes(report: Path, frame: pd.DataFrame, drifted: pd.Series) -> pd.DataFrame:
    """Per row, only the changes that did not finish, with the values the batch asked for;
    a drifted row's status, which did.

    A change that is done (a posted comment above all) is never sent again.
    """
    missing = [
        value
        for value, outcome in (*_CHANGE_KINDS, ("target_status", "status_outcome"))
        if outcome in frame.columns and value not in frame.columns
    ]
    if "status_outcome" not in frame.columns and (frame["target_status"] != "").any():
        missing.append("status_outcome")
    if missing:
        raise UsageError(
            f"{report}: a batch of several changes, but the report has no column "
            f"{', '.join(missing)} (an older bulk wrote it), so retry cannot tell what is left "
            "to send; run the batch's own `bulk run` command again instead: it resumes "
            "from its journal and sends only what did not finish; nothing was sent"
        )
    out = frame[["ticket_id", "row"]].copy()
    out["target_status"] = frame["target_status"]
    if "status_outcome" in frame.columns:
        done = frame["status_outcome"].isin(_DONE) & ~drifted
        out["target_status"] = out["target_status"].where(~done, "")
    reason = frame["row"].map(lambda _: "")
    for value, outcome in _CHANGE_KINDS:
        if outcome not in frame.columns:
            continue
        out[value] = frame[value].where(~frame[outcome].isin(_DONE), "")
        # A comment whose POST may have landed (a crash left it unknown, or the
        # last check read failed): re-sending it could post it twice.
        unknown = frame[outcome].str.startswith("unknown") | (
            (frame[outcome] == "failed") & frame["error"].str.contains("may have been posted")
        )
        unknown &= out[value] != ""
        reason = reason.mask(
            unknown,
            f"left alone: its {value} may have been applied (outcome unknown); "
            "resume an interrupted batch with its own `bulk run` command, else read "
            "the ticket and send what is missing on its own",
        )
    # A row whose every change finished (an undo's, each left alone as changed since the
    # batch): nothing to send; it had become an `invalid` row, "no change asked for".
    values = ["target_status", *(v for v, o in _CHANGE_KINDS if o in frame.columns)]
    finished = (out[values] == "").all(axis=1) & (reason == "")
    reason = reason.mask(finished, "left alone: each of its changes finished; nothing to send")
    if "comment" in out.columns and report.suffix.lower() == ".csv":
        out["comment"] = out["comment"].map(_csv_text)
    out["skip_reason"] = reason
    return out.rename(columns={"row": "source_row"}).reset_index(drop=True)


def _csv_text(cell: str) -> str:
    """The text before the CSV report's formula guard (`'` before `=`, `+`, ...)."""
    if cell.startswith("'") and neutralise(cell[1:]) == cell:
        return cell[1:]
    return cell


def undo_frame(report: Path) -> pd.DataFrame:
    """Every row of the report: changed tickets go back, the rest are listed as left alone."""
    return with_locations(_undo_frame(report), report)


def _undo_frame(report: Path) -> pd.DataFrame:
    frame = read_report(report)
    _refuse_a_report_behind_its_journal(report, frame)
    if any(c in frame.columns for c in UNDO_COLUMNS):
        return changes_undo_frame(frame)
    previous = frame["previous_status"].map(lambda s: normalise_status(s) or "")
    changed = (frame["outcome"] == "updated") & (previous != "")
    reason = ("left alone: outcome was " + frame["outcome"]).where(~changed, "")
    no_previous = (frame["outcome"] == "updated") & (previous == "")
    reason = reason.mask(no_previous, "left alone: the report has no previous status")
    # The status the batch set: the undo reverts a ticket only while it still holds it,
    # set no later than the batch's row finished.
    expected = frame["target_status"].where(changed, "")
    return frame.assign(
        target_status=previous.where(changed, ""),
        skip_reason=reason,
        expected_status=expected,
        expected_since=finished_at(frame).where(changed, ""),
    )[["ticket_id", "target_status", "row", "skip_reason", "expected_status", _SINCE]].rename(
        columns={"row": "source_row"}
    )
