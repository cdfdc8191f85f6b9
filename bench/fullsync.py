"""Benchmark of a full read through the engine against each vendor's fake, at its speed limit.

Run ``python -m bench.fullsync`` from the project root. Options: ``--records N`` (default
100,000; Xero 12,000, see below), ``--vendor NAME`` (repeatable), ``--latency-ms N`` (default
150), ``--rss-records A B`` (the peak-memory runs, default 100,000 and 1,000,000),
``--no-rss``, ``--repetitions N`` (rounds of runs per vendor, default 1: the report gives the
median ratio, its range and each mode's best run), ``--partitions N``, ``--mode MODE``
(repeatable: only these modes, below), ``--pace R`` (repeatable: the partitioned run once at
each of these requests a second instead of the connector's own pace; Stripe, HubSpot),
``--output PATH``. Figures are printed and written to ``bench/fullsync-results.json``.

What a user waits for when a large account is connected (or reset) is a full read: every
record, page by page, each page written to the host's store and checkpointed. For each vendor
a fake loaded with ``--records`` records is served over loopback HTTP from a child
process (a fresh interpreter, spawned), built there (its data never sits in this process), with:

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
   every vendor named);
4. **bare**, for a vendor with a bare loop (Pipedrive): what no client can avoid, beside the
   partitioned run. As many readers as the partitioned run, over the same served fake with the
   same latency and limits, send the vendor's requests for its pages and decode each JSON
   answer, nothing else: no engine, no record, no store. They ask the engine's time span and
   plan (the same bounds), and each reads its partition through the connector's own query and
   paging (its HTTP client, auth, pacing, retries and throttle handling: some tens of
   microseconds a request, against the milliseconds of decoding a page), then counts the
   page's rows and drops it. It leaves out only what the engine adds: the keyset driver's
   checks, building records, writing and checkpointing, and its second read of the last
   partition. Its records/s is the most a Python client in this process gets from this fake
   on this machine; it is not what the vendor allows (the ceiling), nor a client in another
   language or process.

Reported per vendor: records/s of each run, each run's ratio to the sequential one, the
partitioned run's records/s over the bare loop's, and records/s as a fraction of the vendor's
ceiling, which is its documented request rate times the records a page holds (what no client
of that vendor can exceed on one account). Every run also reports the CPU time of this process
(all its threads) and of the fake's process while it served, the load average at its start, the
fake's answers by status (a refusal is a 429), and the most requests one path received in one
calendar second (what the fakes count a per-second limit by) and in any one second.

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
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

import httpx

import incsync.engine
from bench.core import git, speed_probe_ms
from incsync import SQLiteStore, SyncEngine
from incsync._partition_read import _PARTITION_BOUND
from incsync.connectors.auth import BearerToken
from incsync.connectors.http import HttpConnector, HttpOptions
from incsync.partitions import plan_partitions, readers_per_cycle
from incsync.pipeline import Ended
from incsync.results import CycleProgress, Outcome
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
_STOP_WAIT_SECONDS = 5.0

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


def _pipedrive_pages(
    connector: HttpConnector, start: datetime | None, end: datetime | None
) -> Iterator[Sequence[Any]]:
    """The deal list's pages from ``start`` until ``end`` as decoded JSON rows, no record built.

    The connector's own query and paging (its requests, retries and throttle handling), without
    the keyset driver and the records it builds.
    """
    if not isinstance(connector, PipedriveConnector):
        raise TypeError(f"not a Pipedrive connector: {connector!r}")
    return (answer.rows for answer in connector._deals(start, end))


BarePages = Callable[[HttpConnector, datetime | None, datetime | None], Iterable[Sequence[Any]]]
"""A vendor's pages of one time range as decoded JSON rows: what the bare loop reads."""


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
    bare_pages: BarePages | None = None  # its pages without records: the bare loop, if any
    paced: type[HttpConnector] | None = None  # the connector class whose pace --pace sets

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
        _build_hubspot,
        _hubspot,
        5,
        200,
        "5 searches/s",
        partitions=HUBSPOT_PARTITIONS,
        paced=HubSpotConnector,
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
        paced=StripeConnector,
    ),
    "pipedrive": Vendor(
        _build_pipedrive,
        _pipedrive,
        40,
        500,
        "80 requests/2 s",
        partitions=PIPEDRIVE_PARTITIONS,
        bare_pages=_pipedrive_pages,
    ),
}


# -- serving a fake built in a child process --------------------------------------------------


class _Arrivals:
    """A fault that answers nothing and notes when each request reached the fake, by path.

    The fake counts its per-second limits by the moment a request reaches it, under its lock,
    where the faults are asked too: the busiest second of one path says how near a paced
    client came to a limit it was not refused by.
    """

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response | None:
        self.times.setdefault(request.url.path, []).append(time.time())
        return None

    def busiest(self) -> dict[str, int]:
        """The most requests to one path in one calendar second, and in any one second."""
        calendar = window = 0
        for arrived in self.times.values():
            calendar = max([calendar, *Counter(int(moment) for moment in arrived).values()])
            ordered, first = sorted(arrived), 0
            for last, moment in enumerate(ordered):
                while moment - ordered[first] >= 1.0:
                    first += 1
                window = max(window, last - first + 1)
        return {"busiest_calendar_second": calendar, "busiest_one_second": window}


def _child(name: str, count: int, latency: float, pipe: Connection) -> None:
    fake, given = VENDORS[name].build(count, RunningClock())
    fake.latency = Latency(fixed=latency, seed=1)
    arrivals = _Arrivals()
    fake.add_fault(arrivals)
    with fake.serve() as url:
        began = time.process_time()
        pipe.send((url, given))
        pipe.recv()  # until told to stop
        cpu_seconds = time.process_time() - began
    answers = Counter(str(request.status) for request in fake.requests)
    pipe.send(
        {
            "answers": dict(sorted(answers.items())),
            "cpu_seconds": round(cpu_seconds, 2),
            **arrivals.busiest(),
        }
    )


@dataclass
class Serving:
    """A fake served by a child process: its URL, its credentials, and, once it stopped, what it
    answered and the CPU time it spent serving (``report``)."""

    url: str
    credentials: Credentials
    report: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def served(name: str, count: int, latency: float) -> Iterator[Serving]:
    """Build and serve the vendor's fake in a child process; yield where and what it served.

    The child is spawned, not forked: a fork copies whatever the caller holds (another
    library's connections, whose after-fork clean-up then talks to a server from the child, and
    locks other threads held), where a fresh interpreter starts from nothing.
    """
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=_child, args=(name, count, latency, theirs), daemon=True)
    process.start()
    serving: Serving | None = None
    try:
        if not ours.poll(_START_WAIT_SECONDS):
            raise RuntimeError(f"{name}: the fake did not start serving in time")
        serving = Serving(*ours.recv())
        yield serving
    finally:
        ours.send("stop")
        if serving is not None and ours.poll(_STOP_WAIT_SECONDS):
            serving.report = ours.recv()
        process.join(_STOP_WAIT_SECONDS)
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


ENGINE_MODES = ("sequential", "pipelined", "partitioned")
"""How the engine runs a full read: one request then its write; one page read ahead; the
connector's readers at once."""

MODES = (*ENGINE_MODES, "bare")
"""The engine's modes, and the bare loop: the partitioned run's requests, decoded, nothing else."""


def _read_ahead_as(mode: str) -> contextlib.AbstractContextManager[object]:
    """Have the engine read in the caller's thread for the sequential mode, else as it is."""
    if mode != "sequential":
        return contextlib.nullcontext()
    return mock.patch.object(incsync.engine, "read_ahead_each", _sequential)


@contextlib.contextmanager
def _paced(vendor: Vendor, pace: float | None) -> Iterator[None]:
    """Build the vendor's connector with ``pace`` requests a second (its own when ``None``).

    The pace is a class attribute, read when a connector is built.
    """
    if pace is None:
        yield
        return
    if vendor.paced is None:
        raise ValueError("--pace is for a connector that paces its requests (Stripe, HubSpot)")
    kept = vendor.paced.requests_per_second
    vendor.paced.requests_per_second = pace
    try:
        yield
    finally:
        vendor.paced.requests_per_second = kept


def bare_read(vendor: Vendor, connector: HttpConnector) -> tuple[int, int]:
    """Read the partitioned run's pages with nothing but decoding them; return records, pages.

    The time span and the plan are the engine's (the same two requests, the same bounds, as
    many readers), each partition read in a thread of its own; each page is counted and dropped.
    The engine's second read of the last partition, once the others are done, is left out.
    """
    pages_of = vendor.bare_pages
    if pages_of is None:
        raise ValueError("this vendor has no bare loop (Vendor.bare_pages)")
    readers = readers_per_cycle(connector.partitions, connector.concurrent_requests, 1)
    span = connector.time_span() if readers > 1 else None
    ranges: list[tuple[datetime | None, datetime | None]] = [(None, None)]
    if span is not None:
        plan = plan_partitions(*span, readers, _PARTITION_BOUND)
        ranges = [(partition.start, partition.end) for partition in plan.partitions]

    def read(bounds: tuple[datetime | None, datetime | None]) -> tuple[int, int]:
        records = pages = 0
        for rows in pages_of(connector, *bounds):
            records, pages = records + len(rows), pages + 1
        return records, pages

    with ThreadPoolExecutor(max_workers=len(ranges), thread_name_prefix="bare") as pool:
        done = list(pool.map(read, ranges))
    return sum(records for records, _ in done), sum(pages for _, pages in done)


STEADY_SHARE = (0.1, 0.9)
"""Between which shares of the records durable a read's steady pace is taken."""


def durable_figures(
    durable: Sequence[tuple[float, int]], count: int, seconds: float, ceiling: float | None
) -> dict[str, Any]:
    """Say where a full read's time went, from when each of its pages became durable.

    A read of a few seconds spends a fair share of them on what any read costs once: the
    requests before the first page (a partitioned read's plan, then the first pages' latency),
    and those after the last one (the last partition's second read, the count of live records,
    the final state). Its steady pace is the read itself, without them.

    Args:
        durable: Seconds since the read began, and records applied so far, after each durable
            page (the engine's progress reports), in order.
        count: The records the read holds.
        seconds: How long the whole read took.
        ceiling: The vendor's ceiling, records a second; ``None`` without one.

    Returns:
        ``first_page_seconds`` and ``last_page_seconds`` (when the first and the last page were
        durable), ``after_last_page_seconds``, and ``steady_records_per_second``: the records
        made durable between the moments a tenth and nine tenths of ``count`` were, over the
        time between (``None`` when one page holds both), with ``steady_of_ceiling``.
    """
    if not durable:
        return {}
    low, high = (
        next(((at, applied) for at, applied in durable if applied >= share * count), durable[-1])
        for share in STEADY_SHARE
    )
    steady = (high[1] - low[1]) / (high[0] - low[0]) if high[0] > low[0] else None
    of_ceiling = None if steady is None or ceiling is None else round(steady / ceiling, 3)
    return {
        "first_page_seconds": round(durable[0][0], 3),
        "last_page_seconds": round(durable[-1][0], 3),
        "after_last_page_seconds": round(seconds - durable[-1][0], 3),
        "steady_records_per_second": None if steady is None else round(steady),
        "steady_of_ceiling": of_ceiling,
    }


def full_read(
    name: str,
    count: int,
    latency: float,
    mode: str,
    partitions: int | None = None,
    pace: float | None = None,
) -> dict[str, Any]:
    """Run one full read of ``count`` records from a fresh fake (into a fresh SQLite store).

    ``partitioned`` and ``bare`` read with the connector's partitions (or ``partitions``); the
    other two modes with one. ``pace`` replaces the connector's requests a second.
    """
    vendor = VENDORS[name]
    load, probe = os.getloadavg()[0], speed_probe_ms()
    durable: list[tuple[float, int]] = []
    with (
        served(name, count, latency) as serving,
        tempfile.TemporaryDirectory() as folder,
        _read_ahead_as(mode),
    ):
        store = SQLiteStore(Path(folder) / "sync.db")
        with _paced(vendor, pace):
            connector = vendor.connect(serving.url, serving.credentials, HttpOptions())
            rate = connector.requests_per_second
        with connector:
            if mode not in ("partitioned", "bare"):
                setattr(connector, vendor.readers, 1)
            elif partitions is not None:
                setattr(connector, vendor.readers, partitions)
            used = getattr(connector, vendor.readers)
            began, began_cpu = time.perf_counter(), time.process_time()
            if mode == "bare":
                read, pages = bare_read(vendor, connector)
                problem = None if read == count else f"read {read} records"
            else:

                def progressed(progress: CycleProgress) -> None:
                    durable.append((time.perf_counter() - began, progress.applied))

                result = SyncEngine(store).run_cycle(
                    f"bench/{name}", connector, on_progress=progressed
                )
                read, pages = result.applied, result.pages
                problem = (
                    None
                    if result.outcome is Outcome.COMPLETED and read == count
                    else f"{result.outcome.value}, {read}: {result.error}"
                )
            seconds = time.perf_counter() - began
            cpu_seconds = time.process_time() - began_cpu
    if problem is not None:
        raise RuntimeError(f"{name} {mode}: {problem}")
    per_second = count / seconds
    ceiling = vendor.ceiling
    return {
        "mode": mode,
        "partitions": used,
        "requests_per_second": rate,
        "seconds": round(seconds, 2),
        "records_per_second": round(per_second),
        "pages": pages,
        "of_ceiling": None if ceiling is None else round(per_second / ceiling, 3),
        # This process's CPU, every thread: the engine's readers and writer, or the bare loop's.
        "cpu_seconds": round(cpu_seconds, 2),
        "load_average_1m_at_start": round(load, 2),
        "speed_probe_ms_at_start": probe,
        **durable_figures(durable, count, seconds, ceiling),
        "fake": serving.report,
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
        "speed_probe_ms": speed_probe_ms(),
        "commit": git("rev-parse", "--short", "HEAD"),
    }


def _modes(vendor: Vendor, asked: list[str] | None, partitions: int | None) -> list[str]:
    """The modes run: those asked for, else the two one-reader ones, and, for a connector that
    reads at once, the partitioned one and its bare loop (where the vendor has one)."""
    if asked:
        return [mode for mode in MODES if mode in asked]
    modes = list(ENGINE_MODES[:2])
    if vendor.partitions > 1 or (partitions or 1) > 1:
        modes.append("partitioned")
        if vendor.bare_pages is not None:
            modes.append("bare")
    return modes


def _variants(modes: list[str], paces: list[float] | None) -> list[tuple[str, str, float | None]]:
    """Each run of a round: its label, its mode, its pace (the partitioned run once a pace)."""
    partitioned: list[float | None] = [*paces] if paces else [None]
    return [
        (mode if pace is None else f"{mode} at {pace:g}/s", mode, pace)
        for mode in modes
        for pace in (partitioned if mode == "partitioned" else [None])
    ]


def _ranged(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def _vendor_runs(name: str, arguments: argparse.Namespace, latency: float) -> dict[str, Any]:
    """Run one vendor's rounds; print and return its figures.

    Each round runs every variant once, in reverse order every other round, so a machine
    slowing down over the rounds weighs on every variant alike. Ratios are taken within a
    round: to the sequential run, and the partitioned runs' records/s over the bare loop's.
    """
    vendor = VENDORS[name]
    count = arguments.records or vendor.records
    variants = _variants(_modes(vendor, arguments.mode, arguments.partitions), arguments.pace)
    labels = [label for label, _, _ in variants]
    runs: list[dict[str, Any]] = []
    to_sequential: dict[str, list[float]] = {}
    to_bare: dict[str, list[float]] = {}
    for repetition in range(arguments.repetitions):
        timed: dict[str, dict[str, Any]] = {}
        for label, mode, pace in variants if repetition % 2 == 0 else variants[::-1]:
            run = full_read(name, count, latency, mode, arguments.partitions, pace)
            timed[label] = {"label": label, **run}
            print(f"  {name} {label}: {_summary(timed[label])}", flush=True)
        runs += (timed[label] for label in labels)
        for label, mode, _ in variants:
            if "sequential" in timed and mode != "sequential":
                ratio = timed["sequential"]["seconds"] / timed[label]["seconds"]
                to_sequential.setdefault(label, []).append(round(ratio, 3))
            if "bare" in timed and mode == "partitioned":
                ratio = timed["bare"]["seconds"] / timed[label]["seconds"]
                to_bare.setdefault(label, []).append(round(ratio, 3))
    best = {
        label: max((run for run in runs if run["label"] == label), key=_per_second)
        for label in labels
    }
    print(
        f"{name:<11} {count:>8,} records ({vendor.limit}; ceiling {vendor.ceiling or 0:,.0f}/s)",
        flush=True,
    )
    for label in labels:
        print(
            f"  {label:<24} best {best[label]['records_per_second']:>6,}/s"
            f"  of ceiling {best[label]['of_ceiling']}"
            + (f"  /sequential {_ranged(to_sequential[label])}" if label in to_sequential else "")
            + (f"  /bare {_ranged(to_bare[label])}" if label in to_bare else ""),
            flush=True,
        )
    return {
        "records": count,
        "limit": vendor.limit,
        "ceiling_records_per_second": vendor.ceiling,
        "runs": runs,
        "ratios_to_sequential": to_sequential,
        "median_ratio": {label: statistics.median(r) for label, r in to_sequential.items()},
        "ratios_to_bare": to_bare,
        "median_ratio_to_bare": {label: statistics.median(r) for label, r in to_bare.items()},
        "best": best,
    }


def _summary(run: dict[str, Any]) -> str:
    fake = run["fake"]
    return (
        f"{run['records_per_second']:,}/s in {run['seconds']} s, {run['pages']} pages,"
        f" {run['partitions']} at once, CPU {run['cpu_seconds']} s here and"
        f" {fake.get('cpu_seconds')} s in the fake, answers {fake.get('answers')},"
        f" busiest second of one path {fake.get('busiest_calendar_second')}"
        f" (any one second {fake.get('busiest_one_second')}),"
        f" load {run['load_average_1m_at_start']}, probe {run['speed_probe_ms_at_start']} ms"
        + (
            f"; pages durable from {run['first_page_seconds']} s to {run['last_page_seconds']} s"
            f" (then {run['after_last_page_seconds']} s), steady of ceiling"
            f" {run['steady_of_ceiling']}"
            if "first_page_seconds" in run
            else ""
        )
    )


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
    parser.add_argument("--rss-mode", choices=ENGINE_MODES, default="pipelined")
    parser.add_argument("--output", type=Path, default=HERE / "fullsync-results.json")
    parser.add_argument("--partitions", type=int, default=None)
    parser.add_argument("--mode", action="append", choices=MODES)
    parser.add_argument("--pace", action="append", type=float)
    arguments = parser.parse_args(argv)
    latency = arguments.latency_ms / 1000
    if arguments.rss_run is not None:
        _rss_run(arguments.rss_run, latency, arguments.rss_vendor, arguments.rss_mode)
        return 0
    report: dict[str, Any] = {"machine": _machine(), "latency_ms": arguments.latency_ms}
    rows = report["vendors"] = {}
    for name in arguments.vendor or list(VENDORS):
        rows[name] = _vendor_runs(name, arguments, latency)
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
