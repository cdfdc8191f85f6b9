"""Stripe's entry in the connector benchmark: a full read of invoices against a bare httpx loop.

``stripe(stack, count)`` builds the same :class:`~bench.connectors.Vendor` as the built-in
vendors in :mod:`bench.connectors`: the fake is loaded with ``count`` invoices, one per second, and
served over loopback HTTP; the connector's full read (list pages of 100 by ``starting_after``,
then the catch-up read of the events since the list began, empty here) is captured once and the
bare loop replays those requests exactly.
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import datetime, timedelta, timezone

import httpx

from bench._served import Serve
from bench.connectors import Vendor, capture, no_sleep, replay
from incsync.connectors.http import HttpOptions
from incsync.testing import ManualClock
from incsync.testing.fakes.stripe import FakeStripe
from incsync.vendors.stripe import StripeConnector

__all__ = ["stripe"]


def stripe(stack: ExitStack, count: int, serve: Serve) -> Vendor:
    """Return the Stripe vendor: ``count`` invoices in the fake, live while ``stack`` is open.

    Args:
        stack: Keeps the fake's server and the connector open; closing it stops both.
        count: How many invoices to load.
        serve: Serves the fake (from a child process or a thread).

    Returns:
        The connector and the bare loop over the same requests.
    """
    fake = FakeStripe(clock=ManualClock(datetime(2024, 6, 1, 12, tzinfo=timezone.utc)))
    start = fake.clock() - timedelta(days=90)
    fake.load("invoices", [start + timedelta(seconds=i) for i in range(count)])
    served = stack.enter_context(serve(fake))
    base_url = served.base_url
    connector = stack.enter_context(
        StripeConnector(
            base_url,
            secret_key=fake.secret_key,
            options=HttpOptions(sleep=no_sleep, clock=fake.clock),
        )
    )
    sent = capture(served, connector, count, "/v1/")

    def bare(client: httpx.Client) -> tuple[int, int]:
        return replay(client, sent, lambda body: body["data"])

    vendor = Vendor("stripe", connector, bare, {"Authorization": f"Bearer {fake.secret_key}"})
    vendor.notes.append(
        "a full read ends with one request for the events since the list began (none here); "
        "the bare loop sends it too"
    )
    return vendor
