"""The demo runs a real sync end to end and leaves a database and a status page behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from incsync import Phase, SQLiteStore
from incsync.demo import ACME, GLOBEX, INITECH, main


def test_demo_syncs_resets_cancels_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each step prints its outcome; the sources end green, orange and red; the page is written."""
    assert main(["--dir", str(tmp_path), "--count", "600"]) == 0
    out = capsys.readouterr().out

    assert "-> completed: 600 fetched, 600 applied" in out
    assert "-> completed: 71 fetched, 70 applied" in out  # the changes, plus the cursor's record
    assert "phase=resetting generation=1 cursor=none" in out
    assert "-> completed: 640 fetched, 640 applied, 0 already applied" in out  # the reset
    assert "-> skipped_cancelled" in out
    assert out.count("-> failed") == 5
    assert "acme/invoices     ✓ green" in out
    assert "orange No recent changes" in out
    assert "✗ red" in out

    with SQLiteStore(tmp_path / "incsync-demo.db") as store:
        assert store.count_transactions(ACME) == 640
        states = {state.key: state for state in store.list_states()}
    assert states[ACME].phase is Phase.ACTIVE
    assert states[GLOBEX].phase is Phase.ACTIVE
    assert states[INITECH].phase is Phase.STOPPED
    page = (tmp_path / "status.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert ACME in page
