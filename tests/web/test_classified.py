"""The list classifies only what changed: a state that changed, or a status whose time is up.

Statuses are kept between requests; an equal state keeps its status until the status's
``reason_until``. So an open list with nothing new classifies nothing, a cycle's end classifies
one source, and a source that time alone makes overdue turns red at the next poll, not at the
next minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from incsync.connectors import InMemoryConnector
from incsync.engine import SyncEngine
from incsync.integrations.web import _classified, create_app
from incsync.integrations.web._classified import classify
from incsync.integrations.web._view import element_id
from incsync.state import SourceState
from incsync.status import DEFAULT_STATUS_POLICY, SourceStatus, StatusReason, status_of
from incsync.stores.sqlite import SQLiteStore
from incsync.testing import ManualClock
from tests.helpers import records_before

# Half a minute past, so that the minute does not change around the threshold.
SYNCED = datetime(2026, 12, 6, 3, 0, 30, tzinfo=timezone.utc)
OVERDUE = SYNCED + timedelta(hours=3)  # no attempt for 3 hours: red from just after this
KEYS = [f"tenant-{number}/ledger" for number in range(5)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(tmp_path / "console.db") as sqlite:
        engine = SyncEngine(sqlite, clock=lambda: SYNCED)
        for key in KEYS:
            engine.run_cycle(key, InMemoryConnector(records_before(SYNCED, 3)))
        yield sqlite


@pytest.fixture
def classified(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys the console classifies, in order, as it classifies them."""
    keys: list[str] = []

    def counted(state: SourceState, **arguments: object) -> SourceStatus:
        keys.append(state.key)
        return status_of(state, **arguments)  # type: ignore[arg-type]

    monkeypatch.setattr(_classified, "status_of", counted)
    return keys


def test_an_unchanged_list_is_not_classified_again(
    store: SQLiteStore, classified: list[str]
) -> None:
    clock = ManualClock(SYNCED + timedelta(minutes=5))
    client = TestClient(create_app(store, sources=KEYS, clock=clock))
    assert client.get("/").status_code == 200
    assert sorted(classified) == KEYS
    classified.clear()
    tag = client.get("/rows").headers["etag"]
    clock.advance(timedelta(minutes=30))
    assert client.get("/").status_code == 200
    assert client.get("/rows", headers={"if-none-match": tag}).status_code == 200  # new minute
    assert classified == []
    # A cycle's end: that source alone.
    SyncEngine(store, clock=clock).run_cycle(KEYS[2], InMemoryConnector(records_before(SYNCED, 4)))
    assert client.get("/rows").status_code == 200
    assert classified == [KEYS[2]]


def test_a_source_falling_overdue_turns_red_at_the_next_poll(store: SQLiteStore) -> None:
    """Within one minute: green before the threshold, 304 while nothing changes, then red."""
    clock = ManualClock(OVERDUE - timedelta(seconds=20))
    client = TestClient(create_app(store, sources=KEYS, clock=clock))
    before = client.get("/rows", params={"q": KEYS[0]})
    assert f'id="{element_id(KEYS[0])}" data-color="green"' in before.text
    tag = before.headers["etag"]
    clock.set(OVERDUE - timedelta(seconds=10))
    assert (
        client.get("/rows", params={"q": KEYS[0]}, headers={"if-none-match": tag}).status_code
        == 304
    )
    clock.set(OVERDUE + timedelta(seconds=10))
    # The same minute: before, only a new minute changed the tag of rows with no new state.
    assert clock().replace(second=0) == (OVERDUE - timedelta(seconds=20)).replace(second=0)
    after = client.get("/rows", params={"q": KEYS[0]}, headers={"if-none-match": tag})
    assert after.status_code == 200
    assert f'id="{element_id(KEYS[0])}" data-color="red"' in after.text
    assert "Overdue" in after.text


def test_a_status_is_kept_only_from_its_present_until_its_time_is_up(store: SQLiteStore) -> None:
    states = list(store.list_states())
    now = SYNCED + timedelta(hours=1)
    first = classify(states, {}, now, lambda _key: DEFAULT_STATUS_POLICY)
    kept = {entry.state.key: entry for entry in first}
    [entry] = first[:1]
    assert entry.status.reason is StatusReason.RECENT_CHANGES
    assert entry.status.reason_until == OVERDUE + timedelta(microseconds=1)
    assert classify(states, kept, OVERDUE, lambda _key: DEFAULT_STATUS_POLICY)[0] is entry
    # Past its time, or before its present (a clock set back), it is classified again.
    for moment in (OVERDUE + timedelta(microseconds=1), now - timedelta(seconds=1)):
        again = classify(states, kept, moment, lambda _key: DEFAULT_STATUS_POLICY)[0]
        assert again is not entry
        assert again.status == status_of(states[0], now=moment)
