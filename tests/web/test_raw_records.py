"""A source's page shows each set-aside record's raw row as indented JSON, and inert.

A row whose stored excerpt reads back exactly is shown as JSON, one field a line; an excerpt cut
short is shown as stored. Either way markup from the source is escaped and control characters
(terminal escapes, bidi overrides) are written as visible escapes. Checked on every store.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timezone
from html import unescape

from starlette.testclient import TestClient

from incsync.connectors import InMemoryConnector
from incsync.connectors.base import RawPage
from incsync.cursor import Window
from incsync.engine import SyncEngine
from incsync.integrations.web import create_app
from tests.helpers import Store, records_before

NOW = datetime.now(timezone.utc).replace(microsecond=0)
KEY = "hostile/rows"
HOSTILE = {
    "id": "<img src=x onerror=alert(1)>",
    "updated_at": "<script>alert('owned')</script>\x1b[2J\x1b]0;title\x07",
    "contact": {"name": "Zoë \u202eevil\u202c <b>bold</b>", "tags": ["a", 2.5, None, True]},
}
LONG = {"id": "long-one", "updated_at": "soon", "notes": "<i>x</i>\x1b[31m" + "A" * 3_000}


class _Hostile(InMemoryConnector):
    """Reads the source after a page of rows that are set aside: unreadable times."""

    def fetch(self, window: Window) -> Iterator[RawPage]:
        yield [HOSTILE, LONG]
        yield from super().fetch(window)


def _raw_blocks(store: Store) -> list[str]:
    SyncEngine(store, clock=lambda: NOW).run_cycle(KEY, _Hostile(records_before(NOW, 3)))
    client = TestClient(create_app(store, sources=[KEY], clock=lambda: NOW))
    page = client.get("/source", params={"key": KEY}).text
    for unsafe in ("<script>", "<img", "<b>", "<i>", "\x1b", "\x07", "\u202e", "\u202c"):
        assert unsafe not in page, unsafe
    return re.findall(r'<pre class="raw"[^>]*>(.*?)</pre>', page, re.S)


def test_a_row_read_back_exactly_is_indented_json_and_inert(store: Store) -> None:
    [pretty] = [unescape(block) for block in _raw_blocks(store) if "onerror" in block]
    assert pretty.split("\n") == [
        "{",
        '  "id": "<img src=x onerror=alert(1)>",',
        '  "updated_at": "<script>alert(\'owned\')</script>\\u001b[2J\\u001b]0;title\\u0007",',
        '  "contact": {',
        '    "name": "Zoë \\u202eevil\\u202c <b>bold</b>",',
        '    "tags": [',
        '      "a",',
        "      2.5,",
        "      null,",
        "      true",
        "    ]",
        "  }",
        "}",
    ]


def test_an_excerpt_cut_short_is_shown_as_stored_and_inert(store: Store) -> None:
    [cut] = [unescape(block) for block in _raw_blocks(store) if "long-one" in block]
    assert cut.startswith("{'id': 'long-one', 'updated_at': 'soon', 'notes': '<i>x</i>\\x1b[31mAAA")
    assert cut.endswith("AAA…")
    assert "\n" not in cut
