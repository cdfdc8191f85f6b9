"""Tests for incsync.timestamps' vendor encodings: epochs, .NET dates, zone-less UTC text."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incsync.errors import NaiveDatetimeError
from incsync.timestamps import (
    UTC,
    parse_dotnet_date,
    parse_epoch_millis,
    parse_epoch_seconds,
    parse_timestamp,
    to_micros,
)
from tests.strategies import aware_datetimes, utc_datetimes

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
NEW_YEAR = datetime(2024, 1, 1, tzinfo=timezone.utc)
FIRST = datetime.min.replace(tzinfo=timezone.utc)
LAST = datetime.max.replace(tzinfo=timezone.utc)


def _utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=timezone.utc)


def _millis(value: datetime) -> int:
    return to_micros(value) // 1000


# -- the samples the vendors send --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "parse", "expected"),
    [
        # Salesforce SystemModstamp: milliseconds and "+0000" without a colon.
        ("2021-11-06T17:38:40.000+0000", parse_timestamp, _utc(2021, 11, 6, 17, 38, 40)),
        # QuickBooks MetaData.LastUpdatedTime: the company's local offset, DST included.
        ("2015-07-24T10:35:08-07:00", parse_timestamp, _utc(2015, 7, 24, 17, 35, 8)),
        ("2015-01-24T10:35:08-08:00", parse_timestamp, _utc(2015, 1, 24, 18, 35, 8)),
        # HubSpot hs_lastmodifieddate.
        ("2024-09-13T20:23:03.333Z", parse_timestamp, _utc(2024, 9, 13, 20, 23, 3, 333000)),
        # Xero UpdatedDateUTC, plain and with the escaped slashes of raw JSON text.
        (
            "/Date(1541176290160+0000)/",
            parse_dotnet_date,
            _utc(2018, 11, 2, 16, 31, 30, 160000),
        ),
        (
            r"\/Date(1541176290160+0000)\/",
            parse_dotnet_date,
            _utc(2018, 11, 2, 16, 31, 30, 160000),
        ),
        ("/Date(1541176290160)/", parse_dotnet_date, _utc(2018, 11, 2, 16, 31, 30, 160000)),
        # The offset only names the writer's zone; the number is UTC milliseconds.
        (
            "/Date(1541176290160-0800)/",
            parse_dotnet_date,
            _utc(2018, 11, 2, 16, 31, 30, 160000),
        ),
        # Stripe created: epoch seconds.
        (1234567890, parse_epoch_seconds, _utc(2009, 2, 13, 23, 31, 30)),
        ("1234567890", parse_epoch_seconds, _utc(2009, 2, 13, 23, 31, 30)),
        (1234567890.5, parse_epoch_seconds, _utc(2009, 2, 13, 23, 31, 30, 500000)),
        ("1234567890.123456789", parse_epoch_seconds, _utc(2009, 2, 13, 23, 31, 30, 123456)),
        # HubSpot filter values and webhooks: epoch milliseconds, as numbers or text.
        (1704067200123, parse_epoch_millis, _utc(2024, 1, 1, 0, 0, 0, 123000)),
        ("1704067200123", parse_epoch_millis, _utc(2024, 1, 1, 0, 0, 0, 123000)),
        (" 1704067200123 ", parse_epoch_millis, _utc(2024, 1, 1, 0, 0, 0, 123000)),
        (-1, parse_epoch_millis, _utc(1969, 12, 31, 23, 59, 59, 999000)),
        ("-1.5", parse_epoch_seconds, _utc(1969, 12, 31, 23, 59, 58, 500000)),
    ],
)
def test_vendor_encodings_parse_to_aware_utc(
    value: object, parse: object, expected: datetime
) -> None:
    """Each vendor's wire format becomes the same instant as an aware UTC datetime."""
    parsed = parse(value)  # type: ignore[operator]
    assert parsed == expected
    assert parsed.tzinfo is UTC


def test_zone_less_text_is_utc_only_when_the_caller_says_so() -> None:
    """Pipedrive v1's "2023-02-22 08:27:54" is refused by default and UTC with assume_utc."""
    with pytest.raises(NaiveDatetimeError):
        parse_timestamp("2023-02-22 08:27:54", "update_time")
    parsed = parse_timestamp("2023-02-22 08:27:54", "update_time", assume_utc=True)
    assert parsed == datetime(2023, 2, 22, 8, 27, 54, tzinfo=timezone.utc)
    assert parsed.tzinfo is UTC


def test_assume_utc_leaves_values_with_a_zone_alone() -> None:
    """assume_utc only fills in a missing zone: an explicit offset still counts."""
    assert parse_timestamp("2024-01-01T05:30:00+05:30", assume_utc=True) == NEW_YEAR
    naive = datetime(2024, 1, 1)  # noqa: DTZ001 - the point of the test
    assert parse_timestamp(naive, assume_utc=True) == NEW_YEAR
    assert parse_timestamp("2024-01-01", assume_utc=True) == NEW_YEAR


# -- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["", "abc", "1e3", "1_000", "+5", "1.5", "١٢٣", 1.0, True, None, [1]]
)
def test_epoch_millis_refuses_anything_but_whole_milliseconds(value: object) -> None:
    """Floats, booleans, exponents, underscores, signs other than '-' and non-ASCII digits fail."""
    with pytest.raises(ValueError, match="epoch milliseconds"):
        parse_epoch_millis(value, "hs_lastmodifieddate")


@pytest.mark.parametrize("value", ["", "abc", "1e3", "1.", ".5", float("nan"), float("inf"), True])
def test_epoch_seconds_refuses_what_is_not_a_number_of_seconds(value: object) -> None:
    """Text that is not decimal seconds, non-finite floats and booleans fail with ValueError."""
    with pytest.raises(ValueError, match="created"):
        parse_epoch_seconds(value, "created")


@pytest.mark.parametrize(
    "value", ["/Date()/", "Date(1541176290160)", "/Date(1541176290160+00)/", "2018-11-02", 15411762]
)
def test_dotnet_date_refuses_other_text(value: object) -> None:
    """Only the /Date(ms[±hhmm])/ form is a .NET date."""
    with pytest.raises(ValueError, match=r"\.NET JSON date"):
        parse_dotnet_date(value, "UpdatedDateUTC")


@pytest.mark.parametrize(
    ("parse", "value"),
    [
        (parse_epoch_seconds, 10**12),
        (parse_epoch_seconds, "-99999999999"),
        (parse_epoch_seconds, 1e20),
        (parse_epoch_millis, 10**17),
        (parse_epoch_millis, "-99999999999999999"),
        (parse_dotnet_date, "/Date(999999999999999999)/"),
    ],
)
def test_numbers_outside_the_datetime_range_are_value_errors(parse: object, value: object) -> None:
    """An epoch number naming no representable datetime is a ValueError, not an OverflowError."""
    with pytest.raises(ValueError, match="outside the range"):
        parse(value)  # type: ignore[operator]


# -- round trips ---------------------------------------------------------------------------------


@given(
    utc_datetimes().map(lambda value: value.replace(microsecond=value.microsecond // 1000 * 1000))
)
def test_epoch_millis_round_trip_across_the_whole_range(value: datetime) -> None:
    """Any whole-millisecond instant written as epoch ms (number or text) parses back exactly."""
    millis = _millis(value)
    assert parse_epoch_millis(millis) == value
    assert parse_epoch_millis(str(millis)) == value
    assert parse_dotnet_date(f"/Date({millis}+0000)/") == value


@given(utc_datetimes())
def test_epoch_seconds_text_round_trips_to_the_microsecond(value: datetime) -> None:
    """Decimal seconds with six places parse back to the exact microsecond, before 1970 too."""
    micros = to_micros(value)
    sign = "-" if micros < 0 else ""
    whole, fraction = divmod(abs(micros), 1_000_000)
    assert parse_epoch_seconds(f"{sign}{whole}.{fraction:06d}") == value


@given(utc_datetimes().map(lambda value: value.replace(microsecond=0)))
def test_epoch_seconds_round_trip_as_integers(value: datetime) -> None:
    """Whole seconds as an int parse back exactly, on the fast path and off it."""
    assert parse_epoch_seconds(to_micros(value) // 1_000_000) == value


@given(st.integers(min_value=0, max_value=2**33 * 1000 - 1))
def test_the_fast_millisecond_path_agrees_with_exact_arithmetic(millis: int) -> None:
    """Where fromtimestamp's float is used, it gives exactly what integer arithmetic gives."""
    assert parse_epoch_millis(millis) == EPOCH + timedelta(milliseconds=millis)


@given(
    aware_datetimes().map(lambda value: value.replace(microsecond=value.microsecond // 1000 * 1000))
)
def test_salesforce_style_text_round_trips(value: datetime) -> None:
    """Any instant written as Salesforce does (ms, '+hhmm' without colon) parses back to itself."""
    iso = value.isoformat(timespec="milliseconds")
    text = iso[:-6] + iso[-6:].replace(":", "")
    assert parse_timestamp(text) == value


@given(utc_datetimes().map(lambda value: value.replace(microsecond=0)))
def test_zone_less_utc_text_round_trips_with_assume_utc(value: datetime) -> None:
    """Pipedrive-style 'YYYY-MM-DD HH:MM:SS' text read with assume_utc is the same UTC instant."""
    text = value.replace(tzinfo=None).isoformat(sep=" ")
    assert parse_timestamp(text, assume_utc=True) == value


def test_padded_zone_less_text_with_assume_utc() -> None:
    """Whitespace around zone-less text is tolerated on the slower path, still as UTC."""
    assert parse_timestamp(" 2024-01-01 00:00:00\n", assume_utc=True) == NEW_YEAR


def test_text_subclasses_parse_like_text() -> None:
    """A str subclass (an enum value, a markup string) parses like plain text."""

    class Stamp(str):
        __slots__ = ()

    assert parse_timestamp(Stamp("2024-01-01T00:00:00Z")) == NEW_YEAR
