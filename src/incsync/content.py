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
number), text holding a lone surrogate (half of a UTF-16 pair, as broken UTF-16 leaves: it is not
Unicode and has no UTF-8 form), a payload that holds itself, one nested deeper than
:data:`MAX_PAYLOAD_DEPTH` levels, and one that raises while it is read, leave a payload without a
JSON form: :class:`~incsync.errors.BadRecordError` says why, and every store sets such a record
aside with that reason instead of failing the page. The shape of a payload (its depth, whether it
holds itself, its numbers) is checked by one walk that does not recurse, before anything that
does (the JSON writer, a comparison, an excerpt) runs.

**Text.** :func:`text_problem` says what text no store keeps (a lone surrogate), and with
``nul_allowed=False`` also what PostgreSQL cannot keep (a NUL character); :func:`escaped_text`
writes such text with backslash escapes, where it must be kept anyway (a set-aside entry).

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
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal
from json.encoder import encode_basestring_ascii
from typing import Any

from incsync.errors import BadRecordError

__all__ = [
    "MAX_PAYLOAD_DEPTH",
    "canonical_text",
    "content_digest",
    "digest_of_json",
    "escaped_text",
    "json_form",
    "shape_problem",
    "text_problem",
]

MAX_PAYLOAD_DEPTH = 128
"""How many levels of objects and arrays a payload may hold; the payload itself is the first.

A deeper payload is set aside (``"payload is nested too deeply"``), so whatever walks a kept one
level by level (the JSON writer and reader, a comparison, ``repr``, a database's JSON functions,
a host's own code) stays far from Python's recursion limit. Real records nest a few levels; the
bound is the one ``serde_json`` uses.
"""

_LONE_SURROGATE = "a lone surrogate (half of a UTF-16 pair), which is not Unicode text"
_NUL = "a NUL character, which PostgreSQL cannot store in text"
_TOO_DEEP = f"payload is nested too deeply (deeper than {MAX_PAYLOAD_DEPTH} levels)"
_HOLDS_ITSELF = "payload holds itself, so it has no JSON form"
_NOT_A_NUMBER = "payload holds NaN or an infinity, which JSON cannot represent"
# Values whose children are never looked at: the walk below passes them at the cost of one lookup.
_LEAVES = frozenset({str, int, bool, type(None)})


def text_problem(text: str, *, nul_allowed: bool = True) -> str | None:
    """Return what in ``text`` a store cannot keep, or ``None`` when it can be kept as it is.

    No store keeps a lone surrogate: it is not Unicode text, has no UTF-8 form, and PostgreSQL
    refuses it. A NUL character is kept unless ``nul_allowed`` is false (PostgreSQL holds none).
    The answer is a phrase to follow "holds" (``"a lone surrogate (…)"``).
    """
    if not nul_allowed and "\x00" in text:
        return _NUL
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _LONE_SURROGATE
    return None


def escaped_text(text: str, *, nul_allowed: bool = True) -> str:
    r"""Return ``text`` with what :func:`text_problem` refuses written as a backslash escape.

    A lone surrogate becomes ``\ud800``, a refused NUL ``\x00``; other text is unchanged.
    """
    if text_problem(text, nul_allowed=nul_allowed) is None:
        return text
    if not nul_allowed:
        text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _children(value: object) -> Iterable[object] | None:
    """Return what a JSON writer writes inside ``value``, or ``None`` for a value with no inside."""
    if type(value) is dict:  # nearly every inside: spared the abstract class's slower check
        return value.values()
    if isinstance(value, (list, tuple)):
        return value
    if isinstance(value, Mapping):
        return value.values()
    return None


def shape_problem(value: object) -> str | None:
    """Return why ``value``'s shape leaves it without a JSON form, or ``None`` when it is sound.

    Finds, without recursion, a nesting deeper than :data:`MAX_PAYLOAD_DEPTH`, a value holding
    itself, and a NaN or infinite float; anything else is left for the JSON writer to judge.

    Raises:
        Exception: Whatever reading a mapping of ``value`` raises.
    """
    children = _children(value)
    if children is None:
        return None
    # Depth-first, with the open containers' iterators as the stack: its length is the depth.
    open_ids = {id(value)}
    opened = [id(value)]
    stack: list[Iterator[object]] = [iter(children)]
    while stack:
        for child in stack[-1]:
            if type(child) in _LEAVES:
                continue
            if isinstance(child, float):
                if not math.isfinite(child):
                    return _NOT_A_NUMBER
                continue
            inside = _children(child)
            if inside is None:
                continue
            if id(child) in open_ids:
                return _HOLDS_ITSELF
            if len(stack) >= MAX_PAYLOAD_DEPTH:
                return _TOO_DEEP
            open_ids.add(id(child))
            opened.append(id(child))
            stack.append(iter(inside))
            break
        else:
            stack.pop()
            open_ids.discard(opened.pop())
    return None


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
        # Only when the caller has left too little stack for a payload within the depth bound.
        return BadRecordError("payload is nested too deeply to be written as JSON here")
    return BadRecordError(f"payload has no JSON form: {error}")


def _json_writer(*, sort_keys: bool) -> Callable[[Any], str]:
    r"""Return what writes a value as compact ASCII JSON, keys sorted or in order, NaN refused.

    ASCII output escapes every non-ASCII character, so the text is written, stored and hashed
    alike everywhere; a lone surrogate, written as a "\ud800" escape too, is refused by
    :func:`_text_problem_in`.

    ``json.JSONEncoder.encode`` builds a new encoder for every value it writes, and tracks the
    containers it is inside to refuse a value that holds itself. Neither is needed here: the
    writer is built once, and :func:`shape_problem` has refused such a payload before anything is
    written. That took a tenth off a record's JSON form (about 1.8 µs of a Pipedrive deal's 17),
    which is most of what a store's writer does per record. An interpreter without the ``json``
    module's C encoder (or whose encoder takes other arguments) gets the module's own encoder,
    which writes the same text.
    """
    try:
        from _json import make_encoder

        encoder = make_encoder(
            None, _json_default, encode_basestring_ascii, None, ":", ",", sort_keys, False, False
        )
    except (ImportError, TypeError):  # no C encoder, or one this call does not fit
        return json.JSONEncoder(
            separators=(",", ":"),
            sort_keys=sort_keys,
            default=_json_default,
            allow_nan=False,
            check_circular=False,
        ).encode
    return lambda value: "".join(encoder(value, 0))


_encode = _json_writer(sort_keys=False)
_encode_sorted = _json_writer(sort_keys=True)
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


def _text_problem_in(encoded: str, nul_allowed: bool) -> str | None:
    """Return what text of the payload written as ``encoded`` a store cannot keep, if any."""
    # The ASCII encoding writes every surrogate, paired or lone, as a "\ud…" escape and NUL as
    # "\u0000", so a payload without those escapes holds neither, and only a rare one is read
    # back and walked (its depth is bounded by now).
    if "\\ud" not in encoded and (nul_allowed or "\\u0000" not in encoded):
        return None
    pending: list[Any] = [json.loads(encoded)]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str) and (problem := text_problem(value, nul_allowed=nul_allowed)):
            return f"payload holds {problem}"
    return None


def _text(payload: Mapping[str, Any], nul_allowed: bool = True) -> str:
    try:
        problem = shape_problem(payload)
        encoded = "" if problem else _encode(payload)
        problem = problem or _text_problem_in(encoded, nul_allowed)
    except (TypeError, ValueError, RecursionError) as error:
        raise _refused(error) from None
    except Exception as error:  # noqa: BLE001 - a payload that fails when read is this record's
        raise BadRecordError(
            f"payload could not be read ({type(error).__name__}: {error})"
        ) from None
    if problem:
        raise BadRecordError(problem)
    return encoded


def json_form(payload: Mapping[str, Any], *, nul_allowed: bool = True) -> tuple[str, bytes]:
    """Return the payload as stores keep it (compact ASCII JSON, keys in order) and its digest.

    Args:
        payload: The record's payload.
        nul_allowed: Whether text may hold a NUL character (PostgreSQL's store says no).

    Raises:
        BadRecordError: The payload has no JSON form (see the module's documentation), or holds
            a NUL character where it is not allowed.
    """
    text = _text(payload, nul_allowed)
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
