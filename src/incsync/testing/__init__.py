"""Helpers for testing code that uses incsync: an in-memory store, a fake source, a manual clock.

Hosts use these in their own tests; incsync's tests use the same ones.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from incsync.connectors.memory import InMemoryConnector, InMemorySource
from incsync.stores.memory import InMemoryStore
from incsync.timestamps import ensure_utc

__all__ = ["FakeConnector", "FakeSource", "InMemoryStore", "ManualClock"]

FakeSource = InMemorySource
"""A source held in memory that tests mutate between (or during) cycles."""

FakeConnector = InMemoryConnector
"""Reads a :data:`FakeSource`, with hooks to fail or mutate the source between pages."""


class ManualClock:
    """A clock that only moves when told to; pass it as ``SyncEngine(clock=...)``.

    Args:
        start: The initial time (aware).
    """

    def __init__(self, start: datetime) -> None:
        self._now = ensure_utc(start, "start")
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        """Return the clock's current time."""
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward by ``delta`` and return the new time."""
        with self._lock:
            self._now += delta
            return self._now

    def set(self, moment: datetime) -> None:
        """Move the clock to ``moment`` (forward or back, for skew scenarios)."""
        with self._lock:
            self._now = ensure_utc(moment, "moment")
