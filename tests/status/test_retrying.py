"""A source the engine keeps retrying is never red; only stopping, or silence, is.

Red says "synchronization has stopped". A source whose cycles fail is still being tried until the
engine stops it, however long that takes, so it shows its last success's colour (while that is
recent) or orange "Retrying". Red "Overdue" is kept for a scheduler that stopped attempting.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from incsync import SyncEngine, SyncPolicy
from incsync.errors import TransientSourceError
from incsync.results import Outcome
from incsync.scheduling import SourcePlan, due_sources
from incsync.state import ErrorInfo, Phase, SourceState
from incsync.status import (
    DEFAULT_STATUS_POLICY,
    SourceStatus,
    StatusColor,
    StatusNote,
    StatusPolicy,
    StatusReason,
    classify_status,
    status_of,
)
from incsync.testing import FakeConnector, FakeSource, InMemoryStore, ManualClock

UTC = timezone.utc
START = datetime(2026, 11, 13, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 13, 9, 41, 7, tzinfo=UTC)
HOUR = timedelta(hours=1)
US = timedelta(microseconds=1)
KEY = "acme/invoices"

GREEN, ORANGE, RED = StatusColor.GREEN, StatusColor.ORANGE, StatusColor.RED
ACTIVE = StatusReason.RECENT_CHANGES
RETRYING = StatusReason.RETRYING


def _fail(_page: int) -> None:
    raise TransientSourceError("503 Service Unavailable", vendor="memory", status_code=503)


def _engine(stop_after: int) -> tuple[SyncEngine, ManualClock, FakeSource]:
    """An engine whose source completed one cycle at START, with a change a day before it."""
    clock = ManualClock(START)
    engine = SyncEngine(
        InMemoryStore(), policy=SyncPolicy(max_consecutive_failures=stop_after), clock=clock
    )
    source = FakeSource()
    source.put({"id": "inv-1", "updated_at": "2026-11-12T09:00:00.000Z", "total": 10})
    assert engine.run_cycle(KEY, FakeConnector(source)).outcome is Outcome.COMPLETED
    return engine, clock, source


def _statuses(state: SourceState, now: datetime, policy: StatusPolicy) -> list[SourceStatus]:
    """The state's status as status_of gives it (phase known), and from its facts alone."""
    facts_only = classify_status(
        last_change=state.last_change,
        last_sync=state.last_sync,
        last_attempt=state.last_attempt,
        error_count=state.consecutive_failures,
        last_error=state.last_error,
        now=now,
        policy=policy,
    )
    return [
        status_of(state, now=now, policy=policy),
        status_of(state, now=now),  # the default status policy: the phase decides alone
        facts_only,
    ]


def _hourly_failures(stop_after: int) -> list[tuple[int, timedelta, SourceStatus]]:
    """Fail one cycle an hour until the engine stops the source; classify after each failure.

    Each failure is looked at twice: as it happens, and 59 minutes later, just before the next
    cycle. Every way of classifying must agree, and red must mean the engine stopped it.
    """
    engine, clock, source = _engine(stop_after)
    policy = StatusPolicy.matching(engine.policy)
    failing = FakeConnector(source, before_page=_fail)
    timeline = []
    while engine.state(KEY).phase is not Phase.STOPPED:
        clock.advance(HOUR)
        assert engine.run_cycle(KEY, failing).outcome is Outcome.FAILED
        state = engine.state(KEY)
        for later in (timedelta(0), timedelta(minutes=59)):
            statuses = _statuses(state, clock() + later, policy)
            colors = {status.color for status in statuses}
            assert len(colors) == 1, (state.consecutive_failures, later, statuses)
            assert (RED in colors) is (state.phase is Phase.STOPPED), (state, later, statuses)
            timeline.append((state.consecutive_failures, later, statuses[0]))
    return timeline


def test_hourly_failures_under_the_default_policies_follow_the_documented_timeline() -> None:
    """Default policies: green "retrying" while the last sync is recent, then orange, then red.

    The last cycle completed at 09:00; every hour after, a cycle fails. The engine stops the
    source at the fifth failure, and only then does the screen turn red.
    """
    timeline = _hourly_failures(SyncPolicy().max_consecutive_failures)

    assert [(n, later, s.color, s.reason, s.label) for n, later, s in timeline] == [
        (1, timedelta(0), GREEN, ACTIVE, "Active, retrying"),
        (1, timedelta(minutes=59), GREEN, ACTIVE, "Active, retrying"),
        (2, timedelta(0), GREEN, ACTIVE, "Active, retrying"),
        (2, timedelta(minutes=59), GREEN, ACTIVE, "Active, retrying"),
        (3, timedelta(0), GREEN, ACTIVE, "Active, retrying"),  # last sync 3 hours ago: recent
        (3, timedelta(minutes=59), ORANGE, RETRYING, "Retrying"),
        (4, timedelta(0), ORANGE, RETRYING, "Retrying"),
        (4, timedelta(minutes=59), ORANGE, RETRYING, "Retrying"),
        (5, timedelta(0), RED, StatusReason.STOPPED, "Stopped"),
        (5, timedelta(minutes=59), RED, StatusReason.STOPPED, "Stopped"),
    ]
    for count, _, status in timeline[:-2]:
        attempts = "1 failed attempt" if count == 1 else f"{count} failed attempts"
        assert f"That is {attempts} in a row." in status.hover
        assert "The next attempt is due " in status.hover


def test_a_24_failure_engine_is_orange_for_20_hours_and_red_only_when_it_stops() -> None:
    """An engine that stops after 24 failures: never red before the 24th, orange from the 4th."""
    timeline = _hourly_failures(24)

    red = [(count, later) for count, later, status in timeline if status.color is RED]
    assert red == [(24, timedelta(0)), (24, timedelta(minutes=59))]
    retrying = {count for count, later, status in timeline if status.reason is RETRYING}
    assert retrying == set(range(3, 24))
    assert all(status.label == "Retrying" for count, _, status in timeline if 4 <= count < 24)


@pytest.mark.parametrize("stop_after", [5, 24])
def test_under_the_schedulers_backoff_a_failing_source_is_never_red_before_it_stops(
    stop_after: int,
) -> None:
    """The library's scheduler spaces a failing source's attempts out, up to 6 hours apart.

    Those gaps are longer than the 3-hour recent-sync window, yet the source is still tried:
    checked every 15 minutes from the first failure until the engine stops it, it is never red
    before the phase is STOPPED.
    """
    engine, clock, source = _engine(stop_after)
    plan = SourcePlan(source_key=KEY, interval=HOUR)
    failing = FakeConnector(source, before_page=_fail)
    policy = StatusPolicy.matching(engine.policy)
    attempts = [START]
    reasons = set()
    while engine.state(KEY).phase is not Phase.STOPPED:
        clock.advance(timedelta(minutes=15))
        for due in due_sources([plan], engine.states(), clock()):
            assert engine.run_cycle(due.plan.source_key, failing).outcome is Outcome.FAILED
            attempts.append(clock())
        state = engine.state(KEY)
        for status in _statuses(state, clock(), policy):
            assert (status.color is RED) is (state.phase is Phase.STOPPED), (state, status)
            reasons.add(status.reason)

    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert max(gaps) > DEFAULT_STATUS_POLICY.recent_sync  # the backoff was really tested
    assert len(attempts) == stop_after + 1
    assert RETRYING in reasons


# --- the pure rules, table-driven ---------------------------------------------------------------

TRANSIENT = ErrorInfo("TransientSourceError", "503 Service Unavailable", NOW)
NO_BACKOFF = StatusPolicy(backoff_cap=HOUR)
STOP_AT_24 = StatusPolicy(max_consecutive_failures=24)


def _classify(
    *,
    failures: int = 0,
    synced: timedelta,
    attempted: timedelta | None,
    **overrides: Any,
) -> SourceStatus:
    """A source synced ``synced`` ago, last attempted ``attempted`` ago, failing ``failures``."""
    arguments: dict[str, Any] = {
        "last_change": NOW - timedelta(days=1),
        "last_sync": NOW - synced,
        "last_attempt": None if attempted is None else NOW - attempted,
        "error_count": failures,
        "last_error": None
        if not failures or attempted is None
        else ErrorInfo("TransientSourceError", "503", NOW - attempted),
        "now": NOW,
    }
    arguments.update(overrides)
    return classify_status(**arguments)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        # Hourly failures under the default policies, looked at just after each one.
        ({"failures": 1, "synced": 1 * HOUR, "attempted": timedelta(0)}, (GREEN, ACTIVE)),
        ({"failures": 2, "synced": 2 * HOUR, "attempted": timedelta(0)}, (GREEN, ACTIVE)),
        ({"failures": 3, "synced": 3 * HOUR, "attempted": timedelta(0)}, (GREEN, ACTIVE)),
        ({"failures": 4, "synced": 4 * HOUR, "attempted": timedelta(0)}, (ORANGE, RETRYING)),
        (
            {"failures": 5, "synced": 5 * HOUR, "attempted": timedelta(0)},
            (RED, StatusReason.STOPPED),
        ),
        # The same with the engine's phase: only STOPPED is red, whatever the count.
        (
            {"failures": 9, "synced": 9 * HOUR, "attempted": timedelta(0), "phase": Phase.ACTIVE},
            (ORANGE, RETRYING),
        ),
        (
            {"failures": 5, "synced": 5 * HOUR, "attempted": HOUR, "phase": Phase.STOPPED},
            (RED, StatusReason.STOPPED),
        ),
        # A status policy that stops after 24: orange up to the 23rd failure, red at the 24th.
        (
            {"failures": 23, "synced": 23 * HOUR, "attempted": timedelta(0), "policy": STOP_AT_24},
            (ORANGE, RETRYING),
        ),
        (
            {"failures": 24, "synced": 24 * HOUR, "attempted": timedelta(0), "policy": STOP_AT_24},
            (RED, StatusReason.STOPPED),
        ),
        # The scheduler stopped attempting: no attempt for longer than 3 hours, no failure.
        ({"synced": 3 * HOUR, "attempted": 3 * HOUR}, (GREEN, ACTIVE)),
        ({"synced": 3 * HOUR + US, "attempted": 3 * HOUR + US}, (RED, StatusReason.SYNC_OVERDUE)),
        ({"synced": 5 * HOUR, "attempted": None}, (RED, StatusReason.SYNC_OVERDUE)),
        # ... or after failures: the next attempt was due (backoff: 2 h after the 2nd failure)
        # and has not come for 2 more hours.
        ({"failures": 2, "synced": 5 * HOUR, "attempted": 4 * HOUR}, (ORANGE, RETRYING)),
        (
            {"failures": 2, "synced": 5 * HOUR, "attempted": 4 * HOUR + US},
            (RED, StatusReason.SYNC_OVERDUE),
        ),
        # A scheduler that does not back off owes an attempt an hour after the last.
        (
            {"failures": 2, "synced": 5 * HOUR, "attempted": 3 * HOUR + US, "policy": NO_BACKOFF},
            (RED, StatusReason.SYNC_OVERDUE),
        ),
        # Attempted recently, neither completed nor failed (a long cycle, or a lost worker).
        ({"synced": 5 * HOUR, "attempted": HOUR}, (ORANGE, RETRYING)),
        # Waiting as the source asked is not silence; once the wait is over, it is again.
        (
            {"synced": 9 * HOUR, "attempted": 8 * HOUR, "not_before": NOW + HOUR},
            (ORANGE, RETRYING),
        ),
        (
            {"synced": 9 * HOUR, "attempted": 8 * HOUR, "not_before": NOW - 2 * HOUR},
            (ORANGE, RETRYING),
        ),
        (
            {"synced": 9 * HOUR, "attempted": 8 * HOUR, "not_before": NOW - 2 * HOUR - US},
            (RED, StatusReason.SYNC_OVERDUE),
        ),
    ],
    ids=repr,
)
def test_red_only_when_stopped_or_silent(
    case: dict[str, Any], expected: tuple[StatusColor, StatusReason]
) -> None:
    """Each case gets its colour and reason: failing attempts are never overdue."""
    status = _classify(**case)
    assert (status.color, status.reason) == expected


def test_retrying_hover_counts_the_failures_and_gives_the_next_attempt() -> None:
    """Orange "Retrying": why, the failure, how many in a row, and when the next attempt is."""
    status = _classify(failures=4, synced=4 * HOUR, attempted=timedelta(minutes=3))
    assert status.label == "Retrying"
    assert status.notes == (StatusNote.LAST_ATTEMPT_FAILED,)
    assert status.hover == (
        "No cycle has completed in the last 3 hours, so recent changes at the source have not "
        "been seen, but synchronization is still being attempted. "
        "The last attempt failed at 2026-11-13 09:38:07 UTC, 3 minutes ago, with "
        "TransientSourceError: 503. "
        "That is 4 failed attempts in a row; synchronization stops after 5. "
        "The next attempt is due at 2026-11-13 15:38:07 UTC, 6 hours after the last: attempts "
        "are spaced out while they fail. "
        "Last completed sync: 2026-11-13 05:41:07 UTC, 4 hours ago. "
        "Last change at the source: 2026-11-12 09:41:07 UTC, 1 day ago."
    )


def test_the_next_attempt_after_one_failure_is_an_interval_after_it() -> None:
    """One failure, no backoff yet: the next attempt is due an expected interval later."""
    status = _classify(failures=1, synced=HOUR, attempted=timedelta(minutes=3))
    assert "That is 1 failed attempt in a row; synchronization stops after 5. " in status.hover
    assert "The next attempt is due at 2026-11-13 10:38:07 UTC. " in status.hover


def test_a_next_attempt_that_has_not_come_yet_is_due_now() -> None:
    """Past its time but within the window, the next attempt reads "due now", not overdue."""
    status = _classify(failures=1, synced=2 * HOUR, attempted=90 * timedelta(minutes=1))
    assert status.color is GREEN
    assert "The next attempt is due now (it was due at 2026-11-13 09:11:07 UTC)." in status.hover


def test_a_wait_the_source_asked_for_sets_the_next_attempt() -> None:
    """Rate limited past the backoff: the next attempt is when the source said, and why."""
    status = _classify(
        failures=1, synced=HOUR, attempted=timedelta(minutes=3), not_before=NOW + 2 * HOUR
    )
    assert (
        "The source asked to wait, so the next attempt is due at 2026-11-13 11:41:07 UTC."
    ) in status.hover
    assert "asked not to be called" not in status.hover
    assert status.notes == (StatusNote.LAST_ATTEMPT_FAILED, StatusNote.WAITING_FOR_SOURCE)


def _stored(*, synced: timedelta, attempted: timedelta, **fields: Any) -> SourceState:
    """An active source's stored state: synced and last attempted that long before NOW."""
    return SourceState(
        key=KEY,
        phase=Phase.ACTIVE,
        last_change=NOW - timedelta(days=1),
        last_sync=NOW - synced,
        last_attempt=NOW - attempted,
        **fields,
    )


def test_a_scheduler_that_stopped_attempting_is_red_and_says_since_when() -> None:
    """No attempt for over 3 hours: red overdue, naming the last attempt and the missed one."""
    status = status_of(_stored(synced=5 * HOUR, attempted=5 * HOUR + timedelta(minutes=2)), now=NOW)
    assert (status.color, status.reason, status.label) == (
        RED,
        StatusReason.SYNC_OVERDUE,
        "Overdue",
    )
    assert status.hover.startswith(
        "Synchronization is overdue: no attempt has been made since 2026-11-13 04:41:07 UTC, "
        "5 hours ago, though cycles should run every hour. "
        "The next attempt was due at 2026-11-13 05:41:07 UTC, 4 hours ago. "
        "The scheduler that starts the cycles may not be running."
    )


def test_a_failing_source_whose_scheduler_stopped_is_red_with_its_last_error() -> None:
    """Failing, then silent past the backoff: red overdue, and the hover keeps the failure."""
    state = _stored(
        synced=9 * HOUR,
        attempted=8 * HOUR,
        consecutive_failures=1,
        last_error=ErrorInfo("TransientSourceError", "503", NOW - 8 * HOUR),
    )
    status = status_of(state, now=NOW)
    assert (status.color, status.reason) == (RED, StatusReason.SYNC_OVERDUE)
    assert "no attempt has been made since 2026-11-13 01:41:07 UTC, 8 hours ago" in status.hover
    assert "The last attempt failed at 2026-11-13 01:41:07 UTC" in status.hover
    assert "That is 1 failed attempt in a row." in status.hover
    assert status.notes == (StatusNote.LAST_ATTEMPT_FAILED,)


def test_an_attempt_neither_completed_nor_failed_says_so() -> None:
    """Started after the last sync, with no failure since: orange, and the hover says when."""
    status = _classify(synced=5 * HOUR, attempted=HOUR)
    assert status.label == "Retrying"
    assert (
        "The last attempt started at 2026-11-13 08:41:07 UTC, 1 hour ago, and has neither "
        "completed nor failed."
    ) in status.hover
    assert status.notes == ()


def test_status_of_reads_the_last_attempt() -> None:
    """status_of passes the state's last_attempt: the same facts give the same status."""
    state = _stored(synced=5 * HOUR, attempted=HOUR)
    assert status_of(state, now=NOW) == _classify(
        synced=5 * HOUR, attempted=HOUR, phase=Phase.ACTIVE
    )
    assert status_of(state, now=NOW).reason is RETRYING


def test_a_cycle_that_holds_its_lease_is_running_not_overdue() -> None:
    """A long cycle still holding its lease is being attempted: orange, and the hover says so."""
    last_sync, started = NOW - 5 * HOUR, NOW - 4 * HOUR
    running = classify_status(
        last_change=last_sync,
        last_sync=last_sync,
        last_attempt=started,
        now=NOW,
        phase=Phase.ACTIVE,
        running_until=NOW + timedelta(minutes=5),
    )
    assert (running.color, running.reason) == (ORANGE, RETRYING)
    assert "A cycle has been running since 2026-11-13 05:41:07 UTC, 4 hours ago." in running.hover
    # The same cycle whose lease has lapsed (its worker died) is silence: overdue.
    lapsed = classify_status(
        last_change=last_sync,
        last_sync=last_sync,
        last_attempt=started,
        now=NOW,
        phase=Phase.ACTIVE,
        running_until=NOW,
    )
    assert (lapsed.color, lapsed.reason) == (RED, StatusReason.SYNC_OVERDUE)


def test_a_five_hour_cycle_is_never_red_while_it_runs() -> None:
    """Driven by the real engine: a cycle of 300 pages a minute apart, classified as it runs."""
    engine, clock, source = _engine(stop_after=5)
    for number in range(300):
        source.put({"id": f"inv-{number:03d}", "updated_at": "2026-11-13T08:00:00.000Z"})
    colours: list[StatusColor] = []

    def a_minute_a_page(page: int) -> None:
        clock.advance(timedelta(minutes=1))
        colours.append(status_of(engine.state(KEY), now=clock()).color)

    result = engine.run_cycle(KEY, FakeConnector(source, page_size=1, before_page=a_minute_a_page))
    assert result.outcome is Outcome.COMPLETED
    assert clock() - START > 5 * HOUR
    assert RED not in colours
    assert colours[-1] is ORANGE  # past recent_sync with no completed cycle: retrying
