"""Due scheduling: which sources are due (pure), and the pool that runs them (real threads)."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from incsync import SQLiteStore, SyncEngine
from incsync.connectors import InMemoryConnector, sample_source
from incsync.connectors.memory import InMemorySource
from incsync.cursor import Window
from incsync.errors import ConfigurationError, NaiveDatetimeError
from incsync.records import Page
from incsync.results import Outcome
from incsync.scheduling import (
    DueSource,
    SourcePlan,
    due_at,
    due_sources,
    next_to_start,
    run_due,
    slot_offset,
)
from incsync.state import ErrorInfo, Lease, Phase, SourceState
from incsync.timestamps import parse_timestamp
from tests.helpers import transactions_by_id

UTC = timezone.utc
NOW = datetime(2026, 11, 13, 9, 41, 7, tzinfo=UTC)
HOUR = timedelta(hours=1)


def plan(key: str = "acme/invoices", interval: timedelta = HOUR, **kwargs: object) -> SourcePlan:
    return SourcePlan(key, interval, **kwargs)  # type: ignore[arg-type]


def slot_before(moment: datetime, p: SourcePlan) -> datetime:
    """The source's last slot at or before ``moment``, computed independently of the module."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC) + slot_offset(p.source_key, p.interval)
    return epoch + ((moment - epoch) // p.interval) * p.interval


def test_a_slot_offset_is_stable_and_inside_the_interval() -> None:
    """The offset comes from a stable hash: same key, same offset, always within the interval."""
    assert slot_offset("acme/invoices", HOUR) == slot_offset("acme/invoices", HOUR)
    assert timedelta(0) <= slot_offset("acme/invoices", HOUR) < HOUR
    assert slot_offset("acme/invoices", HOUR) != slot_offset("acme/invoices2", HOUR)


def test_a_thousand_hourly_sources_spread_over_the_hour() -> None:
    """Every five minutes of the hour gets about a twelfth of the sources, never a burst."""
    buckets = Counter(
        slot_offset(f"customer-{n}/invoices", HOUR) // timedelta(minutes=5) for n in range(1000)
    )
    assert sorted(buckets) == list(range(12))
    assert all(50 <= count <= 120 for count in buckets.values()), buckets


def test_a_source_never_started_is_due_at_once() -> None:
    """A newly connected source is due at its latest slot, so it runs on the next tick."""
    [due] = due_sources([plan()], [], NOW)
    assert due.due_at == slot_before(NOW, plan())
    assert timedelta(0) <= due.overdue < HOUR


def test_after_a_start_the_source_is_due_at_its_next_slot_and_not_before() -> None:
    """A source that started at its slot is due again exactly one interval later."""
    p = plan()
    slot = slot_before(NOW, p)
    state = SourceState(
        key=p.source_key, phase=Phase.ACTIVE, last_attempt=slot + timedelta(seconds=2)
    )
    assert due_at(p, state, NOW) == slot + HOUR
    assert due_sources([p], [state], slot + HOUR - timedelta(microseconds=1)) == []
    assert [d.plan for d in due_sources([p], [state], slot + HOUR)] == [p]


def test_a_restart_does_not_burst_sources_that_ran_recently() -> None:
    """Sources that ran in the last interval are not due, whatever the scheduler's restarts."""
    plans = [plan(f"c{n}/deals") for n in range(200)]
    states = [
        SourceState(key=p.source_key, phase=Phase.ACTIVE, last_attempt=slot_before(NOW, p))
        for p in plans
    ]
    assert due_sources(plans, states, NOW) == []
    hour_later = due_sources(plans, states, NOW + HOUR)
    assert len(hour_later) == 200
    # Over the next ten minutes only about a sixth of them become due.
    assert 15 <= len(due_sources(plans, states, NOW + timedelta(minutes=10))) <= 55


@pytest.mark.parametrize("phase", [Phase.CANCELLED, Phase.STOPPED])
def test_cancelled_and_stopped_sources_are_never_due(phase: Phase) -> None:
    """Only the host (resume, reset) can make such a source run again."""
    state = SourceState(key="acme/invoices", phase=phase, last_attempt=NOW - 30 * HOUR)
    assert due_at(plan(), state, NOW) is None
    assert due_sources([plan()], [state], NOW + 100 * HOUR) == []


def test_a_reset_source_is_due_at_once_and_backs_off_only_after_failing() -> None:
    """A reset asks for the re-read now, not at the next slot; a failing re-read backs off."""
    p = plan()
    just_ran = slot_before(NOW, p) + timedelta(seconds=2)
    reset = SourceState(
        key=p.source_key, phase=Phase.RESETTING, reset_pending=True, last_attempt=just_ran
    )
    assert due_at(p, reset, NOW) == NOW
    assert [d.plan for d in due_sources([p], [reset], NOW)] == [p]

    waiting = attrs.evolve(reset, not_before=NOW + timedelta(minutes=20))
    assert due_at(p, waiting, NOW) == NOW + timedelta(minutes=20)

    failing = attrs.evolve(reset, consecutive_failures=1)
    assert due_at(p, failing, NOW) == slot_before(just_ran, p) + HOUR


def test_a_running_source_is_not_due_until_its_lease_expires() -> None:
    """A live lease means a cycle runs; an expired one (a dead worker) does not block."""
    lease = Lease(holder="w1", expires_at=NOW + timedelta(minutes=3), token=4)
    state = SourceState(key="acme/invoices", last_attempt=NOW - 3 * HOUR, lease=lease)
    assert due_sources([plan()], [state], NOW) == []
    assert len(due_sources([plan()], [state], NOW + timedelta(minutes=3))) == 1


def test_a_source_that_asked_to_wait_is_due_only_after_not_before() -> None:
    """``not_before`` (a rate limit's Retry-After) pushes the due time, never pulls it in."""
    p = plan()
    slot = slot_before(NOW, p)
    waiting = SourceState(
        key=p.source_key, last_attempt=slot - HOUR, not_before=slot + timedelta(minutes=7)
    )
    assert due_at(p, waiting, NOW) == slot + timedelta(minutes=7)
    early = attrs.evolve(waiting, not_before=slot - timedelta(minutes=90))
    assert due_at(p, early, NOW) == slot


def failed(p: SourcePlan, failures: int, last_attempt: datetime) -> SourceState:
    error = ErrorInfo(error_class="TransientSourceError", message="503", at=last_attempt)
    return SourceState(
        key=p.source_key,
        phase=Phase.ACTIVE,
        last_attempt=last_attempt,
        consecutive_failures=failures,
        last_error=error,
    )


@pytest.mark.parametrize(
    ("failures", "slots_later"), [(0, 1), (1, 1), (2, 2), (3, 4), (4, 6), (9, 6)]
)
def test_failures_back_off_exponentially_on_the_sources_own_slots(
    failures: int, slots_later: int
) -> None:
    """After n failures the next try is interval * 2**(n-1) later, capped (here at six hours)."""
    p = plan(backoff_cap=timedelta(hours=6))
    slot = slot_before(NOW, p)
    assert due_at(p, failed(p, failures, slot), NOW) == slot + slots_later * HOUR


def test_a_cap_below_the_interval_never_retries_faster_than_the_interval() -> None:
    """Backoff only ever lengthens the wait; a failing source is never polled more often."""
    p = plan(backoff_cap=timedelta(minutes=5))
    slot = slot_before(NOW, p)
    assert due_at(p, failed(p, 3, slot), NOW) == slot + HOUR


def test_due_sources_come_most_overdue_first() -> None:
    """The source waiting longest goes first; equal due times are ordered by key."""
    plans = [plan(f"s{n}", timedelta(minutes=10)) for n in range(30)]
    states = [
        SourceState(key=p.source_key, last_attempt=NOW - timedelta(minutes=10 + n))
        for n, p in enumerate(plans)
    ]
    due = due_sources(plans, {s.key: s for s in states}, NOW)
    assert [d.due_at for d in due] == sorted(d.due_at for d in due)
    assert [d.overdue for d in due] == sorted((d.overdue for d in due), reverse=True)
    assert due[0].plan.source_key == "s29"


def test_invalid_plans_and_times_are_refused_with_a_clear_message() -> None:
    """Duplicate plans, empty keys, sub-second intervals and naive times are errors."""
    with pytest.raises(ConfigurationError, match="two plans for source 'a'"):
        due_sources([plan("a"), plan("a")], [], NOW)
    with pytest.raises(ConfigurationError, match="source_key must be a non-empty"):
        plan(" ")
    with pytest.raises(ConfigurationError, match="interval must be a timedelta"):
        plan("a", timedelta(milliseconds=10))
    with pytest.raises(NaiveDatetimeError):
        due_sources([plan()], [], datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test
    assert plan("a").account_key == "a"


@given(
    interval_s=st.integers(1, 7 * 24 * 3600),
    since_s=st.integers(0, 30 * 24 * 3600),
    failures=st.integers(0, 60),
    wait_s=st.one_of(st.none(), st.integers(-3600, 30 * 24 * 3600)),
    key=st.text(min_size=1, max_size=20).filter(str.strip),
)
def test_due_time_is_after_the_last_start_on_a_slot_and_not_before_the_wait(
    interval_s: int, since_s: int, failures: int, wait_s: int | None, key: str
) -> None:
    """The due time is after the last start by at least one interval, at most the cap (+1 slot),
    on the source's slot grid unless ``not_before`` decides, and never before ``not_before``."""
    p = plan(key, timedelta(seconds=interval_s), backoff_cap=timedelta(hours=6))
    last = NOW - timedelta(seconds=since_s)
    not_before = None if wait_s is None else NOW + timedelta(seconds=wait_s)
    state = attrs.evolve(failed(p, failures, last), not_before=not_before)
    due = due_at(p, state, NOW)
    assert due is not None
    assert due > last
    on_grid = slot_before(due, p) == due
    assert on_grid or due == not_before
    if not_before is not None:
        assert due >= not_before
    if on_grid and (not_before is None or due > not_before):
        longest = max(p.interval, p.backoff_cap) + p.interval
        assert due - last <= longest


def test_next_to_start_skips_sources_whose_account_is_full() -> None:
    """A source of a busy account waits; one of a free account behind it goes first."""
    a1 = DueSource(plan("x", account_key="acct-1"), NOW, timedelta(0))
    a2 = DueSource(plan("y", account_key="acct-2"), NOW, timedelta(0))
    assert next_to_start([a1, a2], {"acct-1": 2}, 2) == a2
    assert next_to_start([a1, a2], {"acct-1": 2, "acct-2": 2}, 2) is None
    assert next_to_start([a1, a2], {}, 1) == a1


# -- run_due: real threads over a real SQLite file ---------------------------------------------


class ConcurrencyProbe:
    """Counts the cycles running at once, overall and per account, from inside the reads.

    A cycle is running while any of its reads is (a full read in partitions has several at
    once); a source's cycles never overlap (its lease), so the cycles are the sources reading.
    """

    def __init__(self, account_of: dict[str, str]) -> None:
        self._lock = threading.Lock()
        self._account_of = account_of
        self.reads: Counter[str] = Counter()
        self.peak_per_account: Counter[str] = Counter()
        self.peak_total = 0

    def enter(self, key: str) -> None:
        with self._lock:
            self.reads[key] += 1
            reading = [source for source, count in self.reads.items() if count]
            account = self._account_of[key]
            running = sum(self._account_of[source] == account for source in reading)
            self.peak_per_account[account] = max(self.peak_per_account[account], running)
            self.peak_total = max(self.peak_total, len(reading))

    def leave(self, key: str) -> None:
        with self._lock:
            self.reads[key] -= 1


class ProbedConnector(InMemoryConnector):
    """An in-memory connector whose reads are seen by a :class:`ConcurrencyProbe`."""

    def __init__(self, key: str, source: InMemorySource, probe: ConcurrencyProbe) -> None:
        super().__init__(source, page_size=40, page_delay=0.01)
        self._key, self._probe = key, probe

    def read(self, window: Window) -> Iterator[Page]:
        self._probe.enter(self._key)
        try:
            yield from super().read(window)
        finally:
            self._probe.leave(self._key)


def assert_sink_equals(store: SQLiteStore, key: str, source: InMemorySource) -> None:
    held = transactions_by_id(store, key)
    truth = source.snapshot()
    assert held.keys() == truth.keys(), key
    for record_id, raw in truth.items():
        assert held[record_id].record.updated_at == parse_timestamp(raw["updated_at"])
        assert dict(held[record_id].record.payload) == raw


def test_run_due_runs_every_due_source_within_the_worker_and_account_limits(
    tmp_path: Path,
) -> None:
    """Twelve sources of three accounts on four threads, one cycle per account at a time: every
    source is synced exactly to its source, the pool really ran in parallel, no account ever had
    two cycles at once, and right after the run nothing is due."""
    plans = [
        plan(f"acct-{n % 3}/src-{n}", timedelta(minutes=15), account_key=f"acct-{n % 3}")
        for n in range(12)
    ]
    sources = {p.source_key: sample_source(100, end=NOW, seed=n) for n, p in enumerate(plans)}
    probe = ConcurrencyProbe({p.source_key: p.account_key for p in plans})
    # One instant for the engine and both runs: on the real clock a source whose slot fell
    # between its start and the second run would rightly be due again.
    later = NOW + timedelta(minutes=5)
    with SQLiteStore(tmp_path / "incsync.db") as store:
        engine = SyncEngine(store, clock=lambda: later)
        results = run_due(
            engine,
            plans,
            lambda key: ProbedConnector(key, sources[key], probe),
            max_workers=4,
            per_account_limit=1,
            now=later,
        )
        assert sorted(r.source_key for r in results) == sorted(sources)
        assert {r.outcome for r in results} == {Outcome.COMPLETED}
        for key, source in sources.items():
            assert_sink_equals(store, key, source)
        assert max(probe.peak_per_account.values()) == 1
        assert probe.peak_total >= 2, "the pool never ran two cycles at once"
        assert (
            run_due(
                engine,
                plans,
                lambda key: ProbedConnector(key, sources[key], probe),
                max_workers=4,
                per_account_limit=1,
                now=later,
            )
            == []
        )


def test_run_due_keeps_going_when_one_connector_cannot_be_built(tmp_path: Path) -> None:
    """A factory that raises fails only its own source; the message never quotes the factory's."""
    plans = [plan("good"), plan("broken")]
    source = sample_source(30, end=NOW)

    def factory(key: str) -> InMemoryConnector:
        if key == "broken":
            raise KeyError("api-key sk_live_123 not found")
        return InMemoryConnector(source)

    with SQLiteStore(tmp_path / "incsync.db") as store:
        results = {
            r.source_key: r
            for r in run_due(SyncEngine(store), plans, factory, max_workers=2, per_account_limit=1)
        }
    assert results["good"].outcome is Outcome.COMPLETED
    assert results["broken"].outcome is Outcome.FAILED
    assert results["broken"].error_class == "KeyError"
    assert "sk_live_123" not in (results["broken"].error or "")


def test_a_factory_that_raises_is_located_without_its_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The log names where the factory raised, frame by frame, so a bug in it can be found;
    neither its message nor the code lines (either may quote a credential) are logged."""
    secret = "sk_live_5e2b"

    def factory(_key: str) -> InMemoryConnector:
        raise KeyError(f"api-key {secret} not found")

    with SQLiteStore(tmp_path / "incsync.db") as store, caplog.at_level(logging.ERROR):
        run_due(SyncEngine(store), [plan("broken")], factory, max_workers=1, per_account_limit=1)
    [line] = caplog.records
    assert line.getMessage().startswith(
        "source broken: could not build its connector (KeyError); the cycle did not run; "
        "raised at:\n  File "
    )
    assert line.getMessage().endswith(", in factory")
    assert secret not in caplog.text


def test_run_due_skips_a_source_that_is_running_elsewhere(tmp_path: Path) -> None:
    """A source leased by another worker is not started (its lease is live)."""
    source = sample_source(10, end=NOW)
    with SQLiteStore(tmp_path / "incsync.db") as store:
        started = time.time()
        lease = store.acquire_lease(
            "busy", "other-worker", datetime.fromtimestamp(started, UTC), timedelta(minutes=5)
        )
        assert lease is not None
        results = run_due(
            SyncEngine(store),
            [plan("busy"), plan("free")],
            lambda _key: InMemoryConnector(source),
            max_workers=2,
            per_account_limit=1,
        )
    assert [r.source_key for r in results] == ["free"]


def test_run_due_refuses_limits_below_one(tmp_path: Path) -> None:
    """Zero workers or a zero account limit would never run anything: refused up front."""
    with SQLiteStore(tmp_path / "incsync.db") as store:
        engine = SyncEngine(store)
        source = sample_source(1, end=NOW)

        def factory(_key: str) -> InMemoryConnector:
            return InMemoryConnector(source)

        with pytest.raises(ConfigurationError, match="max_workers"):
            run_due(engine, [], factory, max_workers=0, per_account_limit=1)
        with pytest.raises(ConfigurationError, match="per_account_limit"):
            run_due(engine, [], factory, max_workers=1, per_account_limit=0)
