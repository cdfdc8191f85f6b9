"""Where a command-line user reads about records set aside, the command names `incsync rejected`.

``run`` prints it under the cycle's line, ``status`` after its table and in each hover (``--json``
and ``--html``); a host's own status (the library's default hover) keeps naming
``SyncEngine.rejected()``, since its users have no command line.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import attrs
import pytest

from incsync.integrations.cli import main
from incsync.integrations.cli._output import result_text, set_aside_hint, set_aside_text
from incsync.results import CycleResult, Outcome
from incsync.state import new_state
from incsync.status import status_of
from incsync.stores.sqlite import SQLiteStore
from incsync.testing.fakes.generic_rest import FakeGenericRest
from incsync.timestamps import UTC
from tests.cli.support import write_config
from tests.cli.test_connector_types import REST

TOKEN = "generic-token-9d41"


def test_run_and_status_name_the_command_that_lists_set_aside_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cycle that set two rows aside: run, the status table, its JSON and its HTML say how."""
    fake = FakeGenericRest(paging="offset", token=TOKEN)
    fake.load(10, datetime(2024, 5, 1, tzinfo=UTC))
    for number in (1, 2):
        fake.add_malformed({"id": f"broken-{number}", "meta": {}}, datetime(2024, 5, 2, tzinfo=UTC))
    fake.clock.advance(timedelta(days=1))
    monkeypatch.setenv("API_TOKEN", TOKEN)
    with fake.serve() as base_url:
        path = write_config(tmp_path, REST.format(base_url=base_url))
        assert main(["run", "--config", str(path)]) == 0
    ran = capsys.readouterr().out.splitlines()
    assert ran[0].startswith("api: completed: 12 fetched, 10 applied, 0 already applied, 2 set")
    assert ran[1] == "  set aside: incsync rejected api lists them with the reasons"

    assert main(["status", "--config", str(path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert (
        table[-1] == "api: 2 records set aside by the last cycle (incsync rejected api lists them)"
    )

    assert main(["status", "--json", "--config", str(path)]) == 0
    (source,) = json.loads(capsys.readouterr().out)["sources"]
    assert (
        "The last cycle set 2 records aside because they could not be read; everything else was "
        "applied. Run incsync rejected api to list each one with the reason it was set aside. "
    ) in source["hover"]

    page = tmp_path / "status.html"
    assert main(["status", "--html", str(page), "--config", str(path)]) == 0
    assert "Run incsync rejected api to list each one" in page.read_text(encoding="utf-8")

    # The library's own status, which a host shows in its screens, names no command.
    with SQLiteStore(tmp_path / "state.db") as store:
        state = store.load("api")
    hover = status_of(state, now=fake.clock()).hover
    assert "SyncEngine.rejected()" in hover
    assert "incsync rejected" not in hover


def test_a_status_without_set_aside_records_has_no_such_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A source whose last cycle set nothing aside gets no line and no hint."""
    path = write_config(tmp_path, '[sources.demo]\ntype = "sample"\ncount = 10\n')
    assert main(["run", "--config", str(path)]) == 0
    assert "incsync rejected" not in capsys.readouterr().out
    assert main(["status", "--config", str(path)]) == 0
    assert "set aside" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("key", "command"),
    [
        ("acme", "incsync rejected acme"),
        ("acme books", "incsync rejected 'acme books'"),
        ("it's", "incsync rejected 'it'\"'\"'s'"),
    ],
)
def test_the_command_is_quoted_for_a_shell(key: str, command: str) -> None:
    """A key a shell would split or unquote is quoted, so the line can be pasted as it is."""
    result = CycleResult(source_key=key, outcome=Outcome.COMPLETED, rejected=1)
    assert (
        result_text(result).splitlines()[1] == f"  set aside: {command} lists them with the reasons"
    )
    assert set_aside_hint(key).startswith(f"Run {command} to list each one")


def test_a_key_cannot_drive_the_terminal_through_the_hint() -> None:
    """Control characters of a key are shown escaped in what goes to a terminal."""
    state = attrs.evolve(new_state("acme\x1b[2J"), last_cycle_rejected=3)
    lines = set_aside_text([state])
    assert "\x1b" not in lines
    assert lines.startswith("acme\\x1b[2J: 3 records set aside by the last cycle (")
    result = CycleResult(source_key="acme\x1b[2J", outcome=Outcome.COMPLETED, rejected=1)
    assert "\x1b" not in result_text(result)
