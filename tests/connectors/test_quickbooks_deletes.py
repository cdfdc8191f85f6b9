"""QuickBooks' deletes channel (CDC) against the fake, over loopback HTTP: every delete is read, or
the source is re-read in full; and the live count for the engine's check."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from incsync import SQLiteStore, SyncEngine
from incsync.cursor import Window
from incsync.errors import BadResponseError
from incsync.results import Outcome
from incsync.state import Phase
from incsync.testing import InMemoryStore, ManualClock
from incsync.testing.fakes import FakeQuickBooks
from incsync.timestamps import parse_timestamp
from incsync.vendors.quickbooks import CDC_RETENTION, QuickBooksConnector
from tests.connectors.test_quickbooks import (
    ENTITY,
    KEY,
    NOW,
    assert_sink_matches,
    bursty_timestamps,
    connect,
    engine_for,
    make_fake,
)

PAGE = Path(__file__).resolve().parents[2] / "docs" / "builtin" / "quickbooks.md"


def cdc_requests(fake: FakeQuickBooks, since: int = 0) -> list[str]:
    """Return the URLs of the CDC requests the fake was sent, from the ``since``-th request on."""
    return [request.url for request in fake.requests[since:] if "/cdc" in request.url]


@contextlib.contextmanager
def synced(
    fake: FakeQuickBooks, tmp_path: Path, invoices: int
) -> Iterator[tuple[SyncEngine, SQLiteStore, QuickBooksConnector, list[str]]]:
    """Serve ``fake`` with ``invoices`` invoices, sync them into SQLite, then let an hour pass.

    Yields the engine, its store, the connector (reading deletes) and the invoice ids.
    """
    ids = fake.bulk_load(ENTITY, [NOW - timedelta(days=2, seconds=n) for n in range(invoices)])
    with (
        fake.serve() as base_url,
        SQLiteStore(tmp_path / "sync.db") as store,
        connect(fake, base_url, include_deletes=True) as connector,
    ):
        engine = engine_for(fake, store)
        assert engine.run_cycle(KEY, connector).outcome is Outcome.COMPLETED
        fake.advance(timedelta(hours=1))
        yield engine, store, connector, ids


def a_busy_day(fake: FakeQuickBooks, ids: list[str]) -> list[str]:
    """Delete 300 invoices, one every 2 s, then edit 900 others twice: 2,100 changes in 13 min.

    CDC holds 1,200 objects since before the first delete (the 900 edited invoices, the 300
    deleted ones): more than one answer holds. Returns the deleted ids.
    """
    doomed = ids[:300]
    for record_id in doomed:
        fake.delete(ENTITY, record_id)
        fake.advance(timedelta(seconds=2))
    for edit, (n, record_id) in itertools.product(range(2), enumerate(ids[1_000:1_900])):
        fake.update(ENTITY, record_id, {"Memo": f"edit {edit}"})
        if n % 10 == 9:
            fake.advance(timedelta(seconds=1))
    return doomed


def test_deletes_from_cdc_become_tombstones_on_a_page_of_their_own() -> None:
    """With include_deletes, deleted entities arrive as tombstones after the live pages.

    The live pages stay in time order; the tombstones come on a last page of their own, which
    carries the deletes channel's new mark.
    """
    fake = make_fake()
    ids = fake.bulk_load(ENTITY, bursty_timestamps(3_000))
    store = InMemoryStore()
    engine = engine_for(fake, store)
    deleted: set[str] = set()
    with (
        fake.serve() as base_url,
        connect(fake, base_url, page_size=250, include_deletes=True) as connector,
    ):
        assert engine.run_cycle(KEY, connector).outcome is Outcome.COMPLETED
        for cycle in range(2):
            fake.advance(timedelta(hours=1))
            for offset, record_id in enumerate(ids[cycle * 700 : cycle * 700 + 600]):
                if offset % 5 == 0:
                    fake.delete(ENTITY, record_id)
                    deleted.add(record_id)
                else:
                    fake.update(ENTITY, record_id, {"Memo": f"cycle {cycle}"})
                if offset % 100 == 0:
                    fake.advance(timedelta(seconds=1))
            fake.advance(timedelta(minutes=10))
            result = engine.run_cycle(KEY, connector)
            assert result.outcome is Outcome.COMPLETED
            assert result.applied == 600
            assert_sink_matches(store, fake, deleted=frozenset(deleted))
        pages = list(connector.read(Window(start=NOW)))
    *live, deletes = pages
    times = [[r.updated_at for r in page.records] for page in live]
    assert all(page == sorted(page) for page in times)
    assert all(a[-1] <= b[0] for a, b in itertools.pairwise(times))
    assert not any(r.deleted for page in live for r in page.records)
    assert {r.id for r in deletes.records if r.deleted} == deleted
    assert set(deletes.marks) == {"deletes"}
    assert fake.deleted_ids(ENTITY) == deleted


def test_every_delete_among_2100_changes_between_two_cycles_arrives_as_a_tombstone(
    tmp_path: Path,
) -> None:
    """CDC answers cut at 1,000 objects are walked on from their newest delete: none is lost.

    The first answer holds the 900 edited invoices and the 100 oldest deletes; each next one starts
    at the newest delete read, until one comes back under the cap. Narrowing the start by halves
    found the oldest 100 and the newest deletes, and lost the ones in between with a warning.
    """
    fake = make_fake()
    with synced(fake, tmp_path, 3_000) as (engine, store, connector, ids):
        doomed = a_busy_day(fake, ids)
        fake.advance(timedelta(minutes=10))
        before = len(fake.requests)
        result = engine.run_cycle(KEY, connector)
        assert result.outcome is Outcome.COMPLETED, result.error
        assert result.applied == 900 + 300
        assert_sink_matches(store, fake, deleted=frozenset(doomed))
    assert len(cdc_requests(fake, before)) == 4  # 100 deletes more each, then the rest


def a_one_second_import(fake: FakeQuickBooks, ids: list[str]) -> None:
    """Delete an invoice, then import 1,200 invoices stamped with one second."""
    fake.delete(ENTITY, ids[0])
    fake.advance(timedelta(seconds=1))
    fake.bulk_load(ENTITY, [fake.now()] * 1_200)


def a_one_second_purge(fake: FakeQuickBooks, ids: list[str]) -> None:
    """Delete 1,100 invoices within one second."""
    for record_id in ids[:1_100]:
        fake.delete(ENTITY, record_id)


def a_delete_before_1200_edits(fake: FakeQuickBooks, ids: list[str]) -> None:
    """Delete an invoice, then edit 1,200 others over a minute."""
    fake.delete(ENTITY, ids[0])
    for n, record_id in enumerate(ids[1 : 1 + 1_200]):
        fake.update(ENTITY, record_id, {"Memo": "edited"})
        if n % 20 == 19:
            fake.advance(timedelta(seconds=1))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (a_one_second_import, "holds live changes only"),
        (a_one_second_purge, "is cut among the deletes of that very second"),
        (a_delete_before_1200_edits, "holds live changes only"),
    ],
)
def test_a_cut_cdc_answer_that_cannot_be_walked_resets_the_source(
    tmp_path: Path, change: Callable[[FakeQuickBooks, list[str]], None], reason: str
) -> None:
    """Deletes no CDC answer can show reset the source; the re-read tombstones them.

    CDC lists deletes after the live changes and cannot be asked for less than a second: behind
    1,000 live changes (a bulk import in one second, a busy hour) or past the first 1,000 deletes
    of one second, no answer shows them. The cycle ends in a reset with the reason, and the full
    re-read that follows finds them gone (before, the cycle completed with a warning and the
    deletes were never read).
    """
    fake = make_fake()
    with synced(fake, tmp_path, 1_500) as (engine, store, connector, ids):
        change(fake, ids)
        fake.advance(timedelta(minutes=10))
        result = engine.run_cycle(KEY, connector)
        assert result.outcome is Outcome.INTERRUPTED_RESET
        state = engine.state(KEY)
        assert (state.phase, state.reset_pending, state.consecutive_failures) == (
            Phase.RESETTING,
            True,
            0,
        )
        assert state.last_error is not None
        assert reason in state.last_error.message
        assert "CDC's answer of 1,000 Invoice changes since" in state.last_error.message
        fake.advance(timedelta(minutes=10))
        assert engine.run_cycle(KEY, connector).outcome is Outcome.COMPLETED
        assert engine.state(KEY).phase is Phase.ACTIVE
        assert_sink_matches(store, fake, deleted=frozenset(fake.deleted_ids(ENTITY)))


def test_a_cdc_answer_cut_another_way_resets_instead_of_losing_deletes(tmp_path: Path) -> None:
    """A cut answer missing live changes the documented order puts first is not walked on.

    Intuit documents the order of a CDC answer, not which 1,000 objects a cut one keeps. Walking
    on from the newest delete shown is sound only when the answer holds every live change first;
    the count of live entities updated since its start shows when it does not (here, a QuickBooks
    keeping any 1,000), and the source is reset rather than some deletes lost.
    """
    fake = make_fake(cdc_cut="any")
    with synced(fake, tmp_path, 3_000) as (engine, _, connector, ids):
        a_busy_day(fake, ids)
        fake.advance(timedelta(minutes=10))
        result = engine.run_cycle(KEY, connector)
        state = engine.state(KEY)
    assert result.outcome is Outcome.INTERRUPTED_RESET
    assert state.phase is Phase.RESETTING
    assert state.last_error is not None
    assert "live ones where QuickBooks counts 900" in state.last_error.message


@pytest.mark.parametrize(
    ("gap", "reason"),
    [
        # The last cycle within 30 days, its deletes mark (5 minutes older) past CDC's reach.
        (timedelta(days=30, minutes=-3), "Invoice deletes since 2024-06-03T15:55:00Z are past"),
        # The last cycle more than 30 days back: the engine's own check, from delete_retention.
        (timedelta(days=31), "the source keeps deletes for 30 days"),
    ],
)
def test_deletes_past_cdcs_30_days_reset_the_source_before_reading(
    tmp_path: Path, gap: timedelta, reason: str
) -> None:
    """A source whose deletes are past CDC's 30 days is reset before any page is applied.

    The full re-read that follows finds the invoice deleted meanwhile gone. Before, the cycle read
    a month of changes, read CDC's last 30 days only, and completed with a warning: deletes in the
    days before were lost for good.
    """
    fake = make_fake()
    with synced(fake, tmp_path, 50) as (engine, store, connector, ids):
        fake.delete(ENTITY, ids[7])
        fake.advance(gap - timedelta(hours=1))  # an hour passed already
        before = len(fake.requests)
        result = engine.run_cycle(KEY, connector)
        assert (result.outcome, result.applied) == (Outcome.INTERRUPTED_RESET, 0)
        assert cdc_requests(fake, before) == []
        state = engine.state(KEY)
        assert state.phase is Phase.RESETTING
        assert state.last_error is not None
        assert reason in state.last_error.message
        full = engine.run_cycle(KEY, connector)
        assert (full.outcome, full.applied) == (Outcome.COMPLETED, 49)
        assert engine.state(KEY).marks["deletes"] > NOW + timedelta(days=29)
        assert_sink_matches(store, fake, deleted=frozenset({ids[7]}))


def test_a_rewind_reads_deletes_again_from_its_date_and_past_cdcs_reach_resets(
    tmp_path: Path,
) -> None:
    """A rewind moves the deletes mark back with the cursor: within CDC's 30 days the next cycle
    asks CDC from the rewind's date; further back the source is reset, as after so long a gap."""
    fake = make_fake()
    with synced(fake, tmp_path, 50) as (engine, store, connector, ids):
        fake.delete(ENTITY, ids[7])
        since = NOW - timedelta(days=3)
        engine.rewind(KEY, since)
        before = len(fake.requests)
        result = engine.run_cycle(KEY, connector)
        assert (result.outcome, result.applied) == (Outcome.COMPLETED, 50)  # 49 live, 1 tombstone
        [cdc] = cdc_requests(fake, before)
        assert parse_timestamp(httpx.URL(cdc).params["changedSince"]) == since
        assert_sink_matches(store, fake, deleted=frozenset({ids[7]}))

        engine.rewind(KEY, NOW - timedelta(days=31))
        assert engine.run_cycle(KEY, connector).outcome is Outcome.INTERRUPTED_RESET
        assert engine.state(KEY).phase is Phase.RESETTING


def test_without_include_deletes_a_month_long_gap_is_read_incrementally() -> None:
    """A connector reading no deletes has no delete channel to expire: no reset after 31 days."""
    fake = make_fake()
    fake.bulk_load(ENTITY, [NOW - timedelta(days=1)])
    engine = engine_for(fake, InMemoryStore())
    with fake.serve() as base_url, connect(fake, base_url) as connector:
        assert connector.delete_retention is None
        assert engine.run_cycle(KEY, connector).outcome is Outcome.COMPLETED
        fake.advance(timedelta(days=31))
        assert engine.run_cycle(KEY, connector).outcome is Outcome.COMPLETED


@pytest.mark.parametrize(
    ("host_ahead_by", "quiet_for", "outcome"),
    [
        # 30 days and 1 minute by Intuit's clock: past CDC's reach, though the host's says not.
        (timedelta(minutes=-10), timedelta(days=30, minutes=-4), Outcome.INTERRUPTED_RESET),
        # 30 days less 10 minutes by Intuit's clock: within it, though the host's says not.
        (timedelta(minutes=10), timedelta(days=30, minutes=-15), Outcome.COMPLETED),
    ],
)
def test_cdcs_30_days_are_counted_by_intuits_clock_not_the_hosts(
    host_ahead_by: timedelta, quiet_for: timedelta, outcome: Outcome
) -> None:
    """The age of the deletes mark is judged by the Date of QuickBooks' answers.

    Judged by a host clock 10 minutes behind, a mark just past 30 days looked within reach, CDC
    answered 400 and the cycle failed again every time; judged by one 10 minutes ahead, a mark
    within reach would reset the source for nothing.
    """
    fake = make_fake()
    fake.bulk_load(ENTITY, [NOW - timedelta(days=1)])
    host = ManualClock(NOW + host_ahead_by)
    engine = SyncEngine(InMemoryStore(), clock=host)
    with (
        fake.serve() as base_url,
        connect(fake, base_url, include_deletes=True, clock=host) as connector,
    ):
        assert engine.run_cycle(KEY, connector).outcome is Outcome.COMPLETED
        fake.advance(quiet_for)
        host.advance(quiet_for)
        result = engine.run_cycle(KEY, connector)
    assert result.outcome is outcome, result.error


def test_a_source_without_a_deletes_mark_and_an_old_cursor_is_re_read_once_then_follows_it() -> (
    None
):
    """Synced before deletes were read, with a cursor 40 days back: reset once, then the mark.

    Without a mark the window's start stands for it; 40 days back is past CDC's reach, so the
    first cycle resets the source, the full read sets the mark, and later cycles follow it.
    """
    fake = make_fake()
    fake.bulk_load(ENTITY, [NOW - timedelta(days=40)])
    store = InMemoryStore()
    engine = engine_for(fake, store)
    with fake.serve() as base_url:
        with connect(fake, base_url) as connector:
            assert engine.run_cycle(KEY, connector).outcome is Outcome.COMPLETED
        assert "deletes" not in engine.state(KEY).marks
        outcomes = []
        with connect(fake, base_url, include_deletes=True) as connector:
            for _ in range(3):
                fake.advance(timedelta(hours=1))
                outcomes.append(engine.run_cycle(KEY, connector).outcome)
    assert outcomes == [Outcome.INTERRUPTED_RESET, Outcome.COMPLETED, Outcome.COMPLETED]
    assert engine.state(KEY).marks["deletes"] > NOW


def test_count_live_asks_quickbooks_for_the_live_count_in_one_request() -> None:
    """count_live() is SELECT COUNT(*) FROM <entity>: deleted ones and other entities left out."""
    fake = make_fake()
    ids = fake.bulk_load(ENTITY, bursty_timestamps(2_500))
    for record_id in ids[:40]:
        fake.delete(ENTITY, record_id)
    fake.bulk_load("Payment", [NOW] * 3)
    with fake.serve() as base_url, connect(fake, base_url) as connector:
        before = len(fake.requests)
        assert connector.count_live() == len(fake.entities(ENTITY)) == 2_460
        [request] = fake.requests[before:]
    assert httpx.URL(request.url).params["query"] == "SELECT COUNT(*) FROM Invoice"


def test_count_live_of_an_entity_without_records_is_zero() -> None:
    """An entity QuickBooks holds none of counts 0."""
    with connect(make_fake()) as connector:
        assert connector.count_live() == 0


@pytest.mark.parametrize(
    "body",
    [
        {"QueryResponse": {"Invoice": []}},
        {"QueryResponse": {"totalCount": "12"}},
        {"QueryResponse": {"totalCount": -1}},
        {"QueryResponse": {"totalCount": True}},
        {"Fault": {}},
    ],
)
def test_count_live_refuses_an_answer_without_a_count(body: dict[str, object]) -> None:
    """An answer holding no count is a BadResponseError, not a number made up."""
    fake = make_fake()
    fake.add_fault(lambda request: httpx.Response(200, json=body))
    with connect(fake) as connector, pytest.raises(BadResponseError, match="totalCount"):
        connector.count_live()


def test_delete_retention_is_cdcs_30_days_as_the_page_says() -> None:
    """The engine's retention and the page's statement are the one constant, CDC_RETENTION."""
    assert QuickBooksConnector.delete_retention == CDC_RETENTION == timedelta(days=30)
    page = PAGE.read_text(encoding="utf-8")
    assert "`CDC_RETENTION`" in page
    assert f"**{CDC_RETENTION.days} days**" in page
