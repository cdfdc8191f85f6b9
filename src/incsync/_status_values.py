"""The status's values: colours, reasons, icons, notes, the thresholds and what is shown.

Public through :mod:`incsync.status`, which documents the rules that choose among them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

import attrs

from incsync.errors import ConfigurationError
from incsync.humanize import DEFAULT_FUTURE_TOLERANCE, TimeText
from incsync.policy import (
    DEFAULT_BACKOFF_CAP,
    SyncPolicy,
    non_negative_duration,
    positive_count,
    positive_duration,
)


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
    """Nothing attempted a cycle when one was due, for longer than ``recent_sync`` (red)."""
    RETRYING = "retrying"
    """Attempts continue, but no cycle has completed within ``recent_sync`` (orange)."""
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
    REDO = "redo"
    CHECK = "check"
    MINUS = "minus"


class StatusNote(enum.Enum):
    """Something the hover mentions that does not change the colour."""

    LAST_ATTEMPT_FAILED = "last_attempt_failed"
    """The last cycle failed, and the source is not stopped: it is to be retried."""
    RECORDS_SET_ASIDE = "records_set_aside"
    """The last completed cycle set malformed records aside."""
    WAITING_FOR_SOURCE = "waiting_for_source"
    """The source asked not to be called before a time still to come."""
    CLOCK_SKEW = "clock_skew"
    """A time lies further in the future than clock skew explains, or the source's clock, as
    measured, runs further from the host's than ``StatusPolicy.clock_skew_tolerance``."""
    COUNT_DRIFT = "count_drift"
    """The last count of live records at the source differed from the host's."""


REASONS: Mapping[StatusReason, tuple[StatusColor, StatusIcon, str]] = MappingProxyType(
    {
        StatusReason.CANCELLED: (StatusColor.GREY, StatusIcon.PAUSE, "Cancelled"),
        StatusReason.STOPPED: (StatusColor.RED, StatusIcon.CROSS, "Stopped"),
        StatusReason.RESETTING: (StatusColor.GREY, StatusIcon.REFRESH, "Resetting"),
        StatusReason.STARTING: (StatusColor.GREY, StatusIcon.HOURGLASS, "Starting"),
        StatusReason.SYNC_OVERDUE: (StatusColor.RED, StatusIcon.CLOCK, "Overdue"),
        StatusReason.RETRYING: (StatusColor.ORANGE, StatusIcon.REDO, "Retrying"),
        StatusReason.RECENT_CHANGES: (StatusColor.GREEN, StatusIcon.CHECK, "Active"),
        StatusReason.NO_RECENT_CHANGES: (StatusColor.ORANGE, StatusIcon.MINUS, "No recent changes"),
    }
)
"""The colour, icon and label of each reason, in the order the classifier checks them."""


# The engine's stop thresholds are set in one place; the facts-only classifier defaults to them.
_ENGINE_DEFAULTS = SyncPolicy()

RECENT_SYNC_CYCLES = 3
"""A completed cycle is recent for this many intervals: two missed or failed cycles are tolerated
(the default ``recent_sync`` of 3 hours, for hourly cycles)."""


@attrs.frozen(slots=True)
class StatusPolicy:
    """The thresholds behind the colours; the defaults suit hourly cycles.

    Args:
        expected_interval: How often cycles run (1 hour); named in the hover text.
        recent_sync: A completed cycle at most this old is recent (3 hours, inclusive); older, the
            source is orange "Retrying" while attempts continue, and overdue (red) once no
            attempt was made for this long after one was due. Must be at least
            ``expected_interval``.
        recent_change: A change at the source at most this old is recent (7 days, inclusive):
            green; older, or none seen, is orange.
        max_consecutive_failures: Failed cycles in a row that mean the source has stopped, when
            no phase is given (facts only); the default is :class:`incsync.policy.SyncPolicy`'s
            (5), and :meth:`matching` copies an engine's. With a phase (as :func:`status_of`
            passes it), the engine's record decides and this is not used.
        max_auth_failures: The same for a source whose last error was an ``AuthError`` (the
            engine's default, 2).
        future_tolerance: A time at most this far ahead of ``now`` is clock skew and reads as now
            (5 minutes); further ahead, the hover points at the clocks.
        clock_skew_tolerance: A measured skew of the source's clock larger than this either way
            (2 minutes) is named in the hover.
        backoff_cap: The longest wait between attempts of a failing source, as the scheduler's
            :class:`~incsync.scheduling.SourcePlan` has it (6 hours); set it to
            ``expected_interval`` for a scheduler that does not back off.
        set_aside_hint: The sentence telling a person where set-aside records are listed.

    Raises:
        ConfigurationError: A threshold is not positive, or ``recent_sync`` is shorter than
            ``expected_interval`` (no source could ever look recently synced).
    """

    expected_interval: timedelta = attrs.field(
        default=timedelta(hours=1), validator=positive_duration
    )
    recent_sync: timedelta = attrs.field(
        default=timedelta(hours=RECENT_SYNC_CYCLES), validator=positive_duration
    )
    recent_change: timedelta = attrs.field(default=timedelta(days=7), validator=positive_duration)
    max_consecutive_failures: int = attrs.field(
        default=_ENGINE_DEFAULTS.max_consecutive_failures, validator=positive_count
    )
    max_auth_failures: int = attrs.field(
        default=_ENGINE_DEFAULTS.max_auth_failures, validator=positive_count
    )
    future_tolerance: timedelta = attrs.field(
        default=DEFAULT_FUTURE_TOLERANCE, validator=non_negative_duration
    )
    backoff_cap: timedelta = attrs.field(default=DEFAULT_BACKOFF_CAP, validator=positive_duration)
    clock_skew_tolerance: timedelta = attrs.field(
        default=timedelta(minutes=2), validator=non_negative_duration
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
    def matching(
        cls, sync_policy: SyncPolicy, *, interval: timedelta | None = None, **changes: Any
    ) -> StatusPolicy:
        """Return a status policy whose stop thresholds are the engine's.

        They matter to :func:`classify_status` without a phase; with one, the phase decides.

        Args:
            sync_policy: The engine's :class:`incsync.policy.SyncPolicy`.
            interval: How often the source's cycles run, if known: ``expected_interval`` becomes
                it and ``recent_sync`` :data:`RECENT_SYNC_CYCLES` of it, as the defaults are for
                hourly cycles (so a daily source is not overdue three hours after its cycle).
            **changes: Other fields to set, as for the constructor.
        """
        if interval is not None:
            positive_duration.check("interval", interval)
            changes = {
                "expected_interval": interval,
                "recent_sync": interval * RECENT_SYNC_CYCLES,
                **changes,
            }
        return cls(
            max_consecutive_failures=sync_policy.max_consecutive_failures,
            max_auth_failures=sync_policy.max_auth_failures,
            **changes,
        )


DEFAULT_STATUS_POLICY = StatusPolicy()
"""The documented defaults: hourly cycles, recent sync 3 h, recent change 7 days, the engine's
stop thresholds."""


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
        reason_until: The first instant after ``now`` from which time alone may change the
            reason (and so the colour, icon and label), the facts staying as they are: a
            threshold crossed, a running cycle's lease ending. ``None`` when time alone never
            changes it. A screen that classified at ``now`` may show the same reason until then.
    """

    color: StatusColor
    reason: StatusReason
    label: str
    icon: StatusIcon
    hover: str
    last_change: TimeText | None
    last_sync: TimeText | None
    notes: tuple[StatusNote, ...] = ()
    reason_until: datetime | None = None
