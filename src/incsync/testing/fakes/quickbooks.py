"""A fake QuickBooks Online Accounting API (v3) that keeps the documented rules a sync must survive.

Routes (one realm per fake; ``minorversion`` is accepted and ignored):

* ``GET /v3/company/{realmId}/query?query=<statement>`` and ``POST`` of the statement as the body
  (``Content-Type: application/text``): see :mod:`._quickbooks_query` for the dialect. The answer
  is ``{"QueryResponse": {"<Entity>": [...], "startPosition", "maxResults", "totalCount"}, "time"}``
  where ``maxResults`` and ``totalCount`` count *this page* (never the whole result), and an empty
  page is ``{"QueryResponse": {}}``. Every request is evaluated against the data as it is now, so
  ``STARTPOSITION`` paging over records that change between pages skips or repeats records, as
  offset paging does against the real API. Without ``ORDERBY``, and among rows that tie on every
  ``ORDERBY`` key, the order is reshuffled on every request (seeded, so reproducible).
* ``GET /v3/company/{realmId}/cdc?entities=A,B&changedSince=<ISO>``: every change at or after
  ``changedSince`` (whole seconds; there is no upper bound), deletes as ``{"domain", "status":
  "Deleted", "Id", "MetaData": {"LastUpdatedTime"}}``; ``changedSince`` more than 30 days back is a
  400 Fault. Objects come as Intuit's ChangeDataCapture reference orders them ("Business Rules"):
  grouped by entity (in the order asked), by last update within a group (ties in any order), and
  the deleted ones after the live ones. At most 1,000 objects per response, shared by all the
  entities asked for, and **nothing marks a response as cut** (QuickBooks documents no marker).
  Which 1,000 a cut response keeps is not documented; the fake keeps the first 1,000 of that
  order, so with 1,000 live changes since ``changedSince`` a response shows no delete at all.
  ``cdc_cut="any"`` keeps any 1,000 instead, to test that a client notices a cut it cannot rely
  on.
* ``POST /oauth2/v1/tokens/bearer`` (``grant_type=refresh_token``, client id and secret in HTTP
  Basic auth): Intuit's token endpoint, served on the same base URL.

Entity times are written in the company's zone at whole seconds, so the offset changes with
daylight saving time (``-08:00`` then ``-07:00`` for America/Los_Angeles); literals in queries and
``changedSince`` may carry any offset or ``Z``, and are read in the company zone without one.
Deleted records leave ``query`` and appear only in CDC. :meth:`FakeQuickBooks.void` marks a
transaction as QuickBooks shows a voided one: ``TotalAmt`` and ``Balance`` 0 and ``PrivateNote``
``"Voided"`` (lines are left as they were: a simplification).

Failures, with the bodies QuickBooks sends: a missing, unknown or expired access token is a 401 with
the lowercase ``{"fault": {"error": [...]}}`` envelope (code 3200); another realm's path is a 403
(code 3100); more than ``requests_per_minute`` API requests in any 60 s of the fake's clock is a 429
with Fault code 3001 and no ``Retry-After``, its body JSON or the XML QuickBooks sometimes sends
although JSON was asked for, and so is a request that finds 10 others of the company in flight
(Intuit's limit on concurrent requests, felt once the fake has a latency); an unknown refresh
token is a 400 ``{"error": "invalid_grant"}``, and so is a rotated-away one once
``refresh_token_grace`` (24 hours, as Intuit documents) has passed.

Deliberate simplifications: only JSON is served, so a request without ``Accept: application/json``
is refused with a 406 (the real API would answer in XML: either way a client must ask for JSON);
only ``SELECT *`` and ``count(*)`` are understood, filtering and sorting only on
``MetaData.LastUpdatedTime``, ``MetaData.CreateTime`` and ``Id`` (other properties are refused with
a 4001 Fault rather than ignored); the token endpoint knows only the refresh grant (tests get their
first tokens from :meth:`FakeQuickBooks.grant_tokens`); the exact Fault code for a CDC window older
than 30 days is undocumented, so the fake answers 400 ``ValidationFault`` code 4001.
"""

from __future__ import annotations

import base64
import binascii
import collections
import copy
import json
import random
import re
import secrets
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

import attrs
import httpx

from incsync.testing.fakes._quickbooks_query import (
    STANDARD_ENTITIES,
    THROTTLE_DETAIL,
    THROTTLE_MESSAGE,
    QueryError,
    auth_fault_body,
    id_order,
    local_millis,
    local_seconds,
    page_of,
    parse_query,
    parse_time_literal,
    parser_error,
    run_query,
    throttle_xml,
    validation_error,
)
from incsync.testing.fakes._server import FakeVendor
from incsync.timestamps import ensure_utc

if TYPE_CHECKING:
    from incsync.testing import ManualClock

__all__ = ["CdcCut", "FakeQuickBooks", "QuickBooksTokens", "ThrottleFormat"]

ThrottleFormat = Literal["json", "xml", "alternate"]
"""The body of a 429: JSON, the XML QuickBooks sometimes sends instead, or XML and JSON in turn."""

CdcCut = Literal["documented", "any"]
"""Which objects a CDC answer past 1,000 keeps: the first of the documented order, or any."""

_UTC = timezone.utc
_TOKEN_PATH = "/oauth2/v1/tokens/bearer"
_API_PATH = re.compile(r"/v3/company/(?P<realm>[^/]+)/(?P<operation>[A-Za-z]+)")
_CDC_LOOKBACK = timedelta(days=30)
_CDC_MAX_OBJECTS = 1000
_THROTTLE_WINDOW = timedelta(minutes=1)
_JSON = "application/json;charset=UTF-8"
_JSON_ONLY = "The fake serves JSON only: send Accept: application/json (QuickBooks would send XML)."


@attrs.frozen
class QuickBooksTokens:
    """Tokens the fake issued, as a host would hold them after Intuit's consent screen.

    Attributes:
        access_token: The bearer token for API requests.
        refresh_token: The token to send to the token endpoint for new ones.
        access_token_expires_at: When ``access_token`` stops working (aware UTC).
        refresh_token_expires_at: When ``refresh_token`` stops working (aware UTC).
    """

    access_token: str
    refresh_token: str
    access_token_expires_at: datetime
    refresh_token_expires_at: datetime


@attrs.define
class _Record:
    record_id: str
    created: datetime
    updated: datetime
    fields: dict[str, Any]
    sync_token: int = 0
    deleted: bool = False
    id_key: tuple[int, int, str] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.id_key = id_order(self.record_id)


class FakeQuickBooks(FakeVendor):
    """A fake QuickBooks Online company: query, CDC and OAuth2 tokens over httpx or loopback HTTP.

    Tests change its data with plain methods (:meth:`add`, :meth:`update`, :meth:`delete`,
    :meth:`void`, :meth:`bulk_load`), read the truth back (:meth:`entities`, :meth:`deleted_ids`),
    move its clock (:meth:`set_time`, :meth:`advance`), and provoke failures
    (:meth:`expire_access_tokens`, :meth:`throttle_next`). See the module docstring for the rules
    it keeps.

    Args:
        realm_id: The company id the paths must carry.
        company_timezone: The company's zone (an IANA name or a ``tzinfo``) for written times.
        clock: Returns the current aware time; by default a ``ManualClock`` at 2024-06-03 16:00 UTC
            that only moves when told.
        client_id: The app's OAuth2 client id.
        client_secret: The app's OAuth2 client secret.
        access_token_lifetime: How long an access token works (Intuit: 1 hour).
        refresh_token_lifetime: How long a refresh token works if unused (Intuit: about 100 days).
        rotate_refresh_tokens: Whether every refresh returns a new refresh token.
        refresh_token_grace: How long a rotated-away refresh token keeps working (Intuit: "your
            previous refresh tokens expire 24 hours after you receive a new one"; 0: not at all).
        requests_per_minute: API requests allowed per realm in any 60 s (QuickBooks: 500). The
            default clock stands still, so a test that sends more must advance it or raise this.
        throttle_format: The body of a 429 (see :data:`ThrottleFormat`).
        cdc_cut: Which objects a CDC answer of more than 1,000 keeps (see :data:`CdcCut`).
        seed: Seeds the shuffles that stand for "no promised order".
    """

    max_concurrent = 10

    def __init__(
        self,
        *,
        realm_id: str = "9341452781239815",
        company_timezone: str | tzinfo = "America/Los_Angeles",
        clock: Callable[[], datetime] | None = None,
        client_id: str = "fake-client-id",
        client_secret: str = "fake-client-secret",
        access_token_lifetime: timedelta = timedelta(hours=1),
        refresh_token_lifetime: timedelta = timedelta(days=101),
        rotate_refresh_tokens: bool = True,
        refresh_token_grace: timedelta = timedelta(hours=24),
        requests_per_minute: int = 500,
        throttle_format: ThrottleFormat = "json",
        cdc_cut: CdcCut = "documented",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if clock is None:
            # Imported here, not at the top: incsync.testing may one day import this module.
            from incsync.testing import ManualClock

            clock = ManualClock(datetime(2024, 6, 3, 16, 0, tzinfo=_UTC))
        self.clock = clock
        self.realm_id = realm_id
        self.zone = (
            ZoneInfo(company_timezone) if isinstance(company_timezone, str) else company_timezone
        )
        self.client_id = client_id
        self.client_secret = client_secret
        self.access_token_lifetime = access_token_lifetime
        self.refresh_token_lifetime = refresh_token_lifetime
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.refresh_token_grace = refresh_token_grace
        self.requests_per_minute = requests_per_minute
        self.throttle_format: ThrottleFormat = throttle_format
        self.cdc_cut: CdcCut = cdc_cut
        self._seed = seed
        self._tables: dict[str, dict[str, _Record]] = {}
        self._names = {name.lower(): name for name in STANDARD_ENTITIES}
        self._next_id = 1
        self._access_tokens: dict[str, datetime] = {}
        self._refresh_tokens: dict[str, datetime] = {}
        self._recent: collections.deque[datetime] = collections.deque()
        self._forced_throttles: list[ThrottleFormat] = []
        self._throttles_sent = 0
        self._api_requests = 0

    # -- test control: time, tokens, throttling -------------------------------------------------

    def set_time(self, moment: datetime) -> None:
        """Move the fake's clock to ``moment``, forward or back.

        Raises:
            TypeError: The fake was given its own ``clock``; move that one instead.
        """
        self._manual_clock().set(moment)

    def advance(self, delta: timedelta) -> datetime:
        """Move the fake's clock forward by ``delta`` and return the new time.

        Raises:
            TypeError: The fake was given its own ``clock``; move that one instead.
        """
        return self._manual_clock().advance(delta)

    def grant_tokens(self) -> QuickBooksTokens:
        """Issue a fresh access and refresh token, as Intuit does when a user connects the app."""
        with self._lock:
            return self._issue(self._new_refresh_token())

    def expire_access_tokens(self) -> None:
        """Make every access token issued so far expired, as if its hour had passed."""
        with self._lock:
            now = self._now()
            for token, expiry in self._access_tokens.items():
                self._access_tokens[token] = min(expiry, now)

    def throttle_next(self, count: int = 1, *, body_format: ThrottleFormat | None = None) -> None:
        """Answer the next ``count`` authorised API requests with a 429, whatever the rate."""
        with self._lock:
            self._forced_throttles.extend([body_format or self.throttle_format] * count)

    # -- test control: data ---------------------------------------------------------------------

    def add(
        self,
        entity: str,
        fields: Mapping[str, Any] | None = None,
        *,
        record_id: str | None = None,
        updated_at: datetime | None = None,
        created_at: datetime | None = None,
    ) -> str:
        """Create a record and return its ``Id``.

        Args:
            entity: The entity name (``"Invoice"``, ``"Payment"``, or any other).
            fields: The record's properties, apart from ``Id``, ``SyncToken`` and ``MetaData``.
            record_id: The ``Id``; by default the next number.
            updated_at: ``MetaData.LastUpdatedTime``; by default the fake's clock.
            created_at: ``MetaData.CreateTime``; by default ``updated_at``.

        Raises:
            ValueError: A live record of ``entity`` already has ``record_id``.
        """
        with self._lock:
            table = self._table(entity)
            if record_id is not None and record_id in table and not table[record_id].deleted:
                raise ValueError(f"{entity} {record_id} exists; call update() to change it")
            record_id = record_id or self._allocate_id(table)
            updated = self._at(updated_at, "updated_at")
            created = updated if created_at is None else self._at(created_at, "created_at")
            body = copy.deepcopy(dict(fields or {}))
            table[record_id] = _Record(record_id, created, updated, body)
            return record_id

    def bulk_load(
        self,
        entity: str,
        timestamps: Iterable[datetime],
        *,
        fields: Callable[[int], Mapping[str, Any]] | None = None,
    ) -> list[str]:
        """Create one record per timestamp (its create and update time) and return their ids.

        Args:
            entity: The entity name.
            timestamps: One ``LastUpdatedTime`` per record; repeat a value for many ties.
            fields: Builds the properties of the n-th record (from 0); by default none.
        """
        with self._lock:
            table = self._table(entity)
            ids: list[str] = []
            for index, moment in enumerate(timestamps):
                record_id = self._allocate_id(table)
                when = self._at(moment, "timestamp")
                body = dict(fields(index)) if fields else {}
                table[record_id] = _Record(record_id, when, when, body)
                ids.append(record_id)
            return ids

    def update(
        self,
        entity: str,
        record_id: str,
        fields: Mapping[str, Any] | None = None,
        *,
        updated_at: datetime | None = None,
    ) -> None:
        """Change a live record: merge ``fields``, bump ``SyncToken`` and ``LastUpdatedTime``.

        Raises:
            KeyError: No live record of ``entity`` has ``record_id``.
        """
        with self._lock:
            record = self._live(entity, record_id)
            record.fields.update(copy.deepcopy(dict(fields or {})))
            record.sync_token += 1
            record.updated = self._at(updated_at, "updated_at")

    def void(self, entity: str, record_id: str, *, voided_at: datetime | None = None) -> None:
        """Void a transaction: it stays visible to query with total 0 and note ``"Voided"``."""
        self.update(
            entity,
            record_id,
            {"TotalAmt": 0, "Balance": 0, "PrivateNote": "Voided"},
            updated_at=voided_at,
        )

    def delete(self, entity: str, record_id: str, *, deleted_at: datetime | None = None) -> None:
        """Delete a record: it leaves query results and shows in CDC as ``status: "Deleted"``.

        Raises:
            KeyError: No live record of ``entity`` has ``record_id``.
        """
        with self._lock:
            record = self._live(entity, record_id)
            record.deleted = True
            record.updated = self._at(deleted_at, "deleted_at")

    def entities(self, entity: str) -> list[dict[str, Any]]:
        """Return the live records of ``entity`` as the API writes them, by Id (ground truth)."""
        with self._lock:
            records = [r for r in self._table(entity).values() if not r.deleted]
            records.sort(key=lambda record: record.id_key)
            return [copy.deepcopy(self._render(record)) for record in records]

    def deleted_ids(self, entity: str) -> set[str]:
        """Return the ids of the deleted records of ``entity`` (ground truth)."""
        with self._lock:
            return {r.record_id for r in self._table(entity).values() if r.deleted}

    # -- HTTP -----------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` as QuickBooks Online and Intuit's token endpoint would."""
        path = request.url.path
        if path == _TOKEN_PATH:
            return self._token_endpoint(request)
        match = _API_PATH.fullmatch(path)
        operation = match["operation"] if match else ""
        if match is None or operation not in {"query", "cdc"}:
            detail = f"Operation Could not find resource for relative : {path} is not supported."
            return self._fault(400, "ValidationFault", "500", "Unsupported Operation", detail)
        refused = self._authenticate(request)
        if refused is not None:
            return refused
        if match["realm"] != self.realm_id:
            return self._auth_fault(403, "3100", "AuthorizationFailed", None, "SERVICE")
        if "json" not in request.headers.get("accept", ""):
            return httpx.Response(406, text=_JSON_ONLY)
        allowed = {"GET", "POST"} if operation == "query" else {"GET"}
        if request.method not in allowed:
            return httpx.Response(405, headers={"Allow": ", ".join(sorted(allowed))})
        throttled = self._throttle()
        if throttled is not None:
            return throttled
        self._api_requests += 1
        try:
            if operation == "query":
                return self._query(request)
            return self._cdc(request)
        except QueryError as error:
            return self._fault(400, "ValidationFault", error.code, error.message, error.detail)

    def _query(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            text = request.content.decode("utf-8", errors="replace")
        else:
            text = request.url.params.get("query", "")
        query = parse_query(text, self.zone)
        name = self._entity_name(query.entity)
        rows = [r for r in self._table(name).values() if not r.deleted]
        selected = run_query(query, rows, self._rng())
        if query.count_only:
            return self._json(200, {"QueryResponse": {"totalCount": len(selected)}})
        page = page_of(query, selected)
        body: dict[str, Any] = {}
        if page:
            body = {
                "startPosition": query.start_position,
                "totalCount": len(page),
                "maxResults": len(page),
                name: [self._render(record) for record in page],
            }
        return self._json(200, {"QueryResponse": body})

    def _cdc(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        asked = [name.strip() for name in params.get("entities", "").split(",") if name.strip()]
        since_text = params.get("changedSince", "")
        if not asked or not since_text:
            raise validation_error("cdc needs both entities and changedSince")
        names = list(dict.fromkeys(self._entity_name(name) for name in asked))
        since = parse_time_literal(since_text, self.zone)
        if since < self._now() - _CDC_LOOKBACK:
            raise QueryError(
                "4001",
                "Invalid query",
                f"Operation cdc with changedSince date {since_text} which is older than "
                f"fixed days is not supported.",
            )
        rng = self._rng()
        changes: list[tuple[str, _Record]] = []
        for name in names:
            group = [record for record in self._table(name).values() if record.updated >= since]
            rng.shuffle(group)  # ties in any order: the sort below is stable
            group.sort(key=lambda record: (record.deleted, record.updated))
            changes.extend((name, record) for record in group)
        if self.cdc_cut == "any":
            rng.shuffle(changes)
        kept = changes[:_CDC_MAX_OBJECTS]
        responses: list[dict[str, Any]] = []
        for name in names:
            objects = [self._render(record) for entity, record in kept if entity == name]
            if objects:
                responses.append({name: objects, "startPosition": 1, "maxResults": len(objects)})
        return self._json(200, {"CDCResponse": [{"QueryResponse": responses or [{}]}]})

    def _token_endpoint(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST":
            return httpx.Response(405, headers={"Allow": "POST"})
        if not self._client_authenticated(request.headers.get("authorization", "")):
            return httpx.Response(401, json={"error": "invalid_client"})
        form = urllib.parse.parse_qs(request.content.decode("utf-8", errors="replace"))
        if form.get("grant_type", [""])[0] != "refresh_token":
            return httpx.Response(400, json={"error": "unsupported_grant_type"})
        presented = form.get("refresh_token", [""])[0]
        now = self._now()
        expiry = self._refresh_tokens.get(presented)
        if expiry is None or now >= expiry:
            return httpx.Response(400, json={"error": "invalid_grant"})
        refresh_token = presented
        if self.rotate_refresh_tokens:
            refresh_token = self._new_refresh_token()
            self._refresh_tokens[presented] = min(expiry, now + self.refresh_token_grace)
        tokens = self._issue(refresh_token)
        return httpx.Response(
            200,
            json={
                "token_type": "bearer",
                "expires_in": int(self.access_token_lifetime.total_seconds()),
                "refresh_token": tokens.refresh_token,
                "x_refresh_token_expires_in": int(
                    (tokens.refresh_token_expires_at - now).total_seconds()
                ),
                "access_token": tokens.access_token,
            },
        )

    def _client_authenticated(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        client_id, _, client_secret = decoded.partition(":")
        return (client_id, client_secret) == (self.client_id, self.client_secret)

    def _authenticate(self, request: httpx.Request) -> httpx.Response | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        expiry = self._access_tokens.get(token) if scheme.lower() == "bearer" else None
        if expiry is not None and self._now() < expiry:
            return None
        detail = "Token invalid" if expiry is None else f"Token expired: {token[:10]}..."
        return self._auth_fault(401, "3200", "AuthenticationFailed", detail, "AUTHENTICATION")

    def concurrency_refusal(self, request: httpx.Request) -> httpx.Response:
        """Answer a request over the 10 in flight per company as QuickBooks does: Fault 3001."""
        return self._throttle_response(self.throttle_format)

    def _throttle(self) -> httpx.Response | None:
        if self._forced_throttles:
            return self._throttle_response(self._forced_throttles.pop(0))
        now = self._now()
        while self._recent and self._recent[0] <= now - _THROTTLE_WINDOW:
            self._recent.popleft()
        if len(self._recent) >= self.requests_per_minute:
            return self._throttle_response(self.throttle_format)
        self._recent.append(now)
        return None

    def _throttle_response(self, body_format: ThrottleFormat) -> httpx.Response:
        self._throttles_sent += 1
        as_xml = body_format == "xml" or (
            body_format == "alternate" and self._throttles_sent % 2 == 1
        )
        if as_xml:
            text = throttle_xml(local_millis(self._now(), self.zone))
            return httpx.Response(
                429, content=text.encode(), headers={"Content-Type": "application/xml"}
            )
        return self._fault(429, "SERVICE", "3001", THROTTLE_MESSAGE, THROTTLE_DETAIL)

    # -- helpers --------------------------------------------------------------------------------

    def _json(self, status: int, body: dict[str, Any]) -> httpx.Response:
        body["time"] = local_millis(self._now(), self.zone)
        content = json.dumps(body).encode()
        tid = f"1-{self._seed:x}-{self._api_requests:08x}"
        return httpx.Response(
            status, content=content, headers={"Content-Type": _JSON, "intuit_tid": tid}
        )

    def _fault(
        self, status: int, fault_type: str, code: str, message: str, detail: str
    ) -> httpx.Response:
        error = {"Message": message, "Detail": detail, "code": code}
        return self._json(status, {"Fault": {"Error": [error], "type": fault_type}})

    def _auth_fault(
        self, status: int, code: str, name: str, detail: str | None, fault_type: str
    ) -> httpx.Response:
        now_ms = int(self._now().timestamp() * 1000)
        body = auth_fault_body(status, code, name, detail, fault_type, now_ms)
        headers = {"Content-Type": _JSON}
        return httpx.Response(status, content=json.dumps(body).encode(), headers=headers)

    def _render(self, record: _Record) -> dict[str, Any]:
        updated = local_seconds(record.updated, self.zone)
        if record.deleted:
            return {
                "domain": "QBO",
                "status": "Deleted",
                "Id": record.record_id,
                "MetaData": {"LastUpdatedTime": updated},
            }
        return {
            **record.fields,
            "domain": "QBO",
            "sparse": False,
            "Id": record.record_id,
            "SyncToken": str(record.sync_token),
            "MetaData": {
                "CreateTime": local_seconds(record.created, self.zone),
                "LastUpdatedTime": updated,
            },
        }

    def _entity_name(self, name: str) -> str:
        canonical = self._names.get(name.lower())
        if canonical is None:
            raise parser_error(f"Invalid entity name: {name}")
        return canonical

    def _table(self, entity: str) -> dict[str, _Record]:
        # Any entity name is allowed: the first spelling seen becomes the canonical one.
        name = self._names.setdefault(entity.lower(), entity)
        return self._tables.setdefault(name, {})

    def _live(self, entity: str, record_id: str) -> _Record:
        record = self._table(entity).get(record_id)
        if record is None or record.deleted:
            raise KeyError(f"no live {entity} with Id {record_id!r}; add() it first")
        return record

    def _allocate_id(self, table: dict[str, _Record]) -> str:
        while str(self._next_id) in table:
            self._next_id += 1
        self._next_id += 1
        return str(self._next_id - 1)

    def _issue(self, refresh_token: str) -> QuickBooksTokens:
        now = self._now()
        access_token = f"qbo-access-{secrets.token_urlsafe(24)}"
        self._access_tokens[access_token] = now + self.access_token_lifetime
        return QuickBooksTokens(
            access_token,
            refresh_token,
            now + self.access_token_lifetime,
            self._refresh_tokens[refresh_token],
        )

    def _new_refresh_token(self) -> str:
        token = f"qbo-refresh-{secrets.token_urlsafe(24)}"
        self._refresh_tokens[token] = self._now() + self.refresh_token_lifetime
        return token

    def _rng(self) -> random.Random:
        return random.Random(self._seed * 1_000_003 + self._api_requests)

    def now(self) -> datetime:
        """Return the fake's clock, which dates its answers."""
        return self._now()

    def _now(self) -> datetime:
        return ensure_utc(self.clock(), "clock()")

    def _at(self, moment: datetime | None, field: str) -> datetime:
        when = self._now() if moment is None else ensure_utc(moment, field)
        return when.replace(microsecond=0)  # QuickBooks keeps whole seconds

    def _manual_clock(self) -> ManualClock:
        from incsync.testing import ManualClock

        if not isinstance(self.clock, ManualClock):
            raise TypeError("set_time() and advance() need the default ManualClock; move yours")
        return self.clock
