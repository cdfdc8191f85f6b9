"""Tests for incsync.errors: one exception tree, retryability in the class, context attributes."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from incsync import errors
from incsync.errors import (
    AuthError,
    BadRecordError,
    BadResponseError,
    ConfigurationError,
    GenerationChangedError,
    IncsyncError,
    LeaseLostError,
    NaiveDatetimeError,
    PermanentSourceError,
    RateLimitedError,
    ResultCapError,
    SourceError,
    StaleWriteError,
    StateConflictError,
    StoreError,
    TransientSourceError,
    UnmappableRecordError,
)

ALL_CLASSES: list[type[IncsyncError]] = [getattr(errors, name) for name in errors.__all__]

RETRYABLE: dict[type[IncsyncError], bool] = {
    IncsyncError: False,
    ConfigurationError: False,
    NaiveDatetimeError: False,
    SourceError: False,
    TransientSourceError: True,
    RateLimitedError: True,
    AuthError: False,
    BadResponseError: True,
    PermanentSourceError: False,
    ResultCapError: False,
    BadRecordError: False,
    UnmappableRecordError: False,
    StateConflictError: False,
    LeaseLostError: False,
    StaleWriteError: False,
    GenerationChangedError: False,
    StoreError: True,
}


def _drawn_tree() -> list[tuple[int, str]]:
    """Return (depth, class name) for every node of the tree drawn in errors' docstring.

    A node is a line whose first word after the box-drawing characters is a class name; its depth
    is its indentation relative to the root, in steps of four columns.
    """
    nodes: list[tuple[int, str]] = []
    root_column: int | None = None
    for line in (errors.__doc__ or "").splitlines():
        match = re.match(r"^[\s│├└─]*([A-Z]\w*Error)\b", line)
        if match is None:
            continue
        column = match.start(1)
        if root_column is None:
            root_column = column
        nodes.append(((column - root_column) // 4, match.group(1)))
    return nodes


def test_every_error_class_is_an_incsync_error() -> None:
    """Every class in errors.__all__ is an Exception subclass of IncsyncError."""
    assert len(ALL_CLASSES) == len(RETRYABLE)
    for cls in ALL_CLASSES:
        assert isinstance(cls, type)
        assert issubclass(cls, IncsyncError)
        assert issubclass(cls, Exception)


@pytest.mark.parametrize(("cls", "retryable"), list(RETRYABLE.items()))
def test_retryable_flags(cls: type[IncsyncError], retryable: bool) -> None:
    """Retryability is visible on the class: transient, bad-response and store errors retry."""
    assert cls.retryable is retryable


def test_retryable_flags_cover_exactly_the_exported_classes() -> None:
    """The table above pins a flag for every exported class and no other."""
    assert set(RETRYABLE) == set(ALL_CLASSES)


def test_configuration_errors_are_value_errors() -> None:
    """ConfigurationError (and NaiveDatetimeError) can be caught as ValueError."""
    assert issubclass(ConfigurationError, ValueError)
    assert issubclass(NaiveDatetimeError, ValueError)
    with pytest.raises(ValueError, match="page_size"):
        raise ConfigurationError("page_size must be at least 1")


def test_naive_datetime_error_names_the_field_and_the_fix() -> None:
    """NaiveDatetimeError keeps the field and tells how to make the datetime aware."""
    error = NaiveDatetimeError("now")
    assert error.field == "now"
    assert str(error).startswith("now is a naive datetime")
    assert "timezone.utc" in str(error)


def test_source_errors_carry_vendor_and_status() -> None:
    """SourceError and its subclasses keep vendor and HTTP status (None when unknown)."""
    error = PermanentSourceError("400 invalid query", vendor="xero", status_code=400)
    assert (str(error), error.vendor, error.status_code) == ("400 invalid query", "xero", 400)
    bare = AuthError("token revoked")
    assert (bare.vendor, bare.status_code) == (None, None)


def test_source_errors_carry_an_excerpt_of_the_response() -> None:
    """SourceError and RateLimitedError keep what the vendor said (None when nothing was said)."""
    error = BadResponseError("not JSON", vendor="xero", status_code=200, excerpt="<html>")
    assert error.excerpt == "<html>"
    limited = RateLimitedError("429", excerpt='{"policyName":"DAILY"}')
    assert limited.excerpt == '{"policyName":"DAILY"}'
    assert SourceError("x").excerpt is None


def test_rate_limited_error_carries_retry_at() -> None:
    """RateLimitedError keeps retry_at as well as vendor and status, and is transient."""
    at = datetime(2024, 3, 1, 12, 5, tzinfo=timezone.utc)
    error = RateLimitedError("429", retry_at=at, vendor="hubspot", status_code=429)
    assert (error.retry_at, error.vendor, error.status_code) == (at, "hubspot", 429)
    assert isinstance(error, TransientSourceError)
    assert RateLimitedError("429").retry_at is None


def test_result_cap_error_carries_the_cap_and_says_what_to_do() -> None:
    """ResultCapError keeps the cap and the vendor, is a source error no wait heals, and its
    message adds to the connector's what the engine does with it and what to do."""
    error = ResultCapError("hubspot: the search stops at 10,000", cap=10_000, vendor="hubspot")
    assert (error.cap, error.vendor, error.retryable) == (10_000, "hubspot", False)
    assert isinstance(error, SourceError)
    assert str(error).startswith("hubspot: the search stops at 10,000. The source will not page")
    assert "partitions above 1" in str(error)
    assert ResultCapError("capped").cap is None


def test_bad_record_error_carries_id_and_reason() -> None:
    """BadRecordError keeps record id and reason; its message names the record, or says none."""
    error = BadRecordError("no timestamp", record_id="INV-7")
    assert (error.record_id, error.reason) == ("INV-7", "no timestamp")
    assert str(error) == "record 'INV-7': no timestamp"
    anonymous = BadRecordError("not an object")
    assert anonymous.record_id is None
    assert str(anonymous) == "record without an id: not an object"


@pytest.mark.parametrize("cls", [StateConflictError, LeaseLostError, GenerationChangedError])
def test_state_conflicts_carry_the_source_key(cls: type[StateConflictError]) -> None:
    """State conflicts name the source whose write was refused."""
    error = cls("refused", source_key="acme/xero")
    assert error.source_key == "acme/xero"
    assert str(error) == "refused"
    assert isinstance(error, StateConflictError)


def test_the_docstring_tree_lists_exactly_the_exported_classes() -> None:
    """The tree drawn in errors' docstring names every class in __all__, each once."""
    drawn = [name for _, name in _drawn_tree()]
    assert sorted(drawn) == sorted(errors.__all__)
    assert len(drawn) == len(set(drawn))


def test_the_docstring_tree_matches_the_real_hierarchy() -> None:
    """Each class in the drawn tree is a direct subclass of the node it hangs from."""
    parents: list[str] = []
    for depth, name in _drawn_tree():
        del parents[depth:]
        cls = getattr(errors, name)
        if parents:
            assert getattr(errors, parents[-1]) in cls.__bases__, f"{name} under {parents[-1]}"
        else:
            assert cls is IncsyncError
        parents.append(name)


def test_catching_incsync_error_catches_every_error() -> None:
    """A host can catch IncsyncError to handle anything incsync raised on purpose."""
    for error in (
        ConfigurationError("x"),
        NaiveDatetimeError("now"),
        TransientSourceError("x"),
        BadRecordError("x"),
        LeaseLostError("x", source_key="k"),
        StoreError("x"),
    ):
        with pytest.raises(IncsyncError):
            raise error
