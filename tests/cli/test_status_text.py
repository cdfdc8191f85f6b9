"""``incsync status`` as text: it fits a terminal's width and says why a source is failing."""

from __future__ import annotations

import io
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from incsync.connectors.memory import InMemoryConnector
from incsync.connectors.sample import sample_source
from incsync.engine import SyncEngine
from incsync.errors import TransientSourceError
from incsync.integrations.cli import main
from incsync.integrations.cli._commands import status_command
from incsync.integrations.cli._config import load_config
from incsync.integrations.cli._output import status_text
from incsync.integrations.cli._parser import build_parser
from incsync.status import status_of
from incsync.stores.sqlite import SQLiteStore
from incsync.testing import InMemoryStore
from incsync.timestamps import UTC, utc_now
from tests.cli.support import SAMPLE, write_config

ERROR = (
    "hubspot: could not connect (POST https://api.hubapi.com/crm/v3/objects/deals/search): "
    "ConnectError: [Errno 111] Connection refused (gave up after 5 attempts, 12.8 s waiting)"
)
COLOUR = re.compile(r"\x1b\[[0-9;]*m")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _down(number: int) -> None:
    raise TransientSourceError(ERROR)


@pytest.fixture
def config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """Two sources: ``demo`` synced, ``hub`` whose only cycle failed."""
    path = write_config(tmp_path, SAMPLE + '\n[sources.hub]\ntype = "sample"\n')
    assert main(["run", "--source", "demo", "--config", str(path)]) == 0
    capsys.readouterr()
    with SQLiteStore(tmp_path / "state.db") as store:
        source = sample_source(10, end=datetime(2026, 11, 20, tzinfo=UTC))
        SyncEngine(store).run_cycle("hub", InMemoryConnector(source, before_page=_down))
    return path


def _status(path: Path, out: io.StringIO) -> list[str]:
    args = build_parser().parse_args(["status", "--config", str(path)])
    assert status_command(args, load_config(path), out) == 0
    return out.getvalue().splitlines()


def test_on_a_terminal_the_table_fits_and_the_failing_source_s_error_is_wrapped_below(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 100 columns the exact times go (relative ones stay), no line is wider, and the error
    that failed ``hub`` follows the table, whole, broken at spaces into indented lines."""
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("NO_COLOR", "1")
    lines = _status(config, _Terminal())
    assert all(len(line) <= 100 for line in lines), lines
    header, demo, hub, *why = lines
    assert header.split()[:2] == ["SOURCE", "STATUS"]
    assert "(20" not in demo  # no exact time
    assert hub.startswith("hub ")
    assert why[0].startswith("hub: last error just now (20")
    assert all(line.startswith("    ") for line in why[1:])
    assert " ".join(line.strip() for line in why).endswith(f": TransientSourceError: {ERROR}")


def test_off_a_terminal_nothing_is_cut_and_the_error_is_one_line(config: Path) -> None:
    """In a pipe or a file every line is whole: exact times, and the error on one line."""
    _, demo, _, why = _status(config, io.StringIO())
    assert "just now (20" in demo
    assert why.startswith("hub: last error just now (20")
    assert why.endswith(f" UTC): TransientSourceError: {ERROR}")


def test_a_table_wider_than_the_terminal_even_without_exact_times_is_cut_keeping_colours() -> None:
    """Each line is cut to the width with "…"; colour escapes take no room and still end."""
    now = utc_now()
    store = InMemoryStore()
    engine = SyncEngine(store)
    engine.run_cycle("a-long-source-key", InMemoryConnector(sample_source(5, end=now)))
    rows = [(state, status_of(state, now=now + timedelta(minutes=1))) for state in engine.states()]
    text = status_text(rows, ansi=True, width=40)
    for line in text.splitlines():
        assert len(COLOUR.sub("", line)) <= 40
        assert line.count("\x1b[0m") == len(COLOUR.findall(line)) // 2
    assert text.splitlines()[1].endswith("…")
    assert status_text(rows, ansi=False) == status_text(rows, ansi=False, width=1_000)
