"""Tests for incsync.connectors.memory: a source held in memory and its keyset-paging connector."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incsync.connectors.memory import InMemoryConnector, InMemorySource, iso_timestamp
from incsync.cursor import Cursor, Window
from incsync.errors import ConfigurationError, TransientSourceError
from incsync.records import Record
from tests.strategies import clustered_datetimes, record_ids

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _source(*entries: tuple[str, float], **fields: Any) -> InMemorySource:
    """A source holding a record per (id, seconds after T0)."""
    source = InMemorySource()
    for record_id, seconds in entries:
        source.put({"id": record_id, "updated_at": iso_timestamp(_at(seconds)), **fields})
    return source


def _read(connector: InMemoryConnector, window: Window | None = None) -> list[Record]:
    return [
        record
        for page in connector.read(Window() if window is None else window)
        for record in page.records
    ]


def _ids(records: list[Record]) -> list[str]:
    return [record.id for record in records]


# iso_timestamp / InMemorySource -------------------------------------------------------------------


def test_iso_timestamp_is_utc_milliseconds_with_z() -> None:
    """iso_timestamp writes UTC with millisecond precision and a Z, like most APIs."""
    local = datetime(2024, 3, 1, 13, 0, 5, 678_999, tzinfo=timezone(timedelta(hours=1)))
    assert iso_timestamp(local) == "2024-03-01T12:00:05.678Z"
    assert iso_timestamp(T0) == "2024-03-01T12:00:00.000Z"


def test_source_put_replaces_by_id_and_snapshot_copies() -> None:
    """put creates or replaces by id; snapshot and ids reflect the current records, as copies."""
    source = _source(("a", 0), ("b", 1))
    source.put({"id": "a", "updated_at": iso_timestamp(_at(5)), "v": 2})
    assert len(source) == 2
    assert sorted(source.ids()) == ["a", "b"]
    snapshot = source.snapshot()
    assert snapshot["a"] == {"id": "a", "updated_at": iso_timestamp(_at(5)), "v": 2}
    snapshot["a"]["v"] = 99
    assert source.snapshot()["a"]["v"] == 2


def test_source_update_and_delete_stamp_the_record() -> None:
    """update changes fields and the timestamp; delete sets the deleted flag at a time."""
    source = _source(("a", 0))
    source.update("a", _at(10), status="PAID")
    assert source.snapshot()["a"] == {
        "id": "a",
        "updated_at": iso_timestamp(_at(10)),
        "status": "PAID",
    }
    source.delete("a", _at(20))
    assert source.snapshot()["a"]["deleted"] is True
    assert source.snapshot()["a"]["updated_at"] == iso_timestamp(_at(20))


def test_source_page_is_a_keyset_page() -> None:
    """page returns up to limit records with updated_at >= start, strictly after the given key."""
    source = _source(("a", 0), ("b", 1), ("c", 1), ("d", 2))
    assert [r["id"] for r in source.page(None, None, 10)] == ["a", "b", "c", "d"]
    assert [r["id"] for r in source.page(_at(1), None, 10)] == ["b", "c", "d"]
    assert [r["id"] for r in source.page(None, (_at(1), "b"), 10)] == ["c", "d"]
    assert [r["id"] for r in source.page(_at(0), (_at(1), "b"), 1)] == ["c"]
    assert [r["id"] for r in source.matching(_at(1))] == ["b", "c", "d"]


# ordered reads ------------------------------------------------------------------------------------


def test_ordered_read_pages_in_updated_at_then_id_order() -> None:
    """Records come in (updated_at, id) order, page_size at a time, whatever order they were put."""
    source = _source(("c", 2), ("a", 3), ("b", 1), ("e", 0), ("d", 2))
    connector = InMemoryConnector(source, page_size=2)
    pages = list(connector.read(Window()))
    assert [_ids(list(page.records)) for page in pages] == [["e", "b"], ["c", "d"], ["a"]]
    assert connector.ordered is True


def test_start_is_inclusive() -> None:
    """A record stamped exactly at the window start is returned; earlier ones are not."""
    source = _source(("early", 0), ("at-start", 10), ("late", 20))
    assert _ids(_read(InMemoryConnector(source), Window(start=_at(10)))) == ["at-start", "late"]


def test_ties_across_page_boundaries_are_each_returned_once() -> None:
    """Many records sharing one timestamp, split over pages, are all returned exactly once."""
    ids = [f"INV-{n:03d}" for n in range(11)]
    source = _source(*((record_id, 5) for record_id in ids), ("before", 0), ("after", 9))
    for page_size in (1, 2, 3, 4, 11, 50):
        read = _ids(_read(InMemoryConnector(source, page_size=page_size), Window(start=_at(5))))
        assert read == [*ids, "after"], page_size


@given(
    st.dictionaries(record_ids(), clustered_datetimes(3), max_size=25),
    st.integers(min_value=1, max_value=7),
    st.none() | clustered_datetimes(3),
)
def test_ordered_read_returns_every_matching_record_once_in_key_order(
    stamps: dict[str, datetime], page_size: int, start: datetime | None
) -> None:
    """For any records and page size, the read is exactly the matching records, sorted by key;
    an unordered read returns the same records, each once."""
    source = InMemorySource()
    for record_id, stamp in stamps.items():
        source.put({"id": record_id, "updated_at": iso_timestamp(stamp)})
    pages = list(InMemoryConnector(source, page_size=page_size).read(Window(start=start)))
    read = [record.key for page in pages for record in page.records]
    expected = sorted((t, i) for i, t in stamps.items() if start is None or t >= start)
    assert read == expected
    assert all(len(page.records) <= page_size for page in pages)
    unordered = InMemoryConnector(source, page_size=page_size, ordered=False)
    assert (
        sorted(
            record.key for page in unordered.read(Window(start=start)) for record in page.records
        )
        == expected
    )


def test_a_record_updated_ahead_of_the_read_is_returned_in_its_new_version() -> None:
    """Each page sees the source as it is when fetched: a record already read that is updated
    to a later time comes again, once, at its new position."""
    source = _source(("a", 0), ("b", 1), ("c", 2), ("d", 3))

    def update(number: int) -> None:
        if number == 1:
            source.update("a", _at(10), status="PAID")

    records = _read(InMemoryConnector(source, page_size=2, before_page=update))
    assert _ids(records) == ["a", "b", "c", "d", "a"]
    assert records[-1].updated_at == _at(10)
    assert records[-1].payload["status"] == "PAID"


def test_a_late_commit_behind_the_read_is_not_returned_until_the_next_read() -> None:
    """A record appearing with a timestamp before the keyset position is missed by this read
    (as at a real vendor) and found by the next read whose window covers it."""
    source = _source(("a", 0), ("b", 1), ("c", 2), ("d", 3))

    def late_commit(number: int) -> None:
        if number == 1:
            source.put({"id": "late", "updated_at": iso_timestamp(_at(0.5))})

    connector = InMemoryConnector(source, page_size=2, before_page=late_commit)
    assert _ids(_read(connector)) == ["a", "b", "c", "d"]
    connector.before_page = None
    assert "late" in _ids(_read(connector, Window(start=_at(0), cursor=Cursor(_at(3), "d"))))


def test_a_record_created_ahead_of_the_read_is_returned() -> None:
    """A record created mid-read with a time after the keyset position appears in a later page."""
    source = _source(("a", 0), ("b", 1), ("c", 2))

    def create(number: int) -> None:
        if number == 1:
            source.put({"id": "new", "updated_at": iso_timestamp(_at(9))})

    assert _ids(_read(InMemoryConnector(source, page_size=2, before_page=create))) == [
        "a",
        "b",
        "c",
        "new",
    ]


# unordered reads ----------------------------------------------------------------------------------


def test_unordered_read_returns_the_same_set_in_another_order() -> None:
    """Unordered mode returns exactly the matching records once each, shuffled, page by page."""
    source = _source(*((f"r{n:02d}", n % 7) for n in range(40)))
    ordered = _ids(_read(InMemoryConnector(source, page_size=6), Window(start=_at(2))))
    connector = InMemoryConnector(source, page_size=6, ordered=False, seed=3)
    pages = list(connector.read(Window(start=_at(2))))
    unordered = [record.id for page in pages for record in page.records]
    assert connector.ordered is False
    assert Counter(unordered) == Counter(ordered)
    assert unordered != ordered
    assert [len(page.records) for page in pages] == [6, 6, 6, 6, 4]  # 28 of 40 match


def test_unordered_read_uses_the_matching_records_at_the_start_of_the_read() -> None:
    """Unordered mode takes its list when the read starts; later changes do not show up."""
    source = _source(("a", 0), ("b", 1), ("c", 2))

    def create(number: int) -> None:
        source.put({"id": f"new-{number}", "updated_at": iso_timestamp(_at(9))})

    connector = InMemoryConnector(source, page_size=1, ordered=False, before_page=create)
    assert sorted(_ids(_read(connector))) == ["a", "b", "c"]


def test_unordered_shuffle_is_seeded() -> None:
    """Two connectors with the same seed read the same order."""
    source = _source(*((f"r{n:02d}", n) for n in range(30)))

    def read(seed: int) -> list[str]:
        return _ids(_read(InMemoryConnector(source, ordered=False, seed=seed)))

    assert read(5) == read(5)
    assert read(5) != read(6)


# hooks, totals, deletions, configuration ----------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize(("count", "pages"), [(0, 0), (4, 2), (5, 3), (6, 3)])
def test_before_page_is_called_before_each_page_and_once_at_the_end(
    ordered: bool, count: int, pages: int
) -> None:
    """before_page gets 0..pages-1 before each page and pages once more before the read ends."""
    calls: list[int] = []
    source = _source(*((f"r{n}", n) for n in range(count)))
    connector = InMemoryConnector(source, page_size=2, ordered=ordered, before_page=calls.append)
    assert len(list(connector.read(Window()))) == pages
    assert calls == list(range(pages + 1))


@pytest.mark.parametrize("ordered", [True, False])
def test_before_page_can_fail_the_read_mid_way(ordered: bool) -> None:
    """An error raised by before_page reaches the reader after the pages already yielded."""

    def fail_second(number: int) -> None:
        if number == 1:
            raise TransientSourceError("502 from vendor", vendor="memory")

    source = _source(("a", 0), ("b", 1), ("c", 2))
    pages = InMemoryConnector(source, page_size=2, ordered=ordered, before_page=fail_second).read(
        Window()
    )
    assert len(next(pages).records) == 2
    with pytest.raises(TransientSourceError, match="502"):
        next(pages)


def test_page_delay_sleeps_before_each_page(monkeypatch: pytest.MonkeyPatch) -> None:
    """page_delay stands in for network time: one sleep before every fetch."""
    slept: list[float] = []
    monkeypatch.setattr("incsync.connectors.memory.time.sleep", slept.append)
    source = _source(("a", 0), ("b", 1), ("c", 2))
    list(InMemoryConnector(source, page_size=2, page_delay=0.25).read(Window()))
    assert slept == [0.25, 0.25, 0.25]


def test_pages_carry_the_estimated_total() -> None:
    """Each page reports how many records matched the window when the read started."""
    source = _source(("a", 0), ("b", 1), ("c", 2))
    connector = InMemoryConnector(source, page_size=2)
    assert connector.estimated_total(Window(start=_at(1))) == 2
    assert [page.total for page in connector.read(Window(start=_at(1)))] == [2]


def test_the_estimated_total_of_a_bounded_window_counts_only_the_records_before_its_end() -> None:
    """A partition's window ends before the newest records: its total counts what it will read."""
    source = _source(("a", 0), ("b", 1), ("c", 2), ("d", 3))
    connector = InMemoryConnector(source, page_size=2)
    window = Window(start=_at(1), end=_at(3), partition=True)
    assert connector.estimated_total(window) == len(_read(connector, window)) == 2
    assert connector.estimated_total(Window(end=_at(1), partition=True)) == 1


def test_deleted_records_become_tombstones() -> None:
    """A record deleted at the source is read as a record with deleted=True."""
    source = _source(("a", 0), ("b", 1))
    source.delete("a", _at(5))
    records = _read(InMemoryConnector(source))
    assert [(record.id, record.deleted) for record in records] == [("b", False), ("a", True)]


def test_custom_field_names_are_taken_from_the_source() -> None:
    """The connector reads the id, time and deletion flag under the source's own field names."""
    source = InMemorySource(id_field="Id", updated_at_field="Modified", deleted_field="IsDeleted")
    source.put({"Id": 7, "Modified": iso_timestamp(_at(1))})
    source.put({"Id": 3, "Modified": iso_timestamp(_at(1)), "IsDeleted": True})
    connector = InMemoryConnector(source, page_size=1)
    assert (connector.id_field, connector.updated_at_field) == ("Id", "Modified")
    records = _read(connector)
    assert [(record.id, record.deleted) for record in records] == [("3", True), ("7", False)]


def test_page_size_must_be_positive() -> None:
    """A page size below 1 is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="page_size"):
        InMemoryConnector(InMemorySource(), page_size=0)


def test_declared_secret_and_settings() -> None:
    """secrets() returns the declared credential (none by default); lookback is kept."""
    source = InMemorySource()
    assert InMemoryConnector(source).secrets() == []
    connector = InMemoryConnector(source, secret="sk_test_123", lookback=timedelta(minutes=2))
    assert connector.secrets() == ["sk_test_123"]
    assert connector.lookback == timedelta(minutes=2)
    assert connector.vendor == "memory"
