"""Rows of the PostgreSQL store: states, transactions and text, to and from what PostgreSQL holds.

Pure functions, kept apart from the store's I/O so they can be read and tested alone, and so the
benchmark's bare loop encodes payloads exactly as the store does. No driver is needed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from incsync.content import escaped_text, json_form, text_problem
from incsync.cursor import Cursor
from incsync.errors import BadRecordError
from incsync.history import CycleEntry
from incsync.marks import marks_from_text, marks_text
from incsync.records import Record, RejectedRecord
from incsync.results import Outcome
from incsync.state import CountCheck, ErrorInfo, Lease, Phase, SourceState
from incsync.stores._base import set_aside

__all__ = [
    "cycle_from_row",
    "cycle_row",
    "escaped",
    "state_from_row",
    "state_params",
    "transaction_rows",
]


def escaped(text: str) -> str:
    """Return ``text`` with what PostgreSQL cannot hold (NUL, lone surrogates) escaped."""
    return escaped_text(text, nul_allowed=False)


# -- states and transactions -----------------------------------------------------------------


def state_params(state: SourceState) -> dict[str, object]:
    """Return the named parameters that write ``state`` into its row (see ``STATE_COLUMNS``)."""
    error, lease, cursor, count = state.last_error, state.lease, state.cursor, state.count_check
    return {
        "source_key": state.key,
        "phase": state.phase.value,
        "generation": state.generation,
        "cursor_updated_at": None if cursor is None else cursor.updated_at,
        "cursor_record_id": None if cursor is None else escaped(cursor.record_id),
        "last_change": state.last_change,
        "last_sync": state.last_sync,
        "last_attempt": state.last_attempt,
        "consecutive_failures": state.consecutive_failures,
        "error_class": None if error is None else escaped(error.error_class),
        "error_message": None if error is None else escaped(error.message),
        "error_at": None if error is None else error.at,
        "error_retryable": None if error is None else error.retryable,
        "error_auth": None if error is None else error.auth,
        "lease_holder": None if lease is None else escaped(lease.holder),
        "lease_expires_at": None if lease is None else lease.expires_at,
        "lease_token": None if lease is None else lease.token,
        "not_before": state.not_before,
        "last_cycle_rejected": state.last_cycle_rejected,
        "reset_pending": state.reset_pending,
        "marks": marks_text(state.marks),
        "count_source": None if count is None else count.source,
        "count_host": None if count is None else count.host,
        "count_at": None if count is None else count.at,
        "count_previous_drift": None if count is None else count.previous_drift,
        "count_full_read_drift": None if count is None else count.full_read_drift,
    }


def state_from_row(row: Sequence[Any]) -> SourceState:
    """Return the state a row of ``STATE_COLUMNS`` holds."""
    (
        key,
        phase,
        generation,
        cursor_updated_at,
        cursor_record_id,
        last_change,
        last_sync,
        last_attempt,
        consecutive_failures,
        error_class,
        error_message,
        error_at,
        error_retryable,
        error_auth,
        lease_holder,
        lease_expires_at,
        lease_token,
        not_before,
        last_cycle_rejected,
        reset_pending,
        marks,
        count_source,
        count_host,
        count_at,
        count_previous_drift,
        count_full_read_drift,
    ) = row
    return SourceState(
        key=key,
        phase=Phase(phase),
        generation=generation,
        cursor=None if cursor_updated_at is None else Cursor(cursor_updated_at, cursor_record_id),
        last_change=last_change,
        last_sync=last_sync,
        last_attempt=last_attempt,
        consecutive_failures=consecutive_failures,
        last_error=None
        if error_class is None
        else ErrorInfo(error_class, error_message, error_at, error_retryable, error_auth),
        lease=None
        if lease_token is None
        else Lease(holder=lease_holder or "", expires_at=lease_expires_at, token=lease_token),
        not_before=not_before,
        last_cycle_rejected=last_cycle_rejected,
        reset_pending=reset_pending,
        marks=marks_from_text(marks),
        count_check=None
        if count_at is None
        else CountCheck(
            count_source, count_host, count_at, count_previous_drift, count_full_read_drift
        ),
    )


def cycle_row(entry: CycleEntry) -> tuple[object, ...]:
    """Return the row that keeps ``entry`` (see ``CYCLE_COLUMNS``)."""
    return (
        entry.source_key,
        entry.generation,
        escaped(entry.worker),
        entry.started,
        entry.ended,
        entry.outcome.value,
        entry.pages,
        entry.fetched,
        entry.applied,
        entry.already_applied,
        entry.rejected,
        entry.swept,
        None if entry.error_class is None else escaped(entry.error_class),
        None if entry.error is None else escaped(entry.error),
        entry.retry_at,
        entry.clock_skew,
        entry.cycle_id,
        entry.reconcile_fetched,
        entry.reconcile_tombstoned,
    )


def cycle_from_row(row: Sequence[Any]) -> CycleEntry:
    """Return the entry a row of ``CYCLE_COLUMNS`` holds."""
    (
        key,
        generation,
        worker,
        started,
        ended,
        outcome,
        pages,
        fetched,
        applied,
        already_applied,
        rejected,
        swept,
        error_class,
        error,
        retry_at,
        clock_skew,
        cycle_id,
        reconcile_fetched,
        reconcile_tombstoned,
    ) = row
    return CycleEntry(
        source_key=key,
        generation=generation,
        worker=worker,
        started=started,
        ended=ended,
        outcome=Outcome(outcome),
        pages=pages,
        fetched=fetched,
        applied=applied,
        already_applied=already_applied,
        rejected=rejected,
        swept=swept,
        error_class=error_class,
        error=error,
        retry_at=retry_at,
        clock_skew=clock_skew,
        cycle_id=cycle_id,
        reconcile_fetched=reconcile_fetched,
        reconcile_tombstoned=reconcile_tombstoned,
    )


def transaction_rows(
    source_key: str, records: Sequence[Record], generation: int
) -> tuple[list[tuple[object, ...]], list[RejectedRecord]]:
    """Return the upsert rows of ``records``, sorted by id, and the records that cannot be rows.

    Sorting makes every writer lock a source's rows in the same order, so two workers writing
    overlapping pages wait for each other instead of deadlocking. The sort is stable: two
    versions of one record in a page are still written in the page's order.
    """
    rows: list[tuple[object, ...]] = []
    rejected: list[RejectedRecord] = []
    for record in records:
        # Text no store keeps never reaches a record's id; PostgreSQL refuses NUL characters too.
        reason = text_problem(record.id, nul_allowed=False)
        if reason is not None:
            reason = f"id holds {reason}"
        else:
            try:
                payload, digest = json_form(record.payload, nul_allowed=False)
            except BadRecordError as error:
                reason = error.reason
        if reason is not None:
            rejected.append(set_aside(record, reason, escaped(record.id)))
            continue
        rows.append(
            (source_key, record.id, record.updated_at, record.deleted, payload, digest, generation)
        )
    rows.sort(key=itemgetter(1))
    return rows, rejected
