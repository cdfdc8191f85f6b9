"""Benchmark of PostgresStore's page commits against a bare psycopg loop doing the same writes.

Run ``python -m bench.postgres`` from the project root (under a minute on an idle two-core
machine, about two under heavy load; ``--records`` changes the size). It needs the PostgreSQL
server the tests use (``INCSYNC_TEST_POSTGRES``, by default database ``test`` on 127.0.0.1:5432
as user postgres) and works in a schema of its own, dropped at the end. Figures are printed and
written to ``bench/postgres-results.json``.

Both sides write the same prebuilt pages of 1,000 records, one database transaction per page:

* the store: ``PostgresStore.commit_page`` under a lease (it locks the source's row, checks the
  lease and generation, sets aside what PostgreSQL cannot hold, upserts the rows in id order and
  writes the state with a fenced ``UPDATE``);
* the bare loop: on one plain psycopg connection, encode each payload and its content digest
  as the store does (``incsync.content.json_form``), ``executemany`` the store's own upsert
  statement into the store's own table, and update the source's cursor and lease expiry in its
  state row.

Each side writes under a source key of its own into the same tables. After an untimed warm-up,
they take turns in blocks of 10 pages (bare then store, store then bare, ...), so both see the
same table sizes and, on a busy machine, the same background load; the ratio is the store's rate
over the bare loop's. The client CPU per record of each side is reported too.
"""

from __future__ import annotations

import argparse
import itertools
import json
import secrets
import statistics
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg

from bench.core import CONNINFO, load_average, machine, rate
from incsync import Checkpoint, Cursor, Record
from incsync.connectors import generate_invoices
from incsync.content import json_form
from incsync.records import record_from_raw
from incsync.stores import _postgres_sql as sql
from incsync.stores.postgres import PostgresStore

RESULTS = Path(__file__).resolve().parent / "postgres-results.json"
STORE_KEY = "bench/store"
BARE_KEY = "bench/bare"
PAGE_SIZE = 1_000
RECORDS = 200_000  # per side
BLOCK_PAGES = 10  # pages each side writes before the other takes its turn
TARGET_RATIO = 0.8
END = datetime(2025, 1, 1, tzinfo=timezone.utc)
NOW = datetime(2025, 1, 2, tzinfo=timezone.utc)
TTL = timedelta(minutes=10)

_BARE_SOURCE = (
    "INSERT INTO {schema}.sources (source_key, lease_holder, lease_expires_at, lease_token) "
    "VALUES (%s, 'bench', %s, 1)"
)
_BARE_STATE = (
    "UPDATE {schema}.sources SET cursor_updated_at = %s, cursor_record_id = %s, "
    "last_change = %s, lease_expires_at = %s WHERE source_key = %s"
)


def build_pages(records: int) -> list[list[Record]]:
    """Return ``records`` generated invoices as records, in pages of ``PAGE_SIZE``."""
    invoices = (record_from_raw(raw) for raw in generate_invoices(records, end=END))
    pages = []
    while page := list(itertools.islice(invoices, PAGE_SIZE)):
        pages.append(page)
    return pages


class StoreWriter:
    """Commits pages through ``PostgresStore.commit_page`` under one lease."""

    def __init__(self, store: PostgresStore) -> None:
        lease = store.acquire_lease(STORE_KEY, "bench", NOW, TTL)
        if lease is None:
            raise RuntimeError("the benchmark's source is leased elsewhere")
        self._store, self._lease = store, lease

    def write(self, page: Sequence[Record]) -> int:
        """Commit ``page`` with its checkpoint; return how many rows were written."""
        last = page[-1]
        checkpoint = Checkpoint(cursor=Cursor.of(last), last_change=last.updated_at)
        result, _ = self._store.commit_page(STORE_KEY, page, self._lease, 0, checkpoint, NOW, TTL)
        return result.applied


class BareWriter:
    """Writes pages the least a store must, on one plain psycopg connection."""

    def __init__(self, schema: str) -> None:
        self._upsert = sql.render(sql.UPSERT_TRANSACTION, schema)
        self._update_state = sql.render(_BARE_STATE, schema)
        self._connection = psycopg.connect(CONNINFO)
        self._connection.execute("SET TimeZone = 'UTC'")
        self._connection.execute(sql.render(_BARE_SOURCE, schema), (BARE_KEY, NOW + TTL))
        self._connection.commit()

    def write(self, page: Sequence[Record]) -> int:
        """Upsert ``page`` and move the state row's cursor in one transaction; return rows."""
        encode, key = json_form, BARE_KEY
        rows = [(key, r.id, r.updated_at, r.deleted, *encode(r.payload), 0) for r in page]
        with self._connection.cursor() as cursor:
            cursor.executemany(self._upsert, rows)
            written = cursor.rowcount
            last = page[-1]
            cursor.execute(
                self._update_state, (last.updated_at, last.id, last.updated_at, NOW + TTL, key)
            )
        self._connection.commit()
        return written

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()


Writer = StoreWriter | BareWriter


def timed(writer: Writer, pages: Sequence[Sequence[Record]]) -> tuple[float, float, int]:
    """Write ``pages``; return wall seconds, this process's CPU seconds and rows written."""
    wall, cpu = time.perf_counter(), time.process_time()
    written = sum(writer.write(page) for page in pages)
    return time.perf_counter() - wall, time.process_time() - cpu, written


def server_info() -> dict[str, Any]:
    """Describe the PostgreSQL server and the settings that decide commit speed."""
    with psycopg.connect(CONNINFO) as connection:
        version = connection.execute("SHOW server_version").fetchone()
        settings = {
            name: connection.execute(f"SHOW {name}").fetchone()
            for name in ("synchronous_commit", "fsync", "shared_buffers", "wal_level")
        }
    return {
        "server_version": None if version is None else version[0],
        **{name: None if row is None else row[0] for name, row in settings.items()},
        "host": "loopback" if "127.0.0.1" in CONNINFO or "localhost" in CONNINFO else "remote",
    }


def run(records: int, block_pages: int) -> dict[str, Any]:
    """Write ``records`` through each side, in alternating blocks; return the figures."""
    schema = f"incsync_bench_{secrets.token_hex(4)}"
    load_start = load_average()
    pages = build_pages(records)
    count = sum(len(page) for page in pages)
    seconds = {"bare": [0.0, 0.0], "store": [0.0, 0.0]}  # wall, client CPU
    rows = {"bare": 0, "store": 0}
    block_ratios: list[float] = []  # bare wall / store wall of each block, robust to load bursts
    blocks = [pages[at : at + block_pages] for at in range(0, len(pages), block_pages)]
    try:
        with PostgresStore(CONNINFO, schema=schema, max_size=2) as store:
            store.migrate()
            bare, engine = BareWriter(schema), StoreWriter(store)
            try:
                # Warm caches, prepared statements and the pool before anything is timed: both
                # sides write the first block under keys of their own, which are then removed.
                for writer in (bare, engine):
                    timed(writer, blocks[0])
                with psycopg.connect(CONNINFO, autocommit=True) as connection:
                    connection.execute(sql.render("TRUNCATE {schema}.transactions", schema))
                    connection.execute(sql.render("VACUUM ANALYZE {schema}.transactions", schema))
                for number, block in enumerate(blocks):
                    # Each side goes first in every other block, so neither always follows the
                    # other's dirty pages or WAL flushes.
                    order = (("bare", bare), ("store", engine))
                    walls: dict[str, float] = {}
                    for name, writer in order if number % 2 == 0 else reversed(order):
                        wall, cpu, written = timed(writer, block)
                        walls[name] = wall
                        seconds[name][0] += wall
                        seconds[name][1] += cpu
                        rows[name] += written
                    block_ratios.append(walls["bare"] / walls["store"])
            finally:
                bare.close()
    finally:
        with psycopg.connect(CONNINFO, autocommit=True) as connection:
            connection.execute(sql.render("DROP SCHEMA IF EXISTS {schema} CASCADE", schema))
    for name, written in rows.items():
        if written != count:
            raise RuntimeError(f"{name} wrote {written} of {count} rows")
    bare_wall, bare_cpu = seconds["bare"]
    store_wall, store_cpu = seconds["store"]
    return {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {**machine(), "psycopg": psycopg.__version__, **server_info()},
        "load_average": {"start": load_start, "end": load_average()},
        "records_per_side": count,
        "page_size": PAGE_SIZE,
        "block_pages": block_pages,
        "order": "alternating blocks of pages: bare then store, store then bare, ...",
        "bare_seconds": round(bare_wall, 3),
        "store_seconds": round(store_wall, 3),
        "bare_records_per_second": round(rate(count, bare_wall)),
        "store_records_per_second": round(rate(count, store_wall)),
        "bare_client_cpu_us_per_record": round(bare_cpu / count * 1e6, 2),
        "store_client_cpu_us_per_record": round(store_cpu / count * 1e6, 2),
        "ratio": round(bare_wall / store_wall, 3),
        "ratio_median_of_blocks": round(statistics.median(block_ratios), 3),
        "target_ratio": TARGET_RATIO,
        "target_met": bare_wall / store_wall >= TARGET_RATIO,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark, print the figures and write them to ``bench/postgres-results.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=RECORDS, help="records per side")
    parser.add_argument("--block-pages", type=int, default=BLOCK_PAGES)
    parser.add_argument("--output", type=Path, default=RESULTS)
    arguments = parser.parse_args(argv)
    results = run(arguments.records, arguments.block_pages)
    arguments.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(
        f"{results['records_per_side']:,} records per side in pages of {PAGE_SIZE:,}, "
        f"alternating blocks of {results['block_pages']} pages\n"
        f"  bare psycopg loop: {results['bare_records_per_second']:,} records/s "
        f"({results['bare_client_cpu_us_per_record']} us client CPU per record)\n"
        f"  PostgresStore:     {results['store_records_per_second']:,} records/s "
        f"({results['store_client_cpu_us_per_record']} us client CPU per record)\n"
        f"  ratio store/bare:  {results['ratio']} (median of blocks "
        f"{results['ratio_median_of_blocks']}); target >= {TARGET_RATIO}: "
        f"{'met' if results['target_met'] else 'NOT met'}\n"
        f"  load average: {results['load_average']}\n"
        f"  written to {arguments.output}"
    )


if __name__ == "__main__":
    main()
