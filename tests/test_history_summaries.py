"""A history turned off in every store, and the summaries of many sources read in one query."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from incsync import (
    Checkpoint,
    ConfigurationError,
    ErrorInfo,
    HistoryRetention,
    HistorySummary,
    InMemoryStore,
    Outcome,
    SQLiteStore,
    SyncEngine,
    summarize,
)
from incsync.connectors import InMemoryConnector
from incsync.history import NO_HISTORY, SUMMARY_CYCLES, summary_of_cycles
from incsync.stores import _postgres_sql as postgres_sql
from incsync.stores import sqlite as sqlite_module
from incsync.stores.postgres import PostgresStore
from incsync.testing import ManualClock
from tests.helpers import Store, entry_of, records_before
from tests.stores.postgres_server import CONNINFO

NOW = datetime(2026, 11, 13, 9, 41, 7, tzinfo=timezone.utc)
KEY = "acme/invoices"


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def without_history(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A store of each kind given NO_HISTORY."""
    if request.param == "memory":
        yield InMemoryStore(history_retention=NO_HISTORY)
    elif request.param == "sqlite":
        with SQLiteStore(tmp_path / "off.db", history_retention=NO_HISTORY) as sqlite:
            yield sqlite
    else:
        schema = request.getfixturevalue("postgres_schema")
        with PostgresStore(CONNINFO, schema=schema, history_retention=NO_HISTORY) as postgres:
            postgres.migrate()
            yield postgres


def _end(
    store: Store,
    key: str,
    started: datetime,
    outcome: Outcome,
    clock_skew: timedelta | None = None,
) -> None:
    """Write one cycle of ``key`` that started at ``started`` and ended with ``outcome``."""
    lease = store.acquire_lease(key, "w", started, timedelta(minutes=10))
    assert lease is not None
    entry = entry_of(key, started, outcome, clock_skew=clock_skew)
    if outcome is Outcome.COMPLETED:
        store.complete_cycle(key, lease, 0, Checkpoint(None), started, 0, entry)
    elif outcome is Outcome.FAILED:
        store.fail_cycle(key, lease, 0, ErrorInfo("X", "boom", started), 99, None, entry)
    else:
        store.interrupt_cycle(key, lease, entry)


# -- history off ------------------------------------------------------------------------------


def test_a_retention_of_no_cycles_keeps_no_entries_and_refuses_fewer() -> None:
    """``max_cycles=0`` is the history turned off; ``keeps_entries`` says so; below 0 is refused."""
    assert not NO_HISTORY.keeps_entries
    assert not HistoryRetention(max_cycles=0).keeps_entries
    assert HistoryRetention().keeps_entries
    assert HistoryRetention(max_cycles=None).keeps_entries
    with pytest.raises(ConfigurationError, match="max_cycles must be an integer >= 0 or None"):
        HistoryRetention(max_cycles=-1)


def test_a_store_without_history_writes_no_entry_but_every_state(without_history: Store) -> None:
    """Cycles that complete, fail and are interrupted keep their states and leave no entry."""
    store = without_history
    engine = SyncEngine(store, clock=ManualClock(NOW), holder="worker-1")
    result = engine.run_cycle(KEY, InMemoryConnector(records_before(NOW, 5)))
    assert result.outcome is Outcome.COMPLETED
    _end(store, "acme/other", NOW, Outcome.FAILED)
    _end(store, "acme/other", NOW + timedelta(hours=1), Outcome.INTERRUPTED_STOP)
    assert store.load(KEY).last_sync is not None
    assert store.load("acme/other").consecutive_failures == 1
    assert store.history(KEY) == []
    assert store.history("acme/other") == []
    assert store.history_summaries([KEY, "acme/other"]) == {
        KEY: HistorySummary(),
        "acme/other": HistorySummary(),
    }


# -- summaries of many sources ----------------------------------------------------------------


def test_summaries_of_many_sources_equal_each_source_summarised_alone(store: Store) -> None:
    """Past SUMMARY_CYCLES, with ties in start times, skews measured by some cycles, a source
    without entries, a key given twice and shorter windows: the one read equals
    ``summarize(history(key, cycles))`` per key."""
    outcomes = (Outcome.COMPLETED, Outcome.FAILED, Outcome.INTERRUPTED_STOP, Outcome.COMPLETED)
    for number in range(SUMMARY_CYCLES + 6):
        # Every third cycle starts with the one before: the newest-first order by row decides.
        started = NOW + timedelta(hours=number - number % 3 // 2)
        skew = timedelta(seconds=number) if number % 5 == 1 else None
        _end(store, "s/long", started, outcomes[number % len(outcomes)], skew)
    for number in range(5):
        _end(store, f"s/{number}", NOW + timedelta(hours=number), outcomes[number % 3])
    keys = ["s/long", "s/0", "s/4", "s/none", "s/long"]
    for cycles in (SUMMARY_CYCLES, 1, 3, 5):
        expected = {key: summarize(store.history(key, cycles)) for key in keys}
        assert store.history_summaries(keys, cycles) == expected
    assert store.history_summaries(keys)["s/long"].cycles == SUMMARY_CYCLES
    assert store.history_summaries([]) == {}


def test_summaries_refuse_a_bad_key_or_window(store: Store) -> None:
    """A blank key or a window of no cycles is one clear error, as for ``history``."""
    with pytest.raises(ConfigurationError, match="source_key"):
        store.history_summaries([KEY, " "])
    with pytest.raises(ConfigurationError, match="cycles must be an integer >= 1"):
        store.history_summaries([KEY], 0)


def test_a_summary_of_outcomes_and_skews_is_the_summary_of_those_cycles() -> None:
    """The rule the stores' own reads go through is ``summarize``'s: the newest skew measured."""
    skews = (None, timedelta(minutes=-10), None, timedelta(minutes=3), None, None)
    outcomes = [Outcome.COMPLETED, Outcome.FAILED, Outcome.INTERRUPTED_RESET] * 2
    entries = [
        entry_of(KEY, NOW, outcome, clock_skew=skew)
        for outcome, skew in zip(outcomes, skews, strict=True)
    ]
    summary = HistorySummary(2, 2, 2, clock_skew=timedelta(minutes=-10))
    assert summary_of_cycles(zip(outcomes, skews, strict=True)) == summarize(entries) == summary
    assert summary_of_cycles([]) == HistorySummary()


def test_the_sqlite_summaries_read_each_source_through_its_index(tmp_path: Path) -> None:
    """EXPLAIN QUERY PLAN: each key's newest entries are a search of the (source, start) index;
    the table is only looked up by row id, never scanned; only the rows read are sorted."""
    with SQLiteStore(tmp_path / "plan.db") as store:
        for number in range(50):
            _end(store, f"s{number % 5}", NOW + timedelta(minutes=number), Outcome.COMPLETED)
        plan = [
            row[3]
            for row in store._connection().execute(
                f"EXPLAIN QUERY PLAN {sqlite_module._LATEST_CYCLES}", ('["s1", "s2"]', 24)
            )
        ]
    assert any(
        step.startswith("SEARCH incsync_cycles USING COVERING INDEX incsync_cycles_by_start")
        for step in plan
    ), plan
    assert not any(step.startswith("SCAN incsync_cycles") for step in plan), plan
    sorts = [step for step in plan if "TEMP B-TREE" in step]
    assert sorts == ["USE TEMP B-TREE FOR ORDER BY"], plan


def test_the_postgres_summaries_read_each_source_through_its_index(
    postgres_store: PostgresStore,
) -> None:
    """EXPLAIN, with sequential scans priced out: a backward scan of the (source, start, id)
    index per key, limited to the window, so a long history is never read whole."""
    for number in range(50):
        _end(postgres_store, f"s{number % 5}", NOW + timedelta(minutes=number), Outcome.COMPLETED)
    rendered = postgres_sql.render(postgres_sql.LATEST_CYCLES, postgres_store.schema)
    with psycopg.connect(CONNINFO) as connection:
        connection.execute("SET enable_seqscan = off")
        plan = "\n".join(
            row[0] for row in connection.execute(f"EXPLAIN {rendered}", (["s1", "s2"], 24))
        )
    assert "Index Scan Backward using cycles_by_start" in plan, plan
    assert "Limit" in plan, plan
    assert "Seq Scan" not in plan, plan
