"""The status's decision: the checked facts, the deadlines time crosses, and the reason.

The first matching row of the table in :mod:`incsync.status` is :func:`_decide`'s; the hover's
sentences (:mod:`incsync._status_hover`) word the same facts and deadlines.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import attrs

from incsync._status_values import StatusPolicy, StatusReason
from incsync.errors import ConfigurationError
from incsync.policy import backoff_interval
from incsync.state import ErrorInfo, Phase, SourceState
from incsync.timestamps import ensure_utc


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
    """Return the reason of the first matching row of the table in :mod:`incsync.status`."""
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


def _decided(
    facts: _Facts, policy: StatusPolicy, next_attempt: datetime | None
) -> tuple[StatusReason, _Deadlines]:
    """Return the reason of ``facts`` under ``policy`` and the deadlines it was decided on.

    ``next_attempt`` is ``_next_attempt(facts, policy)``, which the status screen also words.
    """
    deadlines = _deadlines(facts, next_attempt, policy)
    return _decide(facts, _stop_after(facts, policy), deadlines), deadlines


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
