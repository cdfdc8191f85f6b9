"""Benchmark of one scheduled round over 10,000 sources: PostgreSQL store, loopback HTTP fakes.

Run ``python -m bench.round`` from the project root (a few minutes; ``--quick`` runs 1,000
sources). It needs the PostgreSQL server the tests use (``INCSYNC_TEST_POSTGRES``, by default
database ``test`` on 127.0.0.1:5432 as user postgres) and works in a fresh schema
``bench_round_<random>``, dropped at the end. Figures are printed and written to
``bench/round-results.json`` (``bench/round-results-quick.json`` for ``--quick``; ``--output
PATH`` elsewhere).

The sources are half HubSpot portals (deals, archived ones read as tombstones) and half
QuickBooks companies (invoices, deletes read from CDC), 20 records each. Each vendor is one
loopback HTTP server holding all its accounts as separate fakes (see ``bench/_round_world.py``),
so every source reads its own account through the vendor's real paging and delete rules.

Untimed set-up: build the accounts, create the PostgreSQL schema, run every source's first
(full) cycle through :func:`incsync.scheduling.run_due`, then change 2-3 records of every
account and delete one in every fourth.

Timed: ONE round of :func:`incsync.scheduling.run_due` on a pool of 8 threads, at a moment when
every source is due (its hourly slot has passed), each source running one incremental cycle on a
connector built for it by the factory (as a host's factory would, from stored credentials).

Where the time goes is measured, not estimated: the store is wrapped in a proxy that sums the
time of every store call, and each connector's httpx transport in one that sums the time from
sending a request to holding its whole answer (the fake server's own handling is summed
separately, inside that). These sums are thread-seconds over the 8 workers; they are reported as
shares of the thread-seconds the workers spent building connectors and running cycles. The rest
is the engine and connector's own Python work, and waiting for the GIL and the CPU. The CPU
each worker thread spends in each part is summed as well, and the CPU of this process and of its
PostgreSQL backends (read from /proc) over the round: when this process runs near one core, the
round is bound by the GIL, and the wall shares mostly say where threads wait for it.

The fake servers run in this process, so their work competes with the client's for the GIL and
the two cores; the PostgreSQL server competes for the cores too. On a shared machine the load
average (reported) moves every figure.

Finally every source must have completed, the records applied must equal the changes made, every
source must hold exactly its records and tombstones (one query over the whole table), and a
sample of sources is compared record by record with its account's ground truth.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import secrets
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from bench._round_timing import Tally, TimedStore, TimedTransport
from bench._round_world import PREFIX, HubSpotWorld, QuickBooksWorld, World, changes_for
from bench.core import CONNINFO, git, load_average, machine
from incsync.engine import SyncEngine
from incsync.protocols import AtomicPageStore, Connector
from incsync.results import CycleResult, Outcome
from incsync.scheduling import SourcePlan, run_due
from incsync.stores.postgres import PostgresStore
from incsync.timestamps import utc_now

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "round-results.json"
QUICK_RESULTS = HERE / "round-results-quick.json"
UTC = timezone.utc
FULL_SOURCES = 10_000
QUICK_SOURCES = 1_000
RECORDS = 20  # per source
WORKERS = 8
SAMPLE_PER_VENDOR = 150  # sources compared record by record with their account, per vendor
INTERVAL = timedelta(hours=1)


class Factory:
    """Builds a source's connector from its key, on a timed transport; times the building.

    ``latency`` returns the seconds each request waits before it is sent (see
    :class:`~bench._round_timing.TimedTransport`); none by default.
    """

    def __init__(
        self,
        worlds: dict[str, tuple[World, str]],
        http: Tally,
        build: Tally,
        latency: Callable[[], float] | None = None,
    ) -> None:
        self._worlds = worlds
        self._http = http
        self._build = build
        self._latency = latency
        # One TLS context for every connector: building one loads the CA bundle (hundreds of
        # milliseconds on a busy machine), which would otherwise dominate a per-cycle connector.
        self._tls = httpx.create_ssl_context()

    def __call__(self, source_key: str) -> Connector:
        """Return the connector of ``source_key`` (``<vendor>/<account number>``)."""
        with self._build.timing("build_connector"):
            vendor, _, number = source_key.partition("/")
            world, base_url = self._worlds[vendor]
            n = int(number)
            transport = TimedTransport(
                httpx.HTTPTransport(verify=self._tls), self._http, self._latency
            )
            return world.connector(n, f"{base_url}{PREFIX}{n}", transport)


def source_key(world: World, n: int) -> str:
    """Return the source key of account ``n`` of ``world``."""
    return f"{world.name}/{n:05d}"


def expected_rows(n: int) -> tuple[int, int]:
    """Return the transactions and tombstones account ``n``'s source holds after the round."""
    _, delete = changes_for(n)
    return RECORDS, int(delete)


def rss_mb() -> float:
    """Return this process's peak resident memory in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def outcomes(results: Sequence[CycleResult]) -> dict[str, int]:
    """Count the results by outcome."""
    counts: dict[str, int] = {}
    for result in results:
        counts[result.outcome.value] = counts.get(result.outcome.value, 0) + 1
    return counts


def check_tables(schema: str, worlds: Sequence[World], sizes: dict[str, int]) -> list[str]:
    """Check every source's transaction and tombstone counts with one query; return problems."""
    query = sql.SQL(
        "SELECT source_key, count(*), count(*) FILTER (WHERE deleted) FROM {}.transactions "
        "GROUP BY source_key"
    ).format(sql.Identifier(schema))
    with psycopg.connect(CONNINFO) as connection:
        rows = {key: (int(total), int(gone)) for key, total, gone in connection.execute(query)}
    problems: list[str] = []
    expected = {
        source_key(world, n): expected_rows(n) for world in worlds for n in range(sizes[world.name])
    }
    if rows.keys() != expected.keys():
        problems.append(f"{len(rows.keys() ^ expected.keys())} sources missing or extra in table")
    wrong = [key for key in expected.keys() & rows.keys() if rows[key] != expected[key]]
    if wrong:
        problems.append(f"{len(wrong)} sources with wrong counts, e.g. {wrong[:3]}")
    return problems


def check_sample(
    store: PostgresStore, worlds: Sequence[World], sizes: dict[str, int], per_vendor: int
) -> tuple[int, list[str]]:
    """Compare sampled sources record by record with their accounts; return (checked, problems)."""
    chooser = random.Random(20_261_125)
    problems: list[str] = []
    checked = 0
    for world in worlds:
        count = sizes[world.name]
        for n in sorted(chooser.sample(range(count), min(per_vendor, count))):
            key = source_key(world, n)
            found = world.mismatches(n, list(store.transactions(key)))
            problems.extend(f"{key}: {problem}" for problem in found)
            checked += 1
    return checked, problems


def postgres_version() -> str:
    """Return the PostgreSQL server's version."""
    with psycopg.connect(CONNINFO) as connection:
        row = connection.execute("SHOW server_version").fetchone()
    return "unknown" if row is None else str(row[0])


def backend_pids(application_name: str) -> set[int]:
    """Return the PostgreSQL server processes serving connections named ``application_name``."""
    with psycopg.connect(CONNINFO) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application_name,)
        )
        return {int(row[0]) for row in rows}


def cpu_seconds_of(pids: set[int]) -> dict[int, float]:
    """Return the CPU seconds (user and system) of each process still running, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[int, float] = {}
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
        except OSError:  # gone, or on another machine
            continue
        fields = stat.rsplit(")", 1)[1].split()  # fields after the command name, from "state"
        found[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return found


def drop_schema(schema: str) -> None:
    """Drop the benchmark's schema and everything in it."""
    with psycopg.connect(CONNINFO, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


class TimedEngine(SyncEngine):
    """A sync engine that times each cycle, wall and the worker thread's CPU, into a tally."""

    def __init__(self, store: AtomicPageStore, cycles: Tally) -> None:
        # Typed by the protocol the engine checks at run time, so a method the timing proxy
        # lacks (it stands for the store and the sink) fails the type check, not the round.
        super().__init__(store)
        self.cycles = cycles

    def run_cycle(self, *args: Any, **kwargs: Any) -> CycleResult:
        """Run and time one cycle, with whatever the engine's ``run_cycle`` takes."""
        # Passed on untouched: an argument the engine gains reaches it without a change here.
        with self.cycles.timing("cycle"):
            return super().run_cycle(*args, **kwargs)


def breakdown(
    wall: float, tallies: dict[str, Tally], server_seconds: float, workers: int
) -> dict[str, Any]:
    """Split the workers' thread-seconds into store, HTTP, connector building and the rest.

    Each part gives its wall thread-seconds, the share of the workers' thread-seconds, what that
    share is of the round's wall time, and the CPU the worker threads spent in it with its share
    of the workers' CPU. When the process is bound by the GIL, the wall shares mostly say where
    threads wait for it, and the CPU shares say what uses the one core the process can use.

    A cycle's pages are read ahead (:mod:`incsync.pipeline`), so its requests run in its reading
    thread: their wall time is what the worker waits for its pages, but their CPU is not the
    worker's. It is reported apart (``reading_threads_cpu_seconds``), and the rest's CPU is the
    workers' own less the store's and the building's.
    """
    store, http, build, cycles = (tallies[name] for name in ("store", "http", "build", "cycles"))
    worker_seconds = cycles.total() + build.total()
    worker_cpu = cycles.total_cpu() + build.total_cpu()
    scheduling_db = store.seconds.get("list_states", 0.0)
    db = store.total() - scheduling_db
    db_cpu = store.total_cpu() - store.cpu_seconds.get("list_states", 0.0)

    def part(seconds: float, cpu: float | None) -> dict[str, float | None]:
        share = seconds / worker_seconds
        return {
            "thread_seconds": round(seconds, 2),
            "share": round(share, 3),
            "wall_seconds_equivalent": round(share * wall, 2),
            "worker_cpu_seconds": None if cpu is None else round(cpu, 2),
            "worker_cpu_share": None if cpu is None else round(cpu / worker_cpu, 3),
        }

    rest = worker_seconds - db - http.total() - build.total()
    rest_cpu = worker_cpu - db_cpu - build.total_cpu()
    return {
        "worker_thread_seconds": round(worker_seconds, 2),
        "worker_cpu_seconds": round(worker_cpu, 2),
        "pool_busy": round(worker_seconds / (workers * wall), 3),
        "database": part(db, db_cpu),
        "http": {
            **part(http.total(), None),
            "reading_threads_cpu_seconds": round(http.total_cpu(), 2),
        },
        "http_of_which_fake_server_handling": part(server_seconds, None),
        "building_connectors": part(build.total(), build.total_cpu()),
        "engine_and_connector_rest": part(rest, rest_cpu),
        "scheduling_list_states_seconds": round(scheduling_db, 3),
        "store_calls": {name: store.calls[name] for name in sorted(store.calls)},
        "store_seconds": {name: round(store.seconds[name], 2) for name in sorted(store.seconds)},
        "http_requests": http.calls.get("http", 0),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status (1 when a check failed)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SOURCES:,} sources")
    parser.add_argument("--sources", type=int, help="how many sources (split over two vendors)")
    parser.add_argument("--workers", type=int, default=WORKERS, help="threads of the round")
    parser.add_argument(
        "--output",
        type=Path,
        help=f"where to write the figures (default {RESULTS.name}, with --quick "
        f"{QUICK_RESULTS.name})",
    )
    args = parser.parse_args(argv)
    total_sources = args.sources or (QUICK_SOURCES if args.quick else FULL_SOURCES)
    sizes = {"hubspot": total_sources // 2, "quickbooks": total_sources - total_sources // 2}
    info = machine()
    load_start = load_average()
    print(f"machine: {info['cpu_model']}, {info['cpu_count']} cores, Python {info['python']}")
    print(f"incsync commit {info['incsync_commit']} (src modified: {info['incsync_src_modified']})")
    print(f"load average at start: {load_start}")
    began = time.perf_counter()

    build_began = time.perf_counter()
    worlds: list[World] = [
        HubSpotWorld(sizes["hubspot"], RECORDS),
        QuickBooksWorld(sizes["quickbooks"], RECORDS),
    ]
    build_seconds = time.perf_counter() - build_began
    rss_after_build = rss_mb()
    print(
        f"built {total_sources:,} fake accounts in {build_seconds:.1f} s, "
        f"peak RSS {rss_after_build:.0f} MB"
    )

    schema = f"bench_round_{secrets.token_hex(4)}"
    tallies = {name: Tally() for name in ("store", "http", "build", "cycles")}
    problems: list[str] = []
    try:
        with ExitStack() as stack:
            served = {
                world.name: (world, stack.enter_context(world.router.serve())) for world in worlds
            }
            factory = Factory(served, tallies["http"], tallies["build"])
            postgres = stack.enter_context(
                PostgresStore(
                    f"{CONNINFO} application_name={schema}",
                    schema=schema,
                    min_size=min(2, args.workers),
                    max_size=args.workers,
                )
            )
            postgres.migrate()
            engine = TimedEngine(TimedStore(postgres, tallies["store"]), tallies["cycles"])
            plans = [
                SourcePlan(source_key(world, n), INTERVAL)
                for world in worlds
                for n in range(sizes[world.name])
            ]

            setup_began = time.perf_counter()
            first = run_due(engine, plans, factory, max_workers=args.workers, per_account_limit=1)
            first_seconds = time.perf_counter() - setup_began
            first_applied = sum(result.applied for result in first)
            print(
                f"first full sync: {outcomes(first)}, {first_applied:,} records in "
                f"{first_seconds:.1f} s (untimed set-up)"
            )
            if len(first) != total_sources or first_applied != total_sources * RECORDS:
                raise SystemExit(f"set-up failed: {outcomes(first)}, {first_applied} applied")

            changes = sum(world.change(n) for world in worlds for n in range(sizes[world.name]))
            for world in worlds:
                world.advance()
            print(f"made {changes:,} changes")

            for tally in tallies.values():
                tally.clear()
            for world in worlds:
                world.router.handled_seconds, world.router.handled = 0.0, 0
            # Every source started its first cycle less than an interval ago; a moment one
            # interval on makes every hourly slot pass, so the whole fleet is due in this round.
            moment = utc_now() + INTERVAL + timedelta(minutes=1)
            load_round = load_average()
            server_began = cpu_seconds_of(backend_pids(schema))
            cpu_began, round_began = time.process_time(), time.perf_counter()
            results = run_due(
                engine, plans, factory, max_workers=args.workers, per_account_limit=1, now=moment
            )
            wall = time.perf_counter() - round_began
            cpu = time.process_time() - cpu_began
            load_after_round = load_average()
            server_ended = cpu_seconds_of(set(server_began) | backend_pids(schema))
            # A backend that started during the round counts from zero; one that ended is lost.
            postgres_cpu = sum(
                cpu - server_began.get(pid, 0.0) for pid, cpu in server_ended.items()
            )
            server_seconds = sum(world.router.handled_seconds for world in worlds)
            served_requests = sum(world.router.handled for world in worlds)

            applied = sum(result.applied for result in results)
            counts = outcomes(results)
            durations = sorted(result.duration.total_seconds() for result in results)
            split = breakdown(wall, tallies, server_seconds, args.workers)
            print(
                f"round: {len(results):,} sources in {wall:.1f} s = "
                f"{len(results) / wall:,.0f} sources/s; {counts}; {applied:,} applied"
            )
            print(
                f"CPU during the round: this process {cpu:.1f} s, its PostgreSQL backends "
                f"{postgres_cpu:.1f} s ({len(server_ended)} backends)"
            )

            if counts != {Outcome.COMPLETED.value: total_sources}:
                problems.append(f"not every source completed: {counts}")
            if applied != changes:
                problems.append(f"applied {applied} records, but {changes} changes were made")
            not_synced = [
                s.key for s in engine.states() if s.consecutive_failures or not s.last_sync
            ]
            if not_synced:
                problems.append(f"{len(not_synced)} sources without a clean last sync")
            problems.extend(check_tables(schema, worlds, sizes))
            checked, sample_problems = check_sample(postgres, worlds, sizes, SAMPLE_PER_VENDOR)
            problems.extend(sample_problems)
            print(f"checked {checked} sources record by record; {len(problems)} problems")
    finally:
        drop_schema(schema)

    total = time.perf_counter() - began
    load_end = load_average()
    results_json = {
        "benchmark": "round",
        "quick": args.quick,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": info,
        "incsync_commit": info["incsync_commit"],
        "incsync_commit_full": git("rev-parse", "HEAD"),
        "load_average_start": load_start,
        "load_average_round_start": load_round,
        "load_average_round_end": load_after_round,
        "load_average_end": load_end,
        "sources": sizes,
        "records_per_source": RECORDS,
        "changes": changes,
        "workers": args.workers,
        "store": "PostgresStore on 127.0.0.1, one pooled connection per worker",
        "postgresql": postgres_version(),
        "scheduler": "incsync.scheduling.run_due, hourly plans, one account per source",
        "setup": {
            "build_fake_accounts_seconds": round(build_seconds, 2),
            "peak_rss_mb_after_build": round(rss_after_build, 1),
            "peak_rss_mb_at_end": round(rss_mb(), 1),
            "first_full_sync_seconds": round(first_seconds, 2),
        },
        "round": {
            "seconds": round(wall, 2),
            "sources_per_second": round(len(results) / wall, 1),
            "process_cpu_seconds": round(cpu, 2),
            "postgres_backends_cpu_seconds": round(postgres_cpu, 2),
            "postgres_backends_measured": len(server_ended),
            "applied": applied,
            "outcomes": counts,
            "http_requests_served": served_requests,
            "cycle_seconds_median": round(statistics.median(durations), 4),
            "cycle_seconds_p95": round(durations[int(0.95 * (len(durations) - 1))], 4),
            "cycle_seconds_max": round(durations[-1], 4),
        },
        "breakdown": split,
        "checks": {
            "sources_compared_record_by_record": checked,
            "problems": problems[:20],
            "passed": not problems,
        },
        "total_seconds": round(total, 1),
    }
    print_summary(results_json)
    path = args.output or (QUICK_RESULTS if args.quick else RESULTS)
    path.write_text(json.dumps(results_json, indent=2) + "\n", encoding="utf-8")
    print(f"written to {path}")
    return 0 if not problems else 1


def print_summary(results: dict[str, Any]) -> None:
    """Print where the round's time went."""
    split = results["breakdown"]
    print(
        f"worker thread-seconds {split['worker_thread_seconds']} "
        f"(pool busy {split['pool_busy']:.0%} of {results['workers']} threads x round)"
    )
    for name in (
        "database",
        "http",
        "http_of_which_fake_server_handling",
        "building_connectors",
        "engine_and_connector_rest",
    ):
        part = split[name]
        cpu = part["worker_cpu_seconds"]
        reading = part.get("reading_threads_cpu_seconds")
        print(
            f"  {name:<36} {part['thread_seconds']:>8.1f} thread-s  {part['share']:>6.1%}  "
            f"~{part['wall_seconds_equivalent']:.1f} s of the round"
            + ("" if cpu is None else f"  (worker CPU {cpu:.1f} s, {part['worker_cpu_share']:.0%})")
            + ("" if reading is None else f"  (reading threads' CPU {reading:.1f} s)")
        )
    for problem in results["checks"]["problems"]:
        print(f"PROBLEM: {problem}")
    print(
        f"load average: start {results['load_average_start']}, round start "
        f"{results['load_average_round_start']}, end {results['load_average_end']}; "
        f"total {results['total_seconds']} s"
    )


if __name__ == "__main__":
    raise SystemExit(main())
