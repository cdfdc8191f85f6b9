"""A fake of Xero's Accounting API (invoices or contacts) that keeps Xero's hard edges, for testing.

What it serves:

- ``GET /api.xro/2.0/Invoices`` (or ``/Contacts``, the fake's ``endpoint``) behind a bearer token
  and a ``Xero-tenant-id`` header:
  ``If-Modified-Since`` keeps invoices whose ``UpdatedDateUTC`` is at or after the header's
  second (the header has whole-second precision; the field has milliseconds);
  ``order=UpdatedDateUTC ASC`` (or ``DESC``) sorts by that field, invoices sharing a millisecond
  in an arbitrary order drawn again whenever one is updated; ``page=N`` (1-based) cuts pages of
  ``pageSize`` (100 unless asked, at most 1,000) from the result as it is *now*, so pages shift
  when invoices change between requests. Without ``page`` every match comes in one answer.
  Deleted and voided invoices stay listed, with their ``Status``; archived contacts
  (``ContactStatus`` ``ARCHIVED`` or ``GDPRREQUEST``) are listed only with
  ``includeArchived=true``. ``where`` takes conditions ``Field=="value"`` or ``Field!="value"``
  joined by ``AND`` (or ``&&``). A paged answer carries ``pagination`` (``page``, ``pageSize``,
  ``pageCount``, ``itemCount``: every match). Timestamps are .NET JSON dates
  (``/Date(1541176290160+0000)/``) and slashes are escaped on the wire, as Xero writes them.
- ``POST /connect/token``: the refresh-token grant, client credentials in HTTP Basic or the form.
  Access tokens live 30 minutes; every refresh rotates the refresh token, and the old one stops
  working after a grace of 30 minutes, in which it may be used again (Xero's answer to a lost
  token response).
- Rate limits per tenant on the fake's clock: calls per rolling minute (60) and per rolling day
  (5,000). A breach is a 429 with ``Retry-After`` (seconds until a call frees) and
  ``X-Rate-Limit-Problem: minute`` or ``day``; every answer carries ``X-MinLimit-Remaining``,
  ``X-DayLimit-Remaining`` and ``X-AppMinLimit-Remaining``. A call that finds 5 others of the
  tenant in progress (felt once the fake has a latency) is a 429 with ``Retry-After: 1`` and
  ``X-Rate-Limit-Problem: concurrent``.
- Errors in Xero's shapes: ``{"ErrorNumber", "Type", "Message"}`` for a bad request, and the
  problem object ``{"Title", "Status", "Detail"}`` for a missing, expired or unknown token (401)
  and a missing or unknown tenant (403).

Tests arrange data and time through the control methods (:meth:`FakeXero.bulk_load`,
:meth:`~FakeXero.update`, :meth:`~FakeXero.void`, :attr:`~FakeXero.clock`…) and compare a sink
with :meth:`FakeXero.ground_truth`.
"""

from __future__ import annotations

import base64
import bisect
import json
import math
import random
import re
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl

import attrs
import httpx

from incsync.testing import ManualClock
from incsync.testing.fakes._server import FakeVendor
from incsync.timestamps import UTC, ensure_utc, to_micros

__all__ = ["FakeXero", "XeroLimits", "XeroTokens"]

ACCESS_TOKEN_LIFETIME = timedelta(minutes=30)
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE_MS, _DAY_MS = 60_000, 86_400_000
_APP_MINUTE_LIMIT = 10_000
# One condition of a where filter: Field=="value" or Field!="value".
_CONDITION = re.compile(r'\s*([A-Za-z]\w*)\s*(==|!=)\s*"([^"]*)"\s*')


@attrs.frozen
class _Shape:
    """What sets one list apart: its id and status fields, and what it hides by default."""

    id_field: str
    status_field: str
    default_status: str
    hidden: frozenset[str]  # statuses listed only with includeArchived=true
    template: Mapping[str, Any]


_SHAPES = {
    "Invoices": _Shape(
        "InvoiceID",
        "Status",
        "AUTHORISED",
        frozenset(),
        {
            "Type": "ACCREC",
            "Reference": "",
            "Contact": {"ContactID": "a3675fc4-f8dd-4f03-ba5b-f1870566bcd7", "Name": "Rubble"},
            "LineAmountTypes": "Exclusive",
            "SubTotal": 100.0,
            "TotalTax": 15.0,
            "Total": 115.0,
            "AmountDue": 115.0,
            "CurrencyCode": "NZD",
        },
    ),
    "Contacts": _Shape(
        "ContactID",
        "ContactStatus",
        "ACTIVE",
        frozenset({"ARCHIVED", "GDPRREQUEST"}),
        {"Name": "Rubble", "EmailAddress": "", "IsSupplier": False, "IsCustomer": True},
    ),
}


@attrs.frozen
class XeroLimits:
    """The per-tenant rate limits the fake enforces; ``None`` switches one off.

    Args:
        per_minute: Calls per rolling minute (``X-Rate-Limit-Problem: minute``).
        per_day: Calls per rolling 24 hours (``X-Rate-Limit-Problem: day``).
    """

    per_minute: int | None = 60
    per_day: int | None = 5_000


@attrs.frozen
class XeroTokens:
    """Tokens as the token endpoint issues them, for tests that start with a valid access token.

    Args:
        access_token: The bearer token.
        refresh_token: The refresh token (single use: Xero rotates it on refresh).
        expires_at: When the access token expires.
    """

    access_token: str = attrs.field(repr=False)
    refresh_token: str = attrs.field(repr=False)
    expires_at: datetime


@attrs.define
class _Document:
    fields: dict[str, Any]
    updated_ms: int
    tie: float  # place among documents of the same millisecond, drawn again on every update
    stamps: dict[str, str] = attrs.field(init=False)  # rendered once per change, not per answer

    def __attrs_post_init__(self) -> None:
        self.stamps = _stamps(self.updated_ms)

    def touch(self, updated_ms: int, tie: float) -> None:
        self.updated_ms, self.tie, self.stamps = updated_ms, tie, _stamps(updated_ms)


class _RequestError(Exception):
    """Ends a request early with the answer Xero would give."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _dotnet(ms: int) -> str:
    return f"/Date({ms}+0000)/"


def _to_ms(moment: datetime, field: str) -> int:
    return to_micros(ensure_utc(moment, field)) // 1000


def _xero_json(
    status: int, body: object, headers: Mapping[str, str] | None = None
) -> httpx.Response:
    """Serialise as Xero does, with every slash escaped on the wire."""
    text = json.dumps(body, separators=(",", ":")).replace("/", "\\/")
    return httpx.Response(
        status,
        content=text.encode(),
        headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})},
    )


def _validation(message: str) -> _RequestError:
    body: dict[str, object] = {
        "ErrorNumber": 10,
        "Type": "ValidationException",
        "Message": message,
        "Elements": [],
    }
    return _RequestError(_xero_json(400, body))


def _problem(status: int, title: str, detail: str) -> _RequestError:
    body: dict[str, object] = {
        "Type": None,
        "Title": title,
        "Status": status,
        "Detail": detail,
        "Instance": str(uuid.uuid4()),
        "Extensions": {},
    }
    return _RequestError(_xero_json(status, body))


def _oauth_error(error: str) -> _RequestError:
    return _RequestError(httpx.Response(400, json={"error": error}))


def _stamps(ms: int) -> dict[str, str]:
    """The two forms of ``UpdatedDateUTC`` a document carries."""
    stamp = _EPOCH + timedelta(milliseconds=ms)
    return {"UpdatedDateUTC": _dotnet(ms), "UpdatedDateUTCString": f"{stamp:%Y-%m-%dT%H:%M:%S}Z"}


def _since_ms(value: str) -> int:
    """Read ``If-Modified-Since``: ISO 8601 (no zone means UTC) or an HTTP date; whole seconds."""
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            raise _validation(f"If-Modified-Since {value!r} is not a date") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _to_ms(moment, "If-Modified-Since") // 1000 * 1000


def _positive(params: httpx.QueryParams, name: str, default: int) -> int:
    value = params.get(name)
    if value is None:
        return default
    if not value.isdigit() or int(value) < 1:
        raise _validation(f"{name} must be a positive whole number, got {value!r}")
    return int(value)


class FakeXero(FakeVendor):
    """Xero's invoices (or contacts) and token endpoint for one organisation, held in memory.

    Args:
        clock: The fake's time, for ``UpdatedDateUTC``, token expiry and rate limits; share it
            with the code under test. Defaults to a clock at 2024-06-03T16:00Z.
        limits: The per-tenant rate limits; Xero's (60 a minute, 5,000 a day) when omitted.
        client_secret: The app's client secret (random when omitted).
        seed: Seeds generated ids and the order of ties, so a run can be repeated.
        endpoint: The list served: ``Invoices`` or ``Contacts``.
        refresh_token_grace: How long a spent refresh token keeps working (Xero: 30 minutes).

    Attributes:
        clock: Move it to move the fake's time.
        limits: Replace it (``XeroLimits(per_day=3)``) to change the limits.
        tenant_id: The connected organisation's id, expected in ``Xero-tenant-id``.
        client_id: The OAuth client id the token endpoint accepts.
        client_secret: The OAuth client secret the token endpoint accepts.
    """

    max_concurrent = 5

    def __init__(
        self,
        *,
        clock: ManualClock | None = None,
        limits: XeroLimits | None = None,
        client_secret: str | None = None,
        seed: int = 0,
        endpoint: str = "Invoices",
        refresh_token_grace: timedelta = timedelta(minutes=30),
    ) -> None:
        super().__init__()
        if endpoint not in _SHAPES:
            raise ValueError(f"the fake serves {sorted(_SHAPES)}, not {endpoint!r}")
        self.endpoint = endpoint
        self._shape = _SHAPES[endpoint]
        self.clock = clock or ManualClock(datetime(2024, 6, 3, 16, 0, tzinfo=UTC))
        self.limits = limits or XeroLimits()
        self._rng = random.Random(seed)
        self.tenant_id = str(uuid.UUID(int=self._rng.getrandbits(128)))
        self.client_id = uuid.UUID(int=self._rng.getrandbits(128)).hex.upper()
        self.client_secret = client_secret or base64.urlsafe_b64encode(
            self._rng.randbytes(36)
        ).decode("ascii")
        self._documents: dict[str, _Document] = {}
        self._order: list[tuple[int, float, str]] | None = None  # (updated_ms, tie, id), cached
        self._number = 0
        self.refresh_token_grace = refresh_token_grace
        # Each refresh token issued, with the time (ms) it stops working once spent; None: unspent.
        self._refresh_tokens: dict[str, int | None] = {}
        self._access_tokens: dict[str, int] = {}
        self._calls: deque[int] = deque()  # this tenant's counted calls in the last day

    # --- control: tokens ------------------------------------------------------------------------

    def grant_tokens(self) -> XeroTokens:
        """Return fresh tokens, as if a user had just connected the app."""
        with self._lock:
            return self._issue()

    def expire_access_tokens(self) -> None:
        """Expire every access token now; refresh tokens keep working."""
        with self._lock:
            now_ms = self._now_ms()
            for token, expires_ms in self._access_tokens.items():
                self._access_tokens[token] = min(expires_ms, now_ms)

    # --- control: data --------------------------------------------------------------------------

    def add(
        self,
        fields: Mapping[str, Any] | None = None,
        *,
        updated_at: datetime | None = None,
        status: str | None = None,
    ) -> str:
        """Create an invoice (or contact); return its id (``InvoiceID``, ``ContactID``).

        Args:
            fields: Fields to set over the generated ones (``Total``, ``Reference``…).
            updated_at: ``UpdatedDateUTC`` (default: the clock's time).
            status: Its ``Status`` (``ContactStatus``); ``AUTHORISED`` (``ACTIVE``) by default.
        """
        with self._lock:
            ms = self._now_ms() if updated_at is None else _to_ms(updated_at, "updated_at")
            shape = self._shape
            return self._insert(
                ms, {**(fields or {}), shape.status_field: status or shape.default_status}
            )

    def bulk_load(
        self,
        updated_at: Iterable[datetime],
        fields: Callable[[int], Mapping[str, Any]] | None = None,
    ) -> list[str]:
        """Create one document per timestamp (an organisation's history); return the ids in order.

        Args:
            updated_at: Each document's ``UpdatedDateUTC``; any number may share one.
            fields: Returns extra fields for the n-th document.
        """
        with self._lock:
            return [
                self._insert(_to_ms(moment, "updated_at"), dict(fields(n)) if fields else {})
                for n, moment in enumerate(updated_at)
            ]

    def update(
        self,
        invoice_id: str,
        fields: Mapping[str, Any] | None = None,
        *,
        updated_at: datetime | None = None,
    ) -> None:
        """Change a document's fields and stamp ``UpdatedDateUTC`` (default: the clock's time).

        Raises:
            KeyError: No document has this id.
        """
        with self._lock:
            document = self._documents[invoice_id]
            document.fields.update(fields or {})
            document.touch(
                self._now_ms() if updated_at is None else _to_ms(updated_at, "updated_at"),
                self._rng.random(),
            )
            self._order = None

    def void(self, invoice_id: str, *, at: datetime | None = None) -> None:
        """Void an approved invoice: it stays listed with ``Status: VOIDED`` and zero due."""
        self.update(invoice_id, {"Status": "VOIDED", "AmountDue": 0.0}, updated_at=at)

    def delete(self, invoice_id: str, *, at: datetime | None = None) -> None:
        """Delete a draft invoice: it stays listed with ``Status: DELETED``."""
        self.update(invoice_id, {"Status": "DELETED"}, updated_at=at)

    def archive(self, contact_id: str, *, at: datetime | None = None) -> None:
        """Archive a contact: ``ContactStatus: ARCHIVED``, listed only with ``includeArchived``."""
        self.update(contact_id, {self._shape.status_field: "ARCHIVED"}, updated_at=at)

    def live_count(self) -> int:
        """Return how many documents are not deleted, voided or archived."""
        with self._lock:
            field = self._shape.status_field
            gone = {"DELETED", "VOIDED", "ARCHIVED", "GDPRREQUEST"}
            return sum(1 for doc in self._documents.values() if doc.fields[field] not in gone)

    def ground_truth(self) -> dict[str, dict[str, Any]]:
        """Return every document as the API would render it now, by id (``InvoiceID``...).

        The values are exactly what a client decodes from the JSON (unescaped ``/Date(…)/``).
        """
        with self._lock:
            rendered = {key: self._render(doc) for key, doc in self._documents.items()}
            decoded: dict[str, dict[str, Any]] = json.loads(json.dumps(rendered))
            return decoded

    # --- HTTP -----------------------------------------------------------------------------------

    def now(self) -> datetime:
        """Return the fake's clock, which dates its answers."""
        return self.clock()

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` as Xero would."""
        try:
            return self._route(request)
        except _RequestError as error:
            return error.response

    def _route(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.rstrip("/")
        if path == "/connect/token" and request.method == "POST":
            return self._token(request)
        if path.lower() != f"/api.xro/2.0/{self.endpoint.lower()}":
            raise _problem(404, "Not Found", f"The resource {path} was not found")
        if request.method != "GET":
            raise _validation(f"The fake serves only GET {path}")
        now_ms = self._now_ms()
        self._authenticate(request, now_ms)
        headers = self._count_call(now_ms)
        try:
            response = self._list_page(request, now_ms)
        except _RequestError as error:
            response = error.response
        response.headers.update(headers)
        return response

    def _authenticate(self, request: httpx.Request, now_ms: int) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        expires_ms = self._access_tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if expires_ms is None:
            raise _problem(401, "Unauthorized", "AuthenticationUnsuccessful")
        if now_ms >= expires_ms:
            moment = _EPOCH + timedelta(milliseconds=expires_ms)
            raise _problem(
                401, "Unauthorized", f"TokenExpired: token expired at {moment:%m/%d/%Y %H:%M:%S}"
            )
        tenant = request.headers.get("xero-tenant-id")
        if tenant is None:
            raise _problem(403, "Forbidden", "AuthenticationUnsuccessful: Xero-tenant-id missing")
        if tenant.strip().lower() != self.tenant_id:
            raise _problem(403, "Forbidden", "AuthorizationUnsuccessful")

    def concurrency_refusal(self, request: httpx.Request) -> httpx.Response:
        """Answer a call over the 5 in progress per tenant: a 429 naming the limit, retry in 1 s."""
        headers = {"X-Rate-Limit-Problem": "concurrent", "Retry-After": "1"}
        return httpx.Response(429, text="", headers=headers)

    def _count_call(self, now_ms: int) -> dict[str, str]:
        """Count the call against the tenant's limits, or raise the 429 of the one it breaks."""
        calls, limits = self._calls, self.limits
        while calls and calls[0] <= now_ms - _DAY_MS:
            calls.popleft()
        minute_start = bisect.bisect_right(calls, now_ms - _MINUTE_MS)
        in_minute = len(calls) - minute_start
        checks = (
            ("minute", limits.per_minute, in_minute, calls[minute_start] + _MINUTE_MS
             if in_minute else now_ms),
            ("day", limits.per_day, len(calls), calls[0] + _DAY_MS if calls else now_ms),
        )  # fmt: skip
        broken = [(name, frees) for name, limit, used, frees in checks if used >= (limit or 2**62)]
        if not broken:
            calls.append(now_ms)
            in_minute += 1
        headers = {
            "X-MinLimit-Remaining": str(max(0, (limits.per_minute or 2**31) - in_minute)),
            "X-DayLimit-Remaining": str(max(0, (limits.per_day or 2**31) - len(calls))),
            "X-AppMinLimit-Remaining": str(_APP_MINUTE_LIMIT - min(in_minute, _APP_MINUTE_LIMIT)),
        }
        if not broken:
            return headers
        # The day limit outranks the minute one: waiting a minute would not help.
        problem, frees_ms = broken[-1]
        headers["X-Rate-Limit-Problem"] = problem
        headers["Retry-After"] = str(max(1, math.ceil((frees_ms - now_ms) / 1000)))
        raise _RequestError(httpx.Response(429, text="", headers=headers))

    def _list_page(self, request: httpx.Request, now_ms: int) -> httpx.Response:
        params = request.url.params
        since = request.headers.get("if-modified-since")
        since_ms = None if since is None else _since_ms(since)
        order = " ".join(params.get("order", "").split()).lower()
        if order not in {"", "updateddateutc", "updateddateutc asc", "updateddateutc desc"}:
            raise _validation(f"The fake orders only by UpdatedDateUTC, not {order!r}")
        ordered = self._sorted()
        start = 0 if since_ms is None else bisect.bisect_left(ordered, (since_ms,))
        matches = ordered[start:]
        shown = self._shown(params)
        if shown is not None:
            matches = [entry for entry in matches if shown(self._documents[entry[2]].fields)]
        if order.endswith("desc"):
            matches = matches[::-1]
        page_size = _positive(params, "pageSize", DEFAULT_PAGE_SIZE)
        if page_size > MAX_PAGE_SIZE:
            raise _validation(f"pageSize must be at most {MAX_PAGE_SIZE}, got {page_size}")
        page = _positive(params, "page", 0) if "page" in params else None
        chosen = matches if page is None else matches[(page - 1) * page_size : page * page_size]
        body: dict[str, Any] = {
            "Id": str(uuid.uuid4()),
            "Status": "OK",
            "ProviderName": "incsync fake",
            "DateTimeUTC": f"/Date({now_ms})/",
        }
        if page is not None:
            body["pagination"] = {
                "page": page,
                "pageSize": page_size,
                "pageCount": math.ceil(len(matches) / page_size),
                "itemCount": len(matches),
            }
        body[self.endpoint] = [self._render(self._documents[entry[2]]) for entry in chosen]
        return _xero_json(200, body)

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = dict(parse_qsl(request.content.decode("utf-8", "replace")))
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(encoded.strip(), validate=True).decode()
            except ValueError:
                raise _oauth_error("invalid_client") from None
            client_id, _, client_secret = decoded.partition(":")
        if (client_id, client_secret) != (self.client_id, self.client_secret):
            raise _oauth_error("invalid_client")
        if form.get("grant_type") != "refresh_token":
            raise _oauth_error("unsupported_grant_type")
        refresh_token = form.get("refresh_token", "")
        now_ms = self._now_ms()
        if refresh_token not in self._refresh_tokens:
            raise _oauth_error("invalid_grant")
        spent_until = self._refresh_tokens[refresh_token]
        if spent_until is not None and now_ms >= spent_until:
            raise _oauth_error("invalid_grant")
        if spent_until is None:  # rotated: the old one is spent, and works for the grace only
            grace_ms = self.refresh_token_grace // timedelta(milliseconds=1)
            self._refresh_tokens[refresh_token] = now_ms + grace_ms
        tokens = self._issue()
        body = {
            "id_token": None,
            "access_token": tokens.access_token,
            "expires_in": ACCESS_TOKEN_LIFETIME // timedelta(seconds=1),
            "token_type": "Bearer",
            "refresh_token": tokens.refresh_token,
            "scope": "offline_access accounting.transactions.read",
        }
        return httpx.Response(200, json={k: v for k, v in body.items() if v is not None})

    # --- internals ------------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return _to_ms(self.clock(), "clock()")

    def _issue(self) -> XeroTokens:
        access = base64.urlsafe_b64encode(self._rng.randbytes(48)).decode("ascii")
        refresh = self._rng.randbytes(32).hex()
        expires_ms = self._now_ms() + ACCESS_TOKEN_LIFETIME // timedelta(milliseconds=1)
        self._access_tokens[access] = expires_ms
        self._refresh_tokens[refresh] = None
        return XeroTokens(access, refresh, _EPOCH + timedelta(milliseconds=expires_ms))

    def _sorted(self) -> list[tuple[int, float, str]]:
        if self._order is None:
            self._order = sorted(
                (document.updated_ms, document.tie, document_id)
                for document_id, document in self._documents.items()
            )
        return self._order

    def _insert(self, updated_ms: int, fields: dict[str, Any]) -> str:
        document_id = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        self._number += 1
        shape = self._shape
        base: dict[str, Any] = {shape.id_field: document_id, **shape.template}
        if self.endpoint == "Invoices":
            base["InvoiceNumber"] = f"INV-{self._number:05d}"
            base["Date"] = _dotnet(updated_ms // _DAY_MS * _DAY_MS)
        else:
            base["Name"] = f"{base['Name']} {self._number}"
        base[shape.status_field] = shape.default_status
        self._documents[document_id] = _Document({**base, **fields}, updated_ms, self._rng.random())
        self._order = None
        return document_id

    def _shown(self, params: httpx.QueryParams) -> Callable[[Mapping[str, Any]], bool] | None:
        """What the list shows: hidden statuses only with ``includeArchived``, and ``where``.

        Raises:
            _RequestError: ``where`` is outside the conditions the fake reads (a 400).
        """
        conditions: list[tuple[str, bool, str]] = []
        where = params.get("where")
        if where:
            for part in re.split(r"\s+AND\s+|&&", where, flags=re.IGNORECASE):
                match = _CONDITION.fullmatch(part)
                if match is None:
                    raise _validation(
                        f'The fake reads where conditions like Status!="X", not {part!r}'
                    )
                conditions.append((match[1], match[2] == "==", match[3]))
        hidden = (
            set() if params.get("includeArchived", "").lower() == "true" else self._shape.hidden
        )
        if not conditions and not hidden:
            return None
        field = self._shape.status_field

        def shown(fields: Mapping[str, Any]) -> bool:
            if fields.get(field) in hidden:
                return False
            return all((fields.get(name) == value) == equal for name, equal, value in conditions)

        return shown

    def _render(self, document: _Document) -> dict[str, Any]:
        return {**document.fields, **document.stamps}
