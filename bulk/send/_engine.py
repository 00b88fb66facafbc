"""The worker pool: a bounded stream feeding N workers, each request paced and retried.

`Engine` owns its task group and stream for the length of one `run()`; rows
come in batches from the journal (never all at once) and each outcome goes
back to the journal as it happens. Stopping is cooperative: `stop(reason)`
ends the feed and makes workers leave the rows they hold unsent (they stay
pending in the journal, so a rerun sends them); cancellation from outside is
never swallowed.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream
from tenacity import AsyncRetrying

from .._core._exceptions import (
    ChangedSince,
    CredentialsRejected,
    FatalRequestError,
    RequestError,
    RetriableError,
)
from ..journal import Journal, Outcome
from ._client import Answer
from ._clock import utc_stamp
from ._pacing import RateController
from ._retry import MAX_THROTTLED, retrying
from ._seconds import PerSecond
from ._stats import Stats

log = logging.getLogger("bulk")

__all__ = ["Engine", "EngineSettings", "Stopped"]

Send = Callable[[str, str], Awaitable[Answer]]
T = TypeVar("T")
_FEED_BATCH = 1000
_MIN_AUTO = 8


@dataclass
class EngineSettings:
    concurrency: int | None = 8  # None: chosen from the observed latency (Little's law)
    max_concurrency: int = 64  # the cap for the automatic choice
    max_attempts: int = 6
    max_throttled: int = MAX_THROTTLED
    backoff_base: float = 0.5  # first retry waits up to this many seconds (full jitter)
    backoff_max: float = 30.0
    max_failure_rate: float = 0.2  # stop when more of the recent rows than this failed
    failure_window: int = 100
    failure_min_rows: int = 20
    limit: int | None = None  # send at most this many rows (a canary)

    @property
    def workers(self) -> int:
        return self.concurrency or self.max_concurrency


class Stopped(Exception):
    """Raised inside a row's retry loop once the run is stopping."""


_Stopped = Stopped


def rejected(exc: CredentialsRejected, ticket_id: str, *, fails: bool = True) -> str:
    """Why a 401 or 403 stopped the run; a 403 names its ticket (see `Engine.refused`).

    `fails`: whether that ticket's row fails; a comment's stays pending, as its rerun
    must look for the comment before posting it again.
    """
    reason = f"stopped: credentials rejected ({exc.message})"
    if exc.http_status == 403 and fails:
        reason += (
            f" at ticket {ticket_id}, which fails; if only that ticket is refused, rerunning "
            "the same command sends the rest"
        )
    elif exc.http_status == 403:
        reason += f" at ticket {ticket_id}, which stays pending"
    return reason


class Engine:
    def __init__(
        self,
        journal: Journal,
        send: Send,
        pacer: RateController,
        settings: EngineSettings,
        stats: Stats | None = None,
        seconds: PerSecond | None = None,
    ) -> None:
        self._journal = journal
        self._seconds = seconds
        self._send = send
        self._pacer = pacer
        self._settings = settings
        self.stats = stats or Stats()
        self.stop_reason: str | None = None
        self._stopping = anyio.Event()
        self._stop_flag = False
        # Waits for a send slot (a Retry-After hold can be long) end when the run stops.
        pacer.set_sleep(self._sleep)
        self._recent: deque[bool] = deque(maxlen=settings.failure_window)
        self._recent_failed = 0  # failures in `_recent`, kept as rows come and go
        self._latency = 0.0  # moving average of one request's time, seconds
        self.workers = settings.workers
        # With automatic concurrency, all workers exist but only `total_tokens`
        # of them may hold a row; the limit follows the observed latency.
        self._gate = anyio.CapacityLimiter(settings.concurrency or min(_MIN_AUTO, self.workers))
        self._gated = settings.concurrency is None
        # What a worker does with a row: by default one status PUT; a batch of
        # several changes per row puts its own handler here (send/_changes.py).
        self.handle_row: Callable[[int, str, str], Awaitable[Outcome]] = self._process

    def refused(self, exc: CredentialsRejected, ticket_id: str) -> RequestError:
        """A 401 or 403 stops the run: revoked credentials and a ticket refused to them look
        the same, and safety comes first. The row whose 403 stopped it fails (the others stay
        pending): else every rerun sent that row first and stopped there again (hostile
        review); `bulk retry` sends it once it may be changed."""
        first = not self.stopping
        self.stop(rejected(exc, ticket_id))
        if exc.http_status == 403 and first:
            return FatalRequestError(f"{exc.message}; the run stopped here", 403)
        return exc

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stopping.set()
        self._stop_flag = True  # read on every row: a plain attribute, not an Event call

    @property
    def stopping(self) -> bool:
        return self._stop_flag

    @property
    def rate(self) -> float | None:
        return self._pacer.rate

    @property
    def send_status(self) -> Send:
        """The status PUT rows send (with its 400 resolved by a read): a change runner's too."""
        return self._send

    @property
    def concurrency(self) -> int:
        return int(self._gate.total_tokens)

    async def run(self) -> None:
        send, receive = anyio.create_memory_object_stream[tuple[int, str, str]](self.workers * 2)
        budget = self._settings.limit
        async with anyio.create_task_group() as tg:
            for _ in range(self.workers):
                tg.start_soon(self._worker, receive.clone())
            receive.close()
            async with send:
                after = 0
                while not self.stopping and budget != 0:
                    size = _FEED_BATCH if budget is None else min(budget, _FEED_BATCH)
                    batch = await anyio.to_thread.run_sync(self._journal.pending, after, size)
                    if not batch:
                        break
                    for item in batch:
                        if self.stopping:
                            break
                        # The awaiting forms run an anyio checkpoint per call,
                        # which measured ~15% of a fast run's CPU; the nowait
                        # forms skip it and fall back to waiting when full.
                        try:
                            send.send_nowait(item)
                        except anyio.WouldBlock:
                            await send.send(item)
                    after = batch[-1][0]
                    if budget is not None:
                        budget -= len(batch)

    @staticmethod
    async def _rows(
        receive: MemoryObjectReceiveStream[tuple[int, str, str]],
    ) -> AsyncIterator[tuple[int, str, str]]:
        while True:
            try:
                yield receive.receive_nowait()
            except anyio.WouldBlock:
                try:
                    yield await receive.receive()
                except anyio.EndOfStream:
                    return
            except anyio.EndOfStream:
                return

    async def _worker(self, receive: MemoryObjectReceiveStream[tuple[int, str, str]]) -> None:
        async with receive:
            async for row, ticket_id, status in self._rows(receive):
                if self.stopping:
                    continue  # drain the queue without sending; rows stay pending
                if self._gated:
                    async with self._gate:
                        if self.stopping:
                            continue
                        outcome = await self.handle_row(row, ticket_id, status)
                else:  # a fixed pool: the number of workers is the limit
                    outcome = await self.handle_row(row, ticket_id, status)
                self._journal.record(outcome)
                if outcome[0] is not None:
                    self._note_final(outcome[0] == "failed")

    def _note_final(self, failed: bool) -> None:
        recent = self._recent
        if len(recent) == recent.maxlen:
            self._recent_failed -= recent[0]
        recent.append(failed)
        self._recent_failed += failed
        settings = self._settings
        if len(recent) >= min(settings.failure_min_rows, recent.maxlen or 0):
            failures = self._recent_failed
            if failures / len(recent) > settings.max_failure_rate:
                self.stop(
                    f"stopped: {failures} of the last {len(recent)} rows failed "
                    f"(more than --max-failure-rate {settings.max_failure_rate:g})"
                )

    def _observe_latency(self, seconds: float) -> None:
        """Little's law: in flight = rate x latency; keep enough workers to fill the rate."""
        self._latency = seconds if not self._latency else 0.9 * self._latency + 0.1 * seconds
        if self._settings.concurrency is not None:
            return
        rate = self._pacer.rate
        cap = self._settings.max_concurrency
        wanted = cap if rate is None else math.ceil(rate * self._latency * 1.5) + 2
        # Never below the starting 8: a row waiting out a retry's backoff holds
        # its place, so Little's law alone starves a pool that meets errors.
        wanted = max(min(_MIN_AUTO, cap), min(cap, wanted))
        if wanted != self._gate.total_tokens:
            self._gate.total_tokens = wanted

    async def pause(self, seconds: float) -> None:
        """Wait, ending early when the run stops."""
        await self._sleep(seconds)

    async def _sleep(self, seconds: float) -> None:
        # A retry's wait ends early when the run stops, so a graceful stop is quick.
        with anyio.move_on_after(seconds):
            await self._stopping.wait()

    async def request(
        self,
        row: int,
        sent: list[int],
        call: Callable[..., Awaitable[T]],
        *args: Any,
        retry: bool = True,
    ) -> T:
        """`call(*args)` through the run's pace, and its retry policy unless `retry` is False."""
        try:
            return await self._attempt(row, sent, call, *args)
        except RetriableError as first:
            if not retry:
                raise
            return await self._retry(row, sent, first, call, *args)

    def policy(self) -> AsyncRetrying:
        """A fresh loop of the run's retry policy, its waits ending when the run stops."""
        settings = self._settings
        return retrying(
            settings.max_attempts,
            max_throttled=settings.max_throttled,
            backoff_base=settings.backoff_base,
            backoff_max=settings.backoff_max,
            sleep=self._sleep,
        )

    async def _attempt(
        self,
        row: int,
        sent: list[int],
        call: Callable[..., Awaitable[T]],
        *args: Any,
        again: bool = False,
    ) -> T:
        """One paced request; `sent[0]` counts the requests that actually went out.

        `again` marks a retry of the same call (a row of several changes sends several
        calls, and only a repeated one is a retry).
        """
        slot = await self._pacer.acquire()
        if self.stopping:
            raise _Stopped
        stats = self.stats
        if sent[0] == 0:
            self._journal.mark_started(row)
        if again:
            stats.retries += 1
        sent[0] += 1
        stats.requests += 1
        sent_at = time.monotonic()
        seconds = self._seconds
        try:
            answer = await call(*args)
        except RequestError as exc:
            # An undo's put-back (send/_guard.py) sent requests of its own, in this budget.
            sent[0] += exc.put_backs
            stats.requests += exc.put_backs
            if seconds is not None:
                if isinstance(exc, ChangedSince):  # the PUT was answered: and put back
                    seconds.answered(time.monotonic() - sent_at)
                else:
                    seconds.refused(exc, time.monotonic() - sent_at)
            if not isinstance(exc, RetriableError):
                raise
            if exc.http_status == 429:
                stats.throttled += 1
                self._pacer.on_throttled(exc.retry_after, sent_at=slot)
            log.debug("row %d: attempt %d: %s (will retry)", row, sent[0], exc.message)
            raise
        took = time.monotonic() - sent_at
        if seconds is not None:
            seconds.answered(took)
        self._pacer.on_success()
        self._observe_latency(took)
        return answer

    async def _retry(
        self,
        row: int,
        sent: list[int],
        first: RetriableError,
        call: Callable[..., Awaitable[T]],
        *args: Any,
    ) -> T:
        """After a retriable first failure: tenacity's backoff, budget and Retry-After."""
        replay: RetriableError | None = first
        async for attempt in self.policy():
            with attempt:
                if replay is not None:
                    # Tenacity's attempt 1 is the failure that already happened, so
                    # its numbering, waits and budget count the first request too.
                    failed, replay = replay, None
                    raise failed
                return await self._attempt(row, sent, call, *args, again=True)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _process(self, row: int, ticket_id: str, status: str) -> Outcome:
        stats = self.stats
        sent = [0]
        began = time.monotonic()
        answer: Answer | None = None
        error: RequestError | None = None
        stats.in_flight += 1
        try:
            # Most rows succeed at once; only a failure pays for the retry machinery.
            try:
                answer = await self._attempt(row, sent, self._send, ticket_id, status)
            except RetriableError as first:
                answer = await self._retry(row, sent, first, self._send, ticket_id, status)
        except _Stopped:
            pass
        except CredentialsRejected as exc:
            error = self.refused(exc, ticket_id)
        except RequestError as exc:
            error = exc
        finally:
            stats.in_flight -= 1
        attempts = sent[0]
        elapsed = int((time.monotonic() - began) * 1000)
        now = utc_stamp()
        if answer is not None:
            stats.done += 1
            outcome = "unchanged" if answer.previous_status == status else "updated"
            return Outcome(
                outcome,
                answer.previous_status,
                answer.http_status,
                attempts,
                None,
                answer.activity_id,
                elapsed,
                now,
                row,
            )
        if error is None or isinstance(error, CredentialsRejected):
            # Not the row's fault: it stays pending and a rerun sends it.
            message = error.message if error else None
            http = error.http_status if error else None
            return Outcome(None, None, http, attempts, message, None, None, None, row)
        return self._failed(error, row, attempts, elapsed, now)

    def _failed(
        self, error: RequestError, row: int, attempts: int, elapsed: int, now: str
    ) -> Outcome:
        """The end of a row whose request failed (an undo's guard that put a change back: skipped)."""
        self.stats.done += 1
        if isinstance(error, ChangedSince):
            return Outcome("skipped", None, 200, attempts, error.message, None, elapsed, now, row)
        self.stats.failed += 1
        detail = error.message
        if error.retriable:
            detail = f"{detail} (gave up after {attempts} attempts)"
        return Outcome("failed", None, error.http_status, attempts, detail, None, elapsed, now, row)
