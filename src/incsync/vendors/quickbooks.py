"""A connector for QuickBooks Online's Accounting API: any entity, read by keyset over its query.

The live entities are read by the toolkit's keyset driver (:mod:`incsync.connectors.keyset`), to
which this module only says how to ask. QuickBooks pages its ``query`` endpoint with
``STARTPOSITION``, an offset into the result as it is *now*: a record updated between two pages
leaves its place and the row that moved into the gap would never be read. So no offset is followed
across pages; every page is a fresh query from the newest second read::

    SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime >= '<second>'
    ORDERBY MetaData.LastUpdatedTime, Id STARTPOSITION 1 MAXRESULTS 1000

Times have whole-second precision (the driver's resolution), so more records than fit on a page
may share one second. Only such a second is read by offset, alone
(``MetaData.LastUpdatedTime = '<t>' ORDERBY Id``), where rows can only leave (an update moves a
record to a later second, read afterwards anyway). Each page of it starts one row early and must
begin with the last id read; when it does not, rows left before it and the second is read again
from its start (the driver drops what was read).

Times come in the company's offset, which changes with daylight saving time; they are read as
aware UTC. Voided transactions are ordinary records (QuickBooks keeps them with a zero total), not
tombstones.

Deleted records leave ``query`` and show only in the ``cdc`` endpoint, a channel with its own
position: the ``"deletes"`` mark (:mod:`incsync.marks`), checkpointed with the page of tombstones
that read it, so a quiet entity whose cursor stays weeks behind does not hold its deletes back.
With ``include_deletes=True`` each read ends with that page: the ``status: "Deleted"`` entities
CDC shows since the mark, as tombstones. CDC looks back at most 30 days *by Intuit's clock*, so the
bound is taken from the ``Date`` of QuickBooks' own answers, never from the host's clock (minutes
off, it made every cycle fail). A mark older than 30 days reads the deletes of the last 30 days
only, and says so in a warning. A CDC answer of 1,000 objects may have been cut, and CDC has no
upper bound to narrow it by, so the connector looks for the earliest start whose answer is complete
(halving the span) and keeps every delete any answer showed; deletes that only a cut answer could
show may be missed, and a warning says between which times. A full read reads no deletes (records
deleted before it are not in it); it sets the mark to its own start, so the next read sees every
delete after it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

import attrs
import httpx

from incsync.connectors.auth import OAuth2Refresh, OAuthVendor
from incsync.connectors.base import RawPage
from incsync.connectors.http import HttpConnector, HttpOptions
from incsync.connectors.keyset import Answer, FromTime, WholeTick, read_by_keyset
from incsync.connectors.retry import Throttle
from incsync.connectors.throttle import quickbooks_throttle
from incsync.cursor import Window
from incsync.errors import BadResponseError, ConfigurationError
from incsync.policy import whole_number_setting
from incsync.records import Page, RecordFormat, text_id
from incsync.timestamps import parse_timestamp

__all__ = [
    "DELETES_MARK",
    "QUICKBOOKS_OAUTH",
    "QUICKBOOKS_PRODUCTION_URL",
    "QUICKBOOKS_SANDBOX_URL",
    "QUICKBOOKS_TOKEN_URL",
    "QuickBooksConnector",
    "quickbooks_auth",
]

QUICKBOOKS_PRODUCTION_URL = "https://quickbooks.api.intuit.com"
"""The API root of production companies."""

QUICKBOOKS_SANDBOX_URL = "https://sandbox-quickbooks.api.intuit.com"
"""The API root of sandbox companies."""

QUICKBOOKS_TOKEN_URL = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
"""Intuit's OAuth2 token endpoint."""

QUICKBOOKS_OAUTH = OAuthVendor(QUICKBOOKS_TOKEN_URL, client_auth="basic")
"""Intuit's OAuth2: the app in HTTP Basic; every refresh rotates the refresh token (store it)."""

_MAX_PAGE_SIZE = 1000
_CDC_MAX_OBJECTS = 1000
# CDC refuses a changedSince more than 30 days back; a margin keeps a slow request inside it.
_CDC_LOOKBACK = timedelta(days=30) - timedelta(minutes=5)
_UTC = timezone.utc
_SECOND = timedelta(seconds=1)
# Deletes are read again from a little before the last read's time: a delete QuickBooks had not
# made visible yet is not lost, and reading one twice changes nothing (the same tombstone).
_DELETES_OVERLAP = timedelta(minutes=5)

DELETES_MARK = "deletes"
"""The name of the mark that says how far CDC's deletes have been read."""

logger = logging.getLogger("incsync.connectors")


quickbooks_auth = QUICKBOOKS_OAUTH.refresh
"""Return the OAuth2 flow of one QuickBooks connection (:meth:`OAuthVendor.refresh
<incsync.connectors.auth.OAuthVendor.refresh>` of :data:`QUICKBOOKS_OAUTH`)."""


class QuickBooksConnector(HttpConnector):
    """Reads one QuickBooks Online entity (``Invoice``, ``Payment``…) of one company.

    Records are the entities as QuickBooks sends them: id ``Id``, updated_at
    ``MetaData.LastUpdatedTime`` (aware UTC), payload the raw entity. Pages come in ascending
    (updated_at, id) order, so the engine checkpoints after each. See the module docstring for
    how no record is skipped while records change during a read.

    Args:
        realm_id: The company id.
        entity: The entity name, as in ``SELECT * FROM <entity>``.
        auth: The credential flow, usually :func:`quickbooks_auth`.
        base_url: The API root (production by default; the fake's URL in tests).
        minor_version: The ``minorversion`` sent with every request.
        page_size: Records per page, 2 to 1,000 (QuickBooks' limit).
        include_deletes: Read deleted entities from the ``cdc`` endpoint on incremental reads
            and return them as tombstones.
        options: Timeouts, retries, transport and the hooks tests inject
            (:class:`~incsync.connectors.http.HttpOptions`); the defaults otherwise.

    Raises:
        ConfigurationError: ``realm_id`` or ``entity`` is not a plain name, or ``page_size`` is out
            of range.
    """

    vendor: ClassVar[str] = "quickbooks"
    ordered = True
    id_field = "Id"
    updated_at_field = "MetaData.LastUpdatedTime"

    def __init__(
        self,
        realm_id: str,
        entity: str,
        *,
        auth: OAuth2Refresh,
        base_url: str = QUICKBOOKS_PRODUCTION_URL,
        minor_version: int = 75,
        page_size: int = _MAX_PAGE_SIZE,
        include_deletes: bool = False,
        options: HttpOptions | None = None,
    ) -> None:
        if not realm_id.isalnum():
            raise ConfigurationError(f"realm_id must be the company's number, got {realm_id!r}")
        if not entity.isidentifier():
            raise ConfigurationError(
                f"entity must be an entity name like 'Invoice', got {entity!r}"
            )
        # Pages within one second overlap by a row, so a page must hold at least two.
        whole_number_setting(2, _MAX_PAGE_SIZE).check("page_size", page_size)
        super().__init__(
            base_url,
            auth=auth,
            options=options,
        )
        self.realm_id = realm_id
        self.entity = entity
        self.minor_version = minor_version
        self.page_size = page_size
        self.include_deletes = include_deletes

    def throttle_signal(self, response: httpx.Response) -> Throttle | None:
        """Return QuickBooks' throttle (a 429 with Fault 3001, JSON or XML), if any."""
        return quickbooks_throttle(response)

    def is_deleted(self, raw: Mapping[str, Any]) -> bool:
        """Return whether ``raw`` is a deleted entity from CDC (voided ones are not deletes)."""
        return raw.get("status") == "Deleted"

    record_format = RecordFormat("Id", "MetaData.LastUpdatedTime", parse_timestamp, text_id)

    def read(self, window: Window) -> Iterator[Page]:
        """Yield pages of every entity updated at or after ``window.start``, oldest first.

        With ``include_deletes``, a last page holds the entities deleted since the ``"deletes"``
        mark, as tombstones, and moves that mark.

        Raises:
            SourceError: QuickBooks could not be read, or answered out of the order asked for.
        """
        began: list[datetime] = []  # QuickBooks' time when its first answer came

        def query(step: FromTime) -> Iterator[Answer]:
            condition = (
                ""
                if step.start is None
                else f"MetaData.LastUpdatedTime >= '{_literal(step.start)}'"
            )
            rows = self._query(condition, 1)
            if not began:
                began.append(self.source_time())
            yield Answer(rows, more=len(rows) >= self.page_size)

        yield from read_by_keyset(
            window.start,
            resolution=_SECOND,
            query=query,
            read_tick=self._read_second,
            build=self.to_record,
            vendor=self.vendor,
        )
        if self.include_deletes:
            yield self._deletes_page(window, began[0] if began else self.source_time())

    def _read_second(self, tick: WholeTick) -> Iterator[RawPage]:
        """Yield every entity stamped within one second, by offset checked against moves."""
        condition = f"MetaData.LastUpdatedTime = '{_literal(tick.start)}'"
        position = 1
        previous_last: str | None = None
        while True:
            start = position if previous_last is None else position - 1
            rows = self._query(condition, start, order="Id")
            if previous_last is not None and (not rows or _id_of(rows[0]) != previous_last):
                # Rows before our place left the second (updated since): our offset is stale.
                # Read the second again from its start; the driver drops what was read.
                position, previous_last = 1, None
                continue
            yield rows
            if len(rows) < self.page_size:
                return
            position = start + len(rows)
            previous_last = _id_of(rows[-1])

    def _deletes_page(self, window: Window, began: datetime) -> Page:
        """Return the page of entities deleted since the ``"deletes"`` mark, moving the mark."""
        if window.start is None:
            # A full read holds no deleted entity; deletes from its start on come next time.
            return Page(marks={DELETES_MARK: began - _DELETES_OVERLAP})
        since = window.marks.get(DELETES_MARK, window.start).replace(microsecond=0)
        now = self.source_time().replace(microsecond=0)
        start = max(since, now - _CDC_LOOKBACK)
        if start > since:
            logger.warning(
                "quickbooks: deletes of %s between %s and %s are past CDC's 30 days and are not "
                "read; reset the source to re-read every %s",
                self.entity,
                since.isoformat(),
                start.isoformat(),
                self.entity,
            )
        rows = self._deletes_since(start, now)
        page = self.page_of(rows)
        return attrs.evolve(page, marks={DELETES_MARK: now - _DELETES_OVERLAP})

    def _deletes_since(self, start: datetime, now: datetime) -> list[Mapping[str, Any]]:
        """Return the deleted entities CDC shows at or after ``start``; ``now`` by its clock."""
        found: dict[str | None, Mapping[str, Any]] = {}
        objects = self._changes_since(start)
        found.update((_id_of(row), row) for row in objects if self._deleted_row(row))
        if len(objects) >= _CDC_MAX_OBJECTS:
            # Cut, perhaps. Find the earliest start whose answer is whole, keeping every delete.
            low, high = start, now
            while high - low > timedelta(seconds=1):
                middle = (low + (high - low) / 2).replace(microsecond=0)
                objects = self._changes_since(middle)
                found.update((_id_of(row), row) for row in objects if self._deleted_row(row))
                if len(objects) >= _CDC_MAX_OBJECTS:
                    low = middle
                else:
                    high = middle
            logger.warning(
                "quickbooks: more than %d %s changes since %s; deletes between then and %s may "
                "be missing (run cycles more often)",
                _CDC_MAX_OBJECTS,
                self.entity,
                start.isoformat(),
                high.isoformat(),
            )
        return list(found.values())

    def _deleted_row(self, row: object) -> bool:
        # Unreadable rows are kept too: the record path sets them aside with the reason.
        return not isinstance(row, Mapping) or self.is_deleted(row)

    def _changes_since(self, start: datetime) -> list[Mapping[str, Any]]:
        body = self.get_json(
            f"/v3/company/{self.realm_id}/cdc",
            params={
                "entities": self.entity,
                "changedSince": _literal(start),
                "minorversion": str(self.minor_version),
            },
        )
        responses = body.get("CDCResponse") if isinstance(body, dict) else None
        if not isinstance(responses, list):
            raise BadResponseError(
                "quickbooks: the cdc answer has no CDCResponse list", vendor=self.vendor
            )
        objects: list[Mapping[str, Any]] = []
        for response in responses:
            parts = response.get("QueryResponse") if isinstance(response, dict) else None
            for part in parts if isinstance(parts, list) else []:
                objects.extend(self._entities_of({"QueryResponse": part}))
        return objects

    def _query(
        self, condition: str, start: int, *, order: str = "MetaData.LastUpdatedTime, Id"
    ) -> list[Mapping[str, Any]]:
        where = f" WHERE {condition}" if condition else ""
        statement = (
            f"SELECT * FROM {self.entity}{where} ORDERBY {order} "
            f"STARTPOSITION {start} MAXRESULTS {self.page_size}"
        )
        body = self.get_json(
            f"/v3/company/{self.realm_id}/query",
            params={"query": statement, "minorversion": str(self.minor_version)},
        )
        return self._entities_of(body)

    def _entities_of(self, body: Any) -> list[Mapping[str, Any]]:
        response = body.get("QueryResponse") if isinstance(body, dict) else None
        if not isinstance(response, dict):
            raise BadResponseError(
                f"quickbooks: the query answer has no QueryResponse object for {self.entity}",
                vendor=self.vendor,
            )
        wanted = self.entity.lower()
        for key, value in response.items():
            if key.lower() == wanted:
                if not isinstance(value, list):
                    raise BadResponseError(
                        f"quickbooks: QueryResponse.{key} is not a list", vendor=self.vendor
                    )
                return value
        return []


def _literal(moment: datetime) -> str:
    return moment.astimezone(_UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _id_of(row: object) -> str | None:
    record_id = row.get("Id") if isinstance(row, Mapping) else None
    return record_id if isinstance(record_id, str) else None
