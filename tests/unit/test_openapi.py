"""Requests shaped like the bulk client's, and the simulator's real answers, against the spec.

spec/spacebring-openapi-support.json is the support-ticket subset of Spacebring's public API
description as published in the MIT-licensed izak0s/spacebring-api repository
(spec/openapi.json, commit 912d6e8). Everything here goes over a real loopback socket: the
server side of each exchange is captured and handed to openapi-core through its aiohttp adapters.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from openapi_core import OpenAPI
from openapi_core.contrib.aiohttp import AIOHTTPOpenAPIWebRequest, AIOHTTPOpenAPIWebResponse
from openapi_core.exceptions import OpenAPIError
from openapi_core.templating.responses.exceptions import ResponseNotFound
from openapi_core.testing import MockRequest, MockResponse
from openapi_core.validation.request.validators import (
    V30RequestBodyValidator,
    V30RequestParametersValidator,
)
from openapi_core.validation.schemas import oas30_read_schema_validators_factory
from openapi_spec_validator import OpenAPIV30SpecValidator

from bulk.simulator import (
    COMMENT_PATH,
    DEMO_ACCESS_TOKEN,
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_NETWORK_ID,
    LOCATIONS,
    SimConfig,
    Simulator,
    make_tickets,
    serve,
)

SPEC_PATH = Path(__file__).resolve().parents[2] / "spec" / "spacebring-openapi-support.json"
PRODUCTION = "https://api.spacebring.com"
# Exactly what the bulk client sends for one row.
CLIENT_HEADERS = {
    "Authorization": aiohttp.encode_basic_auth(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET),
    "Content-Type": "application/json",
}
CLIENT_BODY = b'{"ticket":{"status":"closed"}}'

# The spec offers OAuth2 as the alternative to BasicAuth, and openapi-core cannot check OAuth2:
# it only warns and lets the request through. As an error, that warning makes every request
# here prove itself through BasicAuth instead of passing by default.
pytestmark = pytest.mark.filterwarnings("error:Unsupported scheme type:UserWarning")


def raw_spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    return spec


@pytest.fixture(scope="module")
def openapi() -> OpenAPI:
    spec = raw_spec()
    # The published description carries a top-level `"security": null`, which OpenAPI 3.0 does
    # not allow (it must be an array) and openapi-core's spec check refuses. Every operation
    # declares its own security, so dropping the null changes nothing and keeps that check on.
    assert spec.pop("security") is None
    # The simulator stands in for the production server on a loopback port of its choosing.
    loopback = {"url": "http://127.0.0.1:{port}", "variables": {"port": {"default": "80"}}}
    spec["servers"] = [*spec["servers"], loopback]
    return OpenAPI.from_dict(spec)


class LoopbackRequest(AIOHTTPOpenAPIWebRequest):
    # The contrib adapter leaves the port out of host_url, so no server entry could match it.
    @property
    def host_url(self) -> str:
        return str(self.request.url.origin())


class RecordingSimulator(Simulator):
    """A simulator that keeps the server side of every exchange for validation."""

    def __init__(self, config: SimConfig | None = None, tickets: Any = None) -> None:
        super().__init__(config, tickets)
        self.exchanges: list[tuple[LoopbackRequest, AIOHTTPOpenAPIWebResponse]] = []

    def app(self) -> web.Application:
        app = super().app()
        # Outermost, so it sees the answer exactly as it goes on the wire.
        app.middlewares.insert(0, self._record)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        assert isinstance(response, web.Response)
        wrapped = LoopbackRequest(request, body=await request.read())
        self.exchanges.append((wrapped, AIOHTTPOpenAPIWebResponse(response)))
        return response


@pytest.fixture
async def recorded() -> AsyncIterator[tuple[RecordingSimulator, aiohttp.ClientSession]]:
    sim = RecordingSimulator(SimConfig(rate=None), make_tickets(4, seed=11))
    async with serve(sim) as base_url, aiohttp.ClientSession(base_url) as session:
        yield sim, session


async def exchange(
    sim: RecordingSimulator,
    session: aiohttp.ClientSession,
    method: str,
    path: str,
    body: bytes,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[LoopbackRequest, AIOHTTPOpenAPIWebResponse]:
    headers = CLIENT_HEADERS if headers is None else headers
    async with session.request(
        method, path, data=body or None, headers=headers, params=params
    ) as resp:
        await resp.read()
    return sim.exchanges[-1]


def test_the_spec_is_valid_but_for_its_null_security() -> None:
    errors = list(OpenAPIV30SpecValidator(raw_spec()).iter_errors())
    assert [(list(e.path), e.instance) for e in errors] == [(["security"], None)]


def test_the_client_request_matches_the_spec_as_sent_to_production(openapi: OpenAPI) -> None:
    path = f"/support/tickets/v1/{uuid.uuid4()}/status"
    request = MockRequest(PRODUCTION, "PUT", path, headers=CLIENT_HEADERS, data=CLIENT_BODY)
    openapi.validate_request(request)

    # The same checks do catch a bad request, so the pass above means something.
    for bad_path, bad_body in [(path, b'{"ticket":{"status":"done"}}'), ("/x/status", CLIENT_BODY)]:
        bad = MockRequest(PRODUCTION, "PUT", bad_path, headers=CLIENT_HEADERS, data=bad_body)
        with pytest.raises(OpenAPIError):
            openapi.validate_request(bad)


async def test_status_update_exchange_matches_the_spec(
    openapi: OpenAPI, recorded: tuple[RecordingSimulator, aiohttp.ClientSession]
) -> None:
    sim, session = recorded
    for ticket_id in list(sim.tickets)[:2]:
        path = f"/support/tickets/v1/{ticket_id}/status"
        # The second PUT of the same status is the "unchanged" answer.
        for _ in range(2):
            request, response = await exchange(sim, session, "PUT", path, CLIENT_BODY)
            assert response.status_code == 200
            openapi.validate_request(request)
            openapi.validate_response(request, response)


async def test_get_ticket_exchange_matches_the_spec(
    openapi: OpenAPI, recorded: tuple[RecordingSimulator, aiohttp.ClientSession]
) -> None:
    sim, session = recorded
    ticket_id = next(iter(sim.tickets))
    await exchange(sim, session, "PUT", f"/support/tickets/v1/{ticket_id}/status", CLIENT_BODY)
    request, response = await exchange(sim, session, "GET", f"/support/tickets/v1/{ticket_id}", b"")
    assert response.status_code == 200
    assert len(json.loads(response.data)["activities"]) == 1
    openapi.validate_request(request)
    openapi.validate_response(request, response)


async def test_bad_request_answer_matches_the_spec(
    openapi: OpenAPI, recorded: tuple[RecordingSimulator, aiohttp.ClientSession]
) -> None:
    sim, session = recorded
    path = f"/support/tickets/v1/{next(iter(sim.tickets))}/status"
    request, response = await exchange(sim, session, "PUT", path, b'{"ticket":{"status":"done"}}')
    assert response.status_code == 400
    openapi.validate_response(request, response)
    with pytest.raises(OpenAPIError):
        openapi.validate_request(request)


async def test_not_found_answer_matches_the_spec_error_shape(
    openapi: OpenAPI, recorded: tuple[RecordingSimulator, aiohttp.ClientSession]
) -> None:
    sim, session = recorded
    path = f"/support/tickets/v1/{uuid.uuid4()}/status"
    request, response = await exchange(sim, session, "PUT", path, CLIENT_BODY)
    assert response.status_code == 404
    openapi.validate_request(request)
    # The spec documents only 200 and 400 for this operation, so openapi-core has no response
    # to check a 404 against; its body is checked against the spec's own error schema instead.
    with pytest.raises(ResponseNotFound):
        openapi.validate_response(request, response)
    error_schema = openapi.spec / "components" / "schemas" / "responseError"
    oas30_read_schema_validators_factory.create(openapi.spec, error_schema).validate(
        json.loads(response.data)
    )
    assert set(json.loads(response.data)) == {"message", "type"}


def test_answers_outside_the_spec_are_rejected(openapi: OpenAPI) -> None:
    # Guards the checks above: the ticket schema's additionalProperties: false is enforced.
    ticket = make_tickets(1)[0]
    path = f"/support/tickets/v1/{ticket['id']}"
    request = MockRequest(PRODUCTION, "GET", path, headers=CLIENT_HEADERS)
    good = json.dumps({"ticket": ticket, "activities": []}).encode()
    openapi.validate_response(request, MockResponse(good))
    bad = json.dumps({"ticket": {**ticket, "secret": "x"}, "activities": []}).encode()
    with pytest.raises(OpenAPIError):
        openapi.validate_response(request, MockResponse(bad))


LIST_PATH = "/support/tickets/v1"


def test_the_client_listing_request_matches_the_spec(openapi: OpenAPI) -> None:
    # What the bulk client sends for a page: locationRef, limit, order and, after the first,
    # the token it was given.
    args = {"locationRef": LOCATIONS[0], "limit": "100", "order": "createDate:asc"}
    for page_args in (args, {**args, "nextPageToken": "opaque"}):
        request = MockRequest(PRODUCTION, "GET", LIST_PATH, headers=CLIENT_HEADERS, args=page_args)
        openapi.validate_request(request)
    for bad_args in ({**args, "limit": "0"}, {**args, "locationRef": "x"}, {"limit": "5"}):
        bad = MockRequest(PRODUCTION, "GET", LIST_PATH, headers=CLIENT_HEADERS, args=bad_args)
        with pytest.raises(OpenAPIError):
            openapi.validate_request(bad)


async def test_listing_exchange_matches_the_spec(
    openapi: OpenAPI, recorded: tuple[RecordingSimulator, aiohttp.ClientSession]
) -> None:
    sim, session = recorded
    # The fixture's location with two tickets, so that limit 1 gives two pages.
    location = LOCATIONS[2]
    params = {"locationRef": location, "limit": "1", "order": "updateDate:asc"}
    bodies = []
    while True:
        request, response = await exchange(sim, session, "GET", LIST_PATH, b"", params)
        assert response.status_code == 200
        openapi.validate_request(request)
        openapi.validate_response(request, response)
        bodies.append(json.loads(response.data))
        if "nextPageToken" not in bodies[-1]:
            break
        params = {**params, "nextPageToken": bodies[-1]["nextPageToken"]}
    assert [len(body["tickets"]) for body in bodies] == [1, 1]
    assert {t["locationRef"] for body in bodies for t in body["tickets"]} == {location}


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "10"},
        {"locationRef": LOCATIONS[0], "limit": "0"},
        {"locationRef": LOCATIONS[0], "limit": "101"},
    ],
)
async def test_listing_bad_request_answer_matches_the_spec(
    openapi: OpenAPI,
    recorded: tuple[RecordingSimulator, aiohttp.ClientSession],
    params: dict[str, str],
) -> None:
    sim, session = recorded
    request, response = await exchange(sim, session, "GET", LIST_PATH, b"", params)
    assert response.status_code == 400
    openapi.validate_response(request, response)
    assert set(json.loads(response.data)) == {"message", "type"}
    # The spec refuses these requests too, so the simulator's 400 agrees with it.
    with pytest.raises(OpenAPIError):
        openapi.validate_request(request)


async def test_listing_bad_token_answer_matches_the_spec(
    openapi: OpenAPI, recorded: tuple[RecordingSimulator, aiohttp.ClientSession]
) -> None:
    # A token the spec cannot judge (it is any string) but the server does not know.
    sim, session = recorded
    params = {"locationRef": LOCATIONS[0], "nextPageToken": "not-ours"}
    request, response = await exchange(sim, session, "GET", LIST_PATH, b"", params)
    assert response.status_code == 400
    openapi.validate_request(request)
    openapi.validate_response(request, response)


def test_listing_answers_outside_the_spec_are_rejected(openapi: OpenAPI) -> None:
    # Guards the listing checks above: each listed ticket is held to the ticket schema.
    ticket = make_tickets(1)[0]
    args = {"locationRef": ticket["locationRef"]}
    request = MockRequest(PRODUCTION, "GET", LIST_PATH, headers=CLIENT_HEADERS, args=args)
    good = json.dumps({"tickets": [ticket], "nextPageToken": "t"}).encode()
    openapi.validate_response(request, MockResponse(good))
    for bad_body in (
        {"tickets": [{**ticket, "secret": "x"}]},
        {"tickets": [{**ticket, "status": "done"}]},
        {"tickets": [ticket], "nextPageToken": 3},
    ):
        with pytest.raises(OpenAPIError):
            openapi.validate_response(request, MockResponse(json.dumps(bad_body).encode()))


# -- assignee, type, comments ---------------------------------------------------------------

BEARER_HEADERS = {
    "Authorization": f"Bearer {DEMO_ACCESS_TOKEN}",
    "spacebring-network-id": DEMO_NETWORK_ID,
    "Content-Type": "application/json",
}


def validate_oauth_only_request(openapi: OpenAPI, request: Any) -> None:
    """Body and parameters of an operation whose only security is OAuth2.

    openapi-core cannot check OAuth2 (it warns, which this module makes an error), so the
    security part is left to the simulator's own tests (Basic gets 403 there).
    """
    for validator in (V30RequestBodyValidator, V30RequestParametersValidator):
        validator(openapi.spec).validate(request)


async def test_assignee_exchanges_match_the_spec(
    openapi: OpenAPI, recorded: tuple[RecordingSimulator, aiohttp.ClientSession]
) -> None:
    sim, session = recorded
    path = f"/support/tickets/v1/{next(iter(sim.tickets))}/assignee"
    user = str(uuid.uuid4())
    # Assign, assign again (the previous assignee shows), unassign.
    for value in (user, user, None):
        body = json.dumps({"ticket": {"userRefAssignee": value}}).encode()
        request, response = await exchange(sim, session, "PUT", path, body)
        assert response.status_code == 200
        openapi.validate_request(request)
        openapi.validate_response(request, response)
    bad = json.dumps({"ticket": {"userRefAssignee": "bob"}}).encode()
    request, response = await exchange(sim, session, "PUT", path, bad)
    assert response.status_code == 400
    openapi.validate_response(request, response)
    with pytest.raises(OpenAPIError):
        openapi.validate_request(request)


async def test_type_exchange_matches_the_spec(
    openapi: OpenAPI, recorded: tuple[RecordingSimulator, aiohttp.ClientSession]
) -> None:
    sim, session = recorded
    path = f"/support/tickets/v1/{next(iter(sim.tickets))}/type"
    request, response = await exchange(sim, session, "PATCH", path, b'{"ticket":{"type":"other"}}')
    assert response.status_code == 204
    openapi.validate_request(request)
    openapi.validate_response(request, response)
    request, response = await exchange(sim, session, "PATCH", path, b'{"ticket":{"type":"x"}}')
    assert response.status_code == 400
    openapi.validate_response(request, response)
    with pytest.raises(OpenAPIError):
        openapi.validate_request(request)


async def test_comment_exchanges_match_the_spec(
    openapi: OpenAPI, recorded: tuple[RecordingSimulator, aiohttp.ClientSession]
) -> None:
    sim, session = recorded
    ticket_id = next(iter(sim.tickets))
    body = json.dumps({"activity": {"ticketRef": ticket_id, "text": "Closed: moved"}}).encode()
    request, response = await exchange(
        sim, session, "POST", COMMENT_PATH, body, None, BEARER_HEADERS
    )
    assert response.status_code == 201
    validate_oauth_only_request(openapi, request)
    openapi.validate_response(request, response)
    comment_id = json.loads(response.data)["activity"]["id"]

    # The ticket GET serves the comment among its activities, in the spec's shape.
    request, response = await exchange(sim, session, "GET", f"/support/tickets/v1/{ticket_id}", b"")
    assert [a["type"] for a in json.loads(response.data)["activities"]] == ["comment"]
    openapi.validate_response(request, response)

    request, response = await exchange(sim, session, "DELETE", f"{COMMENT_PATH}/{comment_id}", b"")
    assert response.status_code == 204
    openapi.validate_request(request)
    openapi.validate_response(request, response)

    empty = json.dumps({"activity": {"ticketRef": ticket_id, "text": ""}}).encode()
    request, response = await exchange(
        sim, session, "POST", COMMENT_PATH, empty, None, BEARER_HEADERS
    )
    assert response.status_code == 400
    openapi.validate_response(request, response)
    with pytest.raises(OpenAPIError):
        validate_oauth_only_request(openapi, request)
