"""Tests for incsync.connectors.paging: offset and cursor pages."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from incsync.connectors.paging import cursor_pages, offset_pages
from incsync.errors import (
    BadResponseError,
    ConfigurationError,
)

# -- offset and cursor pages -----------------------------------------------------------------------


@pytest.mark.parametrize(("count", "pages"), [(0, 0), (1, 1), (9, 3), (10, 4), (12, 4)])
def test_offset_pages_read_until_a_short_page(count: int, pages: int) -> None:
    """Pages of 3 are read at offsets 1, 4, 7… (1-based) until one comes back short."""
    items = list(range(count))
    offsets: list[int] = []

    def fetch(offset: int) -> Sequence[int]:
        offsets.append(offset)
        return items[offset - 1 : offset - 1 + 3]

    read = list(offset_pages(fetch, page_size=3, first=1))
    assert [item for page in read for item in page] == items
    assert len(read) == pages
    assert offsets == [1 + 3 * n for n in range(len(offsets))]


def test_offset_pages_refuse_an_oversized_page_and_a_bad_page_size() -> None:
    """A source returning more than asked for is a bad response; page_size 0 is refused."""
    with pytest.raises(BadResponseError, match="4 items for a page of 3"):
        list(offset_pages(lambda offset: [1, 2, 3, 4], page_size=3))
    with pytest.raises(ConfigurationError):
        list(offset_pages(lambda offset: [], page_size=0))


def test_cursor_pages_follow_tokens_until_none() -> None:
    """Each page's token fetches the next; an empty or None token ends paging."""
    pages = {None: ([1, 2], "b"), "b": ([3], "c"), "c": ([], "")}
    asked: list[str | None] = []

    def fetch(token: str | None) -> tuple[Sequence[int], str | None]:
        asked.append(token)
        return pages[token]

    assert list(cursor_pages(fetch)) == [[1, 2], [3]]
    assert asked == [None, "b", "c"]


def test_cursor_pages_refuse_a_repeated_token() -> None:
    """A token seen before would loop for ever: BadResponseError instead."""
    pages = {None: ([1], "a"), "a": ([2], "b"), "b": ([3], "a")}
    with pytest.raises(BadResponseError, match="twice"):
        list(cursor_pages(lambda token: pages[token]))
