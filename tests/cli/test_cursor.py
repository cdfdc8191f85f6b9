"""``incsync cursor`` shows where a source reads from; ``incsync reset --since`` moves it back."""

from __future__ import annotations

import json
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from incsync.cursor import Cursor
from incsync.integrations.cli import main
from incsync.stores.sqlite import SQLiteStore
from incsync.timestamps import UTC
from tests.cli.support import SAMPLE, SCRIPT, incsync, wait_for_line, write_config

SINCE = datetime(2026, 11, 19, tzinfo=UTC)


def _synced(directory: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = write_config(directory, SAMPLE)
    assert main(["run", "--config", str(path)]) == 0
    capsys.readouterr()
    return path


def test_cursor_shows_position_generation_phase_last_change_and_marks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The text names the cursor's exact time and record; --json gives the same facts."""
    path = _synced(tmp_path, capsys)
    assert main(["cursor", "demo", "--config", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "demo"
    assert lines[1] == "  cursor       2026-11-20T00:00:00+00:00, record INV-0001200"
    assert lines[2:4] == ["  generation   0", "  phase        active"]
    assert lines[4].startswith("  last change  2026-11-20T00:00:00+00:00 (")
    assert lines[5] == "  marks        none"

    assert main(["cursor", "demo", "--json", "--config", str(path)]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "schema": "incsync.cursor/1",
        "key": "demo",
        "cursor": {"updated_at": "2026-11-20T00:00:00+00:00", "record_id": "INV-0001200"},
        "generation": 0,
        "phase": "active",
        "reset_pending": False,
        "last_change": "2026-11-20T00:00:00+00:00",
        "marks": {},
    }


def test_reset_since_re_reads_from_the_date_deleting_and_sweeping_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The cursor moves back to the date and the generation on; the next run re-applies the 14
    invoices changed since then, sweeps nothing, and every transaction stays."""
    path = _synced(tmp_path, capsys)
    assert main(["reset", "demo", "--since", "2026-11-19", "--config", str(path)]) == 0
    assert capsys.readouterr().out == (
        "demo: rewound to 2026-11-19T00:00:00+00:00: the next cycle reads from "
        "2026-11-19T00:00:00+00:00, and re-applies what it reads; nothing deleted, nothing "
        "swept (phase active)\n"
    )
    with SQLiteStore(tmp_path / "state.db") as store:
        state = store.load("demo")
    assert (state.cursor, state.generation, state.reset_pending) == (Cursor(SINCE, ""), 1, False)

    assert main(["run", "--all", "--json", "--config", str(path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["outcome"], result["applied"], result["swept"]) == ("completed", 14, 0)
    with SQLiteStore(tmp_path / "state.db") as store:
        assert store.count_transactions("demo") == 1_200
        assert store.count_live("demo") == 1_200


def test_reset_since_refuses_a_date_without_a_zone_and_a_source_being_reset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A local date-time is a usage error saying how to write it; so is a rewind of a source
    whose reset has not completed its read; neither changes the state."""
    path = _synced(tmp_path, capsys)
    assert main(["reset", "demo", "--since", "2026-11-19T08:00", "--config", str(path)]) == 2
    assert "'2026-11-19T08:00' has no time zone; add Z for UTC" in capsys.readouterr().err
    assert main(["reset", "demo", "--config", str(path)]) == 0
    assert main(["reset", "demo", "--since", "2026-11-19T08:00Z", "--config", str(path)]) == 2
    assert "is being reset" in capsys.readouterr().err
    with SQLiteStore(tmp_path / "state.db") as store:
        assert store.load("demo").generation == 1


def test_a_run_in_another_process_cannot_move_a_rewound_cursor_forward_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`reset --since` while `incsync run` reads: that cycle's next checkpoint is refused (it ends
    interrupted_reset) and the cursor stays at the date for the next run."""
    slow = SAMPLE.replace("count = 1200", "count = 600").replace(
        "page_size = 100", "page_size = 25\npage_delay = 0.1"
    )
    path = write_config(tmp_path, slow)
    since = "2026-08-25T00:00:00Z"
    process = subprocess.Popen(
        [str(SCRIPT), "run", "--config", str(path), "--progress-interval", "0"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_line(process.stderr, "demo: page 3,", time.monotonic() + 30)
        # In this process, not another: the run has about two seconds of pages left.
        assert main(["reset", "demo", "--since", since, "--config", str(path)]) == 0
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert capsys.readouterr().out.startswith("demo: rewound to 2026-08-25T00:00:00+00:00: ")
    assert process.returncode == 0, err
    assert re.match(r"demo: interrupted_reset: ", out), out
    cursor = incsync("cursor", "demo", "--json", "--config", str(path), cwd=tmp_path)
    assert json.loads(cursor.stdout)["cursor"] == {
        "updated_at": "2026-08-25T00:00:00+00:00",
        "record_id": "",
    }
