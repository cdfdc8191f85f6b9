"""Stripe's vocabulary for the connector: event types, observations into records, its 429s.

Everything the connector reads is an *observation*: a snapshot of one object and the time it
stands for. An event is one already (``created``, ``type``, ``data.object``); an object from a
full list is wrapped into the same shape by :func:`listed_page`, stamped with the list's start.
:func:`observation_record` turns either into a :class:`~incsync.records.Record`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

from incsync.connectors.retry import Throttle
from incsync.connectors.throttle import default_throttle
from incsync.errors import BadRecordError
from incsync.records import Record, trusted_record
from incsync.timestamps import UTC, parse_epoch_seconds

__all__ = [
    "EVENT_TYPES",
    "LIST_PAGE_SIZE",
    "RESOURCES",
    "listed_page",
    "observation_record",
    "stripe_throttle",
]

LIST_PAGE_SIZE = 100
"""The largest page Stripe's list endpoints return."""

RESOURCES = {"invoices": "invoice", "charges": "charge"}
"""The list endpoints read, with the ``object`` name of their items."""

EVENT_TYPES: Mapping[str, Sequence[str]] = {
    # Every event whose data.object is the invoice itself (invoice.upcoming is not: its invoice
    # has no id and is never stored). At most 20 names fit in one types[] filter.
    "invoices": (
        "invoice.created",
        "invoice.deleted",
        "invoice.finalization_failed",
        "invoice.finalized",
        "invoice.marked_uncollectible",
        "invoice.overdue",
        "invoice.paid",
        "invoice.payment_action_required",
        "invoice.payment_failed",
        "invoice.payment_succeeded",
        "invoice.sent",
        "invoice.updated",
        "invoice.voided",
        "invoice.will_be_due",
    ),
    # charge.dispute.* and charge.refund.updated carry a dispute or a refund, not the charge.
    "charges": (
        "charge.captured",
        "charge.expired",
        "charge.failed",
        "charge.pending",
        "charge.refunded",
        "charge.succeeded",
        "charge.updated",
    ),
}
"""The event types that carry each resource's object, sent as ``types[]``."""

_LISTED = "listed"  # the pseudo event type of an object read from a list

# Epoch seconds that datetime.fromtimestamp reads exactly (as parse_epoch_seconds' own fast case).
_EXACT_SECONDS = 2**33


@functools.lru_cache(maxsize=1024)
def _stamp(created: int) -> datetime:
    # Every object of a full list carries the list's one stamp, and events come in bursts of a
    # few seconds: a small cache turns the per-record conversion into a lookup. Datetimes are
    # immutable, so records may share one.
    return datetime.fromtimestamp(created, UTC)


def listed_page(objects: Sequence[Any], stamp: int) -> list[dict[str, Any]]:
    """Wrap listed objects as observations stamped ``stamp`` (epoch seconds)."""
    return [{"type": _LISTED, "created": stamp, "data": {"object": raw}} for raw in objects]


def observation_record(observation: Mapping[str, Any]) -> Record:
    """Build the record of an observation: id and payload from ``data.object``, time ``created``.

    ``*.deleted`` events, objects marked ``deleted`` and voided invoices are tombstones.

    Raises:
        BadRecordError: The observation or its object is not a JSON object, the object has no
            string id, or ``created`` is not epoch seconds.
    """
    # Exact type checks first: this runs once per record, and JSON gives plain dicts and ints.
    data = observation.get("data") if type(observation) is dict else None
    obj = data.get("object") if type(data) is dict else None
    if type(obj) is not dict:
        return _checked_observation(observation)
    object_id, created = obj.get("id"), observation.get("created")
    if (
        type(object_id) is not str
        or not object_id
        or type(created) is not int
        or not 0 <= created < _EXACT_SECONDS
    ):
        return _checked_observation(observation)
    event_type = observation.get("type")
    deleted = (
        (type(event_type) is str and event_type.endswith(".deleted"))
        or obj.get("deleted") is True
        or (obj.get("status") == "void" and obj.get("object") == "invoice")
    )
    # The id is a non-empty str and the stamp aware UTC, as Record's checks would demand.
    return trusted_record(object_id, _stamp(created), obj, deleted)


def _checked_observation(observation: object) -> Record:
    """The slow path of :func:`observation_record`: any shape, checked step by step."""
    if not isinstance(observation, Mapping):
        raise BadRecordError(f"expected a JSON object, got {type(observation).__name__}")
    data = observation.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(obj, Mapping):
        raise BadRecordError("the event has no object in data.object")
    object_id = obj.get("id")
    if not isinstance(object_id, str) or not object_id:
        raise BadRecordError(f"field 'id' must be a non-empty string, got {object_id!r}")
    try:
        updated_at = parse_epoch_seconds(observation.get("created"), "created")
    except ValueError as error:
        raise BadRecordError(str(error), record_id=object_id) from None
    event_type = observation.get("type")
    deleted = (
        (isinstance(event_type, str) and event_type.endswith(".deleted"))
        or obj.get("deleted") is True
        or (obj.get("object") == "invoice" and obj.get("status") == "void")
    )
    return Record(id=object_id, updated_at=updated_at, payload=obj, deleted=deleted)


def stripe_throttle(response: httpx.Response) -> Throttle | None:
    """Stripe: a 429 is a burst (``rate_limit``, or ``lock_timeout`` on a busy object).

    ``Retry-After`` is honoured when sent; ``Stripe-Should-Retry`` is judged by the connector.
    """
    if response.status_code != 429:
        return default_throttle(response)
    try:
        body = json.loads(response.content)
    except (ValueError, RecursionError):
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    reason = f"Stripe {code}" if isinstance(code, str) else "Stripe rate limit"
    return Throttle.from_header(reason, response.headers.get("retry-after"))
