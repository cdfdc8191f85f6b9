"""What colour a source is on the status screen, and why: a pure, total classifier.

A host's "Automated Import" screen shows, for every source, the last change at the source, the last
sync and a coloured circle with hover text. :func:`classify_status` decides all of it from a few
facts and ``now`` (passed in, never read from the clock); :func:`status_of` reads those facts from
a stored :class:`~incsync.state.SourceState`::

    status = classify_status(last_change=..., last_sync=..., last_attempt=..., now=...)
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
was not attempted when due (**)                  red     sync_overdue       clock
completed no cycle within ``recent_sync`` [3 h]  orange  retrying           redo
changed within ``recent_change`` [7 days]        green   recent_changes     check
otherwise (changed earlier, or never)            orange  no_recent_changes  minus
===============================================  ======  =================  =========

(*) The engine decides when a source stops, and the status trusts it. With a ``phase`` (as
:func:`status_of` passes the stored one), only ``Phase.STOPPED`` is stopped, whatever the count.
Without one (facts only), ``max_consecutive_failures`` [5] failed cycles in a row are, or
``max_auth_failures`` [2] when the last error was an ``AuthError``: the engine's default
thresholds, or a given engine's through :meth:`StatusPolicy.matching`.

(**) The next attempt was due more than ``recent_sync`` minus ``expected_interval`` [2 h] ago:
nothing has tried to sync for longer than the recent-sync window. The next attempt is due after
the last one by ``expected_interval`` [1 h], doubled for every failure in a row after the first,
at most ``backoff_cap`` [6 h] (:func:`incsync.policy.backoff_interval`, as the scheduler waits),
and never before a time the source asked to wait for (``not_before``). The last attempt is
``last_attempt`` (when a cycle last took the lease; without it, the last failure's time), or the
last completed sync when that is newer. Without failures or a wait, this reads: no attempt
within ``recent_sync``. A cycle that holds the source's lease now (``running_until`` after
``now``) is an attempt in progress, never overdue however long it has run.

The cases the four colours do not name, and why they are decided so:

- **Overdue** (nothing attempted when due): red, not orange. Green and orange both say
  "synchronization ran recently", which is false; red says "synchronization has stopped", which
  is true, and the person's next step is the same: get someone to look. The reason, the clock
  icon and the hover tell it apart from errors at the source: it names the time since which no
  attempt was made and when the next was due, and that the scheduler that starts cycles may not
  be running.
- **Failing, not stopped**: never red, however long the engine keeps retrying. While the last
  completed cycle is within ``recent_sync``, the colour of the last success stays, because one
  failed hourly cycle is routine; the label gains ", retrying". Once it is older, the source is
  orange "Retrying": it was tried recently, but no recent change could be seen. The hover says
  when the last attempt failed, why (the redacted error), how many attempts failed in a row, and
  when the next attempt is due (the source's wait, or the last attempt plus the backoff; "due
  now" once that time has passed). Only without a phase does it add after how many the source
  stops: the stored state does not record the engine's threshold, so with a phase it names none.
- **Attempted, neither completed nor failed**: a cycle started within the window and none
  completed within ``recent_sync``: orange "Retrying" as well (a long cycle, or a worker that died
  mid-cycle); so is a source waiting, as it asked, past the window. A cycle still holding its lease
  is running, however long ago it started: orange "Retrying" too, and the hover says since when.
- **Cancelled**: grey (neutral: the host chose it, nothing is wrong) with its own reason and pause
  icon; the hover says no transactions were deleted.
- **Records set aside** by the last cycle: the colour does not change (the rest was applied); the
  hover says how many and where to list them.
- **Counts that disagree**: when the last count of live records at the source differs from the
  host's (a drift, :class:`~incsync.state.CountCheck`), the colour does not change (a count is
  advice about data already applied, and a record written between the read and the count drifts
  it once); the hover says how many live records the source has, how many are imported, and when
  they were counted. A count that agrees is not mentioned.
- **Clock skew**: a time at most ``future_tolerance`` [5 min] ahead of ``now`` counts as now; one
  further ahead also counts as now for the colour, and the hover names the suspect clock.
- **History**: given a summary of the source's latest cycles (a
  :class:`~incsync.history.HistorySummary`, which the caller reads from the store), the hover says
  how they ended ("Last 24 cycles: 23 completed, 1 failed."); the colour does not change.
- **The source's clock**: when the newest skew the cycles measured (the summary's ``clock_skew``,
  see :mod:`incsync.clocks`) exceeds ``clock_skew_tolerance`` [2 min] either way, the hover says
  so ("The source's clock is 10 minutes behind this host's; times are read on the source's
  clock."): the engine keeps the cursor on the source's clock, so nothing is lost, but the times
  shown are the source's. The colour does not change.

**Until when**: the rows above that read the present compare it with a few instants (the next
attempt's due time plus the slack, the last sync plus ``recent_sync``, the last change plus
``recent_change``, a running cycle's lease end). ``SourceStatus.reason_until`` is the next of them
after ``now``: until then, the facts staying as they are, the reason (and so the colour, icon and
label) stays too. A screen that keeps statuses (the web console does) classifies a source again
when its state changed or that instant has come. Only the hover's relative words change sooner.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import attrs

from incsync.errors import ConfigurationError
from incsync.history import HistorySummary
from incsync.humanize import (
    DEFAULT_FUTURE_TOLERANCE,
    TimeText,
    duration_text,
    plural,
    resolve_zone,
    time_text,
)
from incsync.policy import (
    DEFAULT_BACKOFF_CAP,
    SyncPolicy,
    backoff_interval,
    non_negative_duration,
    positive_count,
    positive_duration,
)
from incsync.state import ErrorInfo, Phase, SourceState
from incsync.timestamps import ensure_utc

__all__ = [
    "DEFAULT_STATUS_POLICY",
    "REASONS",
    "RECENT_SYNC_CYCLES",
    "SourceStatus",
    "StatusColor",
    "StatusIcon",
    "StatusNote",
    "StatusPolicy",
    "StatusReason",
    "classify_status",
    "reason_of",
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


def _check_count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{name} must be an integer >= 0, got {value!r}")
    return value


@attrs.frozen(slots=True)
class _Facts:
    """The arguments of :func:`classify_status`, checked, in UTC, and with the stale ones dropped.

    ``error`` is ``None`` while ``error_count`` is 0 (it belongs to a cycle followed by a
    success), and ``waiting_until`` is ``None`` unless ``not_before`` is still to come.
    ``last_attempt`` is the last sign of an attempt: the given ``last_attempt`` (or, without one,
    the counted failure's time), or the last completed sync when that is newer.
    """

    now: datetime
    last_sync: datetime | None
    last_change: datetime | None
    last_attempt: datetime | None
    not_before: datetime | None
    waiting_until: datetime | None
    error_count: int
    error: ErrorInfo | None
    phase: Phase | None
    rejected: int
    reset_reason: str | None
    live_at_source: int | None
    live_in_host: int | None
    counted_at: datetime | None
    running_until: datetime | None
    running: bool


def _newest(*times: datetime | None) -> datetime | None:
    known = [when for when in times if when is not None]
    return max(known) if known else None


def _facts(
    *,
    last_change: datetime | None,
    last_sync: datetime | None,
    last_attempt: datetime | None,
    error_count: int,
    now: datetime,
    phase: Phase | None,
    last_error: ErrorInfo | None,
    not_before: datetime | None,
    rejected: int,
    live_at_source: int | None,
    live_in_host: int | None,
    counted_at: datetime | None,
    running_until: datetime | None,
) -> _Facts:
    now = ensure_utc(now, "now")
    count = (live_at_source, live_in_host, counted_at)
    if any(fact is None for fact in count) and any(fact is not None for fact in count):
        raise ConfigurationError(
            "live_at_source, live_in_host and counted_at are one count: give all three or none, "
            f"got {live_at_source!r}, {live_in_host!r} and {counted_at!r}"
        )
    sync_at = None if last_sync is None else ensure_utc(last_sync, "last_sync")
    change_at = None if last_change is None else ensure_utc(last_change, "last_change")
    attempt_at = None if last_attempt is None else ensure_utc(last_attempt, "last_attempt")
    wait_until = None if not_before is None else ensure_utc(not_before, "not_before")
    lease_end = None if running_until is None else ensure_utc(running_until, "running_until")
    error_count = _check_count(error_count, "error_count")
    error = last_error if error_count else None
    if attempt_at is None and error is not None:
        # A failure is an attempt that ended: facts without last_attempt still show one was made.
        attempt_at = error.at
    return _Facts(
        now=now,
        last_sync=sync_at,
        last_change=change_at,
        last_attempt=_newest(attempt_at, sync_at),
        not_before=wait_until,
        waiting_until=wait_until if wait_until is not None and wait_until > now else None,
        error_count=error_count,
        error=error,
        phase=phase,
        rejected=_check_count(rejected, "rejected"),
        # The engine keeps why it reset a source itself (its change log or delete channel no
        # longer reaches back far enough) as an uncounted error, until the re-read completes.
        reset_reason=(
            last_error.message
            if phase is Phase.RESETTING and last_error is not None and not error_count
            else None
        ),
        live_at_source=None
        if live_at_source is None
        else _check_count(live_at_source, "live_at_source"),
        live_in_host=None if live_in_host is None else _check_count(live_in_host, "live_in_host"),
        counted_at=None if counted_at is None else ensure_utc(counted_at, "counted_at"),
        running_until=lease_end,
        running=lease_end is not None and lease_end > now,
    )


_LATEST = datetime.max.replace(tzinfo=timezone.utc)


def _attempt_wait(error_count: int, policy: StatusPolicy) -> timedelta:
    """Return how long after the last attempt the next is due, as the scheduler backs off."""
    return backoff_interval(policy.expected_interval, error_count, policy.backoff_cap)


def _next_attempt(facts: _Facts, policy: StatusPolicy) -> datetime | None:
    """Return when the next attempt is due: the wait after the last, not before ``not_before``."""
    if facts.last_attempt is None:
        return facts.not_before
    try:
        due = facts.last_attempt + _attempt_wait(facts.error_count, policy)
    except OverflowError:
        due = _LATEST
    return due if facts.not_before is None else max(due, facts.not_before)


@attrs.frozen(slots=True)
class _Texts:
    """The facts' times as text in the display zone; ``None`` where the hover has no use for one.

    ``write`` turns any other time into text the same way, for the few hovers that name one: most
    statuses need neither the last nor the next attempt spelled out.
    """

    last_sync: TimeText | None
    last_change: TimeText | None
    error_at: TimeText | None
    waiting_until: TimeText | None
    write: Callable[[datetime], TimeText]


def _texts(facts: _Facts, zone: tzinfo, tolerance: timedelta) -> _Texts:
    def spell(when: datetime) -> TimeText:
        return time_text(when, facts.now, zone=zone, future_tolerance=tolerance)

    def text(when: datetime | None) -> TimeText | None:
        return None if when is None else spell(when)

    last_sync = text(facts.last_sync)

    def write(when: datetime) -> TimeText:
        # The last attempt is often the last completed sync itself: spell that once.
        return last_sync if last_sync is not None and when == facts.last_sync else spell(when)

    return _Texts(
        last_sync=last_sync,
        last_change=text(facts.last_change),
        error_at=None if facts.error is None else text(facts.error.at),
        waiting_until=text(facts.waiting_until),
        write=write,
    )


def _later(when: datetime, by: timedelta) -> datetime:
    try:
        return when + by
    except OverflowError:
        return _LATEST


@attrs.frozen(slots=True)
class _Deadlines:
    """The instants at which time alone moves a source from one row of the table to another.

    :func:`_decide` compares ``now`` with these, and :func:`_reason_until` finds the next of them,
    so the thresholds are applied in one place.
    """

    overdue_after: datetime | None
    """Overdue once ``now`` is after this: the next attempt's due time plus the slack."""
    stale_after: datetime | None
    """Retrying once ``now`` is after this: the last completed sync plus ``recent_sync``."""
    recent_until: datetime | None
    """Recent changes while ``now`` is not after this: the last change plus ``recent_change``."""
    running_until: datetime | None
    """A running cycle (never overdue) while ``now`` is before this: its lease's end."""


def _deadlines(facts: _Facts, next_attempt: datetime | None, policy: StatusPolicy) -> _Deadlines:
    slack = policy.recent_sync - policy.expected_interval
    return _Deadlines(
        overdue_after=None if next_attempt is None else _later(next_attempt, slack),
        stale_after=None
        if facts.last_sync is None
        else _later(facts.last_sync, policy.recent_sync),
        recent_until=(
            None if facts.last_change is None else _later(facts.last_change, policy.recent_change)
        ),
        running_until=facts.running_until,
    )


_TICK = timedelta(microseconds=1)


def _reason_until(deadlines: _Deadlines, now: datetime) -> datetime | None:
    """Return the first instant after ``now`` at which a comparison of :func:`_decide` may turn.

    "After a deadline" turns one tick past it, "before the lease's end" at it. Every deadline
    counts, whatever the phase, so the answer may come early, never late.
    """
    turns = [
        _later(when, _TICK)
        for when in (deadlines.overdue_after, deadlines.stale_after, deadlines.recent_until)
        if when is not None
    ]
    if deadlines.running_until is not None:
        turns.append(deadlines.running_until)
    coming = [when for when in turns if when > now]
    return min(coming) if coming else None


def _is_auth(error: ErrorInfo | None) -> bool:
    return error is not None and error.auth


def _stop_after(facts: _Facts, policy: StatusPolicy) -> int | None:
    """Return the failures in a row that mean stopped, or ``None`` when the phase is known.

    A known phase is the engine's own record: only ``Phase.STOPPED`` means stopped then, and the
    status policy's thresholds (a copy that may differ from the engine's) are not consulted.
    """
    if facts.phase is not None:
        return None
    return policy.max_auth_failures if _is_auth(facts.error) else policy.max_consecutive_failures


def _decide(facts: _Facts, stop_after: int | None, deadlines: _Deadlines) -> StatusReason:
    """Return the reason of the first matching row of the module's table."""
    phase, now, sync_at = facts.phase, facts.now, facts.last_sync
    if phase is Phase.CANCELLED:
        return StatusReason.CANCELLED
    if phase is Phase.STOPPED or (stop_after is not None and facts.error_count >= stop_after):
        return StatusReason.STOPPED
    if phase is Phase.RESETTING:
        return StatusReason.RESETTING
    if phase is Phase.NEW or sync_at is None:
        return StatusReason.STARTING
    # Only silence is overdue: a source whose attempts fail is retrying, whatever their number,
    # and one whose cycle holds the lease now is being attempted, however long it has run.
    overdue_after, stale_after = deadlines.overdue_after, deadlines.stale_after
    if not facts.running and overdue_after is not None and now > overdue_after:
        return StatusReason.SYNC_OVERDUE
    if stale_after is not None and now > stale_after:
        return StatusReason.RETRYING
    if deadlines.recent_until is not None and now <= deadlines.recent_until:
        return StatusReason.RECENT_CHANGES
    return StatusReason.NO_RECENT_CHANGES


def _overdue_sentences(
    facts: _Facts, texts: _Texts, next_attempt: datetime | None, interval: str
) -> list[str]:
    """Say since when nothing was attempted, when the next attempt was due, and who to suspect."""
    since = "" if facts.last_attempt is None else f" since {_at(texts.write(facts.last_attempt))}"
    sentences = [
        f"Synchronization is overdue: no attempt has been made{since}, "
        f"though cycles should run {interval}."
    ]
    if next_attempt is not None:
        sentences.append(f"The next attempt was due at {_at(texts.write(next_attempt))}.")
    sentences.append("The scheduler that starts the cycles may not be running.")
    return sentences


def _headline(
    reason: StatusReason,
    policy: StatusPolicy,
    facts: _Facts,
    texts: _Texts,
    next_attempt: datetime | None,
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
        why = [] if facts.reset_reason is None else [f"Why: {_short_message(facts.reset_reason)}."]
        return [
            "Synchronization was reset: the next cycle re-reads every record from the source.",
            *why,
            "No transactions were deleted.",
        ]
    if reason is StatusReason.STARTING:
        return [f"Synchronization is starting (cycles run {interval})."]
    if reason is StatusReason.SYNC_OVERDUE:
        return _overdue_sentences(facts, texts, next_attempt, interval)
    if reason is StatusReason.RETRYING:
        return [
            f"No cycle has completed in the last {_spelled(policy.recent_sync)}, so recent "
            "changes at the source have not been seen, but synchronization is still being "
            "attempted."
        ]
    if reason is StatusReason.RECENT_CHANGES:
        return [f"Synchronization is running, and the source changed in the last {recent}."]
    if facts.last_change is None:
        return ["Synchronization is running, but no change at the source has been seen yet."]
    return [f"Synchronization is running, but the source has not changed in the last {recent}."]


def _count_sentence(error_count: int, stopped: bool, stop_after: int | None) -> str:
    """Say how many attempts failed in a row, and the threshold only where one applies."""
    attempts = f"{plural(error_count, 'failed attempt')} in a row"
    if stopped:
        return f"It stopped after {attempts}."
    if stop_after is None:
        # The engine decides when to stop, and the state does not say at how many failures.
        return f"That is {attempts}."
    return f"That is {attempts}; synchronization stops after {stop_after}."


def _failure_sentences(
    facts: _Facts, error_at: TimeText | None, stopped: bool, stop_after: int | None
) -> list[str]:
    """Say when the last attempt failed, why, how often in a row, and whether waiting helps."""
    if not facts.error_count:
        return []
    error = facts.error
    if error is None or error_at is None:
        sentences = ["The last attempt failed."]
    else:
        sentences = [
            f"The last attempt failed at {_at(error_at)}, with "
            f"{error.error_class}: {_short_message(error.message)}."
        ]
    sentences.append(_count_sentence(facts.error_count, stopped, stop_after))
    if _is_auth(error):
        sentences.append(
            "Waiting will not fix this: check the connection's credentials and permissions."
        )
    elif error is not None and not error.retryable:
        sentences.append("Waiting alone may not fix this kind of error.")
    return sentences


def _next_attempt_sentence(
    facts: _Facts, next_attempt: datetime | None, texts: _Texts, policy: StatusPolicy
) -> str:
    """Say when the next attempt is due: after the source's wait, after the backoff, or now."""
    if next_attempt is None:
        return "incsync will retry at the next cycle."
    text = texts.write(next_attempt)
    if next_attempt <= facts.now:
        return f"The next attempt is due now (it was due at {text.exact})."
    if next_attempt == facts.waiting_until:
        return f"The source asked to wait, so the next attempt is due at {text.exact}."
    wait = _attempt_wait(facts.error_count, policy)
    if wait > policy.expected_interval:
        return (
            f"The next attempt is due at {text.exact}, {_spelled(wait)} after the last: "
            "attempts are spaced out while they fail."
        )
    return f"The next attempt is due at {text.exact}."


def _next_step(
    reason: StatusReason,
    facts: _Facts,
    texts: _Texts,
    next_attempt: datetime | None,
    policy: StatusPolicy,
) -> tuple[list[str], list[StatusNote]]:
    """Say what happens next: a fix and a resume, the next attempt, or a wait the source asked."""
    sentences: list[str] = []
    notes: list[StatusNote] = []
    waiting = texts.waiting_until
    # A stopped or cancelled source does not retry by itself, so only the others say when.
    failed = bool(facts.error_count) and reason not in (
        StatusReason.STOPPED,
        StatusReason.CANCELLED,
    )
    if reason is StatusReason.STOPPED:
        sentences.append("Fix the cause, then resume the source.")
    if failed:
        notes.append(StatusNote.LAST_ATTEMPT_FAILED)
    # An attempt after the last completed sync that has not failed either: still running, or lost.
    unfinished = facts.last_attempt if facts.last_attempt != facts.last_sync else None
    quietly_retrying = reason is StatusReason.RETRYING and not failed and waiting is None
    if quietly_retrying and unfinished is not None and facts.running:
        sentences.append(f"A cycle has been running since {_at(texts.write(unfinished))}.")
    elif quietly_retrying and unfinished is not None:
        sentences.append(
            f"The last attempt started at {_at(texts.write(unfinished))}, and has neither "
            "completed nor failed."
        )
    elif (failed or quietly_retrying) and reason is not StatusReason.SYNC_OVERDUE:
        # An overdue source's headline already said when the next attempt was due.
        sentences.append(_next_attempt_sentence(facts, next_attempt, texts, policy))
    if waiting is not None:
        notes.append(StatusNote.WAITING_FOR_SOURCE)
        if not (failed and next_attempt == facts.waiting_until):
            sentences.append(f"The source asked not to be called before {waiting.exact}.")
    return sentences, notes


def _set_aside_sentences(rejected: int, policy: StatusPolicy) -> list[str]:
    if not rejected:
        return []
    records, pronoun = plural(rejected, "record"), "it" if rejected == 1 else "they"
    return [
        f"The last cycle set {records} aside because {pronoun} could not be read; "
        f"everything else was applied. {policy.set_aside_hint}"
    ]


def _records(count: int) -> str:
    return plural(count, "live record")


def _drift_sentences(facts: _Facts, texts: _Texts) -> list[str]:
    """Say what the last count found, only when the source and the host disagreed."""
    source, host, at = facts.live_at_source, facts.live_in_host, facts.counted_at
    if source is None or host is None or at is None or source == host:
        return []
    verb = "is" if host == 1 else "are"
    return [
        f"The source has {_records(source)}; {host:,} {verb} imported "
        f"(counted {_at(texts.write(at))})."
    ]


def _skew_sentences(facts: _Facts, texts: _Texts, tolerance: timedelta) -> list[str]:
    """Name the suspect clock of a time beyond the tolerance: a clock to check, not skew to hide."""
    sentences = []
    sync_at, change_at = facts.last_sync, facts.last_change
    if texts.last_sync is not None and sync_at is not None and sync_at - facts.now > tolerance:
        sentences.append(
            f"The last sync is dated {texts.last_sync.relative}: "
            "this host's clock may have been set back."
        )
    if (
        texts.last_change is not None
        and change_at is not None
        and change_at - facts.now > tolerance
    ):
        sentences.append(
            f"The last change is dated {texts.last_change.relative}: the source's clock may be "
            "ahead of this host's."
        )
    return sentences


def _source_clock_sentences(history: HistorySummary | None, tolerance: timedelta) -> list[str]:
    """Say that times are on the source's clock, when its measured skew is beyond the tolerance."""
    skew = None if history is None else history.clock_skew
    if skew is None or abs(skew) <= tolerance:
        return []
    way = "ahead of" if skew > timedelta(0) else "behind"
    return [
        f"The source's clock is {duration_text(abs(skew))} {way} this host's; times are read on "
        "the source's clock."
    ]


def _history_sentences(history: HistorySummary | None) -> list[str]:
    """Say how the latest cycles ended, when there were any."""
    if history is None or not history.cycles:
        return []
    ended = [
        (count, word)
        for count, word in (
            (history.completed, "completed"),
            (history.failed, "failed"),
            (history.interrupted, "interrupted"),
        )
        if count
    ]
    if history.cycles == 1:
        return [f"Last cycle: {ended[0][1]}."]
    counts = ", ".join(f"{count:,} {word}" for count, word in ended)
    return [f"Last {plural(history.cycles, 'cycle')}: {counts}."]


def _time_sentences(texts: _Texts) -> list[str]:
    sync, change = texts.last_sync, texts.last_change
    return [
        f"Last completed sync: {_at(sync)}."
        if sync is not None
        else "No synchronization cycle has completed yet.",
        f"Last change at the source: {_at(change)}."
        if change is not None
        else "No change at the source has been seen yet.",
    ]


def classify_status(
    *,
    last_change: datetime | None,
    last_sync: datetime | None,
    error_count: int = 0,
    now: datetime,
    last_attempt: datetime | None = None,
    phase: Phase | None = None,
    last_error: ErrorInfo | None = None,
    not_before: datetime | None = None,
    rejected: int = 0,
    live_at_source: int | None = None,
    live_in_host: int | None = None,
    counted_at: datetime | None = None,
    running_until: datetime | None = None,
    history: HistorySummary | None = None,
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
        last_attempt: When a cycle last started (took the lease), or ``None`` if unknown; then
            the last failure's time stands for it. Overdue (red) means no attempt when one was
            due; failing attempts are never overdue.
        phase: The source's phase as the engine recorded it. When given, only
            ``Phase.STOPPED`` means stopped and the policy's failure thresholds are not used;
            ``None`` (facts only) reads as new or active, from ``last_sync``, and decides
            stopped from ``error_count`` and the thresholds.
        last_error: What the last failed cycle died of (ignored while ``error_count`` is 0: it
            belongs to a cycle followed by a success).
        not_before: The source asked not to be called before this time.
        rejected: Records the last completed cycle set aside as malformed.
        live_at_source: Live records the source counted at its last count, or ``None`` if it
            was never counted (see :class:`~incsync.state.CountCheck`).
        live_in_host: Live transactions the host held at that count.
        counted_at: When that count was made; the three are given together or not at all.
        running_until: When the lease of the cycle running now expires (``None``, or a time not
            after ``now``: no cycle holds it). A running cycle is never overdue.
        history: How the source's latest cycles ended (see :mod:`incsync.history`), for the
            hover; ``None`` says nothing of them.
        policy: The thresholds.
        zone: The display zone for exact times, an IANA name or a ``tzinfo`` (default UTC).

    Returns:
        The colour, reason, label, icon, hover text, both times, and until when time alone
        leaves the reason as it is.

    Raises:
        NaiveDatetimeError: A datetime has no timezone.
        ConfigurationError: A count is negative, only some of the count facts are given, or
            ``zone`` is not a known IANA zone name.
    """
    facts = _facts(
        last_change=last_change,
        last_sync=last_sync,
        last_attempt=last_attempt,
        error_count=error_count,
        now=now,
        phase=phase,
        last_error=last_error,
        not_before=not_before,
        rejected=rejected,
        live_at_source=live_at_source,
        live_in_host=live_in_host,
        counted_at=counted_at,
        running_until=running_until,
    )
    return _status(facts, history, policy, zone)


def _decided(
    facts: _Facts, policy: StatusPolicy, next_attempt: datetime | None
) -> tuple[StatusReason, _Deadlines]:
    """Return the reason of ``facts`` under ``policy`` and the deadlines it was decided on.

    ``next_attempt`` is ``_next_attempt(facts, policy)``, which the status screen also words.
    """
    deadlines = _deadlines(facts, next_attempt, policy)
    return _decide(facts, _stop_after(facts, policy), deadlines), deadlines


def _status(
    facts: _Facts, history: HistorySummary | None, policy: StatusPolicy, zone: str | tzinfo
) -> SourceStatus:
    """Return the status of ``facts`` (see :func:`classify_status`)."""
    next_attempt = _next_attempt(facts, policy)
    texts = _texts(facts, resolve_zone(zone), policy.future_tolerance)
    stop_after = _stop_after(facts, policy)
    reason, deadlines = _decided(facts, policy, next_attempt)
    color, icon, label = REASONS[reason]
    stopped = reason is StatusReason.STOPPED
    next_step, notes = _next_step(reason, facts, texts, next_attempt, policy)
    skew = [
        *_skew_sentences(facts, texts, policy.future_tolerance),
        *_source_clock_sentences(history, policy.clock_skew_tolerance),
    ]
    drift = _drift_sentences(facts, texts)
    if facts.rejected:
        notes.append(StatusNote.RECORDS_SET_ASIDE)
    if drift:
        notes.append(StatusNote.COUNT_DRIFT)
    if skew:
        notes.append(StatusNote.CLOCK_SKEW)
    # "Retrying, retrying" says nothing twice; red needs no softening.
    if (
        StatusNote.LAST_ATTEMPT_FAILED in notes
        and color is not StatusColor.RED
        and reason is not StatusReason.RETRYING
    ):
        label = f"{label}, retrying"
    sentences = [
        *_headline(reason, policy, facts, texts, next_attempt),
        *_failure_sentences(facts, texts.error_at, stopped, stop_after),
        *next_step,
        *_set_aside_sentences(facts.rejected, policy),
        *drift,
        *skew,
        *_history_sentences(history),
        *_time_sentences(texts),
    ]
    return SourceStatus(
        color=color,
        reason=reason,
        label=label,
        icon=icon,
        hover=" ".join(sentences),
        last_change=texts.last_change,
        last_sync=texts.last_sync,
        notes=tuple(notes),
        reason_until=_reason_until(deadlines, facts.now),
    )


def status_of(
    state: SourceState,
    *,
    now: datetime,
    history: HistorySummary | None = None,
    policy: StatusPolicy = DEFAULT_STATUS_POLICY,
    zone: str | tzinfo = "UTC",
) -> SourceStatus:
    """Return the status of a stored source (``classify_status`` over the state's facts).

    The facts include the source's last count check, if it has one.

    Args:
        state: The source's state, as the store holds it.
        now: The present (aware).
        history: How the source's latest cycles ended, e.g.
            ``summarize(engine.history(key, limit=SUMMARY_CYCLES))`` (see
            :mod:`incsync.history`); ``None`` leaves them out of the hover.
        policy: The thresholds; use :meth:`StatusPolicy.matching` to share the engine's.
        zone: The display zone, an IANA name or a ``tzinfo``.

    Raises:
        NaiveDatetimeError: ``now`` has no timezone.
        ConfigurationError: ``zone`` is not a known IANA zone name.
    """
    return _status(_state_facts(state, now), history, policy, zone)


def _state_facts(state: SourceState, now: datetime) -> _Facts:
    """Return the facts of a stored source: its state's, with its last count check if any."""
    count = state.count_check
    return _facts(
        last_change=state.last_change,
        last_sync=state.last_sync,
        last_attempt=state.last_attempt,
        error_count=state.consecutive_failures,
        now=now,
        phase=state.phase,
        last_error=state.last_error,
        not_before=state.not_before,
        rejected=state.last_cycle_rejected,
        live_at_source=None if count is None else count.source,
        live_in_host=None if count is None else count.host,
        counted_at=None if count is None else count.at,
        running_until=None if state.lease is None else state.lease.expires_at,
    )


def reason_of(
    state: SourceState, *, now: datetime, policy: StatusPolicy = DEFAULT_STATUS_POLICY
) -> StatusReason:
    """Return why a stored source has its colour (:data:`REASONS` gives the colour), and no text.

    The decision of :func:`status_of`, without the hover's sentences and times: what counting
    sources per colour needs (the ``incsync.sources`` gauge of :mod:`incsync.telemetry`).

    Args:
        state: The source's state, as the store holds it.
        now: The present (aware).
        policy: The thresholds.

    Raises:
        NaiveDatetimeError: ``now`` has no timezone.
    """
    facts = _state_facts(state, now)
    return _decided(facts, policy, _next_attempt(facts, policy))[0]


def statuses_of(
    states: Sequence[SourceState],
    *,
    now: datetime,
    histories: Mapping[str, HistorySummary] = MappingProxyType({}),
    policy: StatusPolicy = DEFAULT_STATUS_POLICY,
    zone: str | tzinfo = "UTC",
) -> list[tuple[str, SourceStatus]]:
    """Return ``(key, status)`` for each state, ready for :mod:`incsync.views`.

    Args:
        states: The sources' states.
        now: The present (aware).
        histories: Each source's history summary by key (see :func:`status_of`); a source
            without one has none in its hover.
        policy: The thresholds.
        zone: The display zone.

    Raises:
        NaiveDatetimeError: ``now`` has no timezone.
        ConfigurationError: ``zone`` is not a known IANA zone name.
    """
    tz = resolve_zone(zone)
    return [
        (
            state.key,
            status_of(state, now=now, history=histories.get(state.key), policy=policy, zone=tz),
        )
        for state in states
    ]
