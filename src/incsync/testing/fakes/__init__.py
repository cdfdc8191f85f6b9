"""Fake vendor APIs for tests: in-process, through ``httpx.MockTransport`` or over loopback HTTP.

Each fake follows the vendor's documented behaviour (filters, ordering, paging, caps, throttling,
error bodies, token expiry), so a connector that passes against it has met the real API's rules,
not a kinder version of them. Given a :class:`Latency` and a :class:`RunningClock`, they also
take the vendor's time and count its rate limits on the real clock, for benchmarks and the tests
that measure waiting; both are off by default, so the test suite stays fast.
"""

from incsync.testing.fakes._server import FakeVendor, Latency, RecordedRequest, RunningClock
from incsync.testing.fakes.generic_rest import FakeGenericRest
from incsync.testing.fakes.hubspot import FakeHubSpot, HubSpotLimits
from incsync.testing.fakes.pipedrive import FakePipedrive, PipedriveLimits
from incsync.testing.fakes.quickbooks import FakeQuickBooks, QuickBooksTokens, ThrottleFormat
from incsync.testing.fakes.salesforce import FakeSalesforce
from incsync.testing.fakes.stripe import FakeStripe
from incsync.testing.fakes.xero import FakeXero, XeroLimits, XeroTokens

__all__ = [
    "FakeGenericRest",
    "FakeHubSpot",
    "FakePipedrive",
    "FakeQuickBooks",
    "FakeSalesforce",
    "FakeStripe",
    "FakeVendor",
    "FakeXero",
    "HubSpotLimits",
    "Latency",
    "PipedriveLimits",
    "QuickBooksTokens",
    "RecordedRequest",
    "RunningClock",
    "ThrottleFormat",
    "XeroLimits",
    "XeroTokens",
]
