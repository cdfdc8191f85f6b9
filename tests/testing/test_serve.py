"""``python -m incsync.testing.fakes serve``: a fake a person drives with the real command.

Each test starts the module as a real process, reads what it prints, runs the ``incsync`` command
against it as a user would (the printed exports and config, nothing else), and stops it with a
signal.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import attrs
import httpx
import pytest

from incsync.testing.fakes._serve import VENDORS
from incsync.timestamps import utc_now
from tests.cli.support import incsync

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="signals as on POSIX")

READY = "Serving until Ctrl-C."


@attrs.frozen
class Printed:
    """What ``serve`` printed before serving: the URL, the exports and the config file."""

    url: str
    environment: dict[str, str]
    config: str


def read_instructions(process: subprocess.Popen[str], timeout: float = 30) -> Printed:
    """Read ``serve``'s output up to its ready line and take it apart as a user would."""
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        assert line, f"serve ended before it was ready: {''.join(lines)}"
        if line.rstrip("\n") == READY:
            break
        lines.append(line.rstrip("\n"))
    else:
        pytest.fail("serve was not ready in time")
    url = re.match(r"Fake \w+ API at (http://\S+): ", lines[0])
    assert url is not None, lines[0]
    environment = dict(
        shlex.split(line.removeprefix("export "))[0].split("=", 1)
        for line in lines
        if line.startswith("export ")
    )
    start = lines.index("2. Save this as incsync.toml:") + 2
    end = next(n for n, line in enumerate(lines) if line.startswith("3. Then: incsync run"))
    return Printed(url[1], environment, "\n".join(lines[start:end]) + "\n")


@contextmanager
def serving(*args: str) -> Iterator[subprocess.Popen[str]]:
    """Start ``python -m incsync.testing.fakes serve`` with ``args``; kill it if a test fails."""
    process = subprocess.Popen(
        [sys.executable, "-m", "incsync.testing.fakes", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def stop(process: subprocess.Popen[str], signum: int = signal.SIGINT) -> tuple[int, str, str]:
    """Send ``signum``; return the exit code and the rest of stdout, and stderr."""
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    return process.returncode, out, err


@pytest.mark.parametrize("vendor", sorted(VENDORS))
def test_the_command_syncs_every_served_fake_from_what_serve_printed(
    vendor: str, tmp_path: Path
) -> None:
    """For every vendor, the printed exports and config are all ``incsync run`` needs to sync
    the fake's whole history; a second run finds nothing new; Ctrl-C then ends ``serve``
    cleanly (exit 0, nothing on stderr)."""
    with serving(vendor, "--records", "120") as process:
        printed = read_instructions(process)
        assert printed.url.startswith("http://127.0.0.1:")
        (tmp_path / "incsync.toml").write_text(printed.config, encoding="utf-8")
        first = incsync("run", cwd=tmp_path, env=printed.environment)
        assert first.code == 0, first.stdout + first.stderr
        # Read in partitions, the last one's last second may be read twice (already applied).
        counts = re.match(
            rf"fake-{vendor}: completed: (\d+) fetched, 120 applied, (\d+) already applied",
            first.stdout,
        )
        assert counts is not None, first.stdout
        assert int(counts[1]) - int(counts[2]) == 120
        again = incsync("run", "--all", cwd=tmp_path, env=printed.environment)
        assert again.code == 0, again.stdout + again.stderr
        assert re.match(rf"fake-{vendor}: completed: \d+ fetched, 0 applied, ", again.stdout)
        code, out, err = stop(process)
    assert code == 0
    assert err == ""
    assert re.fullmatch(r"Stopped after [\d,]+ requests\.\n", out)


def test_the_fake_runs_on_the_real_clock_and_sigterm_stops_it_too() -> None:
    """The fake dates its answers by the real time, and SIGTERM ends it as Ctrl-C does."""
    with serving("stripe", "--records", "3") as process:
        printed = read_instructions(process)
        answered = httpx.get(f"{printed.url}/v1/invoices", timeout=10)
        code, _, err = stop(process, signal.SIGTERM)
    assert answered.status_code == 401  # no key sent: the fake's own refusal
    assert abs(parsedate_to_datetime(answered.headers["Date"]) - utc_now()) < timedelta(seconds=5)
    assert (code, err) == (0, "")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_a_port_asked_for_is_used_and_a_taken_one_is_one_error_line() -> None:
    """``--port`` serves on that port; a port already taken ends with one line and exit 1."""
    port = _free_port()
    with serving("pipedrive", "--records", "1", "--port", str(port)) as first:
        assert read_instructions(first).url == f"http://127.0.0.1:{port}"
        with serving("pipedrive", "--port", str(port)) as second:
            _, err = second.communicate(timeout=30)
        assert second.returncode == 1
        assert err.startswith(
            f"python -m incsync.testing.fakes: cannot listen on 127.0.0.1:{port}: "
        )
        assert err.count("\n") == 1
        assert stop(first)[0] == 0


def test_a_vendor_it_does_not_know_is_a_usage_error() -> None:
    """An unknown vendor is refused by the parser (exit 2), naming the ones it serves."""
    done = subprocess.run(
        [sys.executable, "-m", "incsync.testing.fakes", "serve", "netsuite"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ},
    )
    assert done.returncode == 2
    assert "invalid choice: 'netsuite'" in done.stderr
    assert "hubspot" in done.stderr
