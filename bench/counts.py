"""Benchmark of the count check's cost: an incremental cycle with a due count against one without.

Run ``python -m bench.counts`` from the project root (well under a minute on an idle two-core
machine; ``--rows`` changes the size). It works in a temporary SQLite file; figures are printed
and written to ``bench/counts-results.json``.

A source of ``--rows`` records (100,000 by default) is synced whole into an ``SQLiteStore``. Then
the same store and source run incremental cycles, each after ``--changes`` records (10) changed at
the source, as an hourly cycle finds them: one engine never counts (``count_interval=None``), the
other counts at every cycle (a count always due). The two take turns (without then with, with
then without, ...) over ``--rounds`` cycles each, and the ratio is the median cycle with a count
over the median cycle without: 1.0 means the count costs nothing. An incremental cycle that finds
ten changes takes well under a millisecond, so the ratio is large; the milliseconds the count adds
are the figure to weigh, once per ``count_interval``.

The count has two sides, timed alone as well: the host's (``SQLiteStore.count_live``: one
``SELECT count(*) ... AND NOT deleted`` over the source's rows) and the source's. The source here
is in memory (``InMemoryConnector.count_live`` walks its records); a vendor's count is one HTTP
request instead, whose latency adds to a counted cycle at most once per ``count_interval`` (a day
by default), so the ratio measures the host's share and the engine's bookkeeping.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench.core import load_average, machine
from incsync import SQLiteStore, SyncEngine, SyncPolicy
from incsync.connectors import InMemoryConnector, InMemorySource
from incsync.connectors.memory import iso_timestamp
from incsync.testing import ManualClock

RESULTS = Path(__file__).resolve().parent / "counts-results.json"
KEY = "bench/counts"
ROWS = 100_000
CHANGES = 10
ROUNDS = 15
SOLO_REPEATS = 20
PAGE_SIZE = 1_000
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _source(rows: int) -> InMemorySource:
    source = InMemorySource()
    for number in range(rows):
        stamp = iso_timestamp(T0 + timedelta(seconds=number))
        source.put({"id": f"r{number:07d}", "updated_at": stamp, "amount": number % 997})
    return source


def _median_seconds(call: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run(rows: int, changes: int, rounds: int) -> dict[str, Any]:
    """Sync ``rows`` records, then time counted and uncounted incremental cycles in turns."""
    source = _source(rows)
    connector = InMemoryConnector(source, page_size=PAGE_SIZE)
    clock = ManualClock(T0 + timedelta(seconds=rows) + timedelta(hours=1))
    with (
        tempfile.TemporaryDirectory(prefix="incsync-bench-counts-") as folder,
        SQLiteStore(Path(folder) / "counts.db") as store,
    ):
        uncounted = SyncEngine(store, policy=SyncPolicy(count_interval=None), clock=clock)
        # Any interval shorter than the clock's step makes a count due at every cycle.
        counting = SyncEngine(
            store, policy=SyncPolicy(count_interval=timedelta(seconds=1)), clock=clock
        )
        started = time.perf_counter()
        first = uncounted.run_cycle(KEY, connector)
        initial_seconds = time.perf_counter() - started
        if first.applied != rows:
            raise SystemExit(f"the initial sync applied {first.applied}, expected {rows}")
        times: dict[str, list[float]] = {"without": [], "with": []}
        changed = 0
        for turn in range(rounds * 2):
            side = ("without", "with")[(turn + turn // 2) % 2]
            engine = counting if side == "with" else uncounted
            now = clock.advance(timedelta(hours=1))
            for _ in range(changes):
                source.update(f"r{changed % rows:07d}", now - timedelta(minutes=10), seen=turn)
                changed += 1
            started = time.perf_counter()
            result = engine.run_cycle(KEY, connector)
            times[side].append(time.perf_counter() - started)
            if result.applied != changes or (result.counted is None) != (side == "without"):
                raise SystemExit(f"cycle {turn} ({side} a count) did not do what it should")
            if result.counted is not None and result.counted.drift:
                raise SystemExit(f"cycle {turn} found a drift of {result.counted.drift}")
        host_seconds = _median_seconds(lambda: store.count_live(KEY), SOLO_REPEATS)
        source_seconds = _median_seconds(connector.count_live, SOLO_REPEATS)
    without, with_count = statistics.median(times["without"]), statistics.median(times["with"])
    return {
        "initial_sync_seconds": round(initial_seconds, 3),
        "cycle_without_count_seconds": [round(t, 5) for t in times["without"]],
        "cycle_with_count_seconds": [round(t, 5) for t in times["with"]],
        "cycle_without_count_median_seconds": round(without, 5),
        "cycle_with_count_median_seconds": round(with_count, 5),
        "ratio": round(with_count / without, 3),
        "count_added_milliseconds": round((with_count - without) * 1000, 2),
        "host_count_median_seconds": round(host_seconds, 5),
        "source_count_median_seconds": round(source_seconds, 5),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS, help="records of the source")
    parser.add_argument("--changes", type=int, default=CHANGES, help="records changed per cycle")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="cycles of each kind")
    parser.add_argument("--output", type=Path, default=RESULTS)
    arguments = parser.parse_args(argv)
    results: dict[str, Any] = {
        "machine": machine(),
        "load_average_before": load_average(),
        "rows": arguments.rows,
        "changes_per_cycle": arguments.changes,
        "rounds": arguments.rounds,
    }
    figures = run(arguments.rows, arguments.changes, arguments.rounds)
    results["sqlite"] = figures
    results["load_average_after"] = load_average()
    print(
        f"sqlite, {arguments.rows:,} transactions: cycle without a count "
        f"{figures['cycle_without_count_median_seconds'] * 1000:.1f} ms, with a due count "
        f"{figures['cycle_with_count_median_seconds'] * 1000:.1f} ms (ratio "
        f"{figures['ratio']:.2f}, {figures['count_added_milliseconds']:.1f} ms added); the host's "
        "count alone "
        f"{figures['host_count_median_seconds'] * 1000:.1f} ms, the in-memory source's "
        f"{figures['source_count_median_seconds'] * 1000:.1f} ms",
        flush=True,
    )
    arguments.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
