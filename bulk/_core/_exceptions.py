"""Every error bulk raises on purpose, under one base class, `BulkError`.

Each class says who raises it and what the command line does with it; its
`exit_code` is the process's exit status when the error ends a command. The
classes are public (exported from `bulk`); which answer becomes which class
is decided in one place, `bulk.send._classify`.

    BulkError
    ├── UsageError            bad input, options or configuration: exit 2, nothing sent
    │   └── ListingUnreadable a job's API listing cannot be read to its end: exit 2
    ├── JobLocked             another process runs this job or report: exit 75
    └── RequestError          one request failed (a row's outcome, not a crash)
        ├── RetriableError    worth another attempt
        └── FatalRequestError retrying cannot fix it
            ├── CredentialsRejected   401/403: the run stops (exit 3)
            └── UnexpectedAnswer      an answer that does not prove success
"""

from __future__ import annotations

from ._exit import ExitCode

__all__ = [
    "BulkError",
    "ChangedSince",
    "CredentialsRejected",
    "FatalRequestError",
    "JobLocked",
    "ListingUnreadable",
    "LockUnwritable",
    "NotFound",
    "RequestError",
    "RetriableError",
    "UnexpectedAnswer",
    "UsageError",
]


class BulkError(Exception):
    """Base class of every error bulk raises on purpose; catch it to catch them all."""

    exit_code: ExitCode = ExitCode.USAGE


class UsageError(BulkError):
    """Bad input or options (exit 2), or a run that cannot start now; nothing sent.

    Raised before anything is sent: by configuration (credentials, base URL),
    input reading, planning, the journal and report path checks, job files.
    `exit_code` may say otherwise for a run that could not start: 75 when its
    lock is held, 130 when interrupted while the input was checked.
    """

    def __init__(self, message: str, exit_code: int = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.exit_code = ExitCode(exit_code)


class ListingUnreadable(UsageError):
    """The listing cannot be read to its end: the job's input is unreadable (exit 2), nothing sent.

    Raised by the job listing (`bulk.jobs`): a page of the wrong shape, a
    cursor that does not advance, pages that bring nothing new, more pages
    than any real listing, a listed time without a time zone.
    """


class LockUnwritable(UsageError):
    """Raised by `JobLock.acquire`: the lock file cannot be opened to write (a read-only
    folder, another user's file). A run refuses (exit 2); `bulk retry` and `bulk undo` of a
    report there go on without the batch's lock, and say so."""


class JobLocked(BulkError):
    """Raised by `JobLock.acquire`: another process holds the job's or report's lock."""

    exit_code = ExitCode.LOCKED


class RequestError(BulkError):
    """One request did not succeed. Raised by the client, classified by `send._classify`.

    The engine turns it into the row's outcome; only a listing (a job's API
    source) lets it end the command, with exit 1.
    """

    retriable = False
    exit_code = ExitCode.ROWS
    put_backs = 0  # requests an undo's guard sent to put a change back (bulk.send._guard)

    def __init__(self, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status


class RetriableError(RequestError):
    """Worth another attempt: 429, 5xx, 408, timeouts, dropped connections."""

    retriable = True

    def __init__(
        self, message: str, http_status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, http_status)
        self.retry_after = retry_after


class FatalRequestError(RequestError):
    """Retrying cannot fix it (400, 404, 409, 422, ...): the row fails."""


class NotFound(FatalRequestError):
    """The ticket is unknown to the API (a 404, or a 400 saying so): the row fails, "not found"."""


class ChangedSince(FatalRequestError):
    """An undo's PUT found the ticket changed since the batch, and put the change back.

    Raised by the guard of an undo (`bulk.send._guard`): the PUT's answer names the
    status it replaced; not the one the batch set, so someone changed the ticket
    after the undo read it. The row ends `skipped`, the ticket as they left it.
    """


class CredentialsRejected(FatalRequestError):
    """401/403: every further request would fail the same way, so the run stops (exit 3)."""

    exit_code = ExitCode.STOPPED


class UnexpectedAnswer(FatalRequestError):
    """An answer that does not prove success: not the JSON the spec describes, or a redirect.

    Raised by the client. Not retried. What sends one (a captive portal's HTML
    page, a proxy that redirects, a base URL pointing at the wrong service)
    answers the same way every time, so retrying would only multiply the
    requests a stranger sees; a passing proxy hiccup shows as a 5xx or a
    dropped connection, which are retried. When it is systematic, the
    failure-rate stop ends the run after a handful of rows.
    """

    def __init__(self, what: str, http_status: int | None = None) -> None:
        super().__init__(f"unexpected answer: {what}", http_status)
