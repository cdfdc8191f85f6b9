"""The HubSpot CRM v3 connector: deals (or any object type) through the search API, by keyset.

HubSpot's search has three hard edges, and this module is shaped by them:

* **Offsets shift.** ``after`` is an offset into the result set as it is *now*: when a record
  earlier in the set changes between two pages, every later one moves and one is skipped for good.
  So an offset is never trusted blindly: each page after the first is asked for from the offset of
  the last record read, and must start with that record. When it does not, the set moved, and the
  search is asked again from the last ``hs_lastmodifieddate`` read (``GTE``), dropping the ids
  already read at exactly that millisecond (keyset paging). While nothing moves, pages come from
  one query, which HubSpot (and the fake) evaluate once.
* **10,000 results per query.** Paging past result 10,000 is a 400. Before an offset would reach
  the cap the search is asked again from the last millisecond read, the same keyset step, so no
  request ever meets the cap and no time window needs to be split (the toolkit's
  :class:`~incsync.connectors.paging.WindowQueue` serves sources that cannot filter from a key).
* **One sort rule, no tie-break.** Records that share a millisecond come in an arbitrary order, so
  a millisecond holding more than a page cannot be paged by timestamp. When a full page holds one
  millisecond only, that millisecond is read by id instead (``modified EQ T`` and
  ``hs_object_id GT last id``, sorted by ``hs_object_id``, with the same checked offsets), then
  the search goes on strictly after ``T``. Any number of records sharing one millisecond is read
  once each, and the read always ends.

Search never shows archived (deleted) objects. With ``include_archived=True`` they are read after
the search, every cycle, from ``GET /crm/v3/objects/{type}?archived=true`` (they cannot be filtered
by time) and become tombstones stamped with ``archivedAt``.

The search index lags writes by seconds, so a record written just before a cycle may be missing
from it. The engine's safety lag keeps the cursor behind the cycle's start, and the connector's
default :attr:`HubSpotConnector.lookback` (one minute) re-reads the minute before the cursor, so
such a record is read by the next cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

import httpx

from incsync.connectors.auth import Auth, OAuthVendor
from incsync.connectors.base import RawPage
from incsync.connectors.http import HttpConnector, HttpOptions
from incsync.connectors.paging import cursor_pages
from incsync.connectors.retry import Throttle
from incsync.connectors.throttle import hubspot_throttle
from incsync.cursor import Window
from incsync.errors import BadResponseError, ConfigurationError
from incsync.records import Record, RecordFormat, digits_id
from incsync.timestamps import parse_timestamp, to_micros

__all__ = ["HUBSPOT_API", "HUBSPOT_OAUTH", "HUBSPOT_TOKEN_URL", "HubSpotConnector"]

HUBSPOT_API = "https://api.hubapi.com"
"""HubSpot's API root."""

HUBSPOT_TOKEN_URL = f"{HUBSPOT_API}/oauth/v1/token"
"""HubSpot's OAuth token endpoint."""

HUBSPOT_OAUTH = OAuthVendor(HUBSPOT_TOKEN_URL, client_auth="body")
"""HubSpot's OAuth: the app as form fields; access tokens last 30 minutes."""

SEARCH_PAGE_SIZE = 200
"""The largest page HubSpot's search returns."""

SEARCH_RESULT_CAP = 10_000
"""No search page may reach past this many results (a 400), however many match."""

ARCHIVED_PAGE_SIZE = 100
"""The largest page HubSpot's object list returns."""

_ID_PROPERTY = "hs_object_id"
_fromisoformat = datetime.fromisoformat


def _raw_id(raw: object) -> str | None:
    object_id = raw.get("id") if isinstance(raw, Mapping) else None
    return object_id if isinstance(object_id, str) else None


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
        include_archived: Also read archived objects, as tombstones, on every cycle.
        lookback: How far before the cursor each read starts again; covers the search index lag.
        headers: Headers sent with every request.
        options: Timeouts, retries, transport and the hooks tests inject
            (:class:`~incsync.connectors.http.HttpOptions`); the defaults otherwise.

    Raises:
        ConfigurationError: ``object_type`` or ``modified_property`` is empty, or ``lookback`` is
            negative.
    """

    vendor: ClassVar[str] = "hubspot"
    ordered = True
    lookback = timedelta(minutes=1)

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
        options: HttpOptions | None = None,
    ) -> None:
        if not object_type.strip("/ "):
            raise ConfigurationError("object_type must name a HubSpot object type, like 'deals'")
        if modified_property is None:
            modified_property = (
                "lastmodifieddate" if object_type == "contacts" else "hs_lastmodifieddate"
            )
        if not modified_property:
            raise ConfigurationError("modified_property must not be empty")
        if lookback is not None:
            if lookback < timedelta(0):
                raise ConfigurationError(f"lookback must not be negative, got {lookback}")
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

    def fetch(self, window: Window) -> Iterable[RawPage]:
        """Yield every object modified at or after ``window.start``, then archived ones if asked.

        Raises:
            SourceError: HubSpot could not be read.
        """
        yield from self._search_pages(None if window.start is None else _epoch_ms(window.start))
        if self.include_archived:
            yield from cursor_pages(self._archived_page)

    def _search_pages(self, start_ms: int | None) -> Iterator[RawPage]:
        """Page the search; after a shift or the cap, re-query from the last millisecond read."""
        position = start_ms  # the latest millisecond read (or the window's start)
        seen: set[str] = set()  # ids already read at exactly ``position``
        strictly_after = False  # true once ``position`` was read whole, by id
        set_aside: set[str] = set()  # malformed records already passed on, to reject once
        while True:
            filters = []
            if position is not None:
                operator = "GT" if strictly_after else "GTE"
                filters.append(self._filter(self.modified_property, operator, position))
            last_full, fresh_in_query = False, 0
            for results, full in self._query_pages(
                filters, self.modified_property, lambda raw: self._key(raw)[1]
            ):
                last_full = full
                fresh: list[Mapping[str, Any]] = []
                stamps: set[int] = set()
                for raw in results:
                    object_id, stamp = self._key(raw)
                    if object_id is None or stamp is None:
                        marker = repr(raw) if object_id is None else object_id
                        if marker not in set_aside:  # to_record sets it aside with the reason
                            set_aside.add(marker)
                            fresh.append(raw)
                        continue
                    stamps.add(stamp)
                    if position is not None and (
                        stamp < position or (stamp == position and object_id in seen)
                    ):
                        continue
                    fresh.append(raw)
                    if position is None or stamp > position:
                        position, seen, strictly_after = stamp, {object_id}, False
                    else:
                        seen.add(object_id)
                fresh_in_query += len(fresh)
                if fresh:
                    yield fresh
                if full and len(stamps) == 1 and position in stamps:
                    # A full page of one millisecond: more may share it than a query can reach,
                    # and the search has no tie-break to page them by. Read it by id.
                    assert position is not None  # it is in stamps
                    yield from self._one_millisecond_pages(position, frozenset(seen))
                    seen, strictly_after, fresh_in_query = set(), True, 1
                    break
            if not last_full:
                return
            if not fresh_in_query:
                raise BadResponseError(
                    f"hubspot: a full search from {position} brought no record not read "
                    f"before; the search stopped instead of looping",
                    vendor=self.vendor,
                )

    def _one_millisecond_pages(self, stamp: int, already: frozenset[str]) -> Iterator[RawPage]:
        """Read every object modified at exactly ``stamp``, by ascending id."""
        last_id: int | None = None
        while True:
            filters = [self._filter(self.modified_property, "EQ", stamp)]
            if last_id is not None:
                filters.append(self._filter(_ID_PROPERTY, "GT", last_id))
            before, last_full = last_id, False
            for results, full in self._query_pages(filters, _ID_PROPERTY, _raw_id):
                last_full = full
                fresh = []
                for raw in results:
                    object_id = self._key(raw)[0]
                    if object_id is not None:
                        last_id = (
                            int(object_id) if last_id is None else max(last_id, int(object_id))
                        )
                    if object_id not in already:
                        fresh.append(raw)
                if fresh:
                    yield fresh
            if not last_full:
                return
            if last_id == before:
                raise BadResponseError(
                    f"hubspot: paging the objects modified at {stamp} by id did not move past "
                    f"id {last_id}; the search stopped instead of looping",
                    vendor=self.vendor,
                )

    def _query_pages(
        self, filters: list[dict[str, str]], sort: str, group: Callable[[Any], object]
    ) -> Iterator[tuple[list[Any], bool]]:
        """Yield one query's pages, and whether each was full, while its offsets hold.

        Each page after the first is asked for from the offset of the first record of the
        previous page's last sort value (``group``), so it must start with exactly those records:
        when it does not, the result set moved under the offsets (a record before them changed,
        or ties were reordered) and the run stops, as it does before an offset past the 10,000
        cap. The caller then re-queries from the last key it read. Records that sort alike may
        come in any order, so checking only the last record would miss a reordered tie; checking
        the whole tie group does not. The repeated records are left out of the pages.
        """
        after, overlap = 0, frozenset[str]()
        while True:
            results = self._search(filters, sort, after)
            full = len(results) >= SEARCH_PAGE_SIZE
            if overlap:
                if {_raw_id(raw) for raw in results[: len(overlap)]} != overlap:
                    return
                results = results[len(overlap) :]
            yield results, full
            if not full or not results:
                return
            last = group(results[-1])
            tail = 0
            while tail < len(results) and group(results[-1 - tail]) == last:
                tail += 1
            ids = {_raw_id(raw) for raw in results[-tail:]}
            if None in ids or tail >= SEARCH_PAGE_SIZE - 1:
                return  # no stable point to check the next page against: re-query
            overlap = frozenset(object_id for object_id in ids if object_id is not None)
            after += SEARCH_PAGE_SIZE - len(overlap)
            if after + SEARCH_PAGE_SIZE > SEARCH_RESULT_CAP:
                return

    def _key(self, raw: object) -> tuple[str | None, int | None]:
        """Return a search result's numeric id and modified millisecond, ``None`` if unreadable."""
        if not isinstance(raw, Mapping):
            return None, None
        object_id = raw.get("id")
        if not isinstance(object_id, str) or not object_id.isdigit():
            return None, None
        properties = raw.get("properties")
        value = properties.get(self.modified_property) if isinstance(properties, Mapping) else None
        if not isinstance(value, str):
            return object_id, None
        try:
            return object_id, _epoch_ms(parse_timestamp(value, self.modified_property))
        except ValueError:
            return object_id, None

    @staticmethod
    def _filter(name: str, operator: str, value: int | str) -> dict[str, str]:
        return {"propertyName": name, "operator": operator, "value": str(value)}

    def _search(self, filters: list[dict[str, str]], sort: str, after: int) -> list[Any]:
        """Return one page of a search sorted ascending by ``sort``, from offset ``after``."""
        body: dict[str, Any] = {
            "filterGroups": [{"filters": filters}] if filters else [],
            "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
            "limit": SEARCH_PAGE_SIZE,
        }
        if after:
            body["after"] = str(after)
        if self.properties is not None:
            body["properties"] = self.properties
        answer = self.request_json("POST", f"/crm/v3/objects/{self.object_type}/search", json=body)
        return self._results(answer, "search")

    def _archived_page(self, after: str | None) -> tuple[list[Any], str | None]:
        params: dict[str, Any] = {"archived": "true", "limit": ARCHIVED_PAGE_SIZE}
        if after is not None:
            params["after"] = after
        if self.properties is not None:
            params["properties"] = ",".join(self.properties)
        answer = self.get_json(f"/crm/v3/objects/{self.object_type}", params=params)
        results = self._results(answer, "archived list")
        paging = answer.get("paging")
        following = paging.get("next") if isinstance(paging, dict) else None
        token = following.get("after") if isinstance(following, dict) else None
        return results, token if isinstance(token, str) else None

    def _results(self, answer: object, what: str) -> list[Any]:
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list):
            raise BadResponseError(
                f"hubspot: the {what} answer has no 'results' list; the API changed or a proxy "
                f"answered instead",
                vendor=self.vendor,
            )
        return results
