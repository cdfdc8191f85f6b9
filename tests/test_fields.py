"""Dotted paths: every compiled getter reads a document as the general walk does."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from incsync.fields import DottedPath, _walk
from tests.json_values import json_payloads

_KEYS = st.text(alphabet="abcAB1é", min_size=1, max_size=3)


def _documents() -> st.SearchStrategy[Any]:
    """Payloads, the values inside them, and the same as read-only mappings (not plain dicts)."""
    payloads = json_payloads()
    return st.one_of(
        payloads,
        payloads.map(lambda payload: {"a": {"b": payload}, "c": [payload]}),
        payloads.map(_read_only),
        st.none(),
        st.integers(),
        st.lists(st.integers(), max_size=2),
    )


def _read_only(value: object) -> object:
    if isinstance(value, Mapping):
        return MappingProxyType({key: _read_only(each) for key, each in value.items()})
    return value


@given(_documents(), st.lists(st.sampled_from(["a", "b", "c", "A", "1", "é"]) | _KEYS, max_size=4))
def test_every_path_length_reads_as_the_general_walk(document: Any, parts: list[str]) -> None:
    """Whatever the document's shape (objects, arrays, scalars, mappings that are not dicts,
    nulls on the way), a path of one, two, three or more keys gives what the walk gives."""
    path = DottedPath(tuple(parts))
    assert path.get(document) == _walk(path.parts, document)
