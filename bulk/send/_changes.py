"""A row of several changes, sent in order through the engine's workers, pace and retries.

`ChangeRunner` replaces the engine's one-PUT-per-row handler for a batch
that changes more than status. Each change not yet final in the journal is
sent in the order of `bulk.plan.KINDS`; the first that fails fails the row and
its later changes are recorded `not sent`. Assignee PUT, type PATCH, comment
DELETE and status PUT are idempotent and take the run's retry policy as is.

A comment POST is not. Its attempt is committed `started` before it goes
out; when the outcome is unknown (timeout, reset, 5xx, an answer that proves
nothing, or a crash that left `started`) the ticket is read and its
activities searched for this very text, a comment of this client since the
batch began. That read waits first until the earlier POST can no longer land
(`_settle`): a server may still apply a request whose answer we gave up on.
Found: its id is recorded and nothing is posted. Not found: it is posted
again, within the same attempt budget; when the budget runs out on an unknown
outcome, one last read settles it (found: done; not found: failed, not
posted). A 429 was refused, not applied, so it is simply retried; any other
4xx fails the change. A batch planned with --fresh over one that had posted
comments reads before its first POST too (`check_first`).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import anyio

from .._core._exceptions import (
    CredentialsRejected,
    FatalRequestError,
    RequestError,
    RetriableError,
    UnexpectedAnswer,
)
from ..journal import FINAL_STATES, ChangeLog, ChangeState, Outcome
from ._change_calls import Activity, ChangeClient, same_text
from ._engine import Engine, Stopped, rejected

__all__ = ["ChangeRunner"]

log = logging.getLogger("bulk")

# Server and client clocks differ; a comment stamped this much before the
# batch's start still counts as possibly ours (same ticket, same exact text).
_SKEW = timedelta(minutes=5)


class _PostRefused(Exception):
    """A comment POST answered 401 or 403 (`refused`): not applied, unlike an unknown outcome."""

    def __init__(self, refused: CredentialsRejected) -> None:
        super().__init__(refused.message)
        self.refused = refused


class _Done(NamedTuple):
    state: str
    previous: str | None = None
    http_status: int | None = None
    activity_id: str | None = None
    note: str | None = None  # why a change was left alone (an undo's guard)


def _changed_since(now: str | None, http_status: int) -> _Done:
    """An undo's change left alone: the ticket no longer has what the batch set."""
    shown = "unreadable" if now is None else now
    return _Done("unchanged", now, http_status, note=f"changed since the batch (now {shown})")


def _parse_time(text: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else None


_ANSWERED_SETTLE = 1.0  # seconds; see ChangeRunner._settling


class ChangeRunner:
    """The engine's row handler for batches of several changes per row."""

    def __init__(
        self,
        engine: Engine,
        client: ChangeClient,
        changes: ChangeLog,
        batch_began: datetime,
        check_first: bool = False,
        guard: bool = True,
        timeout: float | None = None,
        in_flight_at: str | None = None,
    ) -> None:
        self._engine = engine
        # The replaced journal's latest POST of unknown outcome (--fresh): checks wait for it.
        self._in_flight_at = in_flight_at
        # How long a POST of an earlier run may still land: its --timeout (the longest).
        self._post_timeout = max(client.timeout, timeout or 0.0)
        self._check_first = check_first
        # An undo's changes go back only while the ticket has what the batch set (False:
        # `--force`, this invocation's, whatever an earlier one said).
        self._guard = guard
        self._client = client
        self._log = changes
        self._since = batch_began - _SKEW
        self._author: str | None = None  # our membership, once a 201 has shown it
        self._told_wait = False
        engine.handle_row = self.handle

    async def handle(self, row: int, ticket: str, _status: str) -> Outcome:
        engine = self._engine
        began = time.monotonic()
        sent = [0]
        changes = await anyio.to_thread.run_sync(self._log.for_row, row)
        engine.stats.in_flight += 1
        try:
            failed = any(c.state == "failed" for c in changes)
            for change in changes:
                if change.state in FINAL_STATES:
                    continue
                if failed:
                    await self._finish(row, change, _Done("not sent"), 0)
                    continue
                failed = not await self._one(row, ticket, change, sent)
        except (Stopped, CredentialsRejected) as exc:
            if isinstance(exc, CredentialsRejected):
                # A comment's (its row stays pending), or after the first (whose reason stays).
                engine.stop(rejected(exc, ticket, fails=False))
            # Not the row's fault: it stays pending and a rerun sends what is left.
            return Outcome(None, None, None, sent[0], None, None, None, None, row)
        finally:
            engine.stats.in_flight -= 1
        final = await anyio.to_thread.run_sync(self._log.for_row, row)
        outcome = self._summary(row, final, sent[0], began)
        engine.stats.done += 1
        engine.stats.failed += outcome.outcome == "failed"
        return outcome

    async def _one(self, row: int, ticket: str, change: ChangeState, sent: list[int]) -> bool:
        """Send one change and journal it; False when it failed."""
        mine = [0]
        try:
            done = await self._apply(row, ticket, change, mine)
        except (CredentialsRejected, _PostRefused) as caught:
            sent[0] += mine[0]
            # A 403 on the read that settles an unknown POST must leave the row pending,
            # whose resume looks for the comment first; a refused POST was not applied.
            exc = caught.refused if isinstance(caught, _PostRefused) else caught
            read = change.kind == "comment" and not isinstance(caught, _PostRefused)
            failed = None if read else self._engine.refused(exc, ticket)
            if failed is None or failed is exc:
                # A 401, or a 403 after the first: the row stays pending (`refused` returns
                # a new error only for the row whose 403 stopped the run).
                if isinstance(caught, _PostRefused):
                    await anyio.to_thread.run_sync(self._log.refused, row, change.seq)
                raise exc from None
            await self._finish(
                row, change, _Done("failed", http_status=403), mine[0], failed.message
            )
            return False
        except RequestError as exc:
            sent[0] += mine[0]
            detail = exc.message
            if exc.retriable:
                detail = f"{detail} (gave up after {mine[0]} attempts)"
            await self._finish(
                row, change, _Done("failed", http_status=exc.http_status), mine[0], detail
            )
            return False
        sent[0] += mine[0]
        await self._finish(row, change, done, mine[0], done.note)
        return True

    async def _finish(
        self, row: int, change: ChangeState, done: _Done, attempts: int, error: str | None = None
    ) -> None:
        await anyio.to_thread.run_sync(
            lambda: self._log.finish(
                row,
                change.seq,
                done.state,
                previous=done.previous,
                http_status=done.http_status,
                attempts=attempts,
                error=error,
                activity_id=done.activity_id,
            )
        )

    async def _apply(self, row: int, ticket: str, change: ChangeState, sent: list[int]) -> _Done:
        engine, client, value = self._engine, self._client, change.value
        if change.kind == "status":
            # The engine's status send: a 400 is judged by one read, as for a status-only row.
            answer = await engine.request(row, sent, engine.send_status, ticket, value)
            state = "unchanged" if answer.previous_status == value else "updated"
            return _Done(state, answer.previous_status, answer.http_status, answer.activity_id)
        if change.kind == "assignee":
            return await self._assignee(row, ticket, change, sent)
        if change.kind == "type":
            return await self._type(row, ticket, change, sent)
        if change.kind == "comment":
            return await self._comment(row, ticket, change, sent)
        if change.kind == "delete_comment":
            try:
                await engine.request(row, sent, client.delete_comment, value)
            except FatalRequestError as exc:
                if exc.http_status != 404:
                    raise
                # Gone already (an earlier attempt whose answer was lost, or by hand).
                return _Done("unchanged", http_status=404)
            return _Done("updated", http_status=204)
        raise FatalRequestError(f"unknown change {change.kind!r}")

    async def _assignee(self, row: int, ticket: str, change: ChangeState, sent: list[int]) -> _Done:
        engine, client, value = self._engine, self._client, change.value
        if change.expected is not None and self._guard:
            # An undo: the assignee, read just before the PUT (an undo resumed after a
            # pause read long before: a review's agents reassigned 10 tickets meanwhile),
            # must still be the one the batch set.
            now = (await engine.request(row, sent, client.details, ticket)).assignee
            if now not in (change.expected, value):
                return _changed_since(now, 200)
        result = await engine.request(row, sent, client.set_assignee, ticket, value)
        previous, read = result.previous, change.previous_value  # read: before sending
        if read is not None and (previous is None or (previous == value != read)):
            # "Already so" after a lost answer: the assignee read first was another.
            previous = read
        state = "unchanged" if previous == value else "updated"
        return _Done(state, previous, result.http_status, result.activity_id)

    async def _type(self, row: int, ticket: str, change: ChangeState, sent: list[int]) -> _Done:
        # The PATCH answers 204 with no body: the type before is read first,
        # and journaled before the PATCH so a crash after it still knows it.
        now = await self._engine.request(row, sent, self._client.details, ticket)
        previous = change.previous_value
        guarded = change.expected is not None and self._guard
        if guarded and now.type not in (change.expected, change.value):
            return _changed_since(now.type, 200)  # an undo: an agent re-typed it since
        if now.type == change.value:
            return _Done("unchanged" if previous is None else "updated", previous or now.type, 200)
        if now.type is not None:
            previous = now.type
            await anyio.to_thread.run_sync(self._log.note_previous, row, change.seq, previous)
        await self._engine.request(row, sent, self._client.set_type, ticket, change.value)
        return _Done("updated", previous, 204)

    async def _comment(self, row: int, ticket: str, change: ChangeState, sent: list[int]) -> _Done:
        # An earlier run (a crash left `started`) or batch (--fresh) may have posted it.
        unknown = change.state == "started" or self._check_first
        # When the last POST of unknown outcome can no longer land (monotonic), if any.
        ended = self._in_flight(change)
        try:
            async for attempt in self._engine.policy():
                with attempt:
                    if unknown:
                        found = await self._settled_find(row, ticket, change.value, sent, ended)
                        if found is not None:
                            log.debug("row %d: comment found after an unknown outcome", row)
                            return _Done("updated", None, 200, found.id)
                    await anyio.to_thread.run_sync(self._log.begin, row, change.seq)
                    try:
                        posted = await self._engine.request(
                            row, sent, self._client.post_comment, ticket, change.value, retry=False
                        )
                    except RetriableError as exc:
                        if exc.http_status != 429:  # a 429 was refused, not applied
                            unknown = True
                            ended[:] = [time.monotonic() + self._settling(exc)]
                        raise
                    except CredentialsRejected as exc:
                        # Refused, not applied: the POST itself, unlike a read that settles
                        # an earlier one, fails its row as any 403 does (a rerun goes past).
                        raise _PostRefused(exc) from None
                    except UnexpectedAnswer as exc:
                        # The server answered, but not with proof: it may have posted.
                        unknown = True
                        ended[:] = [time.monotonic() + _ANSWERED_SETTLE]
                        raise RetriableError(exc.message, exc.http_status) from None
                    self._author = self._author or posted.author
                    return _Done("updated", None, 201, posted.id)
        except RetriableError as exc:
            if not unknown:
                raise
            return await self._last_check(row, ticket, change.value, sent, ended, exc)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _last_check(
        self,
        row: int,
        ticket: str,
        text: str,
        sent: list[int],
        ended: list[float],
        last: RetriableError,
    ) -> _Done:
        """The attempts ran out on an unknown outcome: one read says posted or not."""
        try:
            found = await self._settled_find(row, ticket, text, sent, ended)
        except (Stopped, CredentialsRejected):
            raise
        except RequestError as exc:
            raise RetriableError(
                f"{last.message}; it may have been posted: the check read failed ({exc.message})",
                last.http_status,
            ) from None
        if found is not None:
            log.debug("row %d: comment found after the last attempt", row)
            return _Done("updated", None, 200, found.id)
        raise RetriableError(f"{last.message}; not posted (the ticket was read)", last.http_status)

    async def _settled_find(
        self, row: int, ticket: str, text: str, sent: list[int], ended: list[float]
    ) -> Activity | None:
        await self._settle(ended)
        return await self._find(row, ticket, text, sent)

    async def _settle(self, ended: list[float]) -> None:
        """Wait until a POST of unknown outcome can no longer land before reading for it.

        A server may still be working on a request when the client's timeout
        fires (the simulator's slow answers apply the comment 0.5 s after a 1 s
        timeout: 3 of 20 tickets got two comments when the read came at once).
        So the read waits one more request timeout after the attempt ended,
        two timeouts after it was sent. A server that applies a request later
        than that can still cause a duplicate (README, "exactly once").
        """
        if not ended:
            return  # nothing of unknown outcome was posted (--fresh over a finished batch)
        wait = ended[0] - time.monotonic()
        if wait > 0:
            await self._engine.pause(wait)

    def _in_flight(self, change: ChangeState) -> list[float]:
        """When the POST an earlier run (or the journal --fresh replaced) may still have at
        the server can no longer land; empty when there is none."""
        if change.state == "started":
            return self._earlier_lands_by(change.attempted_at)
        if self._check_first and self._in_flight_at is not None:
            return self._earlier_lands_by(self._in_flight_at)
        return []

    def _earlier_lands_by(self, attempted_at: str | None) -> list[float]:
        """When the POST an earlier run left `started` can no longer land (monotonic).

        That run may have been killed with the POST still at the server: a rerun that read
        at once found no comment and posted a second (8 of 20 tickets, a review's test with
        2 s answers). Its attempt was journaled just before it went out (its slot of the
        pace taken after that: a 429's hold may have delayed it), so the read waits until
        two timeouts after that time, as after a timeout of this run's own.
        """
        attempted = _parse_time(attempted_at or "")
        window = 2 * self._post_timeout
        if attempted is not None:
            window -= (datetime.now(UTC) - attempted).total_seconds()
        window = min(max(window, 0.0), 2 * self._post_timeout)
        if window > 0 and not self._told_wait:
            self._told_wait = True
            log.info(
                "comments the interrupted run was posting may still land: each is looked "
                "for once two --timeout have passed since it was sent (up to %.0f s)",
                window,
            )
        return [time.monotonic() + window]

    def _settling(self, error: RetriableError) -> float:
        """How long a POST of unknown outcome may still land after its attempt ended.

        Only a request the client gave up on (a timeout, or a gateway's 504 or 408)
        may still be running at the server: a whole request timeout. An answer (a
        5xx) or a dropped connection means the server is done with it; a second
        covers a proxy that answered before its backend finished. Waiting the
        whole timeout after every 5xx held a worker 30 s each: measured with
        `bench/changes.py` (5% 5xx), the batch ran at a fifth of its pace.
        """
        if error.http_status in (408, 504) or error.message.startswith("timeout"):
            return self._client.timeout
        return _ANSWERED_SETTLE

    async def _find(self, row: int, ticket: str, text: str, sent: list[int]) -> Activity | None:
        """This client's comment with `text` (as the server may store it) on the ticket since
        the batch began (one whose time cannot be read may be an older one's: not ours)."""
        state = await self._engine.request(row, sent, self._client.details, ticket)
        for activity in state.activities:
            when = _parse_time(activity.created)
            if (
                activity.type == "comment"
                and same_text(activity.text, text)
                and when is not None
                and when >= self._since
                and (self._author is None or activity.author in (None, self._author))
            ):
                return activity
        return None

    @staticmethod
    def _summary(row: int, changes: list[ChangeState], attempts: int, began: float) -> Outcome:
        """The row's outcome from its changes: failed if one failed, updated if one changed."""
        states = {c.state for c in changes}
        failed = [c for c in changes if c.state == "failed"]
        status = next((c for c in changes if c.kind == "status"), None)
        http = next((c.http_status for c in reversed(changes) if c.http_status), None)
        error = None
        if failed:
            outcome = "failed"
            error = "; ".join(f"{c.kind}: {c.error}" for c in failed)
            skipped = [c.kind for c in changes if c.state == "not sent"]
            if skipped:
                error += f"; not sent: {', '.join(skipped)}"
        else:
            outcome = "updated" if "updated" in states else "unchanged"
            # An undo's changes left alone (the ticket changed since the batch): said, and a
            # row of which nothing went back is `skipped`, as a status-only undo's is.
            left = [c for c in changes if c.state == "unchanged" and c.error]
            if left:
                error = "; ".join(f"{c.kind}: {c.error}; left as it is" for c in left)
                if outcome == "unchanged" and len(left) == len(changes):
                    outcome = "skipped"
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        return Outcome(
            outcome,
            status.previous_value if status else None,
            http,
            attempts,
            error,
            status.activity_id if status else None,
            int((time.monotonic() - began) * 1000),
            now,
            row,
        )
