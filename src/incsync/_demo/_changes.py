"""The changes the demo makes at the sources between cycles, and the outage it stages.

Each change function touches disjoint records, stamps every change inside a ten-minute span the
caller names, and returns what it did as :class:`Changes`, whose total is exactly what the next
incremental cycle must apply.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta

import attrs
import httpx

from incsync._demo._world import INVOICE, Scale, close_date, invoice_fields, spread_times
from incsync.testing.fakes import FakeHubSpot, FakeQuickBooks

__all__ = ["Changes", "change_hubspot", "change_quickbooks", "outage"]

_SECOND = timedelta(seconds=1)
_SPAN = timedelta(minutes=10)


@attrs.frozen
class Changes:
    """What the demo changed at a source, and how many records an incremental cycle must apply.

    Args:
        parts: ``(count, what)`` pairs, like ``(120, "updated")``.
    """

    parts: tuple[tuple[int, str], ...]

    @property
    def total(self) -> int:
        """How many records changed (each part touches different records)."""
        return sum(count for count, _ in self.parts)

    def describe(self) -> str:
        """Return the parts as one phrase."""
        return ", ".join(f"{count:,} {what}" for count, what in self.parts)


def _distinct(rng: random.Random, ids: Sequence[str], *counts: int) -> list[list[str]]:
    """Return disjoint random samples of ``ids``, one per count."""
    chosen = rng.sample(list(ids), sum(counts))
    groups, start = [], 0
    for count in counts:
        groups.append(chosen[start : start + count])
        start += count
    return groups


def _moments(rng: random.Random, count: int, since: datetime) -> list[datetime]:
    """Return ``count`` whole seconds in the span after ``since``, in time order."""
    return sorted(spread_times(rng, count, since, _SPAN, _SECOND))


def change_quickbooks(
    fake: FakeQuickBooks, ids: Sequence[str], scale: Scale, rng: random.Random, since: datetime
) -> Changes:
    """Mark invoices paid, void and delete others, and import a batch stamped with one second.

    Args:
        fake: The company.
        ids: Its invoices' ids, to pick from.
        scale: How many to change (``scale.changes`` paid, fewer voided and deleted, twice as
            many created).
        rng: Picks the invoices and the times.
        since: Every change is stamped in the ten minutes after it; the clock must be past them.

    Returns:
        What changed: as many records as the next incremental cycle must apply.
    """
    paid, voided, deleted = _distinct(
        rng, ids, scale.changes, scale.changes // 8, scale.changes // 12
    )
    moments = iter(_moments(rng, len(paid) + len(voided) + len(deleted), since))
    for record_id in paid:
        fake.update(INVOICE, record_id, {"Balance": 0}, updated_at=next(moments))
    for record_id in voided:
        fake.void(INVOICE, record_id, voided_at=next(moments))
    for record_id in deleted:
        fake.delete(INVOICE, record_id, deleted_at=next(moments))
    created = [since + timedelta(minutes=7)] * (2 * scale.changes)
    fake.bulk_load(INVOICE, created, fields=invoice_fields(created, rng, 90_001))
    return Changes(
        (
            (len(paid), "paid"),
            (len(voided), "voided"),
            (len(deleted), "deleted"),
            (len(created), "created in one second"),
        )
    )


def change_hubspot(
    fake: FakeHubSpot, ids: Sequence[str], scale: Scale, rng: random.Random, since: datetime
) -> Changes:
    """Move deals to closed won, archive others, and import a batch stamped with one millisecond.

    Args:
        fake: The portal.
        ids: Its deals' ids, to pick from.
        scale: How many to change (``scale.changes`` moved, fewer archived, twice as many
            created).
        rng: Picks the deals and the times.
        since: Every change is stamped in the ten minutes after it; the clock must be past them.

    Returns:
        What changed: as many records as the next incremental cycle must apply.
    """
    moved, archived = _distinct(rng, ids, scale.changes, scale.changes // 6)
    for record_id, moment in zip(moved, _moments(rng, len(moved), since), strict=True):
        won = {"dealstage": "closedwon", "closedate": close_date(moment)}
        fake.update("deals", record_id, won, modified_at=moment)
    for record_id, moment in zip(archived, _moments(rng, len(archived), since), strict=True):
        fake.archive("deals", record_id, at=moment)
    burst = since + timedelta(minutes=4, milliseconds=250)
    created = 2 * scale.changes
    for number in range(created):
        fake.create(
            "deals",
            {"dealname": f"Imported lead {number + 1}", "amount": "1500", "pipeline": "default"},
            modified_at=burst,
        )
    return Changes(
        (
            (len(moved), "moved to closed won"),
            (len(archived), "archived"),
            (created, "created in one millisecond"),
        )
    )


def outage(request: httpx.Request) -> httpx.Response:
    """Answer ``request`` with a 500, as an API in an outage does: a fault for ``add_fault``."""
    body = {
        "status": "error",
        "message": "internal error",
        "correlationId": "6a1e6b57-0c47-4d5f-9c51-2f3f1e0e5a11",
        "category": "INTERNAL_ERROR",
    }
    return httpx.Response(500, json=body)
