"""Aware-UTC datetimes: the only kind of time that travels inside incsync.

Everything that enters the library is normalised here, at the edge: aware datetimes are moved to
UTC, naive ones are refused with a message that says how to fix the call, and the encodings
sources use are parsed. These run once per record, so each takes the fastest exact route:

============================================  ==============================================
Encoding (vendor)                             Parser
============================================  ==============================================
``2024-09-13T20:23:03.333Z`` (HubSpot)         :func:`parse_timestamp`
``2021-11-06T17:38:40.000+0000`` (Salesforce)  :func:`parse_timestamp`
``2015-07-24T10:35:08-07:00`` (QuickBooks)     :func:`parse_timestamp`
``2023-02-22 08:27:54``, UTC by contract       ``parse_timestamp(value, assume_utc=True)``
(Pipedrive v1)
``1234567890`` (Stripe)                        :func:`parse_epoch_seconds`
``"1704067200000"`` / ``1704067200000``        :func:`parse_epoch_millis`
(HubSpot filters, many webhooks)
``/Date(1541176290160+0000)/`` (Xero)          :func:`parse_dotnet_date`
============================================  ==============================================

ISO 8601 goes through ``datetime.fromisoformat`` with dateutil as the fallback; epoch numbers
through ``datetime.fromtimestamp`` where the float it takes is exact to the microsecond, and
through integer arithmetic elsewhere. bench/timestamps.py measures each against a bare
``fromisoformat``.
"""

from __future__ import annotations

import math
import re
import sys
from datetime import datetime, timedelta, timezone

from dateutil import parser as _dateutil_parser

from incsync.errors import NaiveDatetimeError

__all__ = [
    "EARLIEST",
    "LATEST",
    "UTC",
    "earlier",
    "ensure_utc",
    "from_micros",
    "later",
    "parse_dotnet_date",
    "parse_epoch_millis",
    "parse_epoch_seconds",
    "parse_timestamp",
    "to_micros",
    "utc_now",
]

UTC = timezone.utc
EARLIEST = datetime.min.replace(tzinfo=UTC)
"""The earliest aware UTC datetime: where a time moved back past datetime's range stops."""
LATEST = datetime.max.replace(tzinfo=UTC)
"""The latest aware UTC datetime: where a time moved on past datetime's range stops."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Python 3.11 reads "Z" and offsets without a colon itself; 3.10 needs a little help first.
_FROMISO_READS_Z = sys.version_info >= (3, 11)
# fromtimestamp takes a float. Below 2**33 seconds (the year 2242) a float's rounding error is under
# half a microsecond, so a whole number of milliseconds divided by 1000 comes back exact; larger
# and negative values (where some platforms' fromtimestamp also fails) take integer arithmetic.
_FLOAT_EXACT_SECONDS = 2**33
_FLOAT_EXACT_MILLIS = _FLOAT_EXACT_SECONDS * 1000
_fromtimestamp = datetime.fromtimestamp
_INTEGER_TEXT = re.compile(r"-?[0-9]+")
_DECIMAL_TEXT = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")
# .NET's JSON date: epoch milliseconds (always UTC) and an optional offset that only tells which
# zone the writer was in; the slashes arrive escaped when the JSON text is read raw.
_DOTNET_DATE = re.compile(r"\\?/Date\((-?[0-9]+)(?:[+-][0-9]{4})?\)\\?/")


def _fromisoformat_310(text: str) -> datetime:
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


_fromisoformat = datetime.fromisoformat if _FROMISO_READS_Z else _fromisoformat_310


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime (the default clock)."""
    return datetime.now(UTC)


def ensure_utc(value: datetime, field: str = "datetime") -> datetime:
    """Return ``value`` in UTC, refusing naive datetimes.

    Args:
        value: An aware datetime in any zone.
        field: What the value stands for, named in the error.

    Returns:
        The same instant with ``tzinfo=UTC``.

    Raises:
        NaiveDatetimeError: ``value`` has no timezone.
    """
    tz = value.tzinfo
    if tz is UTC:
        return value
    if tz is None or tz.utcoffset(value) is None:
        raise NaiveDatetimeError(field)
    return value.astimezone(UTC)


def parse_timestamp(
    value: object, field: str = "timestamp", *, assume_utc: bool = False
) -> datetime:
    """Parse a source's timestamp into an aware UTC datetime.

    Accepts aware datetimes and ISO 8601 / RFC 3339 text with a zone (``Z``, ``+00:00``, ``+0000``,
    local offsets). Text without a zone is refused unless the caller vouches for its zone: guessing
    it is how records get lost.

    Args:
        value: The raw value from the source.
        field: What the value stands for, named in the error.
        assume_utc: Read zone-less text (and naive datetimes) as UTC. Pass it only for a field the
            vendor documents as UTC without saying so in the value (Pipedrive v1's
            ``2023-02-22 08:27:54``).

    Returns:
        The instant as an aware UTC datetime.

    Raises:
        NaiveDatetimeError: The value carries no timezone and ``assume_utc`` is false.
        ValueError: The value is not a timestamp incsync can read.
    """
    # The common case first and with the fewest steps: this runs once per record.
    if type(value) is str:
        try:
            parsed = _fromisoformat(value)
        except ValueError:
            parsed = _parse_text(value, field)
    elif isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        parsed = _parse_text(value, field)
    else:
        raise ValueError(  # not TypeError: callers treat every unreadable timestamp alike
            f"{field} must be a timestamp string or datetime, not {type(value).__name__}"
        )
    tz = parsed.tzinfo
    if tz is UTC:
        return parsed
    if tz is None:
        if assume_utc:
            return _naive_as_utc(parsed, value)
        raise NaiveDatetimeError(field)
    # Vendors write "never" as year 1 or 9999 in a local zone; in UTC that leaves datetime's range.
    try:
        # A fixed offset, as text always gives, needs none of ensure_utc's checks.
        return parsed.astimezone(UTC) if type(tz) is timezone else ensure_utc(parsed, field)
    except OverflowError:
        raise ValueError(
            f"{field} {parsed.isoformat()} is out of range once moved to UTC"
        ) from None


def _parse_text(value: str, field: str) -> datetime:
    text = value.strip()
    try:
        return _fromisoformat(text)
    except ValueError:
        pass
    try:
        return _dateutil_parser.isoparse(text)
    except (ValueError, OverflowError):
        raise ValueError(f"{field} {value!r} is not an ISO 8601 timestamp") from None


def _naive_as_utc(parsed: datetime, value: object) -> datetime:
    # datetime.replace(tzinfo=...) costs several times a whole parse; reading the text again
    # with "+00:00" appended is cheaper, when fromisoformat honours the suffix (it drops it
    # after a date without a time, hence the check).
    if type(value) is str:
        try:
            again = _fromisoformat(value + "+00:00")
        except ValueError:
            pass
        else:
            if again.tzinfo is UTC:
                return again
    return datetime(
        parsed.year,
        parsed.month,
        parsed.day,
        parsed.hour,
        parsed.minute,
        parsed.second,
        parsed.microsecond,
        UTC,
    )


def parse_epoch_seconds(value: object, field: str = "timestamp") -> datetime:
    """Parse seconds since the Unix epoch (Stripe's ``created``) into an aware UTC datetime.

    Args:
        value: An int, a finite float, or their decimal text (``"1234567890"``,
            ``"1234567890.25"``); fractions finer than a microsecond are cut.
        field: What the value stands for, named in the error.

    Returns:
        The instant as an aware UTC datetime.

    Raises:
        ValueError: The value is not a number of seconds, or names no representable datetime.
    """
    if type(value) is int:
        if 0 <= value < _FLOAT_EXACT_SECONDS:
            return _fromtimestamp(value, UTC)
        return _epoch_plus(field, value, seconds=value)
    if isinstance(value, str):
        match = _DECIMAL_TEXT.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"{field} {value!r} is not a number of seconds since the epoch")
        sign, whole, fraction = match.groups()
        micros = int(whole) * 1_000_000 + int(((fraction or "") + "000000")[:6])
        return _epoch_plus(field, value, microseconds=-micros if sign else micros)
    if isinstance(value, float) and math.isfinite(value):
        return _epoch_plus(field, value, seconds=value)
    raise ValueError(f"{field} must be epoch seconds (int, float or text), not {value!r}")


def parse_epoch_millis(value: object, field: str = "timestamp") -> datetime:
    """Parse milliseconds since the Unix epoch into an aware UTC datetime.

    HubSpot filters and many webhooks send these as integers or as integer strings.

    Args:
        value: An int or its decimal text (``"1704067200000"``).
        field: What the value stands for, named in the error.

    Returns:
        The instant as an aware UTC datetime.

    Raises:
        ValueError: The value is not a whole number of milliseconds, or names no representable
            datetime.
    """
    if type(value) is int:
        millis = value
    elif isinstance(value, str) and (
        (value.isdigit() and value.isascii()) or _INTEGER_TEXT.fullmatch(value.strip())
    ):
        millis = int(value)
    else:
        raise ValueError(f"{field} must be epoch milliseconds (int or digits), not {value!r}")
    if 0 <= millis < _FLOAT_EXACT_MILLIS:
        return _fromtimestamp(millis / 1000, UTC)
    return _epoch_plus(field, value, milliseconds=millis)


def parse_dotnet_date(value: object, field: str = "timestamp") -> datetime:
    r"""Parse a .NET JSON date such as Xero's ``/Date(1541176290160+0000)/``.

    The number is milliseconds since the epoch in UTC whatever the offset after it says (the
    offset only records the writer's zone), so the offset is checked for form and then ignored.
    Escaped slashes (``\/Date(…)\/``, as in the raw JSON text) are accepted too.

    Args:
        value: The text from the source.
        field: What the value stands for, named in the error.

    Returns:
        The instant as an aware UTC datetime.

    Raises:
        ValueError: The value is not a .NET JSON date, or names no representable datetime.
    """
    match = _DOTNET_DATE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{field} {value!r} is not a .NET JSON date like /Date(1541176290160)/")
    millis = int(match.group(1))
    if 0 <= millis < _FLOAT_EXACT_MILLIS:
        return _fromtimestamp(millis / 1000, UTC)
    return _epoch_plus(field, value, milliseconds=millis)


def _epoch_plus(
    field: str,
    value: object,
    *,
    seconds: float = 0,
    milliseconds: int = 0,
    microseconds: int = 0,
) -> datetime:
    try:
        return _EPOCH + timedelta(
            seconds=seconds, milliseconds=milliseconds, microseconds=microseconds
        )
    except OverflowError:
        raise ValueError(f"{field} {value!r} is outside the range of datetime") from None


def to_micros(value: datetime) -> int:
    """Return microseconds since the Unix epoch for an aware datetime (exact, sortable)."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    """Return the aware UTC datetime for microseconds since the Unix epoch."""
    return _EPOCH + timedelta(microseconds=micros)


def earlier(moment: datetime, span: timedelta) -> datetime:
    """Return ``moment - span``, stopped at :data:`EARLIEST` or :data:`LATEST`, never raising.

    Sources write "never" as year 1 (.NET's ``DateTime.MinValue``) and hosts may set durations of
    ``timedelta.max``; a lookback or lag before year 1 means "from the beginning", not an error.

    Args:
        moment: An aware datetime.
        span: Any duration, negative ones included (those move ``moment`` later).

    Returns:
        The moved instant, in UTC.
    """
    return _saturated(to_micros(moment) - span // _MICROSECOND)


def later(moment: datetime, span: timedelta) -> datetime:
    """Return ``moment + span``, stopped at :data:`EARLIEST` or :data:`LATEST`, never raising.

    A lease of ``timedelta.max`` expires at the end of datetime's range instead of failing.

    Args:
        moment: An aware datetime.
        span: Any duration, negative ones included (those move ``moment`` earlier).

    Returns:
        The moved instant, in UTC.
    """
    return _saturated(to_micros(moment) + span // _MICROSECOND)


_EARLIEST_MICROS = to_micros(EARLIEST)
_LATEST_MICROS = to_micros(LATEST)


def _saturated(micros: int) -> datetime:
    # Integer microseconds cannot overflow, unlike datetime and timedelta arithmetic (and the
    # negation of timedelta.max), so the clamp is exact at both ends.
    return from_micros(min(max(micros, _EARLIEST_MICROS), _LATEST_MICROS))
