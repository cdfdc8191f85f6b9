"""The embedded default: state, transactions and set-aside records in one SQLite file.

WAL mode lets readers (a status page) run beside the writer; ``BEGIN IMMEDIATE`` makes every
read-modify-write of a source's state take the write lock first, so several processes on one file
see each other's leases and never interleave a compare-and-set. A page's rows and its checkpoint
commit in one transaction, so a crash leaves either both or neither.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path

from incsync.actions import Action, ActionEntry
from incsync.content import escaped_text, json_form
from incsync.cursor import Cursor
from incsync.errors import BadRecordError, ConfigurationError, StoreError
from incsync.history import DEFAULT_HISTORY_RETENTION, CycleEntry, HistoryRetention
from incsync.mapping._kept import (
    MappedPosition,
    MappedRow,
    MappingLookup,
    RemapPage,
    mapping_lookup,
    split_page,
)
from incsync.mapping._spec import TransactionMapping
from incsync.marks import marks_from_text, marks_text
from incsync.reconcile import IdOrder
from incsync.records import SWEPT, ApplyResult, Record, RejectedRecord, Transaction
from incsync.results import Outcome
from incsync.state import (
    Checkpoint,
    CountCheck,
    ErrorInfo,
    Lease,
    Phase,
    SourceState,
    admit_writer,
    check_source_key,
    new_state,
)
from incsync.state import save_checkpoint as checkpoint_transition
from incsync.stores._base import (
    MappedRowsBase,
    StateStoreBase,
    Transition,
    kept_digest,
    set_aside,
)
from incsync.stores._sqlite_mapped import (
    MAPPED_SCHEMA,
    OWNER_INDEX,
    held_versions,
    read_mapped,
    remap_page,
    void_tombstoned,
    write_changes,
)
from incsync.timestamps import from_micros, to_micros
from incsync.tokens import SealedTokens

__all__ = ["SQLiteStore"]

SCHEMA_VERSION = 12
"""Version 2 keeps each transaction's content digest, version 3 each source's marks, version 4 the
sink's fence per source, version 5 why a transaction was swept and each source's last count
check, version 6 each source's OAuth2 tokens, version 7 each source's cycle history, version 8
each history entry's cycle id, version 9 the mapped transactions and each source's re-map
checkpoint, version 10 each history entry's id reconcile figures and an index of live ids in
numeric order, version 11 each source's action log (:mod:`incsync.actions`), version 12 keeps
only mapped rows with an owner in the owner index; a file of an older version is upgraded on
open."""

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS incsync_meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS incsync_sources (
    source_key TEXT PRIMARY KEY,
    phase TEXT NOT NULL,
    generation INTEGER NOT NULL,
    cursor_updated_at_us INTEGER,
    cursor_record_id TEXT,
    last_change_us INTEGER,
    last_sync_us INTEGER,
    last_attempt_us INTEGER,
    consecutive_failures INTEGER NOT NULL,
    error_class TEXT,
    error_message TEXT,
    error_at_us INTEGER,
    error_retryable INTEGER,
    error_auth INTEGER,
    lease_holder TEXT,
    lease_expires_us INTEGER,
    lease_token INTEGER,
    not_before_us INTEGER,
    last_cycle_rejected INTEGER NOT NULL,
    reset_pending INTEGER NOT NULL,
    marks TEXT NOT NULL DEFAULT '{}',
    count_source INTEGER,
    count_host INTEGER,
    count_at_us INTEGER,
    count_previous_drift INTEGER,
    count_full_read_drift INTEGER
);
CREATE TABLE IF NOT EXISTS incsync_transactions (
    source_key TEXT NOT NULL,
    record_id TEXT NOT NULL,
    updated_at_us INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    payload TEXT NOT NULL,
    generation INTEGER NOT NULL,
    content_digest BLOB,
    deleted_reason TEXT,
    PRIMARY KEY (source_key, record_id)
);
CREATE INDEX IF NOT EXISTS incsync_live_ids_by_number
    ON incsync_transactions (source_key, length(record_id), record_id) WHERE NOT deleted;
CREATE TABLE IF NOT EXISTS incsync_sink_fences (
    source_key TEXT PRIMARY KEY,
    token INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS incsync_tokens (
    source_key TEXT PRIMARY KEY,
    tokens TEXT NOT NULL,
    encrypted INTEGER NOT NULL,
    saved_at_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS incsync_cycles (
    id INTEGER PRIMARY KEY,
    source_key TEXT NOT NULL,
    generation INTEGER NOT NULL,
    worker TEXT NOT NULL,
    started_us INTEGER NOT NULL,
    ended_us INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    pages INTEGER NOT NULL,
    fetched INTEGER NOT NULL,
    applied INTEGER NOT NULL,
    already_applied INTEGER NOT NULL,
    rejected INTEGER NOT NULL,
    swept INTEGER NOT NULL,
    error_class TEXT,
    error_message TEXT,
    retry_at_us INTEGER,
    clock_skew_us INTEGER,
    cycle_id TEXT,
    reconcile_fetched INTEGER NOT NULL DEFAULT 0,
    reconcile_tombstoned INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS incsync_cycles_by_start ON incsync_cycles (source_key, started_us);
CREATE TABLE IF NOT EXISTS incsync_actions (
    id INTEGER PRIMARY KEY,
    source_key TEXT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    at_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS incsync_actions_by_time ON incsync_actions (source_key, at_us);
CREATE TABLE IF NOT EXISTS incsync_rejected (
    source_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    record_id TEXT,
    reason TEXT NOT NULL,
    raw TEXT NOT NULL,
    seen_at_us INTEGER,
    PRIMARY KEY (source_key, fingerprint)
);
"""
    + MAPPED_SCHEMA
)

# One statement decides idempotency: a row is written only when it supersedes the stored one
# (incsync.records.supersedes), so replaying a page changes nothing. Contents are compared by
# their digests (incsync.content); a row kept without one (see _add_content_digests) differs.
_UPSERT = """
INSERT INTO incsync_transactions
    (source_key, record_id, updated_at_us, deleted, payload, content_digest, generation)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (source_key, record_id) DO UPDATE SET
    updated_at_us = excluded.updated_at_us,
    deleted = excluded.deleted,
    payload = excluded.payload,
    content_digest = excluded.content_digest,
    generation = excluded.generation,
    deleted_reason = NULL
WHERE excluded.updated_at_us > incsync_transactions.updated_at_us
   OR (excluded.updated_at_us = incsync_transactions.updated_at_us
       AND (excluded.generation > incsync_transactions.generation
            OR (excluded.generation = incsync_transactions.generation
                AND (excluded.deleted != incsync_transactions.deleted
                     OR excluded.content_digest IS NOT incsync_transactions.content_digest))))
"""

# The sweep after a full re-read (incsync.records.is_swept and swept, as one set operation):
# live rows still under an older generation, but the ids the read set aside (a JSON array).
# Written as a CASE so that only the rows the sweep would change are looked up among the spared
# ids: as plain ANDed terms, SQLite probed the spared ids for every row of the source, which made
# the sweep a fifth slower than the bare UPDATE (bench/sweep.py).
_SWEEP = """
UPDATE incsync_transactions SET deleted = 1, generation = ?, deleted_reason = ?
WHERE source_key = ?
  AND CASE WHEN generation < ? AND deleted = 0
      THEN record_id NOT IN (SELECT value FROM json_each(?))
      ELSE 0 END
"""

# The live ids after a bound, in each incsync.reconcile.IdOrder, each statement a range of an
# index. Code point order runs along the primary key (SQLite's BINARY order is code point order).
# Numeric order (by length, then code point) runs along incsync_live_ids_by_number in two ranges:
# the ids as long as the bound and after it, then, if the page is not full, the longer ones. One
# statement comparing the row value (length(record_id), record_id) would be no range of that
# index for SQLite, which would then walk the source's ids from the first on every page.
_LIVE_IDS = """
SELECT record_id FROM incsync_transactions
WHERE source_key = ? AND NOT deleted AND record_id > ? ORDER BY record_id LIMIT ?
"""
_LIVE_IDS_AS_LONG = """
SELECT record_id FROM incsync_transactions
WHERE source_key = ? AND NOT deleted AND length(record_id) = ? AND record_id > ?
ORDER BY record_id LIMIT ?
"""
_LIVE_IDS_LONGER = """
SELECT record_id FROM incsync_transactions
WHERE source_key = ? AND NOT deleted AND length(record_id) > ?
ORDER BY length(record_id), record_id LIMIT ?
"""
_TOMBSTONE = """
UPDATE incsync_transactions SET deleted = 1, generation = ?, deleted_reason = ?
WHERE source_key = ? AND NOT deleted AND record_id IN (SELECT value FROM json_each(?))
"""

_COUNT_TRANSACTIONS = "SELECT count(*) FROM incsync_transactions WHERE source_key = ?"
_COUNT_LIVE = _COUNT_TRANSACTIONS + " AND NOT deleted"

_STATE_COLUMNS = (
    "source_key, phase, generation, cursor_updated_at_us, cursor_record_id, last_change_us, "
    "last_sync_us, last_attempt_us, consecutive_failures, error_class, error_message, "
    "error_at_us, error_retryable, error_auth, lease_holder, lease_expires_us, lease_token, "
    "not_before_us, last_cycle_rejected, reset_pending, marks, count_source, count_host, "
    "count_at_us, count_previous_drift, count_full_read_drift"
)
_SAVE_STATE = (
    f"INSERT OR REPLACE INTO incsync_sources ({_STATE_COLUMNS}) "
    f"VALUES ({', '.join('?' * len(_STATE_COLUMNS.split(',')))})"
)
_SAVE_REJECTED = """
INSERT OR REPLACE INTO incsync_rejected
    (source_key, fingerprint, record_id, reason, raw, seen_at_us)
VALUES (?, ?, ?, ?, ?, ?)
"""


# A source's history, newest first: by start, then by row (a later row was written later). The
# index on (source_key, started_us) holds the rowid too, so every read and prune of one source is
# a range of that index, never a scan of the table.
_CYCLE_COLUMNS = (
    "source_key, generation, worker, started_us, ended_us, outcome, pages, fetched, applied, "
    "already_applied, rejected, swept, error_class, error_message, retry_at_us, clock_skew_us, "
    "cycle_id, reconcile_fetched, reconcile_tombstoned"
)
_SAVE_CYCLE = (
    f"INSERT INTO incsync_cycles ({_CYCLE_COLUMNS}) "
    f"VALUES ({', '.join('?' * len(_CYCLE_COLUMNS.split(',')))})"
)
_READ_CYCLES = (
    f"SELECT {_CYCLE_COLUMNS} FROM incsync_cycles WHERE source_key = ? "
    "ORDER BY started_us DESC, id DESC LIMIT ?"
)
# Each source's latest entries, newest first, as StateStore.history_summaries reads them for many
# sources in one statement: for each key of the JSON array, the same index range as _READ_CYCLES,
# so a source costs its newest entries and never its whole history.
_LATEST_CYCLES = """
SELECT keys.value, cycles.outcome, cycles.clock_skew_us FROM json_each(?) AS keys
JOIN incsync_cycles AS cycles ON cycles.id IN (
    SELECT id FROM incsync_cycles WHERE source_key = keys.value
    ORDER BY started_us DESC, id DESC LIMIT ?
)
ORDER BY keys.key, cycles.started_us DESC, cycles.id DESC
"""
_SAVE_ACTION = "INSERT INTO incsync_actions (source_key, action, actor, at_us) VALUES (?, ?, ?, ?)"
_READ_ACTIONS = (
    "SELECT source_key, action, actor, at_us FROM incsync_actions WHERE source_key = ? "
    "ORDER BY at_us DESC, id DESC LIMIT ?"
)
# incsync.history.retained, as two deletes of one source's oldest entries: those that started
# before the age limit, and those after the newest max_cycles (a row-value range below the last
# one kept; without that many rows, the subquery finds none and nothing is deleted).
_PRUNE_CYCLES_BY_AGE = "DELETE FROM incsync_cycles WHERE source_key = ? AND started_us < ?"
_PRUNE_CYCLES_BY_COUNT = """
DELETE FROM incsync_cycles WHERE source_key = ? AND (started_us, id) < (
    SELECT started_us, id FROM incsync_cycles WHERE source_key = ?
    ORDER BY started_us DESC, id DESC LIMIT 1 OFFSET ?
)
"""

_BACKFILL_BATCH = 1_000  # rows read and updated at a time while upgrading a file


def _add_content_digests(connection: sqlite3.Connection) -> None:
    """Upgrade to schema 2: a digest column, filled in from the payload every row holds."""
    connection.execute("ALTER TABLE incsync_transactions ADD COLUMN content_digest BLOB")
    after: tuple[str, str] = ("", "")
    while rows := connection.execute(
        "SELECT source_key, record_id, payload FROM incsync_transactions "
        "WHERE (source_key, record_id) > (?, ?) ORDER BY source_key, record_id LIMIT ?",
        (*after, _BACKFILL_BATCH),
    ).fetchall():
        connection.executemany(
            "UPDATE incsync_transactions SET content_digest = ? "
            "WHERE source_key = ? AND record_id = ?",
            [(kept_digest(payload), key, record_id) for key, record_id, payload in rows],
        )
        after = (rows[-1][0], rows[-1][1])


def _add_marks(connection: sqlite3.Connection) -> None:
    """Upgrade to schema 3: each source's marks (none yet for the sources already kept)."""
    connection.execute("ALTER TABLE incsync_sources ADD COLUMN marks TEXT NOT NULL DEFAULT '{}'")


_COUNT_CHECK_COLUMNS = (
    "count_source",
    "count_host",
    "count_at_us",
    "count_previous_drift",
    "count_full_read_drift",
)


def _add_deleted_reasons_and_count_checks(connection: sqlite3.Connection) -> None:
    """Upgrade to schema 5: why a transaction was swept, and each source's last count check.

    None of either existed before, so the new columns start empty.
    """
    connection.execute("ALTER TABLE incsync_transactions ADD COLUMN deleted_reason TEXT")
    for column in _COUNT_CHECK_COLUMNS:
        connection.execute(f"ALTER TABLE incsync_sources ADD COLUMN {column} INTEGER")


def _add_cycle_ids(connection: sqlite3.Connection) -> None:
    """Upgrade to schema 8: each history entry's cycle id (none for the entries already kept).

    A file older than schema 7 had no history: the schema's statements just made the table, with
    the column already.
    """
    columns = connection.execute("PRAGMA table_info(incsync_cycles)").fetchall()
    if "cycle_id" not in {column["name"] for column in columns}:
        connection.execute("ALTER TABLE incsync_cycles ADD COLUMN cycle_id TEXT")


def _add_reconcile_figures(connection: sqlite3.Connection) -> None:
    """Upgrade to schema 10: each history entry's id reconcile figures (0 for the entries kept).

    The index of live ids in numeric order needs no step: the schema's statements create it.
    """
    columns = connection.execute("PRAGMA table_info(incsync_cycles)").fetchall()
    names = {column["name"] for column in columns}
    for column in ("reconcile_fetched", "reconcile_tombstoned"):
        if column not in names:
            connection.execute(
                f"ALTER TABLE incsync_cycles ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0"
            )


def _make_owner_index_partial(connection: sqlite3.Connection) -> None:
    for statement in OWNER_INDEX:
        connection.execute(statement)


# Each step brings a file written by an older incsync to the schema version it names. A version
# that only adds tables (4: the sink's fences; 6: the tokens; 7: the cycle history; 9: the mapped
# transactions; 11: the action log) needs no step:
# the schema's statements, run on every open, create them.
_UPGRADES: tuple[tuple[int, Callable[[sqlite3.Connection], None]], ...] = (
    (2, _add_content_digests),
    (3, _add_marks),
    (5, _add_deleted_reasons_and_count_checks),
    (8, _add_cycle_ids),
    (10, _add_reconcile_figures),
    (12, _make_owner_index_partial),
)


_MICROSECOND = timedelta(microseconds=1)


def _micros(value: datetime | None) -> int | None:
    return None if value is None else to_micros(value)


def _time(micros: int | None) -> datetime | None:
    return None if micros is None else from_micros(micros)


def _state_row(state: SourceState) -> tuple[object, ...]:
    # Text SQLite cannot encode (a lone surrogate in a vendor's error message) is kept escaped.
    error, lease, cursor, count = state.last_error, state.lease, state.cursor, state.count_check
    return (
        state.key,
        state.phase.value,
        state.generation,
        None if cursor is None else to_micros(cursor.updated_at),
        None if cursor is None else escaped_text(cursor.record_id),
        _micros(state.last_change),
        _micros(state.last_sync),
        _micros(state.last_attempt),
        state.consecutive_failures,
        None if error is None else escaped_text(error.error_class),
        None if error is None else escaped_text(error.message),
        None if error is None else to_micros(error.at),
        None if error is None else int(error.retryable),
        None if error is None else int(error.auth),
        None if lease is None else escaped_text(lease.holder),
        None if lease is None else to_micros(lease.expires_at),
        None if lease is None else lease.token,
        _micros(state.not_before),
        state.last_cycle_rejected,
        state.reset_pending,
        marks_text(state.marks),
        None if count is None else count.source,
        None if count is None else count.host,
        None if count is None else to_micros(count.at),
        None if count is None else count.previous_drift,
        None if count is None else count.full_read_drift,
    )


def _state_from_row(row: sqlite3.Row) -> SourceState:
    return SourceState(
        key=row["source_key"],
        phase=Phase(row["phase"]),
        generation=row["generation"],
        cursor=None
        if row["cursor_updated_at_us"] is None
        else Cursor(from_micros(row["cursor_updated_at_us"]), row["cursor_record_id"]),
        last_change=_time(row["last_change_us"]),
        last_sync=_time(row["last_sync_us"]),
        last_attempt=_time(row["last_attempt_us"]),
        consecutive_failures=row["consecutive_failures"],
        last_error=None
        if row["error_class"] is None
        else ErrorInfo(
            error_class=row["error_class"],
            message=row["error_message"],
            at=from_micros(row["error_at_us"]),
            retryable=bool(row["error_retryable"]),
            auth=bool(row["error_auth"]),
        ),
        lease=None
        if row["lease_token"] is None
        else Lease(
            holder=row["lease_holder"],
            expires_at=from_micros(row["lease_expires_us"]),
            token=row["lease_token"],
        ),
        not_before=_time(row["not_before_us"]),
        last_cycle_rejected=row["last_cycle_rejected"],
        reset_pending=bool(row["reset_pending"]),
        marks=marks_from_text(row["marks"]),
        count_check=None
        if row["count_at_us"] is None
        else CountCheck(
            source=row["count_source"],
            host=row["count_host"],
            at=from_micros(row["count_at_us"]),
            previous_drift=row["count_previous_drift"],
            full_read_drift=row["count_full_read_drift"],
        ),
    )


def _cycle_row(entry: CycleEntry) -> tuple[object, ...]:
    skew = entry.clock_skew
    return (
        entry.source_key,
        entry.generation,
        escaped_text(entry.worker),
        to_micros(entry.started),
        to_micros(entry.ended),
        entry.outcome.value,
        entry.pages,
        entry.fetched,
        entry.applied,
        entry.already_applied,
        entry.rejected,
        entry.swept,
        None if entry.error_class is None else escaped_text(entry.error_class),
        None if entry.error is None else escaped_text(entry.error),
        _micros(entry.retry_at),
        None if skew is None else skew // _MICROSECOND,
        entry.cycle_id,
        entry.reconcile_fetched,
        entry.reconcile_tombstoned,
    )


def _cycle_from_row(row: sqlite3.Row) -> CycleEntry:
    skew = row["clock_skew_us"]
    return CycleEntry(
        source_key=row["source_key"],
        generation=row["generation"],
        worker=row["worker"],
        started=from_micros(row["started_us"]),
        ended=from_micros(row["ended_us"]),
        outcome=Outcome(row["outcome"]),
        pages=row["pages"],
        fetched=row["fetched"],
        applied=row["applied"],
        already_applied=row["already_applied"],
        rejected=row["rejected"],
        swept=row["swept"],
        error_class=row["error_class"],
        error=row["error_message"],
        retry_at=_time(row["retry_at_us"]),
        clock_skew=None if skew is None else timedelta(microseconds=skew),
        cycle_id=row["cycle_id"],
        reconcile_fetched=row["reconcile_fetched"],
        reconcile_tombstoned=row["reconcile_tombstoned"],
    )


def _create_private_file(path: Path) -> None:
    """Create the database file readable and writable by its owner only, if it does not exist.

    The file holds the sources' records (customers' invoices and contacts); SQLite would create
    it with the umask's mode, commonly 0644. SQLite gives the ``-wal`` and ``-shm`` files the
    database file's mode, so they are private too. An existing file keeps the mode it has.
    """
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as error:
        raise StoreError(f"cannot create SQLite database {path}: {error}") from error
    try:
        if hasattr(os, "fchmod"):  # POSIX; Windows has no such modes
            # os.open's mode passes through the umask, which could leave the owner unable to
            # write; the mode is set exactly.
            os.fchmod(descriptor, 0o600)
    finally:
        os.close(descriptor)


def _close_all(connections: list[sqlite3.Connection]) -> None:
    for connection in connections:
        connection.close()
    connections.clear()


class SQLiteStore(StateStoreBase, MappedRowsBase):
    """State store, transaction sink and token store in one SQLite database file.

    Safe for many threads (one connection each) and many processes on the same file. Create one
    per process; the schema is created on first use.

    Args:
        path: The database file; created if missing, readable by its owner only (0600).
            ``":memory:"`` is refused because each thread would see its own empty database.
        busy_timeout: How long a writer waits for another process's write lock.
        synchronous: SQLite's ``synchronous`` setting. ``"NORMAL"`` (the default) survives any
            process crash; after a power loss the last commits may roll back, but a page and its
            checkpoint always roll back together. Use ``"FULL"`` to survive power loss too.
        history_retention: How many cycle entries to keep per source, and for how long.
        mappings: Each source's :class:`~incsync.mapping.TransactionMapping`, by source key (or
            a function of the key): the records of those sources are kept mapped as well, in
            the same transaction (see :mod:`incsync.mapped`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: timedelta = timedelta(seconds=30),
        synchronous: str = "NORMAL",
        history_retention: HistoryRetention = DEFAULT_HISTORY_RETENTION,
        mappings: Mapping[str, TransactionMapping] | MappingLookup | None = None,
    ) -> None:
        if str(path) == ":memory:":
            raise ConfigurationError(
                "SQLiteStore needs a file path; use incsync.testing.InMemoryStore for memory"
            )
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ConfigurationError(
                f"synchronous={synchronous!r}; expected one of OFF, NORMAL, FULL, EXTRA"
            )
        self._mapping_for = mapping_lookup(mappings)
        self.path = Path(path)
        self.history_retention = history_retention
        self._busy_timeout = busy_timeout
        self._synchronous = synchronous.upper()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        # A store dropped without close() still closes its connections when collected.
        self._finalizer = weakref.finalize(self, _close_all, self._connections)
        _create_private_file(self.path)
        self._create_schema()

    # -- connections -------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            try:
                connection = sqlite3.connect(
                    self.path,
                    timeout=self._busy_timeout.total_seconds(),
                    isolation_level=None,  # transactions are begun explicitly below
                    check_same_thread=False,
                )
                connection.row_factory = sqlite3.Row
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute(f"PRAGMA synchronous={self._synchronous}")
            except sqlite3.Error as error:
                raise StoreError(f"cannot open SQLite database {self.path}: {error}") from error
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        connection = self._connection()
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise StoreError(f"cannot lock SQLite database {self.path}: {error}") from error
        try:
            yield connection
        except sqlite3.Error as error:
            connection.execute("ROLLBACK")
            raise StoreError(f"SQLite database {self.path} failed: {error}") from error
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        try:
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            connection.execute("ROLLBACK")
            raise StoreError(f"cannot commit to SQLite database {self.path}: {error}") from error

    def _create_schema(self) -> None:
        with self._write() as connection:
            # executescript() would commit the transaction; run the statements one by one in it.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
            row = connection.execute(
                "SELECT value FROM incsync_meta WHERE name = 'schema_version'"
            ).fetchone()
            # Without a version the file is new, and the statements above made the current schema.
            version = SCHEMA_VERSION if row is None else int(row["value"])
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} uses incsync schema {version}, newer than this version's "
                    f"{SCHEMA_VERSION}; upgrade incsync"
                )
            for upgraded_to, upgrade in _UPGRADES:
                if version < upgraded_to:
                    upgrade(connection)
            if row is None or version < SCHEMA_VERSION:
                connection.execute(
                    "INSERT OR REPLACE INTO incsync_meta (name, value) "
                    "VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )

    def close(self) -> None:
        """Close every connection this store opened (in all threads)."""
        with self._connections_lock:
            _close_all(self._connections)
        self._local = threading.local()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- state store -------------------------------------------------------------------------

    @staticmethod
    def _read_state(connection: sqlite3.Connection, source_key: str) -> SourceState:
        row = connection.execute(
            f"SELECT {_STATE_COLUMNS} FROM incsync_sources WHERE source_key = ?", (source_key,)
        ).fetchone()
        return new_state(source_key) if row is None else _state_from_row(row)

    def load(self, source_key: str) -> SourceState:
        """Return the source's state (a new one if the store has never seen it)."""
        return self._read_state(self._connection(), source_key)

    def list_states(self) -> Sequence[SourceState]:
        """Return the state of every source the store knows, ordered by key."""
        rows = self._connection().execute(
            f"SELECT {_STATE_COLUMNS} FROM incsync_sources ORDER BY source_key"
        )
        return [_state_from_row(row) for row in rows]

    def list_rejected(self, source_key: str) -> Sequence[RejectedRecord]:
        """Return the records set aside for the source, oldest sighting first."""
        check_source_key(source_key)
        rows = self._connection().execute(
            "SELECT record_id, reason, raw, seen_at_us FROM incsync_rejected "
            "WHERE source_key = ? ORDER BY seen_at_us, fingerprint",
            (source_key,),
        )
        return [
            RejectedRecord(
                record_id=row["record_id"],
                reason=row["reason"],
                raw=row["raw"],
                seen_at=_time(row["seen_at_us"]),
            )
            for row in rows
        ]

    def _history(self, source_key: str, limit: int | None) -> Sequence[CycleEntry]:
        rows = self._connection().execute(
            _READ_CYCLES, (source_key, -1 if limit is None else limit)
        )
        return [_cycle_from_row(row) for row in rows]

    def _actions(self, source_key: str, limit: int | None) -> Sequence[ActionEntry]:
        rows = self._connection().execute(
            _READ_ACTIONS, (source_key, -1 if limit is None else limit)
        )
        return [
            ActionEntry(
                source_key=row["source_key"],
                action=Action(row["action"]),
                actor=row["actor"],
                at=from_micros(row["at_us"]),
            )
            for row in rows
        ]

    def _latest_cycles(
        self, source_keys: Sequence[str], cycles: int
    ) -> Iterable[tuple[str, Outcome, timedelta | None]]:
        rows = self._connection().execute(_LATEST_CYCLES, (json.dumps(source_keys), cycles))
        return [
            (key, Outcome(outcome), None if skew is None else timedelta(microseconds=skew))
            for key, outcome, skew in rows
        ]

    def _update(
        self,
        source_key: str,
        change: Transition,
        rejected: Sequence[RejectedRecord] = (),
        now: datetime | None = None,
        forget_rejected: bool = False,
        entry: CycleEntry | None = None,
        action: ActionEntry | None = None,
    ) -> SourceState:
        with self._write() as connection:
            updated = change(self._read_state(connection, source_key))
            connection.execute(_SAVE_STATE, _state_row(updated))
            if forget_rejected:
                connection.execute(
                    "DELETE FROM incsync_rejected WHERE source_key = ?", (source_key,)
                )
            self._keep_rejected(connection, source_key, rejected, now)
            if entry is not None:
                self._keep_entry(connection, entry)
            if action is not None:
                connection.execute(
                    _SAVE_ACTION,
                    (source_key, action.action.value, action.actor, to_micros(action.at)),
                )
            return updated

    def _keep_entry(self, connection: sqlite3.Connection, entry: CycleEntry) -> None:
        """Keep a cycle's entry and prune its source's history, in the caller's transaction."""
        retention, key = self.history_retention, entry.source_key
        if not retention.keeps_entries:
            return
        connection.execute(_SAVE_CYCLE, _cycle_row(entry))
        oldest = retention.oldest_start(entry.started)
        if oldest is not None:
            connection.execute(_PRUNE_CYCLES_BY_AGE, (key, to_micros(oldest)))
        if retention.max_cycles is not None:
            connection.execute(_PRUNE_CYCLES_BY_COUNT, (key, key, retention.max_cycles - 1))

    @staticmethod
    def _keep_rejected(
        connection: sqlite3.Connection,
        source_key: str,
        rejected: Sequence[RejectedRecord],
        now: datetime | None,
    ) -> None:
        if rejected:
            connection.executemany(
                _SAVE_REJECTED,
                [
                    (
                        source_key,
                        item.fingerprint,
                        item.record_id,
                        item.reason,
                        item.raw,
                        _micros(now),
                    )
                    for item in rejected
                ],
            )

    # -- transaction sink --------------------------------------------------------------------

    @staticmethod
    def _rows(
        source_key: str, records: Sequence[Record], generation: int
    ) -> tuple[list[tuple[object, ...]], list[RejectedRecord]]:
        rows: list[tuple[object, ...]] = []
        rejected: list[RejectedRecord] = []
        for record in records:
            try:
                payload, digest = json_form(record.payload)
            except BadRecordError as error:
                rejected.append(set_aside(record, error.reason))
                continue
            rows.append(
                (
                    source_key,
                    record.id,
                    to_micros(record.updated_at),
                    record.deleted,
                    payload,
                    digest,
                    generation,
                )
            )
        return rows, rejected

    def _write_rows(
        self,
        connection: sqlite3.Connection,
        source_key: str,
        records: Sequence[Record],
        generation: int,
    ) -> ApplyResult:
        # A source with a mapping: records that cannot be mapped are set aside before anything
        # is written, and the mapped rows are written with the raw ones.
        page = split_page(self.mapping_for(source_key), source_key, records)
        rows, rejected = self._rows(source_key, page.records, generation)
        before = connection.total_changes
        connection.executemany(_UPSERT, rows)
        applied = connection.total_changes - before
        changes = page.changes
        if rejected:  # refused after mapping: their mapped rows stay as their raw rows do
            written = {(row[1], row[2], row[3]) for row in rows}
            changes = [
                change
                for change in changes
                if (change.record.id, to_micros(change.record.updated_at), change.record.deleted)
                in written
            ]
        kept = [(change, generation) for change in changes]
        write_changes(connection, source_key, kept, held_versions(connection, source_key, kept))
        return ApplyResult(applied=applied, rejected=[*page.rejected, *rejected])

    def apply(
        self, source_key: str, records: Sequence[Record], generation: int, token: int
    ) -> ApplyResult:
        """Write the records that supersede what is stored, in one transaction.

        Raises:
            StaleWriteError: A newer lease has written for the source (nothing is written).
        """
        check_source_key(source_key)
        with self._write() as connection:
            self._raise_fence(connection, source_key, token)
            return self._write_rows(connection, source_key, records, generation)

    def sweep(self, source_key: str, generation: int, token: int, spared: Collection[str]) -> int:
        """Tombstone the live transactions a full re-read under ``generation`` did not see.

        One ``UPDATE`` over the source's rows, in one transaction with the fence.

        Raises:
            StaleWriteError: A newer lease has written for the source (nothing is changed).
        """
        with self._write() as connection:
            self._raise_fence(connection, source_key, token)
            swept = connection.execute(
                _SWEEP, (generation, SWEPT, source_key, generation, json.dumps(sorted(spared)))
            )
            if self.mapping_for(source_key) is not None:
                void_tombstoned(connection, source_key, generation, SWEPT)
            return swept.rowcount

    def list_live_ids(
        self,
        source_key: str,
        after: str | None,
        limit: int,
        order: IdOrder = IdOrder.CODE_POINT,
    ) -> Sequence[str]:
        """Return up to ``limit`` live ids of the source after ``after`` in ``order``: one query."""
        check_source_key(source_key)
        connection = self._connection()
        length, last = order.sort_key(after or "")  # "" sorts before every id in each order
        if order is IdOrder.CODE_POINT:
            return [row[0] for row in connection.execute(_LIVE_IDS, (source_key, last, limit))]
        ids = [
            row[0]
            for row in connection.execute(_LIVE_IDS_AS_LONG, (source_key, length, last, limit))
        ]
        if len(ids) < limit:
            longer = connection.execute(_LIVE_IDS_LONGER, (source_key, length, limit - len(ids)))
            ids.extend(row[0] for row in longer)
        return ids

    def tombstone(
        self, source_key: str, ids: Collection[str], generation: int, token: int, reason: str
    ) -> int:
        """Make the live transactions with these ids tombstones saying ``reason``: one ``UPDATE``.

        Raises:
            StaleWriteError: A newer lease has written for the source (nothing is changed).
        """
        with self._write() as connection:
            self._raise_fence(connection, source_key, token)
            gone = connection.execute(
                _TOMBSTONE, (generation, reason, source_key, json.dumps(sorted(ids)))
            )
            if self.mapping_for(source_key) is not None:
                void_tombstoned(connection, source_key, generation, reason)
            return gone.rowcount

    @staticmethod
    def _raise_fence(connection: sqlite3.Connection, source_key: str, token: int) -> None:
        """Admit a writer with ``token`` (incsync.state.admit_writer) and keep the new fence."""
        row = connection.execute(
            "SELECT token FROM incsync_sink_fences WHERE source_key = ?", (source_key,)
        ).fetchone()
        fence = admit_writer(source_key, None if row is None else row["token"], token)
        connection.execute(
            "INSERT OR REPLACE INTO incsync_sink_fences (source_key, token) VALUES (?, ?)",
            (source_key, fence),
        )

    def commit_page(
        self,
        source_key: str,
        records: Sequence[Record],
        lease: Lease,
        generation: int,
        checkpoint: Checkpoint,
        now: datetime,
        ttl: timedelta,
    ) -> tuple[ApplyResult, SourceState]:
        """Apply ``records`` and save ``checkpoint`` in one SQLite transaction."""
        with self._write() as connection:
            updated = checkpoint_transition(
                self._read_state(connection, source_key), lease, generation, checkpoint, now, ttl
            )
            result = self._write_rows(connection, source_key, records, generation)
            connection.execute(_SAVE_STATE, _state_row(updated))
            self._keep_rejected(
                connection, source_key, [*checkpoint.rejected, *result.rejected], now
            )
            return result, updated

    def transactions(self, source_key: str) -> Iterator[Transaction]:
        """Yield the source's transactions in record-id order, streaming from the database."""
        rows = self._connection().execute(
            "SELECT record_id, updated_at_us, deleted, payload, generation, deleted_reason "
            "FROM incsync_transactions WHERE source_key = ? ORDER BY record_id",
            (source_key,),
        )
        for row in rows:
            record = Record(
                id=row["record_id"],
                updated_at=from_micros(row["updated_at_us"]),
                payload=json.loads(row["payload"]),
                deleted=bool(row["deleted"]),
            )
            yield Transaction(source_key, record, row["generation"], row["deleted_reason"])

    def count_transactions(self, source_key: str) -> int:
        """Return how many transactions the source has (tombstones included)."""
        return self._count(_COUNT_TRANSACTIONS, source_key)

    def _read_mapped(
        self,
        source_key: str,
        since: date | None,
        until: date | None,
        after: MappedPosition | None,
        limit: int,
        include_voided: bool,
    ) -> Sequence[MappedRow]:
        return read_mapped(
            self._connection(), source_key, since, until, after, limit, include_voided
        )

    def _remap_page(self, source_key: str, mapping: TransactionMapping, limit: int) -> RemapPage:
        with self._write() as connection:
            return remap_page(connection, source_key, mapping, limit)

    def count_live(self, source_key: str) -> int:
        """Return how many of the source's transactions are live (not tombstones): one query."""
        check_source_key(source_key)
        return self._count(_COUNT_LIVE, source_key)

    def _count(self, statement: str, source_key: str) -> int:
        row = self._connection().execute(statement, (source_key,)).fetchone()
        return int(row[0])

    # -- tokens ------------------------------------------------------------------------------

    def load_tokens(self, source_key: str) -> SealedTokens | None:
        """Return the source's saved tokens, or ``None``."""
        check_source_key(source_key)
        try:
            row = (
                self._connection()
                .execute(
                    "SELECT tokens, encrypted, saved_at_us FROM incsync_tokens "
                    "WHERE source_key = ?",
                    (source_key,),
                )
                .fetchone()
            )
        except sqlite3.Error as error:
            raise StoreError(
                f"cannot read tokens from SQLite database {self.path}: {error}"
            ) from None
        if row is None:
            return None
        return SealedTokens(row["tokens"], bool(row["encrypted"]), from_micros(row["saved_at_us"]))

    def save_tokens(self, source_key: str, sealed: SealedTokens) -> None:
        """Replace the source's saved tokens, in one transaction of their own."""
        check_source_key(source_key)
        with self._write() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO incsync_tokens "
                "(source_key, tokens, encrypted, saved_at_us) VALUES (?, ?, ?, ?)",
                (source_key, sealed.text, int(sealed.encrypted), to_micros(sealed.saved_at)),
            )

    def check_tokens_writable(self, source_key: str) -> None:
        """Write the source's row over itself: SQLite refuses it as it would refuse a save."""
        check_source_key(source_key)
        # BEGIN IMMEDIATE alone succeeds on a read-only file; a write statement does not, even
        # one that changes nothing.
        with self._write() as connection:
            connection.execute(
                "UPDATE incsync_tokens SET saved_at_us = saved_at_us WHERE source_key = ?",
                (source_key,),
            )
