"""``python -m incsync`` is the ``incsync`` command, for hosts that cannot put scripts on PATH."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from incsync import __version__

ROOT = Path(__file__).resolve().parents[2]


def test_python_m_incsync_runs_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "incsync", "--version"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert (done.returncode, done.stdout) == (0, f"incsync {__version__}\n")


def test_python_m_incsync_says_what_is_wrong_with_its_arguments() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "incsync", "no-such-command"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert "usage: incsync" in done.stderr
