"""The holes a hostile review found after issue 9, each closed as a class and proved here.

- A job folder is shared ground: a planted pointer, journal or link must never
  steer a run (the pointer names files of its own folder only; pointer and
  journal must be this user's and writable by nobody else; bulk never writes
  through a link nor over a file it did not create; the batch input the run
  reads is the one the listing wrote).
- A listing's times must be what the spec says (a date-time with a zone).
- A .env never mixes with credentials in the environment; a base URL is a root.
- A small file must not cost unbounded CPU or memory: .xlsx rows keep only the
  wanted columns, parts that unpack at a bomb's ratio are refused, shared
  strings and CSV cells per row are capped, Parquet strings stay dictionaries.
- What `bulk runs`, `retry` and `undo` read from audit records is untrusted.
- `${VARIABLE}` in a job file is an allow-list by key.

Every run goes to a simulator on loopback, in process where the stage allows
it, as the real CLI otherwise.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import subprocess
import sys
import tracemalloc
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from bulk import Credentials, UsageError
from bulk._core._config import DEFAULT_BASE_URL, resolve_target
from bulk._core._files import read_file, replacing
from bulk.batch import RunOptions, execute
from bulk.input import _formats, _source, _xlsx, open_source
from bulk.input._formats import MAX_FIELDS, CsvLines, _Cells
from bulk.input._xlsx import SheetRows
from bulk.jobs import ListingUnreadable, PreparedRun, load_job, prepare_job
from bulk.journal import Journal
from bulk.report import batch_of, read_audit
from bulk.simulator import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_NETWORK_ID,
    LOCATIONS,
    SimConfig,
    Simulator,
    SimulatorThread,
    demo_env,
    make_tickets,
)

from ..support import read_report, run_bulk, write_csv

MiB = 1 << 20
GOOD = Credentials.basic(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
WRONG = Credentials.basic(DEMO_CLIENT_ID, "not-the-secret")
SECRET = "hunter2-zq9"
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file away")


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_bulk(*args, env=env, cwd=cwd, errors="backslashreplace")


# -- a job's folder: the pointer, the journal, the files it writes -------------------------

JOB = (
    'name = "nightly"\n[source]\nkind = "api"\nlocations = ["{locations}"]\n'
    '[action]\nstatus = "closed"\n[run]\nrate = "unlimited"\nmax_attempts = 1\n'
)


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    server = Simulator(SimConfig(rate=None), make_tickets(9, seed=7, statuses=("new",)))
    with SimulatorThread(server) as thread:
        for name, value in demo_env(thread.base_url, {}).items():
            monkeypatch.setenv(name, value)
        yield server


def job_file(tmp_path: Path, text: str = JOB) -> Path:
    path = tmp_path / "nightly.toml"
    path.write_text(text.format(locations=",".join(LOCATIONS)))
    return path


def prepare(path: Path, *, dry_run: bool = False, now: datetime | None = None) -> PreparedRun:
    job = load_job(path, os.environ)
    return anyio.run(lambda: prepare_job(job, dry_run=dry_run, now=now))


def send(prepared: PreparedRun, credentials: Credentials) -> int:
    assert prepared.input is not None
    summary = anyio.run(
        lambda: execute(
            prepared.input,  # type: ignore[arg-type]
            prepared.options,
            credentials=credentials,
            input_sha256=prepared.input_sha256,
        )
    )
    return summary.exit_code


def interrupted(tmp_path: Path) -> tuple[Path, PreparedRun]:
    """A job run stopped by rejected credentials (exit 3): the next invocation finishes it."""
    path = job_file(tmp_path)
    prepared = prepare(path)
    assert send(prepared, WRONG) == 3
    return path, prepared


FOLDER = Path("reports") / "nightly"
POINTER = FOLDER / ".nightly.current"


def test_an_interrupted_job_run_is_finished_by_the_next_invocation(
    tmp_path: Path, sim: Simulator
) -> None:
    path, first = interrupted(tmp_path)
    assert json.loads(POINTER.read_text()) == {
        "report": first.options.report.name,  # type: ignore[union-attr]
        "input": first.input.name,  # type: ignore[union-attr]
    }
    assert POINTER.stat().st_mode & 0o077 == 0
    again = prepare(path)
    assert again.resumed and again.input == first.input
    assert again.options.report == first.options.report
    assert send(again, GOOD) == 0
    assert all(sim.status_of(ticket) == "closed" for ticket in sim.tickets)


def _outside_run(tmp_path: Path, sim: Simulator) -> tuple[Path, Path]:
    """Someone else's interrupted batch outside the job's folder: report and input."""
    other = tmp_path / "elsewhere"
    other.mkdir()
    victim = next(iter(sim.tickets))
    batch = write_csv(other / "in.csv", [(victim, "closed")], ("ticket_id", "target_status"))
    options = RunOptions(
        report=other / "x.csv",
        id_column="ticket_id",
        status_column="target_status",
        rate=None,
        max_attempts=1,
    )
    summary = anyio.run(lambda: execute(batch, options, credentials=WRONG))
    assert summary.exit_code == 3
    sim.requests.clear()
    return other / "x.csv", batch


def test_a_planted_pointer_cannot_send_someone_elses_batch(tmp_path: Path, sim: Simulator) -> None:
    """The review's attack, through the real CLI: a pointer to a batch outside the folder."""
    report, batch = _outside_run(tmp_path, sim)
    FOLDER.mkdir(parents=True)
    POINTER.write_text(json.dumps({"report": str(report), "input": str(batch)}))
    POINTER.chmod(0o600)
    out = cli("job", "run", str(job_file(tmp_path)), env=demo_env(sim_url(sim)), cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "the job's pointer names" in out.stderr and "bulk resumes only this job's" in out.stderr
    assert "Traceback" not in out.stderr
    assert sim.requests == []


def sim_url(sim: Simulator) -> str:
    return os.environ["SPACEBRING_BASE_URL"]


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ("outside-absolute", "not a file of its own in reports/nightly"),
        ("outside-dotdot", "not a file of its own in reports/nightly"),
        ("link-in-folder", "not a file of its own in reports/nightly"),
        ("pointer-group-writable", "the job's pointer may be changed by other users"),
        ("pointer-is-a-link", "the job's pointer is a symbolic link"),
        ("journal-group-writable", "the journal may be changed by other users"),
        pytest.param("pointer-of-another-user", "belongs to another user", marks=ROOT_ONLY),
        pytest.param("journal-of-another-user", "belongs to another user", marks=ROOT_ONLY),
    ],
)
def test_a_pointer_or_journal_bulk_cannot_trust_stops_the_job(
    tmp_path: Path, sim: Simulator, tamper: str, message: str
) -> None:
    path, first = interrupted(tmp_path)
    report = first.options.report
    assert report is not None and first.input is not None
    journal = report.with_suffix(".journal")
    outside_report, outside_input = _outside_run(tmp_path, sim)
    if tamper.startswith("outside"):
        given = (
            {"report": str(outside_report.resolve()), "input": str(outside_input.resolve())}
            if tamper == "outside-absolute"
            else {"report": "../../elsewhere/x.csv", "input": "../../elsewhere/in.csv"}
        )
        with replacing(POINTER, perms=0o600) as handle:
            handle.write(json.dumps(given))
    elif tamper == "link-in-folder":
        (FOLDER / "planted.csv").symlink_to(outside_report.resolve())
        with replacing(POINTER, perms=0o600) as handle:
            handle.write(json.dumps({"report": "planted.csv", "input": first.input.name}))
    elif tamper == "pointer-group-writable":
        POINTER.chmod(0o620)
    elif tamper == "pointer-is-a-link":
        (FOLDER / "elsewhere.json").write_text(POINTER.read_text())
        POINTER.unlink()
        POINTER.symlink_to("elsewhere.json")
    elif tamper == "journal-group-writable":
        journal.chmod(0o664)
    elif tamper == "pointer-of-another-user":
        os.chown(POINTER, 65534, 65534)
    elif tamper == "journal-of-another-user":
        os.chown(journal, 65534, 65534)
    with pytest.raises(UsageError, match=message) as caught:
        prepare(path)
    assert caught.value.exit_code == 2
    assert sim.requests == []


def test_replacing_never_writes_through_a_link_or_over_a_file_it_did_not_create(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / "to-victim").symlink_to(victim)
    (tmp_path / "dangling").symlink_to(tmp_path / "would-be-created")
    (tmp_path / "someone.csv").write_text("someone's\n")
    for name in ("to-victim", "dangling", "someone.csv"):
        with (
            pytest.raises(UsageError, match="bulk does not overwrite a file it did not create"),
            replacing(tmp_path / name, new=True) as handle,
        ):
            handle.write("bulk's\n")
    # Without `new`: the name is replaced (the link itself), never the link's target.
    with replacing(tmp_path / "to-victim") as handle:
        handle.write("bulk's\n")
    assert victim.read_text() == "precious\n"
    assert (tmp_path / "someone.csv").read_text() == "someone's\n"
    assert not (tmp_path / "would-be-created").exists()
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind
    assert (tmp_path / "to-victim").read_text() == "bulk's\n"


def test_links_planted_at_a_jobs_guessable_names_are_left_alone(
    tmp_path: Path, sim: Simulator
) -> None:
    now = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    FOLDER.mkdir(parents=True)
    stem = "nightly-20300102T030405Z.dry-run"
    for end in (".snapshot.csv", ".input.csv"):
        (FOLDER / f"{stem}{end}").symlink_to(victim)
    (FOLDER / f"{stem}-2.csv").symlink_to(tmp_path / "nowhere")  # dangling: taken too
    prepared = prepare(job_file(tmp_path), dry_run=True, now=now)
    assert prepared.snapshot == FOLDER / f"{stem}-3.snapshot.csv"
    assert prepared.input == FOLDER / f"{stem}-3.input.csv"
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "nowhere").exists()


def test_the_run_refuses_a_batch_input_changed_after_the_listing(
    tmp_path: Path, sim: Simulator
) -> None:
    prepared = prepare(job_file(tmp_path))
    assert prepared.input is not None and prepared.input_sha256
    with open(prepared.input, "a", encoding="utf-8") as handle:
        handle.write(f"{LOCATIONS[0]},closed,new,{LOCATIONS[0]}\n")
    with pytest.raises(UsageError, match="not the file bulk wrote"):
        send(prepared, GOOD)
    assert sim.sent_ids() == []


# -- listing times ------------------------------------------------------------------------

SELECT = JOB + '[select]\nstatus = ["new"]\nolder_than = "1d"\nage_field = "statusUpdateDate"\n'


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("2020-01-01T00:00:00", "'2020-01-01T00:00:00'"),
        ("2020-01-01", "'2020-01-01'"),
        ("yesterday\x1b[2J", "'yesterday\\x1b[2J'"),
        (12345, "12345"),
        ({"a": 1}, "{'a': 1}"),
    ],
)
def test_a_listed_time_without_a_zone_stops_the_job_before_sending(
    tmp_path: Path, sim: Simulator, value: Any, shown: str
) -> None:
    ticket = next(iter(sim.tickets.values()))
    ticket["statusUpdateDate"] = value
    with pytest.raises(ListingUnreadable) as caught:
        prepare(job_file(tmp_path, SELECT))
    message = str(caught.value)
    assert f"ticket {ticket['id']}: statusUpdateDate {shown} is not a date-time" in message
    assert message.endswith("stopped, nothing sent") and "\x1b" not in message
    assert caught.value.exit_code == 2
    assert sim.sent_ids() == []


def test_listed_times_with_a_zone_are_read_and_a_missing_one_is_not_selected(
    tmp_path: Path, sim: Simulator
) -> None:
    first, second, third = list(sim.tickets.values())[:3]
    first["statusUpdateDate"] = "2020-01-01T02:00:00+02:00"
    second.pop("statusUpdateDate")  # optional in the spec: its age is unknown
    third["statusUpdateDate"] = "2999-01-01T00:00:00Z"  # too recent
    prepared = prepare(job_file(tmp_path, SELECT))
    assert prepared.input is not None
    chosen = {r["ticket_id"] for r in read_report(prepared.input)}
    assert first["id"] in chosen and second["id"] not in chosen and third["id"] not in chosen


# -- a .env never mixes with the environment's credentials; a base URL is a root ------------

BEARER = {"SPACEBRING_ACCESS_TOKEN": "env-token", "SPACEBRING_NETWORK_ID": DEMO_NETWORK_ID}
PLANTED = (
    "SPACEBRING_CLIENT_ID=attacker\nSPACEBRING_CLIENT_SECRET=attacker-secret\n"
    "SPACEBRING_BASE_URL=https://attacker.example\n"
)


ALL_THREE = "SPACEBRING_CLIENT_ID, SPACEBRING_CLIENT_SECRET, SPACEBRING_BASE_URL"


@pytest.mark.parametrize(
    ("environment", "raises", "dropped"),
    [
        (BEARER, None, ALL_THREE),
        ({"SPACEBRING_NETWORK_ID": DEMO_NETWORK_ID}, "no credentials", ALL_THREE),
        # the half pair of the environment is not completed from the file
        (
            {"SPACEBRING_CLIENT_ID": "env-id"},
            "set both SPACEBRING_CLIENT_ID",
            "SPACEBRING_CLIENT_SECRET, SPACEBRING_BASE_URL",
        ),
        # OAuth names what it lacks, and does not take it from the file either
        ({"SPACEBRING_REFRESH_TOKEN": "env-refresh"}, "also needs SPACEBRING_CLIENT_ID", ALL_THREE),
    ],
)
def test_a_dotenv_is_ignored_whole_when_the_environment_holds_credentials(
    tmp_path: Path, environment: dict[str, str], raises: str | None, dropped: str
) -> None:
    dotenv = tmp_path / "planted.env"
    dotenv.write_text(PLANTED)
    if raises is not None:
        with pytest.raises(UsageError, match=raises) as caught:
            resolve_target(None, env=environment, dotenv=dotenv)
        text = str(caught.value)
    else:
        target = resolve_target(None, env=environment, dotenv=dotenv)
        assert target.credentials is not None and target.credentials.scheme == "bearer"
        assert target.credentials.headers() == {
            "Authorization": "Bearer env-token",
            "spacebring-network-id": DEMO_NETWORK_ID,
        }
        assert target.base_url == DEFAULT_BASE_URL
        (text,) = target.warnings
    assert f"ignoring {dropped} in {dotenv}: the environment holds credentials" in text
    assert "attacker" not in text


def test_a_planted_dotenv_changes_nothing_on_the_command_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(PLANTED)
    batch = write_csv(tmp_path / "in.csv", [(LOCATIONS[0], "closed")])
    out = cli("run", str(batch), "--dry-run", env=BEARER, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stderr.startswith("bulk: dry run: nothing will be sent to api.spacebring.com")
    assert (
        "ignoring SPACEBRING_CLIENT_ID, SPACEBRING_CLIENT_SECRET, SPACEBRING_BASE_URL" in out.stderr
    )
    assert "attacker" not in out.stderr


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com/?key=q-s3cr3t",
        "https://api.example.com/root#q-s3cr3t",
        "https://api.example.com/root;q-s3cr3t",
        "https://api.example.com/?",
    ],
)
@pytest.mark.parametrize("where", ["flag", "environment", "dotenv"])
def test_a_base_url_with_a_query_fragment_or_parameters_is_refused_unshown(
    tmp_path: Path, url: str, where: str
) -> None:
    dotenv = tmp_path / "own.env"
    env = {"SPACEBRING_CLIENT_ID": "id", "SPACEBRING_CLIENT_SECRET": "s"}
    if where == "environment":
        env["SPACEBRING_BASE_URL"] = url
    elif where == "dotenv":
        env = {}
        dotenv.write_text(
            f"SPACEBRING_CLIENT_ID=id\nSPACEBRING_CLIENT_SECRET=s\nSPACEBRING_BASE_URL={url}\n"
        )
    with pytest.raises(UsageError, match="must be the API root alone") as caught:
        resolve_target(url if where == "flag" else None, env=env, dotenv=dotenv)
    assert "q-s3cr3t" not in str(caught.value) and "example" not in str(caught.value)


# -- small files that would cost unbounded CPU or memory ----------------------------------

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG = "http://schemas.openxmlformats.org/package/2006/relationships"
HEADER_ROW = (
    '<row><c t="inlineStr"><is><t>ticket_id</t></is></c>'
    '<c t="inlineStr"><is><t>status</t></is></c></row>'
)


def workbook(
    path: Path, sheet_rows: Iterator[bytes], strings: Iterator[bytes] | None = None
) -> Path:
    """A minimal workbook streamed part by part (level 1: bombs build in a fraction of a second)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr(
            "_rels/.rels",
            f'<Relationships xmlns="{_PKG}"><Relationship Id="r1" '
            f'Type="{_REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
        )
        archive.writestr(
            "xl/workbook.xml",
            f'<workbook xmlns="{_MAIN}" xmlns:r="{_REL}"><sheets>'
            '<sheet name="S" sheetId="1" r:id="r1"/></sheets></workbook>',
        )
        archive.writestr(
            "xl/_rels/workbook.xml.rels",
            f'<Relationships xmlns="{_PKG}">'
            f'<Relationship Id="r1" Type="{_REL}/worksheet" Target="worksheets/sheet1.xml"/>'
            f'<Relationship Id="r2" Type="{_REL}/sharedStrings" Target="sharedStrings.xml"/>'
            "</Relationships>",
        )
        with archive.open("xl/worksheets/sheet1.xml", "w") as out:
            out.write(f'<worksheet xmlns="{_MAIN}"><sheetData>{HEADER_ROW}'.encode())
            for chunk in sheet_rows:
                out.write(chunk)
            out.write(b"</sheetData></worksheet>")
        with archive.open("xl/sharedStrings.xml", "w") as out:
            out.write(f'<sst xmlns="{_MAIN}">'.encode())
            for chunk in strings or ():
                out.write(chunk)
            out.write(b"</sst>")
    return path


def test_an_xlsx_row_keeps_only_the_wanted_cells(tmp_path: Path) -> None:
    """10,000 rows of one cell at column XFD: each held 16,384 cells wide before."""
    ticket = LOCATIONS[0]
    far = b'<row><c r="XFD9"><v>1</v></c></row>' * 1000
    last = f'<row><c r="A9" t="inlineStr"><is><t>{ticket}</t></is></c></row>'.encode()
    path = workbook(tmp_path / "wide.xlsx", iter([far] * 10 + [last]))
    assert path.stat().st_size < 100_000
    tracemalloc.start()
    try:
        source = open_source(path, need_status=False)
        ids = [i for chunk in source.chunks() for i in chunk.ids]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Each far-right row still counts as a row (an invalid one), as in a CSV.
    assert len(ids) == 10_001 and ids[-1] == ticket and set(ids[:-1]) == {""}
    assert peak < 20 * MiB, f"peak {peak / MiB:.0f} MiB"
    rows = SheetRows(path, "wide.xlsx", lambda text, size: text, 256)
    header = next(iter_rows := iter(rows))
    rows.keep_only([0])
    assert header == ["ticket_id", "status"] and len(next(iter_rows)) == 1


def test_an_xlsx_part_that_unpacks_like_a_bomb_is_refused(tmp_path: Path) -> None:
    """21 million empty shared strings: 105 MB unpacked from about 0.5 MB."""
    block = b"<si/>" * 200_000
    path = workbook(tmp_path / "strings.xlsx", iter(()), iter([block] * 105))
    assert path.stat().st_size < MiB
    with pytest.raises(UsageError, match="refused as a compression bomb") as caught:
        open_source(path)
    assert "xl/sharedStrings.xml would unpack to 105,000,0" in str(caught.value)


def test_shared_strings_are_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Five million real ones take seconds to write; the rule is the same at a thousand.
    monkeypatch.setattr(_xlsx, "MAX_SHARED_STRINGS", 1000)
    strings = [b"<si><t>s</t></si>" * 1000]
    open_source(workbook(tmp_path / "ok.xlsx", iter(()), iter(strings)))
    with pytest.raises(UsageError, match="more than 1,000 shared strings"):
        open_source(workbook(tmp_path / "many.xlsx", iter(()), iter(strings * 2)))


def test_a_csv_row_of_too_many_cells_is_refused_before_it_is_built(tmp_path: Path) -> None:
    # Before: a 30 MB line of commas was 30 million cells, 330 MB.
    path = tmp_path / "commas.csv"
    path.write_text(f"ticket_id,status\n{LOCATIONS[0]},closed\nx{',' * (8 * MiB)}\n")
    tracemalloc.start()
    try:
        with pytest.raises(UsageError) as caught:
            for _ in open_source(path).chunks():
                pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "commas.csv: line 3: more than 16,384 cells in one row" in str(caught.value)
    assert peak < 40 * MiB, f"peak {peak / MiB:.0f} MiB"


def test_delimiters_inside_quotes_make_no_cells(tmp_path: Path) -> None:
    quoted = '"' + "a," * 40_000 + '"'
    path = tmp_path / "quoted.csv"
    path.write_text(f"ticket_id,status,note\n{LOCATIONS[0]},closed,{quoted}\n")
    (chunk,) = open_source(path).chunks()
    assert chunk.ids == [LOCATIONS[0]] and chunk.statuses == ["closed"]
    # Cells spread over lines by quoted line breaks count together.
    spread = ('"line\nbreak",' + "," * 10_000) * 2
    path.write_text(f"ticket_id,status\n{LOCATIONS[0]},closed,{spread}\n")
    with pytest.raises(UsageError, match="line 4: more than 16,384 cells"):
        for _ in open_source(path).chunks():
            pass


def test_a_csv_line_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The real bound is 32 MiB; the rule is the same at 1 MiB.
    monkeypatch.setattr(_source, "CSV_LINE_LIMIT", MiB)
    path = tmp_path / "long.csv"
    path.write_text(f"ticket_id,status\n{LOCATIONS[0]},{'x' * (MiB // 2)}\nx,{'y' * MiB}\n")
    with pytest.raises(UsageError, match=r"long\.csv: line 3 is longer than 1,048,576 characters"):
        for _ in open_source(path).chunks():
            pass


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_the_cell_counter_agrees_with_the_csv_module(delimiter: str) -> None:
    """_Cells is hand-written (the csv module cannot count without building): checked
    against the csv module on random rows of delimiters, quotes, spaces and line breaks."""
    rng = random.Random(9)
    alphabet = ["a", delimiter, delimiter, '"', '"', " ", "\n", "\r"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        lines = CsvLines(io.StringIO(text, newline=""), delimiter, "x", MiB)
        reader = csv.reader(lines, delimiter=delimiter, skipinitialspace=True)
        seen: list[str] = []
        try:
            for record in reader:
                row = lines._row[:]
                lines.row_done()
                cells = _Cells(delimiter)
                assert all(cells.feed(line) for line in row)
                if record:
                    assert cells.ended + 1 == len(record), (text, row, record)
                seen += row
        except csv.Error:
            pass  # the csv module's own complaint (a quote left open at the end)
    assert MAX_FIELDS == 16_384


_ARROW_PEAK = """
import sys
import pyarrow as pa
from bulk.input import open_source
cells = [c for chunk in open_source(sys.argv[1]).chunks() for c in chunk.ids]
print(len(cells), len(cells[0]), pa.default_memory_pool().max_memory())
"""


def test_a_repeated_long_parquet_string_is_held_once(tmp_path: Path) -> None:
    """200 copies of a 1 MB id: 200 MB of Arrow strings before, one copy now."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "repeated.parquet"
    ids = pa.DictionaryArray.from_arrays(pa.array([0] * 200, pa.int32()), pa.array(["x" * MiB]))
    pq.write_table(pa.table({"ticket_id": ids, "status": ["closed"] * 200}), path)
    out = subprocess.run(
        [sys.executable, "-c", _ARROW_PEAK, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    rows, width, peak = (int(v) for v in out.stdout.split())
    assert rows == 200 and width < 300  # cut to 256 characters and a mark
    assert peak < 32 * MiB, f"Arrow peak {peak / MiB:.0f} MiB"


def test_a_parquet_column_that_unpacks_like_a_bomb_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # The floor is 100 MB; the rule is the same at 1 MB.
    monkeypatch.setattr(_formats, "UNPACK_FLOOR", MiB)
    path = tmp_path / "plain.parquet"
    table = pa.table({"ticket_id": ["y" * 10_000] * 300, "status": ["closed"] * 300})
    pq.write_table(table, path, use_dictionary=False, compression="zstd")
    with pytest.raises(UsageError, match="column 'ticket_id' would unpack to 3,0"):
        for _ in open_source(path).chunks():
            pass


# -- audit records are untrusted input ------------------------------------------------------

ESCAPE = "\x1b]0;owned\x07\x1b[2J"


def test_bulk_runs_shows_planted_records_escaped(tmp_path: Path) -> None:
    folder = tmp_path / "reports"
    folder.mkdir()
    planted = {
        "ended_at": ESCAPE,
        "exit_code": 0,
        "report": "\x1b[31mred",
        "counts": {"outcomes": {"\x1b[5mx": 1, "failed": "\x1b[2J"}},
        "derived_from": {"kind": ESCAPE},
    }
    (folder / "a.run.json").write_text(json.dumps(planted))
    (folder / "b.run.json").write_text(
        json.dumps({"ended_at": 5, "counts": [1], "derived_from": "x", "exit_code": "\x1b"})
    )
    (folder / "c.run.json").write_text("[" * 100_000)  # nested past the recursion limit
    (folder / "d.run.json").write_text("{not json")
    os.mkfifo(folder / "e.run.json")  # opened without waiting
    out = cli("runs", str(folder), env={}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and out.stderr == ""
    shown = out.stdout
    assert "\x1b" not in shown and "\x07" not in shown
    assert "\\x1b]0;owned\\x07" in shown and "\\x1b[31mred" in shown and "\\x1b[5mx=1" in shown
    assert len(shown.splitlines()) == 2


@pytest.mark.parametrize(
    "content",
    ["{not json", "[1, 2]", '"text"', "[" * 100_000, None],
    ids=["invalid", "list", "string", "deep", "fifo"],
)
def test_a_corrupt_earlier_audit_record_is_no_record(tmp_path: Path, content: str | None) -> None:
    audit = tmp_path / "x.run.json"
    if content is None:
        os.mkfifo(audit)
    else:
        audit.write_text(content)
    assert read_audit(audit) is None
    assert batch_of(tmp_path / "x.csv") is None


def earlier_report(folder: Path) -> Path:
    report = folder / "x.csv"
    report.write_text(
        "row,ticket_id,target_status,outcome,previous_status,http_status,attempts,error\n"
        f"1,{LOCATIONS[0]},closed,failed,,500,2,HTTP 500\n"
        f"2,{LOCATIONS[1]},closed,updated,new,200,1,\n"
    )
    return report


def test_retry_and_undo_never_overwrite_the_report_they_read(
    tmp_path: Path, sim: Simulator
) -> None:
    from click.testing import CliRunner

    from bulk.cli import main

    report = earlier_report(tmp_path)
    (tmp_path / "x.run.json").write_text("[" * 100_000)  # and its record is corrupt
    before = report.read_bytes()
    runner = CliRunner()
    for command, same in (("retry", "x.csv"), ("undo", "./x.csv"), ("retry", str(report))):
        # Its record is no record: where to send must be named (bulk undo's rule).
        url = os.environ["SPACEBRING_BASE_URL"]
        out = runner.invoke(main, [command, "x.csv", "--report", same, "--base-url", url])
        assert out.exit_code == 2, out.output
        assert "would overwrite the input" in out.output and out.exception is not None
        assert isinstance(out.exception, SystemExit)  # not a traceback
    assert report.read_bytes() == before
    assert sim.requests == []
    out = runner.invoke(main, ["undo", "x.csv", "--dry-run"])
    assert out.exit_code == 0, out.output


# -- a journal of someone else's is not opened ----------------------------------------------


@pytest.mark.parametrize(
    "change",
    ["group-writable", pytest.param("another-user", marks=ROOT_ONLY)],
)
def test_a_journal_others_could_have_written_is_refused(tmp_path: Path, change: str) -> None:
    path = tmp_path / "x.journal"
    Journal(path).close()
    if change == "group-writable":
        path.chmod(0o664)
    else:
        os.chown(path, 65534, 65534)
    with pytest.raises(UsageError, match="bulk trusts only"):
        Journal(path)


def test_read_file_refuses_what_it_cannot_trust(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    assert read_file(tmp_path / "fifo", 10) is None  # returns at once, never waits
    assert read_file(tmp_path / "link", 10) is None
    assert read_file(tmp_path / "missing", 10) is None
    with pytest.raises(UsageError, match="is not a regular file"):
        read_file(tmp_path / "fifo", 10, own="pointer")
    with pytest.raises(UsageError, match="is a symbolic link"):
        read_file(tmp_path / "link", 10, own="pointer")
    (tmp_path / "file").chmod(0o606)
    with pytest.raises(UsageError, match="may be changed by other users"):
        read_file(tmp_path / "file", 10, own="pointer")


# -- ${VARIABLE} in a job file: an allow-list by key ------------------------------------------

FILE_JOB = """name = "{name}"
description = "{description}"
[source]
kind = "file"
path = "{path}"
id_column = "{column}"
[action]
status = "{status}"
[run]
rate = "{rate}"
[report]
folder = "{folder}"
"""
PLAIN = {
    "name": "j",
    "description": "d",
    "path": "in.csv",
    "column": "ticket_id",
    "status": "closed",
    "rate": "10",
    "folder": "out",
}


@pytest.mark.parametrize(
    "key", ["name", "description", "source.path", "source.id_column", "report.folder"]
)
def test_a_variable_is_refused_where_its_value_could_leak(tmp_path: Path, key: str) -> None:
    field = {"source.path": "path", "source.id_column": "column", "report.folder": "folder"}
    values = PLAIN | {field.get(key, key): "${DB_PASS}"}
    job = tmp_path / "j.toml"
    job.write_text(FILE_JOB.format(**values))
    with pytest.raises(UsageError) as caught:
        load_job(job, {"DB_PASS": SECRET})
    assert f"{job}: {key}: ${{DB_PASS}} is not allowed in a job file at this key" in str(
        caught.value
    )
    assert SECRET not in str(caught.value)


def test_a_variable_fills_a_value_of_a_fixed_shape_and_is_never_shown(tmp_path: Path) -> None:
    job = tmp_path / "j.toml"
    job.write_text(FILE_JOB.format(**(PLAIN | {"status": "${TARGET}", "rate": "${RATE}"})))
    loaded = load_job(job, {"TARGET": "Closed", "RATE": "5"})
    assert loaded.action.status == "closed" and loaded.run.rate == 5.0
    with pytest.raises(UsageError) as caught:
        load_job(job, {"TARGET": SECRET, "RATE": SECRET})
    assert "action.status: the value of ${TARGET}, ${RATE} is not valid here (not shown)" in str(
        caught.value
    )
    assert SECRET not in str(caught.value)
    # A quoted key that looks like an allowed one is not one.
    job.write_text('"source.locations" = "${X}"\n' + FILE_JOB.format(**PLAIN))
    with pytest.raises(UsageError, match=r"source\.locations: \$\{X\} is not allowed"):
        load_job(job, {"X": SECRET})
