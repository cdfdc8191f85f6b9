"""Full reads in time partitions read at once: one writer, the cursor at the completed prefix.

The in-memory connector declares how many partitions it reads at once; the engine plans them
between the source's oldest and newest update, keeps the plan in the source's marks, writes each
partition's pages as they come with the plan's progress, and moves the cursor only over what is
durable from the first partition on. Every test runs against each built-in store.
"""

from __future__ import annotations

import itertools
import logging
import threading
import uuid
from collections.abc import Callable, Collection, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from incsync import (
    Cursor,
    CycleProgress,
    Outcome,
    ResultCapError,
    SyncEngine,
    SyncPolicy,
    TransientSourceError,
)
from incsync.connectors import InMemoryConnector, InMemorySource
from incsync.connectors.base import RawPage
from incsync.connectors.memory import iso_timestamp
from incsync.cursor import Window
from incsync.marks import PARTITION_MARK
from incsync.partitions import Partition, plan_from_marks, plan_partitions, resume_from
from incsync.testing import ManualClock
from incsync.timestamps import parse_timestamp
from tests.helpers import Store, transactions_by_id

NOW = datetime(2026, 11, 13, 9, 41, 7, tzinfo=timezone.utc)
KEY = "acme/invoices"
POLICY = SyncPolicy(safety_lag=timedelta(minutes=5), max_consecutive_failures=100)
SECOND = timedelta(seconds=1)
# Ordered reads re-read a minute before their cursor and stop 30 s behind the cycle's start.
LOOKBACK = timedelta(seconds=60)
LAG = timedelta(seconds=30)


def _source(count: int, *, span: timedelta = timedelta(days=4)) -> InMemorySource:
    """``count`` records spread evenly over ``span``, the last a day before ``NOW``."""
    source = InMemorySource()
    end = NOW - timedelta(days=1)
    for number in range(count):
        at = end - span + span * number / max(count - 1, 1)
        source.put({"id": f"r{number:04d}", "updated_at": iso_timestamp(at)})
    return source


class Recording(InMemoryConnector):
    """Records the windows it is asked to read and the most page requests in flight at once.

    ``fail(window, page number)`` saying yes makes that fetch raise, once; ``on_page`` is called
    with each page's window and number before it is handed over.
    """

    def __init__(self, source: InMemorySource, **options: Any) -> None:
        self.fail: Callable[[Window, int], bool] | None = options.pop("fail", None)
        self.on_page: Any = options.pop("on_page", None)
        super().__init__(source, **options)
        self.windows: list[Window] = []
        self._lock = threading.Lock()
        self._in_flight = 0
        self.peak = 0

    def fetch(self, window: Window) -> Iterator[RawPage]:
        with self._lock:
            self.windows.append(window)
        for page_number, page in enumerate(super().fetch(window)):
            if self.fail is not None and self.fail(window, page_number):
                self.fail = None
                raise TransientSourceError("the source went away", vendor="memory")
            if self.on_page is not None:
                self.on_page(window, page_number)
            yield page

    def _before(self, number: int) -> None:
        with self._lock:
            self._in_flight += 1
            self.peak = max(self.peak, self._in_flight)
        try:
            super()._before(number)
        finally:
            with self._lock:
                self._in_flight -= 1


def _engine(store: Store) -> SyncEngine:
    return SyncEngine(store, policy=POLICY, clock=ManualClock(NOW))


def _assert_sink_equals_source(store: Store, key: str, source: InMemorySource) -> None:
    held = {
        record_id: transaction.record.updated_at
        for record_id, transaction in transactions_by_id(store, key).items()
    }
    expected = {
        record_id: parse_timestamp(raw["updated_at"])
        for record_id, raw in source.snapshot().items()
    }
    assert held == expected


def _assert_cursor_covers_only_durable_records(
    store: Store, key: str, source: InMemorySource, *, but: Collection[str] = ()
) -> None:
    cursor = store.load(key).cursor
    if cursor is None:
        return
    held = transactions_by_id(store, key)
    for record_id, raw in source.snapshot().items():
        if record_id in but:
            continue
        at = parse_timestamp(raw["updated_at"])
        if Cursor(at, record_id) <= cursor:
            assert record_id in held, f"the cursor {cursor} passed {record_id} unwritten"
            assert held[record_id].record.updated_at == at


def test_a_full_read_is_read_in_partitions_at_once_and_ends_equal_to_the_source(
    store: Store,
) -> None:
    """Four bounded windows are read at once; the sink ends equal to the source and the plan is
    forgotten with the read."""
    source = _source(400)
    connector = Recording(source, page_size=20, page_delay=0.01, partitions=4)
    engine = _engine(store)

    result = engine.run_cycle("acme/invoices", connector)

    assert (result.outcome, result.applied) == (Outcome.COMPLETED, 400)
    _assert_sink_equals_source(store, "acme/invoices", source)
    assert connector.peak > 1, "the partitions were read one after another"
    first_four = connector.windows[:4]
    assert all(window.partition for window in first_four)
    assert [window.end is None for window in first_four] == [False, False, False, True]
    assert first_four[0].start is None
    state = engine.state("acme/invoices")
    assert state.cursor == Cursor(
        parse_timestamp(source.snapshot()["r0399"]["updated_at"]), "r0399"
    )
    assert not [name for name in state.marks if name.startswith(PARTITION_MARK)]
    # The next cycle is incremental: one window from the cursor, no partition.
    again = engine.run_cycle("acme/invoices", connector)
    assert (again.outcome, again.applied) == (Outcome.COMPLETED, 0)
    assert not connector.windows[-1].partition


def test_progress_of_a_partitioned_read_ends_with_the_records_counted_once(store: Store) -> None:
    """Each partition counts only its own records, so once every partition has answered the
    total is the source's size, and it is never more than that before."""
    source = _source(400)
    connector = InMemoryConnector(source, page_size=20, partitions=4)
    seen: list[CycleProgress] = []

    result = _engine(store).run_cycle("acme/invoices", connector, on_progress=seen.append)

    assert (result.outcome, result.applied) == (Outcome.COMPLETED, 400)
    assert seen[-1].total == 400
    assert all(progress.total is not None for progress in seen)
    assert all((progress.total or 0) <= 400 for progress in seen)


def test_a_connector_without_partitions_reads_a_full_read_as_one_window(store: Store) -> None:
    """The default (one partition) is the read as before: one window, from the beginning."""
    source = _source(50)
    connector = Recording(source, page_size=20, partitions=1)

    result = _engine(store).run_cycle("acme/invoices", connector)

    assert (result.outcome, result.applied) == (Outcome.COMPLETED, 50)
    assert connector.windows == [Window()]


def test_a_failed_partition_fails_the_cycle_at_the_completed_prefix_and_the_next_resumes(
    store: Store,
) -> None:
    """The cursor stays before the failed partition's unread records; the next cycle resumes
    each partition where its durable pages reached, without reading the finished ones again."""
    source = _source(400)
    oldest, newest = source.time_span() or (NOW, NOW)
    second = plan_partitions(oldest, newest, 4, SECOND).partitions[1]
    connector = Recording(
        source,
        page_size=20,
        partitions=4,
        fail=lambda window, number: window.end == second.end and number == 3,
    )
    engine = _engine(store)

    failed = engine.run_cycle("acme/invoices", connector)

    assert failed.outcome is Outcome.FAILED
    _assert_cursor_covers_only_durable_records(store, "acme/invoices", source)
    plan = plan_from_marks(engine.state("acme/invoices").marks)
    assert plan is not None
    assert len(plan.partitions) == 4
    assert not plan.partitions[1].done
    windows_before = len(connector.windows)

    resumed = engine.run_cycle("acme/invoices", connector)

    assert resumed.outcome is Outcome.COMPLETED
    _assert_sink_equals_source(store, "acme/invoices", source)
    assert resumed.fetched < 400 - failed.applied + len(plan.partitions) * 2
    resumed_windows = connector.windows[windows_before:]
    unfinished = [plan.partitions[index] for index in plan.unfinished()]
    # The first readers resume the unfinished partitions; the last may be read again after.
    assert {(w.start, w.end) for w in resumed_windows[: len(unfinished)]} == {
        (resume_from(p), p.end) for p in unfinished
    }
    assert all(window.partition for window in resumed_windows)


def test_a_stop_ends_every_partition_and_the_next_cycle_carries_on(store: Store) -> None:
    """A stop ends the cycle after a durable page; no reading thread outlives it."""
    source = _source(400)
    stop = threading.Event()

    def stop_at(window: Window, number: int) -> None:
        if number == 2:
            stop.set()

    connector = Recording(source, page_size=20, partitions=4, on_page=stop_at)
    engine = _engine(store)

    stopped = engine.run_cycle("acme/invoices", connector, stop=stop)

    assert stopped.outcome is Outcome.INTERRUPTED_STOP
    assert not [t for t in threading.enumerate() if t.name == "incsync-read-ahead"]
    _assert_cursor_covers_only_durable_records(store, "acme/invoices", source)
    connector.on_page = None
    finished = engine.run_cycle("acme/invoices", connector)
    assert finished.outcome is Outcome.COMPLETED
    _assert_sink_equals_source(store, "acme/invoices", source)


def test_a_reset_during_a_partitioned_read_plans_again_and_sweeps_nothing_live(
    store: Store,
) -> None:
    """A reset refuses the running read's next checkpoint; the next read plans anew."""
    source = _source(300)
    engine = _engine(store)
    assert engine.run_cycle("acme/invoices", InMemoryConnector(source)).applied == 300
    engine.reset("acme/invoices")

    def reset_at(window: Window, number: int) -> None:
        if window.end is not None and number == 2:
            engine.reset("acme/invoices")

    connector = Recording(source, page_size=20, partitions=3, on_page=reset_at)
    interrupted = engine.run_cycle("acme/invoices", connector)
    assert interrupted.outcome is Outcome.INTERRUPTED_RESET
    assert plan_from_marks(engine.state("acme/invoices").marks) is None

    connector.on_page = None
    finished = engine.run_cycle("acme/invoices", connector)
    assert (finished.outcome, finished.applied, finished.swept) == (Outcome.COMPLETED, 300, 0)
    _assert_sink_equals_source(store, "acme/invoices", source)


def test_a_record_updated_out_of_an_unread_partition_after_the_last_ended_is_still_read(
    store: Store,
) -> None:
    """The last partition, where updates move to, is read to its end again once every other is
    finished: a reset's sweep then takes nothing that lives at the source."""
    source = InMemorySource()
    early = NOW - timedelta(days=10)
    for number in range(200):  # the first partition holds nearly all the records
        at = early + timedelta(seconds=number)
        source.put({"id": f"r{number:04d}", "updated_at": iso_timestamp(at)})
    for number in range(200, 203):  # the last partition holds three
        at = NOW - timedelta(days=1, seconds=203 - number)
        source.put({"id": f"r{number:04d}", "updated_at": iso_timestamp(at)})
    engine = _engine(store)
    assert engine.run_cycle("acme/invoices", InMemoryConnector(source)).applied == 203
    engine.reset("acme/invoices")
    moved = NOW - timedelta(hours=2)

    def move_late(window: Window, number: int) -> None:
        # By page 5 of the first partition the last one has long been read to its end.
        if window.start is None and number == 5:
            source.update("r0150", moved, amount=9)

    connector = Recording(source, page_size=10, partitions=2, on_page=move_late)
    result = engine.run_cycle("acme/invoices", connector)

    assert (result.outcome, result.swept) == (Outcome.COMPLETED, 0)
    held = transactions_by_id(store, "acme/invoices")["r0150"]
    assert held.record.updated_at == moved
    assert not held.record.deleted
    _assert_sink_equals_source(store, "acme/invoices", source)


def test_a_record_committed_late_into_a_finished_partition_is_read_by_a_later_cycle(
    store: Store,
) -> None:
    """A record stamped a little in the past (inside the lookback), committed after the part of
    the read that holds its time finished, is read: every bound lies a lookback before the
    cycle's horizon, so it falls in the last partition, which each cycle reads again from where
    it reached less the lookback, as an incremental read does from its cursor."""
    source = InMemorySource()
    for number in range(60):  # a dense minute and a half...
        at = NOW - timedelta(seconds=100) + timedelta(seconds=number / 4)
        source.put({"id": f"r{number:03d}", "updated_at": iso_timestamp(at)})
    for number in range(60, 66):  # ...and a sparse minute up to 40 s ago
        at = NOW - timedelta(seconds=85 - 8 * (number - 60))
        source.put({"id": f"r{number:03d}", "updated_at": iso_timestamp(at)})
    clock = ManualClock(NOW)
    policy = SyncPolicy(safety_lag=LAG, max_consecutive_failures=100)
    engine = SyncEngine(store, policy=policy, clock=clock)
    late_at = NOW - timedelta(seconds=58)
    pages = itertools.count(1)

    def commit_late_then_fail(window: Window, number: int) -> bool:
        if next(pages) == 12:
            # The sparse minute is read by then: the late record lands behind its readers.
            source.put({"id": "late", "updated_at": iso_timestamp(late_at)})
            return True
        return False

    connector = Recording(
        source, page_size=2, partitions=4, lookback=LOOKBACK, fail=commit_late_then_fail
    )
    assert engine.run_cycle(KEY, connector).outcome is Outcome.FAILED
    clock.advance(timedelta(seconds=100))
    source.update("r065", clock(), amount=1)  # the cursor will go far past the late record
    again = Recording(source, page_size=2, partitions=4, lookback=LOOKBACK)
    assert engine.run_cycle(KEY, again).outcome is Outcome.COMPLETED
    clock.advance(LAG + LOOKBACK)
    after = Recording(source, page_size=2, lookback=LOOKBACK)
    assert engine.run_cycle(KEY, after).outcome is Outcome.COMPLETED
    _assert_sink_equals_source(store, KEY, source)


class _Crash(BaseException):
    """Stands for the process dying inside a page (not an error the engine records)."""


def _cuts(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The log lines of the partitions cut at a cap."""
    return [r.getMessage() for r in caplog.records if "met the source's cap" in r.getMessage()]


def test_a_full_read_far_over_the_source_s_cap_is_cut_until_every_part_is_read(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A partition whose reader meets the cap on one read's results is cut in two, its pages
    kept, and each half is read as any partition is, cut again when it meets the cap: the sink
    ends equal to the source, the cursor at its newest record, and no more readers run at once
    than the cycle's."""
    caplog.set_level(logging.INFO, logger="incsync")
    source = _source(400)
    connector = Recording(source, page_size=7, page_delay=0.002, partitions=3, result_cap=25)

    result = _engine(store).run_cycle(KEY, connector)

    assert (result.outcome, result.applied) == (Outcome.COMPLETED, 400), result.error
    _assert_sink_equals_source(store, KEY, source)
    state = store.load(KEY)
    newest = parse_timestamp(source.snapshot()["r0399"]["updated_at"])
    assert state.cursor == Cursor(newest, "r0399")
    assert not [name for name in state.marks if name.startswith(PARTITION_MARK)]
    # Each window read yields at most 25 new records; one is read per cut, and one more per
    # partition (3 planned, 1 more per cut) and the last again: 400 <= 25 * (2 * cuts + 4).
    assert len(_cuts(caplog)) >= 6
    assert all(KEY in line for line in _cuts(caplog))
    assert all("it is cut in two, the updates from " in line for line in _cuts(caplog))
    assert connector.peak <= 3
    assert all(window.partition for window in connector.windows)


class _RefusingTheFirstAtOnce(Recording):
    """Answers the first read of the first partition with the cap before any page."""

    refused = False

    def fetch(self, window: Window) -> Iterator[RawPage]:
        if window.start is None and not self.refused:
            self.refused = True
            raise ResultCapError("memory: no page of this query", vendor=self.vendor)
        return super().fetch(window)


def test_a_first_partition_capped_before_any_page_is_cut_from_the_source_s_oldest_update(
    store: Store,
) -> None:
    """Open below and with nothing reached, the first partition's time starts at the source's
    oldest update, asked again: it is cut in the middle of that and its end."""
    source = _source(100)
    oldest, newest = source.time_span() or (NOW, NOW)
    first = plan_partitions(oldest, newest, 2, SECOND).partitions[0]
    assert first.end is not None
    connector = _RefusingTheFirstAtOnce(source, page_size=10, partitions=2)

    result = _engine(store).run_cycle(KEY, connector)

    assert result.outcome is Outcome.COMPLETED, result.error
    _assert_sink_equals_source(store, KEY, source)
    cut = oldest + (first.end - oldest) // 2
    assert (None, cut) in {(window.start, window.end) for window in connector.windows}
    assert (cut, first.end) in {(window.start, window.end) for window in connector.windows}


def test_a_cap_met_by_an_incremental_read_fails_the_cycle_and_says_what_to_do(
    store: Store,
) -> None:
    """An incremental window is read whole: nothing can cut it, so the cycle fails with the
    cap's error, its pages before the cap durable and the cursor after them only."""
    source = _source(100)
    engine = _engine(store)
    assert engine.run_cycle(KEY, InMemoryConnector(source)).outcome is Outcome.COMPLETED
    for number in range(60):
        source.update(f"r{number:04d}", NOW - timedelta(hours=20, seconds=-number), amount=1)

    failed = engine.run_cycle(
        KEY, InMemoryConnector(source, page_size=10, partitions=3, result_cap=25)
    )

    # The window starts at the cursor's record, applied already: 24 of the 25 are new.
    assert (failed.outcome, failed.error_class, failed.fetched, failed.applied) == (
        Outcome.FAILED,
        "ResultCapError",
        25,
        24,
    )
    assert failed.error is not None
    assert "at most 25 records" in failed.error
    assert "reset the source" in failed.error
    _assert_cursor_covers_only_durable_records(store, KEY, source)
    last_error = engine.state(KEY).last_error
    assert last_error is not None
    assert not last_error.retryable


def test_a_cap_met_by_a_full_read_in_one_window_fails_the_cycle(store: Store) -> None:
    """A connector that reads no partitions reads a full read as one window: it fails too."""
    source = _source(100)
    connector = InMemoryConnector(source, page_size=10, partitions=1, result_cap=25)

    failed = _engine(store).run_cycle(KEY, connector)

    assert (failed.outcome, failed.error_class, failed.applied) == (
        Outcome.FAILED,
        "ResultCapError",
        25,
    )
    _assert_cursor_covers_only_durable_records(store, KEY, source)


def test_more_records_at_one_instant_than_the_cap_fail_the_read_without_passing_them(
    store: Store,
) -> None:
    """The partition holding them is cut until less than two microseconds are left: the cycle
    then fails with its bounds, and the cursor stays before the records not read."""
    source = _source(60)
    crowded = NOW - timedelta(days=3, hours=12)
    for number in range(30):
        source.put({"id": f"c{number:02d}", "updated_at": iso_timestamp(crowded)})
    connector = InMemoryConnector(source, page_size=10, partitions=2, result_cap=20)
    engine = _engine(store)

    failed = engine.run_cycle(KEY, connector)

    assert (failed.outcome, failed.error_class) == (Outcome.FAILED, "SourceError")
    assert failed.error is not None
    assert "too short to cut" in failed.error
    assert f"from {crowded.isoformat()}" in failed.error
    _assert_cursor_covers_only_durable_records(store, KEY, source)
    cursor = engine.state(KEY).cursor
    assert cursor is None or cursor.updated_at <= crowded


class _Straying(Recording):
    """Answers the read of one partition with a record updated after that partition's end."""

    stray_at = NOW - timedelta(hours=23)

    def __init__(self, source: InMemorySource, strays: Partition, **options: Any) -> None:
        super().__init__(source, **options)
        self.strays = strays

    def fetch(self, window: Window) -> Iterator[RawPage]:
        for number, page in enumerate(super().fetch(window)):
            if (window.start, window.end, number) == (self.strays.start, self.strays.end, 0):
                page = [*page, {"id": "stray", "updated_at": iso_timestamp(self.stray_at)}]
            yield page


def test_a_record_outside_its_partition_fails_the_cycle_and_names_the_partition(
    store: Store,
) -> None:
    """A connector that does not bound a partition's read as it declares is a broken source: the
    cycle fails before writing that page, names the partition's range and the stray record's
    time, and the cursor stays before every record not written."""
    source = _source(200)
    oldest, newest = source.time_span() or (NOW, NOW)
    second = plan_partitions(oldest, newest, 4, SECOND).partitions[1]
    assert second.start is not None
    assert second.end is not None
    connector = _Straying(source, second, page_size=20, partitions=4)
    engine = _engine(store)

    failed = engine.run_cycle(KEY, connector)

    assert (failed.outcome, failed.error_class) == (Outcome.FAILED, "BadResponseError")
    assert failed.error is not None
    assert (
        f"a read of the updates from {second.start.isoformat()} until "
        f"{second.end.isoformat()} with a record updated at {_Straying.stray_at.isoformat()}"
        in failed.error
    )
    assert "stray" not in transactions_by_id(store, KEY)
    _assert_cursor_covers_only_durable_records(store, KEY, source)


def test_a_crash_right_after_a_cut_resumes_both_halves(store: Store) -> None:
    """The cut is durable with the next checkpoint's marks: after a crash, the next cycle reads
    the first half from where it reached and the second from its start, and completes."""
    source = _source(200)
    oldest, newest = source.time_span() or (NOW, NOW)
    planned_ends = {p.end for p in plan_partitions(oldest, newest, 2, SECOND).partitions}

    def crash_in_a_first_half(window: Window, number: int) -> bool:
        # Only the first half of a cut partition ends at a bound not planned.
        if window.end not in planned_ends and number == 1:
            raise _Crash
        return False

    engine = _engine(store)
    crashing = Recording(
        source, page_size=10, partitions=2, result_cap=30, fail=crash_in_a_first_half
    )
    with pytest.raises(_Crash):
        engine.run_cycle(KEY, crashing)

    kept = plan_from_marks(engine.state(KEY).marks)
    assert kept is not None
    assert len(kept.partitions) > 2, "the cut was not durable"
    first_half = next(p for p in kept.partitions if p.end not in planned_ends)
    assert first_half.reached is not None
    assert not first_half.done
    _assert_cursor_covers_only_durable_records(store, KEY, source)

    again = Recording(source, page_size=10, partitions=2, result_cap=30)
    resumed = engine.run_cycle(KEY, again)

    assert resumed.outcome is Outcome.COMPLETED, resumed.error
    _assert_sink_equals_source(store, KEY, source)
    windows = {(window.start, window.end) for window in again.windows}
    second_half = kept.partitions[kept.partitions.index(first_half) + 1]
    assert (resume_from(first_half), first_half.end) in windows
    assert second_half.done or (resume_from(second_half), second_half.end) in windows
    for partition in kept.partitions:
        assert partition.done or (resume_from(partition), partition.end) in windows


def _failing_at(which: int, page: int, *, crash: bool) -> Callable[[Window, int], bool]:
    """Fail (or crash) at ``page`` of the first (0), a middle (1) or the last (2) partition."""

    def failing(window: Window, number: int) -> bool:
        kind = 0 if window.start is None else 2 if window.end is None else 1
        if kind == which and number == page:
            if crash:
                raise _Crash
            return True
        return False

    return failing


MODEL_POLICY = SyncPolicy(safety_lag=LAG, max_consecutive_failures=100)


def _assert_cursor_is_not_past_an_unfinished_partition(store: Store, key: str) -> None:
    state = store.load(key)
    plan = plan_from_marks(state.marks)
    if plan is None or state.cursor is None:
        return
    for partition in plan.partitions:
        if not partition.done:
            reached = partition.start if partition.reached is None else partition.reached.updated_at
            assert reached is not None, f"the cursor {state.cursor} is past an unread partition"
            assert state.cursor.updated_at <= reached, f"the cursor is past {partition}"


@given(
    seconds=st.lists(st.integers(0, 560), min_size=1, max_size=80),
    partitions=st.integers(2, 5),
    page_size=st.integers(1, 7),
    faults=st.lists(st.tuples(st.integers(0, 8), st.integers(0, 6), st.booleans()), max_size=6),
    changes=st.lists(
        st.tuples(st.integers(0, 79), st.integers(0, 6), st.integers(0, 60), st.booleans()),
        max_size=6,
    ),
    gaps=st.lists(st.integers(0, 120), min_size=9, max_size=9),
    caps=st.lists(st.none() | st.integers(1, 3), max_size=6),
)
# Dense enough that every cap is met: partitions are cut in each of the first cycles.
@example(
    seconds=list(range(0, 560, 7)),
    partitions=3,
    page_size=2,
    faults=[(1, 4, True), (2, 2, False)],
    changes=[(5, 1, 10, False), (6, 2, 30, True)],
    gaps=[10] * 9,
    caps=[3, 5, 4],
)
@settings(
    max_examples=40,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_partitioned_reads_with_crashes_at_any_step_end_with_the_sink_equal_to_the_source(
    store: Store,
    seconds: list[int],
    partitions: int,
    page_size: int,
    faults: list[tuple[int, int, bool]],
    changes: list[tuple[int, int, int, bool]],
    gaps: list[int],
    caps: list[int | None],
) -> None:
    """Cycles of a partitioned full read, the last few minutes of records near the clock, fail
    or crash at any page of any partition while records are updated (they move to the last
    partition) and others are committed late, stamped up to the lookback in the past; time
    passes between cycles. In some cycles the source answers few records to one read (a cap), so
    that partitions are cut as they are read, as often as it takes or until a cut is too short
    (the cycle then fails), and cuts kept from one cycle are read by the next. After every cycle
    no record at or before the cursor is unwritten (but the late ones, which the lookback is
    for) and the cursor is not past an unfinished partition, and once the read completes, an
    incremental cycle later the sink equals the source. A cap fails a cycle only where it reads
    one window: a partition that meets one is cut."""
    key = f"model/{uuid.uuid4().hex}"
    clock = ManualClock(NOW)
    source = InMemorySource()
    for number, second in enumerate(seconds):
        at = NOW - timedelta(seconds=600 - second)
        source.put({"id": f"r{number:03d}", "updated_at": iso_timestamp(at)})
    engine = SyncEngine(store, policy=MODEL_POLICY, clock=clock)
    pending = list(changes)
    late_ids: set[str] = set()
    changing = threading.Lock()  # pages of several partitions come in at once

    def on_page(window: Window, number: int) -> None:
        with changing:
            for change in list(pending):
                record, at_page, delay, committed_late = change
                if at_page != number:
                    continue
                pending.remove(change)
                at = clock() - timedelta(seconds=delay)
                if committed_late:
                    record_id = f"late{len(late_ids):02d}"
                    late_ids.add(record_id)
                    source.put({"id": record_id, "updated_at": iso_timestamp(at)})
                elif f"r{record:03d}" in source.snapshot():
                    source.update(f"r{record:03d}", clock(), amount=number)

    def run(connector: Recording) -> Outcome | None:
        try:
            result = engine.run_cycle(key, connector)
        except _Crash:
            return None
        if result.error_class == "ResultCapError":
            assert plan_from_marks(engine.state(key).marks) is None, "a partition failed at a cap"
        return result.outcome

    outcome = None
    for cycle in range(max(len(faults), len(caps)) + 3):
        clock.advance(timedelta(seconds=gaps[cycle]))
        fault = faults[cycle] if cycle < len(faults) else None
        cap = caps[cycle] if cycle < len(caps) else None
        failing = None if fault is None else _failing_at(fault[0] % 3, fault[1], crash=fault[2])
        outcome = run(
            Recording(
                source,
                page_size=page_size,
                partitions=partitions,
                lookback=LOOKBACK,
                on_page=on_page,
                fail=failing,
                result_cap=cap,
            )
        )
        _assert_cursor_covers_only_durable_records(store, key, source, but=late_ids)
        _assert_cursor_is_not_past_an_unfinished_partition(store, key)
        if outcome is Outcome.COMPLETED and fault is None and cap is None:
            break
    assert outcome is Outcome.COMPLETED
    assert not [name for name in engine.state(key).marks if name.startswith(PARTITION_MARK)]
    # What changed during the last cycle, after its horizon, is read by the next one.
    clock.advance(LAG + LOOKBACK)
    assert run(Recording(source, page_size=page_size, lookback=LOOKBACK)) is Outcome.COMPLETED
    _assert_sink_equals_source(store, key, source)


@pytest.mark.parametrize("partitions", [0, -1])
def test_a_connector_refuses_fewer_than_one_partition(partitions: int) -> None:
    """A count of partitions below 1 is refused when the connector is made."""
    with pytest.raises(Exception, match="partitions"):
        InMemoryConnector(InMemorySource(), partitions=partitions)
