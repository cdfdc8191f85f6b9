"""Connectors: the base classes custom connectors subclass, the HTTP toolkit, the built-in ones.

The toolkit for vendor APIs lives in submodules:

* :mod:`~incsync.connectors.http`: the HTTP base class, and the one place httpx errors are
  translated;
* :mod:`~incsync.connectors.auth`: credential flows (API key, bearer token, OAuth2 refresh);
* :mod:`~incsync.connectors.retry`: backoff, ``Retry-After`` and the retry loop;
* :mod:`~incsync.connectors.throttle`: each vendor's throttle signals;
* :mod:`~incsync.connectors.paging`: paging styles and window splitting for capped searches.

Built-in connectors: QuickBooks Online, Salesforce, HubSpot, Xero, Stripe, Pipedrive, a REST
connector configured from plain data (:class:`RestConnector`), and CSV / JSON Lines files
(:class:`FileConnector`).
"""

from incsync.connectors._rest_config import RestConfig
from incsync.connectors.auth import ApiKey, Auth, BearerToken, OAuth2Refresh, TokenSet
from incsync.connectors.base import BaseConnector, RawPage
from incsync.connectors.files import FileConnector
from incsync.connectors.http import HttpConnector, HttpOptions
from incsync.connectors.hubspot import HubSpotConnector
from incsync.connectors.memory import InMemoryConnector, InMemorySource
from incsync.connectors.paging import (
    KeysetPosition,
    TimeSpan,
    WindowQueue,
    cursor_pages,
    keyset_pages,
    offset_pages,
    split_window,
)
from incsync.connectors.pipedrive import PipedriveConnector, pipedrive_oauth
from incsync.connectors.quickbooks import QuickBooksConnector, quickbooks_auth
from incsync.connectors.rest import RestConnector
from incsync.connectors.retry import RetryPolicy, Throttle
from incsync.connectors.salesforce import SalesforceConnector
from incsync.connectors.sample import generate_invoices, sample_source
from incsync.connectors.stripe import StripeConnector
from incsync.connectors.xero import XeroConnector, xero_auth

__all__ = [
    "ApiKey",
    "Auth",
    "BaseConnector",
    "BearerToken",
    "FileConnector",
    "HttpConnector",
    "HttpOptions",
    "HubSpotConnector",
    "InMemoryConnector",
    "InMemorySource",
    "KeysetPosition",
    "OAuth2Refresh",
    "PipedriveConnector",
    "QuickBooksConnector",
    "RawPage",
    "RestConfig",
    "RestConnector",
    "RetryPolicy",
    "SalesforceConnector",
    "StripeConnector",
    "Throttle",
    "TimeSpan",
    "TokenSet",
    "WindowQueue",
    "XeroConnector",
    "cursor_pages",
    "generate_invoices",
    "keyset_pages",
    "offset_pages",
    "pipedrive_oauth",
    "quickbooks_auth",
    "sample_source",
    "split_window",
    "xero_auth",
]
