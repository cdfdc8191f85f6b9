"""How cautious the engine is, and what it records for a failed cycle: pure values, no I/O.

:class:`SyncPolicy` holds the engine's settings; :func:`decide_failure` turns an exception that
ended a cycle into what the engine records for it (a :class:`FailureDecision`);
:func:`backoff_interval` says how long after a failed cycle the scheduler starts the next. The
status screen reads these from here without loading the engine, its connectors or httpx.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import attrs

from incsync.errors import AuthError, ConfigurationError, RateLimitedError, SourceError
from incsync.redaction import redact
from incsync.state import ErrorInfo

__all__ = [
    "DEFAULT_BACKOFF_CAP",
    "FailureDecision",
    "SyncPolicy",
    "backoff_interval",
    "decide_failure",
    "positive_setting",
]

DEFAULT_BACKOFF_CAP = timedelta(hours=6)
"""The longest wait between the starts of two cycles of a failing source, by default."""


def positive_setting(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """Refuse a duration that is not positive, or a count below 1 (an attrs validator)."""
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise ConfigurationError(f"{attribute.name} must be positive, got {value}")
    elif not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{attribute.name} must be an integer >= 1, got {value!r}")


def _not_negative(_instance: object, attribute: attrs.Attribute[Any], value: timedelta) -> None:
    if value < timedelta(0):
        raise ConfigurationError(f"{attribute.name} must not be negative, got {value}")


@attrs.frozen
class SyncPolicy:
    """How cautious the engine is; the defaults suit hourly cycles against business APIs.

    Args:
        lease_ttl: How long a lease lasts without a checkpoint. A worker that dies mid-cycle blocks
            its source for at most this long. Every checkpoint extends it, so it must exceed the
            time to fetch and write one page.
        safety_lag: The cursor never moves past the cycle's start minus this, so records that
            become visible late at the source (search index lag, long transactions, clock skew)
            are read again by the next cycle.
        max_consecutive_failures: Failed cycles in a row after which the source is stopped (at
            hourly cycles, the default stops a source after five hours of errors).
        max_auth_failures: The same, for failures that waiting cannot heal (credentials rejected).
    """

    lease_ttl: timedelta = attrs.field(default=timedelta(minutes=10), validator=positive_setting)
    safety_lag: timedelta = attrs.field(default=timedelta(minutes=5), validator=_not_negative)
    max_consecutive_failures: int = attrs.field(default=5, validator=positive_setting)
    max_auth_failures: int = attrs.field(default=2, validator=positive_setting)


@attrs.frozen
class FailureDecision:
    """What the engine records for a cycle that ended with an exception.

    Args:
        error: The failure as stored and shown, its message redacted.
        stop_after: The failed cycles in a row at which the store stops the source.
        retry_at: The source may not be called before this time; a failure that carries one is
            waiting, not broken, and does not count towards ``stop_after``.
        reset: The source cannot be read from its cursor any more: reset it, so the next cycle
            re-reads everything, instead of counting a failure.
    """

    error: ErrorInfo
    stop_after: int
    retry_at: datetime | None = None
    reset: bool = False


def decide_failure(
    error: Exception, policy: SyncPolicy, now: datetime, secrets: Iterable[str] = ()
) -> FailureDecision:
    """Decide what a failed cycle means for its source, from the exception's class alone.

    - A :class:`~incsync.errors.SourceError` with ``resync_required`` resets the source; the
      reason is kept with ``retry_at`` now, so it runs again at once and nothing is counted.
    - An :class:`~incsync.errors.AuthError` is not retryable and stops the source after
      ``max_auth_failures``; every other failure after ``max_consecutive_failures``.
    - A :class:`~incsync.errors.RateLimitedError` passes its ``retry_at`` on (or ``None``).
    - Retryability is the class's ``retryable``; an exception from outside incsync's tree (a
      bug, a library's own error) counts as retryable, since nothing says waiting cannot heal it.

    Args:
        error: What ended the cycle.
        policy: The engine's thresholds.
        now: When the cycle failed (aware).
        secrets: Values the connector declares secret, masked in the recorded message.

    Returns:
        The error to record, the stop threshold, the time to wait for, and whether to reset.

    Raises:
        NaiveDatetimeError: ``now`` has no timezone.
    """
    auth = isinstance(error, AuthError)
    reset = isinstance(error, SourceError) and error.resync_required
    info = ErrorInfo(
        error_class=type(error).__name__,
        message=redact(str(error), secrets),
        at=now,
        # A reset source is not broken: the reason is kept for the screen, not held against it.
        retryable=reset or (bool(getattr(error, "retryable", True)) and not auth),
        auth=auth and not reset,
    )
    if reset:
        return FailureDecision(
            error=info, stop_after=policy.max_consecutive_failures, retry_at=info.at, reset=True
        )
    stop_after = policy.max_auth_failures if auth else policy.max_consecutive_failures
    retry_at = error.retry_at if isinstance(error, RateLimitedError) else None
    return FailureDecision(error=info, stop_after=stop_after, retry_at=retry_at)


def backoff_interval(interval: timedelta, failures: int, cap: timedelta) -> timedelta:
    """Return how long after the start of a failed cycle the next one starts.

    It doubles with every failure in a row, ``interval * 2**(failures - 1)``, at most ``cap`` and
    never less than ``interval``: a failing source's retries are spread out, not hammered.

    Args:
        interval: The time between the starts of two cycles of a healthy source.
        failures: The failed cycles in a row (0 or 1: the plain interval).
        cap: The longest wait, however many failures there were.
    """
    wait = interval
    for _ in range(failures - 1):
        if wait >= cap:
            break
        # Halving the cap instead of doubling the wait: no timedelta overflow near its maximum.
        wait = cap if wait > cap / 2 else wait * 2
    return max(interval, wait)
