"""A hostile server: answers built to hurt a client (issue 9, the server-answers class).

One small aiohttp app on a free loopback port serves every case; the base URL's
first path segment picks the misbehaviour (`{base}/html/support/tickets/v1/...`),
or with `by-row` each ticket id picks its own, so one run covers many cases.
Each case runs the real CLI in a child process over real sockets and checks the
row's outcome and error, the exit code, that no traceback and no terminal
control sequence got out, and the child's peak memory (from `wait4`).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import sqlite3
import struct
import threading
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bulk.simulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, SimulatorThread, demo_env

from ..support import Measured, demo_vars, read_report, run_bulk_measured, write_csv

TICKETS = [str(uuid.UUID(int=n + 1)) for n in range(2)]  # for listings
LOCATION = str(uuid.UUID(int=99))
OTHER = str(uuid.UUID(int=98))
STALE = str(uuid.UUID(int=400))  # mode stale-first's ticket
MB = 1 << 20
PEAK_LIMIT_MB = 150
# What a terminal would act on, and the bidi override that flips text around.
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\u202egnp.exe\u202c \u2066x\u2069 \x9b31m end"
FORBIDDEN = ("\x1b", "\x07", "\x9b", "\u202e", "\u2066")


@functools.cache
def gzip_bomb(megabytes: int) -> bytes:
    """A gzip body that inflates to `megabytes` MiB of zeros, built in ~0.2 s.

    After a full flush the compressor forgets its history, so each further MiB
    of zeros compresses to the same 1 KB: that block repeated is a valid stream.
    """
    block = bytes(MB)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    one = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(megabytes):
        crc = zlib.crc32(block, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    trailer = struct.pack("<II", crc, (megabytes * MB) & 0xFFFFFFFF)
    return header + one * megabytes + deflate.flush() + trailer


# Each row of the batch meets one misbehaviour, picked by its ticket id, so one
# child process covers them all: (mode, the row's error, requests it gets).
ROWS = {
    "ok": ("", 1),
    "gzip-bomb": ("unexpected answer: content encoded as gzip, which was not asked for", 1),
    "huge-length": ("answer larger than 1 MiB, not read (gave up after 2 attempts)", 2),
    "huge-chunked": ("answer larger than 1 MiB, not read (gave up after 2 attempts)", 2),
    "html": ("unexpected answer: content type text/html, not JSON (HTTP 200)", 1),
    "not-json": ("unexpected answer: body is not valid JSON (HTTP 200)", 1),
    "list": ("unexpected answer: JSON list, not an object (HTTP 200)", 1),
    "deep-json": ("unexpected answer: JSON nested deeper than 32 levels (HTTP 200)", 1),
    "no-ticket": ("unexpected answer: no ticket object in the 200 answer", 1),
    "wrong-id": ("is not the row's id", 1),
    "wrong-status": ("unexpected answer: ticket status 'solved' is not the target 'closed'", 1),
    "no-content": ("unexpected answer: HTTP 204, not 200", 1),
    "redirect-301": ("unexpected answer: redirect (301) to {elsewhere} — not followed", 1),
    "redirect-302": ("unexpected answer: redirect (302) to {elsewhere} — not followed", 1),
    "redirect-307": ("unexpected answer: redirect (307) to {elsewhere} — not followed", 1),
    "message-400": ("HTTP 400 ]0;pwned [2J gnp.exe x 31m end: no ]0;pwned", 1),
    "message-500": ("HTTP 500 ]0;pwned [2J gnp.exe x 31m end: no ]0;pwned", 2),
    # A proxy that echoes the request's credentials in its error text.
    "echo-400": ("HTTP 400 badRequest: rejected Basic [redacted] ([redacted]) of [redacted]", 1),
    "echo-502": ("HTTP 502 gateway: upstream refused [redacted] for Basic [redacted]", 2),
}
MODE_OF = {str(uuid.UUID(int=n + 1)): mode for n, mode in enumerate(ROWS)}
ID_OF = {mode: ticket for ticket, mode in MODE_OF.items()}


class Hostile:
    """The app; `requests` counts (mode, method) pairs as they arrive."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()
        self.redirect_to = ""  # base URL the redirect modes point at
        self.statuses: dict[str, str] = {}  # mode stale-first: what its PUTs set
        self._bomb = gzip_bomb(400)
        self._lock = threading.Lock()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_put("/{mode}/support/tickets/v1/{id}/status", self._put)
        app.router.add_get("/{mode}/support/tickets/v1", self._list)
        app.router.add_get("/{mode}/support/tickets/v1/{id}", self._get)
        return app

    async def _get(self, request: web.Request) -> web.Response:
        """One ticket, as the PUTs of mode `stale-first` left it."""
        ticket_id = request.match_info["id"]
        self._note(request.match_info["mode"], "GET one")
        if request.match_info["mode"] == "forbid-second" and ticket_id == TICKETS[1]:
            body = {"message": "not a ticket of your locations", "type": "forbidden"}
            return web.json_response(body, status=403)
        status = self.statuses.get(ticket_id, "new")
        return web.json_response({"ticket": {"id": ticket_id, "status": status}, "activities": []})

    def count(self, mode: str, method: str = "PUT") -> int:
        with self._lock:
            return self.requests[(mode, method)]

    def _note(self, mode: str, method: str) -> None:
        with self._lock:
            self.requests[(mode, method)] += 1

    async def _put(self, request: web.Request) -> web.StreamResponse:
        ticket_id = request.match_info["id"]
        mode = request.match_info["mode"]
        if mode == "by-row":
            mode = MODE_OF[ticket_id]
        self._note(mode, "PUT")
        target = json.loads(await request.read())["ticket"]["status"]
        ticket = {"id": ticket_id, "status": target}
        activity = {"id": str(uuid.uuid4()), "data": {"previousAttributes": {"status": "new"}}}
        if mode == "forbid-second" and ticket_id == TICKETS[1]:
            body = {"message": "not a ticket of your locations", "type": "forbidden"}
            return web.json_response(body, status=403)
        if mode in ("ok", "stale-first", "forbid-second"):
            self.statuses[ticket_id] = target
            return web.json_response({"activity": activity, "ticket": ticket})
        if mode == "gzip-bomb":
            headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
            return web.Response(body=self._bomb, headers=headers)
        if mode in ("huge-length", "huge-chunked"):
            return await self._stream(request, 50 * MB, chunked=mode == "huge-chunked")
        if mode == "drip":
            return await self._drip(request)
        if mode.startswith("redirect-"):
            location = f"{self.redirect_to}/ok/support/tickets/v1/{ticket_id}/status"
            return web.Response(status=int(mode[-3:]), headers={"Location": location})
        if mode.startswith("echo-"):
            auth = request.headers["Authorization"]
            plain = base64.b64decode(auth.removeprefix("Basic ")).decode()
            message = (
                f"rejected {auth} ({plain}) of {plain.partition(':')[0]}"
                if mode == "echo-400"
                else f"upstream refused {plain.partition(':')[2]} for {auth}"
            )
            kind = "badRequest" if mode == "echo-400" else "gateway"
            return web.json_response({"message": message, "type": kind}, status=int(mode[-3:]))
        if mode.startswith("message-"):
            body = {"message": f"no {HOSTILE}", "type": f"\u202e{HOSTILE}"}
            return web.json_response(body, status=int(mode[-3:]))
        wrong = {
            "html": web.Response(
                text="<html>Sign in to the Wi-Fi</html>", content_type="text/html"
            ),
            "not-json": web.Response(text="<html>", content_type="application/json"),
            "list": web.json_response([ticket]),
            # Deep enough that Python's repr of it fails, within what orjson parses.
            "deep-json": web.Response(
                text='{"ticket":{"id":' + "[" * 1010 + "]" * 1010 + ',"status":"closed"}}',
                content_type="application/json",
            ),
            "no-ticket": web.json_response({"activity": activity}),
            "wrong-id": web.json_response({"ticket": {**ticket, "id": str(uuid.uuid4())}}),
            "wrong-status": web.json_response({"ticket": {**ticket, "status": "solved"}}),
            "no-content": web.Response(status=204),
        }
        return wrong[mode]

    @staticmethod
    async def _stream(request: web.Request, size: int, *, chunked: bool) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = size
        await response.prepare(request)
        block = b" " * (64 * 1024)
        try:
            for _ in range(size // len(block)):
                await response.write(block)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up, as it should
        return response

    @staticmethod
    async def _drip(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 100
        await response.prepare(request)
        try:
            for _ in range(100):  # 25 s for the whole body
                await response.write(b" ")
                await asyncio.sleep(0.25)
        except (ConnectionError, RuntimeError):
            pass
        return response

    async def _list(self, request: web.Request) -> web.Response:
        mode = request.match_info["mode"]
        self._note(mode, "GET")
        page = int(request.query.get("nextPageToken", "t0")[1:]) + 1
        tickets = [
            {"id": t, "status": "solved", "updateDate": "2024-01-01T00:00:00Z"} for t in TICKETS
        ]
        pages: dict[str, Any] = {
            "same-token": {"tickets": tickets, "nextPageToken": "t1"},
            "same-tickets": {"tickets": tickets, "nextPageToken": f"t{page}"},
            "empty-pages": {"tickets": [], "nextPageToken": f"t{page}"},
            "tickets-not-list": {"tickets": {"id": TICKETS[0]}},
            "too-many": {"tickets": tickets * 2},
            "bad-id": {"tickets": [{"id": "../../admin", "status": "solved"}]},
            # A listing that ignored its locationRef filter: a job must not close these.
            "foreign": {"tickets": [{"id": TICKETS[0], "status": "solved", "locationRef": OTHER}]},
            "token-not-text": {"tickets": tickets, "nextPageToken": {"page": 2}},
            "endless": {
                "tickets": [{"id": str(uuid.UUID(int=page * 10 + n))} for n in range(2)],
                "nextPageToken": f"t{page}",
            },
            "dirty": {
                "tickets": [
                    {
                        "id": t,
                        "status": "closed",
                        "type": HOSTILE,
                        "number": 7,
                        "locationRef": LOCATION,
                    }
                    for t in TICKETS
                ]
            },
        }
        if mode == "stale-first":
            # The ticket changed while listing ran (in order of last change): listed first
            # as it was (closed), then again as it is, later in the listing.
            first, now = page == 1, self.statuses.get(STALE, "new")
            ticket = {
                "id": STALE,
                "status": "closed" if first else now,
                "updateDate": "2024-01-01T00:00:00Z" if first else "2024-01-02T00:00:00Z",
                "locationRef": LOCATION,
            }
            return web.json_response(
                {"tickets": [ticket], **({"nextPageToken": "t1"} if first else {})}
            )
        if mode == "html":
            return web.Response(text="<html>portal</html>", content_type="text/html")
        return web.json_response(pages[mode])


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Hostile, Hostile, str, str]]:
    hostile, elsewhere = Hostile(), Hostile()
    # SimulatorThread serves anything with an `app()` on its own loop and thread.
    with (
        SimulatorThread(hostile) as one,  # type: ignore[arg-type]
        SimulatorThread(elsewhere) as two,  # type: ignore[arg-type]
    ):
        hostile.redirect_to = two.base_url
        yield hostile, elsewhere, one.base_url, two.base_url


def bulk(base_url: str, *args: str, cwd: Path) -> Measured:
    """Run the CLI in a child process, measuring its peak memory."""
    return run_bulk_measured(*args, env=demo_vars(base_url), cwd=cwd)


def run_rows(
    base_url: str, tickets: list[str], tmp_path: Path, *extra: str
) -> tuple[Measured, list[dict[str, str]]]:
    source = write_csv(tmp_path / "in.csv", [(t,) for t in tickets], header=("ticket_id",))
    report = tmp_path / "out.csv"
    child = bulk(
        base_url,
        "run", str(source), "--status", "closed", "--report", str(report),
        "--rate", "unlimited", "--max-attempts", "2", "--timeout", "2",
        "--max-failure-rate", "1", *extra,
        cwd=tmp_path,
    )  # fmt: skip
    assert "Traceback" not in child.stderr, child.stderr
    assert child.peak_mb < PEAK_LIMIT_MB, child.peak_mb
    return child, read_report(report)


def assert_clean(*texts: str) -> None:
    for text in texts:
        for char in FORBIDDEN:
            assert char not in text, (char, text[:500])


def run_files(folder: Path) -> list[str]:
    """The report, the audit record and the journal's rows, as text."""
    texts = [p.read_text(errors="replace") for p in folder.glob("out*") if p.suffix != ".journal"]
    with sqlite3.connect(folder / "out.journal") as journal:
        texts.append(json.dumps(journal.execute("SELECT * FROM rows").fetchall()))
    return texts


def test_only_an_answer_that_proves_success_counts(servers: Any, tmp_path: Path) -> None:
    hostile, elsewhere, base, other = servers
    before = {mode: hostile.count(mode) for mode in ROWS}
    child, report = run_rows(f"{base}/by-row", list(MODE_OF), tmp_path)
    assert child.code == 1, child.stderr
    assert len(report) == len(ROWS)
    for row in report:
        mode = MODE_OF[row["ticket_id"]]
        error, attempts = ROWS[mode]
        expected = error.format(elsewhere=other.removeprefix("http://"))
        assert row["attempts"] == str(attempts), mode
        assert hostile.count(mode) - before[mode] == attempts, mode
        if mode == "ok":  # the control: a correct answer still counts
            assert (row["outcome"], row["previous_status"]) == ("updated", "new"), row
            continue
        assert row["outcome"] == "failed", (mode, row)
        assert expected in row["error"], (mode, row["error"])
        assert row["previous_status"] == "" and row["activity_id"] == "", (mode, row)
    # The redirects' target never heard from us: no request, no credentials.
    assert sum(elsewhere.requests.values()) == 0
    # Server text is there to read, made harmless, everywhere it is kept.
    assert "pwned" in json.dumps(report)
    assert_clean(child.stdout, child.stderr, *run_files(tmp_path))
    # No credential, as sent or decoded, however the server echoed it.
    basic = base64.b64encode(f"{DEMO_CLIENT_ID}:{DEMO_CLIENT_SECRET}".encode()).decode()
    for text in (child.stdout, child.stderr, *run_files(tmp_path)):
        assert DEMO_CLIENT_SECRET not in text and basic not in text
        assert DEMO_CLIENT_ID not in text  # the client id too (CONTRACT: a credential)


def test_a_hostile_401_stops_the_run_without_touching_the_terminal(
    servers: Any, tmp_path: Path
) -> None:
    _, _, base, _ = servers
    child, report = run_rows(f"{base}/message-401", TICKETS, tmp_path)
    assert child.code == 3, child.stderr
    said = child.stdout + child.stderr
    assert "credentials rejected (HTTP 401" in said and "pwned" in said, said
    assert {r["outcome"] for r in report} == {"skipped"}
    assert_clean(child.stdout, child.stderr, *run_files(tmp_path))


def test_a_403_stops_the_run_names_its_ticket_and_fails_only_its_row(
    servers: Any, tmp_path: Path
) -> None:
    """A 403 may be revoked credentials or one ticket they may not change: the run stops
    either way, says at which ticket, and fails that row only, so the rerun goes past it
    (it had stopped every rerun there)."""
    _, _, base, _ = servers
    batch = [TICKETS[0], TICKETS[1], str(uuid.UUID(int=600))]
    child, report = run_rows(f"{base}/forbid-second", batch, tmp_path, "--concurrency", "1")
    assert child.code == 3, child.stderr
    assert [r["outcome"] for r in report] == ["updated", "failed", "skipped"]
    assert (
        report[1]["error"]
        == "HTTP 403 forbidden: not a ticket of your locations; the run stopped here"
    )
    assert f"at ticket {TICKETS[1]}, which fails; if only that ticket is refused" in child.stdout
    again, report = run_rows(f"{base}/forbid-second", batch, tmp_path, "--concurrency", "1")
    assert again.code == 1, again.stderr  # the refused row stays failed
    assert [r["outcome"] for r in report] == ["updated", "failed", "updated"]


def test_a_403_while_reading_stops_before_sending_and_names_its_ticket(
    servers: Any, tmp_path: Path
) -> None:
    """It came out of the readers' task group wrapped, and ended in a traceback."""
    hostile, _, base, _ = servers
    batch = [TICKETS[0], TICKETS[1], str(uuid.UUID(int=601))]
    puts = hostile.count("forbid-second")
    source = write_csv(tmp_path / "in.csv", [(t,) for t in batch], header=("ticket_id",))
    child = bulk(f"{base}/forbid-second", "run", str(source), "--status", "closed", "--read",
                 "--rate", "unlimited", cwd=tmp_path)  # fmt: skip
    assert child.code == 3 and "Traceback" not in child.stderr, child.stderr
    assert "stopped: credentials rejected while reading (HTTP 403 forbidden: not a ticket" in (
        child.stderr
    )
    assert f"at ticket {TICKETS[1]}); nothing was sent" in child.stderr
    assert hostile.count("forbid-second") == puts


def test_a_slow_drip_is_cut_off_at_the_timeout(servers: Any, tmp_path: Path) -> None:
    _, _, base, _ = servers
    child, report = run_rows(f"{base}/drip", TICKETS, tmp_path, "--timeout", "1")
    assert child.code == 1, child.stderr
    timeout, attempts = 1.0, 2
    for row in report:
        assert row["outcome"] == "failed" and row["attempts"] == str(attempts)
        assert row["error"].startswith("timeout"), row["error"]
        # Each attempt would take 25 s if reading the body were not bounded.
        assert int(row["elapsed_ms"]) < 3 * timeout * attempts * 1000
    assert child.seconds < 30


JOB = """
name = "hostile"
[source]
kind = "api"
locations = ["{location}"]
page_size = 2
[action]
status = "closed"
[run]
rate = "unlimited"
max_attempts = 2
timeout = 2
[report]
folder = "reports"
"""


def run_job(base_url: str, mode: str, tmp_path: Path) -> Measured:
    job = tmp_path / "hostile.toml"
    job.write_text(JOB.format(location=LOCATION))
    child = bulk(f"{base_url}/{mode}", "job", "run", str(job), cwd=tmp_path)
    assert "Traceback" not in child.stderr, child.stderr
    assert child.peak_mb < PEAK_LIMIT_MB, child.peak_mb
    return child


@pytest.mark.parametrize(
    ("mode", "message", "pages"),
    [
        ("same-token", "page 2: the server sent a nextPageToken it had sent before", 2),
        ("same-tickets", "page 4: 3 pages in a row brought no ticket not already listed", 4),
        ("empty-pages", "page 3: 3 pages in a row brought no ticket not already listed", 3),
    ],
)
def test_a_listing_that_goes_round_stops_the_job_before_sending(
    servers: Any, tmp_path: Path, mode: str, message: str, pages: int
) -> None:
    hostile, _, base, _ = servers
    before = hostile.count(mode, "GET")
    child = run_job(base, mode, tmp_path)
    assert child.code == 2, child.stderr
    assert f"listing location {LOCATION}, {message}" in child.stderr, child.stderr
    assert "stopped, nothing sent" in child.stderr
    assert hostile.count(mode, "GET") - before == pages
    assert hostile.count(mode, "PUT") == 0
    assert not list((tmp_path / "reports").glob(".hostile.current"))  # nothing to resume


def test_a_ticket_listed_twice_is_read_again_alone(servers: Any, tmp_path: Path) -> None:
    """Listed first as closed, then (changed meanwhile) as new: the first entry had won, and
    the run skipped a ticket that was open, and --verify said `yes` (hostile review)."""
    hostile, _, base, _ = servers
    # Two tickets the listing does not hold keep it going to its second page.
    batch = [STALE, str(uuid.UUID(int=500)), str(uuid.UUID(int=501))]
    child, report = run_rows(
        f"{base}/stale-first", batch, tmp_path, "--location", LOCATION, "--verify"
    )
    assert child.code == 0, child.stderr
    row = report[0]
    assert (row["outcome"], row["current_status"], row["verified"]) == ("updated", "new", "yes")
    assert hostile.statuses[STALE] == "closed"


def test_listed_text_reaches_the_snapshot_clean(servers: Any, tmp_path: Path) -> None:
    _, _, base, _ = servers
    child = run_job(base, "dirty", tmp_path)
    assert child.code == 0, child.stderr
    (snapshot,) = (tmp_path / "reports").glob("*.snapshot.csv")
    rows = read_report(snapshot)
    assert [r["id"] for r in rows] == TICKETS and rows[0]["number"] == "7"
    assert "pwned" in rows[0]["type"]
    assert_clean(snapshot.read_text(encoding="utf-8"), child.stdout, child.stderr)


async def list_job(base_url: str, tmp_path: Path) -> None:
    """The job's listing in this process, against `base_url`, over a real socket."""
    from bulk._core._config import credentials_from_env
    from bulk.batch import rate_controller
    from bulk.jobs import list_and_select, load_job
    from bulk.send import TicketClient

    env = demo_env(base_url)
    job_file = tmp_path / "hostile.toml"
    job_file.write_text(JOB.format(location=LOCATION))
    job = load_job(job_file, env)
    async with TicketClient(base_url, credentials_from_env(env)) as client:
        await list_and_select(
            job, client, rate_controller(None), tmp_path / "s.csv", tmp_path / "i.csv"
        )


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("tickets-not-list", "unexpected answer: 'tickets' is not a list"),
        ("too-many", "unexpected answer: 4 tickets on a page of at most 2"),
        ("bad-id", "unexpected answer: ticket 1 of the page has no valid id"),
        (
            "foreign",
            f"unexpected answer: ticket {TICKETS[0]} is of location {OTHER}, not the one listed",
        ),
        ("token-not-text", "unexpected answer: 'nextPageToken' is not a string"),
        ("html", "unexpected answer: content type text/html, not JSON (HTTP 200)"),
    ],
)
async def test_a_listing_page_of_the_wrong_shape_is_unreadable_input(
    servers: Any, tmp_path: Path, mode: str, message: str
) -> None:
    from bulk.jobs import ListingUnreadable

    hostile, _, base, _ = servers
    before = hostile.count(mode, "GET")
    with pytest.raises(ListingUnreadable) as info:
        await list_job(f"{base}/{mode}", tmp_path)
    assert str(info.value) == (
        f"listing location {LOCATION}, page 1: {message}; stopped, nothing sent"
    )
    assert info.value.exit_code == 2
    assert hostile.count(mode, "GET") - before == 1  # not retried


async def test_a_listing_stops_at_the_page_cap(
    servers: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ever-new tokens and ever-new tickets: only the page cap can end it."""
    from bulk.jobs import _listing

    hostile, _, base, _ = servers
    # 100,000 real pages would take minutes; the rule is the same at 25.
    monkeypatch.setattr(_listing, "MAX_PAGES", 25)
    with pytest.raises(_listing.ListingUnreadable, match="more than 25 pages in all"):
        await list_job(f"{base}/endless", tmp_path)
    assert hostile.count("endless", "GET") == 25
