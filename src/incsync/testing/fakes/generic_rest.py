"""A fake JSON API with an "updated since" filter, for testing the configurable REST connector.

It behaves like the many small business APIs that have no vendor of their own in incsync:

- ``GET /v1/items`` behind a credential (a bearer token, an ``X-API-Key`` header or an
  ``api_key`` query parameter, as chosen); a wrong or missing one is a 401 with a JSON body.
- ``updated_since`` keeps the items updated at or after a moment, written as ISO 8601, epoch
  seconds or epoch milliseconds (the fake's ``timestamp_format``). Times are kept to the fake's
  precision (whole seconds unless told), so bursts share a timestamp.
- Items come sorted by ``(updated_at, id)`` (``sort="updated"``) or by id (``sort="id"``).
  Deleted items stay, with ``status: "deleted"``, but only when ``include_deleted=true`` is asked,
  and only for ``deleted_retention`` after their deletion when one is set.
- One paging style per fake: ``offset`` (``limit``/``offset``), ``page`` (``limit``/``page`` from
  1), ``cursor`` (``meta.next_cursor``, sent back as ``cursor``), ``next_link`` (``links.next``, an
  absolute URL holding every parameter) or ``none`` (everything in one answer). Offsets and page
  numbers count into the result set as it is *now*, so they shift when items change between pages;
  cursors are keyset positions and do not. ``limit`` above ``max_page_size`` is a 400.
- More than ``requests_per_second`` requests in one second of the fake's clock is a 429 with
  ``Retry-After: 1``.

The answer::

    {"data": {"items": [{"id": "r0000001", "name": "...", "amount": 10, "status": "active",
                         "meta": {"updated_at": "2024-01-01T00:00:00Z"}}, ...]},
     "meta": {"total": 1234, "next_cursor": "..." | null},
     "links": {"next": "http://.../v1/items?...&cursor=..." | null}}
"""

from __future__ import annotations

import base64
import bisect
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

import attrs
import httpx

from incsync.testing import ManualClock
from incsync.testing.fakes._server import FakeVendor
from incsync.timestamps import (
    UTC,
    from_micros,
    parse_epoch_millis,
    parse_epoch_seconds,
    parse_timestamp,
    to_micros,
)

__all__ = ["FakeGenericRest"]

Paging = Literal["offset", "page", "cursor", "next_link", "none"]
Format = Literal["iso8601", "epoch_seconds", "epoch_ms"]
AuthMode = Literal["bearer", "header", "query"]

ITEMS_PATH = "/v1/items"
DEFAULT_PAGE_SIZE = 20


@attrs.define
class _Item:
    id: str
    fields: dict[str, Any]
    updated_micros: int
    deleted: bool = False
    deleted_micros: int = 0  # when it was deleted, on the fake's clock
    malformed: bool = False
    raw: Any = None  # a malformed item's row (any JSON value), rendered exactly as given


class FakeGenericRest(FakeVendor):
    """An in-process fake of a generic JSON API; see the module docstring for its behaviour.

    Args:
        paging: The paging style it serves.
        timestamp_format: How ``updated_since`` and ``meta.updated_at`` are written.
        sort: ``"updated"`` (ascending ``(updated_at, id)``) or ``"id"``.
        max_page_size: The largest ``limit`` accepted.
        token: The credential it accepts.
        auth: Where the credential travels: ``"bearer"``, ``"header"`` (``X-API-Key``) or
            ``"query"`` (``api_key``).
        requests_per_second: Requests allowed per second of the fake's clock; ``None``: no limit.
        precision: The finest time step it keeps.
        clock: Its clock; a manual one at 2024-06-01 by default.
        deleted_retention: How long a deleted item is still listed (to ``include_deleted=true``);
            ``None``: for ever.
    """

    def __init__(
        self,
        *,
        paging: Paging = "offset",
        timestamp_format: Format = "iso8601",
        sort: Literal["updated", "id"] = "updated",
        max_page_size: int = 100,
        token: str = "generic-secret-token-5f2c",
        auth: AuthMode = "bearer",
        requests_per_second: int | None = None,
        precision: timedelta = timedelta(seconds=1),
        clock: ManualClock | None = None,
        deleted_retention: timedelta | None = None,
    ) -> None:
        super().__init__()
        self.paging = paging
        self.timestamp_format = timestamp_format
        self.sort = sort
        self.max_page_size = max_page_size
        self.token = token
        self.auth = auth
        self.requests_per_second = requests_per_second
        self.precision_micros = max(1, precision // timedelta(microseconds=1))
        self.clock = clock or ManualClock(datetime(2024, 6, 1, tzinfo=UTC))
        self.deleted_retention = deleted_retention
        self._items: dict[str, _Item] = {}
        self._next_number = 1
        self._ordered: list[_Item] | None = None
        self._second: tuple[int, int] = (0, 0)  # (clock second, requests in it)

    # -- control (tests) -----------------------------------------------------------------------

    def _stamp(self, moment: datetime | None) -> int:
        micros = to_micros(self.clock() if moment is None else moment)
        return micros - micros % self.precision_micros

    def _new_id(self) -> str:
        number, self._next_number = self._next_number, self._next_number + 1
        return f"r{number:07d}"

    def create(
        self, fields: Mapping[str, Any] | None = None, updated_at: datetime | None = None
    ) -> str:
        """Add an item updated at ``updated_at`` (the clock's time by default); return its id."""
        with self._lock:
            item = _Item(self._new_id(), dict(fields or {"name": "item", "amount": 1}), 0)
            item.updated_micros = self._stamp(updated_at)
            self._items[item.id] = item
            self._ordered = None
            return item.id

    def load(
        self,
        count: int,
        start: datetime,
        step: timedelta = timedelta(seconds=1),
    ) -> list[str]:
        """Add ``count`` items updated ``step`` apart from ``start``; return their ids."""
        with self._lock:
            return [
                self.create({"name": f"item {n}", "amount": n % 997}, start + n * step)
                for n in range(count)
            ]

    def update(
        self, item_id: str, fields: Mapping[str, Any], updated_at: datetime | None = None
    ) -> None:
        """Change an item's fields; its update time becomes ``updated_at`` (the clock's time)."""
        with self._lock:
            item = self._items[item_id]
            item.fields.update(fields)
            item.updated_micros = self._stamp(updated_at)
            self._ordered = None

    def delete(self, item_id: str, updated_at: datetime | None = None) -> None:
        """Mark an item deleted (it stays listed, with ``status: "deleted"``, for the retention)."""
        with self._lock:
            item = self._items[item_id]
            item.deleted = True
            item.deleted_micros = to_micros(self.clock())
            item.updated_micros = self._stamp(updated_at)
            self._ordered = None

    def add_malformed(self, raw: object, updated_at: datetime | None = None) -> None:
        """Add a row served exactly as ``raw`` at ``updated_at``'s place in the order.

        ``raw`` is any JSON value: an item without an id or with a bad time, a list, a string,
        ``None``; the API passes on whatever its store holds.
        """
        with self._lock:
            item = _Item(self._new_id(), {}, self._stamp(updated_at), malformed=True, raw=raw)
            self._items[item.id] = item
            self._ordered = None

    def ground_truth(self) -> dict[str, dict[str, Any]]:
        """Every live, well-formed item as the API renders it, by id."""
        with self._lock:
            return {
                item.id: self.render(item)
                for item in self._items.values()
                if not item.malformed and not item.deleted
            }

    def deleted(self) -> set[str]:
        """The ids of deleted items."""
        with self._lock:
            return {item.id for item in self._items.values() if item.deleted}

    # -- the API -------------------------------------------------------------------------------

    def render_time(self, micros: int) -> str | int:
        """Write a time as the API does."""
        if self.timestamp_format == "epoch_seconds":
            return micros // 1_000_000
        if self.timestamp_format == "epoch_ms":
            return micros // 1_000
        moment = from_micros(micros)
        fraction = f".{moment.microsecond // 1000:03d}" if self.precision_micros < 1_000_000 else ""
        return f"{moment:%Y-%m-%dT%H:%M:%S}{fraction}Z"

    def render(self, item: _Item) -> Any:
        """An item as the API sends it."""
        if item.malformed:
            return item.raw
        return {
            "id": item.id,
            **item.fields,
            "status": "deleted" if item.deleted else "active",
            "meta": {"updated_at": self.render_time(item.updated_micros)},
        }

    def now(self) -> datetime:
        """Return the fake's clock, which dates its answers."""
        return self.clock()

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` as the API would."""
        if request.method != "GET" or request.url.path != ITEMS_PATH:
            return _error(404, "not_found", f"no route for {request.method} {request.url.path}")
        if not self._authorised(request):
            return _error(401, "invalid_token", "The access token is missing, invalid or revoked.")
        limited = self._throttle()
        if limited is not None:
            return limited
        params = request.url.params
        try:
            since = self._since(params.get("updated_since"))
            limit = int(params.get("limit", DEFAULT_PAGE_SIZE))
            offset = self._offset(params)
        except ValueError as error:
            return _error(400, "invalid_request", str(error))
        if not 1 <= limit <= self.max_page_size:
            return _error(
                400, "invalid_request", f"limit must be between 1 and {self.max_page_size}"
            )
        matching = self._matching(since, params.get("include_deleted") == "true")
        if self.paging == "none":
            page, following = matching, None
        elif self.paging in ("cursor", "next_link"):
            position = params.get("cursor")
            try:
                start = 0 if position is None else self._after(matching, position)
            except ValueError:
                return _error(400, "invalid_cursor", "The cursor is invalid or expired.")
            page = matching[start : start + limit]
            more = start + limit < len(matching)
            following = self._cursor(page[-1]) if more and page else None
        else:
            page = matching[offset : offset + limit]
            following = None
        body: dict[str, Any] = {
            "data": {"items": [self.render(item) for item in page]},
            "meta": {"total": len(matching), "next_cursor": None},
            "links": {"next": None},
        }
        if following is not None and self.paging == "cursor":
            body["meta"]["next_cursor"] = following
        if following is not None and self.paging == "next_link":
            query = [(k, v) for k, v in params.multi_items() if k != "cursor"]
            query.append(("cursor", following))
            body["links"]["next"] = f"{request.url.scheme}://{request.url.netloc.decode()}" + (
                f"{ITEMS_PATH}?{urlencode(query)}"
            )
        return httpx.Response(200, json=body)

    def _authorised(self, request: httpx.Request) -> bool:
        if self.auth == "bearer":
            given = request.headers.get("authorization")
            return isinstance(given, str) and given == f"Bearer {self.token}"
        if self.auth == "header":
            given = request.headers.get("x-api-key")
        else:
            given = request.url.params.get("api_key")
        return isinstance(given, str) and given == self.token

    def _throttle(self) -> httpx.Response | None:
        if self.requests_per_second is None:
            return None
        second = to_micros(self.clock()) // 1_000_000
        current, used = self._second
        used = used + 1 if second == current else 1
        self._second = (second, used)
        if used <= self.requests_per_second:
            return None
        response = _error(429, "rate_limited", "Too many requests; slow down.")
        response.headers["Retry-After"] = "1"
        return response

    def _since(self, text: str | None) -> int | None:
        if text is None:
            return None
        if self.timestamp_format == "epoch_seconds":
            moment = parse_epoch_seconds(text, "updated_since")
        elif self.timestamp_format == "epoch_ms":
            moment = parse_epoch_millis(text, "updated_since")
        else:
            moment = parse_timestamp(text, "updated_since")
        return to_micros(moment)

    def _offset(self, params: httpx.QueryParams) -> int:
        if self.paging == "offset":
            offset = int(params.get("offset", 0))
        elif self.paging == "page":
            offset = (int(params.get("page", 1)) - 1) * int(params.get("limit", DEFAULT_PAGE_SIZE))
        else:
            return 0
        if offset < 0:
            raise ValueError("offset and page must not be negative")
        return offset

    def _sorted(self) -> list[_Item]:
        if self._ordered is None:
            key = (
                (lambda item: (item.updated_micros, item.id))
                if self.sort == "updated"
                else (lambda item: (item.id, 0))
            )
            self._ordered = sorted(self._items.values(), key=key)
        return self._ordered

    def _matching(self, since: int | None, include_deleted: bool) -> list[_Item]:
        items = self._sorted()
        if since is not None and self.sort == "updated":
            items = items[bisect.bisect_left(items, since, key=lambda item: item.updated_micros) :]
        elif since is not None:
            items = [item for item in items if item.updated_micros >= since]
        if not include_deleted:
            return [item for item in items if not item.deleted]
        if self.deleted_retention is not None:
            horizon = to_micros(self.clock() - self.deleted_retention)
            items = [item for item in items if not item.deleted or item.deleted_micros > horizon]
        return items

    def _cursor(self, last: _Item) -> str:
        position = [last.updated_micros, last.id] if self.sort == "updated" else [last.id]
        return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()

    def _after(self, matching: list[_Item], token: str) -> int:
        try:
            position = json.loads(base64.urlsafe_b64decode(token.encode()))
        except (ValueError, TypeError):
            raise ValueError(token) from None
        if not isinstance(position, list):
            raise ValueError(token)  # noqa: TRY004 - every bad token is one invalid_cursor
        if self.sort == "updated":
            key = tuple(position)
            return bisect.bisect_right(
                matching, key, key=lambda item: (item.updated_micros, item.id)
            )
        return bisect.bisect_right(matching, position[0], key=lambda item: item.id)


def _error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": code, "message": message})
