"""The run pages in a real headless Chromium (Debian's, driven by selenium).

Each page must load with no console error and no network request, show its
verdict, tiles and charts, and filter its table. Screenshots go to
artifacts/screenshots/ (kept by CI). Skipped only when chromium is missing
outside CI; in CI (CI=true) a missing browser fails.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..support import ROOT
from .pages import PageView, Run

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SHOTS = ROOT / "artifacts" / "screenshots"

if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()) and os.environ.get("CI") != "true":
    pytest.skip("chromium and chromium-driver are not installed", allow_module_level=True)

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1800",
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def _open(browser: Any, page: Path) -> None:
    browser.get_log("performance")  # what earlier pages did is not this page's
    browser.get_log("browser")
    browser.get(page.resolve().as_uri())


def _requests(browser: Any) -> list[str]:
    """Every URL the page asked for (the performance log's Network events)."""
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


@pytest.mark.parametrize("name", ["clean", "failures", "stopped", "interrupted", "resumed"])
def test_page_loads_offline_and_shows_the_run(
    browser: Any, page_runs: dict[str, Run], name: str
) -> None:
    from selenium.webdriver.common.by import By

    page = page_runs[name].page
    _open(browser, page)
    banner = browser.find_element(By.ID, "verdict")
    assert banner.is_displayed()
    assert banner.find_element(By.TAG_NAME, "strong").text == PageView(page).verdict[1]
    tiles = browser.find_elements(By.CSS_SELECTOR, ".tile")
    assert len(tiles) >= 11 and all(t.is_displayed() for t in tiles)
    charts = browser.find_elements(By.CSS_SELECTOR, "figure.chart svg")
    assert len(charts) == len(PageView(page).charts)
    if name in ("clean", "interrupted", "resumed"):  # paced to last long enough for charts
        assert len(charts) >= 2
    else:
        assert browser.find_element(By.ID, "too-short").is_displayed()
    assert all(c.is_displayed() and c.size["height"] > 100 for c in charts)
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / f"{name}.png"))
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    # Chromium's own start page loads chrome:// resources; nothing may go to a network.
    asked = [u for u in _requests(browser) if u.split(":", 1)[0] in ("http", "https", "ws", "wss")]
    assert asked == []
    resources = browser.execute_script("return performance.getEntriesByType('resource').length")
    assert resources == 0


def test_filtering_the_table(browser: Any, page_runs: dict[str, Run]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    page = page_runs["failures"].page
    _open(browser, page)
    rows = browser.find_elements(By.CSS_SELECTOR, "#rows tbody tr")
    assert len(rows) == len(PageView(page).table_rows) == 8

    def visible() -> list[Any]:
        return [r for r in rows if r.is_displayed()]

    Select(browser.find_element(By.ID, "row-outcome")).select_by_value("invalid")
    assert len(visible()) == 2
    assert all(r.get_attribute("data-outcome") == "invalid" for r in visible())
    assert browser.find_element(By.ID, "rows-shown").text == "2"
    Select(browser.find_element(By.ID, "row-outcome")).select_by_value("")
    search = browser.find_element(By.ID, "row-search")
    search.send_keys("bogus")
    assert [r.text.split()[0] for r in visible()] == ["108"]
    search.clear()
    search.send_keys("00000000-0000-0000-0000-000000000003")
    shown = visible()
    assert len(shown) == 1 and shown[0].get_attribute("data-outcome") == "failed"
    assert browser.get_log("browser") == []
