"""Tests for incsync.records: records, rejections, pages, the sink's supersede rule, raw parsing."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from incsync.errors import BadRecordError, NaiveDatetimeError
from incsync.records import (
    ApplyResult,
    Page,
    Record,
    RejectedRecord,
    Transaction,
    record_from_raw,
    supersedes,
)
from incsync.timestamps import UTC
from tests.helpers import recursion_limit
from tests.json_values import json_payloads, respelled, same_content
from tests.strategies import BASE_TIME, aware_datetimes, payloads, raw_records, records

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
T1 = T0 + timedelta(seconds=1)
CET = timezone(timedelta(hours=1))


# Record ------------------------------------------------------------------------------------------


def test_record_keeps_updated_at_in_utc() -> None:
    """A record built with a local offset stores the same instant with tzinfo UTC."""
    record = Record(id="1", updated_at=datetime(2024, 3, 1, 13, 0, tzinfo=CET))
    assert record.updated_at == T0
    assert record.updated_at.tzinfo is UTC


def test_record_refuses_a_naive_updated_at() -> None:
    """A naive updated_at is refused with NaiveDatetimeError naming the field."""
    with pytest.raises(NaiveDatetimeError) as caught:
        Record(id="1", updated_at=datetime(2024, 3, 1))  # noqa: DTZ001 - the point of the test
    assert caught.value.field == "updated_at"


@pytest.mark.parametrize("bad_id", ["", 7, None, b"7"])
def test_record_refuses_an_id_that_is_not_non_empty_text(bad_id: Any) -> None:
    """Record ids must be non-empty strings; the error shows the offending value."""
    with pytest.raises(BadRecordError, match="id must be a non-empty string"):
        Record(id=bad_id, updated_at=T0)


@pytest.mark.parametrize(
    "updated_at",
    [
        pytest.param("2024-01-01T00:00:00Z", id="text"),
        pytest.param(5, id="number"),
        pytest.param(None, id="none"),
        pytest.param(T0.date(), id="date"),
    ],
)
def test_record_refuses_an_updated_at_that_is_not_a_datetime(updated_at: Any) -> None:
    """Anything but a datetime is refused with BadRecordError naming the field and the value."""
    with pytest.raises(BadRecordError, match="updated_at must be a timezone-aware datetime"):
        Record(id="1", updated_at=updated_at)


@pytest.mark.parametrize(
    "updated_at",
    [
        pytest.param(datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))), id="max"),
        pytest.param(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))), id="min"),
    ],
)
def test_record_refuses_an_updated_at_with_no_utc_datetime(updated_at: datetime) -> None:
    """An instant outside the years 1 to 9999 in UTC is refused, not an OverflowError."""
    with pytest.raises(BadRecordError, match="outside the range"):
        Record(id="1", updated_at=updated_at)


@pytest.mark.parametrize("bad_id", ["A\ud800", "\udfff", "\udc00\ud800"])
def test_record_refuses_an_id_holding_a_lone_surrogate(bad_id: str) -> None:
    """Broken UTF-16 in an id is no text any store can keep: refused, the id shown escaped."""
    with pytest.raises(BadRecordError, match="id holds a lone surrogate") as caught:
        Record(id=bad_id, updated_at=T0)
    assert caught.value.record_id == bad_id.encode("utf-8", "backslashreplace").decode()
    assert Record(id="🧾\\ud800", updated_at=T0).id == "🧾\\ud800"  # a pair, and plain text


def test_record_defaults_and_key() -> None:
    """A record defaults to an empty payload, not deleted; its key is (updated_at, id)."""
    record = Record(id="INV-1", updated_at=T0)
    assert record.payload == {}
    assert record.deleted is False
    assert record.key == (T0, "INV-1")


def test_record_is_frozen() -> None:
    """Records are immutable values."""
    record = Record(id="1", updated_at=T0)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        record.id = "2"  # type: ignore[misc]


def test_record_equality_is_by_value() -> None:
    """Two records with the same fields are equal, whatever offset their time was given in."""
    assert Record(id="1", updated_at=T0, payload={"a": 1}) == Record(
        id="1", updated_at=datetime(2024, 3, 1, 13, tzinfo=CET), payload={"a": 1}
    )
    assert Record(id="1", updated_at=T0) != Record(id="1", updated_at=T0, deleted=True)


# RejectedRecord ----------------------------------------------------------------------------------


def test_rejected_record_from_error_keeps_id_reason_and_raw_excerpt() -> None:
    """from_error copies the error's record id and reason and keeps repr(raw) for diagnosis."""
    raw = {"id": "7", "updated_at": "soon"}
    rejected = RejectedRecord.from_error(BadRecordError("bad time", record_id="7"), raw)
    assert rejected.record_id == "7"
    assert rejected.reason == "bad time"
    assert rejected.raw == repr(raw)
    assert rejected.seen_at is None


def test_rejected_record_from_error_bounds_the_raw_excerpt() -> None:
    """A huge raw record is cut to 2,000 characters plus an ellipsis."""
    raw = {"blob": "x" * 10_000}
    rejected = RejectedRecord.from_error(BadRecordError("too odd"), raw)
    assert rejected.record_id is None
    assert len(rejected.raw) == 2_001
    assert rejected.raw.endswith("…")
    assert rejected.raw[:-1] == repr(raw)[:2_000]


def test_rejected_record_keeps_broken_text_escaped() -> None:
    """An id or reason with a lone surrogate (a row's id read before its time was refused) is kept
    with the surrogate written as an escape, so every store can keep the entry.
    """
    rejected = RejectedRecord.from_error(
        BadRecordError("cannot read 'x\ud800'", record_id="B\udfff"), {"id": "B\udfff"}
    )
    assert rejected.record_id == "B\\udfff"
    assert rejected.reason == "cannot read 'x\\ud800'"
    assert rejected.fingerprint == "id:B\\udfff"
    assert rejected.raw == repr({"id": "B\udfff"})
    assert RejectedRecord("Zoë 🧾", "ok").record_id == "Zoë 🧾"


def test_rejected_record_from_error_keeps_short_excerpts_whole() -> None:
    """An excerpt of exactly 2,000 characters is kept whole, without an ellipsis."""
    raw = "y" * 1_998  # repr adds the two quotes
    rejected = RejectedRecord.from_error(BadRecordError("odd"), raw)
    assert rejected.raw == repr(raw)
    assert len(rejected.raw) == 2_000


# Page, ApplyResult, Transaction -------------------------------------------------------------------


def test_page_apply_result_and_transaction_defaults() -> None:
    """An empty Page has no records, no rejections, no total; ApplyResult has no rejections."""
    page = Page()
    assert (list(page.records), list(page.rejected), page.total) == ([], [], None)
    assert list(ApplyResult(applied=3).rejected) == []
    record = Record(id="1", updated_at=T0)
    assert Transaction(source_key="s", record=record, generation=2).record is record


# supersedes ---------------------------------------------------------------------------------------


def _version(
    updated_at: datetime, payload: Mapping[str, Any] | None = None, *, deleted: bool = False
) -> Record:
    return Record(id="1", updated_at=updated_at, payload=payload or {"v": 1}, deleted=deleted)


@pytest.mark.parametrize(
    ("incoming", "generation", "stored", "stored_generation", "expected"),
    [
        pytest.param(_version(T1), 0, _version(T0), 0, True, id="newer"),
        pytest.param(_version(T1), 0, _version(T0), 5, True, id="newer-from-older-generation"),
        pytest.param(_version(T0), 0, _version(T1), 0, False, id="older"),
        pytest.param(_version(T0), 9, _version(T1), 0, False, id="older-from-newer-generation"),
        pytest.param(_version(T0), 0, _version(T0), 0, False, id="same-version-same-generation"),
        pytest.param(_version(T0), 1, _version(T0), 0, True, id="same-version-after-reset"),
        pytest.param(_version(T0), 0, _version(T0), 1, False, id="same-version-older-generation"),
        pytest.param(_version(T0, {"v": 2}), 0, _version(T0), 0, True, id="same-time-new-content"),
        pytest.param(
            _version(T0, deleted=True), 0, _version(T0), 0, True, id="same-time-now-deleted"
        ),
        pytest.param(
            _version(T0, {"b": 2, "a": 1}),
            0,
            _version(T0, {"a": 1, "b": 2}),
            0,
            False,
            id="same-time-keys-reordered",
        ),
        pytest.param(_version(T0, {"v": 1.0}), 0, _version(T0), 0, False, id="same-time-1.0-for-1"),
        pytest.param(
            _version(T0, {"v": True}), 0, _version(T0), 0, True, id="same-time-true-for-1"
        ),
    ],
)
def test_supersedes_table(
    incoming: Record, generation: int, stored: Record, stored_generation: int, expected: bool
) -> None:
    """Newer wins, older never does; at an equal time new content or a newer generation wins."""
    assert supersedes(incoming, generation, stored, stored_generation) is expected


@given(records(), records(), st.integers(0, 3), st.integers(0, 3))
def test_supersedes_orders_strictly_by_updated_at(
    incoming: Record, stored: Record, generation: int, stored_generation: int
) -> None:
    """Whatever the content and generations, a newer time always wins and an older never does."""
    result = supersedes(incoming, generation, stored, stored_generation)
    if incoming.updated_at > stored.updated_at:
        assert result
    elif incoming.updated_at < stored.updated_at:
        assert not result


@given(records(), st.integers(0, 3))
def test_reading_the_same_version_again_changes_nothing(record: Record, generation: int) -> None:
    """Re-reading the stored version under the same generation never replaces it (idempotence)."""
    same = attrs.evolve(record, payload=dict(record.payload))
    assert not supersedes(same, generation, record, generation)


@given(records(), st.integers(0, 3))
def test_a_reset_reapplies_the_same_version_exactly_once(record: Record, generation: int) -> None:
    """Under the next generation the same version replaces the stored one once, then never again."""
    assert supersedes(record, generation + 1, record, generation)
    assert not supersedes(record, generation + 1, record, generation + 1)


@given(st.lists(st.tuples(st.integers(0, 4), payloads()), min_size=1, max_size=12))
def test_applying_versions_in_any_order_ends_on_the_newest(
    versions: list[tuple[int, dict[str, Any]]],
) -> None:
    """Folding versions of one record through supersedes, in any read order, keeps the newest.

    The survivor has the greatest updated_at, and among versions stamped alike it holds the content
    read last (the later read is the later state at a second-precision source).
    """
    read = [_version(BASE_TIME + timedelta(seconds=s), payload) for s, payload in versions]
    stored = read[0]
    for incoming in read[1:]:
        if supersedes(incoming, 0, stored, 0):
            stored = incoming
    newest = max(record.updated_at for record in read)
    assert stored.updated_at == newest
    assert stored.payload == [r for r in read if r.updated_at == newest][-1].payload


@given(st.data(), st.booleans(), st.booleans())
def test_at_the_same_time_and_generation_only_a_content_change_supersedes(
    data: st.DataObject, deleted: bool, stored_deleted: bool
) -> None:
    """At an equal updated_at and generation, supersedes is true exactly when deleted differs or
    the payloads differ by the documented content rule (written independently in the tests).
    """
    stored_payload = data.draw(json_payloads(), label="stored")
    payload = data.draw(st.one_of(respelled(stored_payload), json_payloads()), label="incoming")
    incoming = _version(T0, payload, deleted=deleted)
    stored = _version(T0, stored_payload, deleted=stored_deleted)
    changed = deleted != stored_deleted or not same_content(payload, stored_payload)
    assert supersedes(incoming, 0, stored, 0) is changed


def test_supersedes_cannot_compare_a_payload_without_a_json_form() -> None:
    """Versions that must be compared by content raise BadRecordError when one has no JSON form;
    a newer one needs no comparison.
    """
    with pytest.raises(BadRecordError, match="JSON"):
        supersedes(_version(T0, {"v": float("nan")}), 0, _version(T0), 0)
    assert supersedes(_version(T1, {"v": float("nan")}), 0, _version(T0), 0)


# record_from_raw ----------------------------------------------------------------------------------


def test_record_from_raw_builds_a_record_keeping_the_payload() -> None:
    """A well-formed mapping becomes a record whose payload is the raw mapping itself."""
    raw = {"id": "INV-1", "updated_at": "2024-03-01T12:00:00Z", "amount": "10.00"}
    record = record_from_raw(raw)
    assert record == Record(id="INV-1", updated_at=T0, payload=raw)
    assert record.payload is raw


def test_record_from_raw_turns_integer_ids_into_text() -> None:
    """Integer ids (as many APIs send them) become their decimal text."""
    assert record_from_raw({"id": 42, "updated_at": "2024-03-01T12:00:00Z"}).id == "42"
    assert record_from_raw({"id": 0, "updated_at": "2024-03-01T12:00:00Z"}).id == "0"


def test_record_from_raw_uses_custom_fields_and_deleted_flag() -> None:
    """id_field, updated_at_field and deleted are honoured."""
    raw = {"Id": 9, "LastModified": "2024-03-01T13:00:00+01:00"}
    record = record_from_raw(raw, id_field="Id", updated_at_field="LastModified", deleted=True)
    assert (record.id, record.updated_at, record.deleted) == ("9", T0, True)


def test_record_from_raw_accepts_aware_datetime_values() -> None:
    """A source client that already decoded the time may pass an aware datetime."""
    assert record_from_raw({"id": "1", "updated_at": T0}).updated_at == T0


@pytest.mark.parametrize(
    ("raw", "record_id", "reason"),
    [
        pytest.param(["id", 1], None, "expected a JSON object, got list", id="not-a-mapping"),
        pytest.param({"updated_at": "2024-03-01T12:00:00Z"}, None, "'id'", id="no-id"),
        pytest.param({"id": None, "updated_at": "2024-03-01T12:00:00Z"}, None, "None", id="null"),
        pytest.param({"id": True, "updated_at": "2024-03-01T12:00:00Z"}, None, "True", id="bool"),
        pytest.param({"id": "", "updated_at": "2024-03-01T12:00:00Z"}, None, "''", id="empty"),
        pytest.param({"id": 1.5, "updated_at": "2024-03-01T12:00:00Z"}, None, "1.5", id="float"),
        pytest.param({"id": 3}, "3", "'updated_at' is missing", id="no-timestamp"),
        pytest.param({"id": 3, "updated_at": None}, "3", "'updated_at' is missing", id="null-time"),
        pytest.param(
            {"id": 3, "updated_at": "2024-03-01T12:00:00"}, "3", "has no timezone", id="naive"
        ),
        pytest.param({"id": 3, "updated_at": "soon"}, "3", "not an ISO 8601", id="unparseable"),
        pytest.param({"id": 3, "updated_at": 1709294400}, "3", "not int", id="epoch-number"),
    ],
)
def test_record_from_raw_explains_malformed_records(
    raw: Any, record_id: str | None, reason: str
) -> None:
    """Each kind of malformed record raises BadRecordError with the id (when readable) and why."""
    with pytest.raises(BadRecordError) as caught:
        record_from_raw(raw)
    assert caught.value.record_id == record_id
    assert reason in caught.value.reason


@given(raw_records(times=aware_datetimes()))
def test_record_from_raw_round_trips_generated_raw_records(raw: dict[str, Any]) -> None:
    """Any raw record with an id and an aware ISO time becomes a record with that id and instant."""
    record = record_from_raw(raw)
    assert record.id == str(raw["id"])
    assert record.updated_at == datetime.fromisoformat(raw["updated_at"])
    assert record.payload == raw


def test_the_fast_path_builds_the_same_record_as_the_checked_one() -> None:
    """A plain dict with a text id and a UTC ISO time gives a Record equal to Record(...)."""
    raw = {"id": "INV-1", "updated_at": "2026-11-13T09:41:07.123Z", "amount": "1.00"}
    fast = record_from_raw(raw, deleted=True)
    checked = Record(
        id="INV-1",
        updated_at=datetime(2026, 11, 13, 9, 41, 7, 123000, tzinfo=timezone.utc),
        payload=raw,
        deleted=True,
    )
    assert fast == checked
    assert [field.name for field in attrs.fields(Record)] == [
        "id",
        "updated_at",
        "payload",
        "deleted",
    ]
    assert hash(fast.key) == hash(checked.key)


def test_a_row_as_deep_as_json_loads_reads_gets_a_bounded_excerpt() -> None:
    """A row nested 900 levels deep (as json.loads gives) is shown bounded, never recursed into."""
    raw = json.loads('{"id": "x", "tree": ' + "[" * 900 + "]" * 900 + "}")
    with recursion_limit(frames_left=200):
        rejected = RejectedRecord.from_error(BadRecordError("too deep"), raw)
    assert rejected.raw.startswith("{'id': 'x', 'tree': [[[")
    assert len(rejected.raw) <= 2_001


def test_a_row_nested_too_deep_for_repr_is_still_set_aside_with_an_excerpt() -> None:
    """A payload nested thousands of levels deep (json.loads makes them) gets a bounded excerpt."""
    raw: object = []
    for _ in range(100_000):
        raw = [raw]
    rejected = RejectedRecord.from_error(BadRecordError("too deep"), raw)
    assert rejected.raw.startswith("[[[")
    assert len(rejected.raw) <= 2_001
