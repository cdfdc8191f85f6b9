"""``incsync run -v``: a bug's traceback reaches standard error whole, masked and printable."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

import pytest

from incsync.connectors import InMemoryConnector, InMemorySource
from incsync.integrations.cli import main
from incsync.integrations.cli._config import Config, SourceConfig
from incsync.protocols import Connector
from tests.cli.support import SAMPLE, write_config

SECRET = "sk_live_SENTINEL_5be1c2"


def _parse_amount(_page: int) -> NoReturn:
    raise ValueError(f"amount \x1b[2J{'9' * 1500}\nnot a number; token {SECRET}")


def _buggy(
    _config: Config, _source: SourceConfig, _environ: Mapping[str, str], _tokens: object
) -> Connector:
    return InMemoryConnector(InMemorySource(), before_page=_parse_amount, secret=SECRET)


def test_a_connector_bug_is_logged_with_its_whole_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With -v, the traceback of an exception that is no incsync error is on standard error, to
    its last line even past a very long one; its secret is masked and its escapes are shown
    as text. The result line names the error, and the run exits 1."""
    monkeypatch.setattr("incsync.integrations.cli._run.build_connector", _buggy)
    path = write_config(tmp_path, SAMPLE)
    assert main(["run", "-v", "--config", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[1].startswith(r"  error: ValueError: amount \x1b[2J999")
    assert "ValueError is not an incsync error, so its traceback follows:" in err
    assert ", in _parse_amount\n" in err
    assert err.rstrip("\n").endswith("not a number; token ***")
    assert "\x1b" not in out + err
    assert SECRET not in out + err
