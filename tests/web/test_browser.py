"""The console in a real headless Chromium (Debian's), driven by Playwright, served by uvicorn.

One browser and one server for the module, over an in-memory store that real cycles filled; each
test acts on sources of its own. Checks what people get: Reset, Cancel and Resume confirmed by
pointer and by keyboard alone, details on hover, focus and tap, no sideways scrolling at 360 px,
an axe-core audit with no violations in light and dark mode, and a cycle's end on screen within
2 seconds. Screenshots are kept in ``artifacts/console/`` (ignored by git).

Needs Debian's ``chromium`` package and Playwright (test extra); axe-core comes from the npm
registry through ``npm pack`` (a pinned version, checked by npm against the registry's
integrity hash) into ``.cache/`` on first use, so no copy of it lives in the repository. Without
Chromium, Playwright or npm the tests skip, except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import pytest

from incsync.actions import Action
from incsync.connectors import InMemoryConnector
from incsync.engine import SyncEngine
from incsync.integrations.web import create_app
from incsync.integrations.web._view import element_id
from incsync.testing import InMemoryStore
from tests.helpers import records_before
from tests.web.serving import served
from tests.web.world import CONFIGURED, GREEN, RED, build

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page
    from starlette.requests import Request

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "console"
CHROMIUM = os.environ.get("INCSYNC_CHROMIUM", "/usr/bin/chromium")
AXE_VERSION = "4.14.1"
POINTER = "pointer/ledger"
KEYBOARD = "keyboard/ledger"
LIVE = "live/feed"
TOUCH = "touch/orders"
NOW = datetime.now(timezone.utc)


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser tests, so they may not skip")
    pytest.skip(reason)


def _allow_ana(_request: Request, _action: Action, _key: str) -> str:
    return "ana"


@pytest.fixture(scope="module")
def store() -> InMemoryStore:
    memory = InMemoryStore()
    engine = build(memory, NOW)
    for key in (POINTER, KEYBOARD, TOUCH):
        engine.run_cycle(key, InMemoryConnector(records_before(NOW, 3)))
    return memory


@pytest.fixture(scope="module")
def base_url(store: InMemoryStore) -> Iterator[str]:
    """The console on a loopback port, for the module."""
    app = create_app(
        store, sources=[*CONFIGURED, POINTER, KEYBOARD, LIVE, TOUCH], authorize=_allow_ana
    )
    with served(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        _unavailable(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        # Debian's Chromium, never a browser Playwright downloads.
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def axe_source() -> str:
    """axe-core's script, from the npm registry by the npm client, cached under .cache/."""
    cached = ROOT / ".cache" / f"axe-core-{AXE_VERSION}" / "axe.min.js"
    if not cached.exists():
        npm = shutil.which("npm")
        if npm is None:
            _unavailable(
                "npm is not installed, so axe-core cannot be fetched (apt-get install npm)"
            )
        cached.parent.mkdir(parents=True, exist_ok=True)
        packed = subprocess.run(
            [npm, "pack", f"axe-core@{AXE_VERSION}", "--pack-destination", str(cached.parent)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if packed.returncode != 0:
            _unavailable(f"npm pack axe-core@{AXE_VERSION} failed: {packed.stderr.strip()}")
        tarball = cached.parent / f"axe-core-{AXE_VERSION}.tgz"
        with tarfile.open(tarball) as archive:
            member = archive.extractfile("package/axe.min.js")
            assert member is not None
            cached.write_bytes(member.read())
        tarball.unlink()
    return cached.read_text(encoding="utf-8")


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _row(page: Page, key: str) -> Any:
    return page.locator(f"#{element_id(key)}")


def test_reset_cancel_and_resume_with_confirmation(browser: Browser, base_url: str) -> None:
    """Each action asks first, then the row shows the new status and the history names ana."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    from playwright.sync_api import expect

    page.goto(f"{base_url}/?q=pointer")
    row = _row(page, POINTER)
    expect(row).to_have_attribute("data-color", "green")
    for action, label, expected in (
        ("Reset", "Resetting", "grey"),
        ("Cancel", "Cancelled", "grey"),
        ("Resume", "Resetting", "grey"),
    ):
        row.get_by_role("link", name=f"{action} {POINTER}").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(f"{action} {POINTER}?")
        if action == "Reset":
            _shot(page, "confirm-reset")
        page.get_by_role("button", name=action).click()
        page.wait_for_url(f"{base_url}/?q=pointer")
        expect(row).to_have_attribute("data-color", expected)
        expect(row.locator(".label")).to_have_text(label)
    _shot(page, "list-after-actions")
    row.get_by_role("link", name=POINTER, exact=True).click()
    history = page.locator("table.history")
    for done in ("Reset by ana", "Cancelled by ana", "Resumed by ana"):
        expect(history).to_contain_text(done)
    _shot(page, "source-history")
    page.close()


def test_the_whole_flow_by_keyboard(browser: Browser, base_url: str) -> None:
    """Tab reaches the details (they open on focus, Escape closes them) and the action; Enter
    confirms; nothing needs a pointer."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{base_url}/?q=keyboard")
    row = _row(page, KEYBOARD)
    details = row.locator("details")

    def tab_to(target: Any) -> None:
        for _ in range(40):
            page.keyboard.press("Tab")
            if target.evaluate("element => element === document.activeElement"):
                return
        pytest.fail("Tab never reached the element")

    tab_to(row.locator("summary"))
    expect(details).to_have_attribute("open", "")
    expect(row.locator(".panel")).to_contain_text("Last completed sync:")
    page.keyboard.press("Escape")
    expect(details).not_to_have_attribute("open", "")
    tab_to(row.get_by_role("link", name=f"Cancel {KEYBOARD}"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base_url}/?q=keyboard")
    expect(row).to_have_attribute("data-color", "grey")
    expect(row.locator(".label")).to_have_text("Cancelled")
    page.close()


def test_details_open_on_hover_and_on_tap(browser: Browser, base_url: str) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{base_url}/?q=touch")
    panel = _row(page, TOUCH).locator(".panel")
    expect(panel).to_be_hidden()
    _row(page, TOUCH).locator("summary").hover()
    expect(panel).to_be_visible()
    page.mouse.move(0, 0)
    expect(panel).to_be_hidden()
    page.close()
    context = browser.new_context(
        viewport={"width": 360, "height": 800}, has_touch=True, is_mobile=True
    )
    phone = context.new_page()
    phone.goto(f"{base_url}/?q=touch")
    _row(phone, TOUCH).locator("summary").tap()
    expect(_row(phone, TOUCH).locator(".panel")).to_be_visible()
    expect(_row(phone, TOUCH).locator(".panel")).to_contain_text("Last change at the source:")
    context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_narrow_screens_and_an_accessibility_audit(
    browser: Browser, base_url: str, axe_source: str, scheme: Literal["light", "dark"]
) -> None:
    """At 360 px nothing scrolls sideways, and axe-core finds no violation, in both schemes."""
    context = browser.new_context(
        viewport={"width": 360, "height": 800}, color_scheme=scheme, bypass_csp=True
    )
    page = context.new_page()
    # The list, a red source (long error text) and one with hostile set-aside records.
    for name, path in (
        ("list", "/"),
        ("red", f"/source?key={RED}"),
        ("set-aside", f"/source?key={GREEN.replace('/', '%2F')}"),
    ):
        page.goto(f"{base_url}{path}")
        widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] == widths[1] == 360, (name, widths)
        page.add_script_tag(content=axe_source)
        result, passed = page.evaluate("axe.run(document).then(r => [r.violations, r.passes])")
        assert result == [], (name, [(v["id"], v["nodes"][0]["html"]) for v in result])
        # The audit did run: the contrast and name rules passed on this page.
        assert {"color-contrast", "link-name"} <= {rule["id"] for rule in passed}, name
        _shot(page, f"{name}-360-{scheme}")
    context.close()
    wide = browser.new_page(viewport={"width": 1280, "height": 900}, color_scheme=scheme)
    wide.goto(base_url)
    _shot(wide, f"list-1280-{scheme}")
    wide.close()


def test_a_cycle_shows_within_two_seconds(
    browser: Browser, base_url: str, store: InMemoryStore
) -> None:
    """The open list shows a cycle's end without a reload, within 2 s."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{base_url}/?q=live")
    row = _row(page, LIVE)
    expect(row).to_have_attribute("data-color", "grey")
    SyncEngine(store).run_cycle(LIVE, InMemoryConnector(records_before(NOW, 5)))
    ended = time.monotonic()
    page.wait_for_selector(f"#{element_id(LIVE)}[data-color=green]", timeout=2_000)
    assert time.monotonic() - ended < 2
    expect(row.locator(".label")).to_have_text("Active")
    page.close()


def test_german_with_the_viewers_zone(browser: Browser, base_url: str) -> None:
    """A German browser in Berlin reads German words and exact times in its own zone."""
    from playwright.sync_api import expect

    context = browser.new_context(locale="de-DE", timezone_id="Europe/Berlin")
    page = context.new_page()
    page.goto(f"{base_url}/?q=touch")
    panel = _row(page, TOUCH).locator(".panel")
    # The first page is written in the console's zone; the next update in the browser's.
    expect(panel).to_contain_text(" ME", timeout=3_000)
    expect(_row(page, TOUCH).locator("td.time").first).to_contain_text("vor 1 Stunde")
    assert NOW + timedelta(hours=1) > NOW
    context.close()


def test_the_column_headings_sort_by_keyboard(browser: Browser, base_url: str) -> None:
    """Tab reaches the Source heading; Enter sorts by name, and again the other way round."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{base_url}/?q=/")
    heading = page.locator("thead th").first

    def sort_by_keyboard() -> None:
        link = heading.get_by_role("link", name="Source")
        for _ in range(40):
            page.keyboard.press("Tab")
            if link.evaluate("element => element === document.activeElement"):
                page.keyboard.press("Enter")
                return
        pytest.fail("Tab never reached the Source heading")

    expect(heading).not_to_have_attribute("aria-sort", "ascending")
    sort_by_keyboard()
    page.wait_for_url(f"{base_url}/?q=%2F&sort=name")
    expect(heading).to_have_attribute("aria-sort", "ascending")
    names = page.locator("tbody th.name a")
    ascending = names.all_inner_texts()
    assert ascending == sorted(ascending, key=str.casefold)
    sort_by_keyboard()
    page.wait_for_url(f"{base_url}/?q=%2F&sort=-name")
    expect(heading).to_have_attribute("aria-sort", "descending")
    assert names.all_inner_texts() == list(reversed(ascending))
    _shot(page, "list-sorted-by-name-descending")
    page.close()
