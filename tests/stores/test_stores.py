"""Contract tests every built-in store passes: states, leases, sinks, set-aside records."""

from __future__ import annotations

import secrets
import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incsync import (
    Checkpoint,
    ConfigurationError,
    Cursor,
    ErrorInfo,
    GenerationChangedError,
    Lease,
    LeaseLostError,
    NaiveDatetimeError,
    Phase,
    Record,
    RejectedRecord,
    SourceState,
    SQLiteStore,
    StoreError,
    Transaction,
)
from incsync.content import content_digest
from incsync.records import supersedes
from incsync.state import acquire
from incsync.stores.sqlite import SCHEMA_VERSION as SQLITE_SCHEMA_VERSION
from incsync.testing import InMemoryStore
from tests.helpers import Store, entry_of, transactions_by_id
from tests.json_values import json_payloads, respelled
from tests.strategies import cursors, record_ids, records, utc_datetimes

NOW = datetime(2026, 11, 13, 9, 0, tzinfo=timezone.utc)
TTL = timedelta(minutes=10)
KEY = "acme/quickbooks"


def _transactions(store: Store, key: str = KEY) -> dict[str, Transaction]:
    return transactions_by_id(store, key)


def _record(record_id: str, second: int, **payload: object) -> Record:
    return Record(record_id, NOW + timedelta(seconds=second), {"id": record_id, **payload})


def test_an_unknown_source_has_a_new_state(store: Store) -> None:
    """Loading a source the store never saw gives a fresh state and stores nothing."""
    assert store.load(KEY) == SourceState(key=KEY)
    assert store.list_states() == []


def test_states_are_listed_by_key(store: Store) -> None:
    """list_states returns every known source, ordered by key."""
    for key in ("b", "c", "a"):
        store.cancel(key)
    assert [state.key for state in store.list_states()] == ["a", "b", "c"]


def test_only_one_lease_is_granted_until_it_expires(store: Store) -> None:
    """A live lease refuses a second holder; an expired one is taken over with a larger token."""
    first = store.acquire_lease(KEY, "one", NOW, TTL)
    assert first is not None
    assert store.acquire_lease(KEY, "two", NOW + TTL - timedelta(microseconds=1), TTL) is None
    second = store.acquire_lease(KEY, "two", NOW + TTL, TTL)
    assert second is not None
    assert second.token > first.token
    with pytest.raises(LeaseLostError):
        store.renew_lease(KEY, first, NOW + TTL, TTL)


def test_a_released_lease_cannot_be_used_again(store: Store) -> None:
    """After release, the old lease neither renews nor checkpoints, and a new one can be taken."""
    lease = store.acquire_lease(KEY, "one", NOW, TTL)
    assert lease is not None
    store.release_lease(KEY, lease)
    with pytest.raises(LeaseLostError):
        store.renew_lease(KEY, lease, NOW, TTL)
    with pytest.raises(LeaseLostError):
        store.save_checkpoint(KEY, lease, 0, Checkpoint(cursor=None), NOW, TTL)
    assert store.acquire_lease(KEY, "two", NOW, TTL) is not None


def test_a_refused_checkpoint_writes_no_rows(store: Store) -> None:
    """commit_page is all or nothing: after a reset, the page and its checkpoint are refused."""
    lease = store.acquire_lease(KEY, "one", NOW, TTL)
    assert lease is not None
    store.reset(KEY)
    checkpoint = Checkpoint(
        cursor=Cursor(NOW, "a"),
        rejected=[RejectedRecord(record_id="x", reason="bad")],
    )
    with pytest.raises(GenerationChangedError):
        store.commit_page(KEY, [_record("a", 0)], lease, 0, checkpoint, NOW, TTL)
    assert _transactions(store) == {}
    assert store.list_rejected(KEY) == []
    assert store.load(KEY).cursor is None


def test_an_accepted_page_and_checkpoint_land_together(store: Store) -> None:
    """commit_page applies the rows, moves the cursor, keeps the rejects and extends the lease."""
    lease = store.acquire_lease(KEY, "one", NOW, TTL)
    assert lease is not None
    later = NOW + timedelta(minutes=5)
    checkpoint = Checkpoint(
        cursor=Cursor(NOW, "b"),
        last_change=NOW + timedelta(seconds=1),
        rejected=[RejectedRecord(record_id=None, reason="no id", raw="{}")],
    )
    result, state = store.commit_page(
        KEY, [_record("a", 0), _record("b", 1)], lease, 0, checkpoint, later, TTL
    )
    assert result.applied == 2
    assert state.cursor == Cursor(NOW, "b")
    assert state.last_change == NOW + timedelta(seconds=1)
    assert state.lease is not None
    assert state.lease.expires_at == later + TTL
    assert store.load(KEY) == state
    [rejected] = store.list_rejected(KEY)
    assert (rejected.record_id, rejected.reason, rejected.seen_at) == (None, "no id", later)


def test_marks_are_kept_moved_only_forward_and_forgotten_by_a_reset(store: Store) -> None:
    """A page's marks are stored with its checkpoint; an older mark never moves one back."""
    lease = store.acquire_lease(KEY, "one", NOW, TTL)
    assert lease is not None
    first = Checkpoint(cursor=None, marks={"deletes": NOW, "events": NOW})
    _, state = store.commit_page(KEY, [], lease, 0, first, NOW, TTL)
    assert dict(state.marks) == {"deletes": NOW, "events": NOW}
    older = Checkpoint(cursor=None, marks={"deletes": NOW - timedelta(days=1)})
    store.save_checkpoint(KEY, lease, 0, older, NOW, TTL)
    assert dict(store.load(KEY).marks) == {"deletes": NOW, "events": NOW}
    later = Checkpoint(cursor=None, marks={"deletes": NOW + timedelta(seconds=1)})
    done = store.complete_cycle(KEY, lease, 0, later, NOW, 0, entry_of(KEY, NOW))
    assert done.marks["deletes"] == NOW + timedelta(seconds=1)
    assert store.load(KEY) == done
    assert dict(store.reset(KEY).marks) == {}
    assert dict(store.load(KEY).marks) == {}


def test_sink_keeps_the_newest_version_and_counts_what_it_wrote(
    store: Store,
) -> None:
    """Older versions never replace newer ones; re-reading the same version writes nothing."""
    assert store.apply(KEY, [_record("a", 5, v=1)], 0, 1).applied == 1
    assert store.apply(KEY, [_record("a", 3, v=0)], 0, 1).applied == 0
    assert store.apply(KEY, [_record("a", 5, v=1)], 0, 1).applied == 0
    assert store.apply(KEY, [_record("a", 5, v=2)], 0, 1).applied == 1  # same second, new content
    assert store.apply(KEY, [_record("a", 5, v=2)], 1, 1).applied == 1  # a reset re-applies once
    assert store.apply(KEY, [_record("a", 5, v=3)], 0, 1).applied == 0  # a stale generation
    stored = _transactions(store)["a"]
    assert (stored.record.payload["v"], stored.generation) == (2, 1)


def _nested(depth: int) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    for _ in range(depth):
        payload = {"a": payload}
    return payload


@pytest.mark.parametrize(
    ("stored", "incoming", "changed"),
    [
        pytest.param({"a": 1, "b": 2}, {"b": 2, "a": 1}, False, id="key-order"),
        pytest.param({"x": {"a": 1, "b": 2}}, {"x": {"b": 2, "a": 1}}, False, id="nested-order"),
        pytest.param({"a": 1}, {"a": 1.0}, False, id="1-then-1.0"),
        pytest.param({"a": 0}, {"a": -0.0}, False, id="0-then-minus-0.0"),
        pytest.param({"a": 10**23}, {"a": 1e23}, False, id="integer-then-exponent"),
        pytest.param({"paid": 1}, {"paid": True}, True, id="1-then-true"),
        pytest.param({"paid": True}, {"paid": 1}, True, id="true-then-1"),
        pytest.param({"paid": False}, {"paid": 0}, True, id="false-then-0"),
        pytest.param({"a": "1.10"}, {"a": Decimal("1.10")}, False, id="text-then-decimal"),
        pytest.param({"a": NOW.isoformat()}, {"a": NOW}, False, id="text-then-datetime"),
        pytest.param({"a": [1, 2]}, {"a": (1, 2)}, False, id="list-then-tuple"),
        pytest.param({"a": [1, 2]}, {"a": [2, 1]}, True, id="array-order"),
        pytest.param({"a": None}, {}, True, id="null-then-absent"),
        pytest.param({"a": 1}, {"a": "1"}, True, id="number-then-text"),
        pytest.param({"a": "é"}, {"a": "e\u0301"}, True, id="text-exact"),
    ],
)
def test_a_version_read_again_is_written_only_when_its_content_changed(
    store: Store, stored: dict[str, Any], incoming: dict[str, Any], changed: bool
) -> None:
    """At the same updated_at and generation, every store writes the version read again exactly
    when incsync.content says its content changed: key order and 1 against 1.0 are no change,
    true against 1 is one.
    """
    assert store.apply(KEY, [Record("r", NOW, stored)], 0, 1).applied == 1
    result = store.apply(KEY, [Record("r", NOW, incoming)], 0, 1)
    assert (result.applied, list(result.rejected)) == (int(changed), [])


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param({"amount": float("nan")}, "JSON", id="nan"),
        pytest.param({"amount": float("inf")}, "JSON", id="infinity"),
        pytest.param({"blob": object()}, "JSON", id="object"),
        pytest.param({"when": datetime(2026, 1, 1)}, "timezone", id="naive"),  # noqa: DTZ001
        pytest.param(_nested(100_000), "nested too deeply", id="too-deep"),
    ],
)
def test_a_payload_without_a_json_form_is_set_aside_by_every_store(
    store: Store, payload: dict[str, Any], reason: str
) -> None:
    """Every store sets such a record aside with its reason and applies the rest of the page, in
    apply and in commit_page (which keeps it with the set-aside records); nothing is raised.
    """
    result = store.apply(KEY, [Record("bad", NOW, payload), _record("good", 0)], 0, 1)
    assert result.applied == 1
    [rejected] = result.rejected
    assert rejected.record_id == "bad"
    assert reason in rejected.reason
    lease = store.acquire_lease(KEY, "one", NOW, TTL)
    assert lease is not None
    page = [Record("bad", NOW, payload), _record("good", 1)]
    committed, _ = store.commit_page(KEY, page, lease, 0, Checkpoint(cursor=None), NOW, TTL)
    assert (committed.applied, [item.record_id for item in committed.rejected]) == (1, ["bad"])
    assert [item.record_id for item in store.list_rejected(KEY)] == ["bad"]
    assert list(_transactions(store)) == ["good"]


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_store_decides_a_same_time_version_as_supersedes_does(
    store: Store, data: st.DataObject
) -> None:
    """For random JSON payload pairs, often re-spellings of each other, each store writes the
    second version at the same time and generation exactly when supersedes says so, and then holds
    the content of the version supersedes keeps.
    """
    key = f"content/{secrets.token_hex(4)}"
    first = data.draw(json_payloads(), label="stored")
    second = data.draw(st.one_of(respelled(first), json_payloads()), label="incoming")
    deleted = data.draw(st.booleans(), label="incoming deleted")
    stored, incoming = Record("r", NOW, first), Record("r", NOW, second, deleted=deleted)
    assert store.apply(key, [stored], 0, 1).applied == 1
    replaces = supersedes(incoming, 0, stored, 0)
    assert store.apply(key, [incoming], 0, 1).applied == int(replaces)
    [held] = store.transactions(key)
    kept = incoming if replaces else stored
    assert (held.record.deleted, content_digest(held.record.payload)) == (
        kept.deleted,
        content_digest(kept.payload),
    )


def _around_now(microseconds: int) -> datetime:
    return NOW + timedelta(microseconds=microseconds)


# Times on both sides of NOW and on it, where the rule's comparisons turn.
_NEAR_NOW = st.one_of(st.sampled_from([-1, 0, 1]), st.integers(-(10**9), 10**9)).map(_around_now)
LEASE_STATES = st.builds(
    SourceState,
    key=st.just(KEY),
    phase=st.sampled_from(Phase),
    generation=st.integers(min_value=0, max_value=3),
    last_attempt=st.none() | _NEAR_NOW,
    lease=st.none()
    | st.builds(
        Lease,
        holder=st.sampled_from(["one", "two"]),
        expires_at=_NEAR_NOW,
        token=st.integers(min_value=1, max_value=2**62),
    ),
    not_before=st.none() | _NEAR_NOW,
)


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=LEASE_STATES)
def test_every_store_grants_a_lease_exactly_as_the_state_rule_does(
    store: Store, state: SourceState
) -> None:
    """Whatever the phase, lease expiry, wait and token, a store grants a lease (or not), with the
    same token and the same recorded attempt, exactly as incsync.state.acquire decides.
    """
    store._update(KEY, lambda _stored: state)
    expected_state, expected_lease = acquire(state, "worker", NOW, TTL)
    assert store.acquire_lease(KEY, "worker", NOW, TTL) == expected_lease
    assert store.load(KEY) == expected_state


def test_a_lease_asked_for_with_a_naive_time_is_refused(store: Store) -> None:
    """A naive "now" is refused with NaiveDatetimeError, whether or not a lease is held."""
    naive = NOW.replace(tzinfo=None)
    with pytest.raises(NaiveDatetimeError):
        store.acquire_lease(KEY, "one", naive, TTL)
    assert store.acquire_lease(KEY, "one", NOW, TTL) is not None
    with pytest.raises(NaiveDatetimeError):
        store.acquire_lease(KEY, "two", naive, TTL)


def test_sources_do_not_share_transactions(store: Store) -> None:
    """The same record id under two sources is two transactions."""
    store.apply("one", [_record("a", 0)], 0, 1)
    store.apply("two", [_record("a", 0)], 0, 1)
    assert list(_transactions(store, "one")) == ["a"]
    assert list(_transactions(store, "two")) == ["a"]


def test_a_rejected_record_is_kept_once_per_identity(store: Store) -> None:
    """Seeing the same bad record again updates its entry (reason, time) instead of adding one."""
    lease = store.acquire_lease(KEY, "one", NOW, TTL)
    assert lease is not None
    for minute, reason in ((1, "first reason"), (2, "second reason")):
        checkpoint = Checkpoint(
            cursor=None, rejected=[RejectedRecord(record_id="x", reason=reason)]
        )
        store.save_checkpoint(KEY, lease, 0, checkpoint, NOW + timedelta(minutes=minute), TTL)
    [entry] = store.list_rejected(KEY)
    assert (entry.reason, entry.seen_at) == ("second reason", NOW + timedelta(minutes=2))


def test_reset_forgets_set_aside_records(store: Store) -> None:
    """A reset clears the set-aside list; the full read that follows lists what is still bad."""
    checkpoint = Checkpoint(cursor=None, rejected=[RejectedRecord(record_id="x", reason="bad")])
    for key in (KEY, "other"):
        lease = store.acquire_lease(key, "one", NOW, TTL)
        assert lease is not None
        store.save_checkpoint(key, lease, 0, checkpoint, NOW, TTL)
    store.reset(KEY)
    assert store.list_rejected(KEY) == []
    assert [item.record_id for item in store.list_rejected("other")] == ["x"]


def test_commands_move_phases_and_never_touch_transactions(
    store: Store,
) -> None:
    """reset, cancel and resume change only the state; every transaction stays."""
    store.apply(KEY, [_record("a", 0)], 0, 1)
    assert store.reset(KEY).phase is Phase.RESETTING
    assert store.cancel(KEY).phase is Phase.CANCELLED
    assert store.resume(KEY).phase is Phase.RESETTING  # the reset has not completed yet
    assert list(_transactions(store)) == ["a"]


def test_rewind_moves_cursor_and_marks_back_and_keeps_rows_and_set_aside_records(
    store: Store,
) -> None:
    """A rewind is stored as the state rule decides: cursor and later marks back, generation on;
    the rows and set-aside records stay; a running cycle's next checkpoint is refused."""
    lease = store.acquire_lease(KEY, "one", NOW, TTL)
    assert lease is not None
    marks = {"deletes": NOW + timedelta(seconds=2), "events": NOW - timedelta(days=1)}
    rejected = [RejectedRecord(record_id="x", reason="bad")]
    checkpoint = Checkpoint(cursor=Cursor(NOW, "b"), marks=marks, rejected=rejected)
    store.commit_page(KEY, [_record("a", 0), _record("b", 0)], lease, 0, checkpoint, NOW, TTL)
    since = NOW - timedelta(hours=1)

    rewound = store.rewind(KEY, since)
    assert (rewound.cursor, rewound.generation) == (Cursor(since, ""), 1)
    assert dict(rewound.marks) == {"deletes": since, "events": NOW - timedelta(days=1)}
    assert store.load(KEY) == rewound
    assert sorted(_transactions(store)) == ["a", "b"]
    assert [item.record_id for item in store.list_rejected(KEY)] == ["x"]
    with pytest.raises(GenerationChangedError):
        store.save_checkpoint(KEY, lease, 0, Checkpoint(Cursor(NOW, "c")), NOW, TTL)
    assert store.load(KEY) == rewound

    store.reset(KEY)
    with pytest.raises(ConfigurationError, match="is being reset"):
        store.rewind(KEY, since)
    assert store.load(KEY).generation == 2


ERRORS = st.builds(
    ErrorInfo,
    error_class=st.sampled_from(["AuthError", "TransientSourceError"]),
    message=st.text(max_size=40),
    at=utc_datetimes(),
    retryable=st.booleans(),
    auth=st.booleans(),
)
LEASES = st.builds(
    Lease,
    holder=st.text(max_size=20),
    expires_at=utc_datetimes(),
    token=st.integers(min_value=1, max_value=2**62),
)
STATES = st.builds(
    SourceState,
    key=st.just(KEY),
    phase=st.sampled_from(Phase),
    generation=st.integers(min_value=0, max_value=2**62),
    cursor=st.none() | cursors(utc_datetimes()),
    last_change=st.none() | utc_datetimes(),
    last_sync=st.none() | utc_datetimes(),
    last_attempt=st.none() | utc_datetimes(),
    consecutive_failures=st.integers(min_value=0, max_value=1000),
    last_error=st.none() | ERRORS,
    lease=st.none() | LEASES,
    not_before=st.none() | utc_datetimes(),
    last_cycle_rejected=st.integers(min_value=0, max_value=10**6),
    reset_pending=st.booleans(),
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=STATES)
def test_sqlite_round_trips_every_state(tmp_path: Path, state: SourceState) -> None:
    """Whatever a state holds, SQLite gives back an equal one (times to the microsecond)."""
    with SQLiteStore(tmp_path / "round-trip.db") as store:
        store._update(KEY, lambda _stored: state)
        assert store.load(KEY) == state


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pages=st.lists(st.lists(records(ids=st.sampled_from("abcde")), max_size=6), max_size=6))
def test_both_sinks_agree_and_replaying_pages_changes_nothing(
    tmp_path: Path, pages: list[list[Record]]
) -> None:
    """The in-memory and SQLite sinks end equal, and applying every page again writes nothing."""
    memory = InMemoryStore()
    path = tmp_path / "agree.db"
    path.unlink(missing_ok=True)
    with SQLiteStore(path) as sqlite:
        for page in pages:
            assert memory.apply(KEY, page, 0, 1).applied == sqlite.apply(KEY, page, 0, 1).applied
        assert {k: v.record for k, v in _transactions(memory).items()} == {
            k: v.record for k, v in _transactions(sqlite).items()
        }
        replayed = {k: v.record.key for k, v in _transactions(sqlite).items()}
        for page in pages:
            sqlite.apply(KEY, page, 0, 1)
            memory.apply(KEY, page, 0, 1)
        assert {k: v.record.key for k, v in _transactions(sqlite).items()} == replayed
        assert {k: v.record.key for k, v in _transactions(memory).items()} == replayed


@given(record_id=record_ids())
def test_record_ids_of_any_shape_are_stored(record_id: str) -> None:
    """Record ids are opaque text to the in-memory sink."""
    store = InMemoryStore()
    store.apply(KEY, [_record(record_id, 0)], 0, 1)
    assert [t.record.id for t in store.transactions(KEY)] == [record_id]


def test_sqlite_sets_aside_payloads_it_cannot_store(tmp_path: Path) -> None:
    """A payload that is not JSON is set aside with its reason; dates and decimals are stored."""
    with SQLiteStore(tmp_path / "payloads.db") as store:
        good = Record("ok", NOW, {"when": NOW, "amount": Decimal("1.10"), "name": "Zoë 🧾"})
        bad = Record("bad", NOW, {"blob": object()})
        result = store.apply(KEY, [good, bad], 0, 1)
        assert result.applied == 1
        [rejected] = result.rejected
        assert rejected.record_id == "bad"
        assert "JSON" in rejected.reason
        [stored] = store.transactions(KEY)
        assert stored.record.payload == {
            "when": NOW.isoformat(),
            "amount": "1.10",
            "name": "Zoë 🧾",
        }


def test_sqlite_refuses_memory_and_unknown_settings(tmp_path: Path) -> None:
    """ ":memory:" and an unknown synchronous level are configuration errors that say why."""
    with pytest.raises(ConfigurationError, match="InMemoryStore"):
        SQLiteStore(":memory:")
    with pytest.raises(ConfigurationError, match="synchronous"):
        SQLiteStore(tmp_path / "x.db", synchronous="SOMETIMES")


def test_sqlite_refuses_a_database_from_a_newer_version(tmp_path: Path) -> None:
    """A file whose schema is newer than this incsync is refused with advice to upgrade."""
    path = tmp_path / "newer.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE incsync_meta SET value = '99' WHERE name = 'schema_version'")
    connection.close()
    with pytest.raises(StoreError, match="upgrade incsync"):
        SQLiteStore(path)


def test_sqlite_store_is_shared_by_threads(tmp_path: Path) -> None:
    """Each thread gets its own connection to the same file, and sees the others' writes."""
    with SQLiteStore(tmp_path / "threads.db") as store:

        def write(number: int) -> None:
            store.apply(KEY, [_record(f"r{number}", number)], 0, 1)

        threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.count_transactions(KEY) == 8


def test_a_broken_database_file_is_a_store_error(tmp_path: Path) -> None:
    """A file that is not an SQLite database gives a StoreError naming the file."""
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"garbage\.db"):
        SQLiteStore(path)


# The schema incsync wrote before content digests (schema version 1), as released.
_SQLITE_SCHEMA_1 = """
CREATE TABLE incsync_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO incsync_meta (name, value) VALUES ('schema_version', '1');
CREATE TABLE incsync_sources (
    source_key TEXT PRIMARY KEY, phase TEXT NOT NULL, generation INTEGER NOT NULL,
    cursor_updated_at_us INTEGER, cursor_record_id TEXT, last_change_us INTEGER,
    last_sync_us INTEGER, last_attempt_us INTEGER, consecutive_failures INTEGER NOT NULL,
    error_class TEXT, error_message TEXT, error_at_us INTEGER, error_retryable INTEGER,
    error_auth INTEGER, lease_holder TEXT, lease_expires_us INTEGER, lease_token INTEGER,
    not_before_us INTEGER, last_cycle_rejected INTEGER NOT NULL, reset_pending INTEGER NOT NULL
);
CREATE TABLE incsync_transactions (
    source_key TEXT NOT NULL, record_id TEXT NOT NULL, updated_at_us INTEGER NOT NULL,
    deleted INTEGER NOT NULL, payload TEXT NOT NULL, generation INTEGER NOT NULL,
    PRIMARY KEY (source_key, record_id)
);
CREATE TABLE incsync_rejected (
    source_key TEXT NOT NULL, fingerprint TEXT NOT NULL, record_id TEXT, reason TEXT NOT NULL,
    raw TEXT NOT NULL, seen_at_us INTEGER, PRIMARY KEY (source_key, fingerprint)
);
"""


def test_sqlite_opens_a_file_written_before_content_digests(tmp_path: Path) -> None:
    """A file of schema version 1 is upgraded on open: every row's digest is computed from its
    payload, so reading the same content again writes nothing and a change is written; a payload
    that version kept with NaN has no digest, and the next version at that time replaces it.
    """
    path = tmp_path / "version-1.db"
    micros = int((NOW - datetime(1970, 1, 1, tzinfo=timezone.utc)).total_seconds() * 1_000_000)
    with sqlite3.connect(path) as connection:
        connection.executescript(_SQLITE_SCHEMA_1)
        connection.executemany(
            "INSERT INTO incsync_transactions VALUES (?, ?, ?, 0, ?, 0)",
            [
                (KEY, "same", micros, '{"b":2,"a":1.0}'),
                (KEY, "changed", micros, '{"paid":1}'),
                (KEY, "nan", micros, '{"amount":NaN}'),
            ],
        )
    connection.close()
    with SQLiteStore(path) as store:
        assert store.count_transactions(KEY) == 3
        incoming = [
            Record("same", NOW, {"a": 1, "b": 2}),
            Record("changed", NOW, {"paid": True}),
            Record("nan", NOW, {"amount": 1}),
        ]
        assert store.apply(KEY, incoming, 0, 1).applied == 2
        assert store.apply(KEY, incoming, 0, 1).applied == 0
        held = {record_id: t.record.payload for record_id, t in _transactions(store).items()}
        assert held == {"same": {"b": 2, "a": 1.0}, "changed": {"paid": True}, "nan": {"amount": 1}}
    with sqlite3.connect(path) as connection:
        [(version,)] = connection.execute(
            "SELECT value FROM incsync_meta WHERE name = 'schema_version'"
        )
        digests = dict(
            connection.execute("SELECT record_id, content_digest FROM incsync_transactions")
        )
    connection.close()
    assert version == str(SQLITE_SCHEMA_VERSION)
    assert digests["same"] == content_digest({"a": 1, "b": 2})
