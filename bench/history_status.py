"""Benchmark of the history summaries the status reads: one query for all sources, or one each.

Run ``python -m bench.history_status`` from the project root (``--quick`` for 1,000 sources).
It fills a SQLite store and a PostgreSQL store (the server the tests use,
``INCSYNC_TEST_POSTGRES``; a schema of its own, dropped at the end) with 10,000 sources of 24
cycle entries each, then times, best of several rounds, what ``incsync status`` needs from the
history: every source's summary of its latest ``SUMMARY_CYCLES`` cycles.

* per source: ``summarize(store.history(key, SUMMARY_CYCLES))`` for each key, what the status
  did before ``history_summaries``;
* batched: ``store.history_summaries(keys)``, one query for all of them.

Both must give the same summaries (checked). The ratio is per source over batched. Figures are
printed and written to ``bench/history-status-results.json``.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg

from bench.core import CONNINFO, load_average, machine
from bench.status import _best
from incsync import CycleEntry, Outcome, SQLiteStore, summarize
from incsync.history import SUMMARY_CYCLES, HistorySummary
from incsync.protocols import StateStore
from incsync.stores import _postgres_sql as sql
from incsync.stores import sqlite as sqlite_module
from incsync.stores._postgres_rows import cycle_row
from incsync.stores.postgres import PostgresStore

RESULTS = Path(__file__).resolve().parent / "history-status-results.json"
SOURCES = 10_000
ROUNDS = 5
START = datetime(2026, 11, 12, tzinfo=timezone.utc)
_OUTCOMES = (Outcome.COMPLETED,) * 22 + (Outcome.FAILED, Outcome.INTERRUPTED_STOP)


def entries(keys: Sequence[str], per_source: int) -> Iterator[CycleEntry]:
    """Yield ``per_source`` hourly entries of each key, mostly completed, a few not."""
    for number, key in enumerate(keys):
        for hour in range(per_source):
            started = START + timedelta(hours=hour, seconds=number % 3600)
            yield CycleEntry(
                source_key=key,
                generation=0,
                worker="bench",
                started=started,
                ended=started + timedelta(seconds=2),
                outcome=_OUTCOMES[(number + hour) % len(_OUTCOMES)],
                pages=1,
                fetched=10,
                applied=10,
            )


@contextmanager
def sqlite_store(keys: Sequence[str], per_source: int) -> Iterator[SQLiteStore]:
    """A SQLite store holding the entries, written in one transaction past the store's API."""
    with (
        tempfile.TemporaryDirectory() as directory,
        SQLiteStore(Path(directory) / "history.db") as store,
    ):
        connection = store._connection()
        rows = (sqlite_module._cycle_row(entry) for entry in entries(keys, per_source))
        with connection:
            connection.executemany(sqlite_module._SAVE_CYCLE, rows)
        connection.execute("ANALYZE")
        yield store


@contextmanager
def postgres_store(keys: Sequence[str], per_source: int) -> Iterator[PostgresStore]:
    """A PostgreSQL store in a schema of its own holding the entries, written with COPY."""
    schema = f"incsync_bench_{secrets.token_hex(4)}"
    try:
        with PostgresStore(CONNINFO, schema=schema, max_size=2) as store:
            store.migrate()
            with psycopg.connect(CONNINFO, autocommit=True) as connection:
                columns = ", ".join(sql.CYCLE_COLUMNS)
                copy = sql.render(f"COPY {{schema}}.cycles ({columns}) FROM STDIN", schema)
                with connection.cursor().copy(copy) as writing:
                    for entry in entries(keys, per_source):
                        writing.write_row(cycle_row(entry))
                connection.execute(sql.render("VACUUM ANALYZE {schema}.cycles", schema))
            yield store
    finally:
        with psycopg.connect(CONNINFO, autocommit=True) as connection:
            connection.execute(sql.render("DROP SCHEMA IF EXISTS {schema} CASCADE", schema))


def measure(store: StateStore, keys: Sequence[str], rounds: int) -> dict[str, float]:
    """Time both ways of reading the summaries of ``keys``; check they agree."""

    def per_source() -> dict[str, HistorySummary]:
        return {key: summarize(store.history(key, SUMMARY_CYCLES)) for key in keys}

    def batched() -> dict[str, HistorySummary]:
        return dict(store.history_summaries(keys))

    if per_source() != batched():
        raise RuntimeError("the batched summaries differ from the per-source ones")
    per_source_seconds = _best(per_source, rounds)
    batched_seconds = _best(batched, rounds)
    return {
        "per_source_ms": round(per_source_seconds * 1e3, 1),
        "batched_ms": round(batched_seconds * 1e3, 1),
        "ratio": round(per_source_seconds / batched_seconds, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1,000 sources instead of 10,000")
    parser.add_argument("--entries", type=int, default=SUMMARY_CYCLES, help="entries per source")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds; the best is kept")
    parser.add_argument("--no-write", action="store_true", help="do not write the results file")
    args = parser.parse_args(argv)
    count = SOURCES // 10 if args.quick else SOURCES
    keys = [f"tenant-{number:05d}/source" for number in range(count)]
    load_start = load_average()
    figures: dict[str, Any] = {}
    with sqlite_store(keys, args.entries) as sqlite:
        figures["sqlite"] = measure(sqlite, keys, args.rounds)
    with postgres_store(keys, args.entries) as postgres:
        figures["postgres"] = measure(postgres, keys, args.rounds)
    results = {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average": {"start": load_start, "end": load_average()},
        "sources": count,
        "entries_per_source": args.entries,
        "summary_cycles": SUMMARY_CYCLES,
        "rounds": args.rounds,
        **figures,
    }
    print(
        f"history summaries of {count:,} sources, {args.entries} entries each, "
        f"best of {args.rounds} rounds"
    )
    for name in ("sqlite", "postgres"):
        figure = figures[name]
        print(
            f"  {name:<9} per source {figure['per_source_ms']:9.1f} ms   "
            f"batched {figure['batched_ms']:8.1f} ms   ratio {figure['ratio']:5.1f}x"
        )
    print(f"load average {results['load_average']}")
    if not args.no_write:
        RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
