"""The SQLite store's mapped transactions: their tables, and the statements that keep them in step.

Every function runs inside the caller's transaction (the one that writes the raw rows), so a raw
row and its mapped row commit together. Amounts are kept as decimal text, business dates as ISO
text (which sorts as the dates do): SQLite's NUMERIC affinity would turn ``"150.10"`` into a
binary float.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal

from incsync.mapping._columns import (
    MAPPED_COLUMNS,
    change_rows,
    mapped_row,
)
from incsync.mapping._kept import (
    MappedChange,
    MappedPosition,
    MappedRow,
    RemapPage,
    remap_change,
)
from incsync.mapping._spec import TransactionMapping
from incsync.records import Record, RejectedRecord
from incsync.timestamps import from_micros, to_micros

__all__ = [
    "MAPPED_SCHEMA",
    "OWNER_INDEX",
    "HeldVersions",
    "held_versions",
    "read_mapped",
    "remap_page",
    "void_tombstoned",
    "write_changes",
]

# Only rows with an owner are in the owner index: a query by owner (owner_id = ?) never reads the
# others, and a source whose mapping names no owner (QuickBooks invoices) paid for an entry per
# row all the same. Schema 12 made it partial: a file of an older schema is given it on open.
_BY_OWNER = (
    "incsync_mapped_by_owner ON incsync_mapped (source_key, owner_id, business_date) "
    "WHERE owner_id IS NOT NULL"
)
OWNER_INDEX = ("DROP INDEX IF EXISTS incsync_mapped_by_owner", f"CREATE INDEX {_BY_OWNER}")
"""The statements that replace a file's owner index with the current one."""

MAPPED_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS incsync_mapped (
    source_key TEXT NOT NULL,
    record_id TEXT NOT NULL,
    business_date TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    amount TEXT NOT NULL,
    currency TEXT NOT NULL,
    customer_id TEXT,
    customer_name TEXT,
    owner_id TEXT,
    owner_name TEXT,
    owner_email TEXT,
    lines TEXT NOT NULL,
    custom TEXT NOT NULL,
    mapping TEXT NOT NULL,
    mapping_version TEXT NOT NULL,
    updated_at_us INTEGER NOT NULL,
    voided INTEGER NOT NULL,
    void_reason TEXT,
    PRIMARY KEY (source_key, record_id)
);
CREATE INDEX IF NOT EXISTS incsync_mapped_by_date
    ON incsync_mapped (source_key, business_date, record_id);
CREATE INDEX IF NOT EXISTS {_BY_OWNER};
CREATE TABLE IF NOT EXISTS incsync_remaps (
    source_key TEXT PRIMARY KEY,
    mapping TEXT NOT NULL,
    mapping_version TEXT NOT NULL,
    after_record_id TEXT NOT NULL,
    finished INTEGER NOT NULL
);
"""

_COLUMNS = ", ".join(name if name != "updated_at" else "updated_at_us" for name in MAPPED_COLUMNS)
_NAMES = _COLUMNS.split(", ")

# A change is applied only while the raw row holds the version it was computed from, so an older
# version replayed, or a re-map racing a newer write, changes no mapped row. The versions the raw
# rows hold are read for a whole page at once and compared in Python (write_changes): a check in
# each row's INSERT (INSERT ... SELECT ... WHERE EXISTS) made SQLite take its slower INSERT ...
# SELECT path for every mapped row, about twice the cost of the plain upsert (bench/mapping.py).
_HELD_VERSIONS = """
SELECT record_id, updated_at_us, deleted, generation FROM incsync_transactions
WHERE source_key = ? AND record_id IN (SELECT value FROM json_each(?))
"""
_WRITE = (
    f"INSERT INTO incsync_mapped ({_COLUMNS}) VALUES ({', '.join('?' * len(_NAMES))}) "
    "ON CONFLICT (source_key, record_id) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _NAMES[2:])
)
_VOID = (
    "UPDATE incsync_mapped SET voided = 1, void_reason = ? WHERE source_key = ? AND record_id = ?"
)
# After a sweep or an id reconcile: one set operation voids the rows of every raw row it made a
# tombstone (under that generation, with that reason).
_VOID_TOMBSTONED = """
UPDATE incsync_mapped SET voided = 1, void_reason = ?
WHERE source_key = ? AND record_id IN (
    SELECT record_id FROM incsync_transactions
    WHERE source_key = ? AND generation = ? AND deleted AND deleted_reason = ?
)
"""
_READ = f"SELECT {_COLUMNS} FROM incsync_mapped WHERE source_key = ?"

# The raw rows a re-map still has to compute, after its checkpoint, along the primary key: those
# without a mapped row of the version (rows already at it are skipped by the index lookup).
_TO_REMAP = """
SELECT raw.record_id, raw.updated_at_us, raw.deleted, raw.payload, raw.generation,
       raw.deleted_reason
FROM incsync_transactions AS raw
LEFT JOIN incsync_mapped AS kept
    ON kept.source_key = raw.source_key AND kept.record_id = raw.record_id
WHERE raw.source_key = ? AND raw.record_id > ?
  AND (kept.mapping_version IS NULL OR kept.mapping_version != ? OR kept.mapping != ?)
ORDER BY raw.record_id LIMIT ?
"""
_READ_REMAP = (
    "SELECT mapping, mapping_version, after_record_id, finished FROM incsync_remaps "
    "WHERE source_key = ?"
)
_SAVE_REMAP = """
INSERT OR REPLACE INTO incsync_remaps
    (source_key, mapping, mapping_version, after_record_id, finished)
VALUES (?, ?, ?, ?, ?)
"""


def _iso_date(value: date) -> str:
    return value.isoformat()


HeldVersions = Mapping[str, tuple[int, bool, int]]
"""The version each raw row holds, by record id: update time (µs), tombstone flag, generation."""


def held_versions(
    connection: sqlite3.Connection, source_key: str, changes: Sequence[tuple[MappedChange, int]]
) -> HeldVersions:
    """Return the versions the raw rows of ``changes`` hold now: one query for a whole page."""
    if not changes:
        return {}
    ids = json.dumps([change.record.id for change, _generation in changes])
    return {
        record_id: (updated_at_us, bool(deleted), generation)
        for record_id, updated_at_us, deleted, generation in connection.execute(
            _HELD_VERSIONS, (source_key, ids)
        )
    }


def write_changes(
    connection: sqlite3.Connection,
    source_key: str,
    changes: Sequence[tuple[MappedChange, int]],
    held: HeldVersions,
) -> tuple[int, int]:
    """Apply each change whose raw row holds its version; return how many written and voided.

    A change's version is its record under the generation given with it; ``held`` is what the
    raw rows hold, read in the transaction that wrote them (or that read them, for a re-map),
    so no other writer comes between the check and the write.
    """
    holding = [
        (change, generation)
        for change, generation in changes
        if held.get(change.record.id)
        == (to_micros(change.record.updated_at), change.record.deleted, generation)
    ]
    # The date as ISO text (it sorts as the dates do), the amount as decimal text, the time in
    # microseconds.
    writes, voids = change_rows(
        source_key, holding, day=_iso_date, money=str, stamp=to_micros, versioned=False
    )
    start = connection.total_changes
    if writes:
        connection.executemany(_WRITE, writes)
    middle = connection.total_changes
    if voids:
        connection.executemany(_VOID, voids)
    return middle - start, connection.total_changes - middle


def void_tombstoned(
    connection: sqlite3.Connection, source_key: str, generation: int, reason: str
) -> None:
    """Void the mapped rows of the raw rows made tombstones under ``generation`` for ``reason``."""
    connection.execute(_VOID_TOMBSTONED, (reason, source_key, source_key, generation, reason))


def _mapped_row(row: sqlite3.Row) -> MappedRow:
    values = list(row)
    values[2] = date.fromisoformat(values[2])
    values[5] = Decimal(values[5])
    values[16] = from_micros(values[16])
    return mapped_row(values)


def read_mapped(
    connection: sqlite3.Connection,
    source_key: str,
    since: date | None,
    until: date | None,
    after: MappedPosition | None,
    limit: int,
    include_voided: bool,
) -> list[MappedRow]:
    """Return a page of the source's mapped rows by business date, then id: one index range."""
    clauses: list[str] = [_READ]
    params: list[object] = [source_key]
    if since is not None:
        clauses.append("business_date >= ?")
        params.append(since.isoformat())
    if until is not None:
        clauses.append("business_date < ?")
        params.append(until.isoformat())
    if after is not None:
        clauses.append("(business_date, record_id) > (?, ?)")
        params += [after.date.isoformat(), after.record_id]
    if not include_voided:
        clauses.append("NOT voided")
    statement = " AND ".join(clauses) + " ORDER BY business_date, record_id LIMIT ?"
    rows = connection.execute(statement, (*params, limit))
    return [_mapped_row(row) for row in rows]


def remap_page(
    connection: sqlite3.Connection, source_key: str, mapping: TransactionMapping, limit: int
) -> RemapPage:
    """Re-map the next page of the source's raw rows and move the re-map's checkpoint past it.

    The checkpoint is the last record id done, kept with the mapping's version: a re-map to
    another version starts over, and one that finished does nothing until the mapping changes.
    """
    name, version = mapping.name, mapping.version
    kept = connection.execute(_READ_REMAP, (source_key,)).fetchone()
    after = ""
    if kept is not None and (kept["mapping"], kept["mapping_version"]) == (name, version):
        if kept["finished"]:
            return RemapPage(name, version, finished=True)
        after = kept["after_record_id"]
    rows = connection.execute(_TO_REMAP, (source_key, after, version, name, limit)).fetchall()
    changes: list[tuple[MappedChange, int]] = []
    unmappable: list[RejectedRecord] = []
    # The rows were read in this transaction: the versions they hold are the ones just read.
    held = {
        row["record_id"]: (row["updated_at_us"], bool(row["deleted"]), row["generation"])
        for row in rows
    }
    for row in rows:
        record = Record(
            id=row["record_id"],
            updated_at=from_micros(row["updated_at_us"]),
            payload=json.loads(row["payload"]),
            deleted=bool(row["deleted"]),
        )
        change, refused = remap_change(mapping, source_key, record, row["deleted_reason"])
        changes.append((change, row["generation"]))
        if refused is not None:
            unmappable.append(refused)
    written, voided = write_changes(connection, source_key, changes, held)
    finished = len(rows) < limit
    last = rows[-1]["record_id"] if rows else after
    connection.execute(_SAVE_REMAP, (source_key, name, version, last, finished))
    return RemapPage(name, version, len(rows), written, voided, tuple(unmappable), finished)
