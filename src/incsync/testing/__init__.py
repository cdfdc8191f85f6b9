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

    :meth:`shifted` makes a second clock a fixed span off this one that moves with it: a fake
    vendor whose clock runs ahead of or behind the host's, as real clocks drift.

    Args:
        start: The initial time (aware).
    """

    def __init__(self, start: datetime) -> None:
        # The time lives in a cell that shifted clocks share, each reading it with its offset.
        self._cell = [ensure_utc(start, "start")]
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        """Return the clock's current time."""
        with self._lock:
            return self._cell[0] + self._offset

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock (and every clock shifted with it) by ``delta``; return its time."""
        with self._lock:
            self._cell[0] += delta
            return self._cell[0] + self._offset

    def set(self, moment: datetime) -> None:
        """Move the clock to ``moment`` (forward or back, for skew scenarios), and its shifted ones.

        Raises:
            NaiveDatetimeError: ``moment`` has no timezone.
        """
        moment = ensure_utc(moment, "moment")
        with self._lock:
            self._cell[0] = moment - self._offset

    def shifted(self, offset: timedelta) -> ManualClock:
        """Return a clock that reads ``offset`` later than this one (negative: earlier), always.

        Moving either moves both. Give it to a fake vendor to put its clock (and its answers'
        ``Date``) ahead of or behind the host's.
        """
        clock = ManualClock.__new__(ManualClock)
        clock._cell = self._cell
        clock._offset = self._offset + offset
        clock._lock = self._lock
        return clock
