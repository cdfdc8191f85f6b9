"""When two payloads hold the same content, and the JSON form payloads are kept in."""

from __future__ import annotations

import json
import math
import sys
import types
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incsync import content
from incsync.content import (
    MAX_PAYLOAD_DEPTH,
    canonical_text,
    content_digest,
    digest_of_json,
    escaped_text,
    json_form,
    text_problem,
)
from incsync.errors import BadRecordError
from tests.helpers import recursion_limit
from tests.json_values import json_payloads, respelled, same_content

WHEN = datetime(2026, 11, 13, 9, 0, tzinfo=timezone.utc)
NOT_A_NUMBER = "payload holds NaN or an infinity, which JSON cannot represent"
TOO_DEEP = f"payload is nested too deeply (deeper than {MAX_PAYLOAD_DEPTH} levels)"


@pytest.mark.parametrize(
    ("left", "right"),
    [
        pytest.param({"a": 1, "b": 2}, {"b": 2, "a": 1}, id="key-order"),
        pytest.param({"x": {"a": 1, "b": 2}}, {"x": {"b": 2, "a": 1}}, id="nested-key-order"),
        pytest.param({"a": 1}, {"a": 1.0}, id="int-and-float"),
        pytest.param({"a": 100}, {"a": 1e2}, id="exponent"),
        pytest.param({"a": 0}, {"a": -0.0}, id="negative-zero"),
        pytest.param({"a": 10**23}, {"a": 1e23}, id="large-float-by-its-decimal"),
        pytest.param({"a": WHEN}, {"a": WHEN.isoformat()}, id="datetime-as-iso-text"),
        pytest.param({"a": date(2026, 11, 13)}, {"a": "2026-11-13"}, id="date-as-iso-text"),
        pytest.param({"a": Decimal("1.10")}, {"a": "1.10"}, id="decimal-as-its-text"),
        pytest.param({"a": (1, 2)}, {"a": [1, 2]}, id="tuple-as-array"),
        pytest.param(types.MappingProxyType({"a": 1}), {"a": 1}, id="any-mapping"),
        pytest.param({1: "x", None: "y"}, {"1": "x", "null": "y"}, id="keys-as-json-writes-them"),
    ],
)
def test_spellings_of_one_content_have_one_digest(left: Any, right: Any) -> None:
    """Key order, how a number is written and the Python type of a JSON value change nothing."""
    assert canonical_text(left) == canonical_text(right)
    assert content_digest(left) == content_digest(right)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        pytest.param({"paid": True}, {"paid": 1}, id="true-is-not-1"),
        pytest.param({"paid": False}, {"paid": 0}, id="false-is-not-0"),
        pytest.param({"a": 1}, {"a": "1"}, id="number-is-not-text"),
        pytest.param({"a": None}, {}, id="null-is-not-absent"),
        pytest.param({"a": [1, 2]}, {"a": [2, 1]}, id="array-order"),
        pytest.param({"a": "é"}, {"a": "e\u0301"}, id="text-not-normalised"),
        pytest.param({"a": "x"}, {"a": "X"}, id="text-case"),
        pytest.param({"a": 2**53 + 1}, {"a": float(2**53 + 1)}, id="float-rounded-the-integer"),
        pytest.param({"a": Decimal("1.10")}, {"a": Decimal("1.1")}, id="decimal-text"),
        pytest.param({"a": Decimal("1")}, {"a": 1}, id="decimal-is-text"),
        pytest.param(
            {"a": WHEN}, {"a": WHEN.astimezone(timezone(timedelta(hours=1)))}, id="offset"
        ),
    ],
)
def test_different_contents_have_different_digests(left: Any, right: Any) -> None:
    """Booleans are not numbers, null is not absence, order of arrays and every character count."""
    assert canonical_text(left) != canonical_text(right)
    assert content_digest(left) != content_digest(right)


def test_the_canonical_text_sorts_keys_and_writes_whole_numbers_as_integers() -> None:
    """The canonical text is compact JSON, keys sorted at every depth, 100.0 written 100."""
    payload = {"b": [1.0, 0.5, {"z": 2e16, "y": -0.0}], "a": "é", "c": True}
    assert canonical_text(payload) == (
        '{"a":"\\u00e9","b":[1,0.5,{"y":0,"z":20000000000000000}],"c":true}'
    )


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param({"a": float("nan")}, NOT_A_NUMBER, id="nan"),
        pytest.param({"a": [float("-inf")]}, NOT_A_NUMBER, id="infinity"),
        pytest.param({"a": (1, {"b": float("inf")})}, NOT_A_NUMBER, id="nested-infinity"),
        pytest.param({"a": "\ud800"}, "payload holds a lone surrogate", id="lone-surrogate"),
        pytest.param({"\udfff": 1}, "payload holds a lone surrogate", id="lone-surrogate-key"),
        pytest.param({"a": object()}, "object values have no JSON form", id="object"),
        pytest.param({"a": {1, 2}}, "set values have no JSON form", id="set"),
        pytest.param({"a": b"x"}, "bytes values have no JSON form", id="bytes"),
        pytest.param({(1, 2): "x"}, "no JSON form", id="tuple-key"),
        pytest.param({"a": datetime(2026, 1, 1)}, "no timezone", id="naive-datetime"),  # noqa: DTZ001
    ],
)
def test_a_payload_without_a_json_form_is_a_bad_record(payload: Any, reason: str) -> None:
    """What JSON cannot hold is refused with a reason a person can act on."""
    for function in (json_form, canonical_text, content_digest):
        with pytest.raises(BadRecordError, match=reason):
            function(payload)


def _nested(levels: int) -> dict[str, Any]:
    """A payload of exactly ``levels`` levels: ``{}`` is one, ``{"a": {}}`` two."""
    payload: dict[str, Any] = {}
    for _ in range(levels - 1):
        payload = {"a": payload}
    return payload


def test_a_payload_as_deep_as_the_limit_has_a_json_form() -> None:
    """MAX_PAYLOAD_DEPTH levels of objects and arrays are kept; the payload is the first level."""
    text, _ = json_form(_nested(MAX_PAYLOAD_DEPTH))
    assert text.count("{") == MAX_PAYLOAD_DEPTH
    array = json.loads("[" * (MAX_PAYLOAD_DEPTH - 1) + "]" * (MAX_PAYLOAD_DEPTH - 1))
    assert canonical_text({"a": array}).count("[") == MAX_PAYLOAD_DEPTH - 1


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(_nested(MAX_PAYLOAD_DEPTH + 1), id="one-level-too-deep"),
        pytest.param({"a": json.loads("[" * 900 + "]" * 900)}, id="as-deep-as-json-loads-reads"),
        pytest.param(_nested(100_000), id="deeper-than-python-can-write"),
    ],
)
def test_a_payload_too_deep_is_refused_before_anything_recurses(payload: Any) -> None:
    """The depth is found without recursion, so the reason is the same however little stack the
    caller has left, and nothing recurses into the payload to find it.
    """
    for function in (json_form, canonical_text, content_digest):
        with recursion_limit(frames_left=40), pytest.raises(BadRecordError) as caught:
            function(payload)
        assert caught.value.reason == TOO_DEEP


def test_a_payload_holding_itself_is_a_bad_record() -> None:
    """A payload that holds itself has no JSON form (it would be infinitely deep)."""
    looped: dict[str, Any] = {"list": []}
    looped["list"].append(looped)
    with pytest.raises(BadRecordError, match="payload holds itself, so it has no JSON form"):
        content_digest(looped)
    shared = [1, 2]
    assert json_form({"a": shared, "b": shared})[0] == '{"a":[1,2],"b":[1,2]}'


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param("plain", None, id="ascii"),
        pytest.param("Zoë 東京 🧾", None, id="any-script"),
        pytest.param("\\ud800", None, id="an-escape-written-out"),
        pytest.param("a\x00b", None, id="nul"),
        pytest.param("A\ud800", "a lone surrogate", id="high-surrogate"),
        pytest.param("\udc00\ud800", "a lone surrogate", id="pair-in-the-wrong-order"),
    ],
)
def test_text_every_store_keeps(text: str, problem: str | None) -> None:
    """Text is kept unless it holds a lone surrogate (no UTF-8 form); NUL only where refused."""
    found = text_problem(text)
    assert (found or "")[: len(problem or "")] == (problem or "")
    assert (found is None) is (problem is None)
    assert (escaped_text(text) == text) is (problem is None)
    assert escaped_text(text).encode("utf-8")


def test_nul_is_refused_where_the_store_asks() -> None:
    """PostgreSQL's stores ask for NUL to be refused too, by the same functions."""
    nul = text_problem("a\x00b", nul_allowed=False)
    assert nul is not None
    assert nul.startswith("a NUL character")
    assert escaped_text("a\x00\ud800", nul_allowed=False) == "a\\x00\\ud800"
    with pytest.raises(BadRecordError, match="payload holds a NUL character"):
        json_form({"note": "a\x00b"}, nul_allowed=False)
    assert json_form({"note": "a\x00b"})[0] == '{"note":"a\\u0000b"}'
    assert json_form({"note": "a\\u0000b"}, nul_allowed=False)[0] == '{"note":"a\\\\u0000b"}'


def test_a_payload_whose_reading_fails_is_a_bad_record() -> None:
    """Any exception while reading a payload (a lazy mapping over a broken source) is a reason."""

    class Broken(dict[str, Any]):
        def values(self) -> Any:
            raise RuntimeError("connection reset")

        def items(self) -> Any:
            raise RuntimeError("connection reset")

    with pytest.raises(BadRecordError) as caught:
        json_form({"a": Broken(x=1)})
    assert caught.value.reason == "payload could not be read (RuntimeError: connection reset)"


def test_nan_and_infinity_in_stored_text_have_no_digest() -> None:
    """Text an older store kept with NaN in it is refused too: JSON has no such number."""
    with pytest.raises(BadRecordError, match="NaN"):
        digest_of_json('{"a": NaN}')


@given(payload=json_payloads())
def test_the_stored_text_keeps_the_content(payload: dict[str, Any]) -> None:
    """The text a store keeps reads back as the same content, whatever its spacing or key order."""
    text, digest = json_form(payload)
    assert same_content(json.loads(text), payload)
    assert digest_of_json(text) == digest
    spaced = json.dumps(json.loads(text), indent=1, sort_keys=True, ensure_ascii=False)
    assert digest_of_json(spaced) == digest


@given(st.data())
def test_digests_are_equal_exactly_when_the_rule_says_same_content(data: st.DataObject) -> None:
    """For random payload pairs, often re-spellings of each other, the digests are equal exactly
    when the documented rule (written independently in tests/json_values.py) says equal.
    """
    left = data.draw(json_payloads(), label="left")
    right = data.draw(st.one_of(respelled(left), json_payloads()), label="right")
    assert (content_digest(left) == content_digest(right)) is same_content(left, right)
    assert (canonical_text(left) == canonical_text(right)) is same_content(left, right)


_UNUSUAL_VALUES: dict[Any, Any] = {
    "when": WHEN,
    "day": date(2026, 11, 13),
    "amount": Decimal("1.10"),
    "pair": (1, 2.5),
    "mapping": types.MappingProxyType({"b": 1, "a": [None, True]}),
    "text": 'Zoë 東京 🧾 "quoted" \\ \n',
    "numbers": [0.1, -0.0, 1e23, 2**70, 1.0],
    1: "a key JSON writes as text",
}


@given(payload=json_payloads())
def test_without_the_c_encoder_the_same_text_is_written(payload: dict[str, Any]) -> None:
    """On an interpreter without the json module's C encoder, the stored and canonical texts are
    the ones written with it, byte for byte; a NaN and a value of no JSON form are refused alike.
    """
    with_c = [content._json_writer(sort_keys=sort) for sort in (False, True)]
    with mock.patch.dict(sys.modules, {"_json": None}):  # the import of its encoder fails
        without_c = [content._json_writer(sort_keys=sort) for sort in (False, True)]
    assert without_c[0] is not with_c[0]
    for value in (payload, {**payload, "unusual": _UNUSUAL_VALUES}):
        stored = with_c[0](value)
        assert without_c[0](value) == stored
        # The sorted writer writes the canonical text, of the stored text read back.
        assert without_c[1](json.loads(stored)) == with_c[1](json.loads(stored))
    for write in (*with_c, *without_c):
        with pytest.raises(ValueError, match="not JSON compliant"):
            write({"a": [math.nan]})
        with pytest.raises(TypeError, match="set values have no JSON form"):
            write({"a": {1}})
