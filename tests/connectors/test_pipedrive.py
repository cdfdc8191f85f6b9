"""PipedriveConnector against FakePipedrive over loopback HTTP: every scenario ends with the sink
equal to the fake's ground truth (live deals as Pipedrive lists them, deleted ones as tombstones).
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from incsync import Phase, SQLiteStore, SyncEngine, SyncPolicy
from incsync.connectors.auth import ApiKey, Auth
from incsync.connectors.http import HttpOptions
from incsync.connectors.retry import RetryPolicy
from incsync.connectors.window import WindowLimit
from incsync.cursor import Window
from incsync.errors import (
    AuthError,
    BadRecordError,
    BadResponseError,
    ConfigurationError,
    TransientSourceError,
)
from incsync.results import CycleResult, Outcome
from incsync.testing import InMemoryStore
from incsync.testing.fakes import Latency, RunningClock
from incsync.testing.fakes.pipedrive import FakePipedrive, PipedriveLimits
from incsync.timestamps import UTC
from incsync.vendors.pipedrive import (
    BURST_WINDOW,
    PIPEDRIVE_PARTITIONS,
    PipedriveConnector,
    pipedrive_oauth,
    pipedrive_throttle,
)
from tests.helpers import Store, transactions_by_id

KEY = "pipedrive-deals"
T0 = datetime(2024, 3, 1, tzinfo=UTC)
SECOND = timedelta(seconds=1)
UNLIMITED = PipedriveLimits(per_window=None, daily=None)


def no_sleep(_seconds: float) -> None:
    """Never wait in tests."""


def sleeping_on(fake: FakePipedrive, waits: list[float]) -> Callable[[float], None]:
    """Return a sleep that moves the fake's clock instead of waiting, and records each wait."""

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        fake.clock.advance(timedelta(seconds=seconds))

    return sleep


OPEN: list[PipedriveConnector] = []


class WindowBlindConnector(PipedriveConnector):
    """Ignores the window each answer states: how the fake's refusals are met when the token's
    limit is spent by others (the user's own clicks count against it too)."""

    def window_of(self, headers: httpx.Headers) -> WindowLimit | None:
        return None


@pytest.fixture(autouse=True)
def close_connectors() -> Iterator[None]:
    """Close every connector a test made, so no connection outlives it."""
    yield
    while OPEN:
        OPEN.pop().close()


@pytest.fixture
def fake() -> FakePipedrive:
    """A fake company without rate limits (tests that need them set them)."""
    return FakePipedrive(limits=UNLIMITED)


@pytest.fixture
def base_url(fake: FakePipedrive) -> Iterator[str]:
    """The fake served on a loopback port."""
    with fake.serve() as url:
        yield url


def connector(
    fake: FakePipedrive,
    base_url: str,
    *,
    auth: Auth | None = None,
    api_token: str | None = None,
    token_in_query: bool = False,
    page_size: int = 500,
    sleep: Callable[[float], None] = no_sleep,
    retry: RetryPolicy | None = None,
    transport: httpx.BaseTransport | None = None,
    partitions: int = 1,
    heeds_window: bool = True,
) -> PipedriveConnector:
    """A connector on the served fake, with the company's api_token unless told otherwise.

    One reader unless told otherwise: most tests here count one reader's requests and pages
    (the partitioned full reads have tests of their own, at the end).
    """
    made = (PipedriveConnector if heeds_window else WindowBlindConnector)(
        base_url,
        api_token=None if auth is not None else (api_token or fake.api_token),
        token_in_query=token_in_query,
        auth=auth,
        page_size=page_size,
        partitions=partitions,
        options=HttpOptions(
            sleep=sleep, retry=retry or RetryPolicy(), transport=transport, clock=fake.clock
        ),
    )
    OPEN.append(made)
    return made


def engine(store: Store, fake: FakePipedrive, safety_lag: timedelta | None = None) -> SyncEngine:
    """An engine on the fake's clock."""
    policy = SyncPolicy() if safety_lag is None else SyncPolicy(safety_lag=safety_lag)
    return SyncEngine(store, clock=fake.clock, policy=policy)


def run(sync: SyncEngine, source: PipedriveConnector) -> CycleResult:
    """Run one cycle and return its result."""
    return sync.run_cycle(KEY, source)


def assert_matches(store: Store, fake: FakePipedrive) -> None:
    """The sink holds exactly the fake's deals: latest payloads, deleted ones as tombstones."""
    held = transactions_by_id(store, KEY)
    truth = fake.ground_truth()
    assert held.keys() == truth.keys()
    for deal_id, deal in truth.items():
        record = held[deal_id].record
        assert record.payload == deal, deal_id
        assert record.deleted is deal["is_deleted"], deal_id
        assert record.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ") == deal["update_time"]


def deal_lists(fake: FakePipedrive) -> list[httpx.URL]:
    """The URLs of the deal-list requests the fake answered."""
    return [httpx.URL(r.url) for r in fake.requests if "/api/v2/deals" in r.url]


def load_deals(
    fake: FakePipedrive, count: int, start: datetime = T0, per_second: int = 1
) -> list[int]:
    """Load ``count`` deals, ``per_second`` of them sharing each second."""
    stamps = [start + timedelta(seconds=i // per_second) for i in range(count)]
    return fake.load(stamps, {"title": "history", "value": 10})


def test_full_sync_of_25000_deals(fake: FakePipedrive, base_url: str) -> None:
    """25,000 deals, 1,200 of them in one second, arrive once each in 50 pages of 500.

    Every request sorts by update_time ascending, asks for every status, and follows the cursor.
    """
    load_deals(fake, 11_900)
    fake.load([T0 + timedelta(hours=5)] * 1_200, {"title": "import"})
    load_deals(fake, 11_900, T0 + timedelta(hours=6))
    fake.clock.set(T0 + timedelta(days=1))
    store = InMemoryStore()
    with closing(connector(fake, base_url)) as source:
        result = run(engine(store, fake), source)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert (result.fetched, result.applied, result.rejected, result.pages) == (
        25_000,
        25_000,
        0,
        50,
    )
    urls = deal_lists(fake)
    assert len(urls) == 50
    for url in urls:
        assert url.params["sort_by"] == "update_time"
        assert url.params["sort_direction"] == "asc"
        assert url.params["status"] == "open,won,lost,deleted"
        assert url.params["limit"] == "500"
        assert "updated_since" not in url.params  # the first cycle reads everything
    assert ["cursor" in url.params for url in urls] == [False] + [True] * 49
    assert_matches(store, fake)


def test_incremental_cycles_with_updates_deletes_and_same_second_bursts(
    fake: FakePipedrive, base_url: str, store: Store
) -> None:
    """Later cycles bring updates, deletions (as tombstones) and same-second bursts straddling
    page boundaries, and apply each change once."""
    ids = load_deals(fake, 450, per_second=7)
    fake.clock.set(T0 + timedelta(hours=1))
    sync, source = engine(store, fake), connector(fake, base_url, page_size=100)
    assert run(sync, source).outcome is Outcome.COMPLETED
    assert_matches(store, fake)

    fake.clock.advance(timedelta(minutes=10))
    for deal_id in ids[:30]:
        fake.update(deal_id, {"value": 20})
    for deal_id in ids[30:40]:
        fake.delete(deal_id)
    burst = fake.clock()
    for number in range(250):  # one second, across three pages of 100
        fake.create({"title": f"burst {number}"}, at=burst)
    fake.clock.advance(timedelta(minutes=10))
    second = run(sync, source)
    assert second.outcome is Outcome.COMPLETED, second.error
    assert second.applied == 30 + 10 + 250
    assert second.pages >= 3
    assert_matches(store, fake)

    fake.clock.advance(timedelta(minutes=10))
    for deal_id in ids[40:45]:
        fake.update(deal_id, {"title": "renamed", "status": "won"})
    fake.delete(ids[45])
    fake.delete(ids[0])  # updated in the last cycle, deleted now
    fake.clock.advance(timedelta(minutes=10))
    third = run(sync, source)
    assert third.outcome is Outcome.COMPLETED, third.error
    assert third.applied == 7
    assert_matches(store, fake)
    since = [url.params.get("updated_since") for url in deal_lists(fake)]
    assert all(value is None or value.endswith(":00Z") or len(value) == 20 for value in since)


def test_writes_in_the_cursor_second_after_a_cycle_are_not_lost(
    fake: FakePipedrive, base_url: str
) -> None:
    """With no safety lag the cursor reaches the newest second; deals written in that same second
    after the cycle read it are read by the next cycle (updated_since is inclusive)."""
    load_deals(fake, 120, per_second=40)
    fake.clock.set(T0 + timedelta(seconds=2, milliseconds=500))
    store = InMemoryStore()
    sync, source = (
        engine(store, fake, safety_lag=timedelta(0)),
        connector(fake, base_url, page_size=50),
    )
    assert run(sync, source).outcome is Outcome.COMPLETED
    cursor = sync.state(KEY).cursor
    assert cursor is not None
    assert cursor.updated_at == T0 + timedelta(seconds=2)  # the newest second, read whole
    late = [fake.create({"title": "same second"}, at=T0 + timedelta(seconds=2)) for _ in range(3)]
    second = run(sync, source)
    assert second.outcome is Outcome.COMPLETED, second.error
    assert second.applied == 3
    assert set(map(str, late)) <= transactions_by_id(store, KEY).keys()
    assert deal_lists(fake)[-1].params["updated_since"] == "2024-03-01T00:00:02Z"
    assert_matches(store, fake)


def test_changes_while_a_sync_pages_lose_nothing(fake: FakePipedrive, base_url: str) -> None:
    """Between pages, deals already read and not read yet are updated and deleted, and new ones
    are created; the cursor is a keyset position, so each moves behind it and is read once more,
    and nothing is skipped."""
    ids = load_deals(fake, 1_000)
    fake.clock.set(T0 + timedelta(hours=1))
    lists = {"count": 0}

    def meddle(request: httpx.Request) -> None:
        if request.url.path == "/api/v2/deals":
            lists["count"] += 1
            if lists["count"] == 3:  # two pages of 100 read
                for deal_id in ids[:20]:  # read already: updated
                    fake.update(deal_id, {"value": 99})
                for deal_id in ids[20:30]:  # read already: deleted
                    fake.delete(deal_id)
                for deal_id in ids[500:520]:  # not read yet: updated, so moved to the end
                    fake.update(deal_id, {"value": 77})
                for deal_id in ids[600:610]:  # not read yet: deleted
                    fake.delete(deal_id)
                for _ in range(15):
                    fake.create({"title": "while paging"})

    fake.add_fault(meddle)
    store = InMemoryStore()
    with closing(connector(fake, base_url, page_size=100)) as source:
        result = run(engine(store, fake), source)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert result.fetched == 1_000 + 20 + 10 + 15  # read ones come again; moved ones once
    assert_matches(store, fake)


def test_rate_limit_429s_are_waited_out_for_x_ratelimit_reset(
    fake: FakePipedrive, base_url: str
) -> None:
    """429s with x-ratelimit-reset mid-sync are waited out (the wait moves the fake's clock) and
    the sync completes; each wait is at least the reset the fake asked for."""
    load_deals(fake, 3_000)
    fake.clock.set(T0 + timedelta(hours=1))
    fake.limits = PipedriveLimits(per_window=4)
    waits: list[float] = []
    store = InMemoryStore()
    source = connector(
        fake,
        base_url,
        page_size=100,
        sleep=sleeping_on(fake, waits),
        retry=RetryPolicy(jitter=0.0),
        heeds_window=False,
    )
    with closing(source):
        result = run(engine(store, fake), source)
    assert result.outcome is Outcome.COMPLETED, result.error
    throttled = [r for r in fake.requests if r.status == 429]
    assert len(throttled) >= 5
    assert len(waits) == len(throttled)
    assert all(wait >= 1 for wait in waits)
    assert_matches(store, fake)


def test_cdn_html_403_is_a_throttle_retried_not_a_json_crash(
    fake: FakePipedrive, base_url: str
) -> None:
    """The CDN's HTML 403 page mid-sync is retried like a throttle; when it persists the cycle
    fails with a RateLimitedError that names the CDN, and a later cycle recovers."""
    load_deals(fake, 600)
    fake.clock.set(T0 + timedelta(hours=1))
    lists = {"count": 0}
    blocked = fake.cdn_block(times=2)

    def after_first_page(request: httpx.Request) -> httpx.Response | None:
        lists["count"] += 1
        return blocked(request) if lists["count"] >= 2 else None

    fake.add_fault(after_first_page)
    store = InMemoryStore()
    sync = engine(store, fake)
    source = connector(fake, base_url, page_size=100, retry=RetryPolicy(jitter=0.0))
    first = run(sync, source)
    assert first.outcome is Outcome.COMPLETED, first.error
    assert sum(1 for r in fake.requests if r.status == 403) == 2
    assert_matches(store, fake)

    fake.clear_faults()
    fake.add_fault(fake.cdn_block())
    fake.update(1, {"value": 3})
    fake.clock.advance(timedelta(minutes=10))
    failed = run(sync, source)
    assert failed.outcome is Outcome.FAILED
    assert failed.error_class == "RateLimitedError"
    assert failed.error is not None
    assert "CDN" in failed.error
    assert "JSON" not in failed.error

    fake.clear_faults()
    fake.clock.advance(timedelta(minutes=10))
    assert run(sync, source).outcome is Outcome.COMPLETED
    assert_matches(store, fake)


def test_daily_budget_used_up_fails_the_cycle_with_not_before(
    fake: FakePipedrive, base_url: str
) -> None:
    """A 429 with x-daily-requests-left 0 is not retried: the cycle fails and the source waits."""
    load_deals(fake, 1_000)
    fake.clock.set(T0 + timedelta(hours=1))
    fake.limits = PipedriveLimits(per_window=None, daily=3)
    store = InMemoryStore()
    sync = engine(store, fake)
    source = connector(fake, base_url, page_size=100)
    failed = run(sync, source)
    assert failed.outcome is Outcome.FAILED
    assert failed.error_class == "RateLimitedError"
    assert sum(1 for r in fake.requests if r.status == 429) == 1
    state = sync.state(KEY)
    assert state.not_before is not None
    assert state.not_before > fake.clock()
    assert state.consecutive_failures == 0
    assert run(sync, source).outcome is Outcome.SKIPPED_WAITING

    assert failed.applied == 300  # the pages read before the budget ran out stay applied

    fake.clock.set(state.not_before + timedelta(seconds=1))
    fake.limits = UNLIMITED
    assert run(sync, source).outcome is Outcome.COMPLETED
    assert_matches(store, fake)


@pytest.mark.parametrize("token_in_query", [False, True])
def test_a_bad_api_token_is_an_auth_error(
    fake: FakePipedrive, base_url: str, token_in_query: bool
) -> None:
    """A wrong api_token (header or query) fails the cycle with AuthError at once, no retries;
    the second such failure stops the source."""
    load_deals(fake, 10)
    store = InMemoryStore()
    sync = engine(store, fake)
    source = connector(
        fake, base_url, api_token="not-the-token-0000", token_in_query=token_in_query
    )
    failed = run(sync, source)
    assert failed.outcome is Outcome.FAILED
    assert failed.error_class == "AuthError"
    assert len(fake.requests) == 1
    with pytest.raises(AuthError, match="401"):
        list(source.read(Window()))
    run(sync, source)
    assert sync.state(KEY).phase is Phase.STOPPED


def test_oauth_access_token_expiry_mid_sync_refreshes_and_continues(
    fake: FakePipedrive, base_url: str
) -> None:
    """An access token revoked between pages is refreshed once and the read goes on."""
    load_deals(fake, 1_000)
    fake.clock.set(T0 + timedelta(hours=1))
    lists = {"count": 0}

    def expire(request: httpx.Request) -> None:
        if request.url.path == "/api/v2/deals":
            lists["count"] += 1
            if lists["count"] == 3:
                fake.expire_access_tokens()

    fake.add_fault(expire)
    refreshed: list[str] = []
    auth = pipedrive_oauth(
        fake.client_id,
        fake.client_secret,
        fake.refresh_token,
        token_url=f"{base_url}/oauth/token",
        on_refresh=lambda tokens: refreshed.append(tokens.extra["api_domain"]),
        clock=fake.clock,
    )
    store = InMemoryStore()
    with closing(connector(fake, base_url, auth=auth, page_size=100)) as source:
        result = run(engine(store, fake), source)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert [r.status for r in fake.requests if r.url.endswith("/oauth/token")] == [200, 200]
    assert sum(1 for r in fake.requests if r.status == 401) == 1
    assert refreshed == [base_url, base_url]
    assert_matches(store, fake)


class CorruptOne(httpx.BaseTransport):
    """Passes requests to the served fake, breaking one deal's update_time in every answer."""

    def __init__(self, deal_id: int) -> None:
        self._inner = httpx.HTTPTransport()
        self._deal_id = deal_id

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Answer from the fake, then write a broken update_time into the chosen deal."""
        response = self._inner.handle_request(request)
        if response.status_code != 200:
            return response
        body = json.loads(response.read())
        response.close()
        for deal in body["data"]:
            if deal["id"] == self._deal_id:
                deal["update_time"] = "last tuesday"
        return httpx.Response(200, json=body)

    def close(self) -> None:
        """Close the inner transport."""
        self._inner.close()


def test_a_malformed_deal_is_set_aside_and_the_cycle_completes(
    fake: FakePipedrive, base_url: str
) -> None:
    """A deal with an unreadable update_time is set aside with the reason; the rest is applied."""
    ids = load_deals(fake, 700)
    fake.clock.set(T0 + timedelta(hours=1))
    broken = ids[321]
    store = InMemoryStore()
    sync = engine(store, fake)
    source = connector(fake, base_url, page_size=100, transport=CorruptOne(broken))
    with closing(source):
        result = run(sync, source)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert result.rejected == 1
    rejected = sync.rejected(KEY)
    assert [r.record_id for r in rejected] == [str(broken)]
    assert "update_time" in rejected[0].reason
    held = transactions_by_id(store, KEY)
    assert held.keys() == fake.ground_truth().keys() - {str(broken)}


def test_a_500_storm_fails_the_cycle_keeps_the_cursor_and_the_next_recovers(
    fake: FakePipedrive, base_url: str
) -> None:
    """500s on every request outlast the retries: FAILED, cursor unchanged; the next cycle heals."""
    ids = load_deals(fake, 500)
    fake.clock.set(T0 + timedelta(hours=1))
    store = InMemoryStore()
    sync = engine(store, fake)
    source = connector(fake, base_url, page_size=100, retry=RetryPolicy(max_attempts=3))
    assert run(sync, source).outcome is Outcome.COMPLETED
    cursor = sync.state(KEY).cursor

    fake.clock.advance(timedelta(minutes=10))
    for deal_id in ids[:20]:
        fake.update(deal_id, {"value": 5})
    fake.clock.advance(timedelta(minutes=10))

    def storm(request: httpx.Request) -> httpx.Response | None:
        return httpx.Response(500, json={"success": False, "error": "Internal server error"})

    fake.add_fault(storm)
    before = len(fake.requests)
    failed = run(sync, source)
    assert failed.outcome is Outcome.FAILED
    assert failed.error_class == "TransientSourceError"
    assert len(fake.requests) - before == 3
    assert sync.state(KEY).cursor == cursor
    assert sync.state(KEY).consecutive_failures == 1

    fake.clear_faults()
    healed = run(sync, source)
    assert healed.outcome is Outcome.COMPLETED
    assert healed.applied == 20
    assert_matches(store, fake)


@pytest.mark.parametrize("token_in_query", [False, True])
def test_the_api_token_never_reaches_logs_errors_state_or_the_database(
    fake: FakePipedrive,
    base_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    token_in_query: bool,
) -> None:
    """The api_token stays out of logs (httpx's request lines included), error text, state and
    the SQLite file, also when it travels in the query string and the failing answer echoes the
    request URL and headers back."""
    caplog.set_level(logging.DEBUG)
    load_deals(fake, 300)
    fake.clock.set(T0 + timedelta(hours=1))
    sentinel = "pd-sentinel-" + fake.api_token
    fake.api_token = sentinel

    def echo(request: httpx.Request) -> httpx.Response | None:
        if "cursor" in request.url.params:
            said = f"boom at {request.url} with {request.headers.get('x-api-token')}"
            return httpx.Response(500, json={"success": False, "error": said})
        return None

    fake.add_fault(echo)
    with ExitStack() as stack:
        store = stack.enter_context(SQLiteStore(tmp_path / "sync.db"))
        source = connector(
            fake,
            base_url,
            page_size=100,
            token_in_query=token_in_query,
            retry=RetryPolicy(max_attempts=2),
        )
        stack.callback(source.close)
        sync = engine(store, fake)
        failed = run(sync, source)
        assert failed.outcome is Outcome.FAILED
        with pytest.raises(TransientSourceError, match="500") as raised:
            list(source.read(Window()))
        state_text = repr(sync.state(KEY)) + repr(sync.states()) + repr(source)
        fake.clear_faults()
        assert run(sync, source).outcome is Outcome.COMPLETED
        state_text += repr(sync.state(KEY))
        assert_matches(store, fake)
    # The token did reach the wire: in the URL, or in the header (which the fake records masked).
    carried = [r for r in fake.requests if sentinel in r.url or r.headers.get("x-api-token")]
    assert carried
    assert any("HTTP Request" in m for m in caplog.messages)  # httpx's lines were captured
    database = b"".join(path.read_bytes() for path in tmp_path.glob("sync.db*"))
    assert failed.error is not None
    assert "boom" in failed.error
    for text in (caplog.text, failed.error, str(raised.value), state_text):
        assert sentinel not in text
    assert sentinel.encode() not in database


def test_an_api_key_added_to_the_query_by_an_auth_flow_is_masked_in_httpx_logs(
    fake: FakePipedrive, base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """httpx logs the URL after the auth flow ran, so a plain ``ApiKey(query_param=...)`` puts
    the token in httpx's own request line; the toolkit's log filter masks it there too."""
    caplog.set_level(logging.INFO, logger="httpx")
    load_deals(fake, 3)
    leaky = ApiKey(fake.api_token, query_param="api_token")
    with closing(connector(fake, base_url, auth=leaky)) as source:
        assert len([r for page in source.read(Window()) for r in page.records]) == 3
    assert "api_token=***" in caplog.text
    assert fake.api_token not in caplog.text


def test_pages_that_go_back_in_order_fail_the_read(fake: FakePipedrive, base_url: str) -> None:
    """A page whose deals go back in update_time fails the read with BadResponseError instead of
    letting the cursor pass deals not read yet."""
    load_deals(fake, 250)

    class Reversed(httpx.BaseTransport):
        def __init__(self) -> None:
            self._inner = httpx.HTTPTransport()

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            answer = self._inner.handle_request(request)
            body = json.loads(answer.read())
            answer.close()
            body["data"].reverse()
            return httpx.Response(200, json=body)

        def close(self) -> None:
            self._inner.close()

    source = connector(fake, base_url, page_size=100, transport=Reversed())
    with (
        closing(source),
        pytest.raises(BadResponseError, match="order asked for"),
    ):
        list(source.read(Window()))


def test_the_window_start_is_rounded_down_to_the_second(fake: FakePipedrive, base_url: str) -> None:
    """updated_since is whole-second RFC 3339 at or before the window's start."""
    fake.load([T0, T0 + timedelta(seconds=1)])
    start = T0 + timedelta(milliseconds=999)
    with closing(connector(fake, base_url)) as source:
        records = [r for page in source.read(Window(start=start)) for r in page.records]
    assert deal_lists(fake)[0].params["updated_since"] == "2024-03-01T00:00:00Z"
    assert [r.updated_at for r in records] == [T0, T0 + timedelta(seconds=1)]


def test_a_window_older_than_the_deleted_retention_warns(
    fake: FakePipedrive, base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Reading from more than 30 days back warns that older deletions can no longer be seen."""
    fake.clock.set(T0 + timedelta(days=40))
    with closing(connector(fake, base_url)) as source:
        list(source.read(Window(start=T0 + timedelta(days=11))))
        assert "no longer listed" not in caplog.text
        list(source.read(Window(start=T0 + timedelta(days=9))))
    assert "more than 30 days ago" in caplog.text
    assert "reset the source" in caplog.text


def test_v1_and_v2_timestamps_and_deleted_flags_are_read(
    fake: FakePipedrive, base_url: str
) -> None:
    """v2 RFC 3339 and v1 zone-less UTC update_times give the same instant; v2 is_deleted and v1
    deleted both make tombstones; a string id is set aside."""
    with closing(connector(fake, base_url)) as source:
        v2 = source.to_record(
            {"id": 11, "update_time": "2023-02-22T08:27:54Z", "is_deleted": False}
        )
        v1 = source.to_record({"id": 11, "update_time": "2023-02-22 08:27:54", "deleted": True})
        gone = source.to_record(
            {"id": 13, "update_time": "2023-02-22T08:53:18Z", "is_deleted": True}
        )
        assert v2.updated_at == v1.updated_at == datetime(2023, 2, 22, 8, 27, 54, tzinfo=UTC)
        assert (v2.id, v2.deleted, v1.deleted, gone.deleted) == ("11", False, True, True)
        with pytest.raises(BadRecordError, match="positive integer"):
            source.to_record({"id": "11", "update_time": "2023-02-22T08:27:54Z"})


def test_pipedrive_throttle_tells_bursts_quotas_and_cdn_pages_apart() -> None:
    """429 → burst waiting x-ratelimit-reset; 429 with no daily requests left → quota; HTML 403 →
    burst; a JSON 403 (a missing permission) is no throttle."""
    burst = pipedrive_throttle(httpx.Response(429, headers={"x-ratelimit-reset": "2"}))
    quota = pipedrive_throttle(
        httpx.Response(429, headers={"x-ratelimit-reset": "1", "x-daily-requests-left": "0"})
    )
    html = pipedrive_throttle(httpx.Response(403, text="<!DOCTYPE html><html></html>"))
    denied = pipedrive_throttle(httpx.Response(403, json={"success": False, "error": "nope"}))
    assert burst is not None
    assert (burst.retry_after, burst.quota) == (2.0, False)
    assert quota is not None
    assert quota.quota
    assert html is not None
    assert not html.quota
    assert "CDN" in html.reason
    assert denied is None


def test_configuration_mistakes_are_refused() -> None:
    """Exactly one credential, a non-empty token, a page size Pipedrive accepts."""
    cases: list[dict[str, Any]] = [
        {},
        {"api_token": ""},
        {"api_token": "t0ken", "page_size": 501},
        {"api_token": "t0ken", "page_size": 0},
        {"api_token": "t0ken", "lookback": timedelta(seconds=-1)},
        {"token_in_query": True, "auth": pipedrive_oauth("id", "secret", "refresh")},
    ]
    for arguments in cases:
        with pytest.raises(ConfigurationError):
            PipedriveConnector("http://127.0.0.1:9", **arguments)


# -- full reads in time partitions ------------------------------------------------------------


def test_a_full_read_in_the_default_partitions_reads_every_deal_bounded_by_updated_until(
    fake: FakePipedrive, base_url: str
) -> None:
    """25,000 deals, 1,200 in one second, read by the default readers at once: each list
    but the last partition's is bounded by ``updated_until``, and every deal arrives (the last
    partition's last second twice, dropped by the sink)."""
    load_deals(fake, 11_900)
    fake.load([T0 + timedelta(hours=5)] * 1_200, {"title": "import"})
    load_deals(fake, 11_900, T0 + timedelta(hours=6))
    fake.clock.set(T0 + timedelta(days=1))
    store = InMemoryStore()
    with closing(connector(fake, base_url, partitions=PIPEDRIVE_PARTITIONS)) as source:
        result = run(engine(store, fake), source)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert (result.fetched - result.already_applied, result.applied) == (25_000, 25_000)
    assert_matches(store, fake)
    bounded = {u.params["updated_until"] for u in deal_lists(fake) if "updated_until" in u.params}
    assert len(bounded) == PIPEDRIVE_PARTITIONS - 1
    assert all(bound.endswith("Z") and "." not in bound for bound in bounded)  # whole seconds


def test_the_time_span_asks_both_ends_at_once(fake: FakePipedrive, base_url: str) -> None:
    """The oldest and newest updates are asked together: the plan waits one round trip, not
    two (each answer here takes a second, so asked one after the other they would take two)."""
    load_deals(fake, 30)
    fake.latency = Latency(fixed=1.0)
    with closing(connector(fake, base_url, partitions=PIPEDRIVE_PARTITIONS)) as source:
        began = time.monotonic()
        span = source.time_span()
        took = time.monotonic() - began
    assert span == (T0, T0 + timedelta(seconds=29))
    assert [u.params["sort_direction"] for u in deal_lists(fake)] in (
        ["asc", "desc"],
        ["desc", "asc"],
    )
    assert took < 1.9


@pytest.mark.parametrize(
    ("headers", "window"),
    [
        (
            {"limit": "80", "remaining": "79", "reset": "2"},
            WindowLimit(80, 79, 2 * SECOND, BURST_WINDOW),
        ),
        (
            {"limit": "20", "remaining": "0", "reset": "0.5"},
            WindowLimit(20, 0, SECOND / 2, BURST_WINDOW),
        ),
        ({"limit": "80", "remaining": "79"}, None),
        ({"limit": "80", "reset": "2"}, None),
        ({"remaining": "79", "reset": "2"}, None),
        ({"limit": "0", "remaining": "0", "reset": "2"}, None),
        ({"limit": "many", "remaining": "79", "reset": "2"}, None),
        ({"limit": "80", "remaining": "79", "reset": "Wed, 21 Oct 2026 07:28:00 GMT"}, None),
    ],
)
def test_the_window_is_read_from_the_three_rate_limit_headers(
    fake: FakePipedrive, base_url: str, headers: dict[str, str], window: WindowLimit | None
) -> None:
    """All three of x-ratelimit-limit, -remaining and -reset, each readable, or nothing."""
    given = httpx.Headers({f"x-ratelimit-{name}": value for name, value in headers.items()})
    with closing(connector(fake, base_url)) as source:
        assert source.window_of(given) == window
    assert BURST_WINDOW == 2 * SECOND


def test_a_partitioned_read_keeps_to_the_limit_a_smaller_plan_states() -> None:
    """Eight readers against a plan allowing 20 requests per 2 s, on the real clock: the first
    answer states the window, and the readers together spend each window and wait for the next.
    The read is refused at most twice: the time span's two probes go out before any answer has
    stated the limit, and a busy machine may delay a request into the window after its own.
    Blind to the window, the eight readers are refused in every window."""
    fake = FakePipedrive(clock=RunningClock(), limits=PipedriveLimits(per_window=20, daily=None))
    load_deals(fake, 600, start=fake.clock() - timedelta(days=2), per_second=2)
    arrived: list[int] = []
    fake.add_fault(lambda _request: arrived.append(int(fake.clock().timestamp()) // 2))
    store = InMemoryStore()
    with fake.serve() as base_url:
        source = connector(fake, base_url, page_size=25, sleep=time.sleep, partitions=8)
        result = run(engine(store, fake), source)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert_matches(store, fake)
    assert len([r for r in fake.requests if r.status == 429]) <= 2
    assert len(arrived) > 26  # the probes, 600 deals in pages of 25, and the summary
    per_window = Counter(arrived)
    assert max(per_window.values()) <= 20 + 2


def test_the_time_span_of_no_deal_is_none(fake: FakePipedrive, base_url: str) -> None:
    with closing(connector(fake, base_url)) as source:
        assert source.time_span() is None


def test_changes_while_a_partitioned_read_pages_lose_nothing(
    fake: FakePipedrive, base_url: str
) -> None:
    """Deals updated, deleted and created while four partitions are read move to the last one,
    which is read to its end after the others: the sink ends equal to the company."""
    ids = load_deals(fake, 1_000)
    fake.clock.set(T0 + timedelta(hours=1))
    lists = itertools.count(1)

    def meddle(request: httpx.Request) -> None:
        if request.url.path == "/api/v2/deals" and next(lists) == 7:
            for deal_id in [*ids[:20], *ids[500:520], *ids[900:910]]:
                fake.update(deal_id, {"value": 99})
            for deal_id in [*ids[20:30], *ids[600:610]]:
                fake.delete(deal_id)
            for _ in range(15):
                fake.create({"title": "while paging"})

    fake.add_fault(meddle)
    store = InMemoryStore()
    with closing(connector(fake, base_url, page_size=50, partitions=4)) as source:
        result = run(engine(store, fake), source)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert_matches(store, fake)
