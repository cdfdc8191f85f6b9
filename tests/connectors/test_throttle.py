"""Tests for incsync.connectors.throttle: each vendor's throttle signal, from real error bodies."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from incsync.connectors.retry import Throttle
from incsync.connectors.throttle import (
    default_throttle,
    hubspot_throttle,
    quickbooks_throttle,
    salesforce_throttle,
    xero_throttle,
)

# Verbatim vendor bodies (see the team's api-samples/<vendor>/SOURCE.txt for where each is from).
HUBSPOT_DAILY = b"""{
  "status": "error",
  "message": "You have reached your daily limit.",
  "errorType": "RATE_LIMIT",
  "correlationId": "c033cdaa-2c40-4a64-ae48-b4cec88dad24",
  "policyName": "DAILY",
  "requestId": "3d3e35b7-0dae-4b9f-a6e3-9c230cbcf8dd"
}"""
HUBSPOT_BURST = HUBSPOT_DAILY.replace(b'"DAILY"', b'"TEN_SECONDLY_ROLLING"')
SALESFORCE_LIMIT = (
    b'[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]'
)
SALESFORCE_CONCURRENT = (
    b'[{"message":"ConcurrentRequests (Concurrent API Requests) Limit exceeded.",'
    b'"errorCode":"REQUEST_LIMIT_EXCEEDED"}]'
)
SALESFORCE_FORBIDDEN = b'[{"message":"Insufficient privileges","errorCode":"INSUFFICIENT_ACCESS"}]'
QUICKBOOKS_XML = b"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<IntuitResponse time="2017-07-30T22:45:22.933-07:00" xmlns="http://schema.intuit.com/finance/v3">
    <Fault type="SERVICE">
        <Error code="3001">
            <Message>message=ThrottleExceeded; errorCode=003001; statusCode=429</Message>
            <Detail>The request limit was reached.  Try again later</Detail>
        </Error>
    </Fault>
</IntuitResponse>
"""
QUICKBOOKS_JSON = (
    b'{"Fault":{"Error":[{"Message":"message=ThrottleExceeded; errorCode=003001; '
    b'statusCode=429","Detail":"The request limit was reached.","code":"3001"}],'
    b'"type":"SERVICE"}}'
)
QUICKBOOKS_VALIDATION = (
    b'{"Fault":{"Error":[{"Message":"Result Set Big Error","Detail":"Result Set Big Error : '
    b'Report too large, please customize","code":"10100","element":"ReportName"}],'
    b'"type":"ValidationFault"},"time":"2024-06-24T10:19:14.384-07:00"}'
)

Recogniser = Callable[[httpx.Response], Throttle | None]
ALL: list[Recogniser] = [
    default_throttle,
    hubspot_throttle,
    quickbooks_throttle,
    salesforce_throttle,
    xero_throttle,
]


def _response(status: int, body: bytes = b"", **headers: str) -> httpx.Response:
    return httpx.Response(
        status,
        content=body,
        headers={name.replace("_", "-"): value for name, value in headers.items()},
    )


@pytest.mark.parametrize("recognise", ALL)
def test_a_success_or_an_ordinary_error_is_no_throttle(recognise: Recogniser) -> None:
    """200, 400, 404, 500 and a 503 without Retry-After are not throttles for any vendor."""
    for status in (200, 400, 404, 500, 503):
        assert recognise(_response(status, b'{"message": "no"}')) is None


@pytest.mark.parametrize("recognise", ALL)
def test_a_plain_429_is_a_burst_that_honours_retry_after(recognise: Recogniser) -> None:
    """Every vendor function treats a bare 429 as a burst and keeps its Retry-After."""
    throttle = recognise(_response(429, b"slow down", retry_after="17"))
    assert throttle is not None
    assert not throttle.quota
    assert throttle.retry_after == 17.0


def test_default_reads_an_http_date_and_a_503_with_retry_after() -> None:
    """Retry-After as an HTTP date becomes retry_at; a 503 that says when to return throttles."""
    dated = default_throttle(_response(429, retry_after="Fri, 01 Mar 2024 12:05:00 GMT"))
    assert dated is not None
    assert dated.retry_at == datetime(2024, 3, 1, 12, 5, tzinfo=timezone.utc)
    unavailable = default_throttle(_response(503, retry_after="5"))
    assert unavailable is not None
    assert unavailable.retry_after == 5.0


def test_hubspot_daily_policy_is_a_quota() -> None:
    """HubSpot's 429 with policyName DAILY is the daily quota: no point retrying this cycle."""
    throttle = hubspot_throttle(_response(429, HUBSPOT_DAILY))
    assert throttle is not None
    assert throttle.quota
    assert "DAILY" in throttle.reason


def test_hubspot_ten_secondly_policy_is_a_burst() -> None:
    """HubSpot's TEN_SECONDLY_ROLLING clears within seconds: a burst, retried."""
    throttle = hubspot_throttle(_response(429, HUBSPOT_BURST))
    assert throttle is not None
    assert not throttle.quota
    assert "TEN_SECONDLY_ROLLING" in throttle.reason


def test_salesforce_request_limit_on_a_403_is_a_quota() -> None:
    """Salesforce signals its 24-hour API allowance with 403 REQUEST_LIMIT_EXCEEDED, not 429."""
    throttle = salesforce_throttle(_response(403, SALESFORCE_LIMIT))
    assert throttle is not None
    assert throttle.quota
    assert "TotalRequests Limit exceeded." in throttle.reason


def test_salesforce_concurrent_request_limit_is_a_burst() -> None:
    """The same errorCode for too many concurrent long requests clears soon: a burst."""
    throttle = salesforce_throttle(_response(403, SALESFORCE_CONCURRENT))
    assert throttle is not None
    assert not throttle.quota


def test_salesforce_other_403s_are_not_throttles() -> None:
    """A 403 for missing privileges is an access problem, not a throttle."""
    assert salesforce_throttle(_response(403, SALESFORCE_FORBIDDEN)) is None
    assert salesforce_throttle(_response(403, b"<html>forbidden</html>")) is None


@pytest.mark.parametrize("body", [QUICKBOOKS_XML, QUICKBOOKS_JSON])
@pytest.mark.parametrize("status", [429, 403])
def test_quickbooks_throttle_fault_in_xml_or_json(body: bytes, status: int) -> None:
    """Fault 3001 ThrottleExceeded is recognised in XML (sent despite Accept: JSON) and JSON."""
    throttle = quickbooks_throttle(_response(status, body))
    assert throttle is not None
    assert not throttle.quota
    assert "ThrottleExceeded" in throttle.reason


def test_quickbooks_other_faults_are_not_throttles() -> None:
    """A validation fault or an unrelated 403 is not a throttle."""
    assert quickbooks_throttle(_response(400, QUICKBOOKS_VALIDATION)) is None
    assert quickbooks_throttle(_response(403, b'{"Fault":{"Error":[{"code":"3100"}]}}')) is None


def test_xero_day_limit_is_a_quota_with_its_retry_after() -> None:
    """Xero's X-Rate-Limit-Problem: day is the daily quota; Retry-After says when to return."""
    throttle = xero_throttle(_response(429, retry_after="3600", x_rate_limit_problem="day"))
    assert throttle is not None
    assert throttle.quota
    assert throttle.retry_after == 3600.0


def test_xero_minute_limit_is_a_burst() -> None:
    """Xero's minute limit (the documented 429 header set) is a burst honouring Retry-After."""
    throttle = xero_throttle(
        _response(
            429,
            retry_after="60",
            x_rate_limit_problem="minute",
            x_daylimit_remaining="4321",
            x_minlimit_remaining="0",
        )
    )
    assert throttle is not None
    assert not throttle.quota
    assert throttle.retry_after == 60.0


@pytest.mark.parametrize("recognise", ALL)
@given(
    status=st.integers(min_value=100, max_value=599),
    body=st.binary(max_size=200),
    retry_after=st.one_of(st.none(), st.text(max_size=30)),
)
def test_recognisers_are_total(
    recognise: Recogniser, status: int, body: bytes, retry_after: str | None
) -> None:
    """Any status, body and Retry-After value gives a Throttle or None, never an exception."""
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    try:
        response = httpx.Response(status, content=body, headers=headers)
    except (UnicodeEncodeError, httpx.LocalProtocolError):
        return  # not a header value httpx can carry, so no response could hold it
    result = recognise(response)
    assert result is None or isinstance(result, Throttle)
