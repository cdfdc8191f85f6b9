"""FakeStripe keeps Stripe's documented behaviour: newest-first lists, events, keys, throttles."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from incsync.testing import ManualClock
from incsync.testing.fakes.stripe import FakeStripe
from incsync.timestamps import UTC

T0 = datetime(2024, 6, 1, 12, tzinfo=UTC)


@pytest.fixture
def fake() -> FakeStripe:
    """A fake account on a manual clock at ``T0``."""
    return FakeStripe(clock=ManualClock(T0))


def client(fake: FakeStripe, key: str | None = None) -> httpx.Client:
    """A client that reaches the fake in-process with a key (the fake's own by default)."""
    return httpx.Client(
        base_url="https://api.stripe.com",
        transport=fake.transport(),
        headers={"Authorization": f"Bearer {key or fake.secret_key}"},
    )


def get(fake: FakeStripe, url: str, **params: Any) -> dict[str, Any]:
    """GET ``url`` and return the JSON body of a 200."""
    with client(fake) as http:
        response = http.get(url, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ids(body: dict[str, Any]) -> list[str]:
    """The ids of a list page's items."""
    return [item["id"] for item in body["data"]]


def test_lists_are_newest_first_and_page_with_starting_after(fake: FakeStripe) -> None:
    """Objects come by ``created`` descending, same-second ones newest first; paging is exact."""
    made = fake.load("invoices", [T0 - timedelta(seconds=i // 3) for i in range(250)])
    newest_first = [made[i] for i in sorted(range(250), key=lambda i: (i // 3, -i))]
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        page = get(fake, "/v1/invoices", **params)
        assert page["object"] == "list"
        assert page["url"] == "/v1/invoices"
        seen += ids(page)
        if not page["has_more"]:
            break
        params["starting_after"] = seen[-1]
    assert seen == newest_first
    assert len(get(fake, "/v1/invoices")["data"]) == 10  # the default limit


def test_ending_before_returns_the_newer_neighbours(fake: FakeStripe) -> None:
    """``ending_before`` gives the ``limit`` objects just newer than the cursor, newest first."""
    made = fake.load("charges", [T0 + timedelta(seconds=i) for i in range(10)])
    page = get(fake, "/v1/charges", limit=3, ending_before=made[4])
    assert ids(page) == [made[7], made[6], made[5]]
    assert page["has_more"] is True
    assert get(fake, "/v1/charges", limit=3, ending_before=made[7])["has_more"] is False


def test_created_filters_are_inclusive_or_exclusive_as_named(fake: FakeStripe) -> None:
    """``created[gte|gt|lte|lt]`` and an exact ``created`` filter on whole seconds."""
    made = fake.load("invoices", [T0 + timedelta(seconds=i) for i in range(10)])
    base = int(T0.timestamp())
    assert set(ids(get(fake, "/v1/invoices", **{"created[gte]": base + 7}))) == set(made[7:])
    assert set(ids(get(fake, "/v1/invoices", **{"created[gt]": base + 7}))) == set(made[8:])
    both = {"created[gt]": base + 2, "created[lte]": base + 4}
    assert ids(get(fake, "/v1/invoices", **both)) == [made[4], made[3]]
    assert ids(get(fake, "/v1/invoices", **{"created[lt]": base + 1})) == [made[0]]
    assert ids(get(fake, "/v1/invoices", created=base + 5)) == [made[5]]


@pytest.mark.parametrize("limit", ["0", "101", "ten"])
def test_a_limit_outside_1_to_100_is_a_400(fake: FakeStripe, limit: str) -> None:
    """Stripe caps pages at 100 and answers ``invalid_request_error`` for the ``limit`` param."""
    with client(fake) as http:
        response = http.get("/v1/invoices", params={"limit": limit})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["param"] == "limit"


def test_a_deleted_cursor_object_is_resource_missing(fake: FakeStripe) -> None:
    """Paging after a deleted invoice is a 400 ``resource_missing``; it is gone from the list."""
    draft = fake.create_invoice()
    fake.create_invoice()
    fake.delete_invoice(draft)
    with client(fake) as http:
        response = http.get("/v1/invoices", params={"starting_after": draft})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "resource_missing"
    assert draft not in ids(get(fake, "/v1/invoices"))
    assert fake.deleted("invoices") == {draft}
    assert draft not in fake.ground_truth("invoices")


def test_every_mutation_emits_its_events_with_the_object_snapshot(fake: FakeStripe) -> None:
    """Each change emits Stripe's events, newest first, each with the object as it was then."""
    invoice = fake.create_invoice(status="open")
    fake.clock.advance(timedelta(seconds=1))
    fake.update_invoice(invoice, description="renamed")
    fake.clock.advance(timedelta(seconds=1))
    fake.pay_invoice(invoice)
    other = fake.create_invoice(status="open")
    fake.void_invoice(other)
    draft = fake.create_invoice()
    fake.delete_invoice(draft)
    charge = fake.create_charge(amount=500)
    fake.update_charge(charge, description="desk")
    fake.refund_charge(charge, amount=200)
    events = get(fake, "/v1/events", limit=100)["data"]
    kinds = [(event["type"], event["data"]["object"]["id"]) for event in reversed(events)]
    assert kinds == [
        ("invoice.created", invoice),
        ("invoice.finalized", invoice),
        ("invoice.updated", invoice),
        ("invoice.updated", invoice),
        ("invoice.paid", invoice),
        ("invoice.payment_succeeded", invoice),
        ("invoice.created", other),
        ("invoice.finalized", other),
        ("invoice.updated", other),
        ("invoice.voided", other),
        ("invoice.created", draft),
        ("invoice.deleted", draft),
        ("charge.succeeded", charge),
        ("charge.updated", charge),
        ("charge.refunded", charge),
    ]
    first_update = events[-3]
    assert first_update["data"]["object"]["description"] == "renamed"
    assert first_update["data"]["previous_attributes"] == {"description": None}
    assert first_update["object"] == "event"
    assert first_update["created"] == int(T0.timestamp()) + 1
    paid = next(e for e in events if e["type"] == "invoice.paid")["data"]["object"]
    assert (paid["status"], paid["amount_paid"], paid["amount_remaining"]) == ("paid", 1000, 0)
    assert events[0]["data"]["object"]["amount_refunded"] == 200
    assert events[0]["data"]["object"]["refunded"] is False
    assert fake.ground_truth("invoices")[other]["status"] == "void"
    with pytest.raises(ValueError, match="draft"):
        fake.delete_invoice(invoice)


def test_events_filter_by_types_and_wildcard_type(fake: FakeStripe) -> None:
    """``types[]`` takes exact names (at most 20), ``type`` a ``*`` wildcard, not both."""
    invoice = fake.create_invoice()
    fake.update_invoice(invoice, description="x")
    fake.create_charge()
    with client(fake) as http:
        exact = http.get("/v1/events", params={"types[]": ["invoice.updated", "charge.failed"]})
        wildcard = http.get("/v1/events", params={"type": "charge.*"})
        both = http.get("/v1/events", params={"type": "charge.*", "types[]": ["a"]})
        many = http.get("/v1/events", params={"types[]": [f"invoice.t{i}" for i in range(21)]})
    assert [e["type"] for e in exact.json()["data"]] == ["invoice.updated"]
    assert [e["type"] for e in wildcard.json()["data"]] == ["charge.succeeded"]
    assert both.status_code == many.status_code == 400


def test_events_are_kept_for_30_days_only(fake: FakeStripe) -> None:
    """An event older than 30 days is gone from the list and can no longer be paged after."""
    old = fake.create_invoice()
    fake.clock.advance(timedelta(days=20))
    fake.update_invoice(old, description="recent")
    first = get(fake, "/v1/events")["data"]
    assert len(first) == 2
    fake.clock.advance(timedelta(days=11))
    left = get(fake, "/v1/events")["data"]
    assert [e["type"] for e in left] == ["invoice.updated"]
    with client(fake) as http:
        gone = http.get("/v1/events", params={"starting_after": first[-1]["id"]})
    assert gone.status_code == 400
    assert gone.json()["error"]["code"] == "resource_missing"


def test_bad_missing_and_revoked_keys_are_401_with_stripe_bodies(fake: FakeStripe) -> None:
    """Keys are checked on every call; error bodies mask the key as Stripe does."""
    wrong = "sk_test_" + "x" * 40
    with client(fake, wrong) as http:
        bad = http.get("/v1/invoices")
    with httpx.Client(base_url="https://api.stripe.com", transport=fake.transport()) as http:
        missing = http.get("/v1/invoices")
        basic = http.get("/v1/invoices", auth=(fake.secret_key, ""))
    fake.revoke_secret_key()
    with client(fake) as http:
        revoked = http.get("/v1/charges")
    assert bad.status_code == missing.status_code == revoked.status_code == 401
    assert basic.status_code == 200
    assert bad.json()["error"]["message"].startswith("Invalid API Key provided: sk_test_****")
    assert wrong not in bad.text
    assert "did not provide an API key" in missing.json()["error"]["message"]
    assert revoked.json()["error"]["message"].startswith("Expired API Key provided")
    assert fake.secret_key not in revoked.text
    assert all(r.headers.get("authorization") in (None, "***") for r in fake.requests)


def test_fail_next_answers_429s_and_5xx_with_stripe_headers(fake: FakeStripe) -> None:
    """Queued faults answer with Stripe's bodies, ``Retry-After`` and ``Stripe-Should-Retry``."""
    fake.fail_next(1, retry_after=2, should_retry=True)
    fake.fail_next(1, 500, should_retry=False)
    with client(fake) as http:
        limited = http.get("/v1/invoices")
        broken = http.get("/v1/invoices")
        fine = http.get("/v1/invoices")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "2"
    assert limited.headers["Stripe-Should-Retry"] == "true"
    assert limited.json()["error"]["code"] == "rate_limit"
    assert broken.status_code == 500
    assert broken.headers["Stripe-Should-Retry"] == "false"
    assert broken.json()["error"]["type"] == "api_error"
    assert fine.status_code == 200


def test_each_endpoint_and_the_account_have_their_own_limit_a_second() -> None:
    """Within one second of the fake's clock, a fourth read of one endpoint (limit 3) is refused
    while another endpoint is still read, until the account's five are used; the next second
    allows them again. A refused read counts against neither limit."""
    clock = ManualClock(T0)
    fake = FakeStripe(clock=clock, reads_per_second=5, endpoint_reads_per_second=3)
    with client(fake) as http:
        first = [http.get("/v1/invoices").status_code for _ in range(4)]
        others = [http.get("/v1/events").status_code for _ in range(3)]
        clock.advance(timedelta(seconds=1))
        again = [http.get(url).status_code for url in ("/v1/invoices", "/v1/events")]
    assert first == [200, 200, 200, 429]
    assert others == [200, 200, 429]
    assert again == [200, 200]
    refused = [r for r in fake.requests if r.status == 429]
    assert len(refused) == 2


def test_serves_over_loopback_http(fake: FakeStripe) -> None:
    """``serve()`` answers real HTTP requests with the same behaviour."""
    made = fake.load("invoices", [T0])
    with fake.serve() as base_url, httpx.Client(base_url=base_url) as http:
        response = http.get("/v1/invoices", headers={"Authorization": f"Bearer {fake.secret_key}"})
        unknown = http.get("/v1/customers", headers={"Authorization": f"Bearer {fake.secret_key}"})
    assert response.status_code == 200
    assert ids(response.json()) == made
    assert unknown.status_code == 404
