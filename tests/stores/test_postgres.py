"""PostgresStore against the real server: schema migration, leases and fencing, atomic pages.

Every test runs on a schema of its own (see tests/stores/postgres_server.py); the contract every
store shares is in test_stores.py, which runs on PostgreSQL too.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import psycopg
import psycopg.conninfo
import pytest

from incsync import (
    Checkpoint,
    ConfigurationError,
    Cursor,
    ErrorInfo,
    Lease,
    LeaseLostError,
    Outcome,
    Phase,
    Record,
    RejectedRecord,
    SourceState,
    StoreError,
)
from incsync.content import content_digest
from incsync.reconcile import IdOrder
from incsync.stores import _postgres_sql as sql
from incsync.stores.postgres import SCHEMA_VERSION, PostgresStore
from tests.helpers import entry_of
from tests.stores.postgres_server import CONNINFO, migrated_store

NOW = datetime(2026, 11, 13, 9, 0, tzinfo=timezone.utc)
TTL = timedelta(minutes=10)
KEY = "acme/quickbooks"

T = TypeVar("T")


def _record(record_id: str, second: int, **payload: object) -> Record:
    return Record(record_id, NOW + timedelta(seconds=second), {"id": record_id, **payload})


def _query(sql: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(CONNINFO) as connection:
        return connection.execute(sql, params).fetchall()


# One row per migration that ran: every version a migration brings.
_EVERY_VERSION = [version for version, _ in sql.MIGRATIONS]


def _versions(schema: str) -> list[int]:
    """The schema versions recorded in ``schema``, in order: one row per migration run."""
    return [row[0] for row in _query(f'SELECT version FROM "{schema}".schema_version ORDER BY 1')]


def _in_threads(count: int, work: Callable[[int], T]) -> list[T]:
    """Run ``work(0..count-1)`` in threads released together; return results in order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(number: int) -> None:
        try:
            barrier.wait(10)
            results[number] = work(number)
        except BaseException as error:  # noqa: BLE001 - reported to the test below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    return results


# -- schema ----------------------------------------------------------------------------------


def test_migrate_is_idempotent(postgres_store: PostgresStore, postgres_schema: str) -> None:
    """Migrating again changes nothing: one row per version, the same tables, the data kept."""
    postgres_store.apply(KEY, [_record("a", 0)], 0, 1)
    assert postgres_store.migrate() == SCHEMA_VERSION
    assert postgres_store.migrate() == SCHEMA_VERSION
    assert _versions(postgres_schema) == _EVERY_VERSION
    tables = _query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
        "ORDER BY table_name",
        postgres_schema,
    )
    assert tables == [
        ("actions",),
        ("cycles",),
        ("mapped_transactions",),
        ("rejected",),
        ("remaps",),
        ("schema_version",),
        ("sink_fences",),
        ("sources",),
        ("tokens",),
        ("transactions",),
    ]
    assert postgres_store.count_transactions(KEY) == 1


def test_workers_migrating_at_once_all_succeed(postgres_schema: str) -> None:
    """Six workers migrating a missing schema at the same moment all succeed, and it is made once.

    Without the advisory lock, concurrent CREATE SCHEMA / CREATE TABLE fail with duplicate errors.
    """
    stores = [
        PostgresStore(CONNINFO, schema=postgres_schema, min_size=0, max_size=1) for _ in range(6)
    ]
    try:
        versions = _in_threads(len(stores), lambda number: stores[number].migrate())
    finally:
        for store in stores:
            store.close()
    assert versions == [SCHEMA_VERSION] * len(stores)
    assert _versions(postgres_schema) == _EVERY_VERSION


def _schema_at_version(schema: str, last: int) -> None:
    """Create ``schema`` as incsync's migrations up to ``last`` made it."""
    with psycopg.connect(CONNINFO) as connection:
        connection.execute(sql.render(sql.CREATE_SCHEMA, schema))
        connection.execute(sql.render(sql.CREATE_VERSION_TABLE, schema))
        for version, statements in sql.MIGRATIONS:
            if version <= last:
                for statement in statements:
                    connection.execute(sql.render(statement, schema))
                connection.execute(sql.render(sql.RECORD_VERSION, schema), (version,))


def test_migrate_fills_in_the_content_digest_of_rows_written_before(postgres_schema: str) -> None:
    """Rows a version 1 schema holds get their digest from their payload when migrated: reading
    the same content again writes nothing, a changed one is written; a row written without a
    digest (by a worker still running the older incsync) is replaced by the next version.
    """
    _schema_at_version(postgres_schema, 1)  # before content digests
    with psycopg.connect(CONNINFO) as connection:
        connection.cursor().executemany(
            f'INSERT INTO "{postgres_schema}".transactions VALUES (%s, %s, %s, false, %s, 0)',
            [
                (KEY, f"same{number}", NOW, '{"b": 2, "a": 1.0, "n": [0.5, 1e23]}')
                for number in range(1_100)  # more than one batch
            ]
            + [(KEY, "changed", NOW, '{"paid": 1}')],
        )
    with PostgresStore(CONNINFO, schema=postgres_schema) as store:
        with pytest.raises(StoreError, match=r"migrate\(\)"):
            store.load(KEY)
        assert store.migrate() == SCHEMA_VERSION
        assert _versions(postgres_schema) == _EVERY_VERSION
        same = {"a": 1, "b": 2, "n": [0.5, 10**23]}
        incoming = [Record(f"same{n}", NOW, same) for n in range(1_100)]
        assert store.apply(KEY, incoming, 0, 1).applied == 0
        assert store.apply(KEY, [Record("changed", NOW, {"paid": True})], 0, 1).applied == 1
        with psycopg.connect(CONNINFO) as connection:
            connection.execute(
                f'INSERT INTO "{postgres_schema}".transactions '
                "(source_key, record_id, updated_at, deleted, payload, generation) "
                "VALUES (%s, 'old-worker', %s, false, '{}', 0)",
                (KEY, NOW),
            )
        assert store.apply(KEY, [Record("old-worker", NOW, {})], 0, 1).applied == 1
        assert store.apply(KEY, [Record("old-worker", NOW, {})], 0, 1).applied == 0
    digests = _query(
        f'SELECT DISTINCT content_digest FROM "{postgres_schema}".transactions '
        "WHERE record_id LIKE 'same%%'"
    )
    assert digests == [(content_digest(same),)]


def test_migrate_adds_the_cycle_id_to_the_history_kept_before(postgres_schema: str) -> None:
    """Migration 8 keeps a version 7 schema's entries, without a cycle id; later ones keep it."""
    _schema_at_version(postgres_schema, 7)
    old_columns = sql.CYCLE_COLUMNS[: sql.CYCLE_COLUMNS.index("cycle_id")]
    with psycopg.connect(CONNINFO) as connection:
        connection.execute(
            f'INSERT INTO "{postgres_schema}".cycles ({", ".join(old_columns)}) '
            f"VALUES ({', '.join(['%s'] * len(old_columns))})",
            (KEY, 0, "old", NOW, NOW, "completed", 1, 3, 3, 0, 0, 0, None, None, None, None),
        )
    with PostgresStore(CONNINFO, schema=postgres_schema) as store:
        assert store.migrate() == SCHEMA_VERSION
        assert _versions(postgres_schema) == _EVERY_VERSION
        later = NOW + timedelta(hours=1)
        lease = store.acquire_lease(KEY, "new", later, TTL)
        assert lease is not None
        entry = entry_of(KEY, later, worker="new", cycle_id="9f3b2c71d04a6e58")
        store.complete_cycle(KEY, lease, 0, Checkpoint(None), later, 0, entry)
        assert store.history(KEY) == [
            entry,
            entry_of(KEY, NOW, worker="old", pages=1, fetched=3, applied=3),
        ]


def test_migrate_adds_the_reconcile_figures_and_the_numeric_index(postgres_schema: str) -> None:
    """The reconcile figures' migration keeps older entries, with no reconcile figures (0), later
    ones keep theirs; the live ids are then listed in numeric order along an index."""
    _schema_at_version(postgres_schema, sql.RECONCILE_FIGURES_VERSION - 1)
    old_columns = sql.CYCLE_COLUMNS[: sql.CYCLE_COLUMNS.index("reconcile_fetched")]
    with psycopg.connect(CONNINFO) as connection:
        connection.execute(
            f'INSERT INTO "{postgres_schema}".cycles ({", ".join(old_columns)}) '
            f"VALUES ({', '.join(['%s'] * len(old_columns))})",
            (KEY, 0, "old", NOW, NOW, "completed", 1, 3, 3, 0, 0, 0, *[None] * 4, "0a1b2c3d"),
        )
    with PostgresStore(CONNINFO, schema=postgres_schema) as store:
        assert store.migrate() == SCHEMA_VERSION
        later = NOW + timedelta(hours=1)
        lease = store.acquire_lease(KEY, "new", later, TTL)
        assert lease is not None
        entry = entry_of(KEY, later, worker="new", reconcile_fetched=4, reconcile_tombstoned=2)
        store.complete_cycle(KEY, lease, 0, Checkpoint(None), later, 0, entry)
        assert [(e.reconcile_fetched, e.reconcile_tombstoned) for e in store.history(KEY)] == [
            (4, 2),
            (0, 0),
        ]
    with psycopg.connect(CONNINFO) as connection:
        connection.execute("SET enable_seqscan = off")  # the table is tiny: ask for the index
        listing = sql.render(sql.LIST_LIVE_IDS[IdOrder.NUMERIC], postgres_schema)
        cursor = psycopg.ClientCursor(connection)
        plan = cursor.execute(f"EXPLAIN {listing}", (KEY, 1, "9", 10)).fetchall()
    assert "live_ids_by_number" in " ".join(str(row[0]) for row in plan)
    assert "Sort" not in " ".join(str(row[0]) for row in plan)  # in index order: no sort


def test_a_store_refuses_a_schema_it_has_not_migrated(postgres_schema: str) -> None:
    """Before migrate(), every call is a StoreError telling the user to run it."""
    with PostgresStore(CONNINFO, schema=postgres_schema) as store:
        with pytest.raises(StoreError, match=r"migrate\(\)"):
            store.load(KEY)
        with pytest.raises(StoreError, match=r"migrate\(\)"):
            store.acquire_lease(KEY, "one", NOW, TTL)


def test_a_newer_schema_is_refused(postgres_store: PostgresStore, postgres_schema: str) -> None:
    """A schema migrated by a newer incsync is neither migrated nor used: upgrade incsync."""
    with psycopg.connect(CONNINFO) as connection:
        connection.execute(
            f'INSERT INTO "{postgres_schema}".schema_version (version) VALUES (%s)',
            (SCHEMA_VERSION + 1,),
        )
    with pytest.raises(StoreError, match="upgrade incsync"):
        postgres_store.migrate()
    with (
        PostgresStore(CONNINFO, schema=postgres_schema) as other,
        pytest.raises(StoreError, match="upgrade incsync"),
    ):
        other.load(KEY)


def test_a_user_without_create_rights_migrates_a_schema_made_for_it(postgres_schema: str) -> None:
    """An administrator creates the schema for an application role that may not create schemas;
    migrate() then creates the tables in it instead of failing on CREATE SCHEMA.
    """
    role = f"incsync_app_{secrets.token_hex(4)}"
    with psycopg.connect(CONNINFO, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        admin.execute(f'CREATE SCHEMA "{postgres_schema}" AUTHORIZATION "{role}"')
    try:
        conninfo = psycopg.conninfo.make_conninfo(CONNINFO, user=role)
        with PostgresStore(conninfo, schema=postgres_schema, min_size=0) as store:
            assert store.migrate() == SCHEMA_VERSION
            assert store.acquire_lease(KEY, "one", NOW, TTL) is not None
    finally:
        with psycopg.connect(CONNINFO, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{postgres_schema}" CASCADE')
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"schema": "Robert'); DROP TABLE students;--"}, "schema="),
        ({"schema": "UpperCase"}, "schema="),
        ({"min_size": 3, "max_size": 2}, "min_size"),
        ({"statement_timeout": timedelta(0)}, "statement_timeout"),
        ({"statement_timeout": 30}, "statement_timeout must be a timedelta"),
        ({"pool_timeout": 5.0}, "pool_timeout must be a timedelta"),
    ],
)
def test_invalid_settings_are_configuration_errors(options: dict[str, Any], match: str) -> None:
    """A schema name that would need quoting or impossible pool sizes are refused up front."""
    with pytest.raises(ConfigurationError, match=match):
        PostgresStore(CONNINFO, **options)


def test_without_psycopg_the_error_says_what_to_install() -> None:
    """Importing works without the extra; creating a store says to install incsync[postgres]."""
    program = (
        "import sys\n"
        "sys.modules['psycopg'] = None\n"  # makes `import psycopg` fail as if not installed
        "import incsync\n"
        "from incsync.stores.postgres import PostgresStore\n"
        "try:\n"
        "    PostgresStore('dbname=x')\n"
        "except incsync.ConfigurationError as error:\n"
        "    print(error)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
    )
    assert "pip install 'incsync[postgres]'" in completed.stdout


def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    """A server that cannot be reached gives StoreError, and the password is in no message."""
    conninfo = "host=127.0.0.1 port=1 user=sync password=hunter2-secret connect_timeout=1"
    with (
        PostgresStore(conninfo, min_size=0, pool_timeout=timedelta(seconds=1)) as store,
        pytest.raises(StoreError) as raised,
    ):
        store.load(KEY)
    assert "hunter2-secret" not in str(raised.value)
    assert "to load the state" in str(raised.value)


@pytest.mark.parametrize("key", ["nul\x00inside", "lone \ud800 surrogate"])
def test_a_source_key_postgres_cannot_hold_is_a_store_error(
    postgres_store: PostgresStore, key: str
) -> None:
    """Driver and encoding errors never leak: they are StoreErrors that say what failed."""
    with pytest.raises(StoreError, match="could not load the state"):
        postgres_store.load(key)
    with pytest.raises(StoreError, match="could not update the state"):
        postgres_store.cancel(key)


def test_a_closed_store_refuses_calls_with_a_store_error(postgres_store: PostgresStore) -> None:
    """After close(), calls fail with StoreError rather than a pool exception."""
    postgres_store.close()
    with pytest.raises(StoreError, match="closed"):
        postgres_store.load(KEY)


def test_a_host_owned_pool_is_used_and_left_open(postgres_schema: str) -> None:
    """A store built on the host's pool works on it and does not close it."""
    from psycopg_pool import ConnectionPool

    with ConnectionPool(CONNINFO, min_size=1, max_size=2, open=True) as pool:
        with PostgresStore(pool, schema=postgres_schema) as store:
            store.migrate()
            assert store.acquire_lease(KEY, "one", NOW, TTL) is not None
        with pool.connection() as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)


# -- leases and fencing ----------------------------------------------------------------------


def test_one_of_many_threads_gets_the_lease_in_every_round(postgres_schema: str) -> None:
    """Eight threads with their own connections race for one source's lease, five times.

    Every round one thread wins; the others get None. Each round starts after the previous lease
    expired, so the winner's token is one more than the last one.
    """
    threads, rounds = 8, 5
    with migrated_store(postgres_schema, max_size=threads) as store:
        tokens = []
        for number in range(rounds):
            now = NOW + number * TTL

            def take(worker: int, now: datetime = now) -> Lease | None:
                return store.acquire_lease(KEY, f"w{worker}", now, TTL)

            leases = _in_threads(threads, take)
            granted = [lease for lease in leases if lease is not None]
            assert len(granted) == 1
            tokens.append(granted[0].token)
            assert store.load(KEY).lease == granted[0]
    assert tokens == list(range(1, rounds + 1))


def test_a_lease_taken_over_after_expiry_fences_out_the_old_holder(
    postgres_store: PostgresStore,
) -> None:
    """Once the takeover happened, the old holder's checkpoint, page, completion and failure are
    refused and write nothing; the new holder's work goes through.
    """
    store = postgres_store
    old = store.acquire_lease(KEY, "old", NOW, TTL)
    assert old is not None
    store.commit_page(KEY, [_record("a", 0)], old, 0, Checkpoint(Cursor(NOW, "a")), NOW, TTL)
    assert store.acquire_lease(KEY, "new", NOW + TTL - timedelta(microseconds=1), TTL) is None
    new = store.acquire_lease(KEY, "new", NOW + TTL, TTL)
    assert new is not None
    assert new.token > old.token

    later = NOW + TTL + timedelta(seconds=1)
    page = [_record("a", 9, v=2), _record("b", 9)]
    with pytest.raises(LeaseLostError):
        store.commit_page(KEY, page, old, 0, Checkpoint(Cursor(later, "b")), later, TTL)
    with pytest.raises(LeaseLostError):
        store.save_checkpoint(KEY, old, 0, Checkpoint(Cursor(later, "b")), later, TTL)
    with pytest.raises(LeaseLostError):
        store.complete_cycle(
            KEY, old, 0, Checkpoint(Cursor(later, "b")), later, 0, entry_of(KEY, later)
        )
    with pytest.raises(LeaseLostError):
        store.fail_cycle(KEY, old, 0, ErrorInfo("X", "boom", later), 5, None, entry_of(KEY, later))
    with pytest.raises(LeaseLostError):
        store.interrupt_cycle(KEY, old, entry_of(KEY, later, Outcome.INTERRUPTED_STOP))
    store.release_lease(KEY, old)  # a no-op for a lease already taken over

    state = store.load(KEY)
    assert state.lease == new
    assert store.history(KEY) == []  # nothing of the old lease's cycle is kept
    assert state.cursor == Cursor(NOW, "a")
    assert (state.consecutive_failures, state.last_sync) == (0, None)
    assert [t.record.payload for t in store.transactions(KEY)] == [{"id": "a"}]

    result, state = store.commit_page(KEY, page, new, 0, Checkpoint(Cursor(later, "b")), later, TTL)
    assert result.applied == 2
    assert state.cursor == Cursor(later, "b")


def test_the_database_refuses_a_state_write_made_under_a_replaced_lease(
    postgres_store: PostgresStore,
) -> None:
    """The UPDATE itself is conditioned on the lease token read: a write decided on a state whose
    lease was replaced meanwhile changes no row and raises LeaseLostError.
    """
    store = postgres_store
    lease = store.acquire_lease(KEY, "old", NOW, TTL)
    assert lease is not None
    stale = store.load(KEY)
    assert store.acquire_lease(KEY, "new", NOW + TTL, TTL) is not None
    current = store.load(KEY)
    with store._transaction("write a stale state") as cursor, pytest.raises(LeaseLostError):
        store._write_state(cursor, stale, SourceState(key=KEY, phase=Phase.STOPPED))
    assert store.load(KEY) == current


def test_a_checkpoint_waits_for_a_locked_row_no_longer_than_the_statement_timeout(
    postgres_schema: str,
) -> None:
    """While another session holds the source's row, a checkpoint fails with StoreError after the
    statement timeout instead of hanging the worker.
    """
    with migrated_store(postgres_schema, statement_timeout=timedelta(milliseconds=300)) as store:
        lease = store.acquire_lease(KEY, "one", NOW, TTL)
        assert lease is not None
        with psycopg.connect(CONNINFO) as blocker:
            blocker.execute(
                f'SELECT 1 FROM "{postgres_schema}".sources WHERE source_key = %s FOR UPDATE',
                (KEY,),
            )
            with pytest.raises(StoreError, match="QueryCanceled"):
                store.save_checkpoint(KEY, lease, 0, Checkpoint(Cursor(NOW, "a")), NOW, TTL)
        saved = store.save_checkpoint(KEY, lease, 0, Checkpoint(Cursor(NOW, "a")), NOW, TTL)
        assert saved.cursor == Cursor(NOW, "a")


# -- pages and the sink ----------------------------------------------------------------------


def test_a_page_that_fails_midway_leaves_neither_rows_nor_checkpoint(
    postgres_store: PostgresStore, postgres_schema: str
) -> None:
    """A failure after the rows and the state were written (here: storing the set-aside records)
    rolls the whole page back: no row, the old cursor, the old lease expiry, no set-aside record.
    """
    store = postgres_store
    lease = store.acquire_lease(KEY, "one", NOW, TTL)
    assert lease is not None
    before = store.load(KEY)
    with psycopg.connect(CONNINFO) as connection:
        connection.execute(
            f'CREATE FUNCTION "{postgres_schema}".refuse() RETURNS trigger LANGUAGE plpgsql '
            "AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$"
        )
        connection.execute(
            f'CREATE TRIGGER refuse BEFORE INSERT ON "{postgres_schema}".rejected '
            f'FOR EACH ROW EXECUTE FUNCTION "{postgres_schema}".refuse()'
        )
    checkpoint = Checkpoint(
        cursor=Cursor(NOW, "b"), rejected=[RejectedRecord(record_id="x", reason="bad")]
    )
    later = NOW + timedelta(minutes=1)
    with pytest.raises(StoreError, match="disk full"):
        store.commit_page(KEY, [_record("a", 0), _record("b", 0)], lease, 0, checkpoint, later, TTL)
    assert store.count_transactions(KEY) == 0
    assert store.load(KEY) == before
    assert store.list_rejected(KEY) == []


def test_replaying_a_page_writes_no_row_version(
    postgres_store: PostgresStore, postgres_schema: str
) -> None:
    """Committing the same page again applies nothing and leaves every row's version (xmin) as it
    was: the upsert's WHERE skips the rows, it does not rewrite them with equal values.
    """
    store = postgres_store
    lease = store.acquire_lease(KEY, "one", NOW, TTL)
    assert lease is not None
    page = [_record(f"r{number:03}", number % 7, n=number) for number in range(300)]
    checkpoint = Checkpoint(Cursor(NOW + timedelta(seconds=6), "r300"))
    first, _ = store.commit_page(KEY, page, lease, 0, checkpoint, NOW, TTL)
    versions = f'SELECT record_id, xmin::text FROM "{postgres_schema}".transactions ORDER BY 1'
    written = _query(versions)
    again, _ = store.commit_page(KEY, page, lease, 0, checkpoint, NOW, TTL)
    assert (first.applied, again.applied) == (300, 0)
    assert _query(versions) == written
    assert store.apply(KEY, page, 0, 1).applied == 0


def test_workers_writing_the_same_records_in_any_order_never_deadlock(
    postgres_schema: str,
) -> None:
    """Four threads upsert the same 200 records in different orders, ten times each, with newer
    versions every time: no deadlock, and every record ends at its newest version.
    """
    with migrated_store(postgres_schema, max_size=4) as store:

        def write(worker: int) -> int:
            written = 0
            for version in range(10):
                page = [
                    _record(f"r{number:03}", version, v=version, by=worker) for number in range(200)
                ]
                if worker % 2:
                    page.reverse()
                written += store.apply(KEY, page, 0, 1).applied
            return written

        written = _in_threads(4, write)
        assert sum(written) >= 200 * 10  # each version of each record was written at least once
        stored = {t.record.id: t.record.payload["v"] for t in store.transactions(KEY)}
        assert stored == {f"r{number:03}": 9 for number in range(200)}


def test_migrate_keeps_only_mapped_rows_with_an_owner_in_the_owner_index(
    postgres_schema: str,
) -> None:
    """Migration 12 replaces the owner index with one of the rows that have an owner (a row
    without one is never read by owner); a query by owner still reads that index."""
    _schema_at_version(postgres_schema, sql.OWNER_INDEX_VERSION - 1)
    with PostgresStore(CONNINFO, schema=postgres_schema) as store:
        assert store.migrate() == SCHEMA_VERSION
    (definition,) = _query(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = %s",
        postgres_schema,
        "mapped_transactions_by_owner",
    )[0]
    assert definition.endswith("WHERE (owner_id IS NOT NULL)")
    with psycopg.connect(CONNINFO) as connection:
        connection.execute("SET enable_seqscan = off")  # the table is empty: ask for the index
        cursor = psycopg.ClientCursor(connection)
        plan = cursor.execute(
            f'EXPLAIN SELECT record_id FROM "{postgres_schema}".mapped_transactions '
            "WHERE source_key = %s AND owner_id = %s AND business_date >= %s",
            (KEY, "u1", NOW.date()),
        ).fetchall()
    assert "mapped_transactions_by_owner" in " ".join(str(row[0]) for row in plan)
