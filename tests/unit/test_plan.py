"""Validation before sending: ids, statuses, duplicates (a dry run plans and sends nothing)."""

from __future__ import annotations

from pathlib import Path

import pytest

import bulk
from bulk.plan import normalise_status

from ..support import SAMPLES, dry, read_report, write_csv

ID = "3f2b8c1e-5a4d-4e6f-9b7a-1c2d3e4f5a6b"
ID2 = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("closed", "closed"),
        ("Closed", "closed"),
        ("CLOSED", "closed"),
        (" in progress ", "inProgress"),
        ("in_progress", "inProgress"),
        ("inprogress", "inProgress"),
        ("In-Progress", "inProgress"),
        ("NEW", "new"),
        ("Solved", "solved"),
        ("resolved", None),
        ("", None),
        ("closed!", None),
    ],
)
def test_status_spellings(raw: str, expected: str | None) -> None:
    assert normalise_status(raw) == expected


def test_invalid_ids_never_planned(tmp_path: Path) -> None:
    bad = ["../x", "a/b", "", "12345", ID + "/../x", ID[:-1], f"{{{ID}}}"]
    path = write_csv(
        tmp_path / "in.csv", [(b, "closed") for b in bad] + [(f"  {ID.upper()} ", "closed")]
    )
    report = dry(path)
    assert list(report["outcome"]) == ["invalid"] * len(bad) + ["skipped"]
    assert all("ticket_id" in e for e in report["error"][: len(bad)])
    assert report["ticket_id"].iloc[-1] == ID.upper()  # as given, trimmed
    assert report["error"].iloc[-1] == "dry run"


def test_unknown_status_lists_allowed_values(tmp_path: Path) -> None:
    report = dry(write_csv(tmp_path / "in.csv", [(ID, "archived")]))
    assert report["outcome"][0] == "invalid"
    assert "'archived'" in report["error"][0]
    assert "new, inProgress, solved, closed" in report["error"][0]


def test_duplicates_and_conflicts(tmp_path: Path) -> None:
    rows = [(ID, "closed"), (ID2, "solved"), (ID.upper(), "Closed"), (ID2, "new"), (ID, "closed")]
    report = dry(write_csv(tmp_path / "in.csv", rows))
    assert list(report["outcome"]) == ["skipped", "invalid", "skipped", "invalid", "skipped"]
    assert list(report["error"][[2, 4]]) == ["duplicate of row 1", "duplicate of row 1"]
    assert "conflicting duplicate" in report["error"][1]
    assert "new" in report["error"][1] and "solved" in report["error"][1]


def test_messy_sample(tmp_path: Path) -> None:
    messy = SAMPLES / "messy.csv"
    summary = bulk.run(messy, dry_run=True, report=tmp_path / "m.csv").attrs["summary"]
    report = read_report(tmp_path / "m.csv")
    assert summary.exit_code == 1
    assert [r["row"] for r in report] == [str(i) for i in range(1, len(report) + 1)]
    outcomes = [r["outcome"] for r in report]
    assert outcomes.count("invalid") == 9
    # the formula-looking status is neutralised in the CSV report
    assert any(r["target_status"].startswith("'=") for r in report)
