"""Scenario tests of SyncEngine.run_cycle: what one cycle does, and what it records."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from incsync import (
    AuthError,
    ConfigurationError,
    Cursor,
    CycleProgress,
    NaiveDatetimeError,
    Outcome,
    Phase,
    RateLimitedError,
    SQLiteStore,
    StatusColor,
    SyncEngine,
    SyncPolicy,
    TransientSourceError,
    Window,
    status_of,
)
from incsync.connectors import BaseConnector, InMemoryConnector, InMemorySource
from incsync.connectors.base import RawPage
from incsync.connectors.memory import iso_timestamp
from incsync.testing import InMemoryStore, ManualClock
from tests.helpers import Store, transactions_by_id

NOW = datetime(2026, 11, 13, 9, 41, 7, tzinfo=timezone.utc)
KEY = "acme/invoices"
POLICY = SyncPolicy(safety_lag=timedelta(minutes=5), max_consecutive_failures=3)


def _source(count: int, *, newest: datetime = NOW - timedelta(hours=1)) -> InMemorySource:
    source = InMemorySource()
    for number in range(count):
        at = newest - timedelta(seconds=count - 1 - number)
        source.put({"id": f"r{number:04d}", "updated_at": iso_timestamp(at), "amount": number})
    return source


def _sink_ids(store: Store) -> list[str]:
    return [transaction.record.id for transaction in store.transactions(KEY)]


class Failing(BaseConnector):
    """A connector whose every read fails with the given error, after ``pages`` good pages."""

    ordered = True

    def __init__(self, error: Exception, pages: list[RawPage] | None = None) -> None:
        self.error = error
        self.pages = pages or []

    def fetch(self, window: Window) -> Iterator[RawPage]:
        yield from self.pages
        raise self.error

    def secrets(self) -> list[str]:
        return ["sk_live_SENTINEL_9c1f"]


def test_first_cycle_reads_everything_and_a_second_reads_nothing_new(
    store: Store,
) -> None:
    """A full first cycle applies every record; an unchanged source then applies nothing."""
    clock = ManualClock(NOW)
    engine = SyncEngine(store, policy=POLICY, clock=clock)
    connector = InMemoryConnector(_source(250), page_size=100)

    first = engine.run_cycle(KEY, connector)
    assert (first.outcome, first.applied, first.rejected) == (Outcome.COMPLETED, 250, 0)
    # A full read in partitions may fetch a record twice (its last partition is read again from
    # where it reached); the sink drops the second copy.
    assert first.fetched == first.applied + first.already_applied
    assert first.pages >= 3  # never more than 100 records a page
    assert first.cursor_before is None
    assert first.cursor_after == Cursor(NOW - timedelta(hours=1), "r0249")

    clock.advance(timedelta(hours=1))
    second = engine.run_cycle(KEY, connector)
    assert second.outcome is Outcome.COMPLETED
    assert second.applied == 0
    assert second.already_applied == second.fetched  # only the cursor's own record, read again
    state = engine.state(KEY)
    assert state.phase is Phase.ACTIVE
    assert state.last_sync == NOW + timedelta(hours=1)
    assert state.last_change == NOW - timedelta(hours=1)
    assert _sink_ids(store) == [f"r{n:04d}" for n in range(250)]


def test_cursor_stops_at_the_safety_horizon(store: Store) -> None:
    """Records newer than (start - safety lag) are applied, but the cursor waits before them."""
    engine = SyncEngine(store, policy=POLICY, clock=ManualClock(NOW))
    source = _source(10, newest=NOW - timedelta(seconds=30))

    result = engine.run_cycle(KEY, InMemoryConnector(source, page_size=4))

    assert result.applied == 10
    assert result.cursor_after == Cursor(NOW - POLICY.safety_lag, "")
    assert engine.state(KEY).last_change == NOW - timedelta(seconds=30)


def test_unordered_source_moves_the_cursor_only_at_completion(
    store: Store,
) -> None:
    """An unordered connector's cursor stays put while pages are written, then jumps at the end."""
    engine = SyncEngine(store, policy=POLICY, clock=ManualClock(NOW))
    cursors: list[Cursor | None] = []

    def look(_page: int) -> None:
        cursors.append(engine.state(KEY).cursor)

    connector = InMemoryConnector(_source(30), page_size=10, ordered=False, before_page=look)
    result = engine.run_cycle(KEY, connector)

    assert result.outcome is Outcome.COMPLETED
    assert cursors == [None, None, None, None]
    assert engine.state(KEY).cursor == Cursor(NOW - timedelta(hours=1), "r0029")


def test_bad_records_are_set_aside_with_reasons_and_the_cycle_completes(
    store: Store,
) -> None:
    """Malformed records are listed with their reason; the good ones around them are applied."""
    source = _source(5)
    engine = SyncEngine(store, policy=POLICY, clock=ManualClock(NOW))

    class WithBadRows(InMemoryConnector):
        def fetch(self, window: Window) -> Iterator[RawPage]:
            yield [
                {"updated_at": "2026-11-01T00:00:00Z"},
                {"id": "naive", "updated_at": "2026-11-01 00:00:00"},
                {"id": "garbled", "updated_at": "last tuesday"},
            ]
            yield from super().fetch(window)

    # One reader: the bad rows come once per read, and a read in partitions is several.
    result = engine.run_cycle(KEY, WithBadRows(source, page_size=2, partitions=1))

    assert (result.outcome, result.applied, result.rejected) == (Outcome.COMPLETED, 5, 3)
    reasons = {item.record_id: item.reason for item in engine.rejected(KEY)}
    assert set(reasons) == {None, "naive", "garbled"}
    assert "'id'" in reasons[None]
    assert "no timezone" in reasons["naive"]
    assert "ISO 8601" in reasons["garbled"]
    assert engine.state(KEY).last_cycle_rejected == 3

    # Reading the same bad records again updates their entries instead of piling them up.
    engine.run_cycle(KEY, WithBadRows(source, page_size=2, partitions=1))
    assert len(engine.rejected(KEY)) == 3


def test_a_failing_source_keeps_the_cursor_and_stops_after_repeated_failures(
    store: Store,
) -> None:
    """Failures are counted with the redacted error; the source stops at the threshold."""
    clock = ManualClock(NOW)
    engine = SyncEngine(store, policy=POLICY, clock=clock)
    engine.run_cycle(KEY, InMemoryConnector(_source(20), page_size=5))
    cursor = engine.state(KEY).cursor

    error = TransientSourceError("503 from https://api.example.com/?api_key=sk_live_SENTINEL_9c1f")
    for attempt in range(1, POLICY.max_consecutive_failures + 1):
        clock.advance(timedelta(hours=1))
        result = engine.run_cycle(KEY, Failing(error))
        assert result.outcome is Outcome.FAILED
        assert result.error is not None
        assert "SENTINEL" not in result.error
        state = engine.state(KEY)
        assert state.consecutive_failures == attempt
        assert state.cursor == cursor
        assert state.last_error is not None
        assert state.last_error.error_class == "TransientSourceError"
        assert "SENTINEL" not in state.last_error.message

    assert engine.state(KEY).phase is Phase.STOPPED
    assert engine.run_cycle(KEY, Failing(error)).outcome is Outcome.SKIPPED_STOPPED

    engine.resume(KEY)
    recovered = engine.run_cycle(KEY, InMemoryConnector(_source(20), page_size=5))
    assert recovered.outcome is Outcome.COMPLETED
    state = engine.state(KEY)
    assert (state.phase, state.consecutive_failures, state.last_error) == (Phase.ACTIVE, 0, None)


def test_pages_before_a_failure_stay_applied_and_checkpointed(
    store: Store,
) -> None:
    """A read that fails mid-way keeps the durable pages; the next cycle resumes after them."""
    engine = SyncEngine(store, policy=POLICY, clock=ManualClock(NOW))
    good = [{"id": "a", "updated_at": "2026-11-01T00:00:00Z"}]
    result = engine.run_cycle(KEY, Failing(AuthError("401"), pages=[good]))

    assert (result.outcome, result.applied) == (Outcome.FAILED, 1)
    assert engine.state(KEY).cursor == Cursor(datetime(2026, 11, 1, tzinfo=timezone.utc), "a")


def test_auth_failures_stop_the_source_sooner(store: Store) -> None:
    """Rejected credentials cannot heal by waiting: the source stops after max_auth_failures."""
    engine = SyncEngine(store, policy=SyncPolicy(max_auth_failures=2), clock=ManualClock(NOW))
    connector = Failing(AuthError("refresh token revoked", vendor="quickbooks", status_code=400))

    engine.run_cycle(KEY, connector)
    assert engine.state(KEY).phase is Phase.NEW
    engine.run_cycle(KEY, connector)
    state = engine.state(KEY)
    assert state.phase is Phase.STOPPED
    assert state.last_error is not None
    assert state.last_error.retryable is False
    assert state.last_error.auth is True


def test_a_rate_limited_source_is_skipped_until_it_may_be_called_again(
    store: Store,
) -> None:
    """A daily quota fails the cycle at once and later cycles skip until retry_at."""
    clock = ManualClock(NOW)
    engine = SyncEngine(store, policy=POLICY, clock=clock)
    retry_at = NOW + timedelta(hours=6)

    failed = engine.run_cycle(KEY, Failing(RateLimitedError("daily quota", retry_at=retry_at)))
    assert failed.outcome is Outcome.FAILED
    assert engine.state(KEY).not_before == retry_at
    assert engine.state(KEY).consecutive_failures == 0  # waiting is not failing

    clock.advance(timedelta(hours=1))
    source = _source(3)
    assert engine.run_cycle(KEY, InMemoryConnector(source)).outcome is Outcome.SKIPPED_WAITING
    clock.set(retry_at)
    assert engine.run_cycle(KEY, InMemoryConnector(source)).outcome is Outcome.COMPLETED
    assert engine.state(KEY).not_before is None


def test_a_source_that_needs_a_full_resync_is_reset_not_counted_as_failing(
    store: Store,
) -> None:
    """``resync_required`` resets the source with the reason kept; the next cycle re-reads all."""
    clock = ManualClock(NOW)
    engine = SyncEngine(store, policy=POLICY, clock=clock)
    source = _source(12)
    engine.run_cycle(KEY, InMemoryConnector(source, page_size=5))
    before = engine.state(KEY)

    clock.advance(timedelta(days=31))
    expired = TransientSourceError(
        "events older than 30 days are gone (key sk_live_SENTINEL_9c1f)",
        vendor="stripe",
        resync_required=True,
    )
    result = engine.run_cycle(KEY, Failing(expired))

    assert result.outcome is Outcome.INTERRUPTED_RESET
    state = engine.state(KEY)
    assert (state.phase, state.generation, state.cursor) == (
        Phase.RESETTING,
        before.generation + 1,
        None,
    )
    assert state.consecutive_failures == 0
    assert state.last_error is not None
    assert "30 days" in state.last_error.message
    assert "SENTINEL" not in state.last_error.message
    assert status_of(state, now=clock()).color is StatusColor.GREY

    reread = engine.run_cycle(KEY, InMemoryConnector(source, page_size=5))
    assert (reread.outcome, reread.applied) == (Outcome.COMPLETED, 12)
    assert engine.state(KEY).last_error is None


def test_a_lease_left_by_a_dead_worker_blocks_until_it_expires(
    store: Store,
) -> None:
    """A second cycle is skipped while a lease is live, and takes over once it has expired."""
    clock = ManualClock(NOW)
    engine = SyncEngine(store, policy=POLICY, clock=clock)
    dead = store.acquire_lease(KEY, "dead-worker", NOW, POLICY.lease_ttl)
    assert dead is not None

    source = _source(3)
    assert engine.run_cycle(KEY, InMemoryConnector(source)).outcome is Outcome.SKIPPED_RUNNING
    clock.advance(POLICY.lease_ttl)
    result = engine.run_cycle(KEY, InMemoryConnector(source))
    assert result.outcome is Outcome.COMPLETED
    state = engine.state(KEY)
    assert state.lease is not None
    assert state.lease.token == dead.token + 1


def test_reset_re_applies_every_record_without_deleting_any(
    store: Store,
) -> None:
    """After a reset the next cycle is full, re-applies everything once, and deletes nothing."""
    clock = ManualClock(NOW)
    engine = SyncEngine(store, policy=POLICY, clock=clock)
    source = _source(40)
    connector = InMemoryConnector(source, page_size=15)
    engine.run_cycle(KEY, connector)

    state = engine.reset(KEY)
    assert (state.phase, state.cursor, state.generation) == (Phase.RESETTING, None, 1)
    assert len(_sink_ids(store)) == 40

    clock.advance(timedelta(minutes=1))
    again = engine.run_cycle(KEY, connector)
    assert (again.outcome, again.applied, again.swept) == (Outcome.COMPLETED, 40, 0)
    # Only a record read twice within the cycle (by a partitioned read) is already applied.
    assert again.fetched - again.already_applied == 40
    assert len(_sink_ids(store)) == 40
    assert engine.state(KEY).phase is Phase.ACTIVE

    clock.advance(timedelta(minutes=1))
    assert engine.run_cycle(KEY, connector).applied == 0


def test_cancel_skips_cycles_and_keeps_transactions(store: Store) -> None:
    """A cancelled source is skipped, its transactions stay, and resume brings it back."""
    engine = SyncEngine(store, policy=POLICY, clock=ManualClock(NOW))
    connector = InMemoryConnector(_source(10))
    engine.run_cycle(KEY, connector)

    assert engine.cancel(KEY).phase is Phase.CANCELLED
    assert engine.run_cycle(KEY, connector).outcome is Outcome.SKIPPED_CANCELLED
    assert len(_sink_ids(store)) == 10
    assert engine.resume(KEY).phase is Phase.ACTIVE
    assert engine.run_cycle(KEY, connector).outcome is Outcome.COMPLETED


def test_tombstones_mark_deleted_records_and_never_remove_them(
    store: Store,
) -> None:
    """A deleted record stays in the sink as a tombstone."""
    clock = ManualClock(NOW)
    engine = SyncEngine(store, policy=POLICY, clock=clock)
    source = _source(3)
    connector = InMemoryConnector(source)
    engine.run_cycle(KEY, connector)

    source.delete("r0001", NOW)
    clock.advance(timedelta(minutes=10))
    result = engine.run_cycle(KEY, connector)

    assert result.applied == 1
    transactions = transactions_by_id(store, KEY)
    assert len(transactions) == 3
    assert transactions["r0001"].record.deleted is True
    assert transactions["r0000"].record.deleted is False


def test_progress_is_reported_after_every_page(store: Store) -> None:
    """The progress callback sees growing counts, the page number and the announced total."""
    engine = SyncEngine(store, policy=POLICY, clock=ManualClock(NOW))
    seen: list[CycleProgress] = []

    result = engine.run_cycle(
        KEY, InMemoryConnector(_source(25), page_size=10), on_progress=seen.append
    )

    # Every page is reported once durable; a partition's end is reported too, as no page.
    assert sorted({p.pages for p in seen}) == list(range(1, result.pages + 1))
    assert (seen[-1].fetched, seen[-1].applied, seen[-1].total) == (
        result.fetched,
        25,
        25,
    )
    for before, after in itertools.pairwise(seen):
        assert after.pages - before.pages in {0, 1}
        assert (after.pages > before.pages) == (after.fetched > before.fetched)
        assert before.applied <= after.applied
    # A read in partitions announces each partition's count as it first answers.
    assert all(p.total is not None and p.applied <= p.total <= 25 for p in seen)


def test_progress_of_one_reader_reports_each_page_with_the_whole_total(store: Store) -> None:
    """Read as one window, every report carries the total the read announced at its start."""
    engine = SyncEngine(store, policy=POLICY, clock=ManualClock(NOW))
    seen: list[CycleProgress] = []
    # One reader: the exact counts of each page are those of one window read in order.
    connector = InMemoryConnector(_source(25), page_size=10, partitions=1)

    engine.run_cycle(KEY, connector, on_progress=seen.append)

    assert [(p.pages, p.fetched, p.applied, p.total) for p in seen] == [
        (1, 10, 10, 25),
        (2, 20, 20, 25),
        (3, 25, 25, 25),
    ]


def test_the_cycle_log_line_counts_one_page_in_the_singular(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """ "1 page", never "1 pages"."""
    engine = SyncEngine(store, policy=POLICY, clock=ManualClock(NOW))
    with caplog.at_level(logging.INFO, logger="incsync"):
        # One reader, so one page: a read in partitions has a page in each.
        engine.run_cycle(KEY, InMemoryConnector(_source(3), partitions=1))
    assert "3 applied, 0 already applied, 0 set aside, 0 swept, 1 page in " in caplog.text


def test_a_broken_progress_callback_does_not_fail_the_cycle(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception in the host's progress display is logged and the sync goes on."""
    engine = SyncEngine(store, policy=POLICY, clock=ManualClock(NOW))

    def broken(_progress: CycleProgress) -> None:
        raise RuntimeError("terminal went away")

    with caplog.at_level(logging.ERROR, logger="incsync"):
        result = engine.run_cycle(KEY, InMemoryConnector(_source(5)), on_progress=broken)
    assert result.outcome is Outcome.COMPLETED
    assert "progress callback failed" in caplog.text


def test_secrets_reach_neither_logs_nor_state_nor_the_database(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A connector's secret never appears in log output, the state or the SQLite file."""
    path = tmp_path / "secret.db"
    with SQLiteStore(path) as store:
        engine = SyncEngine(store, policy=POLICY, clock=ManualClock(NOW))
        error = AuthError("token sk_live_SENTINEL_9c1f was rejected: Bearer sk_live_SENTINEL_9c1f")
        with caplog.at_level(logging.DEBUG, logger="incsync"):
            result = engine.run_cycle(KEY, Failing(error))
        assert "SENTINEL" not in caplog.text
        assert "SENTINEL" not in repr(engine.state(KEY))
        assert result.error is not None
        assert "SENTINEL" not in result.error
    for file in tmp_path.iterdir():
        assert b"SENTINEL" not in file.read_bytes()


def test_an_unexpected_exception_in_a_connector_fails_the_cycle() -> None:
    """A bug in a connector is recorded like any other failure, with its class name."""
    engine = SyncEngine(InMemoryStore(), policy=POLICY, clock=ManualClock(NOW))
    result = engine.run_cycle(KEY, Failing(KeyError("missing field")))
    assert (result.outcome, result.error_class) == (Outcome.FAILED, "KeyError")
    assert engine.state(KEY).consecutive_failures == 1


def test_a_naive_clock_is_refused() -> None:
    """An engine clock that returns naive datetimes is a configuration error, named as such."""
    engine = SyncEngine(InMemoryStore(), clock=lambda: datetime(2026, 1, 1))  # noqa: DTZ001
    with pytest.raises(NaiveDatetimeError, match="clock"):
        engine.run_cycle(KEY, InMemoryConnector(_source(1)))


def test_a_store_that_is_not_a_sink_needs_a_sink() -> None:
    """Building an engine without a sink over a store that is not one says what to pass."""

    class StateOnly:
        pass

    with pytest.raises(ConfigurationError, match="sink="):
        SyncEngine(StateOnly())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lease_ttl": timedelta(0)}, "lease_ttl must be a timedelta longer than zero"),
        ({"safety_lag": timedelta(seconds=-1)}, "safety_lag must be a timedelta of at least zero"),
        ({"max_consecutive_failures": 0}, "max_consecutive_failures must be an integer >= 1"),
    ],
)
def test_policy_values_are_validated(changes: dict[str, object], message: str) -> None:
    """Nonsense policy values fail at construction with a message naming the field."""
    with pytest.raises(ConfigurationError, match=message):
        SyncPolicy(**changes)  # type: ignore[arg-type]
