"""Sending: the anyio worker pool, its pacing and retry policy, the aiohttp client, the classifier.

The engine takes planned rows from the journal and records each outcome
there; the client makes one request and proves its answer; the classifier
says retry, fail the row, or stop; the retry policy is shared with the job
listing.
"""

from ._change_calls import ChangeClient
from ._changes import ChangeRunner
from ._classify import classify_exception, classify_response, is_ambiguous, parse_retry_after
from ._client import MAX_ANSWER, Answer, TicketClient
from ._engine import Engine, EngineSettings
from ._guard import guarding
from ._pacing import Pacer, RateController
from ._read import PAGE_SIZE, Read, Reader, TicketState, resolving, ticket_state, zoned
from ._retry import MAX_THROTTLED, AttemptBudget, WaitRetryAfter, retrying
from ._seconds import PerSecond
from ._stats import NoProgress, Progress, Stats

__all__ = [
    "MAX_ANSWER",
    "MAX_THROTTLED",
    "PAGE_SIZE",
    "Answer",
    "AttemptBudget",
    "ChangeClient",
    "ChangeRunner",
    "Engine",
    "EngineSettings",
    "NoProgress",
    "Pacer",
    "PerSecond",
    "Progress",
    "RateController",
    "Read",
    "Reader",
    "Stats",
    "TicketClient",
    "TicketState",
    "WaitRetryAfter",
    "classify_exception",
    "classify_response",
    "guarding",
    "is_ambiguous",
    "parse_retry_after",
    "resolving",
    "retrying",
    "ticket_state",
    "zoned",
]
