"""The columns a store keeps a mapped row in, and the codec of its lines and custom fields.

One column list and one encoding for every store and for the CLI's export: a store converts only
what its column types cannot hold as they are (SQLite's decimal and date text).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any

from incsync.mapping._kept import MappedChange, MappedRow
from incsync.mapping._value import CustomValue, Kind, Line, MappedTransaction, Party, Status

__all__ = [
    "MAPPED_COLUMNS",
    "change_rows",
    "custom_from_json",
    "custom_json",
    "lines_from_json",
    "lines_json",
    "mapped_row",
    "mapped_values",
    "party",
]


# -- the columns a store keeps ---------------------------------------------------------------

MAPPED_COLUMNS = (
    "source_key",
    "record_id",
    "business_date",
    "kind",
    "status",
    "amount",
    "currency",
    "customer_id",
    "customer_name",
    "owner_id",
    "owner_name",
    "owner_email",
    "lines",
    "custom",
    "mapping",
    "mapping_version",
    "updated_at",
    "voided",
    "void_reason",
)
"""The columns of a mapped row, in the order :func:`mapped_values` gives them."""


def _same(value: Any) -> Any:
    return value


_NOBODY = Party()


def mapped_values(
    source_key: str,
    row: MappedRow,
    *,
    day: Callable[[date], object] = _same,
    money: Callable[[Decimal], object] = _same,
    stamp: Callable[[datetime], object] = _same,
) -> tuple[object, ...]:
    """Return a row's values in :data:`MAPPED_COLUMNS` order.

    The business date is a ``date``, the amount a ``Decimal`` and ``updated_at`` a datetime,
    each as ``day``, ``money`` and ``stamp`` encode it for a store whose columns cannot hold it
    as it is; lines and custom fields are JSON text.
    """
    value = row.transaction
    customer, owner = value.customer or _NOBODY, value.owner or _NOBODY
    return (
        source_key,
        value.record_id,
        day(value.date),
        value.kind.value,
        value.status.value,
        money(value.amount),
        value.currency,
        customer.id,
        customer.name,
        owner.id,
        owner.name,
        owner.email,
        lines_json(value.lines),
        custom_json(value.custom),
        row.mapping,
        row.mapping_version,
        stamp(row.updated_at),
        row.voided,
        row.void_reason,
    )


def mapped_row(values: Sequence[Any]) -> MappedRow:
    """Return the row :func:`mapped_values` gave (lines and custom as JSON text or parsed)."""
    (
        source_key,
        record_id,
        business_date,
        kind,
        status,
        amount,
        currency,
        customer_id,
        customer_name,
        owner_id,
        owner_name,
        owner_email,
        lines,
        custom,
        mapping,
        mapping_version,
        updated_at,
        voided,
        void_reason,
    ) = values
    return MappedRow(
        transaction=MappedTransaction(
            record_id=record_id,
            kind=Kind(kind),
            status=Status(status),
            date=business_date,
            amount=amount,
            currency=currency,
            source_key=source_key,
            customer=party(customer_id, customer_name),
            owner=party(owner_id, owner_name, owner_email),
            lines=lines_from_json(lines),
            custom=custom_from_json(custom),
        ),
        updated_at=updated_at,
        mapping=mapping,
        mapping_version=mapping_version,
        voided=bool(voided),
        void_reason=void_reason,
    )


def change_rows(
    source_key: str,
    changes: Sequence[tuple[MappedChange, int]],
    *,
    day: Callable[[date], object] = _same,
    money: Callable[[Decimal], object] = _same,
    stamp: Callable[[datetime], object] = _same,
    versioned: bool = True,
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """Return the parameters of a store's two statements: rows to write, and rows to void.

    A row to write is :func:`mapped_values`; a row to void is the reason, the source key and the
    record id. With ``versioned``, each ends with the raw version the change holds for, for the
    store's statement to check: source key, record id, its update time (as ``stamp`` gives it),
    its tombstone flag and the generation given with the change.

    Args:
        source_key: The source.
        changes: Each change with the generation its raw row was written under.
        day: Encodes a business date for the store (see :func:`mapped_values`).
        money: Encodes an amount for the store.
        stamp: Encodes an update time for the store.
        versioned: Whether the rows end with the version (``False`` for a store that has
            checked it already).
    """
    writes: list[tuple[object, ...]] = []
    voids: list[tuple[object, ...]] = []
    for change, generation in changes:
        record = change.record
        holds = (
            (source_key, record.id, stamp(record.updated_at), record.deleted, generation)
            if versioned
            else ()
        )
        if change.row is not None:
            values = mapped_values(source_key, change.row, day=day, money=money, stamp=stamp)
            writes.append(values + holds)
        else:
            voids.append((change.void, source_key, record.id, *holds))
    return writes, voids


# -- the codec of lines and custom fields ----------------------------------------------------

# Decimals are written as JSON text, so no digit is lost on the way through a float; a reader in
# SQL casts them ((line->>'amount')::numeric).


def _number(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


# Built once: json.dumps with any option builds a new encoder on every call.
_json_text = json.JSONEncoder(ensure_ascii=False).encode
# The json module's own quoting of a string, as _json_text writes strings (ensure_ascii=False).
_quote = encode_basestring


def _json_string(value: str | None) -> str:
    return "null" if value is None else _quote(value)


def _json_number_text(value: Decimal | None) -> str:
    return "null" if value is None else _quote(str(value))


def lines_json(lines: Sequence[Line]) -> str:
    """Return ``lines`` as the JSON text a store keeps (amounts as decimal text).

    The text is what ``json`` writes for a list of one object per line (keys in this order,
    ``", "`` and ``": "`` between items), put together from the quoted values: going through
    the encoder with an object per line took three times as long, a fifth of what keeping a
    record mapped costs in Python (bench/mapping.py).
    """
    return (
        "["
        + ", ".join(
            [
                f'{{"amount": {_quote(str(line.amount))}, '
                f'"product_id": {_json_string(line.product_id)}, '
                f'"product_name": {_json_string(line.product_name)}, '
                f'"description": {_json_string(line.description)}, '
                f'"quantity": {_json_number_text(line.quantity)}, '
                f'"unit_price": {_json_number_text(line.unit_price)}}}'
                for line in lines
            ]
        )
        + "]"
    )


def lines_from_json(value: str | Sequence[Mapping[str, Any]]) -> tuple[Line, ...]:
    """Return the lines a store kept (JSON text, or the list a ``jsonb`` column gives)."""
    kept = json.loads(value) if isinstance(value, str) else value
    return tuple(
        Line(
            amount=Decimal(str(line["amount"])),
            product_id=line.get("product_id"),
            product_name=line.get("product_name"),
            description=line.get("description"),
            quantity=_number(line.get("quantity")),
            unit_price=_number(line.get("unit_price")),
        )
        for line in kept
    )


# Custom values keep their type: text, true/false and null as themselves, a number or a date as
# a one-key object naming its type ({"decimal": "12.50"}), so reading them back gives the value
# the mapping gave.
def _custom_value(value: CustomValue) -> object:
    if isinstance(value, Decimal):
        return {"decimal": str(value)}
    if isinstance(value, date):
        return {"date": value.isoformat()}
    return value


def _custom_from(value: object) -> CustomValue:
    if isinstance(value, Mapping):
        if "decimal" in value:
            return Decimal(value["decimal"])
        return date.fromisoformat(value["date"])
    assert value is None or isinstance(value, str | bool)
    return value


def custom_json(custom: Mapping[str, CustomValue]) -> str:
    """Return the chosen custom fields as the JSON text a store keeps, each value typed."""
    if not custom:  # most mappings choose none
        return "{}"
    return _json_text({name: _custom_value(value) for name, value in custom.items()})


def custom_from_json(value: str | Mapping[str, Any]) -> dict[str, CustomValue]:
    """Return the custom fields a store kept (JSON text, or the object ``jsonb`` gives)."""
    kept = json.loads(value) if isinstance(value, str) else value
    return {name: _custom_from(each) for name, each in kept.items()}


def party(id_: str | None, name: str | None, email: str | None = None) -> Party | None:
    """Return the party a row's columns hold, or ``None`` when they hold nothing."""
    if id_ is None and name is None and email is None:
        return None
    return Party(id_, name, email)
