"""decide_failure(): what the engine records for each kind of failure, as a pure function."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import incsync
import incsync.engine
from incsync.errors import (
    AuthError,
    BadResponseError,
    NaiveDatetimeError,
    PermanentSourceError,
    RateLimitedError,
    SourceError,
    TransientSourceError,
)
from incsync.policy import FailureDecision, SyncPolicy, decide_failure
from incsync.state import ErrorInfo

NOW = datetime(2026, 11, 13, 9, 41, 7, tzinfo=timezone.utc)
POLICY = SyncPolicy(max_consecutive_failures=7, max_auth_failures=3)
LATER = NOW + timedelta(hours=6)


@pytest.mark.parametrize(
    ("error", "retryable", "auth", "stop_after", "retry_at"),
    [
        (TransientSourceError("503 Service Unavailable"), True, False, 7, None),
        (RateLimitedError("daily quota used up", retry_at=LATER), True, False, 7, LATER),
        (RateLimitedError("429 Too Many Requests"), True, False, 7, None),
        (AuthError("refresh token revoked"), False, True, 3, None),
        (BadResponseError("body is not JSON"), True, False, 7, None),
        (PermanentSourceError("400 unknown field"), False, False, 7, None),
        (ValueError("a bug in a custom connector"), True, False, 7, None),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
def test_each_kind_of_failure(
    error: Exception, retryable: bool, auth: bool, stop_after: int, retry_at: datetime | None
) -> None:
    """The class alone decides retryability, the stop threshold and the time to wait for."""
    decision = decide_failure(error, POLICY, NOW)
    assert decision == FailureDecision(
        error=ErrorInfo(
            error_class=type(error).__name__,
            message=str(error),
            at=NOW,
            retryable=retryable,
            auth=auth,
        ),
        stop_after=stop_after,
        retry_at=retry_at,
        reset=False,
    )


def test_a_source_that_needs_a_full_resync_is_reset_and_not_held_against_it() -> None:
    """resync_required: reset, with the reason kept as retryable and retry_at now (not counted)."""
    error = PermanentSourceError("change log expired", vendor="stripe", resync_required=True)
    decision = decide_failure(error, POLICY, NOW)
    assert decision.reset is True
    assert decision.retry_at == NOW
    assert decision.stop_after == POLICY.max_consecutive_failures
    assert (decision.error.retryable, decision.error.auth) == (True, False)
    assert decision.error.message == "change log expired"


def test_the_recorded_message_is_redacted() -> None:
    """Declared secrets and secret-shaped values never reach the recorded error."""
    error = TransientSourceError("503 from /v1?api_key=sk_live_SENTINEL (client s3cr3t-value)")
    decision = decide_failure(error, POLICY, NOW, secrets=["s3cr3t-value"])
    assert "SENTINEL" not in decision.error.message
    assert "s3cr3t-value" not in decision.error.message
    assert "503 from" in decision.error.message


def test_the_time_is_kept_in_utc_and_a_naive_one_is_refused() -> None:
    """The failure's time is stored in UTC; a naive ``now`` is an error naming it."""
    berlin = NOW.astimezone(timezone(timedelta(hours=1)))
    decision = decide_failure(SourceError("boom"), POLICY, berlin)
    assert decision.error.at == NOW
    assert decision.error.at.tzinfo is timezone.utc
    with pytest.raises(NaiveDatetimeError):
        decide_failure(SourceError("boom"), POLICY, NOW.replace(tzinfo=None))


def test_the_policy_has_one_definition_under_every_public_name() -> None:
    """incsync.SyncPolicy and incsync.engine.SyncPolicy are the policy module's class."""
    assert incsync.SyncPolicy is SyncPolicy
    assert incsync.engine.SyncPolicy is SyncPolicy
