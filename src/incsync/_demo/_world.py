"""The demo's world: fake vendors with realistic data on one clock, and the real connectors to them.

Everything here runs on one :class:`~incsync.testing.ManualClock`, shared by the fakes, the
connectors (token expiry, retry waits) and the engine, so an hour of cycles takes no real time
and every status is computed at the same moment the data was written against. Waits a connector
asks for (backoff, throttles) move that clock instead of sleeping.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from incsync.connectors.auth import BearerToken, TokenSet
from incsync.connectors.http import HttpOptions
from incsync.errors import ConfigurationError
from incsync.testing import ManualClock
from incsync.testing.fakes import FakeHubSpot, FakeQuickBooks
from incsync.vendors.hubspot import HubSpotConnector
from incsync.vendors.quickbooks import QuickBooksConnector, quickbooks_auth

__all__ = [
    "ACCOUNT_OWNERS",
    "DEAL_PROPERTIES",
    "INVOICE",
    "SALESPEOPLE",
    "Connectors",
    "Credentials",
    "Fakes",
    "Scale",
    "close_date",
    "connect",
    "hubspot_connector",
    "invoice_fields",
    "load_acme_hubspot",
    "load_acme_quickbooks",
    "load_fakes",
    "load_globex_quickbooks",
    "load_initech_hubspot",
    "quickbooks_connector",
    "sleeping_on",
    "spread_times",
]

INVOICE = "Invoice"
"""The QuickBooks entity the demo syncs."""

_HISTORY = timedelta(days=60)
_SECOND = timedelta(seconds=1)
_CUSTOMERS = (
    "Amy's Bird Sanctuary",
    "Bill's Windsurf Shop",
    "Cool Cars",
    "Diego Rodriguez",
    "Dukes Basketball Camp",
    "Freeman Sporting Goods",
    "Geeta Kalapatapu",
    "Jeff's Jalopies",
    "Kookies by Kathy",
    "Mark Cho",
    "Paulsen Medical Supplies",
    "Red Rock Diner",
    "Rondonuwu Fruit and Vegi",
    "Sonnenschein Family Store",
    "Sushi by Katsuyuki",
    "Travis Waldron",
)
_PRODUCTS = ("Design", "Installation", "Maintenance", "Pest Control", "Rocks", "Sprinklers")
_STAGES = ("appointmentscheduled", "qualifiedtobuy", "presentationscheduled", "closedwon")
_WON = "closedwon"

SALESPEOPLE: Mapping[str, str] = {
    "71340101": "Maya Okafor",
    "71340102": "Jonas Weber",
    "71340103": "Priya Raman",
    "71340104": "Luis Ortega",
}
"""Acme's salespeople by their HubSpot owner id: the host's own table of users."""

ACCOUNT_OWNERS: Mapping[str, str] = {
    str(number + 1): list(SALESPEOPLE.values())[number % len(SALESPEOPLE)]
    for number in range(len(_CUSTOMERS))
}
"""Who owns each QuickBooks customer's account, by customer id: the host's own table."""

DEAL_PROPERTIES = ("dealname", "amount", "closedate", "pipeline", "dealstage", "hubspot_owner_id")
"""The deal properties the demo reads: HubSpot's defaults and the owner, for commissions."""


def _scaled(value: int, factor: float, minimum: int) -> int:
    return max(minimum, round(value * factor))


@attrs.frozen
class Scale:
    """How much data the demo makes: the default is the size of a busy small business.

    Raises:
        ConfigurationError: A count is below 1, or a burst is larger than its source.

    Args:
        invoices: Invoices in the main QuickBooks company.
        invoice_burst: Of those, how many an import stamped with one second (more than a page).
        deals: Deals in the HubSpot portal.
        deal_burst: Of those, how many an import stamped with one millisecond.
        old_invoices: Invoices in the second QuickBooks company, none changed for weeks.
        page_size: Records per QuickBooks query page.
        changes: Records updated at each source between the full and the incremental cycle; a
            share of that many more are voided, deleted or created in one burst.
    """

    invoices: int = 20_000
    invoice_burst: int = 1_500
    deals: int = 20_000
    deal_burst: int = 2_500
    old_invoices: int = 2_000
    page_size: int = 1_000
    changes: int = 120

    def __attrs_post_init__(self) -> None:
        counts = attrs.asdict(self)
        if min(counts.values()) < 1:
            raise ConfigurationError(f"every count of a demo scale must be at least 1: {counts}")
        if self.invoice_burst > self.invoices or self.deal_burst > self.deals:
            raise ConfigurationError("a burst cannot hold more records than the whole source")

    @classmethod
    def of(cls, factor: float) -> Scale:
        """Return the default scale multiplied by ``factor`` (bursts still span several pages).

        Raises:
            ConfigurationError: ``factor`` is not positive.
        """
        if not (math.isfinite(factor) and factor > 0):
            raise ConfigurationError(f"the scale must be a positive number, got {factor!r}")
        default = cls()
        page_size = _scaled(default.page_size, factor, 20)
        return cls(
            invoices=_scaled(default.invoices, factor, 100),
            invoice_burst=_scaled(default.invoice_burst, factor, page_size + 5),
            deals=_scaled(default.deals, factor, 500),
            # A HubSpot search page holds 200: a burst past it is read by id.
            deal_burst=_scaled(default.deal_burst, factor, 250),
            old_invoices=_scaled(default.old_invoices, factor, 50),
            page_size=min(page_size, 1_000),
            changes=_scaled(default.changes, factor, 12),
        )


@attrs.define
class Credentials:
    """The host's credential vault: keeps the refresh token each OAuth refresh hands over.

    It also remembers every credential value it ever held, so the demo can show that none of
    them reached the database or the log.
    """

    seen: set[str] = attrs.field(factory=set)
    refreshes: int = 0
    rotations: int = 0

    def keep(self, *values: str) -> None:
        """Remember credential values the host was given."""
        self.seen.update(value for value in values if value)

    def on_refresh(self, tokens: TokenSet) -> None:
        """Store the tokens of a refresh, as a host must (QuickBooks rotates refresh tokens)."""
        self.refreshes += 1
        self.rotations += tokens.rotated
        self.keep(tokens.access_token, tokens.refresh_token)


def sleeping_on(clock: ManualClock) -> Callable[[float], None]:
    """Return a sleep that moves ``clock`` instead of waiting: backoffs cost no real time."""

    def sleep(seconds: float) -> None:
        clock.advance(timedelta(seconds=seconds))

    return sleep


def spread_times(
    rng: random.Random, count: int, start: datetime, span: timedelta, step: timedelta
) -> list[datetime]:
    """Return ``count`` random times in ``[start, start + span)``, whole multiples of ``step``.

    Args:
        rng: Draws the times.
        count: How many.
        start: The earliest.
        span: How far after ``start`` they may fall.
        step: Their precision: a second for QuickBooks, a millisecond for HubSpot.
    """
    slots = span // step
    return [start + rng.randrange(slots) * step for _ in range(count)]


def invoice_fields(
    times: Sequence[datetime], rng: random.Random, numbering: int
) -> Callable[[int], dict[str, Any]]:
    """Return what builds the n-th invoice's properties, as QuickBooks writes an invoice.

    Args:
        times: Each invoice's time, for its transaction and due dates.
        rng: Draws customers, amounts and products.
        numbering: The first invoice's document number.
    """

    def fields(index: int) -> dict[str, Any]:
        customer = rng.randrange(len(_CUSTOMERS))
        amount = round(rng.uniform(40, 12_000), 2)
        paid = rng.random() < 0.6
        issued = times[index].date()
        return {
            "DocNumber": str(numbering + index),
            "TxnDate": issued.isoformat(),
            "DueDate": (issued + timedelta(days=30)).isoformat(),
            "CustomerRef": {"value": str(customer + 1), "name": _CUSTOMERS[customer]},
            "CurrencyRef": {"value": "USD", "name": "United States Dollar"},
            "TotalAmt": amount,
            "Balance": 0 if paid else amount,
            "Line": [
                {
                    "Id": "1",
                    "LineNum": 1,
                    "Amount": amount,
                    "DetailType": "SalesItemLineDetail",
                    "Description": rng.choice(_PRODUCTS),
                }
            ],
        }

    return fields


def _quickbooks_company(
    clock: ManualClock, realm_id: str, times: list[datetime], rng: random.Random, numbering: int
) -> tuple[FakeQuickBooks, list[str]]:
    # Each company its own client secret, as each would be connected by its own consent.
    fake = FakeQuickBooks(
        realm_id=realm_id,
        clock=clock,
        client_secret=f"demo-secret-{rng.getrandbits(64):016x}",
        seed=rng.randrange(1 << 30),
    )
    times.sort()  # older invoices have lower ids, as in a real company
    ids = fake.bulk_load(INVOICE, times, fields=invoice_fields(times, rng, numbering))
    return fake, ids


def load_acme_quickbooks(
    clock: ManualClock, scale: Scale, rng: random.Random
) -> tuple[FakeQuickBooks, list[str]]:
    """Return a company with ``scale.invoices`` invoices from the last 60 days, and their ids.

    One batch import stamped ``scale.invoice_burst`` of them with the same second.
    """
    now = clock()
    times = spread_times(
        rng, scale.invoices - scale.invoice_burst, now - _HISTORY, _HISTORY, _SECOND
    )
    times += [(now - timedelta(days=21)).replace(microsecond=0)] * scale.invoice_burst
    return _quickbooks_company(clock, "9130357766112233", times, rng, 1001)


def load_globex_quickbooks(
    clock: ManualClock, scale: Scale, rng: random.Random
) -> tuple[FakeQuickBooks, list[str]]:
    """Return a company whose ``scale.old_invoices`` invoices last changed 5 to 11 weeks ago."""
    start = clock() - timedelta(weeks=11)
    times = spread_times(rng, scale.old_invoices, start, timedelta(weeks=6), _SECOND)
    return _quickbooks_company(clock, "4620816365178230", times, rng, 5001)


def load_acme_hubspot(
    clock: ManualClock, scale: Scale, rng: random.Random
) -> tuple[FakeHubSpot, list[str]]:
    """Return a portal with ``scale.deals`` deals modified in the last 60 days, and their ids.

    One import stamped ``scale.deal_burst`` of them with the same millisecond.
    """
    fake = FakeHubSpot(clock=clock, seed=rng.randrange(1 << 30))
    now = clock()
    millisecond = timedelta(milliseconds=1)
    times = spread_times(rng, scale.deals - scale.deal_burst, now - _HISTORY, _HISTORY, millisecond)
    times += [now - timedelta(days=14, milliseconds=-417)] * scale.deal_burst
    times.sort()
    ids: list[str] = []
    owners = list(SALESPEOPLE)
    for moment in times:
        customer = rng.choice(_CUSTOMERS)
        stage = rng.choice(_STAGES)
        # A won deal closed when it was last changed; an open one expects to close later.
        closes = moment if stage == _WON else moment + timedelta(days=rng.randrange(10, 90))
        properties = {
            "dealname": f"{customer} - {rng.choice(_PRODUCTS)}",
            "amount": str(rng.randrange(500, 250_000, 50)),
            "dealstage": stage,
            "pipeline": "default",
            "closedate": close_date(closes),
            "hubspot_owner_id": rng.choice(owners),
        }
        ids.extend(fake.load("deals", [moment], properties))
    return fake, ids


def close_date(moment: datetime) -> str:
    """Return a deal's close date as HubSpot writes it: midnight UTC of the day, milliseconds."""
    return moment.strftime("%Y-%m-%dT00:00:00.000Z")


def load_initech_hubspot(clock: ManualClock, scale: Scale, rng: random.Random) -> FakeHubSpot:
    """Return a portal of ``scale.old_invoices`` deals whose app token the host holds no more.

    Initech revoked the private-app token the host was given (an admin rotated it in HubSpot's
    settings), so the portal knows only its new token, which the host never got.
    """
    fake = FakeHubSpot(clock=clock, seed=rng.randrange(1 << 30))
    times = spread_times(rng, scale.old_invoices, clock() - _HISTORY, _HISTORY, _SECOND)
    fake.load("deals", sorted(times), {"dealname": "Initech - TPS reports", "amount": "900"})
    return fake


def quickbooks_connector(
    fake: FakeQuickBooks,
    base_url: str,
    *,
    clock: ManualClock,
    credentials: Credentials,
    page_size: int,
    rng: random.Random,
) -> QuickBooksConnector:
    """Return the real QuickBooks connector to ``fake`` over HTTP, reading deletes from CDC.

    The host holds only a refresh token (as after Intuit's consent screen), so the first request
    refreshes at the fake's token endpoint; every later refresh hands a rotated token to
    ``credentials``.
    """
    granted = fake.grant_tokens()
    credentials.keep(fake.client_secret, granted.refresh_token, granted.access_token)
    auth = quickbooks_auth(
        fake.client_id,
        fake.client_secret,
        granted.refresh_token,
        token_url=f"{base_url}/oauth2/v1/tokens/bearer",
        on_refresh=credentials.on_refresh,
        clock=clock,
    )
    return QuickBooksConnector(
        fake.realm_id,
        INVOICE,
        auth=auth,
        base_url=base_url,
        page_size=page_size,
        include_deletes=True,
        options=HttpOptions(sleep=sleeping_on(clock), clock=clock, random=rng.random),
    )


def hubspot_connector(
    fake: FakeHubSpot,
    base_url: str,
    *,
    clock: ManualClock,
    credentials: Credentials,
    rng: random.Random,
) -> HubSpotConnector:
    """Return the real HubSpot connector to ``fake`` over HTTP with a private-app token."""
    credentials.keep(fake.private_app_token)
    return HubSpotConnector(
        base_url,
        auth=BearerToken(fake.private_app_token),
        object_type="deals",
        properties=DEAL_PROPERTIES,
        include_archived=True,
        options=HttpOptions(sleep=sleeping_on(clock), clock=clock, random=rng.random),
    )


@attrs.frozen
class Fakes:
    """The four sources of the demo, with the ids of the records they started with.

    Args:
        quickbooks: Acme's QuickBooks company.
        invoice_ids: Its invoices' ids.
        hubspot: Acme's HubSpot portal.
        deal_ids: Its deals' ids.
        globex: Globex's QuickBooks company, where nothing changed for weeks.
        initech: Initech's HubSpot portal, which refuses the token the host holds.
    """

    quickbooks: FakeQuickBooks
    invoice_ids: list[str]
    hubspot: FakeHubSpot
    deal_ids: list[str]
    globex: FakeQuickBooks
    initech: FakeHubSpot

    def served(self) -> tuple[FakeQuickBooks, FakeHubSpot, FakeQuickBooks, FakeHubSpot]:
        """Return the fakes in the order the demo serves them (and lists their URLs)."""
        return self.quickbooks, self.hubspot, self.globex, self.initech


def load_fakes(clock: ManualClock, scale: Scale, rng: random.Random) -> Fakes:
    """Return the four fake sources filled with their history."""
    quickbooks, invoice_ids = load_acme_quickbooks(clock, scale, rng)
    hubspot, deal_ids = load_acme_hubspot(clock, scale, rng)
    globex, _ = load_globex_quickbooks(clock, scale, rng)
    initech = load_initech_hubspot(clock, scale, rng)
    return Fakes(quickbooks, invoice_ids, hubspot, deal_ids, globex, initech)


@attrs.frozen
class Connectors:
    """The real connectors to the three fakes, each over HTTP to the fake's loopback URL.

    Args:
        quickbooks: To Acme's company.
        hubspot: To Acme's portal.
        globex: To Globex's company.
    """

    quickbooks: QuickBooksConnector
    hubspot: HubSpotConnector
    globex: QuickBooksConnector

    def close(self) -> None:
        """Close every connector's HTTP client."""
        for connector in (self.quickbooks, self.hubspot, self.globex):
            connector.close()


def connect(
    fakes: Fakes,
    urls: Sequence[str],
    *,
    clock: ManualClock,
    credentials: Credentials,
    scale: Scale,
    rng: random.Random,
) -> Connectors:
    """Return connectors to ``fakes`` served at ``urls`` (in :meth:`Fakes.served`'s order).

    Initech's portal has none: only the ``incsync`` command syncs it (see :mod:`._command`).
    """
    quickbooks_url, hubspot_url, globex_url, _ = urls
    return Connectors(
        quickbooks_connector(
            fakes.quickbooks,
            quickbooks_url,
            clock=clock,
            credentials=credentials,
            page_size=scale.page_size,
            rng=rng,
        ),
        hubspot_connector(
            fakes.hubspot, hubspot_url, clock=clock, credentials=credentials, rng=rng
        ),
        quickbooks_connector(
            fakes.globex,
            globex_url,
            clock=clock,
            credentials=credentials,
            page_size=scale.page_size,
            rng=rng,
        ),
    )
