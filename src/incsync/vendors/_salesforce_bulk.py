"""Salesforce Bulk API 2.0 query jobs for large reads: every decision, with no I/O.

A read whose first REST answer says it holds at least :data:`BULK_THRESHOLD` rows is exported by
query jobs instead of paged through ``query``. A job's results come in no order (Salesforce
splits a large job into chunks by Id and does not sort: ``ORDER BY`` would turn the chunking off),
while the engine checkpoints a page's highest ``(SystemModstamp, Id)`` and resumes a crashed read
from there. So the read is cut into **spans** of ``SystemModstamp``, each exported by one job
with no ``ORDER BY``:

1. :class:`BulkPlan` starts with one span: the whole read, ``SystemModstamp >= start``, with the
   count the REST answer gave. A span holding more rows than :data:`BULK_WINDOW` is halved at its
   middle moment, and each half is counted (``SELECT COUNT()``), until every span fits. A span
   counted empty is dropped.
2. A span that fits is exported whole, its rows sorted by ``(SystemModstamp, Id)``, and passed on
   in pages of the connector's batch size (:class:`ReadSpan` with ``in_order``).
3. A span one tick wide (one millisecond, the grain of a SOQL literal) cannot be halved: a data
   load stamps many rows in one second. Its rows all share one ``SystemModstamp``, so any order
   is the order: it is passed on as the results come, however many rows it holds.
4. The spans are planned before any job runs (:meth:`BulkPlan.spans`), so the jobs of the next
   :data:`JOBS_AHEAD` spans are created while one span's rows are passed on: Salesforce runs
   them meanwhile, and their rows are read in turn.

Why that keeps every guarantee of the engine: spans follow one another in time and never overlap,
and inside one the pages ascend, so no page goes back in time and a checkpoint never passes a row
not yet applied. A crash resumes from the cursor's time, where the next read decides again (bulk
or REST) for what remains; the rows of the cursor's own tick come again and the sink drops the
versions it holds. A row changed while the read goes on gets a ``SystemModstamp`` of now,
later than every row of a job created before: it leaves a span whose job is not created yet (and
comes with the last one, which has no end, or with the next cycle, from a cursor no row applied
can have taken past it), and cannot enter a span in the past, since past moments take no new
rows. So dropping a span counted empty loses nothing.

Results come as CSV, all text: :func:`rest_row` turns a row into the one the REST API gives
(``true`` into ``True``, ``12.5`` into ``12.5``, a time into Salesforce's REST form, an empty
value into ``None``), by the field types the object's describe names (:func:`field_kinds`), so
the records and the payloads kept are the same whichever way the read went.
"""

from __future__ import annotations

import csv
import enum
import functools
import io
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from incsync.connectors.keyset import KeysetRead
from incsync.errors import BadRecordError, BadResponseError
from incsync.timestamps import UTC, parse_timestamp

__all__ = [
    "BULK_RESULTS_PAGE",
    "BULK_THRESHOLD",
    "BULK_WINDOW",
    "JOBS_AHEAD",
    "MAX_JOB_WAIT",
    "BulkPlan",
    "CountSpan",
    "FieldKind",
    "JobState",
    "ReadSpan",
    "Span",
    "column_readers",
    "csv_rows",
    "field_kinds",
    "poll_delay",
    "rest_row",
    "rest_time",
    "soql_time",
    "span_filter",
    "time_key",
    "wants_bulk",
]

BULK_THRESHOLD = 10_000
"""Rows a read must hold for query jobs to export it: Salesforce's own mark for bulk queries.

Bulk API 2.0 query jobs are "designed to handle queries that return large amounts of data
(10,000 records or more)" (Bulk API 2.0 Developer Guide, v47-v52; later editions say 2,000). A job
waits in Salesforce's queue for seconds before it runs, which five REST pages of 2,000 rows do
not, so the higher mark is kept.
"""

BULK_WINDOW = 50_000
"""Rows one query job exports at most, held and sorted in memory (a tick is streamed instead)."""

BULK_RESULTS_PAGE = 10_000
"""Rows asked per results request (``maxRecords``): a few megabytes of CSV."""

MAX_JOB_WAIT = timedelta(hours=1)
"""How long the read waits for one job to complete before it aborts the job and fails."""

_FIRST_POLL, _LONGEST_POLL = 1.0, 10.0
JOBS_AHEAD = 2
"""Jobs created ahead of the one read, so Salesforce runs them while its rows are passed on."""
# A long text area holds 131,072 characters, exactly the csv module's default field limit, which
# refuses a field that reaches it.
_FIELD_LIMIT = 1 << 20


class JobState(enum.Enum):
    """Where a query job is (``state`` in the job's information)."""

    UPLOAD_COMPLETE = "UploadComplete"
    IN_PROGRESS = "InProgress"
    JOB_COMPLETE = "JobComplete"
    FAILED = "Failed"
    ABORTED = "Aborted"

    @property
    def running(self) -> bool:
        """Whether the job has not ended yet (queued or running)."""
        return self in (JobState.UPLOAD_COMPLETE, JobState.IN_PROGRESS)


def wants_bulk(total: int | None, threshold: int | None, *, more: bool) -> bool:
    """Return whether a read is exported by query jobs rather than paged through ``query``.

    Args:
        total: How many rows the read holds (the first REST answer's ``totalSize``).
        threshold: The connector's ``bulk_threshold``; ``None`` never exports.
        more: Whether the first REST answer left rows to page; one that holds them all is read.
    """
    return more and threshold is not None and total is not None and total >= threshold


def poll_delay(attempt: int) -> float:
    """Return the seconds to wait before the job's ``attempt``-th look (0, 1, ...): 1, 2, 3...10.

    The wait grows by a second a look: a job done just after a look waits at most as long as
    the look before, and a long job is looked at every 10 seconds.
    """
    return min(_FIRST_POLL + attempt, _LONGEST_POLL)


@attrs.frozen
class Span:
    """A stretch of ``SystemModstamp`` one query job exports.

    Args:
        start: Inclusive lower bound of the job's filter; ``None`` for none.
        end: Exclusive upper bound; ``None`` for none.
        low: Where its rows begin, to split it at (``start``, or the read's earliest row).
        high: Past where its rows end, to split it at (``end``, or the source's now).
        count: How many rows it held when counted; ``None`` before.
    """

    start: datetime | None
    end: datetime | None
    low: datetime
    high: datetime
    count: int | None = None


@attrs.frozen
class CountSpan:
    """Count the rows of :attr:`span` (``SELECT COUNT()`` with its filter)."""

    span: Span


@attrs.frozen
class ReadSpan:
    """Export :attr:`span` by one job.

    Args:
        span: The span.
        in_order: Sort its rows before they are passed on; ``False`` for a span one tick wide,
            whose rows all share one moment and are passed on as they come.
    """

    span: Span
    in_order: bool


@attrs.frozen
class BulkPlan:
    """The spans a bulk read has still to export, and what to ask next (see the module docstring).

    Build it with :meth:`starting`; each method returns a new value.

    Args:
        resolution: The grain of the source's time filter.
        window: Rows one job may export to be sorted in memory.
        pending: The spans not exported yet, in time order.
    """

    resolution: timedelta
    window: int
    pending: tuple[Span, ...]

    @classmethod
    def starting(
        cls,
        start: datetime | None,
        total: int,
        *,
        earliest: datetime,
        now: datetime,
        resolution: timedelta,
        window: int,
    ) -> BulkPlan:
        """Return the plan of a read of ``SystemModstamp >= start`` that holds ``total`` rows.

        Args:
            start: The read's start; ``None`` for everything.
            total: How many rows the read holds.
            earliest: The oldest row's ``SystemModstamp`` (the first REST answer's first row).
            now: The source's time: where splitting stops (later rows are in the last span).
            resolution: The grain of the source's time filter.
            window: Rows one job may export to be sorted in memory.
        """
        ticks = KeysetRead(resolution)
        # The filter cannot be finer than a tick; starting at the tick's start reads no less.
        start = None if start is None else ticks.tick_of(start)
        low = ticks.tick_of(earliest if start is None else max(start, earliest))
        high = max(ticks.tick_of(now), low) + resolution
        return cls(resolution, window, (Span(start, None, low, high, total),))._settled()

    def spans(self, count: Callable[[Span], int]) -> list[ReadSpan]:
        """Return every span to export, in time order, asking ``count`` for the spans it must.

        Args:
            count: Returns how many rows a span holds (``SELECT COUNT()`` with its filter).
        """
        plan, spans = self, []
        while (step := plan.next_step()) is not None:
            if isinstance(step, CountSpan):
                plan = plan.counted(count(step.span))
            else:
                spans.append(step)
                plan = plan.exported()
        return spans

    def next_step(self) -> CountSpan | ReadSpan | None:
        """Return what to ask next, or ``None`` when every span is exported."""
        if not self.pending:
            return None
        head = self.pending[0]
        if head.count is None:
            return CountSpan(head)
        return ReadSpan(head, in_order=not self._one_tick(head) or head.count <= self.window)

    def counted(self, count: int) -> BulkPlan:
        """Take the count of the first pending span (as :class:`CountSpan` asked)."""
        head = attrs.evolve(self.pending[0], count=count)
        return attrs.evolve(self, pending=(head, *self.pending[1:]))._settled()

    def exported(self) -> BulkPlan:
        """Take that the first pending span is exported and passed on."""
        return attrs.evolve(self, pending=self.pending[1:])._settled()

    def _one_tick(self, span: Span) -> bool:
        return span.start == span.low and span.end == span.low + self.resolution

    def _splits(self, span: Span) -> bool:
        # A span cut out around a tick has no width: it is what lies outside the read's moments
        # (rows committed late, or changed meanwhile), few, and is sorted whole however many.
        return span.high > span.low and not self._one_tick(span)

    def _settled(self) -> BulkPlan:
        """Drop the spans counted empty, and split a first span too large to sort whole."""
        pending = list(self.pending)
        while pending:
            head = pending[0]
            if head.count == 0:
                pending.pop(0)
            elif head.count is None or head.count <= self.window or not self._splits(head):
                break
            else:
                pending[:1] = self._split(head)
        return attrs.evolve(self, pending=tuple(pending))

    def _split(self, span: Span) -> list[Span]:
        width, resolution = span.high - span.low, self.resolution
        if width > resolution:
            ticks = KeysetRead(resolution)
            middle = max(ticks.tick_of(span.low + width / 2), span.low + resolution)
            return [
                Span(span.start, middle, span.low, middle),
                Span(middle, span.end, middle, span.high),
            ]
        # One tick wide but open at an end: the tick is cut out, and what is around it (rows
        # committed late, or changed while the read goes on) is counted and sorted on its own.
        tick_end = span.low + resolution
        pieces = [Span(span.low, tick_end, span.low, tick_end)]
        if span.start != span.low:
            pieces.insert(0, Span(span.start, span.low, span.low, span.low))
        if span.end != tick_end:
            pieces.append(Span(tick_end, span.end, tick_end, tick_end))
        return pieces


def soql_time(moment: datetime) -> str:
    """Return an unquoted SOQL dateTime literal, floored to Salesforce's millisecond precision."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def span_filter(span: Span) -> str:
    """Return the ``WHERE`` clause (with its leading space) of a span, or ``""`` for all rows."""
    bounds = []
    if span.start is not None:
        bounds.append(f"SystemModstamp >= {soql_time(span.start)}")
    if span.end is not None:
        bounds.append(f"SystemModstamp < {soql_time(span.end)}")
    return f" WHERE {' AND '.join(bounds)}" if bounds else ""


class FieldKind(enum.Enum):
    """How a field's CSV text becomes the value the REST API gives for it."""

    TEXT = "text"
    BOOLEAN = "boolean"
    INTEGER = "integer"
    DECIMAL = "decimal"
    DATETIME = "datetime"


# Describe's field types: those a REST answer gives as JSON numbers, booleans or Salesforce's
# time text; every other type a bulk query can read is text in both (dates and times included).
_KINDS = {
    "boolean": FieldKind.BOOLEAN,
    "int": FieldKind.INTEGER,
    "long": FieldKind.INTEGER,
    "double": FieldKind.DECIMAL,
    "currency": FieldKind.DECIMAL,
    "percent": FieldKind.DECIMAL,
    "datetime": FieldKind.DATETIME,
}
_TEXT_TYPES = frozenset(
    {
        "id",
        "reference",
        "string",
        "picklist",
        "multipicklist",
        "combobox",
        "textarea",
        "email",
        "phone",
        "url",
        "encryptedstring",
        "date",
        "time",
    }
)


def field_kinds(described: object, fields: Sequence[str]) -> tuple[dict[str, FieldKind], str]:
    """Read an SObject describe; return each field's kind, and why a bulk query cannot read them.

    Args:
        described: The body of ``GET .../sobjects/<SObject>/describe``.
        fields: The fields the read selects.

    Returns:
        The kind of every selected field, keyed by its name in lower case; and ``""``, or the
        reason the fields cannot be exported (a compound field, a type with no CSV form, a field
        the describe does not name).

    Raises:
        BadResponseError: The body is no describe.
    """
    listed = described.get("fields") if isinstance(described, Mapping) else None
    if not isinstance(listed, list):
        raise BadResponseError(
            "salesforce: the SObject describe holds no 'fields' list; the API version or a proxy "
            "in between sent something else",
            vendor="salesforce",
        )
    types = {
        str(field["name"]).lower(): str(field.get("type"))
        for field in listed
        if isinstance(field, Mapping) and isinstance(field.get("name"), str)
    }
    kinds: dict[str, FieldKind] = {}
    refused: list[str] = []
    for name in fields:
        field_type = types.get(name.lower())
        if field_type in _KINDS:
            kinds[name.lower()] = _KINDS[field_type]
        elif field_type in _TEXT_TYPES:
            kinds[name.lower()] = FieldKind.TEXT
        else:
            refused.append(f"{name} ({field_type or 'not in the describe'})")
    reason = "" if not refused else f"a bulk query cannot read {', '.join(refused)}"
    return kinds, reason


def rest_time(moment: datetime) -> str:
    """Write ``moment`` as the REST API writes a dateTime: ``2024-06-03T09:00:00.000+0000``."""
    u = moment.astimezone(UTC)
    return (
        f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}."
        f"{u.microsecond // 1000:03d}+0000"
    )


_INTEGER = re.compile(r"[+-]?[0-9]+")
# How Bulk API results write a dateTime; the REST API writes the same moment with "+0000".
_CSV_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")


def _rest_time_of(text: str, name: str) -> str:
    """Return the REST form of a CSV dateTime: its text, re-dated, when it has the usual form."""
    if _CSV_TIME.fullmatch(text):
        return f"{text[:-1]}+0000"
    return rest_time(parse_timestamp(text, name))


def time_key(text: str) -> str:
    """Return a key that sorts CSV dateTimes as time does (``""`` for one that is none).

    Both forms are UTC to the millisecond with fixed-width fields, so their text sorts as time.
    """
    try:
        return _rest_time_of(text, "SystemModstamp")[:23]
    except ValueError:
        return ""


def _typed(kind: FieldKind, name: str, text: str) -> Any:
    # Salesforce keeps no empty text (a blank field is null, and REST answers null for it), so
    # an empty CSV value, quoted or not, is null whatever the field's type.
    if text == "":
        return None
    if kind is FieldKind.BOOLEAN and text in ("true", "false"):
        return text == "true"
    if kind is FieldKind.INTEGER and _INTEGER.fullmatch(text):
        return int(text)
    if kind is FieldKind.DECIMAL:
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            return number
    if kind is FieldKind.DATETIME:
        try:
            return _rest_time_of(text, name)
        except ValueError:
            pass
    raise BadRecordError(f"field {name} is {kind.value}, but the CSV holds {text[:80]!r}")


def _text(text: str) -> str | None:
    return text or None


def column_readers(
    header: Sequence[str], kinds: Mapping[str, FieldKind]
) -> list[Callable[[str], Any]]:
    """Return what reads each column of ``header``, by the kinds :func:`field_kinds` gave."""
    return [
        _text if kind is FieldKind.TEXT else functools.partial(_typed, kind, name)
        for name in header
        for kind in [kinds[name.lower()]]
    ]


def rest_row(
    header: Sequence[str],
    values: Sequence[str],
    readers: Sequence[Callable[[str], Any]],
    attributes: Mapping[str, str],
) -> dict[str, Any]:
    """Return the row the REST API gives for one CSV row of a bulk query's results.

    Args:
        header: The results' column names, as Salesforce spells them.
        values: One row's values.
        readers: What reads each column (:func:`column_readers`).
        attributes: The row's ``attributes`` (type and URL), which the CSV does not carry.

    Raises:
        BadRecordError: A value does not read as its field's type (the row is set aside).
    """
    row: dict[str, Any] = {"attributes": dict(attributes)}
    typed = [read(text) for read, text in zip(readers, values, strict=True)]
    row.update(zip(header, typed, strict=True))
    return row


def csv_rows(
    text: str, fields: Sequence[str], *, expected: int | None
) -> tuple[list[str], list[list[str]]]:
    """Split one results page into its header and rows, in the order the fields were selected.

    Salesforce writes the columns in the order selected since API version 50.0, alphabetically
    before; either way the columns come back in the order selected.

    Args:
        text: The CSV body (comma, LF, fields quoted as needed).
        fields: The fields the job selected, in order.
        expected: The page's ``Sforce-NumberOfRecords``, when given.

    Raises:
        BadResponseError: The header does not name the fields selected, a row has another number
            of values, or the rows are not as many as the page announced: the body was cut or is
            not the job's.
    """
    if csv.field_size_limit() < _FIELD_LIMIT:
        csv.field_size_limit(_FIELD_LIMIT)
    try:
        table = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as error:
        raise _bad_results(f"is no CSV ({error})") from None
    header = table[0] if table else []
    named = {name.lower(): column for column, name in enumerate(header)}
    if len(named) != len(header) or sorted(named) != sorted(name.lower() for name in fields):
        raise _bad_results(f"has the columns {header[:8]!r}, not the fields selected")
    rows = table[1:]
    del table
    if any(len(row) != len(header) for row in rows):
        raise _bad_results("has a row whose values do not match its columns")
    if expected is not None and expected != len(rows):
        raise _bad_results(f"holds {len(rows)} rows where Sforce-NumberOfRecords says {expected}")
    order = [named[name.lower()] for name in fields]
    if order != list(range(len(header))):
        header = [header[column] for column in order]
        rows = [[row[column] for column in order] for row in rows]
    return header, rows


def _bad_results(problem: str) -> BadResponseError:
    return BadResponseError(
        f"salesforce: a page of bulk query results {problem}; the read stops before the cursor "
        f"passes rows it did not get",
        vendor="salesforce",
    )
