"""Paging helpers for the styles vendor APIs use, and window splitting for capped searches.

Each driver takes a ``fetch`` callable (the I/O, written by the connector) and does the
bookkeeping, so the rules are tested here once:

* :func:`offset_pages`: ``STARTPOSITION`` / ``offset`` paging, ending on a short page. Offsets
  shift when rows change mid-read, so prefer keyset paging where the API allows a filter;
* :func:`cursor_pages`: a next-page token or link (Salesforce ``nextRecordsUrl``, Pipedrive
  ``next_cursor``), refusing a token that repeats (a loop at the source);
* :func:`keyset_pages`: re-query from the last seen ``(updated_at, id)`` after every page and drop
  what was already read at that timestamp, which stays correct while rows change, and stops with a
  clear error instead of looping when one timestamp holds more than a page the source cannot split;
* :class:`WindowQueue` / :func:`split_window`: a search that stops at a hard result cap (HubSpot's
  10,000; QuickBooks CDC's 1,000) is asked for smaller time windows until each answer fits. A
  window of one tick (1 ms) cannot shrink: read it by key instead, with a fetch that asks for
  ``updated_at == T and id > position.record_id`` sorted by id (the "restart from the last seen
  key" trick), through :func:`keyset_pages`.

Windows are half-open ``[start, end)`` and aware UTC, like every time in incsync.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

import attrs

from incsync.errors import BadResponseError, ConfigurationError, PermanentSourceError
from incsync.timestamps import ensure_utc

__all__ = [
    "ONE_MILLISECOND",
    "Key",
    "KeysetPosition",
    "TimeSpan",
    "WindowQueue",
    "cursor_pages",
    "keyset_pages",
    "offset_pages",
    "split_window",
]

T = TypeVar("T")

Key = tuple[datetime, str]
"""A record's ``(updated_at, id)``: the order keyset paging follows."""

ONE_MILLISECOND = timedelta(milliseconds=1)


def _utc(value: datetime) -> datetime:
    return ensure_utc(value, "paging bound")


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


@attrs.frozen
class KeysetPosition:
    """Where a keyset re-query starts: the last ``(updated_at, id)`` read and its tie group.

    A source that filters ``(updated_at, id) > (T, X)`` uses :attr:`updated_at` and
    :attr:`record_id`; one that only filters ``updated_at >= T`` uses :attr:`updated_at`, and the
    driver drops the ids in :attr:`seen_at_updated_at`.

    Args:
        updated_at: The latest ``updated_at`` read so far (aware UTC).
        record_id: The largest id read at ``updated_at``.
        seen_at_updated_at: Every id already read at exactly ``updated_at``.
    """

    updated_at: datetime = attrs.field(converter=_utc)
    record_id: str
    seen_at_updated_at: frozenset[str] = frozenset()

    def is_new(self, key: Key) -> bool:
        """Return whether a record with ``key`` comes after what was read (so is unread)."""
        updated_at, record_id = key
        if updated_at != self.updated_at:
            return updated_at > self.updated_at
        return record_id not in self.seen_at_updated_at

    @staticmethod
    def after(position: KeysetPosition | None, keys: Iterable[Key]) -> KeysetPosition | None:
        """Return the position once the records with ``keys`` have been read too.

        Keys before the position change nothing, so the position never moves back.
        """
        if position is None:
            latest, largest, seen = None, "", set[str]()
        else:
            latest = position.updated_at
            largest, seen = position.record_id, set(position.seen_at_updated_at)
        for updated_at, record_id in keys:
            if latest is None or updated_at > latest:
                latest, largest, seen = updated_at, record_id, {record_id}
            elif updated_at == latest:
                seen.add(record_id)
                largest = max(largest, record_id)
        if latest is None:
            return None
        return KeysetPosition(latest, largest, frozenset(seen))


def keyset_pages(
    fetch: Callable[[KeysetPosition | None], Sequence[T]],
    key: Callable[[T], Key],
    *,
    page_size: int,
    start: KeysetPosition | None = None,
) -> Iterator[list[T]]:
    """Yield every record once by re-querying from the last seen key after each page.

    Args:
        fetch: Returns up to ``page_size`` records in ascending ``updated_at`` order, from the
            position on (``updated_at >= position.updated_at``, or strictly after the position's
            key); everything from the start when the position is ``None``.
        key: Returns a record's ``(updated_at, id)``, both parsed.
        page_size: The page size asked of the source.
        start: Where to begin, when resuming.

    Yields:
        Each page without the records read on earlier pages (it may be shorter than the source's).

    Raises:
        ConfigurationError: ``page_size`` is below 1.
        PermanentSourceError: A full page brought nothing new: more than ``page_size`` records
            share one ``updated_at`` and ``fetch`` cannot page inside it. Make it filter on
            ``record_id`` within the timestamp, or raise the page size.
    """
    _check_page_size(page_size)
    position = start
    while True:
        page = fetch(position)
        keyed = [(key(item), item) for item in page]
        fresh = [item for item_key, item in keyed if position is None or position.is_new(item_key)]
        if fresh:
            position = KeysetPosition.after(position, (item_key for item_key, _ in keyed))
            yield fresh
        if len(page) < page_size:
            return
        if not fresh:
            assert position is not None  # a full page with nothing new followed an earlier one
            raise PermanentSourceError(
                f"more than {page_size} records share updated_at "
                f"{position.updated_at.isoformat()} and the source returned the same page "
                f"again; page inside one timestamp by record id, or raise the page size"
            )


def _check_page_size(page_size: int) -> None:
    if page_size < 1:
        raise ConfigurationError(f"page_size must be at least 1, got {page_size}")


@attrs.frozen
class TimeSpan:
    """A half-open time window ``[start, end)`` in aware UTC.

    Raises:
        ConfigurationError: ``start`` is not before ``end``.
        NaiveDatetimeError: A bound is naive.
    """

    start: datetime = attrs.field(converter=_utc)
    end: datetime = attrs.field(converter=_utc)

    def __attrs_post_init__(self) -> None:
        if self.start >= self.end:
            raise ConfigurationError(
                f"a window must start before it ends, got [{self.start}, {self.end})"
            )

    @property
    def duration(self) -> timedelta:
        """How long the window is."""
        return self.end - self.start


def split_window(
    start: datetime, end: datetime, *, resolution: timedelta = ONE_MILLISECOND
) -> tuple[TimeSpan, TimeSpan]:
    """Halve ``[start, end)`` at a whole number of ``resolution`` ticks after ``start``.

    Args:
        start: The window's start (aware).
        end: The window's end (aware, after ``start``).
        resolution: The finest time step the source's filter distinguishes (1 ms for HubSpot,
            1 s for QuickBooks).

    Returns:
        The earlier and the later half; together they cover the window exactly.

    Raises:
        ConfigurationError: The window is no longer than one ``resolution`` tick, so it cannot
            be split (read it by key instead), or ``resolution`` is not positive.
    """
    span = TimeSpan(start, end)
    if resolution <= timedelta(0):
        raise ConfigurationError(f"resolution must be positive, got {resolution}")
    if span.duration <= resolution:
        raise ConfigurationError(
            f"the window [{span.start.isoformat()}, {span.end.isoformat()}) is one "
            f"{resolution} tick and cannot be split; read it by record id instead"
        )
    ticks = span.duration // resolution
    middle = span.start + max(1, ticks // 2) * resolution
    return TimeSpan(span.start, middle), TimeSpan(middle, span.end)


@attrs.frozen
class WindowQueue:
    """The time windows still to read, earliest first, for a search with a hard result cap.

    Read :attr:`current`; when its answer fits under the cap, page through it and move on with
    :meth:`done`; when it hits the cap, replace it by its halves with :meth:`split` (or, when
    :attr:`can_split` is false, read its one tick by key).

    Args:
        pending: The windows not read yet, in time order, without gaps.
        resolution: The finest time step the source's filter distinguishes.
    """

    pending: tuple[TimeSpan, ...]
    resolution: timedelta = ONE_MILLISECOND

    @classmethod
    def covering(
        cls, start: datetime, end: datetime, *, resolution: timedelta = ONE_MILLISECOND
    ) -> WindowQueue:
        """Return the queue holding the one window ``[start, end)``."""
        return cls((TimeSpan(start, end),), resolution)

    @property
    def current(self) -> TimeSpan | None:
        """The window to read next, or ``None`` when every window has been read."""
        return self.pending[0] if self.pending else None

    @property
    def can_split(self) -> bool:
        """Whether the current window is longer than one tick."""
        return bool(self.pending) and self.pending[0].duration > self.resolution

    def done(self) -> WindowQueue:
        """Return the queue without the current window, which was read completely."""
        return attrs.evolve(self, pending=self.pending[1:])

    def split(self) -> WindowQueue:
        """Return the queue with the current window replaced by its two halves.

        Raises:
            ConfigurationError: The current window is one tick long, or the queue is empty.
        """
        if not self.pending:
            raise ConfigurationError("there is no window left to split")
        first = self.pending[0]
        halves = split_window(first.start, first.end, resolution=self.resolution)
        return attrs.evolve(self, pending=(*halves, *self.pending[1:]))
