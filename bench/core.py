"""Benchmark of the core engine: throughput, peak memory and the cost of a no-change cycle.

Run ``python -m bench.core`` (``make bench``) from the project root; ``--quick`` scales every size
down 10x for a smoke run. Figures are printed and written to ``bench/results.json``
(``bench/results-quick.json`` for ``--quick``). docs/performance.md explains each measurement.

1. Throughput: a full sync through ``SyncEngine`` into ``SQLiteStore`` against a bare loop that
   does the least any engine must (parse the timestamp, encode the payload and its content
   digest, one ``executemany`` upsert and a state-row update per page in one transaction), on
   the same prebuilt pages.
2. Memory: peak RSS of a full sync whose pages are generated lazily, at two sizes, each in its own
   subprocess (``python -m bench.core --rss-run N``).
3. No-change cycle: ``run_cycle`` on a full store when the source has nothing new, at two sizes.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import itertools
import json
import os
import platform
import pstats
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from incsync import BaseConnector, CycleResult, Outcome, SQLiteStore, SyncEngine, SyncPolicy, Window
from incsync.connectors import RawPage, generate_invoices
from incsync.content import json_form
from incsync.stores.sqlite import _SCHEMA, _UPSERT
from incsync.timestamps import parse_timestamp

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results.json"
QUICK_RESULTS = Path(__file__).resolve().parent / "results-quick.json"

CONNINFO = os.environ.get(
    "INCSYNC_TEST_POSTGRES", "host=127.0.0.1 port=5432 user=postgres dbname=test"
)
"""The PostgreSQL server the tests use; the PostgreSQL benchmarks work in schemas of their own."""

SOURCE_KEY = "bench/invoices"
PAGE_SIZE = 1_000
FULL_RECORDS = 1_000_000
SMALL_RECORDS = 100_000
THROUGHPUT_ROUNDS = 4  # each round runs the bare loop, then the engine
NO_CHANGE_REPEATS = 50  # per pass and size
NO_CHANGE_PASSES = 4
NO_CHANGE_WARMUP = 3
TAIL_RECORDS = 20  # what a lookback re-read returns in the "re-read" no-change cycle

# Fixed, so every run syncs the same data; well before "now", so the safety lag never caps the
# cursor and the cycle follows the normal path.
END = datetime(2025, 1, 1, tzinfo=timezone.utc)
POLICY = SyncPolicy()

TARGET_RATIO = 0.8
TARGET_RSS_DELTA_MB = 20.0
TARGET_NO_CHANGE_MS = 5.0
BUSY_LOAD = 0.5  # a 1-minute load average above this at the start is reported as a busy machine
FLAT_GROWTH = 1.5  # the no-change cycle counts as "not growing" up to this full/small ratio

Invoice = dict[str, Any]


# -- data and connectors ---------------------------------------------------------------------


def invoice_pages(count: int, page_size: int = PAGE_SIZE) -> Iterator[list[Invoice]]:
    """Yield ``count`` generated invoices in pages, generating each page only when asked."""
    invoices = generate_invoices(count, end=END)
    while page := list(itertools.islice(invoices, page_size)):
        yield page


class PagesConnector(BaseConnector):
    """Yields the raw pages ``pages()`` returns, for a full read (the window is not consulted)."""

    ordered = True
    vendor = "bench"

    def __init__(self, pages: Callable[[], Iterable[RawPage]]) -> None:
        self._pages = pages

    def fetch(self, window: Window) -> Iterable[RawPage]:
        return self._pages()


class TailConnector(BaseConnector):
    """A source with nothing new: returns only the given records that fall in the window.

    Given the source's newest records, its lookback is just long enough for an incremental read
    to get exactly those again (all already applied); given none, the read is empty.
    """

    ordered = True
    vendor = "bench"

    def __init__(self, tail: Sequence[Mapping[str, Any]]) -> None:
        self._tail = [(parse_timestamp(raw["updated_at"]), raw) for raw in tail]
        times = [at for at, _ in self._tail]
        self.lookback = max(times) - min(times) if times else timedelta(0)

    def fetch(self, window: Window) -> Iterable[RawPage]:
        start = window.start
        page = [raw for at, raw in self._tail if start is None or at >= start]
        return [page] if page else []


# -- the bare loop ---------------------------------------------------------------------------

# The store's own transactions table, upsert statement and payload encoding, so the bare loop
# writes exactly what the engine writes and cannot drift from it.
_BARE_SCHEMA = (
    next(statement for statement in _SCHEMA.split(";") if "incsync_transactions (" in statement),
    """
    CREATE TABLE sources (
        source_key TEXT PRIMARY KEY,
        cursor_updated_at_us INTEGER,
        cursor_record_id TEXT
    )
    """,
)
_BARE_STATE = (
    "UPDATE sources SET cursor_updated_at_us = ?, cursor_record_id = ? WHERE source_key = ?"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def open_bare(path: Path) -> sqlite3.Connection:
    """Open ``path`` the way SQLiteStore does and create the bare loop's two tables."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    for statement in _BARE_SCHEMA:
        connection.execute(statement)
    connection.execute("INSERT INTO sources (source_key) VALUES (?)", (SOURCE_KEY,))
    return connection


def bare_sync(connection: sqlite3.Connection, pages: Iterable[Sequence[Invoice]]) -> int:
    """Write every page the least an engine must; return how many records were written."""
    parse = datetime.fromisoformat  # reads the trailing "Z" on Python 3.11+
    encode = json_form  # the stored text and the content digest the upsert compares
    epoch, microsecond, key = _EPOCH, _MICROSECOND, SOURCE_KEY
    written = 0
    for page in pages:
        rows = [
            (key, raw["id"], (parse(raw["updated_at"]) - epoch) // microsecond, 0, *encode(raw), 0)
            for raw in page
        ]
        connection.execute("BEGIN IMMEDIATE")
        before = connection.total_changes
        connection.executemany(_UPSERT, rows)
        last = rows[-1]
        connection.execute(_BARE_STATE, (last[2], last[1], key))
        connection.execute("COMMIT")
        written += connection.total_changes - before - 1
    return written


# -- helpers ---------------------------------------------------------------------------------


def speed_probe_ms() -> float:
    """Return the milliseconds this interpreter takes to sum a million integers now (best of 5).

    How fast the machine runs Python at the moment a figure is taken. A VM shares its host's
    cores: on the 2-core VM these benchmarks ran on, the probe took 12.1-12.4 ms when the host
    was quiet and 20.5 ms on a busy day, with every figure in between moving with it. Figures
    whose probes differ much were not taken on the same machine, whatever ``machine()`` says.
    """
    return round(min(timeit.repeat("sum(range(10**6))", number=5, repeat=5)) / 5 * 1000, 2)


def machine() -> dict[str, Any]:
    """Describe the machine and interpreter the figures come from, and its speed now."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "incsync_commit": git("rev-parse", "--short", "HEAD"),
        "incsync_src_modified": bool(git("status", "--porcelain", "--", "src")),
        "speed_probe_ms": speed_probe_ms(),
    }


def git(*args: str) -> str | None:
    """Return the output of a read-only git command in the project, or None without git."""
    try:
        completed = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return completed.stdout.strip()


@dataclass(frozen=True)
class Timing:
    """Wall-clock and CPU seconds (this process: Python and SQLite) of one timed run."""

    wall: float
    cpu: float


def full_sync(path: Path, connector: BaseConnector) -> tuple[SQLiteStore, CycleResult, Timing]:
    """Sync everything ``connector`` yields into a new store at ``path``; time ``run_cycle``."""
    store = SQLiteStore(path)
    engine = SyncEngine(store, policy=POLICY)
    os.sync()  # no writeback of an earlier run's files during this one
    wall, cpu = time.perf_counter(), time.process_time()
    result = engine.run_cycle(SOURCE_KEY, connector)
    timing = Timing(time.perf_counter() - wall, time.process_time() - cpu)
    if result.outcome is not Outcome.COMPLETED:
        raise RuntimeError(f"full sync did not complete: {result}")
    return store, result, timing


def fill_store(path: Path, records: int) -> list[Invoice]:
    """Fully sync ``records`` streamed invoices into a new store; return the newest few."""
    tail: list[Invoice] = []

    def pages() -> Iterator[list[Invoice]]:
        for page in invoice_pages(records):
            tail[:] = page[-TAIL_RECORDS:]
            yield page

    store, _, _ = full_sync(path, PagesConnector(pages))
    store.close()
    return tail


def load_average() -> list[float]:
    """Return the 1, 5 and 15 minute load averages (other work on the machine skews timings)."""
    return [round(value, 2) for value in os.getloadavg()]


def remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def rate(records: int, seconds: float) -> float:
    return records / seconds if seconds > 0 else float("inf")


# -- 1. throughput ---------------------------------------------------------------------------


def bare_run(path: Path, pages: list[list[Invoice]], records: int) -> Timing:
    """Run the bare loop over ``pages`` into a new database at ``path``; time the loop."""
    connection = open_bare(path)
    os.sync()  # no writeback of an earlier run's files during this one
    wall, cpu = time.perf_counter(), time.process_time()
    written = bare_sync(connection, pages)
    timing = Timing(time.perf_counter() - wall, time.process_time() - cpu)
    connection.close()
    if written != records:
        raise RuntimeError(f"bare loop wrote {written} of {records} records")
    return timing


def engine_run(path: Path, pages: list[list[Invoice]], records: int) -> Timing:
    """Run the engine over ``pages`` into a new store at ``path``; time ``run_cycle``."""
    store, result, timing = full_sync(path, PagesConnector(lambda: pages))
    count = store.count_transactions(SOURCE_KEY)
    store.close()
    if result.applied != records or count != records:
        raise RuntimeError(f"engine applied {result.applied}, stored {count} of {records}")
    return timing


def measure_throughput(
    pages: list[list[Invoice]], records: int, rounds: int, workdir: Path
) -> tuple[dict[str, Any], Path]:
    """Run the bare loop and the engine alternately; return the figures and the last engine DB."""
    runs: dict[str, list[Timing]] = {"bare": [], "engine": []}
    engine_db = workdir / "engine-full.db"
    for round_number in range(1, rounds + 1):
        # Each run starts after the other's database is deleted (and synced, see bare_run); the
        # last round's engine store stays for the no-change cycle.
        bare_db = workdir / "bare.db"
        remove_db(engine_db)
        runs["bare"].append(bare_run(bare_db, pages, records))
        remove_db(bare_db)
        runs["engine"].append(engine_run(engine_db, pages, records))
        for name in ("bare", "engine"):
            timing = runs[name][-1]
            print(
                f"  round {round_number}: {name:<6} {rate(records, timing.wall):>9,.0f} records/s "
                f"({timing.wall:.1f} s wall, {timing.cpu:.1f} s CPU)"
            )
    best = {name: max(rate(records, t.wall) for t in timings) for name, timings in runs.items()}
    best_cpu = {name: max(rate(records, t.cpu) for t in timings) for name, timings in runs.items()}
    ratio = best["engine"] / best["bare"]
    figures: dict[str, Any] = {
        "records": records,
        "page_size": PAGE_SIZE,
        "rounds": rounds,
        "order": "alternating: bare, engine, bare, engine, ...",
        "reported": "best run of each, by wall-clock time",
        "target_ratio": TARGET_RATIO,
    }
    for name, timings in runs.items():
        figures[name] = {
            "records_per_s": [round(rate(records, t.wall)) for t in timings],
            "wall_seconds": [round(t.wall, 2) for t in timings],
            "cpu_seconds": [round(t.cpu, 2) for t in timings],
            "best_records_per_s": round(best[name]),
            "best_records_per_cpu_s": round(best_cpu[name]),
        }
    figures["ratio_engine_to_bare"] = round(ratio, 3)
    figures["ratio_engine_to_bare_cpu"] = round(best_cpu["engine"] / best_cpu["bare"], 3)
    # Each round's own ratio (its bare run, then its engine run), as a check on the best-of
    # figure: their median and range show how much one round's figure moves on this machine.
    per_round = [
        bare.wall / engine.wall for bare, engine in zip(runs["bare"], runs["engine"], strict=True)
    ]
    figures["ratio_per_round"] = [round(r, 3) for r in per_round]
    figures["ratio_per_round_median"] = round(statistics.median(per_round), 3)
    figures["met"] = ratio >= TARGET_RATIO
    return figures, engine_db


def profile_engine(records: int, workdir: Path) -> None:
    """Profile one engine full sync over prebuilt pages and print where the time goes."""
    pages = list(invoice_pages(records))
    gc.collect()
    gc.freeze()
    profiler = cProfile.Profile()
    store = SQLiteStore(workdir / "profile.db")
    engine = SyncEngine(store, policy=POLICY)
    connector = PagesConnector(lambda: pages)
    profiler.enable()
    engine.run_cycle(SOURCE_KEY, connector)
    profiler.disable()
    store.close()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(25)


# -- 2. memory -------------------------------------------------------------------------------


def peak_hwm_kb() -> int | None:
    """Return this process's own peak RSS from /proc (VmHWM, KiB), where Linux provides it."""
    try:
        with open("/proc/self/status", encoding="utf-8") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_run(records: int) -> None:
    """Sync ``records`` streamed invoices into a new store; print the peak RSS as JSON (child)."""
    with tempfile.TemporaryDirectory(prefix="incsync-bench-rss-") as workdir:
        path = Path(workdir) / "rss.db"
        store, result, timing = full_sync(path, PagesConnector(lambda: invoice_pages(records)))
        store.close()
    if result.applied != records:
        raise RuntimeError(f"engine applied {result.applied} of {records} records")
    figures = {
        "records": records,
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,  # KiB on Linux
        "vmhwm_kb": peak_hwm_kb(),
        "seconds": round(timing.wall, 2),
    }
    print(json.dumps(figures))


def rss_runs(sizes: Sequence[int]) -> None:
    """Run :func:`rss_run` for each size in turn, each in a fresh interpreter (launcher).

    Linux carries the spawning process's peak RSS over ``exec`` into the child's ``ru_maxrss``, so
    the children must be spawned by a process that stays small: this one, started by the benchmark
    before it builds its pages. Prints one JSON line per run.
    """
    for records in sizes:
        completed = subprocess.run(
            [sys.executable, "-m", "bench.core", "--rss-run", str(records)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        print(completed.stdout.strip().splitlines()[-1], flush=True)


def start_memory_runs(sizes: Sequence[int]) -> subprocess.Popen[str]:
    """Start :func:`rss_runs` in the background; collect it with :func:`finish_memory_runs`."""
    return subprocess.Popen(
        [sys.executable, "-m", "bench.core", "--rss-runs", ",".join(map(str, sizes))],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def finish_memory_runs(launcher: subprocess.Popen[str]) -> list[dict[str, Any]]:
    output, _ = launcher.communicate()
    if launcher.returncode != 0:
        raise RuntimeError(f"the memory runs failed (exit status {launcher.returncode})")
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def memory_figures(runs: Sequence[dict[str, Any]], full: int, small: int) -> dict[str, Any]:
    by_size = {run["records"]: run for run in runs}
    full_mb = by_size[full]["maxrss_kb"] / 1024
    small_mb = by_size[small]["maxrss_kb"] / 1024
    delta = full_mb - small_mb
    return {
        "pages": "generated lazily, one page at a time",
        "measured_by": "ru_maxrss of the child at the end of its run (VmHWM alongside)",
        "runs": [
            {
                "records": run["records"],
                "peak_rss_mb": round(run["maxrss_kb"] / 1024, 1),
                "vmhwm_mb": None if run["vmhwm_kb"] is None else round(run["vmhwm_kb"] / 1024, 1),
                "sync_seconds": run["seconds"],
            }
            for run in runs
        ],
        "full_records": full,
        "small_records": small,
        "full_peak_rss_mb": round(full_mb, 1),
        "small_peak_rss_mb": round(small_mb, 1),
        "delta_mb": round(delta, 1),
        "ratio_full_to_small": round(full_mb / small_mb, 3),
        "target_delta_mb": TARGET_RSS_DELTA_MB,
        "met": delta <= TARGET_RSS_DELTA_MB,
    }


# -- 3. no-change cycle ----------------------------------------------------------------------


def time_cycles(path: Path, connector: BaseConnector, reads: int) -> list[float]:
    """Time ``run_cycle`` on the store at ``path`` when nothing changed; milliseconds per cycle.

    Every cycle must read exactly ``reads`` records and apply none.
    """
    store = SQLiteStore(path)
    engine = SyncEngine(store, policy=POLICY)
    before = store.count_transactions(SOURCE_KEY)
    timings: list[float] = []
    for attempt in range(NO_CHANGE_WARMUP + NO_CHANGE_REPEATS):
        started = time.perf_counter()
        result = engine.run_cycle(SOURCE_KEY, connector)
        elapsed = time.perf_counter() - started
        if result.outcome is not Outcome.COMPLETED or result.applied or result.fetched != reads:
            raise RuntimeError(f"a no-change cycle changed something: {result}")
        if attempt >= NO_CHANGE_WARMUP:
            timings.append(elapsed * 1000)
    if store.count_transactions(SOURCE_KEY) != before:
        raise RuntimeError("a no-change cycle changed the number of transactions")
    store.close()
    return timings


def summary(timings: Sequence[float]) -> dict[str, float]:
    ordered = sorted(timings)
    return {
        "median_ms": round(statistics.median(ordered), 3),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 3),
        "min_ms": round(ordered[0], 3),
        "max_ms": round(ordered[-1], 3),
    }


def measure_no_change(
    stores: Mapping[int, tuple[Path, Sequence[Invoice]]], full: int, small: int
) -> dict[str, Any]:
    """Time no-change cycles on the full and the small store, with an empty read and a re-read."""
    figures: dict[str, Any] = {
        "repeats": NO_CHANGE_REPEATS * NO_CHANGE_PASSES,
        "passes": f"{NO_CHANGE_PASSES} alternating passes over the two sizes",
        "warmup_cycles": NO_CHANGE_WARMUP,
        "reported": "median of the repeats",
        "target_ms": TARGET_NO_CHANGE_MS,
        "flat_if_ratio_at_most": FLAT_GROWTH,
    }
    met = True
    for variant, description in (
        ("empty_read", "the connector returns no page"),
        ("reread", f"the connector returns the newest {TAIL_RECORDS} records again, one page"),
    ):
        result: dict[str, Any] = {"connector": description}
        # Sub-millisecond timings drift with whatever else the machine does: measure the two
        # sizes in alternating passes so that drift falls on both alike.
        timings: dict[int, list[float]] = {small: [], full: []}
        for _ in range(NO_CHANGE_PASSES):
            for size in (small, full):
                path, tail = stores[size]
                records = tail if variant == "reread" else ()
                timings[size] += time_cycles(path, TailConnector(records), len(records))
        for size in (small, full):
            records_read = TAIL_RECORDS if variant == "reread" else 0
            result[str(size)] = {"records_read": records_read, **summary(timings[size])}
            print(f"  {variant:<10} {size:>9,} records: median {result[str(size)]['median_ms']} ms")
        full_ms, small_ms = result[str(full)]["median_ms"], result[str(small)]["median_ms"]
        result["ratio_full_to_small"] = round(full_ms / small_ms, 3)
        result["met"] = full_ms <= TARGET_NO_CHANGE_MS and full_ms / small_ms <= FLAT_GROWTH
        met = met and result["met"]
        figures[variant] = result
    figures["met"] = met
    return figures


# -- the whole benchmark ---------------------------------------------------------------------


def run(quick: bool, rounds: int, output: Path) -> dict[str, Any]:
    scale = 10 if quick else 1
    full, small = FULL_RECORDS // scale, SMALL_RECORDS // scale
    info = machine()
    print(
        f"incsync core benchmark{' (quick)' if quick else ''}: {info['cpu_model']}, "
        f"{info['cpu_count']} cores, Python {info['python']}, SQLite {info['sqlite']}"
    )
    results: dict[str, Any] = {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "machine": info,
        "load_average": {"start": load_average()},
    }
    print(f"load average (1, 5, 15 min): {results['load_average']['start']}")
    if results["load_average"]["start"][0] > BUSY_LOAD:
        print("note: the machine is busy; other work skews the timings (results.json has the load)")

    with tempfile.TemporaryDirectory(prefix="incsync-bench-") as tmp:
        workdir = Path(tmp)

        # The memory runs are separate processes and nothing in them is timed: they run while
        # this process builds the pages, and are waited for before any timing starts.
        launcher = start_memory_runs((0, small, full))

        print(f"building {full:,} invoices in pages of {PAGE_SIZE:,} ...")
        started = time.perf_counter()
        pages = list(invoice_pages(full))
        build_seconds = time.perf_counter() - started
        tail = pages[-1][-TAIL_RECORDS:]
        # The prebuilt pages live for the whole measurement; keep the cyclic collector from
        # walking them over and over (a real source's pages arrive one at a time).
        gc.collect()
        gc.freeze()
        memory_runs = finish_memory_runs(launcher)

        print(f"1. throughput, {full:,} records ({build_seconds:.0f} s to build the pages)")
        results["load_average"]["before_throughput"] = load_average()
        throughput, full_db = measure_throughput(pages, full, rounds, workdir)
        throughput["page_build_seconds"] = round(build_seconds, 1)
        results["throughput"] = throughput
        print(
            f"  best: engine {throughput['engine']['best_records_per_s']:,} records/s, "
            f"bare {throughput['bare']['best_records_per_s']:,} records/s, "
            f"ratio {throughput['ratio_engine_to_bare']} "
            f"(by CPU time {throughput['ratio_engine_to_bare_cpu']}; per round: median "
            f"{throughput['ratio_per_round_median']}, range {min(throughput['ratio_per_round'])}-"
            f"{max(throughput['ratio_per_round'])})"
        )
        del pages
        gc.unfreeze()
        gc.collect()

        print(f"2. peak RSS, pages generated lazily ({small:,} vs {full:,} records)")
        results["memory"] = memory_figures(memory_runs, full, small)
        for entry in results["memory"]["runs"]:
            print(f"  {entry['records']:>9,} records: {entry['peak_rss_mb']} MB")
        print(f"  delta {results['memory']['delta_mb']} MB")

        print(
            f"3. no-change cycle ({NO_CHANGE_PASSES} alternating passes "
            f"of {NO_CHANGE_REPEATS} cycles)"
        )
        small_db = workdir / "engine-small.db"
        small_tail = fill_store(small_db, small)
        results["load_average"]["before_no_change"] = load_average()
        results["no_change_cycle"] = measure_no_change(
            {full: (full_db, tail), small: (small_db, small_tail)}, full, small
        )
        results["load_average"]["end"] = load_average()

    results["targets_met"] = {
        "throughput": results["throughput"]["met"],
        "memory": results["memory"]["met"],
        "no_change_cycle": results["no_change_cycle"]["met"],
    }
    output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print_summary(results)
    print(f"written to {output}")
    return results


def print_summary(results: Mapping[str, Any]) -> None:
    throughput, memory = results["throughput"], results["memory"]
    no_change = results["no_change_cycle"]
    full, small = str(memory["full_records"]), str(memory["small_records"])

    def verdict(met: bool) -> str:
        return "met" if met else "NOT MET"

    print()
    print(
        f"throughput  engine {throughput['engine']['best_records_per_s']:,}/s vs bare "
        f"{throughput['bare']['best_records_per_s']:,}/s = {throughput['ratio_engine_to_bare']} "
        f"(target >= {TARGET_RATIO}): {verdict(throughput['met'])}"
    )
    print(
        f"memory      peak RSS {memory['full_peak_rss_mb']} MB vs {memory['small_peak_rss_mb']} MB "
        f"= {memory['delta_mb']:+} MB, x{memory['ratio_full_to_small']} "
        f"(target <= +{TARGET_RSS_DELTA_MB:.0f} MB): {verdict(memory['met'])}"
    )
    for variant in ("empty_read", "reread"):
        figures = no_change[variant]
        print(
            f"no-change   {variant:<10} {figures[full]['median_ms']} ms vs "
            f"{figures[small]['median_ms']} ms = x{figures['ratio_full_to_small']} "
            f"(target <= {TARGET_NO_CHANGE_MS:.0f} ms, flat): {verdict(figures['met'])}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.core", description="Benchmark of the core engine."
    )
    parser.add_argument("--quick", action="store_true", help="scale every size down 10x")
    parser.add_argument(
        "--rounds",
        type=int,
        default=THROUGHPUT_ROUNDS,
        help=f"throughput rounds, each a bare run then an engine run (default {THROUGHPUT_ROUNDS})",
    )
    parser.add_argument("--output", type=Path, help="where to write the figures as JSON")
    parser.add_argument(
        "--profile",
        type=int,
        metavar="N",
        help="profile one engine full sync of N records with cProfile and exit",
    )
    parser.add_argument("--rss-run", type=int, metavar="N", help=argparse.SUPPRESS)
    parser.add_argument("--rss-runs", metavar="N,N,...", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_run is not None:
        rss_run(args.rss_run)
        return
    if args.rss_runs is not None:
        rss_runs([int(size) for size in args.rss_runs.split(",")])
        return
    if args.profile is not None:
        with tempfile.TemporaryDirectory(prefix="incsync-bench-") as tmp:
            profile_engine(args.profile, Path(tmp))
        return
    output = args.output or (QUICK_RESULTS if args.quick else RESULTS)
    if args.rounds < 2:
        parser.error("--rounds must be at least 2")
    run(args.quick, args.rounds, output)


if __name__ == "__main__":
    main()
