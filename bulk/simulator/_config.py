"""The simulator's settings (SimConfig), the demo credentials, and the checks on both.

`SimConfig` is read on every request, so changing a field while serving (by hand or
through `schedule`) takes effect at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

__all__ = [
    "DEMO_ACCESS_TOKEN",
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "DEMO_NETWORK_ID",
    "DEMO_REFRESH_TOKEN",
    "DEMO_USER_ID",
    "WINDOWS",
    "SimConfig",
    "check_changes",
    "check_window",
]

DEMO_CLIENT_ID = "demo-client"
DEMO_CLIENT_SECRET = "demo-secret"
DEMO_ACCESS_TOKEN = "demo-token"
DEMO_NETWORK_ID = "0f1e2d3c-4b5a-4697-8877-665544332211"
DEMO_REFRESH_TOKEN = "demo-refresh-token"
# The user behind the OAuth client: the author of the comments it posts.
DEMO_USER_ID = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f70819"
WINDOWS = ("bucket", "fixed", "sliding")


@dataclass
class SimConfig:
    client_id: str = DEMO_CLIENT_ID
    client_secret: str = DEMO_CLIENT_SECRET
    access_token: str = DEMO_ACCESS_TOKEN
    network_id: str = DEMO_NETWORK_ID
    rate: float | None = 10.0  # requests/s per client identity, as documented; None: no limit
    burst: int | None = None  # token-bucket size; None: max(1, ceil(rate))
    # How the rate is enforced, per client identity: "bucket" (token bucket of `burst`),
    # "fixed" (floor(rate) per 1-second window counted from the server's start) or "sliding"
    # (floor(rate) in any trailing second). The windows allow at least 1 request per second.
    window: str = "bucket"
    retry_after: bool = False  # the real API documents no Retry-After; clients must cope either way
    # Another client of the same credentials (the limit is per client) sending this many
    # requests a second, evenly from each identity's first request on; each takes a slot of
    # the limit when one is free and is dropped otherwise. Not logged; counted in `background`.
    background_rate: float = 0.0
    latency: float = 0.0  # seconds before every answer that gets past auth and rate limit
    jitter: float = 0.0  # up to this many more seconds, uniformly
    error_rate: float = 0.0  # share of GET/PUT answered 500, 502 or 503 without doing the work
    drop_rate: float = 0.0  # share of GET/PUT whose connection is closed without an answer
    slow_rate: float = 0.0  # share of GET/PUT that wait slow_seconds first (then do the work)
    slow_seconds: float = 5.0
    # Writes (PUT, PATCH, POST, DELETE) that are applied and then lose their answer: the
    # connection closed without one, or a 500/502/503. The client cannot tell these from the
    # faults above, which do no work: the "unknown outcome" a retried POST must not repeat.
    drop_after_rate: float = 0.0
    error_after_rate: float = 0.0
    # OAuth2 (see _oauth): the first refresh token, the lifetime of the access tokens issued
    # for it, whether each refresh hands out a new refresh token (the old one then stops
    # working), and a switch that makes every refresh fail (400 invalid_grant).
    refresh_token: str = DEMO_REFRESH_TOKEN
    token_lifetime: float = 3600.0
    rotate_refresh_tokens: bool = True
    refresh_fails: bool = False
    user_id: str = DEMO_USER_ID
    seed: int | None = None  # makes the fault choices repeatable
    # Answers the real API may give (its spec documents only 400 for these calls):
    same_status_400: bool = False  # a PUT of the status the ticket already has: 400
    unknown_400: bool = False  # an unknown ticket: 400 (saying so) instead of 404
    # A comment's text stored in Unicode's composed form (NFC), as many servers store text:
    # a file from macOS holds `é` as `e` and a combining accent. The 201 says what was kept.
    comments_nfc: bool = False
    # (share, second): `second` s after the first request, an agent reopens that share of
    # the tickets PUTs had changed (see _agent.py); None: nobody else touches the tickets.
    agent_reopen: tuple[float, float] | None = None
    # (seconds after the first request, {field: value}): each applied once, when its time has
    # come, e.g. [(30, {"rate": 5}), (60, {"client_secret": "revoked"})].
    schedule: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_window(self.window)
        for _, changes in self.schedule:
            check_changes(changes)


_CONFIG_FIELDS = frozenset(f.name for f in fields(SimConfig))


def check_window(window: str) -> None:
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {WINDOWS}, got {window!r}")


def check_changes(changes: dict[str, Any]) -> None:
    unknown = set(changes) - _CONFIG_FIELDS
    if unknown or "schedule" in changes:
        raise ValueError(f"a scheduled change may only set SimConfig fields, got {changes!r}")
    if "window" in changes:
        check_window(changes["window"])
