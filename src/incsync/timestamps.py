"""Aware-UTC datetimes: the only kind of time that travels inside incsync.

Everything that enters the library is normalised here, at the edge: aware datetimes are moved to
UTC, naive ones are refused with a message that says how to fix the call, and the text encodings
sources use are parsed. The fast path (ISO 8601 as most APIs emit it) is ``datetime.fromisoformat``;
dateutil handles the rest.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone

from dateutil import parser as _dateutil_parser

from incsync.errors import NaiveDatetimeError

__all__ = ["UTC", "ensure_utc", "from_micros", "parse_timestamp", "to_micros", "utc_now"]

UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Python 3.11 reads "Z" and offsets without a colon itself; 3.10 needs a little help first.
_FROMISO_READS_Z = sys.version_info >= (3, 11)


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


def parse_timestamp(value: object, field: str = "timestamp") -> datetime:
    """Parse a source's timestamp into an aware UTC datetime.

    Accepts aware datetimes and ISO 8601 / RFC 3339 text with a zone (``Z``, ``+00:00``, ``+0000``,
    local offsets). Text without a zone is refused: guessing its zone is how records get lost.

    Args:
        value: The raw value from the source.
        field: What the value stands for, named in the error.

    Returns:
        The instant as an aware UTC datetime.

    Raises:
        NaiveDatetimeError: The value carries no timezone.
        ValueError: The value is not a timestamp incsync can read.
    """
    if isinstance(value, datetime):
        return _in_range_utc(value, field)
    if not isinstance(value, str):
        raise ValueError(  # noqa: TRY004 - callers treat every unreadable timestamp alike
            f"{field} must be a timestamp string or datetime, not {type(value).__name__}"
        )
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text if _FROMISO_READS_Z else _iso_for_310(text))
    except ValueError:
        try:
            parsed = _dateutil_parser.isoparse(text)
        except (ValueError, OverflowError):
            raise ValueError(f"{field} {value!r} is not an ISO 8601 timestamp") from None
    return _in_range_utc(parsed, field)


def _in_range_utc(value: datetime, field: str) -> datetime:
    # Vendors write "never" as year 1 or 9999 in a local zone; in UTC that leaves datetime's range.
    try:
        return ensure_utc(value, field)
    except OverflowError:
        raise ValueError(f"{field} {value.isoformat()} is out of range once moved to UTC") from None


def _iso_for_310(text: str) -> str:
    if text.endswith(("Z", "z")):
        return text[:-1] + "+00:00"
    return text


def to_micros(value: datetime) -> int:
    """Return microseconds since the Unix epoch for an aware datetime (exact, sortable)."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    """Return the aware UTC datetime for microseconds since the Unix epoch."""
    return _EPOCH + timedelta(microseconds=micros)
