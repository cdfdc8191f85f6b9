"""A fake of HubSpot's CRM v3 API that keeps HubSpot's hard edges, for testing connectors.

What it serves, behind a bearer token (a private-app token or an OAuth access token):

- ``POST /crm/v3/objects/{type}/search``: filter groups (OR) of filters (AND) with ``EQ NEQ LT
  LTE GT GTE BETWEEN``; values are epoch-ms strings or ISO text, compared to the millisecond.
  At most one sort rule and no id tie-break: records that share a sort value come in an
  arbitrary order, drawn again whenever a record is re-indexed. ``limit`` <= 200; ``after`` is
  an integer offset into the result set as it is *now*, so offsets shift when records change
  between pages. No page may reach past result 10,000 (a 400) while ``total`` stays true
  (``search_result_cap`` sets another cap, for tests that meet it without 10,000 objects).
  Writes reach the index after a lag; archived objects never appear.
- ``GET /crm/v3/objects/{type}/{id}``: the latest version at once; 404 once archived.
- ``POST /crm/v3/objects/{type}/batch/read``: ``inputs`` of at most 100 ``{"id": ...}`` (more is a
  400; ``idProperty`` is not served), the latest versions at once and in no promised order
  (``archived=true``: only archived ones). Ids it does not hold come back as one
  ``OBJECT_NOT_FOUND`` error naming them in ``context.ids``, the answer then a 207; a merged
  object's old id reads the object it was merged into (:meth:`FakeHubSpot.merge`).
- ``GET /crm/v3/objects/{type}``: objects by id with an opaque cursor; ``archived=true`` lists
  the archived ones, the only place a deletion can be seen, for 90 days
  (:data:`ARCHIVED_RETENTION`): then the object is gone for good, from every endpoint.
- ``POST /oauth/v1/token``: the refresh-token grant; access tokens live 30 minutes.
- Rate limits on the fake's clock: searches per second (``SECONDLY``), all calls per rolling ten
  seconds (``TEN_SECONDLY_ROLLING``), calls per UTC day (``DAILY``); ``Retry-After`` only when
  enabled, as HubSpot often sends none.

Tests arrange data and time through the control methods and attributes (:meth:`FakeHubSpot.create`,
:meth:`~FakeHubSpot.load`, :attr:`~FakeHubSpot.clock`, :attr:`~FakeHubSpot.limits`...).
"""

from __future__ import annotations

import base64
import bisect
import json
import math
import random
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from urllib.parse import parse_qsl

import attrs
import httpx

from incsync.testing import ManualClock
from incsync.testing.fakes._server import FakeVendor
from incsync.timestamps import UTC, ensure_utc, parse_timestamp, to_micros

__all__ = ["ARCHIVED_RETENTION", "FakeHubSpot", "HubSpotLimits"]

SEARCH_RESULT_CAP = 10_000
"""No search page may reach past this many results, however many match."""
SEARCH_PAGE_MAX = 200
LIST_PAGE_MAX = 100
BATCH_READ_MAX = 100
ACCESS_TOKEN_LIFETIME = timedelta(minutes=30)
ARCHIVED_RETENTION = timedelta(days=90)
"""How long an archived object stays restorable and listed; then it is deleted for good."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_DAY_MS = 86_400_000
_ALWAYS = -(2**62)  # "indexed since forever": history loaded in bulk
_MAX_GROUPS, _MAX_FILTERS_PER_GROUP, _MAX_FILTERS = 5, 6, 18
_ALIASES = {"0-1": "contacts", "0-2": "companies", "0-3": "deals", "0-5": "tickets"}
_DEFAULT_PROPERTIES = {
    "deals": ("dealname", "amount", "closedate", "pipeline", "dealstage"),
    "contacts": ("email", "firstname", "lastname"),
    "companies": ("domain", "name"),
}
# What each operator accepts of a comparison's sign (-1, 0, 1); BETWEEN compares twice.
_OUTCOMES = {
    "EQ": frozenset({0}),
    "NEQ": frozenset({-1, 1}),
    "LT": frozenset({-1}),
    "LTE": frozenset({-1, 0}),
    "GT": frozenset({1}),
    "GTE": frozenset({0, 1}),
}
_OPERATORS = frozenset({*_OUTCOMES, "BETWEEN"})
_NO_CREDENTIALS = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can"
    " find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)


@attrs.frozen
class HubSpotLimits:
    """The rate limits the fake enforces; ``None`` switches one off.

    Args:
        search_per_second: Searches per rolling second (``policyName: SECONDLY``).
        per_ten_seconds: Calls of any kind per rolling ten seconds (``TEN_SECONDLY_ROLLING``).
        daily: Calls per UTC day (``DAILY``).
        retry_after: Whether a 429 carries ``Retry-After``.
    """

    search_per_second: int | None = 5
    per_ten_seconds: int | None = 100
    daily: int | None = 250_000
    retry_after: bool = False


@attrs.frozen
class _Version:
    properties: Mapping[str, str]
    modified_ms: int
    indexed_ms: int  # from when search sees this version
    tie: float  # place among equal sort values, drawn anew on every re-index


@attrs.define
class _Object:
    type: str
    id: str
    created_ms: int
    versions: list[_Version]
    archived_ms: int | None = None

    def indexed(self, now_ms: int) -> _Version | None:
        return next((v for v in reversed(self.versions) if v.indexed_ms <= now_ms), None)

    def raw(self, version: _Version, name: str) -> int | str | None:
        """A property as search compares it: timestamps as epoch ms, the rest as stored."""
        if name == "hs_object_id":
            return self.id
        if name == "createdate":
            return self.created_ms
        if name == _modified_property(self.type):
            return version.modified_ms
        return version.properties.get(name)

    def properties(self, version: _Version, requested: Iterable[str] | None) -> dict[str, object]:
        """Those asked for (else the type's defaults), id and timestamps; unset ones are null."""
        names = set(_DEFAULT_PROPERTIES.get(self.type, ()) if requested is None else requested)
        names |= {"hs_object_id", "createdate", _modified_property(self.type)}
        raws = {name: self.raw(version, name) for name in sorted(names)}
        return {name: _iso(raw) if isinstance(raw, int) else raw for name, raw in raws.items()}

    def render(self, version: _Version, requested: Iterable[str] | None) -> dict[str, object]:
        result = {
            "id": self.id,
            "properties": self.properties(version, requested),
            "createdAt": _iso(self.created_ms),
            "updatedAt": _iso(version.modified_ms),
            "archived": self.archived_ms is not None,
        }
        return (
            result if self.archived_ms is None else {**result, "archivedAt": _iso(self.archived_ms)}
        )


_Hit = tuple[_Object, _Version]


@attrs.frozen
class _Filter:
    name: str
    operator: str
    low: float | str
    high: float | str

    def passes(self, raw: int | str | None) -> bool:
        if raw is None:
            return self.operator == "NEQ"
        low = _compare(raw, self.low)
        if self.operator == "BETWEEN":  # inclusive at both ends
            return low >= 0 and _compare(raw, self.high) <= 0
        return low in _OUTCOMES[self.operator]


class _RequestError(Exception):
    """Ends a request early with the answer HubSpot would give."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _error(status: int, message: str, category: str, **extra: object) -> httpx.Response:
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4())}
    return httpx.Response(status, json={**body, "category": category, **extra})


def _invalid(message: str) -> _RequestError:
    return _RequestError(_error(400, message, "VALIDATION_ERROR"))


def _oauth_error(status: str, message: str) -> _RequestError:
    body = {"status": status, "message": message, "correlationId": str(uuid.uuid4())}
    return _RequestError(httpx.Response(400, json=body))


def _to_ms(moment: datetime, field: str) -> int:
    return to_micros(ensure_utc(moment, field)) // 1000


def _iso(ms: int) -> str:
    return f"{_EPOCH + ms * _MS:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def _number(value: float | str) -> float | None:
    """Read ``value`` as HubSpot compares it: a number, or a timestamp as epoch milliseconds."""
    try:
        number = float(value)
    except ValueError:
        try:
            return float(to_micros(parse_timestamp(value)) // 1000)
        except ValueError:
            return None
    return number if math.isfinite(number) else None


def _compare(raw: int | str, target: float | str) -> int:
    number = _number(raw) if isinstance(target, float) else None
    if isinstance(target, float) and number is not None:
        return (number > target) - (number < target)
    left, right = str(raw).casefold(), str(target).casefold()
    return (left > right) - (left < right)


def _sort_key(raw: int | str | None) -> tuple[int, float, str] | None:
    """Numbers (and timestamps) before text; ``None`` for no value, which sorts last."""
    if raw is None:
        return None
    number = _number(raw)
    return (1, 0.0, str(raw).casefold()) if number is None else (0, number, "")


def _modified_property(object_type: str) -> str:
    return "lastmodifieddate" if object_type == "contacts" else "hs_lastmodifieddate"


def _whole(value: object, field: str, default: int) -> int:
    """Read a non-negative integer sent as a JSON number or a digit string."""
    if value is None:
        return default
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise _invalid(f"{field} must be a non-negative integer, got {value!r}.")


def _requested(params: httpx.QueryParams) -> list[str] | None:
    names = [n for value in params.get_list("properties") for n in value.split(",") if n]
    return names or None


class FakeHubSpot(FakeVendor):
    """HubSpot's CRM v3 objects, search and OAuth token endpoints, held in memory.

    Args:
        clock: The fake's time, for index lag, token expiry and rate-limit windows; share it with
            the code under test. Defaults to a clock at 2024-09-13T20:30Z.
        index_lag: How long a write takes to reach search (``GET`` by id sees it at once).
        limits: The rate limits; HubSpot's for a private app when omitted.
        seed: Seeds generated ids and the order of ties, so a run can be repeated.
        search_result_cap: How many results of one search may be paged through: HubSpot's
            10,000 when omitted; a page reaching past it is a 400.

    Attributes:
        clock: Move it to move the fake's time.
        index_lag: Applies to writes made after it is set.
        limits: Replace it (``HubSpotLimits(daily=2)``) to change the limits.
        private_app_token: A bearer token that never expires.
        client_id: The OAuth client id the token endpoint accepts.
        client_secret: The OAuth client secret the token endpoint accepts.
    """

    def __init__(
        self,
        *,
        clock: ManualClock | None = None,
        index_lag: timedelta = timedelta(seconds=2),
        limits: HubSpotLimits | None = None,
        seed: int = 0,
        search_result_cap: int = SEARCH_RESULT_CAP,
    ) -> None:
        super().__init__()
        self.search_result_cap = search_result_cap
        self.clock = clock or ManualClock(datetime(2024, 9, 13, 20, 30, tzinfo=UTC))
        self.index_lag = index_lag
        self.limits = limits or HubSpotLimits()
        self.private_app_token = f"pat-na1-{uuid.uuid4()}"
        self.client_id, self.client_secret = str(uuid.uuid4()), str(uuid.uuid4())
        self._rng = random.Random(seed)
        self._objects: dict[str, dict[str, _Object]] = {}
        self._archived: set[tuple[str, str]] = set()  # (type, id) of every archived object kept
        self._merged: dict[tuple[str, str], str] = {}  # (type, old id): the id it merged into
        self._next_id = 90
        self._settled_ms = _ALWAYS  # from then on every version written so far is searchable
        self._cache: dict[tuple[str, str, int | None], list[_Hit]] = {}
        self._orders: dict[tuple[str, str, bool, int | None], list[_Hit]] = {}
        # Per sorted index: the sort values of its leading numbers, to skip what a bound excludes.
        self._numbers: dict[tuple[str, str, bool, int | None], list[float]] = {}
        self._day, self._day_count = -1, 0
        self._recent: deque[int] = deque()
        self._recent_searches: deque[int] = deque()
        self._refresh_tokens: set[str] = set()
        self._access_tokens: dict[str, int] = {}

    # --- control: tokens ------------------------------------------------------------------------

    def issue_refresh_token(self) -> str:
        """Return a new refresh token, as if a user had installed the app."""
        with self._lock:
            token = str(uuid.uuid4())
            self._refresh_tokens.add(token)
            return token

    def issue_access_token(self) -> str:
        """Return a new OAuth access token that expires 30 minutes from now."""
        with self._lock:
            token = f"CO{uuid.uuid4().hex}"
            self._access_tokens[token] = self._now_ms() + ACCESS_TOKEN_LIFETIME // _MS
            return token

    def expire_access_tokens(self) -> None:
        """Expire every OAuth access token now; refresh tokens keep working."""
        with self._lock:
            now_ms = self._now_ms()
            for token, expires_ms in self._access_tokens.items():
                self._access_tokens[token] = min(expires_ms, now_ms)

    def revoke_refresh_token(self, token: str) -> None:
        """Make ``token`` unknown to the token endpoint, as when the app is uninstalled."""
        with self._lock:
            self._refresh_tokens.discard(token)

    # --- control: data --------------------------------------------------------------------------

    def create(
        self,
        object_type: str,
        properties: Mapping[str, str] | None = None,
        *,
        object_id: str | None = None,
        created_at: datetime | None = None,
        modified_at: datetime | None = None,
    ) -> str:
        """Create an object, searchable once the index lag has passed; return its id.

        Args:
            object_type: ``deals``, ``contacts``, ``companies`` or any other type name.
            properties: Property values (strings); the id and timestamps are the fake's.
            object_id: A numeric id to use instead of a generated one.
            created_at: ``createdate`` (default: ``modified_at``).
            modified_at: The last-modified timestamp (default: the clock's time).

        Raises:
            ValueError: The id is taken or not numeric, or a property is reserved.
        """
        with self._lock:
            now_ms = self._now_ms()
            modified_ms = now_ms if modified_at is None else _to_ms(modified_at, "modified_at")
            created_ms = modified_ms if created_at is None else _to_ms(created_at, "created_at")
            props = _checked(object_type, properties)
            return self._insert(object_type, object_id, created_ms, modified_ms, props, self._due())

    def load(
        self,
        object_type: str,
        modified_at: Iterable[datetime],
        properties: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Create one object per timestamp, already indexed (a portal's history); return the ids.

        Fast enough for tens of thousands of objects, any number of them sharing a timestamp.
        """
        with self._lock:
            props = _checked(object_type, properties)
            return [
                self._insert(object_type, None, ms, ms, props, _ALWAYS)
                for ms in (_to_ms(moment, "modified_at") for moment in modified_at)
            ]

    def update(
        self,
        object_type: str,
        object_id: str,
        properties: Mapping[str, str] | None = None,
        *,
        modified_at: datetime | None = None,
    ) -> None:
        """Change an object's properties (``""`` clears one) and its last-modified timestamp.

        ``GET`` sees the change at once; search keeps the previous version until the lag passes.

        Raises:
            KeyError: No live object has this id.
        """
        with self._lock:
            found, now_ms = self._live(object_type, object_id), self._now_ms()
            merged = {**found.versions[-1].properties, **_checked(object_type, properties)}
            version = _Version(
                {name: value for name, value in merged.items() if value},
                now_ms if modified_at is None else _to_ms(modified_at, "modified_at"),
                self._due(),
                self._rng.random(),
            )
            found.versions.append(version)
            while found.versions[1:] and found.versions[1].indexed_ms <= now_ms:
                del found.versions[0]  # superseded in the index: nothing can see it again
            self._touched(version.indexed_ms)

    def archive(self, object_type: str, object_id: str, *, at: datetime | None = None) -> None:
        """Archive (delete) an object: gone from search and ``GET``, listed as ``archived=true``.

        After :data:`ARCHIVED_RETENTION` (on the fake's clock) it is deleted for good.

        Raises:
            KeyError: No live object has this id.
        """
        with self._lock:
            found = self._live(object_type, object_id)
            found.archived_ms = self._now_ms() if at is None else _to_ms(at, "at")
            self._archived.add((object_type, object_id))
            self._touched(_ALWAYS)

    def merge(self, object_type: str, object_id: str, into: str) -> None:
        """Merge an object into another, as HubSpot merges contacts.

        The old id is gone from search and lists, and reading it by id (alone or in a batch)
        gives the object it was merged into.

        Raises:
            KeyError: Either id is not a live object.
        """
        with self._lock:
            self._live(object_type, into)
            self._live(object_type, object_id)
            del self._objects[object_type][object_id]
            self._merged[(object_type, object_id)] = into
            self._touched(_ALWAYS)

    def ground_truth(self, object_type: str) -> dict[str, dict[str, str]]:
        """Return every live object's latest properties (timestamps as HubSpot writes them)."""
        with self._lock:
            truth: dict[str, dict[str, str]] = {}
            for obj in self._objects.get(object_type, {}).values():
                latest = obj.versions[-1]
                if obj.archived_ms is None:
                    shown = obj.properties(latest, latest.properties)
                    truth[obj.id] = {k: v for k, v in shown.items() if isinstance(v, str)}
            return truth

    def archived(self, object_type: str) -> dict[str, datetime]:
        """Return when each archived object still kept was archived, by id."""
        with self._lock:
            self._forget_expired()
            objects = self._objects.get(object_type, {}).values()
            return {
                o.id: _EPOCH + o.archived_ms * _MS for o in objects if o.archived_ms is not None
            }

    # --- HTTP -----------------------------------------------------------------------------------

    def now(self) -> datetime:
        """Return the fake's clock, which dates its answers."""
        return self.clock()

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` as HubSpot's API would."""
        try:
            return self._route(request)
        except _RequestError as error:
            return error.response

    def _route(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.rstrip("/")
        if path == "/oauth/v1/token" and request.method == "POST":
            return self._token(request)
        parts = path.strip("/").split("/")
        batch_read = parts[4:] == ["batch", "read"]
        if parts[:3] != ["crm", "v3", "objects"] or not (len(parts) in {4, 5} or batch_read):
            return _error(404, f"No API serves {request.method} {path}", "OBJECT_NOT_FOUND")
        object_type = _ALIASES.get(parts[3], parts[3])
        search = len(parts) == 5 and parts[4] == "search"
        if request.method != ("POST" if search or batch_read else "GET"):
            return _error(
                405, f"The fake does not serve {request.method} {path}", "VALIDATION_ERROR"
            )
        now_ms = self._now_ms()
        headers = self._throttle(now_ms, search, oauth=self._authenticate(request, now_ms))
        self._forget_expired()
        try:
            if search:
                response = self._search(request, object_type)
            elif batch_read:
                response = self._batch_read(request, object_type)
            elif len(parts) == 4:
                response = self._list(request, object_type)
            else:
                response = self._read(request, object_type, parts[4])
        except _RequestError as error:
            response = error.response
        response.headers.update(headers)
        return response

    def _authenticate(self, request: httpx.Request, now_ms: int) -> bool:
        """Check the bearer token; return whether it is an OAuth token."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        bearer = scheme.lower() == "bearer"
        if bearer and token.strip() == self.private_app_token:
            return False
        expires_ms = self._access_tokens.get(token.strip()) if bearer else None
        if expires_ms is None:
            raise _RequestError(_error(401, _NO_CREDENTIALS, "INVALID_AUTHENTICATION"))
        if now_ms >= expires_ms:
            ago = (now_ms - expires_ms) // 1000
            units = ((86_400, "day"), (3600, "hour"), (60, "minute"), (1, "second"))
            size, unit = next((size, unit) for size, unit in units if ago >= size or size == 1)
            message = f"The OAuth token used to make this call expired {ago // size} {unit}(s) ago."
            context = {"expire time": [_iso(expires_ms)]}
            raise _RequestError(_error(401, message, "EXPIRED_AUTHENTICATION", context=context))
        return True

    def _throttle(self, now_ms: int, search: bool, *, oauth: bool) -> dict[str, str]:
        """Count the request against every limit, or raise the 429 of the first one it breaks."""
        limits, recent, searches = self.limits, self._recent, self._recent_searches
        if now_ms // _DAY_MS != self._day:
            self._day, self._day_count = now_ms // _DAY_MS, 0
        for window, stamps in ((10_000, recent), (1000, searches)):
            while stamps and stamps[0] <= now_ms - window:
                stamps.popleft()
        checks = (
            ("DAILY", limits.daily, self._day_count, (self._day + 1) * _DAY_MS),
            ("TEN_SECONDLY_ROLLING", limits.per_ten_seconds, len(recent),
             (recent[0] if recent else now_ms) + 10_000),
            ("SECONDLY", limits.search_per_second if search else None, len(searches),
             (searches[0] if searches else now_ms) + 1000),
        )  # fmt: skip
        broken = [(name, frees) for name, limit, used, frees in checks if used >= (limit or 2**62)]
        if not broken:
            self._day_count += 1
            recent.append(now_ms)
            if search:
                searches.append(now_ms)
        headers = self._usage_headers(now_ms, search, oauth=oauth)
        if not broken:
            return headers
        policy, frees_ms = broken[0]
        if limits.retry_after:
            headers["Retry-After"] = str(max(1, math.ceil((frees_ms - now_ms) / 1000)))
        body = {
            "status": "error",
            "message": f"You have reached your {policy.lower()} limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()),
            "policyName": policy,
            "requestId": str(uuid.uuid4()),
        }
        raise _RequestError(httpx.Response(429, json=body, headers=headers))

    def _usage_headers(self, now_ms: int, search: bool, *, oauth: bool) -> dict[str, str]:
        """HubSpot's usage headers: daily ones for private apps; burst ones except on search."""
        limits, recent, headers = self.limits, self._recent, {}
        if limits.daily is not None and not oauth:
            headers["X-HubSpot-RateLimit-Daily"] = str(limits.daily)
            remaining = max(0, limits.daily - self._day_count)
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(remaining)
        if not search and limits.per_ten_seconds is not None:
            per_second = max(1, limits.per_ten_seconds // 10)
            last_second = sum(1 for stamp in recent if stamp > now_ms - 1000)
            headers |= {
                "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
                "X-HubSpot-RateLimit-Max": str(limits.per_ten_seconds),
                "X-HubSpot-RateLimit-Remaining": str(max(0, limits.per_ten_seconds - len(recent))),
                "X-HubSpot-RateLimit-Secondly": str(per_second),
                "X-HubSpot-RateLimit-Secondly-Remaining": str(max(0, per_second - last_second)),
            }
        return headers

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = dict(parse_qsl(request.content.decode("utf-8", "replace")))
        if form.get("grant_type") != "refresh_token":
            raise _oauth_error("BAD_GRANT_TYPE", "missing or unsupported grant_type")
        if form.get("client_id") != self.client_id:
            raise _oauth_error("BAD_CLIENT_ID", "missing or unknown client id")
        if form.get("client_secret") != self.client_secret:
            raise _oauth_error("BAD_CLIENT_SECRET", "missing or invalid client secret")
        refresh_token = form.get("refresh_token", "")
        if refresh_token not in self._refresh_tokens:
            raise _oauth_error("BAD_REFRESH_TOKEN", "missing or unknown refresh token")
        body = {
            "token_type": "bearer",
            "refresh_token": refresh_token,  # HubSpot does not rotate refresh tokens
            "access_token": self.issue_access_token(),
            "expires_in": ACCESS_TOKEN_LIFETIME // timedelta(seconds=1),
        }
        return httpx.Response(200, json=body)

    def _search(self, request: httpx.Request, object_type: str) -> httpx.Response:
        body = _body(request)
        if body.get("query"):
            raise _invalid("The fake does not implement free-text 'query'; use filterGroups.")
        groups = _parse_groups(object_type, body.get("filterGroups", []))
        sort = _parse_sort(body.get("sorts", []))
        limit = _whole(body.get("limit"), "limit", 10)
        after = _whole(body.get("after"), "after", 0)
        if not 1 <= limit <= SEARCH_PAGE_MAX:
            raise _invalid(f"limit must be between 1 and {SEARCH_PAGE_MAX}, got {limit}.")
        cap = self.search_result_cap
        if after + limit > cap:
            raise _invalid(
                f"Search results are limited to {cap} per query: after ({after}) plus"
                f" limit ({limit}) reaches {after + limit}. Narrow the filters instead."
            )
        requested = _property_names(body)
        hits = self._hits(object_type, groups, sort, json.dumps([groups, sort], default=repr))
        page = hits[after : after + limit]
        payload: dict[str, object] = {
            "total": len(hits),
            "results": [obj.render(version, requested) for obj, version in page],
        }
        if after + limit < min(len(hits), cap):
            payload["paging"] = {"next": {"after": str(after + limit)}}
        return httpx.Response(200, json=payload)

    def _hits(
        self, object_type: str, groups: list[list[_Filter]], sort: tuple[str, bool], key: str
    ) -> list[_Hit]:
        """Evaluate a search on the index as it is now (cached until data or index change)."""
        now_ms = self._now_ms()
        moment = None if now_ms >= self._settled_ms else now_ms
        cache_key = (object_type, key, moment)
        if cache_key in self._cache:
            return self._cache[cache_key]
        # Filtering keeps the order of what it filters, so the sorted index serves every filter.
        ordered = self._sorted(object_type, sort, now_ms, moment)
        first, passing = self._bounded(object_type, groups, sort, moment)
        hits = ordered[first:passing] + [
            (obj, version)
            for obj, version in ordered[passing:]
            if not groups or any(all(f.passes(obj.raw(version, f.name)) for f in g) for g in groups)
        ]
        self._cache = {cache_key: hits}  # one query at a time: what paging through one needs
        return hits

    def _bounded(
        self,
        object_type: str,
        groups: list[list[_Filter]],
        sort: tuple[str, bool],
        moment: int | None,
    ) -> tuple[int, int]:
        """Return where in the index hits may start, and up to where they surely pass.

        The entries from ``passing`` on are judged by the filters. Only a speed-up, for the query
        every incremental read sends (one group, a numeric lower bound on the property the index
        is sorted by, ascending): the numbers below the bound cannot pass and are not looked at;
        with that bound alone, the numbers from it on all pass.
        """
        name, descending = sort
        if descending or len(groups) != 1:
            return 0, 0
        bounds = [
            f
            for f in groups[0]
            if f.name == name and f.operator in ("GTE", "GT", "EQ", "BETWEEN")
            if isinstance(f.low, float)
        ]
        if not bounds:
            return 0, 0
        numbers = self._numbers[(object_type, name, descending, moment)]
        low = max(bound.low for bound in bounds if isinstance(bound.low, float))
        first = bisect.bisect_left(numbers, low)
        (only,) = groups[0] if len(groups[0]) == 1 else (None,)
        if only is None or only.operator not in ("GTE", "GT"):
            return first, first
        if only.operator == "GT":
            first = bisect.bisect_right(numbers, low)
        return first, len(numbers)

    def _sorted(
        self, object_type: str, sort: tuple[str, bool], now_ms: int, moment: int | None
    ) -> list[_Hit]:
        """Every object search sees now, in the order of ``sort``, ties in their drawn order.

        Kept until data or the index change (or, while writes are still being indexed, until the
        clock moves): searches that differ only in their filters share it.
        """
        key = (object_type, sort[0], sort[1], moment)
        if key in self._orders:
            return self._orders[key]
        hits: list[_Hit] = []
        for obj in self._objects.get(object_type, {}).values():
            version = obj.indexed(now_ms) if obj.archived_ms is None else None
            if version is not None:
                hits.append((obj, version))
        name, descending = sort
        hits.sort(key=lambda hit: hit[1].tie)  # ties keep this arbitrary order: sorts are stable
        keyed = [(_sort_key(obj.raw(version, name)), (obj, version)) for obj, version in hits]
        present = [(key, hit) for key, hit in keyed if key is not None]
        present.sort(key=lambda entry: entry[0], reverse=descending)
        ordered = [hit for _, hit in present] + [hit for key, hit in keyed if key is None]
        if any(kept[3] != moment for kept in self._orders):
            self._orders.clear()
            self._numbers.clear()
        self._orders[key] = ordered
        self._numbers[key] = [entry[0][1] for entry in present if entry[0][0] == 0]
        return ordered

    def _list(self, request: httpx.Request, object_type: str) -> httpx.Response:
        params = request.url.params
        limit = _whole(params.get("limit"), "limit", 10)
        if not 1 <= limit <= LIST_PAGE_MAX:
            raise _invalid(f"limit must be between 1 and {LIST_PAGE_MAX}, got {limit}.")
        archived = params.get("archived", "false").lower() == "true"
        cursor = params.get("after")
        try:
            start = int(base64.urlsafe_b64decode(cursor).decode()) if cursor else 0
        except ValueError:
            raise _invalid(f"after {cursor!r} is not a cursor this API gave out.") from None
        objects = self._objects.get(object_type, {}).values()
        matching = [o for o in objects if (o.archived_ms is not None) == archived]
        matching = sorted((o for o in matching if int(o.id) >= start), key=lambda o: int(o.id))
        requested = _requested(params)
        payload: dict[str, object] = {
            "results": [obj.render(obj.versions[-1], requested) for obj in matching[:limit]]
        }
        if len(matching) > limit:
            after = base64.urlsafe_b64encode(matching[limit].id.encode()).decode()
            link = str(request.url.copy_set_param("after", after))
            payload["paging"] = {"next": {"after": after, "link": link}}
        return httpx.Response(200, json=payload)

    def _batch_read(self, request: httpx.Request, object_type: str) -> httpx.Response:
        body = _body(request)
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not all(
            isinstance(item, dict) and isinstance(item.get("id"), str) for item in inputs
        ):
            raise _invalid('inputs must be a list of {"id": "..."} objects.')
        if len(inputs) > BATCH_READ_MAX:
            raise _invalid(f"Batch input cannot contain more than {BATCH_READ_MAX} inputs.")
        if body.get("idProperty"):
            raise _invalid("The fake reads by object id only; idProperty is not served.")
        requested = _property_names(body) or None  # none named: the type's defaults
        archived = request.url.params.get("archived", "false").lower() == "true"
        objects = self._objects.get(object_type, {})
        found: dict[str, dict[str, object]] = {}
        missing: list[str] = []
        for item in inputs:
            object_id = self._merged.get((object_type, item["id"]), item["id"])
            obj = objects.get(object_id)
            if obj is None or (obj.archived_ms is not None) != archived:
                missing.append(item["id"])
            else:
                found[obj.id] = obj.render(obj.versions[-1], requested)
        results = list(found.values())
        self._rng.shuffle(results)  # HubSpot promises no order
        moment = _iso(self._now_ms())
        payload: dict[str, object] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": moment,
            "completedAt": moment,
        }
        if not missing:
            return httpx.Response(200, json=payload)
        name = object_type.upper().removesuffix("S").replace("COMPANIE", "COMPANY")
        error = {
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "message": f"Could not get some {name} objects, they may be deleted or not exist. "
            "Check that ids are valid.",
            "context": {"ids": missing},
            "errors": [],
        }
        return httpx.Response(207, json={**payload, "numErrors": 1, "errors": [error]})

    def _read(self, request: httpx.Request, object_type: str, object_id: str) -> httpx.Response:
        object_id = self._merged.get((object_type, object_id), object_id)
        found = self._objects.get(object_type, {}).get(object_id)
        archived = request.url.params.get("archived", "false").lower() == "true"
        if found is None or (found.archived_ms is not None) != archived:
            return _error(404, "resource not found", "OBJECT_NOT_FOUND")
        return httpx.Response(
            200, json=found.render(found.versions[-1], _requested(request.url.params))
        )

    # --- internals ------------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return _to_ms(self.clock(), "clock()")

    def _due(self) -> int:
        """When a write made now reaches the search index."""
        return self._now_ms() + self.index_lag // _MS

    def _touched(self, indexed_ms: int) -> None:
        self._settled_ms = max(self._settled_ms, indexed_ms)
        self._cache.clear()
        self._orders.clear()
        self._numbers.clear()

    def _forget_expired(self) -> None:
        """Delete for good every object archived longer ago than :data:`ARCHIVED_RETENTION`."""
        horizon = self._now_ms() - ARCHIVED_RETENTION // _MS
        expired = {
            (object_type, object_id)
            for object_type, object_id in self._archived
            if (self._objects[object_type][object_id].archived_ms or 0) <= horizon
        }
        for object_type, object_id in expired:
            del self._objects[object_type][object_id]
        if expired:
            self._archived -= expired
            self._touched(_ALWAYS)

    def _live(self, object_type: str, object_id: str) -> _Object:
        found = self._objects.get(object_type, {}).get(object_id)
        if found is None or found.archived_ms is not None:
            raise KeyError(f"no live {object_type} object with id {object_id!r}")
        return found

    def _insert(
        self,
        object_type: str,
        object_id: str | None,
        created_ms: int,
        modified_ms: int,
        properties: Mapping[str, str],
        indexed_ms: int,
    ) -> str:
        objects = self._objects.setdefault(object_type, {})
        if object_id is None:
            self._next_id += self._rng.randint(1, 7)  # ids grow, with gaps, past digit boundaries
            object_id = str(self._next_id)
        elif not object_id.isdigit() or object_id in objects:
            raise ValueError(f"object id {object_id!r} must be numeric and unused")
        version = _Version(properties, modified_ms, indexed_ms, self._rng.random())
        objects[object_id] = _Object(object_type, object_id, created_ms, [version])
        self._touched(indexed_ms)
        return object_id


def _body(request: httpx.Request) -> dict[str, object]:
    """The JSON object a POST sent, or the 400 HubSpot answers to anything else."""
    try:
        body = json.loads(request.content or b"{}")
    except ValueError:
        raise _invalid("Invalid input JSON: the request body could not be parsed.") from None
    if not isinstance(body, dict):
        raise _invalid("Invalid input JSON: the request body must be an object.")
    return body


def _property_names(body: Mapping[str, object]) -> list[str] | None:
    """The ``properties`` a body names, ``None`` when it names none."""
    requested = body.get("properties")
    if requested is not None and not (
        isinstance(requested, list) and all(isinstance(n, str) for n in requested)
    ):
        raise _invalid("properties must be a list of property names.")
    return requested


def _checked(object_type: str, properties: Mapping[str, str] | None) -> dict[str, str]:
    props = dict(properties or {})
    reserved = {"hs_object_id", "createdate", _modified_property(object_type)} & props.keys()
    if reserved:
        raise ValueError(f"{sorted(reserved)} are set by the fake: pass created_at/modified_at")
    if not all(isinstance(value, str) for value in props.values()):
        raise ValueError("HubSpot property values are strings")
    return props


def _parse_groups(object_type: str, groups: object) -> list[list[_Filter]]:
    if not isinstance(groups, list) or len(groups) > _MAX_GROUPS:
        raise _invalid(f"filterGroups must be a list of at most {_MAX_GROUPS} groups.")
    lists = [group.get("filters") if isinstance(group, dict) else None for group in groups]
    if not all(isinstance(f, list) and len(f) <= _MAX_FILTERS_PER_GROUP for f in lists):
        raise _invalid(f"A filter group holds a list of at most {_MAX_FILTERS_PER_GROUP} filters.")
    parsed = [
        [_parse_filter(object_type, item) for item in f] for f in lists if isinstance(f, list)
    ]
    if sum(map(len, parsed)) > _MAX_FILTERS:
        raise _invalid(f"A search takes at most {_MAX_FILTERS} filters in all.")
    return parsed


def _parse_filter(object_type: str, item: object) -> _Filter:
    name = item.get("propertyName") if isinstance(item, dict) else None
    operator = item.get("operator") if isinstance(item, dict) else None
    if not isinstance(item, dict) or not isinstance(name, str) or operator not in _OPERATORS:
        raise _invalid(f"A filter is {{propertyName, operator, value}}; got {item!r}.")
    timestamp = name in {"createdate", _modified_property(object_type)}

    def operand(value: object) -> float | str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise _invalid(f"Operator {operator} on {name} needs a value, got {value!r}.")
        number = _number(value)
        if number is None and timestamp:
            raise _invalid(f"{value!r} is not a valid datetime for {name}: use epoch milliseconds.")
        return str(value) if number is None else number

    low = operand(item.get("value"))
    return _Filter(
        name, str(operator), low, operand(item.get("highValue")) if operator == "BETWEEN" else low
    )


def _parse_sort(sorts: object) -> tuple[str, bool]:
    if not isinstance(sorts, list) or len(sorts) > 1:
        raise _invalid("Only one sort rule may be applied to a search.")
    if not sorts:
        return "hs_object_id", False  # HubSpot's order without a sort rule
    rule = sorts[0] if isinstance(sorts[0], dict) else {}
    name, direction = rule.get("propertyName"), rule.get("direction", "ASCENDING")
    if not isinstance(name, str) or direction not in {"ASCENDING", "DESCENDING"}:
        raise _invalid("A sort rule is {propertyName, direction: ASCENDING|DESCENDING}.")
    return name, direction == "DESCENDING"
