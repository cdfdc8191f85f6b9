"""The config file's ``[history]`` and count settings, and the status policy the file implies."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from incsync.connectors import InMemoryConnector
from incsync.engine import SyncEngine
from incsync.history import DEFAULT_HISTORY_RETENTION, HistoryRetention
from incsync.integrations.cli import main
from incsync.integrations.cli._config import ConfigFileError, load_config
from incsync.policy import SyncPolicy
from incsync.stores.sqlite import SQLiteStore
from incsync.testing import ManualClock
from incsync.timestamps import utc_now
from tests.cli.support import SAMPLE, write_config
from tests.helpers import records_before


def test_history_and_count_settings_default_to_the_library_s(tmp_path: Path) -> None:
    """Without ``[history]`` or the count keys, the store's and the engine's defaults apply."""
    config = load_config(write_config(tmp_path, SAMPLE))
    assert config.history == DEFAULT_HISTORY_RETENTION
    assert config.run.policy == SyncPolicy()


def test_history_and_count_settings_are_read(tmp_path: Path) -> None:
    """``keep_cycles``, ``keep_for``, ``count_interval`` (``"off"`` is None) and
    ``reconcile_drift`` become the retention and the engine's policy."""
    body = (
        '[history]\nkeep_cycles = 48\nkeep_for = "2d"\n\n'
        '[run]\ncount_interval = "6h"\nreconcile_drift = true\n' + SAMPLE
    )
    config = load_config(write_config(tmp_path, body))
    assert config.history == HistoryRetention(max_cycles=48, max_age=timedelta(days=2))
    assert config.run.policy == SyncPolicy(count_interval=timedelta(hours=6), reconcile_drift=True)
    off = load_config(write_config(tmp_path, '[run]\ncount_interval = "off"\n' + SAMPLE))
    assert off.run.policy.count_interval is None


# (case, the file's body, key at fault, words the message must contain)
MISTAKES = [
    ("keep_cycles negative", "[history]\nkeep_cycles = -1\n", "history.keep_cycles", "got -1"),
    ("keep_cycles text", '[history]\nkeep_cycles = "all"\n', "history.keep_cycles", "a string"),
    ("keep_cycles boolean", "[history]\nkeep_cycles = true\n", "history.keep_cycles", "got true"),
    ("keep_for a number", "[history]\nkeep_for = 31\n", "history.keep_for", 'like "1h"'),
    ("keep_for zero", '[history]\nkeep_for = "0d"\n', "history.keep_for", "zero"),
    ("unknown history key", "[history]\nkeep = 3\n", "history.keep", "keep_cycles, keep_for"),
    ("count_interval word", '[run]\ncount_interval = "never"\n', "run.count_interval", '"off"'),
    ("count_interval number", "[run]\ncount_interval = 24\n", "run.count_interval", '"off"'),
    ("reconcile_drift text", '[run]\nreconcile_drift = "yes"\n', "run.reconcile_drift", "true"),
]


@pytest.mark.parametrize(
    ("body", "key", "words"), [case[1:] for case in MISTAKES], ids=[case[0] for case in MISTAKES]
)
def test_each_history_or_count_mistake_is_one_error_naming_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, key: str, words: str
) -> None:
    """One ConfigFileError for the key; ``status`` prints it and exits 2."""
    path = write_config(tmp_path, body + SAMPLE)
    with pytest.raises(ConfigFileError) as caught:
        load_config(path)
    assert caught.value.key == key
    assert words in caught.value.problem
    assert main(["status", "--config", str(path)]) == 2
    assert capsys.readouterr().err == f"incsync: error: {caught.value}\n"


def test_keep_cycles_0_runs_without_history_and_count_off_counts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``keep_cycles = 0``: cycles run and complete, and none is kept; ``count_interval = "off"``:
    the first full read is not counted (it is by default)."""
    body = '[history]\nkeep_cycles = 0\n\n[run]\ncount_interval = "off"\n' + SAMPLE
    path = write_config(tmp_path, body)
    for _ in range(2):
        assert main(["run", "--all", "--json", "--config", str(path)]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [result["outcome"] for result in results] == ["completed", "completed"]
    assert [result["counted"] for result in results] == [None, None]
    assert main(["history", "demo", "--json", "--config", str(path)]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["status", "--json", "--config", str(path)]) == 0
    (source,) = json.loads(capsys.readouterr().out)["sources"]
    assert source["history"]["cycles"] == 0

    counted = write_config(tmp_path / "..", SAMPLE, store=f'path = "{tmp_path / "other.db"}"')
    assert main(["run", "--all", "--json", "--config", str(counted)]) == 0
    assert json.loads(capsys.readouterr().out)["counted"] is not None


def test_status_classifies_each_source_by_its_own_interval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Five hours after their last cycles, a source that syncs daily is green; one that syncs
    hourly (the file's default) is overdue: more than two cycles missed."""
    body = (
        '[sources.daily]\ntype = "sample"\ninterval = "1d"\n\n[sources.hourly]\ntype = "sample"\n'
    )
    path = write_config(tmp_path, body)
    synced = utc_now() - timedelta(hours=5)
    with SQLiteStore(tmp_path / "state.db") as store:
        engine = SyncEngine(store, clock=ManualClock(synced), holder="worker-1")
        for key in ("daily", "hourly"):
            assert (
                engine.run_cycle(key, InMemoryConnector(records_before(synced, 5))).outcome.value
                == "completed"
            )
    assert main(["status", "--json", "--config", str(path)]) == 0
    colours = {
        source["key"]: source["color"] for source in json.loads(capsys.readouterr().out)["sources"]
    }
    assert colours == {"daily": "green", "hourly": "red"}
