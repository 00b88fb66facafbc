"""The run page: four real runs, and the figures on each page checked against its journal."""

from __future__ import annotations

import html
import json
import re
import uuid
from pathlib import Path

import pytest

from ..support import run_bulk
from .pages import PageView, Run, journal_facts

ORDER = ("updated", "unchanged", "failed", "invalid", "skipped")


@pytest.fixture
def runs(page_runs: dict[str, Run]) -> dict[str, Run]:
    return page_runs


@pytest.mark.parametrize(
    ("name", "code", "kind", "title"),
    [
        ("clean", 0, "done", "done"),
        ("failures", 1, "failures", "done with failures"),
        ("stopped", 3, "stopped", "stopped"),
        ("interrupted", 130, "interrupted", "interrupted"),
        ("resumed", 0, "done", "done"),
    ],
)
def test_verdict_matches_the_exit_code(
    runs: dict[str, Run], name: str, code: int, kind: str, title: str
) -> None:
    run = runs[name]
    assert run.exit_code == code
    page = PageView(run.page)
    assert page.verdict == (kind, title)
    assert f"exit {code}:" in page.html


@pytest.mark.parametrize("name", ["clean", "failures", "stopped", "resumed"])
def test_tiles_match_the_journal(runs: dict[str, Run], name: str) -> None:
    run = runs[name]
    facts = journal_facts(run.journal)
    tiles = PageView(run.page).tiles
    assert tiles["rows"] == facts["rows"]
    for outcome in ORDER:
        assert tiles[outcome] == facts["outcomes"].get(outcome, 0), outcome
    assert tiles["requests"] == facts["requests"]
    assert tiles["retries"] == facts["retries"]
    assert tiles["429s"] == sum(s[2] for s in facts["seconds"])


@pytest.mark.parametrize("name", ["clean", "failures", "resumed"])
def test_every_request_is_in_the_per_second_counters(runs: dict[str, Run], name: str) -> None:
    facts = journal_facts(runs[name].journal)
    assert facts["seconds"], "no per-second data recorded"
    assert sum(s[1] for s in facts["seconds"]) == facts["requests"]


def test_charts_one_pair_per_invocation(runs: dict[str, Run]) -> None:
    assert len(PageView(runs["clean"].page).charts) == 2
    resumed = PageView(runs["resumed"].page)
    assert len(journal_facts(runs["resumed"].journal)["seconds"]) == 2  # two invocations
    titles = resumed.charts
    assert len(titles) == 4
    assert titles[0].startswith("Throughput (invocation 1") and "invocation 2" in titles[2]
    assert resumed.html.count("<svg") == 4
    assert "invocations</dt><dd>2</dd>" in resumed.html
    # The batch began with its first invocation, not its last.
    record = json.loads(runs["resumed"].report.with_name("resumed.report.run.json").read_text())
    first = record["invocations"][0]["started_at"]
    assert first != record["started_at"] and f"started</dt><dd>{first}</dd>" in resumed.html


def test_a_run_too_short_to_chart_says_so(runs: dict[str, Run]) -> None:
    page = PageView(runs["failures"].page)  # an unpaced run of 108 rows: well under 3 s
    assert page.charts == [] and 'id="too-short"' in page.html


def test_failures_grouped_by_error_with_status_and_examples(runs: dict[str, Run]) -> None:
    facts = journal_facts(runs["failures"].journal)
    section = PageView(runs["failures"].page).section("failures")
    cells = re.findall(
        r'<tr><td class="num">([\d,]+)</td><td class="num">([^<]*)</td>'
        r'<td class="msg">([^<]*)</td><td class="mono">([^<]*)</td></tr>',
        section,
    )
    assert [(html.unescape(m), int(s), int(n), int(ex.split(",")[0])) for n, s, m, ex in cells] == [
        (error, status, count, first) for error, status, count, first in facts["failures"]
    ]
    assert facts["failures"][0][1:3] == (404, 6)  # the six unknown tickets: one group
    invalid = section.split("Invalid rows by reason")[1]
    assert invalid.count("<tr><td") == 2 and "bogus" in invalid


def test_change_set_from_previous_status(runs: dict[str, Run]) -> None:
    facts = journal_facts(runs["clean"].journal)
    section = PageView(runs["clean"].page).section("changes")
    shown = re.findall(
        r'<tr><td>([^<]*)</td><td>([^<]*)</td><td class="num">([\d,]+)</td>', section
    )
    assert sorted((a, b, int(n)) for a, b, n in shown) == sorted(facts["transitions"])
    assert {a for a, _, _ in shown} == {"new", "solved"}


def test_table_lists_the_rows_that_matter(runs: dict[str, Run]) -> None:
    for name in ("failures", "stopped", "interrupted"):
        run = runs[name]
        rows = PageView(run.page).table_rows
        assert rows and set(rows) <= {"failed", "invalid", "skipped"}
        if name != "interrupted":  # its journal went on to the resume
            assert len(rows) == journal_facts(run.journal)["matter"]
    assert PageView(runs["clean"].page).table_rows == []
    stopped = PageView(runs["stopped"].page)
    assert rows_first(stopped.table_rows, "failed")
    assert "more than --max-failure-rate 0.2" in stopped.section("verdict")


def rows_first(rows: list[str], outcome: str) -> bool:
    """The failed rows come before the others."""
    return rows[: rows.count(outcome)] == [outcome] * rows.count(outcome)


def test_page_is_self_contained_and_names_the_commands(runs: dict[str, Run]) -> None:
    page = PageView(runs["failures"].page).html
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r'(src|href)="(https?:)?//', page)
    report = str(runs["failures"].report)
    assert f"bulk retry {report}" in page and f"bulk undo {report} --dry-run" in page
    assert "SPACEBRING" not in page and "secret" not in page.lower()
    facts = PageView(runs["interrupted"].page).section("facts")
    assert "resume (sends only what is not final)" in facts and "bulk run " in facts


def test_report_renders_again_and_runs_lists_verdicts(runs: dict[str, Run], tmp_path: Path) -> None:
    run = runs["failures"]
    before = run.page.read_text()
    run.page.unlink()
    out = run_bulk("report", str(run.report))
    assert out.returncode == 0, out.stderr
    assert run.page.read_text() == before
    listing = run_bulk("runs", str(run.report.parent)).stdout
    line = next(x for x in listing.splitlines() if "failures.report.csv" in x)
    assert "done with failures" in line and f"page: {run.page}" in line
    assert " rows=" in line  # the counts add up to the rows
    missing = run_bulk("report", str(tmp_path / "nothing.report.csv"))
    assert missing.returncode == 2 and "nothing.report.csv: no such report" in missing.stderr
    assert "Traceback" not in missing.stderr
    alone = tmp_path / "alone.report.csv"
    alone.write_text("row\n")
    unjournaled = run_bulk("report", str(alone))
    assert unjournaled.returncode == 2 and "no journal" in unjournaled.stderr
    nowhere = run_bulk("runs", str(tmp_path / "no-such-folder"))
    assert nowhere.returncode == 2 and "no such folder" in nowhere.stderr


def test_older_journal_without_seconds_degrades(runs: dict[str, Run], tmp_path: Path) -> None:
    import shutil
    import sqlite3

    run = runs["clean"]
    old = tmp_path / "old"
    old.mkdir()
    report = old / run.report.name
    for source in (run.report, run.journal, run.report.with_name("clean.report.run.json")):
        shutil.copy(source, old / source.name)
    with sqlite3.connect(old / run.journal.name) as conn:
        conn.execute("DROP TABLE seconds")
    out = run_bulk("report", str(report))
    assert out.returncode == 0, out.stderr
    page = PageView(report.with_name("clean.report.html"))
    assert page.charts == [] and 'id="no-seconds"' in page.html
    assert page.tiles["requests"] == journal_facts(run.journal)["requests"]


def test_dry_run_writes_a_page(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text(
        "ticket_id\nnot-an-id\n" + "\n".join(str(uuid.UUID(int=i)) for i in range(1, 4)) + "\n"
    )
    out = run_bulk("run", str(path), "--status", "closed", "--dry-run")
    assert out.returncode == 1, out.stderr
    page = PageView(tmp_path / "reports" / "in.dry-run.html")
    assert page.verdict == ("dry-run", "dry run: nothing sent")
    assert page.tiles["invalid"] == 1 and page.tiles["skipped"] == 3
    assert "page: " in out.stdout.splitlines()[-1]
