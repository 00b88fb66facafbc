"""Planning a row of several changes: checks, order, templates; nothing is sent."""

from __future__ import annotations

import pytest

from bulk import UsageError
from bulk.input import Chunk
from bulk.plan import (
    KINDS,
    ChangeSpec,
    PlannedChange,
    PlannedRow,
    Template,
    checked_changes,
    plan_changes,
)

T1 = "11111111-2222-4333-8444-555555555555"
USER = "0b6f1c2e-3d4a-4b5c-8d6e-7f8091a2b3c4"


def _plan(
    extras: dict[str, list[str]],
    statuses: list[str] | None = None,
    comment: Template | None = None,
) -> list[tuple[PlannedRow, list[PlannedChange]]]:
    n = len(next(iter(extras.values())))
    chunk = Chunk(1, [T1] * n, statuses, extras=extras)
    spec = ChangeSpec(comment=comment, columns={name: name for name in extras})
    return list(plan_changes(chunk, "ticket_id", "status", None, spec))


def test_changes_come_in_the_documented_order_with_status_last() -> None:
    [(row, changes)] = _plan(
        {"assignee": [USER], "type": ["Repair and maintenance"], "comment": ["bye"]}, ["Closed"]
    )
    assert row.outcome is None
    assert [c.kind for c in changes] == ["assignee", "type", "comment", "status"]
    assert [c.seq for c in changes] == [KINDS.index(c.kind) for c in changes]
    assert [c.value for c in changes] == [USER, "repairAndMaintenance", "bye", "closed"]


def test_none_unassigns_and_empty_means_no_change() -> None:
    [(_, changes), (_, other)] = _plan({"assignee": ["NONE", ""], "type": ["", "other"]})
    assert [(c.kind, c.value) for c in changes] == [("assignee", "none")]
    assert [(c.kind, c.value) for c in other] == [("type", "other")]


@pytest.mark.parametrize(
    ("extras", "message"),
    [
        ({"assignee": ["bob"]}, "assignee: 'bob' is not a user id"),
        ({"type": ["plumbing"]}, "type: 'plumbing' is not a ticket type; allowed: access"),
        ({"assignee": [""]}, "no change asked for"),
    ],
)
def test_a_bad_or_missing_change_makes_the_row_invalid(
    extras: dict[str, list[str]], message: str
) -> None:
    [(row, changes)] = _plan(extras)
    assert row.outcome == "invalid" and message in (row.error or "")
    assert changes == []


def test_a_template_is_filled_from_the_row_and_names_a_missing_or_empty_column() -> None:
    template = Template.parse("Closed after the move to {new_system}: {legacy_id}")
    rows = _plan({"new_system": ["Zammad", "Zammad"], "legacy_id": ["L-1", ""]}, comment=template)
    assert rows[0][1][0].value == "Closed after the move to Zammad: L-1"
    assert rows[1][0].outcome == "invalid" and "legacy_id: empty" in (rows[1][0].error or "")
    [(missing, _)] = _plan({"new_system": ["Zammad"]}, comment=template)
    assert missing.outcome == "invalid" and "no column 'legacy_id'" in (missing.error or "")


@pytest.mark.parametrize("bad", ["{x.__class__}", "{x[0]}", "{x!r}", "{x:>9}", "{}", "{", ""])
def test_a_bad_template_or_value_is_a_usage_error(bad: str) -> None:
    with pytest.raises(UsageError, match="--comment"):
        Template.parse(bad)


def test_option_values_are_checked_before_reading() -> None:
    assert checked_changes("None", "Cleaning", "hi {a}") == ("none", "cleaning")
    with pytest.raises(UsageError, match="--assignee"):
        checked_changes("x", None, None)
    with pytest.raises(UsageError, match="--type 'y'"):
        checked_changes(None, "y", None)
