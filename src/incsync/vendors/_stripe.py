"""Stripe's vocabulary for the connector: event types, observations into records, its 429s.

Everything the connector reads is an *observation*: a snapshot of one object and the time it
stands for. An event is one already (``created``, ``type``, ``data.object``); an object from a
full list is wrapped into the same shape by :func:`listed_page`, stamped with the list's start.
:data:`OBSERVATION_FORMAT` turns either into a :class:`~incsync.records.Record`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from incsync.connectors.retry import Throttle
from incsync.connectors.throttle import default_throttle
from incsync.records import RecordFormat, text_id
from incsync.timestamps import parse_epoch_seconds

__all__ = [
    "EVENT_TYPES",
    "LIST_PAGE_SIZE",
    "OBSERVATION_FORMAT",
    "RESOURCES",
    "is_tombstone",
    "listed_page",
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

OBSERVATION_FORMAT = RecordFormat(
    "data.object.id", "created", parse_epoch_seconds, text_id, payload_field="data.object"
)
"""An observation's record: the object's id, the observation's time, the object as payload."""


def listed_page(objects: Sequence[Any], stamp: int) -> list[dict[str, Any]]:
    """Wrap listed objects as observations stamped ``stamp`` (epoch seconds)."""
    return [{"type": _LISTED, "created": stamp, "data": {"object": raw}} for raw in objects]


def is_tombstone(observation: Mapping[str, Any]) -> bool:
    """Return whether an observation is a deletion or void.

    ``*.deleted`` events, objects marked ``deleted`` and voided invoices are tombstones.
    """
    event_type = observation.get("type")
    data = observation.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(obj, Mapping):
        return False
    return (
        (isinstance(event_type, str) and event_type.endswith(".deleted"))
        or obj.get("deleted") is True
        or (obj.get("object") == "invoice" and obj.get("status") == "void")
    )


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
