"""State store and transaction sink in PostgreSQL, for many workers on many machines.

Needs the optional extra (``pip install 'incsync[postgres]'``: psycopg 3 and its pool); importing
this module works without it, creating a store does not.

The database itself enforces the rules that keep concurrent workers apart:

* every state write, a lease grant included, locks the source's row, runs the pure transition
  from :mod:`incsync.state` on it (which grants a lease only when no live one exists, with the
  next fencing token, and refuses a stale lease or generation), and writes the result with an
  ``UPDATE`` conditioned on the lease token and generation it read, so no write is ever made under
  another worker's lease;
* a transaction is upserted by one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` that encodes
  :func:`incsync.records.supersedes`, comparing contents by the digest
  :func:`incsync.content.content_digest` computed for each row, so replaying a page, or two
  workers writing the same records, changes nothing twice;
* a page's rows, its checkpoint and its set-aside records commit in one transaction.

Each call runs in its own short transaction on a connection from a pool. The store's own pool
opens on the first call, once one direct connection has succeeded: a server that refuses is
reported in seconds with libpq's reason, instead of after the pool's timeout.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from incsync.actions import Action, ActionEntry
from incsync.errors import ConfigurationError, LeaseLostError, StoreError
from incsync.history import DEFAULT_HISTORY_RETENTION, CycleEntry, HistoryRetention
from incsync.mapping._kept import (
    MappedChange,
    MappedPosition,
    MappedRow,
    MappingLookup,
    RemapPage,
    mapping_lookup,
    split_page,
)
from incsync.mapping._spec import TransactionMapping
from incsync.policy import positive_duration
from incsync.reconcile import IdOrder
from incsync.records import SWEPT, ApplyResult, Record, RejectedRecord, Transaction
from incsync.redaction import redact
from incsync.results import Outcome
from incsync.state import (
    Checkpoint,
    Lease,
    SourceState,
    admit_writer,
    check_source_key,
    new_state,
)
from incsync.state import save_checkpoint as checkpoint_transition
from incsync.stores import _postgres_sql as sql
from incsync.stores._base import MappedRowsBase, StateStoreBase, Transition, kept_digest
from incsync.stores._postgres_connect import (
    CONNECT_TIMEOUT_SECONDS,
    connect_timeout_missing,
    refusal_message,
)
from incsync.stores._postgres_mapped import (
    read_mapped,
    remap_page,
    void_tombstoned,
    write_changes,
)
from incsync.stores._postgres_rows import (
    cycle_from_row,
    cycle_row,
    escaped,
    state_from_row,
    state_params,
    transaction_rows,
)
from incsync.tokens import SealedTokens

try:
    import psycopg
    import psycopg.conninfo
    import psycopg.errors
    import psycopg_pool

    _MISSING_DRIVER: str | None = None
except ImportError as missing:  # the optional extra is not installed
    _MISSING_DRIVER = str(missing)

if TYPE_CHECKING:
    StoreCursor = psycopg.Cursor[tuple[Any, ...]]

__all__ = ["SCHEMA_VERSION", "PostgresStore"]

SCHEMA_VERSION = sql.SCHEMA_VERSION

_TRANSACTIONS_BATCH = 1_000  # rows fetched per round trip while streaming transactions


def _require_driver() -> None:
    if _MISSING_DRIVER is not None:
        raise ConfigurationError(
            f"PostgresStore needs psycopg 3 and psycopg_pool ({_MISSING_DRIVER}); "
            "install them with: pip install 'incsync[postgres]'"
        )


def _configure_session(statement_timeout: timedelta, connection: psycopg.Connection[Any]) -> None:
    """Set up every new pooled connection: a bound on each statement, and UTC times."""
    milliseconds = max(1, int(statement_timeout.total_seconds() * 1000))
    connection.execute(
        "SELECT set_config('statement_timeout', %s, false), set_config('TimeZone', 'UTC', false)",
        (f"{milliseconds}ms",),
    )
    connection.commit()


class PostgresStore(StateStoreBase, MappedRowsBase):
    """State store, transaction sink and token store in a PostgreSQL schema, for many workers.

    Create the tables once with :meth:`migrate` (safe to call on every start, from every worker
    at once); until then every other call raises ``StoreError``. Create one store per process and
    share it between threads; close it (or use it as a context manager) to close its pool.

    Text PostgreSQL cannot hold (NUL characters, lone surrogates) never fails a write: a record
    whose id or payload holds it is set aside with its reason, and in error messages and
    set-aside excerpts it is stored backslash-escaped.

    Args:
        conninfo: A libpq connection string or URL (``"host=db dbname=app user=sync"``), or an
            open ``psycopg_pool.ConnectionPool`` the host owns and closes itself. Every call runs
            in an explicit transaction whatever the pool's autocommit setting; a host's pool
            should give its sessions a ``statement_timeout``, as the store's own pool does. A
            connection attempt gives up after the string's ``connect_timeout`` (or
            ``PGCONNECT_TIMEOUT``), 5 seconds when neither says.
        schema: The PostgreSQL schema holding incsync's tables: lower-case letters, digits and
            underscores.
        min_size: Connections the store's own pool keeps open.
        max_size: The most connections the store's own pool opens (one per concurrent call).
        statement_timeout: How long one statement (lock waits included) may run on the store's
            own pool before it fails with ``StoreError`` instead of hanging a worker.
        pool_timeout: How long a call waits for a free (or new) connection of the store's own
            pool.
        history_retention: How many cycle entries to keep per source, and for how long.
        mappings: Each source's :class:`~incsync.mapping.TransactionMapping`, by source key (or
            a function of the key): the records of those sources are kept mapped as well, in
            the same transaction (see :mod:`incsync.mapped`).

    Raises:
        ConfigurationError: psycopg is not installed, or an argument is invalid. Creating the
            store does not connect: a server that cannot be reached or refuses the connection
            (unknown database or role, wrong port) is a ``StoreError`` at the first call, saying
            which server was tried and why libpq failed.
    """

    def __init__(
        self,
        conninfo: str | psycopg_pool.ConnectionPool[Any],
        *,
        schema: str = "incsync",
        min_size: int = 1,
        max_size: int = 4,
        statement_timeout: timedelta = timedelta(seconds=30),
        pool_timeout: timedelta = timedelta(seconds=30),
        history_retention: HistoryRetention = DEFAULT_HISTORY_RETENTION,
        mappings: Mapping[str, TransactionMapping] | MappingLookup | None = None,
    ) -> None:
        _require_driver()
        self._mapping_for = mapping_lookup(mappings)
        sql.quoted_schema(schema)  # refuse a bad name now, not at the first call
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ConfigurationError(
                f"min_size={min_size}, max_size={max_size}; need 0 <= min_size <= max_size, "
                "max_size >= 1"
            )
        positive_duration.check("statement_timeout", statement_timeout)
        positive_duration.check("pool_timeout", pool_timeout)
        self.schema = schema
        self.history_retention = history_retention
        self._schema_ready = False
        self._secrets: list[str] = []
        self._params: dict[str, Any] = {}
        self._conninfo: str | None = None  # the store's own pool's; a host's pool has none here
        self._pool_open = not isinstance(conninfo, str)  # the store's own opens on first use
        self._opening = threading.Lock()
        if isinstance(conninfo, str):
            try:
                self._params = psycopg.conninfo.conninfo_to_dict(conninfo)
            except psycopg.ProgrammingError as error:
                raise ConfigurationError(
                    "conninfo is not a valid libpq connection string or URL"
                ) from error
            if self._params.get("password"):
                self._secrets.append(str(self._params["password"]))
            if connect_timeout_missing(self._params, os.environ):
                conninfo = psycopg.conninfo.make_conninfo(
                    conninfo, connect_timeout=CONNECT_TIMEOUT_SECONDS
                )
            self._conninfo = conninfo
            self._pool: psycopg_pool.ConnectionPool[Any] = psycopg_pool.ConnectionPool(
                conninfo,
                min_size=min_size,
                max_size=max_size,
                kwargs={"autocommit": False},
                configure=partial(_configure_session, statement_timeout),
                timeout=pool_timeout.total_seconds(),
                name=f"incsync-{schema}",
                open=False,
            )
            # A store dropped without close() still closes the pool it opened.
            self._finalizer: weakref.finalize[Any, Any] | None = weakref.finalize(
                self, self._pool.close
            )
        else:
            self._pool = conninfo
            self._finalizer = None

    def close(self) -> None:
        """Close the store's own pool; a pool the host passed in is left open for its owner."""
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- connections and errors --------------------------------------------------------------

    def _sql(self, template: str) -> str:
        return sql.render(template, self.schema)

    def _opened_pool(self, doing: str) -> psycopg_pool.ConnectionPool[Any]:
        """Return the pool, opening the store's own on the first call once a connection succeeds.

        A pool whose server refuses retries in the background until ``pool_timeout``, logging
        each attempt, and then says only that it got no connection. One direct attempt first
        fails in seconds with libpq's reason, and the pool never starts on a server that refuses.
        Once open, this costs each call one attribute read.
        """
        if not self._pool_open:
            with self._opening:
                if not self._pool_open:
                    if self._finalizer is not None and not self._finalizer.alive:
                        raise StoreError(
                            f"PostgreSQL store (schema {self.schema!r}) is closed; could not "
                            f"{doing}"
                        )
                    self._raise_refusal(doing)
                    self._pool.open()
                    self._pool_open = True
        return self._pool

    def _raise_refusal(self, doing: str) -> None:
        """Connect once, directly; raise ``StoreError`` with libpq's reason if that fails."""
        if self._conninfo is None:  # a host's pool: the host knows how it connects
            return
        try:
            psycopg.connect(self._conninfo).close()
        except psycopg.Error as error:
            raise StoreError(
                refusal_message(self._params, doing, str(error), self._secrets)
            ) from error

    @contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        """Turn driver errors into ``StoreError`` saying what failed; one boundary for all."""
        try:
            yield
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName) as error:
            raise StoreError(
                f"PostgreSQL schema {self.schema!r} has no incsync tables (while trying to "
                f"{doing}); create them with PostgresStore.migrate()"
            ) from error
        except psycopg_pool.PoolTimeout as error:
            # No connection for pool_timeout: the server went away, or every connection is busy.
            # A direct attempt tells the first (with libpq's reason) from the second.
            self._raise_refusal(doing)
            raise StoreError(self._failure(doing, error)) from error
        except psycopg.Error as error:
            raise StoreError(self._failure(doing, error)) from error
        except UnicodeEncodeError as error:
            raise StoreError(
                f"PostgreSQL store (schema {self.schema!r}) could not {doing}: a text value "
                "holds a lone surrogate, which PostgreSQL cannot store"
            ) from error

    def _failure(self, doing: str, error: psycopg.Error) -> str:
        detail = redact(str(error).strip().splitlines()[0] if str(error) else "", self._secrets)
        code = f" [{error.sqlstate}]" if error.sqlstate else ""
        return (
            f"PostgreSQL store (schema {self.schema!r}) could not {doing}: "
            f"{type(error).__name__}{code}: {detail}"
        )

    @contextmanager
    def _transaction(self, doing: str, *, migrating: bool = False) -> Iterator[StoreCursor]:
        """Run the block in one database transaction: committed at its end, rolled back on error."""
        with (
            self._translated(doing),
            self._opened_pool(doing).connection() as connection,
            connection.transaction(),
            connection.cursor() as cursor,
        ):
            if not migrating and not self._schema_ready:
                self._check_schema(cursor)
            yield cursor

    def _check_schema(self, cursor: StoreCursor) -> None:
        cursor.execute(self._sql(sql.RECORDED_VERSION))
        row = cursor.fetchone()
        version = 0 if row is None else int(row[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"PostgreSQL schema {self.schema!r} is at incsync schema version {version}, newer "
                f"than this version's {SCHEMA_VERSION}; upgrade incsync"
            )
        if version < SCHEMA_VERSION:
            raise StoreError(
                f"PostgreSQL schema {self.schema!r} is at incsync schema version {version}; "
                f"run PostgresStore.migrate() to bring it to {SCHEMA_VERSION}"
            )
        self._schema_ready = True

    # -- schema ------------------------------------------------------------------------------

    def migrate(self) -> int:
        """Create or upgrade incsync's tables in the store's schema; idempotent.

        Workers may all call it at start-up: an advisory lock makes concurrent calls run one
        after the other, and each step is recorded in the ``schema_version`` table.

        Returns:
            The schema version the database is now at.

        Raises:
            StoreError: The database already holds a newer schema (upgrade incsync), or
                PostgreSQL refused (for example the user may not create the schema).
        """
        with self._transaction(f"migrate schema {self.schema!r}", migrating=True) as cursor:
            cursor.execute(sql.MIGRATE_LOCK, (f"incsync.migrate.{self.schema}",))
            # A schema made beforehand by an administrator needs no CREATE right on the database.
            cursor.execute(sql.SCHEMA_EXISTS, (self.schema,))
            if cursor.fetchone() is None:
                cursor.execute(self._sql(sql.CREATE_SCHEMA))
            cursor.execute(self._sql(sql.CREATE_VERSION_TABLE))
            cursor.execute(self._sql(sql.RECORDED_VERSION))
            row = cursor.fetchone()
            current = 0 if row is None else int(row[0])
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"PostgreSQL schema {self.schema!r} is at incsync schema version {current}, "
                    f"newer than this version's {SCHEMA_VERSION}; upgrade incsync instead of "
                    "migrating"
                )
            for version, statements in sql.MIGRATIONS:
                if version > current:
                    for statement in statements:
                        cursor.execute(self._sql(statement))
                    if version == sql.CONTENT_DIGEST_VERSION:
                        self._fill_content_digests(cursor)
                    cursor.execute(self._sql(sql.RECORD_VERSION), (version,))
        self._schema_ready = True
        return SCHEMA_VERSION

    def _fill_content_digests(self, cursor: StoreCursor) -> None:
        """Compute the digest of every row written before the store kept one, a batch at a time."""
        after = ("", "")
        while True:
            cursor.execute(self._sql(sql.UNDIGESTED_TRANSACTIONS), (*after, _TRANSACTIONS_BATCH))
            rows = cursor.fetchall()
            if not rows:
                return
            cursor.executemany(
                self._sql(sql.SET_CONTENT_DIGEST),
                [(kept_digest(payload), key, record_id) for key, record_id, payload in rows],
            )
            after = (rows[-1][0], rows[-1][1])

    # -- state store -------------------------------------------------------------------------

    def load(self, source_key: str) -> SourceState:
        """Return the source's state (a new one if the store has never seen it)."""
        with self._transaction(f"load the state of {source_key!r}") as cursor:
            cursor.execute(self._sql(sql.READ_STATE), (source_key,))
            row = cursor.fetchone()
        return new_state(source_key) if row is None else state_from_row(row)

    def list_states(self) -> Sequence[SourceState]:
        """Return the state of every source the store knows, ordered by key."""
        with self._transaction("list the sources' states") as cursor:
            cursor.execute(self._sql(sql.LIST_STATES))
            rows = cursor.fetchall()
        return [state_from_row(row) for row in rows]

    def list_rejected(self, source_key: str) -> Sequence[RejectedRecord]:
        """Return the records set aside for the source, oldest sighting first."""
        check_source_key(source_key)
        with self._transaction(f"list the set-aside records of {source_key!r}") as cursor:
            cursor.execute(self._sql(sql.LIST_REJECTED), (source_key,))
            rows = cursor.fetchall()
        return [
            RejectedRecord(record_id=record_id, reason=reason, raw=raw, seen_at=seen_at)
            for record_id, reason, raw, seen_at in rows
        ]

    def _locked_state(self, cursor: StoreCursor, source_key: str, *, create: bool) -> SourceState:
        """Read the source's state and lock its row until the transaction ends."""
        cursor.execute(self._sql(sql.LOCK_STATE), (source_key,))
        row = cursor.fetchone()
        if row is None and create:
            # Lock a new source's row too, so two first writes (two resets) run one after the
            # other instead of both starting from a fresh state.
            cursor.execute(self._sql(sql.ENSURE_SOURCE), (source_key,))
            cursor.execute(self._sql(sql.LOCK_STATE), (source_key,))
            row = cursor.fetchone()
        return new_state(source_key) if row is None else state_from_row(row)

    def _write_state(self, cursor: StoreCursor, stored: SourceState, updated: SourceState) -> None:
        """Write ``updated`` only while the row holds the lease token and generation read."""
        if updated == stored:
            return
        params = state_params(updated)
        params["expected_token"] = None if stored.lease is None else stored.lease.token
        params["expected_generation"] = stored.generation
        cursor.execute(self._sql(sql.WRITE_STATE), params)
        if cursor.rowcount != 1:
            raise LeaseLostError(
                f"source {stored.key!r}: its lease or generation changed during the write; "
                "this worker's results are discarded and the new holder carries on",
                source_key=stored.key,
            )

    def _keep_rejected(
        self,
        cursor: StoreCursor,
        source_key: str,
        rejected: Sequence[RejectedRecord],
        now: datetime | None,
    ) -> None:
        if rejected:
            cursor.executemany(
                self._sql(sql.SAVE_REJECTED),
                [
                    (
                        source_key,
                        escaped(item.fingerprint),
                        None if item.record_id is None else escaped(item.record_id),
                        escaped(item.reason),
                        escaped(item.raw),
                        now,
                    )
                    for item in rejected
                ],
            )

    def _history(self, source_key: str, limit: int | None) -> Sequence[CycleEntry]:
        with self._transaction(f"read the cycle history of {source_key!r}") as cursor:
            cursor.execute(self._sql(sql.READ_CYCLES), (source_key, limit))
            rows = cursor.fetchall()
        return [cycle_from_row(row) for row in rows]

    def _actions(self, source_key: str, limit: int | None) -> Sequence[ActionEntry]:
        with self._transaction(f"read the actions on {source_key!r}") as cursor:
            cursor.execute(self._sql(sql.READ_ACTIONS), (source_key, limit))
            rows = cursor.fetchall()
        return [
            ActionEntry(source_key=key, action=Action(action), actor=actor, at=at)
            for key, action, actor, at in rows
        ]

    def _latest_cycles(
        self, source_keys: Sequence[str], cycles: int
    ) -> Iterable[tuple[str, Outcome, timedelta | None]]:
        with self._transaction("read the latest cycles of many sources") as cursor:
            cursor.execute(self._sql(sql.LATEST_CYCLES), (list(source_keys), cycles))
            rows = cursor.fetchall()
        return [(key, Outcome(outcome), skew) for key, outcome, skew in rows]

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
        with self._transaction(f"update the state of {source_key!r}") as cursor:
            stored = self._locked_state(cursor, source_key, create=True)
            updated = change(stored)
            self._write_state(cursor, stored, updated)
            if forget_rejected:
                cursor.execute(self._sql(sql.DELETE_REJECTED), (source_key,))
            self._keep_rejected(cursor, source_key, rejected, now)
            if entry is not None:
                self._keep_entry(cursor, entry)
            if action is not None:
                cursor.execute(
                    self._sql(sql.SAVE_ACTION),
                    (source_key, action.action.value, action.actor, action.at),
                )
        return updated

    def _keep_entry(self, cursor: StoreCursor, entry: CycleEntry) -> None:
        """Keep a cycle's entry and prune its source's history, in the caller's transaction.

        The source's state row is locked by then, so two writers never prune one source at once.
        One statement prunes by age and keeps the entry; pruning by count follows only when the
        source already held ``max_cycles`` entries, the only case in which it can delete one (a
        source whose age limit keeps fewer, as hourly cycles keep 744 in the default 31 days,
        never needs it).
        """
        retention, key = self.history_retention, entry.source_key
        if not retention.keeps_entries:
            return
        limit = retention.max_cycles
        # Without a count limit the answer (whether the source held any entry) is not used.
        cursor.execute(
            self._sql(sql.SAVE_CYCLE),
            (
                key,
                retention.oldest_start(entry.started),
                *cycle_row(entry),
                key,
                0 if limit is None else limit - 1,
            ),
        )
        answer = cursor.fetchone()
        if limit is not None and answer is not None and answer[0]:
            cursor.execute(self._sql(sql.PRUNE_CYCLES_BY_COUNT), (key, key, limit - 1))

    # -- transaction sink --------------------------------------------------------------------

    def _upsert(self, cursor: StoreCursor, rows: list[tuple[object, ...]]) -> int:
        if not rows:
            return 0
        cursor.executemany(self._sql(sql.UPSERT_TRANSACTION), rows)
        # executemany adds up the rows each statement wrote; a row the WHERE kept is not one.
        return cursor.rowcount

    def apply(
        self, source_key: str, records: Sequence[Record], generation: int, token: int
    ) -> ApplyResult:
        """Write the records that supersede what is stored, in one transaction.

        Raises:
            StaleWriteError: A newer lease has written for the source (nothing is written).
        """
        check_source_key(source_key)
        rows, changes, rejected = self._mapped_rows(source_key, records, generation)
        with self._transaction(f"apply records of {source_key!r}") as cursor:
            self._raise_fence(cursor, source_key, token)
            applied = self._upsert(cursor, rows)
            write_changes(cursor, self._sql, source_key, changes)
        return ApplyResult(applied=applied, rejected=rejected)

    def _mapped_rows(
        self, source_key: str, records: Sequence[Record], generation: int
    ) -> tuple[list[tuple[object, ...]], list[tuple[MappedChange, int]], list[RejectedRecord]]:
        """Return the raw rows, the mapped changes and the records set aside, of one page.

        A source with a mapping: records that cannot be mapped are set aside before anything is
        written, and the mapped rows are written with the raw ones. A record refused after it
        was mapped (text PostgreSQL cannot hold) keeps its mapped row as its raw row stays.
        """
        page = split_page(self.mapping_for(source_key), source_key, records)
        rows, refused = transaction_rows(source_key, page.records, generation)
        changes = page.changes
        if refused:
            written = {(row[1], row[2], row[3]) for row in rows}
            changes = [
                change
                for change in changes
                if (change.record.id, change.record.updated_at, change.record.deleted) in written
            ]
        return rows, [(change, generation) for change in changes], [*page.rejected, *refused]

    def sweep(self, source_key: str, generation: int, token: int, spared: Collection[str]) -> int:
        """Tombstone the live transactions a full re-read under ``generation`` did not see.

        One ``UPDATE`` over the source's rows, in one transaction with the fence.

        Raises:
            StaleWriteError: A newer lease has written for the source (nothing is changed).
        """
        with self._transaction(f"sweep the transactions of {source_key!r}") as cursor:
            self._raise_fence(cursor, source_key, token)
            cursor.execute(
                self._sql(sql.SWEEP_TRANSACTIONS),
                (generation, SWEPT, source_key, generation, sorted(spared)),
            )
            swept = cursor.rowcount
            if self.mapping_for(source_key) is not None:
                void_tombstoned(cursor, self._sql, source_key, generation, SWEPT)
            return swept

    def list_live_ids(
        self,
        source_key: str,
        after: str | None,
        limit: int,
        order: IdOrder = IdOrder.CODE_POINT,
    ) -> Sequence[str]:
        """Return up to ``limit`` live ids of the source after ``after`` in ``order``: one query."""
        check_source_key(source_key)
        length, last = order.sort_key(after or "")  # "" sorts before every id in each order
        # Code point order compares the id alone, along the primary key.
        bound = (length, last) if order is IdOrder.NUMERIC else (last,)
        with self._transaction(f"list the live ids of {source_key!r}") as cursor:
            cursor.execute(self._sql(sql.LIST_LIVE_IDS[order]), (source_key, *bound, limit))
            return [row[0] for row in cursor.fetchall()]

    def tombstone(
        self, source_key: str, ids: Collection[str], generation: int, token: int, reason: str
    ) -> int:
        """Make the live transactions with these ids tombstones saying ``reason``: one ``UPDATE``.

        Raises:
            StaleWriteError: A newer lease has written for the source (nothing is changed).
        """
        with self._transaction(f"tombstone transactions of {source_key!r}") as cursor:
            self._raise_fence(cursor, source_key, token)
            cursor.execute(
                self._sql(sql.TOMBSTONE_TRANSACTIONS), (generation, reason, source_key, sorted(ids))
            )
            gone = cursor.rowcount
            if self.mapping_for(source_key) is not None:
                void_tombstoned(cursor, self._sql, source_key, generation, reason)
            return gone

    def _raise_fence(self, cursor: StoreCursor, source_key: str, token: int) -> None:
        """Admit a writer with ``token`` (incsync.state.admit_writer), the fence row locked."""
        cursor.execute(self._sql(sql.RAISE_SINK_FENCE), (source_key, token))
        fenced = cursor.fetchone()
        assert fenced is not None  # an upsert with RETURNING always returns its row
        admit_writer(source_key, fenced[0], token)

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
        """Apply ``records`` and save ``checkpoint`` in one PostgreSQL transaction.

        The checkpoint is decided first, on the locked state row, so a refused one writes no
        rows; records the sink cannot store are kept with the checkpoint's set-aside records.
        """
        rows, changes, refused = self._mapped_rows(source_key, records, generation)
        with self._transaction(f"commit a page of {source_key!r}") as cursor:
            stored = self._locked_state(cursor, source_key, create=False)
            updated = checkpoint_transition(stored, lease, generation, checkpoint, now, ttl)
            applied = self._upsert(cursor, rows)
            write_changes(cursor, self._sql, source_key, changes)
            self._write_state(cursor, stored, updated)
            self._keep_rejected(cursor, source_key, [*checkpoint.rejected, *refused], now)
        return ApplyResult(applied=applied, rejected=refused), updated

    def transactions(self, source_key: str) -> Iterator[Transaction]:
        """Yield the source's transactions in record-id order, fetched in batches.

        Each batch is its own short transaction, so no connection is held between batches;
        records written meanwhile may or may not be seen.
        """
        after = ""  # ids are never empty, so every id sorts after this
        while True:
            with self._transaction(f"read the transactions of {source_key!r}") as cursor:
                cursor.execute(
                    self._sql(sql.READ_TRANSACTIONS), (source_key, after, _TRANSACTIONS_BATCH)
                )
                rows = cursor.fetchall()
            for record_id, updated_at, deleted, payload, generation, reason in rows:
                record = Record(
                    id=record_id, updated_at=updated_at, payload=payload, deleted=deleted
                )
                yield Transaction(source_key, record, generation, reason)
            if len(rows) < _TRANSACTIONS_BATCH:
                return
            after = rows[-1][0]

    def count_transactions(self, source_key: str) -> int:
        """Return how many transactions the source has (tombstones included)."""
        return self._count(
            sql.COUNT_TRANSACTIONS, f"count the transactions of {source_key!r}", source_key
        )

    def count_live(self, source_key: str) -> int:
        """Return how many of the source's transactions are live (not tombstones): one query."""
        check_source_key(source_key)
        return self._count(
            sql.COUNT_LIVE_TRANSACTIONS,
            f"count the live transactions of {source_key!r}",
            source_key,
        )

    def _count(self, statement: str, doing: str, source_key: str) -> int:
        with self._transaction(doing) as cursor:
            cursor.execute(self._sql(statement), (source_key,))
            row = cursor.fetchone()
        return 0 if row is None else int(row[0])

    # -- mapped transactions -----------------------------------------------------------------

    def _read_mapped(
        self,
        source_key: str,
        since: date | None,
        until: date | None,
        after: MappedPosition | None,
        limit: int,
        include_voided: bool,
    ) -> Sequence[MappedRow]:
        with self._transaction(f"read the mapped transactions of {source_key!r}") as cursor:
            return read_mapped(
                cursor, self._sql, source_key, since, until, after, limit, include_voided
            )

    def _remap_page(self, source_key: str, mapping: TransactionMapping, limit: int) -> RemapPage:
        with self._transaction(f"re-map the transactions of {source_key!r}") as cursor:
            return remap_page(cursor, self._sql, source_key, mapping, limit)

    # -- tokens ------------------------------------------------------------------------------

    def load_tokens(self, source_key: str) -> SealedTokens | None:
        """Return the source's saved tokens, or ``None``."""
        check_source_key(source_key)
        with self._transaction(f"load the tokens of {source_key!r}") as cursor:
            cursor.execute(self._sql(sql.LOAD_TOKENS), (source_key,))
            row = cursor.fetchone()
        return None if row is None else SealedTokens(row[0], row[1], row[2])

    def save_tokens(self, source_key: str, sealed: SealedTokens) -> None:
        """Replace the source's saved tokens, in one transaction of their own."""
        check_source_key(source_key)
        with self._transaction(f"save the tokens of {source_key!r}") as cursor:
            cursor.execute(
                self._sql(sql.SAVE_TOKENS),
                (source_key, sealed.text, sealed.encrypted, sealed.saved_at),
            )

    def check_tokens_writable(self, source_key: str) -> None:
        """Write the source's row over itself: PostgreSQL refuses it as it would refuse a save."""
        check_source_key(source_key)
        with self._transaction(f"check that the tokens of {source_key!r} can be saved") as cursor:
            cursor.execute(self._sql(sql.CHECK_TOKENS_WRITABLE), (source_key,))
