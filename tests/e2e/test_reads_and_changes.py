"""Reading before writing meets rows of several changes, against the simulator on loopback.

A ticket already at its target status still gets the row's other changes;
a 400 on such a status is settled by one read; an undo of a batch of changes
reads first and leaves alone what was changed since; an undo lists the
locations the batch read its tickets in.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pandas as pd
import pytest

import bulk
from bulk import Credentials
from bulk.batch import retry_frame, undo_frame
from bulk.simulator import (
    DEMO_ACCESS_TOKEN,
    DEMO_NETWORK_ID,
    LOCATIONS,
    TICKET_TYPES,
    SimConfig,
    Simulator,
    make_tickets,
    serve,
)

USER = "0b6f1c2e-3d4a-4b5c-8d6e-7f8091a2b3c4"
MIXED = ("new", "inProgress", "closed")


@pytest.fixture
def tickets() -> list[dict[str, Any]]:
    return make_tickets(24, seed=5, statuses=MIXED)


@pytest.fixture
def bearer() -> Credentials:
    return Credentials.bearer(DEMO_ACCESS_TOKEN, DEMO_NETWORK_ID)


def _status_puts(sim: Simulator) -> Counter[str]:
    return Counter(
        r.ticket_id or "" for r in sim.requests if r.method == "PUT" and r.path.endswith("/status")
    )


def _located(tickets: list[dict[str, Any]]) -> pd.DataFrame:
    """With a location column: the run reads first, by listing, without being asked."""
    return pd.DataFrame(
        {
            "ticket_id": [t["id"] for t in tickets],
            "locationRef": [t["locationRef"] for t in tickets],
        }
    )


async def test_a_ticket_already_at_target_still_gets_its_other_changes(
    sim: Simulator, server: str, tickets: list[dict[str, Any]], bearer: Credentials
) -> None:
    closed = {t["id"] for t in tickets if t["status"] == "closed"}
    assert 0 < len(closed) < len(tickets)
    asked: dict[str, Any] = {
        "status": "closed",
        "comment": "Moved to the new desk",
        "assignee": USER,
        "type": "cleaning",
    }
    preview = await bulk.run_async(
        _located(tickets), credentials=bearer, base_url=server, preview=True, **asked
    )
    would = Counter(preview["would"])
    assert would == {
        "would update": len(tickets) - len(closed),
        "would update (status already at target)": len(closed),
    }
    line = preview.attrs["summary"].preview[0]
    assert line.startswith(f"{len(tickets)} will change (")
    assert f"other changes, already closed {len(closed)}" in line

    report = await bulk.run_async(
        _located(tickets), credentials=bearer, base_url=server, rate=None, **asked
    )
    assert set(report["outcome"]) == {"updated"}
    assert set(report["comment_outcome"]) == {"updated"}
    for ticket in tickets:
        now = sim.tickets[ticket["id"]]
        assert now["status"] == "closed"
        assert now["userRefAssignee"] == USER
        assert now["type"] == "cleaning"
        assert len(sim.comments(ticket["id"])) == 1
    # Only the status change was skipped for the tickets already closed.
    assert set(_status_puts(sim)) == {t["id"] for t in tickets} - closed
    again = report.set_index("ticket_id").loc[sorted(closed)]
    assert set(again["previous_status"]) == {"closed"}


async def test_a_400_on_a_status_already_set_is_settled_by_one_read(
    tickets: list[dict[str, Any]], bearer: Credentials
) -> None:
    sim = Simulator(SimConfig(rate=None, seed=1, same_status_400=True), tickets)
    closed = {t["id"] for t in tickets if t["status"] == "closed"}
    frame = pd.DataFrame({"ticket_id": [t["id"] for t in tickets]})
    async with serve(sim) as server:
        report = await bulk.run_async(
            frame, credentials=bearer, base_url=server, rate=None, assignee=USER, status="closed"
        )
    assert set(report["outcome"]) == {"updated"}  # the assignee changed on every ticket
    assert set(report["error"].fillna("")) == {""}
    refused = report[report["ticket_id"].isin(closed)]
    assert set(refused["previous_status"]) == {"closed"}
    assert set(refused["http_status"]) == {400}
    gets = Counter(r.ticket_id for r in sim.requests if r.method == "GET")
    assert gets == dict.fromkeys(closed, 1)  # one read a refused status, nothing more


async def _run(
    frame: pd.DataFrame, bearer: Credentials, server: str, **options: Any
) -> pd.DataFrame:
    """A run of `frame` at full speed against the simulator."""
    return await bulk.run_async(frame, credentials=bearer, base_url=server, rate=None, **options)


async def test_undo_of_changes_leaves_alone_what_was_changed_since(
    sim: Simulator, server: str, tickets: list[dict[str, Any]], bearer: Credentials
) -> None:
    chosen = [t for t in tickets if t["status"] == "new"][:6]
    before = {t["id"]: dict(t) for t in chosen}
    frame = pd.DataFrame({"ticket_id": list(before)})
    await _run(
        frame,
        bearer,
        server,
        assignee=USER,
        status="closed",
        report=Path("x.report.csv"),
    )
    reopened = chosen[0]["id"]
    with sim._lock:
        sim.tickets[reopened]["status"] = "inProgress"
        sim.tickets[reopened]["statusUpdateDate"] = "2099-01-01T00:00:00.000Z"
    sent = len(sim.requests)
    undo = undo_frame(Path("x.report.csv"))
    report = await bulk.run_async(
        undo, credentials=bearer, base_url=server, rate=None, report=Path("x.undo.csv")
    )
    reads = [r for r in sim.requests[sent:] if r.method == "GET"]
    # Read first, as a status-only undo does; and each assignee again just before its PUT
    # (the 5 rows not left alone).
    assert len(reads) == len(chosen) + len(chosen) - 1
    outcome = report.set_index("ticket_id")
    assert outcome.loc[reopened, "outcome"] == "skipped"
    assert outcome.loc[reopened, "error"] == (
        "changed since the batch (now inProgress, at 2099-01-01T00:00:00.000Z)"
    )
    assert sim.tickets[reopened]["status"] == "inProgress"
    assert sim.tickets[reopened]["userRefAssignee"] == USER  # its assignee left alone too
    for ticket_id in set(before) - {reopened}:
        assert outcome.loc[ticket_id, "outcome"] == "updated"
        assert sim.tickets[ticket_id]["status"] == "new"
        assert sim.tickets[ticket_id].get("userRefAssignee") == before[ticket_id].get(
            "userRefAssignee"
        )
    # --force reverts what the read left alone.
    forced = await bulk.run_async(
        undo, credentials=bearer, base_url=server, rate=None, report=Path("f.undo.csv"), force=True
    )
    assert forced.set_index("ticket_id").loc[reopened, "outcome"] == "updated"
    assert sim.tickets[reopened]["status"] == "new"


async def test_undo_leaves_a_ticket_set_to_the_batchs_status_again_later(
    sim: Simulator, server: str, tickets: list[dict[str, Any]], bearer: Credentials
) -> None:
    """An agent reopened a closed ticket and closed it again: it holds the batch's status,
    but by the agent's hand. The undo reverted it (review); its statusUpdateDate, later
    than the batch's row finished, leaves it alone now, and a retry of the undo too."""
    chosen = [t["id"] for t in tickets if t["status"] == "new"][:4]
    await _run(pd.DataFrame({"ticket_id": chosen}), bearer, server, status="closed",
               report=Path("x.report.csv"))  # fmt: skip
    again = chosen[0]
    with sim._lock:
        sim.tickets[again]["statusUpdateDate"] = "2099-01-01T00:00:00.000Z"
    undo = undo_frame(Path("x.report.csv"))
    assert undo["expected_since"].str.len().min() > 0
    report = (await _run(undo, bearer, server, report=Path("x.undo.csv"))).set_index("ticket_id")
    assert sim.tickets[again]["status"] == "closed"
    assert report.loc[again, "outcome"] == "skipped"
    assert report.loc[again, "error"] == (
        "changed since the batch (set to closed again at 2099-01-01T00:00:00.000Z)"
    )
    assert all(sim.tickets[t]["status"] == "new" for t in chosen[1:])
    record = json.loads(await anyio.Path("x.undo.run.json").read_text())
    assert record["left_alone"]["rows"] == 1
    # The undo's report keeps the time, so a retry of it guards the same way.
    retry = retry_frame(Path("x.undo.csv"), frozenset({"skipped"}))
    assert list(retry["expected_since"]) == [report.loc[again, "expected_since"]]


@pytest.mark.parametrize("ahead", [300, -300])
async def test_the_servers_clock_off_by_minutes_leaves_only_the_agents_ticket(
    sim: Simulator,
    server: str,
    tickets: list[dict[str, Any]],
    bearer: Credentials,
    monkeypatch: pytest.MonkeyPatch,
    ahead: int,
) -> None:
    """A server clock 2 minutes ahead had every row left alone, exit 0 (review): each
    ticket's statusUpdateDate is judged against the batch's finish times as the median
    ticket shows the two clocks differ."""
    import datetime as dt

    class Skewed(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> Skewed:
            return cls.fromtimestamp(
                (dt.datetime.now(tz) + dt.timedelta(seconds=ahead)).timestamp(), tz
            )

    monkeypatch.setattr("bulk.simulator._app.datetime", Skewed)
    chosen = [t["id"] for t in tickets if t["status"] == "new"][:6]
    await _run(pd.DataFrame({"ticket_id": chosen}), bearer, server, status="closed",
               report=Path("x.report.csv"))  # fmt: skip
    with sim._lock:
        sim.tickets[chosen[0]]["statusUpdateDate"] = "2099-01-01T00:00:00.000Z"
    report = await _run(undo_frame(Path("x.report.csv")), bearer, server, report=Path("u.csv"))
    assert list(report["outcome"]) == ["skipped"] + ["updated"] * 5
    assert all(sim.tickets[t]["status"] == "new" for t in chosen[1:])


async def test_a_retry_of_a_few_reverts_takes_the_clocks_difference_the_undo_measured(
    sim: Simulator,
    server: str,
    tickets: list[dict[str, Any]],
    bearer: Credentials,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two reverts failed and were retried: too few tickets to tell the clocks apart, so a
    server 5 minutes ahead made both look set again since (review). The retry takes the
    difference the undo measured over all its tickets."""
    import datetime as dt

    class Ahead(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> Ahead:
            return cls.fromtimestamp(
                (dt.datetime.now(tz) + dt.timedelta(minutes=5)).timestamp(), tz
            )

    monkeypatch.setattr("bulk.simulator._app.datetime", Ahead)
    chosen = [t["id"] for t in tickets if t["status"] == "new"][:6]
    await _run(pd.DataFrame({"ticket_id": chosen}), bearer, server, status="closed",
               report=Path("x.report.csv"))  # fmt: skip
    closed = {t: dict(sim.tickets[t]) for t in chosen[:2]}
    await _run(undo_frame(Path("x.report.csv")), bearer, server, report=Path("u.csv"))
    # As if those two reverts had failed: the tickets as the batch left them, the report so.
    with sim._lock:
        for ticket_id, ticket in closed.items():
            sim.tickets[ticket_id].update(ticket)
    undo = pd.read_csv("u.csv", dtype=str, keep_default_na=False)
    undo.loc[undo["ticket_id"].isin(list(closed)), "outcome"] = "failed"
    undo.to_csv("u.csv", index=False)
    retry = retry_frame(Path("u.csv"), frozenset({"failed"}))
    assert len(retry) == 2 and retry.attrs["clock_skew"] > 240
    again = await _run(retry, bearer, server, report=Path("r.csv"))
    assert list(again["outcome"]) == ["updated", "updated"]
    assert all(sim.tickets[t]["status"] == "new" for t in closed)


async def test_an_expected_since_that_is_not_a_time_is_refused_before_sending(
    sim: Simulator, server: str, tickets: list[dict[str, Any]], bearer: Credentials
) -> None:
    frame = pd.DataFrame(
        {
            "ticket_id": [tickets[0]["id"], tickets[1]["id"]],
            "expected_status": ["closed", "closed"],
            "expected_since": ["2026-11-28T20:41:13.138+00:00", "2026-11-28T20:41:13"],  # no zone
        }
    )
    sent = len(sim.requests)
    with pytest.raises(bulk.UsageError, match=r"row 2, column 'expected_since': .* not a time"):
        await _run(frame, bearer, server, status="new", report=Path("t.csv"))
    assert len(sim.requests) == sent


async def test_undo_leaves_an_assignee_or_type_an_agent_changed_since(
    sim: Simulator, server: str, tickets: list[dict[str, Any]], bearer: Credentials
) -> None:
    """The status is not all an agent edits: an undo that checked only it put the batch's
    assignee and type back over an agent's later reassignment or re-typing (chaos review)."""
    chosen = [t for t in tickets if t["status"] == "new"][:4]
    before = {t["id"]: dict(t) for t in chosen}
    kinds = {t["type"] for t in chosen}
    batch_type, other_type = [k for k in TICKET_TYPES if k not in kinds][:2]
    await _run(
        pd.DataFrame({"ticket_id": list(before)}),
        bearer,
        server,
        assignee=USER,
        type=batch_type,
        status="closed",
        report=Path("x.report.csv"),
    )
    reassigned, retyped, both = (t["id"] for t in chosen[:3])
    agent = "2d8a3e4f-5f6c-4d7e-8f90-a1b2c3d4e5f6"
    with sim._lock:
        for ticket_id in (reassigned, both):
            sim.tickets[ticket_id].update(userRefAssignee=agent)
        for ticket_id in (retyped, both):
            sim.tickets[ticket_id]["type"] = other_type
    report = await _run(
        undo_frame(Path("x.report.csv")),
        bearer,
        server,
        report=Path("x.undo.csv"),
    )
    outcome = report.set_index("ticket_id")
    now = sim.tickets
    # What the agent set stays; what the batch set and nobody changed goes back.
    assert now[reassigned]["userRefAssignee"] == agent
    assert now[reassigned]["type"] == before[reassigned]["type"]
    assert now[retyped]["type"] == other_type
    assert now[retyped].get("userRefAssignee") == before[retyped].get("userRefAssignee")
    assert (now[both]["userRefAssignee"], now[both]["type"]) == (agent, other_type)
    assert outcome.loc[reassigned, "outcome"] == "updated"
    assert outcome.loc[reassigned, "error"] == (
        f"assignee: changed since the batch (now {agent}); left as it is"
    )
    assert outcome.loc[retyped, "error"] == (
        f"type: changed since the batch (now {other_type}); left as it is"
    )
    assert (outcome.loc[reassigned, "assignee_outcome"], outcome.loc[retyped, "type_outcome"]) == (
        "unchanged",
        "unchanged",
    )
    untouched = chosen[3]["id"]
    assert outcome.loc[untouched, "outcome"] == "updated"
    assert pd.isna(outcome.loc[untouched, "error"])
    # The audit counts the rows with a change left alone, as a status-only undo's.
    record = json.loads(await anyio.Path("x.undo.run.json").read_text())
    assert record["left_alone"]["rows"] == 3
    assert record["counts"]["left_alone"] == 3
    assert now[untouched].get("userRefAssignee") == before[untouched].get("userRefAssignee")
    for ticket_id in before:
        assert now[ticket_id]["status"] == "new"  # the status went back everywhere
    # --force puts the batch's values back regardless.
    forced = await _run(
        undo_frame(Path("x.report.csv")),
        bearer,
        server,
        report=Path("f.undo.csv"),
        force=True,
    )
    assert forced["error"].isna().all()
    assert now[both]["type"] == before[both]["type"]


async def test_a_retry_of_an_undo_keeps_its_assignee_guard(
    sim: Simulator, server: str, tickets: list[dict[str, Any]], bearer: Credentials
) -> None:
    """An undo's assignee reverts that failed, retried after an agent reassigned those
    tickets: the retry put the batch's previous assignee back over the agent's (review)."""
    chosen = [t for t in tickets if t["status"] == "new"][:8]
    frame = pd.DataFrame({"ticket_id": [t["id"] for t in chosen]})
    await _run(frame, bearer, server, assignee=USER, report=Path("x.report.csv"))
    sim.config.error_rate = 0.5
    undo = await _run(
        undo_frame(Path("x.report.csv")),
        bearer,
        server,
        report=Path("x.undo.csv"),
        max_attempts=1,
        max_failure_rate=1.0,
    )
    sim.config.error_rate = 0.0
    failed = list(undo.loc[undo["assignee_outcome"] == "failed", "ticket_id"])
    assert failed and "expected_assignee" in undo.columns
    agent = "2d8a3e4f-5f6c-4d7e-8f90-a1b2c3d4e5f6"
    with sim._lock:
        for ticket_id in failed:
            sim.tickets[ticket_id].update(userRefAssignee=agent)
    retry = await _run(
        retry_frame(Path("x.undo.csv"), frozenset({"failed"})),
        bearer,
        server,
        report=Path("x.undo.retry.csv"),
    )
    assert all(sim.tickets[t]["userRefAssignee"] == agent for t in failed)
    assert set(retry["assignee_outcome"]) == {"unchanged"}


async def _assigned_then_undone(
    chosen: list[str], bearer: Credentials, server: str
) -> pd.DataFrame:
    """`chosen` assigned to USER by a batch (x.report.csv); the undo's frame of it."""
    await _run(
        pd.DataFrame({"ticket_id": chosen}),
        bearer,
        server,
        assignee=USER,
        report=Path("x.report.csv"),
    )
    return undo_frame(Path("x.report.csv"))


async def test_a_resumed_undo_reads_each_assignee_again_and_force_is_per_invocation(
    sim: Simulator, server: str, tickets: list[dict[str, Any]], bearer: Credentials
) -> None:
    """An undo in three invocations (`--limit 2` twice, then the rest). A resume judged
    assignees by the first invocation's read, and a `--force` held, or was ignored, across
    invocations (review): each invocation reads just before its PUTs, by its own --force."""
    chosen = [t["id"] for t in tickets if t["status"] == "new"][:6]
    before = {t: sim.tickets[t].get("userRefAssignee") for t in chosen}
    undo = await _assigned_then_undone(chosen, bearer, server)
    agent = "2d8a3e4f-5f6c-4d7e-8f90-a1b2c3d4e5f6"

    def reassign(*ticket_ids: str) -> None:
        with sim._lock:
            for ticket_id in ticket_ids:
                sim.tickets[ticket_id].update(userRefAssignee=agent)

    # Input order: rows 1-2 in the first invocation, 3-4 in the second, 5-6 in the third.
    reassign(chosen[0])
    first = await _run(undo, bearer, server, report=Path("x.undo.csv"), limit=2, force=True)
    assert sim.tickets[chosen[0]].get("userRefAssignee") == before[chosen[0]]  # forced
    assert list(first["outcome"][:2]) == ["updated", "updated"]
    reassign(chosen[2], chosen[4])  # after the first invocation read and wrote
    second = await _run(undo, bearer, server, report=Path("x.undo.csv"), limit=2)
    assert sim.tickets[chosen[2]].get("userRefAssignee") == agent  # no --force this time
    assert second["outcome"][2] == "skipped"
    assert second["error"][2] == f"assignee: changed since the batch (now {agent}); left as it is"
    assert sim.tickets[chosen[3]].get("userRefAssignee") == before[chosen[3]]
    reassign(chosen[5])
    third = await _run(undo, bearer, server, report=Path("x.undo.csv"), force=True)
    # This invocation's --force reverts rows 5 and 6; row 3 finished in the second, as it was.
    assert sim.tickets[chosen[4]].get("userRefAssignee") == before[chosen[4]]
    assert sim.tickets[chosen[5]].get("userRefAssignee") == before[chosen[5]]
    assert sim.tickets[chosen[2]].get("userRefAssignee") == agent
    assert list(third["outcome"]) == [
        "updated",
        "updated",
        "skipped",
        "updated",
        "updated",
        "updated",
    ]


async def test_an_undo_an_older_bulk_began_gets_the_assignee_guard_on_resume(
    sim: Simulator, server: str, tickets: list[dict[str, Any]], bearer: Credentials
) -> None:
    """An undo journal from before the per-change guard (no `expected` values, no flag in
    its meta) is given what the batch set when it resumes, so its remaining rows are guarded."""
    chosen = [t["id"] for t in tickets if t["status"] == "new"][:4]
    undo = await _assigned_then_undone(chosen, bearer, server)
    await _run(undo, bearer, server, report=Path("x.undo.csv"), limit=1)
    # What an older bulk's journal holds: neither the values nor the flag.
    with sqlite3.connect("x.undo.journal") as conn:
        conn.execute("UPDATE changes SET expected = NULL")
        conn.execute("DELETE FROM meta WHERE key = 'expected_changes_set'")
    conn.close()
    agent = "2d8a3e4f-5f6c-4d7e-8f90-a1b2c3d4e5f6"
    with sim._lock:
        sim.tickets[chosen[1]].update(userRefAssignee=agent)
    resumed = await _run(undo, bearer, server, report=Path("x.undo.csv"))
    assert sim.tickets[chosen[1]].get("userRefAssignee") == agent
    assert list(resumed["outcome"]) == ["updated", "skipped", "updated", "updated"]


async def test_undo_lists_the_locations_the_batch_read_in(
    sim: Simulator, server: str, tickets: list[dict[str, Any]], bearer: Credentials
) -> None:
    await bulk.run_async(
        _located(tickets),
        credentials=bearer,
        base_url=server,
        rate=None,
        status="solved",
        report=Path("x.report.csv"),
    )
    assert await anyio.Path("x.report.snapshot.csv").is_file()
    sent = len(sim.requests)
    report = await bulk.run_async(
        undo_frame(Path("x.report.csv")),
        credentials=bearer,
        base_url=server,
        rate=None,
        report=Path("x.undo.csv"),
    )
    assert set(report["outcome"]) == {"updated"}
    assert all(sim.tickets[t["id"]]["status"] == t["status"] for t in tickets)
    reads = [r for r in sim.requests[sent:] if r.method == "GET"]
    assert all(r.ticket_id is None for r in reads)  # listings, no GET of one ticket
    locations = Counter(t["locationRef"] for t in tickets)
    assert 0 < len(reads) <= sum(math.ceil(n / 100) for n in locations.values())


async def test_a_status_applied_whose_answer_was_lost_is_credited(
    sim: Simulator, server: str, tickets: list[dict[str, Any]], bearer: Credentials
) -> None:
    # Every third answer is lost after the server applied the PUT: the retry finds the
    # ticket already closed. What was read first says the change was this run's.
    before = {t["id"]: t["status"] for t in tickets}
    sim.config = SimConfig(rate=None, drop_after_rate=0.35, seed=7)
    report = await bulk.run_async(
        _located(tickets), credentials=bearer, base_url=server, status="closed", rate=None
    )
    sent_twice = [t for t, n in _status_puts(sim).items() if n > 1 and before[t] != "closed"]
    assert sent_twice, "no answer was lost: the test would prove nothing"
    rows = report.set_index("ticket_id")
    for ticket_id in sent_twice:
        assert rows.loc[ticket_id, "outcome"] == "updated"
        assert rows.loc[ticket_id, "previous_status"] == before[ticket_id]
    assert set(rows[rows["previous_status"] == "closed"]["outcome"]) <= {"unchanged"}


async def test_an_assignee_applied_whose_answer_was_lost_is_credited(
    sim: Simulator, server: str, tickets: list[dict[str, Any]], bearer: Credentials
) -> None:
    sim.config = SimConfig(rate=None, drop_after_rate=0.35, seed=11)
    report = await bulk.run_async(
        _located(tickets), credentials=bearer, base_url=server, assignee=USER, rate=None
    )
    puts = Counter(
        r.ticket_id for r in sim.requests if r.method == "PUT" and r.path.endswith("/assignee")
    )
    assert any(n > 1 for n in puts.values()), "no answer was lost: the test would prove nothing"
    # Every ticket was unassigned (read first): each change is this run's, undoable.
    assert set(report["assignee_outcome"]) == {"updated"}
    assert set(report["previous_assignee"]) == {"none"}


async def test_a_resume_does_not_credit_a_lost_assignee_answer_from_an_earlier_read(
    sim: Simulator, server: str, tickets: list[dict[str, Any]], bearer: Credentials
) -> None:
    """As for a status: a canary read every assignee, agents then reassigned the rest, and
    the resume's answers were lost; the canary's read was taken as the previous assignee,
    and the undo unassigned the agents' tickets (review). Such a row is `unchanged` now."""
    chosen = [t["id"] for t in tickets][:40]
    frame = pd.DataFrame({"ticket_id": chosen})
    options: dict[str, Any] = {"assignee": USER, "locations": LOCATIONS, "report": Path("a.csv")}
    await _run(frame, bearer, server, limit=1, **options)
    agent = "2d8a3e4f-5f6c-4d7e-8f90-a1b2c3d4e5f6"
    with sim._lock:
        for ticket_id in chosen[1:]:
            sim.tickets[ticket_id].update(userRefAssignee=agent)
    sim.config.error_after_rate = 0.5
    try:
        report = await _run(frame, bearer, server, max_attempts=10, **options)
    finally:
        sim.config.error_after_rate = 0.0
    rest = report.set_index("ticket_id").loc[chosen[1:]]
    updated = rest[rest["assignee_outcome"] == "updated"]
    assert len(updated) < len(rest)  # some answers were lost
    assert set(updated["previous_assignee"]) == {agent}
    assert all(sim.tickets[t]["userRefAssignee"] == USER for t in chosen)


async def test_an_undo_of_changes_reverts_the_statuses_it_set_beside_ones_already_there(
    sim: Simulator, server: str, tickets: list[dict[str, Any]], bearer: Credentials
) -> None:
    """Half the batch's tickets already had its status: their statusUpdateDate is older than
    the batch, and judged by it they made the batch's own changes look later than its
    finish times. Only a status the batch changed is judged by its time."""
    new = [t["id"] for t in tickets if t["status"] == "new"][:8]
    with sim._lock:
        for ticket in [t for t in tickets if t["status"] != "new"][:8]:
            sim.tickets[ticket["id"]]["status"] = "closed"
            new.append(ticket["id"])
    await _run(pd.DataFrame({"ticket_id": new}), bearer, server, assignee=USER,
               status="closed", report=Path("x.report.csv"))  # fmt: skip
    undo = await _run(undo_frame(Path("x.report.csv")), bearer, server, report=Path("u.csv"))
    assert set(undo["outcome"]) == {"updated"}, undo[["outcome", "error"]]
    assert [sim.tickets[t]["status"] for t in new] == ["new"] * 8 + ["closed"] * 8
