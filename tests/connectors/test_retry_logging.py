"""Retried attempts are logged by what they say: a vendor's throttle is routine, a 5xx is not."""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.connectors.scripted import Script, connect

OK = httpx.Response(200, json={"items": []})


def _retry_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "retrying in" in r.getMessage()]


def test_a_throttled_attempt_is_logged_at_info(caplog: pytest.LogCaptureFixture) -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "3"}), OK)
    with caplog.at_level(logging.DEBUG, logger="incsync"), connect(script) as connector:
        connector.get_json("/items")
    [retried] = _retry_records(caplog)
    assert retried.levelno == logging.INFO


def test_a_failing_server_is_logged_at_warning(caplog: pytest.LogCaptureFixture) -> None:
    script = Script(httpx.Response(503, text="Service Unavailable"), OK)
    with caplog.at_level(logging.DEBUG, logger="incsync"), connect(script) as connector:
        connector.get_json("/items")
    [retried] = _retry_records(caplog)
    assert retried.levelno == logging.WARNING
