"""The printed formats, as pure functions: progress lines, results, set-aside records."""

from __future__ import annotations

import io
import json
from datetime import date, datetime, timedelta

import attrs

from incsync.integrations.cli._output import rejected_json, rejected_text, result_text
from incsync.integrations.cli._progress import progress_board, progress_text
from incsync.records import RejectedRecord, raw_excerpt
from incsync.results import CycleProgress, CycleResult, Outcome
from incsync.timestamps import UTC


def test_progress_names_pages_records_rate_and_eta_when_the_total_is_known() -> None:
    """With a total the line shows it and the time left; without one, neither."""
    known = CycleProgress("acme", 12, 6_000, 6_000, timedelta(seconds=4), total=9_006_000)
    assert progress_text(known) == (
        "acme: page 12, 6,000/9,006,000 records, 1,500 records/s, ETA 1:40:00"
    )
    unknown = CycleProgress("acme", 1, 200, 200, timedelta(seconds=2))
    assert progress_text(unknown) == "acme: page 1, 200 records, 100 records/s"


def test_log_lines_are_spaced_by_the_interval() -> None:
    """Off a terminal the first page is logged, then at most one line per interval."""
    stream = io.StringIO()
    display = progress_board(io.StringIO(), stream, interval=3600).cycle("acme")
    for pages in range(1, 6):
        display.update(CycleProgress("acme", pages, pages, pages, timedelta(seconds=1)))
    display.close()
    assert stream.getvalue() == "acme: page 1, 1 record, 1 records/s\n"


def test_a_failed_result_shows_the_error_with_secrets_masked() -> None:
    """The error line masks the given secret values, wherever they appear."""
    result = CycleResult(
        source_key="acme",
        outcome=Outcome.FAILED,
        error="HTTP 401 with key sk_live_abcdef123456",
        error_class="AuthError",
    )
    text = result_text(result, ["sk_live_abcdef123456"])
    assert text.splitlines() == [
        "acme: failed: 0 fetched, 0 applied, 0 already applied, 0 set aside, 0 pages in 0.00s",
        "  error: AuthError: HTTP 401 with key ***",
    ]


def test_set_aside_records_cannot_drive_the_terminal() -> None:
    """Ids, reasons and excerpts come from the source: control characters are shown escaped."""
    seen = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    records = [RejectedRecord("A\x1b[2J", "bad\ntime", raw="{'x': '\x07'}", seen_at=seen)]
    assert rejected_text("acme", records) == (
        "acme: 1 record set aside\n"
        "- A\\x1b[2J (seen 2026-11-01T12:00:00+00:00): bad\\x0atime\n"
        "    {'x': '\\x07'}\n"
    )


def test_counts_of_one_take_the_singular() -> None:
    """Exactly one page, record or set-aside record reads "1 page", never "1 pages"."""
    one = CycleResult(source_key="acme", outcome=Outcome.COMPLETED, fetched=1, applied=1, pages=1)
    assert result_text(one).endswith(", 1 page in 0.00s")
    two = attrs.evolve(one, pages=2)
    assert result_text(two).endswith(", 2 pages in 0.00s")
    assert progress_text(CycleProgress("acme", 1, 1, 1, timedelta(seconds=1))) == (
        "acme: page 1, 1 record, 1 records/s"
    )
    assert progress_text(CycleProgress("acme", 1, 0, 0, timedelta(seconds=1), total=1)) == (
        "acme: page 1, 0/1 record, 0 records/s"
    )
    record = RejectedRecord("A", "bad time", raw="")
    assert rejected_text("acme", [record]).startswith("acme: 1 record set aside\n")
    assert rejected_text("acme", [record, record]).startswith("acme: 2 records set aside\n")


def test_rejected_json_gives_the_row_as_json_or_says_it_is_text() -> None:
    """A stored excerpt that reads back whole is the row itself; one that does not (a repr
    holding a date, one cut short) is kept as text in raw_text, with raw null."""
    records = [
        RejectedRecord("A", "no time", raw=raw_excerpt({"id": "A", "n": 1, "ok": True})),
        RejectedRecord("B", "no time", raw='{"id": "B", "tags": ["x"]}'),
        RejectedRecord("C", "bad time", raw=raw_excerpt({"at": date(2026, 11, 1)})),
        RejectedRecord("D", "too big", raw=raw_excerpt({"body": "x" * 5_000})),
    ]
    entries = json.loads(rejected_json("acme", records))["rejected"]
    assert [(entry["raw"], entry["raw_text"]) for entry in entries] == [
        ({"id": "A", "n": 1, "ok": True}, None),
        ({"id": "B", "tags": ["x"]}, None),
        (None, "{'at': datetime.date(2026, 11, 1)}"),
        (None, records[3].raw),
    ]
    assert records[3].raw.endswith("…")
