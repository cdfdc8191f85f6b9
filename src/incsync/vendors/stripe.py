"""The Stripe connector: invoices or charges, listed once in full, then followed through events.

Stripe has no filter on updates: objects carry only ``created``, and lists are newest first. So:

* **A full read** (the first cycle, and after a reset) pages the list endpoint newest first with
  ``starting_after`` (``limit=100``) until ``has_more`` is false. Objects created while it pages
  land before the first page and are not in it, and a change to an object already read is not in
  it either; both are caught up at the end of the same read from the events since the read
  began.
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
times as the same or a newer state.

The read is not in ``updated_at`` order, so the connector is unordered: the engine moves the
cursor only when a cycle completes, to the newest stamp read (held back by the safety lag), and the
next cycle reads the events from there (minus :attr:`StripeConnector.lookback`). Events are kept
for 30 days: when the window starts earlier than that, changes in between cannot be read any
more, and the read raises :class:`~incsync.errors.PermanentSourceError` with
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
from incsync.connectors.http import HttpConnector, HttpOptions
from incsync.connectors.retry import Failure, Throttle
from incsync.cursor import Window
from incsync.errors import BadResponseError, ConfigurationError, PermanentSourceError
from incsync.policy import non_negative_duration
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

__all__ = ["EVENT_RETENTION", "STRIPE_API", "StripeConnector"]

logger = logging.getLogger("incsync.connectors")

STRIPE_API = "https://api.stripe.com"
"""Stripe's API root."""

EVENT_RETENTION = timedelta(days=30)
"""How long Stripe keeps events, the only record of deletions; a window starting earlier needs a
full re-sync."""

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
        options: Timeouts, retries, transport and the hooks tests inject
            (:class:`~incsync.connectors.http.HttpOptions`); the defaults otherwise.

    Raises:
        ConfigurationError: The key does not look like a Stripe secret key, the resource is not
            served, or a duration is negative.
    """

    vendor: ClassVar[str] = "stripe"
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
        options: HttpOptions | None = None,
    ) -> None:
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
        for page in self._list_pages():
            yield listed_page(page, stamp)
        # What changed while the list paged: objects created before its first page was read,
        # and changes to objects after their page was read.
        yield from self._event_pages(stamp)

    def _list_pages(self) -> Iterator[list[Any]]:
        """Page the list newest first; a vanished ``starting_after`` object resumes by time."""
        params: dict[str, Any] = {"limit": LIST_PAGE_SIZE}
        skip: set[str] = set()  # ids already read in the second a resumed page starts with
        last_created: int | None = None
        last_second: list[str] = []
        while True:
            answer = self._get_list(f"/v1/{self.resource}", params, resumable=True)
            if answer is None:  # the cursor object was deleted: resume from its second
                params = {"limit": LIST_PAGE_SIZE}
                if last_created is not None:
                    params["created[lte]"] = last_created
                skip = set(last_second)
                continue
            data, has_more = answer
            fresh = [raw for raw in data if _id_of(raw) not in skip] if skip else data
            skip = set()
            if fresh:
                yield fresh
            if not has_more or not data:
                return
            last = self._last_to_page_after(data, self.object_name)
            last_id = _id_of(last)
            last_created = _created_of(last)
            last_second = []
            for raw in reversed(data):  # newest first: the page's last second is its tail
                if _created_of(raw) != last_created:
                    break
                object_id = _id_of(raw)
                if object_id is not None:
                    last_second.append(object_id)
            params = {"limit": LIST_PAGE_SIZE, "starting_after": last_id}

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


def _id_of(raw: object) -> str | None:
    object_id = raw.get("id") if isinstance(raw, Mapping) else None
    return object_id if isinstance(object_id, str) and object_id else None


def _created_of(raw: object) -> int | None:
    created = raw.get("created") if isinstance(raw, Mapping) else None
    return created if isinstance(created, int) and not isinstance(created, bool) else None


def _event_object_id(event: object) -> str | None:
    data = event.get("data") if isinstance(event, Mapping) else None
    return _id_of(data.get("object") if isinstance(data, Mapping) else None)
