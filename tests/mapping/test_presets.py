"""The presets on the vendors' documented samples, on recorded live answers and on the fakes."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from incsync.connectors.http import HttpOptions
from incsync.connectors.retry import RetryPolicy
from incsync.engine import SyncEngine
from incsync.mapping import Kind, MappedTransaction, Party, Status, preset, presets
from incsync.testing import InMemoryStore, ManualClock
from incsync.testing.fakes.stripe import FakeStripe
from incsync.timestamps import UTC
from incsync.vendors.stripe import StripeConnector

SAMPLES = Path(__file__).parent / "samples"


def sample(path: str) -> Any:
    """A vendor's payload, copied from the reference samples (see each folder's SOURCE.txt)."""
    return json.loads((SAMPLES / path).read_text())


def mapped(vendor: str, name: str, raw: object) -> MappedTransaction:
    """Map ``raw`` with a preset, which must find a transaction in it."""
    result = preset(vendor, name).map(raw, source_key=f"{vendor}-{name}")
    assert result is not None
    return result


def test_every_preset_is_a_valid_mapping() -> None:
    """Every listed preset checks out, and the pinned ones are there."""
    assert {("quickbooks", "Invoice"), ("stripe", "charges"), ("hubspot", "deals")} <= set(
        presets()
    )
    for vendor, name in presets():
        assert preset(vendor, name).data


def test_quickbooks_invoice_documented_sample() -> None:
    """Intuit's sample invoice: total, date, customer and its one sales line, not the subtotal."""
    raw = sample("api-samples/quickbooks/invoice_query_response.json")["QueryResponse"]["Invoice"]
    invoice = mapped("quickbooks", "Invoice", raw[0])
    assert (invoice.record_id, invoice.source_key) == ("239", "quickbooks-Invoice")
    assert (invoice.kind, invoice.status) == (Kind.INVOICE, Status.OPEN)
    assert (invoice.amount, invoice.currency, invoice.date) == (
        Decimal("150.00"),
        "USD",
        date(2015, 7, 24),
    )
    assert invoice.customer == Party("1", "Amy's Bird Sanctuary")
    assert [(line.product_name, line.amount) for line in invoice.lines] == [
        ("Services", Decimal("150.00"))
    ]


def test_quickbooks_invoices_recorded_live() -> None:
    """Every recorded invoice maps; lines add up to the subtotal to the cent; paid when settled."""
    rows = sample("recorded/quickbooks/nango_invoices_query.json")["QueryResponse"]["Invoice"]
    invoices = [mapped("quickbooks", "Invoice", row) for row in rows]
    first = invoices[0]
    assert (first.amount, first.date, first.status) == (
        Decimal("362.07"),
        date(2026, 4, 8),
        Status.OPEN,
    )
    assert [(line.quantity, line.unit_price, line.amount) for line in first.lines] == [
        (Decimal(1), Decimal(275), Decimal("275.00")),
        (Decimal(1), Decimal("12.75"), Decimal("12.75")),
        (Decimal(5), Decimal("9.5"), Decimal("47.50")),
    ]
    for row, invoice in zip(rows, invoices, strict=True):
        assert invoice.amount == Decimal(str(row["TotalAmt"])).quantize(Decimal("0.01"))
        assert invoice.status is (Status.PAID if row["Balance"] == 0 else Status.OPEN)


def test_quickbooks_void_credit_memo_and_deleted() -> None:
    """A voided invoice is void; a credit memo is negative; CDC's deleted object is deleted."""
    raw = sample("recorded/quickbooks/nango_invoices_query.json")["QueryResponse"]["Invoice"][0]
    voided = {**raw, "TotalAmt": 0, "Balance": 0, "PrivateNote": "Voided"}
    assert mapped("quickbooks", "Invoice", voided).status is Status.VOID
    credit = mapped("quickbooks", "CreditMemo", raw)
    assert (credit.kind, credit.amount) == (Kind.CREDIT_NOTE, Decimal("-362.07"))
    assert all(line.amount < 0 for line in credit.lines)
    assert mapped("quickbooks", "Invoice", {**raw, "status": "Deleted"}).status is Status.DELETED
    refund = mapped("quickbooks", "RefundReceipt", raw)
    assert (refund.kind, refund.status, refund.amount) == (
        Kind.REFUND,
        Status.PAID,
        Decimal("-362.07"),
    )
    assert mapped("quickbooks", "Payment", raw).lines == ()


def test_stripe_charges_documented_and_recorded() -> None:
    """Stripe amounts are minor units: 100 cents is 1.00 USD; 'usd' becomes 'USD'."""
    charge = mapped(
        "stripe", "charges", sample("api-samples/stripe/charges_list_page.json")["data"][0]
    )
    assert (charge.amount, charge.currency, charge.date, charge.kind, charge.status) == (
        Decimal("1.00"),
        "USD",
        date(2009, 2, 13),
        Kind.CHARGE,
        Status.PAID,
    )
    recorded = mapped(
        "stripe", "charges", sample("recorded/stripe/airbyte_charges.json")["data"][0]
    )
    assert (recorded.amount, recorded.date) == (Decimal("20.00"), date(2023, 8, 25))


@pytest.mark.parametrize(
    ("currency", "minor", "amount"),
    [
        ("jpy", 1500, Decimal(1500)),
        ("usd", 1500, Decimal("15.00")),
        ("kwd", 1500, Decimal("1.500")),
    ],
)
def test_stripe_minor_units_follow_the_iso_exponent(
    currency: str, minor: int, amount: Decimal
) -> None:
    """JPY has no minor unit, USD two places, KWD three: one table decides."""
    raw = sample("api-samples/stripe/charges_list_page.json")["data"][0]
    charge = mapped("stripe", "charges", {**raw, "currency": currency, "amount": minor})
    assert charge.amount == amount
    assert charge.amount.as_tuple().exponent == amount.as_tuple().exponent


def test_stripe_invoices_voids_and_refunds() -> None:
    """Recorded invoices keep their status (void is void); a refund is negative."""
    rows = sample("recorded/stripe/nango_invoices_list.json")["data"]
    for row in rows:
        invoice = mapped("stripe", "invoices", row)
        assert invoice.status.value == row["status"]
        assert invoice.amount == Decimal(row["total"]) / 100
    documented = mapped(
        "stripe", "invoices", sample("api-samples/stripe/invoices_list_page.json")["data"][0]
    )
    assert documented.lines[0].amount == Decimal("10.00")
    refund = {
        "id": "re_1",
        "object": "refund",
        "amount": 500,
        "currency": "eur",
        "created": 1692942318,
        "status": "succeeded",
        "charge": "ch_1",
    }
    mapped_refund = mapped("stripe", "refunds", refund)
    assert (mapped_refund.amount, mapped_refund.currency) == (Decimal("-5.00"), "EUR")
    assert mapped_refund.custom["charge"] == "ch_1"


def test_hubspot_deals_recorded_with_owner_and_stages() -> None:
    """Deals map with their amount and date; the owner is kept; won, lost and archived show."""
    rows = sample("recorded/hubspot/nango_deals_list.json")["results"]
    deal = mapped("hubspot", "deals", rows[0])
    assert (deal.amount, deal.currency, deal.date, deal.status) == (
        Decimal("3000.00"),
        "USD",
        date(2026, 2, 25),
        Status.OPEN,
    )
    assert all(mapped("hubspot", "deals", row).kind is Kind.DEAL for row in rows)
    properties = {
        **rows[0]["properties"],
        "dealstage": "closedwon",
        "hubspot_owner_id": "77",
        "closedate": "2026-03-31T00:00:00Z",
        "deal_currency_code": "eur",
    }
    won = mapped("hubspot", "deals", {**rows[0], "properties": properties})
    assert (won.status, won.owner, won.date, won.currency) == (
        Status.WON,
        Party("77"),
        date(2026, 3, 31),
        "EUR",
    )
    lost = {**rows[0], "properties": {**properties, "dealstage": "closedlost"}}
    assert mapped("hubspot", "deals", lost).status is Status.LOST
    assert mapped("hubspot", "deals", {**rows[0], "archived": True}).status is Status.DELETED


def test_xero_sales_only_with_void_and_deleted() -> None:
    """ACCREC invoices map (VOIDED void, DELETED deleted); ACCPAY bills are not transactions."""
    documented = [
        mapped("xero", "Invoices", row)
        for row in sample("api-samples/xero/invoices_page.json")["Invoices"]
    ]
    assert [(i.status, i.amount, i.currency) for i in documented] == [
        (Status.VOID, Decimal("40.00"), "NZD"),
        (Status.PAID, Decimal("46.00"), "NZD"),
        (Status.OPEN, Decimal("115.00"), "NZD"),
    ]
    assert documented[0].date == date(2018, 10, 20)
    rows = sample("recorded/xero/nango_invoices.json")["Invoices"]
    mapping = preset("xero", "Invoices")
    results = [mapping.map(row) for row in rows]
    assert [r is None for r in results] == [row["Type"] == "ACCPAY" for row in rows]
    sales = [r for r in results if r is not None]
    assert {r.status for r in sales} == {Status.PAID, Status.OPEN, Status.DRAFT}
    deleted = next(row for row in rows if row["Status"] == "DELETED")
    assert mapped("xero", "Invoices", {**deleted, "Type": "ACCREC"}).status is Status.DELETED
    credit = {**deleted, "Type": "ACCRECCREDIT", "CreditNoteID": "cn-1", "Status": "AUTHORISED"}
    note = mapped("xero", "CreditNotes", credit)
    assert (note.kind, note.amount) == (Kind.CREDIT_NOTE, -Decimal(str(deleted["Total"])))


def test_salesforce_opportunities_recorded() -> None:
    """Closed Won opportunities are won; the owner id and close date are kept."""
    rows = sample("recorded/salesforce/nango_opportunities_query.json")["records"]
    results = [mapped("salesforce", "Opportunity", row) for row in rows]
    assert results[0].amount == Decimal("15000.00")
    assert results[0].owner == Party("005dM00000aYf0qQAC")
    assert results[0].date == date(2026, 3, 8)
    won = [r for row, r in zip(rows, results, strict=True) if row["StageName"] == "Closed Won"]
    assert won
    assert all(r.status is Status.WON for r in won)


def test_pipedrive_deals_v1_and_v2() -> None:
    """v1 embeds the owner with name and e-mail; v2 gives the owner id; both map alike."""
    v1 = mapped("pipedrive", "deals", sample("recorded/pipedrive/nango_deals_v1.json")["data"][0])
    assert v1.owner == Party("25760681", "Nango", "api@nango.dev")
    v2 = mapped("pipedrive", "deals", sample("recorded/pipedrive/nango_deal_v2.json")["data"])
    assert (v2.amount, v2.owner, v2.customer) == (
        Decimal("25000.00"),
        Party("25760681"),
        Party("1"),
    )
    page = sample("api-samples/pipedrive/deals_v2_page_CONSTRUCTED.json")["data"][0]
    assert mapped("pipedrive", "deals", page).date == date(2023, 2, 28)
    won = {**page, "status": "won", "won_time": "2023-03-01T10:00:00Z"}
    assert (mapped("pipedrive", "deals", won).status, mapped("pipedrive", "deals", won).date) == (
        Status.WON,
        date(2023, 3, 1),
    )
    assert mapped("pipedrive", "deals", {**page, "is_deleted": True}).status is Status.DELETED


def test_stripe_fake_records_over_loopback() -> None:
    """The connector's stored observations (object in data.object) map like listed objects."""
    start = datetime(2024, 6, 1, 12, tzinfo=UTC)
    fake = FakeStripe(clock=ManualClock(start))
    fake.load("charges", [start - timedelta(days=2)])
    store = InMemoryStore()

    def no_sleep(_seconds: float) -> None:
        """Never wait."""

    with fake.serve() as base_url:
        source = StripeConnector(
            base_url,
            secret_key=fake.secret_key,
            resource="charges",
            options=HttpOptions(sleep=no_sleep, clock=fake.clock, retry=RetryPolicy()),
        )
        SyncEngine(store, clock=fake.clock).run_cycle("stripe-charges", source)
        source.close()
    stored = list(store.transactions("stripe-charges"))
    truth = fake.ground_truth("charges")
    assert len(stored) == len(truth) == 1
    charge = mapped("stripe", "charges", stored[0].record.payload)
    body = truth[charge.record_id]
    assert charge.amount == Decimal(body["amount"]) / 100
    assert charge.currency == body["currency"].upper()
    assert charge.date == (start - timedelta(days=2)).date()
