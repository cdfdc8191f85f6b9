"""The Xero entry of the connector benchmark: XeroConnector against a bare loop over FakeXero.

Same method as :mod:`bench.connectors`: an untimed capture run records the connector's requests,
and the bare loop replays them in order. Xero's filter travels in the ``If-Modified-Since``
header, which the recording keeps; the replayed requests carry it (with ``Xero-tenant-id`` in the
bare client's headers).
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import datetime, timedelta, timezone

import httpx

from bench._served import Serve
from bench.connectors import Vendor, capture, no_sleep, replay
from incsync.connectors.http import HttpOptions
from incsync.testing import ManualClock
from incsync.testing.fakes.xero import FakeXero, XeroLimits
from incsync.vendors.xero import XeroConnector, xero_auth

__all__ = ["xero"]

UTC = timezone.utc


def xero(stack: ExitStack, count: int, serve: Serve) -> Vendor:
    """Load ``count`` invoices a second apart into a served FakeXero; return the bench vendor.

    Args:
        stack: Keeps the server and the connector open while the benchmark runs.
        count: How many invoices to load.
        serve: Serves the fake (from a child process or a thread).

    Returns:
        The connector and the bare loop replaying its requests.
    """
    fake = FakeXero(
        clock=ManualClock(datetime(2024, 6, 3, 16, 0, tzinfo=UTC)),
        limits=XeroLimits(per_minute=None, per_day=None),
    )
    start = datetime(2024, 1, 1, tzinfo=UTC)
    fake.bulk_load(
        (start + timedelta(seconds=n) for n in range(count)),
        fields=lambda n: {"InvoiceNumber": f"INV-{n:06d}", "Total": float(n % 997)},
    )
    tokens = fake.grant_tokens()
    served = stack.enter_context(serve(fake))
    base_url = served.base_url
    auth = xero_auth(
        fake.client_id,
        fake.client_secret,
        tokens.refresh_token,
        token_url=f"{base_url}/connect/token",
        access_token=tokens.access_token,
        expires_at=tokens.expires_at,
        clock=fake.clock,
    )
    connector = stack.enter_context(
        XeroConnector(
            fake.tenant_id,
            auth=auth,
            base_url=f"{base_url}/api.xro/2.0",
            options=HttpOptions(sleep=no_sleep, clock=fake.clock),
        )
    )
    # The recorder keeps If-Modified-Since, so the replayed requests carry Xero's filter.
    sent = capture(served, connector, count, "/api.xro/2.0/")

    def bare(client: httpx.Client) -> tuple[int, int]:
        return replay(client, sent, lambda body: body["Invoices"])

    vendor = Vendor(
        "xero",
        connector,
        bare,
        {"Authorization": f"Bearer {tokens.access_token}", "Xero-tenant-id": fake.tenant_id},
    )
    vendor.notes.append(
        "each page is asked again from the last second read, so it repeats that second's rows "
        "of the previous page (one a page here); the bare loop receives those rows too"
    )
    return vendor
