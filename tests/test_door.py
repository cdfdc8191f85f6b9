"""Values are checked where they enter: far times, naive times, bad settings and empty keys."""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incsync import (
    Checkpoint,
    ConfigurationError,
    Cursor,
    NaiveDatetimeError,
    Outcome,
    RateLimitedError,
    StatusPolicy,
    SyncEngine,
    SyncPolicy,
    Window,
)
from incsync.connectors import (
    BaseConnector,
    BearerToken,
    FileConnector,
    InMemoryConnector,
    InMemorySource,
)
from incsync.connectors.base import RawPage
from incsync.connectors.http import HttpOptions
from incsync.connectors.retry import RetryPolicy
from incsync.cursor import horizon, window_after
from incsync.scheduling import SourcePlan, due_at, run_due
from incsync.state import Lease, SourceState
from incsync.testing import InMemoryStore, ManualClock
from incsync.timestamps import EARLIEST, LATEST, earlier, later
from incsync.vendors import (
    HubSpotConnector,
    PipedriveConnector,
    QuickBooksConnector,
    SalesforceConnector,
    StripeConnector,
    quickbooks_auth,
)
from tests.helpers import Store
from tests.strategies import cursors, utc_datetimes

UTC = timezone.utc
NOW = datetime(2026, 11, 13, 9, 41, 7, tzinfo=UTC)
KEY = "acme/invoices"
NAIVE = datetime(2026, 11, 13, 9, 41, 7)  # noqa: DTZ001 - the mistake under test
DOTNET_NEVER = "0001-01-01T00:00:00Z"

any_timedelta = st.timedeltas(min_value=timedelta.min, max_value=timedelta.max)
# Hypothesis rarely draws the ends of the calendar by itself; these are where arithmetic overflows.
far_or_any_times = st.one_of(
    st.sampled_from(
        [EARLIEST, EARLIEST + timedelta(minutes=5), LATEST - timedelta(hours=1), LATEST]
    ),
    utc_datetimes(),
)


# -- far times ---------------------------------------------------------------------------------


@given(cursors(), any_timedelta)
def test_window_after_never_raises_and_never_starts_after_its_cursor(
    cursor: Cursor, lookback: timedelta
) -> None:
    """Any cursor and any lookback give a window from at most the cursor, at least the earliest."""
    window = window_after(cursor, lookback)

    assert window.start is not None
    assert EARLIEST <= window.start <= cursor.updated_at
    if timedelta(0) <= lookback <= cursor.updated_at - EARLIEST:
        assert window.start == cursor.updated_at - lookback


def test_a_lookback_before_the_first_representable_time_reads_from_the_beginning() -> None:
    """.NET's ``DateTime.MinValue`` as the cursor, minus a lookback, starts at the earliest time."""
    cursor = Cursor(datetime(1, 1, 1, tzinfo=UTC), "never")

    assert window_after(cursor, timedelta(minutes=5)).start == EARLIEST


@given(far_or_any_times, any_timedelta)
def test_horizon_never_raises(started: datetime, safety_lag: timedelta) -> None:
    """A cycle's horizon is its start minus the lag, or the earliest time when that is too far."""
    limit = horizon(started, safety_lag)

    assert limit.updated_at == earlier(started, safety_lag)


@given(far_or_any_times, any_timedelta)
def test_earlier_and_later_stay_within_range(moment: datetime, span: timedelta) -> None:
    """Moving a time by any span saturates at the ends of datetime's range instead of raising."""
    for moved, exact in (
        (earlier(moment, span), operator.sub),
        (later(moment, span), operator.add),
    ):
        assert EARLIEST <= moved <= LATEST
        assert moved.tzinfo is UTC
        with contextlib.suppress(OverflowError):  # only where plain arithmetic has an answer
            assert moved == exact(moment, span)


def test_a_lease_longer_than_the_calendar_expires_at_the_last_representable_time(
    store: Store,
) -> None:
    """A huge lease_ttl is accepted; the lease expires at the end of datetime's range, kept so."""
    lease = store.acquire_lease(KEY, "one", NOW, timedelta.max)

    assert lease is not None
    assert lease.expires_at == LATEST
    assert store.load(KEY).lease == lease
    assert store.acquire_lease(KEY, "two", NOW + timedelta(days=3650), timedelta.max) is None


@pytest.mark.parametrize("ordered", [True, False])
def test_a_record_stamped_dotnet_min_value_does_not_wedge_a_source_with_a_lookback(
    store: Store, ordered: bool
) -> None:
    """A source whose only record is at 0001-01-01T00:00:00Z completes cycle after cycle."""
    source = InMemorySource()
    source.put({"id": "never", "updated_at": DOTNET_NEVER})
    connector = InMemoryConnector(source, ordered=ordered, lookback=timedelta(minutes=5))
    clock = ManualClock(NOW)
    engine = SyncEngine(store, clock=clock)

    first = engine.run_cycle(KEY, connector)
    clock.advance(timedelta(hours=1))
    second = engine.run_cycle(KEY, connector)

    assert (first.outcome, first.applied, first.error) == (Outcome.COMPLETED, 1, None)
    assert (second.outcome, second.already_applied, second.error) == (Outcome.COMPLETED, 1, None)
    assert engine.state(KEY).cursor == Cursor(datetime(1, 1, 1, tzinfo=UTC), "never")


plan_durations = st.one_of(
    st.sampled_from([timedelta(seconds=1), timedelta(days=36_525)]),
    st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=36_525)),
)


@given(
    far_or_any_times,
    st.one_of(st.none(), far_or_any_times),
    st.integers(0, 200),
    plan_durations,
    plan_durations,
)
def test_a_due_time_is_found_for_any_time_and_any_plan(
    now: datetime,
    last_attempt: datetime | None,
    failures: int,
    interval: timedelta,
    backoff_cap: timedelta,
) -> None:
    """Near either end of the calendar and with a century's interval, due_at answers."""
    plan = SourcePlan(KEY, interval, backoff_cap=backoff_cap)
    state = SourceState(KEY, last_attempt=last_attempt, consecutive_failures=failures)

    due = due_at(plan, state, now)

    assert due is not None
    assert EARLIEST <= due <= LATEST


# -- naive times -------------------------------------------------------------------------------

AWARE_ELSEWHERE = datetime(2026, 11, 13, 11, 41, 7, tzinfo=timezone(timedelta(hours=2)))

BUILT_WITH_A_TIME: dict[str, Callable[[datetime], object]] = {
    "window start": lambda at: Window(start=at),
    "last_change": lambda at: Checkpoint(cursor=None, last_change=at),
    "retry_at": lambda at: RateLimitedError("slow down", retry_at=at),
    "cursor updated_at": lambda at: Cursor(at, "r1"),
    "lease expires_at": lambda at: Lease(holder="one", expires_at=at, token=1),
    "last_sync": lambda at: SourceState(KEY, last_sync=at),
}


@pytest.mark.parametrize("field", sorted(BUILT_WITH_A_TIME))
def test_a_naive_datetime_is_refused_where_the_value_is_built(field: str) -> None:
    """Every time a caller hands over is checked on construction, naming the field."""
    with pytest.raises(NaiveDatetimeError) as refused:
        BUILT_WITH_A_TIME[field](NAIVE)

    assert refused.value.field == field


@pytest.mark.parametrize("field", sorted(BUILT_WITH_A_TIME))
def test_an_aware_datetime_in_another_zone_is_kept_in_utc(field: str) -> None:
    """An aware time in any zone is accepted and kept as the same instant in UTC."""
    built = BUILT_WITH_A_TIME[field](AWARE_ELSEWHERE)

    kept = [value for value in _times_of(built) if value == NOW]
    assert kept
    assert all(value.tzinfo is UTC for value in kept)


def _times_of(value: object) -> list[datetime]:
    names = ("start", "last_change", "retry_at", "updated_at", "expires_at", "last_sync")
    return [
        getattr(value, name) for name in names if isinstance(getattr(value, name, None), datetime)
    ]


class RateLimitedWrongly(BaseConnector):
    """A connector that builds its rate-limit error with a naive time (a common slip)."""

    ordered = True

    def fetch(self, window: Window) -> Iterator[RawPage]:
        raise RateLimitedError("daily quota used up", retry_at=NAIVE)


def test_a_naive_retry_at_fails_the_cycle_and_frees_the_source() -> None:
    """The slip fails inside the connector's read: the failure is recorded, the lease released."""
    store = InMemoryStore()
    engine = SyncEngine(store, clock=ManualClock(NOW), holder="one")

    result = engine.run_cycle(KEY, RateLimitedWrongly())

    assert (result.outcome, result.error_class) == (Outcome.FAILED, "NaiveDatetimeError")
    state = engine.state(KEY)
    assert state.consecutive_failures == 1
    assert state.last_error is not None
    assert "retry_at is a naive datetime" in state.last_error.message
    assert store.acquire_lease(KEY, "two", NOW, timedelta(minutes=1)) is not None


class BrokenAfterConstruction(BaseConnector):
    """A connector that changes its error's retry_at to a naive time after building it."""

    ordered = True

    def fetch(self, window: Window) -> Iterator[RawPage]:
        error = RateLimitedError("daily quota used up", retry_at=NOW + timedelta(hours=1))
        error.retry_at = NAIVE
        raise error


def test_a_failure_that_cannot_be_recorded_still_releases_the_lease() -> None:
    """When recording a failure raises, the error reaches the host and the source is not held."""
    store = InMemoryStore()
    engine = SyncEngine(store, clock=ManualClock(NOW), holder="one")

    with pytest.raises(NaiveDatetimeError):
        engine.run_cycle(KEY, BrokenAfterConstruction())

    assert store.acquire_lease(KEY, "two", NOW, timedelta(minutes=1)) is not None


# -- settings ----------------------------------------------------------------------------------

BAD_SETTINGS: dict[str, Callable[[], object]] = {
    "SyncPolicy lease_ttl int": lambda: SyncPolicy(lease_ttl=600),  # type: ignore[arg-type]
    "SyncPolicy lease_ttl zero": lambda: SyncPolicy(lease_ttl=timedelta(0)),
    "SyncPolicy safety_lag int": lambda: SyncPolicy(safety_lag=300),  # type: ignore[arg-type]
    "SyncPolicy safety_lag negative": lambda: SyncPolicy(safety_lag=timedelta(seconds=-1)),
    "SyncPolicy max_consecutive_failures bool": lambda: SyncPolicy(max_consecutive_failures=True),
    "SyncPolicy max_consecutive_failures float": lambda: SyncPolicy(
        max_consecutive_failures=5.0  # type: ignore[arg-type]
    ),
    "SyncPolicy max_auth_failures bool": lambda: SyncPolicy(max_auth_failures=True),
    "SyncPolicy max_auth_failures timedelta": lambda: SyncPolicy(
        max_auth_failures=timedelta(minutes=2)  # type: ignore[arg-type]
    ),
    "StatusPolicy recent_sync int": lambda: StatusPolicy(recent_sync=3600),  # type: ignore[arg-type]
    "StatusPolicy max_auth_failures bool": lambda: StatusPolicy(max_auth_failures=True),
    "StatusPolicy future_tolerance negative": lambda: StatusPolicy(
        future_tolerance=timedelta(seconds=-1)
    ),
    "RetryPolicy max_attempts bool": lambda: RetryPolicy(max_attempts=True),
    "RetryPolicy base_delay bool": lambda: RetryPolicy(base_delay=True),
    "RetryPolicy max_total_wait timedelta": lambda: RetryPolicy(
        max_total_wait=timedelta(minutes=2)  # type: ignore[arg-type]
    ),
    "RetryPolicy jitter bool": lambda: RetryPolicy(jitter=True),
    "HttpOptions max_response_bytes bool": lambda: HttpOptions(max_response_bytes=True),
    "HttpOptions retry": lambda: HttpOptions(retry=5),  # type: ignore[arg-type]
    "SourcePlan interval int": lambda: SourcePlan(KEY, 3600),  # type: ignore[arg-type]
    "SourcePlan backoff_cap of two centuries": lambda: SourcePlan(
        KEY, timedelta(hours=1), backoff_cap=timedelta(days=73_050)
    ),
    "InMemoryConnector page_size float": lambda: InMemoryConnector(
        InMemorySource(),
        page_size=1.5,  # type: ignore[arg-type]
    ),
    "InMemoryConnector page_size bool": lambda: InMemoryConnector(InMemorySource(), page_size=True),
    "InMemoryConnector page_size zero": lambda: InMemoryConnector(InMemorySource(), page_size=0),
    "InMemoryConnector lookback negative": lambda: InMemoryConnector(
        InMemorySource(), lookback=timedelta(seconds=-1)
    ),
    "InMemoryConnector lookback int": lambda: InMemoryConnector(
        InMemorySource(),
        lookback=300,  # type: ignore[arg-type]
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SETTINGS))
def test_a_bad_setting_is_one_clear_error_at_construction(case: str) -> None:
    """Each bad value is a ConfigurationError naming the setting and what it accepts."""
    setting = case.split()[1]

    with pytest.raises(ConfigurationError, match=rf"^{setting} must be ") as refused:
        BAD_SETTINGS[case]()

    assert type(refused.value) is ConfigurationError


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("page_size", 2.5),
        ("page_size", True),
        ("page_size", 0),
        ("lookback", 300),
        ("lookback", timedelta(seconds=-1)),
    ],
)
def test_a_bad_file_connector_setting_is_refused_at_construction(
    tmp_path: Path, setting: str, value: object
) -> None:
    """The file connector checks its page size and lookback like every other setting."""
    with pytest.raises(ConfigurationError, match=rf"^{setting} must be "):
        FileConnector(
            tmp_path,
            id_column="id",
            updated_at_column="updated_at",
            **{setting: value},  # type: ignore[arg-type]
        )


VENDOR_SETTINGS: dict[str, Callable[[], object]] = {
    "QuickBooks page_size float": lambda: QuickBooksConnector(
        "4620816365",
        "Invoice",
        auth=quickbooks_auth("id", "secret", "refresh", access_token="token"),
        page_size=2.5,  # type: ignore[arg-type]
    ),
    "Salesforce batch_size float": lambda: SalesforceConnector(
        "id",
        "secret",
        "refresh",
        batch_size=500.5,  # type: ignore[arg-type]
    ),
    "Pipedrive page_size bool": lambda: PipedriveConnector(api_token="token", page_size=True),
    "Pipedrive lookback int": lambda: PipedriveConnector(
        api_token="token",
        lookback=60,  # type: ignore[arg-type]
    ),
    "HubSpot lookback int": lambda: HubSpotConnector(
        auth=BearerToken("token"),
        lookback=60,  # type: ignore[arg-type]
    ),
    "Stripe lookback int": lambda: StripeConnector(
        secret_key="sk_test_door",
        lookback=60,  # type: ignore[arg-type]
    ),
}


@pytest.mark.parametrize("case", sorted(VENDOR_SETTINGS))
def test_a_vendor_connector_refuses_a_bad_page_size_or_lookback(case: str) -> None:
    """The vendors' page sizes and lookbacks follow the same rules as every other setting."""
    setting = case.split()[1]

    with pytest.raises(ConfigurationError, match=rf"^{setting} must be "):
        VENDOR_SETTINGS[case]()


@pytest.mark.parametrize("setting", ["max_workers", "per_account_limit"])
def test_run_due_refuses_a_bool_for_a_limit(setting: str) -> None:
    """``True`` is no count of workers; run_due says so before it runs anything."""
    limits = {"max_workers": 2, "per_account_limit": 1, setting: True}
    engine = SyncEngine(InMemoryStore(), clock=ManualClock(NOW))

    with pytest.raises(ConfigurationError, match=rf"^{setting} must be an integer >= 1"):
        run_due(
            engine,
            [],
            lambda _key: InMemoryConnector(InMemorySource()),
            max_workers=limits["max_workers"],
            per_account_limit=limits["per_account_limit"],
        )


def test_good_settings_are_kept_as_given() -> None:
    """The checks refuse only wrong kinds: zero lag, one failure, one-record pages are fine."""
    policy = SyncPolicy(lease_ttl=timedelta(seconds=1), safety_lag=timedelta(0))
    assert (policy.safety_lag, SyncPolicy(max_auth_failures=1).max_auth_failures) == (
        timedelta(0),
        1,
    )
    assert InMemoryConnector(InMemorySource(), page_size=1).page_size == 1
    assert RetryPolicy(base_delay=0, jitter=1).jitter == 1


# -- source keys -------------------------------------------------------------------------------

ENGINE_COMMANDS: dict[str, Callable[[SyncEngine, str], object]] = {
    "run_cycle": lambda engine, key: engine.run_cycle(key, InMemoryConnector(InMemorySource())),
    "reset": SyncEngine.reset,
    "cancel": SyncEngine.cancel,
    "resume": SyncEngine.resume,
    "state": SyncEngine.state,
    "rejected": SyncEngine.rejected,
}


@pytest.mark.parametrize("key", ["", "   ", None])
@pytest.mark.parametrize("command", sorted(ENGINE_COMMANDS))
def test_the_engine_refuses_a_source_key_the_scheduler_refuses(command: str, key: object) -> None:
    """Every engine command asks the one rule for source keys; nothing is written for them."""
    store = InMemoryStore()
    engine = SyncEngine(store, clock=ManualClock(NOW))

    with pytest.raises(ConfigurationError, match=r"^source_key must be a non-empty string"):
        ENGINE_COMMANDS[command](engine, key)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"^source_key must be a non-empty string"):
        SourcePlan(key, timedelta(hours=1))  # type: ignore[arg-type]

    assert store.list_states() == []
