"""Salesforce over loopback: a persistent count drift is reconciled by Id, with no full re-read."""

from __future__ import annotations

from datetime import timedelta

import attrs
import httpx

from incsync import Outcome, SyncEngine, SyncPolicy
from incsync.records import RECONCILED
from incsync.testing import InMemoryStore
from tests.connectors.test_salesforce import KEY, T0, connect, make_fake, spread
from tests.helpers import transactions_by_id

POLICY = attrs.evolve(SyncPolicy(safety_lag=timedelta(seconds=30)), reconcile_drift=True)


def test_a_drift_planted_in_the_org_is_reconciled_by_id() -> None:
    """Deletes never read and a row behind the cursor: Ids listed, one fetched, two tombstoned."""
    fake = make_fake()
    ids = fake.bulk_load("Opportunity", spread(250, T0 - timedelta(days=1)))
    fake.advance(timedelta(hours=1))
    store = InMemoryStore()
    engine = SyncEngine(store, policy=POLICY, clock=fake.clock)
    with fake.serve() as base_url, connect(fake, base_url, batch_size=200) as connector:
        assert engine.run_cycle(KEY, connector).outcome is Outcome.COMPLETED
        # Deleted without a delete the connector reads (no include_deleted), and a row that
        # became visible behind the cursor: the source has 249 live rows, the host 250.
        fake.delete_record("Opportunity", ids[3])
        fake.delete_record("Opportunity", ids[200])
        late = fake.add_record("Opportunity", {"Name": "Late"}, at=T0 - timedelta(days=2))
        for _ in range(2):
            fake.advance(timedelta(days=1, minutes=1))
            counted = engine.run_cycle(KEY, connector).counted
            assert counted is not None
            assert counted.drift == -1
        fake.advance(timedelta(hours=1))
        fake.requests.clear()
        result = engine.run_cycle(KEY, connector)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert (result.reconcile_fetched, result.reconcile_tombstoned, result.swept) == (1, 2, 0)
    soql = [httpx.URL(r.url).params["q"] for r in fake.requests if "/services/data/" in r.url]
    reads = [q for q in soql if q.startswith("SELECT Id, SystemModstamp") and " IN (" not in q]
    assert reads
    assert all("WHERE SystemModstamp >=" in q for q in reads)  # incremental only: no full read
    listings = [q for q in soql if q.startswith("SELECT Id FROM Opportunity")]
    assert len(listings) == 2  # answers of 200 rows (batch_size): 200, then 50 and done
    assert sum(" IN (" in q for q in soql) == 2  # one batch missing, one batch to confirm
    held = transactions_by_id(store, KEY)
    assert len(held) == 251  # nothing removed
    live = {i for i, t in held.items() if not t.record.deleted}
    assert live == {row["Id"] for row in fake.records("Opportunity")}
    assert late in live
    assert held[ids[3]].deleted_reason == RECONCILED
    state = engine.state(KEY)
    assert state.generation == 0
    assert state.count_check is not None
    assert state.count_check.drift == 0
