"""An undo's guard, at its edge: a fake send stands in for the status PUT."""

from __future__ import annotations

import pytest

from bulk._core._exceptions import ChangedSince, FatalRequestError, RetriableError
from bulk.batch import rate_controller
from bulk.send import Answer, guarding

T = "3f2b8c1e-5a4d-4e6f-9b7a-1c2d3e4f5a6b"


class FakePut:
    """Answers each PUT with `previous` as the status it replaced; the put-back may fail."""

    def __init__(self, previous: str | None, put_back: Exception | None = None) -> None:
        self.previous = previous
        self.put_back = put_back
        self.failures = 99  # put-backs that fail with `put_back` before one succeeds
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, ticket_id: str, status: str) -> Answer:
        self.calls.append((ticket_id, status))
        if len(self.calls) > 1 and self.put_back is not None and self.failures > 0:
            self.failures -= 1
            raise self.put_back
        return Answer(200, self.previous, None)


@pytest.mark.parametrize("previous", [None, "closed", "new"])
async def test_a_put_that_overwrote_nobody_stands(previous: str | None) -> None:
    """Unknown, the batch's status, or already the undo's target: one PUT, its answer."""
    put, budget = FakePut(previous), rate_controller(None)
    answer = await guarding(put, {T: "closed"}, budget, 3)(T, "new")
    assert answer.previous_status == previous
    assert put.calls == [(T, "new")]
    assert budget.sent == 0


async def test_a_put_that_overwrote_a_later_change_puts_it_back() -> None:
    put, budget = FakePut("solved"), rate_controller(None)
    with pytest.raises(ChangedSince, match=r"was solved when the undo wrote; put back") as raised:
        await guarding(put, {T: "closed"}, budget, 3)(T, "new")
    assert put.calls == [(T, "new"), (T, "solved")]
    assert budget.sent == 1  # the put-back took a slot of the run's budget
    assert raised.value.put_backs == 1  # and the engine counts it as a request


async def test_a_throttled_put_back_is_retried_in_the_budget() -> None:
    """A 429 is routine at 10/s: the put-back waits its Retry-After and goes again."""
    put = FakePut("solved", put_back=RetriableError("HTTP 429", 429, retry_after=0))
    put.failures = 1
    budget = rate_controller(None)
    with pytest.raises(ChangedSince) as raised:
        await guarding(put, {T: "closed"}, budget, 3)(T, "new")
    assert put.calls == [(T, "new"), (T, "solved"), (T, "solved")]
    assert budget.sent == 2 and raised.value.put_backs == 2


async def test_a_failed_put_back_fails_the_row_naming_both_statuses() -> None:
    put = FakePut("solved", put_back=RetriableError("HTTP 503", 503, retry_after=0))
    with pytest.raises(FatalRequestError) as raised:
        await guarding(put, {T: "closed"}, rate_controller(None), 2)(T, "new")
    assert not isinstance(raised.value, ChangedSince)
    assert raised.value.put_backs == 2  # both attempts, counted
    assert raised.value.message == (
        "changed since the batch (was solved when the undo wrote new); "
        "putting solved back failed: HTTP 503"
    )


async def test_a_ticket_the_undo_does_not_guard_is_sent_as_is() -> None:
    put = FakePut("solved")
    answer = await guarding(put, {}, rate_controller(None), 3)(T, "new")
    assert answer.previous_status == "solved" and len(put.calls) == 1


async def test_an_overwrite_is_owed_before_its_put_back_is_sent() -> None:
    """A kill between the PUT and its put-back must leave the debt in the journal."""
    events: list[tuple[str, str, str]] = []
    put = FakePut("solved")

    async def recorded(ticket_id: str, status: str) -> Answer:
        events.append(("PUT", ticket_id, status))
        return await put(ticket_id, status)

    async def owe(ticket_id: str, status: str) -> None:
        events.append(("owe", ticket_id, status))

    with pytest.raises(ChangedSince):
        await guarding(recorded, {T: "closed"}, rate_controller(None), 3, owe=owe)(T, "new")
    assert events == [("PUT", T, "new"), ("owe", T, "solved"), ("PUT", T, "solved")]


@pytest.mark.parametrize("previous", ["new", None])
async def test_a_resumed_undo_pays_what_the_killed_run_owed(previous: str | None) -> None:
    """Resent after a kill, the undo's PUT replaces its own earlier write (or says nothing):
    the agent's status the killed run journaled goes back."""
    put = FakePut(previous)
    guard = guarding(put, {T: "closed"}, rate_controller(None), 3, owed={T: "solved"})
    with pytest.raises(ChangedSince, match=r"was solved when the undo wrote; put back"):
        await guard(T, "new")
    assert put.calls == [(T, "new"), (T, "solved")]


async def test_an_owed_put_back_yields_to_a_later_change() -> None:
    """Back at the batch's status since: that is someone's later choice, not the undo's."""
    put = FakePut("closed")
    guard = guarding(put, {T: "closed"}, rate_controller(None), 3, owed={T: "solved"})
    answer = await guard(T, "new")
    assert answer.previous_status == "closed" and put.calls == [(T, "new")]
