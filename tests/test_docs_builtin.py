"""Tests that keep the built-in connector pages true to the code they describe.

The pages' Python examples run in tests/test_docs.py. These tests check what an example cannot:
that every TOML configuration on the REST connector's page parses and builds a connector, that
its reference tables name every configuration key the connector knows (and no other), and that
each connector page's settings table names every argument of the connector's constructor.
"""

from __future__ import annotations

import inspect
import re
import sys
from contextlib import closing
from pathlib import Path

import pytest

from incsync.connectors import RestConfig
from incsync.connectors.files import FileConnector
from incsync.connectors.rest import RestConnector
from incsync.errors import ConfigurationError
from incsync.vendors.pipedrive import PipedriveConnector
from incsync.vendors.salesforce import SalesforceConnector
from incsync.vendors.stripe import StripeConnector
from incsync.vendors.xero import XeroConnector
from tests.test_docs import code_blocks

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

BUILTIN = Path(__file__).resolve().parent.parent / "docs" / "builtin"
REST_PAGE = BUILTIN / "rest.md"
TABLES = ("filter", "records", "tombstone", "count", "auth", "paging")
_KNOWN = re.compile(r"\(known here: (?P<keys>[^)]*)\)")
_TABLE_HEADING = re.compile(r"^`\[(?P<table>\w+)\]`")
_FIRST_CELL = re.compile(r"^\|\s*(?P<cell>[^|]*?)\s*\|")
_CODE = re.compile(r"`([^`]+)`")


def toml_blocks(path: Path) -> list[str]:
    """Return the sources of the ``toml`` blocks of a Markdown file."""
    text = path.read_text(encoding="utf-8")
    return [block.source for block in code_blocks(text, path) if block.language == "toml"]


def known_keys(table: str | None) -> set[str]:
    """Return the keys the configuration accepts at the top level or in ``table``.

    They are read from the error for an unknown key, which lists the keys known where it is.
    """
    mapping: dict[str, object] = {
        "base_url": "https://api.example.com",
        "path": "/items",
        "filter": {"param": "since"},
    }
    if table is None:
        mapping["no_such_key"] = 1
    elif table == "filter":
        mapping["filter"] = {"param": "since", "no_such_key": 1}
    else:
        mapping[table] = {"no_such_key": 1}
    with pytest.raises(ConfigurationError) as raised:
        RestConfig.from_mapping(mapping)
    found = _KNOWN.search(str(raised.value))
    assert found is not None, str(raised.value)
    return set(found.group("keys").split(", "))


def documented_keys(path: Path) -> dict[str | None, set[str]]:
    """Return the keys named in the first column of each reference table, by the table's name.

    The table right after "Keys at the top level" is the top level's; a table after a paragraph
    starting with `` `[name]` `` is that table's; a heading ends both.
    """
    keys: dict[str | None, set[str]] = {}
    current: str | None = "(none)"
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            current = "(none)"
            continue
        if line.startswith("Keys at the top level"):
            current = None
            continue
        heading = _TABLE_HEADING.match(line)
        if heading is not None:
            current = heading.group("table")
            continue
        cell = _FIRST_CELL.match(line)
        if cell is None or current == "(none)":
            continue
        names = _CODE.findall(cell.group("cell"))
        if len(names) == 1:
            keys.setdefault(current, set()).add(names[0])
    return keys


def test_the_rest_page_has_toml_examples() -> None:
    """The page shows at least one complete TOML configuration."""
    assert toml_blocks(REST_PAGE)


@pytest.mark.parametrize("source", toml_blocks(REST_PAGE))
def test_every_toml_example_parses_and_builds_a_connector(
    source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each TOML block is a valid configuration; the connector finds its secret in the env."""
    config = RestConfig.from_mapping(tomllib.loads(source))
    if config.auth.secret is not None:
        monkeypatch.delenv(config.auth.secret, raising=False)
        with pytest.raises(ConfigurationError, match=re.escape(repr(config.auth.secret))):
            RestConnector(config)
        monkeypatch.setenv(config.auth.secret, "example-secret-value")
    with closing(RestConnector(config)) as connector:
        assert connector.config == config
        assert connector.ordered is config.ordered
        assert connector.lookback == config.lookback


def test_the_complete_example_uses_every_top_level_key() -> None:
    """The "Everything at once" example sets every top-level key the configuration knows."""
    everything = tomllib.loads(toml_blocks(REST_PAGE)[-1])
    assert set(everything) == known_keys(None)


@pytest.mark.parametrize("table", [None, *TABLES])
def test_the_reference_names_every_key_and_no_other(table: str | None) -> None:
    """Each reference table lists exactly the keys the configuration accepts there."""
    assert documented_keys(REST_PAGE).get(table, set()) == known_keys(table)


@pytest.mark.parametrize(
    ("page", "connector"),
    [
        ("stripe.md", StripeConnector),
        ("pipedrive.md", PipedriveConnector),
        ("files.md", FileConnector),
        ("rest.md", RestConnector),
        ("xero.md", XeroConnector),
        ("salesforce.md", SalesforceConnector),
    ],
)
def test_the_settings_table_names_every_constructor_argument(page: str, connector: type) -> None:
    """Every argument of the connector's constructor appears in the page's settings table."""
    text = (BUILTIN / page).read_text(encoding="utf-8")
    settings = text.split("## Settings", 1)[1].split("\n## ", 1)[0]
    named = {
        name
        for line in settings.splitlines()
        if line.startswith("|")
        for name in _CODE.findall(line.split("|")[1])
    }
    arguments = set(inspect.signature(connector).parameters) - {"self"}
    assert arguments <= named, sorted(arguments - named)
