"""``incsync serve``: the console of a config file, over real HTTP from the installed script."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from incsync.integrations.cli import main
from incsync.state import Phase
from incsync.stores.sqlite import SQLiteStore
from tests.cli.support import SAMPLE, SCRIPT, incsync, wait_for_line, write_config

SECRET = "s3cret-for-the-console-tests"
SOURCES = (
    SAMPLE
    + """
[sources."acme <b>eu</b>"]
type = "sample"
count = 10
end = 2026-11-20T00:00:00Z
"""
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_serve_lists_every_source_and_refuses_an_unproven_change(tmp_path: Path) -> None:
    """The pinned check: the list at / names every source of the file; a post without the CSRF
    token, or with it but without the secret, is refused and changes nothing."""
    path = write_config(tmp_path, SOURCES)
    assert main(["run", "--once", "--config", str(path)]) == 0
    port = _free_port()
    environment = {k: v for k, v in os.environ.items() if k != "INCSYNC_CONFIG"}
    process = subprocess.Popen(
        [str(SCRIPT), "serve", "--config", str(path), "--port", str(port)],
        cwd=tmp_path,
        env={**environment, "INCSYNC_CONSOLE_SECRET": SECRET},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_line(process.stderr, "incsync: console of", time.monotonic() + 30)
        origin = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=origin) as client:
            page = client.get("/")
            assert page.status_code == 200
            assert ">demo</a>" in page.text
            assert ">acme &lt;b&gt;eu&lt;/b&gt;</a>" in page.text
            assert SECRET not in page.text
            headers = {"origin": origin}
            form = {"key": "demo", "action": "cancel"}
            assert client.post("/act", data=form, headers=headers).status_code == 403
            # With a token of its own cookie but without having given the secret: refused too.
            token = re.search(r'name="csrf" value="(\w+)"', client.get("/sign-in").text)
            assert token is not None
            with_token = {**form, "csrf": token.group(1)}
            assert client.post("/act", data=with_token, headers=headers).status_code == 403
            wrong = {"name": "mallory", "secret": "not the secret at all", "csrf": token.group(1)}
            assert client.post("/sign-in", data=wrong, headers=headers).status_code == 403
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=15)
        finally:
            process.kill()
            process.wait()
    assert SECRET not in err
    with SQLiteStore(tmp_path / "state.db") as store:
        assert store.load("demo").phase is Phase.ACTIVE
        assert store.actions("demo") == []


def test_serve_needs_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the variable, or with one too short, the console does not start: exit 2."""
    path = write_config(tmp_path, SAMPLE)
    monkeypatch.delenv("INCSYNC_CONSOLE_SECRET", raising=False)
    assert main(["serve", "--config", str(path)]) == 2
    assert "INCSYNC_CONSOLE_SECRET" in capsys.readouterr().err
    monkeypatch.setenv("INCSYNC_CONSOLE_SECRET", "tiny")
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "at least 16 characters" in err
    assert "tiny" not in err
    assert main(["serve", "--config", str(path), "--port", "70000"]) == 2


def test_serve_on_a_port_in_use_fails(tmp_path: Path) -> None:
    """A port another process listens on: the command says so and exits 1."""
    path = write_config(tmp_path, SAMPLE)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = incsync(
            "serve",
            "--config",
            str(path),
            "--port",
            str(port),
            cwd=tmp_path,
            env={"INCSYNC_CONSOLE_SECRET": SECRET},
        )
    assert done.code == 1
    assert "console of" not in done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
