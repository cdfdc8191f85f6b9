"""How cautious the engine is, and what it records for a failed cycle: pure values, no I/O.

:class:`SyncPolicy` holds the engine's settings; :func:`decide_failure` turns an exception that
ended a cycle into what the engine records for it (a :class:`FailureDecision`);
:func:`backoff_interval` says how long after a failed cycle the scheduler starts the next. The
status screen reads these from here without loading the engine, its connectors or httpx.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import attrs

from incsync.errors import AuthError, ConfigurationError, RateLimitedError, SourceError
from incsync.redaction import redact
from incsync.state import ErrorInfo, SourceState
from incsync.timestamps import ensure_utc

__all__ = [
    "DEFAULT_BACKOFF_CAP",
    "FailureDecision",
    "SettingRule",
    "SyncPolicy",
    "backoff_interval",
    "count_due",
    "decide_failure",
    "deletes_expired",
    "drift_to_reconcile",
    "duration_setting",
    "flag",
    "non_negative_duration",
    "optional_positive_count",
    "optional_positive_duration",
    "positive_count",
    "positive_duration",
    "whole_number_setting",
]

DEFAULT_BACKOFF_CAP = timedelta(hours=6)
"""The longest wait between the starts of two cycles of a failing source, by default."""


@attrs.frozen
class SettingRule:
    """What one kind of setting accepts, checked where the setting is given.

    An instance is an attrs validator (``attrs.field(validator=positive_count)``); :meth:`check`
    serves plain arguments. Both raise the same error, naming the setting and what it accepts.

    Args:
        accepts: What the setting accepts, in words that follow "must be"
            (``"an integer >= 1"``).
        holds: Whether a value is acceptable.
    """

    accepts: str
    holds: Callable[[object], bool]

    def __call__(self, _instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        """Check the value given for an attrs field (the validator protocol)."""
        self.check(attribute.name, value)

    def check(self, setting: str, value: object) -> None:
        """Refuse ``value`` for ``setting`` unless the rule holds.

        Raises:
            ConfigurationError: The value is not one the setting accepts.
        """
        if not self.holds(value):
            raise ConfigurationError(f"{setting} must be {self.accepts}, got {value!r}")


def whole_number_setting(minimum: int, maximum: int | None = None) -> SettingRule:
    """Return the rule of a count: an ``int`` (``True`` is no count) from ``minimum`` up.

    Args:
        minimum: The smallest value accepted.
        maximum: The largest value accepted, if there is one.
    """

    def holds(value: object) -> bool:
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and minimum <= value
            and (maximum is None or value <= maximum)
        )

    span = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
    return SettingRule(f"an integer {span}", holds)


def duration_setting(
    minimum: timedelta, *, inclusive: bool = True, maximum: timedelta | None = None
) -> SettingRule:
    """Return the rule of a duration: a ``timedelta`` (a number says nothing of its unit).

    Args:
        minimum: The shortest duration accepted, or the bound every duration must exceed.
        inclusive: Whether ``minimum`` itself is accepted.
        maximum: The longest duration accepted, if there is one.
    """

    def holds(value: object) -> bool:
        return (
            isinstance(value, timedelta)
            and (value >= minimum if inclusive else value > minimum)
            and (maximum is None or value <= maximum)
        )

    bound = _duration_text(minimum)
    span = f"of at least {bound}" if inclusive else f"longer than {bound}"
    if maximum is not None:
        span += f" and at most {_duration_text(maximum)}"
    return SettingRule(f"a timedelta {span}", holds)


def _duration_text(value: timedelta) -> str:
    if not value:
        return "zero"
    if value % timedelta(days=1):
        return f"timedelta(seconds={value.total_seconds():g})"
    return f"timedelta(days={value.days})"


positive_count = whole_number_setting(1)
"""A count of at least one: an ``int``, never a ``bool``."""
positive_duration = duration_setting(timedelta(0), inclusive=False)
"""A ``timedelta`` longer than zero."""
non_negative_duration = duration_setting(timedelta(0))
"""A ``timedelta`` of zero or longer."""
optional_positive_duration = SettingRule(
    f"{positive_duration.accepts} or None",
    lambda value: value is None or positive_duration.holds(value),
)
"""A ``timedelta`` longer than zero, or ``None`` for a feature turned off (or no limit)."""
optional_positive_count = SettingRule(
    f"{positive_count.accepts} or None",
    lambda value: value is None or positive_count.holds(value),
)
"""A count of at least one, or ``None`` for no limit."""
flag = SettingRule("True or False", lambda value: isinstance(value, bool))
"""A switch: ``True`` or ``False``, never a truthy stand-in such as ``1`` or ``"yes"``."""


def _optional_utc(value: datetime | None) -> datetime | None:
    return None if value is None else ensure_utc(value, "retry_at")


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
        count_interval: How often a completed cycle compares the source's count of live records
            with the host's (:func:`count_due`); ``None`` never counts. A count is one request
            to the source (when its connector can count at all) and one query of the sink.
        reconcile_drift: Reset a source whose counts keep disagreeing, so its full re-read
            re-applies what is missing and sweeps what is extra (:func:`drift_to_reconcile`).

    Raises:
        ConfigurationError: A duration is not a ``timedelta`` (``lease_ttl`` and
            ``count_interval`` longer than zero, ``safety_lag`` zero or longer; ``count_interval``
            may be ``None``), a count is not an ``int`` of at least 1, or ``reconcile_drift`` is
            not a ``bool``.
    """

    lease_ttl: timedelta = attrs.field(default=timedelta(minutes=10), validator=positive_duration)
    safety_lag: timedelta = attrs.field(
        default=timedelta(minutes=5), validator=non_negative_duration
    )
    max_consecutive_failures: int = attrs.field(default=5, validator=positive_count)
    max_auth_failures: int = attrs.field(default=2, validator=positive_count)
    count_interval: timedelta | None = attrs.field(
        default=timedelta(hours=24), validator=optional_positive_duration
    )
    reconcile_drift: bool = attrs.field(default=False, validator=flag)


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
    retry_at: datetime | None = attrs.field(default=None, converter=_optional_utc)
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


def deletes_expired(state: SourceState, retention: timedelta | None, now: datetime) -> bool:
    """Return whether deletes may have passed out of the source's reach since it was last read.

    A source keeps a delete readable through its delete channel for ``retention`` (a connector's
    ``delete_retention``). A completed cycle read the deletes up to its start, so when the last
    one completed longer ago than that (the source was cancelled, stopped, failing, or not
    scheduled), deletes in between may be gone: the source must be re-read whole, and what that
    read does not see swept. A source that never completed a cycle, holds no cursor (its next read
    is whole) or is already resetting has nothing to re-read.
    """
    if retention is None or state.reset_pending or state.cursor is None:
        return False
    return state.last_sync is not None and now - state.last_sync > retention


def count_due(state: SourceState, policy: SyncPolicy, now: datetime) -> bool:
    """Return whether the cycle completing now compares the source's and the host's counts.

    A count is due when the source was never counted, when ``policy.count_interval`` has passed
    since the last count, or when this cycle completes a read of the whole source (its first, or
    the re-read after a reset): the host should then hold exactly what the source does, and the
    count shows whether it does.
    ``count_interval=None`` turns counting off.

    Args:
        state: The source's state as the cycle found it.
        policy: The engine's settings.
        now: The time the cycle completes (aware).

    Raises:
        NaiveDatetimeError: ``now`` has no timezone.
    """
    now = ensure_utc(now, "now")
    interval, check = policy.count_interval, state.count_check
    if interval is None:
        return False
    return check is None or state.reads_whole or now - check.at >= interval


def drift_to_reconcile(state: SourceState, policy: SyncPolicy) -> bool:
    """Return whether the source must be re-read whole because its counts keep disagreeing.

    Only with ``policy.reconcile_drift``, and only for a persistent drift: the last two counts
    both found one, with no reset between them (a single drift may be records written at the
    source between its read and its count, which the next cycle brings). A drift equal to the one
    the last full read left (:attr:`~incsync.state.CountCheck.full_read_drift`) is not
    reconciled: another full read would leave it too (records set aside as malformed, or counted
    by the source but outside what the connector reads). A source already resetting re-reads
    anyway.
    """
    check = state.count_check
    return (
        policy.reconcile_drift
        and not state.reset_pending
        and check is not None
        and check.persistent
        and check.drift != check.full_read_drift
    )


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
