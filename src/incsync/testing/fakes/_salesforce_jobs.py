"""Bulk API 2.0 query jobs for the fake Salesforce: ``/services/data/vXX.X/jobs/query``.

Built from the Bulk API 2.0 Developer Guide, and no kinder than Salesforce:

- ``POST jobs/query`` ``{operation: query|queryAll, query, contentType: CSV, columnDelimiter,
  lineEnding}`` checks the SOQL at once (the REST API's errors) and refuses what bulk queries
  cannot do (``COUNT()``, ``OFFSET``); the job starts ``UploadComplete``.
- A job takes time, on the org's clock: it is queued for half of ``job_delay``, ``InProgress``
  for the other half plus ``record_time`` per row, then ``JobComplete`` (or ``Failed`` with an
  ``errorMessage``, when a test asked for it). Its rows are the query's when the job was created,
  in no useful order (Salesforce chunks a job by Id and does not sort).
- ``GET jobs/query/<id>/results?maxRecords=&locator=`` answers CSV, every value quoted, a null as
  ``""``, with the header on every page, ``Sforce-NumberOfRecords`` and ``Sforce-Locator`` (a
  pseudo-random string, ``null`` on the last page). Results before ``JobComplete`` are **412**
  ``JOB_NOT_COMPLETE``; asked through another API version than the job's, **409**.
- ``PATCH`` ``{"state": "Aborted"}`` aborts a queued or running job; ``DELETE`` removes a job
  that is not running (204). Jobs that ended are deleted after 7 days; an org creates at most
  ``daily_limit`` query jobs in 24 hours (``DailyBulkV2QueryJobs``).

Where the documentation shows no error code for a refusal (a body that is no job, a bad
``maxRecords``, the daily limit), the fake answers 400 with a code of its own naming the problem.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import attrs
import httpx

from incsync.testing.fakes._soql import FieldValue, SoqlError

__all__ = ["BulkRows", "QueryJobs"]

BulkRows = Callable[[str, bool], tuple[str, tuple[str, ...], list[list[FieldValue]]]]
"""Runs a query (SOQL, with deleted rows?) for a job: its object, columns and rows, copied."""

_JSON = "application/json;charset=UTF-8"
_RETENTION = timedelta(days=7)
_DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^"}
_DELIMITERS["BACKQUOTE"] = "`"
_LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
_RESULTS = re.compile(r"/jobs/query/(?P<job>[0-9A-Za-z]{18})(?P<results>/results)?/?")
_COUNT = re.compile(r"^\s*SELECT\s+COUNT\s*\(\s*\)", re.IGNORECASE)
_OFFSET = re.compile(r"\bOFFSET\b", re.IGNORECASE)


class _RefusedError(Exception):
    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_code, self.message = status, error_code, message


@attrs.define
class _Job:
    id: str
    operation: str
    sobject: str
    version: str
    created: datetime
    columns: tuple[str, ...]
    rows: list[list[FieldValue]]
    delimiter: str
    line_ending: str
    done_at: datetime
    failure: str | None = None
    aborted_at: datetime | None = None

    def state(self, now: datetime, delay: timedelta) -> str:
        if self.aborted_at is not None:
            return "Aborted"
        if now < self.created + delay / 2:
            return "UploadComplete"
        if now < self.done_at:
            return "InProgress"
        return "JobComplete" if self.failure is None else "Failed"

    def ended_at(self, now: datetime, delay: timedelta) -> datetime | None:
        if self.aborted_at is not None:
            return self.aborted_at
        return self.done_at if now >= self.done_at else None


class QueryJobs:
    """The query jobs of one fake org (see the module docstring).

    Args:
        now: The org's clock.
        run: Runs a job's query.
        make_id: Returns a new 18-character Id with the given key prefix.
        user_id: The Id jobs are created by.
        job_delay: How long a job of no rows takes, queued then running.
        record_time: How much longer each row makes it run.
        results_page: Rows per results page when the client asks for no ``maxRecords``.
        daily_limit: Query jobs the org may create in 24 hours.
    """

    def __init__(
        self,
        *,
        now: Callable[[], datetime],
        run: BulkRows,
        make_id: Callable[[str], str],
        user_id: str,
        job_delay: timedelta,
        record_time: timedelta,
        results_page: int,
        daily_limit: int,
    ) -> None:
        self._now, self._run, self._make_id, self._user_id = now, run, make_id, user_id
        self._delay, self._record_time = job_delay, record_time
        self._results_page, self.daily_limit = results_page, daily_limit
        self._jobs: dict[str, _Job] = {}
        self._created: list[datetime] = []
        self._failures: list[str] = []

    # -- test controls ---------------------------------------------------------------------

    def fail_next(self, count: int, message: str) -> None:
        """Make the next ``count`` jobs end ``Failed`` with ``message``."""
        self._failures += [message] * count

    def abort_all(self, job_id: str | None = None) -> int:
        """Abort every queued or running job (or the one named), as an admin can; say how many."""
        now = self._now()
        running = [
            job
            for job in self._jobs.values()
            if job.ended_at(now, self._delay) is None and job_id in (None, job.id)
        ]
        for job in running:
            job.aborted_at = now
        return len(running)

    def states(self) -> dict[str, str]:
        """Each job's state now, by Id, oldest first."""
        now = self._now()
        self._expire(now)
        return {job.id: job.state(now, self._delay) for job in self._jobs.values()}

    def used_today(self) -> int:
        """Query jobs created in the last 24 hours."""
        now = self._now()
        return sum(now - created < timedelta(days=1) for created in self._created)

    # -- HTTP ------------------------------------------------------------------------------

    def handle(self, request: httpx.Request, version: str, rest: str) -> httpx.Response:
        """Answer a request under ``jobs/query`` (``rest`` is the path after the version)."""
        try:
            return self._answer(request, version, rest)
        except _RefusedError as refused:
            body = [{"errorCode": refused.error_code, "message": refused.message}]
            return _json(refused.status, body)

    def _answer(self, request: httpx.Request, version: str, rest: str) -> httpx.Response:
        now = self._now()
        self._expire(now)
        if rest.rstrip("/") == "/jobs/query":
            if request.method == "POST":
                return self._create(request, version, now)
            raise _RefusedError(
                405, "METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed"
            )
        match = _RESULTS.fullmatch(rest)
        job = None if match is None else self._jobs.get(match["job"])
        if match is None or job is None:
            raise _RefusedError(404, "NOT_FOUND", "The requested resource does not exist")
        if match["results"]:
            if request.method != "GET":
                raise _RefusedError(405, "METHOD_NOT_ALLOWED", "Allowed are GET,HEAD")
            return self._results(request, job, version, now)
        if request.method == "GET":
            return _json(200, self._info(job, now))
        if request.method == "PATCH":
            return self._abort(request, job, now)
        if request.method == "DELETE":
            if job.state(now, self._delay) == "InProgress":
                raise _RefusedError(400, "INVALIDJOBSTATE", "A running job cannot be deleted")
            del self._jobs[job.id]
            return httpx.Response(204)
        raise _RefusedError(405, "METHOD_NOT_ALLOWED", "Allowed are GET,HEAD,PATCH,DELETE")

    def _create(self, request: httpx.Request, version: str, now: datetime) -> httpx.Response:
        try:
            body = json.loads(request.content or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise _RefusedError(400, "JSON_PARSER_ERROR", "The request body is no JSON object")
        operation, soql = body.get("operation"), body.get("query")
        if operation not in ("query", "queryAll"):
            raise _RefusedError(400, "INVALIDJOB", f"InvalidJob : Invalid operation: {operation}")
        if not isinstance(soql, str) or not soql.strip():
            raise _RefusedError(400, "INVALIDJOB", "InvalidJob : query is required")
        if body.get("contentType", "CSV") != "CSV":
            raise _RefusedError(400, "INVALIDJOB", "InvalidJob : contentType must be CSV")
        delimiter = _DELIMITERS.get(body.get("columnDelimiter", "COMMA"))
        line_ending = _LINE_ENDINGS.get(body.get("lineEnding", "LF"))
        if delimiter is None or line_ending is None:
            raise _RefusedError(
                400, "INVALIDJOB", "InvalidJob : unknown columnDelimiter or lineEnding"
            )
        if _COUNT.search(soql) or _OFFSET.search(soql):
            raise _RefusedError(
                400, "INVALIDJOB", "InvalidJob : Bulk API 2.0 queries support no COUNT() or OFFSET"
            )
        if self.used_today() >= self.daily_limit:
            raise _RefusedError(
                400, "LIMIT_EXCEEDED", "DailyBulkV2QueryJobs: the org's query jobs for 24 hours"
            )
        try:
            sobject, columns, rows = self._run(soql, operation == "queryAll")
        except SoqlError as error:
            raise _RefusedError(400, error.error_code, error.message) from None
        self._created.append(now)
        failure = self._failures.pop(0) if self._failures else None
        job = _Job(
            id=self._make_id("750"),
            operation=operation,
            sobject=sobject,
            version=version,
            created=now,
            columns=columns,
            rows=rows,
            delimiter=delimiter,
            line_ending=line_ending,
            done_at=now + self._delay + self._record_time * len(rows),
            failure=failure,
        )
        self._jobs[job.id] = job
        return _json(200, self._info(job, now))

    def _info(self, job: _Job, now: datetime) -> dict[str, Any]:
        state = job.state(now, self._delay)
        info: dict[str, Any] = {
            "id": job.id,
            "operation": job.operation,
            "object": job.sobject,
            "createdById": self._user_id,
            "createdDate": _format(job.created),
            "systemModstamp": _format(job.ended_at(now, self._delay) or job.created),
            "state": state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(job.version),
            "jobType": "V2Query",
            "lineEnding": "LF" if job.line_ending == "\n" else "CRLF",
            "columnDelimiter": next(k for k, v in _DELIMITERS.items() if v == job.delimiter),
            "numberRecordsProcessed": len(job.rows) if state == "JobComplete" else 0,
            "retries": 0,
            "totalProcessingTime": 0,
        }
        if state == "Failed":
            info["errorMessage"] = job.failure
        return info

    def _abort(self, request: httpx.Request, job: _Job, now: datetime) -> httpx.Response:
        try:
            body = json.loads(request.content or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("state") != "Aborted":
            raise _RefusedError(400, "INVALIDJOBSTATE", "A query job can only be set to Aborted")
        if job.ended_at(now, self._delay) is not None:
            state = job.state(now, self._delay)
            raise _RefusedError(400, "INVALIDJOBSTATE", f"Job is already {state}")
        job.aborted_at = now
        return _json(200, self._info(job, now))

    def _results(
        self, request: httpx.Request, job: _Job, version: str, now: datetime
    ) -> httpx.Response:
        if version != job.version:
            message = f"Use API version {job.version} to get the results of this job"
            raise _RefusedError(409, "INVALIDURL", message)
        state = job.state(now, self._delay)
        if state != "JobComplete":
            message = (
                "can only download query results of successfully completed bulk job with "
                f"status: JOB_COMPLETE. Current status: {state}"
            )
            raise _RefusedError(412, "JOB_NOT_COMPLETE", message)
        page = self._results_page
        asked = request.url.params.get("maxRecords")
        if asked is not None:
            if not asked.isdigit() or int(asked) < 1:
                raise _RefusedError(400, "INVALIDMAXRECORDS", f"maxRecords {asked!r} is no count")
            page = int(asked)
        locator = request.url.params.get("locator")
        start = 0 if locator is None else _offset_of(locator, len(job.rows))
        end = min(start + page, len(job.rows))
        following = "null" if end >= len(job.rows) else _locator(end)
        return httpx.Response(
            200,
            content=_csv(job, job.rows[start:end]).encode("utf-8"),
            headers={
                "Content-Type": "text/csv",
                "Sforce-NumberOfRecords": str(end - start),
                "Sforce-Locator": following,
            },
        )

    def _expire(self, now: datetime) -> None:
        for job in list(self._jobs.values()):
            ended = job.ended_at(now, self._delay)
            if ended is not None and now - ended >= _RETENTION:
                del self._jobs[job.id]


def _json(status: int, body: object) -> httpx.Response:
    return httpx.Response(
        status, content=json.dumps(body).encode(), headers={"Content-Type": _JSON}
    )


def _format(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def _locator(offset: int) -> str:
    # Salesforce's locators look like "MTAwMDA": base64 without its padding.
    return base64.b64encode(str(offset).encode()).decode().rstrip("=")


def _offset_of(locator: str, size: int) -> int:
    try:
        padded = locator + "=" * (-len(locator) % 4)
        offset = int(base64.b64decode(padded, validate=True).decode())
    except ValueError:
        offset = -1
    if not 0 < offset < size or _locator(offset) != locator:
        raise _RefusedError(400, "INVALIDLOCATOR", f"Invalid locator: {locator[:40]}")
    return offset


def _csv_value(value: FieldValue) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _csv(job: _Job, rows: Sequence[list[FieldValue]]) -> str:
    out = io.StringIO(newline="")
    writer = csv.writer(
        out, delimiter=job.delimiter, lineterminator=job.line_ending, quoting=csv.QUOTE_ALL
    )
    writer.writerow(job.columns)
    writer.writerows([_csv_value(value) for value in row] for row in rows)
    return out.getvalue()
