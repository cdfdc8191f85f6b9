"""Fake vendor APIs for tests: in-process, through ``httpx.MockTransport`` or over loopback HTTP.

Each fake follows the vendor's documented behaviour (filters, ordering, paging, caps, throttling,
error bodies, token expiry), so a connector that passes against it has met the real API's rules,
not a kinder version of them.
"""

from incsync.testing.fakes._server import FakeVendor, RecordedRequest
from incsync.testing.fakes.hubspot import FakeHubSpot, HubSpotLimits
from incsync.testing.fakes.quickbooks import FakeQuickBooks, QuickBooksTokens, ThrottleFormat
from incsync.testing.fakes.salesforce import FakeSalesforce

__all__ = [
    "FakeHubSpot",
    "FakeQuickBooks",
    "FakeSalesforce",
    "FakeVendor",
    "HubSpotLimits",
    "QuickBooksTokens",
    "RecordedRequest",
    "ThrottleFormat",
]
