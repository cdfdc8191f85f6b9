"""The sweep after a full re-read: what the source no longer holds becomes a tombstone, never gone.

A full re-read (the first complete read after a reset) applies every record it sees under the new
generation, so the transactions left under an older one are those the source no longer holds: they
were deleted while their deletes could not be read (a cancelled source, a delete channel past its
retention, a source without one). Completing the read sweeps them; failing or cancelling it
sweeps nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from incsync import (
    Outcome,
    Phase,
    Record,
    StaleWriteError,
    SyncEngine,
    SyncPolicy,
    TransientSourceError,
)
from incsync.connectors import InMemoryConnector, InMemorySource
from incsync.connectors.memory import iso_timestamp
from incsync.cursor import Cursor
from incsync.policy import deletes_expired
from incsync.records import SWEPT, Transaction, is_swept, swept
from incsync.state import SourceState, new_state
from incsync.status import status_of
from incsync.testing import ManualClock
from tests.helpers import Store, transactions_by_id

KEY = "acme/deals"
T0 = datetime(2026, 5, 4, 8, 0, tzinfo=timezone.utc)
POLICY = SyncPolicy(safety_lag=timedelta(seconds=30))


def _source(count: int) -> InMemorySource:
    source = InMemorySource()
    for number in range(count):
        stamp = iso_timestamp(T0 + timedelta(seconds=number))
        source.put({"id": f"d{number:03d}", "updated_at": stamp, "amount": number})
    return source


def _live(store: Store) -> set[str]:
    return {i for i, t in transactions_by_id(store, KEY).items() if not t.record.deleted}


def _engine(store: Store, clock: ManualClock) -> SyncEngine:
    return SyncEngine(store, policy=POLICY, clock=clock)


# -- the rule ---------------------------------------------------------------------------------


def _held(record_id: str, generation: int, deleted: bool = False) -> Transaction:
    return Transaction(KEY, Record(record_id, T0, {"id": record_id}, deleted=deleted), generation)


def test_only_live_transactions_of_an_older_generation_are_swept() -> None:
    assert is_swept(_held("a", 0), 1, spared=())
    assert not is_swept(_held("a", 1), 1, spared=())  # seen by the re-read
    assert not is_swept(_held("a", 0, deleted=True), 1, spared=())  # the source's own tombstone
    assert not is_swept(_held("a", 0), 1, spared={"a"})  # set aside by the re-read: still there


def test_a_swept_transaction_keeps_its_time_and_payload_and_says_why() -> None:
    kept = swept(_held("a", 0), 3)
    assert kept.record == Record("a", T0, {"id": "a"}, deleted=True)
    assert (kept.generation, kept.deleted_reason) == (3, SWEPT)


def test_deletes_expire_only_past_the_retention_of_a_source_read_before() -> None:
    read = SourceState(KEY, phase=Phase.ACTIVE, cursor=Cursor(T0, "a"), last_sync=T0)
    month = timedelta(days=30)
    assert not deletes_expired(read, month, T0 + month)
    assert deletes_expired(read, month, T0 + month + timedelta(seconds=1))
    assert not deletes_expired(read, None, T0 + 100 * month)  # deletes kept for ever
    assert not deletes_expired(new_state(KEY), month, T0 + 100 * month)  # never read
    resetting = SourceState(KEY, phase=Phase.RESETTING, reset_pending=True, last_sync=T0)
    assert not deletes_expired(resetting, month, T0 + 100 * month)  # re-read whole anyway


# -- every store ------------------------------------------------------------------------------


def test_every_store_sweeps_by_generation_and_removes_nothing(store: Store) -> None:
    records = [Record(f"r{n}", T0, {"n": n}) for n in range(6)]
    store.apply(KEY, records, 0, 1)
    store.apply(KEY, [Record("gone-before", T0, {}, deleted=True)], 0, 1)
    store.apply(KEY, records[:2], 1, 2)  # the re-read saw r0 and r1 (and set r2 aside)
    assert store.sweep(KEY, 1, 2, {"r2"}) == 3
    held = transactions_by_id(store, KEY)
    assert len(held) == 7
    assert {i for i, t in held.items() if t.deleted_reason == SWEPT} == {"r3", "r4", "r5"}
    assert all(held[i].record.deleted and held[i].generation == 1 for i in ("r3", "r4", "r5"))
    assert held["r3"].record.payload == {"n": 3}  # kept as it was
    assert not held["r2"].record.deleted
    assert held["gone-before"].deleted_reason is None  # the source's own tombstone, untouched
    assert store.sweep(KEY, 1, 2, {"r2"}) == 0  # done once
    # A swept record that comes back at the source is live again, as any changed content.
    assert store.apply(KEY, [records[3]], 1, 2).applied == 1
    back = transactions_by_id(store, KEY)["r3"]
    assert (back.record.deleted, back.deleted_reason) == (False, None)


def test_every_store_fences_the_sweep(store: Store) -> None:
    store.apply(KEY, [Record("r", T0, {})], 0, 5)
    with pytest.raises(StaleWriteError):
        store.sweep(KEY, 1, 4, ())
    assert _live(store) == {"r"}


# -- through the engine -----------------------------------------------------------------------


def test_reset_after_deletes_at_the_source_tombstones_them(store: Store) -> None:
    clock = ManualClock(T0 + timedelta(hours=1))
    source = _source(30)
    engine = _engine(store, clock)
    assert engine.run_cycle(KEY, InMemoryConnector(source, page_size=7)).applied == 30
    for number in (3, 17, 29):
        source.purge(f"d{number:03d}")  # gone without a trace: no delete was ever published
    engine.reset(KEY)
    clock.advance(timedelta(minutes=5))
    result = engine.run_cycle(KEY, InMemoryConnector(source, page_size=7))
    assert (result.outcome, result.swept) == (Outcome.COMPLETED, 3)
    assert _live(store) == set(source.ids())
    assert store.count_transactions(KEY) == 30  # nothing removed
    # The next reset finds nothing more to sweep.
    engine.reset(KEY)
    assert engine.run_cycle(KEY, InMemoryConnector(source, page_size=7)).swept == 0


@pytest.mark.parametrize("ordered", [True, False])
def test_a_failed_full_read_sweeps_nothing_and_the_next_one_does(
    store: Store, ordered: bool
) -> None:
    clock = ManualClock(T0 + timedelta(hours=1))
    source = _source(20)
    engine = _engine(store, clock)
    engine.run_cycle(KEY, InMemoryConnector(source, page_size=5, ordered=ordered))
    source.purge("d004")
    engine.reset(KEY)

    def fail_on_third_page(number: int) -> None:
        if number == 2:
            raise TransientSourceError("HTTP 503 from the source")

    # One reader: the fault is scripted at the third page of the one window (a partition of
    # fewer than 10 records has no third page).
    failing = InMemoryConnector(
        source, page_size=5, ordered=ordered, before_page=fail_on_third_page, partitions=1
    )
    failed = engine.run_cycle(KEY, failing)
    assert (failed.outcome, failed.swept) == (Outcome.FAILED, 0)
    assert _live(store) == set(source.ids()) | {"d004"}
    clock.advance(timedelta(minutes=5))
    # An ordered read resumes from its checkpoint; the records of the failed attempt count as seen.
    resumed = engine.run_cycle(KEY, InMemoryConnector(source, page_size=5, ordered=ordered))
    assert (resumed.outcome, resumed.swept) == (Outcome.COMPLETED, 1)
    assert _live(store) == set(source.ids())


def test_a_cancelled_full_read_sweeps_nothing_until_resumed_and_completed(store: Store) -> None:
    clock = ManualClock(T0 + timedelta(hours=1))
    source = _source(20)
    engine = _engine(store, clock)
    engine.run_cycle(KEY, InMemoryConnector(source, page_size=5))
    source.purge("d010")
    source.purge("d019")
    engine.reset(KEY)

    def cancel_on_second_page(number: int) -> None:
        if number == 1:
            engine.cancel(KEY)

    cancelled = engine.run_cycle(
        KEY, InMemoryConnector(source, page_size=5, before_page=cancel_on_second_page)
    )
    assert (cancelled.outcome, cancelled.swept) == (Outcome.INTERRUPTED_CANCEL, 0)
    assert {"d010", "d019"} <= _live(store)  # Cancel deletes nothing
    engine.resume(KEY)
    assert engine.state(KEY).phase is Phase.RESETTING
    clock.advance(timedelta(minutes=5))
    done = engine.run_cycle(KEY, InMemoryConnector(source, page_size=5))
    assert (done.outcome, done.swept) == (Outcome.COMPLETED, 2)
    assert _live(store) == set(source.ids())


def test_a_record_set_aside_by_the_full_read_is_not_swept(store: Store) -> None:
    clock = ManualClock(T0 + timedelta(hours=1))
    source = _source(5)
    engine = _engine(store, clock)
    engine.run_cycle(KEY, InMemoryConnector(source))
    broken = {"id": "d002", "updated_at": iso_timestamp(T0), "amount": float("nan")}
    source.put(broken)  # no store can keep it now: set aside, yet still at the source
    engine.reset(KEY)
    result = engine.run_cycle(KEY, InMemoryConnector(source))
    assert (result.outcome, result.rejected, result.swept) == (Outcome.COMPLETED, 1, 0)
    assert "d002" in _live(store)


def test_a_gap_past_the_delete_retention_re_reads_and_sweeps(store: Store) -> None:
    clock = ManualClock(T0 + timedelta(hours=1))
    source = _source(10)
    engine = _engine(store, clock)
    connector = InMemoryConnector(source, delete_retention=timedelta(days=30))
    engine.run_cycle(KEY, connector)
    engine.cancel(KEY)
    source.purge("d005")  # its delete passed out of the source's reach while cancelled
    clock.advance(timedelta(days=31))
    engine.resume(KEY)
    gap = engine.run_cycle(KEY, connector)
    assert gap.outcome is Outcome.INTERRUPTED_RESET
    state = engine.state(KEY)
    assert state.phase is Phase.RESETTING
    assert state.last_error is not None
    assert "keeps deletes for 30 days" in state.last_error.message
    assert state.consecutive_failures == 0  # a gap is not a failure of the source
    hover = status_of(state, now=clock()).hover
    assert "Why: the source keeps deletes for 30 days" in hover
    done = engine.run_cycle(KEY, connector)
    assert (done.outcome, done.swept) == (Outcome.COMPLETED, 1)
    assert _live(store) == set(source.ids())
    # Within the retention, cycles stay incremental.
    clock.advance(timedelta(days=29))
    assert engine.run_cycle(KEY, connector).outcome is Outcome.COMPLETED
