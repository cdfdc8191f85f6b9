"""How a source writes a time, parsed from configuration.

Shared by the configurable connectors (:mod:`incsync.connectors.rest` reads answers with both,
:mod:`incsync.connectors.files` reads its updated-at column with :class:`TimestampFormat`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

import attrs

from incsync.errors import ConfigurationError
from incsync.timestamps import (
    UTC,
    parse_epoch_millis,
    parse_epoch_seconds,
    parse_timestamp,
    to_micros,
)

__all__ = ["TimestampFormat", "config_error"]

_SAMPLE_MOMENT = datetime(2024, 2, 29, 13, 45, 59, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Moments with no field at its lowest, so that a format dropping a field cannot pass for one
# that keeps it; two, so that a pattern with a field written as fixed text cannot either.
_PROBES = (
    datetime(2024, 2, 29, 13, 45, 59, 123_456, tzinfo=UTC),
    datetime(1999, 12, 31, 22, 58, 57, 987_654, tzinfo=UTC),
)
_STEPS = (
    timedelta(microseconds=1),
    timedelta(milliseconds=1),
    timedelta(seconds=1),
    timedelta(minutes=1),
    timedelta(hours=1),
    timedelta(days=1),
)


def config_error(key: str, message: str) -> ConfigurationError:
    """Return the error for a bad setting, named by its full dotted key."""
    return ConfigurationError(f"{key}: {message}")


@attrs.frozen
class TimestampFormat:
    """How a source writes a timestamp: ISO 8601, epoch seconds or milliseconds, or a pattern.

    Args:
        kind: ``"iso8601"``, ``"epoch_seconds"``, ``"epoch_ms"`` or ``"strftime"``.
        pattern: The ``strftime`` pattern, for ``kind="strftime"``; a pattern without ``%z`` is
            read and written as UTC.
        assume_utc: Read ISO text without a zone as UTC (only when the source documents it so).
    """

    kind: Literal["iso8601", "epoch_seconds", "epoch_ms", "strftime"] = "iso8601"
    pattern: str | None = None
    assume_utc: bool = False

    @classmethod
    def from_spec(cls, value: object, key: str, *, assume_utc: bool = False) -> TimestampFormat:
        """Read a format: ``iso8601``, ``epoch_seconds``, ``epoch_ms`` or a pattern with ``%``.

        Raises:
            ConfigurationError: ``value`` is none of those, or the pattern cannot read back what
                it writes; the message names ``key``.
        """
        if value in ("iso8601", "epoch_seconds", "epoch_ms"):
            return cls(value, assume_utc=assume_utc)
        if not isinstance(value, str) or "%" not in value:
            raise config_error(
                key,
                f'expected "iso8601", "epoch_seconds", "epoch_ms" or a strftime pattern like '
                f'"%Y-%m-%d %H:%M:%S", got {value!r}',
            )
        made = cls("strftime", value)
        try:
            made.parse(made.render(_SAMPLE_MOMENT), key)
        except ValueError:
            raise config_error(
                key, f"the pattern {value!r} cannot read back what it writes"
            ) from None
        return made

    def render(self, moment: datetime) -> str:
        """Write ``moment`` (aware) as the source expects; coarser formats round it down.

        Rounding down keeps an ``updated since`` filter inclusive of ``moment``.
        """
        utc = moment.astimezone(UTC)
        if self.kind == "epoch_seconds":
            return str(to_micros(utc) // 1_000_000)
        if self.kind == "epoch_ms":
            return str(to_micros(utc) // 1_000)
        if self.kind == "strftime":
            assert self.pattern is not None  # set for every strftime format
            return utc.strftime(self.pattern)
        fraction = f".{utc.microsecond:06d}" if utc.microsecond else ""
        return f"{utc:%Y-%m-%dT%H:%M:%S}{fraction}Z"

    @property
    def resolution(self) -> timedelta | None:
        """The finest step a moment written in this format keeps: what :meth:`render` rounds to.

        1 µs for ISO 8601, 1 ms for epoch milliseconds, 1 s for epoch seconds; for a pattern,
        its finest field (``%f`` 1 µs, ``%S`` 1 s, ``%M`` 1 min, ``%H`` 1 h, ``%d`` or ``%j``
        1 day). Found by writing moments and reading them back, so it is what the format does,
        not what its letters suggest.

        Returns:
            The step, or ``None`` when writing a moment does not round it down to one of those
            steps: a pattern keeping only the month or the year, or a time without its date.
        """
        for step in _STEPS:
            if all(self._written_back(probe) == _floor(probe, step) for probe in _PROBES):
                return step
        return None

    def _written_back(self, moment: datetime) -> datetime | None:
        try:
            return self.parse(self.render(moment), "moment")
        except ValueError:
            return None

    def parse(self, value: object, field: str) -> datetime:
        """Read a source's timestamp into an aware UTC datetime.

        Raises:
            ValueError: ``value`` is not a timestamp in this format (NaiveDatetimeError for ISO
                text without a zone, unless ``assume_utc``).
        """
        if self.kind == "iso8601":
            return parse_timestamp(value, field, assume_utc=self.assume_utc)
        if self.kind == "epoch_seconds":
            return parse_epoch_seconds(value, field)
        if self.kind == "epoch_ms":
            return parse_epoch_millis(value, field)
        assert self.pattern is not None  # set for every strftime format
        if not isinstance(value, str):
            raise ValueError(  # noqa: TRY004 - callers treat every unreadable time alike
                f"{field} must be text in the form {self.pattern!r}, got {value!r}"
            )
        try:
            parsed = datetime.strptime(value, self.pattern)  # noqa: DTZ007 - zone settled below
        except ValueError:
            raise ValueError(f"{field} {value!r} does not match {self.pattern!r}") from None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)

    def __str__(self) -> str:
        return self.pattern if self.kind == "strftime" and self.pattern else self.kind


def _floor(moment: datetime, step: timedelta) -> datetime:
    return moment - (moment - _EPOCH) % step
