"""Leases from the command: a second Ctrl-C releases them, status shows them, unlock frees them."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest

from incsync.errors import LeaseLostError
from incsync.humanize import exact_time
from incsync.integrations.cli import main
from incsync.state import Checkpoint, Lease, held_lease
from incsync.stores.sqlite import SQLiteStore
from incsync.timestamps import utc_now
from tests.cli.support import SAMPLE, SCRIPT, wait_for_line, write_config

HOLDER = "worker-9 on host-b"


def _lease_of(directory: Path, key: str = "demo") -> Lease | None:
    with SQLiteStore(directory / "state.db") as store:
        return held_lease(store.load(key), utc_now())


def _taken(directory: Path) -> tuple[Lease, Path]:
    """Write the sample config and let another worker take its source's lease; return both."""
    path = write_config(directory, SAMPLE)
    with SQLiteStore(directory / "state.db") as store:
        lease = store.acquire_lease(
            "demo", HOLDER, utc_now().replace(microsecond=0), timedelta(minutes=10)
        )
    assert lease is not None
    return lease, path


def test_a_second_ctrl_c_stops_at_once_and_still_releases_the_lease(tmp_path: Path) -> None:
    """The first SIGINT asks the cycle to stop after its page; a second one, while that page is
    still being read, ends the command at once (no result line, exit 130) and the source's lease
    is released on the way out, so no worker has to wait ten minutes for it to expire."""
    slow = SAMPLE.replace("count = 1200", "count = 600").replace(
        "page_size = 100", "page_size = 50\npage_delay = 1.5"
    )
    path = write_config(tmp_path, slow)
    process = subprocess.Popen(
        [str(SCRIPT), "run", "--once", "--config", str(path), "--progress-interval", "0"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_line(process.stderr, "demo: page 1,", time.monotonic() + 30)
        process.send_signal(signal.SIGINT)
        wait_for_line(process.stderr, "incsync: SIGINT received", time.monotonic() + 30)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 130, err
    assert out == ""  # the page in flight was not waited for
    assert "incsync: interrupted" in err
    assert _lease_of(tmp_path) is None
    with SQLiteStore(tmp_path / "state.db") as store:
        assert store.count_transactions("demo") < 600


def test_status_shows_a_held_lease_with_its_holder_and_times(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The table is followed by a line naming the holder, since when and until when, and how to
    release it; --json has a lease object. A source whose lease no one holds has neither."""
    path = write_config(tmp_path, SAMPLE)
    SQLiteStore(tmp_path / "state.db").close()  # status reads a database, it never makes one
    assert main(["status", "--config", str(path)]) == 0
    assert "lease" not in capsys.readouterr().out
    assert main(["status", "--json", "--config", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["sources"][0]["lease"] is None

    lease, _ = _taken(tmp_path)
    with SQLiteStore(tmp_path / "state.db") as store:
        since = store.load("demo").last_attempt
    assert since is not None

    assert main(["status", "--config", str(path)]) == 0
    assert capsys.readouterr().out.endswith(
        f"demo: lease held by {HOLDER} since {exact_time(since)}, until "
        f"{exact_time(lease.expires_at)} (if that process is gone: incsync unlock demo --force)\n"
    )
    assert main(["status", "--json", "--config", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["sources"][0]["lease"] == {
        "holder": HOLDER,
        "since": since.isoformat(),
        "expires_at": lease.expires_at.isoformat(),
        "token": lease.token,
    }


# The config's sample source reads as one window, as a user's does: exact counts and pages.
@pytest.mark.one_reader
def test_unlock_refuses_a_live_lease_without_force_and_releases_it_with_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A lease left by a process that is gone makes run --all skip the source. unlock refuses
    (exit 1) while the lease is unexpired, naming its holder and expiry; --force releases it, the
    old holder's late checkpoint is refused (fencing), and the next run syncs the source. With no
    lease held, unlock changes nothing; an unknown key is a usage error."""
    lease, path = _taken(tmp_path)
    config = ["--config", str(path)]
    assert main(["run", "--once", "--all", *config]) == 0
    assert capsys.readouterr().out.startswith("demo: skipped_running:")

    assert main(["unlock", "demo", *config]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert f"lease held by {HOLDER} since " in err
    assert f"until {exact_time(lease.expires_at)}" in err
    assert "--force" in err
    assert _lease_of(tmp_path) == lease

    assert main(["unlock", "demo", "--force", *config]) == 0
    assert capsys.readouterr().out.startswith(f"demo: unlocked (the lease held by {HOLDER} since ")
    assert _lease_of(tmp_path) is None
    with SQLiteStore(tmp_path / "state.db") as store, pytest.raises(LeaseLostError):
        store.save_checkpoint(
            "demo", lease, 0, Checkpoint(cursor=None), utc_now(), timedelta(minutes=10)
        )

    assert main(["run", "--once", "--all", *config]) == 0
    assert capsys.readouterr().out.startswith("demo: completed: 1,200 fetched")
    assert main(["unlock", "demo", *config]) == 0
    assert capsys.readouterr().out == "demo: no cycle holds its lease; nothing to unlock\n"
    assert main(["unlock", "nope", *config]) == 2
    assert "no source 'nope'" in capsys.readouterr().err
