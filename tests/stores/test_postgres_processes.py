"""Several real OS processes on one PostgreSQL schema: racing cycles, and a worker killed mid-cycle.

Memory is not shared between processes, so every worker rebuilds the same source from the
generated invoice sample (fixed end, fixed seed) and the parent checks the database against its
own copy of that source. Workers are started with the "spawn" method, so each is a fresh
interpreter with its own connection pool, as separate hosts would be.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import traceback
from datetime import datetime, timedelta, timezone
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Event
from typing import Any

import pytest

from incsync import Cursor, Outcome, Phase, SyncEngine, SyncPolicy
from incsync.connectors.memory import InMemoryConnector, InMemorySource
from incsync.connectors.sample import sample_source
from incsync.stores.postgres import PostgresStore
from incsync.timestamps import parse_timestamp, utc_now
from tests.stores.postgres_server import CONNINFO

pytestmark = pytest.mark.slow

END = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)
KEY = "acme/invoices"
SEED = 11
WAIT = 30.0  # seconds a worker may take to start, synchronise or finish before the test fails

_spawn = multiprocessing.get_context("spawn")


def _sync_worker(
    schema: str,
    count: int,
    page_size: int,
    page_delay: float,
    lease_ttl: float,
    barrier: Barrier | None,
    skipped: Event | None,
    results: Queue[Any],
) -> None:
    """Run one cycle of the sample source into ``schema``; report the result.

    Runs in a child process. With ``barrier``, the cycle starts once every worker is ready. With
    ``skipped``, a worker whose cycle was skipped sets it, and a worker whose cycle runs waits for
    it (at most 5 s) before its first page, so the cycles are certain to overlap. The result (or
    the traceback of a failure) goes to ``results`` as ``(pid, outcome value, applied, fetched,
    lease token, error)``.
    """

    def wait_for_the_other(number: int) -> None:
        if skipped is not None and number == 0:
            skipped.wait(5)

    try:
        source = sample_source(count, end=END, seed=SEED)
        connector = InMemoryConnector(
            source, page_size=page_size, page_delay=page_delay, before_page=wait_for_the_other
        )
        with PostgresStore(CONNINFO, schema=schema, max_size=2) as store:
            engine = SyncEngine(store, policy=SyncPolicy(lease_ttl=timedelta(seconds=lease_ttl)))
            store.load(KEY)  # connect before the race, so both start it equally ready
            if barrier is not None:
                barrier.wait(WAIT)
            result = engine.run_cycle(KEY, connector)
            lease = store.load(KEY).lease
        if skipped is not None and result.outcome.skipped:
            skipped.set()
        token = None if lease is None else lease.token
        results.put(
            (os.getpid(), result.outcome.value, result.applied, result.fetched, token, None)
        )
    except BaseException:
        results.put((os.getpid(), None, 0, 0, None, traceback.format_exc()))
        raise


def start_worker(
    schema: str,
    results: Queue[Any],
    *,
    count: int,
    page_size: int,
    page_delay: float,
    lease_ttl: float = 600.0,
    barrier: Barrier | None = None,
    skipped: Event | None = None,
) -> SpawnProcess:
    process = _spawn.Process(
        target=_sync_worker,
        args=(schema, count, page_size, page_delay, lease_ttl, barrier, skipped, results),
        daemon=True,
    )
    process.start()
    return process


def keys_in_order(source: InMemorySource) -> list[Cursor]:
    return sorted(
        Cursor(parse_timestamp(raw["updated_at"]), record_id)
        for record_id, raw in source.snapshot().items()
    )


def assert_sink_equals_source(store: PostgresStore, source: InMemorySource) -> None:
    """Every source id is held once, at the source's latest version, and nothing else is."""
    truth = source.snapshot()
    held = {transaction.record.id: transaction.record for transaction in store.transactions(KEY)}
    assert store.count_transactions(KEY) == len(held)
    assert sorted(set(truth) - set(held)) == [], "records missing from the sink"
    assert sorted(set(held) - set(truth)) == [], "records in the sink the source never had"
    for record_id, raw in truth.items():
        record = held[record_id]
        assert record.updated_at == parse_timestamp(raw["updated_at"]), record_id
        assert dict(record.payload) == raw, record_id
        assert record.deleted is False, record_id


def test_two_processes_racing_for_a_source_run_one_cycle(postgres_store: PostgresStore) -> None:
    """Two processes start a cycle of the same source at the same moment on one schema.

    The cycles overlap (each page takes 50 ms, and the cycle that runs waits before its first page
    until the other has returned), so exactly one takes the lease (token 1) and COMPLETES,
    applying every record, while the other is SKIPPED_RUNNING having read nothing; were both to
    take the lease, both would wait in vain and then complete (failing the test). The schema
    then holds every record exactly once and the source is ACTIVE with its lease released.
    """
    count, page_size = 200, 20
    barrier, skipped = _spawn.Barrier(2), _spawn.Event()
    results: Queue[Any] = _spawn.Queue()
    workers = [
        start_worker(
            postgres_store.schema,
            results,
            count=count,
            page_size=page_size,
            page_delay=0.05,
            barrier=barrier,
            skipped=skipped,
        )
        for _ in range(2)
    ]
    reports = [results.get(timeout=WAIT) for _ in workers]
    for worker in workers:
        worker.join(WAIT)
        assert worker.exitcode == 0

    assert [report[5] for report in reports if report[5] is not None] == []
    by_outcome = {report[1]: report for report in reports}
    assert set(by_outcome) == {Outcome.COMPLETED.value, Outcome.SKIPPED_RUNNING.value}
    assert by_outcome[Outcome.COMPLETED.value][2:4] == (count, count)  # applied, fetched
    assert by_outcome[Outcome.SKIPPED_RUNNING.value][2:4] == (0, 0)

    source = sample_source(count, end=END, seed=SEED)
    store = postgres_store
    assert store.count_transactions(KEY) == count
    assert_sink_equals_source(store, source)
    state = store.load(KEY)
    assert state.phase is Phase.ACTIVE
    assert state.cursor == keys_in_order(source)[-1]
    assert state.lease is not None
    assert state.lease.token == 1  # one grant only
    assert state.lease.expires_at <= utc_now()
    completed_pid = by_outcome[Outcome.COMPLETED.value][0]
    assert f":{completed_pid}:" in state.lease.holder  # the winner's lease, by process id


def test_worker_killed_mid_cycle_blocks_until_lease_expires_then_next_cycle_resumes(
    postgres_store: PostgresStore,
) -> None:
    """A worker killed with SIGKILL after writing some pages leaves a consistent schema behind.

    The pages it committed are there with a checkpoint that matches them exactly (the cursor is
    the last key of the records held). While its 2-second lease is valid the parent's cycle is
    SKIPPED_RUNNING and changes nothing; once the lease has expired the parent takes it over with
    the next fencing token, resumes from the dead worker's checkpoint (reading fewer records than
    a full read and applying exactly the ones missing), COMPLETES, and the sink then equals the
    source.
    """
    count, page_size, lease_ttl = 300, 10, 2.0
    store = postgres_store
    source = sample_source(count, end=END, seed=SEED)
    keys = keys_in_order(source)
    results: Queue[Any] = _spawn.Queue()
    worker = start_worker(
        store.schema, results, count=count, page_size=page_size, page_delay=0.1, lease_ttl=lease_ttl
    )
    deadline = time.monotonic() + WAIT
    while store.count_transactions(KEY) < 3 * page_size:
        assert worker.is_alive(), "the worker ended before it could be killed"
        assert time.monotonic() < deadline, "the worker wrote no pages"
        time.sleep(0.005)
    assert worker.pid is not None
    os.kill(worker.pid, signal.SIGKILL)
    worker.join(WAIT)
    assert worker.exitcode == -signal.SIGKILL
    assert results.empty()  # it died before reporting

    held = store.count_transactions(KEY)
    dead = store.load(KEY)
    assert 3 * page_size <= held < count
    assert held % page_size == 0  # whole pages only
    assert {transaction.record.id for transaction in store.transactions(KEY)} == {
        key.record_id for key in keys[:held]
    }
    assert dead.cursor == keys[held - 1]  # the checkpoint matches the rows exactly
    assert dead.last_sync is None
    assert dead.lease is not None
    assert f":{worker.pid}:" in dead.lease.holder

    engine = SyncEngine(store, policy=SyncPolicy(lease_ttl=timedelta(seconds=lease_ttl)))
    assert dead.lease.expires_at > utc_now(), "the dead worker's lease expired too soon"
    blocked = engine.run_cycle(KEY, InMemoryConnector(source, page_size=page_size))
    assert blocked.outcome is Outcome.SKIPPED_RUNNING
    assert store.count_transactions(KEY) == held
    assert store.load(KEY).lease == dead.lease

    wait = (dead.lease.expires_at - utc_now()).total_seconds()
    time.sleep(max(wait, 0.0) + 0.05)
    resumed = engine.run_cycle(KEY, InMemoryConnector(source, page_size=page_size))

    assert resumed.outcome is Outcome.COMPLETED
    assert resumed.cursor_before == dead.cursor
    assert resumed.fetched < count
    assert resumed.applied == count - held
    assert resumed.fetched == resumed.applied + resumed.already_applied
    state = store.load(KEY)
    assert state.phase is Phase.ACTIVE
    assert state.cursor == keys[-1]
    assert state.lease is not None
    assert state.lease.token == dead.lease.token + 1
    assert_sink_equals_source(store, source)
