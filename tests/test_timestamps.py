"""Tests for incsync.timestamps: aware-UTC normalisation, parsing and microsecond encoding."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incsync.errors import NaiveDatetimeError
from incsync.timestamps import UTC, ensure_utc, from_micros, parse_timestamp, to_micros, utc_now
from tests.strategies import aware_datetimes, utc_datetimes

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
NEW_YEAR = datetime(2024, 1, 1, tzinfo=timezone.utc)
IST = timezone(timedelta(hours=5, minutes=30))


class _OffsetlessZone(tzinfo):
    """A tzinfo that does not know its offset: the datetime is naive in all but name."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str | None:
        return None


def test_utc_now_is_aware_utc_and_current() -> None:
    """utc_now returns the current instant with tzinfo UTC."""
    before = datetime.now(timezone.utc)
    now = utc_now()
    after = datetime.now(timezone.utc)
    assert now.tzinfo is UTC
    assert before <= now <= after


def test_ensure_utc_returns_utc_values_unchanged() -> None:
    """A datetime already in UTC comes back as the very same object."""
    assert ensure_utc(NEW_YEAR) is NEW_YEAR


def test_ensure_utc_moves_other_offsets_to_utc() -> None:
    """An aware datetime in another offset becomes the same instant with tzinfo UTC."""
    local = datetime(2024, 1, 1, 5, 30, tzinfo=IST)
    converted = ensure_utc(local)
    assert converted.tzinfo is UTC
    assert converted == NEW_YEAR
    assert (converted.hour, converted.minute) == (0, 0)


def test_ensure_utc_refuses_naive_and_names_the_field() -> None:
    """A naive datetime raises NaiveDatetimeError naming the field and how to fix the call."""
    with pytest.raises(NaiveDatetimeError) as caught:
        ensure_utc(datetime(2024, 1, 1), "window start")  # noqa: DTZ001 - the point of the test
    assert caught.value.field == "window start"
    assert "window start" in str(caught.value)
    assert "timezone" in str(caught.value)


def test_ensure_utc_treats_a_zone_without_offset_as_naive() -> None:
    """A tzinfo whose utcoffset() is None gives no instant, so it is refused like a naive value."""
    with pytest.raises(NaiveDatetimeError):
        ensure_utc(datetime(2024, 1, 1, tzinfo=_OffsetlessZone()))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-01T00:00:00Z", NEW_YEAR),
        ("2024-01-01T00:00:00z", NEW_YEAR),
        ("2024-01-01T00:00:00+00:00", NEW_YEAR),
        ("2024-01-01T00:00:00-00:00", NEW_YEAR),
        ("2024-01-01T00:00:00+0000", NEW_YEAR),
        ("2024-01-01 00:00:00+00:00", NEW_YEAR),
        ("  2024-01-01T00:00:00Z\n", NEW_YEAR),
        ("2024-01-01T05:30:00+05:30", NEW_YEAR),
        ("2023-12-31T19:00:00-05:00", NEW_YEAR),
        ("2024-01-01T00:00:00.250Z", NEW_YEAR + timedelta(milliseconds=250)),
        ("2024-01-01T00:00:00.000001+00:00", NEW_YEAR + timedelta(microseconds=1)),
    ],
)
def test_parse_timestamp_reads_iso_8601_with_a_zone(text: str, expected: datetime) -> None:
    """ISO 8601 / RFC 3339 text with Z, z, +HH:MM, +HHMM or a local offset parses to UTC."""
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


def test_parse_timestamp_accepts_aware_datetimes() -> None:
    """An aware datetime is accepted as is and moved to UTC."""
    parsed = parse_timestamp(datetime(2024, 1, 1, 5, 30, tzinfo=IST))
    assert parsed == NEW_YEAR
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize("text", ["2024-01-01T00:00:00", "2024-01-01 12:30", "2024-01-01"])
def test_parse_timestamp_refuses_text_without_a_zone(text: str) -> None:
    """Text without a zone is refused with NaiveDatetimeError rather than guessed."""
    with pytest.raises(NaiveDatetimeError) as caught:
        parse_timestamp(text, "updated_at")
    assert caught.value.field == "updated_at"


def test_parse_timestamp_refuses_naive_datetimes() -> None:
    """A naive datetime object is refused like naive text."""
    with pytest.raises(NaiveDatetimeError):
        parse_timestamp(datetime(2024, 1, 1))  # noqa: DTZ001 - the point of the test


@pytest.mark.parametrize(
    "text", ["", "   ", "yesterday", "2024-13-01T00:00:00Z", "2024-01-01T25:00:00Z", "1704067200"]
)
def test_parse_timestamp_refuses_unreadable_text(text: str) -> None:
    """Text that is no ISO 8601 timestamp raises a plain ValueError naming field and value."""
    with pytest.raises(ValueError, match="is not an ISO 8601 timestamp") as caught:
        parse_timestamp(text, "modified")
    assert not isinstance(caught.value, NaiveDatetimeError)
    assert str(caught.value).startswith("modified ")
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize(
    ("value", "type_name"),
    [(1704067200, "int"), (1.5, "float"), (None, "NoneType"), (b"x", "bytes")],
)
def test_parse_timestamp_refuses_other_types(value: object, type_name: str) -> None:
    """Numbers, None and bytes are refused with a ValueError naming the type."""
    with pytest.raises(
        ValueError, match=f"must be a timestamp string or datetime, not {type_name}"
    ):
        parse_timestamp(value)


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00"])
def test_parse_timestamp_refuses_instants_outside_the_datetime_range(text: str) -> None:
    """A valid ISO timestamp whose UTC instant lies outside datetime's range raises ValueError.

    .NET's DateTime.MinValue serialised in a local zone ("0001-01-01T00:00:00+01:00") and "never"
    sentinels like 9999-12-31 in a negative offset are real vendor output. parse_timestamp
    documents ValueError for what it cannot read; callers (record_from_raw) rely on that to set
    the record aside instead of failing the whole read.
    """
    with pytest.raises(ValueError, match=r"out of range|not an ISO 8601"):
        parse_timestamp(text)


@given(aware_datetimes())
def test_parse_timestamp_round_trips_isoformat_in_any_offset(value: datetime) -> None:
    """isoformat() of an aware datetime in any offset parses back to the same instant, in UTC."""
    parsed = parse_timestamp(value.isoformat())
    assert parsed == value
    assert parsed.tzinfo is UTC
    assert parse_timestamp(value) == value


@given(aware_datetimes())
def test_ensure_utc_keeps_the_instant(value: datetime) -> None:
    """ensure_utc never changes the instant, only the representation."""
    converted = ensure_utc(value)
    assert converted == value
    assert converted.utcoffset() == timedelta(0)


def test_to_micros_counts_from_the_unix_epoch() -> None:
    """to_micros is 0 at the epoch, exact to the microsecond, and negative before it."""
    assert to_micros(EPOCH) == 0
    assert to_micros(EPOCH + timedelta(microseconds=1)) == 1
    assert to_micros(EPOCH - timedelta(microseconds=1)) == -1
    assert to_micros(NEW_YEAR) == 1_704_067_200_000_000


def test_to_micros_is_the_same_for_the_same_instant_in_any_offset() -> None:
    """The encoding depends on the instant, not on the offset it is written in."""
    assert to_micros(datetime(2024, 1, 1, 5, 30, tzinfo=IST)) == to_micros(NEW_YEAR)


def test_from_micros_returns_aware_utc() -> None:
    """from_micros returns an aware UTC datetime."""
    decoded = from_micros(1_704_067_200_000_000)
    assert decoded == NEW_YEAR
    assert decoded.tzinfo is UTC


@given(utc_datetimes())
def test_micros_round_trip_every_utc_datetime(value: datetime) -> None:
    """from_micros(to_micros(t)) == t across the whole datetime range."""
    assert from_micros(to_micros(value)) == value


@given(
    st.integers(
        min_value=to_micros(datetime.min.replace(tzinfo=timezone.utc)),
        max_value=to_micros(datetime.max.replace(tzinfo=timezone.utc)),
    )
)
def test_micros_round_trip_every_representable_integer(micros: int) -> None:
    """to_micros(from_micros(n)) == n for every n that names a datetime."""
    assert to_micros(from_micros(micros)) == micros


@given(aware_datetimes(), aware_datetimes())
def test_to_micros_preserves_order(first: datetime, second: datetime) -> None:
    """Micros sort exactly like the instants they encode (stores index on them)."""
    assert (to_micros(first) < to_micros(second)) == (first < second)
    assert (to_micros(first) == to_micros(second)) == (first == second)
