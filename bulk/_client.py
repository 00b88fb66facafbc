"""The HTTP side: one aiohttp session per run, one method per API call used."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp

from ._config import Credentials
from ._errors import FatalRequestError, RequestError, classify_exception, classify_response
from ._version import __version__

__all__ = ["Answer", "TicketClient"]

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


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

    async def set_status(self, ticket_id: str, status: str) -> Answer:
        """PUT the status; return the answer or raise a classified `RequestError`."""
        # The plan has validated ids already; checking again here means no
        # code path can put an unchecked string into a URL.
        if not _UUID.fullmatch(ticket_id):
            raise FatalRequestError(f"refusing to send: {ticket_id!r} is not a canonical UUID")
        assert self._session is not None, "use TicketClient as an async context manager"
        url = f"{self._base}/support/tickets/v1/{ticket_id}/status"
        body = b'{"ticket":{"status":"' + status.encode() + b'"}}'
        try:
            async with self._session.put(
                url, data=body, headers={"Content-Type": "application/json"}
            ) as response:
                payload = await response.read()
                code = response.status
                if not 200 <= code < 300:
                    raise classify_response(code, payload, response.headers)
        except RequestError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise classify_exception(exc) from None
        try:
            data = json.loads(payload) if payload else None
        except ValueError:
            data = None
        previous = _dig(data, "activity", "data", "previousAttributes", "status")
        activity = _dig(data, "activity", "id")
        return Answer(
            code,
            previous if isinstance(previous, str) else None,
            activity if isinstance(activity, str) else None,
        )
