"""Validation before sending: ids, statuses, duplicates, columns, file formats."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import bulk
from bulk.input import _source as _inputs
from bulk.plan import normalise_status

from ..conftest import read_report, write_csv

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


def dry(path: Path | pd.DataFrame, **kw: object) -> pd.DataFrame:
    return bulk.run(path, dry_run=True, **kw)


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
    messy = Path(__file__).parents[2] / "samples" / "messy.csv"
    summary = bulk.run(messy, dry_run=True, report=tmp_path / "m.csv").attrs["summary"]
    report = read_report(tmp_path / "m.csv")
    assert summary.exit_code == 1
    assert [r["row"] for r in report] == [str(i) for i in range(1, len(report) + 1)]
    outcomes = [r["outcome"] for r in report]
    assert outcomes.count("invalid") == 9
    # the formula-looking status is neutralised in the CSV report
    assert any(r["target_status"].startswith("'=") for r in report)


@pytest.mark.parametrize("suffix", [".tsv", ".xlsx", ".parquet", ".jsonl", ".csv"])
def test_formats(tmp_path: Path, suffix: str) -> None:
    frame = pd.DataFrame({"Ticket ID": [ID, ID2, "nope"], "Target_Status": ["closed", "new", "x"]})
    path = tmp_path / f"in{suffix}"
    if suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif suffix == ".csv":
        path.write_text("\ufeff" + frame.to_csv(sep="|", index=False), encoding="utf-8")
    elif suffix == ".xlsx":
        frame.to_excel(path, index=False)
    elif suffix == ".parquet":
        frame.to_parquet(path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict("records")))
    report = dry(path)
    assert list(report["outcome"]) == ["skipped", "skipped", "invalid"]
    assert list(report["target_status"][:2]) == ["closed", "new"]


def test_dataframe_and_status_option(tmp_path: Path) -> None:
    report = dry(pd.DataFrame({"id": [ID, ID2]}), status="Solved")
    assert list(report["target_status"]) == ["solved", "solved"]


def test_column_override_and_chunking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_inputs, "CHUNK_ROWS", 7)
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(50)]
    path = write_csv(
        tmp_path / "in.csv", [(i, "x", "closed") for i in ids], ("ref", "id", "wanted")
    )
    report = dry(path, id_column="REF", status_column="wanted")
    assert list(report["row"]) == list(range(1, 51))
    assert list(report["ticket_id"]) == ids
    assert set(report["outcome"]) == {"skipped"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"ticket_id,status\n", "no data rows"),
        (b"name,colour\nx,y\n", "no ticket id column"),
        (b"ticket_id\n" + ID.encode() + b"\n", "no status column"),
        (b"ticket_id,status\n\xff\xfe\x00bad,closed\n", "not UTF-8"),
    ],
)
def test_unusable_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(bulk.UsageError, match=message) as info:
        dry(path)
    assert "bad.csv" in str(info.value)


def test_missing_file_and_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(bulk.UsageError, match="no such file"):
        dry(tmp_path / "missing.csv")
    (tmp_path / "in.docx").write_text("x")
    with pytest.raises(bulk.UsageError, match="unsupported input type"):
        dry(tmp_path / "in.docx")
