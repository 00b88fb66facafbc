"""The per-client rate limit (token bucket, fixed or sliding window), the background client
that shares it, and the scheduled changes to the configuration.

Both read the `SimConfig` they are given on every call, so a change (by hand or by
schedule) applies to the next request.
"""

from __future__ import annotations

import math
from collections import Counter, deque

from ._config import SimConfig, check_changes, check_window

__all__ = ["RateLimiter", "Schedule"]

_BACKGROUND_MEMORY = 10.0  # seconds of background requests replayed at most


class RateLimiter:
    """Rate-limit state per client identity, one table per window mode.

    `started` is where fixed windows are counted from; the server resets it when it starts.
    """

    def __init__(self, started: float) -> None:
        self.started = started
        self.background: Counter[str] = Counter()  # background requests "admitted" / "refused"
        self._buckets: dict[str, tuple[float, float]] = {}  # tokens, last refill
        self._fixed: dict[str, tuple[int, int]] = {}  # window number, requests in it
        self._sliding: dict[str, deque[float]] = {}  # times of the requests let through
        self._background_next: dict[str, float] = {}  # the next background request, per identity

    def limit(self, config: SimConfig, identity: str, now: float) -> float:
        """Let one request of `identity` through: return 0, or the seconds until one may pass."""
        self._background_until(config, identity, now)
        return self._admit(config, identity, now)

    def _background_until(self, config: SimConfig, identity: str, now: float) -> None:
        """Play the background client's requests due by `now`, in order, through the limit."""
        rate = config.background_rate
        due = self._background_next.setdefault(identity, now)
        if rate <= 0:
            self._background_next[identity] = now
            return
        # Older than this, the limiter's state no longer depends on them: skip, do not replay.
        due = max(due, now - _BACKGROUND_MEMORY)
        while due <= now:
            admitted = self._admit(config, identity, due) == 0
            self.background["admitted" if admitted else "refused"] += 1
            due += 1.0 / rate
        self._background_next[identity] = due

    def _admit(self, config: SimConfig, identity: str, now: float) -> float:
        rate = config.rate
        if rate is None:
            return 0.0
        window = config.window
        if window == "bucket":
            return self._take_token(identity, rate, config.burst, now)
        per_second = max(1, math.floor(rate))
        if window == "fixed":
            return self._fixed_window(identity, per_second, now)
        if window == "sliding":
            return self._sliding_window(identity, per_second, now)
        check_window(window)
        raise AssertionError("unreachable")

    def _take_token(self, identity: str, rate: float, burst: int | None, now: float) -> float:
        """Spend one token of the identity's bucket; return 0, or the seconds until one is due."""
        capacity = float(burst or max(1, math.ceil(rate)))
        tokens, last = self._buckets.get(identity, (capacity, now))
        # The clamp also applies a lowered rate (hence capacity) at once.
        tokens = min(capacity, tokens + max(0.0, now - last) * rate)
        if tokens >= 1:
            self._buckets[identity] = (tokens - 1, now)
            return 0.0
        self._buckets[identity] = (tokens, now)
        return (1 - tokens) / rate if rate > 0 else math.inf

    def _fixed_window(self, identity: str, per_second: int, now: float) -> float:
        number = math.floor(now - self.started)
        seen, count = self._fixed.get(identity, (number, 0))
        count = count if seen == number else 0
        if count < per_second:
            self._fixed[identity] = (number, count + 1)
            return 0.0
        self._fixed[identity] = (number, count)
        return self.started + number + 1 - now

    def _sliding_window(self, identity: str, per_second: int, now: float) -> float:
        times = self._sliding.setdefault(identity, deque())
        while times and times[0] <= now - 1:
            times.popleft()
        if len(times) < per_second:
            times.append(now)
            return 0.0
        # After `rate` was lowered there may be more than allowed; the oldest must leave.
        return times[len(times) - per_second] + 1 - now


class Schedule:
    """Applies `config.schedule`'s changes once each, by seconds after the first request."""

    def __init__(self) -> None:
        self._first_request: float | None = None
        self._applied: set[int] = set()  # indices of config.schedule already applied

    def apply(self, config: SimConfig, now: float) -> None:
        if self._first_request is None:
            self._first_request = now
        schedule = config.schedule
        if len(self._applied) >= len(schedule):
            return
        elapsed = now - self._first_request
        for index, (after, changes) in enumerate(schedule):
            if index not in self._applied and elapsed >= after:
                check_changes(changes)
                self._applied.add(index)
                for name, value in changes.items():
                    setattr(config, name, value)
