"""How a Stripe full read is split into ``created`` ranges that several readers list at once.

Stripe lists newest first and filters on ``created`` (``created[gte]``, ``created[lt]``), and an
object's ``created`` never changes: the objects of a list fall exactly into disjoint ``created``
ranges, whatever changes while they are read. The first page of the list ends at the ``created``
the rest starts from (the *top*); the oldest is found by asking "is anything older than this
time?" (a ``limit=1`` list with ``created[lt]``, one request each, sent at once):

1. :func:`first_probes`: times going back from there at ages growing eightfold from an hour
   (1 h, 8 h, 64 h, 21 days, 170 days, 3.7 years) as far as :data:`STRIPE_BEGAN`: the oldest
   lies between the last time with something older and the first time with nothing older;
2. :func:`probes_between`: times evenly inside that bracket, one fewer than the readers, to find
   the oldest within a reader's share of it;
3. :func:`created_ranges`: the time from that lower bound of the oldest to the top split into
   ranges of equal length on whole seconds, the oldest open below, the newest open above. An
   estimate that is off only makes the ranges uneven; together they hold every object.

These are pure decisions over epoch seconds; the connector sends the requests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import attrs

from incsync.partitions import plan_partitions
from incsync.timestamps import UTC

__all__ = [
    "STRIPE_BEGAN",
    "CreatedRange",
    "bracket",
    "created_ranges",
    "first_probes",
    "probes_between",
]

STRIPE_BEGAN = int(datetime(2010, 1, 1, tzinfo=UTC).timestamp())
"""No Stripe object is older than this (epoch seconds; Stripe began in 2010): the lower bound of
the oldest when every probe found something older."""

_FIRST_PROBE_AGE = 3_600  # seconds before the newest: an hour
_PROBE_GROWTH = 8  # each probe reaches this many times further back


@attrs.frozen
class CreatedRange:
    """One range of ``created`` seconds: ``gte <= created < lt``; ``None`` leaves a side open.

    Args:
        gte: The first second in the range; ``None``: from the oldest object.
        lt: The first second after it; ``None``: to the newest object.
    """

    gte: int | None
    lt: int | None

    def filters(self) -> dict[str, int]:
        """Return the list filters that select the range (none for an open side)."""
        bounds = {"created[gte]": self.gte, "created[lt]": self.lt}
        return {name: value for name, value in bounds.items() if value is not None}


def first_probes(top: int) -> list[int]:
    """Return the times to ask "is anything older?" first, latest first (epoch seconds).

    Args:
        top: The ``created`` the ages are counted back from: the oldest listed so far.
    """
    times = []
    age = _FIRST_PROBE_AGE
    while top - age > STRIPE_BEGAN:
        times.append(top - age)
        age *= _PROBE_GROWTH
    return times


def bracket(older: Mapping[int, bool], low: int, high: int) -> tuple[int, int]:
    """Narrow ``[low, high)``, which holds the oldest ``created``, by the probes' answers.

    Args:
        older: For each probed time, whether an object was created before it.
        low: A time no object is older than, as far as known.
        high: A time after the oldest object.

    Returns:
        The latest time with nothing older (or ``low``) and the earliest with something older
        (or ``high``).
    """
    for moment, found in older.items():
        if found:
            high = min(high, moment)
        else:
            low = max(low, moment)
    return low, high


def probes_between(low: int, high: int, count: int) -> list[int]:
    """Return up to ``count`` distinct whole seconds evenly inside ``(low, high)``."""
    step = (high - low) / (count + 1)
    return sorted({low + int(step * number) for number in range(1, count + 1)} - {low, high})


def created_ranges(oldest: int, newest: int, count: int) -> Sequence[CreatedRange]:
    """Split ``oldest`` to ``newest`` into up to ``count`` ranges of equal length, oldest first.

    The first is open below and the last open above, so together they hold every object,
    whatever was created meanwhile; fewer come back when the span has too few seconds.

    Args:
        oldest: A lower bound of the oldest ``created`` (an estimate only unbalances the ranges).
        newest: The newest ``created``.
        count: How many ranges at most.
    """
    plan = plan_partitions(
        _moment(oldest), _moment(max(oldest, newest)), count, timedelta(seconds=1)
    )
    return tuple(
        CreatedRange(
            None if partition.start is None else int(partition.start.timestamp()),
            None if partition.end is None else int(partition.end.timestamp()),
        )
        for partition in plan.partitions
    )


def _moment(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
