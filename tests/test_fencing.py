"""Fenced writes: a worker that stalled past its lease never overwrites what its successor wrote.

The history every test here replays: worker A reads record ``r`` (v1) and stalls before writing it;
the source rewrites ``r`` within the same second (v2) and a next record arrives a second later; A's
lease expires and worker B runs a whole cycle, writing v2 and moving the cursor past ``r``'s second;
then A wakes up and writes its page. Were A's
write let through, the sink would keep v1 for good, since no later cycle reads ``r`` again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import cast

import pytest

from incsync import (
    ApplyResult,
    Cursor,
    CycleResult,
    LeaseLostError,
    Outcome,
    Record,
    SQLiteStore,
    StaleWriteError,
    SyncEngine,
    SyncPolicy,
    Transaction,
)
from incsync.connectors import InMemoryConnector, InMemorySource
from incsync.connectors.memory import iso_timestamp
from incsync.protocols import StateStore, TransactionSink
from incsync.reconcile import IdOrder
from incsync.records import is_swept, supersedes, swept
from incsync.state import admit_writer
from incsync.stores.postgres import PostgresStore
from incsync.testing import InMemoryStore, ManualClock
from tests.helpers import StallingSink, StallingStore, Store, transactions_by_id

KEY = "acme/invoices"
WRITTEN_AT = datetime(2026, 3, 29, 9, 0, 0, tzinfo=timezone.utc)
POLICY = SyncPolicy(lease_ttl=timedelta(minutes=10), safety_lag=timedelta(seconds=30))


class HostSink:
    """A host's own sink: its transactions in a dict, fenced as the protocol asks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rows: dict[str, Transaction] = {}
        self.fences: dict[str, int] = {}

    def apply(
        self, source_key: str, records: Sequence[Record], generation: int, token: int
    ) -> ApplyResult:
        with self._lock:
            self.fences[source_key] = admit_writer(source_key, self.fences.get(source_key), token)
            applied = 0
            for record in records:
                stored = self.rows.get(record.id)
                if stored is None or supersedes(
                    record, generation, stored.record, stored.generation
                ):
                    self.rows[record.id] = Transaction(source_key, record, generation)
                    applied += 1
            return ApplyResult(applied)

    def sweep(self, source_key: str, generation: int, token: int, spared: Collection[str]) -> int:
        with self._lock:
            self.fences[source_key] = admit_writer(source_key, self.fences.get(source_key), token)
            gone = {
                record_id: swept(transaction, generation)
                for record_id, transaction in self.rows.items()
                if is_swept(transaction, generation, spared)
            }
            self.rows.update(gone)
            return len(gone)

    def count_live(self, source_key: str) -> int:
        with self._lock:
            return sum(not transaction.record.deleted for transaction in self.rows.values())

    def list_live_ids(
        self,
        source_key: str,
        after: str | None,
        limit: int,
        order: IdOrder = IdOrder.CODE_POINT,
    ) -> Sequence[str]:
        key, bound = order.sort_key, order.sort_key(after or "")
        with self._lock:
            live = sorted(
                (
                    record_id
                    for record_id, transaction in self.rows.items()
                    if not transaction.record.deleted and key(record_id) > bound
                ),
                key=key,
            )
        return live[:limit]

    def tombstone(
        self, source_key: str, ids: Collection[str], generation: int, token: int, reason: str
    ) -> int:
        with self._lock:
            self.fences[source_key] = admit_writer(source_key, self.fences.get(source_key), token)
            gone = {
                record_id: swept(self.rows[record_id], generation, reason)
                for record_id in ids
                if record_id in self.rows and not self.rows[record_id].record.deleted
            }
            self.rows.update(gone)
            return len(gone)


Meanwhile = Callable[[Sequence[Record]], None]
"""What happens while the stalled worker waits to write its page."""


def _value(sink: TransactionSink) -> int:
    rows = sink.rows if isinstance(sink, HostSink) else transactions_by_id(cast("Store", sink), KEY)
    return int(rows["r"].record.payload["value"])


def _stale_worker_history(
    state: StateStore,
    sink: TransactionSink,
    stalled_worker: Callable[[Meanwhile, ManualClock], SyncEngine],
) -> tuple[Outcome, str | None]:
    """Replay the history; return the stalled worker's outcome and error class."""
    clock = ManualClock(WRITTEN_AT + timedelta(milliseconds=200))
    source = InMemorySource()
    source.put({"id": "r", "updated_at": iso_timestamp(WRITTEN_AT), "value": 1})
    connector = InMemoryConnector(source)
    worker_b = SyncEngine(state, sink, policy=POLICY, clock=clock, holder="worker-b")

    successor: list[CycleResult] = []

    def successor_runs(_page: Sequence[Record]) -> None:
        # Anything raised here would become the stalled worker's failure: the checks come after.
        source.update("r", WRITTEN_AT, value=2)  # the same second: only the content tells
        # The next record, a second later: the successor's cursor moves past r's second, so no
        # later window starts early enough to read r again.
        source.put({"id": "s", "updated_at": iso_timestamp(WRITTEN_AT + timedelta(seconds=1))})
        clock.advance(POLICY.lease_ttl + timedelta(minutes=1))
        successor.append(worker_b.run_cycle(KEY, connector))

    late = stalled_worker(successor_runs, clock).run_cycle(KEY, connector)

    [done] = successor
    assert (done.outcome, done.applied) == (Outcome.COMPLETED, 2)
    assert done.cursor_after == Cursor(WRITTEN_AT + timedelta(seconds=1), "s")

    assert _value(sink) == 2, "the stalled worker's old copy replaced the newer one"
    after = worker_b.state(KEY)
    assert after.consecutive_failures == 0  # the successor's outcome is the one recorded
    assert after.last_error is None
    again = worker_b.run_cycle(KEY, connector)
    assert (again.outcome, _value(sink)) == (Outcome.COMPLETED, 2)
    return late.outcome, late.error_class


def _writing_late_to(
    state: StateStore, sink: TransactionSink
) -> Callable[[Meanwhile, ManualClock], SyncEngine]:
    """A worker over ``state`` whose writes to the separate ``sink`` stall once."""

    def worker(meanwhile: Meanwhile, clock: ManualClock) -> SyncEngine:
        stalling = StallingSink(sink, meanwhile)
        return SyncEngine(state, stalling, policy=POLICY, clock=clock, holder="worker-a")

    return worker


def _committing_late_to(store: Store) -> Callable[[Meanwhile, ManualClock], SyncEngine]:
    """A worker over a store that is its own sink, whose page commits stall once."""

    def worker(meanwhile: Meanwhile, clock: ManualClock) -> SyncEngine:
        stalling = cast("Store", StallingStore(store, meanwhile))
        return SyncEngine(stalling, policy=POLICY, clock=clock, holder="worker-a")

    return worker


@pytest.fixture
def sqlite_state(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(tmp_path / "state.db") as store:
        yield store


@pytest.mark.parametrize("sink_kind", ["sqlite", "postgres", "memory", "host"])
def test_a_stalled_worker_cannot_overwrite_a_separate_sink(
    sink_kind: str, sqlite_state: SQLiteStore, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """SQLite state with a sink of each kind: the late page is refused by the sink's fence."""
    sink: TransactionSink
    if sink_kind == "sqlite":
        sink = SQLiteStore(tmp_path / "sink.db")
        request.addfinalizer(sink.close)
    elif sink_kind == "postgres":
        sink = request.getfixturevalue("postgres_store")
    elif sink_kind == "memory":
        sink = InMemoryStore()
    else:
        sink = HostSink()
    outcome, error_class = _stale_worker_history(
        sqlite_state, sink, _writing_late_to(sqlite_state, sink)
    )
    assert (outcome, error_class) == (Outcome.FAILED, "StaleWriteError")


def test_a_stalled_worker_cannot_overwrite_postgres_state_with_sqlite_sink(
    postgres_store: PostgresStore, tmp_path: Path
) -> None:
    """The same history with the state in PostgreSQL and the transactions in a SQLite file."""
    with SQLiteStore(tmp_path / "sink.db") as sink:
        outcome, error_class = _stale_worker_history(
            postgres_store, sink, _writing_late_to(postgres_store, sink)
        )
    assert (outcome, error_class) == (Outcome.FAILED, "StaleWriteError")


def test_a_stalled_worker_cannot_overwrite_a_store_that_is_its_own_sink(store: Store) -> None:
    """Where the store is the sink, the lease check refuses the page's rows with its checkpoint."""
    outcome, error_class = _stale_worker_history(store, store, _committing_late_to(store))
    assert (outcome, error_class) == (Outcome.FAILED, "LeaseLostError")


def _record(value: int) -> Record:
    return Record("r", WRITTEN_AT, {"value": value})


def test_every_sink_refuses_a_lower_token_and_writes_nothing(store: Store) -> None:
    """A page from an older lease is refused whole; equal and newer tokens write; keys are apart."""
    assert store.apply(KEY, [_record(1)], 0, 2).applied == 1
    with pytest.raises(StaleWriteError) as refused:
        store.apply(KEY, [_record(9), Record("other", WRITTEN_AT, {})], 0, 1)
    assert (refused.value.token, refused.value.highest, refused.value.source_key) == (1, 2, KEY)
    assert isinstance(refused.value, LeaseLostError)
    assert set(transactions_by_id(store, KEY)) == {"r"}
    assert _value(store) == 1
    assert store.apply(KEY, [_record(2)], 0, 2).applied == 1  # the same lease, a later page
    assert store.apply(KEY, [_record(3)], 0, 5).applied == 1  # a newer lease
    assert store.apply("another/source", [_record(4)], 0, 1).applied == 1  # its own fence
    with pytest.raises(StaleWriteError):
        store.apply(KEY, [_record(8)], 0, 4)
    assert _value(store) == 3


def test_the_sqlite_fence_survives_reopening(tmp_path: Path) -> None:
    """The fence is kept in the file, so a stalled worker in another process is refused too."""
    with SQLiteStore(tmp_path / "sink.db") as sink:
        sink.apply(KEY, [_record(1)], 0, 7)
    with SQLiteStore(tmp_path / "sink.db") as reopened, pytest.raises(StaleWriteError):
        reopened.apply(KEY, [_record(2)], 0, 6)


@pytest.mark.parametrize(
    ("highest", "token", "kept"), [(None, 1, 1), (3, 3, 3), (3, 4, 4), (1, 10, 10)]
)
def test_admit_writer_raises_the_fence_to_the_newest_token(
    highest: int | None, token: int, kept: int
) -> None:
    assert admit_writer(KEY, highest, token) == kept


def test_admit_writer_refuses_an_older_token_and_says_what_to_do() -> None:
    with pytest.raises(StaleWriteError, match="lease 4, newer than this worker's lease 3"):
        admit_writer(KEY, 4, 3)


def test_a_replaced_state_store_shows_as_failures_not_silence(tmp_path: Path) -> None:
    """Tokens that restart below the sink's fence fail every cycle visibly, and count."""
    clock = ManualClock(WRITTEN_AT + timedelta(hours=1))
    source = InMemorySource()
    source.put({"id": "r", "updated_at": iso_timestamp(WRITTEN_AT), "value": 1})
    sink = HostSink()
    sink.fences[KEY] = 40  # written under the old state store's leases
    engine = SyncEngine(InMemoryStore(), sink, policy=POLICY, clock=clock)
    result = engine.run_cycle(KEY, InMemoryConnector(source))
    assert (result.outcome, result.error_class) == (Outcome.FAILED, "StaleWriteError")
    state = engine.state(KEY)
    assert state.consecutive_failures == 1
    assert state.last_error is not None
    assert "state store was replaced" in state.last_error.message
    assert state.lease is not None
    assert state.lease.expires_at <= clock()  # released
