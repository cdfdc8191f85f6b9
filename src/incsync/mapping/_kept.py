"""Mapped transactions as the stores keep them: the row, and what one record does to it.

Every store that maps (given ``mappings=``) writes a source's mapped rows in the same database
transaction as its raw rows, and every one decides what a record does to its mapped row here,
once: :func:`change_of` runs the pure :meth:`TransactionMapping.map` on the record and says
whether the row is written (:attr:`MappedChange.row`), made void (:attr:`MappedChange.void`), or
the record set aside because it cannot be mapped. A store applies a change only while the raw
row holds the very version the change was computed from, so a replayed older version, or a
re-map racing a newer write, never overwrites what a newer version mapped to.

Mapped rows are never deleted: a delete, a void at the source, a sweep or an id reconcile makes
the row void, saying why, with its last values kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import cast

import attrs

from incsync.errors import ConfigurationError, UnmappableRecordError
from incsync.mapping._spec import TransactionMapping
from incsync.mapping._value import MappedTransaction, Status
from incsync.records import Record, RejectedRecord, raw_excerpt

__all__ = [
    "CANNOT_BE_MAPPED",
    "DEFAULT_MAPPED_PAGE",
    "DELETED_AT_SOURCE",
    "NOT_A_TRANSACTION",
    "VOIDED_AT_SOURCE",
    "MappedChange",
    "MappedPage",
    "MappedPosition",
    "MappedRow",
    "MappingLookup",
    "RemapPage",
    "change_of",
    "checked_range",
    "mapping_lookup",
    "remap_change",
    "split_page",
]

VOIDED_AT_SOURCE = "voided at the source"
"""Why a row is void when the mapping read the status ``void``."""

DELETED_AT_SOURCE = "deleted at the source"
"""Why a row is void when its record was deleted (a tombstone, or the status ``deleted``)."""

NOT_A_TRANSACTION = "no longer a transaction for the mapping"
"""Why a row is void when the record's latest version fails the mapping's ``where`` conditions."""

CANNOT_BE_MAPPED = "cannot be mapped"
"""How the reason of a row a re-map could not compute begins (the mapping's reason follows)."""

DEFAULT_MAPPED_PAGE = 500
"""Mapped rows per page read or re-mapped, unless the caller says otherwise."""

MappingLookup = Callable[[str], "TransactionMapping | None"]
"""Returns the mapping of a source key, or ``None`` when the source's records are not mapped."""


def mapping_lookup(
    mappings: Mapping[str, TransactionMapping] | MappingLookup | None,
) -> MappingLookup:
    """Return the lookup a store asks for each source's mapping.

    Args:
        mappings: A table of source key to mapping, a function of the source key (for keys made
            at run time, one per tenant), or ``None`` for a store that maps nothing.

    Raises:
        ConfigurationError: ``mappings`` is none of those, or the table holds something that is
            not a :class:`TransactionMapping`.
    """
    if mappings is None:
        return lambda _key: None
    if isinstance(mappings, Mapping):
        wrong = [
            key
            for key, value in mappings.items()
            if not isinstance(cast("object", value), TransactionMapping)
        ]
        if wrong:
            raise ConfigurationError(
                f"mappings[{wrong[0]!r}] is not a TransactionMapping; build one with "
                "incsync.mapping.preset() or TransactionMapping.from_data()"
            )
        return dict(mappings).get
    if callable(mappings):
        return mappings
    raise ConfigurationError(
        f"mappings={mappings!r}; expected a dict of source key to TransactionMapping, or a "
        "function of the source key"
    )


@attrs.frozen
class MappedRow:
    """A mapped transaction as a store keeps it, with where it came from and whether it counts.

    Args:
        transaction: The values the mapping gave (its ``source_key`` is always set).
        updated_at: When the record's version these values were mapped from was updated.
        mapping: The name of the mapping that computed the values.
        mapping_version: That mapping's :attr:`~TransactionMapping.version`.
        voided: Whether the transaction no longer counts: voided or deleted at the source, swept
            after a full re-read, tombstoned by an id reconcile, or no longer a transaction. The
            values stay as last mapped.
        void_reason: Why it is void (``None`` while it is not).
    """

    transaction: MappedTransaction
    updated_at: datetime
    mapping: str
    mapping_version: str
    voided: bool = False
    void_reason: str | None = None

    @property
    def position(self) -> MappedPosition:
        """Where the row sits in the order pages are read in: business date, then record id."""
        return MappedPosition(self.transaction.date, self.transaction.record_id)


@attrs.frozen(order=True)
class MappedPosition:
    """A place in a source's mapped rows ordered by business date, then record id.

    A page of rows is asked for ``after`` the last row's position (keyset paging): rows written
    meanwhile never shift a page, as an offset would.

    Args:
        date: The business date.
        record_id: The record id, breaking ties of one date.
    """

    date: date
    record_id: str


@attrs.frozen
class MappedChange:
    """What one record's version does to its mapped row.

    Args:
        record: The version the change was computed from; a store applies the change only while
            the raw row holds that version (same update time, same tombstone flag, written under
            the same generation).
        row: The row to write, or ``None`` to make the existing row void.
        void: Why the existing row becomes void, when ``row`` is ``None``.
    """

    record: Record
    row: MappedRow | None = None
    void: str | None = None


@attrs.frozen
class MappedPage:
    """A page of records split for a store that maps: what to write raw, and the mapped changes.

    Args:
        records: The records to write as raw rows (those set aside are not among them).
        changes: One mapped change per record in ``records``, in the same order.
        rejected: The records set aside because they cannot be mapped.
    """

    records: Sequence[Record]
    changes: Sequence[MappedChange]
    rejected: Sequence[RejectedRecord] = ()


@attrs.frozen
class RemapPage:
    """What one page of a re-map did.

    Args:
        mapping: The name of the mapping the rows were computed with.
        mapping_version: Its version.
        examined: Raw rows read (those already at the version are not read at all).
        written: Mapped rows written with the new version's values.
        voided: Existing rows made void (deleted records, no longer transactions, unmappable).
        unmappable: Records the mapping could not read, with the reason; their rows are void.
        finished: Whether the re-map has gone through every raw row of the source.
    """

    mapping: str
    mapping_version: str
    examined: int = 0
    written: int = 0
    voided: int = 0
    unmappable: Sequence[RejectedRecord] = ()
    finished: bool = False


_VOID_STATUSES = {Status.VOID: VOIDED_AT_SOURCE, Status.DELETED: DELETED_AT_SOURCE}


def _row(transaction: MappedTransaction, record: Record, mapping: TransactionMapping) -> MappedRow:
    reason = _VOID_STATUSES.get(transaction.status)
    return MappedRow(
        transaction=transaction,
        updated_at=record.updated_at,
        mapping=mapping.name,
        mapping_version=mapping.version,
        voided=reason is not None,
        void_reason=reason,
    )


def checked_range(since: object, until: object) -> tuple[date | None, date | None]:
    """Return a business-date range ``[since, until)`` checked: dates or ``None``, in order.

    Raises:
        ConfigurationError: A bound is not a date (a datetime is refused: a business date has no
            time of day), or ``until`` is before ``since``.
    """
    for name, bound in (("since", since), ("until", until)):
        if bound is not None and (isinstance(bound, datetime) or not isinstance(bound, date)):
            raise ConfigurationError(
                f"{name}={bound!r}; expected a date (datetime.date, no time of day) or None"
            )
    assert since is None or isinstance(since, date)
    assert until is None or isinstance(until, date)
    if since is not None and until is not None and until < since:
        raise ConfigurationError(
            f"until={until.isoformat()} is before since={since.isoformat()}; the range is "
            "[since, until): since included, until not"
        )
    return since, until


def change_of(
    mapping: TransactionMapping, source_key: str, record: Record, deleted_reason: str | None = None
) -> MappedChange:
    """Return what ``record`` does to its mapped row under ``mapping``.

    A tombstone is not mapped (a vendor's delete carries little more than the id): it makes the
    row void, with ``deleted_reason`` (why incsync tombstoned it) or :data:`DELETED_AT_SOURCE`.
    A live record whose ``where`` conditions fail makes the row void with
    :data:`NOT_A_TRANSACTION`; any other gives the row to write, void when the mapping read the
    status ``void`` or ``deleted``.

    Raises:
        UnmappableRecordError: The record should be a transaction but cannot be read.
    """
    if record.deleted:
        return MappedChange(record, void=deleted_reason or DELETED_AT_SOURCE)
    transaction = mapping.map(record.payload, source_key=source_key, record_id=record.id)
    if transaction is None:
        return MappedChange(record, void=NOT_A_TRANSACTION)
    return MappedChange(record, row=_row(transaction, record, mapping))


def _refused(
    mapping: TransactionMapping, record: Record, error: UnmappableRecordError
) -> RejectedRecord:
    # The payload, not the record, is shown: it is what the mapping could not read.
    return RejectedRecord(
        record_id=record.id,
        reason=f"{CANNOT_BE_MAPPED} by {mapping.name}: {error.reason}",
        raw=raw_excerpt(record.payload),
    )


def split_page(
    mapping: TransactionMapping | None, source_key: str, records: Sequence[Record]
) -> MappedPage:
    """Split a page for writing: records that map (or need no mapping) and those set aside.

    A record the mapping cannot read is set aside with the mapping's reason and written nowhere,
    raw row included: its raw and mapped rows stay at the version before, in step, and the record
    is applied once a later version maps (or a reset re-reads it after the mapping is fixed).
    """
    if mapping is None:
        return MappedPage(records, ())
    kept: list[Record] = []
    changes: list[MappedChange] = []
    rejected: list[RejectedRecord] = []
    for record in records:
        try:
            change = change_of(mapping, source_key, record)
        except UnmappableRecordError as error:
            rejected.append(_refused(mapping, record, error))
            continue
        kept.append(record)
        changes.append(change)
    return MappedPage(kept, changes, rejected)


def remap_change(
    mapping: TransactionMapping, source_key: str, record: Record, deleted_reason: str | None
) -> tuple[MappedChange, RejectedRecord | None]:
    """Return what a re-map does with a stored raw row, and the record when it cannot be mapped.

    A stored row that no longer maps is not set aside (it is stored already): its mapped row is
    made void, the reason beginning with :data:`CANNOT_BE_MAPPED`.
    """
    try:
        return change_of(mapping, source_key, record, deleted_reason), None
    except UnmappableRecordError as error:
        refused = _refused(mapping, record, error)
        return MappedChange(record, void=refused.reason), refused
