"""Tests for incsync.connectors.paging: offset, cursor and keyset pages; capped windows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incsync.connectors.paging import (
    Key,
    KeysetPosition,
    TimeSpan,
    WindowQueue,
    cursor_pages,
    keyset_pages,
    offset_pages,
    split_window,
)
from incsync.errors import (
    BadResponseError,
    ConfigurationError,
    NaiveDatetimeError,
    PermanentSourceError,
)

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
MS = timedelta(milliseconds=1)


def _keys(count: int, *, same_time: bool = False) -> list[Key]:
    """Records in (updated_at, id) order: one per millisecond, or all at T0."""
    return [(T0 if same_time else T0 + n * MS, f"r{n:05d}") for n in range(count)]


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


# -- keyset pages --------------------------------------------------------------------------------


Fetch = Callable[[KeysetPosition | None], Sequence[Key]]


def _source(
    records: list[Key], *, page_size: int, strict: bool
) -> tuple[Fetch, list[KeysetPosition | None]]:
    """A source filtering ``updated_at >= T`` (ties in id order), or ``key > position``."""
    ordered = sorted(records)
    calls: list[KeysetPosition | None] = []

    def fetch(position: KeysetPosition | None) -> Sequence[Key]:
        calls.append(position)
        if position is None:
            matching = ordered
        elif strict:
            matching = [k for k in ordered if k > (position.updated_at, position.record_id)]
        else:
            matching = [k for k in ordered if k[0] >= position.updated_at]
        return matching[:page_size]

    return fetch, calls


@pytest.mark.parametrize("strict", [False, True])
def test_keyset_pages_read_every_record_once(strict: bool) -> None:
    """Re-querying from the last key after each page yields every record exactly once."""
    records = _keys(10) + [(T0 + 20 * MS, f"t{n}") for n in range(3)]
    fetch, _ = _source(records, page_size=4, strict=strict)
    read = [key for page in keyset_pages(fetch, lambda k: k, page_size=4) for key in page]
    assert read == sorted(records)


def test_keyset_pages_see_rows_changed_mid_read() -> None:
    """A record updated during the read moves after the position and is read (again), not lost.

    With offset paging the same change shifts every later row one place and one is skipped.
    """
    records = _keys(6)
    moved = False

    def fetch(position: KeysetPosition | None) -> Sequence[Key]:
        nonlocal moved
        if position is not None and not moved:
            moved = True
            records.remove((T0, "r00000"))
            records.append((T0 + 100 * MS, "r00000"))
        start = T0 - MS if position is None else position.updated_at
        return sorted(k for k in records if k[0] >= start)[:2]

    read = [key for page in keyset_pages(fetch, lambda k: k, page_size=2) for key in page]
    assert {record_id for _, record_id in read} == {f"r{n:05d}" for n in range(6)}
    assert read[-1] == (T0 + 100 * MS, "r00000")


def test_keyset_pages_stop_instead_of_looping_on_a_full_tie() -> None:
    """More ties than a page, with a source that cannot page inside them: a clear error."""
    fetch, calls = _source(_keys(5, same_time=True), page_size=2, strict=False)
    pages = keyset_pages(fetch, lambda k: k, page_size=2)
    assert next(pages) == _keys(2, same_time=True)
    with pytest.raises(PermanentSourceError, match="more than 2 records share updated_at"):
        next(pages)
    assert len(calls) == 2


def test_keyset_pages_resume_from_a_start_position() -> None:
    """Given a start position, records at or before it are not yielded again."""
    records = _keys(6)
    start = KeysetPosition(T0 + 2 * MS, "r00002", frozenset({"r00002"}))
    fetch, _ = _source(records, page_size=10, strict=False)
    read = list(keyset_pages(fetch, lambda k: k, page_size=10, start=start))
    assert read == [records[3:]]


@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=5), st.integers(min_value=0, max_value=30)),
        max_size=40,
        unique=True,
    ),
    st.integers(min_value=1, max_value=7),
)
def test_keyset_paging_with_strict_keys_reads_everything_once(
    raw: list[tuple[int, int]], page_size: int
) -> None:
    """Any records (ties included) and any page size: each record is yielded exactly once."""
    records = [(T0 + ms * MS, f"{n:03d}") for ms, n in raw]
    fetch, _ = _source(records, page_size=page_size, strict=True)
    read = [key for page in keyset_pages(fetch, lambda k: k, page_size=page_size) for key in page]
    assert read == sorted(records)


def test_keyset_position_only_moves_forward() -> None:
    """after() ignores keys before the position and gathers the ids seen at its timestamp."""
    first = KeysetPosition.after(None, [(T0, "b"), (T0, "a")])
    assert first == KeysetPosition(T0, "b", frozenset({"a", "b"}))
    assert KeysetPosition.after(first, [(T0 - MS, "z")]) == first
    later = KeysetPosition.after(first, [(T0 + MS, "c")])
    assert later == KeysetPosition(T0 + MS, "c", frozenset({"c"}))
    assert KeysetPosition.after(None, []) is None
    assert first.is_new((T0, "c"))
    assert not first.is_new((T0, "a"))
    assert first.is_new((T0 + MS, "a"))
    assert not first.is_new((T0 - MS, "z"))


def test_keyset_position_refuses_a_naive_time() -> None:
    """Positions hold aware UTC times like every other time in incsync."""
    with pytest.raises(NaiveDatetimeError):
        KeysetPosition(datetime(2024, 1, 1), "a")  # noqa: DTZ001 - the point of the test


# -- windows -----------------------------------------------------------------------------------


def test_split_window_halves_on_a_tick() -> None:
    """A window is split at a whole number of resolution ticks; the halves meet exactly."""
    first, second = split_window(T0, T0 + timedelta(seconds=3), resolution=timedelta(seconds=1))
    assert first == TimeSpan(T0, T0 + timedelta(seconds=1))
    assert second == TimeSpan(T0 + timedelta(seconds=1), T0 + timedelta(seconds=3))


@given(
    st.integers(min_value=2, max_value=10**9),
    st.sampled_from([MS, timedelta(seconds=1), timedelta(microseconds=1)]),
)
def test_split_window_covers_the_window_with_two_nonempty_halves(
    ticks: int, resolution: timedelta
) -> None:
    """For any splittable window: start < middle < end, and middle is a whole tick after start."""
    end = T0 + ticks * resolution
    first, second = split_window(T0, end, resolution=resolution)
    assert (first.start, first.end, second.start, second.end) == (T0, first.end, first.end, end)
    assert T0 < first.end < end
    assert (first.end - T0) % resolution == timedelta(0)


def test_split_window_refuses_one_tick_and_bad_arguments() -> None:
    """One tick cannot be split; nor can a reversed window or a zero resolution."""
    with pytest.raises(ConfigurationError, match="read it by record id"):
        split_window(T0, T0 + MS)
    with pytest.raises(ConfigurationError, match="start before it ends"):
        split_window(T0, T0)
    with pytest.raises(ConfigurationError, match="resolution"):
        split_window(T0, T0 + MS, resolution=timedelta(0))


def test_time_spans_move_to_utc_and_refuse_naive_bounds() -> None:
    """Bounds in another offset become UTC; naive bounds are refused."""
    local = datetime(2024, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    assert TimeSpan(local, local + MS).start == T0
    with pytest.raises(NaiveDatetimeError):
        TimeSpan(datetime(2024, 1, 1), datetime(2024, 1, 2))  # noqa: DTZ001 - the point


def test_window_queue_splits_the_current_window_in_place() -> None:
    """split() replaces the current window by its halves, ahead of the rest; done() drops it."""
    queue = WindowQueue.covering(T0, T0 + 4 * MS)
    queue = queue.split()
    assert queue.pending == (TimeSpan(T0, T0 + 2 * MS), TimeSpan(T0 + 2 * MS, T0 + 4 * MS))
    queue = queue.split()
    assert queue.current == TimeSpan(T0, T0 + MS)
    assert not queue.can_split
    with pytest.raises(ConfigurationError):
        queue.split()
    queue = queue.done().done().done()
    assert (queue.current, queue.can_split) == (None, False)
    with pytest.raises(ConfigurationError, match="no window left"):
        queue.split()


# -- a capped search, end to end -----------------------------------------------------------------

CAP = 10


class CappedSearch:
    """A search like HubSpot's: filter by time window, sort by time, and no more than CAP results
    per query (paging past it fails); it can also list one timestamp's records by id."""

    def __init__(self, records: list[Key]) -> None:
        self.records = sorted(records)
        self.queries = 0

    def count(self, span: TimeSpan) -> int:
        self.queries += 1
        return sum(span.start <= at < span.end for at, _ in self.records)

    def window(self, span: TimeSpan) -> list[Key]:
        self.queries += 1
        matching = [k for k in self.records if span.start <= k[0] < span.end]
        assert len(matching) <= CAP, "paging past the cap is an error at the vendor"
        return matching

    def tick(self, at: datetime, after_id: str | None, limit: int) -> list[Key]:
        self.queries += 1
        ids = [k for k in self.records if k[0] == at and (after_id is None or k[1] > after_id)]
        return ids[:limit]


def _read_capped(search: CappedSearch, start: datetime, end: datetime) -> list[Key]:
    """How a vendor connector combines the helpers: split until each window fits the cap, and
    read a one-tick window that does not fit by id."""
    read: list[Key] = []
    queue = WindowQueue.covering(start, end)
    while (span := queue.current) is not None:
        if search.count(span) <= CAP:
            read.extend(search.window(span))
        elif queue.can_split:
            queue = queue.split()
            continue
        else:

            def by_id(position: KeysetPosition | None, at: datetime = span.start) -> list[Key]:
                return search.tick(at, None if position is None else position.record_id, CAP)

            read.extend(k for page in keyset_pages(by_id, lambda k: k, page_size=CAP) for k in page)
        queue = queue.done()
    return read


def test_a_capped_search_reads_everything_by_splitting_and_by_key() -> None:
    """37 records, 25 of them in one millisecond, under a cap of 10: every one is read once."""
    crowded = [(T0 + 500 * MS, f"c{n:03d}") for n in range(25)]
    spread = [(T0 + n * 83 * MS, f"s{n:03d}") for n in range(12)]
    search = CappedSearch(crowded + spread)
    read = _read_capped(search, T0, T0 + timedelta(seconds=1))
    assert sorted(read) == sorted(crowded + spread)
    assert len(read) == len(set(read))


@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=999), st.integers(min_value=0, max_value=99)),
        max_size=80,
        unique=True,
    )
)
def test_a_capped_search_reads_any_distribution_exactly_once(raw: list[tuple[int, int]]) -> None:
    """Whatever the distribution of timestamps, the split-and-key reading is exact."""
    records = [(T0 + ms * MS, f"{n:03d}") for ms, n in raw]
    read = _read_capped(CappedSearch(records), T0, T0 + timedelta(seconds=1))
    assert sorted(read) == sorted(records)
    assert len(read) == len(records)
