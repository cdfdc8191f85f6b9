"""Timing proxies for bench.round: time spent in store calls and in HTTP, summed over threads.

:class:`TimedStore` stands in front of the real store and adds up the wall time of every call,
by method; :class:`TimedTransport` stands in front of a connector's httpx transport and adds up
the time from sending a request to having its whole body. Both sum over all worker threads, so
their totals are thread-seconds, to compare with the thread-seconds the workers spent in cycles.
Each call's CPU time in its own thread is summed too: wall time minus that CPU time is time spent
waiting (for the server, for the GIL after each answer arrives, for a core).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TypeVar

import httpx

from incsync.actions import ActionEntry
from incsync.history import SUMMARY_CYCLES, CycleEntry, HistorySummary
from incsync.reconcile import IdOrder
from incsync.records import ApplyResult, Record, RejectedRecord
from incsync.state import Checkpoint, ErrorInfo, Lease, SourceState
from incsync.stores.postgres import PostgresStore

__all__ = ["Tally", "TimedStore", "TimedTransport"]

T = TypeVar("T")


class Tally:
    """Wall seconds, CPU seconds of the calling thread, and calls, added up from many threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def add(self, name: str, seconds: float, cpu_seconds: float) -> None:
        """Count one call of ``name`` that took ``seconds``, ``cpu_seconds`` of them on a core."""
        with self._lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds
            self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + cpu_seconds
            self.calls[name] = self.calls.get(name, 0) + 1

    @contextmanager
    def timing(self, name: str) -> Iterator[None]:
        """Count the block as one call of ``name``."""
        began, began_cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - began, time.thread_time() - began_cpu)

    def total(self) -> float:
        """Return the wall seconds of every name together."""
        with self._lock:
            return sum(self.seconds.values())

    def total_cpu(self) -> float:
        """Return the calling threads' CPU seconds of every name together."""
        with self._lock:
            return sum(self.cpu_seconds.values())

    def clear(self) -> None:
        """Forget everything counted so far."""
        with self._lock:
            self.seconds.clear()
            self.cpu_seconds.clear()
            self.calls.clear()


class TimedTransport(httpx.BaseTransport):
    """An httpx transport that times each request, body included, into a :class:`Tally`.

    ``latency``, when given, returns the seconds a request waits before it is sent: the vendor's
    round trip, which the loopback fakes do not have. The thread sleeps, as it would on a socket.
    """

    def __init__(
        self,
        inner: httpx.BaseTransport,
        tally: Tally,
        latency: Callable[[], float] | None = None,
    ) -> None:
        self._inner = inner
        self._tally = tally
        self._latency = latency

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the inner transport and read the whole answer, timed."""
        with self._tally.timing("http"):
            if self._latency is not None:
                time.sleep(self._latency())
            response = self._inner.handle_request(request)
            # Read here, so receiving the body counts as HTTP time rather than as the client's.
            response.read()
        return response

    def close(self) -> None:
        """Close the inner transport."""
        self._inner.close()


class TimedStore:
    """A PostgreSQL store whose every call is timed into a :class:`Tally`, by method name."""

    def __init__(self, store: PostgresStore, tally: Tally) -> None:
        self.store = store
        self.tally = tally

    def _timed(self, name: str, call: Callable[[], T]) -> T:
        with self.tally.timing(name):
            return call()

    def load(self, source_key: str) -> SourceState:
        """Timed :meth:`PostgresStore.load`."""
        return self._timed("load", lambda: self.store.load(source_key))

    def list_states(self) -> Sequence[SourceState]:
        """Timed :meth:`PostgresStore.list_states`."""
        return self._timed("list_states", self.store.list_states)

    def acquire_lease(
        self, source_key: str, holder: str, now: datetime, ttl: timedelta
    ) -> Lease | None:
        """Timed :meth:`PostgresStore.acquire_lease`."""
        return self._timed(
            "acquire_lease", lambda: self.store.acquire_lease(source_key, holder, now, ttl)
        )

    def renew_lease(self, source_key: str, lease: Lease, now: datetime, ttl: timedelta) -> Lease:
        """Timed :meth:`PostgresStore.renew_lease`."""
        return self._timed(
            "renew_lease", lambda: self.store.renew_lease(source_key, lease, now, ttl)
        )

    def release_lease(self, source_key: str, lease: Lease) -> None:
        """Timed :meth:`PostgresStore.release_lease`."""
        self._timed("release_lease", lambda: self.store.release_lease(source_key, lease))

    def save_checkpoint(
        self,
        source_key: str,
        lease: Lease,
        generation: int,
        checkpoint: Checkpoint,
        now: datetime,
        ttl: timedelta,
    ) -> SourceState:
        """Timed :meth:`PostgresStore.save_checkpoint`."""
        return self._timed(
            "save_checkpoint",
            lambda: self.store.save_checkpoint(source_key, lease, generation, checkpoint, now, ttl),
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
        """Timed :meth:`PostgresStore.complete_cycle`."""
        return self._timed(
            "complete_cycle",
            lambda: self.store.complete_cycle(
                source_key, lease, generation, checkpoint, now, rejected_in_cycle, entry
            ),
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
        """Timed :meth:`PostgresStore.fail_cycle`."""
        return self._timed(
            "fail_cycle",
            lambda: self.store.fail_cycle(
                source_key, lease, generation, error, stop_after, retry_at, entry
            ),
        )

    def interrupt_cycle(self, source_key: str, lease: Lease, entry: CycleEntry) -> SourceState:
        """Timed :meth:`PostgresStore.interrupt_cycle`."""
        return self._timed(
            "interrupt_cycle", lambda: self.store.interrupt_cycle(source_key, lease, entry)
        )

    def history(self, source_key: str, limit: int | None = None) -> Sequence[CycleEntry]:
        """Timed :meth:`PostgresStore.history`."""
        return self._timed("history", lambda: self.store.history(source_key, limit))

    def history_summaries(
        self, source_keys: Iterable[str], cycles: int = SUMMARY_CYCLES
    ) -> Mapping[str, HistorySummary]:
        """Timed :meth:`PostgresStore.history_summaries`."""
        return self._timed(
            "history_summaries", lambda: self.store.history_summaries(source_keys, cycles)
        )

    def reset(self, source_key: str) -> SourceState:
        """Timed :meth:`PostgresStore.reset`."""
        return self._timed("reset", lambda: self.store.reset(source_key))

    def rewind(self, source_key: str, since: datetime) -> SourceState:
        """Timed :meth:`PostgresStore.rewind`."""
        return self._timed("rewind", lambda: self.store.rewind(source_key, since))

    def cancel(self, source_key: str) -> SourceState:
        """Timed :meth:`PostgresStore.cancel`."""
        return self._timed("cancel", lambda: self.store.cancel(source_key))

    def resume(self, source_key: str) -> SourceState:
        """Timed :meth:`PostgresStore.resume`."""
        return self._timed("resume", lambda: self.store.resume(source_key))

    def act(self, entry: ActionEntry) -> SourceState:
        """Timed :meth:`PostgresStore.act`."""
        return self._timed("act", lambda: self.store.act(entry))

    def actions(self, source_key: str, limit: int | None = None) -> Sequence[ActionEntry]:
        """Timed :meth:`PostgresStore.actions`."""
        return self._timed("actions", lambda: self.store.actions(source_key, limit))

    def list_rejected(self, source_key: str) -> Sequence[RejectedRecord]:
        """Timed :meth:`PostgresStore.list_rejected`."""
        return self._timed("list_rejected", lambda: self.store.list_rejected(source_key))

    def apply(
        self, source_key: str, records: Sequence[Record], generation: int, token: int
    ) -> ApplyResult:
        """Timed :meth:`PostgresStore.apply`."""
        return self._timed(
            "apply", lambda: self.store.apply(source_key, records, generation, token)
        )

    def sweep(self, source_key: str, generation: int, token: int, spared: Collection[str]) -> int:
        """Timed :meth:`PostgresStore.sweep`."""
        return self._timed("sweep", lambda: self.store.sweep(source_key, generation, token, spared))

    def list_live_ids(
        self, source_key: str, after: str | None, limit: int, order: IdOrder = IdOrder.CODE_POINT
    ) -> Sequence[str]:
        """Timed :meth:`PostgresStore.list_live_ids`."""
        return self._timed(
            "list_live_ids", lambda: self.store.list_live_ids(source_key, after, limit, order)
        )

    def tombstone(
        self, source_key: str, ids: Collection[str], generation: int, token: int, reason: str
    ) -> int:
        """Timed :meth:`PostgresStore.tombstone`."""
        return self._timed(
            "tombstone", lambda: self.store.tombstone(source_key, ids, generation, token, reason)
        )

    def count_live(self, source_key: str) -> int:
        """Timed :meth:`PostgresStore.count_live`."""
        return self._timed("count_live", lambda: self.store.count_live(source_key))

    def commit_page(
        self,
        source_key: str,
        records: Sequence[Record],
        lease: Lease,
        generation: int,
        checkpoint: Checkpoint,
        now: datetime,
        ttl: timedelta,
    ) -> tuple[ApplyResult, SourceState]:
        """Timed :meth:`PostgresStore.commit_page`."""
        return self._timed(
            "commit_page",
            lambda: self.store.commit_page(
                source_key, records, lease, generation, checkpoint, now, ttl
            ),
        )
