"""The API listing as a source: page through locations, snapshot, select.

Pages are paced by the same controller and retried by the same policy as
status changes. Every listed ticket goes into a snapshot file (so a run can be
audited and undone later); the selected ones, with their target status, go
into the batch's input file. Beyond one page, only a hash per listed ticket
(of the location being listed) is held, to notice a listing that goes round.

The server's pages are not trusted: a page of the wrong shape, a cursor that
does not advance, pages that bring nothing new, or more pages than any real
listing has stop the job before anything is sent (`ListingUnreadable`, exit 2).
So does a ticket whose age field, used by the selection, is not a date-time
with a time zone (the spec's `date-time` is RFC 3339, which requires one):
taking such a time as UTC, or as the machine's zone, could close tickets
hours early, and passing the ticket over would hide a broken server behind a
job that quietly does less. Every server string written to the snapshot or
the batch passes `clean_text`.

Both files are written through `replacing(new=True)`: never through a link
planted at their guessable names, and never over a file bulk did not
create. The batch input is hashed as it is written; the run that reads it
back refuses any other bytes.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from .._core._csvsafe import csv_cell
from .._core._exceptions import ListingUnreadable, UnexpectedAnswer
from .._core._files import replacing
from .._core._ids import UUID_PATTERN
from .._core._text import clean_text
from ..send import RateController, TicketClient, retrying, zoned
from ._schema import ApiSource, Job, Select

__all__ = ["MAX_PAGES", "Listing", "ListingUnreadable", "list_and_select"]

log = logging.getLogger("bulk")

# 10 million tickets at 100 a page, far past any real account; at 10 pages a
# second, about 3 hours. Only a listing that never ends reaches it.
MAX_PAGES = 100_000
# Pages in a row that bring no ticket not seen before (in this location) before
# the listing counts as going round. A ticket changed while the listing runs
# comes back with a new updateDate and so counts as new: only the same ticket
# in the same state counts as seen.
STALL_PAGES = 3
# A cursor goes back into the next URL; real ones are about a hundred characters.
MAX_TOKEN = 4096

SNAPSHOT_COLUMNS = (
    "id",
    "number",
    "locationRef",
    "status",
    "type",
    "createDate",
    "updateDate",
    "statusUpdateDate",
    "userRefAssignee",
    "selected",
    "target_status",
)


@dataclass
class Listing:
    pages: int = 0
    listed: int = 0
    matched: int = 0  # passed the selection
    already: int = 0  # matched, but already at the target status
    selected: int = 0  # to be sent
    input_sha256: str = ""  # of the batch input's bytes, as written


_when = zoned  # a listed time: the same check as every time read from the server


def matches(ticket: dict[str, Any], select: Select | None, now: datetime) -> bool:
    if select is None:
        return True
    if select.status is not None and ticket.get("status") not in select.status:
        return False
    if select.types is not None and ticket.get("type") not in select.types:
        return False
    if select.assigned is not None:
        assigned = bool(ticket.get("userRefAssignee") or ticket.get("membershipRefAssignee"))
        if assigned != select.assigned:
            return False
    age = select.older_than_seconds
    if age is not None:
        when = _when(ticket.get(select.age_field))
        if when is None or (now - when).total_seconds() < age:
            return False
    return True


def target_for(ticket: dict[str, Any], job: Job, mapping: dict[str, str] | None) -> str | None:
    if job.action.status is not None:
        return job.action.status
    assert mapping is not None
    return mapping.get(str(ticket.get("status")))


def _cell(value: Any) -> Any:
    """A listed ticket's field for a CSV bulk writes: numbers as they are, text cleaned
    of control characters and neutralised for spreadsheets."""
    if value is None or isinstance(value, int | float):
        return csv_cell(value)
    return csv_cell(clean_text(value))


def _checked_page(
    data: dict[str, Any], limit: int, age_field: str | None = None, location: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """The page's tickets and next cursor, or why the page is not a listing page.

    `age_field`: the field the selection reads times from, which must then be
    absent or a date-time with a time zone. `location`: the location listed, which a
    ticket that names its own must name (a listing that ignored its filter would have
    the job change tickets of other locations).
    """
    tickets = data.get("tickets")
    if not isinstance(tickets, list):
        raise ValueError("'tickets' is not a list")
    if len(tickets) > limit:
        raise ValueError(f"{len(tickets)} tickets on a page of at most {limit}")
    for number, ticket in enumerate(tickets, 1):
        ticket_id = ticket.get("id") if isinstance(ticket, dict) else None
        if not isinstance(ticket_id, str) or not UUID_PATTERN.fullmatch(ticket_id.lower()):
            raise ValueError(f"ticket {number} of the page has no valid id")
        held = ticket.get("locationRef")
        if location is not None and held is not None and str(held).lower() != location.lower():
            raise ValueError(
                f"ticket {ticket_id} is of location {clean_text(held, 60)}, not the one listed"
            )
        if age_field is not None:
            try:
                _when(ticket.get(age_field))
            except ValueError as exc:
                raise ValueError(f"ticket {ticket_id}: {age_field} {exc}") from None
    token = data.get("nextPageToken")
    if token is not None and not isinstance(token, str):
        raise ValueError("'nextPageToken' is not a string")
    if token is not None and len(token) > MAX_TOKEN:
        raise ValueError(f"'nextPageToken' is longer than {MAX_TOKEN} characters")
    return tickets, token or None


class _Cursor:
    """One location's paging, watched for a listing that goes round instead of ending.

    Tokens and tickets are remembered by their `hash()`: an int each, about
    76 MB per million tickets (measured). Python's string hash is keyed per
    process, so a server cannot aim for a collision, and a chance one (about
    3 in 10^8 at a million tickets) could only hide one new ticket on a page.
    """

    def __init__(self, location: str) -> None:
        self.location = location
        self._tokens: set[int] = set()
        self._seen: set[int] = set()
        self._stalled = 0

    def advance(self, tickets: list[dict[str, Any]], token: str | None, page: int) -> None:
        where = f"listing location {self.location}, page {page}"
        fresh = False
        for ticket in tickets:
            key = hash((ticket["id"].lower(), str(ticket.get("updateDate"))))
            if key not in self._seen:
                self._seen.add(key)
                fresh = True
        self._stalled = 0 if fresh else self._stalled + 1
        if token is None:
            return
        if self._stalled >= STALL_PAGES:
            raise ListingUnreadable(
                f"{where}: {STALL_PAGES} pages in a row brought no ticket not already listed, "
                "yet the server offers another page; stopped, nothing sent"
            )
        key = hash(token)
        if key in self._tokens:
            raise ListingUnreadable(
                f"{where}: the server sent a nextPageToken it had sent before, "
                "so the listing would never end; stopped, nothing sent"
            )
        self._tokens.add(key)


async def _page(
    client: TicketClient,
    pacer: RateController,
    source: ApiSource,
    location: str,
    token: str | None,
    max_attempts: int,
) -> dict[str, Any]:
    async for attempt in retrying(max_attempts):
        with attempt:
            return await pacer.paced(
                lambda: client.list_page(
                    location, order=source.order, limit=source.page_size, token=token
                )
            )
    raise AssertionError("unreachable: tenacity re-raises the last error")


async def _read_page(
    client: TicketClient,
    pacer: RateController,
    job: Job,
    location: str,
    token: str | None,
    page: int,
) -> tuple[list[dict[str, Any]], str | None]:
    assert isinstance(job.source, ApiSource)
    where = f"listing location {location}, page {page}"
    try:
        data = await _page(client, pacer, job.source, location, token, job.run.max_attempts)
    except UnexpectedAnswer as exc:
        raise ListingUnreadable(f"{where}: {exc.message}; stopped, nothing sent") from None
    select = job.select
    age_field = select.age_field if select is not None and select.older_than else None
    try:
        return _checked_page(data, job.source.page_size, age_field, location)
    except ValueError as exc:
        raise ListingUnreadable(
            f"{where}: unexpected answer: {exc}; stopped, nothing sent"
        ) from None


def _check_page_cap(result: Listing, location: str) -> None:
    if result.pages >= MAX_PAGES:
        raise ListingUnreadable(
            f"listing location {location}: more than {MAX_PAGES} pages in all, "
            "more than any real listing; stopped, nothing sent"
        )


async def list_and_select(
    job: Job,
    client: TicketClient,
    pacer: RateController,
    snapshot: Path,
    batch_input: Path,
    *,
    now: datetime | None = None,
) -> Listing:
    """Write the snapshot and the batch input; return the counts."""
    assert isinstance(job.source, ApiSource)
    now = now or datetime.now(UTC)
    mapping = job.api_map()
    result = Listing()
    # Local, buffered writes of at most a page at a time: a thread hop per
    # page would cost more than the write it moves off the loop.
    with (
        replacing(snapshot, newline="", encoding="utf-8", new=True) as snap_file,
        replacing(batch_input, "wb", new=True) as input_bytes,
    ):
        input_file = _Hashed(input_bytes)
        snap = csv.writer(snap_file)
        snap.writerow(SNAPSHOT_COLUMNS)
        batch = csv.writer(input_file)
        batch.writerow(("ticket_id", "target_status", "current_status", "locationRef"))
        for location in job.source.locations:
            cursor = _Cursor(location)
            token: str | None = None
            while True:
                _check_page_cap(result, location)
                page = result.pages + 1
                tickets, token = await _read_page(client, pacer, job, location, token, page)
                cursor.advance(tickets, token, page)
                result.pages = page
                for ticket in tickets:
                    result.listed += 1
                    chosen = matches(ticket, job.select, now)
                    target = target_for(ticket, job, mapping) if chosen else None
                    send = target is not None and target != ticket.get("status")
                    if target is not None:
                        result.matched += 1
                        result.already += not send
                    if send:
                        result.selected += 1
                        # Read back as the batch's input: ids are UUIDs and targets
                        # status words, which neutralising leaves as they are.
                        current = _cell(ticket.get("status"))
                        batch.writerow((ticket["id"], target, current, location))
                    snap.writerow(
                        [_cell(ticket.get(c, "")) for c in SNAPSHOT_COLUMNS[:-2]]
                        + [int(send), target or ""]
                    )
                if not token:
                    break
            log.info("listed location %s: %d tickets so far", location, result.listed)
        result.input_sha256 = input_file.digest.hexdigest()
    return result


class _Hashed:
    """A text sink for `csv.writer` that writes UTF-8 and hashes exactly the bytes it writes."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self.digest = hashlib.sha256()

    def write(self, text: str) -> int:
        data = text.encode("utf-8")
        self.digest.update(data)
        self._handle.write(data)
        return len(text)
