"""The listing: its query parameters, keyset pages, sort keys and page tokens.

The page after a `nextPageToken` holds the tickets that sort strictly after the last one
returned, by (sort date, id) as that ticket was when it was returned. That key is what the
token carries, not an offset, so changes between pages shift nothing:

- createDate orders: createDate never changes, so every ticket of the location is
  returned exactly once however statuses (hence updateDate) change during the listing.
  Tickets created meanwhile appear only if they sort after the cursor.
- updateDate orders: a ticket changed during the listing gets the newest updateDate and
  so moves to the end. With updateDate:asc it is (also) returned again at the end if it
  had already been returned; with updateDate:desc it jumps ahead of the cursor, and one
  not yet returned is skipped. Clients that change tickets while listing should page by
  createDate.

The spec's optional `searchQueryNext` is not served; clients build the next request
themselves from the same parameters and `nextPageToken`.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from ._tickets import UUID_RE

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_ORDER",
    "MAX_LIMIT",
    "ORDERS",
    "BadQuery",
    "ListQuery",
    "read_query",
    "select_page",
]

# The listing's `order` values, as the spec's parameter description lists them.
ORDERS = ("createDate:asc", "createDate:desc", "updateDate:asc", "updateDate:desc")
DEFAULT_ORDER = "createDate:desc"
DEFAULT_LIMIT = 25  # the spec's default for `limit`
MAX_LIMIT = 100
# The spec's comma-separated id filters; each matches the ticket field of the same name.
_LIST_FILTERS = ("userRefAssignee", "membershipRefRequester")
_LIMIT_RE = re.compile(r"[0-9]{1,4}")
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,2000}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

SortKey = tuple[int, str]


class BadQuery(ValueError):
    """The listing's parameters are wrong; the message is the 400 answer's."""


@dataclass(frozen=True)
class ListQuery:
    location: str  # lower-case
    limit: int
    order: str
    wanted: dict[str, set[str]]  # filter name: lower-case ids
    after: SortKey | None  # from nextPageToken


def read_query(query: Mapping[str, str]) -> ListQuery:
    """The listing's parameters, checked as the spec describes them, or BadQuery."""
    location = _location(query)
    limit = _limit(query)
    order = query.get("order", DEFAULT_ORDER)
    if order not in ORDERS:
        raise BadQuery(f"order must be one of: {', '.join(ORDERS)}")
    wanted = _filters(query)
    after: SortKey | None = None
    if "nextPageToken" in query:
        after = _read_page_token(query["nextPageToken"], order, location)
        if after is None:
            message = "Invalid nextPageToken: pass the one from the previous page unchanged"
            raise BadQuery(message + ", with the same locationRef and order")
    return ListQuery(location, limit, order, wanted, after)


def _location(query: Mapping[str, str]) -> str:
    location = query.get("locationRef")
    if location is None:
        raise BadQuery("locationRef is required")
    if not UUID_RE.fullmatch(location):
        raise BadQuery(f"Invalid locationRef {location!r}: expected a UUID")
    return location.lower()


def _limit(query: Mapping[str, str]) -> int:
    raw_limit = query.get("limit", str(DEFAULT_LIMIT))
    if not _LIMIT_RE.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise BadQuery(f"limit must be an integer from 1 to {MAX_LIMIT}, got {raw_limit!r}")
    return int(raw_limit)


def _filters(query: Mapping[str, str]) -> dict[str, set[str]]:
    wanted: dict[str, set[str]] = {}
    for name in _LIST_FILTERS:
        if name in query:
            ids = query[name].split(",")
            if not 1 <= len(ids) <= 100 or len(set(ids)) != len(ids):
                raise BadQuery(f"{name} must be 1 to 100 unique comma-separated UUIDs")
            if not all(UUID_RE.fullmatch(i) for i in ids):
                raise BadQuery(f"{name} must hold UUIDs only")
            wanted[name] = {i.lower() for i in ids}
    return wanted


def select_page(tickets: Mapping[str, dict[str, Any]], query: ListQuery) -> dict[str, Any]:
    """The listing's answer body: one keyset page of `tickets` (by lower-case id)."""
    date_field, direction = query.order.split(":")
    descending = direction == "desc"
    after = query.after
    rows = [
        (sort_key, ticket)
        for key, ticket in tickets.items()
        if str(ticket.get("locationRef", "")).lower() == query.location
        and all(str(ticket.get(name, "")).lower() in ids for name, ids in query.wanted.items())
        for sort_key in [_sort_key(key, ticket, date_field)]
        if after is None or (sort_key < after if descending else sort_key > after)
    ]
    # One more than the page, to tell whether another page follows.
    pick = heapq.nlargest if descending else heapq.nsmallest
    page = pick(query.limit + 1, rows, key=lambda row: row[0])
    body: dict[str, Any] = {"tickets": [ticket for _, ticket in page[: query.limit]]}
    if len(page) > query.limit:
        last = page[query.limit - 1][0]
        body["nextPageToken"] = _page_token(query.order, query.location, last)
    return body


def _sort_key(key: str, ticket: dict[str, Any], date_field: str) -> SortKey:
    """(microseconds since the epoch, lower-case id); the id breaks ties between equal dates.

    A missing or unreadable date sorts as the epoch, so such a ticket is still listed once.
    """
    value = ticket.get(date_field)
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return 0, key
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1), key


def _page_token(order: str, location: str, last: SortKey) -> str:
    """Opaque to clients: URL-safe unpadded base64 of {"o": order, "l": location, "k": key}.

    `k` is the sort key of the last ticket returned, [microseconds since the epoch, id].
    """
    payload = json.dumps({"o": order, "l": location, "k": list(last)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _read_page_token(token: str, order: str, location: str) -> SortKey | None:
    """The sort key in `token`, or None if it is not one of ours for this order and location."""
    if not _TOKEN_RE.fullmatch(token):
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    if not isinstance(data, dict) or set(data) != {"o", "l", "k"}:
        return None
    payload = cast(dict[str, Any], data)
    key = payload["k"]
    if payload["o"] != order or payload["l"] != location:
        return None
    if not isinstance(key, list) or len(key) != 2:
        return None
    moment, ticket_id = key
    if type(moment) is not int or not isinstance(ticket_id, str):
        return None
    if not UUID_RE.fullmatch(ticket_id) or ticket_id != ticket_id.lower():
        return None
    return moment, ticket_id
