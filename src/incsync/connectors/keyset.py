"""Reading a source by keyset on its update time: every decision in one pure driver.

Vendors that filter by update time (QuickBooks, HubSpot, Salesforce, Xero, an ordered REST API)
are read the same way, whatever their paging looks like:

1. Ask for the rows updated at or after a time ``S``, ascending by update time (:class:`FromTime`).
   Ties may come in any order.
2. Every answer must come in that order: a row older than one read before it in the same query
   (or older than ``S``) means the source did not sort as asked, and the read stops with
   :class:`~incsync.errors.BadResponseError` instead of letting the cursor pass rows not read yet.
3. When an answer is cut (a full page, a cap), ask again from the newest *tick* read: the
   source's filter resolution (1 s for QuickBooks and Xero, 1 ms for HubSpot and Salesforce).
   The versions already read in that tick (same id, same time) are dropped, so nothing at a page
   boundary is lost or passed on twice, however the source orders ties and however rows move
   while the read goes on: a row updated meanwhile has a later time and comes again, as the
   newer version it is.
4. When a cut answer never got past the tick it started at, more rows share that tick than one
   answer holds (a bulk import stamped in one second): the tick is read whole by the vendor's own
   means (:class:`WholeTick`: by id, by offset inside the tick...), and the read goes on from the
   tick after it. The read always ends.

Rows that cannot become records are passed on once per read (to be set aside), however often
re-queries return them.

Two things no client can see, and what covers them. A source that answers with the wrong *set* of
rows, in the right order (it ignored the sort and cut a different page), shows nothing to check
against; the order check catches such an answer as soon as two of its rows are out of order,
which in practice is at once. A row updated into the very tick being read whole, at the head of
the data, may be missed by that tick read; the engine keeps its cursor behind the cycle's start
(the safety lag), so the next cycle reads it.

:class:`KeysetRead` makes those decisions as a frozen value with no I/O, in the manner of
tenacity's decision loop: :meth:`~KeysetRead.next_step` says what to ask,
:meth:`~KeysetRead.take` absorbs one page of an answer and keeps what is new, and
:meth:`~KeysetRead.finish` takes how the answer ended. :func:`read_by_keyset` is the thin loop
that asks a connector's two plugs (``query`` and ``read_tick``) and yields pages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from incsync.errors import BadResponseError
from incsync.policy import positive_duration
from incsync.records import Page, Record, RejectedRecord, outcome_of
from incsync.timestamps import UTC, ensure_utc, from_micros, to_micros

__all__ = [
    "Answer",
    "FromTime",
    "KeysetRead",
    "RowOutcome",
    "Step",
    "WholeTick",
    "read_by_keyset",
]

RowOutcome = Record | RejectedRecord
"""What one raw row became: its record, or the rejection saying why it could not be one."""


def _optional_utc(value: datetime | None) -> datetime | None:
    return None if value is None else ensure_utc(value, "keyset start")


@attrs.frozen
class FromTime:
    """Ask for every row updated at or after :attr:`start`, ascending by update time.

    Args:
        start: A tick's start (aware UTC); ``None`` asks for every row.
    """

    start: datetime | None = attrs.field(converter=_optional_utc)


@attrs.frozen
class WholeTick:
    """Ask for every row updated in ``[start, end)``, one tick of the source's filter.

    The answer may come in any order, over as many pages as it takes; rows outside the tick
    are ignored. The vendor's plug must return every row of the tick (by id, by offset checked
    against moves...), since the read goes on from :attr:`end`.

    Args:
        start: The tick's start (aware UTC).
        end: The next tick's start.
    """

    start: datetime = attrs.field(converter=ensure_utc)
    end: datetime = attrs.field(converter=ensure_utc)


Step = FromTime | WholeTick
"""What a keyset read asks the source next."""


@attrs.frozen
class Answer:
    """One page of a :class:`FromTime` query's answer.

    Args:
        rows: The rows, as the source sent them, in its order.
        more: Whether rows may follow this page in the query's order that the query did not
            return (a full page, a next-page token, a cap); ``False`` on the answer's last page.
        total: How many rows the whole answer holds, when the source says so with it (HubSpot's
            search ``total``, Salesforce's ``totalSize``); only progress reads it.
    """

    rows: Sequence[Any]
    more: bool
    total: int | None = None


_Version = tuple[str, datetime]
_MICROSECOND = timedelta(microseconds=1)
_LAST_MOMENT = datetime.max.replace(tzinfo=UTC)


@attrs.frozen
class KeysetRead:
    """The state of one keyset read and every decision about it (see the module docstring).

    Build it with :meth:`starting`; each method returns a new value.

    Args:
        resolution: The finest step the source's time filter distinguishes.
        vendor: The source's name, for error messages.
        advice: What to do when the source answers out of order, appended to that error's message
            (a configured source's setting to change, say).
        start: The first query's start (a tick's start), ``None`` for everything.
        tick: The newest tick read from: every row in an earlier tick has been read.
        seen: The versions (id, exact time) read in :attr:`tick`.
        closed: Every row of :attr:`tick` has been read; the next query starts after it.
        crowded: The last answer was cut inside :attr:`tick`: read that tick whole next.
        set_aside: Fingerprints of the rows already passed on to be set aside.
        done: The read is complete.
    """

    resolution: timedelta = attrs.field(validator=positive_duration)
    vendor: str = "source"
    advice: str = ""
    start: datetime | None = None
    tick: datetime | None = None
    seen: frozenset[_Version] = frozenset()
    closed: bool = False
    crowded: bool = False
    set_aside: frozenset[str] = frozenset()
    done: bool = False

    @classmethod
    def starting(
        cls,
        start: datetime | None,
        resolution: timedelta,
        *,
        vendor: str = "source",
        advice: str = "",
    ) -> KeysetRead:
        """Return a read of every row updated at or after ``start`` (everything for ``None``).

        The start is rounded down to a tick: a source cannot filter finer than its resolution.

        Raises:
            ConfigurationError: ``resolution`` is not a ``timedelta`` longer than zero.
            NaiveDatetimeError: ``start`` is naive.
        """
        read = cls(resolution, vendor, advice)
        first = None if start is None else read.tick_of(ensure_utc(start, "window start"))
        return attrs.evolve(read, start=first)

    def tick_of(self, moment: datetime) -> datetime:
        """Return the start of the tick ``moment`` falls in."""
        micros = to_micros(moment)
        return from_micros(micros - micros % (self.resolution // _MICROSECOND))

    def next_step(self) -> Step | None:
        """Return what to ask the source next, or ``None`` when the read is complete."""
        if self.done:
            return None
        if self.tick is None:
            return FromTime(self.start)
        following = _next_tick(self.tick, self.resolution)
        if self.crowded:
            return WholeTick(self.tick, following or _LAST_MOMENT)
        if self.closed:
            # No tick follows the last one datetime can hold: nothing is left to read.
            return None if following is None else FromTime(following)
        return FromTime(self.tick)

    def take(
        self, step: Step, outcomes: Sequence[RowOutcome]
    ) -> tuple[list[RowOutcome], KeysetRead]:
        """Absorb one page of the answer to ``step``; return the outcomes not passed on before.

        Args:
            step: The step this page answers (as :meth:`next_step` returned it).
            outcomes: What each row of the page became, in the source's order.

        Returns:
            The records new to this read and the rejections not passed on before, in the
            source's order; and the read with them absorbed.

        Raises:
            BadResponseError: A row is older than the step asked for, or (answering a
                :class:`FromTime`) older than a row before it: the source did not answer in
                the order asked for.
        """
        kept: list[RowOutcome] = []
        tick, seen = self.tick, set(self.seen)
        set_aside = set(self.set_aside)
        floor = step.start  # an answer never goes below what was asked
        for outcome in outcomes:
            if isinstance(outcome, RejectedRecord):
                if outcome.fingerprint not in set_aside:
                    set_aside.add(outcome.fingerprint)
                    kept.append(outcome)
                continue
            at = self.tick_of(outcome.updated_at)
            if isinstance(step, WholeTick):
                if at < step.start:
                    raise self._out_of_order(outcome, step.start)
                if at >= step.end:
                    continue  # read by the query from the next tick on
            else:
                low = _latest(floor, tick)
                if low is not None and at < low:
                    raise self._out_of_order(outcome, low)
            version = (outcome.id, outcome.updated_at)
            if at == tick:
                if version in seen:
                    continue
                seen.add(version)
            else:
                tick, seen = at, {version}
            kept.append(outcome)
        moved = tick != self.tick
        after = attrs.evolve(
            self,
            tick=tick,
            seen=frozenset(seen),
            closed=self.closed and not moved,
            set_aside=frozenset(set_aside),
        )
        return kept, after

    def finish(self, step: Step, *, more: bool) -> KeysetRead:
        """Take how the answer to ``step`` ended; return the read ready for its next step.

        Args:
            step: The step that was answered.
            more: For a :class:`FromTime`, whether the answer was cut (rows may follow that it
                did not return). Ignored for a :class:`WholeTick`, whose plug reads it whole.

        Raises:
            BadResponseError: A cut answer held no readable row to go on from.
        """
        if isinstance(step, WholeTick):
            return attrs.evolve(self, closed=True, crowded=False)
        if not more:
            return attrs.evolve(self, done=True)
        if self.tick is None or (step.start is not None and self.tick < step.start):
            raise BadResponseError(
                f"{self.vendor}: a cut answer to a query from {_iso(step.start)} held no row "
                f"with a readable id and time to go on from, so the read stops instead of "
                f"asking the same again",
                vendor=self.vendor,
            )
        # A cut answer that never got past its first tick would come back the same if asked
        # again: more rows share that tick than one answer holds.
        return attrs.evolve(self, crowded=self.tick == step.start)

    def _out_of_order(self, record: Record, low: datetime) -> BadResponseError:
        return BadResponseError(
            f"{self.vendor}: record {record.id!r} (updated {record.updated_at.isoformat()}) came "
            f"in an answer that had already reached {low.isoformat()}: the source did not return "
            f"rows in the order asked for (by update time), so the read stops before the cursor "
            f"can pass a row not read yet{f'; {self.advice}' if self.advice else ''}",
            vendor=self.vendor,
        )


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    return a if b is None or a > b else b


def _next_tick(tick: datetime, resolution: timedelta) -> datetime | None:
    try:
        return tick + resolution
    except OverflowError:
        return None


def _iso(moment: datetime | None) -> str:
    return "the beginning" if moment is None else moment.isoformat()


def read_by_keyset(
    start: datetime | None,
    *,
    resolution: timedelta,
    query: Callable[[FromTime], Iterable[Answer]],
    read_tick: Callable[[WholeTick], Iterable[Sequence[Any]]],
    build: Callable[[Any], Record],
    vendor: str = "source",
    advice: str = "",
    total: int | None = None,
) -> Iterator[Page]:
    """Read every row updated at or after ``start`` through a vendor's two plugs.

    Args:
        start: The window's start; ``None`` reads everything.
        resolution: The finest step the source's time filter distinguishes.
        query: Sends one :class:`FromTime` query; yields its answer page by page, the last
            page's :attr:`Answer.more` saying whether the answer was cut.
        read_tick: Reads one :class:`WholeTick` whole; yields its rows page by page.
        build: Builds one row's record (the connector's ``to_record``); whatever it raises sets
            that row aside.
        vendor: The source's name, for error messages.
        advice: What to do when the source answers out of order, added to that error's message.
        total: How many records the read is expected to hold, when known (for progress);
            without it, the read's first answer sets it when it says how many rows it holds
            (:attr:`Answer.total`): the first query asks for the whole window, so its count is
            the read's, as the source saw it when the read began.

    Yields:
        Pages of the records new to this read and the rows set aside, in the source's order.

    Raises:
        BadResponseError: The source did not answer in the order asked for, or a cut answer
            held nothing to go on from.
        SourceError: A plug failed.
    """
    read = KeysetRead.starting(start, resolution, vendor=vendor, advice=advice)
    first_answer = True
    while (step := read.next_step()) is not None:
        more = False
        if isinstance(step, FromTime):
            for answer in query(step):
                kept, read = read.take(step, [outcome_of(build, raw) for raw in answer.rows])
                more = answer.more
                if first_answer:
                    total = answer.total if total is None else total
                    first_answer = False
                # Hold nothing of this page while the next is asked for: the consumer decides
                # how long a page lives.
                del answer
                if kept:
                    yield _page(kept, total)
                del kept
        else:
            for rows in read_tick(step):
                kept, read = read.take(step, [outcome_of(build, raw) for raw in rows])
                del rows
                if kept:
                    yield _page(kept, total)
                del kept
        read = read.finish(step, more=more)


def _page(outcomes: Sequence[RowOutcome], total: int | None) -> Page:
    records = [outcome for outcome in outcomes if isinstance(outcome, Record)]
    rejected = [outcome for outcome in outcomes if isinstance(outcome, RejectedRecord)]
    return Page(records=records, rejected=rejected, total=total)
