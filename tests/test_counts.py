"""Counts reconciled: the source's live records against the host's, after a completed cycle.

A count finds what reading changes cannot: a record gone from the source without a trace, or one
written behind the cursor. It is kept in the source's state by every store, shown in the status
hover and in ``incsync status --json``; with ``reconcile_drift`` a drift found twice in a row
resets the source, and the full re-read repairs it. A count that fails never fails the cycle.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import attrs
import psycopg
import pytest

from incsync import (
    ConfigurationError,
    NaiveDatetimeError,
    Outcome,
    Phase,
    Record,
    SQLiteStore,
    StatusColor,
    StatusNote,
    SyncEngine,
    SyncPolicy,
    TransientSourceError,
    classify_status,
    status_of,
)
from incsync.connectors import InMemoryConnector, InMemorySource
from incsync.connectors.memory import iso_timestamp
from incsync.integrations.cli import main
from incsync.policy import count_due, drift_to_reconcile
from incsync.records import SWEPT
from incsync.state import Checkpoint, CountCheck, SourceState, counted, new_state
from incsync.stores import _postgres_sql as sql
from incsync.stores.postgres import PostgresStore
from incsync.testing import ManualClock
from tests.helpers import Store, entry_of, transactions_by_id
from tests.stores.postgres_server import CONNINFO

KEY = "acme/ledger"
T0 = datetime(2026, 5, 4, 8, 0, tzinfo=timezone.utc)
START = T0 + timedelta(hours=1)
DAY = timedelta(hours=24)
POLICY = SyncPolicy(safety_lag=timedelta(seconds=30))
RECONCILING = attrs.evolve(POLICY, reconcile_drift=True)


def _source(count: int) -> InMemorySource:
    source = InMemorySource()
    for number in range(count):
        stamp = iso_timestamp(T0 + timedelta(seconds=number))
        source.put({"id": f"r{number:03d}", "updated_at": stamp, "amount": number})
    return source


def _synced(
    store: Store, count: int, policy: SyncPolicy = POLICY
) -> tuple[ManualClock, SyncEngine, InMemoryConnector]:
    """A source of ``count`` records, read whole once by an engine on a manual clock."""
    clock = ManualClock(START)
    engine = SyncEngine(store, policy=policy, clock=clock)
    connector = InMemoryConnector(_source(count), page_size=7)
    engine.run_cycle(KEY, connector)
    return clock, engine, connector


def _check(source: int, host: int, previous: int | None = None) -> CountCheck:
    return CountCheck(source, host, T0, previous_drift=previous)


def _live(store: Store) -> set[str]:
    return {i for i, t in transactions_by_id(store, KEY).items() if not t.record.deleted}


class FailingCount(InMemoryConnector):
    """A connector whose count request fails, as a source's count endpoint may."""

    def count_live(self) -> int:
        raise TransientSourceError("HTTP 503 from the count endpoint")


class WrongCount(InMemoryConnector):
    """A connector whose count is no count of records."""

    def count_live(self) -> int:
        return -1


class CannotCount(InMemoryConnector):
    """A connector for a source that cannot count cheaply (BaseConnector's default)."""

    def count_live(self) -> None:
        return None


# -- the values and the rules -----------------------------------------------------------------


def test_a_count_check_says_its_drift_and_refuses_what_is_no_count() -> None:
    assert _check(1203, 1201).drift == 2
    assert _check(197, 200).drift == -3
    with pytest.raises(NaiveDatetimeError, match="count check at"):
        CountCheck(1, 1, datetime(2026, 5, 4, 8, 0))  # noqa: DTZ001 - the naive time refused
    for bad in (-1, True, 1.5, "12", None):
        with pytest.raises(ConfigurationError, match="count of live records"):
            CountCheck(bad, 0, T0)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="count of live records"):
            CountCheck(0, bad, T0)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="previous_drift"):
        CountCheck(0, 0, T0, previous_drift="2")  # type: ignore[arg-type]


def test_each_check_keeps_the_drift_before_it_and_the_one_a_full_read_left() -> None:
    first = counted(None, 10, 10, T0, full_read=True)
    assert (first.previous_drift, first.full_read_drift) == (None, 0)
    second = counted(first, 12, 10, T0 + DAY, full_read=False)
    assert (second.drift, second.previous_drift, second.full_read_drift) == (2, 0, 0)
    assert not second.persistent  # one drift is not a persistent one
    third = counted(second, 12, 10, T0 + 2 * DAY, full_read=False)
    assert third.persistent
    reread = counted(third, 12, 11, T0 + 2 * DAY, full_read=True)
    assert (reread.previous_drift, reread.full_read_drift) == (None, 1)  # pairs start over


def test_a_count_is_due_first_after_each_interval_and_after_a_full_re_read() -> None:
    assert count_due(new_state(KEY), POLICY, T0)
    counted_once = SourceState(KEY, phase=Phase.ACTIVE, last_sync=T0, count_check=_check(5, 5))
    assert not count_due(counted_once, POLICY, T0 + DAY - timedelta(seconds=1))
    assert count_due(counted_once, POLICY, T0 + DAY)
    assert count_due(attrs.evolve(counted_once, reset_pending=True), POLICY, T0)
    never = SyncPolicy(count_interval=None)
    assert not count_due(new_state(KEY), never, T0)
    assert not count_due(attrs.evolve(counted_once, reset_pending=True), never, T0)
    with pytest.raises(NaiveDatetimeError):
        count_due(counted_once, POLICY, datetime(2026, 5, 4))  # noqa: DTZ001 - refused


def test_only_a_persistent_drift_a_full_read_did_not_leave_is_reconciled() -> None:
    drifting = SourceState(KEY, phase=Phase.ACTIVE, last_sync=T0, count_check=_check(12, 10, 2))
    assert drift_to_reconcile(drifting, RECONCILING)
    assert not drift_to_reconcile(drifting, POLICY)  # off by default
    once = attrs.evolve(drifting, count_check=_check(12, 10, 0))
    assert not drift_to_reconcile(once, RECONCILING)
    healed = attrs.evolve(drifting, count_check=_check(10, 10, 2))
    assert not drift_to_reconcile(healed, RECONCILING)
    resetting = attrs.evolve(drifting, reset_pending=True, phase=Phase.RESETTING)
    assert not drift_to_reconcile(resetting, RECONCILING)  # re-read whole anyway
    left = attrs.evolve(drifting, count_check=attrs.evolve(_check(12, 10, 2), full_read_drift=2))
    assert not drift_to_reconcile(left, RECONCILING)  # another full read would leave it too


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("count_interval", timedelta(0)),
        ("count_interval", -DAY),
        ("count_interval", 3600),
        ("reconcile_drift", 1),
        ("reconcile_drift", "yes"),
    ],
)
def test_count_settings_are_checked(setting: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=f"{setting} must be"):
        SyncPolicy(**{setting: value})  # type: ignore[arg-type]
    assert SyncPolicy(count_interval=None).count_interval is None
    assert SyncPolicy().count_interval == DAY


# -- every store ------------------------------------------------------------------------------


def test_every_store_counts_the_live_transactions_of_a_source(store: Store) -> None:
    assert store.count_live(KEY) == 0
    store.apply(KEY, [Record(f"r{n}", T0, {"n": n}) for n in range(5)], 0, 1)
    store.apply(KEY, [Record("gone", T0, {}, deleted=True)], 0, 1)
    store.apply("other/source", [Record("r0", T0, {})], 0, 1)
    assert store.count_live(KEY) == 5
    store.apply(KEY, [Record("r1", T0 + timedelta(seconds=1), {}, deleted=True)], 0, 1)
    store.apply(KEY, [Record(f"r{n}", T0, {"n": n}) for n in (0, 2)], 1, 2)
    assert store.sweep(KEY, 1, 2, ()) == 2  # r3 and r4
    assert store.count_live(KEY) == 2
    assert store.count_transactions(KEY) == 6
    with pytest.raises(ConfigurationError):
        store.count_live(" ")


def test_every_store_keeps_the_count_check_a_completed_cycle_gives(store: Store) -> None:
    check = CountCheck(1203, 1201, T0, previous_drift=-3, full_read_drift=0)
    lease = store.acquire_lease(KEY, "worker", T0, timedelta(minutes=10))
    assert lease is not None
    done = store.complete_cycle(
        KEY, lease, 0, Checkpoint(None, count_check=check), T0, 0, entry_of(KEY, T0)
    )
    assert done.count_check == check
    assert store.load(KEY).count_check == check
    assert [s.count_check for s in store.list_states()] == [check]
    # A cycle without a count, and a reset, keep the last check.
    lease = store.acquire_lease(KEY, "worker", T0 + DAY, timedelta(minutes=10))
    assert lease is not None
    store.complete_cycle(KEY, lease, 0, Checkpoint(None), T0 + DAY, 0, entry_of(KEY, T0 + DAY))
    # A reset keeps the last check, but it is no longer one of two drifts in a row.
    kept = attrs.evolve(check, previous_drift=None)
    assert store.reset(KEY).count_check == kept
    assert store.load(KEY).count_check == kept
    assert store.load("never/counted").count_check is None


def test_an_sqlite_file_of_schema_4_gains_the_count_columns(tmp_path: Path) -> None:
    path = tmp_path / "version-4.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as connection:
        for column in (
            "count_source",
            "count_host",
            "count_at_us",
            "count_previous_drift",
            "count_full_read_drift",
        ):
            connection.execute(f"ALTER TABLE incsync_sources DROP COLUMN {column}")
        connection.execute("ALTER TABLE incsync_transactions DROP COLUMN deleted_reason")
        connection.execute("UPDATE incsync_meta SET value = '4' WHERE name = 'schema_version'")
        connection.execute(
            "INSERT INTO incsync_sources (source_key, phase, generation, consecutive_failures, "
            "last_cycle_rejected, reset_pending) VALUES (?, 'active', 0, 0, 0, 0)",
            (KEY,),
        )
    connection.close()
    with SQLiteStore(path) as store:
        assert store.load(KEY).count_check is None  # no count yet for a source kept before
        engine = SyncEngine(store, policy=POLICY, clock=ManualClock(START))
        check = engine.run_cycle(KEY, InMemoryConnector(_source(3))).counted
        assert check is not None
        assert store.load(KEY).count_check == check


def test_a_postgres_schema_at_version_4_gains_the_count_columns(postgres_schema: str) -> None:
    with psycopg.connect(CONNINFO) as connection:
        connection.execute(sql.render(sql.CREATE_SCHEMA, postgres_schema))
        connection.execute(sql.render(sql.CREATE_VERSION_TABLE, postgres_schema))
        for version, statements in sql.MIGRATIONS:
            if version <= 4:
                for statement in statements:
                    connection.execute(sql.render(statement, postgres_schema))
                connection.execute(sql.render(sql.RECORD_VERSION, postgres_schema), (version,))
        connection.execute(
            sql.render("INSERT INTO {schema}.sources (source_key) VALUES (%s)", postgres_schema),
            (KEY,),
        )
    with PostgresStore(CONNINFO, schema=postgres_schema) as store:
        store.migrate()
        assert store.load(KEY).count_check is None
        engine = SyncEngine(store, policy=POLICY, clock=ManualClock(START))
        check = engine.run_cycle(KEY, InMemoryConnector(_source(3))).counted
        assert check is not None
        assert store.load(KEY).count_check == check


# -- through the engine -----------------------------------------------------------------------


def test_counts_are_made_when_due_and_not_between(store: Store) -> None:
    clock, engine, connector = _synced(store, 20)
    first = engine.state(KEY).count_check
    assert first == CountCheck(20, 20, START, full_read_drift=0)
    clock.advance(DAY - timedelta(minutes=1))
    assert engine.run_cycle(KEY, connector).counted is None  # not due yet
    assert engine.state(KEY).count_check == first
    clock.advance(timedelta(minutes=1))
    second = engine.run_cycle(KEY, connector).counted
    assert second == CountCheck(20, 20, START + DAY, previous_drift=0, full_read_drift=0)
    # A completed full re-read is counted at once, whatever the interval.
    clock.advance(timedelta(minutes=5))
    engine.reset(KEY)
    reread = engine.run_cycle(KEY, connector).counted
    assert reread is not None
    assert reread.at == clock()


def test_without_a_count_interval_nothing_is_counted(store: Store) -> None:
    engine = SyncEngine(
        store, policy=attrs.evolve(POLICY, count_interval=None), clock=ManualClock(START)
    )
    assert engine.run_cycle(KEY, FailingCount(_source(5))).counted is None
    assert engine.state(KEY).count_check is None


def test_a_purge_at_the_source_shows_as_a_drift_in_the_state_and_the_hover(store: Store) -> None:
    clock, engine, connector = _synced(store, 30)
    source = connector.source
    for number in (3, 17, 29):
        source.purge(f"r{number:03d}")  # gone without a trace: no delete to read
    clock.advance(DAY)
    result = engine.run_cycle(KEY, connector)
    assert result.outcome is Outcome.COMPLETED
    state = engine.state(KEY)
    assert state.count_check == result.counted
    assert state.count_check is not None
    assert (state.count_check.source, state.count_check.host) == (27, 30)
    assert state.count_check.drift == -3
    status = status_of(state, now=clock() + timedelta(hours=1))
    assert status.color is StatusColor.GREEN  # a drift does not change the colour
    assert StatusNote.COUNT_DRIFT in status.notes
    assert (
        "The source has 27 live records; 30 are imported "
        "(counted 2026-05-05 09:00:00 UTC, 1 hour ago)." in status.hover
    )
    assert _live(store) == set(source.ids()) | {"r003", "r017", "r029"}  # nothing was changed


def test_counts_that_agree_log_no_warning(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    engine = SyncEngine(store, policy=POLICY, clock=ManualClock(START))
    with caplog.at_level(logging.WARNING, logger="incsync"):
        check = engine.run_cycle(KEY, InMemoryConnector(_source(4))).counted
    assert check is not None
    assert check.drift == 0
    assert caplog.text == ""


def test_a_record_behind_the_cursor_shows_as_a_positive_drift(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    clock, engine, connector = _synced(store, 10)
    source = connector.source
    source.put({"id": "late", "updated_at": iso_timestamp(T0 - DAY)})  # committed late
    clock.advance(DAY)
    with caplog.at_level(logging.WARNING, logger="incsync"):
        check = engine.run_cycle(KEY, connector).counted
    assert check is not None
    assert (check.source, check.host, check.drift) == (11, 10, 1)
    assert "the source has 11 live records, the host 10 (drift +1)" in caplog.text


def test_a_persistent_drift_is_reconciled_by_a_full_re_read(store: Store) -> None:
    clock, engine, connector = _synced(store, 30, RECONCILING)
    source = connector.source
    source.purge("r005")
    source.purge("r006")
    source.put({"id": "late", "updated_at": iso_timestamp(T0 - DAY)})
    clock.advance(DAY)
    first = engine.run_cycle(KEY, connector)
    assert first.counted is not None
    assert first.counted.drift == -1  # 29 at the source, 30 in the host
    clock.advance(timedelta(hours=1))
    assert engine.run_cycle(KEY, connector).outcome is Outcome.COMPLETED  # one drift: no reset
    clock.advance(DAY)
    second = engine.run_cycle(KEY, connector)
    assert second.counted is not None
    assert second.counted.persistent
    clock.advance(timedelta(hours=1))
    reset = engine.run_cycle(KEY, connector)
    assert reset.outcome is Outcome.INTERRUPTED_RESET
    state = engine.state(KEY)
    assert state.phase is Phase.RESETTING
    assert state.consecutive_failures == 0  # a reconcile is no failure of the source
    assert state.last_error is not None
    assert "the last two counts of live records found the host out of step" in (
        state.last_error.message
    )
    assert "Why: the last two counts" in status_of(state, now=clock()).hover
    healed = engine.run_cycle(KEY, connector)
    assert (healed.outcome, healed.swept) == (Outcome.COMPLETED, 2)
    assert healed.counted is not None
    assert (healed.counted.drift, healed.counted.full_read_drift) == (0, 0)
    assert _live(store) == set(source.ids())  # "late" applied, r005 and r006 swept
    held = transactions_by_id(store, KEY)
    assert held["r005"].deleted_reason == SWEPT
    assert "late" in held
    healed_status = status_of(engine.state(KEY), now=clock())
    assert StatusNote.COUNT_DRIFT not in healed_status.notes
    # The source is incremental again.
    clock.advance(timedelta(hours=1))
    assert engine.run_cycle(KEY, connector).outcome is Outcome.COMPLETED


def test_without_reconcile_a_persistent_drift_only_shows(store: Store) -> None:
    clock, engine, connector = _synced(store, 10)
    source = connector.source
    source.purge("r001")
    for _ in range(3):
        clock.advance(DAY)
        result = engine.run_cycle(KEY, connector)
        assert result.outcome is Outcome.COMPLETED
        assert result.counted is not None
        assert result.counted.drift == -1
    assert engine.state(KEY).phase is Phase.ACTIVE


def test_a_drift_a_full_read_cannot_remove_is_reconciled_at_most_once(store: Store) -> None:
    clock, engine, connector = _synced(store, 10, RECONCILING)
    source = connector.source
    # Still at the source, and set aside by every read: no read can bring it to the host.
    source.put({"id": "broken", "updated_at": iso_timestamp(START), "amount": float("nan")})
    outcomes = []
    for _ in range(6):
        clock.advance(DAY)
        outcomes.append(engine.run_cycle(KEY, connector).outcome)
    assert outcomes.count(Outcome.INTERRUPTED_RESET) == 1
    check = engine.state(KEY).count_check
    assert check is not None
    assert (check.drift, check.full_read_drift) == (1, 1)


@pytest.mark.parametrize("after", [FailingCount, CannotCount])
def test_a_reconciled_drift_is_not_reset_again_when_the_re_read_is_not_counted(
    store: Store, after: type[InMemoryConnector]
) -> None:
    """The check from before the reset still shows, but cannot start a second reset by itself."""
    clock, engine, connector = _synced(store, 10, RECONCILING)
    source = connector.source
    source.purge("r002")
    for _ in range(2):
        clock.advance(DAY)
        engine.run_cycle(KEY, connector)
    assert engine.run_cycle(KEY, connector).outcome is Outcome.INTERRUPTED_RESET
    outcomes = []
    for _ in range(4):
        clock.advance(DAY)
        outcomes.append(engine.run_cycle(KEY, after(source)).outcome)
    assert outcomes == [Outcome.COMPLETED] * 4
    check = engine.state(KEY).count_check
    assert check is not None
    assert (check.drift, check.previous_drift) == (-1, None)  # from before the reset
    assert _live(store) == set(source.ids())  # the re-read swept r002 all the same


@pytest.mark.parametrize("connector_class", [FailingCount, WrongCount])
def test_a_failing_count_is_skipped_and_the_cycle_completes(
    store: Store,
    caplog: pytest.LogCaptureFixture,
    connector_class: type[InMemoryConnector],
) -> None:
    clock, engine, connector = _synced(store, 10)
    source = connector.source
    before = engine.state(KEY).count_check
    clock.advance(DAY)
    source.put({"id": "new", "updated_at": iso_timestamp(clock() - timedelta(hours=1))})
    with caplog.at_level(logging.WARNING, logger="incsync"):
        result = engine.run_cycle(KEY, connector_class(source))
    assert (result.outcome, result.applied, result.counted) == (Outcome.COMPLETED, 1, None)
    state = engine.state(KEY)
    assert (state.last_sync, state.consecutive_failures, state.last_error) == (clock(), 0, None)
    assert state.count_check == before
    assert "the count of live records was skipped" in caplog.text
    # The count is still due, and made by the next cycle that can count.
    clock.advance(timedelta(hours=1))
    assert engine.run_cycle(KEY, InMemoryConnector(source)).counted is not None


def test_a_source_that_cannot_count_has_no_count_check(store: Store) -> None:
    engine = SyncEngine(store, policy=POLICY, clock=ManualClock(START))
    assert engine.run_cycle(KEY, CannotCount(_source(3))).counted is None
    assert engine.state(KEY).count_check is None


# -- the status -------------------------------------------------------------------------------


def _drifting(source: int, host: int) -> list[str]:
    status = classify_status(
        last_change=T0,
        last_sync=T0,
        now=T0,
        live_at_source=source,
        live_in_host=host,
        counted_at=T0 - timedelta(hours=2),
    )
    assert status.color is StatusColor.GREEN
    return [status.hover, *[note.value for note in status.notes]]


def test_the_hover_gives_the_counts_only_when_they_disagree() -> None:
    hover, note = _drifting(1203, 1201)
    assert note == "count_drift"
    assert (
        "The source has 1,203 live records; 1,201 are imported "
        "(counted 2026-05-04 06:00:00 UTC, 2 hours ago)."
    ) in hover
    assert _drifting(1, 0)[0].count("The source has 1 live record; 0 are imported") == 1
    assert "; 1 is imported" in _drifting(0, 1)[0]
    [agreeing] = _drifting(50, 50)
    assert "live record" not in agreeing


def test_the_count_facts_go_together() -> None:
    with pytest.raises(ConfigurationError, match="all three or none"):
        classify_status(last_change=T0, last_sync=T0, now=T0, live_at_source=3)
    with pytest.raises(ConfigurationError, match="live_in_host"):
        classify_status(
            last_change=T0, last_sync=T0, now=T0, live_at_source=3, live_in_host=-1, counted_at=T0
        )
    with pytest.raises(NaiveDatetimeError, match="counted_at"):
        classify_status(
            last_change=T0,
            last_sync=T0,
            now=T0,
            live_at_source=3,
            live_in_host=3,
            counted_at=datetime(2026, 5, 4),  # noqa: DTZ001 - the naive time refused
        )


def test_status_json_gives_each_sources_count_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "state.db"
    source = _source(12)
    clock = ManualClock(START)
    with SQLiteStore(database) as store:
        engine = SyncEngine(store, policy=POLICY, clock=clock)
        engine.run_cycle(KEY, InMemoryConnector(source))
        source.purge("r004")
        clock.advance(DAY)
        engine.run_cycle(KEY, InMemoryConnector(source))
    config = tmp_path / "incsync.toml"
    config.write_text(
        f'[store]\npath = "{database.name}"\n\n[sources.demo]\ntype = "sample"\ncount = 3\n',
        encoding="utf-8",
    )
    assert main(["status", "--json", "--config", str(config)]) == 0
    sources = {item["key"]: item for item in json.loads(capsys.readouterr().out)["sources"]}
    assert sources["demo"]["count_check"] is None  # never run: never counted
    ledger = sources[KEY]
    assert ledger["count_check"] == {
        "source": 11,
        "host": 12,
        "drift": -1,
        "at": "2026-05-05T09:00:00+00:00",
    }
    assert "count_drift" in ledger["notes"]
    assert "The source has 11 live records; 12 are imported" in ledger["hover"]
    assert main(["status", "--config", str(config)]) == 0
    [row] = [line for line in capsys.readouterr().out.splitlines() if line.startswith(KEY)]
    assert row.endswith("(count_drift)")
