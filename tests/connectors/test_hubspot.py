"""HubSpotConnector against FakeHubSpot: every scenario ends with the sink equal to the source."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import ExitStack, closing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from incsync import SQLiteStore, SyncEngine, SyncPolicy
from incsync.connectors.auth import Auth, BearerToken, OAuth2Refresh
from incsync.connectors.http import HttpOptions
from incsync.connectors.retry import RetryPolicy
from incsync.cursor import Window
from incsync.results import CycleProgress, CycleResult, Outcome
from incsync.testing import InMemoryStore, ManualClock
from incsync.testing.fakes import FakeVendor, RunningClock
from incsync.testing.fakes.hubspot import FakeHubSpot, HubSpotLimits
from incsync.timestamps import UTC, parse_timestamp, to_micros
from incsync.vendors.hubspot import HUBSPOT_PARTITIONS, HubSpotConnector
from tests.helpers import Store, transactions_by_id

KEY = "hubspot-deals"
T0 = datetime(2024, 9, 1, tzinfo=UTC)
UNLIMITED = HubSpotLimits(search_per_second=None, per_ten_seconds=None, daily=None)


def no_sleep(_seconds: float) -> None:
    """Never wait in tests."""


def sleeping_on(fake: FakeHubSpot) -> Callable[[float], None]:
    """Return a sleep that moves the fake's clock instead of waiting, so throttles clear."""

    def sleep(seconds: float) -> None:
        fake.clock.advance(timedelta(seconds=seconds))

    return sleep


def connector(
    fake: FakeHubSpot,
    base_url: str | None = None,
    *,
    auth: Auth | None = None,
    include_archived: bool = True,
    sleep: Callable[[float], None] = no_sleep,
    retry: RetryPolicy | None = None,
    transport: httpx.BaseTransport | None = None,
    lookback: timedelta | None = None,
    partitions: int = HUBSPOT_PARTITIONS,
) -> HubSpotConnector:
    """A connector on the fake: over loopback HTTP when ``base_url`` is given, else in-process."""
    if base_url is None and transport is None:
        transport = fake.transport()
    return HubSpotConnector(
        base_url or "https://api.hubapi.com",
        auth=auth or BearerToken(fake.private_app_token),
        include_archived=include_archived,
        options=HttpOptions(
            transport=transport, sleep=sleep, clock=fake.clock, retry=retry or RetryPolicy()
        ),
        lookback=lookback,
        partitions=partitions,
    )


def engine(store: Store, fake: FakeHubSpot, safety_lag: timedelta | None = None) -> SyncEngine:
    """An engine on the fake's clock."""
    policy = SyncPolicy() if safety_lag is None else SyncPolicy(safety_lag=safety_lag)
    return SyncEngine(store, clock=fake.clock, policy=policy)


def assert_matches(store: Store, fake: FakeHubSpot, *, archived: bool = True) -> None:
    """The sink holds every live deal's latest properties once, and a tombstone per archived one."""
    held = transactions_by_id(store, KEY)
    truth = fake.ground_truth("deals")
    live = {key: t.record for key, t in held.items() if not t.record.deleted}
    assert live.keys() == truth.keys()
    for object_id, record in live.items():
        properties = {k: v for k, v in record.payload["properties"].items() if v is not None}
        assert properties == truth[object_id], object_id
        assert (
            record.updated_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            == (truth[object_id]["hs_lastmodifieddate"])
        )
    gone = {key for key, t in held.items() if t.record.deleted}
    assert gone == (set(fake.archived("deals")) if archived else set())


def run(sync: SyncEngine, source: HubSpotConnector) -> CycleResult:
    """Run one cycle and return its result."""
    return sync.run_cycle(KEY, source)


def searches(fake: FakeHubSpot) -> int:
    """How many search requests the fake answered."""
    return sum(1 for r in fake.requests if r.url.endswith("/search"))


class Spy(httpx.BaseTransport):
    """Passes requests on, keeping each search body and each 429's ``policyName``."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner
        self.bodies: list[dict[str, Any]] = []
        self.policies: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Record, then answer from the inner transport."""
        if request.url.path.endswith("/search"):
            self.bodies.append(json.loads(request.read()))
        response = self._inner.handle_request(request)
        if response.status_code == 429:
            self.policies.append(json.loads(response.read())["policyName"])
        return response

    def close(self) -> None:
        """Close the inner transport."""
        self._inner.close()

    def sorted_by(self, name: str) -> int:
        """How many searches were sorted by ``name``."""
        # The engine's count check searches without a sort; it is no read.
        sorts = [body["sorts"][0]["propertyName"] for body in self.bodies if "sorts" in body]
        return sorts.count(name)


@pytest.fixture
def fake() -> FakeHubSpot:
    """A fake portal without rate limits or index lag (tests that need them set them)."""
    return FakeHubSpot(index_lag=timedelta(0), limits=UNLIMITED)


def load_deals(fake: FakeHubSpot, count: int, start: datetime = T0) -> list[str]:
    """Load ``count`` deals a second apart."""
    stamps = [start + timedelta(seconds=i) for i in range(count)]
    return fake.load("deals", stamps, {"dealname": "history", "amount": "10"})


def test_full_sync_of_25000_deals_with_12000_in_one_millisecond(fake: FakeHubSpot) -> None:
    """A full sync of 25,000 deals, 12,000 sharing one millisecond, imports each exactly once.

    No search ever pages past the 10,000 cap (no 400), the shared millisecond is read by id, and
    the read ends.
    """
    load_deals(fake, 6_500)
    fake.load("deals", [T0 + timedelta(hours=3)] * 12_000, {"dealname": "burst"})
    load_deals(fake, 6_500, T0 + timedelta(hours=4))
    fake.clock.set(T0 + timedelta(days=1))
    store = InMemoryStore()
    spy = Spy(httpx.HTTPTransport())
    with fake.serve() as base_url, closing(connector(fake, base_url, transport=spy)) as source:
        result = run(engine(store, fake), source)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert (result.fetched, result.applied, result.rejected) == (25_000, 25_000, 0)
    assert all(r.status == 200 for r in fake.requests)  # never a 400 for paging past 10,000
    assert all(int(body.get("after", 0)) + body["limit"] <= 10_000 for body in spy.bodies)
    assert spy.sorted_by("hs_object_id") >= 12_000 // 200  # the shared millisecond, by id
    assert len(spy.bodies) < 25_000 // 190 + 10
    assert_matches(store, fake)


def test_incremental_cycles_with_updates_archives_and_same_ms_bursts(
    fake: FakeHubSpot, store: Store
) -> None:
    """Cycles after the first bring updates, archives and same-millisecond bursts, nothing else."""
    ids = load_deals(fake, 450)
    fake.clock.set(T0 + timedelta(hours=1))
    sync, source = engine(store, fake), connector(fake)
    assert run(sync, source).outcome is Outcome.COMPLETED
    assert_matches(store, fake)

    fake.clock.advance(timedelta(minutes=10))
    for object_id in ids[:30]:
        fake.update("deals", object_id, {"amount": "20"})
    for object_id in ids[30:40]:
        fake.archive("deals", object_id)
    burst = fake.clock()
    for number in range(250):
        fake.create("deals", {"dealname": f"burst {number}"}, modified_at=burst)
    fake.clock.advance(timedelta(minutes=10))
    second = run(sync, source)
    assert second.outcome is Outcome.COMPLETED, second.error
    assert second.applied == 30 + 10 + 250
    assert_matches(store, fake)

    fake.clock.advance(timedelta(minutes=10))
    for object_id in ids[40:45]:
        fake.update("deals", object_id, {"dealname": "renamed"}, modified_at=fake.clock())
    fake.archive("deals", ids[45])
    fake.clock.advance(timedelta(minutes=10))
    third = run(sync, source)
    assert third.outcome is Outcome.COMPLETED, third.error
    assert third.applied == 6
    assert_matches(store, fake)


def test_changes_while_a_sync_pages_lose_nothing(fake: FakeHubSpot) -> None:
    """Records updated or archived between pages would shift HubSpot's offsets; none is missed.

    After the second search page, deals not read yet are updated (they move to the end of the
    order), read ones are updated, and read ones are archived (everything after them moves up).
    No search follows an offset: each asks again from the newest millisecond read.
    """
    ids = load_deals(fake, 1_200)
    fake.clock.set(T0 + timedelta(hours=1))
    calls = {"search": 0}

    def meddle(request: httpx.Request) -> None:
        if request.url.path.endswith("/search"):
            calls["search"] += 1
            if calls["search"] == 3:
                for object_id in ids[:50]:  # read already: archived
                    fake.archive("deals", object_id)
                for object_id in ids[600:650]:  # not read yet: moved to the end
                    fake.update("deals", object_id, {"amount": "99"})
                for object_id in ids[100:110]:  # read already: changed again
                    fake.update("deals", object_id, {"amount": "77"})

    fake.add_fault(meddle)
    store = InMemoryStore()
    spy = Spy(httpx.HTTPTransport())
    with fake.serve() as base_url, closing(connector(fake, base_url, transport=spy)) as source:
        result = run(engine(store, fake), source)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert len(spy.bodies) >= 1_200 // 200
    assert not any("after" in body for body in spy.bodies)  # an offset would have shifted
    assert_matches(store, fake)


def test_ties_reordered_between_pages_lose_nothing(fake: FakeHubSpot) -> None:
    """Deals sharing a millisecond come in an order HubSpot redraws on re-index; none is lost.

    Between pages, deals in every tie group are re-indexed at the same millisecond, which
    reshuffles the groups that straddle page boundaries.
    """
    stamps = [T0 + timedelta(seconds=i // 7) for i in range(1_400)]
    ids = fake.load("deals", stamps, {"dealname": "tied"})
    fake.clock.set(T0 + timedelta(hours=1))
    calls = {"search": 0}

    def reshuffle(request: httpx.Request) -> None:
        if request.url.path.endswith("/search"):
            calls["search"] += 1
            if calls["search"] in (2, 4, 6):
                for number, object_id in enumerate(ids):
                    if number % 3 == calls["search"] % 3:
                        fake.update("deals", object_id, modified_at=stamps[number])

    fake.add_fault(reshuffle)
    store = InMemoryStore()
    result = run(engine(store, fake), connector(fake))
    assert result.outcome is Outcome.COMPLETED, result.error
    assert_matches(store, fake)


def test_burst_throttles_are_waited_out(fake: FakeHubSpot) -> None:
    """SECONDLY and TEN_SECONDLY_ROLLING 429s mid-sync are waited out; the sync completes."""
    load_deals(fake, 2_000)
    fake.clock.set(T0 + timedelta(hours=1))
    fake.limits = HubSpotLimits(search_per_second=3, per_ten_seconds=7, daily=None)
    store = InMemoryStore()
    spy = Spy(fake.transport())
    source = connector(fake, transport=spy, sleep=sleeping_on(fake), retry=RetryPolicy(jitter=0.0))
    result = run(engine(store, fake), source)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert set(spy.policies) == {"SECONDLY", "TEN_SECONDLY_ROLLING"}
    assert_matches(store, fake)


def test_daily_quota_fails_the_cycle_with_not_before(fake: FakeHubSpot) -> None:
    """A DAILY 429 fails the cycle at once, records when to try again; later cycles recover."""
    load_deals(fake, 1_000)
    fake.clock.set(T0 + timedelta(hours=1))
    fake.limits = HubSpotLimits(search_per_second=None, per_ten_seconds=None, daily=3)
    store = InMemoryStore()
    sync, source = engine(store, fake), connector(fake)
    failed = run(sync, source)
    assert failed.outcome is Outcome.FAILED
    assert failed.error_class == "RateLimitedError"
    assert sum(1 for r in fake.requests if r.status == 429) == 1  # no retry of a quota
    state = sync.state(KEY)
    assert state.not_before is not None
    assert state.not_before > fake.clock()
    assert run(sync, source).outcome is Outcome.SKIPPED_WAITING

    fake.clock.set(state.not_before + timedelta(seconds=1))
    fake.limits = UNLIMITED
    assert run(sync, source).outcome is Outcome.COMPLETED
    assert_matches(store, fake)


def test_oauth_access_token_expiry_mid_sync_refreshes_and_continues(fake: FakeHubSpot) -> None:
    """An access token that expires between pages is refreshed once and the sync goes on."""
    load_deals(fake, 1_000)
    fake.clock.set(T0 + timedelta(hours=1))
    calls = {"search": 0}

    def expire(request: httpx.Request) -> None:
        if request.url.path.endswith("/search"):
            calls["search"] += 1
            if calls["search"] == 2:
                fake.expire_access_tokens()

    fake.add_fault(expire)
    store = InMemoryStore()
    with fake.serve() as base_url:
        auth = OAuth2Refresh(
            f"{base_url}/oauth/v1/token",
            fake.client_id,
            fake.client_secret,
            fake.issue_refresh_token(),
            clock=fake.clock,
        )
        with closing(connector(fake, base_url, auth=auth)) as source:
            result = run(engine(store, fake), source)
    assert result.outcome is Outcome.COMPLETED, result.error
    token_calls = [r for r in fake.requests if r.url.endswith("/oauth/v1/token")]
    assert len(token_calls) == 2  # the first token, then the refresh after the expiry
    assert any(r.status == 401 for r in fake.requests)
    assert_matches(store, fake)


class CorruptOne(httpx.BaseTransport):
    """Passes requests to the fake, writing a broken timestamp into one deal in every answer."""

    def __init__(self, fake: FakeHubSpot, object_id: str) -> None:
        self._inner = fake.transport()
        self._object_id = object_id

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Answer from the fake, then corrupt the chosen deal's hs_lastmodifieddate."""
        response = self._inner.handle_request(request)
        if not request.url.path.endswith("/search") or response.status_code != 200:
            return response
        body = json.loads(response.read())
        for result in body["results"]:
            if result["id"] == self._object_id:
                result["properties"]["hs_lastmodifieddate"] = "yesterday-ish"
        return httpx.Response(200, json=body)


def test_a_malformed_record_is_set_aside_and_the_cycle_completes(fake: FakeHubSpot) -> None:
    """A deal with an unreadable timestamp is set aside once; every other deal is applied."""
    ids = load_deals(fake, 700)
    fake.clock.set(T0 + timedelta(hours=1))
    broken = ids[321]
    store = InMemoryStore()
    sync = engine(store, fake)
    result = run(sync, connector(fake, transport=CorruptOne(fake, broken)))
    assert result.outcome is Outcome.COMPLETED, result.error
    assert result.rejected == 1
    assert [r.record_id for r in sync.rejected(KEY)] == [broken]
    held = transactions_by_id(store, KEY)
    truth = fake.ground_truth("deals")
    assert held.keys() == truth.keys() - {broken}


def test_a_5xx_storm_fails_the_cycle_keeps_the_cursor_and_the_next_recovers(
    fake: FakeHubSpot,
) -> None:
    """5xx on every search outlasts the retries: FAILED, cursor unchanged; the next cycle heals."""
    ids = load_deals(fake, 500)
    fake.clock.set(T0 + timedelta(hours=1))
    store = InMemoryStore()
    sync = engine(store, fake)
    source = connector(fake, retry=RetryPolicy(max_attempts=3))
    assert run(sync, source).outcome is Outcome.COMPLETED
    cursor = sync.state(KEY).cursor

    fake.clock.advance(timedelta(minutes=10))
    for object_id in ids[:20]:
        fake.update("deals", object_id, {"amount": "5"})
    fake.clock.advance(timedelta(minutes=10))

    def storm(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/search"):
            return httpx.Response(503, json={"status": "error", "message": "try later"})
        return None

    fake.add_fault(storm)
    failed = run(sync, source)
    assert failed.outcome is Outcome.FAILED
    assert failed.error_class == "TransientSourceError"
    assert searches(fake) >= 3
    assert sync.state(KEY).cursor == cursor

    fake.clear_faults()
    assert run(sync, source).outcome is Outcome.COMPLETED
    assert_matches(store, fake)


def test_secrets_never_reach_logs_errors_state_or_the_database(
    fake: FakeHubSpot, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Tokens and the client secret stay out of logs, error text, state and the SQLite file.

    A failing answer echoes the access token back; it is masked everywhere.
    """
    caplog.set_level(logging.DEBUG)
    load_deals(fake, 300)
    fake.clock.set(T0 + timedelta(hours=1))
    refresh_token = fake.issue_refresh_token()
    used: set[str] = set()

    def echo(request: httpx.Request) -> httpx.Response | None:
        token = request.headers.get("authorization", "").partition(" ")[2]
        if token:
            used.add(token)
        if request.url.path.endswith("/search") and searches(fake) >= 1:
            return httpx.Response(500, text=f"internal error for token {token}")
        return None

    fake.add_fault(echo)
    with ExitStack() as stack:
        base_url = stack.enter_context(fake.serve())
        store = stack.enter_context(SQLiteStore(tmp_path / "sync.db"))
        auth = OAuth2Refresh(
            f"{base_url}/oauth/v1/token",
            fake.client_id,
            fake.client_secret,
            refresh_token,
            clock=fake.clock,
        )
        source = connector(fake, base_url, auth=auth, retry=RetryPolicy(max_attempts=2))
        stack.callback(source.close)
        sync = engine(store, fake)
        failed = run(sync, source)
        assert failed.outcome is Outcome.FAILED
        state_text = repr(sync.state(KEY)) + repr(sync.states())
        fake.clear_faults()
        assert run(sync, source).outcome is Outcome.COMPLETED
        state_text += repr(sync.state(KEY))
        assert_matches(store, fake)
    database = b"".join(path.read_bytes() for path in tmp_path.glob("sync.db*"))
    secrets = {fake.client_secret, refresh_token, *used}
    assert used
    for secret in secrets:
        assert secret not in caplog.text
        assert secret not in str(failed.error)
        assert secret not in state_text
        assert secret.encode() not in database
    assert failed.error is not None
    assert "internal error" in failed.error or "500" in failed.error


def test_index_lag_a_change_invisible_to_search_is_read_next_cycle() -> None:
    """A deal updated just before a cycle, not yet in the search index, is read by the next one.

    The safety lag is off, so the connector's one-minute lookback alone must cover the lag:
    the cursor moved past the hidden change (a later deal was visible), yet nothing is lost.
    """
    fake = FakeHubSpot(limits=UNLIMITED)  # index lag: 2 s
    ids = load_deals(fake, 300)
    fake.clock.set(T0 + timedelta(hours=1))
    store = InMemoryStore()
    sync, source = engine(store, fake, safety_lag=timedelta(0)), connector(fake)
    assert run(sync, source).outcome is Outcome.COMPLETED

    fake.clock.advance(timedelta(minutes=5))
    fake.update("deals", ids[7], {"amount": "123"})  # searchable only 2 s from now
    fake.load("deals", [fake.clock() + timedelta(milliseconds=500)], {"dealname": "later"})
    fake.clock.advance(timedelta(seconds=1))
    first = run(sync, source)
    assert first.outcome is Outcome.COMPLETED
    held = transactions_by_id(store, KEY)
    assert held[ids[7]].record.payload["properties"]["amount"] == "10"  # not visible yet
    cursor = sync.state(KEY).cursor
    assert cursor is not None
    assert cursor.updated_at > fake.clock() - timedelta(seconds=1)

    fake.clock.advance(timedelta(seconds=5))
    assert run(sync, source).outcome is Outcome.COMPLETED
    assert_matches(store, fake)


def test_without_lookback_the_hidden_change_would_be_lost() -> None:
    """The negative control of the index-lag test: with no lookback and no safety lag it is lost."""
    fake = FakeHubSpot(limits=UNLIMITED)
    ids = load_deals(fake, 50)
    fake.clock.set(T0 + timedelta(hours=1))
    store = InMemoryStore()
    sync = engine(store, fake, safety_lag=timedelta(0))
    source = connector(fake, lookback=timedelta(0))
    assert run(sync, source).outcome is Outcome.COMPLETED
    fake.clock.advance(timedelta(minutes=5))
    fake.update("deals", ids[7], {"amount": "123"})
    fake.load("deals", [fake.clock() + timedelta(milliseconds=500)], {"dealname": "later"})
    fake.clock.advance(timedelta(seconds=1))
    run(sync, source)
    fake.clock.advance(timedelta(seconds=5))
    run(sync, source)
    held = transactions_by_id(store, KEY)
    assert held[ids[7]].record.payload["properties"]["amount"] == "10"


def test_contacts_use_lastmodifieddate_and_full_reads_send_no_filter(fake: FakeHubSpot) -> None:
    """Contacts are read by ``lastmodifieddate``; a full read's first search has no filter."""
    fake.load("contacts", [T0 + timedelta(seconds=i) for i in range(5)], {"email": "a@b.c"})
    seen: list[dict[str, object]] = []

    def record(request: httpx.Request) -> None:
        if request.url.path.endswith("/search"):
            seen.append(json.loads(request.content))

    fake.add_fault(record)
    source = HubSpotConnector(
        auth=BearerToken(fake.private_app_token),
        object_type="contacts",
        options=HttpOptions(transport=fake.transport(), sleep=no_sleep),
    )
    assert source.modified_property == "lastmodifieddate"
    pages = list(source.read(Window()))
    assert sorted(r.id for page in pages for r in page.records) == sorted(
        fake.ground_truth("contacts")
    )
    assert seen[0]["filterGroups"] == []
    assert seen[0]["sorts"] == [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}]


def test_a_read_counts_out_of_the_first_search_s_total_to_the_end(fake: FakeHubSpot) -> None:
    """Every progress report of a full cycle over loopback is out of the first searches' ``total``
    (the live deals in each partition), through the re-queries and the archived pages after them,
    which carry none.
    """
    ids = load_deals(fake, 450)
    for object_id in ids[:3]:
        fake.archive("deals", object_id)
    fake.clock.set(T0 + timedelta(days=1))
    reports: list[CycleProgress] = []
    with fake.serve() as base_url, closing(connector(fake, base_url)) as source:
        result = engine(InMemoryStore(), fake).run_cycle(KEY, source, on_progress=reports.append)
    assert result.outcome is Outcome.COMPLETED, result.error
    # Read in two partitions, each counts its own: the total is theirs added up once both
    # answered; the archived pages after them carry none.
    assert None not in [report.total for report in reports]
    totals = [report.total or 0 for report in reports]
    assert totals[-1] == 447
    assert totals == sorted(totals)
    assert reports[-1].fetched == 450
    assert reports[0].eta is not None


def test_pages_come_in_ascending_updated_at_order(fake: FakeHubSpot) -> None:
    """Search pages never go back in time, so the engine may checkpoint after each one."""
    load_deals(fake, 700)
    fake.load("deals", [T0 + timedelta(minutes=3)] * 450)
    source = connector(fake, include_archived=False)
    stamps = [r.updated_at for page in source.read(Window(start=T0)) for r in page.records]
    assert stamps == sorted(stamps)
    assert len(stamps) == 1_150


# -- answers HubSpot should not send -------------------------------------------------------------

RECORDED = Path(__file__).parent / "recorded" / "hubspot"


class RecordedSearch(FakeVendor):
    """HubSpot's search over fixed rows (real recorded answers), in id order whatever is asked.

    As a caching proxy, a cache or an API change may answer: the filters and ``limit`` are
    applied, the sort rule is not, until :attr:`sorted_as_asked` is set.

    Args:
        rows: The objects, exactly as HubSpot sent them.
        modified_property: The last-modified property of their type.
    """

    def __init__(self, rows: list[dict[str, Any]], modified_property: str) -> None:
        super().__init__()
        self.rows = rows
        self.modified_property = modified_property
        self.sorted_as_asked = False

    def _value(self, row: dict[str, Any], name: str) -> int:
        if name == "hs_object_id":
            return int(row["id"])
        return to_micros(parse_timestamp(row["properties"][name])) // 1000

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer a search from :attr:`rows`; the archived list is empty."""
        if not request.url.path.endswith("/search"):
            return httpx.Response(200, json={"results": []})
        body = json.loads(request.content)
        hits = list(self.rows)
        for group in body["filterGroups"]:
            for item in group["filters"]:
                name, target = item["propertyName"], int(item["value"])
                compare = {"GTE": int.__ge__, "GT": int.__gt__, "EQ": int.__eq__}[item["operator"]]
                hits = [row for row in hits if compare(self._value(row, name), target)]
        sort = body["sorts"][0]["propertyName"] if self.sorted_as_asked else "hs_object_id"
        hits.sort(key=lambda row: self._value(row, sort))
        after, limit = int(body.get("after", 0)), body["limit"]
        answer: dict[str, Any] = {"total": len(hits), "results": hits[after : after + limit]}
        if after + limit < len(hits):
            answer["paging"] = {"next": {"after": str(after + limit)}}
        return httpx.Response(200, json=answer)


@pytest.mark.parametrize(
    ("recording", "object_type", "count"),
    [
        ("nango_deals_list.json", "deals", 21),
        ("nango_contacts_list.json", "contacts", 26),
        ("nango_companies_search.json", "companies", 55),
    ],
)
def test_real_answers_out_of_the_order_asked_for_fail_the_cycle_and_lose_no_row(
    recording: str,
    object_type: str,
    count: int,
    store: Store,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Real recorded objects served in id order, not by modified time: the cycle fails loudly.

    Nothing is applied and the cursor does not move, so no row is passed for good: once the
    answers come in the order asked for, the next cycle reads every object.
    """
    rows = json.loads((RECORDED / recording).read_text(encoding="utf-8"))["results"]
    assert len(rows) == count
    modified = "lastmodifieddate" if object_type == "contacts" else "hs_lastmodifieddate"
    vendor = RecordedSearch(rows, modified)
    clock = ManualClock(datetime(2026, 3, 13, tzinfo=UTC))
    sync = SyncEngine(store, clock=clock)
    with (
        vendor.serve() as base_url,
        HubSpotConnector(
            base_url,
            auth=BearerToken("pat-na1-recorded"),
            object_type=object_type,
            options=HttpOptions(sleep=no_sleep, clock=clock),
        ) as source,
    ):
        failed = sync.run_cycle(KEY, source)
        assert failed.outcome is Outcome.FAILED
        assert failed.error_class == "BadResponseError"
        assert failed.error is not None
        assert "order asked for" in failed.error
        assert (failed.applied, failed.rejected) == (0, 0)
        assert sync.state(KEY).cursor is None
        assert "cycle failed: BadResponseError" in caplog.text
        assert transactions_by_id(store, KEY) == {}

        vendor.sorted_as_asked = True
        healed = sync.run_cycle(KEY, source)
    assert healed.outcome is Outcome.COMPLETED, healed.error
    held = transactions_by_id(store, KEY)
    assert held.keys() == {row["id"] for row in rows}
    for row in rows:
        assert held[row["id"]].record.payload == row


def respelled(stamp: str, number: int) -> str:
    """The same instant as ``stamp`` written another way (offsets up to ±14 h, z, +0000)."""
    at = datetime.fromisoformat(stamp)
    offsets = (timedelta(hours=14), timedelta(hours=-14), timedelta(hours=5, minutes=45))
    if number % 5 < len(offsets):
        zone = timezone(offsets[number % 5])
        return at.astimezone(zone).isoformat(timespec="milliseconds")
    return stamp.removesuffix("Z") + ("z" if number % 5 == 3 else "+0000")


MODIFIED = "hs_lastmodifieddate"
GOOD_TIME = "2024-09-01T00:00:00.000Z"
HOSTILE: list[object] = [
    {"id": "11", "properties": {MODIFIED: "9999-12-31T23:00:00-08:00"}},
    {"id": "12", "properties": {MODIFIED: "0001-01-01T00:00:00+05:00"}},
    {"id": "13", "properties": {MODIFIED: "2024-09-01T25:61:00Z"}},
    {"id": "14", "properties": {MODIFIED: "2024-09-01T00:00:00"}},  # no zone
    {"id": "15"},  # no properties
    {"id": True, "properties": {MODIFIED: GOOD_TIME}},
    {"id": 10**40, "properties": {MODIFIED: GOOD_TIME}},
    {"id": "", "properties": {MODIFIED: GOOD_TIME}},
    ["not", "an", "object"],
    "a row that is text",
    None,
]
"""Rows no record can be made of: each must be set aside with its reason."""


def hostile_answers(fake: FakeHubSpot) -> Callable[[httpx.Request], httpx.Response | None]:
    """A fault answering each search by time as the fake does, with hostile rows mixed in.

    The good rows' times are rewritten as other spellings of the same instant.
    """

    def answer(request: httpx.Request) -> httpx.Response | None:
        if not request.url.path.endswith("/search"):
            return None
        if json.loads(request.content)["sorts"][0]["propertyName"] != MODIFIED:
            return None
        response = fake.handle(request)
        body = json.loads(response.read())
        results = body["results"]
        for number, row in enumerate(results):
            row["properties"][MODIFIED] = respelled(row["properties"][MODIFIED], number)
        for number, row in enumerate(HOSTILE):
            results.insert(min(len(results), 1 + 3 * number), row)
        return httpx.Response(response.status_code, json=body)

    return answer


def test_hostile_rows_are_set_aside_and_every_good_row_applied(
    fake: FakeHubSpot, store: Store
) -> None:
    """Far-future and far-past dates, malformed times, bad ids and non-objects among good rows.

    Each hostile row is set aside once with its reason, though every search answer carries it;
    every good row, its time spelt with offsets up to ±14 h, ``z`` or ``+0000``, is applied at
    the instant it names; the cycle completes.
    """
    load_deals(fake, 450)
    fake.clock.set(T0 + timedelta(hours=1))
    fake.add_fault(hostile_answers(fake))
    sync = engine(store, fake)
    # One reader: the fault adds the same rows to every search, which no time filter would do.
    with fake.serve() as base_url, closing(connector(fake, base_url, partitions=1)) as source:
        result = run(sync, source)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert (result.applied, result.rejected) == (450, len(HOSTILE))
    rejected = sync.rejected(KEY)
    assert sorted(r.record_id for r in rejected if r.record_id is not None) == [
        "11",
        "12",
        "13",
        "14",
        "15",
    ]
    assert len(rejected) == len(HOSTILE)
    assert all(r.reason for r in rejected)
    far = {r.record_id: r.reason for r in rejected}
    assert "out of range" in far["11"]
    assert "out of range" in far["12"]
    held = transactions_by_id(store, KEY)
    truth = fake.ground_truth("deals")
    assert held.keys() == truth.keys()
    for object_id, transaction in held.items():
        assert transaction.record.updated_at == parse_timestamp(truth[object_id][MODIFIED])


def test_a_crowded_millisecond_changing_while_it_is_read_by_id_loses_nothing(
    fake: FakeHubSpot,
) -> None:
    """650 deals in one millisecond, more than a search page, read by id while they change.

    Between the pages of that millisecond, deals already read and deals not read yet are
    updated (they leave the millisecond for a later one) and one is archived: every deal ends
    in the sink at its latest version, archived ones as tombstones.
    """
    load_deals(fake, 300)
    burst = fake.load("deals", [T0 + timedelta(hours=1)] * 650, {"dealname": "burst"})
    load_deals(fake, 300, T0 + timedelta(hours=2))
    fake.clock.set(T0 + timedelta(days=1))
    spy = Spy(httpx.HTTPTransport())

    def meddle(request: httpx.Request) -> None:
        if spy.sorted_by("hs_object_id") == 2 and request.url.path.endswith("/search"):
            by_id = sorted(burst, key=int)
            for object_id in by_id[10:20] + by_id[600:610]:
                fake.update("deals", object_id, {"amount": "42"})
            fake.archive("deals", by_id[300])

    fake.add_fault(meddle)
    store = InMemoryStore()
    with fake.serve() as base_url, closing(connector(fake, base_url, transport=spy)) as source:
        result = run(engine(store, fake), source)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert spy.sorted_by("hs_object_id") >= 650 // 200
    assert_matches(store, fake)


def test_a_millisecond_read_out_of_id_order_fails_loudly_and_loses_nothing(
    fake: FakeHubSpot,
) -> None:
    """A crowded millisecond answered out of id order cannot be paged by id: the cycle fails.

    The next cycle, answered in order, reads every deal: the failed one passed none for good.
    """
    fake.load("deals", [T0] * 450, {"dealname": "burst"})
    load_deals(fake, 50, T0 + timedelta(seconds=1))
    fake.clock.set(T0 + timedelta(hours=1))

    def reversed_by_id(request: httpx.Request) -> httpx.Response | None:
        if not request.url.path.endswith("/search"):
            return None
        if json.loads(request.content)["sorts"][0]["propertyName"] != "hs_object_id":
            return None
        response = fake.handle(request)
        body = json.loads(response.read())
        body["results"].reverse()
        return httpx.Response(response.status_code, json=body)

    fake.add_fault(reversed_by_id)
    store = InMemoryStore()
    sync = engine(store, fake)
    with fake.serve() as base_url, closing(connector(fake, base_url)) as source:
        failed = run(sync, source)
        assert failed.outcome is Outcome.FAILED
        assert failed.error_class == "BadResponseError"
        assert failed.error is not None
        assert "id order" in failed.error
        fake.clear_faults()
        healed = run(sync, source)
    assert healed.outcome is Outcome.COMPLETED, healed.error
    assert_matches(store, fake)


def test_a_full_read_in_two_partitions_is_paced_under_the_search_limit() -> None:
    """Two partitions read at once start their searches 1/4.75 s apart between them, on the real
    clock the fake counts its limits by: HubSpot's 5 searches a second never refuses one, each
    partition is bounded below the next one's start, and the sink ends equal to the portal."""
    fake = FakeHubSpot(
        clock=RunningClock(), index_lag=timedelta(0), limits=HubSpotLimits(daily=None)
    )
    load_deals(fake, 2_000, start=fake.clock() - timedelta(days=3))
    spy = Spy(httpx.HTTPTransport())
    store = InMemoryStore()
    with (
        fake.serve() as base_url,
        closing(connector(fake, base_url, sleep=time.sleep, transport=spy, partitions=2)) as source,
    ):
        result = engine(store, fake).run_cycle(KEY, source)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert_matches(store, fake)
    assert not [r for r in fake.requests if r.status == 429]
    bounded = [
        f for body in spy.bodies for group in body.get("filterGroups", []) for f in group["filters"]
    ]
    assert [f["operator"] for f in bounded].count("LT") >= 2
