"""Properties of the classifier: total, deterministic, and every output complete."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from incsync.humanize import exact_time, relative_time
from incsync.state import CountCheck, ErrorInfo, Lease, Phase, SourceState
from incsync.status import (
    REASONS,
    StatusColor,
    StatusNote,
    StatusPolicy,
    StatusReason,
    classify_status,
    reason_of,
    status_of,
)
from tests.strategies import aware_datetimes

UTC = timezone.utc
_ZONES = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/St_Johns",
    "Asia/Dubai",
]

# Offsets from now that straddle every threshold: seconds, hours, days, months and years, both
# ways, plus the exact boundaries themselves.
_BOUNDARIES = [
    timedelta(0),
    timedelta(seconds=59.999),
    timedelta(seconds=60),
    timedelta(minutes=5),
    timedelta(minutes=119, seconds=59),
    timedelta(hours=2),
    timedelta(hours=3),
    timedelta(days=7),
    timedelta(days=30),
    timedelta(days=365),
]
_OFFSETS = st.one_of(
    st.sampled_from(_BOUNDARIES + [-b for b in _BOUNDARIES]),
    st.timedeltas(min_value=-timedelta(days=3), max_value=timedelta(days=800)),
)


@st.composite
def _around(draw: st.DrawFn, now: datetime) -> datetime | None:
    """An aware time near ``now`` in any fixed offset, or ``None``."""
    if draw(st.booleans()) and draw(st.booleans()):
        return None
    offset = draw(_OFFSETS)
    try:
        when = now - offset
    except OverflowError:
        return now
    zone = draw(st.sampled_from([UTC, timezone(timedelta(hours=-7)), timezone(timedelta(hours=9))]))
    try:
        return when.astimezone(zone)
    except OverflowError:
        return when


_ERRORS = st.builds(
    ErrorInfo,
    error_class=st.sampled_from(["TransientSourceError", "AuthError", "BadResponseError"]),
    message=st.text(max_size=300),
    at=aware_datetimes(),
    retryable=st.booleans(),
    auth=st.booleans(),
)

_POLICIES = st.builds(
    StatusPolicy,
    expected_interval=st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(hours=6)),
    recent_sync=st.timedeltas(min_value=timedelta(hours=6), max_value=timedelta(days=2)),
    recent_change=st.timedeltas(min_value=timedelta(minutes=1), max_value=timedelta(days=90)),
    max_consecutive_failures=st.integers(min_value=1, max_value=10),
    max_auth_failures=st.integers(min_value=1, max_value=10),
    future_tolerance=st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=1)),
    backoff_cap=st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=2)),
)


@st.composite
def _count_facts(draw: st.DrawFn, now: datetime) -> dict[str, Any]:
    """The last count of live records, or none (the three go together)."""
    counted_at = draw(_around(now))
    if counted_at is None:
        return {}
    counts = st.integers(min_value=0, max_value=10**12)
    source = draw(counts)
    host = draw(st.one_of(st.just(source), counts))
    return {"live_at_source": source, "live_in_host": host, "counted_at": counted_at}


@st.composite
def _arguments(draw: st.DrawFn) -> dict[str, Any]:
    now = draw(st.one_of(aware_datetimes(), st.just(datetime(2026, 11, 13, 9, 41, 7, tzinfo=UTC))))
    zone: str | tzinfo = draw(st.sampled_from(_ZONES))
    return {
        "now": now,
        "last_change": draw(st.one_of(_around(now), aware_datetimes())),
        "last_sync": draw(_around(now)),
        "last_attempt": draw(_around(now)),
        "error_count": draw(st.integers(min_value=0, max_value=12)),
        "phase": draw(st.one_of(st.none(), st.sampled_from(Phase))),
        "last_error": draw(st.one_of(st.none(), _ERRORS)),
        "not_before": draw(st.one_of(st.none(), _around(now))),
        "rejected": draw(st.integers(min_value=0, max_value=10_000)),
        "running_until": draw(st.one_of(st.none(), _around(now))),
        **draw(_count_facts(now)),
        "policy": draw(_POLICIES),
        "zone": draw(st.sampled_from([zone, ZoneInfo("Europe/London")])),
    }


@settings(max_examples=300)
@given(_arguments())
def test_the_classifier_is_total_and_every_output_is_complete(arguments: dict[str, Any]) -> None:
    """For any valid input it returns a status with label, icon and hover naming exact times."""
    status = classify_status(**arguments)
    assert status.label
    assert status.icon.value
    assert status.hover
    assert status.hover.endswith(".")
    color, icon, label = REASONS[status.reason]
    assert (status.color, status.icon) == (color, icon)
    assert status.label.startswith(label)
    zone = arguments["zone"]
    for field in ("last_sync", "last_change"):
        value = arguments[field]
        text = getattr(status, field)
        if value is None:
            assert text is None
        else:
            assert text is not None
            assert text.exact == exact_time(value, zone)
            assert text.exact in status.hover
            assert text.relative == relative_time(
                value,
                arguments["now"],
                zone=zone,
                future_tolerance=arguments["policy"].future_tolerance,
            )


@given(_arguments())
def test_a_count_drift_is_named_in_the_hover_and_never_changes_the_colour(
    arguments: dict[str, Any],
) -> None:
    """The count facts add a note and a sentence when the counts differ, and change nothing else."""
    status = classify_status(**arguments)
    without = {
        name: value
        for name, value in arguments.items()
        if name not in ("live_at_source", "live_in_host", "counted_at")
    }
    uncounted = classify_status(**without)
    assert (status.color, status.reason, status.label, status.icon) == (
        uncounted.color,
        uncounted.reason,
        uncounted.label,
        uncounted.icon,
    )
    drift = arguments.get("live_at_source") != arguments.get("live_in_host")
    assert (StatusNote.COUNT_DRIFT in status.notes) is drift
    assert ("live record" in status.hover) is drift
    assert [note for note in status.notes if note is not StatusNote.COUNT_DRIFT] == list(
        uncounted.notes
    )


@given(_arguments())
def test_the_classifier_is_deterministic(arguments: dict[str, Any]) -> None:
    """The same input always gives the same status."""
    assert classify_status(**arguments) == classify_status(**arguments)


@given(_arguments())
def test_healthy_colours_only_for_running_sources_synced_recently(
    arguments: dict[str, Any],
) -> None:
    """Green or orange only when a cycle completed within recent_sync and nothing stopped it."""
    status = classify_status(**arguments)
    if status.reason in (StatusReason.RECENT_CHANGES, StatusReason.NO_RECENT_CHANGES):
        last_sync = arguments["last_sync"]
        assert last_sync is not None
        assert arguments["now"] - last_sync <= arguments["policy"].recent_sync
        assert arguments["phase"] in (None, Phase.ACTIVE)


@given(_arguments())
def test_retrying_only_for_running_sources_not_synced_recently(arguments: dict[str, Any]) -> None:
    """Orange "Retrying" only when no cycle completed within recent_sync and nothing stopped it."""
    status = classify_status(**arguments)
    if status.reason is StatusReason.RETRYING:
        last_sync = arguments["last_sync"]
        assert last_sync is not None
        assert arguments["now"] - last_sync > arguments["policy"].recent_sync
        assert arguments["phase"] in (None, Phase.ACTIVE)


def _stop_threshold(arguments: dict[str, Any]) -> int:
    policy: StatusPolicy = arguments["policy"]
    error: ErrorInfo | None = arguments["last_error"]
    auth = error is not None and error.auth and arguments["error_count"] > 0
    return policy.max_auth_failures if auth else policy.max_consecutive_failures


@given(_arguments())
def test_red_means_stopped_or_no_attempt_within_the_window(arguments: dict[str, Any]) -> None:
    """Red only for a stopped source, or one that nothing attempted for longer than recent_sync.

    Stopped is the engine's phase, or without one the failure threshold. Otherwise every sign of
    an attempt (the last attempt, or the last failure when that is not known, and the last
    completed sync) is older than the window, and no wait the source asked for explains it.
    """
    status = classify_status(**arguments)
    if status.color is not StatusColor.RED:
        return
    phase = arguments["phase"]
    if status.reason is StatusReason.STOPPED:
        assert phase is Phase.STOPPED or (
            phase is None and arguments["error_count"] >= _stop_threshold(arguments)
        )
        return
    assert status.reason is StatusReason.SYNC_OVERDUE
    policy: StatusPolicy = arguments["policy"]
    now = arguments["now"]
    running_until = arguments["running_until"]
    assert running_until is None or running_until <= now  # no cycle holds the lease now
    attempts = [arguments["last_attempt"], arguments["last_sync"]]
    error: ErrorInfo | None = arguments["last_error"]
    if arguments["last_attempt"] is None and arguments["error_count"] and error is not None:
        attempts.append(error.at)
    assert all(now - when > policy.recent_sync for when in attempts if when is not None)
    not_before = arguments["not_before"]
    assert not_before is None or now - not_before > policy.recent_sync - policy.expected_interval


@given(_arguments(), st.floats(min_value=0, max_value=1))
def test_a_source_attempted_within_the_interval_is_never_red_unless_stopped(
    arguments: dict[str, Any], fraction: float
) -> None:
    """Tried within the expected interval and not stopped: attempting, failing or not, not red."""
    policy: StatusPolicy = arguments["policy"]
    try:
        arguments["last_attempt"] = arguments["now"] - policy.expected_interval * fraction
    except OverflowError:
        assume(False)
    phase = arguments["phase"]
    stopped = phase is Phase.STOPPED or (
        phase is None and arguments["error_count"] >= _stop_threshold(arguments)
    )
    assume(not stopped)
    assert classify_status(**arguments).color is not StatusColor.RED


@given(_arguments())
def test_without_a_phase_failures_at_or_over_the_threshold_are_never_healthy(
    arguments: dict[str, Any],
) -> None:
    """Facts only: at the engine's stop threshold a source is red, below it never stopped.

    The threshold is max_auth_failures when the last error was an AuthError, as in the engine.
    """
    arguments["phase"] = None
    policy: StatusPolicy = arguments["policy"]
    error: ErrorInfo | None = arguments["last_error"]
    auth = error is not None and error.auth
    threshold = policy.max_auth_failures if auth else policy.max_consecutive_failures
    status = classify_status(**arguments)
    stopped = status.reason is StatusReason.STOPPED
    assert stopped is (arguments["error_count"] >= threshold)


@given(_arguments().filter(lambda arguments: arguments["phase"] is not None))
def test_with_a_phase_only_the_engine_stops_a_source(arguments: dict[str, Any]) -> None:
    """A known phase decides alone: stopped exactly when the phase is, and no threshold named."""
    status = classify_status(**arguments)
    assert (status.reason is StatusReason.STOPPED) is (arguments["phase"] is Phase.STOPPED)
    assert "; synchronization stops after" not in status.hover


@settings(max_examples=300)
@given(_arguments(), st.floats(min_value=0, max_value=1, exclude_max=True))
def test_time_alone_leaves_the_reason_until_reason_until(
    arguments: dict[str, Any], fraction: float
) -> None:
    """The facts unchanged, the reason holds at every instant before ``reason_until`` (and for
    good when there is none), so a screen may keep a status until then."""
    now = arguments["now"]
    status = classify_status(**arguments)
    until = status.reason_until
    if until is None:
        later = [timedelta(days=days) for days in (1, 30, 3_650)]
    else:
        assert until > now
        span = until - now
        # A fraction of a span rounds to whole microseconds: the span itself is not before it.
        later = [
            offset
            for offset in (span * fraction, span - timedelta(microseconds=1))
            if offset < span
        ]
    for offset in later:
        try:
            moment = now + offset
        except OverflowError:
            continue
        assert classify_status(**{**arguments, "now": moment}).reason is status.reason, offset


def test_reason_until_is_the_next_threshold() -> None:
    """Synced now, changed almost 7 days ago: green for an hour, then orange (no recent change),
    then, 3 hours after the sync with no attempt since, red (overdue)."""
    now = datetime(2026, 11, 13, 9, 0, tzinfo=UTC)
    tick = timedelta(microseconds=1)
    facts: dict[str, Any] = {
        "last_sync": now,
        "last_attempt": now,
        "last_change": now - timedelta(days=7, hours=-1),
    }
    green = classify_status(now=now, **facts)
    assert (green.color, green.reason_until) == (StatusColor.GREEN, now + timedelta(hours=1) + tick)
    assert classify_status(now=now + timedelta(hours=1), **facts).color is StatusColor.GREEN
    orange = classify_status(now=now + timedelta(hours=1) + tick, **facts)
    assert orange.reason is StatusReason.NO_RECENT_CHANGES
    assert orange.reason_until == now + timedelta(hours=3) + tick
    red = classify_status(now=now + timedelta(hours=3) + tick, **facts)
    assert (red.reason, red.reason_until) == (StatusReason.SYNC_OVERDUE, None)
    cancelled = classify_status(now=now, phase=Phase.CANCELLED, last_sync=None, last_change=None)
    assert cancelled.reason_until is None


@settings(max_examples=300)
@given(_arguments().filter(lambda arguments: arguments["phase"] is not None))
def test_the_reason_alone_is_the_status_screens_reason(arguments: dict[str, Any]) -> None:
    """reason_of (what the sources-per-colour gauge counts) decides as status_of does."""
    count = None
    if "counted_at" in arguments:
        count = CountCheck(
            source=arguments["live_at_source"],
            host=arguments["live_in_host"],
            at=arguments["counted_at"],
        )
    running_until = arguments["running_until"]
    state = SourceState(
        key="acme/invoices",
        phase=arguments["phase"],
        last_change=arguments["last_change"],
        last_sync=arguments["last_sync"],
        last_attempt=arguments["last_attempt"],
        consecutive_failures=arguments["error_count"],
        last_error=arguments["last_error"],
        lease=None if running_until is None else Lease("worker-1", running_until, 1),
        not_before=arguments["not_before"],
        last_cycle_rejected=arguments["rejected"],
        count_check=count,
    )
    now, policy = arguments["now"], arguments["policy"]
    assert (
        reason_of(state, now=now, policy=policy)
        is status_of(state, now=now, policy=policy, zone=arguments["zone"]).reason
    )
