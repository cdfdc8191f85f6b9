"""The sync engine: one incremental cycle for one source, plus Reset, Rewind, Cancel and Resume.

The whole algorithm is :meth:`SyncEngine.run_cycle`:

1. Take the source's lease (skip if another worker holds it, or if the source is cancelled,
   stopped or asked us to wait).
2. Ask the connector for the window after the cursor, minus its lookback.
3. For each page: write it to the sink (which drops what was already applied), keep the records set
   aside as malformed, and checkpoint, while the next page is fetched (:mod:`incsync.pipeline`:
   one page ahead, its errors raised only once this page is durable). For ordered sources the
   checkpoint moves the cursor to the page's highest (updated_at, id), never past the cycle's
   start minus the safety lag, on the source's clock (below); unordered sources move it only
   once the cycle completes. Where the store is the sink, the page and its checkpoint are one
   transaction. A cancel, or the host's ``stop``, ends the cycle there. A full read of a connector
   that reads several time partitions at once is split into them (:mod:`incsync.partitions`):
   one reader each, no more at once than the account's concurrent requests allow the cycles of
   that account running together (:func:`~incsync.partitions.readers_per_cycle`), this thread
   the one writer, each page checkpointed with its partition's progress (kept in the marks), the
   cursor at the completed prefix; a partition whose reader meets the source's cap on one query's
   results (:class:`~incsync.errors.ResultCapError`) is cut in two, both halves read in turn
   (:mod:`incsync._partition_read`).
4. When the read completes: after a full re-read, sweep what it did not see; when the counts
   keep disagreeing and the connector can list its ids, reconcile by id
   (:func:`incsync._reconcile_walk.reconcile_by_id`, which a cancel or a stop ends between
   pages as it ends the read); when a count is due (always after a reconcile), compare the
   source's count of live records with the host's (a failed count is logged and skipped); then
   record the last sync and the count.
5. On failure count it, keep the redacted error, and stop the source after too many in a row. A
   source that says it cannot be read incrementally any more (``SourceError.resync_required``:
   its change log expired) is reset instead, with the reason kept as its last error, so the next
   cycle re-reads everything; so is one whose deletes may have expired unread, or whose counts
   keep disagreeing (with ``SyncPolicy.reconcile_drift``) when its connector cannot list ids.
6. However the cycle ends (even by ``KeyboardInterrupt``), it gives its lease up when it can.
   The write that records how it ended (completed, failed, interrupted) also keeps its entry in
   the source's history (:mod:`incsync.history`), in the same transaction.

The source stamps its records by its own clock, so the cursor's horizon is kept on that clock:
the cycle's start moved by the skew the connector measured (:meth:`Connector.clock_skew
<incsync.protocols.Connector.clock_skew>`, see :mod:`incsync.clocks`). The skew is asked again at
every checkpoint, from the answers of this very cycle, not taken from the previous cycle's: a page
is checkpointed only after the answers it came in, so the figure is measured before the cursor
moves, a source's first cycle is bounded as well as the others, no state or store keeps it between
cycles, and a clock set right (or wrong) between two cycles counts from the next answer on. A
source that gives no figure (no HTTP API; no answer yet) is bounded by the host's clock. The
figure measured by the cycle's end is kept in its history entry.

Every decision is a pure function in :mod:`incsync.cursor`, :mod:`incsync.state` or
:mod:`incsync.policy` (what a failure means: :func:`~incsync.policy.decide_failure`); this module
only sequences the I/O. :class:`~incsync.policy.SyncPolicy` is re-exported here.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from datetime import date, datetime, timedelta
from typing import cast

import attrs

from incsync import mapped, telemetry
from incsync._partition_read import (
    PartitionedRead,
    Start,
    cycle_readers,
    handed_over,
    partition_plan,
    reader_of,
)
from incsync._reconcile_walk import IdTally, IdWalk, reconcile_by_id
from incsync.actions import Action, ActionEntry
from incsync.cursor import Cursor, advance, horizon, page_high_water, window_after
from incsync.errors import (
    ConfigurationError,
    GenerationChangedError,
    IncsyncError,
    LeaseLostError,
    ResultCapError,
    SourceError,
)
from incsync.history import CycleEntry, cycle_entry
from incsync.humanize import duration_text, plural
from incsync.mapping import MappedRow, RemapPage
from incsync.mapping._kept import DEFAULT_MAPPED_PAGE
from incsync.partitions import plan_from_marks, plan_marks
from incsync.pipeline import Ended, read_ahead_each
from incsync.policy import (
    FailureDecision,
    SyncPolicy,
    count_due,
    decide_failure,
    deletes_expired,
    drift_to_reconcile,
    positive_count,
)
from incsync.protocols import (
    AtomicPageStore,
    Clock,
    Connector,
    ProgressCallback,
    StateStore,
    TransactionSink,
)
from incsync.records import ApplyResult, Page, Record, RejectedRecord
from incsync.redaction import redact, redacted_traceback
from incsync.results import CycleProgress, CycleResult, Outcome
from incsync.state import (
    Checkpoint,
    CountCheck,
    Lease,
    Phase,
    SkipReason,
    SourceState,
    check_source_key,
    counted,
    skip_reason,
)
from incsync.timestamps import ensure_utc, utc_now

__all__ = ["SyncEngine", "SyncPolicy"]

logger = logging.getLogger("incsync")

_SKIPPED = {
    SkipReason.RUNNING_ELSEWHERE: Outcome.SKIPPED_RUNNING,
    SkipReason.CANCELLED: Outcome.SKIPPED_CANCELLED,
    SkipReason.STOPPED: Outcome.SKIPPED_STOPPED,
    SkipReason.WAITING: Outcome.SKIPPED_WAITING,
}


@attrs.define
class _Tally:
    """Counters of the running cycle (mutable on purpose: one per cycle, never shared)."""

    pages: int = 0
    fetched: int = 0
    applied: int = 0
    already_applied: int = 0
    rejected: int = 0
    swept: int = 0
    by_id: IdTally = attrs.field(factory=IdTally)
    total: int | None = None
    counted: CountCheck | None = None

    def wrote(self, page: Page, applied: ApplyResult) -> None:
        """Count a written page's records: applied, already applied, set aside."""
        self.applied += applied.applied
        self.already_applied += len(page.records) - applied.applied - len(applied.rejected)
        self.rejected += len(page.rejected) + len(applied.rejected)


_Ending = Callable[[Outcome], CycleEntry]
"""Returns the history entry of the running cycle, ending now with the given outcome."""


def _interruption(current: SourceState, stop: threading.Event | None) -> Outcome | None:
    """Return how a cycle ends at a durable page, or ``None`` if it reads on.

    A cancel wins over a stop: it says more (the source stays cancelled).
    """
    if current.phase is Phase.CANCELLED:
        return Outcome.INTERRUPTED_CANCEL
    if stop is not None and stop.is_set():
        return Outcome.INTERRUPTED_STOP
    return None


def _log_traceback(source_key: str, error: Exception, secrets: Sequence[str]) -> None:
    """Log the traceback of a failure that is not an incsync error, redacted line by line.

    Such a failure is not one a connector translated but a bug, most often in a host's own
    connector or sink, which one line would not locate. The exception's message is redacted like
    every error text.
    """
    logger.warning(
        "source %s: %s is not an incsync error, so its traceback follows:\n%s",
        source_key,
        type(error).__name__,
        redacted_traceback(error, secrets),
    )


# Each takes the source's key and the actor.
_ACTION_LOG_TEXT = {
    Action.RESET: "source %s reset by %s: the next cycle re-reads everything",
    Action.CANCEL: "source %s cancelled by %s",
    Action.RESUME: "source %s resumed by %s",
}


class SyncEngine:
    """Runs incremental cycles for sources over a state store and a transaction sink.

    One engine may serve many sources and threads; concurrency per source is settled by the
    store's leases, so any number of engines in any number of processes may share one store.

    Args:
        store: Where source states live.
        sink: Where records are applied. Omit it when ``store`` is also the sink (the built-in
            stores are); a page and its checkpoint are then written in one transaction.
        policy: Leases, safety lag and failure thresholds.
        clock: Returns the current aware time; injectable for tests.
        holder: A name for this worker in leases; defaults to host, process and thread.

    Raises:
        ConfigurationError: No sink was given and the store is not one.
    """

    def __init__(
        self,
        store: StateStore,
        sink: TransactionSink | None = None,
        *,
        policy: SyncPolicy | None = None,
        clock: Clock = utc_now,
        holder: str | None = None,
    ) -> None:
        sink_is_store = sink is None or sink is cast("object", store)
        if sink is None:
            if not isinstance(store, TransactionSink):
                raise ConfigurationError(
                    f"{type(store).__name__} is not a TransactionSink; pass sink=... as well"
                )
            sink = store
        self.store = store
        self.sink = sink
        self.policy = policy or SyncPolicy()
        self._clock = clock
        self._holder = holder
        self._atomic: AtomicPageStore | None = (
            store if sink_is_store and isinstance(store, AtomicPageStore) else None
        )

    # -- commands ----------------------------------------------------------------------------

    # Every command on one source asks check_source_key first, so a key the scheduler refuses
    # (empty, blank) is refused here too, whatever the store, before anything is read.

    def state(self, source_key: str) -> SourceState:
        """Return the source's current state."""
        return self.store.load(check_source_key(source_key))

    def states(self) -> Sequence[SourceState]:
        """Return the state of every known source, ordered by key."""
        return self.store.list_states()

    def rejected(self, source_key: str) -> Sequence[RejectedRecord]:
        """Return the records set aside for the source, with their reasons."""
        return self.store.list_rejected(check_source_key(source_key))

    def history(self, source_key: str, limit: int | None = None) -> Sequence[CycleEntry]:
        """Return the source's cycles the store keeps, newest first (see :mod:`incsync.history`).

        Args:
            source_key: The source.
            limit: At most this many (the newest); ``None`` for every one kept.

        Raises:
            ConfigurationError: ``source_key`` cannot name a source, or ``limit`` is not an
                integer of at least 1 or ``None``.
        """
        return self.store.history(check_source_key(source_key), limit)

    def _act(self, source_key: str, action: Action, actor: str | None) -> SourceState:
        """Make ``action`` and keep its record (who, what, when) with it, in one transaction."""
        entry = ActionEntry(
            source_key=check_source_key(source_key),
            action=action,
            actor=self._lease_holder() if actor is None else actor,
            at=self._now(),
        )
        # An action runs no cycle: its log line names the source, and no cycle.
        with telemetry.acting_on(source_key):
            state = self.store.act(entry)
            logger.info(_ACTION_LOG_TEXT[action], source_key, entry.actor)
        return state

    def actions(self, source_key: str, limit: int | None = None) -> Sequence[ActionEntry]:
        """Return the resets, cancels and resumes made on the source, newest first.

        Args:
            source_key: The source.
            limit: At most this many (the newest); ``None`` for every one kept.

        Raises:
            ConfigurationError: ``source_key`` cannot name a source, or ``limit`` is not an
                integer of at least 1 or ``None``.
        """
        return self.store.actions(check_source_key(source_key), limit)

    def reset(self, source_key: str, *, actor: str | None = None) -> SourceState:
        """Make the next cycle re-read and re-apply every record; deletes no transaction.

        A cycle running now has its later checkpoints refused and stops. The reset is recorded
        (see :meth:`actions`).

        Args:
            source_key: The source.
            actor: Who asks, as the record names them; this process (``host:pid:thread``) when
                ``None``.

        Raises:
            ConfigurationError: ``source_key`` cannot name a source, or ``actor`` is empty, longer
                than 200 characters or holds control characters.
        """
        return self._act(source_key, Action.RESET, actor)

    def rewind(self, source_key: str, since: datetime) -> SourceState:
        """Make the next cycle read again from ``since``, without a reset; deletes nothing.

        The cursor (and every mark) later than ``since`` moves back to it; the next cycle
        re-applies what it reads, and sweeps nothing. A cycle running now has its later
        checkpoints refused and stops, so it cannot move the cursor past ``since`` again. See
        :func:`incsync.state.rewind`.

        Raises:
            ConfigurationError: ``source_key`` cannot name a source, or a reset's full read has
                not completed yet.
            NaiveDatetimeError: ``since`` has no timezone.
        """
        check_source_key(source_key)
        since = ensure_utc(since, "since")
        with telemetry.acting_on(source_key):
            state = self.store.rewind(source_key, since)
            logger.info(
                "source %s rewound to %s: the next cycle reads from %s",
                source_key,
                since.isoformat(),
                "the beginning" if state.cursor is None else state.cursor.updated_at.isoformat(),
            )
        return state

    def cancel(self, source_key: str, *, actor: str | None = None) -> SourceState:
        """Stop syncing the source until it is resumed or reset; deletes no transaction.

        A cycle running now stops after its current page is durable. The cancel is recorded, with
        ``actor`` as for :meth:`reset`.
        """
        return self._act(source_key, Action.CANCEL, actor)

    def resume(self, source_key: str, *, actor: str | None = None) -> SourceState:
        """Let a cancelled or stopped source run again.

        The resume is recorded, with ``actor`` as for :meth:`reset`.
        """
        return self._act(source_key, Action.RESUME, actor)

    # -- mapped transactions -----------------------------------------------------------------

    def mapped_transactions(
        self,
        source_key: str,
        *,
        since: date | None = None,
        until: date | None = None,
        page_size: int = DEFAULT_MAPPED_PAGE,
        include_voided: bool = True,
    ) -> Iterator[MappedRow]:
        """Yield the source's mapped transactions dated in ``[since, until)``, page by page.

        See :func:`incsync.mapped.mapped_transactions`.

        Raises:
            ConfigurationError: The sink keeps no mapped transactions, a bound is not a date,
                ``until`` is before ``since``, or ``page_size`` is not at least 1.
        """
        return mapped.mapped_transactions(
            mapped.mapped_store(self.sink),
            source_key,
            since=since,
            until=until,
            page_size=page_size,
            include_voided=include_voided,
        )

    def remap(
        self,
        source_key: str,
        *,
        page_size: int = DEFAULT_MAPPED_PAGE,
        on_page: Callable[[RemapPage], None] | None = None,
    ) -> mapped.RemapResult:
        """Recompute the source's mapped rows from its stored records; the source is not asked.

        Run it after the source's mapping changed (any change is a new version). It resumes
        after a crash; see :func:`incsync.mapped.remap`.

        Raises:
            ConfigurationError: The sink keeps no mapped transactions, the source has no
                mapping, or ``page_size`` is not at least 1.
            StoreError: A page could not be written; the pages before it stay.
        """
        check_source_key(source_key)
        return mapped.remap(
            mapped.mapped_store(self.sink), source_key, page_size=page_size, on_page=on_page
        )

    # -- the cycle ---------------------------------------------------------------------------

    def _now(self) -> datetime:
        return ensure_utc(self._clock(), "clock()")

    def _lease_holder(self) -> str:
        if self._holder is not None:
            return self._holder
        return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"

    def run_cycle(
        self,
        source_key: str,
        connector: Connector,
        *,
        on_progress: ProgressCallback | None = None,
        stop: threading.Event | None = None,
        cycles_per_account: int = 1,
    ) -> CycleResult:
        """Run one incremental cycle of ``source_key`` through ``connector``.

        Source failures never raise: they are recorded in the source's state and reported in the
        result. A store that fails while a page is written fails the cycle the same way; only a
        store that cannot record the outcome at all raises. Whatever escapes (that store error, a
        ``KeyboardInterrupt``) first gives the lease up, so the source is not left locked.

        Args:
            source_key: The host's name for the source.
            connector: Reads the source.
            on_progress: Called after every durable page.
            stop: Set it (from any thread: a signal handler, a shutdown hook) to end the cycle
                once the page in flight (or the first) is durable: it returns ``INTERRUPTED_STOP``
                with its lease released, and the source's next cycle carries on from that
                checkpoint. One event may stop any number of cycles.
            cycles_per_account: How many cycles of the connector's vendor account may run at
                once (the scheduler's ``per_account_limit``). They share the concurrent requests
                the vendor allows one account (:attr:`PartitionedConnector.concurrent_requests
                <incsync.protocols.PartitionedConnector.concurrent_requests>`), so a full read
                in partitions reads fewer of them at once when several cycles may run (see
                :func:`incsync.partitions.readers_per_cycle`).

        Returns:
            What the cycle did.

        Raises:
            ConfigurationError: ``source_key`` cannot name a source (empty or blank), or
                ``cycles_per_account`` is not a positive integer.
            StoreError: The state store or sink failed while recording the outcome.
        """
        check_source_key(source_key)
        positive_count.check("cycles_per_account", cycles_per_account)
        # The cycle's id, its log context and its span (see incsync.telemetry).
        with telemetry.cycle(source_key, connector) as cycle:
            readers = cycle_readers(connector, cycles_per_account)
            return cycle.ended(
                self._cycle(source_key, connector, cycle, on_progress, stop, readers)
            )

    def _cycle(
        self,
        source_key: str,
        connector: Connector,
        cycle: telemetry.CycleTelemetry,
        on_progress: ProgressCallback | None,
        stop: threading.Event | None,
        readers: int,
    ) -> CycleResult:
        """Run the cycle :meth:`run_cycle` describes, reading ``readers`` partitions at once."""
        started = self._now()
        clock_start = time.perf_counter()
        lease = self.store.acquire_lease(
            source_key, self._lease_holder(), started, self.policy.lease_ttl
        )
        if lease is None:
            reason = skip_reason(self.store.load(source_key), started)
            outcome = _SKIPPED[reason or SkipReason.RUNNING_ELSEWHERE]
            logger.info("source %s: cycle %s", source_key, outcome.value)
            return CycleResult(
                source_key=source_key, outcome=outcome, started_at=started, cycle_id=cycle.cycle_id
            )

        try:
            state = self.store.load(source_key)
        except BaseException:
            self._give_up_lease(source_key, lease)
            raise
        cycle.generation(state.generation)
        tally = _Tally()

        def result(outcome: Outcome, cursor: Cursor | None, error: Exception | None) -> CycleResult:
            message = None if error is None else redact(str(error), connector.secrets())
            return CycleResult(
                source_key=source_key,
                outcome=outcome,
                fetched=tally.fetched,
                applied=tally.applied,
                already_applied=tally.already_applied,
                rejected=tally.rejected,
                swept=tally.swept,
                reconcile_fetched=tally.by_id.fetched,
                reconcile_tombstoned=tally.by_id.tombstoned,
                counted=tally.counted,
                pages=tally.pages,
                cursor_before=state.cursor,
                cursor_after=cursor,
                started_at=started,
                duration=timedelta(seconds=time.perf_counter() - clock_start),
                error=message,
                error_class=None if error is None else type(error).__name__,
                cycle_id=cycle.cycle_id,
            )

        def ending(
            outcome: Outcome, error: Exception | None = None, retry_at: datetime | None = None
        ) -> CycleEntry:
            # Made from the result, so the history says what run_cycle reports.
            return cycle_entry(
                result(outcome, None, error),
                generation=state.generation,
                worker=lease.holder,
                ended=self._now(),
                retry_at=retry_at,
                clock_skew=connector.clock_skew(),
            )

        try:
            outcome, cursor = self._read_and_apply(
                state,
                connector,
                lease,
                started,
                tally,
                on_progress,
                clock_start,
                stop,
                ending,
                readers,
            )
        except GenerationChangedError as error:
            self._record_interruption(ending(Outcome.INTERRUPTED_RESET, error), lease)
            logger.info("source %s: cycle stopped by a reset or a rewind", source_key)
            return result(Outcome.INTERRUPTED_RESET, self.store.load(source_key).cursor, error)
        except Exception as error:  # noqa: BLE001 - any failure of a source must be recorded, not raised
            # A lost lease lands here too: recording it is refused (the new holder's outcome is
            # the one that counts) unless this worker still holds the lease, which happens only
            # when a sink's fence refuses its token for good (StaleWriteError), and must show.
            try:
                decision = decide_failure(error, self.policy, self._now(), connector.secrets())
                if decision.reset:
                    entry = ending(Outcome.INTERRUPTED_RESET, error, decision.retry_at)
                    reset = self._reset_for_resync(state, lease, decision, entry)
                    return result(Outcome.INTERRUPTED_RESET, reset.cursor, error)
                entry = ending(Outcome.FAILED, error, decision.retry_at)
                failed = self._record_failure(state, lease, decision, entry)
            except BaseException:
                # The failure could not be recorded (a store error, or an exception the connector
                # built wrongly); the caller gets that error, and the source is not left looking
                # "running" until the lease expires.
                self._give_up_lease(source_key, lease)
                raise
            if not isinstance(error, IncsyncError):
                _log_traceback(source_key, error, connector.secrets())
            return result(Outcome.FAILED, failed.cursor, error)
        except BaseException:
            # KeyboardInterrupt, SystemExit: the cycle is abandoned where it stands (its durable
            # pages keep their checkpoints), and its lease is given up rather than left to expire.
            self._give_up_lease(source_key, lease)
            raise
        finished = result(outcome, cursor, None)
        logger.info(
            "source %s: cycle %s, %d fetched, %d applied, %d already applied, %d set aside, "
            "%d swept, %s in %.3fs",
            source_key,
            outcome.value,
            finished.fetched,
            finished.applied,
            finished.already_applied,
            finished.rejected,
            finished.swept,
            plural(finished.pages, "page"),
            finished.duration.total_seconds(),
        )
        return finished

    def _record_interruption(self, entry: CycleEntry, lease: Lease) -> None:
        """Record a cycle that ended early, with its entry, and give its lease up.

        A lease taken over meanwhile records nothing: the new holder's cycle is the one recorded.
        """
        try:
            self.store.interrupt_cycle(entry.source_key, lease, entry)
        except LeaseLostError:
            logger.info("source %s: lease taken over; this cycle is not recorded", entry.source_key)

    def _give_up_lease(self, source_key: str, lease: Lease) -> None:
        """Release the lease of a cycle that is being abandoned, if the store still can."""
        try:
            self.store.release_lease(source_key, lease)
        except Exception:  # noqa: BLE001 - the error already on its way out matters more
            logger.warning("source %s: lease not released; it expires by itself", source_key)

    def _read_and_apply(
        self,
        state: SourceState,
        connector: Connector,
        lease: Lease,
        started: datetime,
        tally: _Tally,
        on_progress: ProgressCallback | None,
        clock_start: float,
        stop: threading.Event | None,
        ending: _Ending,
        readers: int,
    ) -> tuple[Outcome, Cursor | None]:
        key, generation = state.key, state.generation
        resync = self._resync_reason(state, connector, started)
        if resync is not None:
            raise SourceError(resync, resync_required=True)
        lag = self.policy.safety_lag
        ordered = connector.ordered
        cursor = state.cursor
        unordered_high: Cursor | None = None
        limit = horizon(started, lag, connector.clock_skew())
        plan = partition_plan(state, connector, limit, readers)
        current = state
        if plan is not None and plan_from_marks(state.marks) is None:
            # The plan is durable before any partition is read, so a crash resumes it.
            current = self._write(state, Page(marks=plan_marks(plan)), lease, (None, None), tally)
        # The next page is fetched while this one is written, one reader per partition of a
        # full read (else one), at most ``readers`` at once, the others waiting their turn: see
        # incsync.pipeline and incsync._partition_read. Each fetch is timed where it runs, in its
        # reading thread, so its latency is the source's.
        first: list[tuple[Start, Iterable[Page]]] = []
        partitioned: PartitionedRead | None = None
        if plan is None:
            window = window_after(cursor, connector.lookback, state.marks)
            first.append((None, reader_of(None, telemetry.fetched(connector.read(window)))))
        else:
            partitioned = PartitionedRead(plan, readers, connector, key)
        with read_ahead_each(first) as reads:
            if partitioned is not None:
                partitioned.start_readers(reads, current.marks)
            totals: dict[Start, int] = {}
            for reader, item in handed_over(reads):
                limit = horizon(started, lag, connector.clock_skew())
                if partitioned is None:
                    if isinstance(item, ResultCapError):
                        raise item  # a window read whole cannot be cut: the cycle fails
                    if isinstance(item, Ended):
                        continue
                    page = item
                elif isinstance(item, ResultCapError):
                    # Its pages are durable; its two halves are read as any partition is.
                    half = partitioned.split(reader, item, limit)
                    if reader in totals:  # the half's records are in the total counted already
                        totals[half] = 0
                    partitioned.start_readers(reads, current.marks)
                    continue
                elif isinstance(item, Ended):
                    # A partition's end is durable with the checkpoint of an empty page.
                    ended = partitioned.ended(reader)
                    if ended is None:  # the last partition, read again once the others end
                        partitioned.start_readers(reads, current.marks)
                        continue
                    page = ended
                else:
                    page = partitioned.took(reader, item, limit)
                high, newest = page_high_water(page.records)
                if partitioned is not None:
                    cursor = advance(cursor, partitioned.cursor(), limit)
                elif ordered:
                    cursor = advance(cursor, high, limit)
                elif high is not None and (unordered_high is None or high > unordered_high):
                    unordered_high = high
                # A partition's end was fetched by no request: no page span of its own.
                with nullcontext() if isinstance(item, Ended) else telemetry.writing(item):
                    current = self._write(state, page, lease, (cursor, newest), tally)
                # A page is counted once durable; a partition's end is no page.
                tally.pages += not isinstance(item, Ended)
                tally.fetched += len(page.records) + len(page.rejected)
                if page.total is not None:
                    # A page without one (a delete channel's, read after the rest) changes nothing;
                    # the read's total is its partitions' first ones, added up.
                    totals.setdefault(reader, page.total)
                    tally.total = sum(totals.values())
                telemetry.written(tally.applied, tally.rejected)
                if on_progress is not None:
                    self._report(on_progress, key, tally, clock_start)
                interrupted = self._ending_at(current, stop, lease, ending)
                if interrupted is not None:
                    return interrupted, current.cursor
                if partitioned is not None:
                    partitioned.start_readers(reads, current.marks)  # a finished one's turn
        final = advance(cursor, unordered_high, horizon(started, lag, connector.clock_skew()))
        if state.reset_pending:
            # The whole source was read under this generation: what it did not see is gone.
            tally.swept = self.sink.sweep(key, generation, lease.token, self._set_aside_ids(key))
        # drift_to_reconcile is the one rule (it excludes a source already re-read whole); the
        # connector only says how: by id here, else by the re-read _resync_reason asks for.
        reconciled = connector.lists_ids and drift_to_reconcile(state, self.policy)
        if reconciled:
            # Written with the read's cursor: fetched by id, the records move no cursor.
            stopped = reconcile_by_id(
                IdWalk(key, generation, lease.token, frozenset(self._set_aside_ids(key))),
                connector,
                self.sink,
                lambda page: self._write(
                    state, page, lease, (cursor, page_high_water(page.records)[1]), tally
                ),
                lambda current: self._ending_at(current, stop, lease, ending),
                tally.by_id,
            )
            if stopped is not None:
                return stopped[0], stopped[1].cursor
        tally.counted = self._count_check(state, connector, reconciled=reconciled)
        entry = ending(Outcome.COMPLETED)
        done = self.store.complete_cycle(
            key,
            lease,
            generation,
            Checkpoint(cursor=final, count_check=tally.counted),
            entry.ended,
            tally.rejected,
            entry,
        )
        return Outcome.COMPLETED, done.cursor

    def _resync_reason(
        self, state: SourceState, connector: Connector, started: datetime
    ) -> str | None:
        """Say why the source must be re-read whole before it is read incrementally again."""
        retention = connector.delete_retention
        # Both times are the host's, so the source's skew cancels out: the last completed read
        # reached the source's deletes up to its start on the source's clock, which is as far
        # behind the source's now as the host's last_sync is behind the host's.
        if retention is not None and deletes_expired(state, retention, started):
            return (
                f"the source keeps deletes for {duration_text(retention)} and was "
                f"last read completely at {state.last_sync:%Y-%m-%d %H:%M} UTC: deletes since may "
                "be gone, so it is re-read whole and what is no longer there becomes a tombstone"
            )
        check = state.count_check
        if check is not None and not connector.lists_ids and drift_to_reconcile(state, self.policy):
            return (
                "the last two counts of live records found the host out of step with the source "
                f"(drift {check.previous_drift:+,}, then {check.drift:+,}): it is re-read whole, "
                "to re-apply what is missing and sweep what is extra"
            )
        return None

    def _set_aside_ids(self, key: str) -> set[str]:
        """Return the ids of the source's records set aside: neither swept nor fetched again."""
        return {r.record_id for r in self.store.list_rejected(key) if r.record_id is not None}

    def _count_check(
        self, state: SourceState, connector: Connector, *, reconciled: bool = False
    ) -> CountCheck | None:
        """Count the source's and the host's live records when a count is due.

        A count is always due after an id reconcile, which then counts as a full read: the host
        should hold what the source does, and a drift left is not one another reconcile removes.
        A count is advice about data already durable: whatever fails while counting is logged
        and the count skipped, and the cycle completes all the same.
        """
        at = self._now()
        if not reconciled and not count_due(state, self.policy, at):
            return None
        key = state.key
        try:
            at_source = connector.count_live()
            if at_source is None:  # the source cannot count cheaply
                return None
            check = counted(
                state.count_check,
                at_source,
                self.sink.count_live(key),
                at,
                full_read=state.reads_whole or reconciled,
            )
        except Exception as error:  # noqa: BLE001 - a failed count must not fail a durable cycle
            logger.warning(
                "source %s: the count of live records was skipped: %s: %s",
                key,
                type(error).__name__,
                redact(str(error), connector.secrets()),
            )
            if not isinstance(error, IncsyncError):
                _log_traceback(key, error, connector.secrets())
            return None
        if check.drift:
            logger.warning(
                "source %s: the source has %s, the host %d (drift %+d)",
                key,
                plural(check.source, "live record"),
                check.host,
                check.drift,
            )
        return check

    def _write(
        self,
        state: SourceState,
        page: Page,
        lease: Lease,
        progress: tuple[Cursor | None, datetime | None],
        tally: _Tally,
    ) -> SourceState:
        """Write a page durably with its checkpoint, count it, and return the state then.

        The one page write of a cycle, the read's pages and an id reconcile's alike; the
        checkpoint keeps ``progress``: the cursor the page allows and its newest change.
        """
        cursor, newest = progress
        checkpoint = Checkpoint(
            cursor=cursor, last_change=newest, rejected=page.rejected, marks=page.marks
        )
        applied, current = self._commit(
            state.key, page.records, lease, state.generation, checkpoint
        )
        tally.wrote(page, applied)
        return current

    def _ending_at(
        self, current: SourceState, stop: threading.Event | None, lease: Lease, ending: _Ending
    ) -> Outcome | None:
        """Return how the cycle ends at a durable point, recording it; ``None``: it goes on."""
        interrupted = _interruption(current, stop)
        if interrupted is not None:
            self._record_interruption(ending(interrupted), lease)
            logger.info("source %s: cycle %s after a durable page", current.key, interrupted.value)
        return interrupted

    def _commit(
        self,
        key: str,
        records: Sequence[Record],
        lease: Lease,
        generation: int,
        checkpoint: Checkpoint,
    ) -> tuple[ApplyResult, SourceState]:
        now, ttl = self._now(), self.policy.lease_ttl
        if self._atomic is not None:
            return self._atomic.commit_page(key, records, lease, generation, checkpoint, now, ttl)
        applied = (
            self.sink.apply(key, records, generation, lease.token) if records else ApplyResult(0)
        )
        if applied.rejected:
            checkpoint = attrs.evolve(
                checkpoint, rejected=[*checkpoint.rejected, *applied.rejected]
            )
        return applied, self.store.save_checkpoint(key, lease, generation, checkpoint, now, ttl)

    @staticmethod
    def _report(on_progress: ProgressCallback, key: str, tally: _Tally, clock_start: float) -> None:
        progress = CycleProgress(
            source_key=key,
            pages=tally.pages,
            fetched=tally.fetched,
            applied=tally.applied,
            elapsed=timedelta(seconds=time.perf_counter() - clock_start),
            total=tally.total,
        )
        try:
            on_progress(progress)
        except Exception:  # a broken progress display must not fail a sync
            logger.exception("source %s: progress callback failed", key)

    def _reset_for_resync(
        self, state: SourceState, lease: Lease, decision: FailureDecision, entry: CycleEntry
    ) -> SourceState:
        """Reset a source whose changes can no longer be read from its cursor; keep the reason.

        The reason is recorded as the last error of the new generation, with ``retry_at`` now: the
        source is not broken and may run again at once, and the failure does not count towards
        stopping it. The host sees the source resetting, and why, until the re-read completes.
        """
        logger.warning(
            "source %s: %s; the source is reset and the next cycle re-reads everything",
            state.key,
            decision.error.message,
        )
        reset = self.store.reset(state.key)
        try:
            return self.store.fail_cycle(
                state.key,
                lease,
                reset.generation,
                decision.error,
                decision.stop_after,
                decision.retry_at,
                entry,
            )
        except LeaseLostError:
            return self.store.load(state.key)

    def _record_failure(
        self, state: SourceState, lease: Lease, decision: FailureDecision, entry: CycleEntry
    ) -> SourceState:
        info = decision.error
        # A source that asked to wait (a rate limit, a quota) is waiting, not broken: routine.
        logger.log(
            logging.WARNING if decision.retry_at is None else logging.INFO,
            "source %s: cycle failed: %s: %s",
            state.key,
            info.error_class,
            info.message,
        )
        try:
            failed = self.store.fail_cycle(
                state.key,
                lease,
                state.generation,
                info,
                decision.stop_after,
                decision.retry_at,
                entry,
            )
        except LeaseLostError:
            return self.store.load(state.key)
        if failed.phase is Phase.STOPPED:
            logger.error(
                "source %s stopped after %s; resume or reset it once the cause is fixed",
                state.key,
                plural(failed.consecutive_failures, "failed cycle"),
            )
        return failed
