"""The built-in connectors of vendor APIs, each a thin shell over the connector toolkit.

One module per vendor: :mod:`~incsync.vendors.quickbooks`, :mod:`~incsync.vendors.hubspot`,
:mod:`~incsync.vendors.salesforce`, :mod:`~incsync.vendors.xero`, :mod:`~incsync.vendors.stripe`,
:mod:`~incsync.vendors.pipedrive`. Each says how its vendor answers (filters, paging, throttles,
credentials); the reading rules are the toolkit's (:mod:`incsync.connectors`). Names are imported
on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from incsync._lazy import lazy_exports

if TYPE_CHECKING:
    from incsync.vendors.hubspot import HUBSPOT_OAUTH, HubSpotConnector
    from incsync.vendors.pipedrive import PIPEDRIVE_OAUTH, PipedriveConnector, pipedrive_oauth
    from incsync.vendors.quickbooks import QUICKBOOKS_OAUTH, QuickBooksConnector, quickbooks_auth
    from incsync.vendors.salesforce import SalesforceConnector
    from incsync.vendors.stripe import StripeConnector
    from incsync.vendors.xero import XERO_OAUTH, XeroConnector, xero_auth

_EXPORTS = {
    "HUBSPOT_OAUTH": "incsync.vendors.hubspot",
    "HubSpotConnector": "incsync.vendors.hubspot",
    "PIPEDRIVE_OAUTH": "incsync.vendors.pipedrive",
    "PipedriveConnector": "incsync.vendors.pipedrive",
    "pipedrive_oauth": "incsync.vendors.pipedrive",
    "QUICKBOOKS_OAUTH": "incsync.vendors.quickbooks",
    "QuickBooksConnector": "incsync.vendors.quickbooks",
    "quickbooks_auth": "incsync.vendors.quickbooks",
    "SalesforceConnector": "incsync.vendors.salesforce",
    "StripeConnector": "incsync.vendors.stripe",
    "XERO_OAUTH": "incsync.vendors.xero",
    "XeroConnector": "incsync.vendors.xero",
    "xero_auth": "incsync.vendors.xero",
}

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

__all__ = [
    "HUBSPOT_OAUTH",
    "PIPEDRIVE_OAUTH",
    "QUICKBOOKS_OAUTH",
    "XERO_OAUTH",
    "HubSpotConnector",
    "PipedriveConnector",
    "QuickBooksConnector",
    "SalesforceConnector",
    "StripeConnector",
    "XeroConnector",
    "pipedrive_oauth",
    "quickbooks_auth",
    "xero_auth",
]
