"""Hostile input files and unsafe output paths, as a user meets them: the real CLI.

Each corpus case writes its files into a folder of its own, runs the `bulk run`
command (in this process, through click's runner) against a simulator of its
own (so the requests it received are exactly this case's) and checks the exit
status, the number of requests, the affected rows of the report, and what
reached the terminal. The memory cases below run bulk as a child process, to
measure its peak.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import traceback
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
from click.testing import CliRunner

from bulk._core._text import KEEP
from bulk.cli import main
from bulk.input._xlsx import read_rows
from bulk.simulator import SimConfig, Simulator, SimulatorThread, make_tickets

from ..support import demo_vars, read_report, run_bulk_measured

IDS = [t["id"] for t in make_tickets(4, seed=11, statuses=("new",))]
A, B, C, D = IDS
HEADER = "ticket_id,status\n"
MiB = 1024 * 1024


# -- building files ----------------------------------------------------------------


def text(name: str, content: str, encoding: str = "utf-8") -> Callable[[Path], list[str]]:
    def make(folder: Path) -> list[str]:
        (folder / name).write_bytes(content.encode(encoding))
        return [name]

    return make


def raw(name: str, content: bytes) -> Callable[[Path], list[str]]:
    def make(folder: Path) -> list[str]:
        (folder / name).write_bytes(content)
        return [name]

    return make


def jsonl(*lines: str) -> Callable[[Path], list[str]]:
    return text("in.jsonl", "".join(line + "\n" for line in lines))


def obj(ticket_id: str, status: str = "closed") -> str:
    return json.dumps({"ticket_id": ticket_id, "status": status})


def parquet(columns: dict[str, list[str]] | list[tuple[str, list[str]]]) -> Any:
    def make(folder: Path) -> list[str]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pairs = list(columns.items()) if isinstance(columns, dict) else columns
        table = pa.Table.from_arrays([pa.array(v) for _, v in pairs], names=[n for n, _ in pairs])
        pq.write_table(table, folder / "in.parquet")
        return ["in.parquet"]

    return make


HUGE = object()  # a cell of `huge` characters, streamed into the workbook
_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG = "http://schemas.openxmlformats.org/package/2006/relationships"
_PARTS = {
    "[Content_Types].xml": (
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
        'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
        'officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/'
        'sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.'
        'worksheet+xml"/><Override PartName="/xl/sharedStrings.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>'
    ),
    "_rels/.rels": f'<Relationships xmlns="{_PKG}"><Relationship Id="rId1" '
    f'Type="{_REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
    "xl/workbook.xml": f'<workbook xmlns="{_MAIN}" xmlns:r="{_REL}"><sheets>'
    '<sheet name="Tickets" sheetId="1" r:id="rId1"/></sheets></workbook>',
    "xl/_rels/workbook.xml.rels": f'<Relationships xmlns="{_PKG}">'
    f'<Relationship Id="rId1" Type="{_REL}/worksheet" Target="worksheets/sheet1.xml"/>'
    f'<Relationship Id="rId2" Type="{_REL}/sharedStrings" Target="sharedStrings.xml"/>'
    "</Relationships>",
}


def write_xlsx(
    path: Path, rows: list[list[Any]], *, huge: int = 0, inline: bool = False, doctype: str = ""
) -> Path:
    """A minimal workbook, part by part.

    openpyxl writes no cell longer than Excel's 32,767 characters, and the
    point here is a longer one; test_xlsx_reader_agrees_with_openpyxl shows
    openpyxl reads these workbooks as bulk does.
    """

    def put(out: Any, value: Any) -> None:
        if value is HUGE:
            for _ in range(huge // MiB):
                out.write(b"x" * MiB)
            out.write(b"x" * (huge % MiB))
        else:
            out.write(escape(value).encode())

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in _PARTS.items():
            archive.writestr(name, body)
        with archive.open("xl/worksheets/sheet1.xml", "w") as out:
            out.write(
                f'<?xml version="1.0"?>{doctype}<worksheet xmlns="{_MAIN}"><sheetData>'.encode()
            )
            index = 0
            for r, row in enumerate(rows, 1):
                out.write(f'<row r="{r}">'.encode())
                for c, value in enumerate(row):
                    ref = f"{chr(65 + c)}{r}"
                    if inline:
                        out.write(f'<c r="{ref}" t="inlineStr"><is><t>'.encode())
                        put(out, value)
                        out.write(b"</t></is></c>")
                    else:
                        out.write(f'<c r="{ref}" t="s"><v>{index}</v></c>'.encode())
                        index += 1
                out.write(b"</row>")
            out.write(b"</sheetData></worksheet>")
        with archive.open("xl/sharedStrings.xml", "w") as out:
            out.write(f'<sst xmlns="{_MAIN}">'.encode())
            for value in [] if inline else [v for row in rows for v in row]:
                out.write(b"<si><t>")
                put(out, value)
                out.write(b"</t></si>")
            out.write(b"</sst>")
    return path


def xlsx(rows: list[list[Any]], **options: Any) -> Callable[[Path], list[str]]:
    def make(folder: Path) -> list[str]:
        write_xlsx(folder / "in.xlsx", rows, **options)
        return ["in.xlsx"]

    return make


def with_files(
    make: Callable[[Path], list[str]], plant: Callable[[Path], None]
) -> Callable[[Path], list[str]]:
    def both(folder: Path) -> list[str]:
        args = make(folder)
        plant(folder)
        return args

    return both


def link(name: str) -> Callable[[Path], None]:
    """A link planted at `name`, pointing at a file someone cares about."""

    def plant(folder: Path) -> None:
        (folder / "precious.txt").write_text("precious\n")
        (folder / name).symlink_to(folder / "precious.txt")

    return plant


def foreign(name: str, content: bytes = b"someone else's notes\n") -> Callable[[Path], None]:
    def plant(folder: Path) -> None:
        (folder / name).write_bytes(content)

    return plant


def foreign_database(name: str) -> Callable[[Path], None]:
    def plant(folder: Path) -> None:
        with sqlite3.connect(folder / name) as conn:
            conn.execute("CREATE TABLE invoices (n INTEGER)")
            conn.execute("INSERT INTO invoices VALUES (42)")
        conn.close()

    return plant


def fifo(folder: Path) -> list[str]:
    os.mkfifo(folder / "in.csv")
    return ["in.csv"]


def directory(folder: Path) -> list[str]:
    (folder / "in.csv").mkdir()
    return ["in.csv"]


def hard_link_report(folder: Path) -> list[str]:
    (folder / "in.csv").write_text(f"{HEADER}{A},closed\n")
    os.link(folder / "in.csv", folder / "copy.csv")
    return ["in.csv", "--report", "copy.csv"]


VALID = f"{HEADER}{A},closed\n{B},Closed\n"


# -- the corpus ----------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path], list[str]]  # writes the files; returns the CLI arguments
    exit: int
    sent: int  # requests the simulator must have received, exactly
    stderr: tuple[str, ...] = ()  # must appear (file name, row, column ...)
    rows: dict[int, str] = field(default_factory=dict)  # report row -> outcome
    errors: dict[int, str] = field(default_factory=dict)  # report row -> part of its error
    keep: tuple[str, ...] = ()  # files whose bytes must not change
    args: tuple[str, ...] = ()


_LATIN1 = f"{HEADER}{A},closed\n{B},fermé\n"
_LATIN1_AT = _LATIN1.encode("latin-1").index("é".encode("latin-1"))
_MANY = 16_000  # a row may have up to 16,384 cells (Excel's limit)
_QUOTES = ',"x' * 22_000  # 66 KB that csv.Sniffer needed 64 s of CPU for

CORPUS = [
    # encodings, line ends, invisible bytes
    Case("utf8-bom", text("in.csv", "\ufeff" + VALID), 0, 2, rows={1: "updated", 2: "updated"}),
    Case("utf16-bom", text("in.csv", VALID, "utf-16"), 0, 2, rows={2: "updated"}),
    Case(
        "latin1",
        text("in.csv", _LATIN1, "latin-1"),
        2,
        0,
        ("in.csv: not UTF-8", f"byte {_LATIN1_AT}", "line 3"),
        keep=("in.csv",),
    ),
    Case("crlf", text("in.csv", VALID.replace("\n", "\r\n")), 0, 2, rows={2: "updated"}),
    Case("cr-only", text("in.csv", VALID.replace("\n", "\r")), 0, 2, rows={2: "updated"}),
    Case(
        "nul-in-id",
        text("in.csv", f"{HEADER}{A}\x00,closed\n{B},closed\n"),
        1,
        1,
        rows={1: "invalid", 2: "updated"},
        errors={1: "not a ticket id"},
    ),
    Case(
        "nul-in-unused-column", text("in.csv", f"ticket_id,status,note\n{A},closed,a\x00b\n"), 0, 1
    ),
    Case(
        "terminal-escape-in-id",
        text("in.csv", f"{HEADER}\x1b]0;owned\x07{A},closed\n{B},closed\n"),
        1,
        1,
        rows={1: "invalid", 2: "updated"},
    ),
    # structure
    Case("empty-file", text("in.csv", ""), 2, 0, ("in.csv: the file is empty",)),
    Case("header-only", text("in.csv", HEADER), 2, 0, ("in.csv: no data rows",)),
    Case("blank-lines-only", text("in.csv", HEADER + "\n \n\n"), 2, 0, ("in.csv: no data rows",)),
    Case(
        "ragged-short-row",
        text("in.csv", f"{HEADER}{A}\n{B},closed\n"),
        1,
        1,
        rows={1: "invalid", 2: "updated"},
        errors={1: "status: empty"},
    ),
    Case("ragged-long-row", text("in.csv", f"{HEADER}{A},closed,extra,more\n"), 0, 1),
    Case(
        "many-columns",
        text(
            "in.csv",
            ",".join(f"c{i}" for i in range(_MANY))
            + ",ticket_id,status\n"
            + "," * _MANY
            + f"{A},closed\n",
        ),
        0,
        1,
    ),
    Case("no-suffix", text("in", VALID), 0, 2),
    Case("semicolons", text("in.csv", VALID.replace(",", ";")), 0, 2),
    Case(
        "pipes-with-commas-in-cells",
        text("in.csv", f"ticket_id|status|note\n{A}|closed|a,b,c\n"),
        0,
        1,
    ),
    Case(
        "sniffer-quadratic-quotes",
        text("in.csv", f"{HEADER}{A},closed\n{_QUOTES}\n"),
        1,
        1,
        rows={1: "updated", 2: "invalid"},
    ),
    # ambiguous columns
    Case(
        "same-id-column-twice",
        text("in.csv", f"ticket_id,ticket_id,status\n{A},{B},closed\n"),
        2,
        0,
        ("in.csv: 2 columns are named 'ticket_id' (columns 1 and 2)", "ambiguous"),
    ),
    Case(
        "id-column-twice-case-and-spaces",
        text("in.csv", f"Ticket_ID,status, ticket_id \n{A},closed,{B}\n"),
        2,
        0,
        ("in.csv:", "(columns 1 and 3)", "id column is ambiguous"),
    ),
    Case(
        "status-column-twice",
        text("in.csv", f"ticket_id,status,STATUS\n{A},closed,new\n"),
        2,
        0,
        ("in.csv:", "'status' (columns 2 and 3)", "status column is ambiguous"),
    ),
    Case(
        "named-column-twice",
        text("in.csv", f"ref,REF,status\n{A},{B},closed\n"),
        2,
        0,
        (
            "in.csv:",
            "(columns 1 and 2)",
        ),
        args=("--id-column", "ref"),
    ),
    Case(
        "hostile-header-no-id",
        text("in.csv", "\x1b]0;owned\x07name,status\nx,closed\n"),
        2,
        0,
        ("in.csv: no ticket id column",),
    ),
    # size
    Case(
        "long-cell-unused-column",
        text("in.csv", f"ticket_id,status,description\n{A},closed,{'d' * 200_000}\n"),
        0,
        1,
    ),
    Case(
        "long-cell-id",
        text("in.csv", f"{HEADER}{'x' * 200_000},closed\n{A},closed\n"),
        1,
        1,
        rows={1: "invalid", 2: "updated"},
        errors={1: "ticket_id: too long (200,000 characters"},
    ),
    Case(
        "long-cell-status",
        text("in.csv", f"{HEADER}{A},{'c' * 200_000}\n{B},closed\n"),
        1,
        1,
        rows={1: "invalid", 2: "updated"},
        errors={1: "status: too long (200,000 characters"},
    ),
    Case(
        "cell-over-the-limit",
        text("in.csv", f'ticket_id,status,note\n{A},closed,"{"z" * (17 * MiB)}"\n'),
        2,
        0,
        ("in.csv: line 2: a cell longer than 16,777,216 characters",),
    ),
    # other formats
    Case(
        "jsonl-line-over-the-limit",
        jsonl(obj(A), json.dumps({"ticket_id": B, "note": "n" * (17 * MiB)})),
        2,
        0,
        ("in.jsonl: line 2 is longer than 16,777,216 characters",),
    ),
    Case(
        "jsonl-long-id",
        jsonl(obj("y" * 200_000), obj(A)),
        1,
        1,
        rows={1: "invalid", 2: "updated"},
        errors={1: "too long (200,000 characters"},
    ),
    Case(
        "jsonl-duplicate-key",
        jsonl(f'{{"ticket_id": "{A}", "ticket_id": "{B}", "status": "closed"}}'),
        2,
        0,
        ("in.jsonl: line 1: the key 'ticket_id' appears twice",),
    ),
    Case(
        "jsonl-not-an-object",
        jsonl(obj(A), "[1, 2]"),
        2,
        0,
        ("in.jsonl: line 2 is not a JSON object",),
    ),
    Case("jsonl-not-json", jsonl(obj(A), "{oops"), 2, 0, ("in.jsonl: line 2 is not JSON",)),
    Case(
        "parquet-long-id",
        parquet({"ticket_id": ["p" * 200_000, A], "status": ["closed", "closed"]}),
        1,
        1,
        rows={1: "invalid", 2: "updated"},
        errors={1: "too long (200,000 characters"},
    ),
    Case(
        "parquet-id-column-twice",
        parquet([("ticket_id", [A]), ("ticket_id", [B]), ("status", ["closed"])]),
        2,
        0,
        ("in.parquet: 2 columns are named 'ticket_id'",),
    ),
    Case(
        "parquet-garbage",
        raw("in.parquet", b"PAR1 not really PAR1"),
        2,
        0,
        ("in.parquet: cannot read",),
    ),
    Case("xlsx-not-a-zip", raw("in.xlsx", b"ticket_id,status\n"), 2, 0, ("in.xlsx: not an .xlsx",)),
    Case(
        "xlsx-with-a-dtd",
        xlsx([["ticket_id", "status"], [A, "closed"]], doctype='<!DOCTYPE x [<!ENTITY a "aaaa">]>'),
        2,
        0,
        ("in.xlsx: xl/worksheets/sheet1.xml declares a DTD",),
    ),
    Case(
        "xlsx-long-shared-string",
        xlsx([["ticket_id", "status"], [HUGE, "closed"], [A, "closed"]], huge=MiB),
        1,
        1,
        rows={1: "invalid", 2: "updated"},
        errors={1: f"ticket_id: too long ({MiB:,} characters"},
    ),
    Case(
        "xlsx-long-inline-string",
        xlsx([["ticket_id", "status"], [A, HUGE], [B, "closed"]], huge=MiB, inline=True),
        1,
        1,
        rows={1: "invalid", 2: "updated"},
        errors={1: f"status: too long ({MiB:,} characters"},
    ),
    Case("unsupported-suffix", text("in.xls", VALID), 2, 0, ("in.xls: unsupported input type",)),
    Case("directory", directory, 2, 0, ("in.csv: not a regular file",)),
    Case("fifo", fifo, 2, 0, ("in.csv: not a regular file",)),
    Case("missing", lambda folder: ["in.csv"], 2, 0, ("in.csv: no such file",)),
    # what ids and statuses may hold
    Case(
        "path-tricks-in-ids",
        text(
            "in.csv",
            HEADER
            + "".join(
                f"{i},closed\n"
                for i in (
                    "../x",
                    "%2e%2e%2fadmin",
                    "http://evil.example/x",
                    f"{A}/../{B}",
                    f"{A}?x=1",
                    f" {B.upper()} ",
                )
            ),
        ),
        1,
        1,
        rows={1: "invalid", 2: "invalid", 3: "invalid", 4: "invalid", 5: "invalid", 6: "updated"},
        errors={1: "not a ticket id", 4: "not a ticket id"},
    ),
    Case(
        "formulas",
        text(
            "in.csv",
            f'{HEADER}"=HYPERLINK(""http://x"")",closed\n{A},+closed\n@SUM(A1),closed\n{B},closed\n',
        ),
        1,
        1,
        rows={1: "invalid", 2: "invalid", 3: "invalid", 4: "updated"},
    ),
    Case(
        "duplicates",
        text("in.csv", f"{HEADER}{A},closed\n{A},CLOSED\n{B},closed\n{B.upper()},solved\n"),
        1,
        1,
        rows={1: "updated", 2: "skipped", 3: "invalid", 4: "invalid"},
        errors={2: "duplicate of row 1", 3: "conflicting duplicate"},
    ),
    # where the run's own files go
    Case(
        "report-is-the-input",
        text("in.csv", VALID),
        2,
        0,
        ("the report would overwrite the input in.csv",),
        keep=("in.csv",),
        args=("--report", "in.csv"),
    ),
    Case(
        "report-is-the-input-spelt-otherwise",
        text("in.csv", VALID),
        2,
        0,
        ("would overwrite the input",),
        keep=("in.csv",),
        args=("--report", "./reports/../in.csv"),
    ),
    Case(
        "report-is-a-hard-link-to-the-input",
        hard_link_report,
        2,
        0,
        ("copy.csv: the report would overwrite the input",),
        keep=("in.csv",),
    ),
    # A link planted at any of the run's own files: refused, never written through.
    *(
        Case(
            f"link-at-the-{slug}",
            with_files(text("in.csv", VALID), link(name)),
            2,
            0,
            (f"{name}: the {what} is a symbolic link",),
            keep=("precious.txt",),
        )
        for slug, name, what in [
            ("report", "out.csv", "report"),
            ("lock", "out.lock", "lock file"),
            ("journal", "out.journal", "journal"),
            ("journal-log", "out.journal-wal", "journal's log"),
            ("audit-record", "out.run.json", "audit record"),
        ]
    ),
    # Temporary files get fresh random names, created exclusively: a link planted
    # at the name they once had is never written through.
    Case(
        "link-at-the-old-temporary-names",
        with_files(
            with_files(text("in.csv", VALID), link(".out.csv.tmp")),
            lambda f: (f / ".out.run.json.tmp").symlink_to(f / "precious.txt"),
        ),
        0,
        2,
        rows={2: "updated"},
        keep=("precious.txt",),
    ),
    Case(
        "fresh-with-a-foreign-journal",
        with_files(text("in.csv", VALID), foreign("out.journal")),
        2,
        0,
        ("out.journal: exists and is not a journal of bulk's",),
        keep=("out.journal",),
        args=("--fresh",),
    ),
    Case(
        "fresh-with-a-foreign-database",
        with_files(text("in.csv", VALID), foreign_database("out.journal")),
        2,
        0,
        ("out.journal: exists and is not a journal of bulk's",),
        keep=("out.journal",),
        args=("--fresh",),
    ),
    Case(
        "foreign-lock-file",
        with_files(text("in.csv", VALID), foreign("out.lock")),
        2,
        0,
        ("out.lock: exists and is not a lock file of bulk's",),
        keep=("out.lock",),
    ),
    Case(
        "foreign-file-at-the-report",
        with_files(text("in.csv", VALID), foreign("out.csv", b"name,amount\nrent,900\n")),
        2,
        0,
        ("out.csv: exists and is not a report bulk wrote",),
        keep=("out.csv",),
    ),
    Case(
        "foreign-file-at-the-audit-record",
        with_files(text("in.csv", VALID), foreign("out.run.json", b'{"budget": 1}')),
        2,
        0,
        ("out.run.json: exists and is not an audit record bulk wrote",),
        keep=("out.run.json",),
    ),
]


@dataclass
class Result:
    folder: Path
    code: int
    stdout: str
    stderr: str
    requests: int
    before: dict[str, bytes]


def run_case(case: Case, folder: Path) -> Result:
    """`bulk run` on the case's files, in this process (CliRunner) against a simulator of its own.

    In-process: a case in a child process spent most of its second starting the
    interpreter (60 cases: about 60 s of CPU, a third of the suite). What the
    CLI prints, its exit status and the requests it sent are the same; an
    exception that escaped would be a traceback, so it is put into `stderr`.
    """
    args = case.make(folder) + list(case.args)
    if "--report" not in args:
        args += ["--report", "out.csv"]
    before = {name: (folder / name).read_bytes() for name in case.keep}
    sim = Simulator(SimConfig(rate=None), make_tickets(4, seed=11, statuses=("new",)))
    with SimulatorThread(sim) as server, _inside(folder):
        unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("SPACEBRING_")}
        out = CliRunner().invoke(
            main, ["run", *args, "--rate", "unlimited"], env=unset | demo_vars(server.base_url)
        )
    stderr = out.stderr
    if out.exception is not None and not isinstance(out.exception, SystemExit):
        stderr += "".join(traceback.format_exception(out.exception))
    return Result(folder, out.exit_code, out.stdout, stderr, len(sim.requests), before)


@contextlib.contextmanager
def _inside(folder: Path) -> Iterator[None]:
    back = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(back)


@pytest.fixture(scope="module")
def results(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Result]:
    """Every selected case's run, one after another (each changes the working directory)."""
    wanted = set()
    for item in request.session.items:
        if isinstance(item, pytest.Function) and item.originalname == "test_corpus":
            case = item.callspec.params["case"]
            assert isinstance(case, Case)
            wanted.add(case.name)
    return {
        c.name: run_case(c, tmp_path_factory.mktemp(c.name)) for c in CORPUS if c.name in wanted
    }


def _report(folder: Path) -> list[dict[str, str]]:
    return read_report(folder / "out.csv")


def test_corpus_is_large_and_named_uniquely() -> None:
    assert len(CORPUS) >= 30
    assert len({c.name for c in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_corpus(case: Case, results: dict[str, Result]) -> None:
    result = results[case.name]
    shown = result.stderr + result.stdout
    assert "Traceback" not in shown
    assert result.code == case.exit, shown
    assert result.requests == case.sent, shown
    for part in case.stderr:
        assert part in result.stderr
    # Nothing from the file reaches the terminal raw (a NUL, an escape sequence).
    assert "\x00" not in shown and "\x1b" not in shown and "\x07" not in shown
    for name, content in result.before.items():
        assert (result.folder / name).read_bytes() == content, f"{name} changed"
    report = result.folder / "out.csv"
    if case.exit == 2:
        assert not report.exists() or "out.csv" in case.keep or report.is_symlink()
        return
    blob = report.read_bytes()
    assert len(blob) < 100_000
    assert b"\x00" not in blob and b"\x1b" not in blob
    rows = _report(result.folder)
    for row, outcome in case.rows.items():
        assert rows[row - 1]["outcome"] == outcome, rows[row - 1]
    for row, part in case.errors.items():
        assert part in rows[row - 1]["error"], rows[row - 1]


def test_long_cells_are_cut_and_marked(results: dict[str, Result]) -> None:
    cell = _report(results["long-cell-id"].folder)[0]["ticket_id"]
    assert cell == "x" * KEEP + f"…(+{200_000 - KEEP:,} chars)"


def test_formulas_are_neutralised_in_the_report(results: dict[str, Result]) -> None:
    rows = _report(results["formulas"].folder)
    assert rows[0]["ticket_id"].startswith("'=HYPERLINK")
    assert rows[1]["target_status"] == "'+closed"
    assert rows[2]["ticket_id"] == "'@SUM(A1)"


def test_control_characters_are_shown_escaped(results: dict[str, Result]) -> None:
    assert _report(results["nul-in-id"].folder)[0]["ticket_id"] == f"{A}\\x00"
    assert _report(results["terminal-escape-in-id"].folder)[0]["ticket_id"].startswith(
        "\\x1b]0;owned\\x07"
    )


# -- memory ----------------------------------------------------------------------

RUN = ("--report", "out.csv", "--rate", "unlimited")


def test_a_90_mb_xlsx_cell_is_read_in_bounded_memory(tmp_path: Path) -> None:
    # Before: 920 MB of memory and a 100 MB report for a 100 MB cell in 100 KB.
    # (Past 100 MB such a part is refused for its ratio: test_hostile_jobs.py.)
    path = write_xlsx(
        tmp_path / "in.xlsx",
        [["ticket_id", "status"], [HUGE, "closed"], [A, "closed"]],
        huge=90 * MiB,
    )
    assert path.stat().st_size < 1 * MiB
    sim = Simulator(SimConfig(rate=None), make_tickets(4, seed=11, statuses=("new",)))
    with SimulatorThread(sim) as server:
        out = run_bulk_measured(
            "run", str(path), *RUN, cwd=tmp_path, env=demo_vars(server.base_url), timeout=60
        )
    assert out.code == 1, out.stderr
    assert len(sim.requests) == 1
    assert out.peak_mb < 150, f"peak RSS {out.peak_mb:.0f} MiB"
    assert (tmp_path / "out.csv").stat().st_size < 100_000
    rows = _report(tmp_path)
    assert rows[0]["outcome"] == "invalid" and f"({90 * MiB:,} characters" in rows[0]["error"]


# -- the xlsx reader, in process -------------------------------------------------


def test_xlsx_reader_agrees_with_openpyxl(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    rows = [["ticket_id", "status", "note"], [A, "closed", "a & <b>"], [B, "", "ünïcödé"]]
    for inline in (False, True):
        path = write_xlsx(tmp_path / f"{inline}.xlsx", rows, inline=inline)
        book = load_workbook(path, read_only=True)
        theirs = [[v or None for v in r] for r in book.active.iter_rows(values_only=True)]
        book.close()
        ours = list(read_rows(path, "x", lambda text, size: text, KEEP))
        assert ours == theirs == [[v or None for v in r] for r in rows]
