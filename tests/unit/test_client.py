"""The ticket client against the simulator over a real loopback socket, and its classifier.

Each answer the API can give (success, a 4xx, a 5xx, a 429 with or without
Retry-After, a 401, a dropped connection) comes from the simulator through
aiohttp and must come out as the `Answer` or the error the engine acts on.
"""

from __future__ import annotations

import uuid

import orjson
import pytest

from bulk import (
    Credentials,
    CredentialsRejected,
    FatalRequestError,
    RetriableError,
    UnexpectedAnswer,
)
from bulk.send import TicketClient
from bulk.send._client import MAX_DEPTH, _shallow
from bulk.simulator import LOCATIONS, SimConfig, Simulator, make_tickets, serve

STATUS_PATH = "/support/tickets/v1/{}/status"


def first_with(sim: Simulator, status: str) -> str:
    return next(t for t, ticket in sim.tickets.items() if ticket["status"] == status)


async def test_a_change_answers_with_the_previous_status_and_the_activity(
    server: str, creds: Credentials, sim: Simulator
) -> None:
    ticket = first_with(sim, "new")
    async with TicketClient(server, creds) as client:
        answer = await client.set_status(ticket, "closed")
        again = await client.set_status(ticket, "closed")
    assert (answer.http_status, answer.previous_status) == (200, "new")
    assert answer.activity_id is not None and uuid.UUID(answer.activity_id)
    assert again.previous_status == "closed"  # the engine calls this `unchanged`
    assert sim.status_of(ticket) == "closed"
    first = sim.requests[0]
    assert (first.method, first.path, first.body) == (
        "PUT",
        STATUS_PATH.format(ticket),
        b'{"ticket":{"status":"closed"}}',
    )
    assert first.headers["authorization"] == "Basic [redacted]"
    assert first.headers["accept-encoding"] == "identity"
    assert first.headers["user-agent"].startswith("bulk/")


async def test_an_unknown_ticket_is_a_fatal_404(
    server: str, creds: Credentials, sim: Simulator
) -> None:
    missing = str(uuid.uuid4())
    async with TicketClient(server, creds) as client:
        with pytest.raises(FatalRequestError) as info:
            await client.set_status(missing, "closed")
    assert not info.value.retriable and not isinstance(info.value, CredentialsRejected)
    assert info.value.http_status == 404
    assert info.value.message == f"HTTP 404 notFound: Ticket {missing} not found"
    assert len(sim.requests) == 1


async def test_client_reports_api_message_for_400(
    server: str, creds: Credentials, sim: Simulator
) -> None:
    ticket = next(iter(sim.tickets))
    async with TicketClient(server, creds) as client:
        # The client refuses a status the API does not know, without sending it ...
        with pytest.raises(FatalRequestError, match="not a status"):
            await client.set_status(ticket, "archived")
        # ... and an id that is not a canonical UUID, whatever it holds ...
        with pytest.raises(FatalRequestError, match="not a canonical UUID"):
            await client.set_status(f"{ticket}/../x", "closed")
        assert sim.requests == []
        # ... and a 400 the server does send is reported with the API's own message.
        with pytest.raises(FatalRequestError) as info:
            await client._call(
                "PUT", f"{server}/support/tickets/v1/{ticket}/status", data=b'{"ticket": {}}'
            )
    assert info.value.http_status == 400
    assert "badRequest" in info.value.message


async def test_server_errors_are_retriable_and_change_nothing(creds: Credentials) -> None:
    sim = Simulator(SimConfig(rate=None, error_rate=1.0, seed=2), make_tickets(3, seed=2))
    ticket = next(iter(sim.tickets))
    before = sim.status_of(ticket)
    async with serve(sim) as url, TicketClient(url, creds) as client:
        with pytest.raises(RetriableError) as info:
            await client.set_status(ticket, "closed" if before != "closed" else "new")
    assert info.value.http_status in (500, 502, 503)
    assert info.value.message.startswith(f"HTTP {info.value.http_status} internal")
    assert info.value.retry_after is None
    assert sim.status_of(ticket) == before


@pytest.mark.parametrize(("retry_after", "expected"), [(True, 1.0), (False, None)])
async def test_a_429_is_retriable_with_the_server_s_retry_after(
    creds: Credentials, retry_after: bool, expected: float | None
) -> None:
    sim = Simulator(SimConfig(rate=1, burst=1, retry_after=retry_after), make_tickets(2, seed=4))
    first, second = sim.tickets
    before = sim.status_of(second)
    async with serve(sim) as url, TicketClient(url, creds) as client:
        await client.set_status(first, "closed")
        with pytest.raises(RetriableError) as info:
            await client.set_status(second, "new" if before == "closed" else "closed")
    assert info.value.http_status == 429
    assert info.value.retry_after == expected
    assert "tooManyRequests" in info.value.message
    assert sim.status_of(second) == before


async def test_rejected_credentials_are_their_own_error(server: str, sim: Simulator) -> None:
    wrong = Credentials.basic("demo-client", "not-the-secret")
    ticket = first_with(sim, "new")
    async with TicketClient(server, wrong) as client:
        with pytest.raises(CredentialsRejected) as info:
            await client.set_status(ticket, "closed")
    assert info.value.http_status == 401 and not info.value.retriable
    assert info.value.message.startswith("HTTP 401 unauthorized")
    assert "not-the-secret" not in info.value.message
    assert sim.status_of(ticket) == "new"


async def test_a_dropped_connection_is_retriable(creds: Credentials) -> None:
    sim = Simulator(SimConfig(rate=None, drop_rate=1.0), make_tickets(1, seed=5))
    async with serve(sim) as url, TicketClient(url, creds, timeout=5) as client:
        with pytest.raises(RetriableError) as info:
            await client.set_status(next(iter(sim.tickets)), "closed")
    assert info.value.http_status is None
    assert info.value.message.startswith("connection error: ")
    assert url not in info.value.message  # aiohttp's own text, which names the URL, is left out


async def test_a_listing_page_comes_back_as_sent(
    server: str, creds: Credentials, sim: Simulator
) -> None:
    async with TicketClient(server, creds) as client:
        page = await client.list_page(LOCATIONS[0], order="createDate:asc", limit=5)
        after = await client.list_page(
            LOCATIONS[0], order="createDate:asc", limit=5, token=page["nextPageToken"]
        )
    mine = sorted(
        (t for t in sim.tickets.values() if t["locationRef"] == LOCATIONS[0]),
        key=lambda t: (t["createDate"], t["id"]),
    )
    assert [t["id"] for t in page["tickets"] + after["tickets"]] == [t["id"] for t in mine[:10]]
    assert "limit=5" in sim.requests[0].query and "nextPageToken" in sim.requests[1].query


# -- the classifier ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text stays", "plain text stays"),
        ("\x1b]0;pwned\x07\x1b[2J", "]0;pwned [2J"),
        ("C1\x9b31m and DEL\x7f", "C1 31m and DEL"),
        ("a\u202eb\u202ac\u2066d\u2069e\u200ff", "a b c d e f"),
        ("lines\r\nand\u2028separators\ttoo", "lines and separators too"),
        ({"type": "\x1b[2J"}, "{'type': '\\x1b[2J'}"),
        ("x" * 600, "x" * 499 + "…"),
    ],
)
def test_clean_text(raw: object, shown: str) -> None:
    from bulk._core._text import clean_text

    assert clean_text(raw) == shown


def test_credentials_are_redacted_from_server_text_before_it_is_cut() -> None:
    from urllib.parse import quote

    from bulk._core._text import clean_text, hide_secrets

    secret = "s3cret-" + uuid.uuid4().hex  # this test's own: the registry is per process
    creds = Credentials.basic("client-x", secret)
    basic = creds.headers()["Authorization"].removeprefix("Basic ")
    # A secret astride the cut is hidden whole, not half shown.
    echoed = "x" * 480 + f" {secret} after"
    assert clean_text(echoed) == "x" * 480 + " [redacted] after"
    # As sent, decoded, unpadded, URL-encoded, cut short by the server, or between controls.
    assert clean_text(f"got client-x:{secret}") == "got [redacted]"
    assert clean_text(f"got {basic.rstrip('=')}!") == "got [redacted]!"
    assert clean_text(f"got {quote(basic, safe='')}") == "got [redacted]"
    assert clean_text(f"rejected Basic {basic[:20]}") == "rejected Basic [redacted]"
    assert clean_text(f"\x1b[2J{secret}\x07") == "[2J[redacted]"
    # Found only once controls are cleaned, or an invisible character is dropped.
    assert clean_text("Basic\x00" + "Zm9vOmJhcjEyMzQ1Njc4OQ==") == "Basic [redacted]"
    assert clean_text(f"Basic {basic[:10]}\u200b{basic[10:]}") == "Basic [redacted]"
    assert clean_text("bAsIc Zm9vOmJhcjEyMzQ1Njc4OQ==") == "bAsIc [redacted]"
    # The client id is a credential too (CONTRACT); a scheme's word in prose stays.
    assert clean_text("client-x: basic cleaning services") == "[redacted]: basic cleaning services"
    # A token endpoint that renews every request: the latest of each kind stay hidden, and
    # a refresh token is not pushed out by access tokens.
    hide_secrets("refresh-" + secret, rotating="refresh")
    for n in range(12):
        hide_secrets(f"access-{n:04d}-{secret}", rotating="access")
    assert clean_text(f"echo access-0011-{secret}") == "echo [redacted]"
    assert clean_text(f"echo access-0000-{secret}") == "echo access-0000-[redacted]"
    assert clean_text(f"echo refresh-{secret}") == "echo [redacted]"


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        ("https://evil.example/steal?token=abc", "evil.example"),
        ("http://user:secret@127.0.0.1:8080/x", "127.0.0.1:8080"),
        ("https://éxample.com/", "xn--xample-9ua.com"),
        ("http://[::1]:9/", "[::1]:9"),
        ("/support/tickets/v1/elsewhere", "a path on the same host"),
        ("http://evil\x1b]0;x\x07/", "an unreadable Location"),
        (None, "no Location"),
    ],
)
def test_a_redirect_names_only_its_host(location: str | None, shown: str) -> None:
    from bulk.send import classify_response

    headers = {} if location is None else {"Location": location}
    error = classify_response(307, b"", headers)
    assert isinstance(error, UnexpectedAnswer) and not error.retriable
    assert error.message == f"unexpected answer: redirect (307) to {shown} — not followed"


def test_another_success_status_names_the_one_expected() -> None:
    from bulk.send import classify_response

    error = classify_response(200, b"{}", {}, expect=201)
    assert isinstance(error, UnexpectedAnswer) and not error.retriable
    assert error.message == "unexpected answer: HTTP 200, not 201"


def _nested(depth: int) -> bytes:
    """An object whose deepest value is `depth` containers down, the top one counted."""
    return b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


@pytest.mark.parametrize(
    ("body", "shallow"),
    [
        (_nested(MAX_DEPTH), True),
        (_nested(MAX_DEPTH + 1), False),
        # Many brackets side by side (a listing page) are not depth: walked, and accepted.
        (b'{"tickets":[' + b",".join([b'{"id":[1]}'] * 200) + b"]}", True),
    ],
)
def test_answers_nested_deeper_than_max_depth_are_refused(body: bytes, shallow: bool) -> None:
    assert _shallow(orjson.loads(body), body) is shallow


async def test_a_token_said_to_last_no_time_is_not_refreshed_before_every_request() -> None:
    """`expires_in: 1e-9` (hostile review): refreshed at most once a second, on a fake clock."""
    from bulk._core._config import RefreshGrant
    from bulk.send._auth import TokenProvider

    asked: list[dict[str, str]] = []
    now = [100.0]

    async def post_form(form: dict[str, str]) -> tuple[int, str, bytes]:
        asked.append(form)
        body = {"access_token": f"tok-{len(asked)}", "token_type": "Bearer", "expires_in": 1e-9}
        return 200, "application/json", orjson.dumps(body)

    grant = RefreshGrant("client-x", "secret-y", "refresh-z")
    provider = TokenProvider(grant, post_form, api="http://127.0.0.1:1", clock=lambda: now[0])
    for _ in range(20):
        await provider.authorization()
        now[0] += 0.01
    assert len(asked) == 1
    now[0] += 1.0
    assert await provider.authorization() == "Bearer tok-2"
