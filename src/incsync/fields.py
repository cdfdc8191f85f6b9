"""Where a value sits in a JSON document: dotted paths, read the same way everywhere.

A record's id and update time (:class:`incsync.records.RecordFormat`), the list of records in an
API answer, a next-page token: each is named by a :class:`DottedPath` and read by its compiled
getter, so that "absent", "null" and "not an object on the way" mean the same in every place.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import attrs

from incsync.errors import ConfigurationError

__all__ = ["DottedPath"]

_PATH_PART = re.compile(r"[^.\s]+")


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
    """Compile ``parts`` into a function that reads them.

    Plain dicts (what ``json`` gives) are read with ``dict.get`` (one to three keys deep); any
    other document takes :func:`_walk`, which gives the same answer for every shape.
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
        first, second = parts

        def get_two(document: object) -> object:
            # Most paths are an object's key inside another ("CustomerRef.value"): read through
            # two dicts at once, and any other shape the general way.
            if type(document) is dict:
                inner = document.get(first)
                if type(inner) is dict:
                    return inner.get(second)
                if inner is None:
                    return None
            return _walk(parts, document)

        return get_two
    if len(parts) == 3:
        first, second, third = parts

        def get_three(document: object) -> object:
            # Three deep, as a line's item is ("SalesItemLineDetail.ItemRef.value"): the same
            # plain-dict reading, and any other shape the general way.
            if type(document) is dict:
                inner = document.get(first)
                if type(inner) is dict:
                    inner = inner.get(second)
                    if type(inner) is dict:
                        return inner.get(third)
                if inner is None:
                    return None
            return _walk(parts, document)

        return get_three
    return functools.partial(_walk, parts)


@attrs.frozen
class DottedPath:
    """Where a value sits in a JSON document: ``data.items`` is ``body["data"]["items"]``.

    Args:
        parts: The keys from the outside in; empty for the document itself.

    Attributes:
        get: Returns the value at this path in a document, or :data:`None` where it is absent.
    """

    parts: tuple[str, ...]
    get: Callable[[object], object] = attrs.field(init=False, repr=False, eq=False)

    @get.default
    def _compile(self) -> Callable[[object], object]:
        return _getter(self.parts)

    @classmethod
    def of(cls, text: str) -> DottedPath:
        """Return the path written as ``text`` (``"MetaData.LastUpdatedTime"``).

        Unlike :meth:`parse`, which reads a person's configuration, a key may hold spaces here
        (a CSV header, a vendor's field label); only an empty key is refused.

        Raises:
            ConfigurationError: ``text`` is empty or has an empty key (``"a..b"``).
        """
        parts = tuple(text.split("."))
        if not all(parts):
            raise ConfigurationError(f'expected a dotted path like "meta.updated_at", got {text!r}')
        return cls(parts)

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
            raise ConfigurationError(
                f'{key}: expected a dotted path like "{example}", got {value!r}'
            )
        return cls(tuple(value.split(".")))

    def __str__(self) -> str:
        return ".".join(self.parts) or "(the whole document)"
