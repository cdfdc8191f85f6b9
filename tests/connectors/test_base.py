"""Tests for incsync.connectors.base: turning a source's raw pages into pages of records."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incsync.connectors.base import BaseConnector, RawPage
from incsync.cursor import Window
from incsync.errors import BadRecordError
from incsync.records import Page, Record
from tests.strategies import raw_records

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
STAMP = "2024-03-01T12:00:00Z"


class ListConnector(BaseConnector):
    """Serves fixed raw pages, remembering the windows it was asked for."""

    def __init__(self, pages: Sequence[Sequence[Any]], total: int | None = None) -> None:
        self.pages = pages
        self.total = total
        self.windows: list[Window] = []

    def fetch(self, window: Window) -> Iterable[RawPage]:
        self.windows.append(window)
        return self.pages

    def estimated_total(self, window: Window) -> int | None:
        return self.total


class VoidingConnector(ListConnector):
    """A source with its own field names that reports deletions as status VOIDED."""

    id_field = "InvoiceID"
    updated_at_field = "UpdatedDateUTC"
    vendor: ClassVar[str] = "ledger"

    def is_deleted(self, raw: Mapping[str, Any]) -> bool:
        return raw.get("Status") == "VOIDED"


def _good(record_id: Any, seconds: int = 0) -> dict[str, Any]:
    return {"id": record_id, "updated_at": (T0 + timedelta(seconds=seconds)).isoformat()}


def test_base_connector_is_abstract() -> None:
    """BaseConnector cannot be used without implementing fetch."""
    with pytest.raises(TypeError, match="fetch"):
        BaseConnector()


def test_defaults_of_a_connector() -> None:
    """By default a connector is unordered, has no lookback, no total, no secrets, vendor custom."""
    connector = ListConnector([])
    assert connector.ordered is False
    assert connector.lookback == timedelta(0)
    assert (connector.id_field, connector.updated_at_field) == ("id", "updated_at")
    assert connector.vendor == "custom"
    assert list(connector.secrets()) == []
    assert BaseConnector.estimated_total(connector, Window()) is None
    assert connector.is_deleted({"deleted": True}) is False


def test_read_turns_each_raw_page_into_a_page_of_records() -> None:
    """read yields one Page per raw page, records in source order, with the estimated total."""
    connector = ListConnector([[_good("a", 2), _good("b", 1)], [], [_good("c")]], total=3)
    window = Window(start=T0)
    pages = list(connector.read(window))
    assert connector.windows == [window]
    assert [[record.id for record in page.records] for page in pages] == [["a", "b"], [], ["c"]]
    assert all(page.total == 3 for page in pages)
    assert all(list(page.rejected) == [] for page in pages)
    assert pages[0].records[0] == Record(
        id="a", updated_at=T0 + timedelta(seconds=2), payload=_good("a", 2)
    )


def test_integer_ids_become_text() -> None:
    """A numeric id from the source becomes its decimal text."""
    (page,) = ListConnector([[_good(1042)]]).read(Window())
    assert [record.id for record in page.records] == ["1042"]


@pytest.mark.parametrize(
    ("bad", "record_id", "reason"),
    [
        pytest.param({"updated_at": STAMP}, None, "'id'", id="no-id"),
        pytest.param({"id": True, "updated_at": STAMP}, None, "True", id="bool-id"),
        pytest.param({"id": "", "updated_at": STAMP}, None, "non-empty", id="empty-id"),
        pytest.param({"id": "X-1"}, "X-1", "'updated_at' is missing", id="no-timestamp"),
        pytest.param(
            {"id": "X-1", "updated_at": "2024-03-01T12:00:00"}, "X-1", "no timezone", id="naive"
        ),
        pytest.param(
            {"id": "X-1", "updated_at": "last tuesday"}, "X-1", "not an ISO 8601", id="unparseable"
        ),
        pytest.param(["X-1", STAMP], None, "expected a JSON object, got list", id="not-a-mapping"),
        pytest.param(None, None, "expected a JSON object, got NoneType", id="null"),
    ],
)
def test_bad_records_are_set_aside_and_the_page_goes_on(
    bad: Any, record_id: str | None, reason: str
) -> None:
    """A malformed record is rejected with its id and reason; the records around it are kept."""
    connector = ListConnector([[_good("before"), bad, _good("after", 1)], [_good("next", 2)]])
    first, second = connector.read(Window())
    assert [record.id for record in first.records] == ["before", "after"]
    (rejected,) = first.rejected
    assert rejected.record_id == record_id
    assert reason in rejected.reason
    assert rejected.raw == repr(bad)
    assert [record.id for record in second.records] == ["next"]


def test_is_deleted_turns_records_into_tombstones_with_custom_fields() -> None:
    """is_deleted marks records deleted; id_field/updated_at_field pick the source's own keys."""
    raws = [
        {"InvoiceID": 7, "UpdatedDateUTC": STAMP, "Status": "PAID"},
        {"InvoiceID": 8, "UpdatedDateUTC": STAMP, "Status": "VOIDED"},
    ]
    (page,) = VoidingConnector([raws]).read(Window())
    assert [(record.id, record.deleted) for record in page.records] == [("7", False), ("8", True)]
    assert page.records[1].payload == raws[1]


def test_a_subclass_may_override_to_record() -> None:
    """read uses the subclass's to_record, and its BadRecordError sets a record aside."""

    class Strict(ListConnector):
        def to_record(self, raw: Mapping[str, Any]) -> Record:
            if raw.get("currency") != "USD":
                raise BadRecordError("only USD is supported", record_id=str(raw.get("id")))
            return super().to_record(raw)

    page = next(
        Strict([[{**_good(1), "currency": "USD"}, {**_good(2), "currency": "EUR"}]]).read(Window())
    )
    assert [record.id for record in page.records] == ["1"]
    assert [(r.record_id, r.reason) for r in page.rejected] == [("2", "only USD is supported")]


def test_read_is_lazy() -> None:
    """Pages are fetched as they are consumed, so a failing source fails at the failing page."""
    fetched: list[int] = []

    class Failing(BaseConnector):
        def fetch(self, window: Window) -> Iterable[RawPage]:
            fetched.append(0)
            yield [_good("a")]
            fetched.append(1)
            raise RuntimeError("connection dropped")

    pages = Failing().read(Window())
    assert fetched == []
    assert [record.id for record in next(pages).records] == ["a"]
    with pytest.raises(RuntimeError, match="connection dropped"):
        next(pages)
    assert fetched == [0, 1]


@given(st.lists(st.lists(raw_records(), max_size=5), max_size=4), st.data())
def test_good_records_survive_any_mix_of_bad_ones(
    raw_pages: list[list[dict[str, Any]]], data: st.DataObject
) -> None:
    """Whatever bad records are mixed in, every good one is read and every bad one set aside."""
    bad_kinds: list[Any] = [None, [], {"id": ""}, {"id": "z"}, {"id": 1, "updated_at": "no"}]
    mixed: list[list[Any]] = []
    for raw_page in raw_pages:
        page: list[Any] = list(raw_page)
        for bad in data.draw(st.lists(st.sampled_from(bad_kinds), max_size=3)):
            page.insert(data.draw(st.integers(0, len(page))), bad)
        mixed.append(page)
    pages: list[Page] = list(ListConnector(mixed).read(Window()))
    assert len(pages) == len(mixed)
    for page_read, raw_page, page_sent in zip(pages, raw_pages, mixed, strict=True):
        assert [record.id for record in page_read.records] == [str(raw["id"]) for raw in raw_page]
        assert len(page_read.rejected) == len(page_sent) - len(raw_page)


def test_a_timestamp_outside_the_datetime_range_is_set_aside() -> None:
    """A record stamped 0001-01-01T00:00:00+01:00 (.NET MinValue in CET) is set aside, not fatal."""
    connector = ListConnector(
        [[_good("a"), {"id": "b", "updated_at": "0001-01-01T00:00:00+01:00"}]]
    )
    (page,) = connector.read(Window())
    assert [record.id for record in page.records] == ["a"]
    assert [rejected.record_id for rejected in page.rejected] == ["b"]


def test_page_of_builds_one_page_for_connectors_that_override_read() -> None:
    """page_of turns one raw page into records, malformed rows set aside with their reasons."""
    connector = VoidingConnector([])
    page = connector.page_of(
        [
            {"InvoiceID": "a", "UpdatedDateUTC": STAMP, "Status": "VOIDED"},
            {"InvoiceID": "b"},
        ],
        total=7,
    )
    assert [(record.id, record.deleted) for record in page.records] == [("a", True)]
    assert [rejected.record_id for rejected in page.rejected] == ["b"]
    assert page.total == 7


def test_read_holds_no_page_while_the_next_is_fetched() -> None:
    """Once the consumer lets a page go, nothing in read() keeps it alive during the next fetch."""
    first_gone_during_fetch: list[bool] = []

    class Watching(ListConnector):
        def fetch(self, window: Window) -> Iterable[RawPage]:
            yield [_good("a")]
            gc.collect()
            first_gone_during_fetch.append(first() is None)
            yield [_good("b", 1)]

    reader = Watching([]).read(Window())
    first = weakref.ref(next(reader))
    next(reader)
    assert first_gone_during_fetch == [True]
