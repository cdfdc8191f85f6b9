"""The small base class custom connectors subclass."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, ClassVar

from incsync.cursor import Window
from incsync.reconcile import IdOrder
from incsync.records import Page, Record, RecordFormat, page_of

__all__ = ["BaseConnector", "RawPage"]

RawPage = Sequence[Mapping[str, Any]]
"""One page of records exactly as the source returned them."""


class BaseConnector:
    """Turns a source's raw pages into :class:`~incsync.records.Page` objects.

    A subclass implements :meth:`fetch` (the source's own paging, yielding raw rows) and, where the
    source differs from the defaults, sets :attr:`id_field` / :attr:`updated_at_field`, overrides
    :attr:`record_format` (another time parser or id rule) or :meth:`is_deleted`. Every row becomes
    a record through :meth:`to_record`, and a row that cannot (for any reason) is set aside with
    the reason while the rest of the page goes on. A connector that must see each row's record
    while it pages (the keyset connectors of :mod:`incsync.connectors.keyset`) overrides
    :meth:`read` instead of :meth:`fetch`.

    Class attributes:
        ordered: Set to ``True`` when :meth:`fetch` returns records in ascending updated_at
            order across the whole read; the engine then checkpoints after every page.
        lookback: How far before the cursor each incremental read starts again.
        id_field: Dotted path of the record id in a raw record.
        updated_at_field: Dotted path of the last-update time in a raw record.
        vendor: A short name for the kind of source, used in errors and logs.
        delete_retention: How long the source keeps a delete readable through its delete channel
            (``None``: for ever, or the source has no delete channel). When a source was not
            read for longer, the engine re-reads it whole and tombstones what the read did not
            see (see :func:`incsync.policy.deletes_expired`).
        lists_ids: Set to ``True`` when the subclass implements :meth:`list_ids` and
            :meth:`fetch_by_ids`: a persistent count drift is then reconciled by id instead of
            by a whole re-read (see :mod:`incsync.reconcile`).
        id_order: The order :meth:`list_ids` lists ids in: code point order by default,
            :attr:`IdOrder.NUMERIC <incsync.reconcile.IdOrder.NUMERIC>` for ids that are whole
            numbers the source lists by value.
        partitions: How many time partitions of a full read the source lets one account read
            at once (see :mod:`incsync.partitions`). 1, the default, reads a full read as one
            window, as before. Set it above 1 only when :meth:`read` honours
            :attr:`Window.end <incsync.cursor.Window.end>` and :attr:`Window.partition
            <incsync.cursor.Window.partition>`, the connector is :attr:`ordered`, and
            :meth:`time_span` answers; the engine reads partitions only then.
        concurrent_requests: The requests the vendor documents it lets one account have in
            flight at once (QuickBooks: 10 per company); ``None``, the default, where it
            documents none. The cycles of one account allowed to run at once share it, so each
            may read fewer partitions at once than :attr:`partitions` (see
            :func:`incsync.partitions.readers_per_cycle`).

    Raises:
        TypeError: On construction, when the class implements neither :meth:`fetch` nor
            :meth:`read`.
    """

    ordered: bool = False
    lookback: timedelta = timedelta(0)
    id_field: str = "id"
    updated_at_field: str = "updated_at"
    vendor: ClassVar[str] = "custom"
    delete_retention: timedelta | None = None
    lists_ids: bool = False
    id_order: IdOrder = IdOrder.CODE_POINT
    partitions: int = 1
    concurrent_requests: ClassVar[int | None] = None

    def __new__(cls, *_args: Any, **_kwargs: Any) -> BaseConnector:  # noqa: D102 - see the class
        if cls.fetch is BaseConnector.fetch and cls.read is BaseConnector.read:
            raise TypeError(
                f"{cls.__name__} must implement fetch(window) (raw pages) or read(window) "
                "(pages of records)"
            )
        return super().__new__(cls)

    def fetch(self, window: Window) -> Iterable[RawPage]:
        """Yield raw pages holding every record updated at or after ``window.start``.

        Raises:
            SourceError: The source could not be read.
        """
        raise NotImplementedError  # refused at construction; see __new__

    def count_live(self) -> int | None:
        """Return how many live records the source holds now, when it can tell in one request.

        Live means not deleted, counted in this connector's scope (its entity and filters);
        ``None`` when the source cannot tell cheaply. The engine compares it with the host's live
        transactions on a schedule; a drift is shown in the status and can start a re-read.

        Raises:
            SourceError: The source could not be asked.
        """
        return None

    def time_span(self) -> tuple[datetime, datetime] | None:
        """Return the oldest and newest ``updated_at`` at the source, when it can tell cheaply.

        The engine splits a full read into :attr:`partitions` between them; an estimate is
        enough (the first and last partitions are open, so it only affects their balance).
        ``None`` (the default): the full read is one window.

        Raises:
            SourceError: The source could not be asked.
        """
        return None

    def clock_skew(self) -> timedelta | None:
        """Return how far the source's clock runs ahead of the host's; ``None``: not known.

        :class:`~incsync.connectors.http.HttpConnector` measures it from its answers' ``Date``
        (see :mod:`incsync.clocks`); other connectors have no clock of the source to read.
        """
        return None

    def list_ids(self) -> Iterable[Sequence[str]]:
        """Yield the live record ids in pages, ascending in :attr:`id_order`.

        Only called when :attr:`lists_ids` is true; this default cannot list. A page is best
        asked for only when the one before has been taken (a generator), so a long list is never
        held whole and the engine can stop between pages.

        Raises:
            SourceError: The source could not be read.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot list its record ids")

    def fetch_by_ids(self, ids: Sequence[str]) -> RawPage:
        """Return the raw records with these ids the source still holds (any order).

        Only called when :attr:`lists_ids` is true; this default cannot fetch by id.

        Raises:
            SourceError: The source could not be read.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot fetch records by id")

    def fetch_ids(self, ids: Sequence[str]) -> Page:
        """Return the page of :meth:`fetch_by_ids`, built through :meth:`page_of` like any read."""
        return self.page_of(self.fetch_by_ids(ids))

    def estimated_total(self, window: Window) -> int | None:
        """Return how many records :meth:`fetch` will yield, when the source can tell cheaply."""
        return None

    @cached_property
    def record_format(self) -> RecordFormat:
        """Where rows keep their id and time, and how the time is read.

        By default :attr:`id_field` and :attr:`updated_at_field`, ids as text or integers and
        times in ISO 8601 with a zone. Override it to read another time encoding with one of
        :mod:`incsync.timestamps`' parsers, or to accept other ids.
        """
        return RecordFormat(self.id_field, self.updated_at_field)

    def is_deleted(self, raw: Mapping[str, Any]) -> bool:
        """Return whether ``raw`` is a deletion or void (it becomes a tombstone)."""
        return False

    def to_record(self, raw: Mapping[str, Any]) -> Record:
        """Build the record for ``raw`` through :attr:`record_format`.

        Raises:
            BadRecordError: ``raw`` is malformed.
        """
        return self.record_format.record(raw, self.is_deleted)

    def read(self, window: Window) -> Iterator[Page]:
        """Yield the pages of :meth:`fetch` as records, with malformed ones set aside."""
        total = self.estimated_total(window)
        for raw_page in self.fetch(window):
            page = self.page_of(raw_page, total)
            # Hold no page while fetch reads the next one: the consumer decides how long it lives.
            del raw_page
            yield page
            del page

    def page_of(self, raw_page: RawPage, total: int | None = None) -> Page:
        """Build the :class:`~incsync.records.Page` of one raw page, malformed records set aside.

        Args:
            raw_page: Records exactly as the source returned them.
            total: How many records the whole read is expected to hold, when known.
        """
        return page_of(raw_page, self.to_record, total)

    def secrets(self) -> Sequence[str]:
        """Return credential values to mask in every message (none by default)."""
        return ()
