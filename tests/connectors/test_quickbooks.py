"""Tests for incsync.vendors.quickbooks against the QuickBooks fake, over loopback HTTP."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from incsync import SQLiteStore, SyncEngine
from incsync.connectors.auth import TokenSet
from incsync.connectors.http import HttpOptions
from incsync.connectors.retry import RetryPolicy
from incsync.cursor import Window
from incsync.errors import ConfigurationError
from incsync.results import CycleProgress, Outcome
from incsync.testing import InMemoryStore, ManualClock
from incsync.testing.fakes import FakeQuickBooks
from incsync.testing.fakes.quickbooks import CdcCut
from incsync.vendors.quickbooks import (
    DELETES_MARK,
    QUICKBOOKS_PARTITIONS,
    QuickBooksConnector,
    quickbooks_auth,
)
from tests.helpers import Store, transactions_by_id

UTC = timezone.utc
KEY = "qbo-invoices"
ENTITY = "Invoice"
CLIENT_SECRET = "qbo-client-secret-SENTINEL-7d41e9"
NOW = datetime(2024, 6, 3, 16, 0, tzinfo=UTC)
# Spans the start of daylight saving time in the company's zone (2024-03-10, -08:00 to -07:00).
EARLY = datetime(2024, 3, 9, 12, 0, tzinfo=UTC)


def no_sleep(seconds: float) -> None:
    """Waits for nothing, so retries cost no time."""


def make_fake(*, cdc_cut: CdcCut = "documented") -> FakeQuickBooks:
    """Return a fake company on its own manual clock, with a rate limit tests do not reach."""
    return FakeQuickBooks(
        clock=ManualClock(NOW),
        client_secret=CLIENT_SECRET,
        requests_per_minute=100_000,
        cdc_cut=cdc_cut,
    )


def connect(
    fake: FakeQuickBooks,
    base_url: str | None = None,
    *,
    page_size: int = 1000,
    on_refresh: Callable[[TokenSet], None] | None = None,
    include_deletes: bool = False,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = no_sleep,
    clock: Callable[[], datetime] | None = None,
    partitions: int = QUICKBOOKS_PARTITIONS,
    entity: str = ENTITY,
) -> QuickBooksConnector:
    """Return a connector to ``fake``: over loopback HTTP at ``base_url``, else in-process.

    Its clock is the fake's unless ``clock`` gives the host one of its own.
    """
    tokens = fake.grant_tokens()
    root = base_url or "https://quickbooks.test"
    auth = quickbooks_auth(
        fake.client_id,
        fake.client_secret,
        tokens.refresh_token,
        token_url=f"{root}/oauth2/v1/tokens/bearer",
        access_token=tokens.access_token,
        expires_at=tokens.access_token_expires_at,
        on_refresh=on_refresh,
        clock=clock or fake.clock,
    )
    return QuickBooksConnector(
        fake.realm_id,
        entity,
        auth=auth,
        base_url=root,
        page_size=page_size,
        include_deletes=include_deletes,
        partitions=partitions,
        options=HttpOptions(
            retry=retry or RetryPolicy(),
            transport=None if base_url else fake.transport(),
            sleep=sleep,
            clock=clock or fake.clock,
        ),
    )


def engine_for(fake: FakeQuickBooks, store: Store) -> SyncEngine:
    """Return an engine on the fake's clock, so the safety lag is measured in the fake's time."""
    return SyncEngine(store, clock=fake.clock)


def assert_sink_matches(
    store: Store,
    fake: FakeQuickBooks,
    *,
    except_ids: frozenset[str] = frozenset(),
    deleted: frozenset[str] = frozenset(),
) -> None:
    """The sink holds exactly the fake's live entities at their latest version, and ``deleted``."""
    truth = {e["Id"]: e for e in fake.entities(ENTITY) if e["Id"] not in except_ids}
    held = transactions_by_id(store, KEY)
    assert sorted(held) == sorted([*truth, *deleted]), "records missing or extra"
    live = {record_id: dict(t.record.payload) for record_id, t in held.items()}
    assert {record_id: live[record_id] for record_id in truth} == truth
    assert {record_id for record_id, t in held.items() if t.record.deleted} == deleted


def bursty_timestamps(total: int) -> list[datetime]:
    """Return ``total`` times: one per second, with bursts of many records sharing one second."""
    bursts = {3_000: 2_500, 9_000: 1_001, 15_000: 999, 21_000: 1_000}
    times: list[datetime] = []
    second = 0
    while len(times) < total:
        moment = EARLY + timedelta(seconds=second * 37)
        times.extend([moment] * bursts.get(second, 1))
        second += 1
    return times[:total]


def query_requests(fake: FakeQuickBooks) -> list[str]:
    """Return the query statements of the reads, in order (not the engine's count check)."""
    statements = [
        httpx.URL(request.url).params["query"]
        for request in fake.requests
        if "/query" in request.url
    ]
    return [statement for statement in statements if "COUNT(*)" not in statement]


# -- full and incremental reads -----------------------------------------------------------------


def test_full_sync_of_25000_records_with_same_second_bursts_over_http() -> None:
    """A full sync over HTTP returns every one of 25,000 records once, bursts across pages too."""
    fake = make_fake()
    fake.bulk_load(ENTITY, bursty_timestamps(25_000), fields=lambda n: {"DocNumber": str(n)})
    store = InMemoryStore()
    with fake.serve() as base_url, connect(fake, base_url) as connector:
        result = engine_for(fake, store).run_cycle(KEY, connector)
    assert result.outcome is Outcome.COMPLETED
    # Read in partitions, the last is read again from where it reached: its last second twice.
    once = result.fetched - result.already_applied
    assert (once, result.applied, result.rejected) == (25_000, 25_000, 0)
    assert_sink_matches(store, fake)
    # The first two ask for the oldest and newest update, to plan the partitions.
    span, statements = query_requests(fake)[:2], query_requests(fake)[2:]
    assert [s.endswith("STARTPOSITION 1 MAXRESULTS 1") for s in span] == [True, True]
    assert all("ORDERBY MetaData.LastUpdatedTime, Id" in s or "ORDERBY Id" in s for s in statements)
    assert any("MetaData.LastUpdatedTime = '" in s for s in statements), "bursts read alone"
    assert any("MetaData.LastUpdatedTime < '" in s for s in statements), "bounded partitions"


def count_requests(fake: FakeQuickBooks, since: int = 0) -> list[str]:
    """Return every ``SELECT COUNT(*)`` statement the fake answered after request ``since``."""
    statements = [httpx.URL(r.url).params.get("query", "") for r in fake.requests[since:]]
    return [statement for statement in statements if "COUNT(*)" in statement]


def test_a_full_read_counts_once_for_its_progress_and_an_incremental_one_never() -> None:
    """A full read asks ``SELECT COUNT(*)`` once, before its first page, and every page carries
    that count, the first with the deletes' mark (a full read reads no deletes); the engine's
    progress keeps it; an incremental read spends no request on a total and has none."""
    fake = make_fake()
    ids = fake.bulk_load(ENTITY, bursty_timestamps(4_000))
    with (
        fake.serve() as base_url,
        connect(fake, base_url, page_size=300, include_deletes=True) as connector,
    ):
        pages = list(connector.read(Window()))
        assert count_requests(fake) == [f"SELECT COUNT(*) FROM {ENTITY}"]
        first_query = next(r for r in fake.requests if "/query" in r.url)
        assert "COUNT" in httpx.URL(first_query.url).params["query"]
        assert {page.total for page in pages} == {4_000}
        assert [list(page.marks) for page in pages[:2]] == [[DELETES_MARK], []]
        reports: list[CycleProgress] = []
        engine = engine_for(fake, InMemoryStore())
        assert engine.run_cycle(KEY, connector, on_progress=reports.append).applied == 4_000
        # Read in partitions, the first carries the count: the reports from its first page on.
        totals = [report.total for report in reports]
        assert set(totals[totals.index(4_000) :]) == {4_000}
        assert reports[-1].fetched == 4_000

        fake.advance(timedelta(hours=1))
        fake.update(ENTITY, ids[0], {"TotalAmt": 1})
        before = len(fake.requests)
        since = fake.clock() - timedelta(minutes=5)
        pages = list(connector.read(Window(since)))
    assert [record.id for page in pages for record in page.records] == [ids[0]]
    assert {page.total for page in pages} == {None}
    assert len(fake.requests) > before
    assert count_requests(fake, before) == []


def test_pages_are_in_ascending_time_and_times_are_aware_utc_across_dst() -> None:
    """Pages never go back in time, and local offsets on both sides of DST read as UTC."""
    fake = make_fake()
    fake.bulk_load(ENTITY, bursty_timestamps(3_000))
    with connect(fake, page_size=200) as connector:
        pages = list(connector.read(Window()))
    records = [record for page in pages for record in page.records]
    assert len(records) == len({record.id for record in records}) == 3_000
    for earlier, later in itertools.pairwise(pages):
        assert max(r.updated_at for r in earlier.records) <= min(
            r.updated_at for r in later.records
        )
    offsets = {r.payload["MetaData"]["LastUpdatedTime"][-6:] for r in records}
    assert offsets == {"-08:00", "-07:00"}
    assert min(r.updated_at for r in records) == EARLY
    assert all(r.updated_at.tzinfo is UTC for r in records)


def test_incremental_cycles_pick_up_updates_voids_and_same_second_bursts() -> None:
    """Later cycles add new records and latest versions, voids included, with nothing lost."""
    fake = make_fake()
    ids = fake.bulk_load(ENTITY, bursty_timestamps(4_000), fields=lambda n: {"TotalAmt": n})
    store = InMemoryStore()
    engine = engine_for(fake, store)
    with fake.serve() as base_url, connect(fake, base_url, page_size=300) as connector:
        assert engine.run_cycle(KEY, connector).outcome is Outcome.COMPLETED
        assert_sink_matches(store, fake)
        for cycle in range(3):
            fake.advance(timedelta(hours=1))
            burst_second = fake.clock().replace(microsecond=0)
            for record_id in ids[cycle * 500 : cycle * 500 + 450]:  # a burst in one second
                fake.update(ENTITY, record_id, {"TotalAmt": -cycle}, updated_at=burst_second)
            fake.void(ENTITY, ids[-1 - cycle])
            fake.bulk_load(ENTITY, [burst_second] * 320)
            fake.advance(timedelta(minutes=10))
            result = engine.run_cycle(KEY, connector)
            assert result.outcome is Outcome.COMPLETED
            assert result.applied == 450 + 1 + 320
            assert_sink_matches(store, fake)
    voided = transactions_by_id(store, KEY)[ids[-1]].record
    assert (voided.deleted, voided.payload["PrivateNote"]) == (False, "Voided")


# -- records that change while a read pages -----------------------------------------------------


def mutate_on_query(fake: FakeQuickBooks, at: set[int], change: Callable[[int], None]) -> None:
    """Call ``change(n)`` just before the fake answers its n-th query request, for n in ``at``."""
    seen = [0]

    def fault(request: httpx.Request) -> httpx.Response | None:
        if "/query" in request.url.path:
            seen[0] += 1
            if seen[0] in at:
                change(seen[0])
        return None

    fake.add_fault(fault)


def test_records_updated_between_pages_are_neither_skipped_nor_duplicated() -> None:
    """Records updated while a sync pages (read and unread ones) all end at their latest version."""
    fake = make_fake()
    ids = fake.bulk_load(ENTITY, bursty_timestamps(6_000))

    def change(n: int) -> None:
        # Records before and after the read's position move to now: offsets shift under the read.
        for record_id in ids[n * 40 : n * 40 + 25] + ids[-n * 30 :][:10]:
            fake.update(ENTITY, record_id, {"Memo": f"changed at query {n}"})
        fake.add(ENTITY, {"Memo": f"new at query {n}"})

    mutate_on_query(fake, set(range(2, 30)), change)
    store = InMemoryStore()
    with fake.serve() as base_url, connect(fake, base_url, page_size=250) as connector:
        result = engine_for(fake, store).run_cycle(KEY, connector)
    assert result.outcome is Outcome.COMPLETED
    assert_sink_matches(store, fake)
    assert len(fake.entities(ENTITY)) == 6_000 + 28


def test_a_burst_read_by_offset_survives_rows_leaving_the_second() -> None:
    """Rows of a large same-second burst updated mid-read do not make later rows of it skipped."""
    fake = make_fake()
    burst = fake.bulk_load(ENTITY, [EARLY] * 1_000)
    fake.bulk_load(ENTITY, [EARLY + timedelta(seconds=s) for s in range(1, 50)])

    def change(n: int) -> None:
        # Take rows from the start of the burst (already read): the offset of the next page is
        # then past rows that were never read.
        for record_id in burst[(n - 3) * 30 : (n - 3) * 30 + 30]:
            fake.update(ENTITY, record_id, {"Memo": "moved"})

    mutate_on_query(fake, {3, 4, 5}, change)
    with connect(fake, page_size=100) as connector:
        records = [r for page in connector.read(Window()) for r in page.records]
    got = {(r.id, r.updated_at) for r in records}
    assert {r.id for r in records} == {e["Id"] for e in fake.entities(ENTITY)}
    assert len(records) == len(got)
    moved = {r.id for r in records if r.payload.get("Memo") == "moved"}
    assert moved == set(burst[:90])


# -- throttling, token expiry, malformed records, outages ---------------------------------------


@pytest.mark.parametrize("body_format", ["json", "xml"])
def test_throttling_mid_sync_waits_and_completes(body_format: str) -> None:
    """A 429 (Fault 3001 in JSON or XML) mid-sync is waited out and the cycle completes."""
    fake = make_fake()
    fake.bulk_load(ENTITY, bursty_timestamps(1_200))
    slept: list[float] = []
    mutate_on_query(
        fake,
        {3},
        lambda _n: fake.throttle_next(2, body_format="xml" if body_format == "xml" else "json"),
    )
    store = InMemoryStore()
    with (
        fake.serve() as base_url,
        # One reader, whose waits are counted; with partitions the others wait at the gate too
        # (test_quickbooks_partitions.py).
        connect(fake, base_url, page_size=200, sleep=slept.append, partitions=1) as connector,
    ):
        result = engine_for(fake, store).run_cycle(KEY, connector)
    assert result.outcome is Outcome.COMPLETED
    assert [r.status for r in fake.requests].count(429) == 2
    assert len(slept) == 2
    assert_sink_matches(store, fake)


def test_access_token_expiry_mid_sync_refreshes_and_rotation_reaches_the_callback() -> None:
    """An access token expiring mid-sync is refreshed; rotated refresh tokens reach the host."""
    fake = make_fake()
    fake.bulk_load(ENTITY, bursty_timestamps(1_500))
    refreshed: list[TokenSet] = []
    mutate_on_query(fake, {3, 6}, lambda _n: fake.expire_access_tokens())
    store = InMemoryStore()
    with (
        fake.serve() as base_url,
        # One reader: tokens revoked twice within a few requests would catch a concurrent
        # reader's replay with the second token (see the partitioned test below).
        connect(
            fake, base_url, page_size=200, on_refresh=refreshed.append, partitions=1
        ) as connector,
    ):
        first_refresh = connector.auth.secrets() if connector.auth else ()
        result = engine_for(fake, store).run_cycle(KEY, connector)
    assert result.outcome is Outcome.COMPLETED
    assert_sink_matches(store, fake)
    assert len(refreshed) == 2
    assert all(tokens.rotated for tokens in refreshed)
    assert refreshed[0].refresh_token != refreshed[1].refresh_token
    assert refreshed[0].refresh_token not in first_refresh
    assert [r.status for r in fake.requests].count(401) == 2


def corrupt_once(fake: FakeQuickBooks, record_id: str, value: object) -> None:
    """Make the fake send ``record_id`` with ``MetaData.LastUpdatedTime`` set to ``value``."""

    def fault(request: httpx.Request) -> httpx.Response | None:
        if "/query" not in request.url.path:
            return None
        response = fake.handle(request)
        body = json.loads(response.content)
        for entity in body.get("QueryResponse", {}).get(ENTITY, []):
            if entity["Id"] == record_id:
                entity["MetaData"]["LastUpdatedTime"] = value
        return httpx.Response(response.status_code, json=body)

    fake.add_fault(fault)


def test_a_malformed_record_is_set_aside_and_the_cycle_completes() -> None:
    """An entity with a garbage LastUpdatedTime is rejected with its id; the others all arrive."""
    fake = make_fake()
    ids = fake.bulk_load(ENTITY, bursty_timestamps(700))
    corrupt_once(fake, ids[350], "last tuesday")
    store = InMemoryStore()
    engine = engine_for(fake, store)
    with connect(fake, page_size=100) as connector:
        result = engine.run_cycle(KEY, connector)
    assert result.outcome is Outcome.COMPLETED
    assert result.rejected >= 1
    assert {r.record_id for r in engine.rejected(KEY)} == {ids[350]}
    assert_sink_matches(store, fake, except_ids=frozenset({ids[350]}))


def test_a_500_storm_fails_the_cycle_keeps_the_cursor_and_the_next_cycle_recovers() -> None:
    """5xx on every attempt fails the cycle with the cursor unchanged; the next cycle catches up."""
    fake = make_fake()
    ids = fake.bulk_load(ENTITY, bursty_timestamps(800))
    store = InMemoryStore()
    engine = engine_for(fake, store)
    retry = RetryPolicy(max_attempts=3, base_delay=0.0)
    with connect(fake, page_size=200, retry=retry) as connector:
        assert engine.run_cycle(KEY, connector).outcome is Outcome.COMPLETED
        cursor = engine.state(KEY).cursor
        fake.advance(timedelta(hours=1))
        for record_id in ids[:300]:
            fake.update(ENTITY, record_id, {"Memo": "after the storm"})

        def storm(request: httpx.Request) -> httpx.Response | None:
            if "/query" in request.url.path:
                return httpx.Response(503, json={"Fault": {"Error": [{"code": "10000"}]}})
            return None

        fake.add_fault(storm)
        fake.advance(timedelta(minutes=10))
        failed = engine.run_cycle(KEY, connector)
        assert failed.outcome is Outcome.FAILED
        assert engine.state(KEY).cursor == cursor
        assert [r.status for r in fake.requests].count(503) == 3
        fake.clear_faults()
        fake.advance(timedelta(hours=2))
        recovered = engine.run_cycle(KEY, connector)
    assert recovered.outcome is Outcome.COMPLETED
    assert recovered.applied == 300
    assert_sink_matches(store, fake)


# -- secrets ------------------------------------------------------------------------------------


def test_credentials_never_reach_logs_errors_state_or_the_database(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Client secret, refresh and access tokens appear in no log, error, state or SQLite file."""
    caplog.set_level(logging.DEBUG)
    fake = make_fake()
    fake.bulk_load(ENTITY, bursty_timestamps(600))
    refreshed: list[TokenSet] = []
    mutate_on_query(fake, {2}, lambda _n: fake.expire_access_tokens())
    sentinels: set[str] = {CLIENT_SECRET}

    def echo(request: httpx.Request) -> httpx.Response | None:
        # A misbehaving proxy that echoes the request's credentials into an error body.
        if "/query" in request.url.path:
            return httpx.Response(500, text=f"boom {request.headers.get('authorization')}")
        return None

    with SQLiteStore(tmp_path / "incsync.db") as store:
        engine = engine_for(fake, store)
        with connect(
            fake,
            page_size=100,
            on_refresh=refreshed.append,
            retry=RetryPolicy(max_attempts=2, base_delay=0.0),
        ) as connector:
            sentinels.update(connector.secrets())
            first = engine.run_cycle(KEY, connector)
            sentinels.update(connector.secrets())
            fake.add_fault(echo)
            fake.advance(timedelta(hours=1))
            second = engine.run_cycle(KEY, connector)
            sentinels.update(connector.secrets())
            state_text = repr(engine.state(KEY))
        assert first.outcome is Outcome.COMPLETED
        assert second.outcome is Outcome.FAILED
    sentinels.update(t.access_token for t in refreshed)
    sentinels.update(t.refresh_token for t in refreshed)
    assert len(sentinels) >= 5
    texts = [caplog.text, repr(first), repr(second), str(second.error), state_text]
    files = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.is_file())
    for secret in sentinels:
        assert all(secret not in text for text in texts)
        assert secret.encode() not in files
    assert "boom" in str(second.error)


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("realm_id", "entity", "page_size"),
    [
        ("93 41", "Invoice", 10),
        ("1", "Invoice; DROP", 10),
        ("1", "Invoice", 1001),
        ("1", "Invoice", 1),
    ],
)
def test_bad_configuration_is_refused(realm_id: str, entity: str, page_size: int) -> None:
    """A realm id or entity that is not a plain name, or a page size outside 2-1,000, is refused."""
    auth = quickbooks_auth("id", "secret", "refresh")
    with pytest.raises(ConfigurationError):
        QuickBooksConnector(realm_id, entity, auth=auth, page_size=page_size)


def test_requests_ask_for_json_with_minorversion() -> None:
    """Every query asks for JSON and carries the minorversion."""
    fake = make_fake()
    fake.bulk_load(ENTITY, [EARLY])
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response | None:
        seen.append(request)
        return None

    fake.add_fault(record)
    with connect(fake) as connector:
        assert len([r for p in connector.read(Window()) for r in p.records]) == 1
    assert seen
    assert all(r.headers["accept"] == "application/json" for r in seen)
    assert all(r.url.params["minorversion"] == "75" for r in seen)
