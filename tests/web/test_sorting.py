"""The list's column headings sort it: each is a link, the sorted one says which way (aria-sort).

Following a heading sorts by its column from the first page, keeping the search and colour;
following it again turns the order round. Checked through Starlette's test client on a real
store; tests/web/test_browser.py does the same by keyboard in Chromium.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timezone
from html import unescape
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from incsync.integrations.web import create_app
from incsync.integrations.web._listing import ListQuery, SortKey
from incsync.integrations.web._view import element_id
from incsync.stores.sqlite import SQLiteStore
from tests.web.world import CONFIGURED, GREEN, GREY, RED, build

NOW = datetime.now(timezone.utc).replace(microsecond=0)
KEYS = [f"tenant-{number:03d}/ledger" for number in range(60)]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with SQLiteStore(tmp_path / "console.db") as store:
        build(store, NOW)
        app = create_app(store, sources=[*CONFIGURED, *KEYS], clock=lambda: NOW)
        yield TestClient(app, base_url="http://testserver")


def _headings(page: str) -> dict[str, tuple[str | None, str]]:
    """Each column heading's text, its aria-sort and where its link leads."""
    head = re.search(r"<thead>(.*?)</thead>", page, re.S)
    assert head is not None
    found = re.findall(
        r'<th scope="col"(?: aria-sort="(\w+)")?><a class="sort" href="([^"]*)">([^<]*)',
        head.group(1),
    )
    return {text: (sorted_way or None, unescape(href)) for sorted_way, href, text in found}


def _order(page: str) -> list[str]:
    return re.findall(r'<tr class="row[^"]*" id="([^"]+)"', page)


def test_every_column_heading_is_a_sort_link_and_the_sorted_one_says_which_way(
    client: TestClient,
) -> None:
    headings = _headings(client.get("/").text)
    assert headings == {
        "Source": (None, "/?sort=name"),
        # By default the most urgent status comes first; the heading turns that round.
        "Status": ("ascending", "/?sort=-status"),
        "Last change": (None, "/?sort=last_change"),
        "Last sync": (None, "/?sort=last_sync"),
    }
    # Newest first is descending by time; the heading's link then asks for oldest first.
    assert _headings(client.get("/?sort=last_sync").text)["Last sync"] == (
        "descending",
        "/?sort=-last_sync",
    )
    assert _headings(client.get("/?sort=-last_change").text)["Last change"] == (
        "ascending",
        "/?sort=last_change",
    )


def test_following_the_name_heading_twice_sorts_by_name_the_other_way(
    client: TestClient,
) -> None:
    """From page 2 of a search: sorted by name from the first page, then descending, search kept."""
    start = client.get("/", params={"q": "tenant", "page": "2"}).text
    ascending_url = _headings(start)["Source"][1]
    assert ascending_url == "/?q=tenant&sort=name"
    ascending = client.get(ascending_url).text
    assert _order(ascending)[:3] == [element_id(key) for key in KEYS[:3]]
    assert _headings(ascending)["Source"][0] == "ascending"
    descending_url = _headings(ascending)["Source"][1]
    assert descending_url == "/?q=tenant&sort=-name"
    descending = client.get(descending_url).text
    assert _headings(descending)["Source"][0] == "descending"
    assert _order(descending)[:3] == [element_id(key) for key in reversed(KEYS[-3:])]
    # The polled rows carry the same headings, so an update keeps them.
    rows = client.get("/rows", params={"q": "tenant", "sort": "-name"}).text
    assert _headings(rows)["Source"] == ("descending", "/?q=tenant&sort=name")


def test_the_status_heading_turns_the_urgent_first_order_round(client: TestClient) -> None:
    urgent_last = _order(client.get("/?sort=-status&q=s").text)
    assert urgent_last.index(element_id(GREEN)) < urgent_last.index(element_id(GREY))
    assert urgent_last.index(element_id(GREY)) < urgent_last.index(element_id(RED))


def test_a_heading_keeps_the_colour_filter() -> None:
    query = ListQuery(search="acme", color=None, sort=SortKey.NAME, descending=True, page=3)
    assert query.sorted_by(SortKey.NAME).params() == {"q": "acme", "sort": "name"}
    assert query.sorted_by(SortKey.LAST_SYNC).params() == {"q": "acme", "sort": "last_sync"}
    filtered = ListQuery.from_params({"color": "red", "sort": "last_sync"})
    assert filtered.sorted_by(SortKey.LAST_SYNC).params() == {
        "color": "red",
        "sort": "-last_sync",
    }


def _sort_box(page: str) -> tuple[list[tuple[str, str]], str | None]:
    """The Sort box's options (value, text) and the selected one's value."""
    box = re.search(r'<select id="sort" name="sort">(.*?)</select>', page, re.S)
    assert box is not None
    options = re.findall(r'<option value="([^"]*)"( selected)?>([^<]*)</option>', box.group(1))
    chosen = [value for value, selected, _text in options if selected]
    return [(value, unescape(text)) for value, _selected, text in options], (
        chosen[0] if chosen else None
    )


def test_the_sort_box_offers_each_order_reversed_and_keeps_a_reversed_sort_selected(
    client: TestClient,
) -> None:
    options, chosen = _sort_box(client.get("/?sort=-name").text)
    assert ("-name", "Name, reversed") in options
    assert chosen == "-name"
    # Showing the list again from the box keeps the order the page was in.
    again = client.get("/", params={"sort": chosen})
    assert _order(again.text) == _order(client.get("/?sort=-name").text)
    _options, chosen = _sort_box(client.get("/?sort=name").text)
    assert chosen == "name"


def test_the_reversed_sort_is_named_in_german_too(client: TestClient) -> None:
    options, _chosen = _sort_box(client.get("/?sort=-name", headers={"Accept-Language": "de"}).text)
    assert ("-name", "Name, umgekehrt") in options
