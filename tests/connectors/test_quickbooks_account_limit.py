"""Cycles of one QuickBooks company at once, over loopback HTTP: within its 10 concurrent requests.

The fake answers each request after a latency waited outside its lock, so requests sent together
are in flight together; it counts the most in flight at once, refused ones included.
"""

from __future__ import annotations

from datetime import timedelta

import httpx

from incsync import Outcome
from incsync.partitions import plan_from_marks, readers_per_cycle
from incsync.scheduling import SourcePlan, run_due
from incsync.testing import InMemoryStore
from incsync.testing.fakes import Latency
from incsync.vendors.quickbooks import QUICKBOOKS_PARTITIONS, QuickBooksConnector
from tests.connectors.test_quickbooks import (
    ENTITY,
    KEY,
    assert_sink_matches,
    bursty_timestamps,
    connect,
    engine_for,
    make_fake,
)
from tests.connectors.test_quickbooks_partitions import _refusing_query


def test_three_cycles_of_one_company_at_once_stay_within_its_concurrent_requests() -> None:
    """run_due lets 3 cycles of the company run at once; each full read is split for 3 readers
    (10 // 3), not the 4 partitions the connector asks for, so the company never has more than
    9 requests in flight and the fake refuses none."""
    fake = make_fake()
    fake.latency = Latency(fixed=0.03)
    fake.bulk_load(ENTITY, bursty_timestamps(4_000), fields=lambda n: {"DocNumber": str(n)})
    store = InMemoryStore()
    engine = engine_for(fake, store)
    keys = [f"{KEY}-{number}" for number in range(3)]
    plans = [SourcePlan(key, timedelta(hours=1), account_key=fake.realm_id) for key in keys]
    built: list[QuickBooksConnector] = []
    with fake.serve() as base_url:

        def factory(_source_key: str) -> QuickBooksConnector:
            built.append(connect(fake, base_url, page_size=200))
            return built[-1]

        results = run_due(engine, plans, factory, max_workers=3, per_account_limit=3)
    readers = readers_per_cycle(QUICKBOOKS_PARTITIONS, QuickBooksConnector.concurrent_requests, 3)
    assert readers == 3
    assert sorted(r.source_key for r in results) == keys
    assert {r.outcome for r in results} == {Outcome.COMPLETED}
    assert {r.applied for r in results} == {4_000}
    assert fake.in_flight_peak <= 3 * readers
    assert [r.status for r in fake.requests].count(429) == 0
    # Each read was planned for its readers: 3 partitions, so 2 bounds drawn below the last.
    statements = [httpx.URL(r.url).params.get("query", "") for r in fake.requests]
    bounded = {s.split("< '")[1][:20] for s in statements if "MetaData.LastUpdatedTime < '" in s}
    assert len(bounded) == readers - 1


def test_a_kept_plan_of_more_partitions_than_readers_is_read_a_few_at_a_time() -> None:
    """A read planned for 4 readers and interrupted goes on, when 5 cycles of the company may
    run at once (2 readers each), with at most 2 of its partitions in flight at any time, and
    ends equal to the company."""
    fake = make_fake()
    fake.bulk_load(ENTITY, bursty_timestamps(4_000), fields=lambda n: {"DocNumber": str(n)})
    store = InMemoryStore()
    with fake.serve() as base_url:
        with connect(fake, base_url, page_size=200, partitions=4) as qbo:
            fake.add_fault(_refusing_query(9))
            failed = engine_for(fake, store).run_cycle(KEY, qbo)
        assert failed.outcome is Outcome.FAILED
        kept = plan_from_marks(store.load(KEY).marks)
        assert kept is not None
        assert len(kept.unfinished()) == 4
        fake.clear_faults()
        fake.latency = Latency(fixed=0.03)
        fake.in_flight_peak = 0
        with connect(fake, base_url, page_size=200, partitions=4) as qbo:
            resumed = engine_for(fake, store).run_cycle(KEY, qbo, cycles_per_account=5)
    assert resumed.outcome is Outcome.COMPLETED
    assert_sink_matches(store, fake)
    assert fake.in_flight_peak == 2
