"""How a checked mapping reads a payload: its converters, and its parts compiled into functions.

A mapping is checked once (:meth:`TransactionMapping.from_data`) and then reads every record a
source sends, so each part is turned into a plain function when the mapping is built: a field
into a getter with its paths, converter, table and default bound, a condition into a test with
its compared values already a set, the whole mapping into one function from a payload to a
:class:`~incsync.mapping.MappedTransaction`. Nothing about the mapping is looked up, validated
or built again per record; these functions are the only way a mapping reads a payload.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from incsync.errors import UnmappableRecordError
from incsync.fields import DottedPath
from incsync.mapping._value import (
    CustomValue,
    Kind,
    Line,
    MappedTransaction,
    Party,
    Status,
    from_minor_units,
    quantize,
    to_currency,
)
from incsync.timestamps import parse_dotnet_date, parse_epoch_millis, parse_epoch_seconds
from incsync.timestamps import parse_timestamp as _parse_timestamp

if TYPE_CHECKING:
    from incsync.mapping._spec import Field, LinesSpec

__all__ = [
    "CONVERTERS",
    "Getter",
    "MapFunction",
    "Test",
    "compile_field",
    "compile_mapping",
    "compile_test",
]

Getter = Callable[[object], object]
"""Reads one field of a document: its value, or ``None`` where none is; raises ``ValueError`` or
``TypeError`` when the value is there but unreadable."""

Test = Callable[[object], bool]
"""Tells whether a condition holds in a document."""

MapFunction = Callable[[object, "str | None", "str | None"], "MappedTransaction | None"]
"""A compiled mapping: ``(raw, source_key, record_id)`` to the transaction, or ``None``."""


def _text(value: object) -> str:
    if type(value) is str:
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"expected text or a whole number, got {value!r}")
    return str(value)


def _decimal(value: object) -> Decimal:
    # A JSON float is read through its shortest repr, so 12.75 is Decimal("12.75"), not the
    # binary fraction next to it.
    if type(value) is int:  # a quantity, a total in minor units: always finite
        return Decimal(value)
    if type(value) is float:
        number = Decimal(repr(value))
    elif isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise TypeError(f"expected a number, got {value!r}")
    else:
        try:
            number = Decimal(repr(value) if isinstance(value, float) else value)
        except InvalidOperation:
            raise ValueError(f"expected a number, got {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"expected a finite number, got {value!r}")
    return number


def _date(value: object) -> date:
    # A calendar date as written ("2015-07-24"), or the UTC date of a timestamp; a timestamp
    # without a zone is read as UTC, so its date is the one it shows.
    if isinstance(value, str) and len(value) == 10:
        return date.fromisoformat(value)
    return _parse_timestamp(value, "date", assume_utc=True).date()


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise ValueError(f"expected true or false, got {value!r}")


#: Every converter a field may name, by name: each takes the raw value (never ``None``).
CONVERTERS: Mapping[str, Callable[[object], Any]] = {
    "text": _text,
    "decimal": _decimal,
    "minor_units": _decimal,  # scaled by the currency's exponent once the currency is known
    "date": _date,
    "epoch_seconds": lambda value: parse_epoch_seconds(value, "date").date(),
    "epoch_ms": lambda value: parse_epoch_millis(value, "date").date(),
    "dotnet_date": lambda value: parse_dotnet_date(value, "date").date(),
    "boolean": _boolean,
}


# -- fields and conditions -------------------------------------------------------------------


def compile_field(
    paths: Sequence[DottedPath],
    convert: str,
    table: Mapping[str, object] | None,
    default: object,
    value: object,
) -> Getter:
    """Return the getter of a field (see :class:`~incsync.mapping.Field` for what each part means).

    The paths are tried in order and the first that holds a value is read: through the lookup
    table when there is one (a value missing from it gives ``default``, or is an error without
    one), else through the converter. Where no path holds a value the field gives ``default``,
    read by the converter like the values it stands in for (``"0"``, ``"USD"``).
    """
    if value is not None:
        return lambda _document: value
    converter = CONVERTERS[convert]
    readers = tuple(
        (path.get, converter if table is None else _table_reader(table, default, path))
        for path in paths
    )
    absent = _absent(converter if table is None else None, default)
    if len(readers) == 1:
        ((get, read),) = readers

        def get_one(document: object) -> object:
            found = get(document)
            return absent() if found is None else read(found)

        return get_one

    def get_first(document: object) -> object:
        for get, read in readers:
            found = get(document)
            if found is not None:
                return read(found)
        return absent()

    return get_first


def _table_reader(
    table: Mapping[str, object], default: object, path: DottedPath
) -> Callable[[object], object]:
    # Looked up by the value as text; true and false as JSON writes them.
    lookup = dict(table)
    known = ", ".join(map(repr, lookup))

    def read(found: object) -> object:
        text = str(found).lower() if isinstance(found, bool) else str(found)
        if text in lookup:
            return lookup[text]
        if default is not None:
            return default
        raise ValueError(f"{found!r} at {path} is not in the table ({known})")

    return read


def _absent(convert: Callable[[object], object] | None, default: object) -> Callable[[], object]:
    """Return what gives a field's value where no path holds one: its default, converted once."""
    if default is None or convert is None:
        return lambda: default
    try:
        converted = convert(default)
    except (ValueError, TypeError):
        # A default the converter refuses fails each record that needs it, saying why.
        return functools.partial(convert, default)
    return lambda: converted


def compile_test(path: DottedPath, operator: str, values: Sequence[object]) -> Test:
    """Return the test of a condition (see :class:`~incsync.mapping.Condition`)."""
    get = path.get
    if operator == "present":
        wanted = values[0]
        return lambda document: (get(document) is not None) is wanted
    # Compared by type and value, as the REST connector's tombstone markers are: true is not 1.
    member_is_true = operator != "not_in"
    if len(values) == 1:
        (value,) = values
        kind = type(value)

        def equals(document: object) -> bool:
            found = get(document)
            return (type(found) is kind and found == value) is member_is_true

        return equals
    typed = frozenset((type(each), each) for each in values)

    def holds(document: object) -> bool:
        found = get(document)
        try:
            member = (type(found), found) in typed
        except TypeError:  # an object or a list: equal to none of the values compared with
            member = False
        return member is member_is_true

    return holds


# -- the whole mapping -----------------------------------------------------------------------
#
# A transaction's facts are read in a fixed order (record id, kind, status, currency, amount,
# date, customer, owner, lines, custom fields), so a record with several unreadable facts is
# refused for the first. Each reader names the fact it is at, so that any ValueError or
# TypeError on the way (a converter's, a table's, a missing value's) becomes one
# UnmappableRecordError naming that fact, raised from a single place.


def _word(words: type[Kind] | type[Status]) -> Callable[[object], Any]:
    """Return the check that turns a word read from a payload into a kind or a status."""
    by_value: dict[object, Kind | Status] = {member.value: member for member in words}
    known = ", ".join(map(str, by_value))

    def word(value: object) -> Kind | Status:
        try:
            return by_value[value]
        except (KeyError, TypeError):  # TypeError: an object or a list, which names no word
            raise ValueError(
                f"{value!r} is not a {words.__name__.lower()}; known: {known}"
            ) from None

    return word


def _required(field: Field | None) -> tuple[Getter, str]:
    """Return the getter of a fact a transaction cannot do without, and where it is read."""
    if field is None:

        def not_said(_document: object) -> object:
            raise ValueError("the mapping does not say where it is, and none was given")

        return not_said, ""
    return field.get, field.where


def _present(value: object, where: str, kind: type) -> Any:
    """Return a required fact's value, or raise saying why the transaction cannot use it."""
    if value is None:
        raise ValueError(f"no value at {where}")
    if not isinstance(value, kind):
        raise TypeError(f"expected {kind.__name__}, got {value!r}")
    return value


def _optional(field: Field | None) -> Getter:
    """Return the getter of a fact a transaction may lack (``None`` when the mapping has none)."""
    return (lambda _document: None) if field is None else field.get


def _scale(field: Field | None) -> Callable[[Decimal, str], Decimal]:
    """Return what brings an amount to its currency's places, as the field's converter says."""
    minor = field is not None and field.convert == "minor_units"
    return from_minor_units if minor else quantize


def _unmappable(error: Exception, fact: str, record_id: str | None) -> UnmappableRecordError:
    return UnmappableRecordError(str(error), field=fact, record_id=record_id)


_Party = Callable[[object], "Party | None"]


def _party(fields: Mapping[str, Field], role: str) -> tuple[str, _Party]:
    """Return a customer's or an owner's fact name and reader: ``None`` when no part is named."""
    named = [f"{role}_{part}" in fields for part in ("id", "name", "email")]
    if not any(named):
        return role, lambda _document: None
    get_id, get_name, get_email = (
        _optional(fields.get(f"{role}_{part}")) for part in ("id", "name", "email")
    )

    def party(document: object) -> Party | None:
        # A part that is not text (an object where a name was expected) counts as absent.
        id_ = get_id(document)
        name = get_name(document)
        email = get_email(document)
        id_ = id_ if isinstance(id_, str) else None
        name = name if isinstance(name, str) else None
        email = email if isinstance(email, str) else None
        if id_ is None and name is None and email is None:
            return None
        return Party(id_, name, email)

    return role, party


def _all_of(tests: Sequence[Test]) -> Test | None:
    """Return one test that holds where every one of ``tests`` does (``None`` for no tests).

    A line is tested once per line of every record: one condition is called as it is, without
    a generator around it.
    """
    if not tests:
        return None
    if len(tests) == 1:
        return tests[0]
    return lambda document: all(test(document) for test in tests)


_Lines = Callable[[object, "str | None", str, bool], tuple[Line, ...]]


def _lines(spec: LinesSpec | None) -> _Lines:
    """Return the reader of a transaction's lines (none without a ``lines`` key)."""
    if spec is None:
        return lambda _document, _record_id, _currency, _negative: ()
    get_rows, kept = spec.path.get, _all_of([condition.holds for condition in spec.where])
    fields = spec.fields
    get_amount, amount_at = _required(fields.get("amount"))
    scale = _scale(fields.get("amount"))
    get_product_id = _optional(fields.get("product_id"))
    get_product_name = _optional(fields.get("product_name"))
    get_description = _optional(fields.get("description"))
    get_quantity = _optional(fields.get("quantity"))
    get_unit_price = _optional(fields.get("unit_price"))

    def lines(
        document: object, record_id: str | None, currency: str, negative: bool
    ) -> tuple[Line, ...]:
        rows = get_rows(document)
        if not isinstance(rows, list):
            return ()
        read: list[Line] = []
        index, fact = 0, "amount"
        try:
            for index, row in enumerate(rows):  # noqa: B007 - the index names a failing line
                if kept is not None and not kept(row):
                    continue
                fact = "amount"
                amount = scale(_present(get_amount(row), amount_at, Decimal), currency)
                fact = "product_id"
                product_id = get_product_id(row)
                fact = "product_name"
                product_name = get_product_name(row)
                fact = "description"
                description = get_description(row)
                fact = "quantity"
                quantity = get_quantity(row)
                fact = "unit_price"
                unit_price = get_unit_price(row)
                read.append(
                    Line(
                        amount=-abs(amount) if negative else amount,
                        product_id=product_id if isinstance(product_id, str) else None,
                        product_name=product_name if isinstance(product_name, str) else None,
                        description=description if isinstance(description, str) else None,
                        quantity=quantity if isinstance(quantity, Decimal) else None,
                        unit_price=unit_price if isinstance(unit_price, Decimal) else None,
                    )
                )
        except (ValueError, TypeError) as error:
            raise _unmappable(error, f"lines[{index}].{fact}", record_id) from None
        return tuple(read)

    return lines


def compile_mapping(
    root: Sequence[DottedPath],
    where: Sequence[Test],
    status_when: Sequence[tuple[Test, Status]],
    fields: Mapping[str, Field],
    lines: LinesSpec | None,
    custom: Mapping[str, Field],
) -> tuple[Callable[[object], object], MapFunction]:
    """Return a checked mapping's two functions: the document a payload holds, and ``map``.

    See :meth:`TransactionMapping.map` for what ``map`` gives and raises.
    """
    document_of = _document_reader(root)
    get_record_id, record_id_at = _required(fields.get("record_id"))
    get_kind, kind_at = _required(fields["kind"])
    get_status, status_at = _required(fields["status"])
    get_currency, currency_at = _required(fields.get("currency"))
    get_amount, amount_at = _required(fields["amount"])
    get_date, date_at = _required(fields["date"])
    scale = _scale(fields["amount"])
    kind_word, status_word = _word(Kind), _word(Status)
    (customer, customer_of), (owner, owner_of) = _party(fields, "customer"), _party(fields, "owner")
    lines_of = _lines(lines)
    custom_of = [(name, f"custom.{name}", field.get) for name, field in custom.items()]
    where, status_when = tuple(where), tuple(status_when)

    def map_raw(
        raw: object, source_key: str | None, record_id: str | None
    ) -> MappedTransaction | None:
        document = document_of(raw)
        for holds in where:
            if not holds(document):
                return None
        fact = "record_id"
        try:
            if record_id is None:
                record_id = _present(get_record_id(document), record_id_at, str)
            fact = "kind"
            kind: Kind = kind_word(_present(get_kind(document), kind_at, object))
            fact = "status"
            for holds, word in status_when:
                if holds(document):
                    status = word
                    break
            else:
                status = status_word(_present(get_status(document), status_at, object))
            fact = "currency"
            currency = to_currency(_present(get_currency(document), currency_at, object))
            fact = "amount"
            amount = scale(_present(get_amount(document), amount_at, Decimal), currency)
            fact = "date"
            day = _present(get_date(document), date_at, date)
            fact = customer
            customer_party = customer_of(document)
            fact = owner
            owner_party = owner_of(document)
            negative = kind.signed_negative
            read_lines = lines_of(document, record_id, currency, negative)
            chosen: dict[str, CustomValue] = {}
            for name, fact, get in custom_of:  # noqa: B007 - the fact names a failing field
                chosen[name] = get(document)  # type: ignore[assignment]  # converters' values
        except (ValueError, TypeError) as error:
            raise _unmappable(error, fact, record_id) from None
        # The kind decides the sign, whatever sign the source wrote: sources write credit notes
        # and refunds as positive totals, and a host sums amounts across kinds.
        return MappedTransaction(
            record_id=record_id,
            kind=kind,
            status=status,
            date=day,
            amount=-abs(amount) if negative else amount,
            currency=currency,
            source_key=source_key,
            customer=customer_party,
            owner=owner_party,
            lines=read_lines,
            custom=chosen,
        )

    return document_of, map_raw


def _document_reader(root: Sequence[DottedPath]) -> Callable[[object], object]:
    # The first root that holds an object: Stripe's stored observations wrap the object in
    # data.object, while a listed object is the object itself.
    gets = tuple(path.get for path in root)
    if not gets or root[0].parts == ():
        return lambda raw: raw

    def document(raw: object) -> object:
        for get in gets:
            found = get(raw)
            if isinstance(found, Mapping):
                return found
        return raw

    return document
