"""The cycle history survives a SIGKILL at every step of a cycle, on SQLite and PostgreSQL.

For each way a cycle ends (completed, failed, cancelled, stopped, reset by the host, reset by the
engine), the test first runs the cycle in its own process without a fault and records its steps:
before and after every store call the cycle makes, and, inside the transaction that writes its
final state, the moment after its entry is written and before that transaction commits. Then,
for every one of those steps, a fresh worker process runs the same cycle of a source of its own
and kills itself with SIGKILL at that step. What the store holds afterwards must be one of two
things: the cycle's final state (its lease released) with exactly its entry, the same as the
faultless run's; or neither (its lease still held, until it expires) and no entry at all.

Workers are forked from a server that has imported incsync once (the "forkserver" start method),
so each of the ~130 processes costs milliseconds; each opens its own connections, as a separate
host would.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest

from incsync import (
    Outcome,
    SourceError,
    SQLiteStore,
    SyncEngine,
    SyncPolicy,
    TransientSourceError,
)
from incsync.connectors import InMemoryConnector, InMemorySource
from incsync.connectors.memory import iso_timestamp
from incsync.history import CycleEntry
from incsync.state import held_lease
from incsync.stores.postgres import PostgresStore
from incsync.testing import ManualClock
from tests.stores.postgres_server import CONNINFO

pytestmark = pytest.mark.slow

NOW = datetime(2026, 11, 13, 9, 0, tzinfo=timezone.utc)
WAIT = 30.0  # seconds a worker may take to start and die before the test fails
INSIDE = "entry written, not committed"

# Each way a cycle ends, and the store call that writes its final state with its entry.
FINAL_WRITES = {
    "completed": "complete_cycle",
    "failed": "fail_cycle",
    "cancelled": "interrupt_cycle",
    "stopped": "interrupt_cycle",
    "reset": "interrupt_cycle",
    "resync": "fail_cycle",
}
OUTCOMES = {
    "completed": Outcome.COMPLETED,
    "failed": Outcome.FAILED,
    "cancelled": Outcome.INTERRUPTED_CANCEL,
    "stopped": Outcome.INTERRUPTED_STOP,
    "reset": Outcome.INTERRUPTED_RESET,
    "resync": Outcome.INTERRUPTED_RESET,
}


class Steps:
    """Counts the steps of a cycle; at the ``kill_at``-th (from 1) the process kills itself."""

    def __init__(self, kill_at: int | None) -> None:
        self.names: list[str] = []
        self.kill_at = kill_at

    def __call__(self, name: str) -> None:
        self.names.append(name)
        if len(self.names) == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


class SteppingSQLite(SQLiteStore):
    """A SQLite store that counts a step between writing a cycle's entry and committing it."""

    steps: Steps

    def _keep_entry(self, *args: Any, **kwargs: Any) -> None:
        super()._keep_entry(*args, **kwargs)
        self.steps(INSIDE)


class SteppingPostgres(PostgresStore):
    """A PostgreSQL store that counts a step between writing a cycle's entry and committing it."""

    steps: Steps

    def _keep_entry(self, *args: Any, **kwargs: Any) -> None:
        super()._keep_entry(*args, **kwargs)
        self.steps(INSIDE)


class Stepping:
    """The store as the engine sees it: every call is a step before it and a step after it."""

    def __init__(self, inner: SQLiteStore | PostgresStore, steps: Steps) -> None:
        self.inner = inner
        self.steps = steps

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self.steps(f"before {name}")
        value = getattr(self.inner, name)(*args, **kwargs)
        self.steps(f"after {name}")
        return value

    def load(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("load", *args, **kwargs)

    def list_states(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("list_states", *args, **kwargs)

    def list_rejected(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("list_rejected", *args, **kwargs)

    def history(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("history", *args, **kwargs)

    def history_summaries(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("history_summaries", *args, **kwargs)

    def acquire_lease(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("acquire_lease", *args, **kwargs)

    def renew_lease(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("renew_lease", *args, **kwargs)

    def release_lease(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("release_lease", *args, **kwargs)

    def save_checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("save_checkpoint", *args, **kwargs)

    def commit_page(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("commit_page", *args, **kwargs)

    def complete_cycle(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("complete_cycle", *args, **kwargs)

    def fail_cycle(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("fail_cycle", *args, **kwargs)

    def interrupt_cycle(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("interrupt_cycle", *args, **kwargs)

    def reset(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("reset", *args, **kwargs)

    def rewind(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("rewind", *args, **kwargs)

    def cancel(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("cancel", *args, **kwargs)

    def resume(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("resume", *args, **kwargs)

    def act(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("act", *args, **kwargs)

    def actions(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("actions", *args, **kwargs)

    def apply(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("apply", *args, **kwargs)

    def sweep(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("sweep", *args, **kwargs)

    def count_live(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("count_live", *args, **kwargs)

    def list_live_ids(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("list_live_ids", *args, **kwargs)

    def tombstone(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("tombstone", *args, **kwargs)


SteppingStore = SteppingSQLite | SteppingPostgres


@contextmanager
def _opened(kind: str, location: str) -> Iterator[SteppingStore]:
    """Open the store a worker uses (each process its own), and close it afterwards."""
    store: SteppingStore = (
        SteppingSQLite(location)
        if kind == "sqlite"
        else SteppingPostgres(CONNINFO, schema=location)
    )
    try:
        yield store
    finally:
        store.close()


def _source() -> InMemorySource:
    source = InMemorySource()
    for number in range(9):
        at = NOW - timedelta(hours=1, seconds=9 - number)
        source.put({"id": f"r{number}", "updated_at": iso_timestamp(at)})
    return source


def _at_second_page(act: Callable[[], object]) -> Callable[[int], None]:
    def hook(number: int) -> None:
        if number == 1:
            act()

    return hook


def _fail(error: Exception) -> Callable[[], None]:
    def fail() -> None:
        raise error

    return fail


def _cycle(scenario: str, store: SteppingStore, key: str, steps: Steps) -> Outcome:
    """Run the scenario's cycle of ``key`` (three pages of three records) through ``store``."""
    store.steps = steps
    engine = SyncEngine(
        Stepping(store, steps),
        clock=ManualClock(NOW),
        policy=SyncPolicy(),
        holder="worker-1",
    )
    stop = threading.Event()
    act: dict[str, Callable[[], object]] = {
        "failed": _fail(TransientSourceError("HTTP 503 from the source")),
        "cancelled": lambda: engine.cancel(key),
        "stopped": stop.set,
        "reset": lambda: engine.reset(key),
        "resync": _fail(SourceError("the change log expired", resync_required=True)),
    }
    hook = _at_second_page(act[scenario]) if scenario in act else None
    # One reader: the steps are numbered in one order, the same in the faultless run and the
    # killed one (another process, where INCSYNC_TEST_PARTITIONS does not reach).
    connector = InMemoryConnector(_source(), page_size=3, before_page=hook, partitions=1)
    return engine.run_cycle(key, connector, stop=stop).outcome


def _prepare(store: SteppingStore, scenario: str, key: str) -> None:
    """A completed cycle is a full re-read after a reset, so that it sweeps as well."""
    if scenario == "completed":
        store.reset(key)


def _die_at(kind: str, location: str, scenario: str, key: str, step: int) -> None:
    """Run the cycle in this (child) process, which kills itself at ``step``."""
    with _opened(kind, location) as store:
        _cycle(scenario, store, key, Steps(step))
    os._exit(3)  # the step never came: the parent sees exit code 3


_forkserver = multiprocessing.get_context("forkserver")


def _faultless(kind: str, location: str, scenario: str, key: str) -> tuple[list[str], CycleEntry]:
    """Run the cycle without a fault; return its steps and the entry it kept."""
    steps = Steps(None)
    with _opened(kind, location) as store:
        _prepare(store, scenario, key)
        assert _cycle(scenario, store, key, steps) is OUTCOMES[scenario]
        [entry] = store.history(key)
    return steps.names, entry


def _renamed(entry: CycleEntry, key: str) -> CycleEntry:
    """The entry of the same cycle of source ``key`` (whose name an error may quote), but for the
    cycle's id, random in every run."""
    error = None if entry.error is None else entry.error.replace(entry.source_key, key)
    return attrs.evolve(entry, source_key=key, error=error, cycle_id=None)


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """A SQLite file, or a migrated PostgreSQL schema, with the store's tables."""
    if request.param == "sqlite":
        path = tmp_path / "kills.db"
        with SQLiteStore(path):
            pass
        return "sqlite", str(path)
    schema = request.getfixturevalue("postgres_schema")
    with PostgresStore(CONNINFO, schema=schema) as store:
        store.migrate()
    return "postgres", schema


@pytest.mark.parametrize("scenario", sorted(FINAL_WRITES))
def test_a_cycle_killed_at_any_step_keeps_its_entry_exactly_when_its_final_state(
    location: tuple[str, str], scenario: str
) -> None:
    """Killed before its final write commits, a cycle leaves its lease held and no entry; killed
    after, its final state and its one entry, equal to a faultless run's. A kill between writing
    the entry and committing keeps neither."""
    kind, where = location
    _forkserver.set_forkserver_preload([__name__])
    names, reference = _faultless(kind, where, scenario, f"{scenario}-reference")
    final = FINAL_WRITES[scenario]
    inside = names.index(INSIDE)
    assert names[inside - 1 : inside + 2] == [f"before {final}", INSIDE, f"after {final}"]
    committed = inside + 2  # the first step (from 1) at which the final write has committed

    with _opened(kind, where) as store:
        for step in range(1, len(names) + 1):
            key = f"{scenario}-{step}"
            _prepare(store, scenario, key)
            worker = _forkserver.Process(target=_die_at, args=(kind, where, scenario, key, step))
            worker.start()
            worker.join(WAIT)
            assert worker.exitcode == -signal.SIGKILL, (step, names[step - 1], worker.exitcode)

            entries = store.history(key)
            state = store.load(key)
            released = state.lease is not None and held_lease(state, NOW) is None
            where_killed = (step, names[step - 1])
            # Committed, the final write released the lease; before it, none was taken yet or
            # the lease is still held.
            assert released == (step >= committed), where_killed
            expected = [_renamed(reference, key)] if released else []
            assert [_renamed(entry, key) for entry in entries] == expected, where_killed
            assert None not in {entry.cycle_id for entry in entries}, where_killed
