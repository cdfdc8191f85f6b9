"""Tests for incsync.connectors.retry: backoff, Retry-After, and the retry loop's decisions."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incsync.connectors.retry import (
    MAX_RETRY_AFTER,
    Failure,
    RetryPolicy,
    Throttle,
    ThrottleGate,
    call_with_retries,
    parse_retry_after,
)
from incsync.errors import (
    AuthError,
    ConfigurationError,
    NaiveDatetimeError,
    RateLimitedError,
    TransientSourceError,
)
from tests.strategies import utc_datetimes

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
EXACT = RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=8.0, max_total_wait=100.0, jitter=0)


def _script(*outcomes: str | Failure) -> tuple[Callable[[], str | Failure], list[int]]:
    """An attempt that returns the given outcomes in turn and counts its calls."""
    calls: list[int] = []

    def attempt() -> str | Failure:
        calls.append(len(calls) + 1)
        return outcomes[min(len(calls), len(outcomes)) - 1]

    return attempt, calls


def _transient(message: str = "HTTP 503") -> Failure:
    return Failure(TransientSourceError(message, status_code=503), retry=True)


# -- RetryPolicy -------------------------------------------------------------------------------


def test_backoff_doubles_from_the_base_up_to_the_maximum() -> None:
    """Without jitter the waits are base, 2·base, 4·base… and never above max_delay."""
    assert [EXACT.backoff(n, 0.99) for n in range(1, 7)] == [1, 2, 4, 8, 8, 8]


def test_jitter_takes_a_random_share_off_each_wait() -> None:
    """jitter=0.5 keeps at least half of each wait; the random value picks how much more."""
    policy = RetryPolicy(base_delay=4.0, max_delay=4.0, jitter=0.5)
    assert policy.backoff(1, 0.0) == 4.0
    assert policy.backoff(1, 0.5) == 3.0
    assert policy.backoff(1, 0.999) == pytest.approx(2.002)


@given(st.integers(min_value=1, max_value=10_000), st.floats(min_value=0, max_value=0.999))
def test_backoff_stays_within_its_bounds(failures: int, random_value: float) -> None:
    """Every wait lies in [(1 - jitter)·delay, delay] and never exceeds max_delay."""
    policy = RetryPolicy(base_delay=0.5, max_delay=30.0, jitter=0.5)
    wait = policy.backoff(failures, random_value)
    assert 0 <= wait <= 30.0
    assert wait >= 0.5 * min(30.0, 0.5 * 2 ** min(failures - 1, 64)) - 1e-9


@pytest.mark.parametrize(
    "changes",
    [
        {"max_attempts": 0},
        {"max_attempts": 1.5},
        {"max_attempts": True},
        {"base_delay": -1},
        {"max_delay": float("inf")},
        {"max_total_wait": float("nan")},
        {"jitter": 1.5},
        {"jitter": -0.1},
    ],
)
def test_retry_policy_refuses_values_out_of_range(changes: dict[str, object]) -> None:
    """RetryPolicy checks its values on construction, naming the field."""
    with pytest.raises(ConfigurationError, match=next(iter(changes))):
        RetryPolicy(**changes)  # type: ignore[arg-type]


# -- Retry-After and Throttle --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        ("Fri, 01 Mar 2024 12:05:00 GMT", T0 + timedelta(minutes=5)),
        ("Fri, 01 Mar 2024 13:05:00 +0100", T0 + timedelta(minutes=5)),
        ("Fri, 01 Mar 2024 12:05:00 -0000", T0 + timedelta(minutes=5)),
        ("99999999999999999999", MAX_RETRY_AFTER),
        (None, None),
        ("", None),
        ("-5", None),
        ("soon", None),
        ("Fri, 99 Mar 2024 12:05:00 GMT", None),
    ],
)
def test_parse_retry_after_reads_seconds_and_http_dates(
    value: str | None, expected: float | datetime | None
) -> None:
    """Seconds become a float (bounded), HTTP dates an aware UTC datetime, anything else None."""
    parsed = parse_retry_after(value)
    assert parsed == expected
    if isinstance(parsed, datetime):
        assert parsed.tzinfo is timezone.utc


@given(st.integers(min_value=0, max_value=10**9))
def test_parse_retry_after_round_trips_delay_seconds(seconds: int) -> None:
    """Any whole number of seconds is read back as itself, up to the bound."""
    assert parse_retry_after(str(seconds)) == min(float(seconds), MAX_RETRY_AFTER)


@given(utc_datetimes(datetime(1970, 1, 1), datetime(9999, 1, 1)))  # noqa: DTZ001 - bounds
def test_parse_retry_after_round_trips_http_dates(moment: datetime) -> None:
    """An HTTP date written by the standard library is read back as the same second, in UTC."""
    whole_second = moment.replace(microsecond=0)
    assert parse_retry_after(format_datetime(whole_second, usegmt=True)) == whole_second


@given(st.text(max_size=40))
def test_parse_retry_after_never_raises(value: str) -> None:
    """Vendors send odd values; parsing is total and answers None when it cannot read one."""
    parsed = parse_retry_after(value)
    assert parsed is None or isinstance(parsed, (float, datetime))


def test_throttle_from_header_keeps_a_delay_or_a_moment() -> None:
    """A delay stays relative; a date becomes retry_at; wait_seconds measures from now."""
    relative = Throttle.from_header("429", "30")
    absolute = Throttle.from_header("429", "Fri, 01 Mar 2024 12:05:00 GMT", quota=True)
    silent = Throttle.from_header("429", None)
    assert (relative.retry_after, relative.retry_at, relative.quota) == (30.0, None, False)
    assert (absolute.retry_at, absolute.quota) == (T0 + timedelta(minutes=5), True)
    assert relative.wait_seconds(T0) == 30.0
    assert absolute.wait_seconds(T0) == 300.0
    assert absolute.wait_seconds(T0 + timedelta(hours=1)) == 0.0
    assert silent.wait_seconds(T0) is None


def test_throttle_refuses_a_naive_retry_at() -> None:
    """retry_at must be aware: a naive one is refused at construction."""
    with pytest.raises(NaiveDatetimeError):
        Throttle("429", retry_at=datetime(2024, 3, 1))  # noqa: DTZ001 - the point of the test


# -- call_with_retries ---------------------------------------------------------------------------


def test_an_answer_is_returned_without_waiting() -> None:
    """A first attempt that answers is returned; nothing sleeps."""
    attempt, calls = _script("answer")
    slept: list[float] = []
    assert call_with_retries(attempt, EXACT, sleep=slept.append) == "answer"
    assert (calls, slept) == ([1], [])


def test_retryable_failures_are_retried_with_growing_waits() -> None:
    """Two transient failures, then an answer: two backoff waits were slept, 1 s then 2 s."""
    attempt, calls = _script(_transient(), _transient(), "answer")
    slept: list[float] = []
    assert call_with_retries(attempt, EXACT, sleep=slept.append) == "answer"
    assert calls == [1, 2, 3]
    assert slept == [1.0, 2.0]


def test_the_wait_a_source_asks_for_wins_over_a_shorter_backoff() -> None:
    """A failure asking for 7 s waits 7 s even though the backoff would wait 1 s."""
    asked = Failure(RateLimitedError("429"), retry=True, wait_at_least=7.0)
    attempt, _ = _script(asked, "answer")
    slept: list[float] = []
    call_with_retries(attempt, EXACT, sleep=slept.append)
    assert slept == [7.0]


def test_a_final_failure_is_raised_at_once() -> None:
    """A failure marked final (rejected credentials) is raised after one attempt, unchanged."""
    error = AuthError("HTTP 401")
    attempt, calls = _script(Failure(error, retry=False))
    slept: list[float] = []
    with pytest.raises(AuthError) as caught:
        call_with_retries(attempt, EXACT, sleep=slept.append)
    assert caught.value is error
    assert str(caught.value) == "HTTP 401"
    assert (calls, slept) == ([1], [])


def test_running_out_of_attempts_raises_the_last_failure_saying_how_many() -> None:
    """After max_attempts failures the last error is raised; its message counts the attempts."""
    attempt, calls = _script(_transient("first"), _transient("second"), _transient("third"))
    slept: list[float] = []
    policy = RetryPolicy(max_attempts=3, base_delay=1.0, jitter=0)
    with pytest.raises(TransientSourceError) as caught:
        call_with_retries(attempt, policy, sleep=slept.append)
    assert calls == [1, 2, 3]
    assert slept == [1.0, 2.0]
    assert str(caught.value) == "third (gave up after 3 attempts, 3.0 s waiting)"
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


def test_a_wait_that_would_pass_the_cap_is_not_made() -> None:
    """With 10 s of waiting allowed, 1+2+4 s are slept and the 8 s wait is not: it fails first."""
    attempt, calls = _script(_transient())
    slept: list[float] = []
    policy = RetryPolicy(max_attempts=10, base_delay=1.0, max_delay=60, max_total_wait=10, jitter=0)
    with pytest.raises(TransientSourceError, match=r"after 4 attempts, 7\.0 s waiting"):
        call_with_retries(attempt, policy, sleep=slept.append)
    assert slept == [1.0, 2.0, 4.0]
    assert sum(slept) <= policy.max_total_wait
    assert len(calls) == 4


def test_the_time_cap_counts_the_first_attempt() -> None:
    """max_total_wait bounds the whole request from its first attempt: a first attempt that took
    0.05 s leaves 0.95 s of a 1 s cap, too little for a 0.97 s wait, so none is made."""

    def slow_failure() -> str | Failure:
        calls.append(len(calls) + 1)
        time.sleep(0.05)
        return _transient()

    calls: list[int] = []
    slept: list[float] = []
    policy = RetryPolicy(max_attempts=5, base_delay=0.97, max_total_wait=1.0, jitter=0)
    with pytest.raises(TransientSourceError) as caught:
        call_with_retries(slow_failure, policy, sleep=slept.append)
    assert (calls, slept) == ([1], [])
    assert str(caught.value) == "HTTP 503"


def test_a_long_retry_after_fails_at_once_instead_of_waiting() -> None:
    """A source asking for an hour, with two minutes of waiting allowed, fails without sleeping."""
    limited = RateLimitedError("429", retry_at=T0 + timedelta(hours=1))
    attempt, calls = _script(Failure(limited, retry=True, wait_at_least=3600.0))
    slept: list[float] = []
    with pytest.raises(RateLimitedError) as caught:
        call_with_retries(attempt, RetryPolicy(max_total_wait=120), sleep=slept.append)
    assert caught.value.retry_at == T0 + timedelta(hours=1)
    assert (calls, slept) == ([1], [])


def test_a_single_attempt_policy_never_retries() -> None:
    """max_attempts=1 turns retries off."""
    attempt, calls = _script(_transient(), "answer")
    with pytest.raises(TransientSourceError):
        call_with_retries(attempt, RetryPolicy(max_attempts=1), sleep=lambda _: None)
    assert calls == [1]


def test_exceptions_from_the_attempt_propagate_unchanged_and_unretried() -> None:
    """An exception (a host callback's, a bug) is not a failure to retry: it reaches the caller."""
    calls: list[int] = []

    def attempt() -> str:
        calls.append(1)
        raise KeyError("host bug")

    with pytest.raises(KeyError, match="host bug"):
        call_with_retries(attempt, EXACT, sleep=lambda _: None)
    assert calls == [1]


def test_the_random_source_is_injectable() -> None:
    """The jitter comes from the injected random function, so waits are reproducible."""
    attempt, _ = _script(_transient(), _transient(), "answer")
    slept: list[float] = []
    policy = RetryPolicy(base_delay=2.0, jitter=1.0)
    call_with_retries(attempt, policy, sleep=slept.append, random=lambda: 0.25)
    assert slept == [1.5, 3.0]


@given(
    st.lists(st.booleans(), min_size=1, max_size=12),
    st.integers(min_value=1, max_value=8),
    st.floats(min_value=0, max_value=50),
)
def test_the_loop_respects_every_limit(
    answers: list[bool], max_attempts: int, max_total_wait: float
) -> None:
    """Whatever the outcomes: attempts <= max_attempts, total sleep <= max_total_wait, and the
    result is an answer exactly when one of the attempts made answered."""
    outcomes: list[str | Failure] = ["answer" if ok else _transient() for ok in answers]
    attempt, calls = _script(*outcomes)
    slept: list[float] = []
    policy = RetryPolicy(max_attempts=max_attempts, max_total_wait=max_total_wait, jitter=0.5)
    try:
        result: str | None = call_with_retries(attempt, policy, sleep=slept.append)
    except TransientSourceError:
        result = None
    made = [outcomes[min(n, len(outcomes)) - 1] for n in calls]
    assert len(calls) <= max_attempts
    assert sum(slept) <= max_total_wait + 1e-9
    assert len(slept) == len(calls) - 1
    assert (result == "answer") == ("answer" in made)


def test_a_throttle_gate_holds_back_other_threads_and_keeps_a_pace() -> None:
    """A gate shut by one thread's throttle holds back the others until it opens, never the
    thread that shut it (its retry loop waits); with a pace, starts are spaced by it."""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    slept: list[float] = []
    gate = ThrottleGate()
    gate.wait(start, slept.append)
    gate.hold(start + timedelta(seconds=7), now=start)
    gate.wait(start, slept.append)  # the thread that shut it
    other = threading.Thread(target=gate.wait, args=(start + timedelta(seconds=2), slept.append))
    other.start()
    other.join()
    assert slept == [5.0]
    gate.answered()  # the thread that shut it was answered: the gate is open
    other = threading.Thread(target=gate.wait, args=(start, slept.append))
    other.start()
    other.join()
    assert slept == [5.0]

    paced: list[float] = []
    steady = ThrottleGate(pace=timedelta(milliseconds=250))
    for _ in range(3):
        steady.wait(start, paced.append)
    steady.wait(start + timedelta(seconds=2), paced.append)
    assert paced == [0.25, 0.5]
