"""What sources send cannot drive the terminal the command prints on."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from incsync.integrations.cli import main
from incsync.testing.fakes import FakeVendor
from incsync.views import terminal_safe
from tests.cli.support import SAMPLE, on_a_terminal, write_config
from tests.cli.test_connector_types import REST

# Clear the screen, retitle the window (OSC ... BEL), the C1 form of CSI, and a right-to-left
# override that would make the rest of the line read backwards.
HOSTILE = "bad \x1b[2J\x1b]0;owned\x07 \x9b31m \u202etxt.exe"
SHOWN = r"bad \x1b[2J\x1b]0;owned\x07 \x9b31m \u202etxt.exe"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("acme/invoices", "acme/invoices"),
        ("Käse · 請求書 — ok", "Käse · 請求書 — ok"),
        (HOSTILE, SHOWN),
        ("line\nbreak\rreturn\ttab\x00nul\x7f", r"line\x0abreak\x0dreturn\x09tab\x00nul\x7f"),
        ("\u200bzero\u2028sep\u2066iso\u2069", r"\u200bzero\u2028sep\u2066iso\u2069"),
        ("\udcff", r"\udcff"),
    ],
)
def test_terminal_safe_shows_controls_as_escapes_and_keeps_text(text: str, shown: str) -> None:
    """Controls, bidi and zero-width marks, separators and lone surrogates become visible
    escapes; everything else, non-Latin text included, is kept."""
    assert terminal_safe(text) == shown
    assert terminal_safe(text).isprintable()


class _RefusingVendor(FakeVendor):
    """Answers every request with a 400 whose body carries raw terminal escapes."""

    def handle(self, request: httpx.Request) -> httpx.Response:
        # Not json.dumps, which would escape the controls itself: a careless vendor does not.
        return httpx.Response(400, content=f'{{"error": "{HOSTILE}"}}'.encode())


@pytest.fixture
def refusing_api() -> Iterator[str]:
    """Yield the base URL of a loopback API that refuses every request with hostile text."""
    with _RefusingVendor().serve() as base_url:
        yield base_url


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_an_error_body_with_escapes_reaches_the_terminal_as_visible_text(
    tmp_path: Path, refusing_api: str
) -> None:
    """A vendor's error body that would clear the screen, retitle the window and reverse the
    line is printed, in the result line and in the -v log, as visible escapes: the terminal
    receives no ESC, no BEL, no CSI and no bidi override from it."""
    path = write_config(tmp_path, REST.format(base_url=refusing_api))
    done = on_a_terminal(
        "run",
        "-v",
        "--config",
        str(path),
        cwd=tmp_path,
        # A dumb terminal: progress is then plain lines, with no escape of its own, so any
        # escape the terminal receives would be the source's.
        env={"API_TOKEN": "tok-0123456789", "TERM": "dumb", "NO_COLOR": "1"},
    )
    assert done.code == 1, done.stderr
    text = done.stderr
    for raw in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert raw not in text
    assert "api: failed: 0 fetched" in text
    assert f"  error: PermanentSourceError: rest: HTTP 400 Bad Request from GET {refusing_api}" in (
        text
    )
    # Once in the result line, once in the log's warning.
    assert text.count(f'The source said: {{"error": "{SHOWN}"}}') == 2


def test_a_path_with_escapes_in_an_error_is_shown_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Error messages quote what the config holds; their controls are escaped too."""
    path = write_config(tmp_path, SAMPLE, store='path = "state\\u001b]0;owned\\u0007.db"')
    assert main(["status", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err
    assert "\x07" not in err
    assert r"state\x1b]0;owned\x07.db" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_check_reports_an_error_body_with_escapes_as_visible_text(
    tmp_path: Path, refusing_api: str, capsys: pytest.CaptureFixture[str], as_json: bool
) -> None:
    """``incsync check`` quotes the vendor's refusal: in text and in JSON alike, no ESC, BEL,
    C1 CSI or bidi override reaches the terminal, and the JSON still carries the text intact."""
    path = write_config(tmp_path, REST.format(base_url=refusing_api))
    arguments = ["check", "--config", str(path), *(["--json"] if as_json else [])]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("API_TOKEN", "tok-0123456789")
        assert main(arguments) == 1
    out = capsys.readouterr().out
    for raw in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert raw not in out
    if as_json:
        (source,) = json.loads(out)["sources"]
        assert HOSTILE in source["message"]
    else:
        assert SHOWN in out
