"""The skew of a source's clock, estimated from the Date of its answers (incsync.clocks)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incsync.clocks import ClockSample, estimate_skew, source_now
from incsync.cursor import Cursor, horizon
from incsync.errors import NaiveDatetimeError
from incsync.testing import ManualClock
from incsync.timestamps import UTC, from_micros, to_micros

T = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def sample(offset: timedelta, round_trip: timedelta = timedelta(milliseconds=40)) -> ClockSample:
    """An answer from a server ``offset`` off the host, dated halfway through ``round_trip``."""
    sent = T
    served = T + round_trip / 2 + offset
    return ClockSample(sent, T + round_trip, served.replace(microsecond=0))


def test_no_answer_measures_nothing() -> None:
    """Without a sample there is no figure, not a zero."""
    assert estimate_skew([]) is None


@pytest.mark.parametrize("minutes", [-10, 10])
def test_a_clock_minutes_off_is_measured_to_the_second(minutes: int) -> None:
    """A source 10 minutes behind (or ahead) measures so, within the Date's one second."""
    skew = estimate_skew([sample(timedelta(minutes=minutes))])
    assert skew is not None
    assert abs(skew - timedelta(minutes=minutes)) <= timedelta(seconds=1)


def test_a_skew_within_its_uncertainty_counts_as_zero() -> None:
    """Clocks that agree to within the round trip and the Date's second have no skew."""
    assert estimate_skew([sample(timedelta(milliseconds=700))]) == timedelta(0)
    assert estimate_skew([sample(timedelta(seconds=-3), timedelta(seconds=6))]) == timedelta(0)


def test_the_median_ignores_an_odd_answer() -> None:
    """One answer dated wrong (a proxy's, a cache's) does not move the figure."""
    samples = [sample(timedelta(minutes=-10)) for _ in range(4)] + [sample(timedelta(days=3))]
    skew = estimate_skew(samples)
    assert skew is not None
    assert abs(skew + timedelta(minutes=10)) <= timedelta(seconds=1)


def test_sample_times_must_be_aware() -> None:
    """A naive time is refused with the field it was given for."""
    with pytest.raises(NaiveDatetimeError, match="dated"):
        ClockSample(T, T, datetime(2024, 6, 1))  # noqa: DTZ001 - the naive time under test


def test_a_sample_s_times_are_kept_in_utc() -> None:
    """Aware times in any zone are moved to UTC."""
    zone = timezone(timedelta(hours=2))
    kept = ClockSample(T.astimezone(zone), T, T)
    assert kept.sent.tzinfo is UTC


@given(
    offset_ms=st.integers(-86_400_000, 86_400_000),
    trips_ms=st.lists(st.integers(0, 5_000), min_size=1, max_size=9),
    fractions=st.lists(st.floats(0, 1), min_size=9, max_size=9),
)
def test_the_estimate_is_within_its_bound_of_the_true_skew(
    offset_ms: int, trips_ms: list[int], fractions: list[float]
) -> None:
    """However the server's moment falls in each round trip, the figure is the true skew within
    the largest bound of the samples (half a round trip and a second), or zero within it."""
    offset = timedelta(milliseconds=offset_ms)
    samples = []
    for trip_ms, fraction in zip(trips_ms, fractions[: len(trips_ms)], strict=True):
        trip = timedelta(milliseconds=trip_ms)
        served = T + trip * fraction + offset
        samples.append(ClockSample(T, T + trip, from_micros(to_micros(served) // 10**6 * 10**6)))
    skew = estimate_skew(samples)
    assert skew is not None
    bound = max(trips_ms) / 2_000 + 1
    assert abs((skew - offset).total_seconds()) <= bound or (
        skew == timedelta(0) and abs(offset.total_seconds()) <= 2 * bound
    )


def test_source_now_moves_the_host_s_time_by_the_skew() -> None:
    """The source's time is the host's plus the skew; unknown skew reads the host's clock."""
    assert source_now(T, timedelta(minutes=-10)) == T - timedelta(minutes=10)
    assert source_now(T, None) == T


def test_the_horizon_is_on_the_source_s_clock() -> None:
    """The cursor stops a lag before the source's now: 10 minutes earlier for a source behind."""
    lag = timedelta(minutes=1)
    assert horizon(T, lag) == Cursor(T - lag)
    assert horizon(T, lag, timedelta(minutes=-10)) == Cursor(T - timedelta(minutes=11))
    assert horizon(T, lag, timedelta(0)) == horizon(T, lag)


def test_a_shifted_manual_clock_moves_with_its_own() -> None:
    """A fake's clock shifted from the host's stays the same span off whichever is moved."""
    host = ManualClock(T)
    source = host.shifted(timedelta(minutes=-10))
    assert source() == T - timedelta(minutes=10)
    host.advance(timedelta(minutes=5))
    assert source() == T - timedelta(minutes=5)
    source.set(T)
    assert host() == T + timedelta(minutes=10)
    assert source.shifted(timedelta(minutes=10))() == host()
