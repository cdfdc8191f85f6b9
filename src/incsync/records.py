"""Records as they come from a source, pages of them, and the ones set aside as malformed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from incsync.content import content_digest
from incsync.errors import BadRecordError, NaiveDatetimeError
from incsync.timestamps import UTC, ensure_utc, parse_timestamp

__all__ = [
    "ApplyResult",
    "Page",
    "Record",
    "RejectedRecord",
    "Transaction",
    "record_from_raw",
    "supersedes",
    "trusted_record",
]

_RAW_EXCERPT_CHARS = 2_000

_fromisoformat = datetime.fromisoformat
_new_object = object.__new__


def _utc_updated_at(value: datetime) -> datetime:
    return ensure_utc(value, "updated_at")


def _non_empty_id(_instance: object, _attribute: object, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise BadRecordError(f"id must be a non-empty string, got {value!r}")


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

    record_id: str | None
    reason: str
    raw: str = ""
    seen_at: datetime | None = None

    @classmethod
    def from_error(cls, error: BadRecordError, raw: object) -> RejectedRecord:
        """Build the rejection for ``raw`` from the error that refused it."""
        excerpt = repr(raw)
        if len(excerpt) > _RAW_EXCERPT_CHARS:
            excerpt = excerpt[:_RAW_EXCERPT_CHARS] + "…"
        return cls(record_id=error.record_id, reason=error.reason, raw=excerpt)


@attrs.frozen(slots=True)
class Page:
    """One page of a source's answer: the records to apply and those set aside.

    Args:
        records: Well-formed records, in the connector's order.
        rejected: Records that could not be turned into :class:`Record`.
        total: How many records the whole read will return, when the source says so (for ETA).
    """

    records: Sequence[Record] = ()
    rejected: Sequence[RejectedRecord] = ()
    total: int | None = None


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
        generation: The source generation it was applied under.
    """

    source_key: str
    record: Record
    generation: int


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


def record_from_raw(
    raw: Mapping[str, Any],
    *,
    id_field: str = "id",
    updated_at_field: str = "updated_at",
    deleted: bool = False,
) -> Record:
    """Build a :class:`Record` from a source's mapping, or explain why it cannot be one.

    Integer ids are accepted and turned into text; timestamps are parsed with
    :func:`incsync.timestamps.parse_timestamp`.

    Args:
        raw: The record as the source sent it; kept as the payload.
        id_field: Key of the id in ``raw``.
        updated_at_field: Key of the last-update time in ``raw``.
        deleted: Whether the source marks this record as deleted or voided.

    Returns:
        The record.

    Raises:
        BadRecordError: No usable id, or a missing, naive or unreadable timestamp, or ``raw`` is
            not a mapping.
    """
    if type(raw) is dict:
        # The common case, once per record of every sync: a text id and an ISO time in UTC that
        # fromisoformat reads. The values are checked here, so the Record is built without
        # running its validator and converter again; anything else takes the path below.
        fast_id, text = raw.get(id_field), raw.get(updated_at_field)
        if type(fast_id) is str and fast_id and type(text) is str:
            try:
                parsed: datetime | None = _fromisoformat(text)
            except ValueError:
                parsed = None
            if parsed is not None and parsed.tzinfo is UTC:
                return trusted_record(fast_id, parsed, raw, deleted)
    elif not isinstance(raw, Mapping):
        raise BadRecordError(f"expected a JSON object, got {type(raw).__name__}")
    raw_id = raw.get(id_field)
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or raw_id == "":
        raise BadRecordError(
            f"field {id_field!r} must be a non-empty string or integer, got {raw_id!r}"
        )
    record_id = raw_id if isinstance(raw_id, str) else str(raw_id)
    raw_updated_at = raw.get(updated_at_field)
    if raw_updated_at is None:
        raise BadRecordError(f"field {updated_at_field!r} is missing", record_id=record_id)
    try:
        updated_at = parse_timestamp(raw_updated_at, updated_at_field)
    except NaiveDatetimeError:
        raise BadRecordError(
            f"field {updated_at_field!r} has no timezone: {raw_updated_at!r}", record_id=record_id
        ) from None
    except ValueError as error:
        raise BadRecordError(str(error), record_id=record_id) from None
    return Record(id=record_id, updated_at=updated_at, payload=raw, deleted=deleted)


def trusted_record(
    record_id: str, updated_at: datetime, payload: Mapping[str, Any], deleted: bool = False
) -> Record:
    """Build a :class:`Record` from values the caller has already checked, skipping validation.

    A connector's per-record hot path may use it once it has made sure that ``record_id`` is a
    non-empty string and ``updated_at`` an aware datetime whose ``tzinfo`` is
    :data:`incsync.timestamps.UTC`; anything else would build a record the engine cannot compare.
    When in doubt, build ``Record(...)``, which checks.

    Args:
        record_id: The record's id, non-empty.
        updated_at: When the record last changed, aware UTC.
        payload: The raw mapping from the source.
        deleted: Whether the record is a tombstone.

    Returns:
        The record, built without validators.
    """
    record: Record = _new_object(Record)
    _set_id(record, record_id)
    _set_updated_at(record, updated_at)
    _set_payload(record, payload)
    _set_deleted(record, deleted)
    return record


# Record's slots, set through their descriptors: trusted_record takes 0.29 µs instead of 0.42 µs
# with object.__setattr__ by name, once per record of every sync.
_set_id = Record.__dict__["id"].__set__
_set_updated_at = Record.__dict__["updated_at"].__set__
_set_payload = Record.__dict__["payload"].__set__
_set_deleted = Record.__dict__["deleted"].__set__
