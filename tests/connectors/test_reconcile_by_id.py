"""HubSpot and Pipedrive over loopback HTTP: a persistent drift is reconciled by id, in numeric
order, through each vendor's own listing and fetch by id, with no full re-read.

Records gone from the source without a delete the connector reads, and records behind the cursor
the incremental reads never see, make the counts drift twice; the next cycle lists the source's
ids and the host's, fetches the missing records, tombstones the extra ones (nothing removed), and
leaves the cursor, the generation and the count as they should be. The ids cross the digit
boundaries ("99" to "100", "999" to "1000"), where code point order and numeric order part.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from incsync import SQLiteStore, SyncEngine, SyncPolicy
from incsync.connectors.auth import BearerToken
from incsync.connectors.http import HttpOptions
from incsync.connectors.retry import RetryPolicy
from incsync.errors import BadResponseError
from incsync.records import RECONCILED
from incsync.results import CycleResult, Outcome
from incsync.testing import ManualClock
from incsync.testing.fakes.hubspot import FakeHubSpot
from incsync.testing.fakes.pipedrive import FakePipedrive
from incsync.vendors.hubspot import HubSpotConnector
from incsync.vendors.pipedrive import PipedriveConnector
from tests.helpers import transactions_by_id

KEY = "reconciled"
POLICY = SyncPolicy(count_interval=timedelta(minutes=1), reconcile_drift=True)
STEP = timedelta(minutes=2)


def _sleeping_on(clock: ManualClock) -> Callable[[float], None]:
    """A sleep that moves the fakes' clock instead of waiting, so their rate limits clear."""

    def sleep(seconds: float) -> None:
        clock.advance(timedelta(seconds=seconds))

    return sleep


def _drift_twice(engine: SyncEngine, run: Callable[[], CycleResult], drift: int) -> None:
    """Two cycles, each counting the same drift: the next one reconciles."""
    for _ in range(2):
        result = run()
        assert result.outcome is Outcome.COMPLETED, result.error
        assert result.counted is not None
        assert result.counted.drift == drift
        assert (result.reconcile_fetched, result.reconcile_tombstoned) == (0, 0)
    state = engine.state(KEY)
    assert state.count_check is not None
    assert state.count_check.persistent


def _reconciled_in_place(engine: SyncEngine, result: CycleResult) -> None:
    """The reconciling cycle completed with no reset, left its cursor, and the counts agree."""
    assert result.outcome is Outcome.COMPLETED, result.error
    assert result.cursor_after == result.cursor_before  # records fetched by id move no cursor
    assert result.swept == 0
    state = engine.state(KEY)
    assert (state.generation, state.reset_pending, state.last_error) == (0, False, None)
    assert state.cursor == result.cursor_after
    assert state.count_check is not None
    assert (state.count_check.drift, state.count_check.full_read_drift) == (0, 0)
    entry = engine.history(KEY, 1)[0]
    assert (entry.reconcile_fetched, entry.reconcile_tombstoned) == (
        result.reconcile_fetched,
        result.reconcile_tombstoned,
    )


# -- HubSpot -------------------------------------------------------------------------------------


def test_hubspot_deals_archived_unread_merged_and_behind_the_cursor_are_reconciled(
    tmp_path: Path,
) -> None:
    """10,400 deals, more than one search may page through: 40 archived with no delete channel
    read, one merged into another, 6 created behind the cursor. The ids are listed by searches
    sorted by hs_object_id, each after the last id (never past the 10,000-result cap), within
    the search rate limit; the differences read by batch read; no search reads the deals whole."""
    fake = FakeHubSpot()  # HubSpot's own rate limits and index lag
    start = fake.clock() - timedelta(days=20)
    ids = fake.load("deals", [start + timedelta(seconds=n) for n in range(10_400)], {"a": "1"})
    assert int(ids[0]) < 99  # the ids cross "99"/"100", "999"/"1000" and "9999"/"10000"
    assert int(ids[-1]) > 10_000
    posted: list[tuple[str, dict[str, Any]]] = []
    fake.add_fault(lambda r: _kept(posted, r))
    with closing(SQLiteStore(tmp_path / "hubspot.db")) as store, fake.serve() as base_url:
        engine = SyncEngine(store, policy=POLICY, clock=fake.clock)
        hubspot = HubSpotConnector(
            base_url,
            auth=BearerToken(fake.private_app_token),
            include_archived=False,  # no delete channel: archived deals are never read
            options=HttpOptions(sleep=_sleeping_on(fake.clock), clock=fake.clock),
        )
        with hubspot:

            def run() -> CycleResult:
                fake.clock.advance(STEP)
                return engine.run_cycle(KEY, hubspot)

            assert run().outcome is Outcome.COMPLETED
            archived = ids[100:120] + ids[9_990:10_010]
            for deal in archived:
                fake.archive("deals", deal)
            fake.merge("deals", ids[5], into=ids[6])
            hidden = [
                fake.create("deals", {"a": "late"}, modified_at=start - timedelta(hours=n))
                for n in range(1, 7)
            ]
            _drift_twice(engine, run, 6 - 41)
            fake.requests.clear()
            posted.clear()
            result = run()
        _reconciled_in_place(engine, result)
        held = transactions_by_id(store, KEY)
    assert (result.reconcile_fetched, result.reconcile_tombstoned) == (6, 41)
    assert len(held) == 10_406  # nothing removed
    live = {i for i, t in held.items() if not t.record.deleted}
    assert live == set(fake.ground_truth("deals"))
    assert set(hidden) <= live
    assert {i for i, t in held.items() if t.deleted_reason == RECONCILED} == {*archived, ids[5]}

    searches = [body for path, body in posted if path.endswith("/search")]
    listings = [b for b in searches if "sorts" in b and b.get("properties") == ["hs_object_id"]]
    # 10,365 live deals, 200 a page; a search the rate limit refused was sent again.
    assert len({json.dumps(body) for body in listings}) == 52
    for body in listings:
        assert body["sorts"] == [{"propertyName": "hs_object_id", "direction": "ASCENDING"}]
        assert "after" not in body  # a new search from its first result: the cap never nears
    reads = [body for body in searches if body not in listings and "sorts" in body]
    assert reads
    assert all(body["filterGroups"] for body in reads)  # incremental reads only: no full read
    batches = [body for path, body in posted if path.endswith("/batch/read")]
    assert sorted({len(batch["inputs"]) for batch in batches}) == [6, 41]
    # Paced under the search rate limit (HubSpotConnector.requests_per_second): never refused.
    assert not any(r.status == 429 for r in fake.requests)


def _kept(posted: list[tuple[str, dict[str, Any]]], request: httpx.Request) -> None:
    """A fault that answers nothing: it keeps the path and body of each POST the fake gets."""
    if request.method == "POST" and request.url.path.startswith("/crm/"):
        posted.append((request.url.path, json.loads(request.content)))


# -- Pipedrive -----------------------------------------------------------------------------------


@pytest.mark.parametrize("include_deleted", [False, True])
def test_pipedrive_deals_deleted_unread_and_behind_the_cursor_are_reconciled(
    include_deleted: bool, tmp_path: Path
) -> None:
    """1,200 deals (ids 1 to 1,200): 25 deleted where no read sees it (unasked, or stamped behind
    the cursor) and 4 created behind the cursor. The ids are listed with sort_by=id and no status,
    the differences fetched with ids=; with include_deleted the deleted deals come back from that
    fetch as the source's own tombstones, without it the engine tombstones them."""
    fake = FakePipedrive()  # Pipedrive's burst limit
    start = fake.clock() - timedelta(days=10)
    ids = [str(i) for i in fake.load([start + timedelta(seconds=n) for n in range(1_200)])]
    with closing(SQLiteStore(tmp_path / "pipedrive.db")) as store, fake.serve() as base_url:
        engine = SyncEngine(store, policy=POLICY, clock=fake.clock)
        pipedrive = PipedriveConnector(
            base_url,
            api_token=fake.api_token,
            include_deleted=include_deleted,
            options=HttpOptions(
                sleep=_sleeping_on(fake.clock), clock=fake.clock, retry=RetryPolicy(jitter=0.0)
            ),
        )
        with pipedrive:

            def run() -> CycleResult:
                fake.clock.advance(STEP)
                return engine.run_cycle(KEY, pipedrive)

            assert run().outcome is Outcome.COMPLETED
            deleted = ids[90:100] + ids[995:1_010]  # around "99"/"100" and "999"/"1000"
            for deal in deleted:
                # Stamped behind the cursor, as a delete made visible late: no read lists it.
                fake.delete(int(deal), at=start + timedelta(minutes=18))
            hidden = [str(fake.create({"title": "late"}, at=start)) for _ in range(4)]
            _drift_twice(engine, run, 4 - 25)
            fake.requests.clear()
            result = run()
        _reconciled_in_place(engine, result)
        held = transactions_by_id(store, KEY)
    # Deleted deals come back by id as tombstones when asked for; else the engine makes them.
    assert (result.reconcile_fetched, result.reconcile_tombstoned) == (
        4,
        0 if include_deleted else 25,
    )
    assert len(held) == 1_204  # nothing removed
    truth = fake.ground_truth()
    assert {i for i, t in held.items() if not t.record.deleted} == {
        i for i, deal in truth.items() if not deal["is_deleted"]
    }
    assert set(hidden) <= set(held)
    reasons = {held[deal].deleted_reason for deal in deleted}
    assert reasons == ({None} if include_deleted else {RECONCILED})

    asked = [httpx.URL(r.url).params for r in fake.requests if "/api/v2/deals" in r.url]
    listings = [p for p in asked if p.get("sort_by") == "id" and "ids" not in p]
    assert len(listings) == 3  # 1,179 live deals, 500 a page
    assert all("status" not in p and p["sort_direction"] == "asc" for p in listings)
    by_id = [p for p in asked if "ids" in p]
    assert sorted(len(p["ids"].split(",")) for p in by_id) == [4, 25]
    status = "open,won,lost,deleted" if include_deleted else None
    assert all(p.get("status") == status for p in by_id)
    reads = [p for p in asked if p.get("sort_by") == "update_time"]
    assert reads
    assert all("updated_since" in p for p in reads)  # incremental reads only: no full read


# -- fetching by id, as each vendor answers -------------------------------------------------------


def test_hubspot_batch_reads_100_ids_a_request_and_leaves_out_what_it_no_longer_holds() -> None:
    """250 ids are read in three requests (HubSpot refuses more than 100 inputs); archived ids
    come back as OBJECT_NOT_FOUND errors and are absent; a merged id reads as its new object."""
    fake = FakeHubSpot(index_lag=timedelta(0))
    ids = fake.load("deals", [fake.clock() - timedelta(minutes=n) for n in range(240)])
    fake.archive("deals", ids[3])
    fake.merge("deals", ids[4], into=ids[5])
    asked = [*ids, "999999", "888888", *ids[:8]]
    hubspot = HubSpotConnector(
        auth=BearerToken(fake.private_app_token),
        options=HttpOptions(transport=fake.transport(), clock=fake.clock),
    )
    with hubspot:
        rows = hubspot.fetch_by_ids(asked)
    assert sorted(str(row["id"]) for row in rows) == sorted(set(ids) - {ids[3], ids[4]})
    batches = [r for r in fake.requests if r.url.endswith("/batch/read")]
    assert [r.status for r in batches] == [207, 200, 207]
    too_many = {"inputs": [{"id": i} for i in ids[:101]], "properties": []}
    refused = fake.dispatch(
        httpx.Request(
            "POST",
            "https://api.hubapi.com/crm/v3/objects/deals/batch/read",
            json=too_many,
            headers={"Authorization": f"Bearer {fake.private_app_token}"},
        )
    )
    assert refused.status_code == 400


def test_hubspot_a_batch_read_error_it_cannot_read_fails_the_fetch() -> None:
    """An error other than OBJECT_NOT_FOUND (here a missing scope) hides records the engine
    would tombstone: the fetch fails instead of answering without them."""
    fake = FakeHubSpot(index_lag=timedelta(0))
    ids = fake.load("deals", [fake.clock() - timedelta(minutes=1)])
    scope_error = {
        "status": "COMPLETE",
        "results": [],
        "numErrors": 1,
        "errors": [{"status": "error", "category": "MISSING_SCOPES", "message": "no"}],
    }
    fake.add_fault(
        lambda r: httpx.Response(207, json=scope_error) if r.url.path.endswith("/read") else None
    )
    hubspot = HubSpotConnector(
        auth=BearerToken(fake.private_app_token),
        options=HttpOptions(transport=fake.transport(), clock=fake.clock),
    )
    with hubspot, pytest.raises(BadResponseError, match="MISSING_SCOPES"):
        hubspot.fetch_by_ids(ids)


def test_pipedrive_reads_100_ids_a_request_with_the_reads_statuses() -> None:
    """250 ids are read in three requests (Pipedrive takes at most 100 in ``ids``); ids it does
    not hold are left out, and a deleted deal comes back, as the read's status list asks."""
    fake = FakePipedrive()
    ids = [str(i) for i in fake.load([fake.clock() - timedelta(minutes=1)] * 240)]
    fake.delete(int(ids[7]))
    pipedrive = PipedriveConnector(
        api_token=fake.api_token,
        options=HttpOptions(transport=fake.transport(), clock=fake.clock),
    )
    with pipedrive:
        rows = pipedrive.fetch_by_ids([*ids, "999999", "abc"])
    assert sorted(str(row["id"]) for row in rows) == sorted(ids)
    assert next(row for row in rows if str(row["id"]) == ids[7])["is_deleted"] is True
    asked = [httpx.URL(r.url).params["ids"].split(",") for r in fake.requests]
    assert [len(batch) for batch in asked] == [100, 100, 41]
    refused = fake.dispatch(
        httpx.Request(
            "GET",
            "https://api.pipedrive.com/api/v2/deals",
            params={"ids": ",".join(ids[:101])},
            headers={"x-api-token": fake.api_token},
        )
    )
    assert refused.status_code == 400
