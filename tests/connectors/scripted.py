"""Connectors and a scripted transport for the HTTP toolkit's tests (no socket, no waiting)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone

import httpx

from incsync.connectors import Auth, HttpConnector, RetryPolicy, Throttle
from incsync.connectors.base import RawPage
from incsync.connectors.http import DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT, HttpOptions
from incsync.connectors.throttle import (
    hubspot_throttle,
    quickbooks_throttle,
    salesforce_throttle,
    xero_throttle,
)
from incsync.cursor import Window
from incsync.testing import ManualClock

__all__ = [
    "EXACT",
    "NOW",
    "HubSpotLike",
    "Plain",
    "QuickBooksLike",
    "SalesforceLike",
    "Script",
    "XeroLike",
    "connect",
    "exception_chain",
]

NOW = datetime(2026, 11, 13, 9, 0, tzinfo=timezone.utc)
EXACT = RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=60.0, max_total_wait=300, jitter=0)
"""Deterministic waits (1, 2, 4, 8 s) so tests can compare the delays slept."""

Step = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class Script:
    """A transport handler that answers with the given steps in turn (the last one repeats).

    A step is a response, an exception to raise (as a transport would), or a function of the
    request. Every request is kept in :attr:`requests`.
    """

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps) or [httpx.Response(200, json={})]
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps[min(len(self.requests), len(self.steps)) - 1]
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):
            # A fresh copy of the bytes as sent (still compressed, say), so a step can repeat.
            raw = b"".join(step.stream)  # type: ignore[arg-type]  # a ByteStream here
            return httpx.Response(step.status_code, headers=step.headers, content=raw)
        return step(request)

    def transport(self) -> httpx.MockTransport:
        """Return a transport that answers from this script."""
        return httpx.MockTransport(self)


class Plain(HttpConnector):
    """A connector with the default throttle signals; its fetch is not used by these tests."""

    vendor = "acme"

    def fetch(self, window: Window) -> Iterable[RawPage]:
        yield self.get_json("/items")["items"]


class HubSpotLike(Plain):
    """Recognises HubSpot's throttle signals."""

    vendor = "hubspot"

    def throttle_signal(self, response: httpx.Response) -> Throttle | None:
        return hubspot_throttle(response)


class SalesforceLike(Plain):
    """Recognises Salesforce's throttle signals."""

    vendor = "salesforce"

    def throttle_signal(self, response: httpx.Response) -> Throttle | None:
        return salesforce_throttle(response)


class QuickBooksLike(Plain):
    """Recognises QuickBooks' throttle signals."""

    vendor = "quickbooks"

    def throttle_signal(self, response: httpx.Response) -> Throttle | None:
        return quickbooks_throttle(response)


class XeroLike(Plain):
    """Recognises Xero's throttle signals."""

    vendor = "xero"

    def throttle_signal(self, response: httpx.Response) -> Throttle | None:
        return xero_throttle(response)


def connect(
    script: Script,
    *,
    cls: type[Plain] = Plain,
    auth: Auth | None = None,
    headers: Mapping[str, str] | None = None,
    retry: RetryPolicy = EXACT,
    slept: list[float] | None = None,
    clock: ManualClock | None = None,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> Plain:
    """Build a connector answering from ``script``; its sleeps go to ``slept``, never waiting."""
    waits: list[float] = [] if slept is None else slept
    return cls(
        "https://api.example.com/v3",
        auth=auth,
        headers=headers,
        options=HttpOptions(
            retry=retry,
            transport=script.transport(),
            sleep=waits.append,
            clock=clock or ManualClock(NOW),
            random=lambda: 0.0,
            timeout=timeout,
            max_response_bytes=max_response_bytes,
        ),
    )


def exception_chain(error: BaseException) -> list[BaseException]:
    """Return ``error`` and every exception linked to it as cause or context."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain
