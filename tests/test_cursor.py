"""Tests for incsync.cursor: cursor order, windows, the horizon, page high water and advance."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incsync.cursor import (
    Cursor,
    Window,
    advance,
    horizon,
    page_high_water,
    range_text,
    window_after,
    within,
)
from incsync.errors import NaiveDatetimeError
from incsync.records import Record
from incsync.timestamps import UTC
from tests.strategies import cursors, records

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
T1 = T0 + timedelta(seconds=1)
T2 = T0 + timedelta(seconds=2)


def test_cursor_keeps_time_in_utc_and_refuses_naive() -> None:
    """A cursor stores its time in UTC and refuses a naive one."""
    cursor = Cursor(datetime(2024, 3, 1, 7, 0, tzinfo=timezone(timedelta(hours=-5))), "a")
    assert cursor == Cursor(T0, "a")
    assert cursor.updated_at.tzinfo is UTC
    with pytest.raises(NaiveDatetimeError):
        Cursor(datetime(2024, 3, 1), "a")  # noqa: DTZ001 - the point of the test


def test_cursors_order_by_time_then_id() -> None:
    """Cursors order by (updated_at, record_id); "" sorts before every id at the same time."""
    ordered = [Cursor(T0, ""), Cursor(T0, "a"), Cursor(T0, "b"), Cursor(T1, ""), Cursor(T1, "0")]
    assert sorted([ordered[i] for i in (3, 0, 4, 2, 1)]) == ordered
    assert Cursor(T0, "zzz") < Cursor(T1, "")


def test_cursor_of_a_record_is_its_key() -> None:
    """Cursor.of positions the cursor on the record's (updated_at, id)."""
    record = Record(id="INV-9", updated_at=T1)
    assert Cursor.of(record) == Cursor(T1, "INV-9")
    assert (Cursor.of(record).updated_at, Cursor.of(record).record_id) == record.key


def test_window_defaults_to_a_full_read() -> None:
    """A window without a start asks for every record; one with a start does not."""
    assert Window().is_full
    assert Window().cursor is None
    assert not Window(start=T0).is_full


def test_window_after_no_cursor_is_a_full_read() -> None:
    """Before the first checkpoint the window is a full read, whatever the lookback."""
    assert window_after(None, timedelta(hours=1)) == Window()


def test_window_after_a_cursor_starts_lookback_before_it() -> None:
    """With a cursor the window starts lookback before its time and carries the cursor."""
    cursor = Cursor(T2, "x")
    window = window_after(cursor, timedelta(seconds=2))
    assert window == Window(start=T0, cursor=cursor)
    assert window_after(cursor, timedelta(0)).start == T2


def test_horizon_is_cycle_start_minus_lag_before_every_id() -> None:
    """The horizon is (cycle start - safety lag, "")."""
    assert horizon(T2, timedelta(seconds=2)) == Cursor(T0, "")


def test_page_high_water_of_an_empty_page() -> None:
    """An empty page has neither a high-water cursor nor a newest time."""
    assert page_high_water([]) == (None, None)


def test_page_high_water_takes_the_highest_key_in_any_order() -> None:
    """The highest (updated_at, id) wins regardless of page order; ties break on id."""
    page = [
        Record(id="b", updated_at=T1),
        Record(id="z", updated_at=T0),
        Record(id="a", updated_at=T1),
    ]
    assert page_high_water(page) == (Cursor(T1, "b"), T1)


@given(st.lists(records(), max_size=20))
def test_page_high_water_is_the_max_key(page: list[Record]) -> None:
    """page_high_water equals the maximum record key, computed any way."""
    cursor, newest = page_high_water(page)
    if not page:
        assert (cursor, newest) == (None, None)
        return
    top = max(record.key for record in page)
    assert cursor == Cursor(top[0], top[1])
    assert newest == max(record.updated_at for record in page)


def test_advance_without_candidate_keeps_current() -> None:
    """Nothing durable yet means the cursor stays where it is (None included)."""
    assert advance(None, None, Cursor(T2)) is None
    assert advance(Cursor(T0, "a"), None, Cursor(T2)) == Cursor(T0, "a")


def test_advance_moves_to_the_candidate_below_the_limit() -> None:
    """A candidate below the limit becomes the cursor."""
    assert advance(None, Cursor(T0, "a"), Cursor(T2)) == Cursor(T0, "a")
    assert advance(Cursor(T0, "a"), Cursor(T1, "b"), Cursor(T2)) == Cursor(T1, "b")


def test_advance_stops_at_the_limit() -> None:
    """A candidate past the horizon is capped at the horizon (records there may be invisible)."""
    assert advance(None, Cursor(T2, "a"), Cursor(T1)) == Cursor(T1, "")
    assert advance(Cursor(T0, "a"), Cursor(T1, "a"), Cursor(T1)) == Cursor(T1, "")


def test_advance_never_moves_back() -> None:
    """A lower candidate, or a limit below the current cursor, leaves the cursor alone."""
    assert advance(Cursor(T1, "b"), Cursor(T1, "a"), Cursor(T2)) == Cursor(T1, "b")
    assert advance(Cursor(T2, "a"), Cursor(T2, "z"), Cursor(T0)) == Cursor(T2, "a")


@given(st.none() | cursors(), st.none() | cursors(), cursors())
def test_advance_never_moves_backwards_nor_past_the_limit(
    current: Cursor | None, candidate: Cursor | None, limit: Cursor
) -> None:
    """advance never goes below current, never beyond the limit when it moves, never beyond the
    candidate, and moves as far as both allow."""
    moved = advance(current, candidate, limit)
    if candidate is None:
        assert moved == current
        return
    assert moved is not None
    if current is not None:
        assert moved >= current
    if moved != current:
        assert moved <= limit
        assert moved <= candidate
    assert moved == (
        min(candidate, limit) if current is None else max(current, min(candidate, limit))
    )


@pytest.mark.parametrize(
    ("start", "end", "inside", "outside"),
    [
        (None, None, [T0], []),
        (T0, None, [T0, T0 + timedelta(days=9)], [T0 - timedelta(microseconds=1)]),
        (None, T0, [T0 - timedelta(microseconds=1)], [T0]),
        (T0, T0 + timedelta(hours=1), [T0], [T0 + timedelta(hours=1)]),
    ],
)
def test_a_time_range_holds_its_start_and_not_its_end(
    start: datetime | None, end: datetime | None, inside: list[datetime], outside: list[datetime]
) -> None:
    """Windows and partitions share one rule: ``[start, end)``, a missing bound open."""
    window = Window(start, end=end)
    assert all(within(moment, start, end) and window.holds(moment) for moment in inside)
    assert not any(within(moment, start, end) or window.holds(moment) for moment in outside)


def test_a_range_is_named_in_iso_8601_with_its_open_ends_in_words() -> None:
    """One wording for a window's range and a partition's, in every message that names one."""
    start = datetime(2026, 11, 13, 9, 0, tzinfo=timezone.utc)
    end = datetime(2026, 11, 14, tzinfo=timezone.utc)

    assert range_text(start, end) == (
        "updates from 2026-11-13T09:00:00+00:00 until 2026-11-14T00:00:00+00:00"
    )
    assert range_text(None, end) == "updates from the first until 2026-11-14T00:00:00+00:00"
    assert range_text(start, None) == "updates from 2026-11-13T09:00:00+00:00 until the last"
