"""The API calls of changes besides status: assignee, type, comments, and reading a ticket.

Each call proves its answer like `set_status` does: a success counts only
when the answer shows this ticket (and, for a comment, this text) changed.
Every id that goes into a URL is checked as a canonical UUID here again, so
no code path can put an unchecked string into one.
"""

from __future__ import annotations

import html
import json
import logging
import unicodedata
from typing import Any, NamedTuple

from yarl import URL

from .._core._exceptions import FatalRequestError, UnexpectedAnswer
from .._core._ids import UUID_PATTERN
from .._core._text import clean_text
from ..plan import TYPES
from ._client import TicketClient

__all__ = ["Activity", "ChangeClient", "ChangeResult", "TicketDetails", "same_text"]

log = logging.getLogger("bulk")


class ChangeResult(NamedTuple):
    http_status: int
    previous: str | None  # the value before the change, when the answer says
    activity_id: str | None


class Activity(NamedTuple):
    id: str
    type: str
    text: str | None
    created: str  # ISO date-time, as the server gave it
    author: str | None  # the membership that acted


class TicketDetails(NamedTuple):
    assignee: str | None  # a user id, or "none"
    type: str | None
    activities: list[Activity]


def _uuid(value: Any) -> str | None:
    if isinstance(value, str) and UUID_PATTERN.fullmatch(value.lower()):
        return value.lower()
    return None


def _checked_id(value: str, what: str) -> str:
    if not UUID_PATTERN.fullmatch(value):
        raise FatalRequestError(f"refusing to send: {value!r} is not a canonical UUID ({what})")
    return value


def _ticket(data: dict[str, Any], ticket_id: str, code: int) -> dict[str, Any]:
    ticket = data.get("ticket")
    if not isinstance(ticket, dict):
        raise UnexpectedAnswer(f"no ticket object in the {code} answer", code)
    if _uuid(ticket.get("id")) != ticket_id:
        raise UnexpectedAnswer("the answer's ticket id is not the row's id", code)
    return ticket


def _assignee_of(ticket: dict[str, Any]) -> str | None:
    """A user id, "none" when the ticket shows no assignee, None when unreadable."""
    value = ticket.get("userRefAssignee")
    if value is None:
        return "none"
    return _uuid(value)


def same_text(stored: str | None, sent: str) -> bool:
    """Whether a comment's stored text is the text sent, as a server may store it: in Unicode's
    composed form (a file from macOS holds decomposed accents), with HTML's entities, spaces
    collapsed. Compared exactly, a stored `Clôturé` was "not ours" and posted again, six times.
    """
    return _canonical(stored or "") == _canonical(sent)


def _canonical(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", html.unescape(text)).split())


def _activity(item: Any) -> Activity | None:
    if not isinstance(item, dict):
        return None
    activity_id = _uuid(item.get("id"))
    data = item.get("data")
    text = data.get("text") if isinstance(data, dict) else None
    membership = item.get("membership")
    if activity_id is None or not isinstance(item.get("createDate"), str):
        return None
    return Activity(
        activity_id,
        str(item.get("type")),
        text if isinstance(text, str) else None,
        item["createDate"],
        _uuid(membership.get("id")) if isinstance(membership, dict) else None,
    )


class ChangeClient(TicketClient):
    """A `TicketClient` that also changes assignees, types and comments."""

    @property
    def timeout(self) -> float:
        """One request's whole time limit, seconds (a comment's settle delay)."""
        return self._timeout

    def _url(self, path: str) -> URL:
        # Already safe (checked UUIDs): encoded=True spares yarl re-parsing it.
        return URL(f"{self._base}/support/tickets/v1/{path}", encoded=True)

    async def _send_json(
        self, method: str, path: str, body: dict[str, Any], expect: int
    ) -> dict[str, Any]:
        return await self._call(
            method,
            self._url(path),
            expect=expect,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )

    async def details(self, ticket_id: str) -> TicketDetails:
        data = await self._call("GET", self._url(_checked_id(ticket_id, "ticket")))
        ticket = _ticket(data, ticket_id, 200)
        raw = data.get("activities")
        activities = [a for a in map(_activity, raw if isinstance(raw, list) else []) if a]
        kind = ticket.get("type")
        return TicketDetails(_assignee_of(ticket), kind if kind in TYPES else None, activities)

    async def set_assignee(self, ticket_id: str, user: str) -> ChangeResult:
        """PUT the assignee (`none` unassigns); idempotent."""
        _checked_id(ticket_id, "ticket")
        target = None if user == "none" else _checked_id(user, "user")
        data = await self._send_json(
            "PUT", f"{ticket_id}/assignee", {"ticket": {"userRefAssignee": target}}, 200
        )
        got = _assignee_of(_ticket(data, ticket_id, 200))
        if got != user:
            raise UnexpectedAnswer(
                f"the answer shows assignee {clean_text(str(got), 40)}, not the target", 200
            )
        activity = data.get("activity")
        before = activity.get("data") if isinstance(activity, dict) else None
        before = before.get("previousAttributes") if isinstance(before, dict) else None
        previous = None
        if isinstance(before, dict):
            # Present without a user: the ticket had no assignee.
            previous = _uuid(before.get("userRefAssignee")) or "none"
        activity_id = _uuid(activity.get("id")) if isinstance(activity, dict) else None
        return ChangeResult(200, previous, activity_id)

    async def set_type(self, ticket_id: str, kind: str) -> ChangeResult:
        """PATCH the type (204, no body: the previous type is read before); idempotent."""
        _checked_id(ticket_id, "ticket")
        if kind not in TYPES:
            raise FatalRequestError(f"refusing to send: {kind!r} is not a ticket type")
        await self._send_json("PATCH", f"{ticket_id}/type", {"ticket": {"type": kind}}, 204)
        return ChangeResult(204, None, None)

    async def post_comment(self, ticket_id: str, text: str) -> Activity:
        """POST a comment: NOT idempotent; the caller decides what an unknown outcome means."""
        _checked_id(ticket_id, "ticket")
        data = await self._send_json(
            "POST", "comment", {"activity": {"ticketRef": ticket_id, "text": text}}, 201
        )
        raw = data.get("activity")
        activity = _activity(raw)
        if (
            activity is None
            or not isinstance(raw, dict)
            or _uuid(raw.get("ticketRef")) != ticket_id
        ):
            raise UnexpectedAnswer("the 201 answer has no activity of this ticket", 201)
        if not same_text(activity.text, text):
            # Created all the same (a 201 naming this ticket and the new activity): posting
            # again would add a second. Said, not hidden.
            log.warning(
                "ticket %s: the comment was posted, but the server stored other text (%s)",
                ticket_id,
                clean_text(activity.text or "", 80),
            )
        return activity

    async def delete_comment(self, activity_id: str) -> ChangeResult:
        await self._call(
            "DELETE", self._url(f"comment/{_checked_id(activity_id, 'comment')}"), expect=204
        )
        return ChangeResult(204, None, activity_id)
