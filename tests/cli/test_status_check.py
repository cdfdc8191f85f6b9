"""``incsync status --check``: one monitoring line, and the exit code a monitor reads."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import NoReturn

import pytest

from incsync.connectors import InMemoryConnector, InMemorySource
from incsync.connectors.memory import iso_timestamp
from incsync.engine import SyncEngine
from incsync.errors import AuthError
from incsync.integrations.cli import main
from incsync.integrations.cli._output import CheckState, status_check
from incsync.status import StatusColor
from incsync.stores.sqlite import SQLiteStore
from incsync.testing import ManualClock
from incsync.timestamps import utc_now
from tests.cli.support import SAMPLE, incsync, write_config

# Never run: a source of the file the store knows nothing of reads grey ("starting").
NEVER_RUN = SAMPLE.replace("sources.demo", "sources.fresh")


def _changed(ago: timedelta) -> InMemoryConnector:
    source = InMemorySource()
    source.put({"id": "r1", "updated_at": iso_timestamp(utc_now() - ago), "amount": 1})
    return InMemoryConnector(source)


def _refused(_page: int) -> NoReturn:
    raise AuthError("hubspot: HTTP 401; re-authorise the connection")


def _store_with(database: Path, **sources: Callable[[SyncEngine, str], None]) -> None:
    """Give each named source the history its function writes through a real engine."""
    with SQLiteStore(database) as store:
        engine = SyncEngine(store, clock=ManualClock(utc_now()))
        for key, history in sources.items():
            history(engine, key)


def _green(engine: SyncEngine, key: str) -> None:
    engine.run_cycle(key, _changed(timedelta(hours=1)))


def _orange(engine: SyncEngine, key: str) -> None:
    # Synced just now, but the source's newest change is a month old: "no recent changes".
    engine.run_cycle(key, _changed(timedelta(days=30)))


def _red(engine: SyncEngine, key: str) -> None:
    # Rejected credentials stop a source after two cycles.
    failing = InMemoryConnector(InMemorySource(), before_page=_refused)
    for _ in range(2):
        engine.run_cycle(key, failing)


def _check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["status", "--check", "--config", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_red_source_is_critical(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One red source makes the check CRITICAL (2), whatever the others are; the line counts
    every colour, and repeats the counts as performance data."""
    _store_with(tmp_path / "state.db", stopped=_red, quiet=_orange, live=_green, alive=_green)
    path = write_config(tmp_path, NEVER_RUN)
    assert _check(path, capsys) == (
        2,
        "INCSYNC CRITICAL - 1 red, 1 orange, 2 green, 1 grey | red=1 orange=1 green=2 grey=1\n",
        "",
    )


def test_an_orange_source_is_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Orange without red is a WARNING (1)."""
    _store_with(tmp_path / "state.db", quiet=_orange, live=_green)
    path = write_config(tmp_path, NEVER_RUN)
    assert _check(path, capsys) == (
        1,
        "INCSYNC WARNING - 0 red, 1 orange, 1 green, 1 grey | red=0 orange=1 green=1 grey=1\n",
        "",
    )


def test_green_and_grey_sources_are_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Green and grey sources are OK (0): grey is starting, cancelled or resetting, no fault."""
    _store_with(tmp_path / "state.db", live=_green)
    path = write_config(tmp_path, NEVER_RUN)
    assert _check(path, capsys) == (
        0,
        "INCSYNC OK - 0 red, 0 orange, 1 green, 1 grey | red=0 orange=0 green=1 grey=1\n",
        "",
    )


def test_an_unreadable_store_is_unknown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A store that cannot be read says nothing about the sources: UNKNOWN (3), with the reason
    on the check's line, on standard output where a monitor reads it."""
    (tmp_path / "state.db").write_bytes(b"not a database, " * 64)
    code, out, err = _check(write_config(tmp_path, NEVER_RUN), capsys)
    assert code == 3
    assert out.startswith("INCSYNC UNKNOWN - StoreError: ")
    assert out.count("\n") == 1
    assert err == ""


def test_a_missing_database_or_config_is_unknown(tmp_path: Path) -> None:
    """A mistyped database path or config file is UNKNOWN too, not a usage error (2 would read
    CRITICAL to a monitor); the installed command exits with it."""
    path = write_config(tmp_path, NEVER_RUN, store='path = "typo.db"')
    missing = incsync("status", "--check", "--config", str(path), cwd=tmp_path)
    assert missing.code == 3
    assert missing.stdout.startswith("INCSYNC UNKNOWN - ")
    assert "no such database" in missing.stdout
    no_config = incsync("status", "--check", "--config", "nope.toml", cwd=tmp_path)
    assert (no_config.code, no_config.stdout[:18]) == (3, "INCSYNC UNKNOWN - ")


def test_the_state_is_the_worst_colour() -> None:
    """The check's state follows the worst colour; its value is the exit code."""
    red, orange, green, grey = (
        StatusColor.RED,
        StatusColor.ORANGE,
        StatusColor.GREEN,
        StatusColor.GREY,
    )
    assert status_check([])[0] is CheckState.OK
    assert status_check([grey, green])[0] is CheckState.OK
    assert status_check([green, orange, grey])[0] is CheckState.WARNING
    assert status_check([orange, red, green])[0] is CheckState.CRITICAL
    assert [int(state) for state in CheckState] == [0, 1, 2, 3]


def test_check_excludes_the_other_forms(tmp_path: Path) -> None:
    """--check is one form of output, like --json and --html: only one may be given."""
    path = write_config(tmp_path, NEVER_RUN)
    done = incsync("status", "--check", "--json", "--config", str(path), cwd=tmp_path)
    assert done.code == 2
    assert "not allowed with argument" in done.stderr
