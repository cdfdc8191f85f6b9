"""A connector for any JSON API with an "updated since" filter, driven by plain configuration.

Everything vendor-specific is in a :class:`~incsync.connectors._rest_config.RestConfig`: where the
API is, the filter parameter and how it writes a time, where records, ids and times sit in an
answer, which records are deletions, the credential and the paging style. The reading rules:

* **Cursor and next-link paging** follow the source's tokens (refusing one that repeats, and a
  next link to another host, which would receive the credential). Such tokens are usually keyset
  positions, which stay valid while records change.
* **Offset and page-number paging, ordered sources** (``ordered = true``: sorted ascending by the
  update time). Offsets count into the result set as it is *now*: when a record before the offset
  changes, it moves to the end and every later record moves back one, so the next page skips one
  for good. So offsets are not trusted across timestamps: after each page the filter is asked
  again from the newest time read (keyset paging), dropping the ids already read at that time.
  Only when a whole page shares one timestamp (a burst) does the connector page by offset inside
  it; before leaving that timestamp it reads the burst again from offset 0 until a pass brings no
  id it had not read, which catches a record skipped by a change within the burst (a change
  during the very last pass can still hide one: the source gives nothing to check against).
* **Offset and page-number paging, unordered sources** page plainly: this is only safe when the
  source's order does not move records that change (sorted by id or creation), which is what
  ``ordered = false`` with offsets asserts. The engine moves an unordered source's cursor only when
  a cycle completes.
* **No paging**: one answer holds every record.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import httpx

from incsync.connectors._rest_config import RestConfig
from incsync.connectors.auth import Auth
from incsync.connectors.base import RawPage
from incsync.connectors.http import HttpConnector, HttpOptions
from incsync.connectors.paging import KeysetPosition, cursor_pages, offset_pages
from incsync.cursor import Window
from incsync.errors import (
    BadRecordError,
    BadResponseError,
    TransientSourceError,
)
from incsync.records import Page, RecordFormat, text_or_integer_id

__all__ = ["MAX_BURST_PASSES", "RestConnector"]

MAX_BURST_PASSES = 5
"""Reads of one over-full timestamp that may each find unread ids before the cycle gives up."""

Key = tuple[datetime, str]

_fromisoformat = datetime.fromisoformat


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

    # -- records -------------------------------------------------------------------------------

    def is_deleted(self, raw: Mapping[str, Any]) -> bool:
        """Return whether ``raw`` matches the configured tombstone rule."""
        tombstone = self._tombstone
        return tombstone is not None and tombstone.matches(raw)

    def read(self, window: Window) -> Iterator[Page]:
        """Yield the pages of :meth:`fetch`; for an ordered source, check that they are.

        Raises:
            BadResponseError: ``ordered = true`` but a record is older than one read before it:
                per-page checkpoints would then skip records. Set ``ordered = false``, and reset
                the source, whose cursor may have passed records not read yet.
            SourceError: The API could not be read.
        """
        newest: datetime | None = None
        for page in super().read(window):
            if self.ordered:
                for record in page.records:
                    if newest is not None and record.updated_at < newest:
                        raise BadResponseError(
                            f"{self.vendor}: record {record.id!r} (updated "
                            f"{record.updated_at.isoformat()}) came after one updated "
                            f"{newest.isoformat()}, but the configuration says ordered = true; "
                            f"set ordered = false and reset the source",
                            vendor=self.vendor,
                        )
                    newest = record.updated_at
            yield page

    def _key(self, raw: object) -> Key | None:
        """Return a raw record's ``(updated_at, id)``, or ``None`` when it is malformed."""
        try:
            record = self.to_record(raw)  # type: ignore[arg-type]  # any JSON value is judged
        except BadRecordError:
            return None
        return record.updated_at, record.id

    # -- reading -------------------------------------------------------------------------------

    def fetch(self, window: Window) -> Iterable[RawPage]:
        """Yield every record updated at or after ``window.start`` (everything for a full read).

        Raises:
            SourceError: The API could not be read.
        """
        paging = self.config.paging
        if paging.style == "none":
            records = self._records(self._get(self.config.path, self._params(window.start)))
            return [records] if records else []
        if paging.style == "cursor":
            return cursor_pages(lambda token: self._cursor_page(window.start, token))
        if paging.style == "next_link":
            return cursor_pages(lambda link: self._linked_page(window.start, link))
        if self.ordered:
            return self._keyset_pages(window.start)
        return offset_pages(
            lambda offset: self._records(self._numbered(window.start, offset)),
            page_size=paging.size,
        )

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

    def _numbered(self, since: datetime | None, offset: int) -> Any:
        """Return the answer for the page at ``offset`` (as a page number for page paging)."""
        paging = self.config.paging
        params = self._params(since)
        if paging.style == "page":
            params.append((paging.page_param, str(paging.first_page + offset // paging.size)))
        else:
            params.append((paging.offset_param, str(offset)))
        return self._get(self.config.path, params)

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

    def _keyset_pages(self, since: datetime | None) -> Iterator[RawPage]:
        """Page an ordered source by re-asking from the newest time read (module docstring)."""
        size = self.config.paging.size
        position: KeysetPosition | None = None
        query_since, offset = since, 0
        at_since: set[str] = set()  # ids read at exactly ``query_since``
        malformed: set[str] = set()  # set aside once, however often re-queries return them
        while True:
            raws = self._records(self._numbered(query_since, offset))
            fresh = self._fresh(raws, position, malformed)
            keyed = [(self._key(raw), raw) for raw in fresh]
            keys = [key for key, _ in keyed if key is not None]
            position = KeysetPosition.after(position, keys)
            at_since.update(key[1] for key in keys if key[0] == query_since)
            newest = None if position is None else position.updated_at
            leaving = len(raws) < size or (
                newest is not None and (query_since is None or newest > query_since)
            )
            if leaving and offset:
                # Leaving a burst read by offset: read it again for skipped records before any
                # later record goes out, so pages stay in ascending time for the checkpoints.
                assert query_since is not None  # offsets are only used inside a burst
                burst = [raw for key, raw in keyed if key is None or key[0] <= query_since]
                later = [raw for key, raw in keyed if key is not None and key[0] > query_since]
                if burst:
                    yield burst
                yield from self._burst_again(query_since, at_since)
                if later:
                    yield later
            elif fresh:
                yield fresh
            if len(raws) < size:
                return
            if leaving:
                assert position is not None  # set by the full page just read
                query_since, offset = newest, 0
                at_since = set(position.seen_at_updated_at)
            else:
                offset += size  # a whole page shares one timestamp: page inside it

    def _fresh(
        self, raws: Sequence[Any], position: KeysetPosition | None, malformed: set[str]
    ) -> list[Any]:
        fresh = []
        for raw in raws:
            key = self._key(raw)
            if key is None:
                marker = repr(raw)
                if marker not in malformed:  # to_record sets it aside with the reason
                    malformed.add(marker)
                    fresh.append(raw)
            elif position is None or position.is_new(key):
                fresh.append(raw)
        return fresh

    def _burst_again(self, stamp: datetime, seen: set[str]) -> Iterator[RawPage]:
        """Read the records at ``stamp`` again until a pass finds no id not in ``seen``.

        A change to a record inside a burst moves it out of the burst and every later record of
        the burst back one offset, so paging the burst by offset can skip one; a pass over the
        whole burst that finds nothing unread shows that none was skipped before it.
        """
        size = self.config.paging.size
        for _ in range(MAX_BURST_PASSES):
            found, offset = False, 0
            while True:
                raws = self._records(self._numbered(stamp, offset))
                keys = [key for key in map(self._key, raws) if key is not None]
                unread = [
                    raw
                    for raw, key in zip(raws, map(self._key, raws), strict=True)
                    if key is not None and key[0] == stamp and key[1] not in seen
                ]
                if unread:
                    found = True
                    seen.update(key[1] for key in keys if key[0] == stamp)
                    yield unread
                if len(raws) < size or any(key[0] > stamp for key in keys):
                    break
                offset += size
            if not found:
                return
        raise TransientSourceError(
            f"{self.vendor}: the records updated at {stamp.isoformat()} kept changing while they "
            f"were read {MAX_BURST_PASSES} times; the next cycle reads them again",
            vendor=self.vendor,
        )
