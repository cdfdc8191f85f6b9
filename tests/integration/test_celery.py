"""incsync's Celery tasks in real worker processes, over Redis, with state in PostgreSQL.

Two ``celery worker`` processes (and a replacement for the one killed) sync 200 sources: ten fake
HubSpot portals (accounts) of twenty object types each, served over loopback from this process.
The test plays Celery beat, sending the fan-out task every second, and changes the portals between
rounds. It checks, from outside the workers:

* every source completes a cycle in every round;
* no two cycles of one source ever overlap, and no account runs more cycles at once than its
  limit, from a log of lease grants, renewals and ends that each worker appends to;
* a worker killed with SIGKILL in the middle of a cycle blocks its source only until the lease
  expires: another worker syncs it later;
* at the end every source's transactions equal its portal's ground truth, tombstones included.

Needs Redis on 127.0.0.1:6379 (database 11 is flushed, no other) and PostgreSQL (see
``tests/stores/postgres_server.py``); without them the test skips, except under CI, where it fails.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NoReturn

import attrs
import httpx
import pytest
import redis

from incsync.connectors import InMemoryConnector
from incsync.errors import ConfigurationError
from incsync.results import Outcome
from incsync.stores.postgres import PostgresStore
from incsync.testing import ManualClock
from incsync.testing.fakes import FakeHubSpot, FakeVendor, HubSpotLimits
from tests.stores.postgres_server import fresh_schema, require_server

ROOT = Path(__file__).resolve().parents[2]
CELERY = Path(sys.executable).with_name("celery")
REDIS_DB = 11
BROKER = f"redis://127.0.0.1:6379/{REDIS_DB}"
ACCOUNTS = [f"acct-{n:02}" for n in range(10)]
OBJECT_TYPES = [f"t{n:02}" for n in range(20)]
VICTIM = "acct-00/t00"
PER_ACCOUNT_LIMIT = 2
LEASE_TTL = 8.0
T0 = datetime(2024, 9, 13, 20, 30, tzinfo=timezone.utc)
UNLIMITED = HubSpotLimits(search_per_second=None, per_ten_seconds=None, daily=None)


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the Celery test, so it may not skip")
    pytest.skip(reason)


def require_redis() -> redis.Redis:
    """Return a client on the test's own Redis database, emptied; skip without Redis."""
    client = redis.Redis.from_url(BROKER, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as error:
        _unavailable(f"Redis at {BROKER} is unreachable: {error}")
    client.flushdb()  # database 11 only: the broker queues and incsync-test keys of this test
    return client


class PortalRouter(FakeVendor):
    """Routes ``/<account>/...`` to that account's own FakeHubSpot; can slow one source down.

    Each portal is its own consistent backend (with its own lock), so the router holds no lock of
    its own: requests to different portals are served in parallel, as by the real HubSpot.
    """

    def __init__(self, portals: dict[str, FakeHubSpot]) -> None:
        super().__init__()
        self.portals = portals
        self.slow: dict[str, float] = {}

    def dispatch(self, request: httpx.Request) -> httpx.Response:
        """Wait if the source is slowed down, then let its portal answer (and record)."""
        _, account, rest = request.url.path.split("/", 2)
        portal = self.portals.get(account)
        if portal is None:
            return httpx.Response(404, json={"message": f"no portal {account}"})
        parts = rest.split("/")
        if len(parts) > 3 and parts[:3] == ["crm", "v3", "objects"]:
            delay = self.slow.get(f"{account}/{parts[3]}", 0.0)
            if delay:
                time.sleep(delay)
        inner = httpx.Request(
            request.method,
            request.url.copy_with(path="/" + rest),
            headers=request.headers,
            content=request.content,
        )
        return portal.dispatch(inner)

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer as the addressed portal would."""
        return self.dispatch(request)


def portals() -> dict[str, FakeHubSpot]:
    """Ten portals sharing one clock; each object type holds 12 to 40 objects, the victim 450."""
    clock = ManualClock(T0)
    made: dict[str, FakeHubSpot] = {}
    for number, account in enumerate(ACCOUNTS):
        portal = FakeHubSpot(clock=clock, index_lag=timedelta(0), limits=UNLIMITED, seed=number)
        for index, object_type in enumerate(OBJECT_TYPES):
            count = 450 if f"{account}/{object_type}" == VICTIM else 12 + (index * 7 + number) % 29
            stamps = [T0 - timedelta(minutes=3 * n) for n in range(count)]
            portal.load(object_type, stamps, {"dealname": f"{account} {object_type}"})
        made[account] = portal
    return made


def change_portals(made: dict[str, FakeHubSpot], round_number: int) -> None:
    """In every source: update one object, create one, and archive one in every third type."""
    clock = made[ACCOUNTS[0]].clock
    clock.advance(timedelta(minutes=10))
    for portal in made.values():
        for index, object_type in enumerate(OBJECT_TYPES):
            ids = sorted(portal.ground_truth(object_type), key=int)
            portal.update(object_type, ids[round_number], {"amount": str(100 * round_number)})
            portal.create(object_type, {"dealname": f"round {round_number}"})
            if (index + round_number) % 3 == 0:
                portal.archive(object_type, ids[-1])


@attrs.define
class Workers:
    """The worker processes this test started, by name."""

    config: Path
    logs: Path
    running: dict[str, subprocess.Popen[bytes]] = attrs.field(factory=dict)

    def start(self, name: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "INCSYNC_CELERY_TEST_CONFIG": str(self.config),
            "PYTHONPATH": str(ROOT),
        }
        with (self.logs / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                [
                    str(CELERY),
                    "-A",
                    "tests.integration.celery_app",
                    "worker",
                    "--pool=threads",
                    "--concurrency=4",
                    f"--hostname={name}@%h",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "--loglevel=INFO",
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.running[name] = process
        return process

    def wait_ready(self, app: Any, names: list[str], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            replies = app.control.ping(timeout=0.5)
            answered = {name.split("@")[0] for reply in replies for name in reply}
            if set(names) <= answered:
                return
        pytest.fail(f"workers {names} did not answer a ping in {timeout}s; see {self.logs}")

    def stop_all(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # warm shutdown: running tasks finish
        deadline = time.monotonic() + 20
        for process in self.running.values():
            while process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            if process.poll() is None:
                process.kill()
                process.wait()


class Beat:
    """Sends the fan-out task every ``period`` seconds, as Celery beat would, until stopped."""

    def __init__(self, task: Any, period: float = 2.0) -> None:
        self._task, self._period = task, period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="beat", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._task.apply_async()
            self._stop.wait(self._period)

    def __enter__(self) -> Beat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def started_since(store: PostgresStore, keys: set[str], since: datetime) -> set[str]:
    """Return the keys whose latest cycle in the history began after ``since`` and completed."""
    return {
        key
        for key in keys
        for entry in store.history(key, limit=1)
        if entry.started >= since and entry.outcome is Outcome.COMPLETED
    }


def wait_all_synced(store: PostgresStore, since: datetime, timeout: float) -> float:
    """Wait until every source completed a cycle begun after ``since``; return how long it took.

    A cycle that began before ``since`` may have read its portal before the change and still
    ended after it, so its ``last_sync`` proves nothing about the change: the history's start
    time does.
    """
    began = time.monotonic()
    waiting = {f"{a}/{t}" for a in ACCOUNTS for t in OBJECT_TYPES}
    while time.monotonic() - began < timeout:
        waiting -= started_since(store, waiting, since)
        if not waiting:
            return time.monotonic() - began
        time.sleep(1.0)
    waiting -= started_since(store, waiting, since)
    pytest.fail(f"after {timeout}s, {len(waiting)} sources not synced: {sorted(waiting)[:10]}")


def wait_idle(store: PostgresStore, timeout: float = 20.0) -> None:
    """Wait until no source holds a live lease (every cycle in flight has ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = datetime.now(timezone.utc)
        if not any(s.lease and s.lease.expires_at > now for s in store.list_states()):
            return
        time.sleep(0.2)
    pytest.fail(f"cycles still running after {timeout}s")


@attrs.define
class Cycle:
    """One lease grant in the log and what followed it."""

    key: str
    token: int
    pid: int
    start: float
    expires: float
    end: float | None = None


def read_cycles(path: Path) -> list[Cycle]:
    """Rebuild the cycles from the workers' lease log."""
    cycles: dict[tuple[str, int], Cycle] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        ident = (event["key"], event["token"])
        if event["event"] == "grant":
            assert ident not in cycles, f"lease token {ident} granted twice"
            cycles[ident] = Cycle(ident[0], ident[1], event["pid"], event["at"], event["expires"])
        elif event["event"] == "renew":
            cycles[ident].expires = max(cycles[ident].expires, event["expires"])
        elif cycles[ident].end is None:
            cycles[ident].end = event["at"]
    return list(cycles.values())


def assert_no_overlap_per_source(cycles: list[Cycle]) -> None:
    """Each cycle of a source starts after the previous one ended (or its lease expired)."""
    by_key: dict[str, list[Cycle]] = defaultdict(list)
    for cycle in cycles:
        by_key[cycle.key].append(cycle)
    for key, runs in by_key.items():
        runs.sort(key=lambda c: c.token)
        assert [c.start for c in runs] == sorted(c.start for c in runs), key
        for before, after in itertools.pairwise(runs):
            held_until = before.end if before.end is not None else before.expires
            assert after.start >= held_until, (key, before, after)


def peak_per_account(cycles: list[Cycle], killed_at: float) -> dict[str, int]:
    """The most cycles of one account running at once (a killed cycle ran until the kill)."""
    edges: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for cycle in cycles:
        account = cycle.key.split("/")[0]
        end = cycle.end if cycle.end is not None else killed_at
        edges[account] += [(cycle.start, 1), (end, -1)]
    peaks: dict[str, int] = {}
    for account, points in edges.items():
        running = peak = 0
        for _, step in sorted(points, key=lambda p: (p[0], p[1])):
            running += step
            peak = max(peak, running)
        peaks[account] = peak
    return peaks


def assert_sink_matches(store: PostgresStore, made: dict[str, FakeHubSpot]) -> None:
    """Every source holds each live object's latest properties once, and each archived one as a
    tombstone, nothing else."""
    for account, portal in made.items():
        for object_type in OBJECT_TYPES:
            key = f"{account}/{object_type}"
            held = {t.record.id: t.record for t in store.transactions(key)}
            truth, archived = portal.ground_truth(object_type), portal.archived(object_type)
            assert {i for i, r in held.items() if not r.deleted} == truth.keys(), key
            assert {i for i, r in held.items() if r.deleted} == archived.keys(), key
            for object_id, properties in truth.items():
                shown = held[object_id].payload["properties"]
                assert {k: v for k, v in shown.items() if v is not None} == properties, key


def first_grant(log: Path, key: str, after: float, timeout: float = 30.0) -> dict[str, Any]:
    """Wait for the first grant of ``key`` logged after ``after``; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(encoding="utf-8").splitlines():
            event: dict[str, Any] = json.loads(line)
            if event["event"] == "grant" and event["key"] == key and event["at"] >= after:
                return event
        time.sleep(0.05)
    pytest.fail(f"{key} was not started within {timeout}s")


@pytest.fixture
def services() -> Iterator[tuple[str, str]]:
    """Redis (its own database, flushed) and PostgreSQL (a fresh schema, dropped afterwards)."""
    client = require_redis()
    conninfo = require_server()
    with fresh_schema() as schema:
        yield conninfo, schema
    client.flushdb()
    client.close()


def test_importing_incsync_never_imports_celery() -> None:
    """Celery is an optional extra: only ``incsync.integrations.celery`` needs it."""
    code = "import sys, incsync, incsync.scheduling; assert 'celery' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_a_deployment_refuses_limits_below_one() -> None:
    """A per-account limit or queued ttl that would never run anything is refused up front."""
    from incsync.integrations.celery import CeleryDeployment

    def no_store() -> PostgresStore:
        raise AssertionError("never opened")

    def no_connector(_source_key: str) -> InMemoryConnector:
        raise AssertionError("never built")

    with pytest.raises(ConfigurationError, match="per_account_limit must be an integer >= 1"):
        CeleryDeployment(no_store, list, no_connector, BROKER, per_account_limit=0)
    with pytest.raises(ConfigurationError, match="queued_ttl must be a timedelta longer than zero"):
        CeleryDeployment(no_store, list, no_connector, BROKER, queued_ttl=timedelta(0))


@pytest.mark.slow
def test_celery_workers_sync_every_source_every_round_without_overlap(
    services: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three rounds of 200 sources on real workers; a worker is SIGKILLed mid-cycle in round two.

    Every source syncs every round, no source's cycles overlap, no account exceeds its limit, the
    killed cycle's source is synced later by another worker, and the sinks equal the portals."""
    conninfo, schema = services
    began = time.monotonic()
    lease_log = tmp_path / "leases.jsonl"
    made = portals()
    router = PortalRouter(made)
    with ExitStack() as stack:
        base_url = stack.enter_context(router.serve())
        store = stack.enter_context(PostgresStore(conninfo, schema=schema))
        store.migrate()
        config = tmp_path / "config.json"
        config.write_text(
            json.dumps(
                {
                    "broker": BROKER,
                    "store": {"kind": "postgres", "conninfo": conninfo, "schema": schema},
                    "base_url": base_url,
                    "tokens": {a: p.private_app_token for a, p in made.items()},
                    "object_types": OBJECT_TYPES,
                    "interval_seconds": 20,
                    "per_account_limit": PER_ACCOUNT_LIMIT,
                    "lease_ttl_seconds": LEASE_TTL,
                    "queued_ttl_seconds": 20,
                    "lease_log": str(lease_log),
                }
            ),
            encoding="utf-8",
        )
        monkeypatch.setenv("INCSYNC_CELERY_TEST_CONFIG", str(config))
        from tests.integration.celery_app import app, tasks

        workers = Workers(config, tmp_path)
        stack.callback(workers.stop_all)
        workers.start("w1")
        workers.start("w2")
        workers.wait_ready(app, ["w1", "w2"])
        ready = time.monotonic()
        timings: list[float] = []
        with Beat(tasks.enqueue_due):
            round_start = datetime.now(timezone.utc)
            timings.append(wait_all_synced(store, round_start, timeout=120))

            change_portals(made, 1)
            router.slow[VICTIM] = 0.5  # three search pages: the victim's cycle takes > 1.5 s
            round_start = datetime.now(timezone.utc)
            grant = first_grant(lease_log, VICTIM, round_start.timestamp())
            time.sleep(0.3)
            victim_worker = next(
                name for name, p in workers.running.items() if p.pid == grant["pid"]
            )
            os.kill(grant["pid"], signal.SIGKILL)
            killed_at = time.time()
            workers.running[victim_worker].wait()
            workers.start("w3")
            timings.append(wait_all_synced(store, round_start, timeout=120))

            router.slow.clear()
            change_portals(made, 2)
            round_start = datetime.now(timezone.utc)
            timings.append(wait_all_synced(store, round_start, timeout=120))
        synced = time.monotonic()
        wait_idle(store)
        workers.stop_all()
        stopped = time.monotonic()

        cycles = read_cycles(lease_log)
        assert_no_overlap_per_source(cycles)
        unfinished = [c for c in cycles if c.end is None]
        assert unfinished, "the kill did not interrupt any cycle"
        assert {c.pid for c in unfinished} == {grant["pid"]}
        victim = sorted((c for c in cycles if c.key == VICTIM), key=lambda c: c.token)
        killed = next(c for c in victim if c.token == grant["token"])
        assert killed.end is None
        later = [c for c in victim if c.token > killed.token and c.end is not None]
        assert later, "the killed cycle's source was never synced again"
        assert later[0].pid != grant["pid"]
        assert later[0].start >= killed.expires
        peaks = peak_per_account(cycles, killed_at)
        assert max(peaks.values()) <= PER_ACCOUNT_LIMIT, peaks
        assert len({c.pid for c in cycles}) >= 3
        assert_sink_matches(store, made)
        print(
            f"setup {ready - began:.1f}s, teardown {stopped - synced:.1f}s, "
            f"checks {time.monotonic() - stopped:.1f}s"
        )
        print(
            f"rounds took {[round(t, 1) for t in timings]} s; {len(cycles)} cycles; peaks {peaks}"
        )
