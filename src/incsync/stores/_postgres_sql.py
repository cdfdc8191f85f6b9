"""The SQL of the PostgreSQL store: its schema migrations and the statements it runs.

Kept apart from :mod:`incsync.stores.postgres` so the statements can be read (and reviewed) as
SQL, and so the benchmark's bare loop runs exactly the store's upsert. Every statement names its
tables through ``{schema}``, filled in by :func:`render` with a validated, quoted identifier.

Text keys are ``COLLATE "C"``: PostgreSQL then orders them by code point, as Python does, so
``list_states`` and ``transactions`` come back in the same order from every store.
"""

from __future__ import annotations

import re
from functools import lru_cache

from incsync.errors import ConfigurationError
from incsync.mapping import _columns
from incsync.reconcile import IdOrder

__all__ = [
    "ACTION_LOG_VERSION",
    "CHECK_TOKENS_WRITABLE",
    "CONTENT_DIGEST_VERSION",
    "COUNT_LIVE_TRANSACTIONS",
    "COUNT_TRANSACTIONS",
    "CREATE_SCHEMA",
    "CREATE_VERSION_TABLE",
    "CYCLE_COLUMNS",
    "DELETE_REJECTED",
    "ENSURE_REMAP",
    "ENSURE_SOURCE",
    "LIST_LIVE_IDS",
    "LIST_REJECTED",
    "LIST_STATES",
    "LOAD_TOKENS",
    "LOCK_REMAP",
    "LOCK_STATE",
    "MAPPED_COLUMNS",
    "MAPPED_TRANSACTIONS_VERSION",
    "MIGRATE_LOCK",
    "MIGRATIONS",
    "PRUNE_CYCLES_BY_AGE",
    "PRUNE_CYCLES_BY_COUNT",
    "RAISE_SINK_FENCE",
    "READ_ACTIONS",
    "READ_CYCLES",
    "READ_MAPPED",
    "READ_STATE",
    "READ_TRANSACTIONS",
    "RECONCILE_FIGURES_VERSION",
    "RECORDED_VERSION",
    "RECORD_VERSION",
    "SAVE_ACTION",
    "SAVE_CYCLE",
    "SAVE_REJECTED",
    "SAVE_REMAP",
    "SAVE_TOKENS",
    "SCHEMA_EXISTS",
    "SCHEMA_VERSION",
    "SET_CONTENT_DIGEST",
    "STATE_COLUMNS",
    "SWEEP_TRANSACTIONS",
    "TOMBSTONE_TRANSACTIONS",
    "TO_REMAP",
    "UNDIGESTED_TRANSACTIONS",
    "UPSERT_TRANSACTION",
    "VOID_MAPPED",
    "VOID_TOMBSTONED",
    "WRITE_MAPPED",
    "WRITE_STATE",
    "quoted_schema",
    "render",
]

MAPPED_TRANSACTIONS_VERSION = 9
"""The migration that adds the mapped transactions and the re-map checkpoints."""

RECONCILE_FIGURES_VERSION = 10
"""The migration that adds the history's id reconcile figures and the numeric order's index."""

ACTION_LOG_VERSION = 11
"""The migration that adds each source's action log (:mod:`incsync.actions`)."""

OWNER_INDEX_VERSION = 12
"""The migration that keeps only mapped rows with an owner in the owner index."""

SCHEMA_VERSION = OWNER_INDEX_VERSION
"""The schema version this incsync writes; :meth:`PostgresStore.migrate` brings a database to it."""

CONTENT_DIGEST_VERSION = 2
"""The migration that adds the content digest; ``migrate`` then fills it in for existing rows."""

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def quoted_schema(schema: str) -> str:
    """Return ``schema`` as a quoted SQL identifier, refusing names that would need escaping.

    Raises:
        ConfigurationError: ``schema`` is not lower-case letters, digits and underscores.
    """
    if not _IDENTIFIER.fullmatch(schema):
        raise ConfigurationError(
            f"schema={schema!r}; use 1 to 63 lower-case letters, digits and underscores, "
            "starting with a letter or underscore"
        )
    return f'"{schema}"'


@lru_cache(maxsize=256)
def render(template: str, schema: str) -> str:
    """Return ``template`` with ``{schema}`` replaced by the quoted schema name."""
    return template.replace("{schema}", quoted_schema(schema))


# -- migrations ------------------------------------------------------------------------------

# Taken (per schema) before anything else, so two workers migrating at once run one after the
# other: the second finds the work done.
MIGRATE_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
SCHEMA_EXISTS = "SELECT 1 FROM pg_namespace WHERE nspname = %s"
CREATE_SCHEMA = "CREATE SCHEMA IF NOT EXISTS {schema}"
CREATE_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS {schema}.schema_version (
    version integer PRIMARY KEY,
    migrated_at timestamptz NOT NULL DEFAULT now()
)
"""
RECORDED_VERSION = "SELECT coalesce(max(version), 0) FROM {schema}.schema_version"
RECORD_VERSION = "INSERT INTO {schema}.schema_version (version) VALUES (%s)"

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """
            CREATE TABLE {schema}.sources (
                source_key text COLLATE "C" PRIMARY KEY,
                phase text NOT NULL DEFAULT 'new'
                    CHECK (phase IN ('new', 'active', 'resetting', 'cancelled', 'stopped')),
                generation bigint NOT NULL DEFAULT 0,
                cursor_updated_at timestamptz,
                cursor_record_id text COLLATE "C",
                last_change timestamptz,
                last_sync timestamptz,
                last_attempt timestamptz,
                consecutive_failures integer NOT NULL DEFAULT 0,
                error_class text,
                error_message text,
                error_at timestamptz,
                error_retryable boolean,
                error_auth boolean,
                lease_holder text,
                lease_expires_at timestamptz,
                lease_token bigint,
                not_before timestamptz,
                last_cycle_rejected bigint NOT NULL DEFAULT 0,
                reset_pending boolean NOT NULL DEFAULT false,
                CHECK ((lease_token IS NULL) = (lease_expires_at IS NULL)),
                CHECK ((cursor_updated_at IS NULL) = (cursor_record_id IS NULL))
            )
            """,
            """
            CREATE TABLE {schema}.transactions (
                source_key text COLLATE "C" NOT NULL,
                record_id text COLLATE "C" NOT NULL,
                updated_at timestamptz NOT NULL,
                deleted boolean NOT NULL,
                payload jsonb NOT NULL,
                generation bigint NOT NULL,
                PRIMARY KEY (source_key, record_id)
            )
            """,
            # ``sighting`` grows with every write, so the list comes back in order of last
            # sighting, as the in-memory store keeps it.
            """
            CREATE TABLE {schema}.rejected (
                source_key text COLLATE "C" NOT NULL,
                fingerprint text COLLATE "C" NOT NULL,
                record_id text,
                reason text NOT NULL,
                raw text NOT NULL,
                seen_at timestamptz,
                sighting bigserial NOT NULL,
                PRIMARY KEY (source_key, fingerprint)
            )
            """,
        ),
    ),
    # The digest is computed in Python (incsync.content), never in SQL, so the rows written
    # before it are filled in by PostgresStore.migrate with UNDIGESTED_TRANSACTIONS below.
    (
        CONTENT_DIGEST_VERSION,
        ("ALTER TABLE {schema}.transactions ADD COLUMN content_digest bytea",),
    ),
    # Each source's marks (incsync.marks), as incsync.marks.marks_text writes them.
    (3, ("ALTER TABLE {schema}.sources ADD COLUMN marks text NOT NULL DEFAULT '{}'",)),
    # The highest lease token that wrote each source's transactions (incsync.state.admit_writer).
    (
        4,
        (
            """
            CREATE TABLE {schema}.sink_fences (
                source_key text COLLATE "C" PRIMARY KEY,
                token bigint NOT NULL
            )
            """,
        ),
    ),
    # Why a transaction was swept (incsync.records.SWEPT); NULL for a record as the source sent
    # it. Each source's last count check (incsync.state.CountCheck); NULL before the first.
    (
        5,
        (
            "ALTER TABLE {schema}.transactions ADD COLUMN deleted_reason text",
            """
            ALTER TABLE {schema}.sources
                ADD COLUMN count_source bigint,
                ADD COLUMN count_host bigint,
                ADD COLUMN count_at timestamptz,
                ADD COLUMN count_previous_drift bigint,
                ADD COLUMN count_full_read_drift bigint,
                ADD CHECK ((count_at IS NULL) = (count_source IS NULL)
                           AND (count_at IS NULL) = (count_host IS NULL))
            """,
        ),
    ),
    # Each source's OAuth2 tokens (incsync.tokens.SealedTokens): the only table holding secrets.
    (
        6,
        (
            """
            CREATE TABLE {schema}.tokens (
                source_key text COLLATE "C" PRIMARY KEY,
                tokens text NOT NULL,
                encrypted boolean NOT NULL,
                saved_at timestamptz NOT NULL
            )
            """,
        ),
    ),
    # Each source's cycle history (incsync.history.CycleEntry), read and pruned newest first
    # through the index: by start, then by row.
    (
        7,
        (
            """
            CREATE TABLE {schema}.cycles (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                source_key text COLLATE "C" NOT NULL,
                generation bigint NOT NULL,
                worker text NOT NULL,
                started timestamptz NOT NULL,
                ended timestamptz NOT NULL,
                outcome text NOT NULL,
                pages bigint NOT NULL,
                fetched bigint NOT NULL,
                applied bigint NOT NULL,
                already_applied bigint NOT NULL,
                rejected bigint NOT NULL,
                swept bigint NOT NULL,
                error_class text,
                error_message text,
                retry_at timestamptz,
                clock_skew interval
            )
            """,
            "CREATE INDEX cycles_by_start ON {schema}.cycles (source_key, started, id)",
        ),
    ),
    # Each history entry's cycle id, the one its log records carry (none for entries kept before).
    (8, ("ALTER TABLE {schema}.cycles ADD COLUMN cycle_id text",)),
    # Each source's mapped transactions (incsync.mapping.MappedRow), read by business date and
    # by owner, and each source's re-map checkpoint.
    (
        MAPPED_TRANSACTIONS_VERSION,
        (
            """
            CREATE TABLE {schema}.mapped_transactions (
                source_key text COLLATE "C" NOT NULL,
                record_id text COLLATE "C" NOT NULL,
                business_date date NOT NULL,
                kind text NOT NULL,
                status text NOT NULL,
                amount numeric NOT NULL,
                currency char(3) NOT NULL,
                customer_id text,
                customer_name text,
                owner_id text,
                owner_name text,
                owner_email text,
                lines jsonb NOT NULL,
                custom jsonb NOT NULL,
                mapping text NOT NULL,
                mapping_version text NOT NULL,
                updated_at timestamptz NOT NULL,
                voided boolean NOT NULL,
                void_reason text,
                PRIMARY KEY (source_key, record_id)
            )
            """,
            "CREATE INDEX mapped_transactions_by_date ON {schema}.mapped_transactions "
            "(source_key, business_date, record_id)",
            "CREATE INDEX mapped_transactions_by_owner ON {schema}.mapped_transactions "
            "(source_key, owner_id, business_date)",
            """
            CREATE TABLE {schema}.remaps (
                source_key text COLLATE "C" PRIMARY KEY,
                mapping text NOT NULL,
                mapping_version text NOT NULL,
                after_record_id text COLLATE "C" NOT NULL,
                finished boolean NOT NULL
            )
            """,
        ),
    ),
    # Each history entry's id reconcile figures (0 for entries kept before), and the live ids in
    # numeric order (incsync.reconcile.IdOrder.NUMERIC), so LIST_LIVE_IDS pages along an index.
    (
        RECONCILE_FIGURES_VERSION,
        (
            """
            ALTER TABLE {schema}.cycles
                ADD COLUMN reconcile_fetched bigint NOT NULL DEFAULT 0,
                ADD COLUMN reconcile_tombstoned bigint NOT NULL DEFAULT 0
            """,
            """
            CREATE INDEX live_ids_by_number ON {schema}.transactions
                (source_key, length(record_id), record_id) WHERE NOT deleted
            """,
        ),
    ),
    # What people did to each source (reset, cancel, resume), who and when; read newest first
    # through the index, by time, then by row.
    (
        ACTION_LOG_VERSION,
        (
            """
            CREATE TABLE {schema}.actions (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                source_key text COLLATE "C" NOT NULL,
                action text NOT NULL,
                actor text NOT NULL,
                at timestamptz NOT NULL
            )
            """,
            "CREATE INDEX actions_by_time ON {schema}.actions (source_key, at, id)",
        ),
    ),
    # Only rows with an owner in the owner index: a query by owner (owner_id = ...) never reads
    # the others, and a source whose mapping names no owner (QuickBooks invoices) paid for an
    # entry per row all the same.
    (
        OWNER_INDEX_VERSION,
        (
            "DROP INDEX {schema}.mapped_transactions_by_owner",
            "CREATE INDEX mapped_transactions_by_owner ON {schema}.mapped_transactions "
            "(source_key, owner_id, business_date) WHERE owner_id IS NOT NULL",
        ),
    ),
)
UNDIGESTED_TRANSACTIONS = """
SELECT source_key, record_id, payload::text FROM {schema}.transactions
WHERE content_digest IS NULL AND (source_key, record_id) > (%s, %s)
ORDER BY source_key, record_id LIMIT %s
"""
SET_CONTENT_DIGEST = (
    "UPDATE {schema}.transactions SET content_digest = %s WHERE source_key = %s AND record_id = %s"
)

# -- state -----------------------------------------------------------------------------------

STATE_COLUMNS = (
    "source_key",
    "phase",
    "generation",
    "cursor_updated_at",
    "cursor_record_id",
    "last_change",
    "last_sync",
    "last_attempt",
    "consecutive_failures",
    "error_class",
    "error_message",
    "error_at",
    "error_retryable",
    "error_auth",
    "lease_holder",
    "lease_expires_at",
    "lease_token",
    "not_before",
    "last_cycle_rejected",
    "reset_pending",
    "marks",
    "count_source",
    "count_host",
    "count_at",
    "count_previous_drift",
    "count_full_read_drift",
)
_SELECT_STATE = f"SELECT {', '.join(STATE_COLUMNS)} FROM {{schema}}.sources"

READ_STATE = _SELECT_STATE + " WHERE source_key = %s"
LOCK_STATE = READ_STATE + " FOR UPDATE"
LIST_STATES = _SELECT_STATE + " ORDER BY source_key"

# The column defaults are a new source's state (incsync.state.new_state).
ENSURE_SOURCE = (
    "INSERT INTO {schema}.sources (source_key) VALUES (%s) ON CONFLICT (source_key) DO NOTHING"
)

# A compare-and-set: the row is written only while it still holds the lease token and generation
# the transition was decided on, so no write is ever made under another worker's lease.
WRITE_STATE = (
    "UPDATE {schema}.sources SET "
    + ", ".join(f"{column} = %({column})s" for column in STATE_COLUMNS[1:])
    + " WHERE source_key = %(source_key)s"
    " AND lease_token IS NOT DISTINCT FROM %(expected_token)s"
    " AND generation = %(expected_generation)s"
)

# -- set-aside records -----------------------------------------------------------------------

SAVE_REJECTED = """
INSERT INTO {schema}.rejected AS kept
    (source_key, fingerprint, record_id, reason, raw, seen_at)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (source_key, fingerprint) DO UPDATE SET
    record_id = excluded.record_id,
    reason = excluded.reason,
    raw = excluded.raw,
    seen_at = excluded.seen_at,
    sighting = excluded.sighting
"""
DELETE_REJECTED = "DELETE FROM {schema}.rejected WHERE source_key = %s"
LIST_REJECTED = """
SELECT record_id, reason, raw, seen_at FROM {schema}.rejected
WHERE source_key = %s ORDER BY seen_at NULLS FIRST, sighting
"""

# -- transactions ----------------------------------------------------------------------------

# One statement decides idempotency, as incsync.records.supersedes does: a newer version is
# written, an older never; at an equal time a newer generation is written once, and within a
# generation only a changed content, compared by digest (incsync.content; a row without one,
# left by an older incsync, differs). Many workers upserting at once cannot undo each other.
UPSERT_TRANSACTION = """
INSERT INTO {schema}.transactions AS stored
    (source_key, record_id, updated_at, deleted, payload, content_digest, generation)
VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s)
ON CONFLICT (source_key, record_id) DO UPDATE SET
    updated_at = excluded.updated_at,
    deleted = excluded.deleted,
    payload = excluded.payload,
    content_digest = excluded.content_digest,
    generation = excluded.generation,
    deleted_reason = NULL
WHERE excluded.updated_at > stored.updated_at
   OR (excluded.updated_at = stored.updated_at
       AND (excluded.generation > stored.generation
            OR (excluded.generation = stored.generation
                AND (excluded.deleted <> stored.deleted
                     OR excluded.content_digest IS DISTINCT FROM stored.content_digest))))
"""
# Raises the source's fence to the writer's token if that is higher, and returns the fence, with
# the row locked until the page commits: concurrent writers of one source pass one at a time, and
# incsync.state.admit_writer decides on the returned value whether this one may write at all.
RAISE_SINK_FENCE = """
INSERT INTO {schema}.sink_fences AS fence (source_key, token) VALUES (%s, %s)
ON CONFLICT (source_key) DO UPDATE SET token = greatest(fence.token, excluded.token)
RETURNING token
"""
# The sweep after a full re-read (incsync.records.is_swept and swept, as one set operation):
# live rows still under an older generation, but the ids the read set aside.
SWEEP_TRANSACTIONS = """
UPDATE {schema}.transactions SET deleted = true, generation = %s, deleted_reason = %s
WHERE source_key = %s AND generation < %s AND NOT deleted AND record_id <> ALL(%s)
"""
# The live ids in each incsync.reconcile.IdOrder, from after a bound written as that order's sort
# key: code point order runs along the primary key (source_key, record_id COLLATE "C"), numeric
# order along the index live_ids_by_number, so a page is a range of an index, not a sort.
LIST_LIVE_IDS = {
    IdOrder.CODE_POINT: """
SELECT record_id FROM {schema}.transactions
WHERE source_key = %s AND NOT deleted AND record_id > %s ORDER BY record_id LIMIT %s
""",
    IdOrder.NUMERIC: """
SELECT record_id FROM {schema}.transactions
WHERE source_key = %s AND NOT deleted AND (length(record_id), record_id) > (%s, %s)
ORDER BY length(record_id), record_id LIMIT %s
""",
}
TOMBSTONE_TRANSACTIONS = """
UPDATE {schema}.transactions SET deleted = true, generation = %s, deleted_reason = %s
WHERE source_key = %s AND NOT deleted AND record_id = ANY(%s)
"""
READ_TRANSACTIONS = """
SELECT record_id, updated_at, deleted, payload, generation, deleted_reason
FROM {schema}.transactions
WHERE source_key = %s AND record_id > %s ORDER BY record_id LIMIT %s
"""
COUNT_TRANSACTIONS = "SELECT count(*) FROM {schema}.transactions WHERE source_key = %s"
COUNT_LIVE_TRANSACTIONS = COUNT_TRANSACTIONS + " AND NOT deleted"

# -- mapped transactions ---------------------------------------------------------------------

MAPPED_COLUMNS = _columns.MAPPED_COLUMNS
# The raw row holds the version a change was computed from: only then is the change applied, so
# an older version replayed, or a re-map racing a newer write, changes no mapped row.
_HOLDS_VERSION = """
EXISTS (SELECT 1 FROM {schema}.transactions AS raw
        WHERE raw.source_key = %s AND raw.record_id = %s AND raw.updated_at = %s
          AND raw.deleted = %s AND raw.generation = %s)
"""
WRITE_MAPPED = (
    f"INSERT INTO {{schema}}.mapped_transactions ({', '.join(MAPPED_COLUMNS)}) "
    "SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s, "
    f"%s, %s WHERE {_HOLDS_VERSION} ON CONFLICT (source_key, record_id) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in MAPPED_COLUMNS[2:])
)
VOID_MAPPED = (
    "UPDATE {schema}.mapped_transactions SET voided = true, void_reason = %s "
    f"WHERE source_key = %s AND record_id = %s AND {_HOLDS_VERSION}"
)
# After a sweep or an id reconcile: one set operation voids the rows of every raw row it made a
# tombstone (under that generation, with that reason).
VOID_TOMBSTONED = """
UPDATE {schema}.mapped_transactions AS kept SET voided = true, void_reason = %s
FROM {schema}.transactions AS raw
WHERE kept.source_key = %s AND raw.source_key = kept.source_key
  AND raw.record_id = kept.record_id AND raw.generation = %s AND raw.deleted
  AND raw.deleted_reason = %s
"""
READ_MAPPED = (
    f"SELECT {', '.join(MAPPED_COLUMNS)} FROM {{schema}}.mapped_transactions WHERE source_key = %s"
)
# The raw rows a re-map still has to compute, after its checkpoint, along the primary key: those
# without a mapped row of the version.
TO_REMAP = """
SELECT raw.record_id, raw.updated_at, raw.deleted, raw.payload, raw.generation,
       raw.deleted_reason
FROM {schema}.transactions AS raw
LEFT JOIN {schema}.mapped_transactions AS kept
    ON kept.source_key = raw.source_key AND kept.record_id = raw.record_id
WHERE raw.source_key = %s AND raw.record_id > %s
  AND (kept.record_id IS NULL OR kept.mapping_version <> %s OR kept.mapping <> %s)
ORDER BY raw.record_id LIMIT %s
"""
# Locked first, so two re-maps of one source run one page after the other.
ENSURE_REMAP = """
INSERT INTO {schema}.remaps (source_key, mapping, mapping_version, after_record_id, finished)
VALUES (%s, '', '', '', false) ON CONFLICT (source_key) DO NOTHING
"""
LOCK_REMAP = """
SELECT mapping, mapping_version, after_record_id, finished FROM {schema}.remaps
WHERE source_key = %s FOR UPDATE
"""
SAVE_REMAP = """
UPDATE {schema}.remaps SET mapping = %s, mapping_version = %s, after_record_id = %s,
    finished = %s
WHERE source_key = %s
"""

# -- tokens ----------------------------------------------------------------------------------

LOAD_TOKENS = "SELECT tokens, encrypted, saved_at FROM {schema}.tokens WHERE source_key = %s"
SAVE_TOKENS = """
INSERT INTO {schema}.tokens (source_key, tokens, encrypted, saved_at) VALUES (%s, %s, %s, %s)
ON CONFLICT (source_key) DO UPDATE SET
    tokens = excluded.tokens, encrypted = excluded.encrypted, saved_at = excluded.saved_at
"""
# A write that changes no value: refused as a save would be, in a read-only transaction (a
# standby, default_transaction_read_only) or without the right to update the table.
CHECK_TOKENS_WRITABLE = "UPDATE {schema}.tokens SET saved_at = saved_at WHERE source_key = %s"
# -- cycle history ---------------------------------------------------------------------------

CYCLE_COLUMNS = (
    "source_key",
    "generation",
    "worker",
    "started",
    "ended",
    "outcome",
    "pages",
    "fetched",
    "applied",
    "already_applied",
    "rejected",
    "swept",
    "error_class",
    "error_message",
    "retry_at",
    "clock_skew",
    "cycle_id",
    "reconcile_fetched",
    "reconcile_tombstoned",
)
SAVE_ACTION = "INSERT INTO {schema}.actions (source_key, action, actor, at) VALUES (%s, %s, %s, %s)"
# LIMIT NULL is no limit.
READ_ACTIONS = (
    "SELECT source_key, action, actor, at FROM {schema}.actions WHERE source_key = %s "
    "ORDER BY at DESC, id DESC LIMIT %s"
)
READ_CYCLES = (
    f"SELECT {', '.join(CYCLE_COLUMNS)} FROM {{schema}}.cycles WHERE source_key = %s "
    "ORDER BY started DESC, id DESC LIMIT %s"
)
# Each source's latest entries, newest first, as StateStore.history_summaries reads them for many
# sources in one statement: for each key of the array, the same index range as READ_CYCLES, so a
# source costs its newest entries and never its whole history (a window function over the table
# would read every entry kept, up to the retention's 1,000 per source).
LATEST_CYCLES = """
SELECT keys.source_key, latest.outcome, latest.clock_skew
FROM unnest(%s::text[]) WITH ORDINALITY AS keys(source_key, place)
CROSS JOIN LATERAL (
    SELECT outcome, clock_skew, started, id FROM {schema}.cycles
    WHERE source_key = keys.source_key COLLATE "C"
    ORDER BY started DESC, id DESC LIMIT %s
) AS latest
ORDER BY keys.place, latest.started DESC, latest.id DESC
"""
# incsync.history.retained, as two deletes of one source's oldest entries, each a range of the
# index: those that started before the age limit (none with a limit of NULL), and those below the
# newest max_cycles (without that many rows, the subquery finds none and nothing is deleted).
PRUNE_CYCLES_BY_AGE = "DELETE FROM {schema}.cycles WHERE source_key = %s AND started < %s"
PRUNE_CYCLES_BY_COUNT = """
DELETE FROM {schema}.cycles WHERE source_key = %s AND (started, id) < (
    SELECT started, id FROM {schema}.cycles WHERE source_key = %s
    ORDER BY started DESC, id DESC OFFSET %s LIMIT 1
)
"""
# One statement a cycle: prune by age (a data-modifying WITH runs whether or not it is read; the
# new entry is never older than the age limit, so that the DELETE does not see it changes
# nothing), keep the entry, and answer whether the source held more entries than the given
# number before (the subquery sees neither the deletes nor the new row, so it may answer yes when
# the age limit already made room). PRUNE_CYCLES_BY_COUNT can delete an entry only after a yes.
SAVE_CYCLE = (
    f"WITH pruned AS ({PRUNE_CYCLES_BY_AGE}) "
    f"INSERT INTO {{schema}}.cycles ({', '.join(CYCLE_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(CYCLE_COLUMNS))}) "
    "RETURNING EXISTS (SELECT FROM {schema}.cycles WHERE source_key = %s OFFSET %s)"
)
