"""Celery tasks: one source's cycle, and a periodic fan-out that enqueues the sources due now.

The host describes its deployment once, in a function that returns a :class:`CeleryDeployment`
(how to open the store, which sources exist, how to build a connector), and hands it to
:func:`install`. Each worker process calls that function lazily, on its first task, so nothing
opened before Celery forks its pool is shared between processes. Task arguments are source and
account keys only; credentials never travel through the broker.

What holds where:

* **No two cycles of one source overlap**, anywhere: the engine's lease in the state store
  decides, whatever the broker delivers twice.
* **At most ``per_account_limit`` cycles of one vendor account run at once** across every worker
  sharing the Redis at ``redis_url``: a semaphore whose slots expire (see
  :mod:`incsync.integrations._account_slots`), renewed after every durable page. A task that
  finds its account full ends at once; the source stays due and the next fan-out enqueues it
  again.
* **A throttle answer slows every worker reading the account**: a wait one connector is asked
  for is kept in Redis (:mod:`incsync.integrations._account_holds`), and every HTTP connector
  the deployment builds waits it out before its requests
  (:meth:`~incsync.connectors.http.HttpConnector.share_throttle`).
* **A full read in partitions stays within what the vendor allows the account**: each cycle
  reads as many partitions at once as the vendor's concurrent requests per account allow, shared
  by ``per_account_limit`` cycles (:func:`incsync.partitions.readers_per_cycle`).
* **A source is queued at most once**: the fan-out sets a mark in Redis before it enqueues, and
  the task clears it when it ends; a mark left by a killed worker expires after ``queued_ttl``.

Tasks are ``acks_late`` with ``reject_on_worker_lost``: a message is acknowledged after its cycle
ended, so a cycle lost with its worker is delivered again (set the broker's visibility timeout
above the longest cycle, or Redis delivers a running task again; the duplicate then finds the
lease held and skips). Even a lost message is harmless: the source stays due and the next
fan-out enqueues it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

try:
    import celery
    import redis
except ImportError as missing:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "incsync.integrations.celery needs Celery and Redis; install them with: "
        "pip install 'incsync[celery]'"
    ) from missing

from incsync.connectors.http import HttpConnector
from incsync.engine import SyncEngine
from incsync.errors import StoreError
from incsync.humanize import plural
from incsync.integrations._account_holds import RedisAccountHolds
from incsync.integrations._account_slots import AccountSlot, AccountSlots
from incsync.policy import SyncPolicy, positive_count, positive_duration
from incsync.protocols import StateStore
from incsync.results import CycleProgress, CycleResult
from incsync.scheduling import ConnectorFactory, SourcePlan, due_sources
from incsync.timestamps import ensure_utc, utc_now

__all__ = [
    "ENQUEUE_DUE_TASK",
    "RUN_SOURCE_TASK",
    "CeleryDeployment",
    "IncsyncTasks",
    "install",
]

logger = logging.getLogger("incsync")

RUN_SOURCE_TASK = "incsync.run_source"
"""The task that runs one source's cycle: ``run_source(source_key, account_key, due_at=None)``.

With ``due_at`` (ISO 8601, as the fan-out sends it), a task whose source already started a cycle
since then does nothing: duplicate deliveries cost one state read, not a cycle.
"""

ENQUEUE_DUE_TASK = "incsync.enqueue_due"
"""The name of the periodic task that enqueues every due source; schedule it with Celery beat."""


@attrs.frozen
class CeleryDeployment:
    """Everything a worker needs to run cycles, built by the host in each worker process.

    Args:
        store: Opens the state store (also the sink), once per worker process. Use a store every
            worker reaches: PostgreSQL across machines, a SQLite file on one machine.
        plans: Returns the plan of every source (read by the fan-out on every tick).
        connector: Builds a source's connector from its key, with credentials the host looks up.
        redis_url: The Redis for the per-account semaphore, the throttles' shared waits and the
            queued marks.
        per_account_limit: Cycles of one vendor account running at once, across all workers.
            They share the concurrent requests a vendor allows one account, so a full read in
            partitions reads fewer at once as it grows; above that figure (QuickBooks 10 per
            company, Xero 5 per tenant) each cycle reads with one request, and the vendor
            refuses, and incsync retries, what is over its limit.
        policy: The engine's leases, safety lag and failure thresholds.
        queued_ttl: How long a queued mark lasts; a source whose task was lost is enqueued again
            after this. Below the time tasks wait in the queue it lets copies in (each costs
            one state read: a task skips a source that started since it was sent).
        key_prefix: Prefix of every Redis key.

    Raises:
        ConfigurationError: A limit or duration is not positive.
    """

    store: Callable[[], StateStore]
    plans: Callable[[], Iterable[SourcePlan]]
    connector: ConnectorFactory
    redis_url: str
    per_account_limit: int = attrs.field(default=2, validator=positive_count)
    policy: SyncPolicy = attrs.field(factory=SyncPolicy)
    queued_ttl: timedelta = attrs.field(default=timedelta(minutes=15), validator=positive_duration)
    key_prefix: str = "incsync"


class _Runtime:
    """What one worker process builds from the deployment, once: engine, semaphore, holds."""

    def __init__(self, deployment: CeleryDeployment) -> None:
        self.deployment = deployment
        self.engine = SyncEngine(deployment.store(), policy=deployment.policy)
        self.redis: redis.Redis = redis.Redis.from_url(deployment.redis_url)
        self.slots = AccountSlots(
            self.redis, deployment.per_account_limit, prefix=deployment.key_prefix
        )
        self.holds = RedisAccountHolds(self.redis, prefix=deployment.key_prefix)

    def queued_key(self, source_key: str) -> str:
        return f"{self.deployment.key_prefix}:queued:{source_key}"

    def mark_queued(self, source_keys: Sequence[str]) -> list[bool]:
        """Mark each source queued unless it is; say which were marked (one round trip)."""
        ttl = max(1, int(self.deployment.queued_ttl.total_seconds()))
        pipeline = self.redis.pipeline(transaction=False)
        for key in source_keys:
            pipeline.set(self.queued_key(key), "1", nx=True, ex=ttl)
        try:
            return [bool(done) for done in pipeline.execute()]
        except redis.RedisError as error:
            raise StoreError(
                f"Redis failed to mark due sources queued ({type(error).__name__}); "
                "check that Redis is reachable"
            ) from None

    def clear_queued(self, source_key: str) -> None:
        try:
            self.redis.delete(self.queued_key(source_key))
        except redis.RedisError:
            # The mark expires by itself; the source is only enqueued a little later.
            logger.warning("source %s: could not clear its queued mark in Redis", source_key)


@attrs.frozen
class IncsyncTasks:
    """The tasks :func:`install` registered on the host's app.

    Args:
        run_source: ``run_source.delay(source_key, account_key)`` runs one cycle.
        enqueue_due: ``enqueue_due.delay()`` enqueues every due source; schedule it with beat.
    """

    run_source: Any
    enqueue_due: Any


def _summary(result: CycleResult) -> dict[str, object]:
    """The task's return value: JSON-safe, without the error text (it stays in the store)."""
    return {
        "source_key": result.source_key,
        "outcome": result.outcome.value,
        "applied": result.applied,
        "fetched": result.fetched,
        "pages": result.pages,
        "error_class": result.error_class,
    }


def _already_started(engine: SyncEngine, source_key: str, due_at: str) -> bool:
    """Whether a cycle of the source started at or after the due time the task was sent for."""
    started = engine.state(source_key).last_attempt
    return started is not None and started >= ensure_utc(datetime.fromisoformat(due_at), "due_at")


def _run(runtime: _Runtime, source_key: str, slot: AccountSlot) -> CycleResult:
    ttl = runtime.deployment.policy.lease_ttl

    def renew_slot(_progress: CycleProgress) -> None:
        if not runtime.slots.renew(slot, ttl):
            logger.warning("source %s: its account slot expired during the cycle", source_key)

    connector = runtime.deployment.connector(source_key)
    if isinstance(connector, HttpConnector):
        connector.share_throttle(runtime.holds, slot.account_key)
    try:
        return runtime.engine.run_cycle(
            source_key,
            connector,
            on_progress=renew_slot,
            cycles_per_account=runtime.deployment.per_account_limit,
        )
    finally:
        close = getattr(connector, "close", None)
        if callable(close):
            close()


def install(app: celery.Celery, deployment: Callable[[], CeleryDeployment]) -> IncsyncTasks:
    """Register incsync's tasks on the host's Celery app.

    Args:
        app: The host's app.
        deployment: Returns the deployment; called once in each worker process, on its first
            task (never at import time, so connections are opened after Celery forks).

    Returns:
        The registered tasks, named :data:`RUN_SOURCE_TASK` and :data:`ENQUEUE_DUE_TASK`.
    """
    lock = threading.Lock()
    built: list[_Runtime] = []

    def runtime() -> _Runtime:
        with lock:
            if not built:
                built.append(_Runtime(deployment()))
            return built[0]

    @app.task(  # type: ignore[untyped-decorator]
        name=RUN_SOURCE_TASK,
        acks_late=True,
        reject_on_worker_lost=True,
    )
    def run_source(source_key: str, account_key: str, due_at: str | None = None) -> object:
        """Run one cycle of the source, within its account's limit; return a summary."""
        current = runtime()
        if due_at is not None and _already_started(current.engine, source_key, due_at):
            # A duplicate delivery, or an enqueue after a lost mark: the slot was served.
            current.clear_queued(source_key)
            return {"source_key": source_key, "outcome": "skipped_already_started"}
        slot = current.slots.acquire(account_key, current.deployment.policy.lease_ttl)
        if slot is None:
            # No waiting in the worker and no ETA messages (which Redis redelivers after its
            # visibility timeout): the source stays due, and the next fan-out enqueues it again.
            logger.info(
                "source %s: account %s is busy; left for the next fan-out", source_key, account_key
            )
            current.clear_queued(source_key)
            return {"source_key": source_key, "outcome": "skipped_account_busy"}
        try:
            return _summary(_run(current, source_key, slot))
        finally:
            current.slots.release(slot)
            current.clear_queued(source_key)

    @app.task(name=ENQUEUE_DUE_TASK)  # type: ignore[untyped-decorator]
    def enqueue_due() -> int:
        """Enqueue every due source not queued yet; return how many were enqueued."""
        current = runtime()
        due = due_sources(current.deployment.plans(), current.engine.states(), utc_now())
        marked = current.mark_queued([item.plan.source_key for item in due])
        enqueued = [item for item, fresh in zip(due, marked, strict=True) if fresh]
        # One producer for the whole batch: no pool round trip per message.
        with app.producer_or_acquire() as producer:
            for item in enqueued:
                args = (item.plan.source_key, item.plan.account_key, item.due_at.isoformat())
                run_source.apply_async(args=args, producer=producer)
        logger.info("enqueued %d of %s", len(enqueued), plural(len(due), "due source"))
        return len(enqueued)

    return IncsyncTasks(run_source=run_source, enqueue_due=enqueue_due)
