"""When two payloads hold the same content, and the JSON form payloads are kept in."""

from __future__ import annotations

import json
import types
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incsync.content import canonical_text, content_digest, digest_of_json, json_form
from incsync.errors import BadRecordError
from tests.json_values import json_payloads, respelled, same_content

WHEN = datetime(2026, 11, 13, 9, 0, tzinfo=timezone.utc)


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
        pytest.param({"a": float("nan")}, "no JSON form", id="nan"),
        pytest.param({"a": [float("-inf")]}, "no JSON form", id="infinity"),
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


def _nested(depth: int) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    for _ in range(depth):
        payload = {"a": payload}
    return payload


def test_a_payload_too_deep_or_holding_itself_is_a_bad_record() -> None:
    """A payload nested deeper than Python can write, or holding itself, is refused, not raised."""
    with pytest.raises(BadRecordError, match="nested too deeply"):
        content_digest(_nested(100_000))
    looped: dict[str, Any] = {}
    looped["self"] = looped
    with pytest.raises(BadRecordError, match="no JSON form"):
        content_digest(looped)


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
