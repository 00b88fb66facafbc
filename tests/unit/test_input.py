"""Reading the input: file formats, DataFrames, columns, chunks, and files bulk cannot use.

Each goes through a dry run (read, checked and planned; nothing sent), or
straight through `open_source` where the reader's own error is the point.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import bulk
from bulk.input import _source as _inputs
from bulk.input import open_source

from ..support import dry, write_csv

ID = "3f2b8c1e-5a4d-4e6f-9b7a-1c2d3e4f5a6b"
ID2 = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
HEADER = "ticket_id,status\n"


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


def test_lines_of_empty_cells_are_blank_as_excel_saves_them(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    text = f"Ticket ID;Status\r\n{ID};closed\r\n;\r\n; ;\r\n{ID2};new\r\n;;\r\n\r\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    report = dry(path)
    assert list(report["ticket_id"]) == [ID, ID2]
    assert list(report["row"]) == [1, 2]  # not counted as rows
    assert list(report["outcome"]) == ["skipped", "skipped"]


def test_a_dataframe_without_its_columns_is_told_the_librarys_words() -> None:
    with pytest.raises(bulk.UsageError, match=r"name it with id_column=$"):
        open_source(pd.DataFrame({"x": [ID]}))
    with pytest.raises(bulk.UsageError, match=r"name it with status_column= or give status=$"):
        open_source(pd.DataFrame({"id": [ID]}))


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


@pytest.mark.parametrize("rows", [10, 5_000], ids=["first-block", "far-past-it"])
@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"], ids=["no-bom", "bom"])
def test_a_bad_byte_is_named_by_its_place_in_the_file(
    tmp_path: Path, bom: bytes, rows: int
) -> None:
    # A decoder's own offsets restart at each block it is given, and skip a BOM.
    good = bom + HEADER.encode() + f"{ID},closed\n".encode() * rows
    path = tmp_path / "in.csv"
    path.write_bytes(good + b"x,clos\xe9d\n")
    with pytest.raises(bulk.UsageError) as info:
        for _ in open_source(path).chunks():
            pass
    where = len(good) + len(b"x,clos")
    expected = (
        f"in.csv: not UTF-8 text (invalid continuation byte at byte {where:,}, line {rows + 2})"
    )
    assert expected in str(info.value)


def test_jsonl_columns_are_the_keys_of_every_line(tmp_path: Path) -> None:
    """A key only later lines carry is a column too, not dropped for missing from line 1."""
    path = tmp_path / "in.jsonl"
    lines = [{"ticket_id": ID}, {"ticket_id": ID2, "status": "solved"}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    report = dry(path, status_column="status")
    assert list(report["target_status"]) == ["", "solved"]
    assert list(report["outcome"]) == ["invalid", "skipped"]
    assert report["error"][0] == "status: empty; allowed: " + ", ".join(bulk.plan.STATUSES)
