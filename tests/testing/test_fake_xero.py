"""The fake Xero Accounting API keeps the documented rules: filters, paging, tokens and limits.

Expected shapes come from the samples in the reference (the OpenAPI spec's ``GET /Invoices``
example, its 400 ``ValidationException``, the documented 429 headers) and SOURCE-APIS.md.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from incsync.testing.fakes.xero import FakeXero, XeroLimits
from incsync.timestamps import parse_dotnet_date

UTC = timezone.utc
NOW = datetime(2024, 6, 3, 16, 0, tzinfo=UTC)  # the fake's default clock
BASE = "https://api.xero.com"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
# The top-level keys of the spec's GET /Invoices example.
SAMPLE_KEYS = {"Id", "Status", "ProviderName", "DateTimeUTC", "pagination", "Invoices"}
SAMPLE_PAGINATION_KEYS = {"page", "pageSize", "pageCount", "itemCount"}
DOTNET = re.compile(r"/Date\(\d+\+0000\)/")
UNLIMITED = XeroLimits(per_minute=None, per_day=None)


def api_client(fake: FakeXero, base_url: str = BASE) -> httpx.Client:
    """A client with a fresh access token and the tenant header."""
    tokens = fake.grant_tokens()
    return httpx.Client(
        transport=fake.transport() if base_url == BASE else None,
        base_url=base_url,
        headers={
            "Authorization": f"Bearer {tokens.access_token}",
            "Xero-tenant-id": fake.tenant_id,
            "Accept": "application/json",
        },
    )


def invoices(
    client: httpx.Client, since: str | None = None, page: int | None = 1, **params: str
) -> httpx.Response:
    """GET /Invoices in updated order, from ``since`` when given."""
    query: dict[str, str] = {"order": "UpdatedDateUTC ASC", **params}
    if page is not None:
        query["page"] = str(page)
    headers = {} if since is None else {"If-Modified-Since": since}
    return client.get("/api.xro/2.0/Invoices", params=query, headers=headers)


def ids(response: httpx.Response) -> list[str]:
    """The InvoiceIDs of an answer, in order."""
    assert response.status_code == 200, response.text
    return [row["InvoiceID"] for row in response.json()["Invoices"]]


@pytest.fixture
def fake() -> FakeXero:
    return FakeXero(limits=UNLIMITED)


@pytest.fixture(params=["transport", "loopback"])
def client(request: pytest.FixtureRequest, fake: FakeXero) -> Iterator[httpx.Client]:
    """The same tests through httpx.MockTransport and over real loopback HTTP."""
    if request.param == "transport":
        with api_client(fake) as client:
            yield client
    else:
        with fake.serve() as base_url, api_client(fake, base_url) as client:
            yield client


def test_answer_has_the_sample_shape_with_escaped_dotnet_dates(
    fake: FakeXero, client: httpx.Client
) -> None:
    """An answer has the spec example's keys; dates are /Date(ms+0000)/ with slashes escaped."""
    invoice_id = fake.add({"Total": 46.0}, updated_at=T0 + timedelta(milliseconds=160))
    response = invoices(client)
    assert '"\\/Date(' in response.text  # escaped on the wire, as Xero writes it
    body = response.json()
    assert set(body) == SAMPLE_KEYS
    assert set(body["pagination"]) == SAMPLE_PAGINATION_KEYS
    assert parse_dotnet_date(body["DateTimeUTC"]) == NOW
    (row,) = body["Invoices"]
    assert row["InvoiceID"] == invoice_id
    assert DOTNET.fullmatch(row["UpdatedDateUTC"])
    assert parse_dotnet_date(row["UpdatedDateUTC"]) == T0 + timedelta(milliseconds=160)
    assert row["UpdatedDateUTCString"] == "2024-01-01T00:00:00Z"
    assert row["Total"] == 46.0
    assert fake.ground_truth() == {invoice_id: row}


def test_if_modified_since_is_at_or_after_the_whole_second(
    fake: FakeXero, client: httpx.Client
) -> None:
    """The header keeps rows at or after its second; milliseconds in the header are dropped."""
    before = fake.add(updated_at=T0 - timedelta(milliseconds=1))
    at = fake.add(updated_at=T0)
    inside = fake.add(updated_at=T0 + timedelta(milliseconds=999))
    after = fake.add(updated_at=T0 + timedelta(seconds=1))
    assert ids(invoices(client, "2024-01-01T00:00:00")) == [at, inside, after]
    assert ids(invoices(client, "2024-01-01T00:00:00.500Z")) == [at, inside, after]
    assert ids(invoices(client, "2024-01-01T00:00:01")) == [after]
    assert ids(invoices(client, "Mon, 01 Jan 2024 00:00:00 GMT")) == [at, inside, after]
    assert ids(invoices(client)) == [before, at, inside, after]


def test_pages_of_100_end_with_a_short_page(fake: FakeXero, client: httpx.Client) -> None:
    """page=N is 1-based, 100 rows each, ascending; the last page is short, then empty."""
    loaded = fake.bulk_load(T0 + timedelta(seconds=n) for n in range(250))
    pages = [invoices(client, page=n) for n in (1, 2, 3, 4)]
    assert [len(ids(page)) for page in pages] == [100, 100, 50, 0]
    assert [i for page in pages for i in ids(page)] == loaded
    assert pages[2].json()["pagination"] == {
        "page": 3,
        "pageSize": 100,
        "pageCount": 3,
        "itemCount": 250,
    }
    assert len(ids(invoices(client, page=None))) == 250  # no page: everything at once
    assert ids(invoices(client, page=1, order="UpdatedDateUTC DESC"))[0] == loaded[-1]


def test_pages_shift_when_rows_change_between_requests(
    fake: FakeXero, client: httpx.Client
) -> None:
    """page=N is an offset into the result as it is now: an update before it skips a row."""
    loaded = fake.bulk_load(T0 + timedelta(seconds=n) for n in range(200))
    first = ids(invoices(client, page=1))
    fake.update(loaded[0], {"Reference": "moved"})  # now the newest: every row moves up one
    second = ids(invoices(client, page=2))
    assert loaded[100] not in first + second  # the row that slid into page 1 is never seen
    assert second[-1] == loaded[0]


def test_rows_sharing_a_millisecond_are_reordered_when_one_is_updated(fake: FakeXero) -> None:
    """Ties have no documented order: an update at the same millisecond draws a new place."""
    loaded = fake.bulk_load([T0] * 50)
    with api_client(fake) as client:
        before = ids(invoices(client))
        for invoice_id in loaded:
            fake.update(invoice_id, updated_at=T0)
        after = ids(invoices(client))
    assert sorted(before) == sorted(after)
    assert before != after


def test_deleted_and_voided_invoices_stay_listed_with_their_status(
    fake: FakeXero, client: httpx.Client
) -> None:
    """A voided or deleted invoice is an ordinary row with a new status and UpdatedDateUTC."""
    voided, deleted, kept = fake.bulk_load([T0, T0, T0])
    fake.void(voided)
    fake.delete(deleted)
    rows = {row["InvoiceID"]: row for row in invoices(client).json()["Invoices"]}
    assert rows[voided]["Status"] == "VOIDED"
    assert rows[deleted]["Status"] == "DELETED"
    assert rows[kept]["Status"] == "AUTHORISED"
    assert parse_dotnet_date(rows[voided]["UpdatedDateUTC"]) == NOW
    assert set(ids(invoices(client, "2024-06-03T16:00:00"))) == {voided, deleted}


@pytest.mark.parametrize(
    ("params", "since"),
    [
        ({"page": "0"}, None),
        ({"page": "two"}, None),
        ({"pageSize": "1001"}, None),
        ({"order": "Total"}, None),
        ({}, "soon"),
    ],
)
def test_bad_requests_get_a_validation_exception(
    fake: FakeXero, params: dict[str, str], since: str | None
) -> None:
    """A bad page, order or If-Modified-Since is a 400 shaped like the spec's example."""
    headers = {} if since is None else {"If-Modified-Since": since}
    with api_client(fake) as client:
        response = client.get("/api.xro/2.0/Invoices", params=params, headers=headers)
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"ErrorNumber", "Type", "Message", "Elements"}
    assert body["Type"] == "ValidationException"


def problem(response: httpx.Response) -> dict[str, Any]:
    """The problem object of a 401/403."""
    body: dict[str, Any] = response.json()
    assert {"Title", "Status", "Detail"} <= set(body)
    assert body["Status"] == response.status_code
    return body


def test_missing_expired_and_unknown_tokens_are_401(fake: FakeXero) -> None:
    """No token, an unknown one and an expired one are refused; expiry comes after 30 minutes."""
    with api_client(fake) as client:
        assert invoices(client).status_code == 200
        fake.clock.advance(timedelta(minutes=30))
        expired = invoices(client)
    assert expired.status_code == 401
    assert problem(expired)["Detail"].startswith("TokenExpired")
    headers = {"Xero-tenant-id": fake.tenant_id}
    with httpx.Client(transport=fake.transport(), base_url=BASE, headers=headers) as bare:
        assert invoices(bare).status_code == 401
        bare.headers["Authorization"] = "Bearer not-a-token"
        assert problem(invoices(bare))["Title"] == "Unauthorized"


def test_missing_or_unknown_tenant_is_403(fake: FakeXero) -> None:
    """The Xero-tenant-id header is required and must name the connected organisation."""
    with api_client(fake) as client:
        client.headers["Xero-tenant-id"] = "00000000-0000-0000-0000-000000000000"
        unknown = invoices(client)
        del client.headers["Xero-tenant-id"]
        missing = invoices(client)
    assert (unknown.status_code, missing.status_code) == (403, 403)
    assert problem(unknown)["Detail"] == "AuthorizationUnsuccessful"
    assert "Xero-tenant-id" in problem(missing)["Detail"]


def refresh(
    fake: FakeXero, refresh_token: str, *, secret: str | None = None, basic: bool = True
) -> httpx.Response:
    """POST the refresh grant with the client credentials in Basic or in the form."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    credentials = f"{fake.client_id}:{secret or fake.client_secret}"
    headers = {}
    if basic:
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    else:
        form |= {"client_id": fake.client_id, "client_secret": secret or fake.client_secret}
    with httpx.Client(transport=fake.transport(), base_url=BASE) as client:
        return client.post("https://identity.xero.com/connect/token", data=form, headers=headers)


def test_refresh_rotates_the_refresh_token_and_spends_the_old_one(fake: FakeXero) -> None:
    """Each refresh returns a new refresh token and a 30-minute access token; the old one works
    again for 30 minutes (Xero's grace for a lost answer), then dies."""
    tokens = fake.grant_tokens()
    answer = refresh(fake, tokens.refresh_token)
    assert answer.status_code == 200
    body = answer.json()
    assert body["expires_in"] == 1800
    assert body["token_type"] == "Bearer"
    assert body["refresh_token"] != tokens.refresh_token
    fake.clock.advance(timedelta(minutes=29))
    assert refresh(fake, tokens.refresh_token).status_code == 200  # within the grace
    fake.clock.advance(timedelta(minutes=1))
    assert refresh(fake, tokens.refresh_token).json() == {"error": "invalid_grant"}
    assert refresh(fake, body["refresh_token"], basic=False).status_code == 200
    assert refresh(fake, "nope").json() == {"error": "invalid_grant"}
    assert refresh(fake, tokens.refresh_token, secret="wrong").json() == {"error": "invalid_client"}


def test_minute_limit_is_a_429_with_retry_after_and_problem_minute() -> None:
    """The 61st call in a minute is a 429 ``minute``; remaining counts fall; it clears in time."""
    fake = FakeXero()
    with api_client(fake) as client:
        answers = []
        for _ in range(60):
            answers.append(invoices(client))
            fake.clock.advance(timedelta(milliseconds=500))
        throttled = invoices(client)
        fake.clock.advance(timedelta(seconds=int(throttled.headers["Retry-After"])))
        after = invoices(client)
    assert [a.status_code for a in answers] == [200] * 60
    assert answers[0].headers["X-MinLimit-Remaining"] == "59"
    assert answers[-1].headers["X-MinLimit-Remaining"] == "0"
    assert answers[-1].headers["X-DayLimit-Remaining"] == "4940"
    assert "X-AppMinLimit-Remaining" in answers[0].headers
    assert throttled.status_code == 429
    assert throttled.headers["X-Rate-Limit-Problem"] == "minute"
    assert 0 < int(throttled.headers["Retry-After"]) <= 60
    assert after.status_code == 200


def test_day_limit_is_a_429_with_problem_day_until_a_call_frees() -> None:
    """Past the (configurable) day limit every call is a 429 ``day`` for up to 24 hours."""
    fake = FakeXero(limits=XeroLimits(per_minute=60, per_day=3))
    with api_client(fake) as client:
        for _ in range(3):
            assert invoices(client).status_code == 200
            fake.clock.advance(timedelta(minutes=1))
        throttled = invoices(client)
    fake.clock.advance(timedelta(hours=12))
    with api_client(fake) as client:  # the first access token expired long ago
        still = invoices(client)
    fake.clock.advance(timedelta(seconds=int(still.headers["Retry-After"])))
    with api_client(fake) as client:
        freed = invoices(client)
    assert throttled.status_code == 429
    assert throttled.headers["X-Rate-Limit-Problem"] == "day"
    assert throttled.headers["X-DayLimit-Remaining"] == "0"
    assert int(throttled.headers["Retry-After"]) == 24 * 3600 - 3 * 60
    assert still.status_code == 429
    assert freed.status_code == 200


def test_unknown_paths_are_404(fake: FakeXero, client: httpx.Client) -> None:
    """Only the invoices list and the token endpoint are served."""
    response = client.get("/api.xro/2.0/Widgets")
    assert response.status_code == 404
    assert json.loads(response.content)["Title"] == "Not Found"


def test_contacts_archived_are_listed_only_with_include_archived() -> None:
    """A contacts fake lists ``ContactStatus: ARCHIVED`` ones only to ``includeArchived=true``."""
    fake = FakeXero(limits=UNLIMITED, endpoint="Contacts")
    kept, archived = fake.bulk_load([T0, T0])
    fake.archive(archived, at=T0 + timedelta(minutes=1))
    with api_client(fake) as client:
        plain = client.get("/api.xro/2.0/Contacts", params={"page": "1"}).json()["Contacts"]
        every = client.get(
            "/api.xro/2.0/Contacts", params={"page": "1", "includeArchived": "true"}
        ).json()["Contacts"]
        assert client.get("/api.xro/2.0/Invoices").status_code == 404
    assert [row["ContactID"] for row in plain] == [kept]
    assert {row["ContactID"]: row["ContactStatus"] for row in every} == {
        kept: "ACTIVE",
        archived: "ARCHIVED",
    }
    assert fake.live_count() == 1


def test_where_filters_by_status_and_pagination_counts_every_match(
    fake: FakeXero, client: httpx.Client
) -> None:
    """``where`` with ``!=``/``==`` joined by AND narrows the list; ``itemCount`` counts it all."""
    for number, status in enumerate(("AUTHORISED", "PAID", "VOIDED", "DELETED", "DRAFT")):
        fake.add(status=status, updated_at=T0 + timedelta(seconds=number))
    where = 'Status!="VOIDED" AND Status!="DELETED"'
    counted = invoices(client, page=1, pageSize="1", where=where)
    assert counted.status_code == 200, counted.text
    assert counted.json()["pagination"]["itemCount"] == 3 == fake.live_count()
    assert len(counted.json()["Invoices"]) == 1
    paid = invoices(client, page=1, where='Status=="PAID"')
    assert [row["Status"] for row in paid.json()["Invoices"]] == ["PAID"]
    assert invoices(client, page=1, where="Total > 10").status_code == 400
