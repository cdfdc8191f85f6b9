"""Fake vendor APIs for tests: in-process, through ``httpx.MockTransport`` or over loopback HTTP.

Each fake follows the vendor's documented behaviour (filters, ordering, paging, caps, throttling,
error bodies, token expiry), so a connector that passes against it has met the real API's rules,
not a kinder version of them.
"""

from incsync.testing.fakes._server import FakeVendor, RecordedRequest
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
    "PipedriveLimits",
    "QuickBooksTokens",
    "RecordedRequest",
    "ThrottleFormat",
    "XeroLimits",
    "XeroTokens",
]
