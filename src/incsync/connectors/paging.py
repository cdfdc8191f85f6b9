"""Paging helpers for the token and offset styles of vendor APIs.

Each driver takes a ``fetch`` callable (the I/O, written by the connector) and does the
bookkeeping, so the rules are tested here once:

* :func:`offset_pages`: ``STARTPOSITION`` / ``offset`` paging, ending on a short page. Offsets
  shift when rows change mid-read, so use it only where the order does not move changed rows;
  a source filtered by update time is read by :mod:`incsync.connectors.keyset` instead;
* :func:`cursor_pages`: a next-page token or link (Salesforce ``nextRecordsUrl``, Pipedrive
  ``next_cursor``), refusing a token that repeats (a loop at the source).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from incsync.errors import BadResponseError
from incsync.policy import positive_count

__all__ = ["cursor_pages", "offset_pages"]

T = TypeVar("T")

Key = tuple[datetime, str]
"""A record's ``(updated_at, id)``: the order keyset paging follows."""

ONE_MILLISECOND = timedelta(milliseconds=1)


def offset_pages(
    fetch: Callable[[int], Sequence[T]], *, page_size: int, first: int = 0
) -> Iterator[Sequence[T]]:
    """Yield the pages at offsets ``first``, ``first + page_size``… until a short page.

    Args:
        fetch: Returns up to ``page_size`` items starting at the given offset.
        page_size: The page size asked of the source.
        first: The first offset (QuickBooks' ``STARTPOSITION`` starts at 1).

    Raises:
        ConfigurationError: ``page_size`` is below 1.
        BadResponseError: A page holds more than ``page_size`` items.
    """
    _check_page_size(page_size)
    offset = first
    while True:
        page = fetch(offset)
        if len(page) > page_size:
            raise BadResponseError(
                f"the source returned {len(page)} items for a page of {page_size}; "
                f"the connector asked for the wrong page size"
            )
        if page:
            yield page
        if len(page) < page_size:
            return
        offset += page_size


def cursor_pages(
    fetch: Callable[[str | None], tuple[Sequence[T], str | None]],
) -> Iterator[Sequence[T]]:
    """Yield pages by following next-page tokens until the source gives none.

    Args:
        fetch: Returns a page and the token for the next one (``None`` or ``""`` on the last);
            it is called with ``None`` first.

    Raises:
        BadResponseError: The source returned a token it had already returned: following it
            would loop for ever.
    """
    seen: set[str] = set()
    token: str | None = None
    while True:
        page, token = fetch(token)
        if page:
            yield page
        if not token:
            return
        if token in seen:
            raise BadResponseError(
                f"the source returned the next-page token {token[:80]!r} twice; paging "
                f"stopped instead of looping"
            )
        seen.add(token)


def _check_page_size(page_size: int) -> None:
    positive_count.check("page_size", page_size)
