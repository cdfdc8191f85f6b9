"""The state of a source and every change to it, as pure functions over frozen values.

Stores are thin shells around these functions: inside one transaction they load the stored
:class:`SourceState`, call a transition, and write the result. Keeping the rules here means every
store (in-memory, SQLite, a host's own) enforces exactly the same leases, fencing and
compare-and-set checks.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import attrs

from incsync.cursor import Cursor
from incsync.errors import (
    ConfigurationError,
    GenerationChangedError,
    LeaseLostError,
    StaleWriteError,
)
from incsync.marks import (
    Marks,
    finished_read_marks,
    forward_marks,
    frozen_marks,
    rewound_marks,
)
from incsync.records import RejectedRecord
from incsync.timestamps import ensure_utc, later

__all__ = [
    "Checkpoint",
    "CountCheck",
    "ErrorInfo",
    "Lease",
    "Phase",
    "SkipReason",
    "SourceState",
    "acquire",
    "admit_writer",
    "cancel",
    "check_source_key",
    "complete",
    "counted",
    "fail",
    "held_lease",
    "interrupt",
    "new_state",
    "release",
    "renew",
    "reset",
    "resume",
    "rewind",
    "save_checkpoint",
    "skip_reason",
]


class Phase(enum.Enum):
    """Where a source is in its life."""

    NEW = "new"
    """Connected, no cycle has completed yet."""
    ACTIVE = "active"
    """Syncing incrementally."""
    RESETTING = "resetting"
    """Reset by the host; the next full cycle re-reads everything."""
    CANCELLED = "cancelled"
    """Stopped by the host; no cycle runs until it is resumed or reset."""
    STOPPED = "stopped"
    """Stopped after repeated errors; no cycle runs until the host resumes or resets it."""


class SkipReason(enum.Enum):
    """Why a cycle did not start."""

    RUNNING_ELSEWHERE = "running_elsewhere"
    CANCELLED = "cancelled"
    STOPPED = "stopped"
    WAITING = "waiting"
    """The source asked us to wait (rate limit or quota) and that time has not come."""


# A released lease keeps its token (so fencing survives) and expires at the epoch.
_RELEASED_AT = datetime(1970, 1, 1, tzinfo=timezone.utc)


def check_source_key(key: object, setting: str = "source_key") -> str:
    """Return ``key`` when it can name a source: a string with more than whitespace in it.

    This is the one rule for the host's names of sources (and of the vendor accounts they share):
    the engine's commands, every store and the scheduler ask it, so a key one of them refuses is
    refused by all.

    Args:
        key: The name to check.
        setting: What the name is called in the error.

    Returns:
        ``key`` unchanged.

    Raises:
        ConfigurationError: ``key`` is not a string, or is empty or only whitespace.
    """
    if not isinstance(key, str) or not key.strip():
        raise ConfigurationError(f"{setting} must be a non-empty string, got {key!r}")
    return key


def _optional_utc(value: datetime | None, field: str) -> datetime | None:
    return None if value is None else ensure_utc(value, field)


def _lease_expiry(value: datetime) -> datetime:
    return ensure_utc(value, "lease expires_at")


def _error_time(value: datetime) -> datetime:
    return ensure_utc(value, "error at")


def _last_change(value: datetime | None) -> datetime | None:
    return _optional_utc(value, "last_change")


def _last_sync(value: datetime | None) -> datetime | None:
    return _optional_utc(value, "last_sync")


def _last_attempt(value: datetime | None) -> datetime | None:
    return _optional_utc(value, "last_attempt")


def _not_before(value: datetime | None) -> datetime | None:
    return _optional_utc(value, "not_before")


def _counted_at(value: datetime) -> datetime:
    return ensure_utc(value, "count check at")


def _live_count(_instance: object, attribute: attrs.Attribute[int], value: object) -> None:
    # A count comes from a connector or a sink the host wrote: refuse one that is none.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(
            f"CountCheck {attribute.name} must be a count of live records (an integer >= 0), "
            f"got {value!r}"
        )


def _optional_drift(
    _instance: object, attribute: attrs.Attribute[int | None], value: object
) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigurationError(
            f"CountCheck {attribute.name} must be an integer or None, got {value!r}"
        )


@attrs.frozen(slots=True)
class Lease:
    """The right of one worker to run a source's cycle, until it expires.

    Args:
        holder: Who holds it (for diagnosis; identity is checked by ``token``).
        expires_at: When another worker may take it over.
        token: A fencing token, larger for every acquisition of this source; a store refuses writes
            from any other token.
    """

    holder: str
    expires_at: datetime = attrs.field(converter=_lease_expiry)
    token: int


@attrs.frozen(slots=True)
class ErrorInfo:
    """What the last failed cycle died of, safe to store and show (secrets already redacted).

    Args:
        error_class: The exception's class name.
        message: The redacted message.
        at: When the failure happened.
        retryable: Whether waiting may heal it.
        auth: Whether the source rejected the credentials (an ``AuthError``); such sources stop
            after fewer failures.
    """

    error_class: str
    message: str
    at: datetime = attrs.field(converter=_error_time)
    retryable: bool = True
    auth: bool = False


@attrs.frozen(slots=True)
class CountCheck:
    """What the last count of a source's live records found, beside the host's count.

    Args:
        source: Live (not deleted) records the source said it holds.
        host: Live transactions the sink held for the source at the same time.
        at: When the two were counted.
        previous_drift: The drift of the count before this one, ``None`` for the first count and
            for the first after a reset: two drifts in a row, with no reset between them, are a
            persistent one (see :attr:`persistent`).
        full_read_drift: The drift counted right after the last completed full read of the
            source (its first read, or the re-read after a reset), ``None`` until one was
            counted: a drift a full read leaves is not one another full read removes.

    Raises:
        ConfigurationError: A count is not an integer of at least 0, or a drift not an integer.
        NaiveDatetimeError: ``at`` has no timezone.
    """

    source: int = attrs.field(validator=_live_count)
    host: int = attrs.field(validator=_live_count)
    at: datetime = attrs.field(converter=_counted_at)
    previous_drift: int | None = attrs.field(default=None, validator=_optional_drift)
    full_read_drift: int | None = attrs.field(default=None, validator=_optional_drift)

    @property
    def drift(self) -> int:
        """Records the source holds that the host does not (negative: the host holds more)."""
        return self.source - self.host

    @property
    def persistent(self) -> bool:
        """Whether this count and the one before both found a drift."""
        return self.drift != 0 and self.previous_drift not in (None, 0)


def counted(
    previous: CountCheck | None, source: int, host: int, at: datetime, *, full_read: bool
) -> CountCheck:
    """Return the count check that follows ``previous``, keeping the drifts it is judged by.

    A count that completes a full read starts the pairs over (its ``previous_drift`` is ``None``)
    and is the new ``full_read_drift``; any other keeps the drift before it and the last full
    read's.

    Args:
        previous: The source's last count check, if any.
        source: Live records at the source now.
        host: Live transactions in the host now.
        at: When they were counted.
        full_read: The cycle counting now completed a full read of the source.

    Raises:
        ConfigurationError: A count is not an integer of at least 0.
        NaiveDatetimeError: ``at`` has no timezone.
    """
    check = CountCheck(
        source=source,
        host=host,
        at=at,
        previous_drift=None if previous is None or full_read else previous.drift,
        full_read_drift=None if previous is None else previous.full_read_drift,
    )
    return attrs.evolve(check, full_read_drift=check.drift) if full_read else check


@attrs.frozen(slots=True)
class SourceState:
    """Everything incsync remembers about one source.

    Args:
        key: The host's name for the source (for example ``"acme/quickbooks"``).
        phase: Where the source is in its life.
        generation: Bumped by every reset; writes from an older generation are refused.
        cursor: The (updated_at, id) of the last applied record, ``None`` before the first.
        last_change: The newest creation/update ever seen at the source.
        last_sync: When the last cycle completed.
        last_attempt: When the last cycle started.
        consecutive_failures: Failed cycles since the last completed one.
        last_error: The last failure, if the source has failed since it last completed a cycle.
        lease: The current (possibly expired) lease, if any.
        not_before: The source asked not to be called again before this time.
        last_cycle_rejected: How many records the last completed cycle set aside as malformed.
        reset_pending: A reset was asked for and no cycle has completed since; a cancelled or
            stopped source goes back to resetting when resumed.
        marks: How far each side channel of the source has been read (see
            :mod:`incsync.marks`); forgotten by a reset.
        count_check: The last comparison of the source's live records with the host's, if one
            was made; a reset keeps it (see :func:`reset`).
    """

    key: str
    phase: Phase = Phase.NEW
    generation: int = 0
    cursor: Cursor | None = None
    last_change: datetime | None = attrs.field(default=None, converter=_last_change)
    last_sync: datetime | None = attrs.field(default=None, converter=_last_sync)
    last_attempt: datetime | None = attrs.field(default=None, converter=_last_attempt)
    consecutive_failures: int = 0
    last_error: ErrorInfo | None = None
    lease: Lease | None = None
    not_before: datetime | None = attrs.field(default=None, converter=_not_before)
    last_cycle_rejected: int = 0
    reset_pending: bool = False
    marks: Marks = attrs.field(factory=dict, converter=frozen_marks, hash=False)
    count_check: CountCheck | None = None

    @property
    def reads_whole(self) -> bool:
        """Whether the next cycle to complete has read the whole source: its first, or a re-read.

        The first read starts without a cursor, and so does the read after a reset; both may take
        several cycles (an ordered read goes on from its checkpoint), and the one that completes
        has read everything the source holds.
        """
        return self.reset_pending or self.last_sync is None


@attrs.frozen(slots=True)
class Checkpoint:
    """What a cycle asks the store to remember after a page is durable.

    Args:
        cursor: The cursor the durable pages allow (see :func:`incsync.cursor.advance`).
        last_change: The newest ``updated_at`` seen so far in this cycle.
        rejected: Records of this page set aside as malformed, to keep where the host can list them.
        marks: How far side channels have been read once this page is durable; each mark only
            moves forward.
        count_check: The count the completed cycle made, if it made one; kept by
            :func:`complete` only (a page's checkpoint carries none).
    """

    cursor: Cursor | None
    last_change: datetime | None = attrs.field(default=None, converter=_last_change)
    rejected: Sequence[RejectedRecord] = ()
    marks: Marks = attrs.field(factory=dict, converter=frozen_marks, hash=False)
    count_check: CountCheck | None = None


def new_state(key: str) -> SourceState:
    """Return the state of a source incsync has never seen.

    Raises:
        ConfigurationError: ``key`` cannot name a source (see :func:`check_source_key`).
    """
    return SourceState(key=check_source_key(key))


def _now(value: datetime) -> datetime:
    return ensure_utc(value, "now")


def _expiry(now: datetime, ttl: timedelta) -> datetime:
    # A ttl of timedelta.max is a lease that never expires, not an OverflowError.
    return later(_now(now), ttl)


def held_lease(state: SourceState, now: datetime) -> Lease | None:
    """Return the lease a cycle holds on the source at ``now``; ``None`` if none is held.

    A lease never taken, given up (released, or broken by the host) or expired is held by no one.

    Raises:
        NaiveDatetimeError: ``now`` has no timezone.
    """
    lease = state.lease
    return lease if lease is not None and lease.expires_at > _now(now) else None


def skip_reason(state: SourceState, now: datetime) -> SkipReason | None:
    """Return why a cycle may not start on ``state`` at ``now``, or ``None`` if it may.

    Raises:
        NaiveDatetimeError: ``now`` has no timezone.
    """
    now = _now(now)
    if state.phase is Phase.CANCELLED:
        return SkipReason.CANCELLED
    if state.phase is Phase.STOPPED:
        return SkipReason.STOPPED
    if held_lease(state, now) is not None:
        return SkipReason.RUNNING_ELSEWHERE
    if state.not_before is not None and state.not_before > now:
        return SkipReason.WAITING
    return None


def acquire(
    state: SourceState, holder: str, now: datetime, ttl: timedelta
) -> tuple[SourceState, Lease | None]:
    """Take the lease for a new cycle, if the source may run now.

    A lease left behind by a crashed worker is taken over once it has expired; every acquisition
    gets a larger fencing token, so the crashed worker's late writes are refused.

    Returns:
        The new state and the lease, or the unchanged state and ``None`` when the cycle must skip
        (:func:`skip_reason` says why).

    Raises:
        NaiveDatetimeError: ``now`` has no timezone.
    """
    now = _now(now)
    if skip_reason(state, now) is not None:
        return state, None
    previous = state.lease.token if state.lease is not None else 0
    lease = Lease(holder=holder, expires_at=_expiry(now, ttl), token=previous + 1)
    return attrs.evolve(state, lease=lease, last_attempt=now), lease


def _check_holder(state: SourceState, lease: Lease) -> None:
    held = state.lease
    if held is None or held.token != lease.token or held.expires_at == _RELEASED_AT:
        raise LeaseLostError(
            f"source {state.key!r}: lease {lease.token} held by {lease.holder!r} was taken over; "
            "this worker's results are discarded and the new holder carries on",
            source_key=state.key,
        )


def _check_generation(state: SourceState, generation: int) -> None:
    if state.generation != generation:
        raise GenerationChangedError(
            f"source {state.key!r} was reset or rewound during this cycle (generation "
            f"{generation} -> {state.generation}); the next cycle reads from the new cursor",
            source_key=state.key,
        )


def renew(state: SourceState, lease: Lease, now: datetime, ttl: timedelta) -> SourceState:
    """Extend the caller's lease.

    Raises:
        LeaseLostError: The caller no longer holds the lease.
        NaiveDatetimeError: ``now`` has no timezone.
    """
    expires_at = _expiry(now, ttl)
    _check_holder(state, lease)
    return attrs.evolve(state, lease=attrs.evolve(lease, expires_at=expires_at))


def release(state: SourceState, lease: Lease) -> SourceState:
    """Give the lease up; a no-op when the caller no longer holds it."""
    if state.lease is None or state.lease.token != lease.token:
        return state
    return attrs.evolve(state, lease=attrs.evolve(lease, expires_at=_RELEASED_AT))


def admit_writer(source_key: str, highest: int | None, token: int) -> int:
    """Decide whether a sink may write a page of ``source_key`` from the lease ``token``.

    A sink that is not the state store cannot see the lease, so it keeps its own fence: the highest
    token that has written each source. A worker that stalled past its lease (a long pause between
    reading a page and writing it) carries a lower token than the worker that took over; letting it
    write could replace what its successor wrote at the same ``updated_at`` for good, since the
    successor's cursor has moved past those records. The fence only moves up, in the same
    transaction as the page's rows.

    Args:
        source_key: The source being written.
        highest: The highest token the sink has accepted for the source, ``None`` if none yet.
        token: The writing worker's lease token.

    Returns:
        The fence to keep after the write.

    Raises:
        StaleWriteError: A newer lease has already written; nothing of the page may be written.
    """
    if highest is None or token >= highest:
        return token
    raise StaleWriteError(
        f"source {source_key!r}: the sink already holds writes of lease {highest}, newer than "
        f"this worker's lease {token}; this worker's page is refused and the newer holder "
        "carries on. If this repeats on every cycle, the state store was replaced or restored "
        "while the sink kept its data: see 'Leases and fencing tokens' in the documentation",
        source_key=source_key,
        token=token,
        highest=highest,
    )


def _newest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _forward(current: Cursor | None, proposed: Cursor | None) -> Cursor | None:
    if proposed is None:
        return current
    if current is None:
        return proposed
    return max(current, proposed)


def save_checkpoint(
    state: SourceState,
    lease: Lease,
    generation: int,
    checkpoint: Checkpoint,
    now: datetime,
    ttl: timedelta,
) -> SourceState:
    """Remember a durable page's progress, compare-and-set on lease and generation.

    The cursor only moves forward and the lease is extended, so a cycle that keeps checkpointing
    keeps its lease. A cancel that arrived meanwhile is preserved (the returned phase says so).

    Raises:
        LeaseLostError: Another worker took the lease over.
        GenerationChangedError: The source was reset after the cycle started.
        NaiveDatetimeError: ``now`` has no timezone.
    """
    expires_at = _expiry(now, ttl)
    _check_holder(state, lease)
    _check_generation(state, generation)
    return attrs.evolve(
        state,
        cursor=_forward(state.cursor, checkpoint.cursor),
        last_change=_newest(state.last_change, checkpoint.last_change),
        lease=attrs.evolve(lease, expires_at=expires_at),
        marks=forward_marks(state.marks, checkpoint.marks),
    )


def complete(
    state: SourceState,
    lease: Lease,
    generation: int,
    checkpoint: Checkpoint,
    now: datetime,
    rejected_in_cycle: int,
) -> SourceState:
    """Record a completed cycle: last sync is now, failures are forgotten, the lease is released.

    A source that was new or resetting becomes active; a cancel that arrived meanwhile stays. The
    checkpoint's count check replaces the stored one; without one, the stored one stays. The
    marks of a partitioned full read's plan are dropped: the read they kept is over.

    Raises:
        LeaseLostError: Another worker took the lease over.
        GenerationChangedError: The source was reset after the cycle started.
        NaiveDatetimeError: ``now`` has no timezone.
    """
    now = _now(now)
    _check_holder(state, lease)
    _check_generation(state, generation)
    phase = Phase.ACTIVE if state.phase in (Phase.NEW, Phase.RESETTING) else state.phase
    finished = attrs.evolve(
        state,
        phase=phase,
        cursor=_forward(state.cursor, checkpoint.cursor),
        last_change=_newest(state.last_change, checkpoint.last_change),
        # The marks of a partitioned full read's plan are forgotten with the read they kept.
        marks=finished_read_marks(forward_marks(state.marks, checkpoint.marks)),
        last_sync=now,
        consecutive_failures=0,
        last_error=None,
        not_before=None,
        last_cycle_rejected=rejected_in_cycle,
        reset_pending=False,
        count_check=state.count_check if checkpoint.count_check is None else checkpoint.count_check,
    )
    return release(finished, lease)


def fail(
    state: SourceState,
    lease: Lease,
    generation: int,
    error: ErrorInfo,
    stop_after: int,
    retry_at: datetime | None = None,
) -> SourceState:
    """Record a failed cycle; stop the source once ``stop_after`` consecutive cycles failed.

    A source that said when it may be called again (``retry_at``, a quota or rate limit) is
    waiting, not broken: the error and the time are recorded, but the failure does not count
    towards stopping it. A failure of a cycle whose source was reset meanwhile belongs to the old
    generation: only the lease is released, the fresh generation's counters stay clean.

    Raises:
        LeaseLostError: Another worker took the lease over (its own outcome will be recorded).
    """
    _check_holder(state, lease)
    if state.generation != generation:
        return release(state, lease)
    failures = state.consecutive_failures + (0 if retry_at is not None else 1)
    phase = state.phase
    if failures >= stop_after and phase is not Phase.CANCELLED:
        phase = Phase.STOPPED
    failed = attrs.evolve(
        state,
        phase=phase,
        consecutive_failures=failures,
        last_error=error,
        not_before=_newest(state.not_before, retry_at),
    )
    return release(failed, lease)


def interrupt(state: SourceState, lease: Lease) -> SourceState:
    """Record a cycle that ended before completing (a cancel, a stop, a reset): give its lease up.

    Its durable pages keep their checkpoints; nothing else changes. Unlike :func:`release`, it
    refuses a lease that was taken over, so a store writes nothing for it (its cycle entry
    included).

    Raises:
        LeaseLostError: Another worker took the lease over.
    """
    _check_holder(state, lease)
    return release(state, lease)


def reset(state: SourceState) -> SourceState:
    """Force the next cycle to re-read and re-apply every record; nothing is deleted.

    The generation is bumped, so a cycle running now has its later checkpoints refused and stops.
    The last count check stays for the status screen (it may be why the source was reset), but
    no longer counts as a drift in a row: the re-read changes what the host holds, and a check
    from before it must not reset the source again should the re-read's own count not be made.
    """
    return attrs.evolve(
        state,
        phase=Phase.RESETTING,
        generation=state.generation + 1,
        cursor=None,
        marks={},
        consecutive_failures=0,
        last_error=None,
        not_before=None,
        last_cycle_rejected=0,
        reset_pending=True,
        count_check=None
        if state.count_check is None
        else attrs.evolve(state.count_check, previous_drift=None),
    )


def rewind(state: SourceState, since: datetime) -> SourceState:
    """Make the next cycle read again from ``since``, without a reset: nothing is deleted or swept.

    The cursor moves back to ``since`` (before every id at that time), and so does every mark
    later than it: side channels, such as a log of deletions, are read again from there too. A
    cursor or mark already earlier stays where it is, and a source with no cursor yet still reads
    everything. The cursor of an unordered source, like an ordered one's, moves back at once; it
    moves forward again when a read from there completes.

    The generation is bumped, as by :func:`reset`: a cycle running now has its later checkpoints
    refused (it ends ``INTERRUPTED_RESET`` and cannot move the cursor past ``since`` again), and
    the next cycle re-applies once every record it reads (see :func:`incsync.records.supersedes`).
    Unlike a reset, the phase (a cancelled or stopped source stays so), the failures, the wait,
    the set-aside records and the counts stay, and ``reset_pending`` stays false, so the read
    that follows sweeps nothing: the transactions before ``since`` keep the older generation, which
    only the full read after a reset looks at.

    A side channel that cannot reach back to ``since`` (QuickBooks' change feed keeps 30 days)
    makes its connector ask for a full re-read, and the engine resets the source, as after an
    outage that long.

    Args:
        state: The source's state.
        since: The time to read again from (aware).

    Raises:
        ConfigurationError: A reset's full read has not completed yet: it re-reads everything
            already, and its sweep would take what it read before the rewind for gone.
        NaiveDatetimeError: ``since`` has no timezone.
    """
    since = ensure_utc(since, "since")
    if state.reset_pending:
        raise ConfigurationError(
            f"source {state.key!r} is being reset: its next completed cycle re-reads everything "
            "already, so it cannot be rewound until that read completes"
        )
    start = Cursor(since, "")
    return attrs.evolve(
        state,
        generation=state.generation + 1,
        cursor=None if state.cursor is None else min(state.cursor, start),
        marks=rewound_marks(state.marks, since),
    )


def cancel(state: SourceState) -> SourceState:
    """Stop syncing the source until it is resumed or reset; nothing is deleted."""
    return attrs.evolve(state, phase=Phase.CANCELLED)


def resume(state: SourceState) -> SourceState:
    """Let a cancelled or stopped source run again, with a fresh failure count.

    It goes back to resetting when a reset has not completed yet, to being new when it never
    completed a cycle, and to active otherwise.
    """
    if state.phase not in (Phase.CANCELLED, Phase.STOPPED):
        return state
    if state.reset_pending:
        phase = Phase.RESETTING
    elif state.last_sync is None:
        phase = Phase.NEW
    else:
        phase = Phase.ACTIVE
    return attrs.evolve(state, phase=phase, consecutive_failures=0, not_before=None)
