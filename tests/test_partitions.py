"""Time partitions of a full read: a model of readers that crash and resume at any step.

The model reads a source of records (many sharing a second) through a plan of partitions, one
page at a time from whichever partition Hypothesis picks, as concurrent readers would interleave.
A page is durable with its partition's progress at once (one transaction, as a page and its
checkpoint are); a crash loses the page in flight and the readers start again from the plan as
it was last made durable. Partitions are split at random points of what is left to read, and
where a reader that met a cap on results would cut them.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from incsync.cursor import Cursor
from incsync.errors import ConfigurationError, SourceError
from incsync.marks import PARTITION_MARK
from incsync.partitions import (
    Partition,
    PartitionPlan,
    completed_prefix,
    index_of,
    latest_bound,
    plan_from_marks,
    plan_marks,
    plan_partitions,
    progressed,
    readers_per_cycle,
    resume_from,
    split,
    split_at_cap,
)
from incsync.timestamps import UTC, to_micros

T0 = datetime(2025, 1, 1, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def _at(seconds: int) -> datetime:
    return T0 + seconds * SECOND


def _micros(seconds: int) -> int:
    return to_micros(_at(seconds))


records_strategy = st.lists(
    st.tuples(st.integers(0, 30), st.integers(0, 9)), min_size=0, max_size=60, unique=True
).map(lambda pairs: sorted(Cursor(_at(second), f"r{number}") for second, number in pairs))


def _page(source: list[Cursor], partition: Partition, size: int) -> list[Cursor]:
    """What a keyset reader of ``partition`` gets next: from where it resumes, after its key."""
    start = resume_from(partition)
    return [
        key
        for key in source
        if partition.holds(key)
        and (start is None or key.updated_at >= start)
        and (partition.reached is None or key > partition.reached)
    ][:size]


def _assert_prefix_is_durable(source: list[Cursor], sink: set[Cursor], plan: PartitionPlan) -> None:
    cursor = completed_prefix(plan)
    if cursor is None:
        return
    missing = [key for key in source if key <= cursor and key not in sink]
    assert not missing, f"the cursor {cursor} is past unwritten records {missing}"


@given(
    source=records_strategy,
    count=st.integers(1, 5),
    size=st.integers(1, 7),
    data=st.data(),
)
@settings(max_examples=300, deadline=None)
def test_partitioned_reads_with_crashes_and_splits_end_with_the_sink_equal_to_the_source(
    source: list[Cursor], count: int, size: int, data: st.DataObject
) -> None:
    oldest = source[0].updated_at if source else T0
    newest = source[-1].updated_at if source else T0
    durable = plan_partitions(oldest, newest, count)
    sink: set[Cursor] = set()
    for _ in range(200):
        unfinished = durable.unfinished()
        if not unfinished:
            break
        index = data.draw(st.sampled_from(unfinished), label="partition")
        action = data.draw(st.sampled_from(["page", "page", "page", "crash", "split", "cap"]))
        partition = durable.partitions[index]
        if action == "split":
            floor = resume_from(partition)
            low = 0 if floor is None else int((floor - T0) / SECOND) + 1
            high = 31 if partition.end is None else int((partition.end - T0) / SECOND) - 1
            if low <= high:
                at = _at(data.draw(st.integers(low, high), label="split at"))
                if partition.start is None or at > partition.start:
                    durable = split(durable, index, at)
        elif action == "cap":
            # Cut where a reader that met a cap would be; the time runs from T0 to 31 s.
            with contextlib.suppress(SourceError):  # less than 2 us left: not cut
                durable = split_at_cap(durable, index, oldest=T0, latest=_at(31))
        elif action == "page":
            page = _page(source, partition, size)
            sink.update(page)  # the page and its checkpoint, in one transaction
            durable = progressed(durable, index, max(page, default=None), done=len(page) < size)
        # "crash": the page in flight is lost; readers resume from ``durable``.
        _assert_prefix_is_durable(source, sink, durable)
    while not durable.done:  # what is left, read without crashes
        index = durable.unfinished()[0]
        page = _page(source, durable.partitions[index], size)
        sink.update(page)
        durable = progressed(durable, index, max(page, default=None), done=len(page) < size)
        _assert_prefix_is_durable(source, sink, durable)
    assert sink == set(source)
    final = completed_prefix(durable)
    if source:
        assert final is not None
        assert final >= source[-1]


def test_a_plan_covers_all_time_in_ranges_of_equal_length() -> None:
    plan = plan_partitions(_at(0), _at(30), 3)
    assert [(p.start, p.end) for p in plan.partitions] == [
        (None, _at(10)),
        (_at(10), _at(20)),
        (_at(20), None),
    ]
    assert len(plan_partitions(_at(5), _at(5), 4).partitions) == 1


def test_the_prefix_stops_at_the_first_unfinished_partition_and_goes_as_far_as_it_reached() -> None:
    plan = plan_partitions(_at(0), _at(30), 3)
    assert completed_prefix(plan) is None
    later = progressed(plan, 2, Cursor(_at(25), "a"), done=True)
    assert completed_prefix(later) is None  # partition 0 has nothing durable yet
    first = progressed(later, 0, Cursor(_at(3), "b"), done=False)
    assert completed_prefix(first) == Cursor(_at(3), "b")
    finished = progressed(first, 0, None, done=True)
    assert completed_prefix(finished) == Cursor(_at(10), "")
    whole = progressed(finished, 1, Cursor(_at(12), "c"), done=True)
    assert completed_prefix(whole) == Cursor(_at(25), "a")


def test_progress_only_goes_forward_and_stays_inside_its_partition() -> None:
    plan = progressed(plan_partitions(_at(0), _at(30), 3), 1, Cursor(_at(15), "x"), done=False)
    with pytest.raises(ConfigurationError, match="cannot go back"):
        progressed(plan, 1, Cursor(_at(11), "x"), done=False)
    with pytest.raises(ConfigurationError, match="cannot have reached"):
        progressed(plan, 1, Cursor(_at(25), "x"), done=False)
    done = progressed(plan, 1, None, done=True)
    with pytest.raises(ConfigurationError, match="read to its end already"):
        progressed(done, 1, None, done=True)
    with pytest.raises(ConfigurationError, match="no partition 7"):
        progressed(plan, 7, None, done=True)


def test_a_split_keeps_what_was_read_and_refuses_a_point_already_read() -> None:
    plan = progressed(plan_partitions(_at(0), _at(30), 3), 1, Cursor(_at(15), "x"), done=False)
    cut = split(plan, 1, _at(17))
    assert [(p.start, p.end, p.reached) for p in cut.partitions[1:3]] == [
        (_at(10), _at(17), Cursor(_at(15), "x")),
        (_at(17), _at(20), None),
    ]
    for at in (_at(15), _at(12), _at(20)):
        with pytest.raises(ConfigurationError, match="cannot be split"):
            split(plan, 1, at)


def test_a_plan_with_a_gap_or_no_open_end_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="follow one another"):
        PartitionPlan([Partition(None, _at(1)), Partition(_at(2), None)])
    with pytest.raises(ConfigurationError, match="open below and above"):
        PartitionPlan([Partition(_at(0), None)])
    with pytest.raises(ConfigurationError, match="at least one"):
        PartitionPlan([])


@given(
    partitions=st.integers(1, 20),
    concurrent=st.integers(1, 30),
    cycles=st.integers(1, 40),
)
def test_the_readers_of_every_cycle_of_an_account_stay_within_the_vendor_s_limit(
    partitions: int, concurrent: int, cycles: int
) -> None:
    """A cycle reads at least one partition and at most the connector's; while one reader per
    cycle fits, the readers of every cycle allowed at once fit the vendor's concurrent requests,
    and no fewer than fit are taken."""
    readers = readers_per_cycle(partitions, concurrent, cycles)
    assert 1 <= readers <= partitions
    if cycles <= concurrent:
        assert readers * cycles <= concurrent
        assert readers == partitions or (readers + 1) * cycles > concurrent
    else:
        assert readers == 1


def test_quickbooks_three_cycles_of_a_company_read_three_partitions_each() -> None:
    """10 concurrent requests per company shared by 3 cycles: 3 readers each, not the 4 asked."""
    assert readers_per_cycle(4, 10, 3) == 3
    assert readers_per_cycle(4, 10, 2) == 4
    assert readers_per_cycle(4, 5, 6) == 1


def test_without_a_documented_limit_a_cycle_reads_every_partition_it_asks_for() -> None:
    """No vendor figure: the connector's partitions, however many cycles run."""
    assert readers_per_cycle(4, None, 50) == 4


@pytest.mark.parametrize(
    ("partitions", "concurrent", "cycles"), [(0, 10, 1), (4, 0, 1), (4, 10, 0), (4, 10, True)]
)
def test_counts_below_one_are_refused(partitions: int, concurrent: int, cycles: int) -> None:
    with pytest.raises(ConfigurationError):
        readers_per_cycle(partitions, concurrent, cycles)


def test_a_partition_that_met_a_cap_is_cut_in_the_middle_of_what_it_has_left() -> None:
    """From the time it reached (else its start) to its end: the first half keeps what was read."""
    plan = plan_partitions(_at(0), _at(30), 3)  # (None, 10), (10, 20), (20, None)
    reached = progressed(plan, 1, Cursor(_at(12), "x"), done=False)
    cut = split_at_cap(reached, 1, oldest=None, latest=_at(40))
    assert [(p.start, p.end, p.reached) for p in cut.partitions[1:3]] == [
        (_at(10), _at(16), Cursor(_at(12), "x")),
        (_at(16), _at(20), None),
    ]
    fresh = split_at_cap(plan, 1, oldest=None, latest=_at(40))
    assert [(p.start, p.end) for p in fresh.partitions[1:3]] == [
        (_at(10), _at(15)),
        (_at(15), _at(20)),
    ]


def test_the_open_ends_are_cut_between_the_oldest_update_and_the_latest_bound() -> None:
    """The last partition's time ends at the latest bound a cycle may draw; the first one's
    starts at the source's oldest update when it reached nothing, else where it reached."""
    plan = plan_partitions(_at(0), _at(30), 3)
    last = split_at_cap(plan, 2, oldest=None, latest=_at(40))
    assert [(p.start, p.end) for p in last.partitions[2:]] == [(_at(20), _at(30)), (_at(30), None)]
    first = split_at_cap(plan, 0, oldest=_at(-10), latest=_at(40))
    assert [(p.start, p.end) for p in first.partitions[:2]] == [(None, _at(0)), (_at(0), _at(10))]
    reached = progressed(plan, 0, Cursor(_at(4), "x"), done=False)
    assert split_at_cap(reached, 0, oldest=None, latest=_at(40)).partitions[1].start == _at(7)
    assert latest_bound(Cursor(_at(40), "x"), 10 * SECOND) == _at(30)


def test_a_cut_needs_two_microseconds_left_and_a_known_start() -> None:
    """Less than that left means more records share one instant than the source answers to one
    query: the read fails with the partition's bounds, rather than cut forever."""
    plan = plan_partitions(_at(0), _at(30), 3)
    one = timedelta(microseconds=1)
    narrow = progressed(plan, 1, Cursor(_at(20) - one, "x"), done=False)
    with pytest.raises(SourceError, match=r"updates from 2025-01-01T00:00:10\+00:00 until .*short"):
        split_at_cap(narrow, 1, oldest=None, latest=_at(40))
    two = progressed(plan, 1, Cursor(_at(20) - 2 * one, "x"), done=False)
    assert split_at_cap(two, 1, oldest=None, latest=_at(40)).partitions[2].start == _at(20) - one
    with pytest.raises(SourceError, match="too short"):
        split_at_cap(plan, 2, oldest=None, latest=_at(20))
    with pytest.raises(SourceError, match="no oldest update"):
        split_at_cap(plan, 0, oldest=None, latest=_at(40))


def test_a_finished_partition_is_not_cut() -> None:
    plan = progressed(plan_partitions(_at(0), _at(30), 3), 1, None, done=True)
    with pytest.raises(ConfigurationError, match="read to its end already"):
        split_at_cap(plan, 1, oldest=None, latest=_at(40))
    with pytest.raises(ConfigurationError, match="no partition 3"):
        split_at_cap(plan, 3, oldest=None, latest=_at(40))


def test_a_partition_is_found_by_its_start_however_the_plan_was_cut() -> None:
    plan = split(plan_partitions(_at(0), _at(30), 3), 1, _at(15))
    assert [index_of(plan, start) for start in (None, _at(10), _at(15), _at(20))] == [0, 1, 2, 3]
    with pytest.raises(ConfigurationError, match="no partition starting"):
        index_of(plan, _at(11))


def test_a_split_plan_comes_back_from_its_marks_beside_the_mark_of_the_partition_it_cut() -> None:
    """Marks only move forward and none is removed during the read: the cut partition's mark
    stays beside its halves', and the plan comes back as the halves."""
    plan = progressed(plan_partitions(_at(0), _at(30), 3), 1, Cursor(_at(12), "x"), done=False)
    before = plan_marks(plan)
    after = split_at_cap(plan, 1, oldest=None, latest=_at(40))
    kept = {**before, **plan_marks(after)}
    assert len(kept) == len(before) + 2
    loaded = plan_from_marks(kept)
    assert loaded is not None
    assert [(p.start, p.end, p.reached) for p in loaded.partitions] == [
        (None, _at(10), None),
        (_at(10), _at(16), Cursor(_at(12), "")),
        (_at(16), _at(20), None),
        (_at(20), None, None),
    ]
    # Marks kept before any split load as they did.
    unsplit = plan_from_marks(before)
    assert unsplit is not None
    assert [(p.start, p.end, p.reached) for p in unsplit.partitions] == [
        (None, _at(10), None),
        (_at(10), _at(20), Cursor(_at(12), "")),
        (_at(20), None, None),
    ]
    with pytest.raises(ConfigurationError, match="follow one another"):
        plan_from_marks({**kept, f"{PARTITION_MARK}{_micros(11)}:{_micros(20)}": _at(11)})
