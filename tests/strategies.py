"""Hypothesis strategies shared by the test suite: aware datetimes, record ids, records, cursors."""

from __future__ import annotations

import string
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from incsync.cursor import Cursor
from incsync.records import Record

__all__ = [
    "BASE_TIME",
    "aware_datetimes",
    "clustered_datetimes",
    "cursors",
    "fixed_offsets",
    "payloads",
    "raw_records",
    "record_ids",
    "records",
    "secrets",
    "utc_datetimes",
]

UTC = timezone.utc

# st.datetimes takes naive bounds. A day of margin at each end keeps every generated value, in any
# offset, convertible to UTC without overflowing datetime's range.
_MIN_NAIVE = datetime(1, 1, 2)  # noqa: DTZ001 - Hypothesis bounds are naive by design
_MAX_NAIVE = datetime(9999, 12, 30)  # noqa: DTZ001 - Hypothesis bounds are naive by design
_FIRST_NAIVE = datetime(1, 1, 1)  # noqa: DTZ001 - Hypothesis bounds are naive by design
_LAST_NAIVE = datetime(9999, 12, 31, 23, 59, 59, 999_999)  # noqa: DTZ001 - as above

BASE_TIME = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
"""A fixed, realistic moment that clustered strategies group their values around."""

# Credential-shaped characters: no whitespace and no "*" (the mask itself), see ``secrets``.
_SECRET_ALPHABET = string.ascii_letters + string.digits + "-_.~+/=!#$%&?@:"


def fixed_offsets() -> st.SearchStrategy[timezone]:
    """Any whole-minute UTC offset a source may use, UTC itself included (-23:59 to +23:59)."""
    return st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
        lambda minutes: timezone(timedelta(minutes=minutes))
    )


def aware_datetimes() -> st.SearchStrategy[datetime]:
    """Aware datetimes in any fixed offset, across (almost) the whole range of ``datetime``."""
    return st.datetimes(min_value=_MIN_NAIVE, max_value=_MAX_NAIVE, timezones=fixed_offsets())


def utc_datetimes(
    min_value: datetime = _FIRST_NAIVE, max_value: datetime = _LAST_NAIVE
) -> st.SearchStrategy[datetime]:
    """Aware datetimes with ``tzinfo=UTC`` between the given naive bounds."""
    return st.datetimes(min_value=min_value, max_value=max_value, timezones=st.just(UTC))


def clustered_datetimes(spread_seconds: int = 5) -> st.SearchStrategy[datetime]:
    """UTC datetimes a few whole seconds apart around :data:`BASE_TIME`, so ties are common.

    Second-precision sources stamp many records alike; this is the case that breaks cursors.
    """
    return st.integers(min_value=0, max_value=spread_seconds).map(
        lambda offset: BASE_TIME + timedelta(seconds=offset)
    )


def record_ids() -> st.SearchStrategy[str]:
    """Non-empty record ids: numeric ones (as sources send integers) and short text ones."""
    return st.one_of(
        st.integers(min_value=0, max_value=10**12).map(str),
        st.text(alphabet=string.ascii_letters + string.digits + "-_:", min_size=1, max_size=12),
    )


def payloads() -> st.SearchStrategy[dict[str, Any]]:
    """Small JSON-like payloads."""
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10))
    return st.dictionaries(st.text(min_size=1, max_size=8), scalars, max_size=4)


def records(
    times: st.SearchStrategy[datetime] | None = None,
    ids: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[Record]:
    """Valid records; by default with clustered timestamps so (updated_at, id) ties occur."""
    return st.builds(
        Record,
        id=record_ids() if ids is None else ids,
        updated_at=clustered_datetimes() if times is None else times,
        payload=payloads(),
        deleted=st.booleans(),
    )


def raw_records(
    times: st.SearchStrategy[datetime] | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    """Raw source records ``{"id": ..., "updated_at": <ISO text>, ...}``, integer or text ids."""
    return st.fixed_dictionaries(
        {
            "id": st.one_of(st.integers(min_value=0, max_value=10**9), record_ids()),
            "updated_at": (clustered_datetimes() if times is None else times).map(
                datetime.isoformat
            ),
        },
        optional={"name": st.text(max_size=10), "amount": st.integers()},
    )


def cursors(times: st.SearchStrategy[datetime] | None = None) -> st.SearchStrategy[Cursor]:
    """Cursors, including the ``""`` id that stands for "before every id at this time"."""
    return st.builds(
        Cursor,
        updated_at=clustered_datetimes() if times is None else times,
        record_id=st.one_of(st.just(""), record_ids()),
    )


def secrets() -> st.SearchStrategy[str]:
    """Credential values long enough to be masked verbatim (4+ characters, no spaces, no ``*``)."""
    return st.text(alphabet=_SECRET_ALPHABET, min_size=4, max_size=24)
