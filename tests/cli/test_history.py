"""``incsync history`` and the history summary of ``incsync status``, against a real SQLite file."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from incsync.connectors import InMemoryConnector, InMemorySource
from incsync.connectors.base import BaseConnector, RawPage
from incsync.cursor import Window
from incsync.engine import SyncEngine
from incsync.errors import TransientSourceError
from incsync.integrations.cli import main
from incsync.policy import SyncPolicy
from incsync.reconcile import IdOrder
from incsync.stores.sqlite import SQLiteStore
from incsync.testing import ManualClock
from incsync.timestamps import utc_now
from tests.cli.support import ROOT, incsync, write_config

ENTRY_FIELDS = {
    "source_key",
    "cycle_id",
    "outcome",
    "started",
    "ended",
    "duration_seconds",
    "generation",
    "worker",
    "pages",
    "fetched",
    "applied",
    "already_applied",
    "rejected",
    "swept",
    "reconcile_fetched",
    "reconcile_tombstoned",
    "error_class",
    "error",
    "retry_at",
    "clock_skew_seconds",
}


class _Down(BaseConnector):
    """A source that answers every read with a 503."""

    ordered = True

    def fetch(self, window: Window) -> Iterator[RawPage]:
        raise TransientSourceError("HTTP 503 Service Unavailable from the source")


@pytest.fixture
def config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A source synced twice (300 records, then none new) whose third cycle failed."""
    end = (utc_now() - timedelta(days=1)).replace(microsecond=0).isoformat()
    body = f'[sources.acme]\ntype = "sample"\ncount = 300\npage_size = 100\nend = {end}\n'
    path = write_config(tmp_path, body)
    for _ in range(2):
        assert main(["run", "--all", "--config", str(path)]) == 0
    with SQLiteStore(tmp_path / "state.db") as store:
        SyncEngine(store, holder="worker-7").run_cycle("acme", _Down())
    capsys.readouterr()
    return path


# The config's sample source reads as one window, as a user's does: exact counts and pages.
@pytest.mark.one_reader
def test_history_json_is_an_array_of_the_source_cycles_newest_first(
    config: Path, tmp_path: Path
) -> None:
    """The installed command prints a JSON array, newest first, each object with the documented
    fields: the failed cycle, then the one that applied nothing, then the one that applied all."""
    done = incsync("history", "acme", "--json", "--config", str(config), cwd=tmp_path)
    assert (done.code, done.stderr) == (0, "")
    cycles = json.loads(done.stdout)
    assert isinstance(cycles, list)
    assert [cycle["outcome"] for cycle in cycles] == ["failed", "completed", "completed"]
    assert [cycle["applied"] for cycle in cycles] == [0, 0, 300]
    for cycle in cycles:
        assert set(cycle) == ENTRY_FIELDS
        assert cycle["source_key"] == "acme"
        started = datetime.fromisoformat(cycle["started"])
        assert started <= datetime.fromisoformat(cycle["ended"])
    starts = [datetime.fromisoformat(cycle["started"]) for cycle in cycles]
    assert starts == sorted(starts, reverse=True)
    failed = cycles[0]
    assert (failed["error_class"], failed["worker"]) == ("TransientSourceError", "worker-7")
    assert failed["error"] == "HTTP 503 Service Unavailable from the source"
    assert cycles[2]["pages"] == 3
    assert "incsync run on " in cycles[2]["worker"]
    ids = [cycle["cycle_id"] for cycle in cycles]
    assert all(re.fullmatch("[0-9a-f]{16}", cycle_id) for cycle_id in ids)
    assert len(set(ids)) == 3


def test_history_json_gives_what_an_id_reconcile_did(tmp_path: Path) -> None:
    """A cycle that reconciled by id keeps how many records it fetched and tombstoned, and the
    installed command prints both; other cycles say 0."""
    path = write_config(tmp_path, '[sources.acme]\ntype = "sample"\ncount = 1\n')
    source = InMemorySource()
    for number in range(40):
        source.put({"id": str(number), "updated_at": f"2026-03-01T00:00:{number:02d}Z"})
    connector = InMemoryConnector(source, lists_ids=True, id_order=IdOrder.NUMERIC)
    clock = ManualClock(datetime(2026, 3, 2, tzinfo=timezone.utc))
    policy = SyncPolicy(reconcile_drift=True)
    with SQLiteStore(tmp_path / "state.db") as store:
        engine = SyncEngine(store, policy=policy, clock=clock)
        engine.run_cycle("acme", connector)
        source.purge("7")
        source.purge("31")
        source.put({"id": "40", "updated_at": "2026-02-01T00:00:00Z"})  # behind the cursor
        for _ in range(3):  # two counts find the drift; the third cycle reconciles it
            clock.advance(timedelta(days=1))
            ran = engine.run_cycle("acme", connector)
    assert (ran.reconcile_fetched, ran.reconcile_tombstoned) == (1, 2)
    done = incsync("history", "acme", "--json", "--config", str(path), cwd=tmp_path)
    assert (done.code, done.stderr) == (0, "")
    cycles = json.loads(done.stdout)
    figures = [(c["reconcile_fetched"], c["reconcile_tombstoned"]) for c in cycles]
    assert figures == [(1, 2), (0, 0), (0, 0), (0, 0)]
    text = incsync("history", "acme", "--config", str(path), cwd=tmp_path).stdout.splitlines()
    assert text[2] == "  reconciled by id: 1 fetched, 2 tombstoned"
    assert sum(line.startswith("  reconciled by id") for line in text) == 1


def test_history_names_the_cycle_run_reported(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The cycle_id ``run --json`` printed is the newest entry's, in the text and in JSON."""
    assert main(["run", "--all", "--json", "--config", str(config)]) == 0
    [ran] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main(["history", "acme", "--json", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out)[0]["cycle_id"] == ran["cycle_id"]
    assert main(["history", "acme", "--limit", "1", "--config", str(config)]) == 0
    assert capsys.readouterr().out.splitlines()[1].endswith(f", cycle {ran['cycle_id']})")


# The config's sample source reads as one window, as a user's does: exact counts and pages.
@pytest.mark.one_reader
def test_history_text_has_a_line_per_cycle_and_the_error_beneath(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One line per cycle, newest first, with its counts, generation and worker; --limit cuts."""
    assert main(["history", "acme", "--config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "acme: 3 cycles, newest first"
    assert " failed: 0 fetched, 0 applied, 0 already applied, 0 set aside, 0 pages in " in lines[1]
    assert re.search(r"\(generation 0, worker-7, cycle [0-9a-f]{16}\)$", lines[1])
    assert lines[2] == "  error: TransientSourceError: HTTP 503 Service Unavailable from the source"
    assert (
        " completed: 300 fetched, 300 applied, 0 already applied, 0 set aside, 3 pages"
        in (lines[4])
    )
    assert len(lines) == 5

    assert main(["history", "acme", "--limit", "1", "--config", str(config)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "acme: 1 cycle, newest first"
    assert main(["history", "acme", "--limit", "0", "--config", str(config)]) == 2
    assert "the count must be 1 or more" in capsys.readouterr().err


def test_history_of_a_source_that_never_ran(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A known source without cycles: a sentence, or an empty array."""
    body = config.read_text(encoding="utf-8") + '\n[sources.globex]\ntype = "sample"\ncount = 1\n'
    config.write_text(body, encoding="utf-8")
    assert main(["history", "globex", "--config", str(config)]) == 0
    assert capsys.readouterr().out == "globex: no cycles recorded\n"
    assert main(["history", "globex", "--json", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_status_sums_up_the_latest_cycles_in_json_and_hover(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """status --json gives each source's summary of its latest cycles; the hover says it."""
    assert main(["status", "--json", "--config", str(config)]) == 0
    [acme] = json.loads(capsys.readouterr().out)["sources"]
    # The sample source is no HTTP API: no cycle measured its clock.
    assert acme["history"] == {
        "cycles": 3,
        "completed": 2,
        "failed": 1,
        "interrupted": 0,
        "clock_skew_seconds": None,
    }
    assert "Last 3 cycles: 2 completed, 1 failed." in acme["hover"]


def test_the_documented_fields_are_the_printed_ones() -> None:
    """docs/cli.md names every field of an entry of ``history --json``, and no other."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    section = text[text.index("### `incsync history`") :]
    start = section.index("| field | meaning |")
    table = section[start : section.index("\n\n", start)]
    documented = set(re.findall(r"^\| (.+?) \|", table, flags=re.MULTILINE)[1:])
    names = {name for cell in documented for name in re.findall(r"`(\w+)`", cell)}
    assert names == ENTRY_FIELDS
