"""Tests for incsync.state: every transition of a source's state, leases, fencing and CAS."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from incsync.cursor import Cursor
from incsync.errors import (
    ConfigurationError,
    GenerationChangedError,
    LeaseLostError,
    NaiveDatetimeError,
    StateConflictError,
)
from incsync.records import RejectedRecord
from incsync.state import (
    Checkpoint,
    ErrorInfo,
    Lease,
    Phase,
    SkipReason,
    SourceState,
    acquire,
    cancel,
    complete,
    fail,
    new_state,
    release,
    renew,
    reset,
    resume,
    rewind,
    save_checkpoint,
    skip_reason,
)
from incsync.timestamps import UTC
from tests.strategies import cursors

KEY = "acme/invoices"
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
TTL = timedelta(minutes=5)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
STOP_AFTER = 3
C1 = Cursor(T0 - timedelta(hours=2), "a")
C2 = Cursor(T0 - timedelta(hours=1), "b")
C3 = Cursor(T0 - timedelta(minutes=30), "c")


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _running(
    state: SourceState | None = None, holder: str = "w1", now: datetime = T0
) -> tuple[SourceState, Lease]:
    """Acquire the lease on ``state`` (a new source by default), asserting it is granted."""
    acquired, lease = acquire(new_state(KEY) if state is None else state, holder, now, TTL)
    assert lease is not None
    return acquired, lease


def _error(message: str = "503 from vendor", *, retryable: bool = True) -> ErrorInfo:
    return ErrorInfo(
        error_class="TransientSourceError", message=message, at=T0, retryable=retryable
    )


def _completed(cursor: Cursor | None = C2) -> SourceState:
    """A source that completed one cycle, with ``cursor`` as its checkpoint."""
    state, lease = _running()
    return complete(state, lease, 0, Checkpoint(cursor), _at(1), 0)


# values -------------------------------------------------------------------------------------------


def test_new_state_is_a_blank_new_source() -> None:
    """A never-seen source is NEW at generation 0 with no cursor, lease, errors or waits."""
    state = new_state(KEY)
    assert state == SourceState(key=KEY)
    assert (state.phase, state.generation, state.cursor, state.lease) == (Phase.NEW, 0, None, None)
    assert (state.last_sync, state.last_attempt, state.last_change, state.not_before) == (
        None,
        None,
        None,
        None,
    )
    assert (state.consecutive_failures, state.last_error, state.last_cycle_rejected) == (0, None, 0)


def test_state_times_are_kept_in_utc_and_naive_ones_refused() -> None:
    """Every time in the state, lease and error is normalised to UTC; naive ones are refused."""
    local = timezone(timedelta(hours=2))
    state = SourceState(key=KEY, not_before=datetime(2024, 3, 1, 14, tzinfo=local))
    assert state.not_before == T0
    assert state.not_before is not None
    assert state.not_before.tzinfo is UTC
    assert Lease("w", datetime(2024, 3, 1, 14, tzinfo=local), 1).expires_at.tzinfo is UTC
    naive = datetime(2024, 3, 1)  # noqa: DTZ001 - the point of the test
    for build in (
        lambda: SourceState(key=KEY, last_sync=naive),
        lambda: SourceState(key=KEY, last_change=naive),
        lambda: SourceState(key=KEY, last_attempt=naive),
        lambda: SourceState(key=KEY, not_before=naive),
        lambda: Lease("w", naive, 1),
        lambda: ErrorInfo("E", "m", naive),
    ):
        with pytest.raises(ValueError, match="naive"):
            build()


# skip_reason --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        pytest.param(SourceState(KEY), None, id="new"),
        pytest.param(SourceState(KEY, phase=Phase.ACTIVE), None, id="active"),
        pytest.param(SourceState(KEY, phase=Phase.RESETTING), None, id="resetting"),
        pytest.param(SourceState(KEY, phase=Phase.CANCELLED), SkipReason.CANCELLED, id="cancelled"),
        pytest.param(SourceState(KEY, phase=Phase.STOPPED), SkipReason.STOPPED, id="stopped"),
        pytest.param(
            SourceState(KEY, lease=Lease("w", _at(1), 1)),
            SkipReason.RUNNING_ELSEWHERE,
            id="lease-held",
        ),
        pytest.param(SourceState(KEY, lease=Lease("w", T0, 1)), None, id="lease-expires-now"),
        pytest.param(SourceState(KEY, lease=Lease("w", _at(-1), 1)), None, id="lease-expired"),
        pytest.param(SourceState(KEY, lease=Lease("w", EPOCH, 4)), None, id="lease-released"),
        pytest.param(SourceState(KEY, not_before=_at(1)), SkipReason.WAITING, id="waiting"),
        pytest.param(SourceState(KEY, not_before=T0), None, id="wait-ends-now"),
        pytest.param(SourceState(KEY, not_before=_at(-1)), None, id="wait-over"),
        pytest.param(
            SourceState(KEY, phase=Phase.CANCELLED, lease=Lease("w", _at(1), 1), not_before=_at(1)),
            SkipReason.CANCELLED,
            id="cancelled-beats-lease-and-wait",
        ),
        pytest.param(
            SourceState(KEY, phase=Phase.STOPPED, lease=Lease("w", _at(1), 1), not_before=_at(1)),
            SkipReason.STOPPED,
            id="stopped-beats-lease-and-wait",
        ),
        pytest.param(
            SourceState(KEY, lease=Lease("w", _at(1), 1), not_before=_at(1)),
            SkipReason.RUNNING_ELSEWHERE,
            id="lease-beats-wait",
        ),
    ],
)
def test_skip_reason(state: SourceState, expected: SkipReason | None) -> None:
    """Cancelled, stopped, a live lease and a pending wait each block a cycle, in that order."""
    assert skip_reason(state, T0) is expected


# acquire ------------------------------------------------------------------------------------------


def test_acquire_on_a_new_source_grants_token_one() -> None:
    """The first acquisition gets token 1, expires now + ttl and marks the attempt."""
    state, lease = acquire(new_state(KEY), "w1", T0, TTL)
    assert lease == Lease(holder="w1", expires_at=T0 + TTL, token=1)
    assert state.lease == lease
    assert state.last_attempt == T0
    assert state.phase is Phase.NEW


def test_acquire_refuses_while_another_worker_holds_a_live_lease() -> None:
    """A live lease (held by anyone, even the same holder name) makes acquire return None."""
    state, _ = _running(holder="w1")
    for holder in ("w2", "w1"):
        again, lease = acquire(state, holder, _at(4), TTL)
        assert lease is None
        assert again is state


def test_acquire_takes_over_an_expired_lease_with_a_larger_token() -> None:
    """Once the lease expired (a crashed worker), another worker takes it over with token + 1."""
    state, first = _running(holder="w1")
    taken, second = acquire(state, "w2", T0 + TTL, TTL)
    assert second is not None
    assert second.holder == "w2"
    assert second.token == first.token + 1
    assert second.expires_at == T0 + TTL + TTL
    assert taken.lease == second
    assert taken.last_attempt == T0 + TTL


def test_acquire_after_release_is_immediate_and_fenced() -> None:
    """A released lease can be taken at once, and the token still grows."""
    state, first = _running()
    state = release(state, first)
    _, second = acquire(state, "w2", _at(0.1), TTL)
    assert second is not None
    assert second.token == first.token + 1


@pytest.mark.parametrize(
    "state",
    [
        pytest.param(SourceState(KEY, phase=Phase.CANCELLED), id="cancelled"),
        pytest.param(SourceState(KEY, phase=Phase.STOPPED), id="stopped"),
        pytest.param(SourceState(KEY, not_before=_at(10)), id="waiting"),
    ],
)
def test_acquire_refuses_when_a_cycle_must_skip(state: SourceState) -> None:
    """acquire grants nothing and changes nothing whenever skip_reason gives a reason."""
    assert acquire(state, "w1", T0, TTL) == (state, None)


@given(st.lists(st.integers(min_value=0, max_value=900), min_size=1, max_size=20))
def test_every_acquisition_gets_a_larger_token(gaps: list[int]) -> None:
    """Across any sequence of attempts, granted tokens strictly increase (fencing)."""
    state = new_state(KEY)
    now = T0
    tokens: list[int] = []
    for gap in gaps:
        now += timedelta(seconds=gap)
        state, lease = acquire(state, f"w{gap % 3}", now, TTL)
        if lease is not None:
            tokens.append(lease.token)
    assert tokens
    assert tokens == sorted(set(tokens))
    assert tokens == list(range(1, len(tokens) + 1))


# renew / release ----------------------------------------------------------------------------------


def test_renew_extends_the_holders_lease() -> None:
    """renew moves expiry to now + ttl and keeps holder and token."""
    state, lease = _running()
    renewed = renew(state, lease, _at(4), TTL)
    assert renewed.lease == Lease("w1", _at(4) + TTL, lease.token)
    assert skip_reason(renewed, T0 + TTL) is SkipReason.RUNNING_ELSEWHERE


def test_renew_refuses_a_lease_that_was_taken_over() -> None:
    """After a takeover the old holder's renew raises LeaseLostError naming the source."""
    state, old = _running(holder="w1")
    state, _ = _running(state, holder="w2", now=T0 + TTL)
    with pytest.raises(LeaseLostError) as caught:
        renew(state, old, T0 + TTL, TTL)
    assert caught.value.source_key == KEY


def test_renew_refuses_when_there_is_no_lease() -> None:
    """A state without any lease cannot be renewed by anyone."""
    with pytest.raises(LeaseLostError):
        renew(new_state(KEY), Lease("w1", _at(1), 1), T0, TTL)


def test_release_expires_the_lease_but_keeps_its_token() -> None:
    """release sets expiry to the epoch and keeps the token, so fencing survives."""
    state, lease = _running()
    released = release(state, lease)
    assert released.lease == Lease("w1", EPOCH, lease.token)
    assert skip_reason(released, T0) is None


def test_release_by_a_former_holder_is_a_no_op() -> None:
    """A worker whose lease was taken over cannot release the new holder's lease."""
    state, old = _running(holder="w1")
    state, _ = _running(state, holder="w2", now=T0 + TTL)
    assert release(state, old) is state
    assert release(new_state(KEY), old) == new_state(KEY)


# save_checkpoint ----------------------------------------------------------------------------------


def test_save_checkpoint_moves_cursor_and_last_change_and_extends_the_lease() -> None:
    """A checkpoint stores the cursor and newest change time and renews the lease to now + ttl."""
    state, lease = _running()
    saved = save_checkpoint(state, lease, 0, Checkpoint(C1, C1.updated_at), _at(3), TTL)
    assert saved.cursor == C1
    assert saved.last_change == C1.updated_at
    assert saved.lease == Lease("w1", _at(3) + TTL, lease.token)
    assert saved.phase is Phase.NEW  # only completing a cycle makes the source active


def test_save_checkpoint_never_moves_the_cursor_backwards() -> None:
    """A lower (or missing) cursor or older change time leaves the stored ones in place."""
    state, lease = _running()
    state = save_checkpoint(state, lease, 0, Checkpoint(C2, C2.updated_at), _at(1), TTL)
    lower = save_checkpoint(state, lease, 0, Checkpoint(C1, C1.updated_at), _at(2), TTL)
    assert (lower.cursor, lower.last_change) == (C2, C2.updated_at)
    nothing = save_checkpoint(state, lease, 0, Checkpoint(None, None), _at(2), TTL)
    assert (nothing.cursor, nothing.last_change) == (C2, C2.updated_at)
    higher = save_checkpoint(state, lease, 0, Checkpoint(C3, C3.updated_at), _at(2), TTL)
    assert (higher.cursor, higher.last_change) == (C3, C3.updated_at)


def test_save_checkpoint_refuses_a_lost_lease() -> None:
    """A worker whose lease was taken over cannot write its checkpoint (LeaseLostError)."""
    state, old = _running(holder="w1")
    state, _ = _running(state, holder="w2", now=T0 + TTL)
    with pytest.raises(LeaseLostError):
        save_checkpoint(state, old, 0, Checkpoint(C3), T0 + TTL, TTL)


def test_save_checkpoint_refuses_a_changed_generation() -> None:
    """After a reset, the running cycle's checkpoint is refused (GenerationChangedError)."""
    state, lease = _running()
    state = reset(state)
    with pytest.raises(GenerationChangedError) as caught:
        save_checkpoint(state, lease, 0, Checkpoint(C3), _at(1), TTL)
    assert caught.value.source_key == KEY
    assert "0 -> 1" in str(caught.value)


def test_save_checkpoint_keeps_a_cancel_that_arrived_meanwhile() -> None:
    """A cancel during a cycle survives its checkpoints, so the engine can see it and stop."""
    state, lease = _running()
    state = cancel(state)
    saved = save_checkpoint(state, lease, 0, Checkpoint(C1), _at(1), TTL)
    assert saved.phase is Phase.CANCELLED
    assert saved.cursor == C1


@given(st.lists(st.none() | cursors(), max_size=15))
def test_checkpoints_in_any_order_leave_the_highest_cursor(proposed: list[Cursor | None]) -> None:
    """Whatever cursors a cycle proposes, the stored one is the highest (never moves backwards)."""
    state, lease = _running()
    for cursor in proposed:
        before = state.cursor
        state = save_checkpoint(state, lease, 0, Checkpoint(cursor), _at(1), TTL)
        assert before is None or (state.cursor is not None and state.cursor >= before)
    given_cursors = [cursor for cursor in proposed if cursor is not None]
    assert state.cursor == (max(given_cursors) if given_cursors else None)


# complete -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        (Phase.NEW, Phase.ACTIVE),
        (Phase.RESETTING, Phase.ACTIVE),
        (Phase.ACTIVE, Phase.ACTIVE),
        (Phase.CANCELLED, Phase.CANCELLED),
    ],
)
def test_complete_sets_the_phase(phase: Phase, expected: Phase) -> None:
    """A completed cycle makes NEW and RESETTING sources ACTIVE and keeps a cancel."""
    state, lease = _running(SourceState(KEY, phase=phase) if phase is not Phase.CANCELLED else None)
    if phase is Phase.CANCELLED:
        state = cancel(state)
    assert complete(state, lease, 0, Checkpoint(C1), _at(1), 0).phase is expected


def test_complete_records_the_cycle_and_forgets_failures() -> None:
    """complete sets last_sync, clears failures, error and wait, keeps rejections count."""
    state = SourceState(KEY, phase=Phase.ACTIVE, consecutive_failures=2, last_error=_error())
    state, lease = _running(state)
    state = attrs.evolve(state, not_before=_at(-10))
    done = complete(state, lease, 0, Checkpoint(C2, C2.updated_at), _at(2), 7)
    assert done.last_sync == _at(2)
    assert (done.consecutive_failures, done.last_error, done.not_before) == (0, None, None)
    assert done.last_cycle_rejected == 7
    assert (done.cursor, done.last_change) == (C2, C2.updated_at)


def test_complete_releases_the_lease() -> None:
    """After complete the lease is released (token kept) and the next cycle may start at once."""
    state, lease = _running()
    done = complete(state, lease, 0, Checkpoint(C1), _at(1), 0)
    assert done.lease == Lease("w1", EPOCH, lease.token)
    _, following = acquire(done, "w2", _at(1), TTL)
    assert following is not None
    assert following.token == lease.token + 1


def test_complete_never_moves_the_cursor_backwards() -> None:
    """A final checkpoint below the stored cursor leaves the stored cursor."""
    state, lease = _running()
    state = save_checkpoint(state, lease, 0, Checkpoint(C3, C3.updated_at), _at(1), TTL)
    done = complete(state, lease, 0, Checkpoint(C1, C1.updated_at), _at(2), 0)
    assert (done.cursor, done.last_change) == (C3, C3.updated_at)


def test_complete_refuses_a_lost_lease_and_a_changed_generation() -> None:
    """complete is compare-and-set on the lease token and the generation, like a checkpoint."""
    state, old = _running(holder="w1")
    taken, _ = _running(state, holder="w2", now=T0 + TTL)
    with pytest.raises(LeaseLostError):
        complete(taken, old, 0, Checkpoint(C1), _at(6), 0)
    with pytest.raises(GenerationChangedError):
        complete(reset(state), old, 0, Checkpoint(C1), _at(1), 0)


# fail ---------------------------------------------------------------------------------------------


def test_fail_counts_records_the_error_and_releases_the_lease() -> None:
    """A failure increments the count, keeps the error, releases the lease, leaves the cursor."""
    state = _completed()
    state, lease = _running(state, now=_at(2))
    failed = fail(state, lease, 0, _error(), STOP_AFTER)
    assert failed.consecutive_failures == 1
    assert failed.last_error == _error()
    assert failed.phase is Phase.ACTIVE
    assert failed.cursor == C2
    assert failed.lease == Lease("w1", EPOCH, lease.token)
    assert skip_reason(failed, _at(2)) is None


def test_fail_stops_the_source_at_the_threshold() -> None:
    """The stop_after-th consecutive failure stops the source; the ones before do not."""
    state = _completed()
    phases = []
    for attempt in range(STOP_AFTER):
        state, lease = _running(state, now=_at(10 + attempt))
        state = fail(state, lease, 0, _error(f"attempt {attempt}"), STOP_AFTER)
        phases.append(state.phase)
    assert phases == [Phase.ACTIVE, Phase.ACTIVE, Phase.STOPPED]
    assert state.consecutive_failures == STOP_AFTER
    assert skip_reason(state, _at(60)) is SkipReason.STOPPED


def test_fail_does_not_turn_a_cancel_into_a_stop() -> None:
    """A source cancelled during its last allowed failure stays CANCELLED, not STOPPED."""
    state, lease = _running(SourceState(KEY, consecutive_failures=STOP_AFTER - 1))
    failed = fail(cancel(state), lease, 0, _error(), STOP_AFTER)
    assert failed.phase is Phase.CANCELLED
    assert failed.consecutive_failures == STOP_AFTER


def test_fail_of_an_old_generation_only_releases_the_lease() -> None:
    """A cycle that died after a reset leaves the fresh generation's counters clean."""
    state, lease = _running()
    state = reset(state)
    failed = fail(state, lease, 0, _error(), 1)
    assert failed == attrs.evolve(state, lease=Lease("w1", EPOCH, lease.token))
    assert (failed.phase, failed.consecutive_failures, failed.last_error) == (
        Phase.RESETTING,
        0,
        None,
    )


def test_fail_refuses_a_lost_lease() -> None:
    """A worker whose lease was taken over may not record its failure (LeaseLostError)."""
    state, old = _running(holder="w1")
    state, _ = _running(state, holder="w2", now=T0 + TTL)
    with pytest.raises(LeaseLostError):
        fail(state, old, 0, _error(), STOP_AFTER)


def test_fail_with_retry_at_makes_the_source_wait() -> None:
    """retry_at becomes not_before: cycles skip with WAITING until then, and run afterwards."""
    state, lease = _running()
    failed = fail(state, lease, 0, _error("429"), STOP_AFTER, retry_at=_at(30))
    assert failed.not_before == _at(30)
    assert skip_reason(failed, _at(29)) is SkipReason.WAITING
    assert acquire(failed, "w1", _at(29), TTL) == (failed, None)
    assert skip_reason(failed, _at(30)) is None


def test_fail_keeps_the_later_of_two_waits() -> None:
    """A retry_at earlier than an existing wait does not shorten it; a later one extends it."""
    state, lease = _running(SourceState(KEY, not_before=_at(-1)))
    state = attrs.evolve(state, not_before=_at(60))
    assert fail(state, lease, 0, _error(), 9, retry_at=_at(30)).not_before == _at(60)
    assert fail(state, lease, 0, _error(), 9, retry_at=_at(90)).not_before == _at(90)
    assert fail(state, lease, 0, _error(), 9).not_before == _at(60)


# reset / cancel / resume --------------------------------------------------------------------------


def test_reset_bumps_the_generation_and_clears_progress_and_failures() -> None:
    """reset: RESETTING, generation + 1, no cursor, no failures, error, wait or rejection count."""
    state = attrs.evolve(
        _completed(),
        phase=Phase.STOPPED,
        consecutive_failures=5,
        last_error=_error(),
        not_before=_at(60),
        last_cycle_rejected=3,
    )
    fresh = reset(state)
    assert fresh.phase is Phase.RESETTING
    assert fresh.generation == state.generation + 1
    assert fresh.cursor is None
    assert (fresh.consecutive_failures, fresh.last_error, fresh.not_before) == (0, None, None)
    assert fresh.last_cycle_rejected == 0
    assert (fresh.last_sync, fresh.last_change, fresh.lease) == (
        state.last_sync,
        state.last_change,
        state.lease,
    )
    assert skip_reason(fresh, T0) is None


def test_rewind_moves_the_cursor_and_later_marks_back_and_keeps_everything_else() -> None:
    """rewind: cursor and later marks back to ``since``, generation + 1; phase, failures, wait,
    counts and the last times stay, and no reset is pending (so the next read sweeps nothing)."""
    state = attrs.evolve(
        _completed(C3),
        phase=Phase.STOPPED,
        consecutive_failures=5,
        last_error=_error(),
        not_before=_at(60),
        last_cycle_rejected=3,
        marks={"deletes": C3.updated_at, "early": C1.updated_at - timedelta(days=1)},
    )
    since = C2.updated_at
    rewound = rewind(state, since)
    assert rewound.cursor == Cursor(since, "")
    assert rewound.marks == {"deletes": since, "early": state.marks["early"]}
    assert rewound.generation == state.generation + 1
    assert not rewound.reset_pending
    assert attrs.evolve(rewound, cursor=state.cursor, marks=state.marks, generation=0) == (
        attrs.evolve(state, generation=0)
    )


def test_rewind_never_moves_a_cursor_forward() -> None:
    """A cursor before ``since`` stays (the next cycle reads from there already); none stays none.

    The generation moves all the same: a running cycle must not carry the cursor past ``since``.
    """
    assert rewind(_completed(C1), C2.updated_at).cursor == C1
    at_since = rewind(_completed(C2), C2.updated_at).cursor
    assert at_since == Cursor(C2.updated_at, "")  # before every id at that time, C2's too
    unread = rewind(_completed(None), C2.updated_at)
    assert (unread.cursor, unread.generation) == (None, 1)


def test_rewind_refuses_a_reset_whose_full_read_has_not_completed() -> None:
    """Rewinding a reset's read would make its sweep take what it read before for gone."""
    with pytest.raises(ConfigurationError, match="is being reset"):
        rewind(reset(_completed()), T0)


def test_rewind_refuses_a_naive_time() -> None:
    """``since`` must say its zone."""
    with pytest.raises(NaiveDatetimeError, match="since"):
        rewind(_completed(), datetime(2024, 3, 1))  # noqa: DTZ001 - the point of the test


def test_a_running_cycle_cannot_move_a_rewound_cursor_forward_again() -> None:
    """The cycle that held the lease during a rewind has its checkpoint and completion refused."""
    state, lease = _running(_completed(C2), now=_at(5))
    rewound = rewind(state, C1.updated_at)
    with pytest.raises(GenerationChangedError, match="reset or rewound"):
        save_checkpoint(rewound, lease, 0, Checkpoint(C3), _at(6), TTL)
    with pytest.raises(GenerationChangedError):
        complete(rewound, lease, 0, Checkpoint(C3), _at(6), 0)
    assert fail(rewound, lease, 0, _error(), STOP_AFTER) == release(rewound, lease)


@pytest.mark.parametrize("phase", list(Phase))
def test_cancel_stops_any_phase_and_keeps_progress(phase: Phase) -> None:
    """cancel makes any source CANCELLED without touching its cursor or generation."""
    state = attrs.evolve(_completed(), phase=phase)
    cancelled = cancel(state)
    assert cancelled.phase is Phase.CANCELLED
    assert cancelled == attrs.evolve(state, phase=Phase.CANCELLED)
    assert skip_reason(cancelled, T0) is SkipReason.CANCELLED


@pytest.mark.parametrize("phase", [Phase.NEW, Phase.ACTIVE, Phase.RESETTING])
def test_resume_leaves_running_phases_alone(phase: Phase) -> None:
    """resume only acts on CANCELLED and STOPPED sources."""
    state = SourceState(KEY, phase=phase, consecutive_failures=2, not_before=_at(5))
    assert resume(state) is state


def test_resume_goes_back_to_new_when_no_cycle_ever_completed() -> None:
    """A source cancelled before its first completed cycle resumes as NEW."""
    state, lease = _running()
    state = save_checkpoint(state, lease, 0, Checkpoint(C1), _at(1), TTL)
    assert resume(cancel(state)).phase is Phase.NEW


def test_resume_goes_back_to_resetting_after_a_reset() -> None:
    """A source reset and then cancelled before any cycle moved its cursor resumes as RESETTING."""
    assert resume(cancel(reset(_completed()))).phase is Phase.RESETTING


def test_resume_goes_back_to_active_with_a_fresh_failure_count() -> None:
    """A stopped source that had completed cycles resumes ACTIVE, with failures and wait cleared."""
    state = _completed()
    for attempt in range(STOP_AFTER + 1):
        # The first failure is a rate limit until minute 60; the others come after it.
        state, lease = _running(state, now=_at(10 if attempt == 0 else 60 + attempt))
        retry_at = _at(60) if attempt == 0 else None
        state = fail(state, lease, 0, _error(), STOP_AFTER, retry_at=retry_at)
    assert (state.phase, state.not_before) == (Phase.STOPPED, _at(60))
    resumed = resume(state)
    assert resumed.phase is Phase.ACTIVE
    assert (resumed.consecutive_failures, resumed.not_before) == (0, None)
    assert resumed.cursor == C2
    assert skip_reason(resumed, _at(20)) is None


def test_resume_goes_back_to_active_for_an_active_source_that_has_no_records_yet() -> None:
    """A source that completed cycles but never saw a record was never reset: it resumes ACTIVE."""
    state = _completed(cursor=None)
    assert (state.phase, state.cursor, state.generation) == (Phase.ACTIVE, None, 0)
    assert resume(cancel(state)).phase is Phase.ACTIVE


# random histories ---------------------------------------------------------------------------------

_OPERATIONS = (
    "acquire",
    "checkpoint",
    "complete",
    "fail",
    "release",
    "reset",
    "rewind",
    "cancel",
    "resume",
)


@given(
    st.lists(
        st.tuples(st.sampled_from(_OPERATIONS), cursors(), st.integers(min_value=0, max_value=400)),
        max_size=40,
    )
)
def test_random_histories_keep_fencing_generation_and_cursor_monotonic(
    steps: list[tuple[str, Cursor, int]],
) -> None:
    """In any interleaving of transitions, tokens and generations never decrease, the cursor
    moves back only by a reset or a rewind, and a STOPPED source always has at least stop_after
    failures."""
    state = new_state(KEY)
    now = T0
    lease: Lease | None = None
    generation = 0
    for operation, cursor, seconds in steps:
        now += timedelta(seconds=seconds)
        before = state
        try:
            if operation == "acquire":
                state, granted = acquire(state, f"w{seconds % 2}", now, TTL)
                if granted is not None:
                    assert before.lease is None or granted.token > before.lease.token
                    lease, generation = granted, state.generation
            elif operation == "checkpoint" and lease is not None:
                checkpoint = Checkpoint(cursor, cursor.updated_at)
                state = save_checkpoint(state, lease, generation, checkpoint, now, TTL)
            elif operation == "complete" and lease is not None:
                state = complete(state, lease, generation, Checkpoint(cursor), now, 0)
                lease = None
            elif operation == "fail" and lease is not None:
                state = fail(state, lease, generation, _error(), STOP_AFTER)
                lease = None
            elif operation == "release" and lease is not None:
                state = release(state, lease)
                lease = None
            elif operation == "reset":
                state = reset(state)
            elif operation == "rewind" and not state.reset_pending:
                state = rewind(state, cursor.updated_at)
            elif operation == "cancel":
                state = cancel(state)
            elif operation == "resume":
                state = resume(state)
        except StateConflictError:
            lease = None  # the engine abandons the cycle
        assert state.generation >= before.generation
        if before.lease is not None:
            assert state.lease is not None
            assert state.lease.token >= before.lease.token
        if operation not in ("reset", "rewind") and before.cursor is not None:
            assert state.cursor is not None
            assert state.cursor >= before.cursor
        if state.phase is Phase.STOPPED:
            assert state.consecutive_failures >= STOP_AFTER


def test_checkpoint_carries_rejections() -> None:
    """A checkpoint holds the page's set-aside records for the store to keep."""
    rejected = (RejectedRecord(record_id="9", reason="no timestamp"),)
    assert Checkpoint(C1, rejected=rejected).rejected == rejected
    assert tuple(Checkpoint(C1).rejected) == ()


def test_a_source_that_asked_us_to_wait_is_not_counted_as_failing() -> None:
    """A failure with retry_at records the error and the wait, but never stops the source."""
    state = _completed()
    for attempt in range(STOP_AFTER * 2):
        state, lease = _running(state, now=_at(10 + 2 * attempt))
        state = fail(state, lease, 0, _error(), STOP_AFTER, retry_at=_at(11 + 2 * attempt))
    assert state.phase is Phase.ACTIVE
    assert state.consecutive_failures == 0
    assert state.last_error == _error()
    assert state.not_before == _at(11 + 2 * (STOP_AFTER * 2 - 1))
