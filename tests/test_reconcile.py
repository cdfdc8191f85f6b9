"""The id-level reconcile: the id orders, the pure merge, the sinks' id pages, the engine's step.

A persistent count drift on a source whose connector can list its ids is reconciled inside the
cycle that finds it: ids compared in pages, missing records fetched by id and applied, extra
transactions tombstoned (never removed), with no full re-read. Ids are compared in the
connector's order: by code point, or as whole numbers (HubSpot's and Pipedrive's ids).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incsync import Outcome, StaleWriteError, SyncEngine
from incsync.connectors import InMemoryConnector, InMemorySource
from incsync.connectors.base import RawPage
from incsync.connectors.memory import iso_timestamp
from incsync.errors import SourceError
from incsync.reconcile import IdOrder, IdSide, id_differences
from incsync.records import RECONCILED, Record
from incsync.testing import ManualClock
from tests.helpers import Store, transactions_by_id
from tests.test_counts import DAY, KEY, RECONCILING, START, T0, _live, _source

TEXT_IDS = st.sets(st.text(alphabet="ab1Z_é", max_size=4))
NUMBERS = st.sets(st.integers(min_value=0, max_value=10**15))
# Whole numbers not written plainly, and text: what the numeric order does not admit.
# Arabic-Indic and fullwidth digits are digits to str.isdigit, not to the numeric order.
NOT_PLAIN = st.sampled_from(
    ["007", "00", "", "-1", "+5", "1.0", "1e3", "abc", " 12", "\u0661\u0662", "\uff11"]
)


def _merged(source: Sequence[str], host: Sequence[str], order: IdOrder) -> list[tuple[IdSide, str]]:
    return list(id_differences(iter(source), iter(host), order))


def _check_differences(
    found: list[tuple[IdSide, str]], source: set[str], host: set[str], order: IdOrder
) -> None:
    assert [record_id for _, record_id in found] == sorted(source ^ host, key=order.sort_key)
    assert {i for side, i in found if side is IdSide.MISSING_AT_HOST} == source - host
    assert {i for side, i in found if side is IdSide.EXTRA_AT_HOST} == host - source


@given(TEXT_IDS, TEXT_IDS)
def test_the_merge_in_code_point_order_finds_exactly_the_set_differences(
    source: set[str], host: set[str]
) -> None:
    """Missing = source - host and extra = host - source, in ascending order, each once."""
    order = IdOrder.CODE_POINT
    found = _merged(sorted(source), sorted(host), order)
    _check_differences(found, source, host, order)


@given(NUMBERS, NUMBERS)
def test_the_merge_in_numeric_order_finds_exactly_the_set_differences(
    source_numbers: set[int], host_numbers: set[int]
) -> None:
    """Ids listed by value ("9" before "10") merge into exactly the set differences, by value."""
    source = [str(n) for n in sorted(source_numbers)]
    host = [str(n) for n in sorted(host_numbers)]
    found = _merged(source, host, IdOrder.NUMERIC)
    _check_differences(found, set(source), set(host), IdOrder.NUMERIC)
    values = [int(record_id) for _, record_id in found]
    assert values == sorted(source_numbers ^ host_numbers)


@given(st.integers(min_value=0, max_value=10**30), st.integers(min_value=0, max_value=10**30))
def test_the_numeric_key_orders_plain_whole_numbers_by_value(a: int, b: int) -> None:
    """For the ids the numeric order admits, its key compares as their values do."""
    key = IdOrder.NUMERIC.sort_key
    assert IdOrder.NUMERIC.admits(str(a))
    assert (key(str(a)) < key(str(b))) == (a < b)
    assert (key(str(a)) == key(str(b))) == (a == b)


@given(NUMBERS, NUMBERS, NOT_PLAIN, st.booleans())
def test_an_id_the_numeric_order_does_not_admit_stops_the_merge_for_a_re_read(
    source_numbers: set[int], host_numbers: set[int], odd: str, at_source: bool
) -> None:
    """ "007" or "abc" among numeric ids is never compared (it would be missed or misplaced): the
    merge stops with a SourceError that asks for a whole re-read, wherever the id stands."""
    source = [str(n) for n in sorted(source_numbers)]
    host = [str(n) for n in sorted(host_numbers)]
    listed = source if at_source else host
    listed.insert(len(listed) // 2, odd)
    with pytest.raises(SourceError, match="not a whole number written plainly") as raised:
        _merged(source, host, IdOrder.NUMERIC)
    assert raised.value.resync_required


@pytest.mark.parametrize(
    ("order", "source", "host"),
    [
        (IdOrder.CODE_POINT, ["b", "a"], []),
        (IdOrder.CODE_POINT, [], ["a", "a"]),
        (IdOrder.NUMERIC, ["10", "9"], []),  # code point order where numbers were promised
        (IdOrder.NUMERIC, [], ["2", "2"]),
        (IdOrder.CODE_POINT, ["9", "10"], []),  # numbers where code point order was promised
    ],
)
def test_a_list_that_does_not_ascend_stops_the_merge_for_a_re_read(
    order: IdOrder, source: list[str], host: list[str]
) -> None:
    """Ids out of the order promised cannot be merged: a SourceError that asks for a re-read."""
    with pytest.raises(SourceError, match="did not ascend") as raised:
        _merged(source, host, order)
    assert raised.value.resync_required


def test_every_text_has_a_key_but_only_plain_whole_numbers_are_numeric() -> None:
    """The key orders any text (a sink lists whatever it holds); only some is admitted."""
    assert IdOrder.NUMERIC.sort_key("abc") == (3, "abc")
    assert IdOrder.CODE_POINT.sort_key("abc") == (0, "abc")
    assert [IdOrder.NUMERIC.admits(i) for i in ("0", "10", "007", "\uff11", "a")] == [
        True,
        True,
        False,
        False,
        False,
    ]
    assert all(IdOrder.CODE_POINT.admits(i) for i in ("0", "007", "", "é"))


# -- the sink ----------------------------------------------------------------------------------


def _record(record_id: str, deleted: bool = False) -> Record:
    return Record(id=record_id, updated_at=T0, payload={"n": record_id}, deleted=deleted)


def _pages(store: Store, key: str, limit: int, order: IdOrder) -> list[list[str]]:
    pages, after = [], None
    while page := store.list_live_ids(key, after, limit, order):
        pages.append(list(page))
        after = page[-1]
    return pages


def test_every_store_lists_live_ids_in_pages_and_tombstones_by_id(store: Store) -> None:
    """Pages ascend by code point after the last id; tombstones keep rows, say why, are fenced."""
    ids = ["b", "a", "B", "c1", "c10", "c2", "é"]
    store.apply(KEY, [_record(i) for i in ids] + [_record("gone", deleted=True)], 0, 1)
    store.apply("other/source", [_record("a0")], 0, 1)
    assert _pages(store, KEY, 3, IdOrder.CODE_POINT) == [
        ["B", "a", "b"],
        ["c1", "c10", "c2"],
        ["é"],
    ]
    assert store.list_live_ids(KEY, None, 3) == ["B", "a", "b"]  # code point order by default
    assert store.tombstone(KEY, ["a", "c10", "gone", "absent"], 0, 2, RECONCILED) == 2
    held = transactions_by_id(store, KEY)
    assert len(held) == 8  # nothing removed
    assert held["a"].record.deleted
    assert held["a"].deleted_reason == RECONCILED
    assert held["a"].record.payload == {"n": "a"}
    assert held["gone"].deleted_reason is None  # the source's own tombstone stays as it was
    assert list(store.list_live_ids(KEY, None, 10)) == ["B", "b", "c1", "c2", "é"]
    with pytest.raises(StaleWriteError):
        store.tombstone(KEY, ["b"], 0, 1, RECONCILED)
    assert not transactions_by_id(store, KEY)["b"].record.deleted


def test_every_store_lists_numeric_ids_by_value_in_pages(store: Store) -> None:
    """In numeric order "9" comes before "10" and "100", page after page, tombstones left out,
    the bound of each page compared by the same key; odd ids get their place by that key too."""
    numbers = [0, 1, 2, 9, 10, 11, 99, 100, 101, 1000, 12345678901234567890]
    store.apply(KEY, [_record(str(n)) for n in numbers] + [_record("55", deleted=True)], 0, 1)
    store.apply(KEY, [_record("x"), _record("007")], 0, 1)
    store.apply("other/source", [_record("5")], 0, 1)
    assert _pages(store, KEY, 4, IdOrder.NUMERIC) == [
        ["0", "1", "2", "9"],
        ["x", "10", "11", "99"],
        ["007", "100", "101", "1000"],
        ["12345678901234567890"],
    ]
    assert store.list_live_ids(KEY, "99", 2, IdOrder.NUMERIC) == ["007", "100"]
    assert store.list_live_ids(KEY, "50", 2, IdOrder.NUMERIC) == ["99", "007"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.sets(
        st.one_of(st.integers(0, 10**6).map(str), NOT_PLAIN, st.text("0123456789ab", max_size=3))
    ),
    st.sets(st.integers(0, 40)),
    st.integers(1, 7),
    st.sampled_from(IdOrder),
)
def test_a_stores_pages_are_its_live_ids_sorted_by_the_orders_key(
    store: Store, ids: set[str], deleted: set[int], limit: int, order: IdOrder
) -> None:
    """Whatever ids a store holds, its pages in an order are its live ids sorted by that order's
    key (the one rule, incsync.reconcile.IdOrder.sort_key), each once."""
    key = f"prop/{next(_KEYS)}"
    ordered = sorted(i for i in ids if i)  # ids are never empty
    live = {i for number, i in enumerate(ordered) if number not in deleted}
    store.apply(key, [_record(i, deleted=i not in live) for i in ordered], 0, 1)
    listed = list(itertools.chain.from_iterable(_pages(store, key, limit, order)))
    assert listed == sorted(live, key=order.sort_key)


_KEYS = itertools.count()


# -- the engine ----------------------------------------------------------------------------------


class CountingConnector(InMemoryConnector):
    """Counts what the reconcile asks of the source, to show no full read happened."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.listed: list[list[str]] = []
        self.fetched: list[list[str]] = []
        self.read_records = 0

    def fetch(self, window: object) -> object:  # type: ignore[override]
        for page in super().fetch(window):  # type: ignore[arg-type]
            self.read_records += len(page)
            yield page

    def list_ids(self) -> Iterator[list[str]]:
        for page in super().list_ids():
            self.listed.append(page)
            yield page

    def fetch_by_ids(self, ids: Sequence[str]) -> RawPage:
        self.fetched.append(list(ids))
        return super().fetch_by_ids(ids)


def _drifted(store: Store, connector: InMemoryConnector) -> tuple[SyncEngine, ManualClock]:
    """Sync the source, then plant a drift the incremental read cannot see, counted twice."""
    clock = ManualClock(START)
    engine = SyncEngine(store, policy=RECONCILING, clock=clock)
    engine.run_cycle(KEY, connector)
    source = connector.source
    source.purge(_nth(connector, 5))  # deleted at the source without a delete to read
    source.purge(_nth(connector, 6))
    source.put({"id": "late", "updated_at": iso_timestamp(T0 - DAY)})  # behind the cursor
    for _ in range(2):
        clock.advance(DAY)
        counted = engine.run_cycle(KEY, connector).counted
        assert counted is not None
        assert counted.drift == -1
    clock.advance(timedelta(hours=1))
    return engine, clock


def _nth(connector: InMemoryConnector, number: int) -> str:
    return "r" + f"{number:03d}" if connector.id_order is IdOrder.CODE_POINT else str(number)


def test_a_persistent_drift_is_reconciled_by_id_in_the_cycle(store: Store) -> None:
    """Missing fetched, extra tombstoned with the reason, no reset, no full read, counted again."""
    connector = CountingConnector(_source(30), page_size=7, lists_ids=True)
    engine, _ = _drifted(store, connector)
    connector.read_records = 0
    result = engine.run_cycle(KEY, connector)
    assert result.outcome is Outcome.COMPLETED
    assert (result.reconcile_fetched, result.reconcile_tombstoned, result.swept) == (1, 2, 0)
    assert connector.read_records <= 1  # the record at the cursor again, not a re-read of 30
    assert [len(page) for page in connector.listed] == [7, 7, 7, 7, 1]  # 29 live, in pages
    assert connector.fetched == [["late"], ["r005", "r006"]]
    assert _live(store) == set(connector.source.ids())
    held = transactions_by_id(store, KEY)
    assert len(held) == 31  # nothing removed
    assert held["r005"].deleted_reason == RECONCILED
    state = engine.state(KEY)
    assert state.generation == 0
    assert state.count_check is not None
    assert (state.count_check.drift, state.count_check.full_read_drift) == (0, 0)
    assert result.counted == state.count_check
    entry = engine.history(KEY, 1)[0]
    assert (entry.reconcile_fetched, entry.reconcile_tombstoned) == (1, 2)


def _numeric_source(count: int) -> InMemorySource:
    """Records with ids 0, 1, ..., count - 1: "9" and "10" order apart by code point."""
    source = InMemorySource()
    for number in range(count):
        stamp = iso_timestamp(T0 + timedelta(seconds=number))
        source.put({"id": str(number), "updated_at": stamp, "amount": number})
    return source


def test_a_source_listing_ids_by_value_is_reconciled_in_numeric_order(store: Store) -> None:
    """Ids 0..29 listed as numbers are merged with the host's listed the same way: the late
    record fetched, the two purged tombstoned, and nothing else touched."""
    connector = CountingConnector(
        _numeric_source(30), page_size=7, lists_ids=True, id_order=IdOrder.NUMERIC
    )
    engine, _ = _drifted(store, connector)
    connector.source.purge("late")
    connector.source.put({"id": "31", "updated_at": iso_timestamp(T0 - DAY)})
    result = engine.run_cycle(KEY, connector)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert (result.reconcile_fetched, result.reconcile_tombstoned) == (1, 2)
    assert connector.listed[0] == ["0", "1", "2", "3", "4", "7", "8"]
    assert connector.listed[1][-1] == "15"  # "10" after "9", not after "1"
    assert connector.fetched == [["31"], ["5", "6"]]
    assert _live(store) == set(connector.source.ids())


def test_an_id_not_written_plainly_under_numeric_order_re_reads_the_source(store: Store) -> None:
    """A host id "007" cannot be placed among numbers: the reconcile gives up for a reset, and
    the re-read that follows sweeps it, tombstoning what the source does not hold."""
    connector = InMemoryConnector(
        _numeric_source(30), page_size=7, lists_ids=True, id_order=IdOrder.NUMERIC
    )
    engine, _ = _drifted(store, connector)
    connector.source.purge("late")
    connector.source.put({"id": "31", "updated_at": iso_timestamp(T0 - DAY)})
    lease = engine.state(KEY).lease
    assert lease is not None
    store.apply(KEY, [_record("007")], 0, lease.token)  # as a host's own import might have
    result = engine.run_cycle(KEY, connector)
    assert result.outcome is Outcome.INTERRUPTED_RESET
    assert "not a whole number written plainly" in (result.error or "")
    assert engine.state(KEY).reset_pending
    again = engine.run_cycle(KEY, connector)
    assert again.outcome is Outcome.COMPLETED
    assert again.swept == 3  # "007" and the two purged
    assert _live(store) == set(connector.source.ids())


def test_an_extra_id_the_source_answers_deleted_ends_a_tombstone_however_it_is_stamped(
    store: Store,
) -> None:
    """A delete stamped before the version the host holds cannot supersede it when written; the
    source answering it deleted is still its answer: the id becomes a tombstone all the same."""
    connector = InMemoryConnector(_source(30), page_size=7, lists_ids=True)
    engine, _ = _drifted(store, connector)
    stale = iso_timestamp(T0 - DAY)  # before r007's version at the host
    connector.source.put({"id": "r007", "updated_at": stale, "deleted": True})
    result = engine.run_cycle(KEY, connector)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert result.reconcile_tombstoned == 3
    held = transactions_by_id(store, KEY)["r007"]
    assert held.record.deleted
    assert held.deleted_reason == RECONCILED
    assert _live(store) == set(connector.source.live_ids(None, 100))


class Racing(InMemoryConnector):
    """A source that changes between the listing of its ids and the fetch by id."""

    def list_ids(self) -> Iterator[list[str]]:
        for number, page in enumerate(super().list_ids()):
            if number == 0:
                self.source.purge("late")  # listed, then deleted before it is fetched
            # Created meanwhile, and already at the host by some earlier read: not listed here.
            yield [i for i in page if i != "r010"]


def test_reconcile_races_neither_resurrect_nor_tombstone_what_the_source_says(
    store: Store,
) -> None:
    """A record deleted after listing is not applied; one the listing missed is not tombstoned."""
    connector = Racing(_source(30), page_size=7, lists_ids=True)
    engine, _ = _drifted(store, connector)
    result = engine.run_cycle(KEY, connector)
    assert result.outcome is Outcome.COMPLETED
    held = transactions_by_id(store, KEY)
    assert "late" not in held
    assert not held["r010"].record.deleted  # asked for by id, it is there: kept live
    assert result.reconcile_tombstoned == 2
    assert _live(store) == set(connector.source.ids())


class FailingFetch(InMemoryConnector):
    """A source whose fetch by id fails."""

    def fetch_by_ids(self, ids: Sequence[str]) -> RawPage:
        raise SourceError("HTTP 500 from the batch read")


def test_a_failed_reconcile_fails_the_cycle_and_keeps_the_cursor(store: Store) -> None:
    """A source error while reconciling fails the cycle like any read; nothing is tombstoned."""
    connector = FailingFetch(_source(30), page_size=7, lists_ids=True)
    engine, _ = _drifted(store, connector)
    before = engine.state(KEY).cursor
    result = engine.run_cycle(KEY, connector)
    assert result.outcome is Outcome.FAILED
    assert engine.state(KEY).cursor == before
    assert not transactions_by_id(store, KEY)["r005"].record.deleted
