"""The PostgreSQL store's mapped transactions, written in step with the raw rows.

The statements of :mod:`._postgres_sql` run in the caller's transaction (the one that writes the
raw rows), so a raw row and its mapped row commit together. Amounts are ``numeric``, business
dates ``date``, lines and custom fields ``jsonb``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from incsync.mapping._columns import (
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
from incsync.stores import _postgres_sql as sql

if TYPE_CHECKING:
    import psycopg

    StoreCursor = psycopg.Cursor[tuple[Any, ...]]

__all__ = ["read_mapped", "remap_page", "void_tombstoned", "write_changes"]

Render = Callable[[str], str]
"""Fills a statement's ``{schema}`` in (the store's ``_sql``)."""


def write_changes(
    cursor: StoreCursor,
    render: Render,
    source_key: str,
    changes: Sequence[tuple[MappedChange, int]],
) -> tuple[int, int]:
    """Apply each change whose raw row holds its version; return how many written and voided.

    A change's version is its record under the generation given with it. The changes are
    sorted by record id, as the raw rows are, so concurrent writers lock a source's mapped rows
    in one order too.
    """
    ordered = sorted(changes, key=lambda pair: pair[0].record.id)
    writes, voids = change_rows(source_key, ordered)
    written = voided = 0
    if writes:
        cursor.executemany(render(sql.WRITE_MAPPED), writes)
        written = cursor.rowcount
    if voids:
        cursor.executemany(render(sql.VOID_MAPPED), voids)
        voided = cursor.rowcount
    return written, voided


def void_tombstoned(
    cursor: StoreCursor, render: Render, source_key: str, generation: int, reason: str
) -> None:
    """Void the mapped rows of the raw rows made tombstones under ``generation`` for ``reason``."""
    cursor.execute(render(sql.VOID_TOMBSTONED), (reason, source_key, generation, reason))


def read_mapped(
    cursor: StoreCursor,
    render: Render,
    source_key: str,
    since: date | None,
    until: date | None,
    after: MappedPosition | None,
    limit: int,
    include_voided: bool,
) -> list[MappedRow]:
    """Return a page of the source's mapped rows by business date, then id: one index range."""
    clauses: list[str] = [sql.READ_MAPPED]
    params: list[object] = [source_key]
    if since is not None:
        clauses.append("business_date >= %s")
        params.append(since)
    if until is not None:
        clauses.append("business_date < %s")
        params.append(until)
    if after is not None:
        clauses.append("(business_date, record_id) > (%s, %s)")
        params += [after.date, after.record_id]
    if not include_voided:
        clauses.append("NOT voided")
    statement = " AND ".join(clauses) + " ORDER BY business_date, record_id LIMIT %s"
    cursor.execute(render(statement), (*params, limit))
    return [mapped_row(row) for row in cursor.fetchall()]


def remap_page(
    cursor: StoreCursor,
    render: Render,
    source_key: str,
    mapping: TransactionMapping,
    limit: int,
) -> RemapPage:
    """Re-map the next page of the source's raw rows and move the re-map's checkpoint past it.

    The checkpoint is the last record id done, kept with the mapping's version: a re-map to
    another version starts over, and one that finished does nothing until the mapping changes.
    """
    name, version = mapping.name, mapping.version
    cursor.execute(render(sql.ENSURE_REMAP), (source_key,))
    cursor.execute(render(sql.LOCK_REMAP), (source_key,))
    kept = cursor.fetchone()
    assert kept is not None  # ensured just above
    after = ""
    if (kept[0], kept[1]) == (name, version):
        if kept[3]:
            return RemapPage(name, version, finished=True)
        after = kept[2]
    cursor.execute(render(sql.TO_REMAP), (source_key, after, version, name, limit))
    rows = cursor.fetchall()
    changes: list[tuple[MappedChange, int]] = []
    unmappable: list[RejectedRecord] = []
    for record_id, updated_at, deleted, payload, generation, deleted_reason in rows:
        record = Record(id=record_id, updated_at=updated_at, payload=payload, deleted=deleted)
        change, refused = remap_change(mapping, source_key, record, deleted_reason)
        changes.append((change, generation))
        if refused is not None:
            unmappable.append(refused)
    written, voided = write_changes(cursor, render, source_key, changes)
    finished = len(rows) < limit
    last = rows[-1][0] if rows else after
    cursor.execute(render(sql.SAVE_REMAP), (name, version, last, finished, source_key))
    return RemapPage(name, version, len(rows), written, voided, tuple(unmappable), finished)
