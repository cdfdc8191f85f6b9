"""What the engine logs when a cycle fails: one line for an incsync error, a traceback for a bug."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pytest

from incsync.connectors import InMemoryConnector, InMemorySource
from incsync.connectors.memory import iso_timestamp
from incsync.engine import SyncEngine
from incsync.errors import RateLimitedError, TransientSourceError
from incsync.results import Outcome
from incsync.testing import InMemoryStore, ManualClock
from incsync.timestamps import UTC

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
SECRET = "sk_live_SENTINEL_7f3a90"


def _connector(error: Exception) -> InMemoryConnector:
    source = InMemorySource()
    source.put({"id": "r1", "updated_at": iso_timestamp(NOW - timedelta(hours=1)), "amount": 1})

    def amount_of(_page: int) -> None:
        raise error

    return InMemoryConnector(source, before_page=amount_of, secret=SECRET)


def _failed_cycle(error: Exception, caplog: pytest.LogCaptureFixture) -> str:
    engine = SyncEngine(InMemoryStore(), clock=ManualClock(NOW))
    with caplog.at_level(logging.DEBUG, logger="incsync"):
        result = engine.run_cycle("acme", _connector(error))
    assert result.outcome is Outcome.FAILED
    return caplog.text


def test_a_bug_in_a_connector_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An exception that is no incsync error (a KeyError in the host's own connector) is logged
    with its traceback, so the line that raised it can be found."""
    text = _failed_cycle(KeyError("amount"), caplog)
    assert "source acme: cycle failed: KeyError: 'amount'" in text
    assert "KeyError is not an incsync error, so its traceback follows:" in text
    assert "Traceback (most recent call last):" in text
    assert ", in amount_of\n" in text  # the connector's own frame
    assert "\nKeyError: 'amount'" in text


def test_the_traceback_is_redacted_like_every_error_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The traceback's message and its chained causes are masked of the connector's secrets
    and of credential shapes, however long the traceback is."""
    error = RuntimeError(f"token {SECRET} refused")
    error.__cause__ = ValueError(f"refresh failed: refresh_token=rt-SENTINEL-{'x' * 2000}")
    text = _failed_cycle(error, caplog)
    assert "SENTINEL" not in text
    assert "RuntimeError: token *** refused" in text
    assert "ValueError: refresh failed: refresh_token=***" in text


def test_a_source_error_stays_one_line(caplog: pytest.LogCaptureFixture) -> None:
    """A translated failure of the source already says what happened: no traceback."""
    text = _failed_cycle(TransientSourceError("hubspot: HTTP 503; retried 3 times"), caplog)
    assert "cycle failed: TransientSourceError: hubspot: HTTP 503; retried 3 times" in text
    assert "Traceback" not in text
    assert len(caplog.records) == 1


def test_a_source_that_asks_to_wait_is_routine_and_logged_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A rate limit that says when to come back is how a busy vendor works: the failed cycle is
    logged at INFO, while a failure that says nothing of waiting stays a WARNING."""
    waiting = RateLimitedError("hubspot: DAILY limit; used up", retry_at=NOW + timedelta(hours=1))
    _failed_cycle(waiting, caplog)
    [line] = [r for r in caplog.records if "cycle failed" in r.getMessage()]
    assert line.levelno == logging.INFO
    caplog.clear()
    _failed_cycle(TransientSourceError("hubspot: HTTP 503; retried 3 times"), caplog)
    [line] = [r for r in caplog.records if "cycle failed" in r.getMessage()]
    assert line.levelno == logging.WARNING


class _CountingBug(InMemoryConnector):
    def count_live(self) -> int | None:
        raise KeyError(f"total {SECRET}")


def test_a_bug_in_a_count_is_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """A count that fails with an exception that is no incsync error skips the count, and the
    bug's traceback (redacted) locates it; the cycle completes."""
    source = InMemorySource()
    source.put({"id": "r1", "updated_at": iso_timestamp(NOW - timedelta(hours=1)), "amount": 1})
    engine = SyncEngine(InMemoryStore(), clock=ManualClock(NOW))
    with caplog.at_level(logging.DEBUG, logger="incsync"):
        result = engine.run_cycle("acme", _CountingBug(source, secret=SECRET))
    assert result.outcome is Outcome.COMPLETED
    assert "source acme: the count of live records was skipped: KeyError" in caplog.text
    assert "KeyError is not an incsync error, so its traceback follows:" in caplog.text
    assert ", in count_live\n" in caplog.text
    assert SECRET not in caplog.text
