"""Thousands of small fake vendor accounts behind one loopback server per vendor, for bench.round.

A real deployment syncs many accounts of each vendor, and each account is its own backend. One
HTTP server thread per account cannot scale to ten thousand, so :class:`AccountRouter` serves all
accounts of one vendor from one server and routes each request by a path prefix:
``/acct/<n>/<vendor path>`` reaches account ``n`` with the prefix stripped. Each account is a full
testing fake (:class:`FakeHubSpot`, :class:`FakeQuickBooks`) with its own data, tokens and lock,
so every source reads a distinct slice with the vendor's real paging, filters and deletes.

A :class:`World` holds one vendor's accounts: it builds them, makes the changes a round must
bring, builds a source's connector, and compares a source's sink with its account's ground truth.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

import httpx

from incsync.connectors.auth import BearerToken
from incsync.connectors.http import HttpConnector, HttpOptions
from incsync.records import Transaction
from incsync.testing import ManualClock
from incsync.testing.fakes._server import FakeVendor
from incsync.testing.fakes.hubspot import FakeHubSpot, HubSpotLimits
from incsync.testing.fakes.quickbooks import FakeQuickBooks, QuickBooksTokens
from incsync.vendors.hubspot import HubSpotConnector
from incsync.vendors.quickbooks import QuickBooksConnector, quickbooks_auth

__all__ = [
    "PREFIX",
    "AccountRouter",
    "HubSpotWorld",
    "QuickBooksWorld",
    "World",
    "changes_for",
    "no_sleep",
]

UTC = timezone.utc
PREFIX = "/acct/"
_PREFIX_BYTES = PREFIX.encode()
ENTITY = "Invoice"
_MS = timedelta(milliseconds=1)


def no_sleep(_seconds: float) -> None:
    """Never wait: nothing is throttled here, and a retry should not hide in a wait."""


def changes_for(n: int) -> tuple[int, bool]:
    """Return how many records of account ``n`` the round updates (2 or 3) and if it deletes one."""
    return 2 + n % 2, n % 4 == 0


class AccountRouter(FakeVendor):
    """One vendor's fake accounts behind one server: ``/acct/<n>/...`` goes to account ``n``.

    Accounts are independent backends, each with its own lock and request log, so the router
    takes no lock of its own and records nothing; it only sums the time its accounts spend
    answering (the fake server's share of the HTTP time).
    """

    def __init__(self, accounts: Sequence[FakeVendor]) -> None:
        super().__init__()
        self.accounts = list(accounts)
        self.handled_seconds = 0.0
        self.handled = 0
        self._tally = threading.Lock()

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Strip the account prefix and let that account answer."""
        raw = request.url.raw_path
        number, _, rest = raw[len(_PREFIX_BYTES) :].partition(b"/")
        if not raw.startswith(_PREFIX_BYTES) or not number.isdigit():
            return httpx.Response(404, json={"message": "no account prefix /acct/<n>/"})
        index = int(number)
        if index >= len(self.accounts):
            return httpx.Response(404, json={"message": f"no account {index}"})
        inner = httpx.Request(
            request.method,
            request.url.copy_with(raw_path=b"/" + rest),
            headers=request.headers,
            content=request.content,
        )
        return self.accounts[index].dispatch(inner)

    def dispatch(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` from its account, timing it; no router-wide lock, no recording."""
        began = time.perf_counter()
        try:
            return self.handle(request)
        finally:
            spent = time.perf_counter() - began
            with self._tally:
                self.handled_seconds += spent
                self.handled += 1


class World(Protocol):
    """One vendor's accounts, their changes, connectors and ground truth."""

    name: str
    router: AccountRouter

    def change(self, n: int, *, deletes: bool = True) -> int:
        """Make account ``n``'s changes for the round; return how many records they touch.

        Without ``deletes`` only updates are made, so that rounds can repeat them.
        """
        ...

    def advance(self) -> None:
        """Move the vendor's clock past the changes, as time passes before the next round."""
        ...

    def connector(self, n: int, base_url: str, transport: httpx.BaseTransport) -> HttpConnector:
        """Build account ``n``'s connector on ``base_url`` (the router's, prefix included)."""
        ...

    def mismatches(self, n: int, held: Sequence[Transaction]) -> list[str]:
        """Compare a source's transactions with its account's ground truth; return the problems."""
        ...


def _by_id(held: Sequence[Transaction]) -> dict[str, Transaction]:
    return {transaction.record.id: transaction for transaction in held}


@dataclass
class HubSpotWorld:
    """HubSpot portals with ``records`` deals each; archived deals come as tombstones."""

    count: int
    records: int
    name: str = "hubspot"
    clock: ManualClock = field(
        default_factory=lambda: ManualClock(datetime(2024, 9, 13, 20, 30, tzinfo=UTC))
    )
    ids: list[list[str]] = field(default_factory=list)
    router: AccountRouter = field(init=False)

    def __post_init__(self) -> None:
        off = HubSpotLimits(search_per_second=None, per_ten_seconds=None, daily=None)
        history = [self.clock() - timedelta(days=1, minutes=i) for i in range(self.records)]
        fakes: list[FakeHubSpot] = []
        for n in range(self.count):
            fake = FakeHubSpot(clock=self.clock, index_lag=timedelta(0), limits=off, seed=n)
            self.ids.append(fake.load("deals", history, {"dealname": f"deal {n}", "amount": "10"}))
            fakes.append(fake)
        self.router = AccountRouter(fakes)

    def _fake(self, n: int) -> FakeHubSpot:
        fake = self.router.accounts[n]
        assert isinstance(fake, FakeHubSpot)
        return fake

    def change(self, n: int, *, deletes: bool = True) -> int:
        """Update 2-3 deals (distinct milliseconds) and archive one for every fourth portal."""
        fake, now = self._fake(n), self.clock()
        updates, delete = changes_for(n)
        delete = delete and deletes
        for j in range(updates):
            fake.update(
                "deals", self.ids[n][j], {"amount": str(100 + j)}, modified_at=now + j * _MS
            )
        if delete:
            fake.archive("deals", self.ids[n][-1])
        return updates + delete

    def advance(self) -> None:
        """Move the portals' clock a minute on."""
        self.clock.advance(timedelta(minutes=1))

    def connector(self, n: int, base_url: str, transport: httpx.BaseTransport) -> HttpConnector:
        """Build a deals connector that also reads archived deals."""
        return HubSpotConnector(
            base_url,
            auth=BearerToken(self._fake(n).private_app_token),
            include_archived=True,
            options=HttpOptions(transport=transport, sleep=no_sleep, clock=self.clock),
        )

    def mismatches(self, n: int, held: Sequence[Transaction]) -> list[str]:
        """Live deals hold the portal's latest properties; archived ones are tombstones."""
        fake, by_id = self._fake(n), _by_id(held)
        truth = fake.ground_truth("deals")
        live = {key: t.record for key, t in by_id.items() if not t.record.deleted}
        problems: list[str] = []
        if live.keys() != truth.keys():
            problems.append(f"live ids differ: {sorted(live.keys() ^ truth.keys())}")
        for object_id in live.keys() & truth.keys():
            properties = live[object_id].payload["properties"]
            shown = {k: v for k, v in properties.items() if v is not None}
            if shown != truth[object_id]:
                problems.append(f"deal {object_id}: {shown} != {truth[object_id]}")
        gone = {key for key, t in by_id.items() if t.record.deleted}
        if gone != set(fake.archived("deals")):
            problems.append(
                f"tombstones {sorted(gone)} != archived {sorted(fake.archived('deals'))}"
            )
        return problems


@dataclass
class QuickBooksWorld:
    """QuickBooks companies with ``records`` invoices each; deletes are read from CDC."""

    count: int
    records: int
    name: str = "quickbooks"
    clock: ManualClock = field(
        default_factory=lambda: ManualClock(datetime(2024, 6, 3, 16, 0, tzinfo=UTC))
    )
    ids: list[list[str]] = field(default_factory=list)
    tokens: list[QuickBooksTokens] = field(default_factory=list)
    router: AccountRouter = field(init=False)

    def __post_init__(self) -> None:
        history = [self.clock() - timedelta(days=1, minutes=i) for i in range(self.records)]
        fakes: list[FakeQuickBooks] = []
        for n in range(self.count):
            fake = FakeQuickBooks(
                realm_id=str(1_000_000 + n),
                clock=self.clock,
                requests_per_minute=10**9,
                access_token_lifetime=timedelta(days=7),
                seed=n,
            )
            self.ids.append(fake.bulk_load(ENTITY, history, fields=_invoice_fields(n)))
            self.tokens.append(fake.grant_tokens())
            fakes.append(fake)
        self.router = AccountRouter(fakes)

    def _fake(self, n: int) -> FakeQuickBooks:
        fake = self.router.accounts[n]
        assert isinstance(fake, FakeQuickBooks)
        return fake

    def change(self, n: int, *, deletes: bool = True) -> int:
        """Update 2-3 invoices (distinct seconds) and delete one for every fourth company."""
        fake, now = self._fake(n), self.clock()
        updates, delete = changes_for(n)
        delete = delete and deletes
        for j in range(updates):
            fake.update(
                ENTITY,
                self.ids[n][j],
                {"TotalAmt": 100.0 + j},
                updated_at=now + timedelta(seconds=j),
            )
        if delete:
            fake.delete(ENTITY, self.ids[n][-1], deleted_at=now + timedelta(seconds=updates))
        return updates + delete

    def advance(self) -> None:
        """Move the companies' clock a minute on."""
        self.clock.advance(timedelta(minutes=1))

    def connector(self, n: int, base_url: str, transport: httpx.BaseTransport) -> HttpConnector:
        """Build an invoice connector that also reads deletes, with the company's stored tokens."""
        fake, tokens = self._fake(n), self.tokens[n]
        auth = quickbooks_auth(
            fake.client_id,
            fake.client_secret,
            tokens.refresh_token,
            token_url=f"{base_url}/oauth2/v1/tokens/bearer",
            access_token=tokens.access_token,
            expires_at=tokens.access_token_expires_at,
            clock=self.clock,
        )
        return QuickBooksConnector(
            fake.realm_id,
            ENTITY,
            auth=auth,
            base_url=base_url,
            include_deletes=True,
            options=HttpOptions(transport=transport, sleep=no_sleep, clock=self.clock),
        )

    def mismatches(self, n: int, held: Sequence[Transaction]) -> list[str]:
        """Live invoices hold the company's latest entity exactly; deleted ones are tombstones."""
        fake, by_id = self._fake(n), _by_id(held)
        truth = {entity["Id"]: entity for entity in fake.entities(ENTITY)}
        deleted = fake.deleted_ids(ENTITY)
        problems: list[str] = []
        if set(by_id) != set(truth) | deleted:
            problems.append(f"ids differ: {sorted(set(by_id) ^ (set(truth) | deleted))}")
        for record_id, entity in truth.items():
            held_one = by_id.get(record_id)
            if held_one is not None and dict(held_one.record.payload) != entity:
                problems.append(f"invoice {record_id}: {held_one.record.payload} != {entity}")
        tombstones = {key for key, t in by_id.items() if t.record.deleted}
        if tombstones != deleted:
            problems.append(f"tombstones {sorted(tombstones)} != deleted {sorted(deleted)}")
        return problems


def _invoice_fields(n: int) -> Callable[[int], dict[str, Any]]:
    def fields(i: int) -> dict[str, Any]:
        return {"DocNumber": f"{n}-{i}", "TotalAmt": float(i), "CustomerRef": {"value": str(n)}}

    return fields
