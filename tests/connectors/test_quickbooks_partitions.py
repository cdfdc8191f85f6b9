"""QuickBooks full reads in time partitions, over loopback HTTP to the fake company.

The fake answers each request after a latency waited outside its lock, so requests sent
together are in flight together, and refuses an 11th concurrent one as Intuit does.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import httpx

from incsync import Outcome
from incsync.connectors.auth import TokenSet
from incsync.marks import PARTITION_MARK
from incsync.partitions import plan_from_marks
from incsync.testing import InMemoryStore
from incsync.testing.fakes import Latency
from incsync.vendors.quickbooks import DELETES_MARK
from tests.connectors.test_quickbooks import (
    ENTITY,
    KEY,
    assert_sink_matches,
    bursty_timestamps,
    connect,
    engine_for,
    make_fake,
    mutate_on_query,
)


def _refusing_query(number: int) -> Callable[[httpx.Request], httpx.Response | None]:
    """A fault that refuses the ``number``-th query (an answer no retry changes)."""
    seen = [0]

    def fault(request: httpx.Request) -> httpx.Response | None:
        if "/query" in request.url.path:
            seen[0] += 1
            if seen[0] == number:
                return httpx.Response(400, json={"Fault": {"Error": [{"code": "4000"}]}})
        return None

    return fault


def _bounded_queries(fake: object) -> list[str]:
    statements = [
        httpx.URL(request.url).params.get("query", "")
        for request in fake.requests  # type: ignore[attr-defined]
    ]
    return [s for s in statements if "MetaData.LastUpdatedTime < '" in s]


def test_a_full_read_sends_each_partition_s_requests_at_once_and_ends_equal_to_the_company() -> (
    None
):
    """Four partitions are read by four readers at once, each bounded below the next one's start."""
    fake = make_fake()
    fake.latency = Latency(fixed=0.03)
    fake.bulk_load(ENTITY, bursty_timestamps(6_000), fields=lambda n: {"DocNumber": str(n)})
    store = InMemoryStore()
    with fake.serve() as base_url, connect(fake, base_url, page_size=500, partitions=4) as qbo:
        result = engine_for(fake, store).run_cycle(KEY, qbo)
    assert result.outcome is Outcome.COMPLETED
    assert result.applied == 6_000
    assert_sink_matches(store, fake)
    assert 2 <= fake.in_flight_peak <= 4
    assert len({q.split("< '")[1][:20] for q in _bounded_queries(fake)}) == 3
    assert not [name for name in store.load(KEY).marks if name.startswith(PARTITION_MARK)]


def test_an_access_token_expiring_under_concurrent_partitions_is_refreshed_once() -> None:
    """Readers that meet the 401 together refresh once; the others replay with the new token."""
    fake = make_fake()
    fake.latency = Latency(fixed=0.02)
    fake.bulk_load(ENTITY, bursty_timestamps(3_000))
    refreshed: list[TokenSet] = []
    mutate_on_query(fake, {8}, lambda _n: fake.expire_access_tokens())
    store = InMemoryStore()
    with (
        fake.serve() as base_url,
        connect(fake, base_url, page_size=200, on_refresh=refreshed.append, partitions=4) as qbo,
    ):
        result = engine_for(fake, store).run_cycle(KEY, qbo)
    assert result.outcome is Outcome.COMPLETED
    assert_sink_matches(store, fake)
    assert len(refreshed) == 1
    assert [r.status for r in fake.requests].count(401) >= 1


def test_a_partitioned_full_read_marks_deletes_from_its_start_and_a_crash_keeps_that_mark() -> None:
    """No partition reads CDC; the first durable page sets the deletes' mark to a little before
    the read began, a cycle resuming the read keeps it, and the next incremental read finds a
    delete made while the read was interrupted."""
    fake = make_fake()
    ids = fake.bulk_load(ENTITY, bursty_timestamps(4_000))
    store = InMemoryStore()
    with fake.serve() as base_url:
        with connect(fake, base_url, page_size=300, include_deletes=True, partitions=3) as qbo:
            began = fake.clock()
            fake.add_fault(_refusing_query(9))
            failed = engine_for(fake, store).run_cycle(KEY, qbo)
        assert failed.outcome is Outcome.FAILED
        state = store.load(KEY)
        assert plan_from_marks(state.marks) is not None
        mark = state.marks[DELETES_MARK]
        assert mark <= began
        assert not [r for r in fake.requests if "/cdc" in r.url]

        fake.advance(timedelta(hours=1))
        fake.delete(ENTITY, ids[0])
        with connect(fake, base_url, page_size=300, include_deletes=True, partitions=3) as qbo:
            resumed = engine_for(fake, store).run_cycle(KEY, qbo)
            assert resumed.outcome is Outcome.COMPLETED
            assert store.load(KEY).marks[DELETES_MARK] == mark
            fake.advance(timedelta(hours=1))
            incremental = engine_for(fake, store).run_cycle(KEY, qbo)
        assert incremental.outcome is Outcome.COMPLETED
    assert_sink_matches(store, fake, deleted=frozenset({ids[0]}))


def test_a_throttle_answer_to_one_partition_holds_back_the_others() -> None:
    """QuickBooks asks one reader to wait a second: that reader waits in its retries, and every
    other reader of the company waits too before its next request, instead of being refused; the
    gate opens once the vendor answers the reader it asked to wait."""
    fake = make_fake()
    fake.latency = Latency(fixed=0.02)
    fake.bulk_load(ENTITY, bursty_timestamps(3_000))
    queries = itertools.count(1)

    def throttle_the_sixth(request: httpx.Request) -> httpx.Response | None:
        if "/query" in request.url.path and next(queries) == 6:
            return httpx.Response(429, headers={"Retry-After": "1"}, text="Too many requests")
        return None

    fake.add_fault(throttle_the_sixth)
    slept: list[tuple[int, float]] = []
    store = InMemoryStore()

    def sleep(seconds: float) -> None:
        slept.append((threading.get_ident(), seconds))
        time.sleep(seconds)  # the fake's clock stands still: the waits are real

    with (
        fake.serve() as base_url,
        connect(fake, base_url, page_size=200, partitions=4, sleep=sleep) as qbo,
    ):
        result = engine_for(fake, store).run_cycle(KEY, qbo)
    assert result.outcome is Outcome.COMPLETED
    assert_sink_matches(store, fake)
    assert {seconds for _, seconds in slept} == {1.0}
    assert len({thread for thread, _ in slept}) >= 3
