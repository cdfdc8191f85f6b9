"""``python -m incsync`` is the ``incsync`` command, for hosts that cannot put scripts on PATH."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from incsync import __version__

ROOT = Path(__file__).resolve().parents[2]


def _run_module(module: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *arguments],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


@pytest.mark.parametrize("module", ["incsync", "incsync.integrations.cli"])
def test_each_module_entry_point_is_the_command(module: str) -> None:
    """``--version`` prints the package version and exits 0; a wrong command is a usage error."""
    done = _run_module(module, "--version")
    assert (done.returncode, done.stdout) == (0, f"incsync {__version__}\n")
    wrong = _run_module(module, "no-such-command")
    assert wrong.returncode == 2
    assert "usage: incsync" in wrong.stderr
