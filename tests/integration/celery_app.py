"""The host side of the Celery integration test: the app real worker processes run.

Started as ``celery -A tests.integration.celery_app worker``; everything it needs comes from the
JSON file named by ``INCSYNC_CELERY_TEST_CONFIG`` (written by the test): the broker, the store,
the fake vendor's URL and tokens, the plans. Its store is wrapped by :class:`LeaseLog`, which
appends every lease grant, renewal and end to a file, so the test can check from the outside that
no two cycles of one source ever overlapped.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from celery import Celery

from incsync.connectors.auth import BearerToken
from incsync.connectors.http import HttpOptions
from incsync.engine import SyncPolicy
from incsync.history import CycleEntry
from incsync.integrations.celery import CeleryDeployment, install
from incsync.records import ApplyResult, Record
from incsync.scheduling import SourcePlan
from incsync.state import Checkpoint, ErrorInfo, Lease, SourceState
from incsync.stores import SQLiteStore
from incsync.stores.postgres import PostgresStore
from incsync.vendors.hubspot import HubSpotConnector
from tests.delegating import DelegatingSink, DelegatingStore

__all__ = ["LeaseLog", "app", "deployment", "tasks"]

CONFIG_ENV = "INCSYNC_CELERY_TEST_CONFIG"
DEFAULT_BROKER = "redis://127.0.0.1:6379/11"


def _config() -> dict[str, Any]:
    path = os.environ.get(CONFIG_ENV)
    if not path:
        return {}
    loaded: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return loaded


class LeaseLog(DelegatingStore, DelegatingSink):
    """A store that appends each lease grant, renewal and end to a JSON-lines file.

    Times are taken conservatively: a grant is logged after the store granted it, an end before
    the store is asked to release, so the logged interval lies inside the real one.

    Args:
        inner: The store every call goes to.
        path: The file to append to (one ``write`` per line, so processes never interleave).
    """

    inner: SQLiteStore | PostgresStore

    def __init__(self, inner: SQLiteStore | PostgresStore, path: str) -> None:
        self.inner = inner
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _log(self, **event: object) -> None:
        line = json.dumps({"pid": os.getpid(), **event}) + "\n"
        os.write(self._fd, line.encode("utf-8"))

    def _renewed(self, key: str, state: SourceState) -> SourceState:
        if state.lease is not None:
            expires = state.lease.expires_at.timestamp()
            self._log(event="renew", key=key, token=state.lease.token, expires=expires)
        return state

    def acquire_lease(
        self, source_key: str, holder: str, now: datetime, ttl: timedelta
    ) -> Lease | None:
        lease = self.inner.acquire_lease(source_key, holder, now, ttl)
        if lease is not None:
            self._log(
                event="grant",
                key=source_key,
                token=lease.token,
                at=time.time(),
                expires=lease.expires_at.timestamp(),
            )
        return lease

    def commit_page(
        self,
        source_key: str,
        records: Sequence[Record],
        lease: Lease,
        generation: int,
        checkpoint: Checkpoint,
        now: datetime,
        ttl: timedelta,
    ) -> tuple[ApplyResult, SourceState]:
        applied, state = self.inner.commit_page(
            source_key, records, lease, generation, checkpoint, now, ttl
        )
        return applied, self._renewed(source_key, state)

    def save_checkpoint(
        self,
        source_key: str,
        lease: Lease,
        generation: int,
        checkpoint: Checkpoint,
        now: datetime,
        ttl: timedelta,
    ) -> SourceState:
        state = self.inner.save_checkpoint(source_key, lease, generation, checkpoint, now, ttl)
        return self._renewed(source_key, state)

    def renew_lease(self, source_key: str, lease: Lease, now: datetime, ttl: timedelta) -> Lease:
        renewed = self.inner.renew_lease(source_key, lease, now, ttl)
        expires = renewed.expires_at.timestamp()
        self._log(event="renew", key=source_key, token=renewed.token, expires=expires)
        return renewed

    def _end(self, key: str, lease: Lease, how: str) -> None:
        self._log(event="end", key=key, token=lease.token, at=time.time(), how=how)

    def complete_cycle(
        self,
        source_key: str,
        lease: Lease,
        generation: int,
        checkpoint: Checkpoint,
        now: datetime,
        rejected_in_cycle: int,
        entry: CycleEntry,
    ) -> SourceState:
        self._end(source_key, lease, "complete")
        return self.inner.complete_cycle(
            source_key, lease, generation, checkpoint, now, rejected_in_cycle, entry
        )

    def fail_cycle(
        self,
        source_key: str,
        lease: Lease,
        generation: int,
        error: ErrorInfo,
        stop_after: int,
        retry_at: datetime | None,
        entry: CycleEntry,
    ) -> SourceState:
        self._end(source_key, lease, "fail")
        return self.inner.fail_cycle(
            source_key, lease, generation, error, stop_after, retry_at, entry
        )

    def interrupt_cycle(self, source_key: str, lease: Lease, entry: CycleEntry) -> SourceState:
        self._end(source_key, lease, "interrupt")
        return self.inner.interrupt_cycle(source_key, lease, entry)

    def release_lease(self, source_key: str, lease: Lease) -> None:
        self._end(source_key, lease, "release")
        self.inner.release_lease(source_key, lease)


class SharedTransport(httpx.BaseTransport):
    """One worker-wide connection pool for every connector; closing a connector leaves it open.

    Building an ``httpx.Client`` without a transport loads the TLS certificates each time (tens
    of milliseconds of CPU); a host syncing many sources shares one pool instead.
    """

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send through the shared pool."""
        return self._inner.handle_request(request)

    def close(self) -> None:
        """Keep the shared pool open for the next connector."""


def open_store(config: dict[str, Any]) -> SQLiteStore | PostgresStore:
    """Open the store the test chose: PostgreSQL (a schema of its own) or a SQLite file."""
    spec = config["store"]
    if spec["kind"] == "postgres":
        return PostgresStore(spec["conninfo"], schema=spec["schema"], max_size=6)
    return SQLiteStore(spec["path"])


def plans(config: dict[str, Any]) -> list[SourcePlan]:
    """One plan per source: ``<account>/<object type>``, the account being a fake portal."""
    interval = timedelta(seconds=config["interval_seconds"])
    return [
        SourcePlan(f"{account}/{object_type}", interval, account_key=account)
        for account in config["tokens"]
        for object_type in config["object_types"]
    ]


def deployment() -> CeleryDeployment:
    """Build the worker's deployment from the test's configuration file."""
    config = _config()
    base_url, tokens = config["base_url"], config["tokens"]
    transport = SharedTransport()

    def connector(source_key: str) -> HubSpotConnector:
        account, object_type = source_key.split("/")
        return HubSpotConnector(
            f"{base_url}/{account}",
            auth=BearerToken(tokens[account]),
            object_type=object_type,
            properties=["dealname", "amount"],
            include_archived=True,
            options=HttpOptions(transport=transport),
        )

    def store() -> LeaseLog:
        return LeaseLog(open_store(config), config["lease_log"])

    return CeleryDeployment(
        store=store,
        plans=lambda: plans(config),
        connector=connector,
        redis_url=config["broker"],
        per_account_limit=config["per_account_limit"],
        policy=SyncPolicy(lease_ttl=timedelta(seconds=config["lease_ttl_seconds"])),
        queued_ttl=timedelta(seconds=config["queued_ttl_seconds"]),
        key_prefix="incsync-test",
    )


app = Celery("incsync-celery-test", broker=_config().get("broker", DEFAULT_BROKER))
app.conf.update(
    broker_transport_options={"visibility_timeout": 15},
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
tasks = install(app, deployment)
