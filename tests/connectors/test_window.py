"""A vendor's fixed-window limit: what its answers say, and when the next request may start."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incsync.connectors.retry import ThrottleGate
from incsync.connectors.window import (
    WINDOW_MARGIN,
    WindowBudget,
    WindowLimit,
    budget_after,
    next_start,
)
from incsync.errors import ConfigurationError

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
WINDOW = timedelta(seconds=2)
MARGIN = WINDOW * WINDOW_MARGIN


def stated(remaining: int, resets_in: float, limit: int = 80) -> WindowLimit:
    return WindowLimit(limit, remaining, timedelta(seconds=resets_in), WINDOW)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_first_answer_places_the_window_and_takes_what_started_after_it() -> None:
    """The window ends where the request was sent plus the time left; requests the connector
    started after the answered one may not have been counted, so they are taken off."""
    budget = budget_after(None, stated(70, 1.5), sent=at(0.2), started_since=4)
    assert budget == WindowBudget(at(1.7), 66, 80, WINDOW)


def test_answers_of_one_window_keep_its_earliest_end_and_the_least_left() -> None:
    """Whole-second resets place the end late by up to a second: the earliest is the nearest."""
    first = budget_after(None, stated(50, 2), sent=at(0.4), started_since=0)  # ends 2.4
    second = budget_after(first, stated(49, 1), sent=at(1.05), started_since=3)  # ends 2.05
    assert second == WindowBudget(at(2.05), 46, 80, WINDOW)
    third = budget_after(second, stated(60, 1), sent=at(1.9), started_since=0)  # ends 2.9
    assert third == WindowBudget(at(2.05), 46, 80, WINDOW)


def test_an_answer_of_a_later_window_starts_again_and_one_of_an_earlier_is_ignored() -> None:
    budget = WindowBudget(at(2), 0, 80, WINDOW)
    later = budget_after(budget, stated(75, 2), sent=at(3.1), started_since=2)
    assert later == WindowBudget(at(5.1), 73, 80, WINDOW)
    assert budget_after(later, stated(0, 0.5), sent=at(1.4), started_since=9) == later


def test_the_first_answer_of_an_assumed_window_places_it() -> None:
    """A window assumed to follow the last one at once is placed by its first answer, earlier
    or later (a vendor whose windows start at the first request places them later)."""
    assumed = WindowBudget(at(4), 70, 80, WINDOW, opens_at=at(2) + MARGIN)
    placed = budget_after(assumed, stated(71, 2), sent=at(2.6), started_since=5)
    assert placed == WindowBudget(at(4.6), 66, 80, WINDOW)


def test_requests_start_at_once_while_the_window_has_some_left() -> None:
    start, budget = next_start(WindowBudget(at(2), 2, 80, WINDOW), at(0.5))
    assert (start, budget.left) == (at(0.5), 1)
    start, budget = next_start(budget, at(0.6))
    assert (start, budget) == (at(0.6), WindowBudget(at(2), 0, 80, WINDOW))


def test_a_spent_window_sends_the_next_request_just_into_the_next_window() -> None:
    start, budget = next_start(WindowBudget(at(2), 0, 80, WINDOW), at(0.7))
    assert start == at(2) + MARGIN
    assert budget == WindowBudget(at(4), 79, 80, WINDOW, opens_at=at(2) + MARGIN)
    # The requests after it, asked for before that window began, start with it too.
    start, budget = next_start(budget, at(0.8))
    assert start == at(2) + MARGIN
    assert budget.left == 78


def test_a_request_after_the_window_ended_has_a_whole_window() -> None:
    start, budget = next_start(WindowBudget(at(2), 0, 80, WINDOW), at(7.5))
    assert start == at(7.5)
    assert budget == WindowBudget(at(8), 79, 80, WINDOW, opens_at=at(6) + MARGIN)
    start, _ = next_start(WindowBudget(at(2), 0, 80, WINDOW), at(6.01))
    assert start == at(6) + MARGIN


@given(
    limit=st.integers(1, 50),
    requests=st.integers(1, 300),
    asked=st.lists(st.floats(0, 0.5), min_size=1, max_size=20),
)
def test_no_window_ever_starts_more_requests_than_its_limit(
    limit: int, requests: int, asked: list[float]
) -> None:
    """However the requests are asked for (threads ask before the requests given a start earlier
    have started), each window gets at most its limit, and no request starts before it was
    asked for, nor before one asked for earlier."""
    budget = WindowBudget(at(2), limit, limit, WINDOW)
    moment, starts = T0, []
    for number in range(requests):
        moment += timedelta(seconds=asked[number % len(asked)])
        start, budget = next_start(budget, moment)
        assert start >= moment
        starts.append(start)
    per_window: dict[int, int] = {}
    for start in starts:
        window = int((start - T0) / WINDOW)
        per_window[window] = per_window.get(window, 0) + 1
    assert max(per_window.values()) <= limit
    assert starts == sorted(starts)


def test_a_gate_spends_the_window_an_answer_states_then_waits_for_the_next() -> None:
    """Through the gate: once an answer states the window, requests go at once while it has
    some left, counting those started after the answered one, then wait into the next."""
    gate = ThrottleGate()
    slept: list[float] = []
    first = gate.wait(at(0), slept.append)
    assert first == 1
    assert slept == []  # no window known yet: no wait
    second = gate.wait(at(0.01), slept.append)
    gate.note_window(stated(2, 1.9, limit=3), sent=at(0.1), ticket=first)  # one left: 2 - 1
    assert second == 2
    gate.wait(at(0.3), slept.append)
    assert slept == []
    gate.wait(at(0.4), slept.append)
    assert slept == pytest.approx([(at(2) + MARGIN - at(0.4)).total_seconds()])


@pytest.mark.parametrize(
    ("limit", "remaining", "resets_in", "window"),
    [(0, 0, 1.0, 2.0), (5, -1, 1.0, 2.0), (5, 1, -0.5, 2.0), (5, 1, 1.0, 0.0)],
)
def test_a_limit_out_of_range_is_refused(
    limit: int, remaining: int, resets_in: float, window: float
) -> None:
    with pytest.raises(ConfigurationError):
        WindowLimit(limit, remaining, timedelta(seconds=resets_in), timedelta(seconds=window))
