"""A payload's JSON form, and when two payloads hold the same content: defined once, here.

Whether a record read again at the same ``updated_at`` changed is decided by comparing contents
(:func:`incsync.records.supersedes`, and every store's upsert through :func:`content_digest`), so
the rule lives in this one module, with the form a payload is stored in.

**The JSON form.** A payload is what a JSON reader gives: objects with text keys, arrays, text,
numbers, ``true``/``false`` and ``null``. The few Python values a connector of your own may put in
a payload besides are taken in the form every store keeps them as (:func:`json_form`):

* an aware ``datetime`` or a ``date`` is its ISO 8601 text (``value.isoformat()``, offset as
  given); a datetime without a zone is refused, its instant is unknown;
* a ``Decimal`` is its text, as the stores keep it to lose no digit: ``Decimal("1.10")`` is the
  same content as ``"1.10"``, and differs from ``Decimal("1.1")`` and from the number ``1.1``;
* a tuple is an array, any mapping an object, and an object key that is a number, ``True``,
  ``False`` or ``None`` the text JSON writes for it (``1`` is ``"1"``); when two keys of one object
  then read alike, the last one counts, as for any JSON reader.

Anything else (bytes, sets, other objects), a float that is NaN or infinite (JSON has no such
number), a payload that holds itself, and one nested so deep that Python cannot write it, leave a
payload without a JSON form: :class:`~incsync.errors.BadRecordError` says why, and every store sets
such a record aside with that reason instead of failing the page.

**Same content.** Two payloads hold the same content when their JSON forms are equal, where:

* objects are equal when they have the same keys with equal values, in any order; a key holding
  ``null`` differs from a missing key;
* arrays are equal when they hold equal values in the same order;
* text is equal only when it is the same characters (no case folding, no Unicode normalisation);
* ``true`` and ``false`` are not numbers: ``true`` differs from ``1``;
* **numbers equal in value are the same content**: ``100``, ``100.0`` and ``1e2`` are one amount
  (a vendor re-serialising an amount did not change it), and ``-0.0`` is ``0``. A float's value is
  the decimal it is written as in JSON (Python's shortest form, ``repr``), exactly as a JSON reader
  or PostgreSQL's ``jsonb`` takes it: ``1e23`` is ten to the 23rd, ``0.1`` is one tenth.

:func:`canonical_text` writes the one text every payload of the same content has (keys sorted,
whole numbers as integers, other numbers in their shortest form), and :func:`content_digest` is its
SHA-256, which the SQL stores keep beside each row and compare in their upserts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from incsync.errors import BadRecordError

__all__ = ["canonical_text", "content_digest", "digest_of_json", "json_form"]


def _json_default(value: object) -> Any:
    """Return the JSON form of a non-JSON value a payload may hold (the ``json`` module's hook)."""
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise ValueError(f"datetime {value.isoformat()} has no timezone")
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} values have no JSON form")


def _canonical_number(token: str) -> int | float:
    """Return the canonical value of a JSON number written with a fraction or an exponent."""
    value = Decimal(token)
    if value == value.to_integral_value():
        return int(value)
    # A fraction equals no integer, and a float's shortest form names exactly one float.
    return float(token)


def _not_a_number(token: str) -> Any:
    raise ValueError(f"{token} is not a JSON number")


def _refused(error: Exception) -> BadRecordError:
    if isinstance(error, RecursionError):
        return BadRecordError("payload is nested too deeply to be written as JSON")
    return BadRecordError(f"payload has no JSON form: {error}")


# ASCII output escapes every non-ASCII character, lone surrogates from "\ud800" escapes included,
# so any text a JSON decoder produced can be written, stored and hashed.
_encode = json.JSONEncoder(separators=(",", ":"), default=_json_default, allow_nan=False).encode
_encode_sorted = json.JSONEncoder(separators=(",", ":"), sort_keys=True, allow_nan=False).encode
# Reading the JSON text back is the walk that puts numbers in canonical form: the C scanner hands
# over only the numbers written with a fraction or an exponent, and is faster than any Python walk.
_decode = json.JSONDecoder(parse_float=_canonical_number, parse_constant=_not_a_number).decode


def _canonical(text: str) -> str:
    try:
        return _encode_sorted(_decode(text))
    except (TypeError, ValueError, RecursionError) as error:
        raise _refused(error) from None


def _digest(canonical: str) -> bytes:
    return hashlib.sha256(canonical.encode("ascii")).digest()


def _text(payload: Mapping[str, Any]) -> str:
    try:
        return _encode(payload)
    except (TypeError, ValueError, RecursionError) as error:
        raise _refused(error) from None


def json_form(payload: Mapping[str, Any]) -> tuple[str, bytes]:
    """Return the payload as stores keep it (compact ASCII JSON, keys in order) and its digest.

    Raises:
        BadRecordError: The payload has no JSON form (see the module's documentation).
    """
    text = _text(payload)
    return text, _digest(_canonical(text))


def canonical_text(payload: Mapping[str, Any]) -> str:
    """Return the one JSON text that every payload of the same content has.

    Keys are sorted, whole numbers written as integers, other numbers in their shortest form, and
    text escaped to ASCII.

    Raises:
        BadRecordError: The payload has no JSON form (see the module's documentation).
    """
    return _canonical(_text(payload))


def content_digest(payload: Mapping[str, Any]) -> bytes:
    """Return the SHA-256 of :func:`canonical_text`: equal exactly when the contents are the same.

    Raises:
        BadRecordError: The payload has no JSON form (see the module's documentation).
    """
    return json_form(payload)[1]


def digest_of_json(text: str) -> bytes:
    """Return the content digest of a payload kept as JSON text (any spacing, any key order).

    Raises:
        BadRecordError: The text is not JSON, or holds NaN or an infinity.
    """
    return _digest(_canonical(text))
