"""The id reconcile's I/O shell: walk both lists of live ids, fetch the missing, tombstone extras.

:mod:`incsync.reconcile` decides (the order ids compare in, which ids differ); the engine decides
when a reconcile runs (:func:`incsync.policy.drift_to_reconcile`) and how a page is written and
checkpointed. This module only sequences the I/O between them: it asks the connector for its live
ids page by page (``Connector.list_ids``) and the sink for the host's
(``TransactionSink.list_live_ids``, in the connector's order), merges them as they come, and
handles the differences in batches.

Records are fetched by id through the connector's record rules and written like any page, with
the read's cursor unchanged: they are not in cursor order, so they move no cursor. Ids the read set
aside as malformed are not fetched again.

The races with changes made at the source meanwhile follow one rule: **an id is written only as
the source answers for it by id after the listing, and becomes a tombstone only when that answer
does not hold it live.** So a record deleted at the source between listing and fetching is not
brought back (its fetch returns nothing, or its tombstone); a record created meanwhile is either
listed and fetched, or not listed and so not at the host either (the next incremental read brings
it); and a host id missing from the listing is asked for by id before it is tombstoned, so a
record the listing did not show (a lag, one created after its position was passed) is applied,
not tombstoned.

The walk stops where the page loop does, at a durable point: after each page of the source's ids
(where it also renews the lease, by an empty checkpoint, as a long walk may write nothing for a
while) and after each batch it wrote. A cancel or a stop then ends the cycle there; a batch is
written whole or not at all, and a batch not yet handled is found again by the next reconcile,
which runs as the drift the cycle did not clear stays in the state. Any failure raises, and fails
the cycle as a read would: batches already written stay (they are true at the source), and the
cursor has not moved for them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence

import attrs

from incsync.humanize import plural
from incsync.protocols import Connector, TransactionSink
from incsync.reconcile import IdOrder, IdSide, id_differences
from incsync.records import RECONCILED, Page
from incsync.results import Outcome
from incsync.state import SourceState

__all__ = ["IdTally", "IdWalk", "reconcile_by_id"]

# Host ids per page of the sink's list, and ids per fetch by id: a page of ids is small (one id
# is some bytes), and a hundred ids fit every vendor's batch read and query length.
_HOST_PAGE = 1_000
_BATCH = 100

logger = logging.getLogger("incsync")

_NOTHING = Page()
"""The empty page a checkpoint between two pages of ids writes: it renews the lease, no more."""


@attrs.define
class IdTally:
    """What the running reconcile did (mutable on purpose: one per cycle, never shared)."""

    fetched: int = 0
    """Records fetched by id because the host lacked them (set-aside ones included)."""
    tombstoned: int = 0
    """Transactions made tombstones because the source no longer held them."""


@attrs.frozen
class IdWalk:
    """The cycle a reconcile runs in.

    Args:
        key: The source.
        generation: The generation the cycle runs under.
        token: The cycle's lease token, which fences the sink's tombstones.
        spared: Ids the read set aside as malformed: never fetched again.
    """

    key: str
    generation: int
    token: int
    spared: frozenset[str]


class _Stopped(Exception):  # noqa: N818 - control flow inside this module, never raised out
    """Ends the walk at a durable point, unwinding the merge and the listing it was in."""

    def __init__(self, outcome: Outcome, state: SourceState) -> None:
        super().__init__(outcome.value)
        self.outcome = outcome
        self.state = state


def _host_ids(sink: TransactionSink, key: str, order: IdOrder) -> Iterator[str]:
    """Yield the host's live ids, page after page, each asked after the last id of the one before.

    Only an empty page ends the list: a short one proves nothing of a sink written to meanwhile.
    """
    after: str | None = None
    while page := sink.list_live_ids(key, after, _HOST_PAGE, order):
        yield from page
        after = page[-1]


def _source_ids(pages: Iterable[Sequence[str]], between: Callable[[], None]) -> Iterator[str]:
    """Yield the source's ids, calling ``between`` after each page, before the next is asked."""
    for page in pages:
        yield from page
        between()


def reconcile_by_id(
    walk: IdWalk,
    connector: Connector,
    sink: TransactionSink,
    write: Callable[[Page], SourceState],
    stopped: Callable[[SourceState], Outcome | None],
    tally: IdTally,
) -> tuple[Outcome, SourceState] | None:
    """Compare the source's live ids with the host's, fetch what is missing, tombstone extras.

    Args:
        walk: The cycle it runs in.
        connector: Lists the source's ids (in its ``id_order``) and fetches records by id.
        sink: Lists the host's ids and makes transactions tombstones.
        write: Writes a page with the read's cursor, durably, and returns the source's state
            then: the engine's page write, which counts what it applied and set aside.
        stopped: Says how the cycle ends at a durable point with that state (a cancel, a stop),
            ``None`` when it goes on; the engine records the ending.
        tally: Counted into as the walk goes, so a cycle that stops or fails reports what it did.

    Returns:
        ``None`` when the walk completed; how the cycle ended and the state it ended with when a
        cancel or a stop ended it between two pages or batches.

    Raises:
        SourceError: The source could not be read, or its ids could not be merged by id
            (``resync_required``: the engine re-reads it whole instead).
    """
    key = walk.key

    def pause(current: SourceState) -> None:
        outcome = stopped(current)
        if outcome is not None:
            raise _Stopped(outcome, current)

    def fetch_missing(ids: list[str]) -> None:
        page = connector.fetch_ids(ids)
        tally.fetched += len(page.records) + len(page.rejected)
        pause(write(page))

    def tombstone_extra(ids: list[str]) -> None:
        # Asked by id first: what the source still holds live is written, not tombstoned. What
        # it answers as deleted is written too, and tombstoned should that write not supersede
        # the host's live version (a delete stamped before the last update the host holds).
        page = connector.fetch_ids(ids)
        current = write(page)
        held = {record.id for record in page.records if not record.deleted}
        held.update(r.record_id for r in page.rejected if r.record_id is not None)
        gone = [record_id for record_id in ids if record_id not in held]
        if gone:
            tally.tombstoned += sink.tombstone(key, gone, walk.generation, walk.token, RECONCILED)
        pause(current)

    handle = {IdSide.MISSING_AT_HOST: fetch_missing, IdSide.EXTRA_AT_HOST: tombstone_extra}
    batches: dict[IdSide, list[str]] = {side: [] for side in handle}
    order = connector.id_order
    differences = id_differences(
        _source_ids(connector.list_ids(), lambda: pause(write(_NOTHING))),
        _host_ids(sink, key, order),
        order,
    )
    try:
        for side, record_id in differences:
            if side is IdSide.MISSING_AT_HOST and record_id in walk.spared:
                continue
            batch = batches[side]
            batch.append(record_id)
            if len(batch) == _BATCH:
                batches[side] = []
                handle[side](batch)
        for side, batch in batches.items():
            if batch:
                handle[side](batch)
    except _Stopped as stop:
        return stop.outcome, stop.state
    logger.info(
        "source %s: reconciled by id: %s fetched, %s tombstoned",
        key,
        plural(tally.fetched, "record"),
        plural(tally.tombstoned, "record"),
    )
    return None
