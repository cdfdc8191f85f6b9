"""Benchmark of mapped transactions: what mapping costs a full sync, and how fast a re-map goes.

Run ``python -m bench.mapping`` (``make bench``) from the project root; ``--quick`` scales the
sizes down 10x. Figures are printed and written to ``bench/mapping-results.json``
(``bench/mapping-results-quick.json`` for ``--quick``); docs/performance.md explains them.

1. Full sync, mapping on against off: ``SyncEngine(SQLiteStore(...)).run_cycle`` over QuickBooks
   invoices (two sales lines and a subtotal line each, as QuickBooks writes them) from an
   in-process source, into a new SQLite file, with the store given
   ``mappings={key: preset("quickbooks", "Invoice")}`` or nothing. The two take turns; the
   figure is mapping-on time over mapping-off time (target at most 1.3). The source answers at
   once, so the vendor is not the bottleneck: this is the strictest view. The same pair is also
   timed with a source that takes 150 ms per page of 1,000 records, what a user waits for.
2. Re-map: ``engine.remap(key)`` after the mapping changed, over every stored invoice, against a
   bare loop that reads the same stored payloads, maps them with the same mapping and writes the
   same rows with the same statement, one transaction per page. The figure is the bare loop's
   time over the re-map's (1.0: the re-map costs nothing beyond the work itself).
3. Peak RSS of a mapped full sync at two sizes, each in its own interpreter, pages made lazily.

``--store postgres`` times only the first (no latency) against ``PostgresStore`` instead, at
``--records`` (100,000 by default: a few minutes), each run in a new schema of its own on the
server the tests use (``INCSYNC_TEST_POSTGRES``), dropped after it; the figures go to
``bench/mapping-results-postgres.json``.

``--latency-only`` times only the pair with 150 ms a page, at ``--records`` (1,000,000 here by
default: the issue's size, about 25 minutes for three rounds), into
``bench/mapping-results-latency.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import itertools
import json
import os
import pstats
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from bench.core import (
    BUSY_LOAD,
    CONNINFO,
    ROOT,
    TARGET_RSS_DELTA_MB,
    Timing,
    load_average,
    machine,
    memory_figures,
    peak_hwm_kb,
    remove_db,
)
from incsync import BaseConnector, Outcome, SQLiteStore, SyncEngine, SyncPolicy, Window
from incsync.connectors import RawPage
from incsync.mapping import MappedRow, TransactionMapping, preset
from incsync.mapping._columns import mapped_values
from incsync.stores._sqlite_mapped import _WRITE
from incsync.timestamps import from_micros, to_micros

if TYPE_CHECKING:
    # Imported where used: psycopg and its pool add about 14 MB to a process's peak RSS, which
    # the memory figures of the SQLite runs must not carry.
    from incsync.stores.postgres import PostgresStore

RESULTS = Path(__file__).resolve().parent / "mapping-results.json"
QUICK_RESULTS = Path(__file__).resolve().parent / "mapping-results-quick.json"
POSTGRES_RESULTS = Path(__file__).resolve().parent / "mapping-results-postgres.json"
LATENCY_RESULTS = Path(__file__).resolve().parent / "mapping-results-latency.json"

SOURCE_KEY = "bench/qbo-invoices"
PAGE_SIZE = 1_000
FULL_RECORDS = 1_000_000
LATENCY_RECORDS = 100_000
POSTGRES_RECORDS = 100_000
LATENCY_SECONDS = 0.150
SYNC_ROUNDS = 3
REMAP_ROUNDS = 2
REMAP_PAGE = 500  # the re-map's own default page (incsync.mapped.DEFAULT_MAPPED_PAGE)
RSS_SMALL = 100_000
TARGET_SYNC_RATIO = 1.3
POLICY = SyncPolicy()
START = datetime(2020, 1, 1, tzinfo=timezone.utc)  # long before "now": no safety lag caps a read
UPDATE_EVERY = timedelta(seconds=95)
DATED_BEFORE = 60  # days
TEMPLATES = 997  # distinct invoice bodies; a prime, so customers, items and amounts mix
MAPPING = preset("quickbooks", "Invoice")

Invoice = dict[str, Any]

_CUSTOMERS = ("Amy's Bird Sanctuary", "Bill's Windsurf Shop", "Cool Cars", "Dylan Sollfrank")
_ITEMS = (("1", "Services"), ("5", "Rock Fountain"), ("11", "Pump"), ("7", "Installation"))


# -- the source ------------------------------------------------------------------------------


def _template(number: int) -> Invoice:
    """Return an invoice body as QuickBooks' query answer writes one (the reference sample)."""
    customer = number % len(_CUSTOMERS)
    lines: list[dict[str, Any]] = []
    for line_number in (1, 2):
        item_id, item_name = _ITEMS[(number + line_number) % len(_ITEMS)]
        quantity = 1 + (number * line_number) % 9
        unit_price = 25 + (number * 7 * line_number) % 400 + 0.5 * (number % 2)
        lines.append(
            {
                "Id": str(line_number),
                "LineNum": line_number,
                "Description": f"{item_name}, as agreed",
                "Amount": round(quantity * unit_price, 2),
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {
                    "ItemRef": {"value": item_id, "name": item_name},
                    "UnitPrice": unit_price,
                    "Qty": quantity,
                    "TaxCodeRef": {"value": "NON"},
                },
            }
        )
    total = round(sum(line["Amount"] for line in lines), 2)
    lines.append({"Amount": total, "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}})
    return {
        "domain": "QBO",
        "sparse": False,
        "SyncToken": "0",
        "DocNumber": str(1000 + number),
        "CurrencyRef": {"value": "USD", "name": "United States Dollar"},
        "CustomerRef": {"value": str(customer + 1), "name": _CUSTOMERS[customer]},
        "Line": lines,
        "TxnTaxDetail": {"TotalTax": 0},
        "TotalAmt": total,
        "Balance": 0 if number % 3 == 0 else total,
        "Deposit": 0,
        "PrintStatus": "NeedToPrint",
        "EmailStatus": "NotSet",
        "ApplyTaxAfterDiscount": False,
        "LinkedTxn": [],
        "CustomField": [{"DefinitionId": "1", "Type": "StringType", "Name": "Crew #"}],
        "BillAddr": {
            "Id": "2",
            "Line1": "4581 Finch St.",
            "City": "Bayshore",
            "CountrySubDivisionCode": "CA",
            "PostalCode": "94326",
        },
    }


_BODIES = [_template(number) for number in range(TEMPLATES)]


def invoice(number: int) -> Invoice:
    """Return the ``number``-th invoice: its own id, dates and times over one of the shared bodies.

    Invoices were last updated one every ``UPDATE_EVERY`` (a million span about three years),
    each dated up to ``DATED_BEFORE`` days before its last update (edited, sent or paid later),
    so a full read in update order meets business dates roughly in order, as a real one does.
    The bodies' nested objects are shared between invoices (a shallow copy each), so a million
    invoices fit in memory; the store encodes each invoice whole all the same.
    """
    updated = START + UPDATE_EVERY * number
    stamp = updated.strftime("%Y-%m-%dT%H:%M:%S-00:00")
    issued = updated.date() - timedelta(days=number * 7919 % (DATED_BEFORE + 1))
    return {
        **_BODIES[number % TEMPLATES],
        "Id": str(number),
        "TxnDate": issued.isoformat(),
        "DueDate": (issued + timedelta(days=30)).isoformat(),
        "MetaData": {"CreateTime": stamp, "LastUpdatedTime": stamp},
    }


def _always(pages: list[list[Invoice]]) -> Callable[[], Iterable[RawPage]]:
    """Return a function that hands over ``pages``, the same pages each time it is called."""
    return lambda: pages


def invoice_pages(count: int) -> Iterator[list[Invoice]]:
    """Yield ``count`` invoices in pages, oldest first, making each page only when asked."""
    for start in range(1, count + 1, PAGE_SIZE):
        yield [invoice(number) for number in range(start, min(start + PAGE_SIZE, count + 1))]


class QuickBooksPages(BaseConnector):
    """An in-process QuickBooks source: yields the given pages, waiting ``latency`` before each."""

    ordered = True
    vendor = "quickbooks"
    id_field = "Id"
    updated_at_field = "MetaData.LastUpdatedTime"

    def __init__(self, pages: Callable[[], Iterable[RawPage]], latency: float = 0.0) -> None:
        self._pages = pages
        self._latency = latency

    def fetch(self, window: Window) -> Iterator[RawPage]:
        for page in self._pages():
            if self._latency:
                time.sleep(self._latency)
            yield page


Store: TypeAlias = "SQLiteStore | PostgresStore"
OpenStore = Callable[[bool], tuple[Store, Callable[[], None]]]
"""Opens a new, empty store, mapping or not: the store, and what removes it once closed."""


def store_for(path: Path, mapped: bool) -> SQLiteStore:
    return SQLiteStore(path, mappings={SOURCE_KEY: MAPPING} if mapped else None)


def sqlite_at(path: Path) -> OpenStore:
    """Return what opens a new SQLite store at ``path`` (a file of an earlier run removed)."""

    def open_store(mapped: bool) -> tuple[Store, Callable[[], None]]:
        remove_db(path)
        return store_for(path, mapped), lambda: remove_db(path)

    return open_store


def postgres_schemas() -> OpenStore:
    """Return what opens a ``PostgresStore`` in a new schema of its own, dropped after the run."""
    from incsync.stores.postgres import PostgresStore

    def open_store(mapped: bool) -> tuple[Store, Callable[[], None]]:
        schema = f"incsync_bench_mapping_{os.getpid()}_{next(_schemas)}"
        store = PostgresStore(
            CONNINFO, schema=schema, mappings={SOURCE_KEY: MAPPING} if mapped else None
        )
        store.migrate()  # the tables are made before the clock starts

        def drop() -> None:
            with psycopg_connection() as connection:
                connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

        return store, drop

    return open_store


_schemas = itertools.count()


def full_sync(
    open_store: OpenStore,
    connector: BaseConnector,
    mapped: bool,
    records: int,
    keep: bool = False,
) -> Timing:
    """Sync every record of ``connector`` into a new store; time ``run_cycle``.

    The store is removed afterwards unless ``keep`` (the re-map reads the synced file).
    """
    store, remove = open_store(mapped)
    try:
        engine = SyncEngine(store, policy=POLICY)
        os.sync()  # no writeback of an earlier run's files during this one
        wall, cpu = time.perf_counter(), time.process_time()
        result = engine.run_cycle(SOURCE_KEY, connector)
        timing = Timing(time.perf_counter() - wall, time.process_time() - cpu)
    finally:
        store.close()
        if not keep:
            remove()
    if result.outcome is not Outcome.COMPLETED or result.applied != records:
        raise RuntimeError(f"full sync did not complete: {result}")
    return timing


# -- 1. full sync, mapping on against off ----------------------------------------------------


def measure_sync(
    pages: Callable[[], Iterable[RawPage]],
    records: int,
    rounds: int,
    latency: float,
    open_store: OpenStore,
) -> dict[str, Any]:
    """Time full syncs with the mapping off and on, in turns; return the figures."""
    runs: dict[str, list[Timing]] = {"off": [], "on": []}
    for round_number in range(1, rounds + 1):
        # Turns alternate which side goes first, so a drift of the machine falls on both.
        order = ("off", "on") if round_number % 2 else ("on", "off")
        for side in order:
            connector = QuickBooksPages(pages, latency)
            runs[side].append(full_sync(open_store, connector, side == "on", records))
        off, on = runs["off"][-1], runs["on"][-1]
        print(
            f"  round {round_number}: off {off.wall:6.1f} s ({off.cpu:5.1f} s CPU), "
            f"on {on.wall:6.1f} s ({on.cpu:5.1f} s CPU): {on.wall / off.wall:.3f}",
            flush=True,
        )
    per_round = [on.wall / off.wall for off, on in zip(runs["off"], runs["on"], strict=True)]
    per_round_cpu = [on.cpu / off.cpu for off, on in zip(runs["off"], runs["on"], strict=True)]
    off_wall = statistics.median(t.wall for t in runs["off"])
    on_wall = statistics.median(t.wall for t in runs["on"])
    return {
        "records": records,
        "page_size": PAGE_SIZE,
        "latency_per_page_s": latency,
        "rounds": rounds,
        "off_wall_seconds": [round(t.wall, 2) for t in runs["off"]],
        "on_wall_seconds": [round(t.wall, 2) for t in runs["on"]],
        "off_cpu_seconds": [round(t.cpu, 2) for t in runs["off"]],
        "on_cpu_seconds": [round(t.cpu, 2) for t in runs["on"]],
        "ratio": round(on_wall / off_wall, 3),
        "ratio_per_round": [round(ratio, 3) for ratio in per_round],
        "ratio_range": [round(min(per_round), 3), round(max(per_round), 3)],
        "ratio_cpu_per_round": [round(ratio, 3) for ratio in per_round_cpu],
        "ratio_cpu": round(statistics.median(per_round_cpu), 3),
        "off_records_per_s": round(records / off_wall),
        "on_records_per_s": round(records / on_wall),
        "target_ratio": TARGET_SYNC_RATIO,
        "met": on_wall / off_wall <= TARGET_SYNC_RATIO,
    }


# -- 2. re-map against a bare loop -------------------------------------------------------------

_READ_PAYLOADS = (
    "SELECT record_id, updated_at_us, payload FROM incsync_transactions "
    "WHERE source_key = ? AND record_id > ? ORDER BY record_id LIMIT ?"
)


def bare_remap(path: Path, mapping: TransactionMapping, page_size: int) -> int:
    """Map every stored payload with ``mapping`` and write its row: the least a re-map must do.

    Pages along the primary key as the re-map does, reads and decodes the stored payloads, maps
    them with the same mapping, and writes the same rows with the store's own statement, one
    transaction per page. Nothing is checked: no version, no checkpoint, no tombstone.
    """
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    written, after = 0, ""
    while True:
        rows = connection.execute(_READ_PAYLOADS, (SOURCE_KEY, after, page_size)).fetchall()
        if not rows:
            break
        values = []
        for record_id, updated_at_us, payload in rows:
            transaction = mapping.map(
                json.loads(payload), source_key=SOURCE_KEY, record_id=record_id
            )
            assert transaction is not None  # every benchmark invoice maps
            row = MappedRow(transaction, from_micros(updated_at_us), mapping.name, mapping.version)
            values.append(
                mapped_values(SOURCE_KEY, row, day=date.isoformat, money=str, stamp=to_micros)
            )
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(_WRITE, values)
        connection.execute("COMMIT")
        written += len(values)
        after = rows[-1][0]
    connection.close()
    return written


def store_remap(path: Path, mapping: TransactionMapping, page_size: int) -> int:
    """Re-map the stored source with ``mapping`` through ``engine.remap``; return rows written."""
    store = SQLiteStore(path, mappings={SOURCE_KEY: mapping})
    result = SyncEngine(store, policy=POLICY).remap(SOURCE_KEY, page_size=page_size)
    store.close()
    return result.written


def measure_remap(path: Path, records: int, rounds: int) -> dict[str, Any]:
    """Time re-maps of the synced store against the bare loop, in turns; return the figures.

    Every run maps with a mapping of its own (another name, so another version): each re-map
    finds every row at an older version and recomputes them all, as after a mapping change.
    """
    runs: dict[str, list[Timing]] = {"bare": [], "remap": []}
    versions = (MAPPING.with_fields(name=f"quickbooks/Invoice-{run}") for run in itertools.count())
    for round_number in range(1, rounds + 1):
        order = ("bare", "remap") if round_number % 2 else ("remap", "bare")
        for side in order:
            work = bare_remap if side == "bare" else store_remap
            os.sync()
            wall, cpu = time.perf_counter(), time.process_time()
            written = work(path, next(versions), REMAP_PAGE)
            runs[side].append(Timing(time.perf_counter() - wall, time.process_time() - cpu))
            if written != records:
                raise RuntimeError(f"{side} wrote {written} of {records} rows")
        bare, remap = runs["bare"][-1], runs["remap"][-1]
        print(
            f"  round {round_number}: bare {bare.wall:6.1f} s, remap {remap.wall:6.1f} s: "
            f"{bare.wall / remap.wall:.3f}",
            flush=True,
        )
    per_round = [b.wall / r.wall for b, r in zip(runs["bare"], runs["remap"], strict=True)]
    bare_wall = statistics.median(t.wall for t in runs["bare"])
    remap_wall = statistics.median(t.wall for t in runs["remap"])
    return {
        "records": records,
        "page_size": REMAP_PAGE,
        "rounds": rounds,
        "bare_wall_seconds": [round(t.wall, 2) for t in runs["bare"]],
        "remap_wall_seconds": [round(t.wall, 2) for t in runs["remap"]],
        "bare_cpu_seconds": [round(t.cpu, 2) for t in runs["bare"]],
        "remap_cpu_seconds": [round(t.cpu, 2) for t in runs["remap"]],
        "remap_records_per_s": round(records / remap_wall),
        "ratio_bare_to_remap": round(bare_wall / remap_wall, 3),
        "ratio_per_round": [round(ratio, 3) for ratio in per_round],
        "ratio_range": [round(min(per_round), 3), round(max(per_round), 3)],
    }


# -- 3. peak memory ----------------------------------------------------------------------------


def rss_run(records: int) -> None:
    """Sync ``records`` invoices made page by page, mapped; print the peak RSS as JSON (child)."""
    with tempfile.TemporaryDirectory(prefix="incsync-bench-mapping-rss-") as workdir:
        timing = full_sync(
            sqlite_at(Path(workdir) / "rss.db"),
            QuickBooksPages(lambda: invoice_pages(records)),
            True,
            records,
        )
    figures = {
        "records": records,
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,  # KiB on Linux
        "vmhwm_kb": peak_hwm_kb(),
        "seconds": round(timing.wall, 2),
    }
    print(json.dumps(figures), flush=True)


def measure_memory(sizes: Sequence[int]) -> dict[str, Any]:
    """Run :func:`rss_run` at each size in a fresh interpreter; return the peaks.

    Started before this process builds its pages: Linux carries a parent's peak RSS into a
    child's ``ru_maxrss``.
    """
    runs = []
    for records in sizes:
        completed = subprocess.run(
            [sys.executable, "-m", "bench.mapping", "--rss-run", str(records)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(completed.stdout.strip().splitlines()[-1]))
        print(f"  {records:>9,} records: {runs[-1]['maxrss_kb'] / 1024:.1f} MB", flush=True)
    return memory_figures(runs, full=sizes[-1], small=sizes[0])


# -- profile -----------------------------------------------------------------------------------


def profile_sync(records: int, mapped: bool, workdir: Path) -> None:
    """Profile one full sync of ``records`` prebuilt invoices and print where the time goes."""
    pages = list(invoice_pages(records))
    gc.collect()
    gc.freeze()
    profiler = cProfile.Profile()
    profiler.enable()
    full_sync(sqlite_at(workdir / "profile.db"), QuickBooksPages(lambda: pages), mapped, records)
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(40)


# -- the whole benchmark -----------------------------------------------------------------------


def begin(title: str, **settings: Any) -> dict[str, Any]:
    """Print the run's title, machine and load; return the figures' start (with ``settings``)."""
    info = machine()
    print(
        f"{title}: {info['cpu_model']}, {info['cpu_count']} cores, Python {info['python']}, "
        f"SQLite {info['sqlite']}"
    )
    results: dict[str, Any] = {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **settings,
        "machine": info,
        "source": "in-process: QuickBooks invoices (2 sales lines + subtotal) built in memory",
        "mapping": MAPPING.name,
        "load_average": {"start": load_average()},
    }
    print(f"load average (1, 5, 15 min): {results['load_average']['start']}")
    if results["load_average"]["start"][0] > BUSY_LOAD:
        print("note: the machine is busy; other work skews the timings (the JSON has the load)")
    return results


def run_latency(records: int, rounds: int, output: Path) -> dict[str, Any]:
    """Time only the full sync with a vendor's latency per page, mapping on against off."""
    results = begin("incsync mapping benchmark, 150 ms a page", quick=False)
    with tempfile.TemporaryDirectory(prefix="incsync-bench-mapping-") as tmp:
        print(f"building {records:,} invoices in pages of {PAGE_SIZE:,} ...", flush=True)
        pages = list(invoice_pages(records))
        gc.collect()
        gc.freeze()
        print(
            f"1b. full sync of {records:,} records, {LATENCY_SECONDS * 1000:.0f} ms per page",
            flush=True,
        )
        synced = sqlite_at(Path(tmp) / "sync.db")
        results["sync_with_latency"] = measure_sync(
            _always(pages), records, rounds, LATENCY_SECONDS, synced
        )
        results["load_average"]["end"] = load_average()
    latency = results["sync_with_latency"]
    print(
        f"  ratio on/off {latency['ratio']} (range {latency['ratio_range'][0]}-"
        f"{latency['ratio_range'][1]}), CPU {latency['ratio_cpu']}"
    )
    output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"written to {output}")
    return results


def run(quick: bool, rounds: int, output: Path) -> dict[str, Any]:
    scale = 10 if quick else 1
    full, latency_records, small = (
        FULL_RECORDS // scale,
        LATENCY_RECORDS // scale,
        RSS_SMALL // scale,
    )
    results = begin(f"incsync mapping benchmark{' (quick)' if quick else ''}", quick=quick)
    print(f"3. peak RSS of a mapped full sync, pages made lazily ({small:,} vs {full:,} records)")
    results["memory"] = measure_memory((small, full))

    with tempfile.TemporaryDirectory(prefix="incsync-bench-mapping-") as tmp:
        workdir = Path(tmp)
        print(f"building {full:,} invoices in pages of {PAGE_SIZE:,} ...", flush=True)
        pages = list(invoice_pages(full))
        # The prebuilt pages live for the whole measurement; keep the cyclic collector from
        # walking them over and over (a real source's pages arrive one at a time).
        gc.collect()
        gc.freeze()

        print(f"1a. full sync of {full:,} records, mapping off and on, no latency", flush=True)
        results["load_average"]["before_sync"] = load_average()
        synced = sqlite_at(workdir / "sync.db")
        results["sync"] = measure_sync(_always(pages), full, rounds, 0.0, synced)
        print(f"  ratio on/off {results['sync']['ratio']} (range {results['sync']['ratio_range']})")

        few = pages[: latency_records // PAGE_SIZE]
        print(
            f"1b. full sync of {latency_records:,} records, "
            f"{LATENCY_SECONDS * 1000:.0f} ms per page",
            flush=True,
        )
        results["load_average"]["before_latency"] = load_average()
        results["sync_with_latency"] = measure_sync(
            _always(few), latency_records, rounds, LATENCY_SECONDS, synced
        )

        print(f"2. re-map of {full:,} stored records against a bare loop", flush=True)
        stored = workdir / "remap.db"
        full_sync(sqlite_at(stored), QuickBooksPages(_always(pages)), True, full, keep=True)
        del pages, few
        gc.unfreeze()
        gc.collect()
        results["load_average"]["before_remap"] = load_average()
        results["remap"] = measure_remap(stored, full, REMAP_ROUNDS)
        results["load_average"]["end"] = load_average()

    output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print_summary(results)
    print(f"written to {output}")
    return results


def run_postgres(records: int, rounds: int, output: Path) -> dict[str, Any]:
    """Time the full sync, mapping on against off, into ``PostgresStore``; write the figures."""
    results = begin("incsync mapping benchmark, PostgreSQL", store="postgres")
    with psycopg_connection() as connection:
        results["server_version"] = connection.execute("SHOW server_version").fetchone()[0]
    pages = list(invoice_pages(records))
    gc.collect()
    gc.freeze()
    print(f"1. full sync of {records:,} records into PostgreSQL, mapping off and on", flush=True)
    results["sync"] = measure_sync(lambda: pages, records, rounds, 0.0, postgres_schemas())
    results["load_average"]["end"] = load_average()
    output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    sync = results["sync"]
    print(
        f"\nPostgreSQL  mapping on/off {sync['ratio']} (range {sync['ratio_range'][0]}-"
        f"{sync['ratio_range'][1]}, CPU {sync['ratio_cpu']}; target <= {TARGET_SYNC_RATIO})"
    )
    print(f"written to {output}")
    return results


def psycopg_connection() -> Any:
    import psycopg

    return psycopg.connect(CONNINFO, autocommit=True)


def print_summary(results: dict[str, Any]) -> None:
    sync, latency = results["sync"], results["sync_with_latency"]
    remap, memory = results["remap"], results["memory"]
    verdict = "met" if sync["met"] else "NOT MET"
    print()
    print(
        f"sync        mapping on/off {sync['ratio']} (range {sync['ratio_range'][0]}-"
        f"{sync['ratio_range'][1]}, CPU {sync['ratio_cpu']}; target <= {TARGET_SYNC_RATIO}): "
        f"{verdict}"
    )
    print(
        f"latency     with {latency['latency_per_page_s'] * 1000:.0f} ms a page: "
        f"{latency['ratio']} (range {latency['ratio_range'][0]}-{latency['ratio_range'][1]})"
    )
    print(
        f"remap       {remap['remap_records_per_s']:,} records/s, bare loop / remap "
        f"{remap['ratio_bare_to_remap']} (range {remap['ratio_range'][0]}-"
        f"{remap['ratio_range'][1]})"
    )
    print(
        f"memory      peak RSS {memory['runs'][0]['peak_rss_mb']} MB vs "
        f"{memory['runs'][-1]['peak_rss_mb']} MB = {memory['delta_mb']:+} MB "
        f"(target <= +{TARGET_RSS_DELTA_MB:.0f} MB)"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.mapping", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="scale every size down 10x")
    parser.add_argument(
        "--rounds",
        type=int,
        default=SYNC_ROUNDS,
        help=f"rounds of the sync timings, each a run of both sides (default {SYNC_ROUNDS})",
    )
    parser.add_argument("--output", type=Path, help="where to write the figures as JSON")
    parser.add_argument("--profile", type=int, metavar="N", help="profile a sync of N and exit")
    parser.add_argument("--unmapped", action="store_true", help="profile without the mapping")
    parser.add_argument(
        "--store",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="postgres: time only the full sync without latency, into PostgresStore",
    )
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="time only the full sync with 150 ms a page, at --records (default 1,000,000)",
    )
    parser.add_argument(
        "--records",
        type=int,
        help=f"records of the PostgreSQL sync (default {POSTGRES_RECORDS:,}) or of --latency-only",
    )
    parser.add_argument("--rss-run", type=int, metavar="N", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_run is not None:
        rss_run(args.rss_run)
        return
    if args.profile is not None:
        with tempfile.TemporaryDirectory(prefix="incsync-bench-mapping-") as tmp:
            profile_sync(args.profile, not args.unmapped, Path(tmp))
        return
    if args.rounds < 2:
        parser.error("--rounds must be at least 2")
    if args.latency_only:
        run_latency(args.records or FULL_RECORDS, args.rounds, args.output or LATENCY_RESULTS)
        return
    if args.store == "postgres":
        run_postgres(args.records or POSTGRES_RECORDS, args.rounds, args.output or POSTGRES_RESULTS)
        return
    run(args.quick, args.rounds, args.output or (QUICK_RESULTS if args.quick else RESULTS))


if __name__ == "__main__":
    main()
