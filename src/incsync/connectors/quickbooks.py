"""A connector for QuickBooks Online's Accounting API: any entity, read by keyset over its query.

QuickBooks pages its ``query`` endpoint with ``STARTPOSITION``, an offset into the result as it is
*now*: a record updated between two pages leaves its place, every later row moves up by one, and
the row that moved into the gap is never read. So this connector never trusts an offset across
pages. Every page is asked again from the last time seen::

    SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime >= '<last time>'
    ORDERBY MetaData.LastUpdatedTime, Id STARTPOSITION 1 MAXRESULTS 1000

and the ids already read at exactly that second are dropped. Times have whole-second precision,
so more records than fit on a page may share one second; only then is ``STARTPOSITION`` used, and
only within that second (``MetaData.LastUpdatedTime = '<t>' ORDERBY Id``), where rows can only
leave (an update moves a record to a later second, read afterwards anyway). Each such page starts
one row early and must begin with the last id read; when it does not, rows left before it and the
second is read again from its start, the ids already read dropped.

Times come in the company's offset, which changes with daylight saving time; they are read as
aware UTC. Voided transactions are ordinary records (QuickBooks keeps them with a zero total), not
tombstones.

Deleted records leave ``query`` and show only in the ``cdc`` endpoint. With
``include_deletes=True`` an incremental read asks ``cdc`` for the changes since the window's start
and merges the ``status: "Deleted"`` entities into its pages, in time order, as tombstones. CDC
looks back at most 30 days: an older start reads the deletes of the last 30 days only (and says so
in a warning). A CDC answer of 1,000 objects may have been cut, and CDC has no upper bound to
narrow it by, so the connector looks for the earliest start whose answer is complete (halving the
span) and keeps every delete any answer showed; deletes that only a cut answer could show may be
missed, and a warning says between which times. A full read (no window start) reads no deletes:
records deleted before it are never seen by it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar, TypeGuard

import httpx

from incsync.connectors.auth import OAuth2Refresh, OAuthVendor
from incsync.connectors.base import RawPage
from incsync.connectors.http import HttpConnector, HttpOptions
from incsync.connectors.retry import Throttle
from incsync.connectors.throttle import quickbooks_throttle
from incsync.cursor import Window
from incsync.errors import BadResponseError, ConfigurationError
from incsync.records import RecordFormat, text_id
from incsync.timestamps import parse_timestamp

__all__ = [
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
_fromisoformat = datetime.fromisoformat

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
        if not 2 <= page_size <= _MAX_PAGE_SIZE:
            # Pages within one second overlap by a row, so a page must hold at least two.
            raise ConfigurationError(f"page_size must be 2 to {_MAX_PAGE_SIZE}, got {page_size}")
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

    def fetch(self, window: Window) -> Iterator[RawPage]:
        """Yield pages of every entity updated at or after ``window.start``, oldest first.

        With ``include_deletes`` and a window start, deleted entities come as well, merged in
        time order.
        """
        pages = self._live_pages(window)
        if not self.include_deletes or window.start is None:
            yield from pages
            return
        deletes = self._deletes_since(window.start.replace(microsecond=0))
        for page in pages:
            high = _last_time(page)
            due = [row for row in deletes if high is not None and _time_key(row) <= high]
            if due:
                del deletes[: len(due)]
                yield sorted([*page, *due], key=_time_key)
            else:
                yield page
        if deletes:
            yield deletes

    def _live_pages(self, window: Window) -> Iterator[RawPage]:
        since = None if window.start is None else window.start.replace(microsecond=0)
        read_at_since: set[str | None] = set()
        second_done = False
        while True:
            rows = self._query(self._keyset_condition(since, second_done), 1)
            fresh = _unread(rows, since, read_at_since)
            last = _last_time(rows)
            if len(rows) < self.page_size:
                if fresh:
                    yield fresh
                return
            if last is None:
                raise BadResponseError(
                    f"quickbooks: no {self.entity} on a full page has a readable "
                    f"MetaData.LastUpdatedTime, so the read cannot go on",
                    vendor=self.vendor,
                )
            if last == since and not second_done:
                # A whole page at one second: read that second alone, by offset within it.
                yield from self._read_one_second(last, read_at_since)
                second_done = True
                continue
            if fresh:
                yield fresh
            if last != since:
                since = last
                second_done = False
                read_at_since = _ids_at_end(rows, last)

    def _read_one_second(self, moment: datetime, read: set[str | None]) -> Iterator[RawPage]:
        condition = f"MetaData.LastUpdatedTime = '{_literal(moment)}'"
        position = 1
        previous_last: str | None = None
        while True:
            start = position if previous_last is None else position - 1
            rows = self._query(condition, start, order="Id")
            if previous_last is not None and (not rows or _id_of(rows[0]) != previous_last):
                # Rows before our place left the second (updated since): our offset is stale.
                # Read the second again from its start; the ids already read are dropped.
                position, previous_last = 1, None
                continue
            fresh = [row for row in rows if _id_of(row) not in read]
            read.update(_id_of(row) for row in fresh)
            if fresh:
                yield fresh
            if len(rows) < self.page_size:
                return
            position = start + len(rows)
            previous_last = _id_of(rows[-1])

    def _deletes_since(self, since: datetime) -> list[Mapping[str, Any]]:
        """Return the deleted entities CDC shows at or after ``since``, in time order."""
        now = self._clock().replace(microsecond=0)
        start = max(since, now - _CDC_LOOKBACK)
        if start > since:
            logger.warning(
                "quickbooks: deletes of %s before %s are past CDC's 30 days and are not read",
                self.entity,
                start.isoformat(),
            )
        found: dict[str | None, Mapping[str, Any]] = {}
        objects = self._changes_since(start)
        found.update((_id_of(row), row) for row in objects if self.is_deleted(row))
        if len(objects) >= _CDC_MAX_OBJECTS:
            # Cut, perhaps. Find the earliest start whose answer is whole, keeping every delete.
            low, high = start, now
            while high - low > timedelta(seconds=1):
                middle = (low + (high - low) / 2).replace(microsecond=0)
                objects = self._changes_since(middle)
                found.update((_id_of(row), row) for row in objects if self.is_deleted(row))
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
        deletes = [row for row in found.values() if _time_key(row) >= since]
        return sorted(deletes, key=lambda row: (_time_key(row), _id_of(row) or ""))

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

    def _keyset_condition(self, since: datetime | None, second_done: bool) -> str:
        if since is None:
            return ""
        operator = ">" if second_done else ">="
        return f"MetaData.LastUpdatedTime {operator} '{_literal(since)}'"

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


def _is_mapping(value: object) -> TypeGuard[Mapping[str, Any]]:
    # Decoded JSON objects are dicts; the exact-type test spares the slow ABC check per record.
    return type(value) is dict or isinstance(value, Mapping)


def _raw_updated(raw: Mapping[str, Any]) -> object:
    meta = raw.get("MetaData")
    return meta.get("LastUpdatedTime") if _is_mapping(meta) else None


def _updated_at(raw: object) -> datetime | None:
    """Return the entity's LastUpdatedTime as aware UTC, or ``None`` when it is unreadable."""
    if not _is_mapping(raw):
        return None
    try:
        return parse_timestamp(_raw_updated(raw), "MetaData.LastUpdatedTime")
    except (ValueError, ConfigurationError):
        return None


def _time_key(row: object) -> datetime:
    return _updated_at(row) or datetime.min.replace(tzinfo=_UTC)


def _last_time(rows: Sequence[Mapping[str, Any]]) -> datetime | None:
    for row in reversed(rows):
        moment = _updated_at(row)
        if moment is not None:
            return moment
    return None


def _ids_at_end(rows: Sequence[Mapping[str, Any]], moment: datetime) -> set[str | None]:
    """Return the ids of the trailing rows stamped ``moment``; rows come in time order.

    Scanning back from the end parses only that last second's rows, not the whole page again.
    """
    ids: set[str | None] = set()
    for row in reversed(rows):
        stamped = _updated_at(row)
        if stamped is None:
            continue  # an unreadable row says nothing about where the second starts
        if stamped != moment:
            break
        ids.add(_id_of(row))
    return ids


def _id_of(row: object) -> str | None:
    record_id = row.get("Id") if _is_mapping(row) else None
    return record_id if isinstance(record_id, str) else None


def _unread(
    rows: Sequence[Mapping[str, Any]], since: datetime | None, read: set[str | None]
) -> list[Mapping[str, Any]]:
    """Return ``rows`` without those already read at the second ``since``.

    Rows come in time order from ``since`` on, so rows stamped ``since`` lead the page: the scan
    stops at the first later row instead of reading the time of every row. (Were the order ever
    broken, a row of ``since`` after it would be passed on again: the same version, which the sink
    leaves as it is.)
    """
    if since is None or not read:
        return list(rows)
    later = next(
        (at for at, row in enumerate(rows) if _updated_at(row) not in (None, since)),
        len(rows),
    )
    lead = [row for row in rows[:later] if not _already_read(row, since, read)]
    return [*lead, *rows[later:]]


def _already_read(row: object, since: datetime | None, read: set[str | None]) -> bool:
    return since is not None and _id_of(row) in read and _updated_at(row) == since
