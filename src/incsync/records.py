"""Records as they come from a source, pages of them, and the ones set aside as malformed.

Every record a connector reads is built by one checked constructor, :meth:`RecordFormat.record`:
the connector says where a row keeps its id and update time and which of
:mod:`incsync.timestamps`' parsers reads the time; the constructor reads, checks and explains.
:func:`outcome_of` is the one place a row becomes a record or a rejection: *any* exception while
building one row's record sets that row aside with the reason, so one odd row never fails a page.
"""

from __future__ import annotations

import ast
import json
import reprlib
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from incsync.content import content_digest, escaped_text, shape_problem, text_problem
from incsync.errors import BadRecordError, NaiveDatetimeError
from incsync.fields import DottedPath
from incsync.marks import Marks, frozen_marks
from incsync.timestamps import ensure_utc, parse_timestamp

__all__ = [
    "RECONCILED",
    "SWEPT",
    "ApplyResult",
    "IdReader",
    "Page",
    "Record",
    "RecordFormat",
    "RejectedRecord",
    "TimeParser",
    "Transaction",
    "digits_id",
    "excerpt_row",
    "is_swept",
    "outcome_of",
    "page_of",
    "positive_integer_id",
    "record_from_raw",
    "supersedes",
    "swept",
    "text_id",
    "text_or_integer_id",
]

_RAW_EXCERPT_CHARS = 2_000

# For rows a plain repr would recurse too deep into, or whose repr fails: bounded at every level.
_excerpt_repr = reprlib.Repr()
_excerpt_repr.maxlevel = 8
_excerpt_repr.maxdict = _excerpt_repr.maxlist = _excerpt_repr.maxtuple = 64
_excerpt_repr.maxstring = _excerpt_repr.maxother = _RAW_EXCERPT_CHARS
_excerpt_repr.maxlong = 400


def _utc_updated_at(value: datetime) -> datetime:
    if not isinstance(value, datetime):
        raise BadRecordError(
            f"updated_at must be a timezone-aware datetime, got {type(value).__name__} {value!r}"
        )
    try:
        return ensure_utc(value, "updated_at")
    except OverflowError:
        raise BadRecordError(
            f"updated_at {value.isoformat()} is outside the range of datetimes in UTC"
        ) from None


def _non_empty_id(_instance: object, _attribute: object, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise BadRecordError(f"id must be a non-empty string, got {value!r}")
    # Checked here, not by each store: an id is also a cursor, written with every checkpoint.
    if problem := text_problem(value):
        raise BadRecordError(f"id holds {problem}", record_id=escaped_text(value))


def _escaped(value: str | None) -> str | None:
    return None if value is None else escaped_text(value)


@attrs.frozen(slots=True)
class Record:
    """One record read from a source: the unit incsync applies to the host's transactions.

    Args:
        id: The record's id at the source; unique within the source.
        updated_at: When the record was last created or updated at the source (aware; kept in UTC).
        payload: The source's own representation of the record, kept as it came.
        deleted: Whether this is a deletion or void. Deleted records become tombstones downstream,
            never hard deletes.
    """

    id: str = attrs.field(validator=_non_empty_id)
    updated_at: datetime = attrs.field(converter=_utc_updated_at)
    payload: Mapping[str, Any] = attrs.field(factory=dict, repr=False)
    deleted: bool = False

    @property
    def key(self) -> tuple[datetime, str]:
        """The record's position in (updated_at, id) order, the order cursors follow."""
        return (self.updated_at, self.id)


@attrs.frozen(slots=True)
class RejectedRecord:
    """A record that was set aside instead of applied, with the reason a person can act on.

    Args:
        record_id: The id at the source, when it could be read.
        reason: Why it was set aside.
        raw: A bounded excerpt of what the source sent, for diagnosis.
        seen_at: When a store recorded it (set by the store).
    """

    # A rejected row's id and the reason quoting it may be text no store keeps (a lone surrogate):
    # kept escaped, so every store can record why the row was set aside.
    record_id: str | None = attrs.field(converter=_escaped)
    reason: str = attrs.field(converter=escaped_text)
    raw: str = ""
    seen_at: datetime | None = None

    @classmethod
    def from_error(cls, error: BadRecordError, raw: object) -> RejectedRecord:
        """Build the rejection for ``raw`` from the error that refused it."""
        return cls(record_id=error.record_id, reason=error.reason, raw=raw_excerpt(raw))

    @property
    def fingerprint(self) -> str:
        """What identifies the row set aside: its id, or its excerpt when it has none.

        Reading the same row again (a re-query, the next cycle) gives the same fingerprint, so a
        store updates its entry and a read passes the row on once.
        """
        if self.record_id is not None:
            return "id:" + self.record_id
        return "raw:" + self.raw


def raw_excerpt(raw: object) -> str:
    """Return a bounded text excerpt of a raw row, for a person diagnosing why it was set aside.

    A row that is not a sound JSON tree (nested too deeply, holding itself; see
    :func:`incsync.content.shape_problem`) is shown a few levels deep, so no ``repr`` recurses
    into it.
    """
    try:
        excerpt = repr(raw) if shape_problem(raw) is None else _bounded_repr(raw)
    except Exception:  # noqa: BLE001 - a row whose repr fails is still set aside, and shown
        excerpt = _bounded_repr(raw)
    if len(excerpt) > _RAW_EXCERPT_CHARS:
        excerpt = excerpt[:_RAW_EXCERPT_CHARS] + "…"
    return excerpt


def excerpt_row(excerpt: str) -> tuple[Any, bool]:
    """Return the row an excerpt shows, and whether it could be read back exactly.

    The excerpt is the row's ``repr`` (:func:`raw_excerpt`), or a JSON text (a file's line). Read
    back, it is the row only when nothing was lost: not cut short, and holding only what JSON holds
    (a tuple, a date or a number key would come back as something else).
    """
    for read in (json.loads, ast.literal_eval):
        value, exact = _read_back(read, excerpt)
        if exact:
            return value, True
    return None, False


def _read_back(read: Callable[[str], Any], excerpt: str) -> tuple[Any, bool]:
    try:
        value = read(excerpt)
        return value, json.loads(json.dumps(value, allow_nan=False)) == value
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return None, False


def _bounded_repr(raw: object) -> str:
    try:
        return _excerpt_repr.repr(raw)
    except Exception:  # noqa: BLE001 - nothing about this row can be shown, but it is set aside
        return f"<{type(raw).__name__} that cannot be shown>"


@attrs.frozen(slots=True)
class Page:
    """One page of a source's answer: the records to apply and those set aside.

    Args:
        records: Well-formed records, in the connector's order.
        rejected: Records that could not be turned into :class:`Record`.
        total: How many records the whole read will return, when the source says so (for
            progress and its ETA); a page without one leaves the total the pages before it gave.
        marks: How far side channels have been read once this page is durable (see
            :mod:`incsync.marks`); checkpointed with the page.
    """

    records: Sequence[Record] = ()
    rejected: Sequence[RejectedRecord] = ()
    total: int | None = None
    marks: Marks = attrs.field(factory=dict, converter=frozen_marks)


@attrs.frozen(slots=True)
class ApplyResult:
    """What a sink did with a page.

    Args:
        applied: Records written as new or newer versions.
        rejected: Records the sink could not store (for example a payload that is not JSON), set
            aside with their reason instead of failing the page.
    """

    applied: int
    rejected: Sequence[RejectedRecord] = ()


@attrs.frozen(slots=True)
class Transaction:
    """A record as a sink holds it: the latest version applied, or a tombstone.

    Args:
        source_key: The source it came from.
        record: The latest version applied.
        generation: The source generation it was applied (or swept) under.
        deleted_reason: Why incsync made the record a tombstone itself (:data:`SWEPT`, after a
            full re-read that did not see it; :data:`RECONCILED`, after an id reconcile);
            ``None`` when the record is as the source sent it.
    """

    source_key: str
    record: Record
    generation: int
    deleted_reason: str | None = None


SWEPT = "not at the source after a full re-read"
"""The reason a sweep gives the transactions a completed full re-read did not see."""

RECONCILED = "not at the source by an id reconcile"
"""The reason an id reconcile gives the live transactions the source no longer holds."""


def is_swept(transaction: Transaction, generation: int, spared: Collection[str]) -> bool:
    """Return whether the sweep after a full re-read under ``generation`` tombstones it.

    A full re-read applies every record it sees under its own generation (see :func:`supersedes`),
    so a live transaction still under an older one was not seen: the source no longer holds it (it
    was deleted while its delete could not be read, or its delete was never published). Records
    the read set aside as malformed (``spared``, by id) are at the source and are left as they are;
    tombstones stay as the source made them.
    """
    return (
        not transaction.record.deleted
        and transaction.generation < generation
        and transaction.record.id not in spared
    )


def swept(transaction: Transaction, generation: int, reason: str = SWEPT) -> Transaction:
    """Return ``transaction`` as the sweep under ``generation`` leaves it: a tombstone saying why.

    An id reconcile tombstones the same way, with its own ``reason`` (:data:`RECONCILED`). Its
    time and payload stay, so the record coming back at the source (at that time or later)
    replaces the tombstone as any changed content does.
    """
    return attrs.evolve(
        transaction,
        record=attrs.evolve(transaction.record, deleted=True),
        generation=generation,
        deleted_reason=reason,
    )


def supersedes(incoming: Record, generation: int, stored: Record, stored_generation: int) -> bool:
    """Return whether an incoming version replaces the stored one in a sink.

    Newer versions always do and older ones never do. At an equal ``updated_at`` the incoming one
    replaces the stored one when its content differs (second-precision sources stamp two updates
    in one second alike, and the later read is the later state) or once per generation (so a
    reset re-applies every record exactly once). Reading the same version again changes nothing.

    Content differs when ``deleted`` differs or the payloads' :func:`incsync.content.content_digest`
    do: key order and ``100`` against ``100.0`` are no change, ``true`` against ``1`` is one.

    Raises:
        BadRecordError: The two versions must be compared and a payload has no JSON form.
    """
    if incoming.updated_at != stored.updated_at:
        return incoming.updated_at > stored.updated_at
    if generation != stored_generation:
        # A worker of an older generation (its source was reset meanwhile) never overwrites.
        return generation > stored_generation
    return incoming.deleted != stored.deleted or (
        content_digest(incoming.payload) != content_digest(stored.payload)
    )


IdReader = Callable[[object], str]
"""Turns the raw id value of a row into the record's id, or raises ``ValueError`` saying why not."""

TimeParser = Callable[[object, str], datetime]
"""One of :mod:`incsync.timestamps`' parsers (value, field name) -> aware UTC datetime."""


def text_id(value: object) -> str:
    """Accept a non-empty string id as it is.

    Raises:
        ValueError: ``value`` is not a non-empty string.
    """
    if isinstance(value, str) and value:
        return value
    raise ValueError(f"must be a non-empty string, got {value!r}")


def text_or_integer_id(value: object) -> str:
    """Accept a non-empty string id, or an integer one as its decimal text (never a boolean).

    Raises:
        ValueError: ``value`` is neither.
    """
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"must be a non-empty string or integer, got {value!r}")


def digits_id(value: object) -> str:
    """Accept an id written as ASCII digits (``"1234"``), as numeric ids travel in JSON text.

    Raises:
        ValueError: ``value`` is not a string of ASCII digits.
    """
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return value
    raise ValueError(f"must be a string of digits, got {value!r}")


def positive_integer_id(value: object) -> str:
    """Accept a positive integer id (never a boolean), as its decimal text.

    Raises:
        ValueError: ``value`` is not a positive integer.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    raise ValueError(f"must be a positive integer, got {value!r}")


def _never_deleted(_raw: Mapping[str, Any]) -> bool:
    return False


def _path(value: str | DottedPath) -> DottedPath:
    return value if isinstance(value, DottedPath) else DottedPath.of(value)


@attrs.frozen
class RecordFormat:
    """Where a source's rows keep their id and update time, and how the time is written.

    Every record incsync applies is built by :meth:`record`, so every row is checked the same
    way, whichever connector read it.

    Args:
        id_field: The dotted path of the id in a row (``"Id"``, ``"data.id"``).
        updated_at_field: The dotted path of the last-update time (``"MetaData.LastUpdatedTime"``).
        parse_time: The parser of that time: one of :mod:`incsync.timestamps`' parsers, or a
            :func:`functools.partial` of one (``assume_utc=True`` where a vendor documents it).
        read_id: What ids are accepted (:func:`text_id`, :func:`text_or_integer_id`,
            :func:`digits_id`, :func:`positive_integer_id`).
        payload_field: The dotted path of the object kept as the record's payload, when it is not
            the row itself (Stripe's events carry the object in ``data.object``).

    Raises:
        ConfigurationError: A field is not a dotted path.
    """

    id_field: DottedPath = attrs.field(converter=_path)
    updated_at_field: DottedPath = attrs.field(converter=_path)
    parse_time: TimeParser = parse_timestamp
    read_id: IdReader = text_or_integer_id
    payload_field: DottedPath | None = attrs.field(
        default=None, converter=attrs.converters.optional(_path)
    )

    def record(
        self,
        raw: object,
        is_deleted: Callable[[Mapping[str, Any]], bool] = _never_deleted,
    ) -> Record:
        """Build the record of one raw row, or explain why it cannot be one.

        Args:
            raw: The row as the source sent it; kept as the payload (or the part of it at
                :attr:`payload_field`).
            is_deleted: Whether the row is a deletion or void (it becomes a tombstone); asked of
                the row, not of the payload.

        Returns:
            The record.

        Raises:
            BadRecordError: ``raw`` is not an object, or its id or time is missing (or empty
                text), naive or unreadable.
        """
        if not isinstance(raw, Mapping):
            raise BadRecordError(f"expected a JSON object, got {type(raw).__name__}")
        payload: Mapping[str, Any] = raw
        if self.payload_field is not None:
            inner = self.payload_field.get(raw)
            if not isinstance(inner, Mapping):
                raise BadRecordError(
                    f"field {str(self.payload_field)!r} is not a JSON object, got "
                    f"{type(inner).__name__}"
                )
            payload = inner
        try:
            record_id = self.read_id(self.id_field.get(raw))
        except ValueError as error:
            raise BadRecordError(f"field {str(self.id_field)!r} {error}") from None
        field = str(self.updated_at_field)
        value = self.updated_at_field.get(raw)
        if value is None or value == "":
            raise BadRecordError(f"field {field!r} is missing", record_id=record_id)
        try:
            updated_at = self.parse_time(value, field)
        except NaiveDatetimeError:
            raise BadRecordError(
                f"field {field!r} has no timezone: {value!r}", record_id=record_id
            ) from None
        except ValueError as error:
            raise BadRecordError(str(error), record_id=record_id) from None
        return Record(record_id, updated_at, payload, deleted=is_deleted(raw))


def outcome_of(build: Callable[[Any], Record], raw: object) -> Record | RejectedRecord:
    """Return the record ``build`` makes of ``raw``, or the rejection saying why it could not.

    Any exception while building one row's record (not only :class:`BadRecordError`: a
    connector's own code may trip over a shape nobody foresaw) sets that row aside with the
    reason; it never fails the page the row came in.
    """
    try:
        return build(raw)
    except BadRecordError as error:
        return RejectedRecord.from_error(error, raw)
    except Exception as error:  # noqa: BLE001 - one odd row must not stop a source
        reason = f"the row could not be read ({type(error).__name__}: {error})"
        return RejectedRecord(record_id=None, reason=reason, raw=raw_excerpt(raw))


def page_of(rows: Sequence[Any], build: Callable[[Any], Record], total: int | None = None) -> Page:
    """Return the :class:`Page` of ``rows``: each built by ``build``, or set aside with its reason.

    Args:
        rows: Rows exactly as the source returned them.
        build: Builds one row's record (a connector's ``to_record``).
        total: How many records the whole read is expected to hold, when known.
    """
    records: list[Record] = []
    rejected: list[RejectedRecord] = []
    for raw in rows:
        outcome = outcome_of(build, raw)
        if isinstance(outcome, Record):
            records.append(outcome)
        else:
            rejected.append(outcome)
    return Page(records=records, rejected=rejected, total=total)


def record_from_raw(
    raw: object,
    *,
    id_field: str = "id",
    updated_at_field: str = "updated_at",
    deleted: bool = False,
) -> Record:
    """Build a :class:`Record` from a source's mapping, or explain why it cannot be one.

    The same check as :meth:`RecordFormat.record` with the default format: ids are non-empty text
    or integers (turned into text), times are read by :func:`incsync.timestamps.parse_timestamp`.

    Args:
        raw: The record as the source sent it; kept as the payload.
        id_field: Dotted path of the id in ``raw``.
        updated_at_field: Dotted path of the last-update time in ``raw``.
        deleted: Whether the source marks this record as deleted or voided.

    Returns:
        The record.

    Raises:
        BadRecordError: No usable id, or a missing, naive or unreadable timestamp, or ``raw`` is
            not a mapping.
    """
    record_format = RecordFormat(id_field, updated_at_field)
    return record_format.record(raw, lambda _raw: deleted)
