"""The demo's last step: what a commission engine sees, this month's amounts per salesperson.

The demo's store keeps Acme's sources mapped with the built-in presets (:data:`MAPPINGS`), so
every cycle wrote each invoice's and deal's transaction next to its raw record. The step reads
those mapped rows for the demo's month and adds them up per salesperson: deals won in HubSpot
(by the deal's owner) and invoices paid in QuickBooks (by the customer's account owner:
QuickBooks puts no salesperson on an invoice, so the host's own table of account owners does).
A check adds the same figures up again from the stored raw payloads, with code of its own, and
compares them to the cent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal

import attrs

from incsync._demo._command import INITECH_HUBSPOT
from incsync._demo._steps import ACME_HUBSPOT, ACME_QUICKBOOKS, GLOBEX_QUICKBOOKS, Steps
from incsync._demo._world import ACCOUNT_OWNERS, SALESPEOPLE
from incsync.mapping import MappedRow, Party, Status, TransactionMapping, preset
from incsync.records import Transaction

__all__ = ["MAPPINGS", "Earnings", "commission", "earnings_from_payloads", "earnings_from_rows"]

MAPPINGS: Mapping[str, TransactionMapping] = {
    ACME_QUICKBOOKS: preset("quickbooks", "Invoice"),
    GLOBEX_QUICKBOOKS: preset("quickbooks", "Invoice"),
    ACME_HUBSPOT: preset("hubspot", "deals"),
    INITECH_HUBSPOT: preset("hubspot", "deals"),
}
"""Each demo source's mapping: the presets of its connector's object."""

_CENT = Decimal("0.01")
_NO_OWNER = "(no owner)"


@attrs.frozen
class Earnings:
    """One salesperson's month: deals won and invoices paid, counted and added up.

    Args:
        won: Deals won, and their amount.
        paid: Invoices paid, and their amount.
    """

    won: tuple[int, Decimal] = (0, Decimal("0.00"))
    paid: tuple[int, Decimal] = (0, Decimal("0.00"))

    @property
    def total(self) -> Decimal:
        """What the salesperson brought in: won plus paid."""
        return self.won[1] + self.paid[1]


def _add(kept: tuple[int, Decimal], amount: Decimal) -> tuple[int, Decimal]:
    return kept[0] + 1, kept[1] + amount


def _month(moment: datetime) -> tuple[date, date]:
    first = moment.date().replace(day=1)
    following = first.replace(year=first.year + first.month // 12, month=first.month % 12 + 1)
    return first, following


def earnings_from_rows(
    deals: Iterable[MappedRow], invoices: Iterable[MappedRow]
) -> dict[str, Earnings]:
    """Add up mapped rows per salesperson: won deals by owner, paid invoices by account owner.

    Void rows (voided, deleted, swept) do not count.
    """
    earned: dict[str, Earnings] = {}
    for row in deals:
        value = row.transaction
        if row.voided or value.status is not Status.WON:
            continue
        name = SALESPEOPLE.get((value.owner or Party()).id or "", _NO_OWNER)
        kept = earned.get(name, Earnings())
        earned[name] = attrs.evolve(kept, won=_add(kept.won, value.amount))
    for row in invoices:
        value = row.transaction
        if row.voided or value.status is not Status.PAID:
            continue
        name = ACCOUNT_OWNERS.get((value.customer or Party()).id or "", _NO_OWNER)
        kept = earned.get(name, Earnings())
        earned[name] = attrs.evolve(kept, paid=_add(kept.paid, value.amount))
    return earned


def earnings_from_payloads(
    deals: Iterable[Transaction], invoices: Iterable[Transaction], month: tuple[date, date]
) -> dict[str, Earnings]:
    """Add up the same figures from raw payloads as HubSpot and QuickBooks write them.

    Written without the mapping, as a check on it: a deal counts when its stage is closed won
    and its close date falls in the month; an invoice when its balance is zero, it is not
    voided, and its date falls in the month.
    """
    first, following = month
    earned: dict[str, Earnings] = {}
    for transaction in deals:
        payload = transaction.record.payload
        properties = payload.get("properties") or {}
        if transaction.record.deleted or payload.get("archived"):
            continue
        if properties.get("dealstage") != "closedwon" or not properties.get("closedate"):
            continue
        if not first.isoformat() <= properties["closedate"][:10] < following.isoformat():
            continue
        name = SALESPEOPLE.get(properties.get("hubspot_owner_id") or "", _NO_OWNER)
        kept = earned.get(name, Earnings())
        amount = Decimal(properties.get("amount") or "0").quantize(_CENT)
        earned[name] = attrs.evolve(kept, won=_add(kept.won, amount))
    for transaction in invoices:
        payload = transaction.record.payload
        if transaction.record.deleted or payload.get("PrivateNote") == "Voided":
            continue
        if payload.get("Balance") != 0 or not first.isoformat() <= payload["TxnDate"] < (
            following.isoformat()
        ):
            continue
        name = ACCOUNT_OWNERS.get(payload["CustomerRef"]["value"], _NO_OWNER)
        kept = earned.get(name, Earnings())
        amount = Decimal(str(payload["TotalAmt"])).quantize(_CENT)
        earned[name] = attrs.evolve(kept, paid=_add(kept.paid, amount))
    return earned


def _money(amount: Decimal) -> str:
    return f"{amount:>13,.2f}"


def commission(steps: Steps, number: int) -> None:
    """The last step: this month's won and paid amounts per salesperson, from the mapped rows."""
    first, following = month = _month(steps.clock())
    steps.console.heading(
        f"{number}. What a commission engine sees: {first:%B %Y} per salesperson, from the "
        "mapped rows"
    )
    steps.console.item(
        "mapping",
        f"{ACME_HUBSPOT} by the hubspot/deals preset, {ACME_QUICKBOOKS} by quickbooks/Invoice; "
        "written with each raw record, in the same transaction",
    )
    engine = steps.engine
    deals = list(engine.mapped_transactions(ACME_HUBSPOT, since=first, until=following))
    invoices = list(engine.mapped_transactions(ACME_QUICKBOOKS, since=first, until=following))
    voided = sum(row.voided for row in (*deals, *invoices))
    steps.console.item(
        "read",
        f"{len(deals):,} deals and {len(invoices):,} invoices dated in {first:%B}, "
        f"{voided:,} of them void (voided, deleted or archived at the source: not counted)",
    )
    earned = earnings_from_rows(deals, invoices)
    steps.console.say(
        f"  {'salesperson':<16} {'deals won':>9} {'won (USD)':>13} {'invoices paid':>13} "
        f"{'paid (USD)':>13} {'total (USD)':>13}"
    )
    for name in sorted(earned, key=lambda each: (-earned[each].total, each)):
        figures = earned[name]
        steps.console.say(
            f"  {name:<16} {figures.won[0]:>9,} {_money(figures.won[1])} {figures.paid[0]:>13,} "
            f"{_money(figures.paid[1])} {_money(figures.total)}"
        )
    total = sum((figures.total for figures in earned.values()), Decimal("0.00"))
    steps.console.say(f"  {'all':<16} {'':>9} {'':>13} {'':>13} {'':>13} {_money(total)}")
    recomputed = earnings_from_payloads(
        steps.store.transactions(ACME_HUBSPOT), steps.store.transactions(ACME_QUICKBOOKS), month
    )
    steps.check(
        earned == recomputed,
        "the same figures added up again from the stored raw payloads, without the mapping, "
        "match to the cent",
        failure=f"mapped {earned} against raw {recomputed}",
    )
