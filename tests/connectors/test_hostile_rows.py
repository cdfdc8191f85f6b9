"""Hostile rows between good ones, for every built-in connector, through real engine cycles.

Each case is one connector configuration reading its fake over loopback HTTP (the file connector:
real files) into a SQLite store on disk. Rows no record can be made of are mixed into the fake's
own answers, each spelled as that vendor writes its fields: "never" and "long ago" written in a
local zone (past year 9999, before year 1 once in UTC), Xero's ``/Date(...)/`` and Stripe's epoch
seconds past datetime's range, times that are no time (``"last tuesday"``, a number where text is
expected, no zone), ids that are booleans, huge integers (where the vendor's ids are text) or
empty, and rows that are not objects at all. Next to them go rows that only look hostile and are
well formed, each placed where the vendor's order puts it: offsets of ±14 h, ``Z``, ``z`` and
``+0000`` (the good rows' times respelled), a readable far-future row at the end of an answer and
a readable far-past one at its start, and huge integer ids where the vendor's ids are integers.

REST items and files hold their hostile rows themselves (:meth:`FakeGenericRest.add_malformed`,
lines in the file); every other fake answers as it computes, and a fault rewrites the rows list
of that answer (:meth:`FakeVendor.add_fault`), never making the fake kinder.
"""

from __future__ import annotations

import abc
import itertools
import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from datetime import date, datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest

from incsync import SQLiteStore, SyncEngine
from incsync.connectors.auth import BearerToken
from incsync.connectors.files import FileConnector
from incsync.connectors.http import HttpOptions
from incsync.connectors.rest import RestConnector
from incsync.protocols import Connector
from incsync.records import RejectedRecord
from incsync.results import Outcome
from incsync.testing import ManualClock
from incsync.testing.fakes import (
    FakeGenericRest,
    FakeHubSpot,
    FakePipedrive,
    FakeStripe,
    FakeVendor,
    FakeXero,
    HubSpotLimits,
    PipedriveLimits,
    XeroLimits,
)
from incsync.testing.fakes.generic_rest import Paging
from incsync.timestamps import parse_dotnet_date, parse_epoch_seconds, parse_timestamp, to_micros
from incsync.vendors import (
    HubSpotConnector,
    PipedriveConnector,
    QuickBooksConnector,
    SalesforceConnector,
    StripeConnector,
    XeroConnector,
)
from incsync.vendors import __all__ as vendor_names
from incsync.vendors.xero import XERO_PAGE_SIZE
from tests.connectors import test_quickbooks, test_rest, test_salesforce, test_xero

UTC = timezone.utc
KEY = "hostile"
EAST, WEST = timezone(timedelta(hours=14)), timezone(timedelta(hours=-14))

NEVER = "9999-12-31T23:00:00-08:00"
"""How vendors write "never": in a local zone, which is past year 9999 once moved to UTC."""
LONG_AGO = "0001-01-01T00:00:00+05:00"
"""Year 1 in a zone east of UTC: before the first moment datetime holds, once in UTC."""
LAST_MOMENT = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
"""A readable far-future time: a well-formed row that ends every answer sorted by time."""
FIRST_MOMENT = datetime(1, 1, 1, tzinfo=UTC)
"""A readable far-past time: a well-formed row that starts an answer sorted by time."""
HUGE = 10**40


def no_sleep(_seconds: float) -> None:
    """Never wait in tests."""


# -- what each row is, and what must become of it ------------------------------------------------


@attrs.frozen
class Hostile:
    """A row no record can be made of, and how its rejection must read.

    Args:
        row: The row as the vendor's answer (or the file) holds it.
        says: Fragments the reason must hold: the field, and what is wrong with it.
        record_id: The id the rejection carries (the row's own, when it is readable).
        shows: What the rejection's excerpt of the row must hold, where reasons alike leave
            two rows apart only by it.
    """

    row: object
    says: tuple[str, ...]
    record_id: str | None = None
    shows: str = ""

    def matches(self, entry: RejectedRecord) -> bool:
        """Return whether ``entry`` is this row's rejection."""
        return (
            entry.record_id == self.record_id
            and all(fragment in entry.reason for fragment in self.says)
            and self.shows in entry.raw
        )


@attrs.frozen
class Odd:
    """A row that looks hostile but is well formed: it must be applied at :attr:`at`.

    Args:
        row: The row as the vendor writes it.
        record_id: The record's id.
        at: The instant it names.
        leads: Whether it comes before every other row in the answer's order (a far-past row in
            an ascending answer); otherwise it comes after all of them.
    """

    row: object
    record_id: str
    at: datetime
    leads: bool = False


NOT_OBJECTS = (
    Hostile(["hostile", "row", "as", "a", "list"], ("expected a JSON object", "list")),
    Hostile("a hostile row as text", ("expected a JSON object", "str")),
    Hostile(None, ("expected a JSON object", "NoneType")),
)
"""Rows that are no JSON object, set aside whatever the vendor."""

Shape = Callable[[object, object], object]
"""Builds a vendor's row from an id and an update time, both spelled as given."""


def broken(
    shape: Shape,
    *,
    id_field: str,
    time_field: str,
    ids: Sequence[object],
    times: Sequence[tuple[object, str]],
    bad_ids: Sequence[object],
    good_time: object,
    not_objects: Sequence[Hostile] = NOT_OBJECTS,
    shows: str = "",
) -> list[Hostile]:
    """Return a vendor's hostile rows: a readable id with each bad time, each bad id, non-objects.

    Args:
        shape: Builds the vendor's row.
        id_field: The id's field, named in the reasons of bad ids.
        time_field: The time's field, named in the reasons of bad times.
        ids: Readable ids for the rows with a bad time, one per time.
        times: Each bad time with what its reason must say besides the field.
        bad_ids: Ids that are no id for this vendor; each reason shows the value.
        good_time: The (good) time of the rows with a bad id.
        not_objects: The rows that are no object at all, as the vendor would send them.
        shows: What the excerpt of each row built by ``shape`` holds (see :class:`Hostile`).
    """
    rows = [
        Hostile(shape(row_id, time), (time_field, says), str(row_id), shows)
        for row_id, (time, says) in zip(ids, times, strict=True)
    ]
    rows += [
        Hostile(shape(value, good_time), (id_field, f"got {value!r}"), shows=shows)
        for value in bad_ids
    ]
    return [*rows, *not_objects]


# Bad times as ISO 8601 vendors write them (read by parse_timestamp), with what the reason says.
ISO_BREAKS: tuple[tuple[object, str], ...] = (
    (NEVER, "out of range"),
    (LONG_AGO, "out of range"),
    ("last tuesday", "'last tuesday' is not an ISO 8601 timestamp"),
    ("2024-06-02T25:61:00Z", "is not an ISO 8601 timestamp"),
    (1717243200, "not int"),
    (None, "is missing"),
)
ZONELESS = ("2024-06-01T09:00:00", "has no timezone")


def iso_spellings(moment: datetime, timespec: str = "seconds") -> list[str]:
    """Other spellings of ``moment``: offsets of +14 h and -14 h, ``Z``, ``z`` and ``+0000``."""
    plain = moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec=timespec)
    return [
        moment.astimezone(EAST).isoformat(timespec=timespec),
        moment.astimezone(WEST).isoformat(timespec=timespec),
        plain + "Z",
        plain + "z",
        plain + "+0000",
    ]


def respelled(
    path: tuple[str, ...],
    read: Callable[[object], datetime],
    spell: Callable[[datetime], list[Any]],
) -> Callable[[Any, int], None]:
    """Return what writes the n-th good row's time at ``path`` another way, the same instant."""

    def respell(row: Any, number: int) -> None:
        *outer, last = path
        for key in outer:
            row = row[key]
        spellings = spell(read(row[last]))
        row[last] = spellings[number % len(spellings)]

    return respell


def unchanged(_row: Any, _number: int) -> None:
    """Keep a good row as the vendor wrote it."""


# -- mixing rows into a fake's answers -----------------------------------------------------------


@attrs.frozen
class Answers:
    """Where one vendor keeps the rows of an answer, and which page of which answer it is.

    Args:
        wanted: Whether the fake's answer to a request is a page of rows to mix into.
        rows: The rows list inside an answer's body (made, where the vendor leaves it out when
            empty), changed in place.
        first_page: Whether a request asks for the first page of an answer.
        final_page: Whether a body (with this many rows of the fake's) ends its answer.
        since: The time a request asks from (``None``: from the beginning).
        respell: Writes the n-th good row's time another way, naming the same instant.
    """

    wanted: Callable[[httpx.Request], bool]
    rows: Callable[[Any], list[Any]]
    first_page: Callable[[httpx.Request], bool]
    final_page: Callable[[Any, int], bool]
    since: Callable[[httpx.Request], datetime | None]
    respell: Callable[[Any, int], None] = unchanged


def blend(
    good: list[Any],
    hostile: Sequence[Hostile],
    odd: Sequence[Odd],
    *,
    first: bool,
    final: bool,
    since: datetime | None,
) -> list[Any]:
    """Return an answer's rows with hostile and odd rows where the vendor would put them.

    Hostile rows go between the good ones on the first page of an answer, never last (vendors
    page on the last row); odd rows within the answer's range lead its first page or end its
    final page, keeping the answer's order.
    """
    mixed = [o.row for o in odd if o.leads and first and (since is None or o.at >= since)]
    mixed += good
    for number, row in enumerate(hostile if first else ()):
        mixed.insert(max(0, min(len(mixed) - 1, 1 + 2 * number)), row.row)
    mixed += [o.row for o in odd if not o.leads and final and (since is None or o.at >= since)]
    return mixed


def mixing(
    fake: FakeVendor, answers: Answers, hostile: Sequence[Hostile], odd: Sequence[Odd]
) -> Callable[[httpx.Request], httpx.Response | None]:
    """Return a fault answering as ``fake`` does, hostile and odd rows mixed into its rows."""

    def fault(request: httpx.Request) -> httpx.Response | None:
        if not answers.wanted(request):
            return None
        response = fake.handle(request)
        if response.status_code != 200:
            return response
        body = json.loads(response.read())
        rows = answers.rows(body)
        for number, row in enumerate(rows):
            answers.respell(row, number)
        rows[:] = blend(
            rows,
            hostile,
            odd,
            first=answers.first_page(request),
            final=answers.final_page(body, len(rows)),
            since=answers.since(request),
        )
        kept = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        return httpx.Response(200, json=body, headers=kept)

    return fault


# -- the cases -----------------------------------------------------------------------------------


class Case(abc.ABC):
    """One connector configuration over a source holding good rows and hostile ones.

    Attributes:
        kind: The connector class it reads through.
        clock: The source's clock, which the engine shares.
        hostile: The rows to be set aside, each once.
        odd: The rows that look hostile but must be applied.
    """

    kind: type
    clock: ManualClock
    hostile: Sequence[Hostile]
    odd: Sequence[Odd] = ()

    @abc.abstractmethod
    def __init__(self, tmp_path: Path) -> None:
        """Arrange the source, its files (if any) under ``tmp_path``."""

    @abc.abstractmethod
    def connect(self, stack: ExitStack) -> Connector:
        """Serve the source (closed with ``stack``) and return a connector reading it."""

    @abc.abstractmethod
    def good(self) -> dict[str, datetime]:
        """Return the good rows the source holds: the instant of each, by id."""

    def truth(self) -> dict[str, datetime]:
        """Return every row the sink must hold, at its instant, by id."""
        return {**self.good(), **{o.record_id: o.at for o in self.odd}}


def statement(request: httpx.Request) -> str:
    """The SQL-like query a request carries (QuickBooks' ``query``, Salesforce's ``q``)."""
    return request.url.params.get("query") or request.url.params.get("q") or ""


def literal_after(pattern: str, text: str) -> datetime | None:
    """The ISO time ``pattern`` finds in ``text``, or ``None``."""
    found = re.search(pattern, text)
    return None if found is None else parse_timestamp(found.group(1), "literal")


# -- QuickBooks: Id text, MetaData.LastUpdatedTime ISO 8601 in the company's offset ---------------


def quickbooks_row(record_id: object, time: object) -> dict[str, Any]:
    """An invoice as QuickBooks writes one."""
    return {"Id": record_id, "SyncToken": "0", "MetaData": {"LastUpdatedTime": time}}


class QuickBooks(Case):
    """Invoices of a company on Pacific time, 50 of them, read 20 to a query."""

    kind = QuickBooksConnector
    page_size = 20
    hostile = broken(
        quickbooks_row,
        id_field="Id",
        time_field="MetaData.LastUpdatedTime",
        ids=[str(9001 + n) for n in range(len(ISO_BREAKS) + 1)],
        times=[*ISO_BREAKS, ZONELESS],
        bad_ids=[True, HUGE, ""],
        good_time="2024-06-02T09:00:00-07:00",
    )
    odd = (
        Odd(quickbooks_row("8001", "0001-01-01T05:00:00+05:00"), "8001", FIRST_MOMENT, leads=True),
        Odd(quickbooks_row("8002", "9999-12-31T15:59:59-08:00"), "8002", LAST_MOMENT),
    )

    def __init__(self, _tmp_path: Path) -> None:
        self.fake = test_quickbooks.make_fake()
        assert isinstance(self.fake.clock, ManualClock)
        self.clock = self.fake.clock
        start = self.clock() - timedelta(days=1)
        self.fake.bulk_load("Invoice", [start + timedelta(seconds=7 * n) for n in range(50)])
        answers = Answers(
            wanted=lambda request: "ORDERBY MetaData.LastUpdatedTime" in statement(request),
            rows=lambda body: body["QueryResponse"].setdefault("Invoice", []),
            first_page=lambda _request: True,
            final_page=lambda _body, count: count < self.page_size,
            since=lambda request: literal_after(r">= '([^']+)'", statement(request)),
            respell=respelled(("MetaData", "LastUpdatedTime"), parse_timestamp, iso_spellings),
        )
        self.fake.add_fault(mixing(self.fake, answers, self.hostile, self.odd))

    def connect(self, stack: ExitStack) -> Connector:
        base_url = stack.enter_context(self.fake.serve())
        connector = test_quickbooks.connect(self.fake, base_url, page_size=self.page_size)
        return stack.enter_context(closing(connector))

    def good(self) -> dict[str, datetime]:
        return {
            row["Id"]: parse_timestamp(row["MetaData"]["LastUpdatedTime"])
            for row in self.fake.entities("Invoice")
        }


# -- HubSpot: id digits as text, properties.hs_lastmodifieddate ISO 8601 in milliseconds ---------

MODIFIED = "hs_lastmodifieddate"


def hubspot_row(record_id: object, time: object) -> dict[str, Any]:
    """A deal as HubSpot's search writes one."""
    return {"id": record_id, "properties": {MODIFIED: time}, "archived": False}


def search_since(request: httpx.Request) -> datetime | None:
    """The time a HubSpot search asks from (its ``GTE`` filter on the modified property)."""
    for group in json.loads(request.content)["filterGroups"]:
        for item in group["filters"]:
            if item["propertyName"] == MODIFIED and item["operator"] == "GTE":
                return parse_epoch_seconds(int(item["value"]) / 1000)
    return None


def by_modified(request: httpx.Request) -> bool:
    """Whether a request is a HubSpot search sorted by the modified property."""
    if not request.url.path.endswith("/search"):
        return False
    return bool(json.loads(request.content)["sorts"][0]["propertyName"] == MODIFIED)


class HubSpot(Case):
    """Deals, 450 of them a second apart, searched 200 to an answer."""

    kind = HubSpotConnector
    hostile = broken(
        hubspot_row,
        id_field="id",
        time_field=f"properties.{MODIFIED}",
        ids=[str(900001 + n) for n in range(len(ISO_BREAKS) + 1)],
        times=[*ISO_BREAKS, ZONELESS],
        bad_ids=[True, HUGE, "", "12a"],
        good_time="2024-09-01T00:00:00.000Z",
    )
    odd = (
        Odd(hubspot_row("800001", "0001-01-01T00:00:00.000Z"), "800001", FIRST_MOMENT, leads=True),
        Odd(
            hubspot_row("800002", "9999-12-31T23:59:59.999Z"),
            "800002",
            LAST_MOMENT + timedelta(milliseconds=999),
        ),
    )

    def __init__(self, _tmp_path: Path) -> None:
        limits = HubSpotLimits(search_per_second=None, per_ten_seconds=None, daily=None)
        self.fake = FakeHubSpot(limits=limits)
        self.clock = self.fake.clock
        start = datetime(2024, 9, 1, tzinfo=UTC)
        self.fake.load("deals", [start + timedelta(seconds=n) for n in range(450)])
        answers = Answers(
            wanted=by_modified,
            rows=lambda body: body["results"],
            first_page=lambda _request: True,
            final_page=lambda body, _count: "paging" not in body,
            since=search_since,
            respell=respelled(
                ("properties", MODIFIED),
                parse_timestamp,
                partial(iso_spellings, timespec="milliseconds"),
            ),
        )
        self.fake.add_fault(mixing(self.fake, answers, self.hostile, self.odd))

    def connect(self, stack: ExitStack) -> Connector:
        base_url = stack.enter_context(self.fake.serve())
        connector = HubSpotConnector(
            base_url,
            auth=BearerToken(self.fake.private_app_token),
            options=HttpOptions(sleep=no_sleep, clock=self.fake.clock),
        )
        return stack.enter_context(closing(connector))

    def good(self) -> dict[str, datetime]:
        return {
            deal_id: parse_timestamp(properties[MODIFIED])
            for deal_id, properties in self.fake.ground_truth("deals").items()
        }


# -- Salesforce: Id text, SystemModstamp ISO 8601 with +0000 -------------------------------------


def salesforce_row(record_id: object, time: object) -> dict[str, Any]:
    """An Opportunity as a SOQL answer writes one."""
    return {"attributes": {"type": "Opportunity"}, "Id": record_id, "SystemModstamp": time}


class Salesforce(Case):
    """Opportunities, 40 of them a second apart, in pages of 15 behind query locators."""

    kind = SalesforceConnector
    hostile = broken(
        salesforce_row,
        id_field="Id",
        time_field="SystemModstamp",
        ids=[f"006HOSTILE{n:08d}" for n in range(len(ISO_BREAKS) + 1)],
        times=[*ISO_BREAKS, ZONELESS],
        bad_ids=[True, HUGE, ""],
        good_time="2024-06-02T09:00:00.000+0000",
    )
    odd = (
        Odd(
            salesforce_row("006FARPAST00000001", "0001-01-01T00:00:00.000+0000"),
            "006FARPAST00000001",
            FIRST_MOMENT,
            leads=True,
        ),
        Odd(
            salesforce_row("006FARFUTURE000001", "9999-12-31T23:59:59.000+0000"),
            "006FARFUTURE000001",
            LAST_MOMENT,
        ),
    )

    def __init__(self, _tmp_path: Path) -> None:
        self.fake = test_salesforce.make_fake(max_batch_size=15)
        assert isinstance(self.fake.clock, ManualClock)
        self.clock = self.fake.clock
        start = self.clock() - timedelta(days=1)
        self.fake.bulk_load(
            "Opportunity",
            [
                {
                    "Name": f"Deal {n}",
                    "StageName": "Prospecting",
                    "CloseDate": date(2024, 12, 31),
                    "SystemModstamp": start + timedelta(seconds=n),
                }
                for n in range(40)
            ],
        )
        self.fake.advance(timedelta(hours=1))
        # The first answer's locator dies before its second page: the read asks again from the
        # newest millisecond read, and that answer brings the hostile rows once more.
        test_salesforce.once_on(self.fake, 2, self.fake.expire_query_locators)
        answers = Answers(
            wanted=lambda request: "/query" in request.url.path,
            rows=lambda body: body["records"],
            first_page=lambda request: "q" in request.url.params,
            final_page=lambda body, _count: body["done"] is True,
            since=lambda request: literal_after(r"SystemModstamp >= (\S+)", statement(request)),
            respell=respelled(
                ("SystemModstamp",),
                parse_timestamp,
                partial(iso_spellings, timespec="milliseconds"),
            ),
        )
        self.fake.add_fault(mixing(self.fake, answers, self.hostile, self.odd))

    def connect(self, stack: ExitStack) -> Connector:
        base_url = stack.enter_context(self.fake.serve())
        return stack.enter_context(closing(test_salesforce.connect(self.fake, base_url)))

    def good(self) -> dict[str, datetime]:
        truth: dict[str, datetime] = {}
        for row in self.fake.records("Opportunity"):
            stamp = row["SystemModstamp"]
            assert isinstance(stamp, datetime)
            truth[str(row["Id"])] = stamp
        return truth


# -- Xero: InvoiceID text, UpdatedDateUTC a .NET date ----------------------------------------------


def xero_row(record_id: object, time: object) -> dict[str, Any]:
    """An invoice as Xero writes one."""
    return {"InvoiceID": record_id, "Status": "AUTHORISED", "UpdatedDateUTC": time}


def dotnet_spellings(moment: datetime) -> list[str]:
    """Other spellings of ``moment`` as a .NET date: +14 h, -14 h, no offset, escaped slashes."""
    ms = to_micros(moment) // 1000
    return [f"/Date({ms}+1400)/", f"/Date({ms}-1400)/", f"/Date({ms})/", f"\\/Date({ms}+0000)\\/"]


DOTNET_BREAKS: tuple[tuple[object, str], ...] = (
    ("/Date(253402326000000-0800)/", "outside the range"),  # 9999-12-31T23:00:00-08:00
    ("/Date(-62135614800000+0500)/", "outside the range"),  # 0001-01-01T00:00:00+05:00
    (NEVER, "is not a .NET JSON date"),
    ("last tuesday", "'last tuesday' is not a .NET JSON date"),
    ("/Date(soon)/", "is not a .NET JSON date"),
    (1704067200000, "1704067200000 is not a .NET JSON date"),
    ("2024-01-01T00:00:50Z", "is not a .NET JSON date"),
    (None, "is missing"),
)


def xero_since(request: httpx.Request) -> datetime | None:
    """The time an invoices request asks from: ``If-Modified-Since``, UTC without a zone."""
    header = request.headers.get("if-modified-since")
    return None if header is None else parse_timestamp(header, "since", assume_utc=True)


class Xero(Case):
    """Invoices, 150 of them a second apart, 100 to a page."""

    kind = XeroConnector
    hostile = broken(
        xero_row,
        id_field="InvoiceID",
        time_field="UpdatedDateUTC",
        ids=[f"0b5e7a3c-0000-4000-8000-{n:012d}" for n in range(len(DOTNET_BREAKS))],
        times=DOTNET_BREAKS,
        bad_ids=[True, HUGE, ""],
        good_time="/Date(1704067200000+0000)/",
    )
    odd = (
        Odd(xero_row("far-past", "/Date(-62135596800000+0000)/"), "far-past", FIRST_MOMENT, True),
        Odd(xero_row("far-future", "/Date(253402300799000+0000)/"), "far-future", LAST_MOMENT),
    )

    def __init__(self, _tmp_path: Path) -> None:
        limits = XeroLimits(per_minute=None, per_day=None)
        self.fake = FakeXero(limits=limits, client_secret=test_xero.CLIENT_SECRET)
        self.clock = self.fake.clock
        start = datetime(2024, 1, 1, tzinfo=UTC)
        self.fake.bulk_load(start + timedelta(seconds=n) for n in range(150))
        answers = Answers(
            wanted=lambda request: request.url.path.endswith("/Invoices"),
            rows=lambda body: body["Invoices"],
            first_page=lambda request: request.url.params.get("page") == "1",
            final_page=lambda _body, count: count < XERO_PAGE_SIZE,
            since=xero_since,
            respell=respelled(("UpdatedDateUTC",), parse_dotnet_date, dotnet_spellings),
        )
        self.fake.add_fault(mixing(self.fake, answers, self.hostile, self.odd))

    def connect(self, stack: ExitStack) -> Connector:
        return stack.enter_context(test_xero.connect(self.fake))

    def good(self) -> dict[str, datetime]:
        return {
            invoice_id: parse_dotnet_date(invoice["UpdatedDateUTC"])
            for invoice_id, invoice in self.fake.ground_truth().items()
        }


# -- Stripe: objects listed (stamped by the read), then events (id data.object.id, created) -------

_event_numbers = itertools.count(1)


def stripe_event(record_id: object, time: object) -> dict[str, Any]:
    """An ``invoice.updated`` event as Stripe writes one."""
    return {
        "id": f"evt_hostile_{next(_event_numbers)}",
        "object": "event",
        "type": "invoice.updated",
        "created": time,
        "data": {"object": {"id": record_id, "object": "invoice", "status": "open"}},
    }


EPOCH_BREAKS: tuple[tuple[object, str], ...] = (
    (253402300800, "outside the range"),  # the first second past year 9999
    (-62135614800, "outside the range"),  # 0001-01-01T00:00:00+05:00
    ("last tuesday", "'last tuesday' is not a number of seconds"),
    ("2024-06-01T12:00:00Z", "is not a number of seconds"),  # text where a number belongs
    (True, "not True"),
    (None, "is missing"),
)
STRIPE_T0 = datetime(2024, 6, 1, 12, tzinfo=UTC)
STRIPE_FAR_FUTURE = stripe_event("in_far_future", 253402300799)


def listed(row: object, says: str) -> Hostile:
    """A listed object that is no invoice: the observation around it has no usable id."""
    return Hostile(row, ("data.object.id", says), shows=repr(row))


class Stripe(Case):
    """Invoices: 150 from history and 3 new ones; listed 100 to a page, then their events."""

    kind = StripeConnector
    events_hostile = broken(
        stripe_event,
        id_field="data.object.id",
        time_field="created",
        ids=[f"in_hostile_{n}" for n in range(len(EPOCH_BREAKS))],
        times=EPOCH_BREAKS,
        bad_ids=[True, HUGE, ""],
        good_time=int(STRIPE_T0.timestamp()),
        shows="evt_hostile_",
    )
    list_hostile = (
        listed({"id": True, "object": "invoice"}, "got True"),
        listed({"id": HUGE, "object": "invoice"}, f"got {HUGE!r}"),
        listed({"id": "", "object": "invoice"}, "got ''"),
        *(
            Hostile(row.row, ("'data.object' is not a JSON object", type(row.row).__name__))
            for row in NOT_OBJECTS
        ),
    )
    hostile = (*events_hostile, *list_hostile)
    # Events come newest first: the far-future one leads.
    odd = (Odd(STRIPE_FAR_FUTURE, "in_far_future", LAST_MOMENT, leads=True),)

    def __init__(self, _tmp_path: Path) -> None:
        self.fake = FakeStripe(clock=ManualClock(STRIPE_T0))
        self.clock = self.fake.clock
        history = [STRIPE_T0 - timedelta(days=60) + timedelta(seconds=n) for n in range(150)]
        self.history = self.fake.load("invoices", history)
        self.created = [self.fake.create_invoice() for _ in range(3)]
        self.clock.advance(timedelta(minutes=1))
        # The full read begins now and stamps what it lists clock_skew (5 minutes) before.
        self.stamp = self.clock() - timedelta(minutes=5)

        def first(request: httpx.Request) -> bool:
            return "starting_after" not in request.url.params

        def first_of_list(request: httpx.Request) -> bool:
            # The list's own first page: the ranges read after it and the probes are filtered.
            return first(request) and not any(
                name.startswith("created") for name in request.url.params
            )

        def final(body: Any, _count: int) -> bool:
            return body["has_more"] is False

        def since(request: httpx.Request) -> datetime | None:
            value = request.url.params.get("created[gte]")
            return None if value is None else parse_epoch_seconds(value)

        def answers(path: str, first_page: Callable[[httpx.Request], bool]) -> Answers:
            return Answers(
                wanted=lambda request: request.url.path == path,
                rows=lambda body: body["data"],
                first_page=first_page,
                final_page=final,
                since=since,
            )

        lists = answers("/v1/invoices", first_of_list)
        self.fake.add_fault(mixing(self.fake, lists, self.list_hostile, ()))
        events = answers("/v1/events", first)
        self.fake.add_fault(mixing(self.fake, events, self.events_hostile, self.odd))

    def connect(self, stack: ExitStack) -> Connector:
        base_url = stack.enter_context(self.fake.serve())
        connector = StripeConnector(
            base_url,
            secret_key=self.fake.secret_key,
            options=HttpOptions(sleep=no_sleep, clock=self.fake.clock),
        )
        return stack.enter_context(closing(connector))

    def good(self) -> dict[str, datetime]:
        # Listed invoices stand at the list's stamp; new ones at their invoice.created event.
        return {
            **dict.fromkeys(self.history, self.stamp),
            **dict.fromkeys(self.created, STRIPE_T0),
        }


# -- Pipedrive: id a positive integer, update_time RFC 3339 (v2) or zone-less UTC (v1) -----------


def pipedrive_row(record_id: object, time: object) -> dict[str, Any]:
    """A deal as Pipedrive's API v2 writes one."""
    return {"id": record_id, "update_time": time, "status": "open", "is_deleted": False}


def pipedrive_spellings(moment: datetime) -> list[str]:
    """Other spellings of ``moment``: ±14 h, ``Z``, ``z``, ``+0000`` and API v1's UTC."""
    return [*iso_spellings(moment), f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}"]


def pipedrive_rows(body: Any) -> list[Any]:
    """The deals of an answer (``data`` is null when there are none)."""
    if body.get("data") is None:
        body["data"] = []
    rows: list[Any] = body["data"]
    return rows


def pipedrive_since(request: httpx.Request) -> datetime | None:
    """The time a deal list asks from (``updated_since``)."""
    value = request.url.params.get("updated_since")
    return None if value is None else parse_timestamp(value, "updated_since")


PIPEDRIVE_START = datetime(2024, 3, 1, tzinfo=UTC)
PIPEDRIVE_LAST = PIPEDRIVE_START + timedelta(seconds=5 * 59)


class Pipedrive(Case):
    """Deals, 60 of them 5 seconds apart, 25 to a page."""

    kind = PipedriveConnector
    hostile = broken(
        pipedrive_row,
        id_field="id",
        time_field="update_time",
        ids=[900001 + n for n in range(len(ISO_BREAKS))],
        times=ISO_BREAKS,  # a time without a zone is v1's UTC, and valid
        bad_ids=[True, "", "77", 0, -3, 12.5],
        good_time="2024-03-01T00:00:00Z",
    )
    # Ids are integers, so a huge one is a deal: the newest of the last second, it ends the read.
    odd = (
        Odd(pipedrive_row(800001, "0001-01-01T00:00:00Z"), "800001", FIRST_MOMENT, leads=True),
        Odd(pipedrive_row(HUGE, f"{PIPEDRIVE_LAST:%Y-%m-%dT%H:%M:%SZ}"), str(HUGE), PIPEDRIVE_LAST),
        Odd(pipedrive_row(800002, "9999-12-31 23:59:59"), "800002", LAST_MOMENT),
    )

    def __init__(self, _tmp_path: Path) -> None:
        self.fake = FakePipedrive(limits=PipedriveLimits(per_window=None, daily=None))
        self.clock = self.fake.clock
        self.fake.load(PIPEDRIVE_START + timedelta(seconds=5 * n) for n in range(60))
        answers = Answers(
            wanted=lambda request: request.url.path == "/api/v2/deals",
            rows=pipedrive_rows,
            first_page=lambda request: "cursor" not in request.url.params,
            final_page=lambda body, _count: body["additional_data"]["next_cursor"] is None,
            since=pipedrive_since,
            respell=respelled(("update_time",), parse_timestamp, pipedrive_spellings),
        )
        self.fake.add_fault(mixing(self.fake, answers, self.hostile, self.odd))

    def connect(self, stack: ExitStack) -> Connector:
        base_url = stack.enter_context(self.fake.serve())
        connector = PipedriveConnector(
            base_url,
            api_token=self.fake.api_token,
            page_size=25,
            options=HttpOptions(sleep=no_sleep, clock=self.fake.clock),
        )
        return stack.enter_context(closing(connector))

    def good(self) -> dict[str, datetime]:
        return {
            deal_id: parse_timestamp(deal["update_time"])
            for deal_id, deal in self.fake.ground_truth().items()
        }


# -- REST: id text or integer, meta.updated_at ISO 8601; the fake stores malformed rows ----------


def rest_row(record_id: object, time: object) -> dict[str, Any]:
    """An item as the generic API writes one."""
    return {"id": record_id, "meta": {"updated_at": time}}


REST_START = datetime(2024, 5, 1, tzinfo=UTC)


def rest_odd(record_id: object, written: str, moment: datetime) -> Odd:
    """An item whose time is written another way (or whose id is an integer), kept in order."""
    return Odd(rest_row(record_id, written), str(record_id), moment)


class Rest(Case):
    """Items, 40 of them a second apart, 20 to a page, malformed ones stored in one second."""

    kind = RestConnector
    ordered: bool
    paging: Paging
    hostile = broken(
        rest_row,
        id_field="id",
        time_field="meta.updated_at",
        ids=[f"bad-time-{n}" for n in range(len(ISO_BREAKS) + 1)],
        times=[*ISO_BREAKS, ZONELESS],
        bad_ids=[True, "", 1e300, None],
        good_time="2024-05-01T00:00:41Z",
    )
    odd = (
        rest_odd("far-past", "0001-01-01T00:00:00Z", FIRST_MOMENT),
        rest_odd("east-14h", "2024-05-01T14:00:10+14:00", REST_START + timedelta(seconds=10)),
        rest_odd("west-14h", "2024-04-30T10:00:20-14:00", REST_START + timedelta(seconds=20)),
        rest_odd("lower-z", "2024-05-01T00:00:30z", REST_START + timedelta(seconds=30)),
        rest_odd("plus-0000", "2024-05-01T00:00:31+0000", REST_START + timedelta(seconds=31)),
        rest_odd(HUGE, "2024-05-01T00:00:35Z", REST_START + timedelta(seconds=35)),
        rest_odd("far-future", "9999-12-31T23:59:59Z", LAST_MOMENT),
    )

    def __init__(self, _tmp_path: Path) -> None:
        self.fake = FakeGenericRest(paging=self.paging)
        self.clock = self.fake.clock
        self.fake.load(40, REST_START)
        for odd in self.odd:
            self.fake.add_malformed(odd.row, odd.at)
        # All in one second, which a page boundary cuts: the next query from that second
        # returns them again (when the source is read in order).
        for row in self.hostile:
            self.fake.add_malformed(row.row, REST_START + timedelta(seconds=25))
        self.clock.set(REST_START + timedelta(hours=1))

    def connect(self, stack: ExitStack) -> Connector:
        config = test_rest.config_for(self.paging, size=20, ordered=self.ordered)
        return stack.enter_context(test_rest.serving(self.fake, config))

    def good(self) -> dict[str, datetime]:
        return {
            item_id: parse_timestamp(item["meta"]["updated_at"])
            for item_id, item in self.fake.ground_truth().items()
        }


class RestOrdered(Rest):
    """An API sorted by update time, paged by offset: read by the keyset driver."""

    ordered = True
    paging: Paging = "offset"


class RestUnordered(Rest):
    """An API in no promised order, paged by cursor tokens: read plainly."""

    ordered = False
    paging: Paging = "cursor"


# -- files: CSV and JSON Lines, id text (or an integer in JSON), updated_at ISO 8601 ---------------

FILES_START = datetime(2024, 6, 1, tzinfo=UTC)


def csv_line(record_id: object, time: object) -> str:
    """A CSV row of the export: id, updated_at, name."""
    return f"{record_id},{time},hostile"


def json_line(record_id: object, time: object) -> str:
    """A JSON Lines row of the export."""
    return json.dumps({"id": record_id, "updated_at": time, "name": "hostile"})


class Files(Case):
    """An export of 20 good rows with the hostile and odd ones between them, read 10 to a page."""

    kind = FileConnector
    suffix: str

    @abc.abstractmethod
    def line(self, record_id: object, time: object) -> str:
        """Write one row of the export."""

    def __init__(self, tmp_path: Path) -> None:
        self.clock = ManualClock(FILES_START + timedelta(days=30))
        self.path = tmp_path / f"export.{self.suffix}"
        self.rows = {f"g{n:02d}": FILES_START + timedelta(minutes=n) for n in range(1, 21)}
        lines = [
            self.line(row_id, iso_spellings(moment)[number % 5])
            for number, (row_id, moment) in enumerate(self.rows.items())
        ]
        extra = [*(str(row.row) for row in self.hostile), *(str(row.row) for row in self.odd)]
        for number, line in enumerate(extra):
            lines.insert(2 * number + 1, line)
        header = "id,updated_at,name\n" if self.suffix == "csv" else ""
        self.path.write_text(header + "".join(f"{line}\n" for line in lines), encoding="utf-8")

    def connect(self, stack: ExitStack) -> Connector:
        return FileConnector(
            self.path,
            id_column="id",
            updated_at_column="updated_at",
            page_size=10,
            skip_unchanged=False,  # every cycle reads the file whole, hostile rows again
        )

    def good(self) -> dict[str, datetime]:
        return dict(self.rows)


FILE_ODD = (
    ("far-past", "0001-01-01T00:00:00Z", FIRST_MOMENT),
    ("far-future", "9999-12-31T23:59:59Z", LAST_MOMENT),
)


class CsvFile(Files):
    """A CSV export: every value is text, so a row that is no object has the wrong width."""

    suffix = "csv"

    hostile = broken(
        csv_line,
        id_field="id",
        time_field="updated_at",
        ids=[f"h{n}" for n in range(len(ISO_BREAKS) + 1)],
        times=[
            *((time, says) for time, says in ISO_BREAKS if time not in (1717243200, None)),
            ("1717243200", "'1717243200' is not an ISO 8601 timestamp"),
            ("", "is missing"),
            ZONELESS,
        ],
        bad_ids=[""],
        good_time="2024-06-01T09:00:00Z",
        not_objects=(
            Hostile("a lone value", ("expected 3 columns, got 1",)),
            Hostile("a,b,c,d", ("expected 3 columns, got 4",)),
        ),
    )
    odd = (
        *(Odd(csv_line(i, written), i, at) for i, written, at in FILE_ODD),
        Odd(csv_line(HUGE, "2024-06-01T00:30:00Z"), str(HUGE), FILES_START + timedelta(minutes=30)),
    )

    def line(self, record_id: object, time: object) -> str:
        return csv_line(record_id, time)


class JsonLinesFile(Files):
    """A JSON Lines export: ids may be integers, and a line may be any JSON value, or none."""

    suffix = "jsonl"

    hostile = (
        *broken(
            json_line,
            id_field="id",
            time_field="updated_at",
            ids=[f"h{n}" for n in range(len(ISO_BREAKS) + 1)],
            times=[*ISO_BREAKS, ZONELESS],
            bad_ids=[True, "", 1.5, None],
            good_time="2024-06-01T09:00:00Z",
            not_objects=[Hostile(json.dumps(row.row), row.says) for row in NOT_OBJECTS],
        ),
        Hostile('{"id": "h-cut", "updated_at": ', ("not JSON",)),
    )
    odd = (
        *(Odd(json_line(i, written), i, at) for i, written, at in FILE_ODD),
        Odd(
            json_line(HUGE, "2024-06-01T00:30:00Z"), str(HUGE), FILES_START + timedelta(minutes=30)
        ),
    )

    def line(self, record_id: object, time: object) -> str:
        return json_line(record_id, time)


# -- the test ------------------------------------------------------------------------------------

CASES: dict[str, type[Case]] = {
    "quickbooks": QuickBooks,
    "hubspot": HubSpot,
    "salesforce": Salesforce,
    "xero": Xero,
    "stripe": Stripe,
    "pipedrive": Pipedrive,
    "rest-ordered": RestOrdered,
    "rest-unordered": RestUnordered,
    "files-csv": CsvFile,
    "files-jsonl": JsonLinesFile,
}


def assert_set_aside_once(rejected: Sequence[RejectedRecord], hostile: Sequence[Hostile]) -> None:
    """Each hostile row is listed once, with its id if readable and a reason saying what is off."""
    listed = [(entry.record_id, entry.reason) for entry in rejected]
    assert len(rejected) == len(hostile), listed
    found = set()
    for row in hostile:
        matches = [number for number, entry in enumerate(rejected) if row.matches(entry)]
        assert len(matches) == 1, (row, listed)
        found.add(matches[0])
    assert len(found) == len(hostile)


def held(store: SQLiteStore) -> dict[str, tuple[datetime, bool]]:
    """Every record the sink holds: its instant and whether it is a tombstone, by id."""
    return {t.record.id: (t.record.updated_at, t.record.deleted) for t in store.transactions(KEY)}


@pytest.mark.parametrize("name", CASES)
def test_hostile_rows_are_set_aside_once_and_every_good_row_is_applied(
    name: str, tmp_path: Path
) -> None:
    """Hostile rows between good ones never fail a cycle, whatever the connector.

    Through two engine cycles into a SQLite file, each hostile row is set aside once with a
    reason naming the field and what is wrong (or that the row is no object), though answers
    repeat it; every good row, odd-looking ones included (±14 h, ``z``, ``+0000``, far-future and
    far-past times that datetime holds, integer ids where the vendor's ids are integers), is
    applied at the instant it names, and no other record is.
    """
    case = CASES[name](tmp_path)
    expected = {record_id: (at, False) for record_id, at in case.truth().items()}
    with ExitStack() as stack:
        store = stack.enter_context(SQLiteStore(tmp_path / "incsync.db"))
        connector = case.connect(stack)
        assert isinstance(connector, case.kind)
        sync = SyncEngine(store, clock=case.clock)
        first = sync.run_cycle(KEY, connector)
        assert first.outcome is Outcome.COMPLETED, first.error
        assert first.rejected == len(case.hostile)
        assert_set_aside_once(sync.rejected(KEY), case.hostile)
        assert held(store) == expected
        case.clock.advance(timedelta(hours=1))
        second = sync.run_cycle(KEY, connector)
        assert second.outcome is Outcome.COMPLETED, second.error
        assert_set_aside_once(sync.rejected(KEY), case.hostile)
        assert held(store) == expected


def test_every_built_in_connector_has_a_case() -> None:
    """Every vendor connector, the REST connector (ordered and not) and the file connector (CSV
    and JSON Lines) are read here."""
    built_in = {name for name in vendor_names if name.endswith("Connector")}
    built_in |= {"RestConnector", "FileConnector"}
    assert {case.kind.__name__ for case in CASES.values()} == built_in
    rest = [case for case in CASES.values() if issubclass(case, Rest)]
    assert {case.ordered for case in rest} == {True, False}
    files = [case for case in CASES.values() if issubclass(case, Files)]
    assert {case.suffix for case in files} == {"csv", "jsonl"}


@contextmanager
def stripe_sync(fake: FakeStripe, tmp_path: Path) -> Iterator[tuple[SQLiteStore, Any, SyncEngine]]:
    """Yield a SQLite store, a Stripe connector to ``fake`` served on loopback, and an engine."""
    with ExitStack() as stack:
        store = stack.enter_context(SQLiteStore(tmp_path / "incsync.db"))
        base_url = stack.enter_context(fake.serve())
        connector = stack.enter_context(
            closing(
                StripeConnector(
                    base_url, secret_key=fake.secret_key, options=HttpOptions(clock=fake.clock)
                )
            )
        )
        yield store, connector, SyncEngine(store, clock=fake.clock)


def last_row_added(fake: FakeStripe, path: str, row: object) -> None:
    """Append ``row`` to every answer on ``path`` that has more pages after it."""

    def fault(request: httpx.Request) -> httpx.Response | None:
        if request.url.path != path:
            return None
        body = json.loads(fake.handle(request).read())
        if body["has_more"]:
            body["data"].append(row)
        return httpx.Response(200, json=body)

    fake.add_fault(fault)


def test_a_stripe_events_page_ending_in_a_row_that_is_no_event_loses_no_update(
    tmp_path: Path,
) -> None:
    """A row that is no object, last on an events page with more after it, is set aside and
    every update on the following pages still reaches the sink."""
    fake = FakeStripe(clock=ManualClock(STRIPE_T0))
    invoices = [fake.create_invoice() for _ in range(150)]
    fake.clock.advance(timedelta(hours=1))
    with stripe_sync(fake, tmp_path) as (store, connector, sync):
        assert sync.run_cycle(KEY, connector).outcome is Outcome.COMPLETED
        for number, invoice_id in enumerate(invoices):
            fake.clock.advance(timedelta(seconds=1))
            fake.update_invoice(invoice_id, description=f"change {number}")
        fake.clock.advance(timedelta(minutes=10))
        last_row_added(fake, "/v1/events", None)
        result = sync.run_cycle(KEY, connector)
        assert result.outcome is Outcome.COMPLETED, result.error
        assert result.rejected == 1
        held = {t.record.id: t.record.payload for t in store.transactions(KEY)}
    assert [held[i].get("description") for i in invoices] == [f"change {n}" for n in range(150)]


def test_a_stripe_list_page_ending_in_a_row_without_an_id_is_paged_past(tmp_path: Path) -> None:
    """A row without an id, last on a list page with more after it, is set aside; the list goes
    on after the last row that has one, and the full read completes with every invoice."""
    fake = FakeStripe(clock=ManualClock(STRIPE_T0))
    invoices = [fake.create_invoice() for _ in range(250)]
    fake.clock.advance(timedelta(hours=1))
    last_row_added(fake, "/v1/invoices", {"object": "invoice", "status": "draft"})
    with stripe_sync(fake, tmp_path) as (store, connector, sync):
        result = sync.run_cycle(KEY, connector)
        assert result.outcome is Outcome.COMPLETED, result.error
        assert result.rejected >= 1
        held = {t.record.id for t in store.transactions(KEY)}
    assert held == set(invoices)
