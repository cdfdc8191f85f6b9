"""The loop of ``incsync run``: start the due cycles on worker threads, report each as it ends.

What is due, and in which order, is :mod:`incsync.scheduling`'s pure part (:func:`due_sources`,
:func:`due_at`, :func:`next_to_start`); this shell adds what the command needs around it and
:func:`incsync.scheduling.run_due` does not offer: a progress display per cycle, each result
printed the moment its cycle ends, a stop that ends the running cycles at their next durable page
and starts no other, and one pool for a long ``--every`` run, so a slow source never holds back
the others' due times.

Cycles run on daemon threads, so a second Ctrl-C can end the process at once; that is safe (every
page is committed with its checkpoint), and the command gives up their leases on its way out.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

import attrs

from incsync.engine import SyncEngine
from incsync.integrations.cli._output import result_text
from incsync.integrations.cli._progress import ProgressBoard
from incsync.protocols import Connector
from incsync.results import CycleResult, Outcome
from incsync.scheduling import DueSource, SourcePlan, due_at, due_sources, next_to_start
from incsync.state import held_lease, new_state
from incsync.timestamps import utc_now

__all__ = ["ResultFormat", "Schedule", "run_scheduled", "waiting_time"]

logger = logging.getLogger("incsync.cli")

ResultFormat = Callable[[CycleResult, Sequence[str]], str]
"""Writes a finished cycle's result for standard output, masking the given secret values."""

_POLL = 0.5
"""Seconds between looks at the stop request while cycles run (a signal does not end a wait)."""
_LEAST_WAIT = timedelta(seconds=1)
"""The shortest sleep between ticks, so a source held by another worker is not polled hot."""


@attrs.frozen
class Schedule:
    """What ``incsync run`` was asked to run, and how.

    Args:
        plans: The plan of every selected source, in the file's order.
        workers: Cycles running at once.
        per_account_limit: Cycles of one vendor account running at once.
        every: The tick of a long run (the longest sleep between two looks at what is due), or
            ``None`` to run what is due now and return.
        run_all: Start every selected source at the first look, due or not.
    """

    plans: tuple[SourcePlan, ...]
    workers: int
    per_account_limit: int
    every: timedelta | None = None
    run_all: bool = False


def waiting_time(
    plans: Sequence[SourcePlan],
    engine: SyncEngine,
    busy: set[str],
    now: datetime,
    tick_at: datetime,
) -> tuple[datetime, str | None]:
    """Return when to look again, and the source due then (``None``: only the tick).

    Args:
        plans: Every plan.
        engine: Its store says when each source last started.
        busy: Sources running now, which are due again only once they end.
        now: The current time.
        tick_at: The next tick, the latest moment to look again.
    """
    states = {state.key: state for state in engine.states()}
    wake, key = tick_at, None
    for plan in plans:
        if plan.source_key in busy:
            continue
        state = states.get(plan.source_key) or new_state(plan.source_key)
        moment = due_at(plan, state, now)
        lease = held_lease(state, now)
        if moment is not None and lease is not None:
            # Another worker runs it: it is due again once that lease ends, at the earliest.
            moment = max(moment, lease.expires_at)
        if moment is not None and moment < wake:
            wake, key = moment, plan.source_key
    return max(wake, now + _LEAST_WAIT), key


Finished = tuple[SourcePlan, CycleResult | BaseException]


def _cycle(
    engine: SyncEngine,
    plan: SourcePlan,
    connector: Connector,
    board: ProgressBoard,
    finished: queue.Queue[Finished],
    stop: threading.Event,
    cycles_per_account: int,
) -> None:
    display = board.cycle(plan.source_key)
    try:
        outcome: CycleResult | BaseException = engine.run_cycle(
            plan.source_key,
            connector,
            on_progress=display.update,
            stop=stop,
            cycles_per_account=cycles_per_account,
        )
    except BaseException as error:  # noqa: BLE001 - handed to the main thread, which raises it
        outcome = error
    finally:
        display.close()
    finished.put((plan, outcome))


class _Loop:
    """The state of one run: what waits, what runs, and whether anything failed."""

    def __init__(
        self,
        engine: SyncEngine,
        schedule: Schedule,
        connectors: Mapping[str, Connector],
        board: ProgressBoard,
        secrets: Sequence[str],
        stop: threading.Event,
        report: ResultFormat,
    ) -> None:
        self.engine = engine
        self.report = report
        self.stop = stop
        self.schedule = schedule
        self.connectors = connectors
        self.board = board
        self.secrets = secrets
        self.waiting: list[DueSource] = []
        self.running: dict[str, SourcePlan] = {}
        self.by_account: Counter[str] = Counter()
        self.finished: queue.Queue[Finished] = queue.Queue()
        self.failed = False
        self.error: BaseException | None = None

    def look(self, now: datetime, *, run_all: bool) -> None:
        """Queue every source due at ``now`` that is neither running nor queued already."""
        busy = self.busy()
        plans = [plan for plan in self.schedule.plans if plan.source_key not in busy]
        if run_all:
            self.waiting.extend(DueSource(plan, now, timedelta(0)) for plan in plans)
        else:
            self.waiting.extend(due_sources(plans, self.engine.states(), now))

    def busy(self) -> set[str]:
        """Return the sources running or queued, which a look at due times leaves out."""
        return set(self.running) | {item.plan.source_key for item in self.waiting}

    def start(self) -> None:
        """Start waiting sources while a worker and their account's slot are free."""
        while len(self.running) < self.schedule.workers:
            item = next_to_start(self.waiting, self.by_account, self.schedule.per_account_limit)
            if item is None:
                return
            self.waiting.remove(item)
            plan = item.plan
            self.running[plan.source_key] = plan
            self.by_account[plan.account_key] += 1
            threading.Thread(
                target=_cycle,
                args=(self.engine, plan, self.connectors[plan.source_key], self.board),
                kwargs={
                    "finished": self.finished,
                    "stop": self.stop,
                    "cycles_per_account": self.schedule.per_account_limit,
                },
                name=f"incsync-{plan.source_key}",
                daemon=True,
            ).start()

    def collect(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for cycles to end, report them; return whether any did."""
        try:
            plan, outcome = self.finished.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return False
        while True:
            del self.running[plan.source_key]
            self.by_account[plan.account_key] -= 1
            if isinstance(outcome, BaseException):
                self.error = self.error or outcome
            else:
                self.board.result(self.report(outcome, self.secrets))
                self.failed = self.failed or outcome.outcome is Outcome.FAILED
            try:
                plan, outcome = self.finished.get_nowait()
            except queue.Empty:
                return True


def run_scheduled(
    engine: SyncEngine,
    schedule: Schedule,
    connectors: Mapping[str, Connector],
    board: ProgressBoard,
    *,
    stop: threading.Event,
    secrets: Sequence[str] = (),
    report: ResultFormat = result_text,
) -> bool:
    """Run the schedule until it is done (``every`` is ``None``) or a stop is asked for.

    Args:
        engine: Runs the cycles; its store says what is due.
        schedule: What to run, and how.
        connectors: Each selected source's connector, by key.
        board: Shows progress and prints results.
        stop: Set to stop: the running cycles end at their next durable page
            (``INTERRUPTED_STOP``), no other starts, and a sleep between looks ends at once.
        secrets: Values to mask in what is printed.
        report: Writes each result (a line of text, or of JSON for ``--json``).

    Returns:
        Whether any cycle failed.

    Raises:
        StoreError: The store could not list the states or record an outcome (raised once the
            other running cycles have ended).
    """
    loop = _Loop(engine, schedule, connectors, board, secrets, stop, report)
    every = schedule.every
    now = utc_now()
    loop.look(now, run_all=schedule.run_all)
    if every is None and not loop.waiting:
        _say_nothing_due(loop, now)
    tick_at = now + (every or timedelta(0))
    next_look, due_key = tick_at, None
    looked = True
    said: tuple[str | None, datetime | None] | None = None
    while True:
        if not stop.is_set() and loop.error is None:
            loop.start()
        if not loop.running and (every is None or stop.is_set() or loop.error is not None):
            break
        if every is None:
            loop.collect(_POLL)
            continue
        if looked:
            # Reading every state is the costly part, so it happens after a look only.
            next_look, due_key = waiting_time(
                schedule.plans, engine, loop.busy(), utc_now(), tick_at
            )
            looked = False
        if loop.running:
            ended = loop.collect(min(_POLL, (next_look - utc_now()).total_seconds()))
            if stop.is_set() or not (ended or utc_now() >= next_look):
                continue
        else:
            due = f" ({due_key} is due then)" if due_key else ""
            look = f"next look at {next_look.isoformat(timespec='seconds')}{due}"
            # A look at the tick alone moves with every tick: it is said once, until a source
            # falls due sooner; a due source is said again when it or its time changes. The log
            # (-v) has every look.
            news = (due_key, next_look if due_key else None)
            if news != said:
                board.note(f"incsync: {look}")
                said = news
            else:
                logger.info("%s", look)
            if stop.wait(max((next_look - utc_now()).total_seconds(), 0.0)):
                break
        now = utc_now()
        if now >= tick_at:
            tick_at = now + every
        loop.look(now, run_all=False)
        looked = True
    if loop.error is not None:
        raise loop.error
    return loop.failed


def _say_nothing_due(loop: _Loop, now: datetime) -> None:
    wake, key = waiting_time(
        loop.schedule.plans, loop.engine, set(), now, now + timedelta(days=3650)
    )
    if key is None:
        loop.board.note("incsync: no source is due, and none will be until one is resumed or reset")
        return
    loop.board.note(
        f"incsync: no source is due now; the next is {key} at "
        f"{wake.isoformat(timespec='seconds')} (--all runs every source now)"
    )
