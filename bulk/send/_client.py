"""The HTTP side: one aiohttp session per run, one method per API call used."""

from __future__ import annotations

from types import TracebackType
from typing import Any, NamedTuple

import aiohttp
import orjson
from aiohttp.payload import BytesPayload
from yarl import URL

from .._core._config import Credentials, check_token_file_api
from .._core._exceptions import (
    CredentialsRejected,
    FatalRequestError,
    RequestError,
    RetriableError,
    UnexpectedAnswer,
)
from .._core._ids import UUID_PATTERN
from .._core._text import clean_text
from .._version import __version__
from ..plan import STATUSES
from ._auth import TokenProvider
from ._classify import classify_exception, classify_response
from ._pacing import RateController

__all__ = ["MAX_ANSWER", "MAX_DEPTH", "Answer", "TicketClient"]

# The most bytes read of one answer. A status answer is about 1 KB and a full
# listing page of 100 tickets about 100 KB. Read whole and decoded, a 415 KB
# gzip answer took a 16-row run to 860-1120 MB (measured with the earlier
# client, tests/test_hostile_server.py); now it peaks at 47 MB.
MAX_ANSWER = 1 << 20
# The deepest JSON accepted in an answer: the API's nest 4 levels deep (a ticket's
# activity's data's previous attributes).
MAX_DEPTH = 32
_CHUNK = 1 << 16
_JSON = "application/json"


class Answer(NamedTuple):
    http_status: int
    previous_status: str | None
    activity_id: str | None


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _show(value: Any) -> str:
    """A server value quoted for an error message: cleaned, and short."""
    return clean_text(repr(value)[:200], 60)


def _too_large(code: int) -> RetriableError:
    # Retried: a truncated or runaway answer may be a passing fault, and the
    # row's attempt budget still ends it.
    return RetriableError("answer larger than 1 MiB, not read", code)


async def _read(response: aiohttp.ClientResponse) -> bytes:
    """The body, at most `MAX_ANSWER` bytes of it, never decoded."""
    encoding = response.headers.get("Content-Encoding", "identity")
    if encoding.lower() != "identity":
        # We ask for identity and do not decode: a compressed body (a gzip
        # bomb inflates 1000-fold) is refused unread.
        raise UnexpectedAnswer(
            f"content encoded as {clean_text(encoding, 40)}, which was not asked for",
            response.status,
        )
    length = response.content_length
    if length is not None:
        if length > MAX_ANSWER:
            raise _too_large(response.status)
        # aiohttp stops at Content-Length, so this read is bounded too.
        return await response.read()
    body = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > MAX_ANSWER:
            raise _too_large(response.status)
    return bytes(body)


async def _error_body(response: aiohttp.ClientResponse) -> bytes:
    """An error answer's body for its message; an unreadable one leaves only the status."""
    try:
        return await _read(response)
    except RequestError:
        return b""


def _json_object(body: bytes, response: aiohttp.ClientResponse) -> dict[str, Any]:
    """A 200's body as the JSON object every call bulk makes answers with."""
    code = response.status
    kind = response.content_type
    if kind != "application/json" and not kind.endswith("+json"):
        raise UnexpectedAnswer(f"content type {clean_text(kind, 60)}, not JSON (HTTP {code})", code)
    # orjson: every answer is parsed here, and the stdlib's json took 10.7 us for a
    # 491-byte status answer, orjson 2.9 us (timeit, the bench machine). It is also
    # stricter: UTF-8 only, no NaN, nesting refused past 1,024 levels.
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise UnexpectedAnswer(f"body is not valid JSON (HTTP {code})", code) from None
    if not _shallow(data, body):
        raise UnexpectedAnswer(f"JSON nested deeper than {MAX_DEPTH} levels (HTTP {code})", code)
    if not isinstance(data, dict):
        raise UnexpectedAnswer(f"JSON {type(data).__name__}, not an object (HTTP {code})", code)
    return data


def _shallow(data: Any, body: bytes) -> bool:
    """Whether no value of `data` is nested deeper than `MAX_DEPTH`.

    orjson parses up to 1,024 levels, but Python's own repr and str of a value
    ~1,000 deep raise RecursionError, so such a value would end a run with a
    traceback wherever an error message shows it. The brackets, counted in C,
    bound the depth: an answer with fewer is never walked.
    """
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:
        return True
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list) and depth > MAX_DEPTH:
            return False
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return True


def _status_answer(data: dict[str, Any], ticket_id: str, status: str) -> Answer:
    """Success only when the answer shows this ticket at this status (a few dict lookups)."""
    ticket = data.get("ticket")
    if not isinstance(ticket, dict):
        raise UnexpectedAnswer("no ticket object in the 200 answer", 200)
    got_id = ticket.get("id")
    if not isinstance(got_id, str) or got_id.lower() != ticket_id:
        raise UnexpectedAnswer(f"ticket id {_show(got_id)} is not the row's id", 200)
    got = ticket.get("status")
    if got != status:
        raise UnexpectedAnswer(f"ticket status {_show(got)} is not the target {status!r}", 200)
    activity = data.get("activity")
    previous = _dig(activity, "data", "previousAttributes", "status")
    activity_id = _dig(activity, "id")
    return Answer(
        200,
        previous if previous in STATUSES else None,
        activity_id
        if isinstance(activity_id, str) and UUID_PATTERN.fullmatch(activity_id.lower())
        else None,
    )


class TicketClient:
    """`async with TicketClient(...) as client: await client.set_status(id, "closed")`."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        concurrency: int = 8,
        timeout: float = 30.0,
        budget: RateController | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        # The run's one budget: the engine takes a slot for each call it makes, and
        # the client for the one call it makes on its own (the resend after a 401).
        self._budget = budget
        self._credentials = credentials
        self._concurrency = concurrency
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        # resolve_target checked this already; a client built by hand is held to it too.
        check_token_file_api(credentials, self._base)
        grant = credentials.refresh_grant
        # OAuth: the Authorization header is asked of the provider per request.
        self.auth = None if grant is None else TokenProvider(grant, self._post_form, api=self._base)

    async def __aenter__(self) -> TicketClient:
        # The connector's limit bounds sockets to the pool size; TLS
        # verification stays at aiohttp's default (on).
        connector = aiohttp.TCPConnector(limit=self._concurrency, limit_per_host=self._concurrency)
        self._session = aiohttp.ClientSession(
            connector=connector,
            # `total` runs until the body is read and the connection released
            # (aiohttp cancels its timer only then), so a server that drips a
            # byte a second is cut off at --timeout, body included.
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            headers={
                **self._credentials.headers(),
                "User-Agent": f"bulk/{__version__}",
                "Accept": "application/json",
                "Accept-Encoding": "identity",
            },
            auto_decompress=False,
            raise_for_status=False,
        )
        # aiohttp resends a PUT, GET or DELETE once, unseen, when a kept-open connection
        # drops (aio-libs/aiohttp#10790: no public switch; its own test client sets this
        # private flag). Unseen, the resend escaped the pace and the row's `attempts`: a
        # review counted 60 PUTs at the server for 43 in the report, 6 of them for one row
        # that showed 3. Off, a dropped connection is this client's retriable error,
        # retried through the one budget and counted (tests/e2e/test_read_before_write.py).
        if hasattr(self._session, "_retry_connection"):
            self._session._retry_connection = False
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(
        self, method: str, url: str | URL, *, expect: int = 200, **kwargs: Any
    ) -> dict[str, Any]:
        """One request; the JSON object of the `expect`ed answer ({} for a 204), or a
        classified `RequestError`.

        With OAuth, a 401 (an access token the server ended early) refreshes the token once
        and sends the request once more, in a slot of the run's budget when the client has
        one: a limit shared by every call counts the resend too.
        """
        if self.auth is None:
            return await self._request(method, url, kwargs, expect=expect)
        used = await self.auth.authorization()
        try:
            return await self._request(method, url, kwargs, used, expect=expect)
        except CredentialsRejected as exc:
            if exc.http_status != 401:
                raise
        renewed = await self.auth.after_rejection(used)
        if self._budget is not None:
            # A slot only: the caller's own slot around this whole call feeds its
            # answer back (a 429 counted twice would cut the pace twice).
            await self._budget.acquire()
        return await self._request(method, url, kwargs, renewed, expect=expect)

    async def _request(
        self,
        method: str,
        url: str | URL,
        kwargs: dict[str, Any],
        authorization: str = "",
        *,
        expect: int = 200,
    ) -> dict[str, Any]:
        assert self._session is not None, "use TicketClient as an async context manager"
        if authorization:
            kwargs = {
                **kwargs,
                "headers": {**kwargs.get("headers", {}), "Authorization": authorization},
            }
        try:
            async with self._session.request(
                method, url, allow_redirects=False, **kwargs
            ) as response:
                code = response.status
                if code == expect:
                    return {} if code == 204 else _json_object(await _read(response), response)
                # A redirect's body is never read: only its Location matters.
                body = await _error_body(response) if code >= 400 else b""
                raise classify_response(code, body, response.headers, expect)
        except RequestError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise classify_exception(exc) from None

    async def _post_form(self, form: dict[str, str]) -> tuple[int, str, bytes]:
        """The OAuth token request: (status, content type, body); never redirected."""
        assert self._session is not None, "use TicketClient as an async context manager"
        try:
            async with self._session.post(
                f"{self._base}/oauth2/token", data=form, allow_redirects=False
            ) as response:
                return response.status, response.content_type, await _error_body(response)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise classify_exception(exc) from None

    async def set_status(self, ticket_id: str, status: str) -> Answer:
        """PUT the status; return the answer or raise a classified `RequestError`."""
        # The plan has validated ids already; checking again here means no
        # code path can put an unchecked string into a URL.
        if not UUID_PATTERN.fullmatch(ticket_id):
            raise FatalRequestError(f"refusing to send: {ticket_id!r} is not a canonical UUID")
        if status not in STATUSES:
            raise FatalRequestError(f"refusing to send: {status!r} is not a status")
        data = await self._call(
            "PUT",
            # Already safe (a checked UUID): encoded=True spares yarl re-parsing it.
            URL(f"{self._base}/support/tickets/v1/{ticket_id}/status", encoded=True),
            # The body as a payload that carries its own Content-Type: a per-request
            # `headers=` is merged into a new CIMultiDict with the session's on every
            # call (aiohttp's _prepare_headers). Same header on the wire.
            data=BytesPayload(
                b'{"ticket":{"status":"' + status.encode() + b'"}}', content_type=_JSON
            ),
        )
        return _status_answer(data, ticket_id, status)

    async def get_ticket(self, ticket_id: str) -> dict[str, Any]:
        """`GET /support/tickets/v1/{id}`, as the server sent it; the reader checks its shape."""
        if not UUID_PATTERN.fullmatch(ticket_id):
            raise FatalRequestError(f"refusing to read: {ticket_id!r} is not a canonical UUID")
        return await self._call(
            "GET", URL(f"{self._base}/support/tickets/v1/{ticket_id}", encoded=True)
        )

    async def list_page(
        self, location: str, *, order: str, limit: int = 100, token: str | None = None
    ) -> dict[str, Any]:
        """One page of a location's tickets, as the server sent it; the listing checks its shape."""
        params = {"locationRef": location, "limit": str(limit), "order": order}
        if token:
            params["nextPageToken"] = token
        return await self._call("GET", f"{self._base}/support/tickets/v1", params=params)
