"""Pipedrive's entry for the connector benchmark (``bench/connectors.py``'s ``vendors()``).

The fake is loaded with deals one second apart and served over loopback; the connector reads them
with an ``api_token`` in the ``x-api-token`` header, and the bare loop replays the captured
requests (the first list request, then one per ``next_cursor``) with the same header.
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import datetime, timedelta, timezone

import httpx

from bench._served import Serve
from bench.connectors import Vendor, capture, no_sleep, replay
from incsync.connectors.http import HttpOptions
from incsync.testing.fakes.pipedrive import FakePipedrive, PipedriveLimits
from incsync.vendors.pipedrive import PipedriveConnector

__all__ = ["pipedrive"]

UTC = timezone.utc


def pipedrive(stack: ExitStack, count: int, serve: Serve) -> Vendor:
    """Load ``count`` deals into a served fake; return its connector and bare loop.

    Args:
        stack: Keeps the server and the connector open until the benchmark is done.
        count: How many deals to load.
        serve: Serves the fake (from a child process or a thread).

    Returns:
        The vendor entry: the connector, the bare replay of its requests, the bare loop's header.
    """
    fake = FakePipedrive(limits=PipedriveLimits(per_window=None, daily=None))
    start = datetime(2024, 1, 1, tzinfo=UTC)
    fake.load([start + timedelta(seconds=i) for i in range(count)], {"title": "bench", "value": 10})
    fake.clock.set(start + timedelta(seconds=count, days=1))
    served = stack.enter_context(serve(fake))
    base_url = served.base_url
    connector = stack.enter_context(
        PipedriveConnector(
            base_url,
            api_token=fake.api_token,
            options=HttpOptions(sleep=no_sleep, clock=fake.clock),
        )
    )
    sent = capture(served, connector, count, "/api/v2/deals")

    def bare(client: httpx.Client) -> tuple[int, int]:
        return replay(client, sent, lambda body: body["data"])

    vendor = Vendor("pipedrive", connector, bare, {"x-api-token": fake.api_token})
    vendor.notes.append(
        "the connector asks for every status (deleted deals included) and the keyset driver "
        "checks the update-time order of every page; the bare loop only decodes the pages"
    )
    return vendor
