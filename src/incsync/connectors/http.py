"""The base of connectors that read an HTTP API: one client, auth, retries, one error boundary.

:class:`HttpConnector` owns one ``httpx.Client`` (keep-alive connections, explicit timeouts on
every request, a cap on response size, the host's own transport when given) and a credential flow
from :mod:`incsync.connectors.auth`. :meth:`HttpConnector.request` makes one logical request:

1. each attempt sends the request through the auth flow and reads the body within the size cap;
2. the answer is judged: 2xx (and 304) is returned; a throttle the vendor signals
   (:meth:`HttpConnector.throttle_signal`) is a :class:`~incsync.errors.RateLimitedError`, retried
   after the wait the vendor asked for unless it is a daily quota; other statuses map to
   incsync's error tree (:func:`~incsync.connectors.translate.error_for_status`);
3. transport failures are translated by :mod:`incsync.connectors.translate`, the one place where
   httpx's exceptions become incsync's; transient ones are retried by
   :mod:`incsync.connectors.retry`.

Every error carries the vendor, the status and a short body excerpt, with the credentials of the
auth flow masked. Nothing from httpx or tenacity reaches the caller, not even as ``__context__``.
"""

from __future__ import annotations

import collections
import functools
import json as _json
import logging
import random as _random
import ssl
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote, quote_plus

import attrs
import httpx
from typing_extensions import Self

from incsync.clocks import ClockSample, estimate_skew, source_now
from incsync.connectors._body import body_excerpt, read_capped
from incsync.connectors.auth import Auth
from incsync.connectors.base import BaseConnector
from incsync.connectors.retry import (
    Failure,
    RetryPolicy,
    Sleep,
    Throttle,
    ThrottleGate,
    call_with_retries,
    parse_http_date,
)
from incsync.connectors.throttle import default_throttle
from incsync.connectors.translate import (
    HTTPX_ERRORS,
    error_for_status,
    request_of,
    translate_httpx_error,
    without_query,
)
from incsync.connectors.window import WindowLimit
from incsync.errors import (
    BadResponseError,
    RateLimitedError,
    SourceError,
    TransientSourceError,
)
from incsync.policy import SettingRule, positive_count
from incsync.protocols import AccountHolds
from incsync.redaction import redact
from incsync.timestamps import utc_now

__all__ = [
    "CLOCK_SAMPLES",
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_TIMEOUT",
    "PACED_SHARE",
    "HttpConnector",
    "HttpOptions",
]

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
"""Seconds to connect (10) and to wait for each read, write and pooled connection (30)."""

DEFAULT_LIMITS = httpx.Limits(max_connections=16, max_keepalive_connections=16, keepalive_expiry=30)
"""Connections one connector opens and keeps: one source is read by one cycle at a time, but a
full read's partitions are read at once, each keeping its connection from page to page (a new
one costs the vendor's handshake, a round trip or two, every page)."""

DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
"""The largest response body a connector reads (decoded): far above any vendor's largest page."""

PACED_SHARE = 0.95
"""The share of a vendor's per-second limit a paced connector asks for
(:attr:`HttpConnector.requests_per_second`: HubSpot's searches, Stripe's lists): the rest allows
for the vendor and the connector starting a second at different moments."""

CLOCK_SAMPLES = 32
"""How many of its latest answers a connector measures the source's clock from.

A connector built per cycle (as :func:`~incsync.scheduling.run_due` and the CLI build them)
measures each cycle from its own answers; a long-lived one, from its latest.
"""

# Headers that describe the body as it came over the wire, not the decoded copy kept of it.
_WIRE_BODY_HEADERS = ("content-encoding", "content-length", "transfer-encoding")


_LIVE_CONNECTORS: weakref.WeakSet[HttpConnector] = weakref.WeakSet()

_RETRY_POLICY = SettingRule(
    "a RetryPolicy (from incsync.connectors.retry)", lambda value: isinstance(value, RetryPolicy)
)


@attrs.frozen(kw_only=True)
class HttpOptions:
    """How a connector speaks HTTP: timeouts, retries, its transport, and the hooks tests inject.

    Every HTTP connector takes one such value as ``options``; the defaults suit production. A host
    builds one (its instrumented transport, its retry policy) and hands it to all its connectors;
    a test changes one field with :func:`attrs.evolve`.

    Args:
        timeout: Connect, read, write and pool timeouts, applied to every request (token
            refreshes included).
        retry: Attempts and waiting for failed requests.
        transport: An httpx transport to send requests through (a host's instrumented one, or
            ``httpx.MockTransport`` in tests); httpx's default one otherwise.
        limits: How many connections the default transport keeps (a given transport keeps its
            own).
        max_response_bytes: The largest body read (decoded); a larger one fails with
            :class:`~incsync.errors.BadResponseError`.
        sleep: Waits between attempts; injectable so tests never wait.
        clock: Returns the current time (aware): for ``retry_at``, and for the connectors that
            compare times with now.
        random: Picks the jitter of each wait.

    Raises:
        ConfigurationError: ``retry`` is not a :class:`RetryPolicy`, or ``max_response_bytes`` is
            not an integer of at least 1.
    """

    timeout: httpx.Timeout = DEFAULT_TIMEOUT
    retry: RetryPolicy = attrs.field(factory=RetryPolicy, validator=_RETRY_POLICY)
    transport: httpx.BaseTransport | None = None
    limits: httpx.Limits = DEFAULT_LIMITS
    max_response_bytes: int = attrs.field(
        default=DEFAULT_MAX_RESPONSE_BYTES, validator=positive_count
    )
    sleep: Sleep = time.sleep
    clock: Callable[[], datetime] = utc_now
    random: Callable[[], float] = _random.random


class _MaskSecretsInHttpxLogs(logging.Filter):
    """Masks credentials in httpx's own log lines, which carry each request's full URL.

    httpx logs ``HTTP Request: GET <url> ...`` at INFO, after the auth flow ran, so a key sent as
    a query parameter (``ApiKey(query_param=...)``) would be in it. The line is redacted with the
    credentials of every live connector, raw and URL-encoded, and the shapes secrets take.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = [secret for connector in list(_LIVE_CONNECTORS) for secret in connector.secrets()]
        secrets += [encode(secret) for secret in secrets for encode in (quote, quote_plus)]
        message = record.getMessage()
        masked = redact(message, secrets)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


@functools.cache
def _mask_secrets_in_httpx_logs() -> None:
    # Once per process, and only when a connector exists: importing incsync changes no logging.
    logging.getLogger("httpx").addFilter(_MaskSecretsInHttpxLogs())


@functools.cache
def _shared_ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle costs tens of milliseconds of CPU: a scheduler that builds a connector
    # per cycle would spend more on that than on the cycle. One context serves every client.
    return httpx.create_ssl_context()


class HttpConnector(BaseConnector):
    """A connector that reads a vendor's HTTP API; subclasses implement :meth:`fetch` with it.

    Args:
        base_url: The API's root; request paths are relative to it.
        auth: The credential flow (none for open APIs).
        headers: Headers sent with every request (a vendor's tenant or version header, say).
        options: Timeouts, retries, transport and the injectable hooks; the defaults otherwise.

    Class attributes:
        quota_retry_after: When a daily quota is used up and the vendor does not say until when,
            the source is tried again after this long.
        requests_per_second: Start the connector's requests (all its threads together: the
            partitions of a full read) no faster than this, below a vendor's per-second limit;
            ``None``: as fast as answers come.
    """

    vendor: ClassVar[str] = "http"
    quota_retry_after: ClassVar[timedelta] = timedelta(hours=1)
    requests_per_second: ClassVar[float | None] = None

    def __init__(
        self,
        base_url: str,
        *,
        auth: Auth | None = None,
        headers: Mapping[str, str] | None = None,
        options: HttpOptions | None = None,
    ) -> None:
        self.auth = auth
        self.options = HttpOptions() if options is None else options
        # The latest answers' evidence of the source's clock (see clock_skew).
        self._clock_samples: collections.deque[ClockSample] = collections.deque(
            maxlen=CLOCK_SAMPLES
        )
        # A throttle answer to one request holds back every thread reading through this
        # connector (the partitions of a full read: one account).
        rate = self.requests_per_second
        self._gate = ThrottleGate(timedelta(0) if rate is None else timedelta(seconds=1 / rate))
        self._client = httpx.Client(
            base_url=base_url,
            auth=auth,
            headers={"User-Agent": "incsync", **(headers or {})},
            timeout=self.options.timeout,
            limits=self.options.limits,
            transport=self.options.transport,
            verify=_shared_ssl_context(),
            # A redirect is an answer to judge, not to follow with our credentials.
            follow_redirects=False,
        )
        _mask_secrets_in_httpx_logs()
        _LIVE_CONNECTORS.add(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the client and its connections."""
        self._client.close()

    def share_throttle(self, holds: AccountHolds, account: str) -> None:
        """Wait, and make wait, with every connector of ``account`` that shares ``holds``.

        A throttle answer to this connector holds the account back in ``holds`` for the wait the
        vendor asked for, and this connector waits out the account's holds before each request:
        connectors of one account in other processes or machines (the workers of a Celery
        deployment, which calls this) slow down together instead of being refused in turn.

        Args:
            holds: The shared holds (in Redis, for a Celery deployment).
            account: The vendor account this connector reads (its ``SourcePlan.account_key``).
        """
        self._gate.share(holds, account)

    def secrets(self) -> Sequence[str]:
        """Return the credential values of the auth flow, to be masked in every message."""
        return () if self.auth is None else tuple(self.auth.secrets())

    def throttle_signal(self, response: httpx.Response) -> Throttle | None:
        """Return the throttle ``response`` signals, or ``None`` when it is no throttle.

        Override with the vendor's function from :mod:`incsync.connectors.throttle`. Called for
        every non-success response, body read; must not raise.
        """
        return default_throttle(response)

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: object = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a request with auth and retries; return the answer with its body read.

        Connectors only read, so every request is retried, POST searches included.

        Args:
            method: The HTTP method.
            url: A path appended to ``base_url``'s path (``/items`` under ``…/v3`` is
                ``…/v3/items``), or an absolute URL: a vendor's next-page link that repeats the
                API's path (Salesforce's ``nextRecordsUrl``) must be made absolute first.
            params: Query parameters.
            json: A JSON body.
            headers: Headers for this request only.

        Returns:
            The 2xx or 304 response; its body is read (``.content``, ``.json()`` work).

        Raises:
            RateLimitedError: The vendor throttled and waiting within the cycle did not help, or
                a daily quota is used up (``retry_at`` says when to try again).
            TransientSourceError: A network failure, timeout or 5xx outlasted the retries.
            AuthError: The credentials were rejected, also after a token refresh.
            BadResponseError: The body is larger than ``max_response_bytes`` or undecodable.
            PermanentSourceError: The vendor refused the request.
        """
        options = self.options
        return call_with_retries(
            lambda: self._attempt(method, url, params, json, headers),
            options.retry,
            sleep=options.sleep,
            random=options.random,
        )

    def get_json(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """GET ``url`` and return its JSON body; see :meth:`request`.

        Raises:
            BadResponseError: The body is not JSON.
            SourceError: As :meth:`request`.
        """
        return self.request_json("GET", url, params=params, headers=headers)

    def request_json(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: object = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Send a request (a POST search, say) and return its JSON body; see :meth:`request`.

        Raises:
            BadResponseError: The body is not JSON.
            SourceError: As :meth:`request`.
        """
        merged = {"Accept": "application/json", **(headers or {})}
        response = self.request(method, url, params=params, json=json, headers=merged)
        return self.decode_json(response)

    def decode_json(self, response: httpx.Response) -> Any:
        """Return the JSON of a response read by :meth:`request`.

        Raises:
            BadResponseError: The body is not JSON (an HTML error page from a proxy, a cut body).
        """
        try:
            return _json.loads(response.content)
        except (ValueError, RecursionError) as error:
            problem = type(error).__name__
        # Raised outside the handler, so the decoder's exception does not ride along as context.
        request = request_of(response)
        where = "" if request is None else f" to {request.method} {without_query(request.url)}"
        raise BadResponseError(
            f"{self.vendor}: the answer{where} is not JSON ({problem}); the source or a proxy "
            f"in between sent something else",
            vendor=self.vendor,
            status_code=response.status_code,
            excerpt=body_excerpt(response.content, self.secrets()) or None,
        )

    def _attempt(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        json: object,
        headers: Mapping[str, str] | None,
    ) -> httpx.Response | Failure:
        secrets = self.secrets()
        error: SourceError | None = None
        try:
            # httpx joins base_url, path and params, and leaves an absolute URL as it is.
            request = self._client.build_request(
                method, url, params=params, json=json, headers=headers
            )
            ticket = self._gate.wait(self.options.clock(), self.options.sleep)
            sent = self.options.clock()
            response = self._client.send(request, stream=True)
            # The server dated its answer before its headers came, not after the body was read.
            received = self.options.clock()
            try:
                body = read_capped(response, self.options.max_response_bytes, secrets)
            finally:
                response.close()
        except SourceError as raised:  # from the auth flow or the size cap
            error = raised
        except HTTPX_ERRORS as raised:
            error = translate_httpx_error(raised, vendor=self.vendor, secrets=secrets)
        # Raised and judged outside the handlers, so no httpx exception rides along as context.
        if error is not None:
            if error.vendor is None:
                error.vendor = self.vendor
            return Failure(error, retry=isinstance(error, TransientSourceError))
        self._note_source_date(sent, received, response.headers.get("date"))
        stated = self.window_of(response.headers)
        if stated is not None:
            self._gate.note_window(stated, sent=sent, ticket=ticket)
        # The body was read within the cap as it came, so the answer is rebuilt around the
        # decoded copy (httpx reads a body only whole, without a limit), with the request as it
        # was sent: after the auth flow, which may have replayed or redirected it.
        answer = httpx.Response(
            response.status_code,
            headers=[
                (name, value)
                for name, value in response.headers.multi_items()
                if name.lower() not in _WIRE_BODY_HEADERS
            ],
            content=body,
            request=response.request,
            extensions={
                key: value
                for key, value in response.extensions.items()
                if key in ("http_version", "reason_phrase")
            },
        )
        return self._judge(answer, secrets)

    def window_of(self, headers: httpx.Headers) -> WindowLimit | None:
        """Return what an answer says of the vendor's fixed-window request limit, if anything.

        A vendor that counts requests in fixed windows and states on every answer what the
        window has left (its limit depends on the account's plan): the connector's requests, all
        its threads together, then spend each window and wait for the next
        (:mod:`incsync.connectors.window`), instead of being refused. ``None`` (the default):
        the answer states no such limit, and the requests keep :attr:`requests_per_second`.

        Args:
            headers: The answer's headers, of any status (a refusal states the limit too).
        """
        return None

    def clock_skew(self) -> timedelta | None:
        """Return how far the source's clock runs ahead of the host's (negative: behind).

        The median over the latest :data:`CLOCK_SAMPLES` dated answers (any status: a throttle
        or an error is dated too), each timed by :attr:`HttpOptions.clock`; zero when within
        their uncertainty, ``None`` before any dated answer. See
        :func:`incsync.clocks.estimate_skew`.
        """
        # A copy: the engine asks from its own thread while the read-ahead thread adds answers.
        return estimate_skew(tuple(self._clock_samples))

    def source_time(self) -> datetime:
        """Return the time by the source's own clock: the host's, moved by :meth:`clock_skew`.

        Limits a vendor states in its own time (QuickBooks' change data capture reaches back 30
        days from *its* now, Stripe keeps 30 days of events) must be kept by that clock: the
        host's may be minutes off. Before any dated answer, the host's clock.
        """
        return source_now(self.options.clock(), self.clock_skew())

    def _note_source_date(self, sent: datetime, received: datetime, header: str | None) -> None:
        dated = parse_http_date(header)
        if dated is not None:
            self._clock_samples.append(ClockSample(sent, received, dated))

    def _judge(self, response: httpx.Response, secrets: Sequence[str]) -> httpx.Response | Failure:
        status = response.status_code
        if 200 <= status < 300 or status == 304:
            self._gate.answered()
            return response
        throttle = self.throttle_signal(response)
        if throttle is None:
            error = error_for_status(response, vendor=self.vendor, secrets=secrets)
            return Failure(error, retry=isinstance(error, TransientSourceError))
        now = self.options.clock()
        wait = throttle.wait_seconds(now)
        excerpt = body_excerpt(response.content, secrets) or None
        if throttle.quota:
            retry_at = now + (self.quota_retry_after if wait is None else timedelta(seconds=wait))
            message = (
                f"{self.vendor}: {throttle.reason}: the quota is used up; the source is tried "
                f"again after {retry_at.isoformat(timespec='seconds')}"
            )
            limited = RateLimitedError(
                redact(message, secrets),
                retry_at=retry_at,
                vendor=self.vendor,
                status_code=status,
                excerpt=excerpt,
            )
            return Failure(limited, retry=False)
        pause = self.options.retry.base_delay if wait is None else wait
        self._gate.hold(now + timedelta(seconds=pause), now=now)
        advice = "retrying after a wait" if wait is None else f"asked to wait {wait:.0f} s"
        limited = RateLimitedError(
            redact(f"{self.vendor}: {throttle.reason}: {advice}", secrets),
            retry_at=None if wait is None else now + timedelta(seconds=wait),
            vendor=self.vendor,
            status_code=status,
            excerpt=excerpt,
        )
        return Failure(limited, retry=True, wait_at_least=wait or 0.0)
