"""The fake QuickBooks Online API keeps the documented rules: query, CDC, tokens and throttling.

Expected shapes are copied from Intuit's published samples (the Invoice reference's "query an
invoice" response, the CDC page's examples) and from bodies QuickBooks was seen sending (the XML
throttle of intuit/QuickBooks-V3-PHP-SDK#54, the validation fault of intuit/oauth-jsclient#188).
"""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from incsync.testing.fakes.quickbooks import FakeQuickBooks, QuickBooksTokens

UTC = timezone.utc
NOW = datetime(2024, 6, 3, 16, 0, tzinfo=UTC)  # the fake's default clock
BASE = "https://quickbooks.api.intuit.com"
LOCAL_MILLIS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d")
# The keys of Intuit's "query an invoice" sample response and of one entity's MetaData.
SAMPLE_QUERY_RESPONSE_KEYS = {"startPosition", "totalCount", "maxResults", "Invoice"}
SAMPLE_METADATA_KEYS = {"CreateTime", "LastUpdatedTime"}
# The documented "no changes" CDC body, apart from its "time".
SAMPLE_CDC_NO_CHANGES: dict[str, Any] = {"CDCResponse": [{"QueryResponse": [{}]}]}
THROTTLE_MESSAGE = "message=ThrottleExceeded; errorCode=003001; statusCode=429"
INTUIT_NS = "{http://schema.intuit.com/finance/v3}"


def api_client(fake: FakeQuickBooks, base_url: str = BASE) -> httpx.Client:
    """A client holding a fresh access token, asking for JSON as every QuickBooks client must."""
    tokens = fake.grant_tokens()
    return httpx.Client(
        transport=fake.transport() if base_url == BASE else None,
        base_url=base_url,
        headers={"Authorization": f"Bearer {tokens.access_token}", "Accept": "application/json"},
    )


@pytest.fixture
def fake() -> FakeQuickBooks:
    return FakeQuickBooks()


@pytest.fixture
def client(fake: FakeQuickBooks) -> Iterator[httpx.Client]:
    with api_client(fake) as client:
        yield client


@pytest.fixture(params=["transport", "loopback"])
def any_client(request: pytest.FixtureRequest, fake: FakeQuickBooks) -> Iterator[httpx.Client]:
    """The same tests through httpx.MockTransport and over real loopback HTTP."""
    if request.param == "transport":
        with api_client(fake) as client:
            yield client
    else:
        with fake.serve() as base_url, api_client(fake, base_url) as client:
            yield client


def query(client: httpx.Client, fake: FakeQuickBooks, statement: str) -> httpx.Response:
    return client.get(
        f"/v3/company/{fake.realm_id}/query", params={"query": statement, "minorversion": "75"}
    )


def cdc(client: httpx.Client, fake: FakeQuickBooks, entities: str, since: str) -> httpx.Response:
    return client.get(
        f"/v3/company/{fake.realm_id}/cdc", params={"entities": entities, "changedSince": since}
    )


def ids(response: httpx.Response, entity: str = "Invoice") -> list[str]:
    assert response.status_code == 200, response.text
    return [record["Id"] for record in response.json()["QueryResponse"].get(entity, [])]


def at(hour: int, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(2024, 6, 3, hour, minute, second, micro, tzinfo=UTC)


def refresh(
    client: httpx.Client, refresh_token: str, secret: str = "fake-client-secret"
) -> httpx.Response:
    basic = base64.b64encode(f"fake-client-id:{secret}".encode()).decode()
    return client.post(
        "/oauth2/v1/tokens/bearer",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        headers={"Authorization": f"Basic {basic}", "Accept": "application/json"},
    )


def assert_fault(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The uppercase Fault envelope of Intuit's samples; returns its one error."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"Fault", "time"}
    assert LOCAL_MILLIS.fullmatch(body["time"])
    [error] = body["Fault"]["Error"]
    assert {"Message", "Detail", "code"} <= set(error)
    assert error["code"] == code
    return dict(error)


# -- query: shape, time zones, filters ----------------------------------------------------------


def test_query_answers_in_the_shape_of_intuits_sample(
    fake: FakeQuickBooks, any_client: httpx.Client
) -> None:
    """QueryResponse holds the entity list, startPosition, maxResults, totalCount; time has ms."""
    fake.add("Invoice", {"DocNumber": "1070", "TotalAmt": 150.0}, updated_at=at(17, 35, 8))
    response = query(any_client, fake, "select * from Invoice where Id = '1'")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"QueryResponse", "time"}
    assert LOCAL_MILLIS.fullmatch(body["time"])
    assert set(body["QueryResponse"]) == SAMPLE_QUERY_RESPONSE_KEYS
    [invoice] = body["QueryResponse"]["Invoice"]
    assert invoice["DocNumber"] == "1070"
    assert invoice["Id"] == "1"
    assert invoice["SyncToken"] == "0"
    assert invoice["domain"] == "QBO"
    assert set(invoice["MetaData"]) == SAMPLE_METADATA_KEYS
    assert invoice["MetaData"]["LastUpdatedTime"] == "2024-06-03T10:35:08-07:00"


def test_times_are_written_in_the_company_offset_which_follows_daylight_saving() -> None:
    """Whole seconds in the company's offset: -08:00 becomes -07:00 across spring forward."""
    fake = FakeQuickBooks()
    fake.add("Invoice", updated_at=datetime(2024, 3, 10, 9, 59, 59, 999_999, tzinfo=UTC))
    fake.add("Invoice", updated_at=datetime(2024, 3, 10, 10, 0, 0, tzinfo=UTC))
    # In autumn the local wall clock repeats an hour: the strings go backwards, the instants not.
    fake.add("Invoice", updated_at=datetime(2024, 11, 3, 8, 59, 59, tzinfo=UTC))
    fake.add("Invoice", updated_at=datetime(2024, 11, 3, 9, 0, 0, tzinfo=UTC))
    with api_client(fake) as client:
        response = query(client, fake, "SELECT * FROM Invoice ORDERBY MetaData.LastUpdatedTime")
    written = [
        r["MetaData"]["LastUpdatedTime"] for r in response.json()["QueryResponse"]["Invoice"]
    ]
    assert written == [
        "2024-03-10T01:59:59-08:00",
        "2024-03-10T03:00:00-07:00",
        "2024-11-03T01:59:59-07:00",
        "2024-11-03T01:00:00-08:00",
    ]


def test_the_company_zone_is_configurable() -> None:
    """Another zone, another offset and another DST date (Europe/London: +00:00 then +01:00)."""
    fake = FakeQuickBooks(company_timezone="Europe/London")
    fake.add("Customer", updated_at=datetime(2024, 3, 31, 0, 59, 59, tzinfo=UTC))
    fake.add("Customer", updated_at=datetime(2024, 3, 31, 1, 0, 0, tzinfo=UTC))
    with api_client(fake) as client:
        response = query(client, fake, "SELECT * FROM Customer ORDERBY Id")
    body = response.json()
    written = [r["MetaData"]["LastUpdatedTime"] for r in body["QueryResponse"]["Customer"]]
    assert written == ["2024-03-31T00:59:59+00:00", "2024-03-31T02:00:00+01:00"]
    assert body["time"].endswith("+01:00")


@pytest.mark.parametrize(
    "literal",
    [
        "2024-03-10T01:59:59-08:00",
        "2024-03-10T09:59:59Z",
        "2024-03-10T09:59:59+0000",
        "2024-03-10T02:59:59-07:00",
        "2024-03-10T01:59:59",  # no offset: read in the company's zone
    ],
)
def test_filter_literals_name_an_instant_whatever_offset_they_carry(literal: str) -> None:
    """A literal with an offset, Z, or none (company zone) is the same instant."""
    fake = FakeQuickBooks()
    fake.add("Invoice", updated_at=datetime(2024, 3, 10, 9, 59, 58, tzinfo=UTC))
    fake.add("Invoice", updated_at=datetime(2024, 3, 10, 9, 59, 59, tzinfo=UTC))
    fake.add("Invoice", updated_at=datetime(2024, 3, 10, 10, 0, 0, tzinfo=UTC))
    statement = f"SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime >= '{literal}' ORDERBY Id"
    with api_client(fake) as client:
        assert ids(query(client, fake, statement)) == ["2", "3"]


@pytest.mark.parametrize(
    ("operator", "literal", "expected"),
    [
        (">=", "2024-06-03T12:00:00Z", ["b", "c", "d"]),
        (">", "2024-06-03T12:00:00Z", ["d"]),
        ("<=", "2024-06-03T12:00:00Z", ["a", "b", "c"]),
        ("<", "2024-06-03T12:00:00Z", ["a"]),
        ("=", "2024-06-03T12:00:00Z", ["b", "c"]),
        (">=", "2024-06-03T05:00:00-07:00", ["b", "c", "d"]),
        # Fractions are dropped: QuickBooks compares whole seconds.
        (">=", "2024-06-03T12:00:00.750Z", ["b", "c", "d"]),
        (">", "2024-06-03T12:00:00.750Z", ["d"]),
    ],
)
def test_time_filters_compare_whole_seconds_and_include_equal_timestamps(
    operator: str, literal: str, expected: list[str]
) -> None:
    """>= keeps every record of the boundary second; > loses them; fractions are truncated."""
    fake = FakeQuickBooks()
    fake.add("Invoice", record_id="a", updated_at=at(11, 59, 59))
    fake.add("Invoice", record_id="b", updated_at=at(12))
    fake.add("Invoice", record_id="c", updated_at=at(12, 0, 0, 900_000))  # kept as 12:00:00
    fake.add("Invoice", record_id="d", updated_at=at(12, 0, 1))
    statement = (
        f"SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime {operator} '{literal}' ORDERBY Id"
    )
    with api_client(fake) as client:
        assert ids(query(client, fake, statement)) == expected


def test_conditions_join_with_and_for_a_window(fake: FakeQuickBooks, client: httpx.Client) -> None:
    """Two conditions joined by AND bound a half-open window."""
    for hour in (10, 11, 12, 13):
        fake.add("Invoice", updated_at=at(hour))
    statement = (
        "select * from Invoice where MetaData.LastUpdatedTime >= '2024-06-03T11:00:00Z' "
        "and MetaData.LastUpdatedTime < '2024-06-03T13:00:00Z' orderby Id"
    )
    assert ids(query(client, fake, statement)) == ["2", "3"]


def test_ids_and_create_time_filter_and_sort_too(
    fake: FakeQuickBooks, client: httpx.Client
) -> None:
    """Id = / IN select by id; MetaData.CreateTime filters and sorts apart from LastUpdatedTime."""
    fake.add("Invoice", record_id="1", created_at=at(9), updated_at=at(9))
    fake.add("Invoice", updated_at=at(10))  # the next free number: "2"
    fake.add("Invoice", created_at=at(8), updated_at=at(11))
    fake.update("Invoice", "1", {"Memo": "later"}, updated_at=at(12))
    assert ids(query(client, fake, "SELECT * FROM Invoice WHERE Id IN ('1', '3') ORDERBY Id")) == [
        "1",
        "3",
    ]
    assert ids(query(client, fake, "SELECT * FROM Invoice WHERE Id = '2'")) == ["2"]
    by_creation = (
        "SELECT * FROM Invoice WHERE MetaData.CreateTime < '2024-06-03T10:00:00Z' "
        "ORDERBY MetaData.CreateTime DESC"
    )
    assert ids(query(client, fake, by_creation)) == ["1", "3"]
    assert_fault(query(client, fake, "SELECT * FROM Invoice WHERE Id > '1'"), 400, "4001")


# -- query: paging and order -------------------------------------------------------------------


def test_maxresults_defaults_to_100_and_more_than_1000_is_a_validation_fault(
    fake: FakeQuickBooks, client: httpx.Client
) -> None:
    """No MAXRESULTS gives 100; 1000 is allowed; 1001 is a 400 ValidationFault code 4001."""
    fake.bulk_load("Invoice", [at(12)] * 1001)
    assert len(ids(query(client, fake, "SELECT * FROM Invoice"))) == 100
    page = query(client, fake, "SELECT * FROM Invoice MAXRESULTS 1000")
    assert len(ids(page)) == 1000
    assert page.json()["QueryResponse"]["maxResults"] == 1000
    response = query(client, fake, "SELECT * FROM Invoice MAXRESULTS 1001")
    error = assert_fault(response, 400, "4001")
    assert response.json()["Fault"]["type"] == "ValidationFault"
    assert "Max allowed value is 1000" in error["Detail"]


def test_startposition_is_one_based_and_past_the_end_is_an_empty_query_response(
    fake: FakeQuickBooks, client: httpx.Client
) -> None:
    """STARTPOSITION 1 is the first row (0 reads as 1); past the end QueryResponse is {}."""
    for second in range(5):
        fake.add("Invoice", updated_at=at(12, 0, second))
    ordered = "SELECT * FROM Invoice ORDERBY MetaData.LastUpdatedTime, Id"
    assert ids(query(client, fake, f"{ordered} STARTPOSITION 1 MAXRESULTS 2")) == ["1", "2"]
    assert ids(query(client, fake, f"{ordered} STARTPOSITION 0 MAXRESULTS 2")) == ["1", "2"]
    third = query(client, fake, f"{ordered} STARTPOSITION 3 MAXRESULTS 2")
    assert ids(third) == ["3", "4"]
    assert third.json()["QueryResponse"]["startPosition"] == 3
    assert ids(query(client, fake, f"{ordered} STARTPOSITION 5 MAXRESULTS 2")) == ["5"]
    past = query(client, fake, f"{ordered} STARTPOSITION 6 MAXRESULTS 2")
    assert past.json()["QueryResponse"] == {}


def test_a_record_updated_between_pages_moves_to_the_end_and_offset_paging_skips_another(
    fake: FakeQuickBooks, client: httpx.Client
) -> None:
    """Each page is evaluated on the data as it is then: a concurrent update shifts offsets."""
    for second in range(6):
        fake.add("Invoice", updated_at=at(12, 0, second))
    query_requests = [0]

    def user_edits_invoice_2_during_the_sync(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/query"):
            query_requests[0] += 1
            if query_requests[0] == 2:  # just before page 2 is read
                fake.update("Invoice", "2", {"Memo": "edited"}, updated_at=at(12, 5))
        return None

    fake.add_fault(user_edits_invoice_2_during_the_sync)
    seen: list[str] = []
    position = 1
    while True:
        statement = (
            "SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime >= '2024-06-03T12:00:00Z' "
            f"ORDERBY MetaData.LastUpdatedTime, Id STARTPOSITION {position} MAXRESULTS 2"
        )
        page = ids(query(client, fake, statement))
        if not page:
            break
        seen += page
        position += len(page)
    assert seen == ["1", "2", "4", "5", "6", "2"]
    assert "3" not in seen  # skipped for good by a client that trusts offsets
    assert "3" in {record["Id"] for record in fake.entities("Invoice")}


def test_without_orderby_the_order_is_arbitrary_and_changes_between_requests(
    fake: FakeQuickBooks, client: httpx.Client
) -> None:
    """No ORDERBY, no promised order: the same rows come back shuffled, reproducibly by seed."""
    for n in range(40):
        fake.add("Invoice", updated_at=at(12, 0, n))
    first = ids(query(client, fake, "SELECT * FROM Invoice"))
    then = ids(query(client, fake, "SELECT * FROM Invoice"))
    assert sorted(first) == sorted(then)
    assert first != then
    assert first != sorted(first, key=int)
    again = FakeQuickBooks()
    again.bulk_load("Invoice", [at(12, 0, s) for s in range(40)])
    with api_client(again) as other:
        assert ids(query(other, again, "SELECT * FROM Invoice")) == first


def test_ties_on_last_updated_time_have_no_order_unless_id_breaks_them(
    fake: FakeQuickBooks, client: httpx.Client
) -> None:
    """Rows in one second reshuffle per request; ORDERBY ..., Id makes paging exact."""
    fake.bulk_load("Invoice", [at(12)] * 30)
    by_time = "SELECT * FROM Invoice ORDERBY MetaData.LastUpdatedTime"
    assert ids(query(client, fake, by_time)) != ids(query(client, fake, by_time))
    pages = [
        ids(query(client, fake, f"{by_time} STARTPOSITION {start} MAXRESULTS 10"))
        for start in (1, 11, 21)
    ]
    seen = [record_id for page in pages for record_id in page]
    assert len(seen) == 30
    assert len(set(seen)) < 30  # some rows came twice, so others never came
    by_time_and_id = f"{by_time}, Id"
    pages = [
        ids(query(client, fake, f"{by_time_and_id} STARTPOSITION {start} MAXRESULTS 10"))
        for start in (1, 11, 21)
    ]
    assert [record_id for page in pages for record_id in page] == [str(n) for n in range(1, 31)]


def test_orderby_desc_and_ids_sort_as_numbers(fake: FakeQuickBooks, client: httpx.Client) -> None:
    """DESC reverses; Id "10" sorts after "9"."""
    for record_id, second in (("9", 1), ("10", 1), ("2", 0)):
        fake.add("Invoice", record_id=record_id, updated_at=at(12, 0, second))
    statement = "SELECT * FROM Invoice ORDERBY MetaData.LastUpdatedTime DESC, Id ASC"
    assert ids(query(client, fake, statement)) == ["9", "10", "2"]
    assert ids(query(client, fake, "SELECT * FROM Invoice ORDERBY Id DESC")) == ["10", "9", "2"]


@given(
    seconds=st.lists(st.integers(min_value=0, max_value=4), min_size=0, max_size=40),
    page_size=st.integers(min_value=1, max_value=7),
)
def test_paging_a_still_set_in_a_total_order_yields_every_record_once(
    seconds: list[int], page_size: int
) -> None:
    """With ORDERBY LastUpdatedTime, Id and no changes, offset pages partition the result."""
    fake = FakeQuickBooks()
    fake.bulk_load("Payment", [at(12, 0, s) for s in seconds])
    seen: list[str] = []
    with api_client(fake) as client:
        while True:
            statement = (
                "SELECT * FROM Payment ORDERBY MetaData.LastUpdatedTime, Id "
                f"STARTPOSITION {len(seen) + 1} MAXRESULTS {page_size}"
            )
            page = ids(query(client, fake, statement), "Payment")
            if not page:
                break
            seen += page
    expected = sorted((s, n) for n, s in enumerate(seconds, start=1))
    assert seen == [str(n) for _, n in expected]


# -- query: syntax, methods, deletes and voids ------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "code"),
    [
        ("", "4000"),
        ("SELECT Id FROM Invoice", "4000"),
        ("SELECT * FROM", "4000"),
        ("SELECT * FROM Invoice WHERE Id = 5", "4000"),
        ("SELECT * FROM Invoice WHERE Id = '1' OR Id = '2'", "4000"),
        ("SELECT * FROM Invoice ORDER BY Id", "4000"),
        ("SELECT * FROM Invoice STARTPOSITION -1", "4000"),
        ("SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime != '2024-01-01'", "4000"),
        ("SELECT * FROM NoSuchThing", "4000"),
        ("SELECT * FROM Invoice WHERE DocNumber LIKE '10%'", "4001"),
        ("SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime >= 'yesterday'", "4001"),
        ("SELECT * FROM Invoice MAXRESULTS 0", "4001"),
    ],
)
def test_unsupported_syntax_is_a_400_fault_not_a_guess(
    fake: FakeQuickBooks, client: httpx.Client, statement: str, code: str
) -> None:
    """What QuickBooks (or the fake) cannot run is refused with a ValidationFault, never ignored."""
    assert_fault(query(client, fake, statement), 400, code)


STATEMENT_WORDS = st.sampled_from(
    [
        *("SELECT", "select", "*", "count(*)", "FROM", "Invoice", "Payment", "WHERE", "AND", "OR"),
        *("MetaData.LastUpdatedTime", "MetaData.CreateTime", "Id", "TxnDate", "IN", "(", ")"),
        *("=", ">=", ">", "<", "<=", "!=", "'2024-06-03T12:00:00Z'", "'2024-06-03'", "'x'"),
        *("'9999-12-31T23:59:59'", "'0001-01-01T00:00:00+05:00'", "ORDERBY", "DESC", "ASC"),
        *(",", "STARTPOSITION", "MAXRESULTS", "0", "1", "1000", "1001", "99999999999999999999"),
    ]
)


@given(
    statement=st.one_of(
        st.lists(STATEMENT_WORDS, max_size=14).map(" ".join),
        st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=60),
    )
)
def test_every_statement_gets_an_answer_or_a_400_fault(statement: str) -> None:
    """The parser is total: any text is a 200 answer or a 400 Fault, never a crash."""
    fake = FakeQuickBooks()
    fake.bulk_load("Invoice", [at(12)] * 3)
    with api_client(fake) as client:
        response = query(client, fake, statement)
    if response.status_code != 200:
        assert_fault(response, 400, response.json()["Fault"]["Error"][0]["code"])
        assert response.json()["Fault"]["Error"][0]["code"] in {"4000", "4001"}


def test_a_query_may_be_posted_as_application_text(
    fake: FakeQuickBooks, client: httpx.Client
) -> None:
    """POST .../query with the statement as an application/text body answers like GET."""
    fake.add("SalesReceipt", updated_at=at(12))
    response = client.post(
        f"/v3/company/{fake.realm_id}/query",
        params={"minorversion": "75"},
        content=b"SELECT * FROM SalesReceipt",
        headers={"Content-Type": "application/text"},
    )
    assert ids(response, "SalesReceipt") == ["1"]


def test_count_star_answers_total_count(fake: FakeQuickBooks, client: httpx.Client) -> None:
    """SELECT count(*) answers QueryResponse.totalCount over the whole filtered set."""
    fake.bulk_load("Invoice", [at(12)] * 3 + [at(13)] * 2)
    statement = "SELECT COUNT(*) FROM Invoice WHERE MetaData.LastUpdatedTime >= '2024-06-03T13:00Z'"
    assert query(client, fake, statement).json()["QueryResponse"] == {"totalCount": 2}


def test_deleted_records_leave_query_and_voided_ones_stay_with_a_void_marker(
    fake: FakeQuickBooks, client: httpx.Client
) -> None:
    """Query never shows deletes; a voided invoice shows with TotalAmt 0 and note "Voided"."""
    kept = fake.add("Invoice", {"TotalAmt": 150.0, "Balance": 150.0}, updated_at=at(12))
    gone = fake.add("Invoice", {"TotalAmt": 20.0}, updated_at=at(12))
    voided = fake.add("Invoice", {"TotalAmt": 99.0, "Balance": 99.0}, updated_at=at(12))
    fake.delete("Invoice", gone, deleted_at=at(13))
    fake.void("Invoice", voided, voided_at=at(13))
    response = query(client, fake, "SELECT * FROM Invoice ORDERBY Id")
    records = {r["Id"]: r for r in response.json()["QueryResponse"]["Invoice"]}
    assert set(records) == {kept, voided}
    assert records[voided]["TotalAmt"] == 0
    assert records[voided]["Balance"] == 0
    assert records[voided]["PrivateNote"] == "Voided"
    assert records[voided]["SyncToken"] == "1"
    assert records[voided]["MetaData"]["LastUpdatedTime"] == "2024-06-03T06:00:00-07:00"
    assert fake.deleted_ids("Invoice") == {gone}
    assert [r["Id"] for r in fake.entities("Invoice")] == [kept, voided]


# -- CDC ----------------------------------------------------------------------------------------


def test_cdc_returns_changes_and_deletes_in_the_shape_of_intuits_sample(
    fake: FakeQuickBooks, any_client: httpx.Client
) -> None:
    """Changed entities in full, deletes as {domain, status: Deleted, Id, MetaData}; since is >=."""
    fake.add("Invoice", record_id="1", updated_at=at(8, 59, 59))  # before the window
    fake.add("Invoice", record_id="2", updated_at=at(9))  # exactly at changedSince
    fake.add("Customer", {"DisplayName": "Amy"}, record_id="63", updated_at=at(10))
    fake.add("Estimate", record_id="979", updated_at=at(8))
    fake.delete("Estimate", "979", deleted_at=at(11))
    response = cdc(any_client, fake, "Invoice,Customer,Estimate", "2024-06-03T02:00:00-07:00")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"CDCResponse", "time"}
    [block] = body["CDCResponse"]
    by_entity = {next(iter(item)): item for item in block["QueryResponse"]}
    assert set(by_entity) == {"Invoice", "Customer", "Estimate"}
    for entity, item in by_entity.items():
        assert item["startPosition"] == 1
        assert item["maxResults"] == len(item[entity])
    assert [r["Id"] for r in by_entity["Invoice"]["Invoice"]] == ["2"]
    assert by_entity["Customer"]["Customer"][0]["DisplayName"] == "Amy"
    assert by_entity["Estimate"]["Estimate"] == [
        {
            "domain": "QBO",
            "status": "Deleted",
            "Id": "979",
            "MetaData": {"LastUpdatedTime": "2024-06-03T04:00:00-07:00"},
        }
    ]


def test_cdc_without_changes_answers_like_the_documented_empty_response(
    fake: FakeQuickBooks, client: httpx.Client
) -> None:
    """No change since the date: CDCResponse holds one QueryResponse with one empty object."""
    fake.add("Invoice", updated_at=at(8))
    body = cdc(client, fake, "Invoice,Payment", "2024-06-03T09:00:00Z").json()
    assert LOCAL_MILLIS.fullmatch(body.pop("time"))
    assert body == SAMPLE_CDC_NO_CHANGES


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"entities": "Invoice"}, "4001"),
        ({"changedSince": "2024-06-03T00:00:00Z"}, "4001"),
        ({"entities": "Invoice,NoSuchThing", "changedSince": "2024-06-03T00:00:00Z"}, "4000"),
        ({"entities": "Invoice", "changedSince": "last week"}, "4001"),
    ],
)
def test_cdc_needs_known_entities_and_a_readable_changed_since(
    fake: FakeQuickBooks, client: httpx.Client, params: dict[str, str], code: str
) -> None:
    """Missing parameters, unknown entities and unreadable dates are 400 Faults."""
    assert_fault(client.get(f"/v3/company/{fake.realm_id}/cdc", params=params), 400, code)


def test_cdc_refuses_changed_since_more_than_30_days_back(
    fake: FakeQuickBooks, client: httpx.Client
) -> None:
    """30 days back is allowed; one second more is a 400 Fault."""
    limit = NOW - timedelta(days=30)
    assert cdc(client, fake, "Invoice", limit.isoformat()).status_code == 200
    too_old = (limit - timedelta(seconds=1)).isoformat()
    error = assert_fault(cdc(client, fake, "Invoice", too_old), 400, "4001")
    assert "older than" in error["Detail"]


def test_cdc_answers_at_most_1000_objects_shared_by_all_entities_with_no_marker(
    fake: FakeQuickBooks, client: httpx.Client
) -> None:
    """1,300 changes across two entities: 1,000 come back, nothing says the rest were cut."""
    fake.bulk_load("Invoice", [at(12)] * 700)
    fake.bulk_load("Payment", [at(12)] * 600)
    body = cdc(client, fake, "Invoice,Payment", "2024-06-03T11:00:00Z").json()
    returned = 0
    for item in body["CDCResponse"][0]["QueryResponse"]:
        [entity] = set(item) - {"startPosition", "maxResults"}  # no totalCount, no marker
        assert item["maxResults"] == len(item[entity])
        returned += len(item[entity])
    assert returned == 1000
    fake.bulk_load("Invoice", [at(14)] * 10)
    narrow = cdc(client, fake, "Invoice,Payment", "2024-06-03T13:00:00Z").json()
    assert len(narrow["CDCResponse"][0]["QueryResponse"][0]["Invoice"]) == 10


def cdc_objects(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """Return a CDC answer's objects as (entity, object), in the order the answer holds them."""
    assert response.status_code == 200, response.text
    return [
        (entity, item)
        for block in response.json()["CDCResponse"][0]["QueryResponse"]
        for entity, items in block.items()
        if entity not in {"startPosition", "maxResults"}
        for item in items
    ]


def test_cdc_lists_each_entity_by_last_update_then_its_deletes_and_keeps_the_first_1000(
    fake: FakeQuickBooks, client: httpx.Client
) -> None:
    """Intuit's order: grouped by entity, by last update, deletes after the live ones; cut after
    1,000 objects, so 1,000 live changes since a time hide every delete since then."""
    doomed = fake.bulk_load("Invoice", [at(8)] * 2)
    changed = fake.bulk_load(
        "Invoice", [at(10) + timedelta(seconds=n) for n in range(1_100)][::-1]
    )[::-1]  # added newest first: the order comes from the times
    for record_id in doomed:
        fake.delete("Invoice", record_id, deleted_at=at(11))
    payments = fake.bulk_load("Payment", [at(12), at(13)])
    fake.delete("Payment", payments[0], deleted_at=at(14))

    crowded = cdc_objects(cdc(client, fake, "Invoice", "2024-06-03T08:00:00Z"))
    assert [item["Id"] for _, item in crowded] == changed[:1_000]
    assert not any(item.get("status") == "Deleted" for _, item in crowded)

    since = (at(10) + timedelta(seconds=200)).isoformat()
    fewer = cdc_objects(cdc(client, fake, "Payment,Invoice", since))
    assert [(entity, item["Id"]) for entity, item in fewer[:-2]] == [
        ("Payment", payments[1]),
        ("Payment", payments[0]),
        *(("Invoice", record_id) for record_id in changed[200:]),
    ]
    assert fewer[1][1]["status"] == "Deleted"
    assert {item["Id"] for _, item in fewer[-2:]} == set(doomed)  # deleted at one second
    assert all(item["status"] == "Deleted" for _, item in fewer[-2:])


def test_cdc_cut_any_keeps_some_1000_deletes_among_them() -> None:
    """cdc_cut="any" keeps any 1,000 of the changes, deletes among them, whatever the order."""
    fake = FakeQuickBooks(cdc_cut="any")
    live = fake.bulk_load("Invoice", [at(10) + timedelta(seconds=n) for n in range(1_100)])
    for record_id in live[:100]:
        fake.delete("Invoice", record_id, deleted_at=at(11))
    with api_client(fake) as client:
        kept = cdc_objects(cdc(client, fake, "Invoice", "2024-06-03T08:00:00Z"))
    assert len(kept) == 1_000
    deleted = [item["Id"] for _, item in kept if item.get("status") == "Deleted"]
    assert 0 < len(deleted) < 100


# -- OAuth2 tokens ------------------------------------------------------------------------------


def test_access_tokens_expire_after_an_hour_with_quickbooks_auth_fault(
    fake: FakeQuickBooks, client: httpx.Client
) -> None:
    """At 59:59 the token works; at 60:00 it is a 401 in the lowercase fault envelope, code 3200."""
    fake.advance(timedelta(minutes=59, seconds=59))
    assert query(client, fake, "SELECT * FROM Invoice").status_code == 200
    fake.advance(timedelta(seconds=1))
    response = query(client, fake, "SELECT * FROM Invoice")
    assert response.status_code == 401
    [error] = response.json()["fault"]["error"]
    assert error["code"] == "3200"
    assert error["message"] == "message=AuthenticationFailed; errorCode=003200; statusCode=401"
    assert response.json()["fault"]["type"] == "AUTHENTICATION"


@pytest.mark.parametrize("authorization", ["Bearer not-a-token", "Basic abc", ""])
def test_unknown_or_missing_access_tokens_are_refused_with_401(
    fake: FakeQuickBooks, authorization: str
) -> None:
    """Anything but a live bearer token issued by the fake is a 401 code 3200."""
    headers = {"Accept": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    with httpx.Client(transport=fake.transport(), base_url=BASE) as client:
        response = client.get(
            f"/v3/company/{fake.realm_id}/query",
            params={"query": "SELECT * FROM Invoice"},
            headers=headers,
        )
    assert response.status_code == 401
    assert response.json()["fault"]["error"][0]["code"] == "3200"


def test_expire_access_tokens_forces_the_next_request_to_401(
    fake: FakeQuickBooks, client: httpx.Client
) -> None:
    """The control API expires every access token at once, without moving the clock."""
    fake.expire_access_tokens()
    assert query(client, fake, "SELECT * FROM Invoice").status_code == 401


def test_refresh_issues_a_working_access_token_and_rotates_the_refresh_token(
    fake: FakeQuickBooks,
) -> None:
    """The token endpoint answers Intuit's fields; the used refresh token is invalid_grant 24 hours
    later (Intuit: previous refresh tokens expire 24 hours after a new one is received)."""
    tokens = fake.grant_tokens()
    with fake.serve() as base_url, httpx.Client(base_url=base_url) as client:
        fake.advance(timedelta(hours=2))
        answer = refresh(client, tokens.refresh_token)
        assert answer.status_code == 200
        body = answer.json()
        assert set(body) == {
            "token_type",
            "expires_in",
            "refresh_token",
            "x_refresh_token_expires_in",
            "access_token",
        }
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 3600
        assert body["refresh_token"] != tokens.refresh_token
        response = client.get(
            f"/v3/company/{fake.realm_id}/query",
            params={"query": "SELECT * FROM Invoice"},
            headers={
                "Authorization": f"Bearer {body['access_token']}",
                "Accept": "application/json",
            },
        )
        assert response.status_code == 200
        fake.advance(timedelta(hours=24))
        reused = refresh(client, tokens.refresh_token)
        assert reused.status_code == 400
        assert reused.json() == {"error": "invalid_grant"}
        assert refresh(client, body["refresh_token"]).status_code == 200


def test_without_rotation_the_same_refresh_token_comes_back_and_keeps_working() -> None:
    """rotate_refresh_tokens=False: every refresh returns the refresh token it was given."""
    fake = FakeQuickBooks(rotate_refresh_tokens=False)
    tokens = fake.grant_tokens()
    with httpx.Client(transport=fake.transport(), base_url=BASE) as client:
        for _ in range(2):
            answer = refresh(client, tokens.refresh_token)
            assert answer.json()["refresh_token"] == tokens.refresh_token


def test_a_rotated_refresh_token_keeps_working_for_the_grace() -> None:
    """By default the previous refresh token works 24 hours more, then invalid_grant; with a grace
    of 0 it is refused at once."""
    fake = FakeQuickBooks()
    tokens = fake.grant_tokens()
    with httpx.Client(transport=fake.transport(), base_url=BASE) as client:
        assert refresh(client, tokens.refresh_token).status_code == 200
        fake.advance(timedelta(hours=23))
        assert refresh(client, tokens.refresh_token).status_code == 200
        fake.advance(timedelta(hours=1))
        assert refresh(client, tokens.refresh_token).json() == {"error": "invalid_grant"}
    strict = FakeQuickBooks(refresh_token_grace=timedelta(0))
    tokens = strict.grant_tokens()
    with httpx.Client(transport=strict.transport(), base_url=BASE) as client:
        assert refresh(client, tokens.refresh_token).status_code == 200
        assert refresh(client, tokens.refresh_token).json() == {"error": "invalid_grant"}


def test_refresh_tokens_expire_after_their_lifetime() -> None:
    """An unused refresh token dies after refresh_token_lifetime."""
    fake = FakeQuickBooks(refresh_token_lifetime=timedelta(days=100))
    tokens = fake.grant_tokens()
    assert tokens.refresh_token_expires_at == NOW + timedelta(days=100)
    fake.advance(timedelta(days=100))
    with httpx.Client(transport=fake.transport(), base_url=BASE) as client:
        assert refresh(client, tokens.refresh_token).status_code == 400


def test_the_token_endpoint_needs_the_client_credentials_and_the_refresh_grant(
    fake: FakeQuickBooks,
) -> None:
    """Wrong Basic credentials: 401 invalid_client; another grant: 400 unsupported_grant_type."""
    tokens: QuickBooksTokens = fake.grant_tokens()
    with httpx.Client(transport=fake.transport(), base_url=BASE) as client:
        wrong = refresh(client, tokens.refresh_token, secret="guess")
        assert (wrong.status_code, wrong.json()) == (401, {"error": "invalid_client"})
        for authorization in ("Bearer x", "Basic not-base64!", ""):
            anonymous = client.post(
                "/oauth2/v1/tokens/bearer",
                data={"grant_type": "refresh_token", "refresh_token": tokens.refresh_token},
                headers={"Authorization": authorization} if authorization else {},
            )
            assert anonymous.status_code == 401
        basic = base64.b64encode(b"fake-client-id:fake-client-secret").decode()
        other = client.post(
            "/oauth2/v1/tokens/bearer",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
        )
        assert (other.status_code, other.json()) == (400, {"error": "unsupported_grant_type"})
        assert client.get("/oauth2/v1/tokens/bearer").status_code == 405


def test_a_path_for_another_realm_is_refused_with_403(
    fake: FakeQuickBooks, client: httpx.Client
) -> None:
    """A token is for one company: another realmId is a 403 AuthorizationFailed (code 3100)."""
    response = client.get("/v3/company/123/query", params={"query": "SELECT * FROM Invoice"})
    assert response.status_code == 403
    [error] = response.json()["fault"]["error"]
    assert error["code"] == "3100"
    assert "AuthorizationFailed" in error["message"]


# -- throttling -------------------------------------------------------------------------------


def test_more_requests_per_minute_than_allowed_is_a_429_fault_3001_without_retry_after() -> None:
    """Past the per-realm rate: 429, Fault code 3001, no Retry-After; a minute later it passes."""
    fake = FakeQuickBooks(requests_per_minute=3)
    with api_client(fake) as client:
        assert [query(client, fake, "SELECT * FROM Invoice").status_code for _ in range(3)] == [
            200
        ] * 3
        throttled = query(client, fake, "SELECT * FROM Invoice")
        error = assert_fault(throttled, 429, "3001")
        assert error["Message"] == THROTTLE_MESSAGE
        assert "retry-after" not in throttled.headers
        fake.advance(timedelta(seconds=59))
        assert query(client, fake, "SELECT * FROM Invoice").status_code == 429
        fake.advance(timedelta(seconds=1))
        assert query(client, fake, "SELECT * FROM Invoice").status_code == 200


@pytest.mark.parametrize("mode", ["transport", "loopback"])
def test_the_throttle_can_answer_in_xml_although_json_was_asked(mode: str) -> None:
    """throttle_format="xml": the IntuitResponse XML body QuickBooks has been seen to send."""
    fake = FakeQuickBooks(requests_per_minute=1, throttle_format="xml")
    with (
        fake.serve() as base_url,
        api_client(fake, BASE if mode == "transport" else base_url) as client,
    ):
        assert query(client, fake, "SELECT * FROM Invoice").status_code == 200
        throttled = query(client, fake, "SELECT * FROM Invoice")
    assert throttled.status_code == 429
    assert throttled.headers["content-type"].startswith("application/xml")
    assert "retry-after" not in throttled.headers
    root = ElementTree.fromstring(throttled.content)
    assert root.tag == f"{INTUIT_NS}IntuitResponse"
    error = root.find(f"{INTUIT_NS}Fault/{INTUIT_NS}Error")
    assert error is not None
    assert error.get("code") == "3001"
    assert error.findtext(f"{INTUIT_NS}Message") == THROTTLE_MESSAGE


def test_injected_throttles_answer_first_and_alternate_between_xml_and_json(
    fake: FakeQuickBooks, client: httpx.Client
) -> None:
    """throttle_next(n) throttles the next n requests; "alternate" gives XML, then JSON."""
    fake.throttle_next(2, body_format="alternate")
    first = query(client, fake, "SELECT * FROM Invoice")
    second = query(client, fake, "SELECT * FROM Invoice")
    assert (first.status_code, second.status_code) == (429, 429)
    assert first.content.startswith(b"<?xml")
    assert second.json()["Fault"]["Error"][0]["code"] == "3001"
    assert query(client, fake, "SELECT * FROM Invoice").status_code == 200


# -- the rest of the surface --------------------------------------------------------------------


def test_a_request_that_does_not_ask_for_json_is_refused(fake: FakeQuickBooks) -> None:
    """QuickBooks answers XML unless asked for JSON; the fake refuses rather than guess."""
    tokens = fake.grant_tokens()
    with httpx.Client(transport=fake.transport(), base_url=BASE) as client:
        response = client.get(
            f"/v3/company/{fake.realm_id}/query",
            params={"query": "SELECT * FROM Invoice"},
            headers={"Authorization": f"Bearer {tokens.access_token}"},
        )
    assert response.status_code == 406


def test_an_unknown_operation_is_quickbooks_unsupported_operation_fault(
    fake: FakeQuickBooks, client: httpx.Client
) -> None:
    """Paths the fake does not serve answer QuickBooks' "Unsupported Operation" fault."""
    error = assert_fault(client.get(f"/v3/company/{fake.realm_id}/reports/X"), 400, "500")
    assert error["Message"] == "Unsupported Operation"
    assert client.delete(f"/v3/company/{fake.realm_id}/cdc").status_code == 405


def test_bulk_load_of_25000_records_pages_through_in_25_requests(
    fake: FakeQuickBooks, client: httpx.Client
) -> None:
    """25,000 records in a handful of seconds load fast and page fully with a total order."""
    base = at(12)
    fake.bulk_load(
        "Invoice",
        [base + timedelta(seconds=n // 5000) for n in range(25_000)],
        fields=lambda n: {"DocNumber": f"D{n}"},
    )
    seen: list[str] = []
    while True:
        statement = (
            "SELECT * FROM Invoice ORDERBY MetaData.LastUpdatedTime, Id "
            f"STARTPOSITION {len(seen) + 1} MAXRESULTS 1000"
        )
        page = ids(query(client, fake, statement))
        if not page:
            break
        seen += page
    assert len(seen) == len(set(seen)) == 25_000
    assert len(fake.entities("Invoice")) == 25_000


def test_the_control_api_refuses_impossible_changes(fake: FakeQuickBooks) -> None:
    """Duplicate ids, changes to deleted records and moving a foreign clock are errors."""
    fake.add("Invoice", record_id="7")
    with pytest.raises(ValueError, match="exists"):
        fake.add("Invoice", record_id="7")
    fake.delete("Invoice", "7")
    with pytest.raises(KeyError):
        fake.update("Invoice", "7", {"Memo": "x"})
    assert fake.add("Invoice", record_id="7") == "7"  # a deleted id may be reused
    fake.set_time(NOW + timedelta(days=1))
    assert fake.clock() == NOW + timedelta(days=1)
    foreign = FakeQuickBooks(clock=lambda: NOW)
    with pytest.raises(TypeError):
        foreign.advance(timedelta(seconds=1))
