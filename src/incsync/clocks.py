"""The source's clock: how far it runs from the host's, measured from the ``Date`` of its answers.

A source stamps its records by its own clock, and its limits ("changes of the last 30 days") count
back from its own now. When that clock runs 10 minutes behind the host's, a cursor bounded by the
host's now (:func:`incsync.cursor.horizon`) could pass records the source has not stamped yet, and
a window computed from the host's now asks for 10 minutes the source no longer keeps.

Every HTTP answer is dated by its server (RFC 9110 6.6.1), to the second. One request gives a
:class:`ClockSample`: when the host sent it and received the answer (by the host's clock), and the
answer's ``Date``. The server wrote the date somewhere within the round trip, so the skew it shows
is the date minus the round trip's midpoint, give or take half the round trip and the date's
one-second resolution (the date is cut to its second, so it reads up to a second early).

:func:`estimate_skew` makes one figure of many samples: the median of their skews, robust to a
slow answer or a proxy's odd date; a figure within its own uncertainty is no measured skew at all
and counts as zero, so a source whose clock agrees with the host's is read exactly as if nothing
were measured.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import datetime, timedelta

import attrs

from incsync.timestamps import ensure_utc, later, to_micros

__all__ = ["DATE_RESOLUTION", "ClockSample", "estimate_skew", "source_now"]

DATE_RESOLUTION = timedelta(seconds=1)
"""How finely an HTTP ``Date`` tells the time: whole seconds, cut (not rounded)."""


def _sent(value: datetime) -> datetime:
    return ensure_utc(value, "sent")


def _received(value: datetime) -> datetime:
    return ensure_utc(value, "received")


def _dated(value: datetime) -> datetime:
    return ensure_utc(value, "dated")


@attrs.frozen(slots=True)
class ClockSample:
    """One answer's evidence of the source's clock.

    Args:
        sent: When the host sent the request, by the host's clock.
        received: When the host received the answer, by the host's clock.
        dated: The answer's ``Date``: the source's clock, cut to the second.

    Raises:
        NaiveDatetimeError: A time has no timezone.
    """

    sent: datetime = attrs.field(converter=_sent)
    received: datetime = attrs.field(converter=_received)
    dated: datetime = attrs.field(converter=_dated)

    @property
    def offset_micros(self) -> int:
        """The skew this answer shows, in microseconds: the date minus the round trip's midpoint."""
        midpoint = (to_micros(self.sent) + to_micros(self.received)) // 2
        return to_micros(self.dated) - midpoint

    @property
    def bound_micros(self) -> int:
        """How far :attr:`offset_micros` may be off: half the round trip plus the date's second."""
        round_trip = max(to_micros(self.received) - to_micros(self.sent), 0)
        return round_trip // 2 + DATE_RESOLUTION // timedelta(microseconds=1)


def estimate_skew(samples: Sequence[ClockSample]) -> timedelta | None:
    """Return how far the source's clock runs ahead of the host's (negative: behind).

    The figure is the median of the samples' skews. When its size is within the median of their
    uncertainties (half a round trip plus the date's one-second resolution), the clocks agree as
    far as the answers can tell, and the skew is zero.

    Args:
        samples: The answers of one cycle (any order).

    Returns:
        The skew, to the microsecond; ``None`` without a sample.
    """
    if not samples:
        return None
    offset = int(statistics.median(sample.offset_micros for sample in samples))
    bound = int(statistics.median(sample.bound_micros for sample in samples))
    if abs(offset) <= bound:
        return timedelta(0)
    return timedelta(microseconds=offset)


def source_now(host_now: datetime, skew: timedelta | None) -> datetime:
    """Return the time by the source's clock when the host's reads ``host_now``.

    Args:
        host_now: The host's time (aware).
        skew: The source's measured skew (:func:`estimate_skew`); ``None`` (not measured) reads
            the host's clock as the source's.
    """
    return host_now if skew is None else later(host_now, skew)
