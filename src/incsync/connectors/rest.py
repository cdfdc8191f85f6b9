"""A connector for any JSON API with an "updated since" filter, driven by plain configuration.

Everything vendor-specific is in a :class:`RestConfig` (exported here and by
:mod:`incsync.connectors`): where the API is, the filter parameter and how it writes a time, where
records, ids and times sit in an answer, which records are deletions, the credential and the paging
style.

**Ordered sources** (``ordered = true``: sorted ascending by update time) are read by the keyset
driver, :func:`~incsync.connectors.keyset.read_by_keyset`, which checks that order on every row
(a row older than one read before it fails the read with
:class:`~incsync.errors.BadResponseError`: set ``ordered = false`` and reset the source). This
module plugs in:

* **The query from a time** ``S``: the filter parameter written from ``S`` in the filter's format.
  The tick is that format's resolution (1 s for epoch seconds, 1 ms for epoch milliseconds, 1 µs
  for ISO 8601, a pattern's finest field), so ``S``, a tick's start, is written exactly. With
  offset or page-number paging the answer is the first page only (offset 0, or the first page
  number), a full page meaning more: an offset counts into the result as it is *now* and shifts
  when a record before it changes, so it is never followed across pages and the driver asks again
  from the newest tick read. Cursor and next-link tokens are followed to the answer's end
  (refusing one that repeats, and a next link to another host, which would receive the
  credential): they are keyset positions, which stay valid while records change. Without paging,
  one answer holds everything.
* **A tick read whole**, when more records share one tick than a page holds (a bulk import): the
  filter cannot say "equal", so the tick is paged by offset inside ``>= tick`` while its records
  come (those of later ticks that come along are left to the driver). A change to a record of the
  tick moves it out of its place and every later one back an offset, so a page can skip one: the
  tick is read again from offset 0 until a pass brings no version not read, and after
  :data:`MAX_BURST_PASSES` passes that each did the read fails with
  :class:`~incsync.errors.TransientSourceError` (the next cycle tries again). A change during
  the very last pass can still hide a record: the source gives nothing to check against.

**Unordered sources** are read plainly, their pages built through the record path: tokens for
cursor and next-link paging, offset after offset for offset and page-number paging (only safe when
the source's order does not move records that change, sorted by id or creation, which is what
``ordered = false`` with offsets asserts), one answer without paging. The engine moves an
unordered source's cursor only when a cycle completes.

**Deletes** are the records the ``tombstone`` rule matches: an API that keeps listing deleted
records with a marker. How long it keeps them is ``tombstone.retention_days``, the connector's
``delete_retention`` (``None``, for ever, when not set, and when there is no tombstone rule: then
only a whole re-read, which the engine follows with a sweep, finds deletions). **The count
check** (``count_live``) asks ``path`` once, with ``count.params`` over the static parameters
and a page size of 1 where the paging sends one, and reads the total at ``count.total_path``;
without a ``count`` table there is none.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import httpx

from incsync.connectors._counts import counted
from incsync.connectors._rest_config import RestConfig
from incsync.connectors.auth import Auth
from incsync.connectors.base import RawPage
from incsync.connectors.http import HttpConnector, HttpOptions
from incsync.connectors.keyset import Answer, FromTime, WholeTick, read_by_keyset
from incsync.connectors.paging import cursor_pages, offset_pages
from incsync.cursor import Window
from incsync.errors import BadResponseError, TransientSourceError
from incsync.records import Page, Record, RecordFormat, outcome_of, text_or_integer_id

__all__ = ["MAX_BURST_PASSES", "RestConfig", "RestConnector"]

MAX_BURST_PASSES = 5
"""Reads of one crowded tick again that may each find versions not read before the read fails."""

_Version = tuple[str, datetime]


class RestConnector(HttpConnector):
    """Reads one JSON API described by a :class:`RestConfig` (see the module docstring).

    Args:
        config: What to read and how.
        auth: The credential flow; built from ``config.auth`` and ``secrets`` when omitted.
        secrets: Where the secret named by ``config.auth.secret`` is looked up; the process
            environment by default.
        headers: Headers sent with every request.
        options: Timeouts, retries, transport and the hooks tests inject
            (:class:`~incsync.connectors.http.HttpOptions`); the defaults otherwise.

    Raises:
        ConfigurationError: The named secret has no value.
    """

    vendor: ClassVar[str] = "rest"

    def __init__(
        self,
        config: RestConfig,
        *,
        auth: Auth | None = None,
        secrets: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        options: HttpOptions | None = None,
    ) -> None:
        if auth is None:
            auth = config.auth.build(os.environ if secrets is None else secrets)
        super().__init__(
            config.base_url,
            auth=auth,
            headers=headers,
            options=options,
        )
        self.config = config
        self.ordered = config.ordered
        self.lookback = config.lookback
        records = config.records
        self.record_format = RecordFormat(
            records.id, records.updated_at, records.updated_at_format.parse, text_or_integer_id
        )
        self._tombstone = config.tombstone
        self.delete_retention = None if config.tombstone is None else config.tombstone.retention

    # -- records -------------------------------------------------------------------------------

    def is_deleted(self, raw: Mapping[str, Any]) -> bool:
        """Return whether ``raw`` matches the configured tombstone rule."""
        tombstone = self._tombstone
        return tombstone is not None and tombstone.matches(raw)

    def read(self, window: Window) -> Iterator[Page]:
        """Yield every record updated at or after ``window.start``, malformed ones set aside.

        An ordered source is read by the keyset driver (see the module docstring); an unordered
        one page by page from :meth:`fetch`.

        Raises:
            BadResponseError: The API's answer cannot be read, or ``ordered = true`` but a record
                is older than one read before it: set ``ordered = false``, and reset the source,
                whose cursor may have passed records not read yet.
            TransientSourceError: A crowded tick kept changing while it was read.
            SourceError: The API could not be read.
        """
        if not self.ordered:
            yield from super().read(window)
            return
        resolution = self.config.filter.format.resolution
        assert resolution is not None  # RestConfig refuses ordered = true without one
        yield from read_by_keyset(
            window.start,
            resolution=resolution,
            query=self._query,
            read_tick=self._read_tick,
            build=self.to_record,
            vendor=self.vendor,
            advice=(
                "the configuration says ordered = true: if the API does not return records sorted "
                "by update time, ascending, set ordered = false and reset the source"
            ),
        )

    def count_live(self) -> int | None:
        """Return the total at ``count.total_path`` of one answer; ``None`` without ``count``.

        Raises:
            BadResponseError: The answer holds no count there.
            SourceError: The API could not be asked.
        """
        count = self.config.count
        if count is None:
            return None
        overridden = {name for name, _ in count.params}
        params = [pair for pair in self.config.params if pair[0] not in overridden]
        params.extend(count.params)
        if self.config.paging.size_param is not None:
            params.append((self.config.paging.size_param, "1"))
        answer = self._get(self.config.path, params)
        return counted(
            count.total_path.get(answer),
            vendor=self.vendor,
            where=f"count.total_path {str(count.total_path)!r} of the answer",
        )

    # -- reading -------------------------------------------------------------------------------

    def fetch(self, window: Window) -> Iterable[RawPage]:
        """Yield an unordered read's raw pages: every record updated at or after ``window.start``.

        Raises:
            SourceError: The API could not be read.
        """
        paging = self.config.paging
        if paging.style in ("offset", "page"):
            return offset_pages(
                lambda offset: self._page_at(window.start, offset), page_size=paging.size
            )
        return self._answer(window.start)

    def _answer(self, since: datetime | None) -> Iterable[RawPage]:
        """Yield the whole answer from ``since`` by the source's tokens (or in one, unpaged)."""
        paging = self.config.paging
        if paging.style == "cursor":
            return cursor_pages(lambda token: self._cursor_page(since, token))
        if paging.style == "next_link":
            return cursor_pages(lambda link: self._linked_page(since, link))
        records = self._records(self._get(self.config.path, self._params(since)))
        return [records] if records else []

    # -- the keyset driver's plugs (ordered sources) ----------------------------------------------

    def _query(self, step: FromTime) -> Iterator[Answer]:
        """Ask for the records updated at or after ``step.start``, ascending (module docstring)."""
        paging = self.config.paging
        if paging.style in ("offset", "page"):
            first = self._page_at(step.start, 0)
            yield Answer(first, more=len(first) >= paging.size)
            return
        for rows in self._answer(step.start):
            yield Answer(rows, more=False)

    def _read_tick(self, step: WholeTick) -> Iterator[RawPage]:
        """Yield every record of one crowded tick, read again until a pass finds nothing new.

        Raises:
            TransientSourceError: :data:`MAX_BURST_PASSES` reads again each found a version not
                read: the tick kept changing while it was read.
            BadResponseError: The API ignores the offset or page parameter.
        """
        read: set[_Version] = set()
        for _ in range(1 + MAX_BURST_PASSES):
            found = yield from self._tick_pass(step)
            if found <= read:
                return
            read |= found
        raise TransientSourceError(
            f"{self.vendor}: the records updated from {step.start.isoformat()} to "
            f"{step.end.isoformat()} kept changing while they were read {MAX_BURST_PASSES} times "
            f"again; the next cycle reads them again",
            vendor=self.vendor,
        )

    def _tick_pass(self, step: WholeTick) -> Generator[RawPage, None, set[_Version]]:
        """Yield the tick's pages by offset inside ``>= tick``; return the versions they held.

        Raises:
            BadResponseError: A full page held only versions read on earlier pages of the pass:
                the API ignores the offset or page parameter, and would answer it for ever.
        """
        paging = self.config.paging
        found: set[_Version] = set()
        offset = 0
        while True:
            rows = self._page_at(step.start, offset)
            yield rows
            versions, beyond = self._versions_in(step, rows)
            goes_on = len(rows) >= paging.size and not beyond
            if goes_on and versions and versions <= found:
                param = paging.page_param if paging.style == "page" else paging.offset_param
                raise BadResponseError(
                    f"{self.vendor}: the page at offset {offset} of the records updated from "
                    f"{step.start.isoformat()} repeats records read on an earlier page; the API "
                    f"seems to ignore the {param!r} parameter: check paging.{paging.style}_param",
                    vendor=self.vendor,
                )
            found |= versions
            if not goes_on:
                return found
            offset += paging.size

    def _versions_in(self, step: WholeTick, rows: RawPage) -> tuple[set[_Version], bool]:
        """Return the versions of ``rows`` inside the tick, and whether a later one came."""
        versions: set[_Version] = set()
        beyond = False
        for raw in rows:
            outcome = outcome_of(self.to_record, raw)
            if not isinstance(outcome, Record):
                continue  # set aside by the driver
            if outcome.updated_at >= step.end:
                beyond = True
            elif outcome.updated_at >= step.start:
                versions.add((outcome.id, outcome.updated_at))
        return versions, beyond

    def _params(self, since: datetime | None) -> list[tuple[str, str]]:
        config = self.config
        params = list(config.params)
        if since is not None:
            params.append((config.filter.param, config.filter.format.render(since)))
        if config.paging.size_param is not None:
            params.append((config.paging.size_param, str(config.paging.size)))
        return params

    def _get(self, url: str, params: Sequence[tuple[str, str]] | None) -> Any:
        # No params at all for a next link: httpx replaces a URL's query with any params given.
        return self.get_json(
            url, params=None if params is None else httpx.QueryParams(list(params))
        )

    def _records(self, answer: object) -> list[Any]:
        records = self.config.records.path.get(answer) if self.config.records.path.parts else answer
        if not isinstance(records, list):
            raise BadResponseError(
                f"{self.vendor}: the answer has no list of records at "
                f"{str(self.config.records.path)!r}; check records.path",
                vendor=self.vendor,
            )
        return records

    def _page_at(self, since: datetime | None, offset: int) -> list[Any]:
        """Return the records at ``offset`` (sent as a page number for page paging)."""
        paging = self.config.paging
        params = self._params(since)
        if paging.style == "page":
            params.append((paging.page_param, str(paging.first_page + offset // paging.size)))
        else:
            params.append((paging.offset_param, str(offset)))
        return self._records(self._get(self.config.path, params))

    def _cursor_page(self, since: datetime | None, token: str | None) -> tuple[RawPage, str | None]:
        paging = self.config.paging
        params = self._params(since)
        if token is not None:
            params.append((paging.cursor_param, token))
        answer = self._get(self.config.path, params)
        assert paging.cursor_path is not None  # required for cursor paging by the config
        return self._records(answer), self._token(paging.cursor_path.get(answer))

    def _linked_page(self, since: datetime | None, link: str | None) -> tuple[RawPage, str | None]:
        if link is None:
            answer = self._get(self.config.path, self._params(since))
        else:
            answer = self._get(link, None)
        assert self.config.paging.next_link_path is not None  # required by the config
        following = self._token(self.config.paging.next_link_path.get(answer))
        return self._records(answer), None if following is None else self._same_origin(following)

    def _token(self, value: object) -> str | None:
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise BadResponseError(
                f"{self.vendor}: the next-page value is {type(value).__name__}, not text; check "
                f"the paging path",
                vendor=self.vendor,
            )
        return str(value)

    def _same_origin(self, link: str) -> str:
        """Return the next link as an absolute URL, refusing one that leaves the API's host."""
        base = httpx.URL(self.config.base_url)
        url = base.join(link)
        if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
            raise BadResponseError(
                f"{self.vendor}: the next-page link points to {url.scheme}://{url.host}, not to "
                f"the API's host; it is not followed, so the credential stays with the API",
                vendor=self.vendor,
            )
        return str(url)
