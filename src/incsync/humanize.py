"""Times as people read them: "12 days ago" and an exact, unambiguous timestamp.

The status screen shows every time twice: a relative text that rounds down ("1 hour ago" from 60
up to 119 minutes) and, on hover, the exact time in a timezone the host chooses. Both are plain
functions of the time, ``now`` and the zone, so a host rendering its own table can use them alone.

Rules:

- Under a minute either way is "just now"; so is a time slightly in the future (up to
  ``future_tolerance``, 5 minutes by default), because clocks of hosts and sources never agree.
  A time further ahead says so plainly: "3 hours in the future".
- Minutes, hours and days count elapsed time and round down. From 28 days on, months and years are
  calendar months and years in the display zone (dateutil's ``relativedelta``): 2026-04-01 is
  "1 month ago" on 2026-05-01, and a leap day's anniversary is the 28th of February.
- Exact text names the zone: ``2026-11-13 09:41:07 UTC``; elsewhere the abbreviation and the
  offset, ``2026-11-01 01:30:00 EDT (UTC-04:00)``, so the repeated hour when DST ends reads
  differently each time round.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo
from functools import lru_cache, partial
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
from dateutil.relativedelta import relativedelta

from incsync.errors import ConfigurationError
from incsync.timestamps import ensure_utc

__all__ = [
    "DEFAULT_FUTURE_TOLERANCE",
    "RelativeSpan",
    "TimeText",
    "duration_text",
    "exact_time",
    "iso_time",
    "plural",
    "relative_span",
    "relative_time",
    "resolve_zone",
    "time_text",
]

DEFAULT_FUTURE_TOLERANCE = timedelta(minutes=5)
"""How far in the future a time may be and still read "just now" (clock skew, not news)."""

_MINUTE = timedelta(minutes=1)
_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)
# No calendar month is shorter than 28 days, so below that the (slower) calendar arithmetic can
# only ever answer "0 months".
_SHORTEST_MONTH_DAYS = 28


@attrs.frozen(slots=True)
class TimeText:
    """One time, written for people and for machines.

    Args:
        relative: Rounded down and relative to ``now``, for example ``"12 days ago"``.
        exact: The exact time in the display zone, for example ``"2026-11-13 09:41:07 UTC"``.
        iso: The instant in ISO 8601, UTC, to the second (``"2026-11-13T09:41:07+00:00"``); valid
            as an HTML ``<time datetime>`` value.
    """

    relative: str
    exact: str
    iso: str


def plural(count: int, noun: str, *, grouped: bool = True) -> str:
    """Return a count and its noun, singular for exactly one: ``"1 record"``, ``"2,500 records"``.

    Args:
        count: How many.
        noun: The singular of a noun whose plural takes an "s" (record, page, source, day).
        grouped: Separate the thousands with commas.
    """
    number = f"{count:,}" if grouped else str(count)
    return f"{number} {noun}" if count == 1 else f"{number} {noun}s"


# Time spans keep their digits ungrouped ("9998 years ago"), as they have always been shown.
_plural = partial(plural, grouped=False)


@lru_cache(maxsize=64)
def _zone_named(name: str) -> tzinfo:
    if name == "UTC":
        # The fixed-offset UTC is faster than ZoneInfo("UTC") and names itself "UTC" all the same.
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ConfigurationError(
            f"display timezone {name!r} is not a known IANA zone name; "
            "use a name such as 'UTC', 'Europe/Berlin' or 'America/New_York'"
        ) from error


def resolve_zone(zone: str | tzinfo) -> tzinfo:
    """Return the timezone a display zone argument stands for.

    Args:
        zone: An IANA zone name (``"Europe/Berlin"``) or a ``tzinfo`` the host already holds.

    Returns:
        The ``tzinfo`` to show times in.

    Raises:
        ConfigurationError: ``zone`` is not a known IANA zone name.
    """
    if isinstance(zone, tzinfo):
        return zone
    if not zone:
        raise ConfigurationError(f"display timezone must be an IANA zone name, got {zone!r}")
    return _zone_named(zone)


def _local(when: datetime, zone: tzinfo) -> datetime:
    try:
        return when.astimezone(zone)
    except OverflowError:
        # At the very ends of datetime's range the zone's offset does not fit; UTC always does,
        # and an exact time in the wrong zone beats an exception on a status page.
        return when


@attrs.frozen(slots=True)
class RelativeSpan:
    """How far a time lies from ``now``, in the one whole unit :func:`relative_time` names.

    A host writing times in another language words this value (``"vor 12 Tagen"``), so both
    languages round alike.

    Args:
        count: Whole units, rounded down (at least 1).
        unit: ``"minute"``, ``"hour"``, ``"day"``, ``"month"`` or ``"year"``.
        future: The time lies ahead of ``now`` (further than the tolerance).
    """

    count: int
    unit: str
    future: bool = False


def _whole_units(earlier: datetime, later: datetime, zone: tzinfo) -> tuple[int, str]:
    """Return the whole units from ``earlier`` to ``later`` (at least a minute apart)."""
    elapsed = later - earlier
    if elapsed < _HOUR:
        return elapsed // _MINUTE, "minute"
    if elapsed < _DAY:
        return elapsed // _HOUR, "hour"
    if elapsed.days >= _SHORTEST_MONTH_DAYS:
        # Months and years are the reader's calendar months: compare wall-clock times in the
        # display zone, so "1 month ago" changes at local midnight, not at UTC's.
        calendar = relativedelta(
            _local(later, zone).replace(tzinfo=None), _local(earlier, zone).replace(tzinfo=None)
        )
        if calendar.years >= 1:
            return calendar.years, "year"
        if calendar.months >= 1:
            return calendar.months, "month"
    return elapsed.days, "day"


def relative_span(
    when: datetime,
    now: datetime,
    *,
    zone: str | tzinfo = "UTC",
    future_tolerance: timedelta = DEFAULT_FUTURE_TOLERANCE,
) -> RelativeSpan | None:
    """Return how long ago (or ahead) ``when`` is in whole units; ``None`` for "just now".

    This is :func:`relative_time`'s rule without its English words.

    Args:
        when: The time to describe (aware).
        now: The present (aware); never read from the clock here.
        zone: The reader's zone, whose calendar counts months and years.
        future_tolerance: A time at most this far ahead of ``now`` is "just now".

    Raises:
        NaiveDatetimeError: ``when`` or ``now`` has no timezone.
        ConfigurationError: ``zone`` is not a known IANA zone name.
    """
    when = ensure_utc(when, "when")
    now = ensure_utc(now, "now")
    tz = resolve_zone(zone)
    if when > now:
        ahead = when - now
        # Under a minute there is no whole unit to name, whatever the tolerance.
        if ahead <= future_tolerance or ahead < _MINUTE:
            return None
        return RelativeSpan(*_whole_units(now, when, tz), future=True)
    if now - when < _MINUTE:
        return None
    return RelativeSpan(*_whole_units(when, now, tz))


def relative_time(
    when: datetime,
    now: datetime,
    *,
    zone: str | tzinfo = "UTC",
    future_tolerance: timedelta = DEFAULT_FUTURE_TOLERANCE,
) -> str:
    """Return how long ago ``when`` was, rounded down, in words.

    Args:
        when: The time to describe (aware).
        now: The present (aware); never read from the clock here.
        zone: The reader's zone, whose calendar counts months and years.
        future_tolerance: A time at most this far ahead of ``now`` reads "just now".

    Returns:
        ``"just now"``, ``"1 minute ago"``, ``"5 hours ago"``, ``"12 days ago"``,
        ``"2 months ago"``, ``"1 year ago"``, or ``"3 hours in the future"``.

    Raises:
        NaiveDatetimeError: ``when`` or ``now`` has no timezone.
        ConfigurationError: ``zone`` is not a known IANA zone name.
    """
    span = relative_span(when, now, zone=zone, future_tolerance=future_tolerance)
    if span is None:
        return "just now"
    words = _plural(span.count, span.unit)
    return f"{words} in the future" if span.future else f"{words} ago"


def _offset_text(offset: timedelta) -> str:
    sign = "-" if offset < timedelta(0) else "+"
    seconds = abs(offset) // timedelta(seconds=1)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"UTC{sign}{hours:02d}:{minutes:02d}"
    # Historical local mean times have offsets in seconds (Amsterdam was +00:19:32).
    return f"{text}:{seconds:02d}" if seconds else text


def exact_time(when: datetime, zone: str | tzinfo = "UTC") -> str:
    """Return ``when`` to the second in the display zone, naming the zone unambiguously.

    Args:
        when: The time to show (aware).
        zone: An IANA zone name or a ``tzinfo`` (default UTC).

    Returns:
        ``"2026-11-13 09:41:07 UTC"`` in UTC; elsewhere the zone's abbreviation and UTC offset,
        ``"2026-11-01 01:30:00 EDT (UTC-04:00)"``, or only the offset where the zone has no
        abbreviation of letters (``"2026-11-13 12:41:07 UTC+03:00"``).

    Raises:
        NaiveDatetimeError: ``when`` has no timezone.
        ConfigurationError: ``zone`` is not a known IANA zone name.
    """
    local = _local(ensure_utc(when, "when"), resolve_zone(zone))
    # Formatted by hand: strftime("%Y") drops the zero padding of years below 1000 on glibc.
    stamp = (
        f"{local.year:04d}-{local.month:02d}-{local.day:02d} "
        f"{local.hour:02d}:{local.minute:02d}:{local.second:02d}"
    )
    offset = local.utcoffset() or timedelta(0)
    name = local.tzname()
    if name == "UTC" and not offset:
        return f"{stamp} UTC"
    if not name or not name[0].isalpha() or name.startswith(("UTC+", "UTC-")):
        # Zones without a letter abbreviation report "+03" or "UTC+03:00": the offset says it.
        return f"{stamp} {_offset_text(offset)}"
    return f"{stamp} {name} ({_offset_text(offset)})"


def iso_time(when: datetime) -> str:
    """Return ``when`` in UTC as ISO 8601 to the second, as HTML's ``<time datetime>`` accepts.

    Raises:
        NaiveDatetimeError: ``when`` has no timezone.
    """
    return ensure_utc(when, "when").isoformat(timespec="seconds")


def time_text(
    when: datetime,
    now: datetime,
    *,
    zone: str | tzinfo = "UTC",
    future_tolerance: timedelta = DEFAULT_FUTURE_TOLERANCE,
) -> TimeText:
    """Return ``when`` as relative text, exact text and ISO value (see :class:`TimeText`).

    Args:
        when: The time to describe (aware).
        now: The present (aware).
        zone: The display zone, an IANA name or a ``tzinfo``.
        future_tolerance: A time at most this far ahead of ``now`` reads "just now".

    Raises:
        NaiveDatetimeError: ``when`` or ``now`` has no timezone.
        ConfigurationError: ``zone`` is not a known IANA zone name.
    """
    return TimeText(
        relative=relative_time(when, now, zone=zone, future_tolerance=future_tolerance),
        exact=exact_time(when, zone),
        iso=iso_time(when),
    )


def duration_text(duration: timedelta) -> str:
    """Return a policy duration in words: ``"1 hour"``, ``"7 days"``, ``"1 hour 30 minutes"``.

    Seconds below a minute are dropped unless the duration is shorter than a minute.
    """
    if duration < _MINUTE:
        return _plural(duration // timedelta(seconds=1), "second")
    days, rest = duration.days, timedelta(seconds=duration.seconds)
    hours, rest = divmod(rest, _HOUR)
    minutes = rest // _MINUTE
    parts = [
        _plural(count, unit)
        for count, unit in ((days, "day"), (hours, "hour"), (minutes, "minute"))
        if count
    ]
    return " ".join(parts)
