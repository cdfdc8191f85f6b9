"""Benchmark of a Salesforce full read by Bulk API 2.0 query jobs against the same read by query.

Run ``python -m bench.salesforce_bulk`` from the project root. Options: ``--records N``
(100,000), ``--latency-ms N`` (150: the wait before every answer, see :mod:`bench.connectors`),
``--repetitions N`` (3), ``--job-delay S`` (the fake's seconds before a job of no rows completes,
2), ``--record-us N`` (the fake's microseconds of job time per row, 20). Figures are printed and
written to ``bench/salesforce-bulk-results.json`` (or ``--output``).

One fake org holds ``--records`` opportunities, one a second up to an hour ago, and is served
over loopback HTTP from a forked child process that waits the latency before every answer
(:mod:`bench._served`); its clock is the real one, so a job completes after its delay in real
time, as in an org. Two
connectors read it whole, taking turns ``--repetitions`` times: one with ``bulk_threshold=None``
(every page through ``query``, 2,000 rows a request), one with the defaults (query jobs: spans of
at most 50,000 rows, results 10,000 rows a request). Each run is a ``connector.read(Window())``
counting each page's records and dropping the page, as the engine does once a page is written.

Reported per side: the median seconds and records per second, and the requests sent; and the
``ratio``: the query read's median seconds over the bulk read's (above 1: bulk is faster). The
fake's job timing is an assumption, not a measurement of Salesforce, whose jobs wait in a
queue shared by the whole instance: the figure says how the two ways compare when a job takes
that long, and the request counts hold whatever the timing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench._served import server
from bench.core import git, load_average, machine
from incsync.connectors.http import HttpOptions
from incsync.cursor import Window
from incsync.testing.fakes.salesforce import FakeSalesforce
from incsync.vendors.salesforce import SalesforceConnector

RESULTS = Path(__file__).resolve().parent / "salesforce-bulk-results.json"
UTC = timezone.utc
RECORDS = 100_000
LATENCY_MS = 150.0
REPETITIONS = 3
JOB_DELAY_S = 2.0
RECORD_US = 20.0


def _now() -> datetime:
    return datetime.now(UTC)


def _org(records: int, job_delay: float, record_us: float) -> FakeSalesforce:
    fake = FakeSalesforce(
        clock=_now,
        api_limit=10**9,
        session_lifetime=timedelta(days=1),
        bulk_job_delay=timedelta(seconds=job_delay),
        bulk_record_time=timedelta(microseconds=record_us),
    )
    # One a second up to an hour ago: an org whose records keep changing up to now.
    start = _now() - timedelta(hours=1) - timedelta(seconds=records)
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
            for i in range(records)
        ),
    )
    return fake


def _timed_read(connector: SalesforceConnector, expected: int) -> float:
    started = time.perf_counter()
    count = 0
    for page in connector.read(Window()):
        count += len(page.records)
    seconds = time.perf_counter() - started
    if count != expected:
        raise RuntimeError(f"read {count} records, expected {expected}")
    return seconds


def run(
    records: int, latency_ms: float, repetitions: int, job_delay: float, record_us: float
) -> dict[str, Any]:
    """Time both full reads in turns; return the report."""
    fake = _org(records, job_delay, record_us)
    token = fake.issue_access_token()
    refresh = fake.refresh_token
    serve = server("process", latency_ms / 1000)
    seconds: dict[str, list[float]] = {"query": [], "bulk": []}
    requests: dict[str, int] = {}
    with ExitStack() as stack:
        served = stack.enter_context(serve(fake))
        del fake  # the child process holds the org now

        def connector(**options: Any) -> SalesforceConnector:
            return stack.enter_context(
                SalesforceConnector(
                    "fake-consumer-key",
                    "fake-consumer-secret",
                    refresh,
                    login_url=served.base_url,
                    instance_url=served.base_url,
                    access_token=token,
                    options=HttpOptions(clock=_now),
                    **options,
                )
            )

        sides: dict[str, SalesforceConnector] = {
            "query": connector(bulk_threshold=None),
            "bulk": connector(),
        }
        for _ in range(repetitions):
            for name, side in sides.items():
                served.record()
                seconds[name].append(_timed_read(side, records))
                requests[name] = len(served.recorded())
    median = {name: statistics.median(values) for name, values in seconds.items()}
    return {
        "benchmark": "salesforce_bulk",
        "commit": git("rev-parse", "--short", "HEAD"),
        "machine": machine(),
        "load_average_at_start": load_average(),
        "records": records,
        "latency_ms": latency_ms,
        "fake_job_delay_s": job_delay,
        "fake_job_us_per_record": record_us,
        "repetitions": repetitions,
        "sides": {
            name: {
                "median_seconds": round(median[name], 3),
                "records_per_second": round(records / median[name]),
                "seconds": [round(value, 3) for value in seconds[name]],
                "requests": requests[name],
            }
            for name in seconds
        },
        "ratio": round(median["query"] / median["bulk"], 2),
    }


def _print(report: dict[str, Any], say: Callable[[str], None] = print) -> None:
    say(
        f"Salesforce full read of {report['records']:,} records, {report['latency_ms']:.0f} ms "
        f"an answer, jobs {report['fake_job_delay_s']} s + "
        f"{report['fake_job_us_per_record']} us a row"
    )
    for name, side in report["sides"].items():
        say(
            f"  {name:5}  {side['median_seconds']:7.2f} s  {side['records_per_second']:>8,} "
            f"records/s  {side['requests']:>4} requests"
        )
    say(f"  ratio (query seconds / bulk seconds): {report['ratio']}")


def main() -> None:
    """Parse the options, run, print and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=RECORDS)
    parser.add_argument("--latency-ms", type=float, default=LATENCY_MS)
    parser.add_argument("--repetitions", type=int, default=REPETITIONS)
    parser.add_argument("--job-delay", type=float, default=JOB_DELAY_S)
    parser.add_argument("--record-us", type=float, default=RECORD_US)
    parser.add_argument("--output", type=Path, default=RESULTS)
    options = parser.parse_args()
    report = run(
        options.records,
        options.latency_ms,
        options.repetitions,
        options.job_delay,
        options.record_us,
    )
    _print(report)
    options.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
