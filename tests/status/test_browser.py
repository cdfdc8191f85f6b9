"""The standalone status page in a real headless Chromium (Debian's), driven by Selenium.

Checks what a person and a screen reader get: each circle's computed colour, its hover text and
accessible name, the ``<time>`` attributes, keyboard focus, that nothing is fetched, and a
screenshot saved as an artefact in the test's tmp directory.

Needs Debian's ``chromium`` and ``chromium-driver`` packages and the ``selenium`` package (test
extra). Without them the test skips, except under CI (``CI`` set), where it fails: CI must not
pass by skipping.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

from incsync.humanize import time_text
from incsync.state import ErrorInfo, Phase
from incsync.status import SourceStatus, StatusColor, classify_status
from incsync.views import PALETTE, render_html_page

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

pytestmark = pytest.mark.slow

UTC = timezone.utc
NOW = datetime(2026, 11, 13, 9, 41, 7, tzinfo=UTC)
CHROMIUM = os.environ.get("INCSYNC_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("INCSYNC_CHROMEDRIVER", "/usr/bin/chromedriver")
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
    "--force-device-scale-factor=1",
)


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser test, so it may not skip")
    pytest.skip(reason)


def _rows() -> list[tuple[str, SourceStatus]]:
    def status(**kw: object) -> SourceStatus:
        arguments: dict[str, object] = {
            "last_change": NOW - timedelta(days=2),
            "last_sync": NOW - timedelta(minutes=12),
            "now": NOW,
            "zone": "Europe/Berlin",
        }
        arguments.update(kw)
        return classify_status(**arguments)  # type: ignore[arg-type]

    failure = ErrorInfo("TransientSourceError", 'timeout <after> 30 s & "retry"', NOW)
    return [
        ("Acme QuickBooks", status(rejected=3)),
        ("Globex Salesforce", status(last_change=NOW - timedelta(days=12))),
        ("Initech Xero", status(last_change=None, last_sync=None)),
        ("Umbrella HubSpot", status(phase=Phase.STOPPED, error_count=5, last_error=failure)),
        ("Hooli Stripe", status(error_count=1, last_error=failure)),
        ("Vandelay Pipedrive", status(phase=Phase.CANCELLED)),
        ("Soylent Xero", status(last_sync=NOW - timedelta(hours=7))),
        (
            "Wonka Stripe",
            status(
                last_sync=NOW - timedelta(hours=7),
                last_attempt=NOW,
                error_count=4,
                last_error=failure,
            ),
        ),
        ("Stark <b>CRM</b>", status(phase=Phase.RESETTING)),
    ]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    if shutil.which(CHROMIUM) is None or shutil.which(CHROMEDRIVER) is None:
        _unavailable(
            f"Chromium or ChromeDriver not found at {CHROMIUM} / {CHROMEDRIVER} "
            "(apt-get install chromium chromium-driver)"
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed (pip install -e '.[test]')")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in _FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    # An explicit driver path keeps Selenium Manager (which would download drivers) out of it.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page_url() -> Iterator[str]:
    """Serve the page on a loopback port for the duration of one test."""
    body = render_html_page(_rows(), generated=time_text(NOW, NOW, zone="Europe/Berlin"))
    payload = body.encode("utf-8")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/" else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            """Keep the test output quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _rgb(hex_color: str) -> tuple[int, int, int]:
    return (int(hex_color[1:3], 16), int(hex_color[3:5], 16), int(hex_color[5:7], 16))


def _parse_css_color(value: str) -> tuple[int, int, int]:
    numbers = [int(float(n)) for n in re.findall(r"[\d.]+", value)[:3]]
    assert len(numbers) == 3, value
    return (numbers[0], numbers[1], numbers[2])


def test_page_in_chromium(browser: WebDriver, page_url: str, tmp_path: Path) -> None:
    """Chromium shows every circle in its colour, with hover text, accessible name and times."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    rows = _rows()
    browser.get(page_url)
    assert browser.title == "Automated Import"

    dots = browser.find_elements(By.CSS_SELECTOR, "table .incsync-dot")
    assert len(dots) == len(rows)
    table_rows = browser.find_elements(By.CSS_SELECTOR, "table tbody tr")
    for (name, status), dot, row in zip(rows, dots, table_rows, strict=True):
        assert row.find_element(By.CSS_SELECTOR, "th").text == name
        computed = _parse_css_color(dot.value_of_css_property("background-color"))
        assert computed == _rgb(PALETTE[status.color]), name
        assert dot.get_attribute("title") == status.hover
        assert dot.get_attribute("aria-label") == status.hover
        assert dot.aria_role in ("img", "image")  # Chromium reports the ARIA role "image"
        assert dot.accessible_name == status.hover
        assert dot.size["width"] == dot.size["height"] > 0
        assert row.find_element(By.CSS_SELECTOR, ".incsync-label").text == status.label
        times = row.find_elements(By.TAG_NAME, "time")
        expected = [t for t in (status.last_change, status.last_sync) if t is not None]
        assert len(times) == len(expected)
        for element, text in zip(times, expected, strict=True):
            assert element.get_attribute("datetime") == text.iso
            assert element.get_attribute("title") == text.exact
            assert element.text == text.relative

    # Colour is not the only signal: each circle draws a shape.
    assert all(dot.find_elements(By.TAG_NAME, "path") for dot in dots)
    # The first circle is reachable by keyboard, and the hover text is in its accessible name.
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert browser.switch_to.active_element == dots[0]
    # Nothing was fetched besides the page itself.
    resources = browser.execute_script("return performance.getEntriesByType('resource').length")
    assert resources == 0

    colors = {status.color for _, status in rows}
    assert colors == set(StatusColor)
    shot = tmp_path / "status-page.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000
