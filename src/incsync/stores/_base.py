"""The state-store methods every built-in store shares, written once over one primitive.

A concrete store only provides :meth:`StateStoreBase._update`: run a pure transition from
:mod:`incsync.state` on the stored state inside one transaction, write the result, and keep the
rejected records and the cycle entry given with it. Everything else (leases, checkpoints, reset,
rewind, cancel) is here. :class:`MappedRowsBase` does the same for the mapped transactions of
the built-in stores, over their two primitives.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, timedelta

from incsync import state as transitions
from incsync.actions import Action, ActionEntry
from incsync.content import digest_of_json
from incsync.errors import BadRecordError, ConfigurationError
from incsync.history import SUMMARY_CYCLES, CycleEntry, HistorySummary, summary_of_cycles
from incsync.mapping._kept import (
    DEFAULT_MAPPED_PAGE,
    MappedPosition,
    MappedRow,
    MappingLookup,
    RemapPage,
    checked_range,
)
from incsync.mapping._spec import TransactionMapping
from incsync.policy import optional_positive_count, positive_count
from incsync.records import Record, RejectedRecord
from incsync.results import Outcome
from incsync.state import Checkpoint, ErrorInfo, Lease, SourceState, check_source_key
from incsync.timestamps import ensure_utc

__all__ = [
    "MappedRowsBase",
    "StateStoreBase",
    "Transition",
    "kept_digest",
    "set_aside",
]

Transition = Callable[[SourceState], SourceState]
"""A pure change of a source's state, as :mod:`incsync.state` defines them."""


def set_aside(record: Record, reason: str, record_id: str | None = None) -> RejectedRecord:
    """Return the set-aside entry of a record a sink cannot keep, with ``reason``.

    ``record_id`` replaces the record's id where the store must write it otherwise (escaped).
    """
    refusal = BadRecordError(reason, record_id=record.id if record_id is None else record_id)
    return RejectedRecord.from_error(refusal, record)


def kept_digest(text: str) -> bytes | None:
    """Return the content digest of a payload a store kept as JSON text before it kept digests.

    ``None`` when the text has no content digest (an older version stored NaN): the next version
    read at the same time then replaces the row, as a changed content would.
    """
    try:
        return digest_of_json(text)
    except BadRecordError:
        return None


def _check_entry(source_key: str, entry: CycleEntry) -> None:
    """Refuse an entry written beside another source's final state."""
    check_source_key(source_key)
    if entry.source_key != source_key:
        raise ConfigurationError(
            f"the cycle entry of {entry.source_key!r} cannot be kept with the state of "
            f"{source_key!r}"
        )


class StateStoreBase(abc.ABC):
    """Implements :class:`~incsync.protocols.StateStore` over one atomic read-modify-write.

    Each method first asks :func:`incsync.state.check_source_key`, so a key the engine and the
    scheduler refuse never reaches the store's tables.
    """

    @abc.abstractmethod
    def _update(
        self,
        source_key: str,
        change: Transition,
        rejected: Sequence[RejectedRecord] = (),
        now: datetime | None = None,
        forget_rejected: bool = False,
        entry: CycleEntry | None = None,
        action: ActionEntry | None = None,
    ) -> SourceState:
        """Atomically replace the stored state by ``change(stored)`` and keep ``rejected``.

        With ``forget_rejected``, the source's set-aside records are dropped first (in the same
        transaction). With ``entry`` (a cycle's final state is being written), the entry is kept
        in the same transaction and the source's entries pruned by the store's retention
        (:func:`incsync.history.retained`). With ``action`` (a person's change), the action is
        kept in the same transaction. If ``change`` raises, nothing is written and the error
        propagates.
        """

    @abc.abstractmethod
    def load(self, source_key: str) -> SourceState:
        """Return the source's state (a new one if the store has never seen it)."""

    @abc.abstractmethod
    def list_states(self) -> Sequence[SourceState]:
        """Return the state of every source the store knows, ordered by key."""

    @abc.abstractmethod
    def list_rejected(self, source_key: str) -> Sequence[RejectedRecord]:
        """Return the records set aside for the source, oldest first."""

    @abc.abstractmethod
    def _history(self, source_key: str, limit: int | None) -> Sequence[CycleEntry]:
        """Return the source's kept entries, newest first (latest start, then latest written)."""

    @abc.abstractmethod
    def _actions(self, source_key: str, limit: int | None) -> Sequence[ActionEntry]:
        """Return the source's kept actions, newest first (latest time, then latest written)."""

    def actions(self, source_key: str, limit: int | None = None) -> Sequence[ActionEntry]:
        """Return the actions kept for the source, newest first, at most ``limit`` of them.

        Raises:
            ConfigurationError: ``limit`` is not an integer of at least 1 or ``None``.
        """
        check_source_key(source_key)
        optional_positive_count.check("limit", limit)
        return self._actions(source_key, limit)

    def history(self, source_key: str, limit: int | None = None) -> Sequence[CycleEntry]:
        """Return the source's kept cycle entries, newest first, at most ``limit`` of them.

        Raises:
            ConfigurationError: ``limit`` is not an integer of at least 1 or ``None``.
        """
        check_source_key(source_key)
        optional_positive_count.check("limit", limit)
        return self._history(source_key, limit)

    def _latest_cycles(
        self, source_keys: Sequence[str], cycles: int
    ) -> Iterable[tuple[str, Outcome, timedelta | None]]:
        """Yield each source's latest ``cycles`` entries as (key, outcome, clock skew).

        A source's entries come newest first, as :meth:`history` orders them. This reads each
        source's history in turn; the SQL stores read every source in one query.
        """
        for key in source_keys:
            for entry in self._history(key, cycles):
                yield key, entry.outcome, entry.clock_skew

    def history_summaries(
        self, source_keys: Iterable[str], cycles: int = SUMMARY_CYCLES
    ) -> dict[str, HistorySummary]:
        """Return each source's :func:`~incsync.history.summarize` of its latest ``cycles``.

        It equals ``summarize(history(key, cycles))`` for every key, read at once: the SQL stores
        answer for all the keys with one query, however many there are.

        Args:
            source_keys: The sources; each one has a summary (an empty one without entries).
            cycles: How many of each source's latest cycles are summarised.

        Raises:
            ConfigurationError: A key cannot name a source, or ``cycles`` is not an integer of
                at least 1.
        """
        keys = list(dict.fromkeys(check_source_key(key) for key in source_keys))
        positive_count.check("cycles", cycles)
        latest: dict[str, list[tuple[Outcome, timedelta | None]]] = {key: [] for key in keys}
        if keys:
            for key, outcome, skew in self._latest_cycles(keys, cycles):
                latest[key].append((outcome, skew))
        return {key: summary_of_cycles(kept) for key, kept in latest.items()}

    def acquire_lease(
        self, source_key: str, holder: str, now: datetime, ttl: timedelta
    ) -> Lease | None:
        """Take the source's lease for a new cycle, or return ``None`` if it may not run now.

        The stored state is locked, :func:`incsync.state.acquire` decides, and its result is
        written, so every store grants leases by that one rule.

        Raises:
            NaiveDatetimeError: ``now`` has no timezone.
        """
        check_source_key(source_key)
        now = ensure_utc(now, "now")
        granted: list[Lease] = []

        def take(current: SourceState) -> SourceState:
            updated, lease = transitions.acquire(current, holder, now, ttl)
            if lease is not None:
                granted.append(lease)
            return updated

        self._update(source_key, take)
        return granted[0] if granted else None

    def renew_lease(self, source_key: str, lease: Lease, now: datetime, ttl: timedelta) -> Lease:
        """Extend the caller's lease; raises ``LeaseLostError`` if it was taken over."""
        check_source_key(source_key)
        updated = self._update(source_key, lambda s: transitions.renew(s, lease, now, ttl))
        assert updated.lease is not None  # renew() always leaves the caller's lease in place
        return updated.lease

    def release_lease(self, source_key: str, lease: Lease) -> None:
        """Give the lease up; a no-op when the caller no longer holds it."""
        check_source_key(source_key)
        self._update(source_key, lambda s: transitions.release(s, lease))

    def save_checkpoint(
        self,
        source_key: str,
        lease: Lease,
        generation: int,
        checkpoint: Checkpoint,
        now: datetime,
        ttl: timedelta,
    ) -> SourceState:
        """Remember a durable page's progress and its set-aside records (compare-and-set)."""
        check_source_key(source_key)
        return self._update(
            source_key,
            lambda s: transitions.save_checkpoint(s, lease, generation, checkpoint, now, ttl),
            checkpoint.rejected,
            now,
        )

    def complete_cycle(
        self,
        source_key: str,
        lease: Lease,
        generation: int,
        checkpoint: Checkpoint,
        now: datetime,
        rejected_in_cycle: int,
        entry: CycleEntry,
    ) -> SourceState:
        """Record a completed cycle (see :func:`incsync.state.complete`) and keep its entry."""
        _check_entry(source_key, entry)
        return self._update(
            source_key,
            lambda s: transitions.complete(
                s, lease, generation, checkpoint, now, rejected_in_cycle
            ),
            checkpoint.rejected,
            now,
            entry=entry,
        )

    def fail_cycle(
        self,
        source_key: str,
        lease: Lease,
        generation: int,
        error: ErrorInfo,
        stop_after: int,
        retry_at: datetime | None,
        entry: CycleEntry,
    ) -> SourceState:
        """Record a failed cycle (see :func:`incsync.state.fail`) and keep its entry."""
        _check_entry(source_key, entry)
        return self._update(
            source_key,
            lambda s: transitions.fail(s, lease, generation, error, stop_after, retry_at),
            entry=entry,
        )

    def interrupt_cycle(self, source_key: str, lease: Lease, entry: CycleEntry) -> SourceState:
        """Record a cycle that ended early (see :func:`incsync.state.interrupt`) and its entry.

        Raises:
            LeaseLostError: The caller no longer holds the lease (nothing is written).
        """
        _check_entry(source_key, entry)
        return self._update(source_key, lambda s: transitions.interrupt(s, lease), entry=entry)

    def _change(self, source_key: str, action: Action, record: ActionEntry | None) -> SourceState:
        """Make ``action`` on the source, keeping ``record`` with it when there is one."""
        check_source_key(source_key)
        change, forget_rejected = _CHANGES[action]
        return self._update(source_key, change, forget_rejected=forget_rejected, action=record)

    def act(self, entry: ActionEntry) -> SourceState:
        """Make a person's change to a source and keep its record, in one transaction."""
        return self._change(entry.source_key, entry.action, entry)

    def reset(self, source_key: str) -> SourceState:
        """Force a full re-sync (see :func:`incsync.state.reset`).

        The set-aside records are forgotten too: the full read sets aside again those still bad.
        """
        return self._change(source_key, Action.RESET, None)

    def rewind(self, source_key: str, since: datetime) -> SourceState:
        """Make the next cycle read again from ``since`` (see :func:`incsync.state.rewind`).

        Nothing else is written: the transactions and the set-aside records stay as they are.
        """
        check_source_key(source_key)
        return self._update(source_key, lambda s: transitions.rewind(s, since))

    def cancel(self, source_key: str) -> SourceState:
        """Stop syncing the source (see :func:`incsync.state.cancel`)."""
        return self._change(source_key, Action.CANCEL, None)

    def resume(self, source_key: str) -> SourceState:
        """Let a cancelled or stopped source run again (see :func:`incsync.state.resume`)."""
        return self._change(source_key, Action.RESUME, None)


# Each action's transition, and whether it forgets the set-aside records: a reset's full read
# sets aside again those still bad.
_CHANGES: dict[Action, tuple[Transition, bool]] = {
    Action.RESET: (transitions.reset, True),
    Action.CANCEL: (transitions.cancel, False),
    Action.RESUME: (transitions.resume, False),
}


class MappedRowsBase(abc.ABC):
    """Implements :class:`~incsync.protocols.MappedStore`'s checks over two store primitives.

    The built-in stores derive from it beside :class:`StateStoreBase`; a host's own state store
    need not (it keeps no mapped rows).
    """

    _mapping_for: MappingLookup

    def mapping_for(self, source_key: str) -> TransactionMapping | None:
        """Return the mapping the store keeps the source's mapped transactions by, if any.

        Set with the store's ``mappings`` argument (see :mod:`incsync.mapped`).
        """
        return self._mapping_for(check_source_key(source_key))

    def read_mapped(
        self,
        source_key: str,
        *,
        since: date | None = None,
        until: date | None = None,
        after: MappedPosition | None = None,
        limit: int = DEFAULT_MAPPED_PAGE,
        include_voided: bool = True,
    ) -> Sequence[MappedRow]:
        """Return a page of the source's mapped transactions: one range of the date index.

        See :meth:`MappedStore.read_mapped <incsync.protocols.MappedStore.read_mapped>`.
        """
        check_source_key(source_key)
        since, until = checked_range(since, until)
        positive_count.check("limit", limit)
        return self._read_mapped(source_key, since, until, after, limit, include_voided)

    @abc.abstractmethod
    def _read_mapped(
        self,
        source_key: str,
        since: date | None,
        until: date | None,
        after: MappedPosition | None,
        limit: int,
        include_voided: bool,
    ) -> Sequence[MappedRow]:
        """Return the page :meth:`read_mapped` describes, its arguments checked."""

    def remap_page(self, source_key: str, limit: int = DEFAULT_MAPPED_PAGE) -> RemapPage:
        """Re-map the next page of the source's stored records and checkpoint it atomically.

        See :meth:`MappedStore.remap_page <incsync.protocols.MappedStore.remap_page>`.

        Raises:
            ConfigurationError: The source has no mapping, or ``limit`` is not at least 1.
        """
        mapping = self.mapping_for(source_key)
        if mapping is None:
            raise ConfigurationError(
                f"source {source_key!r} has no mapping: give the store mappings={{...}} naming "
                "one for it (for example incsync.mapping.preset(vendor, object))"
            )
        positive_count.check("limit", limit)
        return self._remap_page(source_key, mapping, limit)

    @abc.abstractmethod
    def _remap_page(self, source_key: str, mapping: TransactionMapping, limit: int) -> RemapPage:
        """Do what :meth:`remap_page` describes, in one transaction, with the source's mapping."""
