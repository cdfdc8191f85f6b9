"""Only ``incsync run`` creates the database; the other commands refuse a path that holds none."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from incsync.integrations.cli import main
from tests.cli.support import SAMPLE, write_config

READING_AND_CHANGING = [
    ["status"],
    ["status", "--json"],
    ["rejected", "demo"],
    ["history", "demo"],
    ["history", "demo", "--json"],
    ["reset", "demo"],
    ["cancel", "demo"],
    ["resume", "demo"],
]


@pytest.mark.parametrize("command", READING_AND_CHANGING, ids=" ".join)
def test_a_mistyped_database_path_is_an_error_not_a_new_database(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A command other than run, given a path where no database is, says so in one line and
    exits 2, creating nothing: an empty new database would read as sources never synced."""
    path = write_config(tmp_path, SAMPLE, store='path = "stat.db"')
    assert main([*command, "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"incsync: error: {path}: store.path: no such database {tmp_path / 'stat.db'}; "
        "check the path (only incsync run creates one)\n"
    )
    assert sorted(file.name for file in tmp_path.iterdir()) == ["incsync.toml"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_run_creates_the_database_readable_by_its_owner_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first run creates the database, 0600; the other commands then read it."""
    path = write_config(tmp_path, SAMPLE)
    assert main(["run", "--config", str(path)]) == 0
    assert stat.S_IMODE((tmp_path / "state.db").stat().st_mode) == 0o600
    assert main(["status", "--config", str(path)]) == 0
    assert "demo" in capsys.readouterr().out
