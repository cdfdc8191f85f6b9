"""A fake of Pipedrive's API v2 deal list that keeps Pipedrive's rules, for testing connectors.

What it serves:

- ``GET /api/v2/deals``: ``status`` (``open``, ``won``, ``lost``, ``deleted``, several as a
  comma-separated list; omitted means every status but ``deleted``, and a deleted deal is listed
  only for 30 days after its deletion, then it is gone), ``updated_since`` (inclusive) and
  ``updated_until`` (exclusive) in RFC 3339 to the second (a fraction of a second is refused, as
  v2's strict validation does), ``sort_by`` (``id``, ``update_time``, ``add_time``; ``id`` by
  default) and ``sort_direction`` (``asc`` by default), ties broken by id; ``ids``, a
  comma-separated list of at most 100 deal ids, keeps those deals only (ids it does not hold are
  simply left out; more than 100, or one that is no id, is a 400). ``limit`` is 1 to 500
  (100 by default; more is a 400). ``additional_data.next_cursor`` is an opaque keyset position,
  the sort value and id of the page's last deal; the next page holds the deals strictly after it
  *as the data is when that page is asked for*, so a deal updated while a client pages moves
  behind the cursor (and is listed again later), and nothing that stays is skipped.
- ``GET /api/v1/deals/summary``: ``data.total_count`` (and the values per currency) of the
  deals not deleted, or of one ``status`` (``open``, ``won``, ``lost``).
- ``POST /oauth/token``: the refresh-token grant, the app identified by HTTP Basic; access
  tokens live an hour; the refresh token is not rotated.
- Credentials: the company's ``api_token`` as a query parameter or an ``x-api-token`` header, or
  an OAuth bearer token. Anything else is a 401 with Pipedrive's body.
- Rate limits on the fake's clock: requests per two-second window, reported on every answer in
  ``x-ratelimit-limit``, ``x-ratelimit-remaining`` and ``x-ratelimit-reset`` (seconds until the
  window resets), and optionally a daily budget for ``api_token`` requests
  (``x-daily-requests-left``). Over a limit: 429 with ``{"success": false, "error": "request over
  limit", ...}``.
- :meth:`FakePipedrive.cdn_block` is a fault answering with the HTML 403 page Pipedrive's CDN
  sends a client it takes for abusive.

Every error body is Pipedrive's ``{"success": false, "error": ..., ...}``. Times have whole-second
precision, as Pipedrive's do. Tests arrange data and time with :meth:`FakePipedrive.create`,
:meth:`~FakePipedrive.load`, :meth:`~FakePipedrive.update`, :meth:`~FakePipedrive.delete` and
:attr:`~FakePipedrive.clock`, and compare a sink with :meth:`~FakePipedrive.ground_truth`.
"""

from __future__ import annotations

import base64
import bisect
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import attrs
import httpx

from incsync.testing import ManualClock
from incsync.testing.fakes._pipedrive_wire import (
    CDN_PAGE,
    ERROR_INFO,
    RefusalError,
    decode_cursor,
    encode_cursor,
    failure,
    invalid,
    parse_time,
    rfc3339,
    seconds,
    unauthorized,
)
from incsync.testing.fakes._server import FakeVendor, Fault
from incsync.timestamps import UTC

__all__ = ["DELETED_RETENTION", "FakePipedrive", "PipedriveLimits"]

DELETED_RETENTION = timedelta(days=30)
"""How long a deleted deal is still listed (with ``status=deleted``)."""

PAGE_MAX = 500
PAGE_DEFAULT = 100
IDS_MAX = 100
ACCESS_TOKEN_SECONDS = 3599
RATE_WINDOW_SECONDS = 2

_LIST, _SUMMARY = "/api/v2/deals", "/api/v1/deals/summary"
_ROUTES = frozenset({_LIST, _SUMMARY})
_STATUSES = ("open", "won", "lost", "deleted")
_NOT_DELETED = frozenset({"open", "won", "lost"})
_SORTS = ("id", "update_time", "add_time")
_RESERVED = frozenset({"id", "add_time", "update_time", "is_deleted"})


@attrs.frozen
class PipedriveLimits:
    """The rate limits the fake enforces; ``None`` switches one off.

    Args:
        per_window: Requests per two-second window (Pipedrive's burst limit; it depends on the
            plan).
        daily: Requests per UTC day made with the ``api_token`` (the token budget).
    """

    per_window: int | None = 80
    daily: int | None = None


_SUMMED_DEFAULTS: dict[str, Any] = {"value": 0, "currency": "USD"}
"""A deal's fields the summary adds up, as a deal without them is written."""


@attrs.define
class _Deal:
    id: int
    add_time: int  # epoch seconds
    update_time: int
    status: str
    fields: dict[str, Any]
    deleted_at: int | None = None

    def sort_value(self, field: str) -> int:
        return {"id": self.id, "add_time": self.add_time, "update_time": self.update_time}[field]

    def summed(self, name: str) -> Any:
        """``value`` or ``currency`` as :meth:`render` writes it, without writing the whole deal."""
        return self.fields.get(name, _SUMMED_DEFAULTS[name])

    def render(self) -> dict[str, Any]:
        """The deal as API v2 writes it."""
        deal: dict[str, Any] = {
            "id": self.id,
            "title": "",
            "creator_user_id": 11884360,
            "owner_id": 11884360,
            "person_id": None,
            "org_id": None,
            "pipeline_id": 1,
            "stage_id": 1,
            **_SUMMED_DEFAULTS,
            "add_time": rfc3339(self.add_time),
            "update_time": rfc3339(self.update_time),
            "stage_change_time": None,
            "is_deleted": self.deleted_at is not None,
            "status": self.status,
            "probability": None,
            "lost_reason": None,
            "close_time": None,
            "won_time": None,
            "lost_time": None,
            "expected_close_date": None,
            "visible_to": 3,
            "custom_fields": {},
        }
        deal.update(self.fields)
        return deal


class FakePipedrive(FakeVendor):
    """An in-process fake of one Pipedrive company's deals (API v2).

    Args:
        clock: The fake's time (Pipedrive's ``update_time`` of every write, token expiry, rate
            windows); a :class:`~incsync.testing.ManualClock` at 2024-05-06 12:00 UTC by default.
        limits: The rate limits to enforce.
        api_token: The company's API token (a random one by default).
    """

    def __init__(
        self,
        *,
        clock: ManualClock | None = None,
        limits: PipedriveLimits | None = None,
        api_token: str | None = None,
    ) -> None:
        super().__init__()
        self.clock = clock or ManualClock(datetime(2024, 5, 6, 12, 0, tzinfo=UTC))
        self.limits = limits or PipedriveLimits()
        self.api_token = api_token or uuid.uuid4().hex
        self.client_id, self.client_secret = uuid.uuid4().hex[:16], uuid.uuid4().hex
        self.refresh_token = f"{uuid.uuid4().int % 10**8}:{uuid.uuid4().hex}"
        self._access_tokens: dict[str, int] = {}
        self._deals: dict[int, _Deal] = {}
        self._next_id = 0
        self._version = 0  # bumped by every write, so sorted views are rebuilt
        self._sorted: dict[tuple[str, bool], tuple[int, list[tuple[int, int]], list[_Deal]]] = {}
        self._window, self._window_used = -1, 0
        self._day, self._day_used = -1, 0

    # --- control: tokens ------------------------------------------------------------------------

    def issue_access_token(self) -> str:
        """Return a new OAuth access token that expires an hour from now."""
        with self._lock:
            token = f"v1u:{uuid.uuid4().hex}"
            self._access_tokens[token] = self._now() + ACCESS_TOKEN_SECONDS
            return token

    def expire_access_tokens(self) -> None:
        """Expire every OAuth access token now; the refresh token keeps working."""
        with self._lock:
            now = self._now()
            self._access_tokens = {t: min(e, now) for t, e in self._access_tokens.items()}

    # --- control: data --------------------------------------------------------------------------

    def create(self, fields: Mapping[str, Any] | None = None, *, at: datetime | None = None) -> int:
        """Add a deal (``add_time`` and ``update_time`` the clock's second, or ``at``'s).

        Args:
            fields: Values of the deal's other fields (``title``, ``value``, ``status``...).
            at: When it was added, instead of now.

        Returns:
            The new deal's id.

        Raises:
            ValueError: A field is one the fake sets itself, or the status is unknown.
        """
        with self._lock:
            stamp = self._now() if at is None else seconds(at, "at")
            return self._insert(stamp, _checked(fields))

    def load(
        self, update_times: Iterable[datetime], fields: Mapping[str, Any] | None = None
    ) -> list[int]:
        """Add one deal per timestamp (a company's history), any number sharing a second.

        Returns:
            The new deals' ids, in the order of ``update_times``.
        """
        with self._lock:
            checked = _checked(fields)
            ids = [self._insert(seconds(t, "update_times"), dict(checked)) for t in update_times]
            # A vendor's index on update_time is kept as it writes: a history loaded at once is
            # indexed now, not by the first request to list it.
            self._sorted_view("update_time", descending=False)
            return ids

    def update(
        self, deal_id: int, fields: Mapping[str, Any] | None = None, *, at: datetime | None = None
    ) -> None:
        """Change a live deal; its ``update_time`` becomes the clock's second (or ``at``'s).

        Raises:
            KeyError: No live deal has this id.
            ValueError: As :meth:`create`.
        """
        with self._lock:
            deal = self._live(deal_id)
            changes = _checked(fields)
            deal.status = changes.pop("status", deal.status)
            deal.fields.update(changes)
            deal.update_time = self._now() if at is None else seconds(at, "at")
            self._version += 1

    def delete(self, deal_id: int, *, at: datetime | None = None) -> None:
        """Delete a live deal: ``status`` ``deleted``, ``is_deleted`` true, a new ``update_time``.

        It is listed with ``status=deleted`` for :data:`DELETED_RETENTION`, then never again.

        Raises:
            KeyError: No live deal has this id.
        """
        with self._lock:
            deal = self._live(deal_id)
            deal.deleted_at = deal.update_time = self._now() if at is None else seconds(at, "at")
            deal.status = "deleted"
            self._version += 1

    def ground_truth(self) -> dict[str, dict[str, Any]]:
        """Return every deal the API still lists (live, and deleted within retention), by id.

        Each value is the deal exactly as ``GET /api/v2/deals`` writes it now.
        """
        with self._lock:
            now = self._now()
            return {str(d.id): d.render() for d in self._deals.values() if self._kept(d, now)}

    # --- control: faults ------------------------------------------------------------------------

    def cdn_block(self, times: int | None = None) -> Fault:
        """Return a fault that answers API requests with the CDN's HTML 403 page.

        Pipedrive's CDN sends that page to a client it suspects of abuse. Pass the fault to
        :meth:`add_fault`; it answers the next ``times`` API requests (every one when ``None``).
        """
        left = [times]

        def block(request: httpx.Request) -> httpx.Response | None:
            if not request.url.path.startswith("/api/") or left[0] == 0:
                return None
            if left[0] is not None:
                left[0] -= 1
            page = CDN_PAGE.replace("{ray}", uuid.uuid4().hex[:16])
            headers = {"content-type": "text/html; charset=UTF-8", "server": "cloudflare"}
            return httpx.Response(403, text=page, headers=headers)

        return block

    # --- HTTP -----------------------------------------------------------------------------------

    def now(self) -> datetime:
        """Return the fake's clock, which dates its answers."""
        return self.clock()

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` as Pipedrive would."""
        try:
            return self._route(request)
        except RefusalError as refusal:
            return refusal.response

    def _route(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.rstrip("/")
        if path == "/oauth/token" and request.method == "POST":
            return self._token(request)
        if path not in _ROUTES or request.method != "GET":
            return failure(404, f"Unknown method {request.method} {path}", errorCode=404)
        headers = self._count(request, self._authenticate(request))
        try:
            if path == _SUMMARY:
                response = self._summary(request.url.params)
            else:
                response = self._list(request.url.params)
        except RefusalError as refusal:
            response = refusal.response
        response.headers.update(headers)
        return response

    def _authenticate(self, request: httpx.Request) -> bool:
        """Check the credentials; return whether the request used the api_token."""
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            expires = self._access_tokens.get(bearer.strip())
            if expires is None or self._now() >= expires:
                raise unauthorized()
            return False
        given = request.url.params.get("api_token") or request.headers.get("x-api-token")
        if given != self.api_token:
            raise unauthorized()
        return True

    def _count(self, request: httpx.Request, by_token: bool) -> dict[str, str]:
        """Count the request against the limits; return the rate headers or raise the 429."""
        now, limits = self._now(), self.limits
        window = now // RATE_WINDOW_SECONDS
        if window != self._window:
            self._window, self._window_used = window, 0
        if now // 86_400 != self._day:
            self._day, self._day_used = now // 86_400, 0
        per_window = limits.per_window
        over_window = per_window is not None and self._window_used >= per_window
        over_day = by_token and limits.daily is not None and self._day_used >= limits.daily
        if not (over_window or over_day):
            self._window_used += 1
            self._day_used += int(by_token)
        headers: dict[str, str] = {}
        if per_window is not None:
            headers["x-ratelimit-limit"] = str(per_window)
            headers["x-ratelimit-remaining"] = str(max(0, per_window - self._window_used))
            headers["x-ratelimit-reset"] = str((window + 1) * RATE_WINDOW_SECONDS - now)
        if by_token and limits.daily is not None:
            headers["x-daily-requests-left"] = str(max(0, limits.daily - self._day_used))
        if over_window or over_day:
            body = {"success": False, "errorCode": 429, "error_info": ERROR_INFO}
            raise RefusalError(
                httpx.Response(429, json={**body, "error": "request over limit"}, headers=headers)
            )
        return headers

    def _token(self, request: httpx.Request) -> httpx.Response:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            client = base64.b64decode(encoded).decode() if scheme.lower() == "basic" else ""
        except (ValueError, UnicodeError):
            client = ""
        if client != f"{self.client_id}:{self.client_secret}":
            return httpx.Response(401, json={"success": False, "error": "invalid_client"})
        form = dict(parse_qsl(request.content.decode("utf-8", "replace")))
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != (
            self.refresh_token
        ):
            return httpx.Response(
                400, json={"error": "invalid_grant", "message": "Invalid refresh token"}
            )
        base = f"{request.url.scheme}://{request.url.netloc.decode()}"
        return httpx.Response(
            200,
            json={
                "access_token": self.issue_access_token(),
                "token_type": "Bearer",
                "refresh_token": self.refresh_token,
                "scope": "deals:read",
                "expires_in": ACCESS_TOKEN_SECONDS,
                "api_domain": base,
            },
        )

    def _list(self, params: httpx.QueryParams) -> httpx.Response:
        statuses = self._statuses(params.get("status"))
        since = (
            parse_time(params["updated_since"], "updated_since")
            if "updated_since" in params
            else None
        )
        until = (
            parse_time(params["updated_until"], "updated_until")
            if "updated_until" in params
            else None
        )
        wanted = self._ids(params.get("ids"))
        field = params.get("sort_by", "id")
        direction = params.get("sort_direction", "asc")
        if field not in _SORTS:
            raise invalid(f"sort_by: must be one of {', '.join(_SORTS)}")
        if direction not in ("asc", "desc"):
            raise invalid("sort_direction: must be one of asc, desc")
        limit_text = params.get("limit", str(PAGE_DEFAULT))
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= PAGE_MAX:
            raise invalid(f"limit: must be an integer from 1 to {PAGE_MAX}, got '{limit_text}'")
        limit, descending = int(limit_text), direction == "desc"
        keys, deals = self._sorted_view(field, descending)
        sign = -1 if descending else 1
        start = 0
        if params.get("cursor"):
            value, deal_id = decode_cursor(params["cursor"], field, direction)
            start = bisect.bisect_right(keys, (sign * value, sign * deal_id))
        if since is not None and field == "update_time" and not descending:
            start = max(start, bisect.bisect_left(keys, (since, -(2**62))))
        now, more = self._now(), False
        page: list[_Deal] = []
        # In update order, no deal after the first at or past ``until`` can be listed: a vendor
        # stops its index scan there, and so does the fake.
        stop = until if until is not None and field == "update_time" and not descending else None
        for deal in deals[start:] if start else deals:
            if stop is not None and deal.update_time >= stop:
                break
            if (
                deal.status in statuses
                and (wanted is None or deal.id in wanted)
                and (since is None or deal.update_time >= since)
                and (until is None or deal.update_time < until)
                and self._kept(deal, now)
            ):
                if len(page) == limit:
                    more = True
                    break
                page.append(deal)
        next_cursor = None
        if more:
            last = page[-1]
            next_cursor = encode_cursor(field, last.sort_value(field), direction, last.id)
        return httpx.Response(
            200,
            json={
                "success": True,
                "data": [deal.render() for deal in page],
                "additional_data": {"next_cursor": next_cursor},
            },
        )

    def _summary(self, params: httpx.QueryParams) -> httpx.Response:
        status = params.get("status")
        if status is not None and status not in _NOT_DELETED:
            raise invalid(f"status: must be one of {', '.join(sorted(_NOT_DELETED))}")
        wanted = _NOT_DELETED if status is None else frozenset({status})
        deals = [d for d in self._deals.values() if d.deleted_at is None and d.status in wanted]
        totals: dict[str, dict[str, Any]] = {}
        # Pipedrive sums in its database; writing each deal out to sum two of its fields would
        # hold the fake's lock for most of a second at 100,000 deals.
        for deal in deals:
            currency = str(deal.summed("currency"))
            entry = totals.setdefault(currency, {"value": 0, "count": 0})
            entry["value"] += deal.summed("value") or 0
            entry["count"] += 1
        return httpx.Response(
            200,
            json={
                "success": True,
                "data": {
                    "values_total": totals,
                    "weighted_values_total": totals,
                    "total_count": len(deals),
                },
            },
        )

    # --- internals ------------------------------------------------------------------------------

    def _now(self) -> int:
        return seconds(self.clock(), "clock()")

    @staticmethod
    def _statuses(value: str | None) -> frozenset[str]:
        if value is None:
            return _NOT_DELETED
        asked = frozenset(value.split(","))
        if not asked or not asked <= set(_STATUSES):
            raise invalid(f"status: must be a comma-separated list of {', '.join(_STATUSES)}")
        return asked

    @staticmethod
    def _ids(value: str | None) -> frozenset[int] | None:
        if value is None:
            return None
        parts = value.split(",")
        if not all(part.isascii() and part.isdigit() for part in parts):
            raise invalid("ids: must be a comma-separated list of integers")
        if len(parts) > IDS_MAX:
            raise invalid(f"ids: must hold at most {IDS_MAX} ids")
        return frozenset(int(part) for part in parts)

    @staticmethod
    def _kept(deal: _Deal, now: int) -> bool:
        """Whether the API still knows ``deal``: deleted ones are forgotten after retention."""
        return deal.deleted_at is None or now - deal.deleted_at < DELETED_RETENTION.days * 86_400

    def _sorted_view(
        self, field: str, descending: bool
    ) -> tuple[list[tuple[int, int]], list[_Deal]]:
        """The deals in (sort value, id) order, with their keys for bisecting (cached per write)."""
        cached = self._sorted.get((field, descending))
        if cached is not None and cached[0] == self._version:
            return cached[1], cached[2]
        if descending:
            # The ascending view read backwards, its keys negated: one sort per field.
            ascending_keys, ascending = self._sorted_view(field, descending=False)
            keys = [(-value, -deal_id) for value, deal_id in reversed(ascending_keys)]
            deals = ascending[::-1]
        else:
            keyed = sorted(((d.sort_value(field), d.id), d) for d in self._deals.values())
            keys, deals = [key for key, _ in keyed], [deal for _, deal in keyed]
        self._sorted[(field, descending)] = (self._version, keys, deals)
        return keys, deals

    def _insert(self, stamp: int, fields: dict[str, Any]) -> int:
        self._next_id += 1
        status = fields.pop("status", "open")
        self._deals[self._next_id] = _Deal(self._next_id, stamp, stamp, status, fields)
        self._version += 1
        return self._next_id

    def _live(self, deal_id: int) -> _Deal:
        deal = self._deals.get(deal_id)
        if deal is None or deal.deleted_at is not None:
            raise KeyError(f"no live deal with id {deal_id}")
        return deal


def _checked(fields: Mapping[str, Any] | None) -> dict[str, Any]:
    values = dict(fields or {})
    reserved = _RESERVED & values.keys()
    if reserved:
        raise ValueError(f"{sorted(reserved)} are set by the fake: pass at= or use delete()")
    if values.get("status", "open") not in _NOT_DELETED:
        raise ValueError("status must be open, won or lost; delete() deletes a deal")
    return values
