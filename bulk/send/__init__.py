"""Sending: the aiohttp client for the ticket calls and the classifier of what went wrong.

The engine, the pacing and the retry policy are to move here too.
"""

from ._classify import classify_exception, classify_response, parse_retry_after
from ._client import MAX_ANSWER, Answer, TicketClient

__all__ = [
    "MAX_ANSWER",
    "Answer",
    "TicketClient",
    "classify_exception",
    "classify_response",
    "parse_retry_after",
]
