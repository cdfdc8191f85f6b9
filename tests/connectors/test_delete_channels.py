"""What each built-in connector says of its delete channel and its count check, without a cycle."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from incsync.connectors._counts import counted
from incsync.connectors.auth import BearerToken
from incsync.connectors.http import HttpConnector, HttpOptions
from incsync.cursor import Window
from incsync.errors import BadResponseError
from incsync.testing.fakes.xero import FakeXero, XeroLimits
from incsync.vendors.hubspot import ARCHIVED_RETENTION, HubSpotConnector
from incsync.vendors.pipedrive import DELETED_RETENTION, PipedriveConnector
from incsync.vendors.salesforce import RECYCLE_BIN_RETENTION, SalesforceConnector
from incsync.vendors.stripe import EVENT_RETENTION, StripeConnector
from incsync.vendors.xero import XeroConnector


def hubspot(channel: bool) -> HttpConnector:
    return HubSpotConnector(auth=BearerToken("t"), include_archived=channel)


def salesforce(channel: bool) -> HttpConnector:
    return SalesforceConnector("id", "secret", "refresh", include_deleted=channel)


def pipedrive(channel: bool) -> HttpConnector:
    return PipedriveConnector(api_token="t", include_deleted=channel)


CHANNELS: list[tuple[Callable[[bool], HttpConnector], timedelta]] = [
    (hubspot, ARCHIVED_RETENTION),
    (salesforce, RECYCLE_BIN_RETENTION),
    (pipedrive, DELETED_RETENTION),
]


@pytest.mark.parametrize(("make", "retention"), CHANNELS)
def test_the_retention_is_stated_only_while_the_delete_channel_is_read(
    make: Callable[[bool], HttpConnector], retention: timedelta
) -> None:
    """With its delete channel on, a connector states the vendor's retention; off, ``None``:
    no delete is read, so only a whole re-read finds them."""
    with make(True) as reading, make(False) as not_reading:
        assert reading.delete_retention == retention
        assert not_reading.delete_retention is None


def test_the_vendors_retentions() -> None:
    """HubSpot keeps archived objects 90 days, Salesforce its recycle bin 15, Pipedrive deleted
    deals 30, Stripe events 30; Xero keeps deleted and voided documents listed."""
    assert timedelta(days=90) == ARCHIVED_RETENTION
    assert timedelta(days=15) == RECYCLE_BIN_RETENTION
    assert DELETED_RETENTION == EVENT_RETENTION == timedelta(days=30)
    with StripeConnector(secret_key="sk_test_x") as stripe:
        assert stripe.delete_retention == EVENT_RETENTION
        assert stripe.count_live() is None
    with XeroConnector("tenant", auth=BearerToken("t")) as xero:
        assert xero.delete_retention is None


@pytest.mark.parametrize(
    ("endpoint", "row", "deleted"),
    [
        ("Contacts", {"ContactID": "c", "ContactStatus": "ARCHIVED"}, True),
        ("Contacts", {"ContactID": "c", "ContactStatus": "GDPRREQUEST"}, True),
        ("Contacts", {"ContactID": "c", "ContactStatus": "ACTIVE"}, False),
        ("ManualJournals", {"ManualJournalID": "m", "Status": "ARCHIVED"}, True),
        ("Invoices", {"InvoiceID": "i", "Status": "VOIDED"}, True),
        ("Invoices", {"InvoiceID": "i", "Status": "DELETED"}, True),
        ("Invoices", {"InvoiceID": "i", "Status": "PAID"}, False),
    ],
)
def test_xero_reads_each_lists_status_field_for_tombstones(
    endpoint: str, row: dict[str, Any], deleted: bool
) -> None:
    """Contacts are archived (``ContactStatus``), never deleted; other lists use ``Status``."""
    with XeroConnector("tenant", auth=BearerToken("t"), endpoint=endpoint) as xero:
        assert xero.is_deleted(row) is deleted


def test_xero_asks_for_archived_rows_on_every_read() -> None:
    """Every list request sends ``includeArchived=true``: archived rows come, as tombstones."""
    fake = FakeXero(limits=XeroLimits(per_minute=None, per_day=None), endpoint="Contacts")
    fake.add()
    tokens = fake.grant_tokens()
    with XeroConnector(
        fake.tenant_id,
        auth=BearerToken(tokens.access_token),
        endpoint="Contacts",
        base_url="https://api.xero.com/api.xro/2.0",
        options=HttpOptions(transport=fake.transport(), clock=fake.clock),
    ) as xero:
        pages = list(xero.read(Window()))
    assert sum(len(page.records) for page in pages) == 1
    assert all("includeArchived=true" in request.url for request in fake.requests)


@pytest.mark.parametrize("value", [None, "12", True, -1, 1.5, [3]])
def test_a_count_that_is_not_a_whole_number_is_a_bad_response(value: object) -> None:
    """An answer whose count is absent, text, a boolean, negative or a fraction is refused."""
    with pytest.raises(BadResponseError, match="not a count of records"):
        counted(value, vendor="hubspot", where="the search answer's total")
    assert counted(0, vendor="x", where="y") == 0


def test_a_hubspot_count_is_one_search_without_filter() -> None:
    """``count_live`` sends one search with no filter and limit 1, and reads ``total``."""
    bodies: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"total": 41, "results": []})

    with HubSpotConnector(
        auth=BearerToken("t"), options=HttpOptions(transport=httpx.MockTransport(answer))
    ) as source:
        assert source.count_live() == 41
    [body] = bodies
    assert (body["filterGroups"], body["limit"]) == ([], 1)
