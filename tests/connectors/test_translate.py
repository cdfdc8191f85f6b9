"""Tests for incsync.connectors.translate: every httpx exception and status gets a meaning."""

from __future__ import annotations

import inspect

import httpx
import pytest

from incsync.connectors.translate import (
    _TRANSLATIONS,
    HTTPX_ERRORS,
    error_for_status,
    translate_httpx_error,
)
from incsync.errors import (
    AuthError,
    BadResponseError,
    PermanentSourceError,
    SourceError,
    TransientSourceError,
)
from tests.connectors.scripted import exception_chain

SECRET_KEY = "key_SENTINEL_6b0d2f"


# -- httpx exceptions ----------------------------------------------------------------------


def _httpx_exception_classes() -> list[type[Exception]]:
    """Every exception class httpx defines: its exports, and their subclasses, walked."""
    found: set[type[Exception]] = {
        value
        for value in vars(httpx).values()
        if inspect.isclass(value) and issubclass(value, Exception)
    }
    stack: list[type[Exception]] = list(found)
    while stack:
        for subclass in stack.pop().__subclasses__():
            if subclass.__module__.startswith("httpx") and subclass not in found:
                found.add(subclass)
                stack.append(subclass)
    return sorted(found, key=lambda cls: cls.__name__)


HTTPX_CLASSES = _httpx_exception_classes()
REQUEST = httpx.Request("GET", f"https://api.example.com/v3/items?api_token={SECRET_KEY}")


def _instance(cls: type[Exception]) -> Exception:
    """Build an instance whatever the class's constructor takes."""
    if issubclass(cls, httpx.HTTPStatusError):
        response = httpx.Response(503, request=REQUEST, content=b"down")
        return cls("Server error", request=REQUEST, response=response)
    parameters = inspect.signature(cls).parameters
    if "request" in parameters:
        return cls(f"failed: {REQUEST.url}", request=REQUEST)  # type: ignore[call-arg]
    if parameters:
        return cls(f"failed: {REQUEST.url}")
    return cls()


def test_the_walk_finds_httpx_exception_classes() -> None:
    """The hierarchy walk is not empty and covers every root the connector catches."""
    assert len(HTTPX_CLASSES) >= 25
    assert set(HTTPX_ERRORS) <= set(HTTPX_CLASSES)


@pytest.mark.parametrize("cls", HTTPX_CLASSES, ids=lambda cls: cls.__name__)
def test_every_httpx_exception_class_has_a_translation(cls: type[Exception]) -> None:
    """Each httpx exception class has its own entry and becomes an incsync SourceError.

    A class added by a new httpx release fails here until someone decides what it means.
    """
    assert cls in _TRANSLATIONS
    assert issubclass(cls, HTTPX_ERRORS)
    error = translate_httpx_error(_instance(cls), vendor="acme", secrets=[SECRET_KEY])
    assert isinstance(error, SourceError)
    assert not isinstance(error, HTTPX_ERRORS)
    assert error.vendor == "acme"
    assert SECRET_KEY not in str(error)
    assert exception_chain(error) == [error]


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (httpx.ConnectError("refused"), TransientSourceError),
        (httpx.ReadTimeout("slow"), TransientSourceError),
        (httpx.PoolTimeout("busy"), TransientSourceError),
        (httpx.RemoteProtocolError("dropped"), TransientSourceError),
        (httpx.LocalProtocolError("bad header"), PermanentSourceError),
        (httpx.UnsupportedProtocol("ftp"), PermanentSourceError),
        (httpx.InvalidURL("bad"), PermanentSourceError),
        (httpx.DecodingError("gzip"), BadResponseError),
        (httpx.StreamConsumed(), PermanentSourceError),
    ],
)
def test_translations_say_whether_waiting_helps(
    raised: Exception, expected: type[SourceError]
) -> None:
    """Network trouble and timeouts are transient; our own mistakes are permanent."""
    assert type(translate_httpx_error(raised)) is expected


def test_raise_for_status_in_a_subclass_is_judged_by_status() -> None:
    """An HTTPStatusError maps like the status it carries, with the body excerpt."""
    response = httpx.Response(503, request=REQUEST, content=b"maintenance")
    error = translate_httpx_error(
        httpx.HTTPStatusError("x", request=REQUEST, response=response), vendor="acme"
    )
    assert type(error) is TransientSourceError
    assert (error.status_code, error.excerpt) == (503, "maintenance")
    unread = httpx.Response(404, request=REQUEST, stream=httpx.ByteStream(b"gone"))
    refused = translate_httpx_error(httpx.HTTPStatusError("x", request=REQUEST, response=unread))
    assert type(refused) is PermanentSourceError


# -- statuses ------------------------------------------------------------------------------------


def test_error_for_status_maps_every_status_class() -> None:
    """401/403 are auth errors; 408, 425, 429 and 5xx transient; other 4xx and 3xx permanent."""
    expected: dict[int, type[SourceError]] = {
        301: PermanentSourceError,
        400: PermanentSourceError,
        401: AuthError,
        403: AuthError,
        404: PermanentSourceError,
        408: TransientSourceError,
        409: PermanentSourceError,
        425: TransientSourceError,
        429: TransientSourceError,
        500: TransientSourceError,
        503: TransientSourceError,
        599: TransientSourceError,
    }
    for status, cls in expected.items():
        assert type(error_for_status(httpx.Response(status), vendor="v")) is cls, status
