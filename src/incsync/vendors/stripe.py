"""The Stripe connector: invoices or charges, listed once in full, then followed through events.

Stripe has no filter on updates: objects carry only ``created``, and lists are newest first. So:

* **A full read** (the first cycle, and after a reset) reads the list endpoint's first page
  (``limit=100``, newest first). When it has more, the rest of the list (objects created at or
  before the first page's last one) is split into ``created`` ranges (see
  :mod:`incsync.vendors._stripe_ranges`: two rounds of one-object probes, each sent at once,
  find a lower bound of the oldest ``created``), and :attr:`StripeConnector.list_readers` readers
  page them at once with ``starting_after`` until ``has_more`` is false, through
  :func:`incsync.pipeline.read_ahead_each`: one thread a range, one page ahead each, pages handed
  over as they arrive. An object's ``created`` never changes, so each object is listed by exactly
  one range: the newest goes on after the first page, open above; the oldest is open below.
  Objects created after the first page was read are in no range, and a change to an object
  already read is not in its page; both are caught up at the end of the same read from the
  events since the read began.
* **Requests are paced** at :attr:`StripeConnector.requests_per_second`, every reader together
  (one :class:`~incsync.connectors.retry.ThrottleGate`), under the 25 a second Stripe allows an
  endpoint, and a sandbox account in all; a 429 one reader gets holds back every reader until it
  may retry. An account of one page costs what one reader costs: the page and the events. A
  larger one costs the probes besides (``list_readers - 1`` and up to six more: 13 with eight
  readers when the first page ends after 2013) and one request for each range found empty.
* **Later cycles** read ``/v1/events`` for the resource's event types (``types[]``) created at or
  after the window's start, newest first, and keep the latest snapshot (``data.object``) of each
  object: the first one met. ``*.deleted`` events and voided invoices become tombstones.

What ``updated_at`` means here, since Stripe objects have no update time:

* an object read from an event is stamped with the event's ``created``: the time of that state;
* an object read from a list is stamped with the time the list read began, minus
  ``clock_skew``. The list shows each object as it was when its page was read, which is at least
  as new as it was at that moment; every later change has an event stamped at or after it.

So the sink (:func:`incsync.records.supersedes`: a newer ``updated_at`` wins) never goes back a
version: an event older than the list's stamp never replaces a listed object, and an event at or
after it is the object's latest event in its window, so never older than what the list showed.
A change made while the list paged may be applied twice (once listed, once from its event), both
times as the same or a newer state. The ranges change none of this: every listed object bears the
one stamp, whichever reader listed it, and the events are read after every range is.

The read is not in ``updated_at`` order, so the connector is unordered: the engine moves the
cursor only when a cycle completes, to the newest stamp read (held back by the safety lag), and the
next cycle reads the events from there (minus :attr:`StripeConnector.lookback`). A range that
fails fails the read (its error is raised when its page is asked for, the other readers are
abandoned and joined), so nothing is checkpointed past it: the next cycle reads everything again.
A stop or cancel abandons every reader the same way; memory holds at most one page ahead a
reader.

Events are kept for 30 days: when the window starts earlier than that, changes in between cannot
be read any more, and the read raises :class:`~incsync.errors.PermanentSourceError` with
``resync_required``; the engine resets the source (its state shows it resetting, with the reason
as its last error) and the next cycle reads everything again. A draft invoice deleted during such
a gap is not listed any more and has no event left: the re-read does not see it, so the sweep that
ends it makes that transaction a tombstone (see :data:`incsync.records.SWEPT`).

The cursor is the newest change read, so a resource with no change at all for 30 days cannot tell
a quiet month from a lost one: it is re-read in full once (a list read; nothing is lost).

Deletes come only as ``*.deleted`` events, so they are readable for those 30 days: the
connector's ``delete_retention`` is :data:`EVENT_RETENTION`, and the engine re-reads a source not
read for longer whole, tombstoning what the re-read did not see. There is no count check
(:meth:`StripeConnector.count_live` is ``None``): lists carry no total, and the search API's
``total_count`` is exact only up to 10,000, lags writes by up to a minute or more, and is not
offered in every country.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, cast

import attrs
import httpx

from incsync.connectors.auth import BearerToken
from incsync.connectors.base import RawPage
from incsync.connectors.http import PACED_SHARE, HttpConnector, HttpOptions
from incsync.connectors.retry import Failure, Throttle
from incsync.cursor import Window
from incsync.errors import BadResponseError, ConfigurationError, PermanentSourceError
from incsync.pipeline import Ended, read_ahead_each
from incsync.policy import non_negative_duration, whole_number_setting
from incsync.timestamps import UTC
from incsync.vendors._stripe import (
    EVENT_TYPES,
    LIST_PAGE_SIZE,
    OBSERVATION_FORMAT,
    RESOURCES,
    is_tombstone,
    listed_page,
    stripe_throttle,
)
from incsync.vendors._stripe_ranges import (
    STRIPE_BEGAN,
    CreatedRange,
    bracket,
    created_ranges,
    first_probes,
    probes_between,
)

__all__ = [
    "EVENT_RETENTION",
    "MAX_LIST_READERS",
    "STRIPE_API",
    "STRIPE_LIST_READERS",
    "StripeConnector",
]

logger = logging.getLogger("incsync.connectors")

STRIPE_API = "https://api.stripe.com"
"""Stripe's API root."""

EVENT_RETENTION = timedelta(days=30)
"""How long Stripe keeps events, the only record of deletions; a window starting earlier needs a
full re-sync."""

STRIPE_LIST_READERS = 8
"""How many ``created`` ranges of a full read are listed at once by default.

Each reader has one request in flight at a time, and the connector starts at most
:attr:`StripeConnector.requests_per_second` (23.75) requests a second, all readers together: at
150 ms a page four readers keep that pace, eight keep it up to about 340 ms a page."""

MAX_LIST_READERS = 25
"""The most readers a full read takes: with one request each in flight, more than the requests
Stripe allows an endpoint in a second could only wait for the pace."""

_list_readers_setting = whole_number_setting(1, MAX_LIST_READERS)

# A window this close to the retention edge is treated as past it: events at the edge may be
# purged while the read pages, and the two clocks may disagree a little.
_RETENTION_MARGIN = timedelta(hours=1)


def _epoch(moment: datetime) -> int:
    """Whole epoch seconds at or before ``moment``: Stripe's ``created`` filters are seconds."""
    return int(moment.timestamp() // 1)


class StripeConnector(HttpConnector):
    """Reads Stripe invoices or charges: a full list once, then events (see the module).

    Records: ``id`` is the object id, ``updated_at`` the event's ``created`` (or, for a full
    list, the moment the list read began minus ``clock_skew``), and the payload is the object as
    Stripe sent it. Deleted objects (``*.deleted`` events) and voided invoices are tombstones.

    Args:
        base_url: The API root (Stripe's, or a test double's).
        secret_key: The secret (``sk_...``) or restricted (``rk_...``) key; sent as a bearer
            token and masked in every message.
        resource: ``"invoices"`` or ``"charges"``.
        clock_skew: How far this machine's clock may run ahead of Stripe's; list reads are
            stamped this much before they began, so no change made during the read is hidden.
        lookback: How far before the cursor each event read starts again.
        headers: Headers sent with every request (``Stripe-Account`` for a connected account).
        list_readers: How many ``created`` ranges of a full read are listed at once (see the
            module), from 1 to :data:`MAX_LIST_READERS`; :data:`STRIPE_LIST_READERS` by default.
            1 pages the list alone, as one reader.
        options: Timeouts, retries, transport and the hooks tests inject
            (:class:`~incsync.connectors.http.HttpOptions`); the defaults otherwise.

    Raises:
        ConfigurationError: The key does not look like a Stripe secret key, the resource is not
            served, a duration is negative, or ``list_readers`` is out of its range.
    """

    vendor: ClassVar[str] = "stripe"
    # 5% under the 25 requests a second Stripe allows each endpoint (a list, the events) and a
    # sandbox account in all, so that the readers of a full read together are paced under it
    # rather than refused: 26 starts are 1.05 s apart, so no second counts more than 25 unless
    # requests arrive more than 50 ms closer together than they left. Measured against the fake
    # (docs/performance.md), the busiest second held 24; 25 a second was refused. A refusal
    # holds every reader back for a second. Under a quarter of a live account's 100, leaving the
    # rest to its payments.
    requests_per_second: ClassVar[float | None] = PACED_SHARE * 25  # 23.75
    ordered = False
    lookback = timedelta(minutes=1)
    delete_retention = EVENT_RETENTION

    def __init__(
        self,
        base_url: str = STRIPE_API,
        *,
        secret_key: str,
        resource: str = "invoices",
        clock_skew: timedelta = timedelta(minutes=5),
        lookback: timedelta | None = None,
        headers: Mapping[str, str] | None = None,
        list_readers: int = STRIPE_LIST_READERS,
        options: HttpOptions | None = None,
    ) -> None:
        _list_readers_setting.check("list_readers", list_readers)
        self.list_readers = list_readers
        if not secret_key.startswith(("sk_", "rk_")):
            # The value itself is never echoed: it may be a real key pasted in the wrong field.
            raise ConfigurationError(
                "secret_key must be a Stripe secret or restricted key (sk_... or rk_...)"
            )
        if resource not in RESOURCES:
            raise ConfigurationError(
                f"resource must be one of {sorted(RESOURCES)}, got {resource!r}"
            )
        for name, value in (("clock_skew", clock_skew), ("lookback", lookback)):
            if value is not None:
                non_negative_duration.check(name, value)
        if lookback is not None:
            self.lookback = lookback
        super().__init__(
            base_url,
            auth=BearerToken(secret_key),
            headers=headers,
            options=options,
        )
        self.resource = resource
        self.object_name = RESOURCES[resource]
        # Not self.clock_skew: that is the skew measured from Stripe's answers (HttpConnector).
        self.skew_margin = clock_skew

    # -- answers ---------------------------------------------------------------------------------

    def throttle_signal(self, response: httpx.Response) -> Throttle | None:
        """Stripe's 429 (``rate_limit``, ``lock_timeout``) with its ``Retry-After``."""
        return stripe_throttle(response)

    def _judge(self, response: httpx.Response, secrets: Sequence[str]) -> httpx.Response | Failure:
        """Judge as any HTTP source, then let ``Stripe-Should-Retry`` overrule the retry choice.

        Stripe knows better than the status whether repeating a request can help: ``false``
        means never retry (whatever the status), ``true`` means retry even a status that would
        not be.
        """
        judged = super()._judge(response, secrets)
        advice = response.headers.get("stripe-should-retry", "").strip().lower()
        if isinstance(judged, Failure) and advice in ("true", "false"):
            return attrs.evolve(judged, retry=advice == "true")
        return judged

    # -- records ---------------------------------------------------------------------------------

    record_format = OBSERVATION_FORMAT

    def is_deleted(self, raw: Mapping[str, Any]) -> bool:
        """Return whether an observation is a deletion or void (see :func:`is_tombstone`)."""
        return is_tombstone(raw)

    def count_live(self) -> int | None:
        """Return ``None``: Stripe tells no exact count cheaply (see the module docstring)."""
        return None

    # -- reading ---------------------------------------------------------------------------------

    def fetch(self, window: Window) -> Iterator[RawPage]:
        """Yield a full read (list, then the events since it began) or the window's events.

        Raises:
            PermanentSourceError: The window starts before the events Stripe keeps
                (``resync_required`` is set; the engine resets the source).
            SourceError: Stripe could not be read.
        """
        if window.start is None:
            yield from self._full_read()
            return
        # The window starts at a time Stripe stamped, and Stripe keeps events by its own clock.
        age = self.source_time() - window.start
        if age > EVENT_RETENTION - _RETENTION_MARGIN:
            raise PermanentSourceError(
                f"stripe: the events to read start at {window.start.isoformat()}, "
                f"{age / timedelta(days=1):.1f} days ago, but Stripe keeps events for "
                f"{EVENT_RETENTION.days} days only: the changes since then can only be found by "
                f"reading every {self.object_name} again (a full re-sync)",
                vendor=self.vendor,
                resync_required=True,
            )
        yield from self._event_pages(_epoch(window.start))

    def _full_read(self) -> Iterator[RawPage]:
        began = self.source_time()  # the events after the list are stamped by Stripe's clock
        stamp = _epoch(began - self.skew_margin)
        logger.info(
            "stripe: full read of %s, stamped %s", self.resource, datetime.fromtimestamp(stamp, UTC)
        )
        answer = self._get_list(self._list_url, {"limit": LIST_PAGE_SIZE}, resumable=False)
        assert answer is not None  # only a page after an object is resumable
        data, has_more = answer
        if data:
            yield listed_page(data, stamp)
        if has_more and data:
            after = self._after(data)
            if self.list_readers == 1 or after.created is None:
                ranges: Sequence[CreatedRange] = (CreatedRange(None, None),)
            else:
                ranges = self._plan(after.created)
            # The newest range goes on from the first page; the others are listed from their top.
            reads = [
                (index, self._list_pages(span, after if index == len(ranges) - 1 else None))
                for index, span in enumerate(ranges)
            ]
            if len(reads) == 1:  # one reader pages in the read's own thread, as it always did
                for page in reads[0][1]:
                    yield listed_page(page, stamp)
            else:
                with read_ahead_each(reads) as handed:
                    for _, item in handed:
                        if not isinstance(item, Ended):
                            yield listed_page(item, stamp)
        # What changed while the list was read: objects created after its first page was read,
        # and changes to objects after their page was read.
        yield from self._event_pages(stamp)

    @property
    def _list_url(self) -> str:
        return f"/v1/{self.resource}"

    def _plan(self, top: int) -> Sequence[CreatedRange]:
        """Return the ranges the rest of the list splits in: what was created up to ``top``.

        ``top`` is the ``created`` of the first page's last object. Two rounds of probes, each
        sent at once, find a lower bound of the oldest (see
        :mod:`incsync.vendors._stripe_ranges`).
        """
        low, high = bracket(self._probe(first_probes(top)), STRIPE_BEGAN, top + 1)
        between = probes_between(low, high, self.list_readers - 1)
        low, _ = bracket(self._probe(between), low, high)
        ranges = created_ranges(min(low, top), top, self.list_readers)
        logger.info(
            "stripe: the rest of the list read as %d created ranges at once, from %s",
            len(ranges),
            datetime.fromtimestamp(low, UTC),
        )
        return ranges

    def _probe(self, moments: Sequence[int]) -> dict[int, bool]:
        """Return, for each moment, whether an object was created before it; asked at once."""
        with read_ahead_each((moment, self._older_than(moment)) for moment in moments) as reads:
            return {moment: found for moment, found in reads if not isinstance(found, Ended)}

    def _older_than(self, moment: int) -> Iterator[bool]:
        answer = self._get_list(
            self._list_url, {"limit": 1, "created[lt]": moment}, resumable=False
        )
        assert answer is not None  # only a page after an object is resumable
        yield bool(answer[0])

    def _list_pages(self, span: CreatedRange, after: _After | None) -> Iterator[list[Any]]:
        """Page the objects of ``span`` newest first, after ``after`` if given.

        An object to page after that was deleted meanwhile (Stripe answers 400
        ``resource_missing``) is resumed from: the list starts again at its second, in the
        range, without the objects of that second already read.
        """
        bounds: dict[str, Any] = span.filters()
        skip: set[str] = set()
        while True:
            params = {"limit": LIST_PAGE_SIZE, **bounds}
            if after is not None:
                params["starting_after"] = after.object_id
            answer = self._get_list(self._list_url, params, resumable=after is not None)
            if answer is None:  # the object to page after is gone: resume from its second
                assert after is not None  # only a page after an object is resumable
                if after.created is not None:
                    bounds.pop("created[lt]", None)
                    bounds["created[lte]"] = after.created
                skip, after = set(after.same_second), None
                continue
            data, has_more = answer
            fresh = [raw for raw in data if _id_of(raw) not in skip] if skip else data
            skip = set()
            if fresh:
                yield fresh
            if not has_more or not data:
                return
            after = self._after(data)

    def _after(self, data: Sequence[Any]) -> _After:
        """Return where the page after ``data`` starts, and what to skip if that object is gone."""
        last = self._last_to_page_after(data, self.object_name)
        created = _created_of(last)
        same_second = []
        for raw in reversed(data):  # newest first: the page's last second is its tail
            if _created_of(raw) != created:
                break
            object_id = _id_of(raw)
            if object_id is not None:
                same_second.append(object_id)
        return _After(cast("str", _id_of(last)), created, tuple(same_second))

    def _event_pages(self, since: int) -> Iterator[RawPage]:
        """Yield each object's latest event created at or after ``since``, newest first."""
        params: dict[str, Any] = {
            "limit": LIST_PAGE_SIZE,
            "types[]": list(EVENT_TYPES[self.resource]),
            "created[gte]": since,
        }
        seen: set[str] = set()
        while True:
            answer = self._get_list("/v1/events", params, resumable=False)
            assert answer is not None  # only list pages are resumable
            data, has_more = answer
            latest = []
            for event in data:
                object_id = _event_object_id(event)
                if object_id is None or object_id not in seen:
                    if object_id is not None:
                        seen.add(object_id)
                    latest.append(event)
            if latest:
                yield latest
            if not has_more or not data:
                return
            params = {**params, "starting_after": _id_of(self._last_to_page_after(data, "event"))}

    def _last_to_page_after(self, data: Sequence[Any], what: str) -> Mapping[str, Any]:
        """Return the last row of a page that has an id: where the next page starts.

        A row without one (set aside by the record path) cannot be paged after; stopping there
        would end the read early and pass the rows after it for good.

        Raises:
            BadResponseError: No row of a page that has more has an id to page after.
        """
        for raw in reversed(data):
            if _id_of(raw) is not None:
                return cast("Mapping[str, Any]", raw)
        raise BadResponseError(
            f"stripe: no {what} of a page with more after it has an id to page on; the read "
            "stopped instead of guessing",
            vendor=self.vendor,
        )

    def _get_list(
        self, url: str, params: Mapping[str, Any], *, resumable: bool
    ) -> tuple[list[Any], bool] | None:
        """Return a list page's ``data`` and ``has_more``; ``None`` if its cursor vanished."""
        try:
            answer = self.get_json(url, params=params)
        except PermanentSourceError as error:
            # Stripe answers 400 resource_missing when the starting_after object was deleted.
            if resumable and error.status_code == 400 and "starting_after" in params:
                logger.info("stripe: the object to page after is gone; resuming by time")
                return None
            raise
        data = answer.get("data") if isinstance(answer, dict) else None
        has_more = answer.get("has_more") if isinstance(answer, dict) else None
        if not isinstance(data, list) or not isinstance(has_more, bool):
            raise BadResponseError(
                f"stripe: the answer to {url} is not a list object with 'data' and 'has_more'; "
                "the API changed or a proxy answered instead",
                vendor=self.vendor,
            )
        return data, has_more


@attrs.frozen
class _After:
    """Where a list goes on: after ``object_id``, created at ``created``.

    ``same_second`` are the ids read of that second, to skip when the list must start again at
    the second because the object was deleted meanwhile.
    """

    object_id: str
    created: int | None
    same_second: tuple[str, ...]


def _id_of(raw: object) -> str | None:
    object_id = raw.get("id") if isinstance(raw, Mapping) else None
    return object_id if isinstance(object_id, str) and object_id else None


def _created_of(raw: object) -> int | None:
    created = raw.get("created") if isinstance(raw, Mapping) else None
    return created if isinstance(created, int) and not isinstance(created, bool) else None


def _event_object_id(event: object) -> str | None:
    data = event.get("data") if isinstance(event, Mapping) else None
    return _id_of(data.get("object") if isinstance(data, Mapping) else None)
