"""A thread-safe in-memory state store and transaction sink, for tests and short-lived hosts."""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta

import attrs

from incsync.actions import ActionEntry
from incsync.content import content_digest
from incsync.errors import BadRecordError
from incsync.history import (
    DEFAULT_HISTORY_RETENTION,
    CycleEntry,
    HistoryRetention,
    retained,
)
from incsync.mapping._kept import (
    MappedChange,
    MappedPosition,
    MappedRow,
    MappingLookup,
    RemapPage,
    mapping_lookup,
    remap_change,
    split_page,
)
from incsync.mapping._spec import TransactionMapping
from incsync.reconcile import IdOrder
from incsync.records import (
    SWEPT,
    ApplyResult,
    Record,
    RejectedRecord,
    Transaction,
    is_swept,
    supersedes,
    swept,
)
from incsync.state import (
    Checkpoint,
    Lease,
    SourceState,
    admit_writer,
    check_source_key,
    new_state,
)
from incsync.state import save_checkpoint as checkpoint_transition
from incsync.stores._base import MappedRowsBase, StateStoreBase, Transition, set_aside
from incsync.tokens import SealedTokens

__all__ = ["InMemoryStore"]


class InMemoryStore(StateStoreBase, MappedRowsBase):
    """Keeps states and transactions in dictionaries, behind one lock.

    It is a :class:`~incsync.protocols.StateStore`, a :class:`~incsync.protocols.TransactionSink`
    and a :class:`~incsync.protocols.TokenStore`, and commits a page with its checkpoint
    atomically, exactly like the SQLite store, so tests written against it hold for the real one.

    Args:
        history_retention: How many cycle entries to keep per source, and for how long.
        mappings: Each source's :class:`~incsync.mapping.TransactionMapping`, by source key (or
            a function of the key): the records of those sources are kept mapped as well, in
            the same step as their raw rows (see :mod:`incsync.mapped`).
    """

    def __init__(
        self,
        *,
        history_retention: HistoryRetention = DEFAULT_HISTORY_RETENTION,
        mappings: Mapping[str, TransactionMapping] | MappingLookup | None = None,
    ) -> None:
        self._mapping_for = mapping_lookup(mappings)
        self.history_retention = history_retention
        self._lock = threading.RLock()
        self._states: dict[str, SourceState] = {}
        self._cycles: dict[str, list[CycleEntry]] = {}  # each source's entries, newest first
        self._action_log: dict[str, list[ActionEntry]] = {}  # each source's actions, newest first
        self._transactions: dict[str, dict[str, Transaction]] = {}
        self._rejected: dict[str, dict[str, RejectedRecord]] = {}
        self._fences: dict[str, int] = {}  # the highest lease token that wrote each source
        self._tokens: dict[str, SealedTokens] = {}
        self._mapped: dict[str, dict[str, MappedRow]] = {}
        # Each source's re-map checkpoint: (mapping name, version, last record id, finished).
        self._remaps: dict[str, tuple[str, str, str, bool]] = {}

    # -- state store -------------------------------------------------------------------------

    def load(self, source_key: str) -> SourceState:
        """Return the source's state (a new one if the store has never seen it)."""
        with self._lock:
            return self._states.get(source_key) or new_state(source_key)

    def list_states(self) -> Sequence[SourceState]:
        """Return the state of every source the store knows, ordered by key."""
        with self._lock:
            return [self._states[key] for key in sorted(self._states)]

    def list_rejected(self, source_key: str) -> Sequence[RejectedRecord]:
        """Return the records set aside for the source, oldest first."""
        check_source_key(source_key)
        with self._lock:
            return list(self._rejected.get(source_key, {}).values())

    def _history(self, source_key: str, limit: int | None) -> Sequence[CycleEntry]:
        with self._lock:
            return self._cycles.get(source_key, [])[:limit]

    def _actions(self, source_key: str, limit: int | None) -> Sequence[ActionEntry]:
        with self._lock:
            return self._action_log.get(source_key, [])[:limit]

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
        with self._lock:
            updated = change(self.load(source_key))
            self._states[source_key] = updated
            if forget_rejected:
                self._rejected.pop(source_key, None)
            self._keep_rejected(source_key, rejected, now)
            if entry is not None:
                self._keep_entry(entry)
            if action is not None:
                self._keep_action(action)
            return updated

    def _keep_action(self, action: ActionEntry) -> None:
        kept = self._action_log.get(action.source_key, [])
        # Newest first, as the SQL stores order by time, then by row.
        at = next((place for place, done in enumerate(kept) if done.at <= action.at), len(kept))
        self._action_log[action.source_key] = [*kept[:at], action, *kept[at:]]

    def _keep_entry(self, entry: CycleEntry) -> None:
        if not self.history_retention.keeps_entries:
            return
        entries = self._cycles.get(entry.source_key, [])
        # Newest first: after the entries that started later, before those that started with it
        # or earlier (written before it, so older), as the SQL stores order by start, then row.
        at = next(
            (place for place, kept in enumerate(entries) if kept.started <= entry.started),
            len(entries),
        )
        entries = [*entries[:at], entry, *entries[at:]]
        self._cycles[entry.source_key] = retained(entries, self.history_retention, entry.started)

    def _keep_rejected(
        self, source_key: str, rejected: Sequence[RejectedRecord], now: datetime | None
    ) -> None:
        if not rejected:
            return
        kept = self._rejected.setdefault(source_key, {})
        for item in rejected:
            fingerprint = item.fingerprint
            kept.pop(fingerprint, None)  # re-insert so the dict stays ordered by last sighting
            kept[fingerprint] = attrs.evolve(item, seen_at=now)

    # -- transaction sink --------------------------------------------------------------------

    def apply(
        self, source_key: str, records: Sequence[Record], generation: int, token: int
    ) -> ApplyResult:
        """Write the records that supersede what is stored; set aside those without a JSON form.

        The page is written whole or not at all, as in one SQL transaction.

        Raises:
            StaleWriteError: A newer lease has written for the source (nothing is written).
        """
        check_source_key(source_key)
        with self._lock:
            fence = admit_writer(source_key, self._fences.get(source_key), token)
            staged, mapped, result = self._staged(source_key, records, generation)
            self._transactions.setdefault(source_key, {}).update(staged)
            self._mapped.setdefault(source_key, {}).update(mapped)
            self._fences[source_key] = fence
            return result

    def sweep(self, source_key: str, generation: int, token: int, spared: Collection[str]) -> int:
        """Tombstone the live transactions a full re-read under ``generation`` did not see.

        Raises:
            StaleWriteError: A newer lease has written for the source (nothing is changed).
        """
        return self._tombstone_where(
            source_key, token, generation, SWEPT, lambda t: is_swept(t, generation, spared)
        )

    def _tombstone_where(
        self,
        source_key: str,
        token: int,
        generation: int,
        reason: str,
        chosen: Callable[[Transaction], bool],
    ) -> int:
        """Tombstone the source's ``chosen`` transactions, fenced by ``token``, saying why."""
        with self._lock:
            fence = admit_writer(source_key, self._fences.get(source_key), token)
            stored = self._transactions.get(source_key, {})
            gone = {
                record_id: swept(transaction, generation, reason)
                for record_id, transaction in stored.items()
                if chosen(transaction)
            }
            stored.update(gone)
            if self.mapping_for(source_key) is not None:
                kept = self._mapped.get(source_key, {})
                for record_id in gone.keys() & kept.keys():
                    kept[record_id] = attrs.evolve(kept[record_id], voided=True, void_reason=reason)
            self._fences[source_key] = fence
            return len(gone)

    def list_live_ids(
        self,
        source_key: str,
        after: str | None,
        limit: int,
        order: IdOrder = IdOrder.CODE_POINT,
    ) -> Sequence[str]:
        """Return up to ``limit`` live ids of the source after ``after``, ascending in ``order``."""
        check_source_key(source_key)
        key = order.sort_key
        bound = key(after or "")  # "" sorts before every id in each order
        with self._lock:
            stored = self._transactions.get(source_key, {})
            # The smallest ``limit`` by a heap: a page costs no sort of every id.
            return heapq.nsmallest(
                limit,
                (
                    record_id
                    for record_id, transaction in stored.items()
                    if not transaction.record.deleted and key(record_id) > bound
                ),
                key=key,
            )

    def tombstone(
        self, source_key: str, ids: Collection[str], generation: int, token: int, reason: str
    ) -> int:
        """Make the live transactions with these ids tombstones saying ``reason``.

        Raises:
            StaleWriteError: A newer lease has written for the source (nothing is changed).
        """
        wanted = set(ids)
        return self._tombstone_where(
            source_key,
            token,
            generation,
            reason,
            lambda t: t.record.id in wanted and not t.record.deleted,
        )

    def count_live(self, source_key: str) -> int:
        """Return how many of the source's transactions are live (not tombstones)."""
        check_source_key(source_key)
        with self._lock:
            stored = self._transactions.get(source_key, {})
            return sum(not transaction.record.deleted for transaction in stored.values())

    def _staged(
        self, source_key: str, records: Sequence[Record], generation: int
    ) -> tuple[dict[str, Transaction], dict[str, MappedRow], ApplyResult]:
        """Return the transactions and mapped rows the records write, and the result.

        Nothing in the store changes here.

        Whatever raises on the way (an interrupt mid-page) leaves the store as it was.
        """
        stored = self._transactions.get(source_key, {})
        staged: dict[str, Transaction] = {}
        applied = 0
        page = split_page(self.mapping_for(source_key), source_key, records)
        rejected: list[RejectedRecord] = list(page.rejected)
        for record in page.records:
            try:
                # Checked for every record, not only those supersedes compares, as the SQL
                # stores check it before they write.
                content_digest(record.payload)
            except BadRecordError as error:
                rejected.append(set_aside(record, error.reason))
                continue
            previous = staged.get(record.id) or stored.get(record.id)
            if previous is None or supersedes(
                record, generation, previous.record, previous.generation
            ):
                staged[record.id] = Transaction(source_key, record, generation)
                applied += 1
        mapped = self._changed_rows(
            source_key, [(change, generation) for change in page.changes], staged
        )
        return staged, mapped, ApplyResult(applied=applied, rejected=rejected)

    def _changed_rows(
        self,
        source_key: str,
        changes: Sequence[tuple[MappedChange, int]],
        staged: Mapping[str, Transaction],
    ) -> dict[str, MappedRow]:
        """Return the mapped rows the changes write.

        A change is written when the raw row (staged, else stored) holds the version it was
        computed from, under the generation given with it.
        """
        stored = self._transactions.get(source_key, {})
        kept = self._mapped.get(source_key, {})
        mapped: dict[str, MappedRow] = {}
        for change, generation in changes:
            record = change.record
            raw = staged.get(record.id) or stored.get(record.id)
            if raw is None or (raw.record.updated_at, raw.record.deleted, raw.generation) != (
                record.updated_at,
                record.deleted,
                generation,
            ):
                continue
            if change.row is not None:
                mapped[record.id] = change.row
            elif (previous := mapped.get(record.id) or kept.get(record.id)) is not None:
                mapped[record.id] = attrs.evolve(previous, voided=True, void_reason=change.void)
        return mapped

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
        """Apply ``records`` and save ``checkpoint`` atomically: both happen or neither does."""
        with self._lock:
            # The checkpoint is checked first, so a refused one writes no rows either.
            updated = checkpoint_transition(
                self.load(source_key), lease, generation, checkpoint, now, ttl
            )
            staged, mapped, result = self._staged(source_key, records, generation)
            # Nothing is changed before here: rows, checkpoint and set-aside records appear at once.
            self._transactions.setdefault(source_key, {}).update(staged)
            self._mapped.setdefault(source_key, {}).update(mapped)
            self._states[source_key] = updated
            self._keep_rejected(source_key, [*checkpoint.rejected, *result.rejected], now)
            return result, updated

    def transactions(self, source_key: str) -> Iterator[Transaction]:
        """Yield the source's transactions in record-id order (a snapshot taken at the call)."""
        with self._lock:
            stored = self._transactions.get(source_key, {})
            snapshot = [stored[record_id] for record_id in sorted(stored)]
        return iter(snapshot)

    def count_transactions(self, source_key: str) -> int:
        """Return how many transactions the source has (tombstones included)."""
        with self._lock:
            return len(self._transactions.get(source_key, {}))

    # -- mapped transactions -----------------------------------------------------------------

    def _read_mapped(
        self,
        source_key: str,
        since: date | None,
        until: date | None,
        after: MappedPosition | None,
        limit: int,
        include_voided: bool,
    ) -> Sequence[MappedRow]:
        with self._lock:
            rows = list(self._mapped.get(source_key, {}).values())
        chosen = sorted(
            (
                row
                for row in rows
                if (since is None or row.transaction.date >= since)
                and (until is None or row.transaction.date < until)
                and (after is None or row.position > after)
                and (include_voided or not row.voided)
            ),
            key=lambda row: row.position,
        )
        return chosen[:limit]

    def _remap_page(self, source_key: str, mapping: TransactionMapping, limit: int) -> RemapPage:
        name, version = mapping.name, mapping.version
        with self._lock:
            after = ""
            kept = self._remaps.get(source_key)
            if kept is not None and kept[:2] == (name, version):
                if kept[3]:
                    return RemapPage(name, version, finished=True)
                after = kept[2]
            mapped = self._mapped.get(source_key, {})
            stored = self._transactions.get(source_key, {})
            due = sorted(
                record_id
                for record_id in stored
                if record_id > after
                and (
                    (row := mapped.get(record_id)) is None
                    or (row.mapping, row.mapping_version) != (name, version)
                )
            )[:limit]
            changes: list[tuple[MappedChange, int]] = []
            unmappable: list[RejectedRecord] = []
            for record_id in due:
                raw = stored[record_id]
                change, refused = remap_change(mapping, source_key, raw.record, raw.deleted_reason)
                changes.append((change, raw.generation))
                if refused is not None:
                    unmappable.append(refused)
            rows = self._changed_rows(source_key, changes, {})
            mapped = self._mapped.setdefault(source_key, {})
            mapped.update(rows)
            written = sum(change.row is not None for change, _ in changes)
            finished = len(due) < limit
            self._remaps[source_key] = (name, version, due[-1] if due else after, finished)
            return RemapPage(
                name,
                version,
                examined=len(due),
                written=written,
                voided=len(rows) - written,
                unmappable=tuple(unmappable),
                finished=finished,
            )

    # -- tokens ------------------------------------------------------------------------------

    def load_tokens(self, source_key: str) -> SealedTokens | None:
        """Return the source's saved tokens, or ``None``."""
        check_source_key(source_key)
        with self._lock:
            return self._tokens.get(source_key)

    def save_tokens(self, source_key: str, sealed: SealedTokens) -> None:
        """Replace the source's saved tokens."""
        check_source_key(source_key)
        with self._lock:
            self._tokens[source_key] = sealed

    def check_tokens_writable(self, source_key: str) -> None:
        """Return: memory can always be written."""
        check_source_key(source_key)
