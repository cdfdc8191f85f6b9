"""The one exception tree every incsync error belongs to.

Retryability is visible in the class, so a host (or the engine) can decide what to do from the
type alone::

    IncsyncError
    ├── ConfigurationError            a value given to incsync is wrong (also a ValueError)
    │   └── NaiveDatetimeError        a datetime without a timezone was given
    ├── SourceError                   reading the source failed; the cycle fails
    │   ├── TransientSourceError      may heal by itself: the next cycle retries (retryable)
    │   │   └── RateLimitedError      the source asked us to wait; ``retry_at`` says until when
    │   ├── AuthError                 credentials rejected; waiting cannot heal it
    │   ├── BadResponseError          the source answered with something we cannot read
    │   ├── PermanentSourceError      the source refused the request; repeating it fails again
    │   └── ResultCapError            the source will not page this query further (a cap)
    ├── BadRecordError                one record is malformed; it is set aside and the cycle goes on
    │   └── UnmappableRecordError     a mapping cannot make a transaction of one record
    ├── StateConflictError            the state store refused a write made on stale grounds
    │   ├── LeaseLostError            another worker holds the source's lease now
    │   │   └── StaleWriteError       the sink holds writes of a newer lease; this one's are refused
    │   └── GenerationChangedError    the source was reset or rewound while this cycle ran
    └── StoreError                    the state store or transaction sink itself failed
"""

from __future__ import annotations

from datetime import datetime

__all__ = [
    "AuthError",
    "BadRecordError",
    "BadResponseError",
    "ConfigurationError",
    "GenerationChangedError",
    "IncsyncError",
    "LeaseLostError",
    "NaiveDatetimeError",
    "PermanentSourceError",
    "RateLimitedError",
    "ResultCapError",
    "SourceError",
    "StaleWriteError",
    "StateConflictError",
    "StoreError",
    "TransientSourceError",
    "UnmappableRecordError",
]


class IncsyncError(Exception):
    """Root of every error incsync raises on purpose."""

    #: Whether running the same operation again later may succeed.
    retryable: bool = False


class ConfigurationError(IncsyncError, ValueError):
    """A value handed to incsync is invalid; the message names it and says what is expected."""


class NaiveDatetimeError(ConfigurationError):
    """A datetime without timezone reached incsync, where only aware times are accepted.

    Attributes:
        field: What the datetime was meant to be (for example ``"now"`` or ``"updated_at"``).
    """

    def __init__(self, field: str) -> None:
        super().__init__(
            f"{field} is a naive datetime; pass a timezone-aware one, "
            f"for example datetime.now(timezone.utc) or dt.replace(tzinfo=timezone.utc)"
        )
        self.field = field


class SourceError(IncsyncError):
    """Reading from a source failed, so the cycle fails and the cursor stays where it was.

    Attributes:
        vendor: The kind of source (``"quickbooks"``, ``"sample"``…), when known.
        status_code: The HTTP status of the failing response, when there was one.
        excerpt: The start of the failing response's body with secrets masked, when there was
            one: what the vendor said, for a person diagnosing the failure.
        resync_required: The source cannot be read incrementally from the cursor any more (its
            change log no longer reaches back that far); the engine resets the source, so the
            next cycle re-reads everything.
    """

    def __init__(
        self,
        message: str,
        *,
        vendor: str | None = None,
        status_code: int | None = None,
        excerpt: str | None = None,
        resync_required: bool = False,
    ) -> None:
        super().__init__(message)
        self.vendor = vendor
        self.status_code = status_code
        self.excerpt = excerpt
        self.resync_required = resync_required


class TransientSourceError(SourceError):
    """A failure that may heal by itself (network trouble, 5xx, throttling)."""

    retryable = True


class RateLimitedError(TransientSourceError):
    """The source asked us to slow down.

    Attributes:
        retry_at: The earliest time the source may be asked again, when it said so (aware; kept
            in UTC).

    Raises:
        NaiveDatetimeError: On construction, when ``retry_at`` has no timezone: the mistake is
            found in the connector that made it, not later when the engine records the wait.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_at: datetime | None = None,
        vendor: str | None = None,
        status_code: int | None = None,
        excerpt: str | None = None,
    ) -> None:
        # Imported here: incsync.timestamps raises the errors of this module, so it loads after it.
        from incsync.timestamps import ensure_utc

        super().__init__(message, vendor=vendor, status_code=status_code, excerpt=excerpt)
        self.retry_at = None if retry_at is None else ensure_utc(retry_at, "retry_at")


class AuthError(SourceError):
    """The source rejected the credentials and a new token could not be obtained.

    Waiting does not heal this, so the engine stops such a source after fewer failures.
    """


class BadResponseError(SourceError):
    """The source answered with a body incsync cannot interpret."""

    retryable = True


class PermanentSourceError(SourceError):
    """The source refused the request in a way that repeating it will not change."""


class ResultCapError(SourceError):
    """The source will not page this query further: it answers at most so many results to one.

    A connector that pages one window by offset raises it from :meth:`read
    <incsync.protocols.Connector.read>` after yielding the pages it could (HubSpot's search refuses
    to page past 10,000 results of one query, Salesforce's SOQL ``OFFSET`` stops at 2,000). In a
    full read in time partitions the engine cuts the partition that met it in two and reads both
    halves (see :func:`incsync.partitions.split_at_cap`); anywhere else (an incremental window, a
    full read in one window) the cycle fails with it, as with any source error: repeating the same
    query meets the same cap.

    Attributes:
        cap: How many results the source answers to one query, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        cap: int | None = None,
        vendor: str | None = None,
        status_code: int | None = None,
        excerpt: str | None = None,
    ) -> None:
        super().__init__(
            f"{message}. The source will not page one query further. A full read in time "
            "partitions is cut smaller where it meets such a cap; a window read whole (an "
            "incremental one, or a full read in one window) cannot be. Declare partitions above 1 "
            "and a time_span() on the connector and reset the source, to read it again in "
            "partitions; or read the source by keyset (incsync.connectors.keyset), which meets "
            "no cap",
            vendor=vendor,
            status_code=status_code,
            excerpt=excerpt,
        )
        self.cap = cap


class BadRecordError(IncsyncError):
    """One record from a source is malformed; it is set aside with this reason.

    Attributes:
        record_id: The record's id at the source, when it could be read.
        reason: Why the record was set aside, in words a person can act on.
    """

    def __init__(self, reason: str, *, record_id: str | None = None) -> None:
        where = f"record {record_id!r}" if record_id is not None else "record without an id"
        super().__init__(f"{where}: {reason}")
        self.record_id = record_id
        self.reason = reason


class UnmappableRecordError(BadRecordError):
    """A mapping cannot make a transaction of one record; it is set aside with this reason.

    Attributes:
        record_id: The record's id at the source, when it could be read.
        reason: What is missing or unreadable, naming the field and the path read.
        field: The transaction field that failed (``"amount"``, ``"date"``…).
    """

    def __init__(self, reason: str, *, field: str, record_id: str | None = None) -> None:
        super().__init__(f"{field}: {reason}", record_id=record_id)
        self.field = field


class StateConflictError(IncsyncError):
    """The state store refused a write because the writer's view is out of date.

    Attributes:
        source_key: The source whose state was to be written.
    """

    def __init__(self, message: str, *, source_key: str) -> None:
        super().__init__(message)
        self.source_key = source_key


class LeaseLostError(StateConflictError):
    """The caller no longer holds the source's lease (it expired and another worker took it)."""


class StaleWriteError(LeaseLostError):
    """A sink refused a page: a worker with a newer lease has already written for the source.

    Sinks keep the highest fencing token that wrote each source's transactions (see
    :func:`incsync.state.admit_writer`), so a worker that stalled past its lease cannot overwrite
    what its successor wrote.

    Attributes:
        token: The refused worker's fencing token.
        highest: The highest token the sink has accepted for the source.
    """

    def __init__(self, message: str, *, source_key: str, token: int, highest: int) -> None:
        super().__init__(message, source_key=source_key)
        self.token = token
        self.highest = highest


class GenerationChangedError(StateConflictError):
    """The source was reset or rewound after the caller loaded it; its work is of the old one."""


class StoreError(IncsyncError):
    """The state store or the transaction sink failed (disk, database, schema)."""

    retryable = True
