"""The Xero entry of the connector benchmark: XeroConnector against a bare loop over FakeXero.

Same method as :mod:`bench.connectors`: an untimed capture run records the connector's requests,
and the bare loop replays them in order. Xero's filter travels in the ``If-Modified-Since``
header, which the shared capture does not keep, so a second observer records it for each request
and the replayed requests carry it (with ``Xero-tenant-id`` in the bare client's headers).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import httpx

from bench.connectors import Vendor, capture, no_sleep, replay
from incsync.connectors.xero import XeroConnector, xero_auth
from incsync.testing import ManualClock
from incsync.testing.fakes.xero import FakeXero, XeroLimits

__all__ = ["xero"]

UTC = timezone.utc


def xero(stack: ExitStack, count: int) -> Vendor:
    """Load ``count`` invoices a second apart into a served FakeXero; return the bench vendor.

    Args:
        stack: Keeps the server and the connector open while the benchmark runs.
        count: How many invoices to load.

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
    base_url = stack.enter_context(fake.serve())
    tokens = fake.grant_tokens()
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
            sleep=no_sleep,
            clock=fake.clock,
        )
    )
    since: list[str | None] = []

    def observe(request: httpx.Request) -> None:
        since.append(request.headers.get("if-modified-since"))

    fake.add_fault(observe)  # capture() clears every fault when it is done
    sent = capture(fake, connector, count, "/api.xro/2.0/")
    if len(since) != len(sent):
        raise RuntimeError("xero: the If-Modified-Since observer missed requests")
    sent = [
        request
        if value is None
        else replace(request, headers={**request.headers, "If-Modified-Since": value})
        for request, value in zip(sent, since, strict=True)
    ]

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
