"""Cursors and windows: the pure decisions about where a cycle reads and how far it may advance.

A cursor is the (updated_at, id) of the last applied record, never a bare timestamp: with
second-precision sources many records share one timestamp, and a bare timestamp either loses the
ones after a page boundary (``>``) or cannot say which of them were applied (``>=``).

Sources are read with ``>=`` from the cursor's time minus the connector's lookback, and the sink
drops what was already applied, so nothing at a boundary is lost or applied twice. The cursor is
never moved past the cycle's start (on the source's clock, when its skew is measured) minus a
safety lag, so records that become visible late (search index lag, long transactions) are read
again on the next cycle.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import attrs

from incsync.clocks import source_now
from incsync.marks import Marks, frozen_marks
from incsync.records import Record
from incsync.timestamps import earlier, ensure_utc

__all__ = [
    "Cursor",
    "Window",
    "advance",
    "horizon",
    "page_high_water",
    "range_text",
    "window_after",
    "within",
]


def _utc_cursor_time(value: datetime) -> datetime:
    return ensure_utc(value, "cursor updated_at")


def _utc_window_start(value: datetime | None) -> datetime | None:
    return None if value is None else ensure_utc(value, "window start")


def _utc_window_end(value: datetime | None) -> datetime | None:
    return None if value is None else ensure_utc(value, "window end")


@attrs.frozen(slots=True, order=True)
class Cursor:
    """The (updated_at, id) of the last applied record; cursors order by that pair.

    Args:
        updated_at: The record's last-update time (aware; kept in UTC).
        record_id: The record's id; ``""`` stands for "before every id at this time".
    """

    updated_at: datetime = attrs.field(converter=_utc_cursor_time)
    record_id: str = ""

    @classmethod
    def of(cls, record: Record) -> Cursor:
        """Return the cursor positioned on ``record``."""
        return cls(record.updated_at, record.id)


@attrs.frozen(slots=True)
class Window:
    """What a connector is asked to read in one cycle.

    A connector must return every record whose ``updated_at`` is at or after :attr:`start`
    (everything when it is ``None``) and before :attr:`end` (when it is set). It may return more
    below :attr:`start`; the engine drops what was already applied. Only a connector that declares
    it can bound a read (:attr:`incsync.connectors.BaseConnector.partitions` above 1) is given
    an :attr:`end`.

    Args:
        start: Inclusive lower bound on ``updated_at``; ``None`` means from the first record.
        cursor: The checkpoint the window was derived from, for information (logging, or a source
            that needs a starting point). A connector must not skip records by its id: the
            window is every record at or after ``start``.
        marks: How far each side channel of the source has been read (see :data:`Marks`).
        end: Exclusive upper bound on ``updated_at``; ``None``: up to the last record. A record
            at ``end`` or later belongs to another window and must not be returned.
        partition: The window is one time partition of a full read (see
            :mod:`incsync.partitions`), read beside the others: a side channel (a log of
            deletes) is neither read nor counted by it; the full read sets where it starts.
    """

    start: datetime | None = attrs.field(default=None, converter=_utc_window_start)
    cursor: Cursor | None = None
    marks: Marks = attrs.field(factory=dict, converter=frozen_marks, hash=False)
    end: datetime | None = attrs.field(default=None, converter=_utc_window_end, kw_only=True)
    partition: bool = attrs.field(default=False, kw_only=True)

    @property
    def is_full(self) -> bool:
        """Whether this window asks for every record at the source."""
        return self.start is None and self.end is None

    def holds(self, updated_at: datetime) -> bool:
        """Return whether a record updated at ``updated_at`` belongs to this window."""
        return within(updated_at, self.start, self.end)


def within(updated_at: datetime, start: datetime | None, end: datetime | None) -> bool:
    """Return whether ``updated_at`` is in ``[start, end)``; a missing bound is open.

    The one rule for a time range of records: a window's, and a partition's of a full read.
    """
    after_start = start is None or updated_at >= start
    return after_start and (end is None or updated_at < end)


def range_text(start: datetime | None, end: datetime | None) -> str:
    """Return how messages name the records of ``[start, end)``: "updates from … until …".

    Bounds are written in ISO 8601; a missing one is "the first" or "the last". One wording for
    a window's range and a partition's, wherever a message or log line names one.
    """
    first = "the first" if start is None else start.isoformat()
    last = "the last" if end is None else end.isoformat()
    return f"updates from {first} until {last}"


def window_after(cursor: Cursor | None, lookback: timedelta, marks: Marks | None = None) -> Window:
    """Return the window that re-reads ``lookback`` before ``cursor`` (or everything).

    A lookback reaching before the first representable time (a cursor at .NET's
    ``DateTime.MinValue``, year 1) starts the window there: from the beginning. A negative
    lookback reads from the cursor itself, never after it. The side channels' ``marks`` go with
    the window as they are.
    """
    if cursor is None:
        return Window(marks=marks or {})
    start = earlier(cursor.updated_at, max(lookback, timedelta(0)))
    return Window(start=start, cursor=cursor, marks=marks or {})


def horizon(
    cycle_start: datetime, safety_lag: timedelta, clock_skew: timedelta | None = None
) -> Cursor:
    """Return the furthest a cursor may move in a cycle that started at ``cycle_start``.

    Records stamped at or after this point may still be invisible at the source, so the cursor
    stops just before them and the next cycle reads them again. The point is on the *source's*
    clock, which stamps the records: the cycle's start moved by the source's measured
    ``clock_skew`` (see :mod:`incsync.clocks`), minus the lag. A source 10 minutes behind the host
    has stamped nothing after the host's start minus 10 minutes; a cursor bounded by the host's
    clock would pass the records it stamps next. A lag reaching before the first representable
    time stops there.

    Args:
        cycle_start: When the cycle started, by the host's clock.
        safety_lag: How long a record may take to become visible at the source.
        clock_skew: How far the source's clock runs ahead of the host's (negative: behind);
            ``None`` when not measured (the host's clock stands for the source's).
    """
    return Cursor(earlier(source_now(cycle_start, clock_skew), safety_lag), "")


def page_high_water(records: Iterable[Record]) -> tuple[Cursor | None, datetime | None]:
    """Return the highest (updated_at, id) among ``records`` and their newest ``updated_at``.

    Both are ``None`` for an empty page. Computed in one pass because this runs once per page.
    """
    best: tuple[datetime, str] | None = None
    for record in records:
        key = (record.updated_at, record.id)
        if best is None or key > best:
            best = key
    if best is None:
        return None, None
    return Cursor(best[0], best[1]), best[0]


def advance(current: Cursor | None, candidate: Cursor | None, limit: Cursor) -> Cursor | None:
    """Return where the cursor may move: towards ``candidate``, never past ``limit``, never back.

    Args:
        current: The cursor already checkpointed (``None`` before the first checkpoint).
        candidate: The highest key known to be durable in the sink.
        limit: The cycle's :func:`horizon`.

    Returns:
        The new cursor.
    """
    if candidate is None:
        return current
    capped = min(candidate, limit)
    if current is None or capped > current:
        return capped
    return current
