"""The API's state and behaviour (Simulator) and the aiohttp routes that serve it.

It serves the status PUT, the ticket GET and the listing GET with the shapes of
spec/spacebring-openapi-support.json, behind the documented auth schemes and the per-client
rate limit, with optional latency and faults (5xx, dropped connections, slow answers) so
retries and resumes can be exercised on loopback.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import math
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ._agent import Agent
from ._changes import ChangeRoutes
from ._config import SimConfig
from ._http import IDENTITY
from ._http import error_answer as _error
from ._http import json_answer as _json
from ._limits import RateLimiter, Schedule
from ._oauth import TOKEN_PATH, TokenIssuer
from ._paging import BadQuery, read_query, select_page
from ._tickets import STATUSES, TICKET_FIELDS, UUID_RE, iso

__all__ = ["LoggedRequest", "Simulator"]

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _drop(request: web.Request) -> None:
    """Closes the connection without an answer (the middleware then writes nothing)."""
    if request.transport is not None:
        request.transport.close()


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


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


class Simulator(ChangeRoutes):
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
        self._comment_ticket: dict[str, str] = {}
        self.oauth = TokenIssuer(lambda: self.config, clock)
        self._limits = RateLimiter(started=clock())
        # Background requests "admitted" / "refused" (SimConfig.background_rate).
        self.background: Counter[str] = self._limits.background
        self._schedule = Schedule()
        self._rng = random.Random(self.config.seed)
        self.agent = Agent(self.config.seed)
        # Handlers run on the server loop while tests may read from another thread.
        self._lock = threading.Lock()
        for ticket in tickets or ():
            self.add_ticket(ticket)

    def add_ticket(self, ticket: dict[str, Any]) -> None:
        clean = {k: v for k, v in ticket.items() if k in TICKET_FIELDS}
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

    def agent_sets(self, ticket_id: str, status: str) -> None:
        """An agent sets a ticket's status now, as the web app would between bulk's requests."""
        with self._lock:
            self.agent.set_status(self.tickets, ticket_id.lower(), status)

    def reopen(self, share: float) -> list[str]:
        """The agent reopens `share` of the tickets PUTs changed, now; their ids."""
        with self._lock:
            return self.agent.reopen(self.tickets, share)

    def app(self) -> web.Application:
        # Fixed rate-limit windows are counted from here, when serving starts.
        self._limits.started = self._clock()
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/support/tickets/v1", self._list_tickets)
        app.router.add_put("/support/tickets/v1/{id}/status", self._put_status)
        app.router.add_get("/support/tickets/v1/{id}", self._get_ticket)
        app.router.add_post(TOKEN_PATH, self.oauth.answer)
        self.add_change_routes(app)
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
        self._schedule.apply(self.config, now)
        cfg = self.config
        if request.path == TOKEN_PATH:
            return await handler(request)
        share = self.agent.due(cfg.agent_reopen, now)
        if share is not None:
            self.reopen(share)
        identity = self._identity(request)
        if identity is None:
            return _error(401, "unauthorized", "Missing or invalid credentials")
        request[IDENTITY] = identity
        wait = self._limits.limit(cfg, identity, now)
        if wait > 0:
            headers = {"Retry-After": str(max(1, math.ceil(wait)))} if cfg.retry_after else None
            return _error(429, "tooManyRequests", "Rate limit exceeded", headers)
        rng = self._rng
        if cfg.drop_rate > 0 and rng.random() < cfg.drop_rate:
            _drop(request)
            return None
        if cfg.error_rate > 0 and rng.random() < cfg.error_rate:
            return _error(rng.choice((500, 502, 503)), "internal", "Internal server error")
        if cfg.slow_rate > 0 and rng.random() < cfg.slow_rate:
            await asyncio.sleep(cfg.slow_seconds)
        delay = cfg.latency + (rng.uniform(0, cfg.jitter) if cfg.jitter > 0 else 0)
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            # Unknown routes and wrong methods must be JSON like every other error.
            kind = {404: "notFound", 405: "methodNotAllowed"}.get(exc.status, "badRequest")
            return _error(exc.status, kind, exc.reason)
        return self._after(request, response)

    def _after(
        self, request: web.Request, response: web.StreamResponse
    ) -> web.StreamResponse | None:
        """A write's answer, or its loss after the work was done (SimConfig.*_after_rate)."""
        cfg, rng = self.config, self._rng
        if request.method == "GET" or response.status >= 400:
            return response
        if cfg.drop_after_rate > 0 and rng.random() < cfg.drop_after_rate:
            _drop(request)
            return None
        if cfg.error_after_rate > 0 and rng.random() < cfg.error_after_rate:
            return _error(rng.choice((500, 502, 503)), "internal", "Internal server error")
        return response

    async def _log(self, request: web.Request) -> LoggedRequest:
        headers = {k.lower(): v for k, v in request.headers.items()}
        if "authorization" in headers:
            headers["authorization"] = headers["authorization"].split(" ", 1)[0] + " [redacted]"
        entry = LoggedRequest(
            method=request.method,
            path=request.path,
            ticket_id=request.match_info.get("id"),
            status=0,
            # A token request's form holds the client secret and the refresh token.
            body=b"[redacted]" if request.path == TOKEN_PATH else await request.read(),
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
            network = _same(request.headers.get("spacebring-network-id", ""), cfg.network_id)
            if self.oauth.valid(value):
                # One client however often its token changes: the limit is per client.
                return "oauth:" + cfg.client_id if network else None
            ok = _same(value, cfg.access_token) & network
            return "bearer:" + value if ok else None
        return None

    # -- the API ----------------------------------------------------------------------------

    def _check_id(self, request: web.Request) -> web.Response | None:
        ticket_id = request.match_info["id"]
        if not UUID_RE.match(ticket_id):
            return _error(400, "badRequest", f"Invalid ticket id {ticket_id!r}: expected a UUID")
        if ticket_id.lower() not in self.tickets:
            if self.config.unknown_400:
                return _error(400, "badRequest", f"Unknown ticket {ticket_id}")
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
        now = iso(datetime.now(UTC))
        with self._lock:
            ticket = self.tickets[key]
            if ticket["status"] == new and self.config.same_status_400:
                return _error(400, "badRequest", f"Ticket already has status {new}")
            activity = {
                "id": str(uuid.uuid4()),
                "createDate": now,
                "ticketRef": ticket["id"],
                "type": "statusUpdated",
                "data": {"status": new, "previousAttributes": {"status": ticket["status"]}},
            }
            if ticket["status"] != new:
                ticket.update(status=new, statusUpdateDate=now, updateDate=now)
                self.agent.note_change(key)
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
        """One page of a location's tickets, keyset-paginated (see _paging)."""
        try:
            query = read_query(request.query)
        except BadQuery as exc:
            return _error(400, "badRequest", str(exc))
        with self._lock:
            return _json(200, select_page(self.tickets, query))
