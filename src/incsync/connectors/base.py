"""The small base class custom connectors subclass."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any, ClassVar

from incsync.cursor import Window
from incsync.errors import BadRecordError
from incsync.records import Page, Record, RejectedRecord, record_from_raw

__all__ = ["BaseConnector", "RawPage"]

RawPage = Sequence[Mapping[str, Any]]
"""One page of records exactly as the source returned them."""


class BaseConnector(abc.ABC):
    """Turns a source's raw pages into :class:`~incsync.records.Page` objects.

    A subclass implements :meth:`fetch` (the source's own paging) and, where the source differs
    from the defaults, sets :attr:`id_field` / :attr:`updated_at_field` or overrides
    :meth:`is_deleted` or :meth:`to_record`. Malformed records never stop a read: they are set aside
    with the reason and the rest of the page goes on.

    Class attributes:
        ordered: Set to ``True`` when :meth:`fetch` returns records in ascending (updated_at, id)
            order across the whole read; the engine then checkpoints after every page.
        lookback: How far before the cursor each incremental read starts again.
        id_field: Key of the record id in a raw record.
        updated_at_field: Key of the last-update time in a raw record.
        vendor: A short name for the kind of source, used in errors and logs.
    """

    ordered: bool = False
    lookback: timedelta = timedelta(0)
    id_field: str = "id"
    updated_at_field: str = "updated_at"
    vendor: ClassVar[str] = "custom"

    @abc.abstractmethod
    def fetch(self, window: Window) -> Iterable[RawPage]:
        """Yield raw pages holding every record updated at or after ``window.start``.

        Raises:
            SourceError: The source could not be read.
        """

    def estimated_total(self, window: Window) -> int | None:
        """Return how many records :meth:`fetch` will yield, when the source can tell cheaply."""
        return None

    def is_deleted(self, raw: Mapping[str, Any]) -> bool:
        """Return whether ``raw`` is a deletion or void (it becomes a tombstone)."""
        return False

    def to_record(self, raw: Mapping[str, Any]) -> Record:
        """Build the record for ``raw``.

        Raises:
            BadRecordError: ``raw`` is malformed.
        """
        if type(raw) is not dict and not isinstance(raw, Mapping):
            raise BadRecordError(f"expected a JSON object, got {type(raw).__name__}")
        return record_from_raw(
            raw,
            id_field=self.id_field,
            updated_at_field=self.updated_at_field,
            deleted=self.is_deleted(raw),
        )

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
        to_record = self.to_record
        records: list[Record] = []
        rejected: list[RejectedRecord] = []
        for raw in raw_page:
            # One bad record must not stop the page; try costs nothing on 3.11+.
            try:
                records.append(to_record(raw))
            except BadRecordError as error:  # noqa: PERF203
                rejected.append(RejectedRecord.from_error(error, raw))
        return Page(records=records, rejected=rejected, total=total)

    def secrets(self) -> Sequence[str]:
        """Return credential values to mask in every message (none by default)."""
        return ()
