"""The HubSpot CRM v3 connector: deals (or any object type) through the search API, by keyset.

HubSpot plugs into the one keyset driver (:func:`~incsync.connectors.keyset.read_by_keyset`),
which makes every paging decision; this module only sends the requests:

* **Query from a time** (:class:`~incsync.connectors.keyset.FromTime`): one search filtered
  ``modified GTE start`` (epoch milliseconds; no filter for a full read), sorted ascending by the
  modified property (``hs_lastmodifieddate``, ``lastmodifieddate`` for contacts), 200 objects,
  no ``after``. Its answer is cut when HubSpot announces a next page or the page is full; the
  driver then asks again from the newest millisecond read. ``after`` is never followed: it is an
  offset into the result as it is *now*, so an object changed between two pages would shift
  every later one and one would be skipped for good; and no offset ever nears the 400 HubSpot
  answers past result 10,000 of one search.
* **Time partitions of a full read** (:mod:`incsync.partitions`), with ``partitions`` above 1
  (:data:`HUBSPOT_PARTITIONS` is 1: one paced reader keeps up with the search limit): the same
  search, also filtered ``modified LT end``, that many read at once, planned
  between the oldest and newest modified times (:meth:`HubSpotConnector.time_span`, two
  searches of one object). The archived objects are read by the last partition, open above,
  which the engine reads to its end after every other.
* **Resolution**: one millisecond, the finest the modified property holds. Objects sharing one
  come in any order (a search has one sort rule and no tie-break).
* **Read one millisecond whole** (:class:`~incsync.connectors.keyset.WholeTick`, when more
  objects share a millisecond than one page holds): ``modified EQ T`` and ``hs_object_id GT`` the
  last id read, sorted by ``hs_object_id``, paging by the last id read (numeric order). An object
  changed meanwhile leaves that millisecond and is read later at its new time. The ids must
  ascend, as asked: paging by the last id would skip any object an answer out of id order held
  back, so such an answer stops the read with :class:`~incsync.errors.BadResponseError`.

The driver checks that every answer comes in the order asked for (an answer sorted otherwise, as
a proxy or an API change may send, fails the cycle loudly instead of losing rows), drops what a
re-query repeats, and sets aside, with its reason, every row that cannot be a record.

Search never shows archived (deleted) objects. With ``include_archived=True`` they are read after
the search, every cycle, from ``GET /crm/v3/objects/{type}?archived=true`` (they cannot be filtered
by time; cursor paging) and become tombstones stamped with ``archivedAt``. HubSpot keeps an archived
object restorable, and listed, for 90 days (:data:`ARCHIVED_RETENTION`, the connector's
:attr:`~HubSpotConnector.delete_retention`); after that it is gone from every endpoint, so a
source not read for longer is re-read whole by the engine, which tombstones what that read did not
see. Without ``include_archived`` no delete is read at all: only such a whole re-read finds them.

:meth:`HubSpotConnector.count_live` asks one search with no filter and ``limit`` 1 for its
``total``: the live objects of the type, as the search index sees them. Every search answer
carries the same ``total`` (how many objects match it), so a read's first search also says how
many objects the read holds, for progress, at no extra request.

A drift between the counts is reconciled by id (``lists_ids``, see :mod:`incsync.reconcile`), in
numeric order (object ids are whole numbers, and HubSpot sorts ``hs_object_id`` by value):

* :meth:`HubSpotConnector.list_ids` pages the same search the crowded millisecond uses, with no
  time filter: sorted by ``hs_object_id``, ``hs_object_id GT`` the last id listed, 200 ids a page,
  ``properties`` only ``hs_object_id``. Each page is a new search from offset 0, so the 10,000
  result cap of one search is never reached however many objects the type holds; every page is
  one search, within the search rate limit (throttles are waited out as for a read). Search lags
  writes by seconds: an object created just now may be missing from the listing (the next read
  brings it), and one archived just now may still be listed (its fetch by id then finds nothing).
* :meth:`HubSpotConnector.fetch_by_ids` reads ``POST /crm/v3/objects/{type}/batch/read`` (100
  ids a request, HubSpot's cap, the read's properties): the objects as they are now, not as
  search sees them. An id HubSpot no longer holds (archived, deleted for good) comes back in the
  answer's ``errors`` as ``OBJECT_NOT_FOUND`` (a 207): it is simply absent, so the engine
  tombstones it. A merged contact comes back under the id it was merged into: the old id is then
  absent too, and the new one written. Any other error in the answer fails the cycle.

The search index lags writes by seconds, so a record written just before a cycle may be missing
from it. The engine's safety lag keeps the cursor behind the cycle's start, and the connector's
default :attr:`HubSpotConnector.lookback` (one minute) re-reads the minute before the cursor, so
such a record is read by the next cycle.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

import httpx

from incsync.connectors._counts import announced_total, counted
from incsync.connectors.auth import Auth, OAuthVendor
from incsync.connectors.base import RawPage
from incsync.connectors.http import PACED_SHARE, HttpConnector, HttpOptions
from incsync.connectors.keyset import Answer, FromTime, WholeTick, read_by_keyset
from incsync.connectors.paging import cursor_pages
from incsync.connectors.retry import Throttle
from incsync.connectors.throttle import hubspot_throttle
from incsync.cursor import Window
from incsync.errors import BadResponseError, ConfigurationError
from incsync.policy import non_negative_duration, positive_count
from incsync.reconcile import IdOrder
from incsync.records import Page, Record, RecordFormat, digits_id
from incsync.timestamps import parse_timestamp, to_micros

__all__ = [
    "ARCHIVED_RETENTION",
    "BATCH_READ_SIZE",
    "HUBSPOT_API",
    "HUBSPOT_OAUTH",
    "HUBSPOT_PARTITIONS",
    "HUBSPOT_TOKEN_URL",
    "HubSpotConnector",
]

HUBSPOT_API = "https://api.hubapi.com"
"""HubSpot's API root."""

HUBSPOT_TOKEN_URL = f"{HUBSPOT_API}/oauth/v1/token"
"""HubSpot's OAuth token endpoint."""

HUBSPOT_OAUTH = OAuthVendor(HUBSPOT_TOKEN_URL, client_auth="body")
"""HubSpot's OAuth: the app as form fields; access tokens last 30 minutes."""

SEARCH_PAGE_SIZE = 200
"""The largest page HubSpot's search returns."""

SEARCH_RESOLUTION = timedelta(milliseconds=1)
"""The finest step of the modified property, which search filters on."""

HUBSPOT_PARTITIONS = 1
"""How many time partitions of a full read are read at once by default: one.

HubSpot's search endpoints allow 5 requests a second per account. One reader, one page ahead,
asks about 5 a second at 150 ms a request, and the connector paces its requests at 4.75 a second
(:attr:`HubSpotConnector.requests_per_second`): a second reader would only wait for the pace, and
spend two more searches planning (measured in docs/performance.md). Pass ``partitions=2`` where
the latency is long enough that one reader cannot keep the pace."""

ARCHIVED_PAGE_SIZE = 100
"""The largest page HubSpot's object list returns."""

ARCHIVED_RETENTION = timedelta(days=90)
"""How long HubSpot keeps an archived object (restorable, and listed with ``archived=true``)."""

BATCH_READ_SIZE = 100
"""The most ids one batch read takes."""

_ID_PROPERTY = "hs_object_id"


def _numeric_id(raw: object) -> int | None:
    """Return a row's id as the number search sorts it by, ``None`` when it has none."""
    try:
        return int(digits_id(raw.get("id") if isinstance(raw, Mapping) else None))
    except ValueError:
        return None


def _next_after(answer: object) -> str | None:
    """Return the ``paging.next.after`` an answer announces, ``None`` on the last page."""
    paging = answer.get("paging") if isinstance(answer, dict) else None
    following = paging.get("next") if isinstance(paging, dict) else None
    token = following.get("after") if isinstance(following, dict) else None
    return token if isinstance(token, str) and token else None


def _epoch_ms(moment: datetime) -> int:
    return to_micros(moment) // 1000


class HubSpotConnector(HttpConnector):
    """Reads one HubSpot CRM object type (deals by default) incrementally.

    Records: ``id`` is the object id, ``updated_at`` the modified property (``archivedAt`` for
    archived objects, which are tombstones), and the payload is the object as HubSpot sent it.

    Pages come in ascending ``updated_at`` order, so the engine checkpoints after every page
    (:attr:`ordered` is true). Archived objects come last and out of that order; that is safe:
    advancing the cursor never moves it back, the search before them was complete up to the
    cursor, and the archived list is read whole on every cycle, never from the cursor, so a cursor
    moved past an archived page's stamps hides nothing.

    Args:
        base_url: The API root (HubSpot's, or a test double's).
        auth: A private-app token (:class:`~incsync.connectors.auth.BearerToken`) or OAuth
            (``HUBSPOT_OAUTH.refresh(...)``, see :data:`HUBSPOT_OAUTH`).
        object_type: The CRM object type (``deals``, ``contacts``, ``companies``, a custom one).
        modified_property: The last-modified property; defaults to ``lastmodifieddate`` for
            contacts and ``hs_lastmodifieddate`` for every other type.
        properties: The properties to fetch; HubSpot's defaults for the type when omitted.
        include_archived: Also read archived objects, as tombstones, on every cycle; this is what
            makes :attr:`delete_retention` :data:`ARCHIVED_RETENTION` (``None`` without it: no
            delete channel is read).
        lookback: How far before the cursor each read starts again; covers the search index lag.
        headers: Headers sent with every request.
        partitions: How many time partitions of a full read are read at once (see
            :mod:`incsync.partitions`); :data:`HUBSPOT_PARTITIONS` by default. Each is bounded
            by ``modified LT end``; the last, open above, reads the archived objects.
        options: Timeouts, retries, transport and the hooks tests inject
            (:class:`~incsync.connectors.http.HttpOptions`); the defaults otherwise.

    Raises:
        ConfigurationError: ``object_type`` or ``modified_property`` is empty, or ``lookback`` is
            negative.
    """

    vendor: ClassVar[str] = "hubspot"
    # 5% under the 5 searches a second of an account, so that the partitions of a full read
    # together are paced under it rather than refused.
    requests_per_second: ClassVar[float | None] = PACED_SHARE * 5  # 4.75
    ordered = True
    lookback = timedelta(minutes=1)
    lists_ids = True
    id_order = IdOrder.NUMERIC

    def __init__(
        self,
        base_url: str = HUBSPOT_API,
        *,
        auth: Auth,
        object_type: str = "deals",
        modified_property: str | None = None,
        properties: Sequence[str] | None = None,
        include_archived: bool = False,
        lookback: timedelta | None = None,
        headers: Mapping[str, str] | None = None,
        partitions: int = HUBSPOT_PARTITIONS,
        options: HttpOptions | None = None,
    ) -> None:
        positive_count.check("partitions", partitions)
        self.partitions = partitions
        if not object_type.strip("/ "):
            raise ConfigurationError("object_type must name a HubSpot object type, like 'deals'")
        if modified_property is None:
            modified_property = (
                "lastmodifieddate" if object_type == "contacts" else "hs_lastmodifieddate"
            )
        if not modified_property:
            raise ConfigurationError("modified_property must not be empty")
        if lookback is not None:
            non_negative_duration.check("lookback", lookback)
            self.lookback = lookback
        super().__init__(
            base_url,
            auth=auth,
            headers=headers,
            options=options,
        )
        self.object_type = object_type.strip("/ ")
        self.modified_property = modified_property
        self.properties = None if properties is None else list(properties)
        self.include_archived = include_archived
        self.delete_retention = ARCHIVED_RETENTION if include_archived else None
        # Object ids are numbers written as text: reading a crowded millisecond pages by id.
        self.record_format = RecordFormat(
            "id", f"properties.{modified_property}", parse_timestamp, digits_id
        )
        self._archived_format = RecordFormat("id", "archivedAt", parse_timestamp, digits_id)

    def throttle_signal(self, response: httpx.Response) -> Throttle | None:
        """HubSpot's 429s: ``DAILY`` is a quota; ``TEN_SECONDLY_ROLLING``/``SECONDLY`` bursts."""
        return hubspot_throttle(response)

    # -- records -------------------------------------------------------------------------------

    def is_deleted(self, raw: Mapping[str, Any]) -> bool:
        """Return whether ``raw`` is an archived object."""
        return raw.get("archived") is True

    def to_record(self, raw: Mapping[str, Any]) -> Record:
        """Build the record: id ``id``, ``updated_at`` the modified property (or ``archivedAt``).

        Raises:
            BadRecordError: ``raw`` has no usable id or timestamp.
        """
        row: object = raw  # any JSON value reaches here; the format refuses non-objects
        archived = isinstance(row, Mapping) and self.is_deleted(row)
        record_format = self._archived_format if archived else self.record_format
        return record_format.record(raw, self.is_deleted)

    # -- reading -------------------------------------------------------------------------------

    def read(self, window: Window) -> Iterator[Page]:
        """Yield every object modified at or after ``window.start``, then archived ones if asked.

        Raises:
            BadResponseError: HubSpot did not answer in the order asked for.
            SourceError: HubSpot could not be read.
        """
        yield from read_by_keyset(
            window.start,
            resolution=SEARCH_RESOLUTION,
            query=lambda step: self._query(step, window.end),
            read_tick=self._read_tick,
            build=self.to_record,
            vendor=self.vendor,
        )
        # Archived objects cannot be filtered by time: a read open above reads them all after
        # its search, a full read's last partition too (read to its end after the others).
        if self.include_archived and window.end is None:
            for raw_page in cursor_pages(self._archived_page):
                yield self.page_of(raw_page)

    def count_live(self) -> int | None:
        """Return the search ``total`` of the object type: one search, no filter, ``limit`` 1.

        Raises:
            BadResponseError: The answer has no whole-number ``total``.
            SourceError: HubSpot could not be asked.
        """
        body = {"filterGroups": [], "properties": [_ID_PROPERTY], "limit": 1}
        answer = self.request_json("POST", f"/crm/v3/objects/{self.object_type}/search", json=body)
        total = answer.get("total") if isinstance(answer, dict) else None
        return counted(total, vendor=self.vendor, where="the search answer's total")

    def list_ids(self) -> Iterator[list[str]]:
        """Yield the ids of the type's live objects, 200 a page, ascending by value.

        Each page is a search sorted by ``hs_object_id``, after the last id listed.

        Raises:
            BadResponseError: An answer held a row without an object id, or ids out of order.
            SourceError: HubSpot could not be read.
        """
        last_id: int | None = None
        while True:
            filters = [] if last_id is None else [self._filter(_ID_PROPERTY, "GT", last_id)]
            results, more, _ = self._search(filters, _ID_PROPERTY, properties=[_ID_PROPERTY])
            if any(_numeric_id(raw) is None for raw in results):
                raise BadResponseError(
                    f"hubspot: a listing of {self.object_type} ids held a row without an object id",
                    vendor=self.vendor,
                )
            after = self._last_id(results, last_id, "the listing of ids")
            if results:
                yield [str(_numeric_id(raw)) for raw in results]
            if not more:
                return
            last_id = after

    def fetch_by_ids(self, ids: Sequence[str]) -> RawPage:
        """Return the live objects with these ids, read now through the batch read endpoint.

        Ids HubSpot no longer holds (``OBJECT_NOT_FOUND``) are absent.

        Raises:
            BadResponseError: The answer has no ``results`` list, or holds another error.
            SourceError: HubSpot could not be read.
        """
        rows: list[Any] = []
        wanted = list(dict.fromkeys(ids))
        for start in range(0, len(wanted), BATCH_READ_SIZE):
            body: dict[str, Any] = {
                "inputs": [
                    {"id": record_id} for record_id in wanted[start : start + BATCH_READ_SIZE]
                ],
                "properties": self.properties or [],
                "propertiesWithHistory": [],
            }
            answer = self.request_json(
                "POST", f"/crm/v3/objects/{self.object_type}/batch/read", json=body
            )
            rows.extend(self._results(answer, "batch read"))
            errors = answer.get("errors") if isinstance(answer, dict) else None
            for error in errors if isinstance(errors, list) else ():
                category = error.get("category") if isinstance(error, dict) else None
                if category != "OBJECT_NOT_FOUND":
                    raise BadResponseError(
                        f"hubspot: the batch read of {self.object_type} answered an error "
                        f"{category or error!r:.120}, so the records it held back are unknown",
                        vendor=self.vendor,
                    )
        return rows

    def time_span(self) -> tuple[datetime, datetime] | None:
        """Return the oldest and newest modified time of the object type (2 searches).

        ``None`` when search holds none.
        """
        ends = []
        for direction in ("ASCENDING", "DESCENDING"):
            body = {
                "filterGroups": [],
                "sorts": [{"propertyName": self.modified_property, "direction": direction}],
                "properties": [self.modified_property],
                "limit": 1,
            }
            answer = self.request_json(
                "POST", f"/crm/v3/objects/{self.object_type}/search", json=body
            )
            results = self._results(answer, "search")
            if not results:
                return None
            ends.append(self.to_record(results[0]).updated_at)
        return ends[0], ends[1]

    def _query(self, step: FromTime, end: datetime | None) -> Iterator[Answer]:
        """Send one search for the objects modified from ``step.start`` until ``end``."""
        filters = []
        if step.start is not None:
            filters.append(self._filter(self.modified_property, "GTE", _epoch_ms(step.start)))
        if end is not None:
            filters.append(self._filter(self.modified_property, "LT", _epoch_ms(end)))
        answer = self._search(filters, self.modified_property)
        yield Answer(*answer)

    def _read_tick(self, step: WholeTick) -> Iterator[list[Any]]:
        """Yield every object modified in the millisecond ``step.start``, by ascending id.

        Raises:
            BadResponseError: The ids did not ascend, or a cut page held none to go on from.
        """
        millisecond = self._filter(self.modified_property, "EQ", _epoch_ms(step.start))
        last_id: int | None = None
        while True:
            filters = [millisecond]
            if last_id is not None:
                filters.append(self._filter(_ID_PROPERTY, "GT", last_id))
            results, more, _ = self._search(filters, _ID_PROPERTY)
            after = self._last_id(
                results, last_id, f"the objects modified at {step.start.isoformat()}"
            )
            yield results
            if not more:
                return
            if after == last_id:
                raise BadResponseError(
                    f"hubspot: a cut page of the objects modified at {step.start.isoformat()} "
                    f"held no id after {last_id}, so the read stops instead of asking the same "
                    f"again",
                    vendor=self.vendor,
                )
            last_id = after

    def _last_id(self, results: list[Any], after: int | None, read: str) -> int | None:
        """Return the last numeric id of a page sorted by id, checking that the ids ascend."""
        last = after
        for raw in results:
            object_id = _numeric_id(raw)
            if object_id is None:
                continue  # no id to page by: the record path sets the row aside
            if last is not None and object_id <= last:
                raise BadResponseError(
                    f"hubspot: object {object_id} came after object {last} in a read of "
                    f"{read}, asked for in id order; paging by the last id would skip objects, "
                    "so the read stops",
                    vendor=self.vendor,
                )
            last = object_id
        return last

    @staticmethod
    def _filter(name: str, operator: str, value: int) -> dict[str, str]:
        return {"propertyName": name, "operator": operator, "value": str(value)}

    def _search(
        self,
        filters: list[dict[str, str]],
        sort: str,
        properties: Sequence[str] | None = None,
    ) -> tuple[list[Any], bool, int | None]:
        """Return one search page sorted ascending by ``sort``, whether it was cut, and its total.

        The total is the search's ``total``: how many objects match, on every page. The objects
        carry ``properties`` when given, else the read's.
        """
        body: dict[str, Any] = {
            "filterGroups": [{"filters": filters}] if filters else [],
            "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
            "limit": SEARCH_PAGE_SIZE,
        }
        properties = self.properties if properties is None else properties
        if properties is not None:
            body["properties"] = list(properties)
        answer = self.request_json("POST", f"/crm/v3/objects/{self.object_type}/search", json=body)
        results = self._results(answer, "search")
        announced = _next_after(answer) is not None
        total = announced_total(answer.get("total")) if isinstance(answer, dict) else None
        return results, announced or len(results) >= SEARCH_PAGE_SIZE, total

    def _archived_page(self, after: str | None) -> tuple[list[Any], str | None]:
        params: dict[str, Any] = {"archived": "true", "limit": ARCHIVED_PAGE_SIZE}
        if after is not None:
            params["after"] = after
        if self.properties is not None:
            params["properties"] = ",".join(self.properties)
        answer = self.get_json(f"/crm/v3/objects/{self.object_type}", params=params)
        results = self._results(answer, "archived list")
        return results, _next_after(answer)

    def _results(self, answer: object, what: str) -> list[Any]:
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list):
            raise BadResponseError(
                f"hubspot: the {what} answer has no 'results' list; the API changed or a proxy "
                f"answered instead",
                vendor=self.vendor,
            )
        return results
