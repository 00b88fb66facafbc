"""The simulator's changes besides status (assignee, type, comments), its lost-answer faults
and its OAuth2 token endpoint, over real loopback sockets with a real aiohttp client."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from bulk.simulator import (
    COMMENT_PATH,
    DEMO_ACCESS_TOKEN,
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_NETWORK_ID,
    DEMO_REFRESH_TOKEN,
    DEMO_USER_ID,
    TOKEN_PATH,
    SimConfig,
    Simulator,
    make_tickets,
    serve,
)

from ..support import FakeClock

BASIC = {"Authorization": aiohttp.encode_basic_auth(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)}
BEARER = {"Authorization": f"Bearer {DEMO_ACCESS_TOKEN}", "spacebring-network-id": DEMO_NETWORK_ID}
USER_A, USER_B = str(uuid.uuid4()), str(uuid.uuid4())


@asynccontextmanager
async def running(
    config: SimConfig | None = None, clock: FakeClock | None = None
) -> AsyncIterator[tuple[Simulator, aiohttp.ClientSession, str]]:
    """A simulator with 4 tickets on loopback, a session to it, and its first ticket's id."""
    sim = Simulator(
        config or SimConfig(rate=None), make_tickets(4, seed=3), clock=clock or FakeClock()
    )
    async with serve(sim) as base_url, aiohttp.ClientSession(base_url) as session:
        yield sim, session, next(iter(sim.tickets))


async def call(
    session: aiohttp.ClientSession,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    async with session.request(method, path, json=body, headers=headers or BASIC) as resp:
        return resp.status, (await resp.json() if resp.content_type == "application/json" else None)


def assignee(user: str | None) -> dict[str, Any]:
    return {"ticket": {"userRefAssignee": user}}


async def test_assignee_put_answers_the_activity_with_previous_attributes() -> None:
    async with running() as (sim, session, ticket_id):
        path = f"/support/tickets/v1/{ticket_id}/assignee"
        status, first = await call(session, "PUT", path, assignee(USER_A))
        assert status == 200
        _, second = await call(session, "PUT", path, assignee(USER_B))
        _, third = await call(session, "PUT", path, assignee(None))
        _, fetched = await call(session, "GET", f"/support/tickets/v1/{ticket_id}")

    assert first["activity"]["type"] == "assigneeUpdated"
    # Unassigned before: the spec's previous userRefAssignee is a string, so it is left out.
    assert first["activity"]["data"] == {
        "userRefAssignee": USER_A,
        "userAssignee": {"id": USER_A, "photoUrl": None},
        "previousAttributes": {},
    }
    assert first["ticket"]["userRefAssignee"] == USER_A
    assert second["activity"]["data"]["previousAttributes"] == {
        "userRefAssignee": USER_A,
        "userAssignee": {"id": USER_A, "photoUrl": None},
    }
    assert third["activity"]["data"] == {
        "previousAttributes": {
            "userRefAssignee": USER_B,
            "userAssignee": {"id": USER_B, "photoUrl": None},
        }
    }
    assert "userRefAssignee" not in third["ticket"]
    assert third["ticket"]["userAssignee"] is None
    assert sim.tickets[ticket_id]["userAssignee"] is None
    assert [a["type"] for a in fetched["activities"]] == ["assigneeUpdated"] * 3


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"ticket": {"userRefAssignee": "bob"}}, "UUID or null"),
        ({"ticket": {}}, "Body must be"),
        ({"assignee": USER_A}, "Body must be"),
    ],
)
async def test_bad_assignee_is_400_and_changes_nothing(body: Any, needle: str) -> None:
    async with running() as (sim, session, ticket_id):
        before = dict(sim.tickets[ticket_id])
        status, answer = await call(
            session, "PUT", f"/support/tickets/v1/{ticket_id}/assignee", body
        )
    assert (status, answer["type"]) == (400, "badRequest")
    assert needle in answer["message"]
    assert sim.tickets[ticket_id] == before


async def test_type_patch_is_204_and_checks_the_enum() -> None:
    async with running() as (sim, session, ticket_id):
        path = f"/support/tickets/v1/{ticket_id}/type"
        new = "printing" if sim.tickets[ticket_id]["type"] != "printing" else "internet"
        assert await call(session, "PATCH", path, {"ticket": {"type": new}}) == (204, None)
        assert sim.tickets[ticket_id]["type"] == new
        status, answer = await call(session, "PATCH", path, {"ticket": {"type": "Printing"}})
        assert status == 400
        assert "websiteAndApp" in answer["message"]
        missing = f"/support/tickets/v1/{uuid.uuid4()}/type"
        assert (await call(session, "PATCH", missing, {"ticket": {"type": new}}))[0] == 404
    assert sim.tickets[ticket_id]["type"] == new


async def test_a_comment_needs_oauth_and_shows_in_the_ticket_get() -> None:
    async with running() as (sim, session, ticket_id):
        body = {"activity": {"ticketRef": ticket_id, "text": "Closed: moved to the new desk"}}
        status, refused = await call(session, "POST", COMMENT_PATH, body, BASIC)
        assert (status, refused["type"]) == (403, "forbidden")
        assert "OAuth2" in refused["message"]
        assert sim.comments(ticket_id) == []

        status, created = await call(session, "POST", COMMENT_PATH, body, BEARER)
        assert status == 201
        _, fetched = await call(session, "GET", f"/support/tickets/v1/{ticket_id}")

    activity = created["activity"]
    assert set(activity) == {"id", "createDate", "ticketRef", "type", "data", "membership"}
    assert (activity["ticketRef"], activity["type"]) == (ticket_id, "comment")
    assert activity["data"] == {"text": "Closed: moved to the new desk"}
    assert activity["membership"]["user"]["id"] == DEMO_USER_ID
    assert fetched["activities"] == [activity]
    assert sim.comments(ticket_id) == [activity]


@pytest.mark.parametrize(
    ("activity", "expected"),
    [
        ({"ticketRef": "x", "text": "hi"}, 400),
        ({"ticketRef": None, "text": "hi"}, 400),
        ({"ticketRef": "TICKET", "text": ""}, 400),
        ({"ticketRef": "TICKET"}, 400),
        ({"ticketRef": str(uuid.uuid4()), "text": "hi"}, 404),
    ],
)
async def test_bad_comment_is_refused(activity: dict[str, Any], expected: int) -> None:
    async with running() as (sim, session, ticket_id):
        body = {"activity": {k: ticket_id if v == "TICKET" else v for k, v in activity.items()}}
        status, answer = await call(session, "POST", COMMENT_PATH, body, BEARER)
    assert status == expected
    assert set(answer) == {"message", "type"}
    assert sim.comment_count() == 0


async def test_deleting_a_comment_removes_it_once() -> None:
    async with running() as (sim, session, ticket_id):
        body = {"activity": {"ticketRef": ticket_id, "text": "bye"}}
        _, created = await call(session, "POST", COMMENT_PATH, body, BEARER)
        path = f"{COMMENT_PATH}/{created['activity']['id']}"
        # The spec allows Basic here.
        assert await call(session, "DELETE", path, headers=BASIC) == (204, None)
        status, answer = await call(session, "DELETE", path, headers=BASIC)
        assert (status, answer["type"]) == (404, "notFound")
        assert (await call(session, "DELETE", f"{COMMENT_PATH}/nope"))[0] == 400
    assert sim.comments(ticket_id) == []
    assert sim.comment_count() == 0


def test_duplicate_comments_counts_same_text_by_the_same_author_only() -> None:
    sim = Simulator(SimConfig(rate=None), make_tickets(2, seed=3))
    first, second = list(sim.tickets)
    sim.add_comment(first, "hello")
    sim.add_comment(first, "hello", user_id=USER_A)  # someone else's: not a duplicate
    sim.add_comment(second, "hello")
    assert (sim.comment_count(), sim.duplicate_comments()) == (3, 0)
    sim.add_comment(first, "hello")
    sim.add_comment(first, "hello")
    assert (sim.comment_count(), sim.duplicate_comments()) == (5, 2)


async def test_writes_applied_then_dropped_or_answered_5xx() -> None:
    for fault in ("drop_after_rate", "error_after_rate"):
        config = SimConfig(rate=None)
        setattr(config, fault, 1.0)
        async with running(config) as (sim, session, ticket_id):
            base = f"/support/tickets/v1/{ticket_id}"
            writes: list[tuple[str, str, Any, dict[str, str]]] = [
                ("PUT", f"{base}/status", {"ticket": {"status": "closed"}}, BASIC),
                ("PUT", f"{base}/assignee", assignee(USER_A), BASIC),
                ("PATCH", f"{base}/type", {"ticket": {"type": "printing"}}, BASIC),
                ("POST", COMMENT_PATH, {"activity": {"ticketRef": ticket_id, "text": "x"}}, BEARER),
            ]
            for method, path, body, headers in writes:
                if fault == "drop_after_rate":
                    with pytest.raises(aiohttp.ServerDisconnectedError):
                        await call(session, method, path, body, headers)
                else:
                    assert (await call(session, method, path, body, headers))[0] >= 500
            # Every write was applied although no client saw it succeed.
            ticket = sim.tickets[ticket_id]
            assert (ticket["status"], ticket["userRefAssignee"], ticket["type"]) == (
                "closed",
                USER_A,
                "printing",
            )
            [comment] = sim.comments(ticket_id)
            sim.config = SimConfig(rate=None)
            assert (await call(session, "DELETE", f"{COMMENT_PATH}/{comment['id']}"))[0] == 204
            # A refused write is not applied, so it loses nothing: its 4xx goes through.
            sim.config = config
            status, _ = await call(session, "PATCH", f"{base}/type", {"ticket": {"type": "x"}})
            assert status == 400
            # Reads are never faulted by these modes.
            assert (await call(session, "GET", base))[0] == 200


async def test_auth_rate_limit_and_faults_cover_the_new_routes() -> None:
    async with running(SimConfig(rate=1, burst=1)) as (sim, session, ticket_id):
        path = f"/support/tickets/v1/{ticket_id}/type"
        body = {"ticket": {"type": "printing"}}
        assert (await call(session, "PATCH", path, body, {"Authorization": "Basic eDp5"}))[0] == 401
        assert (await call(session, "PATCH", path, body))[0] == 204
        status, answer = await call(session, "PATCH", path, body)
        assert (status, answer["type"]) == (429, "tooManyRequests")
    async with running(SimConfig(rate=None, error_rate=1.0)) as (sim, session, ticket_id):
        body = {"activity": {"ticketRef": ticket_id, "text": "x"}}
        assert (await call(session, "POST", COMMENT_PATH, body, BEARER))[0] >= 500
        # A plain 5xx does no work.
        assert sim.comment_count() == 0
    async with running(SimConfig(rate=None, drop_rate=1.0)) as (sim, session, ticket_id):
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await call(
                session, "PUT", f"/support/tickets/v1/{ticket_id}/assignee", assignee(USER_A)
            )
        assert "userRefAssignee" not in sim.tickets[ticket_id]


# -- OAuth2 ---------------------------------------------------------------------------------


def refresh_form(token: str, secret: str = DEMO_CLIENT_SECRET) -> dict[str, str]:
    return {
        "grant_type": "refresh_token",
        "refresh_token": token,
        "client_id": DEMO_CLIENT_ID,
        "client_secret": secret,
    }


async def refresh(session: aiohttp.ClientSession, form: dict[str, str]) -> tuple[int, Any]:
    async with session.post(TOKEN_PATH, data=form) as resp:
        assert resp.headers["Cache-Control"] == "no-store"
        return resp.status, await resp.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "spacebring-network-id": DEMO_NETWORK_ID}


async def test_token_endpoint_issues_expiring_tokens_and_rotates_refresh_tokens() -> None:
    clock = FakeClock()
    async with running(SimConfig(rate=None, token_lifetime=20), clock) as (sim, session, ticket_id):
        status, token = await refresh(session, refresh_form(DEMO_REFRESH_TOKEN))
        assert status == 200
        assert (token["token_type"], token["expires_in"]) == ("Bearer", 20)
        assert token["refresh_token"] != DEMO_REFRESH_TOKEN
        get = f"/support/tickets/v1/{ticket_id}"
        assert (await call(session, "GET", get, headers=bearer(token["access_token"])))[0] == 200

        # The spent refresh token no longer works; its successor does.
        status, refused = await refresh(session, refresh_form(DEMO_REFRESH_TOKEN))
        assert (status, refused["error"]) == (400, "invalid_grant")
        clock.now += 20
        status, answer = await call(session, "GET", get, headers=bearer(token["access_token"]))
        assert (status, answer["type"]) == (401, "unauthorized")
        status, second = await refresh(session, refresh_form(token["refresh_token"]))
        assert status == 200
        assert (await call(session, "GET", get, headers=bearer(second["access_token"])))[0] == 200
        assert sim.requests[-1].headers["authorization"] == "Bearer [redacted]"
    assert (sim.oauth.refreshes, sim.oauth.refused) == (2, 1)
    assert sim.oauth.refresh_tokens() == {second["refresh_token"]}
    # The simulator's request log keeps no secret of the token requests.
    assert not any(DEMO_CLIENT_SECRET.encode() in r.body for r in sim.requests)


@pytest.mark.parametrize(
    ("form", "config", "expected"),
    [
        (refresh_form(DEMO_REFRESH_TOKEN, "wrong"), {}, (401, "invalid_client")),
        (refresh_form("unknown"), {}, (400, "invalid_grant")),
        (refresh_form(DEMO_REFRESH_TOKEN), {"refresh_fails": True}, (400, "invalid_grant")),
        (
            {**refresh_form(DEMO_REFRESH_TOKEN), "grant_type": "password"},
            {},
            (400, "unsupported_grant_type"),
        ),
    ],
)
async def test_token_endpoint_refusals(
    form: dict[str, str], config: dict[str, Any], expected: tuple[int, str]
) -> None:
    async with running(SimConfig(rate=None, **config)) as (sim, session, _):
        status, answer = await refresh(session, form)
    assert (status, answer["error"]) == expected
    # A refused refresh spends nothing: the first refresh token still works.
    assert sim.oauth.refresh_tokens() == {DEMO_REFRESH_TOKEN}
    assert sim.oauth.refreshes == 0


async def test_without_rotation_the_refresh_token_stays_and_json_bodies_are_refused() -> None:
    async with running(SimConfig(rate=None, rotate_refresh_tokens=False)) as (sim, session, _):
        _, token = await refresh(session, refresh_form(DEMO_REFRESH_TOKEN))
        assert token["refresh_token"] == DEMO_REFRESH_TOKEN
        async with session.post(TOKEN_PATH, json=refresh_form(DEMO_REFRESH_TOKEN)) as resp:
            assert (resp.status, (await resp.json())["error"]) == (400, "invalid_request")
    assert sim.oauth.refreshes == 1


async def test_a_new_token_shares_its_clients_rate_limit() -> None:
    config = SimConfig(rate=1, burst=1, rotate_refresh_tokens=False)
    async with running(config) as (sim, session, ticket_id):
        _, first = await refresh(session, refresh_form(DEMO_REFRESH_TOKEN))
        _, second = await refresh(session, refresh_form(DEMO_REFRESH_TOKEN))
        get = f"/support/tickets/v1/{ticket_id}"
        assert (await call(session, "GET", get, headers=bearer(first["access_token"])))[0] == 200
        # The limit is per client: refreshing does not buy a fresh budget.
        assert (await call(session, "GET", get, headers=bearer(second["access_token"])))[0] == 429
    # Token requests are outside the limit (two of them passed within the one slot).
    assert sim.oauth.refreshes == 2
