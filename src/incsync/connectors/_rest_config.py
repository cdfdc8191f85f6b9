"""The configuration of :class:`~incsync.connectors.rest.RestConnector`, validated up front.

A plain mapping (a dict, or a TOML table parsed into one) becomes a frozen :class:`RestConfig`,
or a :class:`~incsync.errors.ConfigurationError` naming the bad key by its full dotted path
(``paging.cursor_path: expected a dotted path like "meta.next", got 42``). Unknown keys are
refused with the closest known one suggested. Secrets are never part of the configuration: the
``auth`` table names the secret (``secret = "EXAMPLE_TOKEN"``) and the connector looks the value
up when it is built, so a config value can be logged, compared and stored safely.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal

import attrs

from incsync.connectors._formats import TimestampFormat, config_error
from incsync.connectors.auth import ApiKey, Auth, BearerToken
from incsync.fields import DottedPath

__all__ = [
    "AuthConfig",
    "CountConfig",
    "FilterConfig",
    "PagingConfig",
    "RecordsConfig",
    "RestConfig",
    "TimestampFormat",
    "TombstoneConfig",
]

PagingStyle = Literal["offset", "page", "cursor", "next_link", "none"]
AuthKind = Literal["none", "bearer", "api_key_header", "api_key_query"]

_PATH_EXAMPLES = {"cursor_path": "meta.next", "next_link_path": "links.next"}
_SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_MAX_PAGE_SIZE = 100_000


def _check_keys(table: Mapping[str, Any], prefix: str, known: tuple[str, ...]) -> None:
    for name in table:
        if name in known:
            continue
        key = f"{prefix}{name}"
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f'; did you mean "{prefix}{close[0]}"?' if close else ""
        raise config_error(key, f"unknown key{hint} (known here: {', '.join(known)})")


def _table(value: object, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise config_error(key, f"expected a table of settings, got {value!r}")
    return value


def _text(value: object, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise config_error(key, f"expected a non-empty string, got {value!r}")
    return value


def _boolean(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise config_error(key, f"expected true or false, got {value!r}")
    return value


def _integer(value: object, key: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise config_error(key, f"expected a whole number from {low} to {high}, got {value!r}")
    return value


@attrs.frozen
class FilterConfig:
    """The query parameter that asks for records updated at or after a moment.

    Args:
        param: The parameter's name (``updated_since``).
        format: How the moment is written.
    """

    param: str
    format: TimestampFormat


@attrs.frozen
class RecordsConfig:
    """Where the records, and each record's id and update time, sit in an answer.

    Args:
        path: The list of records in the answer (empty: the answer is the list).
        id: The id in a record (text or integer).
        updated_at: The last-update time in a record.
        updated_at_format: How that time is written.
    """

    path: DottedPath
    id: DottedPath
    updated_at: DottedPath
    updated_at_format: TimestampFormat


@attrs.frozen
class TombstoneConfig:
    """Which records are deletions: those whose ``field`` holds one of ``values``.

    Args:
        field: Where the marker sits in a record.
        values: The values that mean deleted (compared by type and value, so ``true`` is not 1).
        retention: How long the API keeps listing a deleted record with its marker; ``None``: for
            ever. The connector's ``delete_retention``.
    """

    field: DottedPath
    values: tuple[str | int | float | bool, ...]
    retention: timedelta | None = None
    # Type and value pairs, so that one set lookup per record tells true from 1.
    _typed_values: frozenset[tuple[type, object]] = attrs.field(init=False, repr=False, eq=False)

    @_typed_values.default
    def _pair_types(self) -> frozenset[tuple[type, object]]:
        return frozenset((type(value), value) for value in self.values)

    def matches(self, raw: object) -> bool:
        """Return whether ``raw`` is a deletion."""
        found = self.field.get(raw)
        try:
            return (type(found), found) in self._typed_values
        except TypeError:  # an unhashable value (a list, an object) is no marker
            return False


@attrs.frozen
class CountConfig:
    """Where the API tells how many live records it holds, for the connector's ``count_live``.

    Args:
        total_path: Where the total sits in an answer of ``path`` (``meta.total``).
        params: Query parameters of the counting request, over the static ones of the same name
            (to leave deleted records out, say).
    """

    total_path: DottedPath
    params: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class AuthConfig:
    """How requests carry a credential; the secret itself is only named here.

    Args:
        kind: ``"none"``, ``"bearer"``, ``"api_key_header"`` or ``"api_key_query"``.
        secret: The name of the secret to look up when the connector is built.
        header: The header carrying an API key.
        param: The query parameter carrying an API key.
    """

    kind: AuthKind = "none"
    secret: str | None = None
    header: str | None = None
    param: str | None = None

    def build(self, secrets: Mapping[str, str]) -> Auth | None:
        """Return the auth flow, with the secret's value looked up in ``secrets``.

        Raises:
            ConfigurationError: The named secret is absent or empty (its value is never shown).
        """
        if self.kind == "none":
            return None
        assert self.secret is not None  # required for every other kind by from_mapping
        value = secrets.get(self.secret)
        if not value:
            raise config_error(
                "auth.secret",
                f"no value for the secret named {self.secret!r}; set it (an environment "
                f"variable by default) or pass secrets={{{self.secret!r}: ...}}",
            )
        if self.kind == "bearer":
            return BearerToken(value)
        if self.kind == "api_key_header":
            return ApiKey(value, header=self.header)
        return ApiKey(value, query_param=self.param)


@attrs.frozen
class PagingConfig:
    """How the source splits an answer into pages.

    Args:
        style: ``"offset"`` (``offset=0,100…``), ``"page"`` (``page=1,2…``), ``"cursor"`` (a
            token at ``cursor_path`` sent back as ``cursor_param``), ``"next_link"`` (a URL at
            ``next_link_path``), or ``"none"`` (one answer holds everything).
        size: The page size asked for.
        size_param: The parameter carrying the page size (``None``: not sent).
        offset_param: The offset parameter, for ``"offset"``.
        page_param: The page-number parameter, for ``"page"``.
        first_page: The number of the first page, for ``"page"``.
        cursor_param: The parameter carrying the token, for ``"cursor"``.
        cursor_path: Where the next token sits in an answer, for ``"cursor"``.
        next_link_path: Where the next page's URL sits in an answer, for ``"next_link"``.
    """

    style: PagingStyle = "none"
    size: int = 100
    size_param: str | None = None
    offset_param: str = "offset"
    page_param: str = "page"
    first_page: int = 1
    cursor_param: str = "cursor"
    cursor_path: DottedPath | None = None
    next_link_path: DottedPath | None = None


@attrs.frozen
class RestConfig:
    """Everything :class:`~incsync.connectors.rest.RestConnector` needs to read one JSON API.

    Build it with :meth:`from_mapping`; the fields mirror the configuration keys:

    * ``base_url``, ``path`` (required); ``ordered`` (false: the API does not promise ascending
      update times); ``lookback_seconds`` (0); ``params``: static query parameters;
    * ``filter``: ``param`` (required), ``format`` (``iso8601``, ``epoch_seconds``,
      ``epoch_ms`` or a strftime pattern; ``iso8601`` by default);
    * ``records``: ``path`` (the list; the answer itself by default), ``id`` (``id``),
      ``updated_at`` (``updated_at``), ``updated_at_format`` (the filter's format),
      ``assume_utc`` (false);
    * ``tombstone``: ``field`` (required), ``values`` (``[true]``), ``retention_days`` (how long
      the API keeps listing a deleted record; for ever when absent);
    * ``count``: ``total_path`` (required: where an answer holds the number of live records),
      ``params`` (query parameters of the counting request, over the static ones);
    * ``auth``: ``kind`` (``none``, ``bearer``, ``api_key_header``, ``api_key_query``), ``secret``
      (the secret's name), ``header`` (``X-API-Key``), ``param``;
    * ``paging``: ``style`` (``none``, ``offset``, ``page``, ``cursor``, ``next_link``), ``size``
      (100), ``size_param`` (``limit``), ``offset_param`` (``offset``), ``page_param``
      (``page``), ``first_page`` (1), ``cursor_param`` (``cursor``), ``cursor_path``,
      ``next_link_path``.

    Raises:
        ConfigurationError: ``ordered`` is true but the filter's format has no
            :attr:`~TimestampFormat.resolution` (a pattern writing only the month, say).
    """

    base_url: str
    path: str
    filter: FilterConfig
    records: RecordsConfig
    paging: PagingConfig
    auth: AuthConfig = AuthConfig()
    tombstone: TombstoneConfig | None = None
    count: CountConfig | None = None
    params: tuple[tuple[str, str], ...] = ()
    ordered: bool = False
    lookback: timedelta = timedelta(0)

    def __attrs_post_init__(self) -> None:
        if self.ordered and self.filter.format.resolution is None:
            # An ordered source is read on from the newest tick read, written in the filter.
            raise config_error(
                "filter.format",
                f"ordered = true reads on from the newest time read, but the pattern "
                f"{self.filter.format.pattern!r} cannot write a moment to the day or finer; "
                f"write the date and time, or set ordered = false",
            )

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> RestConfig:
        """Validate plain configuration (a dict or a parsed TOML table) into a config value.

        Example (TOML)::

            base_url = "https://api.example.com/v2"
            path = "/contacts"
            ordered = true
            [filter]
            param = "updated_since"
            format = "epoch_seconds"
            [records]
            path = "data.items"
            updated_at = "meta.updated_at"
            [auth]
            kind = "bearer"
            secret = "EXAMPLE_TOKEN"
            [paging]
            style = "cursor"
            cursor_path = "meta.next_cursor"

        Raises:
            ConfigurationError: A key is unknown, missing or holds a bad value; the message names
                its full dotted path and what is expected.
        """
        top = _table(mapping, "(configuration)")
        _check_keys(top, "", _TOP_KEYS)
        for required in ("base_url", "path", "filter"):
            if required not in top:
                raise config_error(required, "is required")
        base_url = _text(top["base_url"], "base_url")
        if not base_url.startswith(("http://", "https://")):
            raise config_error("base_url", f"expected an http:// or https:// URL, got {base_url!r}")
        path = _text(top["path"], "path")
        lookback = top.get("lookback_seconds", 0)
        if isinstance(lookback, bool) or not isinstance(lookback, (int, float)) or lookback < 0:
            raise config_error("lookback_seconds", f"expected a number >= 0, got {lookback!r}")
        filter_config = _filter(_table(top["filter"], "filter"))
        return cls(
            base_url=base_url,
            path=path,
            filter=filter_config,
            records=_records(_table(top.get("records", {}), "records"), filter_config.format),
            paging=_paging(_table(top.get("paging", {}), "paging")),
            auth=_auth(_table(top.get("auth", {}), "auth")),
            tombstone=_tombstone(top["tombstone"]) if "tombstone" in top else None,
            count=_count(top["count"]) if "count" in top else None,
            params=_params(_table(top.get("params", {}), "params"), "params"),
            ordered=_boolean(top.get("ordered", False), "ordered"),
            lookback=timedelta(seconds=lookback),
        )


_TOP_KEYS = (
    "base_url",
    "path",
    "ordered",
    "lookback_seconds",
    "params",
    "filter",
    "records",
    "tombstone",
    "count",
    "auth",
    "paging",
)


def _filter(table: Mapping[str, Any]) -> FilterConfig:
    _check_keys(table, "filter.", ("param", "format"))
    if "param" not in table:
        raise config_error(
            "filter.param", "is required: the query parameter taking the 'since' time"
        )
    return FilterConfig(
        _text(table["param"], "filter.param"),
        TimestampFormat.from_spec(table.get("format", "iso8601"), "filter.format"),
    )


def _records(table: Mapping[str, Any], default_format: TimestampFormat) -> RecordsConfig:
    _check_keys(table, "records.", ("path", "id", "updated_at", "updated_at_format", "assume_utc"))
    assume_utc = _boolean(table.get("assume_utc", False), "records.assume_utc")
    if "updated_at_format" in table:
        updated_format = TimestampFormat.from_spec(
            table["updated_at_format"], "records.updated_at_format", assume_utc=assume_utc
        )
    else:
        updated_format = attrs.evolve(default_format, assume_utc=assume_utc)
    return RecordsConfig(
        path=DottedPath.parse(table.get("path", ""), "records.path", example="data.items"),
        id=DottedPath.parse(table.get("id", "id"), "records.id", example="id"),
        updated_at=DottedPath.parse(table.get("updated_at", "updated_at"), "records.updated_at"),
        updated_at_format=updated_format,
    )


def _tombstone(value: object) -> TombstoneConfig:
    table = _table(value, "tombstone")
    _check_keys(table, "tombstone.", ("field", "values", "retention_days"))
    if "field" not in table:
        raise config_error("tombstone.field", "is required: where the deletion marker sits")
    values = table.get("values", [True])
    if (
        not isinstance(values, list)
        or not values
        or not all(isinstance(item, (str, int, float, bool)) for item in values)
    ):
        raise config_error(
            "tombstone.values",
            f'expected a non-empty list of the values meaning deleted, like ["deleted"], '
            f"got {values!r}",
        )
    retention = None
    if "retention_days" in table:
        days = table["retention_days"]
        if isinstance(days, bool) or not isinstance(days, (int, float)) or not 0 < days <= 36_500:
            raise config_error(
                "tombstone.retention_days",
                f"expected a number of days above 0 (at most 36500), got {days!r}",
            )
        retention = timedelta(days=days)
    return TombstoneConfig(
        DottedPath.parse(table["field"], "tombstone.field", example="status"),
        tuple(values),
        retention,
    )


def _count(value: object) -> CountConfig:
    table = _table(value, "count")
    _check_keys(table, "count.", ("total_path", "params"))
    if "total_path" not in table:
        raise config_error("count.total_path", "is required: where an answer holds the total")
    return CountConfig(
        DottedPath.parse(table["total_path"], "count.total_path", example="meta.total"),
        _params(_table(table.get("params", {}), "count.params"), "count.params"),
    )


def _auth(table: Mapping[str, Any]) -> AuthConfig:
    _check_keys(table, "auth.", ("kind", "secret", "header", "param"))
    kind = table.get("kind", "none")
    needs: dict[str, tuple[str, ...]] = {
        "none": (),
        "bearer": ("secret",),
        "api_key_header": ("secret",),
        "api_key_query": ("secret", "param"),
    }
    if kind not in needs:
        raise config_error("auth.kind", f"expected one of {', '.join(needs)}, got {kind!r}")
    allowed = {*needs[kind], *(("header",) if kind == "api_key_header" else ())}
    for name in ("secret", "header", "param"):
        if name in table and name not in allowed:
            raise config_error(f"auth.{name}", f"is not used with kind = {kind!r}; remove it")
        if name in needs[kind] and name not in table:
            raise config_error(f"auth.{name}", f"is required with kind = {kind!r}")
    secret = table.get("secret")
    if secret is not None and (not isinstance(secret, str) or not _SECRET_NAME.fullmatch(secret)):
        raise config_error(
            "auth.secret",
            'expected the NAME of a secret (like "EXAMPLE_TOKEN"), looked up when the '
            "connector is built; never put the secret itself in configuration",
        )
    return AuthConfig(
        kind=kind,
        secret=secret,
        header=_text(table.get("header", "X-API-Key"), "auth.header")
        if kind == "api_key_header"
        else None,
        param=_text(table["param"], "auth.param") if "param" in table else None,
    )


_STYLE_KEYS: dict[str, tuple[str, ...]] = {
    "none": (),
    "offset": ("offset_param",),
    "page": ("page_param", "first_page"),
    "cursor": ("cursor_param", "cursor_path"),
    "next_link": ("next_link_path",),
}
_PAGING_KEYS = ("style", "size", "size_param", *(k for ks in _STYLE_KEYS.values() for k in ks))


def _paging(table: Mapping[str, Any]) -> PagingConfig:
    _check_keys(table, "paging.", _PAGING_KEYS)
    style = table.get("style", "none")
    if style not in _STYLE_KEYS:
        raise config_error(
            "paging.style", f"expected one of {', '.join(_STYLE_KEYS)}, got {style!r}"
        )
    for name in table:
        if name not in ("style", "size", "size_param") and name not in _STYLE_KEYS[style]:
            raise config_error(f"paging.{name}", f"is not used with style = {style!r}; remove it")
    required = {"cursor": "cursor_path", "next_link": "next_link_path"}.get(style)
    if required is not None and required not in table:
        raise config_error(f"paging.{required}", f"is required with style = {style!r}")

    def path_of(name: str) -> DottedPath | None:
        if name not in table:
            return None
        return DottedPath.parse(table[name], f"paging.{name}", example=_PATH_EXAMPLES[name])

    def text(name: str, default: str) -> str:
        return _text(table.get(name, default), f"paging.{name}")

    size_param = table.get("size_param", None if style == "none" else "limit")
    return PagingConfig(
        style=style,
        size=_integer(table.get("size", 100), "paging.size", 1, _MAX_PAGE_SIZE),
        size_param=None if size_param is None else _text(size_param, "paging.size_param"),
        offset_param=text("offset_param", "offset"),
        page_param=text("page_param", "page"),
        first_page=_integer(table.get("first_page", 1), "paging.first_page", 0, 1),
        cursor_param=text("cursor_param", "cursor"),
        cursor_path=path_of("cursor_path"),
        next_link_path=path_of("next_link_path"),
    )


def _params(table: Mapping[str, Any], key: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for name, value in table.items():
        if isinstance(value, bool):
            pairs.append((name, "true" if value else "false"))
        elif isinstance(value, (str, int, float)):
            pairs.append((name, str(value)))
        else:
            raise config_error(
                f"{key}.{name}", f"expected text, a number or a boolean, got {value!r}"
            )
    return tuple(pairs)
