"""Benchmark of a full read through the engine against each vendor's fake, at its speed limit.

Run ``python -m bench.fullsync`` from the project root. Options: ``--records N`` (default
100,000; Xero 12,000, see below), ``--vendor NAME`` (repeatable), ``--latency-ms N`` (default
150), ``--rss-records A B`` (the peak-memory runs, default 100,000 and 1,000,000),
``--no-rss``, ``--repetitions N`` (rounds of runs per vendor, default 1: the report gives the
median ratio, its range and each mode's best run), ``--partitions N``, ``--output PATH``.
Figures are printed and written to ``bench/fullsync-results.json``.

What a user waits for when a large account is connected (or reset) is a full read: every
record, page by page, each page written to the host's store and checkpointed. For each vendor
a fake loaded with ``--records`` records is served over loopback HTTP from a forked child
process, built there (its data never sits in this process), with:

* a latency model: every answer leaves ``--latency-ms`` after the request arrived, outside the
  fake's lock, so requests in flight together wait together (:class:`~incsync.testing.fakes.
  Latency`);
* the vendor's documented rate limits counted on the real clock (:class:`~incsync.testing.fakes.
  RunningClock`): QuickBooks 500 requests a minute and 10 concurrent per company, HubSpot 5
  searches a second and 100 calls per 10 s, Xero 60 calls a minute and 5 concurrent per tenant,
  Stripe 100 reads a second and 25 a second to each endpoint (so its ceiling below is that of
  one list endpoint), Pipedrive 80 requests per 2 s (the burst limit of its larger plans).
  Salesforce has no per-second limit (a daily allocation, and one on requests longer than 20 s).

A throttled request waits as the connector's retry policy says, on the real clock. The engine
writes into a SQLite file store. Each vendor runs twice, each time against a fresh fake (so one
run's rate-limit windows do not hold back the other) and into a fresh store:

1. **sequential**: the engine as it read before pages were read ahead: one request, then its
   write and checkpoint, then the next request. The library has no such path any more; this
   benchmark keeps it as the baseline, by handing the engine a read-ahead that reads in the
   caller's thread;
2. **pipelined**: the engine with one reader (:mod:`incsync.pipeline`), the connector's
   partitions (Stripe's list readers) set to 1;
3. **partitioned**, for the vendors whose connector reads a full read in time partitions
   (QuickBooks, Pipedrive; :mod:`incsync.partitions`) or, for Stripe, in ``created`` ranges
   listed at once (its ``list_readers``): the engine as it is, the connector's default number
   of partitions or readers at once (``--partitions N`` overrides it, and runs this mode for
   every vendor named).

Reported per vendor: records/s of each run, each run's ratio to the sequential one, and
records/s of the fastest mode as a fraction of the vendor's ceiling, which is its documented
request rate times the records a page holds (what no client of that vendor can exceed on one
account).

Peak memory: the pipelined full read of ``--rss-records`` Salesforce records (a fake that serves
a million records in reasonable time: a read that large goes by Bulk API 2.0 jobs), each in a
process of its own, reporting that process's peak resident set size.

Xero's ceiling is 100 records a second (60 calls a minute, 100 invoices a call): 100,000
records take 17 minutes a run. Its default is 12,000 records (two minutes a run); the rolling
minute lets the first 60 calls through at once, so a short run gets slightly above the ceiling.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

import incsync.engine
from bench.core import git
from incsync import SQLiteStore, SyncEngine
from incsync.connectors.auth import BearerToken
from incsync.connectors.http import HttpConnector, HttpOptions
from incsync.pipeline import Ended
from incsync.results import Outcome
from incsync.testing.fakes import (
    FakeHubSpot,
    FakePipedrive,
    FakeQuickBooks,
    FakeSalesforce,
    FakeStripe,
    FakeVendor,
    FakeXero,
    HubSpotLimits,
    Latency,
    PipedriveLimits,
    RunningClock,
    XeroLimits,
)
from incsync.testing.fakes.stripe import ENDPOINT_READS_PER_SECOND, LIVE_READS_PER_SECOND
from incsync.timestamps import UTC
from incsync.vendors.hubspot import HUBSPOT_PARTITIONS, HubSpotConnector
from incsync.vendors.pipedrive import PIPEDRIVE_PARTITIONS, PipedriveConnector
from incsync.vendors.quickbooks import QUICKBOOKS_PARTITIONS, QuickBooksConnector, quickbooks_auth
from incsync.vendors.salesforce import SalesforceConnector
from incsync.vendors.stripe import STRIPE_LIST_READERS, StripeConnector
from incsync.vendors.xero import XeroConnector, xero_auth

HERE = Path(__file__).resolve().parent
RECORDS = 100_000
XERO_RECORDS = 12_000
RSS_RECORDS = (100_000, 1_000_000)
LATENCY_MS = 150.0
_START_WAIT_SECONDS = 600.0

T = TypeVar("T")
Credentials = dict[str, Any]


def _history(count: int) -> list[datetime]:
    """``count`` update times, a second apart, ending a day before now."""
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    return [end - timedelta(seconds=count - n) for n in range(count)]


# -- the vendors: a fake built in the child, a connector built here ---------------------------


def _build_quickbooks(count: int, clock: RunningClock) -> tuple[FakeVendor, Credentials]:
    fake = FakeQuickBooks(clock=clock, client_secret="bench-secret")  # 500 a minute
    fake.bulk_load(
        "Invoice", _history(count), fields=lambda n: {"DocNumber": str(n), "TotalAmt": 1.0}
    )
    tokens = fake.grant_tokens()
    return fake, {
        "realm_id": fake.realm_id,
        "client_id": fake.client_id,
        "refresh_token": tokens.refresh_token,
        "access_token": tokens.access_token,
        "expires_at": tokens.access_token_expires_at,
    }


def _quickbooks(url: str, given: Credentials, options: HttpOptions) -> HttpConnector:
    auth = quickbooks_auth(
        given["client_id"],
        "bench-secret",
        given["refresh_token"],
        token_url=f"{url}/oauth2/v1/tokens/bearer",
        access_token=given["access_token"],
        expires_at=given["expires_at"],
    )
    return QuickBooksConnector(
        given["realm_id"], "Invoice", auth=auth, base_url=url, options=options
    )


def _build_salesforce(count: int, clock: RunningClock) -> tuple[FakeVendor, Credentials]:
    fake = FakeSalesforce(clock=clock, api_limit=10**9, max_open_locators=1_000)
    fake.bulk_load(
        "Opportunity",
        (
            {"Name": f"Deal {n}", "StageName": "Prospecting", "SystemModstamp": moment}
            for n, moment in enumerate(_history(count))
        ),
    )
    return fake, {"token": fake.issue_access_token(), "refresh_token": fake.refresh_token}


def _salesforce(url: str, given: Credentials, options: HttpOptions) -> HttpConnector:
    return SalesforceConnector(
        "fake-consumer-key",
        "fake-consumer-secret",
        given["refresh_token"],
        login_url=url,
        instance_url=url,
        access_token=given["token"],
        options=options,
    )


def _build_hubspot(count: int, clock: RunningClock) -> tuple[FakeVendor, Credentials]:
    fake = FakeHubSpot(clock=clock, index_lag=timedelta(0), limits=HubSpotLimits(daily=None))
    fake.load("deals", _history(count), {"dealname": "bench", "amount": "10"})
    return fake, {"token": fake.private_app_token}


def _hubspot(url: str, given: Credentials, options: HttpOptions) -> HttpConnector:
    return HubSpotConnector(url, auth=BearerToken(given["token"]), options=options)


def _build_xero(count: int, clock: RunningClock) -> tuple[FakeVendor, Credentials]:
    fake = FakeXero(clock=clock, limits=XeroLimits(per_day=None))  # 60 a minute
    fake.bulk_load(_history(count), lambda n: {"InvoiceNumber": f"INV-{n:06d}"})
    tokens = fake.grant_tokens()
    return fake, {
        "tenant_id": fake.tenant_id,
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
        "refresh_token": tokens.refresh_token,
        "access_token": tokens.access_token,
        "expires_at": tokens.expires_at,
    }


def _xero(url: str, given: Credentials, options: HttpOptions) -> HttpConnector:
    auth = xero_auth(
        given["client_id"],
        given["client_secret"],
        given["refresh_token"],
        token_url=f"{url}/connect/token",
        access_token=given["access_token"],
        expires_at=given["expires_at"],
    )
    return XeroConnector(
        given["tenant_id"], auth=auth, base_url=f"{url}/api.xro/2.0", options=options
    )


def _build_stripe(count: int, clock: RunningClock) -> tuple[FakeVendor, Credentials]:
    fake = FakeStripe(
        clock=clock,
        reads_per_second=LIVE_READS_PER_SECOND,
        endpoint_reads_per_second=ENDPOINT_READS_PER_SECOND,
    )
    fake.load("invoices", _history(count))
    return fake, {"key": fake.secret_key}


def _stripe(url: str, given: Credentials, options: HttpOptions) -> HttpConnector:
    return StripeConnector(url, secret_key=given["key"], options=options)


def _build_pipedrive(count: int, clock: RunningClock) -> tuple[FakeVendor, Credentials]:
    fake = FakePipedrive(clock=clock, limits=PipedriveLimits(per_window=80, daily=None))
    fake.load(_history(count), {"title": "bench", "value": 10})
    return fake, {"token": fake.api_token}


def _pipedrive(url: str, given: Credentials, options: HttpOptions) -> HttpConnector:
    return PipedriveConnector(url, api_token=given["token"], options=options)


@dataclass(frozen=True)
class Vendor:
    """One vendor: its fake, its connector, and its ceiling (``None``: no per-second limit)."""

    build: Callable[[int, RunningClock], tuple[FakeVendor, Credentials]]
    connect: Callable[[str, Credentials, HttpOptions], HttpConnector]
    requests_per_second: float | None
    page_size: int
    limit: str
    records: int = RECORDS
    partitions: int = 1  # what its connector reads at once by default (its full reads)
    readers: str = "partitions"  # the connector's attribute that says how many read at once

    @property
    def ceiling(self) -> float | None:
        """Records a second the vendor's rate limit allows at most."""
        if self.requests_per_second is None:
            return None
        return self.requests_per_second * self.page_size


VENDORS: Mapping[str, Vendor] = {
    "quickbooks": Vendor(
        _build_quickbooks,
        _quickbooks,
        500 / 60,
        1_000,
        "500 requests/min",
        partitions=QUICKBOOKS_PARTITIONS,
    ),
    "salesforce": Vendor(_build_salesforce, _salesforce, None, 2_000, "daily allocation only"),
    "hubspot": Vendor(
        _build_hubspot, _hubspot, 5, 200, "5 searches/s", partitions=HUBSPOT_PARTITIONS
    ),
    "xero": Vendor(_build_xero, _xero, 1, 100, "60 calls/min", XERO_RECORDS),
    "stripe": Vendor(
        _build_stripe,
        _stripe,
        # A full read lists one endpoint: its 25 requests a second, not the account's 100.
        ENDPOINT_READS_PER_SECOND,
        100,
        "25 reads/s a list endpoint",
        partitions=STRIPE_LIST_READERS,
        readers="list_readers",
    ),
    "pipedrive": Vendor(
        _build_pipedrive,
        _pipedrive,
        40,
        500,
        "80 requests/2 s",
        partitions=PIPEDRIVE_PARTITIONS,
    ),
}


# -- serving a fake built in a child process --------------------------------------------------


def _child(name: str, count: int, latency: float, pipe: Connection) -> None:
    fake, given = VENDORS[name].build(count, RunningClock())
    fake.latency = Latency(fixed=latency, seed=1)
    with fake.serve() as url:
        pipe.send((url, given))
        pipe.recv()  # until told to stop


@contextlib.contextmanager
def served(name: str, count: int, latency: float) -> Iterator[tuple[str, Credentials]]:
    """Build and serve the vendor's fake in a forked child; yield its URL and credentials."""
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe()
    process = context.Process(target=_child, args=(name, count, latency, theirs), daemon=True)
    process.start()
    try:
        if not ours.poll(_START_WAIT_SECONDS):
            raise RuntimeError(f"{name}: the fake did not start serving in time")
        yield ours.recv()
    finally:
        ours.send("stop")
        process.join(5)
        if process.is_alive():
            process.terminate()
            process.join()


# -- the runs ---------------------------------------------------------------------------------


class _InCallersThread:
    """The baseline's reads: each page fetched in the engine's own thread when asked for."""

    def __init__(self, reads: Iterable[tuple[int, Iterable[Any]]]) -> None:
        self._reads = [(key, iter(pages)) for key, pages in reads]

    def add(self, key: int, pages: Iterable[Any]) -> None:
        self._reads.append((key, iter(pages)))

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        return self

    def __next__(self) -> tuple[int, Any]:
        if not self._reads:
            raise StopIteration
        key, pages = self._reads[0]
        try:
            return key, next(pages)
        except StopIteration:
            self._reads.pop(0)
            return key, Ended()


@contextlib.contextmanager
def _sequential(reads: Iterable[tuple[int, Iterable[Any]]] = ()) -> Iterator[_InCallersThread]:
    """The baseline: the connector read in the engine's own thread, a page when asked for."""
    yield _InCallersThread(reads)


MODES = ("sequential", "pipelined", "partitioned")
"""How a full read is run: one request then its write; one page read ahead; the connector's
readers at once."""


@contextlib.contextmanager
def _read_ahead_as(mode: str) -> Iterator[None]:
    pipelined = incsync.engine.read_ahead_each
    if mode == "sequential":
        incsync.engine.read_ahead_each = _sequential  # type: ignore[assignment]
    try:
        yield
    finally:
        incsync.engine.read_ahead_each = pipelined


def full_read(
    name: str, count: int, latency: float, mode: str, partitions: int | None = None
) -> dict[str, Any]:
    """Run one full read of ``count`` records from a fresh fake into a fresh SQLite store.

    ``partitioned`` reads with the connector's partitions (or ``partitions``); the other two
    modes with one.
    """
    vendor = VENDORS[name]
    with (
        served(name, count, latency) as (url, given),
        tempfile.TemporaryDirectory() as folder,
        _read_ahead_as(mode),
    ):
        store = SQLiteStore(Path(folder) / "sync.db")
        with vendor.connect(url, given, HttpOptions()) as connector:
            if mode != "partitioned":
                setattr(connector, vendor.readers, 1)
            elif partitions is not None:
                setattr(connector, vendor.readers, partitions)
            used = getattr(connector, vendor.readers)
            began = time.perf_counter()
            result = SyncEngine(store).run_cycle(f"bench/{name}", connector)
            seconds = time.perf_counter() - began
    if result.outcome is not Outcome.COMPLETED or result.applied != count:
        raise RuntimeError(
            f"{name} {mode}: {result.outcome.value}, {result.applied}: {result.error}"
        )
    per_second = count / seconds
    ceiling = vendor.ceiling
    return {
        "mode": mode,
        "partitions": used,
        "seconds": round(seconds, 2),
        "records_per_second": round(per_second),
        "pages": result.pages,
        "of_ceiling": None if ceiling is None else round(per_second / ceiling, 3),
    }


def _per_second(run: dict[str, Any]) -> int:
    return int(run["records_per_second"])


def peak_rss(count: int, latency: float, name: str, mode: str) -> int:
    """Return the peak RSS (KiB) of a process that ran one full read of ``name`` in ``mode``."""
    command = [sys.executable, "-m", "bench.fullsync", "--rss-run", str(count)]
    command += ["--latency-ms", str(latency * 1000), "--rss-vendor", name, "--rss-mode", mode]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return int(json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_kib"])


def _rss_run(count: int, latency: float, name: str, mode: str) -> None:
    full_read(name, count, latency, mode)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_rss_kib": peak}))


# -- report -----------------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "commit": git("rev-parse", "--short", "HEAD"),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print and save the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.fullsync", description=__doc__)
    parser.add_argument("--records", type=int, default=None)
    parser.add_argument("--vendor", action="append", choices=sorted(VENDORS))
    parser.add_argument("--latency-ms", type=float, default=LATENCY_MS)
    parser.add_argument("--rss-records", type=int, nargs=2, default=RSS_RECORDS)
    parser.add_argument("--repetitions", type=int, default=1)
    parser.add_argument("--no-rss", action="store_true")
    parser.add_argument("--rss-run", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rss-vendor", choices=sorted(VENDORS), default="salesforce")
    parser.add_argument("--rss-mode", choices=MODES, default="pipelined")
    parser.add_argument("--output", type=Path, default=HERE / "fullsync-results.json")
    parser.add_argument("--partitions", type=int, default=None)
    arguments = parser.parse_args(argv)
    latency = arguments.latency_ms / 1000
    if arguments.rss_run is not None:
        _rss_run(arguments.rss_run, latency, arguments.rss_vendor, arguments.rss_mode)
        return 0
    report: dict[str, Any] = {"machine": _machine(), "latency_ms": arguments.latency_ms}
    rows = report["vendors"] = {}
    for name in arguments.vendor or list(VENDORS):
        vendor = VENDORS[name]
        count = arguments.records or vendor.records
        modes = list(MODES[:2])
        if vendor.partitions > 1 or (arguments.partitions or 1) > 1:
            modes.append("partitioned")
        runs: list[dict[str, Any]] = []
        ratios: dict[str, list[float]] = {mode: [] for mode in modes[1:]}
        for _ in range(arguments.repetitions):
            timed = {
                mode: full_read(name, count, latency, mode, arguments.partitions) for mode in modes
            }
            runs += timed.values()
            for mode in modes[1:]:
                seconds = timed["sequential"]["seconds"] / timed[mode]["seconds"]
                ratios[mode].append(round(seconds, 3))
        best = {
            mode: max((run for run in runs if run["mode"] == mode), key=_per_second)
            for mode in modes
        }
        rows[name] = {
            "records": count,
            "limit": vendor.limit,
            "ceiling_records_per_second": vendor.ceiling,
            "runs": runs,
            "ratios_to_sequential": ratios,
            "median_ratio": {mode: statistics.median(r) for mode, r in ratios.items()},
            "best": best,
        }
        fastest = modes[-1]
        print(
            f"{name:<11} {count:>8,} records"
            + "".join(f"  {mode} {best[mode]['records_per_second']:>6,}/s" for mode in modes)
            + "".join(
                f"  {mode}/sequential {statistics.median(r):.2f} ({min(r):.2f}-{max(r):.2f})"
                for mode, r in ratios.items()
            )
            + f"  of ceiling {best[fastest]['of_ceiling']} ({fastest},"
            f" {best[fastest]['partitions']} at once; {vendor.limit})",
            flush=True,
        )
    if not arguments.no_rss:
        small, large = arguments.rss_records
        name, mode = arguments.rss_vendor, arguments.rss_mode
        peaks = {count: peak_rss(count, latency, name, mode) for count in (small, large)}
        report["peak_rss_kib"] = {
            "vendor": name,
            "mode": mode,
            **{str(k): v for k, v in peaks.items()},
        }
        print(
            f"peak RSS, {name} {mode}: {small:,} -> {peaks[small] / 1024:.0f} MiB, "
            f"{large:,} -> {peaks[large] / 1024:.0f} MiB",
            flush=True,
        )
    arguments.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
