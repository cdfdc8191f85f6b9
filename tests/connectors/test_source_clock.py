"""The source's clock over loopback HTTP: a fake vendor whose clock runs 10 minutes off the host's.

The host (engine and connector) reads one manual clock; the fake reads the same clock shifted, and
dates its answers by it, as a real vendor does. The cursor's horizon must follow the source's
clock: a source behind the host must not get a cursor past what it may still stamp, and one ahead
must not be re-read for the minutes it runs ahead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime, timedelta

import attrs
import pytest

from incsync import SyncEngine, SyncPolicy
from incsync.connectors.http import HttpOptions
from incsync.connectors.rest import RestConnector
from incsync.cursor import Cursor
from incsync.history import summarize
from incsync.results import Outcome
from incsync.status import status_of
from incsync.testing import InMemoryStore, ManualClock
from incsync.testing.fakes.generic_rest import FakeGenericRest
from incsync.timestamps import UTC
from tests.connectors.test_rest import KEY, SECRET_NAME, config_for
from tests.helpers import Store, transactions_by_id

HOST_NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
LAG = timedelta(minutes=1)
TEN_MINUTES = timedelta(minutes=10)
# A loopback answer is dated to the second: the measured skew is the true one within a second.
WITHIN = timedelta(seconds=1)


@contextmanager
def source_off_by(
    offset: timedelta,
) -> Iterator[tuple[ManualClock, FakeGenericRest, RestConnector]]:
    """A fake whose clock runs ``offset`` off the host's, served over loopback, and its reader."""
    host = ManualClock(HOST_NOW)
    fake = FakeGenericRest(paging="cursor", clock=host.shifted(offset))
    with fake.serve() as base_url:
        connector = RestConnector(
            attrs.evolve(config_for("cursor"), base_url=base_url),
            secrets={SECRET_NAME: fake.token},
            options=HttpOptions(clock=host, sleep=lambda _seconds: None),
        )
        with closing(connector):
            yield host, fake, connector


def engine_on(store: Store, host: ManualClock) -> SyncEngine:
    """An engine on the host's clock with a one-minute safety lag."""
    return SyncEngine(store, clock=host, policy=SyncPolicy(safety_lag=LAG))


@pytest.mark.parametrize("offset", [-TEN_MINUTES, TEN_MINUTES], ids=["behind", "ahead"])
def test_the_connector_measures_the_source_s_skew_from_its_answers(offset: timedelta) -> None:
    """Before any answer the skew is unknown; after one, it is the fake's offset (to a second)."""
    with source_off_by(offset) as (host, fake, connector):
        assert connector.clock_skew() is None
        assert connector.source_time() == host()
        fake.load(3, fake.clock() - timedelta(minutes=5))
        engine_on(InMemoryStore(), host).run_cycle(KEY, connector)
        skew = connector.clock_skew()
        assert skew is not None
        assert abs(skew - offset) <= WITHIN
        assert abs(connector.source_time() - fake.clock()) <= WITHIN


def test_a_record_stamped_within_the_lag_by_a_source_behind_is_read_next_cycle() -> None:
    """A source 10 minutes behind: a record it stamps just before its now, made visible only after
    the cycle read (a long transaction), is read by the next cycle, not skipped.

    Bounded by the host's clock, the cursor would move to the newest record read (the host's
    horizon is 9 minutes past everything the source stamped) and the late record behind it would
    be lost.
    """
    with source_off_by(-TEN_MINUTES) as (host, fake, connector):
        source_now = fake.clock()
        # The last of them stamped 10 s before the source's now: within the lag.
        fake.load(3, source_now - timedelta(seconds=100), step=timedelta(seconds=45))
        store = InMemoryStore()
        sync = engine_on(store, host)
        first = sync.run_cycle(KEY, connector)
        assert first.outcome is Outcome.COMPLETED, first.error
        assert first.applied == 3
        # The cursor stops a lag before the source's now, not the host's.
        assert first.cursor_after is not None
        assert first.cursor_after.updated_at <= source_now - LAG
        late = fake.create(updated_at=source_now - timedelta(seconds=30))
        host.advance(timedelta(minutes=5))
        second = sync.run_cycle(KEY, connector)
    assert second.outcome is Outcome.COMPLETED, second.error
    assert second.applied == 1
    assert second.already_applied == 2  # the two read again from a lag before the source's now
    assert late in transactions_by_id(store, KEY)


def test_a_source_ahead_is_not_read_again_for_the_minutes_it_runs_ahead() -> None:
    """A source 10 minutes ahead: the cursor reaches its records of the last 10 minutes, so the
    next cycle does not read them all again (a host-clock horizon stopped 11 minutes before them).
    """
    with source_off_by(TEN_MINUTES) as (host, fake, connector):
        source_now = fake.clock()
        fake.load(8, source_now - timedelta(minutes=8), step=timedelta(minutes=1))
        sync = engine_on(InMemoryStore(), host)
        first = sync.run_cycle(KEY, connector)
        assert first.applied == 8
        assert first.cursor_after is not None
        # The horizon: a lag before the source's now (the newest record lies at it, not before).
        assert first.cursor_after == Cursor(source_now - LAG)
        host.advance(timedelta(minutes=5))
        second = sync.run_cycle(KEY, connector)
    assert second.outcome is Outcome.COMPLETED, second.error
    assert second.already_applied == 1  # the one within the lag, not all eight
    assert second.fetched == 1


def test_every_store_keeps_the_measured_skew_and_the_status_names_it(store: Store) -> None:
    """Each cycle's history entry carries the skew it measured, on every store; the hover of a
    source 10 minutes behind says its times are read on its clock."""
    with source_off_by(-TEN_MINUTES) as (host, fake, connector):
        fake.load(2, fake.clock() - timedelta(minutes=5))
        sync = engine_on(store, host)
        assert sync.run_cycle(KEY, connector).outcome is Outcome.COMPLETED
        entries = sync.history(KEY)
        status = status_of(sync.state(KEY), now=host(), history=summarize(entries))
    skew = entries[0].clock_skew
    assert skew is not None
    assert abs(skew + TEN_MINUTES) <= WITHIN
    assert (
        "The source's clock is 10 minutes behind this host's; times are read on the source's "
        "clock." in status.hover
    )


def test_a_source_on_the_host_s_clock_measures_no_skew() -> None:
    """Clocks that agree (to the Date's second) give a skew of exactly zero: nothing changes."""
    with source_off_by(timedelta(milliseconds=300)) as (host, fake, connector):
        fake.load(2, fake.clock() - timedelta(minutes=5))
        sync = engine_on(InMemoryStore(), host)
        sync.run_cycle(KEY, connector)
    assert sync.history(KEY)[0].clock_skew == timedelta(0)
    assert connector.clock_skew() == timedelta(0)
