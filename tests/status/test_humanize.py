"""Relative and exact times: rounding, units, calendars, zones and DST."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from incsync.errors import ConfigurationError, NaiveDatetimeError
from incsync.humanize import (
    TimeText,
    duration_text,
    exact_time,
    iso_time,
    relative_time,
    resolve_zone,
    time_text,
)

UTC = timezone.utc
NOW = datetime(2026, 11, 13, 9, 41, 7, tzinfo=UTC)


def _ago(**elapsed: float) -> str:
    return relative_time(NOW - timedelta(**elapsed), NOW)


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [
        (timedelta(0), "just now"),
        (timedelta(seconds=59.999), "just now"),
        (timedelta(seconds=60), "1 minute ago"),
        (timedelta(seconds=119), "1 minute ago"),
        (timedelta(minutes=2), "2 minutes ago"),
        (timedelta(minutes=59, seconds=59), "59 minutes ago"),
        (timedelta(minutes=60), "1 hour ago"),
        (timedelta(minutes=119, seconds=59), "1 hour ago"),
        (timedelta(minutes=120), "2 hours ago"),
        (timedelta(hours=2, minutes=59, seconds=59), "2 hours ago"),
        (timedelta(hours=3), "3 hours ago"),
        (timedelta(hours=23, minutes=59, seconds=59), "23 hours ago"),
        (timedelta(hours=24), "1 day ago"),
        (timedelta(hours=47, minutes=59), "1 day ago"),
        (timedelta(hours=48), "2 days ago"),
        (timedelta(days=6, hours=23, minutes=59), "6 days ago"),
        (timedelta(days=7), "7 days ago"),
        (timedelta(days=12), "12 days ago"),
    ],
    ids=str,
)
def test_relative_time_rounds_down_at_each_unit_boundary(elapsed: timedelta, expected: str) -> None:
    """Minutes, hours and days count elapsed time and round down, with singular and plural."""
    assert relative_time(NOW - elapsed, NOW) == expected


@pytest.mark.parametrize(
    ("when", "now", "expected"),
    [
        # April has 30 days: 29 days back is still days, 30 is the first whole month.
        (datetime(2026, 4, 2, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC), "29 days ago"),
        (datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC), "1 month ago"),
        # March has 31: 30 days back from the 31st is not yet a calendar month.
        (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC), "30 days ago"),
        (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC), "1 month ago"),
        # February: 28 days make a month in a common year, 29 in a leap year.
        (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC), "1 month ago"),
        (datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 2, 29, tzinfo=UTC), "28 days ago"),
        (datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC), "1 month ago"),
        # The 31st plus a month ends on the last day of a shorter month.
        (datetime(2026, 1, 31, tzinfo=UTC), datetime(2026, 2, 28, tzinfo=UTC), "1 month ago"),
        (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC), "2 months ago"),
        # 364 days is 11 months; 365 days is the first whole year (2026 is a common year).
        (datetime(2026, 1, 2, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC), "11 months ago"),
        (datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC), "1 year ago"),
        # Over a leap day 365 days is still 11 months; a year takes 366.
        (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 12, 31, tzinfo=UTC), "11 months ago"),
        (datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC), "1 year ago"),
        # A leap day's anniversary in a common year is the 28th of February.
        (datetime(2024, 2, 29, tzinfo=UTC), datetime(2025, 2, 28, tzinfo=UTC), "1 year ago"),
        (datetime(2024, 2, 29, tzinfo=UTC), datetime(2025, 2, 27, tzinfo=UTC), "11 months ago"),
        (datetime(2024, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), "2 years ago"),
    ],
    ids=lambda value: value if isinstance(value, str) else value.date().isoformat(),
)
def test_relative_time_counts_calendar_months_and_years(
    when: datetime, now: datetime, expected: str
) -> None:
    """From 28 days on, whole calendar months and years count, as dateutil's relativedelta."""
    assert relative_time(when, now) == expected


def test_months_follow_the_display_zones_calendar() -> None:
    """Months are counted on the reader's calendar: 1 May to 31 May in Tokyo is not yet a month.

    The same instants in UTC are 30 April 23:00 to 30 May 23:30, a whole calendar month.
    """
    when = datetime(2026, 4, 30, 23, 0, tzinfo=UTC)  # 1 May 08:00 in Tokyo
    now = datetime(2026, 5, 30, 23, 30, tzinfo=UTC)  # 31 May 08:30 in Tokyo
    assert relative_time(when, now, zone="Asia/Tokyo") == "30 days ago"
    assert relative_time(when, now) == "1 month ago"


@pytest.mark.parametrize(
    ("ahead", "expected"),
    [
        (timedelta(seconds=1), "just now"),
        (timedelta(seconds=59), "just now"),
        (timedelta(minutes=5), "just now"),
        (timedelta(minutes=5, seconds=1), "5 minutes in the future"),
        (timedelta(minutes=61), "1 hour in the future"),
        (timedelta(hours=3), "3 hours in the future"),
        (timedelta(days=2), "2 days in the future"),
        (timedelta(days=800), "2 years in the future"),
    ],
    ids=str,
)
def test_future_times_read_just_now_within_tolerance_and_say_so_beyond(
    ahead: timedelta, expected: str
) -> None:
    """Small future skew reads "just now"; a time well in the future says so plainly."""
    assert relative_time(NOW + ahead, NOW) == expected


def test_future_tolerance_is_configurable_but_under_a_minute_is_always_just_now() -> None:
    """With no tolerance a time 2 minutes ahead is in the future; 30 seconds has no unit to name."""
    assert relative_time(NOW + timedelta(minutes=2), NOW, future_tolerance=timedelta(0)) == (
        "2 minutes in the future"
    )
    assert relative_time(NOW + timedelta(seconds=30), NOW, future_tolerance=timedelta(0)) == (
        "just now"
    )


@pytest.mark.parametrize(
    ("elapsed", "one", "two"),
    [
        ("minutes", "1 minute ago", "2 minutes ago"),
        ("hours", "1 hour ago", "2 hours ago"),
        ("days", "1 day ago", "2 days ago"),
    ],
)
def test_singular_and_plural_for_one_and_two_of_each_elapsed_unit(
    elapsed: str, one: str, two: str
) -> None:
    """One of a unit is singular, two are plural."""
    assert _ago(**{elapsed: 1}) == one
    assert _ago(**{elapsed: 2}) == two


def test_singular_and_plural_for_months_and_years() -> None:
    """One month or year is singular, two are plural."""
    now = datetime(2026, 11, 13, tzinfo=UTC)
    assert relative_time(datetime(2026, 10, 13, tzinfo=UTC), now) == "1 month ago"
    assert relative_time(datetime(2026, 9, 13, tzinfo=UTC), now) == "2 months ago"
    assert relative_time(datetime(2025, 11, 13, tzinfo=UTC), now) == "1 year ago"
    assert relative_time(datetime(2024, 11, 13, tzinfo=UTC), now) == "2 years ago"


def test_relative_time_compares_instants_whatever_their_zones() -> None:
    """The same instant written in two zones is "just now" apart."""
    berlin = NOW.astimezone(ZoneInfo("Europe/Berlin"))
    assert relative_time(berlin, NOW) == "just now"
    assert relative_time(NOW - timedelta(hours=5), berlin) == "5 hours ago"


def test_elapsed_units_ignore_dst_changes_of_the_display_zone() -> None:
    """Across the autumn DST change, 24 elapsed hours are one day though the wall clock says 23."""
    when = datetime(2026, 10, 31, 12, 0, tzinfo=UTC)
    now = when + timedelta(hours=24)
    assert relative_time(when, now, zone="America/New_York") == "1 day ago"
    assert relative_time(now - timedelta(hours=1), now, zone="America/New_York") == "1 hour ago"


@pytest.mark.parametrize(
    ("when", "zone", "expected"),
    [
        (NOW, "UTC", "2026-11-13 09:41:07 UTC"),
        (NOW.replace(microsecond=999_999), "UTC", "2026-11-13 09:41:07 UTC"),
        (NOW, "Europe/Berlin", "2026-11-13 10:41:07 CET (UTC+01:00)"),
        (NOW, "Asia/Kolkata", "2026-11-13 15:11:07 IST (UTC+05:30)"),
        (NOW, "America/St_Johns", "2026-11-13 06:11:07 NST (UTC-03:30)"),
        (NOW, "Asia/Dubai", "2026-11-13 13:41:07 UTC+04:00"),
        (NOW, timezone(timedelta(hours=-2)), "2026-11-13 07:41:07 UTC-02:00"),
        (NOW, ZoneInfo("Pacific/Chatham"), "2026-11-13 23:26:07 UTC+13:45"),
        (
            datetime(1900, 1, 1, tzinfo=UTC),
            "Europe/Amsterdam",
            "1900-01-01 00:19:32 AMT (UTC+00:19:32)",
        ),
        (datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC), "UTC", "0999-01-02 03:04:05 UTC"),
    ],
    ids=str,
)
def test_exact_time_names_the_zone(when: datetime, zone: str, expected: str) -> None:
    """Exact text is to the second in the display zone, with its abbreviation and offset."""
    assert exact_time(when, zone) == expected


@pytest.mark.parametrize(
    ("when", "zone", "expected"),
    [
        # New York, end of DST: 01:30 happens twice, once in EDT and once in EST.
        (
            datetime(2026, 11, 1, 5, 30, tzinfo=UTC),
            "America/New_York",
            "2026-11-01 01:30:00 EDT (UTC-04:00)",
        ),
        (
            datetime(2026, 11, 1, 6, 30, tzinfo=UTC),
            "America/New_York",
            "2026-11-01 01:30:00 EST (UTC-05:00)",
        ),
        # New York, start of DST: 02:00-03:00 does not exist.
        (
            datetime(2026, 3, 8, 6, 59, 59, tzinfo=UTC),
            "America/New_York",
            "2026-03-08 01:59:59 EST (UTC-05:00)",
        ),
        (
            datetime(2026, 3, 8, 7, 0, tzinfo=UTC),
            "America/New_York",
            "2026-03-08 03:00:00 EDT (UTC-04:00)",
        ),
        # Berlin, end of DST: 02:30 twice.
        (
            datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
            "Europe/Berlin",
            "2026-10-25 02:30:00 CEST (UTC+02:00)",
        ),
        (
            datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
            "Europe/Berlin",
            "2026-10-25 02:30:00 CET (UTC+01:00)",
        ),
        # Lord Howe Island moves by half an hour.
        (
            datetime(2026, 4, 4, 14, 45, tzinfo=UTC),
            "Australia/Lord_Howe",
            "2026-04-05 01:45:00 UTC+11:00",
        ),
        (
            datetime(2026, 4, 4, 15, 15, tzinfo=UTC),
            "Australia/Lord_Howe",
            "2026-04-05 01:45:00 UTC+10:30",
        ),
    ],
    ids=str,
)
def test_exact_time_is_unambiguous_across_dst(when: datetime, zone: str, expected: str) -> None:
    """A wall-clock time that happens twice reads differently each time round."""
    assert exact_time(when, zone) == expected


def test_the_repeated_hour_gives_two_distinct_exact_texts() -> None:
    """Every instant of the repeated hour in New York has its own text."""
    start = datetime(2026, 11, 1, 5, 0, tzinfo=UTC)
    texts = {exact_time(start + timedelta(minutes=m), "America/New_York") for m in range(120)}
    assert len(texts) == 120


def test_iso_time_is_utc_to_the_second() -> None:
    """ISO text is UTC, to the second, valid in an HTML datetime attribute."""
    assert iso_time(NOW.replace(microsecond=123_456)) == "2026-11-13T09:41:07+00:00"
    berlin = NOW.astimezone(ZoneInfo("Europe/Berlin"))
    assert iso_time(berlin) == "2026-11-13T09:41:07+00:00"


def test_time_text_bundles_relative_exact_and_iso() -> None:
    """time_text gives the three renderings of one time together."""
    when = NOW - timedelta(days=12)
    assert time_text(when, NOW, zone="UTC") == TimeText(
        relative="12 days ago", exact="2026-11-01 09:41:07 UTC", iso="2026-11-01T09:41:07+00:00"
    )


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "", "../../etc/passwd", "utc+2"])
def test_unknown_zone_names_are_a_configuration_error(name: str) -> None:
    """A zone that is not an IANA name is refused with a message naming it."""
    with pytest.raises(ConfigurationError, match="IANA zone name"):
        exact_time(NOW, name)
    with pytest.raises(ConfigurationError):
        resolve_zone(name)


def test_naive_datetimes_are_refused_with_a_clear_error() -> None:
    """Every helper refuses naive input and names the argument."""
    naive = datetime(2026, 11, 13, 9, 41, 7)  # noqa: DTZ001 - the naive input under test
    with pytest.raises(NaiveDatetimeError, match="when is a naive datetime"):
        relative_time(naive, NOW)
    with pytest.raises(NaiveDatetimeError, match="now is a naive datetime"):
        relative_time(NOW, naive)
    with pytest.raises(NaiveDatetimeError, match="when"):
        exact_time(naive)
    with pytest.raises(NaiveDatetimeError, match="when"):
        time_text(naive, NOW)


def test_resolve_zone_passes_tzinfo_through_and_caches_names() -> None:
    """A tzinfo is used as given; a name is looked up once."""
    offset = timezone(timedelta(hours=3))
    assert resolve_zone(offset) is offset
    assert resolve_zone("Europe/Berlin") is resolve_zone("Europe/Berlin")
    assert resolve_zone("UTC") is UTC


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        (timedelta(hours=1), "1 hour"),
        (timedelta(hours=3), "3 hours"),
        (timedelta(days=7), "7 days"),
        (timedelta(days=1), "1 day"),
        (timedelta(minutes=90), "1 hour 30 minutes"),
        (timedelta(minutes=1), "1 minute"),
        (timedelta(seconds=30), "30 seconds"),
        (timedelta(days=2, hours=1, minutes=2, seconds=3), "2 days 1 hour 2 minutes"),
    ],
    ids=str,
)
def test_duration_text_spells_policy_durations(duration: timedelta, expected: str) -> None:
    """Policy durations read as words, largest unit first."""
    assert duration_text(duration) == expected


def test_times_at_the_ends_of_the_calendar_fall_back_to_utc() -> None:
    """Where a zone's offset would leave datetime's range, the exact time is shown in UTC."""
    first = datetime(1, 1, 1, tzinfo=UTC)
    last = datetime(9999, 12, 31, 23, 0, tzinfo=UTC)
    assert exact_time(first, "America/New_York") == "0001-01-01 00:00:00 UTC"
    assert exact_time(last, "Asia/Tokyo") == "9999-12-31 23:00:00 UTC"
    assert relative_time(first, last, zone="Asia/Tokyo") == "9998 years ago"
