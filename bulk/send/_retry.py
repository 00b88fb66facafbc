"""The retry policy, one for every request bulk sends: a status change or a listing page.

Tenacity does the looping; what is bulk's own is the budget (429s counted
apart from real failures) and the wait (full jitter, never shorter than a
server's Retry-After). The engine and the job listing both build their loops
here, so a change of policy reaches both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_random_exponential,
)

from .._core._exceptions import RetriableError

__all__ = ["MAX_THROTTLED", "AttemptBudget", "WaitRetryAfter", "retrying"]

# 429s are the pool's pace, not the row's fault: they have their own, larger budget.
MAX_THROTTLED = 50


class WaitRetryAfter:
    """Full-jitter exponential backoff, but never shorter than a server's Retry-After."""

    def __init__(self, base: float, cap: float) -> None:
        self._jitter = wait_random_exponential(multiplier=base, max=cap)

    def __call__(self, state: RetryCallState) -> float:
        wait = float(self._jitter(state))
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetriableError) and exc.retry_after is not None:
            wait = max(wait, exc.retry_after)
        return wait


class AttemptBudget:
    """Tenacity `stop`: `max_attempts` for real failures; 429s count apart, up to their own cap.

    A 429 is the pool's pace, not the row's fault, so it must not use up the
    row's attempts; the separate cap still ends a row the server never admits.
    """

    def __init__(self, max_attempts: int, max_throttled: int) -> None:
        self._max_attempts = max_attempts
        self._max_throttled = max_throttled
        self.throttled = 0

    def __call__(self, state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetriableError) and exc.http_status == 429:
            self.throttled += 1
            return self.throttled >= self._max_throttled
        return state.attempt_number - self.throttled >= self._max_attempts


def retrying(
    max_attempts: int,
    *,
    max_throttled: int = MAX_THROTTLED,
    backoff_base: float = 0.5,
    backoff_max: float = 30.0,
    sleep: Callable[[float], Awaitable[Any]] | None = None,
) -> AsyncRetrying:
    """A fresh retry loop (it holds one request's budget): retriable errors only, the last re-raised.

    `sleep`: the engine's wait, which ends early when the run stops.
    """
    extra: dict[str, Any] = {} if sleep is None else {"sleep": sleep}
    return AsyncRetrying(
        stop=AttemptBudget(max_attempts, max_throttled),
        wait=WaitRetryAfter(backoff_base, backoff_max),
        retry=retry_if_exception_type(RetriableError),
        reraise=True,
        **extra,
    )
