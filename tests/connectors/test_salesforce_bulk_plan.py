"""The decisions of a Salesforce bulk read, without I/O: spans, waits, and CSV read back."""

from __future__ import annotations

import bisect
import itertools
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from incsync.errors import BadRecordError, BadResponseError
from incsync.vendors._salesforce_bulk import (
    BulkPlan,
    CountSpan,
    FieldKind,
    ReadSpan,
    Span,
    column_readers,
    csv_rows,
    field_kinds,
    poll_delay,
    rest_row,
    span_filter,
    time_key,
    wants_bulk,
)

UTC = timezone.utc
BASE = datetime(2024, 6, 3, tzinfo=UTC)
MS = timedelta(milliseconds=1)


def inside(span: Span, moment: datetime) -> bool:
    return (span.start is None or moment >= span.start) and (span.end is None or moment < span.end)


def exported_spans(
    stamps: list[datetime], window: int, start: datetime | None, now: datetime
) -> tuple[list[ReadSpan], int]:
    """Run a plan over rows stamped ``stamps`` (sorted), counting exactly; return what it read."""
    plan = BulkPlan.starting(
        start, len(stamps), earliest=stamps[0], now=now, resolution=MS, window=window
    )
    counted: list[Span] = []

    def count(span: Span) -> int:
        counted.append(span)
        return sum(inside(span, stamp) for stamp in stamps)

    return plan.spans(count), len(counted)


@settings(max_examples=300, deadline=None)
@given(
    offsets=st.lists(
        st.one_of(st.integers(0, 50), st.integers(0, 10**10), st.just(7_000)),
        min_size=1,
        max_size=400,
    ),
    window=st.integers(1, 60),
    open_start=st.booleans(),
    past_now=st.integers(0, 5),
)
def test_the_spans_cover_every_row_once_in_time_order(
    offsets: list[int], window: int, open_start: bool, past_now: int
) -> None:
    """Whatever the rows' times (crowded ticks, years apart, some after "now"), the spans read
    are disjoint and ascending, hold every row once, and each is sorted within the window or is
    one tick streamed as it comes."""
    stamps = sorted(BASE + offset * MS for offset in offsets)
    now = stamps[len(stamps) // 2] if past_now else stamps[-1]
    start = None if open_start else stamps[0] - 5 * MS
    read, counts = exported_spans(stamps, window, start, now)
    for stamp in stamps:
        assert sum(inside(step.span, stamp) for step in read) == 1
    for before, after in itertools.pairwise(read):
        assert before.span.end is not None
        assert after.span.start is not None
        assert before.span.end <= after.span.start
    for step in read:
        held = sum(inside(step.span, stamp) for stamp in stamps)
        if step.in_order:
            # Only what lies outside the read's moments (no width to split) may pass the window.
            assert held <= window or step.span.high == step.span.low
        else:
            assert step.span.start is not None
            assert step.span.end == step.span.start + MS
    assert len(read) + counts <= 4 * 48 * (len(stamps) // window + 2)


def test_a_read_that_fits_is_one_job_with_no_count() -> None:
    read, counts = exported_spans([BASE, BASE + MS], 10, None, BASE)
    assert counts == 0
    assert [(step.span.start, step.span.end, step.in_order) for step in read] == [
        (None, None, True)
    ]


def test_a_span_counted_empty_is_dropped_without_a_job() -> None:
    stamps = [BASE] * 5 + [BASE + timedelta(days=300)] * 5
    read, _ = exported_spans(stamps, 5, None, BASE + timedelta(days=300))
    assert len(read) == 2


def test_a_crowded_tick_is_cut_out_and_streamed() -> None:
    stamps = [BASE + timedelta(seconds=1)] * 50
    read, _ = exported_spans(stamps, 10, None, BASE + timedelta(seconds=1))
    streamed = [step for step in read if not step.in_order]
    assert [(s.span.start, s.span.end) for s in streamed] == [
        (BASE + timedelta(seconds=1), BASE + timedelta(seconds=1) + MS)
    ]


def test_span_filters_are_millisecond_soql_literals() -> None:
    span = Span(BASE, BASE + MS, BASE, BASE + MS)
    assert span_filter(span) == (
        " WHERE SystemModstamp >= 2024-06-03T00:00:00.000Z"
        " AND SystemModstamp < 2024-06-03T00:00:00.001Z"
    )
    assert span_filter(Span(None, None, BASE, BASE)) == ""


def test_waits_between_looks_grow_by_a_second_up_to_ten() -> None:
    assert [poll_delay(n) for n in range(11)] == [*map(float, range(1, 11)), 10.0]
    assert poll_delay(10_000) == 10.0


@pytest.mark.parametrize(
    ("total", "threshold", "more", "wanted"),
    [
        (10_000, 10_000, True, True),
        (9_999, 10_000, True, False),
        (50_000, 10_000, False, False),  # the first answer held everything
        (50_000, None, True, False),
        (None, 10_000, True, False),
    ],
)
def test_bulk_is_wanted_for_reads_at_the_threshold_that_page(
    total: int | None, threshold: int | None, more: bool, wanted: bool
) -> None:
    assert wants_bulk(total, threshold, more=more) is wanted


KINDS = {
    "id": FieldKind.TEXT,
    "t": FieldKind.TEXT,
    "b": FieldKind.BOOLEAN,
    "i": FieldKind.INTEGER,
    "d": FieldKind.DECIMAL,
    "s": FieldKind.DATETIME,
}
ATTRIBUTES = {"type": "X__c", "url": "/services/data/v59.0/sobjects/X__c/a"}


def test_csv_values_become_the_rest_api_s() -> None:
    header = ["Id", "T", "B", "I", "D", "S"]
    row = rest_row(
        header,
        ["a", 'x,"y"\n', "true", "-12", "1e+21", "2024-06-03T09:00:01.250Z"],
        column_readers(header, KINDS),
        ATTRIBUTES,
    )
    assert row == {
        "attributes": ATTRIBUTES,
        "Id": "a",
        "T": 'x,"y"\n',
        "B": True,
        "I": -12,
        "D": 1e21,
        "S": "2024-06-03T09:00:01.250+0000",
    }
    assert list(row) == ["attributes", "Id", "T", "B", "I", "D", "S"]
    blank = rest_row(header, ["a", "", "", "", "", ""], column_readers(header, KINDS), ATTRIBUTES)
    assert blank == {"attributes": ATTRIBUTES, "Id": "a"} | dict.fromkeys("TBIDS")


@pytest.mark.parametrize(
    ("column", "text"),
    [("B", "TRUE"), ("B", "1"), ("I", "1.5"), ("I", "٣"), ("D", "NaN"), ("D", "inf"), ("S", "x")],
)
def test_a_value_that_is_not_its_field_s_type_is_a_bad_record(column: str, text: str) -> None:
    with pytest.raises(BadRecordError, match=f"field {column} is"):
        rest_row(["Id", column], ["a", text], column_readers(["Id", column], KINDS), ATTRIBUTES)


def test_columns_come_back_in_the_order_selected() -> None:
    """Before API version 50.0 Salesforce wrote the columns alphabetically."""
    header, rows = csv_rows('"A","b","C"\n"1","2","3"\n', ["C", "A", "B"], expected=1)
    assert header == ["C", "A", "b"]
    assert rows == [["3", "1", "2"]]


def test_a_long_text_area_at_its_limit_is_read() -> None:
    long = "x" * 131_072
    _, rows = csv_rows(f'"Id"\n"{long}"\n', ["Id"], expected=1)
    assert rows == [[long]]


@pytest.mark.parametrize(
    ("text", "expected", "problem"),
    [
        ('"Id","Id"\n', None, "not the fields selected"),
        ('"Id"\n"a\n', None, "is no CSV"),
        ('"Id"\n"a","b"\n', None, "do not match"),
        ('"Id"\n"a"\n', 2, "Sforce-NumberOfRecords says 2"),
        ("", None, "not the fields selected"),
    ],
)
def test_results_that_cannot_be_the_job_s_are_bad_responses(
    text: str, expected: int | None, problem: str
) -> None:
    with pytest.raises(BadResponseError, match=problem):
        csv_rows(text, ["Id"], expected=expected)


def test_the_describe_says_each_field_s_kind_and_what_bulk_cannot_read() -> None:
    described = {
        "fields": [
            {"name": "Id", "type": "id"},
            {"name": "Amount", "type": "currency"},
            {"name": "BillingAddress", "type": "address"},
            {"name": "Closed", "type": "boolean"},
        ]
    }
    kinds, refusal = field_kinds(described, ["id", "Amount", "Closed"])
    assert kinds == {"id": FieldKind.TEXT, "amount": FieldKind.DECIMAL, "closed": FieldKind.BOOLEAN}
    assert refusal == ""
    _, refusal = field_kinds(described, ["Id", "BillingAddress", "Gone__c"])
    assert (
        refusal
        == "a bulk query cannot read BillingAddress (address), Gone__c (not in the describe)"
    )
    with pytest.raises(BadResponseError, match="no 'fields' list"):
        field_kinds(["not", "a", "describe"], ["Id"])


def test_split_points_stay_on_the_millisecond_grid() -> None:
    stamps = [BASE + timedelta(microseconds=999)] * 3 + [BASE + timedelta(seconds=7)] * 3
    plan = BulkPlan.starting(None, 6, earliest=stamps[0], now=stamps[-1], resolution=MS, window=2)
    step = plan.next_step()
    assert isinstance(step, CountSpan)
    assert step.span.end is not None
    micros = [step.span.end.microsecond, step.span.low.microsecond]
    assert all(m % 1_000 == 0 for m in micros)
    assert bisect.bisect_left(stamps, step.span.end) in range(7)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("2024-06-03T09:00:01.250Z", "2024-06-03T09:00:01.250"),
        ("2024-06-03T11:00:01.25+02:00", "2024-06-03T09:00:01.250"),
        ("0999-01-01T00:00:00.000Z", "0999-01-01T00:00:00.000"),
        ("yesterday", ""),
    ],
)
def test_times_sort_by_their_utc_text(text: str, key: str) -> None:
    assert time_key(text) == key


def test_a_time_in_another_form_is_written_as_the_rest_api_writes_it() -> None:
    header = ["S"]
    row = rest_row(header, ["2024-06-03T11:00:01+02:00"], column_readers(header, KINDS), ATTRIBUTES)
    assert row["S"] == "2024-06-03T09:00:01.000+0000"


def test_a_start_between_ticks_is_read_from_its_tick() -> None:
    start = BASE + timedelta(microseconds=1_500)
    stamps = [BASE + 2 * MS] * 4 + [BASE + 9 * MS] * 4
    plan = BulkPlan.starting(start, 8, earliest=stamps[0], now=stamps[-1], resolution=MS, window=4)
    spans = plan.spans(lambda span: sum(inside(span, stamp) for stamp in stamps))
    assert spans[0].span.start == BASE + MS
    assert sum(step.span.start is None for step in spans) == 0
