"""status, reset, cancel, resume and rejected against a real SQLite file; help and version."""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from incsync.connectors.base import BaseConnector, RawPage
from incsync.cursor import Window
from incsync.engine import SyncEngine
from incsync.integrations.cli import main
from incsync.integrations.cli._output import STATUS_SCHEMA
from incsync.integrations.cli._parser import build_parser
from incsync.stores.sqlite import SQLiteStore
from incsync.timestamps import utc_now
from tests.cli.support import write_config

SOURCE_FIELDS = {
    "key",
    "color",
    "reason",
    "label",
    "icon",
    "notes",
    "hover",
    "last_change",
    "last_sync",
    "phase",
    "consecutive_failures",
    "last_error",
    "last_cycle_rejected",
    "count_check",
    "lease",
    "history",
}


@pytest.fixture
def config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A config with two sample sources, the first synced once (its newest change a day old)."""
    end = (utc_now() - timedelta(days=1)).replace(microsecond=0).isoformat()
    body = "".join(
        f'[sources.{key}]\ntype = "sample"\ncount = 300\npage_size = 100\nend = {end}\n\n'
        for key in ("acme", "globex")
    )
    path = write_config(tmp_path, body)
    assert main(["run", "--config", str(path), "--source", "acme"]) == 0
    capsys.readouterr()
    return path


def status(path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, object]]:
    """Run ``status --json`` and return the sources by key."""
    assert main(["status", "--json", "--config", str(path)]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["schema"] == STATUS_SCHEMA
    return {source["key"]: source for source in document["sources"]}


def test_status_json_has_the_documented_schema_for_every_source(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every configured source is listed, synced or not, with exactly the documented fields."""
    sources = status(config, capsys)
    assert list(sources) == ["acme", "globex"]
    for source in sources.values():
        assert set(source) == SOURCE_FIELDS
    acme, globex = sources["acme"], sources["globex"]
    assert (acme["color"], acme["reason"], acme["label"]) == ("green", "recent_changes", "Active")
    assert isinstance(acme["last_sync"], dict)
    assert set(acme["last_sync"]) == {"iso", "exact", "relative"}
    assert acme["last_sync"]["relative"] == "just now"
    assert isinstance(acme["last_change"], dict)
    assert acme["last_change"]["relative"] == "1 day ago"
    assert (globex["color"], globex["reason"], globex["last_sync"]) == ("grey", "starting", None)
    assert isinstance(acme["count_check"], dict)
    assert set(acme["count_check"]) == {"source", "host", "drift", "at"}
    assert (acme["count_check"]["source"], acme["count_check"]["drift"]) == (300, 0)
    assert globex["count_check"] is None


def test_status_text_shows_colour_label_times_with_exact_time_and_reason(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The table has one row per source; times read relative with the exact time beside them."""
    assert main(["status", "--config", str(config)]) == 0
    header, acme, globex = capsys.readouterr().out.splitlines()
    assert header.split() == ["SOURCE", "STATUS", "LAST", "CHANGE", "LAST", "SYNC", "REASON"]
    assert acme.startswith("acme ")
    assert "green  Active" in acme
    assert "1 day ago (20" in acme
    assert "just now (20" in acme
    assert acme.endswith("recent_changes")
    assert "grey   Starting" in globex
    assert "\x1b" not in acme  # not a terminal: no colour codes


def test_status_html_writes_the_standalone_page(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--html writes a complete page with both sources and their colours."""
    page = tmp_path / "status.html"
    assert main(["status", "--html", str(page), "--config", str(config)]) == 0
    assert capsys.readouterr().out == f"{page}: status page of 2 sources written\n"
    (tmp_path / "alone").mkdir()
    alone = write_config(tmp_path / "alone", '[sources.acme]\ntype = "sample"\ncount = 10\n')
    assert main(["run", "--config", str(alone)]) == 0
    capsys.readouterr()
    single = tmp_path / "alone" / "status.html"
    assert main(["status", "--html", str(single), "--config", str(alone)]) == 0
    assert capsys.readouterr().out == f"{single}: status page of 1 source written\n"
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert "Content-Security-Policy" in html
    assert '<tr data-color="green" data-reason="recent_changes"><th scope="row">acme</th>' in html
    assert '<tr data-color="grey" data-reason="starting"><th scope="row">globex</th>' in html


def test_status_zone_must_be_a_time_zone(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Exact times follow --zone; an unknown zone is a usage error (exit 2)."""
    assert main(["status", "--zone", "Europe/Berlin", "--config", str(config)]) == 0
    assert re.search(r"CES?T \(UTC\+0[12]:00\)\)", capsys.readouterr().out)
    assert main(["status", "--zone", "Mars/Olympus", "--config", str(config)]) == 2
    assert capsys.readouterr().err.startswith("incsync: error: --zone: ")


# The config's sample source reads as one window, as a user's does: exact counts.
@pytest.mark.one_reader
def test_cancel_resume_and_reset_change_the_state_and_exit_0(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Cancel skips cycles, resume lets them run, reset makes a cycle due now that re-applies all.

    A cancelled source is never due, so a plain run starts nothing and says so; --all starts it
    anyway, and the engine skips it.
    """
    assert main(["cancel", "acme", "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith("acme: cancelled: ")
    assert status(config, capsys)["acme"]["phase"] == "cancelled"
    assert main(["run", "--config", str(config), "--source", "acme"]) == 0
    assert capsys.readouterr() == (
        "",
        "incsync: no source is due, and none will be until one is resumed or reset\n",
    )
    assert main(["run", "--all", "--config", str(config), "--source", "acme"]) == 0
    assert capsys.readouterr().out.startswith("acme: skipped_cancelled: 0 fetched")

    assert main(["resume", "acme", "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith("acme: resumed: ")
    assert status(config, capsys)["acme"]["phase"] == "active"

    assert main(["reset", "acme", "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith("acme: reset: ")
    assert status(config, capsys)["acme"]["reason"] == "resetting"
    # A reset source is due at once: no --all needed for its re-read.
    assert main(["run", "--config", str(config), "--source", "acme"]) == 0
    assert capsys.readouterr().out.startswith("acme: completed: 300 fetched, 300 applied")


@pytest.mark.parametrize("command", ["reset", "cancel", "resume", "rejected", "history"])
def test_an_unknown_key_exits_2_naming_the_known_sources(
    config: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """A key neither in the file nor in the store changes nothing and exits 2."""
    assert main([command, "initech", "--config", str(config)]) == 2
    assert capsys.readouterr().err == (
        f"incsync: error: {config}: sources: no source 'initech'; the sources are acme, globex\n"
    )


class _TwoBadRecords(BaseConnector):
    """One page: a good invoice, one without a timestamp, one without an id."""

    ordered = True

    def fetch(self, window: Window) -> Iterator[RawPage]:
        yield [
            {"id": "INV-1", "updated_at": "2026-11-01T10:00:00Z"},
            {"id": "INV-2", "amount": "12.00"},
            {"updated_at": "2026-11-01T10:00:00Z"},
        ]


def test_rejected_lists_the_records_set_aside_with_their_reasons(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """rejected lists each set-aside record with its id and reason, as text or JSON."""
    with SQLiteStore(tmp_path / "state.db") as store:
        result = SyncEngine(store).run_cycle("legacy", _TwoBadRecords())
    assert result.rejected == 2

    assert main(["rejected", "legacy", "--config", str(config)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("legacy: 2 records set aside\n- INV-2 (seen 20")
    assert "updated_at" in text
    assert "- (no id)" in text

    assert main(["rejected", "legacy", "--json", "--config", str(config)]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [entry["record_id"] for entry in document["rejected"]] == ["INV-2", None]
    assert all(entry["reason"] for entry in document["rejected"])
    assert [entry["raw"] for entry in document["rejected"]] == [
        {"id": "INV-2", "amount": "12.00"},
        {"updated_at": "2026-11-01T10:00:00Z"},
    ]
    assert [entry["raw_text"] for entry in document["rejected"]] == [None, None]

    assert main(["rejected", "acme", "--config", str(config)]) == 0
    assert capsys.readouterr().out == "acme: no records set aside\n"


COMMANDS = [
    "run",
    "status",
    "check",
    "cursor",
    "reset",
    "cancel",
    "resume",
    "unlock",
    "rejected",
    "history",
    "remap",
    "transactions",
    "serve",
]


def test_the_help_tests_cover_every_command() -> None:
    """A new command is added to COMMANDS, and so has its help checked."""
    [commands] = [
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    ]
    assert set(commands.choices) == set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples_and_its_own_exit_codes(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--help works everywhere, exits 0, and shows examples and the exit codes of that command,
    not those of run or status --check."""
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"usage: incsync {command}" in out
    assert f"examples:\n  incsync {command} " in out
    codes = out.split("\nexit codes:\n")[1]
    assert codes.startswith("  0    ")
    assert "\n  2    usage or config error" in codes
    assert ("a cycle failed" in codes) is (command == "run")
    assert ("3 UNKNOWN" in codes) is (command == "status")
    assert ("lease" in codes) is (command == "unlock")


def test_main_leaves_the_logging_setup_as_it_found_it(config: Path) -> None:
    """In-process runs (tests, scripts) get incsync's logger back with its level and handlers."""
    logger = logging.getLogger("incsync")
    before = (logger.level, list(logger.handlers))
    assert main(["run", "--verbose", "--config", str(config)]) == 0
    assert (logger.level, list(logger.handlers)) == before


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a command the usage is printed and the exit code is 2."""
    assert main([]) == 2
    assert "usage: incsync" in capsys.readouterr().err
