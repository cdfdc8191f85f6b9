"""The next page is fetched while the current one is written, and every guarantee of a page holds.

The overlap is shown by a rendezvous, not by timing: page N's write does not end until the fake
vendor (answering after its latency model's wait) has received the request for page N+1, so a
read that fetched only after writing would never get there. The ordering guarantees are shown
by the order of events, recorded from both threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from incsync import SQLiteStore, SyncEngine
from incsync.connectors.http import HttpOptions
from incsync.connectors.memory import InMemoryConnector
from incsync.connectors.retry import RetryPolicy
from incsync.errors import LeaseLostError
from incsync.pipeline import read_ahead, wait_for_previous_page
from incsync.records import ApplyResult
from incsync.results import CycleProgress, Outcome
from incsync.state import SourceState
from incsync.testing import InMemoryStore
from incsync.testing.fakes import FakePipedrive, Latency, PipedriveLimits
from incsync.timestamps import UTC
from incsync.vendors.pipedrive import PipedriveConnector
from tests.helpers import Store, records_before, transactions_by_id

KEY = "pipedrive/deals"
PAGE = 50
PAGES = 5
# Each answer takes this long: long beside the writes of these small pages, short for a test.
LATENCY = Latency(fixed=0.1, jitter=0.02, seed=7)
# How long a write waits for the next page's request to reach the vendor; a pipelined read sends
# it as soon as the write starts, a sequential one never while the write lasts.
RENDEZVOUS_SECONDS = 3.0
DEALS = "/api/v2/deals"


def no_sleep(_seconds: float) -> None:
    """Never wait between retries."""


def stored_count(store: Store, key: str) -> int:
    return len(transactions_by_id(store, key))


def _fake() -> FakePipedrive:
    fake = FakePipedrive(limits=PipedriveLimits(per_window=None))
    start = fake.clock() - timedelta(days=20)
    fake.load([start + timedelta(minutes=n) for n in range(PAGE * PAGES)])
    fake.latency = LATENCY
    return fake


def _connector(fake: FakePipedrive, url: str) -> PipedriveConnector:
    options = HttpOptions(sleep=no_sleep, clock=fake.clock, retry=RetryPolicy(max_attempts=1))
    # One reader: these tests follow one read ahead page by page (see test_engine_partitions).
    return PipedriveConnector(
        url, api_token=fake.api_token, page_size=PAGE, partitions=1, options=options
    )


class _ListRequests:
    """Counts the deal-list requests the fake receives; lets a test wait for the n-th (from 0)."""

    def __init__(self, fake: FakePipedrive) -> None:
        self._arrived = threading.Condition()
        self.count = 0
        fake.add_fault(self._observe)

    def _observe(self, request: httpx.Request) -> httpx.Response | None:
        if request.url.path == DEALS:
            with self._arrived:
                self.count += 1
                self._arrived.notify_all()
        return None

    def wait_for(self, number: int, timeout: float) -> bool:
        with self._arrived:
            return self._arrived.wait_for(lambda: self.count > number, timeout)


class _WritesAwaitingTheNextRequest(SQLiteStore):
    """A SQLite store whose page N write ends only once request N+1 reached the vendor."""

    def __init__(self, path: Path, requests: _ListRequests, pages: int) -> None:
        super().__init__(path)
        self._requests, self._pages = requests, pages
        self.overlapped: list[bool] = []

    def commit_page(self, *arguments: Any) -> tuple[ApplyResult, SourceState]:
        written = len(self.overlapped)
        if written + 1 < self._pages and all(self.overlapped):
            self.overlapped.append(self._requests.wait_for(written + 1, RENDEZVOUS_SECONDS))
        return super().commit_page(*arguments)


def _read_ahead_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "incsync-read-ahead"]


def test_each_write_overlaps_the_request_for_the_next_page(tmp_path: Path) -> None:
    """Over loopback, with the vendor's latency, page N+1 is on its way while page N is written.

    Fails on a read that fetches only after the write: the write would wait for a request that
    comes only after it.
    """
    fake = _fake()
    requests = _ListRequests(fake)
    store = _WritesAwaitingTheNextRequest(tmp_path / "sync.db", requests, PAGES)
    with fake.serve() as url, _connector(fake, url) as connector:
        result = SyncEngine(store, clock=fake.clock).run_cycle(KEY, connector)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert result.applied == PAGE * PAGES
    assert store.overlapped == [True] * (PAGES - 1)
    assert stored_count(store, KEY) == PAGE * PAGES


def test_a_failed_fetch_surfaces_after_the_page_before_is_durable(tmp_path: Path) -> None:
    """The request for page 3 fails while page 2 is written: pages 0-2 are kept, with the cursor
    on page 2's last deal, and the error is the cycle's; the next cycle resumes after page 2."""
    fake = _fake()
    requests = _ListRequests(fake)

    def outage(request: httpx.Request) -> httpx.Response | None:
        if request.url.path == DEALS and requests.count == 4:
            return httpx.Response(400, json={"success": False, "error": "bad cursor"})
        return None

    fake.add_fault(outage)
    store = SQLiteStore(tmp_path / "sync.db")
    engine = SyncEngine(store, clock=fake.clock)
    with fake.serve() as url, _connector(fake, url) as connector:
        result = engine.run_cycle(KEY, connector)
    assert result.outcome is Outcome.FAILED
    assert result.pages == 3
    assert stored_count(store, KEY) == 3 * PAGE
    state = engine.state(KEY)
    assert state.cursor is not None
    assert state.cursor == result.cursor_after
    held = {t.record.updated_at for t in store.transactions(KEY)}
    assert state.cursor.updated_at == max(held)
    assert not _read_ahead_threads()

    fake.clear_faults()
    with fake.serve() as url, _connector(fake, url) as connector:
        again = engine.run_cycle(KEY, connector)
    assert again.outcome is Outcome.COMPLETED, again.error
    assert stored_count(store, KEY) == PAGE * PAGES


def test_a_stop_drops_the_page_in_flight_unwritten_and_returns_once_its_fetch_ended() -> None:
    """A stop during page 1's write ends the cycle after page 1: page 2, requested or not yet, is
    dropped unwritten, and no reading thread outlives the cycle."""
    fake = _fake()
    requests = _ListRequests(fake)
    stop = threading.Event()

    def on_progress(progress: CycleProgress) -> None:
        if progress.pages == 2:
            stop.set()

    store = InMemoryStore()
    engine = SyncEngine(store, clock=fake.clock)
    with fake.serve() as url, _connector(fake, url) as connector:
        result = engine.run_cycle(KEY, connector, on_progress=on_progress, stop=stop)
        assert result.outcome is Outcome.INTERRUPTED_STOP
        assert not _read_ahead_threads()
        # Pages 0 and 1, and page 2 if its fetch began before the stop was seen: never more.
        assert requests.count <= 3
    assert result.pages == 2
    assert stored_count(store, KEY) == 2 * PAGE


class _LosesItsLeaseAtPage(InMemoryStore):
    def __init__(self, page: int) -> None:
        super().__init__()
        self._page, self._written = page, 0

    def commit_page(self, *arguments: Any) -> tuple[ApplyResult, SourceState]:
        if self._written == self._page:
            raise LeaseLostError("another worker took the source over", source_key=KEY)
        self._written += 1
        return super().commit_page(*arguments)


def test_a_lost_lease_ends_the_read_and_writes_nothing_after() -> None:
    fake = _fake()
    store = _LosesItsLeaseAtPage(2)
    with fake.serve() as url, _connector(fake, url) as connector:
        result = SyncEngine(store, clock=fake.clock).run_cycle(KEY, connector)
    assert result.outcome is Outcome.FAILED
    assert result.error_class == "LeaseLostError"
    assert stored_count(store, KEY) == 2 * PAGE
    assert not _read_ahead_threads()


def test_hooks_see_the_page_before_durable_and_progress_before_the_next_hook() -> None:
    """With a network delay that overlaps the writes, the in-memory connector's hook for page k
    still runs once page k-1 is durable and reported, and before page k is written: the same
    order as a read one page at a time."""
    now = datetime(2026, 3, 2, 9, tzinfo=UTC)
    source = records_before(now, 100)
    store = InMemoryStore()
    events: list[tuple[str, int, int]] = []

    def before_page(number: int) -> None:
        events.append(("hook", number, stored_count(store, "k")))

    def on_progress(progress: CycleProgress) -> None:
        events.append(("progress", progress.pages, stored_count(store, "k")))

    # One reader: the order of one window's hooks and writes (a read in partitions has several).
    connector = InMemoryConnector(
        source, page_size=25, page_delay=0.01, before_page=before_page, partitions=1
    )
    result = SyncEngine(store, clock=lambda: now).run_cycle("k", connector, on_progress=on_progress)
    assert result.pages == 4
    expected: list[tuple[str, int, int]] = []
    for page in range(4):
        expected += [("hook", page, 25 * page), ("progress", page + 1, 25 * (page + 1))]
    expected.append(("hook", 4, 100))  # the read's last, empty, page
    assert events == expected


def _counting(pages: int, produced: list[int], second: threading.Event) -> Iterator[int]:
    for number in range(pages):
        produced.append(number)
        if number == 1:
            second.set()
        yield number


def test_the_reading_thread_fetches_one_page_ahead_and_no_more() -> None:
    produced: list[int] = []
    second = threading.Event()
    with read_ahead(_counting(10, produced, second)) as pages:
        assert next(pages) == 0
        assert second.wait(5)
        # Page 1 waits in the hand-off; page 2 is not fetched until page 1 is taken.
        assert not any(thread.is_alive() and len(produced) > 2 for thread in _read_ahead_threads())
        assert produced == [0, 1]
        assert next(pages) == 1
    assert produced[:2] == [0, 1]
    assert len(produced) <= 3
    assert not _read_ahead_threads()


def test_an_abandoned_read_unwinds_a_connector_waiting_for_its_turn_without_running_on() -> None:
    """A reader waiting in wait_for_previous_page when the read ends does not run its hook, and
    its generator is closed (its finally runs) before read_ahead returns."""
    ran: list[str] = []

    def pages() -> Iterator[int]:
        try:
            for number in range(5):
                wait_for_previous_page()
                ran.append(f"hook {number}")
                yield number
        finally:
            ran.append("closed")

    with read_ahead(pages()) as read:
        assert next(read) == 0
    assert ran == ["hook 0", "closed"]


def test_wait_for_previous_page_returns_at_once_outside_a_read() -> None:
    wait_for_previous_page()


def test_an_error_of_the_read_is_raised_by_the_next_that_asks_for_its_page() -> None:
    def pages() -> Iterator[int]:
        yield 0
        raise RuntimeError("the source broke")

    with read_ahead(pages()) as read:
        assert next(read) == 0
        with pytest.raises(RuntimeError, match="the source broke"):
            next(read)


def test_a_read_hands_over_none_as_any_other_item() -> None:
    """None is an item, not the end: a read yielding it goes on, and ends as any read does."""
    with read_ahead(iter([None, 1, None])) as read:
        assert list(read) == [None, 1, None]
