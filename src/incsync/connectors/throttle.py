"""What each vendor's "slow down" looks like: pure functions from a response to a :class:`Throttle`.

The vendors disagree: most answer 429, Salesforce answers 403 ``REQUEST_LIMIT_EXCEEDED``,
QuickBooks may answer in XML although JSON was asked for, HubSpot and Xero say in the body or a
header whether the limit is a burst (back off and retry) or a daily quota (fail the cycle and come
back later). A connector picks its vendor's function by overriding
:meth:`incsync.connectors.http.HttpConnector.throttle_signal`; each falls back to
:func:`default_throttle` for what it does not recognise. The functions only look at a response
whose body was already read; they never raise.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from incsync.connectors.retry import Throttle

__all__ = [
    "default_throttle",
    "hubspot_throttle",
    "quickbooks_throttle",
    "salesforce_throttle",
    "xero_throttle",
]

# QuickBooks Fault 3001 "ThrottleExceeded", in its XML body or in JSON (either casing).
_QUICKBOOKS_THROTTLE = re.compile(r"ThrottleExceeded|\bcode\W{1,3}3001\b", re.IGNORECASE)


def default_throttle(response: httpx.Response) -> Throttle | None:
    """Recognise the standard signals: 429, and 503 with ``Retry-After``; both are bursts."""
    status = response.status_code
    retry_after = response.headers.get("retry-after")
    if status == 429:
        return Throttle.from_header("HTTP 429 Too Many Requests", retry_after)
    if status == 503 and retry_after is not None:
        return Throttle.from_header("HTTP 503 Service Unavailable", retry_after)
    return None


def hubspot_throttle(response: httpx.Response) -> Throttle | None:
    """HubSpot: a 429 whose ``policyName`` is ``DAILY`` is the daily quota; any other is a burst.

    ``TEN_SECONDLY_ROLLING`` (and the search endpoints' per-second limit) clear within seconds,
    so those are retried; ``Retry-After`` is honoured when HubSpot sends it.
    """
    if response.status_code != 429:
        return default_throttle(response)
    body = _json(response)
    policy = body.get("policyName") if isinstance(body, dict) else None
    policy_name = policy if isinstance(policy, str) else "rate limit"
    return Throttle.from_header(
        f"HubSpot {policy_name}", response.headers.get("retry-after"), quota=policy == "DAILY"
    )


def salesforce_throttle(response: httpx.Response) -> Throttle | None:
    """Salesforce: a 403 (not 429) with ``errorCode`` ``REQUEST_LIMIT_EXCEEDED``.

    The message tells the org's rolling 24-hour API allowance (``TotalRequests Limit exceeded.``,
    a quota) from the limit on concurrent long-running requests (``ConcurrentRequests…``, a burst).
    """
    if response.status_code not in (403, 429):
        return default_throttle(response)
    body = _json(response)
    errors = body if isinstance(body, list) else [body]
    for error in errors:
        if isinstance(error, dict) and error.get("errorCode") == "REQUEST_LIMIT_EXCEEDED":
            message = str(error.get("message") or "request limit exceeded")
            return Throttle.from_header(
                f"Salesforce REQUEST_LIMIT_EXCEEDED: {message}",
                response.headers.get("retry-after"),
                quota="concurrent" not in message.lower(),
            )
    return default_throttle(response)


def quickbooks_throttle(response: httpx.Response) -> Throttle | None:
    """QuickBooks: Fault 3001 ``ThrottleExceeded``, as XML or JSON, on a 429 (older: 403).

    QuickBooks' limits are per minute and per concurrent request, so this is always a burst; it
    sends no ``Retry-After``, so the backoff decides the wait.
    """
    if response.status_code in (403, 429) and _QUICKBOOKS_THROTTLE.search(response.text):
        return Throttle.from_header(
            "QuickBooks ThrottleExceeded (Fault 3001)", response.headers.get("retry-after")
        )
    return default_throttle(response)


def xero_throttle(response: httpx.Response) -> Throttle | None:
    """Xero: a 429 whose ``X-Rate-Limit-Problem`` header is ``day`` is the daily quota.

    The minute, app-minute and concurrent limits are bursts. Xero's ``Retry-After`` (seconds) is
    honoured either way: for the daily quota it says when the source may be tried again.
    """
    if response.status_code != 429:
        return default_throttle(response)
    problem = response.headers.get("x-rate-limit-problem", "").strip().lower()
    return Throttle.from_header(
        f"Xero {problem or 'rate'} limit",
        response.headers.get("retry-after"),
        quota=problem == "day",
    )


def _json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except (ValueError, RecursionError):
        return None
