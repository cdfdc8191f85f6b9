"""Tests for incsync.connectors.http: the client, statuses, size cap, JSON and secrets."""

from __future__ import annotations

import gzip
import json
import logging
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from incsync.connectors import ApiKey, Auth, BearerToken
from incsync.connectors.http import DEFAULT_TIMEOUT, HttpOptions
from incsync.errors import (
    AuthError,
    BadResponseError,
    ConfigurationError,
    PermanentSourceError,
    SourceError,
    TransientSourceError,
)
from incsync.testing.fakes import FakeVendor
from tests.connectors.scripted import Plain, Script, connect, exception_chain

SECRET_KEY = "key_SENTINEL_6b0d2f"
SECRET_TOKEN = "pat_SENTINEL_93ac1e"


class Hello(FakeVendor):
    """Answers every request with a small JSON greeting."""

    def handle(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"hello": "world"})


# -- the client ----------------------------------------------------------------------------------


def test_requests_go_to_the_base_url_with_headers_and_explicit_timeouts() -> None:
    """Paths join base_url; default and extra headers are sent; every request has timeouts."""
    script = Script(httpx.Response(200, json={"ok": True}))
    timeout = httpx.Timeout(5.0, connect=1.0)
    with connect(script, headers={"X-Tenant": "t-1"}, timeout=timeout) as connector:
        assert connector.get_json("/items", params={"limit": 2}) == {"ok": True}
        connector.request_json("POST", "/search", json={"q": 1}, headers={"X-Once": "1"})
    get, post = script.requests
    assert str(get.url) == "https://api.example.com/v3/items?limit=2"
    assert (get.headers["x-tenant"], get.headers["user-agent"]) == ("t-1", "incsync")
    assert get.headers["accept"] == "application/json"
    assert (post.method, json.loads(post.content), post.headers["x-once"]) == (
        "POST",
        {"q": 1},
        "1",
    )
    expected = {"connect": 1.0, "read": 5.0, "write": 5.0, "pool": 5.0}
    assert get.extensions["timeout"] == post.extensions["timeout"] == expected


@pytest.mark.parametrize(
    "base_url",
    [
        "https://api.example.com/v3",
        "https://api.example.com/v3/",
        "https://api.example.com",
        "http://127.0.0.1:8080/a b/ü",
        "https://api.example.com/v3?tenant=1",
    ],
)
@pytest.mark.parametrize(
    ("url", "params"),
    [
        ("/items", None),
        ("items", {}),
        ("/items", {"limit": 2, "after": "2024-01-01T00:00:00+00:00"}),
        ("/items/a b", {"q": "name = 'Ünïcode & co'", "flag": True, "none": None}),
        ("/items", {"types[]": ["invoice.updated", "invoice.voided"], "n": 1.5}),
        ("/items?sort=id", {"limit": 2, "sort": "updated"}),
        ("", {"x": "y"}),
        ("https://other.example.com/next/page", {"cursor": "c/+="}),
        ("HTTPS://other.example.com/NEXT", None),
    ],
)
def test_the_url_sent_is_the_one_httpx_would_build(
    base_url: str, url: str, params: dict[str, Any] | None
) -> None:
    """httpx builds every URL: base_url, path and params joined by its rules, absolute URLs (a
    vendor's next-page link) kept, a query already in the path merged with the params."""
    script = Script(httpx.Response(200, json={}))
    connector = Plain(base_url, options=HttpOptions(transport=script.transport()))
    with connector:
        connector.get_json(url, params=params)
    with httpx.Client(base_url=base_url) as client:
        expected = client.build_request("GET", url, params=params).url
    assert script.requests[0].url == expected


def test_default_timeouts_are_explicit() -> None:
    """Without a timeout argument every request still carries the documented defaults."""
    script = Script()
    with connect(script) as connector:
        connector.request("GET", "/x")
    assert script.requests[0].extensions["timeout"] == DEFAULT_TIMEOUT.as_dict()


def test_the_connection_is_kept_alive_across_requests() -> None:
    """Three requests over a real socket share one pooled connection."""
    api = Hello()
    transport = httpx.HTTPTransport()
    with (
        api.serve() as base_url,
        Plain(base_url, options=HttpOptions(transport=transport)) as connector,
    ):
        for _ in range(3):
            assert connector.get_json("/hello") == {"hello": "world"}
        # httpcore's pool is the only witness of how many connections were opened.
        assert len(transport._pool.connections) == 1


def test_connectors_share_one_tls_context_so_building_one_is_cheap() -> None:
    """Every connector's default transport verifies TLS with one shared, already loaded context."""
    with Plain("https://a.example.com") as first, Plain("https://b.example.com") as second:
        contexts = [
            connector._client._transport._pool._ssl_context  # type: ignore[attr-defined]
            for connector in (first, second)
        ]
    assert contexts[0] is contexts[1]
    assert contexts[0].verify_mode is ssl.CERT_REQUIRED
    assert contexts[0].check_hostname


@pytest.mark.parametrize("key", ["qk_SENTINEL_5e1d", "qk/SENTINEL+5e1d=="])
def test_a_key_sent_in_the_query_never_reaches_httpx_log_lines(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    """httpx logs every request URL at INFO; a query-parameter key is masked there, even encoded."""
    caplog.set_level(logging.DEBUG)
    with (
        Hello().serve() as base_url,
        Plain(base_url, auth=ApiKey(key, query_param="key")) as connector,
    ):
        assert connector.get_json("/hello", params={"page": 2}) == {"hello": "world"}
    request_lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert request_lines, "httpx logged no request line, so this test would prove nothing"
    assert all("page=2" in line and "key=***" in line for line in request_lines)
    assert "SENTINEL" not in caplog.text


def test_close_and_the_context_manager_close_the_client() -> None:
    """Leaving the with block closes the client; so does close()."""
    with connect(Script()) as connector:
        assert connector.request("GET", "/x").status_code == 200
    assert connector._client.is_closed
    other = connect(Script())
    other.close()
    assert other._client.is_closed


def test_max_response_bytes_must_be_positive() -> None:
    """A cap below one byte is a configuration mistake."""
    with pytest.raises(ConfigurationError, match="max_response_bytes"):
        connect(Script(), max_response_bytes=0)


def test_a_304_is_returned_as_an_answer() -> None:
    """304 Not Modified (If-Modified-Since sources) is an answer, not an error."""
    with connect(Script(httpx.Response(304))) as connector:
        assert connector.request("GET", "/x").status_code == 304


# -- statuses --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "advice"),
    [
        (400, PermanentSourceError, "refused the request"),
        (404, PermanentSourceError, "refused the request"),
        (422, PermanentSourceError, "refused the request"),
        (401, AuthError, "re-authorise"),
        (403, AuthError, "permission or scope"),
    ],
)
def test_refusals_fail_at_once_with_status_excerpt_and_advice(
    status: int, error: type[SourceError], advice: str
) -> None:
    """4xx refusals are not retried; the error carries vendor, status, advice and the body."""
    script = Script(httpx.Response(status, json={"message": "Invalid filter on property"}))
    slept: list[float] = []
    with connect(script, slept=slept) as connector, pytest.raises(error) as caught:
        connector.get_json("/items", params={"after": "10"})
    failure = caught.value
    assert type(failure) is error
    assert (failure.vendor, failure.status_code) == ("acme", status)
    assert failure.excerpt == '{"message":"Invalid filter on property"}'
    assert advice in str(failure)
    assert f"HTTP {status}" in str(failure)
    assert "GET https://api.example.com/v3/items" in str(failure)
    assert "after=10" not in str(failure)
    assert (len(script.requests), slept) == (1, [])


# -- size cap and JSON -----------------------------------------------------------------------------


class _Unread(httpx.SyncByteStream):
    """A body that records whether anyone read it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.read = False

    def __iter__(self) -> Iterator[bytes]:
        self.read = True
        yield b"x" * self.size


def test_a_declared_oversize_body_is_refused_before_it_is_read() -> None:
    """A Content-Length above the cap fails with BadResponseError without reading the body."""
    body = _Unread(5_000)
    oversized = httpx.Response(200, headers={"Content-Length": "5000"}, stream=body)
    connector = connect(Script(lambda _: oversized), max_response_bytes=1_000)
    with connector, pytest.raises(BadResponseError, match="larger than the 1,000-byte limit"):
        connector.request("GET", "/export")
    assert not body.read


def test_an_undeclared_body_is_cut_off_at_the_cap() -> None:
    """A streamed body without Content-Length fails once it grows past the cap."""

    def chunks() -> Iterator[bytes]:
        while True:
            yield b"y" * 512

    endless = httpx.Response(200, content=chunks())
    connector = connect(Script(lambda _: endless), max_response_bytes=4_096)
    with connector, pytest.raises(BadResponseError, match="max_response_bytes"):
        connector.request("GET", "/export")


def test_the_cap_counts_decoded_bytes_so_a_compressed_bomb_is_refused() -> None:
    """A small gzip body that inflates past the cap is refused; one within it is returned."""
    bomb = gzip.compress(b"0" * 100_000)
    small = gzip.compress(b'{"ok": true}')
    assert len(bomb) < 1_000
    script = Script(
        httpx.Response(200, content=small, headers={"Content-Encoding": "gzip"}),
        httpx.Response(200, content=bomb, headers={"Content-Encoding": "gzip"}),
    )
    with connect(script, max_response_bytes=10_000) as connector:
        assert connector.get_json("/a") == {"ok": True}
        with pytest.raises(BadResponseError):
            connector.get_json("/b")


@pytest.mark.parametrize("declared", [True, False])
def test_the_cap_is_exact(declared: bool) -> None:
    """A body of exactly the cap is read and one byte more is refused, declared or streamed."""

    def body(size: int) -> httpx.Response:
        if declared:
            return httpx.Response(200, content=b"z" * size)
        return httpx.Response(200, content=iter([b"z" * (size - 1), b"z"]))

    script = Script(lambda _: body(100), lambda _: body(101))
    with connect(script, max_response_bytes=100) as connector:
        assert connector.request("GET", "/x").content == b"z" * 100
        with pytest.raises(BadResponseError):
            connector.request("GET", "/x")


@pytest.mark.parametrize(
    "body", [b"<html><body>502 Bad Gateway</body></html>", b'{"items": [', b"\xff\xfe"]
)
def test_a_body_that_is_not_json_is_a_bad_response(body: bytes) -> None:
    """HTML from a proxy, a cut-off body or bytes that are not UTF-8: BadResponseError, once."""
    script = Script(httpx.Response(200, content=body))
    with connect(script) as connector, pytest.raises(BadResponseError) as caught:
        connector.get_json("/items")
    assert "is not JSON" in str(caught.value)
    assert caught.value.status_code == 200
    assert len(script.requests) == 1
    assert exception_chain(caught.value) == [caught.value]


def test_an_undecodable_content_encoding_is_a_bad_response() -> None:
    """A body that claims gzip but is not gzip fails as BadResponseError, not as an httpx error."""
    script = Script(
        lambda _: httpx.Response(200, content=b"not gzip", headers={"Content-Encoding": "gzip"})
    )
    with connect(script) as connector, pytest.raises(BadResponseError, match="DecodingError"):
        connector.request("GET", "/x")


# -- secrets ---------------------------------------------------------------------------------------


def _echo(status: int) -> Script:
    """A vendor that quotes the request back in its error body, credentials included."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status,
            json={"url": str(request.url), "headers": dict(request.headers), "error": "nope"},
        )

    return Script(answer)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 503])
@pytest.mark.parametrize(
    "auth",
    [
        BearerToken(SECRET_TOKEN),
        ApiKey(SECRET_KEY, header="X-API-Key"),
        ApiKey(SECRET_KEY, query_param="api_token"),
    ],
)
def test_credentials_never_appear_in_errors(status: int, auth: Auth) -> None:
    """Even when the vendor echoes the request, no credential reaches message or excerpt."""
    connector = connect(_echo(status), auth=auth)
    with connector, pytest.raises(SourceError) as caught:
        connector.get_json("/items", params={"q": "1"})
    text = f"{caught.value} {caught.value.excerpt}"
    assert "SENTINEL" not in text
    assert caught.value.excerpt


def test_credentials_in_an_httpx_exception_message_are_masked() -> None:
    """A transport error that quotes the URL (with its API key) is masked on translation."""

    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}", request=request)

    auth = ApiKey(SECRET_KEY, query_param="api_token")
    with (
        connect(Script(fail), auth=auth) as connector,
        pytest.raises(TransientSourceError) as caught,
    ):
        connector.request("GET", "/items")
    assert "SENTINEL" not in str(caught.value)
    assert "could not connect" in str(caught.value)


def test_the_connector_names_its_auths_secrets() -> None:
    """secrets() is the auth flow's secrets, so the engine masks them too; none without auth."""
    with connect(Script(), auth=BearerToken(SECRET_TOKEN)) as connector:
        assert connector.secrets() == (SECRET_TOKEN,)
    with connect(Script()) as connector:
        assert connector.secrets() == ()


# -- nothing of httpx or tenacity escapes --------------------------------------------------------


@pytest.mark.parametrize(
    "step",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.Response(503, text="down"),
        httpx.Response(200, text="<html>"),
        httpx.Response(401, text="no"),
        httpx.Response(429, json={"policyName": "DAILY"}, headers={"Retry-After": "99999"}),
    ],
)
def test_no_httpx_or_tenacity_exception_is_linked_to_an_error(
    step: httpx.Response | Exception,
) -> None:
    """Whatever fails, the caller's error has no httpx or tenacity exception as cause or context."""
    with connect(Script(step)) as connector, pytest.raises(SourceError) as caught:
        connector.get_json("/items")
    for linked in exception_chain(caught.value):
        assert not type(linked).__module__.startswith(("httpx", "tenacity")), linked
