"""The run page at 1k, 50k and 1M rows: its size, the time to render it, and Chromium's load time.

Each journal is made the way a run leaves it (planned rows, outcomes through
the writer thread, one `seconds` row per second at 10/s: a million rows are
27.8 hours of sending), with 1% of rows failed (a few messages) and 0.5%
invalid. The page is rendered as `bulk report` does, then opened in headless
Chromium (Debian's, via selenium); the load time is the navigation timing's
loadEventEnd.

    python bench/page.py [--rows 1000,50000,1000000]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bulk.journal import Journal, Outcome
from bulk.journal._seconds import INSERT_SECOND
from bulk.plan import PlannedRow
from bulk.report import audit_path, read_audit, write_audit, write_page

RATE = 10  # rows a second, as against the real API
ERRORS = (
    (404, "HTTP 404 notFound: Ticket {id} not found"),
    (500, "HTTP 500 (gave up after 6 attempts)"),
    (422, "HTTP 422 invalidStatusTransition: cannot close a deleted ticket"),
)


def make_run(folder: Path, rows: int) -> Path:
    rng = random.Random(rows)
    report = folder / f"r{rows}.report.csv"
    journal = Journal(folder / f"r{rows}.report.journal")
    planned = []
    for row in range(1, rows + 1):
        ticket = str(uuid.UUID(int=rng.getrandbits(128)))
        if rng.random() < 0.005:
            planned.append(PlannedRow(row, "x" + ticket[:8], None, "closed", "invalid",
                                      "ticket_id: not a ticket id (a UUID)", None))  # fmt: skip
        else:
            planned.append(PlannedRow(row, ticket, ticket, "closed", None, None, None))
    journal.add_planned(planned)
    journal.settle_duplicates()
    journal.set_meta(planned=True, meaning={"input_sha256": "0" * 64, "base_url": "https://api"})
    journal.start_writer()
    began = time.time() - rows / RATE
    for item in planned:
        if item.outcome is not None:
            continue
        at = began + item.row / RATE
        finished = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at))
        if rng.random() < 0.01:
            status, message = rng.choice(ERRORS)
            error = message.replace("{id}", item.ticket_id)
            journal.record(Outcome("failed", None, status, 1, error, None, 90, finished, item.row))
        else:
            previous = rng.choice(("new", "inProgress", "solved"))
            journal.record(Outcome("updated", previous, 200, 1, None, None, 80, finished, item.row))
    journal.close_writer()
    journal.close()
    _seconds(folder / f"r{rows}.report.journal", began, rows, rng)
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    start = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(began))
    record: dict[str, Any] = {"run_id": "b", "started_at": start, "ended_at": now,
                              "exit_code": 1, "tool": "bulk bench", "input": "bench.csv",
                              "options": {"rate": float(RATE)}, "stop_reason": None}  # fmt: skip
    write_audit(audit_path(report), record)
    return report


def _seconds(path: Path, began: float, rows: int, rng: random.Random) -> None:
    seconds = []
    for i in range(rows // RATE):
        p50 = 80 + rng.random() * 20
        throttled = 1 if rng.random() < 0.002 else 0
        seconds.append(("inv", began + i + 1, RATE - throttled, throttled, 0, 0, 0, 0,
                        RATE * 0.99, p50, p50 * 1.6, p50 * 2.5))  # fmt: skip
    with sqlite3.connect(path) as conn:
        conn.executemany(INSERT_SECOND, seconds)


def load_time(pages: list[Path]) -> list[float]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,1800"):  # fmt: skip
        options.add_argument(flag)
    with tempfile.TemporaryDirectory() as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
        try:
            times = []
            for page in pages:
                driver.get(page.resolve().as_uri())
                timing = 0.0
                while not timing:  # 0 until the load event has ended
                    timing = driver.execute_script(
                        "return performance.getEntriesByType('navigation')[0].loadEventEnd"
                    )
                times.append(float(timing) / 1000)
            return times
        finally:
            driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="1000,50000,1000000")
    args = parser.parse_args()
    sizes = [int(n) for n in args.rows.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        results: list[dict[str, Any]] = []
        for rows in sizes:
            report = make_run(Path(tmp), rows)
            began = time.perf_counter()
            journal = report.with_name(f"r{rows}.report.journal")
            page = write_page(report, journal, read_audit(audit_path(report)))
            rendered = time.perf_counter() - began
            results.append({"rows": rows, "bytes": page.stat().st_size, "render_s": rendered,
                            "page": page})  # fmt: skip
        for result, loaded in zip(results, load_time([r["page"] for r in results]), strict=True):
            result["chromium_load_s"] = loaded
            del result["page"]
            print(json.dumps(result))


if __name__ == "__main__":
    main()
