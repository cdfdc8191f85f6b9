"""Declarative mappings: plain data that says where a transaction's facts sit in a payload.

:meth:`TransactionMapping.from_data` reads a mapping written as a dict (or a TOML table) and
checks all of it before anything is mapped: every mistake found is listed in one
:class:`~incsync.errors.ConfigurationError`, each line naming the key by its full path
(``lines.amount.convert: unknown converter "decimals"; known: …``). The checked mapping then
turns a payload into a :class:`~incsync.mapping.MappedTransaction` (``map``), into ``None`` when
its ``where`` conditions say the record is not a transaction at all, or raises
:class:`~incsync.errors.UnmappableRecordError` naming the field that could not be read.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from incsync.content import content_digest
from incsync.errors import BadRecordError, ConfigurationError
from incsync.fields import DottedPath
from incsync.mapping._read import (
    CONVERTERS,
    Getter,
    MapFunction,
    Test,
    compile_field,
    compile_mapping,
    compile_test,
)
from incsync.mapping._value import Kind, MappedTransaction, Status

__all__ = ["CONVERTERS", "Condition", "Field", "LinesSpec", "TransactionMapping"]


_DATE_CONVERTERS = ("date", "epoch_seconds", "epoch_ms", "dotnet_date")
_AMOUNT_CONVERTERS = ("decimal", "minor_units")
_FIELD_KEYS = ("path", "convert", "table", "default", "value")
_CONDITION_OPERATORS = ("equals", "in", "not_in", "present")


class _Problems:
    """The mistakes found in one mapping, each named by its key's full path."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.found.append(f"{key}: {message}")

    def check_keys(self, table: Mapping[str, Any], prefix: str, known: Sequence[str]) -> None:
        for name in table:
            if name not in known:
                close = difflib.get_close_matches(str(name), known, n=1)
                hint = f'; did you mean "{prefix}{close[0]}"?' if close else ""
                self.add(f"{prefix}{name}", f"unknown key{hint} (known here: {', '.join(known)})")

    def table(self, value: object, key: str) -> Mapping[str, Any] | None:
        if isinstance(value, Mapping) and all(isinstance(name, str) for name in value):
            return value
        self.add(key, f"expected a table, got {value!r}")
        return None

    def path(self, value: object, key: str) -> DottedPath | None:
        try:
            return DottedPath.parse(value, key, example="properties.amount")
        except ConfigurationError as error:
            self.found.append(str(error))
            return None


@attrs.frozen
class Condition:
    """A test on one value of a payload: equal to a value, one of several, or present at all.

    Args:
        path: Where the value sits.
        operator: ``"equals"``, ``"in"``, ``"not_in"`` or ``"present"``.
        values: The values compared with (by type and value: ``true`` is not ``1``); for
            ``present``, ``(True,)`` or ``(False,)``.
    """

    path: DottedPath
    operator: str
    values: tuple[object, ...]
    holds: Test = attrs.field(init=False, repr=False, eq=False)
    """Returns whether the condition holds in a document."""

    @holds.default
    def _compile(self) -> Test:
        return compile_test(self.path, self.operator, self.values)

    @classmethod
    def parse(cls, data: object, key: str, problems: _Problems) -> Condition | None:
        """Read one condition (``{"path": "Type", "equals": "ACCREC"}``) or record its mistakes."""
        table = problems.table(data, key)
        if table is None:
            return None
        problems.check_keys(table, f"{key}.", ("path", *_CONDITION_OPERATORS))
        path = problems.path(table.get("path"), f"{key}.path")
        operators = [name for name in _CONDITION_OPERATORS if name in table]
        if len(operators) != 1:
            problems.add(key, f"expected exactly one of {', '.join(_CONDITION_OPERATORS)}")
            return None
        (operator,) = operators
        given = table[operator]
        values: tuple[object, ...]
        if operator == "equals":
            values = (given,)
        elif operator == "present":
            if not isinstance(given, bool):
                problems.add(f"{key}.present", f"expected true or false, got {given!r}")
            values = (given is True,)
        elif isinstance(given, list | tuple) and given:
            values = tuple(given)
        else:
            problems.add(f"{key}.{operator}", f"expected a non-empty list, got {given!r}")
            return None
        if any(isinstance(value, dict | list) for value in values):
            problems.add(f"{key}.{operator}", "compare with text, numbers, true/false or null")
            return None
        return None if path is None else cls(path, operator, values)


@attrs.frozen
class Field:
    """Where one fact sits and how it is read: paths tried in order, a converter, a lookup table.

    Args:
        paths: Where the value may sit, tried in order; the first that holds a value wins.
        convert: The converter's name in :data:`CONVERTERS`.
        table: Maps the read value (as text: ``true``, ``"closedwon"``) to what the field gives;
            a value missing from the table is a mistake unless ``default`` is set.
        default: What the field gives when no path holds a value (or the table lacks it).
        value: A constant: the field ignores the payload.
    """

    paths: tuple[DottedPath, ...] = ()
    convert: str = "text"
    table: Mapping[str, object] | None = attrs.field(default=None, hash=False)
    default: object = None
    value: object = None

    get: Getter = attrs.field(init=False, repr=False, eq=False)
    """Returns the field's value in a document, ``None`` where it has none.

    Raises ``ValueError`` when the value is there but the converter or the table refuses it, and
    ``TypeError`` when it is of a type the converter does not read.
    """

    @get.default
    def _compile(self) -> Getter:
        return compile_field(self.paths, self.convert, self.table, self.default, self.value)

    @property
    def where(self) -> str:
        """Where the field is read, as an error names it (``"TxnDate"``, ``"a or b"``)."""
        if self.value is not None:
            return "(constant)"
        return " or ".join(map(str, self.paths)) or "(no path)"

    def read(self, document: object) -> tuple[object, str]:
        """Return the field's value in ``document`` (``None`` when absent) and where it is read.

        Raises:
            ValueError: The value is there but the converter or the table refuses it.
            TypeError: The value is of a type the converter does not read.
        """
        return self.get(document), self.where

    @classmethod
    def parse(
        cls,
        data: object,
        key: str,
        problems: _Problems,
        *,
        convert: str = "text",
        allowed: Sequence[str] | None = None,
        words: type[Kind] | type[Status] | None = None,
    ) -> Field | None:
        """Read one field: a path (``"TotalAmt"``), a list of paths, or a table of ``_FIELD_KEYS``.

        For ``kind`` and ``status`` (``words`` set) a plain string is the constant word itself.
        """
        if isinstance(data, str):
            data = {"value": data} if words is not None else {"path": data}
        elif isinstance(data, list | tuple) and words is None:
            data = {"path": data}
        table = problems.table(data, key)
        if table is None:
            return None
        problems.check_keys(table, f"{key}.", _FIELD_KEYS)
        given_paths = table.get("path", [])
        listed = given_paths if isinstance(given_paths, list | tuple) else [given_paths]
        paths = [problems.path(each, f"{key}.path") for each in listed]
        name = table.get("convert", convert)
        choices = tuple(allowed or CONVERTERS)
        if name not in choices:
            problems.add(f"{key}.convert", f"unknown converter {name!r}; known: {choices}")
        lookup = table.get("table")
        if lookup is not None:
            lookup = problems.table(lookup, f"{key}.table")
        field = cls(
            tuple(path for path in paths if path is not None),
            name if name in choices else convert,
            lookup,
            table.get("default"),
            table.get("value"),
        )
        if (field.value is None) == (not field.paths):
            problems.add(key, 'give either "path" (one or a list) or a constant "value"')
        if words is not None:
            for where, word in _words_of(field, key):
                _check_word(word, words, where, problems)
        return field


def _words_of(field: Field, key: str) -> list[tuple[str, object]]:
    found = [(f"{key}.{name}", getattr(field, name)) for name in ("value", "default")]
    found += [(f"{key}.table.{name}", word) for name, word in (field.table or {}).items()]
    return [(where, word) for where, word in found if word is not None]


def _check_word(
    word: object, words: type[Kind] | type[Status], key: str, problems: _Problems
) -> None:
    known = [member.value for member in words]
    if word not in known:
        problems.add(key, f"{word!r} is not a {words.__name__.lower()}; known: {', '.join(known)}")


@attrs.frozen
class LinesSpec:
    """Where a payload keeps its lines, which of them count, and where each line's facts sit.

    Args:
        path: The list of lines in the payload.
        where: Conditions a line must meet to count (QuickBooks' ``SalesItemLineDetail`` lines,
            not its subtotal line).
        fields: The line's fields (``amount``, ``product_id``…) read from each line.
    """

    path: DottedPath
    where: tuple[Condition, ...]
    fields: Mapping[str, Field] = attrs.field(hash=False)


_LINE_FIELDS: Mapping[str, str] = {
    "amount": "decimal",
    "product_id": "text",
    "product_name": "text",
    "description": "text",
    "quantity": "decimal",
    "unit_price": "decimal",
}
_PARTY_FIELDS = ("customer_id", "customer_name", "owner_id", "owner_name", "owner_email")
_TEXT_FIELDS = ("record_id", "currency", *_PARTY_FIELDS)
_TOP_KEYS = (
    "name",
    "root",
    "where",
    "kind",
    "status",
    "status_when",
    "date",
    "amount",
    "lines",
    "custom",
    *_TEXT_FIELDS,
)
_REQUIRED = ("kind", "date", "amount", "currency")
_UNNAMED = "mapping"
_VERSION_DIGITS = 16  # hex digits of the data's digest: 64 bits, enough to tell versions apart


def _version_of(data: Mapping[str, Any]) -> str:
    try:
        return content_digest(data).hex()[:_VERSION_DIGITS]
    except BadRecordError as error:
        raise ConfigurationError(f"the mapping has no JSON form: {error.reason}") from None


@attrs.frozen
class TransactionMapping:
    """A checked, declarative mapping from one kind of payload to :class:`MappedTransaction`.

    Build one with :meth:`from_data` (or take a preset from :func:`incsync.mapping.preset`);
    ``data`` keeps the plain data it was read from, so a host can extend it
    (:meth:`with_fields`) or store it.

    Args:
        data: The mapping as plain data (see the mapping guide for every key).
    """

    data: Mapping[str, Any] = attrs.field(hash=False)
    _root: tuple[DottedPath, ...] = attrs.field(alias="root", repr=False)
    _where: tuple[Condition, ...] = attrs.field(alias="where", repr=False)
    _status_when: tuple[tuple[Condition, Status], ...] = attrs.field(
        alias="status_when", repr=False
    )
    _fields: Mapping[str, Field] = attrs.field(alias="fields", repr=False, hash=False)
    _lines: LinesSpec | None = attrs.field(alias="lines", repr=False)
    _custom: Mapping[str, Field] = attrs.field(alias="custom", repr=False, hash=False)
    _version: str = attrs.field(alias="version", repr=False)
    # The mapping compiled once into the functions that read every record (see _read).
    _compiled: tuple[Callable[[object], object], MapFunction] = attrs.field(
        init=False, repr=False, eq=False
    )

    @_compiled.default
    def _compile(self) -> tuple[Callable[[object], object], MapFunction]:
        return compile_mapping(
            self._root,
            [condition.holds for condition in self._where],
            [(condition.holds, status) for condition, status in self._status_when],
            self._fields,
            self._lines,
            self._custom,
        )

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> TransactionMapping:
        """Check ``data`` and return the mapping it describes.

        Raises:
            ConfigurationError: ``data`` has mistakes; the message lists every one, each naming
                its key's full path.
        """
        problems = _Problems()
        table = problems.table(data, "mapping") or {}
        problems.check_keys(table, "", _TOP_KEYS)
        if not isinstance(table.get("name", "mapping"), str) or not table.get("name", "mapping"):
            problems.add("name", f"expected a non-empty text, got {table['name']!r}")
        for name in _REQUIRED:
            if name not in table:
                problems.add(name, "missing; every mapping says where it is (or gives a value)")
        listed_root = table.get("root", [""])
        root = [
            problems.path(each, "root")
            for each in (listed_root if isinstance(listed_root, list | tuple) else [listed_root])
        ]
        fields: dict[str, Field | None] = {
            "status": Field.parse(table.get("status", "open"), "status", problems, words=Status)
        }
        if "kind" in table:
            fields["kind"] = Field.parse(table["kind"], "kind", problems, words=Kind)
        if "date" in table:
            fields["date"] = Field.parse(
                table["date"], "date", problems, convert="date", allowed=_DATE_CONVERTERS
            )
        if "amount" in table:
            fields["amount"] = Field.parse(
                table["amount"], "amount", problems, convert="decimal", allowed=_AMOUNT_CONVERTERS
            )
        for name in _TEXT_FIELDS:
            if name in table:
                fields[name] = Field.parse(table[name], name, problems, allowed=("text",))
        status_when = []
        for index, rule in enumerate(_list(table.get("status_when", []), "status_when", problems)):
            key = f"status_when[{index}]"
            rule_table = problems.table(rule, key) or {}
            problems.check_keys(rule_table, f"{key}.", ("if", "status"))
            condition = Condition.parse(rule_table.get("if"), f"{key}.if", problems)
            _check_word(rule_table.get("status"), Status, f"{key}.status", problems)
            if condition is not None and rule_table.get("status") in Status._value2member_map_:
                status_when.append((condition, Status(rule_table["status"])))
        where = _conditions(table.get("where", []), "where", problems)
        lines = _lines(table["lines"], problems) if "lines" in table else None
        custom: dict[str, Field | None] = {}
        for name, spec in (problems.table(table.get("custom", {}), "custom") or {}).items():
            custom[name] = Field.parse(spec, f"custom.{name}", problems)
        if problems.found:
            raise ConfigurationError(
                f"the mapping has {len(problems.found)} mistake(s):\n  "
                + "\n  ".join(problems.found)
            )
        return cls(
            dict(table),
            root=tuple(path for path in root if path is not None),
            where=where,
            status_when=tuple(status_when),
            fields={name: field for name, field in fields.items() if field is not None},
            lines=lines,
            custom={name: field for name, field in custom.items() if field is not None},
            version=_version_of(table),
        )

    @property
    def name(self) -> str:
        """The mapping's name, as rows mapped by it remember it (``"mapping"`` when unnamed).

        A preset is named after its vendor and object (``"quickbooks/Invoice"``).
        """
        name = self.data.get("name", _UNNAMED)
        assert isinstance(name, str)  # from_data refused any other
        return name

    @property
    def version(self) -> str:
        """The mapping's version: a digest of its data, so any change to it is a new version.

        Rows mapped by it remember it; a re-map recomputes the rows of any other version. It is
        derived, never declared, so a mapping changed without a new version number cannot leave
        rows of the old one looking current.
        """
        return self._version

    def with_fields(self, **changes: Any) -> TransactionMapping:
        """Return this mapping with top-level keys replaced (``custom={...}``, ``where=[...]``).

        A key given ``None`` is removed. The result is checked like :meth:`from_data`.

        Raises:
            ConfigurationError: The changed mapping has mistakes.
        """
        data = {**self.data, **changes}
        return type(self).from_data(
            {key: value for key, value in data.items() if value is not None}
        )

    def applies_to(self, raw: object) -> bool:
        """Return whether ``raw`` is a transaction for this mapping (its ``where`` conditions)."""
        document = self._compiled[0](raw)
        return all(condition.holds(document) for condition in self._where)

    def map(
        self, raw: object, *, source_key: str | None = None, record_id: str | None = None
    ) -> MappedTransaction | None:
        """Return ``raw`` as a transaction, or ``None`` when it is not one for this mapping.

        ``None`` means the ``where`` conditions do not hold (a bill, not a sales invoice): the
        record is fine and simply not a transaction. A record that should be one but cannot be
        read raises.

        Args:
            raw: The payload as the source sent it (a record's ``payload``).
            source_key: The incsync source it was read from, kept on the transaction.
            record_id: The record's id, when the caller knows it; else read from ``record_id``.

        Raises:
            UnmappableRecordError: A fact the transaction needs is missing or unreadable; the
                reason names the field and the path read.
        """
        return self._compiled[1](raw, source_key, record_id)


def _list(value: object, key: str, problems: _Problems) -> Sequence[object]:
    if isinstance(value, list | tuple):
        return value
    problems.add(key, f"expected a list, got {value!r}")
    return []


def _conditions(value: object, key: str, problems: _Problems) -> tuple[Condition, ...]:
    parsed = [
        Condition.parse(each, f"{key}[{index}]", problems)
        for index, each in enumerate(_list(value, key, problems))
    ]
    return tuple(condition for condition in parsed if condition is not None)


def _lines(value: object, problems: _Problems) -> LinesSpec | None:
    table = problems.table(value, "lines")
    if table is None:
        return None
    problems.check_keys(table, "lines.", ("path", "where", *_LINE_FIELDS))
    path = problems.path(table.get("path"), "lines.path")
    if "amount" not in table:
        problems.add("lines.amount", "missing; a line's amount is where its money is")
    fields: dict[str, Field] = {}
    for name, convert in _LINE_FIELDS.items():
        if name not in table:
            continue
        allowed = _AMOUNT_CONVERTERS if name == "amount" else (convert,)
        field = Field.parse(
            table[name], f"lines.{name}", problems, convert=convert, allowed=allowed
        )
        if field is not None:
            fields[name] = field
    where = _conditions(table.get("where", []), "lines.where", problems)
    return None if path is None else LinesSpec(path, where, fields)
