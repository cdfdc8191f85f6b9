"""The I/O of a Salesforce bulk read: query jobs created, waited for, paged and cleaned up.

:class:`BulkExport` is the thin shell of :class:`~incsync.vendors._salesforce_bulk.BulkPlan`,
which decides every span; this module only speaks Bulk API 2.0:

- ``POST /jobs/query`` with a span's SOQL (``query`` or ``queryAll``, CSV, comma, LF), for the
  span read and the next ones (:data:`~incsync.vendors._salesforce_bulk.JOBS_AHEAD`);
- ``GET /jobs/query/<id>`` until the job is ``JobComplete``: at once, then after 1, 2, 3... up
  to 10 s between looks (never a busy loop). Every look that finds the job still running yields
  an empty page: the engine checkpoints it, which renews the cycle's lease through a long job,
  and a cancel or a stop ends the cycle there (the job is then aborted). A job that ends
  ``Failed`` or ``Aborted``, or outlasts :data:`~incsync.vendors._salesforce_bulk.MAX_JOB_WAIT`,
  fails the cycle with :class:`~incsync.errors.TransientSourceError`: no row of its span was
  passed on, so the cursor stays after the spans before it;
- ``GET /jobs/query/<id>/results?maxRecords=N[&locator=L]`` page by page, following
  ``Sforce-Locator`` until it is ``null``; each page is CSV with its header, as many rows as
  ``Sforce-NumberOfRecords`` says;
- ``DELETE /jobs/query/<id>`` once its results are read (Salesforce would keep them 7 days), or
  ``PATCH`` ``{"state": "Aborted"}`` for a job left running when the read ends early.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx

from incsync.connectors._counts import header_count
from incsync.connectors.http import HttpConnector
from incsync.errors import BadResponseError, TransientSourceError
from incsync.records import Page, Record, RejectedRecord, outcome_of
from incsync.vendors._salesforce_bulk import (
    BULK_RESULTS_PAGE,
    JOBS_AHEAD,
    MAX_JOB_WAIT,
    BulkPlan,
    FieldKind,
    JobState,
    ReadSpan,
    Span,
    column_readers,
    csv_rows,
    field_kinds,
    poll_delay,
    rest_row,
    span_filter,
    time_key,
)

__all__ = ["BulkExport"]

logger = logging.getLogger("incsync")

_VENDOR = "salesforce"
_NO_MORE = ("", "null")


class BulkExport:
    """Exports one SObject's rows by Bulk API 2.0 query jobs, span by span, as pages of records.

    Args:
        connector: The connector whose client, retries and error boundary every request uses.
        api: The versioned API root (``/services/data/v59.0``).
        sobject: The SObject, as the connector was given it.
        fields: The fields every row carries, ``Id`` and ``SystemModstamp`` first.
        operation: ``"query"``, or ``"queryAll"`` to read the recycle bin too.
        count: Returns the ``totalSize`` of a ``SELECT COUNT()`` query, through the read's
            endpoint.
        build: Builds one row's record (the connector's ``to_record``).
        batch_size: Records per page passed on.
        window: Rows one job may export to be sorted in memory.
        resolution: The grain of the source's time filter.
    """

    def __init__(
        self,
        connector: HttpConnector,
        *,
        api: str,
        sobject: str,
        fields: Sequence[str],
        operation: str,
        count: Callable[[str], int],
        build: Callable[[Any], Record],
        batch_size: int,
        window: int,
        resolution: timedelta,
    ) -> None:
        self._connector = connector
        self._api = api
        self._sobject = sobject
        self._fields = tuple(fields)
        self._operation = operation
        self._count = count
        self._build = build
        self._batch_size = batch_size
        self._window = window
        self._resolution = resolution
        self._described: tuple[str, dict[str, FieldKind], str] | None = None

    def refusal(self) -> str:
        """Return why the fields cannot be exported (``""`` if they can); the describe is read once.

        Raises:
            SourceError: The describe could not be read.
        """
        return self._describe()[2]

    def read(
        self, start: datetime | None, total: int, *, earliest: datetime, now: datetime
    ) -> Iterator[Page]:
        """Yield the pages of every row with ``SystemModstamp >= start``, in time order.

        The spans are planned first (their counts asked); then each span's job is created
        :data:`~incsync.vendors._salesforce_bulk.JOBS_AHEAD` spans ahead of the one read.

        Args:
            start: The read's start; ``None`` for everything.
            total: How many rows the read holds (the first REST answer's ``totalSize``).
            earliest: The oldest row's ``SystemModstamp``.
            now: The source's time.

        Raises:
            TransientSourceError: A job failed, was aborted, or did not complete in time.
            BadResponseError: Salesforce answered with something that is not the job's.
            SourceError: Salesforce could not be asked.
        """
        plan = BulkPlan.starting(
            start,
            total,
            earliest=earliest,
            now=now,
            resolution=self._resolution,
            window=self._window,
        )
        spans = plan.spans(lambda span: self._count(self._soql(span, count=True)))
        created: dict[int, str] = {}
        try:
            for index, step in enumerate(spans):
                for ahead in range(index, min(index + 1 + JOBS_AHEAD, len(spans))):
                    if ahead not in created:
                        created[ahead] = self._create(self._soql(spans[ahead].span))
                yield from self._export(created.pop(index), step, total=total)
        finally:
            for job in created.values():
                self._discard(job, None)

    def _describe(self) -> tuple[str, dict[str, FieldKind], str]:
        if self._described is None:
            body = self._connector.get_json(f"{self._api}/sobjects/{self._sobject}/describe")
            kinds, refusal = field_kinds(body, self._fields)
            name = body.get("name") if isinstance(body, dict) else None
            self._described = (name if isinstance(name, str) else self._sobject, kinds, refusal)
        return self._described

    def _soql(self, span: Span, *, count: bool = False) -> str:
        selected = "COUNT()" if count else ", ".join(self._fields)
        return f"SELECT {selected} FROM {self._sobject}{span_filter(span)}"

    def _export(self, job: str, step: ReadSpan, *, total: int) -> Iterator[Page]:
        """Wait for ``job`` (an empty page a look), then pass on its rows, then discard it."""
        ended: JobState | None = None
        try:
            for state in self._wait(job, step.span):
                ended = state
                if state.running:
                    yield Page(total=total)
            pages = self._results(job)
            if step.in_order:
                pages = iter([_sorted(pages)])
            for header, rows in pages:
                for at in range(0, len(rows), self._batch_size):
                    yield self._page(header, rows[at : at + self._batch_size], total)
                del rows
        finally:
            self._discard(job, ended)

    def _create(self, soql: str) -> str:
        body = self._connector.request_json(
            "POST",
            f"{self._api}/jobs/query",
            json={
                "operation": self._operation,
                "query": soql,
                "contentType": "CSV",
                "columnDelimiter": "COMMA",
                "lineEnding": "LF",
            },
        )
        job = body.get("id") if isinstance(body, dict) else None
        if not isinstance(job, str) or not job.isalnum():
            raise BadResponseError(
                f"salesforce: the answer to a new bulk query job names no job id ({job!r:.40})",
                vendor=_VENDOR,
            )
        return job

    def _wait(self, job: str, span: Span) -> Iterator[JobState]:
        """Yield the job's state after each look, until it is complete; raise if it ends else.

        The first look is at once: a job created ahead of its turn is often complete by then.
        """
        waited, attempt = 0.0, 0
        while True:
            info = self._connector.get_json(f"{self._api}/jobs/query/{job}")
            state = _state_of(info)
            yield state
            if state is JobState.JOB_COMPLETE:
                return
            if not state.running:
                message = info.get("errorMessage") if isinstance(info, dict) else None
                raise TransientSourceError(
                    f"salesforce: the bulk query job {job} reading {self._sobject}"
                    f"{span_filter(span)} ended {state.value}"
                    f"{f': {message}' if message else ''}; the cycle fails and the cursor stays "
                    f"after the rows already applied, so the next cycle reads on from there",
                    vendor=_VENDOR,
                )
            if waited >= MAX_JOB_WAIT.total_seconds():
                raise TransientSourceError(
                    f"salesforce: the bulk query job {job} reading {self._sobject} did not "
                    f"complete within {MAX_JOB_WAIT}; it is aborted, and the next cycle tries "
                    f"again from the rows already applied",
                    vendor=_VENDOR,
                )
            delay = poll_delay(attempt)
            self._connector.options.sleep(delay)
            waited, attempt = waited + delay, attempt + 1

    def _results(self, job: str) -> Iterator[tuple[list[str], list[list[str]]]]:
        locator: str | None = None
        seen: set[str] = set()
        while True:
            params = {"maxRecords": str(BULK_RESULTS_PAGE)}
            if locator is not None:
                params["locator"] = locator
            response = self._connector.request(
                "GET",
                f"{self._api}/jobs/query/{job}/results",
                params=params,
                headers={"Accept": "text/csv"},
            )
            yield csv_rows(_text(response), self._fields, expected=_announced(response))
            locator = response.headers.get("Sforce-Locator", "").strip()
            if locator in _NO_MORE:
                return
            if locator in seen:
                raise BadResponseError(
                    f"salesforce: the bulk query job {job} gave the locator {locator[:40]!r} "
                    f"twice; paging stopped instead of looping",
                    vendor=_VENDOR,
                )
            seen.add(locator)

    def _page(self, header: list[str], rows: Sequence[list[str]], total: int) -> Page:
        name, kinds, _ = self._describe()
        readers = column_readers(header, kinds)
        ids = header.index("Id") if "Id" in header else 0
        url = f"{self._api}/sobjects/{name}/"

        def build(values: list[str]) -> Record:
            attributes = {"type": name, "url": url + values[ids]}
            return self._build(rest_row(header, values, readers, attributes))

        outcomes = [outcome_of(build, values) for values in rows]
        return Page(
            records=[outcome for outcome in outcomes if isinstance(outcome, Record)],
            rejected=[outcome for outcome in outcomes if isinstance(outcome, RejectedRecord)],
            total=total,
        )

    def _discard(self, job: str, ended: JobState | None) -> None:
        """Abort a job left running, or delete a completed one; a failure here is only logged.

        A job never looked at (``ended`` is ``None``: created ahead of a read that ended) is
        looked at first. A failed or aborted job is left for the org's admins to see (Salesforce
        deletes it after 7 days).
        """
        try:
            if ended is None:
                ended = _state_of(self._connector.get_json(f"{self._api}/jobs/query/{job}"))
            if ended.running:
                self._connector.request(
                    "PATCH", f"{self._api}/jobs/query/{job}", json={"state": "Aborted"}
                )
            elif ended is JobState.JOB_COMPLETE:
                self._connector.request("DELETE", f"{self._api}/jobs/query/{job}")
        # A clean-up runs when the read ends, however it ends (even as its generator is closed
        # after the connector): it must not raise over what ended the read.
        except Exception as error:  # noqa: BLE001 - see above
            logger.warning("salesforce: bulk query job %s was not cleaned up: %s", job, error)


def _sorted(
    pages: Iterator[tuple[list[str], list[list[str]]]],
) -> tuple[list[str], list[list[str]]]:
    """Gather a job's pages into one, its rows ascending by ``(SystemModstamp, Id)``."""
    header: list[str] = []
    rows: list[list[str]] = []
    for columns, page in pages:
        header = columns
        rows.extend(page)
    if not rows:
        return header, rows
    lowered = [name.lower() for name in header]
    stamp, ids = lowered.index("systemmodstamp"), lowered.index("id")

    def key(values: list[str]) -> tuple[str, str]:
        # A row whose time cannot be read is set aside when its record is built; first is fine.
        return time_key(values[stamp]), values[ids][:15]

    rows.sort(key=key)
    return header, rows


def _state_of(info: object) -> JobState:
    state = info.get("state") if isinstance(info, dict) else None
    try:
        return JobState(state)
    except ValueError:
        raise BadResponseError(
            f"salesforce: a bulk query job's information holds the state {state!r:.40}, which is "
            f"no query job state",
            vendor=_VENDOR,
        ) from None


def _text(response: httpx.Response) -> str:
    try:
        return response.content.decode("utf-8")
    except UnicodeDecodeError:
        raise BadResponseError(
            "salesforce: a page of bulk query results is not UTF-8 text",
            vendor=_VENDOR,
            status_code=response.status_code,
        ) from None


def _announced(response: httpx.Response) -> int | None:
    return header_count(response.headers.get("Sforce-NumberOfRecords"))
