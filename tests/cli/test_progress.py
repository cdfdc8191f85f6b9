"""The progress of ``incsync run``: rich's bars on a terminal, plain lines elsewhere, and rich
required by the command."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from incsync.integrations.cli import main
from incsync.stores.sqlite import SQLiteStore
from tests.cli.support import SAMPLE, on_a_terminal, write_config

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")

# 600 invoices in 12 pages of 50, 50 ms apart: long enough for rich to draw a few frames.
SLOW = SAMPLE.replace("count = 1200", "count = 600").replace(
    "page_size = 100", "page_size = 50\npage_delay = 0.05"
)
TERMINAL = {"TERM": "xterm-256color", "NO_COLOR": ""}
# Hide the cursor, clear a line: rich drawing in place.
HIDE_CURSOR, SHOW_CURSOR, CLEAR_LINE = "\x1b[?25l", "\x1b[?25h", "\x1b[2K"
BAR = re.compile(r"demo: page \d+, [\d,]+/600 records, [\d,]+ records/s, ETA \d+:\d\d")


def test_without_rich_the_command_asks_for_its_extra_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """rich is the command's own dependency: without it every command says which extra to
    install, in one line, and exits 1 (a monitoring check: UNKNOWN, 3) before doing anything."""
    monkeypatch.setitem(sys.modules, "rich", None)  # makes `import rich` fail
    path = write_config(tmp_path, SAMPLE)
    assert main(["run", "--config", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "incsync: error: the incsync command needs rich, which its cli extra installs: "
        "pip install 'incsync[cli]'\n"
    )
    assert not (tmp_path / "state.db").exists()
    assert main(["status", "--check", "--config", str(path)]) == 3
    assert capsys.readouterr().out.startswith("INCSYNC UNKNOWN - the incsync command needs rich")


def test_a_cycle_on_a_terminal_is_a_bar_out_of_its_total_with_the_time_left(
    tmp_path: Path,
) -> None:
    """On a terminal a running cycle is a rich bar redrawn in place, saying done/total and the
    time left; the result line follows, and the cursor is shown again at the end."""
    path = write_config(tmp_path, SLOW)
    done = on_a_terminal("run", "--config", str(path), cwd=tmp_path, env=TERMINAL)
    assert done.code == 0, done.stderr
    screen = done.stderr
    assert BAR.search(screen), screen
    assert HIDE_CURSOR in screen
    assert CLEAR_LINE in screen
    assert screen.rstrip("\r\n").endswith(SHOW_CURSOR)
    assert re.search(r"demo: completed: 600 fetched, 600 applied, .*\r?\n", screen)
    assert "Traceback" not in screen


def test_cycles_side_by_side_each_get_a_bar_and_their_results_print_above(
    tmp_path: Path,
) -> None:
    """Two sources running at once each have a bar; both results reach the terminal whole."""
    path = write_config(tmp_path, SLOW + SLOW.replace("sources.demo", "sources.other"))
    done = on_a_terminal("run", "--config", str(path), cwd=tmp_path, env=TERMINAL)
    assert done.code == 0, done.stderr
    for key in ("demo", "other"):
        assert re.search(rf"{key}: page \d+, [\d,]+/600 records", done.stderr), done.stderr
        # Whole, and on a line of its own: after a cleared line, before a line break.
        result = rf"\x1b\[2K{key}: completed: 600 fetched, 600 applied, [^\r\n\x1b]* in [\d.]+s\r\n"
        assert re.search(result, done.stderr), done.stderr


def test_results_go_to_a_piped_stdout_as_plain_lines_while_stderr_shows_bars(
    tmp_path: Path,
) -> None:
    """`incsync run --json | jq` on a terminal: the bars stay on the terminal, and stdout gets
    exactly the JSON line, with no escape."""
    path = write_config(tmp_path, SLOW)
    done = on_a_terminal(
        "run", "--json", "--config", str(path), cwd=tmp_path, env=TERMINAL, piped_stdout=True
    )
    assert done.code == 0, done.stderr
    assert re.match(
        r'\{"source_key": "demo", "cycle_id": "[0-9a-f]{16}", "outcome": "completed", '
        r'"fetched": 600',
        done.stdout,
    )
    assert done.stdout.count("\n") == 1
    assert "\x1b" not in done.stdout
    assert BAR.search(done.stderr)
    assert "completed" not in done.stderr


def test_the_verbose_log_prints_above_the_bars(tmp_path: Path) -> None:
    """With -v the engine's log lines reach the terminal whole, between the bar's frames."""
    path = write_config(tmp_path, SLOW)
    done = on_a_terminal("run", "-v", "--config", str(path), cwd=tmp_path, env=TERMINAL)
    assert done.code == 0, done.stderr
    # On a line of its own (after a cleared line), whole: not cut where rich would wrap it.
    line = re.search(
        r"\x1b\[2K([^\r\n\x1b]* INFO incsync \[demo cycle [0-9a-f]{16}\]: "
        r"source demo: cycle completed[^\r\n\x1b]*)\r\n",
        done.stderr,
    )
    assert line is not None, done.stderr
    assert line[1].endswith(" 12 pages in " + line[1].rsplit(" ", 1)[1])
    assert len(line[1]) > 120  # longer than the terminal is wide


def test_ctrl_c_on_a_terminal_stops_at_the_next_page_and_gives_the_terminal_back(
    tmp_path: Path,
) -> None:
    """Ctrl-C while a bar is drawn: the notice prints above it, the cycle stops at its next
    durable page, the command exits 130 with no traceback, and the cursor is shown again."""
    path = write_config(tmp_path, SLOW)
    done = on_a_terminal(
        "run", "--config", str(path), cwd=tmp_path, env=TERMINAL, interrupt_at=b"/600 records"
    )
    assert done.code == 130, done.stderr
    screen = done.stderr
    assert "incsync: SIGINT received: stopping once the pages in flight are written" in screen
    match = re.search(r"demo: interrupted_stop: (\d+) fetched, \1 applied", screen)
    assert match is not None, screen
    assert int(match[1]) < 600
    assert screen.rstrip("\r\n").endswith(SHOW_CURSOR)
    assert "Traceback" not in screen
    with SQLiteStore(tmp_path / "state.db") as store:
        assert store.count_transactions("demo") == int(match[1])
