"""An in-memory Spacebring support-ticket API, the test double for everything that talks to it.

It serves the status PUT, the ticket GET and the listing GET with the shapes of
spec/spacebring-openapi-support.json, the documented auth schemes and per-client rate limit (token bucket, fixed or sliding window),
optional latency and faults (5xx, dropped connections, slow answers) so retries and resumes can
be exercised on loopback, and scheduled changes ("the limit halves after 30 s", "the
credentials are revoked") to reproduce what goes wrong in the middle of a long run.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import csv
import heapq
import hmac
import json
import math
import os
import random
import re
import signal
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from aiohttp import web

DEMO_CLIENT_ID = "demo-client"
DEMO_CLIENT_SECRET = "demo-secret"
DEMO_ACCESS_TOKEN = "demo-token"
DEMO_NETWORK_ID = "0f1e2d3c-4b5a-4697-8877-665544332211"
STATUSES = ("new", "inProgress", "solved", "closed")
# The spec's enum for a ticket's category.
TICKET_TYPES = (
    "access", "accountAndBilling", "bookings", "cleaning", "discriminationAndHarassment",
    "internet", "mailAndPackages", "noiseAndAcoustics", "offensiveOrObjectionableContent",
    "other", "printing", "repairAndMaintenance", "temperatureAndVentilation", "websiteAndApp",
)  # fmt: skip
CSV_COLUMNS = (
    "id",
    "status",
    "locationRef",
    "type",
    "createDate",
    "updateDate",
    "statusUpdateDate",
)

# The spec's ticket schema has additionalProperties: false, so nothing else may ever be served.
_TICKET_FIELDS = frozenset(
    {*CSV_COLUMNS, "number", "description", "userAssignee", "userRequester", "userRefAssignee"}
    | {"membershipAssignee", "membershipRefAssignee", "membershipRequester"}
    | {"membershipRefRequester"}
)
_CSV_TEXT_FIELDS = frozenset({*CSV_COLUMNS, "description"})
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
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
_DESCRIPTIONS = (
    "The badge reader on floor {n} does not accept my card.",
    "Wi-Fi keeps dropping in meeting room {n}.",
    "Invoice {n} shows a desk I cancelled last month.",
    "Parcel for desk {n} has not arrived at reception.",
    "Booking for room {n} disappeared from the app.",
)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
WINDOWS = ("bucket", "fixed", "sliding")


@dataclass
class SimConfig:
    client_id: str = DEMO_CLIENT_ID
    client_secret: str = DEMO_CLIENT_SECRET
    access_token: str = DEMO_ACCESS_TOKEN
    network_id: str = DEMO_NETWORK_ID
    rate: float | None = 10.0  # requests/s per client identity, as documented; None: no limit
    burst: int | None = None  # token-bucket size; None: max(1, ceil(rate))
    # How the rate is enforced, per client identity: "bucket" (token bucket of `burst`),
    # "fixed" (floor(rate) per 1-second window counted from the server's start) or "sliding"
    # (floor(rate) in any trailing second). The windows allow at least 1 request per second.
    window: str = "bucket"
    retry_after: bool = False  # the real API documents no Retry-After; clients must cope either way
    latency: float = 0.0  # seconds before every answer that gets past auth and rate limit
    jitter: float = 0.0  # up to this many more seconds, uniformly
    error_rate: float = 0.0  # share of GET/PUT answered 500, 502 or 503 without doing the work
    drop_rate: float = 0.0  # share of GET/PUT whose connection is closed without an answer
    slow_rate: float = 0.0  # share of GET/PUT that wait slow_seconds first (then do the work)
    slow_seconds: float = 5.0
    seed: int | None = None  # makes the fault choices repeatable
    # (seconds after the first request, {field: value}): each applied once, when its time has
    # come, e.g. [(30, {"rate": 5}), (60, {"client_secret": "revoked"})].
    schedule: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_window(self.window)
        for _, changes in self.schedule:
            _check_changes(changes)


_CONFIG_FIELDS = frozenset(f.name for f in fields(SimConfig))


def _check_window(window: str) -> None:
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {WINDOWS}, got {window!r}")


def _check_changes(changes: dict[str, Any]) -> None:
    unknown = set(changes) - _CONFIG_FIELDS
    if unknown or "schedule" in changes:
        raise ValueError(f"a scheduled change may only set SimConfig fields, got {changes!r}")
    if "window" in changes:
        _check_window(changes["window"])


@dataclass(frozen=True)
class LoggedRequest:
    """One request as received.

    `status` is 0 while the request is in flight and stays 0 if no answer was written (dropped).
    Header names are lower-cased; the Authorization value keeps only its scheme.
    """

    method: str
    path: str
    ticket_id: str | None
    status: int
    body: bytes
    headers: dict[str, str]
    at: float
    query: str = ""  # the raw query string, e.g. the listing's "locationRef=...&limit=100"


def _iso(moment: datetime) -> str:
    # The shape of JavaScript's toISOString(), which is what the real API emits.
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def _error(
    status: int, kind: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return _json(status, {"message": message, "type": kind}, headers)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


class Simulator:
    """The API's state and behaviour; `app()` makes the aiohttp application that serves it.

    `config` is read on every request, so changing it while serving takes effect at once.
    `clock` (monotonic seconds) drives the rate limit, the schedule and the log's `at`;
    tests may pass a fake one.
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        tickets: Iterable[dict[str, Any]] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config if config is not None else SimConfig()
        self.tickets: dict[str, dict[str, Any]] = {}
        self.requests: list[LoggedRequest] = []
        self._clock = clock
        self._activities: dict[str, list[dict[str, Any]]] = {}
        # Rate-limit state per client identity, one table per window mode.
        self._buckets: dict[str, tuple[float, float]] = {}  # tokens, last refill
        self._fixed: dict[str, tuple[int, int]] = {}  # window number, requests in it
        self._sliding: dict[str, deque[float]] = {}  # times of the requests let through
        self._started = clock()
        self._first_request: float | None = None
        self._applied: set[int] = set()  # indices of config.schedule already applied
        self._rng = random.Random(self.config.seed)
        # Handlers run on the server loop while tests may read from another thread.
        self._lock = threading.Lock()
        for ticket in tickets or ():
            self.add_ticket(ticket)

    def add_ticket(self, ticket: dict[str, Any]) -> None:
        clean = {k: v for k, v in ticket.items() if k in _TICKET_FIELDS}
        with self._lock:
            self.tickets[str(clean["id"]).lower()] = clean

    def status_of(self, ticket_id: str) -> str:
        with self._lock:
            return str(self.tickets[ticket_id.lower()]["status"])

    def sent_ids(self, method: str = "PUT") -> list[str]:
        with self._lock:
            return [r.ticket_id for r in self.requests if r.method == method and r.ticket_id]

    def status_counts(self) -> dict[int, int]:
        """How many requests got each status, e.g. {200: 950, 429: 40, 503: 10}.

        Requests still in flight or dropped without an answer (status 0) are not counted.
        """
        with self._lock:
            counts = Counter(r.status for r in self.requests if r.status)
        return dict(sorted(counts.items()))

    def app(self) -> web.Application:
        # Fixed rate-limit windows are counted from here, when serving starts.
        self._started = self._clock()
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/support/tickets/v1", self._list_tickets)
        app.router.add_put("/support/tickets/v1/{id}/status", self._put_status)
        app.router.add_get("/support/tickets/v1/{id}", self._get_ticket)
        return app

    # -- request pipeline -------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        entry = await self._log(request)
        response = await self._answer(request, handler)
        if response is None:
            # aiohttp takes a response for a closed transport as a premature disconnect:
            # nothing is written and nothing is logged as an error. The entry keeps status 0.
            return web.Response(status=499)
        self._set_status(entry, response.status)
        return response

    async def _answer(self, request: web.Request, handler: _Handler) -> web.StreamResponse | None:
        now = self._clock()
        self._apply_schedule(now)
        cfg = self.config
        identity = self._identity(request)
        if identity is None:
            return _error(401, "unauthorized", "Missing or invalid credentials")
        wait = self._limit(identity, now)
        if wait > 0:
            headers = {"Retry-After": str(max(1, math.ceil(wait)))} if cfg.retry_after else None
            return _error(429, "tooManyRequests", "Rate limit exceeded", headers)
        rng = self._rng
        if request.method in ("GET", "PUT"):
            if cfg.drop_rate > 0 and rng.random() < cfg.drop_rate:
                if request.transport is not None:
                    request.transport.close()
                return None
            if cfg.error_rate > 0 and rng.random() < cfg.error_rate:
                return _error(rng.choice((500, 502, 503)), "internal", "Internal server error")
            if cfg.slow_rate > 0 and rng.random() < cfg.slow_rate:
                await asyncio.sleep(cfg.slow_seconds)
        delay = cfg.latency + (rng.uniform(0, cfg.jitter) if cfg.jitter > 0 else 0)
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            return await handler(request)
        except web.HTTPException as exc:
            # Unknown routes and wrong methods must be JSON like every other error.
            kind = {404: "notFound", 405: "methodNotAllowed"}.get(exc.status, "badRequest")
            return _error(exc.status, kind, exc.reason)

    async def _log(self, request: web.Request) -> LoggedRequest:
        headers = {k.lower(): v for k, v in request.headers.items()}
        if "authorization" in headers:
            headers["authorization"] = headers["authorization"].split(" ", 1)[0] + " [redacted]"
        entry = LoggedRequest(
            method=request.method,
            path=request.path,
            ticket_id=request.match_info.get("id"),
            status=0,
            body=await request.read(),
            headers=headers,
            at=self._clock(),
            query=request.query_string,
        )
        with self._lock:
            self.requests.append(entry)
        return entry

    def _set_status(self, entry: LoggedRequest, status: int) -> None:
        with self._lock:
            # In-flight entries sit near the end, so scanning backwards is short.
            for i in range(len(self.requests) - 1, -1, -1):
                if self.requests[i] is entry:
                    self.requests[i] = replace(entry, status=status)
                    return

    def _identity(self, request: web.Request) -> str | None:
        cfg = self.config
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        value = value.strip()
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            client_id, sep, secret = decoded.partition(":")
            ok = _same(client_id, cfg.client_id) & _same(secret, cfg.client_secret)
            return "basic:" + client_id if sep and ok else None
        if scheme.lower() == "bearer":
            network = request.headers.get("spacebring-network-id", "")
            ok = _same(value, cfg.access_token) & _same(network, cfg.network_id)
            return "bearer:" + value if ok else None
        return None

    def _apply_schedule(self, now: float) -> None:
        if self._first_request is None:
            self._first_request = now
        schedule = self.config.schedule
        if len(self._applied) >= len(schedule):
            return
        elapsed = now - self._first_request
        for index, (after, changes) in enumerate(schedule):
            if index not in self._applied and elapsed >= after:
                _check_changes(changes)
                self._applied.add(index)
                for name, value in changes.items():
                    setattr(self.config, name, value)

    def _limit(self, identity: str, now: float) -> float:
        """Let one request of `identity` through: return 0, or the seconds until one may pass."""
        rate = self.config.rate
        if rate is None:
            return 0.0
        window = self.config.window
        if window == "bucket":
            return self._take_token(identity, rate, now)
        per_second = max(1, math.floor(rate))
        if window == "fixed":
            number = math.floor(now - self._started)
            seen, count = self._fixed.get(identity, (number, 0))
            count = count if seen == number else 0
            if count < per_second:
                self._fixed[identity] = (number, count + 1)
                return 0.0
            self._fixed[identity] = (number, count)
            return self._started + number + 1 - now
        if window == "sliding":
            times = self._sliding.setdefault(identity, deque())
            while times and times[0] <= now - 1:
                times.popleft()
            if len(times) < per_second:
                times.append(now)
                return 0.0
            # After `rate` was lowered there may be more than allowed; the oldest must leave.
            return times[len(times) - per_second] + 1 - now
        _check_window(window)
        raise AssertionError("unreachable")

    def _take_token(self, identity: str, rate: float, now: float) -> float:
        """Spend one token of the identity's bucket; return 0, or the seconds until one is due."""
        capacity = float(self.config.burst or max(1, math.ceil(rate)))
        tokens, last = self._buckets.get(identity, (capacity, now))
        # The clamp also applies a lowered rate (hence capacity) at once.
        tokens = min(capacity, tokens + max(0.0, now - last) * rate)
        if tokens >= 1:
            self._buckets[identity] = (tokens - 1, now)
            return 0.0
        self._buckets[identity] = (tokens, now)
        return (1 - tokens) / rate if rate > 0 else math.inf

    # -- the API ----------------------------------------------------------------------------

    def _check_id(self, request: web.Request) -> web.Response | None:
        ticket_id = request.match_info["id"]
        if not _UUID_RE.match(ticket_id):
            return _error(400, "badRequest", f"Invalid ticket id {ticket_id!r}: expected a UUID")
        if ticket_id.lower() not in self.tickets:
            return _error(404, "notFound", f"Ticket {ticket_id} not found")
        return None

    async def _put_status(self, request: web.Request) -> web.Response:
        try:
            new = json.loads(await request.read())["ticket"]["status"]
        except (ValueError, TypeError, KeyError):
            return _error(400, "badRequest", 'Body must be {"ticket": {"status": ...}}')
        if new not in STATUSES:
            allowed = ", ".join(sorted(STATUSES))
            return _error(400, "badRequest", f"ticket.status must be one of: {allowed}")
        problem = self._check_id(request)
        if problem is not None:
            return problem
        key = request.match_info["id"].lower()
        now = _iso(datetime.now(UTC))
        with self._lock:
            ticket = self.tickets[key]
            activity = {
                "id": str(uuid.uuid4()),
                "createDate": now,
                "ticketRef": ticket["id"],
                "type": "statusUpdated",
                "data": {"status": new, "previousAttributes": {"status": ticket["status"]}},
            }
            if ticket["status"] != new:
                ticket.update(status=new, statusUpdateDate=now, updateDate=now)
            self._activities.setdefault(key, []).append(activity)
            return _json(200, {"activity": activity, "ticket": ticket})

    async def _get_ticket(self, request: web.Request) -> web.Response:
        problem = self._check_id(request)
        if problem is not None:
            return problem
        key = request.match_info["id"].lower()
        with self._lock:
            body = {"ticket": self.tickets[key], "activities": self._activities.get(key, [])}
            return _json(200, body)

    async def _list_tickets(self, request: web.Request) -> web.Response:
        """One page of a location's tickets, keyset-paginated.

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
        query = request.query
        location = query.get("locationRef")
        if location is None:
            return _error(400, "badRequest", "locationRef is required")
        if not _UUID_RE.fullmatch(location):
            return _error(400, "badRequest", f"Invalid locationRef {location!r}: expected a UUID")
        location = location.lower()
        raw_limit = query.get("limit", str(DEFAULT_LIMIT))
        if not _LIMIT_RE.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= MAX_LIMIT:
            message = f"limit must be an integer from 1 to {MAX_LIMIT}, got {raw_limit!r}"
            return _error(400, "badRequest", message)
        limit = int(raw_limit)
        order = query.get("order", DEFAULT_ORDER)
        if order not in ORDERS:
            return _error(400, "badRequest", f"order must be one of: {', '.join(ORDERS)}")
        wanted: dict[str, set[str]] = {}
        for name in _LIST_FILTERS:
            if name in query:
                ids = query[name].split(",")
                if not 1 <= len(ids) <= 100 or len(set(ids)) != len(ids):
                    message = f"{name} must be 1 to 100 unique comma-separated UUIDs"
                    return _error(400, "badRequest", message)
                if not all(_UUID_RE.fullmatch(i) for i in ids):
                    return _error(400, "badRequest", f"{name} must hold UUIDs only")
                wanted[name] = {i.lower() for i in ids}
        after: tuple[int, str] | None = None
        if "nextPageToken" in query:
            after = _read_page_token(query["nextPageToken"], order, location)
            if after is None:
                message = "Invalid nextPageToken: pass the one from the previous page unchanged"
                return _error(400, "badRequest", message + ", with the same locationRef and order")
        date_field, direction = order.split(":")
        descending = direction == "desc"
        with self._lock:
            rows = [
                (sort_key, ticket)
                for key, ticket in self.tickets.items()
                if str(ticket.get("locationRef", "")).lower() == location
                and all(str(ticket.get(name, "")).lower() in ids for name, ids in wanted.items())
                for sort_key in [_sort_key(key, ticket, date_field)]
                if after is None or (sort_key < after if descending else sort_key > after)
            ]
            # One more than the page, to tell whether another page follows.
            pick = heapq.nlargest if descending else heapq.nsmallest
            page = pick(limit + 1, rows, key=lambda row: row[0])
            body: dict[str, Any] = {"tickets": [ticket for _, ticket in page[:limit]]}
            if len(page) > limit:
                body["nextPageToken"] = _page_token(order, location, page[limit - 1][0])
            return _json(200, body)


def _sort_key(key: str, ticket: dict[str, Any], date_field: str) -> tuple[int, str]:
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


def _page_token(order: str, location: str, last: tuple[int, str]) -> str:
    """Opaque to clients: URL-safe unpadded base64 of {"o": order, "l": location, "k": key}.

    `k` is the sort key of the last ticket returned, [microseconds since the epoch, id].
    """
    payload = json.dumps({"o": order, "l": location, "k": list(last)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _read_page_token(token: str, order: str, location: str) -> tuple[int, str] | None:
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
    if not _UUID_RE.fullmatch(ticket_id) or ticket_id != ticket_id.lower():
        return None
    return moment, ticket_id


# -- ticket data ----------------------------------------------------------------------------


def _location_ids(count: int) -> list[str]:
    # Locations stay the same whatever the seed, like the fixed sites of one network; asking
    # for more only adds ids after these.
    location_rng = random.Random(4242)
    return [str(uuid.UUID(int=location_rng.getrandbits(128), version=4)) for _ in range(count)]


# The location ids make_tickets spreads tickets over by default (locations=3), in order.
LOCATIONS: tuple[str, ...] = tuple(_location_ids(3))


def make_tickets(
    n: int,
    *,
    seed: int = 0,
    statuses: Sequence[str] = STATUSES,
    locations: int = 3,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Deterministic, realistic tickets; dates fall in the 90 days before `now`.

    createDate is uniform over those 90 days, so about 84% of tickets are older than 14 days.
    Every ticket has a statusUpdateDate (a "new" ticket's is its createDate) and
    createDate <= statusUpdateDate <= updateDate. Tickets go to `locations` ids, the first of
    which are LOCATIONS. `now` defaults to the start of the current UTC day so that repeated
    calls agree.
    """
    unknown = set(statuses) - set(STATUSES)
    if unknown or not statuses:
        raise ValueError(f"statuses must be a non-empty subset of {STATUSES}, got {unknown}")
    if now is None:
        now = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    location_ids = _location_ids(locations)
    rng = random.Random(seed)
    window = timedelta(days=90).total_seconds()
    tickets = []
    for number in range(1, n + 1):
        status = statuses[(number - 1) % len(statuses)]
        created = now - timedelta(seconds=rng.uniform(0, window))
        changed = created if status == "new" else created + (now - created) * rng.random()
        updated = changed + (now - changed) * rng.random()
        tickets.append(
            {
                "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "number": number,
                "locationRef": rng.choice(location_ids),
                "type": rng.choice(TICKET_TYPES),
                "status": status,
                "description": rng.choice(_DESCRIPTIONS).format(n=rng.randint(1, 12)),
                "createDate": _iso(created),
                "updateDate": _iso(updated),
                "statusUpdateDate": _iso(changed),
                "userAssignee": None,
                "userRequester": None,
            }
        )
    return tickets


def load_tickets(path: str | Path) -> list[dict[str, Any]]:
    """Read tickets from a CSV with at least an `id` column; other fields are made up."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = [
            (line, {(k or "").strip(): (v or "").strip() for k, v in row.items()})
            for line, row in enumerate(csv.DictReader(handle), start=2)
        ]
    for _, row in rows:
        row.setdefault("id", row.get("ticket_id", ""))
    rows = [(line, row) for line, row in rows if row["id"]]
    filler = make_tickets(len(rows))
    for (line, row), ticket in zip(rows, filler, strict=True):
        if not _UUID_RE.match(row["id"]):
            raise ValueError(f"{path}:{line}: id {row['id']!r} is not a UUID")
        if row.get("status") and row["status"] not in STATUSES:
            raise ValueError(f"{path}:{line}: status {row['status']!r} is not one of {STATUSES}")
        ticket.update({k: v for k, v in row.items() if k in _CSV_TEXT_FIELDS and v})
        if row.get("number", "").isdigit():
            ticket["number"] = int(row["number"])
    return filler


def write_tickets(tickets: Iterable[dict[str, Any]], path: str | Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(tickets)


# -- serving --------------------------------------------------------------------------------


@asynccontextmanager
async def serve(sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve `sim` on the running loop and yield its base URL."""
    # A short shutdown timeout keeps slow answers from holding up the end of a test.
    runner = web.AppRunner(sim.app(), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        shown_host = f"[{host}]" if ":" in host else host
        yield f"http://{shown_host}:{bound_port}"
    finally:
        await asyncio.shield(runner.cleanup())


class SimulatorThread:
    """Runs `serve` on its own loop in a daemon thread, for tests that drive a subprocess."""

    def __init__(self, sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self.host = host
        self.port = port
        self.base_url = ""
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="bulk-simulator", daemon=True)

    def __enter__(self) -> SimulatorThread:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self.sim, self.host, self.port) as base_url:
            self.base_url = base_url
            self._ready.set()
            await self._stop.wait()


def run_forever(
    sim: Simulator, host: str, port: int, *, on_ready: Callable[[str], None] | None = None
) -> None:
    """Serve until Ctrl-C or SIGTERM, then shut down cleanly and return."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            # Not available on Windows or off the main thread; Ctrl-C still ends the run below.
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        async with serve(sim, host, port) as base_url:
            if on_ready is not None:
                on_ready(base_url)
            await stop.wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


def demo_env(base_url: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A process environment for `bulk` against a simulator: the demo credentials, and
    none of the caller's own SPACEBRING_* settings (so a real account is never used)."""
    source = os.environ if environ is None else environ
    keep = {k: v for k, v in source.items() if not k.startswith("SPACEBRING_")}
    return {
        **keep,
        "SPACEBRING_BASE_URL": base_url,
        "SPACEBRING_CLIENT_ID": DEMO_CLIENT_ID,
        "SPACEBRING_CLIENT_SECRET": DEMO_CLIENT_SECRET,
    }
