"""FakeHubSpot keeps HubSpot's hard edges, in-process and over loopback HTTP alike."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from incsync.testing import ManualClock
from incsync.testing.fakes.hubspot import ARCHIVED_RETENTION, FakeHubSpot, HubSpotLimits
from incsync.timestamps import UTC, to_micros

T0 = datetime(2024, 9, 13, 20, 23, 3, 64_000, tzinfo=UTC)
MS = timedelta(milliseconds=1)
UNLIMITED = HubSpotLimits(search_per_second=None, per_ten_seconds=None, daily=None)
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
Json = dict[str, Any]


def epoch_ms(moment: datetime) -> str:
    return str(to_micros(moment) // 1000)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def rule(
    operator: str, value: str, high: str | None = None, name: str = "hs_lastmodifieddate"
) -> Json:
    found: Json = {"propertyName": name, "operator": operator, "value": value}
    return found if high is None else {**found, "highValue": high}


def search(
    client: httpx.Client,
    *filters: Json,
    object_type: str = "deals",
    limit: int = 200,
    after: str | None = None,
    sorts: Sequence[Json] | None = None,
    properties: Sequence[str] | None = None,
) -> httpx.Response:
    body: Json = {"filterGroups": [{"filters": list(filters)}] if filters else [], "limit": limit}
    body["sorts"] = (
        [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}]
        if sorts is None
        else list(sorts)
    )
    if after is not None:
        body["after"] = after
    if properties is not None:
        body["properties"] = list(properties)
    return client.post(f"/crm/v3/objects/{object_type}/search", json=body)


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [result["id"] for result in response.json()["results"]]


def search_all(client: httpx.Client, *filters: Json, limit: int = 200) -> list[str]:
    """Follow paging.next.after until it stops, as a naive connector would."""
    found, after = [], None
    while True:
        page = search(client, *filters, limit=limit, after=after)
        found += ids(page)
        after = page.json().get("paging", {}).get("next", {}).get("after")
        if after is None:
            return found


@pytest.fixture
def fake() -> FakeHubSpot:
    return FakeHubSpot(index_lag=timedelta(0), limits=UNLIMITED)


@pytest.fixture(params=["transport", "loopback"])
def client(request: pytest.FixtureRequest, fake: FakeHubSpot) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {fake.private_app_token}"}
    if request.param == "transport":
        base_url = "https://api.hubapi.com"
        with httpx.Client(transport=fake.transport(), base_url=base_url, headers=headers) as c:
            yield c
    else:
        with fake.serve() as base_url, httpx.Client(base_url=base_url, headers=headers) as c:
            yield c


def test_a_search_page_has_hubspots_shape(fake: FakeHubSpot, client: httpx.Client) -> None:
    """Results carry id, string properties (ISO ms timestamps, null when unset), createdAt,
    updatedAt and archived; paging.next.after is the next offset; the last page has no paging."""
    first = fake.create("deals", {"dealname": "Big", "amount": "100"}, modified_at=T0)
    fake.create("deals", {"dealname": "Small"}, modified_at=T0 + MS)
    fake.create("deals", {"dealname": "Odd"}, modified_at=T0 + 2 * MS)

    page = search(client, limit=2, properties=["dealname", "amount"])
    body = page.json()
    assert body["total"] == 3
    assert body["paging"] == {"next": {"after": "2"}}
    top = body["results"][0]
    assert set(top) == {"id", "properties", "createdAt", "updatedAt", "archived"}
    assert top["id"] == first
    assert top["archived"] is False
    assert top["properties"] == {
        "amount": "100",
        "createdate": "2024-09-13T20:23:03.064Z",
        "dealname": "Big",
        "hs_lastmodifieddate": "2024-09-13T20:23:03.064Z",
        "hs_object_id": first,
    }
    assert body["results"][1]["properties"]["amount"] is None
    assert ISO_MS.match(top["updatedAt"])
    assert ISO_MS.match(top["createdAt"])
    last = search(client, limit=2, after="2", properties=["dealname"]).json()
    assert len(last["results"]) == 1
    assert "paging" not in last


def test_filters_compare_epoch_milliseconds_including_equal_timestamps(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    """GTE keeps records equal to the bound, GT drops them, BETWEEN includes both ends; all at ms
    precision, with epoch-ms strings or ISO text as values."""
    at = {step: fake.create("deals", modified_at=T0 + step * MS) for step in (0, 1)}
    twins = {fake.create("deals", modified_at=T0 + 2 * MS) for _ in range(2)}
    one, two = epoch_ms(T0 + MS), epoch_ms(T0 + 2 * MS)

    assert set(ids(search(client, rule("GTE", one)))) == {at[1], *twins}
    assert set(ids(search(client, rule("GT", one)))) == twins
    assert set(ids(search(client, rule("BETWEEN", epoch_ms(T0), one)))) == {at[0], at[1]}
    assert set(ids(search(client, rule("EQ", two)))) == twins
    assert set(ids(search(client, rule("LT", two)))) == {at[0], at[1]}
    assert len(ids(search(client, rule("LTE", two)))) == 4
    iso = search(client, rule("GTE", "2024-09-13T20:23:03.065Z"))
    assert set(ids(iso)) == {at[1], *twins}


def test_contacts_change_lastmodifieddate_not_hs_lastmodifieddate(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    """Contacts carry ``lastmodifieddate``; filtering them on the deals' property silently matches
    nothing, as a connector using the wrong name would find out."""
    contact = fake.create("contacts", {"email": "a@example.com"}, modified_at=T0)
    right = rule("GTE", epoch_ms(T0), name="lastmodifieddate")
    sort = [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}]
    found = search(client, right, object_type="contacts", sorts=sort)
    assert ids(found) == [contact]
    assert found.json()["results"][0]["properties"]["lastmodifieddate"] == iso(T0)
    wrong = search(client, rule("GTE", epoch_ms(T0)), object_type="contacts", sorts=sort)
    assert wrong.json() == {"total": 0, "results": []}


def test_only_one_sort_rule_and_at_most_200_per_page(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    """Two sort rules (no id tie-break allowed) or a limit above 200 answer 400 VALIDATION_ERROR
    with HubSpot's error body."""
    two_rules = [
        {"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"},
        {"propertyName": "hs_object_id", "direction": "ASCENDING"},
    ]
    for response in (search(client, sorts=two_rules), search(client, limit=201)):
        assert response.status_code == 400
        body = response.json()
        assert body["status"] == "error"
        assert body["category"] == "VALIDATION_ERROR"
        assert body["correlationId"]
        assert body["message"]
    assert search(client, limit=200).status_code == 200


def test_paging_stops_at_10000_results_while_total_stays_true(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    """With 25,500 matches (12,000 sharing one timestamp) paging ends after 10,000; asking for a
    page that reaches past 10,000 answers 400 although more match; total is the real count."""
    fake.load("deals", [T0] * 12_000 + [T0 + (1 + n) * MS for n in range(13_500)])
    bound = rule("GTE", epoch_ms(T0))

    followed = search_all(client, bound)
    assert len(followed) == len(set(followed)) == 10_000
    assert search(client, bound, limit=1).json()["total"] == 25_500
    assert search(client, rule("EQ", epoch_ms(T0)), limit=1).json()["total"] == 12_000
    assert search(client, bound, after="9800").status_code == 200
    for after, limit in (("9900", 200), ("10000", 1)):
        refused = search(client, bound, after=after, limit=limit)
        assert refused.status_code == 400
        assert refused.json()["category"] == "VALIDATION_ERROR"
    ragged = search(client, bound, limit=150, after="9750").json()["paging"]["next"]["after"]
    assert search(client, bound, limit=150, after=ragged).status_code == 400


def test_malformed_requests_answer_400_validation_error(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    """HubSpot refuses what it cannot read (bad JSON, unknown operators, values that are not
    datetimes, over 5 groups / 6 filters a group / 18 filters) rather than guessing."""
    date = rule("GTE", "0")
    bodies: list[Json | list[Json]] = [
        [],
        {"query": "acme"},
        {"filterGroups": "all"},
        {"filterGroups": [{"filters": [date]}] * 6},
        {"filterGroups": [{"filters": [date] * 7}]},
        {"filterGroups": [{"filters": [date] * 6}] * 4},
        {"filterGroups": [{"filters": [{"propertyName": "amount", "operator": "ABOUT"}]}]},
        {"filterGroups": [{"filters": [{"propertyName": "amount", "operator": "GT"}]}]},
        {"filterGroups": [{"filters": [rule("GTE", "yesterday")]}]},
        {"sorts": [{"propertyName": "amount", "direction": "UP"}]},
        {"after": "ten"},
        {"limit": 0},
        {"properties": "dealname"},
    ]
    answers = [client.post("/crm/v3/objects/deals/search", json=body) for body in bodies]
    answers.append(client.post("/crm/v3/objects/deals/search", content=b"{not json"))
    answers.append(client.get("/crm/v3/objects/deals", params={"limit": 101}))
    answers.append(client.get("/crm/v3/objects/deals", params={"after": "@@"}))
    assert [a.status_code for a in answers] == [400] * len(answers)
    assert {a.json()["category"] for a in answers} == {"VALIDATION_ERROR"}
    assert client.get("/crm/v4/associations").status_code == 404
    assert client.delete("/crm/v3/objects/deals/1").status_code == 405


def test_text_compares_case_blind_numbers_numerically_and_ids_order_by_default(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    """Text properties compare without case, numeric ones as numbers; unset values sort last in
    either direction; with no sort rule results come by id."""
    big = fake.create("deals", {"dealname": "Big", "amount": "100"}, modified_at=T0)
    small = fake.create("deals", {"dealname": "small", "amount": "7"}, modified_at=T0)
    bare = fake.create("deals", {"dealname": "bare"}, modified_at=T0)
    by_amount = [{"propertyName": "amount", "direction": "DESCENDING"}]

    assert ids(search(client, rule("EQ", "BIG", name="dealname"))) == [big]
    assert ids(search(client, rule("GT", "50", name="amount"))) == [big]
    assert ids(search(client, rule("NEQ", "7", name="amount"), sorts=by_amount)) == [big, bare]
    assert ids(search(client, sorts=by_amount)) == [big, small, bare]
    assert ids(search(client, sorts=[{"propertyName": "amount"}])) == [small, big, bare]
    assert ids(search(client, sorts=[])) == sorted([big, small, bare], key=int)


def test_control_methods_refuse_data_hubspot_would_never_hold(fake: FakeHubSpot) -> None:
    """Ids are numeric and unique, the id and timestamps belong to the fake, values are strings,
    and only live objects can be updated or archived."""
    deal = fake.create("deals", object_id="42")
    with pytest.raises(ValueError, match="numeric and unused"):
        fake.create("deals", object_id="42")
    with pytest.raises(ValueError, match="numeric and unused"):
        fake.create("deals", object_id="D-1")
    with pytest.raises(ValueError, match="set by the fake"):
        fake.create("contacts", {"lastmodifieddate": "2024-01-01T00:00:00.000Z"})
    with pytest.raises(ValueError, match="strings"):
        fake.update("deals", deal, {"amount": 5})  # type: ignore[dict-item]
    fake.archive("deals", deal)
    for change in (fake.update, fake.archive):
        with pytest.raises(KeyError, match="no live deals"):
            change("deals", deal)


def test_offsets_are_recomputed_so_a_mid_sync_update_skips_a_record(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    """``after`` is an offset into the result set as it is on each request: when a record on an
    earlier page is updated, later records move up one place and one is never returned."""
    created = [fake.create("deals", modified_at=T0 + n * MS) for n in range(30)]
    bound = rule("GTE", epoch_ms(T0))

    seen = ids(search(client, bound, limit=10))
    fake.update("deals", created[3], {"dealname": "touched"}, modified_at=T0 + timedelta(hours=1))
    seen += ids(search(client, bound, limit=10, after="10"))
    seen += ids(search(client, bound, limit=10, after="20"))

    assert set(created) - set(seen) == {created[10]}
    assert seen.count(created[3]) == 2


def test_records_sharing_a_timestamp_come_in_an_arbitrary_order(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    """Without an id tie-break, ties are neither in id nor creation order, but a repeated request
    returns them in the same order."""
    created = fake.load("deals", [T0] * 50)
    first = ids(search(client, rule("EQ", epoch_ms(T0))))
    assert sorted(first) == sorted(created)
    assert first != created
    assert first != sorted(created, key=int)
    assert ids(search(client, rule("EQ", epoch_ms(T0)))) == first


def test_search_sees_writes_after_the_index_lag_and_get_sees_them_at_once(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    """A write reaches search only after ``index_lag``; until then search shows the previous
    version (old timestamp included) while GET by id shows the new one."""
    fake.index_lag = timedelta(seconds=5)
    deal = fake.create("deals", {"dealname": "v1"}, modified_at=T0)
    everything = rule("GTE", "0")

    assert search(client, everything).json()["total"] == 0
    assert client.get(f"/crm/v3/objects/deals/{deal}").json()["properties"]["dealname"] == "v1"
    fake.clock.advance(timedelta(seconds=5) - MS)
    assert search(client, everything).json()["total"] == 0
    fake.clock.advance(MS)
    assert ids(search(client, everything)) == [deal]

    fake.update("deals", deal, {"dealname": "v2"}, modified_at=T0 + timedelta(minutes=1))
    stale = search(client, everything, properties=["dealname"]).json()["results"][0]
    assert stale["properties"]["dealname"] == "v1"
    assert stale["updatedAt"] == iso(T0)
    assert (
        client.get(f"/crm/v3/objects/deals/{deal}?properties=dealname").json()["properties"][
            "dealname"
        ]
        == "v2"
    )
    fake.clock.advance(timedelta(seconds=5))
    fresh = search(client, everything, properties=["dealname"]).json()["results"][0]
    assert fresh["properties"]["dealname"] == "v2"


def test_every_search_sees_the_index_as_it_is_now_whatever_its_filters(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    """Searches that differ only in their filters each see every write indexed by then:
    updates, archives and writes that reach the index while the clock moves."""
    fake.index_lag = timedelta(seconds=5)
    first, second, third = fake.load("deals", [T0, T0 + MS, T0 + 2 * MS])
    assert ids(search(client, rule("GTE", epoch_ms(T0)))) == [first, second, third]

    fake.update("deals", first, modified_at=T0 + timedelta(minutes=1))
    fake.archive("deals", second)
    assert ids(search(client, rule("GTE", epoch_ms(T0 + MS)))) == [third]  # lag: first is old
    fake.clock.advance(timedelta(seconds=5))
    assert ids(search(client, rule("GT", epoch_ms(T0)))) == [third, first]
    assert ids(search(client, rule("LT", epoch_ms(T0 + timedelta(hours=1))))) == [third, first]


def test_archived_objects_leave_search_and_are_listed_with_an_opaque_cursor(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    """Archived objects never appear in search nor in GET; ``?archived=true`` lists them with
    ``archived: true`` and ``archivedAt``, paged with an opaque cursor."""
    created = fake.load("deals", [T0 + n * MS for n in range(5)])
    gone = created[1:4]
    for deal in gone:
        fake.archive("deals", deal, at=T0 + timedelta(days=1))

    assert set(ids(search(client, rule("GTE", "0")))) == {created[0], created[4]}
    assert client.get(f"/crm/v3/objects/deals/{gone[0]}").status_code == 404
    assert client.get(f"/crm/v3/objects/deals/{gone[0]}?archived=true").status_code == 200
    listed: list[Json] = []
    page = client.get("/crm/v3/objects/deals", params={"archived": "true", "limit": 2}).json()
    listed += page["results"]
    cursor = page["paging"]["next"]["after"]
    assert not cursor.isdigit()
    assert page["paging"]["next"]["link"].endswith(f"after={cursor.replace('=', '%3D')}")
    page = client.get(
        "/crm/v3/objects/deals", params={"archived": "true", "limit": 2, "after": cursor}
    ).json()
    listed += page["results"]
    assert "paging" not in page
    assert [r["id"] for r in listed] == gone
    assert all(
        r["archived"] is True and r["archivedAt"] == iso(T0 + timedelta(days=1)) for r in listed
    )
    assert set(fake.ground_truth("deals")) == {created[0], created[4]}
    assert set(fake.archived("deals")) == set(gone)


def test_archived_objects_are_deleted_for_good_after_90_days(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    """An archived object is listed (and readable) for 90 days after its archiving, then never."""
    kept, gone = fake.load("deals", [T0, T0 + MS])
    fake.clock.set(T0 + timedelta(days=1))
    fake.archive("deals", gone)
    archived = {"archived": "true", "limit": "100"}
    fake.clock.advance(ARCHIVED_RETENTION - MS)
    listed = client.get("/crm/v3/objects/deals", params=archived).json()["results"]
    assert [r["id"] for r in listed] == [gone]
    assert client.get(f"/crm/v3/objects/deals/{gone}?archived=true").status_code == 200
    fake.clock.advance(MS)
    assert client.get("/crm/v3/objects/deals", params=archived).json()["results"] == []
    assert client.get(f"/crm/v3/objects/deals/{gone}?archived=true").status_code == 404
    assert fake.archived("deals") == {}
    assert set(ids(search(client, rule("GTE", "0")))) == {kept}


def test_search_beyond_its_per_second_limit_is_a_secondly_429(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    """The sixth search within a second answers 429 ``SECONDLY`` with no Retry-After (unless
    enabled); a second later searching works again. Other calls are not held back by it."""
    fake.limits = HubSpotLimits(search_per_second=5, per_ten_seconds=None, daily=None)
    assert all(search(client).status_code == 200 for _ in range(5))
    throttled = search(client)
    assert throttled.status_code == 429
    assert throttled.json()["policyName"] == "SECONDLY"
    assert throttled.json()["errorType"] == "RATE_LIMIT"
    assert "Retry-After" not in throttled.headers
    assert client.get("/crm/v3/objects/deals").status_code == 200
    fake.limits = HubSpotLimits(
        search_per_second=5, per_ten_seconds=None, daily=None, retry_after=True
    )
    assert search(client).headers["Retry-After"] == "1"
    fake.clock.advance(timedelta(seconds=1))
    assert search(client).status_code == 200


def test_the_burst_limit_is_ten_secondly_rolling_and_reported_in_headers(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    """Calls beyond the ten-second budget answer 429 ``TEN_SECONDLY_ROLLING``; the window rolls, and
    every answer reports the budget in ``X-HubSpot-RateLimit-*`` headers."""
    fake.limits = HubSpotLimits(search_per_second=None, per_ten_seconds=3, daily=1000)
    answers = []
    for _ in range(3):
        answers.append(client.get("/crm/v3/objects/deals"))
        fake.clock.advance(timedelta(seconds=1))
    assert [a.headers["X-HubSpot-RateLimit-Remaining"] for a in answers] == ["2", "1", "0"]
    assert answers[0].headers["X-HubSpot-RateLimit-Max"] == "3"
    assert answers[0].headers["X-HubSpot-RateLimit-Daily-Remaining"] == "999"
    throttled = client.get("/crm/v3/objects/deals")
    assert throttled.status_code == 429
    assert throttled.json()["policyName"] == "TEN_SECONDLY_ROLLING"
    fake.clock.advance(timedelta(seconds=7))  # the first call leaves the window
    assert client.get("/crm/v3/objects/deals").status_code == 200


def test_the_daily_limit_is_a_daily_429_until_the_next_utc_day(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    """Past the daily budget every call answers 429 ``DAILY`` (Retry-After, when enabled, points
    at midnight UTC) until the day changes."""
    fake.limits = HubSpotLimits(
        search_per_second=None, per_ten_seconds=None, daily=2, retry_after=True
    )
    assert [search(client).status_code for _ in range(2)] == [200, 200]
    throttled = search(client)
    assert throttled.status_code == 429
    assert throttled.json()["policyName"] == "DAILY"
    midnight = datetime(2024, 9, 14, tzinfo=UTC)
    assert int(throttled.headers["Retry-After"]) == int((midnight - fake.clock()).total_seconds())
    fake.clock.set(midnight)
    assert search(client).status_code == 200


def test_calls_without_a_known_token_are_401_invalid_authentication(fake: FakeHubSpot) -> None:
    """No token, or one HubSpot never issued, answers 401 ``INVALID_AUTHENTICATION``."""
    with httpx.Client(transport=fake.transport(), base_url="https://api.hubapi.com") as client:
        for headers in ({}, {"Authorization": "Bearer pat-na1-made-up"}):
            response = client.get("/crm/v3/objects/deals", headers=headers)
            assert response.status_code == 401
            assert response.json()["category"] == "INVALID_AUTHENTICATION"
            assert response.json()["message"].startswith("Authentication credentials not found")


def test_oauth_access_tokens_expire_after_30_minutes_and_refresh(fake: FakeHubSpot) -> None:
    """The refresh grant returns a 30-minute access token and the same refresh token; once the
    clock passes expiry (or tokens are expired) calls answer 401 ``EXPIRED_AUTHENTICATION``."""
    refresh_token = fake.issue_refresh_token()
    form = {
        "grant_type": "refresh_token",
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
        "refresh_token": refresh_token,
    }
    with fake.serve() as base_url, httpx.Client(base_url=base_url) as client:
        granted = client.post("/oauth/v1/token", data=form).json()
        assert granted["expires_in"] == 1800
        assert granted["refresh_token"] == refresh_token
        bearer = {"Authorization": f"Bearer {granted['access_token']}"}
        assert client.get("/crm/v3/objects/deals", headers=bearer).status_code == 200

        fake.clock.advance(timedelta(minutes=35))
        expired = client.get("/crm/v3/objects/deals", headers=bearer)
        assert expired.status_code == 401
        assert expired.json()["category"] == "EXPIRED_AUTHENTICATION"
        assert expired.json()["message"].endswith("expired 5 minute(s) ago.")

        renewed = client.post("/oauth/v1/token", data=form).json()["access_token"]
        bearer = {"Authorization": f"Bearer {renewed}"}
        assert client.get("/crm/v3/objects/deals", headers=bearer).status_code == 200
        fake.expire_access_tokens()
        assert client.get("/crm/v3/objects/deals", headers=bearer).status_code == 401


def test_an_unknown_or_revoked_refresh_token_is_400_bad_refresh_token(fake: FakeHubSpot) -> None:
    """The token endpoint answers 400 with HubSpot's own ``status`` codes, not OAuth's."""
    revoked = fake.issue_refresh_token()
    fake.revoke_refresh_token(revoked)
    form = {"grant_type": "refresh_token", "client_id": fake.client_id}
    form["client_secret"] = fake.client_secret
    with httpx.Client(transport=fake.transport(), base_url="https://api.hubapi.com") as client:
        for refresh_token in ("never-issued", revoked):
            answer = client.post("/oauth/v1/token", data={**form, "refresh_token": refresh_token})
            assert answer.status_code == 400
            assert answer.json()["status"] == "BAD_REFRESH_TOKEN"
        mistakes = {
            "BAD_CLIENT_ID": {"client_id": "someone-else"},
            "BAD_CLIENT_SECRET": {"client_secret": "guess"},
            "BAD_GRANT_TYPE": {"grant_type": "authorization_code"},
        }
        for status, mistake in mistakes.items():
            answer = client.post("/oauth/v1/token", data={**form, **mistake})
            assert (answer.status_code, answer.json()["status"]) == (400, status)


def test_defaults_are_as_unkind_as_hubspot() -> None:
    """Out of the box writes lag search by two seconds and search is limited to 5 per second."""
    fake = FakeHubSpot(clock=ManualClock(T0))
    fake.create("deals")
    headers = {"Authorization": f"Bearer {fake.private_app_token}"}
    with httpx.Client(transport=fake.transport(), base_url="https://x", headers=headers) as client:
        assert search(client).json()["total"] == 0
        fake.clock.advance(timedelta(seconds=2))
        statuses = [search(client).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]


@given(
    offsets=st.lists(st.integers(0, 40), min_size=1, max_size=30),
    operator=st.sampled_from(["GTE", "GT", "EQ", "LT", "BETWEEN"]),
    bound=st.integers(-2, 42),
    extra=st.booleans(),
)
@settings(max_examples=60, deadline=None)
def test_a_bounded_search_on_the_sort_property_finds_what_a_scan_would(
    offsets: list[int], operator: str, bound: int, extra: bool
) -> None:
    """The index skips the entries below a lower bound on the property it is sorted by; the ids
    and the total are those of judging every deal, with or without a second filter."""
    fake = FakeHubSpot(index_lag=timedelta(0), limits=UNLIMITED)
    moments = [T0 + offset * MS for offset in offsets]
    made = fake.load("deals", moments, {"dealname": "d"})
    low = T0 + bound * MS
    value = str(to_micros(low) // 1000)
    given_filter: Json = {"propertyName": "hs_lastmodifieddate", "operator": operator}
    given_filter["value"] = value
    if operator == "BETWEEN":
        given_filter["highValue"] = str(to_micros(low + 5 * MS) // 1000)
    filters = [given_filter]
    if extra:
        filters.append(
            {"propertyName": "hs_object_id", "operator": "GTE", "value": made[1 % len(made)]}
        )
    passes: Callable[[datetime], bool] = {
        "GTE": lambda at: at >= low,
        "GT": lambda at: at > low,
        "EQ": lambda at: at == low,
        "LT": lambda at: at < low,
        "BETWEEN": lambda at: low <= at <= low + 5 * MS,
    }[operator]
    expected = {
        object_id
        for object_id, at in zip(made, moments, strict=True)
        if passes(at) and (not extra or int(object_id) >= int(made[1 % len(made)]))
    }
    headers = {"Authorization": f"Bearer {fake.private_app_token}"}
    base_url = "https://api.hubapi.com"
    with httpx.Client(transport=fake.transport(), base_url=base_url, headers=headers) as client:
        answer = search(client, *filters)
        assert set(ids(answer)) == expected
        assert answer.json()["total"] == len(expected)
