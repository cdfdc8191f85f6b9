"""Mapped rows in step with the vendors, over loopback HTTP to the QuickBooks and HubSpot fakes:
voids, credit notes and deletes after the first sync reach the rows at the next cycle, and a
reset's sweep voids the rows of records gone from the source."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from incsync import Outcome, SyncEngine
from incsync.connectors.auth import BearerToken
from incsync.connectors.http import HttpOptions
from incsync.connectors.retry import RetryPolicy
from incsync.mapping import (
    DELETED_AT_SOURCE,
    VOIDED_AT_SOURCE,
    Kind,
    MappedRow,
    Party,
    Status,
    preset,
)
from incsync.records import SWEPT
from incsync.testing import ManualClock
from incsync.testing.fakes import FakeHubSpot, FakeQuickBooks
from incsync.vendors.hubspot import HubSpotConnector
from incsync.vendors.quickbooks import QuickBooksConnector, quickbooks_auth
from tests.helpers import Store
from tests.mapping.conftest import MakeStore

UTC = timezone.utc
NOW = datetime(2024, 6, 3, 16, 0, tzinfo=UTC)
INVOICES, CREDITS, DEALS = "qbo-invoices", "qbo-credit-memos", "hubspot-deals"
MAPPINGS = {
    INVOICES: preset("quickbooks", "Invoice"),
    CREDITS: preset("quickbooks", "CreditMemo"),
    DEALS: preset("hubspot", "deals"),
}
DEAL_PROPERTIES = ["dealname", "amount", "closedate", "pipeline", "dealstage", "hubspot_owner_id"]


def no_sleep(_seconds: float) -> None:
    """Never wait in tests."""


def sale(amount: str, day: int, customer: str = "1") -> dict[str, Any]:
    """A QuickBooks invoice's (or credit memo's) fields, with one sales line."""
    return {
        "TxnDate": f"2024-06-{day:02d}",
        "TotalAmt": float(amount),
        "Balance": float(amount),
        "CustomerRef": {"value": customer, "name": f"Customer {customer}"},
        "Line": [
            {
                "Amount": float(amount),
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {"ItemRef": {"value": "1", "name": "Services"}},
            }
        ],
    }


@contextmanager
def quickbooks(
    fake: FakeQuickBooks, base_url: str, entity: str, *, include_deletes: bool = True
) -> Iterator[QuickBooksConnector]:
    tokens = fake.grant_tokens()
    auth = quickbooks_auth(
        fake.client_id,
        fake.client_secret,
        tokens.refresh_token,
        token_url=f"{base_url}/oauth2/v1/tokens/bearer",
        access_token=tokens.access_token,
        expires_at=tokens.access_token_expires_at,
        clock=fake.clock,
    )
    with QuickBooksConnector(
        fake.realm_id,
        entity,
        auth=auth,
        base_url=base_url,
        include_deletes=include_deletes,
        options=HttpOptions(retry=RetryPolicy(), sleep=no_sleep, clock=fake.clock),
    ) as connector:
        yield connector


def hubspot(fake: FakeHubSpot, base_url: str, *, include_archived: bool) -> HubSpotConnector:
    return HubSpotConnector(
        base_url,
        auth=BearerToken(fake.private_app_token),
        properties=DEAL_PROPERTIES,
        include_archived=include_archived,
        options=HttpOptions(sleep=no_sleep, clock=fake.clock, retry=RetryPolicy()),
    )


def rows(store: Store, key: str) -> dict[str, MappedRow]:
    return {row.transaction.record_id: row for row in store.read_mapped(key, limit=1_000)}


def completed(engine: SyncEngine, key: str, connector: Any) -> None:
    result = engine.run_cycle(key, connector)
    assert result.outcome is Outcome.COMPLETED, result.error


def test_voids_credit_notes_and_deletes_reach_the_mapped_rows_at_the_next_cycle(
    mapped_store: MakeStore,
) -> None:
    store = mapped_store(MAPPINGS)
    books = FakeQuickBooks(clock=ManualClock(NOW), requests_per_minute=100_000)
    crm = FakeHubSpot(clock=ManualClock(NOW))
    at = NOW - timedelta(days=1)
    kept, voided, deleted = (
        books.add("Invoice", sale(amount, day), updated_at=at)
        for amount, day in (("150.00", 3), ("99.95", 4), ("20.10", 5))
    )
    won, lost, archived = (
        crm.create(
            "deals",
            {"amount": amount, "dealstage": stage, "closedate": closed, "hubspot_owner_id": owner},
            modified_at=at,
        )
        for amount, stage, closed, owner in (
            ("1000.50", "closedwon", "2024-06-01T10:00:00Z", "11"),
            ("300", "appointmentscheduled", "2024-06-02T10:00:00Z", "12"),
            ("75.25", "closedwon", "2024-06-02T23:30:00Z", "11"),
        )
    )
    with ExitStack() as opened:
        books_url = opened.enter_context(books.serve())
        crm_url = opened.enter_context(crm.serve())
        invoices = opened.enter_context(quickbooks(books, books_url, "Invoice"))
        credits = opened.enter_context(quickbooks(books, books_url, "CreditMemo"))
        deals = opened.enter_context(hubspot(crm, crm_url, include_archived=True))
        books_engine = SyncEngine(store, clock=books.clock)
        crm_engine = SyncEngine(store, clock=crm.clock)
        crm.clock.advance(timedelta(seconds=10))  # past the search index's lag
        for key, connector in ((INVOICES, invoices), (CREDITS, credits)):
            completed(books_engine, key, connector)
        completed(crm_engine, DEALS, deals)
        assert sorted(rows(store, INVOICES)) == sorted([kept, voided, deleted])
        assert rows(store, DEALS)[won].transaction.amount == Decimal("1000.50")

        books.advance(timedelta(hours=1))
        books.void("Invoice", voided)
        books.delete("Invoice", deleted)
        credit = books.add("CreditMemo", sale("40.00", 6))
        crm.clock.advance(timedelta(hours=1))
        crm.update("deals", lost, {"dealstage": "closedlost"})
        crm.archive("deals", archived)
        books.advance(timedelta(minutes=10))
        crm.clock.advance(timedelta(minutes=10))
        for key, connector in ((INVOICES, invoices), (CREDITS, credits)):
            completed(books_engine, key, connector)
        completed(crm_engine, DEALS, deals)

    invoice_rows = rows(store, INVOICES)
    assert invoice_rows[kept].voided is False
    assert invoice_rows[kept].transaction.amount == Decimal("150.00")
    assert (invoice_rows[voided].voided, invoice_rows[voided].void_reason) == (
        True,
        VOIDED_AT_SOURCE,
    )
    assert invoice_rows[voided].transaction.status is Status.VOID
    assert (invoice_rows[deleted].voided, invoice_rows[deleted].void_reason) == (
        True,
        DELETED_AT_SOURCE,
    )
    assert invoice_rows[deleted].transaction.amount == Decimal("20.10")  # the last values stay
    [credit_row] = rows(store, CREDITS).values()
    assert credit_row.transaction.record_id == credit
    assert (credit_row.transaction.kind, credit_row.transaction.amount) == (
        Kind.CREDIT_NOTE,
        Decimal("-40.00"),
    )
    assert [line.amount for line in credit_row.transaction.lines] == [Decimal("-40.00")]
    deal_rows = rows(store, DEALS)
    assert (deal_rows[won].transaction.status, deal_rows[won].transaction.date) == (
        Status.WON,
        date(2024, 6, 1),
    )
    assert deal_rows[won].transaction.owner == Party("11")
    assert deal_rows[lost].transaction.status is Status.LOST
    assert (deal_rows[archived].voided, deal_rows[archived].void_reason) == (
        True,
        DELETED_AT_SOURCE,
    )
    # What a commission engine sums: June's live amounts, credit notes included, per source.
    june = [
        row.transaction.amount
        for key in (INVOICES, CREDITS)
        for row in store.read_mapped(
            key, since=date(2024, 6, 1), until=date(2024, 7, 1), include_voided=False
        )
    ]
    assert sum(june) == Decimal("110.00")


def test_a_reset_sweeps_and_voids_the_rows_of_deals_gone_without_a_delete(
    mapped_store: MakeStore,
) -> None:
    store = mapped_store(MAPPINGS)
    crm = FakeHubSpot(clock=ManualClock(NOW))
    ids = [
        crm.create(
            "deals",
            {"amount": f"{n}00", "dealstage": "closedwon", "closedate": "2024-06-01T00:00:00Z"},
            modified_at=NOW - timedelta(days=1),
        )
        for n in range(1, 6)
    ]
    with crm.serve() as base_url, hubspot(crm, base_url, include_archived=False) as deals:
        engine = SyncEngine(store, clock=crm.clock)
        crm.clock.advance(timedelta(seconds=10))  # past the search index's lag
        completed(engine, DEALS, deals)
        crm.clock.advance(timedelta(hours=1))
        crm.archive("deals", ids[1])  # search never shows it, and no delete is read
        crm.archive("deals", ids[3])
        crm.clock.advance(timedelta(minutes=10))
        completed(engine, DEALS, deals)
        assert not any(row.voided for row in rows(store, DEALS).values())  # unseen so far
        engine.reset(DEALS)
        crm.clock.advance(timedelta(minutes=10))
        completed(engine, DEALS, deals)
    kept = rows(store, DEALS)
    assert len(kept) == 5
    assert {i for i, row in kept.items() if row.voided} == {ids[1], ids[3]}
    assert {kept[i].void_reason for i in (ids[1], ids[3])} == {SWEPT}
