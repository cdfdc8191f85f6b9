"""SyncEngine.rewind: read a source again from a date, without a reset, on every store."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from incsync import ConfigurationError, Cursor, NaiveDatetimeError, Outcome, Phase, SyncEngine
from incsync.connectors import InMemoryConnector, InMemorySource
from incsync.connectors.memory import iso_timestamp
from incsync.testing import InMemoryStore, ManualClock
from tests.helpers import Store, transactions_by_id

NOW = datetime(2026, 11, 13, 9, 41, 7, tzinfo=timezone.utc)
FIRST = NOW - timedelta(hours=2)
KEY = "acme/invoices"


def _at(number: int) -> datetime:
    """The update time of record ``number``: one a second from FIRST."""
    return FIRST + timedelta(seconds=number)


def _put(source: InMemorySource, numbers: range) -> None:
    for number in numbers:
        source.put({"id": f"r{number:04d}", "updated_at": iso_timestamp(_at(number))})


def _synced(store: Store, count: int) -> tuple[SyncEngine, ManualClock, InMemorySource]:
    """Return an engine whose first cycle read ``count`` records, and its clock and source."""
    clock = ManualClock(NOW)
    engine = SyncEngine(store, clock=clock)
    source = InMemorySource()
    _put(source, range(count))
    result = engine.run_cycle(KEY, InMemoryConnector(source, page_size=15))
    assert (result.outcome, result.applied) == (Outcome.COMPLETED, count)
    clock.advance(timedelta(minutes=1))
    return engine, clock, source


def test_a_rewind_re_reads_and_re_applies_from_its_date_and_deletes_and_sweeps_nothing(
    store: Store,
) -> None:
    """The next cycle reads from the date, re-applies what it reads once, and completes; no row
    is removed, and records gone from the source (which a reset's read would sweep) stay live."""
    engine, _, source = _synced(store, 40)
    top = engine.state(KEY).cursor
    source.purge("r0005")
    source.purge("r0035")

    state = engine.rewind(KEY, _at(30))
    assert (state.cursor, state.generation, state.phase) == (Cursor(_at(30), ""), 1, Phase.ACTIVE)
    assert not state.reset_pending

    again = engine.run_cycle(KEY, InMemoryConnector(source, page_size=15))
    assert again.outcome is Outcome.COMPLETED
    assert again.cursor_before == Cursor(_at(30), "")
    assert (again.fetched, again.applied, again.already_applied, again.swept) == (9, 9, 0, 0)
    assert again.cursor_after == top
    held = transactions_by_id(store, KEY)
    assert len(held) == 40
    assert not any(transaction.record.deleted for transaction in held.values())
    assert {held[f"r{n:04d}"].generation for n in range(30)} == {0}
    assert {held[f"r{n:04d}"].generation for n in range(36, 40)} == {1}
    assert engine.run_cycle(KEY, InMemoryConnector(source)).applied == 0


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
def test_a_cycle_running_during_a_rewind_cannot_move_the_cursor_past_it(
    store: Store, ordered: bool
) -> None:
    """The running cycle's next checkpoint is refused (an unordered one would otherwise move the
    cursor at its completion): it ends interrupted, and the next cycle reads from the date."""
    engine, clock, source = _synced(store, 20)
    _put(source, range(20, 50))

    def rewind_before_page_2(number: int) -> None:
        if number == 1:
            engine.rewind(KEY, _at(5))

    connector = InMemoryConnector(
        source, page_size=10, ordered=ordered, before_page=rewind_before_page_2
    )
    interrupted = engine.run_cycle(KEY, connector)
    assert interrupted.outcome is Outcome.INTERRUPTED_RESET
    state = engine.state(KEY)
    assert (state.cursor, state.generation, state.consecutive_failures) == (
        Cursor(_at(5), ""),
        1,
        0,
    )

    clock.advance(timedelta(minutes=1))
    result = engine.run_cycle(KEY, InMemoryConnector(source, page_size=10, ordered=ordered))
    assert result.outcome is Outcome.COMPLETED
    assert result.cursor_before == Cursor(_at(5), "")
    assert (result.applied, result.already_applied) == (45, 0)  # records 5 to 49, once each
    assert len(transactions_by_id(store, KEY)) == 50


def test_a_source_being_reset_is_not_rewound(store: Store) -> None:
    """Until a reset's full read completes, a rewind is refused and changes nothing."""
    engine, _, _ = _synced(store, 10)
    reset = engine.reset(KEY)
    with pytest.raises(ConfigurationError, match="is being reset"):
        engine.rewind(KEY, _at(3))
    assert engine.state(KEY) == reset


def test_a_rewind_needs_an_aware_time_and_a_source_key() -> None:
    """A naive date or a blank key is refused before the store is asked."""
    engine = SyncEngine(InMemoryStore())
    with pytest.raises(NaiveDatetimeError, match="since"):
        engine.rewind(KEY, datetime(2026, 11, 1))  # noqa: DTZ001 - the point of the test
    with pytest.raises(ConfigurationError, match="source_key"):
        engine.rewind(" ", NOW)
    assert engine.states() == []
