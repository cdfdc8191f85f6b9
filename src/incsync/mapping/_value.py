"""The transaction value a mapping gives, its kinds and statuses, and the money rules it obeys."""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Mapping
from datetime import date
from decimal import ROUND_HALF_UP, Context, Decimal
from types import MappingProxyType

import attrs

__all__ = [
    "CustomValue",
    "Kind",
    "Line",
    "MappedTransaction",
    "Party",
    "Status",
    "currency_exponent",
    "from_minor_units",
    "quantize",
    "to_currency",
]

#: What a chosen custom field holds once read: text, a number or a date, or nothing.
CustomValue = str | Decimal | date | bool | None


class Kind(str, enum.Enum):
    """What sort of business transaction a record is."""

    INVOICE = "invoice"
    CREDIT_NOTE = "credit_note"
    SALES_RECEIPT = "sales_receipt"
    REFUND = "refund"
    PAYMENT = "payment"
    DEAL = "deal"
    CHARGE = "charge"

    @property
    def signed_negative(self) -> bool:
        """Whether amounts of this kind take money back (credit notes and refunds)."""
        return self in _NEGATIVE_KINDS


_NEGATIVE_KINDS = frozenset({Kind.CREDIT_NOTE, Kind.REFUND})


class Status(str, enum.Enum):
    """Where a transaction stands at its source."""

    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    WON = "won"
    LOST = "lost"
    FAILED = "failed"
    VOID = "void"
    DELETED = "deleted"


# ISO 4217 minor units of every currency whose exponent is not 2; every other code has 2. The one
# table of exponents: amounts, line amounts and minor-unit conversions all read it.
_EXPONENTS: Mapping[str, int] = MappingProxyType(
    {
        **dict.fromkeys(
            [
                "BIF",
                "CLP",
                "DJF",
                "GNF",
                "ISK",
                "JPY",
                "KMF",
                "KRW",
                "PYG",
                "RWF",
                "UGX",
                "UYI",
                "VND",
                "VUV",
                "XAF",
                "XOF",
                "XPF",
                "XAG",
                "XAU",
                "XBA",
                "XBB",
                "XBC",
                "XBD",
                "XDR",
                "XPD",
                "XPT",
                "XSU",
                "XTS",
                "XUA",
                "XXX",
            ],
            0,
        ),
        **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
        **dict.fromkeys(["CLF", "UYW"], 4),
    }
)
_CURRENCY_CODE = re.compile(r"[A-Z]{3}")


def to_currency(value: object) -> str:
    """Return ``value`` as an upper-case ISO 4217 code (``"usd"`` gives ``"USD"``).

    Raises:
        ValueError: ``value`` is not three ASCII letters.
    """
    code = value.strip().upper() if isinstance(value, str) else None
    if code is None or not _CURRENCY_CODE.fullmatch(code):
        raise ValueError(f"expected a three-letter ISO 4217 currency code, got {value!r}")
    return code


def currency_exponent(currency: str) -> int:
    """Return how many decimal places ``currency`` has (ISO 4217: JPY 0, USD 2, KWD 3)."""
    return _EXPONENTS.get(currency, 2)


@functools.cache  # one per currency code met: at most 26**3, and a handful in practice
def _quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-currency_exponent(currency))


# Amounts are rounded in a context of their own, the default one but rounding half up: the same
# for every thread whatever a host set in its own, and cheaper than naming the rounding per call
# (three amounts a record).
_COMMERCIAL = Context(rounding=ROUND_HALF_UP)


def quantize(amount: Decimal, currency: str) -> Decimal:
    """Return ``amount`` to ``currency``'s decimal places, rounding half up (commercial)."""
    return _COMMERCIAL.quantize(amount, _quantum(currency))


def from_minor_units(amount: Decimal, currency: str) -> Decimal:
    """Return an amount in minor units (Stripe's ``1099`` cents) in ``currency``'s major units."""
    return quantize(amount.scaleb(-currency_exponent(currency)), currency)


@attrs.frozen
class Party:
    """A customer or an owner (salesperson) as the source names them.

    Args:
        id: The party's id at the source, when the record carries one.
        name: The display name, when the record carries one.
        email: The e-mail address, when the record carries one (owners of Pipedrive deals).
    """

    id: str | None = None
    name: str | None = None
    email: str | None = None


@attrs.frozen
class Line:
    """One line of a transaction: what was sold, how many, at what price.

    Args:
        amount: The line's amount in the transaction's currency, signed like the transaction.
        product_id: The product's or item's id at the source.
        product_name: The product's or item's name.
        description: The line's free text.
        quantity: How many units.
        unit_price: The price of one unit, as the source wrote it (not rounded: unit prices may
            hold more places than the currency).
    """

    amount: Decimal
    product_id: str | None = None
    product_name: str | None = None
    description: str | None = None
    quantity: Decimal | None = None
    unit_price: Decimal | None = None


_NO_CUSTOM: Mapping[str, CustomValue] = MappingProxyType({})


def _frozen_custom(value: Mapping[str, CustomValue]) -> Mapping[str, CustomValue]:
    # Most mappings choose no custom field: their transactions share one empty mapping.
    return MappingProxyType(dict(value)) if value else _NO_CUSTOM


@attrs.frozen
class MappedTransaction:
    """A source record as a transaction a commission engine can use.

    Args:
        record_id: The record's id at the source: with ``source_key``, the link to the raw record.
        kind: What sort of transaction it is.
        status: Where it stands at the source.
        date: The business date (the invoice's or deal's close date), never the sync time.
        amount: The total, to the currency's ISO 4217 exponent; negative for credit notes and
            refunds.
        currency: The upper-case ISO 4217 code.
        source_key: The incsync source the record was read from, when the caller named it.
        customer: Who bought, when the record says.
        owner: Who sold (the record's owner or salesperson), when the record says.
        lines: The line items, signed like ``amount``.
        custom: The chosen custom fields by the names the mapping gave them.
    """

    record_id: str
    kind: Kind
    status: Status
    date: date
    amount: Decimal
    currency: str
    source_key: str | None = None
    customer: Party | None = None
    owner: Party | None = None
    lines: tuple[Line, ...] = ()
    custom: Mapping[str, CustomValue] = attrs.field(
        factory=dict, converter=_frozen_custom, hash=False
    )
