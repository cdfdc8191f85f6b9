"""``incsync run``: real cycles into a real SQLite file, progress, secrets, and clean stops."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from incsync.connectors.sample import generate_invoices
from incsync.cursor import Cursor
from incsync.integrations.cli import main
from incsync.state import held_lease
from incsync.stores.sqlite import SQLiteStore
from incsync.testing.fakes.hubspot import FakeHubSpot, HubSpotLimits
from incsync.timestamps import UTC, utc_now
from tests.cli.support import SAMPLE, SCRIPT, incsync, wait_for_line, write_config

END = datetime(2026, 11, 20, tzinfo=UTC)
UNLIMITED = HubSpotLimits(search_per_second=None, per_ten_seconds=None, daily=None)
PROGRESS_LINE = re.compile(
    r"demo: page \d+, [\d,]+/1,200 records, [\d,]+ records/s(, ETA \d+:\d\d)?"
)


def held(database: Path, key: str) -> dict[str, dict[str, object]]:
    """Return the payload of every transaction the database holds for the source, by id."""
    with SQLiteStore(database) as store:
        return {t.record.id: dict(t.record.payload) for t in store.transactions(key)}


def database_bytes(directory: Path) -> bytes:
    """Return the bytes of the SQLite file and its journal files."""
    return b"".join(path.read_bytes() for path in sorted(directory.glob("state.db*")))


# The config's sample source reads as one window, as a user's does: exact counts and pages.
@pytest.mark.one_reader
def test_run_once_applies_the_sample_source_then_waits_for_its_interval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A never-synced source is due at once and applies every invoice; a second --once finds it
    not due (its interval is an hour) and says when it is; --all runs it anyway, finding nothing
    new. Every run exits 0."""
    path = write_config(tmp_path, SAMPLE)
    assert main(["run", "--once", "--config", str(path)]) == 0
    first = capsys.readouterr().out
    assert first.startswith("demo: completed: 1,200 fetched, 1,200 applied, 0 already applied,")
    expected = {raw["id"]: raw for raw in generate_invoices(1_200, end=END)}
    assert held(tmp_path / "state.db", "demo") == expected

    assert main(["run", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    match = re.fullmatch(
        r"incsync: no source is due now; the next is demo at (\S+) \(--all runs every source "
        r"now\)\n",
        err,
    )
    assert match is not None, err
    assert timedelta(0) < datetime.fromisoformat(match[1]) - utc_now() <= timedelta(hours=1)

    assert main(["run", "--all", "--config", str(path)]) == 0
    assert ", 0 applied," in capsys.readouterr().out
    assert held(tmp_path / "state.db", "demo") == expected


def test_only_the_sources_asked_for_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--source runs that source alone; an unknown one is a config error (exit 2)."""
    other = SAMPLE.replace("sources.demo", "sources.other")
    path = write_config(tmp_path, SAMPLE + other)
    assert main(["run", "--config", str(path), "--source", "other"]) == 0
    assert capsys.readouterr().out.startswith("other: completed")
    assert held(tmp_path / "state.db", "demo") == {}

    assert main(["run", "--config", str(path), "--source", "nope"]) == 2
    assert "sources: no source 'nope'; the sources are demo, other" in capsys.readouterr().err


def test_progress_off_a_terminal_is_plain_lines(tmp_path: Path) -> None:
    """On a pipe progress is whole lines (no carriage return, no escape codes) on stderr."""
    path = write_config(tmp_path, SAMPLE)
    done = incsync("run", "--config", str(path), "--progress-interval", "0", cwd=tmp_path)
    assert done.code == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 12  # one per page of 100
    assert all(PROGRESS_LINE.fullmatch(line) for line in lines), lines
    assert "\r" not in done.stderr
    assert "\x1b" not in done.stderr + done.stdout
    assert lines[-1].startswith("demo: page 12, 1,200/1,200 records")


# The config's sample source reads as one window, as a user's does: its total from the start.
@pytest.mark.one_reader
def test_progress_lines_are_spaced_by_the_interval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the default interval (10 s) a quick cycle logs its first page only."""
    assert main(["run", "--config", str(write_config(tmp_path, SAMPLE))]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("demo: page 1, 100/1,200 records")


def _hubspot_config(directory: Path, base_url: str) -> Path:
    return write_config(
        directory,
        f'[sources.hub]\ntype = "hubspot"\ntoken_env = "HUBSPOT_TOKEN"\nbase_url = "{base_url}"\n'
        'properties = ["dealname", "amount", "hs_lastmodifieddate"]\n',
    )


def test_run_against_hubspot_over_loopback_matches_the_portal_and_never_shows_the_token(
    tmp_path: Path,
) -> None:
    """A HubSpot source syncs every deal; the token (from the environment) appears nowhere.

    Not in stdout, not in stderr with verbose logging, not in the database file.
    """
    fake = FakeHubSpot(index_lag=timedelta(0), limits=UNLIMITED)
    start = datetime(2024, 9, 1, tzinfo=UTC)
    fake.load("deals", [start + timedelta(minutes=i) for i in range(450)], {"dealname": "d"})
    token = fake.private_app_token
    with fake.serve() as base_url:
        path = _hubspot_config(tmp_path, base_url)
        done = incsync(
            "run", "-v", "--config", str(path), cwd=tmp_path, env={"HUBSPOT_TOKEN": token}
        )
    assert done.code == 0, done.stderr
    assert done.stdout.startswith("hub: completed: 450 fetched, 450 applied")
    deals = held(tmp_path / "state.db", "hub")
    truth = fake.ground_truth("deals")
    assert deals.keys() == truth.keys()
    for deal_id, payload in deals.items():
        properties = payload["properties"]
        assert isinstance(properties, dict)
        assert {k: v for k, v in properties.items() if v is not None} == truth[deal_id]
    assert "cycle completed" in done.stderr  # the engine's log reached stderr
    assert token not in done.stdout + done.stderr
    assert token.encode() not in database_bytes(tmp_path)


def test_progress_of_a_hubspot_source_is_out_of_the_search_total_with_the_time_left(
    tmp_path: Path,
) -> None:
    """Every progress line of a HubSpot source says how many of the deals the search counted
    were read, and the time left."""
    fake = FakeHubSpot(index_lag=timedelta(0), limits=UNLIMITED)
    start = datetime(2024, 9, 1, tzinfo=UTC)
    fake.load("deals", [start + timedelta(minutes=i) for i in range(450)], {"dealname": "d"})
    with fake.serve() as base_url:
        path = _hubspot_config(tmp_path, base_url)
        done = incsync(
            "run",
            "--progress-interval",
            "0",
            "--config",
            str(path),
            cwd=tmp_path,
            env={"HUBSPOT_TOKEN": fake.private_app_token},
        )
    assert done.code == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 3  # three searches of up to 200 deals
    line = r"hub: page \d, ([\d,]+)/450 records, [\d,]+ records/s, ETA \d+:\d\d"
    read = [re.fullmatch(line, text) for text in lines]
    assert all(read), lines
    # A re-query starts at the newest millisecond read, and drops the deal it reads again there.
    assert [match[1] for match in read if match] == ["200", "399", "450"]


def test_a_rejected_token_fails_the_cycle_with_exit_1_and_is_never_shown(tmp_path: Path) -> None:
    """A wrong token fails the cycle (exit 1, the error on stdout), and stays secret."""
    fake = FakeHubSpot(index_lag=timedelta(0), limits=UNLIMITED)
    fake.load("deals", [datetime(2024, 9, 1, tzinfo=UTC)], {"dealname": "d"})
    wrong = "pat-na1-SENTINEL-0000-wrong-token"
    with fake.serve() as base_url:
        path = _hubspot_config(tmp_path, base_url)
        done = incsync(
            "run", "-v", "--config", str(path), cwd=tmp_path, env={"HUBSPOT_TOKEN": wrong}
        )
        status = incsync("status", "--json", "--config", str(path), cwd=tmp_path)
    assert done.code == 1
    assert done.stdout.startswith("hub: failed: 0 fetched")
    assert "error: AuthError: " in done.stdout
    source = json.loads(status.stdout)["sources"][0]
    assert source["last_error"]["class"] == "AuthError"
    assert wrong not in done.stdout + done.stderr + status.stdout + status.stderr
    assert wrong.encode() not in database_bytes(tmp_path)


def test_an_unusable_store_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A database that cannot be opened is an operational error (exit 1), named."""
    (tmp_path / "state.db").mkdir()  # a directory where the file should be
    assert main(["run", "--config", str(write_config(tmp_path, SAMPLE))]) == 1
    assert capsys.readouterr().err.startswith("incsync: error: StoreError: ")


SLOW = SAMPLE.replace("count = 1200", "count = 600").replace(
    "page_size = 100", "page_size = 50\npage_delay = 0.05"
)


def _start(directory: Path, *args: str) -> subprocess.Popen[str]:
    path = write_config(directory, SLOW)
    return subprocess.Popen(
        [str(SCRIPT), "run", "--config", str(path), "--progress-interval", "0", *args],
        cwd=directory,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("once", [True, False], ids=["once", "every"])
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_a_signal_stops_the_running_cycle_at_its_next_page_then_exits(
    tmp_path: Path, signum: signal.Signals, code: int, once: bool
) -> None:
    """SIGINT or SIGTERM mid-cycle ends the cycle once its page in flight is written, not at the
    end of the read: it reports interrupted_stop, its cursor is that page's checkpoint, its lease
    is released (a run right after is not skipped), no other cycle starts, and the command exits
    130 or 0. The next run carries on from the checkpoint and completes the source."""
    process = _start(tmp_path, "--once" if once else "--every=1h")
    try:
        wait_for_line(process.stderr, "demo: page 1,", time.monotonic() + 30)
        process.send_signal(signum)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == code, err
    assert f"{signum.name} received: stopping once the pages in flight are written" in err
    match = re.fullmatch(r"demo: interrupted_stop: (\d+) fetched, \1 applied, .*\n", out)
    assert match is not None, out
    written = int(match[1])
    assert written in range(50, 600, 50)  # whole pages of 50, not the whole read
    with SQLiteStore(tmp_path / "state.db") as store:
        state = store.load("demo")
        keys = [t.record.key for t in store.transactions("demo")]
    assert len(keys) == written
    assert state.cursor == Cursor(*max(keys))  # the last written page's checkpoint
    assert held_lease(state, utc_now()) is None

    rest = incsync(
        "run", "--once", "--all", "--config", str(tmp_path / "incsync.toml"), cwd=tmp_path
    )
    assert rest.code == 0, rest.stderr
    assert re.match(rf"demo: completed: [\d,]+ fetched, {600 - written} applied,", rest.stdout)
    assert len(held(tmp_path / "state.db", "demo")) == 600


def test_every_waiting_for_the_next_due_time_stops_at_once_on_ctrl_c(tmp_path: Path) -> None:
    """While nothing runs Ctrl-C ends the wait at once, with exit 130."""
    process = _start(tmp_path, "--every", "1h")
    try:
        wait_for_line(process.stderr, "incsync: next look at ", time.monotonic() + 30)
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
        waited = time.monotonic() - sent
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 130
    assert waited < 10


RESULT_FIELDS = {
    "source_key",
    "cycle_id",
    "outcome",
    "fetched",
    "applied",
    "already_applied",
    "rejected",
    "swept",
    "reconcile_fetched",
    "reconcile_tombstoned",
    "pages",
    "counted",
    "started_at",
    "duration_seconds",
    "cursor_before",
    "cursor_after",
    "error",
    "error_class",
}


def test_run_json_prints_one_object_per_cycle_and_nothing_else_on_stdout(tmp_path: Path) -> None:
    """With --json stdout holds one JSON object per cycle: counts, outcome, error and its class,
    duration in seconds and the cursors with ISO times; progress stays on stderr."""
    fake = FakeHubSpot(index_lag=timedelta(0), limits=UNLIMITED)
    fake.load("deals", [datetime(2024, 9, 1, tzinfo=UTC)], {"dealname": "d"})
    wrong = "pat-na1-SENTINEL-0000-wrong-token"
    with fake.serve() as base_url:
        path = _hubspot_config(tmp_path, base_url)
        path.write_text(path.read_text(encoding="utf-8") + SAMPLE, encoding="utf-8")
        args = ("run", "--json", "--progress-interval", "0", "--config", str(path))
        done = incsync(*args, cwd=tmp_path, env={"HUBSPOT_TOKEN": wrong})
    assert done.code == 1, done.stderr
    results = {result["source_key"]: result for result in map(json.loads, done.stdout.splitlines())}
    assert set(results) == {"hub", "demo"}
    assert all(set(result) == RESULT_FIELDS for result in results.values())
    demo, hub = results["demo"], results["hub"]
    assert (demo["outcome"], demo["fetched"], demo["applied"], demo["pages"]) == (
        "completed",
        1_200,
        1_200,
        12,
    )
    assert (demo["error"], demo["error_class"], demo["cursor_before"]) == (None, None, None)
    assert re.fullmatch("[0-9a-f]{16}", demo["cycle_id"])
    assert demo["cycle_id"] != hub["cycle_id"]
    assert isinstance(demo["duration_seconds"], float)
    newest = max(generate_invoices(1_200, end=END), key=lambda raw: (raw["updated_at"], raw["id"]))
    after = demo["cursor_after"]
    assert datetime.fromisoformat(after["updated_at"]) == datetime.fromisoformat(
        newest["updated_at"].replace("Z", "+00:00")
    )
    assert after["record_id"] == newest["id"]
    assert datetime.fromisoformat(demo["started_at"]).tzinfo is not None
    assert (hub["outcome"], hub["error_class"]) == ("failed", "AuthError")
    assert hub["error"]
    assert "demo: page 12, 1,200/1,200 records" in done.stderr
    assert wrong not in done.stdout + done.stderr
