"""Test doubles' common ground: a store and a sink that hand every call to the one they wrap.

A double (a store that fails on cue, a sink that stalls, a store that logs its leases) subclasses
these and overrides only the calls it changes, so a new protocol method is delegated in one place.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from incsync.actions import ActionEntry
from incsync.history import SUMMARY_CYCLES, CycleEntry, HistorySummary
from incsync.protocols import StateStore, TransactionSink
from incsync.reconcile import IdOrder
from incsync.records import ApplyResult, Record, RejectedRecord
from incsync.state import Checkpoint, Lease, SourceState

__all__ = ["DelegatingSink", "DelegatingStore"]


class DelegatingSink:
    """A transaction sink that passes every call to ``inner``."""

    inner: TransactionSink

    def apply(
        self, source_key: str, records: Sequence[Record], generation: int, token: int
    ) -> ApplyResult:
        return self.inner.apply(source_key, records, generation, token)

    def sweep(self, source_key: str, generation: int, token: int, spared: Collection[str]) -> int:
        return self.inner.sweep(source_key, generation, token, spared)

    def count_live(self, source_key: str) -> int:
        return self.inner.count_live(source_key)

    def list_live_ids(
        self,
        source_key: str,
        after: str | None,
        limit: int,
        order: IdOrder = IdOrder.CODE_POINT,
    ) -> Sequence[str]:
        return self.inner.list_live_ids(source_key, after, limit, order)

    def tombstone(
        self, source_key: str, ids: Collection[str], generation: int, token: int, reason: str
    ) -> int:
        return self.inner.tombstone(source_key, ids, generation, token, reason)


class DelegatingStore:
    """A state store that passes every call to ``inner``."""

    inner: StateStore

    def load(self, source_key: str) -> SourceState:
        return self.inner.load(source_key)

    def list_states(self) -> Sequence[SourceState]:
        return self.inner.list_states()

    def list_rejected(self, source_key: str) -> Sequence[RejectedRecord]:
        return self.inner.list_rejected(source_key)

    def acquire_lease(
        self, source_key: str, holder: str, now: datetime, ttl: timedelta
    ) -> Lease | None:
        return self.inner.acquire_lease(source_key, holder, now, ttl)

    def renew_lease(self, source_key: str, lease: Lease, now: datetime, ttl: timedelta) -> Lease:
        return self.inner.renew_lease(source_key, lease, now, ttl)

    def release_lease(self, source_key: str, lease: Lease) -> None:
        self.inner.release_lease(source_key, lease)

    def save_checkpoint(
        self,
        source_key: str,
        lease: Lease,
        generation: int,
        checkpoint: Checkpoint,
        now: datetime,
        ttl: timedelta,
    ) -> SourceState:
        return self.inner.save_checkpoint(source_key, lease, generation, checkpoint, now, ttl)

    def complete_cycle(self, *args: Any) -> SourceState:
        return self.inner.complete_cycle(*args)

    def fail_cycle(self, *args: Any) -> SourceState:
        return self.inner.fail_cycle(*args)

    def interrupt_cycle(self, source_key: str, lease: Lease, entry: CycleEntry) -> SourceState:
        return self.inner.interrupt_cycle(source_key, lease, entry)

    def history(self, source_key: str, limit: int | None = None) -> Sequence[CycleEntry]:
        return self.inner.history(source_key, limit)

    def history_summaries(
        self, source_keys: Iterable[str], cycles: int = SUMMARY_CYCLES
    ) -> Mapping[str, HistorySummary]:
        return self.inner.history_summaries(source_keys, cycles)

    def reset(self, source_key: str) -> SourceState:
        return self.inner.reset(source_key)

    def rewind(self, source_key: str, since: datetime) -> SourceState:
        return self.inner.rewind(source_key, since)

    def cancel(self, source_key: str) -> SourceState:
        return self.inner.cancel(source_key)

    def resume(self, source_key: str) -> SourceState:
        return self.inner.resume(source_key)

    def act(self, entry: ActionEntry) -> SourceState:
        return self.inner.act(entry)

    def actions(self, source_key: str, limit: int | None = None) -> Sequence[ActionEntry]:
        return self.inner.actions(source_key, limit)
