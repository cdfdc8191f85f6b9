"""The query language and wire formats of the fake QuickBooks Online API, apart from HTTP.

QuickBooks Online answers ``/query`` with a SQL-like dialect (Intuit, "Query operations and
syntax")::

    SELECT * | count(*) FROM IntuitEntity
       [WHERE WhereClause] [ORDERBY OrderByClause] [STARTPOSITION Number] [MAXRESULTS Number]

This module holds the subset the fake understands, kept apart from the HTTP shell so the parser can
be read (and tested) alone. Keywords are case-insensitive, as in QuickBooks. Conditions are
joined by ``AND`` only (QuickBooks has no ``OR``); the fake filters and sorts on
``MetaData.LastUpdatedTime``, ``MetaData.CreateTime`` and ``Id``. Anything else is refused with
the Fault QuickBooks uses for a statement it cannot parse (code 4000) or accept (code 4001), never
silently ignored.

The wire formats (times in the company's offset, the Fault envelopes, the XML throttle body) live
here too: they are plain data, and keeping them out of the fake keeps its module readable.
"""

from __future__ import annotations

import operator
import random
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone, tzinfo
from typing import Any, Protocol, TypeVar

import attrs
from dateutil import parser as dateutil_parser

__all__ = [
    "DEFAULT_MAX_RESULTS",
    "MAX_RESULTS_LIMIT",
    "STANDARD_ENTITIES",
    "THROTTLE_DETAIL",
    "THROTTLE_MESSAGE",
    "IdCondition",
    "OrderTerm",
    "Query",
    "QueryError",
    "Row",
    "TimeCondition",
    "auth_fault_body",
    "id_order",
    "local_millis",
    "local_seconds",
    "page_of",
    "parse_query",
    "parse_time_literal",
    "parser_error",
    "run_query",
    "throttle_xml",
    "validation_error",
]

MAX_RESULTS_LIMIT = 1000
"""The largest ``MAXRESULTS`` QuickBooks accepts; more is a validation fault."""

DEFAULT_MAX_RESULTS = 100
"""The page size QuickBooks uses when a statement has no ``MAXRESULTS``."""

STANDARD_ENTITIES = (
    *("Account", "Attachable", "Bill", "BillPayment", "Budget", "Class", "CompanyInfo"),
    *("CreditMemo", "Customer", "Department", "Deposit", "Employee", "Estimate", "Invoice"),
    *("Item", "JournalEntry", "Payment", "PaymentMethod", "Preferences", "Purchase"),
    *("PurchaseOrder", "RefundReceipt", "SalesReceipt", "TaxCode", "Term", "TimeActivity"),
    *("Transfer", "Vendor", "VendorCredit"),
)
"""Entities every QuickBooks company has, even before it holds a record of them."""

THROTTLE_MESSAGE = "message=ThrottleExceeded; errorCode=003001; statusCode=429"
"""The ``Message`` of a 429, as QuickBooks writes it (in JSON and in XML)."""

THROTTLE_DETAIL = "The request limit was reached.  Try again later"
"""The ``Detail`` of a 429 (two spaces, as sent)."""

# Verbatim from intuit/QuickBooks-V3-PHP-SDK#54, sent even to clients that asked for JSON.
_THROTTLE_XML = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<IntuitResponse time="{time}" xmlns="http://schema.intuit.com/finance/v3">
    <Fault type="SERVICE">
        <Error code="3001">
            <Message>{message}</Message>
            <Detail>{detail}</Detail>
        </Error>
    </Fault>
</IntuitResponse>
"""
_LAST_UPDATED = "MetaData.LastUpdatedTime"
_CREATED = "MetaData.CreateTime"
_ID = "Id"
_FIELDS = {name.lower(): name for name in (_LAST_UPDATED, _CREATED, _ID)}

_TOKEN = re.compile(
    r"""(?:
        (?P<string>'(?:[^'\\]|\\.)*')
      | (?P<number>\d+)
      | (?P<op>>=|<=|!=|<>|=|<|>)
      | (?P<punct>[*,()])
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)


class QueryError(Exception):
    """A statement QuickBooks would refuse, carrying the parts of its Fault body.

    Attributes:
        code: The Fault's error code (``"4000"`` cannot parse, ``"4001"`` invalid).
        message: The Fault's ``Message``.
        detail: The Fault's ``Detail``.
    """

    def __init__(self, code: str, message: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.message = message
        self.detail = detail


def parser_error(detail: str) -> QueryError:
    """Return the fault for a statement that does not parse (code 4000)."""
    return QueryError("4000", "Error parsing query", f"QueryParserError: {detail}")


def validation_error(detail: str) -> QueryError:
    """Return the fault for a statement that parses but is not allowed (code 4001)."""
    return QueryError("4001", "Invalid query", f"QueryValidationError: {detail}")


@attrs.frozen
class TimeCondition:
    """``<timestamp field> <op> '<literal>'``, compared at whole seconds in UTC."""

    field: str
    operator: str
    moment: datetime


@attrs.frozen
class IdCondition:
    """``Id = '<id>'`` or ``Id IN ('<id>', ...)``."""

    ids: frozenset[str]


Condition = TimeCondition | IdCondition


@attrs.frozen
class OrderTerm:
    """One ``ORDERBY`` key."""

    field: str
    descending: bool


@attrs.frozen
class Query:
    """A parsed select statement.

    Attributes:
        entity: The entity name as written after ``FROM``.
        count_only: ``SELECT count(*)`` rather than ``SELECT *``.
        conditions: The ``WHERE`` conditions, all of which must hold.
        order_by: The ``ORDERBY`` keys, most significant first; empty means no promised order.
        start_position: The 1-based ``STARTPOSITION`` (0 is read as 1, as QuickBooks does).
        max_results: The ``MAXRESULTS`` page size.
    """

    entity: str
    count_only: bool
    conditions: tuple[Condition, ...]
    order_by: tuple[OrderTerm, ...]
    start_position: int
    max_results: int


class Row(Protocol):
    """What the query engine reads from a stored record."""

    @property
    def record_id(self) -> str:
        """The record's ``Id``."""

    @property
    def created(self) -> datetime:
        """``MetaData.CreateTime`` (aware UTC, whole seconds)."""

    @property
    def updated(self) -> datetime:
        """``MetaData.LastUpdatedTime`` (aware UTC, whole seconds)."""

    @property
    def id_key(self) -> tuple[int, int, str]:
        """``id_order(record_id)``, computed once: sorting 25,000 rows per page must be cheap."""


RowT = TypeVar("RowT", bound=Row)


def local_seconds(moment: datetime, zone: tzinfo) -> str:
    """Write ``moment`` as QuickBooks writes entity times: company offset, whole seconds."""
    return moment.astimezone(zone).isoformat(timespec="seconds")


def local_millis(moment: datetime, zone: tzinfo) -> str:
    """Write ``moment`` as QuickBooks writes a response's ``time``: company offset, milliseconds."""
    return moment.astimezone(zone).isoformat(timespec="milliseconds")


def throttle_xml(time: str) -> str:
    """Return the XML body of a 429 QuickBooks sometimes sends although JSON was asked for."""
    return _THROTTLE_XML.format(time=time, message=THROTTLE_MESSAGE, detail=THROTTLE_DETAIL)


def auth_fault_body(
    status: int, code: str, name: str, detail: str | None, fault_type: str, epoch_ms: int
) -> dict[str, Any]:
    """Return the body of a 401 or 403: the lowercase envelope of QuickBooks' gateway.

    As sent in routablehq/python-quickbooks#250: ``fault.error[]`` in lowercase and ``time`` in
    epoch milliseconds, unlike the ``Fault`` bodies of the data services.
    """
    message = f"message={name}; errorCode={int(code):06d}; statusCode={status}"
    error = {"message": message, "detail": detail, "code": code, "element": None}
    body: dict[str, Any] = dict.fromkeys(["warnings", "intuitObject"])
    body["fault"] = {"error": [error], "type": fault_type}
    body |= dict.fromkeys(["report", "queryResponse"])
    body |= {"batchItemResponse": [], "attachableResponse": []}
    body |= dict.fromkeys(["syncErrorResponse", "requestId"])
    body |= {"time": epoch_ms, "status": None, "cdcresponse": []}
    return body


def parse_time_literal(text: str, zone: tzinfo) -> datetime:
    """Read a timestamp literal as QuickBooks does, truncated to whole seconds in UTC.

    ``Z`` and numeric offsets are honoured; a date or a time without offset is read in the
    company's zone.

    Raises:
        QueryError: ``text`` is not a date or date-time.
    """
    try:
        parsed = dateutil_parser.isoparse(text.strip())
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=zone)
        return parsed.astimezone(timezone.utc).replace(microsecond=0)
    except (ValueError, OverflowError):  # not a date, or one that leaves datetime's range
        raise validation_error(f"'{text}' is not a valid date-time value") from None


def parse_query(text: str, zone: tzinfo) -> Query:
    """Parse a select statement.

    Args:
        text: The statement, as sent in ``?query=`` or a POST body.
        zone: The company's zone, for literals without an offset.

    Returns:
        The parsed statement.

    Raises:
        QueryError: QuickBooks would answer the statement with a 400 Fault.
    """
    if not text.strip():
        raise parser_error("The query provided was empty")
    return _Parser(_tokenize(text), zone).statement()


def run_query(query: Query, rows: Iterable[RowT], rng: random.Random) -> list[RowT]:
    """Return every row the statement selects, in answer order, before paging.

    Without ``ORDERBY`` QuickBooks promises no order, and rows that tie on every ``ORDERBY`` key
    come back in no promised order either, so the rows are shuffled before the (stable) sorts. An
    ``Id`` key makes the order total, and the shuffle is skipped as it could change nothing.
    """
    selected = list(rows)
    for condition in query.conditions:
        test = _predicate(condition)
        selected = [row for row in selected if test(row)]
    if not any(term.field == _ID for term in query.order_by):
        rng.shuffle(selected)
    for term in reversed(query.order_by):
        selected.sort(key=_SORT_KEYS[term.field], reverse=term.descending)
    return selected


def page_of(query: Query, rows: Sequence[RowT]) -> list[RowT]:
    """Return the slice ``STARTPOSITION``/``MAXRESULTS`` select from ``rows``."""
    start = query.start_position - 1
    return list(rows[start : start + query.max_results])


_SORT_KEYS = {
    _LAST_UPDATED: operator.attrgetter("updated"),
    _CREATED: operator.attrgetter("created"),
    _ID: operator.attrgetter("id_key"),
}
_OPERATORS = {
    "=": operator.eq,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _predicate(condition: Condition) -> Callable[[Row], bool]:
    if isinstance(condition, IdCondition):
        ids = condition.ids
        return lambda row: row.record_id in ids
    compare = _OPERATORS[condition.operator]
    moment = condition.moment
    if condition.field == _LAST_UPDATED:
        return lambda row: bool(compare(row.updated, moment))
    return lambda row: bool(compare(row.created, moment))


def id_order(record_id: str) -> tuple[int, int, str]:
    """Return a sort key that orders ids as QuickBooks does (as numbers when they are)."""
    # QuickBooks Ids are numbers written as strings: "10" sorts after "9".
    if record_id.isdigit():
        return (0, int(record_id), "")
    return (1, 0, record_id)


_Token = tuple[str, str]


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return tokens
        match = _TOKEN.match(text, position)
        if match is None or match.lastgroup is None:
            raise parser_error(
                f"Invalid content. Lexical error at line 1, column {position + 1}. "
                f"Encountered: {text[position]!r}"
            )
        tokens.append((match.lastgroup, match.group(match.lastgroup)))
        position = match.end()


class _Parser:
    def __init__(self, tokens: list[_Token], zone: tzinfo) -> None:
        self._tokens = tokens
        self._position = 0
        self._zone = zone

    def statement(self) -> Query:
        self._expect_keyword("SELECT")
        count_only = False
        if self._accept_keyword("COUNT"):
            for punct in "(*)":
                self._expect_punct(punct)
            count_only = True
        else:
            self._expect_punct("*", hint="'*' or count(*) (the fake does not project properties)")
        self._expect_keyword("FROM")
        entity = self._expect("word", "an entity name")
        conditions: list[Condition] = []
        if self._accept_keyword("WHERE"):
            conditions.append(self._condition())
            while self._accept_keyword("AND"):
                conditions.append(self._condition())
        order_by: list[OrderTerm] = []
        if self._accept_keyword("ORDERBY"):
            order_by.append(self._order_term())
            while self._accept_punct(","):
                order_by.append(self._order_term())
        start_position = 1
        if self._accept_keyword("STARTPOSITION"):
            start_position = max(int(self._expect("number", "a number")), 1)
        max_results = DEFAULT_MAX_RESULTS
        if self._accept_keyword("MAXRESULTS"):
            max_results = int(self._expect("number", "a number"))
        if self._position < len(self._tokens):
            raise parser_error(f'Encountered "{self._tokens[self._position][1]}".')
        if max_results > MAX_RESULTS_LIMIT:
            raise validation_error(
                f"value {max_results} is too large. Max allowed value is {MAX_RESULTS_LIMIT}"
            )
        if max_results < 1:
            raise validation_error(f"value {max_results} is too small. Min allowed value is 1")
        return Query(
            entity, count_only, tuple(conditions), tuple(order_by), start_position, max_results
        )

    def _condition(self) -> Condition:
        field = self._field("queryable")
        if field == _ID:
            if self._accept_keyword("IN"):
                self._expect_punct("(")
                ids = [self._string()]
                while self._accept_punct(","):
                    ids.append(self._string())
                self._expect_punct(")")
                return IdCondition(frozenset(ids))
            comparison = self._expect("op", "an operator")
            if comparison != "=":
                raise validation_error(
                    f"operator '{comparison}' is not supported on Id by the fake"
                )
            return IdCondition(frozenset({self._string()}))
        comparison = self._expect("op", "one of =, <, <=, >, >=")
        if comparison not in _OPERATORS:
            raise parser_error(f'Encountered "{comparison}". Was expecting one of =, <, <=, >, >=')
        return TimeCondition(field, comparison, parse_time_literal(self._string(), self._zone))

    def _order_term(self) -> OrderTerm:
        field = self._field("sortable")
        if self._accept_keyword("DESC"):
            return OrderTerm(field, descending=True)
        self._accept_keyword("ASC")
        return OrderTerm(field, descending=False)

    def _field(self, role: str) -> str:
        name = self._expect("word", "a property name")
        field = _FIELDS.get(name.lower())
        if field is None:
            raise validation_error(
                f"property '{name}' is not {role} "
                f"(the fake supports {_LAST_UPDATED}, {_CREATED} and {_ID})"
            )
        return field

    def _string(self) -> str:
        quoted = self._expect("string", "a quoted value")
        return re.sub(r"\\(.)", r"\1", quoted[1:-1])

    def _expect(self, kind: str, what: str) -> str:
        if self._position >= len(self._tokens):
            raise parser_error(f'Encountered "<EOF>". Was expecting {what}')
        token_kind, text = self._tokens[self._position]
        if token_kind != kind:
            raise parser_error(f'Encountered "{text}". Was expecting {what}')
        self._position += 1
        return text

    def _accept_keyword(self, keyword: str) -> bool:
        if self._position < len(self._tokens):
            kind, text = self._tokens[self._position]
            if kind == "word" and text.upper() == keyword:
                self._position += 1
                return True
        return False

    def _expect_keyword(self, keyword: str) -> None:
        if not self._accept_keyword(keyword):
            found = self._tokens[self._position][1] if self._position < len(self._tokens) else ""
            raise parser_error(f'Encountered "{found or "<EOF>"}". Was expecting "{keyword}"')

    def _accept_punct(self, punct: str) -> bool:
        if self._position < len(self._tokens) and self._tokens[self._position] == ("punct", punct):
            self._position += 1
            return True
        return False

    def _expect_punct(self, punct: str, hint: str | None = None) -> None:
        if not self._accept_punct(punct):
            found = self._tokens[self._position][1] if self._position < len(self._tokens) else ""
            raise parser_error(f'Encountered "{found or "<EOF>"}". Was expecting {hint or punct}')
