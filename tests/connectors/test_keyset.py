"""Tests for incsync.connectors.keyset: the one keyset paging driver of time-filtered vendors.

The properties run the driver against a simulated vendor that does what real ones do: sorts by
update time with ties in any order, cuts answers at a cap, lets rows move forward (updated) between
requests, crowds more rows into one tick than an answer holds, and (Salesforce) serves an answer
over several pages from a snapshot whose locator may expire.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from incsync.connectors.keyset import (
    Answer,
    FromTime,
    KeysetRead,
    RowOutcome,
    WholeTick,
    read_by_keyset,
)
from incsync.errors import BadResponseError, ConfigurationError
from incsync.records import Page, Record, RecordFormat, RejectedRecord

UTC = timezone.utc
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
MILLISECOND = timedelta(milliseconds=1)
FORMAT = RecordFormat("id", "updated_at")


def record(record_id: str, at: datetime) -> Record:
    return Record(record_id, at, {"id": record_id})


def rejected(record_id: str | None, raw: str = "x") -> RejectedRecord:
    return RejectedRecord(record_id=record_id, reason="unreadable", raw=raw)


# -- the decisions, one at a time ---------------------------------------------------------------


def test_a_read_starts_at_the_tick_its_window_starts_in() -> None:
    """The first query starts at the tick holding the window's start: no filter is finer."""
    read = KeysetRead.starting(T0 + timedelta(milliseconds=1500), SECOND)
    assert read.next_step() == FromTime(T0 + SECOND)
    assert KeysetRead.starting(None, SECOND).next_step() == FromTime(None)


def test_a_cut_answer_is_asked_again_from_its_newest_tick_dropping_versions_read_there() -> None:
    """After a cut answer the next query starts at the newest tick; repeats there are dropped."""
    read = KeysetRead.starting(T0, SECOND)
    step = read.next_step()
    assert step == FromTime(T0)
    first = [record("a", T0), record("b", T0 + SECOND), record("c", T0 + SECOND)]
    kept, read = read.take(step, first)
    assert kept == first
    read = read.finish(step, more=True)
    step = read.next_step()
    assert step == FromTime(T0 + SECOND)
    again = [record("c", T0 + SECOND), record("b", T0 + SECOND), record("d", T0 + 2 * SECOND)]
    kept, read = read.take(step, again)
    assert kept == [record("d", T0 + 2 * SECOND)]
    assert read.finish(step, more=False).next_step() is None


def test_a_row_updated_within_the_same_tick_is_a_new_version() -> None:
    """Dropping is by version (id and exact time): an update inside the tick is passed on."""
    read = KeysetRead.starting(T0, SECOND)
    step = read.next_step()
    assert step is not None
    _, read = read.take(step, [record("a", T0 + timedelta(milliseconds=100))])
    read = read.finish(step, more=True)
    step = read.next_step()
    assert step is not None
    newer = record("a", T0 + timedelta(milliseconds=900))
    kept, _ = read.take(step, [record("a", T0 + timedelta(milliseconds=100)), newer])
    assert kept == [newer]


def test_a_cut_answer_that_never_left_its_first_tick_reads_that_tick_whole() -> None:
    """More rows in one tick than an answer holds: the tick is read whole, then the next one on."""
    read = KeysetRead.starting(T0, SECOND)
    step = read.next_step()
    assert step is not None
    _, read = read.take(step, [record(str(n), T0) for n in range(3)])
    read = read.finish(step, more=True)
    tick = read.next_step()
    assert tick == WholeTick(T0, T0 + SECOND)
    kept, read = read.take(tick, [record("1", T0), record("7", T0), record("z", T0 + SECOND)])
    assert kept == [record("7", T0)]  # "1" was read; "z" is after the tick, read next
    read = read.finish(tick, more=False)
    assert read.next_step() == FromTime(T0 + SECOND)


def test_an_answer_out_of_the_order_asked_for_stops_the_read() -> None:
    """A row older than one before it in the same query is refused loudly, never skipped."""
    read = KeysetRead.starting(T0, SECOND, vendor="hubspot")
    step = read.next_step()
    assert step is not None
    with pytest.raises(BadResponseError, match=r"hubspot: record 'b'.*order asked for") as caught:
        read.take(step, [record("a", T0 + 5 * SECOND), record("b", T0 + 2 * SECOND)])
    assert caught.value.vendor == "hubspot"


def test_an_answer_below_the_start_asked_for_stops_the_read() -> None:
    """A row older than the query's start means the filter was ignored."""
    read = KeysetRead.starting(T0, SECOND)
    step = read.next_step()
    assert step is not None
    with pytest.raises(BadResponseError, match="order asked for"):
        read.take(step, [record("a", T0 - SECOND)])


def test_the_order_of_rows_inside_one_tick_is_free() -> None:
    """Rows of one tick may come in any order, across exact times too."""
    read = KeysetRead.starting(T0, SECOND)
    step = read.next_step()
    assert step is not None
    rows = [record("b", T0 + timedelta(milliseconds=900)), record("a", T0)]
    kept, _ = read.take(step, rows)
    assert kept == rows


def test_a_whole_tick_refuses_rows_before_it() -> None:
    """A tick read that returns an older row ignored its filter."""
    read = KeysetRead.starting(T0, SECOND)
    step = read.next_step()
    assert step is not None
    _, read = read.take(step, [record("a", T0)])
    read = read.finish(step, more=True)
    tick = read.next_step()
    assert isinstance(tick, WholeTick)
    with pytest.raises(BadResponseError):
        read.take(tick, [record("b", T0 - SECOND)])


def test_rows_set_aside_are_passed_on_once_per_read() -> None:
    """An unreadable row that every re-query returns is passed on the first time only."""
    read = KeysetRead.starting(T0, SECOND)
    step = read.next_step()
    assert step is not None
    first: list[RowOutcome] = [
        rejected("x"),
        record("a", T0),
        rejected(None, "{...}"),
        record("b", T0 + SECOND),
    ]
    kept, read = read.take(step, first)
    assert kept == first
    read = read.finish(step, more=True)
    step = read.next_step()
    assert step == FromTime(T0 + SECOND)
    again: list[RowOutcome] = [rejected("x"), rejected(None, "{...}"), record("b", T0 + SECOND)]
    kept, _ = read.take(step, [*again, record("c", T0 + 2 * SECOND)])
    assert kept == [record("c", T0 + 2 * SECOND)]


def test_a_cut_answer_with_nothing_readable_stops_instead_of_looping() -> None:
    """Asking the same query again would bring the same unreadable rows: the read stops."""
    read = KeysetRead.starting(T0, SECOND)
    step = read.next_step()
    assert step is not None
    _, read = read.take(step, [rejected("x")])
    with pytest.raises(BadResponseError, match="no row with a readable id and time"):
        read.finish(step, more=True)


def test_the_last_tick_datetime_can_hold_ends_the_read() -> None:
    """A crowded tick at the end of time is read whole, and nothing is asked after it."""
    end = datetime.max.replace(tzinfo=UTC).replace(microsecond=0)
    read = KeysetRead.starting(end, SECOND)
    step = read.next_step()
    assert step is not None
    _, read = read.take(step, [record("a", end)])
    read = read.finish(step, more=True)
    tick = read.next_step()
    assert isinstance(tick, WholeTick)
    assert read.finish(tick, more=False).next_step() is None


@pytest.mark.parametrize("resolution", [timedelta(0), 1])
def test_resolution_must_be_a_positive_timedelta(resolution: object) -> None:
    """A zero resolution would never move on; a bare number says nothing of its unit."""
    with pytest.raises(ConfigurationError, match="resolution must be a timedelta longer than zero"):
        KeysetRead.starting(None, resolution)  # type: ignore[arg-type]


# -- a simulated vendor -------------------------------------------------------------------------


@dataclass
class Vendor:
    """A time-filtered source as vendors behave: capped answers, ties in any order, moving rows.

    Args:
        rows: The current time of every row, by id.
        cap: The most rows one answer (or one page of a tick read) holds.
        resolution: The finest step of the time filter.
        shuffle: Picks the order of rows that share a tick.
        moves: Before request number ``n`` (from 0), the ids in ``moves[n]`` are updated: moved
            to a tick later than every tick so far.
        snapshot_pages: Serve each query over up to this many pages from a snapshot taken when it
            was asked (Salesforce's locators), the locator expiring after ``expiry`` pages.
        scramble: Return each page in an arbitrary order (a source ignoring the order asked).
        spill: Tick reads also return rows of later ticks (a ``>=`` filter paged inside a tick).
    """

    rows: dict[str, datetime]
    cap: int
    resolution: timedelta
    shuffle: random.Random
    moves: dict[int, list[str]] = field(default_factory=dict)
    snapshot_pages: int = 1
    expiry: int | None = None
    scramble: bool = False
    spill: bool = False
    requests: int = 0
    versions: set[tuple[str, datetime]] = field(default_factory=set)
    last_snapshot: dict[str, datetime] = field(default_factory=dict)
    frontier: datetime = T0

    def __post_init__(self) -> None:
        self.versions = {(row_id, at) for row_id, at in self.rows.items()}

    def _request(self) -> None:
        # A read that loops fails here instead of hanging the test run.
        assert self.requests < 5_000, "the read does not end"
        for row_id in self.moves.get(self.requests, []):
            # An update is stamped "now": at or after everything the read has asked for or
            # been shown. (An update landing in a tick the read already closed, at the very
            # head of the data, is read by the next cycle: the engine keeps its cursor behind
            # the cycle's start.)
            now = max(self.frontier, max(self.rows.values()) + timedelta(microseconds=1))
            moved = now + self.resolution * self.shuffle.randint(0, 2)
            self.rows[row_id] = moved
            self.versions.add((row_id, moved))
        self.requests += 1

    def _reached(self, moment: datetime | None) -> None:
        if moment is not None and moment > self.frontier:
            self.frontier = moment

    def _ordered(self, matching: list[tuple[datetime, str]]) -> list[tuple[datetime, str]]:
        matching.sort()
        # Sorted by time as asked; rows sharing a tick come in any order.
        keyed = [(self._tick(at), self.shuffle.random(), at, row_id) for at, row_id in matching]
        keyed.sort()
        return [(at, row_id) for _, _, at, row_id in keyed]

    def _tick(self, at: datetime) -> int:
        return int((at - T0) / self.resolution)

    def _page(self, chunk: Sequence[tuple[datetime, str]]) -> list[dict[str, Any]]:
        rows = [{"id": row_id, "updated_at": at.isoformat()} for at, row_id in chunk]
        if self.scramble:
            self.shuffle.shuffle(rows)
        return rows

    def query(self, step: FromTime) -> Iterator[Answer]:
        self._reached(step.start)
        self._request()
        matching = [
            (at, row_id)
            for row_id, at in self.rows.items()
            if step.start is None or at >= step.start
        ]
        snapshot = self._ordered(matching)
        self.last_snapshot = dict(self.rows)
        for number in range(self.snapshot_pages):
            chunk = snapshot[number * self.cap : (number + 1) * self.cap]
            for at, _ in chunk:
                self._reached(at)
            more = len(snapshot) > (number + 1) * self.cap
            yield Answer(self._page(chunk), more)
            if not more or (self.expiry is not None and number + 1 >= self.expiry):
                return
            self._request()  # the next page of the snapshot is one more request

    def read_tick(self, step: WholeTick) -> Iterator[list[dict[str, Any]]]:
        after: str | None = None
        self._reached(step.end)
        while True:
            self._request()
            inside = sorted(
                row_id
                for row_id, at in self.rows.items()
                if step.start <= at < step.end and (after is None or row_id > after)
            )
            chunk = [(self.rows[row_id], row_id) for row_id in inside[: self.cap]]
            if self.spill:
                # Filtered ">= start" as Xero's and REST's tick reads are: later rows come too.
                later = sorted((at, row_id) for row_id, at in self.rows.items() if at >= step.end)
                chunk += later[:2]
            yield self._page(chunk)
            if len(inside) <= self.cap:
                return
            after = inside[self.cap - 1]


def _read(vendor: Vendor, start: datetime | None) -> list[Page]:
    return list(
        read_by_keyset(
            start,
            resolution=vendor.resolution,
            query=vendor.query,
            read_tick=vendor.read_tick,
            build=FORMAT.record,
        )
    )


@st.composite
def vendors(draw: st.DrawFn, *, scramble: bool = False) -> Vendor:
    resolution = draw(st.sampled_from([SECOND, MILLISECOND]))
    fine = draw(st.sampled_from([timedelta(0), MILLISECOND, timedelta(microseconds=1)]))
    count = draw(st.integers(min_value=0, max_value=60))
    # Few ticks for many rows: crowded ticks larger than the cap are common.
    ticks = draw(st.integers(min_value=1, max_value=12))
    rows: dict[str, datetime] = {}
    for number in range(count):
        tick = draw(st.integers(min_value=0, max_value=ticks - 1))
        within = draw(st.integers(min_value=0, max_value=3)) * fine
        at = T0 + tick * resolution + min(within, resolution - timedelta(microseconds=1))
        rows[f"r{number:03d}"] = at
    cap = draw(st.integers(min_value=1, max_value=12))
    moves: dict[int, list[str]] = {}
    if rows:
        for _ in range(draw(st.integers(min_value=0, max_value=8))):
            request = draw(st.integers(min_value=0, max_value=30))
            moves.setdefault(request, []).append(draw(st.sampled_from(sorted(rows))))
    snapshot_pages = draw(st.integers(min_value=1, max_value=4))
    expiry = draw(st.none() | st.integers(min_value=1, max_value=3))
    return Vendor(
        rows=rows,
        cap=cap,
        resolution=resolution,
        shuffle=random.Random(draw(st.integers())),
        moves=moves,
        snapshot_pages=snapshot_pages,
        expiry=expiry,
        scramble=scramble,
        spill=draw(st.booleans()),
    )


def _versions(pages: list[Page]) -> list[tuple[str, datetime]]:
    return [(item.id, item.updated_at) for page in pages for item in page.records]


@settings(max_examples=400, deadline=None)
@given(vendor=vendors(), start_tick=st.none() | st.integers(min_value=0, max_value=6))
def test_every_row_is_read_once_whatever_the_ties_caps_pages_and_moves(
    vendor: Vendor, start_tick: int | None
) -> None:
    """Each version is passed on at most once, and every row is read as the last query saw it.

    Under any order of ties, any cap, crowded ticks larger than the cap, answers served over
    several pages from an expiring snapshot, and rows moving forward between requests. (A row
    updated after the last query's snapshot is read by the next cycle: the engine's cursor
    stays behind the cycle's start.)
    """
    start = None if start_tick is None else T0 + start_tick * vendor.resolution
    pages = _read(vendor, start)
    read = _versions(pages)
    assert len(read) == len(set(read)), "a version was passed on twice"
    assert set(read) <= vendor.versions
    expected = {
        (row_id, at) for row_id, at in vendor.last_snapshot.items() if start is None or at >= start
    }
    assert expected <= set(read), f"not read: {sorted(expected - set(read))}"


@settings(max_examples=300, deadline=None)
@given(vendor=vendors(scramble=True))
def test_answers_that_ignore_the_order_asked_for_never_lose_a_row_silently(
    vendor: Vendor,
) -> None:
    """Rows returned out of the order asked for either stop the read loudly or are all read."""
    try:
        pages = _read(vendor, None)
    except BadResponseError as error:
        assert "order asked for" in str(error)  # noqa: PT017 - either outcome is allowed
        return
    read = _versions(pages)
    assert len(read) == len(set(read)), "a version was passed on twice"
    assert set(vendor.last_snapshot.items()) <= set(read)


@settings(max_examples=200, deadline=None)
@given(vendor=vendors())
def test_a_read_always_ends(vendor: Vendor) -> None:
    """The number of requests is bounded by the rows and the ticks, never a loop."""
    assume(vendor.rows)
    _read(vendor, None)
    moved = sum(len(ids) for ids in vendor.moves.values())
    rows = len(vendor.rows) + moved
    # At most: a query per cut answer (each moves a tick on or crowds it), a tick read per
    # crowded tick and its pages, and the snapshot pages.
    assert vendor.requests <= 4 * (rows + 2) * max(1, vendor.snapshot_pages)


def read_answers(
    *answers: Answer, resolution: timedelta = SECOND, total: int | None = None
) -> list[Page]:
    """Read a source that gives ``answers`` to the read's queries, one each, and no tick."""
    queue = iter(answers)

    def query(step: FromTime) -> Iterator[Answer]:
        yield next(queue)

    return list(
        read_by_keyset(
            None,
            resolution=resolution,
            query=query,
            read_tick=lambda step: iter(()),
            build=FORMAT.record,
            total=total,
        )
    )


def test_a_hubspot_answer_ordered_by_id_stops_the_read() -> None:
    """An answer sorted by id (a proxy, a cache) fails loudly instead of dropping rows."""
    times = {"101": T0 + 9 * SECOND, "102": T0 + 2 * SECOND, "103": T0 + 5 * SECOND}
    by_id = [{"id": row_id, "updated_at": at.isoformat()} for row_id, at in sorted(times.items())]
    with pytest.raises(BadResponseError, match="record '102'"):
        read_answers(Answer(by_id, more=False), resolution=MILLISECOND)


def test_a_row_that_cannot_be_built_is_set_aside_and_the_read_goes_on() -> None:
    """Any exception while building a row's record sets that row aside; the page goes on."""
    rows = [
        {"id": "a", "updated_at": T0.isoformat()},
        {"id": "b", "updated_at": "9999-12-31T23:00:00-08:00"},
        ["not", "an", "object"],
        {"id": "c", "updated_at": (T0 + SECOND).isoformat()},
    ]
    pages = read_answers(Answer(rows, more=False))
    assert [item.id for page in pages for item in page.records] == ["a", "c"]
    reasons = [item.reason for page in pages for item in page.rejected]
    assert len(reasons) == 2
    assert "out of range" in reasons[0]
    assert "expected a JSON object, got list" in reasons[1]


def test_the_read_s_first_answer_says_how_many_rows_the_whole_read_holds() -> None:
    """Every page carries the first answer's total; later answers (re-queries from later ticks,
    which count only what is left) change nothing, and neither does a first answer without one
    when a later one has it. A total given to the read wins over any answer's."""
    first = [{"id": str(n), "updated_at": (T0 + n * SECOND).isoformat()} for n in range(3)]
    second = [{"id": "3", "updated_at": (T0 + 3 * SECOND).isoformat()}]
    pages = read_answers(Answer(first, more=True, total=4), Answer(second, False, total=2))
    assert [page.total for page in pages] == [4, 4]
    pages = read_answers(Answer(first, more=True), Answer(second, more=False, total=2))
    assert [page.total for page in pages] == [None, None]
    pages = read_answers(Answer(first, True, total=4), Answer(second, False, total=2), total=9)
    assert [page.total for page in pages] == [9, 9]
