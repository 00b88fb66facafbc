"""A run's verdict in words: done, done with failures, stopped (and why), interrupted.

The one place that turns an exit code (and the stop reason beside it) into
what a person reads, for the page's banner and for `bulk runs`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["EXIT_MEANINGS", "Verdict", "recorded_count", "verdict"]

# The contract's exit codes (CONTRACT.md, "Exit status").
EXIT_MEANINGS = {
    0: "no row failed or is invalid, and none was left unsent",
    1: "the run finished; some rows failed, are invalid, drifted after it (--verify), or "
    "could not be read to check (an undo)",
    2: "bad usage or unreadable input; nothing was sent",
    3: "stopped early on purpose; the report is written and the run resumes when rerun",
    75: "another process was running the same report or job; nothing was done",
    130: "interrupted; the report and journal are flushed and the run resumes when rerun",
}


class Verdict(NamedTuple):
    kind: str  # done, failures, stopped, interrupted, dry-run, unknown: the banner's colour
    title: str
    detail: str
    exit_code: int | None

    @property
    def meaning(self) -> str:
        if self.exit_code is None:
            return "no audit record: the run did not finish (or it was a dry run of an old bulk)"
        return EXIT_MEANINGS.get(self.exit_code, "not an exit code bulk uses")


def verdict(record: Mapping[str, Any] | None, outcomes: Mapping[str, int], pending: int) -> Verdict:
    """The verdict of a run from its audit record (None: unknown) and its final counts."""
    code = record.get("exit_code") if record else None
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    reason = record.get("stop_reason") if record else None
    reason = reason if isinstance(reason, str) else None
    options = record.get("options") if record else None
    dry = isinstance(options, dict) and options.get("dry_run") is True
    bad = outcomes.get("failed", 0) + outcomes.get("invalid", 0)
    if dry:
        invalid = outcomes.get("invalid", 0)
        detail = f"{invalid} rows invalid" if invalid else "every row valid"
        return Verdict("dry-run", "dry run: nothing sent", detail, code)
    if code == 0:
        return Verdict("done", "done", "every row updated or already as asked", code)
    if code == 1:
        detail = f"{outcomes.get('failed', 0)} failed, {outcomes.get('invalid', 0)} invalid"
        if pending and not bad:
            detail = f"{pending} rows not sent"
        drifted = recorded_count(record, "drifted")
        if drifted and not bad and not pending:
            # --verify: every row succeeded, but some tickets changed again since.
            return Verdict(
                "failures", "done; tickets drifted", f"{drifted} drifted after the run", code
            )
        if drifted:
            detail += f", {drifted} drifted"
        if unreadable := recorded_count(record, "unreadable"):
            detail += f", {unreadable} could not be read to check"
        return Verdict("failures", "done with failures", detail, code)
    if code == 3:
        return Verdict("stopped", "stopped", _reason(reason, "stopped on purpose"), code)
    if code == 130:
        detail = f"{pending} rows not sent yet; rerun the same command to resume"
        return Verdict("interrupted", "interrupted", detail, code)
    if code is None:
        return Verdict("unknown", "no verdict recorded", f"{pending} rows not final", None)
    return Verdict("unknown", f"exit {code}", _reason(reason, ""), code)


def recorded_count(record: Mapping[str, Any] | None, name: str) -> int:
    """A count from the audit record's `counts` (an untrusted file: anything else is 0)."""
    counts = record.get("counts") if record else None
    value = counts.get(name) if isinstance(counts, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _reason(reason: str | None, default: str) -> str:
    if not reason:
        return default
    return reason.removeprefix("stopped: ")
