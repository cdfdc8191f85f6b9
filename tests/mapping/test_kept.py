"""Mapped transactions kept in step with the raw rows by every store, read by date, re-mapped."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from incsync import Outcome, Record, SQLiteStore, SyncEngine, SyncPolicy
from incsync.connectors import InMemoryConnector, InMemorySource
from incsync.connectors.memory import iso_timestamp
from incsync.errors import ConfigurationError
from incsync.mapping import (
    CANNOT_BE_MAPPED,
    DELETED_AT_SOURCE,
    NOT_A_TRANSACTION,
    VOIDED_AT_SOURCE,
    Kind,
    Line,
    MappedRow,
    Party,
    RemapPage,
    Status,
    TransactionMapping,
)
from incsync.records import RECONCILED, SWEPT
from incsync.stores.sqlite import SCHEMA_VERSION as SQLITE_SCHEMA_VERSION
from incsync.testing import InMemoryStore, ManualClock
from tests.helpers import StallingSink, Store, transactions_by_id
from tests.mapping.conftest import MakeStore

KEY = "acme/deals"
T0 = datetime(2026, 5, 4, 8, 0, tzinfo=timezone.utc)
POLICY = SyncPolicy(safety_lag=timedelta(seconds=30))

DEALS: dict[str, Any] = {
    "name": "test/deals",
    "where": [{"path": "pipeline", "not_in": ["partners"]}],
    "kind": "deal",
    "record_id": "id",
    "status": {
        "path": "stage",
        "table": {"won": "won", "lost": "lost", "void": "void"},
        "default": "open",
    },
    "date": "closed",
    "amount": "amount",
    "currency": {"path": "currency", "default": "USD"},
    "customer_id": "customer",
    "owner_id": "owner.id",
    "owner_name": "owner.name",
    "owner_email": "owner.email",
    "lines": {
        "path": "lines",
        "amount": "amount",
        "product_name": "product",
        "quantity": "qty",
        "unit_price": "price",
    },
    "custom": {
        "region": "region",
        "probability": {"path": "probability", "convert": "decimal"},
        "signed": {"path": "signed", "convert": "date"},
        "strategic": {"path": "strategic", "convert": "boolean"},
    },
}
MAPPING = TransactionMapping.from_data(DEALS)


def deal(number: int, **fields: Any) -> dict[str, Any]:
    """A deal of the in-memory source, closed on day ``number % 28 + 1`` of May 2026."""
    return {
        "id": f"d{number:03d}",
        "updated_at": iso_timestamp(T0 + timedelta(seconds=number)),
        "closed": f"2026-05-{number % 28 + 1:02d}",
        "amount": f"{number}.10",
        "stage": "won",
        "owner": {"id": f"u{number % 3}", "name": f"Owner {number % 3}", "email": "o@x.test"},
        "customer": "c1",
        "lines": [{"amount": "0.10", "product": "Seat", "qty": 1, "price": "0.1"}],
        "region": "emea",
        "probability": "0.35",
        "signed": "2026-04-30",
        "strategic": True,
        **fields,
    }


def source_of(count: int) -> InMemorySource:
    source = InMemorySource()
    for number in range(count):
        source.put(deal(number))
    return source


def rows(store: Store, **options: Any) -> dict[str, MappedRow]:
    return {
        row.transaction.record_id: row for row in store.read_mapped(KEY, limit=10_000, **options)
    }


def cycle(engine: SyncEngine, source: InMemorySource, clock: ManualClock) -> Any:
    clock.advance(timedelta(minutes=5))
    result = engine.run_cycle(KEY, InMemoryConnector(source, page_size=7))
    assert result.outcome is Outcome.COMPLETED, result.error
    return result


def synced(
    mapped_store: MakeStore, count: int, mappings: dict[str, TransactionMapping] | None = None
) -> tuple[Store, SyncEngine, InMemorySource, ManualClock]:
    store = mapped_store((mappings if mappings is not None else {KEY: MAPPING}).get)
    clock = ManualClock(T0 + timedelta(hours=1))
    engine = SyncEngine(store, policy=POLICY, clock=clock)
    source = source_of(count)
    cycle(engine, source, clock)
    return store, engine, source, clock


# -- kept in step -----------------------------------------------------------------------------


def test_a_cycle_keeps_every_applied_record_mapped_with_typed_exact_values(
    mapped_store: MakeStore,
) -> None:
    store, _, _, _ = synced(mapped_store, 12)
    kept = rows(store)
    assert sorted(kept) == [f"d{n:03d}" for n in range(12)]
    row = kept["d007"]
    value = row.transaction
    assert (value.kind, value.status, value.date) == (Kind.DEAL, Status.WON, date(2026, 5, 8))
    assert (value.amount, value.currency, value.source_key) == (Decimal("7.10"), "USD", KEY)
    assert value.owner == Party("u1", "Owner 1", "o@x.test")
    assert value.customer == Party("c1")
    assert value.lines == (
        Line(Decimal("0.10"), product_name="Seat", quantity=Decimal(1), unit_price=Decimal("0.1")),
    )
    assert dict(value.custom) == {
        "region": "emea",
        "probability": Decimal("0.35"),
        "signed": date(2026, 4, 30),
        "strategic": True,
    }
    assert (row.mapping, row.mapping_version) == ("test/deals", MAPPING.version)
    assert (row.voided, row.void_reason) == (False, None)
    assert row.updated_at == T0 + timedelta(seconds=7)
    # Exact: twelve amounts ending in .10 add up to the cent, as Decimal, not float.
    assert sum(each.transaction.amount for each in kept.values()) == Decimal("67.20")


def test_a_void_a_delete_and_a_deal_that_leaves_the_mapping_make_rows_void_never_gone(
    mapped_store: MakeStore,
) -> None:
    store, engine, source, clock = synced(mapped_store, 6)
    at = T0 + timedelta(minutes=30)
    source.update("d001", at, stage="void")
    source.delete("d002", at)
    source.update("d003", at, pipeline="partners")
    source.update("d004", at, amount="999.99")
    cycle(engine, source, clock)
    kept = rows(store)
    assert len(kept) == 6  # nothing removed
    assert (kept["d001"].voided, kept["d001"].void_reason) == (True, VOIDED_AT_SOURCE)
    assert kept["d001"].transaction.status is Status.VOID
    assert (kept["d002"].voided, kept["d002"].void_reason) == (True, DELETED_AT_SOURCE)
    assert kept["d002"].transaction.amount == Decimal("2.10")  # the last values stay
    assert (kept["d003"].voided, kept["d003"].void_reason) == (True, NOT_A_TRANSACTION)
    assert (kept["d004"].voided, kept["d004"].transaction.amount) == (False, Decimal("999.99"))
    assert set(rows(store, include_voided=False)) == {"d000", "d004", "d005"}
    # A deal back in the mapping's pipelines counts again.
    source.update("d003", at + timedelta(minutes=1), pipeline="direct")
    cycle(engine, source, clock)
    assert rows(store)["d003"].voided is False


def test_a_record_the_mapping_cannot_read_is_set_aside_and_the_cycle_goes_on(
    mapped_store: MakeStore,
) -> None:
    store = mapped_store({KEY: MAPPING})
    clock = ManualClock(T0 + timedelta(hours=1))
    engine = SyncEngine(store, policy=POLICY, clock=clock)
    source = source_of(4)
    source.put({**deal(9), "closed": None})
    result = cycle(engine, source, clock)
    assert result.applied == 4
    # Each record fetched is applied, already held, or set aside: d009 as often as it was read
    # (twice when a read in partitions reads its last partition again).
    assert result.rejected == result.fetched - result.applied - result.already_applied >= 1
    [refused] = engine.rejected(KEY)
    assert refused.record_id == "d009"
    assert refused.reason == f"{CANNOT_BE_MAPPED} by test/deals: date: no value at closed"
    assert "d009" not in transactions_by_id(store, KEY)  # neither raw nor mapped
    assert "d009" not in rows(store)
    # A later version that cannot be mapped leaves both rows at the version before.
    source.update("d001", T0 + timedelta(minutes=30), amount="lots")
    result = cycle(engine, source, clock)
    assert result.rejected >= 1
    assert transactions_by_id(store, KEY)["d001"].record.payload["amount"] == "1.10"
    assert rows(store)["d001"].transaction.amount == Decimal("1.10")
    # Fixed at the source, both come in.
    source.update("d009", T0 + timedelta(minutes=31), closed="2026-05-20")
    source.update("d001", T0 + timedelta(minutes=31), amount="2.00")
    cycle(engine, source, clock)
    assert rows(store)["d009"].transaction.date == date(2026, 5, 20)
    assert rows(store)["d001"].transaction.amount == Decimal("2.00")


def test_an_older_version_replayed_never_overwrites_the_mapped_row(
    mapped_store: MakeStore,
) -> None:
    store = mapped_store({KEY: MAPPING})
    newer = Record("d001", T0 + timedelta(minutes=1), deal(1, amount="5.00"))
    older = Record("d001", T0, deal(1, amount="4.00"))
    store.apply(KEY, [newer], 0, 1)
    assert store.apply(KEY, [older], 0, 1).applied == 0
    assert rows(store)["d001"].transaction.amount == Decimal("5.00")
    # Two versions in one page: the later one is what both rows hold.
    store.apply(
        KEY,
        [
            Record("d002", T0, deal(2)),
            Record("d002", T0 + timedelta(seconds=1), deal(2, amount="6.00")),
        ],
        0,
        1,
    )
    assert rows(store)["d002"].transaction.amount == Decimal("6.00")


def test_a_source_without_a_mapping_keeps_raw_rows_only(mapped_store: MakeStore) -> None:
    store = mapped_store({})
    store.apply(KEY, [Record("d001", T0, {"anything": True})], 0, 1)
    assert rows(store) == {}
    assert store.mapping_for(KEY) is None


def test_a_sweep_and_an_id_reconcile_void_the_rows_of_what_they_tombstone(
    mapped_store: MakeStore,
) -> None:
    store, engine, source, clock = synced(mapped_store, 10)
    for number in (3, 7):
        source.purge(f"d{number:03d}")  # gone without a trace
    engine.reset(KEY)
    result = cycle(engine, source, clock)
    assert result.swept == 2
    kept = rows(store)
    assert {i for i, row in kept.items() if row.voided} == {"d003", "d007"}
    assert {kept[i].void_reason for i in ("d003", "d007")} == {SWEPT}
    generation = store.load(KEY).generation
    assert store.tombstone(KEY, ["d005"], generation, 99, RECONCILED) == 1
    assert (rows(store)["d005"].voided, rows(store)["d005"].void_reason) == (True, RECONCILED)


# -- reading ----------------------------------------------------------------------------------


def test_rows_are_read_by_business_date_in_keyset_pages(mapped_store: MakeStore) -> None:
    store, engine, source, clock = synced(mapped_store, 60)
    source.update("d005", T0 + timedelta(minutes=30), stage="void")
    cycle(engine, source, clock)
    since, until = date(2026, 5, 3), date(2026, 5, 10)
    expected = sorted(
        (row.transaction.date, row.transaction.record_id)
        for row in rows(store).values()
        if since <= row.transaction.date < until
    )
    assert len(expected) == 16
    pages: list[int] = []
    read = store.read_mapped

    def counting(*args: Any, **kwargs: Any) -> Any:
        page = read(*args, **kwargs)
        pages.append(len(page))
        return page

    store.read_mapped = counting  # type: ignore[method-assign]
    got = list(engine.mapped_transactions(KEY, since=since, until=until, page_size=4))
    assert [(row.transaction.date, row.transaction.record_id) for row in got] == expected
    assert pages == [4, 4, 4, 4, 0]  # a full last page is followed by an empty one
    live = list(engine.mapped_transactions(KEY, since=since, until=until, include_voided=False))
    assert len(live) == 15  # d005 (6 May) is void


def test_a_page_asked_after_a_position_is_not_shifted_by_rows_written_before_it(
    mapped_store: MakeStore,
) -> None:
    store, _, _, _ = synced(mapped_store, 20)
    first = store.read_mapped(KEY, limit=5)
    store.apply(KEY, [Record("a-early", T0, deal(0, id="a-early", closed="2026-05-01"))], 0, 1)
    second = store.read_mapped(KEY, after=first[-1].position, limit=5)
    whole = [row.transaction.record_id for row in store.read_mapped(KEY, limit=100)]
    start = whole.index(first[-1].transaction.record_id) + 1
    assert [row.transaction.record_id for row in second] == whole[start : start + 5]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"since": datetime(2026, 5, 1, tzinfo=timezone.utc)}, "expected a date"),
        ({"since": date(2026, 5, 2), "until": date(2026, 5, 1)}, "is before since"),
        ({"page_size": 0}, "page_size"),
    ],
)
def test_reading_refuses_a_bad_range_at_the_call(options: dict[str, Any], message: str) -> None:
    engine = SyncEngine(InMemoryStore(mappings={KEY: MAPPING}))
    with pytest.raises(ConfigurationError, match=message):
        engine.mapped_transactions(KEY, **options)


# -- re-mapping -------------------------------------------------------------------------------

IN_EUROS = TransactionMapping.from_data(
    {**DEALS, "currency": {"path": "currency", "default": "EUR"}}
)


def test_a_remap_recomputes_rows_from_stored_payloads_without_the_source(
    mapped_store: MakeStore,
) -> None:
    mappings = {KEY: MAPPING}
    store, engine, source, clock = synced(mapped_store, 30, mappings)
    source.delete("d004", T0 + timedelta(minutes=30))
    cycle(engine, source, clock)
    mappings[KEY] = IN_EUROS
    assert IN_EUROS.version != MAPPING.version
    # Written after the change: already at the new version, skipped by the re-map.
    source.update("d005", T0 + timedelta(minutes=31), amount="50.00")
    cycle(engine, source, clock)
    result = engine.remap(KEY, page_size=8)
    assert (result.mapping, result.mapping_version) == ("test/deals", IN_EUROS.version)
    assert (result.examined, result.written, result.voided) == (29, 28, 1)
    assert result.pages == 4
    kept = rows(store)
    live = [row for row in kept.values() if not row.voided]
    assert all(row.transaction.currency == "EUR" for row in live)
    assert all(row.mapping_version == IN_EUROS.version for row in live)
    assert kept["d005"].transaction.amount == Decimal("50.00")
    assert (kept["d004"].voided, kept["d004"].void_reason) == (True, DELETED_AT_SOURCE)
    again = engine.remap(KEY)
    assert (again.pages, again.examined) == (0, 0)


def test_a_remap_that_dies_after_page_k_resumes_after_its_last_committed_page(
    mapped_store: MakeStore,
) -> None:
    mappings = {KEY: MAPPING}
    store, engine, _, _ = synced(mapped_store, 30, mappings)
    mappings[KEY] = IN_EUROS
    done: list[RemapPage] = []

    def crash_after_three(page: RemapPage) -> None:
        done.append(page)
        if len(done) == 3:
            raise RuntimeError("the worker died")

    with pytest.raises(RuntimeError, match="the worker died"):
        engine.remap(KEY, page_size=4, on_page=crash_after_three)
    versions = [row.mapping_version for row in rows(store).values()]
    assert versions.count(IN_EUROS.version) == 12  # three pages committed, none after
    resumed = engine.remap(KEY, page_size=4)
    assert (resumed.examined, resumed.written, resumed.pages) == (18, 18, 5)
    assert {row.mapping_version for row in rows(store).values()} == {IN_EUROS.version}


def test_a_stored_record_the_new_mapping_cannot_read_makes_its_row_void(
    mapped_store: MakeStore,
) -> None:
    mappings = {KEY: MAPPING}
    store, engine, _, _ = synced(mapped_store, 5, mappings)
    mappings[KEY] = MAPPING.with_fields(date="signed_on")
    result = engine.remap(KEY)
    assert len(result.unmappable) == 5
    assert result.unmappable[0].reason == (
        f"{CANNOT_BE_MAPPED} by test/deals: date: no value at signed_on"
    )
    kept = rows(store)
    assert all(row.voided for row in kept.values())
    assert kept["d001"].void_reason == result.unmappable[1].reason
    assert kept["d001"].transaction.amount == Decimal("1.10")  # values as last mapped


def test_remap_needs_a_mapping_and_a_store_that_keeps_mapped_rows() -> None:
    with pytest.raises(ConfigurationError, match="has no mapping"):
        SyncEngine(InMemoryStore()).remap(KEY)

    inner = InMemoryStore(mappings={KEY: MAPPING})
    engine = SyncEngine(inner, sink=StallingSink(inner, meanwhile=lambda page: None))
    with pytest.raises(ConfigurationError, match="keeps no mapped transactions"):
        engine.remap(KEY)


def test_mappings_must_be_mappings() -> None:
    with pytest.raises(ConfigurationError, match=r"mappings\['k'\] is not a TransactionMapping"):
        InMemoryStore(mappings={"k": DEALS})  # type: ignore[dict-item]


def test_a_page_applied_twice_leaves_the_mapped_rows_as_once(mapped_store: MakeStore) -> None:
    store = mapped_store({KEY: MAPPING})
    store.apply(KEY, [Record("d002", T0, deal(2))], 0, 1)
    page = [Record(f"d{n:03d}", T0 + timedelta(seconds=n), deal(n)) for n in (0, 1, 3, 4)]
    page.append(Record("d002", T0 + timedelta(minutes=1), deal(2), deleted=True))
    store.apply(KEY, page, 0, 1)
    once = rows(store)
    assert store.apply(KEY, page, 0, 1).applied == 0
    assert rows(store) == once
    assert once["d002"].voided


def test_a_sqlite_file_of_schema_8_gains_the_mapped_tables_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with SQLiteStore(path) as store:
        connection = store._connection()
        connection.execute("DROP TABLE incsync_mapped")
        connection.execute("DROP TABLE incsync_remaps")
        connection.execute("UPDATE incsync_meta SET value = '8' WHERE name = 'schema_version'")
    with SQLiteStore(path, mappings={KEY: MAPPING}) as store:
        store.apply(KEY, [Record("d001", T0, deal(1))], 0, 1)
        assert rows(store)["d001"].transaction.amount == Decimal("1.10")
        version = store._connection().execute(
            "SELECT value FROM incsync_meta WHERE name = 'schema_version'"
        )
        assert version.fetchone()[0] == str(SQLITE_SCHEMA_VERSION)


def _owner_index_plan(connection: Any) -> str:
    query = (
        "SELECT record_id FROM incsync_mapped WHERE source_key = ? AND owner_id = ? "
        "AND business_date >= ? ORDER BY business_date"
    )
    plan = connection.execute(f"EXPLAIN QUERY PLAN {query}", (KEY, "u1", "2026-05-01"))
    return " ".join(str(row[3]) for row in plan)


def test_a_sqlite_file_of_schema_11_keeps_only_rows_with_an_owner_in_the_owner_index(
    tmp_path: Path,
) -> None:
    """Opening a schema-11 file replaces its owner index with one of the rows that have an owner
    (a row without one is never read by owner); a query by owner still reads that index."""
    path = tmp_path / "old.db"
    with SQLiteStore(path) as store:
        connection = store._connection()
        connection.execute("DROP INDEX incsync_mapped_by_owner")
        connection.execute(
            "CREATE INDEX incsync_mapped_by_owner "
            "ON incsync_mapped (source_key, owner_id, business_date)"
        )
        connection.execute("UPDATE incsync_meta SET value = '11' WHERE name = 'schema_version'")
    with SQLiteStore(path, mappings={KEY: MAPPING}) as store:
        store.apply(
            KEY, [Record("d001", T0, deal(1)), Record("d002", T0, deal(2, owner=None))], 0, 1
        )
        connection = store._connection()
        index_count = connection.execute(
            "SELECT count(*) FROM incsync_mapped INDEXED BY incsync_mapped_by_owner "
            "WHERE source_key = ? AND owner_id IS NOT NULL",
            (KEY,),
        ).fetchone()[0]
        assert index_count == 1
        assert "incsync_mapped_by_owner" in _owner_index_plan(connection)
        (definition,) = connection.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'incsync_mapped_by_owner'"
        ).fetchone()
        assert definition.endswith("WHERE owner_id IS NOT NULL")
        assert set(rows(store)) == {"d001", "d002"}
