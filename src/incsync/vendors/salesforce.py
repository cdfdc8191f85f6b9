"""Salesforce: one SObject read through SOQL ``query``/``queryAll``, by the keyset driver.

The connector is the I/O shell of :func:`~incsync.connectors.keyset.read_by_keyset`; the driver
makes every paging decision. Its two plugs:

- **Query from T** (:class:`~incsync.connectors.keyset.FromTime`): ``SELECT Id, SystemModstamp,
  <fields> FROM <SObject> WHERE SystemModstamp >= T ORDER BY SystemModstamp, Id``. Salesforce
  answers from a snapshot taken when the query ran, over pages linked by ``nextRecordsUrl`` until
  ``done``; a snapshot does not shift as rows change, so every page is followed, each an answer
  page that is cut while ``done`` is false. The snapshot's query locator may expire mid-answer
  (``INVALID_QUERY_LOCATOR``): the answer then ends there, cut, and the driver asks again from the
  newest tick it read. Changes made while a snapshot pages carry a later ``SystemModstamp`` and
  come with a later query or the next cycle. Every page carries the snapshot's ``totalSize``, so
  the read's first query also says how many rows the read holds, for progress.
- **Read one tick whole** (:class:`~incsync.connectors.keyset.WholeTick`), when a cut answer
  never got past its first tick: ``WHERE SystemModstamp = t AND Id > '<last Id read>' ORDER BY Id
  LIMIT <batch size>``, paged by the last Id read, with no locator to expire. The Ids of each page
  must ascend past the last one, or the read stops (:class:`~incsync.errors.BadResponseError`)
  rather than page past a row it did not get.

The filter's resolution is 1 ms, the precision of SOQL dateTime literals (Salesforce keeps
system stamps to the second).

With ``include_deleted`` both plugs use ``queryAll``, and rows with ``IsDeleted: true`` become
tombstones. Salesforce keeps a deleted row in the recycle bin, where ``queryAll`` sees it, for 15
days (:data:`RECYCLE_BIN_RETENTION`, the connector's ``delete_retention``; an admin may empty it
sooner): a source not read for longer is re-read whole by the engine, which tombstones what that
read did not see. Without ``include_deleted`` no delete is read: only such a whole re-read finds
them. :meth:`SalesforceConnector.count_live` runs ``SELECT COUNT() FROM <SObject>`` through
``query`` (live rows only) and reads its ``totalSize``.

**Large reads go by Bulk API 2.0 query jobs.** When the read's first answer says it holds at
least ``bulk_threshold`` rows (:data:`BULK_THRESHOLD`), it is not paged but exported by query
jobs, one per span of ``SystemModstamp`` small enough to sort in memory (``bulk_window`` rows),
its CSV turned back into the rows the REST API gives, so the records and payloads are the same.
Why this keeps the engine's checkpoints and resume exact is :mod:`incsync.vendors._salesforce_bulk`;
the jobs' lifecycle is :mod:`incsync.vendors._salesforce_export`. Small reads, the incremental
ones, stay on ``query``: they cost no more request than before.

A drift between the counts is reconciled by id (``lists_ids``, see :mod:`incsync.reconcile`), in
code point order: :meth:`SalesforceConnector.list_ids` pages ``SELECT Id FROM <SObject> WHERE Id >
'<last>' ORDER BY Id LIMIT <batch size>`` through ``query`` (live rows only; Ids order as their
text compares, see :func:`_last_id`),
and :meth:`SalesforceConnector.fetch_by_ids` reads ``WHERE Id IN (...)`` through the same endpoint
and fields as the read, so a row in the recycle bin comes back as a tombstone.

Credentials are OAuth2 with a refresh token; the token answer's ``instance_url`` is
where the API is called (a rotated refresh token is saved by the ``keeper``, then reaches the
host's ``on_refresh``). A 403
``REQUEST_LIMIT_EXCEEDED`` for the daily allowance fails the cycle at once with ``retry_at``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

import httpx

from incsync.connectors._counts import announced_total, counted
from incsync.connectors.auth import TokenSet
from incsync.connectors.base import RawPage
from incsync.connectors.http import HttpConnector, HttpOptions
from incsync.connectors.keyset import Answer, FromTime, WholeTick, read_by_keyset
from incsync.connectors.retry import Throttle
from incsync.connectors.throttle import salesforce_throttle
from incsync.cursor import Window
from incsync.errors import BadResponseError, ConfigurationError, PermanentSourceError
from incsync.policy import whole_number_setting
from incsync.protocols import TokenKeeper
from incsync.records import Page, RecordFormat, text_id
from incsync.timestamps import parse_timestamp
from incsync.vendors._salesforce_auth import SalesforceOAuth, checked_instance_url
from incsync.vendors._salesforce_bulk import BULK_THRESHOLD, BULK_WINDOW, soql_time, wants_bulk
from incsync.vendors._salesforce_export import BulkExport

__all__ = [
    "BULK_THRESHOLD",
    "BULK_WINDOW",
    "DEFAULT_OPPORTUNITY_FIELDS",
    "RECYCLE_BIN_RETENTION",
    "SalesforceConnector",
]

logger = logging.getLogger("incsync")

DEFAULT_OPPORTUNITY_FIELDS = (
    "Name",
    "StageName",
    "Amount",
    "CloseDate",
    "IsClosed",
    "AccountId",
    "OwnerId",
    "LastModifiedDate",
)
"""The fields read from ``Opportunity`` when no field list is given."""

RECYCLE_BIN_RETENTION = timedelta(days=15)
"""How long a deleted row stays in the recycle bin, where ``queryAll`` can read it."""

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*")
_VERSION = re.compile(r"[0-9]{2}\.0")
# A record Id: 15 case-sensitive characters, or 18 with a case-safe suffix naming the same record.
_RECORD_ID = re.compile(r"[0-9A-Za-z]{15}(?:[0-9A-Za-z]{3})?")
_SYSTEM_FIELDS = ("Id", "SystemModstamp", "IsDeleted")
_RESOLUTION = timedelta(milliseconds=1)
# Bulk API 2.0 query jobs came with API version 47.0.
_BULK_SINCE = 47


def _last_id(rows: Sequence[Any], after: str | None) -> str | None:
    """Return the last record Id of a page read by Id, checking the Ids ascend past ``after``.

    Rows without a usable Id are left to the driver (to be set aside, or kept as records) and
    never serve as a position. Ids compare by their 15 case-sensitive characters, in ASCII
    order: Salesforce's base-62 order, as its PK chunking boundaries show
    (https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/async_api_headers_enable_pk_chunking.htm).

    Raises:
        BadResponseError: An Id does not come after the one before it: paging from the last Id
            could pass rows the page did not hold.
    """
    last = after
    for raw in rows:
        record_id = raw.get("Id") if isinstance(raw, Mapping) else None
        if not isinstance(record_id, str) or not _RECORD_ID.fullmatch(record_id):
            continue
        if last is not None and record_id[:15] <= last[:15]:
            raise BadResponseError(
                f"salesforce: record {record_id!r} came after {last!r} in an answer asked in Id "
                f"order; the read stops rather than page past rows it did not get",
                vendor="salesforce",
            )
        last = record_id
    return last


class SalesforceConnector(HttpConnector):
    """Reads one Salesforce SObject, oldest ``SystemModstamp`` first, through the REST API.

    Args:
        client_id: The connected app's consumer key.
        client_secret: The connected app's consumer secret.
        refresh_token: The refresh token the host stored.
        sobject: The SObject to read (``"Opportunity"``, ``"Merchandise__c"``…).
        fields: The fields to read besides ``Id`` and ``SystemModstamp``; required unless
            ``sobject`` is ``Opportunity`` (:data:`DEFAULT_OPPORTUNITY_FIELDS`).
        include_deleted: Read with ``queryAll`` so deleted rows (still in the recycle bin) come
            as tombstones; this is what makes ``delete_retention`` :data:`RECYCLE_BIN_RETENTION`
            (``None`` without it: no delete channel is read).
        login_url: Where the token endpoint lives (``https://test.salesforce.com`` for
            sandboxes, or the org's My Domain).
        instance_url: The org's API root, when known; otherwise it is taken from the token
            answer (which also overrides this value whenever it names one).
        access_token: A still-valid access token (needs ``instance_url``).
        on_refresh: Called with the new tokens after every refresh.
        keeper: Keeps the refresh token between processes, saved before a refreshed access token
            is used (see :class:`~incsync.connectors.auth.OAuth2Refresh`); its saved access
            tokens are not reused, as the instance URL they belong to is not kept.
        api_version: The REST API version, such as ``"59.0"``.
        batch_size: Records per page asked of Salesforce (200 to 2,000).
        bulk_threshold: Reads holding at least this many rows are exported by Bulk API 2.0
            query jobs (:data:`BULK_THRESHOLD`); ``None`` pages every read through ``query``.
        bulk_window: Rows one query job exports at most, held and sorted in memory
            (:data:`BULK_WINDOW`).
        options: Timeouts, retries, transport and the hooks tests inject
            (:class:`~incsync.connectors.http.HttpOptions`); the defaults otherwise. Its clock
            also times the access token's expiry.

    Raises:
        ConfigurationError: A name, version, batch size or bulk setting is invalid, or no field
            list was given.
    """

    vendor: ClassVar[str] = "salesforce"
    ordered = True
    id_field = "Id"
    updated_at_field = "SystemModstamp"
    quota_retry_after: ClassVar[timedelta] = timedelta(hours=1)
    lists_ids = True

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        *,
        sobject: str = "Opportunity",
        fields: Sequence[str] | None = None,
        include_deleted: bool = False,
        login_url: str = "https://login.salesforce.com",
        instance_url: str | None = None,
        access_token: str | None = None,
        on_refresh: Callable[[TokenSet], None] | None = None,
        keeper: TokenKeeper | None = None,
        api_version: str = "59.0",
        batch_size: int = 2_000,
        bulk_threshold: int | None = BULK_THRESHOLD,
        bulk_window: int = BULK_WINDOW,
        options: HttpOptions | None = None,
    ) -> None:
        if not _NAME.fullmatch(sobject):
            raise ConfigurationError(f"sobject {sobject!r} is not a Salesforce API name")
        if fields is None:
            if sobject.lower() != "opportunity":
                raise ConfigurationError(f"give the fields to read from {sobject}")
            fields = DEFAULT_OPPORTUNITY_FIELDS
        for field in fields:
            if not _NAME.fullmatch(str(field)):
                raise ConfigurationError(f"field {field!r} is not a Salesforce field name")
        if not _VERSION.fullmatch(api_version):
            raise ConfigurationError(f"api_version must look like '59.0', not {api_version!r}")
        whole_number_setting(200, 2_000).check("batch_size", batch_size)
        if bulk_threshold is not None:
            whole_number_setting(1).check("bulk_threshold", bulk_threshold)
            if int(api_version.split(".")[0]) < _BULK_SINCE:
                raise ConfigurationError(
                    f"bulk queries need api_version {_BULK_SINCE}.0 or later, not "
                    f"{api_version!r}; pass bulk_threshold=None to page every read"
                )
        whole_number_setting(1).check("bulk_window", bulk_window)
        if access_token is not None and instance_url is None:
            raise ConfigurationError("an access_token needs the instance_url it belongs to")
        instance = None if instance_url is None else checked_instance_url(instance_url)
        options = HttpOptions() if options is None else options
        self.sobject = sobject
        self.include_deleted = include_deleted
        self.delete_retention = RECYCLE_BIN_RETENTION if include_deleted else None
        system = {name.lower() for name in _SYSTEM_FIELDS}
        extra = [field for field in dict.fromkeys(fields) if field.lower() not in system]
        self.fields = ("Id", "SystemModstamp", *(["IsDeleted"] if include_deleted else []), *extra)
        self._select = f"SELECT {', '.join(self.fields)} FROM {sobject}"
        self.batch_size = batch_size
        self._api = f"/services/data/v{api_version}/{'queryAll' if include_deleted else 'query'}"
        self._count_api = f"/services/data/v{api_version}/query"
        self.bulk_threshold = bulk_threshold
        self._bulk = BulkExport(
            self,
            api=f"/services/data/v{api_version}",
            sobject=sobject,
            fields=self.fields,
            operation="queryAll" if include_deleted else "query",
            count=self._count,
            build=self.to_record,
            batch_size=batch_size,
            window=bulk_window,
            resolution=_RESOLUTION,
        )
        self._oauth = SalesforceOAuth(
            login_url,
            client_id,
            client_secret,
            refresh_token,
            instance_url=instance,
            access_token=access_token,
            on_refresh=on_refresh,
            keeper=keeper,
            clock=options.clock,
        )
        super().__init__(instance or login_url, auth=self._oauth, options=options)

    def __enter__(self) -> SalesforceConnector:
        return self

    @property
    def instance_url(self) -> str | None:
        """The org's API root, once given or learnt from a token answer."""
        return self._oauth.instance_url

    def throttle_signal(self, response: httpx.Response) -> Throttle | None:
        """Salesforce's 403 ``REQUEST_LIMIT_EXCEEDED``; see :func:`salesforce_throttle`."""
        return salesforce_throttle(response)

    def is_deleted(self, raw: Mapping[str, Any]) -> bool:
        """Return whether ``raw`` is in the recycle bin (only ``queryAll`` returns such rows)."""
        return raw.get("IsDeleted") is True

    record_format = RecordFormat("Id", "SystemModstamp", parse_timestamp, text_id)

    def soql(self, start: datetime | None) -> str:
        """Return the query for every record with ``SystemModstamp >= start`` (all if ``None``)."""
        where = "" if start is None else f" WHERE SystemModstamp >= {soql_time(start)}"
        return f"{self._select}{where} ORDER BY SystemModstamp, Id"

    def read(self, window: Window) -> Iterator[Page]:
        """Yield pages of the records with ``SystemModstamp >= window.start``, each version once.

        The first query's answer decides the way: a read of at least ``bulk_threshold`` rows is
        exported by query jobs, any other is paged on from that answer.

        Raises:
            BadResponseError: Salesforce did not answer in the order asked for.
            TransientSourceError: A bulk query job failed, was aborted or did not complete.
            SourceError: Salesforce could not be read (throttled, refused, failing).
        """
        first = self._ask(self.soql(window.start))
        total = announced_total(first.get("totalSize"))
        earliest = self._exportable(first, total)
        if total is not None and earliest is not None:
            del first  # the export holds no page of the query it replaces
            yield from self._bulk.read(
                window.start, total, earliest=earliest, now=self.source_time()
            )
            return
        yield from read_by_keyset(
            window.start,
            resolution=_RESOLUTION,
            query=self._query_from(first),
            read_tick=self._read_tick,
            build=self.to_record,
            vendor=self.vendor,
        )

    def _exportable(self, first: Mapping[str, Any], total: int | None) -> datetime | None:
        """Return the oldest row's time when the read is to be exported, else ``None``."""
        if not wants_bulk(total, self.bulk_threshold, more=not first["done"]):
            return None
        refusal = self._bulk.refusal()
        try:
            earliest: datetime | None = self.to_record(first["records"][0]).updated_at
        except Exception as error:  # noqa: BLE001 - a row that is no record is set aside later
            refusal = refusal or f"its first row is no record ({error})"
            earliest = None
        if refusal:
            logger.info("salesforce: %s is read through query: %s", self.sobject, refusal)
            return None
        return earliest

    def count_live(self) -> int | None:
        """Return the ``totalSize`` of ``SELECT COUNT() FROM <SObject>`` (live rows: ``query``).

        Raises:
            BadResponseError: The answer's ``totalSize`` is not a count.
            SourceError: Salesforce could not be asked.
        """
        body = self._get(self._count_api, params={"q": f"SELECT COUNT() FROM {self.sobject}"})
        return counted(body.get("totalSize"), vendor=self.vendor, where="the COUNT() totalSize")

    def list_ids(self) -> Iterator[list[str]]:
        """Yield the Ids of live rows in pages, ascending: each page one answer by Id.

        Each page asks ``SELECT Id FROM <SObject> WHERE Id > '<last>' ORDER BY Id LIMIT
        <batch size>`` through ``query`` (live rows only), so no query locator is held between
        pages; the list ends with an answer that is done and shorter than the limit.

        Raises:
            BadResponseError: An Id did not ascend past the one before, or a page held none.
            SourceError: Salesforce could not be read.
        """
        after: str | None = None
        while True:
            since = "" if after is None else f" WHERE Id > '{after}'"
            soql = f"SELECT Id FROM {self.sobject}{since} ORDER BY Id LIMIT {self.batch_size}"
            body = self._get(self._count_api, params={"q": soql})
            rows = body["records"]
            ids = [row.get("Id") if isinstance(row, Mapping) else None for row in rows]
            last = _last_id(rows, after)
            if any(not isinstance(i, str) or not _RECORD_ID.fullmatch(i) for i in ids):
                raise BadResponseError(
                    f"salesforce: a listing of {self.sobject} Ids held a row without a record Id",
                    vendor=self.vendor,
                )
            if ids:
                yield [str(i) for i in ids]
            if body["done"] and len(rows) < self.batch_size:
                return
            after = last

    def fetch_by_ids(self, ids: Sequence[str]) -> RawPage:
        """Return the rows with these Ids, through the read's endpoint and fields.

        With ``include_deleted`` a row in the recycle bin comes as a tombstone; an Id Salesforce
        no longer holds (or that is no Salesforce Id) is absent.

        Raises:
            SourceError: Salesforce could not be read.
        """
        wanted = [record_id for record_id in ids if _RECORD_ID.fullmatch(record_id)]
        if not wanted:
            return []
        listed = ", ".join(f"'{record_id}'" for record_id in wanted)
        body = self._ask(f"{self._select} WHERE Id IN ({listed})")
        rows: list[Any] = list(body["records"])
        while not body["done"]:
            body = self._next_page(body)
            rows.extend(body["records"])
        return rows

    def _query_from(self, first: dict[str, Any]) -> Callable[[FromTime], Iterator[Answer]]:
        """Return the read's query plug, answering its first step with the answer already had."""
        held = [first]

        def query(step: FromTime) -> Iterator[Answer]:
            return self._query(step, held.pop() if held else None)

        return query

    def _query(self, step: FromTime, body: dict[str, Any] | None = None) -> Iterator[Answer]:
        body = self._ask(self.soql(step.start)) if body is None else body
        while True:
            total = announced_total(body.get("totalSize"))
            yield Answer(body["records"], more=not body["done"], total=total)
            if body["done"]:
                return
            try:
                body = self._next_page(body)
            except PermanentSourceError as error:
                if "INVALID_QUERY_LOCATOR" not in (error.excerpt or ""):
                    raise
                # The snapshot is gone: the answer ends here, cut, and the driver asks again
                # from the newest tick it read.
                return

    def _read_tick(self, step: WholeTick) -> Iterator[Sequence[Any]]:
        # The tick is one millisecond, the grain of a SOQL literal, so "=" selects it exactly.
        where = f"WHERE SystemModstamp = {soql_time(step.start)}"
        after: str | None = None
        while True:
            since = "" if after is None else f" AND Id > '{after}'"
            body = self._ask(f"{self._select} {where}{since} ORDER BY Id LIMIT {self.batch_size}")
            rows = body["records"]
            last = _last_id(rows, after)
            yield rows
            # Salesforce may serve fewer rows than the LIMIT in a batch (done is then false):
            # the rest is asked by Id as well, not through a locator that could expire.
            if body["done"] and len(rows) < self.batch_size:
                return
            if last == after:
                raise BadResponseError(
                    f"salesforce: a page of {self.sobject} read by Id held no record Id to go "
                    f"on from, so the read stops instead of asking the same again",
                    vendor=self.vendor,
                )
            after = last

    def _count(self, soql: str) -> int:
        body = self._ask(soql)
        return counted(body.get("totalSize"), vendor=self.vendor, where="a COUNT() totalSize")

    def _ask(self, soql: str) -> dict[str, Any]:
        return self._get(self._api, params={"q": soql})

    def _next_page(self, body: Mapping[str, Any]) -> dict[str, Any]:
        link = body.get("nextRecordsUrl")
        if not isinstance(link, str) or not link.startswith("/services/data/"):
            raise BadResponseError(
                f"salesforce: a page with done=false has no usable nextRecordsUrl ({link!r:.80})",
                vendor=self.vendor,
            )
        # The link repeats the API path, so it is made absolute, not appended to base_url.
        origin = self.instance_url or str(self._client.base_url)
        return self._get(str(httpx.URL(origin).join(link)))

    def _get(self, url: str, *, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        headers = {
            "Accept": "application/json",
            "Sforce-Query-Options": f"batchSize={self.batch_size}",
        }
        response = self.request("GET", url, params=params, headers=headers)
        body = self.decode_json(response)
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("records"), list)
            or not isinstance(body.get("done"), bool)
        ):
            raise BadResponseError(
                "salesforce: a query answer lacks 'records' or 'done'; the API version or a "
                "proxy in between sent something else",
                vendor=self.vendor,
                status_code=response.status_code,
            )
        return body
