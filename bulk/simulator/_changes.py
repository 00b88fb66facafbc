"""The ticket changes besides status: assignee (PUT), type (PATCH) and comments (POST, DELETE).

Shapes follow spec/spacebring-openapi-support.json. Comments are ticket activities of type
`comment` (served by the ticket GET with the others), written by the user behind the Bearer
token (SimConfig.user_id); the spec allows creating one only with OAuth2, so Basic gets 403.
The type PATCH leaves no activity: the spec's activity types have none for it.
"""

from __future__ import annotations

import json
import threading
import unicodedata
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ._config import SimConfig
from ._http import IDENTITY, error_answer, json_answer
from ._tickets import TICKET_TYPES, UUID_RE, iso

__all__ = ["COMMENT_PATH", "ChangeRoutes"]

COMMENT_PATH = "/support/tickets/v1/comment"
_MEMBERSHIPS = uuid.UUID("6d1f3c52-9a0e-4b7b-8f43-2a5e0c7d9b10")


class _BadBody(Exception):
    pass


def _part(raw: bytes, outer: str) -> dict[str, Any]:
    """The object under `outer` in a JSON body, or _BadBody."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise _BadBody from None
    part = body.get(outer) if isinstance(body, dict) else None
    if not isinstance(part, dict):
        raise _BadBody
    return part


def _user(user_id: str) -> dict[str, Any]:
    return {"id": user_id, "photoUrl": None}


def _membership(user_id: str) -> dict[str, Any]:
    membership_id = str(uuid.uuid5(_MEMBERSHIPS, user_id))
    return {"id": membership_id, "roleType": "admin", "type": "member", "user": _user(user_id)}


def _is_uuid(value: Any) -> bool:
    return isinstance(value, str) and UUID_RE.match(value) is not None


class ChangeRoutes:
    """Mixed into Simulator: the change routes, and what tests read back about comments."""

    # The Simulator's own state, shared with its other routes.
    config: SimConfig
    tickets: dict[str, dict[str, Any]]
    _activities: dict[str, list[dict[str, Any]]]
    _comment_ticket: dict[str, str]  # comment id -> ticket key, for the DELETE
    _lock: threading.Lock

    def add_change_routes(self, app: web.Application) -> None:
        app.router.add_put("/support/tickets/v1/{id}/assignee", self._put_assignee)
        app.router.add_patch("/support/tickets/v1/{id}/type", self._patch_type)
        app.router.add_post(COMMENT_PATH, self._post_comment)
        app.router.add_delete(COMMENT_PATH + "/{id}", self._delete_comment)

    # -- for tests --------------------------------------------------------------------------

    def comments(self, ticket_id: str) -> list[dict[str, Any]]:
        """The ticket's comments (activities), oldest first."""
        with self._lock:
            found = self._activities.get(ticket_id.lower(), [])
            return [dict(a) for a in found if a["type"] == "comment"]

    def comment_count(self) -> int:
        with self._lock:
            return len(self._comment_ticket)

    def duplicate_comments(self) -> int:
        """Comments beyond the first with the same ticket, text and author: must stay 0."""
        with self._lock:
            seen = Counter(
                (a["ticketRef"].lower(), a["data"].get("text"), a["membership"]["user"]["id"])
                for found in self._activities.values()
                for a in found
                if a["type"] == "comment"
            )
        return sum(n - 1 for n in seen.values())

    def add_comment(self, ticket_id: str, text: str, user_id: str | None = None) -> str:
        """Posts a comment as `user_id` (default: the OAuth user) directly; its id."""
        key = ticket_id.lower()
        with self._lock:
            ticket = self.tickets[key]
            author = user_id or self.config.user_id
            data = {"text": text}
            activity = self._activity(ticket, "comment", data, membership=_membership(author))
            self._comment_ticket[activity["id"]] = key
            return str(activity["id"])

    # -- the routes -------------------------------------------------------------------------

    def _ticket_key(self, ticket_id: Any) -> str | web.Response:
        if not _is_uuid(ticket_id):
            return error_answer(400, "badRequest", f"Invalid ticket id {ticket_id!r}: not a UUID")
        key = str(ticket_id).lower()
        if key not in self.tickets:
            return error_answer(404, "notFound", f"Ticket {ticket_id} not found")
        return key

    def _activity(
        self, ticket: dict[str, Any], kind: str, data: dict[str, Any], **more: Any
    ) -> dict[str, Any]:
        """A new activity on `ticket`, kept with its others (the caller holds the lock)."""
        activity = {
            "id": str(uuid.uuid4()),
            "createDate": iso(datetime.now(UTC)),
            "ticketRef": ticket["id"],
            "type": kind,
            "data": data,
            **more,
        }
        self._activities.setdefault(str(ticket["id"]).lower(), []).append(activity)
        return activity

    async def _put_assignee(self, request: web.Request) -> web.Response:
        try:
            new = _part(await request.read(), "ticket")["userRefAssignee"]
        except (_BadBody, KeyError):
            return error_answer(
                400, "badRequest", 'Body must be {"ticket": {"userRefAssignee": ...}}'
            )
        if new is not None and not _is_uuid(new):
            return error_answer(400, "badRequest", "ticket.userRefAssignee must be a UUID or null")
        key = self._ticket_key(request.match_info["id"])
        if isinstance(key, web.Response):
            return key
        new = None if new is None else new.lower()
        with self._lock:
            ticket = self.tickets[key]
            old = ticket.get("userRefAssignee")
            # The spec's userRefAssignee is a string, never null: "unassigned" leaves it out.
            data: dict[str, Any] = {
                "previousAttributes": {}
                if old is None
                else {"userRefAssignee": old, "userAssignee": _user(old)}
            }
            if new is not None:
                data.update(userRefAssignee=new, userAssignee=_user(new))
            activity = self._activity(ticket, "assigneeUpdated", data)
            if new != old:
                ticket.pop("userRefAssignee", None)
                ticket["userAssignee"] = None if new is None else _user(new)
                if new is not None:
                    ticket["userRefAssignee"] = new
                ticket["updateDate"] = activity["createDate"]
            return json_answer(200, {"activity": activity, "ticket": ticket})

    async def _patch_type(self, request: web.Request) -> web.Response:
        try:
            new = _part(await request.read(), "ticket")["type"]
        except (_BadBody, KeyError):
            return error_answer(400, "badRequest", 'Body must be {"ticket": {"type": ...}}')
        if new not in TICKET_TYPES:
            allowed = ", ".join(TICKET_TYPES)
            return error_answer(400, "badRequest", f"ticket.type must be one of: {allowed}")
        key = self._ticket_key(request.match_info["id"])
        if isinstance(key, web.Response):
            return key
        with self._lock:
            ticket = self.tickets[key]
            if ticket["type"] != new:
                ticket.update(type=new, updateDate=iso(datetime.now(UTC)))
        return web.Response(status=204)

    async def _post_comment(self, request: web.Request) -> web.Response:
        if request.get(IDENTITY, "").startswith("basic:"):
            message = "Creating a ticket comment requires OAuth2 (a Bearer token), not Basic"
            return error_answer(403, "forbidden", message)
        try:
            part = _part(await request.read(), "activity")
        except _BadBody:
            return error_answer(400, "badRequest", 'Body must be {"activity": {...}}')
        text = part.get("text")
        if "attachments" in part:
            return error_answer(400, "badRequest", "attachments are not supported here")
        if not isinstance(text, str) or not text:
            return error_answer(400, "badRequest", "activity.text must be a non-empty string")
        key = self._ticket_key(part.get("ticketRef"))
        if isinstance(key, web.Response):
            return key
        if self.config.comments_nfc:
            text = unicodedata.normalize("NFC", text)
        with self._lock:
            data = {"text": text}
            author = _membership(self.config.user_id)
            activity = self._activity(self.tickets[key], "comment", data, membership=author)
            self._comment_ticket[activity["id"]] = key
            return json_answer(201, {"activity": activity})

    async def _delete_comment(self, request: web.Request) -> web.Response:
        comment_id = request.match_info["id"]
        if not _is_uuid(comment_id):
            return error_answer(400, "badRequest", f"Invalid comment id {comment_id!r}: not a UUID")
        with self._lock:
            key = self._comment_ticket.pop(comment_id.lower(), None)
            if key is None:
                return error_answer(404, "notFound", f"Comment {comment_id} not found")
            found = self._activities[key]
            found[:] = [a for a in found if a["id"] != comment_id.lower()]
        return web.Response(status=204)
