"""The engine on its own: a fake `send`, a fake clock for the pacing, a real journal.

The fake send answers each ticket from a script (an `Answer`, or one of the
classifier's errors to raise), so retries, attempt budgets and the reasons to
stop are driven row by row, without a socket. The rate controller runs on a
fake clock that moves a millisecond per request, so its decisions do not
depend on how busy the machine is.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel

from bulk import CredentialsRejected, FatalRequestError, RequestError, RetriableError
from bulk.journal import Journal
from bulk.send import Answer, Engine, EngineSettings, Pacer, RateController
from bulk.send._engine import rejected

from ..support import FAST, FakeClock, plan, to_send

IDS = [str(uuid.UUID(int=n + 1)) for n in range(100)]
Reply = Answer | RequestError


class FakeSend:
    """The engine's `send`: each ticket's scripted replies in turn, then a success."""

    def __init__(self, clock: FakeClock, replies: dict[str, list[Reply]] | None = None) -> None:
        self.clock = clock
        self.replies = {ticket: list(script) for ticket, script in (replies or {}).items()}
        self.calls: list[str] = []
        # Runs at the start of each call: a test's way to act mid-run.
        self.hook: Callable[[str], Awaitable[None]] | None = None

    async def __call__(self, ticket_id: str, status: str) -> Answer:
        self.calls.append(ticket_id)
        self.clock.now += 0.001  # a request takes a (fake) millisecond
        if self.hook is not None:
            await self.hook(ticket_id)
        await anyio.lowlevel.checkpoint()  # a real request always gives way to the others
        script = self.replies.get(ticket_id)
        reply = script.pop(0) if script else Answer(200, "new", str(uuid.uuid4()))
        if isinstance(reply, RequestError):
            raise reply
        return reply


def make_engine(
    journal: Journal, send: FakeSend, clock: Callable[[], float] | None = None, **settings: Any
) -> tuple[Engine, RateController]:
    """An engine over `journal`; `settings` override EngineSettings (4 workers, fast backoff)."""
    tick = clock or send.clock
    controller = RateController(Pacer(None, clock=tick), None, clock=tick)
    options: dict[str, Any] = {"concurrency": 4, **FAST, **settings}
    return Engine(journal, send, controller, EngineSettings(**options)), controller


async def drive(engine: Engine, journal: Journal) -> None:
    """One run as the batch runs it: the writer started, the engine run, every outcome flushed."""
    journal.start_writer()
    try:
        await engine.run()
    finally:
        await anyio.to_thread.run_sync(journal.close_writer)


def planned(journal: Journal, n: int) -> list[str]:
    ids = IDS[:n]
    plan(journal, [to_send(row, ticket) for row, ticket in enumerate(ids, 1)])
    return ids


Row = dict[str, Any]


def report(journal: Journal) -> list[Row]:
    columns = ("row", "outcome", "previous_status", "http_status", "attempts", "error")
    rows = journal.report_rows(columns, pending_reason="pending")
    return [dict(zip(columns, r, strict=True)) for batch in rows for r in batch]


async def test_each_pending_row_is_sent_once_and_recorded(journal: Journal) -> None:
    ids = planned(journal, 30)
    clock = FakeClock()
    # The server says which tickets were at the target already.
    send = FakeSend(clock, {t: [Answer(200, "closed", None)] for t in ids[::3]})
    engine, _ = make_engine(journal, send)
    await drive(engine, journal)
    assert sorted(send.calls) == sorted(ids)
    rows = report(journal)
    assert [r["outcome"] for r in rows] == ["unchanged", "updated", "updated"] * 10
    assert {(r["http_status"], r["attempts"], r["error"]) for r in rows} == {(200, 1, None)}
    assert [r["previous_status"] for r in rows[:2]] == ["closed", "new"]
    assert engine.stop_reason is None
    stats = engine.stats
    assert (stats.done, stats.failed, stats.requests, stats.retries) == (30, 0, 30, 0)
    assert stats.in_flight == 0


async def test_a_retriable_error_is_retried_until_the_row_succeeds(journal: Journal) -> None:
    ids = planned(journal, 3)
    faults: list[Reply] = [RetriableError("HTTP 503 internal", 503), RetriableError("timeout")]
    send = FakeSend(FakeClock(), {ids[1]: faults})
    engine, _ = make_engine(journal, send, max_attempts=3)
    await drive(engine, journal)
    assert send.calls.count(ids[1]) == 3
    rows = report(journal)
    assert [r["outcome"] for r in rows] == ["updated"] * 3
    assert [r["attempts"] for r in rows] == [1, 3, 1]
    assert (engine.stats.requests, engine.stats.retries) == (5, 2)


async def test_retries_end_at_the_attempt_budget(journal: Journal) -> None:
    ids = planned(journal, 2)
    always: list[Reply] = [RetriableError("HTTP 502 internal", 502) for _ in range(10)]
    send = FakeSend(FakeClock(), {ids[0]: always})
    engine, _ = make_engine(journal, send, max_attempts=4)
    await drive(engine, journal)
    assert send.calls.count(ids[0]) == 4
    first, second = report(journal)
    assert (first["outcome"], first["attempts"], first["http_status"]) == ("failed", 4, 502)
    assert first["error"] == "HTTP 502 internal (gave up after 4 attempts)"
    assert second["outcome"] == "updated"
    assert (engine.stats.failed, engine.stop_reason) == (1, None)


async def test_429s_do_not_use_up_the_row_attempts_but_have_a_cap_of_their_own(
    journal: Journal,
) -> None:
    ids = planned(journal, 2)
    clock = FakeClock()
    throttled: list[Reply] = [RetriableError("HTTP 429", 429) for _ in range(5)]
    never: list[Reply] = [RetriableError("HTTP 429", 429) for _ in range(20)]
    send = FakeSend(clock, {ids[0]: throttled, ids[1]: never})
    engine, controller = make_engine(journal, send, max_attempts=2, max_throttled=8)
    await drive(engine, journal)
    first, second = report(journal)
    # Five 429s and a success: more requests than max_attempts, and the row counts.
    assert (first["outcome"], first["attempts"]) == ("updated", 6)
    # A row the server never admits ends at max_throttled.
    assert (second["outcome"], second["attempts"]) == ("failed", 8)
    assert second["error"] == "HTTP 429 (gave up after 8 attempts)"
    assert engine.stats.throttled == 13
    # Every 429 reached the rate controller, which slowed the whole pool down.
    assert controller.throttle_events >= 1 and controller.rate is not None


async def test_a_fatal_answer_fails_the_row_without_a_retry(journal: Journal) -> None:
    ids = planned(journal, 3)
    missing: list[Reply] = [FatalRequestError("HTTP 404 notFound: Ticket not found", 404)]
    send = FakeSend(FakeClock(), {ids[1]: missing})
    engine, _ = make_engine(journal, send)
    await drive(engine, journal)
    assert send.calls.count(ids[1]) == 1
    rows = report(journal)
    assert [r["outcome"] for r in rows] == ["updated", "failed", "updated"]
    assert (rows[1]["attempts"], rows[1]["http_status"]) == (1, 404)
    assert rows[1]["error"] == "HTTP 404 notFound: Ticket not found"  # no "gave up" for these


async def test_rejected_credentials_stop_the_run_and_leave_the_rest_pending(
    journal: Journal,
) -> None:
    ids = planned(journal, 10)
    rejected: list[Reply] = [CredentialsRejected("HTTP 401 unauthorized", 401)]
    send = FakeSend(FakeClock(), {ids[2]: rejected})
    engine, _ = make_engine(journal, send, concurrency=1)
    await drive(engine, journal)
    assert send.calls == ids[:3]  # nothing after the 401
    assert engine.stop_reason == "stopped: credentials rejected (HTTP 401 unauthorized)"
    rows = report(journal)
    assert [r["outcome"] for r in rows[:2]] == ["updated", "updated"]
    # The rejected row is not its own fault: pending, to be sent by a rerun.
    assert (rows[2]["error"], rows[2]["attempts"], rows[2]["http_status"]) == ("pending", 1, 401)
    assert {(r["error"], r["attempts"]) for r in rows[3:]} == {("pending", 0)}
    assert journal.counts()["pending"] == 8


async def test_too_many_failed_rows_stop_the_run(journal: Journal) -> None:
    ids = planned(journal, 100)
    send = FakeSend(FakeClock(), {t: [FatalRequestError("HTTP 400", 400)] for t in ids})
    engine, _ = make_engine(journal, send, concurrency=1, max_failure_rate=0.2)
    await drive(engine, journal)
    # Judged once 20 rows are final: all 20 failed.
    assert len(send.calls) == 20
    assert engine.stop_reason == (
        "stopped: 20 of the last 20 rows failed (more than --max-failure-rate 0.2)"
    )
    assert journal.counts()["outcomes"] == {"failed": 20}


async def test_failures_under_the_rate_do_not_stop_the_run(journal: Journal) -> None:
    ids = planned(journal, 60)
    send = FakeSend(FakeClock(), {t: [FatalRequestError("HTTP 400", 400)] for t in ids[::10]})
    engine, _ = make_engine(journal, send, max_failure_rate=0.2)
    await drive(engine, journal)
    assert engine.stop_reason is None
    assert journal.counts()["outcomes"] == {"failed": 6, "updated": 54}


async def test_limit_sends_only_the_first_rows(journal: Journal) -> None:
    ids = planned(journal, 20)
    send = FakeSend(FakeClock())
    engine, _ = make_engine(journal, send, limit=7)
    await drive(engine, journal)
    assert sorted(send.calls) == sorted(ids[:7])
    assert [r["outcome"] for r in report(journal)[:7]] == ["updated"] * 7
    assert journal.counts()["pending"] == 13
    assert engine.stop_reason is None


async def test_a_stop_leaves_the_rows_not_yet_sent_pending(journal: Journal) -> None:
    ids = planned(journal, 12)
    send = FakeSend(FakeClock())
    engine, _ = make_engine(journal, send, concurrency=1)

    async def stop_at_the_fifth(ticket_id: str) -> None:
        if ticket_id == ids[4]:
            engine.stop("stopped: deadline reached (--deadline 1s)")
            engine.stop("stopped: something later")  # the first reason stands

    send.hook = stop_at_the_fifth
    await drive(engine, journal)
    assert send.calls == ids[:5]
    rows = report(journal)
    # The request already out is answered and recorded; the rest stay for a rerun.
    assert [r["outcome"] for r in rows[:5]] == ["updated"] * 5
    assert {r["error"] for r in rows[5:]} == {"pending"}
    assert engine.stop_reason == "stopped: deadline reached (--deadline 1s)"


async def test_retry_after_holds_the_whole_pool(journal: Journal) -> None:
    # On the real clock: what is checked is a wait the engine must make. Only a
    # lower bound is asserted, which no machine's load can break.
    ids = planned(journal, 4)
    wait = 0.05
    refused = anyio.Event()
    sent_at: dict[str, list[float]] = {}

    async def note(ticket_id: str) -> None:
        sent_at.setdefault(ticket_id, []).append(time.monotonic())
        if ticket_id == ids[0] and not refused.is_set():
            refused.set()  # the 429 below is raised before anyone else runs
        elif ticket_id == ids[1]:
            await refused.wait()  # so its worker's next row comes after the 429

    send = FakeSend(FakeClock(), {ids[0]: [RetriableError("HTTP 429", 429, retry_after=wait)]})
    send.hook = note
    engine, _ = make_engine(journal, send, clock=time.monotonic, concurrency=2)
    await drive(engine, journal)
    assert [r["outcome"] for r in report(journal)] == ["updated"] * 4
    refused_at = sent_at[ids[0]][0]
    # The refused row waits out the Retry-After, and so does the other worker's next row.
    assert sent_at[ids[0]][1] - refused_at >= wait - 0.001
    assert sent_at[ids[2]][0] - refused_at >= wait - 0.001


def test_a_403_stop_says_whether_its_row_fails_or_stays_pending() -> None:
    refused = CredentialsRejected("HTTP 403 forbidden: not yours", 403)
    fails = rejected(refused, "t-1")
    assert fails.endswith(
        "at ticket t-1, which fails; if only that ticket is refused, "
        "rerunning the same command sends the rest"
    )
    # A comment's row stays pending (its rerun looks for the comment before posting again).
    assert rejected(refused, "t-1", fails=False).endswith("at ticket t-1, which stays pending")
    # A 401 names no ticket: the credentials, not one ticket, were refused.
    assert "ticket" not in rejected(CredentialsRejected("HTTP 401", 401), "t-1", fails=False)
