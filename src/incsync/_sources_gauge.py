"""The ``incsync.sources`` gauge: sources per status colour, counted from the observed stores.

:func:`observe_sources` (re-exported by :mod:`incsync.telemetry`, where hosts find it) registers a
store; each meter provider's gauge (:class:`SourceColours`, made by :mod:`incsync.telemetry` with
its instruments) counts the registered stores when its collector asks, reusing a count for
``recount_every``. The colour is :func:`incsync.status.reason_of`'s, the status screen's decision.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import timedelta

import attrs

from incsync.errors import ConfigurationError, IncsyncError
from incsync.protocols import Clock, StateStore
from incsync.redaction import redacted_traceback
from incsync.status import DEFAULT_STATUS_POLICY, REASONS, StatusColor, StatusPolicy, reason_of
from incsync.timestamps import utc_now

__all__ = ["DEFAULT_RECOUNT_EVERY", "SourceColours", "observe_sources"]

logger = logging.getLogger("incsync")


@attrs.frozen(eq=False)
class _Observation:
    """One store observed by the ``incsync.sources`` gauge, as :func:`observe_sources` was told.

    Compared by identity: observing the store again makes a new one, counted afresh.
    """

    store: StateStore
    policy: StatusPolicy
    clock: Clock
    recount_every: float
    timer: Callable[[], float]


class _Observed:
    """The stores whose sources the ``incsync.sources`` gauge counts."""

    lock = threading.Lock()
    stores: dict[int, _Observation] = {}  # noqa: RUF012 - one registry


DEFAULT_RECOUNT_EVERY = timedelta(minutes=1)
"""How long the gauge keeps a store's counts before it lists the store's states again."""


def observe_sources(
    store: StateStore,
    *,
    policy: StatusPolicy = DEFAULT_STATUS_POLICY,
    clock: Clock = utc_now,
    recount_every: timedelta = DEFAULT_RECOUNT_EVERY,
    timer: Callable[[], float] = time.monotonic,
) -> Callable[[], None]:
    """Count ``store``'s sources per status colour in the ``incsync.sources`` gauge.

    A count lists the store's states and decides their colours with
    :func:`incsync.status.reason_of`, the status screen's decision, so the gauge shows what the
    status screen shows. Listing a fleet's states is the costly part (about a quarter of a second
    of CPU for 10,000 sources on PostgreSQL), and colours change over hours, so a collection
    reuses the store's last count until ``recount_every`` has passed: a scrape every 15 s then
    lists the states once a minute. With several stores observed, the counts add up; observing a
    store again replaces its settings and counts it afresh.

    Args:
        store: Where the states are.
        policy: The status thresholds (:meth:`~incsync.status.StatusPolicy.matching` shares an
            engine's).
        clock: Returns the present, for the status.
        recount_every: How old a count may be; ``timedelta(0)`` counts at every collection.
        timer: Returns seconds on a monotonic clock, to tell a count's age (a test or a
            benchmark may pass its own).

    Returns:
        A function that stops observing the store.

    Raises:
        ConfigurationError: ``recount_every`` is negative.
    """
    if recount_every < timedelta(0):
        raise ConfigurationError(f"recount_every must not be negative, not {recount_every}")
    key = id(store)
    observation = _Observation(store, policy, clock, recount_every.total_seconds(), timer)
    with _Observed.lock:
        _Observed.stores[key] = observation

    def stop() -> None:
        with _Observed.lock:
            if _Observed.stores.get(key) is observation:
                del _Observed.stores[key]

    return stop


def _count_due(counted_at: float, now: float, recount_every: float) -> bool:
    """Whether a store last counted at ``counted_at`` (its timer's seconds) is counted again."""
    return now - counted_at >= recount_every


def _colours_of(observation: _Observation) -> Counter[str] | None:
    """Count one store's sources per colour; ``None`` (and a warning) when it cannot list them."""
    try:
        # The colour only: the status screen's decision without its texts (reason_of).
        now = observation.clock()
        return Counter(
            REASONS[reason_of(state, now=now, policy=observation.policy)][0].value
            for state in observation.store.list_states()
        )
    except Exception as error:  # noqa: BLE001 - a collector's callback must not raise
        # A store's error says enough by its class (its text may hold a connection string);
        # anything else is a bug, located by its traceback.
        detail = (
            type(error).__name__ if isinstance(error, IncsyncError) else redacted_traceback(error)
        )
        logger.warning("the sources per status colour were not counted: %s", detail)
        return None


class SourceColours:
    """The ``incsync.sources`` gauge's counts for one collector (one meter provider).

    Each collector keeps its own counts, so how often a store is listed depends only on how often
    that collector collects. Calling it returns the sources per colour over every observed store,
    or ``None`` when no store is observed or one cannot list its states: a gap in the series says
    "unknown", where a partial count would lie.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # two readers of one provider may collect at once
        self._counted: dict[_Observation, tuple[float, Counter[str]]] = {}

    def __call__(self) -> Mapping[str, int] | None:
        with _Observed.lock:
            observed = list(_Observed.stores.values())
        with self._lock:
            # A store no longer observed (or observed anew) is forgotten.
            self._counted = {o: c for o, c in self._counted.items() if o in observed}
            if not observed:
                return None
            counts: Counter[str] = Counter({colour.value: 0 for colour in StatusColor})
            for observation in observed:
                now = observation.timer()
                counted = self._counted.get(observation)
                if counted is None or _count_due(counted[0], now, observation.recount_every):
                    colours = _colours_of(observation)
                    if colours is None:
                        return None
                    counted = self._counted[observation] = (now, colours)
                counts.update(counted[1])
            return counts
