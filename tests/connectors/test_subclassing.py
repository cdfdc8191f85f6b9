"""Every built-in connector can be subclassed: a subclass's is_deleted decides its tombstones.

The connectors build records on fast paths that skip checks already made; none of them may skip
the subclass's own rule for what counts as deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from incsync.connectors import BearerToken, RestConfig, RestConnector
from incsync.connectors.http import HttpConnector
from incsync.vendors import (
    HubSpotConnector,
    PipedriveConnector,
    QuickBooksConnector,
    SalesforceConnector,
    XeroConnector,
    quickbooks_auth,
)


def _quickbooks(kind: type[QuickBooksConnector]) -> QuickBooksConnector:
    auth = quickbooks_auth("id", "secret", "refresh", access_token="token")
    return kind("4620816365", "Invoice", auth=auth)


def _salesforce(kind: type[SalesforceConnector]) -> SalesforceConnector:
    return kind("id", "secret", "refresh")


def _hubspot(kind: type[HubSpotConnector]) -> HubSpotConnector:
    return kind(auth=BearerToken("token"))


def _xero(kind: type[XeroConnector]) -> XeroConnector:
    return kind("tenant", auth=BearerToken("token"))


def _pipedrive(kind: type[PipedriveConnector]) -> PipedriveConnector:
    return kind(api_token="token")


def _rest(kind: type[RestConnector]) -> RestConnector:
    config = RestConfig.from_mapping(
        {
            "base_url": "https://api.example.com",
            "path": "/items",
            "filter": {"param": "updated_since"},
        }
    )
    return kind(config)


# Each connector's usual row, live by its own rule, with a "flag" the subclass reads.
CASES: dict[str, tuple[Callable[[Any], HttpConnector], type[HttpConnector], dict[str, Any]]] = {
    "quickbooks": (
        _quickbooks,
        QuickBooksConnector,
        {"Id": "1", "MetaData": {"LastUpdatedTime": "2024-06-03T09:00:00-07:00"}},
    ),
    "salesforce": (
        _salesforce,
        SalesforceConnector,
        {"Id": "0065e0000000001AAA", "SystemModstamp": "2024-06-03T09:00:00.000+0000"},
    ),
    "hubspot": (
        _hubspot,
        HubSpotConnector,
        {
            "id": "1",
            "properties": {"hs_lastmodifieddate": "2024-06-03T09:00:00.000Z"},
            "archivedAt": "2024-06-03T09:00:00.000Z",
        },
    ),
    "xero": (
        _xero,
        XeroConnector,
        {"InvoiceID": "a1", "UpdatedDateUTC": "/Date(1717405200000+0000)/", "Status": "PAID"},
    ),
    "pipedrive": (_pipedrive, PipedriveConnector, {"id": 1, "update_time": "2024-06-03T09:00:00Z"}),
    "rest": (_rest, RestConnector, {"id": "1", "updated_at": "2024-06-03T09:00:00Z"}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_subclass_rule_for_deletes_decides_every_record(name: str) -> None:
    """A row the subclass calls deleted is a tombstone; one it does not is live."""
    build, base, row = CASES[name]

    class FlagMeansGone(base):  # type: ignore[valid-type,misc]
        def is_deleted(self, raw: Mapping[str, Any]) -> bool:
            return raw.get("flag") == "gone"

    with build(FlagMeansGone) as connector:
        assert connector.to_record({**row, "flag": "gone"}).deleted is True
        assert connector.to_record(dict(row)).deleted is False
