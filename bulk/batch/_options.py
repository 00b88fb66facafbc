"""What a batch is asked to do: `RunOptions`, checked before anything is read or sent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .._core._exceptions import UsageError
from .._core._ids import UUID_PATTERN
from .._core._rates import parse_rate
from .._core._text import printable
from ..input import Source
from ..plan import Template, checked_changes, checked_map, checked_status
from ..report import check_report_path

__all__ = ["RunOptions", "checked_location", "default_report"]


def checked_location(value: object, where: str) -> str:
    """A location id (a UUID, any case) in canonical form, or a usage error naming `where`."""
    text = str(value).strip().lower()
    if not UUID_PATTERN.fullmatch(text):
        raise UsageError(f"{where}: {printable(value, 60)!r} is not a location id (a UUID)")
    return text


# One request's longest time limit, seconds; a rerun after a crash waits two of them.
MAX_TIMEOUT = 600.0


@dataclass
class RunOptions:
    status: str | None = None
    id_column: str | None = None
    status_column: str | None = None
    report: Path | None = None
    base_url: str | None = None
    rate: float | str | None = 10.0  # None: no pacing; "auto": start at 10/s, find the limit
    concurrency: int | None = None  # None: 8 at first, then from latency (Little's law), <= 64
    max_attempts: int = 6
    timeout: float = 30.0
    dry_run: bool = False
    fresh: bool = False
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_failure_rate: float = 0.2
    limit: int | None = None
    deadline: float | None = None  # seconds from the start of sending
    # Migration: target status by legacy value of the status column (never guessed).
    status_map: dict[str, str] | None = None
    # Changes besides status, for every row (input columns may carry them per row).
    assignee: str | None = None  # a user UUID, or "none" to unassign
    type: str | None = None  # a ticket type of the spec
    comment: str | None = None  # text, or a template: "Closed: {legacy_id}"

    @property
    def comment_template(self) -> Template | None:
        return None if self.comment is None else Template.parse(self.comment)

    # Reading before writing (README "Seeing before changing").
    preview: bool = False  # a dry run that reads: what would change, nothing written
    read: bool | None = None  # None: read first when the locations are known (or an undo)
    verify: bool = False  # re-read what the run changed or skipped
    locations: tuple[str, ...] = ()  # list these locations to read (100 tickets a request)
    force: bool = False  # undo: revert tickets even if changed since the batch
    # How messages name an option: "--{}" on the command line, "[action] {}" in a job.
    named: str = "--{}"

    def check(self) -> None:
        """Raise `UsageError` (exit 2) for an option no run could use; normalise the rest."""
        try:
            self.rate = parse_rate(self.rate)
        except ValueError as exc:
            raise UsageError(f"--rate {exc}") from None
        self._check_numbers()
        if self.status is not None:
            self.status = checked_status(self.status)
        if self.status_map is not None:
            if self.status is not None:
                raise UsageError("give either a status or a status map, not both")
            self.status_map = checked_map(self.status_map)
        self.assignee, self.type = checked_changes(self.assignee, self.type, self.comment)
        if self.report is not None:
            self.report = Path(self.report)
            check_report_path(self.report)
        self._check_reading()

    def _check_reading(self) -> None:
        self.locations = tuple(checked_location(v, "--location") for v in self.locations)
        if self.preview:
            if self.read is False:
                raise UsageError("--preview reads the tickets; it cannot go with --no-read")
            self.dry_run = True
        if self.verify and self.dry_run:
            raise UsageError("--verify re-reads what a run changed; a dry run changes nothing")

    def _check_numbers(self) -> None:
        if self.concurrency is not None and self.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        if not 0 <= self.max_failure_rate <= 1:
            raise UsageError("--max-failure-rate must be between 0 and 1")
        if self.limit is not None and self.limit < 0:
            raise UsageError("--limit must not be negative")
        if self.deadline is not None and self.deadline <= 0:
            raise UsageError("--deadline must be positive")
        if self.max_attempts < 1:
            raise UsageError("--max-attempts must be at least 1")
        if not 0 < self.timeout <= MAX_TIMEOUT:  # also refuses nan and inf
            raise UsageError(
                f"--timeout must be a positive number of seconds, at most {MAX_TIMEOUT:g} "
                "(a rerun waits two of them for a comment a killed run may still land)"
            )


def default_report(source: Source, fingerprint: str, dry_run: bool) -> Path:
    stem = source.path.stem if source.path is not None else f"dataframe-{fingerprint[:12]}"
    return Path("reports") / f"{stem}.{'dry-run' if dry_run else 'report'}.csv"
