"""The id-level reconcile's one decision: which ids each side holds that the other does not.

When a source's counts of live records keep disagreeing with the host's
(:func:`incsync.policy.drift_to_reconcile`) and its connector can list its live ids
(``Connector.lists_ids``), the engine walks both lists of live ids side by side instead of
re-reading the whole source. :func:`id_differences` merges the two ascending streams in one pass,
holding one id of each at a time, so neither list is ever loaded whole.

Ids ascend by code point (Python's ``str`` order; ``COLLATE "C"`` in PostgreSQL, SQLite's
``BINARY``): the order in which every built-in sink keeps its primary key, so the host's list is
read along its index. A stream that does not ascend strictly cannot be merged: the merge stops
with a :class:`~incsync.errors.SourceError` that requires a re-sync, rather than call an id
missing or extra that is not: the engine then re-reads the source whole, which needs no order.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator

from incsync.errors import SourceError

__all__ = ["IdSide", "id_differences"]


class IdSide(enum.Enum):
    """Which side holds an id the other does not."""

    MISSING_AT_HOST = "missing at the host"
    """Live at the source, not live at the host: the record is fetched and applied."""
    EXTRA_AT_HOST = "extra at the host"
    """Live at the host, not at the source: it becomes a tombstone once the source confirms."""


def _ascending(ids: Iterable[str], side: str) -> Iterator[str]:
    previous: str | None = None
    for record_id in ids:
        if previous is not None and record_id <= previous:
            raise SourceError(
                f"the {side}'s live ids did not ascend ({record_id!r} came after {previous!r}), "
                "so they cannot be compared by id: the source is re-read whole instead",
                resync_required=True,
            )
        previous = record_id
        yield record_id


def id_differences(source: Iterable[str], host: Iterable[str]) -> Iterator[tuple[IdSide, str]]:
    """Yield every id live on one side only, in ascending order, with the side that holds it.

    Both streams are consumed lazily, one id at a time, so pages may be fetched as the merge
    goes; an id on both sides yields nothing.

    Args:
        source: The source's live ids, ascending by code point.
        host: The host's live ids of the same source, ascending by code point.

    Raises:
        SourceError: A stream repeated an id or went backwards (``resync_required``).
    """
    at_source, at_host = _ascending(source, "source"), _ascending(host, "host")
    left, right = next(at_source, None), next(at_host, None)
    while True:
        if left is None:
            if right is None:
                return
            yield IdSide.EXTRA_AT_HOST, right
            right = next(at_host, None)
        elif right is None or left < right:
            yield IdSide.MISSING_AT_HOST, left
            left = next(at_source, None)
        elif right < left:
            yield IdSide.EXTRA_AT_HOST, right
            right = next(at_host, None)
        else:
            left, right = next(at_source, None), next(at_host, None)
