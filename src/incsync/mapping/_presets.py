"""The built-in mappings of every built-in connector's main objects, as plain data.

Each preset is the data :meth:`TransactionMapping.from_data` reads, so the guide can show it and
a host can start from it (``preset(...).with_fields(...)``). Vendors and objects are named as the
connectors name them: the QuickBooks ``entity``, the Stripe ``resource``, the HubSpot
``object_type``, the Salesforce ``sobject``, the Xero ``endpoint``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["PRESETS"]

_QUICKBOOKS_STATUS_WHEN = [
    # CDC lists a deleted object with status "Deleted"; a voided one stays, totals zeroed, with
    # the note "Voided" (its only mark); a zero balance is a paid one.
    {"if": {"path": "status", "equals": "Deleted"}, "status": "deleted"},
    {"if": {"path": "PrivateNote", "equals": "Voided"}, "status": "void"},
    {"if": {"path": "Balance", "in": [0, 0.0]}, "status": "paid"},
]


def _quickbooks(kind: str, status: str = "open", *, lines: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": kind,
        "record_id": "Id",
        "status": status,
        "status_when": _QUICKBOOKS_STATUS_WHEN if status == "open" else _QUICKBOOKS_STATUS_WHEN[:2],
        "date": "TxnDate",
        "amount": "TotalAmt",
        # A company in one currency sends no CurrencyRef: its home currency, USD unless the host
        # says otherwise (preset(...).with_fields(currency={"path": ..., "default": "EUR"})).
        "currency": {"path": "CurrencyRef.value", "default": "USD"},
        "customer_id": "CustomerRef.value",
        "customer_name": "CustomerRef.name",
    }
    if lines:
        data["lines"] = {
            "path": "Line",
            "where": [{"path": "DetailType", "equals": "SalesItemLineDetail"}],
            "amount": "Amount",
            "product_id": "SalesItemLineDetail.ItemRef.value",
            "product_name": "SalesItemLineDetail.ItemRef.name",
            "description": "Description",
            "quantity": "SalesItemLineDetail.Qty",
            "unit_price": "SalesItemLineDetail.UnitPrice",
        }
    return data


def _xero(kind: str, types: list[str], record_id: str) -> dict[str, Any]:
    return {
        # Sales only: ACCPAY bills and supplier credit notes are not sales transactions.
        "where": [{"path": "Type", "in": types}],
        "kind": kind,
        "record_id": record_id,
        "status": {
            "path": "Status",
            "table": {
                "DRAFT": "draft",
                "SUBMITTED": "draft",
                "AUTHORISED": "open",
                "PAID": "paid",
                "VOIDED": "void",
                "DELETED": "deleted",
            },
        },
        "date": {"path": "Date", "convert": "dotnet_date"},
        "amount": "Total",
        "currency": "CurrencyCode",
        "customer_id": "Contact.ContactID",
        "customer_name": "Contact.Name",
        "lines": {
            "path": "LineItems",
            "amount": "LineAmount",
            "product_id": "ItemCode",
            "description": "Description",
            "quantity": "Quantity",
            "unit_price": "UnitAmount",
        },
    }


# Stripe's stored records are observations wrapping the object in data.object; a listed object
# (the API's own answer, a webhook's object) is read as it is.
_STRIPE_ROOT = ["data.object", ""]
_STRIPE_STATUS = {
    "succeeded": "paid",
    "pending": "open",
    "failed": "failed",
    "canceled": "void",
}


def _stripe_payment(kind: str, **extra: Any) -> dict[str, Any]:
    """A charge or a refund: minor units, epoch-second dates, the shared status words."""
    return {
        "root": _STRIPE_ROOT,
        "kind": kind,
        "record_id": "id",
        "status": {"path": "status", "table": _STRIPE_STATUS, "default": "paid"},
        "date": {"path": "created", "convert": "epoch_seconds"},
        "amount": {"path": "amount", "convert": "minor_units"},
        "currency": "currency",
        **extra,
    }


PRESETS: Mapping[tuple[str, str], Mapping[str, Any]] = {
    ("quickbooks", "Invoice"): _quickbooks("invoice"),
    ("quickbooks", "CreditMemo"): _quickbooks("credit_note"),
    ("quickbooks", "SalesReceipt"): _quickbooks("sales_receipt", "paid"),
    ("quickbooks", "RefundReceipt"): _quickbooks("refund", "paid"),
    ("quickbooks", "Payment"): _quickbooks("payment", "paid", lines=False),
    ("stripe", "charges"): _stripe_payment(
        "charge",
        customer_id="customer",
        custom={"amount_refunded": {"path": "amount_refunded", "convert": "decimal"}},
    ),
    ("stripe", "refunds"): _stripe_payment("refund", custom={"charge": "charge"}),
    ("stripe", "invoices"): {
        "root": _STRIPE_ROOT,
        "kind": "invoice",
        "record_id": "id",
        "status": {
            "path": "status",
            "table": {
                "draft": "draft",
                "open": "open",
                "paid": "paid",
                "uncollectible": "open",
                "void": "void",
            },
        },
        "status_when": [{"if": {"path": "deleted", "equals": True}, "status": "deleted"}],
        "date": {"path": ["effective_at", "created"], "convert": "epoch_seconds"},
        "amount": {"path": ["total", "amount_due"], "convert": "minor_units"},
        "currency": "currency",
        "customer_id": "customer",
        "customer_name": "customer_name",
        "lines": {
            "path": "lines.data",
            "amount": {"path": "amount", "convert": "minor_units"},
            "product_id": ["price.product", "plan.product"],
            "description": "description",
            "quantity": {"path": "quantity", "convert": "decimal"},
        },
    },
    ("hubspot", "deals"): {
        "kind": "deal",
        "record_id": "id",
        "status": {
            "path": "properties.dealstage",
            "table": {"closedwon": "won", "closedlost": "lost"},
            "default": "open",
        },
        "status_when": [
            {"if": {"path": "archived", "equals": True}, "status": "deleted"},
            # Stages of custom pipelines have their own ids; HubSpot's flag says won for all.
            {"if": {"path": "properties.hs_is_closed_won", "equals": "true"}, "status": "won"},
        ],
        "date": ["properties.closedate", "properties.createdate", "createdAt"],
        # A deal may have no amount yet; it is worth nothing until it has one.
        "amount": {"path": "properties.amount", "default": "0"},
        # Deals in the portal's own currency carry no code: USD unless the host says otherwise.
        "currency": {"path": "properties.deal_currency_code", "default": "USD"},
        "owner_id": "properties.hubspot_owner_id",
        "custom": {"dealname": "properties.dealname", "pipeline": "properties.pipeline"},
    },
    ("salesforce", "Opportunity"): {
        "kind": "deal",
        "record_id": "Id",
        "status": {
            "path": "StageName",
            "table": {"Closed Won": "won", "Closed Lost": "lost"},
            "default": "open",
        },
        "status_when": [
            {"if": {"path": "IsDeleted", "equals": True}, "status": "deleted"},
            {"if": {"path": "IsWon", "equals": True}, "status": "won"},
            {"if": {"path": "IsClosed", "equals": True}, "status": "lost"},
        ],
        "date": "CloseDate",
        "amount": {"path": "Amount", "default": "0"},
        # CurrencyIsoCode exists only in multi-currency orgs; others are in the org's currency.
        "currency": {"path": "CurrencyIsoCode", "default": "USD"},
        "customer_id": "AccountId",
        "customer_name": "Account.Name",
        "owner_id": "OwnerId",
        "owner_name": "Owner.Name",
        "owner_email": "Owner.Email",
        "custom": {"name": "Name", "stage": "StageName"},
    },
    ("xero", "Invoices"): _xero("invoice", ["ACCREC"], "InvoiceID"),
    ("xero", "CreditNotes"): _xero("credit_note", ["ACCRECCREDIT"], "CreditNoteID"),
    ("pipedrive", "deals"): {
        "kind": "deal",
        "record_id": "id",
        "status": {
            "path": "status",
            "table": {"open": "open", "won": "won", "lost": "lost", "deleted": "deleted"},
        },
        "status_when": [
            {"if": {"path": "is_deleted", "equals": True}, "status": "deleted"},
            {"if": {"path": "deleted", "equals": True}, "status": "deleted"},
        ],
        # v1 writes times as zone-less UTC ("2023-02-22 08:27:54"), v2 as RFC 3339.
        "date": ["won_time", "close_time", "expected_close_date", "add_time"],
        "amount": {"path": "value", "default": "0"},
        "currency": "currency",
        "customer_id": ["org_id.value", "org_id"],
        "customer_name": ["org_id.name", "org_name"],
        # v1 embeds the owner as user_id {id, name, email}; v2 gives only owner_id.
        "owner_id": ["user_id.id", "owner_id"],
        "owner_name": ["user_id.name", "owner_name"],
        "owner_email": "user_id.email",
        "custom": {"title": "title"},
    },
}
