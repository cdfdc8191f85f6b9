"""JSON payloads for the content tests: random ones, re-spellings of them, and the rule as a test
oracle written independently of :mod:`incsync.content`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

__all__ = ["json_payloads", "respelled", "same_content"]

# Text every store can hold: PostgreSQL refuses NUL and lone surrogates (set aside by that store
# alone, see test_postgres_sink.py), which would make the stores differ for a reason of storage.
_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)
_KEYS = st.text(alphabet="abcAB1é", min_size=1, max_size=3)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.0, 2.0, 100.0, 1e16, 1e23, 0.1, 1.5e-7]),
    _TEXT,
)
_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_KEYS, children, max_size=3),
    max_leaves=8,
)


def json_payloads() -> st.SearchStrategy[dict[str, Any]]:
    """Payloads as a JSON reader gives them: numbers of every kind, nested objects and arrays."""
    return st.dictionaries(_KEYS, _VALUES, max_size=4)


def _same_number(value: int | float) -> st.SearchStrategy[Any]:
    """The same number spelled otherwise, or a near miss (``true`` for 1, the text "1")."""
    options: list[Any] = [value]
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        options.append(int(value))
    if isinstance(value, int) and abs(value) <= 2**53:
        options.append(float(value))
    if value in (0, 1):
        options.append(bool(value))
    options.append(str(value))
    return st.sampled_from(options)


def respelled(value: Any) -> st.SearchStrategy[Any]:
    """``value`` with keys reordered and numbers re-spelled, now and then changed slightly.

    Most draws hold the same content; the rest differ by one type (``true`` for ``1``, a number
    as text), so a pair of payloads is often equal and often nearly so.
    """
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return st.just(value)
    if isinstance(value, (int, float)):
        return _same_number(value)
    if isinstance(value, list):
        return st.tuples(*(respelled(item) for item in value)).map(list)
    keys = list(value)
    return st.permutations(keys).flatmap(
        lambda order: st.tuples(*(respelled(value[key]) for key in order)).map(
            lambda items: dict(zip(order, items, strict=True))
        )
    )


def _decimal(value: int | float) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def same_content(left: Any, right: Any) -> bool:
    """The documented rule, read literally: equal JSON values, numbers compared by value."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        return _decimal(left) == _decimal(right)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(same_content, left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same_content(left[k], right[k]) for k in left)
    if isinstance(left, str) and isinstance(right, str):
        return left == right
    return left is None and right is None
