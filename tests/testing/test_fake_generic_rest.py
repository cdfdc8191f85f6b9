"""FakeGenericRest serves what its docstring promises, in-process and over loopback HTTP alike."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from incsync.testing.fakes.generic_rest import ITEMS_PATH, FakeGenericRest, Paging
from incsync.timestamps import UTC

T0 = datetime(2024, 5, 1, tzinfo=UTC)
Json = dict[str, Any]


def client_for(fake: FakeGenericRest, **params: str) -> httpx.Client:
    """A client on the fake's transport with its bearer token."""
    return httpx.Client(
        transport=fake.transport(),
        base_url="https://generic.test",
        headers={"Authorization": f"Bearer {fake.token}"},
        params=params,
    )


def items(body: Json) -> list[Json]:
    """The items of an answer."""
    found: list[Json] = body["data"]["items"]
    return found


def test_the_filter_is_inclusive_and_the_order_ascending() -> None:
    """``updated_since`` keeps items at or after the moment, sorted by (updated_at, id)."""
    fake = FakeGenericRest()
    fake.load(10, T0)
    with client_for(fake) as client:
        body = client.get(ITEMS_PATH, params={"updated_since": "2024-05-01T00:00:04Z"}).json()
    got = items(body)
    assert [item["meta"]["updated_at"] for item in got][:2] == [
        "2024-05-01T00:00:04Z",
        "2024-05-01T00:00:05Z",
    ]
    assert len(got) == 6
    assert body["meta"]["total"] == 6


def test_times_are_kept_to_the_second_by_default() -> None:
    """Updates within one second share its timestamp, as on second-precision APIs."""
    fake = FakeGenericRest()
    first = fake.create(updated_at=T0 + timedelta(milliseconds=100))
    second = fake.create(updated_at=T0 + timedelta(milliseconds=900))
    truth = fake.ground_truth()
    assert truth[first]["meta"] == truth[second]["meta"] == {"updated_at": "2024-05-01T00:00:00Z"}


@pytest.mark.parametrize("timestamp_format", ["epoch_seconds", "epoch_ms"])
def test_epoch_formats(timestamp_format: Any) -> None:
    """Epoch formats are numbers in records and digits in the filter."""
    fake = FakeGenericRest(timestamp_format=timestamp_format)
    fake.load(3, T0)
    scale = 1 if timestamp_format == "epoch_seconds" else 1000
    since = str(int(T0.timestamp() + 1) * scale)
    with client_for(fake) as client:
        got = items(client.get(ITEMS_PATH, params={"updated_since": since}).json())
    assert [item["meta"]["updated_at"] for item in got] == [
        int(T0.timestamp() + n) * scale for n in (1, 2)
    ]


def test_deleted_items_show_only_when_asked() -> None:
    """A deleted item stays with ``status: deleted``, listed only with include_deleted=true."""
    fake = FakeGenericRest()
    ids = fake.load(3, T0)
    fake.delete(ids[1])
    with client_for(fake) as client:
        plain = items(client.get(ITEMS_PATH).json())
        every = items(client.get(ITEMS_PATH, params={"include_deleted": "true"}).json())
    assert [item["id"] for item in plain] == [ids[0], ids[2]]
    assert [item["status"] for item in every] == ["active", "active", "deleted"]
    assert fake.deleted() == {ids[1]}
    assert set(fake.ground_truth()) == {ids[0], ids[2]}


def test_deleted_items_are_listed_for_the_retention_only() -> None:
    """With a retention, a deleted item is listed (to include_deleted=true) that long, then not."""
    fake = FakeGenericRest(deleted_retention=timedelta(days=7))
    ids = fake.load(2, T0)
    fake.delete(ids[0])
    with client_for(fake, include_deleted="true") as client:
        fake.clock.advance(timedelta(days=7) - timedelta(seconds=1))
        assert {item["id"] for item in items(client.get(ITEMS_PATH).json())} == set(ids)
        fake.clock.advance(timedelta(seconds=1))
        assert [item["id"] for item in items(client.get(ITEMS_PATH).json())] == ids[1:]


def walk(fake: FakeGenericRest, client: httpx.Client, limit: int) -> Iterator[list[Json]]:
    """Every page of the fake's own paging style, followed as a client would."""
    params: dict[str, str] = {"limit": str(limit)}
    number = 0
    url = ITEMS_PATH
    while True:
        if fake.paging == "offset":
            params["offset"] = str(number * limit)
        if fake.paging == "page":
            params["page"] = str(number + 1)
        body = (
            client.get(url, params=params).json() if url == ITEMS_PATH else client.get(url).json()
        )
        yield items(body)
        number += 1
        if fake.paging in ("offset", "page") and len(items(body)) < limit:
            return
        if fake.paging == "cursor":
            if body["meta"]["next_cursor"] is None:
                return
            params["cursor"] = body["meta"]["next_cursor"]
        if fake.paging == "next_link":
            if body["links"]["next"] is None:
                return
            url = body["links"]["next"]
        if fake.paging == "none":
            return


@pytest.mark.parametrize("paging", ["offset", "page", "cursor", "next_link", "none"])
def test_every_paging_style_reaches_every_item_once(paging: Paging) -> None:
    """Each style's pages hold every item once, in order."""
    fake = FakeGenericRest(paging=paging)
    ids = fake.load(95, T0)
    with client_for(fake) as client:
        pages = list(walk(fake, client, 20))
    assert [item["id"] for page in pages for item in page] == ids
    assert len(pages) == (1 if paging == "none" else 5)


def test_offsets_shift_when_an_item_changes_but_cursors_do_not() -> None:
    """An item updated between pages moves to the end: offsets skip one, the cursor skips none."""
    cases: tuple[tuple[Paging, bool], ...] = (("offset", True), ("cursor", False))
    for paging, skipped in cases:
        fake = FakeGenericRest(paging=paging)
        ids = fake.load(40, T0)
        fake.clock.set(T0 + timedelta(hours=1))
        seen: list[str] = []
        with client_for(fake) as client:
            for number, page in enumerate(walk(fake, client, 10)):
                seen.extend(item["id"] for item in page)
                if number == 0:
                    fake.update(ids[0], {"amount": 5})
        assert (set(ids) - set(seen) != set()) is skipped, paging


def test_next_links_carry_every_parameter() -> None:
    """A next link repeats the query's parameters, so following it alone continues the query."""
    fake = FakeGenericRest(paging="next_link")
    fake.load(30, T0)
    with client_for(fake) as client:
        body = client.get(
            ITEMS_PATH, params={"limit": "10", "updated_since": "2024-05-01T00:00:05Z"}
        ).json()
    link = httpx.URL(body["links"]["next"])
    assert link.params["limit"] == "10"
    assert link.params["updated_since"] == "2024-05-01T00:00:05Z"
    assert "cursor" in link.params


def test_a_page_larger_than_the_cap_is_a_400() -> None:
    """``limit`` above ``max_page_size`` is refused with a JSON error."""
    fake = FakeGenericRest(max_page_size=50)
    with client_for(fake) as client:
        response = client.get(ITEMS_PATH, params={"limit": "51"})
    assert response.status_code == 400
    assert response.json()["message"] == "limit must be between 1 and 50"


@pytest.mark.parametrize(
    ("params", "error"),
    [({"updated_since": "soon"}, "invalid_request"), ({"cursor": "%%%"}, "invalid_cursor")],
)
def test_bad_parameters_are_400s(params: dict[str, str], error: str) -> None:
    """An unreadable time or cursor is a 400 naming the problem."""
    fake = FakeGenericRest(paging="cursor")
    with client_for(fake, **params) as client:
        response = client.get(ITEMS_PATH)
    assert (response.status_code, response.json()["error"]) == (400, error)


@pytest.mark.parametrize(
    ("auth", "good", "bad"),
    [
        ("bearer", {"headers": {"Authorization": "Bearer T"}}, {"headers": {"Authorization": "X"}}),
        ("header", {"headers": {"X-API-Key": "T"}}, {"headers": {}}),
        ("query", {"params": {"api_key": "T"}}, {"params": {"api_key": "X"}}),
    ],
)  # fmt: skip
def test_credentials_are_checked_where_configured(
    auth: Any, good: dict[str, Any], bad: dict[str, Any]
) -> None:
    """The right credential is accepted; a wrong or missing one is a 401 with a JSON body."""
    fake = FakeGenericRest(auth=auth, token="T")
    with httpx.Client(transport=fake.transport(), base_url="https://generic.test") as client:
        assert client.get(ITEMS_PATH, **good).status_code == 200
        refused = client.get(ITEMS_PATH, **bad)
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_token"


def test_too_many_requests_in_a_second_are_429_with_retry_after() -> None:
    """Past the per-second limit the fake answers 429 with Retry-After until its clock moves."""
    fake = FakeGenericRest(requests_per_second=2)
    with client_for(fake) as client:
        statuses = [client.get(ITEMS_PATH).status_code for _ in range(3)]
        throttled = client.get(ITEMS_PATH)
        fake.clock.advance(timedelta(seconds=1))
        again = client.get(ITEMS_PATH)
    assert statuses == [200, 200, 429]
    assert throttled.headers["Retry-After"] == "1"
    assert again.status_code == 200


def test_served_over_loopback_http_it_answers_the_same() -> None:
    """``serve()`` answers over a real socket exactly as the transport does."""
    fake = FakeGenericRest(paging="next_link")
    fake.load(15, T0)
    with fake.serve() as base_url, httpx.Client(base_url=base_url) as client:
        headers = {"Authorization": f"Bearer {fake.token}"}
        first = client.get(ITEMS_PATH, params={"limit": "10"}, headers=headers).json()
        second = client.get(first["links"]["next"], headers=headers).json()
    assert first["links"]["next"].startswith(base_url)
    assert len(items(first)) + len(items(second)) == 15
    assert second["links"]["next"] is None


def test_malformed_items_are_served_as_given_and_left_out_of_the_truth() -> None:
    """An item added as malformed is served verbatim and is no part of the ground truth."""
    fake = FakeGenericRest()
    fake.add_malformed({"name": "no id"}, T0)
    with client_for(fake) as client:
        assert items(client.get(ITEMS_PATH).json()) == [{"name": "no id"}]
    assert fake.ground_truth() == {}


def test_rows_that_are_no_objects_are_served_in_their_place_in_the_order() -> None:
    """A list, a string or null added as malformed is served verbatim at its moment's place."""
    fake = FakeGenericRest()
    fake.load(2, T0, step=timedelta(seconds=10))
    fake.add_malformed(["not", "an", "object"], T0 + timedelta(seconds=1))
    fake.add_malformed("just text", T0 + timedelta(seconds=2))
    fake.add_malformed(None, T0 + timedelta(seconds=3))
    with client_for(fake) as client:
        got: list[Any] = client.get(ITEMS_PATH).json()["data"]["items"]
    assert got[1:4] == [["not", "an", "object"], "just text", None]
    assert [row["name"] for row in (got[0], got[4])] == ["item 0", "item 1"]
    assert len(fake.ground_truth()) == 2
