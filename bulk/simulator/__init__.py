"""An in-memory Spacebring support-ticket API, the test double for everything that talks to it.

It serves the status, assignee and type changes, comments (create, delete), the ticket GET
(with its activities) and the listing GET with the shapes of
spec/spacebring-openapi-support.json, the OAuth2 token endpoint (expiring access tokens,
rotating refresh tokens), the documented auth schemes and per-client rate limit
(token bucket, fixed or sliding window, optionally shared with a background client), optional
latency and faults (5xx, dropped connections, slow answers, and writes applied whose answer is
then lost) so retries and resumes can be exercised on loopback, and scheduled changes ("the limit halves after 30 s", "the credentials
are revoked") to reproduce what goes wrong in the middle of a long run.

It imports nothing from the rest of bulk (an import-linter contract holds it): sharing code
with the client side would let a bug agree with itself.

Modules: _config (SimConfig, demo credentials), _app (Simulator: the routes and request
pipeline), _changes (assignee, type, comments), _oauth (the token endpoint), _http (answers), _limits (rate windows, background load, schedule), _paging (the listing),
_tickets (ticket data), _serve (serving it), _options (`bulk simulate`'s schedule, no click).
"""

from ._app import LoggedRequest, Simulator
from ._changes import COMMENT_PATH
from ._config import (
    DEMO_ACCESS_TOKEN,
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_NETWORK_ID,
    DEMO_REFRESH_TOKEN,
    DEMO_USER_ID,
    WINDOWS,
    SimConfig,
)
from ._oauth import TOKEN_PATH
from ._options import parse_agent, parse_schedule
from ._paging import DEFAULT_LIMIT, DEFAULT_ORDER, MAX_LIMIT, ORDERS
from ._serve import SimulatorThread, demo_env, run_forever, serve
from ._tickets import (
    CSV_COLUMNS,
    LOCATIONS,
    STATUSES,
    TICKET_TYPES,
    load_tickets,
    make_tickets,
    write_tickets,
)

__all__ = [
    "COMMENT_PATH",
    "CSV_COLUMNS",
    "DEFAULT_LIMIT",
    "DEFAULT_ORDER",
    "DEMO_ACCESS_TOKEN",
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "DEMO_NETWORK_ID",
    "DEMO_REFRESH_TOKEN",
    "DEMO_USER_ID",
    "LOCATIONS",
    "MAX_LIMIT",
    "ORDERS",
    "STATUSES",
    "TICKET_TYPES",
    "TOKEN_PATH",
    "WINDOWS",
    "LoggedRequest",
    "SimConfig",
    "Simulator",
    "SimulatorThread",
    "demo_env",
    "load_tickets",
    "make_tickets",
    "parse_agent",
    "parse_schedule",
    "run_forever",
    "serve",
    "write_tickets",
]
