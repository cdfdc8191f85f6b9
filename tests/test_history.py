"""The cycle history: what every way a cycle ends keeps, in every store, and how long it is kept."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest

from incsync import (
    Checkpoint,
    ConfigurationError,
    CycleEntry,
    CycleResult,
    ErrorInfo,
    HistoryRetention,
    HistorySummary,
    InMemoryStore,
    LeaseLostError,
    NaiveDatetimeError,
    Outcome,
    RateLimitedError,
    SourceError,
    SQLiteStore,
    SyncEngine,
    SyncPolicy,
    TransientSourceError,
    Window,
    summarize,
)
from incsync.connectors import BaseConnector, InMemoryConnector, InMemorySource
from incsync.connectors.base import RawPage
from incsync.connectors.memory import iso_timestamp
from incsync.history import cycle_entry, retained
from incsync.stores import _postgres_sql as postgres_sql
from incsync.stores import sqlite as sqlite_module
from incsync.stores.postgres import PostgresStore
from incsync.telemetry import CycleContextFilter
from incsync.testing import ManualClock
from tests.helpers import Store, entry_of, on_page, records_before
from tests.stores.postgres_server import CONNINFO

NOW = datetime(2026, 11, 13, 9, 41, 7, tzinfo=timezone.utc)
KEY = "acme/invoices"
SECRET = "sk_live_SENTINEL_9c1f"


def _source(count: int = 300) -> InMemorySource:
    return records_before(NOW, count)


def _engine(store: Store, clock: ManualClock) -> SyncEngine:
    return SyncEngine(store, clock=clock, policy=SyncPolicy(), holder="worker-1")


class Failing(BaseConnector):
    """Reads one good page of two records, then fails with ``error``; its secret is SECRET."""

    ordered = True

    def __init__(self, error: Exception) -> None:
        self.error = error

    def fetch(self, window: Window) -> Iterator[RawPage]:
        yield [
            {"id": "a", "updated_at": iso_timestamp(NOW - timedelta(hours=2))},
            {"id": "b", "updated_at": iso_timestamp(NOW - timedelta(hours=2))},
        ]
        raise self.error

    def secrets(self) -> list[str]:
        return [SECRET]


def _same_as_result(entry: CycleEntry, result: CycleResult) -> None:
    """The entry says what run_cycle reported."""
    assert entry.outcome is result.outcome
    assert entry.started == result.started_at
    assert (entry.pages, entry.fetched, entry.applied) == (
        result.pages,
        result.fetched,
        result.applied,
    )
    assert (entry.already_applied, entry.rejected, entry.swept) == (
        result.already_applied,
        result.rejected,
        result.swept,
    )
    assert (entry.reconcile_fetched, entry.reconcile_tombstoned) == (
        result.reconcile_fetched,
        result.reconcile_tombstoned,
    )
    assert (entry.error_class, entry.error) == (result.error_class, result.error)
    assert entry.cycle_id == result.cycle_id


def test_every_way_a_cycle_ends_is_kept_newest_first_and_a_skipped_cycle_is_not(
    store: Store,
) -> None:
    """Completed, failed (with the source's wait), interrupted by a stop, a cancel, a reset made
    while it ran, and the engine's own reset: each cycle's entry is kept with its outcome, counts,
    worker, generation and times, its error redacted; skipped cycles leave none."""
    clock = ManualClock(NOW)
    engine = _engine(store, clock)
    source = _source()
    results: list[CycleResult] = []
    generations: list[int] = []

    def run(connector: BaseConnector, stop: threading.Event | None = None) -> CycleResult:
        generations.append(engine.state(KEY).generation)
        clock.advance(timedelta(minutes=1))
        result = engine.run_cycle(KEY, connector, stop=stop)
        clock.advance(timedelta(seconds=5))
        results.append(result)
        return result

    stop = threading.Event()

    def one_reader(before_page: Callable[[int], None]) -> InMemoryConnector:
        # One reader: each hook runs once, at its page of the one window (each partition has its
        # own pages, so its own page 1 to move the clock at).
        return InMemoryConnector(source, page_size=100, before_page=before_page, partitions=1)

    run(one_reader(on_page(0, stop.set)), stop)
    run(one_reader(on_page(1, lambda: clock.advance(timedelta(seconds=3)))))
    run(Failing(TransientSourceError(f"HTTP 503 from https://api.example.com/?key={SECRET}")))
    retry_at = clock() + timedelta(minutes=30)
    run(Failing(RateLimitedError("429 Too Many Requests", retry_at=retry_at)))
    clock.set(retry_at)
    cancel = on_page(0, lambda: engine.cancel(KEY))
    run(one_reader(cancel))
    skipped = engine.run_cycle(KEY, InMemoryConnector(source))
    assert skipped.outcome is Outcome.SKIPPED_CANCELLED
    engine.resume(KEY)
    reset = on_page(0, lambda: engine.reset(KEY))
    run(one_reader(reset))
    run(Failing(SourceError("the change log expired", resync_required=True)))

    outcomes = [result.outcome for result in results]
    assert outcomes == [
        Outcome.INTERRUPTED_STOP,
        Outcome.COMPLETED,
        Outcome.FAILED,
        Outcome.FAILED,
        Outcome.INTERRUPTED_CANCEL,
        Outcome.INTERRUPTED_RESET,
        Outcome.INTERRUPTED_RESET,
    ]
    history = engine.history(KEY)
    assert [entry.outcome for entry in history] == outcomes[::-1]
    assert len({entry.cycle_id for entry in history} - {None}) == len(history)
    for entry, result, generation in zip(history[::-1], results, generations, strict=True):
        _same_as_result(entry, result)
        assert entry.source_key == KEY
        assert entry.worker == "worker-1"
        assert entry.generation == generation
        assert entry.clock_skew is None
        # The clock moved only while the completed cycle read its second page.
        slow = entry.outcome is Outcome.COMPLETED
        assert entry.duration == timedelta(seconds=3 if slow else 0)
    failed, waited = history[-3], history[-4]
    assert failed.error == "HTTP 503 from https://api.example.com/?key=***"  # as in the state
    assert (failed.retry_at, waited.retry_at) == (None, retry_at)
    assert waited.error_class == "RateLimitedError"
    reset_by_host, reset_by_engine = history[1], history[0]
    assert reset_by_host.generation + 1 == reset_by_engine.generation
    assert reset_by_engine.error == "the change log expired"
    assert engine.history(KEY, limit=2) == history[:2]
    assert engine.history("acme/other") == []


def test_a_cycle_whose_lease_was_taken_over_keeps_no_entry(store: Store) -> None:
    """A lost lease's completion, failure and interruption are refused, entries included."""
    ttl = timedelta(minutes=10)
    old = store.acquire_lease(KEY, "old", NOW, ttl)
    assert old is not None
    new = store.acquire_lease(KEY, "new", NOW + ttl, ttl)
    assert new is not None
    later = NOW + ttl + timedelta(seconds=1)
    with pytest.raises(LeaseLostError):
        store.complete_cycle(KEY, old, 0, Checkpoint(None), later, 0, entry_of(KEY, later))
    with pytest.raises(LeaseLostError):
        store.fail_cycle(KEY, old, 0, ErrorInfo("X", "boom", later), 5, None, entry_of(KEY, later))
    with pytest.raises(LeaseLostError):
        store.interrupt_cycle(KEY, old, entry_of(KEY, later, Outcome.INTERRUPTED_STOP))
    assert store.history(KEY) == []
    assert store.load(KEY).lease == new


def test_every_field_of_an_entry_round_trips(store: Store) -> None:
    """Times to the microsecond, a negative skew, a retry time and odd text come back as kept."""
    lease = store.acquire_lease(KEY, "w", NOW, timedelta(minutes=10))
    assert lease is not None
    entry = CycleEntry(
        source_key=KEY,
        generation=3,
        worker="host-ä:4242:139",
        started=NOW + timedelta(microseconds=7),
        ended=NOW + timedelta(minutes=2, microseconds=9),
        outcome=Outcome.COMPLETED,
        pages=4,
        fetched=400,
        applied=350,
        already_applied=40,
        rejected=10,
        swept=2,
        error_class="Odd",
        error="line\nbreak and a tab\t",
        retry_at=NOW + timedelta(hours=1),
        clock_skew=timedelta(seconds=-601, microseconds=250),
        cycle_id="3f9a0c5e7d1b2a46",
    )
    store.complete_cycle(KEY, lease, 0, Checkpoint(None), entry.ended, 10, entry)
    assert store.history(KEY) == [entry]


def test_entries_that_started_together_come_back_in_the_order_written(store: Store) -> None:
    """A clock that did not move between cycles still orders the history: the later write first."""
    engine = _engine(store, ManualClock(NOW))
    source = _source(3)
    for _ in range(3):
        engine.run_cycle(KEY, InMemoryConnector(source))
    assert [entry.applied for entry in engine.history(KEY)] == [0, 0, 3]


def _write(
    store: Store,
    started: datetime,
    applied: int,
    key: str = KEY,
    cycle_id: str | None = None,
    **figures: Any,
) -> None:
    lease = store.acquire_lease(key, "w", started, timedelta(minutes=10))
    assert lease is not None
    entry = entry_of(key, started, applied=applied, cycle_id=cycle_id, **figures)
    store.complete_cycle(key, lease, 0, Checkpoint(None), started, 0, entry)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def kept_three(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A store of each kind that keeps 3 cycles and 2 days per source."""
    retention = HistoryRetention(max_cycles=3, max_age=timedelta(days=2))
    if request.param == "memory":
        yield InMemoryStore(history_retention=retention)
    elif request.param == "sqlite":
        with SQLiteStore(tmp_path / "kept.db", history_retention=retention) as sqlite:
            yield sqlite
    else:
        schema = request.getfixturevalue("postgres_schema")
        with PostgresStore(CONNINFO, schema=schema, history_retention=retention) as postgres:
            postgres.migrate()
            yield postgres


def test_retention_keeps_the_newest_cycles_and_days_of_each_source_alone(
    kept_three: Store,
) -> None:
    """Past 3 cycles the oldest go; a cycle 2 days after the last takes the older ones with it;
    another source's history is untouched by either."""
    store = kept_three
    _write(store, NOW, 99, key="acme/other")
    for number in range(5):
        _write(store, NOW + timedelta(hours=number), number)
    assert [entry.applied for entry in store.history(KEY)] == [4, 3, 2]
    # Exactly 2 days after the cycle of hour 3: hours 3 and 4 are within, hour 2 is not.
    _write(store, NOW + timedelta(days=2, hours=3), 5)
    assert [entry.applied for entry in store.history(KEY)] == [5, 4, 3]
    _write(store, NOW + timedelta(days=2, hours=3, microseconds=1), 6)
    assert [entry.applied for entry in store.history(KEY)] == [6, 5, 4]
    _write(store, NOW + timedelta(days=9), 7)
    assert [entry.applied for entry in store.history(KEY)] == [7]
    assert [entry.applied for entry in store.history("acme/other")] == [99]


def test_retention_by_count_prunes_exactly_when_an_entry_passes_the_limit(
    kept_three: Store,
) -> None:
    """Each write keeps the 3 newest: the 3rd entry prunes nothing, the 4th prunes one; an entry
    older than the 3 kept, once written, is the one that goes."""
    store = kept_three
    for number in range(4):
        _write(store, NOW + timedelta(hours=number), number)
        assert [entry.applied for entry in store.history(KEY)] == list(range(number, -1, -1))[:3]
    _write(store, NOW + timedelta(minutes=30), 9)
    assert [entry.applied for entry in store.history(KEY)] == [3, 2, 1]


def test_retention_without_limits_keeps_everything(tmp_path: Path) -> None:
    """``None`` for both limits prunes nothing."""
    with SQLiteStore(
        tmp_path / "all.db", history_retention=HistoryRetention(max_cycles=None, max_age=None)
    ) as store:
        for number in range(5):
            _write(store, NOW + timedelta(days=400 * number), number)
        assert len(store.history(KEY)) == 5


@pytest.mark.parametrize(
    ("retention", "kept"),
    [
        (HistoryRetention(max_cycles=None, max_age=None), [4, 3, 2, 1, 0]),
        (HistoryRetention(max_cycles=2, max_age=None), [4, 3]),
        (HistoryRetention(max_cycles=None, max_age=timedelta(days=1)), [4, 3, 2]),
    ],
)
def test_the_postgres_history_prunes_by_each_limit_alone(
    postgres_schema: str, retention: HistoryRetention, kept: list[int]
) -> None:
    """Without an age limit only the count prunes, without a count limit only the age (a day
    back from the cycle of hour 40 keeps hour 20 and drops hour 10), without either nothing."""
    with PostgresStore(CONNINFO, schema=postgres_schema, history_retention=retention) as store:
        store.migrate()
        for number in range(5):
            _write(store, NOW + timedelta(hours=10 * number), number)
        assert [entry.applied for entry in store.history(KEY)] == kept


def test_the_sqlite_history_is_read_and_pruned_through_its_index(tmp_path: Path) -> None:
    """EXPLAIN QUERY PLAN: every statement of the history searches the (source, start) index and
    none scans the table or sorts apart."""
    module = sqlite_module
    with SQLiteStore(tmp_path / "plan.db") as store:
        for number in range(50):
            _write(store, NOW + timedelta(minutes=number), number, key=f"s{number % 5}")
        connection = store._connection()
        for statement, params in (
            (module._READ_CYCLES, (KEY, 10)),
            (module._PRUNE_CYCLES_BY_AGE, (KEY, 0)),
            (module._PRUNE_CYCLES_BY_COUNT, (KEY, KEY, 999)),
        ):
            plan = [row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {statement}", params)]
            searches = [step for step in plan if step.startswith(("SEARCH", "SCAN"))]
            assert searches, plan
            for step in searches:
                assert step.startswith("SEARCH incsync_cycles USING"), plan
                assert "incsync_cycles_by_start" in step, plan
            assert not any("TEMP B-TREE" in step for step in plan), plan


def test_the_postgres_history_is_read_and_pruned_through_its_index(
    postgres_store: PostgresStore,
) -> None:
    """EXPLAIN, with sequential scans priced out: every statement uses the (source, start, id)
    index, so none can fall back on reading the whole table."""
    sql = postgres_sql
    for number in range(50):
        _write(postgres_store, NOW + timedelta(minutes=number), number, key=f"s{number % 5}")
    with psycopg.connect(CONNINFO) as connection:
        connection.execute("SET enable_seqscan = off")
        connection.execute("SET enable_sort = off")
        for statement, params in (
            (sql.READ_CYCLES, (KEY, 10)),
            (sql.PRUNE_CYCLES_BY_AGE, (KEY, NOW)),
            (sql.PRUNE_CYCLES_BY_COUNT, (KEY, KEY, 999)),
        ):
            rendered = sql.render(statement, postgres_store.schema)
            plan = "\n".join(
                row[0] for row in connection.execute(f"EXPLAIN {rendered}", params).fetchall()
            )
            assert "Seq Scan" not in plan, plan
            assert "Sort" not in plan.replace("Sort Key", ""), plan
            assert "cycles_by_start" in plan, plan


# -- the values ------------------------------------------------------------------------------


def test_an_entry_refuses_what_no_cycle_can_have() -> None:
    """A skipped outcome, a negative count, a naive time, a blank key or a skew in seconds."""
    base = entry_of(KEY, NOW)
    with pytest.raises(ConfigurationError, match="skipped cycle has no entry"):
        attrs.evolve(base, outcome=Outcome.SKIPPED_RUNNING)
    with pytest.raises(ConfigurationError, match="applied must be an integer >= 0"):
        attrs.evolve(base, applied=-1)
    with pytest.raises(NaiveDatetimeError, match="ended"):
        attrs.evolve(base, ended=datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test
    with pytest.raises(ConfigurationError, match="source_key"):
        attrs.evolve(base, source_key=" ")
    with pytest.raises(ConfigurationError, match="clock_skew must be a timedelta"):
        attrs.evolve(base, clock_skew=3.5)  # type: ignore[arg-type]
    bad_ids: list[object] = ["", "3f9a 0c5e", "x" * 65, "é", 16]
    for cycle_id in bad_ids:
        with pytest.raises(ConfigurationError, match="cycle_id must be a string of 1 to 64"):
            attrs.evolve(base, cycle_id=cycle_id)  # type: ignore[arg-type]
    assert attrs.evolve(base, cycle_id="x" * 64).cycle_id == "x" * 64


def test_an_entry_is_made_from_the_cycle_result_and_kept_only_with_its_own_source(
    store: Store,
) -> None:
    """cycle_entry copies the result's facts; a store refuses an entry of another source."""
    result = CycleResult(
        source_key=KEY,
        outcome=Outcome.FAILED,
        fetched=3,
        applied=2,
        pages=1,
        started_at=NOW,
        error="boom",
        error_class="TransientSourceError",
        cycle_id="9f3b2c71d04a6e58",
    )
    entry = cycle_entry(result, generation=1, worker="w", ended=NOW + timedelta(seconds=2))
    _same_as_result(entry, result)
    assert entry.cycle_id == "9f3b2c71d04a6e58"
    assert entry.duration == timedelta(seconds=2)
    with pytest.raises(ConfigurationError, match="start time"):
        cycle_entry(attrs.evolve(result, started_at=None), generation=1, worker="w", ended=NOW)
    lease = store.acquire_lease(KEY, "w", NOW, timedelta(minutes=1))
    assert lease is not None
    with pytest.raises(ConfigurationError, match="cannot be kept with the state of"):
        store.interrupt_cycle(KEY, lease, entry_of("acme/other", NOW))
    assert store.load(KEY).lease == lease  # nothing written
    with pytest.raises(ConfigurationError, match=r"limit must be an integer >= 1 or None"):
        store.history(KEY, 0)


def test_retention_settings_are_checked() -> None:
    """A count must be a whole number (0 keeps none), an age a positive timedelta."""
    with pytest.raises(ConfigurationError, match="max_cycles must be an integer >= 0 or None"):
        HistoryRetention(max_cycles=-1)
    with pytest.raises(ConfigurationError, match="max_cycles must be an integer >= 0 or None"):
        HistoryRetention(max_cycles=True)
    with pytest.raises(ConfigurationError, match="max_age must be a timedelta longer than zero"):
        HistoryRetention(max_age=30)  # type: ignore[arg-type]
    forever = HistoryRetention(max_age=timedelta.max)
    assert forever.oldest_start(NOW) == datetime(1, 1, 1, tzinfo=timezone.utc)


def test_retained_is_the_rule_every_store_prunes_by() -> None:
    """The newest max_cycles, none that started more than max_age before the latest cycle."""
    entries = [entry_of(KEY, NOW - timedelta(days=day)) for day in range(6)]
    rule = HistoryRetention(max_cycles=4, max_age=timedelta(days=2))
    assert retained(entries, rule, NOW) == entries[:3]
    assert retained(entries, HistoryRetention(max_cycles=2, max_age=None), NOW) == entries[:2]


def test_summarize_counts_completed_failed_and_interrupted() -> None:
    """Every interruption (cancel, stop, reset) counts as interrupted."""
    outcomes = [
        Outcome.COMPLETED,
        Outcome.COMPLETED,
        Outcome.FAILED,
        Outcome.INTERRUPTED_CANCEL,
        Outcome.INTERRUPTED_RESET,
        Outcome.INTERRUPTED_STOP,
    ]
    summary = summarize(entry_of(KEY, NOW, outcome) for outcome in outcomes)
    assert summary == HistorySummary(completed=2, failed=1, interrupted=3)
    assert summary.cycles == 6
    assert summarize([]) == HistorySummary()


def test_summarize_keeps_the_newest_measured_clock_skew() -> None:
    """The summary's skew is the newest cycle's that measured one; none measured, none."""
    newest_first = [
        entry_of(KEY, NOW),
        entry_of(KEY, NOW, clock_skew=timedelta(minutes=-10)),
        entry_of(KEY, NOW, clock_skew=timedelta(minutes=3)),
    ]
    assert summarize(newest_first).clock_skew == timedelta(minutes=-10)
    assert summarize(newest_first[:1]).clock_skew is None


def test_a_sqlite_file_of_schema_6_gains_the_history_when_opened(tmp_path: Path) -> None:
    """A file written before the history existed is upgraded on open; its sources are kept."""
    path = tmp_path / "old.db"
    with SQLiteStore(path) as store:
        store.reset("acme/old")
        connection = store._connection()
        connection.execute("DROP TABLE incsync_cycles")
        connection.execute("UPDATE incsync_meta SET value = '6' WHERE name = 'schema_version'")
    with SQLiteStore(path) as store:
        assert store.load("acme/old").generation == 1
        assert store.history(KEY) == []
        _write(store, NOW, 7, cycle_id="0b7c94e2f3a1d658")
        assert [(e.applied, e.cycle_id) for e in store.history(KEY)] == [(7, "0b7c94e2f3a1d658")]
        assert _schema_version(store) == str(sqlite_module.SCHEMA_VERSION)


def _schema_version(store: SQLiteStore) -> str:
    row = store._connection().execute(
        "SELECT value FROM incsync_meta WHERE name = 'schema_version'"
    )
    return str(row.fetchone()[0])


def test_a_sqlite_file_of_schema_7_gains_cycle_ids_when_opened(tmp_path: Path) -> None:
    """Entries kept before schema 8 stay, without a cycle id; entries written after keep theirs."""
    path = tmp_path / "old.db"
    with SQLiteStore(path) as store:
        _write(store, NOW, 5)
        connection = store._connection()
        connection.execute("ALTER TABLE incsync_cycles DROP COLUMN cycle_id")
        connection.execute("UPDATE incsync_meta SET value = '7' WHERE name = 'schema_version'")
    with SQLiteStore(path) as store:
        later = NOW + timedelta(hours=1)
        _write(store, later, 2, cycle_id="5d0e81a97c2b4f36")
        assert store.history(KEY) == [
            entry_of(KEY, later, applied=2, cycle_id="5d0e81a97c2b4f36"),
            entry_of(KEY, NOW, applied=5),
        ]
        assert _schema_version(store) == str(sqlite_module.SCHEMA_VERSION)
    with SQLiteStore(path) as store:  # opened again: nothing left to upgrade
        assert len(store.history(KEY)) == 2


def test_a_sqlite_file_of_schema_8_gains_reconcile_figures_when_opened(tmp_path: Path) -> None:
    """Entries kept before schema 10 stay, with no reconcile figures (0); later ones keep theirs;
    the live ids are then listed in numeric order along the new index."""
    path = tmp_path / "old.db"
    with SQLiteStore(path) as store:
        _write(store, NOW, 5)
        connection = store._connection()
        connection.execute("DROP INDEX incsync_live_ids_by_number")
        for column in ("reconcile_fetched", "reconcile_tombstoned"):
            connection.execute(f"ALTER TABLE incsync_cycles DROP COLUMN {column}")
        connection.execute("UPDATE incsync_meta SET value = '8' WHERE name = 'schema_version'")
    with SQLiteStore(path) as store:
        later = NOW + timedelta(hours=1)
        _write(store, later, 2, reconcile_fetched=3, reconcile_tombstoned=4)
        assert store.history(KEY) == [
            entry_of(KEY, later, applied=2, reconcile_fetched=3, reconcile_tombstoned=4),
            entry_of(KEY, NOW, applied=5),
        ]
        assert _schema_version(store) == str(sqlite_module.SCHEMA_VERSION)
        connection = store._connection()
        for statement, bound in (
            (sqlite_module._LIVE_IDS_AS_LONG, (KEY, 2, "10", 5)),
            (sqlite_module._LIVE_IDS_LONGER, (KEY, 2, 5)),
        ):
            plan = " ".join(
                str(row[3]) for row in connection.execute(f"EXPLAIN QUERY PLAN {statement}", bound)
            )
            assert "USING INDEX incsync_live_ids_by_number (source_key=? AND <expr>" in plan
            assert "TEMP B-TREE" not in plan  # in index order: no sort


def test_the_entry_names_the_cycle_its_log_records_name(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """The history entry's cycle_id is the result's and every log record's of that cycle, so an
    entry leads to its cycle's log lines; each cycle has its own."""
    engine = _engine(store, ManualClock(NOW))
    caplog.handler.addFilter(CycleContextFilter())
    with caplog.at_level(logging.DEBUG, logger="incsync"):
        first = engine.run_cycle(KEY, InMemoryConnector(_source(), page_size=100))
        failed = engine.run_cycle(KEY, Failing(TransientSourceError("HTTP 503")))
    ids = {record.cycle_id for record in caplog.records}  # type: ignore[attr-defined]
    assert ids == {first.cycle_id, failed.cycle_id}
    assert None not in ids
    assert len(ids) == 2
    for result, entry in zip((first, failed), engine.history(KEY)[::-1], strict=True):
        assert entry.cycle_id == result.cycle_id
        lines = [r.getMessage() for r in caplog.records if r.cycle_id == entry.cycle_id]  # type: ignore[attr-defined]
        assert f"cycle {entry.outcome.value}" in lines[-1]
