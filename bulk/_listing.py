"""The API listing as a source: page through locations, snapshot, select.

Pages are paced by the same controller and retried by the same policy as
status changes. Every listed ticket goes into a snapshot file (so a run can be
audited and undone later); the selected ones, with their target status, go
into the batch's input file. Nothing is held per ticket beyond one page.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception_type

from ._client import TicketClient
from ._csvsafe import csv_cell
from ._engine import AttemptBudget, EngineSettings, WaitRetryAfter
from ._errors import RetriableError
from ._jobs import ApiSource, Job, Select
from ._pacing import RateController

__all__ = ["Listing", "list_and_select"]

log = logging.getLogger("bulk")
MAX_THROTTLED = EngineSettings.max_throttled

SNAPSHOT_COLUMNS = (
    "id",
    "number",
    "locationRef",
    "status",
    "type",
    "createDate",
    "updateDate",
    "statusUpdateDate",
    "userRefAssignee",
    "selected",
    "target_status",
)


@dataclass
class Listing:
    pages: int = 0
    listed: int = 0
    matched: int = 0  # passed the selection
    already: int = 0  # matched, but already at the target status
    selected: int = 0  # to be sent


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def matches(ticket: dict[str, Any], select: Select | None, now: datetime) -> bool:
    if select is None:
        return True
    if select.status is not None and ticket.get("status") not in select.status:
        return False
    if select.types is not None and ticket.get("type") not in select.types:
        return False
    if select.assigned is not None:
        assigned = bool(ticket.get("userRefAssignee") or ticket.get("membershipRefAssignee"))
        if assigned != select.assigned:
            return False
    age = select.older_than_seconds
    if age is not None:
        when = _when(ticket.get(select.age_field))
        if when is None or (now - when).total_seconds() < age:
            return False
    return True


def target_for(ticket: dict[str, Any], job: Job, mapping: dict[str, str] | None) -> str | None:
    if job.action.status is not None:
        return job.action.status
    assert mapping is not None
    return mapping.get(str(ticket.get("status")))


async def _page(
    client: TicketClient,
    pacer: RateController,
    source: ApiSource,
    location: str,
    token: str | None,
    max_attempts: int,
) -> tuple[list[dict[str, Any]], str | None]:
    retrying = AsyncRetrying(
        stop=AttemptBudget(max_attempts, MAX_THROTTLED),
        wait=WaitRetryAfter(0.5, 30.0),
        retry=retry_if_exception_type(RetriableError),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            await pacer.acquire()
            try:
                page = await client.list_page(
                    location, order=source.order, limit=source.page_size, token=token
                )
            except RetriableError as exc:
                if exc.http_status == 429:
                    pacer.on_throttled(exc.retry_after)
                raise
            pacer.on_success()
            return page
    raise AssertionError("unreachable: tenacity re-raises the last error")


async def list_and_select(
    job: Job,
    client: TicketClient,
    pacer: RateController,
    snapshot: Path,
    batch_input: Path,
    *,
    now: datetime | None = None,
) -> Listing:
    """Write the snapshot and the batch input; return the counts."""
    assert isinstance(job.source, ApiSource)
    now = now or datetime.now(UTC)
    mapping = job.api_map()
    result = Listing()
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    # Local, buffered writes of at most a page at a time: a thread hop per
    # page would cost more than the write it moves off the loop.
    with (
        open(snapshot, "w", newline="", encoding="utf-8") as snap_file,  # noqa: ASYNC230
        open(batch_input, "w", newline="", encoding="utf-8") as input_file,  # noqa: ASYNC230
    ):
        snap = csv.writer(snap_file)
        snap.writerow(SNAPSHOT_COLUMNS)
        batch = csv.writer(input_file)
        batch.writerow(("ticket_id", "target_status", "current_status", "locationRef"))
        for location in job.source.locations:
            token: str | None = None
            while True:
                tickets, token = await _page(
                    client, pacer, job.source, location, token, job.run.max_attempts
                )
                result.pages += 1
                for ticket in tickets:
                    result.listed += 1
                    chosen = matches(ticket, job.select, now)
                    target = target_for(ticket, job, mapping) if chosen else None
                    send = target is not None and target != ticket.get("status")
                    if target is not None:
                        result.matched += 1
                        result.already += not send
                    if send:
                        result.selected += 1
                        # Read back as the batch's input: ids are UUIDs and targets
                        # status words, which neutralising leaves as they are.
                        batch.writerow(
                            [csv_cell(v) for v in (ticket.get("id"), target, ticket.get("status"))]
                            + [location]
                        )
                    snap.writerow(
                        [csv_cell(ticket.get(c)) for c in SNAPSHOT_COLUMNS[:-2]]
                        + [int(send), target or ""]
                    )
                if not token:
                    break
            log.info("listed location %s: %d tickets so far", location, result.listed)
    return result
