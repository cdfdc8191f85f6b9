"""Helpers of the command-line tests: config files and the real console script."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import attrs

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
