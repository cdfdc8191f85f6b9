"""Helpers of the command-line tests: config files and the real console script."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import attrs
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("incsync")


@attrs.frozen
class Completed:
    """What a run of the console script printed and returned."""

    code: int
    stdout: str
    stderr: str


def incsync(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 60
) -> Completed:
    """Run the installed ``incsync`` script in a subprocess, stdout and stderr captured (no TTY)."""
    environment = {k: v for k, v in os.environ.items() if k != "INCSYNC_CONFIG"}
    environment.update(env or {})
    done = subprocess.run(
        [str(SCRIPT), *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Completed(done.returncode, done.stdout, done.stderr)


def wait_for_line(stream: IO[str] | None, prefix: str, deadline: float) -> None:
    """Read ``stream`` line by line until one starts with ``prefix``; fail at ``deadline``."""
    assert stream is not None
    while time.monotonic() < deadline:
        line = stream.readline()
        if line.startswith(prefix):
            return
        assert line, f"stream ended before a line starting {prefix!r}"
    pytest.fail(f"no line starting {prefix!r} in time")


def write_config(directory: Path, body: str, *, store: str = 'path = "state.db"') -> Path:
    """Write ``incsync.toml`` with a [store] table and ``body`` (the sources); return its path."""
    path = directory / "incsync.toml"
    path.write_text(f"[store]\n{store}\n\n{body}", encoding="utf-8")
    return path


SAMPLE = """
[sources.demo]
type = "sample"
count = 1200
page_size = 100
end = 2026-11-20T00:00:00Z
"""
