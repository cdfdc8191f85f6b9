"""A full read in time partitions as a cycle reads it: which partitions are read, and how far.

The engine has one read loop (:meth:`incsync.engine.SyncEngine.run_cycle`): the one writer of
every page, whether one window is read or several time partitions at once. This module keeps the
partitions' side of that loop over the pure decisions of :mod:`incsync.partitions`:

* whether a cycle reads partitions, and how many at once (:func:`cycle_readers`,
  :func:`partition_plan`);
* which partitions are read now (:meth:`PartitionedRead.start_readers`): the next ones in plan
  order while fewer than the cycle's readers run, the last one (open above) again once every
  other is finished;
* how far each is read (:meth:`PartitionedRead.took`, :meth:`PartitionedRead.ended`) and the
  marks that keep it with each checkpoint;
* a partition whose reader met the source's cap on one query's results
  (:class:`~incsync.errors.ResultCapError`) is cut in two (:meth:`PartitionedRead.split`): the
  first half is read on from where its pages reached, the second waits its turn as any partition
  does. The cut is durable with the next checkpoint's marks; a crash before it reads the
  partition again, which meets the cap again and is cut again.

A partition's reader is keyed by the partition's start (:data:`Start`): a split inserts a
partition, which shifts the indexes after it while their readers are in flight, but changes no
start. Each page finds its partition's index in the plan as it is when the page arrives.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

import attrs

from incsync import telemetry
from incsync.cursor import Cursor, Window, page_high_water, range_text
from incsync.errors import BadResponseError, ResultCapError
from incsync.marks import Marks
from incsync.partitions import (
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
    split_at_cap,
    to_read,
)
from incsync.pipeline import Ended, Reads
from incsync.protocols import Connector, PartitionedConnector
from incsync.records import Page
from incsync.state import SourceState

__all__ = [
    "PartitionedRead",
    "Start",
    "cycle_readers",
    "handed_over",
    "partition_plan",
    "reader_of",
]

logger = logging.getLogger("incsync")

Start = datetime | None
"""A partition's start, the key of its reader: ``None`` for the first partition (and for the
one reader of a read in one window)."""

_PARTITION_BOUND = timedelta(seconds=1)
"""Partitions are planned on whole seconds: every source's time filter tells those apart."""


def cycle_readers(connector: Connector, cycles_per_account: int) -> int:
    """Return how many partitions this cycle reads at once: 1 for a connector without any."""
    if not isinstance(connector, PartitionedConnector):
        return 1
    return readers_per_cycle(
        connector.partitions, connector.concurrent_requests, cycles_per_account
    )


def partition_plan(
    state: SourceState, connector: Connector, limit: Cursor, readers: int
) -> PartitionPlan | None:
    """Return the partitions of the full read this cycle goes on with; ``None``: one window.

    Only a full read of an ordered connector that reads several partitions at once is split: a
    plan kept in the marks goes on (read ``readers`` partitions at a time); a read with no cursor
    yet is planned between the oldest and newest times the source gives, one partition per
    reader. A read that has a cursor and no plan (begun as one window) goes on as one window
    from its cursor. No bound is drawn after :func:`~incsync.partitions.latest_bound` of the
    cycle's horizon (``limit``).
    """
    if not (state.reads_whole and connector.ordered):
        return None
    if not isinstance(connector, PartitionedConnector) or connector.partitions < 2:
        return None
    kept = plan_from_marks(state.marks)
    if kept is not None or state.cursor is not None:
        return kept
    if readers < 2:
        return None
    span = connector.time_span()
    if span is None:
        return None
    oldest, newest = span
    newest = min(newest, latest_bound(limit, connector.lookback))
    if newest <= oldest:
        return None
    plan = plan_partitions(oldest, newest, readers, _PARTITION_BOUND)
    return plan if len(plan.partitions) > 1 else None


class _CappedReadError(Exception):
    """A reader met the source's cap: the cap's error, with the reader's key.

    Raised in the reader's thread and handed to the engine as any failed fetch is (after the
    reader's pages), where :func:`handed_over` makes it an item again.
    """

    def __init__(self, start: Start, error: ResultCapError) -> None:
        super().__init__(str(error))
        self.start = start
        self.error = error


def reader_of(start: Start, pages: Iterable[Page]) -> Iterator[Page]:
    """Yield ``pages``, a reader's; a cap they meet is raised with the reader's key, ``start``.

    :func:`handed_over` makes it an item of that reader again.
    """
    try:
        yield from pages
    except ResultCapError as error:
        raise _CappedReadError(start, error) from error


def handed_over(reads: Reads[Start, Page]) -> Iterator[tuple[Start, Page | Ended | ResultCapError]]:
    """Yield what ``reads`` hands over, a reader's cap (:func:`reader_of`) as an item of its own.

    Any other failure is raised, as :class:`~incsync.pipeline.Reads` raises it.
    """
    while True:
        try:
            key, item = next(reads)
        except StopIteration:  # noqa: PERF203 - a cap is caught where each item is handed over
            return
        except _CappedReadError as capped:
            yield capped.start, capped.error
        else:
            yield key, item


@attrs.define
class PartitionedRead:
    """The partitions of one cycle's full read as its readers go (mutable: one per cycle).

    Args:
        plan: The plan as durable now (kept in the marks, or drawn by :func:`partition_plan`).
        readers: How many partitions are read at once.
        connector: Reads each partition, and tells the source's oldest update when a cut needs
            it.
        source_key: The source, for the log.
        reading: The starts of the partitions whose reader runs.
        last_waits: The last partition was read to its end before every other was finished:
            it is read again once they are.
    """

    plan: PartitionPlan
    readers: int
    connector: Connector
    source_key: str
    reading: set[Start] = attrs.field(factory=set)
    last_waits: bool = False

    def start_readers(self, reads: Reads[Start, Page], marks: Marks) -> None:
        """Start a reader for each partition whose turn it is, while fewer than ``readers`` run.

        The partitions are taken in :func:`~incsync.partitions.to_read` order: the first
        unfinished ones first, the last one after them. A partition cut from one being read
        waits its turn in that order too.

        Args:
            reads: The cycle's reads.
            marks: The source's marks as durable now, for the readers' windows.
        """
        last = len(self.plan.partitions) - 1
        for index in to_read(self.plan):
            if len(self.reading) >= self.readers:
                return
            start = self.plan.partitions[index].start
            if start in self.reading:
                continue
            if index == last and self.last_waits:
                if len(self.plan.unfinished()) > 1:
                    continue
                self.last_waits = False
            self.reading.add(start)
            window = _window(self.plan, index, marks, self.connector.lookback)
            reads.add(start, reader_of(start, telemetry.fetched(self.connector.read(window))))

    def took(self, start: Start, page: Page, limit: Cursor) -> Page:
        """Record how far ``page`` takes its partition; return it with the plan's marks.

        Raises:
            BadResponseError: The page holds a record outside the partition.
        """
        index = index_of(self.plan, start)
        reached = _partition_high(self.plan, index, page, limit)
        self.plan = progressed(self.plan, index, reached, done=False)
        return self.checkpointed(page)

    def ended(self, start: Start) -> Page | None:
        """Record that a partition's reader has no page left; return the page that says so.

        ``None`` when the partition is the last, read to its end before every other was
        finished: it stays unfinished, to be read again once they are. Else the partition is
        finished, durable with the checkpoint of the empty page returned.
        """
        self.reading.discard(start)
        index = index_of(self.plan, start)
        if index == len(self.plan.partitions) - 1 and len(self.plan.unfinished()) > 1:
            self.last_waits = True
            return None
        self.plan = progressed(self.plan, index, None, done=True)
        return self.checkpointed(Page())

    def split(self, start: Start, cap: ResultCapError, limit: Cursor) -> Start:
        """Cut the partition whose reader met ``cap`` in two; return the second half's start.

        Its durable pages progressed it already (a reader's failure comes after its pages). The
        source's oldest update is asked only for a first partition that reached nothing.

        Raises:
            SourceError: The partition cannot be cut (see
                :func:`~incsync.partitions.split_at_cap`), or the source could not be asked.
        """
        self.reading.discard(start)
        index = index_of(self.plan, start)
        partition = self.plan.partitions[index]
        needs_oldest = partition.start is None and partition.reached is None
        self.plan = split_at_cap(
            self.plan,
            index,
            oldest=_oldest(self.connector) if needs_oldest else None,
            latest=latest_bound(limit, self.connector.lookback),
        )
        first, second = self.plan.partitions[index : index + 2]
        logger.info(
            "source %s: the partition of %s met the source's cap on one query's results%s; it "
            "is cut in two, the %s and the %s, and both are read",
            self.source_key,
            range_text(partition.start, partition.end),
            "" if cap.cap is None else f" ({cap.cap:,})",
            range_text(first.start, first.end),
            range_text(second.start, second.end),
        )
        return second.start

    def cursor(self) -> Cursor | None:
        """Return the cursor the read allows: the plan's completed prefix."""
        return completed_prefix(self.plan)

    def checkpointed(self, page: Page) -> Page:
        """Return ``page`` with the plan's marks, so the plan is durable with its checkpoint."""
        return attrs.evolve(page, marks={**page.marks, **plan_marks(self.plan)})


def _oldest(connector: Connector) -> datetime | None:
    """Return the source's oldest update, asked now; ``None`` when it cannot tell."""
    span = connector.time_span() if isinstance(connector, PartitionedConnector) else None
    return None if span is None else span[0]


def _window(plan: PartitionPlan, index: int, marks: Marks, lookback: timedelta) -> Window:
    """Return the window a reader of partition ``index`` reads: from where it resumes."""
    partition = plan.partitions[index]
    start = resume_from(partition, lookback)
    return Window(start, marks=marks, end=partition.end, partition=True)


def _partition_high(plan: PartitionPlan, index: int, page: Page, limit: Cursor) -> Cursor | None:
    """Return how far ``page`` takes partition ``index``; ``None``: no further than before.

    Never past the cycle's horizon (``limit``), as the cursor: a reader resuming the partition
    reads again what may still become visible.

    Raises:
        BadResponseError: The page holds a record outside the partition's window.
    """
    partition = plan.partitions[index]
    high, _ = page_high_water(page.records)
    if high is None:
        return None
    if not partition.holds(high):
        raise BadResponseError(
            f"the source answered a read of the {range_text(partition.start, partition.end)} "
            f"with a record updated at {high.updated_at.isoformat()}: its connector does not "
            "bound a read as it declares (partitions)"
        )
    if high > limit:
        high = limit if partition.holds(limit) else partition.reached
    if high is None or (partition.reached is not None and high <= partition.reached):
        return None
    return high
