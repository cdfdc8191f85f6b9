"""The run loop: due cycles side by side, per-account limits, ticks, stops, and their display."""

from __future__ import annotations

import io
import logging
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from incsync.connectors.base import BaseConnector, RawPage
from incsync.cursor import Window
from incsync.engine import SyncEngine
from incsync.integrations.cli._progress import progress_board
from incsync.integrations.cli._scheduler import Schedule, run_scheduled
from incsync.protocols import Connector
from incsync.results import CycleProgress
from incsync.scheduling import SourcePlan
from incsync.stores.sqlite import SQLiteStore
from tests.cli.support import SAMPLE, SCRIPT, write_config


class _Meeting(BaseConnector):
    """One page, served only once every source of the meeting is reading at the same time."""

    ordered = True

    def __init__(self, key: str, barrier: threading.Barrier, log: list[str]) -> None:
        super().__init__()
        self._key = key
        self._barrier = barrier
        self._log = log

    def fetch(self, window: Window) -> Iterator[RawPage]:
        self._log.append(self._key)
        self._barrier.wait(timeout=10)  # raises BrokenBarrierError if the others never come
        yield [{"id": f"{self._key}-1", "updated_at": "2026-11-01T10:00:00Z"}]


class _Counting(BaseConnector):
    """One page after a short pause, counting how many cycles of its account run at once."""

    ordered = True

    def __init__(self, running: list[int], peak: list[int], lock: threading.Lock) -> None:
        super().__init__()
        self._running, self._peak, self._lock = running, peak, lock

    def fetch(self, window: Window) -> Iterator[RawPage]:
        with self._lock:
            self._running[0] += 1
            self._peak[0] = max(self._peak[0], self._running[0])
        time.sleep(0.2)
        with self._lock:
            self._running[0] -= 1
        yield [{"id": "1", "updated_at": "2026-11-01T10:00:00Z"}]


def _run(
    store: SQLiteStore,
    schedule: Schedule,
    connectors: dict[str, Connector],
    stop: threading.Event | None = None,
) -> tuple[bool, str, str]:
    out, err = io.StringIO(), io.StringIO()
    board = progress_board(out, err, interval=0)
    halt = stop or threading.Event()
    failed = run_scheduled(
        SyncEngine(store),
        schedule,
        connectors,
        board,
        stop=halt,
    )
    return failed, out.getvalue(), err.getvalue()


def test_sources_of_different_accounts_run_side_by_side(tmp_path: Path) -> None:
    """With two workers, two due sources of two accounts read at the same time (the connector
    waits for the other one: run one after the other, both would fail)."""
    barrier, log = threading.Barrier(2), list[str]()
    plans = tuple(SourcePlan(key, timedelta(hours=1)) for key in ("a", "b"))
    connectors: dict[str, Connector] = {key: _Meeting(key, barrier, log) for key in ("a", "b")}
    with SQLiteStore(tmp_path / "state.db") as store:
        failed, out, _ = _run(store, Schedule(plans, workers=2, per_account_limit=1), connectors)
    assert not failed, out
    assert sorted(line[: line.index(", 1 applied")] for line in out.splitlines()) == [
        "a: completed: 1 fetched",
        "b: completed: 1 fetched",
    ]
    assert sorted(log) == ["a", "b"]


def test_sources_of_one_account_never_exceed_its_limit(tmp_path: Path) -> None:
    """Four due sources of one account, four workers, a limit of one: one runs at a time, all
    run; a limit of two lets two run together."""
    for limit in (1, 2):
        running, peak, lock = [0], [0], threading.Lock()
        keys = [f"s{n}" for n in range(4)]
        plans = tuple(SourcePlan(k, timedelta(hours=1), account_key="acme") for k in keys)
        connectors: dict[str, Connector] = {k: _Counting(running, peak, lock) for k in keys}
        with SQLiteStore(tmp_path / f"state-{limit}.db") as store:
            failed, out, _ = _run(store, Schedule(plans, 4, per_account_limit=limit), connectors)
        assert not failed
        assert out.count(": completed: 1 fetched") == 4
        assert peak[0] == limit


def test_once_runs_only_what_is_due_and_all_forces_every_source(tmp_path: Path) -> None:
    """After a first run, an hourly source is not due; --all (run_all) runs it again anyway."""
    barrier = threading.Barrier(1)
    plans = (SourcePlan("a", timedelta(hours=1)),)
    connectors: dict[str, Connector] = {"a": _Meeting("a", barrier, [])}
    with SQLiteStore(tmp_path / "state.db") as store:
        assert _run(store, Schedule(plans, 1, 1), connectors)[1].startswith("a: completed")
        failed, out, err = _run(store, Schedule(plans, 1, 1), connectors)
        assert (failed, out) == (False, "")
        assert err.startswith("incsync: no source is due now; the next is a at ")
        forced = _run(store, Schedule(plans, 1, 1, run_all=True), connectors)[1]
        assert forced.startswith("a: completed: 1 fetched, 0 applied, 1 already applied")


def test_every_tick_interleaves_sources_of_different_intervals(tmp_path: Path) -> None:
    """On a 1 s tick, a source due every second runs again and again while an hourly one runs
    once; the stop request ends the loop."""
    ran: list[str] = []
    stop = threading.Event()

    class _Tally(BaseConnector):
        ordered = True

        def __init__(self, key: str) -> None:
            super().__init__()
            self._key = key

        def fetch(self, window: Window) -> Iterator[RawPage]:
            ran.append(self._key)
            if ran.count("fast") >= 3:
                stop.set()
            yield []

    plans = (
        SourcePlan("fast", timedelta(seconds=1)),
        SourcePlan("slow", timedelta(hours=1)),
    )
    connectors: dict[str, Connector] = {key: _Tally(key) for key in ("fast", "slow")}
    started = time.monotonic()
    with SQLiteStore(tmp_path / "state.db") as store:
        schedule = Schedule(plans, 2, 1, every=timedelta(seconds=1))
        failed, _, err = _run(store, schedule, connectors, stop)
    assert time.monotonic() - started < 20
    assert not failed
    assert ran.count("fast") == 3
    assert ran.count("slow") == 1
    assert "incsync: next look at " in err


def test_every_says_the_next_look_once_while_only_the_tick_moves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An hourly source that just ran is not due before the next ticks: on a 1 s tick the next
    look is said once, not at every tick; the log (-v) has every look."""
    plans = (SourcePlan("slow", timedelta(hours=1)),)
    connectors: dict[str, Connector] = {"slow": _Meeting("slow", threading.Barrier(1), [])}
    stop = threading.Event()
    timer = threading.Timer(2.5, stop.set)
    with SQLiteStore(tmp_path / "state.db") as store, caplog.at_level(logging.INFO, "incsync"):
        timer.start()
        try:
            _, out, err = _run(
                store, Schedule(plans, 1, 1, every=timedelta(seconds=1)), connectors, stop
            )
        finally:
            timer.cancel()
    assert out.startswith("slow: completed: 1 fetched")
    assert err.count("incsync: next look at ") == 1, err
    assert caplog.text.count("next look at ") >= 1  # the looks at the later ticks


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_side_by_side_on_a_terminal_each_cycle_has_a_bar_and_results_print_above(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a terminal each running cycle is a bar of one display; a result printed while another
    cycle runs goes above the bars (through the display, not torn by it), and the terminal is
    left with its cursor shown. A key is text, never rich markup."""
    monkeypatch.setenv("TERM", "xterm-256color")
    out, err = _Terminal(), _Terminal()
    board = progress_board(out, err, interval=10)
    first, second = board.cycle("a[red]"), board.cycle("b")
    first.update(CycleProgress("a[red]", 1, 100, 100, timedelta(seconds=1), 400))
    second.close()
    board.result("b: completed")
    first.close()
    board.close()
    assert out.getvalue() == ""  # the same screen: printed above the bars, on the display
    screen = err.getvalue()
    assert "a[red]: page 1, 100/400 records, 100 records/s, ETA 0:03" in screen
    assert "\x1b[2Kb: completed\n" in screen
    assert screen.endswith("\x1b[?25h")


def test_a_dumb_terminal_gets_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """A terminal that cannot move its cursor (TERM=dumb) gets whole lines, as a pipe does."""
    monkeypatch.setenv("TERM", "dumb")
    out, err = _Terminal(), _Terminal()
    board = progress_board(out, err, interval=0)
    display = board.cycle("a")
    display.update(CycleProgress("a", 1, 100, 100, timedelta(seconds=1), None))
    display.close()
    board.result("a: completed")
    board.close()
    assert err.getvalue() == "a: page 1, 100 records, 100 records/s\n"
    assert out.getvalue() == "a: completed\n"


def test_off_a_terminal_each_cycle_writes_whole_lines() -> None:
    """On a pipe, concurrent cycles' progress lines are whole lines, never a redraw."""
    out, err = io.StringIO(), io.StringIO()
    board = progress_board(out, err, interval=0)
    displays = [board.cycle(key) for key in ("a", "b")]
    for n, display in enumerate(displays):
        display.update(CycleProgress("ab"[n], 1, 10, 10, timedelta(seconds=1), 20))
        display.close()
    board.result("a: completed")
    assert err.getvalue().splitlines() == [
        "a: page 1, 10/20 records, 10 records/s, ETA 0:01",
        "b: page 1, 10/20 records, 10 records/s, ETA 0:01",
    ]
    assert out.getvalue() == "a: completed\n"


SLOW = SAMPLE.replace("count = 1200", "count = 400").replace(
    "page_size = 100", "page_size = 50\npage_delay = 0.05"
)
PROGRESS = re.compile(r"(one|two): page \d+, [\d,]+/400 records, [\d,]+ records/s(, ETA \d+:\d\d)?")


def _two_slow_sources(directory: Path) -> Path:
    body = SLOW.replace("sources.demo", "sources.one") + SLOW.replace("sources.demo", "sources.two")
    return write_config(directory, "[run]\nworkers = 2\n\n" + body)


def test_ctrl_c_stops_every_running_cycle_at_its_next_page_then_exits_130(tmp_path: Path) -> None:
    """Two sources run side by side in the real command; SIGINT mid-way stops both once their
    pages in flight are written (neither reads all 400 records) and exits 130; every progress line
    on the pipe is whole."""
    process = subprocess.Popen(
        [
            str(SCRIPT),
            *("run", "--config", str(_two_slow_sources(tmp_path))),
            *("--progress-interval", "0", "--every", "1h"),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 30
        seen: set[str] = set()
        while seen != {"one", "two"} and time.monotonic() < deadline:
            line = process.stderr.readline()
            assert line, "stderr ended before both sources reported progress"
            seen.add(line.split(":")[0])
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 130, err
    results = sorted(out.splitlines())
    assert [line.split(":")[:2] for line in results] == [
        ["one", " interrupted_stop"],
        ["two", " interrupted_stop"],
    ]
    assert all(int(line.split()[2].replace(",", "")) < 400 for line in results), results
    lines = [line for line in err.splitlines() if line]
    assert "incsync: SIGINT received: stopping once the pages in flight are written" in err
    assert all(PROGRESS.fullmatch(line) for line in lines if not line.startswith("incsync:"))


@pytest.mark.parametrize("workers", [1, 2])
def test_once_off_a_terminal_prints_one_result_line_per_cycle(tmp_path: Path, workers: int) -> None:
    """--once with one worker or two: each source's result once on stdout, exit 0."""
    path = _two_slow_sources(tmp_path)
    path.write_text(
        path.read_text(encoding="utf-8").replace("workers = 2", f"workers = {workers}"),
        encoding="utf-8",
    )
    done = subprocess.run(
        [str(SCRIPT), "run", "--once", "--config", str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(line.split(":")[0] for line in done.stdout.splitlines()) == ["one", "two"]
    assert all(": completed: 400 fetched, 400 applied" in line for line in done.stdout.splitlines())
