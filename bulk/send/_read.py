"""Reading tickets' current state: one GET a ticket, or a location's listing, 100 a request.

Every read takes its slot from the run's one `RateController` (`paced`) and is
retried by the one policy (`retrying`), so the reads and the writes of a run
together stay under the limit. Answers are checked, not trusted: a ticket
counts only with the id asked for (a GET) or a valid id (a listing), a status
of the spec's enum, and times that are date-times with a zone; anything else
is an `UnexpectedAnswer`. A listing that does not advance (a cursor seen
before, pages bringing nothing new, more pages than any real listing) is one
too. Server text kept from a ticket passes `clean_text`.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any, NamedTuple

import anyio

from .._core._exceptions import (
    CredentialsRejected,
    FatalRequestError,
    NotFound,
    RequestError,
    UnexpectedAnswer,
)
from .._core._ids import UUID_PATTERN
from .._core._text import clean_text
from ..plan import STATUSES
from ._classify import is_ambiguous
from ._client import Answer, TicketClient
from ._pacing import RateController
from ._retry import retrying

__all__ = ["PAGE_SIZE", "Read", "Reader", "TicketState", "resolving", "ticket_state", "zoned"]

Send = Callable[[str, str], Awaitable[Answer]]

# The listing's largest page (the spec's maximum): 50,000 tickets in 500 requests.
PAGE_SIZE = 100
# 10 million tickets a location at 100 a page: only a listing that never ends gets here.
MAX_PAGES = 100_000
STALL_PAGES = 3  # pages in a row with no ticket not seen before: the listing goes round
MAX_TOKEN = 4096  # a cursor goes back into the next URL; real ones are ~100 characters
_ORDER = "updateDate:asc"


class TicketState(NamedTuple):
    """What a read proved about one ticket."""

    ticket_id: str  # canonical, lower case
    status: str
    update_date: str | None
    status_update_date: str | None
    location: str | None
    # "none", a user id, or None when the answer's value is not one: read first, it
    # is the previous value of an assignee change whose own answer was lost.
    assignee: str | None = None


class Read(NamedTuple):
    """One ticket's read: its state, or None with `error` None (not found) or set (unread)."""

    ticket_id: str
    state: TicketState | None
    error: str | None = None


def zoned(value: Any) -> datetime | None:
    """A date-time from the server: None when absent; ValueError unless one with a time zone.

    The one check of the server's times, for reads and the job's listing alike.
    """
    if value is None:
        return None
    when = None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            when = datetime.fromisoformat(value)
    if when is None or when.tzinfo is None:
        shown = repr(value[:60] if isinstance(value, str) else value)
        raise ValueError(f"{clean_text(shown, 60)} is not a date-time with a time zone")
    return when


def _when(ticket: dict[str, Any], field: str) -> str | None:
    value = ticket.get(field)
    try:
        zoned(value)
    except ValueError as exc:
        raise ValueError(f"{field} {exc}") from None
    return None if value is None else clean_text(value, 40)


def ticket_state(ticket: Any, expected_id: str | None = None) -> TicketState:
    """The state in one ticket object of an answer; ValueError saying why it is not one."""
    if not isinstance(ticket, dict):
        raise ValueError("no ticket object")
    got = ticket.get("id")
    if not isinstance(got, str) or not UUID_PATTERN.fullmatch(got.lower()):
        raise ValueError("a ticket without a valid id")
    if expected_id is not None and got.lower() != expected_id:
        raise ValueError(f"ticket id {clean_text(got, 40)} is not the one asked for")
    status = ticket.get("status")
    if status not in STATUSES:
        raise ValueError(f"ticket status {clean_text(repr(status)[:60], 60)} is not a status")
    location = ticket.get("locationRef")
    if location is not None and (
        not isinstance(location, str) or not UUID_PATTERN.fullmatch(location.lower())
    ):
        raise ValueError("locationRef is not a UUID")
    return TicketState(
        got.lower(),
        status,
        _when(ticket, "updateDate"),
        _when(ticket, "statusUpdateDate"),
        location.lower() if location else None,
        _assignee(ticket.get("userRefAssignee")),
    )


def _assignee(value: Any) -> str | None:
    if value is None:
        return "none"
    if isinstance(value, str) and UUID_PATTERN.fullmatch(value.lower()):
        return value.lower()
    return None


class Reader:
    """Reads through one client and one budget; `requests` counts the reads sent."""

    def __init__(
        self,
        client: TicketClient,
        controller: RateController,
        *,
        max_attempts: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        concurrency: int = 8,
        stop: threading.Event | None = None,
    ) -> None:
        self._client = client
        self._controller = controller
        # Set by a signal handler (which cannot cancel tasks safely): no read starts after it,
        # the reads in flight end as they would.
        self._stop = stop or threading.Event()
        self.relisted: set[str] = set()  # tickets a listing brought twice
        self._max_attempts = max_attempts
        self._backoff = (backoff_base, backoff_max)
        self._concurrency = concurrency
        self.requests = 0

    async def _call(self, call: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        async def counted() -> dict[str, Any]:
            self.requests += 1
            return await call()

        base, cap = self._backoff
        policy = retrying(self._max_attempts, backoff_base=base, backoff_max=cap)
        async for attempt in policy:
            with attempt:
                return await self._controller.paced(counted)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _page(self, location: str, token: str | None) -> dict[str, Any]:
        return await self._client.list_page(location, order=_ORDER, limit=PAGE_SIZE, token=token)

    async def read_one(self, ticket_id: str) -> Read:
        """One GET; not found and failed reads are answers too (`Read.error`)."""
        try:
            data = await self._call(lambda: self._client.get_ticket(ticket_id))
            return Read(ticket_id, ticket_state(data.get("ticket"), ticket_id))
        except NotFound:
            return Read(ticket_id, None)
        except ValueError as exc:
            return Read(ticket_id, None, f"unexpected answer: {exc}")
        except CredentialsRejected:
            raise  # every further read would fail the same way: the caller stops
        except RequestError as exc:
            return Read(ticket_id, None, exc.message)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    async def read_each(
        self, ticket_ids: Iterable[str], found: Callable[[Read], Awaitable[None]]
    ) -> None:
        """GET every ticket, `concurrency` at a time; `found` gets each read as it ends.

        CredentialsRejected (and any error but a row's own) ends all reads; so, once the
        reads in flight end, does `stop`.
        """
        pending = iter(ticket_ids)
        # Raised after the group, as itself: from inside, a task group wraps it in an
        # ExceptionGroup that no caller's `except CredentialsRejected` matches (a traceback).
        refused: list[CredentialsRejected] = []

        async def worker() -> None:
            for ticket_id in pending:  # one shared iterator: each id is taken once
                if self.stopped or refused:
                    return
                try:
                    read = await self.read_one(ticket_id)
                except CredentialsRejected as exc:
                    where = f" at ticket {ticket_id}" if exc.http_status == 403 else ""
                    refused.append(CredentialsRejected(exc.message + where, exc.http_status))
                    return
                await found(read)

        async with anyio.create_task_group() as tg:
            for _ in range(self._concurrency):
                tg.start_soon(worker)
        if refused:
            raise refused[0]

    async def list_location(
        self,
        location: str,
        found: Callable[[list[TicketState]], Awaitable[None]],
        more: Callable[[], bool] = lambda: True,
    ) -> int:
        """Every ticket of `location`, a page at a time to `found`; the pages read.

        Raises `UnexpectedAnswer` for a page that is not a listing page or a
        listing that does not advance. No page is asked for once `stop` is set, or
        `more()` says the rest is not worth listing.
        """
        token: str | None = None
        tokens: set[str] = set()
        seen: set[int] = set()
        stalled = pages = 0
        while not self.stopped and more():
            where = f"listing location {location}, page {pages + 1}"
            data = await self._call(functools.partial(self._page, location, token))
            pages += 1
            try:
                states, token = _checked_page(data, location)
            except ValueError as exc:
                raise UnexpectedAnswer(f"{where}: {exc}") from None
            ids = {hash(s.ticket_id): s.ticket_id for s in states}
            fresh = ids.keys() - seen
            # Listed again: it changed while the listing ran (the listing is in order of
            # last change), and which of its two states is current is for a read to say.
            self.relisted.update(ids[h] for h in ids.keys() - fresh)
            seen |= fresh
            stalled = 0 if fresh else stalled + 1
            await found(states)
            if token is None:
                break
            if token in tokens or stalled >= STALL_PAGES or pages >= MAX_PAGES:
                raise UnexpectedAnswer(f"{where}: the listing goes round instead of ending")
            tokens.add(token)
        return pages


def _checked_page(data: dict[str, Any], location: str) -> tuple[list[TicketState], str | None]:
    tickets = data.get("tickets")
    if not isinstance(tickets, list):
        raise ValueError("'tickets' is not a list")
    if len(tickets) > PAGE_SIZE:
        raise ValueError(f"{len(tickets)} tickets on a page of at most {PAGE_SIZE}")
    # A listing brings other tickets than the batch's: one that fails the checks, or names
    # another location than the one listed, is left out (a ticket of the batch missing
    # from the listing is read alone).
    states = []
    for ticket in tickets:
        with contextlib.suppress(ValueError):
            state = ticket_state(ticket)
            if state.location is None or state.location.lower() == location.lower():
                states.append(state)
    token = data.get("nextPageToken")
    if token is not None and (not isinstance(token, str) or len(token) > MAX_TOKEN):
        raise ValueError("'nextPageToken' is not a string of a cursor's size")
    return states, token or None


def resolving(send: Send, reader: Reader) -> Send:
    """`send`, with a 400 resolved by one read (in the same budget).

    Whether the API refuses a status the ticket already has is not documented;
    a 400 there would turn a harmless re-send after a crash into a failed row.
    So a 400 (other than "not found") is judged by the ticket itself: already
    at the target, the row is `unchanged`; otherwise the 400 stands.
    """

    async def resolved(ticket_id: str, status: str) -> Answer:
        try:
            return await send(ticket_id, status)
        except FatalRequestError as exc:
            if not is_ambiguous(exc):
                raise
            read = await reader.read_one(ticket_id)
            if read.state is None or read.state.status != status:
                raise
            return Answer(exc.http_status or 400, status, None)

    return resolved
