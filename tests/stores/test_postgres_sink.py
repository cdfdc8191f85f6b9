"""PostgresStore as a transaction sink: what it stores, in what order, and whole engine cycles.

Every test runs on a schema of its own (see tests/stores/postgres_server.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incsync import (
    Checkpoint,
    ErrorInfo,
    Lease,
    Outcome,
    Phase,
    Record,
    SourceState,
    SyncEngine,
)
from incsync.connectors.memory import InMemoryConnector
from incsync.connectors.sample import sample_source
from incsync.stores.postgres import PostgresStore
from incsync.testing import InMemoryStore, ManualClock
from incsync.timestamps import parse_timestamp
from tests.stores.postgres_server import CONNINFO, fresh_schema, migrated_store
from tests.strategies import clustered_datetimes, cursors, utc_datetimes

NOW = datetime(2026, 11, 13, 9, 0, tzinfo=timezone.utc)
TTL = timedelta(minutes=10)
KEY = "acme/quickbooks"


def _record(record_id: str, second: int, **payload: object) -> Record:
    return Record(record_id, NOW + timedelta(seconds=second), {"id": record_id, **payload})


def test_payloads_postgres_cannot_hold_are_set_aside(postgres_store: PostgresStore) -> None:
    """NaN, NUL and lone surrogates are set aside with their reason; dates, decimals and text of
    any script are stored. Set-aside text PostgreSQL cannot hold is kept escaped.
    """
    store = postgres_store
    good = Record("ok", NOW, {"when": NOW, "amount": Decimal("1.10"), "name": "Zoë 東京 🧾"})
    bad = [
        Record("nan", NOW, {"amount": float("nan")}),
        Record("nul", NOW, {"note": "a\x00b"}),
        Record("key", NOW, {"a\x00": 1}),
        Record("surrogate", NOW, {"note": "\ud800"}),
        Record("id\x00", NOW, {}),
        Record("blob", NOW, {"blob": object()}),
    ]
    lease = store.acquire_lease(KEY, "one", NOW, TTL)
    assert lease is not None
    result, _ = store.commit_page(KEY, [good, *bad], lease, 0, Checkpoint(None), NOW, TTL)
    assert result.applied == 1
    assert sorted(item.record_id or "" for item in result.rejected) == sorted(
        ["nan", "nul", "key", "surrogate", "id\\x00", "blob"]
    )
    [stored] = store.transactions(KEY)
    assert stored.record.payload == {
        "when": NOW.isoformat(),
        "amount": "1.10",
        "name": "Zoë 東京 🧾",
    }
    kept = {item.record_id: item.reason for item in store.list_rejected(KEY)}
    assert set(kept) == {"nan", "nul", "key", "surrogate", "id\\x00", "blob"}
    assert "JSON" in kept["nan"]
    assert "NUL" in kept["nul"]


def test_transactions_stream_in_code_point_order_across_batches(
    postgres_store: PostgresStore,
) -> None:
    """More records than one batch come back once each, in the order Python sorts their ids."""
    ids = [f"{prefix}{number}" for number in range(1_250) for prefix in ("a", "B", "é")][:2_600]
    postgres_store.apply(KEY, [_record(record_id, 0) for record_id in ids], 0, 1)
    streamed = [t.record.id for t in postgres_store.transactions(KEY)]
    assert streamed == sorted(ids)


# -- properties ------------------------------------------------------------------------------

_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
_PAYLOADS = st.dictionaries(
    st.text(
        alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=6
    ),
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), _TEXT),
    max_size=4,
)
_RECORDS = st.builds(
    Record,
    id=st.sampled_from("abcde"),
    updated_at=clustered_datetimes(),
    payload=_PAYLOADS,
    deleted=st.booleans(),
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pages=st.lists(st.lists(_RECORDS, max_size=6), max_size=6),
    generations=st.lists(st.integers(0, 2), min_size=6, max_size=6),
)
def test_postgres_and_memory_sinks_agree(
    postgres_store: PostgresStore, pages: list[list[Record]], generations: list[int]
) -> None:
    """The PostgreSQL upsert decides like incsync.records.supersedes: the same pages (from mixed
    generations), applied and then replayed, write the same counts and leave the same records as
    the in-memory sink, and applying what is held again writes nothing.
    """
    key = f"agree/{len(postgres_store.list_states())}"
    postgres_store.cancel(key)  # a distinct source per example
    memory = InMemoryStore()
    steps = list(zip(pages, generations[: len(pages)], strict=True))
    for page, generation in steps * 2:
        assert postgres_store.apply(key, page, generation, 1).applied == (
            memory.apply(key, page, generation, 1).applied
        )
    held = [(t.record, t.generation) for t in postgres_store.transactions(key)]
    assert held == [(t.record, t.generation) for t in memory.transactions(key)]
    for record, generation in held:
        assert postgres_store.apply(key, [record], generation, 1).applied == 0


_STATES = st.builds(
    SourceState,
    key=st.just(KEY),
    phase=st.sampled_from(Phase),
    generation=st.integers(min_value=0, max_value=2**62),
    cursor=st.none() | cursors(utc_datetimes()),
    last_change=st.none() | utc_datetimes(),
    last_sync=st.none() | utc_datetimes(),
    last_attempt=st.none() | utc_datetimes(),
    consecutive_failures=st.integers(min_value=0, max_value=1000),
    last_error=st.none()
    | st.builds(ErrorInfo, _TEXT, _TEXT, utc_datetimes(), st.booleans(), st.booleans()),
    lease=st.none()
    | st.builds(Lease, _TEXT, utc_datetimes(), st.integers(min_value=1, max_value=2**62)),
    not_before=st.none() | utc_datetimes(),
    last_cycle_rejected=st.integers(min_value=0, max_value=10**6),
    reset_pending=st.booleans(),
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=_STATES)
def test_postgres_round_trips_every_state(
    postgres_store: PostgresStore, state: SourceState
) -> None:
    """Whatever a state holds, PostgreSQL gives back an equal one (times to the microsecond)."""
    postgres_store._update(KEY, lambda _stored: state)
    assert postgres_store.load(KEY) == state


# -- the engine ------------------------------------------------------------------------------


def test_sync_engine_cycles_keep_postgres_equal_to_the_source(
    postgres_store: PostgresStore,
) -> None:
    """A full cycle, an incremental one after changes and deletions, and one after a reset each
    leave the PostgreSQL sink exactly equal to the source.
    """
    end = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)
    source = sample_source(1_500, end=end, seed=3)
    clock = ManualClock(end + timedelta(hours=1))
    engine = SyncEngine(postgres_store, clock=clock)
    connector = InMemoryConnector(source, page_size=200)

    def assert_equal() -> None:
        truth = source.snapshot()
        held = {t.record.id: t.record for t in postgres_store.transactions("acme/invoices")}
        assert postgres_store.count_transactions("acme/invoices") == len(truth)
        assert set(held) == set(truth)
        for record_id, raw in truth.items():
            assert held[record_id].updated_at == parse_timestamp(raw["updated_at"])
            assert dict(held[record_id].payload) == raw
            assert held[record_id].deleted is bool(raw.get(source.deleted_field, False))

    first = engine.run_cycle("acme/invoices", connector)
    assert (first.outcome, first.applied) == (Outcome.COMPLETED, 1_500)
    assert_equal()

    clock.advance(timedelta(hours=1))
    ids = sorted(source.snapshot())
    for record_id in ids[:30]:
        source.update(record_id, clock(), note="edited")
    for record_id in ids[30:40]:
        source.delete(record_id, clock())
    clock.advance(timedelta(hours=1))
    second = engine.run_cycle("acme/invoices", connector)
    assert (second.outcome, second.applied) == (Outcome.COMPLETED, 40)
    assert_equal()

    engine.reset("acme/invoices")
    third = engine.run_cycle("acme/invoices", connector)
    assert (third.outcome, third.applied) == (Outcome.COMPLETED, 1_500)
    assert_equal()
    assert engine.state("acme/invoices").phase is Phase.ACTIVE


def test_fresh_schema_helper_drops_its_schema() -> None:
    """The fixture's schema is gone once the test is over, so runs leave nothing behind."""
    with fresh_schema() as schema, migrated_store(schema) as store:
        store.apply(KEY, [_record("a", 0)], 0, 1)
    with psycopg.connect(CONNINFO) as connection:
        found = connection.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        assert found.fetchall() == []
