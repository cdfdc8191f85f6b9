"""A source held in memory and the connector that reads it: for demos, tests and simulations.

:class:`InMemorySource` behaves like an API with an "updated since" filter and keyset paging:
records are raw JSON-like mappings with an ISO timestamp, reads see the source as it is at the
moment each page is fetched (so changes made while a cycle pages through it show up or not, as
they would at a real vendor), and a record may appear at any time with an old timestamp, as one
committed late does.
"""

from __future__ import annotations

import bisect
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from incsync.connectors.base import BaseConnector, RawPage
from incsync.cursor import Window, range_text
from incsync.errors import ResultCapError
from incsync.pipeline import wait_for_previous_page
from incsync.policy import (
    non_negative_duration,
    optional_positive_count,
    optional_positive_duration,
    positive_count,
)
from incsync.reconcile import IdOrder
from incsync.timestamps import ensure_utc, parse_timestamp

__all__ = ["InMemoryConnector", "InMemorySource", "iso_timestamp"]

Key = tuple[datetime, str]


def iso_timestamp(value: datetime) -> str:
    """Format an aware datetime the way most APIs do: UTC, milliseconds, ``Z``."""
    return ensure_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class InMemorySource:
    """A thread-safe collection of raw records, readable in (updated_at, id) order.

    Args:
        id_field: Key of the id in each raw record.
        updated_at_field: Key of the ISO last-update time in each raw record.
        deleted_field: Key of the deletion flag set by :meth:`delete`.
    """

    def __init__(
        self,
        *,
        id_field: str = "id",
        updated_at_field: str = "updated_at",
        deleted_field: str = "deleted",
    ) -> None:
        self.id_field = id_field
        self.updated_at_field = updated_at_field
        self.deleted_field = deleted_field
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, Any]] = {}
        self._keys: dict[str, Key] = {}
        self._order: list[Key] = []  # sorted; lets a page be found by bisection

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def put(self, raw: Mapping[str, Any]) -> None:
        """Create or replace a record (its timestamp may be in the past, like a late commit)."""
        record = dict(raw)
        record_id = str(record[self.id_field])
        key = (parse_timestamp(record[self.updated_at_field], self.updated_at_field), record_id)
        with self._lock:
            old = self._keys.get(record_id)
            if old is not None:
                del self._order[bisect.bisect_left(self._order, old)]
            bisect.insort(self._order, key)
            self._keys[record_id] = key
            self._records[record_id] = record

    def update(self, record_id: str, at: datetime, **changes: Any) -> None:
        """Change fields of an existing record and stamp it as updated ``at``."""
        with self._lock:
            record = dict(self._records[record_id])
        record.update(changes)
        record[self.updated_at_field] = iso_timestamp(at)
        self.put(record)

    def delete(self, record_id: str, at: datetime) -> None:
        """Mark a record deleted at ``at`` (sources report deletions as updates)."""
        self.update(record_id, at, **{self.deleted_field: True})

    def purge(self, record_id: str) -> None:
        """Forget a record without a trace, as a source forgets a delete past its retention.

        A source that publishes no deletes at all behaves so too; only a full re-read's sweep
        notices.
        """
        with self._lock:
            key = self._keys.pop(record_id)
            del self._order[bisect.bisect_left(self._order, key)]
            del self._records[record_id]

    def live_ids(
        self, after: str | None, limit: int, order: IdOrder = IdOrder.CODE_POINT
    ) -> list[str]:
        """Return up to ``limit`` ids of records not marked deleted after ``after``, ascending.

        Ids ascend by ``order``'s key (:meth:`~incsync.reconcile.IdOrder.sort_key`).
        """
        key = order.sort_key
        with self._lock:
            live = sorted(
                (
                    record_id
                    for record_id, record in self._records.items()
                    if not record.get(self.deleted_field, False)
                    and (after is None or key(record_id) > key(after))
                ),
                key=key,
            )
        return live[:limit]

    def by_ids(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        """Return copies of the records with these ids that the source holds."""
        with self._lock:
            return [dict(self._records[i]) for i in ids if i in self._records]

    def count_live(self) -> int:
        """Return how many records are not marked deleted: what the source itself would count."""
        with self._lock:
            return sum(
                not record.get(self.deleted_field, False) for record in self._records.values()
            )

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Return a copy of every record by id: the ground truth a sink must end up equal to."""
        with self._lock:
            return {record_id: dict(raw) for record_id, raw in self._records.items()}

    def ids(self) -> list[str]:
        """Return every record id."""
        with self._lock:
            return list(self._records)

    def page(
        self,
        start: datetime | None,
        after: Key | None,
        limit: int,
        end: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Return up to ``limit`` records from ``start`` until before ``end``, after ``after``."""
        with self._lock:
            position = 0
            if start is not None:
                position = bisect.bisect_left(self._order, (start, ""))
            if after is not None:
                position = max(position, bisect.bisect_right(self._order, after))
            stop = len(self._order) if end is None else bisect.bisect_left(self._order, (end, ""))
            keys = self._order[position : min(position + limit, max(stop, position))]
            return [dict(self._records[record_id]) for _, record_id in keys]

    def time_span(self) -> tuple[datetime, datetime] | None:
        """Return the oldest and the newest ``updated_at`` held; ``None`` when empty."""
        with self._lock:
            return (self._order[0][0], self._order[-1][0]) if self._order else None

    def matching(self, start: datetime | None, end: datetime | None = None) -> list[dict[str, Any]]:
        """Return every record with ``start <= updated_at < end`` (``None``: unbounded)."""
        with self._lock:
            position = 0 if start is None else bisect.bisect_left(self._order, (start, ""))
            stop = len(self._order) if end is None else bisect.bisect_left(self._order, (end, ""))
            return [dict(self._records[record_id]) for _, record_id in self._order[position:stop]]


class InMemoryConnector(BaseConnector):
    """Reads an :class:`InMemorySource` page by page.

    Ordered, it pages by keyset on (updated_at, id), fetching each page from the source as it is at
    that moment. Unordered, it takes the matching records at the start of the read, shuffles them
    (like an API with no useful sort), and pages through that list.

    Args:
        source: The source to read.
        page_size: Records per page.
        ordered: Whether to return records in (updated_at, id) order.
        lookback: How far before the cursor each incremental read starts.
        before_page: Called with the page number (from 0) before each page is fetched, and once
            more before the read ends; tests use it to change the source mid-read or to fail.
            Within a cycle it runs once the page before is durable (written, checkpointed,
            progress reported, stop and cancel checked), as in a read one page at a time, and
            the page is read from the source after it.
        page_delay: Seconds to sleep before each page, to stand in for network time: within a
            cycle it passes while the page before is written (see :mod:`incsync.pipeline`).
        secret: A credential value to declare in :meth:`secrets` (for redaction tests).
        seed: Seeds the shuffle of an unordered read.
        delete_retention: How long the simulated source keeps its deletes readable (see
            :attr:`BaseConnector.delete_retention`); ``None``: for ever.
        lists_ids: Let the connector list its live ids and fetch records by id, so a
            persistent count drift is reconciled by id (see :mod:`incsync.reconcile`).
        id_order: The order the ids are listed in (code point order by default).
        partitions: How many time partitions of a full read may be read at once (see
            :mod:`incsync.partitions`); 1 reads it as one window. An ordered read honours a
            window's ``end`` either way.
        result_cap: The most records one read of a window yields, counted from its start, as
            a source that pages one query by offset answers (HubSpot's search stops at 10,000);
            a read that holds more raises :class:`~incsync.errors.ResultCapError` after them.
            ``None``: no cap.

    Raises:
        ConfigurationError: ``page_size`` is not an integer of at least 1, ``lookback`` is not
            a ``timedelta`` of zero or more, or ``result_cap`` is neither ``None`` nor an
            integer of at least 1.
    """

    vendor = "memory"

    def __init__(
        self,
        source: InMemorySource,
        *,
        page_size: int = 100,
        ordered: bool = True,
        lookback: timedelta = timedelta(0),
        before_page: Callable[[int], None] | None = None,
        page_delay: float = 0.0,
        secret: str | None = None,
        seed: int = 0,
        delete_retention: timedelta | None = None,
        lists_ids: bool = False,
        id_order: IdOrder = IdOrder.CODE_POINT,
        partitions: int = 1,
        result_cap: int | None = None,
    ) -> None:
        positive_count.check("page_size", page_size)
        positive_count.check("partitions", partitions)
        optional_positive_count.check("result_cap", result_cap)
        self.partitions = partitions
        self.result_cap = result_cap
        non_negative_duration.check("lookback", lookback)
        optional_positive_duration.check("delete_retention", delete_retention)
        self.delete_retention = delete_retention
        self.lists_ids = lists_ids
        self.id_order = id_order
        self.source = source
        self.id_field = source.id_field
        self.updated_at_field = source.updated_at_field
        self.page_size = page_size
        self.ordered = ordered
        self.lookback = lookback
        self.before_page = before_page
        self.page_delay = page_delay
        self._secret = secret
        self._random = random.Random(seed)

    def is_deleted(self, raw: Mapping[str, Any]) -> bool:
        """Return whether the source marked ``raw`` deleted."""
        return bool(raw.get(self.source.deleted_field, False))

    def estimated_total(self, window: Window) -> int | None:
        """Return how many records match the window right now (a partition's: its own)."""
        return len(self.source.matching(window.start, window.end))

    def count_live(self) -> int | None:
        """Return how many records of the source are live now (not marked deleted)."""
        return self.source.count_live()

    def time_span(self) -> tuple[datetime, datetime] | None:
        """Return the oldest and the newest ``updated_at`` the source holds now."""
        return self.source.time_span()

    def list_ids(self) -> Iterator[list[str]]:
        """Yield the live ids in pages of ``page_size``, each asked of the source as it is then."""
        after: str | None = None
        while page := self.source.live_ids(after, self.page_size, self.id_order):
            yield page
            after = page[-1]

    def fetch_by_ids(self, ids: Sequence[str]) -> RawPage:
        """Return the records with these ids the source holds (deleted ones marked so)."""
        return self.source.by_ids(ids)

    def secrets(self) -> list[str]:
        """Return the declared credential, if any."""
        return [self._secret] if self._secret else []

    def _before(self, number: int) -> None:
        if self.page_delay:
            time.sleep(self.page_delay)
        # The network's time above overlaps the previous page's write; what the hook does and
        # what the source holds now are seen only once that page is durable.
        wait_for_previous_page()
        if self.before_page is not None:
            self.before_page(number)

    def fetch(self, window: Window) -> Iterator[RawPage]:
        """Yield the window's records page by page, up to the result cap if there is one.

        Raises:
            ResultCapError: The window holds more records than ``result_cap``; raised once
                that many were yielded.
        """
        pages = self._fetch_ordered(window) if self.ordered else self._fetch_unordered(window)
        return pages if self.result_cap is None else self._capped(pages, window, self.result_cap)

    def _capped(self, pages: Iterator[RawPage], window: Window, cap: int) -> Iterator[RawPage]:
        left = cap
        for page in pages:
            if len(page) > left:
                if left:
                    yield page[:left]
                raise ResultCapError(
                    f"memory: the source answers at most {cap:,} records to one query, and the "
                    f"read of {range_text(window.start, window.end)} holds more",
                    cap=cap,
                    vendor=self.vendor,
                )
            left -= len(page)
            yield page

    def _fetch_ordered(self, window: Window) -> Iterator[RawPage]:
        after: Key | None = None
        number = 0
        while True:
            self._before(number)
            page = self.source.page(window.start, after, self.page_size, window.end)
            if not page:
                return
            yield page
            number += 1
            last = page[-1]
            after = (
                parse_timestamp(last[self.source.updated_at_field]),
                str(last[self.source.id_field]),
            )

    def _fetch_unordered(self, window: Window) -> Iterator[RawPage]:
        matching = self.source.matching(window.start, window.end)
        self._random.shuffle(matching)
        pages = range(0, len(matching), self.page_size)
        for number, offset in enumerate(pages):
            self._before(number)
            yield matching[offset : offset + self.page_size]
        self._before(len(pages))
