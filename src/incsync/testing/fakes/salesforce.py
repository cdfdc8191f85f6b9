"""A fake Salesforce org behind the REST API: SOQL query/queryAll, getDeleted, bulk query jobs.

Built from Salesforce's documentation and real payloads, and no kinder than Salesforce:

- ``query``/``queryAll`` answer pages of at most 2,000 records (``Sforce-Query-Options:
  batchSize=N`` asks for 200-2,000, and Salesforce may serve fewer) with a ``nextRecordsUrl``
  until ``done``, a ``LIMIT`` answer too when it holds more than one batch. A query locator is a
  snapshot of the result taken when the query ran; it expires after 15 minutes idle, and only the
  10 newest locators stay open (``INVALID_QUERY_LOCATOR`` after that).
- Rows come in no useful order without ``ORDER BY``; rows tied on every ``ORDER BY`` key come in
  an order that changes from one query to the next.
- System timestamps are kept to the second by default (Salesforce stores no milliseconds), are
  written ``2021-11-06T17:38:40.000+0000``, and compare at millisecond precision in filters.
  ``SystemModstamp`` also moves on automated touches that leave ``LastModifiedDate`` alone.
- Bulk API 2.0 query jobs (``jobs/query``) export a query's rows as CSV after a delay on the
  org's clock; see :mod:`incsync.testing.fakes._salesforce_jobs`. ``sobjects/X/describe`` names
  each field's type.
- A blank text value is kept as null, and a number field as a double, as Salesforce keeps them.
- Deleted rows are seen only by ``queryAll`` (``IsDeleted: true``) and ``sobjects/X/deleted``,
  and only for 15 days; ``getDeleted`` ignores seconds and refuses windows it cannot cover.
- Errors are JSON arrays of ``{message, errorCode}``. Every API response carries
  ``Sforce-Limit-Info``; past the daily limit the answer is **403** ``REQUEST_LIMIT_EXCEEDED``.
- Access tokens die after a session lifetime the token response does not disclose (401
  ``INVALID_SESSION_ID``); refresh tokens may rotate, and a rotated one is dead at once.

Tests drive the org through Python methods (records, clock, tokens, limits, failures) and read
the ground truth back. Everything runs under the harness lock: one consistent org.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import string
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import cast
from urllib.parse import parse_qs

import attrs
import httpx

from incsync.testing import ManualClock
from incsync.testing.fakes._salesforce_jobs import QueryJobs
from incsync.testing.fakes._server import FakeVendor
from incsync.testing.fakes._soql import (
    FieldType,
    FieldValue,
    SoqlError,
    compile_query,
    parse_datetime,
)
from incsync.timestamps import ensure_utc

__all__ = ["FakeSalesforce", "FieldType", "FieldValue"]

_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
_DEFAULT_START = datetime(2024, 6, 3, 9, 0, tzinfo=_UTC)
_JSON = "application/json;charset=UTF-8"
_DIGITS = string.digits + string.ascii_uppercase + string.ascii_lowercase  # ASCII order
_API = re.compile(r"/services/data/v(?P<major>\d+)\.(?P<minor>\d)(?P<rest>/.*)?")
_LOCATOR = re.compile(r"/(?:query|queryAll)/(?P<locator>01g[0-9A-Za-z]{15})-(?P<offset>\d+)/?")
_DELETED = re.compile(r"/sobjects/(?P<sobject>\w+)/deleted/?")
_DESCRIBE = re.compile(r"/sobjects/(?P<sobject>\w+)/describe/?")
_BATCH_SIZE = re.compile(r"batchSize\s*=\s*(\d+)", re.IGNORECASE)
_MIN_VERSION, _MAX_VERSION, _GET_DELETED_SINCE = 20, 62, 29
# fmt: off
_SYSTEM_FIELDS: dict[str, FieldType] = {
    "Id": "id", "IsDeleted": "boolean", "CreatedDate": "datetime", "CreatedById": "reference",
    "LastModifiedDate": "datetime", "LastModifiedById": "reference", "SystemModstamp": "datetime",
}
_TIMESTAMPS = ("CreatedDate", "LastModifiedDate", "SystemModstamp")
_STANDARD_OBJECTS = {  # name: (key prefix, "Field:type ...")
    "Account": ("001", "Name:string Industry:string AnnualRevenue:double NumberOfEmployees:int "
                       "OwnerId:reference"),
    "Contact": ("003", "FirstName:string LastName:string Name:string Email:string "
                       "AccountId:reference Birthdate:date OwnerId:reference"),
    "Opportunity": ("006", "Name:string StageName:string Amount:double CloseDate:date "
                           "IsClosed:boolean AccountId:reference OwnerId:reference"),
    "Lead": ("00Q", "FirstName:string LastName:string Name:string Company:string Email:string "
                    "Status:string OwnerId:reference"),
}
_VALUE_TYPES: dict[FieldType, tuple[type, ...]] = {
    "id": (str,), "reference": (str,), "string": (str,), "boolean": (bool,), "int": (int,),
    "double": (int, float), "date": (date,), "datetime": (datetime,),
}
# fmt: on
_QUERY_FAILURES = {
    "QUERY_TIMEOUT": (400, "Your query request was running for too long."),
    "UNKNOWN_EXCEPTION": (
        500,
        "An unexpected error occurred. Please include this ErrorId if you contact support: "
        "1425876534-123456 (-1425876534)",
    ),
    "SERVER_UNAVAILABLE": (503, "Server temporarily unavailable"),
}


def _salesforce_id(prefix: str, serial: int) -> str:
    """An 18-character ID: key prefix, pod, serial in base 62, then the case-safe suffix."""
    body = ""
    for _ in range(9):
        serial, digit = divmod(serial, 62)
        body = _DIGITS[digit] + body
    fifteen = f"{prefix}5e0{body}"
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, char in enumerate(fifteen[start : start + 5]) if char.isupper())
        suffix += "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"[bits]
    return fifteen + suffix


def _format(moment: datetime) -> str:
    """Salesforce's dateTime wire format: milliseconds and a ``+0000`` offset without a colon."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def _wire(value: FieldValue) -> FieldValue:
    if isinstance(value, datetime):
        return _format(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _floor(moment: datetime, step: timedelta) -> datetime:
    return moment - (moment - _EPOCH) % step


class _ApiError(Exception):
    """An answer that ends handling: Salesforce's status, JSON body and headers."""

    def __init__(self, status: int, body: object, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, dict(headers or {})

    @classmethod
    def of(cls, status: int, error_code: str, message: str) -> _ApiError:
        return cls(status, [{"message": message, "errorCode": error_code}])

    def response(self) -> httpx.Response:
        return _json_response(self.status, self.body, self.headers)


def _json_response(
    status: int, body: object, headers: Mapping[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={"Content-Type": _JSON, **(headers or {})},
    )


def _not_found() -> _ApiError:
    return _ApiError.of(404, "NOT_FOUND", "The requested resource does not exist")


@attrs.define
class _Table:
    name: str
    key_prefix: str
    fields: dict[str, FieldType]
    rows: dict[str, dict[str, FieldValue]] = attrs.Factory(dict)
    deleted_at: dict[str, datetime] = attrs.Factory(dict)
    purged_through: datetime = _EPOCH


@attrs.define
class _Cursor:
    records: list[dict[str, object]]
    batch_size: int
    last_used: datetime


class FakeSalesforce(FakeVendor):
    """A Salesforce org answering the REST API as documented, driven by test-control methods.

    Standard objects ``Account``, ``Contact``, ``Opportunity`` and ``Lead`` exist from the start;
    :meth:`define_sobject` adds more (or fields). Every object has Salesforce's system fields.

    Args:
        clock: Supplies "now" (aware). Defaults to a :class:`~incsync.testing.ManualClock` at
            2024-06-03T09:00Z that moves only through :meth:`set_time` and :meth:`advance`.
        client_id: The connected app's consumer key, checked by the token endpoint.
        client_secret: The connected app's consumer secret, checked and used to sign tokens.
        refresh_token: The refresh token valid at the start.
        rotate_refresh_tokens: Each refresh issues a new refresh token and kills the old one.
        session_lifetime: How long an access token lives after it is issued.
        instance_url: The ``instance_url`` to hand out; by default the request's own origin.
        api_limit: The daily API request limit (``DailyApiRequests``).
        batch_size: Records per page when the client asks for no size (at most 2,000; smaller
            values make paging tests cheap, though Salesforce's default is 2,000).
        max_batch_size: The most records a page holds whatever the client asked: Salesforce
            serves smaller batches than requested when records are large or complex.
        locator_idle_timeout: How long an unused query locator lives.
        max_open_locators: How many query locators stay open; opening one more closes the oldest.
        deleted_retention: How long deleted rows stay in the recycle bin and the delete log.
        timestamp_precision: The grain system timestamps are stored at (a second, like
            Salesforce; a millisecond to test millisecond filters).
        max_deleted_ids: More deleted IDs than this in a getDeleted window is
            ``EXCEEDED_ID_LIMIT``.
        deleted_coverage_lag: How far behind "now" the delete log's ``latestDateCovered`` trails.
        sleep: Used by :meth:`slow_queries` (injectable so tests need not wait).
        bulk_job_delay: How long a bulk query job of no rows takes (queued, then running).
        bulk_record_time: How much longer each row makes a bulk query job run.
        bulk_results_page: Rows per page of a job's results when the client names no
            ``maxRecords``.
        bulk_daily_limit: Bulk query jobs the org may create in 24 hours.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        client_id: str = "fake-consumer-key",
        client_secret: str = "fake-consumer-secret",
        refresh_token: str = "5Aep861-fake-refresh-token",
        rotate_refresh_tokens: bool = False,
        session_lifetime: timedelta = timedelta(hours=2),
        instance_url: str | None = None,
        api_limit: int = 5_000,
        batch_size: int = 2_000,
        max_batch_size: int | None = None,
        locator_idle_timeout: timedelta = timedelta(minutes=15),
        max_open_locators: int = 10,
        deleted_retention: timedelta = timedelta(days=15),
        timestamp_precision: timedelta = timedelta(seconds=1),
        max_deleted_ids: int = 600_000,
        deleted_coverage_lag: timedelta = timedelta(0),
        sleep: Callable[[float], None] = time.sleep,
        bulk_job_delay: timedelta = timedelta(seconds=2),
        bulk_record_time: timedelta = timedelta(microseconds=20),
        bulk_results_page: int = 100_000,
        bulk_daily_limit: int = 10_000,
    ) -> None:
        super().__init__()
        if not 1 <= batch_size <= 2_000:
            raise ValueError(f"batch_size must be between 1 and 2000, not {batch_size}")
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, not {max_batch_size}")
        self._clock: Callable[[], datetime] = clock or ManualClock(_DEFAULT_START)
        self._client_id, self._client_secret = client_id, client_secret
        self._refresh_tokens = {refresh_token}
        self._refresh_token = refresh_token
        self._rotate = rotate_refresh_tokens
        self._session_lifetime = session_lifetime
        self._instance_url = instance_url
        self._sessions: dict[str, datetime] = {}
        self._api_used, self._api_limit = 0, api_limit
        self._batch_size = batch_size
        self._max_batch_size = max_batch_size
        self._locator_idle_timeout = locator_idle_timeout
        self._max_open_locators = max_open_locators
        self._retention = deleted_retention
        self._precision = timestamp_precision
        self._max_deleted_ids = max_deleted_ids
        self._coverage_lag = deleted_coverage_lag
        self._sleep = sleep
        self._tables: dict[str, _Table] = {}
        self._cursors: dict[str, _Cursor] = {}
        self._serial = 0
        self._query_serial = 0
        self._concurrent_rejections = 0
        self._query_failures: list[str] = []
        self._query_delay = 0.0
        self._org_id = _salesforce_id("00D", 1)
        self._user_id = _salesforce_id("005", 1)
        self._job_serial = 0
        self._jobs = QueryJobs(
            now=self._now,
            run=self._bulk_rows,
            make_id=self._new_job_id,
            user_id=self._user_id,
            job_delay=bulk_job_delay,
            record_time=bulk_record_time,
            results_page=bulk_results_page,
            daily_limit=bulk_daily_limit,
        )
        for name, (prefix, spec) in _STANDARD_OBJECTS.items():
            pairs = (pair.split(":") for pair in spec.split())
            self.define_sobject(name, {f: cast(FieldType, t) for f, t in pairs}, key_prefix=prefix)

    # -- clock ---------------------------------------------------------------------------------

    @property
    def clock(self) -> Callable[[], datetime]:
        """The clock the org runs on; share it with the code under test."""
        return self._clock

    def set_time(self, moment: datetime) -> None:
        """Move the org's :class:`~incsync.testing.ManualClock` (the default) to ``moment``."""
        self._manual_clock().set(moment)

    def advance(self, delta: timedelta) -> datetime:
        """Move the org's :class:`~incsync.testing.ManualClock` on by ``delta``; return the time."""
        return self._manual_clock().advance(delta)

    def _manual_clock(self) -> ManualClock:
        if not isinstance(self._clock, ManualClock):
            raise TypeError(
                "FakeSalesforce runs on a clock that is no ManualClock: move it yourself"
            )
        return self._clock

    def _now(self) -> datetime:
        return ensure_utc(self._clock(), "clock()")

    def _stamp(self, at: datetime | None) -> datetime:
        return _floor(self._now() if at is None else ensure_utc(at, "at"), self._precision)

    # -- schema and records --------------------------------------------------------------------

    def define_sobject(
        self, name: str, fields: Mapping[str, FieldType], *, key_prefix: str | None = None
    ) -> None:
        """Create the object ``name`` with ``fields`` (system fields come free), or add fields.

        Args:
            name: The API name, such as ``"Merchandise__c"``.
            fields: Field name to type; existing rows get ``None`` for new fields.
            key_prefix: The three-character ID prefix for a new object (``a00``... by default).

        Raises:
            ValueError: A type is unknown, or a field would replace a system field.
        """
        with self._lock:
            for field, kind in fields.items():
                if kind not in _VALUE_TYPES or field in _SYSTEM_FIELDS:
                    raise ValueError(f"cannot define {name}.{field} as {kind!r}")
            table = self._find_table(name)
            if table is None:
                custom = len(self._tables) - len(_STANDARD_OBJECTS)
                prefix = key_prefix or f"a{_DIGITS[custom // 62]}{_DIGITS[custom % 62]}"
                self._tables[name] = _Table(name, prefix, {**_SYSTEM_FIELDS, **fields})
                return
            table.fields.update(fields)
            for row in table.rows.values():
                for field in fields:
                    row.setdefault(field, None)

    def add_record(
        self,
        sobject: str,
        fields: Mapping[str, FieldValue] | None = None,
        *,
        at: datetime | None = None,
    ) -> str:
        """Create one record and return its 18-character ID; see :meth:`bulk_load`."""
        return self.bulk_load(sobject, [fields or {}], at=at)[0]

    def bulk_load(
        self,
        sobject: str,
        rows: Iterable[Mapping[str, FieldValue]],
        *,
        at: datetime | None = None,
    ) -> list[str]:
        """Create records fast (tens of thousands a second) and return their IDs in order.

        A row may carry its own ``CreatedDate``, ``LastModifiedDate`` and ``SystemModstamp``;
        missing ones default to the earliest given, else to ``at``, else to the clock. Timestamps
        are stored at the org's precision.

        Raises:
            KeyError: No such object.
            ValueError: Unknown or generated field, or timestamps out of order.
            TypeError: A value of the wrong type.
        """
        with self._lock:
            table = self._table(sobject)
            base = self._stamp(at)
            template: dict[str, FieldValue] = dict.fromkeys(table.fields)
            template |= {"IsDeleted": False, "CreatedById": self._user_id}
            template["LastModifiedById"] = self._user_id
            ids: list[str] = []
            for values in rows:
                row = template.copy()
                row.update(self._checked(table, values, allow_timestamps=True))
                created, modified, modstamp = (row[name] for name in _TIMESTAMPS)
                given = [v for v in (created, modified, modstamp) if isinstance(v, datetime)]
                created = created if isinstance(created, datetime) else min(given, default=base)
                modified = modified if isinstance(modified, datetime) else created
                modstamp = modstamp if isinstance(modstamp, datetime) else modified
                if not created <= modified <= modstamp:
                    raise ValueError(
                        "need CreatedDate <= LastModifiedDate <= SystemModstamp, as in Salesforce"
                    )
                row |= {"CreatedDate": created, "LastModifiedDate": modified}
                row["SystemModstamp"] = modstamp
                self._serial += 1
                record_id = _salesforce_id(table.key_prefix, self._serial)
                row["Id"] = record_id
                table.rows[record_id] = row
                ids.append(record_id)
            return ids

    def update_record(
        self,
        sobject: str,
        record_id: str,
        fields: Mapping[str, FieldValue],
        *,
        at: datetime | None = None,
    ) -> None:
        """Change fields of a live record; its two modification stamps move to ``at``.

        ``at`` may lie before the record's last change: a long transaction commits late.
        """
        with self._lock:
            table, row, stamp = self._change(sobject, record_id, at, deleted=False)
            row.update(self._checked(table, fields, allow_timestamps=False))
            row["LastModifiedDate"] = row["SystemModstamp"] = stamp

    def touch_record(self, sobject: str, record_id: str, *, at: datetime | None = None) -> None:
        """An automated touch: only ``SystemModstamp`` moves (to ``at``); no field changes."""
        with self._lock:
            _, row, stamp = self._change(sobject, record_id, at, deleted=False)
            if stamp < cast(datetime, row["LastModifiedDate"]):
                raise ValueError("SystemModstamp cannot go before LastModifiedDate")
            row["SystemModstamp"] = stamp

    def delete_record(self, sobject: str, record_id: str, *, at: datetime | None = None) -> None:
        """Move a record to the recycle bin: ``IsDeleted`` true, timestamps moved to ``at``."""
        with self._lock:
            table, row, stamp = self._change(sobject, record_id, at, deleted=False)
            row |= {"IsDeleted": True, "LastModifiedDate": stamp, "SystemModstamp": stamp}
            table.deleted_at[record_id] = stamp

    def undelete_record(self, sobject: str, record_id: str, *, at: datetime | None = None) -> None:
        """Restore a record from the recycle bin; it leaves the delete log, timestamps move."""
        with self._lock:
            table, row, stamp = self._change(sobject, record_id, at, deleted=True)
            row |= {"IsDeleted": False, "LastModifiedDate": stamp, "SystemModstamp": stamp}
            del table.deleted_at[record_id]

    def purge_deleted(self, sobject: str, *, before: datetime | None = None) -> None:
        """Empty the recycle bin (rows deleted before ``before``, default now), as an admin can.

        ``earliestDateAvailable`` moves up to ``before``: older getDeleted windows fail.
        """
        with self._lock:
            table = self._table(sobject)
            cutoff = self._now() if before is None else ensure_utc(before, "before")
            for record_id, deleted in list(table.deleted_at.items()):
                if deleted < cutoff:
                    del table.deleted_at[record_id], table.rows[record_id]
            table.purged_through = max(table.purged_through, cutoff)

    def records(
        self, sobject: str, *, include_deleted: bool = False
    ) -> list[dict[str, FieldValue]]:
        """The ground truth: copies of the object's records (live only by default), by ID."""
        with self._lock:
            self._purge_expired()
            rows = self._table(sobject).rows
            return [
                dict(rows[i]) for i in sorted(rows) if include_deleted or not rows[i]["IsDeleted"]
            ]

    def record(self, sobject: str, record_id: str) -> dict[str, FieldValue]:
        """A copy of one record, live or in the recycle bin.

        Raises:
            KeyError: No such record (never created, or purged).
        """
        with self._lock:
            self._purge_expired()
            return dict(self._row(self._table(sobject), record_id, deleted=None))

    def deleted_ids(self, sobject: str) -> set[str]:
        """IDs of the object's records in the recycle bin (deleted, not yet purged)."""
        with self._lock:
            self._purge_expired()
            return set(self._table(sobject).deleted_at)

    def _find_table(self, name: str) -> _Table | None:
        return next((t for t in self._tables.values() if t.name.lower() == name.lower()), None)

    def _table(self, name: str) -> _Table:
        table = self._find_table(name)
        if table is None:
            raise KeyError(f"no SObject {name!r}; define it with define_sobject()")
        return table

    def _change(
        self, sobject: str, record_id: str, at: datetime | None, *, deleted: bool
    ) -> tuple[_Table, dict[str, FieldValue], datetime]:
        table = self._table(sobject)
        return table, self._row(table, record_id, deleted=deleted), self._stamp(at)

    @staticmethod
    def _row(table: _Table, record_id: str, *, deleted: bool | None) -> dict[str, FieldValue]:
        row = table.rows.get(record_id)
        if row is None or (deleted is not None and row["IsDeleted"] != deleted):
            state = {None: "", True: "deleted ", False: "live "}[deleted]
            raise KeyError(f"no {state}{table.name} with Id {record_id!r}")
        return row

    def _checked(
        self, table: _Table, values: Mapping[str, FieldValue], *, allow_timestamps: bool
    ) -> dict[str, FieldValue]:
        checked: dict[str, FieldValue] = {}
        for name, value in values.items():
            kind = table.fields.get(name)
            settable = name not in _SYSTEM_FIELDS or (allow_timestamps and name in _TIMESTAMPS)
            if kind is None or not settable:
                raise ValueError(f"{table.name}.{name} is not a field a test can set")
            if value is None or (value == "" and kind in ("string", "reference")):
                # Salesforce keeps a blank text value as null, and answers null for it.
                checked[name] = None
                continue
            if not isinstance(value, _VALUE_TYPES[kind]) or (
                isinstance(value, bool) != (kind == "boolean")
                or (kind == "date" and isinstance(value, datetime))
            ):
                raise TypeError(f"{table.name}.{name} is {kind}, not {type(value).__name__}")
            if isinstance(value, datetime):
                value = _floor(ensure_utc(value, name), self._precision)
            if kind == "double" and isinstance(value, int):
                value = float(value)
            checked[name] = value
        return checked

    def _purge_expired(self) -> None:
        horizon = self._now() - self._retention
        for table in self._tables.values():
            for record_id, deleted in list(table.deleted_at.items()):
                if deleted <= horizon:
                    del table.deleted_at[record_id], table.rows[record_id]

    # -- tokens, limits, failures --------------------------------------------------------------

    @property
    def refresh_token(self) -> str:
        """The refresh token issued last (after a rotation, the only one still valid)."""
        return self._refresh_token

    def issue_access_token(self) -> str:
        """Mint an access token as the token endpoint would, for tests that skip OAuth."""
        with self._lock:
            token = f"{self._org_id[:15]}!AQ{secrets.token_urlsafe(40)}"
            self._sessions[token] = self._now() + self._session_lifetime
            return token

    def expire_access_tokens(self) -> None:
        """End every session now (as an admin or a password change would)."""
        with self._lock:
            self._sessions.clear()

    def revoke_refresh_tokens(self) -> None:
        """Revoke every refresh token: the next refresh is ``invalid_grant``."""
        with self._lock:
            self._refresh_tokens.clear()

    @property
    def api_usage(self) -> tuple[int, int]:
        """``(requests used today, daily limit)``, as in ``Sforce-Limit-Info``."""
        return self._api_used, self._api_limit

    def set_api_usage(self, used: int, limit: int | None = None) -> None:
        """Set today's request count (and the limit): ``used >= limit`` means 403 from now on."""
        with self._lock:
            self._api_used = used
            self._api_limit = self._api_limit if limit is None else limit

    def reject_concurrent_requests(self, count: int = 1) -> None:
        """Answer the next ``count`` API requests 403 ``REQUEST_LIMIT_EXCEEDED`` (concurrency)."""
        with self._lock:
            self._concurrent_rejections += count

    def fail_queries(self, count: int = 1, *, error: str = "QUERY_TIMEOUT") -> None:
        """Fail the next ``count`` query requests (first pages or locators) with ``error``.

        Args:
            count: How many requests fail.
            error: ``"QUERY_TIMEOUT"`` (400), ``"UNKNOWN_EXCEPTION"`` (500) or
                ``"SERVER_UNAVAILABLE"`` (503).
        """
        if error not in _QUERY_FAILURES:
            raise ValueError(f"error must be one of {sorted(_QUERY_FAILURES)}")
        with self._lock:
            self._query_failures += [error] * count

    def slow_queries(self, seconds: float) -> None:
        """Make every query request take ``seconds`` longer (0 to stop); uses ``sleep``."""
        with self._lock:
            self._query_delay = seconds

    def expire_query_locators(self) -> None:
        """Close every open query locator: following a ``nextRecordsUrl`` now fails."""
        with self._lock:
            self._cursors.clear()

    def fail_bulk_jobs(self, count: int = 1, *, message: str = "") -> None:
        """Make the next ``count`` bulk query jobs end ``Failed`` with ``message`` as the error."""
        message = message or ("Retried more than 15 times. Apply a filter criteria and try again.")
        with self._lock:
            self._jobs.fail_next(count, message)

    def abort_bulk_jobs(self, job_id: str | None = None) -> int:
        """Abort every queued or running bulk query job (or the one named), as an admin can.

        Returns:
            How many jobs were aborted.
        """
        with self._lock:
            return self._jobs.abort_all(job_id)

    @property
    def bulk_jobs(self) -> dict[str, str]:
        """Each bulk query job the org keeps, by Id, with its state now (oldest first)."""
        with self._lock:
            return self._jobs.states()

    @property
    def open_query_locators(self) -> int:
        """How many query locators are open (neither idle too long nor pushed out)."""
        now = self._now()
        idle = self._locator_idle_timeout
        return sum(now - cursor.last_used < idle for cursor in self._cursors.values())

    # -- HTTP ----------------------------------------------------------------------------------

    def now(self) -> datetime:
        """Return the fake's clock, which dates its answers (as it stamps its records)."""
        return self._clock()

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` as Salesforce would."""
        self._purge_expired()
        try:
            if request.url.path.rstrip("/") == "/services/oauth2/token":
                return self._token(request)
            match = _API.fullmatch(request.url.path)
            if match is None:
                raise _not_found()
            return self._api(request, match)
        except _ApiError as error:
            return error.response()

    def _api(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        self._authenticate(request)
        try:
            if self._concurrent_rejections:
                self._concurrent_rejections -= 1
                message = "ConcurrentRequests (Concurrent API Requests) Limit exceeded."
                raise _ApiError.of(403, "REQUEST_LIMIT_EXCEEDED", message)
            if self._api_used >= self._api_limit:
                raise _ApiError.of(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            self._api_used += 1
            response = self._resource(request, match)
        except _ApiError as error:
            response = error.response()
        response.headers["Sforce-Limit-Info"] = f"api-usage={self._api_used}/{self._api_limit}"
        return response

    def _authenticate(self, request: httpx.Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        expires = (
            self._sessions.get(token.strip()) if scheme.lower() in ("bearer", "oauth") else None
        )
        if expires is None or self._now() >= expires:
            self._sessions.pop(token.strip(), None)
            body = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
            raise _ApiError(401, body, {"WWW-Authenticate": "Token"})

    def _resource(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        major, rest = int(match["major"]), match["rest"] or "/"
        if match["minor"] != "0" or not _MIN_VERSION <= major <= _MAX_VERSION:
            raise _not_found()
        version = f"{major}.0"
        if rest.startswith("/jobs/query"):
            return self._jobs.handle(request, version, rest)
        if request.method != "GET":
            message = f"HTTP Method '{request.method}' not allowed. Allowed are GET,HEAD"
            raise _ApiError.of(405, "METHOD_NOT_ALLOWED", message)
        if rest.rstrip("/") in ("/query", "/queryAll"):
            return self._query(request, version, include_deleted=rest.startswith("/queryAll"))
        if rest.startswith(("/query/", "/queryAll/")):
            return self._next_page(rest, version)
        deleted = _DELETED.fullmatch(rest)
        if deleted is not None and major >= _GET_DELETED_SINCE:
            return self._get_deleted(request, deleted["sobject"])
        described = _DESCRIBE.fullmatch(rest)
        if described is not None:
            return self._describe(described["sobject"])
        if rest.rstrip("/") == "/limits":
            remaining = max(0, self._api_limit - self._api_used)
            jobs = self._jobs.daily_limit
            body = {
                "DailyApiRequests": {"Max": self._api_limit, "Remaining": remaining},
                "DailyBulkV2QueryJobs": {
                    "Max": jobs,
                    "Remaining": max(0, jobs - self._jobs.used_today()),
                },
            }
            return _json_response(200, body)
        raise _not_found()

    def _describe(self, sobject: str) -> httpx.Response:
        table = self._find_table(sobject)
        if table is None:
            message = f"The requested resource does not exist: sObject type '{sobject}'"
            raise _ApiError.of(404, "NOT_FOUND", message)
        fields = [
            {"name": name, "type": kind, "nillable": name not in ("Id", "IsDeleted")}
            for name, kind in table.fields.items()
        ]
        return _json_response(200, {"name": table.name, "fields": fields})

    def _bulk_rows(
        self, soql: str, include_deleted: bool
    ) -> tuple[str, tuple[str, ...], list[list[FieldValue]]]:
        """Run a bulk query job's SOQL now: its object, columns and rows (copied, in no order)."""
        schema = {table.name: table.fields for table in self._tables.values()}
        plan = compile_query(soql, schema)
        table = self._tables[plan.sobject]
        rows = [r for r in table.rows.values() if include_deleted or not r["IsDeleted"]]
        self._query_serial += 1
        selected = plan.select(rows, salt=self._query_serial)
        return plan.sobject, plan.fields, [[row[f] for f in plan.fields] for row in selected]

    def _new_job_id(self, prefix: str) -> str:
        self._job_serial += 1
        return _salesforce_id(prefix, self._job_serial)

    def _query(
        self, request: httpx.Request, version: str, *, include_deleted: bool
    ) -> httpx.Response:
        soql = request.url.params.get("q")
        if not soql:
            raise _ApiError.of(400, "MALFORMED_QUERY", "A query string has to be specified")
        self._before_query()
        schema = {table.name: table.fields for table in self._tables.values()}
        try:
            plan = compile_query(soql, schema)
        except SoqlError as error:
            raise _ApiError.of(400, error.error_code, error.message) from None
        table = self._tables[plan.sobject]
        rows = [r for r in table.rows.values() if include_deleted or not r["IsDeleted"]]
        self._query_serial += 1
        if plan.count:
            # A count needs no order: filtering alone is as Salesforce counts, and far cheaper.
            if plan.limit is None and not plan.offset:
                matched = sum(1 for row in rows if plan.predicate(row))
            else:
                matched = len(plan.select(rows, salt=self._query_serial))
            return _json_response(200, {"totalSize": matched, "done": True, "records": []})
        base = f"/services/data/v{version}/sobjects/{plan.sobject}/"
        records: list[dict[str, object]] = []
        for row in plan.select(rows, salt=self._query_serial):
            record: dict[str, object] = {
                "attributes": {"type": plan.sobject, "url": base + str(row["Id"])}
            }
            for field in plan.fields:
                record[field] = _wire(row[field])
            records.append(record)
        options = _BATCH_SIZE.search(request.headers.get("Sforce-Query-Options", ""))
        batch = max(200, min(2_000, int(options[1]))) if options else self._batch_size
        # "There is no guarantee that the requested batch size is the actual batch size":
        # https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/headers_queryoptions.htm
        batch = min(batch, self._max_batch_size or batch)
        cursor = _Cursor(records, batch, self._now())
        locator = ""
        if len(records) > batch:
            while len(self._cursors) >= self._max_open_locators:
                del self._cursors[next(iter(self._cursors))]
            locator = _salesforce_id("01g", self._query_serial)
            self._cursors[locator] = cursor
        return self._page(cursor, locator, 0, version)

    def _next_page(self, rest: str, version: str) -> httpx.Response:
        match = _LOCATOR.fullmatch(rest)
        cursor = None if match is None else self._cursors.get(match["locator"])
        now = self._now()
        if match is None or cursor is None or now - cursor.last_used >= self._locator_idle_timeout:
            if match is not None:
                self._cursors.pop(match["locator"], None)
            raise _ApiError.of(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        offset = int(match["offset"])
        if offset >= len(cursor.records):
            raise _ApiError.of(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        self._before_query()
        cursor.last_used = now
        return self._page(cursor, match["locator"], offset, version)

    def _before_query(self) -> None:
        if self._query_delay:
            self._sleep(self._query_delay)
        if self._query_failures:
            error = self._query_failures.pop(0)
            status, message = _QUERY_FAILURES[error]
            raise _ApiError.of(status, error, message)

    @staticmethod
    def _page(cursor: _Cursor, locator: str, offset: int, version: str) -> httpx.Response:
        end = min(offset + cursor.batch_size, len(cursor.records))
        body: dict[str, object] = {
            "totalSize": len(cursor.records),
            "done": end >= len(cursor.records),
        }
        if not body["done"]:
            body["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{end}"
        body["records"] = cursor.records[offset:end]
        return _json_response(200, body)

    def _get_deleted(self, request: httpx.Request, sobject: str) -> httpx.Response:
        table = self._find_table(sobject)
        if table is None:
            raise _not_found()
        bounds: list[datetime] = []
        for name in ("start", "end"):
            raw = request.url.params.get(name)
            if not raw:
                raise _ApiError.of(400, "MISSING_ARGUMENT", f"{name} must be specified")
            try:
                moment = parse_datetime(raw)
            except ValueError:
                moment = None
            if moment is None:
                message = (
                    f"{name}: '{raw}' is not a valid dateTime (e.g. 2013-05-05T00:00:00+00:00)"
                )
                raise _ApiError.of(400, "INVALID_REPLICATION_DATE", message)
            bounds.append(_floor(moment, timedelta(minutes=1)))  # Salesforce ignores seconds
        start, end = bounds
        now = self._now()
        earliest = _floor(max(now - self._retention, table.purged_through), timedelta(minutes=1))
        covered = min(end, _floor(now - self._coverage_lag, timedelta(minutes=1)))
        if start >= end:
            message = "startDate must chronologically precede endDate by more than one minute"
            raise _ApiError.of(400, "INVALID_REPLICATION_DATE", message)
        if start < earliest:
            message = f"startDate is before the earliest date available, {_format(earliest)}"
            raise _ApiError.of(400, "INVALID_REPLICATION_DATE", message)
        hits = sorted(
            (deleted, record_id)
            for record_id, deleted in table.deleted_at.items()
            if start <= deleted < covered
        )
        if len(hits) > self._max_deleted_ids:
            message = f"More than {self._max_deleted_ids} IDs; choose closer start and end dates"
            raise _ApiError.of(400, "EXCEEDED_ID_LIMIT", message)
        body = {
            "deletedRecords": [{"id": i, "deletedDate": _format(d)} for d, i in hits],
            "earliestDateAvailable": _format(earliest),
            "latestDateCovered": _format(covered),
        }
        return _json_response(200, body)

    def _token(self, request: httpx.Request) -> httpx.Response:
        def refuse(error: str, description: str) -> _ApiError:
            return _ApiError(400, {"error": error, "error_description": description})

        if request.method != "POST":
            raise refuse("invalid_request", "must use HTTP POST")
        form = {k: v[-1] for k, v in parse_qs(request.content.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "refresh_token":
            raise refuse("unsupported_grant_type", "grant type not supported")
        if form.get("client_id") != self._client_id:
            raise refuse("invalid_client_id", "client identifier invalid")
        if form.get("client_secret") != self._client_secret:
            raise refuse("invalid_client", "invalid client credentials")
        if form.get("refresh_token") not in self._refresh_tokens:
            raise refuse("invalid_grant", "expired access/refresh token")
        instance = self._instance_url or f"{request.url.scheme}://{request.url.netloc.decode()}"
        issued_at = str(int(self._now().timestamp() * 1000))
        identity = f"{instance}/id/{self._org_id}/{self._user_id}"
        digest = hmac.new(
            self._client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256
        ).digest()
        body = {
            "access_token": self.issue_access_token(),
            "signature": base64.b64encode(digest).decode(),
            "scope": "refresh_token api",
            "instance_url": instance,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
        }
        if self._rotate:
            self._refresh_tokens.discard(form["refresh_token"])
            self._refresh_token = f"5Aep861{secrets.token_urlsafe(60)}"
            self._refresh_tokens.add(self._refresh_token)
            body["refresh_token"] = self._refresh_token
        return _json_response(200, body)
