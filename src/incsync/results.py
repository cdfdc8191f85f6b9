"""What a cycle reports: its progress while it runs and its result when it ends."""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

import attrs

from incsync.cursor import Cursor
from incsync.state import CountCheck

__all__ = ["CycleProgress", "CycleResult", "Outcome"]


class Outcome(enum.Enum):
    """How a cycle ended."""

    COMPLETED = "completed"
    """Every page was read and applied; last sync moved to the cycle's end."""
    FAILED = "failed"
    """Reading or writing failed; the cursor stays at the last checkpoint."""
    SKIPPED_RUNNING = "skipped_running"
    """Another worker holds the source's lease; nothing was done."""
    SKIPPED_CANCELLED = "skipped_cancelled"
    """The source is cancelled; nothing was done."""
    SKIPPED_STOPPED = "skipped_stopped"
    """The source was stopped after repeated errors; nothing was done."""
    SKIPPED_WAITING = "skipped_waiting"
    """The source asked us to wait (rate limit or quota); nothing was done."""
    INTERRUPTED_RESET = "interrupted_reset"
    """The source was reset (or rewound) while the cycle ran; its later checkpoints were refused."""
    INTERRUPTED_CANCEL = "interrupted_cancel"
    """The source was cancelled while the cycle ran; it stopped after a durable page."""
    INTERRUPTED_STOP = "interrupted_stop"
    """The host asked the cycle to stop (``run_cycle``'s ``stop``); it ended after a durable
    page, the source is not cancelled, and its next cycle carries on from the checkpoint."""

    @property
    def skipped(self) -> bool:
        """Whether the cycle did not start at all."""
        return self.value.startswith("skipped")


@attrs.frozen(slots=True)
class CycleProgress:
    """A running cycle's progress, reported after every durable page.

    Args:
        source_key: The source being synced.
        pages: Pages written so far.
        fetched: Records read so far (well-formed and set aside).
        applied: Records written to the sink so far.
        elapsed: Time since the cycle started.
        total: Records the whole read will return, when the source says so.
    """

    source_key: str
    pages: int
    fetched: int
    applied: int
    elapsed: timedelta
    total: int | None = None

    @property
    def rate(self) -> float:
        """Records read per second so far."""
        seconds = self.elapsed.total_seconds()
        return self.fetched / seconds if seconds > 0 else 0.0

    @property
    def eta(self) -> timedelta | None:
        """Estimated time left, when the total is known and progress has been made."""
        if self.total is None or self.fetched == 0:
            return None
        remaining = max(self.total - self.fetched, 0)
        return timedelta(seconds=remaining / self.rate) if self.rate > 0 else None


@attrs.frozen(slots=True)
class CycleResult:
    """What one cycle did.

    Args:
        source_key: The source.
        outcome: How the cycle ended.
        fetched: Records read from the source (well-formed and set aside).
        applied: Records written to the sink as new or newer versions.
        already_applied: Well-formed records the sink already held at that version (dropped).
        rejected: Records set aside as malformed.
        swept: Transactions the cycle made tombstones because its full re-read did not see them
            (see :data:`incsync.records.SWEPT`).
        reconcile_fetched: Records an id reconcile fetched by id because the host lacked them
            (those it wrote count in ``applied`` too; see :mod:`incsync.reconcile`).
        reconcile_tombstoned: Transactions an id reconcile made tombstones because the source no
            longer holds them (see :data:`incsync.records.RECONCILED`).
        counted: The count of live records the completed cycle made, when one was due and the
            source could count (see :class:`~incsync.state.CountCheck`); ``None`` otherwise.
        pages: Pages read.
        cursor_before: The cursor when the cycle started.
        cursor_after: The cursor when it ended.
        started_at: When it started.
        duration: How long it took.
        error: The failure's redacted message, for failed cycles.
        error_class: The failure's class name, for failed cycles.
        cycle_id: The cycle's id (16 hex digits, random), which its log records and its
            OpenTelemetry span carry too (see :mod:`incsync.telemetry`); ``None`` for a cycle
            that never started (its connector could not be built).
    """

    source_key: str
    outcome: Outcome
    fetched: int = 0
    applied: int = 0
    already_applied: int = 0
    rejected: int = 0
    swept: int = 0
    reconcile_fetched: int = 0
    reconcile_tombstoned: int = 0
    counted: CountCheck | None = None
    pages: int = 0
    cursor_before: Cursor | None = None
    cursor_after: Cursor | None = None
    started_at: datetime | None = None
    duration: timedelta = timedelta(0)
    error: str | None = None
    error_class: str | None = None
    cycle_id: str | None = None
