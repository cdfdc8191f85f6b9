"""RestConnector against FakeGenericRest over loopback HTTP: every scenario ends with the sink
equal to the fake's ground truth (live items by payload, deleted ones as tombstones)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest

from incsync import SQLiteStore, SyncEngine, SyncPolicy
from incsync.connectors._rest_config import RestConfig
from incsync.connectors.auth import BearerToken
from incsync.connectors.http import HttpOptions
from incsync.connectors.rest import MAX_BURST_PASSES, RestConnector
from incsync.connectors.retry import RetryPolicy
from incsync.cursor import Window
from incsync.errors import AuthError, BadResponseError
from incsync.results import CycleResult, Outcome
from incsync.testing import InMemoryStore
from incsync.testing.fakes.generic_rest import FakeGenericRest, Format, Paging
from incsync.timestamps import UTC
from tests.helpers import Store, transactions_by_id

KEY = "generic-items"
T0 = datetime(2024, 5, 1, tzinfo=UTC)
SECRET_NAME = "GENERIC_API_TOKEN"
STYLES: tuple[Paging, ...] = ("offset", "page", "cursor", "next_link")


def no_sleep(_seconds: float) -> None:
    """Never wait in tests."""


def config_for(
    paging: Paging,
    *,
    size: int = 100,
    timestamp_format: Format = "iso8601",
    ordered: bool = True,
    auth: dict[str, Any] | None = None,
    filter_format: str | None = None,
) -> RestConfig:
    """The configuration that reads the fake with ``paging``, as a user would write it.

    ``filter_format`` writes the filter another way than the records' ``timestamp_format``.
    """
    paging_table: dict[str, Any] = {"style": paging, "size": size}
    if paging == "cursor":
        paging_table["cursor_path"] = "meta.next_cursor"
    if paging == "next_link":
        paging_table["next_link_path"] = "links.next"
    if paging == "none":
        paging_table["size_param"] = "limit"
    return RestConfig.from_mapping(
        {
            "base_url": "http://placeholder.invalid",
            "path": "/v1/items",
            "ordered": ordered,
            "params": {"include_deleted": True},
            "filter": {"param": "updated_since", "format": filter_format or timestamp_format},
            "records": {
                "path": "data.items",
                "id": "id",
                "updated_at": "meta.updated_at",
                "updated_at_format": timestamp_format,
            },
            "tombstone": {"field": "status", "values": ["deleted"]},
            "auth": auth or {"kind": "bearer", "secret": SECRET_NAME},
            "paging": paging_table,
        }
    )


@contextmanager
def serving(
    fake: FakeGenericRest,
    config: RestConfig,
    *,
    token: str | None = None,
    sleep: Callable[[float], None] = no_sleep,
    retry: RetryPolicy | None = None,
) -> Iterator[RestConnector]:
    """A connector reading ``fake`` over real loopback HTTP."""
    with fake.serve() as base_url:
        served = attrs.evolve(config, base_url=base_url)
        secrets = {SECRET_NAME: fake.token if token is None else token}
        connector = RestConnector(
            served,
            secrets=secrets,
            options=HttpOptions(sleep=sleep, clock=fake.clock, retry=retry or RetryPolicy()),
        )
        with closing(connector):
            yield connector


def engine(store: Store, fake: FakeGenericRest) -> SyncEngine:
    """An engine on the fake's clock, with a one-minute safety lag."""
    return SyncEngine(store, clock=fake.clock, policy=SyncPolicy(safety_lag=timedelta(minutes=1)))


def assert_matches(store: Store, fake: FakeGenericRest) -> None:
    """The sink holds every live item's latest version once, and a tombstone per deleted one."""
    held = transactions_by_id(store, KEY)
    live = {key: t.record.payload for key, t in held.items() if not t.record.deleted}
    assert live == fake.ground_truth()
    assert {key for key, t in held.items() if t.record.deleted} == fake.deleted()


def run(sync: SyncEngine, connector: RestConnector) -> CycleResult:
    """Run one cycle and return its result."""
    return sync.run_cycle(KEY, connector)


def completes_while(
    fake: FakeGenericRest, paging: Paging, meddle: Callable[[httpx.Request], None]
) -> None:
    """One full cycle, ``meddle`` called before each request is answered, reads everything."""
    fake.add_fault(meddle)
    store = InMemoryStore()
    with serving(fake, config_for(paging)) as connector:
        result = run(engine(store, fake), connector)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert_matches(store, fake)


def later(fake: FakeGenericRest, minutes: int = 10) -> None:
    """Move the fake's clock on."""
    fake.clock.advance(timedelta(minutes=minutes))


def test_full_sync_of_25000_records_by_cursor() -> None:
    """A full sync of 25,000 items by cursor imports each once; no filter on a first read."""
    fake = FakeGenericRest(paging="cursor", max_page_size=500)
    fake.load(25_000, T0)
    fake.clock.set(T0 + timedelta(days=1))
    store = InMemoryStore()
    with serving(fake, config_for("cursor", size=500)) as connector:
        result = run(engine(store, fake), connector)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert (result.fetched, result.applied, result.rejected) == (25_000, 25_000, 0)
    assert "updated_since" not in fake.requests[0].url
    assert len(fake.requests) == 50
    assert_matches(store, fake)


@pytest.mark.parametrize("paging", STYLES)
def test_incremental_cycles_with_updates_deletes_and_bursts(paging: Paging, store: Store) -> None:
    """Updates, deletes (tombstones) and a 250-item same-second burst over 100-item pages arrive.

    The second and third cycles bring exactly what changed, and the burst straddles pages.
    """
    fake = FakeGenericRest(paging=paging)
    ids = fake.load(450, T0)
    fake.clock.set(T0 + timedelta(hours=1))
    sync = engine(store, fake)
    with serving(fake, config_for(paging)) as connector:
        assert run(sync, connector).outcome is Outcome.COMPLETED
        assert_matches(store, fake)

        later(fake)
        for item_id in ids[:30]:
            fake.update(item_id, {"amount": 2_000})
        for item_id in ids[30:40]:
            fake.delete(item_id)
        for number in range(250):
            fake.create({"name": f"burst {number}", "amount": number})
        later(fake)
        second = run(sync, connector)
        assert second.outcome is Outcome.COMPLETED, second.error
        assert second.applied == 30 + 10 + 250
        assert_matches(store, fake)

        later(fake)
        for item_id in ids[40:45]:
            fake.update(item_id, {"name": "renamed"})
        fake.delete(ids[45])
        later(fake)
        third = run(sync, connector)
        assert third.outcome is Outcome.COMPLETED, third.error
        assert third.applied == 6
        assert_matches(store, fake)


@pytest.mark.parametrize("paging", STYLES)
def test_changes_while_a_sync_pages_lose_nothing(paging: Paging) -> None:
    """Items updated or deleted between pages shift offsets; nothing is skipped.

    After the third request, items not read yet and items read already are updated (both move to
    the end of the order), and read ones are deleted.
    """
    fake = FakeGenericRest(paging=paging)
    ids = fake.load(1_200, T0)
    fake.clock.set(T0 + timedelta(hours=1))
    calls = {"n": 0}

    def meddle(request: httpx.Request) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            for item_id in ids[:50]:
                fake.delete(item_id)
            for item_id in ids[600:650]:
                fake.update(item_id, {"amount": 99})
            for item_id in ids[100:110]:
                fake.update(item_id, {"amount": 77})

    completes_while(fake, paging, meddle)


@pytest.mark.parametrize("paging", ["offset", "page"])
def test_a_burst_paged_by_offset_survives_items_leaving_it(paging: Paging) -> None:
    """A 350-item burst in one second is paged by offset; items leaving it mid-read lose none.

    While the burst is read, items at its start are updated (they leave the second and every
    later burst item moves back an offset); the connector reads the burst again and finds the
    skipped ones.
    """
    fake = FakeGenericRest(paging=paging)
    ids = fake.load(350, T0, step=timedelta(0))
    fake.clock.set(T0 + timedelta(hours=1))
    calls = {"n": 0}

    def meddle(request: httpx.Request) -> None:
        calls["n"] += 1
        if calls["n"] in (3, 4):  # between two pages of the burst read by offset
            for item_id in ids[calls["n"] * 5 : calls["n"] * 5 + 5]:
                fake.update(item_id, {"amount": 5})

    completes_while(fake, paging, meddle)


@pytest.mark.parametrize("timestamp_format", ["epoch_seconds", "epoch_ms"])
def test_epoch_timestamps_in_filter_and_records(timestamp_format: Format) -> None:
    """Epoch seconds and milliseconds are written in the filter and read from records alike."""
    fake = FakeGenericRest(
        paging="offset", timestamp_format=timestamp_format, precision=timedelta(milliseconds=1)
    )
    ids = fake.load(120, T0, step=timedelta(milliseconds=1500))
    fake.clock.set(T0 + timedelta(hours=1))
    store = InMemoryStore()
    sync = engine(store, fake)
    config = config_for("offset", timestamp_format=timestamp_format)
    with serving(fake, config) as connector:
        assert run(sync, connector).outcome is Outcome.COMPLETED
        later(fake)
        fake.update(ids[3], {"amount": 3})
        later(fake)
        second = run(sync, connector)
    assert second.outcome is Outcome.COMPLETED
    assert second.applied == 1
    assert fake.requests[-1].url.split("updated_since=")[1].split("&")[0].isdigit()
    assert_matches(store, fake)


def test_throttling_mid_sync_is_waited_out() -> None:
    """429s with Retry-After mid-sync are waited out (the injected sleep moves the fake's clock)."""
    fake = FakeGenericRest(paging="cursor", requests_per_second=3)
    fake.load(1_000, T0)
    fake.clock.set(T0 + timedelta(hours=1))
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        fake.clock.advance(timedelta(seconds=seconds))

    store = InMemoryStore()
    with serving(fake, config_for("cursor"), sleep=sleep) as connector:
        result = run(engine(store, fake), connector)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert sum(1 for r in fake.requests if r.status == 429) >= 2
    assert waits
    assert all(wait >= 1 for wait in waits)
    assert_matches(store, fake)


def test_a_bad_token_is_an_auth_error() -> None:
    """A rejected token fails the cycle with AuthError, once, without retrying."""
    fake = FakeGenericRest(paging="offset")
    fake.load(10, T0)
    store = InMemoryStore()
    with serving(fake, config_for("offset"), token="wrong-token") as connector:
        with pytest.raises(AuthError):
            list(connector.read(Window()))
        result = run(engine(store, fake), connector)
    assert result.outcome is Outcome.FAILED
    assert result.error_class == "AuthError"
    assert sum(1 for r in fake.requests if r.status == 401) == 2
    assert transactions_by_id(store, KEY) == {}


@pytest.mark.parametrize(
    ("auth_mode", "auth"),
    [
        ("header", {"kind": "api_key_header", "secret": SECRET_NAME, "header": "X-API-Key"}),
        ("query", {"kind": "api_key_query", "secret": SECRET_NAME, "param": "api_key"}),
    ],
)
def test_api_key_in_a_header_or_the_query(auth_mode: Any, auth: dict[str, Any]) -> None:
    """An API key travels where the configuration says, next-link pages included."""
    fake = FakeGenericRest(paging="next_link", auth=auth_mode)
    fake.load(250, T0)
    fake.clock.set(T0 + timedelta(hours=1))
    store = InMemoryStore()
    with serving(fake, config_for("next_link", auth=auth)) as connector:
        result = run(engine(store, fake), connector)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert_matches(store, fake)


def test_a_malformed_record_is_set_aside_and_the_cycle_completes(store: Store) -> None:
    """Items without an id or with an unreadable time are set aside with the reason; others land."""
    fake = FakeGenericRest(paging="offset")
    fake.load(150, T0)
    fake.add_malformed({"name": "no id", "meta": {"updated_at": "2024-05-01T00:00:30Z"}}, T0)
    fake.add_malformed({"id": "x-1", "meta": {"updated_at": "yesterday"}}, T0)
    fake.clock.set(T0 + timedelta(hours=1))
    sync = engine(store, fake)
    with serving(fake, config_for("offset")) as connector:
        result = run(sync, connector)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert result.rejected == 2
    reasons = {rejected.record_id: rejected.reason for rejected in sync.rejected(KEY)}
    assert reasons.keys() == {None, "x-1"}
    assert "'id'" in reasons[None]
    assert "meta.updated_at" in reasons["x-1"]
    assert "yesterday" in reasons["x-1"]
    assert_matches(store, fake)


def test_a_500_storm_fails_the_cycle_keeps_the_cursor_and_the_next_recovers(store: Store) -> None:
    """5xx on every attempt exhausts the retries: FAILED, cursor unchanged; the next cycle heals."""
    fake = FakeGenericRest(paging="page")
    ids = fake.load(300, T0)
    fake.clock.set(T0 + timedelta(hours=1))
    sync = engine(store, fake)
    retry = RetryPolicy(max_attempts=3, base_delay=0.0)
    with serving(fake, config_for("page"), retry=retry) as connector:
        assert run(sync, connector).outcome is Outcome.COMPLETED
        cursor = sync.state(KEY).cursor
        later(fake)
        for item_id in ids[:20]:
            fake.update(item_id, {"amount": 1})
        fake.add_fault(lambda _request: httpx.Response(503, text="upstream unavailable"))
        failed = run(sync, connector)
        assert failed.outcome is Outcome.FAILED
        assert failed.error_class == "TransientSourceError"
        assert sync.state(KEY).cursor == cursor
        assert sum(1 for r in fake.requests if r.status == 503) == 3
        fake.clear_faults()
        recovered = run(sync, connector)
    assert recovered.outcome is Outcome.COMPLETED, recovered.error
    assert recovered.applied == 20
    assert_matches(store, fake)


def test_a_next_link_to_another_host_is_not_followed() -> None:
    """A next link leaving the API's host is refused, so the credential never travels there."""
    fake = FakeGenericRest(paging="next_link")
    fake.load(150, T0)

    def elsewhere(request: httpx.Request) -> httpx.Response | None:
        if "cursor" in request.url.params:
            return None
        items = [fake.render(item) for item in list(fake._items.values())[:100]]
        body = {"data": {"items": items}, "links": {"next": "http://evil.invalid/v1/items"}}
        return httpx.Response(200, json=body)

    fake.add_fault(elsewhere)
    with serving(fake, config_for("next_link")) as connector, pytest.raises(BadResponseError):
        list(connector.read(Window()))
    assert len(fake.requests) == 1


def test_secrets_never_reach_logs_errors_state_or_the_database(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The token appears in no log, error, state, result or database byte, even when echoed."""
    caplog.set_level(logging.DEBUG)
    fake = FakeGenericRest(paging="offset", token="SENTINEL-generic-token-93c1")
    fake.load(150, T0)
    fake.clock.set(T0 + timedelta(hours=1))

    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text=f"boom {request.headers.get('authorization')}")

    config = config_for("offset")
    assert fake.token not in repr(config)
    with SQLiteStore(tmp_path / "incsync.db") as store:
        sync = engine(store, fake)
        with serving(fake, config, retry=RetryPolicy(max_attempts=2, base_delay=0.0)) as connector:
            assert fake.token not in repr(connector.auth)
            first = run(sync, connector)
            fake.add_fault(echo)
            later(fake)
            second = run(sync, connector)
            state_text = repr(sync.state(KEY))
    assert first.outcome is Outcome.COMPLETED
    assert second.outcome is Outcome.FAILED
    assert "boom" in str(second.error)
    texts = [caplog.text, repr(first), repr(second), str(second.error), state_text]
    assert all(fake.token not in text for text in texts)
    files = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.is_file())
    assert fake.token.encode() not in files


def test_an_explicit_auth_wins_over_the_configured_secret() -> None:
    """A host may hand its own auth flow; the configured secret is then not looked up."""
    fake = FakeGenericRest(paging="none")
    fake.load(30, T0)
    fake.clock.set(T0 + timedelta(hours=1))
    with fake.serve() as base_url:
        config = attrs.evolve(config_for("none"), base_url=base_url)
        connector = RestConnector(config, auth=BearerToken(fake.token), secrets={})
        with closing(connector):
            pages = list(connector.read(Window()))
    assert sum(len(page.records) for page in pages) == 30
    assert "limit=100" in fake.requests[0].url


def test_ordered_pages_come_in_ascending_time() -> None:
    """An ordered source's pages never go back in time, so per-page checkpoints are safe."""
    fake = FakeGenericRest(paging="offset")
    fake.load(500, T0, step=timedelta(seconds=0.5))
    with serving(fake, config_for("offset")) as connector:
        keys = [record.key for page in connector.read(Window()) for record in page.records]
    assert len(keys) == 500
    assert [key[0] for key in keys] == sorted(key[0] for key in keys)


def test_an_unordered_source_sorted_by_id_is_read_whole_by_offset(store: Store) -> None:
    """ordered = false over an API sorted by id: offsets hold while items change; cycles agree.

    Items change between pages (their place in an id order does not move); the cursor moves only
    when the cycle completes, and the next cycle brings the changes.
    """
    fake = FakeGenericRest(paging="offset", sort="id")
    ids = fake.load(600, T0)
    fake.clock.set(T0 + timedelta(hours=1))
    calls = {"n": 0}

    def meddle(request: httpx.Request) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            for item_id in ids[:20] + ids[500:520]:
                fake.update(item_id, {"amount": 42})

    fake.add_fault(meddle)
    sync = engine(store, fake)
    with serving(fake, config_for("offset", ordered=False)) as connector:
        first = run(sync, connector)
        assert first.outcome is Outcome.COMPLETED, first.error
        # Items 0-19 changed after they were read: the next cycle brings their new versions.
        assert transactions_by_id(store, KEY).keys() == fake.ground_truth().keys()
        later(fake)
        fake.clear_faults()
        fake.delete(ids[300])
        later(fake)
        second = run(sync, connector)
    assert second.outcome is Outcome.COMPLETED, second.error
    assert second.applied == 1 + 20  # the delete, and the items changed after page 3 began
    assert_matches(store, fake)


def test_ordered_true_over_an_unsorted_api_fails_loudly() -> None:
    """A source said to be ordered that is not fails the cycle instead of skipping records."""
    fake = FakeGenericRest(paging="cursor", sort="id")
    ids = fake.load(300, T0)
    fake.clock.set(T0 + timedelta(hours=1))
    fake.update(ids[0], {"amount": 1})  # now the newest, yet first in id order
    store = InMemoryStore()
    with serving(fake, config_for("cursor")) as connector:
        result = run(engine(store, fake), connector)
    assert result.outcome is Outcome.FAILED
    assert result.error_class == "BadResponseError"
    assert "set ordered = false" in str(result.error)


# Rows whose times are spelled every way ISO 8601 allows, at the moment each means: applied.
GOOD_SPELLINGS: dict[str, tuple[object, str, datetime]] = {
    "lower-z": ("lower-z", "2024-05-01T00:00:41z", T0 + timedelta(seconds=41)),
    "plus-0000": ("plus-0000", "2024-05-01T00:00:42+0000", T0 + timedelta(seconds=42)),
    "east-14h": ("east-14h", "2024-05-01T14:00:43+14:00", T0 + timedelta(seconds=43)),
    "west-14h": ("west-14h", "2024-04-30T10:00:44-14:00", T0 + timedelta(seconds=44)),
    str(2**70): (2**70, "2024-05-01T00:00:45Z", T0 + timedelta(seconds=45)),
}
# Rows that cannot become records, each with what its reason names, between the good ones.
HOSTILE: list[tuple[object, str]] = [
    ({"id": "far-future", "meta": {"updated_at": "9999-12-31T23:00:00-08:00"}}, "out of range"),
    ({"id": "far-past", "meta": {"updated_at": "0001-01-01T00:00:00+05:00"}}, "out of range"),
    ({"id": "bad-time", "meta": {"updated_at": "2024-13-45T99:00:00Z"}}, "meta.updated_at"),
    ({"id": True, "meta": {"updated_at": "2024-05-01T00:00:41Z"}}, "id"),
    ({"id": "", "meta": {"updated_at": "2024-05-01T00:00:42Z"}}, "id"),
    ({"id": 1e300, "meta": {"updated_at": "2024-05-01T00:00:43Z"}}, "id"),
    (["not", "an", "object"], "object"),
    ("just text", "object"),
    (None, "object"),
]


@pytest.mark.parametrize("paging", STYLES)
def test_hostile_rows_are_set_aside_and_every_good_row_applied(
    paging: Paging, store: Store
) -> None:
    """Far-off dates, bad times and ids, and non-objects in one answer are each set aside once.

    Every good row lands, whichever way its time is spelled (``z``, ``+0000``, ±14 h offsets, a
    huge integer id kept as its digits), and the cycle completes; a page boundary inside the
    hostile rows' second makes re-queries return them again, yet each is reported once.
    """
    fake = FakeGenericRest(paging=paging)
    fake.load(40, T0)
    for index, (row_id, written, moment) in enumerate(GOOD_SPELLINGS.values()):
        fake.add_malformed({"id": row_id, "meta": {"updated_at": written}, "n": index}, moment)
    for raw, _ in HOSTILE:
        fake.add_malformed(raw, T0 + timedelta(seconds=42))
    fake.load(20, T0 + timedelta(seconds=50))
    fake.clock.set(T0 + timedelta(hours=1))
    sync = engine(store, fake)
    with serving(fake, config_for(paging, size=20)) as connector:
        result = run(sync, connector)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert result.rejected == len(HOSTILE)
    assert result.applied == 60 + len(GOOD_SPELLINGS)
    rejected = sync.rejected(KEY)
    assert len(rejected) == len(HOSTILE)
    by_excerpt = {entry.raw: entry.reason for entry in rejected}
    for raw, named in HOSTILE:
        assert named in by_excerpt[repr(raw)], (raw, by_excerpt[repr(raw)])
    held = transactions_by_id(store, KEY)
    for row_id, (_, _, moment) in GOOD_SPELLINGS.items():
        assert held[row_id].record.updated_at == moment
    live = {key: t.record.payload for key, t in held.items() if key not in GOOD_SPELLINGS}
    assert live == fake.ground_truth()


@pytest.mark.parametrize("paging", ["offset", "page"])
def test_an_ordered_offset_source_answering_by_id_fails_loudly_and_loses_nothing(
    paging: Paging,
) -> None:
    """ordered = true over an API sorted by id: the cycle fails with BadResponseError.

    The first page is in time order by chance and is checkpointed; the re-query from its newest
    time meets the row updated since (first by id, newest by time) and stops. The cursor stays
    before every row not read, and the error says what to do; doing it reads everything.
    """
    fake = FakeGenericRest(paging=paging, sort="id")
    ids = fake.load(300, T0)
    fake.clock.set(T0 + timedelta(hours=1))
    fake.update(ids[150], {"amount": 1})
    store = InMemoryStore()
    sync = engine(store, fake)
    with serving(fake, config_for(paging)) as connector:
        result = run(sync, connector)
        with pytest.raises(BadResponseError) as raised:
            list(connector.read(Window()))
    assert result.outcome is Outcome.FAILED
    assert result.error_class == "BadResponseError"
    assert "set ordered = false and reset the source" in str(result.error)
    assert "order asked for" in str(result.error)
    assert raised.value.vendor == "rest"
    cursor = sync.state(KEY).cursor
    assert cursor is not None
    assert cursor.updated_at < T0 + timedelta(seconds=100)  # ids[100:] are not read yet
    assert len(transactions_by_id(store, KEY)) <= 100

    sync.reset(KEY)
    with serving(fake, config_for(paging, ordered=False)) as connector:
        healed = run(sync, connector)
    assert healed.outcome is Outcome.COMPLETED, healed.error
    assert_matches(store, fake)


def test_an_error_of_the_api_is_not_blamed_on_the_order() -> None:
    """A bad answer (no list where the records should be) keeps its own message, no advice."""
    fake = FakeGenericRest(paging="offset")
    fake.load(5, T0)
    fake.add_fault(lambda _request: httpx.Response(200, json={"data": {"items": {}}}))
    config = config_for("offset")
    with serving(fake, config) as connector, pytest.raises(BadResponseError) as raised:
        list(connector.read(Window()))
    assert "check records.path" in str(raised.value)
    assert "ordered" not in str(raised.value)


@pytest.mark.parametrize("paging", ["offset", "page"])
def test_a_tick_crowded_beyond_a_page_is_read_whole_by_offset(paging: Paging) -> None:
    """350 items in one second over 100-item pages are each read once, then the read goes on.

    Only inside that second are pages followed by offset (the filter cannot say "equal"); every
    other request asks from offset 0 (the first page).
    """
    fake = FakeGenericRest(paging=paging)
    fake.load(30, T0 - timedelta(minutes=1))
    fake.load(350, T0, step=timedelta(0))
    fake.load(130, T0 + timedelta(seconds=1))
    fake.clock.set(T0 + timedelta(hours=1))
    store = InMemoryStore()
    with serving(fake, config_for(paging)) as connector:
        result = run(engine(store, fake), connector)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert result.fetched == 30 + 350 + 130
    assert_matches(store, fake)
    deep = [
        request.url
        for request in fake.requests
        if "offset=0" not in request.url and "page=1" not in request.url
    ]
    assert deep
    assert all("updated_since=2024-05-01T00%3A00%3A00Z" in url for url in deep)


def test_a_tick_that_keeps_changing_while_read_fails_transiently_then_heals() -> None:
    """Rows updated within their tick at every request: each pass finds a new version.

    The filter (``%Y-%m-%dT%H:%M:%SZ``) says whole seconds while the API keeps milliseconds, so an
    update can stay inside the crowded second. After five passes that each found a version not
    read, the cycle fails with TransientSourceError (the cursor stays inside the tick); once the
    changes stop, the next cycle reads the tick whole.
    """
    fake = FakeGenericRest(paging="offset", precision=timedelta(milliseconds=1))
    ids = fake.load(250, T0, step=timedelta(milliseconds=1))
    fake.clock.set(T0 + timedelta(hours=1))
    calls = {"n": 0}

    def meddle(_request: httpx.Request) -> None:
        calls["n"] += 1
        moment = T0 + timedelta(milliseconds=500 + calls["n"])
        fake.update(ids[calls["n"] % len(ids)], {"amount": 7}, moment)

    fake.add_fault(meddle)
    config = config_for("offset", filter_format="%Y-%m-%dT%H:%M:%SZ")
    store = InMemoryStore()
    sync = engine(store, fake)
    with serving(fake, config) as connector:
        failed = run(sync, connector)
        assert failed.outcome is Outcome.FAILED
        assert failed.error_class == "TransientSourceError"
        assert "kept changing" in str(failed.error)
        tick_starts = [
            r.url for r in fake.requests if "updated_since=2024-05-01T00%3A00%3A00Z" in r.url
        ]
        # The query that found the tick crowded, the tick's read, and its reads again.
        assert sum("offset=0" in url for url in tick_starts) == 2 + MAX_BURST_PASSES
        cursor = sync.state(KEY).cursor
        # Checkpoints inside the tick are safe: the next read starts at the tick's start.
        assert cursor is None or cursor.updated_at < T0 + timedelta(seconds=1)
        fake.clear_faults()
        healed = run(sync, connector)
    assert healed.outcome is Outcome.COMPLETED, healed.error
    assert_matches(store, fake)


@pytest.mark.parametrize("paging", STYLES)
def test_rows_moving_forward_at_every_request_are_all_read(paging: Paging) -> None:
    """From the second request to the fifteenth, one row read and one not yet read move forward.

    Each moved row is read at its new time, as the newer version it is; none is skipped.
    """
    fake = FakeGenericRest(paging=paging)
    ids = fake.load(900, T0)
    fake.load(250, T0 + timedelta(seconds=450), step=timedelta(0))
    fake.clock.set(T0 + timedelta(hours=1))
    calls = {"n": 0}

    def meddle(_request: httpx.Request) -> None:
        calls["n"] += 1
        if 2 <= calls["n"] <= 15:
            fake.clock.advance(timedelta(seconds=1))
            fake.update(ids[calls["n"] * 7], {"amount": calls["n"]})
            fake.update(ids[899 - calls["n"] * 11], {"amount": calls["n"]})

    completes_while(fake, paging, meddle)


def test_an_api_ignoring_the_offset_inside_a_crowded_tick_stops_the_read() -> None:
    """A misnamed offset parameter brings the same page back: the read stops, naming it."""
    fake = FakeGenericRest(paging="offset")
    fake.load(250, T0, step=timedelta(0))
    config = config_for("offset")
    config = attrs.evolve(config, paging=attrs.evolve(config.paging, offset_param="skip"))
    with serving(fake, config) as connector, pytest.raises(BadResponseError) as raised:
        list(connector.read(Window()))
    assert "ignore the 'skip' parameter" in str(raised.value)
    assert "paging.offset_param" in str(raised.value)
    assert len(fake.requests) == 4  # the two queries, then two pages of the tick
