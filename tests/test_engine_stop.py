"""Stopping a running cycle, and giving its lease up however it ends (KeyboardInterrupt too)."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any

import pytest

from incsync import Cursor, Outcome, Phase, StoreError, SyncEngine, SyncPolicy
from incsync.connectors import InMemoryConnector, InMemorySource
from incsync.state import held_lease
from incsync.testing import ManualClock
from tests.helpers import Store, on_page, records_before

NOW = datetime(2026, 11, 13, 9, 41, 7, tzinfo=timezone.utc)
KEY = "acme/invoices"


def _source() -> InMemorySource:
    return records_before(NOW)


def _engine(store: Store) -> tuple[SyncEngine, ManualClock]:
    clock = ManualClock(NOW)
    return SyncEngine(store, clock=clock, policy=SyncPolicy(), holder="worker-1"), clock


def _key_of(source: InMemorySource, index: int) -> Cursor:
    """The cursor of the source's record number ``index`` (in (updated_at, id) order)."""
    raw = source.page(None, None, index + 1)[-1]
    return Cursor(datetime.fromisoformat(raw["updated_at"]), raw["id"])


def _interrupt() -> None:
    raise KeyboardInterrupt


def test_a_stop_ends_the_cycle_after_the_page_in_flight_and_the_next_carries_on(
    store: Store,
) -> None:
    """Set while page 2 is read, the stop lets that page be written with its checkpoint, then the
    cycle ends INTERRUPTED_STOP with the lease released; the source is not cancelled (its phase is
    unchanged) and the next cycle reads on from that checkpoint, completing the source."""
    source = _source()
    engine, clock = _engine(store)
    stop = threading.Event()
    # One reader: page 2 of the one window, read in order, ends at the 200th record.
    connector = InMemoryConnector(
        source, page_size=100, before_page=on_page(1, stop.set), partitions=1
    )

    result = engine.run_cycle(KEY, connector, stop=stop)

    assert result.outcome is Outcome.INTERRUPTED_STOP
    assert (result.pages, result.applied) == (2, 200)
    state = engine.state(KEY)
    assert state.cursor == result.cursor_after == _key_of(source, 199)
    assert state.phase is Phase.NEW
    assert held_lease(state, clock()) is None
    assert store.count_transactions(KEY) == 200

    rest = engine.run_cycle(KEY, InMemoryConnector(source, page_size=100), stop=threading.Event())
    assert rest.outcome is Outcome.COMPLETED
    assert (rest.cursor_before, rest.applied) == (state.cursor, 100)
    assert engine.state(KEY).phase is Phase.ACTIVE


def test_a_cancel_and_a_stop_together_end_the_cycle_as_cancelled(store: Store) -> None:
    """A cancel says more than a stop (the source stays cancelled): it is the outcome reported."""
    engine, _ = _engine(store)
    stop = threading.Event()

    def both() -> None:
        stop.set()
        engine.cancel(KEY)

    connector = InMemoryConnector(_source(), page_size=100, before_page=on_page(0, both))
    assert engine.run_cycle(KEY, connector, stop=stop).outcome is Outcome.INTERRUPTED_CANCEL


def test_a_keyboard_interrupt_inside_a_page_releases_the_lease_and_propagates(
    store: Store,
) -> None:
    """Ctrl-C while the connector fetches page 2: the interrupt reaches the caller, page 1 stays
    durable with its checkpoint, and the lease is released (the next cycle runs at once instead of
    being skipped for the lease's ten minutes)."""
    source = _source()
    engine, clock = _engine(store)
    # One reader: page 1 of the one window, read in order, ends at the 100th record.
    connector = InMemoryConnector(
        source, page_size=100, before_page=on_page(1, _interrupt), partitions=1
    )

    with pytest.raises(KeyboardInterrupt):
        engine.run_cycle(KEY, connector)

    state = engine.state(KEY)
    assert held_lease(state, clock()) is None
    assert state.cursor == _key_of(source, 99)
    again = engine.run_cycle(KEY, InMemoryConnector(source, page_size=100))
    assert again.outcome is Outcome.COMPLETED


def _raising_once(
    store: Store, name: str, error: BaseException, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Make ``store.<name>`` raise ``error`` on its first call while the cycle holds the lease."""
    original, load = getattr(store, name), store.load
    raised = [False]

    def patched(*args: Any, **kwargs: Any) -> Any:
        if not raised[0] and held_lease(load(KEY), NOW) is not None:
            raised[0] = True
            raise error
        return original(*args, **kwargs)

    monkeypatch.setattr(store, name, patched)


@pytest.mark.parametrize("step", ["load", "commit_page"])
def test_a_keyboard_interrupt_in_the_store_releases_the_lease(
    store: Store, step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while the cycle loads the state it just leased, or commits a page: the lease is
    released on the way out all the same."""
    engine, clock = _engine(store)
    _raising_once(store, step, KeyboardInterrupt(), monkeypatch)

    with pytest.raises(KeyboardInterrupt):
        engine.run_cycle(KEY, InMemoryConnector(_source(), page_size=100))

    monkeypatch.undo()
    assert held_lease(engine.state(KEY), clock()) is None


def test_a_release_that_fails_on_the_way_out_leaves_the_interrupt_to_propagate(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Best effort: when the store cannot release the lease either, the caller still gets the
    KeyboardInterrupt (not the store's error), and the lease is left to expire."""
    engine, clock = _engine(store)
    _raising_once(store, "release_lease", StoreError("the database went away"), monkeypatch)
    connector = InMemoryConnector(_source(), page_size=100, before_page=on_page(0, _interrupt))

    with pytest.raises(KeyboardInterrupt):
        engine.run_cycle(KEY, connector)

    lease = held_lease(engine.state(KEY), clock())
    assert lease is not None
    assert lease.holder == "worker-1"
