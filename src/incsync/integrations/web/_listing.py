"""Which sources one page of the list shows: filter by colour, search by name, sort, page.

Pure: :func:`select_page` takes every source's state and status and a :class:`ListQuery` read
from the address, and returns the page's rows with the counts the filter shows. The server
decides the page, so a list of 10,000 sources sends the browser one page of them.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import attrs

from incsync.state import SourceState
from incsync.status import SourceStatus, StatusColor

__all__ = ["PAGE_SIZE", "SEVERITY", "ListPage", "ListQuery", "Row", "SortKey", "select_page"]

PAGE_SIZE = 50
"""Sources per page."""

SEVERITY: tuple[StatusColor, ...] = (
    StatusColor.RED,
    StatusColor.ORANGE,
    StatusColor.GREY,
    StatusColor.GREEN,
)
"""Colours from the most to the least urgent: the order of the status sort and the filter."""


class SortKey(enum.Enum):
    """What the list is sorted by."""

    NAME = "name"
    STATUS = "status"
    LAST_CHANGE = "last_change"
    LAST_SYNC = "last_sync"


# The way each sort runs first, as its values go (``aria-sort``): names from A, the most urgent
# status first, the newest time first; descending is the other way round.
_FIRST_WAY = {
    SortKey.NAME: "ascending",
    SortKey.STATUS: "ascending",
    SortKey.LAST_CHANGE: "descending",
    SortKey.LAST_SYNC: "descending",
}

# The longest search kept: a name is never longer in practice, and a huge query costs every row.
_SEARCH_LENGTH = 200


def _enum_or_none(kind: type[enum.Enum], value: str | None) -> enum.Enum | None:
    try:
        return None if not value else kind(value)
    except ValueError:
        return None


@attrs.frozen
class ListQuery:
    """What the viewer asked the list for; every part has a default.

    Args:
        search: Show only sources whose name holds this text (any case).
        color: Show only sources of this colour.
        sort: What to sort by.
        descending: Sort the other way round.
        page: The page, from 1.
    """

    search: str = ""
    color: StatusColor | None = None
    sort: SortKey = SortKey.STATUS
    descending: bool = False
    page: int = 1

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> ListQuery:
        """Read a query from an address's parameters; what cannot be read takes its default.

        A list is no place for an error page: a mistyped or stale address shows the list.
        """
        sort_text = params.get("sort", "")
        descending = sort_text.startswith("-")
        sort = _enum_or_none(SortKey, sort_text.removeprefix("-"))
        color = _enum_or_none(StatusColor, params.get("color"))
        try:
            page = max(1, int(params.get("page", "1")))
        except ValueError:
            page = 1
        return cls(
            search=params.get("q", "").strip()[:_SEARCH_LENGTH],
            color=color if isinstance(color, StatusColor) else None,
            sort=sort if isinstance(sort, SortKey) else SortKey.STATUS,
            descending=descending,
            page=page,
        )

    def sorted_by(self, sort: SortKey) -> ListQuery:
        """Return the query a column heading asks for: sorted by ``sort``, from the first page.

        When the list is already sorted by ``sort``, the heading turns the order round.
        """
        descending = not self.descending if sort is self.sort else False
        return attrs.evolve(self, sort=sort, descending=descending, page=1)

    def aria_sort(self, sort: SortKey) -> str | None:
        """Return which way the list runs by ``sort``, as ``aria-sort`` says it.

        ``"ascending"`` or ``"descending"`` by the column's values; ``None`` when the list is not
        sorted by ``sort``.
        """
        if sort is not self.sort:
            return None
        first = _FIRST_WAY[sort]
        if not self.descending:
            return first
        return "descending" if first == "ascending" else "ascending"

    def params(self, page: int | None = None) -> dict[str, str]:
        """Return the address parameters of this query (on ``page``), defaults left out."""
        query = self if page is None else attrs.evolve(self, page=page)
        params: dict[str, str] = {}
        if query.search:
            params["q"] = query.search
        if query.color is not None:
            params["color"] = query.color.value
        if query.sort is not SortKey.STATUS or query.descending:
            params["sort"] = ("-" if query.descending else "") + query.sort.value
        if query.page != 1:
            params["page"] = str(query.page)
        return params


Row = tuple[SourceState, SourceStatus]
"""A source's state and its status."""


@attrs.frozen
class ListPage:
    """One page of the list.

    Args:
        rows: The page's sources, in order.
        page: The page shown (the one asked for, or the last one when it asked beyond it).
        pages: How many pages the filtered list has (at least 1).
        matching: How many sources the filter and search let through.
        total: How many sources there are.
        colors: How many sources of each colour there are (before the filter).
    """

    rows: Sequence[Row]
    page: int
    pages: int
    matching: int
    total: int
    colors: Mapping[StatusColor, int]


def _time_key(when: datetime | None) -> tuple[bool, float]:
    # Sources without the time come last whichever way the times are sorted.
    return (when is None, 0.0 if when is None else when.timestamp())


def _sort_key(sort: SortKey, descending: bool) -> Callable[[Row], tuple[object, ...]]:
    rank = {color: place for place, color in enumerate(SEVERITY)}
    sign = -1 if descending else 1

    def key(row: Row) -> tuple[object, ...]:
        state, status = row
        name = state.key.casefold()
        if sort is SortKey.STATUS:
            return (sign * rank[status.color], name)
        if sort is SortKey.NAME:
            return (name,)
        missing, seconds = _time_key(
            state.last_change if sort is SortKey.LAST_CHANGE else state.last_sync
        )
        # Newest first by default: the question is what changed (or synced) lately.
        return (missing, sign * -seconds, name)

    return key


def select_page(rows: Sequence[Row], query: ListQuery, page_size: int = PAGE_SIZE) -> ListPage:
    """Return the page of ``rows`` that ``query`` asks for.

    Args:
        rows: Every source's state and status.
        query: The filter, search, sort and page.
        page_size: Sources per page.
    """
    colors = Counter(status.color for _, status in rows)
    needle = query.search.casefold()
    chosen = [
        row
        for row in rows
        if (query.color is None or row[1].color is query.color)
        and (not needle or needle in row[0].key.casefold())
    ]
    if query.sort is SortKey.NAME and query.descending:
        chosen.sort(key=_sort_key(query.sort, False), reverse=True)
    else:
        chosen.sort(key=_sort_key(query.sort, query.descending))
    pages = max(1, -(-len(chosen) // page_size))
    page = min(query.page, pages)
    start = (page - 1) * page_size
    return ListPage(
        rows=chosen[start : start + page_size],
        page=page,
        pages=pages,
        matching=len(chosen),
        total=len(rows),
        colors={color: colors.get(color, 0) for color in SEVERITY},
    )
