"""The simulator over real loopback sockets, driven by a real aiohttp client."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from bulk import simulator as simulator_module
from bulk.cli import main as cli_main
from bulk.simulator import (
    DEMO_ACCESS_TOKEN,
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_NETWORK_ID,
    LOCATIONS,
    ORDERS,
    STATUSES,
    TICKET_TYPES,
    WINDOWS,
    SimConfig,
    Simulator,
    SimulatorThread,
    load_tickets,
    make_tickets,
    serve,
    write_tickets,
)

from ..support import FakeClock

BASIC = {"Authorization": aiohttp.encode_basic_auth(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)}
CLOSE = {"ticket": {"status": "closed"}}


def status_url(ticket_id: str) -> str:
    return f"/support/tickets/v1/{ticket_id}/status"


@asynccontextmanager
async def running(
    config: SimConfig | None = None,
    tickets: list[dict[str, Any]] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[tuple[Simulator, aiohttp.ClientSession]]:
    """A simulator (8 tickets unless given) served on loopback, and a client session to it."""
    # No rate limit unless a test asks for one, so tests never trip over it by accident.
    config = config or SimConfig(rate=None)
    tickets = make_tickets(8, seed=1) if tickets is None else tickets
    sim = Simulator(config, tickets, clock=clock)
    async with serve(sim) as base_url, aiohttp.ClientSession(base_url, headers=BASIC) as session:
        yield sim, session


def first_with(sim: Simulator, status: str) -> str:
    return next(str(t["id"]) for t in sim.tickets.values() if t["status"] == status)


async def test_put_changes_the_status_and_answers_the_documented_shape() -> None:
    async with running() as (sim, session):
        ticket_id = first_with(sim, "new")
        async with session.put(status_url(ticket_id), json=CLOSE) as resp:
            assert resp.status == 200
            assert resp.content_type == "application/json"
            body = await resp.json()
        async with session.get(f"/support/tickets/v1/{ticket_id}") as resp:
            assert resp.status == 200
            fetched = await resp.json()

    assert set(body) == {"activity", "ticket"}
    activity, ticket = body["activity"], body["ticket"]
    assert activity["type"] == "statusUpdated"
    assert activity["ticketRef"] == ticket_id
    assert activity["data"] == {"status": "closed", "previousAttributes": {"status": "new"}}
    assert uuid.UUID(activity["id"])
    assert activity["createDate"].endswith("Z")
    assert ticket["status"] == "closed"
    assert ticket["updateDate"] == ticket["statusUpdateDate"] == activity["createDate"]
    assert sim.status_of(ticket_id) == "closed"
    assert fetched == {"ticket": ticket, "activities": [activity]}
    assert sim.sent_ids() == [ticket_id]
    assert sim.sent_ids("GET") == [ticket_id]


async def test_same_status_is_accepted_but_changes_nothing() -> None:
    async with running() as (sim, session):
        ticket_id = first_with(sim, "solved")
        before = dict(sim.tickets[ticket_id])
        async with session.put(status_url(ticket_id), json={"ticket": {"status": "solved"}}) as r:
            assert r.status == 200
            body = await r.json()
    assert body["activity"]["data"]["previousAttributes"] == {"status": "solved"}
    assert body["ticket"]["updateDate"] == before["updateDate"]
    assert sim.tickets[ticket_id] == before


@pytest.mark.parametrize(
    ("path_id", "payload", "needle"),
    [
        (None, b'{"ticket": {"status": "done"}}', "closed, inProgress, new, solved"),
        (None, b'{"ticket": {"status": "closed"', "Body must be"),
        (None, b'{"ticket": {}}', "Body must be"),
        (None, b'["closed"]', "Body must be"),
        ("not-a-uuid", b'{"ticket": {"status": "closed"}}', "UUID"),
    ],
)
async def test_bad_requests_are_400(path_id: str | None, payload: bytes, needle: str) -> None:
    async with running() as (sim, session):
        ticket_id = path_id or first_with(sim, "new")
        before = {key: ticket["status"] for key, ticket in sim.tickets.items()}
        headers = {"Content-Type": "application/json"}
        async with session.put(status_url(ticket_id), data=payload, headers=headers) as resp:
            assert resp.status == 400
            body = await resp.json()
    assert body["type"] == "badRequest"
    assert needle in body["message"]
    assert {key: ticket["status"] for key, ticket in sim.tickets.items()} == before


async def test_unknown_ticket_and_unknown_route_are_json_404() -> None:
    missing = str(uuid.uuid4())
    async with running() as (_, session):
        async with session.put(status_url(missing), json=CLOSE) as resp:
            assert resp.status == 404
            assert await resp.json() == {
                "message": f"Ticket {missing} not found",
                "type": "notFound",
            }
        async with session.get("/support/nothing/here") as resp:
            assert resp.status == 404
            assert (await resp.json())["type"] == "notFound"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, 401),
        ({"Authorization": aiohttp.encode_basic_auth(DEMO_CLIENT_ID, "wrong")}, 401),
        ({"Authorization": "Basic %%%not-base64"}, 401),
        ({"Authorization": f"Bearer {DEMO_ACCESS_TOKEN}"}, 401),
        (
            {
                "Authorization": f"Bearer {DEMO_ACCESS_TOKEN}",
                "spacebring-network-id": str(uuid.uuid4()),
            },
            401,
        ),
        (
            {
                "Authorization": f"Bearer {DEMO_ACCESS_TOKEN}",
                "spacebring-network-id": DEMO_NETWORK_ID,
            },
            200,
        ),
        ({"Authorization": aiohttp.encode_basic_auth(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)}, 200),
    ],
)
async def test_auth(headers: dict[str, str], expected: int) -> None:
    sim = Simulator(SimConfig(rate=None), make_tickets(1))
    ticket_id = next(iter(sim.tickets))
    async with (
        serve(sim) as base_url,
        aiohttp.ClientSession(base_url) as session,
        session.put(status_url(ticket_id), json=CLOSE, headers=headers) as resp,
    ):
        assert resp.status == expected
        body = await resp.json()
    if expected == 401:
        assert body["type"] == "unauthorized"
        assert sim.status_of(ticket_id) == "new"
    [logged] = sim.requests
    assert logged.status == expected
    # What the simulator keeps must not hold the secret part of the credentials.
    assert DEMO_CLIENT_SECRET not in repr(logged)
    assert DEMO_ACCESS_TOKEN not in repr(logged)


async def test_credentials_are_checked_at_request_time() -> None:
    async with running() as (sim, session):
        ticket_id = first_with(sim, "new")
        sim.config.client_secret = "rotated"
        async with session.put(status_url(ticket_id), json=CLOSE) as resp:
            assert resp.status == 401
    assert [r.status for r in sim.requests] == [401]


async def test_rate_limit_answers_429_with_optional_retry_after() -> None:
    sim = Simulator(SimConfig(rate=2, burst=1, retry_after=True), make_tickets(6))
    ids = list(sim.tickets)
    bearer = {
        "Authorization": f"Bearer {DEMO_ACCESS_TOKEN}",
        "spacebring-network-id": DEMO_NETWORK_ID,
    }
    async with serve(sim) as base_url, aiohttp.ClientSession(base_url) as session:
        answers = []
        for ticket_id in ids[:3]:
            async with session.put(status_url(ticket_id), json=CLOSE, headers=BASIC) as resp:
                answers.append((resp.status, resp.headers.get("Retry-After"), await resp.json()))
        # Another client identity has a bucket of its own.
        async with session.put(status_url(ids[3]), json=CLOSE, headers=bearer) as resp:
            assert resp.status == 200
        sim.config.retry_after = False
        async with session.put(status_url(ids[4]), json=CLOSE, headers=BASIC) as resp:
            assert resp.status == 429
            assert "Retry-After" not in resp.headers

    assert [(status, retry) for status, retry, _ in answers] == [
        (200, None),
        (429, "1"),
        (429, "1"),
    ]
    assert answers[1][2] == {"message": "Rate limit exceeded", "type": "tooManyRequests"}
    assert [r.status for r in sim.requests] == [200, 429, 429, 200, 429]
    assert [sim.status_of(i) for i in ids[:3]] == ["closed", "inProgress", "solved"]


async def test_dropped_connection_is_a_client_side_disconnect() -> None:
    async with running(SimConfig(rate=None, drop_rate=1.0)) as (sim, session):
        ticket_id = first_with(sim, "new")
        with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
            async with session.put(status_url(ticket_id), json=CLOSE) as resp:
                await resp.read()
    # aiohttp's client quietly resends an idempotent PUT once after a disconnect, so the
    # server may see two requests for one call; each was dropped.
    assert {r.status for r in sim.requests} == {0}
    assert sim.status_of(ticket_id) == "new"


async def test_error_rate_gives_json_5xx_and_is_repeatable_with_a_seed() -> None:
    seen: list[list[int]] = []
    for _ in range(2):
        async with running(SimConfig(rate=None, error_rate=1.0, seed=7)) as (sim, session):
            ticket_id = first_with(sim, "new")
            codes = []
            for _ in range(6):
                async with session.put(status_url(ticket_id), json=CLOSE) as resp:
                    codes.append(resp.status)
                    assert (await resp.json())["type"] == "internal"
            assert sim.status_of(ticket_id) == "new"
            seen.append(codes)
    assert set(seen[0]) <= {500, 502, 503}
    assert seen[0] == seen[1]


async def test_latency_and_slow_answers_delay_the_reply() -> None:
    config = SimConfig(rate=None, latency=0.05, slow_rate=1.0, slow_seconds=0.1)
    async with running(config) as (sim, session):
        started = time.monotonic()
        async with session.put(status_url(first_with(sim, "new")), json=CLOSE) as resp:
            assert resp.status == 200
        assert time.monotonic() - started >= 0.15


def test_simulator_thread_serves_sync_callers() -> None:
    sim = Simulator(tickets=make_tickets(2, seed=3))
    ticket_id = next(iter(sim.tickets))
    with SimulatorThread(sim) as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        request = urllib.request.Request(
            server.base_url + status_url(ticket_id),
            data=json.dumps({"ticket": {"status": "inProgress"}}).encode(),
            method="PUT",
            headers={
                "Authorization": aiohttp.encode_basic_auth(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET),
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 200
            assert json.load(resp)["ticket"]["status"] == "inProgress"
        assert sim.status_of(ticket_id) == "inProgress"
        assert sim.sent_ids() == [ticket_id]
    assert sim.requests[0].headers["content-type"] == "application/json"


def test_make_tickets_is_deterministic_and_realistic() -> None:
    tickets = make_tickets(40, seed=5)
    assert tickets == make_tickets(40, seed=5)
    assert [t["id"] for t in tickets] != [t["id"] for t in make_tickets(40, seed=6)]
    assert [t["number"] for t in tickets] == list(range(1, 41))
    assert {t["status"] for t in tickets} == set(STATUSES)
    assert len({t["locationRef"] for t in tickets}) == 3
    for ticket in tickets:
        assert uuid.UUID(ticket["id"]).version == 4
        assert ticket["type"] in TICKET_TYPES
        assert ticket["description"]
        dates = [ticket[k] for k in ("createDate", "statusUpdateDate", "updateDate")]
        assert all(d.endswith("Z") for d in dates)
        assert dates == sorted(dates)
        assert (datetime.now().astimezone() - datetime.fromisoformat(dates[0])).days <= 91
    assert {t["status"] for t in make_tickets(5, statuses=["closed"])} == {"closed"}
    with pytest.raises(ValueError):
        make_tickets(1, statuses=["done"])


def test_make_tickets_keeps_its_ids_and_statuses_and_uses_the_fixed_locations() -> None:
    # Tests elsewhere rely on what a seed produces; this pins it.
    assert [(t["id"], t["status"], t["locationRef"]) for t in make_tickets(4, seed=0)] == [
        ("f728b4fa-4248-4e3a-8a5d-2f346baa9455", "new", LOCATIONS[2]),
        ("48268673-23a7-411a-8133-287637ebdcd9", "inProgress", LOCATIONS[0]),
        ("e6f4590b-9a16-4106-8f6a-659eb4862b21", "solved", LOCATIONS[0]),
        ("6f25e2a2-5a92-4187-99c7-8df48f4ff31e", "closed", LOCATIONS[1]),
    ]
    assert len(set(LOCATIONS)) == len(LOCATIONS) == 3
    assert {t["locationRef"] for t in make_tickets(60, seed=5)} == set(LOCATIONS)
    assert {t["locationRef"] for t in make_tickets(30, locations=1)} == {LOCATIONS[0]}
    assert {t["locationRef"] for t in make_tickets(30, locations=2)} == set(LOCATIONS[:2])
    assert set(LOCATIONS) < {t["locationRef"] for t in make_tickets(60, locations=5)}


def test_make_tickets_dates_spread_over_90_days() -> None:
    now = datetime(2025, 3, 1, tzinfo=UTC)
    tickets = make_tickets(300, seed=8, now=now)
    cutoff = now - timedelta(days=14)
    for name in ("createDate", "updateDate", "statusUpdateDate"):
        moments = [datetime.fromisoformat(t[name]) for t in tickets]
        assert all(now - timedelta(days=90) <= m <= now for m in moments)
        older = sum(m < cutoff for m in moments)
        # "Older than 14 days" is a real subset, whichever date a job goes by.
        assert 0.3 * len(tickets) < older < len(tickets)
    for ticket in tickets:
        if ticket["status"] == "new":
            assert ticket["statusUpdateDate"] == ticket["createDate"]


def test_tickets_round_trip_through_csv(tmp_path: Path) -> None:
    tickets = make_tickets(5, seed=2)
    path = tmp_path / "tickets.csv"
    write_tickets(tickets, path)
    loaded = load_tickets(path)
    columns = ("id", "status", "locationRef", "type", "createDate", "updateDate")
    assert [{k: t[k] for k in columns} for t in loaded] == [
        {k: t[k] for k in columns} for t in tickets
    ]

    ticket_id = str(uuid.uuid4())
    (tmp_path / "ids.csv").write_text(f"id\n{ticket_id}\n\n")
    [filled] = load_tickets(tmp_path / "ids.csv")
    assert filled["id"] == ticket_id
    assert filled["status"] in STATUSES
    assert Simulator(tickets=[filled]).status_of(ticket_id) == filled["status"]

    (tmp_path / "bad.csv").write_text("id,status\nnot-a-uuid,new\n")
    with pytest.raises(ValueError, match=r"bad\.csv:2"):
        load_tickets(tmp_path / "bad.csv")


# -- rate-limit windows and scheduled changes, on a fake clock ----------------------------------


@asynccontextmanager
async def clocked(
    config: SimConfig,
) -> AsyncIterator[tuple[Simulator, aiohttp.ClientSession, FakeClock]]:
    clock = FakeClock(1000.0)
    async with running(config, make_tickets(2, seed=1), clock) as (sim, session):
        yield sim, session, clock


async def gets(
    sim: Simulator, session: aiohttp.ClientSession, n: int
) -> list[tuple[int, str | None]]:
    """Send n GETs one after another; (status, Retry-After) of each."""
    ticket_id = next(iter(sim.tickets))
    answers = []
    for _ in range(n):
        async with session.get(f"/support/tickets/v1/{ticket_id}") as resp:
            await resp.read()
            answers.append((resp.status, resp.headers.get("Retry-After")))
    return answers


def ok(n: int) -> list[tuple[int, str | None]]:
    return [(200, None)] * n


async def test_fixed_window_allows_rate_per_second_counted_from_the_start() -> None:
    # A fractional rate counts as its floor: 20 a second.
    async with clocked(SimConfig(rate=20.9, window="fixed", retry_after=True)) as (sim, s, clock):
        start = clock.now
        clock.now = start + 0.25
        assert await gets(sim, s, 22) == [*ok(20), (429, "1"), (429, "1")]
        clock.now = start + 0.75
        assert await gets(sim, s, 1) == [(429, "1")]
        # A new window resets the count, even right after a full one: 40 within 0.25 s.
        clock.now = start + 1.0
        assert await gets(sim, s, 21) == [*ok(20), (429, "1")]
        clock.now = start + 1.75
        assert await gets(sim, s, 1) == [(429, "1")]
        clock.now = start + 2.0
        assert await gets(sim, s, 1) == ok(1)
    assert sim.status_counts() == {200: 41, 429: 5}


async def test_sliding_window_counts_any_trailing_second() -> None:
    async with clocked(SimConfig(rate=20, window="sliding", retry_after=True)) as (sim, s, clock):
        start = clock.now
        assert await gets(sim, s, 10) == ok(10)
        clock.now = start + 0.5
        assert await gets(sim, s, 11) == [*ok(10), (429, "1")]
        # Unlike a fixed window, the second boundary frees nothing ...
        clock.now = start + 0.75
        assert await gets(sim, s, 1) == [(429, "1")]
        # ... only the oldest requests leaving the trailing second do.
        clock.now = start + 1.0
        assert await gets(sim, s, 11) == [*ok(10), (429, "1")]
        clock.now = start + 1.25
        assert await gets(sim, s, 1) == [(429, "1")]
        clock.now = start + 1.5
        assert await gets(sim, s, 11) == [*ok(10), (429, "1")]
    assert sim.status_counts() == {200: 40, 429: 5}


@pytest.mark.parametrize("window", WINDOWS)
async def test_lowering_the_rate_mid_run_takes_effect_at_once(window: str) -> None:
    async with clocked(SimConfig(rate=40, window=window)) as (sim, s, clock):
        assert await gets(sim, s, 10) == ok(10)
        sim.config.rate = 5
        if window != "bucket":
            # 10 already went through in this second, more than the new limit.
            assert [status for status, _ in await gets(sim, s, 1)] == [429]
        # The bucket's 30 saved tokens are cut to the new capacity, not spent first.
        clock.now += 1.0
        assert [status for status, _ in await gets(sim, s, 8)] == [200] * 5 + [429] * 3
        sim.config.rate = None
        assert await gets(sim, s, 3) == ok(3)


async def test_changing_the_window_mid_run_takes_effect_at_once() -> None:
    async with clocked(SimConfig(rate=20, burst=1)) as (sim, s, _):
        assert [status for status, _ in await gets(sim, s, 2)] == [200, 429]
        sim.config.window = "fixed"
        assert [status for status, _ in await gets(sim, s, 21)] == [200] * 20 + [429]


async def test_schedule_applies_each_change_once_after_its_delay() -> None:
    changes: list[tuple[float, dict[str, Any]]] = [
        (5.0, {"rate": 2}),
        (10.0, {"client_secret": "revoked"}),
    ]
    config = SimConfig(rate=20, window="fixed", schedule=changes)
    async with clocked(config) as (sim, s, clock):
        clock.now += 7.0  # the schedule counts from the first request, not from the start
        first = clock.now
        assert await gets(sim, s, 1) == ok(1)
        clock.now = first + 4.5
        assert await gets(sim, s, 10) == ok(10)
        assert sim.config.rate == 20
        clock.now = first + 5.0
        assert [status for status, _ in await gets(sim, s, 3)] == [200, 200, 429]
        assert sim.config.rate == 2
        # Applied once: a rate set by hand afterwards is not overwritten.
        sim.config.rate = 20
        clock.now = first + 6.0
        assert await gets(sim, s, 5) == ok(5)
        clock.now = first + 10.0
        assert [status for status, _ in await gets(sim, s, 2)] == [401, 401]
        assert sim.config.client_secret == "revoked"
        assert sim.config.rate == 20
    assert sim.status_counts() == {200: 18, 401: 2, 429: 1}


async def test_schedule_on_the_real_clock_revokes_the_credentials() -> None:
    config = SimConfig(rate=None, schedule=[(0.05, {"client_secret": "revoked"})])
    async with running(config) as (sim, session):
        assert [status for status, _ in await gets(sim, session, 1)] == [200]
        await asyncio.sleep(0.06)
        answers = await gets(sim, session, 2)
    assert [status for status, _ in answers] == [401, 401]
    assert sim.status_counts() == {200: 1, 401: 2}


def test_config_rejects_unknown_windows_and_scheduled_fields() -> None:
    with pytest.raises(ValueError, match="window"):
        SimConfig(window="leaky")
    with pytest.raises(ValueError, match="SimConfig fields"):
        SimConfig(schedule=[(1.0, {"rates": 5})])
    with pytest.raises(ValueError, match="window"):
        SimConfig(schedule=[(1.0, {"window": "leaky"})])


def invoke_simulate(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[Any, list[Simulator]]:
    served: list[Simulator] = []

    def fake_run_forever(sim: Simulator, host: str, port: int, **_: Any) -> None:
        served.append(sim)

    monkeypatch.setattr(simulator_module, "run_forever", fake_run_forever)
    result = CliRunner().invoke(cli_main, ["simulate", "--tickets", "3", *args])
    return result, served


def test_simulate_cli_builds_the_window_and_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    args = ("--window", "sliding", "--rate-after", "30:5", "--rate-after", "10:unlimited")
    result, served = invoke_simulate(monkeypatch, *args, "--revoke-after", "45")
    assert result.exit_code == 0, result.output
    [sim] = served
    assert sim.config.window == "sliding"
    assert sim.config.schedule == [
        (10.0, {"rate": None}),
        (30.0, {"rate": 5.0}),
        (45.0, {"client_secret": "revoked", "access_token": "revoked"}),
    ]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--rate-after", "30"), "--rate-after"),
        (("--rate-after", "soon:5"), "--rate-after"),
        (("--rate-after", "-1:5"), "--rate-after"),
        (("--rate-after", "30:fast"), "--rate-after"),
        (("--rate-after", "30:-2"), "--rate-after"),
        (("--rate-after", "30:auto"), "--rate-after"),
        (("--rate", "auto"), "--rate"),
        (("--revoke-after", "-3"), "--revoke-after"),
        (("--revoke-after", "later"), "--revoke-after"),
        (("--window", "leaky"), "--window"),
    ],
)
def test_simulate_cli_rejects_bad_schedules(
    monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], needle: str
) -> None:
    result, served = invoke_simulate(monkeypatch, *args)
    assert result.exit_code == 2
    assert needle in result.output
    assert not served


# -- the listing ---------------------------------------------------------------------------------

LIST = "/support/tickets/v1"


def expected_ids(sim: Simulator, location: str, order: str) -> list[str]:
    """The location's ids in `order`, computed independently of the simulator's code."""
    field, direction = order.split(":")
    mine = [t for t in sim.tickets.values() if t["locationRef"] == location]
    # All dates here share one ISO shape, so they sort as strings.
    mine.sort(key=lambda t: (t[field], t["id"]), reverse=direction == "desc")
    return [t["id"] for t in mine]


async def list_page(
    session: aiohttp.ClientSession, params: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    async with session.get(LIST, params=params) as resp:
        assert resp.content_type == "application/json"
        body: dict[str, Any] = await resp.json()
        return resp.status, body


async def list_all(
    session: aiohttp.ClientSession,
    location: str,
    order: str,
    limit: int,
    between: Callable[[int], Awaitable[None]] | None = None,
) -> list[list[dict[str, Any]]]:
    """Every page, following nextPageToken; `between(pages so far)` runs before each next one."""
    pages: list[list[dict[str, Any]]] = []
    params = {"locationRef": location, "order": order, "limit": str(limit)}
    while True:
        status, body = await list_page(session, params)
        assert status == 200, body
        assert set(body) <= {"tickets", "nextPageToken"}
        pages.append(body["tickets"])
        if "nextPageToken" not in body:
            return pages
        assert isinstance(body["nextPageToken"], str) and body["nextPageToken"]
        params = {**params, "nextPageToken": body["nextPageToken"]}
        if between is not None:
            await between(len(pages))


def listing(
    n: int = 150, config: SimConfig | None = None
) -> AbstractAsyncContextManager[tuple[Simulator, aiohttp.ClientSession]]:
    return running(config, make_tickets(n, seed=9))


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("limit", [100, 7])
async def test_listing_pages_through_each_ticket_of_a_location_once(order: str, limit: int) -> None:
    async with listing() as (sim, session):
        seen: list[str] = []
        for location in LOCATIONS:
            pages = await list_all(session, location, order, limit)
            ids = [t["id"] for page in pages for t in page]
            assert ids == expected_ids(sim, location, order)
            assert 7 < len(ids) < 100  # so limit 7 pages and limit 100 does not
            assert all(len(page) == limit for page in pages[:-1])
            assert 1 <= len(pages[-1]) <= limit
            assert len(pages) == (1 if limit == 100 else math.ceil(len(ids) / limit))
            assert all(t == sim.tickets[t["id"]] for page in pages for t in page)
            seen += ids
    assert sorted(seen) == sorted(sim.tickets)
    assert {(r.path, r.ticket_id, r.status) for r in sim.requests} == {(LIST, None, 200)}
    assert all("locationRef=" in r.query for r in sim.requests)
    assert sim.sent_ids("GET") == []


async def test_listing_defaults_to_25_newest_first_and_ignores_id_case() -> None:
    async with listing() as (sim, session):
        location = LOCATIONS[1]
        status, body = await list_page(session, {"locationRef": location.upper()})
        assert status == 200
        assert [t["id"] for t in body["tickets"]] == expected_ids(sim, location, ORDERS[1])[:25]
        assert "nextPageToken" in body
        status, empty = await list_page(session, {"locationRef": str(uuid.uuid4())})
        assert (status, empty) == (200, {"tickets": []})


async def test_listing_filters_by_assignee_and_requester() -> None:
    user, member = str(uuid.uuid4()), str(uuid.uuid4())
    async with listing(20) as (sim, session):
        ids = expected_ids(sim, LOCATIONS[0], "createDate:asc")
        sim.tickets[ids[0]]["userRefAssignee"] = user
        sim.tickets[ids[1]]["userRefAssignee"] = user
        sim.tickets[ids[1]]["membershipRefRequester"] = member
        params = {"locationRef": LOCATIONS[0], "order": "createDate:asc"}
        answers = []
        for filters in (
            {"userRefAssignee": user},
            {"userRefAssignee": f"{uuid.uuid4()},{user.upper()}"},
            {"userRefAssignee": user, "membershipRefRequester": member},
            {"membershipRefRequester": str(uuid.uuid4())},
        ):
            status, body = await list_page(session, {**params, **filters})
            answers.append((status, [t["id"] for t in body["tickets"]]))
    assert answers == [(200, ids[:2]), (200, ids[:2]), (200, ids[1:2]), (200, [])]


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({}, "locationRef is required"),
        ({"locationRef": "not-a-uuid"}, "locationRef"),
        ({"locationRef": LOCATIONS[0] + "\n"}, "locationRef"),
        ({"locationRef": LOCATIONS[0], "limit": "0"}, "limit"),
        ({"locationRef": LOCATIONS[0], "limit": "101"}, "limit"),
        ({"locationRef": LOCATIONS[0], "limit": "-1"}, "limit"),
        ({"locationRef": LOCATIONS[0], "limit": "ten"}, "limit"),
        ({"locationRef": LOCATIONS[0], "limit": ""}, "limit"),
        ({"locationRef": LOCATIONS[0], "order": "createDate"}, "order"),
        ({"locationRef": LOCATIONS[0], "order": "createdate:asc"}, "order"),
        ({"locationRef": LOCATIONS[0], "order": "number:asc"}, "order"),
        ({"locationRef": LOCATIONS[0], "nextPageToken": ""}, "nextPageToken"),
        ({"locationRef": LOCATIONS[0], "nextPageToken": "not a token!"}, "nextPageToken"),
        ({"locationRef": LOCATIONS[0], "nextPageToken": "Z2FyYmFnZQ"}, "nextPageToken"),
        ({"locationRef": LOCATIONS[0], "nextPageToken": "25"}, "nextPageToken"),
        ({"locationRef": LOCATIONS[0], "userRefAssignee": "me"}, "userRefAssignee"),
        ({"locationRef": LOCATIONS[0], "membershipRefRequester": ""}, "membershipRefRequester"),
    ],
)
async def test_bad_listing_requests_are_400(params: dict[str, str], needle: str) -> None:
    async with listing(20) as (sim, session):
        status, body = await list_page(session, params)
    assert status == 400
    assert body["type"] == "badRequest"
    assert needle in body["message"]
    assert set(body) == {"message", "type"}
    [logged] = sim.requests
    assert (logged.path, logged.ticket_id, logged.status) == (LIST, None, 400)


def forged(payload: Any) -> str:
    raw = json.dumps(payload).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_tokens_are_opaque_positions_bound_to_their_location_and_order() -> None:
    async with listing() as (sim, session):
        location, order = LOCATIONS[0], "createDate:asc"
        params = {"locationRef": location, "order": order, "limit": "3"}
        _, first = await list_page(session, params)
        token = first["nextPageToken"]
        # The token is a position, not an offset: it holds the last ticket's id.
        padded = token + "=" * (-len(token) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded))
        assert decoded["k"][1] == first["tickets"][-1]["id"]
        status, second = await list_page(session, {**params, "nextPageToken": token})
        assert status == 200
        assert [t["id"] for t in second["tickets"]] == expected_ids(sim, location, order)[3:6]
        # The limit may change from page to page.
        status, _ = await list_page(session, {**params, "limit": "50", "nextPageToken": token})
        assert status == 200

        bad_tokens = [
            forged({**decoded, "o": "createDate:desc"}),
            forged({**decoded, "k": [str(decoded["k"][0]), decoded["k"][1]]}),
            forged({**decoded, "k": [True, decoded["k"][1]]}),
            forged({**decoded, "k": decoded["k"][:1]}),
            forged({**decoded, "extra": 1}),
            forged([decoded]),
            token[:-3],
        ]
        answers = [
            (await list_page(session, {**params, "nextPageToken": bad}))[0] for bad in bad_tokens
        ]
        # The same token with another order or location is refused too.
        for other in ({"order": "createDate:desc"}, {"locationRef": LOCATIONS[1]}):
            answers.append(
                (await list_page(session, {**params, **other, "nextPageToken": token}))[0]
            )
    assert answers == [400] * (len(bad_tokens) + 2)


async def put_status(session: aiohttp.ClientSession, ticket_id: str, status: str) -> None:
    async with session.put(status_url(ticket_id), json={"ticket": {"status": status}}) as resp:
        assert resp.status == 200


def next_status(sim: Simulator, ticket_id: str) -> str:
    return STATUSES[(STATUSES.index(sim.status_of(ticket_id)) + 1) % len(STATUSES)]


@pytest.mark.parametrize("order", ["createDate:asc", "createDate:desc"])
async def test_status_changes_between_pages_neither_repeat_nor_skip_by_create_date(
    order: str,
) -> None:
    location = LOCATIONS[2]
    async with listing() as (sim, session):
        before = expected_ids(sim, location, order)
        updated_before = {i: sim.tickets[i]["updateDate"] for i in before}

        async def change(pages: int) -> None:
            # One ticket already returned and two still to come; updateDate moves for all.
            for ticket_id in {before[pages * 5 - 1], *before[pages * 5 : pages * 5 + 2]}:
                await put_status(session, ticket_id, next_status(sim, ticket_id))

        pages = await list_all(session, location, order, 5, between=change)
    assert [t["id"] for page in pages for t in page] == before
    assert len(pages) > 3
    assert sum(sim.tickets[i]["updateDate"] != updated_before[i] for i in before) > 3


async def test_listing_while_changing_by_create_date_is_exact() -> None:
    location = LOCATIONS[0]
    async with listing() as (sim, session):
        order = "createDate:desc"
        before = expected_ids(sim, location, order)

        async def close_all() -> None:
            for ticket_id in reversed(before):
                await put_status(session, ticket_id, "closed")
                await asyncio.sleep(0)

        pages, _ = await asyncio.gather(list_all(session, location, order, 3), close_all())
    assert [t["id"] for page in pages for t in page] == before
    assert {sim.status_of(i) for i in before} == {"closed"}


async def test_by_update_date_a_changed_ticket_moves_to_the_end() -> None:
    # The documented limit of updateDate orders: a ticket changed mid-listing gets the newest
    # updateDate. Ascending, one already returned comes again at the end; descending, one not
    # yet reached jumps ahead of the cursor and is not returned.
    location = LOCATIONS[1]
    async with listing() as (sim, session):
        ascending = expected_ids(sim, location, "updateDate:asc")

        async def change_returned(_: int) -> None:
            await put_status(session, ascending[0], next_status(sim, ascending[0]))

        up = await list_all(session, location, "updateDate:asc", 10, between=change_returned)
        descending = expected_ids(sim, location, "updateDate:desc")

        async def change_ahead(_: int) -> None:
            await put_status(session, descending[-1], next_status(sim, descending[-1]))

        down = await list_all(session, location, "updateDate:desc", 10, between=change_ahead)
    up_ids = [t["id"] for page in up for t in page]
    assert up_ids[: len(ascending)] == ascending
    # Changed again before every following page, it is returned once more at the very end.
    assert up_ids[len(ascending) :] == [ascending[0]]
    assert [t["id"] for page in down for t in page] == descending[:-1]


async def test_listing_shares_the_rate_limit_and_the_faults() -> None:
    params = {"locationRef": LOCATIONS[0]}
    clock = FakeClock(1000.0)
    sim = Simulator(SimConfig(rate=2, burst=1), make_tickets(20, seed=9), clock=clock)
    async with serve(sim) as base_url, aiohttp.ClientSession(base_url, headers=BASIC) as session:
        ticket_id = next(iter(sim.tickets))
        first, _ = await list_page(session, params)
        second, body = await list_page(session, params)
        async with session.put(status_url(ticket_id), json=CLOSE) as resp:
            third = resp.status
        assert (first, second, third) == (200, 429, 429)
        assert body == {"message": "Rate limit exceeded", "type": "tooManyRequests"}
        clock.now += 0.5  # one token at 2 a second
        async with session.put(status_url(ticket_id), json=CLOSE) as resp:
            assert resp.status == 200
        assert (await list_page(session, params))[0] == 429
    assert [(r.ticket_id, r.status) for r in sim.requests] == [
        (None, 200),
        (None, 429),
        (ticket_id, 429),
        (ticket_id, 200),
        (None, 429),
    ]

    async with listing(20, SimConfig(rate=None, error_rate=1.0, seed=3)) as (sim, session):
        status, body = await list_page(session, params)
        assert status in (500, 502, 503)
        assert body["type"] == "internal"
    async with listing(20, SimConfig(rate=None, drop_rate=1.0)) as (sim, session):
        with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
            await list_page(session, params)
    assert {r.status for r in sim.requests} == {0}


async def test_listing_needs_credentials() -> None:
    sim = Simulator(SimConfig(rate=None), make_tickets(5))
    async with (
        serve(sim) as base_url,
        aiohttp.ClientSession(base_url) as session,
        session.get(LIST, params={"locationRef": LOCATIONS[0]}) as resp,
    ):
        assert resp.status == 401
        assert (await resp.json())["type"] == "unauthorized"
