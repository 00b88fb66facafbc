"""The HTTP side: one aiohttp session per run, one method per API call used."""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
from yarl import URL

from ._config import Credentials
from ._errors import FatalRequestError, RequestError, classify_exception, classify_response
from ._plan import STATUSES, UUID_PATTERN
from ._version import __version__

__all__ = ["Answer", "TicketClient"]


@dataclass(frozen=True, slots=True)
class Answer:
    http_status: int
    previous_status: str | None
    activity_id: str | None


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


class TicketClient:
    """`async with TicketClient(...) as client: await client.set_status(id, "closed")`."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        concurrency: int = 8,
        timeout: float = 30.0,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._credentials = credentials
        self._concurrency = concurrency
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> TicketClient:
        # The connector's limit bounds sockets to the pool size; TLS
        # verification stays at aiohttp's default (on).
        connector = aiohttp.TCPConnector(limit=self._concurrency, limit_per_host=self._concurrency)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            headers={
                **self._credentials.headers(),
                "User-Agent": f"bulk/{__version__}",
                "Accept": "application/json",
            },
            raise_for_status=False,
        )
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

    async def _call(self, method: str, url: str | URL, **kwargs: Any) -> tuple[int, Any]:
        """One request; the JSON answer of a 2xx, or a classified `RequestError`."""
        assert self._session is not None, "use TicketClient as an async context manager"
        try:
            async with self._session.request(method, url, **kwargs) as response:
                payload = await response.read()
                code = response.status
                if not 200 <= code < 300:
                    raise classify_response(code, payload, response.headers)
        except RequestError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise classify_exception(exc) from None
        try:
            return code, json.loads(payload) if payload else None
        except ValueError:
            return code, None

    async def set_status(self, ticket_id: str, status: str) -> Answer:
        """PUT the status; return the answer or raise a classified `RequestError`."""
        # The plan has validated ids already; checking again here means no
        # code path can put an unchecked string into a URL.
        if not UUID_PATTERN.fullmatch(ticket_id):
            raise FatalRequestError(f"refusing to send: {ticket_id!r} is not a canonical UUID")
        if status not in STATUSES:
            raise FatalRequestError(f"refusing to send: {status!r} is not a status")
        code, data = await self._call(
            "PUT",
            # Already safe (a checked UUID): encoded=True spares yarl re-parsing it.
            URL(f"{self._base}/support/tickets/v1/{ticket_id}/status", encoded=True),
            data=b'{"ticket":{"status":"' + status.encode() + b'"}}',
            headers={"Content-Type": "application/json"},
        )
        previous = _dig(data, "activity", "data", "previousAttributes", "status")
        activity = _dig(data, "activity", "id")
        return Answer(
            code,
            previous if isinstance(previous, str) else None,
            activity if isinstance(activity, str) else None,
        )

    async def list_page(
        self, location: str, *, order: str, limit: int = 100, token: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a location's tickets and the cursor of the next (None on the last)."""
        params = {"locationRef": location, "limit": str(limit), "order": order}
        if token:
            params["nextPageToken"] = token
        _, data = await self._call("GET", f"{self._base}/support/tickets/v1", params=params)
        tickets = _dig(data, "tickets")
        if not isinstance(tickets, list):
            raise FatalRequestError("listing answer has no 'tickets' list")
        following = _dig(data, "nextPageToken")
        return [t for t in tickets if isinstance(t, dict)], following or None
