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
"""

from __future__ import annotations

import argparse
import cProfile
import gc
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
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench.core import (
    ROOT,
    BUSY_LOAD,
    Timing,
    load_average,
    machine,
    peak_hwm_kb,
    remove_db,
)
from incsync import BaseConnector, Outcome, SQLiteStore, SyncEngine, SyncPolicy, Window
from incsync.connectors import RawPage
from incsync.mapping import TransactionMapping, preset

RESULTS = Path(__file__).resolve().parent / "mapping-results.json"
QUICK_RESULTS = Path(__file__).resolve().parent / "mapping-results-quick.json"

SOURCE_KEY = "bench/qbo-invoices"
PAGE_SIZE = 1_000
FULL_RECORDS = 1_000_000
LATENCY_RECORDS = 100_000
LATENCY_SECONDS = 0.150
SYNC_ROUNDS = 3
REMAP_ROUNDS = 3
RSS_SMALL = 100_000
TARGET_SYNC_RATIO = 1.3
TARGET_RSS_DELTA_MB = 20.0
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


def store_for(path: Path, mapped: bool) -> SQLiteStore:
    return SQLiteStore(path, mappings={SOURCE_KEY: MAPPING} if mapped else None)


def full_sync(path: Path, connector: BaseConnector, mapped: bool, records: int) -> Timing:
    """Sync every record of ``connector`` into a new store at ``path``; time ``run_cycle``."""
    remove_db(path)
    store = store_for(path, mapped)
    engine = SyncEngine(store, policy=POLICY)
    os.sync()  # no writeback of an earlier run's files during this one
    wall, cpu = time.perf_counter(), time.process_time()
    result = engine.run_cycle(SOURCE_KEY, connector)
    timing = Timing(time.perf_counter() - wall, time.process_time() - cpu)
    store.close()
    if result.outcome is not Outcome.COMPLETED or result.applied != records:
        raise RuntimeError(f"full sync did not complete: {result}")
    return timing


# -- profile ---------------------------------------------------------------------------------


def profile_sync(records: int, mapped: bool, workdir: Path) -> None:
    """Profile one full sync of ``records`` prebuilt invoices and print where the time goes."""
    pages = list(invoice_pages(records))
    gc.collect()
    gc.freeze()
    profiler = cProfile.Profile()
    profiler.enable()
    full_sync(workdir / "profile.db", QuickBooksPages(lambda: pages), mapped, records)
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(40)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.mapping", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="scale every size down 10x")
    parser.add_argument("--profile", type=int, metavar="N", help="profile a sync of N and exit")
    parser.add_argument("--unmapped", action="store_true", help="profile without the mapping")
    args = parser.parse_args(argv)
    if args.profile is not None:
        with tempfile.TemporaryDirectory(prefix="incsync-bench-mapping-") as tmp:
            profile_sync(args.profile, not args.unmapped, Path(tmp))
        return


if __name__ == "__main__":
    main()
