"""FakePipedrive keeps Pipedrive API v2's rules for the deal list, over loopback HTTP."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from incsync.testing import ManualClock
from incsync.testing.fakes.pipedrive import DELETED_RETENTION, FakePipedrive, PipedriveLimits
from incsync.timestamps import UTC

T0 = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
UNLIMITED = PipedriveLimits(per_window=None, daily=None)
RFC3339_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
Json = dict[str, Any]


@pytest.fixture
def fake() -> FakePipedrive:
    """A fake company at T0 + 1 day, without rate limits."""
    return FakePipedrive(clock=ManualClock(T0 + timedelta(days=1)), limits=UNLIMITED)


@pytest.fixture
def client(fake: FakePipedrive) -> Iterator[httpx.Client]:
    """A client on the served fake, sending the company's api_token in the header."""
    with (
        fake.serve() as url,
        httpx.Client(base_url=url, headers={"x-api-token": fake.api_token}) as http,
    ):
        yield http


def deals(client: httpx.Client, **params: Any) -> httpx.Response:
    """GET /api/v2/deals with ``params``."""
    return client.get("/api/v2/deals", params=params)


def ids(response: httpx.Response) -> list[int]:
    """The deal ids of a successful list answer."""
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return [deal["id"] for deal in body["data"]]


def next_cursor(response: httpx.Response) -> str | None:
    """The answer's next_cursor."""
    cursor: str | None = response.json()["additional_data"]["next_cursor"]
    return cursor


def test_deals_come_in_v2_shape_with_rfc3339_second_timestamps(
    fake: FakePipedrive, client: httpx.Client
) -> None:
    """A listed deal has the v2 fields, RFC 3339 times to the second, and no v1 flags."""
    fake.create({"title": "Big one", "value": 1500}, at=T0 + timedelta(microseconds=700_000))
    body = deals(client).json()
    assert body["success"] is True
    (deal,) = body["data"]
    assert deal["title"] == "Big one"
    assert deal["update_time"] == deal["add_time"] == "2024-03-01T09:30:00Z"
    assert RFC3339_SECONDS.match(deal["update_time"])
    assert deal["is_deleted"] is False
    assert deal["status"] == "open"
    assert "active" not in deal
    assert "deleted" not in deal
    assert body["additional_data"] == {"next_cursor": None}


def test_deleted_deals_are_listed_only_when_asked_and_only_for_30_days(
    fake: FakePipedrive, client: httpx.Client
) -> None:
    """Without status, deleted deals are left out; status=deleted (alone or in a list) shows
    them, with is_deleted and a new update_time, until 30 days after the deletion."""
    kept, gone = fake.create({"title": "kept"}, at=T0), fake.create({"title": "gone"}, at=T0)
    won = fake.create({"status": "won"}, at=T0)
    fake.delete(gone)
    assert ids(deals(client)) == [kept, won]
    assert ids(deals(client, status="deleted")) == [gone]
    assert ids(deals(client, status="won,deleted")) == [gone, won]
    assert ids(deals(client, status="open,won,lost,deleted")) == [kept, gone, won]
    (shown,) = deals(client, status="deleted").json()["data"]
    assert (shown["is_deleted"], shown["status"]) == (True, "deleted")
    assert shown["update_time"] == f"{fake.clock():%Y-%m-%dT%H:%M:%S}Z"
    assert set(fake.ground_truth()) == {str(kept), str(gone), str(won)}

    fake.clock.advance(DELETED_RETENTION - timedelta(seconds=1))
    assert ids(deals(client, status="deleted")) == [gone]
    fake.clock.advance(timedelta(seconds=1))
    assert ids(deals(client, status="deleted")) == []
    assert set(fake.ground_truth()) == {str(kept), str(won)}
    assert deals(client, status="archived").status_code == 400


def test_updated_since_is_inclusive_and_updated_until_exclusive_to_the_second(
    fake: FakePipedrive, client: httpx.Client
) -> None:
    """updated_since keeps the deals of its own second; updated_until drops its second; both
    take RFC 3339 with Z or an offset, and refuse fractions of a second and other forms."""
    first, second, third = fake.load([T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)])
    assert ids(deals(client, updated_since="2024-03-01T09:30:01Z")) == [second, third]
    assert ids(deals(client, updated_since="2024-03-01T11:30:01+02:00")) == [second, third]
    assert ids(deals(client, updated_until="2024-03-01T09:30:01Z")) == [first]
    for bad in ("2024-03-01T09:30:01.000Z", "2024-03-01 09:30:01", "1709285401", "yesterday"):
        refused = deals(client, updated_since=bad)
        assert refused.status_code == 400, bad
        body = refused.json()
        assert body["success"] is False
        assert "not a valid datetime" in body["error"]
        assert body["code"] == "ERR_SCHEMA_VALIDATION_FAILED"


def test_sorting_by_update_time_breaks_ties_by_id_both_ways(
    fake: FakePipedrive, client: httpx.Client
) -> None:
    """sort_by=update_time orders by (update_time, id), ascending or descending; the default
    order is by id."""
    older = fake.load([T0 + timedelta(seconds=5)] * 3)
    newer = fake.load([T0] * 3)
    fake.update(older[1], {"value": 1}, at=T0 + timedelta(seconds=9))
    ascending = ids(deals(client, sort_by="update_time", sort_direction="asc"))
    assert ascending == [*newer, older[0], older[2], older[1]]
    assert ids(deals(client, sort_by="update_time", sort_direction="desc")) == ascending[::-1]
    assert ids(deals(client)) == sorted(older + newer)
    assert deals(client, sort_by="title").status_code == 400
    assert deals(client, sort_direction="up").status_code == 400


def test_limit_defaults_to_100_and_may_not_pass_500(
    fake: FakePipedrive, client: httpx.Client
) -> None:
    """No limit gives 100 deals; 500 is allowed; 501, 0 and text are refused with a 400."""
    fake.load([T0] * 600)
    assert len(ids(deals(client))) == 100
    assert len(ids(deals(client, limit=500))) == 500
    for bad in (501, 0, "ten"):
        refused = deals(client, limit=bad)
        assert refused.status_code == 400
        assert "limit" in refused.json()["error"]


def test_the_cursor_is_an_opaque_keyset_position_over_live_data(
    fake: FakePipedrive, client: httpx.Client
) -> None:
    """next_cursor names the page's last (update_time, id); the next page is what follows it
    *now*: a deal updated meanwhile moves behind it (read again), none that stays is skipped,
    and the last page's next_cursor is null."""
    stamps = [T0 + timedelta(seconds=i // 4) for i in range(40)]
    all_ids = fake.load(stamps)
    query = {"sort_by": "update_time", "sort_direction": "asc", "limit": 10}
    first = deals(client, **query)
    cursor = next_cursor(first)
    assert cursor is not None
    decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert decoded == {
        "field": "update_time",
        "fieldValue": "2024-03-01T09:30:02Z",
        "sortDirection": "asc",
        "id": all_ids[9],
    }
    fake.clock.set(T0 + timedelta(minutes=1))
    fake.update(all_ids[3], {"value": 1})  # read already: comes again at the end
    fake.update(all_ids[25], {"value": 1})  # not read yet: moves to the end
    fake.delete(all_ids[30])  # not read yet: leaves the default listing
    seen, page = ids(first), first
    while (cursor := next_cursor(page)) is not None:
        page = deals(client, **query, cursor=cursor)
        seen += ids(page)
    expected_rest = [i for i in all_ids[10:] if i not in (all_ids[25], all_ids[30])]
    assert seen == all_ids[:10] + expected_rest + [all_ids[3], all_ids[25]]
    assert len(ids(page)) <= 10


def test_a_cursor_from_another_query_or_made_up_is_refused(
    fake: FakePipedrive, client: httpx.Client
) -> None:
    """A cursor is only good for the sort it came from; garbage is a 400, not a crash."""
    fake.load([T0] * 5)
    cursor = next_cursor(deals(client, sort_by="update_time", limit=2))
    assert cursor is not None
    assert deals(client, sort_by="update_time", limit=2, cursor=cursor).status_code == 200
    for bad, sort in ((cursor, "add_time"), ("not-a-cursor", "update_time"), ("e30", "id")):
        refused = deals(client, sort_by=sort, limit=2, cursor=bad)
        assert refused.status_code == 400
        assert "cursor" in refused.json()["error"]


def test_credentials_header_query_or_bearer_else_401(fake: FakePipedrive) -> None:
    """The api_token works as a query parameter or x-api-token header; a wrong or missing one,
    or an expired OAuth token, is a 401 with Pipedrive's body."""
    fake.create(at=T0)
    with fake.serve() as url, httpx.Client(base_url=url) as http:
        assert http.get("/api/v2/deals", params={"api_token": fake.api_token}).status_code == 200
        assert http.get("/api/v2/deals", headers={"x-api-token": fake.api_token}).status_code == 200
        for params, headers in (
            ({"api_token": "wrong"}, {}),
            ({}, {"x-api-token": "wrong"}),
            ({}, {}),
            ({}, {"authorization": "Bearer made-up"}),
        ):
            refused = http.get("/api/v2/deals", params=params, headers=headers)
            assert refused.status_code == 401
            assert refused.json() == {
                "success": False,
                "error": "unauthorized access",
                "errorCode": 401,
                "error_info": "Please check developers.pipedrive.com",
            }
        token = fake.issue_access_token()
        bearer = {"authorization": f"Bearer {token}"}
        assert http.get("/api/v2/deals", headers=bearer).status_code == 200
        fake.clock.advance(timedelta(hours=1))
        assert http.get("/api/v2/deals", headers=bearer).status_code == 401


def test_the_token_endpoint_refreshes_with_the_app_in_http_basic(fake: FakePipedrive) -> None:
    """A refresh grant with the app's Basic credentials returns an hour's access token and the
    api_domain; a wrong client or refresh token is refused."""
    with fake.serve() as url, httpx.Client(base_url=url) as http:
        form = {"grant_type": "refresh_token", "refresh_token": fake.refresh_token}
        app = (fake.client_id, fake.client_secret)
        answer = http.post("/oauth/token", data=form, auth=app)
        assert answer.status_code == 200
        body = answer.json()
        assert (body["expires_in"], body["api_domain"]) == (3599, url)
        assert body["refresh_token"] == fake.refresh_token
        bearer = {"authorization": f"Bearer {body['access_token']}"}
        assert http.get("/api/v2/deals", headers=bearer).status_code == 200
        assert http.post("/oauth/token", data=form, auth=(fake.client_id, "no")).status_code == 401
        stale = {**form, "refresh_token": "1:stale"}
        assert http.post("/oauth/token", data=stale, auth=app).status_code == 400


def test_the_burst_limit_answers_429_with_rate_headers(fake: FakePipedrive) -> None:
    """Every answer carries x-ratelimit-*; past the two-second window's limit the answer is a 429
    with Pipedrive's body, until the window resets."""
    fake.limits = PipedriveLimits(per_window=3)
    fake.clock.set(T0)  # an even second: a fresh two-second window
    with (
        fake.serve() as url,
        httpx.Client(base_url=url, headers={"x-api-token": fake.api_token}) as http,
    ):
        answers = [http.get("/api/v2/deals") for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["2", "1", "0", "0"]
        assert all(a.headers["x-ratelimit-limit"] == "3" for a in answers)
        assert answers[3].headers["x-ratelimit-reset"] == "2"
        assert answers[3].json() == {
            "success": False,
            "errorCode": 429,
            "error_info": "Please check developers.pipedrive.com",
            "error": "request over limit",
        }
        fake.clock.advance(timedelta(seconds=1))
        assert http.get("/api/v2/deals").headers["x-ratelimit-reset"] == "1"
        fake.clock.advance(timedelta(seconds=1))
        assert http.get("/api/v2/deals").status_code == 200


def test_the_daily_budget_counts_api_token_requests_only(fake: FakePipedrive) -> None:
    """x-daily-requests-left counts down on api_token requests; at 0 they get 429s, while OAuth
    requests go on; the budget renews the next UTC day."""
    fake.limits = PipedriveLimits(per_window=None, daily=2)
    bearer = {"authorization": f"Bearer {fake.issue_access_token()}"}
    with fake.serve() as url, httpx.Client(base_url=url) as http:
        token = {"x-api-token": fake.api_token}
        answers = [http.get("/api/v2/deals", headers=token) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert [a.headers["x-daily-requests-left"] for a in answers] == ["1", "0", "0"]
        oauth = http.get("/api/v2/deals", headers=bearer)
        assert oauth.status_code == 200
        assert "x-daily-requests-left" not in oauth.headers
        fake.clock.advance(timedelta(days=1))
        assert http.get("/api/v2/deals", headers=token).status_code == 200


def test_cdn_block_answers_with_an_html_403_page(fake: FakePipedrive, client: httpx.Client) -> None:
    """The CDN fault answers the next API requests with an HTML page, not JSON, then stops."""
    fake.add_fault(fake.cdn_block(times=1))
    blocked = deals(client)
    assert blocked.status_code == 403
    assert blocked.headers["content-type"].startswith("text/html")
    assert blocked.text.startswith("<!DOCTYPE html>")
    with pytest.raises(json.JSONDecodeError):
        blocked.json()
    assert deals(client).status_code == 200


def test_control_methods_refuse_what_pipedrive_would_not_allow(fake: FakePipedrive) -> None:
    """The fake sets ids and times itself, and only live deals can change."""
    deal = fake.create(at=T0)
    with pytest.raises(ValueError, match="set by the fake"):
        fake.create({"update_time": "2024-01-01T00:00:00Z"})
    with pytest.raises(ValueError, match="delete"):
        fake.update(deal, {"status": "deleted"})
    fake.delete(deal)
    with pytest.raises(KeyError):
        fake.update(deal, {"value": 1})
    with pytest.raises(KeyError):
        fake.delete(deal)


def test_unknown_routes_are_a_404_in_pipedrive_shape(client: httpx.Client) -> None:
    """Paths the fake does not serve answer 404 with success false."""
    answer = client.get("/api/v1/deals")
    assert answer.status_code == 404
    assert answer.json()["success"] is False


def test_the_deals_summary_counts_the_deals_not_deleted(
    fake: FakePipedrive, client: httpx.Client
) -> None:
    """``/api/v1/deals/summary`` has ``total_count``: every deal but the deleted, or one status."""
    open_ids = fake.load([T0] * 4)
    fake.create({"status": "won"})
    fake.delete(open_ids[0])
    summary = client.get("/api/v1/deals/summary")
    assert summary.status_code == 200, summary.text
    assert summary.json()["success"] is True
    assert summary.json()["data"]["total_count"] == 4
    won = client.get("/api/v1/deals/summary", params={"status": "won"}).json()
    assert won["data"]["total_count"] == 1
    assert client.get("/api/v1/deals/summary", params={"status": "deleted"}).status_code == 400
