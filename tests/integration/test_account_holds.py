"""Throttle waits shared in Redis by every worker of an account, against a real Redis server.

Needs Redis on 127.0.0.1:6379 (database 12; the keys are this test's own, under a prefix of its
own, and expire by themselves); without it the tests skip, except under CI, where they fail.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import httpx
import pytest
import redis
from celery import Celery
from redis.backoff import NoBackoff
from redis.retry import Retry

from incsync.connectors.retry import RetryPolicy
from incsync.integrations._account_holds import RedisAccountHolds
from incsync.integrations.celery import CeleryDeployment, install
from incsync.testing import InMemoryStore
from incsync.testing.fakes import FakeQuickBooks, RunningClock
from incsync.vendors.quickbooks import QuickBooksConnector
from tests.connectors.test_quickbooks import connect
from tests.integration.test_account_slots import URL, _unavailable


def _client() -> redis.Redis:
    connection = redis.Redis.from_url(URL, socket_connect_timeout=3)
    try:
        connection.ping()
    except redis.RedisError as error:
        _unavailable(f"Redis at {URL} is unreachable: {error}")
    return connection


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    name = f"incsync-test-holds-{uuid.uuid4().hex}"
    yield name
    client = _client()
    for key in client.scan_iter(f"{name}:*"):
        client.delete(key)
    client.close()


def test_a_hold_is_never_shortened_and_ends_by_itself(prefix: str) -> None:
    """A longer hold replaces a shorter one, a shorter one leaves the longer; accounts are held
    apart, and a hold is gone once its wait is over."""
    holds = RedisAccountHolds(_client(), prefix=prefix)
    assert holds.remaining("acme") == timedelta(0)
    holds.hold("acme", timedelta(milliseconds=300))
    holds.hold("acme", timedelta(seconds=5))
    holds.hold("acme", timedelta(milliseconds=300))
    assert timedelta(seconds=4) < holds.remaining("acme") <= timedelta(seconds=5)
    assert holds.remaining("globex") == timedelta(0)
    holds.hold("globex", timedelta(milliseconds=150))
    time.sleep(0.3)
    assert holds.remaining("globex") == timedelta(0)


def test_holds_racing_from_many_clients_keep_the_longest(prefix: str) -> None:
    """Twenty clients hold one account at once with waits from 1 to 20 s: the 20 s one stays."""
    waits = [timedelta(seconds=n) for n in range(1, 21)]
    barrier = threading.Barrier(len(waits))

    def hold(wait: timedelta) -> None:
        holds = RedisAccountHolds(_client(), prefix=prefix)
        barrier.wait()
        holds.hold("acme", wait)

    threads = [threading.Thread(target=hold, args=(wait,)) for wait in reversed(waits)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    remaining = RedisAccountHolds(_client(), prefix=prefix).remaining("acme")
    assert timedelta(seconds=19) < remaining <= timedelta(seconds=20)


def test_an_unreachable_redis_leaves_connectors_to_go_on_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without Redis nothing is held, nothing is raised, and each miss is logged."""
    unreachable = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    holds = RedisAccountHolds(unreachable)
    with caplog.at_level(logging.WARNING, logger="incsync"):
        holds.hold("acme", timedelta(seconds=5))
        assert holds.remaining("acme") == timedelta(0)
    assert len([r for r in caplog.records if "acme" in r.getMessage()]) == 2


def _connector(
    fake: FakeQuickBooks, base_url: str, entity: str, sleep: Callable[[float], None]
) -> QuickBooksConnector:
    """A connector of its own (its own client, gate and retries) to one entity of the company;
    a throttle answer without Retry-After asks it to wait exactly 1 s."""
    retry = RetryPolicy(base_delay=1.0, jitter=0.0)
    return connect(fake, base_url, entity=entity, retry=retry, sleep=sleep)


def test_a_throttle_answer_to_one_worker_holds_back_another_of_the_same_company(
    prefix: str,
) -> None:
    """Two connectors of one company, each with its own gate and its own Redis client, share
    only the holds: once QuickBooks refused one (Fault 3001, no Retry-After: a 1 s wait), the
    other's first request reaches QuickBooks only after that wait, and is answered."""
    fake = FakeQuickBooks(clock=RunningClock(), requests_per_minute=100_000)
    arrivals: list[tuple[float, str]] = []

    def note_arrival(request: httpx.Request) -> httpx.Response | None:
        if "/query" in request.url.path:
            arrivals.append((time.monotonic(), request.url.params.get("query", "")))
        return None

    fake.add_fault(note_arrival)
    fake.throttle_next(1)
    account = fake.realm_id
    with fake.serve() as base_url:
        invoices = _connector(fake, base_url, "Invoice", time.sleep)
        payments = _connector(fake, base_url, "Payment", time.sleep)
        invoice_holds = RedisAccountHolds(_client(), prefix=prefix)
        invoices.share_throttle(invoice_holds, account)
        payments.share_throttle(RedisAccountHolds(_client(), prefix=prefix), account)
        counted: list[int] = []
        first = threading.Thread(target=lambda: counted.append(invoices.count_live()))
        first.start()
        deadline = time.monotonic() + 10
        while invoice_holds.remaining(account) == timedelta(0):
            assert time.monotonic() < deadline, "the throttle answer never held the company"
            time.sleep(0.005)
        assert payments.count_live() == 0
        first.join()
        invoices.close()
        payments.close()
    assert counted == [0]
    throttled_at = arrivals[0][0]
    assert [r.status for r in fake.requests if "/query" in r.url] == [429, 200, 200]
    payment_at = next(at for at, query in arrivals if "Payment" in query)
    assert payment_at - throttled_at >= 0.99


def test_the_connectors_a_celery_deployment_builds_wait_out_their_account_s_holds(
    prefix: str,
) -> None:
    """A cycle of one QuickBooks source is throttled (a 1 s wait) and ends; the next cycle of
    another source of the same company, built by the deployment too, first waits out what is left
    of that second before its first request. Waits are recorded, not spent (so the time the
    first cycle's other requests were asked to wait never passes either)."""
    fake = FakeQuickBooks(clock=RunningClock(), requests_per_minute=100_000)
    fake.throttle_next(1)
    sleeps: dict[str, list[float]] = {"invoices": [], "payments": []}
    entities = {"invoices": "Invoice", "payments": "Payment"}
    with fake.serve() as base_url:

        def connector(source_key: str) -> QuickBooksConnector:
            return _connector(fake, base_url, entities[source_key], sleeps[source_key].append)

        deployment = CeleryDeployment(
            store=InMemoryStore,
            plans=list,
            connector=connector,
            redis_url=URL,
            key_prefix=prefix,
        )
        tasks = install(Celery("incsync-holds-test", broker="memory://"), lambda: deployment)
        first = tasks.run_source("invoices", fake.realm_id)
        second = tasks.run_source("payments", fake.realm_id)
    assert first["outcome"] == second["outcome"] == "completed"
    assert sleeps["invoices"][0] == 1.0  # the throttled request's retry
    assert sleeps["payments"], "the second cycle never waited for the company's hold"
    assert 0.5 < sleeps["payments"][0] <= 1.0
