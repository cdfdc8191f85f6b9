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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
    NaiveDatetimeError,
    TransientSourceError,
)
from incsync.records import Page, Record, trusted_record
from incsync.timestamps import UTC

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
        self._updated_at_name = str(records.updated_at)
        # Read once per record: held here rather than looked up through the config each time.
        self._tombstone = config.tombstone
        self._id_of = records.id.get
        self._updated_at_of = records.updated_at.get
        # ISO times without an assumed zone: fromisoformat's UTC answers need no further step.
        self._iso_updated_at = (
            records.updated_at_format.kind == "iso8601" and not records.updated_at_format.assume_utc
        )
        self._common_record = self._common_record_builder()

    # -- records -------------------------------------------------------------------------------

    def is_deleted(self, raw: Mapping[str, Any]) -> bool:
        """Return whether ``raw`` matches the configured tombstone rule."""
        tombstone = self._tombstone
        return tombstone is not None and tombstone.matches(raw)

    def to_record(self, raw: Mapping[str, Any]) -> Record:
        """Build the record from the configured id and update-time paths.

        Raises:
            BadRecordError: ``raw`` is not an object, or its id or time is missing or unreadable.
        """
        common = self._common_record(raw)
        if common is not None:
            return common
        if type(raw) is not dict and not isinstance(raw, Mapping):
            raise BadRecordError(f"expected a JSON object, got {type(raw).__name__}")
        records = self.config.records
        deleted = self.is_deleted(raw)
        raw_id = self._id_of(raw)
        if type(raw_id) is str and raw_id:
            record_id = raw_id
        elif isinstance(raw_id, int) and not isinstance(raw_id, bool):
            record_id = str(raw_id)
        else:
            raise BadRecordError(
                f"field {str(records.id)!r} must be a non-empty string or integer, got {raw_id!r}"
            )
        value = self._updated_at_of(raw)
        field = self._updated_at_name
        if value is None:
            raise BadRecordError(f"field {field!r} is missing", record_id=record_id)
        try:
            updated_at = records.updated_at_format.parse(value, field)
        except NaiveDatetimeError:
            raise BadRecordError(
                f"field {field!r} has no timezone: {value!r}", record_id=record_id
            ) from None
        except ValueError as error:
            raise BadRecordError(str(error), record_id=record_id) from None
        if updated_at.tzinfo is UTC:  # as every parser gives: the checked fast route
            return trusted_record(record_id, updated_at, raw, deleted)
        return Record(id=record_id, updated_at=updated_at, payload=raw, deleted=deleted)

    def _common_record_builder(self) -> Callable[[object], Record | None]:
        """Return a function that builds the record of a row in the common form, else ``None``.

        The common form, once per row of every read: a plain dict whose id is non-empty text or
        an integer and whose time is ISO text in UTC that fromisoformat reads. Everything the
        function needs is bound once here, not looked up through the configuration per row.
        Anything else is left to :meth:`to_record`'s checked path, which explains a refusal.
        """
        if not self._iso_updated_at:
            return _no_record
        id_of, updated_at_of = self._id_of, self._updated_at_of
        deleted_of: Callable[[Any], bool] = self.is_deleted
        if type(self).is_deleted is RestConnector.is_deleted:
            # Not overridden: the configured rule is asked directly, one call less per row.
            deleted_of = _never if self._tombstone is None else self._tombstone.matches

        def common_record(raw: object) -> Record | None:
            if type(raw) is not dict:
                return None
            record_id, text = id_of(raw), updated_at_of(raw)
            if type(record_id) is int:  # bools are not ints here: type() is exact
                record_id = str(record_id)
            elif type(record_id) is not str or not record_id:
                return None
            if type(text) is not str:
                return None
            try:
                moment = _fromisoformat(text)
            except ValueError:
                return None
            if moment.tzinfo is not UTC:
                return None
            return trusted_record(record_id, moment, raw, deleted_of(raw))

        return common_record

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


def _no_record(_raw: object) -> None:
    return None


def _never(_raw: object) -> bool:
    return False
