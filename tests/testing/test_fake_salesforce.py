"""FakeSalesforce answers plain httpx as the documented REST API does, in process and on HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import date, datetime, timedelta, timezone
from typing import Any

import attrs
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from incsync.errors import NaiveDatetimeError
from incsync.testing import ManualClock
from incsync.testing.fakes import FakeVendor
from incsync.testing.fakes._soql import SoqlError, compile_query
from incsync.testing.fakes.salesforce import FakeSalesforce, FieldValue

UTC = timezone.utc
T0 = datetime(2024, 6, 3, 9, 0, tzinfo=UTC)  # the fake's default clock starts here
V = "/services/data/v59.0"
IN_PROCESS = "https://fake.my.salesforce.com"
WIRE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000")


@attrs.frozen
class Org:
    """A fake org and an authorised client talking to it."""

    fake: FakeSalesforce
    http: httpx.Client
    base_url: str

    def query(
        self, soql: str, *, all_rows: bool = False, batch: int | None = None
    ) -> httpx.Response:
        headers = {} if batch is None else {"Sforce-Query-Options": f"batchSize={batch}"}
        resource = "queryAll" if all_rows else "query"
        return self.http.get(f"{V}/{resource}", params={"q": soql}, headers=headers)

    def pages(self, soql: str, *, all_rows: bool = False, batch: int | None = None) -> list[Any]:
        body = ok(self.query(soql, all_rows=all_rows, batch=batch))
        bodies = [body]
        while not body["done"]:
            body = ok(self.http.get(body["nextRecordsUrl"]))
            bodies.append(body)
        return bodies

    def rows(self, soql: str, *, all_rows: bool = False) -> list[Any]:
        return [row for page in self.pages(soql, all_rows=all_rows) for row in page["records"]]

    def ids(self, soql: str, *, all_rows: bool = False) -> list[str]:
        return [row["Id"] for row in self.rows(soql, all_rows=all_rows)]

    def deleted(self, start: str, end: str, sobject: str = "Account") -> httpx.Response:
        return self.http.get(
            f"{V}/sobjects/{sobject}/deleted/", params={"start": start, "end": end}
        )

    def refresh(self, **form: str) -> httpx.Response:
        fields = {"grant_type": "refresh_token", "client_id": "fake-consumer-key"}
        fields |= {
            "client_secret": "fake-consumer-secret",
            "refresh_token": self.fake.refresh_token,
        }
        return self.http.post("/services/oauth2/token", data=fields | form)


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def error(response: httpx.Response, status: int) -> dict[str, str]:
    """The single ``{message, errorCode}`` in Salesforce's error array."""
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, list)
    assert len(body) == 1
    assert set(body[0]) == {"message", "errorCode"}
    return dict(body[0])


Connect = Callable[[FakeSalesforce], Org]


class Relay(FakeVendor):
    """Passes requests to the fake under test, so one loopback server serves the whole module."""

    target: FakeSalesforce | None = None

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert self.target is not None
        return self.target.dispatch(request)


@pytest.fixture(scope="module")
def loopback() -> Iterator[tuple[Relay, str]]:
    """A real HTTP server on 127.0.0.1 (stopping one takes half a second, so it is shared)."""
    relay = Relay()
    with relay.serve() as base_url:
        yield relay, base_url


@pytest.fixture(params=["transport", "loopback"])
def connect(request: pytest.FixtureRequest) -> Iterator[Connect]:
    """Connects a client to a fake through MockTransport, then through real loopback HTTP."""
    with ExitStack() as stack:

        def open_org(fake: FakeSalesforce) -> Org:
            if request.param == "transport":
                base_url = IN_PROCESS
                client = httpx.Client(transport=fake.transport(), base_url=base_url)
            else:
                relay, base_url = request.getfixturevalue("loopback")
                relay.target = fake
                client = httpx.Client(base_url=base_url)
            http = stack.enter_context(client)
            http.headers["Authorization"] = f"Bearer {fake.issue_access_token()}"
            return Org(fake, http, base_url)

        yield open_org


@pytest.fixture
def org(connect: Connect) -> Org:
    return connect(FakeSalesforce())


def accounts(fake: FakeSalesforce, count: int, *, at: datetime = T0) -> list[str]:
    return fake.bulk_load("Account", ({"Name": f"Account {i}"} for i in range(count)), at=at)


def test_pages_follow_next_records_url_until_done(org: Org) -> None:
    """4,500 rows come as 2,000 + 2,000 + 500, each page linking the next until done."""
    ids = accounts(org.fake, 4_500)
    pages = org.pages("SELECT Id FROM Account")
    assert [len(page["records"]) for page in pages] == [2_000, 2_000, 500]
    assert {page["totalSize"] for page in pages} == {4_500}
    assert [page["done"] for page in pages] == [False, False, True]
    locator = r"^/services/data/v59\.0/query/01g[0-9A-Za-z]{15}-"
    assert re.match(locator + "2000$", pages[0]["nextRecordsUrl"])
    assert re.match(locator + "4000$", pages[1]["nextRecordsUrl"])
    assert "nextRecordsUrl" not in pages[2]
    assert sorted(row["Id"] for page in pages for row in page["records"]) == sorted(ids)


def test_records_have_the_documented_shape_and_wire_format(org: Org) -> None:
    """Attributes, then the selected fields in order; times like 2021-11-06T17:38:40.000+0000."""
    record_id = org.fake.add_record("Account", {"Name": "Acme"}, at=T0 + timedelta(seconds=1))
    fields = "Id, Name, IsDeleted, CreatedDate, LastModifiedDate, SystemModstamp, AnnualRevenue"
    response = org.query(f"SELECT {fields} FROM Account")
    assert response.headers["Content-Type"] == "application/json;charset=UTF-8"
    body = ok(response)
    assert list(body) == ["totalSize", "done", "records"]
    assert body["totalSize"] == 1
    assert body["done"] is True
    [record] = body["records"]
    stamp = "2024-06-03T09:00:01.000+0000"
    assert record == {
        "attributes": {"type": "Account", "url": f"{V}/sobjects/Account/{record_id}"},
        "Id": record_id,
        "Name": "Acme",
        "IsDeleted": False,
        "CreatedDate": stamp,
        "LastModifiedDate": stamp,
        "SystemModstamp": stamp,
        "AnnualRevenue": None,
    }
    assert list(record) == ["attributes", *fields.split(", ")]
    assert WIRE_TIME.fullmatch(record["SystemModstamp"])
    assert re.fullmatch(r"0015e0[0-9A-Za-z]{9}[A-Z0-5]{3}", record_id)


def test_batch_size_header_is_honoured_between_200_and_2000(org: Org) -> None:
    """Sforce-Query-Options: batchSize=N sets the page size, held between 200 and 2,000."""
    accounts(org.fake, 2_500)
    for asked, served in [(500, 500), (50, 200), (9_999, 2_000)]:
        body = ok(org.query("SELECT Id FROM Account", batch=asked))
        assert len(body["records"]) == served
        assert body["nextRecordsUrl"].endswith(f"-{served}")
        assert len(ok(org.http.get(body["nextRecordsUrl"]))["records"]) == min(
            served, 2_500 - served
        )


def test_batches_may_be_smaller_than_asked_even_under_a_limit(connect: Connect) -> None:
    """With max_batch_size, pages hold fewer rows than asked, a LIMIT answer's too (done false)."""
    org = connect(FakeSalesforce(max_batch_size=150))
    ids = accounts(org.fake, 500)
    limited = org.pages("SELECT Id FROM Account ORDER BY Id LIMIT 200", batch=200)
    assert [(p["totalSize"], len(p["records"]), p["done"]) for p in limited] == [
        (200, 150, False),
        (200, 50, True),
    ]
    assert [row["Id"] for page in limited for row in page["records"]] == ids[:200]
    every = org.pages("SELECT Id FROM Account")
    assert [len(page["records"]) for page in every] == [150, 150, 150, 50]


def test_a_query_locator_pages_through_a_snapshot_while_data_changes(connect: Connect) -> None:
    """Later pages return the result as it was when the query ran: old values, old rows, no new."""
    org = connect(FakeSalesforce(batch_size=2))
    ids = accounts(org.fake, 5)
    first = ok(
        org.query("SELECT Id, Name, SystemModstamp FROM Account ORDER BY SystemModstamp, Id")
    )
    org.fake.update_record("Account", ids[2], {"Name": "Renamed"}, at=T0 + timedelta(minutes=1))
    org.fake.delete_record("Account", ids[4], at=T0 + timedelta(minutes=1))
    added = org.fake.add_record("Account", {"Name": "New"}, at=T0 - timedelta(days=1))
    rest = ok(org.http.get(first["nextRecordsUrl"]))
    last = ok(org.http.get(rest["nextRecordsUrl"]))
    snapshot = first["records"] + rest["records"] + last["records"]
    assert [row["Id"] for row in snapshot] == ids
    assert snapshot[2]["Name"] == "Account 2"
    assert snapshot[2]["SystemModstamp"] == "2024-06-03T09:00:00.000+0000"
    assert {first["totalSize"], rest["totalSize"], last["totalSize"]} == {5}
    fresh = org.ids("SELECT Id FROM Account ORDER BY SystemModstamp, Id")
    assert fresh == [added, ids[0], ids[1], ids[3], ids[2]]


def test_query_locators_expire_after_fifteen_idle_minutes(connect: Connect) -> None:
    """Each page restarts the 15-minute idle timer; once it runs out, INVALID_QUERY_LOCATOR."""
    org = connect(FakeSalesforce(batch_size=1))
    accounts(org.fake, 3)
    first = ok(org.query("SELECT Id FROM Account"))
    org.fake.advance(timedelta(minutes=14, seconds=59))
    second = ok(org.http.get(first["nextRecordsUrl"]))
    org.fake.advance(timedelta(minutes=15))
    expired = error(org.http.get(second["nextRecordsUrl"]), 400)
    assert expired == {"message": "invalid query locator", "errorCode": "INVALID_QUERY_LOCATOR"}
    bogus = org.http.get(f"{V}/query/01gXX0000000000AAA-2000")
    assert error(bogus, 400)["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_closed_locators_and_offsets_past_the_end_are_invalid(connect: Connect) -> None:
    """expire_query_locators closes every cursor; an offset past the result is no locator."""
    org = connect(FakeSalesforce(batch_size=1))
    accounts(org.fake, 2)
    url = ok(org.query("SELECT Id FROM Account"))["nextRecordsUrl"]
    past_end = org.http.get(url.replace("-1", "-2"))
    assert error(past_end, 400)["errorCode"] == "INVALID_QUERY_LOCATOR"
    org.fake.expire_query_locators()
    assert error(org.http.get(url), 400)["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_only_the_ten_newest_query_locators_stay_open(connect: Connect) -> None:
    """Opening an eleventh locator closes the oldest, as Salesforce does per user."""
    org = connect(FakeSalesforce(batch_size=1))
    accounts(org.fake, 2)
    urls = [ok(org.query("SELECT Id FROM Account"))["nextRecordsUrl"] for _ in range(11)]
    assert org.fake.open_query_locators == 10
    assert error(org.http.get(urls[0]), 400)["errorCode"] == "INVALID_QUERY_LOCATOR"
    assert ok(org.http.get(urls[1]))["done"] is True


def test_greater_or_equal_keeps_every_row_sharing_the_boundary_millisecond(
    connect: Connect,
) -> None:
    """Filters compare at millisecond precision; >= keeps all rows equal to the boundary."""
    org = connect(FakeSalesforce(timestamp_precision=timedelta(milliseconds=1)))
    ms = timedelta(milliseconds=1)
    at = [T0 + 122 * ms, T0 + 123 * ms, T0 + 123 * ms, T0 + 123 * ms, T0 + 124 * ms]
    ids = [
        org.fake.add_record("Account", {"Name": str(i)}, at=moment) for i, moment in enumerate(at)
    ]
    base = "SELECT Id FROM Account WHERE SystemModstamp "
    assert sorted(org.ids(base + ">= 2024-06-03T09:00:00.123Z")) == ids[1:]
    assert org.ids(base + "> 2024-06-03T09:00:00.123Z") == [ids[4]]
    assert org.ids(base + "< 2024-06-03T09:00:00.123Z") == [ids[0]]
    between = ">= 2024-06-03T09:00:00.123Z AND SystemModstamp < 2024-06-03T09:00:00.124Z"
    assert sorted(org.ids(base + between)) == ids[1:4]
    for same_instant in ("11:00:00.123+02:00", "11:00:00.123+0200", "09:00:00.123456Z"):
        assert sorted(org.ids(f"{base}>= 2024-06-03T{same_instant}")) == ids[1:]


@given(
    offsets=st.lists(st.integers(0, 5_000), min_size=1, max_size=30),
    boundary=st.integers(0, 5_000),
)
def test_filtering_and_ordering_match_a_brute_force_reading(
    offsets: list[int], boundary: int
) -> None:
    """For any stamps (ms apart), >= boundary ORDER BY SystemModstamp, Id is the obvious answer."""
    fake = FakeSalesforce(timestamp_precision=timedelta(milliseconds=1))
    stamps = [T0 + timedelta(milliseconds=offset) for offset in offsets]
    ids = [fake.add_record("Account", at=stamp) for stamp in stamps]
    edge = (T0 + timedelta(milliseconds=boundary)).isoformat(timespec="milliseconds")
    soql = f"SELECT Id FROM Account WHERE SystemModstamp >= {edge} ORDER BY SystemModstamp, Id"
    with httpx.Client(transport=fake.transport(), base_url=IN_PROCESS) as http:
        http.headers["Authorization"] = f"Bearer {fake.issue_access_token()}"
        got = [r["Id"] for r in ok(http.get(f"{V}/query", params={"q": soql}))["records"]]
    assert got == [
        i
        for s, i in sorted(zip(stamps, ids, strict=True))
        if s >= T0 + timedelta(milliseconds=boundary)
    ]


def test_system_timestamps_are_stored_to_the_second_by_default(org: Org) -> None:
    """Salesforce keeps no milliseconds: a write at .789 reads back as .000 and filters so."""
    record_id = org.fake.add_record("Account", {"Name": "A"}, at=T0 + timedelta(milliseconds=789))
    assert org.fake.record("Account", record_id)["SystemModstamp"] == T0
    [row] = org.rows("SELECT SystemModstamp FROM Account")
    assert row["SystemModstamp"] == "2024-06-03T09:00:00.000+0000"
    assert org.ids("SELECT Id FROM Account WHERE SystemModstamp >= 2024-06-03T09:00:00.500Z") == []


def test_order_by_systemmodstamp_then_id_is_a_total_order(org: Org) -> None:
    """ORDER BY SystemModstamp, Id sorts ties by Id, ASC or DESC; Id > '...' filters on it."""
    seconds = [3, 1, 2, 1, 3, 1]
    ids = [
        org.fake.add_record("Account", {"Name": str(i)}, at=T0 + timedelta(seconds=s))
        for i, s in enumerate(seconds)
    ]
    expected = [i for _, i in sorted(zip(seconds, ids, strict=True))]
    assert org.ids("SELECT Id FROM Account ORDER BY SystemModstamp, Id") == expected
    assert org.ids("SELECT Id FROM Account ORDER BY SystemModstamp DESC, Id DESC") == expected[::-1]
    since = "SELECT Id FROM Account WHERE SystemModstamp >= 2024-06-03T09:00:01Z"
    after = f"{since} AND Id > '{expected[1]}' ORDER BY SystemModstamp, Id LIMIT 3"
    assert org.ids(after) == [i for i in expected[2:] if i > expected[1]][:3]
    assert org.ids(
        f"{since} AND Id > '{expected[1][:15]}' ORDER BY SystemModstamp, Id LIMIT 3"
    ) == (org.ids(after))


def test_rows_tied_on_every_order_key_come_in_no_stable_order(org: Org) -> None:
    """Ties (and everything, without ORDER BY) come in an order neither by Id nor repeatable."""
    ids = accounts(org.fake, 40)
    first = org.ids("SELECT Id FROM Account ORDER BY SystemModstamp")
    second = org.ids("SELECT Id FROM Account ORDER BY SystemModstamp")
    assert sorted(first) == sorted(second) == ids
    assert first not in (ids, second)
    assert org.ids("SELECT Id FROM Account") != ids


def test_limit_and_offset_cap_the_result(org: Org) -> None:
    """LIMIT caps totalSize (and is paged like any result); OFFSET skips, up to 2,000."""
    ids = accounts(org.fake, 2_500)
    small = ok(org.query("SELECT Id FROM Account LIMIT 3"))
    assert (small["totalSize"], small["done"], len(small["records"])) == (3, True, 3)
    pages = org.pages("SELECT Id FROM Account LIMIT 2100")
    assert [(p["totalSize"], len(p["records"])) for p in pages] == [(2_100, 2_000), (2_100, 100)]
    assert org.ids("SELECT Id FROM Account ORDER BY Id LIMIT 2 OFFSET 2") == ids[2:4]
    too_far = error(org.query("SELECT Id FROM Account OFFSET 2001"), 400)
    assert too_far["errorCode"] == "NUMBER_OUTSIDE_VALID_RANGE"


def test_query_hides_deleted_rows_and_query_all_shows_them(connect: Connect) -> None:
    """Deleted rows vanish from query; queryAll returns them with IsDeleted true and a new stamp."""
    org = connect(FakeSalesforce(batch_size=1))
    ids = accounts(org.fake, 3)
    org.fake.delete_record("Account", ids[1], at=T0 + timedelta(minutes=5))
    assert sorted(org.ids("SELECT Id FROM Account")) == [ids[0], ids[2]]
    rows = org.rows("SELECT Id, IsDeleted, SystemModstamp FROM Account ORDER BY Id", all_rows=True)
    assert [(r["Id"], r["IsDeleted"]) for r in rows] == [
        (ids[0], False),
        (ids[1], True),
        (ids[2], False),
    ]
    assert rows[1]["SystemModstamp"] == "2024-06-03T09:05:00.000+0000"
    only_deleted = "SELECT Id FROM Account WHERE IsDeleted = TRUE"
    assert org.ids(only_deleted, all_rows=True) == [ids[1]]
    assert org.ids(only_deleted) == []
    first = ok(org.query("SELECT Id FROM Account", all_rows=True))
    assert f"{V}/query/01g" in first["nextRecordsUrl"]


def test_in_selects_by_a_list_of_ids_and_id_order_pages_by_id(connect: Connect) -> None:
    """``Id IN (...)`` selects those rows (18 or 15 characters); ``Id > x ORDER BY Id`` pages."""
    org = connect(FakeSalesforce())
    ids = sorted(accounts(org.fake, 5))
    chosen = f"SELECT Id FROM Account WHERE Id IN ('{ids[3]}', '{ids[1][:15]}')"
    assert sorted(org.ids(chosen)) == [ids[1], ids[3]]
    after = f"SELECT Id FROM Account WHERE Id > '{ids[1]}' ORDER BY Id LIMIT 2"
    assert org.ids(after) == ids[2:4]


def test_deleted_rows_are_gone_for_good_after_fifteen_days(connect: Connect) -> None:
    """The recycle bin keeps a deleted row 15 days; then queryAll, getDeleted and truth lose it."""
    org = connect(FakeSalesforce(session_lifetime=timedelta(days=30)))
    [record_id] = accounts(org.fake, 1)
    org.fake.delete_record("Account", record_id)
    org.fake.advance(timedelta(days=15) - timedelta(seconds=1))
    assert org.ids("SELECT Id FROM Account", all_rows=True) == [record_id]
    org.fake.advance(timedelta(seconds=1))
    assert org.ids("SELECT Id FROM Account", all_rows=True) == []
    assert org.fake.deleted_ids("Account") == set()
    with pytest.raises(KeyError):
        org.fake.record("Account", record_id)


def test_undelete_brings_a_record_back_with_a_new_stamp(org: Org) -> None:
    """Undelete makes the row live again, moves its stamps, and takes it out of the delete log."""
    [record_id] = accounts(org.fake, 1)
    org.fake.delete_record("Account", record_id, at=T0 + timedelta(minutes=1))
    org.fake.undelete_record("Account", record_id, at=T0 + timedelta(minutes=2))
    org.fake.advance(timedelta(minutes=5))
    [row] = org.rows("SELECT Id, SystemModstamp FROM Account")
    assert row["SystemModstamp"] == "2024-06-03T09:02:00.000+0000"
    window = ok(org.deleted("2024-06-03T09:00:00Z", "2024-06-03T09:05:00Z"))
    assert window["deletedRecords"] == []


def test_an_automated_touch_moves_systemmodstamp_only(org: Org) -> None:
    """A touch moves SystemModstamp but not LastModifiedDate: only the former catches it."""
    [record_id] = accounts(org.fake, 1)
    org.fake.update_record("Account", record_id, {"Industry": "Retail"}, at=T0 + timedelta(hours=1))
    org.fake.touch_record("Account", record_id, at=T0 + timedelta(hours=2))
    truth = org.fake.record("Account", record_id)
    assert (truth["LastModifiedDate"], truth["SystemModstamp"]) == (
        T0 + timedelta(hours=1),
        T0 + timedelta(hours=2),
    )
    assert org.ids("SELECT Id FROM Account WHERE SystemModstamp >= 2024-06-03T11:00:00Z") == [
        record_id
    ]
    assert org.ids("SELECT Id FROM Account WHERE LastModifiedDate >= 2024-06-03T11:00:00Z") == []


def test_get_deleted_lists_deletions_in_the_window_like_the_documented_example(
    connect: Connect,
) -> None:
    """getDeleted ignores seconds, answers the documented keys, and covers no later than now."""
    org = connect(FakeSalesforce(session_lifetime=timedelta(days=1)))
    first, second = accounts(org.fake, 2)
    org.fake.delete_record("Account", first, at=T0 + timedelta(hours=1, seconds=30))
    org.fake.delete_record("Account", second, at=T0 + timedelta(hours=2))
    org.fake.advance(timedelta(hours=3, seconds=42))
    body = ok(org.deleted("2024-06-03T09:00:59Z", "2024-06-03T10:01:59+00:00"))
    assert body == {
        "deletedRecords": [{"id": first, "deletedDate": "2024-06-03T10:00:30.000+0000"}],
        "earliestDateAvailable": "2024-05-19T12:00:00.000+0000",
        "latestDateCovered": "2024-06-03T10:01:00.000+0000",
    }
    later = ok(org.deleted("2024-06-03T10:01:00Z", "2024-06-04T00:00:00Z"))
    assert [r["id"] for r in later["deletedRecords"]] == [second]
    assert later["latestDateCovered"] == "2024-06-03T12:00:00.000+0000"


def test_get_deleted_refuses_starts_older_than_fifteen_days(org: Org) -> None:
    """A start before 15 days back (or an emptied recycle bin) is INVALID_REPLICATION_DATE."""
    end = "2024-06-03T09:00:00Z"
    refused = error(org.deleted("2024-05-19T08:59:00Z", end), 400)
    assert refused["errorCode"] == "INVALID_REPLICATION_DATE"
    assert ok(org.deleted("2024-05-19T09:00:00Z", end))["deletedRecords"] == []
    org.fake.purge_deleted("Account", before=T0 - timedelta(days=1))
    purged = error(org.deleted("2024-06-01T09:00:00Z", end), 400)
    assert purged["errorCode"] == "INVALID_REPLICATION_DATE"


def test_get_deleted_refuses_bad_windows(org: Org) -> None:
    """Start and end in one minute, a missing bound, or an unknown object are refused."""
    same_minute = error(org.deleted("2024-06-03T08:59:10Z", "2024-06-03T08:59:50Z"), 400)
    assert same_minute["errorCode"] == "INVALID_REPLICATION_DATE"
    missing = org.http.get(
        f"{V}/sobjects/Account/deleted/", params={"start": "2024-06-03T08:00:00Z"}
    )
    assert error(missing, 400)["errorCode"] == "MISSING_ARGUMENT"
    unknown = error(org.deleted("2024-06-03T08:00:00Z", "2024-06-03T09:00:00Z", "Nope__c"), 404)
    assert unknown["errorCode"] == "NOT_FOUND"


def test_get_deleted_refuses_unreadable_dates_and_too_many_ids(connect: Connect) -> None:
    """A start that is no dateTime is refused; more IDs than the cap is EXCEEDED_ID_LIMIT."""
    org = connect(FakeSalesforce(max_deleted_ids=1))
    for record_id in accounts(org.fake, 2):
        org.fake.delete_record("Account", record_id)
    org.fake.advance(timedelta(minutes=2))
    unreadable = error(org.deleted("yesterday", "2024-06-03T09:01:00Z"), 400)
    assert unreadable["errorCode"] == "INVALID_REPLICATION_DATE"
    impossible = error(org.deleted("2024-02-30T00:00:00Z", "2024-06-03T09:01:00Z"), 400)
    assert impossible["errorCode"] == "INVALID_REPLICATION_DATE"
    too_many = error(org.deleted("2024-06-03T08:00:00Z", "2024-06-03T09:01:00Z"), 400)
    assert too_many["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_the_daily_limit_answers_403_request_limit_exceeded(org: Org) -> None:
    """Past the daily limit every call is 403 REQUEST_LIMIT_EXCEEDED (never 429), usage shown."""
    org.fake.set_api_usage(4_998, 5_000)
    limits = ok(org.http.get(f"{V}/limits"))
    assert limits["DailyApiRequests"] == {"Max": 5_000, "Remaining": 1}
    assert org.query("SELECT Id FROM Account").headers["Sforce-Limit-Info"] == "api-usage=5000/5000"
    refused = org.query("SELECT Id FROM Account")
    assert refused.status_code == 403
    assert refused.json() == [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]
    assert refused.headers["Sforce-Limit-Info"] == "api-usage=5000/5000"
    assert org.fake.api_usage == (5_000, 5_000)


def test_every_api_response_reports_usage_but_the_token_endpoint_does_not(org: Org) -> None:
    """Each API call, an error too, counts and says api-usage=N/limit; OAuth calls do not."""
    assert org.query("SELECT Id FROM Account").headers["Sforce-Limit-Info"] == "api-usage=1/5000"
    bad = org.query("SELECT Nope FROM Account")
    assert (bad.status_code, bad.headers["Sforce-Limit-Info"]) == (400, "api-usage=2/5000")
    assert "Sforce-Limit-Info" not in org.refresh().headers
    assert org.fake.api_usage == (2, 5_000)


def test_the_concurrent_request_limit_is_a_403_too(org: Org) -> None:
    """A burst/concurrency rejection is 403 REQUEST_LIMIT_EXCEEDED with its own message."""
    org.fake.reject_concurrent_requests(1)
    rejected = error(org.query("SELECT Id FROM Account"), 403)
    assert rejected == {
        "message": "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
        "errorCode": "REQUEST_LIMIT_EXCEEDED",
    }
    ok(org.query("SELECT Id FROM Account"))


def test_an_expired_or_missing_session_is_401_invalid_session_id(org: Org) -> None:
    """After the session lifetime, with no token, or once ended, the answer is 401."""
    expected = {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    org.fake.advance(timedelta(hours=2) - timedelta(seconds=1))
    ok(org.query("SELECT Id FROM Account"))
    org.fake.advance(timedelta(seconds=1))
    assert error(org.query("SELECT Id FROM Account"), 401) == expected
    anonymous = org.http.get(
        f"{V}/query", params={"q": "SELECT Id FROM Account"}, headers={"Authorization": ""}
    )
    assert error(anonymous, 401) == expected
    org.http.headers["Authorization"] = f"Bearer {org.fake.issue_access_token()}"
    org.fake.expire_access_tokens()
    assert error(org.query("SELECT Id FROM Account"), 401) == expected


def test_a_refresh_returns_a_working_token_for_this_instance(org: Org) -> None:
    """The refresh grant answers Salesforce's fields (no expires_in) and a usable access token."""
    org.fake.advance(timedelta(hours=3))
    assert org.query("SELECT Id FROM Account").status_code == 401
    body = ok(org.refresh())
    assert set(body) == {
        "access_token",
        "signature",
        "scope",
        "instance_url",
        "id",
        "token_type",
        "issued_at",
    }
    assert body["instance_url"] == org.base_url
    assert body["token_type"] == "Bearer"
    assert body["issued_at"] == str(int((T0 + timedelta(hours=3)).timestamp() * 1000))
    digest = hmac.new(
        b"fake-consumer-secret", (body["id"] + body["issued_at"]).encode(), hashlib.sha256
    ).digest()
    assert body["signature"] == base64.b64encode(digest).decode()
    org.http.headers["Authorization"] = f"Bearer {body['access_token']}"
    ok(org.query("SELECT Id FROM Account"))
    ok(org.refresh())  # without rotation the same refresh token keeps working


def test_rotation_issues_a_new_refresh_token_and_kills_the_old_one(connect: Connect) -> None:
    """With rotation each refresh returns a new refresh_token; the used one is invalid_grant."""
    org = connect(FakeSalesforce(rotate_refresh_tokens=True))
    old = org.fake.refresh_token
    body = ok(org.refresh(refresh_token=old))
    assert body["refresh_token"] not in (old, None)
    assert org.fake.refresh_token == body["refresh_token"]
    stale = org.refresh(refresh_token=old)
    assert stale.status_code == 400
    assert stale.json() == {
        "error": "invalid_grant",
        "error_description": "expired access/refresh token",
    }
    assert (
        ok(org.refresh(refresh_token=body["refresh_token"]))["refresh_token"]
        != body["refresh_token"]
    )


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ({"client_id": "other"}, ("invalid_client_id", "client identifier invalid")),
        ({"client_secret": "other"}, ("invalid_client", "invalid client credentials")),
        ({"grant_type": "password"}, ("unsupported_grant_type", "grant type not supported")),
        ({"refresh_token": "forged"}, ("invalid_grant", "expired access/refresh token")),
    ],
)
def test_the_token_endpoint_refuses_bad_clients_and_grants(
    org: Org, form: dict[str, str], expected: tuple[str, str]
) -> None:
    """OAuth errors are 400 with {error, error_description}, not Salesforce's error array."""
    refused = org.refresh(**form)
    assert refused.status_code == 400
    assert refused.json() == {"error": expected[0], "error_description": expected[1]}


def test_revoked_refresh_tokens_and_gets_are_refused(org: Org) -> None:
    """A revoked refresh token is invalid_grant; the token endpoint takes only POST."""
    org.fake.revoke_refresh_tokens()
    assert org.refresh().json()["error"] == "invalid_grant"
    assert org.http.get("/services/oauth2/token").json()["error"] == "invalid_request"


def test_a_quoted_datetime_literal_is_refused(org: Org) -> None:
    """Quoting a dateTime is refused as Salesforce does (INVALID_FIELD, see jsforce/jsforce#851)."""
    soql = "SELECT Id FROM Account WHERE SystemModstamp >= '2024-01-01T00:00:00Z'"
    refused = error(org.query(soql), 400)
    assert refused["errorCode"] == "INVALID_FIELD"
    assert refused["message"].endswith(
        "ERROR at Row:1:Column:48\nvalue of filter criterion for field 'SystemModstamp' "
        "must be of type dateTime and should not be enclosed in quotes"
    )


W = "SELECT Id FROM Account WHERE "
UNSUPPORTED = "FakeSalesforce does not support"


@pytest.mark.parametrize(
    ("soql", "code", "detail"),
    [
        (
            "SELECT Id, Foo FROM Account",
            "INVALID_FIELD",
            "No such column 'Foo' on entity 'Account'",
        ),
        (W + "Foo = 'x'", "INVALID_FIELD", "No such column 'Foo'"),
        ("SELECT Id FROM Account ORDER BY Foo", "INVALID_FIELD", "No such column 'Foo'"),
        ("SELECT Id FROM Acount", "INVALID_TYPE", "sObject type 'Acount' is not supported"),
        ("SELECT * FROM Account", "MALFORMED_QUERY", "unexpected token: '*'"),
        ("SELECT Id, Id FROM Account", "MALFORMED_QUERY", "duplicate field selected: Id"),
        ("SELECT Id Account", "MALFORMED_QUERY", "unexpected token: 'Account'"),
        (W + "SystemModstamp > 2024-01-01T00:00:00", "MALFORMED_QUERY", "character '<EOF>'"),
        (W + "SystemModstamp > 2024-01-01 00:00:00Z", "MALFORMED_QUERY", "token: '00:00:00Z'"),
        (W + "SystemModstamp > 2024-13-01T00:00:00Z", "MALFORMED_QUERY", "Invalid datetime"),
        (W + "SystemModstamp > 2024-01-01", "INVALID_FIELD", "must be of type dateTime"),
        (
            W + "Name = 5",
            "INVALID_FIELD",
            "must be of type string and should be enclosed in quotes",
        ),
        (W + "Id = 'abc'", "INVALID_QUERY_FILTER_OPERATOR", "invalid ID field: abc"),
        (W + "IsDeleted > TRUE", "INVALID_QUERY_FILTER_OPERATOR", "boolean field: IsDeleted"),
        (W + "Name = 'a' OR Name = 'b'", "MALFORMED_QUERY", f"{UNSUPPORTED} OR"),
        ("SELECT FIELDS(ALL) FROM Account", "MALFORMED_QUERY", f"{UNSUPPORTED} functions"),
        ("SELECT Owner.Name FROM Account", "MALFORMED_QUERY", f"{UNSUPPORTED} relationship"),
        (W + "CreatedDate = TODAY", "MALFORMED_QUERY", f"{UNSUPPORTED} date literals"),
        (W + "CreatedDate = LAST_N_DAYS:5", "MALFORMED_QUERY", f"{UNSUPPORTED} date literals"),
        ("SELECT (SELECT Id FROM Contacts) FROM Account", "MALFORMED_QUERY", "subqueries"),
        ("SELECT TYPEOF Owner END FROM Account", "MALFORMED_QUERY", f"{UNSUPPORTED} TYPEOF"),
        (W + "(Name = 'a')", "MALFORMED_QUERY", f"{UNSUPPORTED} parentheses"),
        (W + "NOT Name = 'a'", "MALFORMED_QUERY", f"{UNSUPPORTED} NOT"),
        (W + "Name NOT IN ('a')", "MALFORMED_QUERY", f"{UNSUPPORTED} NOT"),
        (W + "Id IN ('nope')", "INVALID_QUERY_FILTER_OPERATOR", "invalid ID field: nope"),
        (W + "Name LIKE 'a%'", "MALFORMED_QUERY", f"{UNSUPPORTED} LIKE"),
        (W + "Name = 'a' #", "MALFORMED_QUERY", "no viable alternative at character '#'"),
        (W + "Name = 'O\\q'", "MALFORMED_QUERY", "Illegal character sequence '\\q'"),
        (W + "Name ~ 'a'", "MALFORMED_QUERY", "no viable alternative at character '~'"),
        (W + "Name = Name", "MALFORMED_QUERY", "unexpected token: 'Name'"),
        (W + "Name = ,", "MALFORMED_QUERY", "unexpected token: ','"),
        (W + "Name 'a'", "MALFORMED_QUERY", "unexpected token: ''a''"),
        (W + "LAST_N_DAYS:5 = Name", "MALFORMED_QUERY", f"{UNSUPPORTED} date literals"),
        ("SELECT Id FROM Account LIMIT ten", "MALFORMED_QUERY", "unexpected token: 'ten'"),
        ("SELECT Id FROM Account GROUP BY Id", "MALFORMED_QUERY", f"{UNSUPPORTED} GROUP"),
        ("SELECT Id FROM Opportunity WHERE CloseDate > 2024-02-30", "MALFORMED_QUERY",
         "Invalid date"),
    ],
)  # fmt: skip
def test_queries_salesforce_refuses_are_refused_alike(
    org: Org, soql: str, code: str, detail: str
) -> None:
    """Bad SOQL gets Salesforce's errorCode and a message with the caret, row and column."""
    refused = error(org.query(soql), 400)
    assert refused["errorCode"] == code
    assert detail in refused["message"]


def test_soql_longer_than_100000_characters_is_refused() -> None:
    """Salesforce caps SOQL at 100,000 characters (too long for a GET URL here anyway)."""
    soql = f"SELECT Id FROM Account WHERE Name = '{'x' * 100_000}'"
    with pytest.raises(SoqlError, match="MALFORMED_QUERY: SOQL statements cannot be longer"):
        compile_query(soql, {"Account": {"Id": "id", "Name": "string"}})


def test_a_missing_query_and_an_unencoded_plus_are_malformed(org: Org) -> None:
    """No q is MALFORMED_QUERY; a raw '+' in a URL is a space, so '+0000' must be encoded."""
    assert error(org.http.get(f"{V}/query"), 400) == {
        "message": "A query string has to be specified",
        "errorCode": "MALFORMED_QUERY",
    }
    raw = f"{V}/query?q=SELECT+Id+FROM+Account+WHERE+SystemModstamp+>+2020-03-17T21:04:32.000+0000"
    assert "no viable alternative at character ' '" in error(org.http.get(raw), 400)["message"]
    ok(org.query("SELECT Id FROM Account WHERE SystemModstamp > 2020-03-17T21:04:32.000+0000"))


def test_nulls_escapes_dates_and_null_ordering_behave_as_in_soql(org: Org) -> None:
    """= null and != null test for null; != keeps nulls; quotes escape; NULLS LAST; dates."""
    add = org.fake.add_record
    plain = add("Opportunity", {"Name": "Plain", "CloseDate": date(2024, 7, 1), "IsClosed": True})
    quoted = add("Opportunity", {"Name": "O'Brien", "CloseDate": None, "IsClosed": False})
    unnamed = add("Opportunity", {"Name": None, "CloseDate": date(2024, 5, 1), "IsClosed": False})
    base = "SELECT Id FROM Opportunity WHERE "
    assert org.ids(base + "Name = null") == [unnamed]
    assert sorted(org.ids(base + "Name != null")) == sorted([plain, quoted])
    assert sorted(org.ids(base + "Name != 'Plain'")) == sorted([quoted, unnamed])
    assert org.ids(base + "Name = 'o\\'brien'") == [quoted]
    assert org.ids(base + "Name < null") == []
    assert org.ids(base + "CloseDate >= 2024-06-01 AND IsClosed = TRUE") == [plain]
    ordered = "SELECT Id, CloseDate FROM Opportunity ORDER BY CloseDate "
    assert org.ids(ordered + "ASC NULLS LAST") == [unnamed, plain, quoted]
    assert org.ids(ordered + "DESC NULLS FIRST") == [quoted, plain, unnamed]
    assert org.ids(ordered) == [quoted, unnamed, plain]  # nulls first by default
    assert org.rows(ordered + "LIMIT 1 OFFSET 2")[0]["CloseDate"] == "2024-07-01"


def test_soql_names_and_keywords_are_case_insensitive(org: Org) -> None:
    """Lower-case keywords, objects and fields work; answers use the canonical spelling."""
    [record_id] = accounts(org.fake, 1)
    soql = "select id, name from account where systemmodstamp >= 2024-01-01T00:00:00Z order by id"
    [row] = org.rows(soql)
    assert row == {
        "attributes": {"type": "Account", "url": f"{V}/sobjects/Account/{record_id}"},
        "Id": record_id,
        "Name": "Account 0",
    }
    assert org.ids(f"SELECT Id FROM Account WHERE Name = 'ACCOUNT 0' AND Id = '{record_id}'") == [
        record_id
    ]


def test_query_failures_and_slowness_can_be_injected(connect: Connect) -> None:
    """fail_queries answers QUERY_TIMEOUT/500/503 once each; slow_queries sleeps per query."""
    slept: list[float] = []
    org = connect(FakeSalesforce(sleep=slept.append))
    org.fake.slow_queries(2.5)
    org.fake.fail_queries(1)
    org.fake.fail_queries(1, error="UNKNOWN_EXCEPTION")
    org.fake.fail_queries(1, error="SERVER_UNAVAILABLE")
    assert error(org.query("SELECT Id FROM Account"), 400)["errorCode"] == "QUERY_TIMEOUT"
    assert error(org.query("SELECT Id FROM Account"), 500)["errorCode"] == "UNKNOWN_EXCEPTION"
    assert error(org.query("SELECT Id FROM Account"), 503)["errorCode"] == "SERVER_UNAVAILABLE"
    ok(org.query("SELECT Id FROM Account"))
    assert slept == [2.5] * 4
    with pytest.raises(ValueError, match="error must be one of"):
        org.fake.fail_queries(error="NOPE")


def test_unknown_resources_versions_and_methods_are_refused(org: Org) -> None:
    """Unknown paths and API versions are 404 NOT_FOUND; writes to query are 405."""
    assert error(org.http.get(f"{V}/nothing"), 404)["errorCode"] == "NOT_FOUND"
    assert error(org.http.get("/nothing"), 404)["errorCode"] == "NOT_FOUND"
    assert error(org.http.get("/services/data/v10.0/query?q=x"), 404)["errorCode"] == "NOT_FOUND"
    assert error(org.http.post(f"{V}/query"), 405)["errorCode"] == "METHOD_NOT_ALLOWED"


def test_a_bulk_load_of_25000_records_pages_back_complete_and_ordered(org: Org) -> None:
    """25,000 rows load at once and come back over 13 pages in SystemModstamp, Id order."""
    spread = [T0 + timedelta(seconds=second) for second in range(97)]
    rows: Iterator[dict[str, FieldValue]] = (
        {"Name": f"A{i}", "SystemModstamp": spread[i % 97]} for i in range(25_000)
    )
    ids = org.fake.bulk_load("Account", rows)
    pages = org.pages("SELECT Id, SystemModstamp FROM Account ORDER BY SystemModstamp, Id")
    assert len(pages) == 13
    got = [(r["SystemModstamp"], r["Id"]) for page in pages for r in page["records"]]
    assert got == sorted(got)
    assert sorted(i for _, i in got) == sorted(ids)


def test_custom_objects_and_fields_can_be_defined(org: Org) -> None:
    """define_sobject adds custom objects (a00 prefix) and fields, queryable at once."""
    org.fake.define_sobject("Merchandise__c", {"Name": "string", "Price__c": "double"})
    org.fake.define_sobject("Account", {"Region__c": "string"})
    item = org.fake.add_record("Merchandise__c", {"Name": "Widget", "Price__c": 9.5})
    assert item.startswith("a00")
    [row] = org.rows("SELECT Name, Price__c FROM Merchandise__c")
    assert (row["attributes"]["type"], row["Name"], row["Price__c"]) == (
        "Merchandise__c",
        "Widget",
        9.5,
    )
    org.fake.add_record("Account", {"Name": "A", "Region__c": "EMEA"})
    assert org.rows("SELECT Region__c FROM Account")[0]["Region__c"] == "EMEA"


def test_ground_truth_reads_back_records_and_deletions() -> None:
    """records(), record() and deleted_ids() report the org's state without HTTP."""
    fake = FakeSalesforce()
    live, gone = accounts(fake, 2)
    fake.delete_record("Account", gone)
    assert [r["Id"] for r in fake.records("Account")] == [live]
    assert [r["Id"] for r in fake.records("Account", include_deleted=True)] == [live, gone]
    assert fake.deleted_ids("Account") == {gone}
    assert fake.record("Account", gone)["IsDeleted"] is True


def test_control_methods_refuse_what_salesforce_could_not_hold() -> None:
    """Unknown objects or fields, wrong types, naive times and impossible stamps are refused."""
    fake = FakeSalesforce()
    [record_id] = accounts(fake, 1)
    with pytest.raises(KeyError, match="define_sobject"):
        fake.add_record("Nope__c")
    with pytest.raises(ValueError, match="not a field"):
        fake.add_record("Account", {"Id": "001"})
    with pytest.raises(TypeError, match="double"):
        fake.add_record("Account", {"AnnualRevenue": "lots"})
    with pytest.raises(TypeError, match="int"):
        fake.add_record("Account", {"NumberOfEmployees": True})
    with pytest.raises(NaiveDatetimeError):
        fake.add_record("Account", at=datetime(2024, 1, 1))  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="CreatedDate <= LastModifiedDate"):
        fake.add_record("Account", {"CreatedDate": T0, "LastModifiedDate": T0 - timedelta(1)})
    with pytest.raises(ValueError, match="before LastModifiedDate"):
        fake.touch_record("Account", record_id, at=T0 - timedelta(1))
    fake.delete_record("Account", record_id)
    with pytest.raises(KeyError, match="no live Account"):
        fake.update_record("Account", record_id, {"Name": "x"})
    with pytest.raises(ValueError, match="cannot define"):
        fake.define_sobject("Thing__c", {"SystemModstamp": "datetime"})
    with pytest.raises(ValueError, match="batch_size"):
        FakeSalesforce(batch_size=2_001)
    with pytest.raises(ValueError, match="max_batch_size"):
        FakeSalesforce(max_batch_size=0)


def test_purging_the_recycle_bin_keeps_later_deletions_and_new_fields_reach_old_rows() -> None:
    """purge_deleted(before=...) drops only earlier deletions; a new field is None on old rows."""
    fake = FakeSalesforce()
    early, late = accounts(fake, 2)
    fake.delete_record("Account", early, at=T0)
    fake.delete_record("Account", late, at=T0 + timedelta(hours=1))
    fake.purge_deleted("Account", before=T0 + timedelta(minutes=30))
    assert fake.deleted_ids("Account") == {late}
    fake.define_sobject("Account", {"Region__c": "string"})
    assert fake.record("Account", late)["Region__c"] is None
    fake.update_record("Account", fake.add_record("Account", {"Industry": None}), {"Name": None})


def test_the_clock_is_shared_or_injected() -> None:
    """The default clock moves only when told; a ManualClock passed in is moved alike."""
    fake = FakeSalesforce()
    assert fake.clock() == T0
    fake.set_time(T0 + timedelta(days=1))
    assert fake.advance(timedelta(hours=1)) == T0 + timedelta(days=1, hours=1)
    shared = ManualClock(T0)
    mine = FakeSalesforce(clock=shared)
    shared.advance(timedelta(minutes=1))
    created = mine.record("Account", mine.add_record("Account"))["CreatedDate"]
    assert created == T0 + timedelta(minutes=1)
    with pytest.raises(TypeError, match="no ManualClock"):
        FakeSalesforce(clock=lambda: T0).advance(timedelta(1))


def test_the_fake_serves_itself_over_http_with_its_own_origin_as_instance_url() -> None:
    """fake.serve(): refresh over real HTTP, then query the instance_url the token names."""
    fake = FakeSalesforce()
    [record_id] = accounts(fake, 1)
    form = {"grant_type": "refresh_token", "client_id": "fake-consumer-key"}
    form |= {"client_secret": "fake-consumer-secret", "refresh_token": fake.refresh_token}
    with fake.serve() as base_url, httpx.Client() as http:
        token = ok(http.post(f"{base_url}/services/oauth2/token", data=form))
        assert token["instance_url"] == base_url
        response = http.get(
            f"{token['instance_url']}{V}/query",
            params={"q": "SELECT Id FROM Account"},
            headers={"Authorization": f"Bearer {token['access_token']}"},
        )
    assert [r["Id"] for r in ok(response)["records"]] == [record_id]
    assert [r.status for r in fake.requests] == [200, 200]
    assert fake.requests[1].headers["authorization"] == "***"


def test_count_answers_how_many_rows_match_and_no_row(org: Org) -> None:
    """``SELECT COUNT()`` answers ``totalSize`` with no record; ``query`` counts live rows only,
    ``queryAll`` the recycle bin too, and a ``WHERE`` narrows the count."""
    ids = accounts(org.fake, 5)
    org.fake.delete_record("Account", ids[0], at=T0 + timedelta(minutes=1))
    org.fake.advance(timedelta(minutes=5))
    live = ok(org.query("SELECT COUNT() FROM Account"))
    assert live == {"totalSize": 4, "done": True, "records": []}
    assert ok(org.query("SELECT COUNT() FROM Account", all_rows=True))["totalSize"] == 5
    narrowed = ok(org.query(f"SELECT COUNT() FROM Account WHERE Id != '{ids[1]}'"))
    assert narrowed["totalSize"] == 3
    assert error(org.query("SELECT COUNT(Id) FROM Account"), 400)["errorCode"] == (
        "MALFORMED_QUERY"
    )
