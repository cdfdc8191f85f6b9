"""Reset, cancel and overlapping cycles while a cycle is running, with real threads.

Every test runs against both built-in stores: the in-memory one (one lock) and SQLite (one
connection per thread, ``BEGIN IMMEDIATE`` between them). The source is the generated invoice
sample with a fixed end in the past, so the safety lag never holds the cursor back and every
record's position in (updated_at, id) order is known in advance.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest

from incsync import (
    Cursor,
    CycleProgress,
    CycleResult,
    Outcome,
    Phase,
    SyncEngine,
)
from incsync.connectors.memory import InMemoryConnector, InMemorySource
from incsync.connectors.sample import invoice, sample_source
from incsync.timestamps import parse_timestamp, utc_now
from tests.helpers import Store, transactions_by_id

END = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)
KEY = "acme/invoices"
COUNT = 200
PAGE = 20
PAGES = COUNT // PAGE
WAIT = 10.0  # seconds any cross-thread handshake may take before the test gives up


stored = transactions_by_id


def stored_count(store: Store, key: str) -> int:
    return store.count_transactions(key)


def keys_in_order(source: InMemorySource) -> list[Cursor]:
    """Return every record's (updated_at, id), in the order an ordered connector pages them."""
    return sorted(
        Cursor(parse_timestamp(raw["updated_at"]), record_id)
        for record_id, raw in source.snapshot().items()
    )


def assert_sink_equals_source(store: Store, key: str, source: InMemorySource) -> None:
    """Every source id is held once, at the source's latest version, and nothing else is."""
    truth = source.snapshot()
    held = stored(store, key)
    assert sorted(set(truth) - set(held)) == [], "records missing from the sink"
    assert sorted(set(held) - set(truth)) == [], "records in the sink the source never had"
    for record_id, raw in truth.items():
        record = held[record_id].record
        assert record.updated_at == parse_timestamp(raw["updated_at"]), record_id
        assert dict(record.payload) == raw, record_id
        assert record.deleted is bool(raw.get("deleted", False)), record_id


def assert_lease_released(store: Store, key: str) -> None:
    lease = store.load(key).lease
    assert lease is not None
    assert lease.expires_at <= utc_now(), "the interrupted cycle kept its lease"


# -- reset -------------------------------------------------------------------------------------


@pytest.mark.parametrize("reset_at", [1, 3, PAGES - 1])
def test_reset_from_before_page_hook_interrupts_cycle_and_next_cycle_reapplies_all(
    store: Store, reset_at: int
) -> None:
    """A reset between pages refuses the next page's write and checkpoint.

    The cycle ends INTERRUPTED_RESET with the cursor still cleared by the reset, the state stays
    RESETTING under the bumped generation, every transaction written before the reset is kept,
    and the page fetched after it is not written. The next cycle is a full read that re-applies
    every record once under the new generation and leaves the source ACTIVE.
    """
    source = sample_source(COUNT, end=END, seed=1)
    keys = keys_in_order(source)
    engine = SyncEngine(store)
    held_at_reset: list[int] = []

    def reset_before_page(number: int) -> None:
        if number == reset_at:
            held_at_reset.append(stored_count(store, KEY))
            engine.reset(KEY)

    # One reader: the reset comes before a page number of the one window, read in order.
    connector = InMemoryConnector(
        source, page_size=PAGE, before_page=reset_before_page, partitions=1
    )
    result = engine.run_cycle(KEY, connector)

    assert result.outcome is Outcome.INTERRUPTED_RESET
    assert result.error_class == "GenerationChangedError"
    assert held_at_reset == [reset_at * PAGE]
    assert result.pages == reset_at
    assert result.applied == reset_at * PAGE
    assert result.cursor_after is None
    state = engine.state(KEY)
    assert state.phase is Phase.RESETTING
    assert state.generation == 1
    assert state.cursor is None
    assert state.consecutive_failures == 0
    assert state.last_error is None
    assert state.last_sync is None
    assert_lease_released(store, KEY)
    held = stored(store, KEY)
    assert set(held) == {key.record_id for key in keys[: reset_at * PAGE]}
    assert {transaction.generation for transaction in held.values()} == {0}

    full = engine.run_cycle(KEY, InMemoryConnector(source, page_size=PAGE))

    assert full.outcome is Outcome.COMPLETED
    assert full.cursor_before is None
    assert full.applied == COUNT
    # Only a record a read in partitions fetched twice (its last partition again) was held.
    assert full.fetched - full.already_applied == COUNT
    state = engine.state(KEY)
    assert state.phase is Phase.ACTIVE
    assert state.generation == 1
    assert state.cursor == keys[-1]
    assert state.last_sync is not None
    assert_sink_equals_source(store, KEY, source)
    assert {transaction.generation for transaction in stored(store, KEY).values()} == {1}


def test_reset_from_another_thread_interrupts_worker_cycle(store: Store) -> None:
    """A reset issued by another thread (another SQLite connection) stops a running worker.

    The worker is held after its third durable page until the reset is stored; its next page is
    then refused, so the sink keeps exactly three pages, the cursor stays cleared, and the
    next cycle re-reads and re-applies everything.
    """
    source = sample_source(COUNT, end=END, seed=2)
    engine = SyncEngine(store)
    reset_after = 3
    reached, reset_done = threading.Event(), threading.Event()

    def on_progress(progress: CycleProgress) -> None:
        if progress.pages == reset_after:
            reached.set()
            reset_done.wait(WAIT)

    # One reader: three durable pages are the first 60 records.
    connector = InMemoryConnector(source, page_size=PAGE, page_delay=0.005, partitions=1)
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(engine.run_cycle, KEY, connector, on_progress=on_progress)
        assert reached.wait(WAIT), "the worker never reached the page after which to reset"
        reset_state = engine.reset(KEY)
        reset_done.set()
        result = running.result(timeout=WAIT)

    assert reset_state.generation == 1
    assert result.outcome is Outcome.INTERRUPTED_RESET
    assert result.pages == reset_after
    assert result.cursor_after is None
    state = engine.state(KEY)
    assert (state.phase, state.generation, state.cursor) == (Phase.RESETTING, 1, None)
    assert_lease_released(store, KEY)
    assert stored_count(store, KEY) == reset_after * PAGE

    full = engine.run_cycle(KEY, InMemoryConnector(source, page_size=PAGE))

    assert full.outcome is Outcome.COMPLETED
    assert full.cursor_before is None
    assert full.applied == COUNT
    assert engine.state(KEY).phase is Phase.ACTIVE
    assert_sink_equals_source(store, KEY, source)


# -- cancel ------------------------------------------------------------------------------------


def assert_cancelled_then_resumes(
    engine: SyncEngine, store: Store, source: InMemorySource, durable: int
) -> None:
    """After a cancel that left ``durable`` records: skips until resumed, then completes."""
    keys = keys_in_order(source)
    cancel_cursor = keys[durable - 1]
    for _ in range(2):
        skipped = engine.run_cycle(KEY, InMemoryConnector(source, page_size=PAGE))
        assert skipped.outcome is Outcome.SKIPPED_CANCELLED
        assert (skipped.pages, skipped.fetched, skipped.applied) == (0, 0, 0)
    state = engine.state(KEY)
    assert state.phase is Phase.CANCELLED
    assert state.cursor == cancel_cursor
    assert stored_count(store, KEY) == durable

    resumed = engine.resume(KEY)
    assert resumed.phase is Phase.NEW  # no cycle has completed yet
    finished = engine.run_cycle(KEY, InMemoryConnector(source, page_size=PAGE))

    assert finished.outcome is Outcome.COMPLETED
    assert finished.cursor_before == cancel_cursor
    assert finished.applied == COUNT - durable
    assert finished.fetched == finished.applied + finished.already_applied
    assert finished.fetched < COUNT
    state = engine.state(KEY)
    assert state.phase is Phase.ACTIVE
    assert state.cursor == keys[-1]
    assert_sink_equals_source(store, KEY, source)


@pytest.mark.parametrize("cancel_at", [0, 3, PAGES - 1])
def test_cancel_from_before_page_hook_stops_after_the_page_in_flight(
    store: Store, cancel_at: int
) -> None:
    """A cancel that arrives while page k is being fetched lets page k become durable, then stops.

    The cycle returns INTERRUPTED_CANCEL with the cursor on page k's last key, keeps every
    transaction, later cycles are SKIPPED_CANCELLED, and after resume a cycle picks up from that
    cursor and the sink equals the source.
    """
    source = sample_source(COUNT, end=END, seed=3)
    keys = keys_in_order(source)
    engine = SyncEngine(store)

    def cancel_before_page(number: int) -> None:
        if number == cancel_at:
            engine.cancel(KEY)

    # One reader: the cancel comes before a page number of the one window, read in order.
    connector = InMemoryConnector(
        source, page_size=PAGE, before_page=cancel_before_page, partitions=1
    )
    result = engine.run_cycle(KEY, connector)

    durable = (cancel_at + 1) * PAGE
    assert result.outcome is Outcome.INTERRUPTED_CANCEL
    assert result.pages == cancel_at + 1
    assert result.applied == durable
    assert result.cursor_after == keys[durable - 1]
    state = engine.state(KEY)
    assert state.phase is Phase.CANCELLED
    assert state.cursor == keys[durable - 1]
    assert state.last_sync is None
    assert_lease_released(store, KEY)
    assert set(stored(store, KEY)) == {key.record_id for key in keys[:durable]}

    assert_cancelled_then_resumes(engine, store, source, durable)


def test_cancel_from_another_thread_stops_worker_after_its_next_page(store: Store) -> None:
    """A cancel stored by another thread while a worker sleeps between pages takes effect on the
    worker's next durable page: exactly one more page is written, then INTERRUPTED_CANCEL."""
    source = sample_source(COUNT, end=END, seed=4)
    keys = keys_in_order(source)
    engine = SyncEngine(store)
    cancel_after = 2
    reached, cancelled = threading.Event(), threading.Event()

    def on_progress(progress: CycleProgress) -> None:
        if progress.pages == cancel_after:
            reached.set()
            cancelled.wait(WAIT)

    # One reader: the cursor is on the last key of the third page of the one window.
    connector = InMemoryConnector(source, page_size=PAGE, page_delay=0.02, partitions=1)
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(engine.run_cycle, KEY, connector, on_progress=on_progress)
        assert reached.wait(WAIT), "the worker never reached the page after which to cancel"
        assert engine.cancel(KEY).phase is Phase.CANCELLED
        cancelled.set()
        result = running.result(timeout=WAIT)

    durable = (cancel_after + 1) * PAGE
    assert result.outcome is Outcome.INTERRUPTED_CANCEL
    assert result.pages == cancel_after + 1
    assert result.cursor_after == keys[durable - 1]
    assert engine.state(KEY).cursor == keys[durable - 1]
    assert_lease_released(store, KEY)
    assert stored_count(store, KEY) == durable

    assert_cancelled_then_resumes(engine, store, source, durable)


def test_cancel_at_an_arbitrary_moment_leaves_cursor_and_sink_consistent(store: Store) -> None:
    """A cancel from another thread at no chosen point still stops the cycle on a page boundary.

    Whatever page was in flight, the cycle ends INTERRUPTED_CANCEL after at least one more page,
    the sink holds exactly the pages the cycle reports, and the cursor is the last key of the last
    of them (page and checkpoint are durable together).
    """
    source = sample_source(COUNT, end=END, seed=5)
    keys = keys_in_order(source)
    engine = SyncEngine(store)
    # One reader: the durable records are the first pages of the one window, in order.
    connector = InMemoryConnector(source, page_size=PAGE, page_delay=0.05, partitions=1)
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(engine.run_cycle, KEY, connector)
        deadline = time.monotonic() + WAIT
        while stored_count(store, KEY) < 2 * PAGE:
            assert time.monotonic() < deadline, "the worker wrote no pages"
            time.sleep(0.002)
        seen = stored_count(store, KEY)
        engine.cancel(KEY)
        result = running.result(timeout=WAIT)

    assert result.outcome is Outcome.INTERRUPTED_CANCEL
    assert seen // PAGE < result.pages < PAGES
    durable = result.pages * PAGE
    assert stored_count(store, KEY) == durable
    assert result.cursor_after == keys[durable - 1]
    assert engine.state(KEY).cursor == keys[durable - 1]
    assert_lease_released(store, KEY)

    assert_cancelled_then_resumes(engine, store, source, durable)


# -- overlapping cycles ------------------------------------------------------------------------


THREADS = 8


def run_round(engine: SyncEngine, source: InMemorySource) -> list[CycleResult]:
    """Start ``THREADS`` cycles of one source at once and return their results.

    A cycle that gets the lease waits before its first page until the other threads have
    returned, so the cycles are certain to overlap; were two to get the lease, each would wait for
    a result that never comes and give up after a timeout (and the test's counts would fail).
    """
    barrier = threading.Barrier(THREADS)
    finished = threading.Condition()
    results: list[CycleResult] = []

    def gate(number: int) -> None:
        if number == 0:
            with finished:
                finished.wait_for(lambda: len(results) >= THREADS - 1, timeout=5)

    def run() -> CycleResult:
        connector = InMemoryConnector(source, page_size=PAGE, before_page=gate, page_delay=0.001)
        barrier.wait(WAIT)
        result = engine.run_cycle(KEY, connector)
        with finished:
            results.append(result)
            finished.notify_all()
        return result

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        futures = [pool.submit(run) for _ in range(THREADS)]
        return [future.result(timeout=3 * WAIT) for future in futures]


def change_source(source: InMemorySource, round_number: int) -> int:
    """Update, delete and add records at later times; return how many records changed."""
    at = END + timedelta(minutes=round_number)
    rng = random.Random(round_number)
    ids = sorted(source.ids())
    changed = set(ids[round_number::25])
    for record_id in sorted(changed):
        source.update(record_id, at, amount=f"{rng.randint(1, 9_999)}.00")
    source.delete(ids[-round_number], at)
    changed.add(ids[-round_number])
    for number in range(5):
        raw = invoice(100_000 * round_number + number, at, rng)
        source.put(raw)
        changed.add(raw["id"])
    return len(changed)


def test_many_threads_start_the_same_source_only_one_cycle_runs(store: Store) -> None:
    """Eight threads start a cycle of one source at once, over three rounds with source changes.

    In every round exactly one cycle completes and the other seven are SKIPPED_RUNNING without
    reading anything; the completed cycle applies exactly the changed records and the sink then
    equals the source.
    """
    source = sample_source(COUNT, end=END, seed=6)
    engine = SyncEngine(store)
    expected_applied = COUNT
    for round_number in range(3):
        if round_number:
            expected_applied = change_source(source, round_number)

        results = run_round(engine, source)

        outcomes = Counter(result.outcome for result in results)
        assert outcomes == {Outcome.COMPLETED: 1, Outcome.SKIPPED_RUNNING: THREADS - 1}
        for result in results:
            if result.outcome is Outcome.SKIPPED_RUNNING:
                assert (result.pages, result.fetched, result.applied) == (0, 0, 0)
        (completed,) = (r for r in results if r.outcome is Outcome.COMPLETED)
        assert completed.applied == expected_applied
        assert (completed.cursor_before is None) is (round_number == 0)
        state = engine.state(KEY)
        assert state.phase is Phase.ACTIVE
        assert state.cursor == keys_in_order(source)[-1]
        assert_lease_released(store, KEY)
        assert_sink_equals_source(store, KEY, source)
