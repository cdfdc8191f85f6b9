"""Benchmark of the index of live ids in numeric order: what it costs a write, what it saves a list.

Run ``python -m bench.reconcile_ids`` from the project root (a few minutes on an idle two-core
machine; ``--rows`` changes the size). The SQLite side works in temporary files; the PostgreSQL
side needs the server the tests use (``INCSYNC_TEST_POSTGRES``, by default database ``test`` on
127.0.0.1:5432 as user postgres) and works in schemas of its own, dropped at the end. Figures are
printed and written to ``bench/reconcile-ids-results.json``.

Two figures per store, each a ratio to a baseline run in the same process:

* **write**: ``apply()`` of ``--rows`` new transactions with whole-number ids, in pages of 1,000
  as the engine writes them, into a store whose numeric index was dropped (the baseline) and
  into one that has it (what the store is). The ratio is the baseline's time over the store's:
  1.0 means the index costs a write nothing.
* **list**: every live id of the source listed with ``list_live_ids`` in pages of 1,000, in
  numeric order (along the index) against code point order (along the primary key, the
  baseline). The ratio is the numeric listing's time over the code point one's: near 1.0 means
  both page along an index; a listing that sorted the source's ids on every page would grow with
  the square of the rows.

The sides take turns (baseline then store, store then baseline, ...) and each figure is a median.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg

from bench.core import CONNINFO, load_average, machine
from incsync import Record, SQLiteStore
from incsync.reconcile import IdOrder
from incsync.stores.postgres import PostgresStore

RESULTS = Path(__file__).resolve().parent / "reconcile-ids-results.json"
KEY = "bench/reconcile"
ROWS = 200_000
PAGE = 1_000
ROUNDS = 3
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)

Store = SQLiteStore | PostgresStore


def _pages(rows: int) -> list[list[Record]]:
    records = [Record(str(n), T0, {"amount": 100.0, "n": n}) for n in range(1, rows + 1)]
    return [records[start : start + PAGE] for start in range(0, rows, PAGE)]


def _write(store: Store, pages: list[list[Record]]) -> float:
    started = time.perf_counter()
    for page in pages:
        store.apply(KEY, page, 0, 1)
    return time.perf_counter() - started


def _list(store: Store, order: IdOrder, rows: int) -> float:
    started = time.perf_counter()
    listed, after = 0, None
    while page := store.list_live_ids(KEY, after, PAGE, order):
        listed += len(page)
        after = page[-1]
    if listed != rows:
        raise SystemExit(f"listed {listed} ids in {order.value} order, expected {rows}")
    return time.perf_counter() - started


def _medians(baseline: Callable[[], float], measured: Callable[[], float]) -> tuple[float, float]:
    """Time both sides in alternating order; return the median of each."""
    times: tuple[list[float], list[float]] = ([], [])
    for turn in range(ROUNDS * 2):
        side = (turn + turn // 2) % 2
        times[side].append((baseline, measured)[side]())
    return statistics.median(times[0]), statistics.median(times[1])


@contextmanager
def _sqlite(indexed: bool) -> Iterator[SQLiteStore]:
    with (
        tempfile.TemporaryDirectory(prefix="incsync-bench-ids-") as folder,
        SQLiteStore(Path(folder) / "ids.db") as store,
    ):
        if not indexed:
            store._connection().execute("DROP INDEX incsync_live_ids_by_number")
        yield store


@contextmanager
def _postgres(indexed: bool) -> Iterator[PostgresStore]:
    schema = f"incsync_bench_ids_{secrets.token_hex(4)}"
    store = PostgresStore(CONNINFO, schema=schema)
    try:
        store.migrate()
        if not indexed:
            with psycopg.connect(CONNINFO, autocommit=True) as bare:
                bare.execute(f"DROP INDEX {schema}.live_ids_by_number".encode())
        yield store
    finally:
        store.close()
        with psycopg.connect(CONNINFO, autocommit=True) as cleanup:
            cleanup.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE".encode())


def _figures(opened: Callable[[bool], Any], rows: int) -> dict[str, Any]:
    pages = _pages(rows)

    def write(indexed: bool) -> float:
        with opened(indexed) as store:
            return _write(store, pages)

    bare_write, indexed_write = _medians(lambda: write(False), lambda: write(True))
    with opened(True) as store:
        _write(store, pages)
        by_point, by_number = _medians(
            lambda: _list(store, IdOrder.CODE_POINT, rows),
            lambda: _list(store, IdOrder.NUMERIC, rows),
        )
    return {
        "write_without_index_seconds": round(bare_write, 3),
        "write_with_index_seconds": round(indexed_write, 3),
        "write_ratio": round(bare_write / indexed_write, 3),
        "list_code_point_seconds": round(by_point, 3),
        "list_numeric_seconds": round(by_number, 3),
        "list_ratio": round(by_number / by_point, 3),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS, help="transactions of the source")
    parser.add_argument("--output", type=Path, default=RESULTS)
    arguments = parser.parse_args(argv)
    results: dict[str, Any] = {
        "machine": machine(),
        "load_average_before": load_average(),
        "rows": arguments.rows,
    }
    for name, opened in (("sqlite", _sqlite), ("postgres", _postgres)):
        figures = _figures(opened, arguments.rows)
        results[name] = figures
        print(
            f"{name}: write with the index {figures['write_with_index_seconds']:.2f}s, without "
            f"{figures['write_without_index_seconds']:.2f}s (ratio {figures['write_ratio']:.2f}); "
            f"list in numeric order {figures['list_numeric_seconds']:.2f}s, in code point order "
            f"{figures['list_code_point_seconds']:.2f}s (ratio {figures['list_ratio']:.2f})",
            flush=True,
        )
    results["load_average_after"] = load_average()
    arguments.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
