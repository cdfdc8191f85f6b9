"""Time partitions of a full read: the plan, each partition's progress, and the cursor they allow.

A full read (a first sync, a Reset, a re-read after a retention gap) waits on one request at a
time. Split into time partitions, it can be read by several readers at once, each in order and
checkpointed on its own, up to what the vendor allows concurrently. These are the decisions
such a read takes, as pure functions over frozen values; the engine sequences them
(:meth:`incsync.engine.SyncEngine.run_cycle`), with one reader per partition
(:func:`incsync.pipeline.read_ahead_each`) and one writer.

* :func:`readers_per_cycle` says how many partitions one cycle reads at once: within the
  concurrent requests the vendor documents per account, shared by the cycles of that account
  allowed to run at once (``per_account_limit`` of :func:`incsync.scheduling.run_due`, the CLI
  and the Celery deployment).
* :func:`plan_partitions` splits the time between the oldest and the newest record into ranges
  of equal length; the first is open below and the last open above, so together they hold every
  record whatever was changed since they were drawn. No bound is drawn after
  :func:`latest_bound`, a lookback before the cycle's horizon.
* :func:`index_of` finds a partition by its start, which names it for the whole read.
* :func:`progressed` records how far a partition's durable pages reached (only forward) and
  whether it is finished.
* :func:`split` cuts an unfinished partition at a time after what it has read: the rest becomes a
  partition of its own. :func:`split_at_cap` says where a partition whose reader met the
  source's cap on one query's results (:class:`~incsync.errors.ResultCapError`) is cut: in the
  middle of the time it has left to read, so each half holds about half of what the cap cut
  off, and a half that meets the cap again is cut again. The built-in partitioned readers page
  by keyset from the newest time read and never meet one; a connector that pages one window by
  offset does.
* :func:`resume_from` is where a partition's reader starts (again), after a crash too: at the
  time of the last durable key (inclusive, so the records sharing it are read again and dropped
  by the sink), else at the partition's start.
* :func:`completed_prefix` is the one cursor the source's state may hold while partitions are
  read: every record at or before it is durable. It moves over the finished partitions from the
  first, and into the first unfinished one as far as that one reached; it is never past an
  unfinished partition's unread records.
* :func:`plan_marks` and :func:`plan_from_marks` keep a plan in the source's marks
  (:mod:`incsync.marks`), so a crash resumes every partition where its durable pages reached,
  a split one as its two halves, without a change to the stores.
* :func:`to_read` says which partitions a cycle reads now: the open-ended last one is read to
  its end again once every other is finished, so a record updated while the read went on (it
  moves into the last partition) is read even when that partition had been read to its end
  before.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

import attrs

from incsync.cursor import Cursor, range_text, within
from incsync.errors import ConfigurationError, SourceError
from incsync.marks import PARTITION_MARK, Marks
from incsync.policy import positive_count
from incsync.timestamps import earlier, ensure_utc, from_micros, to_micros

__all__ = [
    "Partition",
    "PartitionPlan",
    "completed_prefix",
    "index_of",
    "latest_bound",
    "plan_from_marks",
    "plan_marks",
    "plan_partitions",
    "progressed",
    "readers_per_cycle",
    "resume_from",
    "split",
    "split_at_cap",
    "to_read",
]


def _utc_bound(value: datetime | None) -> datetime | None:
    return None if value is None else ensure_utc(value, "partition bound")


@attrs.frozen
class Partition:
    """One time range of a full read and how far its durable pages reached.

    Args:
        start: Inclusive lower bound on ``updated_at``; ``None``: from the first record.
        end: Exclusive upper bound; ``None``: to the last record.
        reached: The highest key of the partition's durable pages; ``None`` before any.
        done: Whether the partition was read to its end.
    """

    start: datetime | None = attrs.field(converter=_utc_bound)
    end: datetime | None = attrs.field(converter=_utc_bound)
    reached: Cursor | None = None
    done: bool = False

    def holds(self, key: Cursor) -> bool:
        """Return whether a record at ``key`` belongs to this partition."""
        return within(key.updated_at, self.start, self.end)


def _partitions(value: Iterable[Partition]) -> tuple[Partition, ...]:
    return tuple(value)


def _contiguous(
    _instance: object,
    _attribute: attrs.Attribute[tuple[Partition, ...]],
    value: tuple[Partition, ...],
) -> None:
    if not value:
        raise ConfigurationError("a partition plan needs at least one partition")
    if value[0].start is not None or value[-1].end is not None:
        raise ConfigurationError("a partition plan must be open below and above")
    for before, after in itertools.pairwise(value):
        if before.end is None or before.end != after.start:
            raise ConfigurationError(
                f"partitions must follow one another: one ends at {before.end}, "
                f"the next starts at {after.start}"
            )
    for partition in value:
        start, end = partition.start, partition.end
        if start is not None and end is not None and start >= end:
            raise ConfigurationError(f"a partition must end after it starts ({start} to {end})")
        if partition.reached is not None and not partition.holds(partition.reached):
            raise ConfigurationError(f"a partition cannot have reached {partition.reached}")


@attrs.frozen
class PartitionPlan:
    """The partitions of one full read, in time order, covering all time without a gap.

    Raises:
        ConfigurationError: The partitions leave a gap, overlap, or a partition reached a key
            outside its range.
    """

    partitions: tuple[Partition, ...] = attrs.field(converter=_partitions, validator=_contiguous)

    @property
    def done(self) -> bool:
        """Whether every partition was read to its end."""
        return all(partition.done for partition in self.partitions)

    def unfinished(self) -> Sequence[int]:
        """Return the indexes of the partitions still to read."""
        return [index for index, p in enumerate(self.partitions) if not p.done]


def readers_per_cycle(
    partitions: int, concurrent_requests: int | None, cycles_per_account: int
) -> int:
    """Return how many partitions one cycle of a full read reads at once.

    Each reader has one request in flight, and up to ``cycles_per_account`` cycles of one
    account run at once, so the readers of all of them together stay within the concurrent
    requests the vendor documents per account. At least one: a cycle reads. When even one
    reader per cycle is over the vendor's figure (``cycles_per_account`` above it), each cycle
    reads with one and the vendor refuses the requests over its limit, which are retried as
    its throttles are: the limit on cycles is the deployment's, for every vendor, so no one
    vendor's figure can refuse it.

    Args:
        partitions: What the connector asks for (:attr:`PartitionedConnector.partitions
            <incsync.protocols.PartitionedConnector.partitions>`).
        concurrent_requests: The requests the vendor lets one account have in flight at once;
            ``None`` when it documents no such limit.
        cycles_per_account: How many cycles of one account may run at once.

    Raises:
        ConfigurationError: A count is not a positive integer.
    """
    positive_count.check("partitions", partitions)
    positive_count.check("cycles_per_account", cycles_per_account)
    if concurrent_requests is None:
        return partitions
    positive_count.check("concurrent_requests", concurrent_requests)
    return max(1, min(partitions, concurrent_requests // cycles_per_account))


def plan_partitions(
    oldest: datetime, newest: datetime, count: int, resolution: timedelta = timedelta(0)
) -> PartitionPlan:
    """Split the time from ``oldest`` to ``newest`` into ``count`` partitions of equal length.

    Fewer partitions come back when the span is too short to split (a single instant: one).

    Args:
        oldest: The earliest ``updated_at`` at the source (an estimate is enough).
        newest: The latest.
        count: How many partitions: what the vendor lets one account read concurrently.
        resolution: Each bound is moved down to a whole multiple of it (since the epoch), so
            a source whose filter only tells whole seconds apart is given bounds it can tell;
            zero keeps the bounds as they fall.

    Raises:
        ConfigurationError: ``count`` is below 1, or ``newest`` is before ``oldest``.
        NaiveDatetimeError: A time has no timezone.
    """
    positive_count.check("count", count)
    oldest, newest = ensure_utc(oldest, "oldest"), ensure_utc(newest, "newest")
    if newest < oldest:
        raise ConfigurationError(f"newest ({newest}) is before oldest ({oldest})")
    step = (newest - oldest) / count
    bounds = sorted(
        {_floored(oldest + step * number, resolution) for number in range(1, count)} - {oldest}
    )
    bounds = [bound for bound in bounds if bound > oldest]
    edges: list[datetime | None] = [None, *bounds, None]
    return PartitionPlan(Partition(start, end) for start, end in itertools.pairwise(edges))


def latest_bound(horizon: Cursor, lookback: timedelta) -> datetime:
    """Return the latest time a bound between partitions may be drawn at in a cycle.

    The cycle's ``horizon`` less the connector's ``lookback``: a record that becomes visible
    late (within the safety lag or the lookback, the cases an incremental read covers) then
    falls in the last partition, which is open above and read again from where it reached,
    less the lookback, by every cycle that reads it.
    """
    return earlier(horizon.updated_at, lookback)


def _floored(moment: datetime, resolution: timedelta) -> datetime:
    if resolution <= timedelta(0):
        return moment
    step = resolution // timedelta(microseconds=1)
    micros = to_micros(moment)
    return from_micros(micros - micros % step)


def _checked_index(plan: PartitionPlan, index: int) -> Partition:
    if not 0 <= index < len(plan.partitions):
        raise ConfigurationError(f"the plan has no partition {index}")
    return plan.partitions[index]


def index_of(plan: PartitionPlan, start: datetime | None) -> int:
    """Return the index of the partition starting at ``start`` (``None``: the first one).

    A partition's start names it for as long as the read lasts: a split inserts a partition
    after the one it cuts, which keeps its start, so the indexes after it shift but no start
    changes.

    Raises:
        ConfigurationError: No partition of the plan starts there.
    """
    for index, partition in enumerate(plan.partitions):
        if partition.start == start:
            return index
    raise ConfigurationError(f"the plan has no partition starting at {start}")


def progressed(
    plan: PartitionPlan, index: int, reached: Cursor | None, *, done: bool
) -> PartitionPlan:
    """Return the plan once partition ``index``'s page up to ``reached`` is durable.

    Args:
        plan: The plan.
        index: The partition.
        reached: The highest key of the durable page (``None``: it held no record).
        done: Whether that page was the partition's last.

    Raises:
        ConfigurationError: No such partition, it was finished already, or ``reached`` lies
            outside it or before what it had reached.
    """
    partition = _checked_index(plan, index)
    if partition.done:
        raise ConfigurationError(f"partition {index} was read to its end already")
    if reached is not None and partition.reached is not None and reached < partition.reached:
        raise ConfigurationError(
            f"partition {index} cannot go back from {partition.reached} to {reached}"
        )
    kept = partition.reached if reached is None else reached
    changed = attrs.evolve(partition, reached=kept, done=done)
    return PartitionPlan((*plan.partitions[:index], changed, *plan.partitions[index + 1 :]))


def split(plan: PartitionPlan, index: int, at: datetime) -> PartitionPlan:
    """Return the plan with unfinished partition ``index`` cut at ``at`` into two.

    The first part keeps what was read (``at`` must be after it); the second starts at ``at``
    with nothing read.

    Raises:
        ConfigurationError: No such partition, it is finished, or ``at`` is not inside the part
            still to read.
        NaiveDatetimeError: ``at`` has no timezone.
    """
    at = ensure_utc(at, "at")
    partition = _checked_index(plan, index)
    if partition.done:
        raise ConfigurationError(f"partition {index} was read to its end already")
    floor = partition.start if partition.reached is None else partition.reached.updated_at
    if (floor is not None and at <= floor) or (partition.end is not None and at >= partition.end):
        raise ConfigurationError(f"partition {index} cannot be split at {at}")
    first = attrs.evolve(partition, end=at)
    second = Partition(at, partition.end)
    return PartitionPlan((*plan.partitions[:index], first, second, *plan.partitions[index + 1 :]))


_NARROWEST = timedelta(microseconds=2)
"""The shortest time a cut leaves something on both sides of: one microsecond each."""


def split_at_cap(
    plan: PartitionPlan, index: int, *, oldest: datetime | None, latest: datetime
) -> PartitionPlan:
    """Return the plan with partition ``index``, whose reader met a cap on results, cut in two.

    The cut (:func:`split`) is in the middle of the time the partition has left to read: from
    the time it reached (else its start) to its end. The first half keeps what was read and
    resumes from there; the second holds the rest. Each half holds about half of what the cap
    cut off, and one that meets the cap again is cut again, so a read ends after a number of
    cuts that grows with the logarithm of how far it is over the cap.

    Args:
        plan: The plan.
        index: The partition whose reader met the cap, its durable pages progressed already.
        oldest: The source's oldest update (:meth:`time_span
            <incsync.protocols.PartitionedConnector.time_span>`, asked again): where the first
            partition's time starts when it reached nothing. Only read then.
        latest: Where the last partition's time ends, open above: no bound is drawn after
            :func:`latest_bound`.

    Raises:
        ConfigurationError: No such partition, or it was read to its end already.
        SourceError: What is left cannot be cut (less than two microseconds: more records
            than the source answers to one query share one instant or the connector's
            lookback, or the last partition is over the cap past ``latest``), or the first
            partition's time has no known start.
    """
    partition = _checked_index(plan, index)
    if partition.done:
        raise ConfigurationError(f"partition {index} was read to its end already")
    reached = None if partition.reached is None else partition.reached.updated_at
    floor = reached or partition.start or oldest
    ceiling = latest if partition.end is None else partition.end
    bounds = range_text(partition.start, partition.end)
    if floor is None:
        raise SourceError(
            f"the partition of {bounds} met the source's cap on one query's results before "
            "reading anything, and the source gave no oldest update to cut it at; the next "
            "cycle asks again"
        )
    if ceiling - floor < _NARROWEST:
        raise SourceError(
            f"the partition of {bounds} met the source's cap on one query's results, and what "
            f"it has left to read, the {range_text(floor, ceiling)}, is too short to cut. More "
            "records than the source answers to one query share that instant, or lie within "
            "the connector's lookback before it (which each reader of the partition reads "
            "again), or, in the last partition, are too new for this cycle to cut at (the next "
            "one can). The cursor stays before them; a connector must read a crowded instant "
            "whole by other means, as the keyset driver's WholeTick does"
        )
    return split(plan, index, floor + (ceiling - floor) // 2)


def resume_from(partition: Partition, lookback: timedelta = timedelta(0)) -> datetime | None:
    """Return where a reader of ``partition`` starts: inclusive, ``None`` for the beginning.

    From the time of the last durable key, so the records that share it and were not in that
    page are read (those that were are dropped by the sink), less ``lookback`` (as an
    incremental read re-reads before its cursor, for records that become visible late) but
    never before the partition's start; else from the partition's start.
    """
    if partition.reached is None:
        return partition.start
    start = earlier(partition.reached.updated_at, max(lookback, timedelta(0)))
    return start if partition.start is None else max(start, partition.start)


def completed_prefix(plan: PartitionPlan) -> Cursor | None:
    """Return the cursor the source's state may hold: every record at or before it is durable.

    Over the finished partitions from the first, the cursor is the start of the next one (as
    ``Cursor(start, "")``: before every record at that time); into the first unfinished one, as
    far as it reached. ``None`` while the first partition has no durable page. Once every
    partition is done, it is the highest key read, or the last partition's start if that one
    held nothing.
    """
    cursor: Cursor | None = None
    for partition in plan.partitions:
        if not partition.done:
            return partition.reached or cursor
        if partition.end is None:
            return partition.reached or cursor
        cursor = Cursor(partition.end, "")
    return cursor


def to_read(plan: PartitionPlan) -> Sequence[int]:
    """Return the partitions a cycle reads now, the others first.

    The last partition, open above, is where every record updated while the read goes on
    moves to. It is read beside the others, but finished only by a read to its end made once
    every other partition is finished (the engine reads it again from where it reached), so
    no record leaves an unread partition for a part of the last one read already.
    """
    unfinished = plan.unfinished()
    last = len(plan.partitions) - 1
    return [*[index for index in unfinished if index != last], *[last][: last in unfinished]]


def _bound_text(moment: datetime | None) -> str:
    return "" if moment is None else str(to_micros(moment))


def plan_marks(plan: PartitionPlan) -> Marks:
    """Return the marks that keep ``plan`` in the source's state (see :mod:`incsync.marks`).

    One mark per partition, named by its bounds (``partition:<start>:<end>``, microseconds
    since the epoch, empty when open), holding how far it was read: its end once finished,
    else the time of its last durable key, else its start. The first partition, which has no
    start, has a mark only once it has read something; its end is the next one's start. Each
    only moves forward, as marks do. A plan of one partition needs none.
    """
    if len(plan.partitions) == 1:
        return {}
    marks: dict[str, datetime] = {}
    for partition in plan.partitions:
        name = f"{PARTITION_MARK}{_bound_text(partition.start)}:{_bound_text(partition.end)}"
        if partition.done and partition.end is not None:
            marks[name] = partition.end
        elif partition.reached is not None:
            marks[name] = partition.reached.updated_at
        elif partition.start is not None:
            marks[name] = partition.start
    return marks


def _bound(text: str) -> datetime | None:
    return None if text == "" else from_micros(int(text))


def plan_from_marks(marks: Marks) -> PartitionPlan | None:
    """Return the plan kept in ``marks`` by :func:`plan_marks`; ``None`` when they keep none.

    A partition comes back finished when its mark reached its end, else as having reached the
    time of its mark (``Cursor(time, "")``: before every id at that time, so its reader reads
    that time again and the sink drops what was applied). A mark moved back before its
    partition's start (a rewind) leaves the partition to read from its start.

    Marks only move forward and none is removed while the read goes on, so the mark of a
    partition that was split stays beside the marks of its halves: a mark whose range spans
    several partitions is that, and says nothing its halves' marks do not (they were written
    together, the first half's with what the partition had reached).

    Raises:
        ConfigurationError: The marks do not make a plan (they were not written by
            :func:`plan_marks`).
    """
    kept: dict[tuple[datetime | None, datetime | None], datetime] = {}
    for name, moment in marks.items():
        if not name.startswith(PARTITION_MARK):
            continue
        try:
            start_text, end_text = name.removeprefix(PARTITION_MARK).split(":")
            kept[_bound(start_text), _bound(end_text)] = moment
        except ValueError as error:
            raise ConfigurationError(f"the mark {name!r} names no partition") from error
    if not kept:
        return None
    starts = sorted({start for start, _ in kept if start is not None})
    if not starts:
        raise ConfigurationError("the partition marks name no partition with a start")
    edges: list[datetime | None] = [None, *starts, None]
    ranges = list(itertools.pairwise(edges))
    partitions = []
    for start, end in ranges:
        mark = kept.get((start, end))
        if mark is None:
            partitions.append(Partition(start, end))
        elif end is not None and mark >= end:
            partitions.append(Partition(start, end, done=True))
        elif start is None or mark > start:
            partitions.append(Partition(start, end, reached=Cursor(mark, "")))
        else:
            partitions.append(Partition(start, end))
    # Every partition with a start has a mark of its own (plan_marks writes one); any other
    # mark is that of a partition split since.
    unmarked = [start for start, end in ranges if start is not None and (start, end) not in kept]
    if unmarked or not all(_spans_partitions(bounds, ranges) for bounds in kept):
        raise ConfigurationError("the partition marks do not follow one another")
    return PartitionPlan(partitions)


def _spans_partitions(
    bounds: tuple[datetime | None, datetime | None],
    ranges: Sequence[tuple[datetime | None, datetime | None]],
) -> bool:
    """Return whether ``bounds`` run from one partition's start to the same or a later one's end.

    A mark of one partition does; so does the mark of a partition split since.
    """
    starts = [start for start, _ in ranges]
    if bounds[0] not in starts:
        return False
    return bounds[1] in [end for _, end in ranges[starts.index(bounds[0]) :]]
