"""``--log-level`` and ``--log-format json``: every log line names its source and cycle, masked
and unable to drive a terminal, whichever format."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import pytest

from incsync.connectors import InMemoryConnector, InMemorySource
from incsync.integrations.cli import main
from incsync.integrations.cli._config import Config, SourceConfig
from incsync.integrations.cli._progress import ProgressBoard, ProgressDisplay, progress_board
from incsync.protocols import Connector
from incsync.results import CycleProgress
from tests.cli.support import SAMPLE, write_config

SECRET = "sk_live_SENTINEL_5be1c2"
# An escape that clears the screen, a C1 CSI, a bidi override, a line break, and a credential.
HOSTILE = f"amount \x1b[2J\x9b6n\u202e\nnot a number; token {SECRET}"
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _parse_amount(_page: int) -> NoReturn:
    raise ValueError(HOSTILE)


def _buggy(
    _config: Config, _source: SourceConfig, _environ: Mapping[str, str], _tokens: object
) -> Connector:
    return InMemoryConnector(InMemorySource(), before_page=_parse_amount, secret=SECRET)


def _json_lines(err: str) -> list[dict[str, Any]]:
    """The JSON log lines of standard error (progress lines are text, not log lines)."""
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def test_json_log_lines_name_the_cycle_and_are_masked_and_terminal_safe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --log-format json each log line is one JSON object naming the source and the cycle
    (the id of the result line); a bug's traceback is in its message, masked. JSON's escapes,
    beyond ASCII too (a C1 CSI, a bidi override), keep every control character off the terminal,
    and decoding gives the text back."""
    monkeypatch.setattr("incsync.integrations.cli._run.build_connector", _buggy)
    path = write_config(tmp_path, SAMPLE)
    code = main(["run", "--json", "--log-format", "json", "-v", "--config", str(path)])
    assert code == 1
    out, err = capsys.readouterr()
    [result] = [json.loads(line) for line in out.splitlines()]
    lines = _json_lines(err)
    assert [line["level"] for line in lines] == ["WARNING", "WARNING"]
    assert {(line["source_key"], line["cycle_id"]) for line in lines} == {
        ("demo", result["cycle_id"])
    }
    assert {line["logger"] for line in lines} == {"incsync"}
    assert all(
        set(line) == {"time", "level", "logger", "source_key", "cycle_id", "message"}
        for line in lines
    )
    failed, traceback = lines[0]["message"], lines[1]["message"]
    assert failed.startswith("source demo: cycle failed: ValueError: amount \x1b[2J\x9b6n\u202e")
    assert "ValueError is not an incsync error, so its traceback follows:" in traceback
    assert traceback.endswith("not a number; token ***")
    assert SECRET not in out + err
    assert not CONTROL.search(out + err)  # the result's error, on stdout, is JSON as well
    assert result["error"] == "amount \x1b[2J\x9b6n\u202e\nnot a number; token ***"


class _FailingDisplay:
    def __init__(self, display: ProgressDisplay) -> None:
        self._display = display

    def update(self, progress: CycleProgress) -> None:
        raise ValueError(f"{HOSTILE} refresh_token={SECRET}")

    def close(self) -> None:
        self._display.close()


class _FailingBoard:
    """The real board, whose progress displays raise: the engine logs that with exc_info."""

    def __init__(self, board: ProgressBoard) -> None:
        self._board = board

    def cycle(self, key: str) -> ProgressDisplay:
        return _FailingDisplay(self._board.cycle(key))

    def result(self, text: str) -> None:
        self._board.result(text)

    def note(self, text: str) -> None:
        self._board.note(text)

    def close(self) -> None:
        self._board.close()


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_an_exception_logged_with_its_traceback_is_masked_in_either_format(
    log_format: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A record that carries an exception (``logger.exception``) has its traceback masked and
    terminal-safe too, not only its message."""

    def failing_board(*args: Any, **kwargs: Any) -> ProgressBoard:
        return _FailingBoard(progress_board(*args, **kwargs))

    monkeypatch.setattr("incsync.integrations.cli._run.progress_board", failing_board)
    path = write_config(tmp_path, SAMPLE)
    assert main(["run", "--log-format", log_format, "--config", str(path)]) == 0
    _, err = capsys.readouterr()
    assert "progress callback failed" in err
    assert "refresh_token=***" in err
    assert SECRET not in err
    assert not CONTROL.search(err)
    if log_format == "json":
        [line, *_] = [line for line in _json_lines(err) if "traceback" in line]
        assert line["traceback"].startswith("Traceback (most recent call last):")
        assert line["source_key"] == "demo"


def test_text_log_lines_name_the_source_and_cycle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--log-level info writes each cycle's line naming its source and cycle; warning does not."""
    path = write_config(tmp_path, SAMPLE)
    assert main(["run", "--json", "--log-level", "info", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    cycle_id = json.loads(out)["cycle_id"]
    [line] = [line for line in err.splitlines() if "cycle completed" in line]
    assert f" INFO incsync [demo cycle {cycle_id}]: source demo: cycle completed, " in line
    assert main(["run", "--all", "--log-level", "WARNING", "--config", str(path)]) == 0
    _, err = capsys.readouterr()
    assert "cycle completed" not in err


def test_an_unknown_level_or_format_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A level or format that is not offered exits 2, naming the choices."""
    path = write_config(tmp_path, SAMPLE)
    assert main(["status", "--log-level", "loud", "--config", str(path)]) == 2
    err = capsys.readouterr().err.replace("'", "")  # quoted or not, by Python version
    assert "--log-level: invalid choice: loud (choose from debug, info, warning, error)" in err
    assert main(["status", "--log-format", "xml", "--config", str(path)]) == 2
    err = capsys.readouterr().err.replace("'", "")
    assert "--log-format: invalid choice: xml (choose from text, json)" in err
