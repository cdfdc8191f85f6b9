"""A connector for Xero's Accounting API: invoices (or another paged list), read by keyset.

Xero plugs into the keyset driver (:mod:`incsync.connectors.keyset`) as follows.

- **Filter and resolution.** Lists are filtered with the ``If-Modified-Since`` header, at
  whole-second precision and read here as "at or after", while ``UpdatedDateUTC`` carries
  milliseconds. The driver's tick is one second: it floors times to their second and tells rows
  apart by id and exact millisecond.
- **A query** (:class:`~incsync.connectors.keyset.FromTime`) is page 1 of the list in
  ``order=UpdatedDateUTC ASC`` with ``If-Modified-Since`` at the query's second (no header to
  read everything). Pages hold 100 rows, and ``page=N`` is an offset into the result as it is
  *now*: an invoice updated between two pages leaves its place, every later row moves up one,
  and the row that moved into the gap would never be read. So only page 1 is asked for; a full
  page is a cut answer, and the driver asks again from the newest second read.
- **A tick read** (:class:`~incsync.connectors.keyset.WholeTick`): when more rows share one
  second than a page holds (a bulk import), the header cannot say "after this invoice", so that
  second is paged with ``page=N`` under its own ``If-Modified-Since`` until a page is short or
  reaches a later second (those later rows come too; the driver leaves them to the next query).
  Whether the rows stayed put is checked afterwards: a row of that second that changed while it
  was paged now carries an ``UpdatedDateUTC`` at or after the moment the pass began (the
  ``DateTimeUTC`` of its first answer; Xero stamps changes with that clock), so paging through
  everything changed since then shows every such row. When one moved, the second is paged again
  (the driver drops the rows already read); after a few restless passes the cycle fails
  (transient) rather than risk a gap.
- **A server that ignores the request**: one that ignored ``If-Modified-Since`` or the order
  answers rows older than asked for, and the driver stops the read with
  :class:`~incsync.errors.BadResponseError`; one that ignored ``page`` would make a tick read
  loop, and it stops with the same error instead.

Deleted, voided and archived documents come back as ordinary rows with their status (``Status``
``DELETED``, ``VOIDED`` or ``ARCHIVED``, or ``ContactStatus`` ``ARCHIVED`` or ``GDPRREQUEST`` for
contacts, which Xero never deletes); they become tombstones. Archived rows are listed only when
asked with ``includeArchived=true``, which every read sends: without it an archived contact
would vanish from the list and its archiving would never be seen. Xero keeps all of them listed,
so :attr:`XeroConnector.delete_retention` is ``None``. :meth:`XeroConnector.count_live` asks for
one row with a ``where`` filter leaving the tombstone statuses out and reads the answer's
``pagination.itemCount`` (``None`` when Xero sends no pagination for that list).

Xero's per-tenant limits answer 429 with ``X-Rate-Limit-Problem``: ``minute`` is waited out
(``Retry-After``), ``day`` fails the cycle at once and records when to try again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from itertools import count
from typing import Any, ClassVar

import httpx

from incsync.connectors._counts import counted
from incsync.connectors.auth import Auth, OAuthVendor
from incsync.connectors.http import HttpConnector, HttpOptions
from incsync.connectors.keyset import Answer, FromTime, WholeTick, read_by_keyset
from incsync.connectors.retry import Throttle
from incsync.connectors.throttle import xero_throttle
from incsync.cursor import Window
from incsync.errors import BadResponseError, ConfigurationError, TransientSourceError
from incsync.records import Page, Record, RecordFormat, outcome_of, text_id
from incsync.timestamps import parse_dotnet_date

__all__ = [
    "XERO_API",
    "XERO_ID_FIELDS",
    "XERO_OAUTH",
    "XERO_PAGE_SIZE",
    "XERO_STATUS_FIELDS",
    "XERO_TOKEN_URL",
    "XeroConnector",
    "xero_auth",
]

XERO_API = "https://api.xero.com/api.xro/2.0"
"""The Accounting API's root."""

XERO_TOKEN_URL = "https://identity.xero.com/connect/token"
"""Xero's OAuth2 token endpoint."""

XERO_OAUTH = OAuthVendor(XERO_TOKEN_URL, client_auth="basic")
"""Xero's OAuth2: the app in HTTP Basic; access tokens last 30 minutes and every refresh rotates
the refresh token (store it)."""

XERO_PAGE_SIZE = 100
"""Rows per ``page=N`` page; a shorter page is the last."""

XERO_ID_FIELDS: Mapping[str, str] = {
    "Invoices": "InvoiceID",
    "CreditNotes": "CreditNoteID",
    "Contacts": "ContactID",
    "Payments": "PaymentID",
    "BankTransactions": "BankTransactionID",
    "ManualJournals": "ManualJournalID",
    "Overpayments": "OverpaymentID",
    "Prepayments": "PrepaymentID",
    "PurchaseOrders": "PurchaseOrderID",
    "Quotes": "QuoteID",
}
"""The id field of each paged Accounting API list the connector knows by name."""

XERO_STATUS_FIELDS: Mapping[str, str] = {"Contacts": "ContactStatus"}
"""The status field of the lists whose status is not in ``Status``."""

_RESOLUTION = timedelta(seconds=1)  # If-Modified-Since has whole seconds
# Contacts are never deleted: archiving (or a GDPR erasure request) is how one leaves the books.
_TOMBSTONES = frozenset({"DELETED", "VOIDED", "ARCHIVED", "GDPRREQUEST"})
_MAX_PASSES = 3  # passes over one crowded second before the cycle gives up for now


xero_auth = XERO_OAUTH.refresh
"""Return the OAuth2 flow of one Xero connection (:meth:`OAuthVendor.refresh
<incsync.connectors.auth.OAuthVendor.refresh>` of :data:`XERO_OAUTH`)."""


class XeroConnector(HttpConnector):
    """Reads one paged Accounting API list (``Invoices`` by default) of one Xero organisation.

    Records are the documents as Xero sends them: id the list's id field (``InvoiceID``),
    updated_at ``UpdatedDateUTC`` (aware UTC, milliseconds), payload the raw object; those whose
    status is a tombstone status (``DELETED``, ``VOIDED``, ``ARCHIVED``, ``GDPRREQUEST``) are
    tombstones. Pages come in ascending order of ``UpdatedDateUTC``'s second, so the engine
    checkpoints after each; every read starts at the whole second of the window's start, so a
    resumed read covers the second its cursor is in. See the module
    docstring for how no row is skipped while rows change during a read.

    Args:
        tenant_id: The organisation's id, sent as ``Xero-tenant-id``.
        auth: The credential flow, usually :func:`xero_auth`.
        endpoint: The list to read (``Invoices``, ``CreditNotes``, ``Contacts``…).
        id_field: The list's id field; known for the lists in :data:`XERO_ID_FIELDS`.
        base_url: The Accounting API root (Xero's by default; the fake's URL in tests).
        status_field: The list's status field; ``ContactStatus`` for contacts
            (:data:`XERO_STATUS_FIELDS`), ``Status`` otherwise.
        tombstone_statuses: Status values that mean the document no longer counts.
        headers: Headers sent with every request.
        options: Timeouts, retries, transport and the hooks tests inject
            (:class:`~incsync.connectors.http.HttpOptions`); the defaults otherwise.

    Raises:
        ConfigurationError: ``tenant_id`` or ``endpoint`` is empty, or ``id_field`` is missing
            for a list not in :data:`XERO_ID_FIELDS`.
    """

    vendor: ClassVar[str] = "xero"
    # Xero: "Concurrent Limit: 5 calls in progress at one time" per tenant.
    concurrent_requests: ClassVar[int | None] = 5
    ordered = True
    updated_at_field = "UpdatedDateUTC"

    def __init__(
        self,
        tenant_id: str,
        *,
        auth: Auth,
        endpoint: str = "Invoices",
        id_field: str | None = None,
        base_url: str = XERO_API,
        status_field: str | None = None,
        tombstone_statuses: frozenset[str] = _TOMBSTONES,
        headers: Mapping[str, str] | None = None,
        options: HttpOptions | None = None,
    ) -> None:
        if not tenant_id.strip():
            raise ConfigurationError("tenant_id must be the organisation's Xero tenant id")
        if not endpoint.isidentifier():
            raise ConfigurationError(f"endpoint must name a list like 'Invoices', got {endpoint!r}")
        id_field = id_field or XERO_ID_FIELDS.get(endpoint)
        if not id_field:
            raise ConfigurationError(
                f"the id field of {endpoint!r} is not known; pass id_field=… (like 'InvoiceID')"
            )
        super().__init__(
            base_url,
            auth=auth,
            headers={**(headers or {}), "Xero-tenant-id": tenant_id.strip()},
            options=options,
        )
        self.tenant_id = tenant_id.strip()
        self.endpoint = endpoint
        self.id_field = id_field
        self.status_field = status_field or XERO_STATUS_FIELDS.get(endpoint, "Status")
        self.tombstone_statuses = frozenset(tombstone_statuses)
        self.record_format = RecordFormat(id_field, "UpdatedDateUTC", parse_dotnet_date, text_id)

    def throttle_signal(self, response: httpx.Response) -> Throttle | None:
        """Xero's 429: ``X-Rate-Limit-Problem: day`` is a quota, anything else a burst."""
        return xero_throttle(response)

    def is_deleted(self, raw: Mapping[str, Any]) -> bool:
        """Return whether ``raw`` is deleted, voided or archived (its status a tombstone one)."""
        return raw.get(self.status_field) in self.tombstone_statuses

    def count_live(self) -> int | None:
        """Return ``pagination.itemCount`` of the list without its tombstone statuses.

        One request for one row, filtered by ``where`` (``Status!="DELETED" AND ...``); ``None``
        when the answer has no pagination (a list Xero does not count).

        Raises:
            BadResponseError: The pagination's ``itemCount`` is not a count.
            SourceError: Xero could not be asked.
        """
        where = " AND ".join(
            f'{self.status_field}!="{status}"' for status in sorted(self.tombstone_statuses)
        )
        answer = self.get_json(
            f"/{self.endpoint}", params={"page": "1", "pageSize": "1", "where": where}
        )
        pagination = answer.get("pagination") if isinstance(answer, dict) else None
        if pagination is None:
            return None
        count = pagination.get("itemCount") if isinstance(pagination, dict) else None
        return counted(count, vendor=self.vendor, where="the answer's pagination.itemCount")

    # -- reading -------------------------------------------------------------------------------

    def read(self, window: Window) -> Iterator[Page]:
        """Yield pages of every document updated at or after ``window.start``'s second, in order.

        Raises:
            BadResponseError: Xero did not answer as asked (order, filter or ``page`` ignored).
            SourceError: Xero could not be read, or one second kept changing while it was paged.
        """
        return read_by_keyset(
            window.start,
            resolution=_RESOLUTION,
            query=self._query,
            read_tick=self._read_tick,
            build=self.to_record,
            vendor=self.vendor,
        )

    def _query(self, step: FromTime) -> Iterator[Answer]:
        """Yield page 1 of the list from ``step.start``'s second; a full page is a cut answer."""
        rows = self._rows(self._list(step.start, 1))
        yield Answer(rows, more=len(rows) >= XERO_PAGE_SIZE)

    def _read_tick(self, step: WholeTick) -> Iterator[list[Any]]:
        """Yield every row stamped within the second ``step``, paging it with ``page=N``.

        Each pass pages the second from page 1 until a page is short or reaches a later second,
        then checks that no row met moved meanwhile (see :meth:`_moved_since`); a restless pass
        is followed by another, up to :data:`_MAX_PASSES`.

        Raises:
            BadResponseError: ``page`` was ignored, or an answer has no readable
                ``DateTimeUTC``.
            TransientSourceError: Rows of the second moved during every pass.
        """
        for _ in range(_MAX_PASSES):
            began: datetime | None = None  # Xero's clock when the pass began
            met: dict[str, datetime] = {}  # the stamp of every row of the second in this pass
            restless = False  # a row met twice under two stamps in this pass: it moved
            paged: set[tuple[str, datetime]] = set()  # every version on this pass's pages
            for number in count(1):
                answer = self._list(step.start, number)
                if began is None:
                    began = self._server_time(answer)
                rows = self._rows(answer)
                before, beyond = len(paged), False
                for record in self._records(rows):
                    paged.add((record.id, record.updated_at))
                    if record.updated_at >= step.end:
                        beyond = True
                    else:
                        stamp = met.setdefault(record.id, record.updated_at)
                        restless |= stamp != record.updated_at
                if number > 1 and len(paged) == before and len(rows) >= XERO_PAGE_SIZE:
                    raise self._stuck(step.start, number)
                yield rows
                if len(rows) < XERO_PAGE_SIZE or beyond:
                    break
            assert began is not None  # the first page was asked for
            if not restless and not self._moved_since(began, met):
                return
        raise TransientSourceError(
            f"xero: the {self.endpoint} updated at {_iso(step.start)} kept changing while they "
            f"were paged ({_MAX_PASSES} passes); the next cycle reads them again",
            vendor=self.vendor,
        )

    def _moved_since(self, began: datetime, met: Mapping[str, datetime]) -> bool:
        """Return whether a row met in a pass over a crowded second may have moved since.

        A row that moved was updated at or after ``began`` (Xero's clock when the pass began),
        so paging through everything updated since then shows it under a stamp other than the
        one the pass met. A row met twice under two stamps moved during this very check, which
        may have hidden another: that counts as a move too.

        Args:
            began: When the pass began, by Xero's clock.
            met: The stamp of each row the pass met, by id.
        """
        checked: dict[str, datetime] = {}
        page = 1
        while True:
            rows = self._rows(self._list(began, page))
            before = len(checked)
            for record in self._records(rows):
                stamp = record.updated_at
                if met.get(record.id, stamp) != stamp:
                    return True
                if checked.setdefault(record.id, stamp) != stamp:
                    return True
            if len(rows) < XERO_PAGE_SIZE:
                return False
            if page > 1 and len(checked) == before:
                raise self._stuck(began, page)
            page += 1

    def _records(self, rows: Sequence[Any]) -> Iterator[Record]:
        """Yield the records of the rows that make one; the driver sets the others aside."""
        for row in rows:
            outcome = outcome_of(self.to_record, row)
            if isinstance(outcome, Record):
                yield outcome

    def _stuck(self, since: datetime, page: int) -> BadResponseError:
        return BadResponseError(
            f"xero: page {page} from {_iso(since)} brought no row not met on earlier pages; "
            f"the page parameter was ignored, so the read stopped instead of looping",
            vendor=self.vendor,
        )

    def _list(self, since: datetime | None, page: int) -> Any:
        """Return one page of the list, from the whole second of ``since`` on (all for None)."""
        headers = {}
        if since is not None:
            headers["If-Modified-Since"] = _header_time(since)
        return self.get_json(
            f"/{self.endpoint}",
            params={"order": "UpdatedDateUTC ASC", "page": str(page), "includeArchived": "true"},
            headers=headers,
        )

    def _rows(self, answer: object) -> list[Any]:
        rows = answer.get(self.endpoint) if isinstance(answer, dict) else None
        if not isinstance(rows, list):
            raise BadResponseError(
                f"xero: the answer has no {self.endpoint!r} list; the API changed or a proxy "
                f"answered instead",
                vendor=self.vendor,
            )
        return rows

    def _server_time(self, answer: object) -> datetime:
        """Return the answer's ``DateTimeUTC``: Xero's clock."""
        value = answer.get("DateTimeUTC") if isinstance(answer, dict) else None
        try:
            return parse_dotnet_date(value, "DateTimeUTC")
        except ValueError:
            raise BadResponseError(
                f"xero: the answer has no readable DateTimeUTC (got {value!r}), needed to check "
                f"a crowded second for changes",
                vendor=self.vendor,
            ) from None


def _header_time(moment: datetime) -> str:
    """``If-Modified-Since`` as Xero takes it: UTC to the whole second, without a zone."""
    return moment.replace(tzinfo=None).isoformat(timespec="seconds")


def _iso(moment: datetime) -> str:
    return _header_time(moment) + "Z"
