"""Model-based test of the engine: a simulated source, cycles, resets, cancels and crashes.

A Hypothesis state machine mutates a source (creates, updates, deletes, bursts sharing one
timestamp across page boundaries, records that appear late inside the lookback) and interleaves
cycles, resets, cancels/resumes, failures and crashes at every step of a cycle (inside a page,
after the sink write and before the checkpoint, inside the checkpoint), and a second worker that
stalls past its lease between reading a page and writing it. After every step it checks what must
always hold; at the end, one clean cycle must leave the sink exactly equal to the source. It runs
with the store as its own sink (in memory, SQLite) and with a separate sink (in memory, and two
SQLite files).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from incsync import (
    ApplyResult,
    Checkpoint,
    Cursor,
    CycleResult,
    Lease,
    Outcome,
    Phase,
    Record,
    SourceState,
    SQLiteStore,
    SyncEngine,
    SyncPolicy,
    Transaction,
    TransientSourceError,
)
from incsync.connectors import InMemoryConnector, InMemorySource
from incsync.connectors.memory import iso_timestamp
from incsync.policy import deletes_expired
from incsync.records import SWEPT
from incsync.testing import InMemoryStore, ManualClock
from tests.delegating import DelegatingSink, DelegatingStore
from tests.helpers import StallingSink, StallingStore, Store, transactions_by_id

START = datetime(2026, 3, 29, 0, 59, 0, tzinfo=timezone.utc)
LOOKBACK = timedelta(seconds=60)
POLICY = SyncPolicy(
    lease_ttl=timedelta(minutes=10),
    safety_lag=timedelta(seconds=30),
    max_consecutive_failures=3,
)
PAGE_SIZE = 3
# Short enough that waiting out leases and ticking opens gaps past it: those cycles re-read whole.
DELETE_RETENTION = timedelta(minutes=20)

# Where a fault can strike inside a cycle.
FAULT_POINTS = (
    "inside_page",  # while fetching a page from the source
    "after_sink_write",  # the sink has the page, the checkpoint is not written
    "checkpoint_before_write",  # inside the checkpoint, before it is stored
    "checkpoint_after_write",  # inside the checkpoint, stored, before the caller hears of it
)


class SimulatedCrash(BaseException):
    """The process dies here: nothing after it runs, nothing is released."""


class FaultPlan:
    """Arms one fault: at the ``countdown``-th pass through ``point``, raise ``error``."""

    def __init__(self) -> None:
        self.point: str | None = None
        self.countdown = 0
        self.error: BaseException | None = None
        self.dead = False  # a SimulatedCrash struck: the process runs nothing more

    def arm(self, point: str, countdown: int, error: BaseException) -> None:
        self.point, self.countdown, self.error = point, countdown, error

    def disarm(self) -> None:
        self.point, self.error, self.dead = None, None, False

    def passing(self, point: str) -> None:
        if self.point != point or self.error is None:
            return
        if self.countdown > 0:
            self.countdown -= 1
            return
        error = self.error
        self.disarm()
        # A dead process runs nothing more: not even the engine's release of its lease.
        self.dead = isinstance(error, SimulatedCrash)
        raise error


class FaultyStore(DelegatingStore):
    """Wraps a store (and sink) and strikes the fault plan around checkpoints and writes."""

    inner: Store

    def __init__(self, inner: Store, plan: FaultPlan) -> None:
        self.inner = inner
        self.plan = plan

    def release_lease(self, source_key: str, lease: Lease) -> None:
        if self.plan.dead:
            raise SimulatedCrash  # the process died: its lease stays until it expires
        self.inner.release_lease(source_key, lease)

    def save_checkpoint(
        self,
        source_key: str,
        lease: Lease,
        generation: int,
        checkpoint: Checkpoint,
        now: datetime,
        ttl: timedelta,
    ) -> SourceState:
        self.plan.passing("checkpoint_before_write")
        saved = self.inner.save_checkpoint(source_key, lease, generation, checkpoint, now, ttl)
        self.plan.passing("checkpoint_after_write")
        return saved


class FaultyAtomicStore(FaultyStore, DelegatingSink):
    """A faulty store that is also the sink and commits pages atomically."""

    inner: Store

    def commit_page(
        self,
        source_key: str,
        records: Sequence[Record],
        lease: Lease,
        generation: int,
        checkpoint: Checkpoint,
        now: datetime,
        ttl: timedelta,
    ) -> tuple[ApplyResult, SourceState]:
        self.plan.passing("checkpoint_before_write")
        result = self.inner.commit_page(
            source_key, records, lease, generation, checkpoint, now, ttl
        )
        self.plan.passing("checkpoint_after_write")
        return result


class FaultySink(DelegatingSink):
    """A separate sink that can die right after a page is written."""

    def __init__(self, inner: Store, plan: FaultPlan) -> None:
        self.inner = inner
        self.plan = plan

    def apply(
        self, source_key: str, records: Sequence[Record], generation: int, token: int
    ) -> ApplyResult:
        result = self.inner.apply(source_key, records, generation, token)
        self.plan.passing("after_sink_write")
        return result


KEY = "acme/invoices"


class SyncMachine(RuleBasedStateMachine):
    """The source, the engine and what the engine must guarantee about them."""

    ordered = True
    store_kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(START)
        self.plan = FaultPlan()
        self.source = InMemorySource()
        self.next_id = 1
        self.tmp: str | None = None
        self.sqlite: list[SQLiteStore] = []
        self.sink_store: Store
        self.state_store: Store
        if self.separate_sink:
            self.state_store = self._store("state.db")
            self.sink_store = self._store("sink.db")
            self.engine = SyncEngine(
                FaultyStore(self.state_store, self.plan),
                FaultySink(self.sink_store, self.plan),
                policy=POLICY,
                clock=self.clock,
            )
        else:
            self.state_store = self.sink_store = self._store("model.db")
            self.engine = SyncEngine(
                FaultyAtomicStore(self.state_store, self.plan),
                policy=POLICY,
                clock=self.clock,
            )
        self.connector = InMemoryConnector(
            self.source,
            page_size=PAGE_SIZE,
            ordered=self.ordered,
            lookback=LOOKBACK,
            before_page=self._before_page,
            delete_retention=DELETE_RETENTION,
        )
        self.during_cycle: list[tuple[int, str]] = []  # (page number, action)
        self.previous_cursor: Cursor | None = None
        self.previous_last_change: datetime | None = None
        self.reset_since_check = False
        self.seen_versions: dict[str, datetime] = {}
        self.purged: dict[str, datetime] = {}  # record id -> its last stamp at the source

    def _store(self, name: str) -> Store:
        if not self.store_kind.startswith("sqlite"):
            return InMemoryStore()
        if self.tmp is None:
            self.tmp = tempfile.mkdtemp(prefix="incsync-model-")
        self.sqlite.append(SQLiteStore(Path(self.tmp) / name))
        return self.sqlite[-1]

    # -- the simulated source ------------------------------------------------------------------

    def _now_seconds(self) -> datetime:
        return self.clock().replace(microsecond=0)  # second precision: ties are common

    def _create(self, at: datetime) -> None:
        record_id = f"r{self.next_id:05d}"
        self.next_id += 1
        self.source.put({"id": record_id, "updated_at": iso_timestamp(at), "value": 0})

    @rule(count=st.integers(min_value=1, max_value=8))
    def create_burst(self, count: int) -> None:
        """Create records sharing one timestamp (a burst may span several pages)."""
        at = self._now_seconds()
        for _ in range(count):
            self._create(at)

    @precondition(lambda self: len(self.source) > 0)
    @rule(data=st.data())
    def update(self, data: st.DataObject) -> None:
        """Update an existing record now."""
        record_id = data.draw(st.sampled_from(sorted(self.source.ids())))
        value = data.draw(st.integers(min_value=1, max_value=10**6))
        self.source.update(record_id, self._now_seconds(), value=value)

    @precondition(lambda self: len(self.source) > 0)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        """Delete (void) a record: it must become a tombstone, never disappear."""
        record_id = data.draw(st.sampled_from(sorted(self.source.ids())))
        self.source.delete(record_id, self._now_seconds())

    @precondition(lambda self: len(self.source) > 0)
    @rule(data=st.data())
    def purge(self, data: st.DataObject) -> None:
        """A record vanishes with no delete anyone can read (past retention, or never published).

        Only the sweep after a full re-read can notice it.
        """
        record_id = data.draw(st.sampled_from(sorted(self.source.ids())))
        self.purged[record_id] = _updated_at(self.source.snapshot()[record_id])
        self.source.purge(record_id)

    @rule(delay=st.integers(min_value=1, max_value=int(LOOKBACK.total_seconds())))
    def late_record(self, delay: int) -> None:
        """A record appears now, stamped in the past inside the lookback (a late commit)."""
        self._create(self._now_seconds() - timedelta(seconds=delay))

    @rule(seconds=st.integers(min_value=0, max_value=400))
    def tick(self, seconds: int) -> None:
        """Time passes."""
        self.clock.advance(timedelta(seconds=seconds))

    # -- what happens during a cycle ---------------------------------------------------------

    def _before_page(self, number: int) -> None:
        self.plan.passing("inside_page")
        for page, action in list(self.during_cycle):
            if page != number:
                continue
            self.during_cycle.remove((page, action))
            self.clock.advance(timedelta(seconds=1))
            if action == "mutate":
                self._create(self._now_seconds())
                ids = sorted(self.source.ids())
                self.source.update(ids[len(ids) // 2], self._now_seconds(), value=-number)
            elif action == "reset":
                self.engine.reset(KEY)
                self.reset_since_check = True
            elif action == "cancel":
                self.engine.cancel(KEY)

    @property
    def separate_sink(self) -> bool:
        return self.store_kind in ("split", "sqlite_split")

    def _gap_expected(self) -> bool:
        """Whether the next cycle must reset first: deletes may be past the source's retention."""
        state = self.engine.state(KEY)
        if self._expected_skip() is not None:
            return False
        return deletes_expired(state, self.connector.delete_retention, self.clock())

    def _expected_skip(self) -> Outcome | None:
        state = self.engine.state(KEY)
        if state.phase is Phase.CANCELLED:
            return Outcome.SKIPPED_CANCELLED
        if state.phase is Phase.STOPPED:
            return Outcome.SKIPPED_STOPPED
        if state.lease is not None and state.lease.expires_at > self.clock():
            return Outcome.SKIPPED_RUNNING
        return None

    def _history_length(self) -> int:
        return len(self.state_store.history(KEY))

    def _run(self) -> CycleResult:
        expected_skip = self._expected_skip()
        expected_gap = self._gap_expected()
        recorded = self._history_length()
        result = self.engine.run_cycle(KEY, self.connector)
        self.during_cycle.clear()
        self.plan.disarm()
        # One worker: its cycle that ran wrote its final state, and its entry with it.
        history = self.state_store.history(KEY)
        assert len(history) == recorded + (not result.outcome.skipped)
        if not result.outcome.skipped:
            newest = history[0]
            assert newest.outcome is result.outcome
            assert (newest.pages, newest.fetched, newest.applied, newest.rejected) == (
                result.pages,
                result.fetched,
                result.applied,
                result.rejected,
            )
            assert (newest.error_class, newest.error) == (result.error_class, result.error)
        if expected_skip is not None:
            assert result.outcome is expected_skip
        elif expected_gap:
            assert result.outcome is Outcome.INTERRUPTED_RESET, result
            self.reset_since_check = True
        else:
            assert not result.outcome.skipped, result
        return result

    @rule()
    def cycle(self) -> None:
        """A plain cycle completes unless the source may not run (or must be re-read whole)."""
        result = self._run()
        if not result.outcome.skipped and result.outcome is not Outcome.INTERRUPTED_RESET:
            assert result.outcome is Outcome.COMPLETED, result
            assert self.engine.state(KEY).last_sync == self.clock()

    @rule(page=st.integers(min_value=0, max_value=4))
    def cycle_with_changes_while_paging(self, page: int) -> None:
        """The source changes between two page fetches of a running cycle."""
        self.during_cycle.append((page, "mutate"))
        self._run()

    @rule(page=st.integers(min_value=0, max_value=4))
    def reset_during_cycle(self, page: int) -> None:
        """A reset while a cycle runs wins: that cycle's later checkpoints are refused."""
        self.during_cycle.append((page, "reset"))
        result = self._run()
        if result.outcome is Outcome.INTERRUPTED_RESET:
            state = self.engine.state(KEY)
            assert state.phase is Phase.RESETTING
            assert state.cursor is None

    @rule(page=st.integers(min_value=0, max_value=4))
    def cancel_during_cycle(self, page: int) -> None:
        """A cancel while a cycle runs stops it after the current page is durable."""
        self.during_cycle.append((page, "cancel"))
        result = self._run()
        if result.outcome is Outcome.INTERRUPTED_CANCEL:
            assert self.engine.state(KEY).phase is Phase.CANCELLED

    @rule(page=st.integers(min_value=0, max_value=4))
    def failing_cycle(self, page: int) -> None:
        """A source error fails the cycle, counts it, and stops the source after too many."""
        before = self.engine.state(KEY)
        self.plan.arm("inside_page", page, TransientSourceError("HTTP 503 from the source"))
        result = self._run()
        if result.outcome is Outcome.FAILED:
            after = self.engine.state(KEY)
            assert after.consecutive_failures == before.consecutive_failures + 1
            assert after.cursor == before.cursor or self.ordered
            stopped = after.consecutive_failures >= POLICY.max_consecutive_failures
            assert (after.phase is Phase.STOPPED) == (
                stopped and before.phase is not Phase.CANCELLED
            )
            assert after.last_error is not None
            assert after.last_error.error_class == "TransientSourceError"

    @rule(point=st.sampled_from(FAULT_POINTS), countdown=st.integers(min_value=0, max_value=3))
    def crash(self, point: str, countdown: int) -> None:
        """The worker process dies somewhere in a cycle; its lease is left behind."""
        if point == "after_sink_write" and not self.separate_sink:
            point = "checkpoint_before_write"  # an atomic store has no moment between the two
        expected_skip = self._expected_skip()
        expected_gap = self._gap_expected()
        self.plan.arm(point, countdown, SimulatedCrash())
        recorded = self._history_length()
        try:
            result = self.engine.run_cycle(KEY, self.connector)
        except SimulatedCrash:
            assert expected_skip is None
            assert self._history_length() == recorded  # no final state, no entry
            self.reset_since_check |= expected_gap
            return
        finally:
            self.plan.disarm()
        if expected_gap and expected_skip is None:
            assert result.outcome is Outcome.INTERRUPTED_RESET, result
            self.reset_since_check = True
            return
        assert result.outcome is (expected_skip or Outcome.COMPLETED), result

    @rule()
    def stalled_worker_writes_late(self) -> None:
        """Another worker stalls past its lease between reading a page and writing it.

        Meanwhile the source rewrites that page's records of the current second (same stamp, new
        content), a record arrives later, and this worker runs a whole cycle past them. The stalled
        page, written last, must change nothing: no later window reads those records again.
        """
        if self._expected_skip() is not None or self._gap_expected():
            return
        second = self._now_seconds()
        self._create(second)  # a record of this second, so some page can stall on one
        rewritten: dict[str, dict[str, Any]] = {}
        successor: list[CycleResult] = []

        def this_second(page: Sequence[Record]) -> bool:
            return any(record.updated_at == second for record in page)

        def meanwhile(page: Sequence[Record]) -> None:
            for record in page:
                if record.updated_at == second:
                    self.source.update(record.id, second, value=-self.next_id)
                    rewritten[record.id] = self.source.snapshot()[record.id]
            self.clock.advance(POLICY.lease_ttl + timedelta(seconds=1))
            self._create(self._now_seconds())
            successor.append(self.engine.run_cycle(KEY, self.connector))

        if self.separate_sink:
            stalled = SyncEngine(
                self.state_store,
                StallingSink(self.sink_store, meanwhile, this_second),
                policy=POLICY,
                clock=self.clock,
                holder="stalled",
            )
        else:
            stalled = SyncEngine(
                cast("Store", StallingStore(self.sink_store, meanwhile, this_second)),
                policy=POLICY,
                clock=self.clock,
                holder="stalled",
            )
        late = stalled.run_cycle(KEY, self.connector)
        if not successor:  # no page held a record of that second (a reset emptied the window)
            assert late.outcome is Outcome.COMPLETED, late
            return
        if successor[0].outcome is Outcome.INTERRUPTED_RESET:
            # The wait opened a gap past the delete retention: the successor reset the source,
            # and its full re-read, not a fence, brings the stalled page's records up to date.
            self.reset_since_check = True
            return
        assert successor[0].outcome is Outcome.COMPLETED, successor[0]
        assert late.outcome is Outcome.FAILED, late
        sink = self._sink()
        for record_id, raw in rewritten.items():
            assert sink[record_id].record.payload == raw, (
                "a stalled worker's page replaced newer data"
            )

    @rule()
    def wait_out_lease(self) -> None:
        """Enough time passes for a dead worker's lease to expire."""
        self.clock.advance(POLICY.lease_ttl + timedelta(seconds=1))

    @rule()
    def reset(self) -> None:
        """The host resets the source."""
        self.engine.reset(KEY)
        self.reset_since_check = True

    @rule()
    def cancel(self) -> None:
        """The host cancels the source."""
        self.engine.cancel(KEY)

    @rule()
    def resume(self) -> None:
        """The host resumes the source."""
        self.engine.resume(KEY)

    # -- what must always hold ---------------------------------------------------------------

    def _sink(self) -> dict[str, Transaction]:
        return transactions_by_id(self.sink_store, KEY)

    @invariant()
    def cursor_moves_forward_except_on_reset(self) -> None:
        """The cursor never moves back, except that a reset clears it."""
        cursor = self.engine.state(KEY).cursor
        if self.reset_since_check:
            self.reset_since_check = False
        elif self.previous_cursor is not None:
            assert cursor is not None
            assert cursor >= self.previous_cursor
        self.previous_cursor = cursor

    @invariant()
    def cursor_never_passes_the_horizon(self) -> None:
        """The cursor stays behind (now - safety lag), so late records are read again."""
        cursor = self.engine.state(KEY).cursor
        if cursor is not None:
            assert cursor.updated_at <= self.clock() - POLICY.safety_lag

    @invariant()
    def last_change_is_newest_seen_and_monotone(self) -> None:
        """Last change only grows and never exceeds the newest update at the source."""
        last_change = self.engine.state(KEY).last_change
        if self.previous_last_change is not None:
            assert last_change is not None
            assert last_change >= self.previous_last_change
        if last_change is not None:
            stamps = [_updated_at(raw) for raw in self.source.snapshot().values()]
            assert last_change <= max([*stamps, *self.purged.values()])
        self.previous_last_change = last_change

    @invariant()
    def sink_never_goes_back_to_an_older_version(self) -> None:
        """No record in the sink is ever replaced by an older version."""
        for record_id, transaction in self._sink().items():
            seen = self.seen_versions.get(record_id)
            assert seen is None or transaction.record.updated_at >= seen
            self.seen_versions[record_id] = transaction.record.updated_at

    def teardown(self) -> None:
        """One clean cycle leaves every record of the source in the sink as it is at the source;
        then a full re-read leaves the live transactions exactly the live source records.
        """
        try:
            self._check_incremental_cycle()
            self._check_full_re_read()
        finally:
            for sqlite in self.sqlite:
                sqlite.close()
            if self.tmp is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)

    def _clean_cycle(self) -> None:
        if self.engine.state(KEY).phase in (Phase.CANCELLED, Phase.STOPPED):
            self.engine.resume(KEY)
        self.clock.advance(POLICY.lease_ttl + timedelta(seconds=1))
        result = self.engine.run_cycle(KEY, self.connector)
        if result.outcome is Outcome.INTERRUPTED_RESET:  # a gap past the delete retention
            result = self.engine.run_cycle(KEY, self.connector)
        assert result.outcome is Outcome.COMPLETED, result

    def _check_incremental_cycle(self) -> None:
        self._clean_cycle()
        truth = self.source.snapshot()
        sink = self._sink()
        assert set(truth) <= set(sink)
        assert set(sink) - set(truth) <= set(self.purged)  # gone without a trace: not swept yet
        for record_id, raw in truth.items():
            record = sink[record_id].record
            assert record.payload == raw
            assert record.updated_at == _updated_at(raw)
            assert record.deleted == bool(raw.get("deleted", False))
        state = self.engine.state(KEY)
        assert state.phase is Phase.ACTIVE
        if truth:
            assert state.last_change is not None
            assert state.last_change >= max(_updated_at(raw) for raw in truth.values())
            # after a reset has completed, every record was re-applied in its generation
            assert {t.generation for t in sink.values()} <= set(range(state.generation + 1))

    def _check_full_re_read(self) -> None:
        before = self._sink()
        self.engine.reset(KEY)
        self._clean_cycle()
        truth = self.source.snapshot()
        sink = self._sink()
        assert set(sink) == set(before)  # nothing removed
        live = {record_id for record_id, t in sink.items() if not t.record.deleted}
        assert live == {record_id for record_id, raw in truth.items() if not raw.get("deleted")}
        for record_id in set(sink) - set(truth):
            assert sink[record_id].deleted_reason in (SWEPT, None)  # None: deleted before


def _updated_at(raw: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(raw["updated_at"]).replace("Z", "+00:00"))


_SETTINGS = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class OrderedInMemory(SyncMachine):
    ordered = True
    store_kind = "memory"


class UnorderedInMemory(SyncMachine):
    ordered = False
    store_kind = "memory"


class OrderedSplitSink(SyncMachine):
    ordered = True
    store_kind = "split"


class UnorderedSplitSink(SyncMachine):
    ordered = False
    store_kind = "split"


class OrderedSQLiteSplit(SyncMachine):
    ordered = True
    store_kind = "sqlite_split"


class UnorderedSQLiteSplit(SyncMachine):
    ordered = False
    store_kind = "sqlite_split"


class OrderedSQLite(SyncMachine):
    ordered = True
    store_kind = "sqlite"


class UnorderedSQLite(SyncMachine):
    ordered = False
    store_kind = "sqlite"


@pytest.mark.parametrize(
    ("machine", "examples"),
    [
        (OrderedInMemory, 60),
        (UnorderedInMemory, 40),
        (OrderedSplitSink, 60),
        (UnorderedSplitSink, 40),
        (OrderedSQLiteSplit, 20),
        (UnorderedSQLiteSplit, 15),
        (OrderedSQLite, 25),
        (UnorderedSQLite, 15),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else str(value),
)
def test_engine_keeps_sink_equal_to_source(machine: type[SyncMachine], examples: int) -> None:
    """Whatever happens, one clean cycle leaves every record's latest version in the sink, once."""
    machine.TestCase.settings = settings(_SETTINGS, max_examples=examples)
    machine.TestCase().runTest()
