"""The action log: every reset, cancel and resume kept with who made it and when, in every store."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from incsync.actions import Action, ActionEntry, available_actions
from incsync.engine import SyncEngine
from incsync.errors import ConfigurationError, NaiveDatetimeError
from incsync.history import NO_HISTORY
from incsync.state import Phase
from incsync.stores.sqlite import SCHEMA_VERSION, SQLiteStore
from tests.helpers import Store

UTC = timezone.utc
NOW = datetime(2026, 11, 13, 9, 41, 7, tzinfo=UTC)
KEY = "acme/invoices"


def _clock(*times: datetime) -> object:
    moments = iter(times)
    return lambda: next(moments)


def test_an_entry_checks_its_facts() -> None:
    """Empty, overlong and control-character actors are refused, as are naive times."""
    entry = ActionEntry(KEY, Action.RESET, "ana@example.com", NOW)
    assert entry.at.tzinfo is UTC
    for actor in ("", "   ", "x" * 201, "ana\x1b[2J", "ana\nbob", 7):
        with pytest.raises(ConfigurationError, match="actor"):
            ActionEntry(KEY, Action.RESET, actor, NOW)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="Action"):
        ActionEntry(KEY, "reset", "ana", NOW)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="source_key"):
        ActionEntry(" ", Action.RESET, "ana", NOW)
    with pytest.raises(NaiveDatetimeError):
        ActionEntry(KEY, Action.RESET, "ana", NOW.replace(tzinfo=None))


@pytest.mark.parametrize(
    ("phase", "actions"),
    [
        (Phase.NEW, (Action.RESET, Action.CANCEL)),
        (Phase.ACTIVE, (Action.RESET, Action.CANCEL)),
        (Phase.RESETTING, (Action.RESET, Action.CANCEL)),
        (Phase.CANCELLED, (Action.RESET, Action.RESUME)),
        (Phase.STOPPED, (Action.RESET, Action.RESUME)),
    ],
)
def test_available_actions(phase: Phase, actions: tuple[Action, ...]) -> None:
    """Resume is offered only where it changes something; cancel only where it is not done."""
    assert available_actions(phase) == actions


def test_the_engine_records_each_action_with_the_change(store: Store) -> None:
    """Each action changes the state and is kept, newest first, with its actor and time."""
    later = NOW + timedelta(minutes=1)
    engine = SyncEngine(store, clock=_clock(NOW, later, later))  # type: ignore[arg-type]
    assert engine.cancel(KEY, actor="ana").phase is Phase.CANCELLED
    assert engine.resume(KEY, actor="bob").phase is Phase.NEW
    assert engine.reset(KEY, actor="ana").phase is Phase.RESETTING
    assert engine.actions(KEY) == [
        ActionEntry(KEY, Action.RESET, "ana", later),
        ActionEntry(KEY, Action.RESUME, "bob", later),
        ActionEntry(KEY, Action.CANCEL, "ana", NOW),
    ]
    assert engine.actions(KEY, limit=1) == [ActionEntry(KEY, Action.RESET, "ana", later)]
    assert store.actions("other/source") == []
    # Actions are no cycles: the history and its summary do not count them.
    assert store.history(KEY) == []
    assert store.history_summaries([KEY])[KEY].cycles == 0


def test_without_an_actor_the_process_is_named(store: Store) -> None:
    """A reset from code that names nobody is kept under the engine's holder name."""
    engine = SyncEngine(store, holder="worker-7", clock=lambda: NOW)
    engine.reset(KEY)
    assert [entry.actor for entry in engine.actions(KEY)] == ["worker-7"]


def test_a_refused_actor_changes_nothing(store: Store) -> None:
    """An actor the record refuses stops the action before anything is written."""
    engine = SyncEngine(store, clock=lambda: NOW)
    with pytest.raises(ConfigurationError, match="actor"):
        engine.cancel(KEY, actor="\x1b]0;owned\x07")
    assert store.load(KEY).phase is Phase.NEW
    assert store.actions(KEY) == []


def test_the_store_keeps_the_record_and_the_change_together(store: Store) -> None:
    """``act`` makes the change as the plain method does, and keeps the record with it."""
    store.act(ActionEntry(KEY, Action.CANCEL, "ana", NOW))
    assert store.load(KEY).phase is Phase.CANCELLED
    assert store.actions(KEY) == [ActionEntry(KEY, Action.CANCEL, "ana", NOW)]
    # The plain methods change the state and record nothing: the engine is the recording path.
    store.resume(KEY)
    assert store.load(KEY).phase is Phase.NEW
    assert len(store.actions(KEY)) == 1
    with pytest.raises(ConfigurationError, match="limit"):
        store.actions(KEY, limit=0)


def test_actions_are_kept_when_the_history_is_off(tmp_path: Path) -> None:
    """Turning the cycle history off does not turn the action log off."""
    with SQLiteStore(tmp_path / "quiet.db", history_retention=NO_HISTORY) as store:
        SyncEngine(store, clock=lambda: NOW).reset(KEY, actor="ana")
        assert [entry.action for entry in store.actions(KEY)] == [Action.RESET]


def test_an_older_sqlite_file_gains_the_action_log(tmp_path: Path) -> None:
    """A file written by schema 8 (no action log) is upgraded on open and records actions."""
    path = tmp_path / "old.db"
    with SQLiteStore(path) as store:
        store.cancel(KEY)
    connection = sqlite3.connect(path)
    connection.execute("DROP TABLE incsync_actions")
    connection.execute("UPDATE incsync_meta SET value = '8' WHERE name = 'schema_version'")
    connection.commit()
    connection.close()
    with SQLiteStore(path) as store:
        assert store.load(KEY).phase is Phase.CANCELLED
        SyncEngine(store, clock=lambda: NOW).resume(KEY, actor="ana")
        assert [entry.actor for entry in store.actions(KEY)] == ["ana"]
    connection = sqlite3.connect(path)
    (version,) = connection.execute(
        "SELECT value FROM incsync_meta WHERE name = 'schema_version'"
    ).fetchone()
    connection.close()
    assert int(version) == SCHEMA_VERSION
