"""A source's cycle history: one entry per cycle that ran, how long entries are kept, a summary.

Every cycle that takes a source's lease ends by writing the source's final state, and that same
transaction keeps the cycle's :class:`CycleEntry`:

* a completed cycle, with :meth:`~incsync.protocols.StateStore.complete_cycle`;
* a failed one, and one whose source had to be reset to be re-read whole, with
  :meth:`~incsync.protocols.StateStore.fail_cycle`;
* one interrupted at a durable page by a cancel or the host's ``stop``, or stopped by a reset
  (or a rewind) made while it ran, with :meth:`~incsync.protocols.StateStore.interrupt_cycle`.

So the history holds a cycle exactly when its final state was written, with the outcome
:meth:`~incsync.engine.SyncEngine.run_cycle` returned. A skipped cycle did nothing and has no
entry. Nor has a cycle that never wrote a final state: its process died, it was abandoned (a
``KeyboardInterrupt``, a store that could not record the outcome), or another worker took its
lease over (the store refuses every write of a lost lease; the new holder's cycle is recorded).

:func:`cycle_entry` is the one way an entry is made, from the cycle's :class:`CycleResult`, so the
history says what the cycle reported. Stores keep entries by :class:`HistoryRetention`
(:func:`retained` is the rule), pruning as they write; a retention of no cycles
(:data:`NO_HISTORY`) turns the history off, and :attr:`HistoryRetention.keeps_entries` is the one
rule that says whether an entry is written at all. An entry keeps its cycle's id
(:attr:`CycleEntry.cycle_id`, the ``cycle_id`` its log records carry), so a row of the history
leads to the cycle's log lines. :func:`summarize` counts outcomes for the
status screen, and :func:`summary_of_cycles` does the same from the two columns it reads, so a
store can summarise many sources in one query
(:meth:`~incsync.protocols.StateStore.history_summaries`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

import attrs

from incsync.errors import ConfigurationError
from incsync.policy import (
    SettingRule,
    optional_positive_duration,
    whole_number_setting,
)
from incsync.results import CycleResult, Outcome
from incsync.state import check_source_key
from incsync.timestamps import earlier, ensure_utc

__all__ = [
    "DEFAULT_HISTORY_RETENTION",
    "NO_HISTORY",
    "SUMMARY_CYCLES",
    "CycleEntry",
    "HistoryRetention",
    "HistorySummary",
    "cycle_entry",
    "retained",
    "summarize",
    "summary_of_cycles",
]

SUMMARY_CYCLES = 24
"""How many of a source's latest cycles the status summarises (a day of hourly cycles)."""

_count = whole_number_setting(0)
_optional_count = SettingRule(f"{_count.accepts} or None", lambda v: v is None or _count.holds(v))


def _source_key(_instance: object, _attribute: attrs.Attribute[str], value: object) -> None:
    check_source_key(value)


def _ran(_instance: object, _attribute: attrs.Attribute[Outcome], value: object) -> None:
    if not isinstance(value, Outcome) or value.skipped:
        raise ConfigurationError(
            f"a cycle entry's outcome must be an Outcome of a cycle that ran, got {value!r}; "
            "a skipped cycle has no entry"
        )


def _started(value: datetime) -> datetime:
    return ensure_utc(value, "started")


def _ended(value: datetime) -> datetime:
    return ensure_utc(value, "ended")


def _retry_at(value: datetime | None) -> datetime | None:
    return None if value is None else ensure_utc(value, "retry_at")


# A cycle's id is looked for in logs and printed on a terminal: visible ASCII only, no space, and
# short (the engine's are 16 hex digits).
_CYCLE_ID_LENGTH = 64
_CYCLE_ID = re.compile(f"[!-~]{{1,{_CYCLE_ID_LENGTH}}}")
_cycle_id = SettingRule(
    f"a string of 1 to {_CYCLE_ID_LENGTH} visible ASCII characters (no space) or None",
    lambda v: v is None or (isinstance(v, str) and _CYCLE_ID.fullmatch(v) is not None),
)


def _skew(_instance: object, _attribute: attrs.Attribute[timedelta | None], value: object) -> None:
    if value is not None and not isinstance(value, timedelta):
        raise ConfigurationError(f"clock_skew must be a timedelta or None, got {value!r}")


@attrs.frozen(slots=True)
class CycleEntry:
    """One cycle of one source, as its history keeps it.

    Args:
        source_key: The source.
        generation: The source's generation the cycle ran under (a reset bumps it).
        worker: Who ran it: the holder named in its lease.
        started: When it took the lease.
        ended: When it wrote its final state.
        outcome: How it ended; never a skipped outcome.
        pages: Pages read.
        fetched: Records read (well-formed and set aside).
        applied: Records written as new or newer versions.
        already_applied: Records the sink already held at that version.
        rejected: Records set aside as malformed.
        swept: Transactions made tombstones after a full re-read.
        reconcile_fetched: Records an id reconcile fetched by id because the host lacked them
            (see :mod:`incsync.reconcile`); 0 for an entry kept before stores kept it.
        reconcile_tombstoned: Transactions an id reconcile made tombstones because the source no
            longer held them; 0 for an entry kept before stores kept it.
        error_class: The class of the error that ended it, if one did.
        error: That error's message, redacted as every stored error is.
        retry_at: The time the source asked not to be called before, if it asked.
        clock_skew: How far the source's clock was ahead of this host's (negative: behind), when
            measured; ``None`` when not.
        cycle_id: The cycle's id (:attr:`~incsync.results.CycleResult.cycle_id`), which its log
            records carry; ``None`` for an entry kept before stores kept it.

    Raises:
        ConfigurationError: The key cannot name a source, a count is not an integer of at least
            0, the outcome is a skipped one, ``clock_skew`` is not a ``timedelta``, or
            ``cycle_id`` is not 1 to 64 visible ASCII characters.
        NaiveDatetimeError: A time has no timezone.
    """

    source_key: str = attrs.field(validator=_source_key)
    generation: int = attrs.field(validator=_count)
    worker: str
    started: datetime = attrs.field(converter=_started)
    ended: datetime = attrs.field(converter=_ended)
    outcome: Outcome = attrs.field(validator=_ran)
    pages: int = attrs.field(default=0, validator=_count)
    fetched: int = attrs.field(default=0, validator=_count)
    applied: int = attrs.field(default=0, validator=_count)
    already_applied: int = attrs.field(default=0, validator=_count)
    rejected: int = attrs.field(default=0, validator=_count)
    swept: int = attrs.field(default=0, validator=_count)
    reconcile_fetched: int = attrs.field(default=0, validator=_count)
    reconcile_tombstoned: int = attrs.field(default=0, validator=_count)
    error_class: str | None = None
    error: str | None = None
    retry_at: datetime | None = attrs.field(default=None, converter=_retry_at)
    clock_skew: timedelta | None = attrs.field(default=None, validator=_skew)
    cycle_id: str | None = attrs.field(default=None, validator=_cycle_id)

    @property
    def duration(self) -> timedelta:
        """How long the cycle ran, by the clock of the worker that ran it."""
        return self.ended - self.started


def cycle_entry(
    result: CycleResult,
    *,
    generation: int,
    worker: str,
    ended: datetime,
    retry_at: datetime | None = None,
    clock_skew: timedelta | None = None,
) -> CycleEntry:
    """Return the history entry of a cycle that ran, from what it reports.

    Args:
        result: The cycle's result (its cursor after is not kept; its id is).
        generation: The generation the cycle ran under.
        worker: The holder of its lease.
        ended: When its final state is written.
        retry_at: When the source asked to be called again, if it did.
        clock_skew: The measured skew of the source's clock, if measured.

    Raises:
        ConfigurationError: The result is of a skipped cycle, or has no start time.
    """
    if result.started_at is None:
        raise ConfigurationError("a cycle entry needs the cycle's start time (started_at)")
    return CycleEntry(
        source_key=result.source_key,
        generation=generation,
        worker=worker,
        started=result.started_at,
        ended=ended,
        outcome=result.outcome,
        pages=result.pages,
        fetched=result.fetched,
        applied=result.applied,
        already_applied=result.already_applied,
        rejected=result.rejected,
        swept=result.swept,
        reconcile_fetched=result.reconcile_fetched,
        reconcile_tombstoned=result.reconcile_tombstoned,
        error_class=result.error_class,
        error=result.error,
        retry_at=retry_at,
        clock_skew=clock_skew,
        cycle_id=result.cycle_id,
    )


@attrs.frozen
class HistoryRetention:
    """How much of each source's cycle history a store keeps.

    An entry is kept while it is one of the source's ``max_cycles`` newest, and started at most
    ``max_age`` before the source's cycle written last. Stores prune as they write an entry, only
    that source's entries, through an index: a source that stops running keeps its last entries.

    ``max_cycles=0`` (:data:`NO_HISTORY`) turns the history off: the store writes no entry and
    prunes nothing, so a cycle costs what it cost before there was a history. Entries kept before
    it was turned off stay readable until a store with a history writes that source's next one.

    Args:
        max_cycles: The most entries kept per source; ``0`` for none (no history); ``None`` for
            no limit by number.
        max_age: The longest span kept per source, back from its latest cycle's start; ``None``
            for no limit by age.

    Raises:
        ConfigurationError: ``max_cycles`` is not an integer of at least 0 or ``None``, or
            ``max_age`` is not a ``timedelta`` longer than zero or ``None``.
    """

    max_cycles: int | None = attrs.field(default=1000, validator=_optional_count)
    max_age: timedelta | None = attrs.field(
        default=timedelta(days=31), validator=optional_positive_duration
    )

    @property
    def keeps_entries(self) -> bool:
        """Whether a store writes cycle entries at all (the one rule every store asks)."""
        return self.max_cycles != 0

    def oldest_start(self, latest: datetime) -> datetime | None:
        """Return the earliest start a kept entry may have, ``None`` without an age limit.

        Args:
            latest: The start of the source's cycle written last (aware).
        """
        return None if self.max_age is None else earlier(latest, self.max_age)


DEFAULT_HISTORY_RETENTION = HistoryRetention()
"""What every built-in store keeps unless told otherwise: 1,000 cycles and 31 days per source."""

NO_HISTORY = HistoryRetention(max_cycles=0, max_age=None)
"""No cycle history: a store given it writes no entry (``history_retention=NO_HISTORY``)."""


def retained(
    entries: Sequence[CycleEntry], retention: HistoryRetention, latest: datetime
) -> list[CycleEntry]:
    """Return the entries a store keeps of one source's, newest first (the retention's rule).

    Args:
        entries: The source's entries, newest first.
        retention: How much to keep.
        latest: The start of the source's cycle written last.
    """
    kept = entries if retention.max_cycles is None else entries[: retention.max_cycles]
    oldest = retention.oldest_start(latest)
    return [entry for entry in kept if oldest is None or entry.started >= oldest]


@attrs.frozen(slots=True)
class HistorySummary:
    """How a source's latest cycles ended, for the status screen.

    Args:
        completed: Cycles that completed.
        failed: Cycles that failed.
        interrupted: Cycles interrupted by a cancel, a stop or a reset (the engine's own, when the
            source had to be re-read whole, included).
        clock_skew: The source's clock skew as the newest of them that measured it found it
            (see :mod:`incsync.clocks`); ``None`` when none did.

    Raises:
        ConfigurationError: A count is not an integer of at least 0, or ``clock_skew`` is not a
            ``timedelta``.
    """

    completed: int = attrs.field(default=0, validator=_count)
    failed: int = attrs.field(default=0, validator=_count)
    interrupted: int = attrs.field(default=0, validator=_count)
    clock_skew: timedelta | None = attrs.field(default=None, validator=_skew)

    @property
    def cycles(self) -> int:
        """How many cycles the summary covers."""
        return self.completed + self.failed + self.interrupted


def summarize(entries: Iterable[CycleEntry]) -> HistorySummary:
    """Count how the given cycles ended, and keep the newest measured clock skew.

    Args:
        entries: One source's cycles, newest first (pass the latest :data:`SUMMARY_CYCLES` for the
            status).
    """
    return summary_of_cycles((entry.outcome, entry.clock_skew) for entry in entries)


def summary_of_cycles(cycles: Iterable[tuple[Outcome, timedelta | None]]) -> HistorySummary:
    """Return the summary of cycles given as their outcome and measured clock skew.

    This is :func:`summarize`'s rule, for a store that reads only those two columns of many
    sources' entries at once.

    Args:
        cycles: One source's cycles, newest first, each as ``(outcome, clock_skew)``.
    """
    kept = list(cycles)
    outcomes = [outcome for outcome, _ in kept]
    completed = outcomes.count(Outcome.COMPLETED)
    failed = outcomes.count(Outcome.FAILED)
    skew = next((skew for _, skew in kept if skew is not None), None)
    return HistorySummary(
        completed=completed,
        failed=failed,
        interrupted=len(outcomes) - completed - failed,
        clock_skew=skew,
    )
