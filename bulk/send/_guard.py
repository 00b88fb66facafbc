"""An undo's PUT that proves it overwrote nobody: the answer names what it replaced.

Undo reads every ticket first and reverts only those still at the status the
batch set. A long undo (50,000 rows at 10/s take 83 minutes) reads long before
it writes, so an agent may change a ticket in between, and the PUT would
overwrite that. The PUT's answer says which status it replaced (the API's
activity, `previousAttributes.status`): when that is neither what the batch set
nor the undo's target, the PUT has just overwritten someone's change, and the
guard puts their status back at once, through the run's budget and the shared
retry policy. Re-reading each ticket before its PUT would close the window too,
at twice the requests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from .._core._exceptions import ChangedSince, FatalRequestError, RequestError
from ._client import Answer
from ._pacing import RateController
from ._retry import retrying

__all__ = ["guarding"]

Send = Callable[[str, str], Awaitable[Answer]]
# Records, durably, that `ticket`'s agent status is owed back, before the put-back is sent.
Owe = Callable[[str, str], Awaitable[None]]


async def _owe_nothing(_ticket_id: str, _status: str) -> None:
    return None


def guarding(
    send: Send,
    expected: Mapping[str, str],
    budget: RateController,
    max_attempts: int,
    *,
    owe: Owe = _owe_nothing,
    owed: Mapping[str, str] | None = None,
) -> Send:
    """`send` for an undo: `expected[ticket]` is the status the batch set (read as still held).

    An overwrite found is journaled (`owe`) before its put-back goes out. A run killed
    in between resends the undo's PUT on resume, whose answer then names the undo's
    own status: `owed` (what the killed run journaled) says whose status to put back.
    """
    owed = owed or {}

    async def guarded(ticket_id: str, status: str) -> Answer:
        answer = await send(ticket_id, status)
        before, wanted = answer.previous_status, expected.get(ticket_id)
        if ticket_id in owed and before in (None, status):
            before = owed[ticket_id]  # the earlier run's PUT stands; its put-back is owed
        # Unknown (no activity in the answer), or what the batch set, or already
        # reverted by someone else: nothing of anyone's was overwritten.
        if before is None or wanted is None or before in (wanted, status):
            return answer
        await owe(ticket_id, before)
        sent = 0

        async def put_back() -> Answer:
            nonlocal sent
            sent += 1
            return await send(ticket_id, before)

        # Retried like any request (a 429 is routine at 10/s), each attempt in a slot
        # of the run's budget with its answer fed back; not cut short by a stop, as
        # the put-back is what leaves the ticket as its agent left it. Any failure
        # fails the row with both statuses named: whose change was overwritten.
        try:
            async for attempt in retrying(max_attempts):
                with attempt:
                    await budget.paced(put_back)
        except RequestError as exc:
            failed = FatalRequestError(
                f"changed since the batch (was {before} when the undo wrote {status}); "
                f"putting {before} back failed: {exc.message}",
                exc.http_status,
            )
            failed.put_backs = sent
            raise failed from None
        changed = ChangedSince(
            f"changed since the batch (was {before} when the undo wrote; put back)", 200
        )
        changed.put_backs = sent
        raise changed

    return guarded
