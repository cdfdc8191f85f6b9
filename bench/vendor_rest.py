"""Benchmark of the configurable REST connector against a bare httpx loop, as bench/connectors.py.

:func:`rest` builds the same kind of :class:`~bench.connectors.Vendor` as the built-in vendors:
a :class:`~incsync.testing.fakes.generic_rest.FakeGenericRest` loaded with records at distinct
seconds, served over loopback HTTP, read by a :class:`~incsync.connectors.rest.RestConnector`
with cursor paging (500 a page), nested record paths (``data.items``, ``meta.updated_at``) and a
tombstone rule. The bare loop replays the captured requests and only decodes the JSON.
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import datetime, timedelta, timezone

import httpx

from bench._served import Serve
from bench.connectors import Vendor, capture, no_sleep, replay
from incsync.connectors._rest_config import RestConfig
from incsync.connectors.http import HttpOptions
from incsync.connectors.rest import RestConnector
from incsync.testing.fakes.generic_rest import ITEMS_PATH, FakeGenericRest

__all__ = ["PAGE_SIZE", "rest"]

PAGE_SIZE = 500
_SECRET = "BENCH_GENERIC_TOKEN"


def rest(stack: ExitStack, count: int, serve: Serve) -> Vendor:
    """Return the REST connector and its bare loop over ``count`` records, live in ``stack``."""
    fake = FakeGenericRest(paging="cursor", max_page_size=PAGE_SIZE)
    fake.load(count, datetime(2024, 1, 1, tzinfo=timezone.utc))
    fake.clock.set(datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=count + 3600))
    served = stack.enter_context(serve(fake))
    base_url = served.base_url
    config = RestConfig.from_mapping(
        {
            "base_url": base_url,
            "path": ITEMS_PATH,
            "ordered": True,
            "filter": {"param": "updated_since"},
            "records": {"path": "data.items", "updated_at": "meta.updated_at"},
            "tombstone": {"field": "status", "values": ["deleted"]},
            "auth": {"kind": "bearer", "secret": _SECRET},
            "paging": {"style": "cursor", "size": PAGE_SIZE, "cursor_path": "meta.next_cursor"},
        }
    )
    connector = stack.enter_context(
        RestConnector(
            config,
            secrets={_SECRET: fake.token},
            options=HttpOptions(sleep=no_sleep, clock=fake.clock),
        )
    )
    sent = capture(served, connector, count, ITEMS_PATH)

    def bare(client: httpx.Client) -> tuple[int, int]:
        return replay(client, sent, lambda body: body["data"]["items"])

    return Vendor("rest", connector, bare, {"Authorization": f"Bearer {fake.token}"})
