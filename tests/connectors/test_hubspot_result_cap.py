"""A connector that pages one HubSpot search by offset meets its result cap, over loopback HTTP.

HubSpot refuses to page one search past its 10,000th result: the page that would reach past it
is answered with a 400, while every answer's ``total`` still counts every match. The built-in
connector never follows an offset (:mod:`incsync.vendors.hubspot`); a host's connector that
does, as here, raises :class:`~incsync.errors.ResultCapError` on that answer. FakeHubSpot, with
a cap small enough to meet, stands for the portal.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta

import pytest

from incsync import ResultCapError, SyncEngine, SyncPolicy
from incsync.connectors.auth import BearerToken
from incsync.connectors.http import HttpOptions
from incsync.cursor import Window
from incsync.errors import PermanentSourceError
from incsync.records import Page
from incsync.results import Outcome
from incsync.testing import InMemoryStore
from incsync.testing.fakes.hubspot import FakeHubSpot
from incsync.timestamps import to_micros
from incsync.vendors.hubspot import HubSpotConnector
from tests.connectors.test_hubspot import KEY, T0, UNLIMITED, assert_matches, load_deals, no_sleep

CAP = 100
"""The fake's cap on one search's results: HubSpot's 10,000, made small."""

PAGE = 20


class OffsetSearch(HubSpotConnector):
    """Reads each window with one search, paged by HubSpot's ``after`` offset.

    Offsets are safe here only because nothing changes while the test reads; the page HubSpot
    refuses past its cap ends the read with :class:`~incsync.errors.ResultCapError`.
    """

    def read(self, window: Window) -> Iterator[Page]:
        filters = [
            {"propertyName": self.modified_property, "operator": operator, "value": str(ms)}
            for operator, moment in (("GTE", window.start), ("LT", window.end))
            if moment is not None
            for ms in (to_micros(moment) // 1000,)
        ]
        offset = 0
        while True:
            body = {
                "filterGroups": [{"filters": filters}] if filters else [],
                "sorts": [{"propertyName": self.modified_property, "direction": "ASCENDING"}],
                "limit": PAGE,
                "after": str(offset),
            }
            try:
                answer = self.request_json(
                    "POST", f"/crm/v3/objects/{self.object_type}/search", json=body
                )
            except PermanentSourceError as refused:
                if refused.status_code == 400 and "limited to" in (refused.excerpt or ""):
                    raise ResultCapError(
                        f"hubspot: the search from {window.start} until {window.end} pages no "
                        f"further than its result {offset:,}",
                        cap=offset,
                        vendor=self.vendor,
                        status_code=refused.status_code,
                        excerpt=refused.excerpt,
                    ) from refused
                raise
            results, total = answer["results"], answer["total"]
            yield self.page_of(results, total)
            offset += len(results)
            if not results or offset >= total:
                return


def _offset_search(fake: FakeHubSpot, base_url: str, partitions: int) -> OffsetSearch:
    return OffsetSearch(
        base_url,
        auth=BearerToken(fake.private_app_token),
        options=HttpOptions(sleep=no_sleep, clock=fake.clock),
        partitions=partitions,
    )


def _portal() -> FakeHubSpot:
    fake = FakeHubSpot(index_lag=timedelta(0), limits=UNLIMITED, search_result_cap=CAP)
    load_deals(fake, 700)  # a second apart: fewer than the cap in the minute of lookback
    fake.clock.set(T0 + timedelta(days=1))
    return fake


def test_a_full_read_in_partitions_cuts_each_search_the_portal_refuses_to_page(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each partition's search is refused past the cap (a 400) and the partition is cut; the
    halves' searches are narrower, and the sink ends equal to the portal."""
    caplog.set_level(logging.INFO, logger="incsync")
    fake = _portal()
    store = InMemoryStore()
    with fake.serve() as base_url, closing(_offset_search(fake, base_url, 2)) as source:
        result = SyncEngine(store, clock=fake.clock).run_cycle(KEY, source)

    assert (result.outcome, result.applied) == (Outcome.COMPLETED, 700), result.error
    assert_matches(store, fake, archived=False)
    refused = [r for r in fake.requests if r.status == 400]
    cuts = [r for r in caplog.records if "met the source's cap" in r.getMessage()]
    assert refused
    assert len(cuts) == len(refused)
    assert all(f"({CAP:,})" in cut.getMessage() for cut in cuts)


def test_a_full_read_in_one_window_fails_on_the_refused_page_and_says_so() -> None:
    """Read as one window, the search cannot be cut: the cycle fails with the cap's error, the
    pages before it applied."""
    fake = _portal()
    store = InMemoryStore()
    with fake.serve() as base_url, closing(_offset_search(fake, base_url, 1)) as source:
        policy = SyncPolicy(max_consecutive_failures=10)
        result = SyncEngine(store, clock=fake.clock, policy=policy).run_cycle(KEY, source)

    assert (result.outcome, result.error_class, result.applied) == (
        Outcome.FAILED,
        "ResultCapError",
        CAP,
    )
    assert result.error is not None
    assert "pages no further than its result 100" in result.error
    assert [r.status for r in fake.requests][-1] == 400
