"""OAuth2 access tokens for a run: fetched with the refresh grant, renewed before they expire.

Why not a library: the aiohttp OAuth2 packages (aiohttp-oauth2-client, aio-alf, a session
subclass over oauthlib) fetch and attach tokens, but none keeps one refresh in flight for a
pool of workers, persists a rotated refresh token atomically, or lets the answer of the token
endpoint go through bulk's own checks (bounded read, no redirect, nothing of it echoed). What
is left is RFC 6749 section 6: a four-field form and a three-field JSON answer.

Rate budget: a refresh does not take a slot of the run's pace. The documented limit is per
client on the API's calls, and the simulator (like common OAuth servers) does not count the
token endpoint; a refresh happens once per token lifetime (or after a 401), so even if the
API did count it, it would cost one request an hour.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread

from .._core._config import RefreshGrant, save_refresh_token
from .._core._exceptions import CredentialsRejected, RetriableError, UsageError
from .._core._text import hide_secrets, printable
from ._retry import retrying

__all__ = ["REFRESH_AHEAD", "PostForm", "TokenProvider"]

log = logging.getLogger("bulk")

# Renew this long before expiry (at most a tenth of the lifetime, for short-lived tokens), so
# a request in flight does not carry a token that runs out on the way.
REFRESH_AHEAD = 60.0
# Without expires_in (RFC 6749 makes it only RECOMMENDED): the documented lifetime.
_DEFAULT_LIFETIME = 3600.0
# Refreshes at most this often, whatever a token endpoint says of its tokens' lifetime.
_SHORTEST_LIFETIME = 1.0
# Transient failures of the token endpoint (5xx, 429, timeouts, resets) are retried this often.
_ATTEMPTS = 4
_HEADER_SAFE = re.compile(r"[\x21-\x7e]{1,8000}")
_ERROR_CODE = re.compile(r"[a-z_]{1,40}")

# POSTs a form, returning (HTTP status, content type, body at most 1 MiB); the client's.
PostForm = Callable[[dict[str, str]], Awaitable[tuple[int, str, bytes]]]


class TokenProvider:
    """The Authorization header of each request, renewed once for everyone who needs it."""

    def __init__(
        self,
        grant: RefreshGrant,
        post_form: PostForm,
        *,
        api: str,
        clock: Callable[[], float] = time.monotonic,
        backoff: float = 0.5,
    ) -> None:
        self._grant = grant
        self._post_form = post_form
        self._api = api  # the API root post_form sends to: the issuer of rotated tokens
        self._clock = clock
        self._backoff = backoff
        self._lock = anyio.Lock()
        self._refresh_token = grant.refresh_token
        self._access: str | None = None
        self._renew_at = 0.0
        self.refreshes = 0
        self._warned = False

    def __repr__(self) -> str:
        return f"TokenProvider(refreshes={self.refreshes}, <hidden>)"

    async def authorization(self) -> str:
        """`Bearer <token>`, refreshed first when it is missing or about to expire."""
        if self._access is None or self._clock() >= self._renew_at:
            await self._renew(self._access)
        assert self._access is not None
        return f"Bearer {self._access}"

    async def after_rejection(self, rejected: str) -> str:
        """The header to resend with after a 401 answered `rejected` (an `authorization()`).

        Refreshed unless another request already did meanwhile: many requests in flight may
        be refused for one expired token, and one refresh serves them all.
        """
        await self._renew(rejected.removeprefix("Bearer "), forced=True)
        assert self._access is not None
        return f"Bearer {self._access}"

    async def _renew(self, stale: str | None, *, forced: bool = False) -> None:
        async with self._lock:
            # Someone refreshed while this request waited for the lock.
            fresh = self._access is not None and self._access != stale
            if fresh and (forced or self._clock() < self._renew_at):
                return
            await self._refresh()

    async def _refresh(self) -> None:
        policy = retrying(_ATTEMPTS, max_throttled=_ATTEMPTS, backoff_base=self._backoff)
        try:
            async for attempt in policy:
                with attempt:
                    answer = await self._ask()
        except RetriableError as exc:
            raise CredentialsRejected(
                f"token refresh failed: {exc.message}", exc.http_status
            ) from None
        await self._accept(answer)

    async def _ask(self) -> dict[str, Any]:
        """One request to the token endpoint: the answer's JSON object, or a classified error."""
        # A connection failure or timeout arrives as the client's RetriableError.
        form = self._grant.form(self._refresh_token)
        status, content_type, body = await self._post_form(form)
        if status == 429 or status >= 500:
            raise RetriableError(f"token endpoint answered HTTP {status}", status)
        data = _json(body) if "json" in content_type else None
        if status != 200:
            # Only RFC 6749's error code is shown: a description could echo what was sent.
            code = data.get("error") if isinstance(data, dict) else None
            shown = f" {code}" if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else ""
            raise CredentialsRejected(f"token refresh refused: HTTP {status}{shown}", status)
        if not isinstance(data, dict):
            raise CredentialsRejected("token refresh: the answer is not a JSON object", status)
        return data

    async def _accept(self, data: dict[str, Any]) -> None:
        access, kind = data.get("access_token"), data.get("token_type")
        if not isinstance(access, str) or not _HEADER_SAFE.fullmatch(access):
            raise CredentialsRejected("token refresh: no usable access_token in the answer", 200)
        if not isinstance(kind, str) or kind.lower() != "bearer":
            raise CredentialsRejected("token refresh: the token is not a Bearer token", 200)
        lifetime = _lifetime(data.get("expires_in"))
        rotated = data.get("refresh_token")
        if isinstance(rotated, str) and rotated != self._refresh_token:
            if not _HEADER_SAFE.fullmatch(rotated):
                raise CredentialsRejected("token refresh: the new refresh token is malformed", 200)
            self._refresh_token = rotated
            hide_secrets(rotated, rotating="refresh")
            await self._keep(rotated)
        now = self._clock()
        hide_secrets(access, rotating="access")
        self._access = access
        self._renew_at = now + lifetime - min(REFRESH_AHEAD, lifetime / 10)
        self.refreshes += 1
        log.info("OAuth access token refreshed (valid %.0f s)", lifetime)

    async def _keep(self, rotated: str) -> None:
        """The rotated refresh token into the token file: the spent one no longer works."""
        path = self._grant.token_file
        if path is None:
            if not self._warned:
                self._warned = True
                log.warning(
                    "the API rotated the refresh token and SPACEBRING_TOKEN_FILE is not set: "
                    "the next run cannot start with SPACEBRING_REFRESH_TOKEN (set "
                    "SPACEBRING_TOKEN_FILE to keep it)"
                )
            return
        try:
            await anyio.to_thread.run_sync(save_refresh_token, path, rotated, self._api)
        except (OSError, UsageError) as exc:
            # The run goes on with the token in memory; the next one will need a new grant.
            # A UsageError names no secret: a token file another API's token took meanwhile.
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            log.error(
                "could not keep the rotated refresh token in %s (%s): the next run will need a "
                "new refresh token",
                printable(path, 200),
                reason,
            )


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _lifetime(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _DEFAULT_LIFETIME
    seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        return _DEFAULT_LIFETIME
    # `expires_in: 1e-9` had bulk refresh before every request (hostile review); a token
    # that truly ends sooner than this is refreshed on its 401 instead.
    return max(seconds, _SHORTEST_LIFETIME)
