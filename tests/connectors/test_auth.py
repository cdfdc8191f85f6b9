"""Tests for incsync.connectors.auth: static credentials, and OAuth2 refresh with rotation."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Generator, Iterator
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl

import httpx
import pytest

from incsync import Outcome, SyncEngine
from incsync.connectors import ApiKey, Auth, BearerToken, OAuth2Refresh, RetryPolicy, TokenSet
from incsync.connectors.http import DEFAULT_TIMEOUT, HttpOptions
from incsync.errors import (
    AuthError,
    BadResponseError,
    ConfigurationError,
    NaiveDatetimeError,
    TransientSourceError,
)
from incsync.state import Phase
from incsync.testing import InMemoryStore, ManualClock
from incsync.testing.fakes import FakeQuickBooks
from incsync.vendors.hubspot import HUBSPOT_OAUTH
from incsync.vendors.pipedrive import pipedrive_oauth
from incsync.vendors.quickbooks import QuickBooksConnector, quickbooks_auth
from incsync.vendors.salesforce import SalesforceConnector
from incsync.vendors.xero import xero_auth
from tests.connectors.fakeapi import CLIENT_ID, CLIENT_SECRET, ItemsConnector, OAuthApi

NOW = datetime(2026, 11, 13, 9, 0, tzinfo=timezone.utc)
TOKEN_URL = "http://fake/oauth/token"
NO_WAIT = RetryPolicy(max_attempts=3, base_delay=0.5, jitter=0)


def _oauth(
    api: OAuthApi,
    *,
    access_token: str | None = "at_SENTINEL_1",
    expires_at: datetime | None = None,
    received: list[TokenSet] | None = None,
    clock: ManualClock | None = None,
    client_auth: str = "body",
    token_url: str = TOKEN_URL,
) -> OAuth2Refresh:
    return OAuth2Refresh(
        token_url,
        CLIENT_ID,
        CLIENT_SECRET,
        api.refresh_token,
        access_token=access_token,
        expires_at=expires_at,
        on_refresh=None if received is None else received.append,
        client_auth=client_auth,  # type: ignore[arg-type]
        clock=clock or ManualClock(NOW),
    )


def _connector(
    api: OAuthApi, auth: Auth | None, *, timeout: httpx.Timeout = DEFAULT_TIMEOUT
) -> ItemsConnector:
    slept: list[float] = []
    options = HttpOptions(
        transport=api.transport(), retry=NO_WAIT, sleep=slept.append, timeout=timeout
    )
    return ItemsConnector("http://fake", auth=auth, options=options)


def _calls(api: OAuthApi) -> list[tuple[str, str, int]]:
    return [(r.method, httpx.URL(r.url).path, r.status) for r in api.requests]


# -- static credentials --------------------------------------------------------------------------


def test_bearer_token_is_sent_and_named_as_a_secret() -> None:
    """BearerToken sets Authorization: Bearer <token>; secrets() names it; repr hides it."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200)

    auth = BearerToken("pat_SENTINEL_42")
    with httpx.Client(transport=httpx.MockTransport(handler), auth=auth) as client:
        client.get("http://fake/x")
    assert seen == ["Bearer pat_SENTINEL_42"]
    assert auth.secrets() == ("pat_SENTINEL_42",)
    assert "SENTINEL" not in repr(auth)


def test_api_key_goes_in_the_header_or_the_query_as_configured() -> None:
    """ApiKey(header=...) sets that header; ApiKey(query_param=...) adds the query parameter."""
    urls: list[httpx.URL] = []
    headers: list[httpx.Headers] = []

    def handler(request: httpx.Request) -> httpx.Response:
        urls.append(request.url)
        headers.append(request.headers)
        return httpx.Response(200)

    transport = httpx.MockTransport(handler)
    with httpx.Client(transport=transport, auth=ApiKey("k_SENTINEL", header="X-API-Key")) as c:
        c.get("http://fake/x", params={"a": "1"})
    with httpx.Client(transport=transport, auth=ApiKey("k_SENTINEL", query_param="api_token")) as c:
        c.get("http://fake/x", params={"a": "1"})
    assert headers[0]["x-api-key"] == "k_SENTINEL"
    assert urls[0].params.get("api_token") is None
    assert dict(urls[1].params) == {"a": "1", "api_token": "k_SENTINEL"}
    assert "x-api-key" not in headers[1]
    assert "SENTINEL" not in repr(ApiKey("k_SENTINEL", query_param="api_token"))


@pytest.mark.parametrize(
    "build",
    [
        lambda: ApiKey("k"),
        lambda: ApiKey("k", header="X-Key", query_param="key"),
        lambda: ApiKey("", header="X-Key"),
        lambda: BearerToken("  "),
        lambda: OAuth2Refresh(TOKEN_URL, CLIENT_ID, "", "rt"),
        lambda: OAuth2Refresh(TOKEN_URL, CLIENT_ID, "s", "rt", client_auth="post"),  # type: ignore[arg-type]
    ],
)
def test_credentials_are_checked_on_construction(build: Callable[[], Auth]) -> None:
    """Empty values and contradictory options are refused with a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        build()


def test_oauth_refuses_a_naive_expiry() -> None:
    """expires_at must be aware, like every time incsync takes."""
    with pytest.raises(NaiveDatetimeError):
        OAuth2Refresh(TOKEN_URL, "c", "s", "rt", expires_at=datetime(2026, 1, 1))  # noqa: DTZ001


# -- OAuth2 refresh ------------------------------------------------------------------------------


def test_an_expired_token_is_refreshed_once_and_the_request_replayed() -> None:
    """A 401 triggers one refresh; the same request is then replayed with the new token."""
    api = OAuthApi([{"id": "1"}])
    api.expire_access_tokens()
    with _connector(api, _oauth(api)) as connector:
        assert connector.get_json("/api/items") == {"items": [{"id": "1"}]}
    assert _calls(api) == [
        ("GET", "/api/items", 401),
        ("POST", "/oauth/token", 200),
        ("GET", "/api/items", 200),
    ]
    assert api.refreshes == 1


def test_without_an_access_token_the_first_request_refreshes_first() -> None:
    """Given only a refresh token, the flow gets an access token before the first API call."""
    api = OAuthApi()
    with _connector(api, _oauth(api, access_token=None)) as connector:
        connector.get_json("/api/items")
    assert _calls(api) == [("POST", "/oauth/token", 200), ("GET", "/api/items", 200)]


def test_a_rotated_refresh_token_reaches_the_callback_and_is_used_next() -> None:
    """The host's callback gets the new refresh token; the next refresh presents that one."""
    api = OAuthApi()
    received: list[TokenSet] = []
    clock = ManualClock(NOW)
    with _connector(api, _oauth(api, received=received, clock=clock)) as connector:
        api.expire_access_tokens()
        connector.get_json("/api/items")
        api.expire_access_tokens()
        connector.get_json("/api/items")
    assert [tokens.refresh_token for tokens in received] == ["rt_SENTINEL_2", "rt_SENTINEL_3"]
    assert all(tokens.rotated for tokens in received)
    assert [form["refresh_token"] for form in api.token_forms] == ["rt_SENTINEL_1", "rt_SENTINEL_2"]
    first = received[0]
    assert first.access_token == "at_SENTINEL_2"
    assert first.expires_at == NOW + timedelta(seconds=3600)
    assert first.extra == {"token_type": "bearer", "instance_url": "https://eu1.example.com"}
    assert "SENTINEL" not in repr(first)


def test_a_refresh_token_that_is_not_rotated_is_handed_back_unchanged() -> None:
    """When the vendor keeps the refresh token, the callback gets the same one, rotated=False."""
    api = OAuthApi(rotate=False)
    received: list[TokenSet] = []
    api.expire_access_tokens()
    with _connector(api, _oauth(api, received=received)) as connector:
        connector.get_json("/api/items")
    assert [(t.refresh_token, t.rotated) for t in received] == [("rt_SENTINEL_1", False)]


def test_a_token_about_to_expire_is_refreshed_before_the_request() -> None:
    """Within refresh_margin of expires_at the flow refreshes first, so no request meets a 401."""
    api = OAuthApi()
    clock = ManualClock(NOW)
    auth = _oauth(api, expires_at=NOW + timedelta(minutes=5), clock=clock)
    with _connector(api, auth) as connector:
        connector.get_json("/api/items")
        clock.advance(timedelta(minutes=4, seconds=30))
        connector.get_json("/api/items")
    assert _calls(api) == [
        ("GET", "/api/items", 200),
        ("POST", "/oauth/token", 200),
        ("GET", "/api/items", 200),
    ]


def test_a_refused_refresh_is_an_auth_error_without_retries_or_secrets() -> None:
    """invalid_grant from the token endpoint: AuthError saying to re-authorise; one refresh."""
    api = OAuthApi()
    auth = _oauth(api)
    api.expire_access_tokens()
    api.refresh_token = "rt_SENTINEL_issued_to_someone_else"
    with _connector(api, auth) as connector, pytest.raises(AuthError) as caught:
        connector.get_json("/api/items")
    error = caught.value
    assert "re-authorise" in str(error)
    assert "invalid_grant" in str(error)
    assert (error.vendor, error.status_code) == ("acme", 400)
    assert error.excerpt is not None
    assert "invalid_grant" in error.excerpt
    assert _calls(api) == [("GET", "/api/items", 401), ("POST", "/oauth/token", 400)]
    for secret in auth.secrets():
        assert secret not in str(error)
        assert secret not in error.excerpt


def test_a_second_401_after_refreshing_is_an_auth_error() -> None:
    """If the fresh token is refused too, the credentials are rejected: no loop of refreshes."""
    api = OAuthApi()
    api.expire_access_tokens()

    def refuse_every_api_call(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.startswith("/api"):
            return httpx.Response(401, json={"error": "revoked"})
        return None

    api.add_fault(refuse_every_api_call)
    with _connector(api, _oauth(api)) as connector, pytest.raises(AuthError, match="HTTP 401"):
        connector.get_json("/api/items")
    assert api.refreshes == 1
    assert len(api.requests) == 3


def test_a_failing_token_endpoint_is_transient_and_retried() -> None:
    """A 503 from the token endpoint may heal: the attempt is retried and the refresh succeeds."""
    api = OAuthApi()
    api.expire_access_tokens()
    outages = [1]

    def token_outage(request: httpx.Request) -> httpx.Response | None:
        if request.url.path == "/oauth/token" and outages:
            outages.pop()
            return httpx.Response(503, text="maintenance")
        return None

    api.add_fault(token_outage)
    with _connector(api, _oauth(api)) as connector:
        connector.get_json("/api/items")
    assert [status for *_, status in _calls(api)] == [401, 503, 401, 200, 200]


def test_a_token_endpoint_that_keeps_failing_ends_transient() -> None:
    """When every refresh meets a 5xx, the request ends with TransientSourceError."""
    api = OAuthApi()
    api.expire_access_tokens()
    api.refresh_answer = httpx.Response(502, text="bad gateway")
    with _connector(api, _oauth(api)) as connector, pytest.raises(TransientSourceError):
        connector.get_json("/api/items")
    assert len(api.token_forms) == NO_WAIT.max_attempts


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(200, json={"token_type": "bearer"}), AuthError),
        (httpx.Response(200, json={"error": "bad_verification_code"}), AuthError),
        (httpx.Response(200, text="<html>login</html>"), BadResponseError),
        (httpx.Response(200, text='{"access_token": "at_'), BadResponseError),
        (httpx.Response(200, json=["at_x"]), BadResponseError),
        (
            httpx.Response(200, json={"access_token": "at_x", "expires_in": "soon"}),
            BadResponseError,
        ),
        (httpx.Response(302, headers={"Location": "/login"}), AuthError),
    ],
)
def test_an_unusable_token_answer_is_refused(
    answer: httpx.Response, error: type[Exception]
) -> None:
    """A JSON answer without an access_token is a refusal; a damaged body is a bad response."""
    api = OAuthApi()
    api.expire_access_tokens()
    api.refresh_answer = answer
    with _connector(api, _oauth(api)) as connector, pytest.raises(error):
        connector.get_json("/api/items")


def test_expires_in_as_text_is_read() -> None:
    """Some vendors send expires_in as a string of digits; it still sets the expiry."""
    api = OAuthApi()
    api.refresh_answer = httpx.Response(
        200, json={"access_token": "at_SENTINEL_1", "expires_in": "60"}
    )
    received: list[TokenSet] = []
    with _connector(api, _oauth(api, access_token=None, received=received)) as connector:
        connector.get_json("/api/items")
    assert received[0].expires_at == NOW + timedelta(seconds=60)


def test_basic_client_authentication_keeps_the_secret_out_of_the_form() -> None:
    """client_auth="basic" sends id and secret as HTTP Basic (QuickBooks), not as form fields."""
    api = OAuthApi()
    with _connector(api, _oauth(api, access_token=None, client_auth="basic")) as connector:
        connector.get_json("/api/items")
    expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert api.token_headers[0]["authorization"] == f"Basic {expected}"
    assert "client_secret" not in api.token_forms[0]
    assert api.token_forms[0]["grant_type"] == "refresh_token"


def test_the_token_request_carries_the_connectors_timeouts() -> None:
    """The refresh request leaves with the same explicit timeouts as the API requests."""
    timeouts: list[object] = []
    api = OAuthApi()

    def spy(request: httpx.Request) -> httpx.Response | None:
        timeouts.append(request.extensions.get("timeout"))
        return None

    api.add_fault(spy)
    timeout = httpx.Timeout(4.0, connect=2.0)
    with _connector(api, _oauth(api, access_token=None), timeout=timeout) as connector:
        connector.get_json("/api/items")
    expected = {"connect": 2.0, "read": 4.0, "write": 4.0, "pool": 4.0}
    assert timeouts == [expected, expected]


def test_a_callback_that_fails_reaches_the_caller_and_the_new_tokens_stay_in_use() -> None:
    """An exception from on_refresh propagates unchanged; the next request uses the new token."""
    api = OAuthApi()
    api.expire_access_tokens()

    def broken_store(tokens: TokenSet) -> None:
        raise OSError("disk full")

    auth = OAuth2Refresh(
        TOKEN_URL, CLIENT_ID, CLIENT_SECRET, api.refresh_token, on_refresh=broken_store
    )
    with _connector(api, auth) as connector:
        with pytest.raises(OSError, match="disk full"):
            connector.get_json("/api/items")
        connector.get_json("/api/items")
    assert api.refreshes == 1


def test_secrets_name_the_client_secret_and_current_and_previous_tokens() -> None:
    """Old tokens stay masked for a while: a vendor may echo one in a later error."""
    api = OAuthApi()
    auth = _oauth(api)
    api.expire_access_tokens()
    with _connector(api, auth) as connector:
        connector.get_json("/api/items")
    assert set(auth.secrets()) == {
        CLIENT_SECRET,
        "at_SENTINEL_1",
        "rt_SENTINEL_1",
        "at_SENTINEL_2",
        "rt_SENTINEL_2",
    }
    assert "SENTINEL" not in repr(auth)


def test_concurrent_requests_meeting_an_expired_token_refresh_once() -> None:
    """Eight threads hit a 401 together over a real socket; one refresh serves them all.

    With a rotating refresh token, a second concurrent refresh would present a retired token
    and be refused, failing requests that should have succeeded.
    """
    api = OAuthApi([{"id": "1"}])
    received: list[TokenSet] = []
    results: list[object] = []
    with api.serve() as base_url:
        auth = _oauth(api, received=received, token_url=f"{base_url}/oauth/token")
        connector = ItemsConnector(
            base_url, auth=auth, options=HttpOptions(retry=NO_WAIT, sleep=lambda _: None)
        )
        api.expire_access_tokens()
        start = threading.Barrier(8)

        def read() -> None:
            start.wait()
            try:
                results.append(connector.get_json("/api/items"))
            except Exception as error:  # noqa: BLE001 - collected for the assertion below
                results.append(error)

        threads = [threading.Thread(target=read) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        connector.close()
    assert results == [{"items": [{"id": "1"}]}] * 8
    assert api.refreshes == 1
    assert len(received) == 1


def test_the_flow_works_with_a_plain_httpx_client() -> None:
    """The auth flows are ordinary httpx auth: a host can use them with its own client."""
    api = OAuthApi()
    api.expire_access_tokens()
    with httpx.Client(transport=api.transport(), auth=_oauth(api)) as client:
        response = client.get("http://fake/api/items")
    assert response.status_code == 200
    assert api.refreshes == 1


def test_a_scope_is_sent_with_the_refresh_when_configured() -> None:
    """Vendors that require a scope on refresh get the configured one in the form."""
    api = OAuthApi()
    auth = OAuth2Refresh(
        TOKEN_URL, CLIENT_ID, CLIENT_SECRET, api.refresh_token, scope="crm.objects.deals.read"
    )
    with _connector(api, auth) as connector:
        connector.get_json("/api/items")
    assert api.token_forms[0]["scope"] == "crm.objects.deals.read"


@pytest.mark.parametrize("expires_in", [[3600], True, "1e999", float("nan")])
def test_an_expires_in_that_is_no_number_is_a_bad_response(expires_in: object) -> None:
    """expires_in must be a finite number (or its text); anything else fails clearly."""
    api = OAuthApi()
    api.refresh_answer = httpx.Response(
        200, content=f'{{"access_token": "at_x", "expires_in": {_json(expires_in)}}}'.encode()
    )
    connector = _connector(api, _oauth(api, access_token=None))
    with connector, pytest.raises(BadResponseError, match="expires_in"):
        connector.get_json("/api/items")


def _json(value: object) -> str:
    # json.dumps writes NaN as NaN, which Python's json reads back, as some vendors' do.
    return json.dumps(value)


def test_an_oversized_token_answer_is_refused() -> None:
    """A token answer over 1 MiB fails, whether its size was declared or not."""

    def endless() -> Iterator[bytes]:
        yield b'{"access_token": "' + b"a" * (2 * 1024 * 1024) + b'"}'

    for answer in (
        httpx.Response(200, content=b"x" * (2 * 1024 * 1024)),
        httpx.Response(200, content=endless()),
    ):
        api = OAuthApi()
        api.refresh_answer = answer
        connector = _connector(api, _oauth(api, access_token=None))
        with connector, pytest.raises(BadResponseError, match="larger than"):
            connector.get_json("/api/items")


def test_an_auth_without_secrets_names_none() -> None:
    """A custom Auth that declares no secrets leaves the connector's secrets() empty."""

    class Tenant(Auth):
        def auth_flow(
            self, request: httpx.Request
        ) -> Generator[httpx.Request, httpx.Response, None]:
            request.headers["Xero-tenant-id"] = "t-1"
            yield request

    api = OAuthApi()
    with _connector(api, Tenant()) as connector:
        assert connector.secrets() == ()


def test_a_token_without_expires_in_is_used_until_refused() -> None:
    """Without expires_in (Salesforce) the token has no known expiry: only a 401 refreshes it."""
    api = OAuthApi(expires_in=None)
    received: list[TokenSet] = []
    clock = ManualClock(NOW)
    with _connector(api, _oauth(api, access_token=None, received=received, clock=clock)) as c:
        c.get_json("/api/items")
        clock.advance(timedelta(days=30))
        c.get_json("/api/items")
    assert received[0].expires_at is None
    assert api.refreshes == 1


# -- a damaged token answer over a real connection -------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b'{"access_token": "at_cut', b"<html><body>Service starting</body></html>", b""],
)
def test_a_damaged_token_answer_is_a_bad_response_that_never_stops_the_source(
    body: bytes,
) -> None:
    """A 200 token answer that is cut or not JSON (a proxy's page) fails the cycle as a bad
    response, not as an auth failure: three such cycles leave the source active, and once the
    endpoint answers properly the next cycle reads everything."""
    fake = FakeQuickBooks(clock=ManualClock(NOW), requests_per_minute=100_000)
    fake.bulk_load("Invoice", [NOW - timedelta(days=2), NOW - timedelta(days=1)])
    tokens = fake.grant_tokens()
    damaged = [True]

    def cut_token_answer(request: httpx.Request) -> httpx.Response | None:
        if damaged and request.url.path.endswith("/tokens/bearer"):
            return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})
        return None

    fake.add_fault(cut_token_answer)
    store = InMemoryStore()
    engine = SyncEngine(store, clock=fake.clock)
    with fake.serve() as base_url:
        auth = quickbooks_auth(
            fake.client_id,
            fake.client_secret,
            tokens.refresh_token,
            token_url=f"{base_url}/oauth2/v1/tokens/bearer",
            clock=fake.clock,
        )
        connector = QuickBooksConnector(
            fake.realm_id,
            "Invoice",
            auth=auth,
            base_url=base_url,
            options=HttpOptions(sleep=lambda _: None),
        )
        with connector:
            results = []
            for _ in range(3):
                results.append(engine.run_cycle("qbo/invoices", connector))
                fake.advance(timedelta(hours=1))
            state = engine.state("qbo/invoices")
            assert [r.outcome for r in results] == [Outcome.FAILED] * 3
            assert [r.error_class for r in results] == ["BadResponseError"] * 3
            assert state.phase is not Phase.STOPPED
            assert state.last_error is not None
            assert not state.last_error.auth
            assert "re-authorise" not in state.last_error.message
            damaged.clear()
            healed = engine.run_cycle("qbo/invoices", connector)
    assert (healed.outcome, healed.applied) == (Outcome.COMPLETED, 2)


# -- each vendor's OAuth constants -----------------------------------------------------------------


def _salesforce_auth() -> Auth:
    with SalesforceConnector(CLIENT_ID, CLIENT_SECRET, "rt_SENTINEL_1") as connector:
        assert connector.auth is not None
        return connector.auth


@pytest.mark.parametrize(
    ("build", "token_url", "client_auth"),
    [
        (
            lambda: quickbooks_auth(CLIENT_ID, CLIENT_SECRET, "rt_SENTINEL_1"),
            "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",
            "basic",
        ),
        (
            lambda: xero_auth(CLIENT_ID, CLIENT_SECRET, "rt_SENTINEL_1"),
            "https://identity.xero.com/connect/token",
            "basic",
        ),
        (
            lambda: pipedrive_oauth(CLIENT_ID, CLIENT_SECRET, "rt_SENTINEL_1"),
            "https://oauth.pipedrive.com/oauth/token",
            "basic",
        ),
        (
            lambda: HUBSPOT_OAUTH.refresh(CLIENT_ID, CLIENT_SECRET, "rt_SENTINEL_1"),
            "https://api.hubapi.com/oauth/v1/token",
            "body",
        ),
        (_salesforce_auth, "https://login.salesforce.com/services/oauth2/token", "body"),
    ],
    ids=["quickbooks", "xero", "pipedrive", "hubspot", "salesforce"],
)
def test_each_vendor_refreshes_at_its_endpoint_with_its_client_authentication(
    build: Callable[[], Auth], token_url: str, client_auth: str
) -> None:
    """Each vendor's flow posts the refresh grant to the vendor's token endpoint, with the app's
    credentials in HTTP Basic or in the form, as that vendor requires."""
    sent: list[httpx.Request] = []

    def vendor(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.method == "POST":
            return httpx.Response(200, json={"access_token": "at_SENTINEL_2", "expires_in": 3600})
        return httpx.Response(200, json={})

    with httpx.Client(transport=httpx.MockTransport(vendor), auth=build()) as client:
        assert client.get("https://api.example.com/v1/items").status_code == 200
    refresh, call = sent
    form = dict(parse_qsl(refresh.content.decode()))
    pair = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert (str(refresh.url), form["grant_type"]) == (token_url, "refresh_token")
    if client_auth == "basic":
        assert refresh.headers["authorization"] == f"Basic {pair}"
        assert "client_secret" not in form
    else:
        assert "authorization" not in refresh.headers
        assert (form["client_id"], form["client_secret"]) == (CLIENT_ID, CLIENT_SECRET)
    assert call.headers["authorization"] == "Bearer at_SENTINEL_2"
