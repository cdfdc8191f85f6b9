"""Where a value sits in a JSON document, and how a source writes a time: parsed from config.

Shared by the configurable connectors (:mod:`incsync.connectors.rest` reads answers with both,
:mod:`incsync.connectors.files` reads its updated-at column with :class:`TimestampFormat`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import datetime
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

__all__ = ["DottedPath", "TimestampFormat", "config_error"]

_PATH_PART = re.compile(r"[^.\s]+")
_SAMPLE_MOMENT = datetime(2024, 2, 29, 13, 45, 59, tzinfo=UTC)


def config_error(key: str, message: str) -> ConfigurationError:
    """Return the error for a bad setting, named by its full dotted key."""
    return ConfigurationError(f"{key}: {message}")


def _walk(parts: tuple[str, ...], document: object) -> object:
    """Return the value at ``parts`` in any document, or :data:`None` where it is absent."""
    # Anything that is not an object with the key (a list, a string, a number, no such key)
    # ends the walk alike.
    try:
        for part in parts:
            document = document[part]  # type: ignore[index]
    except (KeyError, TypeError, IndexError):
        return None
    return document


def _getter(parts: tuple[str, ...]) -> Callable[[object], object]:
    """Compile ``parts`` into a function that reads them, fastest for plain JSON objects.

    A getter runs once per record and path, so the common shapes (one or two keys into plain
    dicts, as ``json`` gives) are read with ``dict.get`` and no loop; any other document takes
    :func:`_walk`, which gives the same answer for every shape.
    """
    if not parts:
        return lambda document: document
    if len(parts) == 1:
        (key,) = parts

        def get_one(document: object) -> object:
            if type(document) is dict:
                return document.get(key)
            return _walk(parts, document)

        return get_one
    if len(parts) == 2:
        outer, inner = parts

        def get_two(document: object) -> object:
            if type(document) is dict:
                holder = document.get(outer)
                if type(holder) is dict:
                    return holder.get(inner)
                if holder is None:
                    return None
            return _walk(parts, document)

        return get_two
    return functools.partial(_walk, parts)


@attrs.frozen
class DottedPath:
    """Where a value sits in a JSON document: ``data.items`` is ``body["data"]["items"]``.

    Args:
        parts: The keys from the outside in; empty for the document itself.

    Attributes:
        get: Returns the value at this path in a document, or :data:`None` where it is absent.
            Compiled once from ``parts``, since it runs once per record and path.
    """

    parts: tuple[str, ...]
    get: Callable[[object], object] = attrs.field(init=False, repr=False, eq=False)

    @get.default
    def _compile(self) -> Callable[[object], object]:
        return _getter(self.parts)

    @classmethod
    def parse(cls, value: object, key: str, *, example: str = "meta.updated_at") -> DottedPath:
        """Read a dotted path from configuration (``""`` is the document itself).

        Raises:
            ConfigurationError: ``value`` is not a dotted path; the message names ``key``.
        """
        if value == "":
            return cls(())
        if not isinstance(value, str) or not all(
            _PATH_PART.fullmatch(part) for part in value.split(".")
        ):
            raise config_error(key, f'expected a dotted path like "{example}", got {value!r}')
        return cls(tuple(value.split(".")))

    def __str__(self) -> str:
        return ".".join(self.parts) or "(the whole document)"


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
