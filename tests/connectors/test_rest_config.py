"""RestConfig.from_mapping: every key validated up front, errors naming the full dotted key."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from typing import Any

import attrs
import pytest

from incsync.connectors._formats import TimestampFormat
from incsync.connectors._rest_config import RestConfig
from incsync.connectors.auth import ApiKey, BearerToken
from incsync.errors import ConfigurationError
from incsync.fields import DottedPath
from incsync.timestamps import UTC

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

EXAMPLE_TOML = """
base_url = "https://api.example.com/v2"
path = "/contacts"
ordered = true
lookback_seconds = 60

[params]
include_deleted = true
view = "full"

[filter]
param = "updated_since"
format = "%Y-%m-%d %H:%M:%S"

[records]
path = "data.items"
id = "id"
updated_at = "meta.updated_at"
updated_at_format = "epoch_ms"

[tombstone]
field = "status"
values = ["deleted", "archived"]

[auth]
kind = "api_key_header"
secret = "EXAMPLE_API_KEY"
header = "X-Example-Key"

[paging]
style = "cursor"
size = 250
size_param = "per_page"
cursor_param = "after"
cursor_path = "meta.next_cursor"
"""


def minimal(**changes: Any) -> dict[str, Any]:
    """The smallest valid configuration, with top-level ``changes`` applied."""
    base: dict[str, Any] = {
        "base_url": "https://api.example.com",
        "path": "/items",
        "filter": {"param": "since"},
    }
    return {**base, **changes}


def test_the_toml_example_parses_into_a_complete_config() -> None:
    """The documented TOML example, parsed with tomllib, gives every setting it names."""
    config = RestConfig.from_mapping(tomllib.loads(EXAMPLE_TOML))
    assert config.base_url == "https://api.example.com/v2"
    assert config.ordered is True
    assert config.lookback == timedelta(seconds=60)
    assert config.params == (("include_deleted", "true"), ("view", "full"))
    assert config.filter.param == "updated_since"
    assert config.filter.format == TimestampFormat("strftime", "%Y-%m-%d %H:%M:%S")
    assert config.records.path == DottedPath(("data", "items"))
    assert config.records.updated_at == DottedPath(("meta", "updated_at"))
    assert config.records.updated_at_format.kind == "epoch_ms"
    assert config.tombstone is not None
    assert config.tombstone.matches({"status": "archived"})
    assert not config.tombstone.matches({"status": "active"})
    assert (config.auth.kind, config.auth.secret, config.auth.header) == (
        "api_key_header",
        "EXAMPLE_API_KEY",
        "X-Example-Key",
    )
    paging = config.paging
    assert (paging.style, paging.size, paging.size_param, paging.cursor_param) == (
        "cursor",
        250,
        "per_page",
        "after",
    )
    assert paging.cursor_path == DottedPath(("meta", "next_cursor"))


def test_defaults_of_a_minimal_config() -> None:
    """Omitted settings take documented defaults: no paging, no auth, ISO times, top-level keys."""
    config = RestConfig.from_mapping(minimal())
    assert config.paging.style == "none"
    assert config.paging.size_param is None
    assert config.auth.kind == "none"
    assert config.auth.build({}) is None
    assert config.records.path == DottedPath(())
    assert config.records.id == DottedPath(("id",))
    assert config.records.updated_at_format.kind == "iso8601"
    assert (config.tombstone, config.ordered, config.lookback) == (None, False, timedelta(0))


def test_the_config_is_frozen() -> None:
    """A config value cannot be changed in place; attrs.evolve makes a new one."""
    config = RestConfig.from_mapping(minimal())
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.path = "/other"  # type: ignore[misc]
    assert attrs.evolve(config, path="/other").path == "/other"


BAD = [
    # (configuration, the error's start)
    (minimal(base_url=3), "base_url: expected a non-empty string"),
    (minimal(base_url="ftp://x"), "base_url: expected an http:// or https:// URL"),
    ({"path": "/x", "filter": {"param": "s"}}, "base_url: is required"),
    (minimal(path=""), "path: expected a non-empty string"),
    (minimal(ordered="yes"), "ordered: expected true or false"),
    (minimal(lookback_seconds=-1), "lookback_seconds: expected a number >= 0"),
    (minimal(vendor="x"), "vendor: unknown key (known here: base_url, path,"),
    (minimal(ordred=True), 'ordred: unknown key; did you mean "ordered"?'),
    (minimal(params=[1]), "params: expected a table of settings"),
    (minimal(params={"a": [1]}), "params.a: expected text, a number or a boolean"),
    (minimal(filter="since"), "filter: expected a table of settings"),
    (minimal(filter={}), "filter.param: is required"),
    (minimal(filter={"param": ""}), "filter.param: expected a non-empty string"),
    (
        minimal(filter={"param": "s", "fromat": "x"}),
        'filter.fromat: unknown key; did you mean "filter.format"?',
    ),
    (minimal(filter={"param": "s", "format": "epoch"}), 'filter.format: expected "iso8601"'),
    (minimal(filter={"param": "s", "format": "%Q"}), "filter.format: the pattern '%Q' cannot read"),
    (minimal(filter={"param": "s", "format": "%s"}), "filter.format: the pattern '%s' cannot read"),
    (
        minimal(ordered=True, filter={"param": "s", "format": "%Y-%m"}),
        "filter.format: ordered = true reads on from the newest time read, but the pattern '%Y-%m'",
    ),
    (
        minimal(records={"path": "data..items"}),
        'records.path: expected a dotted path like "data.items"',
    ),
    (minimal(records={"id": 7}), 'records.id: expected a dotted path like "id", got 7'),
    (minimal(records={"updated_at": "a b"}), "records.updated_at: expected a dotted path"),
    (minimal(records={"updated_at_format": 5}), 'records.updated_at_format: expected "iso8601"'),
    (minimal(records={"assume_utc": 1}), "records.assume_utc: expected true or false"),
    (minimal(records={"ids": "id"}), 'records.ids: unknown key; did you mean "records.id"?'),
    (minimal(tombstone={"values": ["x"]}), "tombstone.field: is required"),
    (
        minimal(tombstone={"field": "s", "values": []}),
        "tombstone.values: expected a non-empty list",
    ),
    (
        minimal(tombstone={"field": "s", "values": "deleted"}),
        "tombstone.values: expected a non-empty list",
    ),
    (
        minimal(tombstone={"field": "", "values": ["x"], "value": 1}),
        'tombstone.value: unknown key; did you mean "tombstone.values"?',
    ),
    (
        minimal(tombstone={"field": "s", "retention_days": 0}),
        "tombstone.retention_days: expected a number of days above 0",
    ),
    (
        minimal(tombstone={"field": "s", "retention_days": "30"}),
        "tombstone.retention_days: expected a number of days above 0",
    ),
    (minimal(count={}), "count.total_path: is required"),
    (minimal(count={"total_path": "meta..total"}), "count.total_path: expected a dotted path like"),
    (
        minimal(count={"total_path": "t", "params": {"x": [1]}}),
        "count.params.x: expected text, a number or a boolean",
    ),
    (minimal(count={"total": "t"}), 'count.total: unknown key; did you mean "count.total_path"?'),
    (minimal(auth={"kind": "basic"}), "auth.kind: expected one of none, bearer"),
    (minimal(auth={"kind": "bearer"}), "auth.secret: is required with kind = 'bearer'"),
    (
        minimal(auth={"kind": "bearer", "secret": "tok en!"}),
        "auth.secret: expected the NAME of a secret",
    ),
    (
        minimal(auth={"kind": "bearer", "secret": "T", "header": "X"}),
        "auth.header: is not used with kind = 'bearer'",
    ),
    (
        minimal(auth={"kind": "api_key_query", "secret": "T"}),
        "auth.param: is required with kind = 'api_key_query'",
    ),
    (
        minimal(auth={"kind": "api_key_header", "secret": "T", "header": ""}),
        "auth.header: expected a non-empty string",
    ),
    (minimal(auth={"kind": "bearer", "token": "abc"}), "auth.token: unknown key"),
    (
        minimal(paging={"style": "links"}),
        "paging.style: expected one of none, offset, page, cursor, next_link",
    ),
    (
        minimal(paging={"style": "offset", "size": 0}),
        "paging.size: expected a whole number from 1 to 100000",
    ),
    (minimal(paging={"style": "offset", "size": True}), "paging.size: expected a whole number"),
    (
        minimal(paging={"style": "offset", "size_param": ""}),
        "paging.size_param: expected a non-empty string",
    ),
    (
        minimal(paging={"style": "offset", "offset_param": 1}),
        "paging.offset_param: expected a non-empty string",
    ),
    (
        minimal(paging={"style": "page", "page_param": ""}),
        "paging.page_param: expected a non-empty string",
    ),
    (
        minimal(paging={"style": "page", "first_page": 2}),
        "paging.first_page: expected a whole number from 0 to 1",
    ),
    (minimal(paging={"style": "cursor"}), "paging.cursor_path: is required with style = 'cursor'"),
    (
        minimal(paging={"style": "cursor", "cursor_path": 42}),
        'paging.cursor_path: expected a dotted path like "meta.next", got 42',
    ),
    (
        minimal(paging={"style": "cursor", "cursor_path": "m.n", "cursor_param": ""}),
        "paging.cursor_param: expected a non-empty string",
    ),
    (
        minimal(paging={"style": "next_link"}),
        "paging.next_link_path: is required with style = 'next_link'",
    ),
    (
        minimal(paging={"style": "next_link", "next_link_path": "links."}),
        'paging.next_link_path: expected a dotted path like "links.next"',
    ),
    (
        minimal(paging={"style": "offset", "cursor_path": "m.n"}),
        "paging.cursor_path: is not used with style = 'offset'",
    ),
    (
        minimal(paging={"style": "offset", "page_size": 10}),
        'paging.page_size: unknown key; did you mean "paging.size"?',
    ),
]


def test_delete_retention_and_the_count_check_are_read_from_their_tables() -> None:
    """``tombstone.retention_days`` becomes a duration; ``count`` a path and its parameters."""
    config = RestConfig.from_mapping(
        minimal(
            tombstone={"field": "status", "values": ["deleted"], "retention_days": 30},
            count={"total_path": "meta.total", "params": {"include_deleted": False}},
        )
    )
    assert config.tombstone is not None
    assert config.tombstone.retention == timedelta(days=30)
    assert config.count is not None
    assert config.count.total_path == DottedPath(("meta", "total"))
    assert config.count.params == (("include_deleted", "false"),)
    plain = RestConfig.from_mapping(minimal(tombstone={"field": "status"}))
    assert plain.tombstone is not None
    assert (plain.tombstone.retention, plain.count) == (None, None)


@pytest.mark.parametrize(("mapping", "message"), BAD)
def test_bad_configuration_names_the_key(mapping: dict[str, Any], message: str) -> None:
    """Each bad setting is refused with its full dotted key and what is expected."""
    with pytest.raises(ConfigurationError) as raised:
        RestConfig.from_mapping(mapping)
    assert str(raised.value).startswith(message), str(raised.value)


def test_a_mapping_that_is_no_table_is_refused() -> None:
    """A list where a table belongs is refused, not half-read."""
    with pytest.raises(ConfigurationError, match="expected a table of settings"):
        RestConfig.from_mapping([("base_url", "x")])  # type: ignore[arg-type]


def test_every_key_is_covered_by_a_bad_value_test() -> None:
    """The table above exercises every configuration key, so a new key cannot go unchecked."""
    named = {message.split(":")[0] for _, message in BAD}
    keys = {
        "base_url", "path", "ordered", "lookback_seconds", "params", "filter", "filter.param",
        "filter.format", "records.path", "records.id", "records.updated_at",
        "records.updated_at_format", "records.assume_utc", "tombstone.field", "tombstone.values",
        "auth.kind", "auth.secret", "auth.header", "auth.param", "paging.style", "paging.size",
        "paging.size_param", "paging.offset_param", "paging.page_param", "paging.first_page",
        "paging.cursor_param", "paging.cursor_path", "paging.next_link_path",
    }  # fmt: skip
    assert keys <= named


def test_auth_builds_from_the_named_secret_and_never_shows_it() -> None:
    """The secret's value is looked up at build time; neither the config nor errors show it."""
    secret = "SENTINEL-value-81f0"
    bearer = RestConfig.from_mapping(minimal(auth={"kind": "bearer", "secret": "TOKEN"}))
    flow = bearer.auth.build({"TOKEN": secret})
    assert isinstance(flow, BearerToken)
    assert flow.secrets() == (secret,)
    assert secret not in repr(bearer)
    query = RestConfig.from_mapping(
        minimal(auth={"kind": "api_key_query", "secret": "KEY", "param": "api_key"})
    )
    assert isinstance(query.auth.build({"KEY": secret}), ApiKey)
    with pytest.raises(ConfigurationError, match="no value for the secret named 'TOKEN'") as raised:
        bearer.auth.build({"OTHER": secret})
    assert secret not in str(raised.value)


MOMENT = datetime(2024, 3, 10, 7, 5, 9, 123_456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("spec", "written", "read"),
    [
        ("iso8601", "2024-03-10T07:05:09.123456Z", "2024-03-10T02:05:09.123456-05:00"),
        ("epoch_seconds", "1710054309", 1710054309),
        ("epoch_ms", "1710054309123", "1710054309123"),
        ("%Y-%m-%d %H:%M:%S", "2024-03-10 07:05:09", "2024-03-10 07:05:09"),
        ("%Y-%m-%dT%H:%M:%S%z", "2024-03-10T07:05:09+0000", "2024-03-10T08:05:09+0100"),
    ],
)
def test_timestamp_formats_write_rounded_down_and_read_back(
    spec: str, written: str, read: object
) -> None:
    """Each format writes a moment rounded down (so "since" stays inclusive) and reads UTC."""
    fmt = TimestampFormat.from_spec(spec, "filter.format")
    assert fmt.render(MOMENT) == written
    parsed = fmt.parse(read, "updated_at")
    assert parsed.tzinfo is UTC
    assert parsed <= MOMENT
    assert MOMENT - parsed < timedelta(seconds=1)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("spec", "resolution"),
    [
        ("iso8601", timedelta(microseconds=1)),
        ("epoch_ms", timedelta(milliseconds=1)),
        ("epoch_seconds", timedelta(seconds=1)),
        ("%Y-%m-%d %H:%M:%S", timedelta(seconds=1)),
        ("%Y-%m-%dT%H:%M:%S%z", timedelta(seconds=1)),
        ("%Y-%m-%dT%H:%M:%S.%fZ", timedelta(microseconds=1)),
        ("%Y-%m-%dT%H:%M", timedelta(minutes=1)),
        ("%d/%m/%Y %H:%M", timedelta(minutes=1)),
        ("%Y-%m-%d %H", timedelta(hours=1)),
        ("%Y-%m-%d", timedelta(days=1)),
        ("%Y%j", timedelta(days=1)),
    ],
)
def test_a_format_resolution_is_the_step_its_writing_rounds_down_to(
    spec: str, resolution: timedelta
) -> None:
    """ISO 8601 keeps microseconds, epochs their unit, a pattern its finest field."""
    fmt = TimestampFormat.from_spec(spec, "filter.format")
    assert fmt.resolution == resolution
    assert fmt.parse(fmt.render(MOMENT), "since") == MOMENT - (MOMENT - EPOCH) % resolution


@pytest.mark.parametrize("spec", ["%Y-%m", "%Y", "%H:%M:%S", "%d %H:%M:%S"])
def test_a_pattern_that_writes_no_day_has_no_resolution(spec: str) -> None:
    """A month, a year or a time without its date names no tick a keyset read could go on from."""
    fmt = TimestampFormat.from_spec(spec, "filter.format")
    assert fmt.resolution is None


def test_a_pattern_without_a_resolution_is_accepted_for_an_unordered_source() -> None:
    """An unordered source only ever filters from the cursor's time, which any floor serves."""
    config = RestConfig.from_mapping(minimal(filter={"param": "s", "format": "%Y-%m"}))
    assert config.filter.format.resolution is None


def test_a_pattern_that_does_not_match_is_a_value_error() -> None:
    """Text in another form is a ValueError naming the field and the pattern."""
    fmt = TimestampFormat.from_spec("%d/%m/%Y %H:%M", "records.updated_at_format")
    with pytest.raises(ValueError, match="updated_at '2024-01-01' does not match"):
        fmt.parse("2024-01-01", "updated_at")
    with pytest.raises(ValueError, match="must be text"):
        fmt.parse(20240101, "updated_at")


def test_dotted_paths_reach_into_nested_objects() -> None:
    """A dotted path reads nested keys; a missing step or a non-object gives None."""
    path = DottedPath.parse("meta.updated_at", "records.updated_at")
    assert path.get({"meta": {"updated_at": "x"}}) == "x"
    assert path.get({"meta": "flat"}) is None
    assert path.get({}) is None
    assert DottedPath.parse("", "records.path").get([1]) == [1]
    assert str(path) == "meta.updated_at"


def test_tombstone_values_compare_by_type() -> None:
    """``true`` means deleted only for a boolean true, not for the number 1."""
    config = RestConfig.from_mapping(minimal(tombstone={"field": "meta.deleted"}))
    assert config.tombstone is not None
    assert config.tombstone.matches({"meta": {"deleted": True}})
    assert not config.tombstone.matches({"meta": {"deleted": 1}})
    assert not config.tombstone.matches({"meta": {}})
