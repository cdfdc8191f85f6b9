"""A fake of Stripe's v1 API for invoices, charges and events, keeping Stripe's hard edges.

What it serves, behind a secret key sent as a bearer token (or as the basic-auth user name):

- ``GET /v1/invoices`` and ``GET /v1/charges``: newest first (``created`` descending; objects
  created in the same second in reverse creation order), ``limit`` 1-100 (default 10),
  ``starting_after`` / ``ending_before`` object ids, ``has_more``, and ``created`` as an exact
  second or ``created[gt|gte|lt|lte]``. There is no filter on updates: objects carry no update
  time. A ``starting_after`` / ``ending_before`` id that no longer exists (a deleted draft
  invoice) is a 400 ``resource_missing``. Deleted invoices are gone from the list.
- ``GET /v1/events``: the same paging and ``created`` filters over the event log, filtered by
  ``type`` (one name, ``*`` as a wildcard) or ``types[]`` (up to 20 exact names). Only the last
  30 days are kept. Every mutation through the control methods emits Stripe's events, each with a
  snapshot of the object in ``data.object`` (and ``data.previous_attributes`` on updates).
- 401 with Stripe's error body for a missing, unknown or revoked key; a revoked key reads
  ``Expired API Key provided``. Keys are shown masked in error bodies, as Stripe does.
- Faults queued with :meth:`FakeStripe.fail_next`: 429 ``rate_limit`` with ``Retry-After``, 5xx
  ``api_error``, each with an optional ``Stripe-Should-Retry`` header.
- Stripe's rate limits, when given, on the fake's clock: more than ``reads_per_second`` reads
  in one second (live mode: 100), or more than ``endpoint_reads_per_second`` to one endpoint
  (each list, and the events, are one: 25 unless Stripe documents otherwise), is a 429
  ``rate_limit`` (no ``Retry-After``: Stripe promises none).

Tests arrange data and time through the control methods (:meth:`FakeStripe.create_invoice`,
:meth:`~FakeStripe.load`, :attr:`~FakeStripe.clock`...) and compare a sink with
:meth:`~FakeStripe.ground_truth` and :meth:`~FakeStripe.deleted`.
"""

from __future__ import annotations

import base64
import copy
import fnmatch
import random
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import httpx

from incsync.testing import ManualClock
from incsync.testing.fakes._server import FakeVendor
from incsync.testing.fakes._stripe_list import (
    LIST_LIMIT_MAX,
    Entry,
    Listing,
    RequestError,
    error_response,
    invalid,
    list_page,
)
from incsync.timestamps import UTC, ensure_utc

__all__ = [
    "ENDPOINT_READS_PER_SECOND",
    "EVENT_RETENTION",
    "LIST_LIMIT_MAX",
    "LIVE_READS_PER_SECOND",
    "RESOURCES",
    "FakeStripe",
]

EVENT_RETENTION = timedelta(days=30)
"""How long events can be listed after they happened."""
RESOURCES = {"invoices": ("invoice", "in"), "charges": ("charge", "ch")}
"""Each served list endpoint, with its ``object`` name and id prefix."""

_TYPES_MAX = 20
_API_VERSION = "2024-06-20"


def _mask(key: str) -> str:
    prefix = key[:8] if key.startswith(("sk_test_", "sk_live_")) else key[:3]
    return f"{prefix}{'*' * max(0, len(key) - len(prefix) - 4)}{key[-4:]}"


LIVE_READS_PER_SECOND = 100
"""Stripe's basic rate limit in live mode: read operations per second per account."""

ENDPOINT_READS_PER_SECOND = 25
"""Stripe's limit on each endpoint unless documented otherwise, live or sandbox: requests per
second per account to one API operation (``GET /v1/invoices``, ``GET /v1/events``...)."""

_RATE_LIMITED = {
    "message": "Request rate limit exceeded",
    "type": "invalid_request_error",
    "code": "rate_limit",
}


def _seconds(moment: datetime, field: str) -> int:
    return int(ensure_utc(moment, field).timestamp())


class FakeStripe(FakeVendor):
    """Stripe's invoices, charges and events endpoints, held in memory.

    Args:
        clock: The fake's time, for ``created`` stamps and event retention; share it with the code
            under test. Defaults to a clock at 2024-06-01T12:00Z.
        seed: Seeds generated ids, so a run can be repeated.
        reads_per_second: Reads allowed in one second of the fake's clock; ``None`` (the default:
            the default clock stands still) for no limit. Give :data:`LIVE_READS_PER_SECOND` and
            a :class:`~incsync.testing.fakes.RunningClock` to be throttled as in live mode.
        endpoint_reads_per_second: Reads of one endpoint allowed in one second of the fake's
            clock, counted apart for each path; ``None`` (the default) for no limit. Give
            :data:`ENDPOINT_READS_PER_SECOND` for Stripe's.

    Attributes:
        clock: Move it to move the fake's time.
        secret_key: The key the API accepts (``sk_test_...``).
    """

    def __init__(
        self,
        *,
        clock: ManualClock | None = None,
        seed: int = 0,
        reads_per_second: int | None = None,
        endpoint_reads_per_second: int | None = None,
    ) -> None:
        super().__init__()
        self.clock = clock or ManualClock(datetime(2024, 6, 1, 12, tzinfo=UTC))
        self.reads_per_second = reads_per_second
        self.endpoint_reads_per_second = endpoint_reads_per_second
        self._second = (0, 0)  # (clock second, reads in it)
        self._endpoint_seconds: dict[str, tuple[int, int]] = {}  # the same, by path
        self._rng = random.Random(seed)
        self.secret_key = f"sk_test_{self._token(40)}"
        self._revoked: set[str] = set()
        self._seq = 0
        self._objects = {resource: Listing() for resource in RESOURCES}
        self._deleted: dict[str, set[str]] = {resource: set() for resource in RESOURCES}
        self._events = Listing()

    # --- control: keys and faults ---------------------------------------------------------------

    def revoke_secret_key(self) -> None:
        """Revoke :attr:`secret_key` (rolled in the dashboard); requests with it get a 401."""
        with self._lock:
            self._revoked.add(self.secret_key)

    def fail_next(
        self,
        count: int,
        status: int = 429,
        *,
        retry_after: float | None = None,
        should_retry: bool | None = None,
        path: str = "/v1/",
    ) -> None:
        """Answer the next ``count`` requests under ``path`` with an error instead.

        Args:
            count: How many requests fail.
            status: 429 answers ``rate_limit``; any other status answers ``api_error``.
            retry_after: Seconds for a ``Retry-After`` header, when given.
            should_retry: The ``Stripe-Should-Retry`` header, when given.
            path: Only requests whose path starts with this fail.
        """
        left = [count]
        headers: dict[str, str] = {}
        if retry_after is not None:
            headers["Retry-After"] = f"{retry_after:g}"
        if should_retry is not None:
            headers["Stripe-Should-Retry"] = "true" if should_retry else "false"
        if status == 429:
            body = _RATE_LIMITED
        else:
            body = {"message": "An unknown error occurred", "type": "api_error"}

        def fault(request: httpx.Request) -> httpx.Response | None:
            if left[0] <= 0 or not request.url.path.startswith(path):
                return None
            left[0] -= 1
            return httpx.Response(status, json={"error": body}, headers=headers)

        self.add_fault(fault)

    # --- control: data --------------------------------------------------------------------------

    def load(self, resource: str, created: Iterable[datetime]) -> list[str]:
        """Create one object per ``created`` time as history: no events are kept for them.

        As if they were made before the event log's 30 days; fast for tens of thousands.

        Returns:
            The new ids, in the order of ``created``.
        """
        with self._lock:
            entries = [
                self._new_entry(resource, _seconds(moment, "created"), {}) for moment in created
            ]
            self._objects[resource].extend_sorted(entries)
            return [entry.id for entry in entries]

    def create_invoice(
        self, *, amount_due: int = 1000, status: str = "draft", **fields: Any
    ) -> str:
        """Create an invoice now (``invoice.created``, plus ``invoice.finalized`` when open).

        Returns:
            The invoice id.
        """
        with self._lock:
            body = {"amount_due": amount_due, "amount_remaining": amount_due, "status": status}
            entry = self._new_entry("invoices", self._now(), {**body, **fields})
            self._objects["invoices"].add(entry)
            self._emit("invoice.created", entry.body)
            if status == "open":
                self._emit("invoice.finalized", entry.body)
            return entry.id

    def update_invoice(self, invoice_id: str, **fields: Any) -> None:
        """Change an invoice's fields (``invoice.updated``); its ``created`` stays.

        Raises:
            KeyError: No such invoice.
        """
        with self._lock:
            self._update("invoices", invoice_id, fields, ["invoice.updated"])

    def pay_invoice(self, invoice_id: str) -> None:
        """Mark an invoice paid (``invoice.updated``, ``.paid``, ``.payment_succeeded``).

        Raises:
            KeyError: No such invoice.
        """
        with self._lock:
            due = self._objects["invoices"].by_id[invoice_id].body["amount_due"]
            changes = {"status": "paid", "paid": True, "amount_paid": due, "amount_remaining": 0}
            types = ["invoice.updated", "invoice.paid", "invoice.payment_succeeded"]
            self._update("invoices", invoice_id, changes, types)

    def void_invoice(self, invoice_id: str) -> None:
        """Void an invoice: it stays listed with status ``void`` (``invoice.voided``).

        Raises:
            KeyError: No such invoice.
        """
        with self._lock:
            changes = {"status": "void", "amount_remaining": 0}
            self._update("invoices", invoice_id, changes, ["invoice.updated", "invoice.voided"])

    def delete_invoice(self, invoice_id: str) -> None:
        """Delete a draft invoice: gone from the list, ``invoice.deleted`` carries its last state.

        Raises:
            KeyError: No such invoice.
            ValueError: The invoice is not a draft (Stripe deletes drafts only).
        """
        with self._lock:
            entry = self._objects["invoices"].by_id[invoice_id]
            if entry.body.get("status") != "draft":
                raise ValueError("You can only delete draft invoices.")
            self._objects["invoices"].remove(invoice_id)
            self._deleted["invoices"].add(invoice_id)
            self._emit("invoice.deleted", entry.body)

    def create_charge(self, *, amount: int = 2000, **fields: Any) -> str:
        """Create a successful charge now (``charge.succeeded``).

        Returns:
            The charge id.
        """
        with self._lock:
            entry = self._new_entry("charges", self._now(), {"amount": amount, **fields})
            self._objects["charges"].add(entry)
            self._emit("charge.succeeded", entry.body)
            return entry.id

    def update_charge(self, charge_id: str, **fields: Any) -> None:
        """Change a charge's fields, ``metadata`` or ``description`` say (``charge.updated``).

        Raises:
            KeyError: No such charge.
        """
        with self._lock:
            self._update("charges", charge_id, fields, ["charge.updated"])

    def refund_charge(self, charge_id: str, amount: int | None = None) -> None:
        """Refund ``amount`` (all that is left by default) of a charge (``charge.refunded``).

        Raises:
            KeyError: No such charge.
        """
        with self._lock:
            body = self._objects["charges"].by_id[charge_id].body
            refunded = body["amount_refunded"] + (
                body["amount"] - body["amount_refunded"] if amount is None else amount
            )
            changes = {"amount_refunded": refunded, "refunded": refunded >= body["amount"]}
            self._update("charges", charge_id, changes, ["charge.refunded"])

    def corrupt(self, resource: str, object_id: str, **fields: Any) -> None:
        """Overwrite fields of an object as stored, without an event (to serve a broken record).

        Raises:
            KeyError: No such object.
        """
        with self._lock:
            self._objects[resource].by_id[object_id].body.update(fields)

    def ground_truth(self, resource: str) -> dict[str, dict[str, Any]]:
        """Return every existing object (voided invoices included) as Stripe shows it, by id."""
        with self._lock:
            return {e.id: copy.deepcopy(e.body) for e in self._objects[resource].entries}

    def deleted(self, resource: str) -> set[str]:
        """Return the ids of the deleted objects of ``resource``."""
        with self._lock:
            return set(self._deleted[resource])

    # --- HTTP -----------------------------------------------------------------------------------

    def now(self) -> datetime:
        """Return the fake's clock, which dates its answers."""
        return self.clock()

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` as Stripe's API would."""
        try:
            return self._route(request)
        except RequestError as error:
            return error.response

    def _route(self, request: httpx.Request) -> httpx.Response:
        self._authenticate(request)
        path = request.url.path.rstrip("/")
        if self._over_rate(path):
            return httpx.Response(429, json={"error": _RATE_LIMITED})
        if request.method != "GET":
            return error_response(
                405, f"The fake serves GET only, not {request.method}", "api_error"
            )
        if path == "/v1/events":
            return self._list_events(request.url.params)
        resource = path.removeprefix("/v1/")
        if resource in RESOURCES:
            what = RESOURCES[resource][0]
            return list_page(path, self._objects[resource], what, request.url.params, None)
        return error_response(
            404, f"Unrecognized request URL (GET: {path}).", "invalid_request_error"
        )

    def _over_rate(self, path: str) -> bool:
        """Count a read of ``path`` in the clock's second; return whether it is over a limit.

        A refused read counts against neither limit.
        """
        second = _seconds(self.clock(), "clock()")
        reads = self._second[1] if self._second[0] == second else 0
        at, of_path = self._endpoint_seconds.get(path, (second, 0))
        of_path = of_path if at == second else 0
        account, endpoint = self.reads_per_second, self.endpoint_reads_per_second
        if (account is not None and reads >= account) or (
            endpoint is not None and of_path >= endpoint
        ):
            return True
        self._second = (second, reads + 1)
        self._endpoint_seconds[path] = (second, of_path + 1)
        return False

    def _authenticate(self, request: httpx.Request) -> None:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        key = credential.strip()
        if scheme.lower() == "basic":
            key = base64.b64decode(key + "==").decode("utf-8", "replace").partition(":")[0]
        elif scheme.lower() != "bearer":
            key = ""
        if not key:
            message = (
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET"
                "_KEY')."
            )
            raise RequestError(error_response(401, message, "invalid_request_error"))
        if key in self._revoked:
            message = f"Expired API Key provided: {_mask(key)}"
            raise RequestError(
                error_response(401, message, "invalid_request_error", code="api_key_expired")
            )
        if key != self.secret_key:
            message = f"Invalid API Key provided: {_mask(key)}"
            raise RequestError(error_response(401, message, "invalid_request_error"))

    def _list_events(self, params: httpx.QueryParams) -> httpx.Response:
        horizon = self._now() - int(EVENT_RETENTION.total_seconds())
        kept = self._events
        while kept.entries and kept.entries[0].created < horizon:
            kept.remove(kept.entries[0].id)  # expired: gone for good, as a cursor too
        single, many = params.get("type"), params.get_list("types[]")
        if single is not None and many:
            raise invalid("You may pass either 'type' or 'types', but not both.", "types")
        if len(many) > _TYPES_MAX:
            raise invalid(f"You may pass at most {_TYPES_MAX} event types.", "types")

        def wanted(entry: Entry) -> bool:
            if single is not None:
                return fnmatch.fnmatchcase(entry.body["type"], single)
            return not many or entry.body["type"] in many

        return list_page("/v1/events", kept, "event", params, wanted)

    # --- internals ------------------------------------------------------------------------------

    def _now(self) -> int:
        return _seconds(self.clock(), "clock()")

    def _token(self, length: int) -> str:
        alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
        return "".join(self._rng.choice(alphabet) for _ in range(length))

    def _new_entry(self, resource: str, created: int, fields: Mapping[str, Any]) -> Entry:
        what, prefix = RESOURCES[resource]
        self._seq += 1
        object_id = f"{prefix}_{self._token(24)}"
        if what == "invoice":
            body: dict[str, Any] = {
                "id": object_id,
                "object": "invoice",
                "amount_due": 1000,
                "amount_paid": 0,
                "amount_remaining": 1000,
                "created": created,
                "currency": "usd",
                "customer": "cus_QXg1o8vcGmoR32",
                "livemode": False,
                "metadata": {},
                "paid": False,
                "status": "draft",
            }
        else:
            body = {
                "id": object_id,
                "object": "charge",
                "amount": 2000,
                "amount_captured": 2000,
                "amount_refunded": 0,
                "captured": True,
                "created": created,
                "currency": "usd",
                "customer": None,
                "livemode": False,
                "metadata": {},
                "paid": True,
                "refunded": False,
                "status": "succeeded",
            }
        body.update(fields)
        if what == "charge":
            body["amount_captured"] = body["amount"]
        return Entry(object_id, created, self._seq, body)

    def _update(
        self, resource: str, object_id: str, changes: Mapping[str, Any], types: list[str]
    ) -> None:
        body = self._objects[resource].by_id[object_id].body
        previous = {name: copy.deepcopy(body.get(name)) for name in changes}
        body.update(copy.deepcopy(dict(changes)))
        for event_type in types:
            self._emit(event_type, body, previous)

    def _emit(
        self,
        event_type: str,
        snapshot: Mapping[str, Any],
        previous: Mapping[str, Any] | None = None,
    ) -> None:
        self._seq += 1
        data: dict[str, Any] = {"object": copy.deepcopy(dict(snapshot))}
        if previous is not None and event_type.endswith(".updated"):
            data["previous_attributes"] = dict(previous)
        created = self._now()
        event_id = f"evt_{self._token(24)}"
        body = {
            "id": event_id,
            "object": "event",
            "api_version": _API_VERSION,
            "created": created,
            "data": data,
            "livemode": False,
            "pending_webhooks": 0,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
        self._events.add(Entry(event_id, created, self._seq, body))
