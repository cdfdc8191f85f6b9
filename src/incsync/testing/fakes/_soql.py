"""The subset of SOQL that the fake Salesforce answers, refused the way Salesforce refuses it.

:func:`compile_query` parses a query, checks it against the org's schema and returns a
:class:`QueryPlan` that filters and orders rows. A query Salesforce would refuse is refused with
Salesforce's ``errorCode`` and message shape (``MALFORMED_QUERY``, ``INVALID_FIELD``,
``INVALID_TYPE``, ``INVALID_QUERY_FILTER_OPERATOR``), so a connector meets the same failures here
as in production. Valid SOQL outside the subset (``OR``, ``NOT IN``, ``LIKE``, functions,
relationship fields, date literals such as ``TODAY``) is refused with a message saying the fake
lacks it.


The subset::

    SELECT Field[, Field ...] | COUNT() FROM SObject
    [WHERE condition [AND condition ...]]
        condition: Field op literal (op: = != <> < <= > >=) | Field IN (literal[, literal ...])
    [ORDER BY Field [ASC|DESC] [NULLS FIRST|LAST][, ...]]
    [LIMIT n] [OFFSET n]

Literals follow SOQL: strings in single quotes; dateTime (``2024-01-01T00:00:00Z``,
``...00.000+00:00``, ``...+0000``) and date (``2024-01-01``) unquoted; ``TRUE``/``FALSE``/``NULL``.
"""

from __future__ import annotations

import operator
import re
import zlib
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any, Literal, TypeAlias

import attrs

__all__ = [
    "FieldType",
    "FieldValue",
    "QueryPlan",
    "Row",
    "SoqlError",
    "compile_query",
    "parse_datetime",
]

FieldType: TypeAlias = Literal[
    "id", "reference", "string", "boolean", "int", "double", "date", "datetime"
]
"""A field's Salesforce type, as far as filtering and ordering need it."""

FieldValue: TypeAlias = str | int | float | bool | date | datetime | None
"""A field's value as the fake stores it (datetimes aware, in UTC)."""

Row: TypeAlias = Mapping[str, FieldValue]
Schema: TypeAlias = Mapping[str, Mapping[str, FieldType]]

MAX_QUERY_LENGTH = 100_000
MAX_OFFSET = 2_000

_UTC = timezone.utc
# fmt: off
_RESERVED = frozenset({
    "AND", "ASC", "BY", "DESC", "EXCLUDES", "FIRST", "FOR", "FROM", "GROUP", "HAVING", "IN",
    "INCLUDES", "LAST", "LIKE", "LIMIT", "NOT", "NULL", "NULLS", "OFFSET", "OR", "ORDER", "SELECT",
    "TYPEOF", "USING", "WHERE", "WITH",
})
# fmt: on
_TOKEN = re.compile(
    r"(?P<ws>\s+)"
    r"|(?P<datetime>\d{4}-\d{2}-\d{2}T[0-9:.]*(?:Z|[+-][0-9:]*)?)"
    r"|(?P<date>\d{4}-\d{2}-\d{2})(?![0-9A-Za-z_])"
    r"|(?P<number>-?\d+(?:\.\d+)?)(?![0-9A-Za-z_])"
    r"|(?P<string>'(?:[^'\\]|\\.)*')"
    r"|(?P<name>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*(?::\d+)?)"
    r"|(?P<op><=|>=|!=|<>|=|<|>)"
    r"|(?P<punct>[,()*:])"
)
# Salesforce reads any number of fraction digits and offsets with or without a colon.
_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|([+-])(\d{2}):?(\d{2}))"
)
_DATE_LITERAL = re.compile(
    r"TODAY|YESTERDAY|TOMORROW|(?:LAST|THIS|NEXT)_\w+|(?:LAST|NEXT)_N_\w+:\d+|N_\w+_AGO:\d+"
)
_ID = re.compile(r"[0-9A-Za-z]{15}(?:[0-9A-Za-z]{3})?")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'"}
_ESCAPES |= {"\\": "\\", "_": "\\_", "%": "\\%"}
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<>": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_LITERAL_KIND: dict[FieldType, tuple[str, str]] = {
    "datetime": ("datetime", "dateTime"),
    "date": ("date", "date"),
    "boolean": ("boolean", "boolean"),
    "int": ("number", "int"),
    "double": ("number", "double"),
}


class SoqlError(Exception):
    """A query Salesforce refuses: ``error_code`` and ``message`` are what it would answer.

    Args:
        error_code: Salesforce's ``errorCode``, such as ``"MALFORMED_QUERY"``.
        message: Salesforce's ``message``.
    """

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(f"{error_code}: {message}")
        self.error_code = error_code
        self.message = message


def parse_datetime(text: str) -> datetime | None:
    """Read a SOQL dateTime literal to millisecond precision, or ``None`` if it is not one.

    Raises:
        ValueError: It has the shape of a dateTime but names no real instant (month 13).
    """
    match = _DATETIME.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.group(1, 2, 3, 4, 5, 6))
    millis = int((match[7] or "0")[:3].ljust(3, "0"))
    offset = timedelta(0)
    if match[8] != "Z":
        offset = timedelta(hours=int(match[10]), minutes=int(match[11]))
        offset = -offset if match[9] == "-" else offset
    moment = datetime(year, month, day, hour, minute, second, millis * 1000, timezone(offset))
    return moment.astimezone(_UTC)


@attrs.frozen
class QueryPlan:
    """A checked query: which object, which fields, and how to filter, order and cut rows.

    Attributes:
        sobject: The object's canonical name.
        fields: The selected fields' canonical names, in the order selected.
        predicate: Whether a row passes the ``WHERE`` clause.
        order: ``(field, sort key, descending, nulls first)`` for each ``ORDER BY`` item.
        limit: The ``LIMIT``, if any.
        offset: The ``OFFSET`` (0 without one).
        count: The query is ``SELECT COUNT()``: it answers how many rows match, and no row.
    """

    sobject: str
    fields: tuple[str, ...]
    predicate: Callable[[Row], bool]
    order: tuple[tuple[str, Callable[[FieldValue], Any], bool, bool], ...]
    limit: int | None
    offset: int
    count: bool = False

    def select(self, rows: Iterable[Row], *, salt: int) -> list[Row]:
        """Filter, order and cut ``rows``.

        Rows equal on every ``ORDER BY`` key (all rows, without ``ORDER BY``) come in an order
        derived from ``salt``: Salesforce promises no order for them, so a connector must not
        rely on one. Pass a different ``salt`` per query.
        """
        matched = [row for row in rows if self.predicate(row)]
        matched.sort(key=lambda row: zlib.crc32(f"{salt}:{row['Id']}".encode()))
        for field, sort_key, descending, nulls_first in reversed(self.order):
            null_rank = 0 if nulls_first != descending else 2
            matched.sort(key=_order_key(field, sort_key, null_rank), reverse=descending)
        end = None if self.limit is None else self.offset + self.limit
        return matched[self.offset : end]


def _order_key(
    field: str, sort_key: Callable[[FieldValue], Any], null_rank: int
) -> Callable[[Row], tuple[int, Any]]:
    def key(row: Row) -> tuple[int, Any]:
        value = row[field]
        return (null_rank, 0) if value is None else (1, sort_key(value))

    return key


def compile_query(text: str, schema: Schema) -> QueryPlan:
    """Parse ``text`` and check it against ``schema`` (object name -> field name -> type).

    Object and field names match case-insensitively, as in Salesforce; the plan uses the
    canonical spelling.

    Raises:
        SoqlError: Salesforce would refuse the query, or it is outside the fake's subset.
    """
    if len(text) > MAX_QUERY_LENGTH:
        raise SoqlError(
            "MALFORMED_QUERY", "SOQL statements cannot be longer than 100,000 characters."
        )
    query = _Parser(text).query()
    objects = {name.lower(): name for name in schema}
    sobject = objects.get(query.sobject.text.lower())
    if sobject is None:
        raise _error_at(
            text,
            query.sobject.pos,
            "INVALID_TYPE",
            f"sObject type '{query.sobject.text}' is not supported. If you are attempting to use "
            "a custom object, be sure to append the '__c' after the entity name. Please "
            "reference your WSDL or the describe call for the appropriate names.",
        )
    types = schema[sobject]
    canonical = {name.lower(): name for name in types}

    def resolve(name: _Name) -> str:
        field = canonical.get(name.text.lower())
        if field is None:
            raise _error_at(
                text,
                name.pos,
                "INVALID_FIELD",
                f"No such column '{name.text}' on entity '{sobject}'. If you are attempting to "
                "use a custom field, be sure to append the '__c' after the custom field name. "
                "Please reference your WSDL or the describe call for the appropriate names.",
            )
        return field

    fields: list[str] = []
    for name in query.fields:
        field = resolve(name)
        if field in fields:
            raise _error_at(text, name.pos, "MALFORMED_QUERY", f"duplicate field selected: {field}")
        fields.append(field)
    checks = []
    for condition in query.conditions:
        field = resolve(condition.field)
        checks.append(_condition(text, field, types[field], condition))
    order = tuple(
        (field, _sort_key(types[field]), item.descending, item.nulls_first)
        for item in query.order_by
        for field in [resolve(item.field)]
    )
    if query.offset is not None and query.offset > MAX_OFFSET:
        raise SoqlError("NUMBER_OUTSIDE_VALID_RANGE", "Maximum SOQL offset allowed is 2000")

    def predicate(row: Row) -> bool:
        return all(check(row) for check in checks)

    return QueryPlan(
        sobject, tuple(fields), predicate, order, query.limit, query.offset or 0, query.count
    )


def _sort_key(field_type: FieldType) -> Callable[[FieldValue], Any]:
    if field_type == "string":
        return lambda value: str(value).casefold()
    if field_type in ("id", "reference"):
        return lambda value: str(value)[:15]  # 15- and 18-character IDs name the same record
    return lambda value: value


def _condition(
    text: str, field: str, field_type: FieldType, condition: _Condition
) -> Callable[[Row], bool]:
    literal = condition.literal
    if condition.op == "IN":
        key = _sort_key(field_type)
        for member in condition.members:
            _check_literal(text, field, field_type, attrs.evolve(condition, literal=member))
        wanted = {key(member.value) for member in condition.members if member.value is not None}
        return lambda row: row[field] is not None and key(row[field]) in wanted
    if literal.kind != "null":
        _check_literal(text, field, field_type, condition)
    compare = _OPERATORS[condition.op]
    if literal.value is None:  # only = and != say anything about null
        wants_null = condition.op == "="
        if condition.op not in ("=", "!=", "<>"):
            return lambda row: False
        return lambda row: (row[field] is None) == wants_null
    key = _sort_key(field_type)
    expected = key(literal.value)
    null_passes = condition.op in ("!=", "<>")  # SOQL's != keeps nulls, unlike SQL

    def check(row: Row) -> bool:
        value = row[field]
        return null_passes if value is None else compare(key(value), expected)

    return check


def _check_literal(text: str, field: str, field_type: FieldType, condition: _Condition) -> None:
    literal = condition.literal
    if field_type in ("id", "reference", "string"):
        if literal.kind != "string":
            raise _error_at(
                text,
                literal.pos,
                "INVALID_FIELD",
                f"value of filter criterion for field '{field}' must be of type string and "
                "should be enclosed in quotes",
            )
        if field_type != "string" and not _ID.fullmatch(str(literal.value)):
            raise _error_at(
                text,
                literal.pos,
                "INVALID_QUERY_FILTER_OPERATOR",
                f"invalid ID field: {literal.value}",
            )
        return
    kind, type_name = _LITERAL_KIND[field_type]
    if literal.kind != kind:
        raise _error_at(
            text,
            literal.pos,
            "INVALID_FIELD",
            f"value of filter criterion for field '{field}' must be of type {type_name} and "
            "should not be enclosed in quotes",
        )
    if field_type == "boolean" and condition.op not in ("=", "!=", "<>"):
        raise _error_at(
            text,
            condition.field.pos,
            "INVALID_QUERY_FILTER_OPERATOR",
            f"invalid operator on boolean field: {field}",
        )


def _error_at(text: str, pos: int, error_code: str, detail: str) -> SoqlError:
    """Build Salesforce's message: the line, a caret under the culprit, its row and column."""
    row = text.count("\n", 0, pos) + 1
    line_start = text.rfind("\n", 0, pos) + 1
    line_end = text.find("\n", pos)
    line = text[line_start : len(text) if line_end == -1 else line_end]
    column = pos - line_start + 1
    caret = " " * (column - 1) + "^"
    return SoqlError(error_code, f"\n{line}\n{caret}\nERROR at Row:{row}:Column:{column}\n{detail}")


@attrs.frozen
class _Token:
    kind: str
    text: str
    pos: int


@attrs.frozen
class _Name:
    text: str
    pos: int


@attrs.frozen
class _Literal:
    kind: str
    value: FieldValue
    pos: int


@attrs.frozen
class _Condition:
    field: _Name
    op: str
    literal: _Literal
    members: tuple[_Literal, ...] = ()  # the literals of an IN list


@attrs.frozen
class _OrderItem:
    field: _Name
    descending: bool
    nulls_first: bool


@attrs.frozen
class _Query:
    fields: tuple[_Name, ...]
    sobject: _Name
    conditions: tuple[_Condition, ...]
    order_by: tuple[_OrderItem, ...]
    limit: int | None
    offset: int | None
    count: bool = False


class _Parser:
    """A recursive-descent parser over the tokens of one query."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = self._tokenize()
        self.index = 0

    def _tokenize(self) -> list[_Token]:
        tokens: list[_Token] = []
        pos = 0
        while pos < len(self.text):
            match = _TOKEN.match(self.text, pos)
            if match is None:  # refused when the parser gets here: earlier errors come first
                tokens.append(_Token("invalid", self.text[pos], pos))
                return tokens
            kind = match.lastgroup or ""
            if kind != "ws":
                tokens.append(_Token(kind, match.group(), pos))
            pos = match.end()
        tokens.append(_Token("eof", "", len(self.text)))
        return tokens

    def _no_viable(self, pos: int) -> SoqlError:
        char = self.text[pos] if pos < len(self.text) else "<EOF>"
        column = pos - (self.text.rfind("\n", 0, pos) + 1)
        row = self.text.count("\n", 0, pos) + 1
        detail = f"line {row}:{column} no viable alternative at character '{char}'"
        return _error_at(self.text, pos, "MALFORMED_QUERY", detail)

    def peek(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind == "invalid":
            raise self._no_viable(token.pos)
        return token

    def advance(self) -> _Token:
        token = self.peek()
        self.index += 1
        return token

    def at_keyword(self, *words: str) -> bool:
        token = self.peek()
        return token.kind == "name" and token.text.upper() in words

    def keyword(self, word: str) -> bool:
        if self.at_keyword(word):
            self.index += 1
            return True
        return False

    def expect_keyword(self, word: str) -> None:
        if not self.keyword(word):
            raise self.unexpected(self.peek())

    def punct(self, char: str) -> bool:
        token = self.peek()
        if token.kind == "punct" and token.text == char:
            self.index += 1
            return True
        return False

    def unexpected(self, token: _Token) -> SoqlError:
        chunk = "<EOF>" if token.kind == "eof" else self.text[token.pos :].split(None, 1)[0]
        return _error_at(self.text, token.pos, "MALFORMED_QUERY", f"unexpected token: '{chunk}'")

    def unsupported(self, token: _Token, what: str) -> SoqlError:
        detail = f"FakeSalesforce does not support {what} (valid SOQL outside the fake's subset)"
        return _error_at(self.text, token.pos, "MALFORMED_QUERY", detail)

    def query(self) -> _Query:
        self.expect_keyword("SELECT")
        count = self.count()
        fields = [] if count else [self.field()]
        while not count and self.punct(","):
            fields.append(self.field())
        self.expect_keyword("FROM")
        sobject = self.name()
        conditions: list[_Condition] = []
        if self.keyword("WHERE"):
            conditions.append(self.condition())
            while self.keyword("AND"):
                conditions.append(self.condition())
        order_by: list[_OrderItem] = []
        if self.keyword("ORDER"):
            self.expect_keyword("BY")
            order_by.append(self.order_item())
            while self.punct(","):
                order_by.append(self.order_item())
        limit = self.integer() if self.keyword("LIMIT") else None
        offset = self.integer() if self.keyword("OFFSET") else None
        token = self.peek()
        if self.at_keyword("OR", "WITH", "GROUP", "HAVING", "FOR", "USING"):
            raise self.unsupported(token, token.text.upper())
        if token.kind != "eof":
            raise self.unexpected(token)
        return _Query(
            tuple(fields), sobject, tuple(conditions), tuple(order_by), limit, offset, count
        )

    def count(self) -> bool:
        """Read ``COUNT()``, the one function the fake answers, if it is what is selected."""
        following = self.tokens[self.index + 1]
        if not (self.at_keyword("COUNT") and following.text == "("):
            return False
        self.index += 2
        if not self.punct(")"):
            raise self.unsupported(self.peek(), "COUNT(field)")
        return True

    def name(self) -> _Name:
        token = self.advance()
        if token.kind != "name" or token.text.upper() in _RESERVED:
            raise self.unexpected(token)
        if "." in token.text:
            raise self.unsupported(token, "relationship fields")
        if ":" in token.text:
            raise self.unsupported(token, "date literals")
        following = self.peek()
        if following.kind == "punct" and following.text == "(":
            raise self.unsupported(token, "functions such as FIELDS(), COUNT(field) or DAY_ONLY()")
        return _Name(token.text, token.pos)

    def field(self) -> _Name:
        token = self.peek()
        if token.kind == "punct" and token.text == "(":
            raise self.unsupported(token, "subqueries")
        if self.at_keyword("TYPEOF"):
            raise self.unsupported(token, "TYPEOF")
        return self.name()

    def condition(self) -> _Condition:
        token = self.peek()
        if token.kind == "punct" and token.text == "(":
            raise self.unsupported(token, "parentheses in WHERE")
        if self.at_keyword("NOT"):
            raise self.unsupported(token, "NOT")
        field = self.name()
        op = self.advance()
        if op.kind == "name" and op.text.upper() == "IN":
            return self.in_list(field, op)
        if op.kind != "op":
            if op.kind == "name" and op.text.upper() in (
                "NOT",
                "LIKE",
                "INCLUDES",
                "EXCLUDES",
            ):
                raise self.unsupported(op, op.text.upper())
            raise self.unexpected(op)
        return _Condition(field, op.text, self.literal())

    def in_list(self, field: _Name, op: _Token) -> _Condition:
        opening = self.advance()
        if not (opening.kind == "punct" and opening.text == "("):
            raise self.unexpected(opening)
        members = [self.literal()]
        while self.punct(","):
            members.append(self.literal())
        closing = self.advance()
        if not (closing.kind == "punct" and closing.text == ")"):
            raise self.unexpected(closing)
        return _Condition(field, "IN", members[0], tuple(members))

    def literal(self) -> _Literal:
        token = self.advance()
        if token.kind == "string":
            return _Literal("string", self._unescape(token), token.pos)
        if token.kind == "datetime":
            try:
                moment = parse_datetime(token.text)
            except ValueError:
                raise _error_at(
                    self.text, token.pos, "MALFORMED_QUERY", f"Invalid datetime: {token.text}"
                ) from None
            if moment is None:
                raise self._no_viable(token.pos + len(token.text))
            return _Literal("datetime", moment, token.pos)
        if token.kind == "date":
            try:
                return _Literal("date", date.fromisoformat(token.text), token.pos)
            except ValueError:
                raise _error_at(
                    self.text, token.pos, "MALFORMED_QUERY", f"Invalid date: {token.text}"
                ) from None
        if token.kind == "number":
            value = float(token.text) if "." in token.text else int(token.text)
            return _Literal("number", value, token.pos)
        if token.kind == "name":
            word = token.text.upper()
            if word in ("TRUE", "FALSE"):
                return _Literal("boolean", word == "TRUE", token.pos)
            if word == "NULL":
                return _Literal("null", None, token.pos)
            if _DATE_LITERAL.fullmatch(word):
                raise self.unsupported(token, "date literals such as TODAY or LAST_N_DAYS:n")
        raise self.unexpected(token)

    def _unescape(self, token: _Token) -> str:
        body = token.text[1:-1]
        out: list[str] = []
        chars = iter(body)
        for char in chars:
            if char != "\\":
                out.append(char)
                continue
            escaped = next(chars)
            if escaped not in _ESCAPES:
                raise _error_at(
                    self.text,
                    token.pos,
                    "MALFORMED_QUERY",
                    f"Invalid string literal '{body}'. Illegal character sequence '\\{escaped}' "
                    "in string literal.",
                )
            out.append(_ESCAPES[escaped])
        return "".join(out)

    def order_item(self) -> _OrderItem:
        field = self.name()
        descending = self.keyword("DESC")
        if not descending:
            self.keyword("ASC")
        nulls_first = True  # Salesforce sorts nulls first unless told otherwise
        if self.keyword("NULLS"):
            if self.keyword("LAST"):
                nulls_first = False
            else:
                self.expect_keyword("FIRST")
        return _OrderItem(field, descending, nulls_first)

    def integer(self) -> int:
        token = self.advance()
        if token.kind != "number" or not token.text.isdigit():
            raise self.unexpected(token)
        return int(token.text)
