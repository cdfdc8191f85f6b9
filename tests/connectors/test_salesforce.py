"""Tests for incsync.vendors.salesforce against FakeSalesforce, over loopback HTTP or in process.

Every scenario ends with the sink compared exactly to the fake org's ground truth: each record
present once, at its latest version, deleted rows as tombstones, nothing else.
"""

from __future__ import annotations

import gc
import json
import logging
import weakref
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from incsync import CycleProgress, CycleResult, Outcome, SQLiteStore, SyncEngine
from incsync.connectors import RetryPolicy, TokenSet
from incsync.connectors.http import HttpOptions
from incsync.cursor import Window
from incsync.errors import (
    BadResponseError,
    ConfigurationError,
    PermanentSourceError,
    TransientSourceError,
)
from incsync.testing import InMemoryStore
from incsync.testing.fakes.salesforce import FakeSalesforce, FieldValue
from incsync.timestamps import parse_timestamp
from incsync.tokens import StoreTokenKeeper
from incsync.vendors.salesforce import SalesforceConnector
from tests.helpers import Store

UTC = timezone.utc
T0 = datetime(2024, 6, 3, 9, 0, tzinfo=UTC)  # the fake's clock starts here
KEY = "acme/salesforce"
CLIENT_ID = "fake-consumer-key"
CLIENT_SECRET = "cs_SENTINEL_4f1e9a0b"
REFRESH_TOKEN = "5Aep861-rt_SENTINEL_77d2c"
FAST = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0, jitter=0.0)


def no_sleep(_seconds: float) -> None:
    """Waits nothing, so retries cost no time."""


def sleeper(fake: FakeSalesforce) -> Callable[[float], None]:
    """Waits on the org's own clock: a bulk query job completes while the connector waits."""

    def sleep(seconds: float) -> None:
        fake.advance(timedelta(seconds=seconds))

    return sleep


def make_fake(**options: Any) -> FakeSalesforce:
    return FakeSalesforce(client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN, **options)


def connect(
    fake: FakeSalesforce,
    base_url: str | None = None,
    *,
    refresh_token: str | None = None,
    **options: Any,
) -> SalesforceConnector:
    """A connector for ``fake``: on its loopback server, or in process without ``base_url``."""
    transport = None if base_url is not None else fake.transport()
    return SalesforceConnector(
        CLIENT_ID,
        CLIENT_SECRET,
        refresh_token or fake.refresh_token,
        login_url=base_url or "https://login.example.com",
        options=HttpOptions(transport=transport, retry=FAST, sleep=sleeper(fake), clock=fake.clock),
        **options,
    )


def engine_for(fake: FakeSalesforce, store: Store) -> SyncEngine:
    return SyncEngine(store, clock=fake.clock)


def wire(value: FieldValue) -> object:
    """A field value as Salesforce writes it in JSON."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"
    if isinstance(value, date):
        return value.isoformat()
    return value


Version = tuple[datetime, bool, dict[str, object]]


def assert_sink_matches(
    store: Store,
    fake: FakeSalesforce,
    connector: SalesforceConnector,
    *,
    missing: frozenset[str] = frozenset(),
) -> None:
    """The sink holds exactly the org's records (tombstones too with queryAll), latest versions."""
    fields = connector.fields
    expected: dict[str, Version] = {}
    for row in fake.records(connector.sobject, include_deleted=connector.include_deleted):
        if row["Id"] in missing:
            continue
        stamp = row["SystemModstamp"]
        assert isinstance(stamp, datetime)
        expected[str(row["Id"])] = (
            stamp,
            bool(row["IsDeleted"]),
            {field: wire(row[field]) for field in fields},
        )
    actual: dict[str, Version] = {}
    for transaction in store.transactions(KEY):
        record = transaction.record
        assert record.id not in actual, f"{record.id} stored twice"
        actual[record.id] = (
            record.updated_at,
            record.deleted,
            {field: record.payload[field] for field in fields},
        )
    assert actual.keys() == expected.keys()
    assert actual == expected
    assert store.count_transactions(KEY) == len(expected)


def spread(count: int, start: datetime, *, per_second: int = 7) -> list[dict[str, FieldValue]]:
    """Opportunities stamped ``per_second`` to a second from ``start`` on."""
    return [
        {
            "Name": f"Deal {i}",
            "StageName": "Prospecting",
            "Amount": float(i),
            "CloseDate": date(2024, 12, 31),
            "SystemModstamp": start + timedelta(seconds=i // per_second),
        }
        for i in range(count)
    ]


def once_on(fake: FakeSalesforce, nth: int, action: Callable[[], None]) -> None:
    """Run ``action`` just before the fake answers its ``nth`` query request (1 = first page)."""
    seen = [0]

    def fault(request: httpx.Request) -> httpx.Response | None:
        if "/query" in request.url.path:
            seen[0] += 1
            if seen[0] == nth:
                action()
        return None

    fake.add_fault(fault)


def query_requests(fake: FakeSalesforce) -> list[str]:
    """Return the URLs of the reads' queries (the engine's count check is not one of them)."""
    return [
        r.url for r in fake.requests if "/services/data/" in r.url and "COUNT%28%29" not in r.url
    ]


def one_cycle(
    fake: FakeSalesforce, **options: Any
) -> tuple[CycleResult, InMemoryStore, SalesforceConnector]:
    """Run one engine cycle over loopback into a new in-memory store."""
    store = InMemoryStore()
    with fake.serve() as base_url, connect(fake, base_url, **options) as connector:
        result = engine_for(fake, store).run_cycle(KEY, connector)
    return result, store, connector


def soql_sent(fake: FakeSalesforce) -> list[str]:
    """The SOQL of every query the fake was sent (locator pages carry none)."""
    urls = (httpx.URL(url) for url in query_requests(fake))
    return [url.params["q"] for url in urls if "q" in url.params]


def expire_every_locator(fake: FakeSalesforce) -> None:
    """Close every query locator just before a nextRecordsUrl is followed: each dies unused."""

    def expire(request: httpx.Request) -> httpx.Response | None:
        if "/query/" in request.url.path or "/queryAll/" in request.url.path:
            fake.expire_query_locators()
        return None

    fake.add_fault(expire)


# -- full sync ------------------------------------------------------------------------------------


def test_full_sync_of_25000_records_with_ties_across_pages() -> None:
    """25,000 records, 5,000 sharing one SystemModstamp over three pages, land once each
    through query (bulk exports are off)."""
    fake = make_fake()
    tied = T0 - timedelta(days=2)
    rows = spread(5_000, tied, per_second=5_000) + spread(20_000, tied + timedelta(seconds=1))
    fake.bulk_load("Opportunity", rows)
    fake.advance(timedelta(hours=1))
    store = InMemoryStore()
    with (
        fake.serve() as base_url,
        connect(fake, base_url, batch_size=2_000, bulk_threshold=None) as connector,
    ):
        result = engine_for(fake, store).run_cycle(KEY, connector)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert (result.fetched, result.applied, result.pages) == (25_000, 25_000, 13)
    assert len(query_requests(fake)) == 13  # one query, twelve locator pages, no re-query
    assert_sink_matches(store, fake, connector)
    cursor = store.load(KEY).cursor
    assert cursor is not None
    assert cursor.updated_at == tied + timedelta(seconds=1 + 19_999 // 7)  # the newest stamp


def test_every_page_of_a_read_carries_the_first_query_s_total_size() -> None:
    """A full read over loopback reports progress out of the ``totalSize`` of its first query,
    and an incremental one out of its own query's; no request is spent on counting."""
    fake = make_fake()
    ids = fake.bulk_load("Opportunity", spread(450, T0 - timedelta(days=1)))
    fake.advance(timedelta(hours=1))
    store = InMemoryStore()
    reports: list[CycleProgress] = []
    with fake.serve() as base_url, connect(fake, base_url, batch_size=200) as connector:
        engine = engine_for(fake, store)
        result = engine.run_cycle(KEY, connector, on_progress=reports.append)
        assert result.outcome is Outcome.COMPLETED, result.error
        assert [report.total for report in reports] == [450] * 3
        assert len(query_requests(fake)) == 3  # one query, two locator pages: nothing else
        for record_id in ids[:7]:
            fake.update_record("Opportunity", record_id, {"Name": "renamed"})
        fake.advance(timedelta(minutes=10))
        reports.clear()
        assert engine.run_cycle(KEY, connector, on_progress=reports.append).applied == 7
    # The renamed rows and those the query reads again at the cursor's millisecond.
    [report] = reports
    assert report.total == report.fetched >= 7


def test_query_is_keyset_soql_with_an_unquoted_millisecond_literal() -> None:
    """The query selects Id and SystemModstamp, filters >= an unquoted UTC literal, orders both."""
    fake = make_fake()
    with connect(fake, fields=["Name", "Id", "name"], sobject="Lead") as connector:
        start = datetime(2024, 6, 1, 8, 30, 15, 123_999, tzinfo=UTC)
        assert connector.soql(start) == (
            "SELECT Id, SystemModstamp, Name, name FROM Lead "
            "WHERE SystemModstamp >= 2024-06-01T08:30:15.123Z ORDER BY SystemModstamp, Id"
        )
        assert connector.soql(None) == (
            "SELECT Id, SystemModstamp, Name, name FROM Lead ORDER BY SystemModstamp, Id"
        )


def test_query_literals_keep_four_digit_years() -> None:
    """A start before year 1000 is written with four year digits, as SOQL requires."""
    with connect(make_fake()) as connector:
        soql = connector.soql(datetime(1, 1, 1, 5, 0, 0, 999, tzinfo=UTC))
    assert " WHERE SystemModstamp >= 0001-01-01T05:00:00.000Z ORDER BY" in soql


def test_instance_url_from_the_token_answer_is_the_api_root() -> None:
    """API calls and nextRecordsUrl go to instance_url (absolute, the path never doubled)."""
    fake = make_fake(instance_url="https://na1.example.my.salesforce.com")
    fake.bulk_load("Opportunity", spread(450, T0 - timedelta(days=1)))
    store = InMemoryStore()
    with connect(fake, batch_size=200) as connector:
        result = engine_for(fake, store).run_cycle(KEY, connector)
        assert connector.instance_url == "https://na1.example.my.salesforce.com"
    assert result.outcome is Outcome.COMPLETED, result.error
    urls = query_requests(fake)
    assert len(urls) == 3
    assert all(
        url.startswith("https://na1.example.my.salesforce.com/services/data/v59.0/query")
        for url in urls
    )
    assert all(url.count("/services/data/") == 1 for url in urls)
    assert fake.requests[0].url == "https://login.example.com/services/oauth2/token"
    assert_sink_matches(store, fake, connector)


# -- incremental cycles ---------------------------------------------------------------------------


def test_incremental_cycles_with_updates_deletes_touches_and_bursts() -> None:
    """Updates, deletes (queryAll tombstones), touches and one-second bursts arrive next cycle."""
    fake = make_fake()
    ids = fake.bulk_load("Opportunity", spread(1_000, T0 - timedelta(days=1)))
    fake.advance(timedelta(hours=1))
    store = InMemoryStore()
    engine = engine_for(fake, store)
    with (
        fake.serve() as base_url,
        connect(fake, base_url, batch_size=200, include_deleted=True) as connector,
    ):
        first = engine.run_cycle(KEY, connector)
        assert first.outcome is Outcome.COMPLETED, first.error
        assert_sink_matches(store, fake, connector)

        fake.advance(timedelta(hours=1))
        burst = fake.clock()
        for record_id in ids[100:550]:  # 450 changes in one second: more than two pages
            fake.update_record("Opportunity", record_id, {"StageName": "Closed Won"}, at=burst)
        for record_id in ids[:20]:
            fake.delete_record("Opportunity", record_id, at=burst)
        for record_id in ids[900:930]:
            fake.touch_record("Opportunity", record_id, at=burst + timedelta(seconds=1))
        born_and_gone = fake.add_record("Opportunity", {"Name": "Brief"}, at=burst)
        fake.delete_record("Opportunity", born_and_gone, at=burst + timedelta(seconds=2))
        fake.bulk_load("Opportunity", spread(50, burst + timedelta(seconds=3)))
        fake.advance(timedelta(hours=1))
        second = engine.run_cycle(KEY, connector)
        assert second.outcome is Outcome.COMPLETED, second.error
        assert_sink_matches(store, fake, connector)
        tombstones = [t.record.id for t in store.transactions(KEY) if t.record.deleted]
        assert sorted(tombstones) == sorted([*ids[:20], born_and_gone])
        cursor = store.load(KEY).cursor
        assert cursor is not None
        assert cursor.updated_at == burst + timedelta(seconds=3 + 49 // 7)  # the newest stamp

        fake.advance(timedelta(hours=1))
        quiet = engine.run_cycle(KEY, connector)
    assert quiet.outcome is Outcome.COMPLETED
    assert quiet.applied == 0
    assert_sink_matches(store, fake, connector)


def test_without_include_deleted_query_skips_the_recycle_bin() -> None:
    """With query (not queryAll) deleted rows are not read and IsDeleted is not selected."""
    fake = make_fake()
    ids = fake.bulk_load("Opportunity", spread(30, T0 - timedelta(days=1)))
    fake.delete_record("Opportunity", ids[0], at=T0 - timedelta(hours=1))
    store = InMemoryStore()
    with connect(fake) as connector:
        result = engine_for(fake, store).run_cycle(KEY, connector)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert "IsDeleted" not in connector.fields
    assert all("/query?" in url for url in query_requests(fake))
    assert_sink_matches(store, fake, connector)


def test_changes_while_a_sync_pages_arrive_next_cycle() -> None:
    """A read sees its query's snapshot; what changed meanwhile comes next cycle, nothing lost."""
    fake = make_fake()
    ids = fake.bulk_load("Opportunity", spread(1_000, T0 - timedelta(days=1)))
    fake.advance(timedelta(hours=1))
    added: list[str] = []

    def meddle() -> None:
        fake.update_record("Opportunity", ids[0], {"Name": "Read already"})
        fake.update_record("Opportunity", ids[-1], {"Name": "Not read yet"})
        fake.delete_record("Opportunity", ids[-2])
        added.extend(fake.bulk_load("Opportunity", [{"Name": "New mid-read"}]))

    once_on(fake, 3, meddle)
    store = InMemoryStore()
    engine = engine_for(fake, store)
    with (
        fake.serve() as base_url,
        connect(fake, base_url, batch_size=200, include_deleted=True) as connector,
    ):
        first = engine.run_cycle(KEY, connector)
        assert first.outcome is Outcome.COMPLETED, first.error
        assert first.fetched == 1_000
        stored = {t.record.id: t.record for t in store.transactions(KEY)}
        assert stored[ids[-1]].payload["Name"] == "Deal 999"  # the snapshot's version
        assert added[0] not in stored
        fake.advance(timedelta(hours=1))
        second = engine.run_cycle(KEY, connector)
    assert second.outcome is Outcome.COMPLETED, second.error
    assert_sink_matches(store, fake, connector)


# -- throttling, sessions, bad records, outages ---------------------------------------------------


def test_request_limit_exceeded_fails_at_once_then_recovers() -> None:
    """403 REQUEST_LIMIT_EXCEEDED fails the cycle without retries, sets not_before, then heals."""
    fake = make_fake()
    fake.bulk_load("Opportunity", spread(300, T0 - timedelta(days=1)))
    fake.set_api_usage(5_000, 5_000)
    store = InMemoryStore()
    engine = engine_for(fake, store)
    with fake.serve() as base_url, connect(fake, base_url) as connector:
        failed = engine.run_cycle(KEY, connector)
        assert failed.outcome is Outcome.FAILED
        assert failed.error_class == "RateLimitedError"
        assert "REQUEST_LIMIT_EXCEEDED" in (failed.error or "")
        state = store.load(KEY)
        assert state.not_before == fake.clock() + timedelta(hours=1)
        assert state.cursor is None
        assert [r.status for r in fake.requests].count(403) == 1  # a quota is not retried
        assert engine.run_cycle(KEY, connector).outcome is Outcome.SKIPPED_WAITING
        fake.set_api_usage(0)
        fake.advance(timedelta(hours=1, minutes=1))
        recovered = engine.run_cycle(KEY, connector)
    assert recovered.outcome is Outcome.COMPLETED, recovered.error
    assert_sink_matches(store, fake, connector)


def test_concurrent_request_limit_is_retried_within_the_cycle() -> None:
    """The ConcurrentRequests flavour of REQUEST_LIMIT_EXCEEDED is a burst: waited out."""
    fake = make_fake()
    fake.bulk_load("Opportunity", spread(10, T0 - timedelta(days=1)))
    fake.reject_concurrent_requests(1)
    store = InMemoryStore()
    with connect(fake) as connector:
        result = engine_for(fake, store).run_cycle(KEY, connector)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert [r.status for r in fake.requests].count(403) == 1
    assert_sink_matches(store, fake, connector)


def test_session_expiry_mid_sync_refreshes_and_rotation_reaches_the_host() -> None:
    """An expired session mid-read is refreshed, the read goes on; rotated tokens reach the host."""
    fake = make_fake(rotate_refresh_tokens=True)
    ids = fake.bulk_load("Opportunity", spread(1_000, T0 - timedelta(days=1)))
    fake.advance(timedelta(hours=1))
    once_on(fake, 3, fake.expire_access_tokens)
    stored: list[TokenSet] = []
    store = InMemoryStore()
    engine = engine_for(fake, store)
    with fake.serve() as base_url:
        with connect(fake, base_url, batch_size=200, on_refresh=stored.append) as connector:
            result = engine.run_cycle(KEY, connector)
        assert result.outcome is Outcome.COMPLETED, result.error
        assert result.fetched == 1_000
        assert [r.status for r in fake.requests].count(401) == 1
        assert len(stored) == 2
        assert all(tokens.rotated for tokens in stored)
        assert stored[-1].refresh_token == fake.refresh_token != REFRESH_TOKEN
        assert_sink_matches(store, fake, connector)
        # The next run starts from the stored (rotated) refresh token; the first one is dead.
        fake.update_record("Opportunity", ids[0], {"Amount": 1.5})
        fake.advance(timedelta(hours=1))
        with connect(fake, base_url, refresh_token=stored[-1].refresh_token) as later:
            again = engine.run_cycle(KEY, later)
    assert again.outcome is Outcome.COMPLETED, again.error
    assert_sink_matches(store, fake, later)


def test_a_keeper_in_the_store_carries_the_rotated_token_to_the_next_connector() -> None:
    """With a keeper the rotated refresh token is saved to the store row; a later connector built
    from the dead first token refreshes from the row. Saved access tokens are never reused (their
    instance URL is not kept): each connector starts with a refresh."""
    fake = make_fake(rotate_refresh_tokens=True)
    fake.bulk_load("Opportunity", spread(20, T0 - timedelta(days=1)))
    fake.advance(timedelta(hours=1))
    store = InMemoryStore()
    engine = engine_for(fake, store)
    for _ in range(2):
        with connect(fake, refresh_token=REFRESH_TOKEN, keeper=StoreTokenKeeper(store, KEY)) as c:
            result = engine.run_cycle(KEY, c)
        assert result.outcome is Outcome.COMPLETED, result.error
        kept = StoreTokenKeeper(store, KEY).load()
        assert kept is not None
        assert kept.refresh_token == fake.refresh_token != REFRESH_TOKEN
    token_requests = [r for r in fake.requests if r.url.endswith("/services/oauth2/token")]
    assert [r.status for r in token_requests] == [200, 200]


def test_a_malformed_record_is_set_aside_and_the_cycle_completes() -> None:
    """A record with an unreadable SystemModstamp is rejected; the others land; a touch heals it."""
    fake = make_fake()
    ids = fake.bulk_load("Opportunity", spread(50, T0 - timedelta(days=1)))
    fake.advance(timedelta(hours=1))
    bad = ids[7]
    done: list[bool] = []

    def corrupt(request: httpx.Request) -> httpx.Response | None:
        if "/query" not in request.url.path or done:
            return None
        done.append(True)
        body = json.loads(fake.handle(request).read())
        for raw in body["records"]:
            if raw["Id"] == bad:
                raw["SystemModstamp"] = "last Tuesday"
        return httpx.Response(200, json=body)

    fake.add_fault(corrupt)
    store = InMemoryStore()
    engine = engine_for(fake, store)
    with connect(fake) as connector:
        first = engine.run_cycle(KEY, connector)
        assert first.outcome is Outcome.COMPLETED, first.error
        assert (first.applied, first.rejected) == (49, 1)
        [rejected] = engine.rejected(KEY)
        assert rejected.record_id == bad
        assert "SystemModstamp" in rejected.reason
        assert_sink_matches(store, fake, connector, missing=frozenset({bad}))
        fake.touch_record("Opportunity", bad)
        fake.advance(timedelta(hours=1))
        healed = engine.run_cycle(KEY, connector)
    assert healed.outcome is Outcome.COMPLETED, healed.error
    assert_sink_matches(store, fake, connector)


def test_a_5xx_storm_fails_the_cycle_and_the_next_cycle_recovers() -> None:
    """SERVER_UNAVAILABLE on every attempt fails the cycle, cursor kept; the next one catches up."""
    fake = make_fake()
    ids = fake.bulk_load("Opportunity", spread(400, T0 - timedelta(days=1)))
    fake.advance(timedelta(hours=1))
    store = InMemoryStore()
    engine = engine_for(fake, store)
    with fake.serve() as base_url, connect(fake, base_url, batch_size=200) as connector:
        assert engine.run_cycle(KEY, connector).outcome is Outcome.COMPLETED
        cursor = store.load(KEY).cursor
        for record_id in ids[:250]:
            fake.update_record("Opportunity", record_id, {"Amount": 2.0})
        fake.advance(timedelta(hours=1))
        fake.fail_queries(FAST.max_attempts, error="SERVER_UNAVAILABLE")
        failed = engine.run_cycle(KEY, connector)
        assert failed.outcome is Outcome.FAILED
        assert failed.error_class == "TransientSourceError"
        assert "gave up after 3 attempts" in (failed.error or "")
        assert store.load(KEY).cursor == cursor
        assert store.load(KEY).consecutive_failures == 1
        assert [r.status for r in fake.requests].count(503) == 3
        fake.advance(timedelta(hours=1))
        recovered = engine.run_cycle(KEY, connector)
    assert recovered.outcome is Outcome.COMPLETED, recovered.error
    assert recovered.applied == 250
    assert_sink_matches(store, fake, connector)


# -- query locators -------------------------------------------------------------------------------


def test_an_expired_query_locator_mid_read_is_requeried_without_loss_or_duplicates() -> None:
    """INVALID_QUERY_LOCATOR mid-read: re-query from the last SystemModstamp, skip ids seen."""
    fake = make_fake()
    tied = T0 - timedelta(days=1)
    rows = spread(100, tied - timedelta(hours=1)) + spread(600, tied, per_second=600)
    rows += spread(300, tied + timedelta(seconds=1))
    fake.bulk_load("Opportunity", rows)
    fake.advance(timedelta(hours=1))
    once_on(fake, 3, fake.expire_query_locators)  # mid-way through the 600 tied records
    with fake.serve() as base_url, connect(fake, base_url, batch_size=200) as connector:
        pages = list(connector.read(Window()))
    records = [record for page in pages for record in page.records]
    assert len(records) == 1_000
    assert sorted(record.id for record in records) == sorted(
        str(row["Id"]) for row in fake.records("Opportunity")
    )
    stamps = [record.updated_at for record in records]
    assert stamps == sorted(stamps)
    statuses = [r.status for r in fake.requests if "/services/data/" in r.url]
    assert statuses.count(400) == 1
    requery = [url for url in query_requests(fake) if "/query?" in url][1]
    assert "2024-06-02T09%3A00%3A00.000Z" in requery


def test_an_expired_query_locator_in_an_engine_cycle_leaves_the_sink_complete() -> None:
    """The same expiry inside a cycle: the sink matches the org exactly."""
    fake = make_fake()
    fake.bulk_load("Opportunity", spread(900, T0 - timedelta(days=1), per_second=300))
    fake.advance(timedelta(hours=1))
    once_on(fake, 2, fake.expire_query_locators)
    result, store, connector = one_cycle(fake, batch_size=200)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert result.fetched == 900
    assert_sink_matches(store, fake, connector)


def test_locators_that_keep_expiring_still_read_every_row_once_in_bounded_requests() -> None:
    """Every locator dying unused: each query answers one page, the read goes on from its newest
    tick and reads the crowded tick by Id; it completes, each row once, without looping."""
    fake = make_fake()
    fake.bulk_load("Opportunity", spread(600, T0 - timedelta(days=1), per_second=600))
    expire_every_locator(fake)
    with connect(fake, batch_size=200) as connector:
        pages = list(connector.read(Window()))
    read = [record.id for page in pages for record in page.records]
    assert sorted(read) == sorted(str(row["Id"]) for row in fake.records("Opportunity"))
    # Two one-page answers (the second never gets past its tick), four reads by Id, a last query.
    assert len(query_requests(fake)) <= 9


@pytest.mark.parametrize("max_batch_size", [None, 150], ids=["as-asked", "smaller-batches"])
def test_a_crowded_tick_larger_than_a_page_is_read_whole_by_id(max_batch_size: int | None) -> None:
    """2,500 rows stamped in one second, every locator expiring: the second is read by Id.

    The tick is asked ``SystemModstamp = t ... ORDER BY Id LIMIT n`` and paged by the last Id
    read, also when Salesforce serves fewer rows than the LIMIT per batch; each row lands once.
    """
    fake = make_fake(max_batch_size=max_batch_size)
    crowded = T0 - timedelta(days=1)
    rows = spread(2_500, crowded, per_second=2_500) + spread(300, crowded + timedelta(seconds=1))
    fake.bulk_load("Opportunity", rows)
    fake.advance(timedelta(hours=1))
    expire_every_locator(fake)
    result, store, connector = one_cycle(fake, batch_size=200)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert result.fetched == 2_800
    assert_sink_matches(store, fake, connector)
    by_id = [soql for soql in soql_sent(fake) if soql.endswith("ORDER BY Id LIMIT 200")]
    select = f"SELECT {', '.join(connector.fields)} FROM Opportunity"
    assert by_id[0] == (
        f"{select} WHERE SystemModstamp = 2024-06-02T09:00:00.000Z ORDER BY Id LIMIT 200"
    )
    assert all(" AND Id > '006" in soql for soql in by_id[1:])
    served = max_batch_size or 200
    assert 2_500 // served <= len(by_id) <= 2_500 // served + 2
    # About one request per page of rows: no answer is asked again and again.
    assert len(query_requests(fake)) <= 2 * 2_800 // served + 10


def test_rows_moving_forward_while_a_crowded_tick_is_read_are_read_at_their_new_version() -> None:
    """Rows updated while a crowded tick is paged by Id (read already, or not yet) and a row
    added meanwhile are read after the tick, at their new versions: the sink matches the org."""
    fake = make_fake()
    ids = fake.bulk_load("Opportunity", spread(1_000, T0 - timedelta(days=1), per_second=1_000))
    fake.advance(timedelta(hours=1))
    expire_every_locator(fake)
    added: list[str] = []

    def meddle() -> None:
        for record_id in (ids[0], ids[300], ids[999]):
            fake.update_record("Opportunity", record_id, {"StageName": "Moved"})
        added.append(fake.add_record("Opportunity", {"Name": "New mid-read"}))

    # Requests: a query, its dead locator, the same again, then the tick by Id: the second
    # page by Id (ids[200:400]) is answered after the moves.
    once_on(fake, 6, meddle)
    result, store, connector = one_cycle(fake, batch_size=200)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert added
    # ids[0] was read twice (before and after its move), ids[300] and ids[999] once each.
    assert result.fetched == 1_002
    assert_sink_matches(store, fake, connector)
    stored = {t.record.id: t.record for t in store.transactions(KEY)}
    assert all(stored[i].payload["StageName"] == "Moved" for i in (ids[0], ids[300], ids[999]))


# -- secrets and configuration --------------------------------------------------------------------


def test_credentials_never_reach_logs_errors_state_or_the_database(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Client secret, refresh and access tokens appear in no log, error, state or SQLite file."""
    caplog.set_level(logging.DEBUG)
    fake = make_fake(rotate_refresh_tokens=True)
    fake.bulk_load("Opportunity", spread(500, T0 - timedelta(days=1)))
    fake.advance(timedelta(hours=1))
    once_on(fake, 2, fake.expire_access_tokens)
    refreshed: list[TokenSet] = []

    def echo(request: httpx.Request) -> httpx.Response | None:
        # A misbehaving proxy that echoes the credentials into an error body.
        if "/query" in request.url.path:
            said = f"boom {request.headers.get('authorization')} {CLIENT_SECRET}"
            return httpx.Response(500, json=[{"message": said, "errorCode": "UNKNOWN"}])
        return None

    texts: list[str] = []
    with SQLiteStore(tmp_path / "incsync.db") as store, fake.serve() as base_url:
        engine = engine_for(fake, store)
        with connect(fake, base_url, batch_size=200, on_refresh=refreshed.append) as connector:
            first = engine.run_cycle(KEY, connector)
            fake.add_fault(echo)
            fake.advance(timedelta(hours=1))
            second = engine.run_cycle(KEY, connector)
            with pytest.raises(TransientSourceError) as raised:
                list(connector.read(Window()))
            fake.clear_faults()
            fake.revoke_refresh_tokens()
            fake.expire_access_tokens()
            fake.advance(timedelta(hours=1))
            third = engine.run_cycle(KEY, connector)
            texts += [repr(connector), repr(connector.auth), str(raised.value)]
            texts.append(str(raised.value.excerpt))
        texts += [repr(engine.state(KEY)), repr(first), repr(second), repr(third)]
    assert first.outcome is Outcome.COMPLETED, first.error
    assert second.outcome is Outcome.FAILED
    assert "boom" in (second.error or "")
    assert third.outcome is Outcome.FAILED
    assert third.error_class == "AuthError"
    sentinels = {CLIENT_SECRET, REFRESH_TOKEN}
    sentinels |= {t.access_token for t in refreshed} | {t.refresh_token for t in refreshed}
    assert len(sentinels) >= 6
    texts.append(caplog.text)
    files = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.is_file())
    for secret in sentinels:
        assert all(secret not in text for text in texts), secret
        assert secret.encode() not in files


@pytest.mark.parametrize(
    "options",
    [
        {"sobject": "Opportunity; DELETE"},
        {"sobject": "Merchandise__c"},
        {"fields": ["Name", "Amount FROM Account"]},
        {"api_version": "v59"},
        {"batch_size": 100},
        {"batch_size": 2_001},
        {"access_token": "00D!token"},
    ],
)
def test_bad_configuration_is_refused(options: dict[str, Any]) -> None:
    """Names that are not API names, a missing field list, bad versions and sizes are refused."""
    with pytest.raises(ConfigurationError):
        SalesforceConnector(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, **options)


def test_a_custom_sobject_with_a_field_list_is_read() -> None:
    """Any SObject with a field list can be synced, not only Opportunity."""
    fake = make_fake()
    fake.define_sobject("Merchandise__c", {"Name": "string", "Price__c": "double"})
    fake.bulk_load(
        "Merchandise__c",
        [{"Name": f"Item {i}", "Price__c": i / 4} for i in range(40)],
        at=T0 - timedelta(days=1),
    )
    store = InMemoryStore()
    with connect(fake, sobject="Merchandise__c", fields=["Name", "Price__c"]) as connector:
        result = engine_for(fake, store).run_cycle(KEY, connector)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert_sink_matches(store, fake, connector)


# -- answers Salesforce should not give -----------------------------------------------------------


def scripted(
    *pages: object, kind: type[SalesforceConnector] = SalesforceConnector
) -> SalesforceConnector:
    """A connector whose token endpoint answers and whose query pages are ``pages`` in turn."""
    answers = list(pages)

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/services/oauth2/token":
            token = {"access_token": "00D!scripted", "instance_url": "https://na9.example.com"}
            return httpx.Response(200, json=token)
        return httpx.Response(200, json=answers.pop(0))

    return kind(
        CLIENT_ID,
        CLIENT_SECRET,
        REFRESH_TOKEN,
        options=HttpOptions(transport=httpx.MockTransport(handle), retry=FAST, sleep=no_sleep),
    )


GOOD = {"Id": "0065e0000000001AAA", "SystemModstamp": "2024-06-03T09:00:00.000+0000"}


def test_rows_without_a_usable_key_are_set_aside() -> None:
    """A row that is no object, or lacks SystemModstamp, is rejected; the good row is kept."""
    page = {"done": True, "totalSize": 3, "records": [GOOD, "junk", {"Id": "0065e0000000002AAA"}]}
    with scripted(page) as connector:
        [read] = list(connector.read(Window()))
    assert [record.id for record in read.records] == [GOOD["Id"]]
    assert [rejected.record_id for rejected in read.rejected] == [None, "0065e0000000002AAA"]


def respellings(moment: datetime) -> list[str]:
    """The same instant as Salesforce or another system may write it: Z, z, +0000, up to ±14 h."""
    local = [moment.astimezone(timezone(timedelta(hours=h))) for h in (14, -14, 5.75)]
    return [
        moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        moment.strftime("%Y-%m-%dT%H:%M:%Sz"),
        moment.strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
        *(at.isoformat() for at in local),
        local[0].strftime("%Y-%m-%dT%H:%M:%S.000%z"),
    ]


HOSTILE: list[object] = [
    {"Id": "006HOSTILE00000001", "SystemModstamp": "9999-12-31T23:00:00-08:00"},
    {"Id": "006HOSTILE00000002", "SystemModstamp": "0001-01-01T00:00:00+05:00"},
    {"Id": "006HOSTILE00000003", "SystemModstamp": "2024-06-02T25:61:00.000+0000"},
    {"Id": True, "SystemModstamp": "2024-06-02T09:00:00.000+0000"},
    {"Id": 10**40, "SystemModstamp": "2024-06-02T09:00:00.000+0000"},
    {"Id": "", "SystemModstamp": "2024-06-02T09:00:00.000+0000"},
    ["not", "an", "object"],
    "junk",
]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_hostile_rows_between_good_ones_are_set_aside_and_the_cycle_completes(
    kind: str, tmp_path: Path
) -> None:
    """Far-future and far-past dates, a malformed time, bool, huge and empty ids and non-objects
    are each set aside with a reason; every good row (its time in any spelling) is applied."""
    fake = make_fake()
    fake.bulk_load("Opportunity", spread(40, T0 - timedelta(days=1)))
    fake.advance(timedelta(hours=1))
    truth = {str(row["Id"]): row["SystemModstamp"] for row in fake.records("Opportunity")}

    def mix(request: httpx.Request) -> httpx.Response | None:
        if "/query" not in request.url.path:
            return None
        body = json.loads(fake.handle(request).read())
        records = body["records"]
        for number, raw in enumerate(records):
            spellings = respellings(parse_timestamp(raw["SystemModstamp"], "SystemModstamp"))
            raw["SystemModstamp"] = spellings[number % len(spellings)]
        for at, row in zip(range(1, 40, 5), HOSTILE, strict=False):
            records.insert(at, row)
        return httpx.Response(200, json=body)

    fake.add_fault(mix)
    with ExitStack() as stack:
        store: Store = (
            InMemoryStore()
            if kind == "memory"
            else stack.enter_context(SQLiteStore(tmp_path / "incsync.db"))
        )
        base_url = stack.enter_context(fake.serve())
        connector = stack.enter_context(connect(fake, base_url))
        engine = engine_for(fake, store)
        result = engine.run_cycle(KEY, connector)
        assert result.outcome is Outcome.COMPLETED, result.error
        assert (result.applied, result.rejected) == (40, len(HOSTILE))
        applied = {t.record.id: t.record.updated_at for t in store.transactions(KEY)}
        assert applied == truth
        rejected = engine.rejected(KEY)
        assert len(rejected) == len(HOSTILE)
        assert all(item.reason for item in rejected)
        reasons = {item.record_id: item.reason for item in rejected if item.record_id}
        assert "out of range" in reasons["006HOSTILE00000001"]
        assert "out of range" in reasons["006HOSTILE00000002"]
        fake.advance(timedelta(hours=1))
        again = engine.run_cycle(KEY, connector)
    assert again.outcome is Outcome.COMPLETED, again.error


def test_an_answer_out_of_the_order_asked_for_fails_the_cycle_loudly() -> None:
    """A page sorted by Id (a proxy or cache keyed by Id) stops the cycle with BadResponseError;
    the cursor does not pass a row not read; the next cycle, served in order, reads them all."""
    fake = make_fake()
    ids = fake.bulk_load("Opportunity", spread(500, T0 - timedelta(days=2)))
    for number, record_id in enumerate(ids[:250]):  # Id order is no longer SystemModstamp order
        at = T0 - timedelta(days=1) + timedelta(seconds=number)
        fake.update_record("Opportunity", record_id, {"StageName": "Qualification"}, at=at)
    fake.advance(timedelta(hours=1))
    pages_served = [0]

    def by_id(request: httpx.Request) -> httpx.Response | None:
        if "/query" not in request.url.path:
            return None
        pages_served[0] += 1
        if pages_served[0] != 2:
            return None
        body = json.loads(fake.handle(request).read())
        body["records"].sort(key=lambda raw: raw["Id"])
        return httpx.Response(200, json=body)

    fake.add_fault(by_id)
    store = InMemoryStore()
    engine = engine_for(fake, store)
    with fake.serve() as base_url, connect(fake, base_url, batch_size=200) as connector:
        failed = engine.run_cycle(KEY, connector)
        assert failed.outcome is Outcome.FAILED
        assert failed.error_class == "BadResponseError"
        assert "order asked for" in (failed.error or "")
        cursor = store.load(KEY).cursor
        assert cursor is not None  # the first page, in order, was applied
        stored = {t.record.id for t in store.transactions(KEY)}
        unread = [
            row["SystemModstamp"] for row in fake.records("Opportunity") if row["Id"] not in stored
        ]
        assert unread
        assert all(isinstance(at, datetime) and at >= cursor.updated_at for at in unread)
        fake.clear_faults()
        fake.advance(timedelta(hours=1))
        healed = engine.run_cycle(KEY, connector)
    assert healed.outcome is Outcome.COMPLETED, healed.error
    assert_sink_matches(store, fake, connector)


@pytest.mark.parametrize(
    "page",
    [
        {"done": False, "records": [GOOD]},
        {"done": False, "records": [GOOD], "nextRecordsUrl": "https://evil.example.com/x"},
        {"records": [GOOD]},
        [GOOD],
    ],
)
def test_a_page_that_cannot_be_followed_is_a_bad_response(page: object) -> None:
    """No usable nextRecordsUrl, or no records/done, fails the read with BadResponseError."""
    with scripted(page) as connector, pytest.raises(BadResponseError):
        list(connector.read(Window()))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda rows: rows.reverse(), "asked in Id order"),
        (lambda rows: [row.update(Id=f"row {n}") for n, row in enumerate(rows)], "no record Id"),
    ],
    ids=["descending", "no-salesforce-ids"],
)
def test_a_tick_read_by_id_that_cannot_be_paged_stops_the_read(
    damage: Callable[[list[dict[str, Any]]], object], message: str
) -> None:
    """A page read by Id whose Ids do not ascend, or hold no Id to go on from, is a bad response:
    paging from its last Id could pass rows it did not hold, or ask the same again for ever."""
    fake = make_fake()
    fake.bulk_load("Opportunity", spread(600, T0 - timedelta(days=1), per_second=600))
    expire_every_locator(fake)

    def spoil(request: httpx.Request) -> httpx.Response | None:
        if not request.url.params.get("q", "").endswith("ORDER BY Id LIMIT 200"):
            return None
        body = json.loads(fake.handle(request).read())
        damage(body["records"])
        return httpx.Response(200, json=body)

    fake.add_fault(spoil)
    with connect(fake, batch_size=200) as connector, pytest.raises(BadResponseError) as caught:
        list(connector.read(Window()))
    assert message in str(caught.value)


def test_an_instance_url_that_is_no_http_url_is_refused() -> None:
    """A token answer naming a non-http instance_url fails the cycle; nothing is sent there."""
    fake = make_fake(instance_url="ftp://files.example.com")
    store = InMemoryStore()
    with connect(fake) as connector:
        result = engine_for(fake, store).run_cycle(KEY, connector)
    assert result.outcome is Outcome.FAILED
    assert result.error_class == "BadResponseError"
    assert not query_requests(fake)


def test_other_query_errors_mid_read_are_not_requeried() -> None:
    """A 400 other than INVALID_QUERY_LOCATOR (QUERY_TIMEOUT) mid-read fails the read."""
    fake = make_fake()
    fake.bulk_load("Opportunity", spread(500, T0 - timedelta(days=1)))
    once_on(fake, 2, lambda: fake.fail_queries(1, error="QUERY_TIMEOUT"))
    with connect(fake, batch_size=200) as connector, pytest.raises(PermanentSourceError):
        list(connector.read(Window()))
    assert len(query_requests(fake)) == 2


def test_a_given_instance_url_and_access_token_skip_the_first_refresh() -> None:
    """With instance_url and a live access_token the first request needs no token refresh."""
    fake = make_fake()
    fake.bulk_load("Opportunity", spread(5, T0 - timedelta(days=1)))
    store = InMemoryStore()
    with connect(
        fake,
        instance_url="https://org.example.com",
        access_token=fake.issue_access_token(),
    ) as connector:
        result = engine_for(fake, store).run_cycle(KEY, connector)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert all(r.url.startswith("https://org.example.com/services/data/") for r in fake.requests)
    assert_sink_matches(store, fake, connector)


def test_a_subclass_rule_for_deletes_decides_the_tombstones_read() -> None:
    """A subclass's is_deleted decides which rows of an answer become tombstones."""

    class ClosedIsGone(SalesforceConnector):
        def is_deleted(self, raw: Mapping[str, Any]) -> bool:
            return raw.get("StageName") == "Closed Lost"

    lost = {**GOOD, "Id": "0065e0000000002AAA", "StageName": "Closed Lost"}
    page = {"done": True, "totalSize": 2, "records": [GOOD, lost]}
    with scripted(page, kind=ClosedIsGone) as connector:
        [read] = list(connector.read(Window()))
    assert [(record.id, record.deleted) for record in read.records] == [
        (GOOD["Id"], False),
        (lost["Id"], True),
    ]


def test_to_record_builds_the_record_of_the_row_it_is_given() -> None:
    """to_record of a row equal to one read builds an equal record holding that row itself."""
    page = {"done": True, "totalSize": 1, "records": [dict(GOOD)]}
    with scripted(page) as connector:
        [read] = list(connector.read(Window()))
        paged = read.records[0].payload
        copy = dict(GOOD)
        assert connector.to_record(paged) == read.records[0]
        assert connector.to_record(copy).payload is copy


def test_no_page_is_held_while_the_next_is_fetched() -> None:
    """Nothing of a page the read yielded is kept alive while the next page is asked for."""
    second = {**GOOD, "Id": "0065e0000000002AAA", "SystemModstamp": "2024-06-03T09:00:01.000+0000"}
    pages = [
        {
            "done": False,
            "totalSize": 2,
            "nextRecordsUrl": "/services/data/v62.0/query/01g-1",
            "records": [dict(GOOD)],
        },
        {"done": True, "totalSize": 2, "records": [second]},
    ]
    first_record: list[weakref.ref[object]] = []
    alive_at_second_request: list[bool] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/services/oauth2/token":
            token = {"access_token": "00D!scripted", "instance_url": "https://na9.example.com"}
            return httpx.Response(200, json=token)
        if first_record:
            gc.collect()
            alive_at_second_request.append(first_record[0]() is not None)
        return httpx.Response(200, json=pages.pop(0))

    connector = SalesforceConnector(
        CLIENT_ID,
        CLIENT_SECRET,
        REFRESH_TOKEN,
        options=HttpOptions(transport=httpx.MockTransport(handle), retry=FAST),
    )
    with connector:
        reader = connector.read(Window())
        first_record.append(weakref.ref(next(reader).records[0]))
        assert [record.id for record in next(reader).records] == [second["Id"]]
    assert alive_at_second_request == [False]
