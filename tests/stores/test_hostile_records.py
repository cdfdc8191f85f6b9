"""A hostile record is set aside with its reason by every store, and the rest of its page goes on.

Broken text (a lone surrogate, as broken UTF-16 leaves), a payload nested deeper than
``MAX_PAYLOAD_DEPTH``, NaN and infinities, and a payload that fails when read are each refused by
one rule, so every store gives the same outcome; and a page a store cannot finish (an interrupt
while it is written) leaves nothing of itself behind.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from incsync import (
    ApplyResult,
    Checkpoint,
    Cursor,
    Lease,
    Outcome,
    Record,
    RejectedRecord,
    SQLiteStore,
    SyncEngine,
    SyncPolicy,
    TransientSourceError,
    Window,
)
from incsync.connectors import InMemoryConnector, InMemorySource
from incsync.connectors.base import RawPage
from incsync.connectors.memory import iso_timestamp
from incsync.content import MAX_PAYLOAD_DEPTH
from incsync.testing import ManualClock
from tests.helpers import Store, transactions_by_id

NOW = datetime(2026, 11, 13, 9, 0, tzinfo=timezone.utc)
TTL = timedelta(minutes=10)
KEY = "acme/hostile"
SURROGATE = "lone surrogate"
TOO_DEEP = f"nested too deeply (deeper than {MAX_PAYLOAD_DEPTH} levels)"
NOT_A_NUMBER = "NaN or an infinity"


def _record(record_id: str, second: int = 0, payload: Mapping[str, Any] | None = None) -> Record:
    return Record(record_id, NOW + timedelta(seconds=second), payload or {"id": record_id})


def _nested(levels: int) -> dict[str, Any]:
    """A payload of exactly ``levels`` levels: ``{}`` is one, ``{"a": {}}`` two."""
    payload: dict[str, Any] = {}
    for _ in range(levels - 1):
        payload = {"a": payload}
    return payload


def _deep_array(levels: int) -> Any:
    """What ``json.loads`` gives for ``levels`` nested arrays."""
    return json.loads("[" * levels + "]" * levels)


def _lease(store: Store) -> Lease:
    lease = store.acquire_lease(KEY, "worker", NOW, TTL)
    assert lease is not None
    return lease


def _apply(store: Store, page: list[Record]) -> ApplyResult:
    """Apply ``page`` as a worker holding the source's lease does."""
    lease = _lease(store)
    try:
        return store.apply(KEY, page, 0, lease.token)
    finally:
        store.release_lease(KEY, lease)


def _set_aside_once(store: Store, page: list[Record]) -> dict[str, str]:
    """Apply ``page`` and commit it with a checkpoint; return the reasons of what was set aside.

    Both write paths must set the same records aside and write the rest; the entries kept are
    those of the last sighting.
    """
    lease = _lease(store)
    applied = store.apply(KEY, page, 0, lease.token)
    committed, _ = store.commit_page(KEY, page, lease, 0, Checkpoint(cursor=None), NOW, TTL)
    store.release_lease(KEY, lease)
    reasons = {item.record_id or "": item.reason for item in applied.rejected}
    assert {item.record_id or "": item.reason for item in committed.rejected} == reasons
    assert {item.record_id or "": item.reason for item in store.list_rejected(KEY)} == reasons
    assert committed.applied == 0, "the page was written by apply already"
    assert applied.applied == len(page) - len(reasons)
    return reasons


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"note": "\ud800"}, id="high-surrogate-value"),
        pytest.param({"note": "ok\udfff"}, id="low-surrogate-value"),
        pytest.param({"note": "\udc00\ud800"}, id="pair-in-the-wrong-order"),
        pytest.param({"\udc00": 1}, id="surrogate-key"),
        pytest.param({"lines": [{"text": "\ud83d"}]}, id="nested-surrogate"),
    ],
)
def test_payload_text_that_is_not_unicode_is_set_aside_by_every_store(
    store: Store, payload: dict[str, Any]
) -> None:
    """Text with a lone surrogate has no UTF-8 form and PostgreSQL refuses it, so every store
    sets its record aside; text with whole surrogate pairs (emoji) and the six characters
    backslash-u-d-8-0-0 are stored as they came.
    """
    good = {"name": "Zoë 🧾", "note": "\\ud800 is an escape"}
    reasons = _set_aside_once(store, [_record("good", 0, good), _record("bad", 1, payload)])
    assert SURROGATE in reasons["bad"]
    assert set(reasons) == {"bad"}
    assert {key: t.record.payload for key, t in transactions_by_id(store, KEY).items()} == {
        "good": good
    }


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(_nested(MAX_PAYLOAD_DEPTH + 1), id="one-level-too-deep"),
        pytest.param({"tree": _deep_array(MAX_PAYLOAD_DEPTH)}, id="array-under-the-payload"),
        pytest.param({"tree": _deep_array(900)}, id="as-deep-as-json-loads-reads"),
        pytest.param(_nested(100_000), id="deeper-than-python-can-write"),
        pytest.param({"tree": (((((),),),),) * 3, "more": _nested(MAX_PAYLOAD_DEPTH)}, id="mixed"),
    ],
)
def test_a_payload_nested_deeper_than_the_limit_is_set_aside_by_every_store(
    store: Store, payload: dict[str, Any]
) -> None:
    """Every store refuses a payload deeper than MAX_PAYLOAD_DEPTH levels with that reason, and
    keeps one exactly that deep: the depth is checked before anything walks the payload.
    """
    at_limit = _nested(MAX_PAYLOAD_DEPTH)
    reasons = _set_aside_once(store, [_record("deep", 0, payload), _record("ok", 1, at_limit)])
    assert reasons == {"deep": f"payload is {TOO_DEEP}"}
    assert transactions_by_id(store, KEY)["ok"].record.payload == at_limit


def test_a_deep_payload_read_again_at_the_same_time_is_set_aside_again(store: Store) -> None:
    """Reading the deep version again at the same updated_at (where the stores compare contents)
    sets it aside again instead of failing in the comparison.
    """
    deep = _record("r", 0, {"tree": _deep_array(900)})
    for _ in range(3):
        result = _apply(store, [_record("r", 0), deep])
        assert [item.reason for item in result.rejected] == [f"payload is {TOO_DEEP}"]
    assert [t.record.payload for t in store.transactions(KEY)] == [{"id": "r"}]


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"amount": float("nan")}, id="nan"),
        pytest.param({"amount": float("inf")}, id="infinity"),
        pytest.param({"lines": [{"amount": -float("inf")}]}, id="nested-minus-infinity"),
        pytest.param({"amounts": (1.0, float("nan"))}, id="in-a-tuple"),
    ],
)
def test_nan_and_infinities_are_set_aside_with_one_reason_by_every_store(
    store: Store, payload: dict[str, Any]
) -> None:
    """JSON has no NaN and no infinity: every store sets the record aside with that reason, each
    time it is read (never applied, never re-applied), and writes nothing JSON cannot read.
    """
    page = [_record("good", 0, {"amount": 1.5}), _record("bad", 0, payload)]
    reason = f"payload holds {NOT_A_NUMBER}, which JSON cannot represent"
    assert _set_aside_once(store, page) == {"bad": reason}
    again = _apply(store, page)
    assert (again.applied, [(item.record_id, item.reason) for item in again.rejected]) == (
        0,
        [("bad", reason)],
    )
    assert list(transactions_by_id(store, KEY)) == ["good"]
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as connection:
            valid = connection.execute(
                "SELECT json_valid(payload) FROM incsync_transactions"
            ).fetchall()
        assert valid == [(1,)]


class _Failing(Mapping[str, Any]):
    """A payload that raises ``error`` when it is read (a lazy mapping over a broken source)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __getitem__(self, key: str) -> Any:
        raise self.error

    def __iter__(self) -> Iterator[str]:
        raise self.error

    def __len__(self) -> int:
        return 1


def test_a_payload_that_fails_when_read_is_set_aside_by_every_store(store: Store) -> None:
    """An exception while reading one record's payload sets that record aside with the error."""
    failing = _record("failing", 0, _Failing(RuntimeError("connection reset")))
    reasons = _set_aside_once(store, [_record("before"), failing, _record("after")])
    assert reasons == {
        "failing": "payload could not be read (RuntimeError: connection reset)",
    }
    assert list(transactions_by_id(store, KEY)) == ["after", "before"]


class _Interrupted(BaseException):
    """Stands for what no store may catch: KeyboardInterrupt, a worker's hard time limit."""


def _snapshot(store: Store) -> tuple[object, ...]:
    return (
        transactions_by_id(store, KEY),
        store.load(KEY),
        store.list_rejected(KEY),
        store.list_states(),
    )


def test_a_page_interrupted_while_written_leaves_the_store_as_it_was(store: Store) -> None:
    """A page whose third record raises while it is applied writes nothing: no row (not even the
    two before it), no checkpoint, no set-aside record, in apply and in commit_page alike.
    """
    lease = _lease(store)
    earlier = Checkpoint(
        cursor=Cursor(NOW, "a"), rejected=[RejectedRecord("x", "bad time", "{'id': 'x'}")]
    )
    store.commit_page(KEY, [_record("a", 0, {"v": 1})], lease, 0, earlier, NOW, TTL)
    before = _snapshot(store)

    page = [
        _record("a", 5, {"v": 2}),  # a newer version of a stored record
        _record("b", 1),
        _record("interrupted", 2, _Failing(_Interrupted())),
        _record("c", 3),
        _record("nan", 4, {"amount": float("nan")}),
    ]
    later = Checkpoint(
        cursor=Cursor(NOW + timedelta(seconds=5), "c"),
        rejected=[RejectedRecord("y", "no id", "{}")],
    )
    with pytest.raises(_Interrupted):
        store.commit_page(KEY, page, lease, 0, later, NOW, TTL)
    assert _snapshot(store) == before
    with pytest.raises(_Interrupted):
        store.apply(KEY, page, 0, lease.token)
    assert _snapshot(store) == before

    # The store is not left half-locked: the same page without the interrupt commits.
    del page[2]
    result, state = store.commit_page(KEY, page, lease, 0, later, NOW, TTL)
    assert (result.applied, [item.record_id for item in result.rejected]) == (3, ["nan"])
    assert state.cursor == later.cursor
    assert sorted(transactions_by_id(store, KEY)) == ["a", "b", "c"]


# -- the engine: a hostile row among good ones ------------------------------------------------

GOOD_ROWS = 6
HOSTILE_AT = NOW - timedelta(minutes=10)  # the newest row, so a cursor would land on it


class _WithHostileRow(InMemoryConnector):
    """Reads the source with one hostile row in the middle of its first page, on every read."""

    def __init__(self, source: InMemorySource, hostile: dict[str, Any]) -> None:
        super().__init__(source, page_size=GOOD_ROWS, lookback=timedelta(days=1))
        self.hostile = hostile

    def fetch(self, window: Window) -> Iterator[RawPage]:
        for number, page in enumerate(super().fetch(window)):
            yield [*page[:3], self.hostile, *page[3:]] if number == 0 else page


def _hostile(record_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": record_id, "updated_at": iso_timestamp(HOSTILE_AT), **fields}


@pytest.mark.parametrize(
    ("hostile", "record_id", "reason", "last_read"),
    [
        pytest.param(_hostile("A\ud800"), "A\\ud800", SURROGATE, "r5", id="surrogate-id"),
        pytest.param(
            _hostile("B\udfff", updated_at="yesterday"),
            "B\\udfff",
            "ISO 8601",
            "r5",
            id="surrogate-id-and-bad-time",
        ),
        pytest.param(_hostile("text", note="\ud800"), "text", SURROGATE, "text", id="surrogate"),
        pytest.param(_hostile("deep", tree=_deep_array(900)), "deep", TOO_DEEP, "deep", id="deep"),
        pytest.param(_hostile("nan", amount=float("nan")), "nan", NOT_A_NUMBER, "nan", id="nan"),
        pytest.param(_hostile("inf", amount=-float("inf")), "inf", NOT_A_NUMBER, "inf", id="inf"),
    ],
)
def test_a_hostile_row_among_good_ones_is_set_aside_and_every_cycle_completes(
    store: Store, hostile: dict[str, Any], record_id: str | None, reason: str, last_read: str
) -> None:
    """The good rows of the page are applied, the hostile one is set aside once with its reason,
    and the cycle completes on every store; the next cycle reads it again and completes too.

    A row no record can be made of does not move the cursor; a record the store sets aside was
    read, and the cursor passes it as it passes the records applied.
    """
    source = InMemorySource()
    for number in range(GOOD_ROWS):
        at = HOSTILE_AT - timedelta(seconds=GOOD_ROWS - number)
        source.put({"id": f"r{number}", "updated_at": iso_timestamp(at), "amount": number})
    clock = ManualClock(NOW)
    engine = SyncEngine(store, policy=SyncPolicy(safety_lag=timedelta(minutes=5)), clock=clock)
    last_read_at = HOSTILE_AT if last_read == hostile["id"] else HOSTILE_AT - timedelta(seconds=1)

    for _ in range(2):
        result = engine.run_cycle(KEY, _WithHostileRow(source, hostile))
        assert (result.outcome, result.error, result.rejected) == (Outcome.COMPLETED, None, 1)
        [rejected] = engine.rejected(KEY)
        assert (rejected.record_id, reason in rejected.reason) == (record_id, True)
        assert len(rejected.raw) <= 2_001
        assert sorted(transactions_by_id(store, KEY)) == [f"r{n}" for n in range(GOOD_ROWS)]
        assert engine.state(KEY).cursor == Cursor(last_read_at, last_read)
        clock.advance(timedelta(minutes=1))
    assert result.applied == 0


class _FailingWithBrokenText(InMemoryConnector):
    """Fails every read with an error quoting a vendor's broken UTF-16."""

    def fetch(self, window: Window) -> Iterator[RawPage]:
        raise TransientSourceError("the vendor answered 'Zo\ud800' with a 503")


def test_an_error_message_holding_a_lone_surrogate_is_recorded_by_every_store(
    store: Store,
) -> None:
    """The failed cycle is recorded like any other; the broken text is kept escaped where the
    store cannot encode it.
    """
    engine = SyncEngine(store, clock=ManualClock(NOW))
    result = engine.run_cycle(KEY, _FailingWithBrokenText(InMemorySource()))
    assert result.outcome is Outcome.FAILED
    error = engine.state(KEY).last_error
    assert error is not None
    assert error.message.startswith("the vendor answered 'Zo")
    assert engine.state(KEY).consecutive_failures == 1
