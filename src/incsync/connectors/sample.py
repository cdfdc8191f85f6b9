"""Generated invoices: a realistic sample source for the demo, benchmarks and tests."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from incsync.connectors.memory import InMemorySource, iso_timestamp
from incsync.timestamps import ensure_utc

__all__ = ["generate_invoices", "invoice", "sample_source"]

_CUSTOMERS = ("Acme Corp", "Globex", "Initech", "Umbrella", "Hooli", "Stark Industries", "Wayne")
_PRODUCTS = ("Licence", "Support", "Onboarding", "Training", "Hardware")
_CURRENCIES = ("USD", "EUR", "GBP")


def invoice(number: int, updated_at: datetime, rng: random.Random) -> dict[str, Any]:
    """Return one invoice-shaped record: id, customer, amount, currency, ISO time, two lines."""
    lines: list[dict[str, Any]] = [
        {
            "product": rng.choice(_PRODUCTS),
            "quantity": rng.randint(1, 20),
            "unit_price": f"{rng.randint(10, 5_000)}.{rng.randint(0, 99):02d}",
        }
        for _ in range(2)
    ]
    total = sum(line["quantity"] * float(line["unit_price"]) for line in lines)
    return {
        "id": f"INV-{number:07d}",
        "customer": rng.choice(_CUSTOMERS),
        "amount": f"{total:.2f}",
        "currency": rng.choice(_CURRENCIES),
        "updated_at": iso_timestamp(updated_at),
        "line_items": lines,
    }


def generate_invoices(
    count: int,
    *,
    end: datetime,
    span: timedelta = timedelta(days=90),
    burst_every: int = 50,
    burst_size: int = 20,
    seed: int = 0,
) -> Iterator[dict[str, Any]]:
    """Yield ``count`` invoices updated over ``span`` before ``end``, in time order.

    Every ``burst_every``-th invoice starts a burst of ``burst_size`` invoices sharing one
    timestamp (a bulk import at the source), the case that breaks bare-timestamp cursors.

    Args:
        count: How many invoices.
        end: The newest invoice's time (aware).
        span: How far back the oldest goes.
        burst_every: Spacing of bursts, in invoices (0 for none).
        burst_size: Invoices per burst.
        seed: Makes the same call return the same invoices in any process.
    """
    end = ensure_utc(end, "end")
    rng = random.Random(seed)
    moment = end
    remaining_in_burst = 0
    for number in range(1, count + 1):
        if remaining_in_burst:
            remaining_in_burst -= 1
        else:
            # From the start each time, so rounding to milliseconds never accumulates.
            moment = end - span * (count - number) / count
            moment = moment.replace(microsecond=(moment.microsecond // 1000) * 1000)
            if burst_every and number % burst_every == 0:
                remaining_in_burst = burst_size - 1
        yield invoice(number, moment, rng)


def sample_source(count: int, *, end: datetime, seed: int = 0) -> InMemorySource:
    """Return an :class:`InMemorySource` holding ``count`` generated invoices."""
    source = InMemorySource()
    for raw in generate_invoices(count, end=end, seed=seed):
        source.put(raw)
    return source
