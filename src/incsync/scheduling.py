"""Which sources are due now, as a pure function, and a thread pool that runs them.

The decision is :func:`due_sources`: each source has a :class:`SourcePlan` (how often, which vendor
account's rate limit it shares), and its :class:`~incsync.state.SourceState` says when it last
started, how often it failed in a row, whether it is running, stopped, cancelled or asked to wait.

* **Jitter without randomness.** A source is due on its own grid of *slots*: every ``interval``,
  shifted by an offset drawn from a stable hash of its key. A thousand hourly sources spread over
  the hour instead of bursting on it, and a restarted scheduler keeps every source's slot.
* **Backoff.** After ``n`` failures in a row the source skips slots: the next try comes
  ``interval * 2**(n-1)`` after the failed one (at most ``backoff_cap``), on the source's own
  slot, so the retries of an outage stay spread like the syncs were.
* **Never due:** cancelled and stopped sources, a source whose lease is live (running), and one
  that asked us to wait (``not_before``) until that time.

:func:`run_due` is the thin shell: it runs the due sources on a bounded pool of threads, never
more than ``per_account_limit`` at once for one vendor account. That limit holds inside one
process only; :mod:`incsync.integrations.celery` holds it across processes with a Redis semaphore.
"""

from __future__ import annotations

import hashlib
import logging
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs

from incsync.engine import SyncEngine
from incsync.errors import ConfigurationError
from incsync.policy import DEFAULT_BACKOFF_CAP, backoff_interval, duration_setting, positive_count
from incsync.protocols import Connector
from incsync.results import CycleResult, Outcome
from incsync.state import Phase, SourceState, check_source_key, held_lease, new_state
from incsync.timestamps import earlier, ensure_utc, later, utc_now

__all__ = [
    "ConnectorFactory",
    "DueSource",
    "SourcePlan",
    "due_at",
    "due_sources",
    "next_to_start",
    "run_due",
    "slot_offset",
]

logger = logging.getLogger("incsync")

ConnectorFactory = Callable[[str], Connector]
"""Builds the connector for a source key (the host looks its credentials up itself)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


# Past a century a plan is a slip of units, and the slot arithmetic below stays inside
# datetime's range without checks of its own.
_PLAN_DURATION = duration_setting(timedelta(seconds=1), maximum=timedelta(days=36_525))


def _key(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    check_source_key(value, attribute.name)


def _account_default(plan: SourcePlan) -> str:
    return plan.source_key


@attrs.frozen
class SourcePlan:
    """How often one source is synced and whose rate limit it shares.

    Args:
        source_key: The host's name for the source, as given to :meth:`SyncEngine.run_cycle`.
        interval: Time between the starts of two cycles (one second to 36,525 days).
        account_key: The vendor account (a QuickBooks company, a HubSpot portal) whose rate limit
            this source counts against; sources of one account are limited together. Defaults
            to the source key (a source alone in its account).
        backoff_cap: The longest wait after failures, however many there were in a row.

    Raises:
        ConfigurationError: A key is empty or blank, or a duration is not a ``timedelta`` from
            one second to 36,525 days (a century).
    """

    source_key: str = attrs.field(validator=_key)
    interval: timedelta = attrs.field(validator=_PLAN_DURATION)
    account_key: str = attrs.field(
        default=attrs.Factory(_account_default, takes_self=True), validator=_key
    )
    backoff_cap: timedelta = attrs.field(default=DEFAULT_BACKOFF_CAP, validator=_PLAN_DURATION)


@attrs.frozen
class DueSource:
    """A source that may start a cycle now.

    Args:
        plan: Its plan.
        due_at: When it became due.
        overdue: How long ago that was (never negative).
    """

    plan: SourcePlan
    due_at: datetime
    overdue: timedelta


def slot_offset(source_key: str, interval: timedelta) -> timedelta:
    """Return where in each ``interval`` the source's slots fall, from a stable hash of its key.

    The hash (BLAKE2b) is the same in every process and every release, unlike ``hash()``, so the
    offset survives restarts and is shared by every scheduler of one deployment.
    """
    digest = hashlib.blake2b(source_key.encode("utf-8"), digest_size=8).digest()
    steps = interval // _MICROSECOND
    return (int.from_bytes(digest, "big") % steps) * _MICROSECOND


def _slot_after(moment: datetime, interval: timedelta, offset: timedelta) -> datetime:
    """Return the first slot strictly after ``moment`` (the end of time when none is left)."""
    elapsed = moment - (_EPOCH + offset)
    return later(_EPOCH + offset, (elapsed // interval + 1) * interval)


def _backoff(plan: SourcePlan, failures: int) -> timedelta:
    """Return how long after a failed start the next one comes: doubling, capped, >= interval."""
    return backoff_interval(plan.interval, failures, plan.backoff_cap)


def due_at(plan: SourcePlan, state: SourceState, now: datetime) -> datetime | None:
    """Return when the source is due, or ``None`` if it never is until the host acts.

    The lease is not considered here (a running source is due again once it has finished; see
    :func:`due_sources`).

    Args:
        plan: The source's plan.
        state: Its current state.
        now: The current time (aware), for a source that never started: it is due at its most
            recent slot, so a newly connected source starts at once.

    Returns:
        The due time: the first slot after the last start (after the backoff when the last
        cycles failed), or ``now`` for a source just reset, but not before ``state.not_before``.
    """
    now = ensure_utc(now, "now")
    if state.phase in (Phase.CANCELLED, Phase.STOPPED):
        return None
    offset = slot_offset(plan.source_key, plan.interval)
    if state.phase is Phase.RESETTING and state.consecutive_failures == 0:
        # A reset (by a person, or because the source's change log expired) asks for the full
        # re-read now, not at the next slot; once a re-read fails, the backoff below applies.
        due = now
    elif state.last_attempt is None:
        due = _slot_after(earlier(now, plan.interval), plan.interval, offset)
    else:
        skipped = _backoff(plan, state.consecutive_failures) - plan.interval
        due = _slot_after(later(state.last_attempt, skipped), plan.interval, offset)
    if state.not_before is not None and state.not_before > due:
        due = state.not_before
    return due


def due_sources(
    plans: Iterable[SourcePlan],
    states: Iterable[SourceState] | Mapping[str, SourceState],
    now: datetime,
) -> list[DueSource]:
    """Return the sources that may start a cycle at ``now``, the most overdue first.

    Args:
        plans: One plan per source to consider; sources without a plan are never due.
        states: The known states (a sequence, or a mapping by key); a plan without a state is a
            source never synced yet.
        now: The current time (aware).

    Returns:
        The due sources, ordered by how overdue they are (ties by key, so the order is stable).

    Raises:
        ConfigurationError: Two plans have the same source key.
        NaiveDatetimeError: ``now`` has no timezone.
    """
    now = ensure_utc(now, "now")
    by_key = states if isinstance(states, Mapping) else {state.key: state for state in states}
    seen: set[str] = set()
    due: list[DueSource] = []
    for plan in plans:
        if plan.source_key in seen:
            raise ConfigurationError(
                f"two plans for source {plan.source_key!r}; give each source exactly one plan"
            )
        seen.add(plan.source_key)
        state = by_key.get(plan.source_key) or new_state(plan.source_key)
        if held_lease(state, now) is not None:
            continue
        moment = due_at(plan, state, now)
        if moment is not None and moment <= now:
            due.append(DueSource(plan=plan, due_at=moment, overdue=now - moment))
    due.sort(key=lambda item: (item.due_at, item.plan.source_key))
    return due


def next_to_start(
    waiting: Sequence[DueSource], running: Mapping[str, int], per_account_limit: int
) -> DueSource | None:
    """Return the first waiting source whose account has a free slot, or ``None``.

    Args:
        waiting: Due sources in the order they should start.
        running: How many cycles run now, by account key.
        per_account_limit: How many cycles of one account may run at once.
    """
    for item in waiting:
        if running.get(item.plan.account_key, 0) < per_account_limit:
            return item
    return None


def _raised_at(error: BaseException) -> str:
    """Where ``error`` was raised, frame by frame, without its message or the code's lines."""
    frames = traceback.extract_tb(error.__traceback__)
    return "\n".join(f'  File "{f.filename}", line {f.lineno}, in {f.name}' for f in frames)


def _failed_to_start(plan: SourcePlan, started: datetime, error: Exception) -> CycleResult:
    # The factory's message may quote credentials it was handed (so may the line that raised
    # it): the class name and the frames locate a bug in the factory without them.
    logger.error(
        "source %s: could not build its connector (%s); the cycle did not run; raised at:\n%s",
        plan.source_key,
        type(error).__name__,
        _raised_at(error),
    )
    return CycleResult(
        source_key=plan.source_key,
        outcome=Outcome.FAILED,
        started_at=started,
        error=f"the connector factory raised {type(error).__name__}; see the host's logs",
        error_class=type(error).__name__,
    )


def _run_one(
    engine: SyncEngine, plan: SourcePlan, factory: ConnectorFactory, per_account_limit: int
) -> CycleResult:
    try:
        connector = factory(plan.source_key)
    except Exception as error:  # noqa: BLE001 - one source's broken set-up must not stop the others
        return _failed_to_start(plan, utc_now(), error)
    try:
        return engine.run_cycle(plan.source_key, connector, cycles_per_account=per_account_limit)
    finally:
        close = getattr(connector, "close", None)
        if callable(close):
            close()


def run_due(
    engine: SyncEngine,
    plans: Iterable[SourcePlan],
    connector_factory: ConnectorFactory,
    *,
    max_workers: int,
    per_account_limit: int,
    now: datetime | None = None,
) -> list[CycleResult]:
    """Run one cycle of every source due now, on a bounded pool of threads.

    Sources start in the order of :func:`due_sources`; one whose account already runs
    ``per_account_limit`` cycles waits (without holding a thread) while sources of other accounts
    go ahead. A connector with a ``close()`` method is closed after its cycle.

    Args:
        engine: Runs the cycles; its store says what is due.
        plans: The plan of every source to consider.
        connector_factory: Builds a source's connector from its key. If it raises, that source's
            result is a failure and the others run.
        max_workers: Threads running cycles at once.
        per_account_limit: Cycles of one vendor account running at once, in this process. They
            share the concurrent requests the vendor allows one account: a full read in
            partitions reads fewer at once (:func:`incsync.partitions.readers_per_cycle`).
        now: The time to decide what is due (defaults to the current time).

    Returns:
        One result per source started, in the order they finished.

    Raises:
        ConfigurationError: A limit is not a positive integer, or two plans share a key.
        StoreError: The store could not list the states or record an outcome.
    """
    positive_count.check("max_workers", max_workers)
    positive_count.check("per_account_limit", per_account_limit)
    moment = utc_now() if now is None else ensure_utc(now, "now")
    waiting = due_sources(plans, engine.states(), moment)
    running: Counter[str] = Counter()
    in_flight: dict[Future[CycleResult], SourcePlan] = {}
    results: list[CycleResult] = []
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="incsync") as pool:
        while waiting or in_flight:
            while len(in_flight) < max_workers:
                item = next_to_start(waiting, running, per_account_limit)
                if item is None:
                    break
                waiting.remove(item)
                running[item.plan.account_key] += 1
                started = pool.submit(
                    _run_one, engine, item.plan, connector_factory, per_account_limit
                )
                in_flight[started] = item.plan
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                plan = in_flight.pop(future)
                running[plan.account_key] -= 1
                results.append(future.result())
    return results
