"""The contracts a host plugs in: where records come from, where state and transactions go.

A host implements (or picks a built-in implementation of) three roles:

* :class:`Connector` reads pages of records from a source;
* :class:`StateStore` keeps each source's :class:`~incsync.state.SourceState` with leases and
  compare-and-set checkpoints;
* :class:`TransactionSink` applies records to the host's transactions, idempotently.

A store that also is the sink and can write a page's rows and its checkpoint in one transaction
implements :class:`AtomicPageStore`; the engine then uses that single transaction. A store that
keeps sources' records mapped to transactions (:mod:`incsync.mapped`) implements
:class:`MappedStore`.

OAuth2 connections whose vendor rotates refresh tokens save every refresh through a
:class:`TokenKeeper`; :class:`~incsync.tokens.StoreTokenKeeper` is one over a
:class:`TokenStore`, which every built-in store is.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Protocol, runtime_checkable

from incsync.actions import ActionEntry
from incsync.cursor import Window
from incsync.history import SUMMARY_CYCLES, CycleEntry, HistorySummary
from incsync.mapping import MappedPosition, MappedRow, RemapPage, TransactionMapping
from incsync.mapping._kept import DEFAULT_MAPPED_PAGE
from incsync.reconcile import IdOrder
from incsync.records import ApplyResult, Page, Record, RejectedRecord
from incsync.results import CycleProgress
from incsync.state import Checkpoint, ErrorInfo, Lease, SourceState
from incsync.tokens import SealedTokens, StoredTokens

__all__ = [
    "AccountHolds",
    "AtomicPageStore",
    "Clock",
    "Connector",
    "MappedStore",
    "PartitionedConnector",
    "ProgressCallback",
    "StateStore",
    "TokenKeeper",
    "TokenStore",
    "TransactionSink",
]

Clock = Callable[[], datetime]
"""Returns the current time as an aware datetime; injectable so tests control time."""

ProgressCallback = Callable[[CycleProgress], None]
"""Called after every durable page of a running cycle."""


@runtime_checkable
class Connector(Protocol):
    """Reads records from one source.

    Subclass :class:`incsync.connectors.BaseConnector` rather than implementing this from scratch.
    """

    @property
    def ordered(self) -> bool:
        """Whether ``updated_at`` never decreases from one page to the next across the whole read.

        Within one timestamp the ids may come in any order: the next window starts at a timestamp,
        never between ids. Ordered sources are checkpointed after every page; the cursor of an
        unordered one moves only when a cycle completes.
        """
        ...

    @property
    def lookback(self) -> timedelta:
        """How far before the cursor to read again, for records that become visible late."""
        ...

    @property
    def delete_retention(self) -> timedelta | None:
        """How long the source keeps a delete readable (``None``: for ever, or no delete channel).

        A source not read completely for longer is re-read whole, and what that read does not see
        becomes a tombstone (see :func:`incsync.policy.deletes_expired`).
        """
        ...

    def read(self, window: Window) -> Iterable[Page]:
        """Yield pages holding every record with ``updated_at`` at or after ``window.start``.

        Raises:
            SourceError: Reading failed; the cycle fails and the cursor stays.
        """
        ...

    def secrets(self) -> Sequence[str]:
        """Return credential values that must never appear in logs, errors or state."""
        ...

    @property
    def lists_ids(self) -> bool:
        """Whether :meth:`list_ids` and :meth:`fetch_ids` work, so drift is reconciled by id.

        ``False`` (:class:`~incsync.connectors.BaseConnector`'s default): a persistent drift
        makes the engine re-read the source whole instead.
        """
        ...

    @property
    def id_order(self) -> IdOrder:
        """The order :meth:`list_ids` lists ids in, which the host's are listed and merged in.

        :attr:`IdOrder.CODE_POINT <incsync.reconcile.IdOrder.CODE_POINT>` (the default of
        :class:`~incsync.connectors.BaseConnector`) or :attr:`IdOrder.NUMERIC
        <incsync.reconcile.IdOrder.NUMERIC>` for ids that are whole numbers listed by value.
        """
        ...

    def list_ids(self) -> Iterable[Sequence[str]]:
        """Yield the ids of the source's live records, in pages, ascending in :attr:`id_order`.

        Each page is one answer of the source, asked for when the one before has been merged, so
        the engine renews its lease and honours a cancel or a stop between pages; how a page
        follows the one before (a keyset, a cursor) is the connector's business. Ids that do not
        ascend, or that :attr:`id_order` does not admit, make the engine re-read the source whole
        instead (see :mod:`incsync.reconcile`). Called only when :attr:`lists_ids` is true.

        Raises:
            SourceError: The source could not be read; the cycle fails.
        """
        ...

    def fetch_ids(self, ids: Sequence[str]) -> Page:
        """Return the records with these ids that the source still holds, through its record rules.

        They are built and checked as :meth:`read` builds its records (malformed ones set
        aside); an id the source no longer holds is simply absent, or a tombstone where the
        source tells of its deletes. Called only when :attr:`lists_ids` is true.

        Raises:
            SourceError: The source could not be read; the cycle fails.
        """
        ...

    def count_live(self) -> int | None:
        """Return how many live (not deleted) records the source holds now, in the read's scope.

        ``None`` when the source cannot tell in one cheap request; the engine then makes no count
        check. :class:`~incsync.connectors.BaseConnector` returns ``None``.

        Raises:
            SourceError: The source could not be asked; the engine logs it and skips the count.
        """
        ...

    def clock_skew(self) -> timedelta | None:
        """Return how far the source's clock runs ahead of the host's (negative: behind).

        Measured from the source's latest answers (see :mod:`incsync.clocks`); ``None`` when not
        known, as for a source that is no HTTP API. The engine keeps the cursor's horizon on the
        source's clock with it, and keeps it in the cycle's history entry.
        :class:`~incsync.connectors.BaseConnector` returns ``None``;
        :class:`~incsync.connectors.http.HttpConnector` measures it.
        """
        ...


class AccountHolds(Protocol):
    """How long each vendor account is held back, shared by the connectors of many workers.

    When a vendor asks one request to wait, the connector that got the answer holds its account
    here, and every connector of that account sharing the holds waits as long before its next
    request, instead of being refused in turn
    (:meth:`HttpConnector.share_throttle <incsync.connectors.http.HttpConnector.share_throttle>`).
    Waits, not moments, cross the boundary: workers whose clocks disagree still wait alike.
    :class:`incsync.integrations.celery.CeleryDeployment` shares one in Redis.
    """

    def hold(self, account: str, wait: timedelta) -> None:
        """Hold ``account`` back for ``wait`` from now, unless it is held longer already."""
        ...

    def remaining(self, account: str) -> timedelta:
        """Return how much longer ``account`` is held back; zero when it is not."""
        ...


@runtime_checkable
class PartitionedConnector(Protocol):
    """A :class:`Connector` that can read a full read as time partitions at once.

    :class:`~incsync.connectors.BaseConnector` has every member (1 partition, no documented
    limit, no time span); a connector without them reads a full read as one window (see
    :mod:`incsync.partitions`).
    """

    @property
    def partitions(self) -> int:
        """How many time partitions of a full read the source lets one account read at once."""
        ...

    @property
    def concurrent_requests(self) -> int | None:
        """The requests the vendor lets one account have in flight at once; ``None``: no limit.

        The cycles of one account allowed to run at once share it: each reads fewer partitions
        at once when they would together exceed it (:func:`incsync.partitions.readers_per_cycle`).
        """
        ...

    def time_span(self) -> tuple[datetime, datetime] | None:
        """Return the oldest and newest ``updated_at`` at the source; ``None``: not known.

        Raises:
            SourceError: The source could not be asked.
        """
        ...


@runtime_checkable
class TransactionSink(Protocol):
    """Applies records to the host's transactions.

    Implementations must be idempotent, keyed by (source key, record id), and follow
    :func:`incsync.records.supersedes`: a newer ``updated_at`` is written, an older one never
    replaces a newer one, and at an equal ``updated_at`` the record is written only if its content
    differs or it was stored under an older generation (so a reset re-applies every record exactly
    once). Deleted records are stored as tombstones, never removed.

    A sink is fenced: it keeps, per source, the highest lease token that has written, and refuses a
    page from a lower one (:func:`incsync.state.admit_writer` decides), in the same transaction as
    the page's rows. Without the fence, a worker that stalled past its lease could overwrite what
    the worker that took over wrote, after that worker's cursor moved past it.
    """

    def apply(
        self, source_key: str, records: Sequence[Record], generation: int, token: int
    ) -> ApplyResult:
        """Write ``records`` for the lease ``token``; say how many were written and which not.

        Records that were neither written nor rejected were already applied.

        Raises:
            StaleWriteError: A newer lease has written for the source; nothing was written.
            StoreError: The write failed; nothing of the page may be assumed durable.
        """
        ...

    def sweep(self, source_key: str, generation: int, token: int, spared: Collection[str]) -> int:
        """Tombstone what a completed full re-read under ``generation`` did not see.

        Every live transaction of the source still under an older generation, but those whose id
        is in ``spared`` (set aside by the read), becomes a tombstone under ``generation`` with
        :data:`incsync.records.SWEPT` as its reason (:func:`incsync.records.is_swept` and
        :func:`incsync.records.swept` decide). Nothing is removed. In SQL: one ``UPDATE`` by
        generation, in one transaction with the same fence as :meth:`apply`.

        Returns:
            How many transactions became tombstones.

        Raises:
            StaleWriteError: A newer lease has written for the source; nothing was changed.
            StoreError: The write failed.
        """
        ...

    def list_live_ids(
        self,
        source_key: str,
        after: str | None,
        limit: int,
        order: IdOrder = IdOrder.CODE_POINT,
    ) -> Sequence[str]:
        """Return up to ``limit`` ids of the source's live transactions after ``after``.

        Ids ascend by ``order``'s key (:meth:`IdOrder.sort_key
        <incsync.reconcile.IdOrder.sort_key>`), the order the connector lists the source's in;
        ``after=None`` starts at the first, ``after`` is compared by the same key. The id reconcile
        pages through them by the last id of each page, so no list of every id is ever held. In
        SQL: keyset queries along an index, ``WHERE source_key = ? AND NOT deleted AND record_id
        > ? ORDER BY record_id LIMIT ?`` in code point order, and ``... AND (length(record_id),
        record_id) > (?, ?) ORDER BY length(record_id), record_id LIMIT ?`` in numeric order,
        along an index of ``(source_key, length(record_id), record_id)``.

        Raises:
            StoreError: The query failed.
        """
        ...

    def tombstone(
        self, source_key: str, ids: Collection[str], generation: int, token: int, reason: str
    ) -> int:
        """Make the live transactions with these ids tombstones under ``generation``, saying why.

        As :meth:`sweep` does (see :func:`incsync.records.swept`): nothing is removed, the time
        and payload stay, and the write is fenced by the lease ``token`` in the same transaction.
        Ids the sink does not hold, or holds as tombstones already, are left as they are.

        Returns:
            How many transactions became tombstones.

        Raises:
            StaleWriteError: A newer lease has written for the source; nothing was changed.
            StoreError: The write failed.
        """
        ...

    def count_live(self, source_key: str) -> int:
        """Return how many live (not deleted) transactions the sink holds for the source.

        The engine compares it with the source's own count (see
        :class:`~incsync.state.CountCheck`). In SQL: one ``SELECT count(*) ... WHERE source_key
        = ? AND NOT deleted``.

        Raises:
            StoreError: The count failed; the engine logs it and skips the count.
        """
        ...


@runtime_checkable
class StateStore(Protocol):
    """Keeps every source's state; every write is a compare-and-set against the stored state.

    Times are passed in by the caller (the engine's clock), so that leases expire by the same clock
    in every worker that shares the store.
    """

    def load(self, source_key: str) -> SourceState:
        """Return the source's state (a new one if the store has never seen it)."""
        ...

    def list_states(self) -> Sequence[SourceState]:
        """Return the state of every source the store knows, ordered by key."""
        ...

    def acquire_lease(
        self, source_key: str, holder: str, now: datetime, ttl: timedelta
    ) -> Lease | None:
        """Take the source's lease for a new cycle, or return ``None`` if it may not run now.

        See :func:`incsync.state.acquire`.
        """
        ...

    def renew_lease(self, source_key: str, lease: Lease, now: datetime, ttl: timedelta) -> Lease:
        """Extend the caller's lease.

        Raises:
            LeaseLostError: The caller no longer holds it.
        """
        ...

    def release_lease(self, source_key: str, lease: Lease) -> None:
        """Give the lease up; a no-op when the caller no longer holds it."""
        ...

    def save_checkpoint(
        self,
        source_key: str,
        lease: Lease,
        generation: int,
        checkpoint: Checkpoint,
        now: datetime,
        ttl: timedelta,
    ) -> SourceState:
        """Remember a durable page's progress and its set-aside records.

        Returns:
            The stored state after the write (its phase tells a cycle it was cancelled).

        Raises:
            LeaseLostError: The caller no longer holds the lease.
            GenerationChangedError: The source was reset or rewound since ``generation``.
        """
        ...

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
        """Record a completed cycle (see :func:`incsync.state.complete`) and keep its ``entry``.

        The entry is kept in the same transaction as the state, and only if the state is
        written; the source's older entries are pruned by the store's retention there too (see
        :mod:`incsync.history`).
        """
        ...

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
        """Record a failed cycle (see :func:`incsync.state.fail`) and keep its ``entry``.

        The entry is kept as :meth:`complete_cycle` keeps one.
        """
        ...

    def interrupt_cycle(self, source_key: str, lease: Lease, entry: CycleEntry) -> SourceState:
        """Record a cycle that ended early (see :func:`incsync.state.interrupt`) and its ``entry``.

        The entry is kept as :meth:`complete_cycle` keeps one.

        Raises:
            LeaseLostError: The caller no longer holds the lease (nothing is written).
        """
        ...

    def history(self, source_key: str, limit: int | None = None) -> Sequence[CycleEntry]:
        """Return the source's kept cycle entries, newest first, at most ``limit`` of them."""
        ...

    def history_summaries(
        self, source_keys: Iterable[str], cycles: int = SUMMARY_CYCLES
    ) -> Mapping[str, HistorySummary]:
        """Return ``summarize(history(key, cycles))`` for each key, read at once.

        Every key has a summary (an empty one for a source without entries). The built-in SQL
        stores answer with one query for all the keys (the status of many sources).
        """
        ...

    def reset(self, source_key: str) -> SourceState:
        """Force a full re-sync (see :func:`incsync.state.reset`)."""
        ...

    def rewind(self, source_key: str, since: datetime) -> SourceState:
        """Make the next cycle read again from ``since`` (see :func:`incsync.state.rewind`)."""
        ...

    def cancel(self, source_key: str) -> SourceState:
        """Stop syncing the source (see :func:`incsync.state.cancel`)."""
        ...

    def resume(self, source_key: str) -> SourceState:
        """Let a cancelled or stopped source run again (see :func:`incsync.state.resume`)."""
        ...

    def act(self, entry: ActionEntry) -> SourceState:
        """Make a person's change to a source and keep its record, in one transaction.

        ``entry.action`` is made as :meth:`reset`, :meth:`cancel` or :meth:`resume` makes it, and
        ``entry`` is kept for :meth:`actions` (see :mod:`incsync.actions`); neither happens
        without the other.
        """
        ...

    def actions(self, source_key: str, limit: int | None = None) -> Sequence[ActionEntry]:
        """Return the actions kept for the source, newest first, at most ``limit`` of them."""
        ...

    def list_rejected(self, source_key: str) -> Sequence[RejectedRecord]:
        """Return the records set aside for the source, oldest first."""
        ...


@runtime_checkable
class AtomicPageStore(StateStore, TransactionSink, Protocol):
    """A store that is also the sink and commits a page with its checkpoint in one transaction."""

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
        """Apply ``records`` and save ``checkpoint`` atomically: both happen or neither does.

        Records the sink rejects are kept with the checkpoint's own rejected records.

        Returns:
            What the sink did with the page, and the stored state after the checkpoint.

        Raises:
            LeaseLostError: The caller no longer holds the lease (nothing is written).
            GenerationChangedError: The source was reset or rewound (nothing is written).
        """
        ...


@runtime_checkable
class MappedStore(Protocol):
    """A store that keeps the records of mapped sources as typed transactions too.

    Given a source's :class:`~incsync.mapping.TransactionMapping` (every built-in store's
    ``mappings`` argument), it writes each applied record's mapped row in the same transaction
    as its raw row, makes the row void (never deletes it) when the record is deleted, voided,
    swept or tombstoned by a reconcile, and sets aside, with the mapping's reason, a record the
    mapping cannot read.
    """

    def mapping_for(self, source_key: str) -> TransactionMapping | None:
        """Return the source's mapping, or ``None`` when its records are not mapped."""
        ...

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
        """Return up to ``limit`` of the source's mapped rows, by business date, then record id.

        Keyset paging: the next page is asked ``after`` the last row's
        :attr:`~incsync.mapping.MappedRow.position`; rows written meanwhile never shift a page.
        In SQL: one range of the ``(source_key, business_date, record_id)`` index.

        Args:
            source_key: The source.
            since: The first business date included (``None``: from the first).
            until: The first business date no longer included (``None``: to the last).
            after: Where the previous page ended.
            limit: At most this many rows.
            include_voided: Whether void rows come too (they do by default: a host keeping
                commissions in step must see what was voided).

        Raises:
            ConfigurationError: A bound is not a date, ``until`` is before ``since``, or
                ``limit`` is not at least 1.
            StoreError: The query failed.
        """
        ...

    def remap_page(self, source_key: str, limit: int = DEFAULT_MAPPED_PAGE) -> RemapPage:
        """Re-map the next ``limit`` stored records of the source with its current mapping.

        Reads the raw rows after the source's re-map checkpoint whose mapped row is not at the
        mapping's version, computes their rows from the stored payloads (the source is never
        asked), writes them, and moves the checkpoint past them: all in one transaction, so a
        crash loses at most the page in flight and the next call resumes after the last one
        committed. A checkpoint of another mapping version is started over; once a re-map has
        finished, further calls do nothing until the mapping changes. A change races no cycle:
        it is written only while the raw row holds the version it was computed from.

        Raises:
            ConfigurationError: The source has no mapping, or ``limit`` is not at least 1.
            StoreError: The re-map failed; nothing of the page was written.
        """
        ...


@runtime_checkable
class TokenStore(Protocol):
    """Keeps OAuth2 tokens, one row per source, in a table of their own.

    The only place of a state store that holds secrets. Each call is its own transaction, never
    mixed with a page's.
    """

    def load_tokens(self, source_key: str) -> SealedTokens | None:
        """Return the source's row, or ``None`` when none was saved.

        Raises:
            StoreError: The store could not be read.
        """
        ...

    def save_tokens(self, source_key: str, sealed: SealedTokens) -> None:
        """Replace the source's row, in one transaction.

        Raises:
            StoreError: The write failed; the row is as it was.
        """
        ...

    def check_tokens_writable(self, source_key: str) -> None:
        """Return when :meth:`save_tokens` can write the source's row now; change nothing.

        Raises:
            StoreError: A save would fail (a read-only database, no right to write the table,
                the store unreachable).
        """
        ...


@runtime_checkable
class TokenKeeper(Protocol):
    """Where one OAuth2 connection's tokens live between processes.

    :class:`~incsync.connectors.auth.OAuth2Refresh` reads it before every refresh (another
    worker may have refreshed since), checks it before asking the vendor (so a refresh whose
    answer could not be kept is never sent), and saves the answer to it before the new access
    token is used. Every error is a :class:`~incsync.errors.SourceError` whose message says what to
    fix: the cycle fails with it, and the refresh token kept stays valid.
    """

    def load(self) -> StoredTokens | None:
        """Return the tokens kept, or ``None`` when none are.

        Raises:
            SourceError: They cannot be read.
        """
        ...

    def check(self) -> None:
        """Return when :meth:`save` can succeed now.

        Raises:
            SourceError: A save would fail; the message names the place and what to do.
        """
        ...

    def save(self, tokens: StoredTokens) -> None:
        """Keep ``tokens`` durably (written, and synced where the medium allows) before returning.

        Raises:
            SourceError: They could not be kept.
        """
        ...
