"""Declarative mappings: checked up front, one typed error per unmappable record."""

from __future__ import annotations

import json
from decimal import ROUND_DOWN, Context, Decimal, localcontext
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incsync.errors import BadRecordError, ConfigurationError, UnmappableRecordError
from incsync.mapping import Line, Status, TransactionMapping, currency_exponent, preset
from incsync.mapping._columns import lines_from_json, lines_json

BASE: dict[str, Any] = {
    "kind": "invoice",
    "record_id": "id",
    "date": "day",
    "amount": "total",
    "currency": "ccy",
}
RAW = {"id": "7", "day": "2024-05-01", "total": "10.005", "ccy": "bhd"}


def test_every_mistake_is_listed_with_its_path() -> None:
    """One error lists each mistake, named by its full key; nothing stops at the first."""
    bad = {
        **BASE,
        "kind": "invoise",
        "amount": {"path": "total", "convert": "decimals"},
        "status": {"path": "s", "table": {"x": "wn"}},
        "where": [{"path": "Type", "equals": "A", "in": ["B"]}],
        "lines": {"path": "Line"},
        "custmer_id": "c",
    }
    with pytest.raises(ConfigurationError) as caught:
        TransactionMapping.from_data(bad)
    message = str(caught.value)
    for key in (
        "kind.value: 'invoise' is not a kind",
        "amount.convert: unknown converter 'decimals'",
        "status.table.x: 'wn' is not a status",
        "where[0]: expected exactly one of",
        "lines.amount: missing",
        'custmer_id: unknown key; did you mean "customer_id"?',
    ):
        assert key in message
    assert "6 mistake(s)" in message


def test_a_missing_required_key_is_named() -> None:
    """A mapping without an amount is refused, naming it."""
    with pytest.raises(ConfigurationError, match="amount: missing"):
        TransactionMapping.from_data({k: v for k, v in BASE.items() if k != "amount"})


def test_amounts_take_the_currency_exponent() -> None:
    """BHD has three places; the code is upper-cased; rounding is half up."""
    result = TransactionMapping.from_data(BASE).map(RAW)
    assert result is not None
    assert (result.amount, result.currency, result.status) == (
        Decimal("10.005"),
        "BHD",
        Status.OPEN,
    )
    usd = TransactionMapping.from_data(BASE).map({**RAW, "ccy": "USD"})
    assert usd is not None
    assert usd.amount == Decimal("10.01")
    assert (currency_exponent("JPY"), currency_exponent("USD"), currency_exponent("KWD")) == (
        0,
        2,
        3,
    )


def test_a_record_outside_the_conditions_is_not_a_transaction() -> None:
    """where: a record that does not match maps to None, not an error."""
    mapping = TransactionMapping.from_data({**BASE, "where": [{"path": "type", "in": ["sale"]}]})
    assert mapping.map({**RAW, "type": "bill"}) is None
    assert not mapping.applies_to({**RAW, "type": "bill"})
    assert mapping.map({**RAW, "type": "sale"}) is not None


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        ({**RAW, "total": None}, "amount", "no value at total"),
        ({**RAW, "total": "ten"}, "amount", "expected a number"),
        ({**RAW, "day": "yesterday"}, "date", "not an ISO 8601"),
        ({**RAW, "ccy": "dollars"}, "currency", "three-letter"),
    ],
)
def test_an_unmappable_record_raises_one_typed_error(
    raw: dict[str, Any], field: str, words: str
) -> None:
    """The error is a BadRecordError (set aside, the cycle goes on) naming field and record."""
    with pytest.raises(UnmappableRecordError, match=words) as caught:
        TransactionMapping.from_data(BASE).map(raw)
    assert isinstance(caught.value, BadRecordError)
    assert (caught.value.field, caught.value.record_id) == (field, "7")


def test_a_host_extends_a_preset() -> None:
    """with_fields replaces top-level keys and checks the result again."""
    base = preset("hubspot", "deals")
    custom = base.with_fields(
        currency={"path": "properties.deal_currency_code", "default": "EUR"},
        where=[{"path": "properties.dealstage", "equals": "closedwon"}],
    )
    open_deal: dict[str, Any] = {
        "id": "1",
        "properties": {"amount": "5", "createdate": "2024-01-01T00:00:00Z"},
    }
    assert custom.map(open_deal) is None
    won = {"id": "1", "properties": {**open_deal["properties"], "dealstage": "closedwon"}}
    result = custom.map(won)
    assert result is not None
    assert (result.currency, result.status) == ("EUR", Status.WON)
    with pytest.raises(ConfigurationError, match=r"amount\.convert"):
        base.with_fields(amount={"path": "x", "convert": "date"})


def test_an_unknown_preset_lists_the_known_ones() -> None:
    """preset() names the presets it has."""
    with pytest.raises(ConfigurationError, match="stripe/charges"):
        preset("stripe", "payouts")


@pytest.mark.parametrize("condition", [{"equals": "sale"}, {"in": ["sale", "bill"]}])
def test_a_condition_on_an_object_or_a_list_does_not_hold(condition: dict[str, Any]) -> None:
    """A value that is an object or a list equals no text, number or flag: not a transaction."""
    mapping = TransactionMapping.from_data({**BASE, "where": [{"path": "type", **condition}]})
    assert mapping.map({**RAW, "type": {"name": "sale"}}) is None
    assert mapping.map({**RAW, "type": ["sale"]}) is None
    assert mapping.map({**RAW, "type": "sale"}) is not None


def test_a_kind_read_from_the_payload_that_is_no_kind_cannot_be_mapped() -> None:
    """A kind (or status) taken from a path must be a known word; another is this record's
    error, naming the field, not a failure of the whole page."""
    mapping = TransactionMapping.from_data({**BASE, "kind": {"path": "type"}})
    transaction = mapping.map({**RAW, "type": "credit_note"})
    assert transaction is not None
    assert transaction.amount == Decimal("-10.005")
    with pytest.raises(UnmappableRecordError, match="'banana' is not a kind") as caught:
        mapping.map({**RAW, "type": "banana"})
    assert (caught.value.field, caught.value.record_id) == ("kind", "7")


_LINE_TEXT = st.none() | st.text(max_size=6) | st.sampled_from(['"', "\\", "\n", "é", "\x7f", "€"])
_LINE_NUMBER = st.none() | st.decimals(allow_nan=False, allow_infinity=False, places=3)


@given(
    st.lists(
        st.builds(
            Line,
            amount=st.decimals(allow_nan=False, allow_infinity=False, places=2),
            product_id=_LINE_TEXT,
            product_name=_LINE_TEXT,
            description=_LINE_TEXT,
            quantity=_LINE_NUMBER,
            unit_price=_LINE_NUMBER,
        ),
        max_size=3,
    )
)
def test_lines_are_kept_as_the_json_of_one_object_per_line(lines: list[Line]) -> None:
    """The stored text is what ``json`` writes for the lines (numbers as decimal text, quotes,
    control characters and non-ASCII text escaped as it escapes them), and reads back the same."""
    as_objects = [
        {
            "amount": str(line.amount),
            "product_id": line.product_id,
            "product_name": line.product_name,
            "description": line.description,
            "quantity": None if line.quantity is None else str(line.quantity),
            "unit_price": None if line.unit_price is None else str(line.unit_price),
        }
        for line in lines
    ]
    text = lines_json(lines)
    assert text == json.dumps(as_objects, ensure_ascii=False)
    assert lines_from_json(text) == tuple(lines)


def test_amounts_round_half_up_whatever_decimal_context_the_host_set() -> None:
    """A host's own decimal context (a small precision, another rounding) in the mapping thread
    changes no amount: 1234.565 is 1234.57 under every context."""
    invoice = {"Id": "1", "TxnDate": "2026-05-04", "TotalAmt": "1234.565", "Line": []}
    with localcontext(Context(prec=4, rounding=ROUND_DOWN)):
        transaction = preset("quickbooks", "Invoice").map(invoice)
    assert transaction is not None
    assert transaction.amount == Decimal("1234.57")
    assert str(transaction.amount) == "1234.57"
