"""The Redis semaphore behind the per-account limit, against a real Redis server.

Needs Redis on 127.0.0.1:6379 (database 12 is flushed, no other); without it the tests skip,
except under CI, where they fail.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import NoReturn

import pytest
import redis

from incsync.errors import ConfigurationError, StoreError
from incsync.integrations._account_slots import AccountSlot, AccountSlots

URL = "redis://127.0.0.1:6379/12"
SECOND = timedelta(seconds=1)


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the Redis tests, so they may not skip")
    pytest.skip(reason)


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    """A client on the tests' own Redis database, empty before and after."""
    connection = redis.Redis.from_url(URL, socket_connect_timeout=3)
    try:
        connection.ping()
    except redis.RedisError as error:
        _unavailable(f"Redis at {URL} is unreachable: {error}")
    connection.flushdb()
    yield connection
    connection.flushdb()
    connection.close()


def test_an_account_never_has_more_slots_than_its_limit(client: redis.Redis) -> None:
    """Two slots of a limit of two are taken; a third is refused until one is released; other
    accounts are counted apart."""
    slots = AccountSlots(client, 2)
    first, second = slots.acquire("acme", SECOND * 30), slots.acquire("acme", SECOND * 30)
    assert first is not None
    assert second is not None
    assert first != second
    assert slots.acquire("acme", SECOND * 30) is None
    assert slots.acquire("globex", SECOND * 30) is not None
    slots.release(first)
    assert slots.acquire("acme", SECOND * 30) is not None
    assert slots.held("acme") == 2


def test_a_slot_its_holder_stopped_renewing_expires(client: redis.Redis) -> None:
    """A killed worker's slot frees itself after its ttl; a renewed one does not expire."""
    slots = AccountSlots(client, 1)
    kept = slots.acquire("acme", timedelta(milliseconds=300))
    assert kept is not None
    time.sleep(0.15)
    assert slots.renew(kept, timedelta(milliseconds=600))
    time.sleep(0.3)
    assert slots.acquire("acme", SECOND) is None, "the renewed slot expired at its first ttl"
    time.sleep(0.4)
    assert not slots.renew(kept, SECOND), "an expired slot was renewed"
    assert slots.acquire("acme", SECOND) is not None


def test_many_threads_racing_for_slots_never_exceed_the_limit(client: redis.Redis) -> None:
    """Twenty threads each taking and releasing a slot 20 times: never more than three held."""
    slots = AccountSlots(client, 3)
    held: list[AccountSlot] = []
    peak = [0]
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(20):
            slot = slots.acquire("acme", SECOND * 10)
            if slot is None:
                continue
            with lock:
                held.append(slot)
                peak[0] = max(peak[0], len(held))
            time.sleep(0.001)
            with lock:
                held.remove(slot)
            slots.release(slot)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 1 <= peak[0] <= 3
    assert slots.held("acme") == 0


def test_bad_limits_and_an_unreachable_redis_are_incsync_errors() -> None:
    """A limit below one is a ConfigurationError; Redis down is a StoreError naming what failed."""
    unreachable = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    with pytest.raises(ConfigurationError, match="per-account limit"):
        AccountSlots(unreachable, 0)
    with pytest.raises(StoreError, match="Redis failed to take an account slot"):
        AccountSlots(unreachable, 1).acquire("acme", SECOND)
