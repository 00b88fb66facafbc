"""Reading before writing, and verifying after: the steps around sending.

Which tickets to read and how: by listing when the locations are known
(`--location`, a location column, a job's API source), 100 tickets a
request; by one GET a ticket for the rest. Every read takes its slot from the
run's one `RateController`, so reads and writes together keep the pace.
What was read is kept in the journal (a rerun reads only what it has not),
settled there into outcomes that need no write (already at target, not
found, no longer ours for an undo), and written beside the report as
`<report>.snapshot.csv`.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio

from .._core._csvsafe import csv_cell
from .._core._exceptions import (
    CredentialsRejected,
    ListingUnreadable,
    RequestError,
    UnexpectedAnswer,
    UsageError,
)
from .._core._exit import ExitCode
from .._core._files import beside, replacing
from .._core._text import printable
from ..journal import CLOCK_SKEW, GUARD_OFF, SNAPSHOT_COLUMNS, Journal, ReadRecord
from ..plan import checked_assignee, checked_instant, checked_type, normalise_status
from ..send import ChangeClient, RateController, Read, Reader, TicketClient, TicketState
from ._options import checked_location
from ._prepare import Batch

__all__ = [
    "Reading",
    "expected_statuses",
    "locations_of",
    "read_before",
    "reverts",
    "session",
    "verify_after",
]

log = logging.getLogger("bulk")

_LOCATION_COLUMNS = ("locationref", "location", "location_ref", "location_id")
_MOST_LOCATIONS = 1000  # distinct values of a location column listed; past it, one GET each
_BATCH = 1000  # rows read per round of GETs (and journal write)


@dataclass
class Reading:
    """What the reads of one step did."""

    requests: int = 0
    pages: int = 0
    settled: dict[str, int] = field(default_factory=dict)
    stopped: str | None = None  # the listing could not be read: nothing is sent (exit 3)


def session(
    batch: Batch, workers: int, controller: RateController
) -> contextlib.AbstractAsyncContextManager[Any]:
    """The run's one HTTP session, for its reads and writes alike (None: a dry run's).

    One session, not one per step: a new one opens its connections afresh, and
    requests delayed by that arrive bunched, which a strict window refuses.
    """
    options = batch.options
    if batch.credentials is None or (options.dry_run and not options.preview):
        return contextlib.nullcontext(None)
    # The change client: a batch of changes sends through the same session.
    return ChangeClient(
        batch.base_url,
        batch.credentials,
        concurrency=workers,
        timeout=options.timeout,
        budget=controller,
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def locations_of(batch: Batch) -> tuple[str, ...]:
    """--location, and the distinct cells of the input's location column (checked UUIDs)."""
    found = list(batch.options.locations)
    column = batch.source.distinct(_LOCATION_COLUMNS, _MOST_LOCATIONS)
    if column is not None:
        name, values = column
        for value, row in values.items():
            where = f"{batch.source.name}, row {row}, column {name!r}"
            found.append(checked_location(value, where))
    return tuple(dict.fromkeys(found))


def reverts(batch: Batch) -> bool:
    """Whether the batch changes a ticket only while it still has a status: an undo, a retry
    of an undo's report, or any DataFrame with an `expected_status` column (README)."""
    frame = batch.source.frame
    return frame is not None and "expected_status" in frame.columns


def expected_statuses(batch: Batch) -> list[str]:
    """Each row's `expected_status`, normalised ("" where a row has none).

    `prepare` has refused a batch with a value that is not a status (exit 2), so
    none reaches a journal, a comparison or a report unchecked.
    """
    frame = batch.source.frame
    if frame is None or not reverts(batch):
        return []
    return [
        normalise_status(s) or "" if isinstance(s, str) else ""
        for s in frame["expected_status"].tolist()
    ]


def _expected(batch: Batch) -> list[tuple[int, str, str | None]]:
    """An undo's rows, the status its batch set, which must still hold (README), and when
    the batch set it (`expected_since`, a report's `finished_at`), if the frame says."""
    statuses = expected_statuses(batch)
    frame = batch.source.frame
    since: list[str | None] = [None] * len(statuses)
    if frame is not None and statuses and EXPECTED_SINCE in frame.columns:
        # `prepare` has refused a value that is not a time with its zone.
        since = [
            checked_instant(v) if isinstance(v, str) and v else None
            for v in frame[EXPECTED_SINCE].tolist()
        ]
    return [(i, s, t) for i, (s, t) in enumerate(zip(statuses, since, strict=True), 1) if s]


_SKEW_SHOWN = 60.0  # seconds of the clocks' difference worth a warning

# When an undo's batch set each row's status: its report's `finished_at` (batch/_derived.py).
EXPECTED_SINCE = "expected_since"


# An undo's columns of the values its batch set, per change kind (batch/_undo_changes.py),
# and how each is written as the reads and answers write it.
EXPECTED_CHANGES = {
    "assignee": ("expected_assignee", checked_assignee),
    "type": ("expected_type", checked_type),
}


def _expected_changes(batch: Batch) -> list[tuple[int, str, str]]:
    """(row, kind, value): an undo's changes and what their batch set, which must still hold
    (unless this invocation has `--force`: send/_changes.py). `prepare` has refused a value
    that is not a user id or a type."""
    frame = batch.source.frame
    if frame is None:
        return []
    found = []
    for kind, (column, canonical) in EXPECTED_CHANGES.items():
        if column in frame.columns:
            for i, value in enumerate(frame[column].tolist(), 1):
                if isinstance(value, str) and (written := canonical(value)):
                    found.append((i, kind, written))
    return found


def should_read(batch: Batch, locations: tuple[str, ...], undo: bool) -> bool:
    """Read first: for a preview; when asked; else when listing is cheap, or for an undo."""
    options = batch.options
    if options.preview:
        return True
    if options.dry_run:
        return False
    if options.read is not None:
        return options.read
    if batch.input_sha256 is not None:
        return False  # a job's batch: its listing just read them and kept only the changes
    # By listing, reading costs a request per 100 tickets (~1% more); one GET a
    # ticket would double the requests to save only the rows already done.
    return bool(locations) or undo


def _reader(
    batch: Batch, client: TicketClient, controller: RateController, stop: threading.Event | None
) -> Reader:
    options = batch.options
    return Reader(
        client,
        controller,
        max_attempts=options.max_attempts,
        backoff_base=options.backoff_base,
        backoff_max=options.backoff_max,
        concurrency=options.concurrency or 8,
        stop=stop,
    )


Record = Callable[[list[ReadRecord]], int]  # the rows it read


def _found(s: TicketState) -> ReadRecord:
    return (s.ticket_id, s.status, s.update_date, s.status_update_date, s.location, None)


def _records(states: list[TicketState]) -> list[ReadRecord]:
    return [_found(s) for s in states]


def _record(read: Read) -> ReadRecord:
    if read.state is None:
        return (read.ticket_id, None, None, None, None, read.error)
    return _found(read.state)


def _assignees(states: Iterable[TicketState]) -> list[tuple[str, str]]:
    return [(s.ticket_id, s.assignee) for s in states if s.assignee]


def _collect(
    reads: list[ReadRecord], states: list[TicketState]
) -> Callable[[Read], Awaitable[None]]:
    async def found(read: Read) -> None:
        reads.append(_record(read))
        if read.state is not None:
            states.append(read.state)

    return found


async def _read_into(
    reader: Reader, journal: Journal, locations: tuple[str, ...], record: Record, verify: bool
) -> int:
    """List the locations, then GET what they did not hold; the pages listed.

    A listing brings a whole location, 100 tickets a page, the batch's or not; a GET brings
    one ticket. Listing goes on while it has cost fewer requests than the rows left to read
    would cost one GET each: never more than twice the cheaper way (the ski-rental rule).
    A walkthrough listed 14 pages to read 3 tickets.
    """
    left = await anyio.to_thread.run_sync(functools.partial(journal.count_to_read, verify=verify))
    if not left:
        return 0  # a rerun of a finished batch: nothing to read
    pages = 0

    async def keep(records: list[ReadRecord], states: list[TicketState]) -> None:
        nonlocal left
        left -= await anyio.to_thread.run_sync(record, records)
        if not verify:
            await anyio.to_thread.run_sync(journal.note_assignees, _assignees(states))

    async def listed(states: list[TicketState]) -> None:
        nonlocal pages
        pages += 1
        await keep(_records(states), states)

    for location in locations:
        await reader.list_location(location, listed, more=lambda: pages < left)
    if reader.relisted:
        again = functools.partial(journal.read_again, sorted(reader.relisted), verify=verify)
        await anyio.to_thread.run_sync(again)
    after = 0
    while not reader.stopped and (
        rows := await anyio.to_thread.run_sync(
            functools.partial(journal.to_read, after, _BATCH, verify=verify)
        )
    ):
        after = rows[-1][0]
        reads: list[ReadRecord] = []
        states: list[TicketState] = []
        await reader.read_each(dict.fromkeys(key for _, key in rows), _collect(reads, states))
        await keep(reads, states)
    return pages


async def _keep_expectations(batch: Batch, journal: Journal) -> bool:
    """An undo's statuses (and assignees and types) that must still hold, into the journal
    once; whether the batch has statuses to guard."""
    expected = _expected(batch)
    changes = _expected_changes(batch)
    meta = await anyio.to_thread.run_sync(journal.meta)
    if expected and not meta.get("expected_set"):
        await anyio.to_thread.run_sync(journal.set_expected, expected)
        await anyio.to_thread.run_sync(lambda: journal.set_meta(expected_set=True))
    # A flag of its own: an undo an earlier bulk began (its statuses set) gets it on resume.
    if changes and not meta.get("expected_changes_set"):
        await anyio.to_thread.run_sync(journal.set_expected_changes, changes)
        await anyio.to_thread.run_sync(lambda: journal.set_meta(expected_changes_set=True))
    return bool(expected)


async def _estimate_clock_skew(batch: Batch, journal: Journal) -> None:
    """The clocks' difference an undo's time guard allows for (Reads.estimate_clock_skew);
    a retry of an undo brings the undo's, for when it has too few tickets to tell."""
    frame = batch.source.frame
    known = frame.attrs.get(CLOCK_SKEW) if frame is not None else None
    skew = await anyio.to_thread.run_sync(
        journal.estimate_clock_skew, known if isinstance(known, float) else None
    )
    if skew == GUARD_OFF:
        log.warning(
            "the tickets' statusUpdateDate does not follow this batch's finish times; "
            "only their status is checked (one set to the batch's status again since "
            "is reverted)"
        )
    elif abs(skew) > _SKEW_SHOWN:
        log.warning(
            "the tickets' statusUpdateDate runs %+.0f s from this batch's finish times "
            "(the median): taken as the server's clock against this machine's",
            skew,
        )


async def read_before(
    batch: Batch,
    journal: Journal,
    controller: RateController,
    client: TicketClient | None,
    stop: threading.Event | None = None,
) -> Reading | None:
    """Read the batch's tickets (unless this run does not read); settle what needs no write.

    Once `stop` is set (an interrupt), no read starts; what was read is settled at once, and
    the rerun reads only the rest.
    """
    expected = await _keep_expectations(batch, journal)
    locations = locations_of(batch)
    if client is None or not should_read(batch, locations, bool(expected)):
        return None
    at = _now()
    reading = Reading()
    reader = _reader(batch, client, controller, stop)
    try:
        record: Record = lambda reads: journal.record_reads(reads, at)  # noqa: E731
        reading.pages = await _read_into(reader, journal, locations, record, verify=False)
    except CredentialsRejected as exc:
        raise UsageError(
            f"stopped: credentials rejected while reading ({exc.message}); nothing was sent",
            exit_code=ExitCode.STOPPED,
        ) from None
    except UnexpectedAnswer as exc:
        raise ListingUnreadable(f"{exc.message}; stopped, nothing sent") from None
    except RequestError as exc:
        # A listing page that failed every attempt (the server down, a 404 for a wrong
        # base URL): the batch stops as a failure-rate stop does (report written, exit 3),
        # and a rerun reads again. A ticket's own GET that fails leaves only it unread.
        reading.stopped = (
            f"the tickets could not be read ({printable(exc.message, 300)}); nothing was sent"
        )
    finally:
        reading.requests = reader.requests
    if expected:
        await _estimate_clock_skew(batch, journal)
    if not batch.options.dry_run:
        if batch.options.force and expected:
            log.warning("--force: reverting every ticket, even those changed since the batch")
        # Settled now, interrupted or not: a rerun must not settle on reads taken long before.
        reading.settled = await anyio.to_thread.run_sync(
            lambda: journal.settle_reads(_now(), force=batch.options.force)
        )
    if reader.stopped or reading.stopped:
        how = "interrupted" if reader.stopped else "stopped"
        log.info("read before writing: %s after %d request(s)", how, reading.requests)
        return reading
    await anyio.to_thread.run_sync(write_snapshot, journal, batch)
    log.info(
        "read before writing: %d request(s)%s",
        reading.requests,
        f" ({reading.pages} listing pages)" if reading.pages else "",
    )
    return reading


async def verify_after(
    batch: Batch,
    journal: Journal,
    controller: RateController,
    client: TicketClient,
    locations: tuple[str, ...],
    stop: threading.Event | None = None,
) -> Reading:
    """Re-read what the run changed or skipped; fill `verified`. Resumable: only the unverified
    (an interrupt, `stop`, leaves the rest so)."""
    reading = Reading()
    controller.set_sleep(anyio.sleep)  # the engine's wait ends at once once it has stopped
    reader = _reader(batch, client, controller, stop)
    try:
        reading.pages = await _read_into(
            reader, journal, locations, journal.record_verified, verify=True
        )
    except RequestError as exc:
        # The writes are done; what could not be verified stays so, for a rerun.
        log.warning("verify stopped: %s; the rest is not verified", printable(exc.message, 300))
    finally:
        reading.requests = reader.requests
    return reading


def write_snapshot(journal: Journal, batch: Batch) -> None:
    """Every read ticket of the batch, as read, beside the report (a baseline export)."""
    with replacing(beside(batch.report, ".snapshot.csv"), newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(SNAPSHOT_COLUMNS)
        for rows in journal.snapshot_rows():
            writer.writerows([[csv_cell(v) for v in row] for row in rows])
