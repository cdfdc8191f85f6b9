"""classify_status(): every colour and reason at and around each threshold, and the hover text."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import pytest

from incsync.errors import ConfigurationError, NaiveDatetimeError
from incsync.history import HistorySummary
from incsync.policy import SyncPolicy
from incsync.state import ErrorInfo, Phase, SourceState
from incsync.status import (
    DEFAULT_STATUS_POLICY,
    REASONS,
    SourceStatus,
    StatusColor,
    StatusIcon,
    StatusNote,
    StatusPolicy,
    StatusReason,
    classify_status,
    status_of,
    statuses_of,
)

UTC = timezone.utc
NOW = datetime(2026, 11, 13, 9, 41, 7, tzinfo=UTC)
RECENT_SYNC = NOW - timedelta(minutes=12)
RECENT_CHANGE = NOW - timedelta(days=2)
OLD_CHANGE = NOW - timedelta(days=12)
US = timedelta(microseconds=1)
TRANSIENT = ErrorInfo(
    "TransientSourceError", "connection reset by peer", NOW - timedelta(minutes=5)
)
AUTH = ErrorInfo(
    "TokenRevokedError",
    "401: token expired",
    NOW - timedelta(minutes=5),
    retryable=False,
    auth=True,
)


def classify(**overrides: Any) -> SourceStatus:
    arguments: dict[str, Any] = {
        "last_change": RECENT_CHANGE,
        "last_sync": RECENT_SYNC,
        "error_count": 0,
        "now": NOW,
    }
    arguments.update(overrides)
    return classify_status(**arguments)


@pytest.mark.parametrize(
    ("overrides", "color", "reason"),
    [
        # Last sync: recent up to and including 3 hours.
        ({"last_sync": NOW}, StatusColor.GREEN, StatusReason.RECENT_CHANGES),
        ({"last_sync": NOW - timedelta(hours=1)}, StatusColor.GREEN, StatusReason.RECENT_CHANGES),
        ({"last_sync": NOW - timedelta(hours=2)}, StatusColor.GREEN, StatusReason.RECENT_CHANGES),
        (
            {"last_sync": NOW - timedelta(hours=2, minutes=59, seconds=59)},
            StatusColor.GREEN,
            StatusReason.RECENT_CHANGES,
        ),
        ({"last_sync": NOW - timedelta(hours=3)}, StatusColor.GREEN, StatusReason.RECENT_CHANGES),
        ({"last_sync": NOW - timedelta(hours=3) - US}, StatusColor.RED, StatusReason.SYNC_OVERDUE),
        ({"last_sync": NOW - timedelta(days=3)}, StatusColor.RED, StatusReason.SYNC_OVERDUE),
        # Last change: recent up to and including 7 days.
        (
            {"last_change": NOW - timedelta(days=6)},
            StatusColor.GREEN,
            StatusReason.RECENT_CHANGES,
        ),
        (
            {"last_change": NOW - timedelta(days=7)},
            StatusColor.GREEN,
            StatusReason.RECENT_CHANGES,
        ),
        (
            {"last_change": NOW - timedelta(days=7) - US},
            StatusColor.ORANGE,
            StatusReason.NO_RECENT_CHANGES,
        ),
        (
            {"last_change": NOW - timedelta(days=400)},
            StatusColor.ORANGE,
            StatusReason.NO_RECENT_CHANGES,
        ),
        ({"last_change": None}, StatusColor.ORANGE, StatusReason.NO_RECENT_CHANGES),
        # Overdue wins over the age of the last change.
        (
            {"last_change": None, "last_sync": NOW - timedelta(hours=4)},
            StatusColor.RED,
            StatusReason.SYNC_OVERDUE,
        ),
        # Never synced.
        ({"last_sync": None}, StatusColor.GREY, StatusReason.STARTING),
        ({"last_sync": None, "last_change": None}, StatusColor.GREY, StatusReason.STARTING),
        # Failures: below the threshold the colour stays; at it the source is stopped.
        ({"error_count": 1}, StatusColor.GREEN, StatusReason.RECENT_CHANGES),
        ({"error_count": 4}, StatusColor.GREEN, StatusReason.RECENT_CHANGES),
        ({"error_count": 5}, StatusColor.RED, StatusReason.STOPPED),
        ({"error_count": 50}, StatusColor.RED, StatusReason.STOPPED),
        (
            {"error_count": 2, "last_change": OLD_CHANGE},
            StatusColor.ORANGE,
            StatusReason.NO_RECENT_CHANGES,
        ),
        ({"error_count": 2, "last_sync": None}, StatusColor.GREY, StatusReason.STARTING),
        # Credentials rejected: the engine stops after 2, and so does the status.
        ({"error_count": 1, "last_error": AUTH}, StatusColor.GREEN, StatusReason.RECENT_CHANGES),
        ({"error_count": 2, "last_error": AUTH}, StatusColor.RED, StatusReason.STOPPED),
        # Phases.
        ({"phase": Phase.ACTIVE}, StatusColor.GREEN, StatusReason.RECENT_CHANGES),
        ({"phase": Phase.NEW}, StatusColor.GREY, StatusReason.STARTING),
        ({"phase": Phase.RESETTING}, StatusColor.GREY, StatusReason.RESETTING),
        ({"phase": Phase.RESETTING, "last_sync": None}, StatusColor.GREY, StatusReason.RESETTING),
        ({"phase": Phase.CANCELLED}, StatusColor.GREY, StatusReason.CANCELLED),
        ({"phase": Phase.STOPPED}, StatusColor.RED, StatusReason.STOPPED),
        ({"phase": Phase.STOPPED, "error_count": 0}, StatusColor.RED, StatusReason.STOPPED),
        # Precedence: cancel beats the failure count, reset beats overdue.
        (
            {"phase": Phase.CANCELLED, "error_count": 9},
            StatusColor.GREY,
            StatusReason.CANCELLED,
        ),
        # A known phase is the engine's record: only STOPPED is stopped, whatever the count.
        ({"phase": Phase.RESETTING, "error_count": 5}, StatusColor.GREY, StatusReason.RESETTING),
        (
            {"phase": Phase.ACTIVE, "error_count": 50},
            StatusColor.GREEN,
            StatusReason.RECENT_CHANGES,
        ),
        (
            {"phase": Phase.ACTIVE, "error_count": 2, "last_error": AUTH},
            StatusColor.GREEN,
            StatusReason.RECENT_CHANGES,
        ),
        (
            {"phase": Phase.RESETTING, "last_sync": NOW - timedelta(days=9)},
            StatusColor.GREY,
            StatusReason.RESETTING,
        ),
        (
            {"phase": Phase.CANCELLED, "last_sync": NOW - timedelta(days=9)},
            StatusColor.GREY,
            StatusReason.CANCELLED,
        ),
        # Records set aside and a source asking to wait do not change the colour.
        ({"rejected": 3}, StatusColor.GREEN, StatusReason.RECENT_CHANGES),
        (
            {"not_before": NOW + timedelta(hours=1)},
            StatusColor.GREEN,
            StatusReason.RECENT_CHANGES,
        ),
        # Clock skew: future times count as now.
        (
            {"last_sync": NOW + timedelta(minutes=4)},
            StatusColor.GREEN,
            StatusReason.RECENT_CHANGES,
        ),
        ({"last_sync": NOW + timedelta(days=2)}, StatusColor.GREEN, StatusReason.RECENT_CHANGES),
        (
            {"last_change": NOW + timedelta(days=2)},
            StatusColor.GREEN,
            StatusReason.RECENT_CHANGES,
        ),
    ],
    ids=lambda value: repr(value) if isinstance(value, dict) else value.value,
)
def test_colour_and_reason(
    overrides: dict[str, Any], color: StatusColor, reason: StatusReason
) -> None:
    """Each case gets the documented colour and reason; label and icon follow the reason."""
    status = classify(**overrides)
    assert (status.color, status.reason) == (color, reason)
    assert status.icon is REASONS[reason][1]
    assert status.label.startswith(REASONS[reason][2])


def test_every_reason_has_its_own_icon_and_label() -> None:
    """No two reasons share a shape or a label, so colour is never the only signal."""
    icons = [icon for _, icon, _ in REASONS.values()]
    labels = [label for _, _, label in REASONS.values()]
    assert set(REASONS) == set(StatusReason)
    assert len(set(icons)) == len(icons) == len(StatusIcon)
    assert len(set(labels)) == len(labels)


def test_the_documented_example_from_the_issue() -> None:
    """The call hosts write gives a colour value and hover text with both exact times."""
    status = classify_status(last_change=OLD_CHANGE, last_sync=RECENT_SYNC, error_count=0, now=NOW)
    assert status.color.value == "orange"
    assert status.last_change is not None
    assert status.last_sync is not None
    assert status.last_change.relative == "12 days ago"
    assert status.last_sync.relative == "12 minutes ago"
    assert status.hover == (
        "Synchronization is running, but the source has not changed in the last 7 days. "
        "Last completed sync: 2026-11-13 09:29:07 UTC, 12 minutes ago. "
        "Last change at the source: 2026-11-01 09:41:07 UTC, 12 days ago."
    )


def test_green_hover_says_it_is_running_and_changing() -> None:
    """Green's hover states the meaning and both exact times."""
    status = classify()
    assert status.label == "Active"
    assert status.hover.startswith(
        "Synchronization is running, and the source changed in the last 7 days."
    )
    assert "2026-11-11 09:41:07 UTC, 2 days ago" in status.hover
    assert status.notes == ()


def test_a_source_that_never_changed_is_orange_and_says_so() -> None:
    """Synced but no change ever seen: orange, and the hover says none has been seen."""
    status = classify(last_change=None)
    assert status.last_change is None
    assert "no change at the source has been seen yet" in status.hover


def test_a_source_never_synced_is_grey_starting() -> None:
    """No completed cycle: grey, "Starting", and the hover says so and names the interval."""
    status = classify(last_sync=None, last_change=None)
    assert status.label == "Starting"
    assert status.last_sync is None
    assert status.hover == (
        "Synchronization is starting (cycles run every hour). "
        "No synchronization cycle has completed yet. "
        "No change at the source has been seen yet."
    )


def test_overdue_without_errors_blames_the_scheduler() -> None:
    """No attempt for over 3 hours and no error: red, clock icon, the scheduler may be down."""
    status = classify(last_sync=NOW - timedelta(hours=5))
    assert status.label == "Overdue"
    assert status.icon is StatusIcon.CLOCK
    assert "no attempt has been made since 2026-11-13 04:41:07 UTC, 5 hours ago" in status.hover
    assert "The next attempt was due at 2026-11-13 05:41:07 UTC, 4 hours ago." in status.hover
    assert "The scheduler that starts the cycles may not be running." in status.hover


def test_failing_past_the_recent_sync_window_is_orange_retrying_not_overdue() -> None:
    """No completed cycle for 5 hours, but the last attempt failed minutes ago: still tried.

    Orange "Retrying" (attempted recently, no recent change seen), with the failure in the hover
    and no word of the scheduler, which is evidently running.
    """
    status = classify(last_sync=NOW - timedelta(hours=5), error_count=2, last_error=TRANSIENT)
    assert (status.color, status.reason) == (StatusColor.ORANGE, StatusReason.RETRYING)
    assert status.label == "Retrying"
    assert status.icon is StatusIcon.REDO
    assert "scheduler" not in status.hover
    assert "connection reset by peer" in status.hover
    assert status.notes == (StatusNote.LAST_ATTEMPT_FAILED,)


@pytest.mark.parametrize("count", [1, 2])
def test_failures_below_the_threshold_keep_the_colour_and_say_it_will_retry(count: int) -> None:
    """One or two failures: last success's colour, ", retrying", when, why, and the next try.

    After the second failure in a row attempts are spaced out (2 hours), as the scheduler does.
    """
    status = classify(error_count=count, last_error=TRANSIENT)
    assert status.color is StatusColor.GREEN
    assert status.label == "Active, retrying"
    assert status.notes == (StatusNote.LAST_ATTEMPT_FAILED,)
    attempts = "1 failed attempt" if count == 1 else "2 failed attempts"
    next_attempt = (
        "The next attempt is due at 2026-11-13 10:36:07 UTC."
        if count == 1
        else "The next attempt is due at 2026-11-13 11:36:07 UTC, 2 hours after the last: "
        "attempts are spaced out while they fail."
    )
    assert (
        "The last attempt failed at 2026-11-13 09:36:07 UTC, 5 minutes ago, with "
        "TransientSourceError: connection reset by peer. "
        f"That is {attempts} in a row; synchronization stops after 5. {next_attempt}"
    ) in status.hover


def test_a_failure_without_details_still_says_the_last_attempt_failed() -> None:
    """A count without an ErrorInfo still gives a hover that the last attempt failed."""
    status = classify(error_count=1)
    assert "The last attempt failed. That is 1 failed attempt in a row" in status.hover


def test_an_error_is_ignored_once_a_cycle_has_completed() -> None:
    """A last_error with no failure since (count 0) belongs to the past: nothing is said."""
    status = classify(error_count=0, last_error=TRANSIENT)
    assert "failed" not in status.hover
    assert status.notes == ()


def test_a_failure_while_the_source_asked_to_wait_says_when_it_retries() -> None:
    """Rate limited: the hover says the retry happens at the time the source asked for."""
    status = classify(error_count=1, last_error=TRANSIENT, not_before=NOW + timedelta(hours=2))
    assert "The source asked to wait, so the next attempt is due at 2026-11-13 11:41:07 UTC." in (
        status.hover
    )
    assert status.notes == (StatusNote.LAST_ATTEMPT_FAILED, StatusNote.WAITING_FOR_SOURCE)


def test_a_wait_shorter_than_the_interval_is_mentioned_beside_the_next_attempt() -> None:
    """A wait that ends before the next scheduled attempt does not move it; both are said."""
    status = classify(error_count=1, last_error=TRANSIENT, not_before=NOW + timedelta(minutes=30))
    assert (
        "The next attempt is due at 2026-11-13 10:36:07 UTC. "
        "The source asked not to be called before 2026-11-13 10:11:07 UTC."
    ) in status.hover
    assert status.notes == (StatusNote.LAST_ATTEMPT_FAILED, StatusNote.WAITING_FOR_SOURCE)


def test_a_wait_without_failure_is_mentioned() -> None:
    """A wait in force is mentioned on its own; one in the past is not."""
    waiting = classify(not_before=NOW + timedelta(hours=1))
    assert "The source asked not to be called before 2026-11-13 10:41:07 UTC." in waiting.hover
    assert waiting.notes == (StatusNote.WAITING_FOR_SOURCE,)
    assert classify(not_before=NOW - timedelta(hours=1)).notes == ()


def test_credentials_rejected_say_waiting_will_not_help() -> None:
    """An AuthError below its threshold warns that waiting will not fix it."""
    status = classify(error_count=1, last_error=AUTH)
    assert "synchronization stops after 2" in status.hover
    assert "Waiting will not fix this: check the connection's credentials" in status.hover


def test_other_permanent_errors_say_waiting_may_not_help() -> None:
    """A non-retryable error that is not about credentials gets a softer warning."""
    error = ErrorInfo("PermanentSourceError", "400 bad filter", NOW, retryable=False)
    status = classify(error_count=1, last_error=error)
    assert "Waiting alone may not fix this kind of error." in status.hover


def test_stopped_hover_says_why_and_what_to_do() -> None:
    """Red stopped: repeated errors, the last one, the count, and to resume once fixed."""
    status = classify(phase=Phase.STOPPED, error_count=5, last_error=TRANSIENT)
    assert status.label == "Stopped"
    assert status.hover.startswith(
        "Synchronization has stopped because of repeated errors connecting to the source. "
        "The last attempt failed at 2026-11-13 09:36:07 UTC, 5 minutes ago, with "
        "TransientSourceError: connection reset by peer. "
        "It stopped after 5 failed attempts in a row. Fix the cause, then resume the source."
    )
    assert "retry" not in status.hover
    assert status.notes == ()


def test_cancelled_is_neutral_and_says_no_transactions_were_deleted() -> None:
    """Cancelled: grey, pause icon, and the hover reassures that nothing was deleted."""
    status = classify(phase=Phase.CANCELLED, error_count=2, last_error=TRANSIENT)
    assert status.icon is StatusIcon.PAUSE
    assert status.label == "Cancelled"
    assert "No transactions were deleted." in status.hover
    assert "retry" not in status.hover


def test_resetting_says_everything_is_read_again_and_nothing_deleted() -> None:
    """Resetting: grey, refresh icon, re-reads everything, deletes nothing."""
    status = classify(phase=Phase.RESETTING)
    assert status.icon is StatusIcon.REFRESH
    assert "re-reads every record" in status.hover
    assert "No transactions were deleted." in status.hover


@pytest.mark.parametrize(("count", "words"), [(1, "1 record aside because it"), (2, "2 records")])
def test_records_set_aside_keep_the_colour_and_say_how_many_and_where(
    count: int, words: str
) -> None:
    """Set-aside records: healthy colour; the hover counts them and says where they are listed."""
    status = classify(rejected=count)
    assert status.color is StatusColor.GREEN
    assert words in status.hover
    assert "SyncEngine.rejected()" in status.hover
    assert status.notes == (StatusNote.RECORDS_SET_ASIDE,)


def test_where_set_aside_records_are_listed_is_configurable() -> None:
    """A host with its own screen for set-aside records points there instead."""
    policy = StatusPolicy(set_aside_hint="Open Settings > Import > Skipped records.")
    status = classify(rejected=1, policy=policy)
    assert status.hover.count("Open Settings > Import > Skipped records.") == 1


def test_future_sync_time_points_at_this_hosts_clock() -> None:
    """A last sync well in the future: still healthy, the hover suspects this host's clock."""
    status = classify(last_sync=NOW + timedelta(hours=3))
    assert status.notes == (StatusNote.CLOCK_SKEW,)
    assert "The last sync is dated 3 hours in the future" in status.hover


def test_future_change_time_points_at_the_sources_clock() -> None:
    """A last change well in the future: the hover suspects the source's clock."""
    status = classify(last_change=NOW + timedelta(days=2))
    assert status.notes == (StatusNote.CLOCK_SKEW,)
    assert "The last change is dated 2 days in the future" in status.hover


def test_small_future_skew_is_not_mentioned() -> None:
    """Within the tolerance a future time is "just now" and no skew is reported."""
    status = classify(last_sync=NOW + timedelta(minutes=5), last_change=NOW + timedelta(seconds=1))
    assert status.notes == ()
    assert status.last_sync is not None
    assert status.last_sync.relative == "just now"


def test_clock_skew_backwards_reads_as_old() -> None:
    """If this host's clock ran ahead (now is late), times look old and the thresholds apply."""
    status = classify(now=NOW + timedelta(hours=4))
    assert status.reason is StatusReason.SYNC_OVERDUE


def test_exact_times_follow_the_display_zone_across_dst() -> None:
    """Hover and times show the host's zone, unambiguous in the repeated hour."""
    first = datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    second = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
    status = classify(
        last_change=first,
        last_sync=second,
        now=second + timedelta(minutes=10),
        zone="America/New_York",
    )
    assert status.last_change is not None
    assert status.last_sync is not None
    assert status.last_change.exact == "2026-11-01 01:30:00 EDT (UTC-04:00)"
    assert status.last_sync.exact == "2026-11-01 01:30:00 EST (UTC-05:00)"
    assert status.last_sync.iso == "2026-11-01T06:30:00+00:00"
    assert "2026-11-01 01:30:00 EDT (UTC-04:00), 1 hour ago" in status.hover


def test_a_long_error_message_is_folded_and_cut() -> None:
    """Multi-line messages become one line; very long ones end in an ellipsis."""
    error = ErrorInfo("BadResponseError", "line one\n\n  line two " + "x" * 500, NOW)
    status = classify(error_count=1, last_error=error)
    assert "line one line two xxx" in status.hover
    assert "x" * 300 not in status.hover
    assert "…" in status.hover


def test_thresholds_are_configurable() -> None:
    """A daily source with a 30-hour recent-sync window and 30-day recent changes."""
    policy = StatusPolicy(
        expected_interval=timedelta(days=1),
        recent_sync=timedelta(hours=30),
        recent_change=timedelta(days=30),
        max_consecutive_failures=3,
    )
    assert classify(last_sync=NOW - timedelta(hours=29), policy=policy).color is StatusColor.GREEN
    assert classify(last_change=NOW - timedelta(days=29), policy=policy).color is (
        StatusColor.GREEN
    )
    assert classify(error_count=3, policy=policy).reason is StatusReason.STOPPED
    overdue = classify(last_sync=NOW - timedelta(hours=31), policy=policy)
    assert overdue.reason is StatusReason.SYNC_OVERDUE
    assert "1 day ago, though cycles should run every day" in overdue.hover
    assert "The next attempt was due at 2026-11-13 02:41:07 UTC, 7 hours ago." in overdue.hover


def test_the_default_policy_matches_the_engine() -> None:
    """The defaults stop at the engine's thresholds, and matching() copies changed ones."""
    assert DEFAULT_STATUS_POLICY.max_consecutive_failures == SyncPolicy().max_consecutive_failures
    assert DEFAULT_STATUS_POLICY.max_auth_failures == SyncPolicy().max_auth_failures
    engine = SyncPolicy(max_consecutive_failures=8, max_auth_failures=3)
    policy = StatusPolicy.matching(engine, recent_sync=timedelta(hours=4))
    assert (policy.max_consecutive_failures, policy.max_auth_failures) == (8, 3)
    assert policy.recent_sync == timedelta(hours=4)


@pytest.mark.parametrize(
    "fields",
    [
        {"expected_interval": timedelta(0)},
        {"recent_sync": timedelta(seconds=-1)},
        {"recent_change": timedelta(0)},
        {"max_consecutive_failures": 0},
        {"max_auth_failures": True},
        {"future_tolerance": timedelta(seconds=-1)},
        {"recent_sync": timedelta(minutes=30)},  # shorter than the hourly interval
    ],
    ids=repr,
)
def test_invalid_policies_are_refused(fields: dict[str, Any]) -> None:
    """A policy no source could be judged by is a configuration error."""
    with pytest.raises(ConfigurationError):
        StatusPolicy(**fields)


@pytest.mark.parametrize("field", ["now", "last_sync", "last_change", "not_before"])
def test_naive_datetimes_are_refused_naming_the_argument(field: str) -> None:
    """A naive datetime anywhere is a NaiveDatetimeError that names it."""
    naive = datetime(2026, 11, 13, 9, 0)  # noqa: DTZ001 - the naive input under test
    with pytest.raises(NaiveDatetimeError, match=f"^{field} is a naive datetime"):
        classify(**{field: naive})


@pytest.mark.parametrize(("field", "value"), [("error_count", -1), ("rejected", -2)])
def test_negative_counts_are_refused(field: str, value: int) -> None:
    """Counts below zero are a configuration error."""
    with pytest.raises(ConfigurationError, match=field):
        classify(**{field: value})


def test_an_unknown_display_zone_is_refused() -> None:
    """The display zone must be an IANA name."""
    with pytest.raises(ConfigurationError, match="Mars/Base"):
        classify(zone="Mars/Base")


def test_status_of_reads_every_fact_from_the_state() -> None:
    """status_of passes phase, counts, error, wait and set-aside records from a SourceState."""
    state = SourceState(
        key="acme/quickbooks",
        phase=Phase.ACTIVE,
        last_change=OLD_CHANGE,
        last_sync=RECENT_SYNC,
        consecutive_failures=1,
        last_error=TRANSIENT,
        not_before=NOW + timedelta(minutes=10),
        last_cycle_rejected=4,
    )
    status = status_of(state, now=NOW)
    assert status == classify(
        last_change=OLD_CHANGE,
        error_count=1,
        phase=Phase.ACTIVE,
        last_error=TRANSIENT,
        not_before=NOW + timedelta(minutes=10),
        rejected=4,
    )
    assert status.color is StatusColor.ORANGE
    assert status.notes == (
        StatusNote.LAST_ATTEMPT_FAILED,
        StatusNote.WAITING_FOR_SOURCE,
        StatusNote.RECORDS_SET_ASIDE,
    )


@pytest.mark.parametrize(
    ("phase", "reason"),
    [
        (Phase.NEW, StatusReason.STARTING),
        (Phase.ACTIVE, StatusReason.RECENT_CHANGES),
        (Phase.RESETTING, StatusReason.RESETTING),
        (Phase.CANCELLED, StatusReason.CANCELLED),
        (Phase.STOPPED, StatusReason.STOPPED),
    ],
)
def test_status_of_each_phase(phase: Phase, reason: StatusReason) -> None:
    """Each phase of a stored state maps to its documented reason."""
    state = SourceState(key="k", phase=phase, last_change=RECENT_CHANGE, last_sync=RECENT_SYNC)
    assert status_of(state, now=NOW).reason is reason


def test_statuses_of_keeps_order_and_keys() -> None:
    """statuses_of gives (key, status) pairs in the order of the states, in one display zone."""
    states = [
        SourceState(key="b", last_sync=RECENT_SYNC, phase=Phase.ACTIVE),
        SourceState(key="a"),
    ]
    pairs = statuses_of(states, now=NOW, zone="Europe/Berlin")
    assert [key for key, _ in pairs] == ["b", "a"]
    assert pairs[0][1].last_sync is not None
    assert pairs[0][1].last_sync.exact.endswith("CET (UTC+01:00)")


def test_the_status_value_is_frozen() -> None:
    """A status cannot be changed after the fact; attrs.evolve makes a new one."""
    status = classify()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        status.label = "Fine"  # type: ignore[misc]
    assert attrs.evolve(status, label="Fine").label == "Fine"


@pytest.mark.parametrize("zone", ["UTC", "Asia/Tokyo", "America/New_York"])
def test_the_ends_of_the_datetime_range_do_not_break_the_classifier(zone: str) -> None:
    """Any pairing of the first and last representable instants still gives a status."""
    first = datetime.min.replace(tzinfo=UTC)
    last = datetime.max.replace(tzinfo=UTC)
    for now in (first, last):
        for when in (first, last):
            status = classify(
                last_change=when, last_sync=when, not_before=when, error_count=1, now=now, zone=zone
            )
            assert status.hover


def test_a_source_the_engine_still_retries_is_not_called_stopped() -> None:
    """status_of takes "stopped" from the phase: six failures under an engine that stops at ten.

    The state says ACTIVE; the status must not turn red, and its hover must not claim that
    synchronization stops after five (the status policy's default) while it has not.
    """
    engine = SyncPolicy(max_consecutive_failures=10)
    state = SourceState(
        key="acme/quickbooks",
        phase=Phase.ACTIVE,
        last_change=RECENT_CHANGE,
        last_sync=NOW - timedelta(hours=2),
        consecutive_failures=6,
        last_error=TRANSIENT,
    )
    assert engine.max_consecutive_failures > state.consecutive_failures

    status = status_of(state, now=NOW)

    assert (status.color, status.reason) == (StatusColor.GREEN, StatusReason.RECENT_CHANGES)
    assert status.label == "Active, retrying"
    assert "stopped" not in status.hover
    assert "stops after" not in status.hover
    assert "That is 6 failed attempts in a row." in status.hover
    assert "The next attempt is due at 2026-11-13 15:36:07 UTC, 6 hours after the last" in (
        status.hover
    )


@pytest.mark.parametrize(
    ("summary", "sentence"),
    [
        (HistorySummary(completed=23, failed=1), "Last 24 cycles: 23 completed, 1 failed."),
        (
            HistorySummary(completed=1, failed=2, interrupted=3),
            "Last 6 cycles: 1 completed, 2 failed, 3 interrupted.",
        ),
        (HistorySummary(interrupted=2), "Last 2 cycles: 2 interrupted."),
        (HistorySummary(failed=1), "Last cycle: failed."),
        (HistorySummary(completed=1_200), "Last 1,200 cycles: 1,200 completed."),
    ],
)
def test_the_hover_sums_up_the_latest_cycles_before_the_times(
    summary: HistorySummary, sentence: str
) -> None:
    """The summary is one sentence before the last sync and change; the colour does not move."""
    plain = classify()
    status = classify(history=summary)
    assert status.hover == plain.hover.replace(
        "Last completed sync:", f"{sentence} Last completed sync:"
    )
    assert (status.color, status.reason, status.notes) == (plain.color, plain.reason, plain.notes)


def test_a_summary_of_no_cycles_says_nothing_of_them() -> None:
    """A source that never ran a cycle has nothing to sum up: the hover is as without one."""
    assert classify(history=HistorySummary()).hover == classify().hover


def test_status_of_and_statuses_of_pass_each_source_its_own_summary() -> None:
    """A source gets the summary given for its key; one without a summary gets none."""
    synced = SourceState(
        key="a", phase=Phase.ACTIVE, last_sync=RECENT_SYNC, last_change=RECENT_CHANGE
    )
    other = attrs.evolve(synced, key="b")
    summary = HistorySummary(completed=2)
    assert "Last 2 cycles: 2 completed." in status_of(synced, now=NOW, history=summary).hover
    [(_, first), (_, second)] = statuses_of([synced, other], now=NOW, histories={"a": summary})
    assert "Last 2 cycles" in first.hover
    assert "Last 2 cycles" not in second.hover


@pytest.mark.parametrize(
    ("skew", "sentence"),
    [
        (
            timedelta(minutes=-10),
            "The source's clock is 10 minutes behind this host's; times are read on the source's "
            "clock.",
        ),
        (
            timedelta(minutes=3, seconds=5),
            "The source's clock is 3 minutes ahead of this host's; times are read on the source's "
            "clock.",
        ),
    ],
)
def test_the_hover_says_times_are_on_the_source_s_clock_when_it_runs_off(
    skew: timedelta, sentence: str
) -> None:
    """A measured skew beyond the tolerance is named, with the clock-skew note; not the colour."""
    plain = classify(history=HistorySummary(completed=1))
    status = classify(history=HistorySummary(completed=1, clock_skew=skew))
    assert sentence in status.hover
    assert status.hover == plain.hover.replace("Last cycle:", f"{sentence} Last cycle:")
    assert StatusNote.CLOCK_SKEW in status.notes
    assert (status.color, status.reason) == (plain.color, plain.reason)


@pytest.mark.parametrize(
    "skew", [None, timedelta(0), timedelta(minutes=2), timedelta(minutes=-2), timedelta(seconds=9)]
)
def test_a_skew_within_the_tolerance_is_not_mentioned(skew: timedelta | None) -> None:
    """Up to StatusPolicy.clock_skew_tolerance (2 minutes) either way, the hover says nothing."""
    status = classify(history=HistorySummary(completed=1, clock_skew=skew))
    assert status == classify(history=HistorySummary(completed=1))


def test_the_clock_skew_tolerance_is_the_policy_s() -> None:
    """A tighter tolerance names a smaller skew."""
    policy = StatusPolicy(clock_skew_tolerance=timedelta(seconds=5))
    status = classify(
        history=HistorySummary(completed=1, clock_skew=timedelta(seconds=9)), policy=policy
    )
    assert "9 seconds ahead of this host's" in status.hover
