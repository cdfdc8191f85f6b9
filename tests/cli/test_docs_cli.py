"""docs/cli.md stays true: its TOML examples load; it documents every type, setting, field."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from incsync.integrations.cli._config import load_config
from incsync.integrations.cli._connectors import CONNECTOR_TYPES
from incsync.integrations.cli._parser import EXIT_CODES
from incsync.integrations.cli._secrets import build_connector
from incsync.integrations.cli._tokens import TOKENS_SCHEMA
from tests.cli.support import ROOT
from tests.cli.test_commands import SOURCE_FIELDS
from tests.cli.test_run import RESULT_FIELDS
from tests.test_docs import CodeBlock, code_blocks

DOC = ROOT / "docs" / "cli.md"
BLOCKS = code_blocks(DOC.read_text(encoding="utf-8"), DOC)
TOML = [block for block in BLOCKS if block.language == "toml"]


def test_the_reference_has_toml_examples() -> None:
    """There is a full example and a PostgreSQL one."""
    assert len(TOML) >= 2


@pytest.mark.parametrize("block", TOML, ids=lambda block: f"line {block.line}")
def test_each_toml_example_is_a_valid_config_whose_connectors_build(
    block: CodeBlock, tmp_path: Path
) -> None:
    """Each TOML example loads, and every source's connector builds with its variables set."""
    path = tmp_path / "sources.toml"
    path.write_text(block.source, encoding="utf-8")
    config = load_config(path)
    # Stripe insists on the shape of its keys; every other secret accepts this value too.
    environ = {ref.variable: "sk_test_docs" for s in config.sources for ref in s.secrets}
    for source_config in config.sources:
        connector = build_connector(config, source_config, environ)
        close = getattr(connector, "close", None)
        if callable(close):
            close()


def test_the_full_example_has_a_source_of_every_type() -> None:
    """The full example shows every connector type once."""
    types = set(re.findall(r'^type = "(\w+)"', TOML[0].source, flags=re.MULTILINE))
    assert types == set(CONNECTOR_TYPES)


def _section(text: str, type_name: str) -> str:
    start = text.index(f"**`{type_name}`**")
    end = text.find("\n**`", start + 1)
    return text[start : end if end != -1 else len(text)]


@pytest.mark.parametrize("type_name", sorted(CONNECTOR_TYPES))
def test_every_setting_of_every_type_is_documented(type_name: str) -> None:
    """Each type has a section naming each of its settings, secrets marked as such."""
    section = _section(DOC.read_text(encoding="utf-8"), type_name)
    for name, setting in CONNECTOR_TYPES[type_name].settings.items():
        mark = f"| `{name}` (secret) |" if setting.secret else f"| `{name}` |"
        assert mark in section, f"{type_name}.{name}"


def test_the_json_schema_and_exit_codes_match_the_code() -> None:
    """The documented JSON fields are the emitted ones; the exit codes agree with --help."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index("| field | meaning |")
    table = text[start : text.index("\n\n", start)]
    assert set(re.findall(r"`(\w+)`(?=[,\s]*[`|])", table)) >= SOURCE_FIELDS - {"key"}
    example = next(
        block for block in BLOCKS if block.language == "json" and "sources" in block.source
    )
    assert set(json.loads(example.source)["sources"][0]) == SOURCE_FIELDS
    for code in ("0", "1", "2", "130"):
        assert f"\n| {code} |" in text
        assert f"  {code} " in EXIT_CODES


def test_the_run_json_fields_are_documented() -> None:
    """The --json result example and its table name exactly the fields a result has."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index("| result field | meaning |")
    rows = text[start : text.index("\n\n", start)].splitlines()[2:]
    named = {name for row in rows for name in re.findall(r"`(\w+)`", row.split("|")[1])}
    assert named == RESULT_FIELDS
    example = next(block for block in BLOCKS if '"source_key"' in block.source)
    assert set(json.loads(example.source)) == RESULT_FIELDS


def test_every_json_example_is_json() -> None:
    """Each JSON block of the reference parses."""
    for block in BLOCKS:
        if block.language == "json":
            json.loads(block.source)


def test_the_scheduling_keys_options_and_token_file_are_documented() -> None:
    """[run], each source's interval and account, --all and the token file have their entries."""
    text = DOC.read_text(encoding="utf-8")
    for row in ("| `interval` |", "| `workers` |", "| `per_account_limit` |", "| `account` |"):
        assert row in text, row
    for words in ("**`--all`**", "**`--every TICK`**", "### The token file", f'"{TOKENS_SCHEMA}"'):
        assert words in text, words
