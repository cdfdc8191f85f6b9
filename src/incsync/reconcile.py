"""The id-level reconcile's decisions: the order ids are compared in, and which ids differ.

When a source's counts of live records keep disagreeing with the host's
(:func:`incsync.policy.drift_to_reconcile`) and its connector can list its live ids
(``Connector.lists_ids``), the engine walks both lists of live ids side by side instead of
re-reading the whole source (the walk itself: :mod:`incsync._reconcile_walk`).
:func:`id_differences` merges the two ascending streams in one pass, holding one id of each at a
time, so neither list is ever loaded whole.

Both lists ascend in the connector's :class:`IdOrder`, the one notion of order the merge compares
with and the host's sink lists in (``TransactionSink.list_live_ids``):

* :attr:`IdOrder.CODE_POINT`: Python's ``str`` order (``COLLATE "C"`` in PostgreSQL, SQLite's
  ``BINARY``), the order of every built-in sink's primary key: Salesforce's Ids.
* :attr:`IdOrder.NUMERIC`: ids that are whole numbers written plainly (``"0"``, ``"9"``,
  ``"10"``), in the order of their values, as HubSpot and Pipedrive list them. For such ids that
  is the shorter one first, then code point order: the key :meth:`IdOrder.sort_key` gives, and
  SQL's ``ORDER BY length(record_id), record_id``. That key orders any text, so a sink lists
  whatever it holds; but only a plain whole number (:meth:`IdOrder.admits`) is compared by it.

An id its order does not admit (``"007"`` or ``"abc"`` under the numeric order), and a stream that
does not ascend strictly, cannot be merged: the merge stops with a
:class:`~incsync.errors.SourceError` that requires a re-sync, rather than call an id missing or
extra that is not. The engine then re-reads the source whole, which needs no order.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator

from incsync.errors import SourceError

__all__ = ["IdOrder", "IdSide", "id_differences"]

# A whole number written plainly: ASCII digits, no sign, no leading zero (but "0" itself).
_PLAIN_NUMBER = re.compile(r"0|[1-9][0-9]*")


class IdOrder(enum.Enum):
    """The order a source lists its ids in, and the host's ids are listed in to meet them."""

    CODE_POINT = "code point"
    """Text order: by code point, character by character (Python's ``str`` order)."""
    NUMERIC = "numeric"
    """The order of whole numbers written plainly: the shorter first, then by code point."""

    def sort_key(self, record_id: str) -> tuple[int, str]:
        """Return the key ids ascend by in this order; it orders every text, admitted or not.

        Stores list the host's ids by the same key (a sink's ``after`` bound is compared by it).
        """
        return (len(record_id) if self is IdOrder.NUMERIC else 0, record_id)

    def admits(self, record_id: str) -> bool:
        """Return whether ``record_id`` can be compared in this order.

        Every text can be under :attr:`CODE_POINT`; under :attr:`NUMERIC` only a whole number
        written plainly, whose value the key orders: ``"007"`` sorts after ``"10"`` by it.
        """
        return self is IdOrder.CODE_POINT or _PLAIN_NUMBER.fullmatch(record_id) is not None


class IdSide(enum.Enum):
    """Which side holds an id the other does not."""

    MISSING_AT_HOST = "missing at the host"
    """Live at the source, not live at the host: the record is fetched and applied."""
    EXTRA_AT_HOST = "extra at the host"
    """Live at the host, not at the source: it becomes a tombstone once the source confirms."""


_Keyed = tuple[tuple[int, str], str]
"""An id's sort key and the id."""


def _ascending(ids: Iterable[str], side: str, order: IdOrder) -> Iterator[_Keyed]:
    """Yield each id with its key, checking the id is admitted and the keys ascend strictly."""
    previous: _Keyed | None = None
    for record_id in ids:
        if not order.admits(record_id):
            raise SourceError(
                f"the {side}'s live id {record_id!r} is not a whole number written plainly, so "
                f"it cannot be compared in {order.value} order: the source is re-read whole "
                "instead",
                resync_required=True,
            )
        key = order.sort_key(record_id)
        if previous is not None and key <= previous[0]:
            raise SourceError(
                f"the {side}'s live ids did not ascend in {order.value} order ({record_id!r} "
                f"came after {previous[1]!r}), so they cannot be compared by id: the source is "
                "re-read whole instead",
                resync_required=True,
            )
        previous = (key, record_id)
        yield previous


def id_differences(
    source: Iterable[str], host: Iterable[str], order: IdOrder = IdOrder.CODE_POINT
) -> Iterator[tuple[IdSide, str]]:
    """Yield every id live on one side only, ascending in ``order``, with the side that holds it.

    Both streams are consumed lazily, one id at a time, so pages may be fetched as the merge
    goes; an id on both sides yields nothing.

    Args:
        source: The source's live ids, ascending in ``order``.
        host: The host's live ids of the same source, ascending in ``order``.
        order: The order both streams ascend in, which the merge compares by.

    Raises:
        SourceError: A stream held an id ``order`` does not admit, repeated an id or went
            backwards (``resync_required``).
    """
    at_source, at_host = _ascending(source, "source", order), _ascending(host, "host", order)
    left, right = next(at_source, None), next(at_host, None)
    while True:
        if left is None:
            if right is None:
                return
            yield IdSide.EXTRA_AT_HOST, right[1]
            right = next(at_host, None)
        elif right is None or left[0] < right[0]:
            yield IdSide.MISSING_AT_HOST, left[1]
            left = next(at_source, None)
        elif right[0] < left[0]:
            yield IdSide.EXTRA_AT_HOST, right[1]
            right = next(at_host, None)
        else:
            left, right = next(at_source, None), next(at_host, None)
