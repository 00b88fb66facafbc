"""The OAuth2 token endpoint (POST /oauth2/token, grant_type=refresh_token) and its tokens.

RFC 6749 section 6: a form-encoded refresh grant, the client authenticated by client_id and
client_secret in the form (or Basic), answered with a JSON token that expires after
SimConfig.token_lifetime seconds of the simulator's clock. With rotation on (the default) each
refresh token works once: the answer carries its successor, so a client that loses it cannot
start again. Errors have RFC 6749's shape ({"error", "error_description"}), not the API's.
The endpoint is outside the API's per-client rate limit and its random faults; a failing
refresh is asked for with SimConfig.refresh_fails.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import secrets
import threading
from collections.abc import Callable

from aiohttp import web

from ._config import SimConfig
from ._http import json_answer

__all__ = ["TOKEN_PATH", "TokenIssuer"]

TOKEN_PATH = "/oauth2/token"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return json_answer(status, {"error": error, "error_description": description}, _NO_STORE)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _basic_client(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, sep, secret = (
            base64.b64decode(value.strip(), validate=True).decode().partition(":")
        )
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (client_id, secret) if sep else None


class TokenIssuer:
    """Live access tokens (with their expiry) and the refresh tokens that still work."""

    def __init__(self, config: Callable[[], SimConfig], clock: Callable[[], float]) -> None:
        # The Simulator's config is read on every request (it may be replaced while serving).
        self._config = config
        self._clock = clock
        self._access: dict[str, float] = {}
        self._refresh: set[str] = {config().refresh_token}
        self._lock = threading.Lock()
        self.refreshes = 0  # access tokens issued
        self.refused = 0  # token requests answered with an error

    def valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._access.get(token)
        return expiry is not None and self._clock() < expiry

    def refresh_tokens(self) -> set[str]:
        """The refresh tokens that would be accepted now."""
        with self._lock:
            return set(self._refresh)

    async def answer(self, request: web.Request) -> web.Response:
        config = self._config()
        problem = await self._refuse(request, config)
        if problem is not None:
            with self._lock:
                self.refused += 1
            return problem
        form = await request.post()
        given = str(form["refresh_token"])
        access, now = secrets.token_urlsafe(32), self._clock()
        with self._lock:
            if given not in self._refresh:  # spent by a concurrent request
                self.refused += 1
                return _oauth_error(400, "invalid_grant", "refresh token is not valid")
            successor = given
            if config.rotate_refresh_tokens:
                successor = secrets.token_urlsafe(32)
                self._refresh.discard(given)
                self._refresh.add(successor)
            self._access = {t: e for t, e in self._access.items() if e > now}
            self._access[access] = now + config.token_lifetime
            self.refreshes += 1
        body = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": max(1, math.ceil(config.token_lifetime)),
            "refresh_token": successor,
            "scope": "support",
        }
        return json_answer(200, body, _NO_STORE)

    async def _refuse(self, request: web.Request, config: SimConfig) -> web.Response | None:
        if request.content_type != "application/x-www-form-urlencoded":
            return _oauth_error(400, "invalid_request", "the body must be form-encoded")
        form = await request.post()
        if form.get("grant_type") != "refresh_token":
            return _oauth_error(400, "unsupported_grant_type", "only refresh_token is served")
        client = _basic_client(request.headers.get("Authorization", ""))
        client_id, secret = client or (
            str(form.get("client_id", "")),
            str(form.get("client_secret", "")),
        )
        if not (_same(client_id, config.client_id) & _same(secret, config.client_secret)):
            return _oauth_error(401, "invalid_client", "client authentication failed")
        given = form.get("refresh_token")
        if config.refresh_fails or not isinstance(given, str) or not self._knows(given):
            return _oauth_error(400, "invalid_grant", "refresh token is not valid")
        return None

    def _knows(self, refresh_token: str) -> bool:
        with self._lock:
            return any(_same(refresh_token, known) for known in self._refresh)
