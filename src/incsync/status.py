"""What colour a source is on the status screen, and why: a pure, total classifier.

A host's "Automated Import" screen shows, for every source, the last change at the source, the last
sync and a coloured circle with hover text. :func:`classify_status` decides all of it from a few
facts and ``now`` (passed in, never read from the clock); :func:`status_of` reads those facts from
a stored :class:`~incsync.state.SourceState`::

    status = classify_status(last_change=..., last_sync=..., error_count=..., now=...)
    status.color.value   # "grey", "green", "orange" or "red"
    status.hover         # full sentences with exact timestamps

The first matching row decides (``StatusPolicy`` holds the thresholds; defaults in brackets):

===============================================  ======  =================  =========
the source                                       colour  reason             icon
===============================================  ======  =================  =========
was cancelled by the host                        grey    cancelled          pause
is stopped, or failed too often in a row (*)     red     stopped            cross
was reset                                        grey    resetting          refresh
has never completed a cycle                      grey    starting           hourglass
completed no cycle within ``recent_sync`` [3 h]  red     sync_overdue       clock
changed within ``recent_change`` [7 days]        green   recent_changes     check
otherwise (changed earlier, or never)            orange  no_recent_changes  minus
===============================================  ======  =================  =========

(*) ``max_consecutive_failures`` [5] cycles, or ``max_auth_failures`` [2] when the last error was
an ``AuthError``: the thresholds at which the engine stops a source.

The cases the four colours do not name, and why they are decided so:

- **Overdue** (no completed cycle for longer than ``recent_sync``, whatever the errors): red, not
  orange. Green and orange both say "synchronization ran recently", which is false; red says
  "synchronization has stopped", which is true, and the person's next step is the same: get
  someone to look. The reason, the clock icon and the hover tell it apart from errors at the
  source ("no error was recorded: the scheduler that starts cycles may not be running").
- **Failing, below the threshold**: the colour of the last success stays, because one failed
  hourly cycle is routine and the engine retries; the label gains ", retrying" and the hover says
  when the last attempt failed, why (the redacted error), and when incsync retries.
- **Cancelled**: grey (neutral: the host chose it, nothing is wrong) with its own reason and pause
  icon; the hover says no transactions were deleted.
- **Records set aside** by the last cycle: the colour does not change (the rest was applied); the
  hover says how many and where to list them.
- **Clock skew**: a time at most ``future_tolerance`` [5 min] ahead of ``now`` counts as now; one
  further ahead also counts as now for the colour, and the hover names the suspect clock.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, tzinfo
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import attrs

from incsync.engine import SyncPolicy
from incsync.errors import ConfigurationError
from incsync.humanize import (
    DEFAULT_FUTURE_TOLERANCE,
    TimeText,
    duration_text,
    resolve_zone,
    time_text,
)
from incsync.state import ErrorInfo, Phase, SourceState
from incsync.timestamps import ensure_utc

__all__ = [
    "DEFAULT_STATUS_POLICY",
    "REASONS",
    "SourceStatus",
    "StatusColor",
    "StatusIcon",
    "StatusNote",
    "StatusPolicy",
    "StatusReason",
    "classify_status",
    "status_of",
    "statuses_of",
]


class StatusColor(enum.Enum):
    """The colour of the circle; never the only signal (see :class:`StatusIcon`)."""

    GREY = "grey"
    GREEN = "green"
    ORANGE = "orange"
    RED = "red"


class StatusReason(enum.Enum):
    """Why a source has its colour, for programs (the hover text is for people)."""

    CANCELLED = "cancelled"
    """The host cancelled synchronization (grey)."""
    STOPPED = "stopped"
    """Stopped after repeated errors reaching the source (red)."""
    RESETTING = "resetting"
    """Reset; the next cycle re-reads everything (grey)."""
    STARTING = "starting"
    """No cycle has completed yet (grey)."""
    SYNC_OVERDUE = "sync_overdue"
    """No cycle has completed for longer than ``recent_sync`` (red)."""
    RECENT_CHANGES = "recent_changes"
    """Synced recently and the source changed recently (green)."""
    NO_RECENT_CHANGES = "no_recent_changes"
    """Synced recently but the source has not changed recently, or never (orange)."""


class StatusIcon(enum.Enum):
    """A distinct shape per reason, so that colour is never the only signal."""

    PAUSE = "pause"
    CROSS = "cross"
    REFRESH = "refresh"
    HOURGLASS = "hourglass"
    CLOCK = "clock"
    CHECK = "check"
    MINUS = "minus"


class StatusNote(enum.Enum):
    """Something the hover mentions that does not change the colour."""

    LAST_ATTEMPT_FAILED = "last_attempt_failed"
    """The last cycle failed; incsync retries (below the stop threshold)."""
    RECORDS_SET_ASIDE = "records_set_aside"
    """The last completed cycle set malformed records aside."""
    WAITING_FOR_SOURCE = "waiting_for_source"
    """The source asked not to be called before a time still to come."""
    CLOCK_SKEW = "clock_skew"
    """A time lies further in the future than clock skew explains."""


REASONS: Mapping[StatusReason, tuple[StatusColor, StatusIcon, str]] = MappingProxyType(
    {
        StatusReason.CANCELLED: (StatusColor.GREY, StatusIcon.PAUSE, "Cancelled"),
        StatusReason.STOPPED: (StatusColor.RED, StatusIcon.CROSS, "Stopped"),
        StatusReason.RESETTING: (StatusColor.GREY, StatusIcon.REFRESH, "Resetting"),
        StatusReason.STARTING: (StatusColor.GREY, StatusIcon.HOURGLASS, "Starting"),
        StatusReason.SYNC_OVERDUE: (StatusColor.RED, StatusIcon.CLOCK, "Overdue"),
        StatusReason.RECENT_CHANGES: (StatusColor.GREEN, StatusIcon.CHECK, "Active"),
        StatusReason.NO_RECENT_CHANGES: (StatusColor.ORANGE, StatusIcon.MINUS, "No recent changes"),
    }
)
"""The colour, icon and label of each reason, in the order the classifier checks them."""


def _duration(minimum: timedelta) -> Callable[[object, attrs.Attribute[Any], object], None]:
    def check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, timedelta) or value < minimum:
            raise ConfigurationError(
                f"{attribute.name} must be a timedelta of at least {minimum}, got {value!r}"
            )

    return check


def _positive_count(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{attribute.name} must be an integer >= 1, got {value!r}")


_POSITIVE = _duration(timedelta(microseconds=1))


@attrs.frozen(slots=True)
class StatusPolicy:
    """The thresholds behind the colours; the defaults suit hourly cycles.

    Args:
        expected_interval: How often cycles run (1 hour); named in the hover text.
        recent_sync: A completed cycle at most this old is recent (3 hours, inclusive); older
            means the source is overdue (red). Must be at least ``expected_interval``.
        recent_change: A change at the source at most this old is recent (7 days, inclusive):
            green; older, or none seen, is orange.
        max_consecutive_failures: Failed cycles in a row that mean the source has stopped (5, as
            :class:`incsync.engine.SyncPolicy`); keep the two equal, see :meth:`matching`.
        max_auth_failures: The same for a source whose last error was an ``AuthError`` (2, as
            the engine's ``max_auth_failures``).
        future_tolerance: A time at most this far ahead of ``now`` is clock skew and reads as now
            (5 minutes); further ahead, the hover points at the clocks.
        set_aside_hint: The sentence telling a person where set-aside records are listed.

    Raises:
        ConfigurationError: A threshold is not positive, or ``recent_sync`` is shorter than
            ``expected_interval`` (no source could ever look recently synced).
    """

    expected_interval: timedelta = attrs.field(default=timedelta(hours=1), validator=_POSITIVE)
    recent_sync: timedelta = attrs.field(default=timedelta(hours=3), validator=_POSITIVE)
    recent_change: timedelta = attrs.field(default=timedelta(days=7), validator=_POSITIVE)
    max_consecutive_failures: int = attrs.field(default=5, validator=_positive_count)
    max_auth_failures: int = attrs.field(default=2, validator=_positive_count)
    future_tolerance: timedelta = attrs.field(
        default=DEFAULT_FUTURE_TOLERANCE, validator=_duration(timedelta(0))
    )
    set_aside_hint: str = (
        "Each one and the reason it was set aside are listed by SyncEngine.rejected() "
        "for this source."
    )

    def __attrs_post_init__(self) -> None:
        if self.recent_sync < self.expected_interval:
            raise ConfigurationError(
                f"recent_sync ({self.recent_sync}) must be at least expected_interval "
                f"({self.expected_interval}), or no source could look recently synced"
            )

    @classmethod
    def matching(cls, sync_policy: SyncPolicy, **changes: Any) -> StatusPolicy:
        """Return a status policy whose stop threshold is the engine's.

        Args:
            sync_policy: The engine's :class:`incsync.engine.SyncPolicy`.
            **changes: Other fields to set, as for the constructor.
        """
        return cls(
            max_consecutive_failures=sync_policy.max_consecutive_failures,
            max_auth_failures=sync_policy.max_auth_failures,
            **changes,
        )


DEFAULT_STATUS_POLICY = StatusPolicy()
"""The documented defaults: hourly cycles, recent sync 3 h, recent change 7 days, stop after 5."""


@attrs.frozen(slots=True)
class SourceStatus:
    """What the status screen shows for one source.

    Args:
        color: The circle's colour.
        reason: Why, for programs.
        label: A short text shown next to the circle, for example ``"Active, retrying"``.
        icon: The shape drawn in the circle; one per reason.
        hover: Full sentences for the hover text, with the exact timestamps.
        last_change: The newest change at the source as relative, exact and ISO text, or
            ``None`` when no change has been seen.
        last_sync: The last completed cycle likewise, or ``None`` before the first.
        notes: What the hover mentions that does not change the colour, in hover order.
    """

    color: StatusColor
    reason: StatusReason
    label: str
    icon: StatusIcon
    hover: str
    last_change: TimeText | None
    last_sync: TimeText | None
    notes: tuple[StatusNote, ...] = ()


# A tooltip is no place for a stack trace: long messages are cut, whitespace is folded.
_MESSAGE_LIMIT = 200
_WHITESPACE = re.compile(r"\s+")


def _short_message(message: str) -> str:
    text = _WHITESPACE.sub(" ", message).strip()
    if len(text) > _MESSAGE_LIMIT:
        return text[: _MESSAGE_LIMIT - 1].rstrip() + "…"
    return text


def _at(text: TimeText) -> str:
    # A comma, not parentheses: exact times outside UTC already end in "(UTC-05:00)".
    return f"{text.exact}, {text.relative}"


# Policies are few and shared, so their durations are spelled once, not once per source.
_spelled = lru_cache(maxsize=64)(duration_text)


def _every(interval: timedelta) -> str:
    words = _spelled(interval)
    # "every hour", not "every 1 hour".
    return f"every {words[2:] if words.startswith('1 ') and words.count(' ') == 1 else words}"


def _is_auth(error: ErrorInfo | None) -> bool:
    return error is not None and error.auth


def _decide(
    phase: Phase | None,
    now: datetime,
    sync_at: datetime | None,
    change_at: datetime | None,
    failed_enough: bool,
    policy: StatusPolicy,
) -> StatusReason:
    if phase is Phase.CANCELLED:
        return StatusReason.CANCELLED
    if phase is Phase.STOPPED or failed_enough:
        return StatusReason.STOPPED
    if phase is Phase.RESETTING:
        return StatusReason.RESETTING
    if phase is Phase.NEW or sync_at is None:
        return StatusReason.STARTING
    if now - sync_at > policy.recent_sync:
        return StatusReason.SYNC_OVERDUE
    if change_at is not None and now - change_at <= policy.recent_change:
        return StatusReason.RECENT_CHANGES
    return StatusReason.NO_RECENT_CHANGES


def _headline(
    reason: StatusReason, policy: StatusPolicy, error_count: int, changed: bool
) -> list[str]:
    """Say what the colour means for this source, in the words of the status screen."""
    interval = _every(policy.expected_interval)
    recent = _spelled(policy.recent_change)
    if reason is StatusReason.CANCELLED:
        return [
            "Synchronization was cancelled: no cycle runs until the source is resumed or reset.",
            "No transactions were deleted.",
        ]
    if reason is StatusReason.STOPPED:
        return ["Synchronization has stopped because of repeated errors connecting to the source."]
    if reason is StatusReason.RESETTING:
        return [
            "Synchronization was reset: the next cycle re-reads every record from the source.",
            "No transactions were deleted.",
        ]
    if reason is StatusReason.STARTING:
        return [f"Synchronization is starting (cycles run {interval})."]
    if reason is StatusReason.SYNC_OVERDUE:
        overdue = (
            f"Synchronization is overdue: no cycle has completed in the last "
            f"{_spelled(policy.recent_sync)}, though cycles should run {interval}."
        )
        if error_count:
            return [overdue]
        return [
            overdue,
            "No error was recorded, so the scheduler that starts the cycles may not be running.",
        ]
    if reason is StatusReason.RECENT_CHANGES:
        return [f"Synchronization is running, and the source changed in the last {recent}."]
    if not changed:
        return ["Synchronization is running, but no change at the source has been seen yet."]
    return [f"Synchronization is running, but the source has not changed in the last {recent}."]


def _failure_sentences(
    error_count: int, error: ErrorInfo | None, error_at: TimeText | None, stop_after: int | None
) -> list[str]:
    """Say when the last attempt failed and why; ``stop_after`` is ``None`` once stopped."""
    if error is None or error_at is None:
        sentences = ["The last attempt failed."]
    else:
        sentences = [
            f"The last attempt failed at {_at(error_at)}, with "
            f"{error.error_class}: {_short_message(error.message)}."
        ]
    attempts = "attempt" if error_count == 1 else "attempts"
    if stop_after is None:
        sentences.append(f"It stopped after {error_count} failed {attempts} in a row.")
    else:
        sentences.append(
            f"That is {error_count} failed {attempts} in a row; synchronization stops "
            f"after {stop_after}."
        )
    if _is_auth(error):
        sentences.append(
            "Waiting will not fix this: check the connection's credentials and permissions."
        )
    elif error is not None and not error.retryable:
        sentences.append("Waiting alone may not fix this kind of error.")
    return sentences


def _check_count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def classify_status(
    *,
    last_change: datetime | None,
    last_sync: datetime | None,
    error_count: int = 0,
    now: datetime,
    phase: Phase | None = None,
    last_error: ErrorInfo | None = None,
    not_before: datetime | None = None,
    rejected: int = 0,
    policy: StatusPolicy = DEFAULT_STATUS_POLICY,
    zone: str | tzinfo = "UTC",
) -> SourceStatus:
    """Return what the status screen shows for one source (see the module docs for the rules).

    Pure and total: every combination of valid arguments gives a status, the same one each time.

    Args:
        last_change: The newest change seen at the source, or ``None``.
        last_sync: When the last cycle completed, or ``None`` if none has.
        error_count: Failed cycles in a row since the last completed one.
        now: The present (aware); the clock is never read here.
        phase: The source's phase when known; ``None`` reads as new or active, from ``last_sync``.
        last_error: What the last failed cycle died of (ignored while ``error_count`` is 0: it
            belongs to a cycle followed by a success).
        not_before: The source asked not to be called before this time.
        rejected: Records the last completed cycle set aside as malformed.
        policy: The thresholds.
        zone: The display zone for exact times, an IANA name or a ``tzinfo`` (default UTC).

    Returns:
        The colour, reason, label, icon, hover text and both times.

    Raises:
        NaiveDatetimeError: A datetime has no timezone.
        ConfigurationError: A count is negative, or ``zone`` is not a known IANA zone name.
    """
    now = ensure_utc(now, "now")
    sync_at = None if last_sync is None else ensure_utc(last_sync, "last_sync")
    change_at = None if last_change is None else ensure_utc(last_change, "last_change")
    wait_until = None if not_before is None else ensure_utc(not_before, "not_before")
    error_count = _check_count(error_count, "error_count")
    rejected = _check_count(rejected, "rejected")
    tz = resolve_zone(zone)
    tolerance = policy.future_tolerance

    def text(when: datetime) -> TimeText:
        return time_text(when, now, zone=tz, future_tolerance=tolerance)

    sync = None if sync_at is None else text(sync_at)
    change = None if change_at is None else text(change_at)
    error = last_error if error_count else None
    stop_after = policy.max_auth_failures if _is_auth(error) else policy.max_consecutive_failures
    reason = _decide(phase, now, sync_at, change_at, error_count >= stop_after, policy)
    color, icon, label = REASONS[reason]

    notes: list[StatusNote] = []
    sentences = _headline(reason, policy, error_count, change is not None)
    stopped = reason is StatusReason.STOPPED
    if error_count:
        error_at = None if error is None else text(error.at)
        sentences += _failure_sentences(
            error_count, error, error_at, None if stopped else stop_after
        )
    waiting = None if wait_until is None or wait_until <= now else text(wait_until).exact
    # A stopped or cancelled source does not retry by itself, so only the others say they will.
    if stopped:
        sentences.append("Fix the cause, then resume the source.")
    elif error_count and reason is not StatusReason.CANCELLED:
        notes.append(StatusNote.LAST_ATTEMPT_FAILED)
        if waiting is None:
            sentences.append("incsync will retry at the next cycle.")
        else:
            sentences.append(f"The source asked to wait, so incsync will retry after {waiting}.")
            waiting = None
        if color is not StatusColor.RED:
            label = f"{label}, retrying"
    if wait_until is not None and wait_until > now:
        notes.append(StatusNote.WAITING_FOR_SOURCE)
        if waiting is not None:
            sentences.append(f"The source asked not to be called before {waiting}.")
    if rejected:
        records, pronoun = ("1 record", "it") if rejected == 1 else (f"{rejected} records", "they")
        sentences.append(
            f"The last cycle set {records} aside because {pronoun} could not be read; "
            f"everything else was applied. {policy.set_aside_hint}"
        )
        notes.append(StatusNote.RECORDS_SET_ASIDE)
    # Beyond the tolerance a future time is not skew to hide but a clock to check.
    skew = []
    if sync is not None and sync_at is not None and sync_at - now > tolerance:
        skew.append(
            f"The last sync is dated {sync.relative}: this host's clock may have been set back."
        )
    if change is not None and change_at is not None and change_at - now > tolerance:
        skew.append(
            f"The last change is dated {change.relative}: the source's clock may be ahead of "
            "this host's."
        )
    if skew:
        sentences += skew
        notes.append(StatusNote.CLOCK_SKEW)
    sentences.append(
        f"Last completed sync: {_at(sync)}."
        if sync is not None
        else "No synchronization cycle has completed yet."
    )
    sentences.append(
        f"Last change at the source: {_at(change)}."
        if change is not None
        else "No change at the source has been seen yet."
    )
    return SourceStatus(
        color=color,
        reason=reason,
        label=label,
        icon=icon,
        hover=" ".join(sentences),
        last_change=change,
        last_sync=sync,
        notes=tuple(notes),
    )


def status_of(
    state: SourceState,
    *,
    now: datetime,
    policy: StatusPolicy = DEFAULT_STATUS_POLICY,
    zone: str | tzinfo = "UTC",
) -> SourceStatus:
    """Return the status of a stored source (``classify_status`` over the state's facts).

    Args:
        state: The source's state, as the store holds it.
        now: The present (aware).
        policy: The thresholds; use :meth:`StatusPolicy.matching` to share the engine's.
        zone: The display zone, an IANA name or a ``tzinfo``.

    Raises:
        NaiveDatetimeError: ``now`` has no timezone.
        ConfigurationError: ``zone`` is not a known IANA zone name.
    """
    return classify_status(
        last_change=state.last_change,
        last_sync=state.last_sync,
        error_count=state.consecutive_failures,
        now=now,
        phase=state.phase,
        last_error=state.last_error,
        not_before=state.not_before,
        rejected=state.last_cycle_rejected,
        policy=policy,
        zone=zone,
    )


def statuses_of(
    states: Sequence[SourceState],
    *,
    now: datetime,
    policy: StatusPolicy = DEFAULT_STATUS_POLICY,
    zone: str | tzinfo = "UTC",
) -> list[tuple[str, SourceStatus]]:
    """Return ``(key, status)`` for each state, ready for :mod:`incsync.views`.

    Raises:
        NaiveDatetimeError: ``now`` has no timezone.
        ConfigurationError: ``zone`` is not a known IANA zone name.
    """
    tz = resolve_zone(zone)
    return [(state.key, status_of(state, now=now, policy=policy, zone=tz)) for state in states]
