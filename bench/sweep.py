"""Benchmark of the sweep after a full re-read against a bare SQL ``UPDATE`` doing the same work.

Run ``python -m bench.sweep`` from the project root (a few minutes on an idle two-core machine;
``--rows`` changes the size). The SQLite side works in a temporary file; the PostgreSQL side needs
the server the tests use (``INCSYNC_TEST_POSTGRES``, by default database ``test`` on
127.0.0.1:5432 as user postgres) and works in a schema of its own, dropped at the end. Figures are
printed and written to ``bench/sweep-results.json``.

A source holds ``--rows`` transactions (1,000,000 by default) under generation 0. A full re-read
under generation 1 has seen all but ``--gone`` of them (99% by default), as a reset does. Then:

* the store: ``sweep()`` as the engine calls it (the fence, the ``UPDATE`` by generation with its
  reason and spared ids, one transaction);
* the bare statement: ``UPDATE transactions SET deleted = true WHERE source_key = ? AND
  generation < ?`` on a plain connection, one transaction.

Between two runs the swept rows are put back untimed, so each run finds the same table. The sides
take turns (bare then store, store then bare, ...) and the ratio is the bare statement's time over
the store's: 1.0 means the sweep costs no more than the bare ``UPDATE`` (target 0.8).
"""

from __future__ import annotations

import argparse
import json
import secrets
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg

from bench.core import CONNINFO, load_average, machine
from incsync import SQLiteStore
from incsync.stores.postgres import PostgresStore

RESULTS = Path(__file__).resolve().parent / "sweep-results.json"
KEY = "bench/sweep"
OTHER_KEY = "bench/other"  # another source of the same size in the same table, never swept
ROWS = 1_000_000
GONE_SHARE = 0.01
ROUNDS = 5
TARGET_RATIO = 0.8
TOKEN = 1

# Rows numbered 0 .. rows-1; those whose number is a multiple of `every` were not seen again.
_SQLITE_FILL = """
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)
INSERT INTO incsync_transactions
    (source_key, record_id, updated_at_us, deleted, payload, content_digest, generation)
SELECT ?, printf('r%08d', i), 1700000000000000 + i, 0, '{"amount":100.0,"n":' || i || '}',
       randomblob(32), CASE WHEN i % ? = 0 THEN 0 ELSE 1 END
FROM n
"""
_SQLITE_BARE = (
    "UPDATE incsync_transactions SET deleted = 1 WHERE source_key = ? AND generation < ? "
    "AND deleted = 0"
)
_SQLITE_RESTORE = (
    "UPDATE incsync_transactions SET deleted = 0, generation = 0, deleted_reason = NULL "
    "WHERE source_key = ? AND deleted = 1"
)
_PG_FILL = """
INSERT INTO {schema}.transactions
    (source_key, record_id, updated_at, deleted, payload, content_digest, generation)
SELECT %s, 'r' || lpad(i::text, 8, '0'), timestamptz '2024-01-01' + i * interval '1 second',
       false, jsonb_build_object('amount', 100.0, 'n', i), sha256(i::text::bytea),
       CASE WHEN i %% %s = 0 THEN 0 ELSE 1 END
FROM generate_series(0, %s - 1) AS i
"""
_PG_BARE = (
    "UPDATE {schema}.transactions SET deleted = true WHERE source_key = %s AND generation < %s "
    "AND NOT deleted"
)
_PG_RESTORE = (
    "UPDATE {schema}.transactions SET deleted = false, generation = 0, deleted_reason = NULL "
    "WHERE source_key = %s AND deleted"
)


def _turns(
    bare: Callable[[], int], store: Callable[[], int], restore: Callable[[], None], gone: int
) -> dict[str, Any]:
    """Time both sides in alternating order; check each swept exactly the rows not seen."""
    bare_times: list[float] = []
    store_times: list[float] = []
    for turn in range(ROUNDS * 2):
        side, times = ((bare, bare_times), (store, store_times))[(turn + turn // 2) % 2]
        restore()
        started = time.perf_counter()
        swept = side()
        times.append(time.perf_counter() - started)
        if swept != gone:
            raise SystemExit(f"a sweep changed {swept} rows, expected {gone}")
    bare_median, store_median = statistics.median(bare_times), statistics.median(store_times)
    return {
        "bare_seconds": [round(t, 4) for t in bare_times],
        "store_seconds": [round(t, 4) for t in store_times],
        "bare_median_seconds": round(bare_median, 4),
        "store_median_seconds": round(store_median, 4),
        "ratio": round(bare_median / store_median, 3),
    }


def sqlite_sweep(rows: int, every: int) -> dict[str, Any]:
    gone = len(range(0, rows, every))
    with tempfile.TemporaryDirectory(prefix="incsync-bench-sweep-") as folder:
        path = Path(folder) / "sweep.db"
        with SQLiteStore(path) as store:
            bare = sqlite3.connect(path, isolation_level=None)
            bare.execute("PRAGMA journal_mode=WAL")
            bare.execute("PRAGMA synchronous=NORMAL")
            for key in (KEY, OTHER_KEY):
                bare.execute(_SQLITE_FILL, (rows, key, every))

            def bare_update() -> int:
                bare.execute("BEGIN IMMEDIATE")
                changed = bare.execute(_SQLITE_BARE, (KEY, 1)).rowcount
                bare.execute("COMMIT")
                return changed

            def restore() -> None:
                bare.execute(_SQLITE_RESTORE, (KEY,))

            result = _turns(bare_update, lambda: store.sweep(KEY, 1, TOKEN, ()), restore, gone=gone)
            bare.close()
    return result


def postgres_sweep(rows: int, every: int) -> dict[str, Any]:
    gone = len(range(0, rows, every))
    schema = f"incsync_bench_sweep_{secrets.token_hex(4)}"
    store = PostgresStore(CONNINFO, schema=schema)
    try:
        store.migrate()
        with psycopg.connect(CONNINFO, autocommit=True) as bare:
            for key in (KEY, OTHER_KEY):
                bare.execute(_PG_FILL.format(schema=schema).encode(), (key, every, rows))
            bare.execute(f"VACUUM ANALYZE {schema}.transactions".encode())

            def bare_update() -> int:
                with bare.transaction():
                    cursor = bare.execute(_PG_BARE.format(schema=schema).encode(), (KEY, 1))
                    return cursor.rowcount

            def restore() -> None:
                bare.execute(_PG_RESTORE.format(schema=schema).encode(), (KEY,))

            return _turns(bare_update, lambda: store.sweep(KEY, 1, TOKEN, ()), restore, gone=gone)
    finally:
        store.close()
        with psycopg.connect(CONNINFO, autocommit=True) as cleanup:
            cleanup.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE".encode())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS, help="transactions of the source")
    parser.add_argument(
        "--gone", type=float, default=GONE_SHARE, help="share of them the re-read did not see"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    arguments = parser.parse_args(argv)
    every = max(1, round(1 / arguments.gone))
    results: dict[str, Any] = {
        "machine": machine(),
        "load_average_before": load_average(),
        "rows": arguments.rows,
        "swept": len(range(0, arguments.rows, every)),
        "target_ratio": TARGET_RATIO,
    }
    for name, run in (("sqlite", sqlite_sweep), ("postgres", postgres_sweep)):
        figures = run(arguments.rows, every)
        results[name] = figures
        print(
            f"{name}: sweep {figures['store_median_seconds']:.3f}s, bare UPDATE "
            f"{figures['bare_median_seconds']:.3f}s, ratio {figures['ratio']:.2f} "
            f"(target >= {TARGET_RATIO})",
            flush=True,
        )
    results["load_average_after"] = load_average()
    arguments.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
