"""The SQLite database holds customers' records: its files are readable by their owner only."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from incsync.records import Record
from incsync.stores.sqlite import SQLiteStore
from incsync.timestamps import UTC

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o000], ids=["umask-022", "umask-000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under a common and a permissive umask, then restore the old one."""
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def test_a_new_database_and_its_journal_files_are_private(tmp_path: Path, umask: int) -> None:
    """A database the store creates is 0600 whatever the umask, and so are the -wal and -shm
    files SQLite makes beside it."""
    path = tmp_path / "state.db"
    with SQLiteStore(path) as store:
        store.apply("acme", [Record("r1", datetime(2026, 11, 1, tzinfo=UTC), {"amount": 1})], 0, 1)
        files = sorted(tmp_path.iterdir())
        assert [file.name for file in files] == ["state.db", "state.db-shm", "state.db-wal"]
        assert {file.name: _mode(file) for file in files} == dict.fromkeys(
            ["state.db", "state.db-shm", "state.db-wal"], 0o600
        )


def test_an_existing_database_keeps_its_mode(tmp_path: Path) -> None:
    """A file the host made (or shared with a group) on purpose is not changed."""
    path = tmp_path / "state.db"
    path.touch()
    path.chmod(0o640)
    with SQLiteStore(path):
        pass
    assert _mode(path) == 0o640
