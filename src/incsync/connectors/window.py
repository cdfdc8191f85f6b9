"""A vendor's fixed-window request limit, as its answers state it: the pure decisions.

Some vendors count requests in fixed windows and say on every answer how many the window in
which they counted it still allows and when it ends (Pipedrive: ``x-ratelimit-limit`` requests
per 2-second window, ``x-ratelimit-remaining``, ``x-ratelimit-reset``). A connector that reads
those headers can spend each window whole and then wait for the next one, where a steady pace
must keep some of the window back for the moments at which the vendor's windows and its own do
not line up. :class:`~incsync.connectors.retry.ThrottleGate` keeps a :class:`WindowBudget` and
asks the two functions here:

* :func:`budget_after`: what an answer says of the window, made safe against the requests the
  connector started after the one answered (the vendor may not have counted them yet);
* :func:`next_start`: when the next request may start, and the budget it leaves.

A window's end is placed at the moment the answered request was sent plus the time the answer
says is left. The vendor counts a request when it arrives, and may round the time left up to
whole seconds (Pipedrive's fresh window says ``2``), so each answer places the end no earlier
than the true end less the request's way to the vendor, and the earliest of a window's answers
is the nearest. A window the connector has not had an answer from yet (the one after a window it
spent) is assumed to follow the last one at once; its first answer places it where the vendor
has it (later, for a vendor whose windows start with the first request after the last one
ended). A new window's first requests start :data:`WINDOW_MARGIN` of a window after its assumed
start, which covers a request's way to the vendor.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import attrs

from incsync.policy import (
    non_negative_duration,
    positive_count,
    positive_duration,
    whole_number_setting,
)

__all__ = ["WINDOW_MARGIN", "WindowBudget", "WindowLimit", "budget_after", "next_start"]

WINDOW_MARGIN = 0.05
"""How far into a new window, as a share of its length, its first requests start.

A window's end is placed as early as its answers allow (see the module's documentation), and a
request is counted when it arrives: the margin covers its way to the vendor. Spending a window
does not depend on it: a connector with more readers than the limit needs spends the window's
requests well before it ends.
"""

_non_negative_count = whole_number_setting(0)


@attrs.frozen
class WindowLimit:
    """What one answer says of the vendor's request limit.

    Args:
        limit: How many requests a window allows.
        remaining: How many more the window in which this request was counted allows.
        resets_in: How long that window still lasts, from when the vendor counted the request.
        window: How long a window lasts.

    Raises:
        ConfigurationError: A count or a duration is out of its range (a limit of at least 1,
            a remaining count of at least 0, a window longer than zero).
    """

    limit: int = attrs.field(validator=positive_count)
    remaining: int = attrs.field(validator=_non_negative_count)
    resets_in: timedelta = attrs.field(validator=non_negative_duration)
    window: timedelta = attrs.field(validator=positive_duration)


@attrs.frozen
class WindowBudget:
    """How many requests a connector may still start before a window ends.

    Args:
        ends_at: When the window ends: placed by its answers so far, or assumed.
        left: Requests that may still start before then.
        limit: Requests each later window allows.
        window: How long a window lasts.
        opens_at: While the window is assumed to follow the last one at once: when its first
            requests may start (its assumed start and the margin). ``None`` once an answer
            counted in it has placed it.
    """

    ends_at: datetime
    left: int
    limit: int
    window: timedelta
    opens_at: datetime | None = None


def budget_after(
    budget: WindowBudget | None, stated: WindowLimit, *, sent: datetime, started_since: int
) -> WindowBudget:
    """Return the budget once an answer has said what its window allows.

    Args:
        budget: The budget before the answer, if any.
        stated: What the answer says.
        sent: When the answered request was sent.
        started_since: How many requests the connector started (or was given a start) after it:
            the vendor may not have counted them when it answered, so they are taken from what
            it says is left.
    """
    ends_at = sent + stated.resets_in
    left = max(0, stated.remaining - started_since)
    if budget is None or ends_at > budget.ends_at + stated.window / 2:
        # The first answer, or one counted in a later window than the budget knew of.
        return WindowBudget(ends_at, left, stated.limit, stated.window)
    if ends_at < budget.ends_at - stated.window / 2:
        return budget  # counted in an earlier window: nothing it says holds any more
    # The same window: the earliest end its answers place is the nearest to the true one.
    placed_end = ends_at if budget.opens_at is not None else min(budget.ends_at, ends_at)
    return WindowBudget(placed_end, min(budget.left, left), stated.limit, stated.window)


def next_start(budget: WindowBudget, earliest: datetime) -> tuple[datetime, WindowBudget]:
    """Return when the next request may start, no earlier than ``earliest``, and what is left.

    Within the budget's window while requests are left; otherwise in the first later window,
    :data:`WINDOW_MARGIN` of a window after it begins, with that window's whole limit.
    """
    if earliest >= budget.ends_at:
        passed = math.floor((earliest - budget.ends_at) / budget.window) + 1
        budget = _assumed(budget, budget.ends_at + (passed - 1) * budget.window)
    elif budget.left == 0:
        budget = _assumed(budget, budget.ends_at)
    start = earliest if budget.opens_at is None else max(earliest, budget.opens_at)
    return start, attrs.evolve(budget, left=budget.left - 1)


def _assumed(budget: WindowBudget, begins: datetime) -> WindowBudget:
    """The window that begins at ``begins``, assumed to follow ``budget``'s, with a whole limit."""
    return WindowBudget(
        begins + budget.window,
        budget.limit,
        budget.limit,
        budget.window,
        opens_at=begins + budget.window * WINDOW_MARGIN,
    )
