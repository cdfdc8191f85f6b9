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

The ``query`` answer's ``totalCount`` counts that page only, so a read learns how many entities
it holds only by asking ``SELECT COUNT(*) FROM <entity>``, one request more. A full read asks it
once, before its first page (each time partition of one asks for its own range, and the engine
adds them up), and its pages carry the count (:attr:`~incsync.records.Page.total`:
progress out of a total, and an estimate of the time left); an incremental read, which usually
holds a few pages, does not spend the request.

Times come in the company's offset, which changes with daylight saving time; they are read as
aware UTC. Voided transactions are ordinary records (QuickBooks keeps them with a zero total), not
tombstones.

Deleted records leave ``query`` and show only in the ``cdc`` endpoint, a channel with its own
position: the ``"deletes"`` mark (:mod:`incsync.marks`), checkpointed with the page of tombstones
that read it, so a quiet entity whose cursor stays weeks behind does not hold its deletes back.
With ``include_deletes=True`` each incremental read ends with that page: the ``status: "Deleted"``
entities CDC shows since the mark (or, without one, since the window's start), as tombstones. A
full read reads no deletes (records deleted before it are not in it); it sets the mark to its own
start, so the next read sees every delete after it.

What CDC answers, by Intuit's reference (the ChangeDataCapture "Business Rules"): every object of
the entities asked that changed at or after ``changedSince`` (there is no upper bound), grouped by
entity and in order of last update within a group, **deleted objects after the live ones**; at most
1,000 objects in all, with nothing marking an answer as cut; and no ``changedSince`` more than 30
days back (:data:`CDC_RETENTION`), counted by *Intuit's* clock, so the bound is taken from the
``Date`` of QuickBooks' own answers (:meth:`~incsync.connectors.http.HttpConnector.source_time`),
never from the host's. Intuit does not say which 1,000 objects a longer answer keeps. Read as that
list cut after its 1,000th object (as the fake cuts it), an answer of 1,000 from a start ``S``
holds:

* **at least one delete**: then every live change since ``S`` came before it, and the deletes shown
  are the oldest, so every delete before the newest one shown is read. The next request starts at
  that newest delete's second, and so on until an answer comes back under the cap: the cap cuts
  no delete. Before walking on, ``SELECT COUNT(*)`` of the live entities updated between ``S`` and
  the answer's time must not exceed the live changes the answer held: more means QuickBooks cut
  the answer some other way, and deletes before the newest one shown may be missing.
* **no delete**: 1,000 live changes since ``S`` fill it, and no request can show the deletes
  behind them.
* **deletes all at the second ``S``**: more deletes share that second than the answer had room
  for, and CDC cannot be asked for part of a second.

Those answers, and a mark older than CDC's 30 days (found at the read's first answer, before any
page), leave deletes no request can read: the read raises
:class:`~incsync.errors.PermanentSourceError` with ``resync_required``, and the engine resets the
source, whose next cycle re-reads every entity (what it does not see is gone). Cycles closer
together than 1,000 changes of the entity (and 30 days) never come to that.
:attr:`QuickBooksConnector.delete_retention` tells the engine the 30 days (with
``include_deletes``; without, no delete channel is read and it is ``None``), and
:meth:`QuickBooksConnector.count_live` counts the live entities (``SELECT COUNT(*)``) for its
check of the host's copy.

A persistent drift between the counts is reconciled by a full re-read, not by id (``lists_ids``
is false): Intuit documents neither how ``Id > '<last>'`` compares nor the order of ``ORDERBY
Id``, so the Ids could only be paged by ``STARTPOSITION``, an offset a delete made while they are
listed shifts, leaving an Id out of the listing for good; and ``query`` returns whole entities, so
listing the Ids would cost what the re-read costs (see docs/builtin/quickbooks.md).
"""

from __future__ import annotations

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
from incsync.errors import BadResponseError, ConfigurationError, PermanentSourceError
from incsync.policy import whole_number_setting
from incsync.records import Page, Record, RecordFormat, RejectedRecord, outcome_of, text_id
from incsync.timestamps import parse_timestamp

__all__ = [
    "CDC_RETENTION",
    "DELETES_MARK",
    "QUICKBOOKS_OAUTH",
    "QUICKBOOKS_PARTITIONS",
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

CDC_RETENTION = timedelta(days=30)
"""How far back the ``cdc`` endpoint reaches, by Intuit's clock: the connector's
:attr:`~QuickBooksConnector.delete_retention`."""

_MAX_PAGE_SIZE = 1000
# Intuit: "10 concurrent requests per realm ID and app"; an 11th is refused with Fault 3001.
_MAX_CONCURRENT = 10

QUICKBOOKS_PARTITIONS = 4
"""How many time partitions of a full read are read at once by default.

Intuit allows 500 requests a minute and 10 concurrent requests per company. One reader of
1,000-entity pages makes about 2.5 requests a second at 150 ms a request, plus its writes;
four reach the 8.3 a second the minute allows, with room left under the 10 concurrent for the
host's other connections to the company (see docs/performance.md)."""
# The most objects one cdc answer holds, across the entities asked; nothing says it was cut.
_CDC_MAX_OBJECTS = 1000
# CDC refuses a changedSince more than 30 days back; a margin keeps a slow request inside it.
_CDC_REACH = CDC_RETENTION - timedelta(minutes=5)
_UTC = timezone.utc
_SECOND = timedelta(seconds=1)
# Deletes are read again from a little before the last read's time: a delete QuickBooks had not
# made visible yet is not lost, and reading one twice changes nothing (the same tombstone).
_DELETES_OVERLAP = timedelta(minutes=5)

DELETES_MARK = "deletes"
"""The name of the mark that says how far CDC's deletes have been read."""

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
            and return them as tombstones; a read that cannot see every delete since the last
            one resets the source (see the module docstring). Without it the connector has no
            delete channel, and its :attr:`delete_retention` is ``None``.
        partitions: How many time partitions of a full read are read at once (see
            :mod:`incsync.partitions`): 1 to 10, QuickBooks' concurrent requests per company
            (:attr:`concurrent_requests`, which the cycles of one company allowed to run at once
            share: each may read fewer at once); :data:`QUICKBOOKS_PARTITIONS` by default.
            Incremental reads are one window.
        options: Timeouts, retries, transport and the hooks tests inject
            (:class:`~incsync.connectors.http.HttpOptions`); the defaults otherwise.

    Raises:
        ConfigurationError: ``realm_id`` or ``entity`` is not a plain name, or ``page_size`` is out
            of range.
    """

    vendor: ClassVar[str] = "quickbooks"
    concurrent_requests: ClassVar[int | None] = _MAX_CONCURRENT
    ordered = True
    id_field = "Id"
    updated_at_field = "MetaData.LastUpdatedTime"
    delete_retention: timedelta | None = CDC_RETENTION

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
        partitions: int = QUICKBOOKS_PARTITIONS,
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
        whole_number_setting(1, _MAX_CONCURRENT).check("partitions", partitions)
        self.partitions = partitions
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
        if not include_deletes:
            self.delete_retention = None  # no delete channel read, none to expire

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
        mark, as tombstones, and moves that mark. A full read first counts the entities
        (``SELECT COUNT(*)``, one request) for its pages' ``total``.

        Raises:
            PermanentSourceError: With ``include_deletes``, some deletes since the mark are out of
                CDC's reach (``resync_required`` is set; the engine resets the source).
            SourceError: QuickBooks could not be read, or answered out of the order asked for.
        """
        began: list[datetime] = []  # QuickBooks' time when its first answer came
        deletes_start = self._deletes_start(window)
        below = "" if window.end is None else f"MetaData.LastUpdatedTime < '{_literal(window.end)}'"
        total: int | None = None
        if window.start is None and window.end is None:
            total = self._count("")  # every entity is read: their count is the read's
        elif window.partition:
            # A partition counts its own; the engine adds the partitions' counts up.
            since = (
                ""
                if window.start is None
                else f"MetaData.LastUpdatedTime >= '{_literal(window.start)}'"
            )
            total = self._count(" AND ".join(part for part in (since, below) if part))

        def query(step: FromTime) -> Iterator[Answer]:
            since = (
                ""
                if step.start is None
                else f"MetaData.LastUpdatedTime >= '{_literal(step.start)}'"
            )
            rows = self._query(" AND ".join(part for part in (since, below) if part), 1)
            if not began:
                began.append(self.source_time())
                if deletes_start is not None:
                    # Out of reach already: fail before reading what the re-read reads again.
                    self._check_reach(deletes_start, began[0])
            yield Answer(rows, more=len(rows) >= self.page_size)

        pages = read_by_keyset(
            window.start,
            resolution=_SECOND,
            query=query,
            read_tick=self._read_second,
            build=self.to_record,
            vendor=self.vendor,
            total=total,
        )
        if not self.include_deletes:
            yield from pages
        elif deletes_start is not None:
            yield from pages
            yield self._deletes_page(deletes_start)
        else:
            yield from self._marking_deletes(pages, window, began)

    def time_span(self) -> tuple[datetime, datetime] | None:
        """Return the oldest and newest ``MetaData.LastUpdatedTime`` of the entity (2 requests).

        ``None`` when the company holds none.
        """
        ends = []
        for order in ("MetaData.LastUpdatedTime", "MetaData.LastUpdatedTime DESC"):
            body = self._ask("*", "", f" ORDERBY {order} STARTPOSITION 1 MAXRESULTS 1")
            rows = self._entities_of(body)
            if not rows:
                return None
            ends.append(self.to_record(rows[0]).updated_at)
        return ends[0], ends[1]

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

    def _deletes_start(self, window: Window) -> datetime | None:
        """Return the time deletes are read from: the mark, else the window's start.

        ``None`` when no deletes are read: without ``include_deletes``, and on a full read or
        one partition of it.
        """
        if not self.include_deletes or window.start is None or window.partition:
            return None
        return window.marks.get(DELETES_MARK, window.start).replace(microsecond=0)

    def _marking_deletes(
        self, pages: Iterator[Page], window: Window, began: list[datetime]
    ) -> Iterator[Page]:
        """Yield a full read's pages, the first setting the deletes mark to when it began.

        A full read holds no deleted entity; deletes from a little before its first answer on
        are read next time. The mark goes with the first page, so it is durable before any
        record it covers, and a partition read after a crash (whose window carries it) keeps
        it where the read began. With no page at all, a page of the mark alone.
        """
        if DELETES_MARK in window.marks:
            yield from pages
            return
        marked = False
        for page in pages:
            if not marked:
                page = attrs.evolve(page, marks={DELETES_MARK: began[0] - _DELETES_OVERLAP})
                marked = True
            yield page
        if not marked:
            began_at = began[0] if began else self.source_time()
            yield Page(marks={DELETES_MARK: began_at - _DELETES_OVERLAP})

    def _check_reach(self, since: datetime, now: datetime) -> None:
        """Refuse deletes since ``since`` when CDC no longer reaches back that far by ``now``.

        Raises:
            PermanentSourceError: It does not (``resync_required`` is set).
        """
        if since < now - _CDC_REACH:
            raise self._resync(
                f"the {self.entity} deletes since {_literal(since)} are past CDC's "
                f"{CDC_RETENTION.days} days (QuickBooks' clock reads {_literal(now)})"
            )

    def _deletes_page(self, since: datetime) -> Page:
        """Return the page of entities deleted at or after ``since``, moving the mark."""
        now = self.source_time().replace(microsecond=0)
        self._check_reach(since, now)
        page = self._read_deletes(since)
        return attrs.evolve(page, marks={DELETES_MARK: now - _DELETES_OVERLAP})

    def _read_deletes(self, since: datetime) -> Page:
        """Return every entity CDC shows deleted at or after ``since``, walking past cut answers.

        Raises:
            PermanentSourceError: A cut answer hides deletes (``resync_required`` is set).
        """
        deleted: dict[str, Record] = {}
        rejected: dict[str, RejectedRecord] = {}
        start = since
        while True:
            rows = self._changes_since(start)
            answered = self.source_time().replace(microsecond=0)
            live: list[Record] = []
            shown: list[Record] = []
            for row in rows:
                outcome = outcome_of(self.to_record, row)
                if isinstance(outcome, RejectedRecord):
                    if self._maybe_deleted(row):
                        rejected[outcome.fingerprint] = outcome
                elif outcome.deleted:
                    shown.append(outcome)
                else:
                    live.append(outcome)
            deleted.update((record.id, record) for record in shown)
            if len(rows) < _CDC_MAX_OBJECTS:
                return Page(records=list(deleted.values()), rejected=list(rejected.values()))
            start = self._walk_past_cut(start, answered, live, shown)

    def _maybe_deleted(self, row: object) -> bool:
        # An unreadable row may be a delete: it is set aside with the reason, not dropped.
        return not isinstance(row, Mapping) or self.is_deleted(row)

    def _walk_past_cut(
        self, start: datetime, answered: datetime, live: list[Record], shown: list[Record]
    ) -> datetime:
        """Return where to ask CDC again after an answer from ``start`` cut at the cap.

        Raises:
            PermanentSourceError: The answer hides deletes no later answer shows
                (``resync_required`` is set).
        """
        answer = (
            f"CDC's answer of {_CDC_MAX_OBJECTS:,} {self.entity} changes since {_literal(start)}"
        )
        if not shown:
            raise self._resync(
                f"{answer} holds live changes only, and CDC lists deletes after them: no answer "
                "shows the deletes among them"
            )
        newest = max(record.updated_at for record in shown)
        if newest <= start:
            raise self._resync(
                f"{answer} is cut among the deletes of that very second, and CDC cannot be asked "
                "for part of a second: the rest of them cannot be read"
            )
        held = sum(start <= record.updated_at < answered for record in live)
        counted = self._count(
            f"MetaData.LastUpdatedTime >= '{_literal(start)}' "
            f"AND MetaData.LastUpdatedTime < '{_literal(answered)}'"
        )
        if counted > held:
            # The documented order puts every live change before the first delete. An answer
            # lacking some was cut another way: deletes before the newest shown may be missing.
            raise self._resync(
                f"{answer} held {held} live ones where QuickBooks counts {counted}: it was not cut "
                "after the live changes and the oldest deletes, so deletes may be missing from it"
            )
        return newest

    def _resync(self, reason: str) -> PermanentSourceError:
        return PermanentSourceError(
            f"quickbooks: {reason}; only reading every {self.entity} again finds what was "
            "deleted, so the source is re-read in full",
            vendor=self.vendor,
            resync_required=True,
        )

    def count_live(self) -> int:
        """Return how many live entities QuickBooks holds: ``SELECT COUNT(*) FROM <entity>``.

        One request, through the connector's retries and credentials. Deleted entities are not
        counted; nor are inactive list entities (a ``Customer`` made inactive), which ``query``
        leaves out as well.

        Raises:
            BadResponseError: The answer holds no count.
            SourceError: QuickBooks could not be asked.
        """
        return self._count("")

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
        body = self._ask(
            "*", condition, f" ORDERBY {order} STARTPOSITION {start} MAXRESULTS {self.page_size}"
        )
        return self._entities_of(body)

    def _count(self, condition: str) -> int:
        body = self._ask("COUNT(*)", condition)
        response = body.get("QueryResponse") if isinstance(body, dict) else None
        total: object = None
        if response == {}:
            total = 0  # how QuickBooks answers an empty result, whatever was asked
        elif isinstance(response, dict):
            total = response.get("totalCount")
        if not isinstance(total, int) or isinstance(total, bool) or total < 0:
            raise BadResponseError(
                f"quickbooks: the count of {self.entity} has no QueryResponse.totalCount",
                vendor=self.vendor,
            )
        return total

    def _ask(self, selected: str, condition: str, rest: str = "") -> Any:
        where = f" WHERE {condition}" if condition else ""
        return self.get_json(
            f"/v3/company/{self.realm_id}/query",
            params={
                "query": f"SELECT {selected} FROM {self.entity}{where}{rest}",
                "minorversion": str(self.minor_version),
            },
        )

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
