"""Every built-in store refuses an empty source key and a naive "now", and writes nothing then."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from incsync import (
    Checkpoint,
    ConfigurationError,
    ErrorInfo,
    NaiveDatetimeError,
    Outcome,
    Record,
)
from incsync.state import Lease
from tests.helpers import Store, entry_of

NOW = datetime(2026, 11, 13, 9, 41, 7, tzinfo=timezone.utc)
NAIVE = NOW.replace(tzinfo=None)
TTL = timedelta(minutes=10)
KEY = "acme/invoices"
LEASE = Lease(holder="one", expires_at=NOW + TTL, token=1)
RECORD = Record(id="r1", updated_at=NOW, payload={"amount": 1})
FAILURE = ErrorInfo(error_class="TransientSourceError", message="down", at=NOW)

STORE_CALLS: dict[str, Callable[[Store, str], object]] = {
    "load": lambda store, key: store.load(key),
    "list_rejected": lambda store, key: store.list_rejected(key),
    "apply": lambda store, key: store.apply(key, [RECORD], 0, LEASE.token),
    "commit_page": lambda store, key: store.commit_page(
        key, [RECORD], LEASE, 0, Checkpoint(cursor=None), NOW, TTL
    ),
    "acquire_lease": lambda store, key: store.acquire_lease(key, "one", NOW, TTL),
    "renew_lease": lambda store, key: store.renew_lease(key, LEASE, NOW, TTL),
    "release_lease": lambda store, key: store.release_lease(key, LEASE),
    "save_checkpoint": lambda store, key: store.save_checkpoint(
        key, LEASE, 0, Checkpoint(cursor=None), NOW, TTL
    ),
    "complete_cycle": lambda store, key: store.complete_cycle(
        key, LEASE, 0, Checkpoint(cursor=None), NOW, 0, entry_of("acme", NOW)
    ),
    "fail_cycle": lambda store, key: store.fail_cycle(
        key, LEASE, 0, FAILURE, 5, None, entry_of("acme", NOW, Outcome.FAILED)
    ),
    "interrupt_cycle": lambda store, key: store.interrupt_cycle(
        key, LEASE, entry_of("acme", NOW, Outcome.INTERRUPTED_STOP)
    ),
    "history": lambda store, key: store.history(key),
    "reset": lambda store, key: store.reset(key),
    "cancel": lambda store, key: store.cancel(key),
    "resume": lambda store, key: store.resume(key),
}


@pytest.mark.parametrize("call", sorted(STORE_CALLS))
def test_an_empty_source_key_is_refused_and_nothing_is_written(store: Store, call: str) -> None:
    """The stores ask the same source-key rule as the engine and the scheduler."""
    with pytest.raises(ConfigurationError, match=r"^source_key must be a non-empty string"):
        STORE_CALLS[call](store, "")

    assert store.list_states() == []
    assert store.count_transactions("") == 0


NOW_CALLS: dict[str, Callable[[Store, Lease, datetime], object]] = {
    "acquire_lease": lambda store, _lease, now: store.acquire_lease(KEY, "two", now, TTL),
    "renew_lease": lambda store, lease, now: store.renew_lease(KEY, lease, now, TTL),
    "save_checkpoint": lambda store, lease, now: store.save_checkpoint(
        KEY, lease, 0, Checkpoint(cursor=None), now, TTL
    ),
    "commit_page": lambda store, lease, now: store.commit_page(
        KEY, [RECORD], lease, 0, Checkpoint(cursor=None), now, TTL
    ),
    "complete_cycle": lambda store, lease, now: store.complete_cycle(
        KEY, lease, 0, Checkpoint(cursor=None), now, 0, entry_of(KEY, NOW)
    ),
}


@pytest.mark.parametrize("call", sorted(NOW_CALLS))
def test_a_naive_now_is_refused_by_its_name_and_changes_nothing(store: Store, call: str) -> None:
    """Every store method taking "now" refuses a naive one as "now"; the lease stays as it was."""
    lease = store.acquire_lease(KEY, "one", NOW, TTL)
    assert lease is not None
    before = store.load(KEY)

    with pytest.raises(NaiveDatetimeError) as refused:
        NOW_CALLS[call](store, lease, NAIVE)

    assert refused.value.field == "now"
    assert store.load(KEY) == before
    assert store.count_transactions(KEY) == 0
