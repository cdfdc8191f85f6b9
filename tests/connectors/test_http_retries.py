"""Tests for HttpConnector's retries: backoff, Retry-After, vendor throttles, quotas, timeouts."""

from __future__ import annotations

import socket
import time
from datetime import timedelta

import httpx
import pytest

from incsync import Outcome, SyncEngine
from incsync.connectors import BearerToken, OAuth2Refresh, RetryPolicy
from incsync.connectors.http import HttpOptions
from incsync.errors import AuthError, RateLimitedError, TransientSourceError
from incsync.testing import InMemoryStore, ManualClock
from incsync.testing.fakes import FakeVendor
from tests.connectors.fakeapi import CLIENT_ID, CLIENT_SECRET, ItemsConnector, OAuthApi, item
from tests.connectors.scripted import (
    EXACT,
    NOW,
    HubSpotLike,
    Plain,
    QuickBooksLike,
    SalesforceLike,
    Script,
    XeroLike,
    connect,
)
from tests.connectors.test_throttle import (
    HUBSPOT_BURST,
    HUBSPOT_DAILY,
    QUICKBOOKS_XML,
    SALESFORCE_LIMIT,
)

OK = httpx.Response(200, json={"items": []})


def _oauth(api: OAuthApi, base_url: str) -> OAuth2Refresh:
    return OAuth2Refresh(
        f"{base_url}/oauth/token",
        CLIENT_ID,
        CLIENT_SECRET,
        api.refresh_token,
        access_token="at_SENTINEL_1",
    )


# -- transient failures ----------------------------------------------------------------------------


def test_a_5xx_storm_exhausts_the_retries_with_growing_waits() -> None:
    """Five 503s: four backoff waits (1, 2, 4, 8 s) are slept, then TransientSourceError."""
    script = Script(httpx.Response(503, text="Service Unavailable"))
    slept: list[float] = []
    with connect(script, slept=slept) as connector, pytest.raises(TransientSourceError) as caught:
        connector.get_json("/items")
    assert len(script.requests) == 5
    assert slept == [1.0, 2.0, 4.0, 8.0]
    assert "gave up after 5 attempts, 15.0 s waiting" in str(caught.value)
    assert caught.value.status_code == 503
    assert not isinstance(caught.value, RateLimitedError)


def test_a_5xx_that_heals_is_invisible_to_the_caller() -> None:
    """Two 502s then an answer: the caller gets the answer."""
    script = Script(httpx.Response(502), httpx.Response(500), OK)
    slept: list[float] = []
    with connect(script, slept=slept) as connector:
        assert connector.get_json("/items") == {"items": []}
    assert slept == [1.0, 2.0]


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.ConnectTimeout("timed out"),
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("[Errno 104] Connection reset by peer"),
    ],
)
def test_connection_errors_and_timeouts_are_retried(failure: Exception) -> None:
    """Network trouble is retried; when it persists it ends as TransientSourceError."""
    healing = Script(failure, OK)
    with connect(healing) as connector:
        assert connector.get_json("/items") == {"items": []}
    persisting = Script(failure)
    with connect(persisting) as connector, pytest.raises(TransientSourceError) as caught:
        connector.get_json("/items")
    assert type(failure).__name__ in str(caught.value)
    assert len(persisting.requests) == EXACT.max_attempts


def test_a_refused_connection_over_a_real_socket_is_transient() -> None:
    """Connecting to a loopback port nobody listens on fails as TransientSourceError."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    slept: list[float] = []
    connector = Plain(
        f"http://127.0.0.1:{port}", options=HttpOptions(retry=EXACT, sleep=slept.append)
    )
    with connector, pytest.raises(TransientSourceError, match="could not connect"):
        connector.get_json("/items")
    assert len(slept) == EXACT.max_attempts - 1


class Slow(FakeVendor):
    """Answers after a delay longer than the client's read timeout."""

    def handle(self, request: httpx.Request) -> httpx.Response:
        time.sleep(0.3)
        return httpx.Response(200, json={})


def test_a_read_timeout_over_a_real_socket_is_transient() -> None:
    """A server slower than the read timeout fails the request as TransientSourceError."""
    timeout = httpx.Timeout(0.05, connect=1.0)
    retry = RetryPolicy(max_attempts=2, jitter=0)
    with Slow().serve() as base_url:
        connector = Plain(
            base_url, options=HttpOptions(timeout=timeout, retry=retry, sleep=lambda _: None)
        )
        with connector, pytest.raises(TransientSourceError, match="did not answer in time"):
            connector.get_json("/items")


# -- throttles -------------------------------------------------------------------------------------


def test_429_retry_after_seconds_is_honoured() -> None:
    """A 429 asking for 7 s waits 7 s (more than the 1 s backoff), then the retry answers."""
    script = Script(httpx.Response(429, headers={"Retry-After": "7"}), OK)
    slept: list[float] = []
    with connect(script, slept=slept) as connector:
        connector.get_json("/items")
    assert slept == [7.0]


def test_429_retry_after_as_an_http_date_is_honoured() -> None:
    """A Retry-After date 30 s after the connector's clock waits 30 s."""
    script = Script(
        httpx.Response(429, headers={"Retry-After": "Fri, 13 Nov 2026 09:00:30 GMT"}), OK
    )
    slept: list[float] = []
    with connect(script, slept=slept, clock=ManualClock(NOW)) as connector:
        connector.get_json("/items")
    assert slept == [30.0]


def test_429_without_retry_after_backs_off() -> None:
    """A 429 that does not say how long waits the backoff."""
    script = Script(httpx.Response(429), httpx.Response(429), OK)
    slept: list[float] = []
    with connect(script, slept=slept) as connector:
        connector.get_json("/items")
    assert slept == [1.0, 2.0]


def test_a_persistent_burst_throttle_ends_rate_limited_with_retry_at() -> None:
    """A throttle outlasting the attempts is RateLimitedError; retry_at comes from Retry-After."""
    script = Script(httpx.Response(429, headers={"Retry-After": "2"}))
    with connect(script) as connector, pytest.raises(RateLimitedError) as caught:
        connector.get_json("/items")
    assert caught.value.retry_at == NOW + timedelta(seconds=2)
    assert caught.value.status_code == 429
    assert len(script.requests) == EXACT.max_attempts


def test_a_retry_after_beyond_the_wait_cap_fails_at_once() -> None:
    """Asked to wait an hour with 5 minutes allowed: no sleep, RateLimitedError until then."""
    script = Script(httpx.Response(429, headers={"Retry-After": "3600"}))
    slept: list[float] = []
    with connect(script, slept=slept) as connector, pytest.raises(RateLimitedError) as caught:
        connector.get_json("/items")
    assert caught.value.retry_at == NOW + timedelta(hours=1)
    assert (len(script.requests), slept) == (1, [])


def test_the_total_wait_cap_bounds_the_backoff() -> None:
    """With 10 s of waiting allowed, a 5xx storm sleeps 1+2+4 s and fails before the 8 s wait."""
    script = Script(httpx.Response(500))
    slept: list[float] = []
    retry = RetryPolicy(max_attempts=10, base_delay=1.0, max_delay=60, max_total_wait=10, jitter=0)
    connector = connect(script, slept=slept, retry=retry)
    with connector, pytest.raises(TransientSourceError):
        connector.get_json("/items")
    assert slept == [1.0, 2.0, 4.0]
    assert len(script.requests) == 4


def test_quickbooks_xml_throttle_is_backed_off_and_retried() -> None:
    """QuickBooks' XML ThrottleExceeded body (sent although JSON was asked) is a burst: retried."""
    throttled = httpx.Response(429, content=QUICKBOOKS_XML, headers={"Content-Type": "text/xml"})
    script = Script(throttled, OK)
    slept: list[float] = []
    with connect(script, cls=QuickBooksLike, slept=slept) as connector:
        assert connector.get_json("/query") == {"items": []}
    assert slept == [1.0]


def test_quickbooks_xml_throttle_that_persists_is_rate_limited_not_bad_response() -> None:
    """When the throttle outlasts the retries the error says throttled, quoting the XML."""
    throttled = httpx.Response(429, content=QUICKBOOKS_XML, headers={"Content-Type": "text/xml"})
    connector = connect(Script(throttled), cls=QuickBooksLike)
    with connector, pytest.raises(RateLimitedError, match="ThrottleExceeded") as caught:
        connector.get_json("/query")
    assert caught.value.excerpt is not None
    assert "<IntuitResponse" in caught.value.excerpt


def test_salesforce_request_limit_fails_at_once_with_retry_at() -> None:
    """Salesforce's 403 REQUEST_LIMIT_EXCEEDED is the daily allowance: no retry, retry_at set."""
    script = Script(httpx.Response(403, content=SALESFORCE_LIMIT))
    slept: list[float] = []
    connector = connect(script, cls=SalesforceLike, slept=slept)
    with connector, pytest.raises(RateLimitedError) as caught:
        connector.get_json("/query")
    assert caught.value.retry_at == NOW + SalesforceLike.quota_retry_after
    assert (caught.value.vendor, caught.value.status_code) == ("salesforce", 403)
    assert "TotalRequests Limit exceeded." in str(caught.value)
    assert (len(script.requests), slept) == (1, [])


def test_without_the_vendor_hook_a_salesforce_403_is_an_auth_error() -> None:
    """The same body through the default signals is a plain 403: why vendors override the hook."""
    connector = connect(Script(httpx.Response(403, content=SALESFORCE_LIMIT)))
    with connector, pytest.raises(AuthError):
        connector.get_json("/query")


def test_hubspot_daily_limit_fails_at_once_with_retry_at() -> None:
    """HubSpot's DAILY policy: one request, no sleep, RateLimitedError with retry_at."""
    script = Script(httpx.Response(429, content=HUBSPOT_DAILY))
    slept: list[float] = []
    connector = connect(script, cls=HubSpotLike, slept=slept)
    with connector, pytest.raises(RateLimitedError, match="quota is used up") as caught:
        connector.get_json("/crm/v3/objects/deals")
    assert caught.value.retry_at == NOW + HubSpotLike.quota_retry_after
    assert (len(script.requests), slept) == (1, [])


def test_hubspot_ten_secondly_limit_backs_off_and_retries() -> None:
    """HubSpot's TEN_SECONDLY_ROLLING policy clears in seconds: backed off, then answered."""
    script = Script(httpx.Response(429, content=HUBSPOT_BURST), OK)
    slept: list[float] = []
    with connect(script, cls=HubSpotLike, slept=slept) as connector:
        assert connector.get_json("/crm/v3/objects/deals") == {"items": []}
    assert slept == [1.0]


def test_xero_day_limit_uses_its_retry_after_as_retry_at() -> None:
    """Xero's day limit fails at once; its Retry-After says when the source may try again."""
    limited = httpx.Response(
        429, headers={"Retry-After": "5400", "X-Rate-Limit-Problem": "day"}, content=b""
    )
    connector = connect(Script(limited), cls=XeroLike)
    with connector, pytest.raises(RateLimitedError) as caught:
        connector.get_json("/Invoices")
    assert caught.value.retry_at == NOW + timedelta(minutes=90)


def test_a_rejected_token_is_not_retried() -> None:
    """A 401 with a static token is an AuthError after one request: waiting cannot heal it."""
    script = Script(httpx.Response(401, json={"message": "expired"}))
    slept: list[float] = []
    connector = connect(script, auth=BearerToken("pat_SENTINEL"), slept=slept)
    with connector, pytest.raises(AuthError):
        connector.get_json("/items")
    assert (len(script.requests), slept) == (1, [])


# -- with the engine -------------------------------------------------------------------------------


def test_a_daily_quota_becomes_the_sources_not_before() -> None:
    """Through the engine, a quota error fails the cycle and the state waits until retry_at."""
    clock = ManualClock(NOW)
    engine = SyncEngine(InMemoryStore(), clock=clock)
    connector = connect(Script(httpx.Response(429, content=HUBSPOT_DAILY)), cls=HubSpotLike)
    result = engine.run_cycle("acme/deals", connector)
    state = engine.state("acme/deals")
    assert result.outcome is Outcome.FAILED
    assert result.error_class == "RateLimitedError"
    assert state.not_before == NOW + HubSpotLike.quota_retry_after
    assert engine.run_cycle("acme/deals", connector).outcome is Outcome.SKIPPED_WAITING


def test_a_refused_refresh_is_recorded_as_an_auth_failure() -> None:
    """Through the engine, a refused refresh is an auth failure, with no secret in the message."""
    api = OAuthApi([item(1, NOW)])
    auth = _oauth(api, "http://fake")
    api.refresh_token = "rt_SENTINEL_issued_to_someone_else"
    api.expire_access_tokens()
    engine = SyncEngine(InMemoryStore(), clock=ManualClock(NOW))
    connector = ItemsConnector(
        "http://fake", auth=auth, options=HttpOptions(transport=api.transport())
    )
    result = engine.run_cycle("acme/items", connector)
    state = engine.state("acme/items")
    assert result.outcome is Outcome.FAILED
    assert state.last_error is not None
    assert state.last_error.auth
    assert "SENTINEL" not in state.last_error.message
    assert "re-authorise" in state.last_error.message


def test_a_full_cycle_over_a_real_socket_survives_an_outage() -> None:
    """A real sync over loopback HTTP, with a 503 in the middle of paging, applies every record."""
    api = OAuthApi([item(n, NOW - timedelta(minutes=10 - n)) for n in range(5)])
    outage = [1]

    def flaky(request: httpx.Request) -> httpx.Response | None:
        if request.url.params.get("offset") == "2" and outage:
            outage.pop()
            return httpx.Response(503, text="upstream timeout")
        return None

    api.add_fault(flaky)
    store = InMemoryStore()
    engine = SyncEngine(store, clock=ManualClock(NOW + timedelta(hours=1)))
    with api.serve() as base_url:
        auth = _oauth(api, base_url)
        with ItemsConnector(
            base_url, auth=auth, options=HttpOptions(retry=EXACT, sleep=lambda _: None)
        ) as connector:
            result = engine.run_cycle("acme/items", connector)
    assert result.outcome is Outcome.COMPLETED
    assert result.applied == 5
    assert [r.status for r in api.requests].count(503) == 1
