"""Benchmark of the status page: classify 10,000 sources and render them.

Run ``python -m bench.status`` from the project root (``--quick`` for 1,000 sources). It prints,
per source, the best of several rounds of:

1. baseline: a bare loop doing only what any classifier must (the phase and threshold comparisons,
   and f-strings for the two times), on the same states in the same process;
2. ``status_of`` in UTC and in Europe/Berlin (full hover text, relative and exact times);
3. rendering the standalone HTML page and the text table for all of them.

The classifier's cost is reported as a ratio to the baseline, so the figure travels between
machines better than microseconds do.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone

from incsync.state import ErrorInfo, Phase, SourceState
from incsync.status import SourceStatus, status_of
from incsync.views import render_html_page, render_text_table

UTC = timezone.utc
NOW = datetime(2026, 11, 13, 9, 41, 7, tzinfo=UTC)
SOURCES = 10_000
ROUNDS = 7
_ERRORS = (
    ErrorInfo("TransientSourceError", "connection reset by peer", NOW - timedelta(minutes=7)),
    ErrorInfo("RateLimitedError", "429 too many requests", NOW - timedelta(minutes=3)),
    ErrorInfo("AuthError", "401: token expired", NOW - timedelta(minutes=9), retryable=False),
)


def make_states(count: int, seed: int = 20261113) -> list[SourceState]:
    """Return ``count`` states in the mix a large host might have: mostly healthy, some not."""
    rng = random.Random(seed)
    states = []
    for index in range(count):
        roll = rng.random()
        phase = Phase.ACTIVE
        failures = 0
        error = None
        last_sync: datetime | None = NOW - timedelta(seconds=rng.uniform(0, 3 * 3600))
        if roll < 0.03:
            phase, last_sync = Phase.NEW, None
        elif roll < 0.05:
            phase = Phase.RESETTING
        elif roll < 0.07:
            phase = Phase.CANCELLED
        elif roll < 0.10:
            phase, failures, error = Phase.STOPPED, 5, rng.choice(_ERRORS)
        elif roll < 0.15:
            failures, error = rng.randint(1, 4), rng.choice(_ERRORS[:2])
        elif roll < 0.18:
            last_sync = NOW - timedelta(hours=rng.uniform(3.1, 72))
        change_age = timedelta(days=rng.choice((0.1, 2, 6, 12, 45, 400)))
        states.append(
            SourceState(
                key=f"tenant-{index:05d}/source",
                phase=phase,
                last_change=None if rng.random() < 0.02 else NOW - change_age,
                last_sync=last_sync,
                consecutive_failures=failures,
                last_error=error,
                last_cycle_rejected=rng.choice((0,) * 9 + (3,)),
            )
        )
    return states


def baseline(states: Sequence[SourceState]) -> list[tuple[str, str, str]]:
    """The least any classifier does: compare against the thresholds and format two times."""
    recent_sync = timedelta(hours=3)
    recent_change = timedelta(days=7)
    out = []
    for state in states:
        last_sync, last_change = state.last_sync, state.last_change
        if state.phase is Phase.CANCELLED or state.phase is Phase.RESETTING:
            color = "grey"
        elif state.phase is Phase.STOPPED or state.consecutive_failures >= 5:
            color = "red"
        elif last_sync is None:
            color = "grey"
        elif NOW - last_sync > recent_sync:
            color = "red"
        elif last_change is not None and NOW - last_change <= recent_change:
            color = "green"
        else:
            color = "orange"
        sync_text = (
            "never"
            if last_sync is None
            else f"{(NOW - last_sync) // timedelta(minutes=1)} minutes ago "
            f"({last_sync:%Y-%m-%d %H:%M:%S} UTC)"
        )
        change_text = (
            "never"
            if last_change is None
            else f"{(NOW - last_change).days} days ago ({last_change:%Y-%m-%d %H:%M:%S} UTC)"
        )
        out.append((color, sync_text, change_text))
    return out


def _best(function: Callable[[], object], rounds: int) -> float:
    """Return the fastest of ``rounds`` runs, in seconds (collector run before, off during)."""
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            function()
            best = min(best, time.perf_counter() - start)
        finally:
            gc.enable()
    return best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1,000 sources instead of 10,000")
    parser.add_argument("--sources", type=int, default=None, help="number of sources")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds; the best is kept")
    args = parser.parse_args(argv)
    count = args.sources or (SOURCES // 10 if args.quick else SOURCES)
    states = make_states(count)

    statuses: list[tuple[str, SourceStatus]] = []

    def classify_utc() -> None:
        statuses[:] = [(s.key, status_of(s, now=NOW)) for s in states]

    def classify_berlin() -> None:
        statuses[:] = [(s.key, status_of(s, now=NOW, zone="Europe/Berlin")) for s in states]

    classify_berlin()  # warm the caches (zone lookups, policy texts)
    timings = {
        "baseline (thresholds + f-strings)": _best(lambda: baseline(states), args.rounds),
        "status_of, Europe/Berlin": _best(classify_berlin, args.rounds),
        "status_of, UTC": _best(classify_utc, args.rounds),
        "render_html_page": _best(lambda: render_html_page(statuses), args.rounds),
        "render_text_table": _best(lambda: render_text_table(statuses), args.rounds),
    }
    colors: dict[str, int] = {}
    for _, status in statuses:
        colors[status.color.value] = colors.get(status.color.value, 0) + 1
    page_bytes = len(render_html_page(statuses).encode())

    print(f"incsync status benchmark: {count:,} sources, best of {args.rounds} rounds")
    print(f"python {platform.python_version()} on {platform.machine()} ({platform.system()})")
    print(f"colours: {', '.join(f'{k} {v}' for k, v in sorted(colors.items()))}")
    print(f"HTML page: {page_bytes / 1e6:.1f} MB")
    base = timings["baseline (thresholds + f-strings)"]
    for name, seconds in timings.items():
        per_source = seconds / count * 1e6
        ratio = seconds / base
        print(f"  {name:<36} {seconds * 1e3:9.1f} ms  {per_source:7.2f} µs/source  {ratio:5.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
