"""What a batch did: `RunSummary` (the lines the command line prints) and its exit code."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._core._exit import ExitCode

__all__ = ["INTERRUPTED", "RunSummary", "exit_code"]

INTERRUPTED = "interrupted"


@dataclass
class RunSummary:
    report: Path
    audit: Path
    rows: int
    outcomes: dict[str, int]
    pending: int
    http_status: dict[str, int]
    requests: int
    retries: int
    elapsed: float
    exit_code: int
    dry_run: bool = False
    stop_reason: str | None = None
    already_final: int = 0
    resent: int = 0
    sent_this_run: int = 0
    throttled: int = 0
    concurrency: int | None = None
    final_rate: float | None = None
    frame: Any = field(default=None, repr=False)
    page: Path | None = None  # `<report>.html`, unless it could not be written
    reads_this_run: int = 0  # GETs and listing pages (reading before and after writing)
    read_counts: dict[str, int] = field(default_factory=dict)  # read, verified, drifted, ...
    preview: list[str] = field(default_factory=list)  # --preview: the real change set
    would_change: int | None = None  # --preview: rows the real run may change

    @property
    def effective_rate(self) -> float:
        return self.sent_this_run / self.elapsed if self.elapsed > 0 else 0.0

    def lines(self) -> list[str]:
        order = ("updated", "unchanged", "failed", "invalid", "skipped")
        counts = {k: self.outcomes.get(k, 0) for k in order}
        if self.pending:
            counts["skipped"] += self.pending
        out = [
            f"rows: {self.rows}  " + "  ".join(f"{k}: {v}" for k, v in counts.items()),
        ]
        if self.http_status:
            out.append(
                "last http status (rows): "
                + "  ".join(f"{k}: {v}" for k, v in self.http_status.items())
            )
        out.append(
            f"requests: {self.requests}  retries: {self.retries}  "
            f"elapsed: {self.elapsed:.1f}s  effective rate: {self.effective_rate:.1f}/s"
        )
        if self.throttled:
            rate = f"{self.final_rate:.1f}/s" if self.final_rate else "unpaced"
            out.append(f"throttled (429): {self.throttled}  pace at the end: {rate}")
        out += self._reading_lines()
        if self.already_final:
            out.append(f"resumed: {self.already_final} rows were already final")
        if self.stop_reason:
            out.append(f"stopped early: {self.stop_reason.removeprefix('stopped: ')}")
        out.append(f"report: {self.report.resolve()}")
        if self.page is not None:
            out.append(f"page: {self.page.resolve()}")
        return self.preview + out

    def _reading_lines(self) -> list[str]:
        counts, out = self.read_counts, []
        if counts.get("read") and (not self.dry_run or self.would_change is not None):
            out.append(f"read first: {counts['read']} tickets ({self.reads_this_run} reads)")
        if left := counts.get("left_alone"):
            unreadable = counts.get("unreadable", 0)
            why = [
                f"{n} {what}"
                for n, what in (
                    (left - unreadable, "changed since the batch"),
                    (unreadable, "could not be read to check"),
                )
                if n
            ]
            out.append(f"left alone: {', '.join(why)} (see the report)")
            if unreadable:  # skipped, so a plain `bulk retry` (failed rows) would leave them
                out.append(
                    f"to read them again: bulk retry {shlex.quote(str(self.report))} "
                    "--only failed,skipped"
                )
        if counts.get("verified"):
            out.append(f"verified: {counts['verified']}  drifted: {counts.get('drifted', 0)}")
        return out


def exit_code(counts: Mapping[str, Any], stop_reason: str | None, held_back: bool) -> ExitCode:
    """`held_back`: rows left unsent on purpose (dry run, --limit) do not count as unsent."""
    if not counts["pending"]:
        stop_reason = None  # stopped as the last rows finished: nothing was left undone
    if stop_reason == INTERRUPTED:
        return ExitCode.INTERRUPTED
    if stop_reason:
        return ExitCode.STOPPED
    bad = counts["outcomes"].get("failed", 0) + counts["outcomes"].get("invalid", 0)
    bad += counts.get("drifted", 0)  # --verify: a ticket no longer holds what the run set
    # An undo's tickets it could not read to check, so left as they are: not done, though
    # `skipped` (exit 0 had said an undo against a server that was down had undone all).
    bad += counts.get("unreadable", 0)
    if bad or (counts["pending"] and not held_back):
        return ExitCode.ROWS
    return ExitCode.OK
