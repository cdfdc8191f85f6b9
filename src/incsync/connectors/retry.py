"""When to try a request again, and how long to wait first: the pure decisions and their loop.

An attempt either answers or returns a :class:`Failure` saying whether another attempt may help
and how long the source asked us to wait. :func:`call_with_retries` hands those values to
tenacity, which decides "attempt again" or "sleep first"; only the injected ``sleep`` waits, so
tests record the delays instead of spending them. The rules:

* waits grow exponentially (``base_delay`` doubling up to ``max_delay``), shortened by a random
  share (``jitter``) so that many workers throttled together do not return together;
* a wait the source asked for (``Retry-After``) is honoured even when it is longer than the
  backoff;
* ``max_attempts`` bounds the attempts and ``max_total_wait`` the time one request may take, its
  attempts and waits together from the start of the first: when the next wait would end past it,
  the last failure is raised at once (a rate limit carries ``retry_at``, which the engine records
  as the earliest time to try the source again);
* a failure marked final (a rejected credential, a daily quota) is raised without waiting.

:class:`Throttle` is what a vendor's throttle signal means; :func:`parse_retry_after` reads the
``Retry-After`` header in both of its forms.
"""

from __future__ import annotations

import logging
import math
import random as _random
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TypeVar

import attrs
import tenacity

from incsync import telemetry
from incsync.connectors.window import WindowBudget, WindowLimit, budget_after, next_start
from incsync.errors import RateLimitedError, SourceError
from incsync.policy import SettingRule, positive_count
from incsync.protocols import AccountHolds
from incsync.timestamps import UTC, ensure_utc

__all__ = [
    "MAX_RETRY_AFTER",
    "Failure",
    "RetryPolicy",
    "Sleep",
    "Throttle",
    "ThrottleGate",
    "call_with_retries",
    "parse_http_date",
    "parse_retry_after",
]

logger = logging.getLogger("incsync.connectors")

T = TypeVar("T")

Sleep = Callable[[float], None]
"""Waits the given number of seconds; ``time.sleep`` unless a test injects a recorder."""

MAX_RETRY_AFTER = 366 * 86_400.0
"""The longest wait :func:`parse_retry_after` reports, in seconds; longer values are nonsense."""

_DELAY_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def _is_seconds(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _is_fraction(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


_SECONDS = SettingRule("a finite number of seconds >= 0", _is_seconds)
_FRACTION = SettingRule("a number from 0 to 1", _is_fraction)


def _optional_utc(value: datetime | None) -> datetime | None:
    return None if value is None else ensure_utc(value, "retry_at")


@attrs.frozen
class RetryPolicy:
    """How a connector retries a failed request within one cycle. Times are in seconds.

    Args:
        max_attempts: Attempts per request, the first included (1 disables retries).
        base_delay: The wait after the first failure; it doubles after each further one.
        max_delay: The longest backoff wait (a source's own ``Retry-After`` may ask for more).
        max_total_wait: The longest one request may take, its attempts and the waits between
            them together, counted from the start of the first attempt. When the next wait would
            end past it the request fails at once, so a long throttle or a slow source fails the
            cycle (recording when to try again) instead of holding the worker.
        jitter: The share of each backoff wait that is random: 0 waits exactly, 1 waits anything
            from nothing up to the full delay.

    Raises:
        ConfigurationError: A value is out of range.
    """

    max_attempts: int = attrs.field(default=5, validator=positive_count)
    base_delay: float = attrs.field(default=1.0, validator=_SECONDS)
    max_delay: float = attrs.field(default=30.0, validator=_SECONDS)
    max_total_wait: float = attrs.field(default=120.0, validator=_SECONDS)
    jitter: float = attrs.field(default=0.5, validator=_FRACTION)

    def backoff(self, failures: int, random_value: float) -> float:
        """Return the wait after the ``failures``-th failed attempt (1 for the first).

        Args:
            failures: How many attempts have failed so far.
            random_value: A number in [0, 1) that picks the jitter (``random.random()``).
        """
        # The exponent is bounded so that a large max_attempts cannot overflow a float.
        delay = min(self.max_delay, self.base_delay * 2.0 ** min(failures - 1, 64))
        return delay * (1.0 - self.jitter * random_value)


@attrs.frozen
class Throttle:
    """What a throttling response asks of us, as a vendor signals it.

    Args:
        reason: What the vendor said, in words for an error message (``"HubSpot DAILY limit"``).
        retry_after: Seconds to wait before asking again, when the vendor said so.
        retry_at: The moment to ask again, when the vendor named one (an HTTP date).
        quota: A long-period quota is used up (daily limits): waiting inside the cycle cannot
            help, so the cycle fails at once and the source is tried again later.
    """

    reason: str
    retry_after: float | None = None
    retry_at: datetime | None = attrs.field(default=None, converter=_optional_utc)
    quota: bool = False

    @classmethod
    def from_header(cls, reason: str, retry_after: str | None, *, quota: bool = False) -> Throttle:
        """Build a throttle whose wait comes from a ``Retry-After`` header value (or none)."""
        wait = parse_retry_after(retry_after)
        if isinstance(wait, datetime):
            return cls(reason, retry_at=wait, quota=quota)
        return cls(reason, retry_after=wait, quota=quota)

    def wait_seconds(self, now: datetime) -> float | None:
        """Return how long to wait from ``now``, or ``None`` when the vendor did not say."""
        if self.retry_at is not None:
            return max(0.0, (self.retry_at - now).total_seconds())
        return self.retry_after


def parse_retry_after(value: str | None) -> float | datetime | None:
    """Read a ``Retry-After`` header: delay seconds, or an HTTP date.

    Args:
        value: The header's value, or ``None`` when it was absent.

    Returns:
        The delay in seconds (at most :data:`MAX_RETRY_AFTER`) for a number, the aware UTC
        moment for a date, or ``None`` for an absent or unreadable value, which the caller treats
        as "no advice" rather than as an error (vendors send odd values).
    """
    if value is None:
        return None
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        return min(float(text), MAX_RETRY_AFTER)
    return parse_http_date(text)


def parse_http_date(value: str | None) -> datetime | None:
    """Read an HTTP date (``Date``, ``Retry-After``: ``Sun, 06 Nov 1994 08:49:37 GMT``).

    Returns:
        The aware UTC moment, or ``None`` for an absent or unreadable value.
    """
    if value is None:
        return None
    try:
        moment = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    # "-0000" means "UTC, zone not known" and comes back naive; HTTP dates are GMT anyway.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@attrs.frozen
class Failure:
    """One failed attempt, as the retry loop sees it.

    Args:
        error: The error to raise if this is the last attempt.
        retry: Whether another attempt may succeed within this cycle.
        wait_at_least: Seconds the source asked us to wait before the next attempt.
    """

    error: SourceError
    retry: bool
    wait_at_least: float = 0.0


class ThrottleGate:
    """Holds back every request of one connector while the vendor asked one of them to wait.

    The time partitions of a full read (:mod:`incsync.partitions`) are read by several threads
    through one connector, so one account: when the vendor answers one of them "slow down", the
    thread that got the answer waits in its retry loop, and every other request of the connector
    waits here until the same time, instead of being refused in turn. With a ``pace``, requests
    also start at least that far apart, so readers together stay under a vendor's per-second
    limit rather than backing off after its refusals. Once an answer has stated the vendor's
    fixed-window limit (:meth:`note_window`), requests also start only while the window has some
    left, and wait for the next window when it has none (:mod:`incsync.connectors.window`).
    Gates that :meth:`share` one account's
    :class:`~incsync.protocols.AccountHolds` (the connectors of every worker of a Celery
    deployment) also hold one another back: a wait one of them is asked for is published there,
    and each consults it before every request.

    Args:
        pace: The least time between the starts of two requests; zero: none.
    """

    def __init__(self, pace: timedelta = timedelta(0)) -> None:
        self._lock = threading.Lock()
        self._open_at: datetime | None = None
        self._holder: int | None = None
        self._pace = pace
        self._next_start: datetime | None = None
        self._budget: WindowBudget | None = None
        self._tickets = 0
        self._shared: tuple[AccountHolds, str] | None = None

    def share(self, holds: AccountHolds, account: str) -> None:
        """Publish this gate's holds to ``holds`` under ``account``, and wait for theirs."""
        self._shared = (holds, account)

    def note_window(self, stated: WindowLimit, *, sent: datetime, ticket: int) -> None:
        """Keep what an answer says of the vendor's window limit for the requests after it.

        Args:
            stated: What the answer says.
            sent: When its request was sent.
            ticket: What :meth:`wait` returned for its request.
        """
        with self._lock:
            self._budget = budget_after(
                self._budget, stated, sent=sent, started_since=self._tickets - ticket
            )

    def hold(self, until: datetime, *, now: datetime) -> None:
        """Keep the gate shut until ``until``; the calling thread waits in its own retries.

        A shared gate also holds its account for the other gates (``until`` less ``now``).
        """
        with self._lock:
            if self._open_at is None or until > self._open_at:
                self._open_at, self._holder = until, threading.get_ident()
        if self._shared is not None and until > now:
            holds, account = self._shared
            holds.hold(account, until - now)

    def answered(self) -> None:
        """Open the gate if the calling thread shut it: the vendor answered it again."""
        with self._lock:
            if self._holder == threading.get_ident():
                self._open_at, self._holder = None, None

    def wait(self, now: datetime, sleep: Sleep) -> int:
        """Wait until the gate opens (unless the calling thread shut it) and the limits allow.

        Returns:
            This request's ticket: how many requests had been let through, this one included.
        """
        # The thread that shut the gate is the one asking the vendor again, on its own schedule.
        holder = self._holder == threading.get_ident()
        shared = timedelta(0)
        if self._shared is not None and not holder:
            holds, account = self._shared
            shared = holds.remaining(account)  # I/O, outside the lock
        with self._lock:
            start = now + shared
            if self._open_at is not None and self._holder != threading.get_ident():
                start = max(start, self._open_at)
            if self._pace > timedelta(0):
                # Each caller takes the next start, so waiting callers keep the pace together.
                start = start if self._next_start is None else max(start, self._next_start)
                self._next_start = start + self._pace
            if self._budget is not None:
                start, self._budget = next_start(self._budget, start)
            self._tickets += 1
            ticket = self._tickets
        seconds = (start - now).total_seconds()
        if seconds > 0:
            sleep(seconds)
        return ticket


def call_with_retries(
    attempt: Callable[[], T | Failure],
    policy: RetryPolicy,
    *,
    sleep: Sleep = time.sleep,
    random: Callable[[], float] = _random.random,
) -> T:
    """Run ``attempt`` until it answers; raise the last failure's error when retrying must stop.

    Args:
        attempt: Makes one attempt; returns the answer or a :class:`Failure`. Exceptions it raises
            are not retried and propagate unchanged.
        policy: The limits on attempts and waiting.
        sleep: Waits between attempts.
        random: Picks the jitter of each wait.

    Returns:
        The first answer.

    Raises:
        SourceError: The last failure's error: it was final, the attempts ran out, or the next wait
            would end past ``policy.max_total_wait``. When more than one attempt was made, its
            message says how many, and how long was spent waiting.
    """
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_result(_is_retryable),
        wait=_Wait(policy, random),
        stop=tenacity.stop_after_attempt(policy.max_attempts) | _TimeCap(policy.max_total_wait),
        sleep=sleep,
        before_sleep=_log_retry,
        # Hand the last Failure back as a value: tenacity's RetryError never leaves this module.
        retry_error_callback=_last_result,
    )
    outcome: T | Failure = retrying(attempt)
    if not isinstance(outcome, Failure):
        return outcome
    error = outcome.error
    attempts = retrying.statistics.get("attempt_number", 1)
    if attempts > 1:
        waited = retrying.statistics.get("idle_for", 0.0)
        error.args = (f"{error} (gave up after {attempts} attempts, {waited:.1f} s waiting)",)
    raise error


def _is_retryable(outcome: object) -> bool:
    return isinstance(outcome, Failure) and outcome.retry


def _last_result(retry_state: tenacity.RetryCallState) -> object:
    assert retry_state.outcome is not None  # tenacity only stops after an attempt
    return retry_state.outcome.result()


def _log_retry(retry_state: tenacity.RetryCallState) -> None:
    failure = retry_state.outcome.result() if retry_state.outcome is not None else None
    # Being asked to slow down is how a busy vendor works, not a fault: INFO. Other failures that
    # are retried (5xx, a dropped connection) may point at trouble: WARNING.
    throttled = isinstance(failure, Failure) and isinstance(failure.error, RateLimitedError)
    vendor = failure.error.vendor if isinstance(failure, Failure) else None
    telemetry.retried(vendor, retry_state.upcoming_sleep, throttled=throttled)
    logger.log(
        logging.INFO if throttled else logging.WARNING,
        "attempt %d failed, retrying in %.1f s: %s",
        retry_state.attempt_number,
        retry_state.upcoming_sleep,
        failure.error if isinstance(failure, Failure) else failure,
    )


class _Wait(tenacity.wait.wait_base):
    """The backoff, or the source's own wait when that is longer."""

    def __init__(self, policy: RetryPolicy, random: Callable[[], float]) -> None:
        self._policy = policy
        self._random = random

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        backoff = self._policy.backoff(retry_state.attempt_number, self._random())
        failure = retry_state.outcome.result() if retry_state.outcome is not None else None
        asked = failure.wait_at_least if isinstance(failure, Failure) else 0.0
        return max(backoff, asked)


class _TimeCap(tenacity.stop.stop_base):
    """Stops when the wait tenacity is about to make would end past the time the request may take.

    tenacity's clock starts before the first attempt, so it counts every attempt and every wait
    a real ``sleep`` makes. An injected ``sleep`` that does not wait (a test's recorder) passes no
    time on that clock; the waits it was asked for (``idle_for``) are then the larger count.
    """

    def __init__(self, max_total_wait: float) -> None:
        self._max_total_wait = max_total_wait

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        # tenacity computes the next wait before asking whether to stop.
        elapsed = max(retry_state.seconds_since_start or 0.0, retry_state.idle_for)
        return elapsed + retry_state.upcoming_sleep > self._max_total_wait
