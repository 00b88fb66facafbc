"""What went wrong with a request, decided in one place.

One request's failure is classified from the response (or the exception) by
`classify_response` / `classify_exception` into one of the `RequestError`
classes of `bulk._core._exceptions`, so the engine only asks "retry, fail
the row, or stop the run?".
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Mapping

from yarl import URL

from .._core._exceptions import (
    CredentialsRejected,
    FatalRequestError,
    NotFound,
    RequestError,
    RetriableError,
    UnexpectedAnswer,
)
from .._core._text import clean_text

__all__ = [
    "MAX_RETRY_AFTER",
    "classify_exception",
    "classify_response",
    "is_ambiguous",
    "parse_retry_after",
]

# Long server messages are cut so a report cell stays readable.
_MAX_MESSAGE = 300


def _message_from_body(status: int, body: bytes) -> str:
    # The API documents errors as {"message", "type"}; anything else (a proxy's
    # HTML page, say) is reduced to the status line rather than dumped raw.
    text = ""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested too deep
        data = None
    if isinstance(data, dict):
        kind = data.get("type")
        msg = data.get("message")
        parts = [str(p) for p in (kind, msg) if p]
        text = clean_text(": ".join(parts), _MAX_MESSAGE)
    return f"HTTP {status}" + (f" {text}" if text else "")


def _redirect_target(location: str | None) -> str:
    """The host a redirect points at, and only that: a path or query may carry anything."""
    if not location:
        return "no Location"
    try:
        url = URL(location)
        host = url.raw_host  # IDNA form: a look-alike Unicode host shows as xn--...
        port = url.explicit_port
    except ValueError:
        return "an unreadable Location"
    if not host:
        return "a path on the same host"
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return clean_text(f"{host}:{port}" if port else host, 300)


# Honoured up to this: a proxy's "Retry-After: 86400" must not park a batch
# (and a graceful stop) for a day; past it, backoff and the 429 budget decide.
MAX_RETRY_AFTER = 300.0


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), capped."""
    seconds = _retry_after(value, now)
    return None if seconds is None or seconds != seconds else min(seconds, MAX_RETRY_AFTER)


def _retry_after(value: str | None, now: float | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def classify_response(
    status: int, body: bytes, headers: Mapping[str, str], expect: int = 200
) -> RequestError:
    """Turn an answer other than the `expect`ed one into the error the engine acts on."""
    if status < 300:
        # Each call's success has one status (200, or a comment's 201, a PATCH's 204);
        # another 2xx proves nothing.
        return UnexpectedAnswer(f"HTTP {status}, not {expect}", status)
    if status < 400:
        # Never followed: a PUT re-sent to wherever a redirect says would carry
        # the credentials there, and that host's 200 would count as ours.
        target = _redirect_target(headers.get("Location"))
        return UnexpectedAnswer(f"redirect ({status}) to {target} — not followed", status)
    message = _message_from_body(status, body)
    if status in (408, 429) or status >= 500:
        return RetriableError(message, status, parse_retry_after(headers.get("Retry-After")))
    if status in (401, 403):
        return CredentialsRejected(message, status)
    if status == 404 or (status == 400 and _UNKNOWN_TICKET.search(message)):
        shown = message if "not found" in message.lower() else f"not found: {message}"
        return NotFound(shown, status)
    return FatalRequestError(message, status)


# The published spec documents only 400 for the ticket calls, so a server may
# say "unknown ticket" with a 400 as well as a 404: both read as not found.
_UNKNOWN_TICKET = re.compile(
    r"not ?found|unknown ticket|no such ticket|does not exist|doesn't exist", re.IGNORECASE
)


def is_ambiguous(error: RequestError) -> bool:
    """A 400 that is not "not found": the API may refuse a status the ticket already has
    (undocumented), so only reading the ticket tells a harmless re-send from a real refusal."""
    return error.http_status == 400 and not isinstance(error, NotFound)


def classify_exception(exc: BaseException) -> RequestError:
    """Timeouts and connection failures are retriable; the message names the kind only.

    aiohttp's exception texts can carry the request's URL and, for some
    errors, its headers; only the class name and the OS error reach the report.
    """
    if isinstance(exc, TimeoutError):
        return RetriableError("timeout: no answer within the request timeout")
    reason = type(exc).__name__
    errno_text = getattr(exc, "strerror", None)
    if errno_text:
        reason = f"{reason}: {errno_text}"
    return RetriableError(f"connection error: {reason}")
