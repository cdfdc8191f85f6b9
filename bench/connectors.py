"""Benchmark of the built-in HTTP connectors against a bare httpx loop over the same pages.

Run ``python -m bench.connectors`` from the project root; ``--quick`` loads 10x fewer records,
``--vendor NAME`` (repeatable) picks vendors, ``--server thread`` serves the fakes the old way.
Figures are printed and written to ``bench/connectors-results.json``
(``bench/connectors-results-quick.json`` for ``--quick``).

For each vendor (QuickBooks, Salesforce, HubSpot here; Xero, Stripe, Pipedrive and the REST
connector in ``bench/vendor_*.py``) the testing fake is loaded with records at distinct
timestamps and served over real loopback HTTP from a forked child process
(:mod:`bench._served`), as a vendor answers from another machine: the fake's request handling
never takes this process's GIL, and its dataset is not in this process's heap. Then:

1. An untimed capture run of ``connector.read(Window())`` records every request the connector
   sent (method, URL, body, the headers that shape the answer) through an observing fault on the
   fake; recording stops before anything is timed.
2. The connector side times a full ``connector.read(Window())``, counting each page's records and
   dropping the page, as the engine does once a page is written: the whole read (requests, auth,
   retry bookkeeping, size cap, JSON, record building, keyset checks).
3. The bare side is one ``httpx.Client`` that sends the same requests in the same order and does
   only ``response.json()`` and counts the rows. QuickBooks and HubSpot requests are replayed
   exactly as captured (HubSpot's search bodies included). Salesforce pages are reached through
   per-query locators, so the bare loop sends the captured first request and then follows each
   page's ``nextRecordsUrl``, as any client must; the page count is checked to match.

Bare and connector runs alternate, ``ROUNDS`` rounds each, after one warm-up of each; the best
time of each side is reported. Before the timed rounds the heap built so far is frozen out of the
garbage collector's sight (:func:`frozen_heap`): a full collection would otherwise walk some 45,000
objects of the harness itself, 14-20 ms charged to whichever side happened to trigger it. What each
side allocates is still collected, and the collections each side triggered are counted and
reported. Two ratios come out:

* ``ratio``: connector records/s over bare records/s by wall clock (both rated on the same
  distinct record count): what a user waits for, server included;
* ``client_cpu_ratio``: the bare loop's CPU time over the connector's, both read with
  ``time.thread_time()`` in the thread that runs the read. The fake server runs in another
  process, so its work is in neither figure: this is the connector's own cost per record against
  the least any client must do (send, receive, decode JSON).

The fake server's own work (parsing the query, filtering, sorting and rendering each page in
Python) is inside both wall-clock timings, since both sides wait for the same pages from the same
server. It dilutes the difference: the more of each request is server time, the closer the
wall-clock ratio is to 1 than the connector's own overhead alone would make it. A real vendor's
network round trip and server time, far above the 1-12 ms a page the fake takes here, dilute it
much more. The CPU ratio has no such dilution, which is why it is the stricter of the two.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

from bench._served import SERVERS, Sent, Serve, Served
from incsync.connectors.auth import BearerToken
from incsync.connectors.http import HttpConnector, HttpOptions
from incsync.cursor import Window
from incsync.testing import ManualClock
from incsync.testing.fakes import FakeQuickBooks
from incsync.testing.fakes.hubspot import FakeHubSpot, HubSpotLimits
from incsync.testing.fakes.salesforce import FakeSalesforce
from incsync.vendors.hubspot import HubSpotConnector
from incsync.vendors.quickbooks import QuickBooksConnector, quickbooks_auth
from incsync.vendors.salesforce import SalesforceConnector

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "connectors-results.json"
QUICK_RESULTS = HERE / "connectors-results-quick.json"

UTC = timezone.utc
FULL_RECORDS = 20_000
QUICK_RECORDS = 2_000
ROUNDS = 25  # best of 25: single rounds on a shared 2-core machine vary by up to 50%
TARGET_RATIO = 0.8
BUSY_LOAD = 0.5  # a 1-minute load average above this at the start is reported as a busy machine
SERVER_NOTE = (
    "Both sides fetch the same pages from the same fake server over loopback HTTP; the fake's "
    "own work (query parsing, filtering, sorting, rendering) is inside both wall-clock timings."
)


SERVER_PLACES = {
    "process": "a child process (its own GIL and heap, as a remote vendor)",
    "thread": "a thread of this process (sharing the client's GIL and heap)",
}


def no_sleep(_seconds: float) -> None:
    """Never wait: nothing is throttled in this benchmark, and a retry should not hide in a wait."""


# -- capture and replay ----------------------------------------------------------------------


def replay(
    client: httpx.Client, sent: list[Sent], rows: Callable[[Any], list[Any]]
) -> tuple[int, int]:
    """Send every request of ``sent`` in order; return (rows received, requests sent)."""
    count = 0
    for request in sent:
        response = client.request(
            request.method, request.url, content=request.content or None, headers=request.headers
        )
        if response.status_code != 200:
            raise RuntimeError(
                f"bare loop: {request.method} {request.url} -> {response.status_code}"
            )
        count += len(rows(response.json()))
    return count, len(sent)


# -- vendors ---------------------------------------------------------------------------------


@dataclass
class Vendor:
    """One vendor's fake, connector and bare loop, all live while ``stack`` is open."""

    name: str
    connector: HttpConnector
    bare: Callable[[httpx.Client], tuple[int, int]]
    bare_headers: dict[str, str]
    requests: int = 0
    notes: list[str] = field(default_factory=list)


def quickbooks(stack: ExitStack, count: int, serve: Serve) -> Vendor:
    entity = "Invoice"
    fake = FakeQuickBooks(
        clock=ManualClock(datetime(2024, 6, 3, 16, 0, tzinfo=UTC)),
        client_secret="bench-secret",
        requests_per_minute=10**9,
    )
    start = datetime(2024, 1, 1, tzinfo=UTC)
    fake.bulk_load(
        entity,
        [start + timedelta(seconds=i) for i in range(count)],
        fields=lambda n: {
            "DocNumber": str(n),
            "TotalAmt": float(n % 997),
            "CustomerRef": {"value": str(n % 50)},
        },
    )
    tokens = fake.grant_tokens()
    served = stack.enter_context(serve(fake))
    base_url = served.base_url
    auth = quickbooks_auth(
        fake.client_id,
        fake.client_secret,
        tokens.refresh_token,
        token_url=f"{base_url}/oauth2/v1/tokens/bearer",
        access_token=tokens.access_token,
        expires_at=tokens.access_token_expires_at,
        clock=fake.clock,
    )
    connector = stack.enter_context(
        QuickBooksConnector(
            fake.realm_id,
            entity,
            auth=auth,
            base_url=base_url,
            options=HttpOptions(sleep=no_sleep, clock=fake.clock),
        )
    )
    sent = capture(served, connector, count, "/query")

    def bare(client: httpx.Client) -> tuple[int, int]:
        return replay(client, sent, lambda body: body["QueryResponse"].get(entity, []))

    return Vendor("quickbooks", connector, bare, {"Authorization": f"Bearer {tokens.access_token}"})


def salesforce(stack: ExitStack, count: int, serve: Serve) -> Vendor:
    fake = FakeSalesforce(api_limit=10**9, max_open_locators=1_000)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    fake.bulk_load(
        "Opportunity",
        (
            {
                "Name": f"Deal {i}",
                "StageName": "Prospecting",
                "Amount": float(i % 997),
                "CloseDate": date(2024, 12, 31),
                "SystemModstamp": start + timedelta(seconds=i),
            }
            for i in range(count)
        ),
    )
    token = fake.issue_access_token()
    served = stack.enter_context(serve(fake))
    base_url = served.base_url
    connector = stack.enter_context(
        SalesforceConnector(
            "fake-consumer-key",
            "fake-consumer-secret",
            fake.refresh_token,
            login_url=base_url,
            instance_url=base_url,
            access_token=token,
            options=HttpOptions(sleep=no_sleep, clock=fake.clock),
        )
    )
    sent = capture(served, connector, count, "/services/data/")
    first = sent[0]

    def bare(client: httpx.Client) -> tuple[int, int]:
        # Pages after the first sit behind the query's own locator: follow nextRecordsUrl.
        response = client.request(first.method, first.url, headers=first.headers)
        requests, rows = 1, 0
        while True:
            if response.status_code != 200:
                raise RuntimeError(f"bare loop: salesforce answered {response.status_code}")
            body = response.json()
            rows += len(body["records"])
            if body["done"]:
                return rows, requests
            response = client.get(base_url + body["nextRecordsUrl"], headers=first.headers)
            requests += 1

    vendor = Vendor("salesforce", connector, bare, {"Authorization": f"Bearer {token}"})
    vendor.notes.append("bare loop follows nextRecordsUrl (per-query locators) after request 1")
    return vendor


def hubspot(stack: ExitStack, count: int, serve: Serve) -> Vendor:
    fake = FakeHubSpot(
        index_lag=timedelta(0),
        limits=HubSpotLimits(search_per_second=None, per_ten_seconds=None, daily=None),
    )
    start = datetime(2024, 1, 1, tzinfo=UTC)
    fake.load(
        "deals",
        [start + timedelta(seconds=i) for i in range(count)],
        {"dealname": "bench", "amount": "10"},
    )
    served = stack.enter_context(serve(fake))
    base_url = served.base_url
    connector = stack.enter_context(
        HubSpotConnector(
            base_url,
            auth=BearerToken(fake.private_app_token),
            options=HttpOptions(sleep=no_sleep, clock=fake.clock),
        )
    )
    sent = capture(served, connector, count, "/crm/v3/")

    def bare(client: httpx.Client) -> tuple[int, int]:
        return replay(client, sent, lambda body: body["results"])

    vendor = Vendor(
        "hubspot", connector, bare, {"Authorization": f"Bearer {fake.private_app_token}"}
    )
    vendor.notes.append(
        "each search after the first asks again from the previous answer's newest millisecond, "
        "so it repeats that millisecond's row; the bare loop receives those rows too"
    )
    return vendor


def capture(served: Served, connector: HttpConnector, count: int, api: str) -> list[Sent]:
    """Run the connector's full read once, untimed; return its API requests, checked."""
    served.record()
    try:
        got = sum(len(page.records) for page in connector.read(Window()))
    finally:
        sent = served.recorded()
    if got != count:
        raise RuntimeError(f"{connector.vendor}: the capture read returned {got} of {count}")
    api_requests = [request for request in sent if api in request.url]
    if len(api_requests) != len(sent):
        raise RuntimeError(f"{connector.vendor}: unexpected requests during the read: {sent}")
    return api_requests


VendorSetup = Callable[[ExitStack, int, Serve], Vendor]


def vendors() -> dict[str, VendorSetup]:
    """Every vendor's set-up, by name, in the order they run."""
    # The other vendors' set-ups live in their own modules and import this one's helpers, so they
    # are imported here, once this module is complete.
    from bench.vendor_pipedrive import pipedrive
    from bench.vendor_rest import rest
    from bench.vendor_stripe import stripe
    from bench.vendor_xero import xero

    return {
        "quickbooks": quickbooks,
        "salesforce": salesforce,
        "hubspot": hubspot,
        "xero": xero,
        "stripe": stripe,
        "pipedrive": pipedrive,
        "rest": rest,
    }


# -- timing ----------------------------------------------------------------------------------


def time_connector(connector: HttpConnector) -> tuple[float, float, int]:
    """Time a full read: (wall seconds, this thread's CPU seconds, records)."""
    began, began_cpu = time.perf_counter(), time.thread_time()
    # Pages are counted and dropped, as the engine drops each once it is written; keeping all
    # 20,000 records alive would make every garbage collection walk them, a cost no sync pays
    # (and the bare loop, which keeps nothing, would not pay either).
    records = sum(len(page.records) for page in connector.read(Window()))
    cpu, wall = time.thread_time() - began_cpu, time.perf_counter() - began
    return wall, cpu, records


def time_bare(vendor: Vendor, client: httpx.Client) -> tuple[float, float, int, int]:
    """Time the bare loop: (wall seconds, this thread's CPU seconds, rows, requests)."""
    began, began_cpu = time.perf_counter(), time.thread_time()
    rows, requests = vendor.bare(client)
    return time.perf_counter() - began, time.thread_time() - began_cpu, rows, requests


class Collections:
    """Counts the garbage collections of each generation (0, 1, 2) while it is installed."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0]

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.counts[info["generation"]] += 1

    def since(self, before: list[int]) -> list[int]:
        return [now - then for now, then in zip(self.counts, before, strict=True)]


@contextmanager
def frozen_heap(*, freeze: bool = True) -> Iterator[Collections]:
    """Freeze what exists now out of the collector's sight, and count collections until the end.

    A full (generation 2) collection walks every object of the process. Most of them here are the
    harness's own (modules, httpx, the fakes' set-up leftovers): about 45,000 objects, 14-20 ms
    per full collection on the benchmark machine, added to a 0.2-0.4 s run. That price is set by
    the heap, not by the loop that triggers the collection (a host pays it in proportion to its
    own heap). Frozen, the harness's objects are not walked; what each loop allocates still is,
    and the collections each side triggers are counted and reported. ``freeze=False`` (the
    ``--no-freeze`` option) leaves the heap as it is.
    """
    gc.collect()
    if freeze:
        gc.freeze()
    counter = Collections()
    gc.callbacks.append(counter)
    try:
        yield counter
    finally:
        gc.callbacks.remove(counter)
        if freeze:
            gc.unfreeze()


def measure(name: str, count: int, server: str, *, freeze: bool = True) -> dict[str, Any]:
    with ExitStack() as stack:
        setup_began = time.perf_counter()
        vendor = vendors()[name](stack, count, SERVERS[server])
        setup = time.perf_counter() - setup_began
        client = stack.enter_context(
            httpx.Client(headers={"User-Agent": "bench", **vendor.bare_headers}, timeout=30.0)
        )
        # Warm-up: connections, tokens, the fake's caches, once each side.
        _, _, bare_rows, bare_requests = time_bare(vendor, client)
        time_connector(vendor.connector)
        collections = stack.enter_context(frozen_heap(freeze=freeze))
        bare_collections, connector_collections = [0, 0, 0], [0, 0, 0]
        bare_times: list[float] = []
        bare_cpu: list[float] = []
        connector_times: list[float] = []
        connector_cpu: list[float] = []
        for _ in range(ROUNDS):
            before = list(collections.counts)
            seconds, cpu, rows, requests = time_bare(vendor, client)
            if (rows, requests) != (bare_rows, bare_requests):
                raise RuntimeError(f"{name}: the bare loop fetched different pages between runs")
            bare_times.append(seconds)
            bare_cpu.append(cpu)
            bare_collections = _add(bare_collections, collections.since(before))
            before = list(collections.counts)
            seconds, cpu, records = time_connector(vendor.connector)
            if records != count:
                raise RuntimeError(f"{name}: the connector read {records} records of {count}")
            connector_times.append(seconds)
            connector_cpu.append(cpu)
            connector_collections = _add(connector_collections, collections.since(before))
    best_bare, best_connector = min(bare_times), min(connector_times)
    cpu_ratio = min(bare_cpu) / min(connector_cpu)
    return {
        "vendor": name,
        "records": count,
        "requests": bare_requests,
        "bare_rows_received": bare_rows,
        "setup_seconds": round(setup, 3),
        "bare_seconds": [round(t, 4) for t in bare_times],
        "connector_seconds": [round(t, 4) for t in connector_times],
        "bare_client_cpu_seconds": [round(t, 4) for t in bare_cpu],
        "connector_client_cpu_seconds": [round(t, 4) for t in connector_cpu],
        "bare_gc_collections_by_generation": bare_collections,
        "connector_gc_collections_by_generation": connector_collections,
        "bare_records_per_s": round(count / best_bare),
        "connector_records_per_s": round(count / best_connector),
        "ratio": round(best_bare / best_connector, 3),
        "meets_target": best_bare / best_connector >= TARGET_RATIO,
        "client_cpu_ratio": round(cpu_ratio, 3),
        "client_cpu_meets_target": cpu_ratio >= TARGET_RATIO,
        "notes": vendor.notes,
    }


def _add(total: list[int], more: list[int]) -> list[int]:
    return [a + b for a, b in zip(total, more, strict=True)]


# -- machine and report ----------------------------------------------------------------------


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or "unknown"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware", "cpu model"):
            return value.strip()
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "httpx": httpx.__version__,
        "platform": platform.platform(),
    }


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'vendor':<11} {'records':>8} {'requests':>8} {'bare rec/s':>11} "
        f"{'connector rec/s':>16} {'ratio':>6} {'cpu ratio':>9}  target >= {TARGET_RATIO}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        verdict = "ok" if row["meets_target"] else "BELOW"
        cpu_verdict = "ok" if row["client_cpu_meets_target"] else "BELOW"
        print(
            f"{row['vendor']:<11} {row['records']:>8,} {row['requests']:>8} "
            f"{row['bare_records_per_s']:>11,} {row['connector_records_per_s']:>16,} "
            f"{row['ratio']:>6.3f} {row['client_cpu_ratio']:>9.3f}  "
            f"wall {verdict}, cpu {cpu_verdict}"
        )
    for row in rows:
        bare = ", ".join(f"{t:.3f}" for t in row["bare_seconds"])
        conn = ", ".join(f"{t:.3f}" for t in row["connector_seconds"])
        print(f"  {row['vendor']}: bare s [{bare}]  connector s [{conn}]")
        print(
            f"    garbage collections by generation over {ROUNDS} rounds: "
            f"bare {row['bare_gc_collections_by_generation']}, "
            f"connector {row['connector_gc_collections_by_generation']}"
        )
        for note in row["notes"]:
            print(f"    note: {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x fewer records (smoke run)")
    parser.add_argument(
        "--vendor", action="append", choices=sorted(vendors()), help="only these vendors"
    )
    parser.add_argument(
        "--server",
        choices=sorted(SERVERS),
        default="process",
        help="serve the fakes from a child process (default, as a remote vendor) or a thread of "
        "this process (sharing the client's GIL and heap)",
    )
    parser.add_argument(
        "--no-freeze",
        action="store_true",
        help="leave the harness's heap in the garbage collector's sight (see frozen_heap)",
    )
    args = parser.parse_args(argv)
    count = QUICK_RECORDS if args.quick else FULL_RECORDS
    names = args.vendor or list(vendors())
    info = machine()
    load_before = load_average()
    print(f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}")
    print(f"load average at start: {load_before}")
    if load_before and load_before[0] > BUSY_LOAD:
        print(f"  (busy machine: 1-minute load above {BUSY_LOAD}; figures may be noisy)")
    print(f"best of {ROUNDS} alternating rounds per side, after one warm-up each")
    print(f"fake vendors served from: {SERVER_PLACES[args.server]}")
    print(f"harness heap frozen out of the garbage collector's sight: {not args.no_freeze}")
    print(f"note: {SERVER_NOTE}")
    print()
    began = time.perf_counter()
    rows = [measure(name, count, args.server, freeze=not args.no_freeze) for name in names]
    total = time.perf_counter() - began
    load_after = load_average()
    print_table(rows)
    print()
    print(f"load average at end: {load_after}; total {total:.1f} s")
    results = {
        "benchmark": "connectors",
        "quick": args.quick,
        "server": args.server,
        "harness_heap_frozen": not args.no_freeze,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": info,
        "load_average_start": load_before,
        "load_average_end": load_after,
        "rounds": ROUNDS,
        "target_ratio": TARGET_RATIO,
        "ratio_definition": "connector records/s over bare httpx loop records/s (best runs)",
        "client_cpu_ratio_definition": (
            "bare loop client-thread CPU seconds over connector client-thread CPU seconds "
            "(best runs): the client's own work per record, without the fake server's"
        ),
        "server_note": SERVER_NOTE,
        "total_seconds": round(total, 1),
        "vendors": rows,
    }
    path = QUICK_RESULTS if args.quick else RESULTS
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"written to {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
