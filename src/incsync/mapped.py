"""Mapped transactions kept by the stores: reading them by business date, and re-mapping them.

A store given a source's mapping (``SQLiteStore(path, mappings={"qbo-invoices":
preset("quickbooks", "Invoice")})``, likewise :class:`~incsync.stores.postgres.PostgresStore`
and :class:`~incsync.testing.InMemoryStore`) keeps every applied record of that source mapped too,
in the same database transaction as its raw row (see :class:`~incsync.protocols.MappedStore`).
This module is the thin loop over the store's pages:

* :func:`mapped_transactions` iterates a source's rows in a business-date range, page by page
  (keyset paging along the date index, never ``OFFSET``), typed: amounts are exact ``Decimal``.
* :func:`remap` recomputes a source's rows from the stored payloads after its mapping changed,
  page by page, each page committed with the re-map's checkpoint, so a re-map that dies resumes
  where it stopped; the source is never asked.

:meth:`SyncEngine.remap <incsync.engine.SyncEngine.remap>` and :meth:`SyncEngine.
mapped_transactions <incsync.engine.SyncEngine.mapped_transactions>` call them on the engine's
sink.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import date

import attrs

from incsync.errors import ConfigurationError
from incsync.humanize import plural
from incsync.mapping import MappedRow, RemapPage
from incsync.mapping._kept import DEFAULT_MAPPED_PAGE, checked_range
from incsync.policy import positive_count
from incsync.protocols import MappedStore
from incsync.records import RejectedRecord
from incsync.state import check_source_key

__all__ = ["RemapResult", "mapped_store", "mapped_transactions", "remap"]

logger = logging.getLogger("incsync")


@attrs.frozen
class RemapResult:
    """What a re-map did, from its first page to its last.

    Args:
        source_key: The source re-mapped.
        mapping: The name of the mapping its rows now come from.
        mapping_version: That mapping's version.
        pages: Pages re-mapped by this call (a resumed re-map counts only its own).
        examined: Stored records read (those already at the version are not read).
        written: Mapped rows written with the version's values.
        voided: Rows made void (deleted records, no longer transactions, unmappable ones).
        unmappable: The records the mapping could not read, with the reason; their rows are
            void, the reason beginning with :data:`~incsync.mapping.CANNOT_BE_MAPPED`.
    """

    source_key: str
    mapping: str
    mapping_version: str
    pages: int = 0
    examined: int = 0
    written: int = 0
    voided: int = 0
    unmappable: Sequence[RejectedRecord] = ()


def mapped_store(sink: object) -> MappedStore:
    """Return ``sink`` as a store of mapped transactions.

    Raises:
        ConfigurationError: It keeps none (a host's own sink).
    """
    if not isinstance(sink, MappedStore):
        raise ConfigurationError(
            f"{type(sink).__name__} keeps no mapped transactions; use a built-in store "
            "(SQLiteStore, PostgresStore, InMemoryStore) with mappings={...}"
        )
    return sink


def mapped_transactions(
    store: MappedStore,
    source_key: str,
    *,
    since: date | None = None,
    until: date | None = None,
    page_size: int = DEFAULT_MAPPED_PAGE,
    include_voided: bool = True,
) -> Iterator[MappedRow]:
    """Yield the source's mapped transactions with a business date in ``[since, until)``.

    Rows come by business date, then record id, read ``page_size`` at a time, each page its own
    short query after the last row of the one before; no transaction is held between pages.

    Args:
        store: The store keeping them.
        source_key: The source.
        since: The first business date included (``None``: from the first).
        until: The first business date no longer included (``None``: to the last).
        page_size: Rows per query.
        include_voided: Whether void rows come too.

    Raises:
        ConfigurationError: A bound is not a date, ``until`` is before ``since``, or
            ``page_size`` is not at least 1 (raised at the call, before any row is read).
    """
    check_source_key(source_key)
    checked_range(since, until)
    positive_count.check("page_size", page_size)
    return _pages(store, source_key, since, until, page_size, include_voided)


def _pages(
    store: MappedStore,
    source_key: str,
    since: date | None,
    until: date | None,
    page_size: int,
    include_voided: bool,
) -> Iterator[MappedRow]:
    after = None
    while True:
        rows = store.read_mapped(
            source_key,
            since=since,
            until=until,
            after=after,
            limit=page_size,
            include_voided=include_voided,
        )
        yield from rows
        if len(rows) < page_size:
            return
        after = rows[-1].position


def remap(
    store: MappedStore,
    source_key: str,
    *,
    page_size: int = DEFAULT_MAPPED_PAGE,
    on_page: Callable[[RemapPage], None] | None = None,
) -> RemapResult:
    """Recompute the source's mapped rows from its stored records with its current mapping.

    Rows already at the mapping's version are skipped; a re-map interrupted (a crash, an
    exception from ``on_page``) resumes after its last committed page when called again.

    Args:
        store: The store keeping the rows.
        source_key: The source.
        page_size: Records re-mapped per transaction.
        on_page: Called after each committed page (progress); an exception it raises ends the
            re-map there, with every page before it kept.

    Raises:
        ConfigurationError: The source has no mapping, or ``page_size`` is not at least 1.
        StoreError: A page could not be written; the pages before it stay.
    """
    check_source_key(source_key)
    positive_count.check("page_size", page_size)
    pages: list[RemapPage] = []
    while True:
        page = store.remap_page(source_key, page_size)
        if page.examined:
            pages.append(page)
            if on_page is not None:
                on_page(page)
        if page.finished:
            break
    result = RemapResult(
        source_key=source_key,
        mapping=page.mapping,
        mapping_version=page.mapping_version,
        pages=len(pages),
        examined=sum(each.examined for each in pages),
        written=sum(each.written for each in pages),
        voided=sum(each.voided for each in pages),
        unmappable=tuple(refused for each in pages for refused in each.unmappable),
    )
    logger.log(
        logging.WARNING if result.unmappable else logging.INFO,
        "source %s re-mapped with %s (version %s): %s written, %s made void, %s",
        source_key,
        result.mapping,
        result.mapping_version,
        plural(result.written, "row"),
        plural(result.voided, "row"),
        plural(len(result.unmappable), "record") + " cannot be mapped",
    )
    return result
