"""A Stripe full read listed as created ranges at once, against FakeStripe over loopback HTTP."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from incsync.connectors.http import HttpOptions
from incsync.connectors.retry import RetryPolicy
from incsync.errors import ConfigurationError
from incsync.results import Outcome
from incsync.testing import InMemoryStore, ManualClock
from incsync.testing.fakes import Latency, RunningClock
from incsync.testing.fakes.stripe import ENDPOINT_READS_PER_SECOND, FakeStripe
from incsync.vendors import _stripe_ranges as plan
from incsync.vendors._stripe_ranges import STRIPE_BEGAN, CreatedRange
from incsync.vendors.stripe import MAX_LIST_READERS, STRIPE_LIST_READERS, StripeConnector
from tests.connectors.test_stripe import KEY, T0, assert_matches, connector, engine, no_sleep, run

Served = list[tuple[dict[str, str], list[tuple[str, int]]]]
"""Each list request's query, with the ``(id, created)`` of the objects answered."""

LIST = "/v1/invoices"
SANDBOX_READS_PER_SECOND = 25  # a sandbox (test mode) account's limit, as for an sk_test_ key


@pytest.fixture
def fake() -> FakeStripe:
    """A fake account at ``T0``."""
    return FakeStripe(clock=ManualClock(T0))


def spread(fake: FakeStripe, count: int, *, days: int, end: datetime) -> list[str]:
    """Load ``count`` invoices evenly over the ``days`` before ``end``, oldest first."""
    step = timedelta(days=days) / count
    start = end - timedelta(days=days)
    return fake.load("invoices", [start + step * number for number in range(count)])


def recording(fake: FakeStripe, served: Served) -> Callable[[httpx.Request], httpx.Response | None]:
    """Return a fault that answers list requests as the fake does and keeps what they listed."""

    def fault(request: httpx.Request) -> httpx.Response | None:
        if request.url.path != LIST:
            return None
        response = fake.handle(request)
        objects = json.loads(response.read())["data"] if response.status_code == 200 else []
        served.append((dict(request.url.params), [(raw["id"], raw["created"]) for raw in objects]))
        return response

    return fault


def span_of(query: dict[str, str]) -> CreatedRange:
    """The created range a list request asks for."""
    gte, lt = query.get("created[gte]"), query.get("created[lt]")
    return CreatedRange(None if gte is None else int(gte), None if lt is None else int(lt))


def is_page(query: dict[str, str]) -> bool:
    """Whether a list request asks for a page (a probe asks for one object)."""
    return query["limit"] == "100"


def test_every_invoice_is_read_once_by_the_range_that_holds_it_paced_under_the_limit() -> None:
    """Eight readers list 2,000 invoices spread over 120 days from a sandbox account that allows
    25 reads a second, and 25 to each endpoint, on the real clock: none is refused, the ranges
    are disjoint and cover all time (the oldest open below, the newest open above), every
    invoice is listed once, by the range that holds its ``created``, and the sink ends equal to
    Stripe."""
    fake = FakeStripe(
        clock=RunningClock(),
        reads_per_second=SANDBOX_READS_PER_SECOND,
        endpoint_reads_per_second=ENDPOINT_READS_PER_SECOND,
    )
    fake.latency = Latency(fixed=0.02)
    ids = spread(fake, 2_000, days=120, end=fake.clock() - timedelta(days=1))
    served: Served = []
    fake.add_fault(recording(fake, served))
    store = InMemoryStore()
    with fake.serve() as base_url:
        source = connector(fake, base_url, sleep=time.sleep)
        result = run(engine(store, fake), source)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert (result.fetched, result.applied, result.rejected) == (2_000, 2_000, 0)
    assert not [r for r in fake.requests if r.status == 429]
    assert_matches(store, fake)

    pages = [(query, listed) for query, listed in served if is_page(query)]
    listed_ids = [object_id for _, listed in pages for object_id, _ in listed]
    assert sorted(listed_ids) == sorted(ids)
    first, *ranged = pages
    assert span_of(first[0]) == CreatedRange(None, None)
    for query, listed in ranged:
        span = span_of(query)
        assert all(
            (span.gte is None or span.gte <= created) and (span.lt is None or created < span.lt)
            for _, created in listed
        )
    spans = sorted({span_of(query) for query, _ in ranged}, key=lambda s: s.gte or STRIPE_BEGAN)
    assert len(spans) == STRIPE_LIST_READERS
    assert spans[0].gte is None
    assert spans[-1].lt is None
    assert all(low.lt == high.gte for low, high in itertools.pairwise(spans))
    # Spread evenly, the invoices fall in every range: the probes bounded the oldest closely.
    assert len({span_of(query) for query, listed in ranged if listed}) == STRIPE_LIST_READERS


@pytest.mark.parametrize(("readers", "least", "most"), [(1, 1, 1), (8, 4, 8)])
def test_the_readers_of_the_ranges_have_their_requests_in_flight_together(
    readers: int, least: int, most: int
) -> None:
    """With eight readers the fake holds several list pages in flight at once (the probes that
    planned them aside); with one, a page at a time."""
    fake = FakeStripe(clock=ManualClock(T0))
    fake.latency = Latency(fixed=0.05)
    spread(fake, 4_000, days=100, end=T0 - timedelta(days=1))

    counting = [False]

    def from_the_ranges_on(request: httpx.Request) -> httpx.Response | None:
        # The probes are sent at once too: count from the first page of a range on.
        params = request.url.params
        ranged = params.get("limit") == "100" and any(name.startswith("created") for name in params)
        if ranged and not counting[0]:
            counting[0] = True
            fake.in_flight_peak = 1
        return None

    fake.add_fault(from_the_ranges_on)
    store = InMemoryStore()
    with fake.serve() as base_url:
        source = StripeConnector(
            base_url,
            secret_key=fake.secret_key,
            list_readers=readers,
            options=HttpOptions(sleep=no_sleep, clock=fake.clock),
        )
        result = run(engine(store, fake), source)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert result.applied == 4_000
    assert least <= fake.in_flight_peak <= most


def test_invoices_created_updated_voided_and_deleted_while_the_ranges_are_read(
    fake: FakeStripe,
) -> None:
    """Changes made while the ranges are read all reach the sink in the same cycle: invoices
    created (newer than every range: from the events), updated in a range read already and in
    one not read yet, voided; and the invoice a range pages after is deleted, so the range
    resumes from its second, still within its lower bound, and lists no invoice twice."""
    ids = spread(fake, 1_500, days=90, end=T0 - timedelta(days=1))
    served: Served = []
    meddled: list[str] = []

    def meddle(request: httpx.Request) -> httpx.Response | None:
        after = request.url.params.get("starting_after")
        if after is None or "created[gte]" not in request.url.params or meddled:
            return None
        meddled.append(after)
        fake.clock.advance(timedelta(seconds=3))
        fake.delete_invoice(after)  # this request is answered 400 resource_missing
        fake.create_invoice(amount_due=7)
        fake.update_invoice(ids[-1], description="listed on the first page")
        fake.update_invoice(ids[0], description="in the oldest range")
        fake.void_invoice(ids[700])
        return None

    fake.add_fault(meddle)  # first: it changes the account before the fake answers
    fake.add_fault(recording(fake, served))
    store = InMemoryStore()
    with fake.serve() as base_url:
        result = run(engine(store, fake), connector(fake, base_url))
    assert result.outcome is Outcome.COMPLETED, result.error
    assert result.rejected == 0
    assert_matches(store, fake)
    [gone] = meddled
    [refused] = [query for query, _ in served if query.get("starting_after") == gone]
    resumed = [query for query, _ in served if "created[lte]" in query]
    assert resumed
    assert all(query["created[gte]"] == refused["created[gte]"] for query in resumed)
    listed = [object_id for query, page in served if is_page(query) for object_id, _ in page]
    assert len(listed) == len(set(listed))


def test_a_range_that_fails_mid_way_fails_the_cycle_and_the_next_ends_equal(
    fake: FakeStripe,
) -> None:
    """A range whose second page Stripe refuses for good fails the cycle: the pages written
    before stay, no cursor is kept, every reader is joined before the cycle returns (no request
    comes after), and the next cycle reads everything again and ends equal to Stripe."""
    spread(fake, 1_500, days=90, end=T0 - timedelta(days=1))
    failed_once: list[str] = []

    def refuse_a_second_page(request: httpx.Request) -> httpx.Response | None:
        params = request.url.params
        if failed_once or "starting_after" not in params or "created[lt]" not in params:
            return None
        failed_once.append(str(request.url))
        body = {"error": {"type": "api_error", "message": "An unknown error occurred"}}
        return httpx.Response(500, json=body, headers={"Stripe-Should-Retry": "false"})

    fake.add_fault(refuse_a_second_page)
    store = InMemoryStore()
    with fake.serve() as base_url:
        sync = engine(store, fake)
        failed = run(sync, connector(fake, base_url))
        after_the_cycle = len(fake.requests)
        time.sleep(0.2)
        assert len(fake.requests) == after_the_cycle
        assert failed.outcome is Outcome.FAILED
        assert failed.error_class == "TransientSourceError"
        assert sync.state(KEY).cursor is None
        assert failed_once
        assert 0 < failed.applied < 1_500
        healed = run(sync, connector(fake, base_url))
    assert healed.outcome is Outcome.COMPLETED, healed.error
    assert healed.fetched == 1_500
    assert_matches(store, fake)


def test_a_stop_while_the_ranges_are_read_abandons_every_reader(fake: FakeStripe) -> None:
    """A stop set while the ranges are read ends the cycle with every reader joined (no request
    comes after it returns) and no cursor kept; the next cycle reads it all and ends equal."""
    spread(fake, 3_000, days=90, end=T0 - timedelta(days=1))
    fake.latency = Latency(fixed=0.01)
    stop = threading.Event()
    ranged = [0]

    def stop_mid_way(request: httpx.Request) -> httpx.Response | None:
        if "starting_after" in request.url.params and "created[gte]" in request.url.params:
            ranged[0] += 1
            if ranged[0] == 5:
                stop.set()
        return None

    fake.add_fault(stop_mid_way)
    store = InMemoryStore()
    with fake.serve() as base_url:
        sync = engine(store, fake)
        source = connector(fake, base_url)
        stopped = sync.run_cycle(KEY, source, stop=stop)
        source.close()
        after_the_cycle = len(fake.requests)
        time.sleep(0.2)
        assert len(fake.requests) == after_the_cycle
        assert stopped.outcome is Outcome.INTERRUPTED_STOP
        assert 0 < stopped.applied < 3_000
        assert sync.state(KEY).cursor is None
        rest = run(sync, connector(fake, base_url))
    assert rest.outcome is Outcome.COMPLETED, rest.error
    assert_matches(store, fake)


@pytest.mark.parametrize(
    ("count", "requests", "probes"), [(0, 2, 0), (1, 2, 0), (100, 2, 0), (101, 23, 13)]
)
def test_what_the_first_full_read_of_a_small_account_costs(
    fake: FakeStripe, count: int, requests: int, probes: int
) -> None:
    """An account of one page or none costs its list request and its events request, as a
    single reader does: no probe, no range. One of two pages costs 23: its first page, 13
    probes of one invoice (six reaching back eightfold from an hour, seven inside the bracket
    they find), a page for each of the eight ranges, and the events."""
    if count:
        spread(fake, count, days=10, end=T0 - timedelta(days=1))
    store = InMemoryStore()
    with fake.serve() as base_url:
        result = run(engine(store, fake), connector(fake, base_url))
    assert result.outcome is Outcome.COMPLETED, result.error
    assert result.applied == count
    assert len(fake.requests) == requests
    assert len([r for r in fake.requests if "limit=1&" in r.url]) == probes
    assert fake.requests[0].url.endswith("/v1/invoices?limit=100")
    assert "/v1/events?" in fake.requests[-1].url
    assert_matches(store, fake)


def test_one_list_reader_pages_the_list_alone(fake: FakeStripe) -> None:
    """``list_readers=1`` reads an account of two pages with three requests: two pages of the
    list, unfiltered, and the events."""
    spread(fake, 150, days=30, end=T0 - timedelta(days=1))
    store = InMemoryStore()
    with fake.serve() as base_url:
        one = StripeConnector(
            base_url,
            secret_key=fake.secret_key,
            list_readers=1,
            options=HttpOptions(sleep=no_sleep, clock=fake.clock, retry=RetryPolicy()),
        )
        assert run(engine(store, fake), one).applied == 150
    assert len(fake.requests) == 3
    assert not [r for r in fake.requests if "invoices" in r.url and "created" in r.url]
    assert_matches(store, fake)


@pytest.mark.parametrize("readers", [0, MAX_LIST_READERS + 1, True])
def test_list_readers_out_of_range_is_refused(readers: Any) -> None:
    """``list_readers`` takes a whole number from 1 to MAX_LIST_READERS."""
    with pytest.raises(ConfigurationError, match="list_readers"):
        StripeConnector(secret_key="sk_test_x", list_readers=readers)


# -- the plan, as pure decisions ---------------------------------------------------------------


def test_the_first_probes_reach_back_eightfold_from_an_hour_until_stripe_began() -> None:
    """From a top in 2024 the probes reach back 1 h, 8 h, 64 h, 512 h, 4,096 h and 32,768 h;
    the next (about 30 years) is before Stripe began."""
    top = int(T0.timestamp())
    assert [top - moment for moment in plan.first_probes(top)] == [
        3_600 * 8**power for power in range(6)
    ]
    assert plan.first_probes(STRIPE_BEGAN + 3_600) == []


@given(
    oldest=st.integers(min_value=STRIPE_BEGAN, max_value=STRIPE_BEGAN + 10**9),
    top_after=st.integers(min_value=0, max_value=10**9),
    readers=st.integers(min_value=1, max_value=MAX_LIST_READERS),
)
def test_two_rounds_of_probes_find_a_lower_bound_within_a_readers_share(
    oldest: int, top_after: int, readers: int
) -> None:
    """Answered truly for any oldest ``created``, the two rounds bound it from below, within
    one share of the bracket the first round found, and never above it."""
    top = oldest + top_after

    def answers(moments: list[int]) -> dict[int, bool]:
        return {moment: oldest < moment for moment in moments}

    low, high = plan.bracket(answers(plan.first_probes(top)), STRIPE_BEGAN, top + 1)
    assert low <= oldest < high
    width = high - low
    low, high = plan.bracket(answers(plan.probes_between(low, high, readers - 1)), low, high)
    assert low <= oldest < high
    assert high - low <= width // readers + 2


@given(
    oldest=st.integers(min_value=STRIPE_BEGAN, max_value=STRIPE_BEGAN + 10**9),
    span=st.integers(min_value=0, max_value=10**8),
    count=st.integers(min_value=1, max_value=MAX_LIST_READERS),
    created=st.integers(min_value=0, max_value=2 * 10**9),
)
def test_the_ranges_hold_every_created_second_exactly_once(
    oldest: int, span: int, count: int, created: int
) -> None:
    """Whatever the bounds, the ranges (at most ``count``) are contiguous, the first open
    below and the last open above: any ``created`` falls in exactly one."""
    ranges = plan.created_ranges(oldest, oldest + span, count)
    assert 1 <= len(ranges) <= count
    assert ranges[0].gte is None
    assert ranges[-1].lt is None
    holding = [
        piece
        for piece in ranges
        if (piece.gte is None or piece.gte <= created) and (piece.lt is None or created < piece.lt)
    ]
    assert len(holding) == 1
