"""Where httpx's exceptions and HTTP error statuses become incsync errors: the one boundary.

:func:`translate_httpx_error` is the only place an httpx exception is caught and turned into an
incsync one, and :func:`error_for_status` the only place a status is; both mask the credentials
they are given and keep the vendor, the status and a short body excerpt. A test walks httpx's whole
exception hierarchy and checks that every class has its own entry here, so a class added by a new
httpx release is noticed and given a meaning on purpose.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from incsync.connectors._body import body_excerpt
from incsync.errors import (
    AuthError,
    BadResponseError,
    PermanentSourceError,
    SourceError,
    TransientSourceError,
)
from incsync.redaction import redact

__all__ = [
    "HTTPX_ERRORS",
    "error_for_status",
    "request_of",
    "translate_httpx_error",
    "without_query",
]

HTTPX_ERRORS: tuple[type[Exception], ...] = (
    httpx.HTTPError,
    httpx.InvalidURL,
    httpx.CookieConflict,
    httpx.StreamError,
)
"""The roots of every exception httpx raises; :func:`translate_httpx_error` accepts each."""

# What each httpx exception means for a sync, looked up along the exception's MRO so that a class
# httpx adds later still lands on its parent's meaning. tests/connectors/test_http.py checks that
# every class httpx defines has its own entry.
_TRANSLATIONS: dict[type[Exception], tuple[type[SourceError], str]] = {
    httpx.HTTPError: (TransientSourceError, "the HTTP exchange failed"),
    httpx.RequestError: (TransientSourceError, "the request failed"),
    httpx.TransportError: (TransientSourceError, "the connection failed"),
    httpx.TimeoutException: (TransientSourceError, "the request timed out"),
    httpx.ConnectTimeout: (TransientSourceError, "connecting timed out"),
    httpx.ReadTimeout: (TransientSourceError, "the source did not answer in time"),
    httpx.WriteTimeout: (TransientSourceError, "sending the request timed out"),
    httpx.PoolTimeout: (TransientSourceError, "no connection was free in time"),
    httpx.NetworkError: (TransientSourceError, "the network failed"),
    httpx.ConnectError: (TransientSourceError, "could not connect"),
    httpx.ReadError: (TransientSourceError, "reading the answer failed"),
    httpx.WriteError: (TransientSourceError, "sending the request failed"),
    httpx.CloseError: (TransientSourceError, "closing the connection failed"),
    httpx.ProxyError: (TransientSourceError, "the proxy failed"),
    httpx.ProtocolError: (TransientSourceError, "the HTTP exchange broke off"),
    httpx.RemoteProtocolError: (
        TransientSourceError,
        "the source broke the HTTP protocol or dropped the connection",
    ),
    httpx.LocalProtocolError: (PermanentSourceError, "incsync built an invalid HTTP request"),
    httpx.UnsupportedProtocol: (
        PermanentSourceError,
        "the URL is not http or https; check the connector's base_url",
    ),
    httpx.DecodingError: (BadResponseError, "the body could not be decoded"),
    httpx.TooManyRedirects: (PermanentSourceError, "the source redirected too many times"),
    httpx.HTTPStatusError: (PermanentSourceError, "the source refused the request"),
    httpx.InvalidURL: (PermanentSourceError, "the URL is invalid; check base_url and the path"),
    httpx.CookieConflict: (PermanentSourceError, "the source set conflicting cookies"),
    httpx.StreamError: (PermanentSourceError, "a response stream was misused (a bug in incsync)"),
    httpx.StreamConsumed: (PermanentSourceError, "a stream was read twice (a bug in incsync)"),
    httpx.StreamClosed: (PermanentSourceError, "a closed stream was read (a bug in incsync)"),
    httpx.ResponseNotRead: (PermanentSourceError, "a response was unread (a bug in incsync)"),
    httpx.RequestNotRead: (PermanentSourceError, "a request was unread (a bug in incsync)"),
}

# Statuses that may heal by themselves when asked again.
_TRANSIENT_STATUSES = frozenset({408, 425, 429})


def translate_httpx_error(
    error: Exception, *, vendor: str | None = None, secrets: Sequence[str] = ()
) -> SourceError:
    """Return the incsync error for an exception httpx raised: the one translation boundary.

    Args:
        error: An instance of one of :data:`HTTPX_ERRORS`' classes.
        vendor: The connector's vendor, named in the error.
        secrets: Credential values to mask in the message.

    Returns:
        A new error (without ``__cause__`` or ``__context__``) whose class says whether waiting
        may help: timeouts and network failures are transient; a bad URL is permanent; an
        undecodable body is a bad response.
    """
    if isinstance(error, httpx.HTTPStatusError):
        # raise_for_status() in a subclass: the status decides, as for any other answer.
        try:
            content = error.response.content
        except httpx.ResponseNotRead:
            content = b""
        detail = body_excerpt(content, secrets)
        return error_for_status(error.response, vendor=vendor, secrets=secrets, detail=detail)
    cls, meaning = next(
        (_TRANSLATIONS[klass] for klass in type(error).__mro__ if klass in _TRANSLATIONS),
        (PermanentSourceError, "an unexpected HTTP failure"),
    )
    where = ""
    request = request_of(error)
    if request is not None:
        where = f" ({request.method} {without_query(request.url)})"
    detail = redact(f"{type(error).__name__}: {error}", secrets)
    return cls(f"{vendor or 'source'}: {meaning}{where}: {detail}", vendor=vendor)


def error_for_status(
    response: httpx.Response,
    *,
    vendor: str | None = None,
    secrets: Sequence[str] = (),
    detail: str | None = None,
) -> SourceError:
    """Return the incsync error for a non-success response that is not a throttle.

    401 and 403 are :class:`~incsync.errors.AuthError` (waiting cannot heal them); 408, 425, 429
    and 5xx are :class:`~incsync.errors.TransientSourceError`; any other is a
    :class:`~incsync.errors.PermanentSourceError`.

    Args:
        response: The response, body read.
        vendor: The connector's vendor, named in the error.
        secrets: Credential values to mask in the message and excerpt.
        detail: The body excerpt to quote, when the caller has it already.
    """
    status = response.status_code
    excerpt = body_excerpt(response.content, secrets) if detail is None else detail
    what = f"{vendor or 'source'}: HTTP {status} {response.reason_phrase}"
    request = request_of(response)
    if request is not None:
        what += f" from {request.method} {without_query(request.url)}"
    cls: type[SourceError]
    if status == 401:
        cls, advice = AuthError, "the credentials were rejected; re-authorise the connection"
    elif status == 403:
        cls, advice = (
            AuthError,
            "access was refused; grant the missing permission or scope, or re-authorise",
        )
    elif status in _TRANSIENT_STATUSES or status >= 500:
        cls, advice = TransientSourceError, "the source failed; the request is tried again later"
    else:
        cls, advice = PermanentSourceError, "the source refused the request"
    # "; " after the URL, not ": ", so a path ending in /token is not read as "token: value".
    said = f" The source said: {excerpt}" if excerpt else ""
    message = redact(f"{what}; {advice}.{said}", secrets)
    return cls(message, vendor=vendor, status_code=status, excerpt=excerpt or None)


def request_of(carrier: object) -> httpx.Request | None:
    """Return the request an httpx exception or response belongs to, or ``None``."""
    # httpx exceptions and responses raise RuntimeError from .request when none was attached.
    try:
        request = getattr(carrier, "request", None)
    except RuntimeError:
        return None
    return request if isinstance(request, httpx.Request) else None


def without_query(url: httpx.URL) -> str:
    """Return ``url`` without its query and fragment, for messages."""
    # Query strings carry API keys and filters; the path says enough about where it failed.
    return str(url.copy_with(query=None, fragment=None))
