"""A connector for Xero's Accounting API: invoices (or another paged list), read by keyset.

Xero filters lists with the ``If-Modified-Since`` header, at whole-second precision and read here
as "at or after", sorts them with ``order=UpdatedDateUTC ASC`` and cuts pages of 100 with
``page=N``: an offset into the result as it is *now*. An invoice updated between two pages leaves
its place, every later row moves up by one, and the row that moved into the gap would never be
read. So this connector never trusts a page number across the seconds it reads. Every page is
asked for afresh as page 1 from the last second seen, and the rows already read at exactly that
second (same id, same millisecond) are dropped.

More invoices than fit on a page may share one second (a bulk import), and the header cannot say
"after this invoice". Only then is ``page=N`` used: through that one second, page after page,
while the rows before the current page stay put. Whether they did is checked afterwards: a row of
that second that changed while it was paged now carries an ``UpdatedDateUTC`` at or after the
moment the pass began (the ``DateTimeUTC`` of its first answer; Xero stamps changes with that
clock), so paging through everything changed since then shows every such row. When one moved,
the second is paged again, the rows already read dropped; after a few restless passes the cycle
fails (transient) rather than risk a gap. Once a second is read whole, the next query starts at
the second after it. A server that ignored ``page`` or ``If-Modified-Since`` would make this loop;
the read stops with :class:`~incsync.errors.BadResponseError` instead.

Deleted and voided documents come back as ordinary rows with ``Status`` ``DELETED`` or
``VOIDED``; they become tombstones. Xero's per-tenant limits answer 429 with
``X-Rate-Limit-Problem``: ``minute`` is waited out (``Retry-After``), ``day`` fails the cycle at
once and records when to try again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, ClassVar, TypeGuard

import httpx

from incsync.connectors.auth import Auth, OAuthVendor
from incsync.connectors.base import RawPage
from incsync.connectors.http import HttpConnector, HttpOptions
from incsync.connectors.retry import Throttle
from incsync.connectors.throttle import xero_throttle
from incsync.cursor import Window
from incsync.errors import (
    BadResponseError,
    ConfigurationError,
    TransientSourceError,
)
from incsync.records import RecordFormat, text_id
from incsync.timestamps import parse_dotnet_date, to_micros

__all__ = [
    "XERO_API",
    "XERO_ID_FIELDS",
    "XERO_OAUTH",
    "XERO_PAGE_SIZE",
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

_Keyed = tuple[Any, tuple[str, int] | None]
"""A row and its (id, UpdatedDateUTC in epoch ms), ``None`` when either is unreadable."""

# Xero's own form of a .NET JSON date, /Date(1541176290160+0000)/, as decoded from JSON.
_PLAIN_DATE = re.compile(r"/Date\(([0-9]{1,15})\+0000\)/")
_plain_date = _PLAIN_DATE.fullmatch
_TOMBSTONES = frozenset({"DELETED", "VOIDED"})
_MAX_PASSES = 3  # passes over one crowded second before the cycle gives up for now
_UTC = timezone.utc
_fromtimestamp = datetime.fromtimestamp
# Milliseconds that a float divided by 1000 holds exactly (as parse_dotnet_date's own fast case).
_EXACT_MILLIS = 2**33 * 1000


xero_auth = XERO_OAUTH.refresh
"""Return the OAuth2 flow of one Xero connection (:meth:`OAuthVendor.refresh
<incsync.connectors.auth.OAuthVendor.refresh>` of :data:`XERO_OAUTH`)."""


class XeroConnector(HttpConnector):
    """Reads one paged Accounting API list (``Invoices`` by default) of one Xero organisation.

    Records are the documents as Xero sends them: id the list's id field (``InvoiceID``),
    updated_at ``UpdatedDateUTC`` (aware UTC, milliseconds), payload the raw object; ``DELETED``
    and ``VOIDED`` ones are tombstones. Pages come in ascending ``UpdatedDateUTC`` order, so the
    engine checkpoints after each; every read starts at the whole second of the window's start,
    so a resumed read covers the second its cursor is in. See the module docstring for how no
    row is skipped while rows change during a read.

    Args:
        tenant_id: The organisation's id, sent as ``Xero-tenant-id``.
        auth: The credential flow, usually :func:`xero_auth`.
        endpoint: The list to read (``Invoices``, ``CreditNotes``, ``Contacts``…).
        id_field: The list's id field; known for the lists in :data:`XERO_ID_FIELDS`.
        base_url: The Accounting API root (Xero's by default; the fake's URL in tests).
        tombstone_statuses: ``Status`` values that mean the document no longer counts.
        headers: Headers sent with every request.
        options: Timeouts, retries, transport and the hooks tests inject
            (:class:`~incsync.connectors.http.HttpOptions`); the defaults otherwise.

    Raises:
        ConfigurationError: ``tenant_id`` or ``endpoint`` is empty, or ``id_field`` is missing
            for a list not in :data:`XERO_ID_FIELDS`.
    """

    vendor: ClassVar[str] = "xero"
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
        self.tombstone_statuses = frozenset(tombstone_statuses)
        self.record_format = RecordFormat(id_field, "UpdatedDateUTC", parse_dotnet_date, text_id)

    def throttle_signal(self, response: httpx.Response) -> Throttle | None:
        """Xero's 429: ``X-Rate-Limit-Problem: day`` is a quota, anything else a burst."""
        return xero_throttle(response)

    # -- records -------------------------------------------------------------------------------

    def is_deleted(self, raw: Mapping[str, Any]) -> bool:
        """Return whether ``raw`` is deleted or voided (``Status`` in the tombstone statuses)."""
        return raw.get("Status") in self.tombstone_statuses

    # -- reading -------------------------------------------------------------------------------

    def fetch(self, window: Window) -> Iterator[RawPage]:
        """Yield pages of every document updated at or after ``window.start``'s second, in order.

        Raises:
            SourceError: Xero could not be read, or one second kept changing while it was paged.
        """
        since = None if window.start is None else _second(window.start)
        read: set[tuple[str, int]] = set()  # (id, ms) read at exactly the second ``since``
        set_aside: set[str] = set()  # unreadable rows already passed on, to be rejected once
        while True:
            answer = self._list(since, 1)
            keyed = self._keyed(self._rows(answer))
            last = _last_second(keyed)
            full = len(keyed) >= XERO_PAGE_SIZE
            if full and last is None:
                raise BadResponseError(
                    f"xero: no row of a full {self.endpoint} page has a readable id and "
                    f"UpdatedDateUTC, so the read cannot go on",
                    vendor=self.vendor,
                )
            if full and since is not None and last is not None and last < since:
                raise BadResponseError(
                    f"xero: a page from {_iso(since)} ends at {_iso(last)}, earlier than asked; "
                    f"the If-Modified-Since header was ignored, so the read stopped",
                    vendor=self.vendor,
                )
            if full and last == since:
                # A whole page in one second: page through that second alone, then go past it.
                assert since is not None  # last is a second, and equals it
                yield from self._crowded_second(since, answer, read, set_aside)
                since, read = since + 1, set()
                continue
            fresh = self._fresh(keyed, read, set_aside)
            if fresh:
                yield fresh
            if not full:
                return
            assert last is not None  # checked above for a full page
            since = last
            read = {key for _, key in keyed if key is not None and _in_second(key, last)}

    def _crowded_second(
        self,
        second: int,
        first: Any,
        read: set[tuple[str, int]],
        set_aside: set[str],
    ) -> Iterator[RawPage]:
        """Yield every row stamped within ``second``, paging it with ``page=N``.

        Args:
            second: The second (epoch seconds) more than a page of rows share.
            first: The answer to page 1 from ``second``, already fetched.
            read: The (id, ms) read at ``second``; updated as rows are yielded.
            set_aside: Markers of unreadable rows already yielded.
        """
        answer = first
        for _ in range(_MAX_PASSES):
            began = self._server_time(answer)
            seen: dict[str, int] = {}  # the stamp of every row of the second met in this pass
            restless = False  # a row met twice under two stamps in this pass: it moved
            paged: set[tuple[str, int]] = set()  # every key on the pages of this pass
            page = 1
            while True:
                keyed = self._keyed(self._rows(answer))
                inside: list[_Keyed] = []
                met = len(paged)
                for row, key in keyed:
                    if key is None:
                        inside.append((row, key))
                        continue
                    paged.add(key)
                    if _in_second(key, second):
                        inside.append((row, key))
                        restless |= seen.setdefault(key[0], key[1]) != key[1]
                if page > 1 and len(paged) == met and len(keyed) >= XERO_PAGE_SIZE:
                    raise self._stuck(second, page)
                fresh = self._fresh(inside, read, set_aside)
                read.update(key for _, key in inside if key is not None)
                if fresh:
                    yield fresh
                if len(keyed) < XERO_PAGE_SIZE or _last_second(keyed) != second:
                    break
                page += 1
                answer = self._list(second, page)
            if not restless and not self._moved_since(began, seen):
                return
            answer = self._list(second, 1)
        raise TransientSourceError(
            f"xero: the {self.endpoint} updated at {_iso(second)} kept changing while they were "
            f"paged ({_MAX_PASSES} passes); the next cycle reads them again",
            vendor=self.vendor,
        )

    def _moved_since(self, began: int, seen: Mapping[str, int]) -> bool:
        """Return whether a row met in a pass over a crowded second may have moved since.

        A row that moved was updated at or after ``began`` (Xero's clock when the pass began, in
        epoch ms), so paging through everything updated since then shows it under a stamp other
        than the one the pass met. A row met twice under two stamps moved during this very
        check, which may have hidden another: that counts as a move too.

        Args:
            began: When the pass began, in epoch ms.
            seen: The stamp (epoch ms) of each row the pass met, by id.
        """
        checked: dict[str, int] = {}
        page = 1
        while True:
            rows = self._rows(self._list(began // 1000, page))
            met = len(checked)
            for record_id, stamp in filter(None, map(self._key, rows)):
                if seen.get(record_id, stamp) != stamp:
                    return True
                if checked.setdefault(record_id, stamp) != stamp:
                    return True
            if len(rows) < XERO_PAGE_SIZE:
                return False
            if page > 1 and len(checked) == met:
                raise self._stuck(began // 1000, page)
            page += 1

    def _stuck(self, second: int, page: int) -> BadResponseError:
        return BadResponseError(
            f"xero: page {page} from {_iso(second)} brought no row not met on earlier pages; "
            f"the page parameter was ignored, so the read stopped instead of looping",
            vendor=self.vendor,
        )

    def _fresh(
        self, keyed: Sequence[_Keyed], read: set[tuple[str, int]], set_aside: set[str]
    ) -> list[Any]:
        """Return the rows not read before; an unreadable row only the first time it is met."""
        fresh = []
        for row, key in keyed:
            if key is None:
                marker = repr(row)
                if marker in set_aside:
                    continue
                set_aside.add(marker)  # to_record sets it aside with the reason
            elif key in read:
                continue
            fresh.append(row)
        return fresh

    def _keyed(self, rows: Sequence[Any]) -> list[_Keyed]:
        """Pair every row with its key."""
        return [(row, self._key(row)) for row in rows]

    def _key(self, row: object) -> tuple[str, int] | None:
        """Return a row's (id, UpdatedDateUTC in epoch ms); ``None`` when either is unreadable."""
        if not _is_mapping(row):
            return None
        record_id = row.get(self.id_field)
        if not isinstance(record_id, str) or not record_id:
            return None
        value = row.get("UpdatedDateUTC")
        # The plain form is read for its number alone (paging needs no datetime); anything else
        # goes through the full parser, which decides whether it is a date at all.
        plain = _PLAIN_DATE.fullmatch(value) if isinstance(value, str) else None
        if plain is not None:
            return record_id, int(plain.group(1))
        try:
            return record_id, _millis(parse_dotnet_date(value, "UpdatedDateUTC"))
        except ValueError:
            return None

    def _list(self, since: int | None, page: int) -> Any:
        """Return one page of the list, from the second ``since`` (epoch seconds) on."""
        headers = {}
        if since is not None:
            moment = datetime.fromtimestamp(since, _UTC)
            headers["If-Modified-Since"] = moment.strftime("%Y-%m-%dT%H:%M:%S")
        return self.get_json(
            f"/{self.endpoint}",
            params={"order": "UpdatedDateUTC ASC", "page": str(page)},
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

    def _server_time(self, answer: object) -> int:
        """Return the answer's ``DateTimeUTC`` (Xero's clock) in epoch ms."""
        value = answer.get("DateTimeUTC") if isinstance(answer, dict) else None
        try:
            return _millis(parse_dotnet_date(value, "DateTimeUTC"))
        except ValueError:
            raise BadResponseError(
                f"xero: the answer has no readable DateTimeUTC (got {value!r}), needed to check "
                f"a crowded second for changes",
                vendor=self.vendor,
            ) from None


def _status_in(statuses: frozenset[str]) -> Callable[[Mapping[str, Any]], bool]:
    def status_in(raw: Mapping[str, Any]) -> bool:
        return raw.get("Status") in statuses

    return status_in


def _is_mapping(value: object) -> TypeGuard[Mapping[str, Any]]:
    # Decoded JSON objects are dicts; the exact-type test spares the slow ABC check per row.
    return type(value) is dict or isinstance(value, Mapping)


def _millis(moment: datetime) -> int:
    # Xero's stamps are whole milliseconds, exact in a float; timestamp() is the fast way back.
    return round(moment.timestamp() * 1000)


def _second(moment: datetime) -> int:
    return to_micros(moment) // 1_000_000


def _iso(second: int) -> str:
    return datetime.fromtimestamp(second, _UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _in_second(key: tuple[str, int], second: int) -> bool:
    return key[1] // 1000 == second


def _last_second(keyed: Sequence[_Keyed]) -> int | None:
    """Return the second of the last row with a readable key; rows come in time order."""
    for _, key in reversed(keyed):
        if key is not None:
            return key[1] // 1000
    return None
