"""An id reconcile stops where a read stops: a cancel or a stop ends it between two pages of ids
or two batches, nothing half-applied, and the drift stays in the state so the next cycle
reconciles again; a long walk keeps its lease."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta

from incsync import Outcome, Phase, SyncEngine
from incsync.connectors import InMemoryConnector
from incsync.connectors.base import RawPage
from incsync.state import CountCheck
from incsync.testing import ManualClock
from tests.helpers import Store, transactions_by_id
from tests.test_counts import DAY, KEY, RECONCILING, START, _live, _source


class Hooked(InMemoryConnector):
    """Runs ``on_list`` after each page of ids it lists and ``on_fetch`` before each fetch."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.on_list: Callable[[int], object] = lambda _number: None
        self.on_fetch: Callable[[int], object] = lambda _number: None
        self.listed = 0
        self.fetches = 0

    def list_ids(self) -> Iterator[list[str]]:
        for page in super().list_ids():
            self.listed += 1
            self.on_list(self.listed)
            yield page

    def fetch_by_ids(self, ids: Sequence[str]) -> RawPage:
        self.fetches += 1
        self.on_fetch(self.fetches)
        return super().fetch_by_ids(ids)


def _drifted(store: Store) -> tuple[SyncEngine, Hooked, ManualClock, CountCheck]:
    """300 records synced, then 150 of them gone from the source without a delete to read: two
    counts in a row find the drift, so the next cycle reconciles by id. The source lists its
    ids 50 to a page, and the 150 extra ids make a batch of 100 and one of 50."""
    clock = ManualClock(START)
    engine = SyncEngine(store, policy=RECONCILING, clock=clock)
    connector = Hooked(_source(300), page_size=50, lists_ids=True)
    engine.run_cycle(KEY, connector)
    for number in range(100, 250):
        connector.source.purge(f"r{number:03d}")
    for _ in range(2):
        clock.advance(DAY)
        counted = engine.run_cycle(KEY, connector).counted
        assert counted is not None
        assert counted.drift == -150
    clock.advance(timedelta(hours=1))
    connector.listed = connector.fetches = 0
    check = engine.state(KEY).count_check
    assert check is not None
    return engine, connector, clock, check


def _finishes(engine: SyncEngine, connector: Hooked, tombstoned: int) -> None:
    """The next cycle reconciles what is left, and the host then matches the source."""
    connector.on_list = connector.on_fetch = lambda _number: None
    result = engine.run_cycle(KEY, connector)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert (result.reconcile_fetched, result.reconcile_tombstoned) == (0, tombstoned)
    state = engine.state(KEY)
    assert state.count_check is not None
    assert state.count_check.drift == 0


def test_a_cancel_during_a_batch_ends_the_cycle_once_the_batch_is_whole(store: Store) -> None:
    """Cancelled while the first batch is fetched, the cycle writes and tombstones that batch
    whole, then ends INTERRUPTED_CANCEL: the second batch untouched, the source cancelled, its
    count check as it was (so the drift is reconciled again), the history saying what was done.
    Resumed, the source's next cycle reconciles the rest."""
    engine, connector, _, check = _drifted(store)
    connector.on_fetch = lambda number: None if number > 1 else engine.cancel(KEY)
    result = engine.run_cycle(KEY, connector)
    assert result.outcome is Outcome.INTERRUPTED_CANCEL
    assert (result.reconcile_fetched, result.reconcile_tombstoned) == (0, 100)
    assert connector.fetches == 1
    held = transactions_by_id(store, KEY)
    assert len(held) == 300  # nothing removed
    assert sum(t.record.deleted for t in held.values()) == 100
    assert len(_live(store)) == 200  # 50 extra ids still live: their batch never ran
    state = engine.state(KEY)
    assert state.phase is Phase.CANCELLED
    assert state.count_check == check
    entry = engine.history(KEY, 1)[0]
    assert entry.outcome is Outcome.INTERRUPTED_CANCEL
    assert (entry.reconcile_fetched, entry.reconcile_tombstoned) == (0, 100)
    engine.resume(KEY)
    _finishes(engine, connector, 50)
    assert _live(store) == set(connector.source.ids())


def test_a_stop_while_ids_are_listed_ends_the_cycle_between_two_pages(store: Store) -> None:
    """Set while the second page of ids is listed, the stop ends the cycle before the third is
    asked: no difference met yet is handled, the source is not cancelled and still drifts, and
    its next cycle reconciles everything."""
    engine, connector, _, check = _drifted(store)
    stop = threading.Event()
    connector.on_list = lambda number: stop.set() if number == 2 else None
    result = engine.run_cycle(KEY, connector, stop=stop)
    assert result.outcome is Outcome.INTERRUPTED_STOP
    assert connector.listed == 2
    assert connector.fetches == 0
    assert (result.reconcile_fetched, result.reconcile_tombstoned) == (0, 0)
    assert len(_live(store)) == 300
    state = engine.state(KEY)
    assert state.phase is Phase.ACTIVE
    assert state.count_check == check
    assert engine.history(KEY, 1)[0].outcome is Outcome.INTERRUPTED_STOP
    _finishes(engine, connector, 150)


def test_a_stop_during_the_last_batch_ends_after_it(store: Store) -> None:
    """A stop set while the second batch is fetched lets that batch finish: every extra id is then
    tombstoned, but the cycle ends INTERRUPTED_STOP before its count, which the next makes."""
    engine, connector, _, check = _drifted(store)
    stop = threading.Event()
    connector.on_fetch = lambda number: stop.set() if number == 2 else None
    result = engine.run_cycle(KEY, connector, stop=stop)
    assert result.outcome is Outcome.INTERRUPTED_STOP
    assert result.reconcile_tombstoned == 150
    assert result.counted is None
    assert engine.state(KEY).count_check == check
    assert _live(store) == set(connector.source.ids())
    _finishes(engine, connector, 0)


def test_a_long_walk_keeps_its_lease_page_by_page(store: Store) -> None:
    """Each page of ids listed renews the lease, as each page of a read does: a walk longer than
    the lease's life is never taken over by another worker."""
    engine, connector, clock, _ = _drifted(store)
    ttl = RECONCILING.lease_ttl
    other = SyncEngine(store, policy=RECONCILING, clock=clock, holder="worker-2")
    skipped: list[Outcome] = []

    def slow_page(_number: int) -> None:
        clock.advance(ttl * 0.6)  # two pages outlast a lease that is not renewed
        skipped.append(other.run_cycle(KEY, connector).outcome)

    connector.on_list = slow_page
    result = engine.run_cycle(KEY, connector)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert connector.listed == 3
    assert skipped == [Outcome.SKIPPED_RUNNING] * 3
    assert result.reconcile_tombstoned == 150


def test_a_reset_while_ids_are_listed_ends_the_cycle_at_the_next_page(store: Store) -> None:
    """A reset made while the reconcile walks refuses its next checkpoint: the cycle ends
    INTERRUPTED_RESET before it fetches or tombstones anything, and the re-read after it sweeps."""
    engine, connector, _, _ = _drifted(store)
    connector.on_list = lambda number: engine.reset(KEY) if number == 1 else None
    result = engine.run_cycle(KEY, connector)
    assert result.outcome is Outcome.INTERRUPTED_RESET
    assert connector.listed == 1
    assert connector.fetches == 0
    assert len(_live(store)) == 300
    connector.on_list = lambda _number: None
    again = engine.run_cycle(KEY, connector)
    assert again.outcome is Outcome.COMPLETED, again.error
    assert again.swept == 150
    assert _live(store) == set(connector.source.ids())
