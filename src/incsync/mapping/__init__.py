"""From source records to typed transactions: declarative mappings and their presets.

A :class:`TransactionMapping` is plain data (a dict, a TOML table) that says where a payload
keeps a transaction's kind, status, business date, amount, currency, customer, owner, lines and
chosen custom fields; :func:`preset` gives the built-in one for a connector's object::

    from incsync.mapping import preset

    invoice = preset("quickbooks", "Invoice").map(payload, source_key="qbo-invoices")
    invoice.amount, invoice.currency, invoice.date, invoice.kind, invoice.status

The package is pure: it reads payloads and builds values, and touches no store and no network.
The stores keep each mapped source's transactions as :class:`MappedRow` values, deciding what a
record does to its row through this package (see :mod:`incsync.mapped`).
"""

from __future__ import annotations

from incsync.errors import ConfigurationError
from incsync.mapping._kept import (
    CANNOT_BE_MAPPED,
    DELETED_AT_SOURCE,
    NOT_A_TRANSACTION,
    VOIDED_AT_SOURCE,
    MappedPosition,
    MappedRow,
    RemapPage,
)
from incsync.mapping._presets import PRESETS
from incsync.mapping._spec import CONVERTERS, Condition, Field, LinesSpec, TransactionMapping
from incsync.mapping._value import (
    CustomValue,
    Kind,
    Line,
    MappedTransaction,
    Party,
    Status,
    currency_exponent,
    to_currency,
)

__all__ = [
    "CANNOT_BE_MAPPED",
    "CONVERTERS",
    "DELETED_AT_SOURCE",
    "NOT_A_TRANSACTION",
    "VOIDED_AT_SOURCE",
    "Condition",
    "CustomValue",
    "Field",
    "Kind",
    "Line",
    "LinesSpec",
    "MappedPosition",
    "MappedRow",
    "MappedTransaction",
    "Party",
    "RemapPage",
    "Status",
    "TransactionMapping",
    "currency_exponent",
    "preset",
    "presets",
    "to_currency",
]


def presets() -> list[tuple[str, str]]:
    """Return the (vendor, object) pairs :func:`preset` knows, sorted."""
    return sorted(PRESETS)


def preset(vendor: str, name: str) -> TransactionMapping:
    """Return the built-in mapping of a connector's object.

    Args:
        vendor: The vendor as the connectors name it (``"quickbooks"``, ``"stripe"``…).
        name: The object as that connector takes it (``"Invoice"``, ``"charges"``, ``"deals"``).

    Returns:
        The mapping; extend or override it with :meth:`TransactionMapping.with_fields`.

    Raises:
        ConfigurationError: No preset has that name; the message lists those that exist.
    """
    data = PRESETS.get((vendor, name))
    if data is None:
        known = ", ".join(f"{each_vendor}/{each_name}" for each_vendor, each_name in presets())
        raise ConfigurationError(f"no mapping preset for {vendor}/{name}; known: {known}")
    # Named after what it maps, so rows remember which preset made them.
    return TransactionMapping.from_data({"name": f"{vendor}/{name}", **data})
