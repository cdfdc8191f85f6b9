"""Helpers of the command-line tests: config files and the real console script."""

from __future__ import annotations

import os
import select
import signal
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


def on_a_terminal(
    *args: str,
    cwd: Path,
    env: Mapping[str, str],
    interrupt_at: bytes | None = None,
    piped_stdout: bool = False,
    timeout: float = 60,
) -> Completed:
    """Run the installed script with stderr, and stdout, on a pseudo-terminal (120 x 40).

    Args:
        args: The command's arguments.
        cwd: Its working directory.
        env: Added to this process's environment.
        interrupt_at: Send SIGINT once the terminal has received these bytes.
        piped_stdout: Give the command a pipe as stdout instead of the terminal.
        timeout: Seconds the command may take.

    Returns:
        The exit code; what the terminal received, decoded, as ``stderr``; and as ``stdout`` what
        the pipe received, or (without ``piped_stdout``) the terminal's text again.
    """
    import fcntl  # POSIX only, as pseudo-terminals are: imported here so the module loads anywhere
    import pty
    import struct
    import termios

    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    environment = {k: v for k, v in os.environ.items() if k != "INCSYNC_CONFIG"}
    process = subprocess.Popen(
        [str(SCRIPT), *args],
        cwd=cwd,
        env={**environment, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if piped_stdout else terminal,
        stderr=terminal,
    )
    os.close(terminal)
    received = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the command ended and closed the terminal
                break
            if not chunk:
                break
            received += chunk
            if interrupt_at is not None and interrupt_at in received:
                process.send_signal(signal.SIGINT)
                interrupt_at = None
        code = process.wait(timeout=max(deadline - time.monotonic(), 1))
        # A few lines of results: the pipe's buffer held them until the command ended.
        piped = process.stdout.read() if process.stdout is not None else b""
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    text = received.decode("utf-8")
    return Completed(code, piped.decode("utf-8") if piped_stdout else text, text)


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
