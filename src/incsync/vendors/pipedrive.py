"""The Pipedrive connector: deals through API v2's list, in update order, deleted ones included.

One query reads every deal changed at or after the window's start::

    GET /api/v2/deals?sort_by=update_time&sort_direction=asc&limit=500
        &status=open,won,lost,deleted&updated_since=2024-05-06T11:55:00Z

and its pages are followed by ``additional_data.next_cursor`` until it is null.

* **Deletes.** Without ``status``, Pipedrive lists every deal *but* the deleted ones; a deleted
  deal is only listed when ``deleted`` is asked for, and only for 30 days after its deletion. So
  the connector asks for all four statuses in one comma-separated list: deletions arrive in the
  same ``update_time`` order as every other change (deleting a deal stamps a new
  ``update_time``), and become tombstones (``is_deleted``). A deal deleted *and* forgotten
  between two cycles more than 30 days apart is never listed again: the connector's
  ``delete_retention`` (:data:`DELETED_RETENTION`) tells the engine, which then re-reads every
  deal and tombstones those the re-read did not see. Without ``include_deleted`` no delete is
  read, ``delete_retention`` is ``None``, and only such a whole re-read finds deletions.
* **Counting.** :meth:`PipedriveConnector.count_live` reads ``total_count`` from
  ``GET /api/v1/deals/summary`` (every deal not deleted): API v2 lists carry no total.
* **Reconcile by id.** A drift between the counts is reconciled by id (``lists_ids``, see
  :mod:`incsync.reconcile`), in numeric order (deal ids are positive integers, and v2 sorts
  ``id`` by value). :meth:`PipedriveConnector.list_ids` pages
  ``GET /api/v2/deals?sort_by=id&sort_direction=asc&limit=500`` with no ``status`` (every deal
  not deleted), followed by ``next_cursor``, a keyset position that no change shifts; the list
  carries whole deals (v2 cannot leave fields out), so it costs a page of deals per 500 ids.
  :meth:`PipedriveConnector.fetch_by_ids` asks ``GET /api/v2/deals?ids=<up to 100 ids>`` with the
  read's ``status`` list: with ``include_deleted`` a deal deleted in the last 30 days comes back
  as a tombstone; one Pipedrive no longer lists is absent, and the engine tombstones it.
* **Moving data.** The cursor is a keyset position, the last deal's ``(update_time, id)``, not an
  offset: a deal updated while the read pages moves behind it and is read again later in the same
  read; nothing that stays in the set is skipped. Pages therefore come in ascending
  ``update_time`` order, which the toolkit's keyset driver (:mod:`incsync.connectors.keyset`)
  checks on every page (a page that goes back in time fails the read, so the engine's cursor
  never passes an unread deal), and the engine checkpoints after each page.
* **Seconds.** ``update_time`` has whole-second precision and ``updated_since`` is inclusive and
  refuses fractions, so the window's start is rounded *down* to the second: the deals that share
  the cursor's second are read again, and the sink drops those it already holds.
* **Credentials.** An ``api_token`` goes in the ``x-api-token`` header by default. With
  ``token_in_query=True`` it goes in the ``api_token`` query parameter instead; the toolkit masks
  it in httpx's request log lines and in every message incsync writes. OAuth goes through
  :func:`pipedrive_oauth` (use the ``api_domain`` of the token answer as ``base_url``).
* **Throttling.** A 429 is a burst unless ``x-daily-requests-left`` is 0 (the daily token budget
  is used up); the wait is ``x-ratelimit-reset`` seconds. Under suspected abuse the CDN in front
  of Pipedrive answers with an HTML 403 page instead of JSON: that is a throttle too, retried
  with backoff, and reported as such when it persists, never as a JSON error.

Timestamps are read in both of Pipedrive's forms: v2's RFC 3339 (``2023-02-22T08:27:54Z``) and
v1's zone-less UTC (``2023-02-22 08:27:54``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

import httpx

from incsync.connectors._counts import counted, header_count
from incsync.connectors.auth import ApiKey, Auth, OAuthVendor
from incsync.connectors.base import RawPage
from incsync.connectors.http import HttpConnector, HttpOptions
from incsync.connectors.keyset import Answer, WholeTick, read_by_keyset
from incsync.connectors.paging import cursor_pages
from incsync.connectors.retry import Throttle, parse_retry_after
from incsync.connectors.throttle import default_throttle
from incsync.connectors.window import WindowLimit
from incsync.cursor import Window
from incsync.errors import BadResponseError, ConfigurationError
from incsync.pipeline import Ended, read_ahead_each
from incsync.policy import non_negative_duration, positive_count, whole_number_setting
from incsync.reconcile import IdOrder
from incsync.records import Page, RecordFormat, positive_integer_id
from incsync.timestamps import parse_timestamp

__all__ = [
    "BURST_WINDOW",
    "DELETED_RETENTION",
    "MAX_PAGE_SIZE",
    "PIPEDRIVE_API",
    "PIPEDRIVE_OAUTH",
    "PIPEDRIVE_PARTITIONS",
    "PIPEDRIVE_TOKEN_URL",
    "PipedriveConnector",
    "pipedrive_oauth",
    "pipedrive_throttle",
]

PIPEDRIVE_API = "https://api.pipedrive.com"
"""The API root for ``api_token`` requests (OAuth requests go to the company's ``api_domain``)."""

PIPEDRIVE_TOKEN_URL = "https://oauth.pipedrive.com/oauth/token"
"""Pipedrive's OAuth2 token endpoint."""

PIPEDRIVE_OAUTH = OAuthVendor(PIPEDRIVE_TOKEN_URL, client_auth="basic")
"""Pipedrive's OAuth2: the app in HTTP Basic; use the token answer's ``api_domain`` as the
connector's ``base_url``."""

MAX_PAGE_SIZE = 500
"""The largest ``limit`` Pipedrive accepts."""

PIPEDRIVE_PARTITIONS = 10
"""How many time partitions of a full read are read at once by default.

Pipedrive counts its burst limit per token (an ``api_token`` or an OAuth access token), not per
company: 80 requests per 2 seconds for an ``api_token`` on the Professional plan, four times that
for an OAuth token, fewer on smaller plans. Every answer states the token's limit and what its
window has left, and all the connector's readers together spend each window and then wait for the
next (:meth:`PipedriveConnector.window_of`). One reader of 500-deal pages asks about 5 a second at
150 ms a request, so ten could ask 50: more than an ``api_token``'s 40, so the limit, not the
readers, sets the speed up to about 250 ms a request.
The user's own actions in Pipedrive count against the same token while a full read goes on; 1
leaves the limit to them (see docs/performance.md)."""

BURST_WINDOW = timedelta(seconds=2)
"""The window Pipedrive counts a token's burst limit over (``x-ratelimit-limit`` requests)."""

DELETED_RETENTION = timedelta(days=30)
"""How long Pipedrive still lists a deleted deal (with ``status=deleted``)."""

_DEALS = "/api/v2/deals"
_IDS_PER_REQUEST = 100  # the most ids one ``ids`` filter takes
_DEALS_SUMMARY = "/api/v1/deals/summary"
_EVERY_STATUS = "open,won,lost,deleted"
_SECOND = timedelta(seconds=1)
_TOKEN_PARAM = "api_token"

logger = logging.getLogger("incsync.connectors")


pipedrive_oauth = PIPEDRIVE_OAUTH.refresh
"""Return the OAuth2 flow of one Pipedrive connection (:meth:`OAuthVendor.refresh
<incsync.connectors.auth.OAuthVendor.refresh>` of :data:`PIPEDRIVE_OAUTH`)."""


def pipedrive_throttle(response: httpx.Response) -> Throttle | None:
    """Pipedrive's throttles: 429s, and the CDN's HTML 403 page under suspected abuse.

    A 429 with ``x-daily-requests-left: 0`` is the daily token budget (a quota); any other 429
    is the two-second burst limit, to be waited out for ``x-ratelimit-reset`` seconds. A 403 whose
    body is HTML comes from the CDN, not from Pipedrive's API (which answers in JSON): it clears
    when the client slows down, so it is a burst without a stated wait.
    """
    status = response.status_code
    if status == 429:
        wait = response.headers.get("x-ratelimit-reset") or response.headers.get("retry-after")
        if response.headers.get("x-daily-requests-left", "").strip() == "0":
            return Throttle.from_header("Pipedrive daily request budget", None, quota=True)
        return Throttle.from_header("Pipedrive rate limit (HTTP 429)", wait)
    if status == 403 and _is_html(response):
        return Throttle.from_header(
            "Pipedrive's CDN refused the request with an HTML 403 page (abuse protection; "
            "lower the request rate)",
            response.headers.get("retry-after"),
        )
    return default_throttle(response)


def _is_html(response: httpx.Response) -> bool:
    if "html" in response.headers.get("content-type", "").lower():
        return True
    return response.content.lstrip()[:1] == b"<"


class PipedriveConnector(HttpConnector):
    """Reads a Pipedrive company's deals incrementally, deleted deals as tombstones.

    Records: ``id`` is the deal id (as text), ``updated_at`` its ``update_time``, the payload the
    deal as Pipedrive sent it; a deal with ``is_deleted`` (or status ``deleted``) is a tombstone.
    Pages come in ascending ``(update_time, id)`` order (:attr:`ordered`). See the module
    docstring for how deletes, moving data and whole seconds are handled.

    Args:
        base_url: The API root: :data:`PIPEDRIVE_API` for an ``api_token``, the company's
            ``api_domain`` for OAuth, a test double's URL in tests.
        api_token: The company's API token; give this or ``auth``.
        token_in_query: Send the ``api_token`` as a query parameter instead of the
            ``x-api-token`` header (for proxies that strip unknown headers).
        auth: Another credential flow, usually :func:`pipedrive_oauth`.
        page_size: Deals per page, 1 to 500.
        include_deleted: Also list deleted deals (as tombstones); this is what makes
            ``delete_retention`` :data:`DELETED_RETENTION`. Without them a deleted deal stays in
            the sink as it was last seen until a whole re-read sweeps it.
        lookback: How far before the cursor each read starts again.
        partitions: How many time partitions of a full read are read at once (see
            :mod:`incsync.partitions`), each bounded by ``updated_until``;
            :data:`PIPEDRIVE_PARTITIONS` by default, 1 reads a full read as one window.
        headers: Headers sent with every request.
        options: Timeouts, retries, transport and the hooks tests inject
            (:class:`~incsync.connectors.http.HttpOptions`); the defaults otherwise.

    Raises:
        ConfigurationError: Not exactly one of ``api_token`` and ``auth`` given, an empty token,
            ``token_in_query`` without a token, ``page_size`` out of range, or a negative
            ``lookback``.
    """

    vendor: ClassVar[str] = "pipedrive"
    ordered = True
    id_field = "id"
    updated_at_field = "update_time"
    lists_ids = True
    id_order = IdOrder.NUMERIC

    def __init__(
        self,
        base_url: str = PIPEDRIVE_API,
        *,
        api_token: str | None = None,
        token_in_query: bool = False,
        auth: Auth | None = None,
        page_size: int = MAX_PAGE_SIZE,
        include_deleted: bool = True,
        lookback: timedelta | None = None,
        partitions: int = PIPEDRIVE_PARTITIONS,
        headers: Mapping[str, str] | None = None,
        options: HttpOptions | None = None,
    ) -> None:
        positive_count.check("partitions", partitions)
        self.partitions = partitions
        if (api_token is None) == (auth is None):
            raise ConfigurationError("PipedriveConnector needs exactly one of api_token= or auth=")
        if api_token is not None and not api_token.strip():
            raise ConfigurationError("api_token must be a non-empty string")
        if token_in_query and api_token is None:
            raise ConfigurationError("token_in_query=True needs api_token=")
        whole_number_setting(1, MAX_PAGE_SIZE).check("page_size", page_size)
        if lookback is not None:
            non_negative_duration.check("lookback", lookback)
            self.lookback = lookback
        if api_token is not None:
            # In the query, the toolkit masks the token in httpx's request log lines and in
            # every message incsync writes; only the wire (and Pipedrive's logs) carry it.
            auth = (
                ApiKey(api_token, query_param=_TOKEN_PARAM)
                if token_in_query
                else ApiKey(api_token, header="x-api-token")
            )
        super().__init__(
            base_url,
            auth=auth,
            headers=headers,
            options=options,
        )
        self.page_size = page_size
        self.include_deleted = include_deleted
        self.delete_retention = DELETED_RETENTION if include_deleted else None

    def __repr__(self) -> str:
        return f"PipedriveConnector(base_url={str(self._client.base_url)!r})"

    def throttle_signal(self, response: httpx.Response) -> Throttle | None:
        """Pipedrive's 429s and the CDN's HTML 403 (see :func:`pipedrive_throttle`)."""
        return pipedrive_throttle(response)

    def window_of(self, headers: httpx.Headers) -> WindowLimit | None:
        """Return what ``x-ratelimit-limit``, ``-remaining`` and ``-reset`` say of the window.

        Pipedrive states on every answer the limit of the token in use per 2-second window
        (:data:`BURST_WINDOW`; it depends on the plan and on the kind of token), how many
        requests the window has left, and the seconds until it resets. ``None`` when any of the
        three is missing or unreadable.
        """
        limit = header_count(headers.get("x-ratelimit-limit"))
        remaining = header_count(headers.get("x-ratelimit-remaining"))
        # Read as a 429's wait is (Throttle.from_header): seconds, or a date that is no window.
        reset = parse_retry_after(headers.get("x-ratelimit-reset"))
        if not limit or remaining is None or not isinstance(reset, float):
            return None
        return WindowLimit(limit, remaining, timedelta(seconds=reset), BURST_WINDOW)

    # -- records -------------------------------------------------------------------------------

    def is_deleted(self, raw: Mapping[str, Any]) -> bool:
        """Return whether ``raw`` is a deleted deal (v2 ``is_deleted``, v1 ``deleted``)."""
        return (
            raw.get("is_deleted") is True
            or raw.get("deleted") is True
            or raw.get("status") == "deleted"
        )

    # Deal ids are positive integers; v2 writes update_time in RFC 3339, v1 as
    # "YYYY-MM-DD HH:MM:SS", documented as UTC.
    record_format = RecordFormat(
        "id",
        "update_time",
        functools.partial(parse_timestamp, assume_utc=True),
        positive_integer_id,
    )

    # -- reading -------------------------------------------------------------------------------

    def read(self, window: Window) -> Iterator[Page]:
        """Yield every deal updated at or after ``window.start``, page by page, in order.

        Raises:
            BadResponseError: A page is not Pipedrive's JSON envelope, repeats a cursor, or goes
                back in ``update_time``: the read stops so the cursor cannot pass a deal not
                read yet.
            SourceError: Pipedrive could not be read.
        """
        if self.include_deleted and window.start is not None and not window.partition:
            self._warn_past_retention(window.start)
        return read_by_keyset(
            window.start,
            resolution=_SECOND,
            query=lambda step: self._deals(step.start, window.end),
            read_tick=self._read_second,
            build=self.to_record,
            vendor=self.vendor,
        )

    def count_live(self) -> int | None:
        """Return ``data.total_count`` of the deals summary: every deal not deleted.

        Raises:
            BadResponseError: The summary holds no count.
            SourceError: Pipedrive could not be asked.
        """
        answer = self.get_json(_DEALS_SUMMARY)
        data = answer.get("data") if isinstance(answer, dict) else None
        total = data.get("total_count") if isinstance(data, dict) else None
        return counted(total, vendor=self.vendor, where="the deals summary's data.total_count")

    def list_ids(self) -> Iterator[list[str]]:
        """Yield the ids of every deal not deleted, a page at a time, ascending by value.

        Raises:
            BadResponseError: A page is not Pipedrive's envelope, or holds a deal without an id.
            SourceError: Pipedrive could not be read.
        """
        params = {"sort_by": "id", "sort_direction": "asc", "limit": MAX_PAGE_SIZE}
        for rows in self._pages(params):
            ids = [row.get("id") if isinstance(row, Mapping) else None for row in rows]
            if not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in ids):
                raise BadResponseError(
                    "pipedrive: a listing of deal ids held a deal without a positive integer id",
                    vendor=self.vendor,
                )
            if ids:
                yield [str(i) for i in ids]

    def fetch_by_ids(self, ids: Sequence[str]) -> RawPage:
        """Return the deals with these ids Pipedrive still lists, through the ``ids`` filter.

        With ``include_deleted``, deals deleted in the last 30 days come back (as tombstones).

        Raises:
            BadResponseError: An answer is not Pipedrive's envelope.
            SourceError: Pipedrive could not be read.
        """
        wanted = [i for i in dict.fromkeys(ids) if i.isascii() and i.isdigit()]
        rows: list[Any] = []
        for start in range(0, len(wanted), _IDS_PER_REQUEST):
            params: dict[str, Any] = {
                "ids": ",".join(wanted[start : start + _IDS_PER_REQUEST]),
                "limit": MAX_PAGE_SIZE,
            }
            if self.include_deleted:
                params["status"] = _EVERY_STATUS
            for found in self._pages(params):
                rows.extend(found)
        return rows

    def time_span(self) -> tuple[datetime, datetime] | None:
        """Return the oldest and newest ``update_time`` of the deals read (2 requests, at once).

        ``None`` when there is none.
        """
        with read_ahead_each(
            (direction, self._first_update(direction)) for direction in ("asc", "desc")
        ) as reads:
            ends = {key: found for key, found in reads if not isinstance(found, Ended)}
        if not (ends.get("asc") and ends.get("desc")):
            return None
        return ends["asc"][0], ends["desc"][0]

    def _first_update(self, direction: str) -> Iterator[list[datetime]]:
        """Yield the ``update_time`` of the first deal in ``direction``'s order (none: empty)."""
        params: dict[str, Any] = {"sort_by": "update_time", "sort_direction": direction, "limit": 1}
        if self.include_deleted:
            params["status"] = _EVERY_STATUS
        rows, _ = self._page(params)
        yield [self.to_record(row).updated_at for row in rows[:1]]

    def _read_second(self, step: WholeTick) -> Iterator[RawPage]:
        """Read one second whole: every deal from its start on (the driver keeps that second's).

        The driver asks for this only after a cut answer, and :meth:`_query` reads every answer
        whole, so it is there for completeness rather than use.
        """
        for answer in self._deals(step.start, None):
            yield answer.rows

    def _deals(self, start: datetime | None, end: datetime | None) -> Iterator[Answer]:
        """Ask for the deals updated from ``start`` until before ``end``, following the cursor.

        The cursor is a keyset position (the last deal's ``(update_time, id)``), which no change
        shifts, so an answer is read whole and never cut.
        """
        params: dict[str, Any] = {
            "sort_by": "update_time",
            "sort_direction": "asc",
            "limit": self.page_size,
        }
        if self.include_deleted:
            params["status"] = _EVERY_STATUS
        if start is not None:
            # Inclusive and whole seconds only (the driver asks from a second's start).
            params["updated_since"] = f"{start:%Y-%m-%dT%H:%M:%S}Z"
        if end is not None:
            # Exclusive; a partition's bound is a whole second.
            params["updated_until"] = f"{end:%Y-%m-%dT%H:%M:%S}Z"

        for rows in self._pages(params):
            yield Answer(rows, more=False)

    def _pages(self, params: Mapping[str, Any]) -> Iterator[Sequence[Any]]:
        """Yield the pages of one deal list query, following ``next_cursor`` to its end."""

        def page(cursor: str | None) -> tuple[list[Any], str | None]:
            return self._page(params if cursor is None else {**params, "cursor": cursor})

        return cursor_pages(page)

    def _warn_past_retention(self, start: datetime) -> None:
        now = self.source_time()  # Pipedrive keeps deleted deals by its own clock
        if now - start > DELETED_RETENTION:
            logger.warning(
                "pipedrive: reading changes since %s, more than %d days ago: deals deleted "
                "before %s are no longer listed and stay in the sink as last seen; reset "
                "the source to re-read every deal",
                start.isoformat(timespec="seconds"),
                DELETED_RETENTION.days,
                (now - DELETED_RETENTION).isoformat(timespec="seconds"),
            )

    def _page(self, params: Mapping[str, Any]) -> tuple[list[Any], str | None]:
        answer = self.get_json(_DEALS, params=params)
        data = answer.get("data") if isinstance(answer, dict) else None
        if (
            not isinstance(answer, dict)
            or answer.get("success") is not True
            or not (data is None or isinstance(data, list))
        ):
            raise BadResponseError(
                "pipedrive: the deal list answer is not {success: true, data: [...]}; the API "
                "changed or a proxy answered instead",
                vendor=self.vendor,
            )
        extra = answer.get("additional_data")
        cursor = extra.get("next_cursor") if isinstance(extra, dict) else None
        return data or [], cursor if isinstance(cursor, str) else None
